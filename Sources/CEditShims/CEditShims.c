#include "CEditShims.h"
#include <string.h>

EditLine *nxed_init(const char *prog, FILE *in, FILE *out, FILE *err) {
    return el_init(prog, in, out, err);
}
void nxed_set_prompt(EditLine *el, nxed_PromptFn fn) { el_set(el, EL_PROMPT, fn); }
void nxed_set_editor(EditLine *el, const char *mode) { el_set(el, EL_EDITOR, mode); }
void nxed_set_signal(EditLine *el, int on) { el_set(el, EL_SIGNAL, on); }
void nxed_bind_completion(EditLine *el, nxed_CompleteFn fn) {
    el_set(el, EL_ADDFN, "nxlua-complete", "complete the word before the cursor", fn);
    el_set(el, EL_BIND, "^I", "nxlua-complete", NULL);
}
void nxed_set_history(EditLine *el, History *h) { el_set(el, EL_HIST, history, h); }
void nxed_set_clientdata(EditLine *el, void *data) { el_set(el, EL_CLIENTDATA, data); }
void *nxed_get_clientdata(EditLine *el) {
    void *data = NULL;
    el_get(el, EL_CLIENTDATA, &data);
    return data;
}
void nxed_source_default(EditLine *el) { el_source(el, NULL); }

History *nxed_history_init(int size) {
    HistEvent ev;
    History *h = history_init();
    if (h != NULL) history(h, &ev, H_SETSIZE, size);
    return h;
}
void nxed_history_end(History *h) { history_end(h); }
void nxed_history_enter(History *h, const char *line) {
    HistEvent ev;
    history(h, &ev, H_ENTER, line);
}
int nxed_history_load(History *h, const char *path) {
    HistEvent ev;
    return history(h, &ev, H_LOAD, path);
}
int nxed_history_save(History *h, const char *path) {
    HistEvent ev;
    return history(h, &ev, H_SAVE, path);
}
int nxed_history_length(History *h) {
    HistEvent ev;
    if (history(h, &ev, H_GETSIZE) < 0) return 0;
    return ev.num;
}
void nxed_history_unique(History *h, int on) {
    HistEvent ev;
    history(h, &ev, H_SETUNIQUE, on);
}

const char *nxed_line(EditLine *el, int *cursor, int *length) {
    const LineInfo *li = el_line(el);
    *cursor = (int)(li->cursor - li->buffer);
    *length = (int)(li->lastchar - li->buffer);
    return li->buffer;
}

FILE *nxed_stdin(void) { return stdin; }
FILE *nxed_stdout(void) { return stdout; }
FILE *nxed_stderr(void) { return stderr; }
