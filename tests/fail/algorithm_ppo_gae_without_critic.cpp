// expect: verl::ModelSet: this algorithm's advantage estimator reads values \(e.g. GAE\), so it needs a critic
// A trainer for PPO with a GAE-like estimator but no critic fails where the trainer's models are named.
#include "algorithm_test_types.hpp"

using namespace verl;
using namespace verl::test;

#if VERL_FAIL_TWIN
using Models = ModelSet<TestPPO<>, ActorType, CriticType>;
#else
using Models = ModelSet<TestPPO<>, ActorType, no_critic>;
#endif
static_assert(sizeof(Models) > 0);  // instantiates the checks
