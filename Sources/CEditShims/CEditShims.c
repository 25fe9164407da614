#define _GNU_SOURCE
#include "CEditShims.h"
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <wchar.h>

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>

// libedit is opened with dlopen when the first line editor is made: a script run
// (`nxlua file.lua`, `nxlua -e`) never loads it, nor libtinfo, libbsd and libmd after it
// (docs/architecture.md, "Start-up"). Every libedit call goes through this table.
static struct {
    __typeof__(el_init) *el_init;
    __typeof__(el_end) *el_end;
    __typeof__(el_gets) *el_gets;
    __typeof__(el_set) *el_set;
    __typeof__(el_get) *el_get;
    __typeof__(el_wset) *el_wset;
    __typeof__(el_source) *el_source;
    __typeof__(el_line) *el_line;
    __typeof__(el_insertstr) *el_insertstr;
    __typeof__(el_reset) *el_reset;
    __typeof__(history_init) *history_init;
    __typeof__(history_end) *history_end;
    __typeof__(history) *history;
} E;
static pthread_once_t load_once = PTHREAD_ONCE_INIT;
static char load_error[512];

static void load(void) {
    void *lib = dlopen(NXED_SONAME, RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        snprintf(load_error, sizeof load_error, "cannot open %s: %s", NXED_SONAME, dlerror());
        return;
    }
#define NXED_SYM(name) \
    if (!(E.name = (__typeof__(E.name))dlsym(lib, #name))) { \
        snprintf(load_error, sizeof load_error, "%s has no %s", NXED_SONAME, #name); \
        memset(&E, 0, sizeof E); \
        return; \
    }
    NXED_SYM(el_init) NXED_SYM(el_end) NXED_SYM(el_gets) NXED_SYM(el_set) NXED_SYM(el_get)
    NXED_SYM(el_wset) NXED_SYM(el_source) NXED_SYM(el_line) NXED_SYM(el_insertstr) NXED_SYM(el_reset)
    NXED_SYM(history_init) NXED_SYM(history_end) NXED_SYM(history)
#undef NXED_SYM
}

const char *nxed_load(void) {
    pthread_once(&load_once, load);
    return E.el_init ? NULL : load_error;
}

EditLine *nxed_init(const char *prog, FILE *in, FILE *out, FILE *err) {
    if (nxed_load() != NULL) return NULL;
    return E.el_init(prog, in, out, err);
}
void nxed_end(EditLine *el) { E.el_end(el); }
const char *nxed_gets(EditLine *el, int *count) { return E.el_gets(el, count); }
void nxed_reset(EditLine *el) { E.el_reset(el); }
int nxed_insertstr(EditLine *el, const char *s) { return E.el_insertstr(el, s); }
void nxed_set_prompt(EditLine *el, nxed_PromptFn fn) { E.el_set(el, EL_PROMPT, fn); }
void nxed_set_editor(EditLine *el, const char *mode) { E.el_set(el, EL_EDITOR, mode); }
void nxed_set_signal(EditLine *el, int on) { E.el_set(el, EL_SIGNAL, on); }
void nxed_prep_term(EditLine *el, int on) { E.el_set(el, EL_PREP_TERM, on); }
void nxed_bind_completion(EditLine *el, nxed_CompleteFn fn) {
    E.el_set(el, EL_ADDFN, "nxlua-complete", "complete the word before the cursor", fn);
    E.el_set(el, EL_BIND, "^I", "nxlua-complete", NULL);
}
void nxed_set_history(EditLine *el, History *h) { E.el_set(el, EL_HIST, E.history, h); }
void nxed_set_clientdata(EditLine *el, void *data) { E.el_set(el, EL_CLIENTDATA, data); }
void *nxed_get_clientdata(EditLine *el) {
    void *data = NULL;
    E.el_get(el, EL_CLIENTDATA, &data);
    return data;
}
void nxed_source_default(EditLine *el) { E.el_source(el, NULL); }

History *nxed_history_init(int size) {
    HistEvent ev;
    History *h = E.history_init();
    if (h != NULL) E.history(h, &ev, H_SETSIZE, size);
    return h;
}
void nxed_history_end(History *h) { E.history_end(h); }
void nxed_history_enter(History *h, const char *line) {
    HistEvent ev;
    E.history(h, &ev, H_ENTER, line);
}
int nxed_history_load(History *h, const char *path) {
    HistEvent ev;
    return E.history(h, &ev, H_LOAD, path);
}
int nxed_history_save(History *h, const char *path) {
    HistEvent ev;
    return E.history(h, &ev, H_SAVE, path);
}
int nxed_history_length(History *h) {
    HistEvent ev;
    if (E.history(h, &ev, H_GETSIZE) < 0) return 0;
    return ev.num;
}
void nxed_history_unique(History *h, int on) {
    HistEvent ev;
    E.history(h, &ev, H_SETUNIQUE, on);
}

const char *nxed_line(EditLine *el, int *cursor, int *length) {
    const LineInfo *li = E.el_line(el);
    *cursor = (int)(li->cursor - li->buffer);
    *length = (int)(li->lastchar - li->buffer);
    return li->buffer;
}

FILE *nxed_stdin(void) { return stdin; }
FILE *nxed_stdout(void) { return stdout; }
FILE *nxed_stderr(void) { return stderr; }

// ---- Ctrl-C at the prompt ----------------------------------------------------------

static volatile sig_atomic_t nxed_sigint_seen = 0;
static struct sigaction nxed_old_sigint;

static void nxed_on_sigint(int sig) { (void)sig; nxed_sigint_seen = 1; }

void nxed_prompt_sigint_begin(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = nxed_on_sigint;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;  // no SA_RESTART: the wait must end
    nxed_sigint_seen = 0;
    sigaction(SIGINT, &sa, &nxed_old_sigint);
}

void nxed_prompt_sigint_end(void) { sigaction(SIGINT, &nxed_old_sigint, NULL); }

int nxed_prompt_interrupted(void) { return nxed_sigint_seen != 0; }

static int nxed_read_char(EditLine *el, wchar_t *wc) {
    (void)el;
    char buf[MB_LEN_MAX];
    size_t n = 0;
    for (;;) {
        sigset_t block, old;
        sigemptyset(&block);
        sigaddset(&block, SIGINT);
        sigprocmask(SIG_BLOCK, &block, &old);
        if (nxed_sigint_seen) {
            sigprocmask(SIG_SETMASK, &old, NULL);
            errno = EINTR;
            *wc = L'\0';
            return -1;
        }
        struct pollfd pfd = { .fd = STDIN_FILENO, .events = POLLIN, .revents = 0 };
        int r = ppoll(&pfd, 1, NULL, &old);  // SIGINT can arrive only while waiting
        sigprocmask(SIG_SETMASK, &old, NULL);
        if (r < 0) {
            if (errno == EINTR) continue;  // the check above decides
            *wc = L'\0';
            return -1;
        }
        // Non-blocking for this one read: a Ctrl-C right after ppoll() makes the tty
        // driver flush its input queue, and a blocking read would then wait forever.
        int flags = fcntl(STDIN_FILENO, F_GETFL);
        if (flags >= 0) fcntl(STDIN_FILENO, F_SETFL, flags | O_NONBLOCK);
        ssize_t k = read(STDIN_FILENO, buf + n, 1);
        int read_errno = errno;
        if (flags >= 0) fcntl(STDIN_FILENO, F_SETFL, flags);
        errno = read_errno;
        if (k == 0) { *wc = L'\0'; return 0; }
        if (k < 0) {
            if (errno == EINTR || errno == EAGAIN) continue;
            *wc = L'\0';
            return -1;
        }
        n++;
        mbstate_t st;
        memset(&st, 0, sizeof st);
        size_t c = mbrtowc(wc, buf, n, &st);
        if (c == (size_t)-2 && n < MB_LEN_MAX) continue;  // more bytes of this character
        if (c == (size_t)-1 || c == (size_t)-2) { n = 0; continue; }  // invalid: drop it
        return 1;
    }
}

void nxed_use_interruptible_reader(EditLine *el) { E.el_wset(el, EL_GETCFN, nxed_read_char); }
