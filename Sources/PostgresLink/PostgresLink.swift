import Foundation
import Logging
import NDArray
import NIOCore
import PostgresNIO

/// What the catalog and the event journal share to reach PostgreSQL: the postgres:// URL,
/// connecting with errors that name the URL (never its password), and running async
/// queries from synchronous code with a way out for Ctrl-C.
public struct PostgresURL: Sendable {
    public var user = "postgres"
    public var password: String?
    public var host = "127.0.0.1"
    public var port = 5432
    public var database = "postgres"
    /// false: this link's commits return before the server has flushed them to disk
    /// (synchronous_commit=off: a commit survives this process being killed, not a crash
    /// of the server's machine). For bookkeeping that can be rebuilt, such as SQLite's
    /// synchronous=NORMAL.
    public var synchronousCommit = true

    public static func isPostgres(_ location: String) -> Bool {
        location.hasPrefix("postgres://") || location.hasPrefix("postgresql://")
    }

    /// postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE (user default postgres, database
    /// default the user's name, host default 127.0.0.1, port default 5432).
    public init(_ url: String) throws {
        guard PostgresURL.isPostgres(url), let schemeEnd = url.firstRange(of: "://") else {
            throw PostgresLinkError("\(PostgresURL.redacted(url)): not a postgres:// URL")
        }
        var rest = String(url[schemeEnd.upperBound...])
        if let q = rest.firstIndex(of: "?") { rest = String(rest[..<q]) }
        if let at = rest.lastIndex(of: "@") {
            let credentials = String(rest[..<at])
            rest = String(rest[rest.index(after: at)...])
            if let colon = credentials.firstIndex(of: ":") {
                user = String(credentials[..<colon]).removingPercentEncoding ?? String(credentials[..<colon])
                let p = String(credentials[credentials.index(after: colon)...])
                password = p.removingPercentEncoding ?? p
            } else {
                user = credentials.removingPercentEncoding ?? credentials
            }
        }
        var hostPort = rest
        database = user
        if let slash = rest.firstIndex(of: "/") {
            hostPort = String(rest[..<slash])
            let db = String(rest[rest.index(after: slash)...])
            if !db.isEmpty { database = db.removingPercentEncoding ?? db }
        }
        if let colon = hostPort.lastIndex(of: ":") {
            let digits = hostPort[hostPort.index(after: colon)...]
            guard let p = Int(digits), (1...65535).contains(p) else {
                throw PostgresLinkError("\(PostgresURL.redacted(url)): '\(digits)' is not a port number")
            }
            host = String(hostPort[..<colon])
            port = p
        } else {
            host = hostPort
        }
        if host.isEmpty { host = "127.0.0.1" }
        if user.isEmpty { throw PostgresLinkError("\(PostgresURL.redacted(url)): no user name") }
    }

    /// The URL for messages: no password.
    public var location: String { "postgres://\(user)@\(host):\(port)/\(database)" }

    /// A URL as given, with its password (if any) replaced by ***.
    public static func redacted(_ url: String) -> String {
        guard let schemeEnd = url.firstRange(of: "://"), let at = url[schemeEnd.upperBound...].lastIndex(of: "@") else { return url }
        let credentials = url[schemeEnd.upperBound..<at]
        guard let colon = credentials.firstIndex(of: ":") else { return url }
        return String(url[..<colon]) + ":***" + String(url[at...])
    }

    var configuration: PostgresConnection.Configuration {
        var c = PostgresConnection.Configuration(host: host, port: port, username: user, password: password, database: database,
                                                 tls: .disable)
        if !synchronousCommit { c.options.additionalStartupParameters.append(("synchronous_commit", "off")) }
        return c
    }
}

public struct PostgresLinkError: Error, CustomStringConvertible, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

public enum PostgresLink {
    /// A quiet logger (postgres-nio logs at trace level otherwise).
    public static let logger: Logger = {
        var log = Logger(label: "nxlua.postgres")
        log.logLevel = .critical
        return log
    }()

    /// Opens a connection; a refused connection, an unknown host, a wrong password or a
    /// missing database become an error naming the URL without its password.
    public static func connect(_ url: PostgresURL, id: Int = 1, cancelled: @escaping () -> Bool = { false }) throws -> PostgresConnection {
        let config = url.configuration
        // a connection made after the wait was given up is closed, never dropped open
        final class Outcome: @unchecked Sendable {
            let lock = NSLock()
            var abandoned = false
            var connection: PostgresConnection?
        }
        let outcome = Outcome()
        do {
            return try blocking(cancelled: cancelled) {
                let c = try await PostgresConnection.connect(configuration: config, id: id, logger: PostgresLink.logger)
                let keep = outcome.lock.withLock {
                    if !outcome.abandoned { outcome.connection = c }
                    return !outcome.abandoned
                }
                if !keep {
                    try? await c.close()
                    throw CancellationError()
                }
                return c
            }
        } catch {
            outcome.lock.lock()
            outcome.abandoned = true
            let made = outcome.connection
            outcome.lock.unlock()
            if let made { _ = try? blocking { try await made.close() } }
            throw PostgresLinkError("\(url.location): cannot connect: \(describe(error))")
        }
    }

