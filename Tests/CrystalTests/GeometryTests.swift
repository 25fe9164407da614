import XCTest
@testable import Crystal
import NDArray

final class GeometryTests: XCTestCase {
    func tilted() -> CrystalGeometry {
        var g = CrystalGeometry()
        g.distance = 300; g.pixelSize = 0.172; g.beamCenterX = 700.3; g.beamCenterY = 820.7
        g.yaw = 0.7; g.pitch = -1.1; g.roll = 0.4; g.theta = 2; g.omega = 3; g.chi = -5
        g.phiStart = -5; g.phiStep = 0.1; g.wavelength = 0.3
        g.sampleOffset = Vector3(0.05, -0.02, 0.03)
        g.unitCell = UnitCell(a: 4.1, b: 5.3, c: 7.2, alpha: 88, beta: 95, gamma: 101)
        g.orientationMatrix = Matrix3.rotation(axis: 1, degrees: 20) * Matrix3.rotation(axis: 2, degrees: -33) * Matrix3.rotation(axis: 3, degrees: 71)
        return g
    }

    /// pixel -> G -> pixel returns to the pixel (the detector-plane intersection inverts the
    /// forward transform, tilts and sample offset included).
    func testPixelRoundTrip() throws {
        let t = try tilted().transform()
        for (x, y, z) in [(10.0, 20.0, 0.0), (1400.2, 1600.9, 35.5), (700.0, 100.0, 3000.0)] {
            let g = t.scatteringVector(x: x, y: y, z: z)
            let p = try XCTUnwrap(t.pixel(scattering: g, phi: t.geometry.phi(at: z)))
            XCTAssertEqual(p.x, x, accuracy: 1e-7)
            XCTAssertEqual(p.y, y, accuracy: 1e-7)
            // and that phi satisfies the Ewald condition for G
            let phis = t.reflectingPhis(g)
            let phi = t.geometry.phi(at: z).truncatingRemainder(dividingBy: 360)
            XCTAssertTrue(phis.contains { abs(($0 - phi - 360 * (($0 - phi) / 360).rounded())) < 1e-6 }, "\(phis) vs \(phi)")
        }
    }

    /// hkl of the pixel where a reflection lands are integers.
    func testHKLOfAReflection() throws {
        let t = try tilted().transform()
        let ub = try t.geometry.matrixUB()
        let g = ub * Vector3(1, -2, 3)
        for phi in t.reflectingPhis(g) {
            let z = (phi - t.geometry.phiStart) / t.geometry.phiStep
            let p = try XCTUnwrap(t.pixel(scattering: g, phi: phi))
            let hkl = try t.hkl(x: p.x, y: p.y, z: z)
            XCTAssertEqual(hkl.x, 1, accuracy: 1e-8)
            XCTAssertEqual(hkl.y, -2, accuracy: 1e-8)
            XCTAssertEqual(hkl.z, 3, accuracy: 1e-8)
        }
    }

    func testBadInputIsNamed() {
        var g = CrystalGeometry()
        g.detectorOrientation = "-y +y -x"
        XCTAssertThrowsError(try g.transform()) { XCTAssertTrue("\($0)".contains("-y +y -x")) }
        g.detectorOrientation = "-y +z -x"
        XCTAssertThrowsError(try g.matrixUB()) { XCTAssertTrue("\($0)".contains("unit cell")) }
        g.unitCell = UnitCell(a: 1, b: 1, c: 1, alpha: 150, beta: 150, gamma: 150)
        XCTAssertThrowsError(try g.unitCell!.inverseB()) { XCTAssertTrue("\($0)".contains("not a valid cell")) }
    }
}
