import NDArray
import NeXus

/// Reading a geometry from the layouts users have, and writing it back in NXRefine's.
///
/// - NXRefine: `/f1/instrument/detector` (distance, pixel_size, beam_center_x/y, yaw,
///   pitch, roll, detector_orientation, orientation_matrix), `/f1/instrument/goniometer`
///   (phi with @step, chi, omega, theta, xs, ys, zs), `/f1/instrument/monochromator/
///   wavelength`, the cell in `/entry/sample`.
/// - `nxlua stack`: `/entry/instrument/detector` (distance, x_pixel_size, beam_center_x/y
///   with their units), per-frame `/entry/instrument/NDAttributes/phi, omega, chi` (the
///   Pilatus header's values: the start of each exposure), the monochromator's wavelength.
///
/// - NXmx: `depends_on` transformation chains (see NXmxReader).
///
/// Units follow each field's @units (m, mm, um; deg, rad; Angstrom, nm); a field without
/// units is taken in NXRefine's units (mm, degrees, Angstrom, pixels).
extension CrystalGeometry {
    /// The geometry of `entry` (nil: `/f1` if it has a detector, else `/entry`).
    public static func read(_ file: NXFile, entry: String? = nil) throws -> CrystalGeometry {
        let root = file.root
        let where_ = file.path
        var candidates = ["/f1", "/entry"]
        if let entry { candidates = [entry.hasPrefix("/") ? entry : "/" + entry] }
        var scanPath: String?
        for c in candidates where try root.resolve(c + "/instrument/detector") is NXGroup {
            scanPath = c
            break
        }
        // NXmx: the detector placed by a depends_on chain
        if let scanPath, (try root.resolve(scanPath + "/instrument/detector/depends_on")) is NXField,
           (try root.resolve(scanPath + "/instrument/goniometer")) == nil {
            return try NXmxReader.read(file, entry: scanPath)
        }
        guard let scanPath, let scan = try root.resolve(scanPath) as? NXGroup else {
            throw CrystalError("\(where_): no detector geometry: looked for \(candidates.map { $0 + "/instrument/detector" }.joined(separator: " and ")) (an NXdetector group with distance, pixel size and beam centre)")
        }
        let sampleEntry = (try root.resolve("/entry") as? NXGroup) ?? scan
        let reader = ParameterReader(file: where_, scan: scan, sample: sampleEntry)
        var g = CrystalGeometry()
        let det = "instrument/detector"

        g.distance = try reader.length("\(det)/distance", required: true)!
        if let p = try reader.length("\(det)/pixel_size") {
            g.pixelSize = p
        } else if let px = try reader.length("\(det)/x_pixel_size") {
            if let py = try reader.length("\(det)/y_pixel_size"), abs(py - px) > 1e-9 * px {
                throw CrystalError("\(where_): \(scan.path)/\(det): x_pixel_size \(px) mm and y_pixel_size \(py) mm differ; square pixels are needed (NXRefine's pixel_size)")
            }
            g.pixelSize = px
        } else {
            throw CrystalError("\(where_): no pixel size: looked for \(scan.path)/\(det)/pixel_size and \(scan.path)/\(det)/x_pixel_size")
        }
        g.beamCenterX = try reader.pixels("\(det)/beam_center_x", pixelSize: g.pixelSize)
        g.beamCenterY = try reader.pixels("\(det)/beam_center_y", pixelSize: g.pixelSize)
        g.yaw = try reader.angle("\(det)/yaw") ?? 0
        g.pitch = try reader.angle("\(det)/pitch") ?? 0
        g.roll = try reader.angle("\(det)/roll") ?? 0
        if let o = try reader.string("\(det)/detector_orientation") { g.detectorOrientation = o }
        _ = try CrystalGeometry.orientationMatrix(g.detectorOrientation)
        g.wavelength = try reader.wavelength("instrument/monochromator/wavelength")
        if let u = try reader.numbers("\(det)/orientation_matrix") {
            guard u.count == 9 else {
                throw CrystalError("\(where_): \(scan.path)/\(det)/orientation_matrix must be 3 x 3, it holds \(u.count) values")
            }
            g.orientationMatrix = Matrix3([Array(u[0..<3]), Array(u[3..<6]), Array(u[6..<9])])
        }
        if let data = try scan.resolve("\(det)/data") as? NXField, let shape = try? data.shape, shape.count == 3 {
            g.frames = shape[0]
            g.frameShape = Array(shape[1...])
        } else if let s = try reader.numbers("\(det)/shape"), s.count == 2 {
            g.frameShape = s.map { Int($0) }
        }

        let gon = "instrument/goniometer"
        if try scan.resolve(gon) is NXGroup {
            if let phi = try reader.angles("\(gon)/phi") {
                g.phiStart = phi[0]
                if phi.count > 1 {
                    g.phiStep = phi[1] - phi[0]
                    // phi per frame (at frame centres) when the rotation is uneven
                    if ParameterReader.varies(phi, from: { phi[0] + Double($0) * g.phiStep }) {
                        g.phiFrames = try ParameterReader.filled(phi, "\(scan.path)/\(gon)/phi", file: where_)
                    }
                } else if let step = try reader.attributeNumber("\(gon)/phi", "step") {
                    g.phiStep = step
                }
            }
            g.chi = try reader.angle("\(gon)/chi") ?? 0
            g.omega = try reader.angle("\(gon)/omega") ?? 0
            // chi and omega per frame (at frame centres) when they move
            if let chi = try reader.angles("\(gon)/chi"), chi.count > 1, ParameterReader.varies(chi, from: { _ in chi[0] }) {
                g.chiFrames = try ParameterReader.filled(chi, "\(scan.path)/\(gon)/chi", file: where_)
            }
            if let omega = try reader.angles("\(gon)/omega"), omega.count > 1, ParameterReader.varies(omega, from: { _ in omega[0] }) {
                g.omegaFrames = try ParameterReader.filled(omega, "\(scan.path)/\(gon)/omega", file: where_)
            }
            g.theta = try reader.angle("\(gon)/theta") ?? reader.angle("\(gon)/goniometer_pitch") ?? reader.angle("\(gon)/gonpitch") ?? 0
            g.sampleOffset = Vector3(try reader.length("\(gon)/xs") ?? 0, try reader.length("\(gon)/ys") ?? 0, try reader.length("\(gon)/zs") ?? 0)
        } else if try scan.resolve("instrument/NDAttributes") is NXGroup {
            // the stacker's per-frame header values: phi at the start of each exposure
            let nd = "instrument/NDAttributes"
            guard let phi = try reader.angles("\(nd)/phi"), !phi.isEmpty else {
                throw CrystalError("\(where_): no rotation angles: looked for \(scan.path)/\(gon)/phi and \(scan.path)/\(nd)/phi")
            }
            let increment = try reader.angles("\(nd)/phi_increment")?.first ?? reader.angles("\(nd)/angle_increment")?.first
            // the header's increment when it agrees with the angles (they are printed with
            // few digits: a difference of two is less exact), else the mean step
            let mean = phi.count > 1 ? (phi[phi.count - 1] - phi[0]) / Double(phi.count - 1) : nil
            var step = mean ?? increment ?? 0.1
            if let increment, let mean, abs(increment - mean) <= 1e-6 * max(1, abs(mean)) + 1e-9 { step = increment }
            // omega and chi: one value, or per frame when they move (at the middle of each
            // exposure, from their increments)
            let omegaFrames = try reader.perFrameCentres("\(nd)/omega", increments: "\(nd)/omega_increment", frames: phi.count)
            let chiFrames = try reader.perFrameCentres("\(nd)/chi", increments: "\(nd)/chi_increment", frames: phi.count)
            let uneven = phi.enumerated().first { $0.element.isFinite && abs($0.element - (phi[0] + Double($0.offset) * step)) > 1e-3 * abs(step) + 1e-6 }
            if step == 0 && omegaFrames == nil && chiFrames == nil {
                throw CrystalError("\(where_): \(scan.path)/\(nd)/phi does not change from frame to frame (\(phi[0]) deg), nor do omega and chi")
            }
            if uneven == nil && step != 0 {
                g.phiStep = step
                g.phiStart = phi[0] + step / 2
            } else {
                // an uneven rotation (or none, when omega or chi scan): phi per frame
                g.phiFrames = try reader.perFrameCentres("\(nd)/phi", increments: "\(nd)/phi_increment", frames: phi.count, always: true)
                g.phiStart = g.phiFrames![0]
                if step != 0 { g.phiStep = step }
            }
            if let omegaFrames { g.omegaFrames = omegaFrames; g.omega = omegaFrames[0] } else { g.omega = try reader.angles("\(nd)/omega")?.first ?? 0 }
            if let chiFrames { g.chiFrames = chiFrames; g.chi = chiFrames[0] } else { g.chi = try reader.angles("\(nd)/chi")?.first ?? 0 }
        } else {
            throw CrystalError("\(where_): no goniometer: looked for \(scan.path)/\(gon) (NXRefine) and \(scan.path)/instrument/NDAttributes/phi (nxlua stack)")
        }
        g.unitCell = try reader.unitCell()
        return g
    }