    final class Box<T>: @unchecked Sendable {
        var value: Result<T, Error>?
        let lock = NSLock()
    }

    /// Runs async work from synchronous code (never on a connection's own event loop:
    /// callers are the CLI, Lua, worker threads and thread pools). `cancelled` and the
    /// thread's stop check (Ctrl-C at the REPL) are polled every 20 ms: when either says
    /// so, the wait ends with "interrupted" (the caller closes the connection, which ends
    /// the query).
    public static func blocking<T>(cancelled: @escaping () -> Bool = { false }, _ body: @escaping @Sendable () async throws -> T) throws -> T {
        let box = Box<T>()
        let done = DispatchSemaphore(value: 0)
        let task = Task {
            let r: Result<T, Error>
            do { r = .success(try await body()) } catch { r = .failure(error) }
            box.lock.withLock { box.value = r }
            done.signal()
        }
        while done.wait(timeout: .now() + .milliseconds(20)) == .timedOut {
            if cancelled() || Interruption.isRequested {
                task.cancel()
                throw PostgresLinkError("interrupted")
            }
        }
        box.lock.lock(); defer { box.lock.unlock() }
        return try box.value!.get()
    }

    /// The server's message when there is one (wrong password, missing table...).
    public static func describe(_ error: Error) -> String {
        if let e = error as? PSQLError {
            if let m = e.serverInfo?[.message] { return m }
            if let u = e.underlying { return "\(u)" }
            return "\(e.code)"
        }
        if let e = error as? PostgresLinkError { return e.message }
        return "\(error)"
    }
}

/// A few connections shared by threads: each call borrows one (waiting while all are in
/// use), runs on it and gives it back; a connection that failed is closed and replaced
/// on the next call, so a restarted server is reconnected to.
public final class PostgresPool: @unchecked Sendable {
    public let url: PostgresURL
    let size: Int
    private let condition = NSCondition()
    private var idle: [PostgresConnection] = []
    private var open = 0
    private var closed = false
    private var nextID = 1
    /// Polled while waiting for the server (Ctrl-C, a runner stopping).
    public var cancelled: @Sendable () -> Bool = { false }

    public init(url: PostgresURL, size: Int = 4) throws {
        self.url = url
        self.size = max(1, size)
        // the first connection now: a bad URL, refused connection or wrong password fails here
        let c = try PostgresLink.connect(url, id: 0)
        idle.append(c)
        open = 1
    }

    private func borrow() throws -> PostgresConnection {
        condition.lock()
        while true {
            if closed { condition.unlock(); throw PostgresLinkError("\(url.location): closed") }
            if let c = idle.popLast() {
                condition.unlock()
                if c.isClosed { giveBack(nil); return try borrow() }
                return c
            }
            if open < size {
                open += 1
                nextID += 1
                let id = nextID
                condition.unlock()
                do { return try PostgresLink.connect(url, id: id, cancelled: cancelled) } catch {
                    giveBack(nil)
                    throw error
                }
            }
            condition.wait()
        }
    }

    /// nil: the connection is gone (closed, or dropped after an error).
    private func giveBack(_ c: PostgresConnection?) {
        condition.lock()
        if let c, !closed { idle.append(c) } else { open -= 1 }
        condition.signal()
        condition.unlock()
        if let c, closed { _ = try? PostgresLink.blocking { try await c.close() } }
    }

    /// Runs `body` on a borrowed connection. A server error (a constraint, a failed
    /// statement) keeps the connection; anything else (a broken link, Ctrl-C) drops it.
    public func run<T>(_ body: @escaping @Sendable (PostgresConnection) async throws -> T) throws -> T {
        let c = try borrow()
        do {
            let r = try PostgresLink.blocking(cancelled: cancelled) { try await body(c) }
            giveBack(c)
            return r
        } catch {
            if let e = error as? PSQLError, e.code == .server, !c.isClosed {
                // a failed transaction is rolled back before the connection is reused
                _ = try? PostgresLink.blocking { try await c.query("ROLLBACK", logger: PostgresLink.logger) }
                giveBack(c)
            } else {
                _ = try? PostgresLink.blocking { try await c.close() }
                giveBack(nil)
            }
            throw error
        }
    }

    /// A connection of its own for LISTEN (not from the pool).
    public func dedicatedConnection() throws -> PostgresConnection {
        try PostgresLink.connect(url, id: 1000, cancelled: cancelled)
    }

    public func close() {
        condition.lock()
        if closed { condition.unlock(); return }
        closed = true
        let cs = idle
        idle.removeAll()
        open -= cs.count
        condition.broadcast()
        condition.unlock()
        for c in cs { _ = try? PostgresLink.blocking { try await c.close() } }
    }

    deinit { close() }
}
