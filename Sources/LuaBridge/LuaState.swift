import CLua
import CLuaShims

/// An owned Lua 5.4 state with the standard libraries; closed on deinit.
///
/// Out-of-memory policy: the allocator aborts the process with a message when the
/// system refuses memory (see docs/architecture.md). Lua code therefore never sees a
/// memory error, and no API call made from Swift can raise one.
public final class LuaState {
    public let lua: Lua
    /// The sandbox limits the state's allocator counts into (kept alive with the state).
    public let limits: LuaLimits?

    /// A new state; `libraries` opens Lua's standard libraries (as lua.c does);
    /// `ignoreEnvironment` makes `package` ignore LUA_PATH/LUA_CPATH (lua -E);
    /// `limits` makes a sandboxed state (memory cap, time limit: see LuaLimits).
    public init(libraries: Bool = true, ignoreEnvironment: Bool = false, limits: LuaLimits? = nil) throws {
        _ = LuaCallbacks.installed
        self.limits = limits
        guard let L = limits.map({ nxl_newstate_limited($0.raw) }) ?? nxl_newstate() else {
            throw LuaScriptError(kind: .memory, message: "cannot create a Lua state")
        }
        lua = Lua(L)
        if ignoreEnvironment {
            lua.push(true)
            lua.rawSet(at: Lua.registryIndex, key: "LUA_NOENV")
        }
        if libraries {
            let status = nxl_popenlibs(L)
            if status != LUA_OK { throw lua.scriptError(status: status) }
        }
    }

    deinit { lua_close(lua.L) }

    public var L: OpaquePointer { lua.L }

    /// Sets a module's table as global `name` and in package.loaded, so both
    /// `nx.load` and `require "nx"` work.
    public func install(_ module: LuaModuleDecl, global: Bool = true) throws {
        lua.push(module: module)
        try setLoaded(module.name)
        if global {
            lua.pushValue(at: -1)
            try lua.setGlobal(module.name)
        }
        lua.pop()
    }

    /// Installs a module that is built on first use: global `name` and package.loaded
    /// hold its table from the start, empty, with a metatable that fills it from
    /// `declaration` when a field is read or set, the table is called, walked with pairs
    /// or measured, and then goes away. A script that never touches the module does not
    /// pay for building it (the declarations' closures and generic types were most of
    /// `nxlua -e ''`). help and completion fill every module first, in installation order.
    public func install(lazy name: String, _ declaration: @escaping @Sendable () -> LuaModuleDecl) throws {
        let module = LazyModule(declaration)
        lua.ensureStack(6)
        lua.newTable()
        let t = lua.absIndex(-1)
        module.table = lua_topointer(lua.L, t)
        lua.newTable(recordCount: 5)
        lua.push(function: "__index") { call in
            try module.fill(call.lua, at: 1)
            call.lua.pushValue(at: 2)
            _ = lua_rawget(call.lua.L, 1)  // a filled module table has no __index
            return 1
        }
        lua.rawSet(at: -2, key: "__index")
        lua.push(function: "__newindex") { call in
            try module.fill(call.lua, at: 1)
            if lua_type(call.lua.L, 2) == LUA_TNIL { throw LuaError.runtime("index is nil") }
            if lua_type(call.lua.L, 2) == LUA_TNUMBER, let k = call.lua.toNumber(at: 2), k.isNaN { throw LuaError.runtime("index is NaN") }
            call.lua.top = 3
            lua_rawset(call.lua.L, 1)
            return 0
        }
        lua.rawSet(at: -2, key: "__newindex")
        lua.push(function: "__call") { call in
            let decl = try module.fill(call.lua, at: 1)
            guard let body = decl.call else { throw LuaError.runtime("attempt to call a table value (module '\(decl.name)')") }
            call.lua.remove(at: 1)
            return try body(call)
        }
        lua.rawSet(at: -2, key: "__call")
        lua.push(function: "__pairs") { call in
            try module.fill(call.lua, at: 1)
            call.lua.pushGlobals()
            call.lua.rawGet(at: -1, key: "next")
            call.lua.remove(at: -2)
            call.lua.pushValue(at: 1)
            call.lua.pushNil()
            return 3
        }
        lua.rawSet(at: -2, key: "__pairs")
        lua.push(function: "__len") { call in
            try module.fill(call.lua, at: 1)
            call.lua.push(call.lua.rawLength(at: 1))
            return 1
        }
        lua.rawSet(at: -2, key: "__len")
        lua.setMetatable(at: t)
        // the docs keep their place in installation order whenever the module is filled
        lua.pushValue(at: t)
        LuaDocs.defer(lua) { lua, docs, mod in
            guard let decl = try? module.fill(lua, at: mod) else { return }
            LuaDocs.document(lua, module: decl, docs: docs, table: mod)
        }
        try setLoaded(name)
        try lua.setGlobal(name)
    }

