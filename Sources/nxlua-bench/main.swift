import NeXus
// nxlua-bench: Swift-side micro-benchmarks that scripts/bench runs next to their anchors.
// Prints one JSON object per benchmark on stdout.
//
//   nxlua-bench bridge [calls]   Lua->C vs Lua->Swift call cost (ns per call)
import CBenchmarkShims
import CLua
import Catalog
import Events
import LuaBridge
import NDArray
#if canImport(Glibc)
import Glibc
#endif

func now() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
}

func median(_ xs: [Double]) -> Double { xs.sorted()[xs.count / 2] }

/// Times `for i = 1, n do f(i, 1.5) end` for the global function `name`, minus the same
/// loop calling nothing; returns nanoseconds per call (median of 7 runs).
func nsPerCall(_ state: LuaState, _ name: String, _ n: Int) throws -> Double {
    let loop = "local f, n = \(name), \(n); return function() for i = 1, n do f(i, 1.5) end end"
    let empty = "local n = \(n); return function() for i = 1, n do local _ = i + 1.5 end end"
    func time(_ code: String) throws -> Double {
        let lua = state.lua
        try lua.load(code, name: "=bench")
        try lua.pcall(nargs: 0, nresults: 1)
        var samples: [Double] = []
        for _ in 0..<7 {
            lua.pushValue(at: -1)
            let t0 = now()
            try lua.pcall(nargs: 0, nresults: 0)
            samples.append(now() - t0)
        }
        lua.pop()
        return median(samples)
    }
    return (try time(loop) - time(empty)) / Double(n) * 1e9
}

func bridge(calls: Int) throws {
    let state = try LuaState()
    let lua = state.lua
    lua.pushCFunction(nxbench_add)
    try lua.setGlobal("c_add")
    lua.push(function: "swift_add") { call in
        call.returns(try call.number(1) + call.number(2))
    }
    try lua.setGlobal("swift_add")
    try state.run("lua_add = function(a, b) return a + b end")
    let c = try nsPerCall(state, "c_add", calls)
    let s = try nsPerCall(state, "swift_add", calls)
    let l = try nsPerCall(state, "lua_add", calls)
    print("{\"bench\": \"bridge\", \"calls\": \(calls), \"c_ns\": \(c), \"swift_ns\": \(s), \"lua_ns\": \(l)}")
}

/// Sums of a (frames, 1679, 1475) int32 stack (a Pilatus 2M scan held in memory).
func sums(frames: Int) throws {
    let a = try NDArray(zeros: [frames, 1679, 1475], dtype: .int32)
    let p = a.base(Int32.self)
    for i in 0..<a.count { p[i] = Int32(truncatingIfNeeded: (i &* 2654435761) >> 20) & 0xFFFF }
    func time(_ axes: [Int]) throws -> Double {
        var samples: [Double] = []
        for _ in 0..<5 {
            let t0 = now()
            _ = try a.sum(axes: axes)
            samples.append(now() - t0)
        }
        return median(samples) * 1e3
    }
    let s0 = try time([0]), s12 = try time([1, 2])
    print("{\"bench\": \"sums\", \"frames\": \(frames), \"sum0_ms\": \(s0), \"sum12_ms\": \(s12)}")
}

/// Appends `events` point events to a fresh journal at `path` (a SQLite file, or a
/// postgres:// URL of an empty database) in durable batches of `batch` (one commit
/// each), as the sources do; events/s over the whole append.
func journal(path: String, events: Int, batch: Int) throws {
    unlink(path); unlink(path + "-wal"); unlink(path + "-shm")
    let j = try Journals.open(path)
    let first = try j.lastSeq()
    let run = makeRunUID()
    let t0 = now()
    var i = 0
    while i < events {
        let n = min(batch, events - i)
        try j.append((i..<(i + n)).map { k in
            NewEvent(kind: .point, run: run, payload: ["motor": .double(Double(k) * 0.01), "counts": .int(k % 5000)],
                     key: "\(run)/p\(k)", source: "bench")
        })
        i += n
    }
    let seconds = now() - t0
    guard try j.lastSeq() == first + Int64(events) else { fatalError("journal bench: events missing") }
    print("{\"bench\": \"journal\", \"events\": \(events), \"batch\": \(batch), \"seconds\": \(seconds)}")
}

