#pragma once
//! \file
//! Clipped value-function loss, verl::core_algos::compute_value_loss (verl 0.7.1, PyPI,
//! verl/trainer/ppo/core_algos.py `compute_value_loss`; identical in 0.7.0).

#include "verl/algos/loss_agg.hpp"  // first: brings the Tensor operators functional.hpp needs
#include "verl/algos/functional.hpp"
#include "verl/core/algo_io.hpp"
#include "verl/core/errors.hpp"
#include "verl/core/huge_pages.hpp"

#include <ATen/TensorOperators.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/scalar_tensor.h>
#include <c10/core/GradMode.h>

#include <cmath>

#include <string_view>

namespace verl::core_algos {

//! compute_value_loss's two outputs.
struct ValueLossOutput {
  at::Tensor vf_loss;      // () 0.5 * agg_loss(max((v - R)^2, (v_clip - R)^2)); carries the gradient of vpreds
  at::Tensor vf_clipfrac;  // () detached: masked fraction of tokens where the clipped loss is strictly larger
};

namespace detail {

//! The fused CPU value loss, bit-identical to verl's operation chain: one pass computes the clipped per-token
//! loss, writes agg_loss's exact summands for ATen's sum (loss_agg.hpp, agg_sums_fused) and counts the clip
//! indicator; the gradient w.r.t. vpreds (token-mean only) is autograd's chain for verl's expression, rounded
//! step by step as autograd rounds it, attached straight-through. Applies to contiguous-able CPU float32/float64
//! inputs of one dtype with a bool/integer mask of fewer than 2^24 elements (the float32 clip count is then an
//! exact integer), no gradient wanted on returns/values, and (with a gradient on vpreds) loss_agg_mode
//! token-mean; std::nullopt otherwise.
inline std::optional<ValueLossOutput> value_loss_fused(const at::Tensor& vpreds, const at::Tensor& returns,
                                                       const at::Tensor& values, const at::Tensor& response_mask,
                                                       double cliprange_value, LossAggMode mode,
                                                       const GlobalBatchInfo& info) {
  const auto dt = vpreds.scalar_type();
  if (dt != at::kFloat && dt != at::kDouble) return std::nullopt;
  if (!all_cpu({&vpreds, &returns, &values, &response_mask})) return std::nullopt;
  if (returns.scalar_type() != dt || values.scalar_type() != dt) return std::nullopt;
  const auto mt = response_mask.scalar_type();
  if (mt != at::kBool && mt != at::kLong && mt != at::kInt) return std::nullopt;
  if (vpreds.numel() == 0 || vpreds.numel() >= (std::int64_t{1} << 24)) return std::nullopt;
  const bool grad_mode = c10::GradMode::is_enabled();
  if (grad_mode && (returns.requires_grad() || values.requires_grad())) return std::nullopt;
  const bool need_grad = grad_mode && vpreds.requires_grad();
  if (need_grad && mode != LossAggMode::token_mean) return std::nullopt;
  const auto vp = vpreds.contiguous(), ret = returns.detach().contiguous(), val = values.detach().contiguous();
  const auto m = response_mask.contiguous();  // (B,R)
  std::optional<ValueLossOutput> result;
  dispatch_value_mask(dt, mt, [&](auto s, auto mk) {
    using T = decltype(s);
    using M = decltype(mk);
    if constexpr (!std::is_floating_point_v<M>) {
      const T* v = vp.data_ptr<T>();
      const T* r = ret.data_ptr<T>();
      const T* w = val.data_ptr<T>();
      const T c = static_cast<T>(cliprange_value);
      // vpredclipped = max(min(vp, values + c), values - c); losses (vp - R)^2 and (vpc - R)^2 as x * x.
      const auto vf = [=](std::int64_t i, T& l1, T& l2) {
        const T d1 = v[i] - r[i];
        const T d2 = max_of(min_of(v[i], w[i] + c), w[i] - c) - r[i];
        l1 = d1 * d1;
        l2 = d2 * d2;
      };
      std::int64_t clipped = 0;
      const auto fused_sums = agg_sums_fused<T, M>(
          [&](std::int64_t, std::int64_t i) { T l1, l2; vf(i, l1, l2); return max_of(l1, l2); },
          [&](std::int64_t i) { T l1, l2; vf(i, l1, l2); return l2 > l1; }, m, mode, clipped);
      if (!fused_sums) return;  // an int64 mask value beyond int32: verl's ATen sequence below
      const AggSums& sums = *fused_sums;
      ValueLossOutput out;
      out.vf_loss = agg_loss_tail(sums, m.size(-1), mode, info, "verl::core_algos::compute_value_loss") * 0.5;  // ()
      // masked_mean(indicator.float(), mask): the float32 sum of 0/1 * m is the exact integer `clipped`.
      const auto num = at::scalar_tensor(static_cast<double>(clipped), at::TensorOptions().dtype(at::kFloat));
      out.vf_clipfrac = num.div(sums.mask_total.defined() ? sums.mask_total.add(1e-8)
                                                           : sums.row_counts.sum().add(1e-8));  // ()
      if (need_grad) {
        // Autograd's chain for 0.5 * (masked_sum / n * dp): d/d token_sum = ((1 * 0.5) * dp) / n, then per token
        // where(m, g * m, 0), split by maximum (ties halved), times 2 * (x - R) (pow's backward), and through
        // the clip's maximum/minimum (ties halved).
        const auto one = at::scalar_tensor(1.0, at::TensorOptions().dtype(dt));
        auto g0 = one.mul(0.5).mul(info.dp_size);                                            // ()
        g0 = info.batch_num_tokens ? g0.div(*info.batch_num_tokens) : g0.div(sums.mask_total);  // ()
        const T g = g0.item<T>();
        const M* mp = m.data_ptr<M>();
        auto coef = verl::detail::empty_for_overwrite(vp.sizes(), vp.options());  // (B,R) (vp is contiguous)
        T* gp = coef.data_ptr<T>();
        const std::int64_t B = vp.size(0), R = vp.size(1);
        parallel_rows(B, R, [&](std::int64_t b0, std::int64_t b1) {
          for (std::int64_t i = b0 * R; i < b1 * R; ++i) {
            const T ge = mp[i] != M(0) ? g * static_cast<T>(mp[i]) : T(0);
            T l1, l2;
            vf(i, l1, l2);
            const T half = ge / T(2);
            const T g1 = l1 < l2 ? T(0) : (l1 == l2 ? half : ge);
            const T g2 = l1 > l2 ? T(0) : (l1 == l2 ? half : ge);
            const T hi = w[i] + c, lo = w[i] - c;
            const T mn = std::min(v[i], hi);
            const T d2 = std::max(mn, lo) - r[i];
            T gc = g2 * (T(2) * d2);                                     // to vpredclipped
            gc = mn < lo ? T(0) : (mn == lo ? gc / T(2) : gc);           // maximum(mn, lo) -> mn
            gc = v[i] > hi ? T(0) : (v[i] == hi ? gc / T(2) : gc);       // minimum(vp, hi) -> vp
            gp[i] = g1 * (T(2) * (v[i] - r[i])) + gc;
          }
        });
        out.vf_loss = attach_grad(out.vf_loss, coef, vp);
      }
      result = std::move(out);
    }
  });
  return result;
}

}  // namespace detail

//! Clipped value loss (verl 0.7.1, core_algos.py `compute_value_loss`; same in 0.7.0).
//!
//! v_clip = max(min(vpreds, values + c), values - c) (verl's clip_by_value, min first);
//! vf_loss = 0.5 * agg_loss(max((vpreds - returns)^2, (v_clip - returns)^2), response_mask, loss_agg_mode);
//! vf_clipfrac = masked_mean([(v_clip - returns)^2 > (vpreds - returns)^2]).
//! verl's agg_loss call here passes no global-batch info; `info` (not in verl) defaults to none, i.e. verl's
//! behaviour, and lets a data-parallel critic use the global normalisers.
//! \param vpreds, returns, values, response_mask (B,R). \throws verl::ShapeError on shape mismatch.
[[nodiscard]] inline ValueLossOutput compute_value_loss(const at::Tensor& vpreds, const at::Tensor& returns,
                                                        const at::Tensor& values, const at::Tensor& response_mask,
                                                        double cliprange_value,
                                                        LossAggMode loss_agg_mode = LossAggMode::token_mean,
                                                        const GlobalBatchInfo& info = {}) {
  constexpr std::string_view owner = "verl::core_algos::compute_value_loss";
  verl::detail::check_br(vpreds, owner, "vpreds");
  verl::detail::check_like(returns, vpreds, owner, "returns", "vpreds");
  verl::detail::check_like(values, vpreds, owner, "values", "vpreds");
  verl::detail::check_like(response_mask, vpreds, owner, "response_mask", "vpreds");
  if (auto fused = detail::value_loss_fused(vpreds, returns, values, response_mask, cliprange_value, loss_agg_mode,
                                            info)) {
    return *std::move(fused);
  }
  const auto vpredclipped = vpreds.minimum(values + cliprange_value).maximum(values - cliprange_value);  // (B,R)
  const auto vf_losses1 = (vpreds - returns).pow(2);                                   // (B,R)
  const auto vf_losses2 = (vpredclipped - returns).pow(2);                             // (B,R)
  const auto clipped_vf_losses = vf_losses1.maximum(vf_losses2);                       // (B,R)
  ValueLossOutput out;
  out.vf_loss = agg_loss(clipped_vf_losses, response_mask, loss_agg_mode, info) * 0.5;  // ()
  out.vf_clipfrac = functional::masked_mean(vf_losses2.gt(vf_losses1).to(at::kFloat), response_mask).detach();
  return out;
}

//! compute_value_loss with verl's spelling of the aggregation mode. \throws verl::ConfigError for an unknown one.
[[nodiscard]] inline ValueLossOutput compute_value_loss(const at::Tensor& vpreds, const at::Tensor& returns,
                                                        const at::Tensor& values, const at::Tensor& response_mask,
                                                        double cliprange_value, std::string_view loss_agg_mode,
                                                        const GlobalBatchInfo& info = {}) {
  return compute_value_loss(vpreds, returns, values, response_mask, cliprange_value,
                            parse_loss_agg_mode(loss_agg_mode), info);
}

}  // namespace verl::core_algos
