// Static tests of verl::PolicyLoss and its pieces (include/verl/concepts/policy_loss.hpp) and of
// LossAggMode's spelling (include/verl/core/algo_io.hpp).
#include "verl/concepts/policy_loss.hpp"

namespace {

struct VanillaLike {
  static constexpr std::string_view name = "vanilla";
  verl::PolicyLossOutput compute(const verl::PolicyLossInputs& in) const;
};
struct StaticLoss {
  static constexpr std::string_view name = "gspo";
  static verl::PolicyLossOutput compute(const verl::PolicyLossInputs& in);
};
struct NoCompute {
  static constexpr std::string_view name = "x";
};
struct ComputeReturnsTensor {
  static constexpr std::string_view name = "x";
  at::Tensor compute(const verl::PolicyLossInputs&) const;  // the loss alone, without metrics
};
struct ComputeTakesAdvantageInputs {
  static constexpr std::string_view name = "x";
  verl::PolicyLossOutput compute(const verl::AdvantageInputs&) const;
};
struct NoName {
  verl::PolicyLossOutput compute(const verl::PolicyLossInputs&) const;
};

}  // namespace

static_assert(verl::ComputesPolicyLoss<VanillaLike>);
static_assert(verl::ComputesPolicyLoss<StaticLoss>);
static_assert(!verl::ComputesPolicyLoss<NoCompute>);
static_assert(!verl::ComputesPolicyLoss<ComputeReturnsTensor>);
static_assert(!verl::ComputesPolicyLoss<ComputeTakesAdvantageInputs>);

static_assert(verl::PolicyLoss<VanillaLike>);
static_assert(verl::PolicyLoss<StaticLoss>);
static_assert(!verl::PolicyLoss<NoCompute>);
static_assert(!verl::PolicyLoss<ComputeReturnsTensor>);
static_assert(!verl::PolicyLoss<ComputeTakesAdvantageInputs>);
static_assert(!verl::PolicyLoss<NoName>);

static_assert(verl::check_policy_loss<VanillaLike>());
static_assert(verl::check_policy_loss<StaticLoss>());

static_assert(verl::to_string(verl::LossAggMode::token_mean) == "token-mean");
static_assert(verl::to_string(verl::LossAggMode::seq_mean_token_sum_norm) == "seq-mean-token-sum-norm");
