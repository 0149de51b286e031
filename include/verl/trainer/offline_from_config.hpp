#pragma once
//! \file
//! From the offline trainers' configuration (verl::config::OfflineConfig: verl 0.7.1 sft_trainer_engine.yaml
//! names plus TRL 0.19.1's dpo.* / kto.* keys, read from YAML with `key=value` overrides) to the datasets',
//! the data providers', the trainers' and the fit loop's options:
//!
//!     auto [cfg, yaml] = verl::config::load_config<verl::config::OfflineConfig>("dpo.yaml", overrides);
//!     std::cout << yaml;                                                     // the effective config
//!     auto pairs = std::make_shared<const verl::data::DPODataset>(verl::data::DPODataset::load(
//!         files, tokenizer, verl::trainer::dpo_dataset_options_from(cfg)));
//!     const auto po = verl::trainer::train_provider_options_from(cfg);       // train_batch_size, shuffle, seed
//!     const auto steps = verl::trainer::offline_total_training_steps(cfg, pairs->size() / po.batch_size);
//!     verl::trainer::DPOTrainer<Actor, Reference> trainer(actor, ref, verl::trainer::dpo_options_from(cfg, steps));
//!     verl::trainer::MetricsRegistry registry;
//!     verl::trainer::add_metric_exporters_from(cfg, registry, "metrics.jsonl");  // trainer.logger
//!     trainer.fit(make_provider, registry, verl::trainer::offline_fit_options_from(cfg, steps, yaml), validate);
//!
//! Several processes (SFT; issue 7): check the launch with cfg.validate_layout({WORLD_SIZE, LOCAL_WORLD_SIZE})
//! (trainer.nnodes / n_gpus_per_node, data.train_batch_size divisible by the processes), then for
//! engine.strategy dp give the trainer a synchroniser, SFTTrainer(policy, sft_options_from(cfg, steps),
//! verl::dist::make_data_parallel(world, policy.parameters())); every process builds the same providers
//! (train_provider_options_from: the GLOBAL batch of data.train_batch_size rows, the same seed) and the trainer
//! takes its rows. examples/05_sft.cpp does all of it.
//!
//! Every key is either mapped below or refused with verl::ConfigError naming it when its value asks for
//! something verl-cpp does not do (check_offline_config). Keys that change nothing here, by design:
//! - data.use_dynamic_bsz, data.max_token_len_per_gpu: the trainers cut micro-batches of
//!   data.micro_batch_size_per_gpu rows; the update does not depend on the cut (every micro-batch is divided
//!   by the step's global normaliser, offline_common.hpp), so only memory and speed differ.
//! - optim.total_training_steps: replaced by the computed step count, as verl's SFT trainer does
//!   (`optimizer_config.total_training_steps = self.total_training_steps`).
//! - dpo.disable_dropout, kto.disable_dropout: verl-cpp's models have no dropout (attention_dropout must be 0).
//! - model.*: the program loads the model (e.g. verl::models::Actor::load(cfg.model.path)) and chooses the
//!   tokenizer and chat format; enable_gradient_checkpointing and use_remove_padding are speed/memory switches.
//! - trainer.device: the trainers run where the model's parameters are; trainer.project_name and
//!   experiment_name only name default_local_dir.
//! Deliberate differences: the data order is DataProvider's (torch RandomSampler order from trainer.seed;
//! verl's DistributedSampler draws another permutation); the optimizer's eps is torch's default 1e-8 (not a
//! verl key). The validation batches: SFT as verl (data.train_batch_size, drop_last), DPO/KTO as TRL's eval
//! loader (unshuffled, last batch kept) with data.micro_batch_size_per_gpu rows.

