import XCTest
@testable import Catalog
import NeXus

final class UnitsTests: XCTestCase {
    func testTemperaturesNormaliseToKelvin() throws {
        XCTAssertEqual(try Units.toSI(300, unit: "K", dimension: .temperature), 300)
        XCTAssertEqual(try Units.toSI(30, unit: "degC", dimension: .temperature), 303.15, accuracy: 1e-9)
        XCTAssertEqual(try Units.toSI(-273.15, unit: "C", dimension: .temperature), 0, accuracy: 1e-9)
        XCTAssertEqual(try Units.toSI(32, unit: "degF", dimension: .temperature), 273.15, accuracy: 1e-9)
        XCTAssertEqual(try Units.toSI(1.5, unit: "Angstrom", dimension: .length), 1.5e-10, accuracy: 1e-22)
        XCTAssertEqual(try Units.toSI(12.4, unit: "keV", dimension: .energy), 12.4e3 * 1.602176634e-19, accuracy: 1e-25)
        // no units: already SI (NeXus's default)
        XCTAssertEqual(try Units.toSI(5, unit: nil, dimension: .temperature), 5)
    }

    func testWrongDimensionAndUnknownUnitAreNamed() {
        XCTAssertThrowsError(try Units.toSI(1, unit: "mm", dimension: .temperature)) { e in
            XCTAssertTrue("\(e)".contains("'mm' measures length, not temperature"), "\(e)")
        }
        XCTAssertThrowsError(try Units.toSI(1, unit: "furlong", dimension: .length)) { e in
            XCTAssertTrue("\(e)".contains("unknown unit 'furlong'"), "\(e)")
        }
    }

    func testTimes() {
        XCTAssertEqual(NXTime.seconds("1970-01-02"), 86400)
        XCTAssertEqual(NXTime.seconds("1970-01-01T01:00:00Z"), 3600)
        XCTAssertEqual(NXTime.seconds("1970-01-01T01:00:00+01:00"), 0)
        XCTAssertEqual(NXTime.seconds("1970-01-01 00:00:01.5"), 1.5)
        XCTAssertNil(NXTime.seconds("yesterday"))
        XCTAssertNil(NXTime.seconds("2026-13-01"))
        XCTAssertEqual(NXTime.iso(86400), "1970-01-02T00:00:00Z")
        // the forms frame headers and logs use (one parser for the stacker and the catalog)
        XCTAssertEqual(NXTime.seconds("1970/Jan/02 00:00:01.250"), 86401.25)
        XCTAssertEqual(NXTime.seconds(" 1970-01-01T00:01 "), 60)
        XCTAssertEqual(NXTime.seconds("1970-01-01T00:00:02,5-01:00"), 3602.5)
        XCTAssertNil(NXTime.seconds("1970/Foo/02 00:00:01"))
        XCTAssertNil(NXTime.seconds("1970-01-01T25:00:00"))
        XCTAssertEqual(NXTime.iso(86400.25, milliseconds: true), "1970-01-02T00:00:00.250Z")
        XCTAssertEqual(NXTime.iso(86400.9996, milliseconds: true), "1970-01-02T00:00:01Z")
    }
}

final class QueryParserTests: XCTestCase {
    func testPrecedenceAndImplicitAnd() throws {
        let q = try CatalogQuery.parse("sample:LaB6 AND temperature:[100 K TO 300 K] \"rotation scan\"")
        XCTAssertEqual(q, .and([
            .equals(field: "sample", value: "LaB6", position: 1),
            .range(field: "temperature", lower: QueryBound("100 K", inclusive: true, at: 30),
                   upper: QueryBound("300 K", inclusive: true, at: 39), position: 17),
            .text("rotation scan", position: 46),
        ]))
        let o = try CatalogQuery.parse("a:1 OR b:2 c:3")
        XCTAssertEqual(o, .or([.equals(field: "a", value: "1", position: 1),
                               .and([.equals(field: "b", value: "2", position: 8), .equals(field: "c", value: "3", position: 12)])]))
        let n = try CatalogQuery.parse("NOT (sample:Si OR kind:derived)")
        guard case .not(.or(let parts)) = n else { return XCTFail("\(n)") }
        XCTAssertEqual(parts.count, 2)
    }

