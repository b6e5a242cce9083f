// PanelGemm: C[M,N] = A[M,K] @ op(W) (+ C) (+ bias) for a W reused at every step of a time loop, or over the
// many rows of the input projection, with our own AVX-512 register-blocked microkernel. op(W) is packed once per call into column panels of 48 values
// (three vectors) laid out k-major, so each step streams one panel at a time (96 KiB at K=512, L2-resident)
// and every row block of the batch reuses it; a tile of 8 rows x 48 columns keeps 24 accumulators in
// registers, and each k costs 3 vector loads, 8 broadcasts and 24 FMAs (FMA-bound, no horizontal sums).
// Why: at batches of 3-64 rows MKL's sgemm (plain or packed) ran at 30-65 GFLOP/s on one core of the AMD
// EPYC it was measured on, where this loop runs near the core's FMA throughput (see docs/cpu.md).
// From 1.5 MFLOP on, threads share the panels (a step's product), or the row ranges when there are few
// panels (a projection).
// Float only, and only where the compiler targets AVX-512 (__AVX512F__); header-only, no ATen.
#pragma once

#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <memory>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace {

#if defined(__AVX512F__)

constexpr int kPanel = 48;  // columns per panel: three 16-float vectors
constexpr int kTileRows = 8;
constexpr int kChunkRows = 256;  // rows of A per pass over the panels (256 x K floats: L2-sized for K <= 512)

// One tile: rows [0, MR) of A (stride lda) times one packed panel (K x 48), into C (stride ldc), columns
// [0, cols) (cols < 48 only for the last panel: masked stores). accumulate: C += product, else C = product;
// bias (the panel's 48 values, or null): added to every row.
template <int MR>
inline void panel_tile(int K, const float* A, int lda, const float* P, float* C, int ldc, int cols, bool accumulate,
                       const float* bias) {
  __m512 acc[MR][3];
  for (int r = 0; r < MR; ++r) acc[r][0] = acc[r][1] = acc[r][2] = _mm512_setzero_ps();
  const float* a[MR];
  for (int r = 0; r < MR; ++r) a[r] = A + static_cast<int64_t>(r) * lda;
  for (int k = 0; k < K; ++k) {
    const float* p = P + static_cast<int64_t>(k) * kPanel;
    const __m512 w0 = _mm512_load_ps(p), w1 = _mm512_load_ps(p + 16), w2 = _mm512_load_ps(p + 32);
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      const __m512 x = _mm512_set1_ps(a[r][k]);
      acc[r][0] = _mm512_fmadd_ps(x, w0, acc[r][0]);
      acc[r][1] = _mm512_fmadd_ps(x, w1, acc[r][1]);
      acc[r][2] = _mm512_fmadd_ps(x, w2, acc[r][2]);
    }
  }
  for (int r = 0; r < MR; ++r) {
    float* c = C + static_cast<int64_t>(r) * ldc;
    for (int v = 0; v < 3; ++v) {
      const int left = cols - 16 * v;
      if (left <= 0) break;
      const __mmask16 m = left >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << left) - 1u);
      __m512 out = acc[r][v];
      if (accumulate) out = _mm512_add_ps(out, _mm512_maskz_loadu_ps(m, c + 16 * v));
      if (bias) out = _mm512_add_ps(out, _mm512_maskz_loadu_ps(m, bias + 16 * v));
      _mm512_mask_storeu_ps(c + 16 * v, m, out);
    }
  }
}

inline void panel_rows(int rows, int K, const float* A, int lda, const float* P, float* C, int ldc, int cols,
                       bool accumulate, const float* bias) {
  switch (rows) {
    case 8: return panel_tile<8>(K, A, lda, P, C, ldc, cols, accumulate, bias);
    case 7: return panel_tile<7>(K, A, lda, P, C, ldc, cols, accumulate, bias);
    case 6: return panel_tile<6>(K, A, lda, P, C, ldc, cols, accumulate, bias);
    case 5: return panel_tile<5>(K, A, lda, P, C, ldc, cols, accumulate, bias);
    case 4: return panel_tile<4>(K, A, lda, P, C, ldc, cols, accumulate, bias);
    case 3: return panel_tile<3>(K, A, lda, P, C, ldc, cols, accumulate, bias);
    case 2: return panel_tile<2>(K, A, lda, P, C, ldc, cols, accumulate, bias);
    default: return panel_tile<1>(K, A, lda, P, C, ldc, cols, accumulate, bias);
  }
}

// dst[k][j] = src[j][k] for a 16 x 16 block (row strides lds, ldd): three rounds of shuffles in registers.
inline void transpose16(const float* src, int64_t lds, float* dst, int64_t ldd) {
  __m512 r[16], t[16];
  for (int i = 0; i < 16; ++i) r[i] = _mm512_loadu_ps(src + i * lds);
  for (int i = 0; i < 16; i += 2) {  // interleave pairs of rows
    t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int i = 0; i < 16; i += 4) {  // then pairs of pairs: 4 x 4 blocks within each 128-bit lane
    r[i] = _mm512_shuffle_ps(t[i], t[i + 2], 0x44);
    r[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], 0xEE);
    r[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0x44);
    r[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
  }
  for (int i = 0; i < 4; ++i) {  // 128-bit lanes across rows 4 apart, then 8 apart
    t[i] = _mm512_shuffle_f32x4(r[i], r[i + 4], 0x88);
    t[i + 4] = _mm512_shuffle_f32x4(r[i], r[i + 4], 0xDD);
    t[i + 8] = _mm512_shuffle_f32x4(r[i + 8], r[i + 12], 0x88);
    t[i + 12] = _mm512_shuffle_f32x4(r[i + 8], r[i + 12], 0xDD);
  }
  for (int i = 0; i < 8; ++i) {
    r[i] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0x88);
    r[i + 8] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0xDD);
  }
  for (int i = 0; i < 16; ++i) _mm512_storeu_ps(dst + i * ldd, r[i]);
}

