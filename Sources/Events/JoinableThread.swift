import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A thread that can be waited for: `join()` returns once the thread's body has returned,
/// everything the body held has been released on that thread, and the thread has ended.
///
/// Why not Foundation's `Thread`: it cannot be joined, and it keeps its object (with the
/// closure it runs and everything the closure captured) in a thread-specific slot that
/// is released by a pthread key destructor as the thread ends. libdispatch's own key
/// destructor runs before it (its key is made at start-up): it frees the thread's cache
/// of continuations but leaves the pointer to them in its thread-local state. An object
/// whose last reference went with the closure, and whose deinit uses Dispatch (GRDB
/// closing the journal's connections: `DispatchQueue.sync`, queues disposed), made
/// libdispatch hand out those freed continuations again: heap corruption, seen as
/// "malloc(): unaligned fastbin chunk detected" when `nxlua macros` stopped (issue 24).
/// Here the body is released before the thread function returns, before any key
/// destructor, and the owner joins the thread before it lets go of what the body used.
public final class JoinableThread: @unchecked Sendable {
    private let lock = NSLock()
    private var handle: pthread_t?

    /// The body as pthread_create's argument (retained once, released once by the thread).
    private final class Body {
        let name: String
        let run: () -> Void
        init(name: String, run: @escaping () -> Void) { self.name = name; self.run = run }
    }

    /// Starts `body` on a new thread with `stackSize` bytes of stack (0: the default).
    /// `name` is shown by debuggers and `top -H` (cut to 15 bytes, the kernel's limit).
    public init(name: String, stackSize: Int = 0, _ body: @escaping () -> Void) {
        var attr = pthread_attr_t()
        pthread_attr_init(&attr)
        defer { pthread_attr_destroy(&attr) }
        if stackSize > 0 { pthread_attr_setstacksize(&attr, stackSize) }
        let context = Unmanaged.passRetained(Body(name: name, run: body)).toOpaque()
        var thread = pthread_t()
        let status = pthread_create(&thread, &attr, { raw in
            // the body and all it captured are released here, on this thread, before it ends
            let body = Unmanaged<Body>.fromOpaque(raw!).takeRetainedValue()
            // pthread_setname_np is hidden from Swift (_GNU_SOURCE); the kernel's file does the same
            let fd = open("/proc/thread-self/comm", O_WRONLY | O_CLOEXEC)
            if fd >= 0 {
                let short = Array(body.name.utf8.prefix(15))
                _ = short.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
                close(fd)
            }
            body.run()
            return nil
        }, context)
        guard status == 0 else {
            // the thread never started, so it never took its reference: drop it here
            Unmanaged<Body>.fromOpaque(context).release()
            fatalError("cannot start thread \(name): \(String(cString: strerror(status)))")
        }
        handle = thread
    }

    /// Waits until the thread has ended (at once if it was joined before). Call it from
    /// another thread.
    public func join() {
        lock.lock()
        defer { lock.unlock() }
        if let handle { pthread_join(handle, nil) }
        handle = nil
    }

    deinit {
        // never joined: let the thread's resources go when it ends
        if let handle { pthread_detach(handle) }
    }
}
