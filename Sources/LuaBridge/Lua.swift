import CLua
import CLuaShims

/// The Lua value types, as `lua_type` reports them.
public enum LuaType: Int32, Sendable {
    case none = -1, `nil` = 0, boolean, lightUserdata, number, string, table, function, userdata, thread

    public var name: String {
        switch self {
        case .none: return "no value"
        case .nil: return "nil"
        case .boolean: return "boolean"
        case .lightUserdata: return "userdata"
        case .number: return "number"
        case .string: return "string"
        case .table: return "table"
        case .function: return "function"
        case .userdata: return "userdata"
        case .thread: return "thread"
        }
    }
}

/// A view of a `lua_State` stack: the operations Swift may perform directly.
///
/// Only API functions that cannot raise are called here (lua_to*, lua_type, lua_raw*,
/// lua_push*, which can fail only on memory, and the allocator aborts instead); every
/// operation that may run a metamethod or raise goes through a protected C helper and
/// throws `LuaScriptError`. Copying a `Lua` copies the pointer, not the state.
public struct Lua {
    public let L: OpaquePointer

    public init(_ L: OpaquePointer) { self.L = L }

    // MARK: stack

    public var top: Int32 {
        get { lua_gettop(L) }
        nonmutating set { lua_settop(L, newValue) }
    }

    public func absIndex(_ i: Int32) -> Int32 { lua_absindex(L, i) }
    public func pop(_ n: Int32 = 1) { nxl_pop(L, n) }
    public func pushValue(at i: Int32) { lua_pushvalue(L, i) }
    public func remove(at i: Int32) { nxl_remove(L, i) }
    public func insert(at i: Int32) { nxl_insert(L, i) }
    public func replace(at i: Int32) { nxl_replace(L, i) }

    /// Makes room for `n` more values; false if the stack cannot grow (never raises).
    @discardableResult
    public func ensureStack(_ n: Int32) -> Bool { lua_checkstack(L, n) != 0 }

    public static var registryIndex: Int32 { nxl_registryindex() }
    public static func upvalueIndex(_ i: Int32) -> Int32 { nxl_upvalueindex(i) }

    /// Accounts for memory allocated outside Lua but owned by a userdata (array data):
    /// the collector runs as if Lua had allocated it, so large garbage goes in time.
    public func accountExternalAllocation(bytes: Int) {
        guard bytes >= 1024 else { return }
        nxl_gcstep(L, Int32(clamping: bytes / 1024))
    }

    // MARK: types

    public func type(at i: Int32) -> LuaType { LuaType(rawValue: lua_type(L, i)) ?? .none }
    public func isNoneOrNil(at i: Int32) -> Bool { lua_type(L, i) <= 0 }
    public func isInteger(at i: Int32) -> Bool { nxl_isinteger(L, i) != 0 }
    /// The name `luaL_typeerror` would use: a metatable's __name, else the type name.
    public func typeName(at i: Int32) -> String { String(cString: nxl_objtypename(L, i)) }

    // MARK: reading values (no conversions that could raise)

    public func toBoolean(at i: Int32) -> Bool { lua_toboolean(L, i) != 0 }

    /// An integer if the value is one or converts exactly (a float with an exact
    /// integer value, or a numeric string), as lua_tointegerx does.
    public func toInteger(at i: Int32) -> Int? {
        var ok: Int32 = 0
        let v = lua_tointegerx(L, i, &ok)
        return ok != 0 ? Int(v) : nil
    }

    public func toNumber(at i: Int32) -> Double? {
        var ok: Int32 = 0
        let v = lua_tonumberx(L, i, &ok)
        return ok != 0 ? v : nil
    }

    /// The string at i (numbers convert in place, as lua_tolstring does), or nil.
    public func toString(at i: Int32) -> String? {
        var len = 0
        guard let p = lua_tolstring(L, i, &len) else { return nil }
        return p.withMemoryRebound(to: UInt8.self, capacity: len) {
            String(decoding: UnsafeBufferPointer(start: $0, count: len), as: UTF8.self)
        }
    }

