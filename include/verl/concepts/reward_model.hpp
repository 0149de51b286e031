#pragma once
//! \file
//! verl::RewardModel, verl::RewardFunction and verl::Reward: where the scalar reward of a response comes
//! from. Either a model scoring token sequences (a trained reward model, verl's `reward_model`) or a rule
//! over decoded text and a ground truth (verl's `compute_score(data_source, solution_str, ground_truth,
//! extra_info)`). Reward accepts either.

#include "verl/core/model_io.hpp"

#include <ATen/core/Tensor.h>

#include <concepts>

namespace verl {

namespace detail {
//! `m.score(batch)` is a valid expression (whatever it returns).
template <class M>
concept has_score_member = requires(M& m, const TokenBatch& batch) { m.score(batch); };
//! `f(input)` is a valid expression (whatever it returns).
template <class F>
concept callable_with_reward_input = requires(F& f, const RewardInput& input) { f(input); };
}  // namespace detail

//! A model that scores whole sequences.
//!
//! Satisfied when, for `M& m`, `const verl::TokenBatch& batch`:
//!   1. `m.score(batch)` is valid and returns a type convertible to torch::Tensor.
//!
//! Laws (not checked by the compiler):
//!   - the tensor is (B,) floating point and finite: one score per sequence, read at the last valid token
//!     (verl places it on that token of token_level_scores);
//!   - deterministic under no-grad; it is not trained (no parameters() needed) and records no grad;
//!   - the batch is tokenized with the reward model's own tokenizer when it differs from the actor's.
//!
//! Models in this library: verl::models::RewardScorer (verl/models/reward_model.hpp). See also: verl::RewardFunction, verl::Reward,
//! verl::check_reward_model, docs/concepts.md#rewardmodel.
template <class M>
concept RewardModel = requires(M& m, const TokenBatch& batch) {
  { m.score(batch) } -> std::convertible_to<at::Tensor>;
};

//! A rule that scores one decoded response against its item's ground truth.
//!
//! Satisfied when, for `F& f`, `const verl::RewardInput& input`:
//!   1. `f(input)` is valid and returns a type convertible to verl::RewardOutput (a double is: a bare
//!      score), so lambdas, function pointers and function objects all qualify.
//!
//! Laws (not checked by the compiler):
//!   - the score is finite; it depends only on `input` (pure), so calls may run concurrently and in any
//!     order, and a retried call gives the same score;
//!   - `input` and its strings are valid only during the call: copy what must outlive it.
//!
//! Models in this library: none yet. See also: verl::RewardModel, verl::Reward,
//! verl::check_reward_function, docs/concepts.md#rewardfunction.
template <class F>
concept RewardFunction = requires(F& f, const RewardInput& input) {
  { f(input) } -> std::convertible_to<RewardOutput>;
};

//! Anything a trainer can take rewards from: a RewardModel or a RewardFunction.
//!
//! Satisfied when:
//!   1. RewardModel<R> || RewardFunction<R>.
//!
//! A type that is both is used as a RewardModel (trainers test `if constexpr (verl::RewardModel<R>)` first).
//! See also: docs/concepts.md#reward.
template <class R>
concept Reward = RewardModel<R> || RewardFunction<R>;

//! Checks RewardModel<M>, one static_assert per missing or mistyped member. Returns true.
template <class M>
consteval bool check_reward_model() {
  static_assert(detail::has_score_member<M>,
                "verl::RewardModel: the reward model type has no member `score(const verl::TokenBatch&)`; add "
                "one returning the sequence scores as a (B,) torch::Tensor");
  static_assert(!detail::has_score_member<M> || RewardModel<M>,
                "verl::RewardModel: the reward model's `score(const verl::TokenBatch&)` returns a type not "
                "convertible to torch::Tensor; return the (B,) scores tensor");
  return true;  // reached only when every piece holds: the concept is their conjunction
}

//! Checks RewardFunction<F>, one static_assert per failing piece. Returns true.
template <class F>
consteval bool check_reward_function() {
  static_assert(detail::callable_with_reward_input<F>,
                "verl::RewardFunction: the reward function type is not callable as `f(const verl::RewardInput&)`; "
                "give it `operator()(const verl::RewardInput&)` (or use a lambda) returning a double or "
                "verl::RewardOutput");
  static_assert(!detail::callable_with_reward_input<F> || RewardFunction<F>,
                "verl::RewardFunction: `f(const verl::RewardInput&)` returns a type not convertible to "
                "verl::RewardOutput; return a double score or verl::RewardOutput{score, extra}");
  return true;  // reached only when every piece holds: the concept is their conjunction
}

//! Checks Reward<R>: when R is neither a RewardModel nor a RewardFunction, one static_assert says what
//! either would need (or, when R has `score` or is callable with a wrong return type, that piece's
//! message). Returns true.
template <class R>
consteval bool check_reward() {
  // A type that tried to be one of the two (has the member, wrong return type) gets that one's message.
  if constexpr (detail::has_score_member<R> && !RewardFunction<R>) {
    return check_reward_model<R>();
  } else if constexpr (detail::callable_with_reward_input<R> && !RewardModel<R>) {
    return check_reward_function<R>();
  } else {
    static_assert(Reward<R>,
                  "verl::Reward: the reward type is neither a RewardModel (no `score(const verl::TokenBatch&)` "
                  "returning a (B,) torch::Tensor) nor a RewardFunction (not callable as "
                  "`f(const verl::RewardInput&)` returning a double or verl::RewardOutput); add one of the two");
    return true;  // reached only when every piece holds: the concept is their conjunction
  }
}

}  // namespace verl
