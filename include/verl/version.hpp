#pragma once
//! \file
//! verl-cpp's version, kept equal to project(VERSION) in CMakeLists.txt (tests/unit/core/test_version.cpp checks).

#define VERL_VERSION_MAJOR 0
#define VERL_VERSION_MINOR 1
#define VERL_VERSION_PATCH 0

namespace verl {
inline constexpr int version_major = VERL_VERSION_MAJOR;
inline constexpr int version_minor = VERL_VERSION_MINOR;
inline constexpr int version_patch = VERL_VERSION_PATCH;
inline constexpr const char* version_string = "0.1.0";
}  // namespace verl