    /// The raw bytes of the string at i, without copying, for the duration of `body`.
    public func withBytes<R>(at i: Int32, _ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R? {
        var len = 0
        guard lua_type(L, i) == LUA_TSTRING, let p = lua_tolstring(L, i, &len) else { return nil }
        return try body(UnsafeRawBufferPointer(start: p, count: len))
    }

    // MARK: pushing values

    public func pushNil() { lua_pushnil(L) }
    public func push(_ b: Bool) { lua_pushboolean(L, b ? 1 : 0) }
    public func push(_ n: Int) { lua_pushinteger(L, lua_Integer(n)) }
    public func push(_ x: Double) { lua_pushnumber(L, x) }
    public func push(_ s: String) {
        var s = s
        s.withUTF8 { buf in
            buf.withMemoryRebound(to: CChar.self) { _ = lua_pushlstring(L, $0.baseAddress, $0.count) }
        }
    }
    public func push(bytes: UnsafeRawBufferPointer) {
        _ = lua_pushlstring(L, bytes.baseAddress?.assumingMemoryBound(to: CChar.self), bytes.count)
    }
    public func push(_ s: String?) { if let s { push(s) } else { pushNil() } }
    public func push(_ n: Int?) { if let n { push(n) } else { pushNil() } }
    public func push(_ x: Double?) { if let x { push(x) } else { pushNil() } }
    public func push(_ strings: [String]) {
        newTable(arrayCount: strings.count)
        for (k, s) in strings.enumerated() { push(s); rawSet(at: -2, index: k + 1) }
    }
    public func pushCFunction(_ f: lua_CFunction) { nxl_pushcfunction(L, f) }
    public func pushGlobals() { _ = lua_rawgeti(L, Lua.registryIndex, lua_Integer(LUA_RIDX_GLOBALS)) }

    // MARK: tables (raw access: no metamethods, cannot raise)

    public func newTable(arrayCount: Int = 0, recordCount: Int = 0) {
        lua_createtable(L, Int32(clamping: arrayCount), Int32(clamping: recordCount))
    }

    /// t[key] for the table at i, raw; pushes the value and returns its type.
    @discardableResult
    public func rawGet(at i: Int32, key: String) -> LuaType {
        let t = absIndex(i)
        push(key)
        return LuaType(rawValue: lua_rawget(L, t)) ?? .none
    }

    /// t[key] = top for the table at i, raw; pops the value.
    public func rawSet(at i: Int32, key: String) {
        let t = absIndex(i)
        push(key)
        insert(at: -2)
        lua_rawset(L, t)
    }

    @discardableResult
    public func rawGet(at i: Int32, index n: Int) -> LuaType {
        LuaType(rawValue: lua_rawgeti(L, i, lua_Integer(n))) ?? .none
    }

    public func rawSet(at i: Int32, index n: Int) { lua_rawseti(L, i, lua_Integer(n)) }

    /// Raw length of a table or string (no __len).
    public func rawLength(at i: Int32) -> Int { Int(lua_rawlen(L, i)) }

    @discardableResult
    public func rawGet(at i: Int32, pointer: UnsafeRawPointer) -> LuaType {
        LuaType(rawValue: lua_rawgetp(L, i, pointer)) ?? .none
    }

    public func rawSet(at i: Int32, pointer: UnsafeRawPointer) { lua_rawsetp(L, i, pointer) }

    /// Pushes the metatable of the value at i; false (nothing pushed) if it has none.
    public func getMetatable(at i: Int32) -> Bool { lua_getmetatable(L, i) != 0 }
    /// Pops a table (or nil) and makes it the metatable of the value at i.
    public func setMetatable(at i: Int32) { lua_setmetatable(L, i) }

    /// Calls `body` with (key index, value index) for each pair of the table at i, raw.
    /// lua_next raises on a key removed during the walk, so it runs protected.
    public func forEachRaw(at i: Int32, _ body: (Int32, Int32) throws -> Void) throws {
        let t = absIndex(i)
        pushNil()
        var more: Int32 = 0
        while true {
            try check(nxl_pnext(L, t, &more))
            if more == 0 { break }
            let top = self.top
            try body(top - 1, top)
            self.top = top - 1
        }
    }

    // MARK: operations that may run metamethods (protected)

    private func check(_ status: Int32) throws {
        if status != LUA_OK { throw scriptError(status: status) }
    }

    /// Turns the error value on top into a `LuaScriptError` and pops it.
    public func scriptError(status: Int32) -> LuaScriptError {
        let msg = toString(at: -1) ?? "(error object is a \(typeName(at: -1)) value)"
        pop()
        let kind: LuaScriptError.Kind
        switch status {
        case LUA_ERRSYNTAX: kind = .syntax
        case LUA_ERRMEM: kind = .memory
        case LUA_ERRERR: kind = .handler
        default: kind = msg.hasSuffix("interrupted!") || msg.contains("interrupted!\nstack traceback") ? .interrupted : .runtime
        }
        return LuaScriptError(kind: kind, message: msg)
    }

    /// Pushes t[k] for t at i (honours __index).
    public func getField(at i: Int32, _ key: String) throws { try check(nxl_pgetfield(L, i, key)) }
    /// t[k] = top for t at i (honours __newindex); pops the value.
    public func setField(at i: Int32, _ key: String) throws { try check(nxl_psetfield(L, i, key)) }
    /// t[key on top] for t at i: replaces the key with the value.
    public func getTable(at i: Int32) throws { try check(nxl_pgettable(L, i)) }
    /// t[key] = value with both on top: pops them.
    public func setTable(at i: Int32) throws { try check(nxl_psettable(L, i)) }
    /// `tostring(v)` honouring __tostring and __name.
    public func toStringMeta(at i: Int32) throws -> String {
        try check(nxl_ptostring(L, i))
        defer { pop() }
        return toString(at: -1) ?? ""
    }
    /// `#v` honouring __len; pushes the result.
    public func length(at i: Int32) throws { try check(nxl_plen(L, i)) }
    /// Concatenates the n values on top, leaving the result.
    public func concat(_ n: Int32) throws { try check(nxl_pconcat(L, n)) }
    /// `require(name)`: pushes the module.
    public func require(_ name: String) throws { try check(nxl_prequire(L, name)) }

    /// Pushes global `name` (honours a metatable on _G).
    public func getGlobal(_ name: String) throws {
        pushGlobals()
        defer { remove(at: -2) }
        try getField(at: -1, name)
    }

    /// Sets global `name` to the value on top and pops it.
    public func setGlobal(_ name: String) throws {
        pushGlobals()
        insert(at: -2)
        defer { pop() }
        try setField(at: -2, name)
    }

    /// Calls the function below `nargs` arguments on top, protected; `traceback` adds a
    /// traceback to the message (lua.c's msghandler). Results stay on the stack.
    public func pcall(nargs: Int32, nresults: Int32 = LUA_MULTRET, traceback: Bool = false) throws {
        var handler: Int32 = 0
        if traceback {
            handler = top - nargs
            pushCFunction(nxl_msghandler)
            insert(at: handler)
        }
        let status = lua_pcallk(L, nargs, nresults, handler, 0, nil)
        if handler != 0 { remove(at: handler) }
        try check(status)
    }

    /// Compiles a chunk and pushes it as a function (lua_load is protected).
    public func load(_ code: String, name: String, mode: String = "t") throws {
        var code = code
        let status = code.withUTF8 { buf in
            buf.withMemoryRebound(to: CChar.self) {
                luaL_loadbufferx(L, $0.baseAddress, $0.count, name, mode)
            }
        }
        try check(status)
    }
}
