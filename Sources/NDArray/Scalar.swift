/// A Swift type that stores one element of an array. Every operation is written once,
/// generic over this protocol, and specialised by the compiler for each dtype.
public protocol NDScalar: Sendable {
    static var dtype: DType { get }
    static var zero: Self { get }
    init(fromDouble v: Double)
    init(fromInt v: Int64)
    var asDouble: Double { get }
    var asInt64: Int64 { get }
}

extension Bool: NDScalar {
    public static var dtype: DType { .bool }
    public static var zero: Bool { false }
    public init(fromDouble v: Double) { self = v != 0 }
    public init(fromInt v: Int64) { self = v != 0 }
    public var asDouble: Double { self ? 1 : 0 }
    public var asInt64: Int64 { self ? 1 : 0 }
}

/// Float-to-integer conversion as NumPy's astype does for values in range: truncation;
/// NaN and out-of-range values become 0 instead of trapping.
@inline(__always)
func truncating<T: FixedWidthInteger>(_ v: Double, to: T.Type) -> T {
    guard v.isFinite else { return 0 }
    return T(exactly: v.rounded(.towardZero)) ?? (v < 0 ? T.min : T.max)
}

extension Int8: NDScalar {
    public static var dtype: DType { .int8 }
    public init(fromDouble v: Double) { self = truncating(v, to: Int8.self) }
    public init(fromInt v: Int64) { self = Int8(truncatingIfNeeded: v) }
    public var asDouble: Double { Double(self) }
    public var asInt64: Int64 { Int64(self) }
}
extension Int16: NDScalar {
    public static var dtype: DType { .int16 }
    public init(fromDouble v: Double) { self = truncating(v, to: Int16.self) }
    public init(fromInt v: Int64) { self = Int16(truncatingIfNeeded: v) }
    public var asDouble: Double { Double(self) }
    public var asInt64: Int64 { Int64(self) }
}
extension Int32: NDScalar {
    public static var dtype: DType { .int32 }
    public init(fromDouble v: Double) { self = truncating(v, to: Int32.self) }
    public init(fromInt v: Int64) { self = Int32(truncatingIfNeeded: v) }
    public var asDouble: Double { Double(self) }
    public var asInt64: Int64 { Int64(self) }
}
extension Int64: NDScalar {
    public static var dtype: DType { .int64 }
    public init(fromDouble v: Double) { self = truncating(v, to: Int64.self) }
    public init(fromInt v: Int64) { self = v }
    public var asDouble: Double { Double(self) }
    public var asInt64: Int64 { self }
}
extension UInt8: NDScalar {
    public static var dtype: DType { .uint8 }
    public init(fromDouble v: Double) { self = truncating(v, to: UInt8.self) }
    public init(fromInt v: Int64) { self = UInt8(truncatingIfNeeded: v) }
    public var asDouble: Double { Double(self) }
    public var asInt64: Int64 { Int64(self) }
}
extension UInt16: NDScalar {
    public static var dtype: DType { .uint16 }
    public init(fromDouble v: Double) { self = truncating(v, to: UInt16.self) }
    public init(fromInt v: Int64) { self = UInt16(truncatingIfNeeded: v) }
    public var asDouble: Double { Double(self) }
    public var asInt64: Int64 { Int64(self) }
}
extension UInt32: NDScalar {
    public static var dtype: DType { .uint32 }
    public init(fromDouble v: Double) { self = truncating(v, to: UInt32.self) }
    public init(fromInt v: Int64) { self = UInt32(truncatingIfNeeded: v) }
    public var asDouble: Double { Double(self) }
    public var asInt64: Int64 { Int64(self) }
}
extension UInt64: NDScalar {
    public static var dtype: DType { .uint64 }
    public init(fromDouble v: Double) { self = truncating(v, to: UInt64.self) }
    public init(fromInt v: Int64) { self = UInt64(truncatingIfNeeded: v) }
    public var asDouble: Double { Double(self) }
    public var asInt64: Int64 { Int64(truncatingIfNeeded: self) }
}
extension Float: NDScalar {
    public static var dtype: DType { .float32 }
    public init(fromDouble v: Double) { self = Float(v) }
    public init(fromInt v: Int64) { self = Float(v) }
    public var asDouble: Double { Double(self) }
    public var asInt64: Int64 { truncating(Double(self), to: Int64.self) }
}
extension Double: NDScalar {
    public static var dtype: DType { .float64 }
    public init(fromDouble v: Double) { self = v }
    public init(fromInt v: Int64) { self = Double(v) }
    public var asDouble: Double { self }
    public var asInt64: Int64 { truncating(self, to: Int64.self) }
}

/// Calls `visit` with the Swift type of a dtype: the one switch from a run-time dtype to
/// compile-time specialised code.
public protocol DTypeVisitor {
    associatedtype Result
    func visit<T: NDScalar>(_ type: T.Type) -> Result
}

extension DType {
    public func dispatch<V: DTypeVisitor>(_ v: V) -> V.Result {
        switch self {
        case .bool: return v.visit(Bool.self)
        case .int8: return v.visit(Int8.self)
        case .int16: return v.visit(Int16.self)
        case .int32: return v.visit(Int32.self)
        case .int64: return v.visit(Int64.self)
        case .uint8: return v.visit(UInt8.self)
        case .uint16: return v.visit(UInt16.self)
        case .uint32: return v.visit(UInt32.self)
        case .uint64: return v.visit(UInt64.self)
        case .float32: return v.visit(Float.self)
        case .float64: return v.visit(Double.self)
        }
    }
}
