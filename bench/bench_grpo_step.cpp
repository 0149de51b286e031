// One GRPO training step of verl::trainer::PPOTrainer<verl::GRPO<>> (generate -> reward -> old and reference
// log-probs -> KL/advantages -> one actor update), split into the trainer's own timing sections, and tokens/s.
//
// Models (random weights, float32):
//   quickstart  examples/00_quickstart's Llama shape: 2 layers x 64, 4 heads / 2 kv heads, intermediate 128, vocab 16
//   qwen0.5b    Qwen2.5-0.5B's shape: hidden 896, 24 layers, 14 heads / 2 kv heads, intermediate 4864,
//               vocab 151936, tied embeddings (494M parameters)
// Batch shapes (prompts x n, prompt tokens, response tokens; every response is forced to its full length with
// SamplingParams::ignore_eos, so every step does the same work):
//   smoke       quickstart model, 2 x 2, 6, 4         (CTest smoke run, a few ms per step)
//   quickstart  quickstart model, 16 x 8, 6, 4        (the quickstart's GRPO batch)
//   qwen0.5b    qwen0.5b model, 2 x 4, 32, 32
// Counters are seconds per step of each section (verl's timing_s/<name>: gen, reward, old_log_prob, ref, kl + adv
// as adv, update_actor), `logprob_s` = old_log_prob + ref, and tokens/s = (prompt + response tokens) / step time,
// verl's perf/throughput on one device. The first step (engine start, allocator warm-up) is run before timing.
//
//   cmake --build build --target verl_bench_grpo_step
//   ./build/bench/verl_bench_grpo_step --benchmark_filter=quickstart
//   ./build/bench/verl_bench_grpo_step --benchmark_filter=qwen0_5b      # ~10-20 s per step on 2 cores
//
// Workload mode (used by bench/compare_grpo_vs_trl.py, the side-by-side with TRL's GRPOTrainer): runs GRPO steps
// on a Hugging Face model directory and prints one JSON line with the per-step section times:
//   ./build/bench/verl_bench_grpo_step --workload spec.json
// spec: {"model": dir, "prompts": [[ids...], ...] (all of one length; steps x prompts_per_step of them, used in
//        order), "prompts_per_step": P, "n": 8, "response_length": R, "steps": K (timed), "warmup_steps": 1,
//        "threads": 2, "lr": 1e-6, "kl_coef": 0.04, "temperature": 1.0, "seed": 0, "micro_batch_size": P*n,
//        "eos_token_id": 1, "pad_token_id": 0, "fused_adamw": false (true: torch's fused AdamW, TRL's default),
//        "bypass_mode": false (true: old log-probs are the sampler's, no recompute pass; verl's
//        algorithm.rollout_correction.bypass_mode)}
// The reward is the one the comparison gives TRL: the fraction of response tokens whose id is even, computed on
// the decoded text ("12 7 40" -> 2/3).
#include <benchmark/benchmark.h>
#include <torch/torch.h>

#include "verl/algos/presets.hpp"
#include "verl/models/actor.hpp"
#include "verl/models/causal_lm.hpp"
#include "verl/pipeline/reward_scorer.hpp"
#include "verl/trainer/ppo_trainer.hpp"

#include <nlohmann/json.hpp>

#include <chrono>
#include <ctime>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

using Trainer = verl::trainer::PPOTrainer<verl::GRPO<>, verl::models::Actor, verl::no_critic, verl::models::Reference>;

