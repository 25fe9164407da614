#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import NDArray

/// Errors of the crystal analysis: every message names what is missing or wrong and,
/// for files, where it was looked for.
public struct CrystalError: Error, CustomStringConvertible, Equatable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// A unit cell: lengths in Angstrom, angles in degrees.
public struct UnitCell: Equatable, Sendable {
    public var a, b, c, alpha, beta, gamma: Double
    public init(a: Double, b: Double, c: Double, alpha: Double = 90, beta: Double = 90, gamma: Double = 90) {
        self.a = a; self.b = b; self.c = c; self.alpha = alpha; self.beta = beta; self.gamma = gamma
    }
    public var parameters: [Double] { [a, b, c, alpha, beta, gamma] }

    /// B^-1 as NXRefine writes it (rows: a, b, c components in the Busing-Levy crystal
    /// frame; no factor 2 pi, so B h has length 1/d).
    public func inverseB() throws -> Matrix3 {
        let r = Double.pi / 180, al = alpha * r, be = beta * r, ga = gamma * r
        let b23 = c * (cos(al) - cos(be) * cos(ga)) / sin(ga)
        let b33sq = c * c - (c * cos(be)) * (c * cos(be)) - b23 * b23
        guard a > 0, b > 0, c > 0, b33sq > 0, sin(ga) != 0 else {
            throw CrystalError("unit cell \(parameters) is not a valid cell (lengths must be positive and the angles must close a cell)")
        }
        return Matrix3([[a, b * cos(ga), c * cos(be)], [0, b * sin(ga), b23], [0, 0, b33sq.squareRoot()]])
    }

    public func matrixB() throws -> Matrix3 {
        guard let m = try inverseB().inverse else { throw CrystalError("unit cell \(parameters) gives a singular B matrix") }
        return m
    }
}

/// The geometry of a rotation scan in NXRefine's conventions (nxrefine.py): lab x along
/// the beam, pixel x the fast (column) index and y the slow (row) index with pixel
/// centres at integers, frame z with phi(z) = phiStart + phiStep * z (the centre of
/// frame z's exposure). Lengths in mm, angles in degrees, wavelength in Angstrom.
public struct CrystalGeometry: Equatable, Sendable {
    public var distance = 100.0
    public var pixelSize = 0.172
    public var beamCenterX = 0.0
    public var beamCenterY = 0.0
    public var yaw = 0.0, pitch = 0.0, roll = 0.0
    /// Which lab axes the detector's x, y and z run along ("-y +z -x": NXRefine's default).
    public var detectorOrientation = "-y +z -x"
    public var theta = 0.0, omega = 0.0, chi = 0.0
    public var phiStart = 0.0
    public var phiStep = 0.1
    public var wavelength = 1.0
    /// Sample offset from the goniometer centre (xs, ys, zs), mm.
    public var sampleOffset = Vector3(0, 0, 0)
    public var unitCell: UnitCell?
    /// U (NXRefine's `orientation_matrix`); UB = U B.
    public var orientationMatrix: Matrix3?
    /// Frame size (rows, columns) when known.
    public var frameShape: [Int]?
    /// Frames in the scan when known.
    public var frames: Int?
    /// Per-frame goniometer angles (degrees, at frame centres z = 0, 1, ...), for scans
    /// whose angles the scalars cannot describe (an uneven rotation, omega or chi moving):
    /// when set they replace phiStart + phiStep z, omega and chi; between frames the angle
    /// is interpolated linearly, beyond the ends extrapolated from the end steps.
    public var phiFrames: [Double]?
    public var omegaFrames: [Double]?
    public var chiFrames: [Double]?

    public init() {}

    public func phi(at z: Double) -> Double {
        if let p = phiFrames, !p.isEmpty { return CrystalGeometry.interpolate(p, z) }
        return phiStart + phiStep * z
    }

    public func omega(at z: Double) -> Double {
        if let v = omegaFrames, !v.isEmpty { return CrystalGeometry.interpolate(v, z) }
        return omega
    }

    public func chi(at z: Double) -> Double {
        if let v = chiFrames, !v.isEmpty { return CrystalGeometry.interpolate(v, z) }
        return chi
    }

    /// True when omega or chi change from frame to frame.
    public var hasMovingAxes: Bool { (omegaFrames?.isEmpty == false) || (chiFrames?.isEmpty == false) }

