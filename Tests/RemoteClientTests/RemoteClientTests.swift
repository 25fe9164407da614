import NDArray
import NeXus
import RemoteServer
import XCTest
@testable import RemoteClient

/// The pieces of the client that need no server: type and shape JSON, values, the
/// selection text and the splitting of big reads, addresses and credentials.
final class RemoteClientTests: XCTestCase {
    func type(_ text: String) throws -> RemoteType { RemoteType(json: try JSON.parse(text)) }

    func testNumericTypes() throws {
        XCTAssertEqual(try type(#"{"class": "H5T_INTEGER", "base": "H5T_STD_I32LE"}"#), RemoteType(element: .numeric(.int32), bigEndian: false))
        XCTAssertEqual(try type(#"{"class": "H5T_INTEGER", "base": "H5T_STD_U16BE"}"#), RemoteType(element: .numeric(.uint16), bigEndian: true))
        XCTAssertEqual(try type(#"{"class": "H5T_FLOAT", "base": "H5T_IEEE_F64BE"}"#).element, .numeric(.float64))
        XCTAssertEqual(try type(#""H5T_STD_I8LE""#).element, .numeric(.int8))
        XCTAssertEqual(try type(#"{"class": "H5T_FLOAT", "base": "H5T_IEEE_F16LE"}"#).element, .unsupported("H5T_IEEE_F16LE"))
        XCTAssertEqual(try type(#"{"class": "H5T_REFERENCE", "base": "H5T_STD_REF_OBJ"}"#).element, .unsupported("H5T_REFERENCE"))
    }

    func testBooleansAsEnumsOfBothServers() throws {
        let nxluaServe = #"{"class": "H5T_ENUM", "base": {"class": "H5T_INTEGER", "base": "H5T_STD_I8LE"}, "mapping": {"FALSE": 0, "TRUE": 1}}"#
        let hsds = #"{"class": "H5T_ENUM", "members": [{"name": "FALSE", "value": 0}, {"name": "TRUE", "value": 1}], "base": {"class": "H5T_INTEGER", "base": "H5T_STD_I8LE"}}"#
        XCTAssertEqual(try type(nxluaServe).element, .numeric(.bool))
        XCTAssertEqual(try type(hsds).element, .numeric(.bool))
        let other = #"{"class": "H5T_ENUM", "base": {"class": "H5T_INTEGER", "base": "H5T_STD_U8LE"}, "mapping": {"RED": 0, "GREEN": 1}}"#
        XCTAssertEqual(try type(other).element, .numeric(.uint8))
    }

    func testStringAndCompoundTypes() throws {
        XCTAssertEqual(try type(#"{"class": "H5T_STRING", "length": "H5T_VARIABLE", "charSet": "H5T_CSET_UTF8"}"#).element,
                       .string(variable: true, utf8: true))
        XCTAssertEqual(try type(#"{"class": "H5T_STRING", "length": 4, "charSet": "H5T_CSET_ASCII"}"#).element,
                       .string(variable: false, utf8: false))
        let c = try type(#"{"class": "H5T_COMPOUND", "fields": [{"name": "h", "type": {"class": "H5T_INTEGER", "base": "H5T_STD_I32LE"}}, {"name": "I", "type": {"class": "H5T_FLOAT", "base": "H5T_IEEE_F64LE"}}]}"#)
        XCTAssertEqual(c.element, .compound([.init(name: "h", type: .numeric(.int32)), .init(name: "I", type: .numeric(.float64))]))
    }

    func testShapes() throws {
        let s = RemoteShape(json: try JSON.parse(#"{"class": "H5S_SIMPLE", "dims": [10, 64], "maxdims": [0, 64]}"#))
        XCTAssertEqual(s.dims, [10, 64])
        XCTAssertEqual(s.maxdims, [nil, 64])
        let u = RemoteShape(json: try JSON.parse(#"{"class": "H5S_SIMPLE", "dims": [3], "maxdims": ["H5S_UNLIMITED"]}"#))
        XCTAssertEqual(u.maxdims, [nil])
        XCTAssertTrue(RemoteShape(json: try JSON.parse(#"{"class": "H5S_SCALAR"}"#)).isScalar)
        XCTAssertEqual(RemoteShape(json: try JSON.parse(#"{"class": "H5S_SCALAR"}"#)).dims, [])
        XCTAssertTrue(RemoteShape(json: try JSON.parse(#"{"class": "H5S_NULL"}"#)).isNull)
    }

    func testJSONValues() throws {
        let i32 = try type(#"{"class": "H5T_INTEGER", "base": "H5T_STD_I32LE"}"#)
        guard case .array(let a) = try RemoteValues.decode(try JSON.parse("[[1, 2, 3], [4, 5, 6]]"), type: i32, shape: [2, 3], what: "t") else {
            return XCTFail("numbers expected")
        }
        XCTAssertEqual(a.dtype, .int32)
        XCTAssertEqual(a.shape, [2, 3])
        XCTAssertEqual(try a.contiguous().doubles(), [1, 2, 3, 4, 5, 6])
        let f64 = try type(#"{"class": "H5T_FLOAT", "base": "H5T_IEEE_F64LE"}"#)
        guard case .array(let b) = try RemoteValues.decode(try JSON.parse("[1.5, NaN, \"Infinity\"]"), type: f64, shape: [3], what: "t") else {
            return XCTFail("numbers expected")
        }
        let d = try b.contiguous().doubles()
        XCTAssertEqual(d[0], 1.5)
        XCTAssertTrue(d[1].isNaN)
        XCTAssertEqual(d[2], .infinity)
        let str = try type(#"{"class": "H5T_STRING", "length": "H5T_VARIABLE", "charSet": "H5T_CSET_UTF8"}"#)
        guard case .strings(let s, let shape) = try RemoteValues.decode(.string("Å"), type: str, shape: [], what: "t") else {
            return XCTFail("strings expected")
        }
        XCTAssertEqual(s, ["Å"])
        XCTAssertEqual(shape, [])
        let comp = try type(#"{"class": "H5T_COMPOUND", "fields": [{"name": "n", "type": {"class": "H5T_INTEGER", "base": "H5T_STD_I64LE"}}, {"name": "name", "type": {"class": "H5T_STRING", "length": "H5T_VARIABLE"}}]}"#)
        guard case .records(let r, _) = try RemoteValues.decode(try JSON.parse(#"[[7, "seven"]]"#), type: comp, shape: [1], what: "t") else {
            return XCTFail("records expected")
        }
        XCTAssertEqual(r[0].map(\.name), ["n", "name"])
        XCTAssertEqual(r[0][0].value, .integer(7))
        XCTAssertEqual(r[0][1].value, .text("seven"))
        // a count that does not fit the shape is an error naming the object
        XCTAssertThrowsError(try RemoteValues.decode(try JSON.parse("[1, 2]"), type: i32, shape: [3], what: "/entry/x")) { e in
            XCTAssertTrue("\(e)".contains("/entry/x") && "\(e)".contains("2 values"), "\(e)")
        }
    }

    func testByteSwap() {
        var bytes: [UInt8] = [1, 2, 3, 4, 5, 6, 7, 8]
        bytes.withUnsafeMutableBytes { RemoteValues.byteSwap($0, itemSize: 4) }
        XCTAssertEqual(bytes, [4, 3, 2, 1, 8, 7, 6, 5])
    }

    func testSelectionText() throws {
        let axes = try Selection(parsing: "1:9:3, 4, ::-7").resolve(shape: [10, 64, 64])
        let forward = axes.map { a -> Selection.Axis in
            var f = a
            if a.step < 0 && a.count > 0 { f.start = a.start + (a.count - 1) * a.step }
            f.step = abs(a.step)
            return f
        }
        XCTAssertEqual(RemoteSelection.text(forward), "[1:8:3,4:5:1,0:64:7]")
    }

    func testSplitByMaxRequestSize() throws {
        let axes = try Selection(parsing: "0:512:2, 10:20").resolve(shape: [1024, 100])
        // 256 rows of 10 int32 = 10240 bytes; 1000 bytes per request: 25 rows a piece
        let pieces = try RemoteSelection.split(axes, itemSize: 4, maxBytes: 1000)
        XCTAssertEqual(pieces.count, 11)
        XCTAssertEqual(pieces.map { $0[0].count }.reduce(0, +), 256)
        XCTAssertTrue(pieces.allSatisfy { $0.reduce(4) { $0 * $1.count } <= 1000 })
        XCTAssertEqual(pieces[1][0].start, 50)  // 25 rows of step 2 later
        XCTAssertEqual(pieces[1][0].step, 2)
        XCTAssertEqual(pieces[0][1], axes[1])
        XCTAssertEqual(RemoteSelection.text(pieces[0]), "[0:49:2,10:20:1]")
        // small enough: one piece, unchanged
        XCTAssertEqual(try RemoteSelection.split(axes, itemSize: 4, maxBytes: 1 << 20), [axes])
        // a row bigger than the limit cannot be split along the first axis
        XCTAssertThrowsError(try RemoteSelection.split(axes, itemSize: 4, maxBytes: 16)) { e in
            XCTAssertTrue("\(e)".contains("max_request_size"), "\(e)")
        }
    }

    func testIdsAreOpaque() throws {
        // the link's collection, then the listed object, decide; the prefix only without them
        XCTAssertEqual(RemoteFile.kind(of: "x-1", link: try JSON.parse(#"{"collection": "datasets"}"#), listed: nil), .dataset)
        XCTAssertEqual(RemoteFile.kind(of: "d-1", link: try JSON.parse(#"{"collection": "groups"}"#), listed: nil), .group)
        XCTAssertEqual(RemoteFile.kind(of: "opaque", link: nil, listed: try JSON.parse(#"{"links": {}, "attributes": {}}"#)), .group)
        XCTAssertEqual(RemoteFile.kind(of: "opaque", link: nil, listed: try JSON.parse(#"{"type": "H5T_STD_I8LE", "shape": {"class": "H5S_SCALAR"}}"#)), .dataset)
        XCTAssertEqual(RemoteFile.kind(of: "opaque", link: nil, listed: try JSON.parse(#"{"type": {"class": "H5T_COMPOUND"}}"#)), .datatype)
        XCTAssertEqual(RemoteFile.kind(of: "g-123", link: nil, listed: nil), .group)
        XCTAssertEqual(RemoteFile.kind(of: "d-123", link: nil, listed: nil), .dataset)
    }

    func testAddressesAndCredentials() throws {
        XCTAssertEqual(HTTPSession.percentEncoded("/data/run 1/ä&x.nxs"), "/data/run%201/%C3%A4%26x.nxs")
        XCTAssertEqual(HTTPSession.query([("domain", "/a b.nxs"), ("select", "[0:1:1]")]), "?domain=/a%20b.nxs&select=%5B0%3A1%3A1%5D")
        XCTAssertThrowsError(try HTTPSession(url: "ftp://host", options: RemoteOptions())) { e in
            XCTAssertTrue("\(e)".contains("bad server address 'ftp://host'"), "\(e)")
        }
        let s = try HTTPSession(url: "http://127.0.0.1:5101///", options: RemoteOptions())
        XCTAssertEqual(s.baseURL, "http://127.0.0.1:5101")
    }
}
