// The GRU cell's elementwise math: the activations and their derivatives (compile-time choices, so the
// inner loops vectorise), the Cell holding a call's options (bias, lengths, masks, zoneout, layer norms),
// and the dispatch from the activations named at run time to those compile-time choices.
#pragma once

#include <c10/util/Exception.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>

namespace {

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

}  // namespace
