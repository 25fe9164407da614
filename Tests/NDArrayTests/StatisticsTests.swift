import XCTest
@testable import NDArray

/// Statistics, counts, NaN-aware and valid-pixel reductions, running sums, histograms and
/// matrix products, against naive loops written here.
final class StatisticsTests: XCTestCase {
    /// A deterministic int32 stack with Pilatus-like negative pixels.
    func detectorStack(_ shape: [Int]) throws -> NDArray {
        let a = try NDArray(zeros: shape, dtype: .int32)
        let p = a.base(Int32.self)
        for i in 0..<a.count {
            let v = Int32(truncatingIfNeeded: (i &* 2654435761) >> 11) & 0xFFFF
            p[i] = i % 97 == 0 ? -1 : i % 1013 == 5 ? -2 : v
        }
        return a
    }

    func values(_ a: NDArray) -> [Double] { a.doubles() }

    // MARK: valid pixels

    func testSumValidMatchesNaiveSumsOnEveryPath() throws {
        // 5 frames (4 + 1: both SIMD loops), 60,000 pixels (several column blocks, threads)
        let a = try detectorStack([5, 60, 1000])
        let p = a.base(Int32.self), m = 60_000
        let s = try a.reduce(.sumValid, axes: [0]), c = try a.reduce(.countValid, axes: [0])
        XCTAssertEqual(s.dtype, .int64)
        XCTAssertEqual(c.dtype, .int64)
        for j in stride(from: 0, to: m, by: 331) {
            let column = (0..<5).map { Int64(p[$0 * m + j]) }
            XCTAssertEqual(try s.integer(at: [j / 1000, j % 1000]), column.filter { $0 >= 0 }.reduce(0, +), "pixel \(j)")
            XCTAssertEqual(try c.integer(at: [j / 1000, j % 1000]), Int64(column.filter { $0 >= 0 }.count))
        }
        // whole-array (per-thread partials), inner axes, a strided view (plain loops as
        // oracles: closures per element took seconds under AddressSanitizer)
        var perFrame = [Int64](repeating: 0, count: 5), validCount: Int64 = 0
        for i in 0..<a.count where p[i] >= 0 {
            perFrame[i / m] += Int64(p[i])
            validCount += 1
        }
        XCTAssertEqual(try a.reduce(.sumValid).integer(at: []), perFrame.reduce(0, +))
        XCTAssertEqual(try a.reduce(.countValid).integer(at: []), validCount)
        XCTAssertEqual(try a.reduce(.sumValid, axes: [1, 2]).doubles(), perFrame.map { Double($0) })
        let v = try a.view("::2, ::-3, 1:")
        var expected = 0.0
        for x in v.doubles() where x >= 0 { expected += x }
        XCTAssertEqual(try v.reduce(.sumValid).value(at: []), expected)
        XCTAssertEqual(try v.reduce(.sumValid, axes: [0]).doubles().reduce(0, +), expected)
        // the mean of the valid pixels; NaN where none is
        let g = try NDArray.from([-1, 4, -2, -1, 2, 6], shape: [2, 3], dtype: .int16)
        let mv = try g.meanValid(axes: [0]).doubles()
        XCTAssertEqual(mv[1], 3)
        XCTAssertTrue(mv[0].isNaN)
        XCTAssertEqual(mv[2], 6)
    }

    func testValidMeansNonNegativeForEveryDtype() throws {
        let f = try NDArray.from([-0.5, 2, .nan, 3, -1], shape: [5])
        XCTAssertEqual(try f.reduce(.sumValid).value(at: []), 5)
        XCTAssertEqual(try f.reduce(.countValid).integer(at: []), 2)
        let u = try NDArray.from([1, 2, 3], shape: [3], dtype: .uint8)
        XCTAssertEqual(try u.reduce(.sumValid).dtype, .uint64)
        XCTAssertEqual(try u.reduce(.countValid).integer(at: []), 3)
        let i8 = try NDArray.from([-128, 127, -1, 0], shape: [4], dtype: .int8)
        XCTAssertEqual(try i8.reduce(.sumValid).integer(at: []), 127)
        XCTAssertEqual(try i8.reduce(.countValid).integer(at: []), 2)
    }

    // MARK: NaN-aware reductions and counts

