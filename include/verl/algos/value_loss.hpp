#pragma once
//! \file
//! Clipped value-function loss, verl::core_algos::compute_value_loss (verl 0.7.1, PyPI,
//! verl/trainer/ppo/core_algos.py `compute_value_loss`; identical in 0.7.0).

#include "verl/algos/loss_agg.hpp"  // first: brings the Tensor operators functional.hpp needs
#include "verl/algos/functional.hpp"
#include "verl/core/algo_io.hpp"
#include "verl/core/errors.hpp"

#include <ATen/TensorOperators.h>
#include <ATen/core/Tensor.h>

#include <string_view>

namespace verl::core_algos {

//! compute_value_loss's two outputs.
struct ValueLossOutput {
  at::Tensor vf_loss;      // () 0.5 * agg_loss(max((v - R)^2, (v_clip - R)^2)); carries the gradient of vpreds
  at::Tensor vf_clipfrac;  // () detached: masked fraction of tokens where the clipped loss is strictly larger
};

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
