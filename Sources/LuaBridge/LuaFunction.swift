import CLua
import CLuaShims

/// The body of a Swift function bound into Lua: reads its arguments from `call`, pushes
/// its results and returns how many. It may throw; it must never raise a Lua error.
public typealias LuaFunctionBody = @Sendable (LuaCall) throws -> Int32

/// One bound function, declared once: registration, `help()` text and tab completion all
/// come from this declaration.
public struct LuaFunctionDecl: Sendable {
    /// The name in its table ("load"); help shows it qualified ("nx.load").
    public let name: String
    /// The call as users write it: "nx.load(path [, mode]) -> File".
    public let signature: String
    /// One line for listings.
    public let summary: String
    /// Longer help: arguments, results, examples.
    public let help: String
    public let body: LuaFunctionBody

    public init(_ name: String, _ signature: String, _ summary: String, help: String = "",
                body: @escaping LuaFunctionBody) {
        self.name = name
        self.signature = signature
        self.summary = summary
        self.help = help
        self.body = body
    }
}

/// The heap box a Lua closure holds (retained; released by the closure's __gc).
final class LuaFunctionBox {
    let name: String
    let body: LuaFunctionBody
    init(name: String, body: @escaping LuaFunctionBody) {
        self.name = name
        self.body = body
    }
}

/// The Swift side of the C trampoline. Nothing here raises: a thrown error becomes a
/// status plus a pushed message, and the trampoline raises after this frame returns.
private let dispatchSwiftCall: nxl_Dispatch = { L, box, argIndex in
    let fn = Unmanaged<LuaFunctionBox>.fromOpaque(box!).takeUnretainedValue()
    let lua = Lua(L!)
    do {
        return try fn.body(LuaCall(lua))
    } catch let error as LuaError {
        lua.ensureStack(2)
        switch error {
        case .argument(let n, let message):
            lua.push(message)
            argIndex!.pointee = n
            return Int32(NXL_ARGERROR)
        case .runtime(let message):
            lua.push(message)
            return Int32(NXL_RAISE_WHERE)
        case .valueOnStack:
            return Int32(NXL_RAISE)
        case .interrupted:
            lua.push("interrupted!")
            return Int32(NXL_RAISE)
        }
    } catch let error as LuaScriptError {
        // A Lua error met inside Swift (a protected call failed): pass its message on.
        lua.ensureStack(1)
        lua.push(error.message)
        return Int32(NXL_RAISE)
    } catch {
        lua.ensureStack(1)
        lua.push(String(describing: error))
        return Int32(NXL_RAISE_WHERE)
    }
}

private let releaseSwiftObject: nxl_Release = { p in
    Unmanaged<AnyObject>.fromOpaque(p!).release()
}

enum LuaCallbacks {
    /// Installs the dispatch and release functions the C shim calls (idempotent).
    static let installed: Bool = {
        nxl_install_callbacks(dispatchSwiftCall, releaseSwiftObject)
        return true
    }()
}

extension Lua {
    /// Pushes a Lua function that runs `body`; `name` is used in error messages.
    public func push(function name: String, _ body: @escaping LuaFunctionBody) {
        _ = LuaCallbacks.installed
        let box = Unmanaged.passRetained(LuaFunctionBox(name: name, body: body)).toOpaque()
        nxl_pushswiftfunction(L, box)
    }

    public func push(_ decl: LuaFunctionDecl) { push(function: decl.name, decl.body) }
}

/// The arguments of one call of a bound function, with Lua's argument checks.
/// Indices are Lua's (1-based); messages use Lua's wording, e.g.
/// "bad argument #1 to 'load' (string expected, got nil)".
public struct LuaCall {
    public let lua: Lua

    /// Lua itself names the function in argument errors (luaL_argerror), so a call
    /// carries nothing but the state: entering Swift costs no allocation.
    public init(_ lua: Lua) { self.lua = lua }

    /// Number of arguments passed.
    public var count: Int32 { lua.top }

    public func type(_ i: Int32) -> LuaType { lua.type(at: i) }
    public func isNoneOrNil(_ i: Int32) -> Bool { lua.isNoneOrNil(at: i) }

    /// "string expected, got nil" for argument i.
    public func typeError(_ i: Int32, expected: String) -> LuaError {
        let got = lua.type(at: i) == .none ? "no value" : lua.typeName(at: i)
        return .argument(i, "\(expected) expected, got \(got)")
    }

