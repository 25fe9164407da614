import LuaBridge
import NDArray

/// Lua bindings of statistics, histograms, running sums, matrix products and the sums of
/// valid detector pixels (thin: the work is in NDArray's Statistics, Histogram,
/// Cumulative, Products and Reduce).
extension ArrayModule {
    // MARK: argument helpers

    /// One axis or none (argmin, cumsum, ...): `what` names the function in errors.
    static func singleAxis(_ call: LuaCall, _ i: Int32, _ what: String) throws -> Int? {
        if call.isNoneOrNil(i) { return nil }
        if call.type(i) == .table {
            let axes = try integers(call, i, "axis")
            guard axes.count == 1 else {
                throw LuaError.argument(i, "\(what) takes one axis (an integer) or none, got \(axes.count) axes")
            }
            return axes[0]
        }
        return try call.integer(i)
    }

    /// An ndarray argument (the second operand of a product, weights).
    static func arrayArgument(_ call: LuaCall, _ i: Int32) throws -> NDArray {
        if let a = cls.object(at: i, in: call.lua) { return a.array }
        if cls.isClosed(at: i, in: call.lua) { throw LuaError.runtime("attempt to use a closed ndarray") }
        throw call.typeError(i, expected: "ndarray")
    }

    /// A flat Lua table of numbers at stack index t (argument `arg` in errors).
    static func numbers(_ lua: Lua, _ t: Int32, arg: Int32, _ what: String) throws -> [Double] {
        let t = lua.absIndex(t)
        var out: [Double] = []
        for k in stride(from: 1, through: lua.rawLength(at: t), by: 1) {
            lua.rawGet(at: t, index: k)
            defer { lua.pop() }
            guard lua.type(at: -1) == .number, let x = lua.toNumber(at: -1) else {
                throw LuaError.argument(arg, "\(what) must hold numbers, entry \(k) is a \(lua.typeName(at: -1))")
            }
            out.append(x)
        }
        return out
    }

    /// The bins of a histogram: an integer (equal widths), an ndarray or a table of edges.
    static func histogramBins(_ call: LuaCall, _ i: Int32) throws -> HistogramBins {
        let lua = call.lua
        switch lua.type(at: i) {
        case .number:
            guard let n = lua.toInteger(at: i) else { throw LuaError.argument(i, "bins must be an integer, got \(lua.toNumber(at: i)!)") }
            return .count(n)
        case .table:
            return .edges(try numbers(lua, i, arg: i, "bin edges"))
        default:
            if let e = cls.object(at: i, in: lua) {
                guard e.array.ndim == 1 else {
                    throw LuaError.argument(i, "bin edges must be 1-D, got shape \(NDArray.describe(e.array.shape))")
                }
                return .edges(e.array.doubles())
            }
            throw call.typeError(i, expected: "bins (integer, ndarray or table of edges)")
        }
    }

    /// histogram(a, bins [, {range = {lo, hi}, weights = w, density = true}]) with a at `first`.
    static func histogram(_ call: LuaCall, _ a: NDArray, first: Int32) throws -> Int32 {
        let lua = call.lua
        let bins = try histogramBins(call, first + 1)
        let o = first + 2
        var range: (Double, Double)? = nil
        var weights: NDArray? = nil
        var density = false
        if !call.isNoneOrNil(o) {
            try call.options(o, known: ["range", "weights", "density"])
            switch lua.rawGet(at: o, key: "range") {
            case .nil: break
            case .table:
                let r = try numbers(lua, -1, arg: o, "range")
                guard r.count == 2 else { lua.pop(); throw LuaError.argument(o, "range must be {lo, hi}, got \(r.count) numbers") }
                range = (r[0], r[1])
            default:
                let t = lua.typeName(at: -1)
                lua.pop()
                throw LuaError.argument(o, "range must be a table {lo, hi}, got \(t)")
            }
            lua.pop()
            if lua.rawGet(at: o, key: "weights") != .nil {
                defer { lua.pop() }
                guard let w = cls.object(at: -1, in: lua) else {
                    throw LuaError.argument(o, "weights must be an ndarray, got \(lua.typeName(at: -1))")
                }
                weights = w.array
            } else {
                lua.pop()
            }
            lua.rawGet(at: o, key: "density")
            density = lua.toBoolean(at: -1)
            lua.pop()
        }
        let (counts, edges) = try wrap { try a.histogram(bins: bins, range: range, weights: weights, density: density) }
        try push(counts, lua, scalarIfZeroD: false)
        try push(edges, lua, scalarIfZeroD: false)
        return 2
    }

