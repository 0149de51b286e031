// 03_dpo: direct preference optimisation of a tiny causal LM on an offline preference set, end to end.
//
// What it shows:
//   1. preference pairs (prompt / chosen / rejected, TRL's standard format) written to a JSONL file and read
//      back through verl::data::DPODataset (tokenised once, eos appended) and a shuffling, prefetching
//      verl::data::DataProvider;
//   2. verl::trainer::DPOTrainer with TRL's DPOConfig names (beta, loss_type, per_device_train_batch_size,
//      gradient_accumulation_steps, ...) against a frozen copy of the initial policy as the reference;
//   3. DPOTrainer::fit, the loop with a metrics registry (TRL's per-step names: loss, rewards/margins,
//      rewards/accuracies, ...), a checkpoint every 10 steps (the policy in Hugging Face layout, AdamW, the
//      schedule, the data position) and an evaluation every 10 steps reported with TRL's eval_* names;
//   4. the implicit reward margin beta * ((pi_c - ref_c) - (pi_r - ref_r)) over the whole set before and after.
// The synthetic preference: after a prompt of letters, the chosen completion repeats the prompt's first
// letter, the rejected one is a run of 'n'.
//
// Expected output (the step lines' numbers depend on the LibTorch build; CTest matches the others):
//   dataset: 16 pairs from pairs.jsonl, 4 batches of 4 per epoch
//   before: mean margin 0.000, accuracy 0/16
//   step 10: loss 0.1384 rewards/margins 1.9599 rewards/accuracies 1.00 | eval_loss 0.1148 eval_rewards/accuracies 1.00
//   step 20: loss 0.0283 rewards/margins 3.6834 rewards/accuracies 1.00 | eval_loss 0.0229 eval_rewards/accuracies 1.00
//   checkpoints: global_step_10 global_step_20
//   after: mean margin 3.922, accuracy 16/16
//   learned: yes
//   dpo: ok
#include "letter_task.hpp"

#include <verl/data/data_provider.hpp>
#include <verl/data/preference_dataset.hpp>
#include <verl/models/actor.hpp>
#include <verl/trainer/dpo_trainer.hpp>
#include <verl/trainer/metrics.hpp>

#include <torch/torch.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <random>
#include <string>

int main() {
  torch::set_num_threads(1);
  const auto dir = std::filesystem::temp_directory_path() / ("verl_03_dpo_" + std::to_string(std::random_device{}()));
  std::filesystem::create_directories(dir);

  // 1. The preference set.
  std::vector<nlohmann::json> rows;
  std::mt19937 rng(1);
  for (int i = 0; i < 16; ++i) {
    std::string prompt;
    for (int j = 0, n = 2 + i % 3; j < n; ++j) prompt += static_cast<char>('a' + rng() % 13);
    rows.push_back({{"prompt", prompt},
                    {"chosen", std::string(2 + i % 2, prompt[0])},
                    {"rejected", std::string(2 + i % 3, 'n')}});
  }
  examples::write_jsonl(dir / "pairs.jsonl", rows);
  const examples::LetterTokenizer tokenizer;
  const auto dataset = std::make_shared<const verl::data::DPODataset>(
      verl::data::DPODataset::load(dir / "pairs.jsonl", tokenizer, verl::data::DPODatasetOptions{}));
  verl::data::DataProviderOptions po;
  po.batch_size = 4;
  po.seed = 3;
  std::printf("dataset: %zu pairs from pairs.jsonl, %zu batches of %zu per epoch\n", dataset->size(),
              dataset->size() / po.batch_size, po.batch_size);

  // 2. The trainer: the policy and a frozen snapshot of it as the reference.
  verl::models::Actor actor(examples::tiny_lm(7));
  verl::trainer::DPOOptions options;
  options.beta = 0.1;
  options.loss_type = verl::pref::parse_dpo_loss_type("sigmoid");
  options.learning_rate = 1e-2;  // a tiny model learns a toy preference quickly
  options.per_device_train_batch_size = 2;
  options.gradient_accumulation_steps = 2;  // one step = two provider batches = 8 pairs
  verl::trainer::DPOTrainer<verl::models::Actor, verl::models::Reference> trainer(
      actor, verl::models::Reference::copy_of(actor), options);

  // 3. The implicit reward margins over the whole set.
  std::vector<std::size_t> all(dataset->size());
  for (std::size_t i = 0; i < all.size(); ++i) all[i] = i;
  const auto everything = dataset->collate(all);
  const auto margins = [&] {
    const auto pi = trainer.policy_log_probs(everything);
    const auto ref = trainer.reference_log_probs(everything);
    return options.beta * ((pi.chosen - ref.chosen) - (pi.rejected - ref.rejected));  // (16,)
  };
  const auto before = margins();
  std::printf("before: mean margin %.3f, accuracy %lld/16\n", before.mean().item<double>(),
              static_cast<long long>(before.gt(0).sum().item<std::int64_t>()));

  // 4. The loop: 20 steps, a checkpoint and an evaluation every 10 (a rerun would resume from the last one).
  verl::trainer::MetricsRegistry registry;  // add a ConsoleExporter / JsonlExporter to log every step
  registry.add_callback([](std::int64_t step, const verl::trainer::MetricMap& m) {
    if (step % 10 == 0)
      std::printf("step %lld: loss %.4f rewards/margins %.4f rewards/accuracies %.2f | eval_loss %.4f "
                  "eval_rewards/accuracies %.2f\n", static_cast<long long>(step), m.at("loss"), m.at("rewards/margins"),
                  m.at("rewards/accuracies"), m.at("eval_loss"), m.at("eval_rewards/accuracies"));
  });
  verl::trainer::OfflineFitOptions fit_options;  // offline_fit_options_from(cfg, ...) reads them from YAML
  fit_options.total_training_steps = 20;
  fit_options.save_freq = 10;
  fit_options.test_freq = 10;
  fit_options.checkpoint_dir = dir / "checkpoints";
  const auto result = trainer.fit(
      [&](const nlohmann::json& resume) {  // null, or the data position of the checkpoint resumed from
        return std::make_unique<verl::data::DataProvider<verl::data::DPODataset>>(dataset, po, resume);
      },
      registry, fit_options, [&](std::int64_t) {  // TRL's evaluate: here on the training pairs themselves
        verl::data::DataProviderOptions eval_options;
        eval_options.batch_size = 4;
        eval_options.shuffle = false;
        eval_options.drop_last = false;
        eval_options.epochs = 1;
        verl::data::DataProvider<verl::data::DPODataset> eval(dataset, eval_options);
        return trainer.validate(eval);
      });
  std::string saved;
  for (const auto& c : result.checkpoints) saved += " " + c.filename().string();
  std::printf("checkpoints:%s\n", saved.c_str());

  const auto after = margins();
  const auto right = after.gt(0).sum().item<std::int64_t>();
  std::printf("after: mean margin %.3f, accuracy %lld/16\n", after.mean().item<double>(), static_cast<long long>(right));
  const bool learned = right >= 15 && after.mean().item<double>() > before.mean().item<double>() + 0.1;
  std::printf("learned: %s\n", learned ? "yes" : "no");
  examples::remove_tree(dir);
  if (!learned) return 1;
  std::printf("dpo: ok\n");
  return 0;
}
