#pragma once
//! \file
//! Weighted combinations of rewards: `combine(weighted(format_rule, 0.3, "format"), weighted(rm, 0.7, "rm"))`
//! scores each item with every term and sums `weight * score` in term order. The terms keep their types (a
//! variadic template, no type erasure), may be rule functions (verl::RewardFunction) or reward models
//! (verl::RewardModel), and each term's own score is reported under its name, so a trainer logs it
//! (verl/rewards/reward_manager.hpp turns it into the metric `reward/<name>/mean`).
//!
//! A combination of rule functions only is itself a verl::RewardFunction (one item at a time); one with a
//! reward model needs the whole batch and is scored by verl::rewards::RewardManager.

#include "verl/concepts/reward_model.hpp"
#include "verl/core/errors.hpp"
#include "verl/core/model_io.hpp"

#include <cmath>
#include <cstddef>
#include <set>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

namespace verl::rewards {

//! A reference to a reward owned elsewhere (e.g. a reward model the trainer also holds), itself a reward of
//! the same kind(s): `weighted(by_ref(model), 0.5)`. The referee must outlive it.
template <Reward R>
class RewardRef {
 public:
  explicit RewardRef(R& reward) : reward_(&reward) {}
  //! Forwards to the model's score(batch).
  decltype(auto) score(const TokenBatch& batch)
    requires RewardModel<R>
  {
    return reward_->score(batch);
  }
  //! Forwards to the rule's call.
  decltype(auto) operator()(const RewardInput& in)
    requires RewardFunction<R>
  {
    return (*reward_)(in);
  }
  //! The referee.
  [[nodiscard]] R& get() const { return *reward_; }

 private:
  R* reward_;
};

//! A RewardRef to `reward`.
template <Reward R>
[[nodiscard]] RewardRef<R> by_ref(R& reward) {
  return RewardRef<R>(reward);
}

//! One term of a combination: a reward, its weight and the name its score is reported under.
template <Reward R>
struct Weighted {
  R reward;
  double weight = 1.0;
  std::string name;  //!< empty: combine() names it "term<i>" after its position
};

//! A term of a combination: `reward` scaled by `weight` (finite; may be negative, e.g. a length penalty),
//! reported as `name`. The reward is copied or moved in; pass `by_ref(r)` to keep using one you own.
template <class R>
[[nodiscard]] auto weighted(R&& reward, double weight, std::string name = {}) {
  using D = std::decay_t<R>;
  if constexpr (!Reward<D>) {
    static_assert(check_reward<D>());  // one line saying what a reward needs (and no follow-up errors)
  } else {
    return Weighted<D>{std::forward<R>(reward), weight, std::move(name)};
  }
}

//! A weighted sum of rewards, built by combine(). Scores `sum_i weight_i * score_i` in term order.
template <Reward... R>
class Combined {
 public:
  static_assert(sizeof...(R) >= 1, "verl::rewards::combine: give at least one weighted(reward, weight) term");

  //! Names unnamed terms "term<i>"; throws verl::ConfigError on a non-finite weight or a repeated name.
  explicit Combined(Weighted<R>... terms) : terms_(std::move(terms)...) {
    std::set<std::string, std::less<>> names;
    std::size_t i = 0;
    std::apply(
        [&](auto&... term) {
          ((check_term(term, i++, names)), ...);
        },
        terms_);
  }

  //! The terms, in order.
  [[nodiscard]] std::tuple<Weighted<R>...>& terms() { return terms_; }
  [[nodiscard]] const std::tuple<Weighted<R>...>& terms() const { return terms_; }
  //! The number of terms.
  static constexpr std::size_t size = sizeof...(R);

  //! Scores one item when every term is a rule function (no reward model): the weighted sum, with each
  //! term's score in `extra[name]` and each term's own extra values in `extra[name + "/" + key]`.
  [[nodiscard]] RewardOutput operator()(const RewardInput& in)
    requires((RewardFunction<R> && !RewardModel<R>) && ...)
  {
    RewardOutput out;
    std::apply([&](auto&... term) { (add(out, term.name, term.weight, RewardOutput(term.reward(in))), ...); }, terms_);
    return out;
  }

  //! Adds one term's output for an item to the combined output `out` (the order of calls is the term order).
  static void add(RewardOutput& out, const std::string& name, double weight, const RewardOutput& term) {
    out.score += weight * term.score;
    out.extra[name] = term.score;
    for (const auto& [key, value] : term.extra) out.extra[name + "/" + key] = value;
  }

 private:
  template <class T>
  static void check_term(Weighted<T>& term, std::size_t i, std::set<std::string, std::less<>>& names) {
    if (term.name.empty()) term.name = "term" + std::to_string(i);
    verl::detail::check<ConfigError>(std::isfinite(term.weight), "verl::rewards::combine: term ", i, " (\"", term.name,
                                     "\") has weight ", term.weight, ", expected a finite number");
    verl::detail::check<ConfigError>(names.insert(term.name).second, "verl::rewards::combine: term ", i,
                                     " is named \"", term.name, "\" like an earlier term; give each term its own name");
  }

  std::tuple<Weighted<R>...> terms_;
};

//! The weighted sum of the given terms: `combine(weighted(f, 0.7), weighted(g, 0.3))`.
template <class... R>
[[nodiscard]] Combined<R...> combine(Weighted<R>... terms) {
  return Combined<R...>(std::move(terms)...);
}

//! True for the Combined<...> types.
template <class T>
inline constexpr bool is_combined_v = false;
template <class... R>
inline constexpr bool is_combined_v<Combined<R...>> = true;

//! What verl::rewards::RewardManager scores: a Reward, or a combination of rewards (which may mix rule
//! functions and reward models).
template <class R>
concept ManagedReward = Reward<R> || is_combined_v<R>;

}  // namespace verl::rewards