    func testExistsComparisonsAndUnits() throws {
        XCTAssertEqual(try CatalogQuery.parse("wavelength:*"), .exists(field: "wavelength", position: 1))
        XCTAssertEqual(try CatalogQuery.parse("exists:wavelength"), .exists(field: "wavelength", position: 8))
        XCTAssertEqual(try CatalogQuery.parse("temperature:>=250 K"),
                       .range(field: "temperature", lower: QueryBound("250 K", inclusive: true, at: 15), upper: nil, position: 1))
        XCTAssertEqual(try CatalogQuery.parse("start_time:[2026-12-01 TO *]"),
                       .range(field: "start_time", lower: QueryBound("2026-12-01", inclusive: true, at: 13), upper: nil, position: 1))
        // lower-case operators are words to search for
        XCTAssertEqual(try CatalogQuery.parse("salt and pepper"), .and([.text("salt", position: 1), .text("and", position: 6), .text("pepper", position: 10)]))
    }

    func testQueriesRenderBackToText() throws {
        for text in ["sample:LaB6 AND temperature:[100 K TO 300 K] \"rotation scan\"", "NOT (sample:Si OR kind:derived)",
                     "temperature:>=250K", "start_time:{2026-12-01 TO *]", "exists:wavelength", "title:\"a \\\"quoted\\\" word\""] {
            let q = try CatalogQuery.parse(text)
            XCTAssertEqual(try CatalogQuery.parse(q.text).text, q.text, text)
            XCTAssertEqual(try CatalogQuery.parse(q.text).withoutPositions, q.withoutPositions, text)
        }
    }

    func testErrorsPointAtThePosition() {
        func error(_ q: String) -> QueryError? {
            do { _ = try CatalogQuery.parse(q); return nil } catch let e as QueryError { return e } catch { return nil }
        }
        XCTAssertEqual(error("(sample:Si")?.position, 11)
        XCTAssertTrue(error("(sample:Si")!.message.contains("')' expected"))
        XCTAssertEqual(error("sample:Si)")?.position, 10)
        XCTAssertEqual(error("\"open")?.position, 1)
        XCTAssertEqual(error("temperature:[100 K 300 K]")?.message.contains("'TO' expected"), true)
        XCTAssertEqual(error("sample:LaB6 AND")?.position, 16)
        XCTAssertEqual(error("sample: x")?.position, 8)
        XCTAssertEqual(error("OR sample:x")?.position, 1)
    }
}

final class CompilerTests: XCTestCase {
    let fields = Mapping.standard.fields

    func testValuesTravelAsArgumentsNeverInTheText() throws {
        let hostile = "x'); DROP TABLE entries; --"
        for dialect in [SQLDialect.sqlite, .postgres] {
            let c = QueryCompiler(fields: fields, dialect: dialect)
            let f = try c.compile(.and([.equals(field: "sample", value: hostile, position: 1), .text(hostile, position: 1),
                                        .equals(field: "meta.a'b", value: hostile, position: 1)]))
            XCTAssertFalse(f.sql.contains("DROP"), f.sql)
            XCTAssertFalse(f.sql.contains("a'b"), f.sql)
            XCTAssertTrue(f.arguments.contains(.string(hostile.lowercased())))
        }
    }

