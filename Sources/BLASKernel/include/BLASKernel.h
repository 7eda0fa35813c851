#ifndef DEEPTRAIN_BLAS_KERNEL_H
#define DEEPTRAIN_BLAS_KERNEL_H
// OpenBLAS kernel selection at process start (docs/benchmarks.md, "BLAS kernel selection").
// Debian's DYNAMIC_ARCH OpenBLAS picks its kernels from a table of CPU models it knew when it
// was built; on a newer CPU it falls back to generic SSE3 code (Prescott) at a fraction of the
// speed (docs/design.md §6.6). A constructor in this library runs before main, reads the CPU's features with CPUID,
// compares them with the kernel OpenBLAS chose and, when OpenBLAS chose a weaker one, re-executes
// the process once with OPENBLAS_CORETYPE set to the best kernel the CPU can run (OpenBLAS reads
// it only when it loads). The new process checks that kernel's sgemm against a plain loop
// before anything else runs and falls back to OpenBLAS's own choice, with a warning, if the
// check fails. A user's OPENBLAS_CORETYPE is never overridden.

#include <stdbool.h>

// CPU feature bits (dt_cpu.features).
typedef enum {
    DT_SSE3 = 1 << 0, DT_SSSE3 = 1 << 1, DT_SSE41 = 1 << 2, DT_SSE42 = 1 << 3,
    DT_AVX = 1 << 4, DT_AVX2 = 1 << 5, DT_FMA = 1 << 6,
    DT_AVX512F = 1 << 7, DT_AVX512DQ = 1 << 8, DT_AVX512CD = 1 << 9, DT_AVX512BW = 1 << 10,
    DT_AVX512VL = 1 << 11, DT_AVX512_BF16 = 1 << 12, DT_AVX512_VNNI = 1 << 13,
    DT_AMX_TILE = 1 << 14, DT_AMX_BF16 = 1 << 15,
} dt_feature;

enum { DT_VENDOR_OTHER = 0, DT_VENDOR_INTEL = 1, DT_VENDOR_AMD = 2 };

typedef struct {
    int vendor;
    int family;       // display family (base + extended)
    int model;        // display model (base + extended << 4 where it applies)
    unsigned features;  // usable: AVX and AVX-512 bits only where the OS saves their registers
    char brand[49];
} dt_cpu;

/// The CPU this process runs on (CPUID; all zero on non-x86 machines).
dt_cpu dt_cpu_read(void);

/// What a kernel of OpenBLAS's x86-64 DYNAMIC_ARCH list needs: an ISA level 0 (unknown) …
/// 6 (AVX-512), and the feature bits. Names compare case-insensitively.
int dt_kernel_level(const char *core);
unsigned dt_kernel_needs(const char *core);

/// The best kernel for `cpu` (SkylakeX or Cooperlake for AVX-512, Zen on AMD with AVX2,
/// Haswell on other AVX2 CPUs, ... Prescott), or NULL on a non-x86 CPU.
const char *dt_best_kernel(const dt_cpu *cpu);

/// The decision, as a pure function of what it depends on (unit-tested with other CPUs'
/// features): the kernel to switch to, or NULL to keep OpenBLAS's choice `current`.
const char *dt_kernel_to_select(const dt_cpu *cpu, const char *current);

/// sgemm against a plain double loop, in all four transpose combinations, on shapes that reach
/// the kernel's main and edge paths. Returns the largest error relative to the sum of |a||b|
/// (NaN or 1e30 for an illegal instruction), and 0 < value < 1e-5 for a good kernel.
double dt_sgemm_self_check(void);

/// What the start-up selection did, for `deeptrain env` and every bench JSON.
typedef struct {
    char kernel[32];          // the kernel in use (openblas_get_corename)
    char openblas_choice[32]; // the kernel OpenBLAS chose by itself
    char reason[320];         // why the kernel in use is in use, in a sentence
    bool user_set;            // OPENBLAS_CORETYPE came from the user
    bool fell_back;           // the selected kernel failed its self-check
} dt_kernel_state;

dt_kernel_state dt_kernel_state_read(void);

#endif
