import Detector
import NDArray
import NeXus
#if canImport(Glibc)
import Glibc
#endif

/// Frames that arrive in HDF5 files rather than one file per frame: a Dectris Eiger master
/// file (its /entry/data/data_NNNNNN external links to the data files), an areaDetector
/// HDF5 file (/entry/instrument/detector/data or /entry/data/data, per-frame values in
/// NDAttributes), or any 3-D dataset named as `FILE:/path/to/data`. Their metadata
/// becomes a Pilatus-style header (the keys the stack's layout knows: detector_distance,
/// beam_xy, pixel_size, exposure_time, wavelength, ...) and per-frame values, so the stack
/// harvests it as it harvests CBF headers; Eiger's pixel_mask becomes the stack's.
///
/// Only the stacking thread touches these files (the stacker's rule: one thread talks to
/// HDF5). A frame whose chunk is already in the stack's chunk format (one frame per
/// chunk, same filter, e.g. Eiger's bitshuffle+LZ4) is copied as stored: H5Dread_chunk
/// then H5Dwrite_chunk, nothing decoded.
final class HDF5Frames {
    /// One 3-D dataset: a run of frames.
    struct Block {
        let field: NXField
        let frames: Int
        let first: Int      // index of its first frame in the whole series
        let label: String   // for source_file: "series_master.h5[17]" style names use it
    }

    private(set) var blocks: [Block] = []
    private var files: [NXFile] = []
    private(set) var frameShape: [Int] = []
    private(set) var dtype: DType = .int32
    private(set) var frameCount = 0
    /// The number of frame 0 (Eiger's image_nr_low; else 0).
    private(set) var firstNumber = 0
    /// Constant values, as header entries (Pilatus key names where one exists): the first input's.
    private(set) var constants: [HeaderEntry] = []
    /// Per-frame values (NDAttributes, Eiger goniometer arrays): one number per frame.
    private(set) var perFrame: [(key: String, values: [Double], units: String?, integer: Bool)] = []
    private(set) var pixelMask: NDArray?
    private(set) var description: String

    /// "file.h5", "file.h5:/entry/data/data", or a file whose first bytes are HDF5's signature.
    static func isHDF5(_ spec: String) -> Bool {
        let (path, _) = split(spec)
        let lower = path.lowercased()
        if [".h5", ".hdf5", ".hdf", ".nxs", ".nx5", ".nx"].contains(where: { lower.hasSuffix($0) }) { return true }
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { Glibc.close(fd) }
        var sig = [UInt8](repeating: 0, count: 8)
        return read(fd, &sig, 8) == 8 && sig == [0x89, 0x48, 0x44, 0x46, 0x0D, 0x0A, 0x1A, 0x0A]
    }

    /// "file.h5:/path" -> ("file.h5", "/path"); a colon not followed by "/" is part of the name.
    static func split(_ spec: String) -> (String, String?) {
        let u = Array(spec.utf8)
        var i = u.count - 2
        while i > 0 {
            if u[i] == 0x3A && u[i + 1] == 0x2F {  // ":/"
                return (String(decoding: u[..<i], as: UTF8.self), String(decoding: u[(i + 1)...], as: UTF8.self))
            }
            i -= 1
        }
        return (spec, nil)
    }

    /// A list of inputs, all there now.
    init(inputs: [String]) throws {
        description = inputs.count == 1 ? inputs[0] : "\(inputs.count) HDF5 files from \(inputs[0])"
        for spec in inputs { _ = try add(spec) }
        guard frameCount > 0 else { throw StackError("\(inputs.joined(separator: ", ")): no frames found") }
    }

    /// Files that arrive one by one (`--watch` with HDF5 names), added with `add`.
    init(watching folder: String) {
        description = "HDF5 files in \(folder)"
    }

