// Benchmarks of verl/core/packing.hpp (padded <-> packed token layouts) and verl/core/partition.hpp (balanced
// partitions by sequence length).
//
// Bytes processed (SetBytesProcessed, shown as bytes_per_second) count the minimum memory traffic of each
// operation, to compare with the machine's memory-bandwidth roofline:
//   make_packed_layout: read the (B,T) mask + write the (total,) int64 indices
//   unpad:              read total gathered elements + the (total,) int64 indices + write total elements
//   pad:                write the (B,T) output + read total elements + the (total,) int64 indices
// The *_out variants write into a preallocated output (no first-touch page faults of a fresh allocation).
// Tensor benchmarks use real time (ATen is multi-threaded).
// Partition benchmarks report the resulting spread (max - min of the partition sums) as counters, next to
// verl's Karmarkar-Karp alone (kk_spread) and verl's greedy_partition (greedy_spread).
//
// Besides the benchmarks, `--partition-cases` reads cases from stdin, one per line: `k equal_size n s_0 ...
// s_{n-1}`, and prints one JSON object per line with the spreads and partitions of
// get_seqlen_balanced_partitions, karmarkar_karp_partitions and greedy_partitions (used by
// bench/compare_partition_vs_verl.py).
#include "verl/core/packing.hpp"
#include "verl/core/partition.hpp"

#include <benchmark/benchmark.h>
#include <torch/cuda.h>
#include <torch/types.h>

#include <chrono>
#include <cstdint>
#include <cstring>
#include <iostream>
#include <numeric>
#include <random>
#include <sstream>
#include <string>
#include <vector>

