// expect: verl::Batch: a field tag appears twice in the field list
// A batch type that lists a field twice is rejected at its declaration.
#include "verl/core/batch.hpp"
#include "verl/core/fields.hpp"

using namespace verl::fields;
#if VERL_FAIL_TWIN
using Twice = verl::Batch<input_ids, values>;
#else
using Twice = verl::Batch<input_ids, values, input_ids>;
#endif
constexpr auto n = Twice::num_fields;
