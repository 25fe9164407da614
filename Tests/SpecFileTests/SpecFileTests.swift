import XCTest
@testable import SpecFile
import NDArray
import NeXus
#if canImport(Glibc)
import Glibc
#endif

final class SpecFileTests: XCTestCase {
    var folder = ""

    override func setUpWithError() throws {
        var template = Array("/tmp/specfile-test-XXXXXX".utf8CString)
        guard let p = mkdtemp(&template) else { throw SpecError("mkdtemp failed") }
        folder = String(cString: p)
    }

    override func tearDown() {
        _ = try? FileManagerless.removeTree(folder)
    }

    func write(_ name: String, _ text: String) -> String {
        let path = "\(folder)/\(name)"
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        _ = text.utf8CString.withUnsafeBufferPointer { p in Glibc.write(fd, p.baseAddress, p.count - 1) }
        close(fd)
        return path
    }

    static let header = """
    #F t.spec
    #E 1700000000
    #D Tue Nov 14 22:13:20 2023
    #C t  User = tester
    #O0 Two Theta  theta  chi
    #o0 tth th chi

    """

    func testScansLabelsColumnsPositions() throws {
        let text = Self.header + """
        #S 12  ascan  th 0 1 3 1
        #D Tue Nov 14 22:14:00 2023
        #T 0.5  (Seconds)
        #G0 1 2 3
        #Q 1 0 0.5
        #P0 10.25 -3 7e-2
        #N 3
        #L Two Theta  I0  I0

        0 1.5 -2e3
        1 2.5 4.25E+1
        #C interrupted here
        2 3.5
        #S 12  ascan  th 0 1 1 1
        #L x  y
        1 2
        #S 12 again
        #S 7 last

        """
        let f = try SpecFile(path: write("a.spec", text))
        XCTAssertEqual(f.scanNames, ["12", "12.1", "12.2", "7"])
        XCTAssertEqual(f.specFileName, "t.spec")
        let s = try XCTUnwrap(try f.scan("12"))
        XCTAssertEqual(s.command, "ascan  th 0 1 3 1")
        XCTAssertEqual(s.title, "12  ascan  th 0 1 3 1")
        XCTAssertEqual(s.labels, ["Two Theta", "I0", "I0_1"])
        XCTAssertEqual(s.rowCount, 2)
        XCTAssertEqual(s.column("I0")?.doubles(), [1.5, 2.5])
        XCTAssertEqual(s.column("I0_1")?.doubles(), [-2000, 42.5])
        XCTAssertEqual(s.positions.map(\.name), ["Two Theta", "theta", "chi"])
        XCTAssertEqual(s.position("chi"), 0.07)
        XCTAssertEqual(s.countTime, 0.5)
        XCTAssertEqual(s.countTimeUnit, "Seconds")
        XCTAssertEqual(s.hkl, [1, 0, 0.5])
        XCTAssertEqual(s.geometry.first?.values, [1, 2, 3])
        XCTAssertEqual(s.comments, ["interrupted here"])
        XCTAssertEqual(s.warnings.count, 1)
        XCTAssertTrue(s.warnings[0].hasSuffix("a.spec: line 19: row with 2 values where #L names 3 columns (scan interrupted?), skipped"), s.warnings[0])
        XCTAssertEqual(try f.scan("12.1")?.repeatIndex, 1)
        XCTAssertEqual(try f.scan("12.2")?.rowCount, 0)
        XCTAssertNil(try f.scan("13"))
    }

    func testNumbersAreCorrectlyRounded() throws {
        // the fast path and strtod agree bit for bit on what SPEC writes and on hard cases
        var g = SystemRandomNumberGenerator()
        var texts = ["0", "-0", "1e22", "1e23", "9007199254740993", "0.1", "123456789012345678901234",
                     "2.2250738585072014e-308", "4.9e-324", "1.7976931348623157e308", "nan", "inf", "-Infinity",
                     "3.14159265358979323846", ".5", "5.", "+7", "1E-5", "0.000001234"]
        for _ in 0..<20000 {
            let v = Double(bitPattern: UInt64.random(in: 0...UInt64.max, using: &g))
            if v.isFinite { texts.append("\(v)") }
            let short = Double(Int.random(in: -1_000_000...1_000_000, using: &g)) / 1000
            texts.append("\(short)")
        }
        for t in texts {
            let got = t.utf8.withContiguousStorageIfAvailable { parseNumber($0.baseAddress!, 0, $0.count) } ?? nil
            let want = strtod(t, nil)
            XCTAssertNotNil(got, t)
            if want.isNaN { XCTAssertTrue(got!.isNaN, t) } else { XCTAssertEqual(got!.bitPattern, want.bitPattern, t) }
        }
        for bad in ["", "-", "1e", "1.2.3", "abc", "0x10", "1,5", "nan(1)", "--1"] {
            let got = bad.utf8.withContiguousStorageIfAvailable { $0.count == 0 ? nil : parseNumber($0.baseAddress!, 0, $0.count) } ?? nil
            XCTAssertNil(got, bad)
        }
    }

