// 06_ppo_critic: PPO with a GAE critic, configured by a YAML file in verl's key names plus key=value overrides.
//
// What it shows:
//   1. verl::config::load_config<PPOConfig>(yaml, overrides): verl 0.7.1's defaults, the file, the overrides,
//      type and cross-field checks with did-you-mean errors; the effective config is printed and would be saved
//      with every checkpoint;
//   2. the binary is compiled for one algorithm, verl::PPO<> (GAE advantages, PPO clip, no KL): the YAML's
//      algorithm keys are checked against it (adv_estimator: grpo here is an error naming the key);
//   3. PPOTrainer<PPO<>, Actor, Critic> has the critic stages (values, critic update) because the estimator
//      reads values; the critic warms up for trainer.critic_warmup steps before the actor is updated;
//   4. the same addition task as 00_quickstart (a short SFT warm-up, then RL), with critic/vf_loss falling.
//
// Usage: verl_example_06_ppo_critic [config.yaml] [key=value ...]
//        (default config: examples/configs/ppo_critic.yaml next to this file)
// Expected output (the numbers vary with the LibTorch build; CTest matches the shape and the last line):
//   config: examples/configs/ppo_critic.yaml + 1 override(s); effective config has 2xx lines
//   algorithm: ppo (estimator gae, loss vanilla, critic yes, reference no)
//   a wrong algorithm key: verl::trainer::check_algorithm_matches: `algorithm.adv_estimator` is "grpo" ...
//   accuracy after SFT warm-up: 24/64
//   step 1: reward 0.48 vf_loss 0.1... (actor not updated: critic warm-up)
//   step 10: reward ... vf_loss ...
//   ...
//   critic/vf_loss: first 5 steps 0.1..., last 5 steps 0.0... (falling)
//   ppo_critic: ok
#include <verl/algos/presets.hpp>
#include <verl/config/trainer_config.hpp>
#include <verl/data/data_provider.hpp>
#include <verl/data/preference_dataset.hpp>
#include <verl/data/rl_dataset.hpp>
#include <verl/models/actor.hpp>
#include <verl/models/critic.hpp>
#include <verl/pipeline/reward_scorer.hpp>
#include <verl/trainer/from_config.hpp>
#include <verl/trainer/sft_trainer.hpp>

#include <torch/torch.h>

#include <cstdlib>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

namespace fs = std::filesystem;

namespace {

// Characters "0123456789+=" are tokens 2..13; 0 pads and 1 ends a sequence.
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

struct ExactAnswer {
  verl::RewardOutput operator()(const verl::RewardInput& in) const {
    return in.response == in.ground_truth ? 1.0 : 0.0;
  }
};

nlohmann::json model_config() {
  return {{"model_type", "llama"},    {"vocab_size", 16},          {"hidden_size", 64},
          {"intermediate_size", 128}, {"num_hidden_layers", 2},    {"num_attention_heads", 4},
          {"num_key_value_heads", 2}, {"max_position_embeddings", 32}, {"rms_norm_eps", 1e-6},
          {"tie_word_embeddings", false}, {"pad_token_id", 0},     {"eos_token_id", 1}};
}

}  // namespace

