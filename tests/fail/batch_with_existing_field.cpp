// expect: verl::Batch::with<F>: the batch type already has field F; use batch.set<F>
// Adding a field the batch already has would silently shadow it; the fix is named in the message.
#include "verl/core/batch.hpp"
#include "verl/core/fields.hpp"

using namespace verl::fields;

auto add_values(const verl::Batch<input_ids, values>& batch, at::Tensor v) {
#if VERL_FAIL_TWIN
  return batch.with<advantages>(v);
#else
  return batch.with<values>(v);
#endif
}