    func testHostileFilesNameFileAndLine() throws {
        func message(_ text: String, scan: String? = nil) -> String {
            let path = write("bad.spec", text)
            do {
                let f = try SpecFile(path: path)
                if let scan { _ = try f.scan(scan) }
                return "no error"
            } catch let e as SpecError { return e.message } catch { return "\(error)" }
        }
        XCTAssertEqual(message(""), "\(folder)/bad.spec: not a SPEC data file (empty)")
        XCTAssertEqual(message("hello\n"), "\(folder)/bad.spec: not a SPEC data file (no #F, #E or #S control line)")
        XCTAssertEqual(message(Self.header + "#S\n"), "\(folder)/bad.spec: line 7: #S line without a scan number")
        XCTAssertEqual(message(Self.header + "#S 1 x\n#P0 1 zz 3\n", scan: "1"),
                       "\(folder)/bad.spec: line 8: #P0 value 'zz' for motor 'theta' is not a number")
        XCTAssertEqual(message(Self.header + "#S 1 x\n#L a b c\n1 2 3\n", scan: "1"),
                       "\(folder)/bad.spec: line 8: #L labels must be separated by two spaces ('a b c')")
        XCTAssertTrue(message("#S 1 x\n\u{0}\u{1}").contains("binary data"))
    }

    func testCarriageReturnsAndMCA() throws {
        let text = "#E 1\r\n#O0 m\r\n#S 1 x\r\n#P0 4\r\n#@MCA 16C\r\n#N 2\r\n#L a  b\r\n1 2\r\n@A 1 2 \\\r\n3 4\r\n3 4\r\n@A 5 6 7 8\r\n"
        let f = try SpecFile(path: write("crlf.spec", text))
        let s = try XCTUnwrap(try f.scan("1"))
        XCTAssertEqual(s.column("b")?.doubles(), [2, 4])
        XCTAssertEqual(s.position("m"), 4)
        XCTAssertEqual(s.mca.first?.name, "mca")
        XCTAssertEqual(s.mca.first?.spectra.shape, [2, 4])
        XCTAssertEqual(s.mca.first?.spectra.doubles(), [1, 2, 3, 4, 5, 6, 7, 8])
        XCTAssertEqual(s.other.first?.key, "@MCA")
    }

    func testNeXusRoundTrip() throws {
        let text = Self.header + "#S 3  ascan  th 0 1 2 1\n#D Tue Nov 14 22:14:00 2023\n#P0 1 2 3\n#N 2\n#L th  det\n0 5\n1 6\n"
        let f = try SpecFile(path: write("n.spec", text))
        let out = "\(folder)/n.nxs"
        try SpecToNeXus.write(f, to: out)
        let nx = try NXFile(path: out)
        defer { try? nx.close() }
        let data = try XCTUnwrap(try nx.root.resolve("S3/data") as? NXGroup)
        XCTAssertEqual(data.stringAttribute("signal"), "det")
        XCTAssertEqual(data.stringAttribute("axes"), "th")
        guard case .array(let det)? = try (data.child("det") as? NXField)?.read(nil) else { return XCTFail("no det") }
        XCTAssertEqual(det.doubles(), [5, 6])
        guard case .strings(let d, _)? = try (nx.root.resolve("S3/date") as? NXField)?.read(nil) else { return XCTFail("no date") }
        XCTAssertEqual(d, ["2023-11-14T22:14:00"])
        XCTAssertEqual(SpecToNeXus.cleanName("2 theta"), "_2_theta")
    }
}

/// rm -r without Foundation.
enum FileManagerless {
    static func removeTree(_ path: String) throws {
        guard let d = opendir(path) else { unlink(path); return }
        while let e = readdir(d) {
            let name = withUnsafePointer(to: e.pointee.d_name) { String(cString: UnsafeRawPointer($0).assumingMemoryBound(to: CChar.self)) }
            if name == "." || name == ".." { continue }
            let p = "\(path)/\(name)"
            var st = stat()
            if lstat(p, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR { try removeTree(p) } else { unlink(p) }
        }
        closedir(d)
        rmdir(path)
    }
}
