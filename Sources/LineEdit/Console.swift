import CEditShims
#if canImport(Glibc)
import Glibc
#endif

/// The C standard streams, shared with Lua's print and io (Swift 6 refuses the libc
/// globals `stdout`/`stderr` as shared mutable state; these read them through the shim).
public enum Console {
    public static var output: UnsafeMutablePointer<FILE> { nxed_stdout() }
    public static var error: UnsafeMutablePointer<FILE> { nxed_stderr() }
    public static var input: UnsafeMutablePointer<FILE> { nxed_stdin() }

    public static func write(_ s: String) { fputs(s, output) }
    public static func writeError(_ s: String) {
        fputs(s, error)
        fflush(error)
    }
    public static func flush() { fflush(output) }
    public static var isInteractive: Bool { isatty(0) != 0 && isatty(1) != 0 }
}
