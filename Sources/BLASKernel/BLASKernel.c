// OpenBLAS kernel selection at process start: see include/BLASKernel.h and docs/benchmarks.md.
#define _GNU_SOURCE
#include "BLASKernel.h"

#include <math.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

// OpenBLAS's own entry points, declared here so that this target needs no include path
// (the CBLAS module links the library). Enum values are CBLAS's.
extern char *openblas_get_corename(void);
extern char *openblas_get_config(void);
extern void openblas_set_num_threads(int);
extern int openblas_get_num_threads(void);
extern void cblas_sgemm(int order, int transA, int transB, int m, int n, int k, float alpha, const float *a, int lda,
                        const float *b, int ldb, float beta, float *c, int ldc);
enum { RowMajor = 101, NoTrans = 111, Trans = 112 };

// MARK: CPU features

#if defined(__x86_64__) || defined(__i386__)
static unsigned long long xgetbv0(void) {
    unsigned eax, edx;
    __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
    return ((unsigned long long)edx << 32) | eax;
}
#endif

dt_cpu dt_cpu_read(void) {
    dt_cpu cpu;
    memset(&cpu, 0, sizeof cpu);
#if defined(__x86_64__) || defined(__i386__)
    unsigned a, b, c, d;
    if (!__get_cpuid(0, &a, &b, &c, &d)) return cpu;
    unsigned maxLeaf = a;
    char vendor[13];
    memcpy(vendor, &b, 4); memcpy(vendor + 4, &d, 4); memcpy(vendor + 8, &c, 4); vendor[12] = 0;
    cpu.vendor = !strcmp(vendor, "GenuineIntel") ? DT_VENDOR_INTEL : !strcmp(vendor, "AuthenticAMD") ? DT_VENDOR_AMD : DT_VENDOR_OTHER;
    __get_cpuid(1, &a, &b, &c, &d);
    int base = (a >> 8) & 0xF;
    cpu.family = base == 0xF ? base + ((a >> 20) & 0xFF) : base;
    cpu.model = (a >> 4) & 0xF;
    if (base == 6 || base == 0xF) cpu.model += ((a >> 16) & 0xF) << 4;
    unsigned f = 0;
    if (c & (1u << 0)) f |= DT_SSE3;
    if (c & (1u << 9)) f |= DT_SSSE3;
    if (c & (1u << 19)) f |= DT_SSE41;
    if (c & (1u << 20)) f |= DT_SSE42;
    // AVX and AVX-512 registers are usable only where the OS saves them (XCR0).
    unsigned long long xcr0 = (c & (1u << 27)) ? xgetbv0() : 0;
    bool osAVX = (xcr0 & 0x6) == 0x6, osAVX512 = osAVX && (xcr0 & 0xE0) == 0xE0;
    if (osAVX && (c & (1u << 28))) f |= DT_AVX;
    if (osAVX && (c & (1u << 12))) f |= DT_FMA;
    if (maxLeaf >= 7) {
        __get_cpuid_count(7, 0, &a, &b, &c, &d);
        if (osAVX && (b & (1u << 5))) f |= DT_AVX2;
        if (osAVX512) {
            if (b & (1u << 16)) f |= DT_AVX512F;
            if (b & (1u << 17)) f |= DT_AVX512DQ;
            if (b & (1u << 28)) f |= DT_AVX512CD;
            if (b & (1u << 30)) f |= DT_AVX512BW;
            if (b & (1u << 31)) f |= DT_AVX512VL;
            if (c & (1u << 11)) f |= DT_AVX512_VNNI;
        }
        if (d & (1u << 24)) f |= DT_AMX_TILE;
        if (d & (1u << 22)) f |= DT_AMX_BF16;
        unsigned sub = a;
        if (sub >= 1) {
            __get_cpuid_count(7, 1, &a, &b, &c, &d);
            if (osAVX512 && (a & (1u << 5))) f |= DT_AVX512_BF16;
        }
    }
    cpu.features = f;
    __get_cpuid(0x80000000, &a, &b, &c, &d);
    if (a >= 0x80000004) {
        unsigned r[12];
        for (unsigned i = 0; i < 3; i++) __get_cpuid(0x80000002 + i, &r[4 * i], &r[4 * i + 1], &r[4 * i + 2], &r[4 * i + 3]);
        memcpy(cpu.brand, r, 48);
        cpu.brand[48] = 0;
        // Trim the padding some CPUs put around the name.
        char *s = cpu.brand;
        while (*s == ' ') s++;
        memmove(cpu.brand, s, strlen(s) + 1);
        for (size_t n = strlen(cpu.brand); n > 0 && cpu.brand[n - 1] == ' '; n--) cpu.brand[n - 1] = 0;
    }
#endif
    return cpu;
}

