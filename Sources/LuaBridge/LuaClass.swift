import CLua
import CLuaShims

/// How a Swift class looks in Lua: one named metatable with __gc, __close, __tostring,
/// __name, a method table, and any other metamethods the type needs. Declared once per
/// type (a `static let`), registered lazily in each state on first push.
///
/// The userdata holds a retained reference. `close` (or `<close>`, or `obj:close()`)
/// runs the type's close action and releases the reference at once; from then on the
/// value is in the closed state and every method raises "attempt to use a closed X",
/// as Lua's own files do. __gc releases what is left.
///
/// `Object` is a class, or a class-bound protocol's existential (`any P` with P:
/// AnyObject): one Lua type then serves every class conforming to P (Swift does not let
/// such an existential satisfy `AnyObject`, hence no constraint; the value is boxed with
/// `as AnyObject`, which for a class-bound existential is the instance itself).
public final class LuaClass<Object>: @unchecked Sendable {
    /// Metatable __name, e.g. "nx.File". Shown in errors and by tostring.
    public let name: String
    public let summary: String
    public let help: String
    public let methods: [LuaMethodDecl<Object>]
    /// Extra metamethods by name ("__len", "__add", "__call", "__newindex", ...).
    public let metamethods: [String: LuaFunctionBody]
    /// Lookup of keys that are not methods (e.g. a group's children): pushes the value
    /// for the key at index 2 of the call and returns 1, or returns 0 for nil.
    public let index: (@Sendable (LuaCall, Object) throws -> Int32)?
    /// Names for tab completion beyond the methods (e.g. a group's children).
    public let completions: (@Sendable (Object) -> [String])?
    /// What closing does before the reference is dropped (flush, close a handle, ...).
    public let close: (@Sendable (Object) throws -> Void)?
    /// The text `tostring` and `print` show; default "name: 0x...".
    public let describe: (@Sendable (Object) -> String)?

    private let key = UnsafeMutableRawPointer.allocate(byteCount: 1, alignment: 1)

    public init(_ name: String, summary: String = "", help: String = "",
                methods: [LuaMethodDecl<Object>] = [],
                metamethods: [String: LuaFunctionBody] = [:],
                index: (@Sendable (LuaCall, Object) throws -> Int32)? = nil,
                completions: (@Sendable (Object) -> [String])? = nil,
                close: (@Sendable (Object) throws -> Void)? = nil,
                describe: (@Sendable (Object) -> String)? = nil) {
        self.name = name
        self.summary = summary
        self.help = help
        self.methods = methods
        self.metamethods = metamethods
        self.index = index
        self.completions = completions
        self.close = close
        self.describe = describe
    }

    /// What help shows of each method.
    public var methodDocs: [LuaDoc] {
        methods.map { LuaDoc(name: $0.name, signature: $0.signature, summary: $0.summary, help: $0.help) }
    }

    // MARK: registration

    /// Pushes this type's metatable, creating it in this state on first use.
    public func pushMetatable(_ lua: Lua) {
        if lua.rawGet(at: Lua.registryIndex, pointer: key) == .table { return }
        lua.pop()
        build(lua)
    }

