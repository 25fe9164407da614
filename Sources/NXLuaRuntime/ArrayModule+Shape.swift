import LuaBridge
import NDArray

/// The random generator of one Lua state (kept in its registry, so states never share
/// or race on a generator).
final class RandomBox {
    var generator: RandomGenerator
    init(_ generator: RandomGenerator) { self.generator = generator }
}

/// A module pushed as a value of another module (`array.random`): its functions are
/// documented under their qualified names ("array.random.rand").
struct LuaSubmodule: LuaPushable {
    let declaration: LuaModuleDecl
    func push(to lua: Lua) { lua.push(module: declaration) }
}

/// Shapes, masks and selection: transpose/squeeze/expand/ravel views, concat/stack,
/// boolean masks and index arrays, where/clip, and seeded random arrays.
extension ArrayModule {
    // MARK: argument helpers

    /// Axes given as one table or as several integer arguments from `first` on; nil if none.
    static func axisList(_ call: LuaCall, from first: Int32, _ what: String) throws -> [Int]? {
        if call.count < first || (call.count == first && call.isNoneOrNil(first)) { return nil }
        if call.count == first { return try integers(call, first, what) }
        return try (first...call.count).map { try call.integer($0) }
    }

    /// An index argument: an integer ndarray, a (nested) Lua table of integers, or an integer.
    static func indexArray(_ call: LuaCall, _ i: Int32) throws -> NDArray {
        let lua = call.lua
        if let box = cls.object(at: i, in: lua) { return box.array }
        switch lua.type(at: i) {
        case .number:
            let n = try call.integer(i)
            return try wrap { try NDArray.from([.integer(Int64(n))], shape: [], dtype: .int64) }
        case .table:
            let t = try fromTable(call, i, dtype: nil)
            // an empty table has no element to tell its dtype: it selects nothing
            return t.count == 0 ? try wrap { try NDArray(zeros: t.shape, dtype: .int64) } : t
        default:
            if cls.isClosed(at: i, in: lua) { throw LuaError.runtime("attempt to use a closed ndarray") }
            throw call.typeError(i, expected: "integer ndarray, table of integers or integer")
        }
    }

    /// The arrays of a list argument ({a, b, ...}); numbers count as 0-d arrays.
    static func arrayList(_ call: LuaCall, _ i: Int32) throws -> [NDArray] {
        try call.table(i)
        let lua = call.lua
        lua.ensureStack(2)
        var out: [NDArray] = []
        for k in stride(from: 1, through: lua.rawLength(at: i), by: 1) {
            lua.rawGet(at: i, index: k)
            defer { lua.pop() }
            if let box = cls.object(at: -1, in: lua) {
                out.append(box.array)
            } else if let s = scalar(lua, -1) {
                let a = try wrap { try NDArray(zeros: [], dtype: s.isInteger ? .int64 : .float64) }
                try wrap { try a.fill(s) }
                out.append(a)
            } else {
                throw LuaError.argument(i, "entry #\(k) of the list is a \(lua.typeName(at: -1)), ndarray expected")
            }
        }
        return out
    }

    /// A value of where: as `operand`, but a Lua boolean is a bool (NumPy keeps
    /// where(cond, true, false) bool; bool is the lowest dtype, so it never widens another).
    static func choice(_ call: LuaCall, _ i: Int32) throws -> Operand {
        guard call.type(i) == .boolean else { return try operand(call, i) }
        let b = try wrap { try NDArray(zeros: [], dtype: .bool) }
        b.fill(call.boolean(i) ? 1 : 0)
        return .array(b)
    }

    /// An optional bound of clip: nil, a number or an array.
    static func optOperand(_ call: LuaCall, _ i: Int32) throws -> Operand? {
        call.isNoneOrNil(i) ? nil : try operand(call, i)
    }

    /// Pushes a Lua table (1-based) of arrays.
    static func pushArrays(_ arrays: [NDArray], _ lua: Lua) throws {
        lua.ensureStack(3)
        lua.newTable(arrayCount: arrays.count)
        for (k, a) in arrays.enumerated() {
            try push(a, lua, scalarIfZeroD: false)
            lua.rawSet(at: -2, index: k + 1)
        }
    }

    // MARK: a[mask], a[idx] (called from the index and __newindex metamethods)

