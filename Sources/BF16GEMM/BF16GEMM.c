// A bfloat16 GEMM on AVX512-BF16 (docs/design.md §7, "Mixed precision"): float32 operands are
// rounded to bfloat16 while they are packed, `vdpbf16ps` multiplies pairs of K terms and adds
// them to float32 accumulators. The blocking is BLIS's: a KC × NC block of B packed into
// NR-wide panels (L3), an MC × KC block of A (L2), and an MR × NR tile of C in 24 registers.
#include "BF16GEMM.h"
#include <immintrin.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))

// MR rows × NR columns of C per tile; K in blocks of KC (even: a pair never straddles two).
enum { MR = 12, NR = 32, KC = 256, KP = KC / 2, MC = 192, NC = 2048 };

bool dt_bf16_supported(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512bf16");
}

// Each thread's packing buffers, allocated on its first product: A's block (MC rows × KP
// pair-words, either layout) then B's block (NC columns × KP pair-words), one allocation freed
// when the thread ends (pool threads come and go).
static _Thread_local int32_t *packedA, *packedB;
static pthread_key_t bufferKey;
static pthread_once_t bufferKeyOnce = PTHREAD_ONCE_INIT;

static void makeBufferKey(void) { pthread_key_create(&bufferKey, free); }

static int buffers(void) {
    if (packedA) return 1;
    void *p = NULL;
    if (pthread_once(&bufferKeyOnce, makeBufferKey) || posix_memalign(&p, 64, sizeof(int32_t) * (MC + NC) * KP)) return 0;
    if (pthread_setspecific(bufferKey, p)) {
        free(p);
        return 0;
    }
    packedA = p;
    packedB = packedA + MC * KP;
    return 1;
}

static inline __mmask16 lanes(int count) { return count >= 16 ? 0xFFFF : (__mmask16)((1u << (count < 0 ? 0 : count)) - 1); }

// Two rows of 16 floats (K terms 2p and 2p + 1 of 16 outputs) as 16 pair-words.
TARGET static inline __m512i pairWords(__m512 even, __m512 odd) {
    const __m512i interleave = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8,
                                                23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    return _mm512_permutexvar_epi16(interleave, (__m512i)_mm512_cvtne2ps_pbh(odd, even));
}

// 32 consecutive floats of one row (fewer at its end, zeros after) as 16 pair-words in order.
TARGET static inline __m512i rowWords(const float *x, int count) {
    __m512 lo = _mm512_maskz_loadu_ps(lanes(count), x), hi = _mm512_maskz_loadu_ps(lanes(count - 16), x + 16);
    return (__m512i)_mm512_cvtne2ps_pbh(hi, lo);
}

// A's rows i0..<i0+mc, K terms k0..<k0+kc. Not transposed: row by row, pair-word p of row r at
// r·KP + p. Transposed (A stored K × M): MR-row panels, pair-word p of the panel's row r at
// p·MR + r. Rows past mc are zeros, so a tile never reads outside the block.
TARGET static void packA(bool trans, const float *a, int lda, int i0, int mc, int k0, int kc) {
    int kp = (kc + 1) / 2, rows = (mc + MR - 1) / MR * MR;
    if (!trans) {
        for (int r = 0; r < rows; r++) {
            int32_t *dst = packedA + (long)r * KP;
            if (r >= mc) { memset(dst, 0, sizeof(int32_t) * kp); continue; }
            const float *src = a + (long)(i0 + r) * lda + k0;
            for (int p = 0; p < kp; p += 16) _mm512_mask_storeu_epi32(dst + p, lanes(kp - p), rowWords(src + 2 * p, kc - 2 * p));
        }
        return;
    }
    // Along A's stored rows (two K terms at a time) across every panel: each row is read once,
    // front to back, where walking a panel's 12 columns down all the rows would touch a new
    // cache line (and page) per row for every panel — cold when A comes from memory.
    for (int p = 0; p < kp; p++) {
        const float *even = a + (long)(k0 + 2 * p) * lda + i0;
        bool odd = 2 * p + 1 < kc;
        for (int s = 0; s < rows; s += MR) {
            __mmask16 m = lanes(mc - s < MR ? mc - s : MR);
            __m512 e = _mm512_maskz_loadu_ps(m, even + s);
            __m512 o = odd ? _mm512_maskz_loadu_ps(m, even + lda + s) : _mm512_setzero_ps();
            _mm512_mask_storeu_epi32(packedA + (long)s * KP + p * MR, lanes(MR), pairWords(e, o));
        }
    }
}

