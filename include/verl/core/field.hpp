#pragma once
//! \file
//! Field tags: the compile-time keys of verl::Batch. A field tag is an empty type naming one tensor of the
//! RL dataflow and the layout of its leading dimensions. The standard tags are in verl/core/fields.hpp;
//! users add their own in one line:
//!
//!     struct my_score : verl::field<"my_score", verl::FieldLayout::sequence> {};   // (B,)
//!
//! Tags compare by type, not by name: two tags with the same name are different fields.

#include <algorithm>
#include <concepts>
#include <cstddef>
#include <string_view>
#include <type_traits>

namespace verl {

//! A string usable as a template argument (C++20 class-type NTTP).
template <std::size_t N>
struct fixed_string {
  char chars[N]{};
  constexpr fixed_string(const char (&text)[N]) { std::copy_n(text, N, chars); }  // NOLINT: implicit by design
  [[nodiscard]] constexpr std::string_view view() const { return {chars, N - 1}; }
};

//! What a field's leading dimensions mean.
enum class FieldLayout {
  token,     //!< (B, T, ...): one entry per token position of a padded sequence
  sequence,  //!< (B, ...): one entry per item
};

//! Base of every field tag. `Name` is used in error messages and when a batch is printed or saved.
template <fixed_string Name, FieldLayout Layout = FieldLayout::token>
struct field {
  using verl_field_tag = void;  //!< marks the type as a field tag (see FieldTag)
  static constexpr std::string_view name = Name.view();
  static constexpr FieldLayout layout = Layout;
};

//! A type usable as a key of verl::Batch: an empty class derived from verl::field<Name, Layout>.
template <class F>
concept FieldTag = std::is_empty_v<F> && requires {
  typename F::verl_field_tag;
  { F::name } -> std::convertible_to<std::string_view>;
  { F::layout } -> std::convertible_to<FieldLayout>;
};

}  // namespace verl
