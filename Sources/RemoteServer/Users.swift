import FolderListing
import HummingbirdBcrypt
#if canImport(Glibc)
import Glibc
#endif

/// The users file: one `name:bcrypt-hash[:folders]` per line (`#` starts a comment).
/// Hashes are bcrypt (salted, cost 12), made by `nxlua serve adduser FILE NAME`. The
/// optional folders (domains, comma-separated: `/proposals/1234,/staff`) are all the user
/// may read; without them, the whole served folder.
public struct UsersFile: Sendable, Equatable {
    public private(set) var entries: [(name: String, hash: String, folders: [String]?)]

    public static func == (a: UsersFile, b: UsersFile) -> Bool {
        a.entries.map(\.name) == b.entries.map(\.name) && a.entries.map(\.hash) == b.entries.map(\.hash)
            && a.entries.map(\.folders) == b.entries.map(\.folders)
    }

    public struct FormatError: Error, CustomStringConvertible {
        public let description: String
    }

    public init(parsing text: String, source: String = "users file") throws {
        entries = []
        for (n, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let l = line.trimmingSpaces
            if l.isEmpty || l.hasPrefix("#") { continue }
            guard let colon = l.firstIndex(of: ":"), colon != l.startIndex else {
                throw FormatError(description: "\(source):\(n + 1): 'name:hash' expected")
            }
            let name = String(l[..<colon])
            let rest = l[l.index(after: colon)...].split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false)
            let hash = String(rest[0])
            guard hash.hasPrefix("$2") else {
                throw FormatError(description: "\(source):\(n + 1): the hash of '\(name)' is not a bcrypt hash (make it with nxlua serve adduser)")
            }
            var folders: [String]? = nil
            if rest.count == 2 {
                do { folders = try UsersFile.folders(parsing: String(rest[1])) } catch let e as FormatError {
                    throw FormatError(description: "\(source):\(n + 1): user '\(name)': \(e.description)")
                }
            }
            entries.append((name, hash, folders))
        }
    }

    public init() { entries = [] }

    public static func load(_ path: String) throws -> UsersFile {
        guard let text = FolderListing.readText(path) else { throw FormatError(description: "\(path): cannot read the users file") }
        return try UsersFile(parsing: text, source: path)
    }

    public func hash(of name: String) -> String? { entries.first { $0.name == name }?.hash }

    /// What `name` may read (everything for a user without folders).
    public func access(of name: String) -> FolderAccess {
        guard let e = entries.first(where: { $0.name == name }) else { return .nothing }
        return e.folders.map { FolderAccess(domains: $0) } ?? .everything
    }

    /// Whether some user is limited to folders.
    public var limitsFolders: Bool { entries.contains { $0.folders != nil } }

    /// "/a, /b/c" -> ["/a", "/b/c"]: absolute domains of folders, no "..", at least one.
    public static func folders(parsing text: String) throws -> [String] {
        let list = text.split(separator: ",").map { String($0.trimmingSpaces) }.filter { !$0.isEmpty }
        guard !list.isEmpty else { throw FormatError(description: "no folders after the second ':' (give /folder,/other or drop the ':')") }
        for f in list {
            guard f.hasPrefix("/") else { throw FormatError(description: "folder '\(f)' must start with '/' (a domain of the served folder)") }
            guard !f.split(separator: "/").contains(".."), !f.contains(":"), !f.utf8.contains(0) else {
                throw FormatError(description: "folder '\(f)': '..' and ':' are not allowed")
            }
        }
        return list
    }

    /// Checks a password (slow on purpose: bcrypt).
    public func verify(name: String, password: String) -> Bool {
        guard let h = hash(of: name) else {
            _ = Bcrypt.verify(password, hash: UsersFile.decoy)  // same cost whether or not the user exists
            return false
        }
        return Bcrypt.verify(password, hash: h)
    }

    static let decoy = Bcrypt.hash("nxlua-decoy", cost: 12)

    /// Adds or replaces a user.
    /// Adds or replaces a user; `folders` nil keeps a present user's folders (a new user
    /// reads everything), [] gives back the whole tree.
    public mutating func set(name: String, password: String, folders: [String]? = nil, cost: UInt8 = 12) throws {
        guard UsersFile.validName(name) else {
            throw FormatError(description: "bad user name '\(name)' (letters, digits, '.', '_', '-' and '@' only)")
        }
        let h = Bcrypt.hash(password, cost: cost)
        let limit = folders.map { $0.isEmpty ? nil : $0 }
        if let i = entries.firstIndex(where: { $0.name == name }) {
            entries[i].hash = h
            if let limit { entries[i].folders = limit }
        } else {
            entries.append((name, h, limit ?? nil))
        }
    }

    public static func validName(_ name: String) -> Bool {
        !name.isEmpty && name.count <= 64 && name.allSatisfy { $0.isLetter || $0.isNumber || "._-@".contains($0) }
    }

    public var text: String {
        "# nxlua serve users: name:bcrypt-hash[:folders] (edit with: nxlua serve adduser FILE NAME [--folders /a,/b])\n"
            + entries.map { "\($0.name):\($0.hash)" + ($0.folders.map { ":" + $0.joined(separator: ",") } ?? "") + "\n" }.joined()
    }

    /// Writes the file atomically (temporary file, then rename), readable by its owner only.
    public func save(_ path: String) throws {
        let tmp = path + ".tmp\(getpid())"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        guard fd >= 0 else { throw FormatError(description: "\(path): cannot write (\(String(cString: strerror(errno))))") }
        let bytes = Array(text.utf8)
        let ok = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) } == bytes.count
        close(fd)
        guard ok, rename(tmp, path) == 0 else {
            unlink(tmp)
            throw FormatError(description: "\(path): cannot write (\(String(cString: strerror(errno))))")
        }
    }
}

extension Substring {
    var trimmingSpaces: Substring {
        var s = self
        while let f = s.first, f == " " || f == "\t" || f == "\r" { s = s.dropFirst() }
        while let l = s.last, l == " " || l == "\t" || l == "\r" { s = s.dropLast() }
        return s
    }
}
