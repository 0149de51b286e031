// verl/algos/algorithm.hpp: property packs resolve in any order, omitted properties take the defaults, and an
// algorithm's needs (critic, reference, groups) are compile-time facts (compiling is passing).
#include "algorithm_test_types.hpp"

#include <type_traits>

using namespace verl;
using namespace verl::test;

// Defaults.
using Plain = TestPPO<>;
static_assert(std::is_same_v<Plain::estimator, CriticEstimator>);
static_assert(Plain::needs_critic && !Plain::needs_reference && !Plain::needs_groups);
static_assert(Plain::loss_agg_mode == LossAggMode::token_mean && Plain::entropy_coeff == 0.0);
static_assert(Plain::name == "test_ppo");

// Overrides in any order give the same algorithm.
using A = TestPPO<advantage<GroupEstimator>, kl_loss<kl_estimator::k3>, entropy_coeff<0.001>>;
using B = TestPPO<entropy_coeff<0.001>, kl_loss<kl_estimator::k3>, advantage<GroupEstimator>>;
static_assert(std::is_same_v<A::estimator, B::estimator> && std::is_same_v<A::kl, B::kl>);
static_assert(!A::needs_critic && A::needs_groups && A::needs_reference && A::kl_as_loss && !A::kl_in_reward);
static_assert(A::entropy_coeff == 0.001 && B::entropy_coeff == 0.001);

using WithRewardKL = TestPPO<kl_in_reward<kl_estimator::k1, adaptive_kl>, loss_agg<LossAggMode::seq_mean_token_sum_norm>>;
static_assert(WithRewardKL::kl_in_reward && WithRewardKL::needs_reference);
static_assert(std::is_same_v<WithRewardKL::kl::controller, adaptive_kl>);
static_assert(WithRewardKL::kl::estimator::name == "kl");
static_assert(WithRewardKL::loss_agg_mode == LossAggMode::seq_mean_token_sum_norm);

// ModelSet accepts exactly the models an algorithm needs.
static_assert(ModelSet<Plain, ActorType, CriticType>::has_critic);
static_assert(!ModelSet<A, ActorType, no_critic, ReferenceType>::has_critic);
static_assert(ModelSet<A, ActorType, no_critic, ReferenceType>::has_reference);
static_assert(is_rl_algorithm_v<A> && !is_rl_algorithm_v<int>);
