#if canImport(Glibc)
import Glibc
#endif

/// A refused domain: `status` 400 (malformed), 403 (leads outside the served folder)
/// or 404 (nothing there).
public struct DomainError: Error, Equatable, CustomStringConvertible {
    public let status: Int
    public let message: String
    public init(_ status: Int, _ message: String) {
        self.status = status
        self.message = message
    }
    public var description: String { message }
}

/// Maps domains (`/folder/file.nxs`) onto the served folder and nothing else: `..`
/// segments are refused outright, and the real path (symlinks resolved) must stay
/// inside the folder's real path.
public struct DomainResolver: Sendable {
    /// The served folder's real path (no trailing slash).
    public let root: String

    public init(root: String) throws {
        guard let real = DomainResolver.realPath(root) else { throw DomainError(404, "\(root): no such folder") }
        var st = stat()
        guard stat(real, &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR else { throw DomainError(400, "\(root): not a folder") }
        self.root = real
    }

    public struct Resolved: Equatable, Sendable {
        /// The domain as clients name it: "/" + the relative path ("/a/b.nxs", "/a/").
        public let domain: String
        /// The real path on disk.
        public let path: String
        public let isFolder: Bool
    }

    /// The normalized domain: leading "/" added, repeated slashes collapsed, "." dropped.
    public static func normalize(_ domain: String) throws -> (parts: [String], trailingSlash: Bool) {
        guard !domain.isEmpty else { throw DomainError(400, "no domain given (?domain=/folder/file.nxs expected)") }
        guard !domain.utf8.contains(0), domain.utf8.count <= 4096 else { throw DomainError(400, "malformed domain") }
        let parts = domain.split(separator: "/").map(String.init).filter { $0 != "." }
        if parts.contains("..") {
            throw DomainError(403, "domain '\(domain)': '..' is not allowed (domains are paths inside the served folder)")
        }
        return (parts, domain.hasSuffix("/"))
    }

    /// Resolves a domain to a file or folder inside the served folder.
    public func resolve(_ domain: String) throws -> Resolved {
        let (parts, trailing) = try DomainResolver.normalize(domain)
        let candidate = parts.isEmpty ? root : root + "/" + parts.joined(separator: "/")
        guard let real = DomainResolver.realPath(candidate) else {
            throw DomainError(404, "domain '\(domain)' not found")
        }
        guard real == root || real.hasPrefix(root + "/") else {
            throw DomainError(403, "domain '\(domain)' leads outside the served folder")
        }
        var st = stat()
        guard stat(real, &st) == 0 else { throw DomainError(404, "domain '\(domain)' not found") }
        let isFolder = (st.st_mode & S_IFMT) == S_IFDIR
        if trailing && !isFolder { throw DomainError(404, "domain '\(domain)' is a file, not a folder") }
        let name = "/" + parts.joined(separator: "/") + (isFolder && !parts.isEmpty ? "/" : "")
        return Resolved(domain: name, path: real, isFolder: isFolder)
    }

    static func realPath(_ path: String) -> String? {
        guard let p = realpath(path, nil) else { return nil }
        defer { free(p) }
        return String(cString: p)
    }
}
