import Events
import LuaBridge
import NeXus
import Stacker

/// `detector.stack{...}`: the Lua face of the Stacker (the same run as `nxlua stack`).
extension DetectorModule {
    static let stackFunction = LuaFunctionDecl(
        "stack", "detector.stack{files = {...} | watch = dir, out = file [, options]} -> summary",
        "stacks detector frames into a NeXus file (as nxlua stack; resumes an existing one)",
        help: """
        detector.stack{files = {"a_00001.cbf", ...}, out = "scan.nxs"}
        detector.stack{files = {"series_master.h5"}, out = "scan.nxs"}   -- Eiger / areaDetector HDF5
        detector.stack{watch = "/data/scan7", out = "scan7.nxs", frames = 3600, idle = 60}
        options: entry = "entry", compression = "bslz4" | "lz4" | "gzip[:l]" | "blosc[:l]" |
        "lzf" | "none", frames = n (expected count), first = n (number stored first), fill = -1,
        workers = n, pattern = "*.cbf", poll = true (NFS), poll_interval = 0.2, end_marker =
        "name", idle = seconds, settle = 5, flush_every = 32, no_sync = true (commits do not wait
        for the disk: faster, a power cut can lose frames marked stored), quiet = true (no progress bar),
        meta = {"sample.name=LaB6", "sample.temperature=300K"} and meta_file = "run.toml" (values from outside the frames),
        journal = "events.sqlite" (announce the run's events for macros, docs/macros.md), run = uid,
        scan_id = n and plan = "name" (in run.start). The options are nxlua stack's, with
        underscores for dashes; an unknown key is an error.
        summary: output, dataset, frames, stored, stored_before, bad, missing (0-based
        indices), seconds, frames_per_second, stop_reason, resumed, run (with journal). Bad frames are logged on
        stderr and recorded in /entry/stacking; Ctrl-C stops after committing what is done
        (rerun to resume). Layout and details: docs/stacking.md.
        """) { call in
        let settings = StackOptions.settings + StackEventEmitter.settings
        try call.options(1, known: ["files"] + settings.map(\.key))
        let lua = call.lua
        var files: [String] = []
        if lua.rawGet(at: 1, key: "files") == .table {
            let t = lua.absIndex(-1)
            var k = 1
            while lua.rawGet(at: t, index: k) != .nil {
                guard lua.type(at: -1) == .string, let s = lua.toString(at: -1) else {
                    lua.pop(2)
                    throw LuaError.argument(1, "files[\(k)] must be a path (a string)")
                }
                files.append(s)
                lua.pop()
                k += 1
            }
            lua.pop(2)
        } else {
            let isNil = lua.type(at: -1) == .nil
            lua.pop()
            if !isNil { throw LuaError.argument(1, "files must be a list of paths") }
        }
        let values = TableValues(lua: lua)
        var o: StackOptions
        do { o = try StackOptions.make(files: files, values) } catch let e as StackSettingError {
            throw LuaError.argument(1, e.message)
        } catch let e as LuaError { throw e } catch {
            throw LuaError.argument(1, "\(error)")
        }
        o.program = "nxlua detector.stack (nxlua \(CoreModule.version))"
        o.shouldStop = { LuaInterrupt.isPending }
        let emitter: StackEventEmitter?
        do { emitter = try StackEventEmitter.make(values, for: &o) } catch let e as LuaError { throw e } catch {
            throw LuaError.runtime("\(error)")
        }
        // every event is journaled before this returns
        defer { emitter?.close() }
        let summary: StackSummary
        do { summary = try wrap { try Stacker(options: o).run() } } catch {
            emitter?.runFailed("\(error)", file: o.output)
            throw error
        }
        // Ctrl-C: the stack is committed and resumable; now the usual interruption error.
        try LuaInterrupt.check()
        pushSummary(summary, lua)
        if let e = emitter {
            lua.push(e.run)
            lua.rawSet(at: -2, key: "run")
        }
        return 1
    }

