import CCBFShims
import CTIFFShims
@testable import Detector
import NDArray
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// A fresh folder per test.
func temporaryDirectory() -> String {
    var template = Array("/tmp/nxlua-detector-XXXXXX".utf8CString)
    let dir = template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)!) }
    return dir
}

func readBytes(_ path: String) -> [UInt8] {
    guard let f = fopen(path, "rb") else { return [] }
    defer { fclose(f) }
    var out: [UInt8] = []
    var buf = [UInt8](repeating: 0, count: 1 << 16)
    while true {
        let n = fread(&buf, 1, buf.count, f)
        if n == 0 { break }
        out += buf[0..<n]
    }
    return out
}

func writeBytes(_ path: String, _ bytes: [UInt8]) {
    let f = fopen(path, "wb")!
    _ = bytes.withUnsafeBytes { fwrite($0.baseAddress, 1, $0.count, f) }
    fclose(f)
}

func int32s(_ a: NDArray) -> [Int32] { Array(UnsafeBufferPointer(start: a.base(Int32.self), count: a.count)) }

/// The byte-offset decoder: every escape, exact sizes, never a read past the data
/// (the buffers are allocated to the byte, so AddressSanitizer sees any overread).
final class ByteOffsetTests: XCTestCase {
    /// Deltas that exercise every escape and its edges.
    static func edgeValues() -> [Int32] {
        var v: [Int32] = [0, 1, -1, 127, -127, 0, 128, -128, 0, 129, 32767, 0, -32767, 0, 32768, 0, -32768,
                          0, 65535, Int32.max, Int32.min, 0, Int32.max, -1, Int32.min, 5, 1_048_574, -2, -1]
        var rng = RandomGenerator(seed: 7)
        for _ in 0..<5000 {
            switch rng.next(below: 4) {
            case 0: v.append(Int32(truncatingIfNeeded: Int64(rng.next(below: 200)) - 100))
            case 1: v.append(Int32(truncatingIfNeeded: Int64(rng.next(below: 60000)) - 30000))
            case 2: v.append(Int32(truncatingIfNeeded: rng.next()))
            default: v.append(v.last! &+ Int32(rng.next(below: 3)) &- 1)
            }
        }
        return v
    }

    func decodeExact(_ stream: [UInt8], count: Int) throws(ByteOffset.Shortfall) -> [Int32] {
        let src = UnsafeMutableRawPointer.allocate(byteCount: max(stream.count, 1), alignment: 1)
        defer { src.deallocate() }
        stream.withUnsafeBytes { src.copyMemory(from: $0.baseAddress!, byteCount: stream.count) }
        var out = [Int32](repeating: 0, count: count)
        _ = try out.withUnsafeMutableBufferPointer { o throws(ByteOffset.Shortfall) -> Int in
            try ByteOffset.decode(UnsafeRawBufferPointer(start: src, count: stream.count), into: o.baseAddress!, count: count)
        }
        return out
    }

    func testRoundTripEveryEscape() throws {
        let values = ByteOffsetTests.edgeValues()
        let stream = values.withUnsafeBufferPointer { ByteOffset.encode($0) }
        XCTAssertEqual(try decodeExact(stream, count: values.count), values)
        // the generic decoder agrees, for every integer type it serves
        var wide = [Int64](repeating: 0, count: values.count)
        _ = try stream.withUnsafeBytes { s in try wide.withUnsafeMutableBufferPointer { try ByteOffset.decode(s, into: $0.baseAddress!, count: values.count) } }
        XCTAssertEqual(wide.map { Int32(truncatingIfNeeded: $0) }, values)
        var u16 = [UInt16](repeating: 0, count: values.count)
        _ = try stream.withUnsafeBytes { s in try u16.withUnsafeMutableBufferPointer { try ByteOffset.decode(s, into: $0.baseAddress!, count: values.count) } }
        XCTAssertEqual(u16, values.map { UInt16(truncatingIfNeeded: $0) })
    }

    func testInt64EscapeDecodes() throws {
        // 0x80, 0x8000, 0x80000000 escapes to an int64 delta of 5
        let stream: [UInt8] = [0x80, 0x00, 0x80, 0x00, 0x00, 0x00, 0x80, 5, 0, 0, 0, 0, 0, 0, 0, 0x01]
        XCTAssertEqual(try decodeExact(stream, count: 2), [5, 6])
    }

