import CBitshuffle
import Detector
import NDArray
import NeXus
@testable import Stacker
import Foundation
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
        XCTAssertEqual(try numbered.next(timeout: 0, wake: -1).map(\.number), [1, 2, 3])
        XCTAssertTrue(numbered.isExhausted)
        XCTAssertEqual(try numbered.next(timeout: 0, wake: -1).count, 0)
        // two files share a number: numbered by position instead
        var positional = ListSource(paths: ["a_1.cbf", "b_1.cbf"])
        XCTAssertEqual(try positional.next(timeout: 0, wake: -1).map(\.number), [0, 1])
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
            try file.close()
            unlink(path)
        }
    }
}

extension StackerTests {
    /// A file cut short (a partial copy, a power cut with --no-sync) and extended with
    /// zeros by the repair: the frames marked stored whose chunks reached past the old
    /// length become missing, in the file too, and the others stay stored.
    func testFramesPastARepairedEndBecomeMissing() throws {
        let dir = NSTemporaryDirectoryPath() + "/repair-\(getpid())"
        mkdir(dir, 0o755)
        defer { _ = try? FileManager.default.removeItem(atPath: dir) }
        var paths: [String] = []
        for n in 1...6 {
            var o = SyntheticPilatus.Options()
            o.modules = (1, 1)
            o.seed = UInt64(n)
            o.frameNumber = n
            let (frame, header) = try SyntheticPilatus.frame(o)
            paths.append("\(dir)/scan_\(n).cbf")
            try CBFWriter.write(paths.last!, frame, header: header)
        }
        var options = StackOptions(source: .files(paths), output: "\(dir)/s.nxs")
        options.progress = false
        options.log = { _ in }
        _ = try Stacker(options: options).run()

        let s = try StackFile.resume(path: options.output, entry: "entry", expectedFirst: nil)
        let ends = try (0..<6).map { i -> UInt64 in
            let c = try XCTUnwrap(try s.data.chunkLocation(at: [i, 0, 0]))
            return c.offset + c.size
        }
        let cut = ends.sorted()[3]  // the three chunks that end after the fourth are lost
        try s.unmarkFrames(endingPast: cut - 1)
        let lost = (0..<6).filter { ends[$0] > cut - 1 }
        XCTAssertEqual(s.framesLostInRepair, lost)
        XCTAssertEqual(lost.count, 3)
        try s.close()

        let again = try StackFile.resume(path: options.output, entry: "entry", expectedFirst: nil)
        defer { try? again.close() }
        XCTAssertEqual((0..<6).filter { again.statuses[$0] == .missing }, lost)
        XCTAssertEqual((0..<6).filter { again.statuses[$0] == .stored }, (0..<6).filter { !lost.contains($0) })
    }

    /// Durable commits hand the page cache of what they wrote back to the kernel, but the
    /// newest part of the file (the frames live readers read next): the first frames'
    /// chunks leave the cache, the last frame's stays.
    func testCommittedPagesLeaveThePageCacheButTheNewest() throws {
        let dir = NSTemporaryDirectoryPath() + "/pages-\(getpid())"
        defer { _ = try? FileManager.default.removeItem(atPath: dir) }
        let paths = try pageCacheFrames(12, in: dir)
        let saved = StackFile.cachedTail
        StackFile.cachedTail = 256 << 10
        defer { StackFile.cachedTail = saved }
        var options = StackOptions(source: .files(paths), output: "\(dir)/s.nxs")
        options.progress = false
        options.log = { _ in }
        options.commitFrames = 1
        options.workers = 1
        _ = try Stacker(options: options).run()

        // what is in the cache before HDF5 reads the file again (its reads bring in more)
        let fd = open(options.output, O_RDONLY)
        defer { close(fd) }
        var st = stat()
        XCTAssertEqual(fstat(fd, &st), 0)
        XCTAssertGreaterThan(st.st_size, 3 * (256 << 10), "frames too small for the test")
        let resident = try residentPages(fd, Int(st.st_size))
        let page = StackerTests.page
        let file = try NXFile(path: options.output, mode: .read)
        defer { try? file.close() }
        let data = try XCTUnwrap(try file.root.resolve("entry/instrument/detector/data") as? NXField)
        let chunks = try (0..<12).map { try XCTUnwrap(try data.chunkLocation(at: [$0, 0, 0])) }
        // pages wholly inside a chunk (HDF5's metadata written at close shares the others)
        func cachedPages(_ c: (offset: UInt64, size: UInt64)) -> Int {
            ((Int(c.offset) + page - 1) / page..<Int(c.offset + c.size) / page).filter { resident[$0] }.count
        }
        let first = chunks.sorted { $0.offset < $1.offset }.first!, last = chunks.sorted { $0.offset < $1.offset }.last!
        XCTAssertEqual(cachedPages(first), 0, "the first frame's chunk is still in the page cache")
        XCTAssertGreaterThan(cachedPages(last), 0, "the newest frame's chunk left the page cache")
    }

