// Fused CPU recurrence for fastgru: the sequential part of GRU forward and BPTT.
//
// Python does the big GEMMs (input projection before, weight gradients after); this file runs the
// time loop: one BLAS call for the recurrent product plus one fused, vectorisable elementwise pass
// per step, with no per-op dispatch. The contract is the one in fastgru/backends/__init__.py.
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <dlfcn.h>
#include <sys/mman.h>

#include <type_traits>
#include <vector>

#include <cmath>
#include <cstdint>

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
// For small per-step products, MKL's thread hand-off costs more than the arithmetic: run the time loop
// with one MKL thread (restored on scope exit). No-op without MKL.
class SmallGemmThreads {
 public:
  explicit SmallGemmThreads(double flops_per_step) {
    using set_t = int (*)(int);
    static set_t set_local = reinterpret_cast<set_t>(dlsym(RTLD_DEFAULT, "MKL_Set_Num_Threads_Local"));
    if (set_local && flops_per_step < 2e6) {
      set_ = set_local;
      previous_ = set_local(1);
    }
  }
  ~SmallGemmThreads() {
    if (set_) set_(previous_);
  }

 private:
  int (*set_)(int) = nullptr;
  int previous_ = 0;
};

constexpr int kRowMajor = 101, kNoTrans = 111, kTrans = 112, kBMatrix = 162, kPacked = 151;

// C[M,N] = A[M,K] @ op(W) + beta*C for a fixed W reused over many calls (packed when possible).
template <typename T>
class RecurrentGemm {
 public:
  RecurrentGemm(int M, int N, int K, const T* W, int ldw, bool w_transposed)
      : M_(M), N_(N), K_(K), W_(W), ldw_(ldw), wt_(w_transposed) {
    if constexpr (std::is_same_v<T, float>) {
      const PackedApi& api = packed_api();
      if (api.ok() && M > 0 && N > 0 && K > 0) {
        packed_.resize(api.get_size(kBMatrix, M, N, K) / sizeof(float) + 1);
        api.pack(kRowMajor, kBMatrix, wt_ ? kTrans : kNoTrans, M, N, K, 1.0f, W, ldw, packed_.data());
      }
    }
  }
  void operator()(const T* A, int lda, T beta, T* C, int ldc) const {
    if constexpr (std::is_same_v<T, float>) {
      if (!packed_.empty()) {
        packed_api().compute(kRowMajor, kNoTrans, kPacked, M_, N_, K_, A, lda, packed_.data(), N_, beta, C, ldc);
        return;
      }
    }
    gemm_rm<T>(M_, N_, K_, A, lda, W_, ldw_, wt_, beta, C, ldc);
  }

 private:
  int M_, N_, K_;
  const T* W_;
  int ldw_;
  bool wt_;
  std::vector<float> packed_;
};

template <typename T>
inline T sigmoid(T x) {
  return T(1) / (T(1) + std::exp(-x));
}

// Runs fn(b0, b1) over batch rows, in parallel when there is enough elementwise work.
template <typename F>
void for_rows(int64_t B, int64_t H, const F& fn) {
  const int64_t grain = std::max<int64_t>(1, 32768 / std::max<int64_t>(H, 1));
  at::parallel_for(0, B, grain, fn);
}

struct Slots {
  int64_t T;
  bool reverse;
  int64_t step(int64_t i) const { return reverse ? T - 1 - i : i; }  // i-th processed time step
  int64_t in(int64_t t) const { return reverse ? t + 1 : t; }         // buf slot read by step t
  int64_t out(int64_t t) const { return reverse ? t : t + 1; }        // buf slot written by step t
};

