import Foundation
import NDArray
import NeXus

/// `nxlua replay FILE.nxs`: the events a stack would have produced, made from the file,
/// so saved macros run again on old data. A file written by `nxlua stack` gives its
/// stored frames (frame_status) with their per-frame values; any other NeXus file gives
/// the frames of its default NXdata signal (a field of 3 or more dimensions).
public enum StackReplay {
    public struct Options {
        public var path: String
        public var entry = "entry"
        public var run: String? = nil
        /// Frames per frames.ready event.
        public var chunk = 32
        public init(path: String) { self.path = path }
    }

    public static func events(_ o: Options) throws -> [NewEvent] {
        let file: NXFile
        do {
            var opts = NXFile.Options()
            opts.swmr = true
            file = try (try? NXFile(path: o.path, mode: .read, options: opts)) ?? NXFile(path: o.path, mode: .read)
        } catch {
            throw EventError("\(o.path): cannot open: \(error)")
        }
        defer { try? file.close() }
        let root = file.root
        var dataset = "/\(o.entry)/instrument/detector/data"
        var data = try root.resolve("\(o.entry)/instrument/detector/data") as? NXField
        var statuses: [Double]? = nil
        if data != nil, let status = try root.resolve("\(o.entry)/stacking/frame_status") as? NXField,
           try status.shape[0] > 0, case .array(let a) = try status.read(nil) {
            statuses = a.doubles()
        }
        if data == nil {
            guard let g = try root.defaultData(), let s = try g.signal() else {
                throw EventError("\(o.path): no /\(o.entry)/instrument/detector/data and no default NXdata signal: nothing to replay")
            }
            data = s
            dataset = s.path
        }
        guard let frames = data else { throw EventError("\(o.path): nothing to replay") }
        let shape = try frames.shape
        guard shape.count >= 3 else {
            throw EventError("\(o.path): \(dataset) has shape \(NDArray.describe(shape)): frames need 3 or more dimensions")
        }
        let count = shape[0]
        let stored: [Bool] = (0..<count).map { i in statuses.map { i < $0.count && $0[i] == 1 } ?? true }
        // per-frame values (NDAttributes), as the stacker announced them
        var values: [String: [Double]] = [:]
        if let g = try root.resolve("\(o.entry)/instrument/NDAttributes") as? NXGroup {
            for e in try g.entries() where e.name != "frame_number" {
                guard let f = try g.child(e.name) as? NXField, try f.shape.count == 1, try f.shape[0] >= count,
                      case .numeric = try f.elementType, case .array(let a) = try f.read(nil) else { continue }
                values[e.name] = a.doubles()
            }
        }
        // the frame files, as the stacker announces them (`sources`): what it recorded in
        // stacking/source_file, one name per frame
        var sources: [String]? = nil
        if statuses != nil, let f = try root.resolve("\(o.entry)/stacking/source_file") as? NXField,
           try f.shape.count == 1, try f.shape[0] >= count, case .strings(let names, _) = try f.read(nil) {
            sources = names
        }
        let run = o.run ?? makeRunUID()
        let stream = "detector"
        func event(_ kind: EventKind, _ payload: [String: EventValue], _ key: String) -> NewEvent {
            NewEvent(kind: kind, run: run, payload: payload, key: "\(run)/\(key)", source: "replay")
        }
        let frameShape = EventValue.array(shape.dropFirst().map { .int($0) })
        var out: [NewEvent] = [
            event(.runStart, ["file": .string(o.path), "dataset": .string(dataset), "entry": .string(o.entry),
                              "expected_frames": .int(count), "frame_shape": frameShape, "replay": .bool(true),
                              "resumed": .bool(false)], "run.start"),
            event(.streamOpen, ["stream": .string(stream), "file": .string(o.path),
                                "fields": .array([.object(["name": .string("data"), "path": .string(dataset),
                                                           "shape": frameShape, "units": .string("counts")])])], "stream.open/\(stream)"),
        ]
        var i = 0
        while i < count {
            guard stored[i] else { i += 1; continue }
            var j = i
            while j < count, stored[j], j - i < o.chunk { j += 1 }
            var payload: [String: EventValue] = [
                "stream": .string(stream), "first": .int(i), "stop": .int(j), "count": .int(j - i),
                "file": .string(o.path), "dataset": .string(dataset), "slice": .string("\(i):\(j)"),
            ]
            if !values.isEmpty {
                payload["values"] = .object(values.mapValues { v in
                    .array((i..<j).map { k in v[k] == v[k].rounded() && abs(v[k]) < 1e15 ? .int(Int(v[k])) : .double(v[k]) })
                })
            }
            if let names = sources { payload["sources"] = .array(names[i..<j].map { .string($0) }) }
            out.append(event(.framesReady, payload, "frames/\(stream)/\(i)-\(j)"))
            i = j
        }
        let storedCount = stored.filter { $0 }.count
        out.append(event(.fileClosed, ["file": .string(o.path)], "file.closed"))
        out.append(event(.runStop, ["status": .string("success"), "frames": .int(count), "stored": .int(storedCount),
                                    "file": .string(o.path), "replay": .bool(true)], "run.stop"))
        return out
    }
}
