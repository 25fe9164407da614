import CHDF5
import CHDF5Shims
#if canImport(Glibc)
import Glibc
#endif

/// An open NeXus file: its mode, its HDF5 handle, the long-lived handles of its objects
/// (closed before the file, so no object ever holds a stale id) and its lock.
public final class NXFile: @unchecked Sendable {
    public enum Mode: String, Sendable, CaseIterable {
        case read = "r", readWrite = "rw", write = "w", create = "w-", append = "a"
        public var isWritable: Bool { self != .read }
    }

    public struct Options: Sendable {
        /// Reader: open for SWMR reading (see a dataset grow with refresh()).
        public var swmr = false
        /// Values of at most this many elements are read when a field is first reached.
        public var eagerLimit = 1000
        /// Writer: create the file in the format SWMR needs, or (modes "rw" and "a" on an
        /// existing file) reopen it for SWMR writing at once, first clearing the flags a
        /// writer killed mid-run leaves behind (what `h5clear -s` does). New objects must
        /// all be made before `startSWMRWrite()`; a reopened file is already SWMR.
        public var swmrWrite = false
        /// nexusformat-compatible lock: nil = off, else how long to wait for it (seconds).
        public var lock: NXLock.Config? = nil
        /// External links are followed only to files under this folder (a real path);
        /// nil: wherever they lead. A catalog harvesting a served folder must not read,
        /// and show, files outside it (an Eiger master's data files sit next to it).
        public var externalLinksWithin: String? = nil
        public init() {}
    }

    /// The path as the user gave it (messages name it); moved by rename(to:).
    public private(set) var path: String
    public let mode: Mode
    public let options: Options
    /// Reading as a SWMR reader: asked for, or chosen because a SWMR writer has the file
    /// (see openHandle); refresh() then re-reads shapes with H5Drefresh.
    public let isSWMRReading: Bool
    /// What reopening for SWMR writing repaired, in words (a writer killed mid-flush, a
    /// write that failed on a full disk); nil when the file was whole.
    public let repair: String?
    /// When that repair extended a short file: its length before. Bytes from there on
    /// are zeros, so whatever the file says lies there was lost (see StackFile.resume).
    public let lengthBeforeRepair: UInt64?
    let handle: H5Handle
    private var objectHandles: [WeakHandle] = []
    private var compactAt = 64
    private var lock: NXLock?
    public private(set) var isSWMRWriting = false

    struct WeakHandle { weak var handle: H5Handle? }

    public var isOpen: Bool { handle.isOpen }

    /// Opens or creates `path` (modes as nexusformat's nxload).
    public init(path: String, mode: Mode = .read, options: Options = Options()) throws {
        let h = try H5.load()
        self.path = path
        self.mode = mode
        self.options = options
        var lock: NXLock? = nil
        if mode.isWritable, let config = options.lock {
            lock = try NXLock.acquire(for: path, config: config)
        }
        do {
            let opened = try NXFile.openHandle(h, path, mode, options)
            (handle, repair, lengthBeforeRepair) = (opened.handle, opened.repair?.text, opened.repair?.shortLength)
            // A file in the format before SWMR's (superblock below version 3) has no
            // writer to follow: HDF5 opens it for SWMR reading, but H5Drefresh fails on
            // its version-1 B-tree chunk indexes ("ref-counted page nil").
            var info = H5F_info2_t()
            isSWMRReading = opened.swmrReading && h.pointee.H5Fget_info2(opened.handle.id, &info) >= 0 && info.super.version >= 3
        } catch {
            lock?.release()
            throw error
        }
        self.lock = lock
        var intent: UInt32 = 0
        if options.swmrWrite && h.pointee.H5Fget_intent(handle.id, &intent) >= 0 && intent & H5.accSWMRWrite != 0 {
            isSWMRWriting = true  // reopened for SWMR writing
        }
    }

    private struct Opened {
        let handle: H5Handle
        var swmrReading = false
        var repair: Repair? = nil
    }

    private struct Repair {
        let text: String
        var shortLength: UInt64? = nil
    }

