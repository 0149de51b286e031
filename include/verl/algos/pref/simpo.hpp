#pragma once
//! \file
//! Reference-free CPO-family losses, verl::pref::cpo_loss and verl::pref::simpo_loss: Hugging Face TRL's
//! `CPOTrainer.cpo_loss` (loss types sigmoid, hinge, ipo, simpo; optional AlphaPO reward shaping), pinned at PyPI
//! trl 0.28.0, `trl/experimental/cpo/cpo_trainer.py` (0.28.0's `trl/trainer/cpo_trainer.py` re-exports it).
//! SimPO (Meng et al. 2024) is TRL's CPO trainer with loss_type "simpo", which feeds *length-averaged*
//! log-probs (CPOTrainer sets average_log_prob for ipo and simpo) into this loss: pass averaged log-probs.
//!
//! Operation order follows TRL's expression by expression: float32/float64 results equal TRL's bit for bit.

#include "verl/algos/pref/dpo.hpp"  // detail::check_pref_logps
#include "verl/core/errors.hpp"

#include <ATen/core/Tensor.h>
#include <ATen/ops/log_sigmoid_ops.h>

#include <string_view>

namespace verl::pref {

//! TRL CPOConfig.loss_type (the 0.28.0 config also lists "alphapo", which cpo_loss rejects; AlphaPO is
//! `alpha != 0` with any loss type).
enum class CPOLossType { sigmoid, hinge, ipo, simpo };

//! TRL's name of a CPO loss type.
[[nodiscard]] constexpr std::string_view to_string(CPOLossType t) noexcept {
  constexpr std::string_view names[] = {"sigmoid", "hinge", "ipo", "simpo"};
  return names[static_cast<int>(t)];
}

//! Parses "sigmoid" / "hinge" / "ipo" / "simpo". \throws ConfigError for any other name (TRL's message lists the
//! same four).
[[nodiscard]] inline CPOLossType parse_cpo_loss_type(std::string_view name) {
  for (int i = 0; i < 4; ++i)
    if (to_string(static_cast<CPOLossType>(i)) == name) return static_cast<CPOLossType>(i);
  if (name == "kto_pair")
    throw ConfigError("verl::pref::cpo_loss: support for kto_pair has been removed (as in TRL's CPOTrainer); use "
                      "verl::pref::kto_loss");
  throw ConfigError(verl::detail::concat_message("verl::pref::cpo_loss: unknown loss type `", name,
                                                 "`; expected one of 'sigmoid', 'hinge', 'ipo', 'simpo'"));
}

//! Configuration of cpo_loss; defaults are TRL CPOConfig's (trl 0.28.0) except loss_type, see SimPOLossConfig.
struct CPOLossConfig {
  CPOLossType loss_type = CPOLossType::sigmoid;
  double beta = 0.1;             //!< must be nonzero for simpo and ipo (TRL divides by it)
  double label_smoothing = 0.0;  //!< sigmoid and simpo only (TRL warns and ignores it for hinge, ipo)
  double simpo_gamma = 0.5;      //!< SimPO target reward margin gamma; logits are shifted by gamma / beta
  double alpha = 0.0;            //!< AlphaPO: rewards (1 - p^-alpha) / alpha instead of log p when nonzero
};

//! SimPO configuration: CPOLossConfig with loss_type simpo.
struct SimPOLossConfig {
  double beta = 0.1;
  double simpo_gamma = 0.5;
  double label_smoothing = 0.0;
  double alpha = 0.0;
};

//! The three tensors TRL's cpo_loss returns.
struct CPOLossOutput {
  at::Tensor losses;            //!< (B,)
  at::Tensor chosen_rewards;    //!< (B,) beta * pi_c (or beta * AlphaPO reward), detached
  at::Tensor rejected_rewards;  //!< (B,) beta * pi_r (or beta * AlphaPO reward), detached
};
using SimPOLossOutput = CPOLossOutput;

//! Reference-free preference loss of TRL's CPO trainer.
//!
//! Reference: TRL `trl/experimental/cpo/cpo_trainer.py`, `CPOTrainer.cpo_loss`, PyPI trl 0.28.0.
//! With b = beta, ls = label_smoothing, g = simpo_gamma, r_c, r_r the rewards (log-probs, or with alpha != 0
//! (1 - exp(pi)^-alpha) / alpha) and x = r_c - r_r:
//! - simpo: z = x - g/b, loss = -logsig(b z)(1-ls) - logsig(-b z) ls   (SimPO eq. 6 for ls = 0);
//! - sigmoid: the same with z = x (CPO eq. 3);  hinge: relu(1 - b x);  ipo: (x - 1/(2b))^2;
//! - rewards b r_c, b r_r, detached. The BC/NLL term of CPO (cpo_alpha * nll) is outside this function.
//! Edge cases: beta == 0 with simpo or ipo raises (TRL: ZeroDivisionError).
//! \param policy_chosen_logps, policy_rejected_logps (B,) per-sequence log-probs (averaged over tokens for SimPO).
[[nodiscard]] inline CPOLossOutput cpo_loss(const at::Tensor& policy_chosen_logps,
                                            const at::Tensor& policy_rejected_logps, const CPOLossConfig& config = {}) {
  constexpr const char* who = "verl::pref::cpo_loss";
  verl::detail::check<ShapeError>(policy_chosen_logps.defined() && policy_rejected_logps.defined(), who,
                                  ": the policy log-probs must be defined tensors");
  detail::check_pref_logps(who, {{"policy_chosen_logps", &policy_chosen_logps},
                                 {"policy_rejected_logps", &policy_rejected_logps}});
  const double beta = config.beta;
  const double ls = config.label_smoothing;
  verl::detail::check<ConfigError>(
      !((config.loss_type == CPOLossType::simpo || config.loss_type == CPOLossType::ipo) && beta == 0.0), who,
      ": loss type `", to_string(config.loss_type), "` divides by beta; beta must be nonzero");
  const auto& pc = policy_chosen_logps;    // (B,)
  const auto& pr = policy_rejected_logps;  // (B,)
  const bool alphapo = config.alpha != 0.0;
  at::Tensor chosen_r;    // (B,) AlphaPO rewards
  at::Tensor rejected_r;  // (B,)
  at::Tensor logits;      // (B,)
  if (alphapo) {
    const double a = config.alpha;
    chosen_r = detail::one_minus(pc.exp().pow(-a)).div(a);
    rejected_r = detail::one_minus(pr.exp().pow(-a)).div(a);
    logits = chosen_r.sub(rejected_r);
  } else {
    logits = pc.sub(pr);
  }
  const auto log_sigmoid = [](const at::Tensor& x) { return at::_ops::log_sigmoid::call(x); };
  at::Tensor losses;  // (B,)
  switch (config.loss_type) {
    case CPOLossType::simpo:
      logits = logits.sub(config.simpo_gamma / beta);
      [[fallthrough]];
    case CPOLossType::sigmoid:
      losses = log_sigmoid(logits.mul(beta)).neg().mul(1.0 - ls).sub(log_sigmoid(logits.mul(-beta)).mul(ls));
      break;
    case CPOLossType::hinge:
      losses = detail::one_minus(logits.mul(beta)).relu();
      break;
    case CPOLossType::ipo:
      losses = logits.sub(1.0 / (2.0 * beta)).pow(2);
      break;
  }
  if (alphapo) return {losses, chosen_r.detach().mul(beta), rejected_r.detach().mul(beta)};
  return {losses, pc.detach().mul(beta), pr.detach().mul(beta)};
}

//! SimPO: cpo_loss with loss_type simpo. Reference: TRL `trl/experimental/cpo/cpo_trainer.py`,
//! `CPOTrainer.cpo_loss` with loss_type="simpo", PyPI trl 0.28.0. See cpo_loss for the formula.
[[nodiscard]] inline SimPOLossOutput simpo_loss(const at::Tensor& policy_chosen_logps,
                                                const at::Tensor& policy_rejected_logps,
                                                const SimPOLossConfig& config = {}) {
  return cpo_loss(policy_chosen_logps, policy_rejected_logps,
                  CPOLossConfig{CPOLossType::simpo, config.beta, config.label_smoothing, config.simpo_gamma,
                                config.alpha});
}

}  // namespace verl::pref
