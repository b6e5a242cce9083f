// Fused CPU recurrence for fastgru: the sequential part of GRU forward and BPTT.
//
// Python does the big GEMMs (input projection before, weight gradients after); this file runs the
// time loop: one BLAS call for the recurrent product plus one fused, vectorisable elementwise pass
// per step, with no per-op dispatch. The contract is the one in fastgru/backends/__init__.py.
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <dlfcn.h>
#include <omp.h>
#include <sys/mman.h>

#include <map>
#include <memory>
#include <mutex>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include <cmath>
#include <cstdlib>
#include <string>
#include <cstdint>
#include <cstring>

extern "C" {
// MKL / OpenBLAS Fortran entry points, exported by libtorch_cpu.
void sgemm_(const char*, const char*, const int*, const int*, const int*, const float*, const float*,
            const int*, const float*, const int*, const float*, float*, const int*);
void dgemm_(const char*, const char*, const int*, const int*, const int*, const double*, const double*,
            const int*, const double*, const int*, const double*, double*, const int*);
}

namespace {

inline void blas_gemm(char tb, int m, int n, int k, float alpha, const float* b, int ldb, const float* a,
                      int lda, float beta, float* c, int ldc) {
  const char ta = 'N';
  sgemm_(&tb, &ta, &m, &n, &k, &alpha, b, &ldb, a, &lda, &beta, c, &ldc);
}
inline void blas_gemm(char tb, int m, int n, int k, double alpha, const double* b, int ldb, const double* a,
                      int lda, double beta, double* c, int ldc) {
  const char ta = 'N';
  dgemm_(&tb, &ta, &m, &n, &k, &alpha, b, &ldb, a, &lda, &beta, c, &ldc);
}

// Row-major C[M,N] = A[M,K] @ op(W) (+ beta*C), op(W) = W^T when W is [N,K] (w_transposed), else W [K,N].
template <typename T>
void gemm_rm(int M, int N, int K, const T* A, int lda, const T* W, int ldw, bool w_transposed, T beta, T* C,
             int ldc) {
  if (M == 0 || N == 0) return;
  blas_gemm(w_transposed ? 'T' : 'N', N, M, K, T(1), W, ldw, A, lda, beta, C, ldc);
}

// MKL's packed-GEMM API (looked up at run time: only MKL builds of torch export it). The recurrent
// weight is the same matrix at every step, so packing it once per call saves re-packing it T times.
struct PackedApi {
  using get_size_t = size_t (*)(int, int, int, int);
  using pack_t = void (*)(int, int, int, int, int, int, float, const float*, int, float*);
  using compute_t = void (*)(int, int, int, int, int, int, const float*, int, const float*, int, float, float*, int);
  get_size_t get_size = nullptr;
  pack_t pack = nullptr;
  compute_t compute = nullptr;
  PackedApi() {
    get_size = reinterpret_cast<get_size_t>(dlsym(RTLD_DEFAULT, "cblas_sgemm_pack_get_size"));
    pack = reinterpret_cast<pack_t>(dlsym(RTLD_DEFAULT, "cblas_sgemm_pack"));
    compute = reinterpret_cast<compute_t>(dlsym(RTLD_DEFAULT, "cblas_sgemm_compute"));
    if (!get_size || !pack || !compute) get_size = nullptr;
  }
  bool ok() const { return get_size != nullptr; }
};
const PackedApi& packed_api() {
  static PackedApi api;
  return api;
}
// For small per-step products (< 8 MFLOP) MKL's thread hand-off costs more than the arithmetic, and far
// more when another process holds a core (each hand-off can then wait a scheduler slice): run the loop
// with one MKL thread (restored on scope exit). No-op without MKL.
class SmallGemmThreads {
 public:
  explicit SmallGemmThreads(double flops_per_step) {
    using set_t = int (*)(int);
    static set_t set_local = reinterpret_cast<set_t>(dlsym(RTLD_DEFAULT, "MKL_Set_Num_Threads_Local"));
    if (set_local && flops_per_step < 8e6) {
      set_ = set_local;
      omp_threads_ = omp_get_max_threads();  // MKL's local setting also lowers this thread's OpenMP ICV
      previous_ = set_local(1);
    }
  }
  ~SmallGemmThreads() {
    if (set_) {
      set_(previous_);
      omp_set_num_threads(omp_threads_);  // torch.get_num_threads() must be what it was
    }
  }

