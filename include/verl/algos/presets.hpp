#pragma once
//! \file
//! The RL algorithms as types: verl::PPO<...>, verl::GRPO<...> and named presets over verl's estimators and
//! losses (verl/algos/advantages.hpp, verl/algos/policy_losses.hpp). Every alias takes further properties
//! (verl/algos/algorithm.hpp) in any order, so `verl::GRPO<verl::no_kl, verl::entropy_coeff<0.001>>` is GRPO
//! without its KL loss and with an entropy bonus.
//!
//! | alias             | estimator              | policy loss | KL                       | loss aggregation        | clip (low, high) |
//! |-------------------|------------------------|-------------|--------------------------|-------------------------|------------------|
//! | PPO<>             | GAE (needs a critic)   | vanilla     | none                     | token-mean              | 0.2, 0.2         |
//! | GRPO<>            | GRPO (group std norm)  | vanilla     | k3 (low_var_kl) as loss  | token-mean              | 0.2, 0.2         |
//! | DAPO<>            | GRPO                   | vanilla     | none                     | token-mean              | 0.2, 0.28        |
//! | DrGRPO<>          | GRPO without std norm  | vanilla     | none                     | seq-mean-token-sum-norm | 0.2, 0.2         |
//! | ReinforcePlusPlus<> | REINFORCE++ (global whitening) | vanilla | k2 in the reward     | token-mean              | 0.2, 0.2         |
//! | RLOO<>            | RLOO (leave-one-out)   | vanilla     | k1 in the reward         | token-mean              | 0.2, 0.2         |
//! | ReMax<>           | ReMax (greedy baseline)| vanilla     | k1 in the reward         | token-mean              | 0.2, 0.2         |
//!
//! Sources of the choices: PPO and GRPO follow verl's trainer defaults and GRPO recipe (adv_estimator=grpo,
//! use_kl_loss with kl_loss_type=low_var_kl); DAPO (Yu et al. 2025) removes the KL term and raises the upper clip
//! bound to 0.28; Dr. GRPO (Liu et al. 2025) drops the std normalisation and the per-sequence length
//! normalisation; REINFORCE++ (Hu 2025) subtracts a k2 per-token KL from the reward and whitens globally, as
//! verl's REINFORCE++ documentation describes; RLOO and ReMax put the KL in the reward as their papers do.
//! Coefficients (kl_coef, learning rate, ...) are runtime configuration, as in verl.

#include "verl/algos/advantages.hpp"
#include "verl/algos/algorithm.hpp"
#include "verl/algos/policy_losses.hpp"

#include <string_view>

namespace verl {

namespace estimators {
//! Dr. GRPO's estimator: GRPO's group-mean baseline without dividing by the group std
//! (verl: norm_adv_by_std_in_grpo=False).
struct GRPONoStd : GRPO {
  GRPONoStd() : GRPO{.epsilon = 1e-6, .norm_adv_by_std_in_grpo = false} {}
};
}  // namespace estimators

struct ppo_defaults {
  static constexpr std::string_view name = "ppo";
  using advantage = verl::advantage<estimators::GAE>;
  using policy_loss = verl::policy_loss<losses::VanillaPPO>;
  using loss_agg = verl::loss_agg<LossAggMode::token_mean>;
  using kl = no_kl;
  using entropy_coeff = verl::entropy_coeff<0.0>;
};
//! PPO with GAE and a critic (verl's default PPO); further properties override the defaults.
template <class... Properties>
using PPO = RLAlgorithm<ppo_defaults, Properties...>;

struct grpo_defaults {
  static constexpr std::string_view name = "grpo";
  using advantage = verl::advantage<estimators::GRPO>;
  using policy_loss = verl::policy_loss<losses::VanillaPPO>;
  using loss_agg = verl::loss_agg<LossAggMode::token_mean>;
  using kl = kl_loss<kl_estimator::k3>;
  using entropy_coeff = verl::entropy_coeff<0.0>;
};
//! GRPO: group-normalised outcome advantages, no critic, k3 KL loss to the reference.
template <class... Properties>
using GRPO = RLAlgorithm<grpo_defaults, Properties...>;

struct dapo_defaults : grpo_defaults {
  static constexpr std::string_view name = "dapo";
  using kl = no_kl;
  static constexpr double clip_ratio_low = 0.2;
  static constexpr double clip_ratio_high = 0.28;  //!< clip-higher
};
//! DAPO-style GRPO: clip-higher (0.2, 0.28), token-mean aggregation, no KL term.
template <class... Properties>
using DAPO = RLAlgorithm<dapo_defaults, Properties...>;

struct dr_grpo_defaults : grpo_defaults {
  static constexpr std::string_view name = "dr_grpo";
  using advantage = verl::advantage<estimators::GRPONoStd>;
  using loss_agg = verl::loss_agg<LossAggMode::seq_mean_token_sum_norm>;
  using kl = no_kl;
};
//! Dr. GRPO: no std normalisation of advantages, seq-mean-token-sum-norm aggregation, no KL term.
template <class... Properties>
using DrGRPO = RLAlgorithm<dr_grpo_defaults, Properties...>;

struct reinforce_plus_plus_defaults : grpo_defaults {
  static constexpr std::string_view name = "reinforce_plus_plus";
  using advantage = verl::advantage<estimators::ReinforcePlusPlus>;
  using kl = kl_in_reward<kl_estimator::k2>;
};
//! REINFORCE++: discounted return of the KL-penalised reward, whitened over the batch; no critic, no groups.
template <class... Properties>
using ReinforcePlusPlus = RLAlgorithm<reinforce_plus_plus_defaults, Properties...>;

struct rloo_defaults : grpo_defaults {
  static constexpr std::string_view name = "rloo";
  using advantage = verl::advantage<estimators::RLOO>;
  using kl = kl_in_reward<kl_estimator::k1>;
};
//! RLOO: leave-one-out group baseline.
template <class... Properties>
using RLOO = RLAlgorithm<rloo_defaults, Properties...>;

struct remax_defaults : grpo_defaults {
  static constexpr std::string_view name = "remax";
  using advantage = verl::advantage<estimators::ReMax>;
  using kl = kl_in_reward<kl_estimator::k1>;
};
//! ReMax: the greedy response's reward as the baseline (AdvantageInputs::reward_baselines).
template <class... Properties>
using ReMax = RLAlgorithm<remax_defaults, Properties...>;

}  // namespace verl
