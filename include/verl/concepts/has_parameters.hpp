#pragma once
//! \file
//! verl::HasParameters: the "trainable" rung shared by ActorModel and CriticModel.

#include <ATen/core/Tensor.h>

#include <concepts>
#include <vector>

namespace verl {

namespace detail {
//! `m.parameters()` is a valid expression (whatever it returns).
template <class M>
concept has_parameters_member = requires(M& m) { m.parameters(); };
}  // namespace detail

//! A model with trainable tensors an optimizer can own.
//!
//! Satisfied when, for `M& m`:
//!   1. `m.parameters()` is valid and returns a type convertible to `std::vector<torch::Tensor>`
//!      (torch::nn::Module::parameters() does).
//!
//! Laws (not checked by the compiler):
//!   - the tensors share storage with the model: updating them in place (an optimizer step) changes what
//!     the model computes; two calls return the same tensors in the same order;
//!   - every returned tensor is a leaf with requires_grad() == true (frozen tensors are left out).
//!
//! Models in this library: verl::models::Actor, Critic, RewardScorer; any torch::nn::Module subclass satisfies it.
//! See also: verl::ActorModel, verl::CriticModel, docs/concepts.md#hasparameters.
template <class M>
concept HasParameters = requires(M& m) {
  { m.parameters() } -> std::convertible_to<std::vector<at::Tensor>>;
};

}  // namespace verl
