// The layer norm of one block of values, for the recurrent norm and for the input norm of a LayerNormGRU:
// its statistics, forward (keeping xhat and rstd) and backward. Used by the time loops and by the
// row-norm entry points.
#pragma once

#include <cmath>
#include <cstdint>
#include <utility>

namespace {

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

}  // namespace
