// Pictures in the terminal: the kitty graphics protocol, iTerm2 inline images, sixel, or
// Unicode half blocks in colour, chosen from the environment (docs/terminal-graphics.md).
// No Lua inside and no dependency on Plot: callers hand over pixels (and PNG bytes when
// they have them) and get the bytes a terminal understands.
//
// How the REPL (or `fig:show()`) should call it, once per figure shown:
//
//     let image = RGBAImage(premultipliedBGRA: cairoData, width: w, height: h, stride: s)
//     let used = TerminalGraphics.show(image: image, png: { figure.pngBytes() })
//     if used == .none { /* nothing was written: not a terminal, CI, NXLUA_PLOT=none */ }
//
// `show` flushes C stdio first (Swift's `print` writes through its stdout), then writes to
// fd 1 only, sized to the window (TIOCGWINSZ), and ends with a newline so that the next
// prompt starts below the picture. The `png` closure is called only when the chosen
// protocol sends PNG (kitty, iTerm2), so a text or sixel rendering never pays for it.
// For tests, or to write somewhere else: `detect(environment:isTerminal:)` then
// `encode(image:png:protocol:window:tmux:truecolor:)`, which is a pure function.

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// How a picture reaches the terminal.
public enum TerminalImageProtocol: String, CaseIterable, Sendable {
    /// The kitty graphics protocol (kitty, Ghostty; WezTerm and Konsole in part).
    case kitty
    /// iTerm2's inline images (iTerm2, WezTerm, mintty).
    case iterm
    /// DEC sixel graphics (foot, mlterm, xterm -ti vt340, Windows Terminal, Konsole).
    case sixel
    /// Unicode upper half blocks coloured with SGR: any terminal with colours.
    case text
    /// Nothing is written (not a terminal, CI, TERM=dumb, NXLUA_PLOT=none).
    case none
}

/// An image in straight (not premultiplied) 8-bit RGBA, rows from the top.
public struct RGBAImage: Equatable, Sendable {
    public let width: Int
    public let height: Int
    /// `width * height * 4` bytes: R, G, B, A per pixel.
    public var pixels: [UInt8]

    public init(width: Int, height: Int, pixels: [UInt8]) {
        precondition(width >= 0 && height >= 0 && pixels.count == width * height * 4,
                     "RGBAImage: \(pixels.count) bytes for \(width)x\(height) pixels (want \(width * height * 4))")
        self.width = width
        self.height = height
        self.pixels = pixels
    }

    /// From cairo's CAIRO_FORMAT_ARGB32 memory on a little-endian machine: B, G, R, A bytes
    /// per pixel, colours premultiplied by alpha, `stride` bytes per row.
    public init(premultipliedBGRA data: UnsafeRawBufferPointer, width: Int, height: Int, stride: Int) {
        precondition(stride >= width * 4 && data.count >= (height > 0 ? (height - 1) * stride + width * 4 : 0),
                     "RGBAImage: \(data.count) bytes with stride \(stride) for \(width)x\(height) pixels")
        var out = [UInt8](repeating: 0, count: width * height * 4)
        for y in 0..<height {
            for x in 0..<width {
                let s = y * stride + x * 4, d = (y * width + x) * 4
                let a = Int(data[s + 3])
                out[d + 3] = UInt8(a)
                guard a > 0 else { continue }
                if a == 255 {
                    out[d] = data[s + 2]; out[d + 1] = data[s + 1]; out[d + 2] = data[s]
                } else {
                    // Un-premultiply with rounding; cairo keeps colour <= alpha.
                    out[d] = UInt8(min(255, (Int(data[s + 2]) * 255 + a / 2) / a))
                    out[d + 1] = UInt8(min(255, (Int(data[s + 1]) * 255 + a / 2) / a))
                    out[d + 2] = UInt8(min(255, (Int(data[s]) * 255 + a / 2) / a))
                }
            }
        }
        self.init(width: width, height: height, pixels: out)
    }
}

/// The size of the terminal window: character cells and, when the terminal tells
/// (TIOCGWINSZ's ws_xpixel/ws_ypixel), pixels; 0 when unknown.
public struct TerminalWindow: Equatable, Sendable {
    public var columns: Int
    public var rows: Int
    public var pixelWidth: Int
    public var pixelHeight: Int

    public init(columns: Int, rows: Int, pixelWidth: Int = 0, pixelHeight: Int = 0) {
        self.columns = max(1, columns)
        self.rows = max(1, rows)
        self.pixelWidth = max(0, pixelWidth)
        self.pixelHeight = max(0, pixelHeight)
    }

