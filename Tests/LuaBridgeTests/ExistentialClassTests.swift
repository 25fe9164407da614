import XCTest
@testable import LuaBridge

/// One Lua type for every class conforming to a class-bound protocol (as NXgroup serves
/// local and remote groups): methods written once against the protocol, a cast where one
/// implementation is needed, and the objects released as for a plain class.
protocol Shape: AnyObject { var area: Int { get } }

final class Square: Shape {
    nonisolated(unsafe) static var live = 0
    var side: Int
    init(_ side: Int) { self.side = side; Square.live += 1 }
    deinit { Square.live -= 1 }
    var area: Int { side * side }
}

final class Rect: Shape {
    nonisolated(unsafe) static var live = 0
    let w: Int, h: Int
    init(_ w: Int, _ h: Int) { (self.w, self.h) = (w, h); Rect.live += 1 }
    deinit { Rect.live -= 1 }
    var area: Int { w * h }
}

let shapeClass = LuaClass<any Shape>(
    "test.Shape",
    methods: [
        LuaMethodDecl("area", "s:area() -> integer", "through the protocol") { call, s in call.returns(s.area) },
        LuaMethodDecl("grow", "s:grow()", "squares only") { call, s in
            guard let sq = s as? Square else { throw LuaError.runtime("a \(type(of: s)) cannot grow") }
            sq.side += 1
            return 0
        },
    ],
    index: { call, s in try call.string(2) == "kind" ? call.returns(s is Square ? "square" : "rect") : 0 },
    describe: { "shape of area \($0.area)" }
)

let shapeModule = LuaModuleDecl(
    "shapes", summary: "test shapes",
    functions: [
        LuaFunctionDecl("square", "shapes.square(n)", "") { call in shapeClass.push(Square(try call.integer(1)), to: call.lua); return 1 },
        LuaFunctionDecl("rect", "shapes.rect(w, h)", "") { call in
            shapeClass.push(Rect(try call.integer(1), try call.integer(2)), to: call.lua)
            return 1
        },
        LuaFunctionDecl("same", "shapes.same(a, b)", "identity survives the box") { call in
            guard let a = shapeClass.object(at: 1, in: call.lua), let b = shapeClass.object(at: 2, in: call.lua) else { return 0 }
            return call.returns(a === b)
        },
    ],
    classes: [shapeClass]
)

final class ExistentialClassTests: XCTestCase {
    func testOneLuaTypeForEveryConformingClass() throws {
        do {
            let state = try LuaState()
            try state.install(shapeModule)
            let r = try state.run("""
                local s, r = shapes.square(3), shapes.rect(2, 5)
                s:grow()
                local ok, err = pcall(r.grow, r)
                return s:area(), r:area(), s.kind, r.kind, getmetatable(s) == getmetatable(r),
                       tostring(r), ok, err, shapes.same(s, s), shapes.same(s, r)
                """, name: "=test")
            XCTAssertEqual(r, ["16", "10", "square", "rect", "true", "shape of area 10", "false",
                               "a Rect cannot grow", "true", "false"])
            try state.run("for i = 1, 200 do local a, b = shapes.square(i), shapes.rect(i, 2) end; collectgarbage(); collectgarbage()", name: "=gc")
        }
        XCTAssertEqual(Square.live, 0)
        XCTAssertEqual(Rect.live, 0)
    }
}
