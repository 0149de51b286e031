#pragma once
//! \file
//! Pieces the offline trainers (DPOTrainer, KTOTrainer, SFTTrainer) share: Hugging Face TrainingArguments'
//! optimisation fields, the AdamW + learning-rate schedule + clipped step, row slices of scoring batches, and
//! masked per-sequence log-prob sums.
//!
//! Micro-batching: every offline trainer takes the whole optimizer-step batch, cuts it into micro-batches of
//! `per_device_train_batch_size` rows (forward/backward each) and divides each micro-batch's summed loss by the
//! step's GLOBAL normaliser (pairs, examples or tokens of the whole step), as verl's engine workers do. The
//! accumulated gradient is then the gradient of the whole step's mean loss whatever the micro-batch size.
//! (TRL averages each micro-batch and divides by gradient_accumulation_steps; the two agree when the
//! micro-batches are the same size, which is TRL's case with drop_last.)
//!
//! The fit loop (OfflineFitOptions, detail::run_offline_fit) is verl 0.7.1's SFT trainer loop
//! (verl/trainer/sft_trainer.py `fit`) for all three trainers: resume from the latest complete checkpoint,
//! steps up to total_training_steps, metrics into a MetricsRegistry, validation every test_freq steps and at
//! the last step, checkpoints every save_freq steps and at the last step. A checkpoint (CheckpointManager
//! layout, docs/checkpoints.md) holds `actor/` (the policy in Hugging Face layout, so a PPO run can start
//! from it), `optimizer/actor/` (AdamW), the LR schedule, LibTorch's CPU generator, the data position, the
//! step and the effective config; a resumed run gives bit-identical weights (CPU, same threads).

#include "verl/core/errors.hpp"
#include "verl/core/model_io.hpp"
#include "verl/trainer/checkpoint_manager.hpp"
#include "verl/trainer/fused_adamw.hpp"
#include "verl/trainer/lr_schedule.hpp"
#include "verl/trainer/metrics.hpp"
#include "verl/trainer/ppo_update.hpp"  // clip_and_step
#include "verl/trainer/progress_bar.hpp"

#include <ATen/core/Tensor.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/zeros.h>
#include <torch/optim/adamw.h>

#include <chrono>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace verl::trainer {

//! The optimisation fields of Hugging Face's TrainingArguments that TRL's DPOConfig / KTOConfig inherit
//! (same names, same defaults except the learning-rate schedule, see `lr_schedule`).
struct OfflineTrainingArguments {
  double learning_rate = 1e-6;                     //!< TRL DPOConfig / KTOConfig default
  std::int64_t per_device_train_batch_size = 8;    //!< rows per forward/backward (the micro-batch)
  std::int64_t gradient_accumulation_steps = 1;    //!< fit(): provider batches per optimizer step
  double max_grad_norm = 1.0;                      //!< global gradient-norm clip; non-finite norm skips the step
  double weight_decay = 0.0;
  double adam_beta1 = 0.9;
  double adam_beta2 = 0.999;
  double adam_epsilon = 1e-8;
  //! Step with torch's fused AdamW kernel (verl::trainer::FusedAdamW): TrainingArguments' optim
  //! "adamw_torch_fused" (transformers' default with torch >= 2.8), verl's optim.override_optimizer_config
  //! {fused: true}. Off by default: the for-loop torch.optim.AdamW, verl's default.
  bool fused = false;
  //! The learning-rate schedule (lr_scheduler_type, num_warmup_steps, num_training_steps). Deliberate
  //! difference: the default is "constant"; TRL's default is "linear" decay to 0 over max_steps, which needs
  //! the step count: set lr_scheduler_type = "linear" and num_training_steps to get it.
  LRScheduleConfig lr_schedule{};

  //! Throws verl::ConfigError naming the first field out of range; `owner` names the options struct.
  void validate(const char* owner) const {
    verl::detail::check<ConfigError>(learning_rate >= 0, owner, ": learning_rate is ", learning_rate, ", expected >= 0");
    verl::detail::check<ConfigError>(per_device_train_batch_size >= 1, owner, ": per_device_train_batch_size is ",
                                     per_device_train_batch_size, ", expected >= 1");
    verl::detail::check<ConfigError>(gradient_accumulation_steps >= 1, owner, ": gradient_accumulation_steps is ",
                                     gradient_accumulation_steps, ", expected >= 1");
    verl::detail::check<ConfigError>(max_grad_norm > 0, owner, ": max_grad_norm is ", max_grad_norm, ", expected > 0");
    lr_schedule.validate();
  }
};

