// Precompiled header for the unit-test executables: the heavy headers every test TU includes.
#pragma once
#include <catch2/catch.hpp>
#include <torch/types.h>
#include <boost/hana.hpp>
#include <range/v3/view.hpp>
