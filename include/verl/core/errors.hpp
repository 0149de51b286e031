#pragma once
//! \file
//! verl-cpp's exception types. Every message names the entity, what was wrong and what was expected, e.g.
//! "verl::Batch::with<values>: field `values` has leading dimension 3, expected the batch size 4".

#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace verl {

//! Base of every exception verl-cpp throws.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

//! A tensor's shape, dtype or device does not match what an operation requires.
class ShapeError : public Error {
 public:
  using Error::Error;
};

//! A configuration value or argument is out of its allowed range or inconsistent with another.
class ConfigError : public Error {
 public:
  using Error::Error;
};

//! Input data (a file, a dataset line, a checkpoint) is malformed.
class InputError : public Error {
 public:
  using Error::Error;
};

namespace detail {

//! Concatenates its arguments with operator<< into one message.
template <class... Parts>
[[nodiscard]] std::string concat_message(Parts&&... parts) {
  std::ostringstream out;
  (out << ... << std::forward<Parts>(parts));
  return std::move(out).str();
}

//! Throws `E` with the concatenation of `parts` when `condition` is false.
template <class E = Error, class... Parts>
void check(bool condition, Parts&&... parts) {
  if (!condition) throw E(concat_message(std::forward<Parts>(parts)...));
}

}  // namespace detail
}  // namespace verl
