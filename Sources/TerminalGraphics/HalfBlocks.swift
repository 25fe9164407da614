// Any terminal with colours: each character cell shows two pixels with the upper half
// block U+2580, foreground = the top pixel, background = the bottom one, in 24-bit SGR
// colours (or the nearest of the 256-colour palette). Attributes are reset before each
// newline, so a scrolling terminal never paints the next line with our background.

enum HalfBlocks {
    private static let upper = Array("\u{2580}".utf8)
    private static let lower = Array("\u{2584}".utf8)
    private static let reset: [UInt8] = [0x1B, 0x5B, 0x30, 0x6D]  // ESC [ 0 m

    /// The grid of half-block pixels (columns x 2*rows) the picture fills: the window's
    /// width and its height less one row, keeping the picture's aspect ratio with the
    /// cell's (half a cell is square when cells are twice as tall as wide). Never larger
    /// than the picture.
    static func grid(for image: RGBAImage, window: TerminalWindow) -> (width: Int, height: Int) {
        let aspect = window.cellWidth / (window.cellHeight / 2)  // half-cell width over height
        let maxW = window.columns, maxH = 2 * max(1, window.rows - 1)
        let s = min(1, Double(maxW) / Double(image.width), Double(maxH) / (Double(image.height) * aspect))
        let w = max(1, min(maxW, Int((Double(image.width) * s).rounded())))
        let h = max(1, min(maxH, Int((Double(image.height) * s * aspect).rounded())))
        return (w, h)
    }

    static func encode(_ image: RGBAImage, window: TerminalWindow, truecolor: Bool) -> [UInt8] {
        let g = grid(for: image, window: window)
        let small = Resample.boxFilter(image, width: g.width, height: g.height)
        let p = small.pixels
        var out = [UInt8]()
        out.reserveCapacity(g.width * (g.height + 1) / 2 * 40)
        // The colours in force on the line: nil is the terminal's default.
        var fg: Int? = nil, bg: Int? = nil
        func rgb(_ x: Int, _ y: Int) -> Int? {
            let i = (y * g.width + x) * 4
            guard p[i + 3] >= 128 else { return nil }  // transparent: the terminal's background
            return Int(p[i]) << 16 | Int(p[i + 1]) << 8 | Int(p[i + 2])
        }
        func setForeground(_ c: Int) {
            guard fg != c else { return }
            out += sgr(c, background: false, truecolor: truecolor)
            fg = c
        }
        func setBackground(_ c: Int?) {
            guard bg != c else { return }
            if let c { out += sgr(c, background: true, truecolor: truecolor) } else { out += Array("\u{1B}[49m".utf8) }
            bg = c
        }
        var y = 0
        while y < g.height {
            for x in 0..<g.width {
                let top = rgb(x, y)
                let bottom = y + 1 < g.height ? rgb(x, y + 1) : nil
                switch (top, bottom) {
                case let (t?, b):
                    setForeground(t); setBackground(b); out += upper
                case let (nil, b?):
                    setForeground(b); setBackground(nil); out += lower
                case (nil, nil):
                    setBackground(nil); out.append(0x20)
                }
            }
            out += reset
            out.append(0x0A)
            fg = nil; bg = nil
            y += 2
        }
        return out
    }

    static func sgr(_ c: Int, background: Bool, truecolor: Bool) -> [UInt8] {
        let r = c >> 16, g = c >> 8 & 0xFF, b = c & 0xFF
        let code = background ? 48 : 38
        if truecolor { return Array("\u{1B}[\(code);2;\(r);\(g);\(b)m".utf8) }
        return Array("\u{1B}[\(code);5;\(xterm256(r, g, b))m".utf8)
    }

    /// The nearest colour of xterm's 256-colour palette among its 6x6x6 cube (16-231)
    /// and grey ramp (232-255), whose values are the same in every terminal (0-15 are not).
    static func xterm256(_ r: Int, _ g: Int, _ b: Int) -> Int {
        let levels = [0, 95, 135, 175, 215, 255]
        func nearestLevel(_ v: Int) -> Int {
            var best = 0
            for i in 1..<6 where abs(levels[i] - v) < abs(levels[best] - v) { best = i }
            return best
        }
        let ri = nearestLevel(r), gi = nearestLevel(g), bi = nearestLevel(b)
        func d2(_ a: (Int, Int, Int)) -> Int {
            (a.0 - r) * (a.0 - r) + (a.1 - g) * (a.1 - g) + (a.2 - b) * (a.2 - b)
        }
        let cube = 16 + 36 * ri + 6 * gi + bi
        let cubeDistance = d2((levels[ri], levels[gi], levels[bi]))
        let grey = max(0, min(23, ((r + g + b) / 3 - 8 + 5) / 10))
        let greyValue = 8 + 10 * grey
        return d2((greyValue, greyValue, greyValue)) < cubeDistance ? 232 + grey : cube
    }
}