// MARK: Kernels

// OpenBLAS 0.3.21's x86-64 DYNAMIC_ARCH kernels: the ISA level each is written for and the
// features it executes. Levels order the kernels for "weaker than the CPU supports".
static const struct { const char *name; int level; unsigned needs; } kernels[] = {
    {"Prescott", 1, DT_SSE3}, {"Atom", 1, DT_SSSE3}, {"Opteron", 1, 0}, {"Opteron_SSE3", 1, DT_SSE3},
    {"Core2", 2, DT_SSSE3}, {"Penryn", 2, DT_SSE41}, {"Dunnington", 2, DT_SSE41}, {"Barcelona", 2, DT_SSE3},
    {"Bobcat", 2, DT_SSSE3}, {"Nano", 2, DT_SSSE3},
    {"Nehalem", 3, DT_SSE42},
    {"Sandybridge", 4, DT_AVX}, {"Bulldozer", 4, DT_AVX}, {"Piledriver", 4, DT_AVX | DT_FMA},
    {"Steamroller", 4, DT_AVX | DT_FMA}, {"Excavator", 4, DT_AVX | DT_FMA | DT_AVX2},
    {"Haswell", 5, DT_AVX2 | DT_FMA}, {"Zen", 5, DT_AVX2 | DT_FMA},
    {"SkylakeX", 6, DT_AVX512F | DT_AVX512DQ | DT_AVX512CD | DT_AVX512BW | DT_AVX512VL},
    {"Cooperlake", 6, DT_AVX512F | DT_AVX512DQ | DT_AVX512CD | DT_AVX512BW | DT_AVX512VL | DT_AVX512_BF16},
    {"SapphireRapids", 6, DT_AVX512F | DT_AVX512DQ | DT_AVX512CD | DT_AVX512BW | DT_AVX512VL | DT_AVX512_BF16 | DT_AMX_TILE | DT_AMX_BF16},
};

static int kernelIndex(const char *core) {
    if (!core) return -1;
    for (size_t i = 0; i < sizeof kernels / sizeof kernels[0]; i++)
        if (!strcasecmp(core, kernels[i].name)) return (int)i;
    return -1;
}

int dt_kernel_level(const char *core) {
    int i = kernelIndex(core);
    return i < 0 ? 0 : kernels[i].level;
}

unsigned dt_kernel_needs(const char *core) {
    int i = kernelIndex(core);
    return i < 0 ? 0 : kernels[i].needs;
}

const char *dt_best_kernel(const dt_cpu *cpu) {
    unsigned f = cpu->features;
    unsigned avx512 = dt_kernel_needs("SkylakeX");
    if ((f & avx512) == avx512) return (f & DT_AVX512_BF16) ? "Cooperlake" : "SkylakeX";
    if ((f & (DT_AVX2 | DT_FMA)) == (DT_AVX2 | DT_FMA)) return cpu->vendor == DT_VENDOR_AMD ? "Zen" : "Haswell";
    if (f & DT_AVX) return "Sandybridge";
    if (f & DT_SSE42) return "Nehalem";
    if (f & DT_SSSE3) return "Core2";
    if (f & DT_SSE3) return "Prescott";
    return NULL;
}

const char *dt_kernel_to_select(const dt_cpu *cpu, const char *current) {
    const char *best = dt_best_kernel(cpu);
    // A kernel name we do not know (a newer OpenBLAS) is OpenBLAS's business: keep it.
    if (!best || dt_kernel_level(current) == 0) return NULL;
    return dt_kernel_level(current) < dt_kernel_level(best) ? best : NULL;
}

// MARK: Self-check

static sigjmp_buf checkJump;
static void onFault(int sig) { siglongjmp(checkJump, sig); }