    /// Frame files the stacker has read leave the page cache (SourcePages): a clean file at
    /// once. Dirty ones (a detector's newest) are released again 64 files later, once
    /// written back: not tested, that depends on the disk's speed.
    func testReadFramesLeaveThePageCache() throws {
        let dir = NSTemporaryDirectoryPath() + "/source-pages-\(getpid())"
        defer { _ = try? FileManager.default.removeItem(atPath: dir) }
        let paths = try pageCacheFrames(6, in: dir)
        func cached(_ path: String) throws -> Int {
            let fd = open(path, O_RDONLY)
            defer { close(fd) }
            var st = stat()
            XCTAssertEqual(fstat(fd, &st), 0)
            return try residentPages(fd, Int(st.st_size)).filter { $0 }.count
        }
        for p in paths {  // clean and in the cache, as a detector's file once written back
            let fd = open(p, O_RDONLY)
            XCTAssertEqual(fsync(fd), 0)
            var buffer = [UInt8](repeating: 0, count: 1 << 20)
            while read(fd, &buffer, buffer.count) > 0 {}
            close(fd)
            XCTAssertGreaterThan(try cached(p), 0, "\(p) not in the page cache before the run")
        }
        var options = StackOptions(source: .files(paths), output: "\(dir)/s.nxs")
        options.progress = false
        options.log = { _ in }
        _ = try Stacker(options: options).run()
        for p in paths { XCTAssertEqual(try cached(p), 0, "\(p) still in the page cache after it was stacked") }
    }

    static let page = Int(sysconf(Int32(_SC_PAGESIZE)))

    /// Pages of the first `length` bytes of the file `fd` in the page cache (mincore).
    func residentPages(_ fd: Int32, _ length: Int) throws -> [Bool] {
        let page = StackerTests.page
        let map = try XCTUnwrap(mmap(nil, length, PROT_READ, MAP_SHARED, fd, 0))
        defer { munmap(map, length) }
        var resident = [UInt8](repeating: 0, count: (length + page - 1) / page)
        XCTAssertEqual(mincore(map, length, &resident), 0)
        return resident.map { $0 & 1 != 0 }
    }

    /// `count` one-module Pilatus CBFs in a new folder `dir`, for the page-cache tests;
    /// skips where the file system keeps written pages in memory.
    func pageCacheFrames(_ count: Int, in dir: String) throws -> [String] {
        mkdir(dir, 0o755)
        try skipWhereWrittenPagesStay(dir)
        return try (1...count).map { n in
            var o = SyntheticPilatus.Options()
            o.modules = (1, 1)
            o.seed = UInt64(n)
            o.frameNumber = n
            let (frame, header) = try SyntheticPilatus.frame(o)
            try CBFWriter.write("\(dir)/scan_\(n).cbf", frame, header: header)
            return "\(dir)/scan_\(n).cbf"
        }
    }

    /// A file system whose pages are the file (tmpfs) keeps them: nothing to test there.
    func skipWhereWrittenPagesStay(_ dir: String) throws {
        let probe = open("\(dir)/probe", O_CREAT | O_RDWR, 0o644)
        var bytes = [UInt8](repeating: 7, count: 16 * StackerTests.page)
        XCTAssertEqual(write(probe, &bytes, bytes.count), bytes.count)
        fsync(probe)
        posix_fadvise(probe, 0, 0, POSIX_FADV_DONTNEED)
        let kept = try residentPages(probe, bytes.count).contains(true)
        close(probe)
        unlink("\(dir)/probe")
        if kept { throw XCTSkip("this file system keeps written pages in memory (tmpfs?)") }
    }

