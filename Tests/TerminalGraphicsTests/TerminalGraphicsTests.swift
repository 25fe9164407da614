@testable import TerminalGraphics
import Foundation
import XCTest

/// Checks what TerminalGraphics writes by decoding it again: base64 and kitty chunks,
/// tmux's passthrough, a sixel decoder written here, the half-block bytes, the PNG
/// writer's output decoded by Python's zlib.
final class TerminalGraphicsTests: XCTestCase {
    let esc: UInt8 = 0x1B

    // MARK: helpers

    /// A deterministic byte sequence (xorshift).
    func bytes(_ n: Int, seed: UInt64 = 0x9E37_79B9_7F4A_7C15) -> [UInt8] {
        var s = seed
        return (0..<n).map { _ in
            s ^= s << 13; s ^= s >> 7; s ^= s << 17
            return UInt8(truncatingIfNeeded: s >> 24)
        }
    }

    func base64Decode(_ b: [UInt8]) throws -> [UInt8] {
        let data = try XCTUnwrap(Data(base64Encoded: Data(b)), "not base64")
        return [UInt8](data)
    }

    func image(_ w: Int, _ h: Int, _ color: (Int, Int) -> (UInt8, UInt8, UInt8, UInt8)) -> RGBAImage {
        var px = [UInt8]()
        for y in 0..<h { for x in 0..<w { let c = color(x, y); px += [c.0, c.1, c.2, c.3] } }
        return RGBAImage(width: w, height: h, pixels: px)
    }

    /// The kitty commands in `out`: (control keys, payload) of each `ESC _ G keys ; payload ESC \`.
    func kittyCommands(_ out: [UInt8]) throws -> [(keys: [String: String], payload: [UInt8])] {
        var result: [(keys: [String: String], payload: [UInt8])] = []
        var i = 0
        while i < out.count {
            if out[i] == 0x0A { i += 1; continue }
            XCTAssertEqual(Array(out[i..<min(out.count, i + 3)]), [esc, UInt8(ascii: "_"), UInt8(ascii: "G")], "at byte \(i)")
            guard let end = (i..<out.count - 1).first(where: { out[$0] == esc && out[$0 + 1] == UInt8(ascii: "\\") }) else {
                XCTFail("unterminated kitty command"); return result
            }
            let body = Array(out[(i + 3)..<end])
            let semi = try XCTUnwrap(body.firstIndex(of: UInt8(ascii: ";")))
            var keys: [String: String] = [:]
            for kv in String(decoding: body[..<semi], as: UTF8.self).split(separator: ",") {
                let parts = kv.split(separator: "=", maxSplits: 1)
                XCTAssertEqual(parts.count, 2, "key \(kv)")
                XCTAssertNil(keys[String(parts[0])], "key \(parts[0]) twice")
                keys[String(parts[0])] = String(parts[1])
            }
            result.append((keys, Array(body[(semi + 1)...])))
            i = end + 2
        }
        return result
    }

    /// Undoes tmux's passthrough: the concatenated contents of `ESC P tmux; ... ESC \`
    /// sequences (ESC doubled inside), failing on anything outside them but newlines.
    func unwrapTmux(_ out: [UInt8]) -> (content: [UInt8], pieces: Int, trailing: [UInt8]) {
        var content = [UInt8](), pieces = 0, i = 0
        let head: [UInt8] = [esc, UInt8(ascii: "P")] + Array("tmux;".utf8)
        while i < out.count, out[i] == esc {
            XCTAssertEqual(Array(out[i..<min(out.count, i + head.count)]), head)
            i += head.count
            while true {
                guard i + 1 < out.count else { XCTFail("unterminated passthrough"); return (content, pieces, []) }
                if out[i] == esc {
                    if out[i + 1] == esc { content.append(esc); i += 2; continue }
                    XCTAssertEqual(out[i + 1], UInt8(ascii: "\\"), "a lone ESC inside the passthrough")
                    i += 2
                    break
                }
                content.append(out[i]); i += 1
            }
            pieces += 1
        }
        return (content, pieces, Array(out[i...]))
    }

    // MARK: kitty

    func testKittyChunksDecodeToThePNGBytes() throws {
        let img = image(64, 48) { x, y in (UInt8(x), UInt8(y), 7, 255) }
        // 3072 bytes are exactly one 4096-byte chunk; one more byte makes two.
        for n in [1, 2, 3, 3072, 3073, 9000, 12288, 50001] {
            let png = bytes(n, seed: UInt64(n))
            var calls = 0
            let out = TerminalGraphics.encode(image: img, png: { calls += 1; return png }, protocol: .kitty,
                                              window: TerminalWindow(columns: 100, rows: 40, pixelWidth: 1000, pixelHeight: 800))
            XCTAssertEqual(calls, 1)
            XCTAssertEqual(out.last, 0x0A, "a newline after the picture")
            let commands = try kittyCommands(out)
            XCTAssertEqual(commands.count, (n + 3071) / 3072, "\(n) bytes")
            var joined = [UInt8]()
            for (k, c) in commands.enumerated() {
                XCTAssertLessThanOrEqual(c.payload.count, 4096)
                XCTAssertEqual(c.keys["m"], k == commands.count - 1 ? "0" : "1")
                XCTAssertEqual(c.keys["q"], "2", "every chunk asks for no reply")
                if k == 0 {
                    XCTAssertEqual(c.keys["a"], "T"); XCTAssertEqual(c.keys["f"], "100")
                    XCTAssertNil(c.keys["c"], "a picture that fits is shown at its size")
                } else {
                    XCTAssertEqual(Set(c.keys.keys), ["m", "q"], "control keys only in the first chunk")
                }
                if k < commands.count - 1 { XCTAssertEqual(c.payload.count, 4096) }
                joined += c.payload
            }
            XCTAssertEqual(try base64Decode(joined), png)
        }
    }

