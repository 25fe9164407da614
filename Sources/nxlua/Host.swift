import CLua
import LuaBridge
import LineEdit
import NXLuaRuntime
#if canImport(Glibc)
import Glibc
#endif

/// Runs chunks the way lua.c does: protected, with a traceback, Ctrl-C armed only while
/// Lua code runs, errors reported as "nxlua: message" on stderr.
final class Host {
    let runtime: Runtime
    var lua: Lua { runtime.lua }
    let progname = "nxlua"

    init(runtime: Runtime) { self.runtime = runtime }

    func report(_ message: String) {
        Console.writeError("\(progname): \(message)\n")
        Console.flush()
    }

    /// Calls the function below `nargs` arguments, with a traceback and Ctrl-C armed.
    /// Leaves `nresults` results (all with -1) on success.
    func docall(nargs: Int32, nresults: Int32 = LUA_MULTRET) throws {
        try runtime.withCtrlC { try lua.pcall(nargs: nargs, nresults: nresults, traceback: true) }
    }

    /// Runs a chunk of source; true on success (errors are reported).
    @discardableResult
    func dostring(_ code: String, name: String) -> Bool {
        let base = lua.top
        defer { lua.top = base }
        do {
            try lua.load(code, name: name)
            try docall(nargs: 0, nresults: 0)
            return true
        } catch {
            report("\(error)")
            return false
        }
    }

    /// `require(module)` into global `global` (-l).
    func dolibrary(global: String, module: String) -> Bool {
        let base = lua.top
        defer { lua.top = base }
        do {
            try lua.getGlobal("require")
            lua.push(module)
            try docall(nargs: 1, nresults: 1)
            try lua.setGlobal(global)
            return true
        } catch {
            report("\(error)")
            return false
        }
    }

    /// Runs a script file (nil: stdin) with `args` as `...`; a `#!` line is skipped.
    func doscript(path: String?, args: [String]) -> Bool {
        let base = lua.top
        defer { lua.top = base }
        let status = luaL_loadfilex(lua.L, path, nil)
        if status != LUA_OK {
            report(lua.scriptError(status: status).message)
            return false
        }
        lua.ensureStack(Int32(args.count) + 1)
        for a in args { lua.push(a) }
        do {
            try docall(nargs: Int32(args.count), nresults: 0)
            return true
        } catch {
            report("\(error)")
            return false
        }
    }

    /// The global `arg` table: arg[0] is the script, negative indices the options before
    /// it, positive ones the script's arguments (as lua.c).
    func createArgTable(argv: [String], scriptIndex: Int?) {
        let script = scriptIndex ?? 0
        lua.newTable(arrayCount: max(0, argv.count - script - 1), recordCount: script + 1)
        for (i, a) in argv.enumerated() {
            lua.push(a)
            lua.rawSet(at: -2, index: i - script)
        }
        try? lua.setGlobal("arg")
    }

    /// NXLUA_INIT: a chunk, or @file to run a file.
    func handleInit() -> Bool {
        guard let env = getenv("NXLUA_INIT") else { return true }
        let value = String(cString: env)
        if value.hasPrefix("@") { return doscript(path: String(value.dropFirst()), args: []) }
        return dostring(value, name: "=NXLUA_INIT")
    }
}