    /// Writes the geometry in NXRefine's layout under `entry` (the cell under /entry/sample
    /// if there is an /entry, as NXRefine shares it), replacing the values there.
    public func write(_ file: NXFile, entry: String = "/entry") throws {
        let root = file.root
        let scanPath = entry.hasPrefix("/") ? entry : "/" + entry
        let scan = try group(root, scanPath, "NXentry")
        let instrument = try group(scan, "instrument", "NXinstrument")
        let det = try group(instrument, "detector", "NXdetector")
        try put(det, "distance", distance, "mm")
        try put(det, "pixel_size", pixelSize, "mm")
        try put(det, "beam_center_x", beamCenterX, "pixel")
        try put(det, "beam_center_y", beamCenterY, "pixel")
        try put(det, "yaw", yaw, "degree")
        try put(det, "pitch", pitch, "degree")
        try put(det, "roll", roll, "degree")
        try replace(det, "detector_orientation", .string(detectorOrientation), nil)
        if let u = orientationMatrix {
            try replace(det, "orientation_matrix", .array(try arrayWork { try NDArray.from(u.flat, shape: [3, 3]) }), nil)
        }
        let gon = try group(instrument, "goniometer", "NXgoniometer")
        try put(gon, "phi", phiFrames ?? [phiStart], "degree")
        if let f = try gon.child("phi") { try f.setAttribute("step", .array(try arrayWork { try NDArray.full([], phiStep) })) }
        try put(gon, "chi", chiFrames ?? [chi], "degree")
        try put(gon, "omega", omegaFrames ?? [omega], "degree")
        try put(gon, "theta", theta, "degree")
        try put(gon, "xs", sampleOffset.x, "mm")
        try put(gon, "ys", sampleOffset.y, "mm")
        try put(gon, "zs", sampleOffset.z, "mm")
        let mono = try group(instrument, "monochromator", "NXmonochromator")
        try put(mono, "wavelength", wavelength, "Angstrom")
        if let cell = unitCell {
            let sampleEntry = (try root.resolve("/entry") as? NXGroup) ?? scan
            let sample = try group(sampleEntry, "sample", "NXsample")
            for (name, v, u) in [("unitcell_a", cell.a, "Angstrom"), ("unitcell_b", cell.b, "Angstrom"), ("unitcell_c", cell.c, "Angstrom"),
                                 ("unitcell_alpha", cell.alpha, "degree"), ("unitcell_beta", cell.beta, "degree"), ("unitcell_gamma", cell.gamma, "degree")] {
                try put(sample, name, v, u)
            }
            try replace(sample, "unit_cell", .array(try arrayWork { try NDArray.from(cell.parameters, shape: [6]) }), nil)
        }
    }

