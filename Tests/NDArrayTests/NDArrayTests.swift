import XCTest
@testable import NDArray

final class DTypeTests: XCTestCase {
    func testPromotionFollowsNumPy() {
        XCTAssertEqual(DType.promote(.int32, .float32), .float64)
        XCTAssertEqual(DType.promote(.int16, .float32), .float32)
        XCTAssertEqual(DType.promote(.uint8, .int8), .int16)
        XCTAssertEqual(DType.promote(.uint32, .int32), .int64)
        XCTAssertEqual(DType.promote(.uint64, .int64), .float64)
        XCTAssertEqual(DType.promote(.bool, .uint16), .uint16)
        XCTAssertEqual(DType.promote(.int64, .int8), .int64)
        XCTAssertEqual(DType.int32.accumulator, .int64)
        XCTAssertEqual(DType.uint16.accumulator, .uint64)
        XCTAssertEqual(DType(name: "f8"), .float64)
        XCTAssertNil(DType(name: "complex128"))
    }
}

final class SelectionTests: XCTestCase {
    func testParsing() throws {
        XCTAssertEqual(try Selection(parsing: "0:50, 100:200, ::2").items,
                       [.range(.int(0), .int(50), nil), .range(.int(100), .int(200), nil), .range(nil, nil, 2)])
        XCTAssertEqual(try Selection(parsing: "-1, ...").items, [.index(.int(-1)), .ellipsis])
        XCTAssertEqual(try Selection(parsing: "1.5:2.5").items, [.range(.float(1.5), .float(2.5), nil)])
        XCTAssertEqual(try Selection(parsing: "").items, [])
        XCTAssertThrowsError(try Selection(parsing: "1:2:0")) { XCTAssertTrue("\($0)".contains("step cannot be zero")) }
        XCTAssertThrowsError(try Selection(parsing: "a:3")) { XCTAssertTrue("\($0)".contains("bad index 'a'")) }
        XCTAssertThrowsError(try Selection(parsing: "..., ...")) { XCTAssertTrue("\($0)".contains("more than one")) }
        XCTAssertThrowsError(try Selection(parsing: "1,,2")) { XCTAssertTrue("\($0)".contains("empty index")) }
    }

    func testResolveMatchesPythonSlices() throws {
        // against Python: range(10)[a:b:c]
        func r(_ s: String, _ n: Int = 10) throws -> [Int] {
            let a = try Selection(parsing: s).resolve(shape: [n])[0]
            return (0..<a.count).map { a.start + $0 * a.step }
        }
        XCTAssertEqual(try r("2:5"), [2, 3, 4])
        XCTAssertEqual(try r("::3"), [0, 3, 6, 9])
        XCTAssertEqual(try r("-3:"), [7, 8, 9])
        XCTAssertEqual(try r("::-1"), [9, 8, 7, 6, 5, 4, 3, 2, 1, 0])
        XCTAssertEqual(try r("8:2:-2"), [8, 6, 4])
        XCTAssertEqual(try r("-1:-4:-1"), [9, 8, 7])
        XCTAssertEqual(try r("5:100"), [5, 6, 7, 8, 9])
        XCTAssertEqual(try r("7:3"), [])
        XCTAssertEqual(try r("-100:2"), [0, 1])
        XCTAssertThrowsError(try Selection(parsing: "10").resolve(shape: [10])) {
            XCTAssertEqual("\($0)", "index 10 is out of bounds for axis 0 with size 10")
        }
        XCTAssertThrowsError(try Selection(parsing: "0,0,0").resolve(shape: [2, 2])) {
            XCTAssertEqual("\($0)", "too many indices: 3 for shape (2, 2)")
        }
        XCTAssertThrowsError(try Selection(parsing: "1.5").resolve(shape: [3])) {
            XCTAssertTrue("\($0)".contains("arrays are indexed by position"))
        }
    }
}

final class ArrayTests: XCTestCase {
    func grid(_ shape: [Int], _ dtype: DType = .int32) throws -> NDArray {
        try NDArray.arange(0, Double(shape.reduce(1, *)), dtype: dtype).reshapedView(shape)
    }

