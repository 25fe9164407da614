import NeXus
import XCTest
@testable import RemoteServer

#if canImport(Glibc)
import Glibc
#endif

/// The pure parts of nxlua serve: select parsing, type JSON, ids, domain containment,
/// the users file, query decoding and Basic auth parsing.
final class SelectTests: XCTestCase {
    func testSlicesIndicesAndLists() throws {
        let s = try ValueSelection.parse("[0:10:2, 100:104, 7]", dims: [10, 512, 512])
        XCTAssertEqual(s.shape, [5, 4, 1])
        XCTAssertEqual(s.runs[0], [NXRun(start: 0, step: 2, count: 5)])
        XCTAssertEqual(try ValueSelection.parse("[5:6:1,0:512:1,0:512:1]", dims: [10, 512, 512]).shape, [1, 512, 512])
        XCTAssertEqual(try ValueSelection.parse("[:,::3]", dims: [4, 10]).shape, [4, 4])
        XCTAssertEqual(try ValueSelection.parse("[3:3]", dims: [5]).count, 0)
        let l = try ValueSelection.parse("[[1,2,3,7],:]", dims: [10, 2])
        XCTAssertEqual(l.runs[0], [NXRun(start: 1, step: 1, count: 3), NXRun(start: 7, step: 1, count: 1)])
        XCTAssertEqual(l.shape, [4, 2])
        XCTAssertEqual(ValueSelection.all([3, 4]).count, 12)
    }

    func testMalformedSelectionsNameTheProblem() {
        let bad: [(String, String)] = [
            ("0:1", "'[' ... ']' expected"), ("[0:1]", "1 item for a dataset of 2 axes"),
            ("[0:11,:]", "outside 0:10"), ("[-1,:]", "out of range"), ("[a,:]", "not an integer"),
            ("[0:2:0,:]", "must be positive"), ("[[3,1],:]", "must increase"), ("[1:2:3:4,:]", "start:stop:step expected"),
            ("[0:2,:", "'[' ... ']' expected"), ("[,]", "is empty"),
        ]
        for (text, expected) in bad {
            XCTAssertThrowsError(try ValueSelection.parse(text, dims: [10, 4]), text) { e in
                XCTAssertTrue("\(e)".contains(expected), "\(text): \(e)")
            }
        }
        // 500 x 500 separate indices: more hyperslabs than one request may make
        let evens = "[" + stride(from: 0, to: 1000, by: 2).map(String.init).joined(separator: ",") + "]"
        XCTAssertThrowsError(try ValueSelection.parse("[\(evens),\(evens)]", dims: [1000, 1000])) { e in
            XCTAssertTrue("\(e)".contains("hyperslabs"), "\(e)")
        }
    }

    func testPoints() throws {
        var body: [UInt8] = []
        for v: UInt64 in [1, 2, 3, 0] { withUnsafeBytes(of: v.littleEndian) { body += $0 } }
        XCTAssertEqual(try ValueSelection.points(body, dims: [4, 4]), [[1, 2], [3, 0]])
        XCTAssertThrowsError(try ValueSelection.points(Array(body.prefix(12)), dims: [4, 4]))
        XCTAssertThrowsError(try ValueSelection.points(body, dims: [2, 4]))
    }

