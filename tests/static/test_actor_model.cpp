// Static tests of verl::ReferenceModel and verl::ActorModel and their pieces
// (include/verl/concepts/reference_model.hpp, include/verl/concepts/actor_model.hpp). Compiling is passing.
#include "verl/concepts/actor_model.hpp"
#include "verl/concepts/has_parameters.hpp"

#include <vector>

namespace {

// The three members an actor needs, with the signatures the docs show.
struct GoodActor {
  verl::LogProbOutput log_probs(const verl::TokenBatch& batch, const verl::LogProbOptions& options);
  verl::Rollout generate(const verl::Prompts& prompts, const verl::SamplingParams& params);
  std::vector<at::Tensor> parameters();
};

// Const members, a defaulted options argument, by-value parameters and a Rollout subclass are accepted.
struct RichRollout : verl::Rollout {
  int engine_steps = 0;
};
struct ConstActor {
  verl::LogProbOutput log_probs(verl::TokenBatch batch, verl::LogProbOptions options = {}) const;
  RichRollout generate(verl::Prompts prompts, verl::SamplingParams params) const;
  const std::vector<at::Tensor>& parameters() const;
};

struct ReferenceOnly {
  verl::LogProbOutput log_probs(const verl::TokenBatch&, const verl::LogProbOptions&) const;
};
struct NoGenerate {
  verl::LogProbOutput log_probs(const verl::TokenBatch&, const verl::LogProbOptions&);
  std::vector<at::Tensor> parameters();
};
struct LogProbsReturnTensor {
  at::Tensor log_probs(const verl::TokenBatch&, const verl::LogProbOptions&);  // (B,R) but not LogProbOutput
  verl::Rollout generate(const verl::Prompts&, const verl::SamplingParams&);
  std::vector<at::Tensor> parameters();
};
struct LogProbsWithoutOptions {
  verl::LogProbOutput log_probs(const verl::TokenBatch&);
  verl::Rollout generate(const verl::Prompts&, const verl::SamplingParams&);
  std::vector<at::Tensor> parameters();
};
struct GenerateReturnsTensor {
  verl::LogProbOutput log_probs(const verl::TokenBatch&, const verl::LogProbOptions&);
  at::Tensor generate(const verl::Prompts&, const verl::SamplingParams&);
  std::vector<at::Tensor> parameters();
};
struct GenerateMutatesPrompts {
  verl::LogProbOutput log_probs(const verl::TokenBatch&, const verl::LogProbOptions&);
  verl::Rollout generate(verl::Prompts&, const verl::SamplingParams&);  // cannot bind a const Prompts
  std::vector<at::Tensor> parameters();
};
struct NoParameters {
  verl::LogProbOutput log_probs(const verl::TokenBatch&, const verl::LogProbOptions&);
  verl::Rollout generate(const verl::Prompts&, const verl::SamplingParams&);
};
struct ParametersReturnInt {
  verl::LogProbOutput log_probs(const verl::TokenBatch&, const verl::LogProbOptions&);
  verl::Rollout generate(const verl::Prompts&, const verl::SamplingParams&);
  int parameters();
};
struct DataMembersOnly {  // members with the right names that are not callable
  verl::LogProbOutput log_probs;
  verl::Rollout generate;
  std::vector<at::Tensor> parameters;
};

}  // namespace

// Pieces.
static_assert(verl::ComputesLogProbs<GoodActor>);
static_assert(verl::ComputesLogProbs<ConstActor>);
static_assert(verl::ComputesLogProbs<const ConstActor>);
static_assert(!verl::ComputesLogProbs<const GoodActor>);  // non-const log_probs on a const actor
static_assert(!verl::ComputesLogProbs<LogProbsReturnTensor>);
static_assert(!verl::ComputesLogProbs<LogProbsWithoutOptions>);
static_assert(!verl::ComputesLogProbs<DataMembersOnly>);
static_assert(!verl::ComputesLogProbs<int>);

static_assert(verl::Generates<GoodActor>);
static_assert(verl::Generates<ConstActor>);
static_assert(!verl::Generates<NoGenerate>);
static_assert(!verl::Generates<GenerateReturnsTensor>);
static_assert(!verl::Generates<GenerateMutatesPrompts>);
static_assert(!verl::Generates<ReferenceOnly>);

static_assert(verl::HasParameters<GoodActor>);
static_assert(verl::HasParameters<ConstActor>);
static_assert(!verl::HasParameters<NoParameters>);
static_assert(!verl::HasParameters<ParametersReturnInt>);
static_assert(!verl::HasParameters<DataMembersOnly>);

// The ladder: every actor is a reference model, not the converse.
static_assert(verl::ReferenceModel<GoodActor>);
static_assert(verl::ReferenceModel<ReferenceOnly>);
static_assert(verl::ReferenceModel<NoGenerate>);
static_assert(!verl::ReferenceModel<LogProbsReturnTensor>);

static_assert(verl::ActorModel<GoodActor>);
static_assert(verl::ActorModel<ConstActor>);
static_assert(!verl::ActorModel<ReferenceOnly>);
static_assert(!verl::ActorModel<NoGenerate>);
static_assert(!verl::ActorModel<LogProbsReturnTensor>);
static_assert(!verl::ActorModel<LogProbsWithoutOptions>);
static_assert(!verl::ActorModel<GenerateReturnsTensor>);
static_assert(!verl::ActorModel<GenerateMutatesPrompts>);
static_assert(!verl::ActorModel<NoParameters>);
static_assert(!verl::ActorModel<ParametersReturnInt>);
static_assert(!verl::ActorModel<DataMembersOnly>);
static_assert(!verl::ActorModel<const GoodActor>);

// The checkers pass on models (their failures are pinned in tests/fail/).
static_assert(verl::check_actor_model<GoodActor>());
static_assert(verl::check_actor_model<ConstActor>());
static_assert(verl::check_reference_model<ReferenceOnly>());
static_assert(verl::check_reference_model<GoodActor>());

// A class template constrained by the concept, as trainers are.
template <verl::ActorModel A>
struct Uses {};
template <class A>
concept Usable = requires { typename Uses<A>; };
static_assert(Usable<GoodActor>);
static_assert(!Usable<NoGenerate>);
