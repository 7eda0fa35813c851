#ifndef DEEPTRAIN_BF16GEMM_H
#define DEEPTRAIN_BF16GEMM_H
#include <stdbool.h>

/// True when this CPU runs AVX512-BF16's `vdpbf16ps` (and the AVX-512 it builds on).
bool dt_bf16_supported(void);

/// C[m×n] = alpha·op(A)·op(B) + beta·C, row-major, float32 in and out, with op(A) and op(B)
/// rounded to bfloat16 (nearest even) and their products summed in float32 by `vdpbf16ps`,
/// two K terms at a time, in blocks of 256 K in order. An output's bits depend on K and its
/// own row and column of the operands only: never on m, n, or where a product is cut.
/// Only call it where `dt_bf16_supported()`.
void dt_bf16_gemm(bool transA, bool transB, int m, int n, int k, float alpha, const float *a, int lda,
                  const float *b, int ldb, float beta, float *c, int ldc);

#endif
