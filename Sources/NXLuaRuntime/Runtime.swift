import LuaBridge
import NDArray
#if canImport(Glibc)
import Glibc
#endif

/// A Lua state set up as nxlua users expect: Lua's standard libraries, nxlua's modules,
/// `help`, and `require` finding the shipped stdlib/ and the user's folders.
public final class Runtime {
    public let state: LuaState
    public var lua: Lua { state.lua }

    /// The stdlib folder in use (nil if none was found: help and the pretty printer
    /// then fall back to plain output).
    public let stdlibDirectory: String?

    /// `ignoreEnvironment` (nxlua -E) ignores NXLUA_PATH, LUA_PATH and LUA_CPATH.
    /// `limits` (a macro's state): memory cap, and time and instruction limits armed
    /// around each call the host makes.
    public init(ignoreEnvironment: Bool = false, limits: LuaLimits? = nil) throws {
        state = try LuaState(ignoreEnvironment: ignoreEnvironment, limits: limits)
        stdlibDirectory = Runtime.locateStdlib()
        var dirs: [String] = []
        if !ignoreEnvironment, let env = getenv("NXLUA_PATH") {
            dirs += String(cString: env).split(separator: ":").map(String.init).filter { !$0.isEmpty }
        }
        if let stdlibDirectory { dirs.append(stdlibDirectory) }
        try state.prependPackagePath(dirs)
        try state.install(CoreModule.declaration)
        // built on first use (LuaState.install(lazy:)): `nxlua -e ''` and scripts that use
        // one module do not pay for the others
        try state.install(lazy: "array") { ArrayModule.declaration }
        try state.install(lazy: "nx") { NeXusModule.declaration }
        try state.install(lazy: "detector") { DetectorModule.declaration }
        try state.install(lazy: "plot") { PlotModule.declaration }
        try state.install(lazy: "crystal") { CrystalModule.declaration }
        try state.install(lazy: "spec") { SpecModule.declaration }
        try state.install(lazy: "events") { EventsModule.declaration }
        try PlotModule.installGlobals(lua)
        try lua.setGlobal(CoreModule.help)
    }

    /// Runs `body` (a chunk at the REPL or of a script) with Ctrl-C armed: Lua raises
    /// "interrupted!", and this thread's array kernels stop between blocks (the
    /// trampoline then raises too: an unfinished result never reaches Lua).
    public func withCtrlC<R>(_ body: () throws -> R) rethrows -> R {
        state.armInterrupt()
        defer { state.disarmInterrupt() }
        return try Interruption.withPoll({ LuaInterrupt.isPending }, body)
    }

    /// Makes `help` typed alone at the REPL list the modules (stdlib/nxlua/help.lua).
    /// Only the REPL needs it, so scripts do not pay for loading help.lua at start-up.
    public func installInteractiveHelp() {
        guard stdlibDirectory != nil else { return }
        _ = try? state.run("require('nxlua.help').install()", name: "=nxlua.help")
    }

    /// Where the shipped stdlib/ lives, found without configuration: $NXLUA_STDLIB, then
    /// next to an installed binary (PREFIX/share/nxlua/stdlib, BINDIR/stdlib), then the
    /// source tree the binary was built in (a parent folder holding stdlib/nxlua/).
    public static func locateStdlib() -> String? {
        // runs at every start: plain concatenation and byte-wise searches (interpolation
        // and Character-wise lastIndex cost ~90,000 instructions here; "Start-up" in
        // docs/architecture.md)
        let marker = "/nxlua/pretty.lua"
        if let env = getenv("NXLUA_STDLIB") {
            let dir = String(cString: env)
            if exists(dir + marker) { return dir }
        }
        guard let exe = executablePath() else { return nil }
        var dir = parent(exe)
        for c in [parent(dir) + "/share/nxlua/stdlib", dir + "/stdlib"] where exists(c + marker) { return c }
        for _ in 0..<6 {
            if exists(dir + "/stdlib" + marker) { return dir + "/stdlib" }
            let up = parent(dir)
            if up == dir { break }
            dir = up
        }
        return nil
    }

    /// This process's executable (a server starts its evaluation workers from it).
    public static func executablePath() -> String? {
        withUnsafeTemporaryAllocation(of: CChar.self, capacity: 4096) { buf -> String? in
            let n = readlink("/proc/self/exe", buf.baseAddress!, buf.count - 1)
            guard n > 0 else { return nil }
            buf[n] = 0
            return String(cString: buf.baseAddress!)
        }
    }

    static func parent(_ path: String) -> String {
        let bytes = path.utf8
        guard let slash = bytes.lastIndex(of: UInt8(ascii: "/")) else { return "." }
        return slash == bytes.startIndex ? "/" : String(path[..<slash])
    }

    static func exists(_ path: String) -> Bool { access(path, F_OK) == 0 }
}
