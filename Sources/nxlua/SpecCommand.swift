import SpecFile
import TerminalProgress

/// `nxlua spec2nexus IN.spec OUT.nxs [SCAN ...]`: SPEC scans to NeXus in spec2nexus's layout.
enum SpecCommand {
    static let specs: [SubcommandOptions.Spec] = [
        .init(name: "list", valueName: nil, help: "print the scans (name, #S line, rows, columns) instead of converting"),
        .init(name: "help", valueName: nil, help: "show this help"),
    ]

    static var usage: String {
        """
        usage: nxlua spec2nexus [options] IN.spec OUT.nxs [SCAN ...]
               nxlua spec2nexus --list IN.spec
        Writes one NXentry S<name> per scan (all scans, or the ones named: 12, 12.1, ...) into
        a new NeXus file, in spec2nexus's layout (docs/sources.md).
        \(SubcommandOptions.helpLines(specs))
        """
    }

    static func run(_ arguments: [String]) -> Int32 {
        SubcommandOptions.run("spec2nexus", specs: specs, usage: usage, arguments: arguments) { a in
            if a.flag("list") {
                guard a.positional.count == 1 else { throw SubcommandOptions.UsageError(message: "--list takes one SPEC file") }
                let f = try SpecFile(path: a.positional[0])
                for n in f.scanNames {
                    guard let s = try f.scan(n) else { continue }
                    print("\(n)\t\(s.title)\t\(s.rowCount) rows\t\(s.labels.count) columns")
                }
                return 0
            }
            guard a.positional.count >= 2 else { throw SubcommandOptions.UsageError(message: "give the SPEC file and the NeXus file to write") }
            let f = try SpecFile(path: a.positional[0])
            let scans = a.positional.count > 2 ? Array(a.positional.dropFirst(2)) : nil
            let bar = ProgressBar(label: "spec2nexus", total: scans?.count ?? f.scanCount, unit: "scans")
            try SpecToNeXus.write(f, to: a.positional[1], scans: scans) { bar.update($0) }
            bar.finish()
            return 0
        }
    }
}
