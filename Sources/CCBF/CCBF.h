#include <stdio.h>
#include <cbflib/cbf.h>
#include <cbflib/cbf_simple.h>
