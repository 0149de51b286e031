# Functions that register verl-cpp's tests, examples and benchmarks with CTest.
#
# Test tiers (see docs/architecture.md):
#   static  tests/static/*.cpp   compiling is passing: static_asserts over concepts and batch types
#   fail    tests/fail/*.cpp     must NOT compile; the diagnostic must match the regex on the file's first
#                                line (`// expect: <regex>`); the same file with -DVERL_FAIL_TWIN=1 (its
#                                positive twin) must compile
#   unit    tests/unit/<area>/   Catch2 executables, one per area, sharing one precompiled header
#
# static and fail tests run the compiler directly with -fsyntax-only (not through the build tool), so CTest
# can run them in parallel. Their flags come from the response file written below, which holds the include
# directories and definitions that a consumer of verl::verl compiles with.

include_guard(GLOBAL)

if(VERL_BUILD_TESTS)
  find_package(Catch2 2.13 REQUIRED)
  list(APPEND CMAKE_MODULE_PATH "${Catch2_DIR}")  # Catch2 v2 ships Catch.cmake beside its package file
  include(Catch)
endif()

set(VERL_SYNTAX_FLAGS_FILE "${PROJECT_BINARY_DIR}/verl_syntax_flags.rsp")

# Tests, examples and the parity tools compile with -O2 instead of Release's -O3; benchmarks keep -O3. Their
# translation units instantiate whole trainers and the rollout engine, and GCC's -O3 inlining is most of
# their cost: examples/05_sft.cpp takes 77 s of CPU at -O3 and 48 s at -O2 on the CI machine (`-ftime-report`:
# 78% of it in "opt and generate"). Without -ffast-math both levels compute the same floating-point results,
# so the bit-exact tests hold either way. The option follows CMAKE_CXX_FLAGS_RELEASE on the command line, so
# it wins. verl_compile_for_tests(<target>) applies it.
set(VERL_TEST_OPTIMIZATION "$<$<AND:$<CONFIG:Release>,$<CXX_COMPILER_ID:GNU,Clang>>:-O2>")
function(verl_compile_for_tests target)
  target_compile_options(${target} PRIVATE ${VERL_TEST_OPTIMIZATION})
endfunction()

function(_verl_write_syntax_flags)
  if(TARGET verl_syntax_flags_probe)
    return()
  endif()
  # A target that consumes verl::verl exactly as a user would; its transitive usage requirements are the
  # flags the syntax-only compilations need.
  add_library(verl_syntax_flags_probe OBJECT EXCLUDE_FROM_ALL "${PROJECT_SOURCE_DIR}/tests/support/empty.cpp")
  target_link_libraries(verl_syntax_flags_probe PRIVATE verl::verl)
  # /usr/include must not be passed with -isystem: it would break libstdc++'s #include_next.
  set(_inc "$<REMOVE_DUPLICATES:$<FILTER:$<TARGET_PROPERTY:verl_syntax_flags_probe,INCLUDE_DIRECTORIES>,EXCLUDE,^/usr/include/?$>>")
  set(_def "$<TARGET_PROPERTY:verl_syntax_flags_probe,COMPILE_DEFINITIONS>")
  set(_opt "$<TARGET_PROPERTY:verl_syntax_flags_probe,COMPILE_OPTIONS>")
  file(GENERATE OUTPUT "${VERL_SYNTAX_FLAGS_FILE}" CONTENT
"-std=c++20
$<$<BOOL:${_inc}>:-isystem\"$<JOIN:${_inc},\"\n-isystem\">\"\n>$<$<BOOL:${_def}>:-D$<JOIN:${_def},\n-D>\n>$<$<BOOL:${_opt}>:$<JOIN:${_opt},\n>\n>")
endfunction()

# verl_add_static_test(<file>): a CTest entry `static.<name>` that passes when <file> compiles.
function(verl_add_static_test file)
  _verl_write_syntax_flags()
  get_filename_component(name "${file}" NAME_WE)
  add_test(NAME "static.${name}"
           COMMAND "${CMAKE_CXX_COMPILER}" "@${VERL_SYNTAX_FLAGS_FILE}" -I "${PROJECT_SOURCE_DIR}/include" -I "${PROJECT_SOURCE_DIR}/tests/support"
                   -fsyntax-only "${file}")
  set_tests_properties("static.${name}" PROPERTIES LABELS "static")
endfunction()

