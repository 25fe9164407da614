#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import NDArray
import NeXus

/// A regular grid in reciprocal-lattice units: per axis (h, k, l) the first voxel centre,
/// the step and the number of voxels. Axis values are the voxel centres (NXRefine's
/// `linspace(start, stop, shape)`); a point goes to the voxel whose centre is nearest.
public struct ReciprocalGrid: Equatable, Sendable {
    public var origin: [Double]
    public var step: [Double]
    public var size: [Int]

    public init(origin: [Double], step: [Double], size: [Int]) throws {
        guard origin.count == 3, step.count == 3, size.count == 3 else {
            throw CrystalError("a reciprocal grid needs 3 origins, steps and sizes (h, k, l), got \(origin.count), \(step.count), \(size.count)")
        }
        for i in 0..<3 {
            guard origin[i].isFinite, step[i] > 0, step[i].isFinite else {
                throw CrystalError("grid axis \("hkl".map(String.init)[i]): the origin must be finite and the step positive, got origin \(origin[i]), step \(step[i])")
            }
            guard size[i] >= 1 else { throw CrystalError("grid axis \("hkl".map(String.init)[i]): the size must be at least 1, got \(size[i])") }
        }
        let total = size.reduce(1) { $0.multipliedReportingOverflow(by: $1).partialValue }
        guard size.allSatisfy({ $0 < 1 << 20 }), total < Int(Int32.max) else {
            throw CrystalError("grid \(size[0]) x \(size[1]) x \(size[2]) is too large (at most 2^31 voxels)")
        }
        self.origin = origin; self.step = step; self.size = size
    }

    /// NXRefine's form: start, stop (both voxel centres) and step per axis.
    public init(start: [Double], stop: [Double], step: [Double]) throws {
        guard start.count == 3, stop.count == 3, step.count == 3 else { throw CrystalError("a reciprocal grid needs 3 starts, stops and steps (h, k, l)") }
        var size: [Int] = []
        for i in 0..<3 {
            guard step[i] > 0, stop[i] >= start[i] else {
                throw CrystalError("grid axis \("hkl".map(String.init)[i]): needs stop >= start and a positive step, got \(start[i]) to \(stop[i]) by \(step[i])")
            }
            size.append(Int(((stop[i] - start[i]) / step[i] * 100).rounded() / 100) + 1)
        }
        try self.init(origin: start, step: step, size: size)
    }

    public var count: Int { size[0] * size[1] * size[2] }
    public var stop: [Double] { (0..<3).map { origin[$0] + step[$0] * Double(size[$0] - 1) } }

    /// The voxel centres of axis 0 (h), 1 (k) or 2 (l).
    public func axis(_ i: Int) -> [Double] { (0..<size[i]).map { origin[i] + step[i] * Double($0) } }

    /// NXRefine's step: the value snapped to 1, 2, 5 or 10 times a power of ten (nearest).
    public static func snap(_ value: Double) -> Double {
        guard value > 0, value.isFinite else { return 1 }
        let m = pow(10, (log10(value)).rounded(.down))
        let r = value / m
        let best = [1.0, 2, 5, 10].min { abs($0 - r) < abs($1 - r) }!
        return best * m
    }

    /// NXRefine's default grid (initialize_grid): per axis from -stop to stop, stop the even
    /// integer above 0.8 Qmax / a* (rounded), the step snapped to 1-2-5 near 1/1000 of the
    /// range. Qmax is the largest |Q| on the detector's edge pixels.
    public static func nxrefineDefault(geometry: CrystalGeometry, rows: Int, columns: Int) throws -> ReciprocalGrid {
        let t = try geometry.transform()
        let b = try geometry.matrixUB()  // for the error naming a missing cell or U
        _ = b
        let bm = try (geometry.unitCell ?? UnitCell(a: 1, b: 1, c: 1)).matrixB()
        var gmax = 0.0
        func visit(_ x: Int, _ y: Int) { gmax = max(gmax, t.scatteringVector(x: Double(x), y: Double(y), z: 0).norm) }
        for x in 0..<columns { visit(x, 0); visit(x, rows - 1) }
        for y in 0..<rows { visit(0, y); visit(columns - 1, y) }
        var start: [Double] = [], stop: [Double] = [], step: [Double] = []
        for i in 0..<3 {
            let star = Vector3(bm.m[0][i], bm.m[1][i], bm.m[2][i]).norm  // |a*| without 2 pi
            var s = (((0.8 * gmax / star).rounded()) / 2).rounded(.up) * 2
            if s < 2 { s = 2 }
            stop.append(s); start.append(-s)
            step.append(snap(2 * s / 1000))
        }
        return try ReciprocalGrid(start: start, stop: stop, step: step)
    }
}

