#pragma once
//! \file
//! From verl's configuration (verl::config::PPOConfig, read from YAML with `key=value` overrides) to the
//! trainer's runtime options, and the check that the YAML asks for the algorithm the binary was compiled for:
//!
//!     auto [cfg, yaml] = verl::config::load_config<verl::config::PPOConfig>("ppo.yaml", overrides);
//!     std::cout << yaml;                                                  // the effective config
//!     verl::trainer::check_algorithm_matches<Algo>(cfg);                   // adv_estimator, KL, loss mode
//!     cfg.validate_layout({.world_size = place.world_size, .local_world_size = place.local_world_size});
//!     const auto steps = verl::trainer::total_training_steps(cfg, batches_per_epoch);
//!     auto options = verl::trainer::ppo_options_from(cfg, steps, place.world_size);
//!     options.actor_data_parallel = verl::dist::make_data_parallel(world, actor.parameters());  // strategy dp
//!     auto fit = verl::trainer::fit_options_from(cfg, steps, yaml);
//!     auto val_params = verl::trainer::validation_sampling_from(cfg, options);  // rollout.val_kwargs
//!
//! The algorithm itself (estimator, KL placement and estimator, policy loss) is the binary's type; the YAML
//! keys that name it must agree with it, else ConfigError names the key, the value and what the binary has.

#include "verl/config/trainer_config.hpp"
#include "verl/trainer/ppo_trainer.hpp"

#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>

