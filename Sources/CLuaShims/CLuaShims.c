// See CLuaShims.h for why each piece exists.
#include "CLuaShims.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// ---- state ---------------------------------------------------------------------------

// Out-of-memory policy: abort with a message. Lua would otherwise raise a memory error
// from any allocating API call, and such a call made from Swift would longjmp over Swift.
static void *nxl_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
    (void)ud; (void)osize;
    if (nsize == 0) { free(ptr); return NULL; }
    void *p = realloc(ptr, nsize);
    if (p == NULL) {
        fprintf(stderr, "nxlua: out of memory (Lua asked for %zu bytes); aborting\n", nsize);
        fflush(stderr);
        abort();
    }
    return p;
}

static int nxl_panic(lua_State *L) {
    const char *msg = lua_tostring(L, -1);
    fprintf(stderr, "nxlua: PANIC: unprotected error in call to Lua API (%s)\n",
            msg ? msg : "error object is not a string");
    fflush(stderr);
    return 0;  // Lua aborts after this
}

// Warnings as lua.c: off until "@on"; a message may come in pieces (tocont).
typedef struct { int on; int continuing; } nxl_WarnState;
static const char nxl_warn_key = 'w';  // registry anchor of the state's nxl_WarnState

static void nxl_warnf(void *ud, const char *msg, int tocont) {
    nxl_WarnState *w = (nxl_WarnState *)ud;
    if (!w->continuing && !tocont && msg[0] == '@') {
        if (strcmp(msg, "@on") == 0) w->on = 1;
        else if (strcmp(msg, "@off") == 0) w->on = 0;
        return;
    }
    if (!w->on) { w->continuing = tocont; return; }
    if (!w->continuing) fputs("Lua warning: ", stderr);
    fputs(msg, stderr);
    if (!tocont) fputc('\n', stderr);
    fflush(stderr);
    w->continuing = tocont;
}

// What every state gets, whatever its allocator: the panic handler and the warnings.
static lua_State *nxl_setup_state(lua_State *L) {
    if (L == NULL) return NULL;
    lua_atpanic(L, nxl_panic);
    // The warning state lives in a userdata anchored in the registry: lua_close frees it.
    nxl_WarnState *w = (nxl_WarnState *)lua_newuserdatauv(L, sizeof *w, 0);
    w->on = 0; w->continuing = 0;
    lua_rawsetp(L, LUA_REGISTRYINDEX, &nxl_warn_key);
    lua_setwarnf(L, nxl_warnf, w);
    return L;
}

lua_State *nxl_newstate(void) {
    return nxl_setup_state(lua_newstate(nxl_alloc, NULL));
}

void nxl_gcstep(lua_State *L, int kbytes) { lua_gc(L, LUA_GCSTEP, kbytes); }

const char *nxl_lua_release(void) { return LUA_RELEASE; }

void nxl_setwarnings(lua_State *L, int on) {
    lua_warning(L, on ? "@on" : "@off", 0);
}

// ---- macros --------------------------------------------------------------------------

int nxl_registryindex(void) { return LUA_REGISTRYINDEX; }
int nxl_upvalueindex(int i) { return lua_upvalueindex(i); }
void nxl_pop(lua_State *L, int n) { lua_pop(L, n); }
void nxl_insert(lua_State *L, int idx) { lua_insert(L, idx); }
void nxl_remove(lua_State *L, int idx) { lua_remove(L, idx); }
void nxl_replace(lua_State *L, int idx) { lua_replace(L, idx); }
void nxl_pushcfunction(lua_State *L, lua_CFunction f) { lua_pushcfunction(L, f); }
int nxl_isinteger(lua_State *L, int idx) { return lua_isinteger(L, idx); }
const char *nxl_typename(lua_State *L, int idx) { return luaL_typename(L, idx); }

const char *nxl_objtypename(lua_State *L, int idx) {
    // Same rule as luaL_typeerror, with raw access only (no metamethods can run).
    const char *name = NULL;
    if (lua_getmetatable(L, idx)) {
        lua_pushliteral(L, "__name");
        if (lua_rawget(L, -2) == LUA_TSTRING) name = lua_tostring(L, -1);
        lua_pop(L, 2);  // the string stays alive: it is interned in the metatable
    }
    if (name != NULL) return name;
    if (lua_type(L, idx) == LUA_TLIGHTUSERDATA) return "light userdata";
    return luaL_typename(L, idx);
}

