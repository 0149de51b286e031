// Static tests of verl::CriticModel and its pieces (include/verl/concepts/critic_model.hpp).
#include "verl/concepts/critic_model.hpp"

#include <vector>

namespace {

struct GoodCritic {
  at::Tensor values(const verl::TokenBatch& batch);  // (B,R)
  std::vector<at::Tensor> parameters();
};
struct ConstCritic {
  at::Tensor values(verl::TokenBatch batch) const;
  std::vector<at::Tensor> parameters() const;
};
struct NoValues {
  std::vector<at::Tensor> parameters();
};
struct ValuesReturnDouble {
  double values(const verl::TokenBatch&);
  std::vector<at::Tensor> parameters();
};
struct ValuesNeedOptions {
  at::Tensor values(const verl::TokenBatch&, const verl::LogProbOptions&);
  std::vector<at::Tensor> parameters();
};
struct FrozenCritic {  // no parameters: can score, cannot be trained
  at::Tensor values(const verl::TokenBatch&);
};

}  // namespace

static_assert(verl::ComputesValues<GoodCritic>);
static_assert(verl::ComputesValues<ConstCritic>);
static_assert(verl::ComputesValues<FrozenCritic>);
static_assert(!verl::ComputesValues<NoValues>);
static_assert(!verl::ComputesValues<ValuesReturnDouble>);
static_assert(!verl::ComputesValues<ValuesNeedOptions>);

static_assert(verl::CriticModel<GoodCritic>);
static_assert(verl::CriticModel<ConstCritic>);
static_assert(verl::CriticModel<const ConstCritic>);
static_assert(!verl::CriticModel<const GoodCritic>);
static_assert(!verl::CriticModel<NoValues>);
static_assert(!verl::CriticModel<ValuesReturnDouble>);
static_assert(!verl::CriticModel<ValuesNeedOptions>);
static_assert(!verl::CriticModel<FrozenCritic>);
static_assert(!verl::CriticModel<int>);

static_assert(verl::check_critic_model<GoodCritic>());
static_assert(verl::check_critic_model<ConstCritic>());
