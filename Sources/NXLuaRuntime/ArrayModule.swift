import LuaBridge
import NDArray

/// A Lua-visible array: a box around the NDArray value (views share its storage).
final class ArrayBox {
    let array: NDArray
    init(_ array: NDArray) { self.array = array }
}

/// The `array` module and the Array type: thin bindings over the NDArray core.
enum ArrayModule {
    // MARK: argument helpers

    static func fail(_ error: Error) -> LuaError {
        .runtime((error as? ArrayError)?.message ?? "\(error)")
    }

    static func wrap<T>(_ body: () throws -> T) throws -> T {
        do { return try body() } catch let e as LuaError { throw e } catch { throw fail(error) }
    }

    /// An integer or a table of integers (`what` names it in errors).
    static func integers(_ call: LuaCall, _ i: Int32, _ what: String) throws -> [Int] {
        let lua = call.lua
        if lua.type(at: i) == .number { return [try call.integer(i)] }
        guard lua.type(at: i) == .table else { throw call.typeError(i, expected: "\(what) (integer or table)") }
        var out: [Int] = []
        for k in stride(from: 1, through: lua.rawLength(at: i), by: 1) {
            lua.rawGet(at: i, index: k)
            defer { lua.pop() }
            guard let n = lua.toInteger(at: -1) else { throw LuaError.argument(i, "\(what) entries must be integers") }
            out.append(n)
        }
        return out
    }

    /// A shape: an integer or a table of non-negative integers.
    static func shape(_ call: LuaCall, _ i: Int32) throws -> [Int] {
        let dims = try integers(call, i, "shape")
        if let bad = dims.first(where: { $0 < 0 }) {
            throw LuaError.argument(i, "negative dimensions are not allowed, got \(bad)")
        }
        return dims
    }

