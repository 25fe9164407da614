import CProcessShims
#if canImport(Glibc)
import Glibc
#endif

/// `--nice N` of the long-running readers, `nxlua serve` and `nxlua macros`: on a machine
/// that also stacks frames, they yield the CPU to the stacker (the one process whose lag
/// puts frames at risk: readers catch up, a detector's buffer does not wait). Measured
/// with scripts/live_scenario.py; docs/stacking.md, "Who gets the CPU on a shared machine".
enum CPUPriority {
    static let defaultNice = 10

    static let spec = SubcommandOptions.Spec(
        name: "nice", valueName: "N",
        help: "CPU priority, 0..19 (default 10: below a stacker on the same machine, which keeps storing frames while readers wait; 0 keeps the priority it was started with)")

    /// Lowers this process's priority as `--nice` says (its session's share too when it
    /// leads its own session: a service, setsid), and asks for short slices (see
    /// `preferPromptWakeups`). Call before any thread is started.
    static func apply(_ a: SubcommandOptions) throws {
        let nice = try a.int("nice", atLeast: 0) ?? defaultNice
        guard nice <= 19 else { throw SubcommandOptions.UsageError(message: "--nice takes 0..19, not \(nice)") }
        _ = nx_lower_cpu_priority(Int32(nice))
        // libdispatch's threads (Hummingbird's, NIO's) would otherwise set themselves to
        // nice -4..0 as root, above the priority just chosen
        _ = nx_forgo_raising_priority()
        preferPromptWakeups()
    }

    /// `nxlua stack --nice N`: the stacker may also go above the priority it was started
    /// with. Its clients (viewers, notebooks, h5pyd scripts) run at nice 0 in sessions of
    /// their own and take CPU from it as equals however low the readers go; a negative
    /// value keeps the stacker ahead of them. Measured with scripts/live_scenario.py;
    /// docs/stacking.md, "Who gets the CPU on a shared machine".
    static let stackerSpec = SubcommandOptions.Spec(
        name: "nice", valueName: "N",
        help: "CPU priority, -20..19 (default: as started). On a machine shared with readers, -5 keeps the stacker ahead of clients at nice 0 (root or CAP_SYS_NICE)")

    /// Sets the stacker's priority (every thread, its session's share when it leads one)
    /// as `--nice` says; a raise that is not allowed is said on stderr, and the stack goes
    /// on at the priority it has. Call before any thread is started. Returns what each
    /// decoding worker runs first: libdispatch sets its threads' nice from their QoS (0,
    /// as root even up from a `nice -n 10` start), so the workers, which do most of the
    /// stacker's work, would not run at the priority chosen here (seen: nice 0 in a
    /// stacker at -5).
    static func applyToStacker(_ a: SubcommandOptions) throws -> @Sendable () -> Void {
        if let nice = try a.int("nice", atLeast: -20) {
            guard nice <= 19 else { throw SubcommandOptions.UsageError(message: "--nice takes -20..19, not \(nice)") }
            let e = nx_set_cpu_priority(Int32(nice))
            if e != 0 {
                let now = nx_current_nice()
                var line = Array("nxlua stack: --nice \(nice) not allowed (\(String(cString: strerror(e)))): above the priority it was started with needs root or CAP_SYS_NICE; stacking at nice \(now)\n".utf8)
                _ = write(2, &line, line.count)
            }
        }
        let chosen = nx_current_nice()
        return {
            if nx_current_nice() != chosen { _ = nx_set_thread_nice(chosen) }
        }
    }

    /// The scheduler slice the server and the runner ask for (Linux 6.12+, EEVDF).
    static let liveSliceNanoseconds: UInt64 = 300_000

    /// The server and the macro runner mostly sleep until a request or an event arrives,
    /// and then their latency is the product. With a short slice a woken thread is picked
    /// sooner, at the same share of the CPU (nice and the session still decide how much
    /// each gets). Every thread started afterwards inherits it; a heavy macro's thread and
    /// evaluation workers go back to the kernel's default. Not the stacker: its workers
    /// compress frames, and with short slices it fell to 93-95 frames/s in the live
    /// scenario. Measured with scripts/live_scenario.py; docs/stacking.md, "Who gets the CPU".
    static func preferPromptWakeups() {
        _ = nx_set_thread_slice(liveSliceNanoseconds)
    }
}