static double checkShape(int m, int n, int k, int ta, int tb) {
    float *a = malloc(sizeof(float) * m * k), *b = malloc(sizeof(float) * k * n), *c = malloc(sizeof(float) * m * n);
    unsigned s = 12345u + (unsigned)(m * 31 + n * 7 + k);
    for (int i = 0; i < m * k; i++) { s = s * 1664525u + 1013904223u; a[i] = (float)((s >> 8) * (1.0 / 16777216.0) * 2 - 1); }
    for (int i = 0; i < k * n; i++) { s = s * 1664525u + 1013904223u; b[i] = (float)((s >> 8) * (1.0 / 16777216.0) * 2 - 1); }
    for (int i = 0; i < m * n; i++) c[i] = (float)(i % 7) * 0.25f - 0.75f;
    // Row-major: A is [m, k] (or [k, m] transposed), B is [k, n] (or [n, k]).
    cblas_sgemm(RowMajor, ta ? Trans : NoTrans, tb ? Trans : NoTrans, m, n, k, 1.0f, a, ta ? m : k, b, tb ? k : n, 0.5f, c, n);
    double worst = 0;
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            double ref = 0.5 * ((double)((i * n + j) % 7) * 0.25 - 0.75), scale = fabs(ref);
            for (int p = 0; p < k; p++) {
                double x = ta ? a[p * m + i] : a[i * k + p], y = tb ? b[j * k + p] : b[p * n + j];
                ref += x * y;
                scale += fabs(x * y);
            }
            double e = fabs((double)c[i * n + j] - ref) / (scale + 1e-30);
            if (!(e <= worst)) worst = isnan(e) ? INFINITY : e;
        }
    free(a); free(b); free(c);
    return worst;
}

double dt_sgemm_self_check(void) {
    // One thread: a fault must arrive on this thread, whose stack the jump returns to.
    int threads = openblas_get_num_threads();
    openblas_set_num_threads(1);
    struct sigaction act, old[4];
    memset(&act, 0, sizeof act);
    act.sa_handler = onFault;
    sigemptyset(&act.sa_mask);
    const int sigs[4] = {SIGILL, SIGSEGV, SIGBUS, SIGFPE};
    for (int i = 0; i < 4; i++) sigaction(sigs[i], &act, &old[i]);
    double worst = 0;
    if (sigsetjmp(checkJump, 1) == 0) {
        // Edge paths (small, odd) and the main path (several register blocks, K past one panel).
        static const int shapes[][3] = {{5, 3, 7}, {67, 45, 129}, {256, 200, 300}};
        for (int s = 0; s < 3; s++)
            for (int t = 0; t < 4; t++) {
                double e = checkShape(shapes[s][0], shapes[s][1], shapes[s][2], t & 1, t >> 1);
                if (!(e <= worst)) worst = e;
            }
    } else {
        worst = 1e30;  // an illegal instruction or a crash inside the kernel
    }
    for (int i = 0; i < 4; i++) sigaction(sigs[i], &old[i], NULL);
    openblas_set_num_threads(threads);
    return worst;
}

// MARK: The start-up decision

static dt_kernel_state state;

dt_kernel_state dt_kernel_state_read(void) { return state; }

static const double tolerance = 1e-4;

static void copy(char *dst, size_t size, const char *src) {
    snprintf(dst, size, "%s", src ? src : "");
}

static void featureSummary(const dt_cpu *cpu, char *out, size_t size) {
    unsigned f = cpu->features;
    snprintf(out, size, "%s", (f & DT_AVX512F) ? ((f & DT_AVX512_BF16) ? "AVX-512 with BF16" : "AVX-512")
                              : (f & DT_AVX2) ? "AVX2 + FMA" : (f & DT_AVX) ? "AVX" : (f & DT_SSE42) ? "SSE4.2" : "SSE3");
}

/// Replaces this process by a fresh start of the same program with the environment as set.
static void restart(char **argv) {
    const char *n = getenv("DEEPTRAIN_BLAS_EXECS");
    int count = n ? atoi(n) : 0;
    if (count >= 4 || !argv) return;  // never loop; carry on with what this process has
    char buf[8];
    snprintf(buf, sizeof buf, "%d", count + 1);
    setenv("DEEPTRAIN_BLAS_EXECS", buf, 1);
    fflush(NULL);
    execv("/proc/self/exe", argv);
    // execv returns only on failure: carry on with this process's kernel.
}