/// The forward splat of a rotation scan into reciprocal space (CCTW's transform, as
/// NXRefine runs it): every unmasked pixel of every frame with a positive weight goes
/// pixel -> Q -> (h, k, l) = (UB)^-1 Q -> the nearest voxel, accumulating
/// `v += I c w` and `n += w` (Double), with w the frame's weight and c the correction
/// 1 / (monitor_f / mean(monitor) x transmission x polarization(pixel)).
///
/// Frames come in blocks in any order; each frame's pixels are mapped on every core
/// (row bands), then added to the grid by slabs of voxels, one core per slab, so no two
/// threads touch the same voxel (no locks, no private grids). Memory: the grid (v and n,
/// 16 bytes a voxel) plus about 36 bytes a pixel. With a BrickCache the grid is held as
/// bricks of 32^3 voxels instead, a bounded number at a time (TransformJob spills the
/// others to the output file); each core then adds to whole bricks of its own.
public final class ReciprocalTransform: @unchecked Sendable {
    public struct Options: Sendable {
        public var grid: ReciprocalGrid
        /// 1 = masked, one per pixel (rows x columns).
        public var mask: [UInt8]?
        /// Per-frame weights (CCTW's --weights, NXRefine's monitor_weight); frames with 0 are skipped.
        public var frameWeights: [Double]?
        /// Per-frame monitor counts: intensities are divided by monitor / mean(monitor).
        public var monitor: [Double]?
        public var transmission = 1.0
        /// Degree of horizontal polarization (0.99 at a synchrotron); nil: no correction.
        public var polarization: Double?
        /// Pixels at or above this value are left out (besides negative values and the
        /// integer type's maximum, the gap marker of some detectors).
        public var maxValue: Double?
        /// n x n sub-pixel positions per pixel (at (i + 0.5) / n - 0.5 of a pixel from its
        /// centre along x and y), each carrying I / n^2 and weight w / n^2; 1: the centres.
        public var oversample = 1
        public init(grid: ReciprocalGrid) { self.grid = grid }
    }

    public let geometry: CrystalGeometry
    public let rows: Int, columns: Int
    public let options: Options
    public var grid: ReciprocalGrid { options.grid }
    /// Sum of I c w per voxel, float64 shaped (l, k, h) (empty when the grid is in bricks).
    public private(set) var v: NDArray
    /// Sum of w per voxel, float64 shaped (l, k, h) (empty when the grid is in bricks).
    public private(set) var n: NDArray
    /// The grid's bricks, when it is held that way rather than whole in v and n.
    public let bricks: BrickCache?
    public private(set) var framesAdded = 0
    /// Pixels put into the grid, and those left out (masked or gaps) or outside it.
    public private(set) var pixelsAdded = 0
    public private(set) var pixelsMasked = 0
    public private(set) var pixelsOutside = 0
    /// Polled after each frame: true stops the transform with an error ("interrupted").
    public var shouldStop: (@Sendable () -> Bool)?
    /// false: add() leaves Ctrl-C and shouldStop to its caller.
    public var pollsInterruption = true

    private let transform: GeometryTransform
    private let inverseUB: Matrix3
    /// Unit scattering directions of each pixel in the lab, (v/|v| - x) / lambda (SoA), when
    /// there is no sample offset; else the lab vectors without the offset.
    private var qx: [Double], qy: [Double], qz: [Double]
    private let offsetMoves: Bool
    /// 1 / polarization factor per pixel, or empty for none.
    private var pixelCorrection: [Double] = []
    private var monitorMean = 1.0
    private var index: [Int32]
    private var value: [Double]

    /// Bytes held per pixel (besides v and n): the lab vectors, voxel indices and values of
    /// each sub-pixel, and the polarization correction.
    public static func bytesPerPixel(options: Options) -> Int {
        let s2 = options.oversample * options.oversample
        return s2 * (3 * 8 + 4 + 8 + (options.polarization == nil ? 0 : 8)) + 1
    }