    func testViewsShareStorageAndIndex() throws {
        let a = try grid([3, 4])
        let row = try a.view("1")
        XCTAssertEqual(row.shape, [4])
        XCTAssertEqual(row.doubles(), [4, 5, 6, 7])
        let col = try a.view(":, -1")
        XCTAssertEqual(col.doubles(), [3, 7, 11])
        let rev = try a.view("::-1, ::2")
        XCTAssertEqual(rev.shape, [3, 2])
        XCTAssertEqual(rev.doubles(), [8, 10, 4, 6, 0, 2])
        try row.setValue(-1, at: [0])
        XCTAssertEqual(try a.value(at: [1, 0]), -1, "a view writes through to its base")
        XCTAssertEqual(try a.view("..., 0").doubles(), [0, -1, 8])
        XCTAssertThrowsError(try a.value(at: [3, 0])) {
            XCTAssertEqual("\($0)", "index 3 is out of bounds for axis 0 with size 3")
        }
    }

    func testCopyAndAstype() throws {
        let a = try NDArray.from([1.7, -1.7, 300, .nan], shape: [4])
        XCTAssertEqual(try a.copy(as: .int32).doubles(), [1, -1, 300, 0])
        XCTAssertEqual(try a.copy(as: .uint8).doubles(), [1, 0, 255, 0])
        let t = try grid([2, 3]).view("::-1, :")
        let c = try t.contiguous()
        XCTAssertTrue(c.isContiguous)
        XCTAssertEqual(c.doubles(), [3, 4, 5, 0, 1, 2])
    }

    func testBroadcasting() throws {
        XCTAssertEqual(try NDArray.broadcastShape([3, 1], [4]), [3, 4])
        XCTAssertEqual(try NDArray.broadcastShape([], [2, 2]), [2, 2])
        XCTAssertThrowsError(try NDArray.broadcastShape([3], [4])) {
            XCTAssertEqual("\($0)", "operands could not be broadcast together with shapes (3,) (4,)")
        }
    }

    func testSumsAccumulateInInt64() throws {
        let a = try NDArray.full([3, 4, 5], Double(Int32.max), dtype: .int32)
        let s = try a.sum()
        XCTAssertEqual(s.dtype, .int64)
        XCTAssertEqual(try s.integer(at: []), Int64(Int32.max) * 60, "no wrap-around")
        let g = try grid([2, 3, 4])
        XCTAssertEqual(try g.sum(axes: [0]).doubles(), (0..<12).map { Double($0 + $0 + 12) })
        XCTAssertEqual(try g.sum(axes: [1, 2]).doubles(), [66, 210])
        XCTAssertEqual(try g.sum(axes: [-1]).shape, [2, 3])
        XCTAssertEqual(try g.sum(axes: [1], keepdims: true).shape, [2, 1, 4])
        XCTAssertEqual(try g.reduce(.max, axes: [2]).doubles(), [3, 7, 11, 15, 19, 23])
        XCTAssertEqual(try g.reduce(.min, axes: [0, 2]).doubles(), [0, 4, 8])
        XCTAssertEqual(try g.mean(axes: [0]).dtype, .float64)
        XCTAssertEqual(try g.mean().value(at: []), 11.5)
        XCTAssertThrowsError(try g.sum(axes: [3])) {
            XCTAssertEqual("\($0)", "axis 3 is out of bounds for array of dimension 3")
        }
        // on a strided view, and large enough to run on several threads
        let big = try grid([64, 80, 100])
        let v = try big.view("::2, 1:, ::-1")
        let total = v.doubles().reduce(0, +)
        XCTAssertEqual(try v.sum().value(at: []), total)
        XCTAssertEqual(try big.sum(axes: [0]).doubles().reduce(0, +), big.doubles().reduce(0, +))
        // a full reduction of 512,000 elements: per-thread partial results, then combined
        XCTAssertEqual(try big.sum().integer(at: []), Int64(511_999 * 512_000 / 2))
        XCTAssertEqual(try big.reduce(.max).integer(at: []), 511_999)
        XCTAssertEqual(try big.reduce(.min, axes: [0, 1, 2]).integer(at: []), 0)
    }

