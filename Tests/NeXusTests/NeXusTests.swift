import NDArray
import XCTest
@testable import NeXus

final class NeXusTests: XCTestCase {
    var dir: String = ""

    override func setUp() {
        dir = NSTemporaryDirectory() + "nxtest-\(getpid())-\(UUID().uuidString)"
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }

    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    func testWriteReadRoundTripWithHyperslabs() throws {
        let path = dir + "/a.nxs"
        do {
            let f = try NXFile(path: path, mode: .write)
            let e = try f.root.makeGroup("entry", nxclass: "NXentry")
            let a = try NDArray.arange(0, 60, 1, dtype: .int32).reshapedView([3, 4, 5])
            try e.makeField("counts", value: .array(a))
            try e.makeField("title", value: .string("héllo"))
            try f.close()
        }
        let f = try NXFile(path: path)
        defer { try? f.close() }
        let c = try XCTUnwrap(try f.root.resolve("/entry/counts") as? NXField)
        XCTAssertEqual(try c.shape, [3, 4, 5])
        XCTAssertEqual(try c.elementType, .numeric(.int32))
        guard case .array(let frame) = try c.read(Selection(parsing: "1")) else { return XCTFail() }
        XCTAssertEqual(frame.shape, [4, 5])
        XCTAssertEqual(try frame.value(at: [0, 0]), 20)
        guard case .array(let rev) = try c.read(Selection(parsing: "-1, ::-2, 1:3")) else { return XCTFail() }
        XCTAssertEqual(rev.shape, [2, 2])
        XCTAssertEqual(try rev.value(at: [0, 0]), 40 + 15 + 1)  // row 3, column 1
        XCTAssertEqual(try rev.value(at: [1, 1]), 40 + 5 + 2)   // row 1, column 2
        guard case .strings(let s, let shape) = try XCTUnwrap(try f.root.resolve("entry/title") as? NXField).read(nil) else { return XCTFail() }
        XCTAssertEqual(s, ["héllo"])
        XCTAssertEqual(shape, [])
    }

    /// Streaming reductions fold many small blocks (chunked, contiguous, a last short
    /// block) into exactly what the in-memory reduction of the whole field gives.
    func testStreamingReductionsMatchInMemory() throws {
        let path = dir + "/s.nxs"
        let f = try NXFile(path: path, mode: .write)
        defer { try? f.close() }
        let a = try NDArray.arange(0, 7 * 6 * 5, 1, dtype: .int32).reshapedView([7, 6, 5])
        let b = try NDArray.binary(.sub, .array(a), .integer(100))  // negatives too
        var opts = NXFieldOptions()
        opts.chunks = [2, 3, 5]
        let fields = [try f.root.makeField("chunked", value: .array(b), options: opts),
                      try f.root.makeField("contiguous", value: .array(try b.copy(as: .float64)))]
        for field in fields {
            guard case .array(let whole) = try field.read(nil) else { return XCTFail() }
            for op in [Reduction.sum, .prod, .min, .max] {
                for axes in [nil, [0], [1], [2], [0, 2], [1, 2], [-1]] as [[Int]?] {
                    for keepdims in [false, true] {
                        let streamed = try field.reduce(op, axes: axes, keepdims: keepdims, blockBytes: 1)
                        let expected = try whole.reduce(op, axes: axes, keepdims: keepdims)
                        XCTAssertEqual(streamed.shape, expected.shape, "\(field.name) \(op) \(String(describing: axes))")
                        XCTAssertEqual(streamed.dtype, expected.dtype)
                        XCTAssertEqual(try streamed.copy().doubles(), try expected.copy().doubles(),
                                       "\(field.name) \(op) \(String(describing: axes)) keepdims \(keepdims)")
                    }
                }
            }
            let m = try field.mean(axes: [0, 1])
            XCTAssertEqual(try m.copy().doubles(), try whole.mean(axes: [0, 1]).copy().doubles())
            var rows: [Int] = []
            try field.forEachBlock(rows: 3) { first, block in rows.append(first); XCTAssertEqual(block.shape[0], first == 6 ? 1 : 3) }
            XCTAssertEqual(rows, [0, 3, 6])
        }
        let text = try f.root.makeField("text", value: .string("x"))
        XCTAssertThrowsError(try text.reduce(.sum, axes: nil))
        XCTAssertThrowsError(try fields[0].reduce(.sum, axes: [3])) {
            XCTAssertTrue("\($0)".contains("axis 3 is out of bounds"), "\($0)")
            XCTAssertTrue("\($0)".contains("/chunked"), "\($0)")
        }
    }

