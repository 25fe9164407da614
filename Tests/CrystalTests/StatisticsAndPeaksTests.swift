import XCTest
@testable import Crystal
import NDArray

final class StatisticsAndPeaksTests: XCTestCase {
    /// A small scan: 2 x 1 Pilatus modules, 40 frames.
    func simulation(seed: UInt64 = 3) throws -> CrystalSimulation {
        var g = CrystalGeometry()
        g.distance = 150; g.pixelSize = 0.172; g.beamCenterX = 240; g.beamCenterY = 200
        g.wavelength = 0.6; g.phiStart = 30; g.phiStep = 0.2
        g.unitCell = UnitCell(a: 7, b: 8, c: 9)
        g.orientationMatrix = Matrix3.rotation(axis: 1, degrees: 12) * Matrix3.rotation(axis: 2, degrees: 25)
        var o = CrystalSimulation.Options()
        o.geometry = g; o.frames = 40; o.modules = (2, 1); o.seed = seed; o.mosaic = 0.2
        o.intensity = (5e3, 1e5); o.background = 3; o.deadPixels = 10; o.hotPixels = 5
        return try CrystalSimulation(o)
    }

    func testSimulationIsDeterministicAndPlacesGapsDeadAndHotPixels() throws {
        let s = try simulation()
        XCTAssertEqual(s.rows, 407)
        XCTAssertEqual(s.columns, 487)
        XCTAssertGreaterThan(s.reflections.count, 5)
        let a = try s.frame(7), b = try simulation().frame(7)
        XCTAssertEqual(a.doubles(), b.doubles())
        let other = try simulation(seed: 4).frame(7)
        XCTAssertNotEqual(a.doubles(), other.doubles())
        let v = a.doubles()
        XCTAssertEqual(v[195 * 487 + 10], -1)  // the gap between the two modules
        XCTAssertEqual(v.filter { $0 == -2 }.count, 10)
        XCTAssertTrue(s.header(7).contains("# Start_angle 31.300000 deg."))
    }

    func testStatisticsInBlocksEqualOnePass() throws {
        let s = try simulation()
        let frames = try (0..<12).map { try s.frame($0) }
        let whole = try FrameStatistics(rows: s.rows, columns: s.columns)
        let parts = try FrameStatistics(rows: s.rows, columns: s.columns)
        for (i, f) in frames.enumerated() { try whole.add(f, firstFrame: i) }
        // uneven blocks of (n, rows, columns)
        var first = 0
        for n in [5, 1, 6] {
            let block = try NDArray(zeros: [n, s.rows, s.columns], dtype: .int32)
            for k in 0..<n {
                memcpy(block.base(Int32.self) + k * s.rows * s.columns, frames[first + k].base(Int32.self), s.rows * s.columns * 4)
            }
            try parts.add(block, firstFrame: first)
            first += n
        }
        XCTAssertEqual(try whole.frameSums().doubles(), try parts.frameSums().doubles())
        XCTAssertEqual(whole.maximum, parts.maximum)
        XCTAssertEqual(whole.hotPixels.count, 5)
        // frame sums leave out gaps, dead and hot pixels exactly
        let mask = try whole.pixelMask().doubles()
        let f3 = frames[3].doubles()
        let expected = zip(f3, mask).reduce(0.0) { $0 + ($1.1 == 0 ? $1.0 : 0) }
        XCTAssertEqual(try whole.frameSums().doubles()[3], expected)
        XCTAssertThrowsError(try whole.add(try NDArray(zeros: [3, 3], dtype: .int32), firstFrame: 0)) {
            XCTAssertTrue("\($0)".contains("(3, 3)"))
        }
    }

    func testPeaksAreFoundWhereTheSimulationPutThem() throws {
        let s = try simulation()
        var o = PeakFinder.Options()
        o.threshold = 60; o.minPixels = 8
        let stats = try FrameStatistics(rows: s.rows, columns: s.columns)
        let frames = try (0..<s.options.frames).map { try s.frame($0) }
        for (i, f) in frames.enumerated() { try stats.add(f, firstFrame: i) }
        let finder = try PeakFinder(rows: s.rows, columns: s.columns, mask: try stats.pixelMask(), options: o)
        for (i, f) in frames.enumerated() { try finder.add(f, firstFrame: i) }
        let peaks = try finder.finish()
        // every clean, bright reflection well inside the frames is found within 0.1
        let clean = s.reflections.filter { r in
            r.z > 3 && r.z < Double(s.options.frames - 4) && r.x > 5 && r.x < Double(s.columns - 6)
                && r.y > 5 && r.y < Double(s.rows - 6) && abs(r.y - 197) > 8
                && !s.reflections.contains { $0 != r && abs($0.x - r.x) < 16 && abs($0.y - r.y) < 16 && abs($0.z - r.z) < 8 }
        }
        XCTAssertGreaterThan(clean.count, 3)
        for r in clean {
            XCTAssertTrue(peaks.contains { abs($0.x - r.x) <= 0.1 && abs($0.y - r.y) <= 0.1 && abs($0.z - r.z) <= 0.1 },
                          "reflection \(r) not found; nearest \(peaks.min { abs($0.x - r.x) + abs($0.y - r.y) < abs($1.x - r.x) + abs($1.y - r.y) }.map { "\($0)" } ?? "none")")
        }
        XCTAssertThrowsError(try finder.add(frames[0], firstFrame: 0))
    }
}
