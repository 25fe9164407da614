#if canImport(Glibc)
import Glibc
#endif
import NDArray
import NeXus

/// Reading a geometry from NXmx's `depends_on` transformation chains (the McStas frame:
/// z along the beam, y up) and expressing it in NXRefine's parameters.
///
/// - Detector: the module's `fast_pixel_direction` and `slow_pixel_direction` (their
///   vectors, and their values as pixel sizes) and the chain they depend on give where
///   every pixel is; distance, beam centre and yaw/pitch/roll are solved from that for the
///   detector orientation "-y +z -x".
/// - Sample: the rotation of the chain whose value changes from frame to frame is phi; its
///   axis, after the rotations it depends on, is reached by Rz(omega) Rx(chi) (theta 0);
///   any constant rotation left over belongs to the crystal's orientation U.
/// - Wavelength: `/entry/instrument/beam/incident_wavelength`.
enum NXmxReader {
    struct Transformation {
        let path: String
        let isRotation: Bool
        /// Unit vector in NXRefine's lab frame (x beam, z up).
        let vector: Vector3
        let offset: Vector3
        /// mm or degrees, one per frame or one.
        let values: [Double]
        func value(_ frame: Int) -> Double { values.count > 1 ? values[min(frame, values.count - 1)] : values.first ?? 0 }
        func apply(_ p: Vector3, frame: Int) -> Vector3 {
            isRotation ? rotation(vector, value(frame)) * p + offset : p + value(frame) * vector + offset
        }
    }

    /// McStas (x, y up, z beam) -> NXRefine (x beam, y, z up): x_n = z_m, y_n = x_m, z_n = y_m.
    static func lab(_ v: [Double]) -> Vector3 { Vector3(v[2], v[0], v[1]) }

    static func rotation(_ a: Vector3, _ degrees: Double) -> Matrix3 {
        let u = a.normalized, t = degrees * .pi / 180, c = cos(t), s = sin(t), k = 1 - c
        return Matrix3([[c + u.x * u.x * k, u.x * u.y * k - u.z * s, u.x * u.z * k + u.y * s],
                        [u.y * u.x * k + u.z * s, c + u.y * u.y * k, u.y * u.z * k - u.x * s],
                        [u.z * u.x * k - u.y * s, u.z * u.y * k + u.x * s, c + u.z * u.z * k]])
    }

    /// The chain starting at `path` (a transformation), outward to the lab.
    static func chain(_ file: NXFile, from start: String, where place: String) throws -> [Transformation] {
        var out: [Transformation] = []
        var path = start
        let root = file.root
        while path != "." && !path.isEmpty {
            guard out.count < 64 else { throw CrystalError("\(file.path): \(place): the depends_on chain does not end (a loop?) at \(path)") }
            guard let f = try root.resolve(path) as? NXField else {
                throw CrystalError("\(file.path): \(place): depends_on names \(path), which is not a field")
            }
            guard let kind = f.stringAttribute("transformation_type"), kind == "translation" || kind == "rotation" else {
                throw CrystalError("\(file.path): \(f.path): a transformation needs @transformation_type \"translation\" or \"rotation\"")
            }
            guard case .array(let va)? = try f.attribute("vector"), va.count == 3 else {
                throw CrystalError("\(file.path): \(f.path): a transformation needs @vector (3 numbers)")
            }
            guard case .array(let values) = try f.read(nil) else { throw CrystalError("\(file.path): \(f.path): must be numeric") }
            let units = (f.stringAttribute("units") ?? "").lowercased().trimmingCharacters()
            var scale = 1.0
            if kind == "rotation" {
                if !units.isEmpty { guard let s = ParameterReader.angleUnits[units] else { throw CrystalError("\(file.path): \(f.path): units '\(units)' are not an angle") }; scale = s }
            } else if !units.isEmpty {
                guard let s = ParameterReader.lengths[units] else { throw CrystalError("\(file.path): \(f.path): units '\(units)' are not a length") }
                scale = s
            }
            var offset = Vector3(0, 0, 0)
            if case .array(let o)? = try f.attribute("offset"), o.count == 3 {
                let ou = (f.stringAttribute("offset_units") ?? f.stringAttribute("units") ?? "mm").lowercased().trimmingCharacters()
                offset = (ParameterReader.lengths[ou] ?? 1) * lab(o.doubles())
            }
            let v = lab(va.doubles())
            guard v.norm > 0 else { throw CrystalError("\(file.path): \(f.path): @vector is zero") }
            out.append(Transformation(path: f.path, isRotation: kind == "rotation", vector: v.normalized, offset: offset,
                                      values: values.doubles().map { $0 * scale }))
            guard let next = f.stringAttribute("depends_on") else {
                throw CrystalError("\(file.path): \(f.path): a transformation needs @depends_on (\".\" ends the chain)")
            }
            path = next.hasPrefix("/") || next == "." ? next : f.parent.path + "/" + next
        }
        return out
    }