    public init(geometry: CrystalGeometry, rows: Int, columns: Int, options: Options, bricks: BrickCache? = nil) throws {
        guard rows > 0, columns > 0 else { throw CrystalError("a transform needs frames of at least 1 x 1 pixels, got \(rows) x \(columns)") }
        self.geometry = geometry
        self.rows = rows
        self.columns = columns
        self.options = options
        let tr = try geometry.transform()
        transform = tr
        guard let inv = tr.inverseUB else { _ = try geometry.matrixUB(); throw CrystalError("no UB matrix") }
        inverseUB = inv
        let npix = rows * columns
        if let m = options.mask, m.count != npix {
            throw CrystalError("the pixel mask has \(m.count) pixels, the frames \(rows) x \(columns) = \(npix)")
        }
        guard options.transmission > 0, options.transmission.isFinite else {
            throw CrystalError("the transmission must be positive, got \(options.transmission)")
        }
        if let p = options.polarization, !(p.isFinite && abs(p) <= 1) {
            throw CrystalError("the polarization factor must be between -1 and 1, got \(p)")
        }
        if let m = options.monitor {
            let good = m.filter { $0 > 0 && $0.isFinite }
            guard !good.isEmpty else { throw CrystalError("the monitor has no positive value") }
            monitorMean = good.reduce(0, +) / Double(good.count)
        }
        guard options.oversample >= 1, options.oversample <= 16 else {
            throw CrystalError("oversample must be an integer from 1 to 16, got \(options.oversample)")
        }
        let g = options.grid
        if let b = bricks, b.layout.size != g.size { throw CrystalError("the brick cache is for another grid") }
        self.bricks = bricks
        let shape = bricks == nil ? [g.size[2], g.size[1], g.size[0]] : [0, g.size[1], g.size[0]]
        v = try arrayWork { try NDArray(zeros: shape, dtype: .float64) }
        n = try arrayWork { try NDArray(zeros: shape, dtype: .float64) }
        let moves = geometry.sampleOffset != Vector3(0, 0, 0)
        offsetMoves = moves
        let sub = options.oversample, s2 = sub * sub
        qx = [Double](repeating: 0, count: npix * s2)
        qy = qx; qz = qx
        index = [Int32](repeating: -1, count: npix * s2)
        value = [Double](repeating: 0, count: npix * s2)
        // pixel -> lab once: only the rotation changes from frame to frame
        let p2l = tr.pixelToLab, xc = geometry.beamCenterX, yc = geometry.beamCenterY
        let dist = geometry.distance, lambda = geometry.wavelength
        let pol = options.polarization
        var corr = [Double](repeating: 1, count: pol == nil ? 0 : npix * s2)
        qx.withUnsafeMutableBufferPointer { xp in
            qy.withUnsafeMutableBufferPointer { yp in
                qz.withUnsafeMutableBufferPointer { zp in
                  corr.withUnsafeMutableBufferPointer { cbuf in
                    nonisolated(unsafe) let ox = xp.baseAddress!, oy = yp.baseAddress!, oz = zp.baseAddress!
                    nonisolated(unsafe) let cp: UnsafeMutablePointer<Double>? = pol == nil ? nil : cbuf.baseAddress
                    ReciprocalTransform.rowBands(rows) { lo, hi in
                        for r in lo..<hi {
                            for c in 0..<columns {
                              for sy in 0..<sub {
                               for sx in 0..<sub {
                                let i = (r * columns + c) * s2 + sy * sub + sx
                                let dx = (Double(sx) + 0.5) / Double(sub) - 0.5, dy = (Double(sy) + 0.5) / Double(sub) - 0.5
                                let w = p2l * Vector3(Double(c) + dx - xc, Double(r) + dy - yc, 0) + Vector3(dist, 0, 0)
                                let len = w.norm
                                if moves {
                                    ox[i] = w.x; oy[i] = w.y; oz[i] = w.z
                                } else {
                                    ox[i] = (w.x / len - 1) / lambda; oy[i] = w.y / len / lambda; oz[i] = w.z / len / lambda
                                }
                                if let cp, let f = pol {
                                    let cos2t = w.x / len
                                    let sin2 = max(0, 1 - cos2t * cos2t)
                                    let perp = w.y * w.y + w.z * w.z
                                    let cos2chi = perp > 0 ? (w.y * w.y - w.z * w.z) / perp : 1
                                    cp[i] = 1 / (0.5 * (1 + cos2t * cos2t - f * cos2chi * sin2))
                                }
                               }
                              }
                            }
                        }
                    }
                  }
                }
            }
        }
        pixelCorrection = corr
    }

    public func resetCounts() {
        framesAdded = 0; pixelsAdded = 0; pixelsMasked = 0; pixelsOutside = 0
    }

    /// Runs body(lo, hi) over row bands on every core (the last bands clipped to the rows).
    static func rowBands(_ rows: Int, _ body: @Sendable (Int, Int) -> Void) {
        let parts = max(1, min(rows, ProcessInfoCores.count * 8))
        let chunk = (rows + parts - 1) / parts
        DispatchQueue.concurrentPerform(iterations: parts) { part in
            let lo = min(rows, part * chunk), hi = min(rows, lo + chunk)
            if lo < hi { body(lo, hi) }
        }
    }

    /// Refuses a block of frames (and its 3-D mask) that add() cannot take.
    public func check(_ block: NDArray, firstFrame: Int, mask3d: NDArray?) throws {
        guard block.ndim == 2 || block.ndim == 3, Array(block.shape.suffix(2)) == [rows, columns] else {
            throw CrystalError("frames of shape \(NDArray.describe(block.shape)) cannot be transformed with (\(rows), \(columns)) frames")
        }
        guard firstFrame >= 0 else { throw CrystalError("frame index must be >= 0, got \(firstFrame)") }
        if let m = mask3d, m.shape != block.shape {
            throw CrystalError("the 3-D mask block has shape \(NDArray.describe(m.shape)), the frames \(NDArray.describe(block.shape))")
        }
    }