    /// Adds an input's frames after those already there: their indices, and the number of
    /// the input's first image when it says (Eiger's image_nr_low). The first input sets the
    /// frame shape, dtype, constants and pixel mask; later ones must agree.
    func add(_ spec: String) throws -> (frames: Range<Int>, imageNumber: Int?) {
        let (path, datasetPath) = HDF5Frames.split(spec)
        let file: NXFile
        do { file = try NXFile(path: path, mode: .read) } catch {
            throw StackError("\(path): cannot open as HDF5: \(error)")
        }
        let found: [(NXField, String)]
        do { found = try HDF5Frames.datasets(in: file, path: path, explicit: datasetPath) } catch {
            try? file.close()
            throw error
        }
        var added: [Block] = []
        var total = frameCount
        var imageNumber: Int? = nil
        for (field, _) in found {
            let s = try field.shape
            let frameShape = s.count == 3 ? Array(s.dropFirst()) : s
            let frames = s.count == 3 ? s[0] : 1
            guard case .numeric(let dt) = try field.elementType else {
                try? file.close()
                throw StackError("\(path):\(field.path): not numbers (frames of numbers expected)")
            }
            if frameCount > 0 || !added.isEmpty {
                guard self.frameShape == frameShape else {
                    try? file.close()
                    throw StackError("\(path):\(field.path): frames of \(NDArray.describe(frameShape)) where the first input has \(NDArray.describe(self.frameShape))")
                }
                guard dtype == dt else {
                    try? file.close()
                    throw StackError("\(path):\(field.path): \(dt.rawValue) pixels where the first input has \(dtype.rawValue)")
                }
            }
            self.frameShape = frameShape
            dtype = dt
            if imageNumber == nil, case .array(let a)? = try? field.attribute("image_nr_low"), a.count == 1 {
                imageNumber = Int(a.doubles()[0])
            }
            added.append(Block(field: field, frames: frames, first: total, label: HDF5Frames.name(path)))
            total += frames
        }
        // metadata: the first input's constants and mask; per-frame arrays of every input, in order
        let meta: (constants: [HeaderEntry], perFrame: [(String, [Double], String?, Bool)], mask: NDArray?)
        do { meta = try HDF5Frames.metadata(in: file, frames: total - frameCount) } catch {
            try? file.close()
            throw error
        }
        if let m = meta.mask, pixelMask == nil, m.shape != frameShape {
            try? file.close()
            throw StackError("\(path): pixel_mask of \(NDArray.describe(m.shape)) where frames are \(NDArray.describe(frameShape))")
        }
        let before = frameCount
        if blocks.isEmpty {
            constants = meta.constants
            pixelMask = meta.mask
            firstNumber = imageNumber ?? 0
        }
        for (key, values, units, integer) in meta.perFrame {
            if let i = perFrame.firstIndex(where: { $0.key == key }) {
                perFrame[i].values += values
            } else {
                perFrame.append((key, [Double](repeating: .nan, count: before) + values, units, integer))
            }
        }
        for i in perFrame.indices where perFrame[i].values.count < total {
            perFrame[i].values += [Double](repeating: .nan, count: total - perFrame[i].values.count)
        }
        blocks += added
        files.append(file)
        frameCount = total
        return (before..<total, imageNumber)
    }

    func close() { for f in files { try? f.close() }; files = [] }

    static func name(_ path: String) -> String {
        String(path.split(separator: "/", omittingEmptySubsequences: false).last ?? Substring(path))
    }

    /// The frame datasets of one file, in order.
    static func datasets(in file: NXFile, path: String, explicit: String?) throws -> [(NXField, String)] {
        func field(_ p: String) throws -> NXField? {
            guard let node = try? file.root.resolve(p) else { return nil }
            return node as? NXField
        }
        if let explicit {
            guard let f = try field(explicit) else { throw StackError("\(path): no dataset \(explicit)") }
            let s = try f.shape
            guard s.count == 3 || s.count == 2 else {
                throw StackError("\(path):\(explicit): a dataset of shape \(NDArray.describe(s)) (frames, rows, columns) expected")
            }
            return [(f, explicit)]
        }
        // Eiger master: /entry/data/data_000001, data_000002, ... (external links)
        if let g = try? file.root.resolve("/entry/data") as? NXGroup {
            let names = try g.names().filter { $0.hasPrefix("data_") && $0.dropFirst(5).allSatisfy(\.isNumber) }.sorted()
            if !names.isEmpty {
                var out: [(NXField, String)] = []
                for n in names {
                    guard let f = try? g.child(n) as? NXField else {
                        throw StackError("\(path): /entry/data/\(n) cannot be opened (an Eiger data file missing next to the master file?)")
                    }
                    out.append((f, "/entry/data/\(n)"))
                }
                return out
            }
        }
        for p in ["/entry/instrument/detector/data", "/entry/data/data"] {
            // 3-D: frames; 2-D: one frame (areaDetector's single mode)
            if let f = try field(p), [2, 3].contains(try f.shape.count) { return [(f, p)] }
        }
        throw StackError("\(path): no frames found (looked for an Eiger master's /entry/data/data_NNNNNN, areaDetector's /entry/instrument/detector/data and /entry/data/data; name a 3-D dataset as \(path):/path/to/data)")
    }

