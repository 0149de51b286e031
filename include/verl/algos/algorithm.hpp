#pragma once
//! \file
//! The machinery of typed algorithm templates: an RL algorithm is a type composed from an
//! order-independent, omittable pack of *properties* (Kokkos-style), each property a small tag type:
//!
//!     using MyPPO = verl::RLAlgorithm<verl::ppo_defaults,
//!                                     verl::advantage<verl::estimators::GAE>,
//!                                     verl::kl_in_reward<verl::kl_estimator::k1, verl::adaptive_kl>,
//!                                     verl::loss_agg<verl::LossAggMode::seq_mean_token_mean>>;
//!
//! verl::PPO<...>, verl::GRPO<...> and the named presets (verl/algos/ppo.hpp, grpo.hpp, presets.hpp) are
//! aliases of RLAlgorithm with their own defaults. What an algorithm needs is a compile-time fact of its type:
//! `needs_critic` (from its advantage estimator), `needs_reference` (from its KL handling), `needs_groups`.
//! verl::ModelSet checks at compile time that a trainer was given the models its algorithm needs, so "PPO
//! with GAE and no critic" is a compile error with one readable line, not a crash in the first step.
//!
//! Properties (each at most once; any order; omitted ones take the algorithm's default):
//!   advantage<E>        E satisfies verl::AdvantageEstimator           verl: algorithm.adv_estimator
//!   policy_loss<L>      L satisfies verl::PolicyLoss                   verl: actor.policy_loss.loss_mode
//!   loss_agg<M>         M a verl::LossAggMode                          verl: actor.loss_agg_mode
//!   no_kl, kl_in_reward<K, C>, kl_loss<K>                              verl: algorithm.use_kl_in_reward /
//!                       K a KL estimator tag, C fixed_kl/adaptive_kl         actor.use_kl_loss, kl_loss_type
//!   entropy_coeff<c>    c a double                                     verl: actor.entropy_coeff
//! Coefficients that are tuned per run (kl_coef, clip ratios, learning rates) are runtime configuration,
//! not properties: changing them must not need a recompile.

#include "verl/concepts/actor_model.hpp"
#include "verl/concepts/advantage_estimator.hpp"
#include "verl/concepts/critic_model.hpp"
#include "verl/concepts/policy_loss.hpp"
#include "verl/concepts/reference_model.hpp"
#include "verl/core/algo_io.hpp"

#include <cstddef>
#include <string_view>
#include <type_traits>

