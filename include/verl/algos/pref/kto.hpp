#pragma once
//! \file
//! KTO and unpaired APO-zero losses, verl::pref::kto_loss: Hugging Face TRL's `KTOTrainer.kto_loss` as of
//! commit b84b4872, pinned as PyPI trl 0.28.0 (`trl/experimental/kto/kto_trainer.py`). The function is
//! character-for-character identical in trl 0.25.1 (then `trl/trainer/kto_trainer.py`), 0.26.2, 0.27.2, 0.28.0,
//! 0.29.1 and 1.0.0, so every one of those releases pins it.
//!
//! Operation order follows TRL's expression by expression: float32/float64 results equal TRL's bit for bit.

#include "verl/algos/pref/dpo.hpp"  // detail::check_pref_logps
#include "verl/core/errors.hpp"

#include <ATen/core/Tensor.h>
#include <ATen/core/IListRef.h>
#include <ATen/ops/cat_ops.h>

#include <array>
#include <string_view>

namespace verl::pref {

//! TRL KTOConfig.loss_type.
enum class KTOLossType {
  kto,                //!< KTO (Ethayarajh et al. 2024), eq. 7, with the KL reference point
  apo_zero_unpaired,  //!< unpaired APO-zero (D'Oosterlinck et al. 2024), eq. 7; no reference point
};

//! TRL's name of a KTO loss type.
[[nodiscard]] constexpr std::string_view to_string(KTOLossType t) noexcept {
  return t == KTOLossType::kto ? "kto" : "apo_zero_unpaired";
}

//! Parses "kto" / "apo_zero_unpaired". \throws ConfigError for any other name.
[[nodiscard]] inline KTOLossType parse_kto_loss_type(std::string_view name) {
  if (name == "kto") return KTOLossType::kto;
  if (name == "apo_zero_unpaired") return KTOLossType::apo_zero_unpaired;
  throw ConfigError(verl::detail::concat_message("verl::pref::kto_loss: unknown loss type `", name,
                                                 "`; expected 'kto' or 'apo_zero_unpaired'"));
}

//! Configuration of kto_loss; defaults are TRL KTOConfig's (trl 0.28.0).
struct KTOLossConfig {
  KTOLossType loss_type = KTOLossType::kto;
  double beta = 0.1;
  double desirable_weight = 1.0;    //!< multiplies the chosen (desirable) losses
  double undesirable_weight = 1.0;  //!< multiplies the rejected (undesirable) losses
};

//! What TRL's kto_loss returns.
struct KTOLossOutput {
  at::Tensor losses;            //!< (Nc + Nr,) desirable_weight * chosen losses, then undesirable_weight * rejected
  at::Tensor chosen_rewards;    //!< (Nc,) beta * (pi_c - ref_c), detached
  at::Tensor rejected_rewards;  //!< (Nr,) beta * (pi_r - ref_r), detached
  at::Tensor kl;                //!< () the reference point z0 = max(0, mean(pi_KL - ref_KL)), detached
};

//! The KTO reference point: mean(policy_KL_logps - reference_KL_logps), detached, clamped at 0.
//! In data-parallel training TRL averages the per-rank means (accelerate gather_for_metrics, then mean) before
//! clamping; do that by all-reducing the unclamped `kto_kl_mean` and clamping the result.
[[nodiscard]] inline at::Tensor kto_kl_mean(const at::Tensor& policy_KL_logps, const at::Tensor& reference_KL_logps) {
  return policy_KL_logps.sub(reference_KL_logps).mean().detach();  // ()
}

//! KTO / APO-zero-unpaired loss on an unpaired batch.
//!
//! Reference: TRL `trl/experimental/kto/kto_trainer.py`, `KTOTrainer.kto_loss`, commit b84b4872 (trl 0.28.0).
//! With b = beta, z0 = clamp(mean(pi_KL - ref_KL), min 0) detached (kto only; the KL pairs are each prompt matched
//! with another item's completion), cl = pi_c - ref_c, rl = pi_r - ref_r:
//! - kto: chosen 1 - sig(b (cl - z0)), rejected 1 - sig(b (z0 - rl));
//! - apo_zero_unpaired: chosen 1 - sig(b cl), rejected sig(b rl); z0 is not computed (0).
//! - losses = cat(desirable_weight * chosen, undesirable_weight * rejected); rewards b cl, b rl (detached).
//!
//! Edge cases: Nc or Nr may be 0: TRL then returns empty losses/rewards for that side (we return them in the
//! input dtype; TRL's are float32). When `kl_override` is given (e.g. the all-reduced mean across data-parallel
//! ranks), it replaces the local mean before clamping. Deliberate difference: `kl` is always a 0-dim tensor in
//! the input dtype; TRL returns a (1,) float32 zero for apo_zero_unpaired.
//! \param policy_chosen_logps, reference_chosen_logps (Nc,); \param policy_rejected_logps, reference_rejected_logps
//! (Nr,); \param policy_KL_logps, reference_KL_logps (B,) log-probs of the mismatched (prompt, other completion)
//! pairs; may be undefined for apo_zero_unpaired.
//! \throws ShapeError for mismatched shapes/dtypes; ConfigError when kto lacks the KL log-probs.
[[nodiscard]] inline KTOLossOutput kto_loss(const at::Tensor& policy_chosen_logps,
                                            const at::Tensor& policy_rejected_logps,
                                            const at::Tensor& policy_KL_logps,
                                            const at::Tensor& reference_chosen_logps,
                                            const at::Tensor& reference_rejected_logps,
                                            const at::Tensor& reference_KL_logps, const KTOLossConfig& config = {},
                                            const at::Tensor& kl_override = {}) {
  constexpr const char* who = "verl::pref::kto_loss";
  detail::check_pref_logps(who, {{"policy_chosen_logps", &policy_chosen_logps},
                                 {"reference_chosen_logps", &reference_chosen_logps}});
  detail::check_pref_logps(who, {{"policy_rejected_logps", &policy_rejected_logps},
                                 {"reference_rejected_logps", &reference_rejected_logps}});
  verl::detail::check<ShapeError>(policy_chosen_logps.defined() && reference_chosen_logps.defined() &&
                                      policy_rejected_logps.defined() && reference_rejected_logps.defined(),
                                  who, ": the chosen and rejected log-probs must be defined (possibly empty) tensors");
  verl::detail::check<ShapeError>(policy_chosen_logps.scalar_type() == policy_rejected_logps.scalar_type(), who,
                                  ": chosen and rejected log-probs must share a dtype, got ",
                                  policy_chosen_logps.scalar_type(), " and ", policy_rejected_logps.scalar_type());
  const bool calculate_kl = config.loss_type == KTOLossType::kto;
  const double beta = config.beta;
  const auto& pc = policy_chosen_logps;    // (Nc,)
  const auto& pr = policy_rejected_logps;  // (Nr,)

  at::Tensor kl;  // ()
  if (calculate_kl) {
    if (kl_override.defined()) {
      kl = kl_override.detach().to(pc.scalar_type()).mean().clamp_min(0);  // ()
    } else {
      verl::detail::check<ConfigError>(policy_KL_logps.defined() && reference_KL_logps.defined(), who,
                                       ": loss type `kto` needs policy_KL_logps and reference_KL_logps (the "
                                       "mismatched-pair log-probs) or a kl_override");
      detail::check_pref_logps(who, {{"policy_KL_logps", &policy_KL_logps},
                                     {"reference_KL_logps", &reference_KL_logps}});
      kl = kto_kl_mean(policy_KL_logps, reference_KL_logps).mean().clamp_min(0);  // ()
    }
  } else {
    kl = pc.new_zeros({});  // ()
  }

  at::Tensor chosen_losses;   // (Nc,)
  at::Tensor chosen_rewards;  // (Nc,)
  if (pc.size(0) != 0 || reference_chosen_logps.size(0) != 0) {
    const auto cl = pc.sub(reference_chosen_logps);  // (Nc,)
    chosen_losses = detail::one_minus((calculate_kl ? cl.sub(kl) : cl).mul(beta).sigmoid());
    chosen_rewards = cl.detach().mul(beta);
  } else {
    chosen_losses = pc.new_empty({0});
    chosen_rewards = pc.new_empty({0});
  }
  at::Tensor rejected_losses;   // (Nr,)
  at::Tensor rejected_rewards;  // (Nr,)
  if (pr.size(0) != 0 || reference_rejected_logps.size(0) != 0) {
    const auto rl = pr.sub(reference_rejected_logps);  // (Nr,)
    rejected_losses = calculate_kl ? detail::one_minus(kl.sub(rl).mul(beta).sigmoid()) : rl.mul(beta).sigmoid();
    rejected_rewards = rl.detach().mul(beta);
  } else {
    rejected_losses = pr.new_empty({0});
    rejected_rewards = pr.new_empty({0});
  }
  const std::array<at::Tensor, 2> parts = {chosen_losses.mul(config.desirable_weight),
                                           rejected_losses.mul(config.undesirable_weight)};
  auto losses = at::_ops::cat::call(at::ITensorListRef(at::TensorList(parts.data(), parts.size())), 0);  // (Nc + Nr,)
  return {losses, chosen_rewards, rejected_rewards, kl};
}

}  // namespace verl::pref
