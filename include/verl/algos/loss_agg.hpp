#pragma once
//! \file
//! Loss aggregation, verl::core_algos::agg_loss: reduces a (B,R) per-token loss to a scalar with one of verl's
//! four `loss_agg_mode`s, optionally normalised by global-batch quantities so that the gradient does not
//! depend on the data-parallel size.
//!
//! Reference: verl 0.7.1 (PyPI), verl/trainer/ppo/core_algos.py, `agg_loss`. This function DIFFERS between
//! verl 0.7.0 and 0.7.1 (see docs/algorithms.md#agg_loss): 0.7.1 raises when dp_size > 1 and the
//! global normaliser is missing, and "seq-mean-token-sum-norm" became "seq-mean-token-sum" divided by
//! loss_scale_factor (0.7.0 summed over all sequences without dividing by the number of sequences).

// functional.hpp uses Tensor operators without including them; include them first.
#include <ATen/TensorOperators.h>

#include "verl/algos/functional.hpp"
#include "verl/core/algo_io.hpp"
#include "verl/core/errors.hpp"

#include <ATen/TensorOperators.h>
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <optional>
#include <string_view>

namespace verl::core_algos {

//! verl's `ActorConfig.global_batch_info` (0.7.1): the global-batch normalisers a data-parallel rank passes to
//! agg_loss so that summing the per-rank losses' gradients (FSDP all-reduce-mean times dp_size) equals the
//! gradient of the loss over the whole global batch.
struct GlobalBatchInfo {
  std::int64_t dp_size = 1;                  //!< data-parallel world size
  std::optional<double> batch_num_tokens;    //!< valid tokens in the global batch (token-mean)
  std::optional<double> global_batch_size;   //!< sequences in the global batch (seq-mean-* modes)
  std::optional<double> loss_scale_factor;   //!< seq-mean-token-sum-norm divisor; default: R (mask.size(-1))
};

namespace detail {

inline void check_agg_inputs(const at::Tensor& loss_mat, const at::Tensor& loss_mask, std::string_view owner) {
  verl::detail::check<ShapeError>(loss_mat.defined() && loss_mask.defined(), owner,
                                  ": `loss_mat` and `loss_mask` must be defined (B,R) tensors");
  verl::detail::check<ShapeError>(loss_mat.dim() == 2, owner, ": `loss_mat` has ", loss_mat.dim(),
                                  " dimensions, expected 2 (B,R)");
  verl::detail::check<ShapeError>(loss_mat.sizes() == loss_mask.sizes(), owner, ": `loss_mask` has shape ",
                                  loss_mask.sizes(), ", expected ", loss_mat.sizes(), " (the shape of `loss_mat`)");
}

}  // namespace detail

//! Aggregates a per-token loss into a scalar (verl 0.7.1, verl/trainer/ppo/core_algos.py `agg_loss`).
//!
//! With N = global token count, S = global count of sequences with at least one valid token, d = dp_size:
//!   - token_mean:               d * sum_{b,t} m*l / N
//!   - seq_mean_token_sum:       d * sum_b [n_b > 0] sum_t m*l / S
//!   - seq_mean_token_sum_norm:  the above / loss_scale_factor (default R)
//!   - seq_mean_token_mean:      d * sum_b [n_b > 0] (sum_t m*l / (n_b + 1e-8)) / S
//! where N and S default to the local counts (mask.sum() and the count of non-empty rows) when absent.
//! \param loss_mat (B,R) floating; \param loss_mask (B,R) bool/integer/floating.
//! \throws verl::ShapeError on bad shapes; verl::ConfigError when dp_size > 1 and the needed global
//!         normaliser is missing (verl raises ValueError).
[[nodiscard]] inline at::Tensor agg_loss(const at::Tensor& loss_mat, const at::Tensor& loss_mask,
                                         LossAggMode loss_agg_mode, const GlobalBatchInfo& info = {}) {
  constexpr std::string_view owner = "verl::core_algos::agg_loss";
  detail::check_agg_inputs(loss_mat, loss_mask, owner);
  switch (loss_agg_mode) {
    case LossAggMode::token_mean: {
      const auto token_sum = functional::masked_sum(loss_mat, loss_mask);  // ()
      if (info.batch_num_tokens) return token_sum / *info.batch_num_tokens * info.dp_size;
      verl::detail::check<ConfigError>(info.dp_size <= 1, owner, ": \"token-mean\" with dp_size = ", info.dp_size,
                                       " needs the global `batch_num_tokens` in GlobalBatchInfo");
      return token_sum / loss_mask.sum() * info.dp_size;  // () local token count, as verl
    }
    case LossAggMode::seq_mean_token_sum:
    case LossAggMode::seq_mean_token_sum_norm: {
      const auto seq_losses = (loss_mat * loss_mask).sum(-1);                 // (B,)
      const auto seq_mask = loss_mask.sum(-1).gt(0).to(at::kFloat);          // (B,) float32 as verl's .float()
      at::Tensor loss;                                                        // ()
      if (info.global_batch_size) {
        loss = functional::masked_sum(seq_losses, seq_mask) / *info.global_batch_size * info.dp_size;
      } else {
        verl::detail::check<ConfigError>(info.dp_size <= 1, owner, ": \"", to_string(loss_agg_mode),
                                         "\" with dp_size = ", info.dp_size,
                                         " needs the global `global_batch_size` in GlobalBatchInfo");
        loss = functional::masked_sum(seq_losses, seq_mask) / seq_mask.sum() * info.dp_size;
      }
      if (loss_agg_mode == LossAggMode::seq_mean_token_sum_norm) {
        const double factor = info.loss_scale_factor ? *info.loss_scale_factor
                                                     : static_cast<double>(loss_mask.size(-1));
        loss = loss / factor;  // verl's in-place `/=` keeps the dtype, as `/ scalar` does here
      }
      return loss;
    }
    case LossAggMode::seq_mean_token_mean: {
      const auto counts = loss_mask.sum(-1);                                  // (B,) mask dtype (int64 for int/bool)
      const auto seq_losses = (loss_mat * loss_mask).sum(-1) / (counts + 1e-8);  // (B,)
      const auto seq_mask = counts.gt(0).to(at::kFloat);                      // (B,) float32
      if (info.global_batch_size) {
        return functional::masked_sum(seq_losses, seq_mask) / *info.global_batch_size * info.dp_size;
      }
      verl::detail::check<ConfigError>(info.dp_size <= 1, owner, ": \"seq-mean-token-mean\" with dp_size = ",
                                       info.dp_size, " needs the global `global_batch_size` in GlobalBatchInfo");
      return functional::masked_sum(seq_losses, seq_mask) / seq_mask.sum() * info.dp_size;
    }
  }
  throw ConfigError(verl::detail::concat_message(owner, ": invalid loss_agg_mode value ",
                                                 static_cast<int>(loss_agg_mode),
                                                 ", expected one of the four verl::LossAggMode enumerators"));
}

//! agg_loss with verl's spelling of the mode ("token-mean", ...).
//! \throws verl::ConfigError for an unknown spelling (verl: "Invalid loss_agg_mode").
[[nodiscard]] inline at::Tensor agg_loss(const at::Tensor& loss_mat, const at::Tensor& loss_mask,
                                         std::string_view loss_agg_mode, const GlobalBatchInfo& info = {}) {
  return agg_loss(loss_mat, loss_mask, parse_loss_agg_mode(loss_agg_mode), info);
}

//! agg_loss with verl's spelling as a C string.
[[nodiscard]] inline at::Tensor agg_loss(const at::Tensor& loss_mat, const at::Tensor& loss_mask,
                                         const char* loss_agg_mode, const GlobalBatchInfo& info = {}) {
  return agg_loss(loss_mat, loss_mask, std::string_view{loss_agg_mode}, info);
}

}  // namespace verl::core_algos
