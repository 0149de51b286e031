// 00_quickstart: a model that gets measurably better, with nothing downloaded (about a minute on 2 CPU cores).
//
// What it does:
//   1. writes a synthetic task with verifiable answers, addition of numbers below 20 ("13+9=" -> "22"), as JSONL
//      files in verl's row schema (prompt, data_source, reward_model.ground_truth) and as SFT prompt/response
//      rows (96 of them: the warm-up sees a fraction of the problems);
//   2. builds a small Llama-shaped model (2 layers, hidden 64) and a character tokenizer (a verl::Tokenizer);
//   3. measures greedy accuracy on 64 fresh problems, warms the model up with a little SFT
//      (verl::trainer::SFTTrainer), and measures again;
//   4. trains it with GRPO (verl::GRPO<>: group-normalised advantages, PPO clip, k3 KL loss to a frozen copy of
//      the warmed-up model) and an exact-match rule reward, through verl::trainer::PPOTrainer::fit: data
//      provider with prefetch, rollout engine, metrics registry (these lines + metrics.jsonl), a progress bar
//      on a terminal, a checkpoint at the end;
//   5. measures accuracy once more and plots reward and KL over the steps (quickstart_out/metrics.svg).
//
// Run it with ./scripts/quickstart.sh (builds it first) or build/examples/verl_example_00_quickstart [out_dir].
// Expected output (a few seconds on 2 cores; the numbers are those of LibTorch 2.11 on x86-64 with 2 threads,
// CTest matches the shape, the rising reward and the last line):
//   task: addition below 20, 512 training prompts, 64 fresh ones for accuracy
//   model: Llama-shaped, 2 layers, hidden 64, 76k parameters
//   accuracy before training: 0/64
//   sft: 300 steps, loss 2.8 -> 0.3
//   accuracy after SFT warm-up: 24/64
//   grpo step 1: reward 0.48 kl 0.0000 entropy 0.21 response_length 2.8 (40 ms)
//   ...
//   grpo step 60: reward 0.88 kl 0.2061 entropy 0.06 response_length 2.9 (40 ms)
//   accuracy after GRPO: 35/64
//   reward: first 5 steps 0.46, last 5 steps 0.66 (rising)
//   wrote quickstart_out/metrics.jsonl, quickstart_out/metrics.svg, checkpoint quickstart_out/checkpoints/global_step_60
//   quickstart: ok
#include <verl/algos/presets.hpp>
#include <verl/data/data_provider.hpp>
#include <verl/data/preference_dataset.hpp>
#include <verl/data/rl_dataset.hpp>
#include <verl/models/actor.hpp>
#include <verl/pipeline/reward_scorer.hpp>
#include <verl/trainer/metrics.hpp>
#include <verl/trainer/ppo_trainer.hpp>
#include <verl/trainer/sft_trainer.hpp>
#include <verl/trainer/svg_plot.hpp>

#include <torch/torch.h>

#include <cstdlib>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

namespace fs = std::filesystem;

namespace {

// Characters "0123456789+=" are tokens 2..13; 0 pads and 1 ends a sequence. Satisfies verl::Tokenizer.
struct ArithTokenizer {
  static constexpr std::string_view kAlphabet = "0123456789+=";
  [[nodiscard]] std::vector<std::int64_t> encode(const std::string& text) const {
    std::vector<std::int64_t> ids;
    for (char c : text) ids.push_back(2 + static_cast<std::int64_t>(kAlphabet.find(c)));
    return ids;
  }
  [[nodiscard]] std::string decode(const std::vector<std::int64_t>& ids) const {
    std::string text;
    for (auto id : ids)
      if (id >= 2 && id < 14) text += kAlphabet[static_cast<std::size_t>(id - 2)];
    return text;
  }
  [[nodiscard]] std::int64_t eos_token_id() const { return 1; }
  [[nodiscard]] std::int64_t pad_token_id() const { return 0; }
  [[nodiscard]] std::int64_t vocab_size() const { return 16; }
};

// The rule reward, in verl's compute_score shape: 1 for the exact answer, else 0.
struct ExactAnswer {
  verl::RewardOutput operator()(const verl::RewardInput& in) const {
    return in.response == in.ground_truth ? 1.0 : 0.0;
  }
};

struct Problem {
  std::string prompt, answer;
};

std::vector<Problem> problems(std::size_t count, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int> digit2(0, 19);
  std::vector<Problem> out;
  for (std::size_t i = 0; i < count; ++i) {
    const int a = digit2(rng), b = digit2(rng);
    out.push_back({std::to_string(a) + "+" + std::to_string(b) + "=", std::to_string(a + b)});
  }
  return out;
}

void write_jsonl(const fs::path& path, const std::vector<nlohmann::json>& rows) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  for (const auto& r : rows) out << r.dump() << '\n';
}