    private static func openHandle(_ h: UnsafePointer<nxh5_api>, _ path: String, _ mode: Mode,
                                   _ options: Options) throws -> Opened {
        let fapl = try H5Handle(checking: h.pointee.H5Pcreate(h.pointee.P_FILE_ACCESS), .plist, "\(path): cannot open")
        // Closing the file closes everything still open in it.
        _ = h.pointee.H5Pset_fclose_degree(fapl.id, H5F_CLOSE_STRONG)
        if options.swmr || options.swmrWrite { _ = h.pointee.H5Pset_libver_bounds(fapl.id, H5F_LIBVER_V110, H5F_LIBVER_V110) }
        let exists = access(path, F_OK) == 0
        func openExisting(_ flags: UInt32) throws -> H5Handle {
            guard exists else { throw NeXusError("\(path): no such file") }
            guard access(path, mode.isWritable ? (R_OK | W_OK) : R_OK) == 0 else {
                throw NeXusError("\(path): permission denied (\(mode.isWritable ? "read and write" : "read") access needed)")
            }
            var st = stat()
            if stat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR { throw NeXusError("\(path): is a folder, not a file") }
            if h.pointee.H5Fis_hdf5(path) <= 0 {
                _ = H5.takeError()
                let size = st.st_size
                throw NeXusError(size == 0 ? "\(path): empty file, not an HDF5/NeXus file"
                                           : "\(path): not an HDF5/NeXus file (no HDF5 signature found)")
            }
            let id = h.pointee.H5Fopen(path, flags, fapl.id)
            if id < 0 {
                let why = H5.takeError()
                if why.contains("unable to lock file") {
                    throw NeXusError("\(path): another process has the file open (HDF5's file lock refused \(mode.isWritable ? "a writer" : "this reader"); HDF5 allows one writer, which must open the file before any SWMR reader)")
                }
                if why.contains("already open for write") {
                    throw NeXusError("\(path): the file is marked as open for writing: another program is writing it, or a writer was killed (a killed `nxlua stack` resumes when rerun; `h5clear -s` clears the mark)")
                }
                throw NeXusError("\(path): cannot open the file (\(why.isEmpty ? "HDF5 refused it" : why); truncated or damaged?)")
            }
            return H5Handle(id, .file)
        }
        func create(_ flags: UInt32) throws -> H5Handle {
            let fcpl = try H5Handle(checking: h.pointee.H5Pcreate(h.pointee.P_FILE_CREATE), .plist, "\(path): cannot create")
            // Children keep the order they were written in, as NeXpy shows them.
            _ = h.pointee.H5Pset_link_creation_order(fcpl.id, 0x1 | 0x2)
            let id = h.pointee.H5Fcreate(path, flags, fcpl.id, fapl.id)
            if id < 0 {
                let why = H5.takeError()
                if flags == H5.accEXCL && exists { throw NeXusError("\(path): file exists (mode 'w-' never overwrites)") }
                throw NeXusError("\(path): cannot create the file (\(why.isEmpty ? String(cString: strerror(errno)) : why))")
            }
            return H5Handle(id, .file)
        }
        // SWMR readers take no file lock: a stacker restarted after a crash must reopen its
        // stack for writing while viewers, nxlua serve and macros keep reading (HDF5's
        // shared lock of every reader refused the writer). Who writes is said already by
        // the SWMR mark in the superblock and the stacker's own single-writer lock.
        //
        // Each SWMR reader also has a file of its own (nxh5_isolated_sec2_driver): HDF5
        // would share it, cache and open datasets, with any other open of the same file
        // in this process, whose held datasets then hid the writer's new frames from it.
        func asSWMRReader() {
            _ = h.pointee.H5Pset_file_locking(fapl.id, false, true)
            let driver = nxh5_isolated_sec2_driver()
            if driver >= 0 { _ = h.pointee.H5Pset_driver(fapl.id, driver, nil) }
        }
        switch mode {
        case .read where options.swmr:
            asSWMRReader()
            return Opened(handle: try openExisting(H5.accRDONLY | H5.accSWMRRead), swmrReading: true)
        case .read:
            do {
                return Opened(handle: try openExisting(H5.accRDONLY))
            } catch let e as NeXusError where e.message.contains("marked as open for writing") {
                // A SWMR writer (a stacker, areaDetector) has it, or had it and was killed:
                // SWMR readers may read such a file, plain readers may not, and a user who
                // loads it wants to see it. A plain writer's mark still refuses.
                _ = h.pointee.H5Pset_libver_bounds(fapl.id, H5F_LIBVER_V110, H5F_LIBVER_V110)
                asSWMRReader()
                guard let handle = try? openExisting(H5.accRDONLY | H5.accSWMRRead) else { _ = H5.takeError(); throw e }
                return Opened(handle: handle, swmrReading: true)
            }
        case .readWrite where options.swmrWrite, .append where options.swmrWrite && exists:
            let repair = try repairForSWMRWriting(h, path)
            return Opened(handle: try openExisting(H5.accRDWR | H5.accSWMRWrite), repair: repair)
        case .readWrite: return Opened(handle: try openExisting(H5.accRDWR))
        case .write: return Opened(handle: try create(H5.accTRUNC))
        case .create: return Opened(handle: try create(H5.accEXCL))
        case .append: return Opened(handle: exists ? try openExisting(H5.accRDWR) : try create(H5.accEXCL))
        }
    }

