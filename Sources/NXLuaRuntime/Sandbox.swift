import CLua
import LuaBridge
import NDArray
import NeXus
import RemoteServer

/// Remote evaluation for `nxlua serve --allow-eval` (docs/remote.md): each request runs
/// in a fresh Lua state holding only what the allow-list gives (Redis's way): Lua's
/// base functions without file access, `string` (no `dump`), `table`, `math`, `utf8`,
/// `coroutine`, `array`, and a read-only `nx` whose `load` opens files of the served
/// folder only. The state's memory, array storage, time and instructions are bounded
/// (LuaLimits, ArrayMemoryBudget); the chunk's results travel back as JSON, or one array
/// in binary.
public final class LuaSandbox: RemoteEvaluator {
    public init() {}

    /// Globals the sandbox removes after setting itself up.
    static let removedGlobals = ["io", "os", "package", "debug", "require", "dofile", "loadfile", "collectgarbage"]

    /// Trusted set-up, run before the limits are armed: locks the shared metatables,
    /// replaces `nx` and `load`, drops everything not on the allow-list.
    static let prelude = """
    local resolve, realload = ...
    -- shared metatables (strings, nxlua's userdata types) are hidden: getmetatable
    -- answers for tables only (their metatables are the code's own)
    getmetatable("").__metatable = false
    local rawgetmetatable = getmetatable
    getmetatable = function(v)
      if type(v) == "table" then return rawgetmetatable(v) end
      return nil
    end
    local function open(path)
      local real = resolve(path)
      -- the server may hold the file open for SWMR reading: HDF5 wants the same flags
      local ok, f = pcall(realload, real, "r", { swmr = true })
      if ok then return f end
      return realload(real, "r")
    end
    nx = { load = open }
    local rawload = load
    load = function(chunk, name, mode, env)
      return rawload(chunk, name, "t", env or _ENV)
    end
    local gc = collectgarbage
    collectgarbage = nil
    string.dump = nil
    for _, name in ipairs({ \(removedGlobals.map { "\"\($0)\"" }.joined(separator: ", ")) }) do _G[name] = nil end
    return function(what) if what == "count" then return gc("count") end end
    """

    public func evaluate(_ request: EvaluationRequest) throws -> EvaluationResult {
        if request.code.utf8.first == 0x1B { throw EvaluationError("precompiled Lua (bytecode) is refused: send source text") }
        NXThreads.silenceHDF5Errors()
        let budget = ArrayMemoryBudget(limit: request.memoryLimit)
        let limits = LuaLimits(memory: request.memoryLimit)
        // long array kernels of this evaluation stop once its limits have run out (the
        // hook then raises); other threads' kernels are not concerned
        nonisolated(unsafe) let watched = limits
        return try Interruption.withPoll({ watched.hasExpired }) { try budget.withCurrent {
            let state = try LuaState(limits: limits)
            try setUp(state, request)
            let lua = state.lua
            let base = lua.top
            do {
                try lua.load(request.code, name: "=eval", mode: "t")
            } catch let e as LuaScriptError {
                throw EvaluationError("syntax error: \(e.message)")
            }
            try JSONBridge.push(request.arguments, lua)
            limits.arm(state, seconds: request.timeLimit, instructions: request.instructionLimit)
            do {
                try lua.pcall(nargs: 1, traceback: true)
            } catch let e as LuaScriptError {
                limits.disarm(state)
                throw EvaluationError(message(e.message, limits, budget, request))
            }
            limits.disarm(state)
            // a limit reached is final even when the code caught the error (in a pcall,
            // or in a coroutine whose failure it ignored)
            if limits.reached != nil || budget.refused > 0 {
                throw EvaluationError(message("", limits, budget, request))
            }
            let results = Int(lua.top - base)
            do {
                if results == 1, let a = ArrayModule.cls.object(at: lua.top, in: lua)?.array {
                    let c = a.isContiguous ? a : try a.copy()
                    let bytes = Array(UnsafeRawBufferPointer(start: c.storage.bytes + c.offset * c.dtype.itemSize,
                                                             count: c.count * c.dtype.itemSize))
                    return .array(dtype: c.dtype.rawValue, shape: c.shape, bytes: bytes)
                }
                if results == 0 { return .json(.null) }
                if results == 1 { return .json(try JSONBridge.value(lua, Int32(base + 1), depth: 0)) }
                return .json(.array(try (1...results).map { try JSONBridge.value(lua, Int32(base) + Int32($0), depth: 0) }))
            } catch let e as EvaluationError {
                throw e
            } catch {
                throw EvaluationError("the result cannot be sent: \(error)")
            }
        } }
    }

    func message(_ error: String, _ limits: LuaLimits, _ budget: ArrayMemoryBudget, _ request: EvaluationRequest) -> String {
        switch limits.reached {
        case .time?: return "time limit of \(request.timeLimit) s reached (the evaluation was stopped)"
        case .instructions?: return "instruction limit of \(request.instructionLimit) reached (the evaluation was stopped)"
        case .memory?: return "memory limit of \(request.memoryLimit >> 20) MiB reached (the evaluation was stopped)"
        case nil:
            if budget.refused > 0 {
                return "array memory limit of \(request.memoryLimit >> 20) MiB reached (the evaluation was stopped)" + (error.isEmpty ? "" : ": \(error)")
            }
            return error
        }
    }

