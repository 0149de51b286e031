// error_of(f): runs `f` and returns the message of the exception of type E it throws ("" if none), for
// CHECK_THAT(error_of(...), Catch::Contains(...)) on verl's error messages.
#pragma once
#include "verl/core/errors.hpp"

#include <string>
#include <utility>

namespace verl::test {

template <class E = verl::ConfigError, class F>
std::string error_of(F&& f) {
  try {
    std::forward<F>(f)();
  } catch (const E& e) {
    return e.what();
  }
  return "";
}

}  // namespace verl::test