template <typename T>
void forward_impl(const at::Tensor& gi, const at::Tensor& w_hh, const T* b_hh, const int64_t* len,
                  bool reset_after, bool save, at::Tensor& buf, at::Tensor& gates, const Slots& s) {
  const int64_t B = gi.size(1), H = w_hh.size(1), G3 = 3 * H;
  const T* gi_p = gi.data_ptr<T>();
  const T* w = w_hh.data_ptr<T>();
  T* buf_p = buf.data_ptr<T>();
  const int64_t gw = reset_after ? 4 * H : 3 * H;  // saved values per (t, b)
  // Without saving, gate values go to a one-step scratch so the inner loops stay branch-free.
  at::Tensor scratch = save ? at::Tensor() : at::empty({B, gw}, gi.options());
  T* gates_p = save ? gates.data_ptr<T>() : scratch.data_ptr<T>();
  at::Tensor gh_t = at::empty({B, G3}, gi.options());
  at::Tensor rh_t = at::empty({B, H}, gi.options());
  T* gh = gh_t.data_ptr<T>();
  T* rh = rh_t.data_ptr<T>();
  const SmallGemmThreads threads(2.0 * B * G3 * H);
  const RecurrentGemm<T> gemm_all(reset_after ? B : 0, G3, H, w, H, true);          // h @ W_hh^T
  const RecurrentGemm<T> gemm_rz(reset_after ? 0 : B, 2 * H, H, w, H, true);         // h @ W_hr,hz^T
  const RecurrentGemm<T> gemm_n(reset_after ? 0 : B, H, H, w + 2 * H * H, H, true);  // (r*h) @ W_hn^T

  for (int64_t i = 0; i < s.T; ++i) {
    const int64_t t = s.step(i);
    const T* hp = buf_p + s.in(t) * B * H;
    T* hn_out = buf_p + s.out(t) * B * H;
    const T* git = gi_p + t * B * G3;
    T* sv = save ? gates_p + t * B * gw : gates_p;
    if (reset_after) {
      gemm_all(hp, H, T(0), gh, G3);
      for_rows(B, H, [&](int64_t b0, int64_t b1) {
        for (int64_t b = b0; b < b1; ++b) {
          const T* g = git + b * G3;
          const T* q = gh + b * G3;
          const T* h = hp + b * H;
          T* o = hn_out + b * H;
          const bool live = len == nullptr || t < len[b];
          if (!live) {
            for (int64_t j = 0; j < H; ++j) o[j] = h[j];
            continue;
          }
          T* sr = sv + b * gw;
#pragma omp simd
          for (int64_t j = 0; j < H; ++j) {
            const T hr = q[j] + b_hh[j];
            const T hz = q[H + j] + b_hh[H + j];
            const T hn = q[2 * H + j] + b_hh[2 * H + j];
            const T r = sigmoid(g[j] + hr);
            const T z = sigmoid(g[H + j] + hz);
            const T n = std::tanh(g[2 * H + j] + r * hn);
            o[j] = n + z * (h[j] - n);
            sr[j] = r;
            sr[H + j] = z;
            sr[2 * H + j] = n;
            sr[3 * H + j] = hn;
          }
        }
      });
    } else {
      gemm_rz(hp, H, T(0), gh, G3);
      for_rows(B, H, [&](int64_t b0, int64_t b1) {
        for (int64_t b = b0; b < b1; ++b) {
          const T* g = git + b * G3;
          T* q = gh + b * G3;
          const T* h = hp + b * H;
          T* x = rh + b * H;
          T* sr = sv + b * gw;
#pragma omp simd
          for (int64_t j = 0; j < H; ++j) {
            const T r = sigmoid(g[j] + q[j] + b_hh[j]);
            const T z = sigmoid(g[H + j] + q[H + j] + b_hh[H + j]);
            x[j] = r * h[j];
            q[H + j] = z;  // keep z for the second pass
            sr[j] = r;
            sr[H + j] = z;
          }
        }
      });
      gemm_n(rh, H, T(0), gh + 2 * H, G3);
      for_rows(B, H, [&](int64_t b0, int64_t b1) {
        for (int64_t b = b0; b < b1; ++b) {
          const T* g = git + b * G3;
          const T* q = gh + b * G3;
          const T* h = hp + b * H;
          T* o = hn_out + b * H;
          const bool live = len == nullptr || t < len[b];
          if (!live) {
            for (int64_t j = 0; j < H; ++j) o[j] = h[j];
            continue;
          }
          T* sr = sv + b * gw;
#pragma omp simd
          for (int64_t j = 0; j < H; ++j) {
            const T z = q[H + j];
            const T n = std::tanh(g[2 * H + j] + q[2 * H + j] + b_hh[2 * H + j]);
            o[j] = n + z * (h[j] - n);
            sr[2 * H + j] = n;
          }
        }
      });
    }
  }
}

