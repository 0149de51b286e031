// expect: verl::ActorModel: the actor's `log_probs\(.*\)` returns a type not convertible to verl::LogProbOutput
// log_probs() returning a bare (B,R) tensor instead of verl::LogProbOutput.
#include "verl/concepts/actor_model.hpp"

#include <vector>

namespace {

struct Actor {
#if VERL_FAIL_TWIN
  verl::LogProbOutput log_probs(const verl::TokenBatch&, const verl::LogProbOptions&);
#else
  at::Tensor log_probs(const verl::TokenBatch&, const verl::LogProbOptions&);  // (B,R)
#endif
  verl::Rollout generate(const verl::Prompts&, const verl::SamplingParams&);
  std::vector<at::Tensor> parameters();
};

}  // namespace

static_assert(verl::check_actor_model<Actor>());
