#pragma once
//! \file
//! DPO-family preference losses, verl::pref::dpo_loss: Hugging Face TRL's `DPOTrainer.dpo_loss`
//! (`trl/trainer/dpo_trainer.py`) as of commit a68fb896, the last before TRL's February 2026 refactor, run and
//! pinned as the PyPI release trl 0.28.0 (the newest release that still has the function; 0.29 removed it).
//! The function is identical in 0.25.1, 0.26.2 and 0.27.2 except that those name the unpaired AOT loss
//! `aot_pair`; 0.28.0 names it `aot_unpaired` and DPOConfig maps `aot_pair` to it (deprecated alias).
//!
//! Every loss type that is a pure function of the four per-sequence log-probability tensors is provided:
//! sigmoid (with label smoothing, cDPO), hinge, ipo, exo_pair, nca_pair, robust, sppo_hard, aot, aot_unpaired,
//! apo_zero, apo_down, discopop; plus TRL's f-divergence variants of the DPO logits (js, alpha).
//! Not provided: `bco_pair` (it keeps a running mean across calls, so it is not a pure function) and `sft`
//! (it reads the model's NLL; use verl::pref::sft_nll_loss and add it yourself).
//!
//! Operation order follows TRL's expression by expression, so float32 and float64 results equal TRL's bit for
//! bit on the same ATen build (tests/unit/algos/test_pref_dpo.cpp checks this against golden vectors).

#include "verl/core/errors.hpp"

#include <ATen/core/Tensor.h>
#include <ATen/ops/log_sigmoid_ops.h>
#include <ATen/ops/rsub_ops.h>
#include <ATen/ops/softplus_ops.h>

#include <array>
#include <cmath>
#include <initializer_list>
#include <limits>
#include <string>
#include <string_view>
#include <utility>

