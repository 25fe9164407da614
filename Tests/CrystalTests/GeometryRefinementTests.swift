import XCTest
@testable import Crystal
import NDArray

/// Refinement of goniometer and detector offsets with the cell and U, on the simulator's
/// true peak positions (pixel x, y and frame z, with 0.03 pixel and frame of noise).
final class GeometryRefinementTests: XCTestCase {
    func truth() -> CrystalGeometry {
        var g = CrystalGeometry()
        g.distance = 200; g.pixelSize = 0.172; g.beamCenterX = 480.3; g.beamCenterY = 190.6
        g.wavelength = 0.5; g.phiStart = 10; g.phiStep = 0.5; g.chi = -25; g.omega = 2
        g.yaw = 0.3; g.pitch = -0.2; g.roll = 0.1
        g.unitCell = UnitCell(a: 8.1, b: 9.3, c: 10.2, beta: 97)
        g.orientationMatrix = Matrix3.rotation(axis: 1, degrees: 17) * Matrix3.rotation(axis: 2, degrees: -41) * Matrix3.rotation(axis: 3, degrees: 63)
        return g
    }

    /// The reflections of a 180-frame, 90-degree scan on 2 x 2 modules.
    func peaks(_ g: CrystalGeometry) throws -> (xyz: [Vector3], hkl: [Vector3]) {
        var o = CrystalSimulation.Options()
        o.geometry = g
        o.frames = 180
        o.modules = (2, 2)
        let sim = try CrystalSimulation(o)
        var rng = RandomGenerator(seed: 3)
        var xyz: [Vector3] = [], hkl: [Vector3] = []
        for r in sim.reflections where r.z >= 0 && r.z <= 179 && r.x >= 0 && r.x < Double(sim.columns) && r.y >= 0 && r.y < Double(sim.rows) {
            xyz.append(Vector3(r.x + 0.03 * rng.nextNormal(), r.y + 0.03 * rng.nextNormal(), r.z + 0.03 * rng.nextNormal()))
            hkl.append(Vector3(Double(r.h), Double(r.k), Double(r.l)))
        }
        return (xyz, hkl)
    }

    func angle(_ a: Matrix3, _ b: Matrix3) -> Double {
        let m = a.transposed * b
        return acos(min(1, (m.m[0][0] + m.m[1][1] + m.m[2][2] - 1) / 2)) * 180 / .pi
    }

    func testPerturbedGeometryIsRecovered() throws {
        let t = truth()
        let (xyz, hkl) = try peaks(t)
        XCTAssertGreaterThan(xyz.count, 100)
        var start = t
        start.chi += 0.25; start.omega -= 0.2; start.beamCenterX += 0.8; start.beamCenterY -= 0.6; start.distance += 1.5
        start.unitCell = UnitCell(a: 8.12, b: 9.28, c: 10.22, beta: 96.9)
        start.orientationMatrix = Matrix3.rotation(axis: 2, degrees: 0.1) * t.orientationMatrix!
        let fit = try Refinement.refine(peaks: xyz, hkl: hkl, use: hkl.map { _ in true }, geometry: start, symmetry: .monoclinic,
                                        parameters: [.distance, .beamCenterX, .beamCenterY, .omega, .chi])
        let g = fit.geometry
        for (x, y) in zip(g.unitCell!.parameters, t.unitCell!.parameters) { XCTAssertEqual(x, y, accuracy: 1e-4 * y) }
        XCTAssertLessThan(angle(g.orientationMatrix!, t.orientationMatrix!), 0.01)
        XCTAssertEqual(g.chi, t.chi, accuracy: 0.01)
        XCTAssertEqual(g.omega, t.omega, accuracy: 0.01)
        XCTAssertEqual(g.beamCenterX, t.beamCenterX, accuracy: 0.05)
        XCTAssertEqual(g.beamCenterY, t.beamCenterY, accuracy: 0.05)
        XCTAssertEqual(g.distance, t.distance, accuracy: 0.05)
        XCTAssertLessThan(fit.rmsAfter, fit.rmsBefore / 20)
        XCTAssertEqual(fit.changes.map { $0.parameter }, [.distance, .beamCenterX, .beamCenterY, .omega, .chi])
    }

    func testARefinementThatDoesNotConvergeSaysWhereItStopped() throws {
        let t = truth()
        let (xyz, hkl) = try peaks(t)
        var start = t
        start.chi += 0.25
        XCTAssertThrowsError(try Refinement.refine(peaks: xyz, hkl: hkl, use: hkl.map { _ in true }, geometry: start, symmetry: .monoclinic,
                                                   parameters: [.chi], maxEvaluations: 3)) {
            let text = "\($0)"
            XCTAssertTrue(text.contains("evaluations (lmdif info 5: over the budget of 3)"), text)
            XCTAssertTrue(text.contains("chi -24.75 ->"), text)
            XCTAssertTrue(text.contains("1/A at the start"), text)
        }
        XCTAssertThrowsError(try Refinement.refine(peaks: xyz, hkl: hkl, use: hkl.map { _ in true }, geometry: start, symmetry: .monoclinic,
                                                   parameters: [.wavelength])) {
            XCTAssertTrue("\($0)".contains("scale q alike"), "\($0)")
        }
    }

    func testPerFrameAnglesAreInterpolatedAndUsed() throws {
        var g = truth()
        g.phiFrames = [10, 10.5, 11.5, 12]
        g.omegaFrames = [2, 2, 3, 3]
        XCTAssertEqual(g.phi(at: 1.5), 11, accuracy: 1e-12)
        XCTAssertEqual(g.phi(at: -1), 9.5, accuracy: 1e-12)
        XCTAssertEqual(g.phi(at: 4), 12.5, accuracy: 1e-12)
        XCTAssertEqual(g.omega(at: 1.25), 2.25, accuracy: 1e-12)
        XCTAssertEqual(g.chi(at: 2), -25)
        // frame 2 of the per-frame scan is frame 3 of a constant scan at omega 3
        var constant = truth()
        constant.omega = 3
        let a = try g.transform().scatteringVector(x: 100, y: 50, z: 2)
        let b = try constant.transform().scatteringVector(x: 100, y: 50, z: 3)
        XCTAssertEqual((a - b).norm, 0, accuracy: 1e-14)
        let shifted = g.shifted(omega: 0.5)
        XCTAssertEqual(shifted.omegaFrames!, [2.5, 2.5, 3.5, 3.5])
    }
}