    func testErrorsNameFileAndPath() throws {
        let path = dir + "/b.nxs"
        XCTAssertThrowsError(try NXFile(path: path)) { XCTAssertEqual(($0 as? NeXusError)?.message, "\(path): no such file") }
        FileManager.default.createFile(atPath: path, contents: Data("not hdf5 at all".utf8))
        XCTAssertThrowsError(try NXFile(path: path)) {
            XCTAssertTrue(($0 as? NeXusError)?.message.contains("not an HDF5/NeXus file") == true, "\($0)")
        }
        let f = try NXFile(path: dir + "/c.nxs", mode: .write)
        let c = try f.root.makeField("x", value: .array(try NDArray.arange(0, 10, 1, dtype: .float64)))
        XCTAssertThrowsError(try c.read(Selection(parsing: "10"))) {
            XCTAssertEqual(($0 as? NeXusError)?.message, "\(dir)/c.nxs: /x: index 10 is out of bounds for axis 0 with size 10 (shape (10,))")
        }
        try f.close()
        XCTAssertThrowsError(try c.read(nil)) { XCTAssertEqual(($0 as? NeXusError)?.message, "\(dir)/c.nxs: /x: the file is closed") }
        let r = try NXFile(path: dir + "/c.nxs")
        XCTAssertThrowsError(try r.root.makeGroup("e", nxclass: "NXentry")) {
            XCTAssertTrue(($0 as? NeXusError)?.message.contains("read-only") == true)
        }
        try r.close()
    }

    /// Whole frames of a chunked stack are decoded outside HDF5's lock (NXChunkDecoder):
    /// for every filter plugin and none, what comes out equals HDF5's own read of the same
    /// values (a selection that is not whole chunks goes through H5Dread), frames never
    /// written give the fill value, and other byte orders go through H5Dread.
    func testWholeChunkReadsEqualHDF5Reads() throws {
        var rng = RandomGenerator(seed: 7)
        let frames = try rng.integers(0, 1000, [5, 6, 7], dtype: .int32)
        for compression in [nil, NXCompression.bitshuffleLZ4, .lz4, .gzip(level: 4)] as [NXCompression?] {
            let path = dir + "/w-\(UUID().uuidString).nxs"
            do {
                let f = try NXFile(path: path, mode: .write)
                var o = NXFieldOptions()
                o.shape = [0, 6, 7]
                o.maxshape = [nil, 6, 7]
                o.chunks = [1, 6, 7]
                o.dtype = .int32
                o.compression = compression
                o.fillValue = -1
                let d = try f.root.makeField("data", value: nil, options: o)
                try d.append(.array(frames))
                try d.resize(firstAxis: 7)  // rows 5 and 6: never written
                try f.close()
            }
            let f = try NXFile(path: path)
            defer { try? f.close() }
            let d = try XCTUnwrap(try f.root.resolve("data") as? NXField)
            // the path is taken for plugins and raw chunks (gzip is HDF5's own: H5Dread)
            let out = try NDArray(zeros: [2, 6, 7], dtype: .int32)
            let type = try XCTUnwrap(H5Handle(checking: H5.api.pointee.H5Dget_type(try d.objectID()), .datatype, "type"))
            let taken = try d.readWholeChunks(rows: 1..<3, shape: [7, 6, 7], fileType: type.id, into: out.storage.bytes)
            XCTAssertEqual(taken, compression != .gzip(level: 4), "\(String(describing: compression))")
            if taken { XCTAssertTrue(try same(out, frames.view("1:3"))) }
            XCTAssertFalse(try d.readWholeChunks(rows: 4..<6, shape: [7, 6, 7], fileType: type.id, into: out.storage.bytes),
                           "row 5 was never written")
            for k in 0..<5 {
                guard case .array(let fast) = try d.read(Selection(parsing: "\(k)")),
                      case .array(let slow) = try d.read(Selection(parsing: "\(k), 0:6, 0:7:1")),
                      case .array(let part) = try d.read(Selection(parsing: "\(k), 1:, :")) else { return XCTFail() }
                XCTAssertEqual(fast.shape, [6, 7])
                XCTAssertTrue(try same(fast, frames.view("\(k)")), "\(String(describing: compression)) frame \(k)")
                XCTAssertTrue(try same(slow, fast))
                XCTAssertTrue(try same(part, frames.view("\(k), 1:, :")))
            }
            guard case .array(let block) = try d.read(Selection(parsing: "1:4")),
                  case .array(let tail) = try d.read(Selection(parsing: "4:7")) else { return XCTFail() }
            XCTAssertTrue(try same(block, frames.view("1:4")))
            XCTAssertTrue(try same(tail.view("0"), frames.view("4")))
            XCTAssertTrue(try same(tail.view("1:"), NDArray.full([2, 6, 7], -1, dtype: .int32)))
            // the raw layer (nxlua serve's reads) takes the same path
            let raw = try d.readRaw([[NXRun(start: 2, step: 1, count: 2)], [NXRun(start: 0, step: 1, count: 6)],
                                     [NXRun(start: 0, step: 1, count: 7)]])
            let expected = try frames.view("2:4").copy()
            XCTAssertEqual(raw.bytes, Array(UnsafeRawBufferPointer(start: expected.storage.bytes, count: expected.nbytes)))
        }
    }