/// The catalog at scale: `entries` generated entries (samples, temperatures in K or degC,
/// times, instruments, titles) inserted in batches into a new SQLite catalog, then the
/// median latency of each kind of query (the targets: declared fields and ranges
/// 5 ms, text 20 ms, the latest scan of an instrument 1 ms).
func catalogBench(path: String, entries: Int, batch: Int) throws {
    for suffix in ["", "-wal", "-shm"] { unlink(path + suffix) }
    let cat = try Catalog(location: path)
    let samples = ["LaB6", "Si", "CeO2", "Al2O3", "Ni", "Cu", "Fe3O4", "SrTiO3", "KTaO3", "BaTiO3"]
    // titles of four words from a vocabulary of 500 (plan names, conditions, notes)
    let base = ["rotation", "alignment", "powder", "single", "crystal", "mesh", "energy", "scan", "dark", "flat", "calibration", "omega",
                "phi", "kappa", "fly", "step", "edge", "anneal", "quench", "field", "pressure", "cooling", "warming", "test", "beam"]
    let words = (0..<500).map { base[$0 % base.count] + ($0 < base.count ? "" : String($0 / base.count)) }
    var rng = SystemRandomNumberGenerator()
    let start0 = 1_764_547_200.0  // 2025-12-01
    let t0 = now()
    var i = 0
    while i < entries {
        let n = min(batch, entries - i)
        var files: [FileRecord] = []
        files.reserveCapacity(n)
        for k in i..<(i + n) {
            var e = CatalogEntry(path: "/data/run\(k / 10_000)/scan_\(k).nxs", entry: "entry")
            e["sample"] = .text(samples[k % samples.count])
            let kelvin = 10 + Double(rng.next() % 4000) / 10
            e["temperature"] = k % 3 == 0 ? .number(kelvin - 273.15, units: "degC", si: kelvin) : .number(kelvin, units: "K", si: kelvin)
            let t = start0 + Double(k) * 30
            e["start_time"] = .time(NXTime.iso(t), seconds: t)
            e["instrument"] = .text("beamline-\(k % 20)")
            e["title"] = .text((0..<4).map { _ in words[Int(rng.next() % UInt64(words.count))] }.joined(separator: " ") + " \(k)")
            e["kind"] = .text("raw")
            e["status"] = .text("ok")
            e["frames"] = .integer(Int64(k % 3600))
            files.append(FileRecord(path: e.path, size: 1000, mtime: t, entries: [e]))
        }
        try cat.engine.replace(files)
        i += n
    }
    let insertSeconds = now() - t0
    func p50(_ q: String, order: String? = nil, limit: Int = 50, runs: Int = 30) throws -> Double {
        let query = try CatalogQuery.parse(q)
        _ = try cat.search(query, order: order, limit: limit)
        var xs: [Double] = []
        for _ in 0..<runs {
            let t = now()
            _ = try cat.search(query, order: order, limit: limit)
            xs.append((now() - t) * 1e3)
        }
        return median(xs)
    }
    let equality = try p50("sample:KTaO3 AND instrument:beamline-18", limit: 50)
    let range = try p50("temperature:[250 K TO 26.85 degC] AND instrument:beamline-3", limit: 50)
    let text = try p50("\"calibration omega3\" OR anneal7", limit: 50)
    let latest = try p50("instrument:beamline-11", order: "-start_time", limit: 1)
    print("{\"bench\": \"catalog\", \"entries\": \(entries), \"insert_seconds\": \(insertSeconds), \"equality_ms\": \(equality), \"range_ms\": \(range), \"text_ms\": \(text), \"latest_ms\": \(latest)}")
    cat.close()
}

let args = CommandLine.arguments
switch args.count > 1 ? args[1] : "" {
case "journal":
    try journal(path: args.count > 2 ? args[2] : "/tmp/nxlua-bench-journal.sqlite",
                events: args.count > 3 ? Int(args[3]) ?? 200_000 : 200_000, batch: args.count > 4 ? Int(args[4]) ?? 500 : 500)
case "catalog":
    try catalogBench(path: args.count > 2 ? args[2] : "/tmp/nxlua-bench-catalog.sqlite",
                     entries: args.count > 3 ? Int(args[3]) ?? 1_000_000 : 1_000_000, batch: args.count > 4 ? Int(args[4]) ?? 5000 : 5000)
case "sums":
    try sums(frames: args.count > 2 ? Int(args[2]) ?? 100 : 100)
case "bridge":
    try bridge(calls: args.count > 2 ? Int(args[2]) ?? 2_000_000 : 2_000_000)
default:
    print("usage: nxlua-bench bridge [calls] | sums [frames] | journal [path] [events] [batch]")
    exit(2)
}