    func testLeadingAxisFastPathMatchesNaiveSums() throws {
        // 7 frames (not a multiple of 4), 50,000 pixels (several column blocks, 2 threads)
        let a = try NDArray(zeros: [7, 50, 1000], dtype: .int32)
        let p = a.base(Int32.self)
        for i in 0..<a.count { p[i] = Int32(truncatingIfNeeded: (i &* 2654435761) >> 7) }
        let m = 50 * 1000
        let s = try a.sum(axes: [0]), mx = try a.reduce(.max, axes: [0]), mn = try a.reduce(.min, axes: [0])
        for j in stride(from: 0, to: m, by: 997) {
            let column = (0..<7).map { Int64(p[$0 * m + j]) }
            XCTAssertEqual(try s.integer(at: [j / 1000, j % 1000]), column.reduce(0, +))
            XCTAssertEqual(try mx.integer(at: [j / 1000, j % 1000]), column.max())
            XCTAssertEqual(try mn.integer(at: [j / 1000, j % 1000]), column.min())
        }
    }

    /// Sums and counts down the frames of int32 stacks (eight and four frames per pass,
    /// then one by one) equal naive int64 sums, with int32 extremes in every frame.
    func testLeadingAxisSumsOfInt32FramesAreExact() throws {
        let terms: [(Reduction, (Int64) -> Int64)] = [
            (.sum, { $0 }), (.sumValid, { $0 >= 0 ? $0 : 0 }), (.countValid, { $0 >= 0 ? 1 : 0 }),
            (.countNonzero, { $0 != 0 ? 1 : 0 }),
        ]
        let m = 1003  // not a multiple of 8: a scalar tail per pass
        for frames in [1, 3, 4, 8, 9, 12, 13, 17, 20] {
            let a = try NDArray(zeros: [frames, 17, 59], dtype: .int32)
            let p = a.base(Int32.self)
            for i in 0..<a.count {
                let r = Int32(truncatingIfNeeded: (i &* 2654435761) >> 5)
                p[i] = i % 11 == 0 ? .min : i % 13 == 0 ? .max : i % 7 == 0 ? 0 : r
            }
            for (op, term) in terms {
                let r = try a.reduce(op, axes: [0])
                for j in 0..<m {
                    let expected = (0..<frames).reduce(Int64(0)) { $0 + term(Int64(p[$1 * m + j])) }
                    XCTAssertEqual(try r.integer(at: [j / 59, j % 59]), expected, "\(op), \(frames) frames, pixel \(j)")
                }
            }
        }
    }