 private:
  int (*set_)(int) = nullptr;
  int previous_ = 0;
  int omp_threads_ = 1;
};

constexpr int kRowMajor = 101, kNoTrans = 111, kTrans = 112, kBMatrix = 162, kPacked = 151;

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

// Which code computes a step's recurrent product. Why each (measured on a 2-core AVX-512 machine, see
// docs/cpu.md): a BLAS call costs about a microsecond before any arithmetic, which is most of a step when
// the batch is a few rows and W_hh fits in L2, so there our own loops run (kSmall). MKL's packed format
// saves re-packing W_hh at every step but packing is one pass over W_hh: it pays only over several steps
// (kPacked from kPackMinSteps on). bf16 (autocast): the product in bf16 through oneDNN, fp32 around it.
enum class GemmKind { kBlas, kSmall, kPacked, kBf16 };
constexpr int kSmallRows = 4;                // rows (batch) up to which kSmall may serve
constexpr int64_t kSmallWeights = 3 * 128 * 128;  // W values up to which kSmall serves (192 KiB of fp32)
constexpr int64_t kPackMinSteps = 8;

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
    if (M <= kSmallRows && static_cast<int64_t>(N) * K <= kSmallWeights) {
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
  at::Tensor w16_, a16_, c16_;
};

// Activations, selected at compile time so the inner loops vectorise. Derivatives are taken from the
// activation's output y, which is what forward saves.
enum Act : int { kSigmoid = 0, kHardSigmoid = 1, kTanh = 2, kRelu = 3, kSoftsign = 4 };

template <typename T>
struct Cell {
  const T* b_hh;       // (3H), zeros when the layer has no bias
  const int64_t* len;  // (B) or null
  const T* rec_mask;   // (B, H) recurrent-dropout mask, one per sequence, or null
  const uint8_t* zone_mask;  // (T, B, H) bool zoneout keep-mask (training) or null: 1 byte per unit
  T zone_p;            // zoneout keep probability used when zone_mask is null (eval); 0 = off
  T hs_alpha, hs_beta; // hard_sigmoid(x) = clamp(alpha * x + beta, 0, 1)
  const T* ln_gain;    // (3H) gain of the recurrent layer norm, or null (no layer norm)
  // Input layer norm (LayerNormGRU): forward normalises each raw projection row of gi (3H values) and the
  // cell reads xhat * gi_gain + gi_bias; backward takes the gradient of that back through the norm.
  const T* gi_gain;    // (3H) gain of the input layer norm, or null (no input norm)
  const T* gi_bias;    // (3H) shift of the input layer norm (zeros without a bias); set with gi_gain
  T* gi_rstd;          // forward, saving: (T * B) rstd per row out (gi's rows become xhat in place); or null
  const T* in_rstd;    // backward: (T * B) saved rstd, with gi_gain and in_xhat; or null
  const T* in_xhat;    // backward: (T, B, 3H) saved normalised projections
  bool zoneout() const { return zone_mask != nullptr || zone_p != T(0); }
  // Work of one row of one step for for_rows (which splits rows over threads from 32768 units on). The
  // step loop is serial, so its rows are split from fairly small batches. Measured on a 2-core machine:
  // the plain cell gains from a split at B * H >= 16384 (B=64, H=256: 1.33x -> 1.57x torch's inference
  // speed) and loses at B * H = 4096; the layer norms add several passes over 3H values per row and gain
  // from a split at B * H >= 4096 (B=32, H=128: LayerNormGRU inference 1.13x -> 1.02x the plain GRU's time).
  int64_t row_units(int64_t H) const { return (ln_gain || gi_gain) ? 16 * H : 4 * H; }
  T keep(int64_t t, int64_t B, int64_t H, int64_t b, int64_t j) const {
    return zone_mask ? T(zone_mask[(t * B + b) * H + j]) : zone_p;
  }
};

template <int A, typename T>
inline T act(T x, const Cell<T>& c) {
  // exp's argument is clamped so it never overflows: under -ffast-math, 1 / (1 + inf) may become NaN.
  if constexpr (A == kSigmoid) return T(1) / (T(1) + std::exp(std::min(-x, T(80))));
  if constexpr (A == kHardSigmoid) return std::min(T(1), std::max(T(0), c.hs_alpha * x + c.hs_beta));
  if constexpr (A == kTanh) return std::tanh(x);
  if constexpr (A == kRelu) return std::max(T(0), x);
  if constexpr (A == kSoftsign) return x / (T(1) + std::abs(x));
}

template <int A, typename T>
inline T dact(T y, const Cell<T>& c) {
  if constexpr (A == kSigmoid) return y * (T(1) - y);
  if constexpr (A == kHardSigmoid) return (y > T(0) && y < T(1)) ? c.hs_alpha : T(0);
  if constexpr (A == kTanh) return T(1) - y * y;
  if constexpr (A == kRelu) return y > T(0) ? T(1) : T(0);
  if constexpr (A == kSoftsign) return (T(1) - std::abs(y)) * (T(1) - std::abs(y));
}

// Runs fn(b0, b1) over batch rows, in parallel when there is enough elementwise work: from 32768 units
// (units_per_row: the row's width, or Cell::row_units inside the step loops).
template <typename F>
void for_rows(int64_t B, int64_t units_per_row, const F& fn) {
  const int64_t grain = std::max<int64_t>(1, 32768 / std::max<int64_t>(units_per_row, 1));
  at::parallel_for(0, B, grain, fn);
}

struct Slots {
  int64_t T;
  bool reverse;
  int64_t step(int64_t i) const { return reverse ? T - 1 - i : i; }  // i-th processed time step
  int64_t in(int64_t t) const { return reverse ? t + 1 : t; }         // buf slot read by step t
  int64_t out(int64_t t) const { return reverse ? t : t + 1; }        // buf slot written by step t
};

// Recurrent layer norm (Ba et al. 2016): v <- (v - mean) * rstd * gain over a block of `width` values,
// keeping the normalised values and rstd for backward. The shift is the layer's b_hh.
constexpr double kLnEps = 1e-5;  // fastgru.backends.LN_EPS

// Mean and 1 / sqrt(variance + eps) of `width` values (two passes: exact for large means).
template <typename T>
std::pair<T, T> mean_rstd(const T* v, int64_t width) {
  T mean = 0, var = 0;
  for (int64_t j = 0; j < width; ++j) mean += v[j];
  mean /= T(width);
  for (int64_t j = 0; j < width; ++j) var += (v[j] - mean) * (v[j] - mean);
  return {mean, T(1) / std::sqrt(var / T(width) + T(kLnEps))};
}

template <typename T>
void ln_forward(T* v, int64_t width, const T* gain, T* xhat, T* rstd_out) {
  const auto [mean, rstd] = mean_rstd(v, width);
  for (int64_t j = 0; j < width; ++j) {
    xhat[j] = (v[j] - mean) * rstd;
    v[j] = xhat[j] * gain[j];
  }
  *rstd_out = rstd;
}

// d(normalised output) -> d(input) of ln_forward, written to dv (may be dout itself); adds dout * xhat (the
// gain's gradient) into dgain and, given dbias, dout (the shift's gradient) into dbias.
template <typename T>
void ln_backward(const T* dout, int64_t width, const T* gain, const T* xhat, T rstd, T* dv, T* dgain,
                 T* dbias = nullptr) {
  if (dbias) {
#pragma omp simd
    for (int64_t j = 0; j < width; ++j) dbias[j] += dout[j];
  }
  T m1 = 0, m2 = 0;
  for (int64_t j = 0; j < width; ++j) {
    dgain[j] += dout[j] * xhat[j];
    const T dx = dout[j] * gain[j];
    m1 += dx;
    m2 += dx * xhat[j];
  }
  m1 /= T(width);
  m2 /= T(width);
  for (int64_t j = 0; j < width; ++j) dv[j] = rstd * (dout[j] * gain[j] - m1 - xhat[j] * m2);
}

// Values saved per (t, b): r, z, n (+ W_hn h + b_hn for reset_after), then with layer norm the 3H
// normalised recurrent pre-activations and one rstd per normalised block (2 slots).
inline int64_t saved_width(bool reset_after, bool layer_norm, int64_t H) {
  return (reset_after ? 4 * H : 3 * H) + (layer_norm ? 3 * H + 2 : 0);
}

// Calls fn.template operator()<IN, LN>() for the layer norms present (input side, recurrent side), so the
// per-row loops below are compiled once per combination with no branches inside.
template <typename F>
void dispatch_norms(bool in, bool ln, const F& fn) {
  if (in && ln) fn.template operator()<true, true>();
  else if (in) fn.template operator()<true, false>();
  else if (ln) fn.template operator()<false, true>();
  else fn.template operator()<false, false>();
}

// One reset_after=True forward step of one row. g: the row's input projections (3H; with an input norm
// IN they are raw, normalised here on the fly and replaced by xhat in place); q: the recurrent products
// h @ W_hh^T (3H; with a recurrent norm LN normalised on the fly, xhat saved at sr + ln_at, rstd after
// it); h: the state the cell sees; o: the cell's output; sr: the row's saved values (r, z, n, hn, ...).
// Each norm costs its two statistics passes and nothing else: the normalised values are formed where
// the gates read them.
template <typename T, int GA, int CA, bool IN, bool LN>
inline void ra_forward_row(const Cell<T>& c, int64_t H, T* g, const T* q, const T* h, T* o, T* sr, int64_t ln_at,
                           T* in_rstd) {
  const int64_t G3 = 3 * H;
  T mi = 0, ri = 1, mh = 0, rh = 1;
  if constexpr (IN) {
    std::tie(mi, ri) = mean_rstd(g, G3);
    if (in_rstd) *in_rstd = ri;
  }
  if constexpr (LN) {
    std::tie(mh, rh) = mean_rstd(q, G3);
    sr[ln_at + G3] = rh;
    sr[ln_at + G3 + 1] = T(0);  // one normalised block: the second rstd slot is unused
  }
  const T* bh = c.b_hh;
  T* xs = sr + ln_at;
#pragma omp simd
  for (int64_t j = 0; j < H; ++j) {
    T ir = g[j], iz = g[H + j], in = g[2 * H + j];
    if constexpr (IN) {
      ir = (ir - mi) * ri;
      iz = (iz - mi) * ri;
      in = (in - mi) * ri;
      g[j] = ir;
      g[H + j] = iz;
      g[2 * H + j] = in;
      ir = ir * c.gi_gain[j] + c.gi_bias[j];
      iz = iz * c.gi_gain[H + j] + c.gi_bias[H + j];
      in = in * c.gi_gain[2 * H + j] + c.gi_bias[2 * H + j];
    }
    T qr = q[j], qz = q[H + j], qn = q[2 * H + j];
    if constexpr (LN) {
      qr = (qr - mh) * rh;
      qz = (qz - mh) * rh;
      qn = (qn - mh) * rh;
      xs[j] = qr;
      xs[H + j] = qz;
      xs[2 * H + j] = qn;
      qr *= c.ln_gain[j];
      qz *= c.ln_gain[H + j];
      qn *= c.ln_gain[2 * H + j];
    }
    const T hn = qn + bh[2 * H + j];
    const T r = act<GA>(ir + qr + bh[j], c);
    const T z = act<GA>(iz + qz + bh[H + j], c);
    const T n = act<CA>(in + r * hn, c);
    o[j] = n + z * (h[j] - n);
    sr[j] = r;
    sr[H + j] = z;
    sr[2 * H + j] = n;
    sr[3 * H + j] = hn;
  }
}

// One reset_after=True backward step of one row without masks or lengths. dd: in, the carried gradient
// of h_t; out, its direct part g * z of dh_{t-1} (the GEMM adds the rest). Writes dgb (3H: d gi, with an
// input norm IN taken back through it to the raw projections), tb (3H: d of the recurrent products as
// the gates see them), dgnb (H: d(W_hn h + b_hn)) and with a recurrent norm LN dpre (3H: d of the
// products before the norm). The norms' reductions run inside the first loop; each norm then needs one
// more pass. dgain (3H) / in_part (3H gain, then 4H bias sums) accumulate this thread's sums.
template <typename T, int GA, int CA, bool IN, bool LN>
inline void ra_backward_row(const Cell<T>& c, int64_t H, T* dd, const T* dy, const T* h, const T* sr,
                            int64_t ln_at, T* dgb, T* tb, T* dgnb, T* dpre, T* dgain, const T* xi, T ri,
                            T* in_part) {
  const int64_t G3 = 3 * H;
  const T* xs = sr + ln_at;
  const T* lg = c.ln_gain;
  const T* gg = c.gi_gain;
  T* dgi_gain = in_part;
  T* dsum = IN ? in_part + G3 : nullptr;
  T m1h = 0, m2h = 0, m1i = 0, m2i = 0;
#pragma omp simd reduction(+ : m1h, m2h, m1i, m2i)
  for (int64_t j = 0; j < H; ++j) {
    const T g = dd[j] + dy[j];
    const T r = sr[j], z = sr[H + j], n = sr[2 * H + j], hn = sr[3 * H + j];
    const T dn = g * (T(1) - z) * dact<CA>(n, c);
    const T dz = g * (h[j] - n) * dact<GA>(z, c);
    const T dr = dn * hn * dact<GA>(r, c);
    const T an = dn * r;
    dd[j] = g * z;
    dgb[j] = tb[j] = dr;
    dgb[H + j] = tb[H + j] = dz;
    dgb[2 * H + j] = dn;
    tb[2 * H + j] = dgnb[j] = an;
    if constexpr (LN) {
      dgain[j] += dr * xs[j];
      dgain[H + j] += dz * xs[H + j];
      dgain[2 * H + j] += an * xs[2 * H + j];
      const T er = dr * lg[j], ez = dz * lg[H + j], en = an * lg[2 * H + j];
      m1h += er + ez + en;
      m2h += er * xs[j] + ez * xs[H + j] + en * xs[2 * H + j];
    }
    if constexpr (IN) {
      dsum[j] += dr;
      dsum[H + j] += dz;
      dsum[2 * H + j] += dn;
      dsum[G3 + j] += an;
      dgi_gain[j] += dr * xi[j];
      dgi_gain[H + j] += dz * xi[H + j];
      dgi_gain[2 * H + j] += dn * xi[2 * H + j];
      const T fr = dr * gg[j], fz = dz * gg[H + j], fn = dn * gg[2 * H + j];
      m1i += fr + fz + fn;
      m2i += fr * xi[j] + fz * xi[H + j] + fn * xi[2 * H + j];
    }
  }
  if constexpr (LN) {
    const T rh = sr[ln_at + G3], a = m1h / T(G3), b = m2h / T(G3);
#pragma omp simd
    for (int64_t k = 0; k < G3; ++k) dpre[k] = rh * (tb[k] * lg[k] - a - xs[k] * b);
  }
  if constexpr (IN) {
    const T a = m1i / T(G3), b = m2i / T(G3);
#pragma omp simd
    for (int64_t k = 0; k < G3; ++k) dgb[k] = ri * (dgb[k] * gg[k] - a - xi[k] * b);
  }
}

// Forward of one layer-direction. With recurrent dropout the cell sees hm = h_{t-1} * mask (Keras'
// recurrent_dropout semantics); zoneout then mixes h_t = k * h_{t-1} + (1 - k) * cell(hm).
template <typename T, int GA, int CA>
void forward_impl(const at::Tensor& gi, const at::Tensor& w_hh, const at::Tensor& w16, const Cell<T>& c,
                  bool reset_after, bool save, at::Tensor& buf, at::Tensor& gates, const Slots& s) {
  const int64_t B = gi.size(1), H = w_hh.size(1), G3 = 3 * H;
  T* gi_p = gi.data_ptr<T>();  // with an input norm and save, its rows become xhat in place
  const T* w = w_hh.data_ptr<T>();
  const T* bh = c.b_hh;
  T* buf_p = buf.data_ptr<T>();
  const int64_t gw = saved_width(reset_after, c.ln_gain != nullptr, H);  // saved values per (t, b)
  const int64_t ln_at = reset_after ? 4 * H : 3 * H;  // offset of the layer-norm values
  const int64_t units = c.row_units(H);  // per-row work for for_rows
  // Without saving, gate values go to a one-step scratch so the inner loops stay branch-free.
  at::Tensor scratch = save ? at::Tensor() : at::empty({B, gw}, gi.options());
  T* gates_p = save ? gates.data_ptr<T>() : scratch.data_ptr<T>();
  at::Tensor gh_t = at::empty({B, G3}, gi.options());
  at::Tensor rh_t = at::empty({B, H}, gi.options());
  at::Tensor hm_t = c.rec_mask ? at::empty({B, H}, gi.options()) : at::Tensor();
  T* gh = gh_t.data_ptr<T>();
  T* rh = rh_t.data_ptr<T>();
  T* hm_buf = c.rec_mask ? hm_t.data_ptr<T>() : nullptr;
  // With an input layer norm, row b of step t is normalised here, while it is in cache (no separate pass
  // over all T * B rows): its gain-and-shift values go to row b of gin; saving, the row itself becomes
  // xhat and its rstd is kept for backward.
  at::Tensor gin_t = c.gi_gain ? at::empty({B, G3}, gi.options()) : at::Tensor();
  T* gin = c.gi_gain ? gin_t.data_ptr<T>() : nullptr;
  auto input_row = [&](T* git, int64_t t, int64_t b) -> const T* {
    T* g = git + b * G3;
    if (!c.gi_gain) return g;
    T* o = gin + b * G3;
    const auto [mean, rstd] = mean_rstd(g, G3);
    if (c.gi_rstd) {
      c.gi_rstd[t * B + b] = rstd;
#pragma omp simd
      for (int64_t j = 0; j < G3; ++j) {
        g[j] = (g[j] - mean) * rstd;
        o[j] = g[j] * c.gi_gain[j] + c.gi_bias[j];
      }
    } else {
#pragma omp simd
      for (int64_t j = 0; j < G3; ++j) o[j] = (g[j] - mean) * rstd * c.gi_gain[j] + c.gi_bias[j];
    }
    return o;
  };
  const SmallGemmThreads threads(2.0 * B * G3 * H);
  // w16: W_hh in bf16 (autocast) or undefined
  auto rows16 = [&](int64_t r0, int64_t r1) { return w16.defined() ? w16.narrow(0, r0, r1 - r0) : at::Tensor(); };
  const RecurrentGemm<T> gemm_all(reset_after ? B : 0, G3, H, w, H, true, s.T, rows16(0, G3));  // h @ W_hh^T
  const RecurrentGemm<T> gemm_rz(reset_after ? 0 : B, 2 * H, H, w, H, true, s.T, rows16(0, 2 * H));  // h @ W_hr,hz^T
  const RecurrentGemm<T> gemm_n(reset_after ? 0 : B, H, H, w + 2 * H * H, H, true, s.T, rows16(2 * H, G3));

  for (int64_t i = 0; i < s.T; ++i) {
    const int64_t t = s.step(i);
    const T* hp = buf_p + s.in(t) * B * H;
    T* h_out = buf_p + s.out(t) * B * H;
    T* git = gi_p + t * B * G3;
    T* sv = save ? gates_p + t * B * gw : gates_p;
    const T* hm = hp;  // the state the cell sees
    if (c.rec_mask) {
      for (int64_t k = 0; k < B * H; ++k) hm_buf[k] = hp[k] * c.rec_mask[k];
      hm = hm_buf;
    }
    // Final mix for row b: zoneout and lengths. `cand` holds the cell's output for the row.
    auto finish = [&](int64_t b, const T* cand) {
      const T* h = hp + b * H;
      T* o = h_out + b * H;
      if (c.len && t >= c.len[b]) {
        for (int64_t j = 0; j < H; ++j) o[j] = h[j];
      } else if (c.zoneout()) {
        for (int64_t j = 0; j < H; ++j) {
          const T k = c.keep(t, B, H, b, j);
          o[j] = k * h[j] + (T(1) - k) * cand[j];
        }
      } else if (cand != o) {
        for (int64_t j = 0; j < H; ++j) o[j] = cand[j];
      }
    };
    // With zoneout or lengths the cell output goes to a row of rh first, else straight to h_out.
    const bool staged = c.zoneout() || c.len;
    if (reset_after) {
      gemm_all(hm, H, T(0), gh, G3);
      dispatch_norms(c.gi_gain != nullptr, c.ln_gain != nullptr, [&]<bool IN, bool LN>() {
        for_rows(B, units, [&](int64_t b0, int64_t b1) {
          for (int64_t b = b0; b < b1; ++b) {
            T* o = staged ? rh + b * H : h_out + b * H;
            ra_forward_row<T, GA, CA, IN, LN>(c, H, git + b * G3, gh + b * G3, hm + b * H, o, sv + b * gw, ln_at,
                                              c.gi_rstd ? c.gi_rstd + t * B + b : nullptr);
            finish(b, o);
          }
        });
      });
    } else {
      gemm_rz(hm, H, T(0), gh, G3);
      for_rows(B, units, [&](int64_t b0, int64_t b1) {
        for (int64_t b = b0; b < b1; ++b) {
          if (c.ln_gain) {
            T* svb = sv + b * gw;
            ln_forward(gh + b * G3, 2 * H, c.ln_gain, svb + ln_at, svb + ln_at + G3);
          }
          const T* g = input_row(git, t, b);
          T* q = gh + b * G3;
          const T* h = hm + b * H;
          T* x = rh + b * H;
          T* sr = sv + b * gw;
#pragma omp simd
          for (int64_t j = 0; j < H; ++j) {
            const T r = act<GA>(g[j] + q[j] + bh[j], c);
            const T z = act<GA>(g[H + j] + q[H + j] + bh[H + j], c);
            x[j] = r * h[j];
            q[H + j] = z;  // keep z for the second pass
            sr[j] = r;
            sr[H + j] = z;
          }
        }
      });
      gemm_n(rh, H, T(0), gh + 2 * H, G3);
      for_rows(B, units, [&](int64_t b0, int64_t b1) {
        for (int64_t b = b0; b < b1; ++b) {
          if (c.ln_gain) {
            T* svb = sv + b * gw;
            ln_forward(gh + b * G3 + 2 * H, H, c.ln_gain + 2 * H, svb + ln_at + 2 * H, svb + ln_at + G3 + 1);
          }
          const T* g = c.gi_gain ? gin + b * G3 : git + b * G3;  // the first pass filled gin's row
          const T* q = gh + b * G3;
          const T* h = hm + b * H;
          T* o = staged ? rh + b * H : h_out + b * H;
          T* sr = sv + b * gw;
#pragma omp simd
          for (int64_t j = 0; j < H; ++j) {
            const T z = q[H + j];
            const T n = act<CA>(g[2 * H + j] + q[2 * H + j] + bh[2 * H + j], c);
            o[j] = n + z * (h[j] - n);
            sr[2 * H + j] = n;
          }
          finish(b, o);
        }
      });
    }
  }
}

// BPTT of one layer-direction: walks t = T-1..0 carrying dh; writes the per-step gate gradients.
template <typename T, int GA, int CA>
void backward_impl(const at::Tensor& dbuf, const at::Tensor& buf, const at::Tensor& gates,
                   const at::Tensor& w_hh, const at::Tensor& w16, const Cell<T>& c, bool reset_after, at::Tensor& dgi,
                   at::Tensor& dgh_n, at::Tensor& dh0, at::Tensor& dgh_pre, at::Tensor& dgain_parts,
                   at::Tensor& in_parts, const Slots& s) {
  const int64_t B = buf.size(1), H = buf.size(2), G3 = 3 * H;
  const int64_t gw = saved_width(reset_after, c.ln_gain != nullptr, H);
  const int64_t ln_at = reset_after ? 4 * H : 3 * H;
  const int64_t units = c.row_units(H);  // per-row work for for_rows
  T* dpre_p = c.ln_gain ? dgh_pre.data_ptr<T>() : nullptr;  // (T, B, 3H) pre-norm recurrent gradient
  // the recurrent norm's gain gradient, one (3H) partial sum per thread (summed by the caller)
  T* dgain_p = c.ln_gain ? dgain_parts.data_ptr<T>() : nullptr;
  auto dgain_of_thread = [&]() { return dgain_p + at::get_thread_num() * G3; };
  // With the input norm: per thread, its gain's gradient (3H) then the bias sums (3H of d gi, + H of
  // d(W_hn h + b_hn) for reset_after): the norm turns dgi into the pre-norm gradient, so the biases'
  // gradients are summed here, before that.
  const int64_t in_width = in_parts.defined() ? in_parts.size(1) : 0;
  T* in_p = c.in_xhat ? in_parts.data_ptr<T>() : nullptr;
  // Row b of step t through the input norm, in place: dgb (3H, gradient of xhat * gain + bias) becomes
  // the gradient of the raw projection; dgnb (H, reset_after) is only summed.
  auto input_norm_row = [&](T* dgb, const T* dgnb, int64_t t, int64_t b) {
    T* part = in_p + at::get_thread_num() * in_width;
    T* dsum = part + G3;
    if (dgnb) {
#pragma omp simd
      for (int64_t j = 0; j < H; ++j) dsum[G3 + j] += dgnb[j];
    }
    ln_backward(dgb, G3, c.gi_gain, c.in_xhat + (t * B + b) * G3, c.in_rstd[t * B + b], dgb, part, dsum);
  };
  // Every row of one step through one normalised block: columns [col, col + width) of src (rows of G3)
  // to the same columns of dpre, with that block's saved xhat and its rstd slot.
  auto ln_backward_rows = [&](const T* sv, const T* src, T* dpre, int64_t col, int64_t width, int64_t slot) {
    for_rows(B, units, [&](int64_t b0, int64_t b1) {
      T* dgain = dgain_of_thread() + col;
      for (int64_t b = b0; b < b1; ++b) {
        const T* svb = sv + b * gw;
        ln_backward(src + b * G3 + col, width, c.ln_gain + col, svb + ln_at + col, svb[ln_at + G3 + slot],
                    dpre + b * G3 + col, dgain);
      }
    });
  };
  const T* dbuf_p = dbuf.data_ptr<T>();
  const T* buf_p = buf.data_ptr<T>();
  const T* gates_p = gates.data_ptr<T>();
  const T* w = w_hh.data_ptr<T>();
  const T* m = c.rec_mask;
  T* dgi_p = dgi.data_ptr<T>();
  // dgh_n is skipped (empty) when the layer norms make it redundant: then one (B, H) scratch step serves
  at::Tensor dgn_scratch = reset_after && dgh_n.numel() == 0 ? at::empty({B, H}, buf.options()) : at::Tensor();
  T* dghn_p = !reset_after ? nullptr : dgh_n.numel() ? dgh_n.data_ptr<T>() : dgn_scratch.data_ptr<T>();
  const int64_t dgn_stride = dgh_n.numel() ? B * H : 0;
  at::Tensor d_t = at::zeros({B, H}, buf.options());     // gradient carried to h_{t-1}
  at::Tensor dhm_t = at::empty({B, H}, buf.options());   // gradient of the state the cell saw
  at::Tensor keep_t = at::empty({B, H}, buf.options());  // direct (zoneout / skipped step) part
  at::Tensor dc_t = at::empty({B, H}, buf.options());    // gradient of the cell output
  at::Tensor tmp_t = at::empty({B, G3}, buf.options());
  T* d = d_t.data_ptr<T>();
  T* dhm = dhm_t.data_ptr<T>();
  T* keep = keep_t.data_ptr<T>();
  T* dcell = dc_t.data_ptr<T>();
  T* tmp = tmp_t.data_ptr<T>();
  const SmallGemmThreads threads(2.0 * B * G3 * H);
  auto rows16 = [&](int64_t r0, int64_t r1) { return w16.defined() ? w16.narrow(0, r0, r1 - r0) : at::Tensor(); };
  const RecurrentGemm<T> back_all(reset_after ? B : 0, H, G3, w, H, false, s.T, rows16(0, G3));  // dG @ W_hh
  const RecurrentGemm<T> back_n(reset_after ? 0 : B, H, H, w + 2 * H * H, H, false, s.T, rows16(2 * H, G3));
  const RecurrentGemm<T> back_rz(reset_after ? 0 : B, H, 2 * H, w, H, false, s.T, rows16(0, 2 * H));

  // no masks, zoneout or lengths (a recurrent layer norm allowed): the fused single-pass step below
  const bool plain = !c.zoneout() && !c.len && !c.rec_mask;
  for (int64_t i = s.T - 1; i >= 0; --i) {
    const int64_t t = s.step(i);
    const T* hp = buf_p + s.in(t) * B * H;
    const T* dout = dbuf_p + s.out(t) * B * H;
    const T* sv = gates_p + t * B * gw;
    T* dg = dgi_p + t * B * G3;
    // Pass 1 per row: split the gradient of h_t into the direct part (to h_{t-1}) and the cell part.
    auto split = [&](int64_t b) -> bool {
      T* kp = keep + b * H;
      T* dc = dcell + b * H;
      const T* dy = dout + b * H;
      const T* dd = d + b * H;
      if (c.len && t >= c.len[b]) {
        for (int64_t j = 0; j < H; ++j) {
          kp[j] = dd[j] + dy[j];
          dc[j] = T(0);
        }
        return false;
      }
      if (c.zoneout()) {
        for (int64_t j = 0; j < H; ++j) {
          const T g = dd[j] + dy[j], k = c.keep(t, B, H, b, j);
          kp[j] = g * k;
          dc[j] = g * (T(1) - k);
        }
      } else {
        for (int64_t j = 0; j < H; ++j) {
          kp[j] = T(0);
          dc[j] = dd[j] + dy[j];
        }
      }
      return true;
    };
    if (plain && reset_after) {  // the common case in one pass: d becomes dh_{t-1} before the GEMM adds to it
      T* dgn = dghn_p + t * dgn_stride;
      T* dpre = c.ln_gain ? dpre_p + t * B * G3 : nullptr;
      dispatch_norms(c.in_xhat != nullptr, c.ln_gain != nullptr, [&]<bool IN, bool LN>() {
        for_rows(B, units, [&](int64_t b0, int64_t b1) {
          T* dgain = LN ? dgain_of_thread() : nullptr;
          T* in_part = IN ? in_p + at::get_thread_num() * in_width : nullptr;
          for (int64_t b = b0; b < b1; ++b) {
            const int64_t row = t * B + b;
            ra_backward_row<T, GA, CA, IN, LN>(c, H, d + b * H, dout + b * H, hp + b * H, sv + b * gw, ln_at,
                                               dg + b * G3, tmp + b * G3, dgn + b * H,
                                               LN ? dpre + b * G3 : nullptr, dgain,
                                               IN ? c.in_xhat + row * G3 : nullptr, IN ? c.in_rstd[row] : T(1),
                                               in_part);
          }
        });
      });
      back_all(c.ln_gain ? dpre : tmp, G3, T(1), d, H);
      continue;
    }
    if (reset_after) {
      T* dgn = dghn_p + t * dgn_stride;
      for_rows(B, units, [&](int64_t b0, int64_t b1) {
        for (int64_t b = b0; b < b1; ++b) {
          const bool live = split(b);
          const T* gc = dcell + b * H;
          const T* h = hp + b * H;
          const T* mb = m ? m + b * H : nullptr;
          const T* sr = sv + b * gw;
          T* dgb = dg + b * G3;
          T* tb = tmp + b * G3;
          T* dgnb = dgn + b * H;
          T* dmb = dhm + b * H;
#pragma omp simd
          for (int64_t j = 0; j < H; ++j) {
            const T r = sr[j], z = sr[H + j], n = sr[2 * H + j], hn = sr[3 * H + j];
            const T hmj = mb ? h[j] * mb[j] : h[j];
            const T dn = gc[j] * (T(1) - z) * dact<CA>(n, c);
            const T dz = gc[j] * (hmj - n) * dact<GA>(z, c);
            const T dr = dn * hn * dact<GA>(r, c);
            dmb[j] = gc[j] * z;
            dgb[j] = tb[j] = live ? dr : T(0);
            dgb[H + j] = tb[H + j] = live ? dz : T(0);
            dgb[2 * H + j] = live ? dn : T(0);
            tb[2 * H + j] = dgnb[j] = live ? dn * r : T(0);
          }
        }
      });
      if (c.ln_gain) {  // through the layer norm: tmp becomes the gradient of h @ W_hh^T
        T* dpre = dpre_p + t * B * G3;
        ln_backward_rows(sv, tmp, dpre, 0, G3, 0);
        back_all(dpre, G3, T(1), dhm, H);
      } else {
        back_all(tmp, G3, T(1), dhm, H);
      }
    } else {
      for_rows(B, units, [&](int64_t b0, int64_t b1) {
        for (int64_t b = b0; b < b1; ++b) {
          const bool live = split(b);
          const T* gc = dcell + b * H;
          const T* sr = sv + b * gw;
          T* dgb = dg + b * G3;
#pragma omp simd
          for (int64_t j = 0; j < H; ++j) {
            const T z = sr[H + j], n = sr[2 * H + j];
            dgb[2 * H + j] = live ? gc[j] * (T(1) - z) * dact<CA>(n, c) : T(0);
          }
        }
      });
      const T* dn_src = dg + 2 * H;  // gradient of W_hn (r * hm), through the n-block norm if any
      T* dpre = c.ln_gain ? dpre_p + t * B * G3 : nullptr;
      if (c.ln_gain) {
        ln_backward_rows(sv, dg, dpre, 2 * H, H, 1);
        dn_src = dpre + 2 * H;
      }
      back_n(dn_src, G3, T(0), tmp, G3);  // d(r * hm) into tmp[:, :H]
      for_rows(B, units, [&](int64_t b0, int64_t b1) {
        for (int64_t b = b0; b < b1; ++b) {
          const bool live = !(c.len && t >= c.len[b]);
          const T* gc = dcell + b * H;
          const T* h = hp + b * H;
          const T* mb = m ? m + b * H : nullptr;
          const T* sr = sv + b * gw;
          const T* drh = tmp + b * G3;
          T* dgb = dg + b * G3;
          T* dmb = dhm + b * H;
#pragma omp simd
          for (int64_t j = 0; j < H; ++j) {
            const T r = sr[j], z = sr[H + j], n = sr[2 * H + j];
            const T hmj = mb ? h[j] * mb[j] : h[j];
            dgb[j] = live ? drh[j] * hmj * dact<GA>(r, c) : T(0);
            dgb[H + j] = live ? gc[j] * (hmj - n) * dact<GA>(z, c) : T(0);
            dmb[j] = live ? gc[j] * z + drh[j] * r : T(0);
          }
        }
      });
      if (c.ln_gain) {
        ln_backward_rows(sv, dg, dpre, 0, 2 * H, 0);
        back_rz(dpre, G3, T(1), dhm, H);
      } else {
        back_rz(dg, G3, T(1), dhm, H);
      }
    }
    if (c.in_xhat) {  // the step's gate gradients are complete (and used): through the input norm
      const T* dgn = reset_after ? dghn_p + t * dgn_stride : nullptr;
      for_rows(B, units, [&](int64_t b0, int64_t b1) {
        for (int64_t b = b0; b < b1; ++b) input_norm_row(dg + b * G3, dgn ? dgn + b * H : nullptr, t, b);
      });
    }
    // Pass 3: gradient of h_{t-1} = direct part + (through the recurrent-dropout mask) the cell part.
    for (int64_t k = 0; k < B * H; ++k) d[k] = keep[k] + (m ? dhm[k] * m[k] : dhm[k]);
  }
  // h0 also sits in its own buf slot, which may carry gradient of its own.
  const T* d0 = dbuf_p + s.in(s.step(0)) * B * H;
  T* out = dh0.data_ptr<T>();
  for (int64_t k = 0; k < B * H; ++k) out[k] = d[k] + d0[k];
}

// Large buffers (projections, states, saved gates, gate gradients) come from a cache of mappings. Why:
// these tens of MB are allocated and freed every training step, and memory that malloc hands back to the
// system costs a zeroed page fault per page when touched again (measured: most of the variance of a
// training step, and 15-25% of its median). Blocks are mmap'ed in 64 KiB multiples, returned to the cache
// when their tensor dies and reused best-fit (a block at most 2x the request); the cache keeps at most
// kMaxCachedBytes, unmapping the oldest blocks beyond it. FASTGRU_BUFFER_CACHE=0 turns it off (plain
// at::empty), release_buffers() empties it; FASTGRU_HUGE_PAGES=1 asks for transparent huge pages on the
// blocks (same speed here once blocks are reused, and a few MB more resident memory per step).
class BufferCache {
 public:
  static BufferCache& instance() {
    static BufferCache* cache = new BufferCache();  // never destroyed: tensors may outlive static teardown
    return *cache;
  }
  static bool enabled() {
    static const bool on = [] {
      const char* env = std::getenv("FASTGRU_BUFFER_CACHE");
      return env == nullptr || std::string(env) != "0";
    }();
    return on;
  }
  // A block of at least `bytes`; its real size goes to *size.
  void* get(size_t bytes, size_t* size) {
    const size_t want = round_up(bytes);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      auto it = free_.lower_bound(want);
      if (it != free_.end() && it->first <= 2 * want) {
        void* p = it->second.first;
        *size = it->first;
        cached_ -= it->first;
        free_.erase(it);
        return p;
      }
    }
    void* p = mmap(nullptr, want, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    TORCH_CHECK(p != MAP_FAILED, "fastgru: could not map ", want, " bytes");
    if (huge_pages()) madvise(p, want, MADV_HUGEPAGE);
    *size = want;
    return p;
  }
  void put(void* p, size_t size) {
    std::vector<std::pair<void*, size_t>> unmap;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      free_.emplace(size, std::make_pair(p, ++clock_));
      cached_ += size;
      while (cached_ > kMaxCachedBytes) {  // drop the oldest blocks
        auto oldest = free_.begin();
        for (auto it = free_.begin(); it != free_.end(); ++it)
          if (it->second.second < oldest->second.second) oldest = it;
        unmap.emplace_back(oldest->second.first, oldest->first);
        cached_ -= oldest->first;
        free_.erase(oldest);
      }
    }
    for (auto& [q, n] : unmap) munmap(q, n);
  }
  void release() {
    std::multimap<size_t, std::pair<void*, uint64_t>> blocks;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      blocks.swap(free_);
      cached_ = 0;
    }
    for (auto& [n, block] : blocks) munmap(block.first, n);
  }
  size_t cached_bytes() {
    std::lock_guard<std::mutex> lock(mutex_);
    return cached_;
  }

 private:
  static constexpr size_t kGranule = size_t(64) << 10;
  static constexpr size_t kMaxCachedBytes = size_t(512) << 20;
  static size_t round_up(size_t bytes) { return (bytes + kGranule - 1) / kGranule * kGranule; }
  static bool huge_pages() {
    static const bool on = [] { const char* e = std::getenv("FASTGRU_HUGE_PAGES"); return e && std::string(e) == "1"; }();
    return on;
  }
  std::mutex mutex_;
  std::multimap<size_t, std::pair<void*, uint64_t>> free_;  // size -> (block, when it was freed)
  size_t cached_ = 0;
  uint64_t clock_ = 0;
};

