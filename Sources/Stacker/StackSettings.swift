import NeXus

/// One setting of a stacking run, declared once for `nxlua stack --NAME` and for the key of
/// `detector.stack{...}` (the same name with underscores), so that neither can lack an
/// option the other has.
public struct StackSetting: Sendable {
    public let name: String          // as the command line spells it: "poll-interval"
    public let valueName: String?    // nil: a flag
    public let help: String

    public init(_ name: String, _ valueName: String?, _ help: String) {
        self.name = name
        self.valueName = valueName
        self.help = help
    }

    /// The Lua table key: "poll_interval".
    public var key: String { String(name.map { $0 == "-" ? "_" : $0 }) }
}

/// Where the values of settings come from: the command line or a Lua table. Each getter
/// throws its source's own error for a value of the wrong kind.
public protocol StackSettingValues {
    func string(_ name: String) throws -> String?
    func integer(_ name: String, atLeast: Int) throws -> Int?
    func number(_ name: String, atLeast: Double) throws -> Double?
    func flag(_ name: String) throws -> Bool
    /// Every value of a setting that may be given several times (--meta).
    func strings(_ name: String) throws -> [String]
}

extension StackSettingValues {
    public func strings(_ name: String) throws -> [String] { try string(name).map { [$0] } ?? [] }
}

/// A setting that cannot be used as given (the command line shows its usage after it).
public struct StackSettingError: Error, CustomStringConvertible {
    public let message: String
    public var description: String { message }
}

extension StackOptions {
    /// The stacking settings (the event settings are `StackEventEmitter.settings`).
    public static let settings: [StackSetting] = [
        .init("out", "FILE.nxs", "the NeXus file to write, or to resume (required)"),
        .init("watch", "DIR", "follow this folder while the detector writes into it"),
        .init("pattern", "GLOB", "only names matching this shell pattern (default *.cbf, *.tif, *.tiff)"),
        .init("entry", "NAME", "the NXentry's name (default entry)"),
        .init("compression", "NAME", "bslz4 (default), lz4, gzip[:level], blosc[:level], lzf or none"),
        .init("frames", "N", "expected frame count: stop once all are in; the rest are recorded missing"),
        .init("first", "N", "the frame number stored first (default: lowest listed; watching: 0 or 1)"),
        .init("fill", "V", "pixel value of missing and bad frames (default -1)"),
        .init("workers", "N", "decode/compress threads (default: one per core)"),
        .init("poll", nil, "watch by rescanning, not inotify (NFS, GPFS: no events from other hosts)"),
        .init("poll-interval", "S", "seconds between rescans with --poll (default 0.2)"),
        .init("end-marker", "NAME", "stop once a file of this name appears in the folder"),
        .init("idle", "S", "stop after this many seconds without a new frame"),
        .init("settle", "S", "retry an undecodable file while younger than this (default 5)"),
        .init("flush-every", "N", "commit at least every N frames (default 32; an idle stacker commits at once)"),
        .init("no-sync", nil, "do not wait for the disk at each commit: faster, but a power cut or OS crash (not a killed stacker) can lose frames marked stored"),
        .init("quiet", nil, "no progress bar"),
        .init("meta", "KEY=VALUE", "a value from outside the frames, written into the new stack: sample.name=LaB6, sample.temperature=300K (units after the number), instrument.source.current=100mA, user.name=..., experiment.identifier=...; repeatable"),
        .init("log", "NAME=FILE.csv", "a time-stamped log (CSV of time,value, or FILE.spec:SCAN:COLUMN timed by its Epoch column; times in seconds since 1970 or ISO 8601; a header 'time,temperature (K)' gives units): NXlog NAME_log in the sample (sample.temperature or temperature) or instrument (instrument.source.current), and NAME per frame, interpolated at each frame's time stamp; repeatable"),
        .init("spec", "FILE:SCAN", "the SPEC scan that goes with the stack (data.spec:12): the sample's name and temperature from its comments, a temperature column or motor, its title, its motors' positions (instrument/positioners); --meta wins over it"),
        .init("meta-file", "FILE.toml", "values from a TOML file: [sample] name = \"LaB6\", temperature = 300, temperature_units = \"K\" (--meta wins over it)"),
    ]

    /// The options of a run from its settings; `files` are the frame files given (the
    /// command line's arguments, the Lua table's `files`).
    public static func make(files: [String], _ v: StackSettingValues) throws -> StackOptions {
        guard let out = try v.string("out") else { throw StackSettingError(message: "out (the NeXus file to write) is required") }
        let watch = try v.string("watch")
        if files.isEmpty && watch == nil { throw StackSettingError(message: "give frame files or a folder to watch") }
        if !files.isEmpty && watch != nil { throw StackSettingError(message: "give frame files or a folder to watch, not both") }
        var o = StackOptions(source: watch.map { .watch($0) } ?? .files(files), output: out)
        o.pattern = try v.string("pattern")
        if let e = try v.string("entry") { o.entry = e }
        if let c = try v.string("compression") {
            o.compression = c.lowercased() == "none" ? nil : try NXCompression(parsing: c)
        }
        o.frames = try v.integer("frames", atLeast: 1)
        o.firstNumber = try v.integer("first", atLeast: 0)
        if let f = try v.number("fill", atLeast: -Double.greatestFiniteMagnitude) { o.fillValue = f }
        if let w = try v.integer("workers", atLeast: 1) { o.workers = w }
        o.poll = try v.flag("poll")
        if let p = try v.number("poll-interval", atLeast: 0.001) { o.pollInterval = p }
        o.endMarker = try v.string("end-marker")
        o.idleTimeout = try v.number("idle", atLeast: 0)
        if let s = try v.number("settle", atLeast: 0) { o.settleTime = s }
        if let n = try v.integer("flush-every", atLeast: 1) { o.commitFrames = n }
        o.durable = !(try v.flag("no-sync"))
        o.progress = !(try v.flag("quiet"))
        do {
            for f in try v.strings("meta-file") { try o.additions.metadata.add(tomlFile: f) }
            for m in try v.strings("meta") { try o.additions.metadata.add(assignment: m) }
            if let spec = try v.string("spec") { try o.additions.metadata.add(specScan: spec) }
            for l in try v.strings("log") { o.additions.logs.append(try StackLog.parse(l)) }
        } catch let e as StackError { throw StackSettingError(message: e.message) }
        return o
    }
}
