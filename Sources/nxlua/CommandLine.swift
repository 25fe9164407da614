/// The command line, parsed as lua.c parses it: options up to the script name, the
/// script's own arguments after it.
struct CommandLineOptions {
    enum Action { case run, version, help }
    enum Step { case execute(String), require(global: String, module: String) }

    var action: Action = .run
    var steps: [Step] = []          // -e and -l, in order
    var interactive = false         // -i
    var showVersion = false         // -v
    var ignoreEnvironment = false   // -E
    var warnings = false            // -W
    var scriptIndex: Int? = nil     // index in argv of the script ("-" = stdin)

    struct UsageError: Error { let message: String }

    static let usage = """
    usage: nxlua [options] [script [args]]
    Available options are:
      -e stat   execute string 'stat'
      -i        enter interactive mode after executing 'script'
      -l mod    require library 'mod' into global 'mod'
      -l g=mod  require library 'mod' into global 'g'
      -v        show version information
      -E        ignore environment variables (NXLUA_INIT, NXLUA_PATH, LUA_PATH)
      -W        turn warnings on
      --        stop handling options
      -         stop handling options and execute stdin
      --version show nxlua's version and the versions of its libraries
      --help    show this help
    With no script and no -e, nxlua starts the REPL (evaluating stdin line by line when
    it is not a terminal). NXLUA_PATH adds module folders (separated by ':'); NXLUA_INIT
    is run first (a chunk, or @file). See docs/ for the guides.
    """

    static func parse(_ argv: [String]) throws -> CommandLineOptions {
        var o = CommandLineOptions()
        var i = 1
        while i < argv.count {
            let a = argv[i]
            if a == "--version" { o.action = .version; return o }
            if a == "--help" || a == "-h" { o.action = .help; return o }
            if a == "-" { o.scriptIndex = i; return o }
            guard a.hasPrefix("-") else { o.scriptIndex = i; return o }
            switch a {
            case "--":
                if i + 1 < argv.count { o.scriptIndex = i + 1 }
                return o
            case "-i": o.interactive = true; o.showVersion = true
            case "-v": o.showVersion = true
            case "-E": o.ignoreEnvironment = true
            case "-W": o.warnings = true
            default:
                let flag = String(a.prefix(2))
                guard flag == "-e" || flag == "-l" else {
                    throw UsageError(message: "unrecognized option '\(a)'")
                }
                var value = String(a.dropFirst(2))
                if value.isEmpty {
                    i += 1
                    guard i < argv.count, !argv[i].hasPrefix("-") || flag == "-e" else {
                        throw UsageError(message: "'\(flag)' needs argument")
                    }
                    value = argv[i]
                }
                if flag == "-e" {
                    o.steps.append(.execute(value))
                } else if let eq = value.firstIndex(of: "=") {
                    o.steps.append(.require(global: String(value[..<eq]), module: String(value[value.index(after: eq)...])))
                } else {
                    o.steps.append(.require(global: value, module: value))
                }
            }
            i += 1
        }
        return o
    }
}
