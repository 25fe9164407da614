#if canImport(Glibc)
import Glibc
#endif
import NDArray
import NeXus

/// One NXevent_data group, checked and read lazily: its small fields (event_time_zero,
/// event_index) when opened, the events themselves (event_id, event_time_offset) only by
/// blocks while a histogram streams over them.
public final class EventBank {
    public let group: NXGroup
    let idField: NXField
    let tofField: NXField
    /// Events in the bank, pulses (frames) in the bank.
    public let eventCount: Int
    public let pulseCount: Int
    /// event_time_zero in seconds (relative to its `offset` attribute when it has one).
    public let pulseTimes: [Double]
    /// event_index: the first event of each pulse.
    public let pulseStarts: [Int]
    /// The units of event_time_offset (bin edges are in these units).
    public let tofUnits: String
    let idType: DType, tofType: DType

    var place: String { "\(group.file.path): \(group.path)" }

    public init(_ group: NXGroup) throws {
        self.group = group
        let place = "\(group.file.path): \(group.path)"
        func field(_ name: String, _ what: String) throws -> NXField {
            guard let node = try group.child(name) else {
                throw EventError("\(place): NXevent_data needs \(name) (\(what)), the group has \(try group.names().joined(separator: ", "))")
            }
            guard let f = node as? NXField else { throw EventError("\(place)/\(name): a field is expected (\(what)), found a group") }
            return f
        }
        func oneD(_ f: NXField, _ name: String) throws -> Int {
            let s = try f.shape
            guard s.count == 1 else { throw EventError("\(place)/\(name): a 1-D field is expected, shape is (\(s.map(String.init).joined(separator: ", ")))") }
            guard case .numeric(let d) = try f.elementType else { throw EventError("\(place)/\(name): a numeric field is expected, found \(try f.elementType.name)") }
            _ = d
            return s[0]
        }
        let ids = try field("event_id", "the detector number of each event")
        let tofs = try field("event_time_offset", "the time of flight of each event")
        let etz = try field("event_time_zero", "the time of each pulse")
        let index = try field("event_index", "the first event of each pulse")
        let nID = try oneD(ids, "event_id"), nTOF = try oneD(tofs, "event_time_offset")
        guard nID == nTOF else {
            throw EventError("\(place): event_id has \(nID) events but event_time_offset has \(nTOF): one time of flight per event is expected")
        }
        let nPulse = try oneD(etz, "event_time_zero"), nIndex = try oneD(index, "event_index")
        guard nPulse == nIndex else {
            throw EventError("\(place): event_time_zero has \(nPulse) pulses but event_index has \(nIndex): one first event per pulse is expected")
        }
        func values(_ f: NXField, _ name: String) throws -> [Double] {
            guard case .array(let a) = try f.read(nil) else { throw EventError("\(place)/\(name): numbers expected") }
            return a.doubles()
        }
        let starts = try values(index, "event_index").map { Int($0) }
        for (p, s) in starts.enumerated() {
            guard s >= 0, s <= nID else {
                throw EventError("\(place)/event_index: entry \(p) is \(s), outside the \(nID) events (0...\(nID) expected)")
            }
            if p > 0, s < starts[p - 1] {
                throw EventError("\(place)/event_index: entry \(p) (\(s)) is below entry \(p - 1) (\(starts[p - 1])): a non-decreasing index is expected")
            }
        }
        let scale = EventBank.seconds(etz.stringAttribute("units"))
        let times = try values(etz, "event_time_zero").map { $0 * scale }
        func readType(_ f: NXField, ints: Bool) throws -> DType {
            guard case .numeric(let d) = try f.elementType else { return .float64 }
            if ints {
                switch d {
                case .int8, .int16, .int32, .uint8, .uint16: return .int32
                // SNS's event_id is uint32: read as stored, no conversion (HDF5 converting
                // to int64 took a quarter of a histogram's time, mostly in fresh pages)
                case .uint32: return .uint32
                default: return .int64
                }
            }
            return d == .float32 ? .float32 : .float64
        }
        idType = try readType(ids, ints: true)
        tofType = try readType(tofs, ints: false)
        idField = ids
        tofField = tofs
        eventCount = nID
        pulseCount = nPulse
        pulseStarts = starts
        pulseTimes = times
        tofUnits = tofs.stringAttribute("units") ?? ""
    }

    /// Seconds per unit of event_time_offset.
    public var tofSeconds: Double { EventBank.seconds(tofUnits) }

    /// Seconds per unit of a time field (ns, us, ms, s and their spellings).
    public static func seconds(_ units: String?) -> Double {
        switch units.map { trimmed($0).lowercased() } {
        case "ns", "nanosecond", "nanoseconds": return 1e-9
        case "us", "µs", "microsecond", "microseconds", "microsec": return 1e-6
        case "ms", "millisecond", "milliseconds": return 1e-3
        default: return 1
        }
    }

    /// The runs of events to read: all of them, or those of the pulses whose time (in
    /// seconds, as `pulseTimes`) lies in [lo, hi). Adjacent pulses merge into one run.
    public func eventRanges(pulses: (Double, Double)?) -> [Range<Int>] {
        guard let (lo, hi) = pulses else { return eventCount > 0 ? [0..<eventCount] : [] }
        var out: [Range<Int>] = []
        for p in 0..<pulseCount where pulseTimes[p] >= lo && pulseTimes[p] < hi {
            let a = pulseStarts[p], b = p + 1 < pulseCount ? pulseStarts[p + 1] : eventCount
            guard b > a else { continue }
            if let last = out.last, last.upperBound == a { out[out.count - 1] = last.lowerBound..<b } else { out.append(a..<b) }
        }
        return out
    }

    /// The NXdetector that describes this bank's pixels: the parent (ESS: the events
    /// inside the detector), or instrument/<name without _events> (SNS: entry/bank1_events
    /// beside entry/instrument/bank1).
    public func detector() throws -> NXGroup? {
        let parent = group.parent
        if parent.nxclass == "NXdetector" { return parent }
        var name = group.name
        if name.hasSuffix("_events") { name.removeLast("_events".count) }
        for inst in try parent.children(ofClass: "NXinstrument") {
            if let d = try (inst as? NXGroup)?.child(name) as? NXGroup, d.nxclass == "NXdetector" { return d }
        }
        if let d = try parent.child(name) as? NXGroup, d.nxclass == "NXdetector", d.path != group.path { return d }
        return nil
    }
}

func trimmed(_ s: String) -> String {
    var t = Substring(s)
    while t.first == " " || t.first == "\t" { t.removeFirst() }
    while t.last == " " || t.last == "\t" { t.removeLast() }
    return String(t)
}