namespace verl {

// ---------------------------------------------------------------------------------------------------------
// KL estimators and controllers (tags; the kernels live in verl/algos/kl.hpp).

//! How the KL divergence to the reference policy is estimated per token (verl's `kl_penalty` names).
namespace kl_estimator {
struct k1 { static constexpr std::string_view name = "kl"; };          //!< log p - log q
struct abs { static constexpr std::string_view name = "abs"; };        //!< |log p - log q|
struct k2 { static constexpr std::string_view name = "mse"; };         //!< (log p - log q)^2 / 2
struct k3 { static constexpr std::string_view name = "low_var_kl"; };  //!< exp(q - p) - (q - p) - 1, clamped
}  // namespace kl_estimator

//! A KL estimator tag: one of verl::kl_estimator's, or a user's with a constant `name`.
template <class K>
concept KLEstimatorTag = NamedPolicy<K>;

struct fixed_kl {};     //!< constant coefficient (verl: algorithm.kl_ctrl.type = fixed)
struct adaptive_kl {};  //!< coefficient adapted toward a target KL (verl: kl_ctrl.type = adaptive)

// ---------------------------------------------------------------------------------------------------------
// Properties.

namespace property_kind {
struct advantage {};
struct policy_loss {};
struct loss_agg {};
struct kl {};
struct entropy_coeff {};
}  // namespace property_kind

//! The advantage estimator property.
template <class E>
struct advantage {
  static_assert(check_advantage_estimator<E>());
  using verl_property_kind = property_kind::advantage;
  using type = E;
};

//! The policy (actor) loss property.
template <class L>
struct policy_loss {
  static_assert(check_policy_loss<L>());
  using verl_property_kind = property_kind::policy_loss;
  using type = L;
};

//! How token losses are aggregated into the scalar loss.
template <LossAggMode M>
struct loss_agg {
  using verl_property_kind = property_kind::loss_agg;
  static constexpr LossAggMode value = M;
};

//! No KL regularisation: no reference model is needed.
struct no_kl {
  using verl_property_kind = property_kind::kl;
  static constexpr bool in_reward = false;
  static constexpr bool as_loss = false;
};

//! KL penalty subtracted from the token rewards before the advantage (verl's use_kl_in_reward).
template <KLEstimatorTag K, class Controller = fixed_kl>
struct kl_in_reward {
  static_assert(std::is_same_v<Controller, fixed_kl> || std::is_same_v<Controller, adaptive_kl>,
                "verl::kl_in_reward<K, Controller>: Controller must be verl::fixed_kl or verl::adaptive_kl");
  using verl_property_kind = property_kind::kl;
  using estimator = K;
  using controller = Controller;
  static constexpr bool in_reward = true;
  static constexpr bool as_loss = false;
};

//! KL term added to the actor loss (verl's use_kl_loss with kl_loss_type), e.g. GRPO's k3.
template <KLEstimatorTag K>
struct kl_loss {
  using verl_property_kind = property_kind::kl;
  using estimator = K;
  static constexpr bool in_reward = false;
  static constexpr bool as_loss = true;
};

//! The entropy bonus coefficient of the actor loss (0 disables the entropy term).
template <double Coeff>
struct entropy_coeff {
  static_assert(Coeff >= 0.0, "verl::entropy_coeff<c>: the coefficient must be >= 0");
  using verl_property_kind = property_kind::entropy_coeff;
  static constexpr double value = Coeff;
};

//! A type usable in an algorithm's property pack.
template <class P>
concept AlgorithmProperty = requires { typename P::verl_property_kind; };

namespace detail {

template <class Kind, class... Ps>
inline constexpr std::size_t count_kind = (std::size_t{0} + ... + (std::is_same_v<typename Ps::verl_property_kind, Kind> ? 1 : 0));

//! The property of `Kind` in Ps..., else `Default`.
template <class Kind, class Default, class... Ps>
struct find_property {
  using type = Default;
};
template <class Kind, class Default, class P, class... Ps>
struct find_property<Kind, Default, P, Ps...> {
  using type = std::conditional_t<std::is_same_v<typename P::verl_property_kind, Kind>, P,
                                  typename find_property<Kind, Default, Ps...>::type>;
};

// Runtime defaults a preset may recommend (verl's actor.clip_ratio_low/high, default 0.2 each).
template <class D>
consteval double clip_ratio_low_of() {
  if constexpr (requires { D::clip_ratio_low; }) return D::clip_ratio_low;
  else return 0.2;
}
template <class D>
consteval double clip_ratio_high_of() {
  if constexpr (requires { D::clip_ratio_high; }) return D::clip_ratio_high;
  else return 0.2;
}

}  // namespace detail

//! An RL algorithm assembled from `Defaults` (a struct of default properties, see ppo_defaults) overridden
//! by `Properties...`. Exposes the resolved policies and the compile-time needs of the algorithm.
template <class Defaults, class... Properties>
struct RLAlgorithm {
  static_assert((AlgorithmProperty<Properties> && ...),
                "verl::RLAlgorithm: an argument is not an algorithm property; use verl::advantage<E>, "
                "verl::policy_loss<L>, verl::loss_agg<M>, verl::no_kl / kl_in_reward<K> / kl_loss<K> or "
                "verl::entropy_coeff<c>");
  static_assert(detail::count_kind<property_kind::advantage, Properties...> <= 1,
                "verl::RLAlgorithm: advantage<...> is given more than once");
  static_assert(detail::count_kind<property_kind::policy_loss, Properties...> <= 1,
                "verl::RLAlgorithm: policy_loss<...> is given more than once");
  static_assert(detail::count_kind<property_kind::loss_agg, Properties...> <= 1,
                "verl::RLAlgorithm: loss_agg<...> is given more than once");
  static_assert(detail::count_kind<property_kind::kl, Properties...> <= 1,
                "verl::RLAlgorithm: KL handling (no_kl, kl_in_reward<...>, kl_loss<...>) is given more than once");
  static_assert(detail::count_kind<property_kind::entropy_coeff, Properties...> <= 1,
                "verl::RLAlgorithm: entropy_coeff<...> is given more than once");

  using advantage_property =
      typename detail::find_property<property_kind::advantage, typename Defaults::advantage, Properties...>::type;
  using policy_loss_property =
      typename detail::find_property<property_kind::policy_loss, typename Defaults::policy_loss, Properties...>::type;
  using loss_agg_property =
      typename detail::find_property<property_kind::loss_agg, typename Defaults::loss_agg, Properties...>::type;
  using kl = typename detail::find_property<property_kind::kl, typename Defaults::kl, Properties...>::type;
  using entropy_property =
      typename detail::find_property<property_kind::entropy_coeff, typename Defaults::entropy_coeff, Properties...>::type;