at::Tensor empty_cached(at::IntArrayRef sizes, const at::TensorOptions& options) {
  constexpr size_t kMinBytes = size_t(1) << 20;  // smaller buffers: malloc serves them well
  const size_t bytes = c10::multiply_integers(sizes) * c10::elementSize(c10::typeMetaToScalarType(options.dtype()));
  if (!BufferCache::enabled() || bytes < kMinBytes) return at::empty(sizes, options);
  size_t size = 0;
  void* p = BufferCache::instance().get(bytes, &size);
  return at::from_blob(p, sizes, [size](void* q) { BufferCache::instance().put(q, size); },
                       options.device(at::kCPU));
}

// Bool mask with P(True) = p for each element (zoneout keep-masks), from a counter-based generator:
// element i is bit 32.. of splitmix64's output for state seed + (i + 1) * golden ratio, so the mask depends
// only on (seed, shape) and rows are drawn in parallel. The caller draws seed from torch's generator, so
// torch.manual_seed reproduces masks. p is resolved to a multiple of 2^-32. About 10x faster than
// torch.rand(shape) < p, whose generator is sequential (12 of a 134 ms training step at T=200, B=64, H=256).
at::Tensor bernoulli_mask(const std::vector<int64_t>& sizes, double p, int64_t seed) {
  TORCH_CHECK(p >= 0.0 && p <= 1.0, "p must be in [0, 1], got ", p);
  at::Tensor mask = at::empty(sizes, at::TensorOptions().dtype(at::kBool));
  uint8_t* d = static_cast<uint8_t*>(mask.data_ptr());
  const uint64_t threshold = static_cast<uint64_t>(std::ldexp(p, 32));
  const uint64_t base = static_cast<uint64_t>(seed);
  at::parallel_for(0, mask.numel(), 1 << 16, [&](int64_t a, int64_t b) {
#pragma omp simd
    for (int64_t i = a; i < b; ++i) {
      uint64_t z = base + static_cast<uint64_t>(i + 1) * 0x9E3779B97F4A7C15ull;
      z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
      z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
      z ^= z >> 31;
      d[i] = (z >> 32) < threshold;
    }
  });
  return mask;
}

