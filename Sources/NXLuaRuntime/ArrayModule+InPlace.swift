import LuaBridge
import NDArray

/// In-place arithmetic (a:add_(b), as PyTorch names it; NumPy's a += b) and NumPy's
/// logical operations.
extension ArrayModule {
    static let inPlaceOps: [(BinaryOp, String)] = [
        (.add, "+"), (.sub, "-"), (.mul, "*"), (.div, "/"), (.floordiv, "//"), (.mod, "%"), (.pow, "^"),
        (.minimum, "minimum"), (.maximum, "maximum"),
    ]

    static var inPlaceMethods: [LuaMethodDecl<ArrayBox>] {
        inPlaceOps.map { op, symbol in
            LuaMethodDecl("\(op.rawValue)_", "a:\(op.rawValue)_(b) -> a",
                          "in place: a = a \(symbol) b with broadcasting, keeping a's dtype and memory (no temporary)",
                          help: """
                          Like NumPy's in-place operators (a += b, np.minimum(a, b, out=a)): the result goes
                          into a (a view writes through). A float result does not go into an integer array:
                          use astype first.
                          Example:  local y = x * 2; y:add_(1)   -- x * 2 + 1 with one new array
                          """) { call, box in
                let b = try operand(call, 2)
                try wrap { try box.array.binaryInPlace(op, b) }
                call.lua.pushValue(at: 1)
                return 1
            }
        }
    }

    static var logicalMethods: [LuaMethodDecl<ArrayBox>] {
        [
            binaryMethod(.logicalAnd, "elementwise a and b (non-zero is true), a bool array"),
            binaryMethod(.logicalOr, "elementwise a or b (non-zero is true), a bool array"),
            binaryMethod(.logicalXor, "elementwise a xor b (non-zero is true), a bool array"),
            LuaMethodDecl("logical_not", "a:logical_not() -> ndarray", "elementwise not a (zero is false), a bool array") { call, box in
                try push(try wrap { try NDArray.binary(.eq, .array(box.array), .integer(0)) }, call.lua, scalarIfZeroD: false)
                return 1
            },
        ]
    }

    static var logicalFunctions: [LuaFunctionDecl] {
        [
            LuaFunctionDecl("logical_and", "array.logical_and(a, b) -> ndarray", "elementwise a and b, a bool array",
                            body: binary(.logicalAnd)),
            LuaFunctionDecl("logical_or", "array.logical_or(a, b) -> ndarray", "elementwise a or b, a bool array",
                            body: binary(.logicalOr)),
            LuaFunctionDecl("logical_xor", "array.logical_xor(a, b) -> ndarray", "elementwise a xor b, a bool array",
                            body: binary(.logicalXor)),
            LuaFunctionDecl("logical_not", "array.logical_not(a) -> ndarray", "elementwise not a, a bool array") { call in
                let a = try operand(call, 1)
                var isArray = false
                if case .array = a { isArray = true }
                try push(try wrap { try NDArray.binary(.eq, a, .integer(0)) }, call.lua, scalarIfZeroD: !isArray)
                return 1
            },
        ]
    }
}
