// expect: verl::Batch::get<F>: the batch type has no field F
// Reading a field that no stage produced is a compile error naming the problem and the fix.
#include "verl/core/batch.hpp"
#include "verl/core/fields.hpp"

using namespace verl::fields;

at::Tensor read_values(const verl::Batch<input_ids, attention_mask, values>& with_values,
                       const verl::Batch<input_ids, attention_mask>& without_values) {
#if VERL_FAIL_TWIN
  (void)without_values;
  return with_values.get<values>();
#else
  (void)with_values;
  return without_values.get<values>();
#endif
}