    private func group(_ parent: NXGroup, _ path: String, _ nxclass: String) throws -> NXGroup {
        if let g = try parent.resolve(path) {
            guard let g = g as? NXGroup else { throw CrystalError("\(parent.file.path): \(g.path) is a field where a group (\(nxclass)) is needed") }
            return g
        }
        var node = parent
        for part in path.split(separator: "/") {
            if let next = try node.child(String(part)) as? NXGroup { node = next } else { node = try node.makeGroup(String(part), nxclass: nxclass) }
        }
        return node
    }

    private func put(_ g: NXGroup, _ name: String, _ value: Double, _ units: String) throws {
        try replace(g, name, .array(try arrayWork { try NDArray.full([], value) }), units)
    }

    /// One value as a scalar, per-frame values as a 1-D field.
    private func put(_ g: NXGroup, _ name: String, _ values: [Double], _ units: String) throws {
        if values.count == 1 { return try put(g, name, values[0], units) }
        try replace(g, name, .array(try arrayWork { try NDArray.from(values, shape: [values.count]) }), units)
    }

    private func replace(_ g: NXGroup, _ name: String, _ value: NXValue, _ units: String?) throws {
        if try g.child(name) != nil { try g.delete(name) }
        let f = try g.makeField(name, value: value)
        if let units { try f.setAttribute("units", .string(units)) }
    }
}

