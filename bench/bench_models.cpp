// Benchmarks of the transformer models (include/verl/models/{causal_lm,actor}.hpp), float32 on CPU, at the sizes
// issue 4 names: a small Llama-shaped model (4 layers x 512, 8 heads / 4 kv heads, intermediate 1408, vocab
// 32000, untied) at (B,T) = (1,128), (4,256), (8,512), and a ~0.5B Qwen2-shaped model (hidden 896, 24 layers,
// 14 heads, 2 kv heads, intermediate 4864, vocab 151936, tied; Qwen2.5-0.5B's shape) at (1,128), (4,256).
// Modes, each the same computation bench/compare_models_vs_transformers.py times in transformers:
//   forward          no-grad logits (B,T,V) (transformers: model(...).logits)
//   train            logits, next-token cross-entropy (mean), backward
//   logprob          no-grad log-probs of the last R = T/2 tokens: Actor::log_probs (fused, chunked) vs
//                    verl's dp_actor path in Python (logits, div_(temperature), slice, logprobs_from_logits_v2)
//   logprob_entropy  logprob plus the entropy (verl's compute_log_prob for old_log_probs: calculate_entropy=True)
//   logprob_train    the same as logprob with grad, mean, backward
// Attention alone, forward + backward of one layer's softmax(q k^T / sqrt(D)) v with causal masking, grouped-query
// heads: attention/short/... is verl::models::detail::short_attention (the kernel the models use on float32 CPU
// tensors up to 32 keys), attention/sdpa/... the path it replaces (key/value heads expanded, then
// at::scaled_dot_product_attention, ATen's flash kernel on CPU); shapes B x H/Hkv x T x D:
//   quickstart  128 x 4/2 x 10 x 16   (the quickstart GRPO batch)   T32: 128 x 4/2 x 32 x 16
//   qwen        8 x 14/2 x 32 x 64    (Qwen2.5-0.5B's heads)
// Counters: tokens/s (B*T per iteration, wall clock), tokens_per_cpu_s (per second of user + system CPU of the
// whole process, all threads: less sensitive to other processes on a shared machine), and peak_rss_MiB: the rise of VmHWM over VmRSS before the first
// (warm-up) iteration, after resetting VmHWM through /proc/self/clear_refs; the comparison script measures
// Python the same way, each case in a fresh process. Threads: VERL_BENCH_THREADS (default 2). Timed iterations of
// the 0.5B cases: VERL_BENCH_ITERATIONS (default 1; the small cases run for Google Benchmark's minimum time).
//
//   cmake --build build --target verl_bench_models
//   ./build/bench/verl_bench_models --benchmark_filter='small/forward'
//   .venv/bin/python bench/compare_models_vs_transformers.py --bench build/bench/verl_bench_models
#include <torch/torch.h>

#include "verl/models/actor.hpp"
#include "verl/models/causal_lm.hpp"
#include "verl/models/detail/short_attention.hpp"

#include <benchmark/benchmark.h>
#include <sys/resource.h>

#include <algorithm>
#include <cstdlib>
#include <cmath>
#include <stdexcept>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>
#include <utility>

using namespace verl::models;

namespace {

nlohmann::json model_json(const std::string& name) {
  if (name == "small") {
    return {{"model_type", "llama"},         {"vocab_size", 32000},      {"hidden_size", 512},
            {"intermediate_size", 1408},     {"num_hidden_layers", 4},   {"num_attention_heads", 8},
            {"num_key_value_heads", 4},      {"max_position_embeddings", 2048}, {"rms_norm_eps", 1e-6},
            {"rope_theta", 10000.0},         {"tie_word_embeddings", false}};
  }
  if (name == "qwen0.5b") {
    return {{"model_type", "qwen2"},         {"vocab_size", 151936},     {"hidden_size", 896},
            {"intermediate_size", 4864},     {"num_hidden_layers", 24},  {"num_attention_heads", 14},
            {"num_key_value_heads", 2},      {"max_position_embeddings", 32768}, {"rms_norm_eps", 1e-6},
            {"rope_theta", 1000000.0},       {"tie_word_embeddings", true}, {"use_sliding_window", false}};
  }
  // smoke: tiny, for CTest.
  return {{"model_type", "llama"},          {"vocab_size", 1000},       {"hidden_size", 64},
          {"intermediate_size", 96},        {"num_hidden_layers", 2},   {"num_attention_heads", 4},
          {"num_key_value_heads", 2},       {"max_position_embeddings", 128}, {"tie_word_embeddings", false}};
}

// One model alive at a time (the 0.5B one is 2 GB in float32).
CausalLM& model(const std::string& name) {
  static std::string current;
  static std::unique_ptr<CausalLM> lm;
  if (current != name) {
    lm.reset();
    torch::manual_seed(0);
    lm = std::make_unique<CausalLM>(TransformerConfig::from_json(model_json(name)));
    (*lm)->init_weights(0.02);
    current = name;
  }
  return *lm;
}

std::int64_t status_kib(const std::string& key) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(key + ":", 0) == 0) return std::stoll(line.substr(key.size() + 1));
  }
  return -1;
}

