#pragma once
//! \file
//! ORPO's odds-ratio loss, verl::pref::odds_ratio_loss: Hugging Face TRL's `ORPOTrainer.odds_ratio_loss` and
//! its helper `log1mexp`, pinned at PyPI trl 0.28.0, `trl/experimental/orpo/orpo_trainer.py` (0.28.0's
//! `trl/trainer/orpo_trainer.py` re-exports it).

#include "verl/algos/pref/dpo.hpp"  // detail::check_pref_logps
#include "verl/core/errors.hpp"

#include <ATen/core/Tensor.h>
#include <ATen/ops/log_sigmoid_ops.h>
#include <ATen/ops/where_ops.h>

namespace verl::pref {

//! Configuration of odds_ratio_loss; default as TRL ORPOConfig (trl 0.28.0). beta is the paper's lambda.
struct ORPOLossConfig {
  double beta = 0.1;
};

//! What TRL's odds_ratio_loss returns.
struct ORPOLossOutput {
  at::Tensor losses;            //!< (B,) beta * logsig(log_odds): to be *subtracted* from the NLL (TRL: nll - mean)
  at::Tensor chosen_rewards;    //!< (B,) beta * pi_c, detached
  at::Tensor rejected_rewards;  //!< (B,) beta * pi_r, detached
  at::Tensor log_odds_ratio;    //!< () mean(logsig(log_odds)), TRL's metric `log_odds_ratio`
  at::Tensor log_odds_chosen;   //!< () mean(log_odds), TRL's metric `log_odds_chosen`
};

//! log(1 - exp(x)) for x <= 0, as TRL's `log1mexp`: log1p(-exp(x)) below -ln 2, log(-expm1(x)) above
//! (Maechler 2012), both branches evaluated and selected with where.
[[nodiscard]] inline at::Tensor log1mexp(const at::Tensor& x) {
  const auto below = x.lt(-0.6931471805599453);                                       // (...) bool
  return at::_ops::where_self::call(below, x.exp().neg().log1p(), x.expm1().neg().log());  // (...)
}

//! ORPO odds-ratio term.
//!
//! Reference: TRL `trl/experimental/orpo/orpo_trainer.py`, `ORPOTrainer.odds_ratio_loss`, PyPI trl 0.28.0.
//! log_odds = (pi_c - pi_r) - (log1mexp(pi_c) - log1mexp(pi_r)) = log(odds_c / odds_r) with odds = p / (1 - p);
//! losses = beta * logsig(log_odds) (ORPO eqs. 4 and 7); rewards beta * pi_c, beta * pi_r (detached).
//! Precision: TRL casts the log-probs to float32 (`.float()`), which upcasts half/bfloat16 but also *downcasts*
//! float64. Deliberate difference: we upcast half/bfloat16 to float32 and keep float64 as float64.
//! Edge cases: a log-prob of exactly 0 (p = 1) gives log1mexp = -inf and a NaN/inf log-odds, as in TRL.
//! \param policy_chosen_logps, policy_rejected_logps (B,) per-sequence log-probs (TRL: averaged over tokens).
[[nodiscard]] inline ORPOLossOutput odds_ratio_loss(const at::Tensor& policy_chosen_logps,
                                                    const at::Tensor& policy_rejected_logps,
                                                    const ORPOLossConfig& config = {}) {
  constexpr const char* who = "verl::pref::odds_ratio_loss";
  verl::detail::check<ShapeError>(policy_chosen_logps.defined() && policy_rejected_logps.defined(), who,
                                  ": the policy log-probs must be defined tensors");
  detail::check_pref_logps(who, {{"policy_chosen_logps", &policy_chosen_logps},
                                 {"policy_rejected_logps", &policy_rejected_logps}});
  const auto compute = policy_chosen_logps.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  const auto pc = policy_chosen_logps.to(compute);    // (B,)
  const auto pr = policy_rejected_logps.to(compute);  // (B,)
  const double beta = config.beta;
  const auto log_odds = pc.sub(pr).sub(log1mexp(pc).sub(log1mexp(pr)));  // (B,)
  const auto ratio = at::_ops::log_sigmoid::call(log_odds);          // (B,)
  return {ratio.mul(beta), pc.detach().mul(beta), pr.detach().mul(beta), ratio.mean(), log_odds.mean()};
}

}  // namespace verl::pref
