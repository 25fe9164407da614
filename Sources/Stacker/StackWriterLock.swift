#if canImport(Glibc)
import Glibc
#endif

/// One stacker per output file. HDF5 drops its own file lock once SWMR writing starts
/// (so that readers can open), and a resume clears the file's "open for writing" mark;
/// without a lock of its own, a second `nxlua stack` on the same output would write into
/// the file beside the first. This is a Linux open-file-description lock (F_OFD_SETLK)
/// on one byte far past any real data of the file:
/// - HDF5 opening and closing its own descriptors of the file never releases it (a
///   POSIX record lock would go with the first close), and readers never meet it (HDF5's
///   readers use flock, a separate kind of lock on local disks);
/// - the kernel releases it when the process ends, however it ends (kill -9 included).
final class StackWriterLock {
    private let fd: Int32
    private static let offset: off_t = 0x3FFF_FFFF_FFFF_FF00   // a byte no file reaches
    private static let ofdSetLock: Int32 = 37                  // F_OFD_SETLK (Linux 3.15+)

    init(path: String) throws {
        fd = open(path, O_RDWR | O_CLOEXEC)
        guard fd >= 0 else { throw StackError("\(path): cannot open to lock it for writing: \(String(cString: strerror(errno)))") }
        var l = flock()
        l.l_type = Int16(F_WRLCK)
        l.l_whence = Int16(SEEK_SET)
        l.l_start = StackWriterLock.offset
        l.l_len = 1
        l.l_pid = 0
        if fcntl(fd, StackWriterLock.ofdSetLock, &l) != 0 {
            let e = errno
            close(fd)
            if e == EAGAIN || e == EACCES {
                throw StackError("\(path): another nxlua stack is writing this file (one stacker per output; stop it first)")
            }
            throw StackError("\(path): cannot lock the file for writing: \(String(cString: strerror(e)))")
        }
    }

    /// The locked descriptor of the output (for `posix_fadvise`; never closed by others).
    var descriptor: Int32 { fd }

    deinit { close(fd) }
}