// W_hh in bf16 for the step products of a bf16 (autocast) run; undefined otherwise. Only float32 runs use
// it: a float64 model under autocast stays in float64.
at::Tensor bf16_weight(const at::Tensor& w_hh, bool bf16) {
  return bf16 && w_hh.scalar_type() == at::kFloat ? w_hh.to(at::kBFloat16) : at::Tensor();
}

void check_inputs(const at::Tensor& a, const char* name) {
  TORCH_CHECK(a.device().is_cpu(), name, " must be a CPU tensor");
  TORCH_CHECK(a.is_contiguous(), name, " must be contiguous");
}

const int64_t* lengths_ptr(const c10::optional<at::Tensor>& lengths) {
  if (!lengths.has_value() || !lengths->defined()) return nullptr;
  TORCH_CHECK(lengths->scalar_type() == at::kLong && lengths->is_contiguous(), "lengths must be contiguous int64");
  return lengths->data_ptr<int64_t>();
}

}  // namespace

template <typename T>
const T* optional_ptr(const c10::optional<at::Tensor>& t, const char* name) {
  if (!t.has_value() || !t->defined()) return nullptr;
  check_inputs(*t, name);
  return t->data_ptr<T>();
}

const uint8_t* bool_mask_ptr(const c10::optional<at::Tensor>& t, const char* name) {
  if (!t.has_value() || !t->defined()) return nullptr;
  check_inputs(*t, name);
  TORCH_CHECK(t->scalar_type() == at::kBool || t->scalar_type() == at::kByte, name, " must be a bool tensor");
  return static_cast<const uint8_t*>(t->data_ptr());
}