    /// The value at frame z of per-frame values: linear between frames and past the ends.
    static func interpolate(_ v: [Double], _ z: Double) -> Double {
        guard v.count > 1 else { return v[0] }
        let i = Swift.min(Swift.max(Int(z.rounded(.down)), 0), v.count - 2)
        return v[i] + (v[i + 1] - v[i]) * (z - Double(i))
    }

    /// The geometry with `degrees` added to omega (chi, phi): the scalar and every per-frame
    /// value, so an offset refined applies to the whole scan.
    public func shifted(omega d: Double = 0, chi dc: Double = 0, phi dp: Double = 0) -> CrystalGeometry {
        var g = self
        g.omega += d
        g.chi += dc
        g.phiStart += dp
        g.omegaFrames = omegaFrames?.map { $0 + d }
        g.chiFrames = chiFrames?.map { $0 + dc }
        g.phiFrames = phiFrames?.map { $0 + dp }
        return g
    }

    /// The detector orientation string as a matrix whose rows are the lab directions of the
    /// detector axes (NXRefine's `parse_orientation`).
    public static func orientationMatrix(_ text: String) throws -> Matrix3 {
        var rows: [[Double]] = []
        var sign = 1.0
        for ch in text where ch != " " {
            switch ch {
            case "+": sign = 1
            case "-": sign = -1
            case "x", "y", "z", "X", "Y", "Z":
                var row = [0.0, 0, 0]
                row[["x": 0, "y": 1, "z": 2][String(ch).lowercased()]!] = sign
                rows.append(row)
                sign = 1
            default:
                throw CrystalError("detector orientation '\(text)' must be three signed axes such as \"-y +z -x\" (bad character '\(ch)')")
            }
        }
        let m = Matrix3(rows.count == 3 ? rows : [[0, 0, 0], [0, 0, 0], [0, 0, 0]])
        guard rows.count == 3, abs(abs(m.determinant) - 1) < 1e-12 else {
            throw CrystalError("detector orientation '\(text)' must name each of x, y and z once, as \"-y +z -x\"")
        }
        return m
    }

    /// The matrices a pixel goes through, computed once.
    public func transform() throws -> GeometryTransform { try GeometryTransform(self) }

    /// UB (no 2 pi), or an error naming what is missing.
    public func matrixUB() throws -> Matrix3 {
        guard let cell = unitCell else { throw CrystalError("no unit cell: set the cell (a, b, c, alpha, beta, gamma) to compute hkl") }
        guard let u = orientationMatrix else { throw CrystalError("no orientation matrix (U): set it, or find it from indexed peaks, to compute hkl") }
        return u * (try cell.matrixB())
    }
}

/// A geometry's matrices: pixel -> lab -> scattering vector -> hkl, for points and frames.
public struct GeometryTransform: Sendable {
    public let geometry: CrystalGeometry
    /// pixel_size * D^-1 * O^-1: detector pixel offsets to lab mm.
    public let pixelToLab: Matrix3
    /// Ry(theta) Rz(omega) Rx(chi): the goniometer without phi.
    public let goniometer: Matrix3
    public let inverseUB: Matrix3?

    init(_ g: CrystalGeometry) throws {
        geometry = g
        guard g.distance > 0, g.distance.isFinite else { throw CrystalError("detector distance must be positive, got \(g.distance) mm") }
        guard g.pixelSize > 0, g.pixelSize.isFinite else { throw CrystalError("pixel size must be positive, got \(g.pixelSize) mm") }
        guard g.wavelength > 0, g.wavelength.isFinite else { throw CrystalError("wavelength must be positive, got \(g.wavelength) Angstrom") }
        let o = try CrystalGeometry.orientationMatrix(g.detectorOrientation)
        let dInverse = Matrix3.rotation(axis: 1, degrees: g.roll) * Matrix3.rotation(axis: 2, degrees: g.pitch)
            * Matrix3.rotation(axis: 3, degrees: g.yaw)
        pixelToLab = g.pixelSize * (dInverse * o.transposed)  // O is orthogonal: O^-1 = O^T
        goniometer = Matrix3.rotation(axis: 2, degrees: g.theta) * Matrix3.rotation(axis: 3, degrees: g.omega)
            * Matrix3.rotation(axis: 1, degrees: g.chi)
        if g.unitCell != nil, g.orientationMatrix != nil {
            let ub = try g.matrixUB()
            guard let inv = ub.inverse else { throw CrystalError("the UB matrix \(ub) is singular") }
            inverseUB = inv
        } else {
            inverseUB = nil
        }
    }

