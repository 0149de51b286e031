#pragma once
//! \file
//! RMSNorm and RoPE as one autograd node each, with hand-written CPU kernels, for float32 tensors on the CPU.
//!
//! Why: at the small shapes of the quickstart model (rows of 64 floats), a training step is dominated by
//! per-operator cost, not arithmetic. The composite RMSNorm records 6 autograd nodes and replays ~12 ATen
//! kernels in backward; RoPE records 6 and replays ~8. Here each is one node whose backward is one pass.
//!
//! Exactness: the forward results are bit-identical to the composite forms of verl::models::RMSNorm and
//! verl::models::apply_rope (transformers' LlamaRMSNorm and apply_rotary_pos_emb), because the only
//! reduction (the mean of squares) is still ATen's own `mean`, and every other value is formed by the same
//! correctly rounded float operations in the same order (x * rsqrt(var + eps) with rsqrt = 1 / sqrt, then
//! weight * that; x * cos + rotate_half(x) * sin). The RoPE backward equals autograd's value for value (each
//! gradient element is the sum of the same two products; only zeros may differ in sign, as autograd adds
//! zero-padded slices). The RMSNorm backward is the analytic gradient
//! grad_x = r (g w - x_hat mean(g w x_hat)), grad_w = sum_rows g x_hat with double accumulation: it agrees
//! with autograd's to float rounding, not bit for bit (tests/unit/models/test_fused_layer_kernels.cpp).
//!
//! Other dtypes (transformers computes RMSNorm in float32 whatever the input), other devices and layouts the
//! kernels do not cover return an undefined tensor, and the callers then run the composite form.

#include "verl/core/parallel.hpp"

#include <ATen/TensorOperators.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/mean.h>
#include <ATen/ops/pow.h>
#include <c10/core/GradMode.h>
#include <torch/csrc/autograd/custom_function.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace verl::models::detail {

// ---------------------------------------------------------------------------------------------------------
// RMSNorm

//! y = weight * (x * r) row by row, r = 1 / sqrt(var + eps) stored in `rstd`; x, y (N,D) contiguous.
inline void rms_norm_rows(const float* x, const float* var, const float* w, float eps, float* y, float* rstd,
                          std::int64_t n, std::int64_t d) {
  verl::detail::parallel_rows(n, d, [&](std::int64_t b, std::int64_t e) {
    for (std::int64_t i = b; i < e; ++i) {
      const float r = 1.0f / std::sqrt(var[i] + eps);
      rstd[i] = r;
      const float* xi = x + i * d;
      float* yi = y + i * d;
      for (std::int64_t j = 0; j < d; ++j) yi[j] = w[j] * (xi[j] * r);
    }
  });
}

//! grad_x = r (g w - x_hat * mean(g w x_hat)) per row, x_hat = x r.
inline void rms_norm_backward_input(const float* g, const float* x, const float* rstd, const float* w, float* gx,
                                    std::int64_t n, std::int64_t d) {
  verl::detail::parallel_rows(n, 2 * d, [&](std::int64_t b, std::int64_t e) {
    for (std::int64_t i = b; i < e; ++i) {
      const float r = rstd[i];
      const float* gi = g + i * d;
      const float* xi = x + i * d;
      double dot = 0;
      for (std::int64_t j = 0; j < d; ++j) dot += static_cast<double>(gi[j] * w[j]) * static_cast<double>(xi[j] * r);
      const float mean_dot = static_cast<float>(dot / static_cast<double>(d));
      float* gxi = gx + i * d;
      for (std::int64_t j = 0; j < d; ++j) gxi[j] = r * (gi[j] * w[j] - (xi[j] * r) * mean_dot);
    }
  });
}

//! grad_w[j] = sum over rows of g x_hat, each column summed in row order in double (so the result does not
//! depend on the thread count); parallel over blocks of columns.
inline void rms_norm_backward_weight(const float* g, const float* x, const float* rstd, float* gw, std::int64_t n,
                                     std::int64_t d) {
  constexpr std::int64_t kBlock = 16;
  const std::int64_t blocks = (d + kBlock - 1) / kBlock;
  verl::detail::parallel_rows(blocks, n * kBlock, [&](std::int64_t b, std::int64_t e) {
    double acc[kBlock];
    for (std::int64_t blk = b; blk < e; ++blk) {
      const std::int64_t j0 = blk * kBlock, j1 = std::min(d, j0 + kBlock);
      std::fill(acc, acc + kBlock, 0.0);
      for (std::int64_t i = 0; i < n; ++i) {
        const float r = rstd[i];
        const float* gi = g + i * d;
        const float* xi = x + i * d;
        for (std::int64_t j = j0; j < j1; ++j) acc[j - j0] += static_cast<double>(gi[j]) * static_cast<double>(xi[j] * r);
      }
      for (std::int64_t j = j0; j < j1; ++j) gw[j] = static_cast<float>(acc[j - j0]);
    }
  });
}