    /// package.loaded[name] = value on top (kept on the stack).
    public func setLoaded(_ name: String) throws {
        lua.pushValue(at: Lua.registryIndex)
        lua.rawGet(at: -1, key: "_LOADED")
        lua.pushValue(at: -3)
        lua.rawSet(at: -2, key: name)
        lua.pop(2)
    }

    /// Runs a chunk of source and returns its results converted to strings (for tests and
    /// simple hosts). Errors carry a traceback.
    @discardableResult
    public func run(_ code: String, name: String = "=(swift)") throws -> [String] {
        let base = lua.top
        defer { lua.top = base }
        try lua.load(code, name: name)
        try lua.pcall(nargs: 0, traceback: true)
        var out: [String] = []
        for i in (base + 1)..<(lua.top + 1) {
            out.append(try lua.toStringMeta(at: i))
        }
        return out
    }

    /// Prepends folders to package.path (each as DIR/?.lua and DIR/?/init.lua).
    public func prependPackagePath(_ dirs: [String]) throws {
        guard !dirs.isEmpty else { return }
        let base = lua.top
        defer { lua.top = base }
        try lua.getGlobal("package")
        guard lua.type(at: -1) == .table else { return }
        try lua.getField(at: -1, "path")
        let old = lua.toString(at: -1) ?? ""
        lua.pop()
        // a plain loop, not [String].joined: that generic call makes the Swift runtime look
        // up a protocol conformance, a scan of all ~10,800 conformance records that was a
        // quarter of the instructions of `nxlua -e ''` (docs/architecture.md, "Start-up")
        var path = ""
        for dir in dirs { path += "\(dir)/?.lua;\(dir)/?/init.lua;" }
        path += old
        if old.isEmpty { path.removeLast() }
        lua.push(path)
        try lua.setField(at: -2, "path")
    }

    /// Lua's own warnings (lua -W).
    public func setWarnings(_ on: Bool) { nxl_setwarnings(lua.L, on ? 1 : 0) }

    /// Arms Ctrl-C for the chunk about to run on this state.
    public func armInterrupt() { nxl_interrupt_arm(lua.L) }
    /// Disarms Ctrl-C once the chunk has ended, so the hook cannot kill the next one.
    public func disarmInterrupt() { nxl_interrupt_disarm(lua.L) }
}

/// A module installed with `install(lazy:)`: its declaration, made once it is needed.
final class LazyModule: @unchecked Sendable {
    private let make: @Sendable () -> LuaModuleDecl
    private var declaration: LuaModuleDecl?
    /// The placeholder table (its identity only).
    var table: UnsafeRawPointer?

    init(_ make: @escaping @Sendable () -> LuaModuleDecl) { self.make = make }

    /// Fills the placeholder table at `index` (once; a state runs on one thread at a time).
    @discardableResult
    func fill(_ lua: Lua, at index: Int32) throws -> LuaModuleDecl {
        // the metamethods can be called by hand (getmetatable(nx).__index(1, k)): refuse
        // anything but the module's own table rather than fill (or raw-set into) it
        guard lua_type(lua.L, index) == LUA_TTABLE, lua_topointer(lua.L, index) == table else {
            throw LuaError.runtime("a module table expected")
        }
        if let declaration { return declaration }
        let decl = make()
        declaration = decl
        let t = lua.absIndex(index)
        lua.pushNil()
        lua.setMetatable(at: t)
        lua.fill(module: decl, at: t)
        return decl
    }
}
