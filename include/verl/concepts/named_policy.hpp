#pragma once
//! \file
//! verl::NamedPolicy: the rung shared by the algorithm policy concepts (AdvantageEstimator, PolicyLoss):
//! a compile-time name used in configs, logs and error messages.

#include <concepts>
#include <cstddef>
#include <string_view>
#include <type_traits>

namespace verl {

//! A policy type with a compile-time name.
//!
//! Satisfied when:
//!   1. `P::name` is a constant expression convertible to `std::string_view`, e.g.
//!      `static constexpr std::string_view name = "grpo";`.
//!
//! Laws: the name is non-empty and unique among the policies of one kind; it is the spelling verl's
//! config uses for the same policy where one exists ("gae", "grpo", "vanilla", ...).
//!
//! See also: verl::AdvantageEstimator, verl::PolicyLoss, docs/concepts.md#namedpolicy.
template <class P>
concept NamedPolicy = requires {
  { P::name } -> std::convertible_to<std::string_view>;
  // Only a constant expression can be a template argument: rejects a non-constexpr static member.
  typename std::integral_constant<std::size_t, std::string_view{P::name}.size()>;
};

}  // namespace verl
