#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import Detector
import NDArray

/// Frames of a rotation scan of a crystal: Bragg peaks where the geometry puts them, each
/// a Gaussian of `spotSigma` pixels spread over neighbouring frames by the mosaic width,
/// on a diffuse background falling from the beam centre, with Poisson noise, the gaps
/// between Pilatus modules (-1), dead pixels (-2) and hot pixels (constant, near the
/// cutoff). Every frame depends only on the options and its index, so frames can be made
/// in any order, on any thread, and the same seed gives the same frames.
public struct CrystalSimulation: Sendable {
    public struct Options: Sendable {
        /// Needs a unit cell and an orientation matrix.
        public var geometry = CrystalGeometry()
        public var frames = 100
        /// Pilatus modules (rows, columns): (8, 3) is a 2M (1679 x 1475).
        public var modules = (8, 3)
        public var seed: UInt64 = 1
        /// Rotation width of a peak (Gaussian sigma), degrees.
        public var mosaic = 0.1
        /// Spot size on the detector (Gaussian sigma), pixels.
        public var spotSigma = 1.0
        /// Integrated counts of the peaks: log-uniform between these.
        public var intensity = (1e3, 1e6)
        /// Background counts per pixel near the beam centre (falling to 1/20 at large angles).
        public var background = 20.0
        public var deadPixels = 150
        public var hotPixels = 20
        public var exposureTime = 0.1
        public init() {}
    }

    /// A peak of the scan: its indices, where it is (pixel x, y and frame z, all at pixel
    /// and frame centres' coordinates) and its integrated counts.
    public struct Reflection: Sendable, Equatable {
        public let h, k, l: Int
        public let x, y, z: Double
        public let intensity: Double
    }

    public static let cutoff = Int32(SyntheticPilatus.cutoff)

    public let options: Options
    public let rows: Int, columns: Int
    public let reflections: [Reflection]
    /// Dead (-2) and hot (cutoff - k) pixels by flat index: the same on every frame.
    public let fixedPixels: [(index: Int, value: Int32)]
    private let transform: GeometryTransform