    func setUp(_ state: LuaState, _ request: EvaluationRequest) throws {
        try state.install(ArrayModule.declaration)
        try state.install(NeXusModule.declaration)
        // figures as PNG bytes (fig:png("base64") or "array"); no files, no terminal
        try state.install(PlotModule.declaration)
        PlotModule.markSandboxed(state.lua)
        try PlotModule.installGlobals(state.lua)
        let lua = state.lua
        let base = lua.top
        defer { lua.top = base }
        try lua.load(LuaSandbox.prelude, name: "=sandbox")
        let resolve = request.resolveFile
        lua.push(function: "resolve") { call in
            let domain = try call.string(1)
            do { call.lua.push(try resolve(domain)) } catch let e as EvaluationError { throw LuaError.runtime(e.message) }
            return 1
        }
        try lua.getGlobal("nx")
        try lua.getField(at: -1, "load")
        lua.remove(at: -2)
        try lua.pcall(nargs: 2, nresults: 1)
        try lua.setGlobal("collectgarbage")
    }
}

/// JSON <-> Lua values for evaluation arguments and results.
enum JSONBridge {
    static let maxDepth = 32
    static let maxElements = 10_000_000

    static func push(_ v: JSON, _ lua: Lua) throws {
        lua.ensureStack(4)
        switch v {
        case .null: lua.pushNil()
        case .bool(let b): lua.push(b)
        case .int(let i): lua.push(Int(i))
        case .double(let d): lua.push(d)
        case .string(let s): lua.push(s)
        case .array(let items):
            lua.newTable(arrayCount: items.count)
            for (i, item) in items.enumerated() {
                try push(item, lua)
                lua.rawSet(at: -2, index: i + 1)
            }
        case .object(let members):
            lua.newTable(recordCount: members.count)
            for m in members {
                try push(m.value, lua)
                lua.rawSet(at: -2, key: m.key)
            }
        }
    }

    /// A Lua value as JSON: tables with keys 1..n are arrays, tables with string keys
    /// objects; arrays nested in tables become nested lists (raw access only: no
    /// metamethod of the sandboxed code runs here).
    static func value(_ lua: Lua, _ i: Int32, depth: Int) throws -> JSON {
        guard depth < maxDepth else { throw EvaluationError("the result is nested deeper than \(maxDepth) levels") }
        lua.ensureStack(4)
        switch lua.type(at: i) {
        case .nil, .none: return .null
        case .boolean: return .bool(lua.toBoolean(at: i))
        case .number:
            if lua.isInteger(at: i), let n = lua.toInteger(at: i) { return .int(n) }
            return .double(lua.toNumber(at: i) ?? .nan)
        case .string: return .string(lua.toString(at: i) ?? "")
        case .table:
            let t = lua.absIndex(i)
            let n = lua.rawLength(at: t)
            var count = 0
            var keys: [(String, JSON)] = []
            var isArray = true
            try lua.forEachRaw(at: t) { k, v in
                count += 1
                if count > maxElements { throw EvaluationError("the result has more than \(maxElements) elements") }
                if lua.type(at: k) == .number, lua.isInteger(at: k), let idx = lua.toInteger(at: k), idx >= 1, idx <= n { return }
                isArray = false
                guard lua.type(at: k) == .string, let key = lua.toString(at: k) else {
                    throw EvaluationError("a result table has a key of type \(lua.typeName(at: k)); JSON keys are strings")
                }
                keys.append((key, try value(lua, v, depth: depth + 1)))
            }
            if isArray && count == n {
                var items: [JSON] = []
                for k in stride(from: 1, through: n, by: 1) {
                    lua.rawGet(at: t, index: k)
                    defer { lua.pop() }
                    items.append(try value(lua, lua.top, depth: depth + 1))
                }
                return .array(items)
            }
            if count != keys.count {
                throw EvaluationError("a result table mixes list items and named keys; JSON has no such value")
            }
            return .object(keys.map { JSON.Member($0.0, $0.1) })
        case .userdata:
            if let a = ArrayModule.cls.object(at: i, in: lua)?.array {
                guard a.count <= maxElements else { throw EvaluationError("an array of \(a.count) elements nested in a result; return it alone (binary)") }
                return try arrayJSON(a)
            }
            throw EvaluationError("cannot send a \(lua.typeName(at: i)) (read its values first, e.g. field:read() or a slice)")
        default:
            throw EvaluationError("cannot send a \(lua.typeName(at: i))")
        }
    }

    static func arrayJSON(_ a: NDArray) throws -> JSON {
        let c = try a.copy(as: a.dtype.isInteger || a.dtype == .bool ? .int64 : .float64)
        let n = c.count
        var flat: [JSON] = []
        flat.reserveCapacity(n)
        if c.dtype == .int64 {
            let p = c.storage.bytes.assumingMemoryBound(to: Int64.self) + c.offset
            for k in 0..<n { flat.append(a.dtype == .bool ? .bool(p[k] != 0) : .int(p[k])) }
        } else {
            let p = c.storage.bytes.assumingMemoryBound(to: Double.self) + c.offset
            for k in 0..<n { flat.append(.double(p[k])) }
        }
        func nest(_ axis: Int, _ start: Int) -> JSON {
            if axis == c.shape.count { return flat[start] }
            let stride = c.shape[(axis + 1)...].reduce(1, *)
            return .array((0..<c.shape[axis]).map { nest(axis + 1, start + $0 * stride) })
        }
        return nest(0, 0)
    }
}
