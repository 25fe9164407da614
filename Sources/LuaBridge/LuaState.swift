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
        let ours = dirs.flatMap { ["\($0)/?.lua", "\($0)/?/init.lua"] }.joined(separator: ";")
        lua.push(old.isEmpty ? ours : ours + ";" + old)
        try lua.setField(at: -2, "path")
    }

    /// Lua's own warnings (lua -W).
    public func setWarnings(_ on: Bool) { nxl_setwarnings(lua.L, on ? 1 : 0) }

    /// Arms Ctrl-C for the chunk about to run on this state.
    public func armInterrupt() { nxl_interrupt_arm(lua.L) }
    /// Disarms Ctrl-C once the chunk has ended, so the hook cannot kill the next one.
    public func disarmInterrupt() { nxl_interrupt_disarm(lua.L) }
}
