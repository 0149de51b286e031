// Small policy and model types for the compile-time tests of verl/algos/algorithm.hpp: real signatures,
// trivial bodies (they are only instantiated, never run).
#pragma once
#include "verl/algos/algorithm.hpp"

#include <string_view>
#include <vector>

namespace verl::test {

struct CriticEstimator {  // GAE-like: reads values
  static constexpr std::string_view name = "test_gae";
  static constexpr bool needs_critic = true;
  static constexpr bool needs_groups = false;
  static AdvantageOutput compute(const AdvantageInputs& in) { return {in.token_level_rewards, in.token_level_rewards}; }
};
struct GroupEstimator {  // GRPO-like: groups, no critic
  static constexpr std::string_view name = "test_grpo";
  static constexpr bool needs_critic = false;
  static constexpr bool needs_groups = true;
  static AdvantageOutput compute(const AdvantageInputs& in) { return {in.token_level_rewards, in.token_level_rewards}; }
};
struct ClipLoss {
  static constexpr std::string_view name = "test_vanilla";
  static PolicyLossOutput compute(const PolicyLossInputs&) { return {}; }
};

struct ActorType {
  LogProbOutput log_probs(const TokenBatch&, const LogProbOptions&);
  Rollout generate(const Prompts&, const SamplingParams&);
  std::vector<at::Tensor> parameters();
};
struct CriticType {
  at::Tensor values(const TokenBatch&);
  std::vector<at::Tensor> parameters();
};
struct ReferenceType {
  LogProbOutput log_probs(const TokenBatch&, const LogProbOptions&);
};

struct test_defaults {
  static constexpr std::string_view name = "test_ppo";
  using advantage = verl::advantage<CriticEstimator>;
  using policy_loss = verl::policy_loss<ClipLoss>;
  using loss_agg = verl::loss_agg<LossAggMode::token_mean>;
  using kl = verl::no_kl;
  using entropy_coeff = verl::entropy_coeff<0.0>;
};
template <class... Ps>
using TestPPO = RLAlgorithm<test_defaults, Ps...>;

}  // namespace verl::test