namespace {

// (B,T) int64 attention mask: each row has a random length in [0,T] (mean T/2) placed at a random offset,
// so rows mix left padding, right padding and both.
torch::Tensor make_mask(int64_t B, int64_t T, uint64_t seed = 0) {
  std::mt19937_64 rng(seed);
  auto mask = torch::zeros({B, T}, torch::kLong);                                   // (B,T)
  auto* m = mask.data_ptr<int64_t>();
  for (int64_t b = 0; b < B; ++b) {
    const auto len = std::uniform_int_distribution<int64_t>(0, T)(rng);
    const auto left = std::uniform_int_distribution<int64_t>(0, T - len)(rng);
    std::fill(m + b * T + left, m + b * T + left + len, int64_t{1});
  }
  return mask;
}

void sync(const torch::Device& device) {
  if (device.is_cuda()) torch::cuda::synchronize();
}

void BM_make_packed_layout(benchmark::State& state, torch::Device device) {
  const auto B = state.range(0);
  const auto T = state.range(1);
  const auto mask = make_mask(B, T).to(device);                                      // (B,T) int64
  int64_t total = 0;
  for (auto _ : state) {
    auto layout = verl::make_packed_layout(mask);
    benchmark::DoNotOptimize(layout.indices.data_ptr());
    total = layout.total_tokens();
    sync(device);
  }
  state.SetBytesProcessed(state.iterations() * (B * T * 8 + total * 8));
  state.counters["fill"] = static_cast<double>(total) / static_cast<double>(B * T);
}

void BM_unpad(benchmark::State& state, torch::ScalarType dtype, torch::Device device) {
  const auto B = state.range(0);
  const auto T = state.range(1);
  const auto layout = verl::make_packed_layout(make_mask(B, T).to(device));
  const auto x = torch::ones({B, T}, torch::TensorOptions().dtype(dtype).device(device));   // (B,T)
  const auto total = layout.total_tokens();
  for (auto _ : state) {
    auto packed = verl::unpad(x, layout);                                            // (total,)
    benchmark::DoNotOptimize(packed.data_ptr());
    sync(device);
  }
  state.SetBytesProcessed(state.iterations() * total * (2 * static_cast<int64_t>(x.element_size()) + 8));
}

void BM_unpad_out(benchmark::State& state, torch::ScalarType dtype, torch::Device device) {
  const auto B = state.range(0);
  const auto T = state.range(1);
  const auto layout = verl::make_packed_layout(make_mask(B, T).to(device));
  const auto x = torch::ones({B, T}, torch::TensorOptions().dtype(dtype).device(device));   // (B,T)
  const auto total = layout.total_tokens();
  auto packed = torch::empty({total}, x.options());                                  // (total,)
  for (auto _ : state) {
    verl::unpad_out(packed, x, layout);                                              // (total,)
    benchmark::DoNotOptimize(packed.data_ptr());
    sync(device);
  }
  state.SetBytesProcessed(state.iterations() * total * (2 * static_cast<int64_t>(x.element_size()) + 8));
}

void BM_pad_out(benchmark::State& state, torch::ScalarType dtype, torch::Device device) {
  const auto B = state.range(0);
  const auto T = state.range(1);
  const auto layout = verl::make_packed_layout(make_mask(B, T).to(device));
  const auto total = layout.total_tokens();
  const auto packed = torch::ones({total}, torch::TensorOptions().dtype(dtype).device(device));   // (total,)
  auto padded = torch::empty({B, T}, packed.options());                              // (B,T)
  for (auto _ : state) {
    verl::pad_out(padded, packed, layout);                                           // (B,T)
    benchmark::DoNotOptimize(padded.data_ptr());
    sync(device);
  }
  const auto elem = static_cast<int64_t>(packed.element_size());
  state.SetBytesProcessed(state.iterations() * (B * T * elem + total * (elem + 8)));
}

void BM_pad(benchmark::State& state, torch::ScalarType dtype, torch::Device device) {
  const auto B = state.range(0);
  const auto T = state.range(1);
  const auto layout = verl::make_packed_layout(make_mask(B, T).to(device));
  const auto total = layout.total_tokens();
  const auto packed = torch::ones({total}, torch::TensorOptions().dtype(dtype).device(device));   // (total,)
  for (auto _ : state) {
    auto padded = verl::pad(packed, layout);                                         // (B,T)
    benchmark::DoNotOptimize(padded.data_ptr());
    sync(device);
  }
  const auto elem = static_cast<int64_t>(packed.element_size());
  state.SetBytesProcessed(state.iterations() * (B * T * elem + total * (elem + 8)));
}

std::vector<int64_t> random_seqlens(int64_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int64_t> dist(1, 4096);
  std::vector<int64_t> s(static_cast<std::size_t>(n));
  for (auto& v : s) v = dist(rng);
  return s;
}

void BM_partition(benchmark::State& state) {
  const auto n = state.range(0);
  const auto k = state.range(1);
  const auto s = random_seqlens(n, 0);
  verl::Partitions parts;
  for (auto _ : state) {
    parts = verl::get_seqlen_balanced_partitions(s, k, /*equal_size=*/true);
    benchmark::DoNotOptimize(parts.data());
  }
  state.counters["spread"] = static_cast<double>(verl::partition_spread(s, parts));
  state.counters["kk_spread"] =
      static_cast<double>(verl::partition_spread(s, verl::karmarkar_karp_partitions(s, k, true)));
  state.counters["greedy_spread"] =
      static_cast<double>(verl::partition_spread(s, verl::greedy_partitions(s, k, true)));
  state.counters["mean_sum"] = static_cast<double>(std::accumulate(s.begin(), s.end(), int64_t{0})) /
                               static_cast<double>(k);
}

void BM_karmarkar_karp_only(benchmark::State& state) {
  const auto n = state.range(0);
  const auto k = state.range(1);
  const auto s = random_seqlens(n, 0);
  for (auto _ : state) {
    auto parts = verl::karmarkar_karp_partitions(s, k, /*equal_size=*/true);
    benchmark::DoNotOptimize(parts.data());
  }
}

void register_all() {
  const std::vector<std::pair<std::string, torch::Device>> devices = [] {
    std::vector<std::pair<std::string, torch::Device>> d{{"cpu", torch::Device(torch::kCPU)}};
    if (torch::cuda::is_available()) d.emplace_back("cuda", torch::Device(torch::kCUDA));
    return d;
  }();
  for (const auto& [dev, device] : devices) {
    // Real time: ATen runs these on several threads, and the main thread's CPU time would overstate GB/s.
    const auto sizes = [](benchmark::internal::Benchmark* b) {
      b->Args({1024, 4096})->Unit(benchmark::kMillisecond)->UseRealTime();
    };
    const auto smoke = [](benchmark::internal::Benchmark* b) {
      b->Args({16, 128})->Unit(benchmark::kMicrosecond)->UseRealTime();
    };
    for (const auto& [tag, apply] : {std::pair{std::string(""), +sizes}, std::pair{std::string("_smoke"), +smoke}}) {
      apply(benchmark::RegisterBenchmark(("make_packed_layout_" + dev + tag).c_str(), BM_make_packed_layout, device));
      apply(benchmark::RegisterBenchmark(("unpad_int64_" + dev + tag).c_str(), BM_unpad, torch::kLong, device));
      apply(benchmark::RegisterBenchmark(("unpad_float32_" + dev + tag).c_str(), BM_unpad, torch::kFloat, device));
      apply(benchmark::RegisterBenchmark(("unpad_out_int64_" + dev + tag).c_str(), BM_unpad_out, torch::kLong, device));
      apply(benchmark::RegisterBenchmark(("unpad_out_float32_" + dev + tag).c_str(), BM_unpad_out, torch::kFloat,
                                         device));
      apply(benchmark::RegisterBenchmark(("pad_int64_" + dev + tag).c_str(), BM_pad, torch::kLong, device));
      apply(benchmark::RegisterBenchmark(("pad_float32_" + dev + tag).c_str(), BM_pad, torch::kFloat, device));
      apply(benchmark::RegisterBenchmark(("pad_out_int64_" + dev + tag).c_str(), BM_pad_out, torch::kLong, device));
      apply(benchmark::RegisterBenchmark(("pad_out_float32_" + dev + tag).c_str(), BM_pad_out, torch::kFloat, device));
    }
  }
  benchmark::RegisterBenchmark("partition_equal_size", BM_partition)
      ->Args({1024, 8})->Args({1024, 16})->Unit(benchmark::kMicrosecond);
  benchmark::RegisterBenchmark("karmarkar_karp_only_equal_size", BM_karmarkar_karp_only)
      ->Args({1024, 8})->Args({1024, 16})->Unit(benchmark::kMicrosecond);
  benchmark::RegisterBenchmark("partition_equal_size_smoke", BM_partition)->Args({64, 8})->Unit(benchmark::kMicrosecond);
}

std::string json_partitions(const verl::Partitions& parts) {
  std::ostringstream out;
  out << '[';
  for (std::size_t p = 0; p < parts.size(); ++p) {
    out << (p ? ",[" : "[");
    for (std::size_t i = 0; i < parts[p].size(); ++i) out << (i ? "," : "") << parts[p][i];
    out << ']';
  }
  out << ']';
  return std::move(out).str();
}

// `--partition-cases`: see the file comment.
int run_partition_cases() {
  std::string line;
  while (std::getline(std::cin, line)) {
    std::istringstream in(line);
    int64_t k = 0;
    int equal = 0;
    int64_t n = 0;
    if (!(in >> k >> equal >> n)) continue;
    std::vector<int64_t> s(static_cast<std::size_t>(n));
    for (auto& v : s) in >> v;
    const auto t0 = std::chrono::steady_clock::now();
    const auto ours = verl::get_seqlen_balanced_partitions(s, k, equal != 0);
    const auto t1 = std::chrono::steady_clock::now();
    const auto kk = verl::karmarkar_karp_partitions(s, k, equal != 0);
    const auto greedy = verl::greedy_partitions(s, k, equal != 0);
    std::cout << "{\"spread\":" << verl::partition_spread(s, ours)
              << ",\"kk_spread\":" << verl::partition_spread(s, kk)
              << ",\"greedy_spread\":" << verl::partition_spread(s, greedy)
              << ",\"seconds\":" << std::chrono::duration<double>(t1 - t0).count()
              << ",\"partitions\":" << json_partitions(ours) << ",\"kk_partitions\":" << json_partitions(kk)
              << "}\n";
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i)
    if (std::strcmp(argv[i], "--partition-cases") == 0) return run_partition_cases();
  register_all();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