    func testEveryTruncationThrowsWithoutOverread() {
        let values = Array(ByteOffsetTests.edgeValues().prefix(300))
        let stream = values.withUnsafeBufferPointer { ByteOffset.encode($0) }
        for cut in 0..<stream.count {
            do {
                _ = try decodeExact(Array(stream.prefix(cut)), count: values.count)
                XCTFail("a stream cut at \(cut) of \(stream.count) bytes decoded")
            } catch {
                XCTAssertLessThan(error.decoded, values.count)
                XCTAssertLessThanOrEqual(error.consumed, cut)
            }
        }
    }

    func testRandomBytesNeverCrash() {
        var rng = RandomGenerator(seed: 11)
        for round in 0..<2000 {
            let n = Int(rng.next(below: 64))
            var bytes = (0..<n).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            if round % 3 == 0 { for i in stride(from: 0, to: n, by: 5) { bytes[i] = 0x80 } }  // many escapes
            let count = Int(rng.next(below: 80))
            if let out = try? decodeExact(bytes, count: count) { XCTAssertEqual(out.count, count) }
        }
    }

    func testEightByteFastPathMatchesScalarPath() throws {
        // long runs of one-byte deltas with an escape at every position modulo 8
        var values: [Int32] = []
        var x: Int32 = 0
        for i in 0..<4096 {
            x &+= (i % 37 == 0) ? 1000 : Int32(i % 7) - 3
            values.append(x)
        }
        let stream = values.withUnsafeBufferPointer { ByteOffset.encode($0) }
        XCTAssertEqual(try decodeExact(stream, count: values.count), values)
        var generic = [Int32](repeating: 0, count: values.count)
        _ = try stream.withUnsafeBytes { s in
            try generic.withUnsafeMutableBufferPointer { o in
                try ByteOffset.decode(s, into: UnsafeMutableRawPointer(o.baseAddress!).assumingMemoryBound(to: UInt32.self), count: values.count)
            }
        }
        XCTAssertEqual(generic, values)
    }

    /// The AVX2 runs (when the CPU has them) and the scalar path decode alike: runs of
    /// one-byte deltas with an escape at every position modulo 32, deltas of +-127 whose
    /// 16-element sums reach the int16 lanes' edge, values wrapping past Int32.max, a
    /// stream ending inside a run, and decoded whole or in pieces of many sizes.
    func testVectorRunsMatchScalarPath() throws {
        var values: [Int32] = []
        var x: Int32 = Int32.max - 5000
        for i in 0..<9000 {
            let delta: Int32
            if i % 37 == 0 { delta = 1000 }                    // an int16 escape
            else if i % 41 == 0 { delta = -70_000 }            // an int32 escape
            else if (i / 300) % 4 == 0 { delta = 127 }         // wraps past Int32.max
            else if (i / 300) % 4 == 1 { delta = -127 }
            else { delta = Int32(i % 7) - 3 }
            x &+= delta
            values.append(x)
        }
        let stream = values.withUnsafeBufferPointer { ByteOffset.encode($0) }
        let saved = ByteOffset.vectorRuns
        defer { ByteOffset.vectorRuns = saved }
        for vector in [false, saved] {
            ByteOffset.vectorRuns = vector
            XCTAssertEqual(try decodeExact(stream, count: values.count), values, "vector runs \(vector)")
            for piece in [1, 7, 31, 32, 33, 2048] {
                let src = UnsafeMutableRawPointer.allocate(byteCount: stream.count, alignment: 1)
                defer { src.deallocate() }
                stream.withUnsafeBytes { src.copyMemory(from: $0.baseAddress!, byteCount: stream.count) }
                var out = [Int32](repeating: 0, count: values.count)
                var state = ByteOffset.Position()
                try out.withUnsafeMutableBufferPointer { o throws(ByteOffset.Shortfall) in
                    var done = 0
                    while done < values.count {
                        let n = min(piece, values.count - done)
                        try ByteOffset.decode(UnsafeRawBufferPointer(start: src, count: stream.count), into: o.baseAddress! + done,
                                              count: n, continuing: &state)
                        done += n
                    }
                }
                XCTAssertEqual(out, values, "vector runs \(vector), pieces of \(piece)")
                XCTAssertEqual(state.consumed, stream.count)
            }
            // cut inside a long run: the elements before the cut, no overread
            let runStart = stream.count / 2
            XCTAssertThrowsError(try decodeExact(Array(stream.prefix(runStart)), count: values.count)) { e in
                XCTAssertLessThanOrEqual((e as? ByteOffset.Shortfall)?.consumed ?? .max, runStart)
            }
        }
    }
}

