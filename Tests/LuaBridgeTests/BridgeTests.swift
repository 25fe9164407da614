import XCTest
@testable import LuaBridge

/// A Swift object whose instances are counted, to prove nothing leaks across errors.
final class Tracked {
    nonisolated(unsafe) static var live = 0
    nonisolated(unsafe) static var closed = 0
    let value: Int
    init(_ value: Int) { self.value = value; Tracked.live += 1 }
    deinit { Tracked.live -= 1 }
}

struct SwiftFailure: Error, CustomStringConvertible {
    var description: String { "the Swift side failed" }
}

let trackedClass = LuaClass<Tracked>(
    "test.Tracked",
    summary: "a counted Swift object",
    methods: [
        LuaMethodDecl("value", "t:value() -> integer", "its value") { call, obj in
            call.returns(obj.value)
        },
        LuaMethodDecl("fail", "t:fail()", "throws") { _, _ in
            throw LuaError.runtime("method failed")
        },
    ],
    metamethods: [
        "__add": { call in
            guard let a = trackedClass.object(at: 1, in: call.lua) else { throw LuaError.runtime("left operand is not Tracked") }
            let b = try call.integer(2)
            trackedClass.push(Tracked(a.value + b), to: call.lua)
            return 1
        },
        "__len": { call in call.returns(try call.object(1, trackedClass).value) },
    ],
    index: { call, obj in
        let key = try call.string(2)
        if key == "boom" { throw LuaError.runtime("no child 'boom' in Tracked \(obj.value)") }
        if key == "double" { return call.returns(obj.value * 2) }
        return 0
    },
    completions: { _ in ["double"] },
    close: { _ in Tracked.closed += 1 },
    describe: { "Tracked(\($0.value))" }
)

let testModule = LuaModuleDecl(
    "t", summary: "test module",
    functions: [
        LuaFunctionDecl("make", "t.make(n) -> Tracked", "a tracked object") { call in
            trackedClass.push(Tracked(try call.integer(1)), to: call.lua)
            return 1
        },
        LuaFunctionDecl("load", "t.load(path)", "needs a string") { call in
            call.returns(try call.string(1))
        },
        LuaFunctionDecl("throwing", "t.throwing()", "makes a Swift object, then throws") { call in
            let temp = Tracked(1)          // must be released although the call fails
            let list = [Tracked(2), temp]  // more Swift values with cleanup on the frame
            _ = list.count
            throw SwiftFailure()
        },
        LuaFunctionDecl("argfail", "t.argfail(n)", "argument error after allocating") { call in
            let temp = Tracked(3)
            _ = temp
            _ = try call.integer(1)
            throw LuaError.argument(1, "positive integer expected")
        },
        LuaFunctionDecl("callback", "t.callback(f)", "calls f from Swift, protected") { call in
            let lua = call.lua
            lua.pushValue(at: 1)
            let keep = Tracked(4)
            defer { _ = keep }
            try lua.pcall(nargs: 0, nresults: 1)
            return 1
        },
        LuaFunctionDecl("index", "t.index(table, key)", "t[key] from Swift, holding a Swift object") { call in
            let held = [Tracked(5), Tracked(6)]  // a longjmp out of getField would leak these
            try call.lua.getField(at: 1, try call.string(2))
            return held.isEmpty ? 0 : 1
        },
        LuaFunctionDecl("interrupt", "t.interrupt()", "asks for Ctrl-C") { _ in
            LuaInterrupt.request()
            return 0
        },
        LuaFunctionDecl("poll", "t.poll()", "a long Swift call that polls for Ctrl-C") { _ in
            LuaInterrupt.request()
            for _ in 0..<1000 { try LuaInterrupt.check() }
            return 0
        },
    ],
    classes: [trackedClass]
)

final class BridgeTests: XCTestCase {
    var state: LuaState!

    override func setUpWithError() throws {
        state = try LuaState()
        try state.install(testModule)
        Tracked.closed = 0
    }

