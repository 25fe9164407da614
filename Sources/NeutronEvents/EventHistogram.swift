#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import NDArray
import NeXus
import CEventKernels

/// What to histogram: time of flight bins (nil: no time axis, events counted whatever
/// their time), pixels (nil: summed over pixels), a pulse time range in seconds.
public struct EventRequest: Sendable {
    public var tof: EventBins?
    public var pixels: PixelMap?
    public var pulses: (Double, Double)?
    /// Worker threads (0: the cores).
    public var threads: Int = 0
    /// Events per block read (two blocks are in memory at once). 2^20: the blocks and the
    /// workers' lists are 24 MB of fresh pages (2^22: 96 MB, a quarter of a 1e8-event
    /// histogram's CPU time went to the kernel zeroing them), while a block still brings
    /// each cache slice of the histogram enough events to count.
    public var blockEvents: Int = 1 << 20
    /// Bytes the workers' private histograms may take together; a larger histogram is
    /// split among the workers by rows instead (each bins only its own rows).
    public var privateBytes: Int = 256 << 20
    public init() {}
}

/// A histogram of events: counts of shape pixels (or image rows, columns) by tof bins.
public struct EventHistogram: @unchecked Sendable {
    public let counts: NDArray
    /// Events read (in the pulses selected) and events that fell into a bin.
    public let eventsRead: Int
    public let eventsBinned: Int
}

/// A block of events read: the ids and times as the buffers' dtypes hold them.
private final class Block: @unchecked Sendable {
    let ids: NDArray?, tofs: NDArray?
    var count = 0
    init(_ n: Int, idType: DType?, tofType: DType?) throws {
        ids = try idType.map { try NDArray(uninitialized: [n], dtype: $0) }
        tofs = try tofType.map { try NDArray(uninitialized: [n], dtype: $0) }
    }
}

/// A worker's listed cells, by cache slice of the histogram (`nxl_ev_buckets`): chunks of
/// cells that the slices take from a pool as they fill them, so the counting pass finds each
/// slice's cells together without a sort. The pool comes from array storage, so the next
/// bank's histogram (or the next call) gets the same pages back from the block cache instead
/// of fresh ones: on this kind of machine a fresh page costs more than the events binned into
/// it. The pool holds ceil(capacity / chunk) + slices chunks: enough for any distribution.
private final class Buckets: @unchecked Sendable {
    let storage: Storage
    let b: UnsafeMutablePointer<nxl_ev_buckets>
    init(capacity: Int, cells total: Int, shift: Int) throws {
        precondition(shift <= 16, "cells are listed as 16-bit offsets in their slice")
        let n = max(capacity, 1)
        let slices = (total >> shift) + 1
        // chunks of 4096 cells, smaller when there are many slices (the partly filled
        // last chunk of every slice must not outweigh the events)
        var chunkShift = 12
        while chunkShift > 6 && slices << chunkShift > n { chunkShift -= 1 }
        let chunks = (n + (1 << chunkShift) - 1) >> chunkShift + slices
        // chunks 64 bytes more than their cells apart: the slices' write positions, at
        // similar offsets in their chunks, then do not all fall into the same L1 sets
        let stride = (1 << chunkShift) + 32
        // at least 4 MB: smaller blocks are not kept by the block cache (fresh pages for
        // every bank took 19% of a 1e8-event histogram's CPU time with a 2.5 MB pool)
        storage = try Storage(byteCount: max(4 << 20, 2 * chunks * stride), zeroed: false)
        b = .allocate(capacity: 1)
        let slots = UnsafeMutablePointer<nxl_ev_slot>.allocate(capacity: slices)
        slots.initialize(repeating: nxl_ev_slot(pos: nil, end: nil), count: slices)
        let chunkSlice = UnsafeMutablePointer<Int32>.allocate(capacity: chunks)
        let chunkFill = UnsafeMutablePointer<Int32>.allocate(capacity: chunks)
        let order = UnsafeMutablePointer<Int64>.allocate(capacity: chunks)
        let sliceStart = UnsafeMutablePointer<Int64>.allocate(capacity: slices + 1)
        sliceStart.initialize(repeating: 0, count: slices + 1)
        b.initialize(to: nxl_ev_buckets(slots: slots, slices: Int64(slices), shift: Int32(shift),
                                        pool: storage.bytes.assumingMemoryBound(to: UInt16.self),
                                        chunk: Int64(1 << chunkShift), stride: Int64(stride),
                                        used: 0, capacity: Int64(chunks), chunk_slice: chunkSlice, chunk_fill: chunkFill,
                                        order: order, slice_start: sliceStart))
    }
    deinit {
        b.pointee.slots.deallocate()
        b.pointee.chunk_slice.deallocate()
        b.pointee.chunk_fill.deallocate()
        b.pointee.order.deallocate()
        b.pointee.slice_start.deallocate()
        b.deallocate()
    }
}

