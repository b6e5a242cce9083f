// RecurrentGemm: a step's recurrent product with W_hh (h @ W_hh^T forward, dG @ W_hh backward), the same
// matrix at every step, so the code that computes it (BLAS, our small loops, MKL's packed format, or bf16
// through oneDNN) is chosen once per call by size.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <memory>
#include <type_traits>

#include "blas_gemm.h"
#include "panel_gemm.h"
#include "small_gemm.h"

namespace {

// Which code computes a step's recurrent product. Why each (measured on a 2-core AVX-512 machine, see
// docs/cpu.md): a BLAS call costs about a microsecond before any arithmetic, which is most of a step when
// the batch is a few rows and W_hh fits in L2, so there our own loops run (kSmall). MKL's packed format
// saves re-packing W_hh at every step but packing is one pass over W_hh: it pays only over several steps
// (kPacked from kPackMinSteps on). Where the compiler targets AVX-512, float products of more rows run in
// our own register-blocked loops over W packed into panels once per call (kPanel, panel_gemm.h: 1.3-2x
// MKL's speed at 5-64 rows, 1.5-3x kSmall's at 1-4), from kPanelMinRowSteps rows x steps on, or 8 steps where
// kSmall would serve (below, packing costs more than it saves). bf16 (autocast): the product in bf16
// through oneDNN, fp32 around it.
enum class GemmKind { kBlas, kSmall, kPacked, kPanel, kBf16 };
constexpr int kSmallRows = 4;                // rows (batch) up to which kSmall may serve
constexpr int64_t kSmallWeights = 3 * 128 * 128;  // W values up to which kSmall serves (192 KiB of fp32)
constexpr int kSmallRowsAnyWeights = 2;    // ... and for 1-2 rows whatever W's size (W is read once either way)
constexpr int64_t kPackMinSteps = 8;
// Packing (one pass over W) costs about 10-30 row-steps of savings against MKL on one thread, and twice that
// when both use two threads.
constexpr int64_t kPanelMinRowSteps = 64;
// Over kSmall's loops (1-4 rows) the panel loops are 1.5-3x faster per step but packing costs 1-4 steps' worth
// (one core: M=1, 3H=192, H=64: 0.46 against 1.25 us a step, packing 1.8 us; M=1, H=512: 35 against 55 us,
// packing 150 us): from 8 steps on.
constexpr int64_t kPanelMinStepsOverSmall = 8;
constexpr int64_t kPanelProjectRows = 64;  // T * B from which the input projection runs in the panel loops
constexpr int kPanelMaxRows = 256;          // beyond, MKL's blocking for large products takes over
constexpr double kPanelThreadFlops = 1.5e6;  // a step's product shared by threads from this size on

// Threads a step's own product may use: torch's intra-op setting, from kPanelThreadFlops on.
inline int panel_threads(int64_t M, int64_t N, int64_t K) {
  return 2.0 * M * N * K >= kPanelThreadFlops ? at::get_num_threads() : 1;
}

// C[M,N] = A[M,K] @ op(W) + beta*C for a fixed W reused over `steps` calls. w16: W in bf16, same layout
// (defined only for bf16 autocast runs; float only).
template <typename T>
class RecurrentGemm {
 public:
  RecurrentGemm(int M, int N, int K, const T* W, int ldw, bool w_transposed, int64_t steps,
                const at::Tensor& w16 = at::Tensor())
      : M_(M), N_(N), K_(K), W_(W), ldw_(ldw), wt_(w_transposed) {
    if (M <= 0 || N <= 0 || K <= 0) return;
    if constexpr (std::is_same_v<T, float>) {
      if (w16.defined()) {  // w16 (N, K) for W^T, (K, N) otherwise, possibly a strided slice
        kind_ = GemmKind::kBf16;
        w16_ = w_transposed ? w16.t() : w16;
        a16_ = at::empty({M, K}, w16.options());
        c16_ = at::empty({M, N}, w16.options());
        return;
      }
    }
    const bool small = M <= kSmallRows && (static_cast<int64_t>(N) * K <= kSmallWeights || M <= kSmallRowsAnyWeights);
#if defined(__AVX512F__)
    if constexpr (std::is_same_v<T, float>) {
      if (M <= kPanelMaxRows && (small ? steps >= kPanelMinStepsOverSmall : M * steps >= kPanelMinRowSteps)) {
        kind_ = GemmKind::kPanel;
        panel_ = std::make_unique<PanelGemm>(M, N, K, W, ldw, w_transposed, panel_threads(M, N, K));
        return;
      }
    }
#endif
    if (small) {
      kind_ = GemmKind::kSmall;
      return;
    }
    if constexpr (std::is_same_v<T, float>) {
      const PackedApi& api = packed_api();
      if (api.ok() && steps >= kPackMinSteps) {
        kind_ = GemmKind::kPacked;
        // uninitialised: pack writes all of it (a value-initialised vector cost a memset per call)
        packed_.reset(new float[api.get_size(kBMatrix, M, N, K) / sizeof(float) + 1]);
        api.pack(kRowMajor, kBMatrix, wt_ ? kTrans : kNoTrans, M, N, K, 1.0f, W, ldw, packed_.get());
      }
    }
  }
  void operator()(const T* A, int lda, T beta, T* C, int ldc) const {
    if (M_ <= 0 || N_ <= 0) return;
    switch (kind_) {
      case GemmKind::kSmall:
        if (wt_) small_gemm_nt<T>(M_, N_, K_, A, lda, W_, ldw_, beta, C, ldc);
        else small_gemm_nn<T>(M_, N_, K_, A, lda, W_, ldw_, beta, C, ldc);
        return;
      case GemmKind::kPacked:
        if constexpr (std::is_same_v<T, float>)
          packed_api().compute(kRowMajor, kNoTrans, kPacked, M_, N_, K_, A, lda, packed_.get(), N_, beta, C, ldc);
        return;
      case GemmKind::kPanel:
#if defined(__AVX512F__)
        if constexpr (std::is_same_v<T, float>) (*panel_)(A, lda, beta, C, ldc);
#endif
        return;
      case GemmKind::kBf16:
        if constexpr (std::is_same_v<T, float>) bf16_product(A, lda, beta, C, ldc);
        return;
      case GemmKind::kBlas:
        gemm_rm<T>(M_, N_, K_, A, lda, W_, ldw_, wt_, beta, C, ldc);
    }
  }

