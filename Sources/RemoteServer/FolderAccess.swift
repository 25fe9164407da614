#if canImport(Glibc)
import Glibc
#endif

/// What one user may read of the served tree: everything, or the files under some folders
/// (the third field of the users file: `alice:HASH:/proposals/1234,/staff`). Every route
/// that takes a domain, the folder listings, the catalog and evaluations ask it, so a file
/// outside a user's folders is not read, listed, counted nor found.
public struct FolderAccess: Sendable, Equatable {
    /// The readable folders as path parts ([["proposals", "1234"], ...]); nil: everything.
    public let folders: [[String]]?

    public static let everything = FolderAccess(folders: nil)
    public static let nothing = FolderAccess(folders: [])

    public init(folders: [[String]]?) { self.folders = folders }

    /// Domain folders ("/proposals/1234") to path parts; "/" alone is the whole tree.
    public init(domains: [String]) {
        let parts = domains.map { $0.split(separator: "/").map(String.init) }
        folders = parts.contains([]) ? nil : parts
    }

    /// Whether the file or folder at `parts` lies inside a readable folder.
    public func mayRead(_ parts: [String]) -> Bool {
        guard let folders else { return true }
        return folders.contains { parts.starts(with: $0) }
    }

    /// Whether `parts` is a folder on the way to a readable one (listed, with only what
    /// leads on shown) or inside one.
    public func mayVisit(_ parts: [String]) -> Bool {
        guard let folders else { return true }
        return folders.contains { parts.starts(with: $0) || $0.starts(with: parts) }
    }

    /// The readable folders as absolute paths under `root` (the catalog's visibility filter).
    public func absoluteFolders(root: String) -> [String] {
        guard let folders else { return [root] }
        return folders.map { root + "/" + $0.joined(separator: "/") }
    }

    /// "/proposals/1234, /staff" for messages.
    public var description: String {
        guard let folders else { return "everything" }
        return folders.isEmpty ? "nothing" : folders.map { "/" + $0.joined(separator: "/") }.joined(separator: ", ")
    }
}

extension DomainResolver {
    /// Refuses (403) a domain outside what `access` lets its user see, before anything on
    /// disk is looked at (so a refusal says nothing about whether the path exists), and
    /// again for the real path a symlink leads to. Folders on the way to a readable folder
    /// pass (their listing shows only what leads on).
    public func check(_ domain: String, _ access: FolderAccess, user: String?) throws {
        guard access.folders != nil else { return }
        let (parts, _) = try DomainResolver.normalize(domain)
        let who = user.map { "user '\($0)'" } ?? "an anonymous request"
        let refusal = DomainError(403, "domain '\(domain)': \(who) may not read it (readable: \(access.description))")
        guard access.mayVisit(parts) else { throw refusal }
        let candidate = parts.isEmpty ? root : root + "/" + parts.joined(separator: "/")
        guard let real = DomainResolver.realPath(candidate) else { return }  // nothing there: the route says 404
        guard real == root || real.hasPrefix(root + "/") else { return }     // outside: the route says 403
        let realParts = real.dropFirst(root.count).split(separator: "/").map(String.init)
        var st = stat()
        let isFolder = stat(real, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
        guard isFolder ? access.mayVisit(realParts) && access.mayVisit(parts) : access.mayRead(realParts) && access.mayRead(parts) else {
            throw refusal
        }
    }
}