    /// Repairs what a SWMR writer that stopped abruptly leaves, as `h5clear -s
    /// --increment=0` does, before the file is opened for SWMR writing again:
    /// - a killed writer leaves the superblock marked as open for writing, and HDF5
    ///   refuses the file until the mark is cleared ("clear_status_flags");
    /// - a kill during a flush can leave the chunk index and other metadata of that flush
    ///   on disk with the superblock of the flush before, whose end-of-allocation address
    ///   (EOA) lies before space the metadata uses: HDF5 would allocate new chunks over
    ///   stored ones. The EOA moves to the end of the file (H5Fincrement_filesize sets it
    ///   to max(EOA, EOF)); at most the unreferenced tail of the killed run is wasted;
    /// - writes that failed (a full disk) can leave the EOA past the end of the file,
    ///   which HDF5 refuses as truncated ("skip_eof_check" lets it open). What lay there
    ///   never got written, so nothing flushed refers to it; the file grows back to the
    ///   EOA with zeros when it closes.
    /// Returns what was repaired, in words, or nil.
    private static func repairForSWMRWriting(_ h: UnsafePointer<nxh5_api>, _ path: String) throws -> Repair? {
        var st = stat()
        guard access(path, R_OK | W_OK) == 0, stat(path, &st) == 0 else { return nil }  // openExisting says why
        let fapl = try H5Handle(checking: h.pointee.H5Pcreate(h.pointee.P_FILE_ACCESS), .plist, "\(path): cannot open")
        _ = h.pointee.H5Pset_libver_bounds(fapl.id, H5F_LIBVER_V110, H5F_LIBVER_V110)
        var yes = true
        try H5.check(h.pointee.H5Pset(fapl.id, "clear_status_flags", &yes), "\(path): cannot ask HDF5 to clear the file's status flags")
        try H5.check(h.pointee.H5Pset(fapl.id, "skip_eof_check", &yes), "\(path): cannot ask HDF5 to open a short file")
        let id = h.pointee.H5Fopen(path, H5.accRDWR, fapl.id)
        if id < 0 { _ = H5.takeError(); return nil }  // not an HDF5 file or damaged: openExisting says so
        let file = H5Handle(id, .file)
        var eoa: haddr_t = 0
        let status = h.pointee.H5Fget_eoa(id, &eoa) < 0 ? -1 : h.pointee.H5Fincrement_filesize(id, 0)
        let why = status < 0 ? H5.takeError() : ""
        // closing writes the superblock, and grows a short file to its allocation
        if let failure = file.close() { throw NeXusError("\(path): cannot repair the file (\(failure))") }
        if status < 0 { throw NeXusError("\(path): cannot move the end-of-allocation address to the end of the file (\(why))") }
        let eof = haddr_t(st.st_size)
        if eof < eoa {
            return Repair(text: "the file ended \(eoa - eof) bytes before HDF5's last allocation (writes failed, e.g. on a full disk); extended with zeros",
                          shortLength: UInt64(eof))
        }
        if eof > eoa {
            return Repair(text: "HDF5's end of allocation lay \(eof - eoa) bytes before the end of the file (a writer stopped during a flush); moved to the end")
        }
        return nil
    }

    /// The root group ("/", class NXroot).
    public var root: NXGroup { node("/") { NXGroup(file: self, path: "/", link: nil) } }

    /// Weak: nodes hold their file, so a strong table would keep every file open forever.
    private struct WeakNode { weak var node: NXNode? }
    private var nodes: [String: WeakNode] = [:]
    private var compactNodesAt = 256

    /// The one node object for a path while anyone holds it, so that caches and open
    /// handles are shared by every way of reaching it.
    func node<T: NXNode>(_ path: String, make: () -> T) -> T {
        if let n = nodes[path]?.node as? T { return n }
        let n = make()
        if nodes.count >= compactNodesAt {
            nodes = nodes.filter { $0.value.node != nil }
            compactNodesAt = max(256, nodes.count * 2)
        }
        nodes[path] = WeakNode(node: n)
        return n
    }

    /// Drops the nodes at and below `path` (after a delete, rename or refresh).
    func forget(under path: String) {
        let prefix = path == "/" ? "/" : path + "/"
        for key in nodes.keys where key == path || key.hasPrefix(prefix) {
            nodes[key]?.node?.forgetHandle()
            nodes[key] = nil
        }
    }