namespace verl::trainer {

//! verl's rule: trainer.total_training_steps when set, else batches per epoch x trainer.total_epochs.
[[nodiscard]] inline std::int64_t total_training_steps(const config::PPOConfig& c, std::int64_t batches_per_epoch) {
  if (c.trainer.total_training_steps && *c.trainer.total_training_steps > 0) return *c.trainer.total_training_steps;
  return batches_per_epoch * c.trainer.total_epochs;
}

namespace detail {
inline OptimizerOptions optimizer_from(const config::OptimConfig& o) {
  OptimizerOptions out;
  out.lr = o.lr;
  out.weight_decay = o.weight_decay;
  if (o.betas.size() == 2) {
    out.beta1 = o.betas[0];
    out.beta2 = o.betas[1];
  }
  if (o.lr_warmup_steps && *o.lr_warmup_steps > 0) out.lr_warmup_steps = *o.lr_warmup_steps;
  out.lr_warmup_steps_ratio = o.lr_warmup_steps_ratio;
  out.lr_scheduler_type = std::string(config::to_string(o.lr_scheduler_type));
  out.min_lr_ratio = o.min_lr_ratio.value_or(0.0);
  out.num_cycles = o.num_cycles;
  out.fused = o.fused();
  return out;
}
}  // namespace detail

namespace detail {
//! A per-process micro-batch size: the `_per_gpu` key, else verl's normalisation of the deprecated global key
//! (global / dp_size, as the FSDP workers do), else `fallback`.
inline std::int64_t per_process_micro(const std::optional<std::int64_t>& per_gpu,
                                      const std::optional<std::int64_t>& global, std::int64_t dp_size,
                                      std::int64_t fallback) {
  if (per_gpu) return *per_gpu;
  if (global) return std::max<std::int64_t>(1, *global / dp_size);
  return fallback;
}
}  // namespace detail

//! The PPOTrainer options a verl config gives (keys in PPOOptions' comments). `dp_size`: the data-parallel
//! processes (WORLD_SIZE); it divides the deprecated global micro-batch keys (ppo_micro_batch_size,
//! log_prob_micro_batch_size) as verl's workers do. Batch sizes in prompts stay global: the trainer splits
//! them (ppo_trainer.hpp). The data-parallel synchronisers are the program's to set
//! (PPOOptions::actor_data_parallel / critic_data_parallel), after config::PPOConfig::validate_layout.
[[nodiscard]] inline PPOOptions ppo_options_from(const config::PPOConfig& c, std::int64_t total_steps,
                                                 std::int64_t dp_size = 1) {
  verl::detail::check<ConfigError>(dp_size >= 1, "verl::trainer::ppo_options_from: dp_size is ", dp_size,
                                   ", expected >= 1");
  const auto& actor = c.actor_rollout_ref.actor;
  const auto& rollout = c.actor_rollout_ref.rollout;
  const auto& critic = c.critic;
  PPOOptions o;
  o.rollout.n = rollout.n;
  o.rollout.temperature = rollout.do_sample ? rollout.temperature : 0.0;
  o.rollout.top_p = rollout.top_p;
  o.rollout.top_k = rollout.top_k <= 0 ? -1 : rollout.top_k;
  o.rollout.max_tokens = rollout.response_length;
  o.rollout.ignore_eos = rollout.ignore_eos;
  o.rollout.seed = static_cast<std::uint64_t>(actor.data_loader_seed);
  o.ppo_mini_batch_size = actor.ppo_mini_batch_size;
  o.ppo_micro_batch_size =
      detail::per_process_micro(actor.ppo_micro_batch_size_per_gpu, actor.ppo_micro_batch_size, dp_size, 1);
  o.use_dynamic_bsz = actor.use_dynamic_bsz;
  o.ppo_max_token_len = actor.ppo_max_token_len_per_gpu;
  o.ppo_epochs = actor.ppo_epochs;
  o.shuffle = actor.shuffle;
  o.grad_clip = actor.grad_clip;
  o.clip_ratio_low = actor.clip_ratio_low;
  o.clip_ratio_high = actor.clip_ratio_high;
  o.clip_ratio_c = actor.clip_ratio_c;
  o.entropy_coeff = actor.entropy_coeff;
  o.calculate_entropy = actor.calculate_entropy;
  o.bypass_mode = c.algorithm.rollout_correction.bypass_mode;
  o.kl_loss_coef = actor.kl_loss_coef;
  o.loss_agg_mode = parse_loss_agg_mode(actor.loss_agg_mode);
  o.actor_optim = detail::optimizer_from(actor.optim);
  o.log_prob_micro_batch_size = detail::per_process_micro(rollout.log_prob_micro_batch_size_per_gpu,
                                                          rollout.log_prob_micro_batch_size, dp_size, 16);
  o.critic_optim = detail::optimizer_from(critic.optim);
  o.critic_mini_batch_size = critic.ppo_mini_batch_size;
  o.critic_micro_batch_size =
      detail::per_process_micro(critic.ppo_micro_batch_size_per_gpu, critic.ppo_micro_batch_size, dp_size, 1);
  o.critic_epochs = critic.ppo_epochs;
  o.critic_grad_clip = critic.grad_clip;
  o.cliprange_value = critic.cliprange_value;
  o.critic_warmup = c.trainer.critic_warmup;
  o.gamma = c.algorithm.gamma;
  o.lam = c.algorithm.lam;
  o.norm_adv_by_std_in_grpo = c.algorithm.norm_adv_by_std_in_grpo;
  o.kl_ctrl.type = std::string(config::to_string(c.algorithm.kl_ctrl.type));
  o.kl_ctrl.kl_coef = c.algorithm.kl_ctrl.kl_coef;
  o.kl_ctrl.horizon = static_cast<double>(c.algorithm.kl_ctrl.horizon);
  o.kl_ctrl.target_kl = c.algorithm.kl_ctrl.target_kl;
  o.seed = static_cast<std::uint64_t>(actor.data_loader_seed);
  o.total_training_steps = total_steps;
  return o;
}

//! The sampling of validation (actor_rollout_ref.rollout.val_kwargs) over the training rollout's `options.rollout`.
[[nodiscard]] inline SamplingParams validation_sampling_from(const config::PPOConfig& c, const PPOOptions& options) {
  const auto& vk = c.actor_rollout_ref.rollout.val_kwargs;
  return validation_sampling(options.rollout, vk.n, vk.do_sample, vk.temperature, vk.top_p, vk.top_k);
}

//! The fit() options a verl config gives; `yaml` (the effective config) is saved with every checkpoint.
[[nodiscard]] inline FitOptions fit_options_from(const config::PPOConfig& c, std::int64_t total_steps,
                                                 std::string yaml) {
  FitOptions f;
  f.total_training_steps = total_steps;
  f.save_freq = c.trainer.save_freq;
  f.checkpoint_dir = c.trainer.default_local_dir;
  f.max_ckpt_to_keep = static_cast<int>(c.trainer.max_actor_ckpt_to_keep.value_or(0));
  f.resume = c.trainer.resume_mode != config::ResumeMode::disable;
  f.test_freq = c.trainer.test_freq;
  f.val_before_train = c.trainer.val_before_train;
  f.config_text = std::move(yaml);
  return f;
}

//! Throws verl::ConfigError unless the config's algorithm keys name `Algorithm` (the compiled one):
//! algorithm.adv_estimator, algorithm.use_kl_in_reward (+ kl_penalty), actor.use_kl_loss (+ kl_loss_type) and
//! actor.policy_loss.loss_mode.
template <class Algorithm>
void check_algorithm_matches(const config::PPOConfig& c) {
  const auto mismatch = [](std::string_view key, const std::string& value, std::string_view compiled) {
    throw ConfigError(verl::detail::concat_message(
        "verl::trainer::check_algorithm_matches: `", key, "` is \"", value, "\" but this binary was compiled for ",
        compiled, "; change the key or build the binary for that algorithm (the algorithm is a C++ type)"));
  };
  const std::string estimator(Algorithm::estimator::name);
  if (c.algorithm.adv_estimator != estimator) mismatch("algorithm.adv_estimator", c.algorithm.adv_estimator, estimator);
  const std::string loss(Algorithm::loss::name);
  if (c.actor_rollout_ref.actor.policy_loss.loss_mode != loss) {
    mismatch("actor_rollout_ref.actor.policy_loss.loss_mode", c.actor_rollout_ref.actor.policy_loss.loss_mode, loss);
  }
  if (c.algorithm.use_kl_in_reward != Algorithm::kl_in_reward) {
    mismatch("algorithm.use_kl_in_reward", c.algorithm.use_kl_in_reward ? "true" : "false",
             Algorithm::kl_in_reward ? "KL in the reward" : "no KL in the reward");
  }
  if (c.actor_rollout_ref.actor.use_kl_loss != Algorithm::kl_as_loss) {
    mismatch("actor_rollout_ref.actor.use_kl_loss", c.actor_rollout_ref.actor.use_kl_loss ? "true" : "false",
             Algorithm::kl_as_loss ? "a KL loss" : "no KL loss");
  }
  if constexpr (Algorithm::kl_in_reward) {
    const std::string k(Algorithm::kl::estimator::name);
    if (c.algorithm.kl_penalty != k) mismatch("algorithm.kl_penalty", c.algorithm.kl_penalty, k);
  }
  if constexpr (Algorithm::kl_as_loss) {
    const std::string k(Algorithm::kl::estimator::name);
    if (c.actor_rollout_ref.actor.kl_loss_type != k) {
      mismatch("actor_rollout_ref.actor.kl_loss_type", c.actor_rollout_ref.actor.kl_loss_type, k);
    }
  }
}

}  // namespace verl::trainer
