import CHDF5
import CHDF5Shims
import Synchronization

/// Any failure of a NeXus operation. The message names the file, the object path and
/// what was expected, as users read it in a Lua error.
public struct NeXusError: Error, CustomStringConvertible, Equatable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// libhdf5, opened with dlopen on first use (CHDF5Shims explains why).
struct H5Library: @unchecked Sendable {
    let api: UnsafePointer<nxh5_api>?
    let failure: String

    static let shared: H5Library = {
        var why = [CChar](repeating: 0, count: 512)
        let api = nxh5_load(&why, why.count)
        return H5Library(api: api, failure: String(nulTerminated: why))
    }()
}

/// The low layer: a thin mirror of HDF5's C API (h5py's "low-level" idea). Every call
/// goes through `H5.api` once `H5.load()` has succeeded; the tree above never sees hid_t.
enum H5 {
    /// Loads libhdf5; every entry point (opening or creating a file) calls this first.
    @discardableResult
    static func load() throws -> UnsafePointer<nxh5_api> {
        guard let api = H5Library.shared.api else { throw NeXusError(H5Library.shared.failure) }
        return api
    }

    /// The function table; only valid after `load()` succeeded (any open file implies it).
    static var api: UnsafePointer<nxh5_api> { H5Library.shared.api! }

    /// The innermost message of HDF5's error stack, then clears it.
    static func takeError() -> String {
        var buf = [CChar](repeating: 0, count: 1024)
        let n = nxh5_error_message(&buf, buf.count)
        return n == 0 ? "" : shortened(String(nulTerminated: buf))
    }

    /// The sec2 driver's failed reads and writes carry a time stamp, the descriptor, the
    /// buffer address and byte counts across two lines; users need the system's reason:
    /// "file write failed: No space left on device (errno 28)".
    static func shortened(_ message: String) -> String {
        func match(_ pattern: String) -> (range: Range<String.Index>, group: Substring)? {
            guard let m = try? Regex(pattern).firstMatch(in: message), let g = m.output[1].substring else { return nil }
            return (m.range, g)
        }
        guard let failed = match("file (read|write) failed: time = "),
              let reason = match("error message = '([^']*)'") else { return message }
        let errno = match("errno = ([0-9]+)").map { " (errno \($0.group))" } ?? ""
        return message[..<failed.range.lowerBound] + "file \(failed.group) failed: \(reason.group)" + errno
    }

    /// Throws "<context>: <hdf5's reason>" when status < 0.
    @discardableResult
    static func check<T: BinaryInteger>(_ status: T, _ context: @autoclosure () -> String) throws -> T {
        if status < 0 {
            let why = takeError()
            throw NeXusError(why.isEmpty ? context() : "\(context()) (\(why))")
        }
        return status
    }

    static let unlimited = hsize_t.max  // H5S_UNLIMITED
    static let accRDONLY: UInt32 = 0x0000, accRDWR: UInt32 = 0x0001, accTRUNC: UInt32 = 0x0002,
               accEXCL: UInt32 = 0x0004, accSWMRWrite: UInt32 = 0x0020, accSWMRRead: UInt32 = 0x0040
    static let variable = -1  // H5T_VARIABLE: (size_t)-1, and Swift imports size_t as Int
}

/// An open HDF5 identifier, closed exactly once (explicitly, by its file's close, or on
/// deinit). Ids of long-lived objects are registered with their file, which closes them
/// before the file so that nothing holds a stale id.
final class H5Handle {
    enum Kind { case file, group, dataset, datatype, dataspace, attribute, plist, object }
    /// The id, -1 once closed. Atomic: a node read through nxlua serve can be released
    /// on an HTTP thread while the HDF5 thread closes its file (whose strong close closes
    /// the id too). Whoever takes the id first closes it; a close that comes second finds
    /// it gone and says so quietly (ids are never reused in HDF5 1.10).
    private let state: Atomic<hid_t>
    let kind: Kind

    init(_ id: hid_t, _ kind: Kind) {
        self.state = Atomic(id)
        self.kind = kind
    }

    /// Wraps a returned id, throwing the HDF5 reason when it is negative.
    convenience init(checking id: hid_t, _ kind: Kind, _ context: @autoclosure () -> String) throws {
        try H5.check(id, context())
        self.init(id, kind)
    }

    var id: hid_t { state.load(ordering: .relaxed) }
    var isOpen: Bool { id >= 0 }

    /// Closes the id; returns HDF5's reason when that failed (for a file: what it held
    /// could not be written, e.g. a full disk).
    @discardableResult
    func close() -> String? {
        guard H5Library.shared.api != nil, nxh5_shut_down() == 0 else { return nil }
        let h = H5.api, kind = self.kind
        // The last release of a node may happen on any thread (an HTTP thread of nxlua
        // serve, a Lua state's): HDF5 must not print there (once per thread; cheap after).
        nxh5_silence_this_thread()
        let id = state.exchange(-1, ordering: .acquiringAndReleasing)
        guard id >= 0 else { return nil }
        let status: herr_t
        switch kind {
        case .file: status = h.pointee.H5Fclose(id)
        case .group: status = h.pointee.H5Gclose(id)
        case .dataset: status = h.pointee.H5Dclose(id)
        case .datatype: status = h.pointee.H5Tclose(id)
        case .dataspace: status = h.pointee.H5Sclose(id)
        case .attribute: status = h.pointee.H5Aclose(id)
        case .plist: status = h.pointee.H5Pclose(id)
        case .object: status = h.pointee.H5Oclose(id)
        }
        guard status < 0 else { return nil }  // only then: walking the stack costs 7% of a tree print
        if kind == .file { nxh5_note_failed_file_close() }
        let why = H5.takeError()
        return why.isEmpty ? "HDF5 refused to close it" : why
    }

    /// Marks the id closed without closing it (its file's strong close does that).
    func invalidate() { state.store(-1, ordering: .releasing) }

    deinit { close() }
}

extension String {
    /// The text of a NUL-terminated C buffer.
    init(nulTerminated buffer: [CChar]) {
        let bytes = buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }
        self = String(decoding: bytes, as: UTF8.self)
    }
}