    /// The window of the terminal on `fd` (TIOCGWINSZ), nil when `fd` is not a terminal
    /// or the terminal does not say (0 columns).
    public static func of(fd: Int32) -> TerminalWindow? {
        var w = winsize()
        guard ioctl(fd, UInt(TIOCGWINSZ), &w) == 0, w.ws_col > 0, w.ws_row > 0 else { return nil }
        return TerminalWindow(columns: Int(w.ws_col), rows: Int(w.ws_row),
                              pixelWidth: Int(w.ws_xpixel), pixelHeight: Int(w.ws_ypixel))
    }

    /// Pixels per character cell: from the window when it says, else 10x20 (a common
    /// monospace cell; terminals that report no pixels are usually remote or old).
    public var cellWidth: Double { pixelWidth > 0 ? Double(pixelWidth) / Double(columns) : 10 }
    public var cellHeight: Double { pixelHeight > 0 ? Double(pixelHeight) / Double(rows) : 20 }

    /// The pixel box a picture may fill: the whole width, and the height less one row
    /// so that the prompt after it stays on screen with the picture's top.
    var pictureBox: (width: Int, height: Int) {
        (max(1, Int(Double(columns) * cellWidth)), max(1, Int(Double(max(1, rows - 1)) * cellHeight)))
    }
}

public enum TerminalGraphics {
    /// The protocol for a terminal described by `environment` whose output is (or is not)
    /// a terminal. In order:
    /// 1. `NXLUA_PLOT=kitty|iterm|sixel|text|none` (any case) wins, even when the output is
    ///    not a terminal (to capture the bytes in a file); other values are ignored.
    /// 2. Not a terminal, `CI` set, `TERM=dumb` or unset, or inside Emacs: `.none`.
    /// 3. kitty: `KITTY_WINDOW_ID`, `TERM=xterm-kitty`, Ghostty (`TERM_PROGRAM=ghostty`,
    ///    `TERM=xterm-ghostty`).
    /// 4. iTerm2 images: iTerm2 (`TERM_PROGRAM=iTerm.app`, `ITERM_SESSION_ID`,
    ///    `LC_TERMINAL=iTerm2`, which ssh passes on), WezTerm (`TERM_PROGRAM=WezTerm`,
    ///    `WEZTERM_PANE`, `WEZTERM_EXECUTABLE`), mintty (`TERM_PROGRAM=mintty`).
    /// 5. sixel: foot (`TERM=foot*`), mlterm (`TERM=mlterm*`, `MLTERM`), contour
    ///    (`TERM=contour*`), Konsole 22.04 and later (`KONSOLE_VERSION` >= 220400).
    /// 6. Otherwise `.text`. Inside GNU screen (`STY`, no `TMUX`) graphics cannot pass,
    ///    so `.text` too. Inside tmux the outer terminal's variables (inherited by the
    ///    tmux server) decide, and `encode` wraps the bytes for tmux's passthrough.
    public static func detect(environment: [String: String], isTerminal: Bool) -> TerminalImageProtocol {
        func env(_ k: String) -> String? {
            guard let v = environment[k], !v.isEmpty else { return nil }
            return v
        }
        if let forced = env("NXLUA_PLOT"), let p = TerminalImageProtocol(rawValue: forced.lowercased()) {
            return p
        }
        guard isTerminal, env("CI") == nil, env("INSIDE_EMACS") == nil else { return .none }
        guard let term = env("TERM")?.lowercased(), term != "dumb" else { return .none }
        if env("STY") != nil && env("TMUX") == nil { return .text }
        let program = env("TERM_PROGRAM")?.lowercased() ?? ""

        if env("KITTY_WINDOW_ID") != nil || term == "xterm-kitty" || program == "ghostty"
            || term == "xterm-ghostty" || env("GHOSTTY_RESOURCES_DIR") != nil {
            return .kitty
        }
        if program == "iterm.app" || env("ITERM_SESSION_ID") != nil || env("LC_TERMINAL")?.lowercased() == "iterm2"
            || program == "wezterm" || env("WEZTERM_PANE") != nil || env("WEZTERM_EXECUTABLE") != nil
            || program == "mintty" {
            return .iterm
        }
        if term.hasPrefix("foot") || term.hasPrefix("mlterm") || env("MLTERM") != nil || term.hasPrefix("contour") {
            return .sixel
        }
        if let v = env("KONSOLE_VERSION"), let n = Int(v), n >= 220400 { return .sixel }
        return .text
    }

    /// Whether output passes through tmux (the `TMUX` variable), whose passthrough
    /// (`ESC Ptmux; ... ESC \`, with `set -g allow-passthrough on` since tmux 3.3) must
    /// carry graphics to the outer terminal.
    public static func insideTmux(environment: [String: String]) -> Bool {
        !(environment["TMUX"] ?? "").isEmpty
    }

