#pragma once
//! \file
//! The standard stages of the RL dataflow (verl's RayPPOTrainer.fit, 0.7.1), in namespace verl::stages:
//!
//!   Generate          prompts -> n responses per prompt, their sampler log-probs, a uid    timing_s/gen
//!   GreedyBaseline    ReMax: reward of the greedy response of each prompt -> reward_baselines
//!   Score             rule functions / reward models -> token_level_scores                 timing_s/reward
//!   ReferenceLogProbs the reference policy's log-probs -> ref_log_probs                    timing_s/ref
//!   OldLogProbs       the behaviour policy's log-probs -> old_log_probs (+ actor/entropy)  timing_s/old_log_prob
//!                     (bypass mode: the sampler's rollout_log_probs, no forward pass)
//!   Values            the critic's values -> values                                        timing_s/values
//!   RewardKL          token_level_scores - beta * KL -> token_level_rewards (or a copy)    timing_s/kl
//!   Advantage<E>      estimator E -> advantages, returns                                   timing_s/adv
//!   UpdateCritic      critic optimizer steps                                               timing_s/update_critic
//!   UpdateActor       actor optimizer steps (skipped during critic warm-up)                timing_s/update_actor
//!
//! Stages hold pointers to the models and optimizers they use (the trainer owns those). Each declares the
//! fields it needs and produces, so verl::Pipeline checks a composition at compile time.

#include "verl/algos/advantages.hpp"
#include "verl/algos/kl.hpp"
#include "verl/algos/loss_agg.hpp"
#include "verl/concepts/actor_model.hpp"
#include "verl/concepts/advantage_estimator.hpp"
#include "verl/concepts/critic_model.hpp"
#include "verl/concepts/reference_model.hpp"
#include "verl/core/batch.hpp"
#include "verl/core/fields.hpp"
#include "verl/core/model_io.hpp"
#include "verl/pipeline/stage.hpp"
#include "verl/trainer/ppo_update.hpp"
#include "verl/trainer/progress_bar.hpp"

#include <ATen/TensorOperators.h>
#include <ATen/ops/arange.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/zeros_like.h>
#include <c10/core/GradMode.h>

#include <functional>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace verl::stages {

using namespace verl::fields;

//! The fields of a prompt batch, the input of the RL pipelines.
using prompt_fields = field_list<input_ids, attention_mask, position_ids>;
//! The fields of a rollout, as the reward and scoring stages read them.
using rollout_fields = field_list<prompts, responses, response_mask, input_ids, attention_mask, position_ids, uid>;
//! The fields Generate adds: the rollout and the sampler's log-probs of its tokens (verl's rollout_log_probs).
using generated_fields = concat_fields_t<rollout_fields, field_list<rollout_log_probs>>;
//! The fields a stage scoring the responses with a model reads.
using scoring_fields = field_list<input_ids, attention_mask, position_ids, responses>;

//! What a Score stage's scorer sees: the rollout's tensors and per-item data (views, valid during the call).
struct ScoreRequest {
  at::Tensor prompts;         //!< (B,P) int64
  at::Tensor responses;       //!< (B,R) int64
  at::Tensor response_mask;   //!< (B,R)
  at::Tensor input_ids;       //!< (B,T) int64
  at::Tensor attention_mask;  //!< (B,T)
  at::Tensor position_ids;    //!< (B,T)
  std::span<const ItemInfo> items;  //!< one per item (empty when the batch carries none)
  //! Where a scorer may put per-item extra values (e.g. "acc"; verl's reward_extra_info), one value per item
  //! and key; null when nobody asks (training steps). Validation asks, for its per-data-source metrics.
  std::map<std::string, std::vector<double>, std::less<>>* reward_extra_info = nullptr;
};
//! A scorer: returns token_level_scores (B,R) float (the score on each response's last valid token) and may
//! record metrics (e.g. per-term rewards) in the context. See verl/rewards/reward_manager.hpp.
using Scorer = std::function<at::Tensor(const ScoreRequest&, StepContext&)>;

