#if canImport(Glibc)
import Glibc
#endif
import CFFTWShims
import Dispatch
import NDArray
import NeXus

/// The 3-D PDF of a reciprocal grid (NXRefine's nxpdf): the mean intensity v / n (0 where
/// nothing was measured), Bragg peaks punched (every voxel within `punch` r.l.u. of an
/// integer (h, k, l)) and each hole filled with the mean of the measured voxels of its
/// shell (punch < d <= punch + shell from the same integer point), a Tukey window to the
/// grid's edges, then the 3-D DFT (FFTW) of the filled data (the total PDF) and of the
/// punched and filled data (the difference PDF):
///     P(x) = sum over voxels of D(h) exp(-2 pi i h . x),  x in lattice units,
/// on x = (m - N/2) / (N step) per axis (numpy's fftshift(fftfreq(N, step))), so a grid of
/// step dh spans 1 / dh unit cells. Arrays are (l, k, h) in and (z, y, x) out.
public enum ReciprocalPDF {
    public struct Options: Sendable {
        /// Radius of the spheres punched around integer (h, k, l), r.l.u.; 0: none.
        public var punch = 0.2
        /// Width of the shell whose mean fills a hole; nil: the punch radius.
        public var shell: Double?
        /// Tukey window parameter per axis (the tapered fraction, 0 none, 1 Hann).
        public var taper = 0.1
        public init() {}
    }

    public struct Result {
        /// v / n, holes filled, tapered: the input of each DFT.
        public var totalInput: NDArray
        public var differenceInput: NDArray
        public var total: (re: NDArray, im: NDArray)
        public var difference: (re: NDArray, im: NDArray)
        /// Real-space axes in lattice units (fractions of a, b, c): x (along a), y, z.
        public var axes: [[Double]]
        /// Voxels punched; integer points whose hole was filled.
        public var punched = 0
        public var holes = 0
    }

    /// v / n where n > 0, else 0.
    public static func mean(v: NDArray, n: NDArray) throws -> NDArray {
        guard v.shape == n.shape else { throw CrystalError("v and n have shapes \(NDArray.describe(v.shape)) and \(NDArray.describe(n.shape))") }
        let vv = try arrayWork { try v.contiguous(as: .float64) }, nn = try arrayWork { try n.contiguous(as: .float64) }
        let out = try arrayWork { try NDArray(zeros: v.shape, dtype: .float64) }
        let vp = vv.base(Double.self), np = nn.base(Double.self), op = out.base(Double.self)
        for i in 0..<v.count where np[i] > 0 { op[i] = vp[i] / np[i] }
        return out
    }

    /// Punches spheres of radius `radius` around every integer point and fills each with the
    /// mean of the measured voxels (n > 0) of its shell; `measured` nil: all are. Returns a new
    /// array, the number of voxels punched and of holes filled.
    public static func punchAndFill(_ data: NDArray, measured: NDArray?, grid: ReciprocalGrid, radius: Double,
                                    shell: Double) throws -> (NDArray, Int, Int) {
        guard radius >= 0, radius <= 0.5, shell >= 0, radius.isFinite, shell.isFinite else {
            throw CrystalError("punch must be between 0 and 0.5 r.l.u. and the shell >= 0, got \(radius) and \(shell)")
        }
        let out = try arrayWork { try data.contiguous(as: .float64).copy() }
        guard radius > 0 else { return (out, 0, 0) }
        let mm = try measured.map { m in try arrayWork { try m.contiguous(as: .float64) } }
        let axes = (0..<3).map { grid.axis($0) }
        let nearest = axes.map { $0.map { $0.rounded(.toNearestOrEven) } }
        let lo = nearest.map { Int($0.first!) }, hi = nearest.map { Int($0.last!) }
        let span = (0..<3).map { hi[$0] - lo[$0] + 1 }
        var sums = [Double](repeating: 0, count: span[0] * span[1] * span[2]), counts = sums
        // boundaries included to 1e-9 (relative): a voxel exactly on a sphere in exact
        // arithmetic is in it whatever the rounding of its coordinates
        let r2 = radius * radius * (1 + 1e-9), outer = (radius + shell) * (radius + shell) * (1 + 1e-9)
        let op = out.base(Double.self)
        let mp = mm?.base(Double.self)
        let nh = grid.size[0], nk = grid.size[1], nl = grid.size[2]
        var punched = 0
        // pass 1: shell sums; pass 2: fill
        for pass in 0..<2 {
            for il in 0..<nl {
                let dl = axes[2][il] - nearest[2][il]
                for ik in 0..<nk {
                    let dk = axes[1][ik] - nearest[1][ik]
                    let row = (il * nk + ik) * nh
                    let pk = ((Int(nearest[2][il]) - lo[2]) * span[1] + Int(nearest[1][ik]) - lo[1]) * span[0] - lo[0]
                    for ih in 0..<nh {
                        let dh = axes[0][ih] - nearest[0][ih]
                        let d2 = dh * dh + dk * dk + dl * dl
                        let p = pk + Int(nearest[0][ih])
                        if pass == 0 {
                            if d2 > r2 && d2 <= outer && (mp == nil || mp![row + ih] > 0) {
                                sums[p] += op[row + ih]; counts[p] += 1
                            }
                        } else if d2 <= r2 {
                            op[row + ih] = counts[p] > 0 ? sums[p] / counts[p] : 0
                            punched += 1
                        }
                    }
                }
            }
        }
        let holes = counts.filter { $0 > 0 }.count
        return (out, punched, holes)
    }

