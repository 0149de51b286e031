#pragma once
//! \file
//! The validation pass of the PPO-family trainers (verl 0.7.1 RayPPOTrainer._validate and _val_metrics_update):
//! every prompt of a validation data source is answered `params.n` times (verl's rollout.val_kwargs: greedy
//! by default), each response is scored by the trainer's Scorer, and the per-sample values ("reward": the
//! response's summed token-level score, plus whatever per-item extra values the scorer reports, e.g. "acc" of
//! the math rules) are grouped by data source and prompt into verl's metric names:
//!
//!     auto val = verl::trainer::run_validation(actor, scorer, val_provider, verl::trainer::validation_sampling(rollout));
//!     val.metrics;   // {"val-core/openai/gsm8k/acc/mean@1": 0.31, "val-aux/openai/gsm8k/reward/mean@1": 0.31, ...}
//!     val.samples;   // per response: data source, prompt uid, prompt text, response tokens, score
//!
//! A sample without ItemInfo belongs to data source "unknown" (verl's default).

#include "verl/concepts/actor_model.hpp"
#include "verl/core/errors.hpp"
#include "verl/core/item_info.hpp"
#include "verl/core/model_io.hpp"
#include "verl/pipeline/rl_stages.hpp"
#include "verl/pipeline/stage.hpp"
#include "verl/trainer/data_metrics.hpp"

#include <ATen/ops/arange.h>
#include <c10/core/GradMode.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace verl::trainer {

//! One validation response.
struct ValidationSample {
  std::string data_source;             //!< the item's data_source ("unknown" without ItemInfo)
  std::int64_t prompt_index = 0;       //!< the prompt's position in the validation pass (verl's uid)
  std::string prompt;                  //!< the item's prompt text (empty without ItemInfo)
  std::vector<std::int64_t> response;  //!< the valid response tokens
  double score = 0;                    //!< the summed token-level score (verl's "reward")
};

//! What a validation pass measured.
struct ValidationResult {
  MetricMap metrics;                      //!< verl's val-core/ and val-aux/ metrics, plus timing_s/testing
  std::vector<ValidationSample> samples;  //!< every response, in generation order
};

//! verl's rollout.val_kwargs over the training rollout's settings: n, top-k/top-p, and greedy decoding unless
//! do_sample (then `temperature`). Length limits, stop tokens and the seed stay the rollout's.
[[nodiscard]] inline SamplingParams validation_sampling(SamplingParams rollout, std::int64_t n = 1, bool do_sample = false,
                                                        double temperature = 0.0, double top_p = 1.0,
                                                        std::int64_t top_k = -1) {
  rollout.n = n;
  rollout.temperature = do_sample ? temperature : 0.0;
  rollout.top_p = top_p;
  rollout.top_k = top_k <= 0 ? -1 : top_k;
  rollout.validate();
  return rollout;
}

