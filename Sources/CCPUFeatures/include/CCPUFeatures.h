// CCPUFeatures: which vector instructions this CPU and OS allow, asked on first use.
// Not __builtin_cpu_supports: it links libgcc's cpuinfo constructor, which runs CPUID at
// every start of nxlua, and CPUID traps to the hypervisor on a virtual machine (about
// 0.1 ms of every `nxlua -e ''` there; docs/architecture.md, "Start-up").
#ifndef NXLUA_CCPUFEATURES_H
#define NXLUA_CCPUFEATURES_H

// 1 when AVX2 instructions may run (the CPU has them and the OS saves the YMM state).
int nxl_cpu_has_avx2(void);

#endif