/// The binning of one slice of a block into one histogram (a worker's share).
private struct Kernel: @unchecked Sendable {
    let bins: EventBins?
    /// Equal-width bins found here by arithmetic, checked against the edges (as
    /// EventBins.index, without its per-call array access): the hot path of a histogram.
    let edges: UnsafeBufferPointer<Double>
    let linear: Bool
    let nb: Int
    let lookup: UnsafeBufferPointer<Int32>?
    let first: Int
    let rows: Range<Int>   // output rows this worker may write (all, unless split by rows)
    /// For a histogram far larger than a core's cache (pixels x tof: 16384 x 200 counts
    /// are 26 MB), incrementing it event by event waits on memory at every event (7.8 ns
    /// an event here, against 3.9 ns for the two steps below). With buckets, the events'
    /// cells are listed first, each into the bucket of its slice of the histogram (slices
    /// that fit the cache: the cell's high bits), and counted slice by slice.
    let buckets: Buckets?

    /// After listing: the buckets' chunks in order of slice.
    func finishListing() {
        if let bk = buckets { nxl_ev_finish(bk.b) }
    }

    /// Counts this worker's listed cells of slice s (another worker may count another slice
    /// of the same histogram at the same time: the slices do not overlap).
    func countSlice(_ s: Int, _ hist: UnsafeMutablePointer<Int64>) {
        if let bk = buckets { nxl_ev_count(bk.b, Int64(s), hist) }
    }

    func resetSlices() {
        if let bk = buckets { nxl_ev_reset(bk.b) }
    }

    /// Bins events `range`: into `hist` directly, or (with buckets) listing their cells by slice.
    /// Returns the events that fell into a bin. Every value the loop reads is copied to a
    /// local first: the stores through `hist` or the list could alias anything reachable
    /// from `self`, and the compiler would otherwise load them again at every event (the
    /// loop took 8 ns an event that way, about 4 ns now on this machine).
    @inline(__always)
    func run<I: FixedWidthInteger, F: BinaryFloatingPoint>(_ ids: UnsafePointer<I>?, _ tofs: UnsafePointer<F>?,
                                                           _ range: Range<Int>, _ hist: UnsafeMutablePointer<Int64>) -> Int {
        if let buckets, linear, F.self == Float.self, I.self == Int32.self || I.self == UInt32.self,
           let ids, let tofs, let lookup {
            // AVX2: 8 events at a time (the same cells as `loop`, in the same order)
            var p = nxl_ev_params(edges: edges.baseAddress, last: Int64(edges.count - 2), lo: bins!.lo, hi: bins!.hi,
                                  scale: bins!.scale, lookup: lookup.baseAddress, lookup_count: Int64(lookup.count),
                                  first: Int64(first), row_lo: Int64(rows.lowerBound), row_hi: Int64(rows.upperBound), nb: Int64(nb))
            let unsignedIDs: Int32 = I.self == UInt32.self ? 1 : 0
            if nxl_ev_avx2_usable(&p, unsignedIDs) != 0 {
                let i32 = UnsafeRawPointer(ids).assumingMemoryBound(to: Int32.self)
                let f32 = UnsafeRawPointer(tofs).assumingMemoryBound(to: Float.self)
                return Int(nxl_ev_list_avx2(buckets.b, &p, i32, unsignedIDs, f32, Int64(range.lowerBound), Int64(range.upperBound)))
            }
        }
        switch (ids, tofs) {
        case let (ids?, tofs?): return loop(range, hist, time: { tofs[$0] }, id: { ids[$0] })
        case let (nil, tofs?): return loop(range, hist, time: { tofs[$0] }, id: nil as ((Int) -> I)?)
        case let (ids?, nil): return loop(range, hist, time: nil as ((Int) -> F)?, id: { ids[$0] })
        case (nil, nil): return loop(range, hist, time: nil as ((Int) -> F)?, id: nil as ((Int) -> I)?)
        }
    }