//! AdamW over `parameters` with the arguments' settings, and its learning-rate schedule; one clipped step.
class OfflineOptimizer {
 public:
  OfflineOptimizer(const std::vector<at::Tensor>& parameters, const OfflineTrainingArguments& args)
      : parameters_(parameters),
        optimizer_(make_adamw(parameters, torch::optim::AdamWOptions(args.learning_rate)
                                              .betas({args.adam_beta1, args.adam_beta2})
                                              .eps(args.adam_epsilon)
                                              .weight_decay(args.weight_decay),
                              args.fused)),
        scheduler_(std::make_unique<LRScheduler>(*optimizer_, args.lr_schedule)),
        max_grad_norm_(args.max_grad_norm) {}

  //! What one step did: the gradient norm before clipping and the learning rates before / after the schedule
  //! advanced.
  struct StepResult {
    double grad_norm = 0;
    double lr_used = 0;  //!< the rate of this update (transformers' logged `learning_rate`)
    double lr_next = 0;  //!< the rate after the schedule's step (verl's logged `lr`)
  };

  //! Clips, steps (skipped when the norm is not finite), zeroes the gradients and advances the schedule.
  StepResult step() {
    StepResult r;
    r.lr_used = optimizer_->param_groups().front().options().get_lr();
    r.grad_norm = clip_and_step(*optimizer_, parameters_, max_grad_norm_, sync_.get());
    scheduler_->step();
    r.lr_next = optimizer_->param_groups().front().options().get_lr();
    return r;
  }

  void zero_grad() { optimizer_->zero_grad(); }
  [[nodiscard]] torch::optim::Optimizer& optimizer() { return *optimizer_; }
  [[nodiscard]] LRScheduler& scheduler() { return *scheduler_; }
  //! The synchroniser whose clip_grad_norm_ step() uses (the global norm when the parameters are shards);
  //! null: torch's clip_grad_norm_ over the parameters.
  void set_gradient_synchronizer(std::shared_ptr<dist::GradientSynchronizer> sync) { sync_ = std::move(sync); }

 private:
  static std::unique_ptr<torch::optim::AdamW> make_adamw(const std::vector<at::Tensor>& parameters,
                                                         const torch::optim::AdamWOptions& options, bool fused) {
    if (fused) return std::make_unique<FusedAdamW>(parameters, options);
    return std::make_unique<torch::optim::AdamW>(parameters, options);
  }

  std::shared_ptr<dist::GradientSynchronizer> sync_;
  std::vector<at::Tensor> parameters_;
  std::unique_ptr<torch::optim::AdamW> optimizer_;
  std::unique_ptr<LRScheduler> scheduler_;
  double max_grad_norm_;
};

