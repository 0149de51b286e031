// The rollout engine (verl/rollout/engine.hpp): decode tokens/s against batch size, and against this
// machine's memory-bandwidth roofline measured in the same run (one decode step must read every weight once
// and each sequence's keys/values once: roofline step time = (weight bytes + KV bytes) / read bandwidth).
//
// Models (random weights, float32):
//   qwen0.5b  Qwen2-shaped: hidden 896, 24 layers, 14 heads / 2 kv heads, intermediate 4864, vocab 151936, tied
//   small     Llama-shaped: 4 layers x 512, 8 heads / 4 kv heads, intermediate 1408, vocab 32000
//
//   cmake --build build --target verl_bench_rollout
//   ./build/bench/verl_bench_rollout --benchmark_filter='decode|read_bandwidth'
//
// Workload mode (used by bench/compare_rollout_vs_transformers.py): runs a JSON workload on a Hugging Face model
// directory and prints one JSON line with the wall time and token counts:
//   ./build/bench/verl_bench_rollout --workload spec.json
// spec: {"model": dir, "prompts": [[ids...], ...], "max_tokens": [per prompt], "n": 8, "seed": 0,
//        "temperature": 1.0, "continuous_batching": true, "prefix_sharing": true, "max_num_seqs": 256,
//        "max_num_batched_tokens": 2048, "kv_cache_bytes": ..., "threads": 2}
#include <benchmark/benchmark.h>
#include <torch/torch.h>

#include "verl/models/actor.hpp"
#include "verl/models/causal_lm.hpp"
#include "verl/rollout/decode_linear.hpp"
#include "verl/rollout/engine.hpp"

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <string>

