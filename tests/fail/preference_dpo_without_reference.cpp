// expect: verl::OfflineModelSet: this algorithm compares against a reference policy \(DPO, KTO\), so it needs a reference model
// DPO with a reference (the default) but no reference model given fails with the fix in the message.
#include "algorithm_test_types.hpp"
#include "verl/algos/preference.hpp"

using namespace verl;

#if VERL_FAIL_TWIN
using Models = OfflineModelSet<DPO<pref::DPOLossType::ipo, reference_free>, test::ActorType>;
#else
using Models = OfflineModelSet<DPO<pref::DPOLossType::ipo>, test::ActorType>;
#endif
static_assert(sizeof(Models) > 0);  // instantiates the checks
