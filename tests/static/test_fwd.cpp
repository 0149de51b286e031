// include/verl/fwd.hpp: the forward declarations agree with the definitions (a mismatch, e.g. a different
// template head for Batch, is a redeclaration error here), and fwd.hpp alone pulls in no LibTorch.
#include "verl/fwd.hpp"

#ifdef AT_ASSERT
#error "verl/fwd.hpp must not include LibTorch"
#endif

#include "verl/core/batch.hpp"
#include "verl/core/errors.hpp"
#include "verl/core/fields.hpp"

static_assert(verl::FieldTag<verl::fields::values>);
static_assert(std::is_base_of_v<verl::Error, verl::ShapeError>);
static_assert(verl::is_batch_v<verl::Batch<verl::fields::values>>);
static_assert(!verl::is_batch_v<int>);
