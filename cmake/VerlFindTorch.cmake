# Finds LibTorch without the user passing paths, and decides VERL_WITH_CUDA.
#
# Search order: an explicit Torch_DIR / CMAKE_PREFIX_PATH; the virtual environment made by
# scripts/setup.sh ($ENV{VERL_VENV}, else <repo>/.venv), whose PyPI torch wheel carries LibTorch; finally the
# system (Debian's libtorch-dev, the documented fallback).
#
# Outputs: VERL_TORCH_TARGETS (what verl::verl links), VERL_WITH_CUDA (option),
#          VERL_TORCH_VERSION_PINNED (from scripts/dependencies.env).
include_guard(GLOBAL)
include("${CMAKE_CURRENT_LIST_DIR}/verlPinTorchLibraries.cmake")

file(STRINGS "${CMAKE_CURRENT_LIST_DIR}/../scripts/dependencies.env" _verl_pin REGEX "^VERL_TORCH_VERSION=")
string(REGEX REPLACE "^VERL_TORCH_VERSION=" "" VERL_TORCH_VERSION_PINNED "${_verl_pin}")

if(NOT Torch_DIR AND NOT DEFINED ENV{Torch_DIR})
  if(DEFINED ENV{VERL_VENV})
    set(_verl_venv "$ENV{VERL_VENV}")
  else()
    set(_verl_venv "${CMAKE_CURRENT_LIST_DIR}/../.venv")
  endif()
  file(GLOB _verl_torch_dirs "${_verl_venv}/lib/python3*/site-packages/torch/share/cmake/Torch")
  if(_verl_torch_dirs)
    list(GET _verl_torch_dirs 0 _verl_torch_dir)
    get_filename_component(_verl_torch_dir "${_verl_torch_dir}" ABSOLUTE)
    set(Torch_DIR "${_verl_torch_dir}" CACHE PATH "LibTorch's CMake package directory")
    verl_pin_torch_libraries("${_verl_torch_dir}")
  endif()
endif()

# A CUDA-enabled LibTorch (PyPI's Linux wheels are) needs the CUDA toolkit to configure; these machines have it.
find_package(Torch REQUIRED)
message(STATUS "verl: LibTorch ${Torch_VERSION} from ${Torch_DIR}")
if(Torch_VERSION AND NOT Torch_VERSION VERSION_EQUAL VERL_TORCH_VERSION_PINNED)
  message(WARNING "verl: LibTorch ${Torch_VERSION} found, but scripts/dependencies.env pins "
                  "${VERL_TORCH_VERSION_PINNED}; results may differ from the tested configuration.")
endif()

if(TARGET torch_cuda)
  set(_verl_torch_has_cuda ON)
else()
  set(_verl_torch_has_cuda OFF)
endif()
option(VERL_WITH_CUDA "Build verl-cpp's CUDA/NCCL code paths (default: whether LibTorch has CUDA)"
       ${_verl_torch_has_cuda})
if(VERL_WITH_CUDA AND NOT _verl_torch_has_cuda)
  message(FATAL_ERROR "verl: VERL_WITH_CUDA=ON but the LibTorch at ${Torch_DIR} was built without CUDA")
endif()

# verl::verl links LibTorch as find_package(Torch) documents it; with a CUDA build that includes libtorch_cuda,
# which loads fine on a machine without a GPU (torch::cuda::is_available() is then false).
set(VERL_TORCH_TARGETS ${TORCH_LIBRARIES})
message(STATUS "verl: VERL_WITH_CUDA=${VERL_WITH_CUDA}")
