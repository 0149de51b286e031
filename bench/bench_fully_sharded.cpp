// Fully sharded data-parallel training step (include/verl/dist/fully_sharded.hpp, fully_sharded_causal_lm.hpp)
// at 1, 2 and 4 local processes over Gloo: step time, the bytes each rank all-gathers and reduce-scatters per
// step against the ZeRO-3 ring minimum 3(N-1)/N x the parameter bytes (all-gather for forward and again for
// backward, reduce-scatter of the gradients), and the parameter memory each rank holds at its peak against the
// unsharded model, plus the optimizer state bytes per rank.
//
// Model: the one of bench_data_parallel.cpp, so the two compare: a Llama-shaped verl::models::CausalLM with
// random weights, float32, hidden 256, 4 layers, 8 heads / 4 kv heads, intermediate 704, vocab 4096, untied head
// (5.3M parameters). Units: each decoder layer and the root (embeddings, norm, head: 2.1M of the 5.3M, gathered
// twice per forward: for the embedding and for the head). Each step: every rank runs forward + backward of the
// token-mean loss through FullyShardedCausalLM::log_probs on its micro-batch (8 sequences x 64 tokens; weak
// scaling), clip_grad_norm_(1.0), then ShardedAdamW. Reported per case: median step time over the timed steps
// (after one warm-up step), collectives and bytes of the last step, peak parameter bytes of rank 0.
//
// This machine has 2 cores: at N = 4 the ranks time-share them. Every rank runs with OMP_NUM_THREADS=1.
//
//   cmake --build build --target verl_bench_fully_sharded
//   ./build/bench/verl_bench_fully_sharded                          # N = 1, 2, 4 (+ kept / offload at N = 2)
//   ./build/bench/verl_bench_fully_sharded --steps 10 --nprocs 2
//   ./build/bench/verl_bench_fully_sharded --benchmark_filter=smoke  # CTest's smoke run: a tiny model, 2 ranks
//
// Plain main (not Google Benchmark's runner): each case is a launch of N processes of this program.
#include <torch/torch.h>
#include <torch/version.h>

#include "verl/dist/gloo.hpp"
#include "verl/dist/launch_env.hpp"
#include "verl/dist/launch_local.hpp"

#if VERL_DIST_HAS_GLOO && (TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 8))
#define VERL_BENCH_FSDP 1
#include "verl/dist/fully_sharded.hpp"
#include "verl/dist/fully_sharded_causal_lm.hpp"
#include "verl/models/causal_lm.hpp"
#include "dist_bench_model.hpp"
#else
#define VERL_BENCH_FSDP 0
#endif

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <thread>
#include <unistd.h>
#include <vector>

