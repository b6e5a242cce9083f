// The forward entry points: a layer-direction's recurrence (forward), the input projections of all steps
// (project), the inference of a whole stacked GRU in one call (infer) and the row-wise input layer norm
// (norm_rows). A source of its own so that it compiles beside backward.cpp (see gru_cpu.cpp).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/core/grad_mode.h>

#include <cstdint>
#include <cstring>
#include <vector>

#include "buffer_cache.h"
#include "cell_math.h"
#include "entry_points.h"
#include "layer_norm.h"
#include "row_loops.h"
#include "tensor_args.h"
#include "time_loops.h"

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
  const at::Tensor w16 = bf16_weight(w_hh, bf16, B);
  const bool input_norm = gi_gain.has_value() && gi_gain->defined();
  at::Tensor gi_rstd = input_norm && save ? at::empty({T * B}, gi.options()) : at::Tensor();
  AT_DISPATCH_FLOATING_TYPES(gi.scalar_type(), "fastgru_forward", [&] {
    const bool has_bias = b_hh.has_value() && b_hh->defined();
    at::Tensor bias = has_bias ? b_hh->contiguous() : at::zeros({3 * H}, gi.options());
    const scalar_t* in_gain = optional_ptr<scalar_t>(gi_gain, "gi_gain");
    // the input norm's shift (zeros when it has none); no input norm: nothing to allocate
    at::Tensor in_bias = !in_gain ? at::Tensor()
                         : (gi_bias.has_value() && gi_bias->defined()) ? gi_bias->contiguous()
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

// Input projections of all steps, x (T, B, I) -> (T, B, 3H) = x @ W_ih^T + b_ih, as one GEMM into a buffer
// from the cache. bf16 (autocast, float32 only): the product in bf16 through oneDNN, the sum with the bias
// and the result in float32.
at::Tensor project(const at::Tensor& x, const at::Tensor& w_ih, const c10::optional<at::Tensor>& b_ih, bool bf16) {
  const int64_t T = x.size(0), B = x.size(1), I = x.size(2), G = w_ih.size(0);
  const at::Tensor x2 = x.reshape({T * B, I});
  at::Tensor gi = empty_cached({T * B, G}, x.options());
  const bool has_bias = b_ih.has_value() && b_ih->defined();
  if (T * B <= kSmallRows && (!bf16 || T * B * G * I < kBf16MinMacs) && x2.is_contiguous() && w_ih.is_contiguous() &&
      w_ih.scalar_type() == x.scalar_type() && (!has_bias || b_ih->scalar_type() == x.scalar_type())) {
    // a few rows (streaming, T=1 calls): our own dot products with the bias as the starting sums, since
    // ATen's addmm costs several microseconds before any arithmetic at this size
    const at::Tensor bias = has_bias ? b_ih->contiguous() : at::Tensor();
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "fastgru_project_small", [&] {
      scalar_t* out = gi.data_ptr<scalar_t>();
      const scalar_t* b = has_bias ? bias.data_ptr<scalar_t>() : nullptr;
      for (int64_t r = 0; r < T * B; ++r)
        for (int64_t g = 0; g < G; ++g) out[r * G + g] = b ? b[g] : scalar_t(0);
      small_gemm_nt<scalar_t>(static_cast<int>(T * B), static_cast<int>(G), static_cast<int>(I),
                              x2.data_ptr<scalar_t>(), static_cast<int>(I), w_ih.data_ptr<scalar_t>(),
                              static_cast<int>(I), scalar_t(1), out, static_cast<int>(G));
    });
    return gi.view({T, B, G});
  }
#if defined(__AVX512F__)
  if (T * B >= kPanelProjectRows && !(bf16 && T * B * G * I >= kBf16MinMacs) && x.scalar_type() == at::kFloat &&
      x2.is_contiguous() && w_ih.is_contiguous() && w_ih.scalar_type() == at::kFloat &&
      (!has_bias || b_ih->scalar_type() == at::kFloat)) {
    // the panel loops (panel_gemm.h) with the bias added as each tile is stored: on the AMD EPYC measured,
    // MKL ran these shapes at 55-90 GFLOP/s on one core (T*B = 2400, 3H = 138, I = 88: 747 us)
    const at::Tensor bias = has_bias ? b_ih->contiguous() : at::Tensor();
    const int rows = static_cast<int>(T * B), cols = static_cast<int>(G), depth = static_cast<int>(I);
    const PanelGemm gemm(rows, cols, depth, w_ih.data_ptr<float>(), depth, true, panel_threads(rows, cols, depth));
    gemm(x2.data_ptr<float>(), depth, 0.0f, gi.data_ptr<float>(), cols, has_bias ? bias.data_ptr<float>() : nullptr);
    return gi.view({T, B, G});
  }
#endif
  if (bf16 && x.scalar_type() == at::kFloat && T * B * G * I >= kBf16MinMacs) {
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