    private func build(_ lua: Lua) {
        lua.ensureStack(8)
        lua.newTable(recordCount: 12)
        let mt = lua.absIndex(-1)
        // __gc first: Lua marks an object for finalization only if its metatable has
        // __gc when setmetatable runs.
        lua.pushCFunction(nxl_object_gc)
        lua.rawSet(at: mt, key: "__gc")
        lua.push(name)
        lua.rawSet(at: mt, key: "__name")

        // Method table, with close when the type can be closed.
        lua.newTable(recordCount: methods.count + 1)
        let mtab = lua.absIndex(-1)
        for m in methods {
            let body = m.body
            lua.push(function: m.name) { [unowned self] call in
                try body(call, try call.object(1, self))
            }
            lua.rawSet(at: mtab, key: m.name)
        }
        // help(a.sum) finds the method's entry by its function value (the module records
        // the entry by name, "Class:method", when the docs are built).
        let className = name, methodNames = methods.map(\.name)
        lua.pushValue(at: mtab)
        LuaDocs.defer(lua) { lua, docs, mtab in
            for m in methodNames {
                lua.rawGet(at: mtab, key: m)
                lua.rawGet(at: docs, key: "names")
                if lua.rawGet(at: -1, key: "\(className):\(m)") == .table {
                    LuaDocs.value(lua, docs: docs, valueIndex: -3)
                }
                lua.pop(3)
            }
        }
        let closeBody: LuaFunctionBody = { [unowned self] call in
            try self.closeObject(call)
            return 0
        }
        if methods.first(where: { $0.name == "close" }) == nil {
            lua.push(function: "close", closeBody)
            lua.rawSet(at: mtab, key: "close")
        }
        lua.pushValue(at: mtab)
        lua.rawSet(at: mt, key: "__methods")

        if let index {
            // Methods win over other keys (as in nexusformat); then the type's lookup.
            lua.push(function: "__index") { [unowned self] call in
                let lua = call.lua
                if lua.type(at: 2) == .string, lua.getMetatable(at: 1) {
                    lua.rawGet(at: -1, key: "__methods")
                    lua.pushValue(at: 2)
                    if lua_rawget(lua.L, -2) != LUA_TNIL { return 1 }
                    lua.pop(3)
                }
                return try index(call, try call.object(1, self))
            }
            lua.rawSet(at: mt, key: "__index")
        } else {
            lua.pushValue(at: mtab)
            lua.rawSet(at: mt, key: "__index")
        }
        lua.pop()  // method table

        lua.push(function: "__close") { [unowned self] call in
            try self.closeObject(call)
            return 0
        }
        lua.rawSet(at: mt, key: "__close")

        lua.push(function: "__tostring") { [unowned self] call in
            let lua = call.lua
            var closed: Int32 = 0
            if let p = nxl_toobject(lua.L, 1, self.key, &closed) {
                let obj = Unmanaged<AnyObject>.fromOpaque(p).takeUnretainedValue() as! Object
                lua.push(self.describe?(obj) ?? "\(self.name): \(p)")
            } else {
                lua.push("\(self.name) (closed)")
            }
            return 1
        }
        lua.rawSet(at: mt, key: "__tostring")

        if let completions {
            lua.push(function: "__complete") { [unowned self] call in
                let obj = try call.object(1, self)
                call.lua.push(completions(obj))
                return 1
            }
            lua.rawSet(at: mt, key: "__complete")
        }

        for (event, body) in metamethods {
            lua.push(function: event, body)
            lua.rawSet(at: mt, key: event)
        }

        lua.pushValue(at: mt)
        lua.rawSet(at: Lua.registryIndex, pointer: key)
        lua.pushValue(at: mt)
        lua.rawSet(at: Lua.registryIndex, key: name)  // also reachable by name, as luaL_newmetatable
    }

    private func closeObject(_ call: LuaCall) throws {
        let lua = call.lua
        var closed: Int32 = 0
        guard let p = nxl_toobject(lua.L, 1, key, &closed) else {
            if closed != 0 { return }  // closing twice is harmless, as for Lua files
            throw call.typeError(1, expected: name)
        }
        let obj = Unmanaged<AnyObject>.fromOpaque(p).takeUnretainedValue() as! Object
        defer { nxl_releaseobject(lua.L, 1) }
        try close?(obj)
    }

    // MARK: values

    /// Pushes `object` as a userdata of this type (retained until closed or collected).
    public func push(_ object: Object, to lua: Lua) {
        _ = LuaCallbacks.installed
        lua.ensureStack(3)
        pushMetatable(lua)
        lua.pop()
        nxl_pushobject(lua.L, Unmanaged.passRetained(object as AnyObject).toOpaque(), key)
    }

    /// The object at index i, if it is of this type and open.
    public func object(at i: Int32, in lua: Lua) -> Object? {
        var closed: Int32 = 0
        guard let p = nxl_toobject(lua.L, i, key, &closed) else { return nil }
        return (Unmanaged<AnyObject>.fromOpaque(p).takeUnretainedValue() as! Object)
    }

    /// Whether the value at i is of this type but closed.
    public func isClosed(at i: Int32, in lua: Lua) -> Bool {
        var closed: Int32 = 0
        _ = nxl_toobject(lua.L, i, key, &closed)
        return closed != 0
    }
}

extension LuaCall {
    /// Argument i as an object of `cls`: "bad argument #1 to 'f' (nx.File expected, got
    /// nil)" for a wrong type, "attempt to use a closed nx.File" for a closed one.
    public func object<T>(_ i: Int32, _ cls: LuaClass<T>) throws -> T {
        if let obj = cls.object(at: i, in: lua) { return obj }
        if cls.isClosed(at: i, in: lua) { throw LuaError.runtime("attempt to use a closed \(cls.name)") }
        throw typeError(i, expected: cls.name)
    }
}

/// One method of a `LuaClass`, declared once like a function; the body gets the checked
/// `self` object (argument 1).
public struct LuaMethodDecl<Object>: Sendable {
    public let name: String
    public let signature: String
    public let summary: String
    public let help: String
    public let body: @Sendable (LuaCall, Object) throws -> Int32

    public init(_ name: String, _ signature: String, _ summary: String, help: String = "",
                body: @escaping @Sendable (LuaCall, Object) throws -> Int32) {
        self.name = name
        self.signature = signature
        self.summary = summary
        self.help = help
        self.body = body
    }
}
