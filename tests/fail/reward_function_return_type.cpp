// expect: verl::RewardFunction: `f\(const verl::RewardInput&\)` returns a type not convertible to verl::RewardOutput
// A rule returning its verdict as text: check_reward reports the RewardFunction piece it got wrong.
#include "verl/concepts/reward_model.hpp"

#include <string>

namespace {

#if VERL_FAIL_TWIN
inline constexpr auto rule = [](const verl::RewardInput& in) { return in.response == in.ground_truth ? 1.0 : 0.0; };
#else
inline constexpr auto rule = [](const verl::RewardInput& in) {
  return std::string(in.response == in.ground_truth ? "correct" : "wrong");
};
#endif

}  // namespace

static_assert(verl::check_reward<decltype(rule)>());