    /// Eiger's detector values under Pilatus key names (what the stack's layout maps to
    /// NeXus names), areaDetector's NDAttributes as per-frame values, Eiger's pixel mask.
    static func metadata(in file: NXFile, frames: Int) throws -> (constants: [HeaderEntry],
                                                                    perFrame: [(String, [Double], String?, Bool)],
                                                                    mask: NDArray?) {
        var constants: [HeaderEntry] = []
        var perFrame: [(String, [Double], String?, Bool)] = []
        func node(_ p: String) -> NXField? { (try? file.root.resolve(p)) as? NXField }
        func number(_ p: String) -> (Double, String?)? {
            guard let f = node(p), case .array(let a)? = try? f.read(nil), a.count == 1 else { return nil }
            return (a.doubles()[0], f.stringAttribute("units"))
        }
        func text(_ p: String) -> String? {
            guard let f = node(p), case .strings(let s, _)? = try? f.read(nil), let t = s.first else { return nil }
            return t
        }
        func add(_ key: String, _ value: HeaderValue, _ units: String?) {
            constants.append(HeaderEntry(key: key, value: value, units: units, line: "# \(key) \(value) \(units ?? "")"))
        }
        let det = "/entry/instrument/detector"
        if let t = text("\(det)/description") { add("detector", .text(t), nil) }
        if let (x, u) = number("\(det)/detector_distance") { add("detector_distance", .number(x), u ?? "m") }
        if let (x, u) = number("\(det)/count_time") { add("exposure_time", .number(x), u ?? "s") }
        if let (x, u) = number("\(det)/frame_time") { add("exposure_period", .number(x), u ?? "s") }
        if let (x, u) = number("\(det)/threshold_energy") { add("threshold_setting", .number(x), u ?? "eV") }
        if let (x, u) = number("\(det)/sensor_thickness") { add("sensor_thickness", .number(x), u ?? "m") }
        if let t = text("\(det)/sensor_material") { add("sensor", .text(t), nil) }
        if let (x, _) = number("\(det)/beam_center_x"), let (y, _) = number("\(det)/beam_center_y") {
            add("beam_xy", .numbers([x, y]), "pixels")
        }
        if let (x, u) = number("\(det)/x_pixel_size"), let (y, _) = number("\(det)/y_pixel_size") {
            add("pixel_size", .numbers([x, y]), u ?? "m")
        }
        if let (x, _) = number("\(det)/detectorSpecific/countrate_correction_count_cutoff") ?? number("\(det)/saturation_value") {
            add("count_cutoff", .integer(Int(x)), nil)
        }
        if let (x, u) = number("/entry/instrument/beam/incident_wavelength") ?? number("/entry/instrument/monochromator/wavelength") {
            add("wavelength", .number(x), u ?? "Angstrom")
        }
        // per-frame arrays: Eiger's goniometer, areaDetector's NDAttributes
        var groups: [(String, Bool)] = [("/entry/sample/goniometer", true)]
        groups += [("/entry/instrument/NDAttributes", false), ("\(det)/NDAttributes", false)]
        for (gp, gonio) in groups {
            guard let g = (try? file.root.resolve(gp)) as? NXGroup else { continue }
            for n in (try? g.names()) ?? [] {
                guard let f = (try? g.child(n)) as? NXField, let s = try? f.shape, case .numeric(let dt)? = try? f.elementType else { continue }
                guard s == [frames] || (s.count == 2 && s[0] == frames && s[1] == 1) else { continue }
                guard case .array(let a)? = try? f.read(nil) else { continue }
                if gonio && !["omega", "phi", "kappa", "chi", "two_theta"].contains(n) { continue }
                perFrame.append((n, a.doubles(), f.stringAttribute("units"), !dt.isFloat))
            }
        }
        var mask: NDArray? = nil
        if let f = node("\(det)/detectorSpecific/pixel_mask") ?? node("\(det)/pixel_mask"), case .array(let a)? = try? f.read(nil), a.ndim == 2 {
            mask = a
        }
        return (constants, perFrame, mask)
    }

