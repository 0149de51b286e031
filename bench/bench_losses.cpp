// Benchmarks of verl::core_algos losses (include/verl/algos/{loss_agg,policy_losses,value_loss,kl,entropy}.hpp)
// at the (B,T) sizes issue 3 names: (64,512), (256,2048), (1024,4096), float32, forward only (no autograd
// graph), response_mask int64 as verl's trainer passes it. Entropy runs at a small vocabulary (V = 64) over
// (B,T/8) rows. Inputs come from torch::manual_seed(0), so bench/compare_losses_vs_verl.py, which seeds
// PyTorch the same way, feeds verl bit-identical tensors. CTest runs the tiny `smoke` variants only.
//
//   ./build/bench/verl_bench_losses --benchmark_filter=vanilla
//   .venv/bin/python bench/compare_losses_vs_verl.py --bench build/bench/verl_bench_losses
#include "verl/algos/entropy.hpp"
#include "verl/algos/kl.hpp"
#include "verl/algos/loss_agg.hpp"
#include "verl/algos/policy_losses.hpp"
#include "verl/algos/value_loss.hpp"

#include <benchmark/benchmark.h>
#include <torch/torch.h>

#include <functional>
#include <string>

using namespace verl::core_algos;

namespace {

struct Inputs {
  torch::Tensor old_log_prob, log_prob, advantages, mask;  // (B,T) each; mask int64
};

// The same draws, in the same order, as make_inputs() in bench/compare_losses_vs_verl.py.
Inputs make_inputs(std::int64_t b, std::int64_t t) {
  torch::manual_seed(0);
  Inputs in;
  in.old_log_prob = -torch::rand({b, t}) * 2;                              // (B,T)
  in.log_prob = in.old_log_prob + torch::randn({b, t}) * 0.3;              // (B,T)
  in.advantages = torch::randn({b, t});                                    // (B,T)
  in.mask = (torch::rand({b, t}) > 0.1).to(torch::kLong);                  // (B,T)
  return in;
}

using Fn = std::function<void(const Inputs&)>;

void run(benchmark::State& state, const Fn& fn, std::int64_t b, std::int64_t t) {
  const auto in = make_inputs(b, t);
  torch::NoGradGuard no_grad;
  for (auto _ : state) fn(in);
  state.SetItemsProcessed(state.iterations() * b * t);
}

ActorConfig cfg() {
  ActorConfig c;
  c.clip_ratio_high = 0.28;
  return c;
}

template <class K>
Fn policy(K kernel, verl::LossAggMode mode = verl::LossAggMode::token_mean) {
  return [kernel, mode](const Inputs& in) {
    auto out = kernel(in.old_log_prob, in.log_prob, in.advantages, in.mask, mode, cfg(), std::nullopt);
    benchmark::DoNotOptimize(out.loss.template item<float>());
    if (out.ppo_kl.defined()) benchmark::DoNotOptimize(out.ppo_kl.template item<float>());  // verl calls .item()
  };
}

const std::vector<std::pair<std::string, Fn>>& functions() {
  static const std::vector<std::pair<std::string, Fn>> fns = {
      {"agg_loss_token_mean", [](const Inputs& in) {
         benchmark::DoNotOptimize(agg_loss(in.log_prob, in.mask, verl::LossAggMode::token_mean).item<float>());
       }},
      {"agg_loss_seq_mean_token_mean", [](const Inputs& in) {
         benchmark::DoNotOptimize(agg_loss(in.log_prob, in.mask, verl::LossAggMode::seq_mean_token_mean).item<float>());
       }},
      {"vanilla", policy(compute_policy_loss_vanilla)},
      {"vanilla_generic", policy(verl::core_algos::detail::vanilla_generic)},
      {"gspo", policy(compute_policy_loss_gspo)},
      {"sapo", policy(compute_policy_loss_sapo)},
      {"gpg", policy(compute_policy_loss_gpg)},
      {"clip_cov", policy(compute_policy_loss_clip_cov)},
      {"kl_cov", policy(compute_policy_loss_kl_cov)},
      {"geo_mean", policy(compute_policy_loss_geo_mean)},
      {"cispo", policy(compute_policy_loss_cispo)},
      {"value_loss", [](const Inputs& in) {
         auto out = compute_value_loss(in.log_prob, in.advantages, in.old_log_prob, in.mask, 0.5);
         benchmark::DoNotOptimize(out.vf_loss.item<float>());
       }},
      {"kl_low_var_kl", [](const Inputs& in) { benchmark::DoNotOptimize(kl_penalty(in.log_prob, in.old_log_prob, "low_var_kl")); }},
      {"kl_k1", [](const Inputs& in) { benchmark::DoNotOptimize(kl_penalty(in.log_prob, in.old_log_prob, "kl")); }},
      {"compute_rewards", [](const Inputs& in) {
         benchmark::DoNotOptimize(compute_rewards(in.advantages, in.log_prob, in.old_log_prob, 0.001));
       }},
  };
  return fns;
}

void entropy(benchmark::State& state, std::int64_t b, std::int64_t t, std::int64_t chunk) {
  torch::manual_seed(0);
  const auto logits = torch::randn({b, t / 8, 64});     // (B,T/8,V)
  const auto mask = torch::ones({b, t / 8}, torch::kLong);
  torch::NoGradGuard no_grad;
  for (auto _ : state) benchmark::DoNotOptimize(compute_entropy_loss(logits, mask, "token-mean", chunk).item<float>());
  state.SetItemsProcessed(state.iterations() * b * (t / 8));
}

const int registered = [] {
  for (const auto& [name, fn] : functions()) {
    benchmark::RegisterBenchmark(("smoke/" + name).c_str(), [fn = fn](benchmark::State& s) { run(s, fn, 4, 16); });
    for (auto [b, t] : {std::pair<std::int64_t, std::int64_t>{64, 512}, {256, 2048}, {1024, 4096}}) {
      benchmark::RegisterBenchmark((name + "/B" + std::to_string(b) + "/T" + std::to_string(t)).c_str(),
                                   [fn = fn, b = b, t = t](benchmark::State& s) { run(s, fn, b, t); })
          ->Unit(benchmark::kMicrosecond);
    }
  }
  benchmark::RegisterBenchmark("smoke/entropy", [](benchmark::State& s) { entropy(s, 4, 16, 0); });
  benchmark::RegisterBenchmark("smoke/entropy_chunked", [](benchmark::State& s) { entropy(s, 4, 16, 8); });
  for (auto [b, t] : {std::pair<std::int64_t, std::int64_t>{64, 512}, {256, 2048}, {1024, 4096}}) {
    for (std::int64_t chunk : {0, 2048}) {
      benchmark::RegisterBenchmark(((chunk ? "entropy_chunked/B" : "entropy/B") + std::to_string(b) + "/T" +
                                    std::to_string(t)).c_str(),
                                   [b = b, t = t, chunk](benchmark::State& s) { entropy(s, b, t, chunk); })
          ->Unit(benchmark::kMicrosecond);
    }
  }
  return 0;
}();

}  // namespace

BENCHMARK_MAIN();
