#pragma once
//! \file
//! Learning-rate schedules with warm-up, as verl 0.7.1's actor and critic build them
//! (verl/utils/torch_functional.py get_constant_schedule_with_warmup, get_cosine_schedule_with_warmup,
//! get_wsd_schedule_with_warmup, wrapped in torch's LambdaLR), plus transformers' linear decay
//! (transformers/optimization.py get_linear_schedule_with_warmup, TRL's default for DPO/KTO/SFT).
//!
//! Semantics pinned by tests/golden/trainer/lr_schedules.json (verl's and transformers' own functions):
//! - lr(step) = base_lr * lr_multiplier(config, step), in double, the same operations in the same order as
//!   the Python lambdas, so the values are bit-identical.
//! - LambdaLR's step counting: constructing the scheduler sets lr = base_lr * multiplier(0) (so with a
//!   warm-up the first update runs at lr 0, as in verl); each step() then advances by one. verl calls
//!   `lr_scheduler.step()` once after each optimizer update of a training step, and so should the trainer.
//! - num_warmup_steps from verl's optim config: lr_warmup_steps when > 0; null, 0 or negative delegate to
//!   int(lr_warmup_steps_ratio * total_training_steps), as verl documents it (trainer/config/actor/actor.yaml)
//!   and its FSDP engine does it (workers/engine/fsdp/transformer_impl.py). verl's legacy
//!   workers/fsdp_workers.py delegates only for negative values; the two differ only for lr_warmup_steps = 0
//!   with a ratio > 0.
//!
//! Typical use in a trainer:
//! \code
//!   torch::optim::AdamW opt(lm->parameters(), torch::optim::AdamWOptions(1e-6).weight_decay(0.01));
//!   verl::trainer::LRScheduler sched(opt, verl::trainer::LRScheduleConfig::from_verl_optim(
//!       "cosine", /*lr_warmup_steps=*/-1, /*lr_warmup_steps_ratio=*/0.1, /*total_training_steps=*/100));
//!   for (...) { loss.backward(); opt.step(); sched.step(); }
//!   json saved = sched.state();      // into the checkpoint; on resume: sched.load_state(saved)
//! \endcode

#include "verl/core/errors.hpp"

#include <nlohmann/json.hpp>
#include <torch/optim/optimizer.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <numbers>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace verl::trainer {

//! Which schedule and its parameters. Field names follow verl's optim config.
struct LRScheduleConfig {
  //! "constant" (warm-up then constant), "cosine" (warm-up then cosine decay to min_lr_ratio), "wsd"
  //! (warm-up, stable, cosine decay) or "linear" (warm-up then linear decay to 0, transformers').
  std::string lr_scheduler_type = "constant";
  std::int64_t num_warmup_steps = 0;     //!< steps of linear warm-up from 0 (cosine: from init_lr_ratio)
  std::int64_t num_training_steps = -1;  //!< total steps; required (>= 1) by cosine, wsd and linear
  double min_lr_ratio = 0.0;             //!< cosine/wsd: the floor, as a fraction of the base lr, in [0,1]
  double num_cycles = 0.5;               //!< cosine/wsd: cosine waves over the decay (0.5 = a half wave)
  double init_lr_ratio = 0.0;            //!< cosine: warm-up start, as a fraction of the base lr, in [0,1]
  bool zero_indexed_step = true;         //!< cosine: false counts steps from 1 (torchtitan's convention)
  double stable_ratio = 0.9;             //!< wsd: fraction of the post-warm-up steps held at the base lr

  //! verl's rule for the warm-up length: `lr_warmup_steps` when set and > 0, else
  //! int(lr_warmup_steps_ratio * total_training_steps) (truncated towards zero, as Python's int()).
  [[nodiscard]] static std::int64_t resolve_warmup_steps(std::optional<std::int64_t> lr_warmup_steps,
                                                         double lr_warmup_steps_ratio,
                                                         std::int64_t total_training_steps) {
    if (lr_warmup_steps && *lr_warmup_steps > 0) return *lr_warmup_steps;
    return static_cast<std::int64_t>(lr_warmup_steps_ratio * static_cast<double>(total_training_steps));
  }

  //! The schedule verl builds from an actor's or critic's `optim` section (keys of the same names).
  [[nodiscard]] static LRScheduleConfig from_verl_optim(std::string lr_scheduler_type,
                                                        std::optional<std::int64_t> lr_warmup_steps,
                                                        double lr_warmup_steps_ratio,
                                                        std::int64_t total_training_steps, double min_lr_ratio = 0.0,
                                                        double num_cycles = 0.5, bool zero_indexed_step = true) {
    LRScheduleConfig c;
    c.lr_scheduler_type = std::move(lr_scheduler_type);
    c.num_warmup_steps = resolve_warmup_steps(lr_warmup_steps, lr_warmup_steps_ratio, total_training_steps);
    c.num_training_steps = total_training_steps;
    c.min_lr_ratio = min_lr_ratio;
    c.num_cycles = num_cycles;
    c.zero_indexed_step = zero_indexed_step;
    c.validate();
    return c;
  }

