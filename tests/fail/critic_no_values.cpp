// expect: verl::CriticModel: the critic type has no member `values\(const verl::TokenBatch&\)`
// A critic that names its head `value` instead of `values`.
#include "verl/concepts/critic_model.hpp"

#include <vector>

namespace {

struct Critic {
#if VERL_FAIL_TWIN
  at::Tensor values(const verl::TokenBatch&);  // (B,R)
#else
  at::Tensor value(const verl::TokenBatch&);  // (B,R)
#endif
  std::vector<at::Tensor> parameters();
};

}  // namespace

static_assert(verl::check_critic_model<Critic>());