// 16 vectors of 16 words (row j: words q = 0..15) become 16 vectors of 16 words (row q: the
// rows' word q): within 128-bit lanes by unpacking, then across lanes by shuffles.
TARGET static inline void transpose16(__m512i r[16]) {
    __m512i t[16], u[16];
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
    }
    // u[4i + c], lane L: rows 4i..4i+3 at word 4L + c.
    for (int i = 0; i < 4; i++) {
        u[4 * i] = _mm512_unpacklo_epi64(t[4 * i], t[4 * i + 2]);
        u[4 * i + 1] = _mm512_unpackhi_epi64(t[4 * i], t[4 * i + 2]);
        u[4 * i + 2] = _mm512_unpacklo_epi64(t[4 * i + 1], t[4 * i + 3]);
        u[4 * i + 3] = _mm512_unpackhi_epi64(t[4 * i + 1], t[4 * i + 3]);
    }
    // Word 4L + c of every row: lane L of u[c], u[4 + c], u[8 + c], u[12 + c].
    for (int c = 0; c < 4; c++) {
        __m512i v0 = _mm512_shuffle_i32x4(u[c], u[4 + c], 0x44), v1 = _mm512_shuffle_i32x4(u[c], u[4 + c], 0xEE);
        __m512i w0 = _mm512_shuffle_i32x4(u[8 + c], u[12 + c], 0x44), w1 = _mm512_shuffle_i32x4(u[8 + c], u[12 + c], 0xEE);
        r[c] = _mm512_shuffle_i32x4(v0, w0, 0x88);
        r[4 + c] = _mm512_shuffle_i32x4(v0, w0, 0xDD);
        r[8 + c] = _mm512_shuffle_i32x4(v1, w1, 0x88);
        r[12 + c] = _mm512_shuffle_i32x4(v1, w1, 0xDD);
    }
}

// B's columns j0..<j0+nc, K terms k0..<k0+kc, as NR-column panels: pair-word p of the panel's
// column j at p·NR + j; columns past nc are zeros.
TARGET static void packB(bool trans, const float *b, int ldb, int j0, int nc, int k0, int kc) {
    int kp = (kc + 1) / 2;
    if (!trans) {
        // Along B's stored rows across every panel, for packA's reason.
        for (int p = 0; p < kp; p++) {
            const float *even = b + (long)(k0 + 2 * p) * ldb + j0;
            bool odd = 2 * p + 1 < kc;
            for (int s = 0; s < nc; s += NR) {
                int width = nc - s < NR ? nc - s : NR;
                for (int h = 0; h < NR; h += 16) {
                    __mmask16 m = lanes(width - h);
                    __m512 e = _mm512_maskz_loadu_ps(m, even + s + h);
                    __m512 o = odd ? _mm512_maskz_loadu_ps(m, even + ldb + s + h) : _mm512_setzero_ps();
                    _mm512_store_si512(packedB + (long)s * KP + p * NR + h, pairWords(e, o));
                }
            }
        }
        return;
    }
    for (int s = 0; s < nc; s += NR) {
        int32_t *panel = packedB + (long)s * KP;
        int width = nc - s < NR ? nc - s : NR;
        // Stored N × K: a column's K terms are adjacent, so 16 columns' next 16 pair-words are
        // 16 row loads, transposed into 16 rows of the panel.
        for (int p = 0; p < kp; p += 16) {
            int count = kp - p < 16 ? kp - p : 16;
            for (int h = 0; h < NR; h += 16) {
                __m512i r[16];
                for (int j = 0; j < 16; j++) {
                    const float *src = b + (long)(j0 + s + h + j) * ldb + k0 + 2 * p;
                    r[j] = h + j < width ? rowWords(src, kc - 2 * p) : _mm512_setzero_si512();
                }
                transpose16(r);
                for (int q = 0; q < count; q++) _mm512_store_si512(panel + (p + q) * NR + h, r[q]);
            }
        }
    }
}