    func testRangesAcrossUnitsCompileToKelvin() throws {
        let c = QueryCompiler(fields: fields, dialect: .sqlite)
        let f = try c.compile(try CatalogQuery.parse("temperature:[250 K TO 30 degC]"))
        XCTAssertEqual(f.arguments.count, 2)
        XCTAssertEqual(f.arguments[0].doubleValue!, 250, accuracy: 1e-9)
        XCTAssertEqual(f.arguments[1].doubleValue!, 303.15, accuracy: 1e-9)
        XCTAssertTrue(f.sql.contains("json_extract(si, '$.temperature') >= ?"), f.sql)
        let p = try QueryCompiler(fields: fields, dialect: .postgres).compile(try CatalogQuery.parse("temperature:[250K TO 300K]"))
        XCTAssertTrue(p.sql.contains("(si->>'temperature')::float8 >= $1"), p.sql)
    }

    func testUnknownFieldsAndUnitMismatchesAreNamed() {
        let c = QueryCompiler(fields: fields, dialect: .sqlite)
        XCTAssertThrowsError(try c.compile(try CatalogQuery.parse("x:1 tempx:3"))) { e in
            XCTAssertTrue("\(e)".contains("unknown field 'x'"), "\(e)")
            XCTAssertEqual((e as? QueryError)?.position, 1)
        }
        XCTAssertThrowsError(try c.compile(try CatalogQuery.parse("sample:a temperature:[1 mm TO 2 mm]"))) { e in
            XCTAssertTrue("\(e)".contains("'mm' measures length, not temperature"), "\(e)")
            XCTAssertEqual((e as? QueryError)?.position, 23)
        }
        XCTAssertThrowsError(try c.compile(try CatalogQuery.parse("sample:[a TO b]"))) { e in
            XCTAssertTrue("\(e)".contains("'sample' is text"), "\(e)")
        }
    }
}

final class MappingTests: XCTestCase {
    func testMappingFile() throws {
        let m = try Mapping.parse("""
        # 6-ID-D
        [field.temperature]
        type = "number"
        dimension = "temperature"
        paths = ["instrument/NDAttributes/TempSample"]   # the Lakeshore

        [field.proposal]
        paths = ["experiment_identifier"]
        summary = "proposal number"
        """, source: "6idd.toml")
        let merged = Mapping.standard.applying(m)
        XCTAssertEqual(merged.field("temperature")?.paths.first, "instrument/NDAttributes/TempSample")
        XCTAssertTrue(merged.field("temperature")!.paths.contains("NXsample/temperature"))
        XCTAssertEqual(merged.field("proposal")?.type, .text)
    }

    func testMappingErrorsNameFileAndLine() {
        XCTAssertThrowsError(try Mapping.parse("[field.t]\ntype = \"float\"\npaths = [\"a\"]", source: "m.toml")) { e in
            XCTAssertTrue("\(e)".hasPrefix("m.toml:1: field 't': unknown type 'float'"), "\(e)")
        }
        XCTAssertThrowsError(try Mapping.parse("[field.bad-name]", source: "m.toml")) { e in
            XCTAssertTrue("\(e)".hasPrefix("m.toml:1: bad field name"), "\(e)")
        }
        XCTAssertThrowsError(try Mapping.parse("[field.t]\npaths = [\"a\"\n", source: "m.toml")) { e in
            XCTAssertTrue("\(e)".hasPrefix("m.toml:2:"), "\(e)")
        }
    }
}

/// The SQLite engine with generated entries (files come in the end-to-end tests).
final class SQLiteCatalogTests: XCTestCase {
    var folder = ""

    override func setUp() {
        folder = NSTemporaryDirectory() + "/catalog-test-\(getpid())-\(UInt32.random(in: 0..<UInt32.max))"
        try? FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
    }
    override func tearDown() { try? FileManager.default.removeItem(atPath: folder) }

