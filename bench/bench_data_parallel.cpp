// Data-parallel training step (include/verl/dist/data_parallel.hpp) at 1, 2 and 4 local processes over Gloo,
// with and without overlapping the bucket all-reduces with the backward pass, and the bytes each rank
// all-reduces per step against the ring minimum 2(N-1)/N x the gradient bytes.
//
// Model: a Llama-shaped verl::models::CausalLM with random weights, float32: hidden 256, 4 layers, 8 heads /
// 4 kv heads, intermediate 704, vocab 4096, untied head (5.3M parameters, 21 MiB of gradients: DDP's 1 MiB
// first bucket, then 25 MiB buckets). Each step: every rank runs forward + backward of the SFT token-mean loss
// on its micro-batch (8 sequences x 64 tokens; weak scaling: the global batch grows with N), the all-reduce
// (mean over ranks), then AdamW. Reported per N and mode: median step time over the timed steps (after one
// warm-up step), bucket all-reduces per step, payload bytes, ring bytes sent per rank, and the ratio to the
// ring minimum.
//
// This machine has 2 cores: at N = 4 the ranks time-share them, so compute does not scale past 2 ranks and
// the 4-rank times mostly measure contention. Every rank runs with one intra-op thread (OMP_NUM_THREADS=1).
//
//   cmake --build build --target verl_bench_data_parallel
//   ./build/bench/verl_bench_data_parallel                          # N = 1, 2, 4 x overlap on/off, 5 timed steps
//   ./build/bench/verl_bench_data_parallel --steps 10 --nprocs 2 --rows 1 --bucket_cap_mb 2   # less compute per
//                                                                        # rank, smaller buckets (more overlap)
//   ./build/bench/verl_bench_data_parallel --benchmark_filter=smoke  # CTest's smoke run: a tiny model, 2 ranks
//   ./build/bench/verl_bench_data_parallel --backend nccl --nprocs 1   # CUDA builds: NCCL, one GPU per rank
//                                                                        # (cuda:LOCAL_RANK), default intra-op threads
//
// Plain main (not Google Benchmark's runner): each case is a launch of N processes of this program.
#include <torch/torch.h>
#include <torch/version.h>

#include "verl/dist/data_parallel.hpp"
#include "verl/dist/gloo.hpp"
#include "verl/dist/launch_env.hpp"
#include "verl/dist/nccl.hpp"
#include "verl/dist/launch_local.hpp"

#if VERL_DIST_HAS_GLOO && (TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 8))
#define VERL_BENCH_DP 1
#include "verl/models/actor.hpp"
#include "verl/models/causal_lm.hpp"
#include "dist_bench_model.hpp"
#else
#define VERL_BENCH_DP 0
#endif

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <thread>
#include <type_traits>
#include <unistd.h>
#include <vector>

#if VERL_BENCH_DP
#if defined(USE_C10D_NCCL) && defined(VERL_WITH_CUDA)
#define VERL_BENCH_DP_NCCL 1
#else
#define VERL_BENCH_DP_NCCL 0
#endif

