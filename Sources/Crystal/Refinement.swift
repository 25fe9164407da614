#if canImport(Glibc)
import Glibc
#endif
import CMinpackShims

/// Least-squares refinement of the lattice parameters (as the crystal system allows) and
/// the orientation, as NXRefine's refine_hkls does with lmfit: residuals G - U B h over the
/// indexed peaks, minimised by Levenberg-Marquardt (Debian's libcminpack, lmdif1).
public enum Refinement {
    public enum Symmetry: String, CaseIterable, Sendable {
        case cubic, tetragonal, orthorhombic, hexagonal, monoclinic, triclinic
    }

    public struct Result: Sendable {
        public let cell: UnitCell
        public let u: Matrix3
        /// Root-mean-square |G - U B h| before and after, 1/Angstrom.
        public let rmsBefore: Double, rmsAfter: Double
        /// Peaks used (after leaving out those over 3 times the median residual).
        public let used: Int
        public let info: Int32
    }

    /// The free lattice parameters of a system and the cell they make.
    static func free(_ c: UnitCell, _ s: Symmetry) -> [Double] {
        switch s {
        case .cubic: return [c.a]
        case .tetragonal, .hexagonal: return [c.a, c.c]
        case .orthorhombic: return [c.a, c.b, c.c]
        case .monoclinic: return [c.a, c.b, c.c, c.beta]
        case .triclinic: return c.parameters
        }
    }

    static func cell(_ p: [Double], _ s: Symmetry) -> UnitCell {
        switch s {
        case .cubic: return UnitCell(a: p[0], b: p[0], c: p[0])
        case .tetragonal: return UnitCell(a: p[0], b: p[0], c: p[1])
        case .hexagonal: return UnitCell(a: p[0], b: p[0], c: p[1], gamma: 120)
        case .orthorhombic: return UnitCell(a: p[0], b: p[1], c: p[2])
        case .monoclinic: return UnitCell(a: p[0], b: p[1], c: p[2], beta: p[3])
        case .triclinic: return UnitCell(a: p[0], b: p[1], c: p[2], alpha: p[3], beta: p[4], gamma: p[5])
        }
    }

    /// The problem handed to the C callback through its context pointer.
    final class Problem {
        let gs: [Vector3], hkl: [Vector3], symmetry: Symmetry, u0: Matrix3
        var failed = false
        init(gs: [Vector3], hkl: [Vector3], symmetry: Symmetry, u0: Matrix3) {
            self.gs = gs; self.hkl = hkl; self.symmetry = symmetry; self.u0 = u0
        }
        /// x: the free lattice parameters, then three small rotations (degrees) applied to U0.
        func model(_ x: [Double]) -> (UnitCell, Matrix3) {
            let k = x.count - 3
            let u = Matrix3.rotation(axis: 1, degrees: x[k]) * Matrix3.rotation(axis: 2, degrees: x[k + 1])
                * Matrix3.rotation(axis: 3, degrees: x[k + 2]) * u0
            return (Refinement.cell(Array(x[..<k]), symmetry), u)
        }
        func residuals(_ x: [Double], into f: UnsafeMutablePointer<Double>) -> Bool {
            let (c, u) = model(x)
            guard let b = try? c.matrixB() else { return false }
            let ub = u * b
            for (i, (g, h)) in zip(gs, hkl).enumerated() {
                let d = g - ub * h
                f[3 * i] = d.x; f[3 * i + 1] = d.y; f[3 * i + 2] = d.z
            }
            return true
        }
    }

    public static func refine(_ gs: [Vector3], hkl: [Vector3], use: [Bool], cell start: UnitCell, u: Matrix3,
                              symmetry: Symmetry) throws -> Result {
        var chosen = gs.indices.filter { use[$0] }
        let nFree = free(start, symmetry).count + 3
        func rms(_ c: UnitCell, _ uu: Matrix3, _ idx: [Int]) throws -> [Double] {
            let ub = uu * (try c.matrixB())
            return idx.map { (gs[$0] - ub * hkl[$0]).norm }
        }
        let before = try rms(start, u, chosen)
        var cell = start, orientation = u
        var info: Int32 = 0
        for pass in 0..<2 {
            guard 3 * chosen.count > nFree else {
                throw CrystalError("refining \(nFree) parameters needs more than \(nFree / 3) indexed peaks, got \(chosen.count)")
            }
            let problem = Problem(gs: chosen.map { gs[$0] }, hkl: chosen.map { hkl[$0] }, symmetry: symmetry, u0: orientation)
            var x = free(cell, symmetry) + [0, 0, 0]
            var f = [Double](repeating: 0, count: 3 * chosen.count)
            var why = [CChar](repeating: 0, count: 256)
            let context = Unmanaged.passRetained(problem)
            defer { context.release() }
            let callback: nxminpack_residuals = { ctx, m, n, xp, fp, _ in
                let p = Unmanaged<Problem>.fromOpaque(ctx!).takeUnretainedValue()
                let xs = Array(UnsafeBufferPointer(start: xp, count: Int(n)))
                if !p.residuals(xs, into: fp) { p.failed = true; return -1 }
                return 0
            }
            info = nxminpack_lmdif1(callback, context.toOpaque(), Int32(f.count), Int32(x.count), &x, &f, 1e-12, &why, why.count)
            if info < 0 { throw CrystalError(String(cString: why)) }
            if problem.failed { throw CrystalError("refinement left the space of valid cells (from \(start.parameters)); check the crystal system and the starting cell") }
            guard (1...4).contains(info) else {
                throw CrystalError("refinement did not converge (lmdif1 info \(info): \(info == 5 ? "too many evaluations" : "tolerance too small")) with \(chosen.count) peaks, rms \(before.isEmpty ? 0 : (before.map { $0 * $0 }.reduce(0, +) / Double(before.count)).squareRoot()) 1/A before")
            }
            (cell, orientation) = problem.model(x)
            if pass == 0 {
                let r = try rms(cell, orientation, chosen)
                let median = r.sorted()[r.count / 2]
                chosen = zip(chosen, r).filter { $0.1 <= 3 * median + 1e-12 }.map(\.0)
            }
        }
        func rootMean(_ v: [Double]) -> Double { v.isEmpty ? 0 : (v.map { $0 * $0 }.reduce(0, +) / Double(v.count)).squareRoot() }
        return Result(cell: cell, u: orientation, rmsBefore: rootMean(before), rmsAfter: rootMean(try rms(cell, orientation, chosen)),
                      used: chosen.count, info: info)
    }
}
