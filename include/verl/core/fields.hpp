#pragma once
//! \file
//! The standard field tags of the RL dataflow, named as in verl's DataProto. Shapes use B = batch size,
//! T = prompt + response length, P = prompt length, R = response length.

#include "verl/core/field.hpp"

namespace verl::fields {

// Model inputs.
struct input_ids : field<"input_ids"> {};            //!< (B,T) int64, prompt (left-padded) ++ response
struct attention_mask : field<"attention_mask"> {};  //!< (B,T) int64/bool, 1 on real tokens
struct position_ids : field<"position_ids"> {};      //!< (B,T) int64, cumulative sum of the mask, minus 1

// Rollout outputs.
struct prompts : field<"prompts"> {};              //!< (B,P) int64, left-padded prompt tokens
struct responses : field<"responses"> {};          //!< (B,R) int64, right-padded generated tokens
struct response_mask : field<"response_mask"> {};  //!< (B,R), 1 on tokens that count in losses
struct rollout_log_probs : field<"rollout_log_probs"> {};  //!< (B,R) float, the sampler's log-probs (0 on padding)

// Scores of the rollout under the models.
struct old_log_probs : field<"old_log_probs"> {};  //!< (B,R) float, behaviour policy log-probs
struct ref_log_probs : field<"ref_log_probs"> {};  //!< (B,R) float, reference policy log-probs
struct values : field<"values"> {};                //!< (B,R) float, critic values

// Rewards and their transforms.
struct token_level_scores : field<"token_level_scores"> {};    //!< (B,R) float, reward-model/function scores
struct token_level_rewards : field<"token_level_rewards"> {};  //!< (B,R) float, scores minus KL penalty
struct advantages : field<"advantages"> {};                    //!< (B,R) float
struct returns : field<"returns"> {};                          //!< (B,R) float
//! (B,) float, a per-item reward baseline, e.g. ReMax's reward of the greedy response to the item's prompt
struct reward_baselines : field<"reward_baselines", FieldLayout::sequence> {};

// Grouping.
struct uid : field<"uid", FieldLayout::sequence> {};  //!< (B,) int64, the prompt (group) each item samples

}  // namespace verl::fields
