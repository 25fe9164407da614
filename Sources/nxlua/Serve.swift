import Dispatch
import LineEdit
import Logging
import NXLuaRuntime
import RemoteServer
#if canImport(Glibc)
import Glibc
#endif

/// `nxlua serve ...`: the command line of the HDF REST server (docs/remote.md), parsed
/// in the style of CommandLineOptions.
struct ServeCommand {
    enum Action { case serve(ServeOptions), addUser(file: String, name: String), help }

    static let usage = """
    usage: nxlua serve DIR [options]
           nxlua serve adduser FILE NAME     (reads the password from stdin)
    Serves every HDF5/NeXus file under DIR, read-only, through the HDF REST API (HSDS's
    protocol): h5pyd reads them with h5pyd.File("/file.nxs", "r", endpoint=URL).
    Options:
      --port N              port to listen on (default 5101; 0 picks a free one)
      --host ADDR           address to bind (default 0.0.0.0)
      --users FILE          users file (name:bcrypt-hash lines, see adduser); required
                            unless --allow-anonymous
      --allow-anonymous     serve requests without credentials too
      --tls-cert F --tls-key F   serve HTTPS with this PEM certificate chain and key
      --allow-eval          allow authenticated users to run Lua next to the data
                            (POST /nxlua/eval, sandboxed)
      --eval-timeout S      wall-time limit of one evaluation (default 10 seconds)
      --eval-memory MB      Lua memory limit of one evaluation (default 256)
      --journal FILE        accept scan events from authenticated users (POST
                            /nxlua/events) into this journal (docs/macros.md)
      --max-request-size B  largest value read in bytes (default 104857600); above: 413
      --gzip-binary         gzip binary values when the client accepts it (JSON always)
      --log-level L         trace, debug, info (default), notice, warning, error
      --help                show this help
    Stop with Ctrl-C or SIGTERM (requests under way finish first).
    """

    struct UsageError: Error { let message: String }

    static func parse(_ args: [String]) throws -> Action {
        if args.first == "adduser" {
            guard args.count == 3 else { throw UsageError(message: "adduser needs FILE and NAME") }
            return .addUser(file: args[1], name: args[2])
        }
        var folder: String? = nil
        var o = ServeOptions(folder: "")
        var i = 0
        func value(_ flag: String) throws -> String {
            i += 1
            guard i < args.count else { throw UsageError(message: "'\(flag)' needs an argument") }
            return args[i]
        }
        func number(_ flag: String) throws -> Double {
            let v = try value(flag)
            guard let d = Double(v), d >= 0 else { throw UsageError(message: "'\(flag)' needs a non-negative number, got '\(v)'") }
            return d
        }
        while i < args.count {
            let a = args[i]
            switch a {
            case "--help", "-h": return .help
            case "--port":
                let p = try number(a)
                guard p <= 65535, p == p.rounded() else { throw UsageError(message: "'--port' needs a port number 0..65535") }
                o.port = Int(p)
            case "--host": o.host = try value(a)
            case "--users": o.usersFile = try value(a)
            case "--allow-anonymous": o.allowAnonymous = true
            case "--tls-cert": o.tlsCertificate = try value(a)
            case "--tls-key": o.tlsKey = try value(a)
            case "--allow-eval": o.allowEval = true
            case "--eval-timeout": o.evalTimeLimit = max(0.01, try number(a))
            case "--eval-memory": o.evalMemoryLimit = max(1, Int(try number(a))) << 20
            case "--max-request-size": o.maxRequestSize = max(1, Int(try number(a)))
            case "--gzip-binary": o.gzipBinary = true
            case "--journal": o.journalPath = try value(a)
            case "--log-level":
                let v = try value(a)
                guard let level = Logger.Level(rawValue: v) else { throw UsageError(message: "unknown log level '\(v)'") }
                o.logLevel = level
            default:
                if a.hasPrefix("-") { throw UsageError(message: "unrecognized option '\(a)'") }
                if folder != nil { throw UsageError(message: "one folder only ('\(a)' is a second)") }
                folder = a
            }
            i += 1
        }
        guard let folder else { throw UsageError(message: "the folder to serve is missing") }
        o.folder = folder
        return .serve(o)
    }

    static func run(_ args: [String]) -> Int32 {
        let action: Action
        do {
            action = try parse(args)
        } catch let e as UsageError {
            Console.writeError("nxlua serve: \(e.message)\n\(usage)\n")
            return 1
        } catch {
            return 1
        }
        switch action {
        case .help:
            print(usage)
            return 0
        case .addUser(let file, let name):
            return addUser(file: file, name: name)
        case .serve(let options):
            return serve(options)
        }
    }

    static func addUser(file: String, name: String) -> Int32 {
        guard let line = readLine(strippingNewline: true), !line.isEmpty else {
            Console.writeError("nxlua serve adduser: no password on stdin (echo 'secret' | nxlua serve adduser FILE NAME)\n")
            return 1
        }
        do {
            var users = access(file, F_OK) == 0 ? try UsersFile.load(file) : UsersFile()
            let existed = users.hash(of: name) != nil
            try users.set(name: name, password: line)
            try users.save(file)
            Console.writeError("nxlua serve: \(existed ? "replaced" : "added") user '\(name)' in \(file)\n")
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
            server = try RemoteServer(options: options, evaluator: options.allowEval ? LuaSandbox() : nil)
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