// ---- Swift functions -----------------------------------------------------------------

static nxl_Dispatch nxl_dispatch = NULL;
static nxl_Release nxl_release = NULL;

void nxl_install_callbacks(nxl_Dispatch dispatch, nxl_Release release) {
    nxl_dispatch = dispatch;
    nxl_release = release;
}

static const char nxl_box_key = 'b';  // registry key of the closure-box metatable

static int nxl_box_gc(lua_State *L) {
    void **slot = (void **)lua_touserdata(L, 1);
    if (slot != NULL && *slot != NULL) {
        void *p = *slot;
        *slot = NULL;
        nxl_release(p);
    }
    return 0;
}

static void *nxl_limited_alloc(void *ud, void *ptr, size_t osize, size_t nsize);
static int nxl_limits_raise(lua_State *L, nxl_Limits *lim);
static volatile sig_atomic_t nxl_interrupted;

// The only way Lua enters Swift. The Swift frame has returned before lua_error runs.
// In a limited state the memory cap is lifted while Swift runs (see nxl_Limits).
// A limit that ran out (the clock is read: a kernel may have finished past the deadline
// without looking) or a Ctrl-C that came while Swift ran raises here, whatever the
// function returned: a kernel that stopped early hands back an unfinished result, and
// no Lua code may see it (not even the next statement, before the hook's next look).
static int nxl_trampoline(lua_State *L) {
    void **slot = (void **)lua_touserdata(L, lua_upvalueindex(1));
    int argIndex = 0;
    void *ud = NULL;
    nxl_Limits *limits = lua_getallocf(L, &ud) == nxl_limited_alloc ? (nxl_Limits *)ud : NULL;
    int enforcing = limits ? limits->enforcing : 0;
    if (limits) limits->enforcing = 0;
    int n = nxl_dispatch(L, *slot, &argIndex);
    if (limits) limits->enforcing = enforcing;
    if (limits && limits->armed && nxl_limits_expired(limits)) return nxl_limits_raise(L, limits);
    if (nxl_interrupted) return luaL_error(L, "interrupted!");
    if (n >= 0) return n;
    switch (n) {
    case NXL_ARGERROR:
        return luaL_argerror(L, argIndex, lua_tostring(L, -1));
    case NXL_RAISE_WHERE:
        luaL_where(L, 1);
        lua_insert(L, -2);
        lua_concat(L, 2);
        return lua_error(L);
    default:
        return lua_error(L);
    }
}

void nxl_pushswiftfunction(lua_State *L, void *retainedBox) {
    void **slot = (void **)lua_newuserdatauv(L, sizeof(void *), 0);
    *slot = retainedBox;
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, &nxl_box_key) != LUA_TTABLE) {
        lua_pop(L, 1);
        lua_createtable(L, 0, 2);
        lua_pushcfunction(L, nxl_box_gc);
        lua_setfield(L, -2, "__gc");  // raw: the new table has no metatable
        lua_pushliteral(L, "nxlua.function");
        lua_setfield(L, -2, "__name");
        lua_pushvalue(L, -1);
        lua_rawsetp(L, LUA_REGISTRYINDEX, &nxl_box_key);
    }
    lua_setmetatable(L, -2);
    lua_pushcclosure(L, nxl_trampoline, 1);
}

// ---- Swift objects -------------------------------------------------------------------

void nxl_pushobject(lua_State *L, void *retainedObject, const void *typeKey) {
    void **slot = (void **)lua_newuserdatauv(L, sizeof(void *), 1);
    *slot = retainedObject;
    lua_rawgetp(L, LUA_REGISTRYINDEX, typeKey);
    lua_setmetatable(L, -2);
}

