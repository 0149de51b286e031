#pragma once
//! \file
//! The bridge from verl::rewards::RewardManager (rule functions, reward models, weighted combinations; verl's
//! NaiveRewardManager) to the Score stage's Scorer: the manager decodes the valid response tokens, scores each
//! item and places the score on its last valid token; its per-key means are recorded as reward/<key>/mean, and
//! the per-item values go to ScoreRequest::reward_extra_info when it asks (validation).

#include "verl/pipeline/rl_stages.hpp"
#include "verl/rewards/reward_manager.hpp"

#include <memory>
#include <utility>

namespace verl::stages {

//! A Scorer that runs `manager` (shared: copies of the scorer, e.g. in an edited pipeline, use one manager).
template <class R>
[[nodiscard]] Scorer scorer_of(std::shared_ptr<rewards::RewardManager<R>> manager) {
  return [m = std::move(manager)](const ScoreRequest& r, StepContext& ctx) {
    rewards::RewardBatch batch{r.responses, r.response_mask, r.items,
                               TokenBatch{r.input_ids, r.attention_mask, r.position_ids, r.responses.size(1)}};
    auto result = (*m)(batch);
    for (const auto& [name, value] : result.metrics) ctx.record(name, value);
    if (r.reward_extra_info != nullptr) {
      for (auto& [key, values] : result.reward_extra_info) (*r.reward_extra_info)[key] = std::move(values);
    }
    return result.token_level_scores;
  };
}

//! A Scorer over `reward` (a verl::RewardFunction, a reward model or a rewards::combine(...)) decoding with
//! `tokenizer`, which must outlive the scorer.
template <class R, class Tok>
[[nodiscard]] Scorer scorer_of(R reward, const Tok& tokenizer, rewards::RewardManagerOptions options = {}) {
  return scorer_of(std::make_shared<rewards::RewardManager<R>>(std::move(reward), tokenizer, std::move(options)));
}

}  // namespace verl::stages