/// Reads numbers relative to a scan entry (the sample from the shared entry), converted by
/// their units; errors name the file and the object.
struct ParameterReader {
    let file: String
    let scan: NXGroup
    let sample: NXGroup

    func field(_ path: String) throws -> NXField? {
        let base = path.hasPrefix("sample/") ? ((try scan.resolve(path) as? NXField) != nil ? scan : sample) : scan
        guard let node = try base.resolve(path) else { return nil }
        guard let f = node as? NXField else { throw CrystalError("\(file): \(node.path) is a group; a field was expected") }
        return f
    }

    func numbers(_ path: String) throws -> [Double]? {
        guard let f = try field(path) else { return nil }
        guard case .array(let a) = try f.read(nil) else {
            throw CrystalError("\(file): \(f.path) holds text; a number was expected")
        }
        return a.doubles()
    }

    func units(_ path: String) throws -> String? {
        try field(path)?.stringAttribute("units")?.trimmingCharacters()
    }

    func scaled(_ path: String, _ table: [String: Double], _ kind: String) throws -> [Double]? {
        guard let v = try numbers(path) else { return nil }
        guard let u = try units(path), !u.isEmpty else { return v }
        guard let s = table[u] ?? table[u.lowercased()] else {
            throw CrystalError("\(file): \(scan.path)/\(path) has units '\(u)'; \(kind) units (\(table.keys.sorted().joined(separator: ", "))) were expected")
        }
        return v.map { $0 * s }
    }

    static let lengths: [String: Double] = ["m": 1000, "cm": 10, "mm": 1, "um": 1e-3, "micron": 1e-3, "microns": 1e-3, "µm": 1e-3, "nm": 1e-6]
    static let angleUnits: [String: Double] = ["deg": 1, "deg.": 1, "degree": 1, "degrees": 1, "rad": 180 / Double.pi, "radian": 180 / Double.pi, "radians": 180 / Double.pi]
    static let wavelengths: [String: Double] = ["a": 1, "angstrom": 1, "angstroms": 1, "å": 1, "nm": 10, "m": 1e10]

    func scalar(_ values: [Double]?, _ path: String) throws -> Double? {
        guard let values else { return nil }
        guard let first = values.first, first.isFinite else {
            throw CrystalError("\(file): \(scan.path)/\(path) holds no finite number")
        }
        return first
    }

    func length(_ path: String, required: Bool = false) throws -> Double? {
        let v = try scalar(scaled(path, Self.lengths, "length"), path)
        if v == nil && required { throw CrystalError("\(file): missing \(scan.path)/\(path) (a length, NXRefine's unit mm)") }
        return v
    }

    func angle(_ path: String) throws -> Double? { try scalar(angles(path), path) }

    /// True when finite values stray from `expected(index)` by more than rounding.
    static func varies(_ values: [Double], from expected: (Int) -> Double) -> Bool {
        values.enumerated().contains { $0.element.isFinite && abs($0.element - expected($0.offset)) > 1e-6 * max(1, abs($0.element)) }
    }

    /// Per-frame values with the gaps of missing frames (NaN) filled linearly from their
    /// neighbours; an error when none is finite.
    static func filled(_ values: [Double], _ path: String, file: String) throws -> [Double] {
        let known = values.indices.filter { values[$0].isFinite }
        guard let first = known.first, let last = known.last else { throw CrystalError("\(file): \(path) holds no finite angle") }
        var out = values
        for i in values.indices where !values[i].isFinite {
            if i < first { out[i] = values[first]; continue }
            if i > last { out[i] = values[last]; continue }
            let lo = known.last { $0 < i }!, hi = known.first { $0 > i }!
            out[i] = values[lo] + (values[hi] - values[lo]) * Double(i - lo) / Double(hi - lo)
        }
        return out
    }