    static func argMethod(_ op: ArgReduction, _ summary: String) -> LuaMethodDecl<ArrayBox> {
        LuaMethodDecl(op.rawValue, "a:\(op.rawValue)([axis [, keepdims]]) -> integer|array", summary,
                      help: "Indices are 0-based; without an axis, the flat index in C order (a:reshape(-1)[i]).") { call, box in
            let axis = try singleAxis(call, 2, op.rawValue)
            let r = try wrap { try box.array.argReduce(op, axis: axis, keepdims: call.boolean(3)) }
            try push(r, call.lua)
            return 1
        }
    }

    static func spreadMethod(_ name: String, _ summary: String, nan: Bool, root: Bool) -> LuaMethodDecl<ArrayBox> {
        LuaMethodDecl(name, "a:\(name)([axis [, keepdims [, ddof]]]) -> number|array", summary,
                      help: """
                      In float64, by two passes (the mean first, then the squared deviations from it), so data
                      far from zero such as 1e8 + noise keep their digits. Divides by N - ddof (ddof 0 by
                      default: the population value; ddof = 1 for the sample estimate).
                      """) { call, box in
            let axes = try ArrayModule.axes(call, 2)
            let ddof = try call.optNumber(4) ?? 0
            let a = box.array, keep = call.boolean(3)
            let r = try wrap {
                root ? try a.standardDeviation(axes: axes, keepdims: keep, ddof: ddof, skippingNaN: nan)
                     : try a.variance(axes: axes, keepdims: keep, ddof: ddof, skippingNaN: nan)
            }
            try push(r, call.lua)
            return 1
        }
    }

    static func axesMethod(_ name: String, _ signature: String, _ summary: String, help: String = "",
                           _ f: @escaping @Sendable (NDArray, [Int]?, Bool) throws -> NDArray) -> LuaMethodDecl<ArrayBox> {
        LuaMethodDecl(name, signature, summary, help: help) { call, box in
            let axes = try ArrayModule.axes(call, 2)
            let r = try wrap { try f(box.array, axes, call.boolean(3)) }
            try push(r, call.lua)
            return 1
        }
    }

    static func reductionMethod(_ op: Reduction, _ signature: String, _ summary: String, help: String = "") -> LuaMethodDecl<ArrayBox> {
        LuaMethodDecl(op.rawValue, signature, summary, help: help) { call, box in try reduction(call, box, op) }
    }

    static func accumulateMethod(_ op: Accumulation, _ summary: String) -> LuaMethodDecl<ArrayBox> {
        LuaMethodDecl(op.rawValue, "a:\(op.rawValue)([axis]) -> array", summary,
                      help: "Without an axis, of the flattened array (C order). Integers accumulate in int64 (uint64 for unsigned), floats keep their dtype.") { call, box in
            let axis = try singleAxis(call, 2, op.rawValue)
            let r = try wrap { try box.array.accumulate(op, axis: axis) }
            try push(r, call.lua, scalarIfZeroD: false)
            return 1
        }
    }

    static let productHelp = """
        1-D and 2-D arrays: vector . vector (a number), matrix @ vector, vector @ matrix,
        matrix @ matrix. The dtype is the promotion of both (int32 with float32 gives float64);
        integers wrap as NumPy's do. Shapes must align: (m, k) with (k, n).
        """

    // MARK: declarations

