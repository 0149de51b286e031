// expect: verl::AdvantageEstimator: the estimator type has no `static constexpr bool needs_critic`
// An estimator that forgets to declare whether it needs a critic.
#include "verl/concepts/advantage_estimator.hpp"

namespace {

struct Estimator {
  static constexpr std::string_view name = "my_grpo";
#if VERL_FAIL_TWIN
  static constexpr bool needs_critic = false;
#endif
  static constexpr bool needs_groups = true;
  verl::AdvantageOutput compute(const verl::AdvantageInputs& in) const;
};

}  // namespace

static_assert(verl::check_advantage_estimator<Estimator>());
