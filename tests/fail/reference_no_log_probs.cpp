// expect: verl::ReferenceModel: the reference type has no member `log_probs\(const verl::TokenBatch&, const verl::LogProbOptions&\)`
// A reference model whose log_probs() forgets the options argument.
#include "verl/concepts/reference_model.hpp"

namespace {

struct Reference {
#if VERL_FAIL_TWIN
  verl::LogProbOutput log_probs(const verl::TokenBatch&, const verl::LogProbOptions&) const;
#else
  verl::LogProbOutput log_probs(const verl::TokenBatch&) const;
#endif
};

}  // namespace

static_assert(verl::check_reference_model<Reference>());