    /// G(phi) = Ry(theta) Rz(omega) Rx(chi) Rz(phi): goniometer head -> lab.
    public func goniometer(phi: Double) -> Matrix3 { goniometer * Matrix3.rotation(axis: 3, degrees: phi) }

    /// The goniometer of frame z: its phi, and its omega and chi when they move per frame.
    public func goniometer(at z: Double) -> Matrix3 {
        let g = geometry
        guard g.hasMovingAxes else { return goniometer(phi: g.phi(at: z)) }
        return Matrix3.rotation(axis: 2, degrees: g.theta) * Matrix3.rotation(axis: 3, degrees: g.omega(at: z))
            * Matrix3.rotation(axis: 1, degrees: g.chi(at: z)) * Matrix3.rotation(axis: 3, degrees: g.phi(at: z))
    }

    /// The vector from the sample to pixel (x, y) on frame z, lab frame, mm.
    public func labVector(x: Double, y: Double, z: Double) -> Vector3 {
        let g = geometry
        let onDetector = pixelToLab * Vector3(x - g.beamCenterX, y - g.beamCenterY, 0)
        return onDetector + Vector3(g.distance, 0, 0) - goniometer(at: z) * g.sampleOffset
    }

    /// NXRefine's Gvec: the scattering vector in the goniometer head's frame, 1/Angstrom
    /// without 2 pi (|G| = 1/d = 2 sin(theta) / lambda).
    public func scatteringVector(x: Double, y: Double, z: Double) -> Vector3 {
        let g = geometry
        let v = labVector(x: x, y: y, z: z)
        let lab = (v / v.norm - Vector3(1, 0, 0)) / g.wavelength
        return goniometer(at: z).transposed * lab  // rotations: inverse = transpose
    }

    /// Polar angle (2 theta, from the beam) and azimuthal angle, degrees, of the lab
    /// vector; the azimuth is atan2(-y_lab, z_lab) as NXRefine's calculate_angles.
    public func angles(x: Double, y: Double, z: Double) -> (polar: Double, azimuthal: Double) {
        let v = labVector(x: x, y: y, z: z)
        let r = 180 / Double.pi
        return (atan2((v.y * v.y + v.z * v.z).squareRoot(), v.x) * r, atan2(-v.y, v.z) * r)
    }

    /// (h, k, l) = (UB)^-1 G.
    public func hkl(x: Double, y: Double, z: Double) throws -> Vector3 {
        guard let inv = inverseUB else { _ = try geometry.matrixUB(); throw CrystalError("no UB matrix") }
        return inv * scatteringVector(x: x, y: y, z: z)
    }

    /// Where a scattering vector G (head frame) meets the detector at goniometer angle phi:
    /// the pixel (x, y), or nil if the diffracted ray runs away from the detector plane.
    public func pixel(scattering gHead: Vector3, phi: Double) -> (x: Double, y: Double)? {
        let g = geometry
        let rot = goniometer(phi: phi)
        let kOut = rot * gHead + Vector3(1 / g.wavelength, 0, 0)
        let sample = rot * g.sampleOffset
        // detector plane: origin (L, 0, 0), in-plane axes = columns of pixelToLab
        let ex = Vector3(pixelToLab.m[0][0], pixelToLab.m[1][0], pixelToLab.m[2][0])
        let ey = Vector3(pixelToLab.m[0][1], pixelToLab.m[1][1], pixelToLab.m[2][1])
        let normal = ex.cross(ey)
        let denominator = normal.dot(kOut)
        guard abs(denominator) > 1e-15 else { return nil }
        let t = normal.dot(Vector3(g.distance, 0, 0) - sample) / denominator
        guard t > 0 else { return nil }
        let w = sample + t * kOut - Vector3(g.distance, 0, 0)
        // solve w = a ex + b ey (ex, ey orthogonal, each of length pixel size)
        let a = w.dot(ex) / ex.dot(ex), b = w.dot(ey) / ey.dot(ey)
        return (a + g.beamCenterX, b + g.beamCenterY)
    }