    /// Whether the terminal takes 24-bit colours (`COLORTERM=truecolor` or `24bit`, or a
    /// terminal known to: kitty, iTerm2, WezTerm, Ghostty, foot); 256 colours otherwise.
    public static func truecolor(environment: [String: String]) -> Bool {
        let c = (environment["COLORTERM"] ?? "").lowercased()
        if c == "truecolor" || c == "24bit" { return true }
        let term = (environment["TERM"] ?? "").lowercased()
        if term.hasSuffix("-direct") || term == "xterm-kitty" || term.hasPrefix("foot") || term == "xterm-ghostty" { return true }
        let program = (environment["TERM_PROGRAM"] ?? "").lowercased()
        return ["iterm.app", "wezterm", "ghostty"].contains(program) || environment["KITTY_WINDOW_ID"] != nil
    }

    /// The bytes that show `image` on a terminal speaking `protocol` in `window`, ending
    /// with a newline (empty for `.none` and for an empty image).
    /// - png: the same picture as PNG, for kitty and iTerm2 (called at most once). Without
    ///   it, or when it returns no bytes, kitty gets raw RGBA (f=32) and iTerm2 an
    ///   uncompressed PNG made here.
    /// - tmux: wrap graphics in tmux's passthrough (text needs none).
    /// - truecolor: 24-bit SGR colours for `.text`; the 256-colour palette when false.
    /// Pictures larger than the window are scaled down to fit (kitty and iTerm2 by the
    /// terminal when PNG bytes are sent, here otherwise); smaller ones are shown at their
    /// own size.
    public static func encode(image: RGBAImage, png: (() -> [UInt8])? = nil, protocol: TerminalImageProtocol,
                              window: TerminalWindow, tmux: Bool = false, truecolor: Bool = true) -> [UInt8] {
        guard image.width > 0, image.height > 0 else { return [] }
        switch `protocol` {
        case .none:
            return []
        case .text:
            return HalfBlocks.encode(image, window: window, truecolor: truecolor)
        case .kitty:
            return Kitty.encode(image, png: png, window: window, tmux: tmux)
        case .iterm:
            return ITermImages.encode(image, png: png, window: window, tmux: tmux)
        case .sixel:
            var out = Sixel.encode(Resample.fit(image, in: window.pictureBox))
            if tmux { out = Tmux.wrap(out) }
            out.append(0x0A)
            return out
        }
    }

    /// Shows `image` on standard output (fd 1) when it is a terminal, by the protocol
    /// `detect` picks from the process environment, sized to the window; returns the
    /// protocol used (`.none`: nothing was written). C stdio's streams are flushed first so
    /// that earlier `print`s come before the picture.
    @discardableResult
    public static func show(image: RGBAImage, png: (() -> [UInt8])? = nil) -> TerminalImageProtocol {
        let environment = processEnvironment()
        let isTerminal = isatty(1) != 0
        let p = detect(environment: environment, isTerminal: isTerminal)
        guard p != .none else { return .none }
        let window = TerminalWindow.of(fd: 1)
            ?? TerminalWindow(columns: Int(environment["COLUMNS"] ?? "") ?? 80, rows: Int(environment["LINES"] ?? "") ?? 24)
        let bytes = encode(image: image, png: png, protocol: p, window: window,
                           tmux: insideTmux(environment: environment), truecolor: truecolor(environment: environment))
        fflush(nil)  // all C output streams: `print` writes through stdout's buffer
        writeAll(bytes, to: 1)
        return p
    }

    /// The process environment as a dictionary (read from `environ`, no Foundation).
    public static func processEnvironment() -> [String: String] {
        var result: [String: String] = [:]
        var p = environ
        while let entry = p.pointee {
            let s = String(cString: entry)
            if let eq = s.firstIndex(of: "=") {
                result[String(s[..<eq])] = String(s[s.index(after: eq)...])
            }
            p += 1
        }
        return result
    }

    /// Writes every byte to `fd`, retrying after partial writes and EINTR; gives up
    /// silently on other errors (a closed terminal is no reason to fail a plot).
    static func writeAll(_ bytes: [UInt8], to fd: Int32) {
        bytes.withUnsafeBytes { buffer in
            guard var p = buffer.baseAddress else { return }
            var left = buffer.count
            while left > 0 {
                let n = write(fd, p, left)
                if n < 0 {
                    if errno == EINTR { continue }
                    return
                }
                left -= n
                p += n
            }
        }
    }
}
