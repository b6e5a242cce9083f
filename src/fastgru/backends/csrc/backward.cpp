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
