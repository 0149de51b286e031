#pragma once
//! \file
//! verl::ComputesLogProbs and verl::ReferenceModel: a model that scores responses with per-token
//! log-probs. The bottom rung of the actor ladder (ActorModel refines ReferenceModel).

#include "verl/core/model_io.hpp"

#include <concepts>

namespace verl {

namespace detail {
//! `m.log_probs(batch, options)` is a valid expression (whatever it returns).
template <class M>
concept has_log_probs_member = requires(M& m, const TokenBatch& batch, const LogProbOptions& options) {
  m.log_probs(batch, options);
};
}  // namespace detail

//! A model that computes the per-token log-probs of a batch's responses under a sampling temperature.
//!
//! Satisfied when, for `M& m`, `const verl::TokenBatch& batch`, `const verl::LogProbOptions& options`:
//!   1. `m.log_probs(batch, options)` is valid and returns a type convertible to verl::LogProbOutput.
//!
//! Laws (not checked by the compiler), with R = batch.response_length:
//!   - `log_probs` is (B,R) floating point, on the device of batch.input_ids, and every entry is <= 0;
//!   - entry (b,j) is log p(input_ids[b, T-R+j] | input_ids[b, :T-R+j]) with the logits divided by
//!     options.temperature; entries at padded response positions (attention_mask 0) are 0;
//!   - `entropy` is set iff options.compute_entropy, (B,R), >= 0, and 0 at padded positions;
//!   - left padding does not change a sequence's log-probs (position_ids and the mask are honoured);
//!   - under no-grad (eval mode, no dropout) the result is a deterministic function of the batch;
//!   - when grad is enabled, `log_probs` carries the gradient to the model's parameters.
//!
//! Models in this library: verl::models::Actor, verl::models::Reference (verl/models/actor.hpp);
//! tests/static/test_actor_model.cpp shows minimal ones.
//! See also: verl::ReferenceModel, verl::ActorModel, docs/concepts.md#computeslogprobs.
template <class M>
concept ComputesLogProbs = requires(M& m, const TokenBatch& batch, const LogProbOptions& options) {
  { m.log_probs(batch, options) } -> std::convertible_to<LogProbOutput>;
};

//! The reference policy of the KL penalty/loss: a frozen model that computes log-probs.
//!
//! Satisfied when:
//!   1. ComputesLogProbs<M>.
//!
//! Laws (not checked by the compiler): the laws of ComputesLogProbs; frozen: its log-probs for a batch do
//! not change during training (no optimizer owns its parameters; trainers call it under no-grad).
//! Every ActorModel is a ReferenceModel: a frozen copy of the initial actor is the usual reference.
//!
//! Models in this library: verl::models::Reference, verl::models::Actor (verl/models/actor.hpp). See also: verl::ActorModel, docs/concepts.md#referencemodel.
template <class M>
concept ReferenceModel = ComputesLogProbs<M>;

//! Checks ReferenceModel<M> piece by piece: a failing piece stops compilation with one static_assert
//! naming the missing member and the fix. Returns true (use: `static_assert(verl::check_reference_model<M>());`).
template <class M>
consteval bool check_reference_model() {
  static_assert(detail::has_log_probs_member<M>,
                "verl::ReferenceModel: the reference type has no member `log_probs(const verl::TokenBatch&, "
                "const verl::LogProbOptions&)`; add one returning verl::LogProbOutput ((B,R) log-probs)");
  static_assert(!detail::has_log_probs_member<M> || ComputesLogProbs<M>,
                "verl::ReferenceModel: the reference's `log_probs(const verl::TokenBatch&, const "
                "verl::LogProbOptions&)` returns a type not convertible to verl::LogProbOutput; return "
                "verl::LogProbOutput{log_probs /*(B,R)*/, entropy}");
  return true;  // reached only when every piece holds: the concept is their conjunction
}

}  // namespace verl