    /// The stacker's per-frame angles at the middle of each exposure (the value, from the
    /// header at its start, plus half the increment), nil when they do not change from
    /// frame to frame (unless `always`).
    func perFrameCentres(_ path: String, increments: String, frames: Int, always: Bool = false) throws -> [Double]? {
        guard let v = try angles(path), !v.isEmpty else { return nil }
        guard always || ParameterReader.varies(v, from: { _ in v.first { $0.isFinite } ?? 0 }) else { return nil }
        guard v.count == frames else {
            throw CrystalError("\(file): \(scan.path)/\(path) holds \(v.count) values for \(frames) frames")
        }
        var out = try ParameterReader.filled(v, "\(scan.path)/\(path)", file: file)
        if let inc = try angles(increments), inc.count == frames {
            for i in out.indices where inc[i].isFinite { out[i] += inc[i] / 2 }
        } else if out.count > 1 {
            // no increments: the middle between starts, the last frame as long as the one before
            let starts = out
            for i in out.indices { out[i] = i + 1 < starts.count ? (starts[i] + starts[i + 1]) / 2 : starts[i] + (starts[i] - starts[i - 1]) / 2 }
        }
        return out
    }
    func angles(_ path: String) throws -> [Double]? { try scaled(path, Self.angleUnits, "angle") }

    func pixels(_ path: String, pixelSize: Double) throws -> Double {
        guard let v = try scalar(numbers(path), path) else {
            throw CrystalError("\(file): missing \(scan.path)/\(path) (the beam centre, in pixels)")
        }
        let u = (try units(path) ?? "").lowercased()
        if u.isEmpty || u.hasPrefix("pixel") { return v }
        guard let s = Self.lengths[u] else {
            throw CrystalError("\(file): \(scan.path)/\(path) has units '\(u)'; pixels or a length were expected")
        }
        return v * s / pixelSize
    }

    func wavelength(_ path: String) throws -> Double {
        guard let v = try scalar(scaled(path, Self.wavelengths, "wavelength"), path) else {
            throw CrystalError("\(file): missing \(scan.path)/\(path) (the wavelength, in Angstrom)")
        }
        return v
    }

    func string(_ path: String) throws -> String? {
        guard let f = try field(path) else { return nil }
        guard case .strings(let s, _) = try f.read(nil), let first = s.first else {
            throw CrystalError("\(file): \(f.path) must be text such as \"-y +z -x\"")
        }
        return first
    }

    func attributeNumber(_ path: String, _ name: String) throws -> Double? {
        guard let f = try field(path), case .array(let a)? = try f.attribute(name) else { return nil }
        return a.doubles().first
    }

    func unitCell() throws -> UnitCell? {
        var p: [Double]?
        if let six = try numbers("sample/unit_cell") {
            guard six.count == 6 else { throw CrystalError("\(file): \(sample.path)/sample/unit_cell must hold 6 values (a, b, c, alpha, beta, gamma), it holds \(six.count)") }
            p = six
        } else if let abc = try numbers("sample/unit_cell_abc") {
            let angles = try numbers("sample/unit_cell_alphabetagamma") ?? [90, 90, 90]
            guard abc.count == 3, angles.count == 3 else { throw CrystalError("\(file): \(sample.path)/sample/unit_cell_abc and unit_cell_alphabetagamma must hold 3 values each") }
            p = abc + angles
        } else {
            let names = ["unitcell_a", "unitcell_b", "unitcell_c", "unitcell_alpha", "unitcell_beta", "unitcell_gamma"]
            let values = try names.map { try scalar(numbers("sample/\($0)"), "sample/\($0)") }
            if values.allSatisfy({ $0 == nil }) { return nil }
            guard values[0] != nil else { throw CrystalError("\(file): \(sample.path)/sample has unitcell_* values but no unitcell_a") }
            p = [values[0]!, values[1] ?? values[0]!, values[2] ?? values[0]!, values[3] ?? 90, values[4] ?? 90, values[5] ?? 90]
        }
        guard let p else { return nil }
        let cell = UnitCell(a: p[0], b: p[1], c: p[2], alpha: p[3], beta: p[4], gamma: p[5])
        _ = try cell.inverseB()
        return cell
    }
}

extension String {
    func trimmingCharacters() -> String {
        var s = Substring(self)
        while let f = s.first, f.isWhitespace { s.removeFirst() }
        while let l = s.last, l.isWhitespace { s.removeLast() }
        return String(s)
    }
}
