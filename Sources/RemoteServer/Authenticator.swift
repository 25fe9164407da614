import Logging
import NIOConcurrencyHelpers
import NIOPosix
#if canImport(Glibc)
import Glibc
#endif

/// HTTP Basic against the users file (bcrypt). A verified Authorization header is
/// remembered for a while (bcrypt costs ~0.2 s by design; clients send the header with
/// every request); the file is re-read when it changes, which forgets them all. Requests
/// that arrive with the same new header while it is being checked wait for that one
/// check: a client opening its connections in parallel (h5pyd, a viewer) cost one bcrypt
/// per connection, ~1.5 CPU-seconds at the start of the live scenario.
final class Authenticator: Sendable {
    let usersFile: String?
    let allowAnonymous: Bool
    let logger: Logger?
    private let state = NIOLockedValueBox(State())
    static let rememberSeconds = 600
    static let rememberMax = 4096

    struct State {
        var users = UsersFile()
        var stamp: Store.Stamp? = nil
        var verified: [String: (user: String, until: Int)] = [:]
        /// Checks under way, by header.
        var checking: [String: Task<Bool, Error>] = [:]
    }

    init(usersFile: String?, allowAnonymous: Bool, logger: Logger? = nil) {
        self.usersFile = usersFile
        self.allowAnonymous = allowAnonymous
        self.logger = logger
    }

    /// The user a request acts as (nil: anonymous, when allowed); throws 401 for missing
    /// or bad credentials.
    func authenticate(_ header: String?, pool: NIOThreadPool) async throws -> String? {
        guard let header, !header.isEmpty else {
            if allowAnonymous { return nil }
            throw ServeError(401, "authentication required (HTTP Basic: a user of the server's users file)")
        }
        guard let (name, password) = Authenticator.parseBasic(header) else {
            throw ServeError(401, "malformed Authorization header (HTTP Basic expected)")
        }
        let users = try currentUsers()
        let now = Int(time(nil))
        let logger = self.logger
        let check: Task<Bool, Error>? = state.withLockedValue { s in
            if let hit = s.verified[header], hit.until > now { return nil }
            if let under = s.checking[header] { return under }
            let t = Task {
                logger?.debug("checking a password (bcrypt)", metadata: ["user": "\(name)"])
                return try await pool.runIfActive { users.verify(name: name, password: password) }
            }
            s.checking[header] = t
            return t
        }
        guard let check else { return name }   // remembered: the header holds this name
        let ok: Bool
        do { ok = try await check.value } catch {
            state.withLockedValue { if $0.checking[header] == check { $0.checking[header] = nil } }
            throw error
        }
        state.withLockedValue {
            // not if the users file changed meanwhile (which forgot the check): a later
            // request checks against the new file
            guard $0.checking[header] == check else { return }
            $0.checking[header] = nil
            guard ok else { return }
            if $0.verified.count >= Authenticator.rememberMax { $0.verified.removeAll() }
            $0.verified[header] = (name, now + Authenticator.rememberSeconds)
        }
        guard ok else { throw ServeError(401, "bad user name or password") }
        return name
    }

    /// A name and password from the viewer's login form, checked as a Basic header is.
    func verify(name: String, password: String, pool: NIOThreadPool) async throws -> Bool {
        let users = try currentUsers()
        return try await pool.runIfActive { users.verify(name: name, password: password) }
    }

    /// What a request's user may read. Anonymous requests (--allow-anonymous) read
    /// everything unless the users file limits someone to folders: then nothing, so
    /// going anonymous never reads more than a limited user.
    func access(for user: String?) throws -> FolderAccess {
        let users = try currentUsers()
        guard let user else { return users.limitsFolders ? .nothing : .everything }
        return users.access(of: user)
    }

    /// Whether `name` is (still) a user of the users file.
    func knows(_ name: String) throws -> Bool { try currentUsers().hash(of: name) != nil }

    private func currentUsers() throws -> UsersFile {
        guard let usersFile else { return UsersFile() }
        let stamp = Store.stamp(usersFile)
        if let cached = state.withLockedValue({ $0.stamp == stamp && stamp != nil ? $0.users : nil }) { return cached }
        let users: UsersFile
        do { users = try UsersFile.load(usersFile) } catch {
            throw ServeError(500, "the users file cannot be read: \(error)")
        }
        state.withLockedValue {
            // requests that loaded the same file at once: the first one's state stands
            // (clearing again would drop a check under way and start a second one)
            guard $0.stamp != stamp || stamp == nil else { return }
            $0.users = users
            $0.stamp = stamp
            $0.verified.removeAll()
            $0.checking.removeAll()
        }
        return users
    }

    /// "Basic base64(name:password)" -> (name, password).
    static func parseBasic(_ header: String) -> (String, String)? {
        let parts = header.split(separator: " ", maxSplits: 1)
        guard parts.count == 2, parts[0].lowercased() == "basic", let raw = base64Decode(String(parts[1]).trimmingCharacters()),
              let text = String(validating: raw, as: UTF8.self), let colon = text.firstIndex(of: ":") else { return nil }
        return (String(text[..<colon]), String(text[text.index(after: colon)...]))
    }

    static func base64Decode(_ s: String) -> [UInt8]? {
        var table = [Int16](repeating: -1, count: 256)
        for (i, c) in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8.enumerated() { table[Int(c)] = Int16(i) }
        var out: [UInt8] = []
        var acc: UInt32 = 0, bits = 0, padding = 0
        for c in s.utf8 {
            if c == UInt8(ascii: "=") { padding += 1; continue }
            guard padding == 0 else { return nil }
            let v = table[Int(c)]
            guard v >= 0 else { return nil }
            acc = (acc << 6) | UInt32(v)
            bits += 6
            if bits >= 8 {
                bits -= 8
                out.append(UInt8((acc >> UInt32(bits)) & 0xFF))
            }
        }
        guard padding <= 2 else { return nil }
        return out
    }
}

extension String {
    func trimmingCharacters() -> String {
        var s = Substring(self)
        while s.first == " " { s = s.dropFirst() }
        while s.last == " " { s = s.dropLast() }
        return String(s)
    }
}