    static var statisticsMethods: [LuaMethodDecl<ArrayBox>] {
        [
            argMethod(.argmin, "index of the smallest element (the first one; NaN counts as smallest)"),
            argMethod(.argmax, "index of the largest element (the first one; NaN counts as largest)"),
            argMethod(.nanargmin, "index of the smallest element, NaN skipped (error on an all-NaN slice)"),
            argMethod(.nanargmax, "index of the largest element, NaN skipped (error on an all-NaN slice)"),
            spreadMethod("var", "variance over axes, in float64", nan: false, root: false),
            spreadMethod("std", "standard deviation over axes, in float64", nan: false, root: true),
            spreadMethod("nanvar", "variance over axes with NaN left out (NaN for an all-NaN slice)", nan: true, root: false),
            spreadMethod("nanstd", "standard deviation over axes with NaN left out", nan: true, root: true),
            reductionMethod(.countNonzero, "a:count_nonzero([axis [, keepdims]]) -> integer|array",
                            "how many elements are not zero (NaN counts), int64"),
            axesMethod("any", "a:any([axis [, keepdims]]) -> boolean|array",
                       "whether any element is not zero (false for empty)") { try $0.any(axes: $1, keepdims: $2) },
            axesMethod("all", "a:all([axis [, keepdims]]) -> boolean|array",
                       "whether every element is not zero (true for empty)") { try $0.all(axes: $1, keepdims: $2) },
            reductionMethod(.nansum, "a:nansum([axis [, keepdims]]) -> number|array", "sum with NaN left out (0 for all-NaN)"),
            reductionMethod(.nanmin, "a:nanmin([axis [, keepdims]]) -> number|array", "minimum with NaN left out (NaN for all-NaN)"),
            reductionMethod(.nanmax, "a:nanmax([axis [, keepdims]]) -> number|array", "maximum with NaN left out (NaN for all-NaN)"),
            axesMethod("nanmean", "a:nanmean([axis [, keepdims]]) -> number|array",
                       "mean with NaN left out (NaN for all-NaN), float64") { try $0.nanmean(axes: $1, keepdims: $2) },
            accumulateMethod(.cumsum, "running sum along an axis"),
            accumulateMethod(.cumprod, "running product along an axis"),
            reductionMethod(.sumValid, "a:sum_valid([axis [, keepdims]]) -> number|array",
                            "detector data: sum of the valid pixels (>= 0), int64 for integers",
                            help: """
                            Pilatus and Eiger frames mark gap pixels -1 and dead pixels -2; sum_valid leaves every
                            negative element (and NaN) out, in one pass, at the speed of a plain sum. Unsigned
                            arrays have no negative elements: sum_valid is their sum. Example:
                              local image = stack:sum_valid(0)       -- (100, 1679, 1475) int32 -> (1679, 1475) int64
                            """),
            reductionMethod(.countValid, "a:count_valid([axis [, keepdims]]) -> integer|array",
                            "detector data: how many pixels are valid (>= 0), int64"),
            axesMethod("mean_valid", "a:mean_valid([axis [, keepdims]]) -> number|array",
                       "detector data: mean of the valid pixels (>= 0), NaN where none is valid",
                       help: "sum_valid / count_valid in float64 (float32 stays float32).") { try $0.meanValid(axes: $1, keepdims: $2) },
            LuaMethodDecl("histogram", "a:histogram(bins [, {range = {lo, hi}, weights = w, density = false}]) -> counts, edges",
                          "histogram of all elements, as array.histogram(a, ...)") { call, box in
                try histogram(call, box.array, first: 1)
            },
            LuaMethodDecl("dot", "a:dot(b) -> number|array", "matrix product of 1-D/2-D arrays (0-d: elementwise *)",
                          help: productHelp) { call, box in
                let b = try arrayArgument(call, 2)
                try push(try wrap { try NDArray.dot(box.array, b) }, call.lua)
                return 1
            },
            LuaMethodDecl("matmul", "a:matmul(b) -> number|array", "matrix product a @ b of 1-D/2-D arrays",
                          help: productHelp) { call, box in
                let b = try arrayArgument(call, 2)
                try push(try wrap { try NDArray.matmul(box.array, b) }, call.lua)
                return 1
            },
        ]
    }

    static var statisticsFunctions: [LuaFunctionDecl] {
        [
            LuaFunctionDecl("histogram", "array.histogram(a, bins [, {range = {lo, hi}, weights = w, density = false}]) -> counts, edges",
                            "histogram of all elements, as numpy.histogram",
                            help: """
                            bins: an integer (that many bins of equal width over range, by default the data's
                            min to max) or an ndarray/table of increasing edges. Every bin is [lo, hi) but the
                            last, which holds its right edge too. Values outside the edges and NaN are not counted
                            (with no range given, NaN in the data is an error: give a range). counts is int64
                            (float64 sums of weights with weights, float64 densities with density = true);
                            edges is float64 with one more element than counts. Example:
                              local counts, edges = array.histogram(frame, 100, {range = {0, 1000}})
                            """) { call in
                try histogram(call, try arrayArgument(call, 1), first: 1)
            },
            LuaFunctionDecl("dot", "array.dot(a, b) -> number|array", "matrix product of 1-D/2-D arrays (0-d: elementwise *)",
                            help: productHelp) { call in
                let a = try arrayArgument(call, 1), b = try arrayArgument(call, 2)
                try push(try wrap { try NDArray.dot(a, b) }, call.lua)
                return 1
            },
            LuaFunctionDecl("matmul", "array.matmul(a, b) -> number|array", "matrix product a @ b of 1-D/2-D arrays",
                            help: productHelp) { call in
                let a = try arrayArgument(call, 1), b = try arrayArgument(call, 2)
                try push(try wrap { try NDArray.matmul(a, b) }, call.lua)
                return 1
            },
        ]
    }
}