void *nxl_toobject(lua_State *L, int idx, const void *typeKey, int *closed) {
    *closed = 0;
    void **slot = (void **)lua_touserdata(L, idx);
    if (slot == NULL || lua_type(L, idx) != LUA_TUSERDATA) return NULL;
    if (!lua_getmetatable(L, idx)) return NULL;
    lua_rawgetp(L, LUA_REGISTRYINDEX, typeKey);
    int same = lua_rawequal(L, -1, -2);
    lua_pop(L, 2);
    if (!same) return NULL;
    if (*slot == NULL) { *closed = 1; return NULL; }
    return *slot;
}

void nxl_releaseobject(lua_State *L, int idx) {
    void **slot = (void **)lua_touserdata(L, idx);
    if (slot != NULL && *slot != NULL) {
        void *p = *slot;
        *slot = NULL;
        nxl_release(p);
    }
}

int nxl_object_gc(lua_State *L) {
    nxl_releaseobject(L, 1);
    return 0;
}

// ---- protected calls -----------------------------------------------------------------
// Each runs the raising API function inside lua_pcall through a light C function
// (light C functions allocate nothing).

static int p_gettable(lua_State *L) { lua_gettable(L, 1); return 1; }
int nxl_pgettable(lua_State *L, int idx) {
    idx = lua_absindex(L, idx);
    lua_pushcfunction(L, p_gettable);
    lua_pushvalue(L, idx);
    lua_rotate(L, -3, 2);  // f t k
    return lua_pcall(L, 2, 1, 0);
}

static int p_settable(lua_State *L) { lua_settable(L, 1); return 0; }
int nxl_psettable(lua_State *L, int idx) {
    idx = lua_absindex(L, idx);
    lua_pushcfunction(L, p_settable);
    lua_pushvalue(L, idx);
    lua_rotate(L, -4, 2);  // f t k v
    return lua_pcall(L, 3, 0, 0);
}

static int p_getfield(lua_State *L) {
    lua_getfield(L, 1, (const char *)lua_touserdata(L, 2));
    return 1;
}
int nxl_pgetfield(lua_State *L, int idx, const char *k) {
    idx = lua_absindex(L, idx);
    lua_pushcfunction(L, p_getfield);
    lua_pushvalue(L, idx);
    lua_pushlightuserdata(L, (void *)k);
    return lua_pcall(L, 2, 1, 0);
}

static int p_setfield(lua_State *L) {
    lua_setfield(L, 1, (const char *)lua_touserdata(L, 2));
    return 0;
}
int nxl_psetfield(lua_State *L, int idx, const char *k) {
    idx = lua_absindex(L, idx);
    lua_pushcfunction(L, p_setfield);
    lua_pushvalue(L, idx);
    lua_pushlightuserdata(L, (void *)k);
    lua_rotate(L, -4, 3);  // f t k v
    return lua_pcall(L, 3, 0, 0);
}

static int p_tostring(lua_State *L) { luaL_tolstring(L, 1, NULL); return 1; }
int nxl_ptostring(lua_State *L, int idx) {
    idx = lua_absindex(L, idx);
    lua_pushcfunction(L, p_tostring);
    lua_pushvalue(L, idx);
    return lua_pcall(L, 1, 1, 0);
}

static int p_len(lua_State *L) { lua_len(L, 1); return 1; }
int nxl_plen(lua_State *L, int idx) {
    idx = lua_absindex(L, idx);
    lua_pushcfunction(L, p_len);
    lua_pushvalue(L, idx);
    return lua_pcall(L, 1, 1, 0);
}

static int p_next(lua_State *L) {
    // 1: table, 2: key -> pushes (more, [key, value])
    lua_settop(L, 2);
    if (lua_next(L, 1)) {
        lua_pushboolean(L, 1);
        lua_rotate(L, -3, 1);  // more k v
        return 3;
    }
    lua_pushboolean(L, 0);
    return 1;
}
int nxl_pnext(lua_State *L, int idx, int *more) {
    idx = lua_absindex(L, idx);
    int base = lua_gettop(L) - 1;  // below the key
    lua_pushcfunction(L, p_next);
    lua_pushvalue(L, idx);
    lua_rotate(L, -3, 2);  // f t k
    int status = lua_pcall(L, 2, LUA_MULTRET, 0);
    if (status != LUA_OK) { *more = 0; return status; }
    // the stack has either: more(false)  or  more(true) k v (counted: a value of false
    // on top is not the end of the table)
    if (lua_gettop(L) - base == 1) {
        lua_pop(L, 1);
        *more = 0;
    } else {
        lua_remove(L, -3);  // drop the flag, leave k v as lua_next does
        *more = 1;
    }
    return LUA_OK;
}

