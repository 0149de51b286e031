// Precompiled header for the unit-test executables, and the one header a test includes for Catch2:
// `#include "catch_torch.hpp"`.
#pragma once
#include "catch_torch.hpp"

#include <boost/hana.hpp>
#include <range/v3/view.hpp>
