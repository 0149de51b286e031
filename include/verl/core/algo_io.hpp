#pragma once
//! \file
//! Inputs and outputs of the algorithm policies (verl/concepts/advantage_estimator.hpp,
//! verl/concepts/policy_loss.hpp), named as in verl's `trainer/ppo/core_algos.py`: an advantage estimator
//! maps token-level rewards to advantages and returns; a policy loss maps log-probs and advantages to a
//! scalar loss plus the metrics verl logs (pg_clipfrac, ppo_kl, pg_clipfrac_lower).
//!
//! Shapes: B = batch size, R = response length.

#include "verl/core/errors.hpp"

#include <ATen/core/Tensor.h>

#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace verl {

// ---------------------------------------------------------------------------------------------------------
// Loss aggregation.

//! How a (B,R) per-token loss is reduced to a scalar (verl's `loss_agg_mode`, see `agg_loss`).
enum class LossAggMode {
  token_mean,               //!< "token-mean": sum over all valid tokens / number of valid tokens
  seq_mean_token_sum,       //!< "seq-mean-token-sum": per-sequence token sum, then mean over sequences
  seq_mean_token_mean,      //!< "seq-mean-token-mean": per-sequence token mean, then mean over sequences
  seq_mean_token_sum_norm,  //!< "seq-mean-token-sum-norm": token sum / R (Dr. GRPO's constant normaliser)
};

namespace detail {
inline constexpr std::array<std::pair<LossAggMode, std::string_view>, 4> loss_agg_mode_names{{
    {LossAggMode::token_mean, "token-mean"},
    {LossAggMode::seq_mean_token_sum, "seq-mean-token-sum"},
    {LossAggMode::seq_mean_token_mean, "seq-mean-token-mean"},
    {LossAggMode::seq_mean_token_sum_norm, "seq-mean-token-sum-norm"},
}};
}  // namespace detail

//! verl's configuration spelling of `mode`, e.g. "seq-mean-token-sum".
[[nodiscard]] constexpr std::string_view to_string(LossAggMode mode) {
  for (const auto& [m, name] : detail::loss_agg_mode_names) {
    if (m == mode) return name;
  }
  return "<invalid LossAggMode>";
}

//! Parses verl's spelling ("token-mean", ...); throws verl::ConfigError listing the allowed values.
[[nodiscard]] inline LossAggMode parse_loss_agg_mode(std::string_view text) {
  for (const auto& [m, name] : detail::loss_agg_mode_names) {
    if (name == text) return m;
  }
  throw ConfigError(detail::concat_message(
      "verl::parse_loss_agg_mode: `loss_agg_mode` is \"", text,
      "\", expected one of \"token-mean\", \"seq-mean-token-sum\", \"seq-mean-token-mean\", "
      "\"seq-mean-token-sum-norm\""));
}

namespace detail {

//! Throws verl::ShapeError unless `t` is defined and 2-D.
inline void check_br(const at::Tensor& t, std::string_view owner, std::string_view what) {
  check<ShapeError>(t.defined(), owner, ": `", what, "` is undefined, expected a (B,R) tensor");
  check<ShapeError>(t.dim() == 2, owner, ": `", what, "` has ", t.dim(), " dimensions, expected 2 (B,R)");
}

//! Throws verl::ShapeError unless `t` is defined with the sizes of `like` (named `like_name`).
inline void check_like(const at::Tensor& t, const at::Tensor& like, std::string_view owner, std::string_view what,
                       std::string_view like_name) {
  check<ShapeError>(t.defined(), owner, ": `", what, "` is undefined, expected the shape of `", like_name, "`");
  check<ShapeError>(t.sizes() == like.sizes(), owner, ": `", what, "` has shape ", t.sizes(), ", expected ",
                    like.sizes(), " (the shape of `", like_name, "`)");
}

}  // namespace detail

//! verl's `ActorConfig.global_batch_info` (0.7.1): the global-batch normalisers passed to agg_loss so that the
//! loss of a micro-batch (or of a data-parallel rank's share) is its part of the loss over the whole
//! mini-batch. With them, summing the micro-batch losses' gradients gives the mini-batch gradient exactly,
//! whatever the micro-batch size (verl's engine workers, verl/workers/utils/losses.py `ppo_loss`).
struct GlobalBatchInfo {
  std::int64_t dp_size = 1;                  //!< data-parallel world size
  std::optional<double> batch_num_tokens;    //!< valid tokens in the global batch (token-mean)
  std::optional<double> global_batch_size;   //!< sequences in the global batch (seq-mean-* modes)
  std::optional<double> loss_scale_factor;   //!< seq-mean-token-sum-norm divisor; default: R (mask.size(-1))

