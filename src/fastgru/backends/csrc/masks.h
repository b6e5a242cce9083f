// bernoulli_mask: zoneout keep-masks from a counter-based generator, drawn in parallel and reproducible
// from a seed that the caller takes from torch's generator.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <cmath>
#include <cstdint>
#include <vector>

namespace {

// Bool mask with P(True) = p for each element (zoneout keep-masks), from a counter-based generator:
// element i is bit 32.. of splitmix64's output for state seed + (i + 1) * golden ratio, so the mask depends
// only on (seed, shape) and rows are drawn in parallel. The caller draws seed from torch's generator, so
// torch.manual_seed reproduces masks. p is resolved to a multiple of 2^-32. About 10x faster than
// torch.rand(shape) < p, whose generator is sequential (12 of a 134 ms training step at T=200, B=64, H=256).
at::Tensor bernoulli_mask(const std::vector<int64_t>& sizes, double p, int64_t seed) {
  TORCH_CHECK(p >= 0.0 && p <= 1.0, "p must be in [0, 1], got ", p);
  at::Tensor mask = at::empty(sizes, at::TensorOptions().dtype(at::kBool));
  uint8_t* d = static_cast<uint8_t*>(mask.data_ptr());
  const uint64_t threshold = static_cast<uint64_t>(std::ldexp(p, 32));
  const uint64_t base = static_cast<uint64_t>(seed);
  at::parallel_for(0, mask.numel(), 1 << 16, [&](int64_t a, int64_t b) {
#pragma omp simd
    for (int64_t i = a; i < b; ++i) {
      uint64_t z = base + static_cast<uint64_t>(i + 1) * 0x9E3779B97F4A7C15ull;
      z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
      z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
      z ^= z >> 31;
      d[i] = (z >> 32) < threshold;
    }
  });
  return mask;
}

}  // namespace