    func testTypeJSONMatchesHSDS() {
        XCTAssertEqual(HDFJSON.type(.integer(size: 4, signed: true)).text, #"{"class": "H5T_INTEGER", "base": "H5T_STD_I32LE"}"#)
        XCTAssertEqual(HDFJSON.type(.float(size: 8)).text, #"{"class": "H5T_FLOAT", "base": "H5T_IEEE_F64LE"}"#)
        XCTAssertEqual(HDFJSON.type(.string(length: nil, utf8: true, padding: .nullTerminated)).text,
                       #"{"class": "H5T_STRING", "length": "H5T_VARIABLE", "charSet": "H5T_CSET_UTF8", "strPad": "H5T_STR_NULLTERM"}"#)
        XCTAssertEqual(HDFJSON.type(.string(length: 8, utf8: false, padding: .nullPadded)).text,
                       #"{"class": "H5T_STRING", "length": 8, "charSet": "H5T_CSET_ASCII", "strPad": "H5T_STR_NULLPAD"}"#)
        let compound = NXStorageType.compound([.init(name: "h", offset: 0, type: .integer(size: 4, signed: true)),
                                               .init(name: "I", offset: 4, type: .float(size: 8))])
        XCTAssertEqual(HDFJSON.type(compound)["fields"], .array([
            .obj(["name": .string("h"), "type": HDFJSON.type(.integer(size: 4, signed: true))]),
            .obj(["name": .string("I"), "type": HDFJSON.type(.float(size: 8))]),
        ]))
        XCTAssertEqual(compound.rawSize, 12)
        XCTAssertEqual(HDFJSON.shape(NXDataspace(kind: .simple, dims: [2, 3], maxdims: [nil, 3])).text,
                       #"{"class": "H5S_SIMPLE", "dims": [2, 3], "maxdims": [0, 3]}"#)
    }

    func testValuesAndWireForm() {
        let t = NXStorageType.compound([.init(name: "n", offset: 0, type: .integer(size: 2, signed: true)),
                                        .init(name: "s", offset: 2, type: .string(length: nil, utf8: true, padding: .nullTerminated))])
        var bytes: [UInt8] = [0xFE, 0xFF]  // -2
        bytes += [1, 0, 0, 0, 0, 0, 0, 0]  // string #1
        let raw = NXRawValues(type: t, count: 1, bytes: bytes, strings: ["zero", "Å"])
        XCTAssertEqual(HDFJSON.values(raw, shape: [1]), .array([.array([.int(-2), .string("Å")])]))
        XCTAssertEqual(HDFJSON.wire(raw), [0xFE, 0xFF, 2, 0, 0, 0] + Array("Å".utf8))
        let f = NXRawValues(type: .float(size: 4), count: 1, bytes: withUnsafeBytes(of: Float(0.1).bitPattern.littleEndian) { Array($0) }, strings: [])
        XCTAssertEqual(HDFJSON.values(f, shape: []), .double(0.1))
    }

    func testIdsAreDeterministicAndParse() throws {
        let a = ObjectID.object(.dataset, domain: "/a.nxs", address: 4096)
        XCTAssertEqual(a, ObjectID.object(.dataset, domain: "/a.nxs", address: 4096))
        XCTAssertNotEqual(a, ObjectID.object(.dataset, domain: "/b.nxs", address: 4096))
        XCTAssertNotEqual(a, ObjectID.object(.dataset, domain: "/a.nxs", address: 8192))
        XCTAssertEqual(a.description.count, 38)
        XCTAssertEqual(ObjectID(parsing: a.description), a)
        let root = ObjectID.root(domain: "/a.nxs")
        // HSDS's root mark: the last 16 digits are the first 16 rotated by 8
        XCTAssertEqual(root.objectHash, ObjectID.rotated(root.domainHash))
        XCTAssertEqual(root.description, "g-ce8e6c7a-394896ac-4606-e4f2b1-c01e24")
        // ids outlive servers: the same digits as every earlier version gave
        XCTAssertEqual(a.description, "d-ce8e6c7a-394896ac-9074-c4d98b-008bbe")
        XCTAssertEqual(ObjectID(parsing: "D-CE8E6C7A-394896AC-9074-C4D98B-008BBE"), a)
        XCTAssertEqual(ObjectID(parsing: "g-29bb8c80-91a88fb4-a133-040819-20073c")?.domainToken, "29bb8c8091a88fb4")
        for bad in ["", "x-29bb8c80-91a88fb4-a133-040819-20073c", "g-29bb8c80-91a88fb4-a133-040819-20073", "g-29bb8c80_91a88fb4-a133-040819-20073c", "g-zzbb8c80-91a88fb4-a133-040819-20073c"] {
            XCTAssertNil(ObjectID(parsing: bad), bad)
        }
    }

    func testDomainsStayInsideTheFolder() throws {
        let base = NSTemporaryDirectoryLike.make()
        let root = base + "/served", outside = base + "/outside"
        mkdir(root, 0o755); mkdir(root + "/sub", 0o755); mkdir(outside, 0o755)
        XCTAssertTrue(creat(root + "/a.nxs", 0o644) >= 0)
        XCTAssertTrue(creat(outside + "/secret.nxs", 0o644) >= 0)
        symlink(outside + "/secret.nxs", root + "/link.nxs")
        symlink(root + "/a.nxs", root + "/sub/inside.nxs")
        let r = try DomainResolver(root: root)
        XCTAssertEqual(try r.resolve("/a.nxs").domain, "/a.nxs")
        XCTAssertEqual(try r.resolve("a.nxs").domain, "/a.nxs")
        XCTAssertEqual(try r.resolve("//sub///inside.nxs").path, r.root + "/a.nxs")  // a symlink inside is fine
        XCTAssertTrue(try r.resolve("/sub/").isFolder)
        for (d, status) in [("/../outside/secret.nxs", 403), ("/sub/../a.nxs", 403), ("/link.nxs", 403), ("/missing", 404), ("/a.nxs/", 404), ("", 400)] {
            XCTAssertThrowsError(try r.resolve(d), d) { XCTAssertEqual(($0 as? DomainError)?.status, status, d) }
        }
    }

    func testUsersFile() throws {
        var u = UsersFile()
        try u.set(name: "ray", password: "pw", cost: 4)
        try u.set(name: "ann", password: "x", cost: 4)
        try u.set(name: "ray", password: "new", cost: 4)  // replaces
        let parsed = try UsersFile(parsing: u.text)
        XCTAssertEqual(parsed.entries.map(\.name), ["ray", "ann"])
        XCTAssertTrue(parsed.verify(name: "ray", password: "new"))
        XCTAssertFalse(parsed.verify(name: "ray", password: "pw"))
        XCTAssertFalse(parsed.verify(name: "bob", password: "new"))
        XCTAssertThrowsError(try UsersFile(parsing: "ray:plaintext\n"))
        XCTAssertThrowsError(try UsersFile(parsing: "nocolon\n"))
        XCTAssertThrowsError(try u.set(name: "bad name", password: "x", cost: 4))
    }

    func testQueryAndBasicAuth() throws {
        XCTAssertEqual(try parseQuery("domain=%2Fa%20b.nxs&select=[0:2]&x=1+2&domain=second"),
                       ["domain": "/a b.nxs", "select": "[0:2]", "x": "1 2"])
        XCTAssertThrowsError(try parseQuery("domain=%zz"))
        XCTAssertTrue(try XCTUnwrap(Authenticator.parseBasic("Basic cmF5OnM6ZWNyZXQ=")) == ("ray", "s:ecret"))
        XCTAssertNil(Authenticator.parseBasic("Bearer abc"))
        XCTAssertNil(Authenticator.parseBasic("Basic !!!"))
    }

    func testJSONRoundTrip() throws {
        let v = try JSON.parse(#"{"a": [1, -2.5, "x\n\u00e9\ud83d\ude00", true, null], "b": {}, "c": NaN}"#)
        XCTAssertEqual(v["a"], .array([.int(1), .double(-2.5), .string("x\né😀"), .bool(true), .null]))
        XCTAssertTrue(v["c"]?.doubleValue?.isNaN == true)
        XCTAssertEqual(try JSON.parse(v.text)["b"], .object([]))
        XCTAssertThrowsError(try JSON.parse("[1,"))
        XCTAssertThrowsError(try JSON.parse(String(repeating: "[", count: 100) + String(repeating: "]", count: 100)))
    }

    func testReplacing() {
        XCTAssertEqual(replacing("/srv/data/", with: "/", in: "/srv/data/a.nxs: bad; /srv/data/b"), "/a.nxs: bad; /b")
        XCTAssertEqual(replacing("x", with: "y", in: ""), "")
    }

    func testBlocksKeepOrder() throws {
        let sel = try ValueSelection.parse("[0:10:3, 0:4]", dims: [10, 4])
        let blocks = split(sel, bytesPerElement: 4, blockBytes: 32)  // two rows a block
        XCTAssertEqual(blocks.map { $0[0] }, [[NXRun(start: 0, step: 3, count: 2)], [NXRun(start: 6, step: 3, count: 2)]])
        XCTAssertEqual(split(try ValueSelection.parse("[1, 0:4]", dims: [10, 4]), bytesPerElement: 4, blockBytes: 8).count, 2)
    }

    func testBlocksNeverCutAChunk() throws {
        // a Pilatus 2M stack chunked by frame: one frame (9.9 MB) is one block even though
        // the stream block is 8 MB, and three frames are three blocks of one whole frame
        let dims = [600, 1679, 1475], chunk = [1, 1679, 1475], eight = 8 << 20
        let one = try ValueSelection.parse("[5, :, :]", dims: dims)
        XCTAssertEqual(split(one, bytesPerElement: 4, blockBytes: eight).count, 2)  // without the chunk: cut
        XCTAssertEqual(split(one, bytesPerElement: 4, blockBytes: eight, chunk: chunk).count, 1)
        let three = try ValueSelection.parse("[5:8, :, :]", dims: dims)
        let blocks = split(three, bytesPerElement: 4, blockBytes: eight, chunk: chunk)
        XCTAssertEqual(blocks.map { $0[0] }, (5..<8).map { [NXRun(start: $0, step: 1, count: 1)] })
        XCTAssertTrue(blocks.allSatisfy { $0[1] == [NXRun(start: 0, step: 1, count: 1679)] })
        // small chunks change nothing
        XCTAssertEqual(split(one, bytesPerElement: 4, blockBytes: eight, chunk: [1, 64, 64]).count, 2)
    }
}

/// A fresh temporary folder (no Foundation in this package).
enum NSTemporaryDirectoryLike {
    static func make() -> String {
        var template = Array("/tmp/nxlua-serve-test-XXXXXX".utf8CString)
        return template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)) }
    }
}