    /// Sums and counts over trailing axes (per-frame sums, full sums) equal naive int64
    /// sums: several shapes and dtypes, results cut into pieces (a lowered block), views
    /// that take the general row path, a running result, and int32 extremes over more
    /// elements than the kernel's int32 lanes hold between two folds.
    func testTrailingAxisSumsMatchNaiveSums() throws {
        defer { Interruption.block = 1 << 20 }
        func naive(_ a: NDArray, _ axes: [Int], _ term: (Int64) -> Int64) -> [Int64] {
            let v = a.doubles().map { term(Int64($0)) }
            let inner = axes.reduce(1) { $0 * a.shape[$1] }
            return stride(from: 0, to: v.count, by: max(1, inner)).map { v[$0..<min(v.count, $0 + inner)].reduce(0, +) }
        }
        let terms: [(Reduction, (Int64) -> Int64)] = [
            (.sum, { $0 }), (.sumValid, { $0 >= 0 ? $0 : 0 }), (.countValid, { $0 >= 0 ? 1 : 0 }),
            (.countNonzero, { $0 != 0 ? 1 : 0 }),
        ]
        let cases: [([Int], [Int])] = [([5, 7, 300], [1, 2]), ([3, 1000], [1]), ([2, 3, 4, 50], [2, 3]),
                                       ([4001], [0]), ([6, 50, 41], [0, 1, 2]), ([1, 70_001], [1])]
        for dtype in [DType.int32, .int16, .uint8, .uint16, .int64, .uint32] {
            let signed = dtype.isSignedInteger
            for (shape, axes) in cases {
                let n = shape.reduce(1, *)
                let values = (0..<n).map { i -> Double in
                    let r = Double((i &* 2654435761) >> 9 & 0x7FFF)
                    return i % 7 == 0 ? 0 : signed && i % 5 == 0 ? -r : r
                }
                let a = try NDArray.from(values, shape: shape, dtype: dtype)
                for block in [1 << 20, 1000, 37] {
                    Interruption.block = block
                    for (op, term) in terms {
                        let r = try a.reduce(op, axes: axes)
                        XCTAssertEqual(r.dtype.isFloat, false)
                        XCTAssertEqual(r.doubles().map { Int64($0) }, naive(a, axes, term),
                                       "\(op) of \(dtype) \(shape) over \(axes), block \(block)")
                    }
                }
                Interruption.block = 1 << 20
                // a running result: folded into twice, it holds twice the sums
                let whole = try a.reduce(.sum, axes: axes, keepdims: true)
                let running = try NDArray(zeros: whole.shape, dtype: whole.dtype)
                try a.reduce(.sum, axes: axes, accumulatingInto: running)
                try a.reduce(.sum, axes: axes, accumulatingInto: running)
                XCTAssertEqual(running.doubles(), whole.doubles().map { 2 * $0 }, "running \(dtype) \(shape)")
            }
        }
        // views: reversed rows, a cut last axis, every other frame (the general row path)
        let pattern = (0..<(6 * 40 * 300)).map { (i: Int) -> Double in Double((i &* 40503) % 20001) - 10000 }
        let base = try NDArray.from(pattern, shape: [6, 40, 300], dtype: .int32)
        for text in ["::2, :, ::-1", ":, 1:, 3:", "1:5, ::3, :", ":, :, ::7"] {
            let v = try base.view(Selection(parsing: text))
            for (op, term) in terms {
                XCTAssertEqual(try v.reduce(op, axes: [1, 2]).doubles().map { Int64($0) }, naive(v, [1, 2], term), "\(op) of [\(text)]")
                XCTAssertEqual(try v.reduce(op).integer(at: []), naive(v, [0, 1, 2], term)[0], "\(op) of [\(text)], all")
            }
        }
        // int32 extremes: 3 folds and a tail per piece, exact in int64
        let n = 3 * (16 << 15) + 37
        for value in [Int32.min, Int32.max, -1] {
            let a = try NDArray.full([2, n], Double(value), dtype: .int32)
            XCTAssertEqual(try a.sum(axes: [1]).doubles().map { Int64($0) }, [Int64(n) * Int64(value), Int64(n) * Int64(value)])
            XCTAssertEqual(try a.sum().integer(at: []), 2 * Int64(n) * Int64(value))
            XCTAssertEqual(try a.reduce(.countValid, axes: [1]).integer(at: [0]), value >= 0 ? Int64(n) : 0)
        }
        let mixed = try NDArray(zeros: [n], dtype: .int32)
        let p = mixed.base(Int32.self)
        var expected: Int64 = 0
        for i in 0..<n {
            p[i] = i % 3 == 0 ? Int32.min : i % 3 == 1 ? Int32.max : Int32(truncatingIfNeeded: i &* 2654435761)
            expected += Int64(p[i])
        }
        XCTAssertEqual(try mixed.sum().integer(at: []), expected)
        XCTAssertEqual(try mixed.view(Selection(parsing: "1:")).sum().integer(at: []), expected - Int64(Int32.min))
        // a stop request ends the pieces early (the caller raises; the result is unfinished)
        // (pieces of a million elements: one per thread before the first poll)
        let stack = try NDArray.ones([8, 1024, 1024], dtype: .int32)
        let (frames, all) = try Interruption.withPoll({ true }) { (try stack.sum(axes: [1, 2]), try stack.sum()) }
        XCTAssertLessThan(try frames.sum().integer(at: []), Int64(8 << 20) / 2, "per-frame sums ran to the end")
        XCTAssertLessThan(try all.integer(at: []), Int64(8 << 20) / 2, "the full sum ran to the end")
    }