    /// The native bitshuffle+LZ4 encoder writes exactly the bytes the HDF5 plugin writes:
    /// element sizes 1, 2, 4 and 8, full and partial blocks, leftovers of 1-7 elements,
    /// random bits and detector-like values.
    func testNativeBitshuffleMatchesPlugin() throws {
        guard nx_bitshuffle_uses_avx2() == 1 else { throw XCTSkip("no AVX2 on this CPU: the plugin encodes") }
        let dir = NSTemporaryDirectoryPath()
        var seed: UInt64 = 0x9E3779B97F4A7C15
        func next() -> UInt64 {  // xorshift64*: every bit of every byte varies
            seed ^= seed >> 12; seed ^= seed << 25; seed ^= seed >> 27
            return seed &* 2685821657736338717
        }
        let cases: [(DType, [Int])] = [(.int32, [1, 37, 53]), (.int32, [1, 64, 48]), (.int32, [1, 101, 243]),
                                       (.uint16, [1, 61, 67]), (.uint16, [1, 128, 128]), (.int8, [1, 99, 101]),
                                       (.float64, [1, 33, 35]), (.uint32, [1, 8, 4]), (.int32, [1, 1, 5])]
        for (k, (dtype, chunk)) in cases.enumerated() {
            let path = "\(dir)/bshuf-native-\(k).h5"
            let file = try NXFile(path: path, mode: .write)
            defer { try? file.close(); unlink(path) }
            var o = NXFieldOptions()
            o.dtype = dtype
            o.shape = [0] + chunk.dropFirst()
            o.maxshape = [nil] + chunk.dropFirst().map { Optional($0) }
            o.chunks = chunk
            o.compression = try NXCompression(parsing: "bslz4")
            let field = try file.root.makeField("data", value: nil, options: o)
            let native = try NXChunkEncoder(for: field)
            let plugin = try NXChunkEncoder(for: field, native: false)
            XCTAssertTrue(native.isNative)
            XCTAssertFalse(plugin.isNative)
            let count = chunk.reduce(1, *)
            for pattern in 0..<3 {
                let a = try NDArray(uninitialized: Array(chunk.dropFirst()), dtype: dtype)
                let bytes = a.storage.bytes.assumingMemoryBound(to: UInt8.self)
                for i in 0..<(count * dtype.itemSize) {
                    switch pattern {
                    case 0: bytes[i] = UInt8(truncatingIfNeeded: next())
                    case 1: bytes[i] = i % dtype.itemSize == 0 ? UInt8(truncatingIfNeeded: next() % 7) : 0  // small counts
                    default: bytes[i] = i % 97 == 0 ? 0xFF : UInt8(truncatingIfNeeded: i / dtype.itemSize % 3)  // gaps, runs
                    }
                }
                let theirs = try plugin.encode(consuming: try a.copy())
                // Whole, and produced a block at a time (the stacker's streamed path), both
                // through the native encoder and through the plugin's.
                var offset = 0
                let produce: (UnsafeMutableRawPointer, Int) throws -> Void = { buffer, n in
                    memcpy(buffer, a.storage.bytes + offset, n * dtype.itemSize)
                    offset += n * dtype.itemSize
                }
                let whole = try native.encode(consuming: try a.copy())
                let streamed = try native.encode(producing: produce)
                XCTAssertEqual(offset, count * dtype.itemSize)
                offset = 0
                let pluginStreamed = try plugin.encode(producing: produce)
                for (label, mine) in [("whole", whole), ("streamed", streamed), ("plugin streamed", pluginStreamed)] {
                    let (a1, b1) = (Array(mine.bytes), Array(theirs.bytes))
                    let common = min(a1.count, b1.count)
                    let first = (0..<common).first { a1[$0] != b1[$0] } ?? (a1.count == b1.count ? nil : common)
                    XCTAssertNil(first, "\(label) \(dtype) \(chunk) pattern \(pattern): \(a1.count) bytes against the plugin's \(b1.count), first difference at byte \(first ?? -1)")
                }
            }
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

extension StackerTests {
    /// Each commit leaves a modification time of its own on the file, later than the last
    /// one even when the clock has not moved (a kernel with coarse timestamps gives a
    /// commit's status write its data write's stamp): readers that follow the file by its
    /// size and mtime see every commit.
    func testEachCommitGivesTheFileAStampOfItsOwn() throws {
        let dir = NSTemporaryDirectoryPath() + "/stamps-\(getpid())"
        mkdir(dir, 0o755)
        defer { _ = try? FileManager.default.removeItem(atPath: dir) }
        var o = SyntheticPilatus.Options()
        o.modules = (1, 1)
        let (frame, header) = try SyntheticPilatus.frame(o)
        try CBFWriter.write("\(dir)/scan_1.cbf", frame, header: header)
        var options = StackOptions(source: .files(["\(dir)/scan_1.cbf"]), output: "\(dir)/s.nxs")
        options.progress = false
        options.log = { _ in }
        _ = try Stacker(options: options).run()

        let frozen = timespec(tv_sec: 1_900_000_000, tv_nsec: 999_999_999)
        let saved = StackFile.wallClock
        StackFile.wallClock = { frozen }
        defer { StackFile.wallClock = saved }
        let s = try StackFile.resume(path: options.output, entry: "entry", expectedFirst: nil)
        defer { try? s.close() }
        func mtime() -> timespec {
            var st = stat()
            XCTAssertEqual(stat(options.output, &st), 0)
            return st.st_mtim
        }
        var seen: [Int] = []
        for i in 1...3 {
            _ = try s.commit([], [.init(index: i, sourceName: "scan_\(i + 1).cbf", error: "unreadable")], durable: false)
            let m = mtime()
            XCTAssertEqual([m.tv_sec, m.tv_nsec], [s.commitStamp.tv_sec, s.commitStamp.tv_nsec], "commit \(i)")
            seen.append(m.tv_sec * 1_000_000_000 + m.tv_nsec)
        }
        XCTAssertEqual(seen, [0, 1, 2].map { 1_900_000_000 * 1_000_000_000 + 999_999_999 + $0 }, "a frozen clock")
        let t = StackFile.stamp(after: [timespec(tv_sec: 5, tv_nsec: 999_999_999)], now: timespec(tv_sec: 5, tv_nsec: 0))
        XCTAssertEqual([t.tv_sec, t.tv_nsec], [6, 0])
        let u = StackFile.stamp(after: [timespec(tv_sec: 5, tv_nsec: 0)], now: timespec(tv_sec: 7, tv_nsec: 3))
        XCTAssertEqual([u.tv_sec, u.tv_nsec], [7, 3])
    }
}
