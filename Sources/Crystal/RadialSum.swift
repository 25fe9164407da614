#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import NDArray

/// The powder pattern of a scan, as NXRefine's nxmax gets it from pyFAI: the summed image
/// binned in |Q|, corrected for polarization and solid angle.
///
/// Each bin holds sum(I) / sum(P Omega) over its unmasked pixels (pyFAI's integrate1d: the
/// signal over the normalization), with, per pixel, Omega = (d / |v|)^3 the solid angle
/// relative to a pixel at normal incidence (d the distance from the sample to the detector
/// plane, v the vector to the pixel) and P = (1 + cos^2 2theta - f cos 2chi sin^2 2theta) / 2
/// the polarization factor, chi the azimuth from the horizontal (lab y) and f the degree of
/// horizontal polarization (0.99 at a synchrotron, 0 unpolarized). The sample offset is
/// left out (it moves with phi; a powder ring does not).
public struct RadialSum: Sendable {
    /// Bin centres, |Q| = 4 pi sin(theta) / lambda (with 2 pi), 1/Angstrom, evenly spaced.
    public let q: [Double]
    public let intensity: [Double]
    /// Unmasked pixels in each bin.
    public let pixels: [Int]
    public let polarization: Double

    /// The powder pattern of `image` (rows, columns) for a geometry; `mask` (1 = left out)
    /// has one byte per pixel; `bins` nil: one per pixel of the largest radius on the detector.
    public static func compute(_ image: NDArray, mask: [UInt8]?, geometry: CrystalGeometry, bins: Int? = nil,
                               polarization: Double = 0.99) throws -> RadialSum {
        guard image.ndim == 2 else { throw CrystalError("a radial sum needs an image (rows, columns), got shape \(NDArray.describe(image.shape))") }
        guard polarization.isFinite, abs(polarization) <= 1 else { throw CrystalError("the polarization factor must be between -1 and 1, got \(polarization)") }
        let rows = image.shape[0], columns = image.shape[1], n = rows * columns
        if let mask, mask.count != n { throw CrystalError("the pixel mask has \(mask.count) pixels, the image \(n)") }
        let t = try geometry.transform()
        let g = geometry
        let m = t.pixelToLab.m
        let ex = Vector3(m[0][0], m[1][0], m[2][0]), ey = Vector3(m[0][1], m[1][1], m[2][1])
        let normal = ex.cross(ey).normalized
        let origin = Vector3(g.distance, 0, 0) - g.beamCenterX * ex - g.beamCenterY * ey
        let planeDistance = abs(normal.dot(origin))
        let lambda = g.wavelength
        let values = image.doubles()

        // |Q| and P Omega of every pixel, rows on every core
        var qs = [Double](repeating: 0, count: n), weights = [Double](repeating: 0, count: n)
        qs.withUnsafeMutableBufferPointer { qp in
            weights.withUnsafeMutableBufferPointer { wp in
                nonisolated(unsafe) let q = qp.baseAddress!, w = wp.baseAddress!
                DispatchQueue.concurrentPerform(iterations: max(1, min(rows, 64))) { part in
                    let chunk = (rows + min(rows, 64) - 1) / max(1, min(rows, 64))
                    // the last parts can start past the end (195 rows: 49 parts of 4 cover them)
                    let lo = min(rows, part * chunk), hi = min(rows, lo + chunk)
                    for r in lo..<hi {
                        for c in 0..<columns {
                            let v = origin + Double(c) * ex + Double(r) * ey
                            let length = v.norm
                            let cos2t = v.x / length
                            let sin2t2 = max(0, 1 - cos2t * cos2t)
                            let perpendicular = v.y * v.y + v.z * v.z
                            let cos2chi = perpendicular > 0 ? (v.y * v.y - v.z * v.z) / perpendicular : 1
                            let p = 0.5 * (1 + cos2t * cos2t - polarization * cos2chi * sin2t2)
                            let omega = pow(planeDistance / length, 3)
                            let i = r * columns + c
                            // sin(theta) = sqrt((1 - cos 2theta) / 2)
                            q[i] = 4 * .pi * ((1 - cos2t) / 2).squareRoot() / lambda
                            w[i] = p * omega
                        }
                    }
                }
            }
        }
        var qMin = Double.infinity, qMax = -Double.infinity
        for i in 0..<n where (mask?[i] ?? 0) == 0 { qMin = min(qMin, qs[i]); qMax = max(qMax, qs[i]) }
        guard qMin < qMax else { throw CrystalError("a radial sum needs unmasked pixels at more than one |Q|") }
        let corners = [(0.0, 0.0), (Double(columns - 1), 0.0), (0.0, Double(rows - 1)), (Double(columns - 1), Double(rows - 1))]
        let radius = corners.map { (($0.0 - g.beamCenterX) * ($0.0 - g.beamCenterX) + ($0.1 - g.beamCenterY) * ($0.1 - g.beamCenterY)).squareRoot() }.max()!
        let count = bins ?? max(2, Int(radius.rounded(.up)))
        guard count >= 1 else { throw CrystalError("a radial sum needs at least 1 bin, got \(count)") }
        let width = (qMax - qMin) / Double(count)
        var signal = [Double](repeating: 0, count: count), norm = [Double](repeating: 0, count: count)
        var pixels = [Int](repeating: 0, count: count)
        for i in 0..<n where (mask?[i] ?? 0) == 0 && values[i] >= 0 {
            let b = min(count - 1, Int((qs[i] - qMin) / width))
            signal[b] += values[i]
            norm[b] += weights[i]
            pixels[b] += 1
        }
        return RadialSum(q: (0..<count).map { qMin + (Double($0) + 0.5) * width },
                         intensity: zip(signal, norm).map { $1 > 0 ? $0 / $1 : .nan }, pixels: pixels, polarization: polarization)
    }
}

extension FrameStatistics {
    /// The powder pattern of the frames so far (the summed image, masked pixels left out).
    public func radialSum(geometry: CrystalGeometry, bins: Int? = nil, polarization: Double = 0.99) throws -> RadialSum {
        guard framesSeen > 0 else { throw CrystalError("a radial sum needs frames: none were added") }
        let mask = try pixelMask()
        let bytes = (0..<pixels).map { UInt8(mask.base(Int8.self)[$0] != 0 ? 1 : 0) }
        return try withExtendedLifetime(mask) { try RadialSum.compute(try summedImage(), mask: bytes, geometry: geometry, bins: bins, polarization: polarization) }
    }
}