    /// `a[key]` for an ndarray key: a bool mask or integer indices along axis 0 (a copy).
    static func indexByArray(_ call: LuaCall, _ a: NDArray, _ key: NDArray) throws -> Int32 {
        let r = try wrap { key.dtype == .bool ? try a.masked(key) : try a.take(key, axis: 0) }
        try push(r, call.lua)
        return 1
    }

    /// `a[key] = value` for an ndarray key: writes through into a.
    static func assignByArray(_ call: LuaCall, _ a: NDArray, _ key: NDArray) throws {
        let value = try operand(call, 3)
        try wrap {
            if key.dtype == .bool { try a.setMasked(key, value) } else { try a.put(key, value, axis: 0) }
        }
    }

    // MARK: methods

    static var shapeMethods: [LuaMethodDecl<ArrayBox>] {
        let transpose: @Sendable (LuaCall, ArrayBox) throws -> Int32 = { call, box in
            let perm = try axisList(call, from: 2, "axes")
            try push(try wrap { try box.array.transposed(perm) }, call.lua, scalarIfZeroD: false, view: true)
            return 1
        }
        return [
            LuaMethodDecl("transpose", "a:transpose([axes]) -> ndarray",
                          "the axes permuted, as a view; no argument reverses them (a.T)",
                          help: """
                          axes is a table or a list of integers: axis k of the result is axis axes[k]
                          of a (0-based, negative counts from the end).
                          Example:  array.zeros({2, 3, 4}):transpose({2, 0, 1}).shape -> {4, 2, 3}
                          """, body: transpose),
            LuaMethodDecl("permute", "a:permute(axes) -> ndarray", "the same as a:transpose(axes)", body: transpose),
            LuaMethodDecl("squeeze", "a:squeeze([axis]) -> ndarray",
                          "without length-1 axes (all, or the axis or table of axes given), as a view") { call, box in
                let axes = try ArrayModule.axes(call, 2)
                try push(try wrap { try box.array.squeezed(axes) }, call.lua, scalarIfZeroD: false, view: true)
                return 1
            },
            LuaMethodDecl("expand", "a:expand(axis) -> ndarray",
                          "a new length-1 axis at position axis, as a view (NumPy's expand_dims)",
                          help: "Example:  array.arange(3):expand(0).shape -> {1, 3};  :expand(-1) -> {3, 1}") { call, box in
                let axis = try call.integer(2)
                try push(try wrap { try box.array.expanded(axis) }, call.lua, scalarIfZeroD: false, view: true)
                return 1
            },
            LuaMethodDecl("flatten", "a:flatten() -> ndarray", "the elements in C order as a new 1-D array (a copy)") { call, box in
                try push(try wrap { try box.array.flattened() }, call.lua, scalarIfZeroD: false)
                return 1
            },
            LuaMethodDecl("ravel", "a:ravel() -> ndarray",
                          "the elements in C order as a 1-D array: a view when a is contiguous, else a copy") { call, box in
                let a = box.array
                try push(try wrap { try a.raveled() }, call.lua, scalarIfZeroD: false, view: a.isContiguous)
                return 1
            },
            LuaMethodDecl("take", "a:take(indices [, axis]) -> ndarray",
                          "the elements at integer positions along axis, or of the flattened array without one (as NumPy's take), as a copy",
                          help: """
                          indices is an integer ndarray, a (nested) Lua table of integers, or an integer;
                          positions are 0-based, negative count from the end, and may repeat. The result
                          has shape a.shape[..axis) + indices.shape + a.shape(axis..]. Without an axis,
                          positions count in the flattened array (C order), as in NumPy; a[t] for a
                          table t is a:take(t, 0).
                          Example:  array.arange(10):take({0, -1, 3}) -> array([0, 9, 3])
                          """) { call, box in
                let idx = try indexArray(call, 2)
                if let axis = try call.optInteger(3) {
                    try push(try wrap { try box.array.take(idx, axis: axis) }, call.lua)
                } else {
                    try push(try wrap { try box.array.raveled().take(idx, axis: 0) }, call.lua)
                }
                return 1
            },
            LuaMethodDecl("nonzero", "a:nonzero() -> {ndarray, ...}",
                          "the positions of the non-zero (true) elements: a table of int64 arrays, one per axis",
                          help: """
                          Example:  local r, c = table.unpack(m:nonzero())   -- rows and columns where m is true
                          a[mask] gives the values at those positions.
                          """) { call, box in
                try pushArrays(try wrap { try box.array.nonzero() }, call.lua)
                return 1
            },
            LuaMethodDecl("clip", "a:clip(lo, hi) -> ndarray",
                          "the values limited to [lo, hi]; either bound may be nil; NaN propagates",
                          help: """
                          Bounds are numbers or arrays (broadcast). Integer arrays stay integer with integer
                          bounds (a bound beyond the dtype's range limits nothing: uint8 clip(0, 300) is
                          uint8); a float bound gives float64, as NumPy 2.
                          Example:  frame:clip(0, nil)   -- negative pixels to 0
                          """) { call, box in
                let lo = try optOperand(call, 2), hi = try optOperand(call, 3)
                try push(try wrap { try box.array.clipped(lo, hi) }, call.lua, scalarIfZeroD: false)
                return 1
            },
        ]
    }

