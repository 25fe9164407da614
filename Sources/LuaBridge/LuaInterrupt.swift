import CLua
import CLuaShims

/// Ctrl-C for running Lua code, as lua.c does it: SIGINT sets a hook that raises
/// "interrupted!" at the next Lua instruction. Long Swift work cannot be stopped by a
/// hook, so it polls `check()` (cheap: one load) and throws `LuaError.interrupted`.
public enum LuaInterrupt {
    /// Throws `LuaError.interrupted` once Ctrl-C has been pressed during the running chunk.
    @inline(__always)
    public static func check() throws {
        if nxl_interrupt_pending() != 0 { throw LuaError.interrupted }
    }

    /// Whether Ctrl-C has been pressed during the running chunk.
    public static var isPending: Bool { nxl_interrupt_pending() != 0 }

    /// Asks for an interrupt as Ctrl-C would (tests, watchdogs).
    public static func request() { nxl_interrupt_request() }
}
