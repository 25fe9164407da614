import Detector
import NDArray
import NeXus
@testable import Stacker
import XCTest

final class StackerTests: XCTestCase {
    func testFrameNumbersFromNames() {
        XCTAssertEqual(FrameNaming.number(in: "/data/scan_00012.cbf"), 12)
        XCTAssertEqual(FrameNaming.number(in: "img_3_0007.tif"), 7)
        XCTAssertEqual(FrameNaming.number(in: "x7/frame.cbf"), nil)
        XCTAssertEqual(FrameNaming.number(in: "0001"), 1)
        XCTAssertTrue(FrameNaming.matches("scan_0001.cbf", pattern: "scan_*.cbf"))
        XCTAssertFalse(FrameNaming.matches(".scan_0001.cbf.part", pattern: "scan_*.cbf"))
        XCTAssertFalse(FrameNaming.isFrameFileName(".scan_0001.cbf"))
        XCTAssertTrue(FrameNaming.isFrameFileName("a_1.TIFF"))
    }

    func testListSourceNumbering() throws {
        var numbered = ListSource(paths: ["b_0003.cbf", "a_0001.cbf", "c_0002.cbf"])
        XCTAssertEqual(numbered.firstNumber, 1)
        XCTAssertEqual(try numbered.next(timeout: 0).map(\.number), [1, 2, 3])
        XCTAssertTrue(numbered.isExhausted)
        // two files share a number: numbered by position instead
        var positional = ListSource(paths: ["a_1.cbf", "b_1.cbf"])
        XCTAssertEqual(try positional.next(timeout: 0).map(\.number), [0, 1])
    }

    func testRuns() {
        XCTAssertEqual(StackFile.runs([0, 1, 2, 5, 6, 9]), [0..<3, 5..<7, 9..<10])
        XCTAssertEqual(StackFile.runs([]), [])
    }

    /// Chunks compressed outside HDF5 read back through HDF5's own filters unchanged.
    func testChunkEncoderRoundTrip() throws {
        let dir = NSTemporaryDirectoryPath()
        for name in ["bslz4", "lz4", "gzip:1", "none"] {
            let path = "\(dir)/encoder-\(name.replacingOccurrences(":", "_")).h5"
            let file = try NXFile(path: path, mode: .write)
            var o = NXFieldOptions()
            o.dtype = .int32
            o.shape = [0, 64, 48]
            o.maxshape = [nil, 64, 48]
            o.chunks = [1, 64, 48]
            o.compression = name == "none" ? nil : try NXCompression(parsing: name)
            let field = try file.root.makeField("data", value: nil, options: o)
            let encoder = try NXChunkEncoder(for: field)
            var frames: [NDArray] = []
            for k in 0..<3 {
                let values = (0..<(64 * 48)).map { Double(($0 * 7919 + k * 31) % 1000) - 2 }
                frames.append(try NDArray.from(values, shape: [64, 48], dtype: .int32))
            }
            try field.resize(firstAxis: 3)
            for (k, f) in frames.enumerated() {
                let chunk = try encoder.encode(consuming: try f.copy())
                try field.writeChunk(at: [k, 0, 0], bytes: chunk.bytes, filterMask: chunk.filterMask)
            }
            guard case .array(let back) = try field.read(nil) else { return XCTFail("no array") }
            for (k, f) in frames.enumerated() {
                guard case .array(let row) = try field.read(Selection([.index(.int(k))])) else { return XCTFail() }
                XCTAssertEqual(row.doubles(), f.doubles(), "\(name) frame \(k)")
            }
            XCTAssertEqual(back.shape, [3, 64, 48])
            XCTAssertThrowsError(try encoder.encode(consuming: try NDArray(zeros: [2, 2], dtype: .int32)))
            file.close()
            unlink(path)
        }
    }
}

private func NSTemporaryDirectoryPath() -> String {
    String(cString: getenv("TMPDIR") ?? strdup("/tmp"))
}

private extension String {
    func replacingOccurrences(_ a: Character, _ b: String) -> String {
        String(flatMap { $0 == a ? Array(b) : [$0] })
    }
}