    static func apply(_ chain: [Transformation], _ p: Vector3, frame: Int = 0) -> Vector3 {
        chain.reduce(p) { $1.apply($0, frame: frame) }
    }

    static func read(_ file: NXFile, entry: String) throws -> CrystalGeometry {
        let root = file.root
        var g = CrystalGeometry()
        let det = "\(entry)/instrument/detector"
        guard let detector = try root.resolve(det) as? NXGroup else { throw CrystalError("\(file.path): no \(det)") }
        guard let module = try detector.children(ofClass: "NXdetector_module").first as? NXGroup else {
            throw CrystalError("\(file.path): \(det) has depends_on but no NXdetector_module (with fast_pixel_direction and slow_pixel_direction)")
        }
        func direction(_ name: String) throws -> (Vector3, Double, [Transformation]) {
            guard let f = try module.child(name) as? NXField else { throw CrystalError("\(file.path): missing \(module.path)/\(name)") }
            let c = try chain(file, from: f.path, where: module.path)
            guard let first = c.first, !first.isRotation else { throw CrystalError("\(file.path): \(f.path) must be a translation") }
            return (first.vector, first.value(0), Array(c.dropFirst()))
        }
        let (fast, fastSize, moduleChain) = try direction("fast_pixel_direction")
        let (slow, slowSize, _) = try direction("slow_pixel_direction")
        guard abs(fastSize - slowSize) <= 1e-9 * fastSize, fastSize > 0 else {
            throw CrystalError("\(file.path): \(module.path): pixels of \(fastSize) x \(slowSize) mm; square pixels are needed (NXRefine's pixel_size)")
        }
        g.pixelSize = fastSize
        // where pixels are: origin, and the steps along x (fast) and y (slow), in mm
        let origin = apply(moduleChain, Vector3(0, 0, 0))
        let ex = apply(moduleChain, fastSize * fast) - origin
        let ey = apply(moduleChain, fastSize * slow) - origin
        // NXRefine: pixel -> lab = (L, 0, 0) + ps inv(D) inv(O) (x - xc, y - yc, 0)
        let o = try CrystalGeometry.orientationMatrix(g.detectorOrientation)
        let m = Matrix3(columns: ex.normalized, ey.normalized, ex.normalized.cross(ey.normalized))
        let dInverse = m * o  // m = inv(D) O^T, O orthogonal
        // Rx(roll) Ry(pitch) Rz(yaw) = dInverse
        let r = dInverse.m
        g.pitch = asin(max(-1, min(1, r[0][2]))) * 180 / .pi
        g.yaw = atan2(-r[0][1], r[0][0]) * 180 / .pi
        g.roll = atan2(-r[1][2], r[2][2]) * 180 / .pi
        // origin = (L, 0, 0) - xc ex - yc ey: solve for L, xc, yc
        let system = Matrix3(columns: Vector3(1, 0, 0), -1 * ex, -1 * ey)
        guard let inv = system.inverse else { throw CrystalError("\(file.path): \(det): the detector plane contains the beam") }
        let solved = inv * origin
        g.distance = solved.x
        g.beamCenterX = solved.y
        g.beamCenterY = solved.z
        guard g.distance > 0 else { throw CrystalError("\(file.path): \(det): the detector is not downstream of the sample (distance \(g.distance) mm)") }

        // wavelength
        let reader = ParameterReader(file: file.path, scan: try root.resolve(entry) as! NXGroup, sample: try root.resolve(entry) as! NXGroup)
        g.wavelength = try reader.wavelength("instrument/beam/incident_wavelength")

        // goniometer: the rotation that scans
        guard let sample = try root.resolve("\(entry)/sample") as? NXGroup, let start = try (sample.child("depends_on") as? NXField).flatMap({ f -> String? in
            if case .strings(let s, _) = try f.read(nil) { return s.first } else { return nil } }) else {
            throw CrystalError("\(file.path): no \(entry)/sample/depends_on (the goniometer's transformation chain)")
        }
        let gon = try chain(file, from: start, where: "\(entry)/sample")
        guard let scan = gon.firstIndex(where: { $0.isRotation && $0.values.count > 1 }) else {
            throw CrystalError("\(file.path): \(entry)/sample: no rotation in the depends_on chain changes from frame to frame (the scan axis)")
        }
        let phi = gon[scan].values
        g.phiStart = phi[0]
        g.phiStep = phi[1] - phi[0]
        g.frames = phi.count
        if phi.count > 1, ParameterReader.varies(phi, from: { phi[0] + Double($0) * (phi[1] - phi[0]) }) {
            g.phiFrames = try ParameterReader.filled(phi, gon[scan].path, file: file.path)
        }
        func rotations(_ part: ArraySlice<Transformation>, frame: Int) -> Matrix3 {
            part.reduce(Matrix3.identity) { $1.isRotation ? rotation($1.vector, $1.value(frame)) * $0 : $0 }
        }
        // chi and omega of frame `frame`: Rz(omega) Rx(chi) z = the scan axis after the
        // rotations outside it; of the two solutions, the one nearest the chain
        func solve(frame: Int) -> (chi: Double, omega: Double) {
            let outer = rotations(gon[(scan + 1)...], frame: frame)
            let axis = outer * gon[scan].vector
            let chi = acos(max(-1, min(1, axis.z))) * 180 / .pi
            let omega = abs(sin(chi * .pi / 180)) < 1e-12 ? 0 : atan2(axis.x, -axis.y) * 180 / .pi
            var best: (Double, Double, Double)?
            for (c, w) in [(chi, omega), (-chi, omega + 180)] {
                let m = Matrix3.rotation(axis: 3, degrees: w) * Matrix3.rotation(axis: 1, degrees: c)
                let left = m.transposed * outer
                let angle = acos(max(-1, min(1, (left.m[0][0] + left.m[1][1] + left.m[2][2] - 1) / 2)))
                if best == nil || angle < best!.2 { best = (c, w, angle) }
            }
            return (best!.0, best!.1.truncatingRemainder(dividingBy: 360))
        }
        (g.chi, g.omega) = solve(frame: 0)
        // rotations outside the scan axis that move from frame to frame: chi and omega per frame
        if gon[(scan + 1)...].contains(where: { t in t.isRotation && t.values.count > 1 && ParameterReader.varies(t.values, from: { _ in t.values[0] }) }) {
            let solved = (0..<phi.count).map { solve(frame: $0) }
            g.chiFrames = solved.map(\.chi)
            var omegas = solved.map(\.omega)
            // no jumps of 360 degrees between frames
            for i in omegas.indices.dropFirst() { omegas[i] -= 360 * ((omegas[i] - omegas[i - 1]) / 360).rounded() }
            g.omegaFrames = omegas
        }
        if let data = try detector.child("data") as? NXField, let shape = try? data.shape, shape.count == 3 {
            g.frameShape = Array(shape[1...])
        }
        return g
    }
}
