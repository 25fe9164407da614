#if canImport(Glibc)
import Glibc
#endif

/// A whole file read into memory with read(2) (not mmap: a file truncated while mapped
/// kills the process with SIGBUS, and frames are read while detectors write them).
/// One buffer is kept for the next read, so that a stream of same-size frames does not
/// fault fresh pages in for every file.
final class FileBytes {
    let bytes: UnsafeMutableRawPointer
    let capacity: Int
    private(set) var count = 0

    private init(capacity: Int) {
        self.capacity = capacity
        bytes = UnsafeMutableRawPointer.allocate(byteCount: max(capacity, 1), alignment: 64)
    }
    deinit { bytes.deallocate() }

    var buffer: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: bytes, count: count) }

    nonisolated(unsafe) private static var spare: FileBytes?
    nonisolated(unsafe) private static var lock = pthread_mutex_t()
    private static let lockReady: Bool = { pthread_mutex_init(&lock, nil); return true }()

    /// Reads the file and runs `body` on its bytes.
    static func withContents<R>(of path: String, _ body: (UnsafeRawBufferPointer) throws -> R) throws -> R {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw DetectorError.file(path, "cannot open: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw DetectorError.file(path, "cannot stat: \(String(cString: strerror(errno)))") }
        if (st.st_mode & S_IFMT) == S_IFDIR { throw DetectorError.file(path, "is a directory") }
        let size = Int(st.st_size)
        let file = take(size)
        defer { give(file) }
        var done = 0
        while done < size {
            let n = read(fd, file.bytes + done, size - done)
            if n < 0 {
                if errno == EINTR { continue }
                throw DetectorError.file(path, "read error: \(String(cString: strerror(errno)))")
            }
            if n == 0 { break }  // the file shrank meanwhile: decode what is there
            done += n
        }
        file.count = done
        return try body(file.buffer)
    }

    private static func take(_ size: Int) -> FileBytes {
        _ = lockReady
        pthread_mutex_lock(&lock)
        defer { pthread_mutex_unlock(&lock) }
        if let s = spare, s.capacity >= size, s.capacity <= 2 * size + (1 << 20) {
            spare = nil
            return s
        }
        return FileBytes(capacity: size)
    }

    private static func give(_ file: FileBytes) {
        pthread_mutex_lock(&lock)
        defer { pthread_mutex_unlock(&lock) }
        if file.capacity <= 256 << 20 { spare = file }
    }
}