  //! Throws verl::ConfigError naming the field when a value is outside what the schedule accepts.
  void validate() const {
    const auto fail = [](auto&&... parts) {
      throw ConfigError(verl::detail::concat_message("verl::trainer::LRScheduleConfig: ", parts...));
    };
    const auto& t = lr_scheduler_type;
    if (t != "constant" && t != "cosine" && t != "wsd" && t != "linear") {
      fail("lr_scheduler_type is `", t, "`; expected one of constant, cosine, wsd, linear");
    }
    if (num_warmup_steps < 0) fail("num_warmup_steps is ", num_warmup_steps, "; expected >= 0");
    if (t != "constant" && num_training_steps < 1) {
      fail("num_training_steps is ", num_training_steps, "; the ", t,
           " schedule needs the total number of training steps (>= 1)");
    }
    if (!(min_lr_ratio >= 0.0 && min_lr_ratio <= 1.0)) fail("min_lr_ratio is ", min_lr_ratio, "; expected [0, 1]");
    if (!(init_lr_ratio >= 0.0 && init_lr_ratio <= 1.0)) fail("init_lr_ratio is ", init_lr_ratio, "; expected [0, 1]");
    if (!(stable_ratio >= 0.0 && stable_ratio <= 1.0)) fail("stable_ratio is ", stable_ratio, "; expected [0, 1]");
    if (!std::isfinite(num_cycles)) fail("num_cycles is ", num_cycles, "; expected a finite number");
  }

  [[nodiscard]] nlohmann::json to_json() const {
    return {{"lr_scheduler_type", lr_scheduler_type}, {"num_warmup_steps", num_warmup_steps},
            {"num_training_steps", num_training_steps}, {"min_lr_ratio", min_lr_ratio},
            {"num_cycles", num_cycles}, {"init_lr_ratio", init_lr_ratio},
            {"zero_indexed_step", zero_indexed_step}, {"stable_ratio", stable_ratio}};
  }
};

namespace detail {

// a * b + c without contraction to one fused multiply-add: Python rounds the product first, and so must we
// to stay bit-identical when a user builds with -mfma/-march=native (GCC contracts across statements).
[[nodiscard]] inline double mul_add_rounded(double a, double b, double c) {
  volatile double product = a * b;
  return product + c;
}

}  // namespace detail

//! The multiplier of the base learning rate at LambdaLR epoch `step` (0 = before the first update).
[[nodiscard]] inline double lr_multiplier(const LRScheduleConfig& c, std::int64_t step) {
  const auto& t = c.lr_scheduler_type;
  const std::int64_t warm = c.num_warmup_steps;
  if (t == "constant") {
    if (step < warm) return static_cast<double>(step) / std::max(1.0, static_cast<double>(warm));
    return 1.0;
  }
  if (t == "linear") {
    if (step < warm) return static_cast<double>(step) / static_cast<double>(std::max<std::int64_t>(1, warm));
    return std::max(0.0, static_cast<double>(c.num_training_steps - step) /
                             static_cast<double>(std::max<std::int64_t>(1, c.num_training_steps - warm)));
  }
  if (t == "cosine") {
    if (!c.zero_indexed_step) step += 1;
    const double coef = (1 - c.min_lr_ratio) * 0.5, intercept = (1 + c.min_lr_ratio) * 0.5;
    if (step < warm) {
      const double frac = static_cast<double>(step) / static_cast<double>(std::max<std::int64_t>(1, warm));
      return detail::mul_add_rounded(1.0 - c.init_lr_ratio, frac, c.init_lr_ratio);
    }
    const double progress = static_cast<double>(step - warm) /
                            static_cast<double>(std::max<std::int64_t>(1, c.num_training_steps - warm));
    const double x = std::cos(std::numbers::pi * c.num_cycles * 2.0 * progress);
    return std::max(c.min_lr_ratio, detail::mul_add_rounded(x, coef, intercept));
  }
  if (t == "wsd") {
    const std::int64_t remaining = std::max<std::int64_t>(0, c.num_training_steps - warm);
    const auto stable = static_cast<std::int64_t>(static_cast<double>(remaining) * c.stable_ratio);
    const std::int64_t decay = remaining - stable;
    if (step < warm) return static_cast<double>(step) / static_cast<double>(std::max<std::int64_t>(1, warm));
    if (step < warm + stable) return 1.0;
    if (step < c.num_training_steps) {
      const double progress =
          static_cast<double>(step - warm - stable) / static_cast<double>(std::max<std::int64_t>(1, decay));
      const double value = std::max(0.0, 0.5 * (1.0 + std::cos(std::numbers::pi * c.num_cycles * 2.0 * progress)));
      return detail::mul_add_rounded(1.0 - c.min_lr_ratio, value, c.min_lr_ratio);
    }
    return c.min_lr_ratio;
  }
  c.validate();  // throws for an unknown type
  return 1.0;
}

