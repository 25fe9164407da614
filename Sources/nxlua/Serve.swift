import Dispatch
import LineEdit
import Logging
import NXLuaRuntime
import RemoteServer
#if canImport(Glibc)
import Glibc
#endif

/// `nxlua serve ...`: the command line of the HDF REST server (docs/remote.md).
enum ServeCommand {
    static let specs: [SubcommandOptions.Spec] = [
        .init(name: "port", valueName: "N", help: "port to listen on (default 5101; 0 picks a free one)"),
        .init(name: "host", valueName: "ADDR", help: "address to bind (default 0.0.0.0)"),
        .init(name: "users", valueName: "FILE", help: "users file (name:bcrypt-hash[:folders] lines, see adduser); required unless --allow-anonymous"),
        .init(name: "allow-anonymous", valueName: nil, help: "serve requests without credentials too"),
        .init(name: "tls-cert", valueName: "F", help: "serve HTTPS with this PEM certificate chain (and --tls-key)"),
        .init(name: "tls-key", valueName: "F", help: "the PEM private key of --tls-cert"),
        .init(name: "allow-eval", valueName: nil, help: "allow authenticated users to run Lua next to the data (POST /nxlua/eval, sandboxed, in worker processes 5 nice steps below the server)"),
        .init(name: "eval-timeout", valueName: "S", help: "wall-time limit of one evaluation (default 120 seconds: a sum over a 3600-frame Pilatus 2M stack fits)"),
        .init(name: "eval-memory", valueName: "MB", help: "Lua memory limit of one evaluation (default 256)"),
        .init(name: "journal", valueName: "FILE", help: "accept scan events from authenticated users (POST /nxlua/events) into this journal (docs/macros.md)"),
        .init(name: "catalog", valueName: "DB", help: "answer GET /nxlua/catalog?q=QUERY from this catalog, for files inside the served folder (docs/catalog.md)"),
        .init(name: "max-request-size", valueName: "B", help: "largest value read in bytes (default 104857600); above: 413"),
        .init(name: "gzip-binary", valueName: nil, help: "gzip binary values when the client accepts it (JSON always)"),
        .init(name: "log-level", valueName: "L", help: "trace, debug, info (default), notice, warning, error"),
        CPUPriority.spec,
        .init(name: "help", valueName: nil, help: "show this help"),
    ]

    static var usage: String {
        """
        usage: nxlua serve DIR [options]
               nxlua serve adduser FILE NAME [--folders /a,/b]   (reads the password from stdin;
                                                 --folders: all NAME may read, / for everything)
        Serves every HDF5/NeXus file under DIR, read-only, through the HDF REST API (HSDS's
        protocol): h5pyd reads them with h5pyd.File("/file.nxs", "r", endpoint=URL). A browser
        opening URL gets the web viewer (same users; docs/viewer.md).
        Options:
        \(SubcommandOptions.helpLines(specs))
        Stop with Ctrl-C or SIGTERM (requests under way finish first).
        """
    }

    static func options(_ a: SubcommandOptions) throws -> ServeOptions {
        typealias UsageError = SubcommandOptions.UsageError
        guard let folder = a.positional.first else { throw UsageError(message: "the folder to serve is missing") }
        guard a.positional.count == 1 else { throw UsageError(message: "one folder only ('\(a.positional[1])' is a second)") }
        var o = ServeOptions(folder: folder)
        if let p = try a.int("port", atLeast: 0) {
            guard p <= 65535 else { throw UsageError(message: "--port takes a port number 0..65535, not \(p)") }
            o.port = p
        }
        if let h = a.string("host") { o.host = h }
        o.usersFile = a.string("users")
        o.allowAnonymous = a.flag("allow-anonymous")
        o.tlsCertificate = a.string("tls-cert")
        o.tlsKey = a.string("tls-key")
        o.allowEval = a.flag("allow-eval")
        if let t = try a.number("eval-timeout", atLeast: 0.01) { o.evalTimeLimit = t }
        if let m = try a.int("eval-memory", atLeast: 1) { o.evalMemoryLimit = m << 20 }
        if let b = try a.int("max-request-size", atLeast: 1) { o.maxRequestSize = b }
        o.gzipBinary = a.flag("gzip-binary")
        o.journalPath = a.string("journal")
        o.catalogLocation = a.string("catalog")
        if let v = a.string("log-level") {
            guard let level = Logger.Level(rawValue: v) else { throw UsageError(message: "unknown log level '\(v)'") }
            o.logLevel = level
        }
        return o
    }