# verl_add_fail_test(<file>): `fail.<name>` passes when <file> fails to compile with a diagnostic matching
# the regex on its first line; `fail.<name>.twin` passes when it compiles with -DVERL_FAIL_TWIN=1.
function(verl_add_fail_test file)
  _verl_write_syntax_flags()
  get_filename_component(name "${file}" NAME_WE)
  file(STRINGS "${file}" first_line LIMIT_COUNT 1)
  if(NOT first_line MATCHES "^// expect: (.+)$")
    message(FATAL_ERROR "${file}: the first line must be `// expect: <regex of the diagnostic>`")
  endif()
  set(regex "${CMAKE_MATCH_1}")
  set(compile "${CMAKE_CXX_COMPILER}" "@${VERL_SYNTAX_FLAGS_FILE}" -I "${PROJECT_SOURCE_DIR}/include" -I "${PROJECT_SOURCE_DIR}/tests/support"
              -fsyntax-only -fdiagnostics-color=never)
  add_test(NAME "fail.${name}" COMMAND ${compile} "${file}")
  # Passing on the regex alone would accept a file that compiles but prints a matching warning.
  set_tests_properties("fail.${name}" PROPERTIES LABELS "fail" WILL_FAIL FALSE
                       PASS_REGULAR_EXPRESSION "${regex}")
  add_test(NAME "fail.${name}.twin" COMMAND ${compile} -DVERL_FAIL_TWIN=1 "${file}")
  set_tests_properties("fail.${name}.twin" PROPERTIES LABELS "fail")
endfunction()

# The precompiled header shared by every unit-test executable lives on the Catch2 main library.
function(_verl_make_test_main)
  if(TARGET verl_test_main)
    return()
  endif()
  add_library(verl_test_main STATIC "${PROJECT_SOURCE_DIR}/tests/support/catch_main.cpp"
                                    "${PROJECT_SOURCE_DIR}/tests/support/pch_anchor.cpp")
  target_link_libraries(verl_test_main PUBLIC verl::verl Catch2::Catch2)
  target_compile_options(verl_test_main PUBLIC ${VERL_TEST_OPTIMIZATION})  # the PCH and every unit test
  # Where tests/support/golden.hpp finds the committed golden vectors.
  target_compile_definitions(verl_test_main PUBLIC VERL_GOLDEN_DIR="${PROJECT_SOURCE_DIR}/tests/golden"
                                                   VERL_PROJECT_VERSION="${PROJECT_VERSION}")
  target_precompile_headers(verl_test_main PRIVATE "${PROJECT_SOURCE_DIR}/tests/support/test_pch.hpp")
  # The PCH already holds catch.hpp without CATCH_CONFIG_MAIN, which would hide Catch2's implementation.
  set_source_files_properties("${PROJECT_SOURCE_DIR}/tests/support/catch_main.cpp"
                              PROPERTIES SKIP_PRECOMPILE_HEADERS ON)
endfunction()

# Unity builds of the unit tests. The test files of one area use the same library code (the models, the trainers,
# the rollout engine: header-only templates and inline functions), and every translation unit that uses it parses,
# instantiates and optimises it again. Compiled as one translation unit, a group does that once: at -O2,
# tests/unit/dist/test_data_parallel.cpp (80 CPU-s) and test_fully_sharded_trainers.cpp (95 CPU-s) take 94 CPU-s
# together. A test file keeps everything in a namespace named after it, so
# that its helpers and using-directives do not meet another file's. VERL_UNITY_TESTS=OFF compiles every file alone
# (a quicker rebuild while editing one test file).
option(VERL_UNITY_TESTS "Compile groups of unit-test files as one translation unit (less compile CPU)" ON)

# verl_unity_group(<target> <group> <files...>): <files> of <target> are compiled as one translation unit (when
# VERL_UNITY_TESTS is on); the target's other files are compiled one by one.
function(verl_unity_group target group)
  if(NOT VERL_UNITY_TESTS)
    return()
  endif()
  set_target_properties(${target} PROPERTIES UNITY_BUILD ON UNITY_BUILD_MODE GROUP)
  set_source_files_properties(${ARGN} PROPERTIES UNITY_GROUP "${group}")
endfunction()

# verl_add_unit_tests(<target> LABELS <labels...> SOURCES <files...> [PROPERTIES <ctest properties...>]):
# one Catch2 executable; each TEST_CASE becomes a CTest entry carrying <labels> (and the extra properties,
# e.g. FIXTURES_REQUIRED for parity tests).
function(verl_add_unit_tests target)
  cmake_parse_arguments(ARG "" "" "LABELS;SOURCES;PROPERTIES" ${ARGN})
  _verl_make_test_main()
  add_executable(${target} ${ARG_SOURCES})
  target_link_libraries(${target} PRIVATE verl_test_main)
  target_include_directories(${target} PRIVATE "${PROJECT_SOURCE_DIR}/tests/support")
  target_precompile_headers(${target} REUSE_FROM verl_test_main)
  set(_props "")
  if(ARG_PROPERTIES)
    set(_props PROPERTIES ${ARG_PROPERTIES})
  endif()
  # -w NoTests: a CTest entry whose name no longer selects its test case (a ';' in a TEST_CASE name splits it
  # into a list) fails instead of passing with "No tests ran". Keep ';' out of test names.
  catch_discover_tests(${target} TEST_PREFIX "${target}." TEST_LIST ${target}_TESTS EXTRA_ARGS -w NoTests ${_props})
  # Labels are set by a CTest include file run after the discovered tests are defined: passed through
  # catch_discover_tests' PROPERTIES, a list of labels is split on ';' and only the first one sticks.
  set(_labels_file "${CMAKE_CURRENT_BINARY_DIR}/${target}_labels.cmake")
  file(WRITE "${_labels_file}"
       "if(DEFINED ${target}_TESTS)\n"
       "  set_tests_properties(\${${target}_TESTS} PROPERTIES LABELS \"${ARG_LABELS}\")\n"
       "endif()\n")
  set_property(DIRECTORY APPEND PROPERTY TEST_INCLUDE_FILES "${_labels_file}")
