// From the entry points' tensor arguments to the kernel's raw pointers: checks (CPU, contiguous, dtype),
// optional tensors to a pointer or null, the call's Cell, and W_hh in bf16 for autocast runs.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>

#include "cell_math.h"

namespace {

// A product of at least this many multiply-adds runs in bf16 under autocast; smaller ones stay float32.
// oneDNN's bf16 GEMM plus the conversions cost a fixed few microseconds per call, which the faster
// arithmetic repays only on large products. Against the float32 panel loops (AMD EPYC, 2 threads, inference
// T=64, bf16 for products from 1.5M multiply-adds): B*3H*H = 3.1M per step 0.71-0.94x float32's speed, 6.3M
// 0.93-1.02x, 50M 1.34x; the projection of 512 x 64 x 384 = 12.6M made the whole call 0.57x.
constexpr int64_t kBf16MinMacs = 16000000;

// W_hh in bf16 for the step products of a bf16 (autocast) run whose product of `rows` rows is large enough
// (kBf16MinMacs); undefined otherwise. Only float32 runs use it: a float64 model under autocast stays in
// float64.
at::Tensor bf16_weight(const at::Tensor& w_hh, bool bf16, int64_t rows) {
  return bf16 && w_hh.scalar_type() == at::kFloat && rows * w_hh.numel() >= kBf16MinMacs
             ? w_hh.to(at::kBFloat16) : at::Tensor();
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


template <typename T>
const T* optional_ptr(const c10::optional<at::Tensor>& t, const char* name) {
  if (!t.has_value() || !t->defined()) return nullptr;
  check_inputs(*t, name);
  return t->data_ptr<T>();
}

const uint8_t* bool_mask_ptr(const c10::optional<at::Tensor>& t, const char* name) {
  if (!t.has_value() || !t->defined()) return nullptr;
  check_inputs(*t, name);
  TORCH_CHECK(t->scalar_type() == at::kBool || t->scalar_type() == at::kByte, name, " must be a bool tensor");
  return static_cast<const uint8_t*>(t->data_ptr());
}

template <typename T>
Cell<T> make_cell(const T* b_hh, const c10::optional<at::Tensor>& lengths, const c10::optional<at::Tensor>& rec_mask,
                  const c10::optional<at::Tensor>& zone_mask, double zone_p, double hs_alpha, double hs_beta,
                  const c10::optional<at::Tensor>& ln_gain, const T* gi_gain = nullptr, const T* gi_bias = nullptr) {
  return Cell<T>{b_hh, lengths_ptr(lengths), optional_ptr<T>(rec_mask, "rec_mask"),
                 bool_mask_ptr(zone_mask, "zone_mask"),
                 T(zone_p), T(hs_alpha), T(hs_beta), optional_ptr<T>(ln_gain, "ln_gain"), gi_gain, gi_bias,
                 nullptr, nullptr, nullptr};
}

}  // namespace
