#pragma once
//! \file
//! Offline algorithm types over verl::pref's losses: verl::DPO<Variant, Reference>, verl::KTO<Type>,
//! verl::SimPO, verl::ORPO and verl::SFT. Like the RL algorithms (verl/algos/algorithm.hpp), each is a type
//! whose needs are compile-time facts (a reference model or not; never a critic or a rollout), and
//! verl::OfflineModelSet checks a trainer's models against them.
//!
//!     using Algo = verl::DPO<verl::pref::DPOLossType::ipo>;
//!     auto out = Algo::loss(pc, pr, rc, rr, {.beta = 0.1});      // the loss type comes from the algorithm
//!     using Models = verl::OfflineModelSet<Algo, MyPolicy, MyReference>;

#include "verl/algos/algorithm.hpp"
#include "verl/algos/pref/pref.hpp"
#include "verl/concepts/reference_model.hpp"

#include <string_view>
#include <type_traits>

namespace verl {

//! DPO with a reference model (the default) or reference-free (TRL's `reference_free=True`: the reference
//! log-ratios are zeros, so no reference model is loaded).
struct with_reference {};
struct reference_free {};

//! Direct preference optimisation with TRL's loss `Variant` (sigmoid, ipo, hinge, ...).
template <pref::DPOLossType Variant = pref::DPOLossType::sigmoid, class Reference = with_reference>
struct DPO {
  static_assert(std::is_same_v<Reference, with_reference> || std::is_same_v<Reference, reference_free>,
                "verl::DPO<Variant, Reference>: Reference must be verl::with_reference or verl::reference_free");
  static constexpr std::string_view name = "dpo";
  static constexpr pref::DPOLossType loss_type = Variant;
  static constexpr bool needs_reference = std::is_same_v<Reference, with_reference>;
  static constexpr bool needs_critic = false;
  static constexpr bool needs_rollout = false;

  //! TRL's dpo_loss with this algorithm's loss type and reference handling (config.loss_type and
  //! config.reference_free are overridden). Without a reference model pass undefined reference tensors.
  static pref::DPOLossOutput loss(const at::Tensor& policy_chosen_logps, const at::Tensor& policy_rejected_logps,
                                  const at::Tensor& reference_chosen_logps,
                                  const at::Tensor& reference_rejected_logps, pref::DPOLossConfig config = {}) {
    config.loss_type = Variant;
    config.reference_free = !needs_reference;
    return pref::dpo_loss(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps,
                          reference_rejected_logps, config);
  }
};

//! Kahneman-Tversky optimisation (TRL's kto_loss): unpaired desirable/undesirable examples, KL reference
//! point from mismatched pairs.
template <pref::KTOLossType Type = pref::KTOLossType::kto>
struct KTO {
  static constexpr std::string_view name = "kto";
  static constexpr pref::KTOLossType loss_type = Type;
  static constexpr bool needs_reference = true;
  static constexpr bool needs_critic = false;
  static constexpr bool needs_rollout = false;

  static pref::KTOLossOutput loss(const at::Tensor& policy_chosen_logps, const at::Tensor& policy_rejected_logps,
                                  const at::Tensor& policy_kl_logps, const at::Tensor& reference_chosen_logps,
                                  const at::Tensor& reference_rejected_logps, const at::Tensor& reference_kl_logps,
                                  pref::KTOLossConfig config = {}) {
    config.loss_type = Type;
    return pref::kto_loss(policy_chosen_logps, policy_rejected_logps, policy_kl_logps, reference_chosen_logps,
                          reference_rejected_logps, reference_kl_logps, config);
  }
};

//! SimPO: reference-free, length-normalised log-probs with a target margin (TRL's CPO with loss_type simpo).
struct SimPO {
  static constexpr std::string_view name = "simpo";
  static constexpr bool needs_reference = false;
  static constexpr bool needs_critic = false;
  static constexpr bool needs_rollout = false;
  static pref::SimPOLossOutput loss(const at::Tensor& policy_chosen_logps, const at::Tensor& policy_rejected_logps,
                                    const pref::SimPOLossConfig& config = {}) {
    return pref::simpo_loss(policy_chosen_logps, policy_rejected_logps, config);
  }
};

//! ORPO: the odds-ratio term added to the SFT loss of the chosen responses; reference-free.
struct ORPO {
  static constexpr std::string_view name = "orpo";
  static constexpr bool needs_reference = false;
  static constexpr bool needs_critic = false;
  static constexpr bool needs_rollout = false;
  static pref::ORPOLossOutput loss(const at::Tensor& policy_chosen_logps, const at::Tensor& policy_rejected_logps,
                                   const pref::ORPOLossConfig& config = {}) {
    return pref::odds_ratio_loss(policy_chosen_logps, policy_rejected_logps, config);
  }
};

//! Supervised fine-tuning: the token-level negative log-likelihood, sharing weights format, tokenizer and
//! batching with the RL algorithms.
struct SFT {
  static constexpr std::string_view name = "sft";
  static constexpr bool needs_reference = false;
  static constexpr bool needs_critic = false;
  static constexpr bool needs_rollout = false;
  static at::Tensor loss(const at::Tensor& logits, const at::Tensor& labels, const pref::SFTLossConfig& config = {}) {
    return pref::sft_nll_loss(logits, labels, config);
  }
};

//! An offline algorithm type: DPO, KTO, SimPO, ORPO, SFT or a user's own with the same flags.
template <class A>
concept OfflineAlgorithm = requires {
  { A::name } -> std::convertible_to<std::string_view>;
  requires std::same_as<std::remove_cv_t<decltype(A::needs_reference)>, bool>;
  requires !A::needs_rollout && !A::needs_critic;
};

//! The models of an offline trainer: the policy, and a reference model iff the algorithm needs one.
template <class Algorithm, class Policy, class Reference = no_reference>
struct OfflineModelSet {
  static_assert(OfflineAlgorithm<Algorithm>,
                "verl::OfflineModelSet<Algorithm, ...>: Algorithm must be an offline algorithm such as verl::DPO<...>, "
                "verl::KTO<...>, verl::SimPO, verl::ORPO or verl::SFT");
  static_assert(check_reference_model<Policy>());  // the trained policy must at least score log-probs
  static_assert(!Algorithm::needs_reference || !std::is_same_v<Reference, no_reference>,
                "verl::OfflineModelSet: this algorithm compares against a reference policy (DPO, KTO), so it needs a "
                "reference model; pass a type satisfying verl::ReferenceModel, or use verl::DPO<..., "
                "verl::reference_free>, SimPO or ORPO");
  static_assert(Algorithm::needs_reference || std::is_same_v<Reference, no_reference>,
                "verl::OfflineModelSet: this algorithm reads no reference model; pass verl::no_reference");
  static_assert(detail::check_optional_reference<Reference>());
  using algorithm = Algorithm;
  using policy_type = Policy;
  using reference_type = Reference;
};

}  // namespace verl