  using estimator = typename advantage_property::type;  //!< the AdvantageEstimator
  using loss = typename policy_loss_property::type;     //!< the PolicyLoss

  static constexpr std::string_view name = Defaults::name;
  static constexpr LossAggMode loss_agg_mode = loss_agg_property::value;
  static constexpr double entropy_coeff = entropy_property::value;
  static constexpr bool kl_in_reward = kl::in_reward;
  //! Recommended starting values of the runtime clip range (DAPO's clip-higher raises the upper one); trainers
  //! initialise their configuration from these, and users may change them without recompiling.
  static constexpr double clip_ratio_low = detail::clip_ratio_low_of<Defaults>();
  static constexpr double clip_ratio_high = detail::clip_ratio_high_of<Defaults>();
  static constexpr bool kl_as_loss = kl::as_loss;

  //! A critic is trained and queried iff the estimator reads values (GAE does; GRPO, RLOO, ... do not).
  static constexpr bool needs_critic = estimator::needs_critic;
  //! A reference model is queried iff the KL is regularised, in the reward or in the loss.
  static constexpr bool needs_reference = kl::in_reward || kl::as_loss;
  //! Several samples per prompt, grouped by uid, are needed (GRPO, RLOO, ...).
  static constexpr bool needs_groups = estimator::needs_groups;
};

//! Types produced by verl::RLAlgorithm.
template <class T>
inline constexpr bool is_rl_algorithm_v = false;
template <class D, class... Ps>
inline constexpr bool is_rl_algorithm_v<RLAlgorithm<D, Ps...>> = true;

// ---------------------------------------------------------------------------------------------------------
// The models a trainer holds, checked against the algorithm.

//! "This trainer has no critic" / "no reference model": pass these where a model type is expected.
struct no_critic {};
struct no_reference {};

namespace detail {
// `if constexpr` keeps the checker of a model type from being instantiated for the "none" tags.
template <class Critic>
consteval bool check_optional_critic() {
  if constexpr (std::is_same_v<Critic, no_critic>) return true;
  else return check_critic_model<Critic>();
}
template <class Reference>
consteval bool check_optional_reference() {
  if constexpr (std::is_same_v<Reference, no_reference>) return true;
  else return check_reference_model<Reference>();
}
}  // namespace detail

//! The models of an RL trainer for `Algorithm`, checked at compile time: a critic iff the algorithm needs
//! one, a reference model iff it regularises a KL. Trainers derive from or hold a ModelSet, so a mismatch
//! fails where the trainer type is named, with one line saying what is missing.
template <class Algorithm, class Actor, class Critic = no_critic, class Reference = no_reference>
struct ModelSet {
  static_assert(is_rl_algorithm_v<Algorithm>,
                "verl::ModelSet<Algorithm, ...>: Algorithm must be an RL algorithm type such as verl::PPO<...> "
                "or verl::GRPO<...>");
  static_assert(check_actor_model<Actor>());
  static_assert(!Algorithm::needs_critic || !std::is_same_v<Critic, no_critic>,
                "verl::ModelSet: this algorithm's advantage estimator reads values (e.g. GAE), so it needs a "
                "critic; pass a type satisfying verl::CriticModel, or use an estimator without a critic "
                "(GRPO, RLOO, REINFORCE++, ReMax)");
  static_assert(Algorithm::needs_critic || std::is_same_v<Critic, no_critic>,
                "verl::ModelSet: this algorithm's advantage estimator does not read values, so a critic would be "
                "trained for nothing; pass verl::no_critic");
  static_assert(detail::check_optional_critic<Critic>());
  static_assert(!Algorithm::needs_reference || !std::is_same_v<Reference, no_reference>,
                "verl::ModelSet: this algorithm regularises a KL to the reference policy (kl_in_reward or kl_loss), "
                "so it needs a reference model; pass a type satisfying verl::ReferenceModel, or use verl::no_kl");
  static_assert(detail::check_optional_reference<Reference>());

  using algorithm = Algorithm;
  using actor_type = Actor;
  using critic_type = Critic;
  using reference_type = Reference;
  static constexpr bool has_critic = !std::is_same_v<Critic, no_critic>;
  static constexpr bool has_reference = !std::is_same_v<Reference, no_reference>;
};

}  // namespace verl
