// expect: verl::PolicyLoss: the loss type has no static or const member `compute\(const verl::PolicyLossInputs&\)`
// A policy loss whose compute() is not const, so a const policy object cannot call it.
#include "verl/concepts/policy_loss.hpp"

namespace {

struct Loss {
  static constexpr std::string_view name = "my_loss";
#if VERL_FAIL_TWIN
  verl::PolicyLossOutput compute(const verl::PolicyLossInputs& in) const;
#else
  verl::PolicyLossOutput compute(const verl::PolicyLossInputs& in);
#endif
};

}  // namespace

static_assert(verl::check_policy_loss<Loss>());
