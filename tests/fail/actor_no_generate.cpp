// expect: verl::ActorModel: the actor type has no member `generate\(const verl::Prompts&, const verl::SamplingParams&\)`
// An actor without generate(), used by a class template that checks its argument in its body, as trainers do.
// The diagnostic must be the checker's one line, naming the missing member and its signature.
#include "verl/concepts/actor_model.hpp"

#include <vector>

namespace {

struct GoodActor {
  verl::LogProbOutput log_probs(const verl::TokenBatch&, const verl::LogProbOptions&);
  verl::Rollout generate(const verl::Prompts&, const verl::SamplingParams&);
  std::vector<at::Tensor> parameters();
};
struct NoGenerate {
  verl::LogProbOutput log_probs(const verl::TokenBatch&, const verl::LogProbOptions&);
  std::vector<at::Tensor> parameters();
};

#if VERL_FAIL_TWIN
using Actor = GoodActor;
#else
using Actor = NoGenerate;
#endif

template <class A>
struct TrainerLike {
  static_assert(verl::check_actor_model<A>());
};

}  // namespace

template struct TrainerLike<Actor>;
