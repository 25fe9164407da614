#if canImport(Glibc)
import Glibc
#endif

/// The names in a folder, read with readdir (the stacker's rescans, `nxlua.listdir`
/// and nxlua serve's folder listings share this one reading of directory entries), and
/// the one reading of small text files (users, mapping and settings files).
public enum FolderListing {
    /// A whole small text file (users, mapping and settings files), nil if it cannot be
    /// read or is larger than `limit` bytes.
    public static func readText(_ path: String, limit: Int = 16 << 20) -> String? {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 { if errno == EINTR { continue }; return nil }
            if n == 0 { break }
            out += buf[0..<n]
            if out.count > limit { return nil }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// The names in `path` except "." and "..", in the order readdir gives them;
    /// the reason (strerror) when the folder cannot be opened.
    public static func names(_ path: String) -> Result<[String], FolderListingError> {
        guard let dir = opendir(path) else { return .failure(FolderListingError(reason: String(cString: strerror(errno)))) }
        defer { closedir(dir) }
        var names: [String] = []
        // The name is read where it lies, up to its NUL: a dirent is only as long as its
        // name (d_reclen), and copying the whole struct (entry.pointee.d_name) read past
        // readdir's buffer for its last entries (AddressSanitizer, a folder of 3600 frames).
        let nameOffset = MemoryLayout<dirent>.offset(of: \dirent.d_name)!
        while let entry = readdir(dir) {
            let name = String(cString: UnsafeRawPointer(entry).advanced(by: nameOffset).assumingMemoryBound(to: CChar.self))
            if name != "." && name != ".." { names.append(name) }
        }
        return .success(names)
    }
}

public struct FolderListingError: Error, Sendable {
    /// The system's words for it ("No such file or directory", "Permission denied").
    public let reason: String
}