    @inline(__always)
    private func loop<I: FixedWidthInteger, F: BinaryFloatingPoint>(_ range: Range<Int>, _ hist: UnsafeMutablePointer<Int64>,
                                                                    time: ((Int) -> F)?, id: ((Int) -> I)?) -> Int {
        var binned = 0
        let rowLo = rows.lowerBound, rowHi = rows.upperBound
        let nb = self.nb, first = self.first
        let lookupBase = lookup?.baseAddress, lookupCount = UInt(lookup?.count ?? 0)
        let e = edges.baseAddress, last = edges.count - 2
        let lo = bins?.lo ?? 0, hi = bins?.hi ?? 0, scale = bins?.scale ?? 0
        let linear = self.linear, bins = self.bins
        let listed = buckets?.b
        for k in range {
            var b = 0
            if let time {
                let x = Double(time(k))
                if linear {
                    guard x >= lo && x < hi else { continue }
                    // x - lo >= 0 here, so the guess is >= 0; the edges correct it
                    var i = Int((x - lo) * scale)
                    if i > last { i = last }
                    while i > 0 && x < e.unsafelyUnwrapped[i] { i &-= 1 }
                    while i < last && x >= e.unsafelyUnwrapped[i &+ 1] { i &+= 1 }
                    b = i
                } else {
                    b = bins.unsafelyUnwrapped.index(x)
                    if b < 0 { continue }
                }
            }
            var r = 0
            if let id {
                let j = Int(id(k)) &- first
                if UInt(bitPattern: j) >= lookupCount { continue }
                r = Int(lookupBase.unsafelyUnwrapped[j])
                if r < rowLo || r >= rowHi { continue }
            }
            if let listed {
                nxl_ev_push(listed, UInt32(truncatingIfNeeded: r &* nb &+ b))
            } else {
                hist[r &* nb &+ b] &+= 1
            }
            binned &+= 1
        }
        return binned
    }
}

