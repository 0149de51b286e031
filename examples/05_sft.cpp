// 05_sft: supervised fine-tuning of a tiny causal LM with verl's SFT loss, configured from YAML, checkpointed,
// interrupted, resumed, validated; then greedy decoding.
//
// What it shows:
//   1. prompt / response rows written to a JSONL file and read back through verl::data::SFTDataset (prompt
//      tokens are context, response tokens + eos are targets) and a verl::data::DataProvider;
//   2. the run configured by verl's sft_trainer_engine.yaml keys (data.*, optim.*, trainer.*) from a YAML text
//      plus `key=value` overrides (verl::config::OfflineConfig), mapped to the trainer, the providers and the
//      fit loop by verl/trainer/offline_from_config.hpp;
//   3. verl::trainer::SFTTrainer::fit: verl's metrics (train/loss, train/lr, val/loss every test_freq steps) to
//      a metrics registry, a checkpoint every save_freq steps; run 1 stops at step 40 as if interrupted, run 2
//      (a new trainer on freshly initialised weights) resumes from the checkpoint and ends exactly where an
//      uninterrupted run would;
//   4. the memorised completions reproduced by greedy decoding.
// The task: "spell" each two-letter prompt as a fixed response.
//
// Expected output (the step lines' numbers depend on the LibTorch build; CTest matches the others):
//   dataset: 4 rows from sft.jsonl, 1 batch of 4 per epoch
//   config: 80 steps (1 batch x 80 epochs), lr 0.02 cosine with 5 warm-up steps, save_freq 40, test_freq 40
//   step 40: train/loss 0.0005 train/lr 0.01105 val/loss 0.0004
//   run 1: steps 1..40, checkpoint global_step_40
//   step 80: train/loss 0.0003 train/lr 0.00000 val/loss 0.0003
//   run 2: resumed from step 40, steps 41..80
//   loss: 2.870 -> 0.000 (down)
//   greedy: ab -> cdef, ba -> ghi, ka -> mmln, hj -> ac
//   sft: ok
#include <verl/data/data_provider.hpp>
#include <verl/data/preference_dataset.hpp>
#include <verl/models/actor.hpp>
#include <verl/config/trainer_config.hpp>
#include <verl/trainer/offline_from_config.hpp>
#include <verl/trainer/sft_trainer.hpp>

#include <torch/torch.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <random>
#include <string>