template <typename T>
void backward_impl(const at::Tensor& dbuf, const at::Tensor& buf, const at::Tensor& gates,
                   const at::Tensor& w_hh, const int64_t* len, bool reset_after, at::Tensor& dgi,
                   at::Tensor& dgh_n, at::Tensor& dh0, const Slots& s) {
  const int64_t B = buf.size(1), H = buf.size(2), G3 = 3 * H;
  const int64_t gw = reset_after ? 4 * H : 3 * H;
  const T* dbuf_p = dbuf.data_ptr<T>();
  const T* buf_p = buf.data_ptr<T>();
  const T* gates_p = gates.data_ptr<T>();
  const T* w = w_hh.data_ptr<T>();
  T* dgi_p = dgi.data_ptr<T>();
  T* dghn_p = reset_after ? dgh_n.data_ptr<T>() : nullptr;
  at::Tensor dh_t = at::zeros({B, H}, buf.options());   // gradient carried to h_{t-1}
  at::Tensor g_t = at::empty({B, H}, buf.options());    // total gradient of h_t
  at::Tensor tmp_t = at::empty({B, G3}, buf.options());
  T* dh = dh_t.data_ptr<T>();
  T* gsum = g_t.data_ptr<T>();
  T* tmp = tmp_t.data_ptr<T>();
  const SmallGemmThreads threads(2.0 * B * G3 * H);
  const RecurrentGemm<T> back_all(reset_after ? B : 0, H, G3, w, H, false);          // dG @ W_hh
  const RecurrentGemm<T> back_n(reset_after ? 0 : B, H, H, w + 2 * H * H, H, false);  // dA_n @ W_hn
  const RecurrentGemm<T> back_rz(reset_after ? 0 : B, H, 2 * H, w, H, false);        // dA_rz @ W_hr,hz

  for (int64_t i = s.T - 1; i >= 0; --i) {
    const int64_t t = s.step(i);
    const T* hp = buf_p + s.in(t) * B * H;
    const T* dout = dbuf_p + s.out(t) * B * H;
    const T* sv = gates_p + t * B * gw;
    T* dg = dgi_p + t * B * G3;
    if (reset_after) {
      T* dgn = dghn_p + t * B * H;
      for_rows(B, H, [&](int64_t b0, int64_t b1) {
        for (int64_t b = b0; b < b1; ++b) {
          T* d = dh + b * H;
          const T* dy = dout + b * H;
          T* dgb = dg + b * G3;
          T* tb = tmp + b * G3;
          T* dgnb = dgn + b * H;
          const bool live = len == nullptr || t < len[b];
          if (!live) {
            for (int64_t j = 0; j < H; ++j) {
              d[j] += dy[j];
              dgb[j] = dgb[H + j] = dgb[2 * H + j] = T(0);
              tb[j] = tb[H + j] = tb[2 * H + j] = T(0);
              dgnb[j] = T(0);
            }
            continue;
          }
          const T* h = hp + b * H;
          const T* sr = sv + b * gw;
#pragma omp simd
          for (int64_t j = 0; j < H; ++j) {
            const T gt = d[j] + dy[j];
            const T r = sr[j], z = sr[H + j], n = sr[2 * H + j], hn = sr[3 * H + j];
            const T dn = gt * (T(1) - z) * (T(1) - n * n);
            const T dz = gt * (h[j] - n) * z * (T(1) - z);
            const T dr = dn * hn * r * (T(1) - r);
            d[j] = gt * z;
            dgb[j] = dr;
            dgb[H + j] = dz;
            dgb[2 * H + j] = dn;
            tb[j] = dr;
            tb[H + j] = dz;
            tb[2 * H + j] = dn * r;
            dgnb[j] = dn * r;
          }
        }
      });
      back_all(tmp, G3, T(1), dh, H);
    } else {
      for_rows(B, H, [&](int64_t b0, int64_t b1) {
        for (int64_t b = b0; b < b1; ++b) {
          T* d = dh + b * H;
          T* gs = gsum + b * H;
          const T* dy = dout + b * H;
          T* dgb = dg + b * G3;
          const bool live = len == nullptr || t < len[b];
          if (!live) {
            for (int64_t j = 0; j < H; ++j) {
              gs[j] = d[j] + dy[j];
              dgb[j] = dgb[H + j] = dgb[2 * H + j] = T(0);
            }
            continue;
          }
          const T* h = hp + b * H;
          const T* sr = sv + b * gw;
#pragma omp simd
          for (int64_t j = 0; j < H; ++j) {
            const T gt = d[j] + dy[j];
            const T z = sr[H + j], n = sr[2 * H + j];
            gs[j] = gt;
            dgb[2 * H + j] = gt * (T(1) - z) * (T(1) - n * n);
          }
        }
      });
      // d(r*h) = dA_n @ W_hn, into tmp[:, :H]
      back_n(dg + 2 * H, G3, T(0), tmp, G3);
      for_rows(B, H, [&](int64_t b0, int64_t b1) {
        for (int64_t b = b0; b < b1; ++b) {
          T* d = dh + b * H;
          const T* gs = gsum + b * H;
          T* dgb = dg + b * G3;
          const bool live = len == nullptr || t < len[b];
          if (!live) {
            for (int64_t j = 0; j < H; ++j) d[j] = gs[j];
            continue;
          }
          const T* h = hp + b * H;
          const T* sr = sv + b * gw;
          const T* drh = tmp + b * G3;
#pragma omp simd
          for (int64_t j = 0; j < H; ++j) {
            const T r = sr[j], z = sr[H + j], n = sr[2 * H + j];
            const T gt = gs[j];
            dgb[j] = drh[j] * h[j] * r * (T(1) - r);
            dgb[H + j] = gt * (h[j] - n) * z * (T(1) - z);
            d[j] = gt * z + drh[j] * r;
          }
        }
      });
      back_rz(dg, G3, T(1), dh, H);
    }
  }
  // h0 also sits in its own buf slot, which may carry gradient of its own.
  const T* d0 = dbuf_p + s.in(s.step(0)) * B * H;
  T* out = dh0.data_ptr<T>();
  for (int64_t k = 0; k < B * H; ++k) out[k] = dh[k] + d0[k];
}