namespace detail {
template <class B>
ScoreRequest score_request_of(const B& batch) {
  return ScoreRequest{batch.template get<prompts>(),        batch.template get<responses>(),
                      batch.template get<response_mask>(),  batch.template get<input_ids>(),
                      batch.template get<attention_mask>(), batch.template get<position_ids>(),
                      std::span<const ItemInfo>(batch.items())};
}

//! Runs `fn(micro)` over slices of `micro_batch_size` items without gradient and concatenates the (b,R) results.
template <class B, class Fn>
at::Tensor no_grad_micro_batched(const B& batch, std::int64_t micro_batch_size, Fn&& fn) {
  const c10::NoGradGuard no_grad;
  std::vector<at::Tensor> parts;
  for (auto micro : batch.split(std::max<std::int64_t>(micro_batch_size, 1))) parts.push_back(fn(micro));
  return parts.size() == 1 ? parts.front() : at::cat(parts, 0);
}
}  // namespace detail

// ---------------------------------------------------------------------------------------------------------

//! Samples `params.n` responses per prompt with the actor's generate() (verl: generate_sequences). The output
//! has the prompt batch's items and extra fields repeated n times (samples of one prompt adjacent, verl's
//! repeat(interleave=True)), the full sequences as input_ids/attention_mask/position_ids, and a uid per prompt
//! that keeps increasing across steps. With a seed in `params`, call k samples with seed + next_uid (the
//! number of prompts generated before it), so steps differ and a resumed run draws what the original would.
//! The actor is always asked for the sampler's log-probs (SamplingParams::return_log_probs; one log_softmax
//! per decode step): they become `rollout_log_probs`, which OldLogProbs uses in bypass mode.
template <ActorModel Actor>
struct Generate {
  static constexpr std::string_view name = "gen";
  using needs = prompt_fields;
  using produces = generated_fields;

  Actor* actor;
  SamplingParams params;
  std::int64_t next_uid = 0;
  //! A console bar over the finished responses of each rollout (desc and total filled in); for actors with
  //! set_rollout_progress (verl::models::Actor). Off by default; the trainer shows it on a terminal.
  trainer::ProgressBarOptions progress_bar{.show = trainer::ProgressBarOptions::Show::never};

  template <BatchWith<input_ids, attention_mask, position_ids> B>
  auto run(const B& batch, StepContext& ctx) {
    const c10::NoGradGuard no_grad;
    const Prompts p{batch.template get<input_ids>(), batch.template get<attention_mask>(),
                    batch.template get<position_ids>()};
    SamplingParams call_params = params;
    if (call_params.seed) *call_params.seed += static_cast<std::uint64_t>(next_uid);
    call_params.return_log_probs = true;
    const auto b = batch.size();
    const Rollout r = generate_with_progress(p, call_params, b * params.n);
    r.validate();
    verl::detail::check<ConfigError>(r.log_probs.has_value(), "verl::stages::Generate: the actor's generate() "
                                     "returned no log_probs although SamplingParams::return_log_probs was set "
                                     "(the ActorModel contract: Rollout::log_probs is set iff it is asked for)");
    const auto uids = at::arange(next_uid, next_uid + b, at::kLong).repeat_interleave(params.n);  // (B*n,)
    next_uid += b;
    auto out = batch.repeat_interleave(params.n);
    out.template set<input_ids>(r.input_ids);
    out.template set<attention_mask>(r.attention_mask);
    out.template set<position_ids>(r.position_ids);
    ctx.record("rollout/num_sequences", static_cast<double>(r.responses.size(0)));
    return put<rollout_log_probs>(
        put<uid>(put<response_mask>(put<responses>(put<prompts>(out, r.prompts), r.responses), r.response_mask), uids),
        *r.log_probs);
  }

 private:
  Rollout generate_with_progress(const Prompts& p, const SamplingParams& call_params, std::int64_t samples) {
    if constexpr (requires { actor->set_rollout_progress(nullptr); }) {
      if (progress_bar.show != trainer::ProgressBarOptions::Show::never) {
        trainer::ProgressBarOptions o = progress_bar;
        o.desc = "rollout";
        o.total = samples;
        o.unit = "seq";
        trainer::ProgressBar bar(o);
        actor->set_rollout_progress([&bar](const auto& progress) { bar.advance(progress.finished_samples - bar.n()); });
        struct Unhook {  // the callback refers to `bar`: remove it however generate() ends
          Actor* a;
          ~Unhook() { a->set_rollout_progress(nullptr); }
        } unhook{actor};
        return actor->generate(p, call_params);
      }
    }
    return actor->generate(p, call_params);
  }
};

