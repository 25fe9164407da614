// CCairoShims: libcairo opened at run time, plus what Swift cannot call comfortably.
//
// Why dlopen: most runs of nxlua never draw a figure, and libcairo pulls in pixman,
// libpng, freetype, fontconfig and X libraries: linking it would add to every start
// (docs/architecture.md, "Start-up"). nxcairo_load() opens NXCAIRO_SONAME on first use
// and fills a table of function pointers typed from cairo's own prototypes
// (__typeof__), so a wrong signature cannot compile.
//
// Why wrappers: PNG bytes in memory need a C write callback (nxcairo_png_bytes), and
// figures are written as PNG by nxcairo_png_rgb (zlib, which nxlua links anyway).
// Prefixed nxcairo_.
#ifndef NXLUA_CCAIROSHIMS_H
#define NXLUA_CCAIROSHIMS_H
#include <cairo/cairo.h>
#include <cairo/cairo-svg.h>
#include <cairo/cairo-pdf.h>
#include <stddef.h>
#include <stdint.h>

/// The one place that names libcairo's shared object (NativeLibraries uses it too).
#define NXCAIRO_SONAME "libcairo.so.2"

/// The functions nxlua calls; X(name) per function.
#define NXCAIRO_FUNCTIONS(X) \
    X(cairo_version_string) X(cairo_image_surface_create) X(cairo_image_surface_get_data) \
    X(cairo_image_surface_get_stride) X(cairo_image_surface_get_width) X(cairo_image_surface_get_height) \
    X(cairo_surface_flush) X(cairo_surface_mark_dirty) \
    X(cairo_surface_destroy) X(cairo_surface_status) X(cairo_surface_finish) \
    X(cairo_surface_write_to_png) X(cairo_surface_write_to_png_stream) \
    X(cairo_svg_surface_create) X(cairo_pdf_surface_create) \
    X(cairo_create) X(cairo_destroy) X(cairo_status) X(cairo_status_to_string) \
    X(cairo_save) X(cairo_restore) X(cairo_translate) X(cairo_scale) X(cairo_rotate) \
    X(cairo_set_source_rgb) X(cairo_set_source_rgba) X(cairo_set_source_surface) \
    X(cairo_get_source) X(cairo_pattern_set_filter) X(cairo_paint) \
    X(cairo_new_path) X(cairo_new_sub_path) X(cairo_move_to) X(cairo_line_to) X(cairo_rel_line_to) \
    X(cairo_rectangle) X(cairo_arc) X(cairo_close_path) \
    X(cairo_fill) X(cairo_fill_preserve) X(cairo_stroke) X(cairo_stroke_preserve) \
    X(cairo_clip) X(cairo_reset_clip) \
    X(cairo_set_line_width) X(cairo_set_line_cap) X(cairo_set_line_join) X(cairo_set_dash) \
    X(cairo_set_antialias) \
    X(cairo_select_font_face) X(cairo_set_font_size) X(cairo_text_extents) X(cairo_show_text)

#define NXCAIRO_FIELD(name) __typeof__(name) *_Nonnull name;
/// Every function pointer is set once nxcairo_load() has succeeded.
typedef struct nxcairo_api {
    NXCAIRO_FUNCTIONS(NXCAIRO_FIELD)
} nxcairo_api;
#undef NXCAIRO_FIELD

/// Opens libcairo (once; thread-safe) and resolves every function. Returns NULL with the
/// reason in `why` if the library or a symbol is missing.
const nxcairo_api *_Nullable nxcairo_load(char *_Nonnull why, size_t whylen);

/// An opaque ARGB32 image (cairo's memory: B, G, R, A bytes per pixel, `stride` bytes
/// per row) as an 8-bit RGB PNG in a malloc'd buffer (*out, *len; release with
/// nxcairo_free), deflated by zlib at `level` with no row filters, bands of rows on the
/// cores (one zlib stream, as pigz makes it). Why not cairo's own writer: libpng's
/// adaptive filters and level 6 took 20 to 60 ms for one 800 x 600 figure, more than
/// drawing it; level 1 unfiltered took about 8 ms on one core and compresses a detector
/// frame's picture as well. Returns 0, or -1 when memory or zlib fails.
int nxcairo_png_rgb(const uint8_t *_Nonnull argb, int width, int height, int stride, int level,
                    uint8_t *_Nullable *_Nonnull out, size_t *_Nonnull len);

/// The surface as PNG bytes in a malloc'd buffer (*out, *len); release with
/// nxcairo_free. Returns cairo's status (CAIRO_STATUS_SUCCESS = 0).
int nxcairo_png_bytes(cairo_surface_t *_Nonnull surface, uint8_t *_Nullable *_Nonnull out, size_t *_Nonnull len);
void nxcairo_free(void *_Nullable p);
#endif
