#pragma once
//! \file
//! verl::PolicyLoss: the policy that turns log-probs and advantages into the actor's loss (verl's
//! `policy_loss.loss_mode`: "vanilla" PPO clip, "gspo", "gpg", "clip_cov", "kl_cov", ...).

#include "verl/concepts/named_policy.hpp"
#include "verl/core/algo_io.hpp"

#include <concepts>

namespace verl {

namespace detail {
template <class L>
concept has_compute_policy_loss_member = requires(const L& l, const PolicyLossInputs& in) { l.compute(in); };
}  // namespace detail

//! Computes the policy loss.
//!
//! Satisfied when, for `const L& l`, `const verl::PolicyLossInputs& in`:
//!   1. `l.compute(in)` (a static or const member) is valid and returns a type convertible to
//!      verl::PolicyLossOutput.
template <class L>
concept ComputesPolicyLoss = requires(const L& l, const PolicyLossInputs& in) {
  { l.compute(in) } -> std::convertible_to<PolicyLossOutput>;
};

//! A policy loss policy.
//!
//! Satisfied when:
//!   1. NamedPolicy<L>: `static constexpr std::string_view name` (verl's loss_mode spelling, e.g. "vanilla");
//!   2. ComputesPolicyLoss<L>: `compute(const PolicyLossInputs&) const` (or static) -> PolicyLossOutput.
//!
//! Laws (not checked by the compiler):
//!   - `loss` is a finite 0-d tensor aggregated with in.loss_agg_mode over the tokens where response_mask
//!     is 1: positions with mask 0 contribute neither value nor gradient;
//!   - the gradient flows only through in.log_prob; old_log_prob and advantages are constants;
//!   - metrics are 0-d and detached: pg_clipfrac and pg_clipfrac_lower in [0, 1], ppo_kl the aggregated
//!     old_log_prob - log_prob (0 when they are equal);
//!   - when log_prob == old_log_prob (first mini-batch on-policy) the ratio is 1 and nothing is clipped.
//!
//! Models in this library: verl::losses::VanillaPPO, GSPO, SAPO, GPG, ClipCov, KLCov, GeoMean, CISPO
//! (verl/algos/policy_losses.hpp).
//! See also: verl::AdvantageEstimator, verl::LossAggMode, verl::check_policy_loss,
//! docs/concepts.md#policyloss.
template <class L>
concept PolicyLoss = NamedPolicy<L> && ComputesPolicyLoss<L>;

//! Checks PolicyLoss<L> piece by piece, one static_assert per missing or mistyped member. Returns true.
template <class L>
consteval bool check_policy_loss() {
  static_assert(NamedPolicy<L>,
                "verl::PolicyLoss: the loss type has no constant `name`; add "
                "`static constexpr std::string_view name = \"my_loss\";`");
  static_assert(detail::has_compute_policy_loss_member<L>,
                "verl::PolicyLoss: the loss type has no static or const member "
                "`compute(const verl::PolicyLossInputs&)`; add one returning verl::PolicyLossOutput");
  static_assert(!detail::has_compute_policy_loss_member<L> || ComputesPolicyLoss<L>,
                "verl::PolicyLoss: the loss's `compute(const verl::PolicyLossInputs&)` returns a type not "
                "convertible to verl::PolicyLossOutput; return verl::PolicyLossOutput{loss, pg_clipfrac, ppo_kl, "
                "pg_clipfrac_lower}");
  return true;  // reached only when every piece holds: the concept is their conjunction
}

}  // namespace verl
