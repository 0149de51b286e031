// include/verl/customization.hpp: the catalogue header brings every extension contract with it, and a user's
// own field, estimator and algorithm plug in through it alone (compiling is passing).
#include "verl/customization.hpp"

#include <string_view>

namespace {
struct my_reward_field : verl::field<"my_reward", verl::FieldLayout::sequence> {};
struct MyEstimator {
  static constexpr std::string_view name = "mine";
  static constexpr bool needs_critic = false;
  static constexpr bool needs_groups = false;
  static verl::AdvantageOutput compute(const verl::AdvantageInputs& in) { return {in.token_level_rewards, in.token_level_rewards}; }
};
struct MyLoss {
  static constexpr std::string_view name = "mine";
  static verl::PolicyLossOutput compute(const verl::PolicyLossInputs&) { return {}; }
};
struct my_defaults {
  static constexpr std::string_view name = "my_algorithm";
  using advantage = verl::advantage<MyEstimator>;
  using policy_loss = verl::policy_loss<MyLoss>;
  using loss_agg = verl::loss_agg<verl::LossAggMode::token_mean>;
  using kl = verl::no_kl;
  using entropy_coeff = verl::entropy_coeff<0.0>;
};
struct NotAnEstimator {};
}  // namespace

static_assert(verl::FieldTag<my_reward_field>);
static_assert(verl::AdvantageEstimator<MyEstimator> && !verl::AdvantageEstimator<NotAnEstimator>);
static_assert(verl::PolicyLoss<MyLoss>);
using MyAlgorithm = verl::RLAlgorithm<my_defaults>;
static_assert(!MyAlgorithm::needs_critic && !MyAlgorithm::needs_reference && MyAlgorithm::name == "my_algorithm");
