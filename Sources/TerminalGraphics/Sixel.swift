// DEC sixel graphics, encoded here (no libsixel): the picture reduced to at most 256
// colours, then `ESC P 0;1;0 q "1;1;W;H`, the colour registers `#n;2;r;g;b` (RGB in
// percent), and bands of six pixel rows: for each colour used in a band, `#n` and one
// character per column (63 + the six bits of the rows that have that colour), runs
// written `!count<char>`, `$` back to the band's start for the next colour, `-` to the
// next band; `ESC \` ends it. P2 = 1: pixels no colour sets (transparent ones) keep
// the terminal's background.

enum Sixel {
    /// The longest run written as one `!count` (no decoder we know needs less; a run
    /// longer than this is written as several).
    static let maxRun = 255

    /// A picture as palette indices; `transparent` marks pixels no colour is drawn for.
    struct Indexed {
        static let transparent: UInt16 = 0xFFFF
        var width: Int
        var height: Int
        /// RGB per register, 8 bits per channel.
        var palette: [(r: UInt8, g: UInt8, b: UInt8)]
        var indices: [UInt16]
    }

    static func encode(_ image: RGBAImage) -> [UInt8] {
        encode(quantize(image))
    }

    // MARK: colours

    /// At most 256 colours: the image's own colours when there are that few (a plot's
    /// flat colours stay exact), else median cut over a 5-bit-per-channel histogram
    /// (boxes split at the pixel-weighted median of their longest side; each colour the
    /// mean of its pixels) with every histogram cell mapped to its nearest colour.
    /// Pixels with alpha < 128 are transparent.
    static func quantize(_ image: RGBAImage, maxColors: Int = 256) -> Indexed {
        let n = image.width * image.height
        let px = image.pixels
        var indices = [UInt16](repeating: Indexed.transparent, count: n)

        // Exact colours, while there are few enough.
        var exact: [UInt32: UInt16] = [:]
        var palette: [(r: UInt8, g: UInt8, b: UInt8)] = []
        var lastKey: UInt32 = 0xFFFF_FFFF, lastIndex: UInt16 = 0
        var tooMany = false
        for i in 0..<n where px[i * 4 + 3] >= 128 {
            let key = UInt32(px[i * 4]) << 16 | UInt32(px[i * 4 + 1]) << 8 | UInt32(px[i * 4 + 2])
            if key != lastKey {
                if let k = exact[key] {
                    lastIndex = k
                } else {
                    guard palette.count < maxColors else { tooMany = true; break }
                    lastIndex = UInt16(palette.count)
                    exact[key] = lastIndex
                    palette.append((px[i * 4], px[i * 4 + 1], px[i * 4 + 2]))
                }
                lastKey = key
            }
            indices[i] = lastIndex
        }
        if !tooMany {
            return Indexed(width: image.width, height: image.height, palette: palette, indices: indices)
        }

        // Histogram of 5-bit cells with the exact sums of their pixels.
        var count = [Int](repeating: 0, count: 32768)
        var sums = [Int](repeating: 0, count: 32768 * 3)
        for i in 0..<n where px[i * 4 + 3] >= 128 {
            let r = Int(px[i * 4]), g = Int(px[i * 4 + 1]), b = Int(px[i * 4 + 2])
            let cell = (r >> 3) << 10 | (g >> 3) << 5 | (b >> 3)
            count[cell] += 1
            sums[cell * 3] += r; sums[cell * 3 + 1] += g; sums[cell * 3 + 2] += b
        }
        var cells = (0..<32768).filter { count[$0] > 0 }
        // Boxes are ranges of `cells`, which is reordered as boxes split; each box keeps
        // its pixel count, longest side and that side's channel.
        struct Box { var range: Range<Int>; var pixels: Int; var length: Int; var channel: Int }
        func channel(_ cell: Int, _ c: Int) -> Int { (cell >> (10 - 5 * c)) & 31 }
        func makeBox(_ range: Range<Int>) -> Box {
            var lo = (31, 31, 31), hi = (0, 0, 0), pixels = 0
            for k in range {
                let cell = cells[k]
                let r = cell >> 10, g = cell >> 5 & 31, b = cell & 31
                lo = (min(lo.0, r), min(lo.1, g), min(lo.2, b)); hi = (max(hi.0, r), max(hi.1, g), max(hi.2, b))
                pixels += count[cell]
            }
            let sides = [hi.0 - lo.0, hi.1 - lo.1, hi.2 - lo.2]
            let c = sides[1] > sides[0] ? (sides[2] > sides[1] ? 2 : 1) : (sides[2] > sides[0] ? 2 : 0)
            return Box(range: range, pixels: pixels, length: sides[c], channel: c)
        }
        var boxes = [makeBox(0..<cells.count)]
        while boxes.count < maxColors {
            // The box to split: the most pixels times its longest side.
            var pick = -1, pickScore = 0
            for (bi, box) in boxes.enumerated() where box.length > 0 && box.pixels * box.length > pickScore {
                pick = bi; pickScore = box.pixels * box.length
            }
            guard pick >= 0 else { break }
            let box = boxes[pick]
            let c = box.channel
            cells[box.range].sort { channel($0, c) < channel($1, c) }
            // The cut: after the cell that reaches half the box's pixels, leaving at least
            // one cell on each side (a side longer than 0 means two cells or more).
            var acc = 0, cut = box.range.upperBound - 1
            for k in box.range {
                acc += count[cells[k]]
                if acc * 2 >= box.pixels { cut = k + 1; break }
            }
            cut = min(max(cut, box.range.lowerBound + 1), box.range.upperBound - 1)
            boxes[pick] = makeBox(box.range.lowerBound..<cut)
            boxes.append(makeBox(cut..<box.range.upperBound))
        }
        palette = boxes.map { box in
            var t = 0, r = 0, g = 0, b = 0
            for k in box.range { let cell = cells[k]; t += count[cell]; r += sums[cell * 3]; g += sums[cell * 3 + 1]; b += sums[cell * 3 + 2] }
            return (UInt8((r + t / 2) / t), UInt8((g + t / 2) / t), UInt8((b + t / 2) / t))
        }
        // Each occupied cell to the palette colour nearest its mean.
        var cellIndex = [UInt16](repeating: 0, count: 32768)
        for cell in cells {
            let t = count[cell]
            let r = (sums[cell * 3] + t / 2) / t, g = (sums[cell * 3 + 1] + t / 2) / t, b = (sums[cell * 3 + 2] + t / 2) / t
            var best = 0, bestD = Int.max
            for (pi, p) in palette.enumerated() {
                let dr = Int(p.r) - r, dg = Int(p.g) - g, db = Int(p.b) - b
                let d = dr * dr + dg * dg + db * db
                if d < bestD { best = pi; bestD = d }
            }
            cellIndex[cell] = UInt16(best)
        }
        for i in 0..<n where px[i * 4 + 3] >= 128 {
            let cell = Int(px[i * 4] >> 3) << 10 | Int(px[i * 4 + 1] >> 3) << 5 | Int(px[i * 4 + 2] >> 3)
            indices[i] = cellIndex[cell]
        }
        return Indexed(width: image.width, height: image.height, palette: palette, indices: indices)
    }

