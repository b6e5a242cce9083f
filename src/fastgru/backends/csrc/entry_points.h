// The kernel's entry points, defined in forward.cpp and backward.cpp and bound to Python in gru_cpu.cpp
// (each definition's comment says what it computes).
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <vector>

std::vector<at::Tensor> forward(const at::Tensor& gi, const at::Tensor& h0, const at::Tensor& w_hh,
                                const c10::optional<at::Tensor>& b_hh, const c10::optional<at::Tensor>& lengths,
                                bool reset_after, bool reverse, bool save, const c10::optional<at::Tensor>& rec_mask,
                                const c10::optional<at::Tensor>& zone_mask, double zone_p, int64_t gate_act,
                                int64_t cand_act, double hs_alpha, double hs_beta,
                                const c10::optional<at::Tensor>& ln_gain, const c10::optional<at::Tensor>& gi_gain,
                                const c10::optional<at::Tensor>& gi_bias, bool bf16);
std::vector<at::Tensor> backward(const at::Tensor& dbuf, const at::Tensor& buf, const at::Tensor& gates,
                                 const at::Tensor& w_hh, const c10::optional<at::Tensor>& lengths, bool reset_after,
                                 bool reverse, const c10::optional<at::Tensor>& rec_mask,
                                 const c10::optional<at::Tensor>& zone_mask, double zone_p, int64_t gate_act,
                                 int64_t cand_act, double hs_alpha, double hs_beta,
                                 const c10::optional<at::Tensor>& ln_gain, const c10::optional<at::Tensor>& in_xhat,
                                 const c10::optional<at::Tensor>& in_rstd, const c10::optional<at::Tensor>& in_gain,
                                 bool bf16);
std::vector<at::Tensor> backward_grads(const at::Tensor& dbuf, const at::Tensor& x, const at::Tensor& w_ih,
                                       const at::Tensor& w_hh, const at::Tensor& buf, const at::Tensor& gates,
                                       const c10::optional<at::Tensor>& lengths, bool reset_after, bool reverse,
                                       bool has_b_ih, bool has_b_hh, bool need_dx);
at::Tensor project(const at::Tensor& x, const at::Tensor& w_ih, const c10::optional<at::Tensor>& b_ih, bool bf16);
std::vector<at::Tensor> infer(const at::Tensor& x, const c10::optional<at::Tensor>& hx,
                              const std::vector<c10::optional<at::Tensor>>& params, int64_t num_layers,
                              bool bidirectional, bool reset_after, bool bf16);
at::Tensor norm_rows(at::Tensor& v, const at::Tensor& gain, const c10::optional<at::Tensor>& bias, bool keep_xhat);
std::vector<at::Tensor> norm_rows_backward(at::Tensor& dy, const at::Tensor& xhat, const at::Tensor& rstd,
                                           const at::Tensor& gain);
