#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import NDArray
import NeXus

/// A peak found in a rotation scan: centroid (pixel x, y and frame z), the spread along
/// each axis (the square root of the second moment), the integrated counts above the local
/// background, and the highest pixel.
public struct FoundPeak: Sendable, Equatable {
    public var x, y, z: Double
    public var sigx, sigy, sigz: Double
    public var intensity: Double
    public var background: Double
    public var maxValue: Double
}

/// 3-D peak search as NXRefine's nxfind: in each frame, the local maxima above `threshold`
/// at least `minPixels` apart (as skimage's peak_local_max); maxima within `linkDistance`
/// of a blob of the previous frame continue it (the blob keeps its brightest point); a blob
/// not continued is refined over a box of +-minPixels around its brightest point and kept
/// if both its x and y spreads are >= 0.5 pixel.
///
/// Frames arrive in order, in blocks of any size; the frames a box may still need are kept
/// (at most 2 minPixels + 4 behind the newest), so memory does not grow with the scan and
/// no peak is split at a block edge. Masked and negative pixels count as empty.
///
/// Refinement (nxlua's, more exact than nxfind's plain box moments): the background is the
/// mean of the box's side faces (bright pixels left out); the centroid and spreads are
/// moments of the counts above it, first of the pixels clearly above it, then of all
/// within +-2.5 spreads of the centroid, iterated; `intensity` is the box sum above the
/// background (nxfind reports the raw box sum).
public final class PeakFinder: @unchecked Sendable {
    public struct Options: Sendable {
        public var threshold = 50000.0
        public var minPixels = 10
        public var linkDistance = 10.0
        public var minSigma = 0.5
        public init() {}
    }

    public let rows: Int, columns: Int
    public let options: Options
    private let mask: [UInt8]?

    private struct Blob {
        var x, y, z: Int
        var value: Double
        var lastFrame: Int
    }
    private var open: [Blob] = []
    private var closed: [Blob] = []
    /// Kept frames: (first frame index, block (n, rows, columns) of int32 or float64).
    private var kept: [(first: Int, block: NDArray)] = []
    private var nextFrame: Int?
    public private(set) var peaks: [FoundPeak] = []
    public private(set) var firstFrame: Int?
    public private(set) var framesSeen = 0
    /// The largest unmasked pixel value seen (for "no peak above the threshold" messages).
    public private(set) var maximumSeen = 0.0

    public init(rows: Int, columns: Int, mask: NDArray? = nil, options: Options = Options()) throws {
        guard rows > 0, columns > 0 else { throw CrystalError("peak search needs frames of at least 1 x 1 pixels") }
        guard options.minPixels >= 1 else { throw CrystalError("min_pixels must be >= 1, got \(options.minPixels)") }
        guard options.threshold.isFinite else { throw CrystalError("the threshold must be a number, got \(options.threshold)") }
        self.rows = rows
        self.columns = columns
        self.options = options
        if let mask {
            guard mask.shape == [rows, columns] else {
                throw CrystalError("the pixel mask has shape \(NDArray.describe(mask.shape)), the frames (\(rows), \(columns))")
            }
            self.mask = mask.doubles().map { $0 != 0 ? 1 : 0 }
        } else {
            self.mask = nil
        }
    }

    /// Adds the next frames: (frames, rows, columns) or one frame, starting at `firstFrame`,
    /// which must follow the frames added before.
    public func add(_ block: NDArray, firstFrame first: Int) throws {
        guard block.ndim == 2 || block.ndim == 3, Array(block.shape.suffix(2)) == [rows, columns] else {
            throw CrystalError("frames of shape \(NDArray.describe(block.shape)) cannot be searched as (\(rows), \(columns)) frames")
        }
        if let next = nextFrame, first != next {
            throw CrystalError("peak search takes frames in order: frame \(next) was expected next, got \(first)")
        }
        let n = block.ndim == 3 ? block.shape[0] : 1
        guard n > 0 else { return }
        if firstFrame == nil { firstFrame = first }
        var a = block.ndim == 2 ? try arrayWork { try block.reshapedView([1, rows, columns]) } : block
        if a.dtype != .int32 && a.dtype != .float64 || !a.isContiguous {
            a = try arrayWork { try a.copy(as: a.dtype == .int32 ? .int32 : .float64) }
        }
        kept.append((first, a))
        nextFrame = first + n
        framesSeen += n

        // the maxima of each frame, frames in parallel
        var maxima = [(peaks: [(Int, Int, Double)], top: Double)](repeating: ([], 0), count: n)
        try maxima.withUnsafeMutableBufferPointer { out in
            nonisolated(unsafe) let o = out.baseAddress!
            let me = self
            let frame = a
            DispatchQueue.concurrentPerform(iterations: n) { f in
                o[f] = frame.dtype == .int32 ? me.localMaxima(frame.base(Int32.self) + f * me.rows * me.columns)
                                             : me.localMaxima(frame.base(Double.self) + f * me.rows * me.columns)
            }
            if Interruption.isRequested { throw CrystalError("interrupted") }
        }
        // link frame after frame, as nxfind
        let link2 = options.linkDistance * options.linkDistance
        for f in 0..<n {
            let z = first + f
            maximumSeen = max(maximumSeen, maxima[f].top)
            var current = maxima[f].peaks.map { Blob(x: $0.0, y: $0.1, z: z, value: $0.2, lastFrame: z) }
            for lb in open {
                var found = false
                for i in current.indices {
                    let dx = Double(lb.x - current[i].x), dy = Double(lb.y - current[i].y), dz = Double(lb.z - current[i].z)
                    if dx * dx + dy * dy + dz * dz < link2 {
                        found = true
                        if lb.value > current[i].value {
                            current[i].x = lb.x; current[i].y = lb.y; current[i].z = lb.z; current[i].value = lb.value
                        }
                    }
                }
                if !found { closed.append(lb) }
            }
            open = current
        }
        try refineReady(upTo: nextFrame! - 1, final: false)
    }

