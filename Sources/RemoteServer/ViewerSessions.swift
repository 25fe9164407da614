import NIOConcurrencyHelpers
#if canImport(Glibc)
import Glibc
#endif

/// The web viewer's logins: a random token in an HttpOnly, SameSite=Strict cookie stands
/// for a user who typed a password of the users file once. The cookie carries no password
/// and nothing derived from it; a session ends at logout, after `lifetime`, or when its
/// user leaves the users file.
final class ViewerSessions: Sendable {
    static let cookieName = "nxlua_session"
    /// Eight hours: a beamtime shift.
    static let lifetime = 8 * 3600
    static let maxSessions = 10_000
    /// Failed logins allowed per minute before the server answers 429 for the rest of it
    /// (bcrypt makes each guess cost ~0.2 s already; this bounds the CPU an attacker gets).
    static let maxFailuresPerMinute = 20

    private struct State {
        var sessions: [String: (user: String?, until: Int)] = [:]
        var failures = 0
        var failureMinute = 0
    }
    private let state = NIOLockedValueBox(State())

    static func now() -> Int { Int(time(nil)) }

    /// A new session for `user` (nil: anonymous, with --allow-anonymous); its token.
    func open(user: String?) -> String {
        var rng = SystemRandomNumberGenerator()  // getrandom(2): unpredictable
        var token = ""
        for _ in 0..<4 {
            let v = rng.next() as UInt64
            let hex = String(v, radix: 16)
            token += String(repeating: "0", count: 16 - hex.count) + hex
        }
        let now = ViewerSessions.now()
        state.withLockedValue { s in
            if s.sessions.count >= ViewerSessions.maxSessions {
                s.sessions = s.sessions.filter { $0.value.until > now }
                if s.sessions.count >= ViewerSessions.maxSessions { s.sessions.removeAll() }
            }
            s.sessions[token] = (user, now + ViewerSessions.lifetime)
        }
        return token
    }

    /// The session of a token, nil when unknown or expired.
    func lookup(_ token: String) -> (user: String?, until: Int)? {
        let now = ViewerSessions.now()
        return state.withLockedValue { s in
            guard let hit = s.sessions[token] else { return nil }
            if hit.until <= now { s.sessions[token] = nil; return nil }
            return hit
        }
    }

    func close(_ token: String) { state.withLockedValue { _ = $0.sessions.removeValue(forKey: token) } }

    /// Counts a failed login; false when this minute's allowance is used up.
    func allowAttempt() -> Bool {
        let minute = ViewerSessions.now() / 60
        return state.withLockedValue { s in
            if s.failureMinute != minute { s.failureMinute = minute; s.failures = 0 }
            return s.failures < ViewerSessions.maxFailuresPerMinute
        }
    }

    func recordFailure() {
        let minute = ViewerSessions.now() / 60
        state.withLockedValue { s in
            if s.failureMinute != minute { s.failureMinute = minute; s.failures = 0 }
            s.failures += 1
        }
    }

    /// The value of cookie `name` in a Cookie header ("a=1; nxlua_session=...").
    static func cookie(_ name: String, in header: String?) -> String? {
        guard let header else { return nil }
        for part in header.split(separator: ";") {
            let kv = part.split(separator: "=", maxSplits: 1)
            guard kv.count == 2 else { continue }
            if String(kv[0]).trimmingCharacters() == name { return String(kv[1]).trimmingCharacters() }
        }
        return nil
    }
}
