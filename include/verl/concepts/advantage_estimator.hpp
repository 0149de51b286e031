#pragma once
//! \file
//! verl::AdvantageEstimator: the policy that turns token-level rewards into advantages and returns
//! (verl's `AdvantageEstimator` enum: GAE, GRPO, RLOO, REINFORCE++, ReMax, ...). Each estimator is a type
//! with a compile-time name and flags that tell the trainer what it needs, so a trainer can skip the critic
//! or the group ids at compile time.

#include "verl/concepts/named_policy.hpp"
#include "verl/core/algo_io.hpp"

#include <concepts>
#include <type_traits>

namespace verl {

namespace detail {
template <class E>
concept has_compute_advantages_member = requires(const E& e, const AdvantageInputs& in) { e.compute(in); };
template <class E>
concept has_needs_critic_flag = requires {
  requires std::same_as<std::remove_cv_t<decltype(E::needs_critic)>, bool>;
  typename std::bool_constant<E::needs_critic>;  // a constant expression
};
template <class E>
concept has_needs_groups_flag = requires {
  requires std::same_as<std::remove_cv_t<decltype(E::needs_groups)>, bool>;
  typename std::bool_constant<E::needs_groups>;
};
}  // namespace detail

//! Declares, at compile time, which optional AdvantageInputs an estimator reads.
//!
//! Satisfied when:
//!   1. `E::needs_critic` is a `bool` constant expression: compute() reads AdvantageInputs::values, so the
//!      trainer must own a CriticModel;
//!   2. `E::needs_groups` is a `bool` constant expression: compute() reads AdvantageInputs::index (items
//!      sampled from one prompt share an id), so the rollout must sample n > 1 responses per prompt.
template <class E>
concept DeclaresAdvantageNeeds = detail::has_needs_critic_flag<E> && detail::has_needs_groups_flag<E>;

//! Computes advantages and returns.
//!
//! Satisfied when, for `const E& e`, `const verl::AdvantageInputs& in`:
//!   1. `e.compute(in)` (a static or const member) is valid and returns a type convertible to
//!      verl::AdvantageOutput.
template <class E>
concept ComputesAdvantages = requires(const E& e, const AdvantageInputs& in) {
  { e.compute(in) } -> std::convertible_to<AdvantageOutput>;
};

//! An advantage estimator policy.
//!
//! Satisfied when:
//!   1. NamedPolicy<E>: `static constexpr std::string_view name` (verl's spelling: "gae", "grpo", ...);
//!   2. DeclaresAdvantageNeeds<E>: `static constexpr bool needs_critic`, `static constexpr bool needs_groups`;
//!   3. ComputesAdvantages<E>: `compute(const AdvantageInputs&) const` (or static) -> AdvantageOutput.
//!
//! Laws (not checked by the compiler):
//!   - advantages and returns are (B,R) and finite where response_mask is 1; what they hold where it is 0 is
//!     unspecified (verl's GAE whitens without re-masking), so every consumer masks them;
//!   - compute() reads `values` only if needs_critic and `index` only if needs_groups, and may assume they
//!     are set when it declares them (trainers guarantee it);
//!   - pure: no autograd history (inputs are detached; call under no-grad), same inputs give the same output;
//!   - for group estimators, the result of an item depends only on the items sharing its index.
//!
//! Models in this library: verl::estimators::GAE, GRPO, GRPOPassK, RLOO, OPO, ReinforcePlusPlus,
//! ReinforcePlusPlusBaseline, ReMax, GPG (verl/algos/advantages.hpp).
//! See also: verl::PolicyLoss, verl::CriticModel, verl::check_advantage_estimator,
//! docs/concepts.md#advantageestimator.
template <class E>
concept AdvantageEstimator = NamedPolicy<E> && DeclaresAdvantageNeeds<E> && ComputesAdvantages<E>;

//! Checks AdvantageEstimator<E> piece by piece, one static_assert per missing or mistyped member. Returns true.
template <class E>
consteval bool check_advantage_estimator() {
  static_assert(NamedPolicy<E>,
                "verl::AdvantageEstimator: the estimator type has no constant `name`; add "
                "`static constexpr std::string_view name = \"my_estimator\";`");
  static_assert(detail::has_needs_critic_flag<E>,
                "verl::AdvantageEstimator: the estimator type has no `static constexpr bool needs_critic`; add "
                "one (true when compute() reads AdvantageInputs::values)");
  static_assert(detail::has_needs_groups_flag<E>,
                "verl::AdvantageEstimator: the estimator type has no `static constexpr bool needs_groups`; add "
                "one (true when compute() reads AdvantageInputs::index)");
  static_assert(detail::has_compute_advantages_member<E>,
                "verl::AdvantageEstimator: the estimator type has no static or const member "
                "`compute(const verl::AdvantageInputs&)`; add one returning verl::AdvantageOutput");
  static_assert(!detail::has_compute_advantages_member<E> || ComputesAdvantages<E>,
                "verl::AdvantageEstimator: the estimator's `compute(const verl::AdvantageInputs&)` returns a type "
                "not convertible to verl::AdvantageOutput; return verl::AdvantageOutput{advantages, returns}");
  return true;  // reached only when every piece holds: the concept is their conjunction
}

}  // namespace verl