    func testKittyRawRGBAWithoutPNGAndScaledToTheWindow() throws {
        let img = image(30, 20) { x, y in (UInt8(x * 8), UInt8(y * 12), 200, 255) }
        let window = TerminalWindow(columns: 80, rows: 24, pixelWidth: 800, pixelHeight: 480)
        let commands = try kittyCommands(TerminalGraphics.encode(image: img, protocol: .kitty, window: window))
        XCTAssertEqual(commands[0].keys["f"], "32")
        XCTAssertEqual(commands[0].keys["s"], "30"); XCTAssertEqual(commands[0].keys["v"], "20")
        XCTAssertEqual(try base64Decode(commands.flatMap { $0.payload }), img.pixels)
        // A PNG closure that has no bytes (the caller's encoder failed) is the same.
        let empty = try kittyCommands(TerminalGraphics.encode(image: img, png: { [] }, protocol: .kitty, window: window))
        XCTAssertEqual(empty[0].keys["f"], "32")
        XCTAssertEqual(try base64Decode(empty.flatMap { $0.payload }), img.pixels)

        // Larger than the window (800 x 460 pixels less a row): the terminal scales the PNG
        // into a cell box keeping the aspect ratio, and raw pixels are scaled here.
        let big = image(1600, 400) { _, _ in (1, 2, 3, 255) }
        let png = try kittyCommands(TerminalGraphics.encode(image: big, png: { [1, 2, 3] }, protocol: .kitty, window: window))
        XCTAssertEqual(png[0].keys["c"], "80"); XCTAssertEqual(png[0].keys["r"], "10")
        let raw = try kittyCommands(TerminalGraphics.encode(image: big, protocol: .kitty, window: window))
        XCTAssertEqual(raw[0].keys["s"], "800"); XCTAssertEqual(raw[0].keys["v"], "200")
        XCTAssertEqual(try base64Decode(raw.flatMap { $0.payload }).count, 800 * 200 * 4)
    }

    // MARK: tmux

    func testTmuxPassthroughDoublesEveryEscape() {
        let inner: [UInt8] = [esc, UInt8(ascii: "_"), UInt8(ascii: "G"), 0x41, esc, esc, 0x42, esc, UInt8(ascii: "\\")]
        let wrapped = Tmux.wrap(inner)
        XCTAssertEqual(wrapped, [esc, UInt8(ascii: "P")] + Array("tmux;".utf8)
                       + [esc, esc, UInt8(ascii: "_"), UInt8(ascii: "G"), 0x41, esc, esc, esc, esc, 0x42, esc, esc, UInt8(ascii: "\\")]
                       + [esc, UInt8(ascii: "\\")])
        // Long output goes in several pieces whose contents join to the original.
        let long = bytes(10000).map { $0 == 0x42 ? esc : $0 }
        let pieces = Tmux.wrap(long, piece: 1000)
        let back = unwrapTmux(pieces)
        XCTAssertEqual(back.pieces, 10)
        XCTAssertEqual(back.content, long)
        XCTAssertEqual(back.trailing, [])
    }

    func testEveryGraphicsProtocolPassesThroughTmux() throws {
        let img = image(40, 30) { x, y in (UInt8(x * 6), UInt8(y * 8), 99, 255) }
        let window = TerminalWindow(columns: 80, rows: 24, pixelWidth: 800, pixelHeight: 480)
        let png = bytes(7000)
        for p in [TerminalImageProtocol.kitty, .iterm, .sixel] {
            let plain = TerminalGraphics.encode(image: img, png: { png }, protocol: p, window: window)
            let wrapped = TerminalGraphics.encode(image: img, png: { png }, protocol: p, window: window, tmux: true)
            let back = unwrapTmux(wrapped)
            XCTAssertFalse(back.trailing.contains(esc), "\(p): an escape outside the passthrough")
            if p == .kitty {
                // One passthrough per chunk, the cursor kept still (C=1) and moved by
                // newlines tmux sees: 40x30 pixels in 10x20 cells are 2 rows.
                XCTAssertEqual(back.pieces, 3)
                XCTAssertEqual(back.trailing, [0x0A, 0x0A])
                let commands = try kittyCommands(back.content)
                XCTAssertEqual(commands[0].keys["C"], "1")
                XCTAssertEqual(try base64Decode(commands.flatMap { $0.payload }), png)
            } else {
                XCTAssertEqual(back.pieces, 1)
                XCTAssertEqual(back.content + back.trailing, plain, "\(p)")
            }
        }
        // Text needs no passthrough.
        XCTAssertEqual(TerminalGraphics.encode(image: img, protocol: .text, window: window, tmux: true),
                       TerminalGraphics.encode(image: img, protocol: .text, window: window))
    }

