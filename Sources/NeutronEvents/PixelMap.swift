import NDArray
import NeXus

/// Where each event's detector number goes: a pixel index (the order of the detector's
/// detector_number, or consecutive ids), or a cell of a 2-D detector image.
public struct PixelMap: Sendable {
    /// The detector number of each output row (pixels), or nil for an image.
    public let ids: [Int]?
    /// The output's leading shape: (pixels) or (rows, columns) of the image.
    public let shape: [Int]
    /// id - first -> output row, -1 for ids that are not mapped.
    let first: Int
    let lookup: [Int32]
    /// Where the map comes from, for info tables and errors.
    public let source: String

    public var rows: Int { shape.reduce(1, *) }

    init(ids: [Int]?, shape: [Int], first: Int, lookup: [Int32], source: String) {
        self.ids = ids; self.shape = shape; self.first = first; self.lookup = lookup; self.source = source
    }

    /// Consecutive ids first...last, one pixel each (image: reshaped to `imageShape`).
    public static func consecutive(first: Int, last: Int, imageShape: [Int]? = nil) throws -> PixelMap {
        guard last >= first else { throw EventError("pixel ids: last (\(last)) is below first (\(first))") }
        let n = last - first + 1
        guard n <= Int(Int32.max) else { throw EventError("pixel ids \(first)...\(last): too many pixels (\(n))") }
        if let s = imageShape {
            guard s.count == 2, s[0] * s[1] == n else {
                throw EventError("an image of shape (\(s.map(String.init).joined(separator: ", "))) needs \(s.reduce(1, *)) pixels, ids \(first)...\(last) are \(n)")
            }
            return PixelMap(ids: nil, shape: s, first: first, lookup: (0..<n).map { Int32($0) }, source: "event_id \(first)...\(last)")
        }
        return PixelMap(ids: Array(first...last), shape: [n], first: first, lookup: (0..<n).map { Int32($0) }, source: "event_id \(first)...\(last)")
    }

    /// The pixels of an NXdetector: detector_number (or SNS's pixel_id) in stored order;
    /// for an image, the cells by x_pixel_offset/y_pixel_offset when the detector has
    /// them, else detector_number's own 2-D shape.
    public static func detector(_ d: NXGroup, image: Bool) throws -> PixelMap {
        let place = "\(d.file.path): \(d.path)"
        func numbers(_ name: String) throws -> (values: [Double], shape: [Int])? {
            guard let f = try d.child(name) as? NXField else { return nil }
            guard case .array(let a) = try f.read(nil) else { throw EventError("\(place)/\(name): numbers expected") }
            return (a.doubles(), a.shape)
        }
        guard let (numbersRead, numberShape) = try numbers("detector_number") ?? numbers("pixel_id") else {
            throw EventError("\(place): an NXdetector with detector_number (or pixel_id) is expected to map pixels")
        }
        let ids = numbersRead.map { Int($0) }
        guard let lo = ids.min(), let hi = ids.max() else { throw EventError("\(place)/detector_number: no pixels") }
        guard hi - lo < 1 << 30 else { throw EventError("\(place)/detector_number: ids span \(lo)...\(hi), too wide to map") }
        var lookup = [Int32](repeating: -1, count: hi - lo + 1)
        if !image {
            for (k, id) in ids.enumerated() where lookup[id - lo] < 0 { lookup[id - lo] = Int32(k) }
            return PixelMap(ids: ids, shape: [ids.count], first: lo, lookup: lookup, source: "\(d.path)/detector_number")
        }
        if let (x, _) = try numbers("x_pixel_offset"), let (y, _) = try numbers("y_pixel_offset") {
            guard x.count == ids.count, y.count == ids.count else {
                throw EventError("\(place): x_pixel_offset (\(x.count)) and y_pixel_offset (\(y.count)) need one value per detector_number (\(ids.count))")
            }
            let xs = distinct(x), ys = distinct(y)
            guard xs.count * ys.count <= 1 << 28 else { throw EventError("\(place): the pixel offsets make an image of \(ys.count) x \(xs.count), too large") }
            for (k, id) in ids.enumerated() where lookup[id - lo] < 0 {
                lookup[id - lo] = Int32(position(y[k], ys) * xs.count + position(x[k], xs))
            }
            return PixelMap(ids: nil, shape: [ys.count, xs.count], first: lo, lookup: lookup,
                            source: "\(d.path)/x_pixel_offset, y_pixel_offset")
        }
        guard numberShape.count == 2 else {
            throw EventError("\(place): an image needs x_pixel_offset and y_pixel_offset, or a 2-D detector_number; detector_number has shape (\(numberShape.map(String.init).joined(separator: ", ")))")
        }
        for (k, id) in ids.enumerated() where lookup[id - lo] < 0 { lookup[id - lo] = Int32(k) }
        return PixelMap(ids: nil, shape: numberShape, first: lo, lookup: lookup, source: "\(d.path)/detector_number")
    }

    /// Sorted distinct values, values closer than a millionth of the span merged.
    static func distinct(_ v: [Double]) -> [Double] {
        let s = v.sorted()
        guard let a = s.first, let b = s.last else { return [] }
        let tol = (b - a) * 1e-6
        var out: [Double] = []
        for x in s where out.last.map({ x - $0 > tol }) ?? true { out.append(x) }
        return out
    }

    static func position(_ x: Double, _ sorted: [Double]) -> Int {
        var a = 0, b = sorted.count - 1
        while a < b {  // the first value >= x - tolerance
            let m = (a + b) >> 1
            if sorted[m] < x - 1e-9 * max(1, abs(x)) { a = m + 1 } else { b = m }
        }
        if a > 0, abs(sorted[a - 1] - x) < abs(sorted[a] - x) { return a - 1 }
        return a
    }
}
