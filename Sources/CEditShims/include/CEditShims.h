// CEditShims: libedit's el_set/el_get and history() are variadic, which Swift cannot
// call; these fixed-signature wrappers cover what the REPL uses. Prefixed nxed_.
#ifndef NXLUA_CEDITSHIMS_H
#define NXLUA_CEDITSHIMS_H
#include <histedit.h>
#include <stdio.h>

/// Called by libedit for the prompt; `el` identifies the editor.
typedef const char *(*nxed_PromptFn)(EditLine *el);
/// Called on TAB: returns CC_REFRESH, CC_REDISPLAY, CC_ERROR...
typedef unsigned char (*nxed_CompleteFn)(EditLine *el, int ch);

/// The library nxed_load() opens (also named by NativeLibraries for --version).
#define NXED_SONAME "libedit.so.2"
/// Opens libedit (once; thread-safe): NULL when every function was found, else why not.
const char *nxed_load(void);
/// NULL when libedit cannot be opened (nxed_load() says why) or el_init fails.
EditLine *nxed_init(const char *prog, FILE *in, FILE *out, FILE *err);
void nxed_end(EditLine *el);
const char *nxed_gets(EditLine *el, int *count);
void nxed_reset(EditLine *el);
int nxed_insertstr(EditLine *el, const char *s);
void nxed_set_prompt(EditLine *el, nxed_PromptFn fn);
void nxed_set_editor(EditLine *el, const char *mode);  // "emacs" or "vi"
void nxed_set_signal(EditLine *el, int on);
// Puts the terminal in libedit's editing mode now (on = 1) or back to the saved mode (0).
void nxed_prep_term(EditLine *el, int on);
void nxed_bind_completion(EditLine *el, nxed_CompleteFn fn);
void nxed_set_history(EditLine *el, History *h);
void nxed_set_clientdata(EditLine *el, void *data);
void *nxed_get_clientdata(EditLine *el);
/// Reads ~/.editrc and the like, as every libedit program does.
void nxed_source_default(EditLine *el);

History *nxed_history_init(int size);
void nxed_history_end(History *h);
void nxed_history_enter(History *h, const char *line);
int nxed_history_load(History *h, const char *path);
int nxed_history_save(History *h, const char *path);
int nxed_history_length(History *h);
/// No two identical lines in a row in the history.
void nxed_history_unique(History *h, int on);

/// The current line buffer: text and cursor offset (bytes).
const char *nxed_line(EditLine *el, int *cursor, int *length);

/// Ctrl-C at the prompt. libedit's own read loop retries a read() that SIGINT
/// interrupted, so the REPL installs this reader (EL_GETCFN): it waits with ppoll() and
/// SIGINT unblocked only inside the wait, so a Ctrl-C is never lost between a check and
/// the wait, and then makes el_gets return NULL. Decodes UTF-8 (LC_CTYPE) as libedit does.
void nxed_use_interruptible_reader(EditLine *el);
/// Installs the prompt's SIGINT handler (remembering the old one) and clears the flag.
void nxed_prompt_sigint_begin(void);
/// Restores the SIGINT handler that was there before nxed_prompt_sigint_begin.
void nxed_prompt_sigint_end(void);
/// Nonzero if Ctrl-C came while the prompt's handler was installed.
int nxed_prompt_interrupted(void);

/// stdout/stderr/stdin for Swift (macros on some libcs).
FILE *nxed_stdin(void);
FILE *nxed_stdout(void);
FILE *nxed_stderr(void);
#endif
