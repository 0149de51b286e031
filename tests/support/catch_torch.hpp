// Catch2 together with LibTorch. c10/util/Logging.h defines a glog-style CHECK(cond) macro that aborts;
// included after Catch2 it silently replaces Catch's CHECK. So LibTorch comes first, its CHECK is removed,
// and Catch2 defines its own. Unit tests include this header instead of <catch2/catch.hpp>.
#pragma once
#include <c10/util/Logging.h>  // the header that defines (and first undefines) CHECK
#include <torch/types.h>
#undef CHECK
#include <catch2/catch.hpp>