final class MD5Tests: XCTestCase {
    func md5(_ s: String) -> String {
        Array(s.utf8).withUnsafeBytes { MD5.digest($0) }.map { String($0, radix: 16).count == 1 ? "0" + String($0, radix: 16) : String($0, radix: 16) }.joined()
    }

    func testRFC1321Vectors() {
        XCTAssertEqual(md5(""), "d41d8cd98f00b204e9800998ecf8427e")
        XCTAssertEqual(md5("a"), "0cc175b9c0f1b6a831c399e269772661")
        XCTAssertEqual(md5("abc"), "900150983cd24fb0d6963f7d28e17f72")
        XCTAssertEqual(md5("message digest"), "f96b697d7cb7938d525a2f31aaf161d0")
        XCTAssertEqual(md5("abcdefghijklmnopqrstuvwxyz"), "c3fcd3d76192e4007dfb496cca67e13b")
        XCTAssertEqual(md5("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"), "d174ab98d277d9f5a5611c2c9f419d9f")
        XCTAssertEqual(md5(String(repeating: "1234567890", count: 8)), "57edf4a22be3c955ac49da2e2107b67a")
    }

    func testBase64() {
        XCTAssertEqual(Base64.encode([]), "")
        XCTAssertEqual(Base64.encode(Array("f".utf8)), "Zg==")
        XCTAssertEqual(Base64.encode(Array("fo".utf8)), "Zm8=")
        XCTAssertEqual(Base64.encode(Array("foobar".utf8)), "Zm9vYmFy")
    }
}

final class PilatusHeaderTests: XCTestCase {
    func testPilatus12Header() {
        let h = PilatusHeader(parsing: SyntheticPilatus.header())
        XCTAssertEqual(h["detector"]?.value, .text("PILATUS 2M, 24-0111"))
        XCTAssertEqual(h["time"]?.value, .text("2024-03-01T12:00:01.000"))
        XCTAssertEqual(h["pixel_size"]?.value, .numbers([172e-6, 172e-6]))
        XCTAssertEqual(h["pixel_size"]?.units, "m")
        XCTAssertEqual(h["sensor"]?.value, .text("Silicon"))
        XCTAssertEqual(h["sensor_thickness"]?.value, .number(0.00045))
        XCTAssertEqual(h["exposure_time"]?.value, .number(0.0995))
        XCTAssertEqual(h["exposure_time"]?.units, "s")
        XCTAssertEqual(h["exposure_period"]?.value, .number(0.1))
        XCTAssertEqual(h["tau"]?.value, .number(383.8e-9))
        XCTAssertEqual(h["count_cutoff"]?.value, .integer(1_048_574))
        XCTAssertEqual(h["count_cutoff"]?.units, "counts")
        XCTAssertEqual(h["threshold_setting"]?.value, .number(6344))
        XCTAssertEqual(h["threshold_setting"]?.units, "eV")
        XCTAssertEqual(h["gain_setting"]?.value, .text("high gain (vrf = -0.150)"))
        XCTAssertEqual(h["n_excluded_pixels"]?.value, .integer(1621))
        XCTAssertEqual(h["wavelength"]?.value, .number(0.9793))
        XCTAssertEqual(h["wavelength"]?.units, "A")
        XCTAssertEqual(h["energy_range"]?.value, .numbers([0, 0]))
        XCTAssertEqual(h["detector_distance"]?.value, .number(0.23))
        XCTAssertEqual(h["beam_xy"]?.value, .numbers([741.5, 846.5]))
        XCTAssertEqual(h["beam_xy"]?.units, "pixels")
        XCTAssertEqual(h["flux"]?.value, .number(0))
        XCTAssertNil(h["flux"]?.units)
        XCTAssertEqual(h["filter_transmission"]?.value, .number(1))
        XCTAssertEqual(h["start_angle"]?.value, .number(0.1))
        XCTAssertEqual(h["start_angle"]?.units, "deg")
        XCTAssertEqual(h["angle_increment"]?.value, .number(0.1))
        for k in ["alpha", "kappa", "omega", "chi", "phi_increment", "omega_increment", "chi_increment", "detector_2theta"] {
            guard case .number = h[k]?.value else { return XCTFail("\(k): \(String(describing: h[k]))") }
            XCTAssertEqual(h[k]?.units, "deg", k)
        }
        XCTAssertEqual(h["oscillation_axis"]?.value, .text("X, CW"))
        XCTAssertEqual(h["n_oscillations"]?.value, .integer(1))
        XCTAssertEqual(h["image_path"]?.value, .text("/ramdisk/"))
    }