    func testMinMaxPropagateNaN() throws {
        let a = try NDArray.from([1, .nan, 3], shape: [3])
        XCTAssertTrue(try a.reduce(.max).value(at: []).isNaN)
        XCTAssertThrowsError(try NDArray(zeros: [0], dtype: .float64).reduce(.max)) {
            XCTAssertTrue("\($0)".contains("zero-size array"))
        }
    }
}

final class FormatTests: XCTestCase {
    func testLooksLikeNumPy() throws {
        let a = try NDArray.arange(0, 6, dtype: .int32).reshapedView([2, 3])
        XCTAssertEqual(a.formatted(), "array([[0, 1, 2],\n       [3, 4, 5]], dtype=int32)")
        XCTAssertEqual(try NDArray.from([0.5, 2, .nan], shape: [3]).formatted(), "array([0.5, 2. , nan])")
        XCTAssertEqual(try NDArray.arange(0, 2000, dtype: .int64).formatted(), "array([   0,    1,    2, ..., 1997, 1998, 1999])")
        XCTAssertEqual(try NDArray(zeros: [0], dtype: .float64).formatted(), "array([], dtype=float64)")
        XCTAssertEqual(try NDArray.full([], 3, dtype: .int16).formatted(), "array(3, dtype=int16)")
    }
}

final class ElementwiseTests: XCTestCase {
    func arr(_ v: [Double], _ t: DType = .int64) throws -> NDArray { try NDArray.from(v, shape: [v.count], dtype: t) }

    func testPythonDivisionRules() throws {
        let a = try arr([-7, 7, -7, 7]), b = try arr([2, 2, -2, 0])
        XCTAssertEqual(try NDArray.binary(.floordiv, .array(a), .array(b)).doubles(), [-4, 3, 3, 0])
        XCTAssertEqual(try NDArray.binary(.mod, .array(a), .array(b)).doubles(), [1, 1, -1, 0])
        XCTAssertEqual(try NDArray.binary(.div, .array(a), .array(b)).dtype, .float64)
        let f = try arr([-7.5, 7.5], .float64)
        XCTAssertEqual(try NDArray.binary(.mod, .array(f), .integer(2)).doubles(), [0.5, 1.5])
    }

    func testWeakScalarsKeepTheArrayType() throws {
        let a = try arr([1, 2], .int32)
        XCTAssertEqual(try NDArray.binary(.mul, .array(a), .integer(2)).dtype, .int32)
        XCTAssertEqual(try NDArray.binary(.mul, .array(a), .float(2.5)).dtype, .float64)
        let f = try arr([1, 2], .float32)
        XCTAssertEqual(try NDArray.binary(.add, .array(f), .float(1.5)).dtype, .float32)
        XCTAssertEqual(try NDArray.binary(.add, .array(a), .array(f)).dtype, .float64)
    }

    func testBroadcastingAndComparisons() throws {
        let col = try NDArray.arange(0, 3, dtype: .int64).reshapedView([3, 1])
        let row = try NDArray.arange(0, 4, dtype: .int64)
        let s = try NDArray.binary(.add, .array(col), .array(row))
        XCTAssertEqual(s.shape, [3, 4])
        XCTAssertEqual(s.doubles(), [0, 1, 2, 3, 1, 2, 3, 4, 2, 3, 4, 5])
        let g = try NDArray.binary(.gt, .array(s), .integer(2))
        XCTAssertEqual(g.dtype, .bool)
        XCTAssertEqual(try g.sum().integer(at: []), 6)
        // strided operands (a reversed view) take the general loop
        let r = try NDArray.binary(.sub, .array(try s.view("::-1, ::2")), .integer(1))
        XCTAssertEqual(r.doubles(), [1, 3, 0, 2, -1, 1])
        XCTAssertThrowsError(try NDArray.binary(.add, .array(row), .array(try arr([1, 2, 3])))) {
            XCTAssertEqual("\($0)", "operands could not be broadcast together with shapes (4,) (3,)")
        }
    }

