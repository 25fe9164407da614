#if canImport(Glibc)
import Glibc
#endif

/// Files named in events are absolute: the macros that read them run in other folders,
/// often in other processes started elsewhere (a relative `scan43.nxs` meant nothing to
/// a runner started in another folder, and its outputs landed beside the runner).
public enum EventPaths {
    /// `path` resolved against the current folder, with "." and ".." parts removed
    /// (symbolic links are kept: the name the user gave stays recognisable).
    public static func absolute(_ path: String) -> String {
        var parts: [Substring] = []
        let full = path.hasPrefix("/") ? path : currentDirectory() + "/" + path
        for part in full.split(separator: "/", omittingEmptySubsequences: true) {
            if part == "." { continue }
            if part == ".." { if !parts.isEmpty { parts.removeLast() }; continue }
            parts.append(part)
        }
        return "/" + parts.joined(separator: "/")
    }

    static func currentDirectory() -> String {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        guard getcwd(&buffer, buffer.count) != nil else { return "/" }
        return String(cString: buffer)
    }

    /// The `file` of an event payload made absolute; a path that is not a string is left
    /// for the consumer to refuse.
    public static func resolvingFile(_ payload: [String: EventValue]) -> [String: EventValue] {
        guard case .string(let f)? = payload["file"], !f.isEmpty else { return payload }
        var p = payload
        p["file"] = .string(absolute(f))
        return p
    }
}