    func testSLS10HeaderAndUnknownKeys() {
        let text = """
        # Detector: PILATUS 6M SN: 60-0001
        # 2007/Jun/17 15:12:36.928
        # Pixel_size 172e-6 m x 172e-6 m
        # Silicon sensor, thickness 0.000320 m
        # Exposure_time 0.995000 s
        # Exposure_period 1.000000 s
        # Tau = 0 s
        # Count_cutoff 1048575 counts
        # Threshold_setting 5000 eV
        # Wavelength 1.0000 A
        # Beam_xy (1231.50, 1263.50) pixels
        # Start_angle 0.0000 deg.
        # Angle_increment 1.0000 deg.
        # Shutter_time 1.000000 s
        # My_own_key 12 apples
        # Flux junk
        not a header line
        """
        let h = PilatusHeader(parsing: text)
        XCTAssertEqual(h["detector"]?.value, .text("PILATUS 6M SN: 60-0001"))
        XCTAssertEqual(h["time"]?.value, .text("2007/Jun/17 15:12:36.928"))
        XCTAssertEqual(h["threshold_setting"]?.value, .number(5000))
        XCTAssertEqual(h["count_cutoff"]?.value, .integer(1_048_575))
        XCTAssertEqual(h["beam_xy"]?.value, .numbers([1231.5, 1263.5]))
        XCTAssertEqual(h["shutter_time"]?.value, .number(1))
        XCTAssertEqual(h["my_own_key"]?.value, .text("12 apples"))  // unknown keys stay text
        XCTAssertEqual(h["flux"]?.value, .text("junk"))              // an unparsable known key too
        XCTAssertEqual(h.entries.count, 17)
    }
}

/// CBF reading: the native reader against cbflib element by element, and every fault.
final class CBFTests: XCTestCase {
    var dir = ""
    override func setUp() { dir = temporaryDirectory() }
    override func tearDown() { _ = system("rm -rf '\(dir)'") }

    static var sharedData: String {
        // Tests/DetectorTests/DetectorTests.swift -> the repository -> ../shared/data/cbf
        var parts = "\(#filePath)".split(separator: "/").map(String.init)
        parts.removeLast(3)
        return "/" + parts.joined(separator: "/") + "/../shared/data/cbf"
    }