// Calls fn.template operator()<GA, CA>() for the activation pair chosen at run time.
template <typename F>
void dispatch_activations(int64_t gate, int64_t cand, const F& fn) {
  TORCH_CHECK(gate == kSigmoid || gate == kHardSigmoid, "gate activation must be sigmoid or hard_sigmoid");
  auto with_gate = [&](auto ga) {
    constexpr int GA = decltype(ga)::value;
    switch (cand) {
      case kTanh: return fn.template operator()<GA, kTanh>();
      case kRelu: return fn.template operator()<GA, kRelu>();
      case kSoftsign: return fn.template operator()<GA, kSoftsign>();
      case kSigmoid: return fn.template operator()<GA, kSigmoid>();
      case kHardSigmoid: return fn.template operator()<GA, kHardSigmoid>();
      default: TORCH_CHECK(false, "unknown candidate activation ", cand);
    }
  };
  if (gate == kSigmoid) with_gate(std::integral_constant<int, kSigmoid>{});
  else with_gate(std::integral_constant<int, kHardSigmoid>{});
}

template <typename T>
Cell<T> make_cell(const T* b_hh, const c10::optional<at::Tensor>& lengths, const c10::optional<at::Tensor>& rec_mask,
                  const c10::optional<at::Tensor>& zone_mask, double zone_p, double hs_alpha, double hs_beta,
                  const c10::optional<at::Tensor>& ln_gain, const T* gi_gain = nullptr, const T* gi_bias = nullptr) {
  return Cell<T>{b_hh, lengths_ptr(lengths), optional_ptr<T>(rec_mask, "rec_mask"),
                 bool_mask_ptr(zone_mask, "zone_mask"),
                 T(zone_p), T(hs_alpha), T(hs_beta), optional_ptr<T>(ln_gain, "ln_gain"), gi_gain, gi_bias,
                 nullptr, nullptr, nullptr};
}