    func testLargeOperationsSplitAcrossThreadsGiveTheSameResult() throws {
        let x = try NDArray.linspace(0, 1, 1_000_001)
        let y = try NDArray.binary(.add, .array(try NDArray.binary(.mul, .array(x), .integer(2))),
                                   .integer(1))
        XCTAssertEqual(try y.value(at: [0]), 1)
        XCTAssertEqual(try y.value(at: [1_000_000]), 3)
        XCTAssertEqual(try y.value(at: [500_000]), 2, accuracy: 1e-12)
    }

    func testLargeIntegersStayExact() throws {
        let big: Int64 = (1 << 62) + 1  // not representable as a Double
        let a = try NDArray(zeros: [2], dtype: .int64)
        try a.fill(.integer(big))
        XCTAssertEqual(try a.integer(at: [1]), big)
        XCTAssertEqual(try NDArray.binary(.add, .array(a), .integer(1)).integer(at: [0]), big + 1)
        XCTAssertEqual(try NDArray.from([.integer(big)], shape: [1], dtype: .int64).integer(at: [0]), big)
    }

    func testNaNPropagatesThroughMinimumMaximum() throws {
        let a = try arr([1, .nan], .float64), b = try arr([2, 0], .float64)
        let m = try NDArray.binary(.minimum, .array(a), .array(b)).doubles()
        XCTAssertEqual(m[0], 1)
        XCTAssertTrue(m[1].isNaN)
    }
}

final class UnaryTests: XCTestCase {
    func testFunctionsAndDtypes() throws {
        let f = try NDArray.from([-1.5, 0.5, 2.5, 4], shape: [4])
        XCTAssertEqual(try f.apply(.abs).doubles(), [1.5, 0.5, 2.5, 4])
        XCTAssertEqual(try f.apply(.round).doubles(), [-2, 0, 2, 4], "half to even, as NumPy")
        XCTAssertEqual(try f.apply(.floor).doubles(), [-2, 0, 2, 4])
        XCTAssertEqual(try f.apply(.ceil).doubles(), [-1, 1, 3, 4])
        XCTAssertEqual(try f.apply(.log).apply(.isnan).doubles(), [1, 0, 0, 0])
        let i = try NDArray.from([-3, 4], shape: [2], dtype: .int32)
        XCTAssertEqual(try i.apply(.abs).dtype, .int32)
        XCTAssertEqual(try i.apply(.abs).doubles(), [3, 4])
        XCTAssertEqual(try i.apply(.sqrt).dtype, .float64)
        XCTAssertEqual(try i.apply(.isfinite).doubles(), [1, 1])
        let f32 = try NDArray.from([4], shape: [1], dtype: .float32)
        XCTAssertEqual(try f32.apply(.sqrt).dtype, .float32)
    }

    /// A freed large block serves the next array of about its size, not one much smaller,
    /// and the smallest block that fits is taken (a cache of its own, not the shared one).
    func testLargeBlocksAreReusedForArraysOfAboutTheirSize() throws {
        let cache = BlockCache()
        let ten = malloc(10 << 20)!, twelve = malloc(12 << 20)!, thirty = malloc(30 << 20)!
        XCTAssertTrue(cache.keep(thirty, 30 << 20))
        XCTAssertTrue(cache.keep(twelve, 12 << 20))
        XCTAssertTrue(cache.keep(ten, 10 << 20))
        XCTAssertNil(cache.take(4 << 20).map { $0.0 }, "a block more than twice the size wastes too much")
        let six = try XCTUnwrap(cache.take(6 << 20))
        XCTAssertEqual(six.0, ten)
        XCTAssertEqual(six.1, 10 << 20)
        XCTAssertEqual(cache.take(11 << 20)?.0, twelve)
        XCTAssertNil(cache.take(11 << 20).map { $0.0 }, "30 MB for 11 MB")
        XCTAssertEqual(cache.take(15 << 20)?.0, thirty)
        XCTAssertFalse(cache.keep(ten, (1 << 20) - 4096), "small blocks are malloc's")
        free(ten); free(twelve); free(thirty)
        // through arrays: a reused block is zeroed when asked
        var a: NDArray? = try NDArray.ones([5 << 20], dtype: .uint8)
        a = nil
        let b = try NDArray(zeros: [(5 << 20) - 4096], dtype: .uint8)
        XCTAssertEqual(try b.sum().integer(at: []), 0)
        _ = a
    }

