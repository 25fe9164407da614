#if canImport(Glibc)
import Glibc
#endif

/// nexusformat's lock file, so that nxlua and NeXpy never write one file at once:
/// `<file>.lock` (or, with a lock directory, the absolute path flattened with "!!"),
/// created with O_CREAT|O_EXCL and holding `pid@host`; a lock older than the expiry is
/// stale and removed. nxlua takes it for the writable modes and holds it until close.
public final class NXLock {
    public struct Config: Sendable, Equatable {
        /// Seconds to wait for another holder (0: fail at once if locked).
        public var timeout: Double
        /// Seconds after which a lock is stale (nexusformat: 8 hours); 0: never.
        public var expiry: Double
        /// Where lock files go (nil: next to the data file).
        public var directory: String?
        public init(timeout: Double = 10, expiry: Double = 28800, directory: String? = nil) {
            self.timeout = timeout
            self.expiry = expiry
            self.directory = directory
        }
    }

    public let lockPath: String
    private var fd: Int32

    private init(lockPath: String, fd: Int32) {
        self.lockPath = lockPath
        self.fd = fd
    }

    /// The lock file nexusformat uses for `path`.
    public static func lockPath(for path: String, directory: String?) -> String {
        let absolute = resolved(path)
        guard let directory else { return absolute + ".lock" }
        let parts = absolute.split(separator: "/").map(String.init)
        return (directory.hasSuffix("/") ? directory : directory + "/") + parts.joined(separator: "!!") + ".lock"
    }

    /// The absolute path with symbolic links resolved (the file itself may not exist yet).
    static func resolved(_ path: String) -> String {
        let slash = path.lastIndex(of: "/")
        let dir = slash.map { path[..<$0].isEmpty ? "/" : String(path[..<$0]) } ?? "."
        let base = slash.map { String(path[path.index(after: $0)...]) } ?? path
        guard let real = realpath(dir, nil) else { return path }
        defer { free(real) }
        let d = String(cString: real)
        return (d == "/" ? "" : d) + "/" + base
    }

    static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
    }

    static func contents(_ path: String) -> String {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { return "?" }
        defer { close(fd) }
        var buf = [UInt8](repeating: 0, count: 512)
        let n = read(fd, &buf, buf.count)
        return n > 0 ? String(decoding: buf[..<n], as: UTF8.self) : "?"
    }

    public static func acquire(for path: String, config: Config) throws -> NXLock {
        let lockPath = lockPath(for: path, directory: config.directory)
        let deadline = now() + config.timeout
        var checkedExpiry = false
        while true {
            let fd = open(lockPath, O_CREAT | O_EXCL | O_RDWR, 0o777)
            if fd >= 0 {
                var host = [CChar](repeating: 0, count: 256)
                gethostname(&host, host.count - 1)
                let text = "\(getpid())@\(String(nulTerminated: host))"
                _ = text.withCString { write(fd, $0, strlen($0)) }
                fchmod(fd, 0o777)
                return NXLock(lockPath: lockPath, fd: fd)
            }
            let err = errno
            guard err == EEXIST else {
                throw NeXusError("\(path): cannot create the lock file \(lockPath) (\(String(cString: strerror(err))))")
            }
            if !checkedExpiry && config.expiry > 0 {
                checkedExpiry = true
                var st = stat()
                if stat(lockPath, &st) == 0, now() - Double(st.st_mtim.tv_sec) > config.expiry {
                    unlink(lockPath)  // stale: its holder died long ago
                    continue
                }
            }
            if now() >= deadline {
                let holder = contents(lockPath)
                throw NeXusError("\(path): the file is locked by \(holder) (lock file \(lockPath)); waited \(config.timeout) s")
            }
            usleep(100_000)
        }
    }

    public func release() {
        guard fd >= 0 else { return }
        close(fd)
        unlink(lockPath)
        fd = -1
    }

    deinit { release() }
}