    /// The Tukey window of n points (scipy.signal.windows.tukey, symmetric).
    public static func tukey(_ n: Int, _ alpha: Double) -> [Double] {
        guard n > 1, alpha > 0 else { return [Double](repeating: 1, count: n) }
        let a = min(alpha, 1)
        return (0..<n).map { i in
            let x = Double(i) / Double(n - 1)
            if x < a / 2 { return 0.5 * (1 - cos(2 * .pi * x / a)) }
            if x > 1 - a / 2 { return 0.5 * (1 - cos(2 * .pi * (1 - x) / a)) }
            return 1
        }
    }

    /// Multiplies (l, k, h) data in place by the product of per-axis Tukey windows.
    public static func taper(_ data: NDArray, grid: ReciprocalGrid, alpha: Double) {
        guard alpha > 0 else { return }
        let w = (0..<3).map { tukey(grid.size[$0], alpha) }
        let p = data.base(Double.self)
        let nh = grid.size[0], nk = grid.size[1], nl = grid.size[2]
        for il in 0..<nl { for ik in 0..<nk {
            let f = w[2][il] * w[1][ik], row = (il * nk + ik) * nh
            for ih in 0..<nh { p[row + ih] *= f * w[0][ih] }
        } }
    }

    /// The DFT of (l, k, h) data as P(x) above: re and im, (z, y, x), zero x at index N/2.
    public static func transform(_ data: NDArray, grid: ReciprocalGrid) throws -> (re: NDArray, im: NDArray) {
        let nh = grid.size[0], nk = grid.size[1], nl = grid.size[2]
        let n = [nh, nk, nl]
        let total = nh * nk * nl
        let src = data.base(Double.self)
        var buffer = [Double](repeating: 0, count: 2 * total)
        // ifftshift: buffer index j takes data index (j + N/2) mod N on each axis
        let sh = nh / 2, sk = nk / 2, sl = nl / 2
        for jl in 0..<nl {
            let il = (jl + sl) % nl
            for jk in 0..<nk {
                let ik = (jk + sk) % nk
                let from = (il * nk + ik) * nh, to = (jl * nk + jk) * nh
                for jh in 0..<nh { buffer[2 * (to + jh)] = src[from + (jh + sh) % nh] }
            }
        }
        var why = [CChar](repeating: 0, count: 256)
        let rc = buffer.withUnsafeMutableBufferPointer { b in
            nxfftw_dft3d(Int32(nl), Int32(nk), Int32(nh), b.baseAddress!, -1, Int32(ProcessInfoCores.count), &why, why.count)
        }
        if rc != 0 { throw CrystalError("crystal PDF: " + String(cString: why)) }
        // phase of an origin off N/2 steps: exp(-2 pi i p (m - N/2) / N), p = origin / step + N/2
        let phases: [[(Double, Double)]?] = (0..<3).map { a in
            let p = grid.origin[a] / grid.step[a] + Double(n[a] / 2)
            if abs(p) < 1e-12 { return nil }
            return (0..<n[a]).map { m in
                let t = -2 * Double.pi * p * Double(m - n[a] / 2) / Double(n[a])
                return (cos(t), sin(t))
            }
        }
        let re = try arrayWork { try NDArray(zeros: [nl, nk, nh], dtype: .float64) }
        let im = try arrayWork { try NDArray(zeros: [nl, nk, nh], dtype: .float64) }
        let rp = re.base(Double.self), ip = im.base(Double.self)
        for ml in 0..<nl {
            let jl = (ml + nl - sl) % nl
            for mk in 0..<nk {
                let jk = (mk + nk - sk) % nk
                let from = (jl * nk + jk) * nh, to = (ml * nk + mk) * nh
                if phases.allSatisfy({ $0 == nil }) {
                    for mh in 0..<nh {
                        let j = from + (mh + nh - sh) % nh
                        rp[to + mh] = buffer[2 * j]; ip[to + mh] = buffer[2 * j + 1]
                    }
                    continue
                }
                let (cl, sl2) = phases[2]?[ml] ?? (1, 0), (ck, sk2) = phases[1]?[mk] ?? (1, 0)
                let (ckl, skl) = (cl * ck - sl2 * sk2, cl * sk2 + sl2 * ck)
                for mh in 0..<nh {
                    let j = from + (mh + nh - sh) % nh
                    let (ch, shh) = phases[0]?[mh] ?? (1, 0)
                    let c = ckl * ch - skl * shh, s = ckl * shh + skl * ch
                    let x = buffer[2 * j], y = buffer[2 * j + 1]
                    rp[to + mh] = x * c - y * s; ip[to + mh] = x * s + y * c
                }
            }
        }
        return (re, im)
    }

