// Tensor-parallel training step (include/verl/dist/tensor_parallel_model.hpp) at tp = 1, 2 and 4 local
// processes over Gloo, next to the unsharded verl::models::CausalLM in one process, with the all-reduces each
// rank runs per step against Megatron's count.
//
// Model: a Llama-shaped CausalLM with random weights, float32: hidden 256, 4 layers, 8 heads / 4 kv heads,
// intermediate 704, vocab 4096, untied head (5.3M parameters). Each step: forward to per-token log-probs and
// entropy through the vocabulary-parallel head (TensorParallelCausalLM::log_probs), backward of a token-mean
// loss, SGD. Micro-batch: 8 sequences x 64 tokens on every rank (tp ranks share one batch). Reported per tp:
// median and min step time over the timed steps (after one warm-up), all-reduces and their payload bytes per
// step on rank 0, and the count Megatron's layout needs: forward 1 (embedding) + 2 per layer (attention, MLP)
// + 2 (log-prob max and the fused sum-exp/target/entropy statistics), backward 2 per layer + 1 (the LM head's
// input), all of (rows x tokens x hidden) activations except the two (rows x tokens) statistics messages.
//
// This machine has 2 cores: at tp = 4 the ranks time-share them; on a single node with GPUs tp = 2..8 is where
// tensor parallelism pays off. Every rank runs with one intra-op thread (OMP_NUM_THREADS=1).
//
//   cmake --build build --target verl_bench_tensor_parallel
//   ./build/bench/verl_bench_tensor_parallel                          # unsharded, tp = 1, 2, 4; 5 timed steps
//   ./build/bench/verl_bench_tensor_parallel --steps 10 --tp 2
//   ./build/bench/verl_bench_tensor_parallel --benchmark_filter=smoke  # CTest's smoke run: a tiny model, tp = 2
//
// Plain main (not Google Benchmark's runner): each case is a launch of N processes of this program.
#include <torch/torch.h>
#include <torch/version.h>

#include "verl/dist/gloo.hpp"
#include "verl/dist/launch_env.hpp"
#include "verl/dist/launch_local.hpp"

#if VERL_DIST_HAS_GLOO && (TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 8))
#define VERL_BENCH_TP 1
#include "verl/dist/tensor_parallel.hpp"
#include "verl/models/causal_lm.hpp"
#include "dist_bench_model.hpp"
#else
#define VERL_BENCH_TP 0
#endif

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <fstream>
#include <iostream>
#include <string>
#include <thread>
#include <unistd.h>
#include <vector>

#if VERL_BENCH_TP
namespace {

using Shape = verl_bench::DistShape;
using verl_bench::kSmall;
using verl_bench::kSmoke;
using verl_bench::make_lm;

struct Inputs {
  at::Tensor ids, pos, targets;
};
Inputs make_inputs(const Shape& s) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(1234);  // the same batch on every tp rank
  Inputs in;
  in.ids = torch::randint(0, s.vocab, {s.rows, s.tokens}, gen);                                   // (b,T)
  in.pos = torch::arange(s.tokens).unsqueeze(0).expand({s.rows, s.tokens}).contiguous();           // (b,T)
  in.targets = in.ids.roll(-1, 1);                                                                  // (b,T)
  return in;
}

//! The world communicator, counting the all-reduces (calls and payload bytes) made through it.
template <class Comm>
struct Counting {
  Comm* comm;
  std::int64_t calls = 0, bytes = 0;
  [[nodiscard]] int rank() const { return comm->rank(); }
  [[nodiscard]] int world_size() const { return comm->world_size(); }
  void all_reduce(at::Tensor& t, verl::ReduceOp op) {
    ++calls;
    bytes += static_cast<std::int64_t>(t.numel() * t.element_size());
    comm->all_reduce(t, op);
  }
  void broadcast(at::Tensor& t, int root) { comm->broadcast(t, root); }
  void all_gather(std::vector<at::Tensor>& out, const at::Tensor& in) { comm->all_gather(out, in); }
  void barrier() { comm->barrier(); }
};

