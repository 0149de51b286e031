// verl/algos/presets.hpp: the named algorithms resolve to the estimators, losses and KL handling their
// documentation promises, and their needs follow (compiling is passing).
#include "verl/algos/presets.hpp"

#include <type_traits>

using namespace verl;

static_assert(std::is_same_v<PPO<>::estimator, estimators::GAE> && PPO<>::needs_critic && !PPO<>::needs_reference);
static_assert(std::is_same_v<PPO<>::loss, losses::VanillaPPO>);
static_assert(!GRPO<>::needs_critic && GRPO<>::needs_groups && GRPO<>::kl_as_loss);
static_assert(GRPO<>::kl::estimator::name == "low_var_kl");
static_assert(!GRPO<no_kl>::needs_reference);  // properties override presets
static_assert(DAPO<>::clip_ratio_high == 0.28 && DAPO<>::clip_ratio_low == 0.2 && !DAPO<>::needs_reference);
static_assert(GRPO<>::clip_ratio_high == 0.2);
static_assert(DrGRPO<>::loss_agg_mode == LossAggMode::seq_mean_token_sum_norm && !DrGRPO<>::needs_reference);
static_assert(ReinforcePlusPlus<>::kl_in_reward && ReinforcePlusPlus<>::kl::estimator::name == "mse");
static_assert(!ReinforcePlusPlus<>::needs_groups && !ReinforcePlusPlus<>::needs_critic);
static_assert(std::is_same_v<RLOO<>::estimator, estimators::RLOO> && RLOO<>::needs_groups);
static_assert(std::is_same_v<ReMax<>::estimator, estimators::ReMax> && ReMax<>::kl_in_reward);
static_assert(PPO<advantage<estimators::GRPO>>::needs_critic == false);  // PPO's loss with GRPO's estimator
static_assert(DAPO<>::name == "dapo" && DrGRPO<>::name == "dr_grpo");