namespace detail {

//! Rows [begin, begin + n) of a scoring batch (same T and R).
[[nodiscard]] inline TokenBatch rows_of(const TokenBatch& b, std::int64_t begin, std::int64_t n) {
  return TokenBatch{b.input_ids.narrow(0, begin, n), b.attention_mask.narrow(0, begin, n),
                    b.position_ids.narrow(0, begin, n), b.response_length};
}

//! Two scoring batches of one T and R stacked row-wise: one forward for both (TRL's concatenated_forward).
[[nodiscard]] inline TokenBatch stack_rows(const TokenBatch& a, const TokenBatch& b) {
  verl::detail::check<ShapeError>(a.sequence_length() == b.sequence_length() && a.response_length == b.response_length,
                                  "verl::trainer: the two halves of a pair batch must share T and R, got (T ",
                                  a.sequence_length(), ", R ", a.response_length, ") and (T ", b.sequence_length(),
                                  ", R ", b.response_length, ")");
  return TokenBatch{at::cat({a.input_ids, b.input_ids}, 0), at::cat({a.attention_mask, b.attention_mask}, 0),
                    at::cat({a.position_ids, b.position_ids}, 0), a.response_length};
}

//! Per-token log-probs (B,R) of `model` on `batch` at temperature 1.
template <class Model>
[[nodiscard]] at::Tensor token_log_probs(Model& model, const TokenBatch& batch) {
  return model.log_probs(batch, LogProbOptions{}).log_probs;  // (B,R)
}

//! sum_t logp[b,t] * mask[b,t]: the per-sequence log-prob of the masked tokens (TRL's summed logps).
[[nodiscard]] inline at::Tensor masked_row_sum(const at::Tensor& logp, const at::Tensor& mask) {
  return logp.mul(mask.to(logp.scalar_type())).sum(-1);  // (B,)
}

//! The mean of a 1-D tensor as a double (NaN when empty, as torch's mean of an empty tensor).
[[nodiscard]] inline double mean_of(const at::Tensor& t) {
  return t.numel() == 0 ? std::nan("") : t.to(at::kDouble).mean().item<double>();
}

//! A policy whose checkpoint is written collectively (verl::dist::FullyShardedActor): it returns, for its
//! optimizer, a state object (verl::dist::ShardedCheckpointState) that gathers the full model and optimizer
//! state on every rank for the writer and slices them back after a restore.
template <class Policy>
concept CheckpointsCollectively = requires(const Policy& p, torch::optim::Optimizer& opt) {
  p.collective_checkpoint(opt)->gather();
};

//! The collective checkpoint state of `policy` (null for other policies).
template <class Policy>
auto collective_checkpoint_of(const Policy& policy, torch::optim::Optimizer& optimizer) {
  if constexpr (CheckpointsCollectively<Policy>) {
    return policy.collective_checkpoint(optimizer);
  } else {
    (void)policy;
    (void)optimizer;
    return std::shared_ptr<void>();
  }
}

//! Registers `collective`'s model and (with_optimizer) optimizer as the checkpoint parts `name`.
template <class State>
void add_collective_parts(const std::string& name, const std::shared_ptr<State>& collective, CheckpointContents& parts,
                          bool with_optimizer) {
  State* c = collective.get();
  parts.model(name, [c](const std::filesystem::path& p) { c->save_model(p); },
              [c](const std::filesystem::path& p) { c->load_model(p); });
  if (with_optimizer) parts.optimizer(name, c->full_optimizer(), c->full_named_parameters());
}

//! Every rank waits here until all have arrived (an all-reduce of one element).
inline void barrier(dist::GradientSynchronizer& sync) {
  at::Tensor t = at::zeros({1}, at::TensorOptions().dtype(at::kFloat).device(sync.device()));  // (1,)
  sync.all_reduce(t, ReduceOp::sum);
}

//! The checkpoint parts of the policy: `actor/` in its own (Hugging Face) layout, loaded back in place, and
//! its AdamW state keyed by parameter name. A collectively checkpointed policy registers its state object's
//! parts instead (pass it as `collective`).
template <class Policy, class Collective = void>
void add_policy_parts(std::string_view owner, Policy& policy, OfflineOptimizer& optimizer, CheckpointContents& parts,
                      bool with_optimizer, const std::shared_ptr<Collective>& collective = nullptr) {
  if constexpr (CheckpointsCollectively<Policy>) {
    (void)owner;
    (void)policy;
    (void)optimizer;
    add_collective_parts("actor", collective, parts, with_optimizer);
  } else if constexpr (requires(const std::filesystem::path& p) {
                  policy.save(p);
                  policy.load_weights(p);
                  policy.named_parameters();
                }) {
    parts.model("actor", [&policy](const std::filesystem::path& p) { policy.save(p); },
                [&policy](const std::filesystem::path& p) { policy.load_weights(p); });
    if (with_optimizer) parts.optimizer("actor", optimizer.optimizer(), policy.named_parameters());
  } else {
    (void)policy;
    (void)optimizer;
    (void)parts;
    (void)with_optimizer;
    throw ConfigError(verl::detail::concat_message(
        owner, "::fit: checkpointing and resuming need the policy to have save(dir), load_weights(dir) and "
        "named_parameters() (verl::models::Actor has them); set save_freq <= 0 and resume = false otherwise"));
  }
}

}  // namespace detail

//! The loop around an offline trainer's step: verl 0.7.1 sft_trainer.py `fit` with its trainer.* keys
//! (offline_fit_options_from in offline_from_config.hpp fills it from a YAML config).
struct OfflineFitOptions {
  std::int64_t total_training_steps = 1;  //!< trainer.total_training_steps: the loop ends at this global step
  std::int64_t save_freq = -1;            //!< trainer.save_freq: checkpoint every k steps and at the last (<= 0: never)
  std::filesystem::path checkpoint_dir;   //!< trainer.default_local_dir
  int max_ckpt_to_keep = 0;               //!< trainer.max_ckpt_to_keep: keep the newest N (<= 0: all)
  bool resume = true;                     //!< trainer.resume_mode auto: the latest complete checkpoint, if any
  //! trainer.resume_mode resume_path: resume from exactly this checkpoint directory; a missing, incomplete or
  //! corrupted one is an error (verl::InputError naming the file and what mismatched), never skipped.
  std::optional<std::filesystem::path> resume_from_path;
  bool save_optimizer = true;             //!< checkpoint.save_contents has `optimizer`
  bool save_training_state = true;        //!< checkpoint.save_contents has `extra` (schedule, RNG, data position)
  bool load_optimizer = true;             //!< checkpoint.load_contents has `optimizer`
  bool load_training_state = true;        //!< checkpoint.load_contents has `extra`
  std::string config_text;                //!< the effective config, saved as config.yaml in each checkpoint
  std::int64_t test_freq = -1;            //!< trainer.test_freq: validate every k steps (<= 0: only at the last)
  bool val_before_train = false;          //!< validate once before the first step of a fresh run
  bool progress_bar = true;               //!< a console bar over the steps (only on a terminal)
  //! Where checkpoint notices go (a skipped incomplete or corrupted checkpoint, deletions); empty: std::cerr.
  std::function<void(const std::string&)> report;
};