    /// Adds frames: `block` is (frames, rows, columns) or one frame, the first of them frame
    /// `firstFrame` of the scan; `mask3d` (same shape, nonzero = masked) leaves pixels out.
    public func add(_ block: NDArray, firstFrame: Int, mask3d: NDArray? = nil) throws {
        try check(block, firstFrame: firstFrame, mask3d: mask3d)
        let count = block.ndim == 3 ? block.shape[0] : 1
        var a = block.isContiguous ? block : try arrayWork { try block.contiguous() }
        var gap = Double.infinity
        switch a.dtype {
        case .int32: gap = Double(Int32.max)
        case .uint32: gap = Double(UInt32.max)
        case .int16: gap = Double(Int16.max)
        case .uint16: gap = Double(UInt16.max)
        case .float32, .float64: break
        default: a = try arrayWork { try a.copy(as: .float64) }
        }
        if let m = options.maxValue { gap = min(gap, m) }
        let m3 = try mask3d.map { m in try arrayWork { m.dtype == .uint8 && m.isContiguous ? m : try m.contiguous(as: .uint8) } }
        try withExtendedLifetime((a, m3)) {
            for f in 0..<count {
                let z = firstFrame + f
                let weight = options.frameWeights.map { z < $0.count ? $0[z] : 0 } ?? 1
                guard weight > 0, weight.isFinite else { continue }
                var c = 1 / options.transmission
                if let mon = options.monitor {
                    let m = z < mon.count ? mon[z] : 0
                    guard m > 0, m.isFinite else { continue }
                    c /= m / monitorMean
                }
                let mp = m3.map { $0.base(UInt8.self) + f * rows * columns }
                switch a.dtype {
                case .int32: try frame(a.base(Int32.self) + f * rows * columns, z: z, weight: weight, scale: c, gap: gap, mask3d: mp)
                case .uint32: try frame(a.base(UInt32.self) + f * rows * columns, z: z, weight: weight, scale: c, gap: gap, mask3d: mp)
                case .int16: try frame(a.base(Int16.self) + f * rows * columns, z: z, weight: weight, scale: c, gap: gap, mask3d: mp)
                case .uint16: try frame(a.base(UInt16.self) + f * rows * columns, z: z, weight: weight, scale: c, gap: gap, mask3d: mp)
                case .float32: try frame(a.base(Float.self) + f * rows * columns, z: z, weight: weight, scale: c, gap: gap, mask3d: mp)
                default: try frame(a.base(Double.self) + f * rows * columns, z: z, weight: weight, scale: c, gap: gap, mask3d: mp)
                }
                framesAdded += 1
                if pollsInterruption, Interruption.isRequested || shouldStop?() == true { throw CrystalError("interrupted") }
            }
        }
    }

