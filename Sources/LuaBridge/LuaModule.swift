import CLua
import CLuaShims

/// A Lua module made of Swift functions (e.g. `nx`, `array`), declared once.
public struct LuaModuleDecl: Sendable {
    public let name: String
    public let summary: String
    public let help: String
    public let functions: [LuaFunctionDecl]
    /// Classes whose docs belong to this module (shown by help(module)).
    public let classes: [any LuaClassDocs]
    /// Plain values set in the module table (version strings, constants).
    public let values: [(String, any LuaPushable)]
    /// What calling the module table itself does (`plot(x)`), if anything: the body gets
    /// the call's arguments without the table.
    public let call: LuaFunctionBody?

    public init(_ name: String, summary: String, help: String = "",
                functions: [LuaFunctionDecl] = [], classes: [any LuaClassDocs] = [],
                values: [(String, any LuaPushable)] = [], call: LuaFunctionBody? = nil) {
        self.name = name
        self.summary = summary
        self.help = help
        self.functions = functions
        self.classes = classes
        self.values = values
        self.call = call
    }
}

/// What help needs from a `LuaClass`, without its generic parameter.
public protocol LuaClassDocs: Sendable {
    var name: String { get }
    var summary: String { get }
    var help: String { get }
    var methodDocs: [LuaDoc] { get }
}

/// The documentation part of a declaration.
public struct LuaDoc: Sendable {
    public let name: String
    public let signature: String
    public let summary: String
    public let help: String
}

extension LuaClass: LuaClassDocs {}

/// The documentation table every state carries: `package.loaded["nxlua.docs"]`, read by
/// stdlib's help and completion. Layout (all plain Lua tables):
///   names[qualified name] = entry     values[function] = entry (weak keys)
///   modules = { entry, ... }          entry = { name, kind, signature, summary, help,
///                                              members = { qualified names } }
enum LuaDocs {
    static let moduleName = "nxlua.docs"
    static let pendingKey = "nxlua.docs.pending"

    // The docs are built when first read, not at start-up: writing an entry table for
    // every function, class and method of every module was ~40% of the instructions of
    // `nxlua -e ''`, for a help() that most scripts never call. Declarations register
    // their documentation work with `defer`; reading any field of the docs table from
    // Lua (help, completion) or `push` from Swift runs all of it first, in the order the
    // modules were installed.

    /// Pushes the docs table with every pending entry written.
    static func push(_ lua: Lua) {
        build(lua)
        pushTable(lua)
    }

    /// Runs `work(docs, extra)` once the docs are built: now if they are, else when they
    /// are first read. `extra` is the value on top of the stack (popped): what the work
    /// documents (a module table, a function), kept alive with it.
    static func `defer`(_ lua: Lua, _ work: @escaping @Sendable (Lua, _ docs: Int32, _ extra: Int32) -> Void) {
        lua.ensureStack(6)
        let extra = lua.absIndex(-1)
        if isBuilt(lua) {
            push(lua)
            work(lua, lua.absIndex(-1), extra)
            lua.pop(2)
            return
        }
        if lua.rawGet(at: Lua.registryIndex, key: pendingKey) != .table {
            lua.pop()
            lua.newTable()
            lua.pushValue(at: -1)
            lua.rawSet(at: Lua.registryIndex, key: pendingKey)
            pushTable(lua)  // creates the (empty, lazy) table in package.loaded
            lua.pop()
        }
        let pending = lua.absIndex(-1)
        let n = lua.rawLength(at: pending)
        lua.push(function: "docs") { call in
            work(call.lua, 1, 2)
            return 0
        }
        lua.rawSet(at: pending, index: n + 1)
        lua.pushValue(at: extra)
        lua.rawSet(at: pending, index: n + 2)
        lua.pop(2)  // pending, extra
    }

    private static func isBuilt(_ lua: Lua) -> Bool {
        pushTable(lua)
        let built = lua.rawGet(at: -1, key: "names") == .table
        lua.pop(2)
        return built
    }

