// The time loops of one layer-direction: forward_impl (saving what backward needs, or not) and
// backward_impl (BPTT), each one recurrent product plus fused elementwise passes per step; saved_width is
// the layout of the saved values, shared with the entry points.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <cstdint>

#include "blas_gemm.h"
#include "cell_math.h"
#include "cell_rows.h"
#include "layer_norm.h"
#include "recurrent_gemm.h"
#include "row_loops.h"

namespace {

// Values saved per (t, b): r, z, n (+ W_hn h + b_hn for reset_after), then with layer norm the 3H
// normalised recurrent pre-activations and one rstd per normalised block (2 slots).
inline int64_t saved_width(bool reset_after, bool layer_norm, int64_t H) {
  return (reset_after ? 4 * H : 3 * H) + (layer_norm ? 3 * H + 2 : 0);
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
  // One-step scratch rows, in one allocation (a T=1 call is mostly fixed costs): without saving, the gate
  // values (so the inner loops stay branch-free); the recurrent products gh; r * h (rh); the masked state
  // (hm, recurrent dropout); with an input layer norm, row b of step t is normalised here, while it is in
  // cache (no separate pass over all T * B rows): its gain-and-shift values go to row b of gin; saving, the
  // row itself becomes xhat and its rstd is kept for backward.
  const int64_t n_gates = save ? 0 : B * gw, n_hm = c.rec_mask ? B * H : 0, n_gin = c.gi_gain ? B * G3 : 0;
  at::Tensor scratch = at::empty({n_gates + B * G3 + B * H + n_hm + n_gin}, gi.options());
  T* gates_p = save ? gates.data_ptr<T>() : scratch.data_ptr<T>();
  T* gh = scratch.data_ptr<T>() + n_gates;
  T* rh = gh + B * G3;
  T* hm_buf = c.rec_mask ? rh + B * H : nullptr;
  T* gin = c.gi_gain ? rh + B * H + n_hm : nullptr;
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
  // w16: W_hh in bf16 (autocast) or undefined
  auto rows16 = [&](int64_t r0, int64_t r1) { return w16.defined() ? w16.narrow(0, r0, r1 - r0) : at::Tensor(); };
  const RecurrentGemm<T> gemm_all(reset_after ? B : 0, G3, H, w, H, true, s.T, rows16(0, G3));  // h @ W_hh^T
  const RecurrentGemm<T> gemm_rz(reset_after ? 0 : B, 2 * H, H, w, H, true, s.T, rows16(0, 2 * H));  // h @ W_hr,hz^T
  const RecurrentGemm<T> gemm_n(reset_after ? 0 : B, H, H, w + 2 * H * H, H, true, s.T, rows16(2 * H, G3));
  const SmallGemmThreads threads(2.0 * B * G3 * H);  // after the products chose their own thread counts

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
  auto rows16 = [&](int64_t r0, int64_t r1) { return w16.defined() ? w16.narrow(0, r0, r1 - r0) : at::Tensor(); };
  const RecurrentGemm<T> back_all(reset_after ? B : 0, H, G3, w, H, false, s.T, rows16(0, G3));  // dG @ W_hh
  const RecurrentGemm<T> back_n(reset_after ? 0 : B, H, H, w + 2 * H * H, H, false, s.T, rows16(2 * H, G3));
  const RecurrentGemm<T> back_rz(reset_after ? 0 : B, H, 2 * H, w, H, false, s.T, rows16(0, 2 * H));
  const SmallGemmThreads threads(2.0 * B * G3 * H);  // after the products chose their own thread counts

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

}  // namespace