verl::models::CausalLM small_llama() {
  const nlohmann::json config{{"model_type", "llama"},        {"vocab_size", 16},        {"hidden_size", 64},
                              {"intermediate_size", 128},     {"num_hidden_layers", 2},  {"num_attention_heads", 4},
                              {"num_key_value_heads", 2},     {"max_position_embeddings", 32},
                              {"rms_norm_eps", 1e-6},         {"tie_word_embeddings", false},
                              {"pad_token_id", 0},            {"eos_token_id", 1}};
  torch::manual_seed(0);
  verl::models::CausalLM lm(verl::models::TransformerConfig::from_json(config));
  lm->init_weights(0.02);
  return lm;
}

// Greedy accuracy on `eval` through the rollout engine (temperature 0).
int accuracy(verl::models::Actor& actor, const ArithTokenizer& tok, const std::vector<Problem>& eval) {
  const auto b = static_cast<std::int64_t>(eval.size());
  auto ids = torch::zeros({b, 6}, torch::kLong), mask = torch::zeros({b, 6}, torch::kLong);
  for (std::int64_t i = 0; i < b; ++i) {
    const auto p = tok.encode(eval[static_cast<std::size_t>(i)].prompt);
    const auto len = static_cast<std::int64_t>(p.size());
    ids[i].narrow(0, 6 - len, len).copy_(torch::tensor(p, torch::kLong));
    mask[i].narrow(0, 6 - len, len).fill_(1);
  }
  verl::SamplingParams greedy;
  greedy.temperature = 0.0;
  greedy.max_tokens = 4;
  const auto r = actor.generate(verl::Prompts{ids, mask, (mask.cumsum(1) - 1).clamp_min(0)}, greedy);
  int right = 0;
  for (std::int64_t i = 0; i < b; ++i) {
    const auto row = (r.responses[i] * r.response_mask[i]).contiguous();
    const std::vector<std::int64_t> v(row.data_ptr<std::int64_t>(), row.data_ptr<std::int64_t>() + row.numel());
    right += tok.decode(v) == eval[static_cast<std::size_t>(i)].answer ? 1 : 0;
  }
  return right;
}

}  // namespace

