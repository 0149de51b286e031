// Static tests of verl::RewardModel, verl::RewardFunction and verl::Reward
// (include/verl/concepts/reward_model.hpp).
#include "verl/concepts/reward_model.hpp"

#include <string>

namespace {

struct GoodRewardModel {
  at::Tensor score(const verl::TokenBatch& batch);  // (B,)
};
struct ScoreReturnsDouble {
  double score(const verl::TokenBatch&);
};

// Rule-based rewards, as verl's compute_score.
struct ExactMatch {
  double operator()(const verl::RewardInput& in) const;
};
struct MathWithExtras {
  verl::RewardOutput operator()(const verl::RewardInput& in);  // non-const: may hold a cache
};
struct BoolReward {  // bool converts to double, hence to RewardOutput
  bool operator()(const verl::RewardInput& in) const;
};
struct ReturnsString {
  std::string operator()(const verl::RewardInput& in) const;
};
struct TakesString {  // verl's four positional arguments are not the contract
  double operator()(std::string data_source, std::string solution, std::string ground_truth) const;
};
struct Neither {
  double reward(const verl::TokenBatch&);
};
struct Both {
  at::Tensor score(const verl::TokenBatch&);
  double operator()(const verl::RewardInput&) const;
};

double free_rule(const verl::RewardInput& in);
inline constexpr auto lambda_rule = [](const verl::RewardInput& in) { return in.response.empty() ? 0.0 : 1.0; };
using LambdaRule = decltype(lambda_rule);

}  // namespace

static_assert(std::convertible_to<double, verl::RewardOutput>);
static_assert(!std::convertible_to<std::string, verl::RewardOutput>);

static_assert(verl::RewardModel<GoodRewardModel>);
static_assert(verl::RewardModel<Both>);
static_assert(!verl::RewardModel<ScoreReturnsDouble>);
static_assert(!verl::RewardModel<ExactMatch>);
static_assert(!verl::RewardModel<Neither>);

static_assert(verl::RewardFunction<ExactMatch>);
static_assert(verl::RewardFunction<MathWithExtras>);
static_assert(verl::RewardFunction<BoolReward>);
static_assert(verl::RewardFunction<LambdaRule>);
static_assert(verl::RewardFunction<const LambdaRule>);
static_assert(verl::RewardFunction<decltype(&free_rule)>);
static_assert(verl::RewardFunction<decltype(free_rule)>);
static_assert(verl::RewardFunction<Both>);
static_assert(!verl::RewardFunction<const MathWithExtras>);
static_assert(!verl::RewardFunction<ReturnsString>);
static_assert(!verl::RewardFunction<TakesString>);
static_assert(!verl::RewardFunction<GoodRewardModel>);
static_assert(!verl::RewardFunction<Neither>);

static_assert(verl::Reward<GoodRewardModel>);
static_assert(verl::Reward<ExactMatch>);
static_assert(verl::Reward<LambdaRule>);
static_assert(verl::Reward<Both>);
static_assert(!verl::Reward<Neither>);
static_assert(!verl::Reward<ScoreReturnsDouble>);
static_assert(!verl::Reward<ReturnsString>);
static_assert(!verl::Reward<int>);

static_assert(verl::check_reward_model<GoodRewardModel>());
static_assert(verl::check_reward_function<ExactMatch>());
static_assert(verl::check_reward_function<LambdaRule>());
static_assert(verl::check_reward<GoodRewardModel>());
static_assert(verl::check_reward<MathWithExtras>());
static_assert(verl::check_reward<Both>());