//! The autograd node: inputs x (..., D) float32 contiguous and weight (D) float32.
struct RMSNormFunction : torch::autograd::Function<RMSNormFunction> {
  static torch::autograd::variable_list forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x,
                                                const at::Tensor& weight, double eps) {
    const std::int64_t d = x.size(-1), n = d == 0 ? 0 : x.numel() / d;
    const auto var = at::mean(at::pow(x, 2), -1, /*keepdim=*/true).contiguous();  // (...,1): ATen's reduction order
    auto y = at::empty_like(x, at::MemoryFormat::Contiguous);                       // (...,D)
    auto rstd = at::empty({n}, x.options());                                        // (N,)
    const auto w = weight.contiguous();
    rms_norm_rows(x.const_data_ptr<float>(), var.const_data_ptr<float>(), w.const_data_ptr<float>(),
                  static_cast<float>(eps), y.mutable_data_ptr<float>(), rstd.mutable_data_ptr<float>(), n, d);
    ctx->save_for_backward({x, w, rstd});
    return {y};
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto& x = saved[0];
    const auto& w = saved[1];
    const auto& rstd = saved[2];
    const auto g = grads[0].contiguous();
    const std::int64_t d = x.size(-1), n = d == 0 ? 0 : x.numel() / d;
    at::Tensor gx, gw;
    if (ctx->needs_input_grad(0)) {
      gx = at::empty_like(x, at::MemoryFormat::Contiguous);
      rms_norm_backward_input(g.const_data_ptr<float>(), x.const_data_ptr<float>(), rstd.const_data_ptr<float>(),
                              w.const_data_ptr<float>(), gx.mutable_data_ptr<float>(), n, d);
    }
    if (ctx->needs_input_grad(1)) {
      gw = at::empty({d}, w.options());
      rms_norm_backward_weight(g.const_data_ptr<float>(), x.const_data_ptr<float>(), rstd.const_data_ptr<float>(),
                               gw.mutable_data_ptr<float>(), n, d);
    }
    return {gx, gw, at::Tensor()};
  }
};

//! weight * (x / sqrt(mean(x^2) + eps)) through the fused kernels, or an undefined tensor when they do not
//! apply (then the caller runs the composite form): x and weight float32 on the CPU, x contiguous with a
//! non-empty last dimension, weight (D).
[[nodiscard]] inline at::Tensor fused_rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps) {
  if (!x.device().is_cpu() || x.scalar_type() != at::kFloat || weight.scalar_type() != at::kFloat ||
      !weight.device().is_cpu() || x.dim() < 1 || x.size(-1) == 0 || !x.is_contiguous() || weight.dim() != 1 ||
      weight.size(0) != x.size(-1)) {
    return {};
  }
  if (c10::GradMode::is_enabled() && (x.requires_grad() || weight.requires_grad())) {
    return RMSNormFunction::apply(x, weight, eps)[0];
  }
  const std::int64_t d = x.size(-1), n = x.numel() / d;
  const auto var = at::mean(at::pow(x, 2), -1, /*keepdim=*/true).contiguous();  // (...,1)
  auto y = at::empty_like(x, at::MemoryFormat::Contiguous);
  auto rstd = at::empty({n}, x.options());
  const auto w = weight.contiguous();
  rms_norm_rows(x.const_data_ptr<float>(), var.const_data_ptr<float>(), w.const_data_ptr<float>(),
                static_cast<float>(eps), y.mutable_data_ptr<float>(), rstd.mutable_data_ptr<float>(), n, d);
  return y;
}

// ---------------------------------------------------------------------------------------------------------
// RoPE

//! The shape and strides of a (B,H,T,D) tensor whose last dimension is contiguous.
struct RopeGeometry {
  std::int64_t b, h, t, d;
  std::int64_t sb, sh, st;
};

inline RopeGeometry rope_geometry(const at::Tensor& x) {
  return {x.size(0), x.size(1), x.size(2), x.size(3), x.stride(0), x.stride(1), x.stride(2)};
}

