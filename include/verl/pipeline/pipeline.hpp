#pragma once
//! \file
//! verl::Pipeline<Input, Stages...>: the RL dataflow as a type. The stages run in order over one typed batch;
//! the composition is checked at compile time (Boost.Hana set membership over the stages' `needs` and
//! `produces`), so a stage that reads a field nobody produces fails to compile, naming the stage and the
//! field:
//!
//!     error: static assertion failed: verl::Pipeline: a stage needs a batch field that neither the pipeline
//!            input nor an earlier stage produces ...
//!     In instantiation of 'struct verl::pipeline_error::stage_needs_a_field_that_no_earlier_stage_produces<
//!            verl::stages::UpdateCritic<MyCritic>, verl::fields::values>'
//!
//! Stages are values (they hold references to models, optimizers, buffers); edit a pipeline with
//! replace_stage<Old>(p, s), insert_before<Anchor>(p, s), insert_after<Anchor>(p, s) and remove_stage<S>(p), which return a new
//! pipeline type that is checked again. The standard stages are in verl/pipeline/rl_stages.hpp; a trainer's
//! default pipeline comes from its algorithm (verl/trainer/ppo_trainer.hpp).

#include "verl/pipeline/stage.hpp"

#include <boost/hana/contains.hpp>

#include <chrono>
#include <cstddef>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

namespace verl {

//! The diagnostics of pipeline composition, in a namespace of their own so that the compiler's
//! "In instantiation of" line reads as the message.
namespace pipeline_error {
template <class>
inline constexpr bool always_false = false;

//! Instantiated (and failing) when `Stage` needs `Field` and nothing before it produces that field.
template <class Stage, class Field>
struct stage_needs_a_field_that_no_earlier_stage_produces {
  static_assert(always_false<Stage>,
                "verl::Pipeline: a stage needs a batch field that neither the pipeline input nor an earlier stage "
                "produces; the stage and the field are the two template arguments of "
                "stage_needs_a_field_that_no_earlier_stage_produces<Stage, Field> in the instantiation line of "
                "this error. Insert a stage that produces the field before it, or add it to the pipeline input");
  static constexpr bool value = false;
};

//! Instantiated (and failing) when a stage's run() does not return a batch with a field it declares.
template <class Stage, class Field>
struct stage_run_does_not_return_a_field_it_declares {
  static_assert(always_false<Stage>,
                "verl::Pipeline: a stage's run() returned a batch without a field of its `produces` list (or "
                "without a field of its input); the stage and the field are the template arguments above");
  static constexpr bool value = false;
};
}  // namespace pipeline_error

namespace detail {

template <class Stage, class Available, class F>
consteval bool check_one_need() {
  if constexpr (decltype(boost::hana::contains(Available::types, boost::hana::type_c<F>))::value) return true;
  else return pipeline_error::stage_needs_a_field_that_no_earlier_stage_produces<Stage, F>::value;
}
template <class Stage, class Available, class... Needs>
consteval bool check_needs(field_list<Needs...>) {
  return (check_one_need<Stage, Available, Needs>() && ...);
}

//! Folds over the stages, growing the set of available fields by each stage's `produces`.
template <class Available, class... Stages>
struct check_chain {
  static constexpr bool value = true;
  using available = Available;
};
template <class Available, class S, class... Rest>
struct check_chain<Available, S, Rest...> {
  static constexpr bool here = check_pipeline_stage<S>() && check_needs<S, Available>(typename S::needs{});
  using next = check_chain<concat_fields_t<Available, typename S::produces>, Rest...>;
  static constexpr bool value = here && next::value;
  using available = typename next::available;
};

template <class B>
struct batch_field_list;
template <class... Fs>
struct batch_field_list<Batch<Fs...>> {
  using type = field_list<Fs...>;
};

template <class Stage, class Out, class F>
consteval bool returns_field() {
  if constexpr (Out::template has<F>) return true;
  else return pipeline_error::stage_run_does_not_return_a_field_it_declares<Stage, F>::value;
}
template <class Stage, class Out, class... Fs>
consteval bool returns_fields(field_list<Fs...>) {
  return (returns_field<Stage, Out, Fs>() && ...);
}

template <class... Ts>
struct pipeline_from_tuple;

}  // namespace detail

//! A compile-time-checked sequence of stages over a typed batch whose initial fields are `Input` (a
//! verl::field_list). Stages run in the order given.
template <class Input, class... Stages>
class Pipeline {
  static_assert(is_field_list_v<Input>,
                "verl::Pipeline<Input, Stages...>: Input must be a verl::field_list<...> of the fields the first "
                "stage receives, e.g. verl::field_list<fields::input_ids, fields::attention_mask, ...>");
  static_assert(detail::check_chain<Input, Stages...>::value);