#if VERL_BENCH_FSDP
namespace {

using Shape = verl_bench::DistShape;
using verl_bench::kSmall;
using verl_bench::kSmoke;
using verl_bench::make_lm;

//! One rank of one case: times `steps` steps after a warm-up, rank 0 writes a JSON line to VERL_BENCH_FSDP_OUT.
int worker(const Shape& shape, bool reshard, bool offload, int steps) {
  using Gloo = verl::dist::ProcessGroupCommunicator<verl::dist::gloo>;
  auto world = Gloo::init(verl::dist::launch_env_from_environ(), {.timeout = std::chrono::seconds(120)});
  verl::dist::FullyShardedOptions o;
  o.reshard_after_forward = reshard;
  verl::dist::FullyShardedCausalLM fsdp(make_lm(shape), world, o);
  verl::dist::ShardedAdamW opt(fsdp.parameters(),
                               {.adamw = torch::optim::AdamWOptions(1e-4), .offload_to_cpu = offload});
  auto gen = at::make_generator<at::CPUGeneratorImpl>(1234 + world.rank());
  const auto ids = torch::randint(2, shape.vocab, {shape.rows, shape.tokens}, gen);        // (b,T)
  const auto mask = torch::ones({shape.rows, shape.tokens}, torch::kLong);                 // (b,T)
  const auto pos = torch::arange(shape.tokens).unsqueeze(0).expand({shape.rows, shape.tokens}).contiguous();  // (b,T)
  const verl::TokenBatch tb{ids, mask, pos, shape.tokens - 1};
  const double global_tokens = static_cast<double>(shape.rows * (shape.tokens - 1) * world.world_size());
  std::vector<double> times;
  verl::dist::FullyShardedStats last;
  for (int s = 0; s <= steps; ++s) {
    world.barrier();
    fsdp.sharded().reset_stats();
    const auto t0 = std::chrono::steady_clock::now();
    auto logp = fsdp.log_probs(tb).log_probs;  // (b,T-1)
    logp.sum().neg().div(global_tokens).mul(static_cast<double>(world.world_size())).backward();
    (void)fsdp.sharded().clip_grad_norm_(1.0);
    opt.step();
    opt.zero_grad();
    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (s > 0) times.push_back(dt);  // step 0 warms up the allocator and Gloo's buffers
    last = fsdp.sharded().stats();
  }
  std::sort(times.begin(), times.end());
  const std::int64_t n = world.world_size();
  const std::int64_t ring_minimum = 3 * (n - 1) * last.full_parameter_bytes / n;
  if (world.rank() == 0) {
    nlohmann::json out{{"nprocs", n},
                       {"reshard_after_forward", reshard},
                       {"offload", offload},
                       {"parameter_bytes", last.full_parameter_bytes},
                       {"median_step_ms", 1e3 * times[times.size() / 2]},
                       {"min_step_ms", 1e3 * times.front()},
                       {"all_gathers", last.all_gather_calls},
                       {"all_gather_bytes", last.all_gather_bytes},
                       {"reduce_scatters", last.reduce_scatter_calls},
                       {"reduce_scatter_bytes", last.reduce_scatter_bytes},
                       {"ring_bytes_sent", last.ring_bytes_sent},
                       {"ring_minimum_bytes", ring_minimum},
                       {"sharded_parameter_bytes", last.sharded_parameter_bytes},
                       {"peak_parameter_bytes", last.peak_parameter_bytes()},
                       {"optimizer_state_bytes", opt.state_bytes()}};
    const char* path = std::getenv("VERL_BENCH_FSDP_OUT");
    std::ofstream(path ? path : "/dev/stdout", std::ios::app) << out.dump() << "\n";
  }
  world.barrier();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  bool smoke = false;
  int steps = 5;
  std::vector<int> nprocs{1, 2, 4};
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--benchmark_filter=smoke") {
      smoke = true;
    } else if (a == "--steps" && i + 1 < argc) {
      steps = std::atoi(argv[++i]);
    } else if (a == "--nprocs" && i + 1 < argc) {
      nprocs = {std::atoi(argv[++i])};
    }  // other --benchmark_* flags (CTest's smoke run passes --benchmark_min_time) are ignored
  }
  if (const char* mode = std::getenv("VERL_BENCH_FSDP_WORKER")) {
    const std::string m = mode;  // "<small|smoke>:<reshard 0|1>:<offload 0|1>:<steps>"
    const Shape& shape = m.rfind("smoke", 0) == 0 ? kSmoke : kSmall;
    const auto colon = m.find(':');
    return worker(shape, m.at(colon + 1) == '1', m.at(colon + 3) == '1', std::atoi(m.substr(m.rfind(':') + 1).c_str()));
  }
  if (smoke) {
    nprocs = {2};
    steps = 1;
  }
  struct Case {
    int n;
    bool reshard, offload;
  };
  std::vector<Case> cases;
  for (int n : nprocs) {
    cases.push_back({n, true, false});
    if (n == 2 && !smoke) {
      cases.push_back({n, false, false});
      cases.push_back({n, true, true});
    }
  }
  const std::string exe = std::filesystem::read_symlink("/proc/self/exe").string();
  const auto out_path =
      std::filesystem::temp_directory_path() / ("verl_bench_fsdp_" + std::to_string(::getpid()) + ".jsonl");
  std::filesystem::remove(out_path);
  std::cout << "fully sharded step, " << (smoke ? "smoke model" : "CausalLM hidden 256 x 4 layers, vocab 4096")
            << ", Gloo, this machine: " << std::thread::hardware_concurrency() << " hardware threads" << std::endl;
  for (const auto& c : cases) {
    verl::dist::LocalLaunchOptions lo;
    lo.nprocs = c.n;
    lo.timeout = std::chrono::minutes(10);
    lo.env = {{"VERL_BENCH_FSDP_WORKER", std::string(smoke ? "smoke" : "small") + ":" + (c.reshard ? "1" : "0") + ":" +
                                             (c.offload ? "1" : "0") + ":" + std::to_string(steps)},
              {"VERL_BENCH_FSDP_OUT", out_path.string()},
              {"OMP_NUM_THREADS", "1"}};
    const auto result = verl::dist::launch_local(exe, {}, lo);
    if (!result.ok()) {
      std::cerr << "case nprocs=" << c.n << " failed: " << result.summary() << std::endl;
      return 1;
    }
  }
  std::ifstream in(out_path);
  std::string line;
  std::printf("%6s %7s %7s %10s %9s %12s %12s %12s %12s %12s %12s %12s\n", "nprocs", "reshard", "offload", "median_ms",
              "gathers", "gather_B", "rs_B", "ring_sent", "ring_min", "params_B", "peak_param_B", "optim_B");
  while (std::getline(in, line)) {
    const auto j = nlohmann::json::parse(line);
    const auto ll = [&](const char* k) { return static_cast<long long>(j[k].get<std::int64_t>()); };
    std::printf("%6d %7s %7s %10.1f %9lld %12lld %12lld %12lld %12lld %12lld %12lld %12lld\n", j["nprocs"].get<int>(),
                j["reshard_after_forward"].get<bool>() ? "yes" : "no", j["offload"].get<bool>() ? "yes" : "no",
                j["median_step_ms"].get<double>(), ll("all_gathers"), ll("all_gather_bytes"),
                ll("reduce_scatter_bytes"), ll("ring_bytes_sent"), ll("ring_minimum_bytes"), ll("parameter_bytes"),
                ll("peak_parameter_bytes"), ll("optimizer_state_bytes"));
  }
  std::filesystem::remove(out_path);
  return 0;
}
#else
int main() {
  std::cout << "bench_fully_sharded: not built (needs the Gloo headers and LibTorch >= 2.8 for the models)\n";
  return 0;
}
#endif