    /// Closes the blobs still open and refines what is left; returns every peak found,
    /// sorted by frame.
    public func finish() throws -> [FoundPeak] {
        closed += open
        open = []
        try refineReady(upTo: (nextFrame ?? 0) - 1, final: true)
        kept = []
        peaks.sort { ($0.z, $0.y, $0.x) < ($1.z, $1.y, $1.x) }
        return peaks
    }

    /// Local maxima of one frame: pixels above the threshold that are the largest within
    /// +-minPixels (ties go to the first in raster order); masked and negative pixels are 0.
    private func localMaxima<T: NDScalar>(_ p: UnsafeMutablePointer<T>) -> (peaks: [(Int, Int, Double)], top: Double) {
        let m = options.minPixels, threshold = options.threshold
        var out: [(Int, Int, Double)] = []
        var top = 0.0
        for y in 0..<rows {
            let row = p + y * columns
            for x in 0..<columns {
                let v = row[x].asDouble
                guard v > threshold, v > 0 else {
                    if v > top, mask?[y * columns + x] ?? 0 == 0 { top = v }
                    continue
                }
                if let mask, mask[y * columns + x] != 0 { continue }
                top = max(top, v)
                var isMax = true
                let y0 = max(0, y - m), y1 = min(rows - 1, y + m), x0 = max(0, x - m), x1 = min(columns - 1, x + m)
                scan: for yy in y0...y1 {
                    let r = p + yy * columns
                    for xx in x0...x1 {
                        let w = r[xx].asDouble
                        if w < v { continue }
                        if let mask, mask[yy * columns + xx] != 0 { continue }
                        // a larger neighbour, or an equal one earlier in raster order
                        if w > v || (yy * columns + xx) < (y * columns + x) { isMax = false; break scan }
                    }
                }
                if isMax { out.append((x, y, v)) }
            }
        }
        return (out, top)
    }

    /// The value of a kept pixel, masked and negative ones 0; nil for a frame not kept.
    @inline(__always)
    private func pixel(_ block: NDArray, _ f: Int, _ y: Int, _ x: Int) -> Double? {
        let i = y * columns + x
        if let mask, mask[i] != 0 { return nil }
        let v = block.dtype == .int32 ? Double(block.base(Int32.self)[f * rows * columns + i]) : block.base(Double.self)[f * rows * columns + i]
        return v < 0 ? nil : v
    }

    /// Refines the closed blobs whose boxes are complete, then drops the frames nobody needs.
    private func refineReady(upTo newest: Int, final: Bool) throws {
        let m = options.minPixels
        let ready = closed.filter { final || $0.z + m - 1 <= newest }
        closed = closed.filter { !(final || $0.z + m - 1 <= newest) }
        var results = [FoundPeak?](repeating: nil, count: ready.count)
        let me = self
        results.withUnsafeMutableBufferPointer { out in
            nonisolated(unsafe) let o = out.baseAddress!
            DispatchQueue.concurrentPerform(iterations: ready.count) { i in o[i] = me.refine(ready[i]) }
        }
        peaks += results.compactMap { $0 }
        // keep what a box may still need: from the oldest pending brightest frame - m, and
        // never more than 2m + 4 frames behind the newest
        let pendingStart = (open + closed).map { $0.z - m }.min() ?? newest - m
        let keepFrom = max(pendingStart, newest - 2 * m - 4)
        kept.removeAll { $0.first + $0.block.shape[0] <= keepFrom }
    }

