// Our own loops for products of a few rows, where a BLAS call's fixed cost (about a microsecond) would be
// most of the work: small_gemm_nt / small_gemm_nn for the time loops' RecurrentGemm, small_rows_gemm_nt for
// the streaming stepper.
#pragma once

#include <algorithm>
#include <cstdint>

namespace {

// C[M,N] = A[M,K] @ W^T (+ beta*C) with W (N,K) row-major, for a few rows: dot products over contiguous
// rows of A and W, four rows of W at a time (four accumulators in registers, W read once per row of A).
template <typename T>
void small_gemm_nt(int M, int N, int K, const T* A, int lda, const T* W, int ldw, T beta, T* C, int ldc) {
  int n = 0;
  for (; n + 4 <= N; n += 4) {
    const T* w0 = W + static_cast<int64_t>(n) * ldw;
    const T* w1 = w0 + ldw;
    const T* w2 = w1 + ldw;
    const T* w3 = w2 + ldw;
    for (int m = 0; m < M; ++m) {
      const T* a = A + static_cast<int64_t>(m) * lda;
      T s0 = 0, s1 = 0, s2 = 0, s3 = 0;
#pragma omp simd reduction(+ : s0, s1, s2, s3)
      for (int k = 0; k < K; ++k) {
        s0 += a[k] * w0[k];
        s1 += a[k] * w1[k];
        s2 += a[k] * w2[k];
        s3 += a[k] * w3[k];
      }
      T* c = C + static_cast<int64_t>(m) * ldc + n;
      if (beta == T(0)) {
        c[0] = s0, c[1] = s1, c[2] = s2, c[3] = s3;
      } else {
        c[0] = beta * c[0] + s0, c[1] = beta * c[1] + s1, c[2] = beta * c[2] + s2, c[3] = beta * c[3] + s3;
      }
    }
  }
  for (; n < N; ++n) {
    const T* w0 = W + static_cast<int64_t>(n) * ldw;
    for (int m = 0; m < M; ++m) {
      const T* a = A + static_cast<int64_t>(m) * lda;
      T s0 = 0;
#pragma omp simd reduction(+ : s0)
      for (int k = 0; k < K; ++k) s0 += a[k] * w0[k];
      T* c = C + static_cast<int64_t>(m) * ldc + n;
      *c = beta == T(0) ? s0 : beta * *c + s0;
    }
  }
}

// C[M,N] = A[M,K] @ W (+ beta*C) with W (K,N) row-major, for a few rows: each row of W scaled by a[k] and
// added to 64 output columns held in registers (contiguous, fully vectorised, no horizontal sums).
template <typename T>
void small_gemm_nn(int M, int N, int K, const T* A, int lda, const T* W, int ldw, T beta, T* C, int ldc) {
  constexpr int kTile = 64;
  for (int m = 0; m < M; ++m) {
    const T* a = A + static_cast<int64_t>(m) * lda;
    T* c = C + static_cast<int64_t>(m) * ldc;
    for (int n0 = 0; n0 < N; n0 += kTile) {
      const int width = std::min(kTile, N - n0);
      T acc[kTile];
      for (int j = 0; j < width; ++j) acc[j] = beta == T(0) ? T(0) : beta * c[n0 + j];
      if (width == kTile) {
        for (int k = 0; k < K; ++k) {
          const T ak = a[k];
          const T* w = W + static_cast<int64_t>(k) * ldw + n0;
#pragma omp simd
          for (int j = 0; j < kTile; ++j) acc[j] += ak * w[j];
        }
      } else {
        for (int k = 0; k < K; ++k) {
          const T ak = a[k];
          const T* w = W + static_cast<int64_t>(k) * ldw + n0;
#pragma omp simd
          for (int j = 0; j < width; ++j) acc[j] += ak * w[j];
        }
      }
      for (int j = 0; j < width; ++j) c[n0 + j] = acc[j];
    }
  }
}


// C[b, n] = A[b, :] . W[n, :] for a few rows b, W (N, K) row-major as the parameter is stored: dot products
// over contiguous rows of W, four rows at a time (independent accumulators), which skips a BLAS call's fixed
// cost at streaming sizes. Reading the parameter itself (no transposed copy) means no cached form of a
// weight can ever be stale, whatever way the user changed it (in-place changes through .data included).
template <typename T>
void small_rows_gemm_nt(int64_t B, int64_t N, int64_t K, const T* A, const T* W, int64_t ldw, T* C, int64_t ldc) {
  for (int64_t b = 0; b < B; ++b) {
    const T* a = A + b * K;
    T* c = C + b * ldc;
    int64_t n = 0;
    for (; n + 4 <= N; n += 4) {
      const T* w0 = W + n * ldw;
      const T* w1 = w0 + ldw;
      const T* w2 = w1 + ldw;
      const T* w3 = w2 + ldw;
      T s0 = 0, s1 = 0, s2 = 0, s3 = 0;
#pragma omp simd reduction(+ : s0, s1, s2, s3)
      for (int64_t k = 0; k < K; ++k) {
        const T ak = a[k];
        s0 += ak * w0[k];
        s1 += ak * w1[k];
        s2 += ak * w2[k];
        s3 += ak * w3[k];
      }
      c[n] = s0;
      c[n + 1] = s1;
      c[n + 2] = s2;
      c[n + 3] = s3;
    }
    for (; n < N; ++n) {
      const T* w = W + n * ldw;
      T s = 0;
#pragma omp simd reduction(+ : s)
      for (int64_t k = 0; k < K; ++k) s += a[k] * w[k];
      c[n] = s;
    }
  }
}

}  // namespace