    public init(_ o: Options) throws {
        guard o.frames > 0 else { throw CrystalError("a simulated scan needs at least one frame, got \(o.frames)") }
        guard o.modules.0 >= 1, o.modules.1 >= 1, o.modules.0 * o.modules.1 <= 64 else {
            throw CrystalError("simulated frames have 1 to 64 Pilatus modules, got \(o.modules.0) x \(o.modules.1)")
        }
        guard o.mosaic > 0, o.spotSigma > 0, o.intensity.0 > 0, o.intensity.1 >= o.intensity.0, o.background >= 0 else {
            throw CrystalError("simulation needs mosaic > 0, spot_sigma > 0, 0 < intensity min <= max and background >= 0")
        }
        guard o.geometry.phiStep != 0 else { throw CrystalError("simulation needs a non-zero phi step") }
        options = o
        columns = o.modules.1 * (SyntheticPilatus.moduleWidth + SyntheticPilatus.gapX) - SyntheticPilatus.gapX
        rows = o.modules.0 * (SyntheticPilatus.moduleHeight + SyntheticPilatus.gapY) - SyntheticPilatus.gapY
        var geometry = o.geometry
        geometry.frameShape = [rows, columns]
        geometry.frames = o.frames
        transform = try geometry.transform()
        let ub = try geometry.matrixUB()
        guard let ubInverse = ub.inverse else { throw CrystalError("the UB matrix \(ub) is singular") }

        // the largest |G| the detector sees: the farthest corner's scattering angle
        var gMax = 0.0
        for (x, y) in [(0.0, 0.0), (Double(columns - 1), 0.0), (0.0, Double(rows - 1)), (Double(columns - 1), Double(rows - 1))] {
            gMax = max(gMax, transform.scatteringVector(x: x, y: y, z: 0).norm)
        }
        let bounds = ubInverse.m.map { row in Int((row.map { $0 * $0 }.reduce(0, +).squareRoot() * gMax).rounded(.up)) }
        var rng = RandomGenerator(seed: o.seed)
        let sigmaFrames = o.mosaic / abs(geometry.phiStep)
        let margin = 5 * sigmaFrames
        var found: [Reflection] = []
        let frameRange = -margin...(Double(o.frames - 1) + margin)
        for h in -bounds[0]...bounds[0] {
            for k in -bounds[1]...bounds[1] {
                for l in -bounds[2]...bounds[2] where h != 0 || k != 0 || l != 0 {
                    let g = ub * Vector3(Double(h), Double(k), Double(l))
                    guard g.norm <= gMax else { continue }
                    // one intensity per reflection, drawn in a fixed order: deterministic
                    let total = o.intensity.0 * pow(o.intensity.1 / o.intensity.0, rng.nextDouble())
                    for phi in transform.reflectingPhis(g) {
                        // every turn of the rotation that falls inside the scan
                        var z0 = (phi - geometry.phiStart) / geometry.phiStep
                        let turn = 360 / abs(geometry.phiStep)
                        z0 -= (z0 / turn).rounded(.down) * turn
                        var z = z0 - turn
                        while z <= frameRange.upperBound {
                            if frameRange.contains(z), let p = transform.pixel(scattering: g, phi: geometry.phi(at: z)),
                               p.x > -4 * o.spotSigma, p.x < Double(columns) + 4 * o.spotSigma,
                               p.y > -4 * o.spotSigma, p.y < Double(rows) + 4 * o.spotSigma {
                                found.append(Reflection(h: h, k: k, l: l, x: p.x, y: p.y, z: z, intensity: total))
                            }
                            z += turn
                        }
                    }
                }
            }
        }
        reflections = found.sorted { $0.z < $1.z }

        // dead and hot pixels, off the gaps
        var fixed: [(Int, Int32)] = []
        let cols = columns, rws = rows
        func randomPixel() -> Int {
            while true {
                let x = Int(rng.next(below: UInt64(cols))), y = Int(rng.next(below: UInt64(rws)))
                if !SyntheticPilatus.isGap(x: x, y: y) { return y * cols + x }
            }
        }
        for _ in 0..<max(0, o.deadPixels) { fixed.append((randomPixel(), -2)) }
        for _ in 0..<max(0, o.hotPixels) { fixed.append((randomPixel(), CrystalSimulation.cutoff - Int32(rng.next(below: 40)))) }
        fixedPixels = fixed
    }

    public var geometry: CrystalGeometry { transform.geometry }

    /// The peaks that fall on frame range `frames` (their centre within it).
    public func reflections(in frames: Range<Int>) -> [Reflection] {
        reflections.filter { $0.z >= Double(frames.lowerBound) - 0.5 && $0.z < Double(frames.upperBound) - 0.5 }
    }

    /// The expected counts of background at (x, y) (before noise).
    public func backgroundMean(x: Int, y: Int) -> Double {
        let g = geometry
        let dx = Double(x) - g.beamCenterX, dy = Double(y) - g.beamCenterY
        return options.background * (0.05 + 0.95 / (1 + (dx * dx + dy * dy) / (250.0 * 250.0)))
    }

