import LuaBridge
import NDArray
import NeXus
#if canImport(Glibc)
import Glibc
#endif

/// The Lua face of beamline macros (docs/macros.md): in a macro's state, `on(kind, key,
/// fn)` and `off(kind, key)` register and remove handlers (SPEC's cdef: each macro keys
/// its own hooks), and the `macro` table holds the macro's name, path and content hash
/// with helpers: `macro.frames(event)` reads the frames an event announces,
/// `macro.write_process(file, name, t)` writes results as an NXprocess group stamped with
/// the macro's hash and the time. The runner (Sources/Macros) owns the state and calls
/// the dispatcher this sets up.
public enum MacroSetup {
    static let kinds = ["run.start", "stream.open", "frames.ready", "point", "file.closed", "run.stop"]

    static let prelude = """
    local name, path, version, readframes, registered = ...
    local kinds = { \(kinds.map { "[\"\($0)\"] = true" }.joined(separator: ", ")) }
    local handlers, order = {}, {}
    local function checkkind(fname, kind)
      if type(kind) ~= "string" then error("bad argument #1 to '" .. fname .. "' (event kind expected, got " .. type(kind) .. ")", 3) end
      if not kinds[kind] then
        error("bad argument #1 to '" .. fname .. "' (unknown event kind '" .. kind .. "'; expected run.start, stream.open, frames.ready, point, file.closed or run.stop)", 3)
      end
    end
    function on(kind, key, fn)
      checkkind("on", kind)
      if type(key) ~= "string" then error("bad argument #2 to 'on' (key string expected, got " .. type(key) .. ")", 2) end
      if type(fn) ~= "function" then error("bad argument #3 to 'on' (function expected, got " .. type(fn) .. ")", 2) end
      handlers[kind] = handlers[kind] or {}
      order[kind] = order[kind] or {}
      if handlers[kind][key] == nil then table.insert(order[kind], key) end
      handlers[kind][key] = fn
    end
    function off(kind, key)
      checkkind("off", kind)
      local h = handlers[kind]
      if h == nil or h[key] == nil then return false end
      h[key] = nil
      for i, k in ipairs(order[kind]) do if k == key then table.remove(order[kind], i) break end end
      return true
    end
    local current, current_event = nil, nil
    local function open(file)
      -- the stacker may still be writing the file (SWMR); a finished file opens either way
      local ok, f = pcall(nx.load, file, "r", { swmr = true })
      if ok then return f end
      return nx.load(file, "r")
    end
    macro = { name = name, path = path, version = version }
    function macro.frames(event)
      if type(event) ~= "table" or event.file == nil or event.dataset == nil or event.slice == nil then
        error("bad argument #1 to 'frames' (a frames.ready event expected)", 2)
      end
      return readframes(event.file, event.dataset, event.slice, event.stop or 0, event.run)
    end
    macro.open = open
    local heavy = false
    function macro.heavy()
      heavy = true
    end
    local function isheavy() return heavy end
    function macro.write_process(file, pname, t)
      if type(file) ~= "string" then error("bad argument #1 to 'write_process' (file name expected, got " .. type(file) .. ")", 2) end
      if type(pname) ~= "string" then error("bad argument #2 to 'write_process' (group name expected, got " .. type(pname) .. ")", 2) end
      t = t or {}
      local entry = t.entry or "entry"
      do
        local f <close> = nx.load(file, "a")
        if f[entry] == nil then f[entry] = nx.group("NXentry") end
        local g = f[entry]
        if g[pname] ~= nil then g[pname] = nil end
        g[pname] = nx.group("NXprocess", {
          program = "nxlua macros", version = version, date = os.date("!%Y-%m-%dT%H:%M:%SZ"),
          macro = name, macro_path = path, macro_hash = version,
        })
        local p = g[pname]
        if t.note then p.note = t.note end
        if t.parameters then
          local params = {}
          for k, v in pairs(t.parameters) do params[k] = v end
          p.parameters = nx.group("NXparameters", params)
        end
        if t.data then p.data = nx.data(t.data) end
        if t.fields then for k, v in pairs(t.fields) do p[k] = v end end
      end
      -- the catalog (nxlua macros --catalog) records the file as derived from the event's file
      registered(file, current_event and current_event.file)
      return file .. ":/" .. entry .. "/" .. pname
    end
    local function dispatch(event)
      local keys = order[event.kind]
      if keys == nil or #keys == 0 then return 0 end
      local n = 0
      current_event = event
      for _, k in ipairs({ table.unpack(keys) }) do
        local fn = handlers[event.kind][k]
        if fn then current = k; fn(event); n = n + 1 end
      end
      current = nil
      return n
    end
    local function wants(kind)
      return order[kind] ~= nil and #order[kind] > 0
    end
    local function handler() return current end
    -- help(on), help(macro.frames), help("macro"): the same docs table as the Swift bindings
    local docs = require "nxlua.docs"
    local function document(qualified, value, signature, summary, kind)
      local entry = { name = qualified, kind = kind or "function", signature = signature, summary = summary, help = "" }
      docs.names[qualified] = entry
      if value ~= nil then docs.values[value] = entry end
      return qualified
    end
    local members = {
      document("on", on, "on(kind, key, fn)", "runs fn(event) for each event of kind, under key (SPEC's cdef: the same key replaces, other keys stay)"),
      document("off", off, "off(kind, key)", "removes the handler registered under key for kind"),
      document("macro.frames", macro.frames, "macro.frames(event) -> ndarray", "the frames a frames.ready event announces, (count, y, x), read from its file"),
      document("macro.open", macro.open, "macro.open(file) -> root", "opens a file for reading, as a SWMR reader when the stacker may still write it"),
      document("macro.heavy", macro.heavy, "macro.heavy()",
               "at the top level: this macro's handlers are heavy (they read whole frames); it runs in the runner's batch process, below the light macros, from its first event"),
      document("macro.write_process", macro.write_process, 'macro.write_process(file, name, t) -> "file:/entry/name"',
               "writes an NXprocess group (t.parameters, t.data, t.fields, t.note, t.entry) with the macro's name, path, hash and the time"),
    }
    local module = { name = "macro", kind = "module", signature = "macro", members = members, help = "",
                     summary = "beamline macros: event handlers and helpers (docs/macros.md); macro.name, macro.path, macro.version (SHA-256)" }
    docs.names.macro = module
    docs.values[macro] = module
    docs.modules[#docs.modules + 1] = module
    return dispatch, wants, handler, isheavy
    """