namespace {

using Shape = verl_bench::DistShape;
using verl_bench::kSmall;
using verl_bench::kSmoke;
using verl_bench::make_lm;

//! One rank of one case: times `steps` steps after a warm-up, rank 0 writes a JSON line to VERL_BENCH_DP_OUT.
//! Backend: verl::dist::gloo (CPU tensors) or verl::dist::nccl (the model and batch on cuda:LOCAL_RANK).
template <class Backend>
int worker(const Shape& shape, bool overlap, int steps, double bucket_cap_mb) {
  using Comm = verl::dist::ProcessGroupCommunicator<Backend>;
  const auto place = verl::dist::launch_env_from_environ();
  auto world = Comm::init(place, {.timeout = std::chrono::seconds(120)});
  constexpr bool on_gpu = std::is_same_v<Backend, verl::dist::nccl>;
  const torch::Device device = on_gpu ? torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(place.local_rank))
                                      : torch::Device(torch::kCPU);
  const auto sync = [&] {
#if VERL_BENCH_DP_NCCL
    if constexpr (on_gpu) torch::cuda::synchronize(device.index());  // time the GPU work, not its launch
#endif
  };
  auto lm = make_lm(shape);
  lm->to(device);
  verl::models::Actor actor(lm);
  verl::dist::DataParallelOptions o;
  o.overlap = overlap;
  o.bucket_cap_bytes = static_cast<std::int64_t>(bucket_cap_mb * (1 << 20));
  verl::dist::DataParallel dp(world, actor.parameters(), o);
  torch::optim::AdamW opt(actor.parameters(), torch::optim::AdamWOptions(1e-4));
  auto gen = at::make_generator<at::CPUGeneratorImpl>(1234 + world.rank());
  const auto ids = torch::randint(2, shape.vocab, {shape.rows, shape.tokens}, gen).to(device);  // (b,T)
  const auto mask = torch::ones({shape.rows, shape.tokens}, torch::kLong).to(device);           // (b,T)
  const auto pos =
      torch::arange(shape.tokens).unsqueeze(0).expand({shape.rows, shape.tokens}).contiguous().to(device);  // (b,T)
  const verl::TokenBatch tb{ids, mask, pos, shape.tokens - 1};
  const double global_tokens = static_cast<double>(shape.rows * (shape.tokens - 1) * world.world_size());
  std::vector<double> times;
  for (int s = 0; s <= steps; ++s) {
    sync();
    world.barrier();
    const auto t0 = std::chrono::steady_clock::now();
    opt.zero_grad();
    auto logp = actor.log_probs(tb).log_probs;  // (b,T-1)
    logp.sum().neg().div(global_tokens).mul(static_cast<double>(world.world_size())).backward();
    dp.finish();
    opt.step();
    sync();
    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (s > 0) times.push_back(dt);  // step 0 warms up the allocator and Gloo's buffers
  }
  std::sort(times.begin(), times.end());
  const auto t = dp.last_step_traffic();
  std::int64_t params = 0;
  for (const auto& p : actor.parameters()) params += p.numel();
  const std::int64_t n = world.world_size();
  const std::int64_t ring_minimum = n > 1 ? 2 * (n - 1) * dp.gradient_bytes() / n : 0;
  if (world.rank() == 0) {
    nlohmann::json out{{"nprocs", n},
                       {"backend", on_gpu ? "nccl" : "gloo"},
                       {"overlap", overlap},
                       {"parameters", params},
                       {"median_step_ms", 1e3 * times[times.size() / 2]},
                       {"min_step_ms", 1e3 * times.front()},
                       {"all_reduces_per_step", t.collectives},
                       {"buckets", dp.num_buckets()},
                       {"buckets_started_in_backward", t.started_in_backward},
                       {"gradient_bytes", dp.gradient_bytes()},
                       {"payload_bytes_per_step", t.payload_bytes},
                       {"ring_bytes_sent_per_step", t.ring_bytes_sent},
                       {"ring_minimum_bytes", ring_minimum},
                       {"ratio_to_ring_minimum",
                        ring_minimum > 0 ? static_cast<double>(t.ring_bytes_sent) / static_cast<double>(ring_minimum)
                                         : 0.0}};
    const char* path = std::getenv("VERL_BENCH_DP_OUT");
    std::ofstream(path ? path : "/dev/stdout", std::ios::app) << out.dump() << "\n";
  }
  world.barrier();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  bool smoke = false;
  int steps = 5;
  std::int64_t rows = kSmall.rows;
  double bucket_cap_mb = 25;  // DDP's default
  std::vector<int> nprocs{1, 2, 4};
  std::string backend = "gloo";
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--benchmark_filter=smoke") {
      smoke = true;
    } else if (a == "--steps" && i + 1 < argc) {
      steps = std::atoi(argv[++i]);
    } else if (a == "--nprocs" && i + 1 < argc) {
      nprocs = {std::atoi(argv[++i])};
    } else if (a == "--rows" && i + 1 < argc) {
      rows = std::atoll(argv[++i]);
    } else if (a == "--bucket_cap_mb" && i + 1 < argc) {
      bucket_cap_mb = std::atof(argv[++i]);
    } else if (a == "--backend" && i + 1 < argc) {
      backend = argv[++i];
    }  // other --benchmark_* flags (CTest's smoke run passes --benchmark_min_time) are ignored
  }
  if (backend != "gloo" && backend != "nccl") {
    std::cerr << "--backend " << backend << ": expected gloo or nccl\n";
    return 2;
  }
  if (backend == "nccl" && !VERL_BENCH_DP_NCCL) {
    std::cerr << "--backend nccl: this build has no NCCL (needs a CUDA build of LibTorch and VERL_WITH_CUDA)\n";
    return 2;
  }
  if (const char* mode = std::getenv("VERL_BENCH_DP_WORKER")) {
    const std::string m = mode;  // "<small|smoke>:<0|1>:<steps>:<rows>:<bucket_cap_mb>:<gloo|nccl>"
    Shape shape = m.rfind("smoke", 0) == 0 ? kSmoke : kSmall;
    const auto c1 = m.find(':'), c2 = m.find(':', c1 + 1), c3 = m.find(':', c2 + 1), c4 = m.find(':', c3 + 1),
               c5 = m.find(':', c4 + 1);
    const bool overlap = m.substr(c1 + 1, c2 - c1 - 1) == "1";
    shape.rows = std::atoll(m.substr(c3 + 1, c4 - c3 - 1).c_str());
    const int worker_steps = std::atoi(m.substr(c2 + 1, c3 - c2 - 1).c_str());
    const double cap = std::atof(m.substr(c4 + 1, c5 - c4 - 1).c_str());
    try {
#if VERL_BENCH_DP_NCCL
      if (m.substr(c5 + 1) == "nccl") return worker<verl::dist::nccl>(shape, overlap, worker_steps, cap);
#endif
      return worker<verl::dist::gloo>(shape, overlap, worker_steps, cap);
    } catch (const std::exception& e) {
      std::cerr << e.what() << std::endl;
      return 1;
    }
  }
  if (smoke) {
    nprocs = {2};
    steps = 1;
    rows = kSmoke.rows;
  }
  const std::string exe = std::filesystem::read_symlink("/proc/self/exe").string();
  const auto out_path = std::filesystem::temp_directory_path() / ("verl_bench_dp_" + std::to_string(::getpid()) + ".jsonl");
  std::filesystem::remove(out_path);
  std::cout << "data-parallel step, " << (smoke ? "smoke model" : "CausalLM hidden 256 x 4 layers, vocab 4096")
            << ", " << rows << " rows per rank, bucket_cap_mb " << bucket_cap_mb << ", " << backend
            << ", this machine: " << std::thread::hardware_concurrency() << " hardware threads" << std::endl;
  for (int n : nprocs) {
    for (bool overlap : {true, false}) {
      if (n == 1 && !overlap) continue;  // one rank communicates nothing
      verl::dist::LocalLaunchOptions lo;
      lo.nprocs = n;
      lo.timeout = std::chrono::minutes(10);
      lo.env = {{"VERL_BENCH_DP_WORKER", std::string(smoke ? "smoke" : "small") + ":" + (overlap ? "1" : "0") + ":" +
                                             std::to_string(steps) + ":" + std::to_string(rows) + ":" +
                                             std::to_string(bucket_cap_mb) + ":" + backend},
                {"VERL_BENCH_DP_OUT", out_path.string()}};
      if (backend == "gloo") lo.env.emplace_back("OMP_NUM_THREADS", "1");  // N CPU ranks share the cores
      const auto result = verl::dist::launch_local(exe, {}, lo);
      if (!result.ok()) {
        std::cerr << "case nprocs=" << n << " overlap=" << overlap << " failed: " << result.summary() << std::endl;
        return 1;
      }
    }
  }
  std::ifstream in(out_path);
  std::string line;
  std::printf("%6s %8s %12s %10s %10s %14s %14s %14s %8s\n", "nprocs", "overlap", "median_ms", "min_ms", "allreduce",
              "grad_bytes", "ring_sent", "ring_min", "ratio");
  while (std::getline(in, line)) {
    const auto j = nlohmann::json::parse(line);
    std::printf("%6d %8s %12.1f %10.1f %10d %14lld %14lld %14lld %8.3f\n", j["nprocs"].get<int>(),
                j["overlap"].get<bool>() ? "yes" : "no", j["median_step_ms"].get<double>(),
                j["min_step_ms"].get<double>(), j["all_reduces_per_step"].get<int>(),
                static_cast<long long>(j["gradient_bytes"].get<std::int64_t>()),
                static_cast<long long>(j["ring_bytes_sent_per_step"].get<std::int64_t>()),
                static_cast<long long>(j["ring_minimum_bytes"].get<std::int64_t>()), j["ratio_to_ring_minimum"].get<double>());
  }
  std::filesystem::remove(out_path);
  return 0;
}
#else
int main() {
  std::cout << "bench_data_parallel: not built (needs the Gloo headers and LibTorch >= 2.8 for the models)\n";
  return 0;
}
#endif
