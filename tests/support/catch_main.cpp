// Catch2's main(), compiled once and shared by every unit-test executable (with the precompiled header).
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>