//! Sets the learning rate of every param group of a torch::optim::Optimizer from a schedule, as torch's
//! LambdaLR does: base lrs are the groups' lrs at construction; lr = base_lr * lr_multiplier(step).
//! The optimizer must outlive the scheduler and keep its param groups (count) unchanged.
class LRScheduler {
 public:
  //! Records the base lrs and sets lr = base * multiplier(0). Throws verl::ConfigError for a bad config or
  //! an optimizer without param groups.
  LRScheduler(torch::optim::Optimizer& optimizer, LRScheduleConfig config)
      : optimizer_(&optimizer), config_(std::move(config)) {
    config_.validate();
    verl::detail::check<ConfigError>(!optimizer.param_groups().empty(),
                                     "verl::trainer::LRScheduler: the optimizer has no param groups");
    for (const auto& g : optimizer.param_groups()) base_lrs_.push_back(g.options().get_lr());
    apply();
  }

  //! Advances one step (call after each optimizer update) and sets the new learning rates.
  void step() {
    ++last_epoch_;
    apply();
  }

  //! Steps taken so far (LambdaLR's last_epoch): the multiplier in force is lr_multiplier(config, last_epoch).
  [[nodiscard]] std::int64_t last_epoch() const { return last_epoch_; }
  //! The learning rate set for param group `group` (LambdaLR's get_last_lr()[group]).
  [[nodiscard]] double last_lr(std::size_t group = 0) const { return last_lrs_.at(group); }
  [[nodiscard]] const std::vector<double>& last_lrs() const { return last_lrs_; }
  [[nodiscard]] const std::vector<double>& base_lrs() const { return base_lrs_; }
  [[nodiscard]] const LRScheduleConfig& config() const { return config_; }

  //! The state to checkpoint: {"last_epoch", "base_lrs", "last_lrs", "config"}. Doubles are written by
  //! nlohmann::json with round-trip precision, so a reload is exact.
  [[nodiscard]] nlohmann::json state() const {
    return {{"last_epoch", last_epoch_}, {"base_lrs", base_lrs_}, {"last_lrs", last_lrs_},
            {"config", config_.to_json()}};
  }

  //! Restores last_epoch and base lrs from state() and sets the learning rates accordingly. As with torch's
  //! LambdaLR.load_state_dict, the schedule itself is this scheduler's config (a resumed run may extend
  //! num_training_steps); the saved config is informational. Throws verl::InputError naming the field when
  //! the state is malformed or has a different number of param groups.
  void load_state(const nlohmann::json& s) {
    const auto fail = [](auto&&... parts) {
      throw InputError(verl::detail::concat_message("verl::trainer::LRScheduler::load_state: ", parts...));
    };
    if (!s.is_object()) fail("expected a JSON object, got ", s.type_name());
    if (!s.contains("last_epoch") || !s["last_epoch"].is_number_integer()) {
      fail("field `last_epoch` is missing or not an integer");
    }
    if (!s.contains("base_lrs") || !s["base_lrs"].is_array()) fail("field `base_lrs` is missing or not an array");
    std::vector<double> base;
    for (const auto& v : s["base_lrs"]) {
      if (!v.is_number()) fail("field `base_lrs` holds ", v.dump(), "; expected numbers");
      base.push_back(v.get<double>());
    }
    if (base.size() != optimizer_->param_groups().size()) {
      fail("field `base_lrs` has ", base.size(), " entries, but the optimizer has ",
           optimizer_->param_groups().size(), " param groups");
    }
    const auto epoch = s["last_epoch"].get<std::int64_t>();
    if (epoch < 0) fail("field `last_epoch` is ", epoch, "; expected >= 0");
    base_lrs_ = std::move(base);
    last_epoch_ = epoch;
    apply();
  }

 private:
  void apply() {
    auto& groups = optimizer_->param_groups();
    verl::detail::check<ConfigError>(groups.size() == base_lrs_.size(), "verl::trainer::LRScheduler: the optimizer has ",
                                     groups.size(), " param groups, but the scheduler was built for ",
                                     base_lrs_.size());
    const double m = lr_multiplier(config_, last_epoch_);
    last_lrs_.resize(groups.size());
    for (std::size_t i = 0; i < groups.size(); ++i) {
      last_lrs_[i] = base_lrs_[i] * m;
      groups[i].options().set_lr(last_lrs_[i]);
    }
  }

  torch::optim::Optimizer* optimizer_;
  LRScheduleConfig config_;
  std::vector<double> base_lrs_, last_lrs_;
  std::int64_t last_epoch_ = 0;
};

}  // namespace verl::trainer