// Token ids as decimal words ("5 17 903"), the word-level tokenizer compare_grpo_vs_trl.py gives TRL. Ids 0 (pad)
// and 1 (eos) are special and decode to nothing, as TRL's batch_decode(skip_special_tokens=True). Satisfies
// verl::Tokenizer.
struct IdTokenizer {
  std::int64_t vocab = 16;
  [[nodiscard]] std::vector<std::int64_t> encode(const std::string& text) const {
    std::vector<std::int64_t> ids;
    std::istringstream in(text);
    for (std::int64_t id = 0; in >> id;) ids.push_back(id);
    return ids;
  }
  [[nodiscard]] std::string decode(const std::vector<std::int64_t>& ids) const {
    std::string text;
    for (const auto id : ids) {
      if (id < 2) continue;
      if (!text.empty()) text += ' ';
      text += std::to_string(id);
    }
    return text;
  }
  [[nodiscard]] std::int64_t eos_token_id() const { return 1; }
  [[nodiscard]] std::int64_t pad_token_id() const { return 0; }
  [[nodiscard]] std::int64_t vocab_size() const { return vocab; }
};

// The fraction of response words that are even numbers (0 for an empty response).
struct EvenFraction {
  verl::RewardOutput operator()(const verl::RewardInput& in) const {
    std::istringstream words{std::string(in.response)};
    std::int64_t total = 0, even = 0;
    for (std::int64_t id = 0; words >> id; ++total) even += id % 2 == 0 ? 1 : 0;
    return total == 0 ? 0.0 : static_cast<double>(even) / static_cast<double>(total);
  }
};

nlohmann::json model_config(const std::string& name) {
  if (name == "qwen0.5b") {
    return {{"model_type", "qwen2"}, {"vocab_size", 151936}, {"hidden_size", 896}, {"intermediate_size", 4864},
            {"num_hidden_layers", 24}, {"num_attention_heads", 14}, {"num_key_value_heads", 2},
            {"max_position_embeddings", 32768}, {"rms_norm_eps", 1e-6}, {"rope_theta", 1000000.0},
            {"tie_word_embeddings", true}, {"hidden_act", "silu"}, {"pad_token_id", 0}, {"eos_token_id", 1}};
  }
  // examples/00_quickstart.cpp's small_llama()
  return {{"model_type", "llama"}, {"vocab_size", 16}, {"hidden_size", 64}, {"intermediate_size", 128},
          {"num_hidden_layers", 2}, {"num_attention_heads", 4}, {"num_key_value_heads", 2},
          {"max_position_embeddings", 32}, {"rms_norm_eps", 1e-6}, {"tie_word_embeddings", false},
          {"pad_token_id", 0}, {"eos_token_id", 1}};
}

//! What one run of GRPO steps needs besides the model.
struct StepSetup {
  std::int64_t prompts_per_step = 2;
  std::int64_t n = 2;
  std::int64_t response_length = 4;
  double lr = 1e-6;
  double kl_coef = 0.04;
  double temperature = 1.0;
  std::uint64_t seed = 0;
  std::int64_t micro_batch_size = 0;  // sequences per forward/backward; 0 = the whole batch (TRL's default shape)
  std::int64_t eos_token_id = 1;
  std::int64_t pad_token_id = 0;
  bool fused_adamw = false;  // torch's fused AdamW kernel (TRL's default optimizer, adamw_torch_fused)
  bool bypass_mode = false;  // old_log_probs = the sampler's log-probs, no recompute pass (PPOOptions::bypass_mode)
};

verl::models::ActorOptions actor_options(const StepSetup& s) {
  verl::models::ActorOptions o;
  o.generation.eos_token_ids = {s.eos_token_id};
  o.generation.pad_token_id = s.pad_token_id;
  return o;
}

verl::trainer::PPOOptions trainer_options(const StepSetup& s) {
  verl::trainer::PPOOptions o;
  o.rollout.n = s.n;
  o.rollout.max_tokens = s.response_length;
  o.rollout.ignore_eos = true;  // every response is response_length tokens (TRL: min_new_tokens = max_new_tokens)
  o.rollout.temperature = s.temperature;
  o.rollout.top_p = 1.0;
  o.rollout.top_k = -1;
  o.rollout.seed = s.seed;
  const auto sequences = s.prompts_per_step * s.n;
  o.ppo_mini_batch_size = s.prompts_per_step;  // one optimizer step per batch, as TRL with steps_per_generation 1
  o.ppo_micro_batch_size = s.micro_batch_size > 0 ? s.micro_batch_size : sequences;
  o.log_prob_micro_batch_size = o.ppo_micro_batch_size;
  o.ppo_epochs = 1;
  o.grad_clip = 1.0;
  o.actor_optim.lr = s.lr;
  o.actor_optim.weight_decay = 0.0;  // TRL's default
  o.actor_optim.fused = s.fused_adamw;
  o.bypass_mode = s.bypass_mode;
  o.kl_loss_coef = s.kl_coef;        // k3 KL loss, as TRL's beta
  o.total_training_steps = 1 << 20;
  return o;
}