int main(int argc, char** argv) {
  // Two intra-op threads, or OMP_NUM_THREADS when set (CTest sets 1: it runs tests side by side).
  torch::set_num_threads(std::getenv("OMP_NUM_THREADS") ? std::max(1, std::atoi(std::getenv("OMP_NUM_THREADS"))) : 2);
  // 1. The configuration.
  const fs::path default_config = fs::path(VERL_EXAMPLES_DIR) / "configs" / "ppo_critic.yaml";
  const fs::path config_path = argc > 1 && std::string(argv[1]).find('=') == std::string::npos ? fs::path(argv[1])
                                                                                              : default_config;
  std::vector<std::string> overrides;
  for (int i = 1; i < argc; ++i)
    if (std::string(argv[i]).find('=') != std::string::npos) overrides.emplace_back(argv[i]);
  if (overrides.empty()) overrides.emplace_back("trainer.total_training_steps=40");
  auto [cfg, yaml] = verl::config::load_config<verl::config::PPOConfig>(config_path, overrides);
  const auto lines = std::count(yaml.begin(), yaml.end(), '\n');
  std::printf("config: %s + %zu override(s); effective config has %ld lines\n",
              config_path.filename().c_str(), overrides.size(), static_cast<long>(lines));

  // 2. The compiled algorithm, and what a mismatching YAML gets.
  using Algo = verl::PPO<>;
  verl::trainer::check_algorithm_matches<Algo>(cfg);
  std::printf("algorithm: %s (estimator %s, loss %s, critic %s, reference %s)\n", std::string(Algo::name).c_str(),
              std::string(Algo::estimator::name).c_str(), std::string(Algo::loss::name).c_str(),
              Algo::needs_critic ? "yes" : "no", Algo::needs_reference ? "yes" : "no");
  try {
    auto wrong = cfg;
    wrong.algorithm.adv_estimator = "grpo";
    verl::trainer::check_algorithm_matches<Algo>(wrong);
  } catch (const verl::ConfigError& e) {
    std::printf("a wrong algorithm key: %.95s...\n", e.what());
  }

  // 3. Data (written where the config says), model, critic, SFT warm-up.
  const auto work = fs::temp_directory_path() / ("verl_06_ppo_critic_" + std::to_string(std::random_device{}()));
  fs::create_directories(work);
  std::mt19937_64 rng(1);
  std::uniform_int_distribution<int> num(0, 19);
  {
    std::ofstream rl(work / "train.jsonl"), sft(work / "sft.jsonl");
    for (int i = 0; i < 512; ++i) {
      const int a = num(rng), b = num(rng);
      const auto prompt = std::to_string(a) + "+" + std::to_string(b) + "=", answer = std::to_string(a + b);
      rl << nlohmann::json{{"prompt", prompt}, {"data_source", "arith"}, {"reward_model", {{"ground_truth", answer}}}}
                .dump()
         << '\n';
      if (i < 96) sft << nlohmann::json{{"prompt", prompt}, {"response", answer}}.dump() << '\n';
    }
  }
  const ArithTokenizer tok;
  torch::manual_seed(0);
  const auto model_cfg = verl::models::TransformerConfig::from_json(model_config());
  verl::models::CausalLM lm(model_cfg);
  lm->init_weights(0.02);
  verl::models::ActorOptions actor_options;
  actor_options.generation.eos_token_ids = {1};
  actor_options.generation.pad_token_id = 0;
  verl::models::Actor actor(lm, actor_options);
  {
    const auto sft_data = std::make_shared<const verl::data::SFTDataset>(
        verl::data::SFTDataset::load(work / "sft.jsonl", tok, verl::data::SFTDatasetOptions{}));
    verl::data::DataProviderOptions po;
    po.batch_size = 32;
    po.seed = 3;
    verl::data::DataProvider<verl::data::SFTDataset> provider(sft_data, po);
    verl::trainer::SFTOptions so;
    so.micro_batch_size_per_gpu = 32;
    so.lr = 3e-3;
    so.weight_decay = 0.0;
    verl::trainer::SFTTrainer<verl::models::Actor> sft(actor, so);
    (void)sft.fit(provider, 300);
  }
  auto critic = verl::models::Critic::create(model_cfg);  // a fresh value head on a fresh trunk

  // 4. PPO from the config.
  verl::data::RLDatasetOptions ro;
  ro.max_prompt_length = cfg.data.max_prompt_length;
  ro.prompt_key = cfg.data.prompt_key;
  const auto rl_data = std::make_shared<const verl::data::RLDataset>(
      verl::data::RLDataset::load(work / cfg.data.train_files.files.front(), tok, ro));
  verl::data::DataProviderOptions po;
  po.batch_size = static_cast<std::size_t>(cfg.data.train_batch_size);
  po.shuffle = cfg.data.shuffle;
  if (cfg.data.seed) po.seed = static_cast<std::uint64_t>(*cfg.data.seed);
  const auto batches_per_epoch = static_cast<std::int64_t>(rl_data->size()) / cfg.data.train_batch_size;
  const auto steps = verl::trainer::total_training_steps(cfg, batches_per_epoch);
  auto options = verl::trainer::ppo_options_from(cfg, steps);
  auto fit_options = verl::trainer::fit_options_from(cfg, steps, yaml);
  fit_options.checkpoint_dir = work / "checkpoints";
  fit_options.progress_bar = false;
  verl::trainer::PPOTrainer<Algo, verl::models::Actor, verl::models::Critic> trainer(
      actor, critic, verl::no_reference{}, verl::stages::scorer_of(ExactAnswer{}, tok), options);

  verl::trainer::MetricsRegistry registry;
  std::vector<double> vf_losses;
  registry.add_callback([&](std::int64_t step, const verl::trainer::MetricMap& m) {
    vf_losses.push_back(m.at("critic/vf_loss"));
    if (step == 1 || step % 10 == 0) {
      std::printf("step %lld: reward %.2f vf_loss %.4f vpred_mean %.2f%s\n", static_cast<long long>(step),
                  m.at("critic/score/mean"), m.at("critic/vf_loss"), m.at("critic/vpred_mean"),
                  m.count("actor/pg_loss") ? "" : " (actor not updated: critic warm-up)");
    }
  });
  (void)trainer.fit(
      [&](const nlohmann::json& resume) {
        return std::make_unique<verl::data::DataProvider<verl::data::RLDataset>>(rl_data, po, resume);
      },
      registry, fit_options);
  double first = 0, last = 0;
  for (std::size_t i = 0; i < 5; ++i) {
    first += vf_losses[i] / 5;
    last += vf_losses[vf_losses.size() - 1 - i] / 5;
  }
  const bool falling = last < first;
  std::printf("critic/vf_loss: first 5 steps %.4f, last 5 steps %.4f (%s)\n", first, last,
              falling ? "falling" : "not falling");
  for (const auto* f : {"train.jsonl", "sft.jsonl"}) fs::remove(work / f);
  fs::remove(work);
  if (!falling) return 1;
  std::printf("ppo_critic: ok\n");
  return 0;
}