    /// Writes the fields and runs the pending work (once; work deferred while this runs
    /// sees the fields and runs at once).
    private static func build(_ lua: Lua) {
        lua.ensureStack(8)
        pushTable(lua)
        let docs = lua.absIndex(-1)
        if lua.rawGet(at: docs, key: "names") != .table {
            lua.pop()
            lua.newTable(); lua.rawSet(at: docs, key: "names")
            lua.newTable()
            lua.newTable(); lua.push("k"); lua.rawSet(at: -2, key: "__mode")
            lua.setMetatable(at: -2)
            lua.rawSet(at: docs, key: "values")
            lua.newTable(); lua.rawSet(at: docs, key: "modules")
        } else {
            lua.pop()
        }
        if lua.rawGet(at: Lua.registryIndex, key: pendingKey) == .table {
            let pending = lua.absIndex(-1)
            lua.pushNil()
            lua.rawSet(at: Lua.registryIndex, key: pendingKey)
            let n = lua.rawLength(at: pending)
            var i = 1
            while i <= n {
                lua.rawGet(at: pending, index: i)
                lua.pushValue(at: docs)
                lua.rawGet(at: pending, index: i + 1)
                try? lua.pcall(nargs: 2, nresults: 0)
                i += 2
            }
        }
        lua.pop(2)
    }

    /// Pushes the docs table as it is, creating it (empty, with the metatable that builds
    /// it when Lua reads a field) on first use.
    private static func pushTable(_ lua: Lua) {
        lua.ensureStack(6)
        lua.pushValue(at: Lua.registryIndex)
        if lua.rawGet(at: -1, key: "_LOADED") != .table {
            lua.pop()
            lua.newTable()
            lua.pushValue(at: -1)
            lua.rawSet(at: -3, key: "_LOADED")
        }
        if lua.rawGet(at: -1, key: moduleName) == .table {
            lua.remove(at: -2); lua.remove(at: -2)
            return
        }
        lua.pop()
        lua.newTable()
        lua.newTable()
        lua.push(function: "__index") { call in
            // a field read before the docs were built: build them, then answer raw
            LuaDocs.build(call.lua)
            call.lua.pushValue(at: 2)
            _ = lua_rawget(call.lua.L, 1)
            return 1
        }
        lua.rawSet(at: -2, key: "__index")
        lua.setMetatable(at: -2)
        lua.pushValue(at: -1)
        lua.rawSet(at: -3, key: moduleName)
        lua.remove(at: -2); lua.remove(at: -2)
    }

    /// Pushes a new entry table.
    static func pushEntry(_ lua: Lua, name: String, kind: String, signature: String,
                          summary: String, help: String, members: [String] = []) {
        lua.ensureStack(4)
        lua.newTable(recordCount: 6)
        lua.push(name); lua.rawSet(at: -2, key: "name")
        lua.push(kind); lua.rawSet(at: -2, key: "kind")
        lua.push(signature); lua.rawSet(at: -2, key: "signature")
        lua.push(summary); lua.rawSet(at: -2, key: "summary")
        lua.push(help); lua.rawSet(at: -2, key: "help")
        lua.push(members); lua.rawSet(at: -2, key: "members")
    }

    /// docs.names[name] = entry on top (kept on the stack).
    static func name(_ lua: Lua, docs: Int32, _ qualified: String) {
        lua.rawGet(at: docs, key: "names")
        lua.pushValue(at: -2)
        lua.rawSet(at: -2, key: qualified)
        lua.pop()
    }

    /// docs.values[value at valueIndex] = entry on top (kept on the stack).
    static func value(_ lua: Lua, docs: Int32, valueIndex: Int32) {
        let v = lua.absIndex(valueIndex)
        lua.rawGet(at: docs, key: "values")
        lua.pushValue(at: v)
        lua.pushValue(at: -3)
        lua_rawset(lua.L, -3)
        lua.pop()
    }

