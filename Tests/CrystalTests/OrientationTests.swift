import XCTest
@testable import Crystal
import NDArray

final class OrientationTests: XCTestCase {
    let truth = UnitCell(a: 5.2, b: 6.1, c: 7.3, alpha: 90, beta: 101, gamma: 90)
    let u = Matrix3.rotation(axis: 1, degrees: 17) * Matrix3.rotation(axis: 2, degrees: -41) * Matrix3.rotation(axis: 3, degrees: 63)

    /// Scattering vectors of low-order reflections with a little noise (1e-5 1/A).
    func vectors() throws -> (gs: [Vector3], hkl: [Vector3]) {
        var rng = RandomGenerator(seed: 5)
        let ub = u * (try truth.matrixB())
        var gs: [Vector3] = [], hkl: [Vector3] = []
        for h in -3...3 { for k in -3...3 { for l in -3...3 where h != 0 || k != 0 || l != 0 {
            let hv = Vector3(Double(h), Double(k), Double(l))
            let noise = Vector3(rng.nextNormal(), rng.nextNormal(), rng.nextNormal())
            gs.append(ub * hv + 1e-5 * noise)
            hkl.append(hv)
        } } }
        return (gs, hkl)
    }

    func testBusingLevyGivesTheOrientationFromTwoPeaks() throws {
        let b = try truth.matrixB()
        let h1 = Vector3(1, 0, 2), h2 = Vector3(0, 1, -1)
        let found = try Orientation.busingLevy(g1: u * (b * h1), g2: u * (b * h2), h1: h1, h2: h2, cell: truth)
        for (x, y) in zip(found.flat, u.flat) { XCTAssertEqual(x, y, accuracy: 1e-12) }
        XCTAssertThrowsError(try Orientation.busingLevy(g1: u * (b * h1), g2: u * (b * h1), h1: h1, h2: h1, cell: truth)) {
            XCTAssertTrue("\($0)".contains("parallel"))
        }
    }

    func testFindIndexesEveryPeakAndRefineRecoversTheCell() throws {
        let (gs, _) = try vectors()
        let found = try Orientation.find(gs, cell: truth)
        XCTAssertEqual(found.indexing.fraction, 1)
        // a 0.5% wrong cell: indexing still right at low order, then the refinement
        let start = UnitCell(a: 5.22, b: 6.08, c: 7.33, alpha: 90, beta: 100.6, gamma: 90)
        let rough = try Orientation.find(gs, cell: start, tolerance: 0.05)
        let r = try Refinement.refine(gs, hkl: rough.indexing.hkl, use: rough.indexing.indexed, cell: start, u: rough.u, symmetry: .monoclinic)
        for (x, y) in zip(r.cell.parameters, truth.parameters) { XCTAssertEqual(x, y, accuracy: 1e-5 * y) }
        XCTAssertLessThan(r.rmsAfter, 3e-5)
        XCTAssertGreaterThan(r.rmsBefore, 10 * r.rmsAfter)
    }

    func testAWrongCellIsACleanError() throws {
        let (gs, _) = try vectors()
        XCTAssertThrowsError(try Orientation.find(gs, cell: UnitCell(a: 3.1, b: 3.1, c: 3.1))) {
            XCTAssertTrue("\($0)".contains("no orientation indexes 50%"), "\($0)")
        }
    }
}
