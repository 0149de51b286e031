// expect: stage_needs_a_field_that_no_earlier_stage_produces<NeedsValues, verl::fields::values>
// A pipeline whose advantage stage runs before the stage that produces the values it reads does not compile;
// the diagnostic names the stage and the missing field. The twin puts the stages in the right order.
#include "verl/core/fields.hpp"
#include "verl/pipeline/pipeline.hpp"

using namespace verl::fields;

struct ProducesValues {
  static constexpr std::string_view name = "values";
  using needs = verl::field_list<input_ids>;
  using produces = verl::field_list<values>;
  template <class B>
  auto run(const B& batch, verl::StepContext&) {
    return verl::put<values>(batch, batch.template get<input_ids>());
  }
};

struct NeedsValues {
  static constexpr std::string_view name = "adv";
  using needs = verl::field_list<values>;
  using produces = verl::field_list<advantages>;
  template <class B>
  auto run(const B& batch, verl::StepContext&) {
    return verl::put<advantages>(batch, batch.template get<values>());
  }
};

#if VERL_FAIL_TWIN
using P = verl::Pipeline<verl::field_list<input_ids>, ProducesValues, NeedsValues>;
#else
using P = verl::Pipeline<verl::field_list<input_ids>, NeedsValues, ProducesValues>;
#endif
static_assert(P::num_stages == 2);