// Large buffers are written once per call: ask for transparent huge pages so first-touch page faults
// (one per 4 KiB otherwise, a large share of the time for tens of MB) happen once per 2 MiB.
at::Tensor empty_huge(at::IntArrayRef sizes, const at::TensorOptions& options) {
  at::Tensor t = at::empty(sizes, options);
  const size_t bytes = t.numel() * t.element_size();
  constexpr uintptr_t kHuge = 2u << 20;
  if (bytes >= 4 * kHuge) {
    uintptr_t begin = (reinterpret_cast<uintptr_t>(t.data_ptr()) + kHuge - 1) & ~(kHuge - 1);
    uintptr_t end = (reinterpret_cast<uintptr_t>(t.data_ptr()) + bytes) & ~(kHuge - 1);
    if (end > begin) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
  }
  return t;
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

std::vector<at::Tensor> forward(const at::Tensor& gi, const at::Tensor& h0, const at::Tensor& w_hh,
                                const c10::optional<at::Tensor>& b_hh, const c10::optional<at::Tensor>& lengths,
                                bool reset_after, bool reverse, bool save) {
  check_inputs(gi, "gi");
  check_inputs(h0, "h0");
  check_inputs(w_hh, "w_hh");
  const int64_t T = gi.size(0), B = gi.size(1), H = w_hh.size(1);
  at::Tensor buf = empty_huge({T + 1, B, H}, gi.options());
  at::Tensor gates = save ? empty_huge({T, B, (reset_after ? 4 : 3) * H}, gi.options()) : at::empty({0}, gi.options());
  const Slots s{T, reverse};
  buf.select(0, reverse ? T : 0).copy_(h0);
  const int64_t* len = lengths_ptr(lengths);
  AT_DISPATCH_FLOATING_TYPES(gi.scalar_type(), "fastgru_forward", [&] {
    const bool has_bias = b_hh.has_value() && b_hh->defined();
    at::Tensor bias = has_bias ? b_hh->contiguous() : at::zeros({3 * H}, gi.options());
    forward_impl<scalar_t>(gi, w_hh, bias.data_ptr<scalar_t>(), len, reset_after, save, buf, gates, s);
  });
  return {buf, gates};
}

std::vector<at::Tensor> backward(const at::Tensor& dbuf, const at::Tensor& buf, const at::Tensor& gates,
                                 const at::Tensor& w_hh, const c10::optional<at::Tensor>& lengths,
                                 bool reset_after, bool reverse) {
  check_inputs(dbuf, "dbuf");
  check_inputs(buf, "buf");
  check_inputs(gates, "gates");
  check_inputs(w_hh, "w_hh");
  const int64_t T = buf.size(0) - 1, B = buf.size(1), H = buf.size(2);
  at::Tensor dgi = empty_huge({T, B, 3 * H}, buf.options());
  at::Tensor dgh_n = reset_after ? empty_huge({T, B, H}, buf.options()) : at::empty({0}, buf.options());
  at::Tensor dh0 = at::empty({B, H}, buf.options());
  const int64_t* len = lengths_ptr(lengths);
  AT_DISPATCH_FLOATING_TYPES(buf.scalar_type(), "fastgru_backward", [&] {
    backward_impl<scalar_t>(dbuf, buf, gates, w_hh, len, reset_after, dgi, dgh_n, dh0, Slots{T, reverse});
  });
  return {dgi, dgh_n, dh0};
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("empty_huge", [](std::vector<int64_t> sizes, at::ScalarType dtype) {
    return empty_huge(sizes, at::TensorOptions().dtype(dtype));
  }, "Uninitialised CPU tensor backed by transparent huge pages where possible");
  m.def("forward", &forward, "GRU recurrence forward (fused CPU)");
  m.def("backward", &backward, "GRU recurrence backward / BPTT (fused CPU)");
}