static int p_compare(lua_State *L) {
    int op = (int)lua_tointeger(L, 3);
    lua_pushboolean(L, lua_compare(L, 1, 2, op));
    return 1;
}
int nxl_pcompare(lua_State *L, int i1, int i2, int op, int *result) {
    i1 = lua_absindex(L, i1);
    i2 = lua_absindex(L, i2);
    lua_pushcfunction(L, p_compare);
    lua_pushvalue(L, i1);
    lua_pushvalue(L, i2);
    lua_pushinteger(L, op);
    int status = lua_pcall(L, 3, 1, 0);
    if (status == LUA_OK) { *result = lua_toboolean(L, -1); lua_pop(L, 1); }
    return status;
}

static int p_concat(lua_State *L) { lua_concat(L, lua_gettop(L)); return 1; }
int nxl_pconcat(lua_State *L, int n) {
    lua_pushcfunction(L, p_concat);
    lua_insert(L, -(n + 1));
    return lua_pcall(L, n, 1, 0);
}

static int p_require(lua_State *L) {
    lua_getglobal(L, "require");
    lua_pushvalue(L, 1);
    lua_call(L, 1, 1);
    return 1;
}
int nxl_prequire(lua_State *L, const char *name) {
    lua_pushcfunction(L, p_require);
    lua_pushstring(L, name);
    return lua_pcall(L, 1, 1, 0);
}

int nxl_msghandler(lua_State *L) {
    const char *msg = lua_tostring(L, 1);
    if (msg == NULL) {
        if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING)
            return 1;  // an error object with __tostring: that is the message
        msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    }
    luaL_traceback(L, L, msg, 1);
    return 1;
}

static int p_openlibs(lua_State *L) { luaL_openlibs(L); return 0; }
int nxl_popenlibs(lua_State *L) {
    lua_pushcfunction(L, p_openlibs);
    return lua_pcall(L, 0, 0, 0);
}

// ---- Ctrl-C --------------------------------------------------------------------------

static lua_State *volatile nxl_interrupt_state = NULL;
static volatile sig_atomic_t nxl_interrupted = 0;  // (declared before the trampoline)

static void nxl_stop_hook(lua_State *L, lua_Debug *ar) {
    (void)ar;
    lua_sethook(L, NULL, 0, 0);
    luaL_error(L, "interrupted!");
}

static void nxl_sigint(int sig) {
    signal(sig, SIG_DFL);  // a second Ctrl-C while stuck in C code ends the process
    nxl_interrupted = 1;
    lua_State *L = nxl_interrupt_state;
    if (L != NULL)  // lua_sethook is safe in a signal handler (lua.c relies on this)
        lua_sethook(L, nxl_stop_hook, LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT, 1);
}

void nxl_interrupt_arm(lua_State *L) {
    nxl_interrupted = 0;
    nxl_interrupt_state = L;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = nxl_sigint;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
}

void nxl_interrupt_disarm(lua_State *L) {
    signal(SIGINT, SIG_DFL);
    nxl_interrupt_state = NULL;
    nxl_interrupted = 0;
    if (L != NULL) lua_sethook(L, NULL, 0, 0);
}

int nxl_interrupt_pending(void) { return nxl_interrupted != 0; }

void nxl_interrupt_request(void) {
    nxl_interrupted = 1;
    lua_State *L = nxl_interrupt_state;
    if (L != NULL)
        lua_sethook(L, nxl_stop_hook, LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT, 1);
}

// ---- limits of sandboxed evaluation --------------------------------------------------

#include <time.h>

static double nxl_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

