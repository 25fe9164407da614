/// An error of the remote client: what went wrong, naming the server, domain and object.
public struct RemoteError: Error, CustomStringConvertible, Sendable {
    public let message: String
    /// The HTTP status when the server answered with an error (nil: no answer).
    public let status: Int?
    public init(_ message: String, status: Int? = nil) {
        self.message = message
        self.status = status
    }
    public var description: String { message }
}
