// The backward entry points: BPTT of a layer-direction (backward) and the backward of the row-wise input
// layer norm (norm_rows_backward). A source of its own so that it compiles beside forward.cpp (see
// gru_cpu.cpp).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "buffer_cache.h"
#include "cell_math.h"
#include "entry_points.h"
#include "layer_norm.h"
#include "tensor_args.h"
#include "time_loops.h"

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
  const at::Tensor w16 = bf16_weight(w_hh, bf16, B);
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

namespace {

// out[n, i] (row stride ldo) = sum over r < rows of A[r, n] * X[r, i]: a weight gradient over a few rows (T * B
// small) as rank-1 updates, vectorised over i; a BLAS call's fixed cost would be most of the work there.
template <typename T>
void outer_sum(int64_t rows, int64_t N, int64_t I, const T* A, int64_t lda, const T* X, int64_t ldx, T* out,
               int64_t ldo) {
  constexpr int64_t kChunk = 64 / sizeof(T);  // one vector register of accumulators per chunk of i
  for (int64_t n = 0; n < N; ++n) {
    T* o = out + n * ldo;
    int64_t i0 = 0;
    for (; i0 + kChunk <= I; i0 += kChunk) {
      T acc[kChunk] = {};
      for (int64_t r = 0; r < rows; ++r) {
        const T a = A[r * lda + n];
        const T* xr = X + r * ldx + i0;
#pragma omp simd
        for (int64_t i = 0; i < kChunk; ++i) acc[i] += a * xr[i];
      }
      std::copy(acc, acc + kChunk, o + i0);
    }
    for (int64_t i = i0; i < I; ++i) {
      T acc = 0;
      for (int64_t r = 0; r < rows; ++r) acc += A[r * lda + n] * X[r * ldx + i];
      o[i] = acc;
    }
  }
}

// T * B up to which the weight gradients use outer_sum, for outputs up to kOuterValues values: beyond, the
// product is bound by writing the output, which MKL splits over threads (B=8, H=512, T=1 training: 3.5 ms
// with outer_sum over the 1536 x 768 gradients against 2.3 ms for torch.nn.GRU).
constexpr int64_t kOuterRows = 16;
constexpr int64_t kOuterValues = 65536;

// out (N, I) = A^T @ X for A (rows, N) and X (rows, I), both possibly column slices (row strides given).
void grad_product(const at::Tensor& A, const at::Tensor& X, at::Tensor out) {
  const int64_t rows = A.size(0);
  if (rows > kOuterRows || A.size(1) * X.size(1) > kOuterValues) {
    at::mm_out(out, A.t(), X);
    return;
  }
  AT_DISPATCH_FLOATING_TYPES(A.scalar_type(), "fastgru_grad_product", [&] {
    outer_sum<scalar_t>(rows, A.size(1), X.size(1), A.data_ptr<scalar_t>(), A.stride(0), X.data_ptr<scalar_t>(),
                        X.stride(0), out.data_ptr<scalar_t>(), out.stride(0));
  });
}

}  // namespace

// The whole gradient of a plain layer-direction (no layer norm, masks or zoneout; lengths allowed) in one call:
// BPTT, then dx = dG @ W_ih, dW_ih = dG^T x, dW_hh = [dG_rz, dGh_n]^T [h_{t-1}, h_{t-1} or r * h_{t-1}] and the
// bias sums. The same arithmetic as the Python code around `backward` (fastgru.core.functional), without a
// dozen ATen calls from Python, which were most of a small training step's backward.
// Returns {dx (empty unless need_dx), dh0, dW_ih, dW_hh, db_ih, db_hh} (empty for absent biases).
std::vector<at::Tensor> backward_grads(const at::Tensor& dbuf, const at::Tensor& x, const at::Tensor& w_ih,
                                       const at::Tensor& w_hh, const at::Tensor& buf, const at::Tensor& gates,
                                       const c10::optional<at::Tensor>& lengths, bool reset_after, bool reverse,
                                       bool has_b_ih, bool has_b_hh, bool need_dx) {
  check_inputs(x, "x");
  check_inputs(w_ih, "w_ih");
  const int64_t T = buf.size(0) - 1, B = buf.size(1), H = buf.size(2), I = x.size(2), TB = T * B;
  const auto none = c10::optional<at::Tensor>();
  std::vector<at::Tensor> bptt = backward(dbuf, buf, gates, w_hh, lengths, reset_after, reverse, none, none, 0.0,
                                          kSigmoid, kTanh, 0.2, 0.5, none, none, none, none, false);
  const at::Tensor dg = bptt[0].view({TB, 3 * H});
  const at::Tensor empty = at::empty({0}, x.options());
  at::Tensor dx = need_dx ? at::mm(dg, w_ih).view({T, B, I}) : empty;
  at::Tensor dw_ih = at::empty({3 * H, I}, x.options());
  grad_product(dg, x.view({TB, I}), dw_ih);
  const at::Tensor h_prev = buf.narrow(0, reverse ? 1 : 0, T).view({TB, H});
  const at::Tensor dg_rz = dg.narrow(1, 0, 2 * H);
  const at::Tensor dn = reset_after ? bptt[1].view({TB, H}) : dg.narrow(1, 2 * H, H);
  at::Tensor dw_hh = at::empty({3 * H, H}, x.options());
  grad_product(dg_rz, h_prev, dw_hh.narrow(0, 0, 2 * H));
  grad_product(dn, reset_after ? h_prev : gates.view({TB, -1}).narrow(1, 0, H) * h_prev, dw_hh.narrow(0, 2 * H, H));
  at::Tensor db_ih = has_b_ih ? dg.sum(0) : empty;
  at::Tensor db_hh = empty;  // Cho's form: the n rows' gradient is the input side's, so db_hh equals db_ih
  if (has_b_hh) db_hh = reset_after ? at::cat({dg_rz.sum(0), dn.sum(0)}) : has_b_ih ? db_ih.clone() : dg.sum(0);
  return {dx, bptt[2], dw_ih, dw_hh, db_ih, db_hh};
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
