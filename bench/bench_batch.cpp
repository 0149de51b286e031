// Benchmarks of verl::Batch operations at the PPO batch size the foundation issue names: B = 1024 items,
// T = 4096 tokens. The batch holds input_ids and attention_mask ((B,T) int64) and old_log_probs and
// advantages ((B,T) float32): 96 MiB in all. Copying operations report bytes
// processed (read + write), to compare with the machine's memory bandwidth (~18-28 GB/s on the 2-core CI
// machines, docs/performance.md). CTest runs the `smoke` variants only.
//
//   ./build/bench/verl_bench_batch --benchmark_filter=B1024
#include "verl/core/batch.hpp"
#include "verl/core/fields.hpp"

#include <benchmark/benchmark.h>
#include <torch/torch.h>

#include <vector>

using namespace verl::fields;

namespace {

using PPOBatch = verl::Batch<input_ids, attention_mask, old_log_probs, advantages>;

PPOBatch make_batch(std::int64_t batch, std::int64_t len) {
  torch::manual_seed(0);
  return PPOBatch(torch::randint(0, 32000, {batch, len}, torch::kLong),  // (B,T)
                  torch::ones({batch, len}, torch::kLong),               // (B,T)
                  torch::randn({batch, len}),                            // (B,T)
                  torch::randn({batch, len}));                           // (B,T)
}

std::int64_t batch_bytes(const PPOBatch& b) {
  return b.get<input_ids>().nbytes() + b.get<attention_mask>().nbytes() + b.get<old_log_probs>().nbytes() +
         b.get<advantages>().nbytes();
}

// Splitting into micro-batches makes views: the cost is per slice, independent of T.
void split_micro_batches(benchmark::State& state, std::int64_t batch, std::int64_t len) {
  const auto b = make_batch(batch, len);
  const std::int64_t micro = state.range(0);
  for (auto _ : state) {
    std::int64_t items = 0;
    for (const auto& part : b.split(micro)) items += part.size();
    benchmark::DoNotOptimize(items);
  }
  state.counters["slices"] = static_cast<double>(batch / micro);
}

// One PPO epoch's data movement: shuffle (an index_select copy of every field), then mini-batches.
void shuffle_then_split(benchmark::State& state, std::int64_t batch, std::int64_t len) {
  const auto b = make_batch(batch, len);
  std::uint64_t seed = 0;
  for (auto _ : state) {
    std::int64_t items = 0;
    for (const auto& part : b.shuffle(++seed).split(256)) items += part.size();
    benchmark::DoNotOptimize(items);
  }
  state.SetBytesProcessed(state.iterations() * 2 * batch_bytes(b));
}

void concat_chunks(benchmark::State& state, std::int64_t batch, std::int64_t len) {
  const auto b = make_batch(batch, len);
  std::vector<PPOBatch> parts;
  for (const auto& part : b.chunk(8)) parts.push_back(part);
  for (auto _ : state) benchmark::DoNotOptimize(verl::concat(parts).size());
  state.SetBytesProcessed(state.iterations() * 2 * batch_bytes(b));
}

// n = 8 samples per prompt: B/8 prompts become B items (GRPO-style rollout expansion).
void repeat_interleave_prompts(benchmark::State& state, std::int64_t batch, std::int64_t len) {
  const auto prompts = make_batch(batch / 8, len);
  for (auto _ : state) benchmark::DoNotOptimize(prompts.repeat_interleave(8).size());
  state.SetBytesProcessed(state.iterations() * 9 * batch_bytes(prompts));  // read 1x, write 8x
}

void to_bfloat16(benchmark::State& state, std::int64_t batch, std::int64_t len) {
  const auto b = make_batch(batch, len);
  for (auto _ : state) benchmark::DoNotOptimize(b.to(torch::kBFloat16).size());
  const auto float_bytes = b.get<old_log_probs>().nbytes() + b.get<advantages>().nbytes();
  state.SetBytesProcessed(state.iterations() * (float_bytes + float_bytes / 2));
}

}  // namespace

BENCHMARK_CAPTURE(split_micro_batches, B1024_T4096, 1024, 4096)->Arg(8)->Arg(64);
BENCHMARK_CAPTURE(shuffle_then_split, B1024_T4096, 1024, 4096)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(concat_chunks, B1024_T4096, 1024, 4096)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(repeat_interleave_prompts, B1024_T4096, 1024, 4096)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(to_bfloat16, B1024_T4096, 1024, 4096)->Unit(benchmark::kMillisecond)->UseRealTime();

BENCHMARK_CAPTURE(split_micro_batches, smoke, 64, 16)->Arg(8);
BENCHMARK_CAPTURE(shuffle_then_split, smoke, 64, 16);
BENCHMARK_CAPTURE(concat_chunks, smoke, 64, 16);
BENCHMARK_CAPTURE(repeat_interleave_prompts, smoke, 64, 16);
BENCHMARK_CAPTURE(to_bfloat16, smoke, 64, 16);

BENCHMARK_MAIN();