namespace verl::pref {

//! The loss types of TRL's `DPOTrainer.dpo_loss` that depend only on the four log-prob tensors.
enum class DPOLossType {
  sigmoid,       //!< DPO (Rafailov et al. 2023); with label_smoothing > 0 the conservative cDPO loss
  hinge,         //!< SLiC hinge loss on the normalised likelihood
  ipo,           //!< IPO (Azar et al. 2023), eq. 17; beta plays the role of tau
  exo_pair,      //!< pairwise EXO (Ji et al. 2024), eq. 16
  nca_pair,      //!< pairwise NCA (Chen et al. 2024)
  robust,        //!< robust DPO (Chowdhury et al. 2024), unbiased under label noise label_smoothing
  sppo_hard,     //!< SPPO with hard labels (Wu et al. 2024)
  aot,           //!< AOT for paired data (Melnyk et al. 2024): sorted policy vs sorted reference log-ratios
  aot_unpaired,  //!< AOT for unpaired data: sorted chosen vs sorted rejected log-ratios (TRL <= 0.27: aot_pair)
  apo_zero,      //!< APO-zero (D'Oosterlinck et al. 2024), eq. 7
  apo_down,      //!< APO-down, eq. 8
  discopop,      //!< DiscoPOP / log-ratio modulated loss (Chris Lu et al. 2024), eq. 5
};

//! TRL's `f_divergence_type`: how the DPO logits are formed from the log-ratios (used by the loss types that
//! read TRL's `logits`: sigmoid, robust, exo_pair, hinge, ipo).
enum class FDivergence {
  reverse_kl,        //!< logits = (pi_c - pi_r) - (ref_c - ref_r); TRL's default
  js_divergence,     //!< reverse_kl logits - (softplus(chosen_logratio) - softplus(rejected_logratio))
  alpha_divergence,  //!< (capexp(-a * rejected_logratio) - capexp(-a * chosen_logratio)) / a
};

//! Configuration of dpo_loss; the defaults are TRL's DPOConfig defaults (trl 0.28.0).
struct DPOLossConfig {
  DPOLossType loss_type = DPOLossType::sigmoid;
  double beta = 0.1;             //!< temperature; must be nonzero for ipo and sppo_hard (TRL divides by it)
  double label_smoothing = 0.0;  //!< used by sigmoid, robust, exo_pair, aot, aot_unpaired; ignored by the others
  //! Ignore the reference model in TRL's `logits` and chosen/rejected log-ratios (see dpo_loss for which loss
  //! types that reaches: TRL still reads the reference log-probs in nca_pair, sppo_hard, aot*, discopop and the
  //! rewards).
  bool reference_free = false;
  double discopop_tau = 0.05;    //!< DiscoPOP temperature
  FDivergence f_divergence_type = FDivergence::reverse_kl;
  double f_alpha_divergence_coef = 1.0;  //!< alpha of the alpha-divergence
};

//! The three tensors TRL's dpo_loss returns.
struct DPOLossOutput {
  at::Tensor losses;            //!< (B,) per-pair loss, differentiable w.r.t. the policy log-probs
  at::Tensor chosen_rewards;    //!< (B,) beta * (pi_c - ref_c), detached
  at::Tensor rejected_rewards;  //!< (B,) beta * (pi_r - ref_r), detached
};

//! TRL's name of a loss type ("sigmoid", "aot_unpaired", ...).
[[nodiscard]] constexpr std::string_view to_string(DPOLossType t) noexcept {
  constexpr std::array<std::string_view, 12> names = {"sigmoid",  "hinge",        "ipo",      "exo_pair",
                                                      "nca_pair", "robust",       "sppo_hard", "aot",
                                                      "aot_unpaired", "apo_zero", "apo_down", "discopop"};
  return names[static_cast<std::size_t>(t)];
}

//! Parses TRL's loss-type name. Accepts TRL 0.28's deprecated alias "aot_pair" for aot_unpaired, as DPOConfig
//! does. \throws ConfigError naming the valid types for an unknown name, and explaining why "bco_pair", "sft"
//! and "kto_pair" are not dpo_loss types here.
[[nodiscard]] inline DPOLossType parse_dpo_loss_type(std::string_view name) {
  for (int i = 0; i < 12; ++i) {
    const auto t = static_cast<DPOLossType>(i);
    if (to_string(t) == name) return t;
  }
  if (name == "aot_pair") return DPOLossType::aot_unpaired;
  if (name == "kto_pair")
    throw ConfigError("verl::pref::dpo_loss: support for kto_pair has been removed (as in TRL's DPOTrainer); "
                      "use verl::pref::kto_loss");
  if (name == "bco_pair")
    throw ConfigError("verl::pref::dpo_loss: loss type `bco_pair` keeps a running mean of the rewards across "
                      "calls, so it is not a pure function of the log-probs and is not provided");
  if (name == "sft")
    throw ConfigError("verl::pref::dpo_loss: loss type `sft` is the model's NLL, not a function of the "
                      "log-probs; compute it with verl::pref::sft_nll_loss and add it to the DPO loss");
  throw ConfigError(detail::concat_message(
      "verl::pref::dpo_loss: unknown loss type `", name, "`; expected one of 'sigmoid', 'hinge', 'ipo', "
      "'exo_pair', 'nca_pair', 'robust', 'sppo_hard', 'aot', 'aot_unpaired', 'discopop', 'apo_zero', 'apo_down'"));
}

//! Parses TRL's f_divergence_type name ("reverse_kl", "js_divergence", "alpha_divergence").
//! \throws ConfigError for any other name.
[[nodiscard]] inline FDivergence parse_f_divergence(std::string_view name) {
  if (name == "reverse_kl") return FDivergence::reverse_kl;
  if (name == "js_divergence") return FDivergence::js_divergence;
  if (name == "alpha_divergence") return FDivergence::alpha_divergence;
  throw ConfigError(detail::concat_message("verl::pref::dpo_loss: unknown f_divergence_type `", name,
                                           "`; expected 'reverse_kl', 'js_divergence' or 'alpha_divergence'"));
}

namespace detail {

//! Checks that per-sequence log-prob tensors are floating, 1-D and of one shape, dtype and device.
inline void check_pref_logps(const char* who, std::initializer_list<std::pair<const char*, const at::Tensor*>> ts) {
  const at::Tensor* first = nullptr;
  const char* first_name = nullptr;
  for (const auto& [name, t] : ts) {
    if (!t->defined()) continue;
    verl::detail::check<ShapeError>(at::isFloatingType(t->scalar_type()), who, ": `", name,
                                    "` must be a floating tensor, got ", t->scalar_type());
    verl::detail::check<ShapeError>(t->dim() == 1, who, ": `", name, "` must be 1-D (one log-prob per sequence), "
                                    "got shape ", t->sizes());
    if (first == nullptr) {
      first = t;
      first_name = name;
      continue;
    }
    verl::detail::check<ShapeError>(t->sizes() == first->sizes(), who, ": `", name, "` has shape ", t->sizes(),
                                    ", expected the shape of `", first_name, "` ", first->sizes());
    verl::detail::check<ShapeError>(t->scalar_type() == first->scalar_type() && t->device() == first->device(),
                                    who, ": `", name, "` is ", t->scalar_type(), " on ", t->device(),
                                    ", expected the dtype and device of `", first_name, "` (", first->scalar_type(),
                                    " on ", first->device(), ")");
  }
}

//! TRL's `cap_exp` (trl/trainer/utils.py): exp(clamp(v, max = floor(log(finfo.max) * 1e4) / 1e4)), the cap
//! computed in v's dtype as TRL's get_exp_cap does (88.7228 for float32, 709.7827 for float64).
[[nodiscard]] inline at::Tensor capped_exp(const at::Tensor& v) {
  const bool f64 = v.scalar_type() == at::kDouble;
  double cap = 0.0;
  if (f64) {
    cap = std::floor(std::log(std::numeric_limits<double>::max()) * 1e4) / 1e4;
  } else {  // each step rounded to float, as TRL computes it in a float32 tensor
    const float lg = std::log(std::numeric_limits<float>::max());
    const float scaled = lg * 1e4f;
    cap = static_cast<double>(std::floor(scaled) / 1e4f);
  }
  return v.clamp_max(cap).exp();  // (B,)
}

//! 1 - x, as Python's `1 - tensor` (torch.rsub). Library headers avoid ATen's arithmetic operators, which
//! live in the heavy <ATen/TensorOperators.h>; they call the Tensor methods instead.
[[nodiscard]] inline at::Tensor one_minus(const at::Tensor& x) { return at::_ops::rsub_Scalar::call(x, 1, 1); }

}  // namespace detail

//! Per-pair DPO-family loss and implicit rewards.
//!
//! Reference: TRL `trl/trainer/dpo_trainer.py`, `DPOTrainer.dpo_loss`, commit a68fb896 (PyPI trl 0.28.0).
//! With `b` = beta, `ls` = label_smoothing, `pi_c, pi_r, ref_c, ref_r` the four inputs:
//! - logits = (pi_c - pi_r) - (ref_c - ref_r)   [reference_free: (pi_c - pi_r) - 0]
//!   (js_divergence / alpha_divergence modify logits as FDivergence documents)
//! - sigmoid: -logsig(b*logits)(1-ls) - logsig(-b*logits) ls;  robust: (-logsig(b*logits)(1-ls)
//!   + logsig(-b*logits) ls) / (1 - 2 ls);  hinge: relu(1 - b*logits);  ipo: (logits - 1/(2b))^2;
//!   exo_pair: sig(b*logits)(logsig(b*logits) - log(1-ls)) + sig(-b*logits)(logsig(-b*logits) - log ls), with
//!   ls = 1e-3 when 0;  nca_pair: -logsig(rc) - logsig(-rc)/2 - logsig(-rr)/2 with rc = b(pi_c-ref_c),
//!   rr = b(pi_r-ref_r);  sppo_hard: (a - 1/(2b))^2 + (c + 1/(2b))^2 with a = pi_c-ref_c, c = pi_r-ref_r;
//!   aot: cDPO loss on delta = sort(pi_c-pi_r) - sort(ref_c-ref_r);  aot_unpaired: cDPO loss on
//!   delta = sort(pi_c-ref_c) - sort(pi_r-ref_r);  apo_zero: 1 - sig(b cl) + sig(b rl);  apo_down:
//!   sig(b cl) + 1 - sig(b (cl - rl)) with cl, rl the chosen/rejected log-ratios;  discopop: with
//!   z = b*((pi_c-pi_r)-(ref_c-ref_r)), m = sig(z/tau): -logsig(z)(1-m) + exp(-z) m.
//! - rewards: b*(pi_c - ref_c), b*(pi_r - ref_r), detached.
//!
//! Reference model: reference_free reaches only TRL's `logits` and the chosen/rejected log-ratios (sigmoid,
//! robust, exo_pair, hinge, ipo, apo_zero, apo_down, f-divergences). nca_pair, sppo_hard, aot, aot_unpaired,
//! discopop and the rewards read the reference log-probs even then, as in TRL (whose trainer still computes them).
//! Without any reference model pass undefined tensors (`at::Tensor{}`) for both: they are taken as zeros,
//! which gives the same losses with or without reference_free (a common precomputed-zeros setup).
//!
//! Edge cases: ipo and sppo_hard with beta == 0, and exo_pair with label_smoothing outside [0, 1), raise where
//! TRL's Python raises (ZeroDivisionError, math domain error). robust with label_smoothing == 0.5 raises here
//! (TRL returns inf/NaN). exo_pair's ls = 0 -> 1e-3 substitution does not persist (TRL overwrites
//! `self.label_smoothing`, so a later sigmoid call in the same trainer would see 1e-3).
//! \param policy_chosen_logps, policy_rejected_logps (B,) summed (or averaged) per-sequence log-probs.
//! \param reference_chosen_logps, reference_rejected_logps (B,) same for the reference model, or both undefined.
//! \throws ConfigError for the configurations above; ShapeError for mismatched shapes/dtypes/devices.
[[nodiscard]] inline DPOLossOutput dpo_loss(const at::Tensor& policy_chosen_logps,
                                            const at::Tensor& policy_rejected_logps,
                                            const at::Tensor& reference_chosen_logps,
                                            const at::Tensor& reference_rejected_logps,
                                            const DPOLossConfig& config = {}) {
  constexpr const char* who = "verl::pref::dpo_loss";
  verl::detail::check<ShapeError>(policy_chosen_logps.defined() && policy_rejected_logps.defined(), who,
                                  ": the policy log-probs must be defined tensors");
  verl::detail::check<ShapeError>(reference_chosen_logps.defined() == reference_rejected_logps.defined(), who,
                                  ": pass both reference log-prob tensors or neither (undefined = no reference "
                                  "model, taken as zeros)");
  detail::check_pref_logps(who, {{"policy_chosen_logps", &policy_chosen_logps},
                                 {"policy_rejected_logps", &policy_rejected_logps},
                                 {"reference_chosen_logps", &reference_chosen_logps},
                                 {"reference_rejected_logps", &reference_rejected_logps}});
  const double beta = config.beta;
  const auto type = config.loss_type;
  verl::detail::check<ConfigError>(!((type == DPOLossType::ipo || type == DPOLossType::sppo_hard) && beta == 0.0),
                                   who, ": loss type `", to_string(type), "` divides by beta; beta must be "
                                   "nonzero (TRL raises ZeroDivisionError)");
  double ls = config.label_smoothing;
  if (type == DPOLossType::exo_pair) {
    if (ls == 0.0) ls = 1e-3;  // TRL's substitution, eq. 16 of the EXO paper needs 0 < ls < 1
    verl::detail::check<ConfigError>(ls > 0.0 && ls < 1.0, who, ": exo_pair takes log(label_smoothing) and "
                                     "log(1 - label_smoothing); label_smoothing must lie in [0, 1), got ",
                                     config.label_smoothing, " (TRL raises `math domain error`)");
  }
  verl::detail::check<ConfigError>(!(type == DPOLossType::robust && ls == 0.5), who, ": robust divides by "
                                   "1 - 2 * label_smoothing; label_smoothing must not be 0.5");

  const auto& pc = policy_chosen_logps;    // (B,)
  const auto& pr = policy_rejected_logps;  // (B,)
  const bool has_ref = reference_chosen_logps.defined();
  const auto rc = has_ref ? reference_chosen_logps : pc.new_zeros(pc.sizes());    // (B,)
  const auto rr = has_ref ? reference_rejected_logps : pr.new_zeros(pr.sizes());  // (B,)
  const bool ref_free = config.reference_free;

  // TRL's chosen/rejected log-ratios: pi - (not reference_free) * ref.
  const auto chosen_logratios = [&] { return ref_free ? pc : pc.sub(rc); };     // (B,)
  const auto rejected_logratios = [&] { return ref_free ? pr : pr.sub(rr); };   // (B,)
  const auto log_sigmoid = [](const at::Tensor& x) { return at::_ops::log_sigmoid::call(x); };
  // The label-smoothed (cDPO) sigmoid loss on z, as TRL writes it: -logsig(b z)(1-ls) - logsig(-b z) ls.
  const auto cdpo = [&](const at::Tensor& z) {
    return log_sigmoid(z.mul(beta)).neg().mul(1.0 - ls).sub(log_sigmoid(z.mul(-beta)).mul(ls));  // (B,)
  };
  // TRL's `logits`, read by sigmoid, robust, exo_pair, hinge, ipo.
  const auto dpo_logits = [&] {
    if (config.f_divergence_type == FDivergence::alpha_divergence) {
      const double a = config.f_alpha_divergence_coef;
      return detail::capped_exp(rejected_logratios().mul(-a)).sub(detail::capped_exp(chosen_logratios().mul(-a))).div(a);
    }
    // reference_free: TRL subtracts a (1,) zero tensor; x - 0 == x, so it is skipped.
    auto logits = ref_free ? pc.sub(pr) : pc.sub(pr).sub(rc.sub(rr));  // (B,)
    if (config.f_divergence_type == FDivergence::js_divergence) {
      logits.sub_(at::_ops::softplus::call(chosen_logratios(), 1, 20)
                      .sub(at::_ops::softplus::call(rejected_logratios(), 1, 20)));
    }
    return logits;
  };

  at::Tensor losses;  // (B,)
  switch (type) {
    case DPOLossType::sigmoid:
      losses = cdpo(dpo_logits());
      break;
    case DPOLossType::robust: {
      const auto logits = dpo_logits();  // (B,)
      losses = log_sigmoid(logits.mul(beta)).neg().mul(1.0 - ls).add(log_sigmoid(logits.mul(-beta)).mul(ls)).div(1.0 - 2.0 * ls);
      break;
    }
    case DPOLossType::exo_pair: {
      const auto logits = dpo_logits();  // (B,)
      const auto pos = logits.mul(beta);   // (B,)
      const auto neg = logits.mul(-beta);  // (B,)
      losses = pos.sigmoid().mul(log_sigmoid(pos).sub(std::log(1.0 - ls)))
                   .add(neg.sigmoid().mul(log_sigmoid(neg).sub(std::log(ls))));
      break;
    }
    case DPOLossType::hinge:
      losses = detail::one_minus(dpo_logits().mul(beta)).relu();
      break;
    case DPOLossType::ipo:
      losses = dpo_logits().sub(1.0 / (2.0 * beta)).pow(2);
      break;
    case DPOLossType::sppo_hard: {
      const auto a = pc.sub(rc);  // (B,)
      const auto c = pr.sub(rr);  // (B,)
      losses = a.sub(0.5 / beta).pow(2).add(c.add(0.5 / beta).pow(2));
      break;
    }
    case DPOLossType::nca_pair: {
      const auto chosen_r = pc.sub(rc).mul(beta);    // (B,)
      const auto rejected_r = pr.sub(rr).mul(beta);  // (B,)
      losses = log_sigmoid(chosen_r).neg().sub(log_sigmoid(chosen_r.neg()).mul(0.5))
                   .sub(log_sigmoid(rejected_r.neg()).mul(0.5));
      break;
    }
    case DPOLossType::aot_unpaired: {
      const auto chosen_sorted = std::get<0>(pc.sub(rc).sort(0));    // (B,)
      const auto rejected_sorted = std::get<0>(pr.sub(rr).sort(0));  // (B,)
      losses = cdpo(chosen_sorted.sub(rejected_sorted));
      break;
    }
    case DPOLossType::aot: {
      const auto policy_sorted = std::get<0>(pc.sub(pr).sort(0));  // (B,)
      const auto ref_sorted = std::get<0>(rc.sub(rr).sort(0));     // (B,)
      losses = cdpo(policy_sorted.sub(ref_sorted));
      break;
    }
    case DPOLossType::apo_zero:
      losses = detail::one_minus(chosen_logratios().mul(beta).sigmoid()).add(rejected_logratios().mul(beta).sigmoid());
      break;
    case DPOLossType::apo_down: {
      const auto cl = chosen_logratios();  // (B,)
      losses = cl.mul(beta).sigmoid().add(detail::one_minus(cl.sub(rejected_logratios()).mul(beta).sigmoid()));
      break;
    }
    case DPOLossType::discopop: {
      const auto z = pc.sub(pr).sub(rc.sub(rr)).mul(beta);        // (B,) always with the reference, as in TRL
      const auto modulation = z.div(config.discopop_tau).sigmoid();  // (B,)
      losses = log_sigmoid(z).neg().mul(detail::one_minus(modulation)).add(z.neg().exp().mul(modulation));
      break;
    }
  }
  return {losses, pc.sub(rc).detach().mul(beta), pr.sub(rr).detach().mul(beta)};
}

//! Convenience overload taking TRL's loss-type name; \throws ConfigError as parse_dpo_loss_type.
[[nodiscard]] inline DPOLossOutput dpo_loss(const at::Tensor& policy_chosen_logps,
                                            const at::Tensor& policy_rejected_logps,
                                            const at::Tensor& reference_chosen_logps,
                                            const at::Tensor& reference_rejected_logps, std::string_view loss_type,
                                            DPOLossConfig config = {}) {
  config.loss_type = parse_dpo_loss_type(loss_type);
  return dpo_loss(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps,
                  config);
}

}  // namespace verl::pref