endfunction()

# VERL_TEST_PYTHON: the venv's Python (scripts/setup.sh installs the parity tests' reference packages there),
# used by parity fixtures, comparison scripts and the reverse checks. Empty when there is no venv.
if(DEFINED ENV{VERL_VENV})
  set(_verl_test_venv "$ENV{VERL_VENV}")
else()
  set(_verl_test_venv "${PROJECT_SOURCE_DIR}/.venv")
endif()
if(EXISTS "${_verl_test_venv}/bin/python")
  set(VERL_TEST_PYTHON "${_verl_test_venv}/bin/python" CACHE FILEPATH "Python with the parity tests' packages")
else()
  set(VERL_TEST_PYTHON "" CACHE FILEPATH "Python with the parity tests' packages")
endif()

# verl_use_torch_pch(<target> [BENCHMARK]): <target> reuses a precompiled <torch/torch.h> (LibTorch's whole C++
# frontend, which user programs include). The examples and benchmarks include it; parsing it costs ~20 s per
# translation unit on the CI machine, once here. Two of them: one for the examples (compiled like the tests,
# see VERL_TEST_OPTIMIZATION) and one for the benchmarks (Release's flags), since GCC uses a PCH only under the
# flags it was built with. Targets must not add definitions or options that change it.
function(verl_use_torch_pch target)
  cmake_parse_arguments(ARG "BENCHMARK;SMOKE" "" "" ${ARGN})
  if(ARG_BENCHMARK)
    set(pch verl_torch_pch_bench)
  elseif(ARG_SMOKE)
    set(pch verl_torch_pch_smoke)
  else()
    set(pch verl_torch_pch)
  endif()
  if(NOT TARGET ${pch})
    add_library(${pch} STATIC "${PROJECT_SOURCE_DIR}/cmake/pch/torch_frontend_anchor.cpp")
    target_link_libraries(${pch} PUBLIC verl::verl)
    target_precompile_headers(${pch} PRIVATE <torch/torch.h>)
    if(ARG_SMOKE)
      # Programs that are only smoke-run (benchmarks in CI): no optimisation, about half the compile CPU.
      target_compile_options(${pch} PUBLIC "$<$<AND:$<CONFIG:Release>,$<CXX_COMPILER_ID:GNU,Clang>>:-O0>")
    elseif(NOT ARG_BENCHMARK)
      target_compile_options(${pch} PUBLIC ${VERL_TEST_OPTIMIZATION})
    endif()
    # GCC silently ignores a PCH built with other flags; say so instead.
    target_compile_options(${pch} PUBLIC $<$<CXX_COMPILER_ID:GNU>:-Winvalid-pch>)
  endif()
  target_link_libraries(${target} PRIVATE ${pch})
  target_precompile_headers(${target} REUSE_FROM ${pch})
endfunction()

# verl_add_example(<name> REGEX <golden regex> [ARGS <arguments...>]): builds examples/<name>.cpp and runs it in
# CTest (label `example`) with <arguments>; the output must match the golden regex.
function(verl_add_example name)
  cmake_parse_arguments(ARG "" "REGEX" "ARGS" ${ARGN})
  set(target "verl_example_${name}")
  add_executable(${target} "${name}.cpp")
  target_link_libraries(${target} PRIVATE verl::verl)
  verl_use_torch_pch(${target})
  add_test(NAME "example.${name}" COMMAND ${target} ${ARG_ARGS})
  # One intra-op thread: CTest runs tests side by side (--parallel), and two OpenMP threads sharing a core with
  # another test spin at every barrier (06_ppo_critic: 50 s instead of 9 s on 2 cores).
  set_tests_properties("example.${name}" PROPERTIES LABELS "example" PASS_REGULAR_EXPRESSION "${ARG_REGEX}"
                                                    ENVIRONMENT "OMP_NUM_THREADS=1")
endfunction()