    private func frame<T: NDScalar>(_ pixels: UnsafeMutablePointer<T>, z: Int, weight: Double, scale: Double, gap: Double,
                                    mask3d: UnsafeMutablePointer<UInt8>?) throws {
        let g = options.grid
        let rot = transform.goniometer(at: Double(z))
        // hkl -> fractional voxel: u = S (UB)^-1 G^T q + o, S = diag(1 / step), o = 0.5 - origin / step
        let m = inverseUB * rot.transposed
        let s = g.step.map { 1 / $0 }
        let mm = (0..<3).map { r in (0..<3).map { c in m.m[r][c] * s[r] } }
        let m00 = mm[0][0], m01 = mm[0][1], m02 = mm[0][2], m10 = mm[1][0], m11 = mm[1][1], m12 = mm[1][2]
        let m20 = mm[2][0], m21 = mm[2][1], m22 = mm[2][2]
        let o0 = 0.5 - g.origin[0] * s[0], o1 = 0.5 - g.origin[1] * s[1], o2 = 0.5 - g.origin[2] * s[2]
        let nh = g.size[0], nk = g.size[1], nl = g.size[2]
        let dh = Double(nh), dk = Double(nk), dl = Double(nl)
        let sub = options.oversample, s2 = sub * sub
        let subWeight = 1 / Double(s2)
        let moves = offsetMoves
        let shift = moves ? rot * geometry.sampleOffset : Vector3(0, 0, 0)
        let lambda = geometry.wavelength
        let cols = columns, rowCount = rows
        // voxel indices: l-major over the whole grid, or with bricks brick << 15 | place in
        // the brick (so a range of indices is a range of whole bricks)
        let bricked = bricks != nil
        let nbh = bricks?.layout.bricks[0] ?? 1, nbk = bricks?.layout.bricks[1] ?? 1
        let brickCount = bricks?.layout.count ?? 0
        let bins = 256
        let total = bricked ? brickCount << 15 : nl * nk * nh
        let binWidth = bricked ? ((brickCount + bins - 1) / bins) << 15 : (total + bins - 1) / bins
        let parts = max(1, min(rowCount, ProcessInfoCores.count * 8))
        var histogram = [Int](repeating: 0, count: parts * bins)
        var counts = [Int](repeating: 0, count: parts * 2)
        let words = (brickCount + 63) / 64
        var touched = [UInt64](repeating: 0, count: bricked ? parts * words : 0)
        let givenMask = options.mask
        qx.withUnsafeBufferPointer { xb in
            qy.withUnsafeBufferPointer { yb in
                qz.withUnsafeBufferPointer { zb in
                    index.withUnsafeMutableBufferPointer { ib in
                        value.withUnsafeMutableBufferPointer { vb in
                            histogram.withUnsafeMutableBufferPointer { hb in
                                counts.withUnsafeMutableBufferPointer { cb in
                                  touched.withUnsafeMutableBufferPointer { tb in
                                  pixelCorrection.withUnsafeBufferPointer { pcb in
                                    nonisolated(unsafe) let px = xb.baseAddress!, py = yb.baseAddress!, pz = zb.baseAddress!
                                    nonisolated(unsafe) let idx = ib.baseAddress!, val = vb.baseAddress!
                                    nonisolated(unsafe) let hist = hb.baseAddress!, cnt = cb.baseAddress!
                                    nonisolated(unsafe) let marks = bricked ? tb.baseAddress : nil  // an empty array may have an address
                                    nonisolated(unsafe) let data = pixels
                                    nonisolated(unsafe) let m3 = mask3d
                                    nonisolated(unsafe) let corr: UnsafePointer<Double>? = pcb.isEmpty ? nil : pcb.baseAddress
                                    let chunk = (rowCount + parts - 1) / parts
                                    DispatchQueue.concurrentPerform(iterations: parts) { part in
                                        let lo = min(rowCount, part * chunk), hi = min(rowCount, lo + chunk)
                                        guard lo < hi else { return }
                                        let h = hist + part * bins
                                        let mark = marks.map { $0 + part * words }
                                        var masked = 0, outside = 0
                                        for pixel in (lo * cols)..<(hi * cols) {
                                          let x = data[pixel].asDouble
                                          if !(x >= 0 && x < gap) || (givenMask?[pixel] ?? 0) != 0 || (m3?[pixel] ?? 0) != 0 {
                                              for i in (pixel * s2)..<(pixel * s2 + s2) { idx[i] = -1 }
                                              masked += s2; continue
                                          }
                                          for i in (pixel * s2)..<(pixel * s2 + s2) {
                                            var ax = px[i], ay = py[i], az = pz[i]
                                            if moves {
                                                let wx = ax - shift.x, wy = ay - shift.y, wz = az - shift.z
                                                let len = (wx * wx + wy * wy + wz * wz).squareRoot()
                                                ax = (wx / len - 1) / lambda; ay = wy / len / lambda; az = wz / len / lambda
                                            }
                                            let u0 = m00 * ax + m01 * ay + m02 * az + o0
                                            let u1 = m10 * ax + m11 * ay + m12 * az + o1
                                            let u2 = m20 * ax + m21 * ay + m22 * az + o2
                                            guard u0 >= 0, u0 < dh, u1 >= 0, u1 < dk, u2 >= 0, u2 < dl else {
                                                idx[i] = -1; outside += 1; continue
                                            }
                                            let ih = Int(u0), ik = Int(u1), il = Int(u2)
                                            let linear: Int
                                            if let mark {
                                                let brick = ((il >> 5) * nbk + (ik >> 5)) * nbh + (ih >> 5)
                                                mark[brick >> 6] |= 1 << UInt64(brick & 63)
                                                linear = brick << 15 | (il & 31) << 10 | (ik & 31) << 5 | (ih & 31)
                                            } else {
                                                linear = (il * nk + ik) * nh + ih
                                            }
                                            idx[i] = Int32(truncatingIfNeeded: linear)
                                            var c = x * scale * weight * subWeight
                                            if let corr { c *= corr[i] }
                                            val[i] = c
                                            h[linear / binWidth] += 1
                                          }
                                        }
                                        cnt[part * 2] = masked
                                        cnt[part * 2 + 1] = outside
                                    }
                                  }
                                  }
                                }
                            }
                        }
                    }
                }
            }
        }
        var perBin = [Int](repeating: 0, count: bins)
        for p in 0..<parts { for b in 0..<bins { perBin[b] += histogram[p * bins + b] } }
        let inside = perBin.reduce(0, +)
        for p in 0..<parts { pixelsMasked += counts[2 * p]; pixelsOutside += counts[2 * p + 1] }
        pixelsAdded += inside
        guard inside > 0 else { return }
        // ranges of voxels (of whole bricks) with about equal numbers of pixels, one per core
        let slabs = min(ProcessInfoCores.count, bins)
        var bounds = [0]
        var running = 0
        for b in 0..<bins {
            running += perBin[b]
            if bounds.count < slabs, running >= inside * bounds.count / slabs { bounds.append(min(total, (b + 1) * binWidth)) }
        }
        while bounds.count <= slabs { bounds.append(total) }
        bounds[slabs] = total
        let npix = rowCount * cols * s2
        let nw = weight * subWeight
        guard let cache = bricks else {
            accumulate(bounds, npix: npix, nw: nw, table: nil)
            return
        }
        var list: [Int32] = []
        for w in 0..<words {
            var bits: UInt64 = 0
            for p in 0..<parts { bits |= touched[p * words + w] }
            while bits != 0 {
                list.append(Int32(w * 64 + bits.trailingZeroBitCount))
                bits &= bits - 1
            }
        }
        // the bricks this frame touches, as many at a time as the cache holds (one round unless
        // the memory limit is tight)
        var start = 0
        while start < list.count {
            let group = list[start..<min(list.count, start + cache.capacity)]
            try cache.hold(group)
            var b = bounds
            if group.count < list.count {
                let first = Int(group.first!), last = Int(group.last!) + 1
                b = (0...slabs).map { k in k == slabs ? last << 15 : Int(group[group.startIndex + k * group.count / slabs]) << 15 }
                b[0] = first << 15
            }
            accumulate(b, npix: npix, nw: nw, table: cache.table)
            start += group.count
        }
    }