 public:
  using input = Input;
  //! Every field available after the last stage (with repeats).
  using output = typename detail::check_chain<Input, Stages...>::available;
  static constexpr std::size_t num_stages = sizeof...(Stages);
  //! The type of stage I.
  template <std::size_t I>
  using stage_type = std::tuple_element_t<I, std::tuple<Stages...>>;

  explicit Pipeline(Stages... stages) : stages_(std::move(stages)...) {}
  explicit Pipeline(std::tuple<Stages...> stages) : stages_(std::move(stages)) {}

  //! Runs every stage over `batch` (which must have the Input fields) and returns the final batch. Each
  //! stage's wall time is recorded in `ctx` as timing_s/<stage name>.
  template <class B>
    requires is_batch_v<B>
  auto run(B batch, StepContext& ctx) {
    static_assert(detail::returns_fields<Pipeline, B>(Input{}),
                  "verl::Pipeline::run: the batch lacks a field of the pipeline's Input list");
    return run_from<0>(std::move(batch), ctx);
  }

  //! The stages, in order (for editing, or to reach a stage's state such as a replay buffer).
  [[nodiscard]] const std::tuple<Stages...>& stages() const& { return stages_; }
  [[nodiscard]] std::tuple<Stages...>& stages() & { return stages_; }
  [[nodiscard]] std::tuple<Stages...>&& stages() && { return std::move(stages_); }
  //! The stage of type S (which must occur exactly once).
  template <class S>
  [[nodiscard]] S& stage() {
    return std::get<S>(stages_);
  }
  //! The stage names, in order ("gen", "reward", ...).
  [[nodiscard]] static std::vector<std::string_view> stage_names() { return {Stages::name...}; }

 private:
  template <std::size_t I, class B>
  auto run_from(B batch, StepContext& ctx) {
    if constexpr (I == sizeof...(Stages)) {
      return batch;
    } else {
      using S = stage_type<I>;
      const auto start = std::chrono::steady_clock::now();
      auto out = std::get<I>(stages_).run(std::move(batch), ctx);
      using Out = decltype(out);
      static_assert(is_batch_v<Out>, "verl::Pipeline: a stage's run() must return a verl::Batch");
      static_assert(detail::returns_fields<S, Out>(typename detail::batch_field_list<B>::type{}) &&
                    detail::returns_fields<S, Out>(typename S::produces{}));
      const std::chrono::duration<double> seconds = std::chrono::steady_clock::now() - start;
      ctx.record(std::string("timing_s/").append(S::name), seconds.count());
      return run_from<I + 1>(std::move(out), ctx);
    }
  }

