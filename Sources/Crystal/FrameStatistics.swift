#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import NDArray
import NeXus

/// What NXRefine's nxmax finds, gathered in one pass over frames given in any number of
/// blocks (a whole stack streamed, or each `frames.ready` of a live scan): the sum of each
/// frame, the summed image, the maximum image, the global maximum and the pixels to mask.
///
/// Masked pixels: those of the mask given, those that were ever negative (Pilatus gaps -1,
/// dead pixels -2) and hot pixels (the same value >= 100 on every frame seen, as nxmax
/// finds them). Frame sums and the maximum leave them out; since a hot pixel is constant,
/// its share is taken out of the frame sums exactly at the end, whatever came first.
/// Memory: four images of float64 and one of bytes, however many frames.
public final class FrameStatistics: @unchecked Sendable {
    public let rows: Int, columns: Int
    public var pixels: Int { rows * columns }
    /// The pixels masked before any frame (1 = masked), nil for none.
    public let givenMask: [UInt8]?
    private var summed: [Double]
    private var maxImage: [Double]
    private var minImage: [Double]
    /// Per frame (by index): the sum over pixels not masked beforehand and not negative.
    private var sums: [Double] = []
    private var seen: [Bool] = []
    public private(set) var framesSeen = 0
    /// The smallest and largest frame index added.
    public private(set) var first: Int?
    public private(set) var last: Int?

    /// Value at or above which a constant pixel counts as hot (nxmax: a mean of 100).
    public var hotThreshold = 100.0

    public init(rows: Int, columns: Int, mask: NDArray? = nil) throws {
        guard rows > 0, columns > 0 else { throw CrystalError("frame statistics need frames of at least 1 x 1 pixels, got \(rows) x \(columns)") }
        self.rows = rows
        self.columns = columns
        if let mask {
            guard mask.shape == [rows, columns] else {
                throw CrystalError("the pixel mask has shape \(NDArray.describe(mask.shape)), the frames (\(rows), \(columns))")
            }
            givenMask = mask.doubles().map { $0 != 0 ? 1 : 0 }
        } else {
            givenMask = nil
        }
        summed = [Double](repeating: 0, count: rows * columns)
        maxImage = [Double](repeating: -.infinity, count: rows * columns)
        minImage = [Double](repeating: .infinity, count: rows * columns)
    }

    /// Adds frames: `block` is (frames, rows, columns) or one (rows, columns) frame, the
    /// first of them frame `firstFrame` of the scan. Work is split by pixels over every core.
    public func add(_ block: NDArray, firstFrame: Int) throws {
        let frameShape = Array(block.shape.suffix(2))
        guard block.ndim == 2 || block.ndim == 3, frameShape == [rows, columns] else {
            throw CrystalError("frames of shape \(NDArray.describe(block.shape)) cannot be added to statistics of (\(rows), \(columns)) frames")
        }
        guard firstFrame >= 0 else { throw CrystalError("frame index must be >= 0, got \(firstFrame)") }
        let n = block.ndim == 3 ? block.shape[0] : 1
        guard n > 0 else { return }
        var a = block.isContiguous ? block : try arrayWork { try block.contiguous() }
        switch a.dtype {
        case .int32, .uint32, .int16, .uint16, .float32, .float64: break
        default: a = try arrayWork { try a.copy(as: .float64) }
        }
        let end = firstFrame + n
        if sums.count < end {
            sums += [Double](repeating: 0, count: end - sums.count)
            seen += [Bool](repeating: false, count: end - seen.count)
        }
        let parts = min(pixels, max(1, ProcessInfoCores.count * 4))
        let step = (pixels + parts - 1) / parts
        var partial = [Double](repeating: 0, count: parts * n)
        let npix = pixels
        try withExtendedLifetime(a) {
            try summed.withUnsafeMutableBufferPointer { sp in
                try maxImage.withUnsafeMutableBufferPointer { xp in
                    try minImage.withUnsafeMutableBufferPointer { np in
                        try partial.withUnsafeMutableBufferPointer { pp in
                            nonisolated(unsafe) let s = sp.baseAddress!, mx = xp.baseAddress!, mn = np.baseAddress!, ps = pp.baseAddress!
                            let mask = givenMask
                            func run<T: NDScalar>(_: T.Type) {
                                nonisolated(unsafe) let base = a.base(T.self)
                                DispatchQueue.concurrentPerform(iterations: parts) { part in
                                    let lo = part * step, hi = min(npix, lo + step)
                                    guard lo < hi else { return }
                                    FrameStatistics.fold(base, frames: n, pixels: npix, range: lo..<hi, mask: mask,
                                                         summed: s, maximum: mx, minimum: mn, frameSums: ps + part * n)
                                }
                            }
                            switch a.dtype {
                            case .int32: run(Int32.self)
                            case .uint32: run(UInt32.self)
                            case .int16: run(Int16.self)
                            case .uint16: run(UInt16.self)
                            case .float32: run(Float.self)
                            default: run(Double.self)
                            }
                            if Interruption.isRequested { throw CrystalError("interrupted") }
                        }
                    }
                }
            }
        }
        for f in 0..<n {
            var t = 0.0
            for part in 0..<parts { t += partial[part * n + f] }
            if seen[firstFrame + f] { sums[firstFrame + f] = t } else { sums[firstFrame + f] = t; framesSeen += 1 }
            seen[firstFrame + f] = true
        }
        first = min(first ?? firstFrame, firstFrame)
        last = max(last ?? (end - 1), end - 1)
    }