    /// `a op= b` with b of another dtype (an int32 frame into an int64 sum, float32 into
    /// float64) converts b a block at a time; the result is the one of the general path
    /// (b converted whole first), on every thread's part and the last partial block.
    func testInPlaceWithAnotherDtypeIsBlockedAndExact() throws {
        let n = (3 << 18) + 12345   // threads, whole blocks and a partial one
        let frame = try NDArray.arange(-500_000, Double(n) - 500_000, dtype: .int32)
        for (op, t) in [(BinaryOp.add, DType.int64), (.maximum, .int64), (.sub, .float64), (.mul, .float64)] {
            let start = try NDArray.binary(.mul, .array(try NDArray.arange(0, Double(n), dtype: t)), .integer(3))
            let blocked = try start.copy(), general = try start.copy()
            try blocked.binaryInPlace(op, .array(frame))                      // the blocked path
            try general.binaryInPlace(op, .array(try frame.copy(as: t)))      // same dtype: no conversion
            XCTAssertEqual(blocked.doubles(), general.doubles(), "\(op) into \(t)")
        }
        // a strided operand or a broadcast one keeps the general path, with the same result
        let wide = try NDArray.arange(0, Double(2 * n), dtype: .int32)
        let strided = try wide.view("::2")
        let a = try NDArray(zeros: [n], dtype: .int64)
        try a.binaryInPlace(.add, .array(strided))
        XCTAssertEqual(try a.integer(at: [n - 1]), Int64(2 * (n - 1)))
    }

    /// Long kernels stop between blocks once the thread's check asks (Ctrl-C, a limit).
    func testKernelsStopWhenInterrupted() throws {
        let n = 8 << 20
        let a = try NDArray(zeros: [n], dtype: .float64)
        let stack = try NDArray.ones([8, 512, 1024], dtype: .int32)
        let (image, rows) = try Interruption.withPoll({ true }) {
            try a.binaryInPlace(.add, .integer(1))
            // the strided path goes in pieces of outer rows
            return (try stack.sum(axes: [0]), try stack.sum(axes: [1]))
        }
        let done = try a.sum().value(at: [])
        XCTAssertGreaterThan(done, 0)
        XCTAssertLessThan(done, Double(n) / 2, "the elementwise kernel ran to the end")
        XCTAssertLessThan(try image.sum().integer(at: []), Int64(8 * 512 * 1024) / 2, "the reduction ran to the end")
        XCTAssertLessThan(try rows.sum().integer(at: []), Int64(8 * 512 * 1024), "the strided reduction ran to the end")
        // other threads, and this one outside the check, run to the end
        XCTAssertEqual(try stack.sum(axes: [0]).sum().integer(at: []), Int64(8 * 512 * 1024))
    }

    /// Folding blocks into a running result gives the reduction of the whole, on the
    /// threaded per-thread-partials path too (a running product must count once).
    func testAccumulatingReductionsEqualTheWhole() throws {
        let n = 4 * 300 * 300
        let whole = try NDArray(zeros: [8, 300, 300], dtype: .float64)
        whole.fill(1)
        for k in stride(from: 0, to: 8 * 300 * 300, by: 97_001) { whole.base(Double.self)[k] = 2 }
        for op in [Reduction.sum, .prod, .min, .max] {
            let first = try whole.view(Selection(parsing: "0:4")), second = try whole.view(Selection(parsing: "4:8"))
            XCTAssertEqual(first.count, n)
            let acc = try first.reduce(op, axes: nil, keepdims: true)
            try second.reduce(op, axes: nil, accumulatingInto: acc)
            XCTAssertEqual(try acc.value(at: [0, 0, 0]), try whole.reduce(op).value(at: []), "\(op)")
            let rows = try first.reduce(op, axes: [0, 1], keepdims: true)
            try second.reduce(op, axes: [0, 1], accumulatingInto: rows)
            XCTAssertEqual(try rows.copy().doubles(), try whole.reduce(op, axes: [0, 1], keepdims: true).copy().doubles(), "\(op)")
        }
    }
}