    /// The options table of detector.stack as the settings' values (keys with underscores).
    struct TableValues: StackSettingValues {
        let lua: Lua
        func key(_ name: String) -> String { String(name.map { $0 == "-" ? "_" : $0 }) }
        func string(_ name: String) throws -> String? {
            defer { lua.pop() }
            switch lua.rawGet(at: 1, key: key(name)) {
            case .nil: return nil
            case .string: return lua.toString(at: -1)
            // a setting whose value is a number written as text (scan_id = 5)
            case .number where (StackOptions.settings + StackEventEmitter.settings).first(where: { $0.name == name })?.valueName == "N":
                return lua.toString(at: -1)
            default: throw LuaError.argument(1, "\(key(name)) must be a string")
            }
        }
        func number(_ name: String, atLeast low: Double) throws -> Double? {
            defer { lua.pop() }
            switch lua.rawGet(at: 1, key: key(name)) {
            case .nil: return nil
            case .number where lua.toNumber(at: -1).map({ $0 >= low && $0.isFinite }) == true: return lua.toNumber(at: -1)
            default:
                let what = low > -Double.greatestFiniteMagnitude ? "a number of at least \(low)" : "a number"
                throw LuaError.argument(1, "\(key(name)) must be \(what)")
            }
        }
        func integer(_ name: String, atLeast low: Int) throws -> Int? {
            defer { lua.pop() }
            switch lua.rawGet(at: 1, key: key(name)) {
            case .nil: return nil
            case .number where lua.toInteger(at: -1).map({ $0 >= low }) == true: return lua.toInteger(at: -1)
            default: throw LuaError.argument(1, "\(key(name)) must be an integer of at least \(low)")
            }
        }
        func flag(_ name: String) throws -> Bool {
            defer { lua.pop() }
            return lua.rawGet(at: 1, key: key(name)) != .nil && lua.toBoolean(at: -1)
        }
        /// A string, or a list of strings (meta = {"sample.name=LaB6", "sample.temperature=300K"}).
        func strings(_ name: String) throws -> [String] {
            defer { lua.pop() }
            switch lua.rawGet(at: 1, key: key(name)) {
            case .nil: return []
            case .string: return [lua.toString(at: -1) ?? ""]
            case .table:
                var out: [String] = []
                let t = lua.absIndex(-1)
                var k = 1
                while lua.rawGet(at: t, index: k) != .nil {
                    defer { lua.pop() }
                    guard lua.type(at: -1) == .string, let s = lua.toString(at: -1) else {
                        throw LuaError.argument(1, "\(key(name))[\(k)] must be a string")
                    }
                    out.append(s)
                    k += 1
                }
                lua.pop()
                return out
            default: throw LuaError.argument(1, "\(key(name)) must be a string or a list of strings")
            }
        }
    }

    static func pushSummary(_ s: StackSummary, _ lua: Lua) {
        lua.ensureStack(6)
        lua.newTable(recordCount: 12)
        func set(_ key: String, _ push: () -> Void) {
            push()
            lua.rawSet(at: -2, key: key)
        }
        set("output") { lua.push(s.output) }
        set("dataset") { lua.push(s.dataset) }
        set("frames") { lua.push(s.frameCount) }
        set("stored") { lua.push(s.stored) }
        set("stored_before") { lua.push(s.storedBefore) }
        set("bad") { lua.push(s.bad) }
        set("seconds") { lua.push(s.seconds) }
        set("frames_per_second") { lua.push(s.framesPerSecond) }
        set("stop_reason") { lua.push(s.stopReason) }
        set("resumed") { lua.push(s.resumed) }
        set("missing") {
            lua.newTable(arrayCount: s.missing.count)
            for (k, i) in s.missing.enumerated() {
                lua.push(i)
                lua.rawSet(at: -2, index: k + 1)
            }
        }
    }
}
