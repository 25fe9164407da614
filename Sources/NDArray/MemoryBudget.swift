#if canImport(Glibc)
import Glibc
#endif

/// A limit on the array storage live at once, for code that must not exhaust the
/// machine (nxlua serve's sandboxed evaluation): while a budget is current on a thread,
/// every new array storage made on that thread is charged to it and given back when the
/// storage is freed (on any thread); an allocation beyond the limit throws.
public final class ArrayMemoryBudget: @unchecked Sendable {
    public let limit: Int
    private var used = 0
    private var refusedCount = 0
    private var lock = pthread_mutex_t()

    public init(limit: Int) {
        self.limit = limit
        pthread_mutex_init(&lock, nil)
    }

    deinit { pthread_mutex_destroy(&lock) }

    public var inUse: Int {
        pthread_mutex_lock(&lock)
        defer { pthread_mutex_unlock(&lock) }
        return used
    }

    /// Allocations refused so far.
    public var refused: Int {
        pthread_mutex_lock(&lock)
        defer { pthread_mutex_unlock(&lock) }
        return refusedCount
    }

    func charge(_ bytes: Int) throws {
        pthread_mutex_lock(&lock)
        defer { pthread_mutex_unlock(&lock) }
        guard used + bytes <= limit else {
            refusedCount += 1
            throw ArrayError("array memory limit reached: \(bytes) more bytes asked, \(used) of \(limit) in use")
        }
        used += bytes
    }

    func release(_ bytes: Int) {
        pthread_mutex_lock(&lock)
        used -= bytes
        pthread_mutex_unlock(&lock)
    }

    /// Runs `body` with this budget current on the calling thread.
    public func withCurrent<T>(_ body: () throws -> T) rethrows -> T {
        let previous = pthread_getspecific(ArrayMemoryBudget.key)
        pthread_setspecific(ArrayMemoryBudget.key, Unmanaged.passUnretained(self).toOpaque())
        defer { pthread_setspecific(ArrayMemoryBudget.key, previous) }
        return try body()
    }

    /// The calling thread's budget, if any.
    static var current: ArrayMemoryBudget? {
        pthread_getspecific(key).map { Unmanaged<ArrayMemoryBudget>.fromOpaque($0).takeUnretainedValue() }
    }

    private static let key: pthread_key_t = {
        var k = pthread_key_t()
        pthread_key_create(&k, nil)
        return k
    }()
}