std::vector<at::Tensor> forward(const at::Tensor& gi, const at::Tensor& h0, const at::Tensor& w_hh,
                                const c10::optional<at::Tensor>& b_hh, const c10::optional<at::Tensor>& lengths,
                                bool reset_after, bool reverse, bool save, const c10::optional<at::Tensor>& rec_mask,
                                const c10::optional<at::Tensor>& zone_mask, double zone_p, int64_t gate_act,
                                int64_t cand_act, double hs_alpha, double hs_beta,
                                const c10::optional<at::Tensor>& ln_gain, const c10::optional<at::Tensor>& gi_gain,
                                const c10::optional<at::Tensor>& gi_bias, bool bf16) {
  check_inputs(gi, "gi");
  check_inputs(h0, "h0");
  check_inputs(w_hh, "w_hh");
  TORCH_CHECK(h0.scalar_type() == gi.scalar_type() && w_hh.scalar_type() == gi.scalar_type(),
              "gi, h0 and w_hh must share a dtype");
  const int64_t T = gi.size(0), B = gi.size(1), H = w_hh.size(1);
  at::Tensor buf = empty_cached({T + 1, B, H}, gi.options());
  const bool layer_norm = ln_gain.has_value() && ln_gain->defined();
  at::Tensor gates = save ? empty_cached({T, B, saved_width(reset_after, layer_norm, H)}, gi.options())
                          : at::empty({0}, gi.options());
  const Slots s{T, reverse};
  std::memcpy(static_cast<char*>(buf.data_ptr()) + (reverse ? T : 0) * B * H * buf.element_size(), h0.data_ptr(),
              B * H * buf.element_size());
  const at::Tensor w16 = bf16_weight(w_hh, bf16);
  const bool input_norm = gi_gain.has_value() && gi_gain->defined();
  at::Tensor gi_rstd = input_norm && save ? at::empty({T * B}, gi.options()) : at::Tensor();
  AT_DISPATCH_FLOATING_TYPES(gi.scalar_type(), "fastgru_forward", [&] {
    const bool has_bias = b_hh.has_value() && b_hh->defined();
    at::Tensor bias = has_bias ? b_hh->contiguous() : at::zeros({3 * H}, gi.options());
    const scalar_t* in_gain = optional_ptr<scalar_t>(gi_gain, "gi_gain");
    at::Tensor in_bias = (gi_bias.has_value() && gi_bias->defined()) ? gi_bias->contiguous()
                                                                     : at::zeros({3 * H}, gi.options());
    Cell<scalar_t> c = make_cell<scalar_t>(bias.data_ptr<scalar_t>(), lengths, rec_mask, zone_mask, zone_p,
                                           hs_alpha, hs_beta, ln_gain, in_gain,
                                           in_gain ? in_bias.data_ptr<scalar_t>() : nullptr);
    c.gi_rstd = gi_rstd.defined() ? gi_rstd.data_ptr<scalar_t>() : nullptr;
    dispatch_activations(gate_act, cand_act, [&]<int GA, int CA>() {
      forward_impl<scalar_t, GA, CA>(gi, w_hh, w16, c, reset_after, save, buf, gates, s);
    });
  });
  return {buf, gates, gi_rstd};  // gi_rstd undefined (None) unless an input norm was saved
}

std::vector<at::Tensor> backward(const at::Tensor& dbuf, const at::Tensor& buf, const at::Tensor& gates,
                                 const at::Tensor& w_hh, const c10::optional<at::Tensor>& lengths, bool reset_after,
                                 bool reverse, const c10::optional<at::Tensor>& rec_mask,
                                 const c10::optional<at::Tensor>& zone_mask, double zone_p, int64_t gate_act,
                                 int64_t cand_act, double hs_alpha, double hs_beta,
                                 const c10::optional<at::Tensor>& ln_gain, const c10::optional<at::Tensor>& in_xhat,
                                 const c10::optional<at::Tensor>& in_rstd, const c10::optional<at::Tensor>& in_gain,
                                 bool bf16) {
  check_inputs(dbuf, "dbuf");
  check_inputs(buf, "buf");
  check_inputs(gates, "gates");
  check_inputs(w_hh, "w_hh");
  const int64_t T = buf.size(0) - 1, B = buf.size(1), H = buf.size(2);
  const bool layer_norm = ln_gain.has_value() && ln_gain->defined();
  const bool input_norm = in_xhat.has_value() && in_xhat->defined();
  TORCH_CHECK(!input_norm || (in_rstd.has_value() && in_gain.has_value()), "in_xhat needs in_rstd and in_gain");
  // With both norms the bias sums come from the loop and dW_hh pairs with dgh_pre: dgh_n is not needed.
  const bool keep_dgh_n = reset_after && !(layer_norm && input_norm);
  at::Tensor dgi = empty_cached({T, B, 3 * H}, buf.options());
  at::Tensor dgh_n = keep_dgh_n ? empty_cached({T, B, H}, buf.options()) : at::empty({0}, buf.options());
  at::Tensor dh0 = at::empty({B, H}, buf.options());
  at::Tensor dgh_pre = layer_norm ? empty_cached({T, B, 3 * H}, buf.options()) : at::empty({0}, buf.options());
  const int64_t max_threads = std::max<int64_t>(at::get_num_threads(), omp_get_max_threads());
  at::Tensor dgain_parts = layer_norm ? at::zeros({max_threads, 3 * H}, buf.options()) : at::empty({0}, buf.options());
  const int64_t in_width = 6 * H + (reset_after ? H : 0);  // input gain's gradient, then the bias sums
  at::Tensor in_parts = input_norm ? at::zeros({max_threads, in_width}, buf.options()) : at::Tensor();
  const at::Tensor w16 = bf16_weight(w_hh, bf16);
  AT_DISPATCH_FLOATING_TYPES(buf.scalar_type(), "fastgru_backward", [&] {
    Cell<scalar_t> c =
        make_cell<scalar_t>(nullptr, lengths, rec_mask, zone_mask, zone_p, hs_alpha, hs_beta, ln_gain,
                            optional_ptr<scalar_t>(in_gain, "in_gain"));
    c.in_xhat = optional_ptr<scalar_t>(in_xhat, "in_xhat");
    c.in_rstd = optional_ptr<scalar_t>(in_rstd, "in_rstd");
    dispatch_activations(gate_act, cand_act, [&]<int GA, int CA>() {
      backward_impl<scalar_t, GA, CA>(dbuf, buf, gates, w_hh, w16, c, reset_after, dgi, dgh_n, dh0, dgh_pre,
                                      dgain_parts, in_parts, Slots{T, reverse});
    });
  });
  // {dgi, dgh_n, dh0, d pre-norm recurrent products, d ln_gain, d in_gain, bias sums}; absent ones None.
  const at::Tensor in_sums = input_norm ? in_parts.sum(0) : at::Tensor();
  return {dgi, dgh_n, dh0, layer_norm ? dgh_pre : at::Tensor(), layer_norm ? dgain_parts.sum(0) : at::Tensor(),
          input_norm ? in_sums.narrow(0, 0, 3 * H).clone() : at::Tensor(),  // separate storage: no aliasing
          input_norm ? in_sums.narrow(0, 3 * H, in_width - 3 * H).clone() : at::Tensor()};
}

