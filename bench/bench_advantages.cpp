// Google Benchmark for the verl::core_algos advantage estimators (include/verl/algos/advantages.hpp) at
// (B,T) in {(64,512), (256,2048), (1024,4096)}, float32, right-padded masks, groups of 8 (B/8 prompts).
// `smoke` variants (B=16, T=32) are what CTest runs. bench/compare_advantages_vs_verl.py feeds the same
// inputs to verl 0.7.1 and reads this binary's JSON output (--benchmark_format=json) to print ratios.
#include "verl/algos/advantages.hpp"

#include <benchmark/benchmark.h>
#include <torch/types.h>

#include <functional>
#include <string>

namespace {

using namespace verl::core_algos;

struct Inputs {
  at::Tensor rewards, outcome, values, mask, index, baselines;
};

//! Deterministic inputs, rebuilt identically by compare_advantages_vs_verl.py (same seed, same torch calls).
Inputs make_inputs(std::int64_t b, std::int64_t t) {
  torch::manual_seed(0);
  const auto lengths = torch::randint(t / 4, t + 1, {b});                                  // (B,)
  const auto mask = (torch::arange(t).unsqueeze(0) < lengths.unsqueeze(1)).to(torch::kLong);  // (B,T)
  const auto rewards = torch::randn({b, t});                                                // (B,T)
  const auto values = torch::randn({b, t});                                                 // (B,T)
  const auto score = torch::randint(0, 2, {b}).to(torch::kFloat32);                         // (B,)
  auto outcome = torch::zeros({b, t});                                                      // (B,T)
  outcome.index_put_({torch::arange(b), lengths - 1}, score);
  const auto index = torch::arange(b).div(8, "floor");                                                // (B,) groups of 8
  const auto baselines = torch::rand({b});                                                  // (B,)
  return {rewards, outcome, values, mask, index, baselines};
}

using Fn = std::function<verl::AdvantageOutput(const Inputs&)>;

void run(benchmark::State& state, const Fn& fn) {
  const auto in = make_inputs(state.range(0), state.range(1));
  for (auto _ : state) {
    auto out = fn(in);
    benchmark::DoNotOptimize(out.advantages.data_ptr());
  }
  state.SetItemsProcessed(state.iterations() * state.range(0) * state.range(1));
}

void register_all() {
  const std::vector<std::pair<std::string, Fn>> fns = {
      {"gae", [](const Inputs& x) { return compute_gae_advantage_return(x.rewards, x.values, x.mask, 0.99, 0.95); }},
      {"reinforce_plus_plus",
       [](const Inputs& x) { return compute_reinforce_plus_plus_outcome_advantage(x.rewards, x.mask, {.gamma = 0.99}); }},
      {"grpo", [](const Inputs& x) { return compute_grpo_outcome_advantage(x.outcome, x.mask, x.index); }},
      {"grpo_nostd",
       [](const Inputs& x) { return compute_grpo_outcome_advantage(x.outcome, x.mask, x.index, 1e-6, false); }},
      {"grpo_passk", [](const Inputs& x) { return compute_grpo_passk_outcome_advantage(x.outcome, x.mask, x.index); }},
      {"rloo", [](const Inputs& x) { return compute_rloo_outcome_advantage(x.outcome, x.mask, x.index); }},
      {"opo", [](const Inputs& x) { return compute_opo_outcome_advantage(x.outcome, x.mask, x.index); }},
      {"reinforce_plus_plus_baseline",
       [](const Inputs& x) { return compute_reinforce_plus_plus_baseline_outcome_advantage(x.outcome, x.mask, x.index); }},
      {"remax", [](const Inputs& x) { return compute_remax_outcome_advantage(x.outcome, x.baselines, x.mask); }},
      {"gpg", [](const Inputs& x) { return compute_gpg_outcome_advantage(x.outcome, x.mask, x.index); }},
  };
  for (const auto& [name, fn] : fns) {
    benchmark::RegisterBenchmark(("BM_" + name).c_str(), run, fn)
        ->Args({64, 512})
        ->Args({256, 2048})
        ->Args({1024, 4096})
        ->Unit(benchmark::kMicrosecond)
        ->UseRealTime();
    benchmark::RegisterBenchmark(("BM_" + name + "_smoke").c_str(), run, fn)->Args({16, 32})->UseRealTime();
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