namespace {

// Letters a..n are tokens 2..15; 0 is pad, 1 is eos. Satisfies verl::Tokenizer.
struct LetterTokenizer {
  [[nodiscard]] std::vector<std::int64_t> encode(const std::string& text) const {
    std::vector<std::int64_t> ids;
    for (char c : text) ids.push_back(2 + (c - 'a'));
    return ids;
  }
  [[nodiscard]] std::string decode(const std::vector<std::int64_t>& ids) const {
    std::string s;
    for (auto id : ids)
      if (id >= 2) s += static_cast<char>('a' + (id - 2));
    return s;
  }
  [[nodiscard]] std::int64_t eos_token_id() const { return 1; }
  [[nodiscard]] std::int64_t pad_token_id() const { return 0; }
  [[nodiscard]] std::int64_t vocab_size() const { return 16; }
};

verl::models::CausalLM tiny_lm() {
  const nlohmann::json config{{"model_type", "qwen2"},       {"vocab_size", 16},       {"hidden_size", 32},
                              {"intermediate_size", 48},     {"num_hidden_layers", 1}, {"num_attention_heads", 4},
                              {"num_key_value_heads", 2},    {"max_position_embeddings", 64},
                              {"rms_norm_eps", 1e-6},        {"tie_word_embeddings", false},
                              {"pad_token_id", 0},           {"eos_token_id", 1}};
  torch::manual_seed(5);
  verl::models::CausalLM lm(verl::models::TransformerConfig::from_json(config));
  lm->init_weights(0.05);
  return lm;
}

void write_jsonl(const std::filesystem::path& path, const std::vector<nlohmann::json>& rows) {
  const auto tmp = std::filesystem::path(path).concat(".tmp");
  {
    std::ofstream out(tmp, std::ios::binary);
    for (const auto& r : rows) out << r.dump() << '\n';
  }
  std::filesystem::rename(tmp, path);
}

// Greedy decoding by argmax over the logits of the last position, up to eos or `max_new` tokens.
std::string greedy(verl::models::Actor& actor, const std::string& prompt, int max_new) {
  torch::NoGradGuard no_grad;
  auto ids = LetterTokenizer{}.encode(prompt);
  std::vector<std::int64_t> out;
  for (int s = 0; s < max_new; ++s) {
    const auto t = static_cast<std::int64_t>(ids.size());
    const auto input = torch::tensor(ids, torch::kLong).unsqueeze(0);                                        // (1,T)
    const auto logits = actor.lm()->logits(input, torch::ones_like(input), torch::arange(t).unsqueeze(0));  // (1,T,V)
    const auto next = logits[0][t - 1].argmax().item<std::int64_t>();
    if (next == LetterTokenizer{}.eos_token_id()) break;
    out.push_back(next);
    ids.push_back(next);
  }
  return LetterTokenizer{}.decode(out);
}

// The run's configuration: verl's SFT keys. train_files and default_local_dir are set by overrides below.
constexpr const char* kConfig = R"(
data:
  train_batch_size: 4          # examples per optimizer step
  micro_batch_size_per_gpu: 2  # rows per forward/backward; the update does not depend on it
  max_length: 32
  max_prompt_length: null
  num_workers: 1
optim:
  lr: 0.02
  lr_scheduler_type: cosine
  lr_warmup_steps: 5
trainer:
  total_epochs: 80
  seed: 1
  save_freq: 40
  test_freq: 40
  max_ckpt_to_keep: 2
  logger: [jsonl]
model:
  path: tiny-qwen2   # this program builds the model itself
)";

// Removes a directory tree (not std::filesystem::remove_all: the PyPI libtorch.so exports its own copy,
// which can crash when bound).
void remove_tree(const std::filesystem::path& p) {
  std::error_code ec;
  if (std::filesystem::is_directory(std::filesystem::symlink_status(p, ec))) {
    std::vector<std::filesystem::path> children;
    for (const auto& e : std::filesystem::directory_iterator(p, ec)) children.push_back(e.path());
    for (const auto& c : children) remove_tree(c);
  }
  std::filesystem::remove(p, ec);
}

}  // namespace

