// CLuaShims: the C side of the Lua bridge.
//
// Why this exists:
//  - Swift cannot import Lua's function-like macros (lua_pop, lua_upvalueindex, ...).
//  - Lua raises errors with longjmp, and a longjmp across a Swift frame is undefined
//    behaviour. So every Lua API call that may raise is made here, inside lua_pcall,
//    and every Swift function registered in Lua is entered through a C trampoline that
//    raises the Swift function's error only after the Swift frame has returned.
//  - The allocator aborts on exhaustion instead of raising, so the memory-only ('m')
//    API functions can be called from Swift directly (docs/architecture.md).
// Every symbol is prefixed nxl_.
#ifndef NXLUA_CLUASHIMS_H
#define NXLUA_CLUASHIMS_H

#include <lua5.4/lua.h>
#include <lua5.4/lauxlib.h>
#include <lua5.4/lualib.h>
#include <stddef.h>

// ---- state ---------------------------------------------------------------------------
/// A new state with the aborting allocator, a panic handler and a warning function
/// (warnings start off, as in lua.c; "@on"/"@off" control them).
lua_State *nxl_newstate(void);
/// lua_gc(L, LUA_GCSTEP, kbytes): tells the collector that `kbytes` were allocated
/// outside Lua (array storage), so it collects garbage userdata in time (lua_gc is
/// variadic, and cannot raise).
void nxl_gcstep(lua_State *L, int kbytes);
/// "Lua 5.4.4": the release of the Lua library compiled against.
const char *nxl_lua_release(void);
/// Turns warnings on or off (lua -W).
void nxl_setwarnings(lua_State *L, int on);

// ---- macros Swift cannot import ------------------------------------------------------
int nxl_registryindex(void);
int nxl_upvalueindex(int i);
void nxl_pop(lua_State *L, int n);
void nxl_insert(lua_State *L, int idx);
void nxl_remove(lua_State *L, int idx);
void nxl_replace(lua_State *L, int idx);
void nxl_pushcfunction(lua_State *L, lua_CFunction f);
int nxl_isinteger(lua_State *L, int idx);
const char *nxl_typename(lua_State *L, int idx);
/// The __name of a value's metatable, or lua_typename: what luaL_typeerror reports.
const char *nxl_objtypename(lua_State *L, int idx);

// ---- Swift functions in Lua ----------------------------------------------------------
/// Status a Swift callback returns instead of raising.
enum {
    NXL_RAISE = -1,      ///< the error value is on top of the stack: raise it as is
    NXL_ARGERROR = -2,   ///< a message is on top: raise "bad argument #n to 'f' (message)"
    NXL_RAISE_WHERE = -3 ///< a message is on top: raise it prefixed with "chunk:line:"
};
/// The Swift side of every call: `box` is the retained Swift closure box; the return is a
/// result count (>= 0) or one of the NXL_ statuses above (with *argIndex for NXL_ARGERROR).
typedef int (*nxl_Dispatch)(lua_State *L, void *box, int *argIndex);
/// Releases a retained Swift object (an Unmanaged reference).
typedef void (*nxl_Release)(void *object);
/// Installed once, before any state is made.
void nxl_install_callbacks(nxl_Dispatch dispatch, nxl_Release release);
/// Pushes a Lua function that calls `box` (already retained; released by __gc).
void nxl_pushswiftfunction(lua_State *L, void *retainedBox);

// ---- Swift objects as userdata -------------------------------------------------------
/// Pushes a new userdata holding `retainedObject`, with the metatable registered under
/// `typeKey` (lua_rawsetp on the registry). Released in __gc (or by nxl_releaseobject).
void nxl_pushobject(lua_State *L, void *retainedObject, const void *typeKey);
/// The object in the userdata at idx if its metatable is the one under typeKey; NULL
/// otherwise. *closed is set when the userdata is of that type but already released.
void *nxl_toobject(lua_State *L, int idx, const void *typeKey, int *closed);
/// Releases the object in the userdata at idx now (close); later uses see it closed.
void nxl_releaseobject(lua_State *L, int idx);
/// The C __gc every object metatable gets (set before setmetatable, as Lua requires).
int nxl_object_gc(lua_State *L);