    /// Appends the entry on top to docs.modules (kept on the stack).
    static func addModule(_ lua: Lua, docs: Int32) {
        lua.rawGet(at: docs, key: "modules")
        lua.pushValue(at: -2)
        lua.rawSet(at: -2, index: lua.rawLength(at: -2) + 1)
        lua.pop()
    }

    /// The docs of a module whose table is at `table`: an entry per function
    /// ("module.function"), its classes, and the module's own entry.
    static func document(_ lua: Lua, module decl: LuaModuleDecl, docs: Int32, table mod: Int32) {
        for f in decl.functions {
            lua.rawGet(at: mod, key: f.name)
            pushEntry(lua, name: "\(decl.name).\(f.name)", kind: "function",
                      signature: f.signature, summary: f.summary, help: f.help)
            name(lua, docs: docs, "\(decl.name).\(f.name)")
            value(lua, docs: docs, valueIndex: -2)
            lua.pop(2)
        }
        for c in decl.classes { document(lua, class: c, docs: docs) }
        var members = decl.functions.map { "\(decl.name).\($0.name)" }
        members += decl.classes.map { $0.name }
        pushEntry(lua, name: decl.name, kind: "module", signature: decl.name,
                  summary: decl.summary, help: decl.help, members: members)
        name(lua, docs: docs, decl.name)
        value(lua, docs: docs, valueIndex: mod)
        addModule(lua, docs: docs)
        lua.pop()
    }

    /// The docs of a class: an entry per method ("Class:method") and one for the class.
    static func document(_ lua: Lua, class c: any LuaClassDocs, docs: Int32) {
        var members: [String] = []
        for m in c.methodDocs {
            let q = "\(c.name):\(m.name)"
            members.append(q)
            pushEntry(lua, name: q, kind: "method", signature: m.signature, summary: m.summary, help: m.help)
            name(lua, docs: docs, q)
            lua.pop()
        }
        pushEntry(lua, name: c.name, kind: "class", signature: c.name, summary: c.summary, help: c.help, members: members)
        name(lua, docs: docs, c.name)
        lua.pop()
    }
}

extension Lua {
    /// Builds the module table from its declaration and leaves it on the stack; its docs
    /// (functions under "module.function") are written when help first needs them.
    public func push(module decl: LuaModuleDecl) {
        ensureStack(2)
        newTable(recordCount: decl.functions.count + decl.values.count)
        fill(module: decl, at: absIndex(-1))
        pushValue(at: -1)
        LuaDocs.defer(self) { lua, docs, mod in LuaDocs.document(lua, module: decl, docs: docs, table: mod) }
    }

    /// Sets the declaration's functions and values in the table at `mod`, and its metatable
    /// when the module can be called.
    func fill(module decl: LuaModuleDecl, at mod: Int32) {
        ensureStack(8)
        for f in decl.functions {
            push(f)
            rawSet(at: mod, key: f.name)
        }
        for (k, v) in decl.values {
            v.push(to: self)
            rawSet(at: mod, key: k)
        }
        if let body = decl.call {
            newTable(recordCount: 1)
            push(function: "__call") { call in
                call.lua.remove(at: 1)  // the module table
                return try body(call)
            }
            rawSet(at: -2, key: "__call")
            setMetatable(at: mod)
        }
    }

    /// Records the docs of a class not declared in a module.
    public func document(class c: any LuaClassDocs) {
        pushNil()
        LuaDocs.defer(self) { lua, docs, _ in LuaDocs.document(lua, class: c, docs: docs) }
    }

    /// Documents a global function (e.g. `help`) and sets it.
    public func setGlobal(_ decl: LuaFunctionDecl) throws {
        push(decl)
        pushValue(at: -1)
        LuaDocs.defer(self) { lua, docs, fn in
            LuaDocs.pushEntry(lua, name: decl.name, kind: "function", signature: decl.signature,
                              summary: decl.summary, help: decl.help)
            LuaDocs.name(lua, docs: docs, decl.name)
            LuaDocs.value(lua, docs: docs, valueIndex: fn)
            lua.pop()
        }
        try setGlobal(decl.name)
    }
}