    private func refine(_ b: Blob) -> FoundPeak? {
        let m = options.minPixels
        let z0 = b.z - m, z1 = b.z + m, y0 = max(0, b.y - m), y1 = min(rows, b.y + m), x0 = max(0, b.x - m), x1 = min(columns, b.x + m)
        // the box's frames that are kept
        var frames: [(z: Int, block: NDArray, f: Int)] = []
        for k in kept {
            let lo = max(z0, k.first), hi = min(z1, k.first + k.block.shape[0])
            if lo < hi { for z in lo..<hi { frames.append((z, k.block, z - k.first)) } }
        }
        guard !frames.isEmpty else { return nil }
        // background: the box's side faces (x or y at the box's edge), bright pixels left out
        var border: [Double] = []
        for fr in frames {
            for y in y0..<y1 {
                for x in x0..<x1 where y == y0 || y == y1 - 1 || x == x0 || x == x1 - 1 {
                    if let v = pixel(fr.block, fr.f, y, x) { border.append(v) }
                }
            }
        }
        // a trimmed mean, not the median: Poisson counts of a few are integers, and their
        // median is biased by up to half a count, which the moments would then integrate
        border.sort()
        let median = border.isEmpty ? 0 : border[border.count / 2]
        let quiet = border.filter { $0 <= median + 5 * (median + 1).squareRoot() }
        let bkg = quiet.isEmpty ? 0 : quiet.reduce(0, +) / Double(quiet.count)
        let noise = (bkg + 1).squareRoot()
        var total = 0.0
        var maxValue = 0.0
        func moments(_ w: (Double) -> Double, _ zr: Range<Int>, _ yr: Range<Int>, _ xr: Range<Int>) -> (s: Double, m: [Double], v: [Double]) {
            var s = 0.0, sx = 0.0, sy = 0.0, sz = 0.0, sxx = 0.0, syy = 0.0, szz = 0.0
            for fr in frames where zr.contains(fr.z) {
                for y in yr.clamped(to: y0..<y1) {
                    for x in xr.clamped(to: x0..<x1) {
                        guard let v = pixel(fr.block, fr.f, y, x) else { continue }
                        let wt = w(v - bkg)
                        s += wt
                        sx += wt * Double(x); sy += wt * Double(y); sz += wt * Double(fr.z)
                        sxx += wt * Double(x * x); syy += wt * Double(y * y); szz += wt * Double(fr.z * fr.z)
                    }
                }
            }
            guard s > 0 else { return (s, [], []) }
            let mx = sx / s, my = sy / s, mz = sz / s
            return (s, [mx, my, mz], [max(0, sxx / s - mx * mx), max(0, syy / s - my * my), max(0, szz / s - mz * mz)])
        }
        for fr in frames {
            for y in y0..<y1 {
                for x in x0..<x1 {
                    if let v = pixel(fr.block, fr.f, y, x) { total += v - bkg; maxValue = max(maxValue, v) }
                }
            }
        }
        // first guess from the pixels clearly above the background, then moments of all the
        // counts above it over +-2.5 spreads (2 to minPixels) around the centroid
        var est = moments({ $0 > 3 * noise ? $0 : 0 }, z0..<z1, y0..<y1, x0..<x1)
        guard est.s > 0 else { return nil }
        for _ in 0..<4 {
            let r = est.v.map { min(m, max(2, Int((2.5 * $0.squareRoot()).rounded(.up)))) }
            let c = est.m.map { Int($0.rounded()) }
            let next = moments({ $0 }, (c[2] - r[2])..<(c[2] + r[2] + 1), (c[1] - r[1])..<(c[1] + r[1] + 1), (c[0] - r[0])..<(c[0] + r[0] + 1))
            guard next.s > 0, next.m.allSatisfy({ $0.isFinite }), next.m.count == 3 else { break }
            est = next
        }
        let sig = est.v.map { $0.squareRoot() }
        guard sig[0] >= options.minSigma, sig[1] >= options.minSigma else { return nil }
        return FoundPeak(x: est.m[0], y: est.m[1], z: est.m[2], sigx: sig[0], sigy: sig[1], sigz: sig[2],
                         intensity: total, background: bkg, maxValue: maxValue)
    }

    // MARK: streaming a stack

