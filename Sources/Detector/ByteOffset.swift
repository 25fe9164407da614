import CCBFShims

/// CBF byte-offset compression (the Pilatus format): each element is stored as the
/// difference from the previous one (the first from 0), in one byte when it fits in
/// -127...127; the byte 0x80 escapes to a little-endian int16, whose value 0x8000
/// escapes to an int32, whose value 0x80000000 escapes to an int64.
public enum ByteOffset {
    /// Runs of one-byte deltas go to the AVX2 decoder (CCBFShims' nxbo_run) when the CPU
    /// has AVX2: 0.70 -> 0.31 ms per synthetic Pilatus 2M frame. Tests turn it off to check
    /// the scalar path too.
    nonisolated(unsafe) static var vectorRuns = nxbo_run_available() != 0

    /// Why a stream did not give the expected number of elements.
    public struct Shortfall: Error, Equatable {
        /// Elements decoded before the data ran out.
        public let decoded: Int
        /// Bytes used by those elements.
        public let consumed: Int
    }

    /// Decodes `count` int32 elements from `src` into `dst`; returns the bytes used.
    /// Never reads outside `src`: a stream that ends (or ends inside an escape) before
    /// `count` elements throws `Shortfall`. Values wrap modulo 2^32, as in cbflib.
    ///
    /// The hot loop of every Pilatus frame: runs of one-byte deltas in vector lanes (AVX2),
    /// or eight bytes at a time while none of them is the escape byte (one 64-bit test),
    /// else one element at a time.
    @inline(never)
    public static func decode(_ src: UnsafeRawBufferPointer, into dst: UnsafeMutablePointer<Int32>,
                              count: Int) throws(Shortfall) -> Int {
        var state = Position()
        try decode(src, into: dst, count: count, continuing: &state)
        return state.consumed
    }

    /// Where a stream decoded in pieces stands: bytes used so far and the last value.
    public struct Position: Sendable {
        public var consumed = 0
        public var value: Int32 = 0
        public init() {}
        init(consumed: Int, value: Int32) { self.consumed = consumed; self.value = value }
    }

    /// Decodes the next `count` int32 elements of a stream decoded in pieces (the stacker
    /// decodes a frame a block at a time, each block compressed while in the cache).
    /// `Shortfall.decoded` counts the elements of this piece.
    @inline(__always)
    public static func decode(_ src: UnsafeRawBufferPointer, into dst: UnsafeMutablePointer<Int32>,
                              count: Int, continuing state: inout Position) throws(Shortfall) {
        guard count > 0 else { return }
        guard let start = src.baseAddress, src.count > state.consumed else { throw Shortfall(decoded: 0, consumed: state.consumed) }
        var p = start + state.consumed
        let end = start + src.count
        var v = state.value
        var i = 0
        let ones: UInt64 = 0x0101_0101_0101_0101, highs: UInt64 = 0x8080_8080_8080_8080
        let vector = vectorRuns
        while i < count {
            if vector {
                // one-byte deltas up to the next escape (at least one: this byte is not one)
                if p < end && p.load(as: UInt8.self) != 0x80 {
                    let n = nxbo_run(p.assumingMemoryBound(to: UInt8.self), end - p, dst + i, count &- i, &v)
                    p += n
                    i &+= n
                    continue
                }
            } else if count &- i >= 8 && end - p >= 8 {
                // eight one-byte deltas: no byte equals 0x80 (x = w ^ 0x80.. has no zero byte)
                let w = p.loadUnaligned(as: UInt64.self)
                let x = w ^ highs
                if (x &- ones) & ~x & highs == 0 {
                    let d = dst + i
                    v &+= Int32(Int8(truncatingIfNeeded: w)); d[0] = v
                    v &+= Int32(Int8(truncatingIfNeeded: w &>> 8)); d[1] = v
                    v &+= Int32(Int8(truncatingIfNeeded: w &>> 16)); d[2] = v
                    v &+= Int32(Int8(truncatingIfNeeded: w &>> 24)); d[3] = v
                    v &+= Int32(Int8(truncatingIfNeeded: w &>> 32)); d[4] = v
                    v &+= Int32(Int8(truncatingIfNeeded: w &>> 40)); d[5] = v
                    v &+= Int32(Int8(truncatingIfNeeded: w &>> 48)); d[6] = v
                    v &+= Int32(Int8(truncatingIfNeeded: w &>> 56)); d[7] = v
                    p += 8
                    i &+= 8
                    continue
                }
            }
            // one element
            guard p < end else { break }
            let b = p.load(as: UInt8.self)
            if b != 0x80 {
                v &+= Int32(Int8(bitPattern: b))
                p += 1
            } else {
                guard end - p >= 3 else { break }
                let s = Int16(littleEndian: (p + 1).loadUnaligned(as: Int16.self))
                if s != Int16.min {
                    v &+= Int32(s)
                    p += 3
                } else {
                    guard end - p >= 7 else { break }
                    let l = Int32(littleEndian: (p + 3).loadUnaligned(as: Int32.self))
                    if l != Int32.min {
                        v &+= l
                        p += 7
                    } else {
                        guard end - p >= 15 else { break }
                        v &+= Int32(truncatingIfNeeded: Int64(littleEndian: (p + 7).loadUnaligned(as: Int64.self)))
                        p += 15
                    }
                }
            }
            dst[i] = v
            i &+= 1
        }
        state = Position(consumed: p - start, value: v)
        if i < count { throw Shortfall(decoded: i, consumed: p - start) }
    }

