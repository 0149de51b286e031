#pragma once
//! \file
//! verl::Generates and verl::ActorModel: the policy being trained. The ladder is
//! ComputesLogProbs (= ReferenceModel) -> + Generates -> + HasParameters = ActorModel, so an HF-style
//! module, a Megatron-style sharded model or a user's own inference engine plugs in by providing
//! `log_probs` (the training forward), `generate` (the rollout) and `parameters` (what the optimizer owns).

#include "verl/concepts/has_parameters.hpp"
#include "verl/concepts/reference_model.hpp"
#include "verl/core/model_io.hpp"

#include <concepts>

namespace verl {

namespace detail {
//! `m.generate(prompts, params)` is a valid expression (whatever it returns).
template <class M>
concept has_generate_member = requires(M& m, const Prompts& prompts, const SamplingParams& params) {
  m.generate(prompts, params);
};
}  // namespace detail

//! A model that samples responses to prompts.
//!
//! Satisfied when, for `M& m`, `const verl::Prompts& prompts`, `const verl::SamplingParams& params`:
//!   1. `m.generate(prompts, params)` is valid and returns a type convertible to verl::Rollout.
//!
//! Laws (not checked by the compiler), with B = prompts.input_ids.size(0):
//!   - the rollout holds B * params.n rows, the n samples of prompt i in rows i*n .. i*n+n-1;
//!   - rollout.prompts equals prompts.input_ids row-repeated; rollout.input_ids = prompts ++ responses;
//!   - R = responses.size(1) <= params.max_tokens; a response ends at eos (unless params.ignore_eos) or
//!     at a stop token, which is included and masked 1; everything after it is padding, masked 0;
//!   - params.temperature == 0 is greedy; for a fixed params.seed the rollout is deterministic;
//!   - rollout.log_probs is set iff params.return_log_probs, and is <= 0 where response_mask is 1;
//!   - generation does not record autograd history and does not change the model's parameters.
//!
//! Models in this library: verl::models::Actor (verl/models/actor.hpp), through the rollout engine
//! (verl/rollout/engine.hpp).
//! See also: verl::ActorModel, docs/concepts.md#generates.
template <class M>
concept Generates = requires(M& m, const Prompts& prompts, const SamplingParams& params) {
  { m.generate(prompts, params) } -> std::convertible_to<Rollout>;
};

//! The policy of RL post-training: it scores responses, samples them, and is trained.
//!
//! Satisfied when:
//!   1. ComputesLogProbs<M>: `m.log_probs(const TokenBatch&, const LogProbOptions&)` -> LogProbOutput;
//!   2. Generates<M>: `m.generate(const Prompts&, const SamplingParams&)` -> Rollout;
//!   3. HasParameters<M>: `m.parameters()` -> convertible to std::vector<torch::Tensor>.
//!
//! Laws (not checked by the compiler): those of the three pieces, and consistency between them:
//!   - generate and log_probs use the same weights: right after an optimizer step on parameters(), both
//!     see the update (an engine with its own copy of the weights syncs them before generating);
//!   - with the same temperature, log_probs of a generated rollout match its sampler log-probs up to
//!     numerical noise (verl's rollout/actor log-prob mismatch metric measures the gap).
//!
//! Models in this library: verl::models::Actor (verl/models/actor.hpp). See also: verl::ReferenceModel, verl::CriticModel,
//! verl::check_actor_model, docs/concepts.md#actormodel.
template <class M>
concept ActorModel = ReferenceModel<M> && Generates<M> && HasParameters<M>;

//! Checks ActorModel<M> piece by piece: each missing or mistyped member stops compilation with one
//! static_assert naming it and the fix. Returns true; class templates call it in their bodies
//! (`static_assert(verl::check_actor_model<Actor>());`) so misuse reads as one line.
template <class M>
consteval bool check_actor_model() {
  static_assert(detail::has_log_probs_member<M>,
                "verl::ActorModel: the actor type has no member `log_probs(const verl::TokenBatch&, "
                "const verl::LogProbOptions&)`; add one returning verl::LogProbOutput ((B,R) log-probs)");
  static_assert(!detail::has_log_probs_member<M> || ComputesLogProbs<M>,
                "verl::ActorModel: the actor's `log_probs(const verl::TokenBatch&, const verl::LogProbOptions&)` "
                "returns a type not convertible to verl::LogProbOutput; return "
                "verl::LogProbOutput{log_probs /*(B,R)*/, entropy}");
  static_assert(detail::has_generate_member<M>,
                "verl::ActorModel: the actor type has no member `generate(const verl::Prompts&, "
                "const verl::SamplingParams&)`; add one returning verl::Rollout");
  static_assert(!detail::has_generate_member<M> || Generates<M>,
                "verl::ActorModel: the actor's `generate(const verl::Prompts&, const verl::SamplingParams&)` "
                "returns a type not convertible to verl::Rollout; return verl::Rollout");
  static_assert(detail::has_parameters_member<M>,
                "verl::ActorModel: the actor type has no member `parameters()`; add one returning its trainable "
                "tensors as std::vector<torch::Tensor> (torch::nn::Module::parameters() does)");
  static_assert(!detail::has_parameters_member<M> || HasParameters<M>,
                "verl::ActorModel: the actor's `parameters()` returns a type not convertible to "
                "std::vector<torch::Tensor>; return the trainable tensors as std::vector<torch::Tensor>");
  return true;  // reached only when every piece holds: the concept is their conjunction
}

}  // namespace verl