    /// Adds each pixel's value and weight at its voxel index (into v and n, or the bricks of
    /// `table`), one core per range of indices `bounds[k]..<bounds[k + 1]`: each core scans
    /// all pixels, so no two share a voxel.
    private func accumulate(_ bounds: [Int], npix: Int, nw: Double, table: UnsafeMutablePointer<UnsafeMutablePointer<Double>?>?) {
        let vp = v.base(Double.self), np = n.base(Double.self)
        index.withUnsafeBufferPointer { ib in
            value.withUnsafeBufferPointer { vb in
                nonisolated(unsafe) let idx = ib.baseAddress!, val = vb.baseAddress!
                nonisolated(unsafe) let vv = vp, nn = np, bricks = table
                DispatchQueue.concurrentPerform(iterations: bounds.count - 1) { k in
                    let lo = UInt32(bounds[k]), hi = UInt32(bounds[k + 1])
                    guard lo < hi else { return }
                    if let bricks {
                        for i in 0..<npix {
                            let j = UInt32(bitPattern: idx[i])
                            if j >= lo && j < hi {
                                let p = bricks[Int(j >> 15)].unsafelyUnwrapped + Int(j & 32767)
                                p[0] += val[i]
                                p[BrickLayout.slotVoxels] += nw
                            }
                        }
                    } else {
                        for i in 0..<npix {
                            let j = UInt32(bitPattern: idx[i])
                            if j >= lo && j < hi {
                                vv[Int(j)] += val[i]
                                nn[Int(j)] += nw
                            }
                        }
                    }
                }
            }
        }
    }

    // MARK: writing as NXRefine does

    /// Reciprocal lattice lengths (with 2 pi, 1/Angstrom: NXRefine's astar, bstar, cstar)
    /// and angles (alpha*, beta*, gamma*, degrees).
    public static func reciprocalLattice(_ cell: UnitCell) throws -> (lengths: [Double], angles: [Double]) {
        _ = try cell.matrixB()  // a valid cell
        let r = Double.pi / 180
        let (ca, cb, cg) = (cos(cell.alpha * r), cos(cell.beta * r), cos(cell.gamma * r))
        let (sa, sb, sg) = (sin(cell.alpha * r), sin(cell.beta * r), sin(cell.gamma * r))
        let volume = cell.a * cell.b * cell.c * (1 - ca * ca - cb * cb - cg * cg + 2 * ca * cb * cg).squareRoot()
        let lengths = [cell.b * cell.c * sa, cell.a * cell.c * sb, cell.a * cell.b * sg].map { 2 * .pi * $0 / volume }
        func star(_ c1: Double, _ c2: Double, _ c0: Double, _ s1: Double, _ s2: Double) -> Double {
            acos(max(-1, min(1, (c1 * c2 - c0) / (s1 * s2)))) / r
        }
        return (lengths, [star(cb, cg, ca, sb, sg), star(ca, cg, cb, sa, sg), star(ca, cb, cg, sa, sb)])
    }

    /// Writes `entry/transform` as NXRefine lays it out: an NXdata with `data` (v) and
    /// `weights` (n), shaped (l, k, h), against axes Ql, Qk, Qh (voxel centres, r.l.u.,
    /// with @scaling_factor a*, b*, c* in 1/Angstrom with 2 pi and @long_name), the group's
    /// @angles (gamma*, beta*, alpha*); and CCTW's `entry/data` with `v` and `n` (the same
    /// datasets, hard links). `command` records how it was made.
    public func write(_ file: NXFile, entry: String = "entry", name: String = "transform", command: String) throws {
        let cell = geometry.unitCell ?? UnitCell(a: 1, b: 1, c: 1)
        let (lengths, angles) = try ReciprocalTransform.reciprocalLattice(cell)
        try TransformGrid(v: v, n: n, grid: options.grid, reciprocalLengths: lengths, reciprocalAngles: angles)
            .write(file, entry: entry, name: name, command: command)
    }
}

// MARK: merging (cctw merge)

extension ReciprocalTransform {
    /// The parts of a transform written as NXRefine lays it out: data (v), weights (n) and
    /// the axes Ql, Qk, Qh.
    static func parts(_ g: NXGroup) throws -> (v: NXField, n: NXField, axes: [NXField]) {
        let place = "\(g.file.path): \(g.path)"
        guard let v = try g.child("data") as? NXField, let n = try g.child("weights") as? NXField else {
            throw CrystalError("\(place): not a transform: data (v) and weights (n) are needed (an NXdata as crystal.transform or NXRefine writes it)")
        }
        let axes = try ["Ql", "Qk", "Qh"].map { name -> NXField in
            guard let a = try g.child(name) as? NXField else { throw CrystalError("\(place): not a transform: no axis \(name)") }
            return a
        }
        let shape = try v.shape
        guard shape.count == 3, try n.shape == shape else {
            throw CrystalError("\(place): data and weights must both be (l, k, h), they are \(NDArray.describe(shape)) and \(NDArray.describe(try n.shape))")
        }
        for (i, a) in axes.enumerated() where try a.shape != [shape[i]] {
            throw CrystalError("\(place): axis \(a.name) has shape \(NDArray.describe(try a.shape)), the data \(shape[i]) along it")
        }
        return (v, n, axes)
    }

    static func doubles(_ f: NXField, _ selection: Selection? = nil) throws -> NDArray {
        guard case .array(let a) = try f.read(selection) else { throw CrystalError("\(f.file.path): \(f.path): must be numeric") }
        return a.dtype == .float64 && a.isContiguous ? a : try arrayWork { try a.contiguous(as: .float64) }
    }

