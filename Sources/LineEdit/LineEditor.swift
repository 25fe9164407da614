import CEdit
import CEditShims
#if canImport(Glibc)
import Glibc
#endif

/// Line editing with history and completion over libedit (no Lua in here).
///
/// History is bounded and saved after every entered line, so a killed session keeps it.
/// Completion asks `completer` for the text before the cursor and inserts the common
/// prefix of its candidates, listing them when there are several (as bash does).
public final class LineEditor {
    /// What a completer returns: how many bytes before the cursor the candidates replace
    /// (the word being completed), and the full candidates for that word.
    public struct Completion {
        public var wordLength: Int
        public var candidates: [String]
        public init(wordLength: Int, candidates: [String]) {
            self.wordLength = wordLength
            self.candidates = candidates
        }
    }

    /// The result of reading a line.
    public enum Input: Equatable {
        case line(String)
        case interrupted   // Ctrl-C at the prompt: the line is abandoned
        case endOfInput    // Ctrl-D on an empty line, or stdin closed
    }

    public var completer: ((String) -> Completion)?
    private let editLine: OpaquePointer
    private let history: OpaquePointer
    private let historyFile: String?
    private var prompt: String = "> "
    private var promptStorage: UnsafeMutablePointer<CChar>?

    /// Nil when stdin or stdout is not a terminal (then read plain lines instead).
    public init?(program: String, historyFile: String?, historySize: Int = 1000) {
        guard isatty(0) != 0, isatty(1) != 0 else { return nil }
        setlocale(LC_CTYPE, "")  // UTF-8 input (µm, Å) as the terminal sends it
        guard let el = nxed_init(program, nxed_stdin(), nxed_stdout(), nxed_stderr()),
              let h = nxed_history_init(Int32(historySize)) else { return nil }
        editLine = el
        history = h
        self.historyFile = historyFile
        nxed_history_unique(h, 1)
        nxed_set_editor(el, "emacs")
        // libedit's signal handling is off: its SIGINT handler re-raises to the whole
        // process group and its reader retries an interrupted read. Ctrl-C is handled by
        // our reader instead; the window size is re-read at every prompt.
        nxed_set_signal(el, 0)
        nxed_use_interruptible_reader(el)
        nxed_set_history(el, h)
        nxed_set_prompt(el, { el in
            let me = Unmanaged<LineEditor>.fromOpaque(nxed_get_clientdata(el)!).takeUnretainedValue()
            return UnsafePointer(me.promptStorage)
        })
        nxed_bind_completion(el, { el, _ in
            let me = Unmanaged<LineEditor>.fromOpaque(nxed_get_clientdata(el)!).takeUnretainedValue()
            return me.complete()
        })
        nxed_source_default(el)  // the user's ~/.editrc, as other libedit programs
        nxed_set_clientdata(el, Unmanaged.passUnretained(self).toOpaque())
        if let historyFile { _ = nxed_history_load(h, historyFile) }
    }

    /// Why line editing is not available (libedit could not be opened), nil when it is.
    public static var unavailableReason: String? { nxed_load().map { String(cString: $0) } }

    deinit {
        nxed_end(editLine)
        nxed_history_end(history)
        free(promptStorage)
    }

    /// Reads one line with `prompt`. The trailing newline is removed.
    public func readLine(prompt: String) -> Input {
        free(promptStorage)
        promptStorage = strdup(prompt)
        nxed_prompt_sigint_begin()  // Ctrl-C at the prompt abandons the line
        defer { nxed_prompt_sigint_end() }
        // Editing mode before the prompt is shown: el_gets prints the prompt first and
        // leaves canonical mode only at its first read, so a Ctrl-D typed right after the
        // prompt appeared became a NUL byte instead of the end of input, and the REPL
        // waited for ever (seen in CI). el_gets goes back to canonical mode when it returns.
        nxed_prep_term(editLine, 1)
        defer { nxed_prep_term(editLine, 0) }
        var count: Int32 = 0
        let p = nxed_gets(editLine, &count)
        if nxed_prompt_interrupted() != 0 {
            nxed_reset(editLine)
            return .interrupted
        }
        guard let p else { return .endOfInput }
        var line = String(cString: p)
        if line.hasSuffix("\n") { line.removeLast() }
        return .line(line)
    }

    /// Adds a line to the history and saves the history file.
    public func addHistory(_ line: String) {
        guard !line.allSatisfy({ $0 == " " || $0 == "\t" }) else { return }
        nxed_history_enter(history, line)
        if let historyFile { _ = nxed_history_save(history, historyFile) }
    }

    public var historyCount: Int { Int(nxed_history_length(history)) }

    // MARK: completion

    private func complete() -> UInt8 {
        guard let completer else { return UInt8(CC_ERROR) }
        var cursor: Int32 = 0, length: Int32 = 0
        guard let buf = nxed_line(editLine, &cursor, &length) else { return UInt8(CC_ERROR) }
        let before = String(decoding: UnsafeRawBufferPointer(start: buf, count: Int(cursor)), as: UTF8.self)
        let result = completer(before)
        let word = String(decoding: Array(before.utf8.suffix(result.wordLength)), as: UTF8.self)
        let candidates = result.candidates.filter { $0.utf8.starts(with: word.utf8) }
        guard !candidates.isEmpty else { return UInt8(CC_ERROR) }
        let common = LineEditor.commonPrefix(candidates)
        if common.utf8.count > word.utf8.count {
            let suffix = String(decoding: Array(common.utf8.dropFirst(word.utf8.count)), as: UTF8.self)
            _ = nxed_insertstr(editLine, suffix)
            return UInt8(CC_REFRESH)
        }
        if candidates.count == 1 { return UInt8(CC_REFRESH) }
        // Several candidates and nothing more in common: list them under the line.
        let listing = LineEditor.columns(candidates.sorted(), width: LineEditor.terminalWidth())
        fputs("\n" + listing, nxed_stdout())
        fflush(nxed_stdout())
        return UInt8(CC_REDISPLAY)
    }

    static func commonPrefix(_ words: [String]) -> String {
        guard var prefix = words.first.map(Array.init) else { return "" }
        for w in words.dropFirst() {
            let b = Array(w)
            var n = 0
            while n < prefix.count, n < b.count, prefix[n] == b[n] { n += 1 }
            prefix.removeSubrange(n...)
        }
        return String(prefix)
    }

    static func columns(_ words: [String], width: Int) -> String {
        let cell = (words.map { $0.count }.max() ?? 0) + 2
        let perRow = max(1, width / max(cell, 1))
        var out = ""
        for (i, w) in words.enumerated() {
            let last = (i + 1) % perRow == 0 || i == words.count - 1
            out += last ? w + "\n" : w + String(repeating: " ", count: cell - w.count)
        }
        return out
    }

    static func terminalWidth() -> Int {
        var ws = winsize()
        if ioctl(1, UInt(TIOCGWINSZ), &ws) == 0, ws.ws_col > 0 { return Int(ws.ws_col) }
        return 80
    }
}
