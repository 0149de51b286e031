// The translation unit that makes CMake build verl_test_main's precompiled header (catch_main.cpp must
// skip it, and a target whose every source skips its PCH gets none). Unit-test executables reuse it.
#include "catch_torch.hpp"
