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

// MARK: geometry with the cell and U

extension Refinement {
    /// Geometry values refined with the lattice parameters and U, named as the Lua face
    /// names them (NXRefine's refine_hkls varies the same: distance, xc, yc, yaw, pitch,
    /// roll, chi, omega, gonpitch, phi, wavelength).
    public enum GeometryParameter: String, CaseIterable, Sendable {
        case distance, beamCenterX = "beam_center_x", beamCenterY = "beam_center_y", yaw, pitch, roll
        case omega, chi, theta, phiStart = "phi_start", wavelength

        public func value(_ g: CrystalGeometry) -> Double {
            switch self {
            case .distance: return g.distance
            case .beamCenterX: return g.beamCenterX
            case .beamCenterY: return g.beamCenterY
            case .yaw: return g.yaw
            case .pitch: return g.pitch
            case .roll: return g.roll
            case .omega: return g.omega
            case .chi: return g.chi
            case .theta: return g.theta
            case .phiStart: return g.phiStart
            case .wavelength: return g.wavelength
            }
        }

        /// The geometry with this value set; omega, chi and phi move per-frame angles with
        /// them (an offset of the whole scan).
        public func setting(_ v: Double, in g: CrystalGeometry) -> CrystalGeometry {
            var out = g
            switch self {
            case .distance: out.distance = v
            case .beamCenterX: out.beamCenterX = v
            case .beamCenterY: out.beamCenterY = v
            case .yaw: out.yaw = v
            case .pitch: out.pitch = v
            case .roll: out.roll = v
            case .omega: out = g.shifted(omega: v - g.omega)
            case .chi: out = g.shifted(chi: v - g.chi)
            case .theta: out.theta = v
            case .phiStart: out = g.shifted(phi: v - g.phiStart)
            case .wavelength: out.wavelength = v
            }
            return out
        }
    }

    /// The outcome of a geometry refinement: the geometry with the refined cell, U and values.
    public struct GeometryFit: Sendable {
        public let geometry: CrystalGeometry
        /// Root-mean-square |G - U B h|, 1/Angstrom, over the peaks used.
        public let rmsBefore: Double, rmsAfter: Double
        public let used: Int
        /// Residual evaluations of the last pass, and lmdif's info.
        public let evaluations: Int
        public let info: Int32
        /// Each refined value before and after.
        public let changes: [(parameter: GeometryParameter, before: Double, after: Double)]
    }

    /// The problem of a geometry refinement, for the C callback.
    final class GeometryProblem {
        let peaks: [Vector3], hkl: [Vector3]
        let symmetry: Symmetry, lattice: Bool, orientation: Bool
        let parameters: [GeometryParameter]
        let start: CrystalGeometry, u0: Matrix3
        var failure: String?
        init(peaks: [Vector3], hkl: [Vector3], symmetry: Symmetry, lattice: Bool, orientation: Bool,
             parameters: [GeometryParameter], start: CrystalGeometry, u0: Matrix3) {
            self.peaks = peaks; self.hkl = hkl; self.symmetry = symmetry; self.lattice = lattice
            self.orientation = orientation; self.parameters = parameters; self.start = start; self.u0 = u0
        }

        /// x: the free lattice parameters (with `lattice`), three small rotations of U0
        /// (degrees, with `orientation`), then the geometry values.
        func initial() -> [Double] {
            (lattice ? Refinement.free(start.unitCell!, symmetry) : []) + (orientation ? [0, 0, 0] : [])
                + parameters.map { $0.value(start) }
        }

        func model(_ x: [Double]) -> CrystalGeometry {
            var k = 0
            var g = start
            if lattice {
                let n = Refinement.free(start.unitCell!, symmetry).count
                g.unitCell = Refinement.cell(Array(x[0..<n]), symmetry)
                k = n
            }
            if orientation {
                g.orientationMatrix = Matrix3.rotation(axis: 1, degrees: x[k]) * Matrix3.rotation(axis: 2, degrees: x[k + 1])
                    * Matrix3.rotation(axis: 3, degrees: x[k + 2]) * u0
                k += 3
            }
            for (i, p) in parameters.enumerated() { g = p.setting(x[k + i], in: g) }
            return g
        }

        func residuals(_ g: CrystalGeometry, into f: UnsafeMutablePointer<Double>) throws {
            let t = try g.transform()
            let ub = try g.matrixUB()
            for (i, (p, h)) in zip(peaks, hkl).enumerated() {
                let d = t.scatteringVector(x: p.x, y: p.y, z: p.z) - ub * h
                f[3 * i] = d.x; f[3 * i + 1] = d.y; f[3 * i + 2] = d.z
            }
        }
    }

    static func rootMean(_ v: [Double]) -> Double { v.isEmpty ? 0 : (v.map { $0 * $0 }.reduce(0, +) / Double(v.count)).squareRoot() }

    /// |G - U B h| of each peak for a geometry.
    static func residualNorms(_ g: CrystalGeometry, peaks: [Vector3], hkl: [Vector3]) throws -> [Double] {
        let t = try g.transform(), ub = try g.matrixUB()
        return zip(peaks, hkl).map { (t.scatteringVector(x: $0.0.x, y: $0.0.y, z: $0.0.z) - ub * $0.1).norm }
    }