//! ReMax's baseline (verl: the REMAX branch of fit): the greedy response to each prompt is generated and scored;
//! its total reward, repeated over the prompt's n samples, becomes reward_baselines. Place after Generate.
template <ActorModel Actor>
struct GreedyBaseline {
  static constexpr std::string_view name = "gen_max";
  using needs = field_list<prompts, attention_mask, responses, uid>;
  using produces = field_list<reward_baselines>;

  Actor* actor;
  SamplingParams params;  //!< the rollout's; n and temperature are overridden (1, greedy)
  Scorer scorer;

  template <BatchWith<prompts, attention_mask, responses, uid> B>
  auto run(const B& batch, StepContext& ctx) {
    const c10::NoGradGuard no_grad;
    const auto& uids = batch.template get<uid>();
    // One row per prompt: the first of each run of equal uids (samples of a prompt are adjacent).
    const auto first = at::cat({at::ones({1}, at::kBool), uids.slice(0, 1).ne(uids.slice(0, 0, -1))});  // (N,)
    const auto rows = first.nonzero().squeeze(1);                                                          // (B,)
    const auto group_size = batch.size() / rows.size(0);
    const auto p = batch.template get<prompts>().index_select(0, rows);                                    // (B,P)
    const auto pmask = batch.template get<attention_mask>().index_select(0, rows).narrow(1, 0, p.size(1));  // (B,P)
    const Prompts prompts_in{p, pmask, (pmask.cumsum(1) - 1).clamp_min(0)};
    SamplingParams greedy = params;
    greedy.n = 1;
    greedy.temperature = 0.0;
    const Rollout r = actor->generate(prompts_in, greedy);
    std::vector<ItemInfo> items;
    if (!batch.items().empty()) {
      const auto rows_cpu = rows.to(at::kCPU).contiguous();
      for (std::int64_t i = 0; i < rows_cpu.size(0); ++i)
        items.push_back(batch.items()[static_cast<std::size_t>(rows_cpu.template data_ptr<std::int64_t>()[i])]);
    }
    const ScoreRequest req{r.prompts, r.responses, r.response_mask, r.input_ids, r.attention_mask, r.position_ids,
                           std::span<const ItemInfo>(items)};
    const auto baseline = scorer(req, ctx).sum(-1);  // (B,)
    verl::detail::check<ShapeError>(rows.size(0) * group_size == batch.size(), "verl::stages::GreedyBaseline: the batch's ",
                              batch.size(), " items are not ", rows.size(0), " equal groups of adjacent uids");
    return put<reward_baselines>(batch, baseline.repeat_interleave(group_size));
  }
};

//! Scores the responses (verl: compute_reward with the reward manager): token_level_scores (B,R).
struct Score {
  static constexpr std::string_view name = "reward";
  using needs = rollout_fields;
  using produces = field_list<token_level_scores>;

  Scorer scorer;

  template <class B>
  auto run(const B& batch, StepContext& ctx) {
    const c10::NoGradGuard no_grad;
    auto scores = scorer(detail::score_request_of(batch), ctx);
    verl::detail::check<ShapeError>(scores.defined() && scores.sizes() == batch.template get<responses>().sizes(),
                              "verl::stages::Score: the scorer returned ",
                              scores.defined() ? verl::detail::shape_string(scores) : std::string("no tensor"),
                              ", expected token_level_scores shaped like responses ",
                              verl::detail::shape_string(batch.template get<responses>()));
    return put<token_level_scores>(batch, scores.to(at::kFloat));
  }
};

//! The reference policy's log-probs of the responses (verl: compute_ref_log_prob).
template <ReferenceModel Ref>
struct ReferenceLogProbs {
  static constexpr std::string_view name = "ref";
  using needs = scoring_fields;
  using produces = field_list<ref_log_probs>;

  Ref* reference;
  double temperature = 1.0;             //!< the rollout temperature
  std::int64_t micro_batch_size = 16;   //!< verl: ref.log_prob_micro_batch_size_per_gpu

  template <class B>
  auto run(const B& batch, StepContext&) {
    auto logp = detail::no_grad_micro_batched(batch, micro_batch_size, [&](const auto& micro) {
      return reference->log_probs(trainer::token_batch_of(micro), LogProbOptions{temperature, false}).log_probs;
    });
    return put<ref_log_probs>(batch, logp);
  }
};