extension EventBank {
    /// Histograms the bank's events as `request` says, streaming blocks of events: the
    /// next block is read by another thread while the workers bin the current one into
    /// private histograms (merged at the end), or, for a histogram too large to copy per
    /// worker, each worker bins its share of the rows. Only the fields needed are read
    /// (no event_id for a summed spectrum, no event_time_offset without tof bins).
    /// `progress(events done, events)` runs between blocks and may throw to stop.
    /// `into`: a contiguous int64 array of the histogram's shape (zeros, or counts to add
    /// to: rows of several banks' histogram) used as the result, so nothing is copied.
    public func histogram(_ request: EventRequest, into: NDArray? = nil,
                          progress: ((Int, Int) throws -> Void)? = nil) throws -> EventHistogram {
        let nb = request.tof?.count ?? 1
        let rows = request.pixels?.rows ?? 1
        let (cells, overflow) = rows.multipliedReportingOverflow(by: nb)
        guard !overflow, cells < 1 << 34 else { throw EventError("\(place): a histogram of \(rows) x \(nb) bins is too large") }
        let outShape = (request.pixels?.shape ?? []) + (request.tof == nil ? [] : [nb])
        let ranges = eventRanges(pulses: request.pulses)
        let total = ranges.reduce(0) { $0 + $1.count }
        let threads = max(1, request.threads > 0 ? request.threads : Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
        // a histogram larger than 2^17 counts is binned by cache slices (`Kernel.buckets`),
        // every worker counting its own slices of the one result; a smaller one in private
        // copies merged at the end
        let sliceShift = 16  // 2^16 counts: 512 KB, within a core's L2; cells listed as 16-bit offsets
        let sorted = cells > 1 << 17 && cells < Int(UInt32.max)
        let privateCopies = !sorted && threads > 1 && cells * 8 * threads <= request.privateBytes
        let workers = total < 1 << 16 ? 1 : threads
        let result: NDArray
        if let into {
            guard into.dtype == .int64, into.isContiguous, into.count == max(cells, 1) else {
                throw EventError("\(place): the output must be contiguous int64 of \(max(cells, 1)) counts, got \(into.dtype.rawValue) of \(into.count)")
            }
            result = into
        } else {
            result = try NDArray(zeros: outShape.isEmpty ? [1] : outShape, dtype: .int64)  // zeroed by every core
        }
        let resultPointer = (result.storage.bytes + result.offset * 8).assumingMemoryBound(to: Int64.self)

        // the blocks: runs of events cut to blockEvents
        let blockSize = max(1, min(request.blockEvents, max(total, 1)))
        var pieces: [Range<Int>] = []
        for r in ranges {
            var a = r.lowerBound
            while a < r.upperBound { let b = min(r.upperBound, a + blockSize); pieces.append(a..<b); a = b }
        }
        let readIDs: DType? = request.pixels == nil ? nil : self.idType
        let readTOFs: DType? = request.tof == nil ? nil : self.tofType
        let buffers = [try Block(blockSize, idType: readIDs, tofType: readTOFs), try Block(blockSize, idType: readIDs, tofType: readTOFs)]
        let idReader = readIDs == nil ? nil : try idField.rowReader()
        let tofReader = readTOFs == nil ? nil : try tofField.rowReader()
        let here = place
        let read: @Sendable (Range<Int>, Block) throws -> Void = { r, block in
            do {
                if let idReader, let ids = block.ids { try idReader(r, ids) }
                if let tofReader, let tofs = block.tofs { try tofReader(r, tofs) }
            } catch let e as NeXusError {
                throw EventError("\(e.message) (events \(r.lowerBound):\(r.upperBound) of \(here))")
            }
            block.count = r.count
        }

        // private histograms (worker 0 writes straight into the result)
        var privates: [NDArray] = []
        if privateCopies && workers > 1 {
            for _ in 1..<workers { privates.append(try NDArray(zeros: [cells], dtype: .int64)) }
        }
        nonisolated(unsafe) let histPointers: [UnsafeMutablePointer<Int64>] =
            [resultPointer] + privates.map { $0.storage.bytes.assumingMemoryBound(to: Int64.self) }
        let lookupArray = request.pixels?.lookup ?? []
        var binned = 0
        let edgeArray = request.tof?.edges ?? []
        try edgeArray.withUnsafeBufferPointer { edgeBuffer in
        try lookupArray.withUnsafeBufferPointer { lookupBuffer in
            let lookup: UnsafeBufferPointer<Int32>? = request.pixels == nil ? nil : lookupBuffer
            let first = request.pixels?.first ?? 0
            let bins = request.tof
            let split = !sorted && !(privateCopies || workers == 1)
            let perWorker = (blockSize + workers - 1) / workers
            let kernels = try (0..<workers).map { w in
                Kernel(bins: bins, edges: edgeBuffer, linear: bins?.spacing == .linear, nb: nb, lookup: lookup, first: first,
                       rows: split ? slice(0..<rows, workers, w) : 0..<rows,
                       buckets: sorted ? try Buckets(capacity: perWorker, cells: cells, shift: sliceShift) : nil)
            }
            // private copies: each worker bins its share of the events into its own
            // histogram; split by rows: each worker sees every event, writes only its rows
            func bin(_ block: Block) -> Int {
                let n = block.count
                let counts = UnsafeMutablePointer<Int>.allocate(capacity: workers)
                defer { counts.deallocate() }
                nonisolated(unsafe) let c = counts
                DispatchQueue.concurrentPerform(iterations: workers) { w in
                    let events = split ? 0..<n : slice(0..<n, workers, w)
                    c[w] = EventBank.dispatch(kernels[w], block, events, split || sorted ? histPointers[0] : histPointers[w])
                    if sorted { kernels[w].finishListing() }
                }
                if sorted {
                    // each worker counts its share of the slices, from every worker's list
                    let slices = (cells >> sliceShift) + 1
                    DispatchQueue.concurrentPerform(iterations: workers) { w in
                        for sl in slice(0..<slices, workers, w) { for k in kernels { k.countSlice(sl, histPointers[0]) } }
                    }
                    for k in kernels { k.resetSlices() }
                }
                return (0..<workers).reduce(0) { $0 + counts[$1] }
            }
            guard !pieces.isEmpty else { return }
            try read(pieces[0], buffers[0])
            var done = 0
            for (i, piece) in pieces.enumerated() {
                let current = buffers[i & 1], next = buffers[(i + 1) & 1]
                nonisolated(unsafe) var readError: Error? = nil
                let group = DispatchGroup()
                if i + 1 < pieces.count {
                    let r = pieces[i + 1]
                    DispatchQueue.global().async(group: group) {
                        do { try read(r, next) } catch { readError = error }
                    }
                }
                binned += bin(current)
                group.wait()
                if let readError { throw readError }
                done += piece.count
                try progress?(done, total)
            }
        }
        }
        // merge the private histograms
        if !privates.isEmpty {
            let parts = min(threads, max(1, cells >> 16))
            DispatchQueue.concurrentPerform(iterations: parts) { w in
                let r = slice(0..<cells, parts, w)
                for p in histPointers.dropFirst() { for c in r { histPointers[0][c] &+= p[c] } }
            }
        }
        let counts = outShape.isEmpty ? try result.reshapedView([]) : result
        return EventHistogram(counts: counts, eventsRead: total, eventsBinned: binned)
    }

    /// The kernel for the block's dtypes.
    fileprivate static func dispatch(_ k: Kernel, _ block: Block, _ events: Range<Int>, _ hist: UnsafeMutablePointer<Int64>) -> Int {
        let ids = block.ids?.storage.bytes, tofs = block.tofs?.storage.bytes
        switch (block.ids?.dtype, block.tofs?.dtype) {
        case (.int32?, .float32?): return k.run(ids!.assumingMemoryBound(to: Int32.self), tofs!.assumingMemoryBound(to: Float.self), events, hist)
        case (.int32?, .float64?): return k.run(ids!.assumingMemoryBound(to: Int32.self), tofs!.assumingMemoryBound(to: Double.self), events, hist)
        case (.int64?, .float32?): return k.run(ids!.assumingMemoryBound(to: Int64.self), tofs!.assumingMemoryBound(to: Float.self), events, hist)
        case (.int64?, .float64?): return k.run(ids!.assumingMemoryBound(to: Int64.self), tofs!.assumingMemoryBound(to: Double.self), events, hist)
        case (.uint32?, .float32?): return k.run(ids!.assumingMemoryBound(to: UInt32.self), tofs!.assumingMemoryBound(to: Float.self), events, hist)
        case (.uint32?, .float64?): return k.run(ids!.assumingMemoryBound(to: UInt32.self), tofs!.assumingMemoryBound(to: Double.self), events, hist)
        case (.uint32?, nil): return k.run(ids!.assumingMemoryBound(to: UInt32.self), nil as UnsafePointer<Float>?, events, hist)
        case (.int32?, nil): return k.run(ids!.assumingMemoryBound(to: Int32.self), nil as UnsafePointer<Float>?, events, hist)
        case (.int64?, nil): return k.run(ids!.assumingMemoryBound(to: Int64.self), nil as UnsafePointer<Float>?, events, hist)
        case (nil, .float32?): return k.run(nil as UnsafePointer<Int32>?, tofs!.assumingMemoryBound(to: Float.self), events, hist)
        case (nil, .float64?): return k.run(nil as UnsafePointer<Int32>?, tofs!.assumingMemoryBound(to: Double.self), events, hist)
        default: return k.run(nil as UnsafePointer<Int32>?, nil as UnsafePointer<Float>?, events, hist)
        }
    }

    /// The smallest and largest event_id (a pass over event_id alone), nil without events.
    public func idRange(progress: ((Int, Int) throws -> Void)? = nil) throws -> (Int, Int)? {
        guard eventCount > 0 else { return nil }
        var lo = Int.max, hi = Int.min
        let block = 1 << 22
        let buffer = try NDArray(uninitialized: [min(block, eventCount)], dtype: .int64)
        let reader = try idField.rowReader()
        let p = buffer.storage.bytes.assumingMemoryBound(to: Int64.self)
        var a = 0
        while a < eventCount {
            let b = min(eventCount, a + block)
            try reader(a..<b, buffer)
            for k in 0..<(b - a) { let v = Int(p[k]); if v < lo { lo = v }; if v > hi { hi = v } }
            a = b
            try progress?(a, eventCount)
        }
        return (lo, hi)
    }
}

/// Part k of `parts` near-equal parts of a range.
func slice(_ r: Range<Int>, _ parts: Int, _ k: Int) -> Range<Int> {
    let total = r.count, base = total / parts, extra = total % parts
    let lo = r.lowerBound + k * base + min(k, extra)
    return lo..<(lo + base + (k < extra ? 1 : 0))
}