    func testNanReductionsSkipNaN() throws {
        let a = try NDArray.from([.nan, 1, .nan, .nan, -2, 5], shape: [2, 3])
        XCTAssertEqual(try a.reduce(.nansum).value(at: []), 4)
        XCTAssertEqual(try a.reduce(.nanmin, axes: [1]).doubles(), [1, -2])
        XCTAssertEqual(try a.reduce(.nanmax).value(at: []), 5)
        let col = try a.reduce(.nanmax, axes: [0]).doubles()
        XCTAssertTrue(col[0].isNaN, "all-NaN column")
        XCTAssertEqual(Array(col[1...]), [1, 5])
        XCTAssertEqual(try a.nanmean(axes: [1]).doubles(), [1, 1.5])
        XCTAssertEqual(try a.reduce(.countNumbers).integer(at: []), 3)
        // integers have no NaN: the plain reductions, with their dtypes
        let i = try NDArray.from([3, -1, 2], shape: [3], dtype: .int16)
        XCTAssertEqual(try i.reduce(.nanmin).dtype, .int16)
        XCTAssertEqual(try i.reduce(.nansum).dtype, .int64)
        XCTAssertEqual(try i.nanmean().value(at: []), 4.0 / 3)
    }

    func testNanMinMaxOnThreadsAndPartials() throws {
        // > 2^18 elements: the per-thread partial results are merged NaN-aware
        let n = 300_000
        let a = try NDArray.linspace(-1, 1, n)
        for k in stride(from: 0, to: n, by: 7) { try a.setValue(.nan, at: [k]) }
        try a.setValue(.nan, at: [n - 1])
        XCTAssertEqual(try a.reduce(.nanmin).value(at: []), try a.value(at: [1]))
        var top = -Double.infinity, numbers: Int64 = 0
        for x in a.doubles() where !x.isNaN {
            top = Swift.max(top, x)
            numbers += 1
        }
        XCTAssertEqual(try a.reduce(.nanmax).value(at: []), top)
        XCTAssertTrue(try a.reduce(.max).value(at: []).isNaN)
        XCTAssertEqual(try a.reduce(.countNumbers).integer(at: []), numbers)
    }

    func testCountsAnyAll() throws {
        let a = try NDArray.from([0, 1, .nan, 0, 0, 0], shape: [2, 3])
        XCTAssertEqual(try a.countNonzero().integer(at: []), 2, "NaN is not zero")
        XCTAssertEqual(try a.countNonzero(axes: [0]).doubles(), [0, 1, 1])
        XCTAssertEqual(try a.any(axes: [1]).doubles(), [1, 0])
        XCTAssertEqual(try a.all(axes: [0]).doubles(), [0, 0, 0])
        XCTAssertEqual(try a.any().dtype, .bool)
        let empty = try NDArray(zeros: [0, 2], dtype: .int32)
        XCTAssertEqual(try empty.any().value(at: []), 0)
        XCTAssertEqual(try empty.all().value(at: []), 1)
        XCTAssertEqual(try empty.all(axes: [0]).doubles(), [1, 1])
    }

    func testEmptyShapesDoNotCrashTheReductionLoops() throws {
        // a length-0 kept outer axis, a length-0 reduced axis, the leading-axis fast path
        XCTAssertEqual(try NDArray(zeros: [0, 3], dtype: .float64).sum(axes: [1]).shape, [0])
        XCTAssertEqual(try NDArray(zeros: [0, 3], dtype: .int32).sum(axes: [0]).doubles(), [0, 0, 0])
        XCTAssertEqual(try NDArray(zeros: [2, 0], dtype: .int32).reduce(.sumValid, axes: [0]).shape, [0])
        XCTAssertEqual(try NDArray(zeros: [0, 3], dtype: .int32).reduce(.prod, axes: [0]).doubles(), [1, 1, 1])
    }

    // MARK: variance

