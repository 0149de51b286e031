#pragma once
//! \file
//! verl::ComputesValues and verl::CriticModel: the value model of PPO (GAE's baseline).

#include "verl/concepts/has_parameters.hpp"
#include "verl/core/model_io.hpp"

#include <ATen/core/Tensor.h>

#include <concepts>

namespace verl {

namespace detail {
//! `m.values(batch)` is a valid expression (whatever it returns).
template <class M>
concept has_values_member = requires(M& m, const TokenBatch& batch) { m.values(batch); };
}  // namespace detail

//! A model that estimates the value of each response token.
//!
//! Satisfied when, for `M& m`, `const verl::TokenBatch& batch`:
//!   1. `m.values(batch)` is valid and returns a type convertible to torch::Tensor.
//!
//! Laws (not checked by the compiler), with R = batch.response_length:
//!   - the tensor is (B,R) floating point, finite, on the device of batch.input_ids;
//!   - entry (b,j) is the value of the state before response token j (verl reads the value head at
//!     positions T-R-1 .. T-2, like log-probs); entries at padded response positions are 0;
//!   - deterministic under no-grad; when grad is enabled it carries the gradient to parameters().
//!
//! See also: verl::CriticModel, docs/concepts.md#computesvalues.
template <class M>
concept ComputesValues = requires(M& m, const TokenBatch& batch) {
  { m.values(batch) } -> std::convertible_to<at::Tensor>;
};

//! The critic of PPO: a trainable per-token value model.
//!
//! Satisfied when:
//!   1. ComputesValues<M>: `m.values(const TokenBatch&)` -> convertible to torch::Tensor, (B,R);
//!   2. HasParameters<M>: `m.parameters()` -> convertible to std::vector<torch::Tensor>.
//!
//! Laws: those of the pieces. Critic-free algorithms (GRPO, RLOO, REINFORCE++) never ask for one: an
//! AdvantageEstimator declares `needs_critic`.
//!
//! Models in this library: verl::models::Critic (verl/models/critic.hpp). See also: verl::ActorModel, verl::AdvantageEstimator,
//! verl::check_critic_model, docs/concepts.md#criticmodel.
template <class M>
concept CriticModel = ComputesValues<M> && HasParameters<M>;

//! Checks CriticModel<M> piece by piece, one static_assert per missing or mistyped member. Returns true.
template <class M>
consteval bool check_critic_model() {
  static_assert(detail::has_values_member<M>,
                "verl::CriticModel: the critic type has no member `values(const verl::TokenBatch&)`; add one "
                "returning the per-token values as a (B,R) torch::Tensor");
  static_assert(!detail::has_values_member<M> || ComputesValues<M>,
                "verl::CriticModel: the critic's `values(const verl::TokenBatch&)` returns a type not convertible "
                "to torch::Tensor; return the (B,R) values tensor");
  static_assert(detail::has_parameters_member<M>,
                "verl::CriticModel: the critic type has no member `parameters()`; add one returning its trainable "
                "tensors as std::vector<torch::Tensor> (torch::nn::Module::parameters() does)");
  static_assert(!detail::has_parameters_member<M> || HasParameters<M>,
                "verl::CriticModel: the critic's `parameters()` returns a type not convertible to "
                "std::vector<torch::Tensor>; return the trainable tensors as std::vector<torch::Tensor>");
  return true;  // reached only when every piece holds: the concept is their conjunction
}

}  // namespace verl
