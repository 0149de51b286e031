// expect: verl::RLAlgorithm: advantage<...> is given more than once
// Two advantage estimators in one property pack are rejected with a message naming the property.
#include "algorithm_test_types.hpp"

using namespace verl;
using namespace verl::test;

#if VERL_FAIL_TWIN
using Algo = TestPPO<advantage<GroupEstimator>, kl_loss<kl_estimator::k3>>;
#else
using Algo = TestPPO<advantage<GroupEstimator>, advantage<CriticEstimator>>;
#endif
static_assert(!Algo::needs_critic);