    /// The goniometer angles phi (degrees, in [0, 360)) at which reciprocal vector gHead
    /// satisfies the Ewald condition |G(phi) g + k| = |k|; none, one or two.
    public func reflectingPhis(_ gHead: Vector3) -> [Double] {
        let lambda = geometry.wavelength
        let m = goniometer.m[0]  // the lab-x row
        let gg = gHead.dot(gHead)
        guard gg > 0 else { return [] }
        // lab x of G(phi) g = A cos(phi) + B sin(phi) + C0 must equal -|g|^2 lambda / 2
        let a = m[0] * gHead.x + m[1] * gHead.y
        let b = m[1] * gHead.x - m[0] * gHead.y
        let target = -gg * lambda / 2 - m[2] * gHead.z
        let r = (a * a + b * b).squareRoot()
        guard r > 0, abs(target) <= r else { return [] }
        let base = atan2(b, a), delta = acos(target / r)
        let deg = 180 / Double.pi
        var out: [Double] = []
        for p in [base + delta, base - delta] {
            var d = (p * deg).truncatingRemainder(dividingBy: 360)
            if d < 0 { d += 360 }
            if !out.contains(where: { abs($0 - d) < 1e-12 }) { out.append(d) }
        }
        return out
    }

    /// Where reflection (h, k, l) meets the detector in one turn: pixel x, y and frame z
    /// (z within one turn from phiStart) of each crossing of the Ewald sphere.
    public func positions(h: Double, k: Double, l: Double) throws -> [(x: Double, y: Double, z: Double)] {
        let g = geometry
        let gv = try g.matrixUB() * Vector3(h, k, l)
        let turn = 360 / abs(g.phiStep)
        return reflectingPhis(gv).compactMap { phi in
            guard let p = pixel(scattering: gv, phi: phi) else { return nil }
            var z = (phi - g.phiStart) / g.phiStep
            z -= (z / turn).rounded(.down) * turn
            return (p.x, p.y, z)
        }
    }

    // MARK: whole frames

    public enum FrameQuantity: String, Sendable, CaseIterable {
        case lab, q, hkl, polar, azimuthal, qmagnitude = "qmag"
        var components: Int { [.lab, .q, .hkl].contains(self) ? 3 : 1 }
    }

    /// One quantity for every pixel of frame z: float64 of shape (rows, columns) or
    /// (rows, columns, 3); `q` is the scattering vector G (no 2 pi) and `qmag` is 2 pi |G|
    /// (|Q| = 4 pi sin(theta) / lambda). Rows are computed on every core.
    public func frame(_ quantity: FrameQuantity, z: Double, rows: Int, columns: Int) throws -> NDArray {
        if quantity == .hkl, inverseUB == nil { _ = try geometry.matrixUB() }
        let comps = quantity.components
        let out = try arrayWork { try NDArray(uninitialized: comps == 1 ? [rows, columns] : [rows, columns, comps], dtype: .float64) }
        let p = out.base(Double.self)
        let me = self
        nonisolated(unsafe) let base = p
        DispatchQueue.concurrentPerform(iterations: max(1, min(rows, 64))) { part in
            let chunk = (rows + min(rows, 64) - 1) / max(1, min(rows, 64))
            let lo = part * chunk, hi = min(rows, lo + chunk)
            guard lo < hi else { return }
            for r in lo..<hi {
                for c in 0..<columns {
                    let x = Double(c), y = Double(r)
                    let o = (r * columns + c) * comps
                    switch quantity {
                    case .lab:
                        let v = me.labVector(x: x, y: y, z: z)
                        base[o] = v.x; base[o + 1] = v.y; base[o + 2] = v.z
                    case .q:
                        let v = me.scatteringVector(x: x, y: y, z: z)
                        base[o] = v.x; base[o + 1] = v.y; base[o + 2] = v.z
                    case .hkl:
                        let v = me.inverseUB! * me.scatteringVector(x: x, y: y, z: z)
                        base[o] = v.x; base[o + 1] = v.y; base[o + 2] = v.z
                    case .polar: base[o] = me.angles(x: x, y: y, z: z).polar
                    case .azimuthal: base[o] = me.angles(x: x, y: y, z: z).azimuthal
                    case .qmagnitude: base[o] = 2 * .pi * me.scatteringVector(x: x, y: y, z: z).norm
                    }
                }
            }
        }
        return out
    }
}

/// Runs array-engine work, turning its errors into crystal errors.
func arrayWork<T>(_ body: () throws -> T) throws -> T {
    do { return try body() } catch let e as ArrayError { throw CrystalError(e.message) }
}
