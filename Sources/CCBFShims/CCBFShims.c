#include <stdio.h>
#include <cbflib/cbf.h>
#include <cbflib/cbf_simple.h>
#include "CCBFShims.h"

const char *nxcbf_api_version(void) {
    // Touch the library so that the link is real, not just a header constant.
    cbf_handle handle = NULL;
    if (cbf_make_handle(&handle) == 0) cbf_free_handle(handle);
    return CBF_API_VERSION;
}