// Left-padded prompts of one length (no padding then) and their per-item data.
verl::trainer::PromptBatch prompt_batch(const std::vector<std::vector<std::int64_t>>& rows, std::size_t first,
                                        std::int64_t count, const IdTokenizer& tok) {
  const auto width = static_cast<std::int64_t>(rows.at(first).size());
  auto ids = torch::empty({count, width}, torch::kLong);                           // (P,T)
  std::vector<verl::ItemInfo> items;
  for (std::int64_t i = 0; i < count; ++i) {
    const auto& row = rows.at(first + static_cast<std::size_t>(i));
    if (static_cast<std::int64_t>(row.size()) != width) {
      throw verl::InputError("bench_grpo_step: prompt " + std::to_string(first + static_cast<std::size_t>(i)) +
                             " has " + std::to_string(row.size()) + " tokens, expected " + std::to_string(width) +
                             " (all prompts must have one length)");
    }
    ids[i].copy_(torch::tensor(row, torch::kLong));
    verl::ItemInfo info;
    info.prompt = tok.decode(row);
    info.data_source = "bench";
    items.push_back(std::move(info));
  }
  auto mask = torch::ones({count, width}, torch::kLong);                           // (P,T)
  auto positions = torch::arange(width, torch::kLong).unsqueeze(0).expand({count, width}).contiguous();  // (P,T)
  return verl::trainer::PromptBatch(ids, mask, positions, std::move(items));
}

std::vector<std::vector<std::int64_t>> random_prompts(std::int64_t count, std::int64_t length, std::int64_t vocab,
                                                      std::uint64_t seed) {
  torch::manual_seed(static_cast<std::int64_t>(seed));
  const auto t = torch::randint(2, vocab, {count, length}, torch::kLong).contiguous();  // (count,length)
  std::vector<std::vector<std::int64_t>> rows;
  for (std::int64_t i = 0; i < count; ++i) {
    const auto* p = t[i].data_ptr<std::int64_t>();
    rows.emplace_back(p, p + length);
  }
  return rows;
}

// The per-step split the benchmark and the comparison report, from a step's metrics and its wall time.
struct Split {
  double gen = 0, reward = 0, old_log_prob = 0, ref = 0, adv = 0, update = 0, wall = 0;
  [[nodiscard]] double other() const { return wall - gen - reward - old_log_prob - ref - adv - update; }
};

Split split_of(const std::map<std::string, double>& m, double wall) {
  const auto get = [&](const char* k) { return m.count(k) != 0 ? m.at(k) : 0.0; };
  Split s;
  s.gen = get("timing_s/gen");
  s.reward = get("timing_s/reward");
  s.old_log_prob = get("timing_s/old_log_prob");
  s.ref = get("timing_s/ref");
  s.adv = get("timing_s/kl") + get("timing_s/adv");
  s.update = get("timing_s/update_actor");
  s.wall = wall;
  return s;
}