    /// Real-space axis of grid axis a in lattice units: (m - N/2) / (N step).
    public static func realAxis(_ grid: ReciprocalGrid, _ a: Int) -> [Double] {
        let n = grid.size[a]
        return (0..<n).map { Double($0 - n / 2) / (Double(n) * grid.step[a]) }
    }

    public static func run(v: NDArray, n: NDArray, grid: ReciprocalGrid, options: Options) throws -> Result {
        let shape = [grid.size[2], grid.size[1], grid.size[0]]
        guard v.shape == shape, n.shape == shape else {
            throw CrystalError("v and n must be (l, k, h) \(NDArray.describe(shape)) for the grid, they are \(NDArray.describe(v.shape)) and \(NDArray.describe(n.shape))")
        }
        guard options.taper >= 0, options.taper <= 1 else { throw CrystalError("taper must be between 0 and 1, got \(options.taper)") }
        let data = try mean(v: v, n: n)
        let (punched, count, holes) = try punchAndFill(data, measured: n, grid: grid, radius: options.punch,
                                                       shell: options.shell ?? options.punch)
        taper(data, grid: grid, alpha: options.taper)
        taper(punched, grid: grid, alpha: options.taper)
        let t = try transform(data, grid: grid)
        let d = try transform(punched, grid: grid)
        return Result(totalInput: data, differenceInput: punched, total: t, difference: d,
                      axes: (0..<3).map { realAxis(grid, $0) }, punched: count, holes: holes)
    }

    /// Writes `entry/total_pdf` and `entry/difference_pdf`: NXdata with `data` (the real
    /// part, (z, y, x)) against axes z, y, x in Angstrom (lattice units times `lengths` a,
    /// b, c; nil: lattice units).
    public static func write(_ result: Result, to file: NXFile, entry: String = "entry", lengths: [Double]?, command: String) throws {
        let root = file.root
        let e: NXGroup
        if let g = try root.resolve(entry) as? NXGroup { e = g } else { e = try root.makeGroup(entry, nxclass: "NXentry") }
        for (name, part, title) in [("total_pdf", result.total.re, "total PDF"), ("difference_pdf", result.difference.re, "difference PDF")] {
            if try e.child(name) != nil { try e.delete(name) }
            let d = try e.makeGroup(name, nxclass: "NXdata")
            var o = NXFieldOptions()
            o.chunks = part.shape.map { min(32, $0) }
            let f = try d.makeField("data", value: .array(part), options: o)
            try f.setAttribute("long_name", .string(title))
            for (axis, i) in [("z", 2), ("y", 1), ("x", 0)] {
                let values = result.axes[i].map { $0 * (lengths?[i] ?? 1) }
                let a = try d.makeField(axis, value: .array(try arrayWork { try NDArray.from(values, shape: [values.count]) }))
                try a.setAttribute("units", .string(lengths == nil ? "lattice units" : "Angstrom"))
                try a.setAttribute("long_name", .string("\(axis) (\(lengths == nil ? "lattice units" : "Angstrom"))"))
            }
            try d.setAttribute("signal", .string("data"))
            try d.setAttribute("axes", .strings(["z", "y", "x"], shape: [3]))
            _ = try d.makeField("command", value: .string(command))
        }
        try e.setAttribute("default", .string("difference_pdf"))
        if try root.attribute("default") == nil { try root.setAttribute("default", .string(e.name)) }
    }
}
