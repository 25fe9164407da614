import CLua
import LineEdit
import LuaBridge
#if canImport(Glibc)
import Glibc
#endif

/// The read-eval-print loop, as lua.c 5.4's: a bare expression prints its values (tried
/// as `return <line>` first), `=expr` works, an incomplete statement continues on the
/// second prompt, errors print a traceback and the loop goes on. Values print through
/// stdlib's pretty printer (nxlua.pretty), which later types extend.
///
/// On a terminal, lines are edited with libedit (history, completion); otherwise stdin is
/// read line by line with the same evaluation and no prompts, for scripts and tests.
final class REPL {
    let host: Host
    let editor: LineEditor?
    private(set) var failures = 0
    var lua: Lua { host.lua }

    init(host: Host) {
        self.host = host
        host.runtime.installInteractiveHelp()
        editor = LineEditor(program: "nxlua", historyFile: REPL.historyPath(), historySize: 1000)
        editor?.completer = { [unowned self] text in self.complete(text) }
        if editor == nil, isatty(0) != 0, isatty(1) != 0, let why = LineEditor.unavailableReason {
            Console.writeError("nxlua: no line editing or history (\(why)); install libedit2\n")
        }
    }

    /// History file: $NXLUA_HISTORY, else ~/.nxlua_history.
    static func historyPath() -> String? {
        if let p = getenv("NXLUA_HISTORY") { return String(cString: p) }
        if let home = getenv("HOME") { return String(cString: home) + "/.nxlua_history" }
        return nil
    }

    /// Runs until end of input; returns the exit status (1 if any chunk failed while
    /// reading piped input, so pipelines notice; 0 on a terminal).
    func run() -> Int32 {
        while true {
            let base = lua.top
            switch readChunk() {
            case .endOfInput:
                if editor != nil { Console.write("\n") }
                return editor == nil && failures > 0 ? 1 : 0
            case .interrupted:
                continue
            case .failed(let message):
                report(message)
            case .ready:
                do {
                    try host.docall(nargs: 0)
                    printResults(from: base + 1)
                } catch {
                    report("\(error)")
                }
            }
            lua.top = base
        }
    }

    private enum Chunk { case ready, failed(String), interrupted, endOfInput }

    /// Reads a line, and more lines while the statement is incomplete; leaves the
    /// compiled chunk on the stack when ready.
    private func readChunk() -> Chunk {
        guard case .line(var line) = read(prompt: prompt(first: true)) else {
            return lastInput == .interrupted ? .interrupted : .endOfInput
        }
        if line.hasPrefix("=") { line = "return " + line.dropFirst() }  // 5.2-style "=expr"
        // An expression? Then print its values.
        if (try? lua.load("return " + line, name: "=stdin")) != nil {
            remember(line)
            return .ready
        }
        var code = line
        while true {
            do {
                try lua.load(code, name: "=stdin")
                remember(code)
                return .ready
            } catch let error as LuaScriptError where error.isIncompleteInput {
                switch read(prompt: prompt(first: false)) {
                case .line(let more): code += "\n" + more
                case .interrupted: return .interrupted
                case .endOfInput:
                    remember(code)
                    return .failed(error.message)
                }
            } catch {
                remember(code)
                return .failed("\(error)")
            }
        }
    }

    private var lastInput: LineEditor.Input = .endOfInput

    private func read(prompt: String) -> LineEditor.Input {
        Console.flush()
        if let editor {
            lastInput = editor.readLine(prompt: prompt)
            if lastInput == .interrupted { Console.write("^C\n") }
        } else {
            lastInput = REPL.readPlainLine().map { .line($0) } ?? .endOfInput
        }
        return lastInput
    }

    static func readPlainLine() -> String? {
        guard var line = Swift.readLine(strippingNewline: true) else { return nil }
        if line.hasSuffix("\r") { line.removeLast() }
        return line
    }

    private func remember(_ code: String) { editor?.addHistory(code) }

    /// _PROMPT / _PROMPT2 as in lua.c; no prompt when stdin is not a terminal.
    private func prompt(first: Bool) -> String {
        guard editor != nil else { return "" }
        let name = first ? "_PROMPT" : "_PROMPT2"
        lua.pushGlobals()
        defer { lua.pop(2) }
        lua.rawGet(at: -1, key: name)
        if lua.type(at: -1) != .nil, let s = try? lua.toStringMeta(at: -1) { return s }
        return first ? "> " : ">> "
    }

    private func report(_ message: String) {
        failures += 1
        Console.writeError(message + "\n")
        Console.flush()
    }

    /// Prints the values from `first` to the top through nxlua.pretty's print (the
    /// global print if the stdlib is missing).
    private func printResults(from first: Int32) {
        let n = lua.top - first + 1
        guard n > 0 else { return }
        lua.ensureStack(3)
        do {
            do {
                try lua.require("nxlua.pretty")
                try lua.getField(at: -1, "print")
                lua.remove(at: -2)
            } catch {
                try lua.getGlobal("print")
            }
            lua.insert(at: first)
            // printing runs Lua code (__pretty, __tostring): Ctrl-C must reach it too
            try host.docall(nargs: n, nresults: 0)
        } catch {
            report("error calling 'print' (\(error))")
        }
        Console.flush()
    }

    /// Asks stdlib's completer (nxlua.complete) for candidates; nothing on any error.
    private func complete(_ text: String) -> LineEditor.Completion {
        let base = lua.top
        defer { lua.top = base }
        do {
            try lua.require("nxlua.complete")
            lua.push(text)
            try lua.pcall(nargs: 1, nresults: 2)
            let wordLength = lua.toInteger(at: -2) ?? 0
            var candidates: [String] = []
            if lua.type(at: -1) == .table {
                for k in stride(from: 1, through: lua.rawLength(at: -1), by: 1) {
                    lua.rawGet(at: -1, index: k)
                    if let s = lua.toString(at: -1) { candidates.append(s) }
                    lua.pop()
                }
            }
            return .init(wordLength: wordLength, candidates: candidates)
        } catch {
            return .init(wordLength: 0, candidates: [])
        }
    }
}
