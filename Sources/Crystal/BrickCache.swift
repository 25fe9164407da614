#if canImport(Glibc)
import Glibc
#endif

/// The grid cut into bricks of 32 x 32 x 32 voxels (the output's HDF5 chunks), bricks
/// numbered l-major like the voxels; the bricks at the far edges are cut short.
public struct BrickLayout: Sendable, Equatable {
    public static let edge = 32
    /// Voxels of a brick's slot (edge bricks use part of it): a voxel's place in its brick is
    /// (l % 32) << 10 | (k % 32) << 5 | h % 32, so a pixel maps with shifts and masks.
    public static let slotVoxels = edge * edge * edge
    public let size: [Int]  // h, k, l
    public let bricks: [Int]  // per axis h, k, l
    public var count: Int { bricks[0] * bricks[1] * bricks[2] }

    public init(grid: ReciprocalGrid) throws {
        size = grid.size
        bricks = grid.size.map { ($0 + BrickLayout.edge - 1) / BrickLayout.edge }
        // a voxel is packed as brick << 15 | place into 32 bits (-1 marks none)
        guard bricks[0] * bricks[1] * bricks[2] < (1 << 17) - 1 else {
            throw CrystalError("grid \(size[0]) x \(size[1]) x \(size[2]) has \(bricks[0] * bricks[1] * bricks[2]) bricks of 32^3 voxels, at most 131070 can be held out of core")
        }
    }

    /// First voxel (h, k, l) of brick b and its extent per axis (h, k, l).
    public func box(_ b: Int) -> (start: [Int], extent: [Int]) {
        let h = b % bricks[0], k = (b / bricks[0]) % bricks[1], l = b / (bricks[0] * bricks[1])
        let start = [h * BrickLayout.edge, k * BrickLayout.edge, l * BrickLayout.edge]
        return (start, (0..<3).map { min(BrickLayout.edge, size[$0] - start[$0]) })
    }
}

/// The bricks of the grid being accumulated, held in a bounded number of slots: each slot
/// holds the sums (v then n, 32^3 doubles each) added since the brick was last spilled, so
/// a brick is never read before it is added to. When a frame needs more slots than are
/// free, the least recently used bricks that frame does not touch are spilled (their sums
/// handed to `spill`, which adds them to the brick's total on disk) and their slots reused.
public final class BrickCache: @unchecked Sendable {
    public let layout: BrickLayout
    public let capacity: Int
    /// Adds a brick's sums (v then n, slot layout) to its total wherever that lives.
    public var spill: (Int, UnsafeMutablePointer<Double>) throws -> Void = { _, _ in }
    /// Bricks spilled to make room (not counting checkpoints), and the most slots used.
    public private(set) var evictions = 0
    public private(set) var peakSlots = 0

    static let slotDoubles = 2 * BrickLayout.slotVoxels
    private let memory: UnsafeMutablePointer<Double>
    /// Per brick: the sums' slot, or nil when not held (read by the accumulating threads).
    let table: UnsafeMutablePointer<UnsafeMutablePointer<Double>?>
    private var slotBrick: [Int32]
    private var lastUsed: [Int]
    private var dirty: [Bool]
    private var used = 0
    private var tick = 0

    /// `capacity` slots of 512 KB; the memory is reserved at once but only slots in use
    /// are touched (calloc maps fresh zero pages).
    public init(layout: BrickLayout, capacity: Int) throws {
        guard capacity >= 1 else { throw CrystalError("a brick cache needs at least one slot") }
        self.layout = layout
        self.capacity = min(capacity, layout.count)
        guard let m = calloc(self.capacity * BrickCache.slotDoubles, 8) else {
            throw CrystalError("cannot reserve \(self.capacity) bricks of the grid (\(self.capacity / 2) MB)")
        }
        memory = m.assumingMemoryBound(to: Double.self)
        table = .allocate(capacity: layout.count)
        table.initialize(repeating: nil, count: layout.count)
        slotBrick = [Int32](repeating: -1, count: self.capacity)
        lastUsed = [Int](repeating: 0, count: self.capacity)
        dirty = [Bool](repeating: false, count: self.capacity)
    }

    deinit {
        free(memory)
        table.deallocate()
    }

    private func slot(_ s: Int) -> UnsafeMutablePointer<Double> { memory + s * BrickCache.slotDoubles }

    /// Holds every brick of `bricks` (ascending, at most `capacity`), spilling others as needed;
    /// they count as added to (dirty) from then on.
    func hold(_ bricks: ArraySlice<Int32>) throws {
        precondition(bricks.count <= capacity)
        tick += 1
        var missing: [Int32] = []
        for b in bricks {
            if let p = table[Int(b)] {
                let s = (p - memory) / BrickCache.slotDoubles
                lastUsed[s] = tick; dirty[s] = true
            } else {
                missing.append(b)
            }
        }
        guard !missing.isEmpty else { return }
        var free: [Int] = []
        let fresh = min(missing.count, capacity - used)
        free.append(contentsOf: used..<(used + fresh))
        let before = used
        used += fresh
        peakSlots = max(peakSlots, used)
        if free.count < missing.count {
            // the least recently used slots this frame does not need (not the fresh ones just taken)
            let candidates = (0..<before).filter { lastUsed[$0] < tick }.sorted { lastUsed[$0] < lastUsed[$1] }
            for s in candidates.prefix(missing.count - free.count) {
                try release(s)
                evictions += 1
                free.append(s)
            }
        }
        for (b, s) in zip(missing, free) {
            slotBrick[s] = b; lastUsed[s] = tick; dirty[s] = true
            table[Int(b)] = slot(s)
        }
    }

    /// Spills slot s if it holds sums, then empties it.
    private func release(_ s: Int) throws {
        let b = Int(slotBrick[s])
        if b >= 0 {
            if dirty[s] { try spill(b, slot(s)); memset(slot(s), 0, BrickCache.slotDoubles * 8) }
            table[b] = nil
        }
        slotBrick[s] = -1; dirty[s] = false
    }

    /// Spills every brick with sums (a checkpoint); they stay held, with zero sums.
    public func spillAll() throws {
        for s in 0..<used where dirty[s] && slotBrick[s] >= 0 {
            try spill(Int(slotBrick[s]), slot(s))
            memset(slot(s), 0, BrickCache.slotDoubles * 8)
            dirty[s] = false
        }
    }

    /// Copies the voxels of brick b from a slot into a compact (l, k, h) array of its extent, or back (add).
    public static func compact(_ slot: UnsafePointer<Double>, into out: UnsafeMutablePointer<Double>, extent: [Int]) {
        var o = 0
        for l in 0..<extent[2] {
            for k in 0..<extent[1] {
                let row = slot + (l << 10 | k << 5)
                for h in 0..<extent[0] { out[o] = row[h]; o += 1 }
            }
        }
    }

    public static func add(compact values: UnsafePointer<Double>, to slot: UnsafeMutablePointer<Double>, extent: [Int]) {
        var o = 0
        for l in 0..<extent[2] {
            for k in 0..<extent[1] {
                let row = slot + (l << 10 | k << 5)
                for h in 0..<extent[0] { row[h] += values[o]; o += 1 }
            }
        }
    }
}