    /// Re-reads what another writer may have changed below `path`: shapes of open fields
    /// (H5Drefresh for SWMR readers) and child lists. Fields of lower rank first: a
    /// stacker flushes a frame before the status that says it is stored, so a status
    /// refreshed before the frames is never ahead of them.
    public func refresh(under path: String) throws {
        try check(path)
        let prefix = path == "/" ? "/" : path + "/"
        var fields: [(rank: Int, field: NXField)] = []
        for (key, w) in nodes where key == path || key.hasPrefix(prefix) {
            guard let n = w.node else { continue }
            if let f = n as? NXField { fields.append(((try? f.shape.count) ?? 0, f)) } else if let g = n as? NXGroup { g.forgetChildren() }
        }
        for (_, f) in fields.sorted(by: { $0.rank < $1.rank }) { try f.refresh() }
    }

    /// Registers a long-lived object handle to be closed before the file.
    func register(_ h: H5Handle) {
        // Compact when the list has doubled since the last compaction (amortised O(1)).
        if objectHandles.count >= compactAt {
            objectHandles.removeAll { $0.handle == nil }
            compactAt = max(64, objectHandles.count * 2)
        }
        objectHandles.append(WeakHandle(handle: h))
    }

    /// Throws unless the file is open (and writable when `write`).
    func check(_ objectPath: String, write: Bool = false) throws {
        guard isOpen else { throw NeXusError("\(path): \(objectPath): the file is closed") }
        if write && !mode.isWritable {
            throw NeXusError("\(path): \(objectPath): the file is open read-only; open it with mode 'rw' to change it")
        }
    }

    /// Writes everything buffered to disk (readers, SWMR ones included, then see it).
    /// `durable` also waits until the kernel has written the file to the disk
    /// (fdatasync): what a flush wrote survives a power cut or an OS crash, and a later
    /// write cannot reach the disk before it. A plain flush survives the process only.
    public func flush(durable: Bool = false) throws {
        try check("/")
        try H5.check(H5.api.pointee.H5Fflush(handle.id, H5F_SCOPE_GLOBAL), "\(path): flush failed")
        guard durable else { return }
        var vfdHandle: UnsafeMutableRawPointer? = nil
        try H5.check(H5.api.pointee.H5Fget_vfd_handle(handle.id, 0, &vfdHandle), "\(path): cannot reach the file descriptor")  // 0: H5P_DEFAULT
        // The default (sec2) driver's handle is the POSIX file descriptor.
        guard let fd = vfdHandle?.assumingMemoryBound(to: Int32.self).pointee else {
            throw NeXusError("\(path): the file driver has no file descriptor to sync")
        }
        while fdatasync(fd) != 0 {
            guard errno == EINTR else { throw NeXusError("\(path): fdatasync failed (\(String(cString: strerror(errno))))") }
        }
    }

    /// Renames the open file on disk (HDF5 keeps its descriptor): a file built under a
    /// temporary name appears under its real one only once complete. Not with a lock (its
    /// lock file is named after the old path).
    public func rename(to newPath: String) throws {
        try check("/")
        guard lock == nil else { throw NeXusError("\(path): a locked file cannot be renamed while open") }
        guard Glibc.rename(path, newPath) == 0 else {
            throw NeXusError("\(newPath): cannot move \(path) here (\(String(cString: strerror(errno))))")
        }
        path = newPath
    }

    /// Starts SWMR writing: from now on readers opened with `swmr` see appended data
    /// after each flush. Objects must all exist already (HDF5's rule).
    public func startSWMRWrite() throws {
        try check("/", write: true)
        try H5.check(H5.api.pointee.H5Fstart_swmr_write(handle.id),
                     "\(path): cannot start SWMR writing (the file must be created with the swmr option, and no new objects may follow)")
        isSWMRWriting = true
    }

    /// Closes every object of the file, then the file, and releases the lock. Objects
    /// reached through it fail with "the file is closed" from then on.
    /// Throws when HDF5 could not write what it still held (a full disk, a lost network
    /// mount): the file on disk may then lack the last changes. The file is closed either
    /// way.
    public func close() throws {
        guard isOpen else { return }
        // H5Fclose with the strong close degree closes every object still open, in one
        // call; the handles only learn they are closed (closing 10,000 one by one took
        // longer than printing their tree).
        for w in objectHandles { w.handle?.invalidate() }
        objectHandles.removeAll()
        nodes.removeAll()
        let failure = handle.close()
        lock?.release()
        lock = nil
        if let failure { throw NeXusError("\(path): closing failed, the last changes may be missing (\(failure))") }
    }

    deinit { try? close() }
}
