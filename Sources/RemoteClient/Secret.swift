#if canImport(Glibc)
import Glibc
#endif

/// Asking for a password without echoing it.
public enum Secret {
    /// Prompts on the terminal (echo off) and reads one line; nil when stdin is not a
    /// terminal (scripts and pipes must give the password another way).
    public static func prompt(_ text: String) throws -> String? {
        guard isatty(0) != 0 else { return nil }
        var saved = termios()
        guard tcgetattr(0, &saved) == 0 else { return nil }
        var quiet = saved
        quiet.c_lflag &= ~tcflag_t(ECHO)
        say(text)
        guard tcsetattr(0, TCSAFLUSH, &quiet) == 0 else { return nil }
        defer {
            _ = tcsetattr(0, TCSAFLUSH, &saved)
            say("\n")
        }
        var line: [UInt8] = []
        var c: UInt8 = 0
        while read(0, &c, 1) == 1 {
            if c == UInt8(ascii: "\n") || c == UInt8(ascii: "\r") { return String(decoding: line, as: UTF8.self) }
            line.append(c)
        }
        throw RemoteError("no password read (end of input)")
    }

    private static func say(_ text: String) {
        let bytes = Array(text.utf8)
        _ = bytes.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
    }
}