  //! True when any normaliser is given (the loss is then a share of the global loss, not a local mean).
  [[nodiscard]] bool any() const {
    return dp_size > 1 || batch_num_tokens || global_batch_size || loss_scale_factor;
  }
};

// ---------------------------------------------------------------------------------------------------------
// Advantage estimation.

//! What an AdvantageEstimator reads: data only. Its settings (gamma, lambda, epsilon, std normalisation)
//! are members of the estimator type (e.g. verl::estimators::GAE{gamma, lam}), fixed for a run. Which optional
//! members it needs is declared by its flags (`needs_critic`: values; `needs_groups`: index).
struct AdvantageInputs {
  at::Tensor token_level_rewards;            // (B,R) float, rewards after any KL penalty
  at::Tensor response_mask;                  // (B,R) 0/1, 1 on tokens that count
  std::optional<at::Tensor> values;          // (B,R) float, critic values (GAE)
  std::optional<at::Tensor> index;           // (B,) int64, group id: items sampled from one prompt share it
  std::optional<at::Tensor> reward_baselines;  // (B,) float, e.g. ReMax's greedy-response reward

  //! Throws verl::ShapeError unless rewards and mask are (B,R) of one shape, values (if any) match them and
  //! index (if any) is (B,).
  void validate() const {
    constexpr std::string_view owner = "verl::AdvantageInputs";
    detail::check_br(token_level_rewards, owner, "token_level_rewards");
    detail::check_like(response_mask, token_level_rewards, owner, "response_mask", "token_level_rewards");
    if (values) detail::check_like(*values, token_level_rewards, owner, "values", "token_level_rewards");
    const std::int64_t b = token_level_rewards.size(0);
    for (const auto& [opt, name] : {std::pair{&index, "index"}, std::pair{&reward_baselines, "reward_baselines"}}) {
      if (!opt->has_value()) continue;
      const at::Tensor& t = **opt;
      detail::check<ShapeError>(t.defined() && t.dim() == 1 && t.size(0) == b, owner, ": `", name,
                                "` must be a (B,) tensor with B = ", b, ", got ",
                                t.defined() ? t.sizes() : at::IntArrayRef{}, t.defined() ? "" : " (undefined)");
    }
  }
};

//! What an AdvantageEstimator returns.
struct AdvantageOutput {
  at::Tensor advantages;  // (B,R) float; masked positions are unspecified (verl's whitened GAE leaves them nonzero)
  at::Tensor returns;     // (B,R) float, the critic's regression target (= advantages for critic-free estimators)
};

// ---------------------------------------------------------------------------------------------------------
// Policy loss.

//! What a PolicyLoss reads (verl's `compute_policy_loss` arguments).
struct PolicyLossInputs {
  at::Tensor old_log_prob;   // (B,R) float, behaviour-policy log-probs (detached)
  at::Tensor log_prob;       // (B,R) float, current-policy log-probs (carries the gradient)
  at::Tensor advantages;     // (B,R) float
  at::Tensor response_mask;  // (B,R) 0/1
  LossAggMode loss_agg_mode = LossAggMode::token_mean;
  double clip_ratio_low = 0.2;   //!< ratio is clipped below at 1 - clip_ratio_low
  double clip_ratio_high = 0.2;  //!< ratio is clipped above at 1 + clip_ratio_high (DAPO's clip-higher)
  double clip_ratio_c = 3.0;     //!< dual-clip bound for negative advantages (> 1)
  //! Global-batch normalisers for agg_loss; when any is set they replace the loss's own (trainers set them
  //! so that gradient accumulation over micro-batches reproduces the mini-batch loss exactly).
  GlobalBatchInfo global_batch_info{};

  //! Throws verl::ShapeError unless the four tensors are (B,R) of one shape.
  void validate() const {
    constexpr std::string_view owner = "verl::PolicyLossInputs";
    detail::check_br(log_prob, owner, "log_prob");
    detail::check_like(old_log_prob, log_prob, owner, "old_log_prob", "log_prob");
    detail::check_like(advantages, log_prob, owner, "advantages", "log_prob");
    detail::check_like(response_mask, log_prob, owner, "response_mask", "log_prob");
  }
};

//! What a PolicyLoss returns: the loss to backpropagate and the metrics verl logs under actor/.
//! A metric the loss does not compute stays undefined.
struct PolicyLossOutput {
  at::Tensor loss;               // () float, aggregated with loss_agg_mode; carries the gradient
  at::Tensor pg_clipfrac;        // () float, detached: fraction of valid tokens where the upper/lower clip bit
  at::Tensor ppo_kl;             // () float, detached: aggregated (old_log_prob - log_prob)
  at::Tensor pg_clipfrac_lower;  // () float, detached: fraction of valid tokens where the dual clip bit
  std::map<std::string, at::Tensor, std::less<>> extra_metrics;  //!< other () metrics, by name
};

}  // namespace verl
