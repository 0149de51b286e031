// The translation unit that makes CMake build the precompiled <torch/torch.h> of the examples and benchmarks
// (cmake/VerlTesting.cmake, verl_use_torch_pch). Nothing else lives here.
#include <torch/torch.h>