    // MARK: module functions

    static var shapeFunctions: [LuaFunctionDecl] {
        [
            LuaFunctionDecl("concat", "array.concat({a, b, ...} [, axis]) -> ndarray",
                            "the arrays joined along an existing axis (default 0), as NumPy's concatenate",
                            help: """
                            Shapes must agree except along axis; the dtype is the promotion of all dtypes
                            (int32 with float32 gives float64, as NumPy).
                            Example:  array.concat({array.zeros({2, 3}), array.ones({1, 3})}).shape -> {3, 3}
                            """) { call in
                let arrays = try arrayList(call, 1)
                let axis = try call.optInteger(2) ?? 0
                try push(try wrap { try NDArray.concatenate(arrays, axis: axis) }, call.lua, scalarIfZeroD: false)
                return 1
            },
            LuaFunctionDecl("stack", "array.stack({a, b, ...} [, axis]) -> ndarray",
                            "equal-shaped arrays joined along a new axis (default 0), as NumPy's stack",
                            help: "Example:  array.stack({x, y}, 1) gives shape (n, 2) for two arrays of shape (n,)") { call in
                let arrays = try arrayList(call, 1)
                let axis = try call.optInteger(2) ?? 0
                try push(try wrap { try NDArray.stack(arrays, axis: axis) }, call.lua, scalarIfZeroD: false)
                return 1
            },
            LuaFunctionDecl("where", "array.where(cond, x, y) -> ndarray | array.where(cond) -> {ndarray, ...}",
                            "elementwise cond ? x : y, broadcasting; with cond alone, its non-zero positions",
                            help: """
                            x and y are arrays, numbers or booleans. The dtype is the promotion of x and y,
                            numbers being weak as in arithmetic: an int32 array with 0 stays int32, with 0.5
                            gives float64; true and false are bool. A non-bool cond counts non-zero as true.
                            array.where(cond) is cond:nonzero(): a table of int64 index arrays, one per axis.
                            Example:  array.where(frame:lt(0), 0, frame)
                            """) { call in
                let cond: NDArray
                switch try operand(call, 1) {
                case .array(let a): cond = a
                case let s:
                    cond = try wrap { try NDArray(zeros: [], dtype: .int64) }
                    try wrap { try cond.fill(s) }
                }
                if call.count <= 1 {
                    try pushArrays(try wrap { try cond.nonzero() }, call.lua)
                    return 1
                }
                guard call.count >= 3 else {
                    throw LuaError.argument(3, "where takes cond alone, or cond, x and y")
                }
                let x = try choice(call, 2), y = try choice(call, 3)
                try push(try wrap { try NDArray.where(cond, x, y) }, call.lua, scalarIfZeroD: false)
                return 1
            },
            LuaFunctionDecl("argwhere", "array.argwhere(a) -> ndarray",
                            "the positions of the non-zero (true) elements as an (n, ndim) int64 array, one row each") { call in
                let a = try call.object(1, cls).array
                try push(try wrap { try a.argwhere() }, call.lua, scalarIfZeroD: false)
                return 1
            },
        ]
    }

    static var shapeValues: [(String, any LuaPushable)] {
        [("random", LuaSubmodule(declaration: randomDeclaration))]
    }

    // MARK: array.random

    static let randomKey = "nxlua.array.random"

    static let generatorClass = LuaClass<RandomBox>(
        "array.random.Generator", summary: "the random generator of a Lua state (xoshiro256**)")