    /// One live read at a time in the process. HDF5 shares a file opened twice in one
    /// process, metadata cache included: while one macro held the stack open, another's
    /// SWMR read could see a stale chunk index and return another frame's pixels (seen
    /// with two example macros on a live stack). Opened, refreshed, read and closed
    /// under this lock, every read sees the file as of its open.
    nonisolated(unsafe) static var readLock: pthread_mutex_t = {
        var m = pthread_mutex_t()
        pthread_mutex_init(&m, nil)
        return m
    }()

    /// Frames `slice` of `dataset` in `file`, which the stacker may still be writing.
    /// Every macro of a runner reads the same frames: the first read decompresses them,
    /// the others take a copy of the block it left in `recentReads` (a copy, so that a
    /// macro writing into its array in place cannot change what another one reads).
    /// Decompressing a Pilatus 2M frame costs about 8 ms of CPU, copying it about 1 ms.
    static func readFrames(file path: String, dataset: String, slice: String, stop: Int, run: String?) throws -> NDArray {
        pthread_mutex_lock(&readLock)
        defer { pthread_mutex_unlock(&readLock) }
        // the file's identity as well as its path: a scan written again under the same
        // name is another file; announced frames of one file never change
        var st = stat()
        let key = stat(path, &st) == 0
            ? "\(st.st_dev):\(st.st_ino)|\(run ?? "")|\(path)|\(dataset)|\(slice)" : nil
        if let key, let cached = recentReads.take(key) {
            do { return try cached.copy() } catch { throw LuaError.runtime("\(error)") }
        }
        let block = try readFramesNow(file: path, dataset: dataset, slice: slice, stop: stop)
        if let key { recentReads.keep(block, as: key) }
        do { return try block.copy() } catch { throw LuaError.runtime("\(error)") }
    }

    /// The last blocks read, for the other macros of the runner (least recently used
    /// first out; at most 256 MB: 25 Pilatus 2M frames, so a macro a few frames behind
    /// the others still finds its frames here).
    nonisolated(unsafe) static var recentReads = RecentBlocks(byteLimit: 256 << 20)

    private static func readFramesNow(file path: String, dataset: String, slice: String, stop: Int) throws -> NDArray {
        var o = NXFile.Options()
        o.swmr = true
        let file: NXFile
        do { file = try (try? NXFile(path: path, mode: .read, options: o)) ?? NXFile(path: path, mode: .read) } catch {
            throw LuaError.runtime("\(error)")
        }
        defer { try? file.close() }
        do {
            guard let d = try file.root.resolve(dataset) as? NXField else {
                throw LuaError.runtime("\(path): \(dataset): no such field")
            }
            try d.refresh()
            let n = try d.shape.first ?? 0
            if n < stop { throw LuaError.runtime("\(path): \(dataset) holds \(n) frames; the event announces \(slice)") }
            guard case .array(let a) = try d.read(try Selection(parsing: slice)) else {
                throw LuaError.runtime("\(path): \(dataset) is not numeric")
            }
            return a
        } catch let e as LuaError { throw e } catch {
            throw LuaError.runtime("\(error)")
        }
    }

