// verl/concepts/concepts.hpp brings every contract and checker; a type can model several at once.
#include "verl/concepts/concepts.hpp"

namespace {

// One engine serving as actor and critic (shared trunk, two heads), as some users build them.
struct ActorCritic {
  verl::LogProbOutput log_probs(const verl::TokenBatch&, const verl::LogProbOptions&);
  verl::Rollout generate(const verl::Prompts&, const verl::SamplingParams&);
  at::Tensor values(const verl::TokenBatch&);
  std::vector<at::Tensor> parameters();
};

}  // namespace

static_assert(verl::ActorModel<ActorCritic> && verl::CriticModel<ActorCritic> && verl::ReferenceModel<ActorCritic>);
static_assert(!verl::Reward<ActorCritic> && !verl::Tokenizer<ActorCritic> && !verl::Communicator<ActorCritic>);
static_assert(!verl::AdvantageEstimator<ActorCritic> && !verl::PolicyLoss<ActorCritic>);
static_assert(verl::check_actor_model<ActorCritic>() && verl::check_critic_model<ActorCritic>());
