// Static tests of verl::NamedPolicy and verl::AdvantageEstimator and its pieces
// (include/verl/concepts/named_policy.hpp, include/verl/concepts/advantage_estimator.hpp).
#include "verl/concepts/advantage_estimator.hpp"

namespace {

struct GaeLike {
  static constexpr std::string_view name = "gae";
  static constexpr bool needs_critic = true;
  static constexpr bool needs_groups = false;
  verl::AdvantageOutput compute(const verl::AdvantageInputs& in) const;
};
struct GrpoLike {  // static compute, const char* name
  static constexpr const char* name = "grpo";
  static constexpr bool needs_critic = false;
  static constexpr bool needs_groups = true;
  static verl::AdvantageOutput compute(const verl::AdvantageInputs& in);
};
struct NoNeedsCritic {
  static constexpr std::string_view name = "x";
  static constexpr bool needs_groups = true;
  verl::AdvantageOutput compute(const verl::AdvantageInputs&) const;
};
struct IntFlags {  // flags must be bool, not int
  static constexpr std::string_view name = "x";
  static constexpr int needs_critic = 0;
  static constexpr int needs_groups = 1;
  verl::AdvantageOutput compute(const verl::AdvantageInputs&) const;
};
struct RuntimeFlags {  // flags must be constant expressions
  static constexpr std::string_view name = "x";
  static bool needs_critic;
  static bool needs_groups;
  verl::AdvantageOutput compute(const verl::AdvantageInputs&) const;
};
struct RuntimeName {
  static std::string_view name;
  static constexpr bool needs_critic = false;
  static constexpr bool needs_groups = false;
  verl::AdvantageOutput compute(const verl::AdvantageInputs&) const;
};
struct NonConstCompute {
  static constexpr std::string_view name = "x";
  static constexpr bool needs_critic = false;
  static constexpr bool needs_groups = false;
  verl::AdvantageOutput compute(const verl::AdvantageInputs&);
};
struct ComputeReturnsTensor {
  static constexpr std::string_view name = "x";
  static constexpr bool needs_critic = false;
  static constexpr bool needs_groups = false;
  at::Tensor compute(const verl::AdvantageInputs&) const;
};
struct NoName {
  static constexpr bool needs_critic = false;
  static constexpr bool needs_groups = false;
  verl::AdvantageOutput compute(const verl::AdvantageInputs&) const;
};

}  // namespace

static_assert(verl::NamedPolicy<GaeLike>);
static_assert(verl::NamedPolicy<GrpoLike>);
static_assert(!verl::NamedPolicy<RuntimeName>);
static_assert(!verl::NamedPolicy<NoName>);
static_assert(!verl::NamedPolicy<int>);

static_assert(verl::DeclaresAdvantageNeeds<GaeLike>);
static_assert(verl::DeclaresAdvantageNeeds<GrpoLike>);
static_assert(!verl::DeclaresAdvantageNeeds<NoNeedsCritic>);
static_assert(!verl::DeclaresAdvantageNeeds<IntFlags>);
static_assert(!verl::DeclaresAdvantageNeeds<RuntimeFlags>);

static_assert(verl::ComputesAdvantages<GaeLike>);
static_assert(verl::ComputesAdvantages<GrpoLike>);
static_assert(!verl::ComputesAdvantages<NonConstCompute>);
static_assert(!verl::ComputesAdvantages<ComputeReturnsTensor>);

static_assert(verl::AdvantageEstimator<GaeLike>);
static_assert(verl::AdvantageEstimator<GrpoLike>);
static_assert(!verl::AdvantageEstimator<NoNeedsCritic>);
static_assert(!verl::AdvantageEstimator<IntFlags>);
static_assert(!verl::AdvantageEstimator<RuntimeFlags>);
static_assert(!verl::AdvantageEstimator<RuntimeName>);
static_assert(!verl::AdvantageEstimator<NonConstCompute>);
static_assert(!verl::AdvantageEstimator<ComputeReturnsTensor>);
static_assert(!verl::AdvantageEstimator<NoName>);

static_assert(verl::check_advantage_estimator<GaeLike>());
static_assert(verl::check_advantage_estimator<GrpoLike>());

// The flags are usable where a trainer decides at compile time.
static_assert(GaeLike::needs_critic && !GrpoLike::needs_critic);
