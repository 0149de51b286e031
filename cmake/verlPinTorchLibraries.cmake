# verl_pin_torch_libraries(<Torch_DIR>): points LibTorch's own library lookups at the files beside <Torch_DIR>.
#
# TorchConfig.cmake finds its libraries with find_library(... PATHS <prefix>/lib), and PATHS are searched after
# the system directories: with Debian's libtorch-dev installed as well, a PyPI LibTorch's headers were linked
# against Debian's libtorch.so 1.13 (seen on these machines). Presetting the cache variables it reads avoids the
# search. Used by cmake/VerlFindTorch.cmake and by the installed verlConfig.cmake.
function(verl_pin_torch_libraries torch_dir)
  get_filename_component(lib_dir "${torch_dir}/../../../lib" ABSOLUTE)
  foreach(pair IN ITEMS "TORCH_LIBRARY=torch" "c10_LIBRARY=c10" "C10_CUDA_LIBRARY=c10_cuda")
    string(REPLACE "=" ";" pair "${pair}")
    list(GET pair 0 var)
    list(GET pair 1 name)
    if(EXISTS "${lib_dir}/lib${name}.so" AND NOT ${var})
      set(${var} "${lib_dir}/lib${name}.so" CACHE FILEPATH "LibTorch's ${name} library")
    endif()
  endforeach()
endfunction()
