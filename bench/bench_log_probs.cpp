// Benchmarks of verl::models::linear_log_probs (include/verl/models/log_probs.hpp), the chunked fused path,
// against the naive ATen path the actor would otherwise run (logits = hidden @ weight^T, log_softmax, gather,
// verl's entropy_from_logits), float32 on CPU, temperature 1. Forward under no-grad, and forward + backward
// with random upstream gradients for log-probs and entropy.
//
// Shapes (N tokens, H hidden, V vocabulary): smoke (64,64,1000) for CTest, (2048,512,32000) and the Qwen2-0.5B
// head (H 896, V 151936) at N = 1024 (forward + backward) and N = 4096 (forward).
// Counters: items_per_second = tokens/s; peak_MiB = peak resident memory while the benchmark ran minus the
// resident memory before it (Linux /proc/self/status VmHWM after resetting it with /proc/self/clear_refs "5";
// -1 where that is unavailable), i.e. every byte the step touched beyond its inputs. VERL_BENCH_CHUNK_MIB=<n>
// sets the fused path's chunk budget (LinearLogProbOptions::max_chunk_bytes, default 256 MiB).
//
//   cmake --build build --target verl_bench_log_probs
//   ./build/bench/verl_bench_log_probs --benchmark_filter=V32000
//   .venv/bin/python bench/compare_log_probs_vs_torch.py --bench build/bench/verl_bench_log_probs
#include "verl/algos/entropy.hpp"
#include "verl/models/log_probs.hpp"

#include <ATen/Parallel.h>
#include <benchmark/benchmark.h>
#include <torch/torch.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <string>

namespace {

struct Inputs {
  torch::Tensor hidden, weight, targets, g_lp, g_ent;  // (N,H), (V,H), (N,), (N,), (N,)
};

// The same draws, in the same order, as make_inputs() in bench/compare_log_probs_vs_torch.py.
Inputs make_inputs(std::int64_t n, std::int64_t h, std::int64_t v) {
  torch::manual_seed(0);
  Inputs in;
  in.hidden = torch::randn({n, h});                                          // (N,H)
  in.weight = torch::randn({v, h}) / std::sqrt(static_cast<double>(h));      // (V,H): logits ~ N(0,1)
  in.targets = torch::randint(0, v, {n}, torch::kLong);                      // (N,)
  in.g_lp = torch::randn({n});                                               // (N,)
  in.g_ent = torch::randn({n});                                              // (N,)
  return in;
}

long long status_kb(const char* key) {
  std::ifstream in("/proc/self/status");
  std::string line;
  const std::string k(key);
  while (std::getline(in, line)) {
    if (line.rfind(k, 0) == 0) return std::stoll(line.substr(k.size()));
  }
  return -1;
}

bool reset_peak_rss() {
  std::ofstream clear("/proc/self/clear_refs");
  return static_cast<bool>(clear << "5" << std::flush);
}

struct Result {
  torch::Tensor log_probs, entropy;
};

Result naive(const Inputs& in, const torch::Tensor& hidden, const torch::Tensor& weight, bool entropy) {
  const auto logits = torch::mm(hidden, weight.t()).to(torch::kFloat);       // (N,V) lm_head, .float()
  Result r;
  r.log_probs = logits.log_softmax(-1).gather(-1, in.targets.unsqueeze(-1)).squeeze(-1);  // (N,)
  if (entropy) r.entropy = verl::core_algos::entropy_from_logits(logits);   // (N,)
  return r;
}

Result fused(const Inputs& in, const torch::Tensor& hidden, const torch::Tensor& weight, bool entropy) {
  verl::models::LinearLogProbOptions o;
  o.compute_entropy = entropy;
  static const char* budget = std::getenv("VERL_BENCH_CHUNK_MIB");  // tuning knob: the chunk budget in MiB
  if (budget != nullptr) o.max_chunk_bytes = std::stoll(budget) << 20;
  auto r = verl::models::linear_log_probs(hidden, weight, in.targets, o);
  return {r.log_probs, r.entropy};
}

enum class Mode { forward, forward_entropy, backward_entropy };

template <Result (*Path)(const Inputs&, const torch::Tensor&, const torch::Tensor&, bool)>
void run(benchmark::State& state, Mode mode, std::int64_t n, std::int64_t h, std::int64_t v) {
  const auto in = make_inputs(n, h, v);
  const bool entropy = mode != Mode::forward;
  const auto step = [&] {
    if (mode == Mode::backward_entropy) {
      const auto hidden = in.hidden.detach().requires_grad_(true);
      const auto weight = in.weight.detach().requires_grad_(true);
      const auto r = Path(in, hidden, weight, true);
      ((r.log_probs * in.g_lp).sum() + (r.entropy * in.g_ent).sum()).backward();
      benchmark::DoNotOptimize(weight.grad().data_ptr());
    } else {
      torch::NoGradGuard no_grad;
      const auto r = Path(in, in.hidden, in.weight, entropy);
      benchmark::DoNotOptimize(r.log_probs.data_ptr());
    }
  };
  // The peak is that of the first call, which also warms up (as the comparison script's warm-up and peak calls).
  // The fused path's chunk block (kept between calls, verl/core/reusable_buffer.hpp) is freed first so that
  // its memory shows up in the peak: Google Benchmark calls this function more than once per case.
  verl::models::release_log_prob_buffer();
  const bool peak_ok = reset_peak_rss();
  const long long before = status_kb("VmRSS:");
  step();
  state.counters["peak_MiB"] = peak_ok ? static_cast<double>(status_kb("VmHWM:") - before) / 1024.0 : -1.0;
  for (auto _ : state) step();
  state.SetItemsProcessed(state.iterations() * n);
}

const int registered = [] {
  benchmark::AddCustomContext("torch_threads", std::to_string(at::get_num_threads()));
  struct Case {
    std::int64_t n, h, v;
    bool backward;
  };
  const Case cases[] = {{64, 64, 1000, true}, {2048, 512, 32000, true}, {1024, 896, 151936, true}, {4096, 896, 151936, false}};
  const std::pair<const char*, Mode> modes[] = {
      {"fwd", Mode::forward}, {"fwd_entropy", Mode::forward_entropy}, {"fwdbwd_entropy", Mode::backward_entropy}};
  for (const auto& c : cases) {
    for (const auto& [mode_name, mode] : modes) {
      if (mode == Mode::backward_entropy && !c.backward) continue;
      const std::string shape = "/N" + std::to_string(c.n) + "/H" + std::to_string(c.h) + "/V" + std::to_string(c.v);
      const std::string prefix = c.n == 64 ? "smoke/" : "";
      for (const auto& [path_name, fn] : {std::pair{"fused", &run<fused>}, std::pair{"naive", &run<naive>}}) {
        benchmark::RegisterBenchmark((prefix + path_name + "_" + mode_name + shape).c_str(),
                                     [fn = fn, mode = mode, c](benchmark::State& s) { fn(s, mode, c.n, c.h, c.v); })
            ->Unit(benchmark::kMillisecond)
            ->MeasureProcessCPUTime()  // CPU time of all threads: steadier than wall time on a shared machine
            ->UseRealTime();
      }
    }
  }
  return 0;
}();

}  // namespace

BENCHMARK_MAIN();