    static func dtype(_ call: LuaCall, _ i: Int32, default def: DType = .float64) throws -> DType {
        guard let name = try call.optString(i) else { return def }
        guard let d = DType(name: name) else {
            throw LuaError.argument(i, "unknown dtype '\(name)' (expected one of \(DType.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        return d
    }

    /// Axes: nil for all, an integer, or a table of integers (negative count from the end).
    static func axes(_ call: LuaCall, _ i: Int32) throws -> [Int]? {
        call.isNoneOrNil(i) ? nil : try integers(call, i, "axis")
    }

    /// A Lua number or boolean as an exact scalar (Lua integers stay integers).
    static func scalar(_ lua: Lua, _ i: Int32) -> Operand? {
        switch lua.type(at: i) {
        case .number: return lua.isInteger(at: i) ? .integer(Int64(lua.toInteger(at: i)!)) : .float(lua.toNumber(at: i)!)
        case .boolean: return .integer(lua.toBoolean(at: i) ? 1 : 0)
        default: return nil
        }
    }

    /// Pushes an array, or a Lua value for a 0-d result (integers stay integers). New
    /// arrays (not views) are accounted to Lua's collector: otherwise a loop making 80 MB
    /// temporaries grew to 4.7 GB before Lua noticed its 40-byte userdata were garbage.
    static func push(_ a: NDArray, _ lua: Lua, scalarIfZeroD: Bool = true, view: Bool = false) throws {
        if scalarIfZeroD && a.ndim == 0 {
            if a.dtype == .bool { lua.push(try a.value(at: []) != 0) } else if a.dtype.isInteger {
                lua.push(Int(try a.integer(at: [])))
            } else { lua.push(try a.value(at: [])) }
            return
        }
        if !view { lua.accountExternalAllocation(bytes: a.storage.byteCount) }
        cls.push(ArrayBox(a), to: lua)
    }

    /// A nested Lua table -> array (shape from the nesting; all rows must agree).
    static func fromTable(_ call: LuaCall, _ i: Int32, dtype explicit: DType?) throws -> NDArray {
        let lua = call.lua
        var values: [Operand] = []
        var shape: [Int] = []
        var sawFloat = false, sawBool = false, sawInt = false
        func walk(_ t: Int32, depth: Int) throws {
            let n = lua.rawLength(at: t)
            if depth == shape.count { shape.append(n) } else if shape[depth] != n {
                throw LuaError.argument(i, "ragged nested table: length \(n) at depth \(depth + 1), expected \(shape[depth])")
            }
            for k in stride(from: 1, through: n, by: 1) {
                lua.ensureStack(2)
                lua.rawGet(at: t, index: k)
                defer { lua.pop() }
                switch lua.type(at: -1) {
                case .table:
                    try walk(lua.absIndex(-1), depth: depth + 1)
                case .number:
                    if depth != shape.count - 1 { throw LuaError.argument(i, "ragged nested table: a number where a table was expected") }
                    if lua.isInteger(at: -1) { sawInt = true } else { sawFloat = true }
                    values.append(scalar(lua, -1)!)
                case .boolean:
                    sawBool = true
                    values.append(scalar(lua, -1)!)
                default:
                    throw LuaError.argument(i, "numbers or booleans expected in the table, got \(lua.typeName(at: -1))")
                }
            }
        }
        try walk(lua.absIndex(i), depth: 0)
        let dtype = explicit ?? (sawFloat ? .float64 : sawInt ? .int64 : sawBool ? .bool : .float64)
        return try wrap { try NDArray.from(values, shape: shape, dtype: dtype) }
    }

    /// Selection from an index key: an integer (0-based, first axis) or a slice string.
    static func selection(_ call: LuaCall, _ i: Int32) throws -> Selection {
        let lua = call.lua
        if lua.type(at: i) == .number {
            guard let k = lua.toInteger(at: i) else { throw LuaError.runtime("array index must be an integer, got \(lua.toNumber(at: i)!)") }
            return Selection([.index(.int(k))])
        }
        return try wrap { try Selection(parsing: try call.string(i)) }
    }

    /// An operand of an elementwise operation: an ndarray, a number or a boolean.
    static func operand(_ call: LuaCall, _ i: Int32) throws -> Operand {
        let lua = call.lua
        if let a = cls.object(at: i, in: lua) { return .array(a.array) }
        if let s = scalar(lua, i) { return s }
        if cls.isClosed(at: i, in: lua) { throw LuaError.runtime("attempt to use a closed ndarray") }
        throw call.typeError(i, expected: "ndarray or number")
    }

    /// The body of a binary metamethod or method: a op b.
    static func binary(_ op: BinaryOp) -> LuaFunctionBody {
        { call in
            let a = try operand(call, 1), b = try operand(call, 2)
            let r = try wrap { try NDArray.binary(op, a, b) }
            try push(r, call.lua, scalarIfZeroD: false)
            return 1
        }
    }

    static func unarySummary(_ op: UnaryOp) -> String {
        switch op {
        case .isnan: return "elementwise NaN test, a bool array"
        case .isfinite: return "elementwise finiteness test, a bool array"
        case .round: return "elementwise rounding, half to even as NumPy"
        case .abs, .floor, .ceil: return "elementwise \(op.rawValue); integers keep their dtype"
        default: return "elementwise \(op.rawValue), in float64 for integer input"
        }
    }

    static func binaryMethod(_ op: BinaryOp, _ summary: String) -> LuaMethodDecl<ArrayBox> {
        LuaMethodDecl(op.rawValue, "a:\(op.rawValue)(b) -> ndarray", summary) { call, _ in
            try binary(op)(call)
        }
    }

    // MARK: the Array type

    static let cls: LuaClass<ArrayBox> = LuaClass(
        "ndarray",
        summary: "an N-dimensional array (0-based indexing, NumPy slices in strings)",
        help: """
        a.shape, a.dtype, a.ndim, a.size     properties
        a[3], a["0:10, ::2"], a["..., -1"]   views (shared memory); a 0-d result is a number
        a["0:10"] = 0; a[0] = b              assignment, with broadcasting
        a:sum(axis), a:mean({1, 2}), a:max() reductions; int32 sums accumulate in int64
        """,
        methods: [
            LuaMethodDecl("sum", "a:sum([axis [, keepdims]]) -> array|number",
                          "sum over an axis, a table of axes, or all; integers accumulate in int64") { call, box in
                try reduction(call, box, .sum)
            },
            LuaMethodDecl("prod", "a:prod([axis [, keepdims]]) -> array|number", "product over axes") { call, box in
                try reduction(call, box, .prod)
            },
            LuaMethodDecl("min", "a:min([axis [, keepdims]]) -> array|number", "minimum over axes (NaN wins)") { call, box in
                try reduction(call, box, .min)
            },
            LuaMethodDecl("max", "a:max([axis [, keepdims]]) -> array|number", "maximum over axes (NaN wins)") { call, box in
                try reduction(call, box, .max)
            },
            LuaMethodDecl("mean", "a:mean([axis [, keepdims]]) -> array|number", "mean over axes, in float64") { call, box in
                let axes = try ArrayModule.axes(call, 2)
                let r = try wrap { try box.array.mean(axes: axes, keepdims: call.boolean(3)) }
                try push(r, call.lua)
                return 1
            },
            ] + UnaryOp.allCases.map { op in
                LuaMethodDecl<ArrayBox>(op.rawValue, "a:\(op.rawValue)() -> ndarray", unarySummary(op)) { call, box in
                    try push(try wrap { try box.array.apply(op) }, call.lua, scalarIfZeroD: false)
                    return 1
                }
            } + [
            binaryMethod(.eq, "elementwise a == b, a bool array (Lua's == compares identity)"),
            binaryMethod(.ne, "elementwise a ~= b, a bool array"),
            binaryMethod(.lt, "elementwise a < b, a bool array"),
            binaryMethod(.le, "elementwise a <= b, a bool array"),
            binaryMethod(.gt, "elementwise a > b, a bool array"),
            binaryMethod(.ge, "elementwise a >= b, a bool array"),
            binaryMethod(.minimum, "elementwise minimum (NaN wins)"),
            binaryMethod(.maximum, "elementwise maximum (NaN wins)"),
            LuaMethodDecl("copy", "a:copy() -> array", "a contiguous copy") { call, box in
                try push(try wrap { try box.array.copy() }, call.lua, scalarIfZeroD: false)
                return 1
            },
            LuaMethodDecl("astype", "a:astype(dtype) -> array", "a converted copy (floats to integers truncate)") { call, box in
                let d = try dtype(call, 2)
                try push(try wrap { try box.array.copy(as: d) }, call.lua, scalarIfZeroD: false)
                return 1
            },
            LuaMethodDecl("reshape", "a:reshape(shape) -> array", "the same elements in another shape (one -1 allowed); a view when possible") { call, box in
                let s = try integers(call, 2, "shape")  // -1 allowed: the core checks the rest
                let a = box.array
                let r = try wrap { try (a.isContiguous ? a : a.copy()).reshapedView(s) }
                try push(r, call.lua, scalarIfZeroD: false, view: a.isContiguous)
                return 1
            },
            LuaMethodDecl("fill", "a:fill(value)", "sets every element") { call, box in
                guard let v = scalar(call.lua, 2) else { throw call.typeError(2, expected: "number") }
                try wrap { try box.array.fill(v) }
                return 0
            },
            LuaMethodDecl("totable", "a:totable() -> table", "nested Lua tables, 1-based") { call, box in
                try pushTable(box.array, call.lua)
                return 1
            },
        ] + shapeMethods + inPlaceMethods + logicalMethods + statisticsMethods + [PlotModule.plotMethod(), PlotModule.oplotMethod(), PlotModule.logplotMethod(), PlotModule.projectMethod()],
        metamethods: [
            "__add": binary(.add), "__sub": binary(.sub), "__mul": binary(.mul), "__div": binary(.div),
            "__idiv": binary(.floordiv), "__mod": binary(.mod), "__pow": binary(.pow),
            "__unm": { call in
                let a = try call.object(1, cls).array
                try push(try wrap { try NDArray.binary(.sub, .integer(0), .array(a)) }, call.lua, scalarIfZeroD: false)
                return 1
            },
            "__len": { call in
                let a = try call.object(1, cls).array
                guard a.ndim > 0 else { throw LuaError.runtime("len() of a 0-d array") }
                return call.returns(a.shape[0])
            },
            "__newindex": { call in
                let a = try call.object(1, cls).array
                if let key = cls.object(at: 2, in: call.lua) { try assignByArray(call, a, key.array); return 0 }
                let target = try wrap { try a.view(try selection(call, 2)) }
                let value = try operand(call, 3)
                try wrap { try target.fill(value) }
                return 0
            },
            "__pretty": { call in
                call.returns(try call.object(1, cls).array.formatted())
            },
        ],
        index: { call, box in
            let lua = call.lua
            let a = box.array
            if lua.type(at: 2) == .string, let key = lua.toString(at: 2) {
                switch key {
                case "shape": pushShape(a.shape, lua); return 1
                case "dtype": lua.push(a.dtype.rawValue); return 1
                case "ndim": lua.push(a.ndim); return 1
                case "size": lua.push(a.count); return 1
                case "T": try push(try wrap { try a.transposed() }, lua, scalarIfZeroD: false, view: true); return 1
                default:
                    // a name that is no method or property: nil, as for any Lua table, so
                    // a:summ() fails with Lua's "attempt to call a nil value (method 'summ')"
                    if key.first.map({ $0.isLetter || $0 == "_" }) == true { return 0 }
                }
            }
            if let key = cls.object(at: 2, in: lua) { return try indexByArray(call, a, key.array) }
            try push(try wrap { try a.view(try selection(call, 2)) }, lua, view: true)
            return 1
        },
        completions: { _ in ["shape", "dtype", "ndim", "size", "T"] },
        describe: { $0.array.formatted() }
    )

    static func pushShape(_ shape: [Int], _ lua: Lua) {
        lua.newTable(arrayCount: shape.count)
        for (k, d) in shape.enumerated() { lua.push(d); lua.rawSet(at: -2, index: k + 1) }
    }

    static func reduction(_ call: LuaCall, _ box: ArrayBox, _ op: Reduction) throws -> Int32 {
        let axes = try ArrayModule.axes(call, 2)
        let r = try wrap { try box.array.reduce(op, axes: axes, keepdims: call.boolean(3)) }
        try push(r, call.lua)
        return 1
    }

    static func pushTable(_ a: NDArray, _ lua: Lua) throws {
        lua.ensureStack(4)
        if a.ndim == 0 { try push(a, lua); return }
        lua.newTable(arrayCount: a.shape[0])
        for i in 0..<a.shape[0] {
            let sub = try wrap { try a.view(Selection([.index(.int(i))])) }
            if sub.ndim == 0 { try push(sub, lua, view: true) } else { try pushTable(sub, lua) }
            lua.rawSet(at: -2, index: i + 1)
        }
    }

    // MARK: the module

    static let declaration = LuaModuleDecl(
        "array",
        summary: "N-dimensional arrays: construction, 0-based slicing, reductions",
        help: """
        Indices are 0-based and half-open, as in NumPy: a[0] is the first element,
        a["2:5"] holds elements 2, 3 and 4. a:totable() gives 1-based Lua tables.
        dtypes: bool, int8..int64, uint8..uint64, float32, float64 (default).
        """,
        functions: [
            LuaFunctionDecl("zeros", "array.zeros(shape [, dtype]) -> array", "an array of zeros",
                            help: "Example:  local a = array.zeros({512, 512}, \"int32\")") { call in
                let s = try shape(call, 1), d = try dtype(call, 2)
                try push(try wrap { try NDArray(zeros: s, dtype: d) }, call.lua, scalarIfZeroD: false)
                return 1
            },
            LuaFunctionDecl("empty", "array.empty(shape [, dtype]) -> array",
                            "an array whose elements are not set (as NumPy's empty: fill it before reading)") { call in
                let s = try shape(call, 1), d = try dtype(call, 2)
                try push(try wrap { try NDArray(uninitialized: s, dtype: d) }, call.lua, scalarIfZeroD: false)
                return 1
            },
            LuaFunctionDecl("ones", "array.ones(shape [, dtype]) -> array", "an array of ones") { call in
                let s = try shape(call, 1), d = try dtype(call, 2)
                try push(try wrap { try NDArray.ones(s, dtype: d) }, call.lua, scalarIfZeroD: false)
                return 1
            },
            LuaFunctionDecl("full", "array.full(shape, value [, dtype]) -> array", "an array filled with value") { call in
                let s = try shape(call, 1), d = try dtype(call, 3)
                guard let v = scalar(call.lua, 2) else { throw call.typeError(2, expected: "number") }
                try push(try wrap { try NDArray.full(s, v, dtype: d) }, call.lua, scalarIfZeroD: false)
                return 1
            },
            LuaFunctionDecl("arange", "array.arange([start,] stop [, step [, dtype]]) -> array",
                            "evenly spaced values in [start, stop), as NumPy's arange",
                            help: "array.arange(5) -> array([0, 1, 2, 3, 4]); integers give int64, else float64") { call in
                let lua = call.lua
                var nums: [Double] = []
                var allInt = true
                var i: Int32 = 1
                while i <= call.count, lua.type(at: i) == .number {
                    nums.append(try call.number(i))
                    if !lua.isInteger(at: i) { allInt = false }
                    i += 1
                }
                guard (1...3).contains(nums.count) else { throw call.typeError(1, expected: "number") }
                let d = try dtype(call, i, default: allInt ? .int64 : .float64)
                let (a, b, s) = nums.count == 1 ? (0, nums[0], 1) : (nums[0], nums[1], nums.count == 3 ? nums[2] : 1)
                try push(try wrap { try NDArray.arange(a, b, s, dtype: d) }, lua, scalarIfZeroD: false)
                return 1
            },
            LuaFunctionDecl("linspace", "array.linspace(start, stop, num [, dtype]) -> array",
                            "num evenly spaced values from start to stop, both included") { call in
                let a = try call.number(1), b = try call.number(2), n = try call.integer(3), d = try dtype(call, 4)
                try push(try wrap { try NDArray.linspace(a, b, n, dtype: d) }, call.lua, scalarIfZeroD: false)
                return 1
            },
            LuaFunctionDecl("from", "array.from(table [, dtype]) -> array",
                            "an array from nested Lua tables (1-based tables, 0-based array)",
                            help: "Example:  array.from({{1, 2}, {3, 4}}) -> int64 array of shape (2, 2)") { call in
                try call.table(1)
                let d: DType? = call.isNoneOrNil(2) ? nil : try dtype(call, 2)
                try push(try fromTable(call, 1, dtype: d), call.lua, scalarIfZeroD: false)
                return 1
            },
        ] + UnaryOp.allCases.map { op in
            LuaFunctionDecl(op.rawValue, "array.\(op.rawValue)(a) -> ndarray", unarySummary(op)) { call in
                let a: NDArray
                switch try operand(call, 1) {
                case .array(let x): a = x
                case let s:
                    a = try wrap { try NDArray(zeros: [], dtype: s.isInteger ? .int64 : .float64) }
                    try wrap { try a.fill(s) }
                }
                try push(try wrap { try a.apply(op) }, call.lua, scalarIfZeroD: a.ndim == 0)
                return 1
            }
        } + [
            LuaFunctionDecl("minimum", "array.minimum(a, b) -> ndarray", "elementwise minimum (NaN wins)",
                            body: binary(.minimum)),
            LuaFunctionDecl("maximum", "array.maximum(a, b) -> ndarray", "elementwise maximum (NaN wins)",
                            body: binary(.maximum)),
        ] + shapeFunctions + logicalFunctions + statisticsFunctions,
        classes: [cls],
        values: shapeValues
    )
}