    /// Bitshuffle+LZ4 frames are decoded natively (nx_bslz4_decode: SIMD bit transpose,
    /// LZ4_decompress_safe) when whole chunks are read, and by the filter plugin through
    /// H5Dread otherwise: both give the same values for every element size, for frames
    /// that fill several LZ4 blocks, a block's 256-element SIMD groups and a scalar tail,
    /// and end in raw elements; a damaged chunk is an error naming the row, not a crash.
    func testNativeBitshuffleDecodingEqualsThePlugin() throws {
        var rng = RandomGenerator(seed: 11)
        for dtype in [DType.uint8, .uint16, .int32, .float32, .float64] {
            for frame in [[37, 129], [8, 32], [3, 5], [64, 256]] {
                let path = dir + "/b-\(UUID().uuidString).nxs"
                // sparse counts with a few large values, as detector frames are
                let base = try rng.integers(0, 4, [4] + frame, dtype: .int64)
                let spikes = try NDArray.binary(.mul, .array(try rng.integers(0, 2, [4] + frame, dtype: .int64)), .integer(200))
                let frames = try NDArray.binary(.add, .array(base), .array(spikes)).copy(as: dtype)
                do {
                    let f = try NXFile(path: path, mode: .write)
                    var o = NXFieldOptions()
                    o.shape = [4] + frame
                    o.chunks = [1] + frame
                    o.dtype = dtype
                    o.compression = .bitshuffleLZ4
                    let d = try f.root.makeField("data", value: nil, options: o)
                    try d.write(.array(frames), at: nil)
                    try f.close()
                }
                let f = try NXFile(path: path)
                let d = try XCTUnwrap(try f.root.resolve("data") as? NXField)
                // whole frames: whole chunks, decoded natively; a part of each frame: H5Dread
                let type = try XCTUnwrap(H5Handle(checking: H5.api.pointee.H5Dget_type(try d.objectID()), .datatype, "type"))
                let out = try NDArray(zeros: [4] + frame, dtype: dtype)
                XCTAssertTrue(try d.readWholeChunks(rows: 0..<4, shape: [4] + frame, fileType: type.id, into: out.storage.bytes))
                guard case .array(let native) = try d.read(Selection(parsing: "0:4")),
                      case .array(let plugin) = try d.read(Selection(parsing: "0:4, 1:, :")) else { return XCTFail() }
                XCTAssertTrue(try same(out, frames), "\(dtype) \(frame): native decoding")
                XCTAssertTrue(try same(native, frames), "\(dtype) \(frame): native decoding")
                XCTAssertTrue(try same(plugin, frames.view("0:4, 1:, :")), "\(dtype) \(frame): the plugin")
                try f.close()
            }
        }
        // a damaged chunk: its LZ4 blocks cut short
        let path = dir + "/damaged.nxs"
        do {
            let f = try NXFile(path: path, mode: .write)
            var o = NXFieldOptions()
            o.shape = [2, 64, 64]
            o.chunks = [1, 64, 64]
            o.dtype = .int32
            o.compression = .bitshuffleLZ4
            let d = try f.root.makeField("data", value: .array(try rng.integers(0, 100, [2, 64, 64], dtype: .int32)), options: o)
            let chunk = try XCTUnwrap(try d.readChunk(at: [1, 0, 0]))
            var bytes = Array(chunk.bytes)
            for i in stride(from: 20, to: bytes.count - 1, by: 7) { bytes[i] = 0xFF }
            try bytes.withUnsafeBytes { try d.writeChunk(at: [1, 0, 0], bytes: $0) }
            try f.close()
        }
        let f = try NXFile(path: path)
        defer { try? f.close() }
        let d = try XCTUnwrap(try f.root.resolve("data") as? NXField)
        XCTAssertNoThrow(try d.read(Selection(parsing: "0")))
        XCTAssertThrowsError(try d.read(Selection(parsing: "1"))) {
            let message = "\($0)"  // the file, the field, the chunk and what was expected
            XCTAssertTrue(message.hasPrefix(path + ": /data: the chunk at row 1"), message)
            XCTAssertTrue(message.contains("bitshuffle+lz4 does not decode it to 16384 bytes") && message.contains("damaged"), message)
        }
    }