    // MARK: iTerm2

    func testITermInlineImage() throws {
        let img = image(20, 10) { _, _ in (0, 0, 0, 255) }
        let png = bytes(5000)
        let out = TerminalGraphics.encode(image: img, png: { png }, protocol: .iterm,
                                          window: TerminalWindow(columns: 80, rows: 24))
        let head = Array("\u{1B}]1337;File=inline=1;size=5000;preserveAspectRatio=1:".utf8)
        XCTAssertEqual(Array(out.prefix(head.count)), head)
        XCTAssertEqual(Array(out.suffix(2)), [0x07, 0x0A])
        XCTAssertEqual(try base64Decode(Array(out[head.count..<(out.count - 2)])), png)

        // Too wide for 40 columns of 10 pixels: a cell box that keeps the aspect ratio.
        let wide = image(800, 100) { _, _ in (0, 0, 0, 255) }
        let scaled = String(decoding: TerminalGraphics.encode(image: wide, png: { png }, protocol: .iterm,
                                                              window: TerminalWindow(columns: 40, rows: 24)), as: UTF8.self)
        XCTAssertTrue(scaled.hasPrefix("\u{1B}]1337;File=inline=1;size=5000;width=40;height=3;preserveAspectRatio=1:"), scaled.prefix(80).description)
    }

