// Decoding-shaped sgemm (M = 1..64 rows against a weight) on one thread: OpenBLAS, libxsmm
// 1.17's JIT kernels and BLIS 0.9.0 (through its own cblas_sgemm, loaded apart with dlopen so
// that its BLAS symbols do not replace OpenBLAS's). Best of REPEATS, GFLOP/s, one line of
// JSON per shape. Issue 33 asks for this before any small-GEMM library is adopted.
//
//   apt-get install libxsmm-dev libblis-dev      (not DeepTrain dependencies)
//   cc -O2 tools/small-gemm/bench.c -o /tmp/small-gemm -lopenblas /usr/lib/libxsmm.a \
//      /usr/lib/libxsmmnoblas.a -lpthread -lm -ldl -lrt
//   OPENBLAS_NUM_THREADS=1 BLIS_NUM_THREADS=1 /tmp/small-gemm
//
// The product is decoding's C[M×N] = X[M×K]·B[K×N], row-major, B as a weight stored [K, N]
// (the layout `linear`'s input gradient uses; libxsmm 1.17's JIT takes no transposes).
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <libxsmm.h>

enum { RowMajor = 101, NoTrans = 111 };
void cblas_sgemm(int, int, int, int, int, int, float, const float *, int, const float *, int, float, float *, int);
typedef void (*sgemm_fn)(int, int, int, int, int, int, float, const float *, int, const float *, int, float, float *, int);

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static float maxdiff(const float *x, const float *y, long n) {
    float d = 0;
    for (long i = 0; i < n; i++) { float e = x[i] > y[i] ? x[i] - y[i] : y[i] - x[i]; if (e > d) d = e; }
    return d;
}

int main(void) {
    enum { REPEATS = 200 };
    void *blis = dlopen("/usr/lib/x86_64-linux-gnu/libblis.so", RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
    sgemm_fn blis_sgemm = blis ? (sgemm_fn)dlsym(blis, "cblas_sgemm") : NULL;
    libxsmm_init();
    const int ms[] = {1, 2, 4, 8, 16, 32, 64};
    const int nk[][2] = {{256, 256}, {1024, 256}, {256, 1024}, {4096, 256}};
    for (int s = 0; s < 4; s++) {
        for (int q = 0; q < 7; q++) {
            int M = ms[q], N = nk[s][0], K = nk[s][1];
            float *x = malloc(sizeof(float) * M * K), *w = malloc(sizeof(float) * K * N);
            float *c0 = calloc((size_t)M * N, sizeof(float)), *c1 = calloc((size_t)M * N, sizeof(float)), *c2 = calloc((size_t)M * N, sizeof(float));
            for (long i = 0; i < (long)M * K; i++) x[i] = (float)((i * 7919) % 101) / 101.0f - 0.5f;
            for (long i = 0; i < (long)K * N; i++) w[i] = (float)((i * 104729) % 97) / 97.0f - 0.5f;
            // Column-major view of the row-major product: Cᵀ[N×M] = Wᵀ[N×K]·Xᵀ[K×M].
            libxsmm_blasint lda = N, ldb = K, ldc = N;
            float alpha = 1, beta = 0;
            libxsmm_smmfunction jit = libxsmm_smmdispatch(N, M, K, &lda, &ldb, &ldc, &alpha, &beta, NULL, NULL);
            double tb = 1e9, tx = 1e9, tl = 1e9;
            for (int r = 0; r < REPEATS; r++) {
                double t = now();
                cblas_sgemm(RowMajor, NoTrans, NoTrans, M, N, K, 1, x, K, w, N, 0, c0, N);
                t = now() - t; if (t < tb) tb = t;
                if (jit) { t = now(); jit(w, x, c1); t = now() - t; if (t < tx) tx = t; }
                if (blis_sgemm) { t = now(); blis_sgemm(RowMajor, NoTrans, NoTrans, M, N, K, 1, x, K, w, N, 0, c2, N); t = now() - t; if (t < tl) tl = t; }
            }
            double f = 2.0 * M * N * K / 1e9;
            printf("{\"m\": %d, \"n\": %d, \"k\": %d, \"openblas_gflops\": %.1f, \"libxsmm_jit_gflops\": %.1f, \"blis_gflops\": %.1f, "
                   "\"libxsmm_max_diff\": %.2g, \"blis_max_diff\": %.2g}\n",
                   M, N, K, f / tb, jit ? f / tx : 0.0, blis_sgemm ? f / tl : 0.0,
                   jit ? maxdiff(c0, c1, (long)M * N) : -1.0, blis_sgemm ? maxdiff(c0, c2, (long)M * N) : -1.0);
            free(x); free(w); free(c0); free(c1); free(c2);
        }
    }
    libxsmm_finalize();
    return 0;
}
