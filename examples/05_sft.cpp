// 05_sft: supervised fine-tuning of a tiny causal LM with verl's SFT loss, then greedy decoding.
//
// What it shows:
//   1. prompt / response rows written to a JSONL file and read back through verl::data::SFTDataset (prompt
//      tokens are context, response tokens + eos are targets) and a verl::data::DataProvider;
//   2. verl::trainer::SFTTrainer with verl's names (micro_batch_size_per_gpu, lr, lr_schedule): the loss is
//      the token mean over the whole batch's targets, whatever the micro-batch size;
//   3. verl's metrics (train/loss, train/lr) and the memorised completions reproduced by greedy decoding.
// The task: "spell" each two-letter prompt as a fixed response.
//
// Expected output (the step lines' numbers depend on the LibTorch build; CTest matches the others):
//   dataset: 4 rows from sft.jsonl, 1 batch of 4 per epoch
//   step 40: train/loss 0.0005 train/lr 0.01105
//   step 80: train/loss 0.0003 train/lr 0.00000
//   loss: 2.870 -> 0.000 (down)
//   greedy: ab -> cdef, ba -> ghi, ka -> mmln, hj -> ac
//   sft: ok
#include <verl/data/data_provider.hpp>
#include <verl/data/preference_dataset.hpp>
#include <verl/models/actor.hpp>
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

}  // namespace

int main() {
  torch::set_num_threads(1);
  const auto dir = std::filesystem::temp_directory_path() / ("verl_05_sft_" + std::to_string(std::random_device{}()));
  std::filesystem::create_directories(dir);
  const std::vector<std::pair<std::string, std::string>> pairs = {{"ab", "cdef"}, {"ba", "ghi"}, {"ka", "mmln"}, {"hj", "ac"}};
  std::vector<nlohmann::json> rows;
  for (const auto& [p, r] : pairs) rows.push_back({{"prompt", p}, {"response", r}});
  write_jsonl(dir / "sft.jsonl", rows);

  const LetterTokenizer tokenizer;
  const auto dataset = std::make_shared<const verl::data::SFTDataset>(
      verl::data::SFTDataset::load(dir / "sft.jsonl", tokenizer, verl::data::SFTDatasetOptions{}));
  verl::data::DataProviderOptions po;
  po.batch_size = 4;
  po.seed = 1;
  verl::data::DataProvider<verl::data::SFTDataset> provider(dataset, po);
  std::printf("dataset: %zu rows from sft.jsonl, %zu batch of %zu per epoch\n", dataset->size(),
              provider.batches_per_epoch(), po.batch_size);

  verl::models::Actor actor(tiny_lm());
  verl::trainer::SFTOptions options;
  options.micro_batch_size_per_gpu = 2;
  options.lr = 2e-2;
  options.lr_schedule.lr_scheduler_type = "cosine";
  options.lr_schedule.num_warmup_steps = 5;
  options.lr_schedule.num_training_steps = 80;
  verl::trainer::SFTTrainer<verl::models::Actor> trainer(actor, options);

  const auto everything = dataset->collate(std::vector<std::size_t>{0, 1, 2, 3});
  const double before = trainer.evaluate(everything);
  trainer.fit(provider, 80, [](std::int64_t step, const std::map<std::string, double>& m) {
    if (step % 40 == 0)
      std::printf("step %lld: train/loss %.4f train/lr %.5f\n", static_cast<long long>(step), m.at("train/loss"),
                  m.at("train/lr"));
  });
  const double after = trainer.evaluate(everything);
  std::printf("loss: %.3f -> %.3f (%s)\n", before, after, after < 0.1 * before ? "down" : "not down");
  bool all_right = true;
  std::string line = "greedy:";
  for (const auto& [p, r] : pairs) {
    const auto got = greedy(actor, p, 8);
    all_right = all_right && got == r;
    line += (line.size() > 7 ? ", " : " ") + p + " -> " + got;
  }
  std::printf("%s\n", line.c_str());
  // Not std::filesystem::remove_all: the PyPI libtorch.so exports its own copy, which can crash when bound.
  std::filesystem::remove(dir / "sft.jsonl");
  std::filesystem::remove(dir);
  if (!(all_right && after < 0.1 * before)) return 1;
  std::printf("sft: ok\n");
  return 0;
}
