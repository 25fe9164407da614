import CLua
import CLuaShims

/// An error a Swift function bound into Lua throws. The bridge turns it into a Lua error
/// after the Swift frame has returned (see `LuaFunction`), so `pcall` catches it.
public enum LuaError: Error, CustomStringConvertible {
    /// Misuse of an argument: raised as "bad argument #n to 'f' (message)", Lua's format.
    case argument(Int32, String)
    /// A failure: raised as "chunk:line: message", as `luaL_error` does.
    case runtime(String)
    /// The Lua value on top of the stack is the error: raised as is (re-raising).
    case valueOnStack
    /// Ctrl-C reached a long Swift call (it polled `LuaInterrupt.check()`).
    case interrupted

    public var description: String {
        switch self {
        case .argument(let n, let msg): return "bad argument #\(n) (\(msg))"
        case .runtime(let msg): return msg
        case .valueOnStack: return "(Lua error value)"
        case .interrupted: return "interrupted!"
        }
    }
}

/// An error that came out of Lua into Swift (a failed chunk or call): the message, with
/// a traceback when the call was made with one.
public struct LuaScriptError: Error, CustomStringConvertible {
    public enum Kind: Sendable { case syntax, runtime, memory, handler, interrupted }
    public let kind: Kind
    public let message: String
    public var description: String { message }

    /// Whether this is a syntax error that more input may complete (lua.c's rule).
    public var isIncompleteInput: Bool { kind == .syntax && message.hasSuffix("<eof>") }
}