template <class F>
double seconds_of(F&& f) {
  const auto t0 = std::chrono::steady_clock::now();
  f();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// ---------------------------------------------------------------------------------------------------------------
// Google Benchmark mode

struct BenchCase {
  const char* model;
  std::int64_t prompts, n, prompt_length, response_length;
};

void grpo_step(benchmark::State& state, BenchCase c) {
  const auto config = model_config(c.model);
  torch::manual_seed(0);
  verl::models::CausalLM lm(verl::models::TransformerConfig::from_json(config));
  lm->init_weights(0.02);
  StepSetup setup;
  setup.prompts_per_step = c.prompts;
  setup.n = c.n;
  setup.response_length = c.response_length;
  const IdTokenizer tok{config.at("vocab_size").get<std::int64_t>()};
  verl::models::Actor actor(lm, actor_options(setup));
  Trainer trainer(actor, verl::no_critic{}, verl::models::Reference::copy_of(actor),
                  verl::stages::scorer_of(EvenFraction{}, tok), trainer_options(setup));
  const auto rows = random_prompts(64 * c.prompts, c.prompt_length, tok.vocab, 1);
  std::size_t next = 0;
  const auto batch = [&] {
    auto b = prompt_batch(rows, next, c.prompts, tok);
    next = (next + static_cast<std::size_t>(c.prompts)) % rows.size();
    return b;
  };
  (void)trainer.step(batch());  // warm-up: engine and KV pool creation, allocator, first AdamW state
  Split total;
  for (auto _ : state) {
    std::map<std::string, double> m;
    const auto b = batch();
    const double wall = seconds_of([&] { m = trainer.step(b); });
    const auto s = split_of(m, wall);
    total.gen += s.gen;
    total.reward += s.reward;
    total.old_log_prob += s.old_log_prob;
    total.ref += s.ref;
    total.adv += s.adv;
    total.update += s.update;
    total.wall += s.wall;
  }
  const auto avg = [](double v) { return benchmark::Counter(v, benchmark::Counter::kAvgIterations); };
  state.counters["gen_s"] = avg(total.gen);
  state.counters["reward_s"] = avg(total.reward);
  state.counters["logprob_s"] = avg(total.old_log_prob + total.ref);
  state.counters["adv_s"] = avg(total.adv);
  state.counters["update_s"] = avg(total.update);
  const double tokens = static_cast<double>(c.prompts * c.n * (c.prompt_length + c.response_length));
  state.counters["tokens/s"] = benchmark::Counter(tokens * static_cast<double>(state.iterations()) / total.wall);
  state.counters["gen_tokens/s"] =
      benchmark::Counter(static_cast<double>(c.prompts * c.n * c.response_length * state.iterations()) / total.gen);
}

BENCHMARK_CAPTURE(grpo_step, smoke, BenchCase{"quickstart", 2, 2, 6, 4})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(grpo_step, quickstart, BenchCase{"quickstart", 16, 8, 6, 4})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(grpo_step, qwen0_5b, BenchCase{"qwen0.5b", 2, 4, 32, 32})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->Iterations(3);

// ---------------------------------------------------------------------------------------------------------------
// Workload mode

template <class T>
T spec_value(const nlohmann::json& spec, const char* key, T fallback) {
  if (!spec.contains(key)) return fallback;
  try {
    return spec.at(key).get<T>();
  } catch (const nlohmann::json::exception& e) {
    throw verl::InputError(std::string("bench_grpo_step --workload: key `") + key + "` has the wrong type: " + e.what());
  }
}

int run_workload(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw verl::InputError("bench_grpo_step --workload: cannot open " + path);
  nlohmann::json spec;
  try {
    spec = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw verl::InputError("bench_grpo_step --workload: " + path + " is not valid JSON: " + e.what());
  }
  for (const char* key : {"model", "prompts", "prompts_per_step", "n", "response_length", "steps"}) {
    if (!spec.contains(key)) throw verl::InputError(std::string("bench_grpo_step --workload: ") + path +
                                                    " lacks the key `" + key + "`");
  }
  const auto threads = spec_value<int>(spec, "threads", 2);
  torch::set_num_threads(threads);
  StepSetup s;
  s.prompts_per_step = spec_value<std::int64_t>(spec, "prompts_per_step", 1);
  s.n = spec_value<std::int64_t>(spec, "n", 1);
  s.response_length = spec_value<std::int64_t>(spec, "response_length", 1);
  s.lr = spec_value<double>(spec, "lr", 1e-6);
  s.kl_coef = spec_value<double>(spec, "kl_coef", 0.04);
  s.temperature = spec_value<double>(spec, "temperature", 1.0);
  s.seed = spec_value<std::uint64_t>(spec, "seed", 0);
  s.micro_batch_size = spec_value<std::int64_t>(spec, "micro_batch_size", 0);
  s.eos_token_id = spec_value<std::int64_t>(spec, "eos_token_id", 1);
  s.pad_token_id = spec_value<std::int64_t>(spec, "pad_token_id", 0);
  s.fused_adamw = spec_value<bool>(spec, "fused_adamw", false);
  s.bypass_mode = spec_value<bool>(spec, "bypass_mode", false);
  const auto steps = spec_value<std::int64_t>(spec, "steps", 1);
  const auto warmup = spec_value<std::int64_t>(spec, "warmup_steps", 1);
  const auto rows = spec.at("prompts").get<std::vector<std::vector<std::int64_t>>>();
  const auto needed = static_cast<std::size_t>((steps + warmup) * s.prompts_per_step);
  if (rows.size() < needed) {
    throw verl::InputError("bench_grpo_step --workload: " + std::to_string(rows.size()) + " prompts given, " +
                           std::to_string(needed) + " needed ((steps + warmup_steps) x prompts_per_step)");
  }

  const std::filesystem::path dir = spec.at("model").get<std::string>();
  double load_s = 0;
  std::optional<verl::models::Actor> actor;
  std::optional<verl::models::Reference> reference;
  load_s = seconds_of([&] {
    actor.emplace(verl::models::Actor::load(dir, {}, actor_options(s)));
    reference.emplace(verl::models::Reference::load(dir, {}, actor_options(s)));
  });
  actor->lm()->train();
  const IdTokenizer tok{actor->lm()->config().vocab_size};
  Trainer trainer(*actor, verl::no_critic{}, *reference, verl::stages::scorer_of(EvenFraction{}, tok),
                  trainer_options(s));

  nlohmann::json out;
  out["threads"] = threads;
  out["torch_threads"] = torch::get_num_threads();
  out["load_s"] = load_s;
  out["steps"] = nlohmann::json::array();
  for (std::int64_t k = 0; k < warmup + steps; ++k) {
    const auto batch = prompt_batch(rows, static_cast<std::size_t>(k * s.prompts_per_step), s.prompts_per_step, tok);
    std::map<std::string, double> m;
    const auto cpu0 = std::clock();
    const double wall = seconds_of([&] { m = trainer.step(batch); });
    const double cpu = static_cast<double>(std::clock() - cpu0) / CLOCKS_PER_SEC;  // all threads of the process
    const auto sp = split_of(m, wall);
    nlohmann::json row{{"warmup", k < warmup},  {"wall", sp.wall},     {"cpu", cpu},     {"gen", sp.gen},
                       {"reward", sp.reward},   {"old_log_prob", sp.old_log_prob}, {"ref", sp.ref},
                       {"adv", sp.adv},         {"update", sp.update}, {"other", sp.other()},
                       {"response_length_mean", m.count("response_length/mean") ? m.at("response_length/mean") : -1.0},
                       {"reward_mean", m.count("critic/score/mean") ? m.at("critic/score/mean") : -1.0},
                       {"pg_loss", m.count("actor/pg_loss") ? m.at("actor/pg_loss") : 0.0},
                       {"kl_loss", m.count("actor/kl_loss") ? m.at("actor/kl_loss") : 0.0}};
    out["steps"].push_back(row);
    std::cerr << "verl-cpp step " << k + 1 << "/" << warmup + steps << (k < warmup ? " (warm-up)" : "") << ": "
              << wall << " s\n";
  }
  std::cout << out.dump() << std::endl;
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::strcmp(argv[i], "--workload") == 0) {
      try {
        return run_workload(argv[i + 1]);
      } catch (const std::exception& e) {
        std::cerr << e.what() << '\n';
        return 1;
      }
    }
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
