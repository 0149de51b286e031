// verl/algos/preference.hpp: the offline algorithm types carry their needs at compile time (compiling is
// passing).
#include "algorithm_test_types.hpp"
#include "verl/algos/pref/pref.hpp"
#include "verl/algos/preference.hpp"

using namespace verl;

static_assert(DPO<>::needs_reference && DPO<>::loss_type == pref::DPOLossType::sigmoid);
static_assert(!DPO<pref::DPOLossType::ipo, reference_free>::needs_reference);
static_assert(KTO<>::needs_reference && KTO<pref::KTOLossType::apo_zero_unpaired>::loss_type ==
                                            pref::KTOLossType::apo_zero_unpaired);
static_assert(!SimPO::needs_reference && !ORPO::needs_reference && !SFT::needs_reference);
static_assert(OfflineAlgorithm<DPO<>> && OfflineAlgorithm<SFT> && !OfflineAlgorithm<int>);
static_assert(!OfflineAlgorithm<test::TestPPO<>>);  // an RL algorithm needs a rollout: not offline

using DPOModels = OfflineModelSet<DPO<>, test::ActorType, test::ReferenceType>;
using SimPOModels = OfflineModelSet<SimPO, test::ReferenceType>;  // any log-prob model can be the policy
static_assert(std::is_same_v<DPOModels::reference_type, test::ReferenceType>);
static_assert(std::is_same_v<SimPOModels::reference_type, no_reference>);