    @inline(__always)
    static func fold<T: NDScalar>(_ base: UnsafeMutablePointer<T>, frames n: Int, pixels: Int, range: Range<Int>, mask: [UInt8]?,
                                  summed: UnsafeMutablePointer<Double>, maximum: UnsafeMutablePointer<Double>,
                                  minimum: UnsafeMutablePointer<Double>, frameSums: UnsafeMutablePointer<Double>) {
        for f in 0..<n {
            let frame = base + f * pixels
            var total = 0.0
            if let mask {
                for i in range {
                    let v = frame[i].asDouble
                    summed[i] += v
                    if v > maximum[i] { maximum[i] = v }
                    if v < minimum[i] { minimum[i] = v }
                    if v >= 0 && mask[i] == 0 { total += v }
                }
            } else {
                for i in range {
                    let v = frame[i].asDouble
                    summed[i] += v
                    if v > maximum[i] { maximum[i] = v }
                    if v < minimum[i] { minimum[i] = v }
                    if v >= 0 { total += v }
                }
            }
            frameSums[f] = total
        }
    }

    /// 1 where a pixel is masked: given, ever negative, or hot.
    public func pixelMask() throws -> NDArray {
        let m = try arrayWork { try NDArray(zeros: [rows, columns], dtype: .int8) }
        let p = m.base(Int8.self)
        for i in 0..<pixels where isMasked(i) { p[i] = 1 }
        return m
    }

    private func isHot(_ i: Int) -> Bool { framesSeen >= 2 && minImage[i] == maxImage[i] && minImage[i] >= hotThreshold }
    private func isMasked(_ i: Int) -> Bool { (givenMask?[i] ?? 0) != 0 || minImage[i] < 0 || isHot(i) }

    /// The pixels found hot (flat indices).
    public var hotPixels: [Int] { (0..<pixels).filter { (givenMask?[$0] ?? 0) == 0 && minImage[$0] >= 0 && isHot($0) } }

    /// The sum of each frame from `first` to `last` over unmasked pixels (NaN for a frame
    /// never added).
    public func frameSums() throws -> NDArray {
        let hot = hotPixels.reduce(0.0) { $0 + minImage[$1] }
        let lo = first ?? 0, hi = (last ?? -1) + 1
        let out = try arrayWork { try NDArray(zeros: [max(0, hi - lo)], dtype: .float64) }
        for f in lo..<max(lo, hi) { try out.setValue(seen[f] ? sums[f] - hot : .nan, at: [f - lo]) }
        return out
    }

    /// The summed image (masked pixels 0).
    public func summedImage() throws -> NDArray { try image(summed, masked: 0) }
    /// The maximum of each pixel over the frames (masked pixels 0).
    public func maximumImage() throws -> NDArray { try image(maxImage, masked: 0) }

    /// The largest unmasked pixel value of all frames (0 before any).
    public var maximum: Double {
        var m = 0.0
        for i in 0..<pixels where !isMasked(i) && maxImage[i] > m { m = maxImage[i] }
        return m
    }

    private func image(_ values: [Double], masked: Double) throws -> NDArray {
        let a = try arrayWork { try NDArray(uninitialized: [rows, columns], dtype: .float64) }
        let p = a.base(Double.self)
        for i in 0..<pixels { p[i] = framesSeen == 0 || isMasked(i) ? masked : values[i] }
        return a
    }

    // MARK: streaming a stack

    /// One pass over frames `frames` (nil: all) of a (frames, rows, columns) field, in
    /// blocks of about 64 MB read ahead by a second thread. `progress(done, total)` runs
    /// after each block and may throw to stop (Ctrl-C).
    public static func compute(_ field: any NXReadableField, mask: NDArray? = nil, frames: Range<Int>? = nil,
                               progress: ((Int, Int) throws -> Void)? = nil) throws -> FrameStatistics {
        let shape = try field.shape
        guard shape.count == 3 else {
            throw CrystalError("\(field.location): \(field.path): frames (frames, rows, columns) are needed, the field has shape \(NDArray.describe(shape))")
        }
        let stats = try FrameStatistics(rows: shape[1], columns: shape[2], mask: mask)
        let range = frames ?? 0..<shape[0]
        guard range.lowerBound >= 0, range.upperBound <= shape[0], !range.isEmpty else {
            throw CrystalError("\(field.location): \(field.path): frames \(range.lowerBound):\(range.upperBound) are outside its \(shape[0]) frames")
        }
        let rows = try field.blockRows(targetBytes: 64 << 20)
        let blocks = try NXBlocks(field, rows: rows, reuse: true)
        while let (first, block) = try blocks.next() {
            let lo = max(first, range.lowerBound), hi = min(first + block.shape[0], range.upperBound)
            if lo < hi {
                let part = lo == first && hi == first + block.shape[0] ? block
                    : try arrayWork { try block.view(Selection([.range(.int(lo - first), .int(hi - first), 1)])) }
                try stats.add(part, firstFrame: lo)
            }
            try progress?(min(first + block.shape[0], range.upperBound) - range.lowerBound, range.count)
            if first + block.shape[0] >= range.upperBound { break }
        }
        return stats
    }