    func testVarianceIsTwoPassAndFollowsNumPy() throws {
        // 1e8 + small noise: E[x^2] - E[x]^2 would lose every digit
        var xs: [Double] = []
        var seed: UInt64 = 42
        for _ in 0..<10_000 {
            seed = seed &* 6364136223846793005 &+ 1442695040888963407
            xs.append(1e8 + Double(Int64(bitPattern: seed >> 11) % 2000) / 1000 - 1)
        }
        let a = try NDArray.from(xs, shape: [100, 100])
        let mean = xs.reduce(0, +) / Double(xs.count)
        let naive = xs.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(xs.count)
        XCTAssertEqual(try a.variance().value(at: []), naive, accuracy: naive * 1e-9)
        XCTAssertEqual(try a.standardDeviation(ddof: 1).value(at: []),
                       (naive * Double(xs.count) / Double(xs.count - 1)).squareRoot(), accuracy: 1e-9)
        // per axis, a strided view, keepdims
        let g = try NDArray.arange(0, 24, dtype: .int32).reshapedView([2, 3, 4])
        XCTAssertEqual(try g.variance(axes: [0]).doubles(), [Double](repeating: 36, count: 12))
        XCTAssertEqual(try g.variance(axes: [2], keepdims: true).shape, [2, 3, 1])
        XCTAssertEqual(try g.variance(axes: [2]).doubles(), [Double](repeating: 1.25, count: 6))
        // {c, 8 + c, 12 + c, 20 + c}: deviations -10, -2, 2, 10
        XCTAssertEqual(try g.view("::-1, ::2, 1:").variance(axes: [0, 1]).doubles(), [Double](repeating: 52, count: 3))
        XCTAssertEqual(try g.variance().dtype, .float64)
        XCTAssertEqual(try NDArray.from([1, 2], shape: [2], dtype: .float32).variance().dtype, .float64)
        // N - ddof <= 0: NaN (0/0) or inf, as NumPy
        XCTAssertTrue(try NDArray.from([4], shape: [1]).variance(ddof: 1).value(at: []).isNaN)
        XCTAssertEqual(try NDArray.from([1, 2], shape: [2]).variance(ddof: 3).value(at: []), .infinity)
        XCTAssertTrue(try NDArray(zeros: [0], dtype: .float64).variance().value(at: []).isNaN)
    }

    func testNanVarianceLeavesNaNOut() throws {
        let a = try NDArray.from([1, .nan, 3, .nan, .nan, .nan], shape: [2, 3])
        let v = try a.variance(axes: [1], skippingNaN: true).doubles()
        XCTAssertEqual(v[0], 1)
        XCTAssertTrue(v[1].isNaN)
        XCTAssertTrue(try a.variance().value(at: []).isNaN, "plain var propagates NaN")
    }

    func testVarianceOnThreadsMatchesOneThread() throws {
        let a = try detectorStack([5, 200, 300])
        let whole = try a.variance().value(at: [])
        let x = a.doubles()
        var total = 0.0, squares = 0.0
        for v in x { total += v }
        let mean = total / Double(x.count)
        for v in x { squares += (v - mean) * (v - mean) }
        XCTAssertEqual(whole, squares / Double(x.count), accuracy: whole * 1e-12)
        let v0 = try a.variance(axes: [0]).doubles()
        let column = (0..<5).map { x[$0 * 60_000 + 12_345] }
        let cm = column.reduce(0, +) / 5
        XCTAssertEqual(v0[12_345], column.map { ($0 - cm) * ($0 - cm) }.reduce(0, +) / 5, accuracy: 1e-6)
    }

    // MARK: argmin/argmax

    func testArgExtremesFirstOccurrenceAndNaN() throws {
        let a = try NDArray.from([3, 1, 1, 7, 7, 0], shape: [2, 3])
        XCTAssertEqual(try a.argReduce(.argmin).integer(at: []), 5)
        XCTAssertEqual(try a.argReduce(.argmax).integer(at: []), 3, "first of equal maxima")
        XCTAssertEqual(try a.argReduce(.argmin, axis: 1).doubles(), [1, 2])
        XCTAssertEqual(try a.argReduce(.argmax, axis: 0).doubles(), [1, 1, 0])
        XCTAssertEqual(try a.argReduce(.argmax, axis: -1, keepdims: true).shape, [2, 1])
        XCTAssertEqual(try a.argReduce(.argmin, keepdims: true).shape, [1, 1])
        XCTAssertEqual(try a.view("::-1, ::-1").argReduce(.argmin).integer(at: []), 0)
        let n = try NDArray.from([1, .nan, -5, .nan], shape: [4])
        XCTAssertEqual(try n.argReduce(.argmin).integer(at: []), 1, "the first NaN wins")
        XCTAssertEqual(try n.argReduce(.argmax).integer(at: []), 1)
        XCTAssertEqual(try n.argReduce(.nanargmin).integer(at: []), 2)
        XCTAssertEqual(try n.argReduce(.nanargmax).integer(at: []), 0)
        let u = try NDArray.from([1, 200, 255, 0], shape: [4], dtype: .uint8)
        XCTAssertEqual(try u.argReduce(.argmax).integer(at: []), 2)
        XCTAssertEqual(try NDArray.full([], 5, dtype: .int32).argReduce(.argmin).integer(at: []), 0)
    }