    func testSyntheticPilatus2MNativeEqualsCBFLib() throws {
        let (frame, header) = try SyntheticPilatus.frame()
        XCTAssertEqual(frame.shape, [1679, 1475])
        let v = int32s(frame)
        // the frame is what it claims: gaps, dead pixels, hot pixels, spots
        XCTAssertEqual(v[487], -1)                  // first gap column
        XCTAssertEqual(v[195 * 1475], -1)           // first gap row
        XCTAssertEqual(v.filter { $0 == -1 }.count, 1679 * 1475 - 24 * 487 * 195)
        XCTAssertGreaterThan(v.filter { $0 == -2 }.count, 100)
        XCTAssertGreaterThanOrEqual(v.filter { $0 >= 1_048_500 }.count, 15)
        XCTAssertLessThanOrEqual(v.max()!, 1_048_574)
        XCTAssertGreaterThan(v.filter { $0 > 1000 && $0 < 1_000_000 }.count, 100)  // spots

        let path = "\(dir)/frame_00001.cbf"
        try CBFWriter.write(path, frame, header: header)
        let size = readBytes(path).count
        XCTAssertLessThan(size, 3_000_000, "about a byte per pixel, as a real Pilatus 2M frame")
        let native = try FrameReader.read(path)
        XCTAssertEqual(native.header.decoder, "native")
        XCTAssertEqual(native.header.compression, "byte_offset")
        XCTAssertEqual(native.header.convention, "PILATUS_1.2")
        XCTAssertEqual(native.header.pilatus?["exposure_time"]?.value, .number(0.0995))
        var o = FrameReader.Options()
        o.decoder = .cbflib
        o.checkMD5 = true  // cbflib checks the Content-MD5 the writer computed
        let reference = try FrameReader.read(path, options: o)
        XCTAssertEqual(reference.header.decoder, "cbflib")
        XCTAssertEqual(reference.array.shape, native.array.shape)
        XCTAssertEqual(reference.array.dtype, .int32)
        XCTAssertEqual(reference.header.pilatus?["beam_xy"]?.value, .numbers([741.5, 846.5]))
        let a = int32s(native.array), b = int32s(reference.array)
        XCTAssertTrue(a == b, "native and cbflib decodings differ at \(zip(a, b).enumerated().first { $0.1.0 != $0.1.1 }.map { $0.0 } ?? -1)")
        XCTAssertTrue(a == v)
        o.decoder = .native
        XCTAssertTrue(int32s(try FrameReader.read(path, options: o).array) == v)  // our own MD5 agrees too

        // Decoded in pieces of uneven sizes (the stacker's streamed path): the same pixels.
        var pieces = [Int32](repeating: 0, count: 1679 * 1475 + 1)
        let streamed: Bool? = try CBFReader.withPixelStream(path) { stream in
            XCTAssertEqual(stream.shape, [1679, 1475])
            XCTAssertEqual(stream.header.pilatus?["beam_xy"]?.value, .numbers([741.5, 846.5]))
            try pieces.withUnsafeMutableBytes { out in
                var done = 0
                var n = 1
                while done < 1679 * 1475 {
                    let k = min(n, 1679 * 1475 - done)
                    try stream.next(into: out.baseAddress! + 4 * done, count: k)
                    done += k
                    n = n * 3 % 4099 + 1
                }
                XCTAssertThrowsError(try stream.next(into: out.baseAddress! + 4 * done, count: 1))
            }
            return true
        }
        pieces.removeLast()
        XCTAssertEqual(streamed, true)
        XCTAssertTrue(pieces == v)
    }

    /// The pixel stream refuses what it cannot stream (read() handles it) and fails a
    /// truncated frame with the same message as read().
    func testPixelStreamFaults() throws {
        let (_, bytes) = try small()
        let start = bytes.firstIndex(of: 0xD5)! + 1
        let path = "\(dir)/stream_cut.cbf"
        writeBytes(path, Array(bytes.prefix(start + 100)))
        XCTAssertThrowsError(try CBFReader.withPixelStream(path) { _ in true }) { e in
            XCTAssertTrue((e as? DetectorError)?.message.contains("truncated: X-Binary-Size says") == true, "\(e)")
        }
        let tiff = "\(dir)/stream.tif"
        try TIFFWriter.write(tiff, try NDArray.from([1, 2, 3, 4], shape: [2, 2], dtype: .int32))
        XCTAssertNil(try CBFReader.withPixelStream(tiff) { _ in true })
    }

    func testEveryElementTypeAgainstCBFLib() throws {
        let values = ByteOffsetTests.edgeValues().prefix(600)
        for dtype in [DType.int8, .uint8, .int16, .uint16, .int32, .uint32] {
            let a = try NDArray(uninitialized: [20, 30], dtype: dtype)
            for (i, x) in values.enumerated() {
                switch dtype {
                case .int8: a.base(Int8.self)[i] = Int8(truncatingIfNeeded: x)
                case .uint8: a.base(UInt8.self)[i] = UInt8(truncatingIfNeeded: x)
                case .int16: a.base(Int16.self)[i] = Int16(truncatingIfNeeded: x)
                case .uint16: a.base(UInt16.self)[i] = UInt16(truncatingIfNeeded: x)
                case .int32: a.base(Int32.self)[i] = x
                default: a.base(UInt32.self)[i] = UInt32(bitPattern: x)
                }
            }
            let path = "\(dir)/t_\(dtype.rawValue).cbf"
            try CBFWriter.write(path, a)
            let native = try CBFReader.read(path)
            let reference = try CBFReader.readWithCBFLib(path)
            XCTAssertEqual(native.array.dtype, dtype)
            XCTAssertEqual(reference.array.dtype, dtype)
            let n = 600 * dtype.itemSize
            XCTAssertEqual(memcmp(native.array.storage.bytes, a.storage.bytes, n), 0, dtype.rawValue)
            XCTAssertEqual(memcmp(reference.array.storage.bytes, a.storage.bytes, n), 0, dtype.rawValue)
        }
    }

