// 04_kto: Kahneman-Tversky optimisation of a tiny causal LM on unpaired, labelled completions.
//
// What it shows:
//   1. rows of prompt / completion / label (TRL's unpaired preference format) written to a JSONL file and
//      read back through verl::data::KTODataset, whose batches also carry the mismatched (prompt, another
//      row's completion) pairs that KTO's KL reference point is estimated from;
//   2. verl::trainer::KTOTrainer with TRL's KTOConfig names (beta, desirable_weight, undesirable_weight, ...)
//      against a frozen copy of the initial policy;
//   3. TRL's metrics (loss, kl, rewards/chosen, rewards/rejected, ...), TRL's evaluation (validate(): eval_loss,
//      eval_rewards/margins, ... over an unshuffled pass) and the mean log-prob of the desirable and undesirable
//      completions before and after training.
// The synthetic labels: a completion repeating the prompt's first letter is desirable, a run of 'n' is not.
//
// Expected output (the step lines' numbers depend on the LibTorch build; CTest matches the others):
//   dataset: 12 examples from kto.jsonl (6 desirable), 4 batches of 3 per epoch
//   step 10: loss 0.2106 kl 0.0000 rewards/chosen 0.5033 rewards/rejected -1.9250
//   step 20: loss 0.2595 kl 0.0000 rewards/chosen 0.8223 rewards/rejected -4.1280
//   eval: eval_loss 0.5000 -> 0.1621, eval_rewards/margins 0.0000 -> 4.9791
//   desirable log-prob: -11.033 -> -2.843 (up)
//   undesirable log-prob: -11.188 -> -52.789 (down)
//   kto: ok
#include "letter_task.hpp"

#include <verl/data/data_provider.hpp>
#include <verl/data/preference_dataset.hpp>
#include <verl/models/actor.hpp>
#include <verl/trainer/kto_trainer.hpp>

#include <torch/torch.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <random>
#include <string>

int main() {
  torch::set_num_threads(1);
  const auto dir = std::filesystem::temp_directory_path() / ("verl_04_kto_" + std::to_string(std::random_device{}()));
  std::filesystem::create_directories(dir);

  // 1. Labelled completions, alternating desirable / undesirable.
  std::vector<nlohmann::json> rows;
  std::mt19937 rng(2);
  for (int i = 0; i < 12; ++i) {
    std::string prompt;
    for (int j = 0, n = 2 + i % 3; j < n; ++j) prompt += static_cast<char>('a' + rng() % 13);
    const bool desirable = i % 2 == 0;
    rows.push_back({{"prompt", prompt},
                    {"completion", desirable ? std::string(2 + i % 3, prompt[0]) : std::string(3, 'n')},
                    {"label", desirable}});
  }
  examples::write_jsonl(dir / "kto.jsonl", rows);
  const examples::LetterTokenizer tokenizer;
  const auto dataset = std::make_shared<const verl::data::KTODataset>(
      verl::data::KTODataset::load(dir / "kto.jsonl", tokenizer, verl::data::KTODatasetOptions{}));
  verl::data::DataProviderOptions po;
  po.batch_size = 3;  // KTO needs batches of two or more: the KL pairs mix completions within a batch
  po.seed = 5;
  verl::data::DataProvider<verl::data::KTODataset> provider(dataset, po);
  std::printf("dataset: %zu examples from kto.jsonl (6 desirable), %zu batches of %zu per epoch\n", dataset->size(),
              provider.batches_per_epoch(), po.batch_size);

  // 2. The trainer.
  verl::models::Actor actor(examples::tiny_lm(11));
  verl::trainer::KTOOptions options;
  options.beta = 0.1;
  options.desirable_weight = 1.0;
  options.undesirable_weight = 1.0;
  options.learning_rate = 1e-2;
  options.per_device_train_batch_size = 3;
  options.gradient_accumulation_steps = 2;  // one step = two provider batches = 6 examples
  verl::trainer::KTOTrainer<verl::models::Actor, verl::models::Reference> trainer(
      actor, verl::models::Reference::copy_of(actor), options);

  // 3. Mean log-probs of the desirable / undesirable completions.
  std::vector<std::size_t> all(dataset->size());
  for (std::size_t i = 0; i < all.size(); ++i) all[i] = i;
  const auto everything = dataset->collate(all);
  const auto means = [&] {
    const auto lp = trainer.policy_log_probs(everything);  // (12,)
    return std::pair{lp.masked_select(everything.labels).mean().item<double>(),
                     lp.masked_select(everything.labels.logical_not()).mean().item<double>()};
  };
  // TRL's evaluate: one unshuffled pass in batches of 3 (the last one kept), no update.
  const auto evaluate = [&] {
    verl::data::DataProviderOptions eval_options;
    eval_options.batch_size = 3;
    eval_options.shuffle = false;
    eval_options.drop_last = false;
    eval_options.epochs = 1;
    verl::data::DataProvider<verl::data::KTODataset> eval(dataset, eval_options);
    return trainer.validate(eval);
  };
  const auto [good0, bad0] = means();
  const auto eval0 = evaluate();
  trainer.fit(provider, 20, [](std::int64_t step, const std::map<std::string, double>& m) {
    if (step % 10 == 0)
      std::printf("step %lld: loss %.4f kl %.4f rewards/chosen %.4f rewards/rejected %.4f\n",
                  static_cast<long long>(step), m.at("loss"), m.at("kl"), m.at("rewards/chosen"),
                  m.at("rewards/rejected"));
  });
  const auto [good1, bad1] = means();
  const auto eval1 = evaluate();
  std::printf("eval: eval_loss %.4f -> %.4f, eval_rewards/margins %.4f -> %.4f\n", eval0.at("eval_loss"),
              eval1.at("eval_loss"), eval0.at("eval_rewards/margins"), eval1.at("eval_rewards/margins"));
  std::printf("desirable log-prob: %.3f -> %.3f (%s)\n", good0, good1, good1 > good0 ? "up" : "not up");
  std::printf("undesirable log-prob: %.3f -> %.3f (%s)\n", bad0, bad1, bad1 < bad0 ? "down" : "not down");
  // Not std::filesystem::remove_all: the PyPI libtorch.so exports its own copy, which can crash when bound.
  std::filesystem::remove(dir / "kto.jsonl");
  std::filesystem::remove(dir);
  if (!(good1 > good0 + 0.5 && bad1 < bad0)) return 1;
  std::printf("kto: ok\n");
  return 0;
}