//! What an offline fit() did.
struct OfflineFitResult {
  std::int64_t first_step = 0;                     //!< the first step run (resumed step + 1)
  std::int64_t last_step = 0;                      //!< the last step run
  std::optional<std::int64_t> resumed_from;        //!< the checkpoint step resumed from
  std::map<std::string, double> last_metrics;      //!< the last step's metrics (validation ones merged in)
  std::map<std::string, double> last_val_metrics;  //!< the last validation's metrics (verl: "Final validation metrics")
  std::vector<std::filesystem::path> checkpoints;  //!< the checkpoints written, in order
};

namespace detail {

//! Validation metrics at a global step (fit's validate callback).
using OfflineValidateFn = std::function<std::map<std::string, double>(std::int64_t)>;

//! The fit loop of the offline trainers (see the file comment). `make_provider(resume_state)` builds the
//! data source from null (fresh start) or the saved provider state; `train_step(provider)` runs one optimizer
//! step (advancing `global_step`) and returns its metrics, or nullopt when the data ran out.
//! `write_checkpoints` false (data-parallel ranks other than 0, whose replicas equal rank 0's): this rank
//! resumes from checkpoints like the others but never writes or deletes one.
template <class Policy, class MakeProvider, class StepFn>
OfflineFitResult run_offline_fit(std::string_view owner, Policy& policy, OfflineOptimizer& optimizer,
                                 std::int64_t& global_step, MakeProvider&& make_provider, StepFn&& train_step,
                                 MetricsRegistry& registry, const OfflineFitOptions& fo,
                                 const OfflineValidateFn& validate, bool write_checkpoints = true,
                                 dist::GradientSynchronizer* sync = nullptr) {
  verl::detail::check<ConfigError>(fo.total_training_steps >= 1, owner, "::fit: total_training_steps is ",
                                   fo.total_training_steps, ", expected >= 1");
  verl::detail::check<ConfigError>(!(fo.save_freq > 0 && fo.checkpoint_dir.empty()), owner, "::fit: save_freq is ",
                                   fo.save_freq, " but checkpoint_dir (trainer.default_local_dir) is empty");
  verl::detail::check<ConfigError>(!fo.resume_from_path || !fo.resume_from_path->empty(), owner,
                                   "::fit: resume_from_path is set but empty");
  OfflineFitResult result;
  using Provider = std::remove_reference_t<decltype(*make_provider(nlohmann::json()))>;
  std::unique_ptr<Provider> provider;
  nlohmann::json data_state = nullptr;  // the saved data position, read at restore, before the provider exists
  const auto data_get = [&provider] { return provider ? provider->state() : nlohmann::json(); };
  const auto data_set = [&data_state](const nlohmann::json& s) { data_state = s; };

  CheckpointOptions co;
  co.keep_last_n = fo.max_ckpt_to_keep;
  co.save_optimizer = fo.save_optimizer;
  co.save_training_state = fo.save_training_state;
  co.report = fo.report;
  std::optional<CheckpointManager> manager;
  CheckpointContents parts;
  // A sharded policy: every rank gathers for each save (the writer writes) and slices after a restore.
  const auto collective = collective_checkpoint_of(policy, optimizer.optimizer());
  if constexpr (CheckpointsCollectively<Policy>) {
    verl::detail::check<ConfigError>(sync != nullptr, owner, "::fit: the policy is fully sharded but the trainer has "
                                     "no gradient synchroniser, expected the policy's synchronizer()");
  }
  if (fo.save_freq > 0 && write_checkpoints) {
    manager.emplace(fo.checkpoint_dir, co);
    add_policy_parts(owner, policy, optimizer, parts, true, collective);
    parts.scheduler("actor", optimizer.scheduler());
    parts.state("trainer", [&global_step] { return nlohmann::json{{"global_step", global_step}}; },
                [](const nlohmann::json&) {});  // the step is the checkpoint's; kept for readers of the file
    parts.data_position(data_get, data_set);
    if (!fo.config_text.empty()) parts.config_text(fo.config_text);
  }

  // Resume: resume_path must be exactly right; auto takes the latest complete checkpoint (reporting the
  // incomplete or corrupted ones it skips) or starts fresh.
  std::optional<Checkpoint> from;
  if (fo.resume_from_path) {
    const auto parent = fo.resume_from_path->parent_path();
    from = CheckpointManager(parent.empty() ? std::filesystem::path(".") : parent, co).load(*fo.resume_from_path);
  } else if (fo.resume && !fo.checkpoint_dir.empty()) {
    from = CheckpointManager(fo.checkpoint_dir, co).resume();
  }
  if (from) {
    CheckpointContents restore;
    add_policy_parts(owner, policy, optimizer, restore, fo.load_optimizer, collective);
    restore.torch_cpu_rng(fo.load_training_state);
    if (fo.load_training_state) {
      restore.scheduler("actor", optimizer.scheduler());
      restore.data_position(data_get, data_set);
    }
    if constexpr (CheckpointsCollectively<Policy>) {
      collective->prepare_restore();
      try {
        from->restore(restore);
      } catch (...) {
        collective->release();
        throw;
      }
      if (fo.load_optimizer) {
        collective->scatter();  // this rank's slices of the restored AdamW state
      } else {
        collective->release();
      }
    } else {
      from->restore(restore);  // names the first part the checkpoint lacks before changing anything
    }
    global_step = from->step();
    result.resumed_from = from->step();
  }

  provider = make_provider(data_state);
  verl::detail::check<ConfigError>(provider != nullptr, owner, "::fit: make_provider returned null");
  const auto record = [&registry](std::int64_t step, const std::map<std::string, double>& m) {
    for (const auto& [k, v] : m)
      if (k != "step") registry.record(k, v);  // the step is the commit's (a "step" metric would collide in JSONL)
    registry.commit(step);
  };
  const auto run_validation = [&](std::int64_t step) {
    result.last_val_metrics = validate(step);
    return result.last_val_metrics;
  };
  if (fo.val_before_train && validate && global_step == 0) record(0, run_validation(0));

  result.first_step = global_step + 1;
  ProgressBarOptions bar_options;
  bar_options.total = fo.total_training_steps;
  bar_options.desc = "Training Progress";
  if (!fo.progress_bar) bar_options.show = ProgressBarOptions::Show::never;
  ProgressBar bar(bar_options);
  bar.advance(global_step);
  std::int64_t validated_at = -1, saved_at = -1;
  // Every rank knows when a checkpoint is due (a sharded policy gathers on all of them); the writer writes.
  const bool saving = fo.save_freq > 0 && (manager.has_value() || CheckpointsCollectively<Policy>);
  const auto save = [&](std::map<std::string, double>& metrics) {
    const auto t0 = std::chrono::steady_clock::now();
    if constexpr (CheckpointsCollectively<Policy>) {
      collective->gather();
      try {
        if (manager) result.checkpoints.push_back(manager->save(global_step, parts));
      } catch (...) {
        collective->release();
        throw;
      }
      collective->release();
      barrier(*sync);  // the checkpoint is complete before any rank goes on (and may read it)
    } else {
      result.checkpoints.push_back(manager->save(global_step, parts));
    }
    metrics["timing_s/save_checkpoint"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    saved_at = global_step;
  };
  while (global_step < fo.total_training_steps) {
    std::optional<std::map<std::string, double>> metrics = train_step(*provider);
    if (!metrics) break;
    const bool last = global_step >= fo.total_training_steps;
    if (validate && (last || (fo.test_freq > 0 && global_step % fo.test_freq == 0))) {
      for (const auto& [k, v] : run_validation(global_step)) (*metrics)[k] = v;
      validated_at = global_step;
    }
    if (saving && (last || global_step % fo.save_freq == 0)) save(*metrics);
    for (const char* key : {"loss", "train/loss"})
      if (metrics->count(key)) bar.set_postfix(MetricMap{{key, metrics->at(key)}});
    bar.advance();
    record(global_step, *metrics);
    result.last_metrics = std::move(*metrics);
  }
  // The data ran out before total_training_steps: the last step run is validated and saved as the last.
  if (global_step >= result.first_step && global_step < fo.total_training_steps) {
    std::map<std::string, double> extra;
    if (validate && validated_at != global_step) extra = run_validation(global_step);
    if (saving && saved_at != global_step) save(extra);
    if (!extra.empty()) record(global_step, extra);
  }
  result.last_step = global_step;
  return result;
}

}  // namespace detail

}  // namespace verl::trainer