    func small() throws -> (String, [UInt8]) {
        let a = try NDArray(uninitialized: [40, 50], dtype: .int32)
        for (i, x) in ByteOffsetTests.edgeValues().prefix(2000).enumerated() { a.base(Int32.self)[i] = x }
        let path = "\(dir)/small.cbf"
        try CBFWriter.write(path, a, header: "# Exposure_time 1.0 s")
        return (path, readBytes(path))
    }

    func expectError(_ path: String, _ fragment: String, options: FrameReader.Options = .init(),
                     file: StaticString = #filePath, line: UInt = #line) {
        do {
            _ = try FrameReader.read(path, options: options)
            XCTFail("\(path) was read", file: file, line: line)
        } catch let e as DetectorError {
            XCTAssertTrue(e.message.hasPrefix(path), e.message, file: file, line: line)
            XCTAssertTrue(e.message.contains(fragment), "\(e.message) lacks '\(fragment)'", file: file, line: line)
        } catch {
            XCTFail("\(error)", file: file, line: line)
        }
    }

    func replacing(_ bytes: [UInt8], _ old: String, _ new: String) -> [UInt8] {
        let o = Array(old.utf8), n = Array(new.utf8)
        for i in 0...(bytes.count - o.count) where Array(bytes[i..<(i + o.count)]) == o {
            return Array(bytes[..<i]) + n + Array(bytes[(i + o.count)...])
        }
        XCTFail("'\(old)' not found")
        return bytes
    }

    func testTruncatedFilesFailClearly() throws {
        let (_, bytes) = try small()
        let start = bytes.firstIndex(of: 0xD5)! + 1
        // cut inside the text, inside the MIME header, and at every few bytes of the data
        for cut in [10, 200, start - 2] + Array(stride(from: start, to: start + 2200, by: 97)) {
            let path = "\(dir)/cut_\(cut).cbf"
            writeBytes(path, Array(bytes.prefix(cut)))
            do {
                _ = try FrameReader.read(path)
                XCTFail("cut at \(cut) was read")
            } catch let e as DetectorError {
                XCTAssertTrue(e.message.hasPrefix(path), e.message)
            }
        }
        let path = "\(dir)/cut.cbf"
        writeBytes(path, Array(bytes.prefix(start + 100)))
        expectError(path, "truncated: X-Binary-Size says")
    }

    func testWrongBinarySize() throws {
        let (_, bytes) = try small()
        let size = Int(String(decoding: bytes, as: UTF8.self).split(separator: "\r\n").first { $0.hasPrefix("X-Binary-Size: ") }!.dropFirst(15))!
        let path = "\(dir)/small_size.cbf"
        writeBytes(path, replacing(bytes, "X-Binary-Size: \(size)\r", "X-Binary-Size: \(size / 2)\r"))
        expectError(path, "corrupt or truncated byte-offset data")
        writeBytes(path, replacing(bytes, "X-Binary-Size: \(size)\r", "X-Binary-Size: \(size + 100000)\r"))
        expectError(path, "truncated: X-Binary-Size says \(size + 100000) bytes")
        writeBytes(path, replacing(bytes, "X-Binary-Size: \(size)\r", "X-Binary-Size: lots\r"))
        expectError(path, "no valid X-Binary-Size")
    }