    /// `cctw merge`: sums v and n of transforms on the same grid (several rotations or
    /// detector positions) into `entry/name` of `file`, in NXRefine's layout, slab by slab
    /// of l (about `slabBytes` each), so memory stays bounded. Returns the grid shape (l, k, h).
    public static func merge(_ inputs: [NXGroup], into file: NXFile, entry: String = "entry", name: String = "transform",
                             command: String, slabBytes: Int = 64 << 20) throws -> [Int] {
        guard let first = inputs.first else { throw CrystalError("merging needs at least one transform") }
        let ref = try parts(first)
        let shape = try ref.v.shape
        let refAxes = try ref.axes.map { try doubles($0).doubles() }
        var all = [ref]
        for g in inputs.dropFirst() {
            let p = try parts(g)
            guard try p.v.shape == shape else {
                throw CrystalError("\(g.file.path): \(g.path): grid \(NDArray.describe(try p.v.shape)) differs from \(first.file.path): \(first.path) \(NDArray.describe(shape))")
            }
            for (i, a) in p.axes.enumerated() {
                let values = try doubles(a).doubles()
                guard zip(values, refAxes[i]).allSatisfy({ abs($0 - $1) <= 1e-9 * max(1, abs($1)) }) else {
                    throw CrystalError("\(g.file.path): \(g.path): axis \(a.name) differs from \(first.file.path): \(first.path)'s (transforms to merge must share one grid)")
                }
            }
            all.append(p)
        }
        let root = file.root
        let e: NXGroup
        if let g = try root.resolve(entry) as? NXGroup { e = g } else { e = try root.makeGroup(entry, nxclass: "NXentry") }
        if try e.child(name) != nil { try e.delete(name) }
        let d = try e.makeGroup(name, nxclass: "NXdata")
        var o = NXFieldOptions()
        o.shape = shape
        o.dtype = .float64
        o.fillValue = 0
        o.chunks = [min(32, shape[0]), min(32, shape[1]), min(32, shape[2])]
        let vf = try d.makeField("data", value: nil, options: o)
        let nf = try d.makeField("weights", value: nil, options: o)
        try vf.setAttribute("long_name", .string("sum of intensity x weight"))
        try nf.setAttribute("long_name", .string("sum of weights"))
        for (i, a) in ref.axes.enumerated() {
            let f = try d.makeField(a.name, value: .array(try arrayWork { try NDArray.from(refAxes[i], shape: [refAxes[i].count]) }))
            for attr in ["scaling_factor", "long_name", "units"] {
                if let value = try a.attribute(attr) { try f.setAttribute(attr, value) }
            }
        }
        try d.setAttribute("signal", .string("data"))
        try d.setAttribute("axes", .strings(["Ql", "Qk", "Qh"], shape: [3]))
        if let angles = try first.attribute("angles") { try d.setAttribute("angles", angles) }
        _ = try d.makeField("command", value: .string(command))
        try e.setAttribute("default", .string(name))
        if try root.attribute("default") == nil { try root.setAttribute("default", .string(e.name)) }
        let slab = max(1, slabBytes / max(1, shape[1] * shape[2] * 8))
        var lo = 0
        while lo < shape[0] {
            let hi = min(shape[0], lo + slab)
            let sel = Selection([.range(.int(lo), .int(hi), 1)])
            for (target, pick) in [(vf, { (p: (v: NXField, n: NXField, axes: [NXField])) in p.v }), (nf, { $0.n })] {
                let sum = try doubles(pick(all[0]), sel).copy()
                let sp = sum.base(Double.self)
                let count = sum.count
                for p in all.dropFirst() {
                    let part = try doubles(pick(p), sel)
                    let pp = part.base(Double.self)
                    for i in 0..<count { sp[i] += pp[i] }
                }
                try target.write(.array(sum), at: sel)
            }
            if Interruption.isRequested { throw CrystalError("interrupted") }
            lo = hi
        }
        if try e.child("data") == nil {
            let cctw = try e.makeGroup("data", nxclass: "NXdata")
            try cctw.link("v", to: vf)
            try cctw.link("n", to: nf)
            try cctw.setAttribute("signal", .string("v"))
        }
        return shape
    }
}

// MARK: reading a transform back, writing any grid (symmetrized) in the same layout

/// A transform in memory: v and n (l, k, h) on a grid, with the reciprocal lattice the file
/// records (Qh, Qk, Ql @scaling_factor, 1/Angstrom with 2 pi, and @angles gamma*, beta*,
/// alpha*) when it does.
public struct TransformGrid {
    public var v: NDArray
    public var n: NDArray
    public var grid: ReciprocalGrid
    /// a*, b*, c* (with 2 pi) and alpha*, beta*, gamma*, when known.
    public var reciprocalLengths: [Double]?
    public var reciprocalAngles: [Double]?

    public init(v: NDArray, n: NDArray, grid: ReciprocalGrid, reciprocalLengths: [Double]? = nil, reciprocalAngles: [Double]? = nil) {
        self.v = v; self.n = n; self.grid = grid
        self.reciprocalLengths = reciprocalLengths; self.reciprocalAngles = reciprocalAngles
    }

    /// The reciprocal lattice of a direct cell.
    public mutating func setCell(_ cell: UnitCell) throws {
        let (l, a) = try ReciprocalTransform.reciprocalLattice(cell)
        reciprocalLengths = l; reciprocalAngles = a
    }