    override func tearDown() {
        state = nil
        XCTAssertEqual(Tracked.live, 0, "Swift objects leaked")
    }

    @discardableResult
    func run(_ code: String) throws -> [String] { try state.run(code, name: "=test") }

    func testArgumentErrorUsesLuasFormat() throws {
        func message(_ call: String) throws -> String {
            let r = try run("return pcall(function() return \(call) end)")
            XCTAssertEqual(r[0], "false")
            return r[1]
        }
        XCTAssertEqual(try message("t.load(nil)"), "test:1: bad argument #1 to 'load' (string expected, got nil)")
        XCTAssertEqual(try message("t.make(1.5)"), "test:1: bad argument #1 to 'make' (number has no integer representation)")
        XCTAssertEqual(try message("t.make()"), "test:1: bad argument #1 to 'make' (number expected, got no value)")
        XCTAssertEqual(try message("t.load(t.make(1))"), "test:1: bad argument #1 to 'load' (string expected, got test.Tracked)")
        // a method called on the wrong self, as luaL_argerror words it
        XCTAssertEqual(try message("t.make(1).value({})"), "test:1: bad argument #1 to 'value' (test.Tracked expected, got table)")
        XCTAssertEqual(try message("({value = t.make(1).value}):value()"), "test:1: calling 'value' on bad self (test.Tracked expected, got table)")
        // called through pcall directly, Lua names the function by its global path
        XCTAssertEqual(try run("return pcall(t.load)")[1], "bad argument #1 to 't.load' (string expected, got no value)")
    }

    func testRuntimeErrorCarriesPosition() throws {
        let r = try run("local o = t.make(5)\nreturn pcall(function() return o.boom end)")
        XCTAssertEqual(r[0], "false")
        XCTAssertEqual(r[1], "test:2: no child 'boom' in Tracked 5")
        let r2 = try run("return pcall(t.throwing)")
        XCTAssertEqual(r2[0], "false")
        XCTAssertTrue(r2[1].hasSuffix("the Swift side failed"), r2[1])
    }

    func testNothingLeaksAcrossManyCaughtErrors() throws {
        let r = try run("""
            local n = 0
            local failing = setmetatable({}, {__index = function(_, k) error("no " .. k) end})
            local function raise() error("from Lua") end
            for i = 1, 10000 do
              if not pcall(t.throwing) then n = n + 1 end
              if not pcall(t.argfail, i) then n = n + 1 end
              if not pcall(t.index, failing, "k") then n = n + 1 end
              if not pcall(t.callback, raise) then n = n + 1 end
            end
            return n
            """)
        XCTAssertEqual(r, ["40000"])
        XCTAssertEqual(Tracked.live, 0, "a Lua error skipped Swift cleanup")
    }

    func testErrorsInsideMetamethodsAreCaught() throws {
        let r = try run("""
            local o = t.make(2)
            local ok1, e1 = pcall(function() return o + "x" end)
            local ok2, e2 = pcall(function() return o.boom end)
            local ok3, e3 = pcall(function() return o:fail() end)
            local ok4, v4 = pcall(function() return (o + 3):value() end)
            return ok1, e1, ok2, ok3, e3, ok4, v4, #o, o.double
            """)
        XCTAssertEqual(r[0], "false")
        XCTAssertTrue(r[1].contains("bad argument #2 to 'add' (number expected, got string)"), r[1])
        XCTAssertEqual(r[2], "false")
        XCTAssertEqual(r[3], "false")
        XCTAssertTrue(r[4].hasSuffix("method failed"), r[4])
        XCTAssertEqual(Array(r[5...]), ["true", "5", "2", "4"])
    }

    func testGarbageCollectionReleasesSwiftObjects() throws {
        try run("for i = 1, 1000 do local o = t.make(i) end")
        XCTAssertGreaterThan(Tracked.live, 0)
        try run("collectgarbage(); collectgarbage()")
        XCTAssertEqual(Tracked.live, 0)
    }