    func testHeaderFaults() throws {
        let (_, bytes) = try small()
        let path = "\(dir)/bad.cbf"
        writeBytes(path, replacing(bytes, "signed 32-bit integer", "signed 24-bit integer"))
        expectError(path, "unknown X-Binary-Element-Type \"signed 24-bit integer\"")
        writeBytes(path, replacing(bytes, "X-Binary-Number-of-Elements: 2000", "X-Binary-Number-of-Elements: 2001"))
        expectError(path, "X-Binary-Number-of-Elements is 2001")
        writeBytes(path, replacing(bytes, "x-CBF_BYTE_OFFSET", "x-CBF_WAVELET"))
        var native = FrameReader.Options()
        native.decoder = .native
        expectError(path, "unknown compression x-cbf_wavelet")  // cbflib would decode it as uncompressed
        writeBytes(path, replacing(bytes, "x-CBF_BYTE_OFFSET", "x-CBF_PACKED"))
        expectError(path, "compression x-cbf_packed: the native reader cannot read it", options: native)
        expectError(path, "no readable binary image in _array_data.data (1 row; cbflib: ")  // auto: cbflib says why
        writeBytes(path, replacing(bytes, "Content-MD5: ", "Content-MD5: AAAA"))
        var md5 = FrameReader.Options()
        md5.checkMD5 = true
        expectError(path, "Content-MD5 mismatch", options: md5)
        XCTAssertNoThrow(try FrameReader.read(path))  // unchecked by default
    }

    func testCorruptDataWithValidHeaderNeverCrashes() throws {
        let (_, bytes) = try small()
        let start = bytes.firstIndex(of: 0xD5)! + 1
        var rng = RandomGenerator(seed: 5)
        for k in 0..<40 {
            var b = bytes
            for _ in 0..<20 { b[start + Int(rng.next(below: 2000))] = UInt8(truncatingIfNeeded: rng.next()) }
            let path = "\(dir)/corrupt_\(k).cbf"
            writeBytes(path, b)
            do { _ = try FrameReader.read(path) } catch let e as DetectorError { XCTAssertTrue(e.message.hasPrefix(path)) }
        }
    }

    func testNotAFrame() throws {
        let path = "\(dir)/notes.txt"
        writeBytes(path, Array("just some text\n".utf8))
        expectError(path, "not a CBF or TIFF file (it starts with \"just some text.\")")
        writeBytes(path, [])
        expectError(path, "empty file")
        expectError("\(dir)/missing.cbf", "cannot open: No such file or directory")
        expectError(dir, "is a directory")
    }

    func testRealCBFLibFiles() throws {
        let data = CBFTests.sharedData
        guard access("\(data)/fit2d_data.cbf", R_OK) == 0 else { throw XCTSkip("no \(data)") }
        // full imgCIF, uncompressed, dimensions only in _array_structure_list: cbflib's job
        var o = FrameReader.Options()
        o.checkMD5 = true
        let f = try FrameReader.read("\(data)/fit2d_data.cbf", options: o)
        XCTAssertEqual(f.header.decoder, "cbflib")
        XCTAssertEqual(f.array.shape, [236, 263])
        XCTAssertEqual(f.array.dtype, .int32)
        // the bytes after the binary marker are the little-endian pixels
        let bytes = readBytes("\(data)/fit2d_data.cbf")
        let start = bytes.firstIndex(of: 0xD5)! + 1
        XCTAssertEqual(memcmp(f.array.storage.bytes, Array(bytes[start..<(start + 248272)]), 248272), 0)
        // imgCIF with 64 arrays whose data were removed: no image, said so
        expectError("\(data)/fel_test1.cbf", "no readable binary image in _array_data.data (64 rows; cbflib: ")
    }
}

/// TIFF through libtiff: every pixel type, strips, tiles, pages, faults.
final class TIFFTests: XCTestCase {
    var dir = ""
    override func setUp() { dir = temporaryDirectory() }
    override func tearDown() { _ = system("rm -rf '\(dir)'") }

    func testEveryPixelTypeStripsAndTiles() throws {
        for dtype in [DType.int8, .uint8, .int16, .uint16, .int32, .uint32, .int64, .uint64, .float32, .float64] {
            let a = try NDArray(uninitialized: [37, 45], dtype: dtype)
            for i in 0..<(a.nbytes) { a.storage.bytes.storeBytes(of: UInt8(truncatingIfNeeded: i &* 2654435761 >> 7), toByteOffset: i, as: UInt8.self) }
            if dtype.isFloat {  // no NaN payload games: plain values
                for i in 0..<a.count {
                    if dtype == .float32 { a.base(Float.self)[i] = Float(i) * 0.25 - 3 } else { a.base(Double.self)[i] = Double(i) * 1e-3 - 1 }
                }
            }
            for layout in ["one strip", "strips of 7", "tiles"] {
                var o = TIFFWriter.Options()
                if layout == "strips of 7" { o.rowsPerStrip = 7 }
                if layout == "tiles" { o.tile = (16, 32) }
                let path = "\(dir)/t_\(dtype.rawValue).tif"
                try TIFFWriter.write(path, a, header: "# Exposure_time 2.5 s\n# Wavelength 1.0 A", options: o)
                let f = try FrameReader.read(path)
                XCTAssertEqual(f.array.shape, [37, 45])
                XCTAssertEqual(f.array.dtype, dtype, layout)
                XCTAssertEqual(memcmp(f.array.storage.bytes, a.storage.bytes, a.nbytes), 0, "\(dtype) \(layout)")
                XCTAssertEqual(f.header.format, "tiff")
                XCTAssertEqual(f.header.pilatus?["exposure_time"]?.value, .number(2.5))
            }
        }
    }