    func testArgExtremesOnThreadsAndErrors() throws {
        // 600,000 elements: per-thread ranges merged in order; ties keep the first
        let a = try NDArray(zeros: [600, 1000], dtype: .int64)
        try a.setValue(9, at: [100, 5])
        try a.setValue(9, at: [500, 7])
        try a.setValue(-3, at: [450, 2])
        try a.setValue(-3, at: [451, 2])
        XCTAssertEqual(try a.argReduce(.argmax).integer(at: []), 100_005)
        XCTAssertEqual(try a.argReduce(.argmin).integer(at: []), 450_002)
        let cols = try a.argReduce(.argmax, axis: 0)
        XCTAssertEqual(try cols.integer(at: [5]), 100)
        XCTAssertEqual(try cols.integer(at: [7]), 500)
        XCTAssertEqual(try cols.integer(at: [0]), 0)
        XCTAssertEqual(try a.argReduce(.argmin, axis: 1).integer(at: [451]), 2)
        XCTAssertThrowsError(try NDArray(zeros: [0, 2], dtype: .float64).argReduce(.argmax, axis: 0)) {
            XCTAssertEqual("\($0)", "attempt to get argmax of an empty sequence (axis 0 of shape (0, 2) has length 0)")
        }
        XCTAssertEqual(try NDArray(zeros: [0, 2], dtype: .float64).argReduce(.argmax, axis: 1).shape, [0])
        let n = try NDArray.from([.nan, .nan, 1, .nan], shape: [2, 2])
        XCTAssertThrowsError(try n.argReduce(.nanargmin, axis: 1)) {
            XCTAssertEqual("\($0)", "All-NaN slice encountered in nanargmin: a[0, :] of shape (2, 2) is all NaN")
        }
        XCTAssertThrowsError(try n.argReduce(.nanargmin, axis: 0)) {
            XCTAssertEqual("\($0)", "All-NaN slice encountered in nanargmin: a[:, 1] of shape (2, 2) is all NaN")
        }
        let m = try NDArray.from([.nan, 2, 1, .nan], shape: [2, 2])
        XCTAssertEqual(try m.argReduce(.nanargmin, axis: 0).doubles(), [1, 0])
    }

    // MARK: running sums

    func testCumsumCumprod() throws {
        let a = try NDArray.arange(1, 7, dtype: .int32).reshapedView([2, 3])
        XCTAssertEqual(try a.accumulate(.cumsum).doubles(), [1, 3, 6, 10, 15, 21])
        XCTAssertEqual(try a.accumulate(.cumsum).dtype, .int64)
        XCTAssertEqual(try a.accumulate(.cumsum, axis: 0).doubles(), [1, 2, 3, 5, 7, 9])
        XCTAssertEqual(try a.accumulate(.cumprod, axis: 1).doubles(), [1, 2, 6, 4, 20, 120])
        XCTAssertEqual(try a.accumulate(.cumprod, axis: -2).doubles(), [1, 2, 3, 4, 10, 18])
        XCTAssertEqual(try a.view("::-1, ::2").accumulate(.cumsum).doubles(), [4, 10, 11, 14])
        XCTAssertEqual(try a.view("::-1, ::2").accumulate(.cumsum, axis: 0).doubles(), [4, 6, 5, 9])
        XCTAssertEqual(try NDArray.from([200, 100], shape: [2], dtype: .uint8).accumulate(.cumsum).doubles(), [200, 300])
        XCTAssertEqual(try NDArray.from([200, 100], shape: [2], dtype: .uint8).accumulate(.cumsum).dtype, .uint64)
        XCTAssertEqual(try NDArray.from([0.5, 0.25], shape: [2], dtype: .float32).accumulate(.cumsum).dtype, .float32)
        XCTAssertEqual(try NDArray.from([1, 1, 0], shape: [3], dtype: .bool).accumulate(.cumsum).doubles(), [1, 2, 2])
        XCTAssertEqual(try NDArray(zeros: [0, 3], dtype: .int8).accumulate(.cumsum, axis: 1).shape, [0, 3])
        XCTAssertThrowsError(try a.accumulate(.cumsum, axis: 2)) {
            XCTAssertEqual("\($0)", "axis 2 is out of bounds for array of dimension 2")
        }
    }