class PanelGemm {
 public:
  // op(W) = W^T with W (N, K) row-major (w_transposed), else W (K, N); ldw its row stride. threads: how
  // many threads share a step's panels (1: none).
  PanelGemm(int M, int N, int K, const float* W, int ldw, bool w_transposed, int threads)
      : M_(M), N_(N), K_(K), panels_((N + kPanel - 1) / kPanel), threads_(std::max(1, std::min(threads, panels_))) {
    const size_t count = static_cast<size_t>(panels_) * K * kPanel;
    packed_.reset(static_cast<float*>(std::aligned_alloc(64, ((count * sizeof(float) + 63) / 64) * 64)));
    float* P = packed_.get();
    // panels are independent: packed by the same threads that will share them (one pass over a large W_hh
    // costs 100-350 us on one core)
#pragma omp parallel for num_threads(threads_) schedule(static)
    for (int p = 0; p < panels_; ++p) {
      const int n0 = p * kPanel, cols = std::min(kPanel, N - n0);
      float* panel = P + static_cast<int64_t>(p) * K * kPanel;
      if (w_transposed) {  // panel[k][j] = W[n0 + j][k], in 16 x 16 blocks transposed in registers
        for (int j0 = 0; j0 < kPanel; j0 += 16)
          for (int k0 = 0; k0 < K; k0 += 16) {
            float* dst = panel + static_cast<int64_t>(k0) * kPanel + j0;
            const float* src = W + static_cast<int64_t>(n0 + j0) * ldw + k0;
            if (j0 + 16 <= cols && k0 + 16 <= K) {
              transpose16(src, ldw, dst, kPanel);
              continue;
            }
            for (int k = k0; k < std::min(K, k0 + 16); ++k)  // a block at an edge: element by element
              for (int j = 0; j < 16; ++j)
                dst[static_cast<int64_t>(k - k0) * kPanel + j] = j0 + j < cols ? src[static_cast<int64_t>(j) * ldw + k - k0] : 0.0f;
          }
      } else {  // panel[k][j] = W[k][n0 + j]: contiguous row pieces
        for (int k = 0; k < K; ++k) {
          const float* w = W + static_cast<int64_t>(k) * ldw + n0;
          float* dst = panel + static_cast<int64_t>(k) * kPanel;
          std::copy(w, w + cols, dst);
          std::fill(dst + cols, dst + kPanel, 0.0f);
        }
      }
    }
  }

  // C[M, N] = A @ op(W) + beta * C (+ bias (N), added to every row, when given).
  // Work is cut into chunks of kChunkRows rows (a chunk of A stays in L2 while every panel passes over it);
  // threads share the panels when there are enough of them (a step's product: few rows, many panels), else
  // the row chunks (an input projection: many rows).
  void operator()(const float* A, int lda, float beta, float* C, int ldc, const float* bias = nullptr) const {
    const bool accumulate = beta != 0.0f;
    if (accumulate && beta != 1.0f)
      for (int m = 0; m < M_; ++m)
        for (int n = 0; n < N_; ++n) C[static_cast<int64_t>(m) * ldc + n] *= beta;
    auto run = [&](int m0, int m1, int p0, int p1) {
      for (int mc = m0; mc < m1; mc += kChunkRows) {
        const int mc1 = std::min(m1, mc + kChunkRows);
        for (int p = p0; p < p1; ++p) {
          const float* panel = packed_.get() + static_cast<int64_t>(p) * K_ * kPanel;
          const int n0 = p * kPanel, cols = std::min(kPanel, N_ - n0);
          for (int m = mc; m < mc1; m += kTileRows)
            panel_rows(std::min(kTileRows, mc1 - m), K_, A + static_cast<int64_t>(m) * lda, lda, panel,
                       C + static_cast<int64_t>(m) * ldc + n0, ldc, cols, accumulate, bias ? bias + n0 : nullptr);
        }
      }
    };
    if (threads_ == 1) return run(0, M_, 0, panels_);
    const bool by_panels = panels_ >= 2 * threads_;
#pragma omp parallel num_threads(threads_)
    {
      const int t = omp_get_thread_num(), n = omp_get_num_threads();
      if (by_panels) {
        run(0, M_, panels_ * t / n, panels_ * (t + 1) / n);
      } else {  // row ranges on tile boundaries
        const int tiles = (M_ + kTileRows - 1) / kTileRows;
        run(std::min(M_, tiles * t / n * kTileRows), std::min(M_, tiles * (t + 1) / n * kTileRows), 0, panels_);
      }
    }
  }

 private:
  struct Free {
    void operator()(float* p) const { std::free(p); }
  };
  int M_, N_, K_, panels_, threads_;
  std::unique_ptr<float[], Free> packed_;
};

#endif  // __AVX512F__

}  // namespace
