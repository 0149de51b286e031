// The machine's roofline as LibTorch sees it, measured in the same binary setting as the other benchmarks:
// fp32 GEMM throughput (which BLAS LibTorch uses decides it: PyPI's wheel ships MKL; Debian's libtorch 1.13
// without libopenblas0-pthread falls back to reference BLAS, ~50x slower) and memory bandwidth for copies.
// docs/performance.md compares every data-movement benchmark with these figures.
//
//   ./build/bench/verl_bench_roofline
#include <benchmark/benchmark.h>
#include <torch/torch.h>

namespace {

void gemm_fp32(benchmark::State& state) {
  const auto n = state.range(0);
  torch::manual_seed(0);
  const auto a = torch::randn({n, n});  // (n,n)
  const auto b = torch::randn({n, n});  // (n,n)
  auto c = torch::empty({n, n});        // (n,n)
  for (auto _ : state) {
    torch::mm_out(c, a, b);
    benchmark::DoNotOptimize(c.data_ptr());
  }
  state.counters["FLOP/s"] = benchmark::Counter(2.0 * static_cast<double>(n * n * n),
                                                benchmark::Counter::kIsIterationInvariantRate);
}

// A copy into an existing buffer: reads and writes `bytes` each, no allocation (page faults excluded).
void copy_bandwidth(benchmark::State& state) {
  const auto elements = state.range(0) / 4;
  const auto src = torch::randn({elements});  // (N,)
  auto dst = torch::empty({elements});        // (N,)
  for (auto _ : state) {
    dst.copy_(src);
    benchmark::DoNotOptimize(dst.data_ptr());
  }
  state.SetBytesProcessed(state.iterations() * 2 * state.range(0));
}

// The same copy into a fresh tensor each time (what clone/index_select/cat do): adds allocation and the
// first-touch page faults of a new buffer.
void clone_bandwidth(benchmark::State& state) {
  const auto elements = state.range(0) / 4;
  const auto src = torch::randn({elements});  // (N,)
  for (auto _ : state) benchmark::DoNotOptimize(src.clone().data_ptr());
  state.SetBytesProcessed(state.iterations() * 2 * state.range(0));
}

}  // namespace

BENCHMARK(gemm_fp32)->Arg(1024)->Arg(2048)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(copy_bandwidth)->Arg(256 << 20)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(clone_bandwidth)->Arg(256 << 20)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(gemm_fp32)->Name("gemm_fp32_smoke")->Arg(64);
BENCHMARK(copy_bandwidth)->Name("copy_bandwidth_smoke")->Arg(1 << 16);

BENCHMARK_MAIN();