    /// Called after macro.write_process wrote `file` while handling an event about `source`
    /// (`nxlua macros --catalog` registers the file as derived data of the source).
    nonisolated(unsafe) public static var processWritten: (@Sendable (_ file: String, _ source: String?) -> Void)?

    static let dispatchKey = "nxlua.macro.dispatch"
    static let wantsKey = "nxlua.macro.wants"
    static let handlerKey = "nxlua.macro.handler"
    static let heavyKey = "nxlua.macro.heavy"

    /// Installs `on`, `off` and `macro` in the runtime's state.
    public static func install(in runtime: Runtime, name: String, path: String, version: String) throws {
        let lua = runtime.lua
        let base = lua.top
        defer { lua.top = base }
        try lua.load(prelude, name: "=macro")
        lua.push(name)
        lua.push(path)
        lua.push(version)
        lua.push(function: "frames") { call in
            let a = try readFrames(file: try call.string(1), dataset: try call.string(2), slice: try call.string(3),
                                   stop: try call.integer(4), run: try call.optString(5))
            try ArrayModule.push(a, call.lua, scalarIfZeroD: false)
            return 1
        }
        lua.push(function: "registered") { call in
            if let hook = processWritten { hook(try call.string(1), try call.optString(2)) }
            return 0
        }
        try lua.pcall(nargs: 5, nresults: 4)
        for (i, key) in [dispatchKey, wantsKey, handlerKey, heavyKey].enumerated() {
            lua.pushValue(at: base + 1 + Int32(i))
            lua.rawSet(at: Lua.registryIndex, key: key)
        }
    }

    /// Whether the macro has a handler for `kind` (a plain table look-up: cannot loop).
    public static func wants(_ kind: String, in runtime: Runtime) throws -> Bool {
        let lua = runtime.lua
        let base = lua.top
        defer { lua.top = base }
        _ = lua.rawGet(at: Lua.registryIndex, key: wantsKey)
        lua.push(kind)
        try lua.pcall(nargs: 1, nresults: 1)
        return lua.toBoolean(at: -1)
    }

    /// Whether the macro's top level called macro.heavy().
    public static func declaredHeavy(in runtime: Runtime) throws -> Bool {
        let lua = runtime.lua
        let base = lua.top
        defer { lua.top = base }
        _ = lua.rawGet(at: Lua.registryIndex, key: heavyKey)
        try lua.pcall(nargs: 0, nresults: 1)
        return lua.toBoolean(at: -1)
    }

    /// Calls the handlers of the event that `pushEvent` pushes (a table with `kind`);
    /// returns how many ran. A handler's error is thrown with the handler's key.
    public static func dispatch(in runtime: Runtime, pushEvent: (Lua) throws -> Void) throws -> Int {
        let lua = runtime.lua
        let base = lua.top
        defer { lua.top = base }
        _ = lua.rawGet(at: Lua.registryIndex, key: dispatchKey)
        try pushEvent(lua)
        do {
            try lua.pcall(nargs: 1, nresults: 1, traceback: true)
        } catch let e as LuaScriptError {
            throw MacroHandlerError(handler: nil, message: e.message)
        }
        return lua.toInteger(at: -1) ?? 0
    }

    /// The key of the handler that was running when dispatch failed (ask once the
    /// limits are cleared: an expired limit raises at every instruction).
    public static func failedHandler(in runtime: Runtime) -> String? {
        let lua = runtime.lua
        let base = lua.top
        defer { lua.top = base }
        _ = lua.rawGet(at: Lua.registryIndex, key: handlerKey)
        guard (try? lua.pcall(nargs: 0, nresults: 1)) != nil else { return nil }
        return lua.toString(at: -1)
    }
}

/// A handler failed: which one (its key), and Lua's message with the traceback.
public struct MacroHandlerError: Error, CustomStringConvertible {
    public var handler: String?
    public var message: String
    public init(handler: String?, message: String) { self.handler = handler; self.message = message }
    public var description: String { handler.map { "handler '\($0)': \(message)" } ?? message }
}

/// Arrays by key, the least recently used dropped first once their bytes pass the limit
/// (callers hold their own lock: MacroSetup.readLock).
struct RecentBlocks {
    let byteLimit: Int
    private var entries: [(key: String, block: NDArray)] = []
    private var bytes = 0

    init(byteLimit: Int) { self.byteLimit = byteLimit }

    /// The block kept under `key`, now the most recently used.
    mutating func take(_ key: String) -> NDArray? {
        guard let i = entries.firstIndex(where: { $0.key == key }) else { return nil }
        let e = entries.remove(at: i)
        entries.append(e)
        return e.block
    }

    mutating func keep(_ block: NDArray, as key: String) {
        guard block.nbytes <= byteLimit else { return }
        entries.append((key, block))
        bytes += block.nbytes
        while bytes > byteLimit, let first = entries.first {
            bytes -= first.block.nbytes
            entries.removeFirst()
        }
    }
}
