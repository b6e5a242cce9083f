// Fused CPU recurrence for fastgru: the sequential part of GRU forward and BPTT.
//
// Python does the big GEMMs (input projection before, weight gradients after); this extension runs the
// time loop: one BLAS call for the recurrent product plus one fused, vectorisable elementwise pass
// per step, with no per-op dispatch. The contract is the one in fastgru/backends/__init__.py.
//
// Layout, by job: headers hold the BLAS wrappers and products (blas_gemm.h, small_gemm.h, panel_gemm.h,
// recurrent_gemm.h), the cell math (cell_math.h, cell_rows.h), the layer norms (layer_norm.h), the time
// loops (row_loops.h, time_loops.h), the buffer cache, the zoneout masks, the argument checks and the
// streaming stepper; forward.cpp and backward.cpp hold the entry points, this file the Python bindings.
// Three sources so that the forward and backward loops, most of the compile work, build side by side:
// compiled alone, forward.cpp and backward.cpp took about 65 s each and this file 45 s (mostly torch's
// Python headers), against 175 s for all of it as one source (CPU time, g++ -O3, 2-core machine). Each
// source includes only the headers it uses; the helpers have internal linkage (anonymous namespace),
// except the buffer cache, of which the process has one.
#include <torch/extension.h>

#include <cstdint>
#include <vector>

#include "buffer_cache.h"
#include "entry_points.h"
#include "masks.h"
#include "stepper.h"

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  py::class_<Stepper>(m, "Stepper")
      .def(py::init<std::vector<c10::optional<at::Tensor>>, bool, double, int64_t, int64_t, double, double>())
      .def("__call__", &Stepper::call, "One streaming step: (x (B, I), state (L, B, H)) -> (state', y) or None");
  m.def("empty_cached", [](std::vector<int64_t> sizes, at::ScalarType dtype) {
    return empty_cached(sizes, at::TensorOptions().dtype(dtype));
  }, "Uninitialised CPU tensor from the buffer cache (plain at::empty below 1 MiB)");
  m.def("bernoulli_mask", &bernoulli_mask, "Bool mask, P(True) = p per element, from a counter-based generator");
  m.def("release_buffers", [] { BufferCache::instance().release(); }, "Unmap every cached free buffer");
  m.def("cached_buffer_bytes", [] { return BufferCache::instance().cached_bytes(); },
        "Bytes held by the buffer cache in free blocks");
  m.def("forward", &forward, "GRU recurrence forward (fused CPU)");
  m.def("project", &project, "Input projections of all steps, (T, B, I) -> (T, B, 3H), one GEMM");
  m.def("infer", &infer, "Inference of a whole stacked GRU: (x, hx, params, layers, bidirectional, reset_after, bf16)");
  m.def("backward", &backward, "GRU recurrence backward / BPTT (fused CPU)");
  m.def("backward_grads", &backward_grads,
        "The whole gradient of a plain layer-direction: BPTT, then dx, dW_ih, dW_hh and the bias sums");
  m.def("step", &step, "One streaming time step of a stacked GRU (inference)");
  m.def("norm_rows", &norm_rows, "Row-wise layer norm in place (input projections of a LayerNormGRU)");
  m.def("norm_rows_backward", &norm_rows_backward, "Backward of norm_rows, in place on the gradient");
}
