// Static tests of the contract vocabulary (include/verl/core/model_io.hpp, include/verl/core/algo_io.hpp):
// the types are plain aggregates a model can build with designated initializers, and the conversions the
// concepts rely on hold (and only those).
#include "verl/core/algo_io.hpp"
#include "verl/core/model_io.hpp"

#include <concepts>
#include <string>
#include <type_traits>

static_assert(std::is_aggregate_v<verl::TokenBatch>);
static_assert(std::is_aggregate_v<verl::LogProbOptions>);
static_assert(std::is_aggregate_v<verl::LogProbOutput>);
static_assert(std::is_aggregate_v<verl::Prompts>);
static_assert(std::is_aggregate_v<verl::SamplingParams>);
static_assert(std::is_aggregate_v<verl::Rollout>);
static_assert(std::is_aggregate_v<verl::RewardInput>);
static_assert(std::is_aggregate_v<verl::AdvantageInputs>);
static_assert(std::is_aggregate_v<verl::AdvantageOutput>);
static_assert(std::is_aggregate_v<verl::PolicyLossInputs>);
static_assert(std::is_aggregate_v<verl::PolicyLossOutput>);

// Designated initializers in the documented order compile.
inline verl::SamplingParams grpo_params() {
  return {.n = 8, .temperature = 1.0, .top_p = 1.0, .top_k = -1, .max_tokens = 1024, .seed = 7};
}
inline verl::LogProbOptions tempered() { return {.temperature = 0.7, .compute_entropy = true}; }

// A RewardInput is a view: it cannot be default-constructed or reseated.
static_assert(!std::is_default_constructible_v<verl::RewardInput>);
static_assert(!std::is_copy_assignable_v<verl::RewardInput>);

// A bare score is a RewardOutput; a tensor is not a LogProbOutput, a Rollout or an AdvantageOutput.
static_assert(std::convertible_to<double, verl::RewardOutput>);
static_assert(std::convertible_to<float, verl::RewardOutput>);
static_assert(!std::convertible_to<std::string, verl::RewardOutput>);
static_assert(!std::convertible_to<at::Tensor, verl::LogProbOutput>);
static_assert(!std::convertible_to<at::Tensor, verl::Rollout>);
static_assert(!std::convertible_to<at::Tensor, verl::AdvantageOutput>);
static_assert(!std::convertible_to<at::Tensor, verl::PolicyLossOutput>);

// Rollout::token_batch() is the bridge from generation to scoring.
static_assert(std::same_as<decltype(std::declval<const verl::Rollout&>().token_batch()), verl::TokenBatch>);

static_assert(verl::to_string(verl::LossAggMode::seq_mean_token_mean) == "seq-mean-token-mean");
static_assert(verl::LogProbOptions{}.temperature == 1.0 && !verl::LogProbOptions{}.compute_entropy);