    // MARK: frames

    func block(of k: Int) -> (Block, Int) {
        var lo = 0, hi = blocks.count - 1
        while lo < hi {
            let mid = (lo + hi + 1) / 2
            if blocks[mid].first <= k { lo = mid } else { hi = mid - 1 }
        }
        return (blocks[lo], k - blocks[lo].first)
    }

    /// The placeholder path of frame k in the stacker's list (never opened as a file).
    static func virtualPath(_ k: Int) -> String { "hdf5-frame:\(k)" }

    /// k of a placeholder path.
    static func frameIndex(_ path: String) -> Int? {
        path.hasPrefix("hdf5-frame:") ? Int(path.dropFirst("hdf5-frame:".count)) : nil
    }

    /// The name a frame is recorded under (stacking/source_file).
    func sourceName(_ k: Int) -> String {
        let (b, i) = block(of: k)
        return "\(b.label)[\(b.first + i)]"
    }

    /// Frame k decoded (by the filter plugin, outside HDF5's lock where NeXus can).
    func frame(_ k: Int) throws -> NDArray {
        let (b, i) = block(of: k)
        let whole = try b.field.shape.count == 2
        let value = whole ? try b.field.read(nil) : try b.field.read(Selection([.index(.int(i))]))
        guard case .array(let a) = value else { throw StackError("\(b.label):\(b.field.path): not numbers") }
        return a
    }

    /// Frame k's chunk as stored, when the blocks' chunks hold one whole frame each in the
    /// same format as `target` (the stack's data): nil otherwise, or when never written.
    func storedChunk(_ k: Int) throws -> NXEncodedChunk? {
        let (b, i) = block(of: k)
        return try b.field.readChunk(at: [i, 0, 0])
    }

    /// Whether frame k's chunk can go into `target` as stored (asked once per block: watched
    /// files come one by one, each with its own layout).
    func chunkFits(_ k: Int, into target: NXField) -> Bool {
        let (b, _) = block(of: k)
        if let known = fits[b.first] { return known }
        let answer = HDF5Frames.chunksFit([b], target)
        fits[b.first] = answer
        return answer
    }
    private var fits: [Int: Bool] = [:]

    /// Whether the blocks' chunks can go into `target` as stored.
    static func chunksFit(_ blocks: [Block], _ target: NXField) -> Bool {
        guard let want = try? target.chunks, let wantFilters = try? target.storedFilters else { return false }
        for b in blocks {
            guard let s = try? b.field.shape, s.count == 3, let c = try? b.field.chunks, c == want,
                  let filters = try? b.field.storedFilters, filters.count == wantFilters.count else { return false }
            for (a, w) in zip(filters, wantFilters) {
                guard a.id == w.id else { return false }
                if a.id == 32008 {
                    // bitshuffle chunks carry their block size: element size and LZ4 must agree
                    guard a.parameters.count >= 5, w.parameters.count >= 5, a.parameters[2] == w.parameters[2],
                          a.parameters[4] == w.parameters[4] else { return false }
                } else if a.parameters != w.parameters { return false }
            }
        }
        return true
    }

    /// Frame k's per-frame values and the header made of the constants and them.
    func values(_ k: Int) -> [String: HeaderValue] {
        var out: [String: HeaderValue] = [:]
        for e in constants { out[e.key] = e.value }
        for (key, v, _, integer) in perFrame where k < v.count {
            out[key] = integer && v[k].isFinite ? .integer(Int(v[k])) : .number(v[k])
        }
        return out
    }

    func header(_ k: Int) -> FrameHeader {
        var entries = constants
        for (key, v, units, integer) in perFrame where k < v.count {
            let value: HeaderValue = integer && v[k].isFinite ? .integer(Int(v[k])) : .number(v[k])
            entries.append(HeaderEntry(key: key, value: value, units: units, line: "# \(key) \(v[k])\(units.map { " " + $0 } ?? "")"))
        }
        var h = FrameHeader(format: "hdf5", compression: "", decoder: "hdf5")
        h.pilatus = PilatusHeader(entries: entries, text: entries.map(\.line).joined(separator: "\n"))
        return h
    }
}
