#if canImport(Glibc)
import Glibc
#endif
import NDArray

/// Realistic synthetic Pilatus 2M frames for tests, demos and benchmarks (no real frame
/// can be shipped): 1475 x 1679 int32 in 3 x 8 modules of 487 x 195 pixels with 7- and
/// 17-pixel gaps (-1), dead pixels (-2), a Poisson background falling from the beam
/// centre, Bragg spots up to 1e5 counts, hot pixels near the 1048574 count cutoff, and
/// the full PILATUS_1.2 header. The same seed gives the same frame. Other module counts
/// make the other Pilatus sizes (1 x 1: 100K, 3 x 1: 300K, 5 x 2: 1M, 12 x 5: 6M), with
/// spots, dead and hot pixels in proportion.
public enum SyntheticPilatus {
    public static let moduleWidth = 487, moduleHeight = 195, gapX = 7, gapY = 17
    public static let cutoff: Int32 = 1_048_574

    public struct Options: Sendable {
        public var seed: UInt64 = 1
        /// Modules (rows, columns): (8, 3) is a Pilatus 2M.
        public var modules: (Int, Int) = (8, 3) {
            didSet {
                let share = Double(modules.0 * modules.1) / 24
                spots = max(10, Int(300 * share))
                hotPixels = max(3, Int(20 * share))
                deadPixels = max(5, Int(150 * share))
                beam = modules == (8, 3) ? (741.5, 846.5) : (Double(width) / 2 + 0.5, Double(height) / 2 + 0.5)
            }
        }
        public var width: Int { modules.1 * (SyntheticPilatus.moduleWidth + SyntheticPilatus.gapX) - SyntheticPilatus.gapX }
        public var height: Int { modules.0 * (SyntheticPilatus.moduleHeight + SyntheticPilatus.gapY) - SyntheticPilatus.gapY }
        /// "PILATUS 2M", "PILATUS 100K", ...
        public var model: String {
            switch modules {
            case (1, 1): return "PILATUS 100K"
            case (3, 1): return "PILATUS 300K"
            case (5, 2): return "PILATUS 1M"
            case (8, 3): return "PILATUS 2M"
            case (12, 5): return "PILATUS 6M"
            default: return "PILATUS \(modules.0)x\(modules.1) modules"
            }
        }
        public var spots = 300
        public var hotPixels = 20
        public var deadPixels = 150
        /// Beam centre in pixels (x fast, y slow).
        public var beam: (Double, Double) = (741.5, 846.5)
        /// Frame number in the series (sets Start_angle = n * 0.1 deg).
        public var frameNumber = 1
        public init() {}
    }

    /// Whether (x, y) lies in a gap between modules.
    public static func isGap(x: Int, y: Int) -> Bool {
        x % (moduleWidth + gapX) >= moduleWidth || y % (moduleHeight + gapY) >= moduleHeight
    }

