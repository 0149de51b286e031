#pragma once
//! \file
//! Every core contract of verl-cpp, with its checker (`verl::check_<concept>()`). See docs/concepts.md.
//!
//!   models      ReferenceModel <- ActorModel (ComputesLogProbs, Generates, HasParameters)
//!               CriticModel (ComputesValues, HasParameters)
//!               Reward = RewardModel || RewardFunction
//!               Tokenizer (EncodesText, DecodesTokens, HasSpecialTokens)
//!   collectives Communicator (KnowsRank, AllReduces, Broadcasts, AllGathers, HasBarrier)
//!   algorithms  AdvantageEstimator (NamedPolicy, DeclaresAdvantageNeeds, ComputesAdvantages)
//!               PolicyLoss (NamedPolicy, ComputesPolicyLoss)

#include "verl/concepts/actor_model.hpp"
#include "verl/concepts/advantage_estimator.hpp"
#include "verl/concepts/communicator.hpp"
#include "verl/concepts/critic_model.hpp"
#include "verl/concepts/has_parameters.hpp"
#include "verl/concepts/named_policy.hpp"
#include "verl/concepts/policy_loss.hpp"
#include "verl/concepts/reference_model.hpp"
#include "verl/concepts/reward_model.hpp"
#include "verl/concepts/tokenizer.hpp"