    /// The generator of this Lua state, made on first use (seeded from the system).
    static func generator(_ lua: Lua) -> RandomBox {
        lua.ensureStack(2)
        if lua.rawGet(at: Lua.registryIndex, key: randomKey) == .userdata, let g = generatorClass.object(at: -1, in: lua) {
            lua.pop()
            return g
        }
        lua.pop()
        let g = RandomBox(.fromEntropy())
        generatorClass.push(g, to: lua)
        lua.rawSet(at: Lua.registryIndex, key: randomKey)
        return g
    }

    /// A shape argument, or nil when absent (the call then gives one number).
    static func optShape(_ call: LuaCall, _ i: Int32) throws -> [Int]? {
        call.isNoneOrNil(i) ? nil : try shape(call, i)
    }

    /// Pushes `a` as an array, or its single element as a number when no shape was given.
    static func pushDraw(_ a: NDArray, scalar: Bool, _ lua: Lua) throws {
        try push(scalar ? try wrap { try a.reshapedView([]) } : a, lua, scalarIfZeroD: scalar)
    }

    static let randomDeclaration = LuaModuleDecl(
        "array.random",
        summary: "seeded random arrays: rand, randn, integers, poisson (xoshiro256**)",
        help: """
        One generator per Lua state: xoshiro256** seeded through SplitMix64. Without
        array.random.seed(n) it starts from system entropy (different on every run); after
        seed(n) the same calls give the same numbers on every run and machine. The values
        differ from NumPy's (NumPy uses PCG64). Arrays fill in C order. Without a shape a
        call returns one Lua number.
        Example:  array.random.seed(42); local noisy = array.random.poisson(model)
        """,
        functions: [
            LuaFunctionDecl("seed", "array.random.seed([n])",
                            "reseeds this state's generator with integer n (no n: from system entropy)") { call in
                let box = generator(call.lua)
                if let n = try call.optInteger(1) {
                    box.generator = RandomGenerator(seed: UInt64(bitPattern: Int64(n)))
                } else {
                    box.generator = .fromEntropy()
                }
                return 0
            },
            LuaFunctionDecl("rand", "array.random.rand([shape [, dtype]]) -> ndarray|number",
                            "uniform values in [0, 1), float64 (53 random bits) or float32 (24)") { call in
                let s = try optShape(call, 1), d = try dtype(call, 2)
                let box = generator(call.lua)
                try pushDraw(try wrap { try box.generator.uniform(s ?? [1], dtype: d) }, scalar: s == nil, call.lua)
                return 1
            },
            LuaFunctionDecl("randn", "array.random.randn([shape [, dtype]]) -> ndarray|number",
                            "standard normal values (mean 0, sd 1), float64 or float32 (Marsaglia's polar method)") { call in
                let s = try optShape(call, 1), d = try dtype(call, 2)
                let box = generator(call.lua)
                try pushDraw(try wrap { try box.generator.normal(s ?? [1], dtype: d) }, scalar: s == nil, call.lua)
                return 1
            },
            LuaFunctionDecl("integers", "array.random.integers(lo, hi [, shape [, dtype]]) -> ndarray|integer",
                            "uniform integers in [lo, hi), int64 by default; bounds must fit the dtype",
                            help: "Example:  array.random.integers(0, 256, {64, 64}, \"uint8\")") { call in
                let lo = try call.integer(1), hi = try call.integer(2)
                let s = try optShape(call, 3), d = try dtype(call, 4, default: .int64)
                let box = generator(call.lua)
                try pushDraw(try wrap { try box.generator.integers(Int64(lo), Int64(hi), s ?? [1], dtype: d) },
                             scalar: s == nil, call.lua)
                return 1
            },
            LuaFunctionDecl("poisson", "array.random.poisson(lam [, shape]) -> ndarray|integer",
                            "Poisson counts (int64) with mean lam: a number, or an array of means (counting noise)",
                            help: """
                            lam may be an array: each element gets its own mean, and shape defaults to lam's
                            shape (a shape given must be one lam broadcasts to). Means must be >= 0.
                            Example:  local noisy = array.random.poisson(model)   -- detector counting noise
                            """) { call in
                let lam = try operand(call, 1)
                var s = try optShape(call, 2)
                let scalar: Bool
                if case .array = lam { scalar = false } else { scalar = s == nil; s = s ?? [1] }
                let box = generator(call.lua)
                try pushDraw(try wrap { try box.generator.poisson(lam, s) }, scalar: scalar, call.lua)
                return 1
            },
        ]
    )
}