//! One rank of one case (tp = 0: the unsharded model in this one process); rank 0 appends a JSON line to
//! VERL_BENCH_TP_OUT.
int worker(const Shape& shape, bool unsharded, int steps) {
  using Gloo = verl::dist::ProcessGroupCommunicator<verl::dist::gloo>;
  auto world = Gloo::init(verl::dist::launch_env_from_environ(), {.timeout = std::chrono::seconds(120)});
  const auto in = make_inputs(shape);
  const double tokens = static_cast<double>(shape.rows * shape.tokens);
  auto lm = make_lm(shape);
  std::vector<at::Tensor> params;
  std::function<at::Tensor()> loss_of;
  Counting<Gloo> counting{&world};
  verl::dist::TensorParallelGroup group(counting);
  verl::dist::TensorParallelCausalLM tp{nullptr};
  if (unsharded) {
    params = lm->parameters();
    loss_of = [&] {
      const auto logits = lm->forward(in.ids, at::Tensor(), in.pos);                            // (b,T,V)
      const auto lp = logits.log_softmax(-1).gather(-1, in.targets.unsqueeze(-1)).squeeze(-1);  // (b,T)
      const auto ent = (logits.softmax(-1) * logits).sum(-1).neg() + logits.logsumexp(-1);      // (b,T)
      return (lp.sum() + 0.01 * ent.sum()).neg() / tokens;
    };
  } else {
    tp = verl::dist::TensorParallelCausalLM(lm, group);
    lm = nullptr;  // only the shards stay
    params = tp->parameters();
    loss_of = [&] {
      const auto out = tp->log_probs(in.ids, at::Tensor(), in.pos, in.targets, {.compute_entropy = true});  // (b,T)
      return (out.log_probs.sum() + 0.01 * out.entropy.sum()).neg() / tokens;
    };
  }
  torch::optim::SGD opt(params, torch::optim::SGDOptions(1e-3));
  std::vector<double> times;
  std::int64_t calls = 0, bytes = 0;
  for (int s = 0; s <= steps; ++s) {
    world.barrier();
    counting.calls = counting.bytes = 0;
    const auto t0 = std::chrono::steady_clock::now();
    opt.zero_grad();
    loss_of().backward();
    opt.step();
    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    calls = counting.calls;
    bytes = counting.bytes;
    if (s > 0) times.push_back(dt);  // step 0 warms up the allocator and Gloo's buffers
  }
  std::sort(times.begin(), times.end());
  std::int64_t local_params = 0;
  for (const auto& p : params) local_params += p.numel();
  const std::int64_t n = world.world_size();
  const std::int64_t act = shape.rows * shape.tokens * shape.hidden * 4, stat = shape.rows * shape.tokens * 4;
  const std::int64_t megatron_calls = n > 1 ? 4 * shape.layers + 4 : 0;
  const std::int64_t megatron_bytes = n > 1 ? (4 * shape.layers + 2) * act + stat + 3 * stat : 0;
  if (world.rank() == 0) {
    nlohmann::json out{{"tp", unsharded ? 0 : n},
                       {"parameters_per_rank", local_params},
                       {"median_step_ms", 1e3 * times[times.size() / 2]},
                       {"min_step_ms", 1e3 * times.front()},
                       {"all_reduces_per_step", calls},
                       {"all_reduce_payload_bytes", bytes},
                       {"megatron_all_reduces", megatron_calls},
                       {"megatron_payload_bytes", megatron_bytes}};
    const char* path = std::getenv("VERL_BENCH_TP_OUT");
    std::ofstream(path ? path : "/dev/stdout", std::ios::app) << out.dump() << "\n";
  }
  world.barrier();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  bool smoke = false;
  int steps = 5;
  std::vector<int> cases{0, 1, 2, 4};  // 0: the unsharded model
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--benchmark_filter=smoke") {
      smoke = true;
    } else if (a == "--steps" && i + 1 < argc) {
      steps = std::atoi(argv[++i]);
    } else if (a == "--tp" && i + 1 < argc) {
      cases = {std::atoi(argv[++i])};
    }  // other --benchmark_* flags (CTest's smoke run passes --benchmark_min_time) are ignored
  }
  if (const char* mode = std::getenv("VERL_BENCH_TP_WORKER")) {
    const std::string m = mode;  // "<small|smoke>:<unsharded|tp>:<steps>"
    const Shape& shape = m.rfind("smoke", 0) == 0 ? kSmoke : kSmall;
    return worker(shape, m.find(":unsharded:") != std::string::npos, std::atoi(m.substr(m.rfind(':') + 1).c_str()));
  }
  if (smoke) {
    cases = {2};
    steps = 1;
  }
  const std::string exe = std::filesystem::read_symlink("/proc/self/exe").string();
  const auto out_path =
      std::filesystem::temp_directory_path() / ("verl_bench_tp_" + std::to_string(::getpid()) + ".jsonl");
  std::filesystem::remove(out_path);
  std::cout << "tensor-parallel step, " << (smoke ? "smoke model" : "CausalLM hidden 256 x 4 layers, vocab 4096")
            << ", Gloo, this machine: " << std::thread::hardware_concurrency() << " hardware threads" << std::endl;
  for (int n : cases) {
    verl::dist::LocalLaunchOptions lo;
    lo.nprocs = std::max(n, 1);
    lo.timeout = std::chrono::minutes(10);
    lo.env = {{"VERL_BENCH_TP_WORKER", std::string(smoke ? "smoke" : "small") + (n == 0 ? ":unsharded:" : ":tp:") +
                                           std::to_string(steps)},
              {"VERL_BENCH_TP_OUT", out_path.string()},
              {"OMP_NUM_THREADS", "1"}};
    const auto result = verl::dist::launch_local(exe, {}, lo);
    if (!result.ok()) {
      std::cerr << "case tp=" << n << " failed: " << result.summary() << std::endl;
      return 1;
    }
  }
  std::ifstream in(out_path);
  std::string line;
  std::printf("%10s %12s %11s %9s %11s %16s %11s %16s\n", "tp", "params/rank", "median_ms", "min_ms", "allreduces",
              "payload_bytes", "megatron_n", "megatron_bytes");
  while (std::getline(in, line)) {
    const auto j = nlohmann::json::parse(line);
    const int tp = j["tp"].get<int>();
    std::printf("%10s %12lld %11.1f %9.1f %11lld %16lld %11lld %16lld\n",
                tp == 0 ? "unsharded" : std::to_string(tp).c_str(),
                static_cast<long long>(j["parameters_per_rank"].get<std::int64_t>()), j["median_step_ms"].get<double>(),
                j["min_step_ms"].get<double>(), static_cast<long long>(j["all_reduces_per_step"].get<std::int64_t>()),
                static_cast<long long>(j["all_reduce_payload_bytes"].get<std::int64_t>()),
                static_cast<long long>(j["megatron_all_reduces"].get<std::int64_t>()),
                static_cast<long long>(j["megatron_payload_bytes"].get<std::int64_t>()));
  }
  std::filesystem::remove(out_path);
  return 0;
}
#else
int main() {
  std::cout << "bench_tensor_parallel: not built (needs the Gloo headers and LibTorch >= 2.8 for the models)\n";
  return 0;
}
#endif
