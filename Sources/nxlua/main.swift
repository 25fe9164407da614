import LuaBridge
import LineEdit
import NativeLibraries
import NXLuaRuntime
#if canImport(Glibc)
import Glibc
#endif

/// nxlua: the REPL, the script runner (as `lua`), and later the service subcommands.
func versionLine(_ libraries: [NativeLibraries.Library] = NativeLibraries.all) -> String {
    let libs = libraries.map { "\($0.name) \($0.version)" }.joined(separator: ", ")
    return "nxlua \(CoreModule.version) (\(libs))"
}

func runMain(_ argv: [String]) -> Int32 {
    // Subcommands come first (DESIGN.md section 3); everything else is parsed as lua.c
    // parses its command line.
    if argv.count > 1, argv[1] == "stack" { return StackCommand.run(Array(argv.dropFirst(2))) }
    if argv.count > 1, argv[1] == "serve" { return ServeCommand.run(Array(argv.dropFirst(2))) }
    if argv.count > 1, argv[1] == "trigger" { return TriggerCommand.run(Array(argv.dropFirst(2))) }
    if argv.count > 1, argv[1] == "macros" { return MacrosCommand.run(Array(argv.dropFirst(2))) }
    if argv.count > 1, argv[1] == "catalog" { return CatalogCommand.run(Array(argv.dropFirst(2))) }
    if argv.count > 1, argv[1] == "spec2nexus" { return SpecCommand.run(Array(argv.dropFirst(2))) }
    if argv.count > 1, argv[1] == "replay" { return ReplayCommand.run(Array(argv.dropFirst(2))) }
    if argv.count > 1, argv[1] == "journal" { return JournalCommand.run(Array(argv.dropFirst(2))) }
    let options: CommandLineOptions
    do {
        options = try CommandLineOptions.parse(argv)
    } catch let e as CommandLineOptions.UsageError {
        Console.writeError("nxlua: \(e.message)\n\(CommandLineOptions.usage)\n")
        return 1
    } catch {
        return 1
    }
    switch options.action {
    case .version: print(versionLine()); return 0
    case .help: print(CommandLineOptions.usage); return 0
    case .run: break
    }

    let runtime: Runtime
    do {
        runtime = try Runtime(ignoreEnvironment: options.ignoreEnvironment)
    } catch {
        Console.writeError("nxlua: cannot start Lua: \(error)\n")
        return 1
    }
    installFigureDisplay()
    let host = Host(runtime: runtime)
    if options.warnings { runtime.state.setWarnings(true) }
    host.createArgTable(argv: argv, scriptIndex: options.scriptIndex)
    if !options.ignoreEnvironment && !host.handleInit() { return 1 }

    for step in options.steps {
        let ok: Bool
        switch step {
        case .execute(let code): ok = host.dostring(code, name: "=(command line)")
        case .require(let global, let module): ok = host.dolibrary(global: global, module: module)
        }
        if !ok { return 1 }
    }

    if let i = options.scriptIndex {
        let path = argv[i] == "-" && (i == 0 || argv[i - 1] != "--") ? nil : argv[i]
        if !host.doscript(path: path, args: Array(argv[(i + 1)...])) { return 1 }
    }

    let wantsREPL = options.interactive || (options.scriptIndex == nil && options.steps.isEmpty && !options.showVersion)
    if options.showVersion && !wantsREPL { print(versionLine()) }
    if wantsREPL {
        let repl = REPL(host: host)
        if repl.editor != nil {
            print("\(versionLine())\nhelp() for help, Tab completes, Ctrl-C interrupts, Ctrl-D exits")
        }
        return repl.run()
    }
    return 0
}

// Frame-sized blocks (a Pilatus 2M frame is 10 MB) from the heap, and kept there: by
// default glibc maps every block over its dynamic threshold afresh and returns it on
// free, so each decoded frame (a filter plugin's output buffer) paid ~2,500 page
// faults. Decoding a frame: 6.7 ms of CPU with these settings, 11.3 ms without.
// (malloc.h is not part of Swift's Glibc module: mallopt is looked up; -3 and -1 are
// glibc's M_MMAP_THRESHOLD and M_TRIM_THRESHOLD.)
if let f = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "mallopt") {  // RTLD_DEFAULT
    let mallopt = unsafeBitCast(f, to: (@convention(c) (Int32, Int32) -> Int32).self)
    _ = mallopt(-3, 16 << 20)
    _ = mallopt(-1, 64 << 20)
}
let status = runMain(CommandLine.arguments)
Console.flush()
exit(status)
