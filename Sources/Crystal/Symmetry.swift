import Dispatch
import NDArray

/// A Laue class as the integer 3 x 3 matrices M acting on a column (h, k, l): the
/// equivalent of (h, k, l) under operator M is M (h, k, l). Built from a few generators and
/// closed under products, so every operator is there exactly once. The trigonal and
/// hexagonal classes act on hexagonal axes (i = -(h + k) implied): the three-fold is
/// (h, k, l) -> (k, i, l), so (h, k, i) cycles as it should (NXRefine's symmetrize maps
/// -3 and -3m voxels to points that are not equivalent).
public struct LaueGroup: Sendable, Equatable {
    /// Row-major 3 x 3 integer matrices, the identity first.
    public let operators: [[Int]]
    public let name: String
    public var order: Int { operators.count }

    public static let names = ["-1", "2/m", "mmm", "4/m", "4/mmm", "-3", "-3m1", "-31m", "6/m", "6/mmm", "m-3", "m-3m"]

    static let inversion = [-1, 0, 0, 0, -1, 0, 0, 0, -1]
    static let twoB = [-1, 0, 0, 0, 1, 0, 0, 0, -1]     // two-fold along b (monoclinic unique axis b)
    static let twoC = [-1, 0, 0, 0, -1, 0, 0, 0, 1]     // two-fold along c
    static let twoA = [1, 0, 0, 0, -1, 0, 0, 0, -1]     // two-fold along a
    static let fourC = [0, -1, 0, 1, 0, 0, 0, 0, 1]     // (h, k, l) -> (-k, h, l)
    static let threeC = [0, 1, 0, -1, -1, 0, 0, 0, 1]   // (h, k, l) -> (k, -h-k, l): hexagonal axes
    static let twoHex1 = [0, 1, 0, 1, 0, 0, 0, 0, -1]   // (h, k, l) -> (k, h, -l): in -3m1
    static let twoHex2 = [0, -1, 0, -1, 0, 0, 0, 0, -1] // (h, k, l) -> (-k, -h, -l): in -31m
    static let threeDiag = [0, 0, 1, 1, 0, 0, 0, 1, 0]  // (h, k, l) -> (l, h, k)

    /// The generators of a class; "-3m" is "-3m1", "2/m" has b unique.
    static func generators(_ name: String) -> [[Int]]? {
        switch name {
        case "-1": return [inversion]
        case "2/m": return [twoB, inversion]
        case "mmm": return [twoC, twoB, inversion]
        case "4/m": return [fourC, inversion]
        case "4/mmm": return [fourC, twoA, inversion]
        case "-3": return [threeC, inversion]
        case "-3m", "-3m1": return [threeC, twoHex1, inversion]
        case "-31m": return [threeC, twoHex2, inversion]
        case "6/m": return [threeC, twoC, inversion]
        case "6/mmm": return [threeC, twoC, twoHex1, inversion]
        case "m-3": return [twoC, twoB, threeDiag, inversion]
        case "m-3m": return [fourC, threeDiag, inversion]
        default: return nil
        }
    }

    public init(_ name: String) throws {
        guard let gens = LaueGroup.generators(name) else {
            throw CrystalError("unknown Laue class \"\(name)\": one of \(LaueGroup.names.joined(separator: ", ")) (and -3m for -3m1)")
        }
        self.name = name == "-3m" ? "-3m1" : name
        self.operators = LaueGroup.close(gens)
    }

    public static func multiply(_ a: [Int], _ b: [Int]) -> [Int] {
        var c = [Int](repeating: 0, count: 9)
        for r in 0..<3 { for col in 0..<3 { for k in 0..<3 { c[r * 3 + col] += a[r * 3 + k] * b[k * 3 + col] } } }
        return c
    }

    /// The closure of the generators under products (breadth first from the identity).
    static func close(_ gens: [[Int]]) -> [[Int]] {
        var ops: [[Int]] = [[1, 0, 0, 0, 1, 0, 0, 0, 1]]
        var seen = Set(ops)
        var i = 0
        while i < ops.count {
            for g in gens {
                let p = multiply(g, ops[i])
                if seen.insert(p).inserted { ops.append(p) }
            }
            i += 1
        }
        return ops
    }