void reset_peak() { std::ofstream("/proc/self/clear_refs") << "5"; }

// User + system CPU seconds of the whole process (all threads).
double process_cpu_seconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) + 1e-6 * static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec);
}

enum class Mode { forward, train, logprob, logprob_entropy, logprob_train };

void run(benchmark::State& state, const std::string& name, Mode mode, std::int64_t b, std::int64_t t) {
  auto& lm = model(name);
  const auto v = lm->config().vocab_size;
  torch::manual_seed(1);
  const auto ids = torch::randint(v, {b, t}, torch::kLong);                           // (B,T)
  const auto mask = torch::ones({b, t}, torch::kLong);                                // (B,T)
  const auto pos = torch::arange(t, torch::kLong).unsqueeze(0).expand({b, t}).contiguous();  // (B,T)
  const verl::TokenBatch batch{ids, mask, pos, t / 2};
  Actor actor(lm);
  const auto params = actor.parameters();
  const auto step = [&] {
    if (mode == Mode::forward || mode == Mode::logprob || mode == Mode::logprob_entropy) {
      torch::NoGradGuard no_grad;
      lm->eval();
      if (mode == Mode::forward) {
        benchmark::DoNotOptimize(lm->forward(ids, mask, pos).data_ptr());            // (B,T,V)
      } else {
        const auto out = actor.log_probs(batch, {.compute_entropy = mode == Mode::logprob_entropy});
        benchmark::DoNotOptimize(out.log_probs.data_ptr());                           // (B,R)
      }
      return;
    }
    lm->train();
    for (auto p : params) p.mutable_grad() = torch::Tensor();
    torch::Tensor loss;
    if (mode == Mode::train) {
      const auto logits = lm->forward(ids, mask, pos);                                 // (B,T,V)
      loss = torch::cross_entropy_loss(logits.narrow(1, 0, t - 1).reshape({-1, v}), ids.narrow(1, 1, t - 1).reshape({-1}));
    } else {
      loss = actor.log_probs(batch).log_probs.mean();
    }
    loss.backward();
  };
  // Buffers the model keeps between calls (the no-grad logits block, the log-prob chunk block) are freed first so
  // that their memory shows up in the peak: Google Benchmark calls this function more than once per case.
  lm->release_logits_buffer();
  verl::models::release_log_prob_buffer();
  reset_peak();
  const auto rss_before = status_kib("VmRSS");
  step();  // warm-up (allocations, MKL/oneDNN initialisation), also part of the peak
  const double cpu_before = process_cpu_seconds();
  for (auto _ : state) step();
  const double cpu = process_cpu_seconds() - cpu_before;
  state.counters["tokens_per_cpu_s"] = static_cast<double>(state.iterations() * b * t) / cpu;
  state.counters["tokens/s"] = benchmark::Counter(static_cast<double>(state.iterations() * b * t), benchmark::Counter::kIsRate);
  state.counters["peak_rss_MiB"] = static_cast<double>(status_kib("VmHWM") - rss_before) / 1024.0;
}