// ---- protected API calls (each returns a lua status; the error message is on top) ----
/// t[k] with t at idx and k on top: replaces k with the value.
int nxl_pgettable(lua_State *L, int idx);
/// t[k] = v with t at idx, k and v on top: pops both.
int nxl_psettable(lua_State *L, int idx);
/// Pushes t.k for t at idx.
int nxl_pgetfield(lua_State *L, int idx, const char *k);
/// t.k = v for t at idx, v on top: pops it.
int nxl_psetfield(lua_State *L, int idx, const char *k);
/// Pushes luaL_tolstring(idx) (honours __tostring and __name).
int nxl_ptostring(lua_State *L, int idx);
/// Pushes #v (honours __len).
int nxl_plen(lua_State *L, int idx);
/// lua_next for the table at idx; *more is 0 at the end (key popped), 1 otherwise.
int nxl_pnext(lua_State *L, int idx, int *more);
/// lua_compare(i1, i2, op) into *result.
int nxl_pcompare(lua_State *L, int i1, int i2, int op, int *result);
/// Concatenates the n values on top (honours __concat).
int nxl_pconcat(lua_State *L, int n);
/// require(name): pushes the module.
int nxl_prequire(lua_State *L, const char *name);

/// The message handler lua.c uses: adds a traceback to string errors; objects with
/// __tostring are converted first.
int nxl_msghandler(lua_State *L);
/// luaL_openlibs inside lua_pcall.
int nxl_popenlibs(lua_State *L);

// ---- Ctrl-C, as lua.c does it --------------------------------------------------------
/// Installs a SIGINT handler that sets a hook on L raising "interrupted!" at the next
/// Lua instruction, and sets a flag long Swift calls poll. A second SIGINT before the
/// hook fires gets the default action (kills a stuck process, like lua.c).
void nxl_interrupt_arm(lua_State *L);
/// Restores the default SIGINT action, removes the hook, clears the flag.
void nxl_interrupt_disarm(lua_State *L);
/// Nonzero once SIGINT arrived while armed (or nxl_interrupt_request was called).
int nxl_interrupt_pending(void);
/// Requests an interrupt as SIGINT would (for tests and for other threads).
void nxl_interrupt_request(void);

// ---- limits of sandboxed evaluation (nxlua serve's remote evaluation) ---------------
/// The limits of one sandboxed state: a memory cap enforced by its allocator and a
/// deadline/instruction budget enforced by a count hook that, once a limit is reached,
/// fires at every instruction and raises again, so `pcall` cannot swallow it (Redis's
/// rule). The cap refuses allocations only while Lua code runs: a Swift function called
/// through the trampoline runs with the cap lifted, so no memory error can longjmp over it.
typedef struct nxl_Limits {
    size_t used;            ///< bytes Lua holds now
    size_t cap;             ///< refused beyond this while enforcing
    int enforcing;          ///< 1 while Lua code runs
    double deadline;        ///< CLOCK_MONOTONIC seconds
    double seconds;         ///< the time limit, for the message
    long long instructions; ///< counted in steps of the hook's period
    long long maxInstructions;
    int expired;            ///< 0, NXL_LIMIT_TIME, NXL_LIMIT_INSTRUCTIONS or NXL_LIMIT_MEMORY
    int refused;            ///< allocations refused so far
    int armed;              ///< 1 from arm to disarm, Swift calls included (enforcing is not)
} nxl_Limits;
enum { NXL_LIMIT_TIME = 1, NXL_LIMIT_INSTRUCTIONS = 2, NXL_LIMIT_MEMORY = 3 };
/// A new state (as nxl_newstate) whose allocator counts into `limits` (owned by the caller,
/// alive until lua_close returns).
lua_State *nxl_newstate_limited(nxl_Limits *limits);
/// Starts enforcing: the cap, and the hook with `seconds` and `maxInstructions` from now.
/// The calling thread's limits become those nxl_limits_expired_now reads.
void nxl_limits_arm(lua_State *L, nxl_Limits *limits, double seconds, long long maxInstructions);
/// Stops enforcing the cap (the hook stays: finalizers run at lua_close stay bounded).
void nxl_limits_disarm(lua_State *L, nxl_Limits *limits);
/// Nonzero when the calling thread's armed limits have run out (long Swift work polls it).
int nxl_limits_expired_now(void);
/// Nonzero once these limits have run out (checks the deadline; safe from any thread:
/// the kernels' helper threads ask it).
int nxl_limits_expired(nxl_Limits *limits);
/// Disarms, forgets an expired limit and removes the hook: the state runs again
/// (a macro's state lives on after a handler hit its limit).
void nxl_limits_clear(lua_State *L, nxl_Limits *limits);

#endif