    /// The index map of operator `m` on `grid`: image index j_r = offset[r] + sum_c m[r][c] i_c
    /// for axis r, or an error naming the axes when the image of a grid point need not be one
    /// (steps differ on axes the operator mixes, or the origin is not on the image lattice).
    static func indexMap(_ m: [Int], _ grid: ReciprocalGrid) throws -> [Int] {
        let axes = ["h", "k", "l"]
        var offset = [0, 0, 0]
        for r in 0..<3 {
            var o = -grid.origin[r]
            for c in 0..<3 where m[r * 3 + c] != 0 {
                let s = grid.step[c], sr = grid.step[r]
                guard abs(s - sr) <= 1e-9 * max(s, sr) else {
                    throw CrystalError("the grid cannot be symmetrized: operator \(describe(m)) maps \(axes[c]) onto \(axes[r]), and their steps differ (\(s) and \(sr))")
                }
                o += Double(m[r * 3 + c]) * grid.origin[c]
            }
            let q = o / grid.step[r]
            guard abs(q - q.rounded()) <= 1e-6 else {
                let mixed = (0..<3).filter { m[r * 3 + $0] != 0 }.map { axes[$0] }.joined(separator: ", ")
                throw CrystalError("the grid cannot be symmetrized: operator \(describe(m)) takes points of \(mixed) off the grid along \(axes[r]) (the origins are not on the image lattice: use a grid symmetric about 0, or origins that are whole steps from 0)")
            }
            offset[r] = Int(q.rounded())
        }
        return offset
    }

    /// "(h, k, l) -> (k, -h-k, l)".
    public static func describe(_ m: [Int]) -> String {
        let names = ["h", "k", "l"]
        let rows = (0..<3).map { r -> String in
            var s = ""
            for c in 0..<3 {
                let x = m[r * 3 + c]
                if x == 0 { continue }
                if x > 0 { if !s.isEmpty { s += "+" } } else { s += "-" }
                if abs(x) != 1 { s += "\(abs(x))" }
                s += names[c]
            }
            return s.isEmpty ? "0" : s
        }
        return "(h, k, l) -> (\(rows.joined(separator: ", ")))"
    }

    /// Checks that every operator maps the grid's points onto grid points (ignoring range).
    public func check(_ grid: ReciprocalGrid) throws {
        for m in operators { _ = try LaueGroup.indexMap(m, grid) }
    }

    /// R(x) = sum over operators M of a(M x), over those M whose image of voxel x lies in
    /// the grid; applied to v and n alike, so R is exactly invariant under the group and
    /// R_v / R_n is the mean over equivalent measured voxels. Arrays are (l, k, h) float64.
    /// Threaded over l planes; each operator's inner loop runs over the h range whose images
    /// stay inside, found in closed form (no per-voxel bounds tests).
    public func symmetrize(_ a: NDArray, grid: ReciprocalGrid) throws -> NDArray {
        let shape = [grid.size[2], grid.size[1], grid.size[0]]
        guard a.shape == shape else {
            throw CrystalError("the array has shape \(NDArray.describe(a.shape)), the grid (l, k, h) \(NDArray.describe(shape))")
        }
        let maps = try operators.map { try LaueGroup.indexMap($0, grid) }
        let src = a.dtype == .float64 && a.isContiguous ? a : try arrayWork { try a.contiguous(as: .float64) }
        let out = try arrayWork { try NDArray(zeros: shape, dtype: .float64) }
        nonisolated(unsafe) let sp = UnsafePointer(src.base(Double.self))
        nonisolated(unsafe) let op = out.base(Double.self)
        let nh = grid.size[0], nk = grid.size[1], nl = grid.size[2]
        let n = [nh, nk, nl]
        let stride = [1, nh, nh * nk]  // linear index of (h, k, l)
        let ops = operators
        DispatchQueue.concurrentPerform(iterations: nl) { il in
            for (m, off) in zip(ops, maps) {
                // j_r = off[r] + m[r][0] ih + m[r][1] ik + m[r][2] il
                for ik in 0..<nk {
                    var lo = 0, hi = nh - 1
                    var base = 0, delta = 0
                    for r in 0..<3 {
                        let c0 = off[r] + m[r * 3 + 1] * ik + m[r * 3 + 2] * il
                        let d = m[r * 3]
                        // need 0 <= c0 + d ih <= n[r] - 1
                        if d == 0 {
                            if c0 < 0 || c0 >= n[r] { lo = 1; hi = 0 }
                        } else if d > 0 {
                            lo = max(lo, ceilDiv(-c0, d)); hi = min(hi, floorDiv(n[r] - 1 - c0, d))
                        } else {
                            lo = max(lo, ceilDiv(n[r] - 1 - c0, d)); hi = min(hi, floorDiv(-c0, d))
                        }
                        base += c0 * stride[r]
                        delta += d * stride[r]
                    }
                    if lo > hi { continue }
                    let row = op + (il * nk + ik) * nh
                    var s = base + lo * delta
                    for ih in lo...hi {
                        row[ih] += sp[s]
                        s += delta
                    }
                }
            }
        }
        return out
    }
}

@inline(__always) func floorDiv(_ a: Int, _ b: Int) -> Int {
    let q = a / b
    return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q
}

@inline(__always) func ceilDiv(_ a: Int, _ b: Int) -> Int { -floorDiv(-a, b) }