// One MR × NR tile: acc = Σ_p A(r, p)·B(p, ·) over kp pair-words, A(r, p) at a[r·rs + p·cs];
// then C = alpha·acc + beta·C on its mr × nr valid part (beta 0: C is not read).
TARGET static inline __attribute__((always_inline)) void tile(int kp, const int32_t *a, long rs, long cs, const int32_t *b,
                                                             float *c, int ldc, int mr, int nr, float alpha, float beta) {
    __m512 acc[MR][2];
    for (int r = 0; r < MR; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    for (int p = 0; p < kp; p++) {
        __m512bh b0 = (__m512bh)_mm512_load_si512(b + p * NR), b1 = (__m512bh)_mm512_load_si512(b + p * NR + 16);
#pragma clang loop unroll(full)
        for (int r = 0; r < MR; r++) {
            __m512bh x = (__m512bh)_mm512_set1_epi32(a[r * rs + p * cs]);
            acc[r][0] = _mm512_dpbf16_ps(acc[r][0], x, b0);
            acc[r][1] = _mm512_dpbf16_ps(acc[r][1], x, b1);
        }
    }
    __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
    __mmask16 m0 = lanes(nr), m1 = lanes(nr - 16);
    for (int r = 0; r < mr; r++) {
        float *row = c + (long)r * ldc;
        __m512 y0 = _mm512_mul_ps(va, acc[r][0]), y1 = _mm512_mul_ps(va, acc[r][1]);
        if (beta != 0) {
            y0 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m0, row), y0);
            y1 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m1, row + 16), y1);
        }
        _mm512_mask_storeu_ps(row, m0, y0);
        _mm512_mask_storeu_ps(row + 16, m1, y1);
    }
}

TARGET static void tileRows(int kp, const int32_t *a, const int32_t *b, float *c, int ldc, int mr, int nr, float alpha, float beta) {
    tile(kp, a, KP, 1, b, c, ldc, mr, nr, alpha, beta);
}

TARGET static void tilePanel(int kp, const int32_t *a, const int32_t *b, float *c, int ldc, int mr, int nr, float alpha, float beta) {
    tile(kp, a, 1, MR, b, c, ldc, mr, nr, alpha, beta);
}

// C's rows 0..<m and nc columns (c points at the first) plus alpha·op(A)·B over K terms
// k0..<k0+kc, B's block packed: A in MC-row blocks, then the tiles. The caller passes beta on
// the first K block only (then 1: the blocks add up in order).
TARGET static void blockProduct(bool transA, int m, int nc, int k0, int kc, float alpha, const float *a, int lda,
                                float beta, float *c, int ldc) {
    int kp = (kc + 1) / 2;
    for (int i0 = 0; i0 < m; i0 += MC) {
        int mc = m - i0 < MC ? m - i0 : MC;
        packA(transA, a, lda, i0, mc, k0, kc);
        for (int s = 0; s < nc; s += NR) {
            const int32_t *panel = packedB + (long)s * KP;
            int nr = nc - s < NR ? nc - s : NR;
            for (int r = 0; r < mc; r += MR) {
                const int32_t *ap = packedA + (long)r * KP;
                float *ct = c + (long)(i0 + r) * ldc + s;
                int mr = mc - r < MR ? mc - r : MR;
                if (transA) tilePanel(kp, ap, panel, ct, ldc, mr, nr, alpha, beta);
                else tileRows(kp, ap, panel, ct, ldc, mr, nr, alpha, beta);
            }
        }
    }
}

// C = beta·C where there is nothing to add (k = 0 or alpha = 0), or NaN should the packing
// buffers fail: true when it handled the call.
static bool degenerate(int m, int n, int k, float alpha, float beta, float *c, int ldc) {
    if (k > 0 && alpha != 0 && buffers()) return false;
    float fill = buffers() ? 0 : __builtin_nanf("");
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) c[(long)i * ldc + j] = beta == 0 ? fill : beta * c[(long)i * ldc + j] + fill;
    return true;
}

TARGET void dt_bf16_gemm(bool transA, bool transB, int m, int n, int k, float alpha, const float *a, int lda,
                         const float *b, int ldb, float beta, float *c, int ldc) {
    if (m <= 0 || n <= 0 || degenerate(m, n, k, alpha, beta, c, ldc)) return;
    for (int j0 = 0; j0 < n; j0 += NC) {
        int nc = n - j0 < NC ? n - j0 : NC;
        for (int k0 = 0; k0 < k; k0 += KC) {
            int kc = k - k0 < KC ? k - k0 : KC;
            packB(transB, b, ldb, j0, nc, k0, kc);
            blockProduct(transA, m, nc, k0, kc, alpha, a, lda, k0 == 0 ? beta : 1, c + j0, ldc);
        }
    }
}
