// Linked into every benchmark of a build configured with VERL_BENCH_RELEASE_FLAGS=OFF (scripts/test.sh, CI):
// such benchmarks compile without optimisation (-O0), for smoke runs only, so each says so when it starts.
#include <cstdio>

namespace {
const bool kNoted = [] {
  std::fputs("note: this benchmark was compiled for smoke runs (VERL_BENCH_RELEASE_FLAGS=OFF, -O0); "
             "do not record its figures: measure with a build configured without that option\n",
             stderr);
  return true;
}();
}  // namespace
