#include <cairo/cairo.h>
#include <cairo/cairo-svg.h>
#include <cairo/cairo-pdf.h>
// cairo's declarations only: nothing links libcairo. CCairoShims opens it with dlopen on
// first use, so nxlua starts without paying for it (docs/architecture.md, "Start-up").
