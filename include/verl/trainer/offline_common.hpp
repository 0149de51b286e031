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

#include "verl/core/errors.hpp"
#include "verl/core/model_io.hpp"
#include "verl/trainer/lr_schedule.hpp"
#include "verl/trainer/ppo_update.hpp"  // clip_and_step

#include <ATen/core/Tensor.h>
#include <ATen/ops/cat.h>
#include <torch/optim/adamw.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
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
        optimizer_(std::make_unique<torch::optim::AdamW>(
            parameters, torch::optim::AdamWOptions(args.learning_rate)
                            .betas({args.adam_beta1, args.adam_beta2})
                            .eps(args.adam_epsilon)
                            .weight_decay(args.weight_decay))),
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
    r.grad_norm = clip_and_step(*optimizer_, parameters_, max_grad_norm_);
    scheduler_->step();
    r.lr_next = optimizer_->param_groups().front().options().get_lr();
    return r;
  }

  void zero_grad() { optimizer_->zero_grad(); }
  [[nodiscard]] torch::optim::Optimizer& optimizer() { return *optimizer_; }
  [[nodiscard]] LRScheduler& scheduler() { return *scheduler_; }

 private:
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

}  // namespace detail

}  // namespace verl::trainer