//! Forward + backward of causal GQA attention through short_attention (`ours`) or expanded heads + SDPA.
void attention(benchmark::State& state, bool ours, std::int64_t b, std::int64_t h, std::int64_t hkv, std::int64_t t,
               std::int64_t d) {
  torch::manual_seed(0);
  const auto q = torch::randn({b, t, h, d}).transpose(1, 2).requires_grad_(true);  // (B,H,T,D) views, as in the model
  const auto k = torch::randn({b, t, hkv, d}).transpose(1, 2).requires_grad_(true);
  const auto v = torch::randn({b, t, hkv, d}).transpose(1, 2).requires_grad_(true);
  const auto g = torch::randn({b, h, t, d});
  const double scale = 1.0 / std::sqrt(static_cast<double>(d));
  const auto step = [&] {
    at::Tensor out;
    if (ours) {
      out = verl::models::detail::short_attention(q, k, v, at::Tensor(), scale);
      if (!out.defined()) throw std::runtime_error("short_attention declined the shape");
    } else {
      const auto groups = h / hkv;
      const auto ke = k.unsqueeze(2).expand({b, hkv, groups, t, d}).reshape({b, h, t, d});
      const auto ve = v.unsqueeze(2).expand({b, hkv, groups, t, d}).reshape({b, h, t, d});
      out = at::scaled_dot_product_attention(q, ke, ve, std::nullopt, 0.0, /*is_causal=*/true, scale);
    }
    out.backward(g);
  };
  step();  // warm-up
  for (auto _ : state) step();
  state.counters["tokens/s"] = benchmark::Counter(static_cast<double>(state.iterations() * b * t), benchmark::Counter::kIsRate);
}

const int registered = [] {
  const char* env = std::getenv("VERL_BENCH_THREADS");
  torch::set_num_threads(env != nullptr ? std::atoi(env) : 2);
  // Timed iterations of each 0.5B case (default 1; more for steadier figures or a profile of the steady state).
  const char* qwen_env = std::getenv("VERL_BENCH_ITERATIONS");
  const int qwen_iterations = qwen_env != nullptr ? std::max(1, std::atoi(qwen_env)) : 1;
  const std::pair<Mode, const char*> modes[] = {
      {Mode::forward, "forward"}, {Mode::train, "train"}, {Mode::logprob, "logprob"},
      {Mode::logprob_entropy, "logprob_entropy"}, {Mode::logprob_train, "logprob_train"}};
  for (const auto& [mode, mode_name] : modes) {
    benchmark::RegisterBenchmark((std::string("smoke/") + mode_name).c_str(),
                                 [mode = mode](benchmark::State& s) { run(s, "smoke", mode, 2, 16); });
  }
  struct AttentionShape {
    const char* name;
    std::int64_t b, h, hkv, t, d;
  };
  for (const auto& a : {AttentionShape{"smoke", 2, 4, 2, 6, 8}, AttentionShape{"quickstart", 128, 4, 2, 10, 16},
                        AttentionShape{"T32", 128, 4, 2, 32, 16}, AttentionShape{"qwen", 8, 14, 2, 32, 64}}) {
    for (const bool ours : {true, false}) {
      const std::string name = std::string(std::strcmp(a.name, "smoke") == 0 ? "smoke/" : "") + "attention/" +
                               (ours ? "short/" : "sdpa/") + a.name;
      benchmark::RegisterBenchmark(name.c_str(), [a, ours](benchmark::State& s) {
        attention(s, ours, a.b, a.h, a.hkv, a.t, a.d);
      })->Unit(benchmark::kMicrosecond)->UseRealTime();
    }
  }
  const std::pair<const char*, std::vector<std::pair<std::int64_t, std::int64_t>>> sizes[] = {
      {"small", {{1, 128}, {4, 256}, {8, 512}}}, {"qwen0.5b", {{1, 128}, {4, 256}}}};
  for (const auto& [name, shapes] : sizes) {
    for (const auto& [mode, mode_name] : modes) {
      for (const auto& [b, t] : shapes) {
        auto* bm = benchmark::RegisterBenchmark(
            (std::string(name) + "/" + mode_name + "/B" + std::to_string(b) + "/T" + std::to_string(t)).c_str(),
            [name = std::string(name), mode = mode, b = b, t = t](benchmark::State& s) { run(s, name, mode, b, t); });
        bm->Unit(benchmark::kMillisecond)->UseRealTime();
        if (std::string(name) == "qwen0.5b") bm->Iterations(qwen_iterations);  // 10-100 s each on 2 cores
      }
    }
  }
  return 0;
}();

}  // namespace

BENCHMARK_MAIN();