    /// Frame `index` (0-based): int32 (rows, columns), rows made on every core.
    public func frame(_ index: Int) throws -> NDArray {
        let o = options
        let a = try arrayWork { try NDArray(uninitialized: [rows, columns], dtype: .int32) }
        let sigmaFrames = o.mosaic / abs(geometry.phiStep)
        let z = Double(index)
        // each peak's share of this frame, and its pixel box
        struct Spot { let x, y, counts: Double; let x0, x1, y0, y1: Int }
        let reach = 4 * o.spotSigma + 1
        let spots: [Spot] = reflections.compactMap { r in
            guard abs(r.z - z) < 6 * sigmaFrames + 1 else { return nil }
            let share = CrystalSimulation.gaussianShare(z - 0.5, z + 0.5, r.z, sigmaFrames)
            let counts = r.intensity * share
            guard counts > 1e-3 else { return nil }
            return Spot(x: r.x, y: r.y, counts: counts,
                        x0: max(0, Int((r.x - reach).rounded(.down))), x1: min(columns - 1, Int((r.x + reach).rounded(.up))),
                        y0: max(0, Int((r.y - reach).rounded(.down))), y1: min(rows - 1, Int((r.y + reach).rounded(.up))))
        }
        let bands = 32
        let rowsPerBand = (rows + bands - 1) / bands
        nonisolated(unsafe) let p = a.base(Int32.self)
        let me = self, cols = columns, nrows = rows, sigma = o.spotSigma
        DispatchQueue.concurrentPerform(iterations: bands) { band in
            let lo = band * rowsPerBand, hi = min(nrows, lo + rowsPerBand)
            guard lo < hi else { return }
            // a generator per (seed, frame, band): frames and bands in any order, same result
            var rng = RandomGenerator(seed: o.seed &* 0x9E37_79B9_7F4A_7C15 &+ UInt64(index) &* 1_000_003 &+ UInt64(band) &+ 1)
            let mine = spots.filter { $0.y1 >= lo && $0.y0 < hi }
            var mean = [Double](repeating: 0, count: cols)
            for y in lo..<hi {
                for x in 0..<cols { mean[x] = me.backgroundMean(x: x, y: y) }
                for s in mine where y >= s.y0 && y <= s.y1 {
                    let fy = CrystalSimulation.gaussianShare(Double(y) - 0.5, Double(y) + 0.5, s.y, sigma)
                    if fy * s.counts < 1e-4 { continue }
                    for x in s.x0...s.x1 {
                        mean[x] += s.counts * fy * CrystalSimulation.gaussianShare(Double(x) - 0.5, Double(x) + 0.5, s.x, sigma)
                    }
                }
                for x in 0..<cols {
                    if SyntheticPilatus.isGap(x: x, y: y) { p[y * cols + x] = -1; continue }
                    let v = rng.nextPoisson(mean[x])
                    p[y * cols + x] = Int32(min(v, Int64(CrystalSimulation.cutoff)))
                }
            }
        }
        for (i, v) in fixedPixels { p[i] = v }
        return a
    }

    /// The fraction of a Gaussian (centre c, sigma s) between a and b.
    @inline(__always)
    static func gaussianShare(_ a: Double, _ b: Double, _ c: Double, _ s: Double) -> Double {
        let k = 1 / (s * 2.0.squareRoot())
        return 0.5 * (erf((b - c) * k) - erf((a - c) * k))
    }

    /// A full PILATUS_1.2 header for frame `index`: Start_angle and Phi are the start of the
    /// exposure (phi at the frame's centre minus half a step), as the detector writes them.
    public func header(_ index: Int) -> String {
        let g = geometry, o = options
        func f(_ x: Double, _ digits: Int) -> String {
            var s = String(Int64((abs(x) * pow(10, Double(digits))).rounded()))
            while s.count <= digits { s = "0" + s }
            s.insert(".", at: s.index(s.endIndex, offsetBy: -digits))
            return (x < 0 ? "-" : "") + s
        }
        let start = g.phi(at: Double(index)) - g.phiStep / 2
        let seconds = index % 60, minutes = (index / 60) % 60, hours = 12 + index / 3600
        func two(_ n: Int) -> String { n < 10 ? "0\(n)" : "\(n)" }
        let model = o.modules == (8, 3) ? "PILATUS 2M" : "PILATUS \(o.modules.0)x\(o.modules.1) modules"
        return """
        # Detector: \(model), 24-0111
        # 2024-03-01T\(two(hours % 24)):\(two(minutes)):\(two(seconds)).000
        # Pixel_size \(f(g.pixelSize * 1000, 1))e-6 m x \(f(g.pixelSize * 1000, 1))e-6 m
        # Silicon sensor, thickness 0.001000 m
        # Exposure_time \(f(o.exposureTime, 7)) s
        # Exposure_period \(f(o.exposureTime, 7)) s
        # Tau = 0 s
        # Count_cutoff \(CrystalSimulation.cutoff) counts
        # Threshold_setting: 40000 eV
        # Gain_setting: autog (vrf = 1.000)
        # N_excluded_pixels = \(o.deadPixels)
        # Excluded_pixels: badpix_mask.tif
        # Flat_field: (nil)
        # Trim_file: (nil)
        # Image_path: /ramdisk/
        # Wavelength \(f(g.wavelength, 6)) A
        # Energy_range (0, 0) eV
        # Detector_distance \(f(g.distance / 1000, 6)) m
        # Detector_Voffset 0.00000 m
        # Beam_xy (\(f(g.beamCenterX, 3)), \(f(g.beamCenterY, 3))) pixels
        # Flux 0.000000
        # Filter_transmission 1.0000
        # Start_angle \(f(start, 6)) deg.
        # Angle_increment \(f(g.phiStep, 6)) deg.
        # Detector_2theta 0.0000 deg.
        # Polarization 0.990
        # Alpha 0.0000 deg.
        # Kappa 0.0000 deg.
        # Phi \(f(start, 6)) deg.
        # Phi_increment \(f(g.phiStep, 6)) deg.
        # Omega \(f(g.omega, 6)) deg.
        # Omega_increment 0.0000 deg.
        # Chi \(f(g.chi, 6)) deg.
        # Chi_increment 0.0000 deg.
        # Oscillation_axis PHI
        # N_oscillations 1

        """
    }

