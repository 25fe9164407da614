import XCTest
@testable import Crystal
import NDArray

/// The transform held in bricks (few slots: frames need several rounds, bricks are pushed
/// out and come back) against the same transform held whole.
final class TransformBrickTests: XCTestCase {
    func geometry() -> CrystalGeometry {
        var g = CrystalGeometry()
        g.distance = 300; g.pixelSize = 0.172; g.beamCenterX = 30.5; g.beamCenterY = 20.5
        g.yaw = 0.7; g.pitch = -1.1; g.roll = 0.4; g.chi = -5
        g.phiStart = 0; g.phiStep = 2; g.wavelength = 0.3
        g.unitCell = UnitCell(a: 4.1, b: 5.3, c: 7.2, alpha: 88, beta: 95, gamma: 101)
        g.orientationMatrix = Matrix3.rotation(axis: 1, degrees: 20) * Matrix3.rotation(axis: 3, degrees: 71)
        return g
    }

    func testBricksWithEvictionsEqualTheWholeGrid() throws {
        let rows = 40, columns = 60, frames = 12
        let grid = try ReciprocalGrid(origin: [-0.8, -0.8, -0.8], step: [0.016, 0.016, 0.016], size: [101, 101, 101])
        var options = ReciprocalTransform.Options(grid: grid)
        options.mask = (0..<(rows * columns)).map { $0 % 37 == 0 ? 1 : 0 }
        var rng = SystemRandomNumberGenerator()
        // integer counts and unit weights: sums in any order are exact, so equal bit for bit
        let values = (0..<(frames * rows * columns)).map { _ in Double(Int.random(in: 0..<1000, using: &rng)) }
        let stack = try NDArray.from(values, shape: [frames, rows, columns], dtype: .int32)

        let whole = try ReciprocalTransform(geometry: geometry(), rows: rows, columns: columns, options: options)
        try whole.add(stack, firstFrame: 0)

        let layout = try BrickLayout(grid: grid)
        XCTAssertEqual(layout.count, 64)
        let cache = try BrickCache(layout: layout, capacity: 3)
        var totals: [Int: [Double]] = [:]
        var spills = 0
        cache.spill = { b, sums in
            var t = totals[b] ?? [Double](repeating: 0, count: BrickCache.slotDoubles)
            for i in 0..<t.count { t[i] += sums[i] }
            totals[b] = t
            spills += 1
        }
        let bricked = try ReciprocalTransform(geometry: geometry(), rows: rows, columns: columns, options: options, bricks: cache)
        for z in [5, 0, 9, 1, 2, 3, 4, 11, 6, 7, 8, 10] {  // any order, one frame at a time
            try bricked.add(try stack.view(Selection([.range(.int(z), .int(z + 1), 1)])), firstFrame: z)
        }
        try cache.spillAll()
        XCTAssertGreaterThan(cache.evictions, 0)
        XCTAssertEqual(cache.peakSlots, 3)
        XCTAssertEqual(bricked.pixelsAdded, whole.pixelsAdded)
        XCTAssertEqual(bricked.pixelsMasked, whole.pixelsMasked)
        XCTAssertEqual(bricked.pixelsOutside, whole.pixelsOutside)
        XCTAssertGreaterThan(whole.pixelsAdded, frames * rows * columns / 2)

        let v = whole.v.base(Double.self), n = whole.n.base(Double.self)
        var compared = 0
        for b in 0..<layout.count {
            let (start, extent) = layout.box(b)
            let t = totals[b] ?? [Double](repeating: 0, count: BrickCache.slotDoubles)
            var compact = [Double](repeating: 0, count: extent.reduce(1, *))
            for (k, target) in [v, n].enumerated() {
                t.withUnsafeBufferPointer { BrickCache.compact($0.baseAddress! + k * BrickLayout.slotVoxels, into: &compact, extent: extent) }
                var o = 0
                for l in 0..<extent[2] {
                    for kk in 0..<extent[1] {
                        for h in 0..<extent[0] {
                            let at = ((start[2] + l) * grid.size[1] + start[1] + kk) * grid.size[0] + start[0] + h
                            XCTAssertEqual(compact[o], target[at], "brick \(b) voxel \(h), \(kk), \(l)")
                            o += 1; compared += 1
                        }
                    }
                }
            }
        }
        XCTAssertEqual(compared, 2 * grid.count)
    }

    func testLayoutRefusesGridsWithTooManyBricks() {
        XCTAssertThrowsError(try BrickLayout(grid: try ReciprocalGrid(origin: [0, 0, 0], step: [1, 1, 1], size: [1, 1 << 19, 1 << 10]))) { e in
            XCTAssertTrue("\(e)".contains("bricks of 32^3 voxels"), "\(e)")
        }
    }
}

/// The cache's slots: a hold that takes the last fresh slots and must push bricks out too
/// gives every brick a slot of its own (it once gave a fresh slot twice: two bricks' sums
/// in one slot, spilled as one of them).
final class BrickCacheSlotTests: XCTestCase {
    func testHoldGivesEveryBrickItsOwnSlot() throws {
        let layout = try BrickLayout(grid: try ReciprocalGrid(origin: [0, 0, 0], step: [1, 1, 1], size: [32 * 4, 32 * 4, 32]))
        let cache = try BrickCache(layout: layout, capacity: 6)
        var spilled: [Int] = []
        cache.spill = { b, _ in spilled.append(b) }
        for group: [Int32] in [[0, 1, 2], [3, 4, 5, 6, 7], [0, 8], [9, 10, 11, 12, 13, 14]] {
            try cache.hold(group[...])
            let slots = group.map { cache.table[Int($0)] }
            XCTAssertTrue(slots.allSatisfy { $0 != nil }, "every brick of \(group) held")
            XCTAssertEqual(Set(slots.map { Int(bitPattern: $0!) }).count, group.count, "bricks \(group) share a slot")
            let held = (0..<layout.count).compactMap { cache.table[$0].map { Int(bitPattern: $0) } }
            XCTAssertEqual(Set(held).count, held.count, "two bricks held in one slot after holding \(group)")
            XCTAssertLessThanOrEqual(held.count, 6)
        }
        XCTAssertEqual(spilled.count, cache.evictions)
        XCTAssertEqual(cache.evictions, 2 + 2 + 6)  // 3 fresh slots then 2 pushed out; 2; all 6
    }
}
