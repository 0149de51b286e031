// Benchmarks of verl::rollout::paged_attention (include/verl/rollout/paged_attention.hpp): decode attention
// (one query row per sequence) over a paged float32 KV pool with Qwen2-0.5B's attention shape (H 14, Hkv 2,
// D 64, block_size 16), batch {1, 16, 64, 256} x context {256, 1024, 4096}, block ids shuffled over the pool.
// `kernel` is the CPU online-softmax kernel (the engine's decode path), `gather_sdpa` the device-generic path
// (index_select of the blocks, GQA repeat, at::scaled_dot_product_attention) on the same inputs.
//
// Counters: bytes_per_second = bytes of K and V the step must read (batch x context x Hkv x D x 2 x 4) per
// second of wall time, i.e. the achieved KV-read bandwidth, to compare with the machine's streaming bandwidth.
//
//   cmake --build build --target verl_bench_paged_attention
//   ./build/bench/verl_bench_paged_attention --benchmark_filter=decode
#include "verl/rollout/paged_attention.hpp"

#include <ATen/Parallel.h>
#include <benchmark/benchmark.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <random>
#include <vector>

namespace {

using verl::rollout::PagedAttentionPath;

constexpr std::int64_t kHeads = 14, kKvHeads = 2, kHeadDim = 64, kBlock = 16;

struct Step {
  at::Tensor q, keys, values;  // (B,H,D), (num_blocks,Hkv,16,D) x2
  verl::rollout::PagedAttentionBatch batch;
};

// A pool holding exactly the batch's blocks, handed out in a shuffled order (a fragmented pool).
Step make_step(std::int64_t batch, std::int64_t ctx, std::int64_t heads = kHeads, std::int64_t kv_heads = kKvHeads,
               std::int64_t d = kHeadDim) {
  torch::manual_seed(0);
  const std::int64_t per_seq = (ctx + kBlock - 1) / kBlock, num_blocks = batch * per_seq;
  std::vector<std::int64_t> ids(static_cast<std::size_t>(num_blocks));
  std::iota(ids.begin(), ids.end(), 0);
  std::shuffle(ids.begin(), ids.end(), std::mt19937_64(1));
  Step s;
  s.batch.block_tables = torch::from_blob(ids.data(), {batch, per_seq}, torch::kLong).clone();  // (B,blocks)
  s.batch.context_lens = torch::full({batch}, ctx, torch::kLong);                                // (B)
  s.batch.query_starts = torch::arange(batch + 1, torch::kLong);                                 // (B+1)
  s.keys = torch::rand({num_blocks, kv_heads, kBlock, d}) - 0.5;    // uniform: cheaper to draw than randn
  s.values = torch::rand({num_blocks, kv_heads, kBlock, d}) - 0.5;
  s.q = torch::randn({batch, heads, d});                            // (B,H,D)
  return s;
}

void run(benchmark::State& state, const Step& s, std::int64_t ctx, PagedAttentionPath path) {
  verl::rollout::PagedAttentionOptions o;
  o.path = path;
  const double scale = 1.0 / std::sqrt(static_cast<double>(s.q.size(2)));
  for (auto _ : state) {
    auto out = verl::rollout::paged_attention(s.q, s.keys, s.values, s.batch, scale, o);  // (B,H,D)
    benchmark::DoNotOptimize(out.data_ptr());
  }
  const double bytes = 2.0 * static_cast<double>(s.q.size(0) * ctx * s.keys.size(1) * s.keys.size(3)) *
                       static_cast<double>(s.keys.element_size());
  state.counters["bytes_per_second"] = benchmark::Counter(bytes, benchmark::Counter::kIsIterationInvariantRate,
                                                          benchmark::Counter::kIs1000);
  state.counters["threads"] = at::get_num_threads();
}

void BM_decode_kernel(benchmark::State& state) {
  const auto s = make_step(state.range(0), state.range(1));
  run(state, s, state.range(1), PagedAttentionPath::kernel);
}
void BM_decode_gather_sdpa(benchmark::State& state) {
  const auto s = make_step(state.range(0), state.range(1));
  run(state, s, state.range(1), PagedAttentionPath::gather_sdpa);
}

void decode_sizes(benchmark::internal::Benchmark* b) {
  for (const std::int64_t batch : {1, 16, 64, 256})
    for (const std::int64_t ctx : {256, 1024, 4096}) b->Args({batch, ctx});
  b->ArgNames({"batch", "ctx"})->Unit(benchmark::kMicrosecond)->UseRealTime();
}
BENCHMARK(BM_decode_kernel)->Apply(decode_sizes);
BENCHMARK(BM_decode_gather_sdpa)->Apply(decode_sizes);

// CTest's smoke run: tiny shapes through both paths.
void BM_smoke(benchmark::State& state) {
  const auto s = make_step(3, 40, 4, 2, 16);
  run(state, s, 40, state.range(0) == 0 ? PagedAttentionPath::kernel : PagedAttentionPath::gather_sdpa);
}
BENCHMARK(BM_smoke)->Arg(0)->Arg(1)->ArgName("sdpa");

}  // namespace

BENCHMARK_MAIN();
