import CLua
import CLuaShims

/// The memory cap, time limit and instruction budget of a sandboxed state (see
/// `nxl_Limits` in CLuaShims.h): pass it to `LuaState(limits:)`, arm it around the code
/// it bounds. A limit reached raises inside Lua at every following instruction, so
/// `pcall` cannot swallow it; memory beyond the cap is refused while Lua code runs
/// (Lua's "not enough memory"), never while a Swift function runs.
public final class LuaLimits {
    let raw: UnsafeMutablePointer<nxl_Limits>

    public init(memory: Int) {
        raw = .allocate(capacity: 1)
        raw.initialize(to: nxl_Limits(used: 0, cap: max(64 << 10, memory), enforcing: 0, deadline: 0, seconds: 0,
                                      instructions: 0, maxInstructions: .max, expired: 0, refused: 0, armed: 0))
    }

    deinit {
        raw.deinitialize(count: 1)
        raw.deallocate()
    }

    /// Starts enforcing on `state` for `seconds` and `instructions` from now.
    public func arm(_ state: LuaState, seconds: Double, instructions: Int) {
        nxl_limits_arm(state.L, raw, seconds, Int64(instructions))
    }

    /// Stops enforcing the cap (the time limit keeps bounding finalizers run at close).
    public func disarm(_ state: LuaState) { nxl_limits_disarm(state.L, raw) }

    /// Disarms and removes the limit hook, forgetting a limit reached: the state can run
    /// code again (read `reached` first).
    public func clear(_ state: LuaState) { nxl_limits_clear(state.L, raw) }

    public enum Reached: Sendable { case time, instructions, memory }
    /// Which limit stopped the code, if one did.
    public var reached: Reached? {
        switch raw.pointee.expired {
        case Int32(NXL_LIMIT_TIME): return .time
        case Int32(NXL_LIMIT_INSTRUCTIONS): return .instructions
        case Int32(NXL_LIMIT_MEMORY): return .memory
        default: return nil
        }
    }

    /// Allocations the cap refused.
    public var refusedAllocations: Int { Int(raw.pointee.refused) }
    public var memoryInUse: Int { Int(raw.pointee.used) }

    /// Whether these limits have run out (time included); any thread may ask.
    public var hasExpired: Bool { nxl_limits_expired(raw) != 0 }

    /// Whether the calling thread's armed limits have run out (long Swift work polls it).
    public static var expiredOnThisThread: Bool { nxl_limits_expired_now() != 0 }
}
