import FolderListing
#if canImport(Glibc)
import Glibc
#endif

/// A frame file found by a source: its path and the frame number in its name.
public struct FrameFile: Hashable, Sendable {
    public let path: String
    public let number: Int
}

/// Frame numbers and name patterns.
public enum FrameNaming {
    /// The frame number of a file name: the last run of digits before the extension
    /// ("scan_00012.cbf" -> 12, "img_3_0007.tif" -> 7), or nil.
    public static func number(in path: String) -> Int? {
        var name = Substring(path.split(separator: "/", omittingEmptySubsequences: false).last ?? "")
        if let dot = name.lastIndex(of: "."), dot != name.startIndex { name = name[..<dot] }
        guard let end = name.lastIndex(where: { $0.isASCII && $0.isNumber }) else { return nil }
        var start = end
        while start > name.startIndex, let c = name[name.index(before: start)...].first, c.isASCII, c.isNumber {
            start = name.index(before: start)
        }
        let digits = name[start...end].suffix(18)  // an Int holds 18 digits safely
        return Int(digits)
    }

    /// Shell-style match of a file name ("*.cbf", "scan1_?????.tif").
    public static func matches(_ name: String, pattern: String?) -> Bool {
        guard let pattern else { return true }
        return fnmatch(pattern, name, 0) == 0
    }

    /// The detector's own image types, for a folder watched without a pattern.
    public static func isFrameFileName(_ name: String) -> Bool {
        let lower = name.lowercased()
        return [".cbf", ".tif", ".tiff"].contains { lower.hasSuffix($0) } && !name.hasPrefix(".")
    }
}

/// Where frames come from: a list of files, or a folder the detector writes into.
protocol FrameSource {
    /// New frame files since the last call, waiting at most `timeout` seconds for some,
    /// or until `wake` (a descriptor, -1 for none) becomes readable: the stacker's
    /// workers hand back frames that way, so that one wait serves both.
    mutating func next(timeout: Double, wake: Int32) throws -> [FrameFile]
    /// No more files will come (a list, once handed out).
    var isExhausted: Bool { get }
    /// The end-marker file has appeared (watch mode).
    var endMarkerSeen: Bool { get }
}

/// The files given on the command line, numbered by the numbers in their names, or by
/// their position when some names have none or two share one.
struct ListSource: FrameSource {
    private var files: [FrameFile]
    private(set) var isExhausted = false
    var endMarkerSeen: Bool { false }

    init(paths: [String]) {
        let numbers = paths.map(FrameNaming.number(in:))
        if numbers.allSatisfy({ $0 != nil }), Set(numbers.map { $0! }).count == paths.count {
            files = zip(paths, numbers).map { FrameFile(path: $0, number: $1!) }.sorted { $0.number < $1.number }
        } else {
            files = paths.enumerated().map { FrameFile(path: $1, number: $0) }
        }
    }

    /// Frames numbered already (the frames of HDF5 inputs), in order.
    init(files: [FrameFile]) { self.files = files }

    /// The lowest frame number in the list.
    var firstNumber: Int? { files.first?.number }

    mutating func next(timeout: Double, wake: Int32) throws -> [FrameFile] {
        if isExhausted {
            // nothing more comes from here: the wait is for the workers alone
            var p = pollfd(fd: wake, events: Int16(POLLIN), revents: 0)
            if timeout > 0 { _ = Glibc.poll(&p, 1, Int32((timeout * 1000).rounded(.up))) }
            return []
        }
        defer { files = []; isExhausted = true }
        return files
    }
}

/// A folder the detector writes into. On local disks inotify reports each file when its
/// writer closes it or renames it into place, and a periodic rescan catches what an
/// overflowing event queue dropped; with `poll` (NFS, GPFS: inotify sees nothing of
/// other hosts' writes) the folder is rescanned every `pollInterval`. Either way a file
/// is only accepted once it decodes (the stacker retries files that do not yet).
struct DirectorySource: FrameSource {
    let directory: String
    let pattern: String?
    let endMarker: String?
    let poll: Bool
    let pollInterval: Double
    let rescanInterval: Double
    private var seen: Set<String> = []
    private var inotify: Int32 = -1
    private var lastScan = -1.0
    private(set) var endMarkerSeen = false
    var isExhausted: Bool { false }

