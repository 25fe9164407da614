import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The page cache of frame files already decoded, handed back to the kernel: a stack
/// reads each file once, and 100 Pilatus 2M frames a second would otherwise fill the page
/// cache with 240 MB/s of files nobody reads again, crowding out the stack's newest frames
/// that live readers want (and, on a VM whose free memory goes back to the host, making
/// the detector's next writes touch fresh memory). A file the detector has just written is
/// still dirty, and POSIX_FADV_DONTNEED only starts its write-back; so each file is
/// released when read and again `delay` files later, when its pages are clean.
final class SourcePages: Sendable {
    let delay = 64
    private struct Ring {
        var paths: [String] = []
        var next = 0
    }
    private let ring = Mutex(Ring())

    /// A frame file read: released now, and the one read `delay` files ago again.
    func read(_ path: String) {
        SourcePages.release(path)
        let older: String? = ring.withLock { r in
            guard r.paths.count == delay else {
                r.paths.append(path)
                return nil
            }
            defer { r.paths[r.next] = path; r.next = (r.next + 1) % delay }
            return r.paths[r.next]
        }
        if let older { SourcePages.release(older) }
    }

    /// At the end of a run: the files read last, released again (what is still dirty then
    /// stays until the kernel needs the memory).
    func finish() {
        let last = ring.withLock { r in
            defer { r = Ring() }
            return r.paths
        }
        for path in last { SourcePages.release(path) }
    }

    static func release(_ path: String) {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return }
        _ = posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED)
        close(fd)
    }
}