    /// The direct cell lengths a, b, c (Angstrom), when the reciprocal lattice is known
    /// (angles default to 90).
    public func directLengths() throws -> [Double]? {
        guard let l = reciprocalLengths else { return nil }
        let a = reciprocalAngles ?? [90, 90, 90]
        return try ReciprocalTransform.reciprocalLattice(UnitCell(a: l[0], b: l[1], c: l[2], alpha: a[0], beta: a[1], gamma: a[2])).lengths
    }

    /// Reads a transform group (NXRefine's layout: data, weights, Ql, Qk, Qh), whole.
    public static func read(_ g: NXGroup) throws -> TransformGrid {
        let p = try ReciprocalTransform.parts(g)
        let v = try ReciprocalTransform.doubles(p.v), n = try ReciprocalTransform.doubles(p.n)
        var origin = [0.0, 0, 0], step = [1.0, 1, 1], size = [0, 0, 0], lengths: [Double] = [0, 0, 0]
        var haveLengths = true
        for (axisIndex, a) in [(2, p.axes[0]), (1, p.axes[1]), (0, p.axes[2])] {
            let values = try ReciprocalTransform.doubles(a).doubles()
            origin[axisIndex] = values[0]
            size[axisIndex] = values.count
            if values.count > 1 { step[axisIndex] = (values[values.count - 1] - values[0]) / Double(values.count - 1) }
            if let s = try a.attribute("scaling_factor"), case .array(let x) = s, let f = x.doubles().first, f > 0 {
                lengths[axisIndex] = f
            } else { haveLengths = false }
        }
        var angles: [Double]?
        if let at = try g.attribute("angles"), case .array(let x) = at, x.count == 3 {
            let d = x.doubles()
            angles = [d[2], d[1], d[0]]
        }
        return TransformGrid(v: v, n: n, grid: try ReciprocalGrid(origin: origin, step: step, size: size),
                             reciprocalLengths: haveLengths ? lengths : nil, reciprocalAngles: angles)
    }

    /// Writes `entry/name` in NXRefine's layout (as ReciprocalTransform.write, with CCTW's
    /// entry/data/v and n links when there is no entry/data yet).
    public func write(_ file: NXFile, entry: String = "entry", name: String = "transform", command: String) throws {
        _ = try TransformGrid.layout(file, entry: entry, name: name, grid: grid, values: (v, n), reciprocalLengths: reciprocalLengths,
                                     reciprocalAngles: reciprocalAngles, command: command)
    }

    /// NXRefine's layout of a transform on `grid`: with `values` (v, n) written, or without,
    /// data and weights allocated whole at creation and never filled (zeros in a new file),
    /// to be written slab by slab. Returns the data and weights fields.
    public static func layout(_ file: NXFile, entry: String, name: String, grid: ReciprocalGrid, values: (NDArray, NDArray)?,
                              reciprocalLengths: [Double]?, reciprocalAngles: [Double]?, command: String) throws -> (NXField, NXField) {
        let root = file.root
        let e: NXGroup
        if let g = try root.resolve(entry) as? NXGroup { e = g } else { e = try root.makeGroup(entry, nxclass: "NXentry") }
        if try e.child(name) != nil { try e.delete(name) }
        let d = try e.makeGroup(name, nxclass: "NXdata")
        var o = NXFieldOptions()
        o.chunks = [min(32, grid.size[2]), min(32, grid.size[1]), min(32, grid.size[0])]
        if values == nil {
            o.shape = [grid.size[2], grid.size[1], grid.size[0]]
            o.dtype = .float64
            o.fillValue = 0
            o.allocateEarly = true
        }
        let vf = try d.makeField("data", value: values.map { .array($0.0) }, options: o)
        let nf = try d.makeField("weights", value: values.map { .array($0.1) }, options: o)
        try vf.setAttribute("long_name", .string("sum of intensity x weight"))
        try nf.setAttribute("long_name", .string("sum of weights"))
        for (axis, label, i) in [("Ql", "L", 2), ("Qk", "K", 1), ("Qh", "H", 0)] {
            let values = grid.axis(i)
            let f = try d.makeField(axis, value: .array(try arrayWork { try NDArray.from(values, shape: [values.count]) }))
            if let l = reciprocalLengths { try f.setAttribute("scaling_factor", .array(try arrayWork { try NDArray.full([], l[i]) })) }
            try f.setAttribute("long_name", .string("\(label) (r.l.u.)"))
        }
        try d.setAttribute("signal", .string("data"))
        try d.setAttribute("axes", .strings(["Ql", "Qk", "Qh"], shape: [3]))
        if let a = reciprocalAngles {
            try d.setAttribute("angles", .array(try arrayWork { try NDArray.from([a[2], a[1], a[0]], shape: [3]) }))
        }
        _ = try d.makeField("command", value: .string(command))
        try e.setAttribute("default", .string(name))
        if try root.attribute("default") == nil { try root.setAttribute("default", .string(e.name)) }
        if try e.child("data") == nil {
            let cctw = try e.makeGroup("data", nxclass: "NXdata")
            try cctw.link("v", to: vf)
            try cctw.link("n", to: nf)
            try cctw.setAttribute("signal", .string("v"))
        }
        return (vf, nf)
    }
}
