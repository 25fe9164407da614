/// Any failure to read or write a detector frame. The message names the file and the
/// problem ("img_00001.cbf: truncated: X-Binary-Size says 2531234 bytes, 1000 follow the
/// binary marker"), as users read it in a Lua error.
public struct DetectorError: Error, CustomStringConvertible, Equatable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }

    /// "<path>: <problem>"
    static func file(_ path: String, _ problem: String) -> DetectorError {
        DetectorError("\(path): \(problem)")
    }
}

extension String {
    /// The text of a NUL-terminated C buffer.
    init(nulTerminated buffer: [CChar]) {
        self = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