    func testPages() throws {
        let a = try NDArray(uninitialized: [3, 20, 30], dtype: .int32)
        for i in 0..<a.count { a.base(Int32.self)[i] = Int32(i) - 100 }
        let path = "\(dir)/pages.tif"
        try TIFFWriter.write(path, a)
        let p1 = try TIFFReader.read(path, page: 1)
        XCTAssertEqual(p1.header.pages, 3)
        XCTAssertEqual(p1.header.page, 1)
        XCTAssertEqual(int32s(p1.array), Array(int32s(a)[600..<1200]))
        let all = try TIFFReader.read(path, page: nil)
        XCTAssertEqual(all.array.shape, [3, 20, 30])
        XCTAssertEqual(int32s(all.array), int32s(a))
        XCTAssertThrowsError(try TIFFReader.read(path, page: 3)) { e in
            XCTAssertTrue("\(e)".contains("page 3 out of range: the file has 3 pages"), "\(e)")
        }
    }

    /// A TIFF made directly with libtiff (fields our writer never sets).
    func makeTIFF(_ path: String, bits: UInt16, format: UInt16, samples: UInt16) throws {
        var why = [CChar](repeating: 0, count: 256)
        let api = nxtiff_load(&why, why.count)!.pointee
        let tif = api.TIFFOpen(path, "w")!
        _ = nxtiff_set_uint32(tif, 256, 8); _ = nxtiff_set_uint32(tif, 257, 4)
        _ = nxtiff_set_uint16(tif, 258, bits); _ = nxtiff_set_uint16(tif, 339, format)
        _ = nxtiff_set_uint16(tif, 277, samples); _ = nxtiff_set_uint16(tif, 259, 1)
        _ = nxtiff_set_uint16(tif, 262, samples == 3 ? 2 : 1); _ = nxtiff_set_uint16(tif, 284, 1)
        _ = nxtiff_set_uint32(tif, 278, 4)
        var buf = [UInt8](repeating: 1, count: 8 * 4 * Int(bits) / 8 * Int(samples))
        _ = api.TIFFWriteEncodedStrip(tif, 0, &buf, tmsize_t(buf.count))
        api.TIFFClose(tif)
    }

    func testUnsupportedAndCorruptTIFFs() throws {
        let complex = "\(dir)/complex.tif"
        try makeTIFF(complex, bits: 32, format: 5, samples: 1)
        XCTAssertThrowsError(try FrameReader.read(complex)) { e in
            XCTAssertEqual("\(e)", "\(complex): unsupported pixel type on page 0: 32-bit complex integer (supported: 8/16/32/64-bit integers, 32/64-bit floats)")
        }
        let rgb = "\(dir)/rgb.tif"
        try makeTIFF(rgb, bits: 8, format: 1, samples: 3)
        XCTAssertThrowsError(try FrameReader.read(rgb)) { e in
            XCTAssertTrue("\(e)".contains("3 samples per pixel"), "\(e)")
        }
        let a = try NDArray(zeros: [100, 100], dtype: .int32)
        let path = "\(dir)/whole.tif"
        try TIFFWriter.write(path, a, options: { var o = TIFFWriter.Options(); o.rowsPerStrip = 10; return o }())
        let bytes = readBytes(path)
        for cut in [6, 100, 5000, 39000] {
            let p = "\(dir)/cut_\(cut).tif"
            writeBytes(p, Array(bytes.prefix(cut)))
            XCTAssertThrowsError(try FrameReader.read(p)) { e in
                XCTAssertTrue("\(e)".hasPrefix(p), "\(e)")
            }
        }
    }
}
