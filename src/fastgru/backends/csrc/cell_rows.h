// The fused reset_after cell of one batch row for one step, forward and backward, with each layer norm
// compiled in or out (dispatch_norms): the inner loops of the common case.
#pragma once

#include <cstdint>
#include <tuple>

#include "cell_math.h"
#include "layer_norm.h"

namespace {

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
  auto span = [&](int64_t j0, int64_t j1) {
#pragma omp simd
  for (int64_t j = j0; j < j1; ++j) {
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
  };
  // A vectorised loop leaves H % 16 values (float) to a scalar remainder, where exp and tanh are scalar
  // library calls (H=46: 14 of 46 values, about 5% of a training step). Without an input norm (which
  // rewrites g in place) the loop reads nothing it writes, so the remainder runs as the last whole vector
  // instead, recomputing a few values with the same result.
  constexpr int64_t kLanes = 64 / sizeof(T);
  const int64_t whole = H - H % kLanes;
  if (IN || H <= kLanes || whole == H) {
    span(0, H);
  } else {
    span(0, whole);
    span(H - kLanes, H);
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

}  // namespace