    /// Writes frames `range` as `folder/prefix_NNNNN.cbf` (numbered from 1, as Pilatus
    /// detectors do; the folder is made if missing); `progress(done)` after each (it may throw to stop).
    public func writeCBF(folder: String, prefix: String = "scan", range: Range<Int>? = nil,
                         progress: ((Int) throws -> Void)? = nil) throws -> [String] {
        let r = range ?? 0..<options.frames
        if mkdir(folder, 0o755) != 0 && errno != EEXIST {
            throw CrystalError("\(folder): cannot create the folder for the frames (errno \(errno))")
        }
        var paths: [String] = []
        for i in r {
            var n = String(i + 1)
            while n.count < 5 { n = "0" + n }
            let path = "\(folder)/\(prefix)_\(n).cbf"
            let a = try frame(i)
            do { try CBFWriter.write(path, a, header: header(i)) } catch let e as DetectorError { throw CrystalError(e.message) }
            paths.append(path)
            try progress?(paths.count)
        }
        return paths
    }
}

// MARK: frames for a stack

extension CrystalSimulation {
    /// Frame `index` as a detector frame: the pixels and the parsed Pilatus header, as a
    /// stacker gets it from the CBF file `writeCBF` would write.
    public func detectorFrame(_ index: Int) throws -> Frame {
        guard index >= 0, index < options.frames else { throw CrystalError("frame \(index) is outside 0..\(options.frames - 1)") }
        var h = FrameHeader(format: "cbf", compression: "none", decoder: "simulation")
        h.convention = "PILATUS_1.2"
        h.pilatus = PilatusHeader(parsing: header(index))
        return Frame(array: try frame(index), header: h)
    }

    /// The file names `writeCBF` gives frames (prefix_00001.cbf ...), numbered from 1.
    public func frameNames(prefix: String = "scan") -> [String] {
        (0..<options.frames).map { i in
            var n = String(i + 1)
            while n.count < 5 { n = "0" + n }
            return "\(prefix)_\(n).cbf"
        }
    }

    /// The detector's own mask (1 = no signal): the gaps between modules and the dead
    /// pixels; hot pixels are left for frame statistics to find, as on a real detector.
    public func detectorMask() throws -> NDArray {
        let m = try arrayWork { try NDArray(zeros: [rows, columns], dtype: .int8) }
        let p = m.base(Int8.self)
        for y in 0..<rows { for x in 0..<columns where SyntheticPilatus.isGap(x: x, y: y) { p[y * columns + x] = 1 } }
        for (i, v) in fixedPixels where v < 0 { p[i] = 1 }
        return m
    }
}
