// BLAS wrappers: the Fortran sgemm_ / dgemm_ entry points that libtorch_cpu exports (MKL or OpenBLAS), a
// row-major GEMM on them, MKL's packed-GEMM API looked up at run time, and a guard that runs small products
// on one MKL thread. The rest of the kernel reaches BLAS only through these.
#pragma once

#include <dlfcn.h>
#include <omp.h>

#include <cstddef>

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

}  // namespace
