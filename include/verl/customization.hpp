#pragma once
//! \file
//! The catalogue of verl-cpp's extension points: every place where a user's own type plugs in, what it must
//! satisfy, and the header that defines the contract. Including this header brings in those contracts.
//! docs/extending.md walks through them with the worked example examples/01_custom_algorithm.cpp.
//!
//! | to add                     | write                                                   | contract (header)                          |
//! |----------------------------|---------------------------------------------------------|--------------------------------------------|
//! | a batch field              | `struct f : verl::field<"f", verl::FieldLayout::...> {};` | verl::FieldTag (core/field.hpp)           |
//! | a policy model             | a type with log_probs, generate, parameters             | verl::ActorModel (concepts/actor_model.hpp) |
//! | a reference model          | a type with log_probs                                   | verl::ReferenceModel (concepts/reference_model.hpp) |
//! | a critic                   | a type with values, parameters                          | verl::CriticModel (concepts/critic_model.hpp) |
//! | a reward                   | a model with score(TokenBatch), or a callable on RewardInput | verl::Reward (concepts/reward_model.hpp) |
//! | a tokenizer                | encode, decode, eos/pad ids, vocab_size                 | verl::Tokenizer (concepts/tokenizer.hpp)   |
//! | a communication backend    | rank, world_size and the collectives                    | verl::Communicator (concepts/communicator.hpp) |
//! | an advantage estimator     | name, needs_critic, needs_groups, compute(AdvantageInputs) | verl::AdvantageEstimator (concepts/advantage_estimator.hpp) |
//! | a policy loss              | name, compute(PolicyLossInputs)                         | verl::PolicyLoss (concepts/policy_loss.hpp) |
//! | a KL estimator             | a tag with a constant name                              | verl::KLEstimatorTag (algos/algorithm.hpp) |
//! | a whole RL algorithm       | a defaults struct + `verl::RLAlgorithm<Defaults, Properties...>` | verl::RLAlgorithm (algos/algorithm.hpp) |
//!
//! Each contract has a checker (`verl::check_actor_model<M>()`, ...) that turns a mismatch into one
//! static_assert line naming the missing member and the fix; library templates call them, and so can users.

#include "verl/algos/algorithm.hpp"
#include "verl/concepts/concepts.hpp"
#include "verl/core/field.hpp"