#include "verl/config/trainer_config.hpp"
#include "verl/data/data_provider.hpp"
#include "verl/data/preference_dataset.hpp"
#include "verl/trainer/dpo_trainer.hpp"
#include "verl/trainer/kto_trainer.hpp"
#include "verl/trainer/metrics.hpp"
#include "verl/trainer/sft_trainer.hpp"

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace verl::trainer {

namespace detail {

[[noreturn]] inline void offline_key_error(std::string_view key, std::string_view what) {
  throw ConfigError(verl::detail::concat_message("verl::trainer: `", key, "` ", what));
}

inline bool has_content(const std::vector<std::string>& list, std::string_view item) {
  return std::find(list.begin(), list.end(), item) != list.end();
}

//! TRL's truncation_mode for data.truncation (verl's names: `left` cuts the left end, keeping the last tokens).
inline data::TruncationMode truncation_mode_from(const config::OfflineConfig& c) {
  switch (c.data.truncation) {
    case config::Truncation::left: return data::TruncationMode::keep_end;
    case config::Truncation::right: return data::TruncationMode::keep_start;
    default:
      offline_key_error("data.truncation", verl::detail::concat_message(
          "is \"", config::to_string(c.data.truncation), "\"; the DPO and KTO datasets cut overlong sequences as "
          "TRL does: set it to left (TRL's truncation_mode keep_end, its default) or right (keep_start)"));
  }
}

}  // namespace detail

//! Throws verl::ConfigError naming the first key whose value verl-cpp's offline trainers do not support
//! (the *_from functions call it).
inline void check_offline_config(const config::OfflineConfig& c) {
  using detail::offline_key_error;
  if (c.data.train_max_samples != -1)
    offline_key_error("data.train_max_samples", "is set; not supported (use every row: -1); write a smaller file instead");
  if (c.data.val_max_samples != -1)
    offline_key_error("data.val_max_samples", "is set; not supported (use every row: -1); write a smaller file instead");
  if (!c.data.apply_chat_template_kwargs.empty())
    offline_key_error("data.apply_chat_template_kwargs", "is not empty; the chat format is the program's "
                      "(verl::chat formats take no template variables)");
  if (c.model.custom_chat_template)
    offline_key_error("model.custom_chat_template", "is set; the chat format is the program's (a verl::chat "
                      "format passed to the dataset's load)");
  if (!c.model.override_config.empty())
    offline_key_error("model.override_config", "is not empty; edit the model's config.json instead");
  if (c.kto.precompute_ref_log_probs)
    offline_key_error("kto.precompute_ref_log_probs", "is true; not provided for KTO (the KL pairs depend on the "
                      "batch), set it to false");
  if (!detail::has_content(c.checkpoint.save_contents, "model"))
    offline_key_error("checkpoint.save_contents", "lacks \"model\"; a checkpoint always holds the policy (a resume "
                      "needs it)");
  if (!detail::has_content(c.checkpoint.load_contents, "model"))
    offline_key_error("checkpoint.load_contents", "lacks \"model\"; a resume always loads the policy");
}

//! verl's SFT rule: trainer.total_training_steps when set, else batches per epoch x trainer.total_epochs.
//! `batches_per_epoch`: the training provider's (DataProvider::batches_per_epoch()).
[[nodiscard]] inline std::int64_t offline_total_training_steps(const config::OfflineConfig& c,
                                                               std::int64_t batches_per_epoch) {
  if (c.trainer.total_training_steps) return *c.trainer.total_training_steps;
  const auto steps = batches_per_epoch * c.trainer.total_epochs;
  verl::detail::check<ConfigError>(steps >= 1, "verl::trainer::offline_total_training_steps: ", batches_per_epoch,
                                   " batches per epoch x `trainer.total_epochs` ", c.trainer.total_epochs,
                                   " is no step; expected at least one");
  return steps;
}

//! The learning-rate schedule of `optim` over `total_steps` (verl's warm-up rule, LRScheduleConfig).
[[nodiscard]] inline LRScheduleConfig lr_schedule_from(const config::OptimConfig& o, std::int64_t total_steps) {
  return LRScheduleConfig::from_verl_optim(std::string(config::to_string(o.lr_scheduler_type)), o.lr_warmup_steps,
                                           o.lr_warmup_steps_ratio, total_steps, o.min_lr_ratio.value_or(0.0),
                                           o.num_cycles, o.zero_indexed_step);
}

//! TrainingArguments' fields from `optim` and `data`: learning_rate = optim.lr, weight_decay, adam_beta1/2 =
//! optim.betas, max_grad_norm = optim.clip_grad, fused = optim.override_optimizer_config.fused, per_device_train_batch_size = data.micro_batch_size_per_gpu,
//! gradient_accumulation_steps = 1 (a step is one provider batch of data.train_batch_size rows).
[[nodiscard]] inline OfflineTrainingArguments training_arguments_from(const config::OfflineConfig& c,
                                                                      std::int64_t total_steps) {
  check_offline_config(c);
  OfflineTrainingArguments a;
  a.learning_rate = c.optim.lr;
  a.per_device_train_batch_size = c.data.micro_batch_size_per_gpu;
  a.gradient_accumulation_steps = 1;
  a.max_grad_norm = c.optim.clip_grad;
  a.weight_decay = c.optim.weight_decay;
  a.adam_beta1 = c.optim.betas.at(0);
  a.adam_beta2 = c.optim.betas.at(1);
  a.fused = c.optim.fused();
  a.lr_schedule = lr_schedule_from(c.optim, total_steps);
  return a;
}

//! DPOTrainer options: training_arguments_from plus dpo.* (beta, loss_type, label_smoothing, reference_free,
//! f_divergence_type, f_alpha_divergence_coef, discopop_tau, rpo_alpha, precompute_ref_log_probs).
[[nodiscard]] inline DPOOptions dpo_options_from(const config::OfflineConfig& c, std::int64_t total_steps) {
  DPOOptions o;
  static_cast<OfflineTrainingArguments&>(o) = training_arguments_from(c, total_steps);
  o.beta = c.dpo.beta;
  o.loss_type = pref::parse_dpo_loss_type(c.dpo.loss_type);
  o.label_smoothing = c.dpo.label_smoothing;
  o.reference_free = c.dpo.reference_free;
  o.f_divergence_type = pref::parse_f_divergence(c.dpo.f_divergence_type);
  o.f_alpha_divergence_coef = c.dpo.f_alpha_divergence_coef;
  o.discopop_tau = c.dpo.discopop_tau;
  o.rpo_alpha = c.dpo.rpo_alpha;
  o.precompute_ref_log_probs = c.dpo.precompute_ref_log_probs;
  o.validate();
  return o;
}

//! KTOTrainer options: training_arguments_from plus kto.* (beta, loss_type, desirable_weight,
//! undesirable_weight).
[[nodiscard]] inline KTOOptions kto_options_from(const config::OfflineConfig& c, std::int64_t total_steps) {
  KTOOptions o;
  static_cast<OfflineTrainingArguments&>(o) = training_arguments_from(c, total_steps);
  o.beta = c.kto.beta;
  o.loss_type = pref::parse_kto_loss_type(c.kto.loss_type);
  o.desirable_weight = c.kto.desirable_weight;
  o.undesirable_weight = c.kto.undesirable_weight;
  o.validate();
  return o;
}

//! SFTTrainer options (verl's names): micro_batch_size_per_gpu = data.micro_batch_size_per_gpu, lr,
//! weight_decay, beta1/beta2 = optim.betas, clip_grad, the schedule of `optim`.
[[nodiscard]] inline SFTOptions sft_options_from(const config::OfflineConfig& c, std::int64_t total_steps) {
  const auto a = training_arguments_from(c, total_steps);
  SFTOptions o;
  o.micro_batch_size_per_gpu = a.per_device_train_batch_size;
  o.lr = a.learning_rate;
  o.weight_decay = a.weight_decay;
  o.beta1 = a.adam_beta1;
  o.beta2 = a.adam_beta2;
  o.eps = a.adam_epsilon;
  o.clip_grad = a.max_grad_norm;
  o.lr_schedule = a.lr_schedule;
  o.validate();
  return o;
}

//! The training provider (verl's train dataloader): batches of data.train_batch_size, data.shuffle with
//! trainer.seed, drop_last, data.num_workers threads, trainer.total_epochs epochs.
[[nodiscard]] inline data::DataProviderOptions train_provider_options_from(const config::OfflineConfig& c) {
  check_offline_config(c);
  data::DataProviderOptions o;
  o.batch_size = static_cast<std::size_t>(c.data.train_batch_size);
  o.shuffle = c.data.shuffle;
  o.seed = static_cast<std::uint64_t>(c.trainer.seed);
  o.drop_last = true;
  o.num_workers = static_cast<std::size_t>(c.data.num_workers);
  o.epochs = static_cast<std::size_t>(c.trainer.total_epochs);
  return o;
}

//! verl's SFT validation loader: one epoch, unshuffled, batches of data.train_batch_size, drop_last.
[[nodiscard]] inline data::DataProviderOptions sft_val_provider_options_from(const config::OfflineConfig& c) {
  auto o = train_provider_options_from(c);
  o.shuffle = false;
  o.epochs = 1;
  return o;
}

//! TRL's eval loader for DPO/KTO: one epoch, unshuffled, the last partial batch kept, batches of
//! data.micro_batch_size_per_gpu (TRL's per_device_eval_batch_size).
[[nodiscard]] inline data::DataProviderOptions preference_val_provider_options_from(const config::OfflineConfig& c) {
  auto o = train_provider_options_from(c);
  o.batch_size = static_cast<std::size_t>(c.data.micro_batch_size_per_gpu);
  o.shuffle = false;
  o.drop_last = false;
  o.epochs = 1;
  return o;
}

//! DPODataset options: prompt_key, chosen_key, rejected_key, max_prompt_length, max_length and
//! data.truncation (left = TRL's keep_end, right = keep_start; error and middle are refused).
[[nodiscard]] inline data::DPODatasetOptions dpo_dataset_options_from(const config::OfflineConfig& c) {
  check_offline_config(c);
  data::DPODatasetOptions o;
  o.prompt_key = c.data.prompt_key;
  o.chosen_key = c.data.chosen_key;
  o.rejected_key = c.data.rejected_key;
  o.max_prompt_length = c.data.max_prompt_length;
  o.max_completion_length = std::nullopt;  // TRL's default; not a config key
  o.max_length = c.data.max_length;
  o.truncation_mode = detail::truncation_mode_from(c);
  return o;
}

//! KTODataset options: prompt_key, completion_key, label_key, max_prompt_length (required), max_length,
//! data.truncation as for DPO. bos_token_id is the tokenizer's: set it on the result when it has one.
[[nodiscard]] inline data::KTODatasetOptions kto_dataset_options_from(const config::OfflineConfig& c) {
  check_offline_config(c);
  if (!c.data.max_prompt_length)
    detail::offline_key_error("data.max_prompt_length", "is null; KTO needs a prompt limit (TRL's default 512)");
  data::KTODatasetOptions o;
  o.prompt_key = c.data.prompt_key;
  o.completion_key = c.data.completion_key;
  o.label_key = c.data.label_key;
  o.max_prompt_length = *c.data.max_prompt_length;
  o.max_length = c.data.max_length;
  o.truncation_mode = detail::truncation_mode_from(c);
  return o;
}

//! SFTDataset options: prompt_key, response_key, messages_key, max_length, truncation (error, left, right;
//! middle is refused as by verl's SFT dataset). data.max_prompt_length is not used by SFT.
[[nodiscard]] inline data::SFTDatasetOptions sft_dataset_options_from(const config::OfflineConfig& c) {
  check_offline_config(c);
  data::SFTDatasetOptions o;
  o.prompt_key = c.data.prompt_key;
  o.response_key = c.data.response_key;
  o.messages_key = c.data.messages_key;
  o.max_length = c.data.max_length;
  switch (c.data.truncation) {
    case config::Truncation::error: o.truncation = data::Truncation::error; break;
    case config::Truncation::left: o.truncation = data::Truncation::left; break;
    case config::Truncation::right: o.truncation = data::Truncation::right; break;
    case config::Truncation::middle:
      detail::offline_key_error("data.truncation", "is \"middle\"; verl's SFT dataset takes error, left or right");
  }
  return o;
}

//! The fit loop's options: trainer.save_freq, default_local_dir, max_ckpt_to_keep, resume_mode (auto: the
//! latest complete checkpoint; resume_path: trainer.resume_from_path, refused when incomplete or corrupted;
//! disable), test_freq, checkpoint.save_contents / load_contents (`optimizer`, `extra`); `yaml` (the effective
//! config) is saved with every checkpoint.
[[nodiscard]] inline OfflineFitOptions offline_fit_options_from(const config::OfflineConfig& c, std::int64_t total_steps,
                                                                std::string yaml) {
  check_offline_config(c);
  OfflineFitOptions f;
  f.total_training_steps = total_steps;
  f.save_freq = c.trainer.save_freq;
  f.checkpoint_dir = c.trainer.default_local_dir;
  f.max_ckpt_to_keep = static_cast<int>(c.trainer.max_ckpt_to_keep.value_or(0));
  f.resume = c.trainer.resume_mode != config::ResumeMode::disable;
  if (c.trainer.resume_mode == config::ResumeMode::resume_path) f.resume_from_path = *c.trainer.resume_from_path;
  f.save_optimizer = detail::has_content(c.checkpoint.save_contents, "optimizer");
  f.save_training_state = detail::has_content(c.checkpoint.save_contents, "extra");
  f.load_optimizer = detail::has_content(c.checkpoint.load_contents, "optimizer");
  f.load_training_state = detail::has_content(c.checkpoint.load_contents, "extra");
  f.test_freq = c.trainer.test_freq;
  f.config_text = std::move(yaml);
  return f;
}

//! trainer.logger as exporters: `console` (verl's console line) and `jsonl` (a JsonlExporter appending to
//! `jsonl_path`, whose directory is created); any other name is a ConfigError naming it.
inline void add_metric_exporters_from(const config::OfflineConfig& c, MetricsRegistry& registry,
                                      const std::filesystem::path& jsonl_path) {
  for (const auto& logger : c.trainer.logger) {
    if (logger == "console") {
      registry.add_exporter(ConsoleExporter());
    } else if (logger == "jsonl") {
      if (jsonl_path.has_parent_path()) std::filesystem::create_directories(jsonl_path.parent_path());
      registry.add_exporter(JsonlExporter(jsonl_path.string()));
    } else {
      detail::offline_key_error("trainer.logger", verl::detail::concat_message(
          "has \"", logger, "\", which is not available in verl-cpp; expected console or jsonl"));
    }
  }
}

}  // namespace verl::trainer
