/// Options of a subcommand (`nxlua stack --out F --frames 100 a.cbf ...`): long options
/// with a value (`--name value` or `--name=value`), flags, and positional arguments.
/// Hand-written rather than swift-argument-parser: that package brings Foundation into
/// the binary, which the statically linked release build cannot link, and start-up
/// would pay for it on every REPL and script run.
struct SubcommandOptions {
    struct Spec {
        let name: String
        let valueName: String?   // nil: a flag
        let help: String
    }
    struct UsageError: Error { let message: String }

    let specs: [Spec]
    private(set) var values: [String: String] = [:]
    /// Every value of an option given more than once (--meta a=1 --meta b=2), in order.
    private(set) var lists: [String: [String]] = [:]
    private(set) var flags: Set<String> = []
    private(set) var positional: [String] = []

    init(specs: [Spec], arguments: [String]) throws {
        self.specs = specs
        var i = 0
        var onlyPositional = false
        while i < arguments.count {
            let a = arguments[i]
            i += 1
            if onlyPositional || !a.hasPrefix("-") || a == "-" {
                positional.append(a)
                continue
            }
            if a == "--" { onlyPositional = true; continue }
            if !a.hasPrefix("--") {  // one dash: -h, or a mistake
                guard a == "-h", specs.contains(where: { $0.name == "help" }) else {
                    throw UsageError(message: "unknown option \(a) (put -- before arguments that begin with -)")
                }
                flags.insert("help")
                continue
            }
            var name = String(a.dropFirst(2))
            var inline: String? = nil
            if let eq = name.firstIndex(of: "=") {
                inline = String(name[name.index(after: eq)...])
                name = String(name[..<eq])
            }
            guard let spec = specs.first(where: { $0.name == name }) else {
                throw UsageError(message: "unknown option --\(name)")
            }
            if spec.valueName == nil {
                if inline != nil { throw UsageError(message: "--\(name) takes no value") }
                flags.insert(name)
            } else if let inline {
                values[name] = inline
                lists[name, default: []].append(inline)
            } else {
                guard i < arguments.count else { throw UsageError(message: "--\(name) needs a value (\(spec.valueName!))") }
                values[name] = arguments[i]
                lists[name, default: []].append(arguments[i])
                i += 1
            }
        }
    }

    func string(_ name: String) -> String? { values[name] }
    func strings(_ name: String) -> [String] { lists[name] ?? [] }
    func flag(_ name: String) -> Bool { flags.contains(name) }

    func int(_ name: String, atLeast low: Int) throws -> Int? {
        guard let text = values[name] else { return nil }
        guard let v = Int(text), v >= low else { throw UsageError(message: "--\(name) takes an integer of at least \(low), not '\(text)'") }
        return v
    }

    func number(_ name: String, atLeast low: Double) throws -> Double? {
        guard let text = values[name] else { return nil }
        guard let v = Double(text), v >= low, v.isFinite else {
            let what = low > -Double.greatestFiniteMagnitude ? "a number of at least \(low)" : "a number"
            throw UsageError(message: "--\(name) takes \(what), not '\(text)'")
        }
        return v
    }

    /// Runs a subcommand: parses `arguments`, prints `usage` for --help, and turns errors
    /// into "nxlua NAME: message" on stderr (with the usage after a usage error) and exit
    /// status 1. `body` gets the parsed options and returns the exit status.
    static func run(_ name: String, specs: [Spec], usage: String, arguments: [String],
                    _ body: (SubcommandOptions) throws -> Int32) -> Int32 {
        do {
            let a = try SubcommandOptions(specs: specs, arguments: arguments)
            if a.flag("help") { print(usage); return 0 }
            return try body(a)
        } catch let e as UsageError {
            FileHandleOutput.error("nxlua \(name): \(e.message)\n\(usage)\n")
            return 1
        } catch {
            FileHandleOutput.error("nxlua \(name): \(error)\n")
            return 1
        }
    }

    /// The options' help lines, aligned.
    static func helpLines(_ specs: [Spec]) -> String {
        let left = specs.map { "  --\($0.name)" + ($0.valueName.map { " " + $0 } ?? "") }
        let width = (left.map(\.count).max() ?? 0) + 2
        // Help text wrapped at 88 columns, continued under itself.
        let room = max(30, 88 - width)
        return zip(left, specs).map { l, s in
            var lines: [String] = [], line = ""
            for word in s.help.split(separator: " ") {
                if !line.isEmpty && line.count + 1 + word.count > room { lines.append(line); line = "" }
                line += (line.isEmpty ? "" : " ") + word
            }
            lines.append(line)
            let pad = String(repeating: " ", count: width)
            return l + String(repeating: " ", count: width - l.count) + lines.joined(separator: "\n" + pad)
        }.joined(separator: "\n")
    }
}