  std::tuple<Stages...> stages_;
};

namespace detail {
template <class Input, class... Ts>
struct pipeline_from_tuple<Input, std::tuple<Ts...>> {
  using type = Pipeline<Input, Ts...>;
};
template <class Input, class Tuple>
auto make_pipeline_from_tuple(Tuple&& t) {
  return typename pipeline_from_tuple<Input, std::remove_cvref_t<Tuple>>::type(std::forward<Tuple>(t));
}
template <class S, class... Stages>
inline constexpr std::size_t count_stage = (std::size_t{0} + ... + (std::is_same_v<S, Stages> ? 1 : 0));
}  // namespace detail

//! Builds a pipeline over `Input` from stage values.
template <class Input, class... Stages>
[[nodiscard]] Pipeline<Input, Stages...> make_pipeline(Stages... stages) {
  return Pipeline<Input, Stages...>(std::move(stages)...);
}

//! `p` with its stage of type Old replaced by `replacement` (e.g. a custom reward stage).
template <class Old, class Input, class... Stages, class New>
[[nodiscard]] auto replace_stage(Pipeline<Input, Stages...> p, New replacement) {
  static_assert(detail::count_stage<Old, Stages...> == 1,
                "verl::replace_stage<Old>: the pipeline must contain the stage type Old exactly once");
  auto stages = std::move(p).stages();
  return [&]<std::size_t... I>(std::index_sequence<I...>) {
    auto pick = [&]<std::size_t J>(std::integral_constant<std::size_t, J>) {
      if constexpr (std::is_same_v<std::tuple_element_t<J, std::tuple<Stages...>>, Old>) return std::move(replacement);
      else return std::move(std::get<J>(stages));
    };
    return detail::make_pipeline_from_tuple<Input>(std::tuple(pick(std::integral_constant<std::size_t, I>{})...));
  }(std::index_sequence_for<Stages...>{});
}

namespace detail {
template <class Anchor, bool After, class Input, class... Stages, class New>
auto insert_at(Pipeline<Input, Stages...> p, New inserted) {
  static_assert(count_stage<Anchor, Stages...> == 1,
                "verl::insert_before/insert_after<Anchor>: the pipeline must contain the stage type Anchor exactly "
                "once");
  auto stages = std::move(p).stages();
  return [&]<std::size_t... I>(std::index_sequence<I...>) {
    auto piece = [&]<std::size_t J>(std::integral_constant<std::size_t, J>) {
      if constexpr (std::is_same_v<std::tuple_element_t<J, std::tuple<Stages...>>, Anchor>) {
        if constexpr (After) return std::tuple(std::move(std::get<J>(stages)), std::move(inserted));
        else return std::tuple(std::move(inserted), std::move(std::get<J>(stages)));
      } else {
        return std::tuple(std::move(std::get<J>(stages)));
      }
    };
    return make_pipeline_from_tuple<Input>(std::tuple_cat(piece(std::integral_constant<std::size_t, I>{})...));
  }(std::index_sequence_for<Stages...>{});
}
}  // namespace detail

//! `p` without its stage of type Gone (the result is checked again: later stages must not need what it made).
template <class Gone, class Input, class... Stages>
[[nodiscard]] auto remove_stage(Pipeline<Input, Stages...> p) {
  static_assert(detail::count_stage<Gone, Stages...> == 1,
                "verl::remove_stage<Gone>: the pipeline must contain the stage type Gone exactly once");
  auto stages = std::move(p).stages();
  return [&]<std::size_t... I>(std::index_sequence<I...>) {
    auto piece = [&]<std::size_t J>(std::integral_constant<std::size_t, J>) {
      if constexpr (std::is_same_v<std::tuple_element_t<J, std::tuple<Stages...>>, Gone>) return std::tuple<>();
      else return std::tuple(std::move(std::get<J>(stages)));
    };
    return detail::make_pipeline_from_tuple<Input>(std::tuple_cat(piece(std::integral_constant<std::size_t, I>{})...));
  }(std::index_sequence_for<Stages...>{});
}

//! `p` with `inserted` placed right before its stage of type Anchor.
template <class Anchor, class Input, class... Stages, class New>
[[nodiscard]] auto insert_before(Pipeline<Input, Stages...> p, New inserted) {
  return detail::insert_at<Anchor, false>(std::move(p), std::move(inserted));
}

//! `p` with `inserted` placed right after its stage of type Anchor (e.g. a filter after the reward stage).
template <class Anchor, class Input, class... Stages, class New>
[[nodiscard]] auto insert_after(Pipeline<Input, Stages...> p, New inserted) {
  return detail::insert_at<Anchor, true>(std::move(p), std::move(inserted));
}

}  // namespace verl