static void clearOurs(void) {
    unsetenv("DEEPTRAIN_BLAS_SET");
    unsetenv("DEEPTRAIN_BLAS_PHASE");
    unsetenv("DEEPTRAIN_BLAS_DEFAULT");
    unsetenv("DEEPTRAIN_BLAS_REASON");
    unsetenv("DEEPTRAIN_BLAS_FELL_BACK");
}

static void firstStart(const dt_cpu *cpu, const char *core, char **argv, bool needRestart) {
    char features[32];
    featureSummary(cpu, features, sizeof features);
    copy(state.openblas_choice, sizeof state.openblas_choice, core);
    const char *config = openblas_get_config();
    if (!config || !strstr(config, "DYNAMIC_ARCH")) {
        // An OpenBLAS built for one kernel ignores OPENBLAS_CORETYPE: nothing to choose.
        snprintf(state.reason, sizeof state.reason, "OpenBLAS is built for one kernel (no DYNAMIC_ARCH): %s kept", core);
        if (needRestart) restart(argv);
        return;
    }
    const char *best = dt_kernel_to_select(cpu, core);
    if (best) {
        setenv("OPENBLAS_CORETYPE", best, 1);
        setenv("DEEPTRAIN_BLAS_SET", best, 1);
        setenv("DEEPTRAIN_BLAS_PHASE", "verify", 1);
        setenv("DEEPTRAIN_BLAS_DEFAULT", core, 1);
        restart(argv);
        // No restart: the weaker kernel stays.
        clearOurs();
        unsetenv("OPENBLAS_CORETYPE");
        snprintf(state.reason, sizeof state.reason, "OpenBLAS chose %s, weaker than this CPU's best %s (%s), but the restart to select it failed", core, best, features);
        return;
    }
    if (!dt_best_kernel(cpu))
        snprintf(state.reason, sizeof state.reason, "OpenBLAS chose %s; no CPUID here to compare with: kept", core);
    else if (dt_kernel_level(core) == 0)
        snprintf(state.reason, sizeof state.reason, "OpenBLAS chose %s, a kernel this DeepTrain does not rank: kept", core);
    else
        snprintf(state.reason, sizeof state.reason, "OpenBLAS chose %s by itself, a kernel as strong as this CPU supports (%s): kept", core, features);
    if (needRestart) restart(argv);
}