 private:
  // A rounded to bf16, the product in bf16 (oneDNN accumulates in fp32), added to C in fp32.
  void bf16_product(const float* A, int lda, float beta, float* C, int ldc) const {
    c10::BFloat16* a = a16_.data_ptr<c10::BFloat16>();
    for (int m = 0; m < M_; ++m)
      for (int k = 0; k < K_; ++k) a[static_cast<int64_t>(m) * K_ + k] = c10::BFloat16(A[static_cast<int64_t>(m) * lda + k]);
    at::Tensor out = c16_;
    at::mm_out(out, a16_, w16_);
    const c10::BFloat16* o = c16_.data_ptr<c10::BFloat16>();
    for (int m = 0; m < M_; ++m) {
      float* c = C + static_cast<int64_t>(m) * ldc;
      const c10::BFloat16* om = o + static_cast<int64_t>(m) * N_;
      if (beta == 0.0f) {
        for (int n = 0; n < N_; ++n) c[n] = static_cast<float>(om[n]);
      } else {
        for (int n = 0; n < N_; ++n) c[n] = beta * c[n] + static_cast<float>(om[n]);
      }
    }
  }

  int M_, N_, K_;
  const T* W_;
  int ldw_;
  bool wt_;
  GemmKind kind_ = GemmKind::kBlas;
  std::unique_ptr<float[]> packed_;
#if defined(__AVX512F__)
  std::unique_ptr<PanelGemm> panel_;
#endif
  at::Tensor w16_, a16_, c16_;
};

}  // namespace