    /// Searches frames `frames` (nil: all) of a (frames, rows, columns) field, read in
    /// blocks by a second thread; `progress(done, total)` after each block may throw to stop.
    public static func search(_ field: any NXReadableField, mask: NDArray? = nil, options: Options = Options(),
                              frames: Range<Int>? = nil, progress: ((Int, Int) throws -> Void)? = nil) throws -> (peaks: [FoundPeak], maximum: Double) {
        let shape = try field.shape
        guard shape.count == 3 else {
            throw CrystalError("\(field.location): \(field.path): frames (frames, rows, columns) are needed, the field has shape \(NDArray.describe(shape))")
        }
        let range = frames ?? 0..<shape[0]
        guard range.lowerBound >= 0, range.upperBound <= shape[0], !range.isEmpty else {
            throw CrystalError("\(field.location): \(field.path): frames \(range.lowerBound):\(range.upperBound) are outside its \(shape[0]) frames")
        }
        let finder = try PeakFinder(rows: shape[1], columns: shape[2], mask: mask, options: options)
        let blocks = try NXBlocks(field, rows: try field.blockRows(targetBytes: 32 << 20), reuse: false)
        while let (first, block) = try blocks.next() {
            let lo = max(first, range.lowerBound), hi = min(first + block.shape[0], range.upperBound)
            if lo < hi {
                let part = lo == first && hi == first + block.shape[0] ? block
                    : try arrayWork { try block.view(Selection([.range(.int(lo - first), .int(hi - first), 1)])).contiguous() }
                try finder.add(part, firstFrame: lo)
            }
            try progress?(min(first + block.shape[0], range.upperBound) - range.lowerBound, range.count)
            if first + block.shape[0] >= range.upperBound { break }
        }
        return (try finder.finish(), finder.maximumSeen)
    }

    /// Reads peaks from an NXreflections group in nxfind's layout (x, y, z required; sigx,
    /// sigy, sigz, intensity and background when present).
    public static func read(_ group: NXGroup) throws -> [FoundPeak] {
        func column(_ name: String, required: Bool) throws -> [Double]? {
            guard let f = try group.child(name) as? NXField else {
                if required { throw CrystalError("\(group.file.path): \(group.path): no \(name) column (peaks need x, y and z, as nxfind writes them)") }
                return nil
            }
            guard case .array(let a) = try f.read(nil) else { throw CrystalError("\(group.file.path): \(f.path): must be numeric") }
            return a.doubles()
        }
        let x = try column("x", required: true)!, y = try column("y", required: true)!, z = try column("z", required: true)!
        guard y.count == x.count, z.count == x.count else {
            throw CrystalError("\(group.file.path): \(group.path): x, y and z have \(x.count), \(y.count) and \(z.count) values")
        }
        let zeros = [Double](repeating: 0, count: x.count)
        let others = try ["sigx", "sigy", "sigz", "intensity", "background"].map { name -> [Double] in
            let c = try column(name, required: false) ?? zeros
            guard c.count == x.count else { throw CrystalError("\(group.file.path): \(group.path)/\(name) has \(c.count) values, x has \(x.count)") }
            return c
        }
        return x.indices.map { i in
            FoundPeak(x: x[i], y: y[i], z: z[i], sigx: others[0][i], sigy: others[1][i], sigz: others[2][i],
                      intensity: others[3][i], background: others[4][i], maxValue: 0)
        }
    }

    /// Writes `peaks` as NXRefine's nxfind does: an NXreflections group `entry/peaks` with
    /// intensity, x, y, z, sigx, sigy, sigz (float64), @first, @last, @threshold, and, given
    /// a geometry, polar_angle and azimuthal_angle (degrees). Replaces a previous group.
    public static func write(_ peaks: [FoundPeak], to file: NXFile, entry: String = "/entry", first: Int, last: Int,
                             threshold: Double, geometry: CrystalGeometry? = nil) throws {
        guard let e = try file.root.resolve(entry) as? NXGroup else { throw CrystalError("\(file.path): no group \(entry) to write peaks into") }
        if try e.child("peaks") != nil { try e.delete("peaks") }
        let g = try e.makeGroup("peaks", nxclass: "NXreflections")
        func column(_ name: String, _ values: [Double]) throws {
            _ = try g.makeField(name, value: .array(try arrayWork { try NDArray.from(values, shape: [values.count]) }))
        }
        try column("intensity", peaks.map(\.intensity))
        try column("x", peaks.map(\.x))
        try column("y", peaks.map(\.y))
        try column("z", peaks.map(\.z))
        try column("sigx", peaks.map(\.sigx))
        try column("sigy", peaks.map(\.sigy))
        try column("sigz", peaks.map(\.sigz))
        try column("background", peaks.map(\.background))
        if let geometry {
            let t = try geometry.transform()
            let angles = peaks.map { t.angles(x: $0.x, y: $0.y, z: $0.z) }
            try column("polar_angle", angles.map(\.polar))
            try column("azimuthal_angle", angles.map(\.azimuthal))
        }
        try g.setAttribute("first", .array(try arrayWork { try NDArray.full([], Double(first), dtype: .int64) }))
        try g.setAttribute("last", .array(try arrayWork { try NDArray.full([], Double(last), dtype: .int64) }))
        try g.setAttribute("threshold", .array(try arrayWork { try NDArray.full([], threshold) }))
    }
}