__attribute__((constructor)) static void dt_select_at_start(int argc, char **argv, char **envp) {
    (void)argc; (void)envp;
    const char *corePtr = openblas_get_corename();
    char core[32];
    copy(core, sizeof core, corePtr ? corePtr : "unknown");
    copy(state.kernel, sizeof state.kernel, core);
    copy(state.openblas_choice, sizeof state.openblas_choice, "-");
    // OpenBLAS's idle threads spin for 2^28 cycles after each call unless told otherwise; it
    // reads OPENBLAS_THREAD_TIMEOUT when it loads, so setting it needs a restart too (one
    // restart does both). docs/benchmarks.md measures it.
    bool needRestart = getenv("OPENBLAS_THREAD_TIMEOUT") == NULL;
    if (needRestart) setenv("OPENBLAS_THREAD_TIMEOUT", "4", 1);
    dt_cpu cpu = dt_cpu_read();
    const char *user = getenv("OPENBLAS_CORETYPE"), *set = getenv("DEEPTRAIN_BLAS_SET"), *phase = getenv("DEEPTRAIN_BLAS_PHASE");
    const char *sim = getenv("DEEPTRAIN_BLAS_SIMULATE_DEFAULT"), *select = getenv("DEEPTRAIN_BLAS_SELECT");

    if (user && set && phase && !strcasecmp(user, set)) {
        if (!strcmp(phase, "simulated")) {
            // Test knob: this start stands for OpenBLAS having chosen `core` by itself.
            clearOurs();
            unsetenv("OPENBLAS_CORETYPE");
            firstStart(&cpu, core, argv, needRestart);
        } else if (!strcmp(phase, "verify")) {
            char def[32];
            copy(def, sizeof def, getenv("DEEPTRAIN_BLAS_DEFAULT"));
            copy(state.openblas_choice, sizeof state.openblas_choice, def);
            const char *fault = getenv("DEEPTRAIN_BLAS_FAULT");
            double err = (fault && !strcmp(fault, "self-check")) ? 1.0 : dt_sgemm_self_check();
            char features[32];
            featureSummary(&cpu, features, sizeof features);
            if (err < tolerance && dt_kernel_level(core) > dt_kernel_level(def)) {
                snprintf(state.reason, sizeof state.reason,
                         "OpenBLAS chose %s by itself (it does not know this CPU); the CPU supports %s: selected %s, "
                         "sgemm self-check passed (max relative error %.1e)", def, features, core, err);
                setenv("DEEPTRAIN_BLAS_PHASE", "done", 1);
                setenv("DEEPTRAIN_BLAS_REASON", state.reason, 1);
            } else {
                char why[96];
                if (err < tolerance) snprintf(why, sizeof why, "OpenBLAS ran %s instead of %s", core, set);
                else if (err >= 1e29) snprintf(why, sizeof why, "%s stopped with an illegal instruction or a fault", core);
                else snprintf(why, sizeof why, "%s failed its sgemm self-check (max relative error %.1e)", core, err);
                fprintf(stderr, "deeptrain: warning: %s; falling back to OpenBLAS's own choice %s\n", why, def);
                snprintf(state.reason, sizeof state.reason, "%s; fell back to OpenBLAS's own choice %s", why, def);
                setenv("OPENBLAS_CORETYPE", def, 1);
                setenv("DEEPTRAIN_BLAS_SET", def, 1);
                setenv("DEEPTRAIN_BLAS_PHASE", "done", 1);
                setenv("DEEPTRAIN_BLAS_REASON", state.reason, 1);
                setenv("DEEPTRAIN_BLAS_FELL_BACK", "1", 1);
                state.fell_back = true;
                restart(argv);
            }
        } else {
            // Selected by a parent process on this machine (mpirun ranks, test children).
            copy(state.openblas_choice, sizeof state.openblas_choice, getenv("DEEPTRAIN_BLAS_DEFAULT"));
            copy(state.reason, sizeof state.reason, getenv("DEEPTRAIN_BLAS_REASON"));
            state.fell_back = getenv("DEEPTRAIN_BLAS_FELL_BACK") != NULL;
            if (needRestart) restart(argv);
        }
    } else if (user) {
        clearOurs();
        state.user_set = true;
        unsigned needs = dt_kernel_needs(user), missing = needs & ~cpu.features;
        int n = snprintf(state.reason, sizeof state.reason, "OPENBLAS_CORETYPE=%s is set in the environment: kept (DeepTrain never overrides it)", user);
        if (strcasecmp(user, core)) n += snprintf(state.reason + n, sizeof state.reason - (size_t)n, "; OpenBLAS runs %s", core);
        if (missing && !strcasecmp(user, core) && !getenv("DEEPTRAIN_BLAS_WARNED")) {
            fprintf(stderr, "deeptrain: warning: OPENBLAS_CORETYPE=%s needs CPU features this CPU lacks; it may stop with an illegal instruction\n", user);
            setenv("DEEPTRAIN_BLAS_WARNED", "1", 1);
        }
        if (needRestart) restart(argv);
    } else if (select && !strcmp(select, "0")) {
        copy(state.openblas_choice, sizeof state.openblas_choice, core);
        snprintf(state.reason, sizeof state.reason, "DEEPTRAIN_BLAS_SELECT=0: OpenBLAS's own choice %s kept", core);
        if (needRestart) restart(argv);
    } else if (sim && *sim) {
        setenv("OPENBLAS_CORETYPE", sim, 1);
        setenv("DEEPTRAIN_BLAS_SET", sim, 1);
        setenv("DEEPTRAIN_BLAS_PHASE", "simulated", 1);
        unsetenv("DEEPTRAIN_BLAS_SIMULATE_DEFAULT");
        restart(argv);
    } else {
        firstStart(&cpu, core, argv, needRestart);
    }
    // Settled without a restart: a child process starts its own count.
    unsetenv("DEEPTRAIN_BLAS_EXECS");
}