namespace {

using verl::models::CausalLM;
using verl::models::TransformerConfig;

nlohmann::json shape(const std::string& name) {
  if (name == "qwen0.5b") {
    return {{"model_type", "qwen2"}, {"vocab_size", 151936}, {"hidden_size", 896}, {"intermediate_size", 4864},
            {"num_hidden_layers", 24}, {"num_attention_heads", 14}, {"num_key_value_heads", 2},
            {"max_position_embeddings", 32768}, {"rms_norm_eps", 1e-6}, {"rope_theta", 1000000.0},
            {"tie_word_embeddings", true}, {"hidden_act", "silu"}};
  }
  if (name == "small") {
    return {{"model_type", "llama"}, {"vocab_size", 32000}, {"hidden_size", 512}, {"intermediate_size", 1408},
            {"num_hidden_layers", 4}, {"num_attention_heads", 8}, {"num_key_value_heads", 4},
            {"max_position_embeddings", 4096}, {"rms_norm_eps", 1e-6}, {"rope_theta", 10000.0},
            {"tie_word_embeddings", false}, {"hidden_act", "silu"}};
  }
  return {{"model_type", "llama"}, {"vocab_size", 256}, {"hidden_size", 64}, {"intermediate_size", 128},
          {"num_hidden_layers", 2}, {"num_attention_heads", 4}, {"num_key_value_heads", 2},
          {"max_position_embeddings", 512}, {"rms_norm_eps", 1e-6}, {"rope_theta", 10000.0},
          {"tie_word_embeddings", false}, {"hidden_act", "silu"}};
}

CausalLM& model(const std::string& name) {
  static std::map<std::string, CausalLM> models;
  auto it = models.find(name);
  if (it == models.end()) {
    torch::manual_seed(0);
    CausalLM lm(TransformerConfig::from_json(shape(name)));
    lm->init_weights(0.02);
    lm->eval();
    it = models.emplace(name, lm).first;
  }
  return it->second;
}

// Read-only memory bandwidth (bytes/s): the best of 5 sums over a 1 GiB float32 tensor on all threads. It is
// measured again right after each decode case, because this machine's bandwidth drifts between runs (28-58 GB/s
// seen), and the roofline of a case must be the bandwidth of its own moment.
double read_bandwidth_bytes_per_s() {
  static const auto x = torch::rand({std::int64_t{1} << 28});  // 1 GiB, touched once
  double best = 0;
  for (int i = 0; i < 5; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    benchmark::DoNotOptimize(x.sum().item<float>());
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::max(best, static_cast<double>(x.numel() * 4) / s);
  }
  return best;
}

void read_bandwidth(benchmark::State& state) {
  const auto x = torch::rand({state.range(0) / 4});
  for (auto _ : state) benchmark::DoNotOptimize(x.sum().item<float>());
  state.SetBytesProcessed(state.iterations() * state.range(0));
}

// y = x W^T for a decode step's few rows: decode_linear (one pass over W) vs at::linear (MKL), W (O,I) float32.
void linear_rows(benchmark::State& state, bool ours) {
  const auto m = state.range(0), out = state.range(1), in = state.range(2);
  torch::manual_seed(0);
  const auto w = torch::randn({out, in});
  const auto x = torch::randn({m, in});
  for (auto _ : state) {
    benchmark::DoNotOptimize((ours ? verl::rollout::decode_linear(x, w) : torch::linear(x, w)).data_ptr());
  }
  state.SetBytesProcessed(state.iterations() * out * in * 4);
}

std::int64_t parameter_bytes(const CausalLM& lm) {
  std::int64_t bytes = 0;
  for (const auto& p : lm->parameters()) bytes += p.numel() * static_cast<std::int64_t>(p.element_size());
  return bytes;
}

// One decode step of `batch` sequences with `context` cached tokens (prompt 64, then growing).
void decode(benchmark::State& state, const std::string& name) {
  auto& lm = model(name);
  const auto batch = state.range(0);
  const std::int64_t prompt_len = state.range(1);
  verl::rollout::EngineOptions o;
  o.max_num_seqs = batch;
  o.kv_cache_bytes = std::int64_t{4} << 30;
  verl::rollout::Engine engine(lm, o);
  verl::SamplingParams p;
  p.temperature = 0.0;
  p.ignore_eos = true;
  p.max_tokens = 256;  // far more than the timed steps
  const auto vocab = lm->config().vocab_size;
  for (std::int64_t i = 0; i < batch; ++i) {
    std::vector<std::int64_t> prompt(static_cast<std::size_t>(prompt_len));
    for (std::int64_t t = 0; t < prompt_len; ++t) prompt[static_cast<std::size_t>(t)] = (i * 131 + t * 17) % vocab;
    engine.add_request(prompt, p);
  }
  for (;;) {  // prefill everything (early sequences decode meanwhile) until a step is a pure decode of all
    const auto st = engine.step();
    if (st.prefill_tokens == 0 && st.scheduled_sequences == batch) break;
  }
  const double weight_bytes = static_cast<double>(parameter_bytes(lm));
  const double kv_per_token = static_cast<double>(engine.pool_shape().bytes_per_token());
  double bytes = 0;
  std::int64_t context = prompt_len + 1;
  for (auto _ : state) {
    const auto st = engine.step();
    if (st.scheduled_sequences != batch) state.SkipWithError("not a pure decode step");
    bytes += weight_bytes + kv_per_token * static_cast<double>(batch * context);
    ++context;
  }
  state.counters["tokens/s"] = benchmark::Counter(static_cast<double>(batch), benchmark::Counter::kIsIterationInvariantRate);
  if (name == "tiny") return;  // smoke: no roofline (its 1 GiB measurement is not worth the CI time)
  const double bw = read_bandwidth_bytes_per_s();
  state.counters["GB/s"] = benchmark::Counter(bytes / 1e9, benchmark::Counter::kIsRate);
  state.counters["read_GB/s"] = bw / 1e9;
  // roofline tokens/s = batch / ((weights + KV) / bandwidth); the fraction is achieved / roofline.
  state.counters["roofline_tokens/s"] =
      static_cast<double>(batch) * bw / (weight_bytes + kv_per_token * static_cast<double>(batch * (prompt_len + 1)));
  state.counters["of_roofline"] = benchmark::Counter(bytes / bw, benchmark::Counter::kIsRate);
}

// ---- workload mode -------------------------------------------------------------------------------------
int run_workload(const std::string& spec_path) {
  std::ifstream f(spec_path);
  const auto spec = nlohmann::json::parse(f);
  if (spec.contains("threads")) torch::set_num_threads(spec.at("threads").get<int>());
  auto lm = verl::models::load_causal_lm(spec.at("model").get<std::string>());
  lm->eval();
  verl::rollout::EngineOptions o;
  o.continuous_batching = spec.value("continuous_batching", true);
  o.enable_prefix_sharing = spec.value("prefix_sharing", true);
  o.max_num_seqs = spec.value("max_num_seqs", std::int64_t{256});
  o.max_num_batched_tokens = spec.value("max_num_batched_tokens", std::int64_t{2048});
  o.kv_cache_bytes = spec.value("kv_cache_bytes", std::int64_t{4} << 30);
  verl::rollout::Engine engine(lm, o);
  const auto prompts = spec.at("prompts").get<std::vector<std::vector<std::int64_t>>>();
  const auto max_tokens = spec.at("max_tokens").get<std::vector<std::int64_t>>();
  const auto t0 = std::chrono::steady_clock::now();
  for (std::size_t i = 0; i < prompts.size(); ++i) {
    verl::SamplingParams p;
    p.n = spec.value("n", std::int64_t{8});
    p.temperature = spec.value("temperature", 1.0);
    p.seed = spec.value("seed", std::uint64_t{0}) + i;
    p.max_tokens = max_tokens[i];
    p.ignore_eos = true;
    engine.add_request(prompts[i], p);
  }
  std::int64_t generated = 0, steps = 0;
  while (engine.has_unfinished()) {
    generated += engine.step().sampled_tokens;
    ++steps;
  }
  (void)engine.take_finished();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const auto& s = engine.stats();
  nlohmann::json out{{"seconds", seconds},
                     {"generated_tokens", generated},
                     {"steps", steps},
                     {"prefill_tokens", s.prefill_tokens},
                     {"preemptions", s.preemptions},
                     {"peak_kv_blocks", s.peak_used_blocks},
                     {"kv_bytes_per_token", engine.pool_shape().bytes_per_token()},
                     {"peak_kv_bytes", s.peak_used_blocks * engine.pool_shape().bytes_per_block()}};
  std::cout << out.dump() << std::endl;
  return 0;
}

}  // namespace

BENCHMARK(read_bandwidth)->Arg(1 << 30)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(linear_rows, decode_linear, true)
    ->ArgsProduct({{1, 4, 16, 64, 256}, {151936, 4864}, {896}})
    ->Args({1, 4864, 896})
    ->Args({1, 896, 4864})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(linear_rows, at_linear, false)
    ->ArgsProduct({{1, 4, 16, 64, 256}, {151936, 4864}, {896}})
    ->Args({1, 4864, 896})
    ->Args({1, 896, 4864})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(linear_rows, smoke, true)->Args({2, 64, 32});
BENCHMARK_CAPTURE(decode, qwen0.5b, std::string("qwen0.5b"))
    ->ArgsProduct({{1, 4, 16, 64, 256}, {64}})
    ->Iterations(8)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(decode, small, std::string("small"))
    ->ArgsProduct({{1, 4, 16, 64, 256}, {64}})
    ->Iterations(16)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(decode, smoke, std::string("tiny"))->Args({4, 8})->Iterations(4);

int main(int argc, char** argv) {
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::strcmp(argv[i], "--workload") == 0) return run_workload(argv[i + 1]);
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