    func testCloseVariableAndClosedState() throws {
        let r = try run("""
            local saved
            do
              local o <close> = t.make(7)
              saved = o
            end
            local ok, e = pcall(saved.value, saved)
            return ok, e, tostring(saved)
            """)
        XCTAssertEqual(Tracked.closed, 1)
        XCTAssertEqual(r, ["false", "attempt to use a closed test.Tracked", "test.Tracked (closed)"])
        XCTAssertEqual(Tracked.live, 0, "close must release the Swift object at once")
        // close twice is harmless; the close method exists on every class
        let r2 = try run("local o = t.make(1); o:close(); o:close(); return tostring(o)")
        XCTAssertEqual(r2, ["test.Tracked (closed)"])
        XCTAssertEqual(Tracked.closed, 2)
    }

    func testCloseRunsWhenTheBlockFails() throws {
        let r = try run("""
            return pcall(function()
              local o <close> = t.make(1)
              error("inside")
            end)
            """)
        XCTAssertEqual(r[0], "false")
        XCTAssertEqual(Tracked.closed, 1)
    }

    func testTostringAndName() throws {
        let r = try run("local o = t.make(3); return tostring(o), getmetatable(o).__name")
        XCTAssertEqual(r, ["Tracked(3)", "test.Tracked"])
    }

    func testSwiftCallingBackIntoLua() throws {
        let r = try run("""
            local ok, e = pcall(t.callback, function() error("from the callback") end)
            local v = t.callback(function() return 42 end)
            return ok, e, v
            """)
        XCTAssertEqual(r[0], "false")
        XCTAssertTrue(r[1].hasSuffix("from the callback"), r[1])
        XCTAssertEqual(r[2], "42")
    }

    func testYieldAcrossSwiftIsAnErrorNotACrash() throws {
        let r = try run("""
            local co = coroutine.wrap(function()
              return t.callback(function() coroutine.yield(1) end)
            end)
            return pcall(co)
            """)
        XCTAssertEqual(r[0], "false")
        XCTAssertTrue(r[1].contains("yield across"), r[1])
    }

    func testInterruptStopsALuaLoop() throws {
        state.armInterrupt()
        defer { state.disarmInterrupt() }
        XCTAssertThrowsError(try run("t.interrupt(); while true do end")) { error in
            XCTAssertEqual((error as? LuaScriptError)?.kind, .interrupted)
        }
    }

    func testInterruptStopsAPollingSwiftCall() throws {
        state.armInterrupt()
        XCTAssertThrowsError(try run("t.poll()")) { error in
            XCTAssertTrue("\(error)".contains("interrupted!"), "\(error)")
        }
        state.disarmInterrupt()
        // disarmed: the next chunk runs normally
        XCTAssertEqual(try run("local s = 0; for i = 1, 1000 do s = s + i end; return s"), ["500500"])
    }

    func testProtectedHelpersTurnLuaErrorsIntoSwiftErrors() throws {
        let lua = state.lua
        try run("bad = setmetatable({}, {__index = function() error('index failed') end, __tostring = function() error('no text') end})")
        try lua.getGlobal("bad")
        XCTAssertThrowsError(try lua.getField(at: -1, "x")) { XCTAssertTrue("\($0)".contains("index failed")) }
        XCTAssertThrowsError(try lua.toStringMeta(at: -1)) { XCTAssertTrue("\($0)".contains("no text")) }
        lua.pop()
        XCTAssertThrowsError(try lua.load("x = = 1", name: "=bad")) { error in
            XCTAssertEqual((error as? LuaScriptError)?.kind, .syntax)
        }
        XCTAssertThrowsError(try lua.load("for i = 1, 2 do", name: "=more")) { error in
            XCTAssertTrue((error as? LuaScriptError)?.isIncompleteInput ?? false)
        }
    }