    private func same(_ a: NDArray, _ b: NDArray) throws -> Bool {
        a.shape == b.shape && a.doubles() == b.doubles()
    }

    func testAppendAndFailedWriteLeavesNothingBehind() throws {
        let f = try NXFile(path: dir + "/d.nxs", mode: .write)
        defer { try? f.close() }
        var o = NXFieldOptions()
        o.shape = [0, 2]
        o.dtype = .int32
        o.maxshape = [nil, 2]
        let s = try f.root.makeField("s", value: nil, options: o)
        try s.append(.array(try NDArray.full([2], 7, dtype: .int32)))
        try s.append(.array(try NDArray.full([3, 2], 1, dtype: .int32)))
        XCTAssertEqual(try s.shape, [4, 2])
        XCTAssertThrowsError(try s.append(.array(try NDArray.full([3], 1, dtype: .int32))))
        XCTAssertEqual(try s.shape, [4, 2])
        // A compression filter that is refused leaves no field.
        var bad = NXFieldOptions()
        bad.chunks = [0]
        XCTAssertThrowsError(try f.root.makeField("t", value: .array(try NDArray.full([4], 1)), options: bad))
        XCTAssertEqual(try f.root.names(), ["s"])
    }

    func testFloatSlicesFollowNexusformat() {
        let edges = NXGroup.boundaries([1, 2, 3, 4, 5], bins: 5)
        XCTAssertEqual(edges, [0.5, 1.5, 2.5, 3.5, 4.5, 5.5])
        func pos(_ s: String) -> Selection.Item { NXGroup.position(try! Selection(parsing: s).items[0], edges: edges) }
        XCTAssertEqual(pos("1.5:3.5"), .range(.int(1), .int(3), nil))
        XCTAssertEqual(pos("2.0:4.0"), .range(.int(1), .int(4), nil))
        XCTAssertEqual(pos(":2.5"), .range(.int(0), .int(2), nil))
        XCTAssertEqual(pos("2.5:"), .range(.int(2), .int(5), nil))
        XCTAssertEqual(pos("4.0:2.0"), .range(.int(1), .int(4), nil))
        XCTAssertEqual(pos("2.4"), .index(.int(1)))
        XCTAssertEqual(pos("2.6"), .index(.int(2)))
        let down = NXGroup.boundaries([5, 4, 3, 2, 1], bins: 5)
        XCTAssertEqual(NXGroup.position(try! Selection(parsing: "1.5:3.5").items[0], edges: down), .range(.int(2), .int(4), nil))
    }

    func testNaturalOrderAndLock() throws {
        XCTAssertEqual(["label_10", "arr3", "Zed", "label_9"].sorted(by: NXText.naturalLess), ["Zed", "arr3", "label_9", "label_10"])
        let path = dir + "/l.nxs"
        let cfg = NXLock.Config(timeout: 0.2)
        var o = NXFile.Options()
        o.lock = cfg
        let f = try NXFile(path: path, mode: .write, options: o)
        XCTAssertTrue(FileManager.default.fileExists(atPath: NXLock.resolved(path) + ".lock"))
        XCTAssertThrowsError(try NXFile(path: path, mode: .readWrite, options: o)) {
            XCTAssertTrue("\($0)".contains("locked by \(getpid())@"), "\($0)")
        }
        try f.close()
        XCTAssertFalse(FileManager.default.fileExists(atPath: NXLock.resolved(path) + ".lock"))
        XCTAssertEqual(NXLock.lockPath(for: "/tmp/x/w.nxs", directory: "/locks"), "/locks/tmp!!x!!w.nxs.lock")
    }
}