//! Runs the validation pass over every batch `provider.next()` returns until it returns nullopt (build the
//! provider for one epoch without shuffling or dropping: verl::data::DataProviderOptions{.drop_last = false,
//! .epochs = 1}). The provider's batches carry `prompts` (verl::Prompts) and `items`, as in PPOTrainer::fit.
//! \throws verl::InputError when the scorer reports a different set of extra keys for different batches.
template <ActorModel Actor, class Provider>
[[nodiscard]] ValidationResult run_validation(Actor& actor, const stages::Scorer& scorer, Provider& provider,
                                              const SamplingParams& params) {
  using namespace verl::fields;
  const auto start = std::chrono::steady_clock::now();
  const c10::NoGradGuard no_grad;
  ValidationResult result;
  std::vector<std::string> data_sources, uids;
  std::map<std::string, std::vector<double>> infos;  // variable -> one value per sample
  std::int64_t next_prompt = 0;
  std::size_t batch_index = 0;
  while (auto batch = provider.next()) {
    const Prompts& p = batch->prompts;
    const auto b = p.input_ids.size(0);
    const Rollout r = actor.generate(p, params);
    r.validate();
    const auto rows = r.responses.size(0);
    verl::detail::check<InputError>(rows == b * params.n, "verl::trainer::run_validation: generate returned ", rows,
                                    " responses for ", b, " prompts with n = ", params.n, ", expected ", b * params.n);
    const auto& items = batch->items;
    verl::detail::check<InputError>(items.empty() || static_cast<std::int64_t>(items.size()) == b,
                                    "verl::trainer::run_validation: validation batch ", batch_index, " has ",
                                    items.size(), " items for ", b, " prompts, expected one per prompt or none");
    std::vector<ItemInfo> repeated;  // the items of the samples: each prompt's n times, adjacent
    if (!items.empty()) {
      repeated.reserve(static_cast<std::size_t>(rows));
      for (const auto& item : items)
        for (std::int64_t k = 0; k < params.n; ++k) repeated.push_back(item);
    }
    std::map<std::string, std::vector<double>, std::less<>> extra;
    StepContext ctx;
    stages::ScoreRequest request{r.prompts,     r.responses,      r.response_mask, r.input_ids,
                                 r.attention_mask, r.position_ids, std::span<const ItemInfo>(repeated), &extra};
    const at::Tensor scores = scorer(request, ctx).sum(-1).to(at::kDouble).contiguous();  // (rows,)
    const double* s = scores.data_ptr<double>();
    const auto mask_cpu = r.response_mask.to(at::kCPU).to(at::kBool).contiguous();  // (rows,R)
    const auto tokens_cpu = r.responses.to(at::kCPU).to(at::kLong).contiguous();    // (rows,R)
    const auto mask = mask_cpu.accessor<bool, 2>();
    const auto tokens = tokens_cpu.accessor<std::int64_t, 2>();
    // verl checks that every variable has one value per sample; a key a batch leaves out would misalign them.
    if (batch_index > 0) {
      for (const auto& [key, _] : infos) {
        verl::detail::check<InputError>(key == "reward" || extra.contains(key), "verl::trainer::run_validation: "
                                        "the scorer reported the extra key \"", key, "\" for earlier batches but "
                                        "not for batch ", batch_index, "; every batch must report the same keys");
      }
    }
    for (const auto& [key, values] : extra) {
      verl::detail::check<InputError>(static_cast<std::int64_t>(values.size()) == rows,
                                      "verl::trainer::run_validation: the scorer's extra key \"", key, "\" has ",
                                      values.size(), " values for ", rows, " responses, expected one per response");
      verl::detail::check<InputError>(batch_index == 0 || infos.contains(key), "verl::trainer::run_validation: the "
                                      "scorer reported the extra key \"", key, "\" for batch ", batch_index,
                                      " but not for earlier batches; every batch must report the same keys");
      auto& dst = infos[key];
      dst.insert(dst.end(), values.begin(), values.end());
    }
    auto& reward = infos["reward"];
    for (std::int64_t i = 0; i < rows; ++i) {
      ValidationSample sample;
      sample.prompt_index = next_prompt + i / params.n;
      if (!repeated.empty()) {
        sample.data_source = repeated[static_cast<std::size_t>(i)].data_source;
        sample.prompt = repeated[static_cast<std::size_t>(i)].prompt;
      }
      if (sample.data_source.empty()) sample.data_source = "unknown";
      for (std::int64_t t = 0; t < tokens.size(1); ++t)
        if (mask[i][t]) sample.response.push_back(tokens[i][t]);
      sample.score = s[i];
      reward.push_back(s[i]);
      data_sources.push_back(sample.data_source);
      uids.push_back(std::to_string(sample.prompt_index));
      result.samples.push_back(std::move(sample));
    }
    next_prompt += b;
    ++batch_index;
  }
  verl::detail::check<InputError>(batch_index > 0, "verl::trainer::run_validation: the validation provider returned "
                                  "no batch; expected at least one (is the validation dataset empty?)");
  result.metrics = validation_metrics(data_sources, uids, infos);
  result.metrics["timing_s/testing"] =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result;
}

}  // namespace verl::trainer
