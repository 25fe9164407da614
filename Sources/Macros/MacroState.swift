import Crypto
import Events
import Foundation
import LuaBridge
import NDArray
import NeXus
import NXLuaRuntime

/// One macro file as read: its name (the file name without .lua), text and content hash.
public struct MacroSource: Sendable, Equatable {
    public let name: String
    public let path: String
    public let text: String
    /// SHA-256 of the text, hex: the version recorded in records and provenance.
    public let hash: String

    public init(name: String, path: String, text: String) {
        self.name = name
        self.path = path
        self.text = text
        hash = SHA256.hash(data: Data(text.utf8)).map { String(format: "%02x", $0) }.joined()
    }

    public var shortHash: String { String(hash.prefix(12)) }
}

/// Limits of a macro's handlers.
public struct MacroLimits: Sendable {
    public var seconds = 30.0
    public var instructions = Int.max
    public var memory = 2 << 30
    public init() {}
}

/// A macro compiled into its own Lua state, with the same modules as scripts (nx, array,
/// detector) and `on`/`off`/`macro` (MacroSetup). Lives on one worker thread.
final class MacroState {
    let source: MacroSource
    let runtime: Runtime
    let limits: LuaLimits
    let bounds: MacroLimits

    /// Compiles and runs the file's top level (which registers handlers), bounded by the
    /// same limits as a handler. Throws a message naming the file.
    init(_ source: MacroSource, bounds: MacroLimits) throws {
        self.source = source
        self.bounds = bounds
        limits = LuaLimits(memory: bounds.memory)
        NXThreads.silenceHDF5Errors()   // errors are reported as Lua errors, not printed by HDF5
        do {
            runtime = try Runtime(limits: limits)
            try MacroSetup.install(in: runtime, name: source.name, path: source.path, version: source.hash)
        } catch {
            throw EventError("\(source.path): cannot set up a Lua state: \(error)")
        }
        let lua = runtime.lua
        let base = lua.top
        defer { lua.top = base }
        do {
            // messages name the file, not its whole path (Lua cuts long chunk names)
            try lua.load(source.text, name: "@" + (source.path.split(separator: "/").last.map(String.init) ?? source.path))
        } catch let e as LuaScriptError {
            throw EventError(e.message)
        }
        do {
            try bounded { try lua.pcall(nargs: 0, nresults: 0, traceback: true) }
        } catch let e as MacroHandlerError {
            throw EventError("\(source.path): loading failed: \(e.message)")
        }
    }

    /// Runs `body` (Lua calls) under the handler limits; a limit reached is reported as
    /// such even when the code caught the error.
    func bounded<R>(_ body: () throws -> R) throws -> R {
        let state = runtime.state
        let watched = limits
        nonisolated(unsafe) let check = watched
        limits.arm(state, seconds: bounds.seconds, instructions: bounds.instructions)
        var result: Result<R, Error>
        do {
            result = .success(try Interruption.withPoll({ check.hasExpired }) { try body() })
        } catch {
            result = .failure(error)
        }
        let reached = limits.reached
        limits.clear(state)
        if let reached {
            runtime.lua.top = 0
            let what: String
            switch reached {
            case .time: what = "time limit of \(bounds.seconds) s reached (the handler was stopped)"
            case .instructions: what = "instruction limit of \(bounds.instructions) reached (the handler was stopped)"
            case .memory: what = "memory limit of \(bounds.memory >> 20) MiB reached (the handler was stopped)"
            }
            throw MacroHandlerError(handler: MacroSetup.failedHandler(in: runtime), message: what)
        }
        switch result {
        case .success(let r): return r
        case .failure(var e as MacroHandlerError):
            e.handler = MacroSetup.failedHandler(in: runtime)
            throw e
        case .failure(let e as LuaScriptError): throw MacroHandlerError(handler: nil, message: e.message)
        case .failure(let e): throw MacroHandlerError(handler: nil, message: "\(e)")
        }
    }

    /// The file's top level called macro.heavy() (its handlers read whole frames).
    var declaredHeavy: Bool { (try? MacroSetup.declaredHeavy(in: runtime)) ?? false }

    func wants(_ kind: EventKind) -> Bool {
        (try? MacroSetup.wants(kind.rawValue, in: runtime)) ?? false
    }

    /// Runs the handlers of `event`; throws MacroHandlerError.
    func handle(_ event: Event, attempt: Int) throws {
        _ = try bounded {
            try MacroSetup.dispatch(in: runtime) { lua in
                try MacroState.push(event, attempt: attempt, lua)
            }
        }
        // the handler's garbage goes now, not in the middle of the next one's time
        runtime.lua.top = 0
    }

    /// The event as a Lua table: seq, kind, run, key, time, source, attempt, then the
    /// payload's fields.
    static func push(_ e: Event, attempt: Int, _ lua: Lua) throws {
        lua.newTable(recordCount: 8 + e.payload.count)
        for (k, v) in e.payload {
            try push(v, lua, depth: 0)
            lua.rawSet(at: -2, key: k)
        }
        lua.push(Int(e.seq)); lua.rawSet(at: -2, key: "seq")
        lua.push(e.kind.rawValue); lua.rawSet(at: -2, key: "kind")
        lua.push(e.run); lua.rawSet(at: -2, key: "run")
        lua.push(e.handlerKey); lua.rawSet(at: -2, key: "key")
        lua.push(e.time); lua.rawSet(at: -2, key: "time")
        lua.push(e.source); lua.rawSet(at: -2, key: "source")
        lua.push(attempt); lua.rawSet(at: -2, key: "attempt")
    }

    static func push(_ v: EventValue, _ lua: Lua, depth: Int) throws {
        guard depth < 64, lua.ensureStack(4) else { throw EventError("an event value is nested too deeply") }
        switch v {
        case .null: lua.pushNil()
        case .bool(let b): lua.push(b)
        case .int(let i): lua.push(i)
        case .double(let d): lua.push(d)
        case .string(let s): lua.push(s)
        case .array(let items):
            lua.newTable(arrayCount: items.count)
            for (i, item) in items.enumerated() {
                try push(item, lua, depth: depth + 1)
                lua.rawSet(at: -2, index: i + 1)
            }
        case .object(let members):
            lua.newTable(recordCount: members.count)
            for (k, item) in members {
                try push(item, lua, depth: depth + 1)
                lua.rawSet(at: -2, key: k)
            }
        }
    }
}