//! out = in * cos + sign-rotated(in) * sin row by row (forward: sign = -1 on the first half, the rotation
//! reads the other half; backward: the transposed rotation). cos/sin (B,T,D) contiguous.
template <bool Backward>
void rope_rows(const float* in, const RopeGeometry& gi, float* out, const RopeGeometry& go, const float* cos,
               const float* sin) {
  const std::int64_t half = gi.d / 2, d = gi.d;
  verl::detail::parallel_rows(gi.b * gi.h * gi.t, d, [&](std::int64_t r0, std::int64_t r1) {
    for (std::int64_t r = r0; r < r1; ++r) {
      const std::int64_t bi = r / (gi.h * gi.t), hi = (r / gi.t) % gi.h, ti = r % gi.t;
      const float* x = in + bi * gi.sb + hi * gi.sh + ti * gi.st;
      float* y = out + bi * go.sb + hi * go.sh + ti * go.st;
      const float* c = cos + (bi * gi.t + ti) * d;
      const float* s = sin + (bi * gi.t + ti) * d;
      if constexpr (!Backward) {  // y = x cos + rotate_half(x) sin, rotate_half(x) = cat(-x2, x1)
        for (std::int64_t j = 0; j < half; ++j) y[j] = x[j] * c[j] + (-x[j + half]) * s[j];
        for (std::int64_t j = half; j < d; ++j) y[j] = x[j] * c[j] + x[j - half] * s[j];
      } else {  // gx = g cos + rotate_half^T(g sin): the first half takes +(g s) of the second, and vice versa
        for (std::int64_t j = 0; j < half; ++j) y[j] = x[j] * c[j] + x[j + half] * s[j + half];
        for (std::int64_t j = half; j < d; ++j) y[j] = x[j] * c[j] + (-(x[j - half] * s[j - half]));
      }
    }
  });
}

//! The autograd node: x (B,H,T,D) float32 with a contiguous last dimension, cos/sin (B,T,D) contiguous
//! float32 constants (no gradient flows to them, as none does in the models: they come from position ids).
struct RopeFunction : torch::autograd::Function<RopeFunction> {
  static at::Tensor run(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin, bool backward) {
    auto y = at::empty_like(x);  // x's layout (dense views keep their strides)
    const auto gi = rope_geometry(x), go = rope_geometry(y);
    if (backward) {
      rope_rows<true>(x.const_data_ptr<float>(), gi, y.mutable_data_ptr<float>(), go, cos.const_data_ptr<float>(),
                      sin.const_data_ptr<float>());
    } else {
      rope_rows<false>(x.const_data_ptr<float>(), gi, y.mutable_data_ptr<float>(), go, cos.const_data_ptr<float>(),
                       sin.const_data_ptr<float>());
    }
    return y;
  }

  static torch::autograd::variable_list forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x,
                                                const at::Tensor& cos, const at::Tensor& sin) {
    ctx->save_for_backward({cos, sin});
    return {run(x, cos, sin, false)};
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    auto g = grads[0];
    if (g.stride(-1) != 1 || !g.is_non_overlapping_and_dense()) g = g.contiguous();
    return {run(g, saved[0], saved[1], true), at::Tensor(), at::Tensor()};
  }
};

//! x * cos + rotate_half(x) * sin (x (B,H,T,D), cos/sin (B,T,D)) through the fused kernels, or an undefined
//! tensor when they do not apply: all float32 on the CPU, D even, x's last dimension contiguous and x dense,
//! cos/sin contiguous of shape (B,T,D) without gradient.
[[nodiscard]] inline at::Tensor fused_rope(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  if (!x.device().is_cpu() || x.scalar_type() != at::kFloat || cos.scalar_type() != at::kFloat ||
      sin.scalar_type() != at::kFloat || x.dim() != 4 || cos.dim() != 3 || x.size(-1) % 2 != 0 ||
      x.stride(-1) != 1 || !x.is_non_overlapping_and_dense() || !cos.is_contiguous() || !sin.is_contiguous() ||
      cos.sizes() != sin.sizes() || cos.size(0) != x.size(0) || cos.size(1) != x.size(2) ||
      cos.size(2) != x.size(3) || !cos.device().is_cpu() || !sin.device().is_cpu() || cos.requires_grad() ||
      sin.requires_grad()) {
    return {};
  }
  if (c10::GradMode::is_enabled() && x.requires_grad()) return RopeFunction::apply(x, cos, sin)[0];
  return RopeFunction::run(x, cos, sin, false);
}

}  // namespace verl::models::detail