    func testCumsumOnThreads() throws {
        // the accumulated axis outermost (threads split the last axis) and innermost
        let a = try detectorStack([3, 400, 500])
        let x = a.doubles(), m = 200_000
        let c0 = try a.accumulate(.cumsum, axis: 0).doubles()
        for j in stride(from: 0, to: m, by: 997) { XCTAssertEqual(c0[2 * m + j], x[j] + x[m + j] + x[2 * m + j]) }
        let c2 = try a.accumulate(.cumsum, axis: 2).doubles()
        for r in stride(from: 0, to: 1200, by: 37) {
            XCTAssertEqual(c2[r * 500 + 499], x[(r * 500)..<(r * 500 + 500)].reduce(0, +))
        }
    }

    // MARK: histograms

    func testHistogramFollowsNumPysEdgeRules() throws {
        let a = try NDArray.from([0, 1, 2, 3, 4, 10, .nan, -1], shape: [8])
        let (c, e) = try a.histogram(bins: .count(5), range: (0, 10))
        XCTAssertEqual(c.doubles(), [2, 2, 1, 0, 1], "[0,2) [2,4) [4,6) [6,8) [8,10]")
        XCTAssertEqual(e.doubles(), [0, 2, 4, 6, 8, 10])
        XCTAssertEqual(c.dtype, .int64)
        let (c2, _) = try a.histogram(bins: .edges([0, 1, 1, 3, 10]))
        XCTAssertEqual(c2.doubles(), [1, 0, 2, 3], "[0,1) [1,1) [1,3) [3,10]")
        let (w, _) = try a.histogram(bins: .count(2), range: (0, 4), weights: try NDArray.full([8], 0.5))
        XCTAssertEqual(w.doubles(), [1, 1.5])
        XCTAssertEqual(w.dtype, .float64)
        // autodetected range; a single value gets a unit-wide range
        let (c3, e3) = try NDArray.from([5, 5, 5], shape: [3], dtype: .int32).histogram(bins: .count(2))
        XCTAssertEqual(c3.doubles(), [0, 3])
        XCTAssertEqual(e3.doubles(), [4.5, 5, 5.5])
        XCTAssertThrowsError(try a.histogram(bins: .count(3))) { XCTAssertTrue("\($0)".contains("contain NaN")) }
        XCTAssertThrowsError(try a.histogram(bins: .edges([0, 2, 1]))) {
            XCTAssertEqual("\($0)", "histogram bin edges must increase monotonically: edge 1 is 2.0, edge 2 is 1.0")
        }
        XCTAssertThrowsError(try a.histogram(bins: .count(2), weights: try NDArray.full([3], 1))) {
            XCTAssertEqual("\($0)", "histogram weights must have the shape of the data: weights (3,), data (8,)")
        }
        let (d, _) = try a.histogram(bins: .count(5), range: (0, 10), density: true)
        XCTAssertEqual(d.doubles().reduce(0, +) * 2, 1, accuracy: 1e-15)
    }

    func testHistogramOfALargeFrameMatchesNaiveBinning() throws {
        // > 2^18 pixels: private histograms per thread. The oracle walks the edges by the
        // definition (no closures or sorting: under AddressSanitizer those took minutes).
        let f = try detectorStack([1, 200, 1475]).view("0")
        let (c, e) = try f.histogram(bins: .count(64))
        let edges = e.doubles(), values = f.doubles()
        var naive = [Double](repeating: 0, count: 64)
        for x in values {
            var i = 0
            while i < 63 && edges[i + 1] <= x { i += 1 }  // [e_i, e_i+1), the last bin closed
            naive[i] += 1
        }
        XCTAssertEqual(c.doubles(), naive)
        XCTAssertEqual(try f.view("::2, ::-1").histogram(bins: .count(64), range: (edges[0], edges[64])).counts.doubles().reduce(0, +),
                       Double(100 * 1475))
    }

    // MARK: matrix products

    func naiveProduct(_ a: [Double], _ b: [Double], _ m: Int, _ k: Int, _ n: Int) -> [Double] {
        var c = [Double](repeating: 0, count: m * n)
        for i in 0..<m { for j in 0..<n { for p in 0..<k { c[i * n + j] += a[i * k + p] * b[p * n + j] } } }
        return c
    }