//! The behaviour policy's log-probs, recomputed by the actor (verl: compute_log_prob), and actor/entropy.
//! In bypass mode (verl 0.7.1: algorithm.rollout_correction.bypass_mode, apply_bypass_mode) the sampler's
//! rollout_log_probs become old_log_probs and no forward pass runs; nothing is recorded (verl then reports
//! actor/entropy only from the update, with actor.calculate_entropy).
template <ActorModel Actor>
struct OldLogProbs {
  static constexpr std::string_view name = "old_log_prob";
  using needs = field_list<input_ids, attention_mask, position_ids, responses, response_mask>;
  using produces = field_list<old_log_probs>;

  Actor* actor;
  double temperature = 1.0;
  std::int64_t micro_batch_size = 16;  //!< verl: rollout.log_prob_micro_batch_size_per_gpu
  LossAggMode loss_agg_mode = LossAggMode::token_mean;
  bool bypass = false;                 //!< verl: algorithm.rollout_correction.bypass_mode

  template <class B>
  auto run(const B& batch, StepContext& ctx) {
    if (bypass) {
      if constexpr (B::template has<rollout_log_probs>) {
        return put<old_log_probs>(batch, batch.template get<rollout_log_probs>());
      } else {
        throw ConfigError("verl::stages::OldLogProbs: bypass mode takes old_log_probs from rollout_log_probs, "
                          "which no stage before it produced (verl: bypass_mode=True requires rollout_log_probs)");
      }
    }
    std::vector<at::Tensor> entropies;
    auto logp = detail::no_grad_micro_batched(batch, micro_batch_size, [&](const auto& micro) {
      auto out = actor->log_probs(trainer::token_batch_of(micro), LogProbOptions{temperature, true});
      if (out.entropy) entropies.push_back(*out.entropy);
      return out.log_probs;
    });
    if (entropies.size() == static_cast<std::size_t>((batch.size() + std::max<std::int64_t>(micro_batch_size, 1) - 1) /
                                                     std::max<std::int64_t>(micro_batch_size, 1))) {
      const auto entropy = entropies.size() == 1 ? entropies.front() : at::cat(entropies, 0);  // (B,R)
      ctx.record("actor/entropy",
                 core_algos::agg_loss(entropy, batch.template get<response_mask>(), loss_agg_mode).template item<double>());
    }
    return put<old_log_probs>(batch, logp);
  }
};

//! The critic's values of the responses (verl: compute_values).
template <CriticModel Critic>
struct Values {
  static constexpr std::string_view name = "values";
  using needs = scoring_fields;
  using produces = field_list<values>;

  Critic* critic;
  std::int64_t micro_batch_size = 16;  //!< verl: critic.forward_micro_batch_size_per_gpu

  template <class B>
  auto run(const B& batch, StepContext&) {
    auto v = detail::no_grad_micro_batched(batch, micro_batch_size, [&](const auto& micro) {
      return at::Tensor(critic->values(trainer::token_batch_of(micro)));
    });
    return put<values>(batch, v);
  }
};

//! token_level_rewards = token_level_scores - beta * KL(old || ref) on valid tokens (verl: apply_kl_penalty),
//! updating the KL controller with the batch's mean sequence KL; records actor/reward_kl_penalty and
//! actor/reward_kl_penalty_coeff.
struct RewardKLPenalty {
  static constexpr std::string_view name = "kl";
  using needs = field_list<token_level_scores, old_log_probs, ref_log_probs, response_mask>;
  using produces = field_list<token_level_rewards>;

  core_algos::KLController controller = core_algos::FixedKLController(0.001);
  std::string kl_penalty = "kl";  //!< verl: algorithm.kl_penalty

  template <class B>
  auto run(const B& batch, StepContext& ctx) {
    const c10::NoGradGuard no_grad;
    const auto& mask = batch.template get<response_mask>();
    const auto kld = core_algos::kl_penalty(batch.template get<old_log_probs>(), batch.template get<ref_log_probs>(),
                                            kl_penalty) *
                     mask;                                                                  // (B,R)
    const double beta = std::visit([](const auto& c) { return c.value; }, controller);
    const auto rewards = batch.template get<token_level_scores>() - kld * beta;            // (B,R)
    const double current_kl = functional::masked_mean(kld, mask, /*axis=*/-1).mean().template item<double>();
    std::visit([&](auto& c) { c.update(current_kl, batch.size()); }, controller);
    ctx.record("actor/reward_kl_penalty", current_kl);
    ctx.record("actor/reward_kl_penalty_coeff", beta);
    return put<token_level_rewards>(batch, rewards);
  }
};

