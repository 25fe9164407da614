import FolderListing
import LuaBridge
import NDArray
import NativeLibraries
#if canImport(Glibc)
import Glibc
#endif

/// The `nxlua` module: the program itself (version, libraries, clocks, sleep) and the
/// global `help`. Thin: each function is a declaration plus a few lines.
public enum CoreModule {
    public static let version = "0.1.0"

    public static let declaration = LuaModuleDecl(
        "nxlua",
        summary: "the nxlua program: version, native libraries, clocks, sleep",
        help: """
        nxlua embeds Lua 5.4. Indices of NeXus fields and arrays are 0-based and
        half-open, as in NumPy, h5py and NeXpy; plain Lua tables stay 1-based.
        """,
        functions: [
            LuaFunctionDecl("libraries", "nxlua.libraries() -> table",
                            "the native libraries nxlua runs on, name -> version",
                            help: "Example:  for k, v in pairs(nxlua.libraries()) do print(k, v) end") { call in
                let lua = call.lua
                let libs = NativeLibraries.all
                lua.newTable(recordCount: libs.count)
                for lib in libs {
                    lua.push(lib.version)
                    lua.rawSet(at: -2, key: lib.name)
                }
                return 1
            },
            LuaFunctionDecl("time", "nxlua.time() -> seconds",
                            "wall-clock time in seconds since the epoch, with sub-microsecond resolution",
                            help: """
                            Use it to time work:  local t = nxlua.time(); ...; print(nxlua.time() - t)
                            (os.clock() counts CPU time of this process, not elapsed time.)
                            """) { call in
                var ts = timespec()
                clock_gettime(CLOCK_REALTIME, &ts)
                return call.returns(Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9)
            },
            LuaFunctionDecl("sleep", "nxlua.sleep(seconds)",
                            "waits; Ctrl-C interrupts the wait",
                            help: "Example:  nxlua.sleep(0.5)  -- half a second") { call in
                let seconds = try call.number(1)
                guard seconds >= 0, seconds.isFinite else {
                    throw LuaError.argument(1, "non-negative number of seconds expected, got \(seconds)")
                }
                try sleepPolling(seconds)
                return 0
            },
            LuaFunctionDecl("listdir", "nxlua.listdir(folder) -> names | nil, message",
                            "the entries of a folder, sorted by name (without . and ..)",
                            help: """
                            Example:  for _, name in ipairs(nxlua.listdir("/data/scan42")) do print(name) end
                            Returns nil and a message when the folder cannot be read, as io.open does.
                            """) { call in
                let path = try call.string(1)
                switch FileSystem.list(path) {
                case .success(let names): return call.returns(names)
                case .failure(let message): return call.returns(nil, "\(path): \(message)")
                }
            },
            LuaFunctionDecl("isdir", "nxlua.isdir(path) -> boolean",
                            "true if path is a folder (following symbolic links)") { call in
                return call.returns(FileSystem.isDirectory(try call.string(1)))
            },
        ],
        values: [("version", version)]
    )

    /// `help`, global: the text comes from the declarations (package.loaded["nxlua.docs"]),
    /// formatted by stdlib/nxlua/help.lua.
    public static let help = LuaFunctionDecl(
        "help", "help([x])",
        "shows help: modules with no argument; a module, function, method or object's docs",
        help: """
        help()               lists the modules and what they are for
        help(nxlua)          a module: its functions and types
        help(nxlua.sleep)    one function: signature, summary, details
        help("nxlua.sleep")  the same, by name
        """) { call in
        let lua = call.lua
        let n = call.count
        try lua.require("nxlua.help")
        try lua.getField(at: -1, "show")
        lua.remove(at: -2)
        lua.insert(at: 1)
        try lua.pcall(nargs: n, nresults: 0)
        return 0
    }

    /// Long Swift work (waits, streaming loops) asks this between steps: Ctrl-C, or this
    /// thread's limits (a macro handler's or an evaluation's time limit). The trampoline
    /// raises the limit's own message in place of this one.
    static func checkStopped(_ what: String) throws {
        try LuaInterrupt.check()
        if Interruption.isRequested { throw LuaError.runtime("\(what) stopped: a limit was reached") }
    }

    /// Sleeps in small steps, checking for Ctrl-C and this thread's limits (a macro
    /// handler's time limit) between them.
    static func sleepPolling(_ seconds: Double) throws {
        var remaining = seconds
        while remaining > 0 {
            try checkStopped("sleep")
            let step = min(remaining, 0.02)
            var ts = timespec(tv_sec: Int(step), tv_nsec: Int((step - Double(Int(step))) * 1e9))
            nanosleep(&ts, nil)
            remaining -= step
        }
        try LuaInterrupt.check()
    }
}

/// The few file-system queries the core module needs, on plain libc.
enum FileSystem {
    enum Listing { case success([String]), failure(String) }

    static func list(_ path: String) -> Listing {
        switch FolderListing.names(path) {
        case .success(let names): return .success(names.sorted())
        case .failure(let e): return .failure(e.reason)
        }
    }

    static func isDirectory(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
    }
}