int main(int argc, char** argv) {
  torch::set_num_threads(1);
  const auto dir = std::filesystem::temp_directory_path() / ("verl_05_sft_" + std::to_string(std::random_device{}()));
  std::filesystem::create_directories(dir);
  const std::vector<std::pair<std::string, std::string>> pairs = {{"ab", "cdef"}, {"ba", "ghi"}, {"ka", "mmln"}, {"hj", "ac"}};
  std::vector<nlohmann::json> rows;
  for (const auto& [p, r] : pairs) rows.push_back({{"prompt", p}, {"response", r}});
  write_jsonl(dir / "sft.jsonl", rows);

  // 1. The configuration: the YAML text, then overrides (a real program passes argv's `key=value`s).
  std::vector<std::string> overrides{"data.train_files=" + (dir / "sft.jsonl").string(),
                                     "data.val_files=" + (dir / "sft.jsonl").string(),
                                     "trainer.default_local_dir=" + (dir / "checkpoints").string()};
  for (int i = 1; i < argc; ++i) overrides.emplace_back(argv[i]);
  const auto [cfg, yaml] = verl::config::load_text<verl::config::OfflineConfig>(kConfig, "05_sft.yaml", overrides);

  // 2. Data.
  const LetterTokenizer tokenizer;
  const auto dataset_options = verl::trainer::sft_dataset_options_from(cfg);
  const auto dataset = std::make_shared<const verl::data::SFTDataset>(
      verl::data::SFTDataset::load(cfg.data.train_files.files.front(), tokenizer, dataset_options));
  const auto val_set = std::make_shared<const verl::data::SFTDataset>(
      verl::data::SFTDataset::load(cfg.data.val_files.files.front(), tokenizer, dataset_options));
  const auto po = verl::trainer::train_provider_options_from(cfg);
  const auto batches_per_epoch = static_cast<std::int64_t>(dataset->size() / po.batch_size);
  std::printf("dataset: %zu rows from sft.jsonl, %lld batch of %zu per epoch\n", dataset->size(),
              static_cast<long long>(batches_per_epoch), po.batch_size);
  const auto steps = verl::trainer::offline_total_training_steps(cfg, batches_per_epoch);
  const auto options = verl::trainer::sft_options_from(cfg, steps);
  std::printf("config: %lld steps (%lld batch x %lld epochs), lr %g %s with %lld warm-up steps, save_freq %lld, "
              "test_freq %lld\n", static_cast<long long>(steps), static_cast<long long>(batches_per_epoch),
              static_cast<long long>(cfg.trainer.total_epochs), options.lr, options.lr_schedule.lr_scheduler_type.c_str(),
              static_cast<long long>(options.lr_schedule.num_warmup_steps), static_cast<long long>(cfg.trainer.save_freq),
              static_cast<long long>(cfg.trainer.test_freq));

  // 3. Training: run 1 stops at step 40 (as if the machine went down), run 2 resumes from its checkpoint.
  const auto everything = dataset->collate(std::vector<std::size_t>{0, 1, 2, 3});
  double before = 0, after = 0;
  bool all_right = true;
  std::string line = "greedy:";
  for (const std::int64_t stop_at : {steps / 2, steps}) {
    verl::models::Actor actor(tiny_lm());  // fresh weights; run 2 gets the trained ones from the checkpoint
    verl::trainer::SFTTrainer<verl::models::Actor> trainer(actor, options);
    if (stop_at < steps) before = trainer.evaluate(everything);
    verl::trainer::MetricsRegistry registry;
    verl::trainer::add_metric_exporters_from(cfg, registry, dir / "checkpoints" / "metrics.jsonl");
    registry.add_callback([](std::int64_t step, const verl::trainer::MetricMap& m) {
      if (m.count("val/loss"))
        std::printf("step %lld: train/loss %.4f train/lr %.5f val/loss %.4f\n", static_cast<long long>(step),
                    m.at("train/loss"), m.at("train/lr"), m.at("val/loss"));
    });
    auto fit_options = verl::trainer::offline_fit_options_from(cfg, steps, yaml);
    fit_options.total_training_steps = stop_at;
    const auto result = trainer.fit(
        [&](const nlohmann::json& resume) {  // null, or the data position saved in the checkpoint
          return std::make_unique<verl::data::DataProvider<verl::data::SFTDataset>>(dataset, po, resume);
        },
        registry, fit_options, [&](std::int64_t) {  // verl's validation: val/loss over the validation set
          verl::data::DataProvider<verl::data::SFTDataset> val(val_set, verl::trainer::sft_val_provider_options_from(cfg));
          return trainer.validate(val);
        });
    if (!result.resumed_from) {
      std::printf("run 1: steps %lld..%lld, checkpoint %s\n", static_cast<long long>(result.first_step),
                  static_cast<long long>(result.last_step), result.checkpoints.back().filename().c_str());
    } else {
      std::printf("run 2: resumed from step %lld, steps %lld..%lld\n", static_cast<long long>(*result.resumed_from),
                  static_cast<long long>(result.first_step), static_cast<long long>(result.last_step));
      after = trainer.evaluate(everything);
      for (const auto& [p, r] : pairs) {
        const auto got = greedy(actor, p, 8);
        all_right = all_right && got == r;
        line += (line.size() > 7 ? ", " : " ") + p + " -> " + got;
      }
    }
  }
  std::printf("loss: %.3f -> %.3f (%s)\n", before, after, after < 0.1 * before ? "down" : "not down");
  std::printf("%s\n", line.c_str());
  remove_tree(dir);
  if (!(all_right && after < 0.1 * before)) return 1;
  std::printf("sft: ok\n");
  return 0;
}
