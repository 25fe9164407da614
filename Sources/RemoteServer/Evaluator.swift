/// Remote evaluation (`POST /nxlua/eval`): the server hands a chunk to an evaluator and
/// sends back only the result. The server knows no Lua: NXLuaRuntime's sandbox
/// implements this protocol and the nxlua executable wires it in.
public protocol RemoteEvaluator: Sendable {
    /// Runs one request to the end (the evaluator enforces the limits); called on a
    /// thread of the server's evaluation pool, never on the HDF5 gate's thread.
    func evaluate(_ request: EvaluationRequest) throws -> EvaluationResult
    /// Called once when the server stops, after its last request.
    func shutdown()
}

extension RemoteEvaluator {
    public func shutdown() {}
}

public struct EvaluationRequest: Sendable {
    /// Lua source text (bytecode is refused).
    public let code: String
    /// The request's `args` (JSON), given to the chunk as its first argument.
    public let arguments: JSON
    /// The authenticated user.
    public let user: String
    /// What the user may read (the evaluation's `nx.load` is held to it).
    public let access: FolderAccess
    /// Wall-time limit in seconds (also enforced inside pcall).
    public let timeLimit: Double
    /// Instructions at most.
    public let instructionLimit: Int
    /// Bytes of Lua memory at most.
    public let memoryLimit: Int
    /// Maps a domain ("/folder/file.nxs") to its real path inside the served folder,
    /// throwing for anything outside it (the same rules as the HTTP routes).
    public let resolveFile: @Sendable (String) throws -> String

    public init(code: String, arguments: JSON, user: String, access: FolderAccess, timeLimit: Double, instructionLimit: Int,
                memoryLimit: Int, resolveFile: @escaping @Sendable (String) throws -> String) {
        self.code = code
        self.arguments = arguments
        self.user = user
        self.access = access
        self.timeLimit = timeLimit
        self.instructionLimit = instructionLimit
        self.memoryLimit = memoryLimit
        self.resolveFile = resolveFile
    }
}

extension EvaluationRequest {
    /// `resolveFile` by the rules of the server's routes: the domain must be a file the
    /// user may read, inside the served folder.
    public static func fileResolver(_ resolver: DomainResolver, _ access: FolderAccess,
                                    user: String) -> @Sendable (String) throws -> String {
        return { domain in
            let r: DomainResolver.Resolved
            do {
                try resolver.check(domain, access, user: user)
                r = try resolver.resolve(domain)
            } catch let e as DomainError { throw EvaluationError(e.message) }
            if r.isFolder { throw EvaluationError("'\(domain)' is a folder, not a file") }
            return r.path
        }
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
