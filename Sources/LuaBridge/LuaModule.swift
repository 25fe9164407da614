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

    public init(_ name: String, summary: String, help: String = "",
                functions: [LuaFunctionDecl] = [], classes: [any LuaClassDocs] = [],
                values: [(String, any LuaPushable)] = []) {
        self.name = name
        self.summary = summary
        self.help = help
        self.functions = functions
        self.classes = classes
        self.values = values
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

    /// Pushes the docs table, creating it on first use.
    static func push(_ lua: Lua) {
        lua.ensureStack(6)
        lua.pushValue(at: Lua.registryIndex)
        if lua.rawGet(at: -1, key: "_LOADED") == .table {
            if lua.rawGet(at: -1, key: moduleName) == .table {
                lua.remove(at: -2); lua.remove(at: -2)
                return
            }
            lua.pop()
        } else {
            lua.pop()
            lua.newTable()
            lua.pushValue(at: -1)
            lua.rawSet(at: -3, key: "_LOADED")
        }
        // registry _LOADED
        lua.newTable()
        lua.newTable(); lua.rawSet(at: -2, key: "names")
        lua.newTable()
        lua.newTable(); lua.push("k"); lua.rawSet(at: -2, key: "__mode")
        lua.setMetatable(at: -2)
        lua.rawSet(at: -2, key: "values")
        lua.newTable(); lua.rawSet(at: -2, key: "modules")
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
}

extension Lua {
    /// Builds the module table from its declaration, records its docs, and leaves the
    /// table on the stack. Functions are documented under "module.function".
    public func push(module decl: LuaModuleDecl) {
        ensureStack(8)
        LuaDocs.push(self)
        let docs = absIndex(-1)
        newTable(recordCount: decl.functions.count + decl.values.count)
        let mod = absIndex(-1)
        for f in decl.functions {
            push(f)
            LuaDocs.pushEntry(self, name: "\(decl.name).\(f.name)", kind: "function",
                              signature: f.signature, summary: f.summary, help: f.help)
            LuaDocs.name(self, docs: docs, "\(decl.name).\(f.name)")
            LuaDocs.value(self, docs: docs, valueIndex: -2)
            pop()
            rawSet(at: mod, key: f.name)
        }
        for (k, v) in decl.values {
            v.push(to: self)
            rawSet(at: mod, key: k)
        }
        for c in decl.classes { document(class: c, docs: docs) }
        var members = decl.functions.map { "\(decl.name).\($0.name)" }
        members += decl.classes.map { $0.name }
        LuaDocs.pushEntry(self, name: decl.name, kind: "module", signature: decl.name,
                          summary: decl.summary, help: decl.help, members: members)
        LuaDocs.name(self, docs: docs, decl.name)
        LuaDocs.value(self, docs: docs, valueIndex: mod)
        LuaDocs.addModule(self, docs: docs)
        pop()
        remove(at: docs)
    }

    /// Records the docs of a class and its methods ("nx.File", "nx.File:close").
    public func document(class c: any LuaClassDocs) {
        LuaDocs.push(self)
        document(class: c, docs: absIndex(-1))
        pop()
    }

    private func document(class c: any LuaClassDocs, docs: Int32) {
        var members: [String] = []
        for m in c.methodDocs {
            let q = "\(c.name):\(m.name)"
            members.append(q)
            LuaDocs.pushEntry(self, name: q, kind: "method", signature: m.signature,
                              summary: m.summary, help: m.help)
            LuaDocs.name(self, docs: docs, q)
            pop()
        }
        LuaDocs.pushEntry(self, name: c.name, kind: "class", signature: c.name,
                          summary: c.summary, help: c.help, members: members)
        LuaDocs.name(self, docs: docs, c.name)
        pop()
    }

    /// Documents a global function (e.g. `help`) and sets it.
    public func setGlobal(_ decl: LuaFunctionDecl) throws {
        LuaDocs.push(self)
        let docs = absIndex(-1)
        push(decl)
        LuaDocs.pushEntry(self, name: decl.name, kind: "function", signature: decl.signature,
                          summary: decl.summary, help: decl.help)
        LuaDocs.name(self, docs: docs, decl.name)
        LuaDocs.value(self, docs: docs, valueIndex: -2)
        pop()
        try setGlobal(decl.name)
        pop()
    }
}