// Refuses (returns NULL: Lua raises "not enough memory") beyond the cap while Lua code
// runs; outside that it behaves as nxl_alloc, aborting when the system refuses.
static void *nxl_limited_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
    nxl_Limits *lim = (nxl_Limits *)ud;
    size_t old = ptr ? osize : 0;
    if (nsize == 0) {
        free(ptr);
        lim->used -= old;
        return NULL;
    }
    if (lim->enforcing && nsize > old && lim->used - old + nsize > lim->cap) {
        // refused once, stopped for good: the hook raises from now on (pcall cannot retry)
        lim->refused++;
        if (!lim->expired) lim->expired = NXL_LIMIT_MEMORY;
        return NULL;
    }
    void *p = realloc(ptr, nsize);
    if (p == NULL) {
        if (lim->enforcing) {
            lim->refused++;
            if (!lim->expired) lim->expired = NXL_LIMIT_MEMORY;
            return NULL;
        }
        fprintf(stderr, "nxlua: out of memory (Lua asked for %zu bytes); aborting\n", nsize);
        fflush(stderr);
        abort();
    }
    lim->used = lim->used - old + nsize;
    return p;
}

lua_State *nxl_newstate_limited(nxl_Limits *limits) {
    return nxl_setup_state(lua_newstate(nxl_limited_alloc, limits));
}

#define NXL_LIMITS_PERIOD 1000  // instructions between two looks at the clock

static _Thread_local nxl_Limits *nxl_current_limits = NULL;

static void nxl_limits_hook(lua_State *L, lua_Debug *ar) {
    (void)ar;
    void *ud = NULL;
    if (lua_getallocf(L, &ud) != nxl_limited_alloc) return;
    nxl_Limits *lim = (nxl_Limits *)ud;
    lim->instructions += lua_gethookcount(L);
    if (!lim->expired) {
        if (nxl_now() >= lim->deadline) lim->expired = NXL_LIMIT_TIME;
        else if (lim->instructions >= lim->maxInstructions) lim->expired = NXL_LIMIT_INSTRUCTIONS;
    }
    if (!lim->expired) return;
    nxl_limits_raise(L, lim);
}

// Raises the error of the limit that ran out. From now on every instruction of this
// thread raises too: a pcall that caught the error is stopped at its next instruction.
static int nxl_limits_raise(lua_State *L, nxl_Limits *lim) {
    lua_sethook(L, nxl_limits_hook, LUA_MASKCOUNT, 1);
    if (lim->expired == NXL_LIMIT_TIME)
        return luaL_error(L, "evaluation stopped: time limit of %f seconds reached", lim->seconds);
    else if (lim->expired == NXL_LIMIT_MEMORY)
        return luaL_error(L, "evaluation stopped: memory limit reached");
    else
        return luaL_error(L, "evaluation stopped: instruction limit of %I instructions reached", (lua_Integer)lim->maxInstructions);
}

void nxl_limits_arm(lua_State *L, nxl_Limits *limits, double seconds, long long maxInstructions) {
    limits->seconds = seconds;
    limits->deadline = nxl_now() + seconds;
    limits->maxInstructions = maxInstructions;
    limits->instructions = 0;
    limits->expired = 0;
    limits->enforcing = 1;
    limits->armed = 1;
    nxl_current_limits = limits;
    lua_sethook(L, nxl_limits_hook, LUA_MASKCOUNT, NXL_LIMITS_PERIOD);
}

void nxl_limits_disarm(lua_State *L, nxl_Limits *limits) {
    (void)L;
    limits->enforcing = 0;
    limits->armed = 0;
    if (nxl_current_limits == limits) nxl_current_limits = NULL;
}

int nxl_limits_expired_now(void) {
    nxl_Limits *lim = nxl_current_limits;
    if (lim == NULL) return 0;
    if (!lim->expired && nxl_now() >= lim->deadline) lim->expired = NXL_LIMIT_TIME;
    return lim->expired != 0;
}

int nxl_limits_expired(nxl_Limits *lim) {
    // `armed`, not `enforcing`: a Swift function called from Lua runs with enforcing 0,
    // and that is when this is asked (a long wait, a kernel)
    if (lim == NULL || !lim->armed) return lim != NULL && lim->expired != 0;
    if (!lim->expired && nxl_now() >= lim->deadline) lim->expired = NXL_LIMIT_TIME;
    return lim->expired != 0;
}

void nxl_limits_clear(lua_State *L, nxl_Limits *limits) {
    nxl_limits_disarm(L, limits);
    limits->expired = 0;
    lua_sethook(L, NULL, 0, 0);
}