    func entry(_ i: Int, sample: String, kelvin: Double?, celsius: Double? = nil, start: String, text: String) -> CatalogEntry {
        var e = CatalogEntry(path: "/data/\(i < 3 ? "a" : "b")/scan\(i).nxs", entry: "entry")
        e["sample"] = .text(sample)
        if let k = kelvin { e["temperature"] = .number(k, units: "K", si: k) }
        if let c = celsius { e["temperature"] = .number(c, units: "degC", si: c + 273.15) }
        e["start_time"] = .time(start, seconds: NXTime.seconds(start)!)
        e["title"] = .text(text)
        e["kind"] = .text("raw")
        e["instrument"] = .text("6-ID-D")
        return e
    }

    func makeCatalog() throws -> Catalog {
        let c = try Catalog(location: folder + "/c.sqlite")
        let entries = [
            entry(0, sample: "LaB6", kelvin: 100, start: "2026-12-01T10:00:00Z", text: "rotation scan"),
            entry(1, sample: "LaB6", kelvin: nil, celsius: 26.85, start: "2026-12-01T12:00:00Z", text: "rotation scan at room temperature"),
            entry(2, sample: "Si", kelvin: 250, start: "2026-12-02T08:00:00Z", text: "alignment"),
            entry(3, sample: "LaB6", kelvin: 400, start: "2026-12-03T08:00:00Z", text: "rotation"),
            entry(4, sample: "CeO2", kelvin: nil, start: "2026-11-30T08:00:00Z", text: "powder"),
        ]
        try c.engine.replace(entries.map { FileRecord(path: $0.path, size: 1, mtime: 1, entries: [$0]) })
        return c
    }

    func titles(_ c: Catalog, _ q: String, order: String? = "start_time", under: [String]? = nil) throws -> [String] {
        try c.search(try CatalogQuery.parse(q), order: order, visibleUnder: under).entries.map { $0.path.split(separator: "/").last.map(String.init)! }
    }

    func testQueries() throws {
        let c = try makeCatalog()
        defer { c.close() }
        XCTAssertEqual(try titles(c, "sample:lab6"), ["scan0.nxs", "scan1.nxs", "scan3.nxs"])
        // 26.85 degC = 300 K, written in Celsius, found by a range in kelvin and one across units
        XCTAssertEqual(try titles(c, "temperature:[250 K TO 30 degC]"), ["scan1.nxs", "scan2.nxs"])
        XCTAssertEqual(try titles(c, "temperature:300K"), ["scan1.nxs"])
        XCTAssertEqual(try titles(c, "sample:LaB6 AND \"rotation scan\""), ["scan0.nxs", "scan1.nxs"])
        XCTAssertEqual(try titles(c, "NOT sample:LaB6"), ["scan4.nxs", "scan2.nxs"])
        XCTAssertEqual(try titles(c, "NOT exists:temperature"), ["scan4.nxs"])
        XCTAssertEqual(try titles(c, "(sample:Si OR sample:CeO2) AND start_time:[2026-12-01 TO *]"), ["scan2.nxs"])
        XCTAssertEqual(try titles(c, "start_time:2026-12-01"), ["scan0.nxs", "scan1.nxs"])
        XCTAssertEqual(try titles(c, "sample:La*"), ["scan0.nxs", "scan1.nxs", "scan3.nxs"])
        XCTAssertEqual(try titles(c, "rotation", order: "-temperature"), ["scan3.nxs", "scan1.nxs", "scan0.nxs"])
        XCTAssertEqual(try titles(c, "sample:LaB6", under: ["/data/a"]), ["scan0.nxs", "scan1.nxs"])
        XCTAssertEqual(try c.count(.all, visibleUnder: ["/data/b"]), 2)
        XCTAssertEqual(try c.count(.all, visibleUnder: ["/data/a/scan0"]), 0)  // a prefix of a name is not a folder
        let facets = try c.facets("sample")
        XCTAssertEqual(facets.first?.value, .string("LaB6"))
        XCTAssertEqual(facets.first?.count, 3)
        XCTAssertEqual(try c.facets("sample", visibleUnder: ["/data/b"]).map(\.count).reduce(0, +), 2)
        // the harvested value stays as it was written
        let room = try c.search(try CatalogQuery.parse("temperature:300K")).entries[0]
        XCTAssertEqual(room["temperature"], .number(26.85, units: "degC", si: 26.85 + 273.15))
    }