    /// Least-squares refinement of geometry values with the lattice parameters (as the
    /// crystal system allows, when `lattice`) and U (when `orientation`) from peaks at pixel
    /// (x, y) and frame z indexed `hkl`: residuals G - U B h, Levenberg-Marquardt (lmdif) with
    /// at most `maxEvaluations` residual evaluations per pass. Two passes: peaks over 3 times
    /// the median residual after the first are left out of the second.
    public static func refine(peaks: [Vector3], hkl: [Vector3], use: [Bool], geometry start: CrystalGeometry,
                              symmetry: Symmetry, lattice: Bool = true, orientation: Bool = true,
                              parameters: [GeometryParameter], maxEvaluations: Int? = nil) throws -> GeometryFit {
        guard let cell0 = start.unitCell, let u0 = start.orientationMatrix else {
            throw CrystalError("refining the geometry needs a unit cell and an orientation matrix (crystal.orient finds U)")
        }
        _ = try cell0.inverseB()
        var seen = Set<GeometryParameter>()
        for p in parameters where !seen.insert(p).inserted { throw CrystalError("\(p.rawValue) is named twice among the parameters to refine") }
        if lattice && parameters.contains(.wavelength) {
            throw CrystalError("the wavelength and the lattice parameters scale q alike: refine one of them (lattice = false to refine the wavelength)")
        }
        let nFree = (lattice ? free(cell0, symmetry).count : 0) + (orientation ? 3 : 0) + parameters.count
        guard nFree > 0 else { throw CrystalError("nothing to refine: no lattice, no orientation and no geometry parameter") }
        var chosen = peaks.indices.filter { use[$0] }
        let before = rootMean(try residualNorms(start, peaks: chosen.map { peaks[$0] }, hkl: chosen.map { hkl[$0] }))
        var g = start
        var info: Int32 = 0, evaluations: Int32 = 0
        for pass in 0..<2 {
            guard 3 * chosen.count > nFree else {
                throw CrystalError("refining \(nFree) parameters needs more than \(nFree / 3) indexed peaks, got \(chosen.count)")
            }
            let problem = GeometryProblem(peaks: chosen.map { peaks[$0] }, hkl: chosen.map { hkl[$0] }, symmetry: symmetry,
                                          lattice: lattice, orientation: orientation, parameters: parameters,
                                          start: g, u0: g.orientationMatrix!)
            var x = problem.initial()
            var f = [Double](repeating: 0, count: 3 * chosen.count)
            var why = [CChar](repeating: 0, count: 256)
            let context = Unmanaged.passRetained(problem)
            defer { context.release() }
            let callback: nxminpack_residuals = { ctx, _, n, xp, fp, _ in
                let p = Unmanaged<GeometryProblem>.fromOpaque(ctx!).takeUnretainedValue()
                let xs = Array(UnsafeBufferPointer(start: xp, count: Int(n)))
                do { try p.residuals(p.model(xs), into: fp) } catch {
                    p.failure = "\(error)"
                    return -1
                }
                return 0
            }
            let budget = Int32(maxEvaluations ?? 200 * (x.count + 1))
            info = nxminpack_lmdif(callback, context.toOpaque(), Int32(f.count), Int32(x.count), &x, &f, 1e-12, budget,
                                   &evaluations, &why, why.count)
            if info < 0, problem.failure == nil { throw CrystalError(String(cString: why)) }
            let reached = problem.model(x)
            func report() -> String {
                parameters.map { "\($0.rawValue) \($0.value(start)) -> \($0.value(reached))" }.joined(separator: ", ")
                    + (lattice ? "\(parameters.isEmpty ? "" : ", ")cell \(cell0.parameters) -> \(reached.unitCell!.parameters)" : "")
            }
            if let failure = problem.failure {
                throw CrystalError("refinement left the space of valid geometries (\(failure)) after \(evaluations) evaluations: \(report()); check the starting values and the parameters refined")
            }
            let rmsNow = rootMean((try? residualNorms(reached, peaks: problem.peaks, hkl: problem.hkl)) ?? [.nan])
            guard info != 5, info != 0, rmsNow.isFinite else {
                throw CrystalError("refinement did not converge in \(evaluations) evaluations (lmdif info \(info)\(info == 5 ? ": over the budget of \(budget)" : "")) with \(chosen.count) peaks: rms \(before) 1/A at the start, \(rmsNow) 1/A at the stop; \(report())")
            }
            g = reached
            if pass == 0 {
                let r = try residualNorms(g, peaks: chosen.map { peaks[$0] }, hkl: chosen.map { hkl[$0] })
                let median = r.sorted()[r.count / 2]
                chosen = zip(chosen, r).filter { $0.1 <= 3 * median + 1e-12 }.map(\.0)
            }
        }
        let after = rootMean(try residualNorms(g, peaks: chosen.map { peaks[$0] }, hkl: chosen.map { hkl[$0] }))
        return GeometryFit(geometry: g, rmsBefore: before, rmsAfter: after, used: chosen.count, evaluations: Int(evaluations),
                           info: info, changes: parameters.map { ($0, $0.value(start), $0.value(g)) })
    }
}