    init(directory: String, pattern: String?, endMarker: String?, poll: Bool,
         pollInterval: Double = 0.2, rescanInterval: Double = 2.0) throws {
        var st = stat()
        guard stat(directory, &st) == 0 else { throw StackError("\(directory): no such folder to watch") }
        guard (st.st_mode & S_IFMT) == S_IFDIR else { throw StackError("\(directory): not a folder (watch mode follows a folder)") }
        self.directory = directory
        self.pattern = pattern
        self.endMarker = endMarker
        self.poll = poll
        self.pollInterval = pollInterval
        self.rescanInterval = rescanInterval
        if !poll {
            inotify = inotify_init1(Int32(IN_NONBLOCK | IN_CLOEXEC))
            if inotify >= 0 {
                let mask = UInt32(IN_CLOSE_WRITE) | UInt32(IN_MOVED_TO)
                if inotify_add_watch(inotify, directory, mask) < 0 {
                    close(inotify)
                    inotify = -1  // e.g. the watch limit: fall back to rescans
                }
            }
        }
    }

    /// Whether inotify events are being used (false: polling).
    var usesInotify: Bool { inotify >= 0 }

    mutating func next(timeout: Double, wake: Int32) throws -> [FrameFile] {
        var found: [FrameFile] = []
        let now = StackClock.now()
        let interval = usesInotify ? rescanInterval : pollInterval
        if lastScan < 0 || now - lastScan >= interval {
            lastScan = now
            try scan(into: &found)
            if !found.isEmpty { return found }
        }
        let wait = max(0, min(timeout, interval - (StackClock.now() - lastScan)))
        // poll() skips negative descriptors: no inotify (polling mode) or nothing to wake on
        var fds = [pollfd(fd: inotify, events: Int16(POLLIN), revents: 0), pollfd(fd: wake, events: Int16(POLLIN), revents: 0)]
        if usesInotify || wait > 0, Glibc.poll(&fds, 2, Int32((wait * 1000).rounded(.up))) > 0, fds[0].revents != 0 {
            readEvents(into: &found)
        }
        return found
    }

    private mutating func consider(_ name: String, into found: inout [FrameFile]) {
        if let endMarker, name == endMarker { endMarkerSeen = true; return }
        guard !seen.contains(name) else { return }
        let wanted = pattern.map { FrameNaming.matches(name, pattern: $0) } ?? FrameNaming.isFrameFileName(name)
        guard wanted, let number = FrameNaming.number(in: name) else { return }
        seen.insert(name)
        found.append(FrameFile(path: directory + "/" + name, number: number))
    }

    private mutating func scan(into found: inout [FrameFile]) throws {
        let names: [String]
        switch FolderListing.names(directory) {
        case .success(let n): names = n
        case .failure(let e): throw StackError("\(directory): cannot list the folder (\(e.reason))")
        }
        for name in names { consider(name, into: &found) }
        found.sort { $0.number < $1.number }
    }

    private mutating func readEvents(into found: inout [FrameFile]) {
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(inotify, $0.baseAddress, $0.count) }
            guard n > 0 else { return }
            var offset = 0
            while offset + MemoryLayout<inotify_event>.size <= n {
                let (mask, length) = buffer.withUnsafeBytes { raw -> (UInt32, Int) in
                    let e = raw.loadUnaligned(fromByteOffset: offset, as: inotify_event.self)
                    return (e.mask, Int(e.len))
                }
                let nameStart = offset + MemoryLayout<inotify_event>.size
                if mask & UInt32(IN_Q_OVERFLOW) != 0 {
                    lastScan = -1  // events were dropped: rescan at the next call
                } else if length > 0 {
                    let name = String(decoding: buffer[nameStart..<(nameStart + length)].prefix { $0 != 0 }, as: UTF8.self)
                    consider(name, into: &found)
                }
                offset = nameStart + length
            }
        }
    }

    func closeWatch() {
        if inotify >= 0 { close(inotify) }
    }
}

/// Monotonic seconds.
enum StackClock {
    static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
    }
}

/// A stacking failure that stops the run (bad frames do not: they are recorded).
public struct StackError: Error, CustomStringConvertible, Equatable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