// Input projections of all steps, x (T, B, I) -> (T, B, 3H) = x @ W_ih^T + b_ih, as one GEMM into a buffer
// from the cache. bf16 (autocast, float32 only): the product in bf16 through oneDNN, the sum with the bias
// and the result in float32.
at::Tensor project(const at::Tensor& x, const at::Tensor& w_ih, const c10::optional<at::Tensor>& b_ih, bool bf16) {
  const int64_t T = x.size(0), B = x.size(1), I = x.size(2), G = w_ih.size(0);
  const at::Tensor x2 = x.reshape({T * B, I});
  at::Tensor gi = empty_cached({T * B, G}, x.options());
  const bool has_bias = b_ih.has_value() && b_ih->defined();
  if (bf16 && x.scalar_type() == at::kFloat) {
    const at::Tensor p = at::mm(x2.to(at::kBFloat16), w_ih.to(at::kBFloat16).t());
    if (has_bias) at::add_out(gi, p, *b_ih);
    else gi.copy_(p);
  } else if (has_bias) {
    at::addmm_out(gi, *b_ih, x2, w_ih.t());
  } else {
    at::mm_out(gi, x2, w_ih.t());
  }
  return gi.view({T, B, G});
}

// Inference of a whole stacked GRU in one call (no autograd; plain cell, no lengths): per layer and
// direction the input projection (one GEMM over all T*B rows) and the recurrence, directions side by side
// as torch.nn.GRU. Why one call: at T=1 a call is mostly per-layer Python work, not arithmetic.
// x (T, B, I) time-major; hx (L*D, B, H) or None (zeros); params: w_ih, w_hh, b_ih, b_hh per
// layer-direction (biases may be None). Returns {output (T, B, D*H), h_n (L*D, B, H)}.
std::vector<at::Tensor> infer(const at::Tensor& x, const c10::optional<at::Tensor>& hx,
                              const std::vector<c10::optional<at::Tensor>>& params, int64_t num_layers,
                              bool bidirectional, bool reset_after, bool bf16) {
  at::NoGradGuard no_grad;
  const int64_t D = bidirectional ? 2 : 1, T = x.size(0), B = x.size(1);
  TORCH_CHECK(x.dim() == 3 && static_cast<int64_t>(params.size()) == 4 * num_layers * D && params[1].has_value(),
              "infer: x (T, B, I) and 4 parameters per layer-direction expected");
  const int64_t H = params[1]->size(1);
  const at::Tensor h0 = hx.has_value() && hx->defined() ? hx->contiguous()
                                                         : at::zeros({num_layers * D, B, H}, x.options());
  TORCH_CHECK(h0.dim() == 3 && h0.size(0) == num_layers * D && h0.size(1) == B && h0.size(2) == H,
              "infer: hx must be (num_layers * directions, B, H)");
  at::Tensor layer_in = x.contiguous();
  std::vector<at::Tensor> finals;
  for (int64_t l = 0; l < num_layers; ++l) {
    std::vector<at::Tensor> outs;
    for (int64_t d = 0; d < D; ++d) {
      const int64_t k = l * D + d;
      const at::Tensor gi = project(layer_in, *params[4 * k], params[4 * k + 2], bf16);
      const at::Tensor buf = forward(gi, h0.select(0, k), params[4 * k + 1]->contiguous(), params[4 * k + 3],
                                     c10::nullopt, reset_after, d == 1, false, c10::nullopt, c10::nullopt, 0.0,
                                     kSigmoid, kTanh, 0.2, 0.5, c10::nullopt, c10::nullopt, c10::nullopt, bf16)[0];
      outs.push_back(buf.narrow(0, d == 1 ? 0 : 1, T));
      finals.push_back(buf.select(0, d == 1 ? 0 : T));
    }
    layer_in = D == 1 ? outs[0] : at::cat(outs, 2);
  }
  return {layer_in, at::stack(finals)};
}

// Layer norm over each row of v (rows, N), in place, with the kernel's epsilon (kLnEps): v <- xhat
// (keep_xhat, for training: the cell then applies gain and shift itself) or xhat * gain + bias
// (inference). Returns rstd per row.
at::Tensor norm_rows(at::Tensor& v, const at::Tensor& gain, const c10::optional<at::Tensor>& bias, bool keep_xhat) {
  check_inputs(v, "v");
  check_inputs(gain, "gain");
  const int64_t N = v.size(-1), rows = v.numel() / N;
  at::Tensor rstd = at::empty({rows}, v.options());
  AT_DISPATCH_FLOATING_TYPES(v.scalar_type(), "fastgru_norm_rows", [&] {
    using T = scalar_t;
    T* vp = v.data_ptr<T>();
    T* rp = rstd.data_ptr<T>();
    const T* g = gain.data_ptr<T>();
    const T* bb = optional_ptr<T>(bias, "bias");
    for_rows(rows, N, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        T* x = vp + r * N;
        const auto [mean, rs] = mean_rstd(x, N);
        rp[r] = rs;
        if (keep_xhat) {
        _Pragma("omp simd")
          for (int64_t j = 0; j < N; ++j) x[j] = (x[j] - mean) * rs;
        } else {
        _Pragma("omp simd")
          for (int64_t j = 0; j < N; ++j) x[j] = (x[j] - mean) * rs * g[j] + (bb ? bb[j] : T(0));
        }
      }
    });
  });
  return rstd;
}

// Backward of norm_rows: dy (rows, N), the gradient of xhat * gain + bias, becomes in place the gradient of
// the rows before the norm. Returns {dgain, dbias}, each summed over rows in per-chunk partials.
std::vector<at::Tensor> norm_rows_backward(at::Tensor& dy, const at::Tensor& xhat, const at::Tensor& rstd,
                                           const at::Tensor& gain) {
  check_inputs(dy, "dy");
  check_inputs(xhat, "xhat");
  check_inputs(rstd, "rstd");
  check_inputs(gain, "gain");
  const int64_t N = dy.size(-1), rows = dy.numel() / N;
  const int64_t chunks = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), rows));
  at::Tensor partial = at::zeros({chunks, 2, N}, dy.options());
  AT_DISPATCH_FLOATING_TYPES(dy.scalar_type(), "fastgru_norm_rows_backward", [&] {
    using T = scalar_t;
    T* dp = dy.data_ptr<T>();
    const T* xp = xhat.data_ptr<T>();
    const T* rp = rstd.data_ptr<T>();
    const T* g = gain.data_ptr<T>();
    T* pp = partial.data_ptr<T>();
    at::parallel_for(0, chunks, 1, [&](int64_t c0, int64_t c1) {
      for (int64_t ch = c0; ch < c1; ++ch) {
        T* dgain = pp + ch * 2 * N;
        T* dbias = dgain + N;
        for (int64_t r = rows * ch / chunks; r < rows * (ch + 1) / chunks; ++r) {
          T* d = dp + r * N;
          ln_backward(d, N, g, xp + r * N, rp[r], d, dgain, dbias);  // in place: d becomes the input's gradient
        }
      }
    });
  });
  return {partial.select(1, 0).sum(0), partial.select(1, 1).sum(0)};  // two separate tensors
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

