// Benchmarks of verl::rollout::sample (include/verl/rollout/sampler.hpp): one decode step's sampling of S rows
// over the Qwen2 vocabulary (V = 151936), float32 on CPU, for greedy, temperature only (T 0.8), top-p 0.9
// (T 0.8), top-k 50 + top-p 0.9 (T 0.8), and temperature with log-probs. Reference: what a LibTorch
// program would otherwise run, at::softmax(logits / T) then at::multinomial on each row with the row's own
// generator (per-row generators are what batch invariance needs).
//
// Logits are N(0, 3^2) (a spread-out distribution: the top-p 0.9 set holds thousands of tokens, harder for
// the sampler than a peaked LLM distribution). sample() works in place, so each iteration first restores the
// logits with the timer paused. Time = wall ms per step (one call); items_per_second = rows/s.
//
//   cmake --build build --target verl_bench_sampler
//   ./build/bench/verl_bench_sampler --benchmark_filter=V151936
#include "verl/rollout/sampler.hpp"

#include <ATen/CPUGeneratorImpl.h>
#include <benchmark/benchmark.h>
#include <torch/torch.h>

#include <string>
#include <vector>

namespace {

struct Mode {
  const char* name;
  verl::SamplingParams params;
  bool log_probs;
};

std::vector<Mode> modes() {
  verl::SamplingParams greedy;
  greedy.temperature = 0.0;
  verl::SamplingParams temp;
  temp.temperature = 0.8;
  verl::SamplingParams top_p = temp;
  top_p.top_p = 0.9;
  verl::SamplingParams top_k_p = top_p;
  top_k_p.top_k = 50;
  return {{"greedy", greedy, false},
          {"temperature", temp, false},
          {"top_p0.9", top_p, false},
          {"top_k50_top_p0.9", top_k_p, false},
          {"temperature_logprobs", temp, true}};
}

torch::Tensor make_logits(std::int64_t s, std::int64_t v) {
  torch::manual_seed(0);
  return torch::randn({s, v}) * 3.0f;  // (S,V)
}

void bm_sample(benchmark::State& state, std::int64_t s, std::int64_t v, Mode mode) {
  const auto base = make_logits(s, v);  // (S,V)
  auto work = base.clone();             // (S,V)
  std::vector<verl::rollout::SamplingRow> rows(static_cast<std::size_t>(s));
  for (std::int64_t r = 0; r < s; ++r) rows[r] = {&mode.params, static_cast<std::uint64_t>(r) + 1, 0, {}, {}};
  std::int64_t step = 0;
  for (auto _ : state) {
    state.PauseTiming();
    work.copy_(base);
    for (auto& row : rows) row.step = step;
    ++step;
    state.ResumeTiming();
    auto out = verl::rollout::sample(work, rows, mode.log_probs);
    benchmark::DoNotOptimize(out.tokens.data());
  }
  state.SetItemsProcessed(state.iterations() * s);
}

// at::softmax(logits / T) + at::multinomial per row with its own generator (temperature-only semantics).
void bm_reference(benchmark::State& state, std::int64_t s, std::int64_t v, double temperature) {
  const auto logits = make_logits(s, v);  // (S,V)
  std::vector<at::Generator> gens;
  for (std::int64_t r = 0; r < s; ++r) gens.push_back(at::make_generator<at::CPUGeneratorImpl>(r + 1));
  for (auto _ : state) {
    const auto probs = torch::softmax(logits / temperature, -1);  // (S,V)
    std::vector<torch::Tensor> picks;
    picks.reserve(static_cast<std::size_t>(s));
    for (std::int64_t r = 0; r < s; ++r) picks.push_back(at::multinomial(probs[r], 1, false, gens[r]));  // (1,)
    benchmark::DoNotOptimize(picks.data());
  }
  state.SetItemsProcessed(state.iterations() * s);
}

void register_all() {
  struct Size {
    std::string tag;
    std::int64_t s, v;
  };
  std::vector<Size> sizes = {{"smoke", 2, 1000}};
  for (const std::int64_t s : {1, 64, 256}) sizes.push_back({"S" + std::to_string(s) + "/V151936", s, 151936});
  for (const auto& size : sizes) {
    for (const auto& mode : modes()) {
      benchmark::RegisterBenchmark(("sample/" + size.tag + "/" + mode.name).c_str(),
                                   [size, mode](benchmark::State& st) { bm_sample(st, size.s, size.v, mode); })
          ->Unit(benchmark::kMillisecond)
          ->UseRealTime();
    }
    benchmark::RegisterBenchmark(("torch_softmax_multinomial/" + size.tag + "/temperature").c_str(),
                                 [size](benchmark::State& st) { bm_reference(st, size.s, size.v, 0.8); })
        ->Unit(benchmark::kMillisecond)
        ->UseRealTime();
  }
}

}  // namespace

int main(int argc, char** argv) {
  register_all();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
