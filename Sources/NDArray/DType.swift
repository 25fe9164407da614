/// The element types of an array, named as NumPy names them.
public enum DType: String, CaseIterable, Sendable {
    case bool, int8, int16, int32, int64, uint8, uint16, uint32, uint64, float32, float64

    public var itemSize: Int {
        switch self {
        case .bool, .int8, .uint8: return 1
        case .int16, .uint16: return 2
        case .int32, .uint32, .float32: return 4
        case .int64, .uint64, .float64: return 8
        }
    }

    public var isFloat: Bool { self == .float32 || self == .float64 }
    // switches, not `[...].contains`: kernels ask these per element, and an array literal
    // there allocated on every call (min/max of int32 ran at 0.5 G elements/s)
    public var isSignedInteger: Bool {
        switch self {
        case .int8, .int16, .int32, .int64: return true
        default: return false
        }
    }
    public var isUnsignedInteger: Bool {
        switch self {
        case .uint8, .uint16, .uint32, .uint64: return true
        default: return false
        }
    }
    public var isInteger: Bool { isSignedInteger || isUnsignedInteger }

    /// Parses a dtype name; accepts NumPy's aliases ("f8", "i4", "double", "float", "int").
    public init?(name: String) {
        if let d = DType(rawValue: name) { self = d; return }
        switch name {
        case "f4", "single": self = .float32
        case "f8", "double", "float": self = .float64
        case "i1": self = .int8
        case "i2", "short": self = .int16
        case "i4": self = .int32
        case "i8", "int", "long": self = .int64
        case "u1", "ubyte": self = .uint8
        case "u2": self = .uint16
        case "u4": self = .uint32
        case "u8": self = .uint64
        case "?", "b1", "boolean": self = .bool
        default: return nil
        }
    }

    /// NumPy's promotion of two array dtypes (np.result_type for arrays): the smallest
    /// type that holds both; int64 with uint64 gives float64, as in NumPy.
    public static func promote(_ a: DType, _ b: DType) -> DType {
        if a == b { return a }
        if a == .bool { return b }
        if b == .bool { return a }
        if a.isFloat || b.isFloat {
            if a == .float64 || b == .float64 { return .float64 }
            // float32 with an integer of 16 bits or less stays float32; wider -> float64
            let other = a.isFloat ? b : a
            if other.isFloat { return .float32 }
            return other.itemSize <= 2 ? .float32 : .float64
        }
        if a.isSignedInteger == b.isSignedInteger {
            return a.itemSize >= b.itemSize ? a : b
        }
        let (s, u) = a.isSignedInteger ? (a, b) : (b, a)
        if s.itemSize > u.itemSize { return s }
        switch u {
        case .uint8: return .int16
        case .uint16: return .int32
        case .uint32: return .int64
        default: return .float64
        }
    }

    /// The dtype sums and products accumulate in (NumPy's default): int64 for signed
    /// integers and bool, uint64 for unsigned, the float itself for floats.
    public var accumulator: DType {
        if isFloat { return self }
        if isUnsignedInteger { return .uint64 }
        return .int64
    }
}