int main(int argc, char** argv) {
  const auto start = std::chrono::steady_clock::now();
  const fs::path out = argc > 1 ? fs::path(argv[1]) : fs::path("quickstart_out");
  fs::create_directories(out);
  // Two intra-op threads, or OMP_NUM_THREADS when set (CTest sets 1: it runs tests side by side).
  torch::set_num_threads(std::getenv("OMP_NUM_THREADS") ? std::max(1, std::atoi(std::getenv("OMP_NUM_THREADS"))) : 2);

  // 1. The task, as files in verl's schemas.
  const auto train = problems(512, 1), eval = problems(64, 2);
  std::vector<nlohmann::json> rl_rows, sft_rows;
  for (const auto& p : train) {
    rl_rows.push_back({{"prompt", p.prompt}, {"data_source", "arith"}, {"reward_model", {{"ground_truth", p.answer}}}});
  }
  for (std::size_t i = 0; i < 96; ++i) sft_rows.push_back({{"prompt", train[i].prompt}, {"response", train[i].answer}});
  write_jsonl(out / "train.jsonl", rl_rows);
  write_jsonl(out / "sft.jsonl", sft_rows);
  std::printf("task: addition below 20, %zu training prompts, %zu fresh ones for accuracy\n", train.size(), eval.size());

  // 2. Model and tokenizer.
  const ArithTokenizer tok;
  verl::models::ActorOptions actor_options;
  actor_options.generation.eos_token_ids = {tok.eos_token_id()};
  actor_options.generation.pad_token_id = tok.pad_token_id();
  verl::models::Actor actor(small_llama(), actor_options);
  std::int64_t n_params = 0;
  for (const auto& p : actor.parameters()) n_params += p.numel();
  std::printf("model: Llama-shaped, 2 layers, hidden 64, %lldk parameters\n", static_cast<long long>(n_params / 1000));
  std::printf("accuracy before training: %d/%zu\n", accuracy(actor, tok, eval), eval.size());

  // 3. SFT warm-up: a little supervised data, so that GRPO's samples are sometimes right.
  {
    const auto sft_data = std::make_shared<const verl::data::SFTDataset>(
        verl::data::SFTDataset::load(out / "sft.jsonl", tok, verl::data::SFTDatasetOptions{}));
    verl::data::DataProviderOptions po;
    po.batch_size = 32;
    po.seed = 3;
    verl::data::DataProvider<verl::data::SFTDataset> provider(sft_data, po);
    verl::trainer::SFTOptions so;
    so.micro_batch_size_per_gpu = 32;
    so.lr = 3e-3;
    so.weight_decay = 0.0;
    verl::trainer::SFTTrainer<verl::models::Actor> sft(actor, so);
    const auto history = sft.fit(provider, 300);
    std::printf("sft: %zu steps, loss %.1f -> %.1f\n", history.size(), history.front().at("train/loss"),
                history.back().at("train/loss"));
  }
  const int after_sft = accuracy(actor, tok, eval);
  std::printf("accuracy after SFT warm-up: %d/%zu\n", after_sft, eval.size());

  // 4. GRPO with the rule reward. The reference model is a frozen copy of the warmed-up actor.
  auto reference = verl::models::Reference::copy_of(actor);
  verl::trainer::PPOOptions options;
  options.rollout.n = 8;
  options.rollout.max_tokens = 4;
  options.rollout.temperature = 1.0;
  options.rollout.seed = 7;
  options.ppo_mini_batch_size = 16;       // prompts: one optimizer step per training step (on-policy)
  options.ppo_micro_batch_size = 64;      // sequences
  options.log_prob_micro_batch_size = 128;
  options.actor_optim.lr = 3e-4;
  options.actor_optim.weight_decay = 0.0;
  options.kl_loss_coef = 0.001;
  const std::int64_t steps = 60;
  options.total_training_steps = steps;
  verl::trainer::PPOTrainer<verl::GRPO<>, verl::models::Actor, verl::no_critic, verl::models::Reference> trainer(
      actor, verl::no_critic{}, reference, verl::stages::scorer_of(ExactAnswer{}, tok), options);

  const auto rl_data = std::make_shared<const verl::data::RLDataset>(
      verl::data::RLDataset::load(out / "train.jsonl", tok, verl::data::RLDatasetOptions{}));
  verl::trainer::MetricsRegistry registry;
  registry.add_exporter(verl::trainer::JsonlExporter((out / "metrics.jsonl").string()));
  std::vector<double> rewards;
  registry.add_callback([&](std::int64_t step, const verl::trainer::MetricMap& m) {
    rewards.push_back(m.at("critic/score/mean"));
    if (step == 1 || step % 5 == 0) {
      std::printf("grpo step %lld: reward %.2f kl %.4f entropy %.2f response_length %.1f (%.0f ms)\n",
                  static_cast<long long>(step), m.at("critic/score/mean"), m.at("actor/kl_loss"),
                  m.at("actor/entropy"), m.at("response_length/mean"), 1000 * m.at("timing_s/step"));
      std::fflush(stdout);
    }
  });
  verl::trainer::FitOptions fo;
  fo.total_training_steps = steps;
  fo.save_freq = steps;  // one checkpoint, at the end
  fo.checkpoint_dir = out / "checkpoints";
  fo.resume = false;     // a fresh run each time
  fo.max_ckpt_to_keep = 1;
  const auto result = trainer.fit(
      [&](const nlohmann::json& resume) {
        verl::data::DataProviderOptions po;
        po.batch_size = 16;
        po.seed = 4;
        return std::make_unique<verl::data::DataProvider<verl::data::RLDataset>>(rl_data, po, resume);
      },
      registry, fo);
  const int after_grpo = accuracy(actor, tok, eval);
  std::printf("accuracy after GRPO: %d/%zu\n", after_grpo, eval.size());

  // 5. Did it learn? Mean reward of the first and last five steps, and the plot.
  double first = 0, last = 0;
  for (std::size_t i = 0; i < 5; ++i) {
    first += rewards[i] / 5;
    last += rewards[rewards.size() - 1 - i] / 5;
  }
  const bool rising = last > first + 0.05 && after_grpo > after_sft;
  std::printf("reward: first 5 steps %.2f, last 5 steps %.2f (%s)\n", first, last, rising ? "rising" : "not rising");
  verl::trainer::plot_metrics_svg(out / "metrics.jsonl", {"critic/score/mean", "actor/kl_loss"}, out / "metrics.svg");
  std::printf("wrote %s, %s, checkpoint %s\n", (out / "metrics.jsonl").c_str(), (out / "metrics.svg").c_str(),
              (out / "checkpoints" / ("global_step_" + std::to_string(result.last_step))).c_str());
  const std::chrono::duration<double> took = std::chrono::steady_clock::now() - start;
  std::printf("took %.0f s\n", took.count());
  if (!rising) return 1;
  std::printf("quickstart: ok\n");
  return 0;
}