    /// The same for any integer element type: values accumulate in 64 bits and are stored
    /// truncated to `T` (wrapping as cbflib does for its element size).
    public static func decode<T: FixedWidthInteger>(_ src: UnsafeRawBufferPointer, into dst: UnsafeMutablePointer<T>,
                                                    count: Int) throws(Shortfall) -> Int {
        guard count > 0 else { return 0 }
        guard let start = src.baseAddress, src.count > 0 else { throw Shortfall(decoded: 0, consumed: 0) }
        var p = start
        let end = start + src.count
        var v: Int64 = 0
        var i = 0
        while i < count && p < end {
            let b = p.load(as: UInt8.self)
            if b != 0x80 {
                v &+= Int64(Int8(bitPattern: b)); p += 1
            } else {
                guard end - p >= 3 else { break }
                let s = Int16(littleEndian: (p + 1).loadUnaligned(as: Int16.self))
                if s != Int16.min {
                    v &+= Int64(s); p += 3
                } else {
                    guard end - p >= 7 else { break }
                    let l = Int32(littleEndian: (p + 3).loadUnaligned(as: Int32.self))
                    if l != Int32.min {
                        v &+= Int64(l); p += 7
                    } else {
                        guard end - p >= 15 else { break }
                        v &+= Int64(littleEndian: (p + 7).loadUnaligned(as: Int64.self)); p += 15
                    }
                }
            }
            dst[i] = T(truncatingIfNeeded: v)
            i += 1
        }
        if i < count { throw Shortfall(decoded: i, consumed: p - start) }
        return p - start
    }

    /// Encodes `count` elements (as Int64 values) with the shortest escape for each delta.
    public static func encode<T: BinaryInteger>(_ values: UnsafeBufferPointer<T>) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(values.count + values.count / 8 + 16)
        var previous: Int64 = 0
        for x in values {
            let value = Int64(truncatingIfNeeded: x)
            let d = value &- previous
            previous = value
            if d >= -127 && d <= 127 {
                out.append(UInt8(bitPattern: Int8(d)))
            } else if d >= -32767 && d <= 32767 {
                out.append(0x80)
                withUnsafeBytes(of: Int16(d).littleEndian) { out.append(contentsOf: $0) }
            } else if d >= -2147483647 && d <= 2147483647 {
                out.append(0x80); out.append(0x00); out.append(0x80)
                withUnsafeBytes(of: Int32(d).littleEndian) { out.append(contentsOf: $0) }
            } else {
                out.append(contentsOf: [0x80, 0x00, 0x80, 0x00, 0x00, 0x00, 0x80])
                withUnsafeBytes(of: d.littleEndian) { out.append(contentsOf: $0) }
            }
        }
        return out
    }
}