    // MARK: writing as nxmax does

    /// Writes the results where NXRefine's nxmax puts them, under `entry`: @maximum,
    /// @first, @last on `entry/data`; `entry/instrument/detector/pixel_mask`; and the
    /// `entry/frame_sums` collection (summed_data, summed_frames as NXdata; nxlua adds
    /// maximum_data, the maximum image).
    /// With `radial`, also `entry/frame_sums/radial_sum` (NXdata: radial_sum against Q in
    /// 1/Angstrom, with the pixels of each bin and @polarization).
    public func write(_ file: NXFile, entry: String = "/entry", radial: RadialSum? = nil) throws {
        let root = file.root
        guard let e = try root.resolve(entry) as? NXGroup else { throw CrystalError("\(file.path): no group \(entry) to write frame statistics into") }
        func scalar(_ v: Double, _ dtype: DType) throws -> NXValue { .array(try arrayWork { try NDArray.full([], v, dtype: dtype) }) }
        let data = try (e.child("data") as? NXGroup) ?? e.makeGroup("data", nxclass: "NXdata")
        try data.setAttribute("maximum", try scalar(maximum, .float64))
        try data.setAttribute("first", try scalar(Double(first ?? 0), .int64))
        try data.setAttribute("last", try scalar(Double((last ?? -1) + 1), .int64))
        let instrument = try (e.child("instrument") as? NXGroup) ?? e.makeGroup("instrument", nxclass: "NXinstrument")
        let det = try (instrument.child("detector") as? NXGroup) ?? instrument.makeGroup("detector", nxclass: "NXdetector")
        if try det.child("pixel_mask") != nil { try det.delete("pixel_mask") }
        _ = try det.makeField("pixel_mask", value: .array(try pixelMask()))
        if try e.child("frame_sums") != nil { try e.delete("frame_sums") }
        let sums = try e.makeGroup("frame_sums", nxclass: "NXcollection")
        func nxdata(_ name: String, _ signal: String, _ values: NDArray, axes: [(String, NDArray)]) throws {
            let g = try sums.makeGroup(name, nxclass: "NXdata")
            _ = try g.makeField(signal, value: .array(values))
            for (n, a) in axes { _ = try g.makeField(n, value: .array(a)) }
            try g.setAttribute("signal", .string(signal))
            try g.setAttribute("axes", .strings(axes.map(\.0), shape: [axes.count]))
        }
        let y = try arrayWork { try NDArray.arange(0, Double(rows), 1, dtype: .int64) }
        let x = try arrayWork { try NDArray.arange(0, Double(columns), 1, dtype: .int64) }
        try nxdata("summed_data", "summed_data", try summedImage(), axes: [("y", y), ("x", x)])
        try nxdata("maximum_data", "maximum_data", try maximumImage(), axes: [("y", y), ("x", x)])
        let z = try arrayWork { try NDArray.arange(Double(first ?? 0), Double((last ?? -1) + 1), 1, dtype: .int64) }
        try nxdata("summed_frames", "summed_frames", try frameSums(), axes: [("frame_number", z)])
        if let radial {
            let n = radial.q.count
            try nxdata("radial_sum", "radial_sum", try arrayWork { try NDArray.from(radial.intensity, shape: [n]) },
                       axes: [("Q", try arrayWork { try NDArray.from(radial.q, shape: [n]) })])
            if let g = try sums.child("radial_sum") as? NXGroup {
                try g.child("Q")?.setAttribute("units", .string("1/Angstrom"))
                try g.child("Q")?.setAttribute("long_name", .string("|Q| (1/Angstrom)"))
                try g.child("radial_sum")?.setAttribute("long_name", .string("summed counts / (polarization x solid angle)"))
                _ = try g.makeField("pixels", value: .array(try arrayWork { try NDArray.from(radial.pixels.map(Double.init), shape: [n]).copy(as: .int64) }))
                try g.setAttribute("polarization", .array(try arrayWork { try NDArray.full([], radial.polarization) }))
            }
        }
    }
}

/// The number of cores, read once.
enum ProcessInfoCores {
    static let count: Int = max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
}