    /// Without PNG bytes iTerm2 gets this module's own (uncompressed) PNG; Python's zlib
    /// and a plain reading of the chunks must find the pixels in it.
    func testOwnPNGDecodesWithPythonZlib() throws {
        XCTAssertEqual(PNGWriter.crc32(Array("IEND".utf8)), 0xAE42_6082)
        XCTAssertEqual(PNGWriter.adler32(Array("Wikipedia".utf8)), 0x11E6_0398)
        // Large enough for two stored deflate blocks (more than 65535 bytes).
        let img = image(130, 140) { x, y in (UInt8(x), UInt8(y), UInt8((x * y) & 255), UInt8(255 - x)) }
        let png = PNGWriter.encode(img)
        let path = NSTemporaryDirectory() + "/tg-\(getpid()).png"
        try Data(png).write(to: URL(fileURLWithPath: path))
        defer { try? FileManager.default.removeItem(atPath: path) }
        let script = """
        import struct, sys, zlib
        d = open(sys.argv[1], 'rb').read()
        assert d[:8] == b'\\x89PNG\\r\\n\\x1a\\n'
        i, idat, ihdr = 8, b'', None
        while i < len(d):
            n, = struct.unpack('>I', d[i:i+4]); t = d[i+4:i+8]; body = d[i+8:i+8+n]
            assert struct.unpack('>I', d[i+8+n:i+12+n])[0] == zlib.crc32(t + body), t
            if t == b'IHDR': ihdr = struct.unpack('>IIBBBBB', body)
            if t == b'IDAT': idat += body
            i += 12 + n
        w, h = ihdr[0], ihdr[1]
        assert ihdr[2:] == (8, 6, 0, 0, 0), ihdr
        raw = zlib.decompress(idat)
        assert len(raw) == h * (w * 4 + 1)
        rows = [raw[y * (w * 4 + 1):(y + 1) * (w * 4 + 1)] for y in range(h)]
        assert all(r[0] == 0 for r in rows)
        sys.stdout.write('%d %d %s' % (w, h, b''.join(r[1:] for r in rows).hex()))
        """
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        process.arguments = ["-c", script, path]
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 0)
        let hex = img.pixels.map { String(format: "%02x", $0) }.joined()
        XCTAssertEqual(output, "130 140 " + hex)
    }

    // MARK: half blocks

    func testHalfBlocksExactBytesForTwoByTwo() {
        let img = RGBAImage(width: 2, height: 2, pixels: [255, 0, 0, 255, 0, 255, 0, 255,
                                                          0, 0, 255, 255, 255, 255, 255, 255])
        let window = TerminalWindow(columns: 80, rows: 24)
        let out = String(decoding: TerminalGraphics.encode(image: img, protocol: .text, window: window), as: UTF8.self)
        XCTAssertEqual(out, "\u{1B}[38;2;255;0;0m\u{1B}[48;2;0;0;255m\u{2580}\u{1B}[38;2;0;255;0m\u{1B}[48;2;255;255;255m\u{2580}\u{1B}[0m\n")
        let out256 = String(decoding: TerminalGraphics.encode(image: img, protocol: .text, window: window, truecolor: false), as: UTF8.self)
        XCTAssertEqual(out256, "\u{1B}[38;5;196m\u{1B}[48;5;21m\u{2580}\u{1B}[38;5;46m\u{1B}[48;5;231m\u{2580}\u{1B}[0m\n")
    }

    func testHalfBlocksTransparencyOddHeightAndRepeatedColours() {
        // Row 0: red, transparent, red; row 1: transparent, blue, red; row 2: green x3.
        let r: [UInt8] = [255, 0, 0, 255], t: [UInt8] = [9, 9, 9, 0], b: [UInt8] = [0, 0, 255, 255], g: [UInt8] = [0, 255, 0, 255]
        let img = RGBAImage(width: 3, height: 3, pixels: r + t + r + t + b + r + g + g + g)
        let out = String(decoding: TerminalGraphics.encode(image: img, protocol: .text, window: TerminalWindow(columns: 80, rows: 24)), as: UTF8.self)
        let e = "\u{1B}["
        XCTAssertEqual(out, "\(e)38;2;255;0;0m\u{2580}"                     // red over default
                       + "\(e)38;2;0;0;255m\u{2584}"                          // default over blue: lower block
                       + "\(e)38;2;255;0;0m\(e)48;2;255;0;0m\u{2580}\(e)0m\n" // red over red
                       + "\(e)38;2;0;255;0m\u{2580}\u{2580}\u{2580}\(e)0m\n") // last row: top pixels only, colour set once
        // A fully transparent cell is a space on the default background.
        let clear = RGBAImage(width: 1, height: 2, pixels: t + t)
        XCTAssertEqual(TerminalGraphics.encode(image: clear, protocol: .text, window: TerminalWindow(columns: 80, rows: 24)), Array(" \u{1B}[0m\n".utf8))
    }

    func testHalfBlocksFitTheWindow() {
        let img = image(400, 300) { x, y in (UInt8(x & 255), UInt8(y & 255), 0, 255) }
        // 40 columns, 10 rows (9 for the picture, 18 half-block rows); square half cells.
        let window = TerminalWindow(columns: 40, rows: 10)
        let g = HalfBlocks.grid(for: img, window: window)
        XCTAssertEqual(g.width, 24); XCTAssertEqual(g.height, 18)
        let text = String(decoding: TerminalGraphics.encode(image: img, protocol: .text, window: window), as: UTF8.self)
        let lines = text.split(separator: "\n")
        XCTAssertEqual(lines.count, 9)
        for line in lines {
            XCTAssertEqual(line.filter { $0 == "\u{2580}" }.count, 24)
            XCTAssertTrue(line.hasSuffix("\u{1B}[0m"))
        }
        // Cells 8x16 pixels make half cells square too; 8x8 cells make them twice as wide as tall.
        XCTAssertEqual(HalfBlocks.grid(for: img, window: TerminalWindow(columns: 40, rows: 10, pixelWidth: 320, pixelHeight: 80)).height, 18 / 1)
        let wideCells = HalfBlocks.grid(for: image(40, 40) { _, _ in (0, 0, 0, 255) },
                                        window: TerminalWindow(columns: 100, rows: 100, pixelWidth: 800, pixelHeight: 800))
        XCTAssertEqual(wideCells.width, 40); XCTAssertEqual(wideCells.height, 80)
    }

    func testXterm256Palette() {
        XCTAssertEqual(HalfBlocks.xterm256(0, 0, 0), 16)
        XCTAssertEqual(HalfBlocks.xterm256(255, 255, 255), 231)
        XCTAssertEqual(HalfBlocks.xterm256(128, 128, 128), 244)  // grey 8 + 10*12 = 128
        XCTAssertEqual(HalfBlocks.xterm256(95, 135, 175), 16 + 36 * 1 + 6 * 2 + 3)
    }

    // MARK: sixel

    struct DecodedSixel {
        var parameters: [Int] = []
        var raster: [Int] = []
        var registers: [Int: (Int, Int, Int)] = [:]
        /// Per pixel: the register drawn last, nil where nothing was drawn.
        var pixels: [Int?] = []
        var width = 0, height = 0
        var longestRepeat = 0
    }

    /// A sixel decoder for what the encoder writes (RGB registers, repeats, `$`, `-`);
    /// it fails the test on anything else.
    func decodeSixel(_ out: [UInt8]) throws -> DecodedSixel {
        var d = DecodedSixel()
        XCTAssertEqual(Array(out.prefix(2)), [esc, UInt8(ascii: "P")])
        XCTAssertEqual(Array(out.suffix(2)), [esc, UInt8(ascii: "\\")])
        var i = 2
        func number() -> Int {
            var n = 0, digits = 0
            while i < out.count, out[i] >= 48, out[i] <= 57 { n = n * 10 + Int(out[i] - 48); i += 1; digits += 1 }
            XCTAssertGreaterThan(digits, 0, "a number expected at byte \(i)")
            return n
        }
        func numbers() -> [Int] {
            var list = [number()]
            while i < out.count, out[i] == UInt8(ascii: ";") { i += 1; list.append(number()) }
            return list
        }
        d.parameters = numbers()
        XCTAssertEqual(out[i], UInt8(ascii: "q")); i += 1
        XCTAssertEqual(out[i], UInt8(ascii: "\"")); i += 1
        d.raster = numbers()
        XCTAssertEqual(d.raster.count, 4)
        d.width = d.raster[2]; d.height = d.raster[3]
        d.pixels = [Int?](repeating: nil, count: d.width * d.height)
        var x = 0, band = 0, color = -1
        func put(_ ch: UInt8, _ count: Int) {
            let v = Int(ch) - 63
            for _ in 0..<count {
                for bit in 0..<6 where v & (1 << bit) != 0 {
                    let y = band * 6 + bit
                    XCTAssertTrue(x < d.width && y < d.height, "sixel at \(x),\(y) outside \(d.width)x\(d.height)")
                    if x < d.width && y < d.height { d.pixels[y * d.width + x] = color }
                }
                x += 1
            }
        }
        while i < out.count - 2 {
            let c = out[i]
            switch c {
            case UInt8(ascii: "#"):
                i += 1
                let n = number()
                if out[i] == UInt8(ascii: ";") {
                    i += 1
                    let spec = numbers()
                    XCTAssertEqual(spec.count, 4); XCTAssertEqual(spec[0], 2, "RGB colour space")
                    XCTAssertTrue(spec[1...].allSatisfy { (0...100).contains($0) })
                    d.registers[n] = (spec[1], spec[2], spec[3])
                } else {
                    XCTAssertNotNil(d.registers[n], "register \(n) used before it is defined")
                    color = n
                }
            case UInt8(ascii: "!"):
                i += 1
                let n = number()
                d.longestRepeat = max(d.longestRepeat, n)
                XCTAssertTrue((63...126).contains(out[i])); put(out[i], n); i += 1
            case UInt8(ascii: "$"): x = 0; i += 1
            case UInt8(ascii: "-"): x = 0; band += 1; i += 1
            case 63...126:
                XCTAssertGreaterThanOrEqual(color, 0, "data before a colour"); put(c, 1); i += 1
            default:
                XCTFail("unexpected byte \(c) at \(i)"); return d
            }
        }
        return d
    }

    func testSixelExactBytesForOnePixel() {
        let red = RGBAImage(width: 1, height: 1, pixels: [255, 0, 0, 255])
        XCTAssertEqual(String(decoding: Sixel.encode(red), as: UTF8.self), "\u{1B}P0;1;0q\"1;1;1;1#0;2;100;0;0#0@\u{1B}\\")
        // Two colours in a band of 7 rows: `$` between colours, `-` between bands.
        let two = image(2, 7) { x, y in y == 6 ? (0, 0, 0, 255) : x == 0 ? (255, 255, 255, 255) : (0, 0, 255, 255) }
        XCTAssertEqual(String(decoding: Sixel.encode(two), as: UTF8.self),
                       "\u{1B}P0;1;0q\"1;1;2;7#0;2;100;100;100#1;2;0;0;100#2;2;0;0;0#0~$#1?~-#2@@\u{1B}\\")
        XCTAssertEqual(TerminalGraphics.encode(image: red, protocol: .sixel, window: TerminalWindow(columns: 80, rows: 24)),
                       Sixel.encode(red) + [0x0A])
    }

    /// A plot-like picture (colormap bands, white background, black frame, transparent
    /// corner) has few colours: they are kept exact and decode to the input's pixels.
    func testSixelDecodesToTheColormapImage() throws {
        var ramp: [(UInt8, UInt8, UInt8)] = []
        for k in 0..<200 {
            ramp.append((UInt8(68 + k / 2), UInt8(1 + k), UInt8(84 + k / 3)))
        }
        let img = image(173, 59) { x, y in
            if x < 4 && y < 4 { return (0, 0, 0, 0) }
            if x == 10 || y == 50 { return (0, 0, 0, 255) }
            if x < 10 || y > 50 { return (255, 255, 255, 255) }
            let c = ramp[(x * 7 + y * 3) % 200]
            return (c.0, c.1, c.2, 255)
        }
        let out = Sixel.encode(img)
        let d = try decodeSixel(out)
        XCTAssertEqual(d.parameters, [0, 1, 0]); XCTAssertEqual(d.raster, [1, 1, 173, 59])
        XCTAssertLessThanOrEqual(d.registers.count, 256)
        for y in 0..<59 {
            for x in 0..<173 {
                let p = (y * 173 + x) * 4
                guard let reg = d.pixels[y * 173 + x] else {
                    XCTAssertLessThan(img.pixels[p + 3], 128, "pixel \(x),\(y) not drawn"); continue
                }
                XCTAssertGreaterThanOrEqual(img.pixels[p + 3], 128, "transparent pixel \(x),\(y) drawn")
                let rgb = try XCTUnwrap(d.registers[reg])
                let want = (Sixel.percent(img.pixels[p]), Sixel.percent(img.pixels[p + 1]), Sixel.percent(img.pixels[p + 2]))
                guard rgb == want else { XCTFail("pixel \(x),\(y): \(rgb) != \(want)"); return }
            }
        }
    }

    /// More than 256 colours: median cut; the decoded picture is the quantized one and
    /// stays close to the input.
    func testSixelMedianCutOnAManyColourImage() throws {
        let img = image(160, 90) { x, y in (UInt8(x * 255 / 159), UInt8(y * 255 / 89), UInt8((x + y) * 255 / 248), 255) }
        let q = Sixel.quantize(img)
        XCTAssertEqual(q.palette.count, 256)
        let d = try decodeSixel(Sixel.encode(q))
        var worst = 0, total = 0
        for i in 0..<(160 * 90) {
            let reg = try XCTUnwrap(d.pixels[i])
            XCTAssertEqual(reg, Int(q.indices[i]))
            let p = q.palette[reg]
            let rgb = try XCTUnwrap(d.registers[reg])
            XCTAssertTrue(rgb == (Sixel.percent(p.r), Sixel.percent(p.g), Sixel.percent(p.b)))
            let e = max(abs(Int(p.r) - Int(img.pixels[i * 4])), abs(Int(p.g) - Int(img.pixels[i * 4 + 1])), abs(Int(p.b) - Int(img.pixels[i * 4 + 2])))
            worst = max(worst, e); total += e
        }
        XCTAssertLessThanOrEqual(worst, 40, "largest channel error")
        XCTAssertLessThanOrEqual(Double(total) / Double(160 * 90), 10, "mean channel error")
    }

    func testSixelRunLengthsAcrossBoundaries() throws {
        // Stripes of two colours whose lengths cross 63, 64, 255 and 256; 8 rows (two bands).
        let lengths = [1, 2, 3, 4, 5, 62, 63, 64, 65, 127, 128, 254, 255, 256, 257, 511, 600]
        var colourOf: [Bool] = []
        for (k, n) in lengths.enumerated() { colourOf += [Bool](repeating: k % 2 == 0, count: n) }
        let w = colourOf.count
        let img = image(w, 8) { x, _ in colourOf[x] ? (255, 0, 0, 255) : (0, 0, 255, 255) }
        let out = Sixel.encode(img)
        let d = try decodeSixel(out)
        XCTAssertLessThanOrEqual(d.longestRepeat, Sixel.maxRun)
        for y in 0..<8 {
            for x in 0..<w {
                let rgb = try XCTUnwrap(d.registers[try XCTUnwrap(d.pixels[y * w + x])])
                XCTAssertTrue(rgb == (colourOf[x] ? (100, 0, 0) : (0, 0, 100)), "\(x),\(y)")
            }
        }
        // The encoder itself: runs of 4 and more use `!`, shorter ones repeat the character.
        for n in [1, 2, 3, 4, 63, 64, 255, 256, 600] {
            var run = [UInt8]()
            Sixel.appendRun(UInt8(ascii: "~"), count: n, to: &run)
            let expected: String
            switch n {
            case 1...3: expected = String(repeating: "~", count: n)
            case 256: expected = "!255~~"
            case 600: expected = "!255~!255~!90~"
            default: expected = "!\(n)~"
            }
            XCTAssertEqual(String(decoding: run, as: UTF8.self), expected)
        }
    }

    func testSixelScaledToTheWindow() throws {
        let img = image(1000, 300) { x, _ in x < 500 ? (255, 255, 255, 255) : (0, 0, 0, 255) }
        // 50 columns of 8 pixels, 11 rows (10 for the picture) of 16: 400 x 160 pixels.
        let window = TerminalWindow(columns: 50, rows: 11, pixelWidth: 400, pixelHeight: 176)
        let out = TerminalGraphics.encode(image: img, protocol: .sixel, window: window)
        let d = try decodeSixel(Array(out.dropLast()))
        XCTAssertEqual(d.width, 400); XCTAssertEqual(d.height, 120)
        XCTAssertTrue(try XCTUnwrap(d.registers[try XCTUnwrap(d.pixels[0])]) == (100, 100, 100))
        XCTAssertTrue(try XCTUnwrap(d.registers[try XCTUnwrap(d.pixels[399])]) == (0, 0, 0))
    }

    /// libsixel (Debian's libsixel1, opened with dlopen) decodes the output to the same
    /// pixels: a second opinion from the reference implementation's decoder.
    func testLibsixelDecodesTheSamePixels() throws {
        guard let lib = dlopen("libsixel.so.1", RTLD_NOW) else { throw XCTSkip("libsixel.so.1 is not installed") }
        defer { dlclose(lib) }
        typealias DecodeRaw = @convention(c) (UnsafeMutablePointer<UInt8>?, Int32,
                                              UnsafeMutablePointer<UnsafeMutablePointer<UInt8>?>?,
                                              UnsafeMutablePointer<Int32>?, UnsafeMutablePointer<Int32>?,
                                              UnsafeMutablePointer<UnsafeMutablePointer<UInt8>?>?,
                                              UnsafeMutablePointer<Int32>?, OpaquePointer?) -> Int32
        let decode = unsafeBitCast(try XCTUnwrap(dlsym(lib, "sixel_decode_raw")), to: DecodeRaw.self)
        // Many colours (median cut) with long flat runs and a one-pixel line.
        let img = image(333, 101) { x, y in
            y == 50 ? (0, 0, 0, 255) : x > 250 ? (255, 255, 255, 255)
                : (UInt8((x * 3) & 255), UInt8((y * 5 + x) & 255), UInt8((x ^ y) & 255), 255)
        }
        let q = Sixel.quantize(img)
        var out = Sixel.encode(q)
        var pixels: UnsafeMutablePointer<UInt8>? = nil, palette: UnsafeMutablePointer<UInt8>? = nil
        var w: Int32 = 0, h: Int32 = 0, colors: Int32 = 0
        let status = out.withUnsafeMutableBufferPointer {
            decode($0.baseAddress, Int32($0.count), &pixels, &w, &h, &palette, &colors, nil)
        }
        defer { free(pixels); free(palette) }
        XCTAssertEqual(status, 0, "SIXEL_OK")
        XCTAssertEqual(w, 333); XCTAssertEqual(h, 101)
        let px = try XCTUnwrap(pixels), pal = try XCTUnwrap(palette)
        var mismatches = 0
        for i in 0..<(333 * 101) {
            let mine = q.palette[Int(q.indices[i])]
            let theirs = pal + Int(px[i]) * 3  // RGB, 8 bits, from the register's percents
            for (k, v) in [mine.r, mine.g, mine.b].enumerated() where abs(Int(theirs[k]) - (Sixel.percent(v) * 255 + 50) / 100) > 1 {
                mismatches += 1
            }
        }
        XCTAssertEqual(mismatches, 0)
    }

    // MARK: resampling and pixels

    func testBoxFilterAveragesCoveredPixels() {
        let img = RGBAImage(width: 4, height: 2, pixels: [
            0, 0, 0, 255, 100, 0, 0, 255, 10, 20, 30, 255, 10, 20, 30, 255,
            0, 0, 0, 255, 100, 0, 0, 255, 50, 60, 70, 0, 10, 20, 30, 255,
        ])
        let small = Resample.boxFilter(img, width: 2, height: 1)
        // Left: mean of 0,100,0,100; right: the transparent pixel adds no colour, a quarter less alpha.
        XCTAssertEqual(small.pixels, [50, 0, 0, 255, 10, 20, 30, 191])
    }

    func testPremultipliedBGRAFromCairo() {
        // Two pixels per row and a stride of 12: opaque orange, half-transparent blue, padding.
        let cairo: [UInt8] = [0, 128, 255, 255, 64, 0, 0, 128, 9, 9, 9, 9]
        let img = cairo.withUnsafeBytes { RGBAImage(premultipliedBGRA: $0, width: 2, height: 1, stride: 12) }
        XCTAssertEqual(img.pixels, [255, 128, 0, 255, 0, 0, 128, 128])
    }

    func testNoneAndEmptyImagesWriteNothing() {
        let img = image(3, 3) { _, _ in (1, 2, 3, 255) }
        var called = false
        XCTAssertEqual(TerminalGraphics.encode(image: img, png: { called = true; return [1] }, protocol: .none,
                                               window: TerminalWindow(columns: 80, rows: 24)), [])
        for p in [TerminalImageProtocol.text, .sixel] {
            XCTAssertFalse(TerminalGraphics.encode(image: img, png: { called = true; return [1] }, protocol: p,
                                                   window: TerminalWindow(columns: 80, rows: 24)).isEmpty)
        }
        XCTAssertFalse(called, "PNG bytes made for a protocol that does not send them")
        XCTAssertEqual(TerminalGraphics.encode(image: RGBAImage(width: 0, height: 0, pixels: []), protocol: .kitty,
                                               window: TerminalWindow(columns: 80, rows: 24)), [])
    }

    func testWriteAllDeliversEveryByteThroughAPipe() throws {
        var fds: [Int32] = [0, 0]
        XCTAssertEqual(pipe(&fds), 0)
        // More than a pipe holds: the writer blocks until this thread reads.
        let payload = bytes(300_000)
        let writer = fds[1]
        Thread.detachNewThread {
            TerminalGraphics.writeAll(payload, to: writer)
            close(writer)
        }
        var received = [UInt8]()
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = read(fds[0], &buffer, buffer.count)
            if n <= 0 { break }
            received += buffer[0..<n]
        }
        close(fds[0])
        XCTAssertEqual(received, payload)
    }

    // MARK: detection

    func testDetectForcedByNXLUA_PLOT() {
        for p in TerminalImageProtocol.allCases {
            XCTAssertEqual(TerminalGraphics.detect(environment: ["NXLUA_PLOT": p.rawValue, "TERM": "xterm-kitty"], isTerminal: true), p)
            // Forced even without a terminal (to capture the bytes) and under CI.
            XCTAssertEqual(TerminalGraphics.detect(environment: ["NXLUA_PLOT": p.rawValue.uppercased(), "CI": "1"], isTerminal: false), p)
        }
        // An unknown value is ignored.
        XCTAssertEqual(TerminalGraphics.detect(environment: ["NXLUA_PLOT": "png", "TERM": "xterm-kitty"], isTerminal: true), .kitty)
        XCTAssertEqual(TerminalGraphics.detect(environment: ["NXLUA_PLOT": "", "TERM": "xterm"], isTerminal: true), .text)
    }

    func testDetectNothingWithoutATerminal() {
        let kitty = ["TERM": "xterm-kitty", "KITTY_WINDOW_ID": "1"]
        XCTAssertEqual(TerminalGraphics.detect(environment: kitty, isTerminal: true), .kitty)
        XCTAssertEqual(TerminalGraphics.detect(environment: kitty, isTerminal: false), .none)
        XCTAssertEqual(TerminalGraphics.detect(environment: kitty.merging(["CI": "true"]) { $1 }, isTerminal: true), .none)
        XCTAssertEqual(TerminalGraphics.detect(environment: ["TERM": "dumb"], isTerminal: true), .none)
        XCTAssertEqual(TerminalGraphics.detect(environment: [:], isTerminal: true), .none)
        XCTAssertEqual(TerminalGraphics.detect(environment: ["TERM": "xterm-256color", "INSIDE_EMACS": "29.1,comint"], isTerminal: true), .none)
    }

    func testDetectTerminals() {
        let cases: [([String: String], TerminalImageProtocol)] = [
            (["TERM": "xterm-256color"], .text),
            (["TERM": "xterm-256color", "KITTY_WINDOW_ID": "3"], .kitty),
            (["TERM": "xterm-ghostty", "TERM_PROGRAM": "ghostty"], .kitty),
            (["TERM": "xterm-256color", "TERM_PROGRAM": "iTerm.app"], .iterm),
            (["TERM": "xterm-256color", "ITERM_SESSION_ID": "w0t0p0"], .iterm),
            (["TERM": "xterm-256color", "LC_TERMINAL": "iTerm2"], .iterm),   // over ssh
            (["TERM": "xterm-256color", "TERM_PROGRAM": "WezTerm"], .iterm),
            (["TERM": "wezterm", "WEZTERM_PANE": "0"], .iterm),
            (["TERM": "xterm-256color", "TERM_PROGRAM": "mintty"], .iterm),
            (["TERM": "foot"], .sixel),
            (["TERM": "mlterm"], .sixel),
            (["TERM": "xterm-256color", "KONSOLE_VERSION": "230804"], .sixel),
            (["TERM": "xterm-256color", "KONSOLE_VERSION": "210800"], .text),
            (["TERM": "xterm-256color", "TERM_PROGRAM": "vscode"], .text),
            (["TERM": "linux"], .text),
            // tmux: TERM and TERM_PROGRAM are tmux's own; the outer terminal's variables decide.
            (["TERM": "tmux-256color", "TERM_PROGRAM": "tmux", "TMUX": "/tmp/tmux-1000/default,1,0", "KITTY_WINDOW_ID": "1"], .kitty),
            (["TERM": "screen-256color", "TMUX": "/tmp/tmux-1000/default,1,0"], .text),
            // GNU screen passes no graphics.
            (["TERM": "screen", "STY": "1234.pts-0.host", "KITTY_WINDOW_ID": "1"], .text),
            // kitty's own variables win over an iTerm2 LC_TERMINAL left over from ssh.
            (["TERM": "xterm-kitty", "LC_TERMINAL": "iTerm2"], .kitty),
        ]
        for (env, want) in cases {
            XCTAssertEqual(TerminalGraphics.detect(environment: env, isTerminal: true), want, "\(env)")
        }
        XCTAssertTrue(TerminalGraphics.insideTmux(environment: ["TMUX": "/tmp/tmux-1000/default,1,0"]))
        XCTAssertFalse(TerminalGraphics.insideTmux(environment: ["TERM": "tmux-256color"]))
        XCTAssertTrue(TerminalGraphics.truecolor(environment: ["COLORTERM": "truecolor"]))
        XCTAssertTrue(TerminalGraphics.truecolor(environment: ["COLORTERM": "24bit"]))
        XCTAssertFalse(TerminalGraphics.truecolor(environment: ["TERM": "xterm-256color"]))
    }

    func testProcessEnvironmentReadsEnviron() {
        setenv("NXLUA_TG_TEST", "a=b", 1)
        defer { unsetenv("NXLUA_TG_TEST") }
        XCTAssertEqual(TerminalGraphics.processEnvironment()["NXLUA_TG_TEST"], "a=b")
    }
}