    func testPagingByCursorVisitsEveryEntryOnce() throws {
        let c = try makeCatalog()
        defer { c.close() }
        for order in [nil, "start_time", "-temperature", "sample"] as [String?] {
            var seen: [String] = []
            var cursor: String? = nil
            repeat {
                let page = try c.search(.all, order: order, limit: 2, cursor: cursor)
                seen += page.entries.map(\.path)
                cursor = page.next
            } while cursor != nil
            XCTAssertEqual(seen.count, 5, "order \(order ?? "nil")")
            XCTAssertEqual(Set(seen).count, 5, "order \(order ?? "nil")")
        }
        XCTAssertThrowsError(try c.search(.all, cursor: "zz"))
    }

    func testHostileStringsAreInert() throws {
        let c = try makeCatalog()
        defer { c.close() }
        for hostile in ["x' OR '1'='1", "LaB6\" OR 1=1 --", "'; DROP TABLE entries; --", "a\\", "*", "NEAR(a b)", "\u{0}"] {
            _ = try? c.search(.equals(field: "sample", value: hostile, position: 1))
            _ = try? c.search(.text(hostile, position: 1))
            _ = try? c.search(.equals(field: "meta.\(hostile)", value: hostile, position: 1))
            _ = try? c.search(try CatalogQuery.parse("sample:\"\(hostile)\""))
        }
        XCTAssertEqual(try c.count(.all), 5)
        XCTAssertEqual(try c.search(.equals(field: "sample", value: "x' OR '1'='1", position: 1)).entries.count, 0)
    }
}

extension CatalogQuery {
    var withoutPositions: CatalogQuery {
        switch self {
        case .all: return .all
        case .and(let p): return .and(p.map(\.withoutPositions))
        case .or(let p): return .or(p.map(\.withoutPositions))
        case .not(let q): return .not(q.withoutPositions)
        case .equals(let f, let v, _): return .equals(field: f, value: v, position: 0)
        case .exists(let f, _): return .exists(field: f, position: 0)
        case .text(let t, _): return .text(t, position: 0)
        case .range(let f, let lo, let hi, _):
            return .range(field: f, lower: lo.map { QueryBound($0.text, inclusive: $0.inclusive, at: 0) },
                          upper: hi.map { QueryBound($0.text, inclusive: $0.inclusive, at: 0) }, position: 0)
        }
    }
}

final class CatalogTextTests: XCTestCase {
    /// The byte-by-byte path for ASCII gives the words the Unicode path gives.
    func testASCIIWordsAgreeWithTheUnicodePath() {
        var rng = SystemRandomNumberGenerator()
        let alphabet = Array((0..<128).map { Character(Unicode.Scalar(UInt8($0))) })
        for n in 0..<3000 {
            let s = String((0..<Int(rng.next() % 40)).map { _ in alphabet[Int(rng.next() % 128)] })
            XCTAssertEqual(CatalogText.asciiWords(s), CatalogText.unicodeWords(s), "case \(n): \(Array(s.utf8))")
        }
        XCTAssertEqual(CatalogText.words("  Scan_001.nxs: LaB6 @ 300K!! "), "scan 001 nxs lab6 300k")
        XCTAssertEqual(CatalogText.words("Température de l'échantillon"), "température de l échantillon")
    }

    /// Strings written whole (nothing to escape) and escaped read back the same.
    func testJSONStringsRoundTrip() throws {
        for s in ["plain LaB6", "quote \" and \\ back", "tab\tnew\nline\u{1}", "é ü 温度", ""] {
            XCTAssertEqual(try CatalogJSON.parse(CatalogJSON.string(s).text), .string(s))
        }
    }
}
