/// Remote evaluation (`POST /nxlua/eval`): the server hands a chunk to an evaluator and
/// sends back only the result. The server knows no Lua: NXLuaRuntime's sandbox
/// implements this protocol and the nxlua executable wires it in.
public protocol RemoteEvaluator: Sendable {
    /// Runs one request to the end (the evaluator enforces the limits); called on a
    /// thread of the server's evaluation pool, never on the HDF5 gate's thread.
    func evaluate(_ request: EvaluationRequest) throws -> EvaluationResult
}

public struct EvaluationRequest: Sendable {
    /// Lua source text (bytecode is refused).
    public let code: String
    /// The request's `args` (JSON), given to the chunk as its first argument.
    public let arguments: JSON
    /// The authenticated user.
    public let user: String
    /// Wall-time limit in seconds (also enforced inside pcall).
    public let timeLimit: Double
    /// Instructions at most.
    public let instructionLimit: Int
    /// Bytes of Lua memory at most.
    public let memoryLimit: Int
    /// Maps a domain ("/folder/file.nxs") to its real path inside the served folder,
    /// throwing for anything outside it (the same rules as the HTTP routes).
    public let resolveFile: @Sendable (String) throws -> String

    public init(code: String, arguments: JSON, user: String, timeLimit: Double, instructionLimit: Int,
                memoryLimit: Int, resolveFile: @escaping @Sendable (String) throws -> String) {
        self.code = code
        self.arguments = arguments
        self.user = user
        self.timeLimit = timeLimit
        self.instructionLimit = instructionLimit
        self.memoryLimit = memoryLimit
        self.resolveFile = resolveFile
    }
}

/// What travels back: JSON for scalars and tables, or one array in binary
/// (docs/remote.md, "Remote evaluation": the X-NXLua-DType and X-NXLua-Shape headers).
public enum EvaluationResult: Sendable, Equatable {
    case json(JSON)
    /// `dtype` as nxlua names it ("float64", "int32", ...); little-endian C-order bytes.
    case array(dtype: String, shape: [Int], bytes: [UInt8])
}

/// A failed evaluation (a Lua error, a limit reached): 400 with the message.
public struct EvaluationError: Error, CustomStringConvertible, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