    /// 0-255 to sixel's 0-100 percent, rounded.
    static func percent(_ v: UInt8) -> Int { (Int(v) * 100 + 127) / 255 }

    // MARK: sixel data

    static func encode(_ picture: Indexed) -> [UInt8] {
        let w = picture.width, h = picture.height
        var out = [UInt8]()
        out.reserveCapacity(w * h / 2 + 64)
        out += [0x1B, UInt8(ascii: "P")]
        out += Array("0;1;0q\"1;1;\(w);\(h)".utf8)
        for (i, p) in picture.palette.enumerated() {
            out += Array("#\(i);2;\(percent(p.r));\(percent(p.g));\(percent(p.b))".utf8)
        }
        let colors = picture.palette.count
        // One band's bits per colour and column, cleared for the colours a band used.
        var bits = [UInt8](repeating: 0, count: max(1, colors) * w)
        var firstX = [Int](repeating: Int.max, count: colors)
        var lastX = [Int](repeating: -1, count: colors)
        var used: [Int] = []
        var band = 0
        while band * 6 < h {
            used.removeAll(keepingCapacity: true)
            for dy in 0..<min(6, h - band * 6) {
                let y = band * 6 + dy
                let bit = UInt8(1) << UInt8(dy)
                for x in 0..<w {
                    let c = picture.indices[y * w + x]
                    guard c != Indexed.transparent else { continue }
                    let ci = Int(c)
                    if lastX[ci] < 0 { used.append(ci) }
                    bits[ci * w + x] |= bit
                    if x < firstX[ci] { firstX[ci] = x }
                    if x > lastX[ci] { lastX[ci] = x }
                }
            }
            used.sort()
            for (k, ci) in used.enumerated() {
                if k > 0 { out.append(UInt8(ascii: "$")) }
                out.append(UInt8(ascii: "#"))
                appendNumber(ci, to: &out)
                // Leading columns without this colour: one run of empty sixels.
                if firstX[ci] > 0 { appendRun(63, count: firstX[ci], to: &out) }
                var x = firstX[ci]
                let row = ci * w
                while x <= lastX[ci] {
                    let v = bits[row + x]
                    var end = x + 1
                    while end <= lastX[ci] && bits[row + end] == v { end += 1 }
                    appendRun(63 + v, count: end - x, to: &out)
                    x = end
                }
                for x in firstX[ci]...lastX[ci] { bits[row + x] = 0 }
                firstX[ci] = Int.max
                lastX[ci] = -1
            }
            band += 1
            if band * 6 < h { out.append(UInt8(ascii: "-")) }
        }
        out += [0x1B, UInt8(ascii: "\\")]
        return out
    }

    /// `count` copies of the sixel character `ch`: `!count ch` when shorter.
    static func appendRun(_ ch: UInt8, count: Int, to out: inout [UInt8]) {
        var left = count
        while left > 0 {
            let n = min(left, maxRun)
            if n > 3 {
                out.append(UInt8(ascii: "!"))
                appendNumber(n, to: &out)
                out.append(ch)
            } else {
                for _ in 0..<n { out.append(ch) }
            }
            left -= n
        }
    }

    static func appendNumber(_ n: Int, to out: inout [UInt8]) {
        if n >= 10 { appendNumber(n / 10, to: &out) }
        out.append(UInt8(48 + n % 10))
    }
}
