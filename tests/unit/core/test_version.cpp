// include/verl/version.hpp must agree with project(VERSION) in CMakeLists.txt, which the package's version
// file (verlConfigVersion.cmake) is made from.
#include "verl/version.hpp"

#include "catch_torch.hpp"

#include <string>

TEST_CASE("version.hpp matches the CMake project version", "[core][version]") {
  CHECK(std::string(verl::version_string) == VERL_PROJECT_VERSION);
  CHECK(std::to_string(verl::version_major) + "." + std::to_string(verl::version_minor) + "." +
            std::to_string(verl::version_patch) ==
        VERL_PROJECT_VERSION);
}