// One time step of a stacked unidirectional GRU for streaming inference (no autograd): layer by layer,
// x_l @ W_ih^T and h @ W_hh^T, then the fused cell. weights: 4 per layer, contiguous, in the parameters'
// own layout (W_ih (3H, I), W_hh (3H, H), b_ih, b_hh; zero biases for a bias-free layer). Writes (L, B, H).
// At batch 1-2 ("tiny") the products are our own register-tiled loops, split over hidden units: thread k
// computes the r, z, n columns of its units [u0, u1) from both products and then those units' new state,
// so no thread waits for another within a reset_after layer; the reset-before variant and each next layer
// wait at a barrier. Small problems run on one thread (a parallel region costs about a microsecond).
// Larger batches make one BLAS call per product on one thread of ours.
template <typename T, int GA, int CA>
void step_impl(const at::Tensor& x, const at::Tensor& state, const std::vector<at::Tensor>& weights,
               bool reset_after, const Cell<T>& c0, at::Tensor& out) {
  const int64_t L = state.size(0), B = state.size(1), H = state.size(2), G3 = 3 * H;
  const int64_t I = x.size(1);
  // Scratch kept per thread across calls: at streaming sizes three tensor allocations per step are a
  // measurable part of its few microseconds.
  thread_local std::vector<T> scratch;
  scratch.resize(static_cast<size_t>(B * (2 * G3 + H)));
  T* gi = scratch.data();
  T* gh = gi + B * G3;
  T* rh = gh + B * G3;
  const bool tiny = B <= 2;
  const SmallGemmThreads threads(tiny ? 1e12 : 2.0 * B * G3 * H);
  const double macs = double(B) * G3 * (std::max(I, H) + H);
  constexpr int64_t kAlign = 16;  // units per thread in multiples of 16 floats (whole vector registers)
  const int64_t nt = tiny && macs >= 65536.0 ? std::min<int64_t>(at::get_num_threads(), H / 32) : 1;
  auto run = [&](int64_t k, int64_t nthreads) {
    const int64_t per = (H + nthreads - 1) / nthreads;
    const int64_t u0 = std::min(H, (per * k + kAlign - 1) / kAlign * kAlign);
    const int64_t u1 = k == nthreads - 1 ? H : std::min(H, (per * (k + 1) + kAlign - 1) / kAlign * kAlign);
    const int64_t nu = u1 - u0;
    // C[:, block g of this thread's units] = A @ W[same rows]^T for `blocks` gate blocks of H rows of W (N, K)
    auto product = [&](const T* A, int64_t K, const T* W, T* C, int64_t blocks) {
      if (!tiny) {
        gemm_rm<T>(B, blocks * H, K, A, K, W, K, true, T(0), C, G3);
        return;
      }
      if (nu <= 0) return;
      for (int64_t g = 0; g < blocks; ++g)
        small_rows_gemm_nt<T>(B, nu, K, A, W + (g * H + u0) * K, K, C + g * H + u0, G3);
    };
    const T* in = x.data_ptr<T>();
    int64_t in_size = I;
    for (int64_t l = 0; l < L; ++l) {
      const T* w_ih = weights[4 * l].data_ptr<T>();
      const T* w = weights[4 * l + 1].data_ptr<T>();
      const T* b_ih = weights[4 * l + 2].data_ptr<T>();
      const T* bh = weights[4 * l + 3].data_ptr<T>();
      const T* hp = state.data_ptr<T>() + l * B * H;
      T* o_all = out.data_ptr<T>() + l * B * H;
      product(in, in_size, w_ih, gi, 3);
      product(hp, H, w, gh, reset_after ? 3 : 2);
      if (!reset_after) {
        for (int64_t b = 0; b < B; ++b)
          for (int64_t j = u0; j < u1; ++j) {
            const T r = act<GA>(gi[b * G3 + j] + b_ih[j] + gh[b * G3 + j] + bh[j], c0);
            rh[b * H + j] = r * hp[b * H + j];
          }
        if (nthreads > 1) {
#pragma omp barrier
        }
        product(rh, H, w + 2 * H * H, gh + 2 * H, 1);
      }
      const T keep = c0.zone_p;
      for (int64_t b = 0; b < B; ++b) {
        const T* g = gi + b * G3;
        const T* q = gh + b * G3;
        const T* h = hp + b * H;
        T* o = o_all + b * H;
        if (reset_after) {  // two loops, not a select inside one, so each vectorises (exp/tanh in SIMD)
#pragma omp simd
          for (int64_t j = u0; j < u1; ++j) {
            const T r = act<GA>(g[j] + b_ih[j] + q[j] + bh[j], c0);
            const T z = act<GA>(g[H + j] + b_ih[H + j] + q[H + j] + bh[H + j], c0);
            const T n = act<CA>(g[2 * H + j] + b_ih[2 * H + j] + r * (q[2 * H + j] + bh[2 * H + j]), c0);
            o[j] = keep * h[j] + (T(1) - keep) * (n + z * (h[j] - n));
          }
        } else {
#pragma omp simd
          for (int64_t j = u0; j < u1; ++j) {
            const T z = act<GA>(g[H + j] + b_ih[H + j] + q[H + j] + bh[H + j], c0);
            const T n = act<CA>(g[2 * H + j] + b_ih[2 * H + j] + q[2 * H + j] + bh[2 * H + j], c0);
            o[j] = keep * h[j] + (T(1) - keep) * (n + z * (h[j] - n));
          }
        }
      }
      if (nthreads > 1 && l + 1 < L) {
#pragma omp barrier
      }
      in = o_all;
      in_size = H;
    }
  };
  if (nt <= 1) {
    run(0, 1);
    return;
  }
#pragma omp parallel num_threads(nt)
  {
    const int64_t got = omp_get_num_threads();  // may be fewer than asked; every thread takes its share
    run(omp_get_thread_num(), got);
  }
}

at::Tensor step(const at::Tensor& x, const at::Tensor& state, const std::vector<at::Tensor>& weights, bool reset_after,
                double zone_p, int64_t gate_act, int64_t cand_act, double hs_alpha, double hs_beta) {
  TORCH_CHECK(x.dim() == 2 && state.dim() == 3 && x.size(0) == state.size(1), "step: bad shapes");
  TORCH_CHECK(static_cast<int64_t>(weights.size()) == 4 * state.size(0), "step: 4 weights per layer expected");
  TORCH_CHECK(x.is_contiguous() && state.is_contiguous(), "step: x and state must be contiguous");
  at::Tensor out = at::empty_like(state);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "fastgru_step", [&] {
    const Cell<scalar_t> c{nullptr, nullptr, nullptr, nullptr, scalar_t(zone_p), scalar_t(hs_alpha), scalar_t(hs_beta),
                           nullptr};
    dispatch_activations(gate_act, cand_act, [&]<int GA, int CA>() {
      step_impl<scalar_t, GA, CA>(x, state, weights, reset_after, c, out);
    });
  });
  return out;
}

// A streaming stepper bound to one model's parameters (4 per layer: w_ih, w_hh, b_ih, b_hh; biases may be
// None). It caches no form of any weight: every call reads the parameters as they are now (the step kernel
// takes them in their own layout), so no change of a weight can go unseen, including in-place changes
// through .data, which move neither the version counter nor the data pointer. All per-call checks run
// here, so a Python caller pays for one call. Returns (state', y) or None when the call does not fit
// (shapes, dtype, device, parameters changed to another shape, dtype or device): the caller then takes
// the checked path.
class Stepper {
 public:
  Stepper(std::vector<c10::optional<at::Tensor>> params, bool reset_after, double zone_p, int64_t gate_act,
          int64_t cand_act, double hs_alpha, double hs_beta)
      : params_(std::move(params)), reset_after_(reset_after), zone_p_(zone_p), gate_act_(gate_act),
        cand_act_(cand_act), hs_alpha_(hs_alpha), hs_beta_(hs_beta) {
    TORCH_CHECK(!params_.empty() && params_.size() % 4 == 0, "Stepper: 4 parameters per layer expected");
    L_ = static_cast<int64_t>(params_.size()) / 4;
  }

  py::object call(const at::Tensor& x, const at::Tensor& state) {
    if (x.dim() != 2 || state.dim() != 3 || state.size(0) != L_ || state.size(1) != x.size(0) ||
        !x.device().is_cpu() || !state.device().is_cpu() || state.scalar_type() != x.scalar_type() ||
        (x.scalar_type() != at::kFloat && x.scalar_type() != at::kDouble))
      return py::none();
    if (!gather(x.size(1), state.size(2), x.scalar_type())) return py::none();
    at::Tensor out = step(x.contiguous(), state.contiguous(), weights_, reset_after_, zone_p_, gate_act_, cand_act_,
                          hs_alpha_, hs_beta_);
    weights_.clear();  // hold no reference to a parameter's storage between calls
    return py::make_tuple(out, out.select(0, L_ - 1));
  }

 private:
  // The parameters as they are now, contiguous, into weights_; false when one does not fit the call
  // (device, dtype, shape): a parameter may have been given new data of any kind since construction.
  bool gather(int64_t I, int64_t H, at::ScalarType dtype) {
    weights_.clear();
    weights_.reserve(params_.size());
    for (size_t k = 0; k < params_.size(); ++k) {
      const int64_t layer = static_cast<int64_t>(k / 4), role = static_cast<int64_t>(k % 4);
      const auto& p = params_[k];
      if (!p.has_value()) {  // a bias-free layer: zero biases
        weights_.push_back(zero_bias(H, dtype));
        continue;
      }
      const at::Tensor& t = *p;
      if (!t.device().is_cpu() || t.scalar_type() != dtype) return false;
      const int64_t in = layer == 0 ? I : H;
      const bool fits = role >= 2 ? (t.dim() == 1 && t.size(0) == 3 * H)
                                  : (t.dim() == 2 && t.size(0) == 3 * H && t.size(1) == (role == 0 ? in : H));
      if (!fits) return false;
      weights_.push_back(t.detach().contiguous());
    }
    return true;
  }

  const at::Tensor& zero_bias(int64_t H, at::ScalarType dtype) {
    if (!zeros_.defined() || zeros_.size(0) != 3 * H || zeros_.scalar_type() != dtype)
      zeros_ = at::zeros({3 * H}, at::TensorOptions().dtype(dtype));
    return zeros_;
  }

  std::vector<c10::optional<at::Tensor>> params_;
  std::vector<at::Tensor> weights_;
  at::Tensor zeros_;  // constant zeros, not a form of any weight
  bool reset_after_;
  double zone_p_;
  int64_t gate_act_, cand_act_;
  double hs_alpha_, hs_beta_;
  int64_t L_ = 0;
};

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  py::class_<Stepper>(m, "Stepper")
      .def(py::init<std::vector<c10::optional<at::Tensor>>, bool, double, int64_t, int64_t, double, double>())
      .def("__call__", &Stepper::call, "One streaming step: (x (B, I), state (L, B, H)) -> (state', y) or None");
  m.def("empty_cached", [](std::vector<int64_t> sizes, at::ScalarType dtype) {
    return empty_cached(sizes, at::TensorOptions().dtype(dtype));
  }, "Uninitialised CPU tensor from the buffer cache (plain at::empty below 1 MiB)");
  m.def("bernoulli_mask", &bernoulli_mask, "Bool mask, P(True) = p per element, from a counter-based generator");
  m.def("release_buffers", [] { BufferCache::instance().release(); }, "Unmap every cached free buffer");
  m.def("cached_buffer_bytes", [] { return BufferCache::instance().cached_bytes(); },
        "Bytes held by the buffer cache in free blocks");
  m.def("forward", &forward, "GRU recurrence forward (fused CPU)");
  m.def("project", &project, "Input projections of all steps, (T, B, I) -> (T, B, 3H), one GEMM");
  m.def("infer", &infer, "Inference of a whole stacked GRU: (x, hx, params, layers, bidirectional, reset_after, bf16)");
  m.def("backward", &backward, "GRU recurrence backward / BPTT (fused CPU)");
  m.def("step", &step, "One streaming time step of a stacked GRU (inference)");
  m.def("norm_rows", &norm_rows, "Row-wise layer norm in place (input projections of a LayerNormGRU)");
  m.def("norm_rows_backward", &norm_rows_backward, "Backward of norm_rows, in place on the gradient");
}
