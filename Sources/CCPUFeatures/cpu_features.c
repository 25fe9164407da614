#include "CCPUFeatures.h"
#include <stdatomic.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>

static int detect_avx2(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    // OSXSAVE (bit 27) and AVX (bit 28): then XCR0 says whether the OS saves XMM and YMM
    if ((c & (1u << 27)) == 0 || (c & (1u << 28)) == 0) return 0;
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    if ((lo & 6u) != 6u) return 0;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
    return (b & (1u << 5)) != 0;  // AVX2
}
#else
static int detect_avx2(void) { return 0; }
#endif

int nxl_cpu_has_avx2(void) {
    // -1: not asked yet; several threads asking at once all find the same answer
    static _Atomic int cached = -1;
    int v = atomic_load_explicit(&cached, memory_order_relaxed);
    if (v < 0) {
        v = detect_avx2();
        atomic_store_explicit(&cached, v, memory_order_relaxed);
    }
    return v;
}
