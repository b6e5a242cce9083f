// Streaming inference, one time step of a stacked GRU per call: step_impl (the step, split over hidden
// units at batch 1-2), step (its checked entry point) and Stepper (bound to one model's parameters, so a
// Python caller pays for one call per step). For gru_cpu.cpp alone, which binds them: step is an ordinary
// (not inline) function, like the entry points.
#pragma once

#include <torch/extension.h>  // py:: for Stepper's results
#include <ATen/Parallel.h>
#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <utility>
#include <vector>

#include "blas_gemm.h"
#include "cell_math.h"
#include "small_gemm.h"

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