//! token_level_rewards = token_level_scores (no KL in the reward).
struct ScoresAsRewards {
  static constexpr std::string_view name = "kl";
  using needs = field_list<token_level_scores>;
  using produces = field_list<token_level_rewards>;
  template <class B>
  auto run(const B& batch, StepContext&) {
    return put<token_level_rewards>(batch, batch.template get<token_level_scores>());
  }
};

namespace detail {
template <class E>
consteval bool needs_reward_baselines() {
  if constexpr (requires { E::needs_reward_baselines; }) return E::needs_reward_baselines;
  else return false;
}
}  // namespace detail

//! Advantages and returns from estimator E (verl: compute_advantage). Its needs follow E's flags: values when
//! E::needs_critic, uid when E::needs_groups, reward_baselines for ReMax.
template <AdvantageEstimator E>
struct Advantage {
  static constexpr std::string_view name = "adv";
  using needs = concat_fields_t<
      concat_fields_t<field_list<token_level_rewards, response_mask>, verl::detail::field_if<E::needs_critic, values>>,
      concat_fields_t<verl::detail::field_if<E::needs_groups, uid>,
                      verl::detail::field_if<detail::needs_reward_baselines<E>(), reward_baselines>>>;
  using produces = field_list<advantages, returns>;

  E estimator{};

  template <class B>
  auto run(const B& batch, StepContext&) {
    const c10::NoGradGuard no_grad;
    AdvantageInputs in;
    in.token_level_rewards = batch.template get<token_level_rewards>();
    in.response_mask = batch.template get<response_mask>();
    if constexpr (E::needs_critic) in.values = batch.template get<values>();
    if constexpr (E::needs_groups) in.index = batch.template get<uid>();
    if constexpr (detail::needs_reward_baselines<E>()) in.reward_baselines = batch.template get<reward_baselines>();
    in.validate();
    const AdvantageOutput out = estimator.compute(in);
    return put<returns>(put<advantages>(batch, out.advantages), out.returns);
  }
};

//! The critic's optimizer steps over the batch (verl: update_critic).
template <CriticModel Critic>
struct UpdateCritic {
  static constexpr std::string_view name = "update_critic";
  using needs = field_list<input_ids, attention_mask, position_ids, responses, response_mask, values, returns>;
  using produces = field_list<>;

  Critic* critic;
  torch::optim::Optimizer* optimizer;
  trainer::UpdateSchedule schedule;
  double cliprange_value = 0.5;
  LossAggMode loss_agg_mode = LossAggMode::token_mean;

  template <class B>
  auto run(const B& batch, StepContext& ctx) {
    trainer::update_critic(*critic, *optimizer, batch, schedule, cliprange_value, loss_agg_mode, ctx);
    return batch;
  }
};

//! The actor's optimizer steps over the batch (verl: update_actor). During the critic warm-up the actor is not
//! updated: verl updates it iff trainer.critic_warmup <= global_steps, with steps counted from 1.
template <ActorModel Actor, PolicyLoss Loss, bool UseKLLoss>
struct UpdateActor {
  static constexpr std::string_view name = "update_actor";
  using needs = concat_fields_t<field_list<input_ids, attention_mask, position_ids, responses, response_mask,
                                           old_log_probs, advantages>,
                                verl::detail::field_if<UseKLLoss, ref_log_probs>>;
  using produces = field_list<>;

  Actor* actor;
  torch::optim::Optimizer* optimizer;
  Loss loss{};
  trainer::UpdateSchedule schedule;
  trainer::ActorLossSettings settings;
  std::int64_t critic_warmup = 0;

  template <class B>
  auto run(const B& batch, StepContext& ctx) {
    if (critic_warmup <= ctx.step) {
      auto s = settings;
      s.use_kl_loss = UseKLLoss;
      trainer::update_policy(*actor, *optimizer, loss, batch, schedule, s, ctx);
    }
    return batch;
  }
};

}  // namespace verl::stages
