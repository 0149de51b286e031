#pragma once
//! \file
//! A pipeline stage: one node of the RL dataflow (generate, reward, reference log-probs, old log-probs, values,
//! advantages, critic update, actor update, ...), declared by the batch fields it reads and writes:
//!
//!     struct MyReward {
//!       static constexpr std::string_view name = "reward";          // also the timing key: timing_s/reward
//!       using needs = verl::field_list<verl::fields::responses, verl::fields::response_mask>;
//!       using produces = verl::field_list<verl::fields::token_level_scores>;
//!       template <verl::BatchWith<verl::fields::responses, verl::fields::response_mask> B>
//!       auto run(const B& batch, verl::StepContext& ctx) {
//!         return verl::put<verl::fields::token_level_scores>(batch, my_scores(batch));
//!       }
//!     };
//!
//! verl::Pipeline (verl/pipeline/pipeline.hpp) checks at compile time, from `needs` and `produces` alone, that
//! every field a stage needs is produced by the input or an earlier stage, and names the stage and the field
//! otherwise. At run time a stage receives the typed batch built so far and returns a batch that has every
//! field of its input plus the fields it produces (it may change the items: generation expands prompts into
//! responses, a filter drops groups, a replay buffer adds items).

#include "verl/concepts/named_policy.hpp"
#include "verl/core/batch.hpp"
#include "verl/core/field.hpp"

#include <boost/hana/contains.hpp>
#include <boost/hana/tuple.hpp>
#include <boost/hana/type.hpp>

#include <algorithm>
#include <cstdint>
#include <map>
#include <string>
#include <type_traits>

namespace verl {

//! A compile-time list of field tags: what a stage needs or produces.
template <FieldTag... Fields>
struct field_list {
  static constexpr std::size_t size = sizeof...(Fields);
  //! The list as a Boost.Hana tuple of types, for set algebra.
  static constexpr auto types = boost::hana::tuple_t<Fields...>;
  template <class F>
  static constexpr bool contains = (std::is_same_v<F, Fields> || ...);
};

template <class T>
inline constexpr bool is_field_list_v = false;
template <class... Fs>
inline constexpr bool is_field_list_v<field_list<Fs...>> = true;

namespace detail {
template <class A, class B>
struct concat_field_lists;
template <class... As, class... Bs>
struct concat_field_lists<field_list<As...>, field_list<Bs...>> {
  using type = field_list<As..., Bs...>;
};
template <bool Cond, class F>
using field_if = std::conditional_t<Cond, field_list<F>, field_list<>>;
}  // namespace detail

//! field_list<As..., Bs...>.
template <class A, class B>
using concat_fields_t = typename detail::concat_field_lists<A, B>::type;

//! What every stage of one step shares besides the batch: the step number and the metrics the stages report
//! (verl's names: actor/pg_loss, critic/vf_loss, timing_s/gen, ...), each a list of values (verl's
//! append_to_dict) reduced at the end of the step by verl 0.7.1's reduce_metrics rule.
struct StepContext {
  std::int64_t step = 0;  //!< 1-based global step (verl's global_steps)
  std::map<std::string, std::vector<double>, std::less<>> metrics;

  void record(std::string_view name, double value) { metrics[std::string(name)].push_back(value); }
  //! One value per metric, as verl's reduce_metrics: the max of the values when the name contains "max", else
  //! the min when it contains "min", else the mean.
  [[nodiscard]] std::map<std::string, double> reduced() const {
    std::map<std::string, double> out;
    for (const auto& [name, values] : metrics) {
      if (values.empty()) continue;
      double r = values.front();
      if (name.find("max") != std::string::npos) {
        for (double v : values) r = std::max(r, v);
      } else if (name.find("min") != std::string::npos) {
        for (double v : values) r = std::min(r, v);
      } else {
        double sum = 0;
        for (double v : values) sum += v;
        r = sum / static_cast<double>(values.size());
      }
      out[name] = r;
    }
    return out;
  }
};

//! `batch` with field `F` set to `tensor`: added when the batch type lacks it, replaced (in a copy) otherwise.
//! Stages use it so that they also work on batches that already carry the field (e.g. replayed items).
template <FieldTag F, class B>
  requires is_batch_v<B>
[[nodiscard]] auto put(const B& batch, at::Tensor tensor) {
  if constexpr (B::template has<F>) {
    B copy = batch;
    copy.template set<F>(std::move(tensor));
    return copy;
  } else {
    return batch.template with<F>(std::move(tensor));
  }
}

namespace detail {
template <class S>
concept has_needs_list = requires { typename S::needs; } && is_field_list_v<typename S::needs>;
template <class S>
concept has_produces_list = requires { typename S::produces; } && is_field_list_v<typename S::produces>;
}  // namespace detail

//! A pipeline stage type.
//!
//! Satisfied when:
//!   1. NamedPolicy<S>: `static constexpr std::string_view name` (the timing key, verl's: gen, reward, ref,
//!      old_log_prob, values, adv, update_critic, update_actor);
//!   2. `typename S::needs` is a verl::field_list of the fields run() reads;
//!   3. `typename S::produces` is a verl::field_list of the fields run() adds or overwrites.
//! Laws (checked when the pipeline runs): `s.run(batch, ctx)` returns a verl::Batch with every field of the
//! input and every field of `produces`.
template <class S>
concept PipelineStage = NamedPolicy<S> && detail::has_needs_list<S> && detail::has_produces_list<S>;

//! Checks PipelineStage<S> piece by piece, one static_assert per missing member. Returns true.
template <class S>
consteval bool check_pipeline_stage() {
  static_assert(NamedPolicy<S>,
                "verl::PipelineStage: the stage type has no constant `name`; add "
                "`static constexpr std::string_view name = \"my_stage\";` (it is also the timing key)");
  static_assert(detail::has_needs_list<S>,
                "verl::PipelineStage: the stage type has no `using needs = verl::field_list<...>;` naming the batch "
                "fields it reads (write `verl::field_list<>` when it reads none)");
  static_assert(detail::has_produces_list<S>,
                "verl::PipelineStage: the stage type has no `using produces = verl::field_list<...>;` naming the "
                "batch fields it adds (write `verl::field_list<>` when it adds none)");
  return true;
}

}  // namespace verl
