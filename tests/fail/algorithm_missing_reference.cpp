// expect: verl::ModelSet: this algorithm regularises a KL to the reference policy
// GRPO-style KL loss without a reference model fails to compile with the fix in the message.
#include "algorithm_test_types.hpp"

using namespace verl;
using namespace verl::test;

using Algo = TestPPO<advantage<GroupEstimator>, kl_loss<kl_estimator::k3>>;
#if VERL_FAIL_TWIN
using Models = ModelSet<Algo, ActorType, no_critic, ReferenceType>;
#else
using Models = ModelSet<Algo, ActorType>;
#endif
static_assert(!Models::has_critic);