    public func string(_ i: Int32) throws -> String {
        let t = lua.type(at: i)
        guard t == .string || t == .number, let s = lua.toString(at: i) else {
            throw typeError(i, expected: "string")
        }
        return s
    }

    public func optString(_ i: Int32) throws -> String? {
        isNoneOrNil(i) ? nil : try string(i)
    }

    public func integer(_ i: Int32) throws -> Int {
        if let v = lua.toInteger(at: i) { return v }
        if lua.type(at: i) == .number || lua.toNumber(at: i) != nil {
            throw LuaError.argument(i, "number has no integer representation")
        }
        throw typeError(i, expected: "number")
    }

    public func optInteger(_ i: Int32) throws -> Int? {
        isNoneOrNil(i) ? nil : try integer(i)
    }

    public func number(_ i: Int32) throws -> Double {
        guard let v = lua.toNumber(at: i) else { throw typeError(i, expected: "number") }
        return v
    }

    public func optNumber(_ i: Int32) throws -> Double? {
        isNoneOrNil(i) ? nil : try number(i)
    }

    public func boolean(_ i: Int32) -> Bool { lua.toBoolean(at: i) }

    /// Checks that argument i is a table.
    public func table(_ i: Int32) throws {
        if lua.type(at: i) != .table { throw typeError(i, expected: "table") }
    }

    /// Checks that argument i is a table of options whose keys are all among `known`:
    /// a misspelt option is an error naming it and listing the known ones, never silently
    /// ignored. Array entries (integer keys) are allowed when `positional` is true.
    public func options(_ i: Int32, known: [String], positional: Bool = false) throws {
        try table(i)
        var unknown: [String] = []
        try lua.forEachRaw(at: i) { k, _ in
            switch lua.type(at: k) {
            case .string:
                let key = lua.toString(at: k) ?? ""
                if !known.contains(key) { unknown.append("'\(key)'") }
            case .number where positional && lua.isInteger(at: k):
                break
            default:
                unknown.append("a \(lua.typeName(at: k)) key")
            }
        }
        guard unknown.isEmpty else {
            let list = known.sorted().joined(separator: ", ")
            throw LuaError.argument(i, "unknown option\(unknown.count > 1 ? "s" : "") \(unknown.sorted().joined(separator: ", ")) (known: \(list))")
        }
    }

    /// Checks that argument i is present (any value, nil included, as luaL_checkany).
    public func any(_ i: Int32) throws {
        if lua.type(at: i) == .none { throw LuaError.argument(i, "value expected") }
    }

    /// One of the given option strings (luaL_checkoption), or `default` when absent.
    public func option(_ i: Int32, _ options: [String], default def: String? = nil) throws -> String {
        if let def, isNoneOrNil(i) { return def }
        let s = try string(i)
        guard options.contains(s) else { throw LuaError.argument(i, "invalid option '\(s)'") }
        return s
    }

    /// Pushes one value and returns 1, for `return call.returns(x)` (no allocation).
    @inlinable
    public func returns<T: LuaPushable>(_ value: T) -> Int32 {
        value.push(to: lua)
        return 1
    }

    /// Pushes two values and returns 2.
    @inlinable
    public func returns<A: LuaPushable, B: LuaPushable>(_ a: A, _ b: B) -> Int32 {
        lua.ensureStack(2)
        a.push(to: lua)
        b.push(to: lua)
        return 2
    }

    /// Pushes the values (nil for nil) and returns their count.
    public func returns(_ values: (any LuaPushable)?...) -> Int32 {
        lua.ensureStack(Int32(values.count))
        for v in values {
            if let v { v.push(to: lua) } else { lua.pushNil() }
        }
        return Int32(values.count)
    }
}

/// A Swift value that can be pushed onto a Lua stack.
public protocol LuaPushable: Sendable {
    func push(to lua: Lua)
}

extension Bool: LuaPushable { public func push(to lua: Lua) { lua.push(self) } }
extension Int: LuaPushable { public func push(to lua: Lua) { lua.push(self) } }
extension Double: LuaPushable { public func push(to lua: Lua) { lua.push(self) } }
extension String: LuaPushable { public func push(to lua: Lua) { lua.push(self) } }
extension Array: LuaPushable where Element == String { public func push(to lua: Lua) { lua.push(self) } }