    static func run(_ args: [String]) -> Int32 {
        // started by a server with --allow-eval (EvaluationWorkers): FOLDER PARENT-PID
        if args.first == "eval-worker", args.count == 3, let parent = Int32(args[2]) {
            return EvaluationWorkers.serve(folder: args[1], parent: parent, evaluator: LuaSandbox())
        }
        if args.first == "adduser" {
            var rest = Array(args.dropFirst())
            var folders: [String]? = nil
            if let i = rest.firstIndex(where: { $0 == "--folders" || $0.hasPrefix("--folders=") }) {
                let value: String?
                if rest[i] == "--folders" {
                    value = i + 1 < rest.count ? rest[i + 1] : nil
                    rest.removeSubrange(i..<min(i + 2, rest.count))
                } else {
                    value = String(rest[i].dropFirst("--folders=".count))
                    rest.remove(at: i)
                }
                guard let value else {
                    Console.writeError("nxlua serve adduser: --folders needs a value (/folder,/other, or / for everything)\n")
                    return 1
                }
                do { folders = value == "/" ? [] : try UsersFile.folders(parsing: value) } catch {
                    Console.writeError("nxlua serve adduser: --folders: \(error)\n")
                    return 1
                }
            }
            guard rest.count == 2 else {
                Console.writeError("nxlua serve: adduser needs FILE and NAME\n\(usage)\n")
                return 1
            }
            return addUser(file: rest[0], name: rest[1], folders: folders)
        }
        return SubcommandOptions.run("serve", specs: specs, usage: usage, arguments: args) { a in
            let o = try options(a)
            try CPUPriority.apply(a)
            return serve(o)
        }
    }

    static func addUser(file: String, name: String, folders: [String]?) -> Int32 {
        guard let line = readLine(strippingNewline: true), !line.isEmpty else {
            Console.writeError("nxlua serve adduser: no password on stdin (echo 'secret' | nxlua serve adduser FILE NAME)\n")
            return 1
        }
        do {
            var users = access(file, F_OK) == 0 ? try UsersFile.load(file) : UsersFile()
            let existed = users.hash(of: name) != nil
            try users.set(name: name, password: line, folders: folders)
            try users.save(file)
            let reads = users.access(of: name).description
            Console.writeError("nxlua serve: \(existed ? "replaced" : "added") user '\(name)' in \(file) (reads: \(reads))\n")
            return 0
        } catch {
            Console.writeError("nxlua serve adduser: \(error)\n")
            return 1
        }
    }

    static func serve(_ options: ServeOptions) -> Int32 {
        LoggingSystem.bootstrap { label in
            var h = StreamLogHandler.standardError(label: label)
            h.logLevel = options.logLevel
            return h
        }
        let server: RemoteServer
        do {
            let evaluator = options.allowEval
                ? EvaluationWorkers(executable: Runtime.executablePath() ?? CommandLine.arguments[0], arguments: ["serve", "eval-worker", options.folder]) : nil
            server = try RemoteServer(options: options, evaluator: evaluator)
        } catch {
            Console.writeError("nxlua serve: \(error)\n")
            return 1
        }
        if options.allowAnonymous {
            Console.writeError("nxlua serve: warning: --allow-anonymous: anyone who reaches this port reads every file under \(options.folder)\n")
        }
        // The server runs on Swift's concurrency threads; this thread waits for it.
        final class Outcome: @unchecked Sendable { var status: Int32 = 0 }
        let outcome = Outcome()
        let done = DispatchSemaphore(value: 0)
        Task {
            do {
                try await server.run { port in
                    // the first line on stdout: scripts and tests read the port from it
                    Console.write("nxlua serve: listening on port \(port)\n")
                    Console.flush()
                }
            } catch {
                Console.writeError("nxlua serve: \(error)\n")
                outcome.status = 1
            }
            done.signal()
        }
        done.wait()
        return outcome.status
    }
}