    func testLazyModuleIsBuiltOnFirstUseOnly() throws {
        let lazy = try LuaState()
        nonisolated(unsafe) var built = 0
        let callable = LuaModuleDecl("c", summary: "a callable test module",
                                     functions: [LuaFunctionDecl("twice", "c.twice(n)", "2n") { call in
                                         call.returns(try call.integer(1) * 2)
                                     }],
                                     call: { call in call.returns(try call.integer(1) + 100) })
        try lazy.install(lazy: "t") { built += 1; return testModule }
        try lazy.install(lazy: "c") { built += 1; return callable }
        func run(_ code: String) throws -> [String] { try lazy.run(code, name: "=lazy") }
        // present from the start, empty, and built by nothing but use
        XCTAssertEqual(try run("return type(t), rawlen(t), rawequal(t, package.loaded.t), rawget(t, 'make') == nil"),
                       ["table", "0", "true", "true"])
        XCTAssertEqual(built, 0)
        // a field read builds it; the table keeps its identity and loses the placeholder metatable
        XCTAssertEqual(try run("local before = t; return t.make(3).double, rawequal(before, t), getmetatable(t) == nil"),
                       ["6", "true", "true"])
        XCTAssertEqual(built, 1)
        // calling the module, pairs, # and assignment each build it, once
        XCTAssertEqual(try run("return c(1), c.twice(4)"), ["101", "8"])
        XCTAssertEqual(built, 2)
        try lazy.install(lazy: "p") { built += 1; return testModule }
        XCTAssertEqual(try run("local n = 0; for k in pairs(p) do n = n + 1 end; return n > 3, p.load('x')"), ["true", "x"])
        try lazy.install(lazy: "q") { built += 1; return testModule }
        XCTAssertEqual(try run("q.extra = 5; return q.extra, type(q.make)"), ["5", "function"])
        try lazy.install(lazy: "r") { built += 1; return testModule }
        XCTAssertEqual(try run("return #r, type(r.interrupt)"), ["0", "function"])
        XCTAssertEqual(built, 5)
        // bad uses of the placeholder are Lua errors, not crashes
        try lazy.install(lazy: "s") { built += 1; return testModule }
        XCTAssertEqual(try run("return pcall(function() s[nil] = 1 end)"), ["false", "lazy:1: index is nil"])
        try lazy.install(lazy: "u") { built += 1; return testModule }
        XCTAssertEqual(try run("return select(2, pcall(u))"), ["attempt to call a table value (module 't')"])
        try lazy.install(lazy: "w") { built += 1; return testModule }
        XCTAssertEqual(try run("return select(2, pcall(getmetatable(w).__index, 5, 'x'))"), ["a module table expected"])
        XCTAssertEqual(try run("return select(2, pcall(getmetatable(w).__index, {}, 'load')), type(w.load)"),
                       ["a module table expected", "function"])
        // docs: every module, filled or not, in installation order
        let order = try run("""
            local docs = package.loaded['nxlua.docs']; local names = {}
            for _, m in ipairs(docs.modules) do names[#names + 1] = m.name end
            return table.concat(names, ' '), docs.names['c.twice'].signature
            """)
        XCTAssertEqual(order, ["t c t t t t t t", "c.twice(n)"])
    }

    func testDocsComeFromDeclarations() throws {
        let r = try run("""
            local d = require "nxlua.docs"
            return d.names["t.make"].signature, d.values[t.make].summary,
                   d.names["test.Tracked:value"].summary, d.names["test.Tracked"].kind, d.modules[1].name
            """)
        XCTAssertEqual(r, ["t.make(n) -> Tracked", "a tracked object", "its value", "class", "t"])
    }

    func testMethodsAndCompletionsInMetatable() throws {
        let r = try run("""
            local mt = getmetatable(t.make(1))
            local names = {}
            for k in pairs(mt.__methods) do names[#names + 1] = k end
            table.sort(names)
            return table.concat(names, ","), mt.__complete(t.make(2))[1]
            """)
        XCTAssertEqual(r, ["close,fail,value", "double"])
    }
}
