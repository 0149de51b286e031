// expect: verl::Reward: the reward type is neither a RewardModel .* nor a RewardFunction
// A reward type that is neither a model (no score(batch)) nor a function (no operator()(RewardInput)).
#include "verl/concepts/reward_model.hpp"

#include <string_view>

namespace {

struct Reward {
#if VERL_FAIL_TWIN
  double operator()(const verl::RewardInput& in) const;
#else
  double compute_score(std::string_view data_source, std::string_view solution, std::string_view truth) const;
#endif
};

}  // namespace

static_assert(verl::check_reward<Reward>());