    func testMatmulAgainstNaiveLoops() throws {
        // OpenBLAS (when installed) and nxlua's own blocked kernel
        defer { NDArray.useOpenBLAS = true }
        for blas in [true, false] {
        NDArray.useOpenBLAS = blas
        // sizes that exercise the blocked kernel's edges: not multiples of 4, of kc or of mc
        for (m, k, n) in [(1, 1, 1), (3, 5, 2), (67, 300, 45), (130, 257, 9), (5, 600, 1), (1, 40, 77)] {
            let a = try NDArray.arange(0, Double(m * k)).reshapedView([m, k])
            let b = try NDArray.arange(0, Double(k * n)).reshapedView([k, n])
            let x = try NDArray.binary(.mod, .array(a), .integer(7)), y = try NDArray.binary(.sub, .array(try NDArray.binary(.mod, .array(b), .integer(5))), .integer(2))
            let expected = naiveProduct(x.doubles(), y.doubles(), m, k, n)
            let c = try NDArray.matmul(x, y)
            XCTAssertEqual(c.shape, [m, n])
            XCTAssertEqual(c.doubles(), expected, "\(m)x\(k) @ \(k)x\(n)")
            let ci = try NDArray.matmul(try x.copy(as: .int32), try y.copy(as: .int16))
            XCTAssertEqual(ci.dtype, .int32)
            XCTAssertEqual(ci.doubles(), expected)
            let cf = try NDArray.matmul(try x.copy(as: .float32), try y.copy(as: .float32))
            XCTAssertEqual(cf.dtype, .float32)
            XCTAssertEqual(cf.doubles(), expected, "small integers are exact in float32 too")
        }
        }
    }

    func testProductShapesAndDtypes() throws {
        let a = try NDArray.arange(0, 6).reshapedView([2, 3])
        let v = try NDArray.from([1, 2, 3], shape: [3])
        XCTAssertEqual(try NDArray.matmul(a, v).doubles(), [8, 26])
        XCTAssertEqual(try NDArray.matmul(try NDArray.from([1, 1], shape: [2]), a).doubles(), [3, 5, 7])
        XCTAssertEqual(try NDArray.dot(v, v).shape, [])
        XCTAssertEqual(try NDArray.dot(v, v).value(at: []), 14)
        // strided views: [[3, 4, 5], [0, 1, 2]] @ [[2, 1], [0, 5], [4, 3]]
        XCTAssertEqual(try NDArray.matmul(try a.view("::-1, :"), try a.view(":, ::-1").copy().reshapedView([3, 2])).doubles(),
                       [26, 38, 8, 11])
        let bools = try NDArray.from([1, 0, 0, 1], shape: [2, 2], dtype: .bool)
        let bb = try NDArray.matmul(bools, bools)
        XCTAssertEqual(bb.dtype, .bool)
        XCTAssertEqual(bb.doubles(), [1, 0, 0, 1])
        // 256 and 300 true products: still true (a uint8 sum would wrap to 0)
        for k in [256, 300] {
            let t = try NDArray.full([2, k], 1, dtype: .bool), u = try NDArray.full([k, 3], 1, dtype: .bool)
            XCTAssertEqual(try NDArray.matmul(t, u).doubles(), [1, 1, 1, 1, 1, 1], "k = \(k)")
            XCTAssertEqual(try NDArray.matmul(t, try NDArray.full([k], 1, dtype: .bool)).doubles(), [1, 1])
            XCTAssertEqual(try NDArray.dot(try NDArray.full([k], 1, dtype: .bool), try NDArray.full([k], 1, dtype: .bool)).value(at: []), 1)
        }
        XCTAssertEqual(try NDArray.matmul(try v.copy(as: .uint64), try v.copy(as: .int64)).dtype, .float64)
        XCTAssertEqual(try NDArray.matmul(try v.copy(as: .int8), try v.copy(as: .int8)).dtype, .int8)
        XCTAssertThrowsError(try NDArray.matmul(a, a)) {
            XCTAssertEqual("\($0)", "matmul: shapes (2, 3) and (2, 3) not aligned: 3 (dim 1) != 2 (dim 0)")
        }
        XCTAssertThrowsError(try NDArray.matmul(try NDArray.full([], 2), v)) {
            XCTAssertTrue("\($0)".contains("0-d array"))
        }
        XCTAssertEqual(try NDArray.dot(try NDArray.full([], 2), v).doubles(), [2, 4, 6])
        XCTAssertEqual(try NDArray.matmul(try NDArray(zeros: [0, 3], dtype: .float64), try NDArray(zeros: [3, 2], dtype: .float64)).shape, [0, 2])
        XCTAssertEqual(try NDArray.matmul(try NDArray(zeros: [2, 0], dtype: .float64), try NDArray(zeros: [0, 2], dtype: .float64)).doubles(), [0, 0, 0, 0])
    }
}