    public static func frame(_ o: Options = Options()) throws -> (NDArray, String) {
        guard o.modules.0 >= 1, o.modules.1 >= 1, o.modules.0 * o.modules.1 <= 64 else {
            throw DetectorError("synthetic frames have 1 to 64 modules, got \(o.modules.0) x \(o.modules.1)")
        }
        let width = o.width, height = o.height
        let a = try NDArray(uninitialized: [height, width], dtype: .int32)
        let p = a.base(Int32.self)
        var rng = RandomGenerator(seed: o.seed)
        let (bx, by) = o.beam
        // background: ~40 counts at the beam centre falling to ~2 at the corners
        for y in 0..<height {
            for x in 0..<width {
                if isGap(x: x, y: y) { p[y * width + x] = -1; continue }
                let dx = Double(x) - bx, dy = Double(y) - by
                let r2 = dx * dx + dy * dy
                let mean = 2.0 + 38.0 / (1.0 + r2 / (180.0 * 180.0))
                p[y * width + x] = Int32(rng.nextPoisson(mean))
            }
        }
        // Bragg spots: Gaussian profiles, peak totals log-uniform from 1e2 to 1e5
        for _ in 0..<o.spots {
            let cx = rng.nextDouble() * Double(width), cy = rng.nextDouble() * Double(height)
            let total = pow(10.0, 2.0 + 3.0 * rng.nextDouble())
            let sigma = 0.8 + 0.8 * rng.nextDouble()
            let peak = total / (2 * Double.pi * sigma * sigma)
            let x0 = max(0, Int(cx) - 5), x1 = min(width - 1, Int(cx) + 5)
            let y0 = max(0, Int(cy) - 5), y1 = min(height - 1, Int(cy) + 5)
            guard x0 <= x1, y0 <= y1 else { continue }
            for y in y0...y1 {
                for x in x0...x1 where !isGap(x: x, y: y) {
                    let dx = Double(x) + 0.5 - cx, dy = Double(y) + 0.5 - cy
                    let lam = peak * exp(-(dx * dx + dy * dy) / (2 * sigma * sigma))
                    if lam < 0.05 { continue }
                    let v = Int64(p[y * width + x]) + rng.nextPoisson(min(lam, 1e5))
                    p[y * width + x] = Int32(min(v, Int64(cutoff)))
                }
            }
        }
        func randomPixel(_ rng: inout RandomGenerator) -> Int {
            while true {
                let x = Int(rng.next(below: UInt64(width))), y = Int(rng.next(below: UInt64(height)))
                if !isGap(x: x, y: y) { return y * width + x }
            }
        }
        for _ in 0..<o.hotPixels { p[randomPixel(&rng)] = cutoff - Int32(rng.next(below: 40)) }
        for _ in 0..<o.deadPixels { p[randomPixel(&rng)] = -2 }
        return (a, header(o))
    }

    /// The PILATUS_1.2 header lines of a synthetic frame.
    public static func header(_ o: Options = Options()) -> String {
        let angle = Double(o.frameNumber) * 0.1
        func f(_ x: Double, _ digits: Int) -> String {
            var s = String(Int((x * pow(10, Double(digits))).rounded()))
            let negative = s.hasPrefix("-")
            if negative { s.removeFirst() }
            while s.count <= digits { s = "0" + s }
            s.insert(".", at: s.index(s.endIndex, offsetBy: -digits))
            return (negative ? "-" : "") + s
        }
        return """
        # Detector: \(o.model), 24-0111
        # 2024-03-01T12:00:\(o.frameNumber % 60 < 10 ? "0" : "")\(o.frameNumber % 60).000
        # Pixel_size 172e-6 m x 172e-6 m
        # Silicon sensor, thickness 0.000450 m
        # Exposure_time 0.0995000 s
        # Exposure_period 0.1000000 s
        # Tau = 383.8e-09 s
        # Count_cutoff 1048574 counts
        # Threshold_setting: 6344 eV
        # Gain_setting: high gain (vrf = -0.150)
        # N_excluded_pixels = 1621
        # Excluded_pixels: badpix_mask.tif
        # Flat_field: FF_p2m0111_E12660_T6330_vrf_m0p15.tif
        # Trim_file: p2m0111_E12660_T6330_vrf_m0p15.bin
        # Image_path: /ramdisk/
        # Wavelength 0.97930 A
        # Energy_range (0, 0) eV
        # Detector_distance 0.23000 m
        # Detector_Voffset 0.00000 m
        # Beam_xy (\(f(o.beam.0, 2)), \(f(o.beam.1, 2))) pixels
        # Flux 0.000000
        # Filter_transmission 1.0000
        # Start_angle \(f(angle, 4)) deg.
        # Angle_increment 0.1000 deg.
        # Detector_2theta 0.0000 deg.
        # Polarization 0.990
        # Alpha 0.0000 deg.
        # Kappa 0.0000 deg.
        # Phi \(f(angle, 4)) deg.
        # Phi_increment 0.1000 deg.
        # Omega 0.0000 deg.
        # Omega_increment 0.0000 deg.
        # Chi 0.0000 deg.
        # Chi_increment 0.0000 deg.
        # Oscillation_axis X, CW
        # N_oscillations 1

        """
    }
}
