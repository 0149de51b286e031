// The compile-time pipelines (include/verl/pipeline/) and the PPO-family trainer (include/verl/trainer/
// ppo_trainer.hpp, ppo_update.hpp) on a real tiny transformer: the pipeline each algorithm yields, editing a
// pipeline, the update's independence of the micro-batch split (fixed and dynamic), verl 0.7.1's dynamic
// micro-batch partition, critic warm-up, KL in the reward, and GRPO / PPO-with-critic learning a rule reward.
#include "catch_torch.hpp"

#include "verl/algos/presets.hpp"
#include "verl/data/data_provider.hpp"
#include "verl/data/rl_dataset.hpp"
#include "verl/models/actor.hpp"
#include "verl/models/critic.hpp"
#include "verl/pipeline/pipeline.hpp"
#include "verl/pipeline/reward_scorer.hpp"
#include "verl/pipeline/rl_stages.hpp"
#include "verl/trainer/from_config.hpp"
#include "verl/trainer/offline_common.hpp"
#include "verl/trainer/ppo_trainer.hpp"

#include "temp_dir.hpp"

#include <torch/torch.h>

#include <csignal>
#include <cstdlib>
#include <fstream>
#include <numeric>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>
#include <type_traits>

namespace test_ppo_trainer {  // one namespace per file: a unity build (tests/CMakeLists.txt) may join files

using namespace verl::fields;
using verl::models::Actor;
using verl::models::CausalLM;
using verl::models::Critic;
using verl::models::Reference;
using verl::trainer::PPOOptions;
using verl::trainer::PPOTrainer;
using verl::trainer::PromptBatch;

namespace {

constexpr std::int64_t kTarget = 7;  // the token the rule reward asks for

verl::models::TransformerConfig tiny_config() {
  nlohmann::json j{{"model_type", "qwen2"},        {"vocab_size", 16},          {"hidden_size", 32},
                   {"intermediate_size", 48},      {"num_hidden_layers", 1},    {"num_attention_heads", 4},
                   {"num_key_value_heads", 2},     {"max_position_embeddings", 64}, {"rms_norm_eps", 1e-6},
                   {"tie_word_embeddings", false}, {"pad_token_id", 0},         {"eos_token_id", 1}};
  return verl::models::TransformerConfig::from_json(j);
}

CausalLM make_lm(std::uint64_t seed) {
  torch::manual_seed(seed);
  CausalLM lm(tiny_config());
  lm->init_weights(0.05);
  return lm;
}

Actor make_actor(std::uint64_t seed) {
  verl::models::ActorOptions o;
  o.generation.eos_token_ids = {1};
  o.generation.pad_token_id = 0;
  return Actor(make_lm(seed), o);
}

// Score = fraction of the valid response tokens equal to kTarget, on the last valid token.
verl::stages::Scorer target_fraction_scorer() {
  return [](const verl::stages::ScoreRequest& r, verl::StepContext&) {
    const auto mask = r.response_mask.to(torch::kFloat);                                    // (B,R)
    const auto len = mask.sum(1);                                                          // (B,)
    const auto frac = (r.responses.eq(kTarget).to(torch::kFloat) * mask).sum(1) / len.clamp_min(1);  // (B,)
    auto scores = torch::zeros(mask.sizes(), torch::kFloat);                              // (B,R)
    const auto last = (len - 1).clamp_min(0).to(torch::kLong);                             // (B,)
    scores.scatter_(1, last.unsqueeze(1), frac.unsqueeze(1));
    return scores * (len > 0).to(torch::kFloat).unsqueeze(1);
  };
}

PromptBatch prompt_batch(std::int64_t b) {
  // Left-padded prompts of lengths 2..4 over tokens 2..15.
  auto ids = torch::zeros({b, 4}, torch::kLong);
  auto mask = torch::zeros({b, 4}, torch::kLong);
  for (std::int64_t i = 0; i < b; ++i) {
    const std::int64_t len = 2 + i % 3;
    for (std::int64_t j = 0; j < len; ++j) {
      ids[i][4 - len + j] = 2 + (3 * i + 5 * j) % 14;
      mask[i][4 - len + j] = 1;
    }
  }
  return PromptBatch(ids, mask, (mask.cumsum(1) - 1).clamp_min(0));
}

PPOOptions small_options() {
  PPOOptions o;
  o.rollout.n = 4;
  o.rollout.max_tokens = 6;
  o.rollout.temperature = 1.0;
  o.rollout.seed = 3;
  o.ppo_mini_batch_size = 4;
  o.ppo_micro_batch_size = 8;
  o.actor_optim.lr = 3e-2;
  o.actor_optim.weight_decay = 0.0;
  o.kl_loss_coef = 0.0;
  return o;
}

double mean_score(const std::map<std::string, double>& m) { return m.at("critic/score/mean"); }

// A stage a user adds: records the mean score (the metric name verl uses) and passes the batch on.
struct ScoreMeanMetric {
  static constexpr std::string_view name = "score_metric";
  using needs = verl::field_list<token_level_scores>;
  using produces = verl::field_list<>;
  template <class B>
  auto run(const B& batch, verl::StepContext& ctx) {
    ctx.record("critic/score/mean", batch.template get<token_level_scores>().sum(1).mean().template item<double>());
    return batch;
  }
};

}  // namespace

// ---------------------------------------------------------------------------------------------------------
// Compile-time pipelines.

using GRPOPipeline = verl::trainer::rl_pipeline_t<verl::GRPO<>, Actor, verl::no_critic, Reference>;
using PPOPipeline = verl::trainer::rl_pipeline_t<verl::PPO<>, Actor, Critic, verl::no_reference>;
using ReMaxPipeline = verl::trainer::rl_pipeline_t<verl::ReMax<>, Actor, verl::no_critic, Reference>;
static_assert(GRPOPipeline::num_stages == 7, "gen, reward, old_log_prob, ref, kl, adv, update_actor");
static_assert(PPOPipeline::num_stages == 8, "gen, reward, old_log_prob, values, kl, adv, update_critic, update_actor");
static_assert(ReMaxPipeline::num_stages == 8, "GRPO's stages plus the greedy baseline");
static_assert(std::is_same_v<PPOPipeline::stage_type<3>, verl::stages::Values<Critic>>);
static_assert(std::is_same_v<GRPOPipeline::stage_type<6>,
                             verl::stages::UpdateActor<Actor, verl::losses::VanillaPPO, /*UseKLLoss=*/true>>);
static_assert(verl::stages::Advantage<verl::estimators::GAE>::needs::contains<values>);
static_assert(!verl::stages::Advantage<verl::estimators::GRPO>::needs::contains<values>);
static_assert(verl::stages::Advantage<verl::estimators::GRPO>::needs::contains<uid>);
static_assert(verl::stages::Advantage<verl::estimators::ReMax>::needs::contains<reward_baselines>);

TEST_CASE("OptimizerOptions::fused: the trainers' AdamW is FusedAdamW, with the same hyper-parameters",
          "[trainer][optimizer]") {
  auto p = torch::zeros({3}, torch::kFloat64).requires_grad_(true);
  verl::trainer::OptimizerOptions o;
  o.lr = 0.5;
  o.beta1 = 0.8;
  o.beta2 = 0.9;
  o.eps = 1e-6;
  o.weight_decay = 0.1;
  CHECK(dynamic_cast<verl::trainer::FusedAdamW*>(verl::trainer::detail::make_adamw({p}, o).get()) == nullptr);
  o.fused = true;
  const auto fused = verl::trainer::detail::make_adamw({p}, o);
  REQUIRE(dynamic_cast<verl::trainer::FusedAdamW*>(fused.get()) != nullptr);
  const auto& got = static_cast<const torch::optim::AdamWOptions&>(fused->param_groups().at(0).options());
  CHECK(got.lr() == 0.5);
  CHECK(got.betas() == std::make_tuple(0.8, 0.9));
  CHECK(got.eps() == 1e-6);
  CHECK(got.weight_decay() == 0.1);
  // The offline trainers' optimizer (SFT, DPO, KTO) takes the same switch.
  verl::trainer::OfflineTrainingArguments args;
  args.learning_rate = 0.25;
  CHECK(dynamic_cast<verl::trainer::FusedAdamW*>(&verl::trainer::OfflineOptimizer({p}, args).optimizer()) == nullptr);
  args.fused = true;
  verl::trainer::OfflineOptimizer offline({p}, args);
  REQUIRE(dynamic_cast<verl::trainer::FusedAdamW*>(&offline.optimizer()) != nullptr);
  CHECK(offline.optimizer().param_groups().at(0).options().get_lr() == 0.25);
}

TEST_CASE("StepContext: verl's reduce_metrics rule (max/min by name, else mean)", "[trainer][pipeline]") {
  verl::StepContext ctx;
  for (double v : {1.0, 4.0, 2.5}) {
    ctx.record("critic/score/max", v);
    ctx.record("response_length/min", v);
    ctx.record("actor/pg_clipfrac", v);
  }
  const auto r = ctx.reduced();
  CHECK(r.at("critic/score/max") == 4.0);
  CHECK(r.at("response_length/min") == 1.0);
  CHECK(r.at("actor/pg_clipfrac") == Approx(2.5));
}

TEST_CASE("pipelines: each algorithm yields its stages, in verl's order", "[trainer][pipeline]") {
  const std::vector<std::string_view> grpo{"gen", "reward", "old_log_prob", "ref", "kl", "adv", "update_actor"};
  CHECK(GRPOPipeline::stage_names() == grpo);
  const std::vector<std::string_view> ppo{"gen", "reward", "old_log_prob", "values", "kl", "adv", "update_critic",
                                          "update_actor"};
  CHECK(PPOPipeline::stage_names() == ppo);
  const std::vector<std::string_view> remax{"gen",     "gen_max", "reward", "old_log_prob", "ref",
                                            "kl",      "adv",     "update_actor"};
  CHECK(ReMaxPipeline::stage_names() == remax);
}

TEST_CASE("pipelines: a custom stage is inserted after the reward and runs in the trainer's step",
          "[trainer][pipeline]") {
  auto actor = make_actor(1);
  Reference ref(make_lm(1));
  PPOTrainer<verl::GRPO<>, Actor, verl::no_critic, Reference> trainer(actor, {}, ref, target_fraction_scorer(),
                                                                      small_options());
  auto custom = verl::insert_after<verl::stages::Score>(trainer.default_pipeline(), ScoreMeanMetric{});
  static_assert(decltype(custom)::num_stages == 8);
  CHECK(decltype(custom)::stage_names()[2] == "score_metric");
  const auto metrics = trainer.step(custom, prompt_batch(4));
  REQUIRE(metrics.count("critic/score/mean") == 1);
  CHECK(metrics.at("critic/score/mean") >= 0.0);
  CHECK(metrics.count("timing_s/score_metric") == 1);
  for (const char* key : {"actor/pg_loss", "actor/pg_clipfrac", "actor/ppo_kl", "actor/grad_norm", "actor/entropy",
                          "actor/kl_loss", "timing_s/gen", "timing_s/update_actor", "timing_s/step"}) {
    INFO(key);
    CHECK(metrics.count(key) == 1);
  }

  // replace_stage swaps the reward: a scorer that gives 0 everywhere leaves GRPO's advantages at 0.
  verl::stages::Score zero{[](const verl::stages::ScoreRequest& r, verl::StepContext&) {
    return torch::zeros(r.responses.sizes(), torch::kFloat);
  }};
  auto zeroed = verl::replace_stage<verl::stages::Score>(trainer.default_pipeline(), zero);
  const auto before = actor.parameters().front().clone();
  const auto m2 = trainer.step(zeroed, prompt_batch(4));
  CHECK(m2.at("actor/pg_loss") == 0.0);
  CHECK(trainer.global_step() == 2);
  (void)before;
}

// ---------------------------------------------------------------------------------------------------------
// Rollout log-probs and bypass mode (verl 0.7.1: algorithm.rollout_correction.bypass_mode).

namespace {
// An actor handle that counts its log_probs() calls (the forward passes a stage runs).
struct CountingActor {
  Actor inner;
  std::shared_ptr<int> calls = std::make_shared<int>(0);
  verl::LogProbOutput log_probs(const verl::TokenBatch& b, const verl::LogProbOptions& o) {
    ++*calls;
    return inner.log_probs(b, o);
  }
  verl::Rollout generate(const verl::Prompts& p, const verl::SamplingParams& s) { return inner.generate(p, s); }
  std::vector<torch::Tensor> parameters() { return inner.parameters(); }
};
}  // namespace

TEST_CASE("Generate: rollout_log_probs are the tempered policy's log-probs of the sampled tokens",
          "[trainer][pipeline]") {
  auto actor = make_actor(1);
  verl::StepContext ctx;
  verl::SamplingParams sp;
  sp.n = 2;
  sp.max_tokens = 6;
  sp.temperature = 0.7;
  sp.seed = 11;
  verl::stages::Generate<Actor> gen{&actor, sp};
  const auto rollout = gen.run(prompt_batch(4), ctx);
  const auto& sampled = rollout.get<rollout_log_probs>();  // (8,R)
  const auto mask = rollout.get<response_mask>().to(torch::kFloat);
  REQUIRE(sampled.sizes() == rollout.get<responses>().sizes());
  CHECK(torch::equal(sampled * (1 - mask), torch::zeros_like(sampled)));  // 0 on padding
  CHECK((sampled * mask).max().item<double>() <= 0.0);
  // The recompute pass (full forward, logits / 0.7) agrees with the sampler's (KV-cached) log-probs.
  verl::stages::OldLogProbs<Actor> recompute{&actor, 0.7, 3};
  const auto old = recompute.run(rollout, ctx).get<old_log_probs>();
  CHECK(((old - sampled) * mask).abs().max().item<double>() < 2e-5);
}

TEST_CASE("OldLogProbs in bypass mode: old_log_probs are the rollout's, with no forward pass",
          "[trainer][pipeline]") {
  CountingActor actor{make_actor(1)};
  verl::StepContext ctx;
  verl::SamplingParams sp;
  sp.n = 2;
  sp.max_tokens = 6;
  sp.seed = 11;
  verl::stages::Generate<CountingActor> gen{&actor, sp};
  const auto rollout = gen.run(prompt_batch(4), ctx);
  verl::stages::OldLogProbs<CountingActor> bypass{&actor, 1.0, 3, verl::LossAggMode::token_mean, true};
  const auto out = bypass.run(rollout, ctx);
  CHECK(*actor.calls == 0);
  CHECK(torch::equal(out.get<old_log_probs>(), rollout.get<rollout_log_probs>()));
  CHECK(ctx.reduced().count("actor/entropy") == 0);
  // Without the sampler's log-probs in the batch there is nothing to bypass with.
  CHECK_THROWS_WITH(bypass.run(rollout.without<rollout_log_probs>(), ctx),
                    Catch::Contains("bypass mode takes old_log_probs from rollout_log_probs"));
  // The recompute pass: one forward per micro-batch of 3 (8 sequences), and actor/entropy.
  bypass.bypass = false;
  (void)bypass.run(rollout, ctx);
  CHECK(*actor.calls == 3);
  CHECK(ctx.reduced().count("actor/entropy") == 1);
}

TEST_CASE("bypass mode on-policy: a GRPO step equals the recompute step bit for bit, without its forward pass",
          "[trainer][pipeline]") {
  auto run = [](bool bypass, bool calculate_entropy) {
    auto actor = make_actor(1);
    Reference ref(make_lm(1));
    auto o = small_options();  // 4 prompts x 4 samples in one mini-batch, one epoch: on-policy
    o.bypass_mode = bypass;
    o.calculate_entropy = calculate_entropy;
    PPOTrainer<verl::GRPO<>, Actor, verl::no_critic, Reference> trainer(actor, {}, ref, target_fraction_scorer(), o);
    auto metrics = trainer.step(prompt_batch(4));
    std::vector<torch::Tensor> weights;
    for (const auto& p : actor.parameters()) weights.push_back(p.detach().clone());
    return std::pair(weights, metrics);
  };
  const auto [recomputed, m_recomputed] = run(false, false);
  const auto [bypassed, m_bypassed] = run(true, false);
  REQUIRE(recomputed.size() == bypassed.size());
  for (std::size_t i = 0; i < recomputed.size(); ++i) CHECK(torch::equal(recomputed[i], bypassed[i]));
  CHECK(m_bypassed.at("actor/pg_loss") == m_recomputed.at("actor/pg_loss"));
  CHECK(m_bypassed.at("actor/grad_norm") == m_recomputed.at("actor/grad_norm"));
  // The recompute pass reports actor/entropy; bypass mode reports it from the update with calculate_entropy.
  CHECK(m_recomputed.count("actor/entropy") == 1);
  CHECK(m_bypassed.count("actor/entropy") == 0);
  const auto [with_entropy, m_entropy] = run(true, true);
  REQUIRE(m_entropy.count("actor/entropy") == 1);
  CHECK(m_entropy.at("actor/entropy") == Approx(m_recomputed.at("actor/entropy")).epsilon(1e-5));
  for (std::size_t i = 0; i < recomputed.size(); ++i) CHECK(torch::equal(recomputed[i], with_entropy[i]));
}

TEST_CASE("ppo_options_from: bypass_mode, calculate_entropy and the fused optimizer from verl's keys",
          "[trainer][pipeline]") {
  verl::config::PPOConfig c;
  CHECK_FALSE(verl::trainer::ppo_options_from(c, 10).bypass_mode);
  CHECK_FALSE(verl::trainer::ppo_options_from(c, 10).actor_optim.fused);
  c.algorithm.rollout_correction.bypass_mode = true;
  c.actor_rollout_ref.actor.calculate_entropy = true;
  c.actor_rollout_ref.actor.optim.override_optimizer_config = nlohmann::ordered_json{{"fused", true}};
  const auto o = verl::trainer::ppo_options_from(c, 10);
  CHECK(o.bypass_mode);
  CHECK(o.calculate_entropy);
  CHECK(o.actor_optim.fused);
  CHECK_FALSE(o.critic_optim.fused);
}

// ---------------------------------------------------------------------------------------------------------
// The update.

namespace {
// A rollout batch with old log-probs and advantages, from a real generation.
auto update_batch(Actor& actor, std::int64_t prompts, std::int64_t n) {
  verl::StepContext ctx;
  verl::SamplingParams sp;
  sp.n = n;
  sp.max_tokens = 6;
  sp.seed = 11;
  verl::stages::Generate<Actor> gen{&actor, sp};
  auto rollout = gen.run(prompt_batch(prompts), ctx);
  verl::stages::OldLogProbs<Actor> old{&actor, 1.0, 3};
  auto with_old = old.run(rollout, ctx);
  const auto adv = torch::randn(with_old.get<responses>().sizes(), torch::TensorOptions().dtype(torch::kFloat)
                                                                        .requires_grad(false));
  return with_old.with<advantages>(adv * with_old.get<response_mask>().to(torch::kFloat));
}

std::vector<torch::Tensor> weights_after_update(std::uint64_t seed, const verl::trainer::UpdateSchedule& schedule,
                                                verl::LossAggMode mode) {
  auto actor = make_actor(seed);
  torch::manual_seed(5);
  const auto batch = update_batch(actor, 4, 4);
  // SGD: the weights move by lr * gradient, so equal gradients give equal weights to rounding (Adam's
  // normalisation would blow rounding-level differences of near-zero gradients up to +-lr).
  auto opt = torch::optim::SGD(actor.parameters(), torch::optim::SGDOptions(0.5));
  verl::trainer::ActorLossSettings settings;
  settings.loss_agg_mode = mode;
  settings.entropy_coeff = 0.01;
  verl::StepContext ctx;
  ctx.step = 1;
  verl::trainer::update_policy(actor, opt, verl::losses::VanillaPPO{}, batch, schedule, settings, ctx);
  std::vector<torch::Tensor> out;
  for (const auto& p : actor.parameters()) out.push_back(p.detach().clone());
  return out;
}
}  // namespace

TEST_CASE("update_policy: the result does not depend on the micro-batch split (global normalisers)",
          "[trainer][update]") {
  for (auto mode : {verl::LossAggMode::token_mean, verl::LossAggMode::seq_mean_token_mean,
                    verl::LossAggMode::seq_mean_token_sum_norm}) {
    INFO(verl::to_string(mode));
    verl::trainer::UpdateSchedule whole;
    whole.ppo_mini_batch_size = 8;
    whole.micro_batch_size = 8;
    whole.ppo_epochs = 2;
    auto ones = whole;
    ones.micro_batch_size = 1;
    auto dynamic = whole;
    dynamic.use_dynamic_bsz = true;
    dynamic.max_token_len = 24;  // several micro-batches of unequal token counts
    const auto a = weights_after_update(2, whole, mode);
    const auto b = weights_after_update(2, ones, mode);
    const auto c = weights_after_update(2, dynamic, mode);
    for (std::size_t i = 0; i < a.size(); ++i) {
      CHECK(torch::allclose(a[i], b[i], 1e-5, 1e-6));
      CHECK(torch::allclose(a[i], c[i], 1e-5, 1e-6));
    }
    // ... and the update did something.
    const auto init = make_lm(2)->parameters();
    double moved = 0;
    for (std::size_t i = 0; i < a.size(); ++i) moved += (a[i] - init[i]).abs().max().item<double>();
    CHECK(moved > 1e-4);
  }
}

TEST_CASE("dynamic_micro_batches: verl 0.7.1's rearrange_micro_batches partition", "[trainer][update]") {
  // Lengths 5, 3, 8, 2, 6, 4 (sum 28), budget 10 -> ceil(28/10) = 3 micro-batches balanced by the workload
  // 24576 L + L^2. Expected lists from verl 0.7.1 itself:
  //   rearrange_micro_batches(TensorDict({"attention_mask": mask, "input_ids": mask}, [6]), max_token_len=10)[1]
  //   == [[0, 5], [2, 3], [1, 4]]   (token sums 9, 10, 9)
  const std::vector<std::int64_t> lens{5, 3, 8, 2, 6, 4};
  auto mask = torch::zeros({6, 8}, torch::kLong);
  for (std::int64_t i = 0; i < 6; ++i) mask[i].narrow(0, 8 - lens[static_cast<std::size_t>(i)], lens[static_cast<std::size_t>(i)]).fill_(1);
  const auto parts = verl::trainer::dynamic_micro_batches(mask, 10);
  REQUIRE(parts.size() == 3);
  std::vector<std::int64_t> sums;
  std::set<std::int64_t> seen;
  for (const auto& p : parts) {
    std::int64_t s = 0;
    for (auto i : p) {
      s += lens[static_cast<std::size_t>(i)];
      seen.insert(i);
    }
    sums.push_back(s);
  }
  CHECK(seen.size() == 6);
  CHECK(parts[0] == std::vector<std::int64_t>{0, 5});
  CHECK(parts[1] == std::vector<std::int64_t>{2, 3});
  CHECK(parts[2] == std::vector<std::int64_t>{1, 4});
  CHECK_THROWS_WITH(verl::trainer::dynamic_micro_batches(mask, 7), Catch::Contains("ppo_max_token_len_per_gpu"));
}

TEST_CASE("critic warm-up: the actor is not updated while critic_warmup > step", "[trainer][update]") {
  auto actor = make_actor(4);
  auto critic = Critic::create(tiny_config());
  auto options = small_options();
  options.critic_warmup = 2;
  options.critic_mini_batch_size = 4;
  options.critic_micro_batch_size = 8;
  PPOTrainer<verl::PPO<>, Actor, Critic> trainer(actor, critic, {}, target_fraction_scorer(), options);
  const auto w0 = actor.parameters().front().detach().clone();
  const auto m1 = trainer.step(prompt_batch(4));
  CHECK(m1.count("critic/vf_loss") == 1);
  CHECK(m1.count("actor/pg_loss") == 0);
  CHECK(torch::equal(actor.parameters().front(), w0));
  const auto m2 = trainer.step(prompt_batch(4));
  CHECK(m2.count("actor/pg_loss") == 1);
  CHECK(!torch::equal(actor.parameters().front(), w0));
}

TEST_CASE("RewardKLPenalty: verl's apply_kl_penalty with an adaptive controller", "[trainer][update]") {
  // scores 0 except 1 at the last token; old - ref = 0.5 on valid tokens; beta 0.1, k1.
  auto mask = torch::tensor({{1, 1, 1, 0}, {1, 1, 0, 0}}, torch::kLong);
  auto scores = torch::tensor({{0.f, 0.f, 1.f, 0.f}, {0.f, 2.f, 0.f, 0.f}});
  auto old = torch::full({2, 4}, -1.0f), ref = torch::full({2, 4}, -1.5f);
  verl::Batch<token_level_scores, old_log_probs, ref_log_probs, response_mask> b(scores, old, ref, mask);
  verl::stages::RewardKLPenalty stage{verl::core_algos::AdaptiveKLController(0.1, 0.25, 10.0), "kl"};
  verl::StepContext ctx;
  const auto out = stage.run(b, ctx);
  const auto expected = scores - 0.05f * mask.to(torch::kFloat);  // beta * 0.5 on valid tokens
  CHECK(torch::allclose(out.get<token_level_rewards>(), expected));
  CHECK(ctx.reduced().at("actor/reward_kl_penalty") == Approx(0.5));
  CHECK(ctx.reduced().at("actor/reward_kl_penalty_coeff") == Approx(0.1));
  // update: error clip(0.5/0.25 - 1, -0.2, 0.2) = 0.2; mult = 1 + 0.2 * 2 / 10 = 1.04.
  CHECK(std::get<verl::core_algos::AdaptiveKLController>(stage.controller).value == Approx(0.104));
}

// ---------------------------------------------------------------------------------------------------------
// Learning.

TEST_CASE("GRPO learns a rule reward on a tiny transformer", "[trainer][learning]") {
  auto actor = make_actor(7);
  Reference ref(make_lm(7));
  auto options = small_options();
  PPOTrainer<verl::GRPO<>, Actor, verl::no_critic, Reference> trainer(actor, {}, ref, target_fraction_scorer(),
                                                                      options);
  auto pipeline = verl::insert_after<verl::stages::Score>(trainer.default_pipeline(), ScoreMeanMetric{});
  double first = 0, last = 0;
  const int steps = 12;
  for (int s = 0; s < steps; ++s) {
    const auto m = trainer.step(pipeline, prompt_batch(8));
    if (s < 2) first += mean_score(m) / 2;
    if (s >= steps - 2) last += mean_score(m) / 2;
  }
  INFO("mean score of the first two steps " << first << ", of the last two " << last);
  CHECK(last > first + 0.2);
}

TEST_CASE("PPO with a GAE critic learns the rule reward", "[trainer][learning]") {
  auto actor = make_actor(8);
  auto critic = Critic::create(tiny_config());
  auto options = small_options();
  options.critic_mini_batch_size = 4;
  options.critic_micro_batch_size = 16;
  options.critic_optim.lr = 1e-2;
  options.lam = 0.95;
  PPOTrainer<verl::PPO<>, Actor, Critic> trainer(actor, critic, {}, target_fraction_scorer(), options);
  auto pipeline = verl::insert_after<verl::stages::Score>(trainer.default_pipeline(), ScoreMeanMetric{});
  double first = 0, last = 0;
  const int steps = 12;
  for (int s = 0; s < steps; ++s) {
    const auto m = trainer.step(pipeline, prompt_batch(8));
    REQUIRE(m.count("critic/vf_loss") == 1);
    if (s < 2) first += mean_score(m) / 2;
    if (s >= steps - 2) last += mean_score(m) / 2;
  }
  INFO("mean score of the first two steps " << first << ", of the last two " << last);
  CHECK(last > first + 0.2);
}

// ---------------------------------------------------------------------------------------------------------
// Filter stages.

TEST_CASE("informative_groups: verl's kept groups (population std > 0, or a single sample)", "[trainer][filter]") {
  const auto uids = torch::tensor({0, 0, 1, 1, 2, 3, 3}, torch::kLong);
  const auto metric = torch::tensor({1.0, 1.0, 0.0, 1.0, 5.0, 2.0, 2.0});
  const auto [idx, groups] = verl::stages::informative_groups(uids, metric);
  CHECK(idx == std::vector<std::int64_t>{2, 3, 4});
  CHECK(groups == 2);
}

TEST_CASE("pad_rollout: prompts left, responses right, position ids continued", "[trainer][filter]") {
  // P = 1, R = 2 -> P = 2, R = 3.
  verl::Batch<prompts, responses, response_mask, input_ids, attention_mask, position_ids, token_level_scores> b(
      torch::tensor({{5}}, torch::kLong), torch::tensor({{6, 7}}, torch::kLong), torch::tensor({{1, 1}}, torch::kLong),
      torch::tensor({{5, 6, 7}}, torch::kLong), torch::tensor({{1, 1, 1}}, torch::kLong),
      torch::tensor({{0, 1, 2}}, torch::kLong), torch::tensor({{0.0f, 1.0f}}));
  const auto p = verl::stages::pad_rollout(b, 2, 3, /*pad_token_id=*/9);
  CHECK(torch::equal(p.get<prompts>(), torch::tensor({{9, 5}}, torch::kLong)));
  CHECK(torch::equal(p.get<responses>(), torch::tensor({{6, 7, 9}}, torch::kLong)));
  CHECK(torch::equal(p.get<response_mask>(), torch::tensor({{1, 1, 0}}, torch::kLong)));
  CHECK(torch::equal(p.get<input_ids>(), torch::tensor({{9, 5, 6, 7, 9}}, torch::kLong)));
  CHECK(torch::equal(p.get<attention_mask>(), torch::tensor({{0, 1, 1, 1, 0}}, torch::kLong)));
  CHECK(torch::equal(p.get<position_ids>(), torch::tensor({{0, 0, 1, 2, 3}}, torch::kLong)));
  CHECK(torch::equal(p.get<token_level_scores>(), torch::tensor({{0.0f, 1.0f, 0.0f}})));
  CHECK_THROWS_WITH(verl::stages::pad_rollout(p, 1, 3, 9), Catch::Contains("more than the requested"));
}

namespace {
// Even uids (groups) get a constant score, odd ones the target fraction: about half the groups are informative.
verl::stages::Scorer half_constant_scorer() {
  return [inner = target_fraction_scorer()](const verl::stages::ScoreRequest& r, verl::StepContext& ctx) {
    auto s = inner(r, ctx);
    // Items come in groups of n = 4 adjacent rows; group g = row / 4 within this call.
    const auto rows = torch::arange(s.size(0), torch::kLong);
    const auto even_group = (torch::div(rows, 4, "floor") % 2).eq(0).unsqueeze(1);  // (B,1)
    // Odd groups: the target fraction plus row % 2 / 8 on the first column, so they are never constant.
    auto bump = torch::zeros_like(s);
    bump.select(1, 0).copy_((rows % 2).to(torch::kFloat) / 8);
    return torch::where(even_group, torch::zeros_like(s), s + bump);
  };
}
}  // namespace

TEST_CASE("DynamicSampling: refills until train_batch_size informative groups, then cuts (DAPO)",
          "[trainer][filter]") {
  auto actor = make_actor(9);
  auto options = small_options();
  PPOTrainer<verl::DAPO<>, Actor> trainer(actor, {}, {}, half_constant_scorer(), options);
  int pulled = 0;
  auto source = [&]() -> std::optional<PromptBatch> {
    ++pulled;
    return prompt_batch(4);
  };
  verl::trainer::FilterGroupsOptions filter;
  filter.train_batch_size = 4;
  auto pipeline = trainer.dynamic_sampling_pipeline(source, filter);
  static_assert(decltype(pipeline)::num_stages == 5, "sampling(gen+reward), old_log_prob, kl, adv, update_actor");
  const auto m = trainer.step(pipeline, prompt_batch(4));
  CHECK(m.at("train/num_gen_batches") >= 2);
  CHECK(pulled == static_cast<int>(m.at("train/num_gen_batches")) - 1);
  CHECK(m.count("actor/pg_loss") == 1);

  filter.max_num_gen_batches = 1;
  auto limited = trainer.dynamic_sampling_pipeline(source, filter);
  CHECK_THROWS_WITH(trainer.step(limited, prompt_batch(4)), Catch::Contains("max_num_gen_batches"));
}

TEST_CASE("ReplayBuffer: stores informative groups and mixes them into later steps", "[trainer][filter]") {
  auto actor = make_actor(10);
  auto options = small_options();
  PPOTrainer<verl::DAPO<>, Actor> trainer(actor, {}, {}, target_fraction_scorer(), options);
  using Scored = verl::Batch<input_ids, attention_mask, position_ids, prompts, responses, response_mask, uid,
                             rollout_log_probs, token_level_scores>;
  verl::stages::ReplayBuffer<Scored> replay;
  replay.replay_groups = 2;
  auto pipeline = verl::insert_after<verl::stages::Score>(trainer.default_pipeline(), replay);
  const auto m1 = trainer.step(pipeline, prompt_batch(4));
  CHECK(m1.at("replay/added_groups") == 0);
  const auto stored = m1.at("replay/size");
  CHECK(stored >= 1);
  const auto m2 = trainer.step(pipeline, prompt_batch(4));
  CHECK(m2.at("replay/added_groups") == std::min(2.0, stored));
  CHECK(m2.at("rollout/num_sequences") == 16);
}

// ---------------------------------------------------------------------------------------------------------
// fit(): data, rule reward, metrics, checkpoints, resume after a kill.

namespace {

// Characters "0123456789+=" as ids 2..13 (the tiny model's vocabulary is 16); 0 pads, 1 ends a sequence.
struct ArithTokenizer {
  static constexpr std::string_view kAlphabet = "0123456789+=";
  [[nodiscard]] std::vector<std::int64_t> encode(const std::string& text) const {
    std::vector<std::int64_t> ids;
    for (char c : text) ids.push_back(2 + static_cast<std::int64_t>(kAlphabet.find(c)));
    return ids;
  }
  [[nodiscard]] std::string decode(const std::vector<std::int64_t>& ids) const {
    std::string text;
    for (auto id : ids)
      if (id >= 2 && id < 14) text += kAlphabet[static_cast<std::size_t>(id - 2)];
    return text;
  }
  [[nodiscard]] std::int64_t eos_token_id() const { return 1; }
  [[nodiscard]] std::int64_t pad_token_id() const { return 0; }
  [[nodiscard]] std::int64_t vocab_size() const { return 16; }
};

// Reward: the fraction of the ground truth's characters found at the same position of the response.
struct PrefixMatch {
  verl::RewardOutput operator()(const verl::RewardInput& in) const {
    const std::string_view r = in.response, g = in.ground_truth;
    std::size_t same = 0;
    for (std::size_t i = 0; i < std::min(r.size(), g.size()); ++i) same += r[i] == g[i] ? 1 : 0;
    return g.empty() ? 0.0 : static_cast<double>(same) / static_cast<double>(g.size());
  }
};

void write_arith_jsonl(const std::filesystem::path& file) {
  std::ofstream out(file);
  for (int i = 0; i < 16; ++i) {
    const int a = 10 + 7 * i % 80, b = 3 + i % 6;
    out << nlohmann::json{{"prompt", std::to_string(a) + "+" + std::to_string(b) + "="},
                          {"data_source", "arith"},
                          {"reward_model", {{"ground_truth", std::to_string(a + b)}}}}
               .dump()
        << "\n";
  }
}

using FitTrainer = PPOTrainer<verl::GRPO<>, Actor, verl::no_critic, Reference>;
using Provider = verl::data::DataProvider<verl::data::RLDataset>;

struct FitSetup {
  ArithTokenizer tokenizer;
  std::shared_ptr<const verl::data::RLDataset> dataset;
  std::unique_ptr<FitTrainer> trainer;

  explicit FitSetup(const std::filesystem::path& jsonl) {
    dataset = std::make_shared<const verl::data::RLDataset>(
        verl::data::RLDataset::load({jsonl.string()}, tokenizer, verl::data::RLDatasetOptions{}));
    auto actor = make_actor(21);
    Reference ref(make_lm(21));
    auto options = small_options();
    options.actor_optim.lr_scheduler_type = "cosine";  // a schedule whose state matters at resume
    options.actor_optim.lr_warmup_steps = 1;
    options.total_training_steps = 4;
    trainer = std::make_unique<FitTrainer>(actor, verl::no_critic{}, ref,
                                           verl::stages::scorer_of(PrefixMatch{}, tokenizer), options);
  }

  auto make_provider() {
    return [this](const nlohmann::json& resume) {
      verl::data::DataProviderOptions o;
      o.batch_size = 4;
      o.seed = 5;
      o.num_workers = 1;
      return std::make_unique<Provider>(dataset, o, resume);
    };
  }

  static verl::trainer::FitOptions fit_options(const std::filesystem::path& dir) {
    verl::trainer::FitOptions fo;
    fo.total_training_steps = 4;
    fo.save_freq = 1;
    fo.checkpoint_dir = dir;
    fo.max_ckpt_to_keep = 2;
    fo.progress_bar = false;
    fo.config_text = "trainer:\n  total_training_steps: 4\n";
    return fo;
  }
};

std::vector<torch::Tensor> snapshot(Actor& actor) {
  std::vector<torch::Tensor> out;
  for (const auto& p : actor.parameters()) out.push_back(p.detach().clone());
  return out;
}

}  // namespace

// Run by the test below in a child process: two steps with a checkpoint each, then SIGKILL (no clean exit).
TEST_CASE("fit child: two steps, then killed", "[.resume_child]") {
  const char* dir = std::getenv("VERL_RESUME_CHILD_DIR");
  REQUIRE(dir != nullptr);
  FitSetup setup(std::filesystem::path(dir) / "train.jsonl");
  verl::trainer::MetricsRegistry registry;
  registry.add_callback([](std::int64_t step, const verl::trainer::MetricMap&) {
    if (step == 2) std::raise(SIGKILL);
  });
  (void)setup.trainer->fit(setup.make_provider(), registry, FitSetup::fit_options(std::filesystem::path(dir) / "ckpt"));
  FAIL("the child should have been killed at step 2");
}

TEST_CASE("fit: killed after 2 of 4 steps and resumed gives bit-identical weights", "[trainer][fit]") {
  verl::test::TempDir tmp("fit_resume");
  write_arith_jsonl(tmp.path / "train.jsonl");
  torch::set_num_threads(2);

  // Uninterrupted: 4 steps with metrics in a JSONL file.
  std::vector<torch::Tensor> uninterrupted;
  {
    FitSetup setup(tmp.path / "train.jsonl");
    verl::trainer::MetricsRegistry registry;
    registry.add_exporter(verl::trainer::JsonlExporter((tmp.path / "metrics.jsonl").string()));
    auto fo = FitSetup::fit_options(tmp.path / "ckpt_full");
    const auto result = setup.trainer->fit(setup.make_provider(), registry, fo);
    CHECK(result.first_step == 1);
    CHECK(result.last_step == 4);
    CHECK(!result.resumed_from);
    for (const char* key : {"critic/score/mean", "actor/pg_loss", "actor/lr", "response_length/mean",
                            "perf/throughput", "timing_s/gen", "critic/score/max"}) {
      INFO(key);
      CHECK(result.last_metrics.count(key) == 1);
    }
    uninterrupted = snapshot(setup.trainer->actor());
    std::ifstream lines(tmp.path / "metrics.jsonl");
    std::string line;
    int n = 0;
    while (std::getline(lines, line)) ++n;
    CHECK(n == 4);
    // keep-last-2 and verl's tracker file.
    CHECK(!std::filesystem::exists(tmp.path / "ckpt_full" / "global_step_2"));
    CHECK(std::filesystem::exists(tmp.path / "ckpt_full" / "global_step_4" / "actor" / "model.safetensors"));
  }

  // A child process runs 2 steps (checkpoint after each) and is killed with SIGKILL.
  {
    std::string exe = std::filesystem::read_symlink("/proc/self/exe").string();
    std::string tag = "[.resume_child]";
    std::string env_dir = "VERL_RESUME_CHILD_DIR=" + tmp.path.string();
    std::vector<char*> argv{exe.data(), tag.data(), nullptr};
    std::vector<std::string> env_strings{env_dir, "OMP_NUM_THREADS=2"};
    for (char** e = environ; *e != nullptr; ++e) env_strings.emplace_back(*e);
    std::vector<char*> envp;
    for (auto& e : env_strings) envp.push_back(e.data());
    envp.push_back(nullptr);
    pid_t pid = 0;
    REQUIRE(posix_spawn(&pid, exe.c_str(), nullptr, nullptr, argv.data(), envp.data()) == 0);
    int status = 0;
    REQUIRE(waitpid(pid, &status, 0) == pid);
    REQUIRE(WIFSIGNALED(status));
    CHECK(WTERMSIG(status) == SIGKILL);
  }

  // Resume in this process: steps 3 and 4 from the step-2 checkpoint.
  FitSetup setup(tmp.path / "train.jsonl");
  verl::trainer::MetricsRegistry registry;
  const auto result = setup.trainer->fit(setup.make_provider(), registry, FitSetup::fit_options(tmp.path / "ckpt"));
  REQUIRE(result.resumed_from == std::optional<std::int64_t>(2));
  CHECK(result.first_step == 3);
  CHECK(result.last_step == 4);
  const auto resumed = snapshot(setup.trainer->actor());
  REQUIRE(resumed.size() == uninterrupted.size());
  for (std::size_t i = 0; i < resumed.size(); ++i) CHECK(torch::equal(resumed[i], uninterrupted[i]));
}

TEST_CASE("ReMax: the greedy baseline stage feeds the estimator (reward minus the greedy response's reward)",
          "[trainer][pipeline]") {
  auto actor = make_actor(12);
  Reference ref(make_lm(12));
  auto options = small_options();
  PPOTrainer<verl::ReMax<>, Actor, verl::no_critic, Reference> trainer(actor, {}, ref, target_fraction_scorer(),
                                                                       options);
  // One step of the stages before the update, to read the advantages.
  auto p = trainer.default_pipeline();
  verl::StepContext ctx;
  ctx.step = 1;
  auto rollout = std::get<0>(p.stages()).run(prompt_batch(4), ctx);
  auto with_baseline = std::get<1>(p.stages()).run(rollout, ctx);
  auto scored = std::get<2>(p.stages()).run(with_baseline, ctx);
  const auto& baselines = scored.get<reward_baselines>();  // (16,)
  REQUIRE(baselines.size(0) == 16);
  // Samples of one prompt share its baseline.
  CHECK(torch::equal(baselines.view({4, 4}), baselines.view({4, 4}).select(1, 0).unsqueeze(1).expand({4, 4})));
  // verl's ReMax: advantage = (reward-to-go of the scores) - baseline, on valid tokens.
  auto with_rewards = verl::put<token_level_rewards>(scored, scored.get<token_level_scores>());
  verl::stages::Advantage<verl::estimators::ReMax> adv;
  const auto out = adv.run(with_rewards, ctx);
  const auto mask = out.get<response_mask>().to(torch::kFloat);
  const auto expected = (out.get<token_level_scores>().flip(1).cumsum(1).flip(1) - baselines.unsqueeze(1)) * mask;
  CHECK(torch::allclose(out.get<advantages>() * mask, expected, 1e-6, 1e-6));
  // And the whole step runs.
  const auto m = trainer.step(prompt_batch(4));
  CHECK(m.count("timing_s/gen_max") == 1);
  CHECK(m.count("actor/pg_loss") == 1);
}

namespace {
// A rule with an extra "acc", as verl's math rules report: the score is the fraction of digits in the response
// (an untrained model already scores between 0 and 1, so the metrics below are not all zeros), acc = score > 0.5.
struct DigitFractionWithAcc {
  verl::RewardOutput operator()(const verl::RewardInput& in) const {
    double digits = 0;
    for (char c : in.response) digits += (c >= '0' && c <= '9') ? 1 : 0;
    const double s = in.response.empty() ? 0.0 : digits / static_cast<double>(in.response.size());
    return {s, {{"acc", s > 0.5 ? 1.0 : 0.0}}};
  }
};

void write_two_source_jsonl(const std::filesystem::path& file) {
  std::ofstream out(file);
  for (int i = 0; i < 10; ++i) {
    out << nlohmann::json{{"prompt", std::to_string(10 + i) + "+" + std::to_string(i % 4) + "="},
                          {"data_source", i % 3 == 0 ? "three" : "rest"},
                          {"reward_model", {{"ground_truth", std::to_string(10 + i + i % 4)}}}}
               .dump()
        << "\n";
  }
}
}  // namespace

TEST_CASE("validate: verl's per-data-source validation metrics (val-core/<source>/acc, val-aux/...reward)",
          "[trainer][validation]") {
  verl::test::TempDir tmp{"verl_validation"};
  const auto jsonl = tmp.path / "val.jsonl";
  write_two_source_jsonl(jsonl);
  ArithTokenizer tokenizer;
  auto dataset = std::make_shared<const verl::data::RLDataset>(
      verl::data::RLDataset::load({jsonl.string()}, tokenizer, verl::data::RLDatasetOptions{}));
  auto actor = make_actor(31);
  Reference ref(make_lm(31));
  auto options = small_options();
  FitTrainer trainer(actor, verl::no_critic{}, ref, verl::stages::scorer_of(DigitFractionWithAcc{}, tokenizer), options);
  auto val_provider = [&] {
    verl::data::DataProviderOptions o;
    o.batch_size = 4;  // 10 rows: batches of 4, 4, 2
    o.shuffle = false;
    o.drop_last = false;
    o.epochs = 1;
    o.num_workers = 0;
    return std::make_unique<Provider>(dataset, o);
  };

  // The expected values, computed independently: the whole dataset in one generate call (decoding is greedy,
  // so batching does not change the responses), scored one by one with the rule.
  auto expected_for = [&](const verl::SamplingParams& params) {
    verl::data::DataProviderOptions o;
    o.batch_size = 10;
    o.shuffle = false;
    o.epochs = 1;
    o.num_workers = 0;
    Provider all(dataset, o);
    auto batch = all.next();
    REQUIRE(batch);
    const auto r = actor.generate(batch->prompts, params);
    // source -> var -> per-prompt means
    std::map<std::string, std::map<std::string, std::vector<double>>> per_prompt;
    for (std::int64_t i = 0; i < 10; ++i) {
      double reward = 0, acc = 0;
      for (std::int64_t k = 0; k < params.n; ++k) {
        const auto row = i * params.n + k;
        std::vector<std::int64_t> ids;
        for (std::int64_t t = 0; t < r.responses.size(1); ++t)
          if (r.response_mask[row][t].item<bool>()) ids.push_back(r.responses[row][t].item<std::int64_t>());
        const std::string text = tokenizer.decode(ids);
        const auto out = DigitFractionWithAcc{}(verl::make_reward_input(batch->items[static_cast<std::size_t>(i)], text));
        reward += out.score;
        acc += out.extra.at("acc");
      }
      const auto& source = batch->items[static_cast<std::size_t>(i)].data_source;
      per_prompt[source]["reward"].push_back(reward / static_cast<double>(params.n));
      per_prompt[source]["acc"].push_back(acc / static_cast<double>(params.n));
    }
    std::map<std::string, double> means;
    for (const auto& [source, vars] : per_prompt)
      for (const auto& [var, v] : vars) means[source + "/" + var] = std::accumulate(v.begin(), v.end(), 0.0) / v.size();
    return means;
  };

  SECTION("greedy, n = 1 (verl's default val_kwargs)") {
    const auto params = verl::trainer::validation_sampling(options.rollout);
    CHECK(params.greedy());
    CHECK(params.n == 1);
    auto provider = val_provider();
    const auto val = trainer.validate(*provider, params);
    REQUIRE(val.samples.size() == 10);
    CHECK(val.samples[3].data_source == "three");
    CHECK(val.samples[4].data_source == "rest");
    CHECK(val.samples[9].prompt_index == 9);
    const auto expected = expected_for(params);
    // acc is the core variable; reward and the rule's "score" are auxiliary.
    CHECK(val.metrics.at("val-core/three/acc/mean@1") == Approx(expected.at("three/acc")).margin(1e-12));
    CHECK(val.metrics.at("val-core/rest/acc/mean@1") == Approx(expected.at("rest/acc")).margin(1e-12));
    CHECK(val.metrics.at("val-aux/three/reward/mean@1") == Approx(expected.at("three/reward")).margin(1e-12));
    CHECK(val.metrics.at("val-aux/rest/reward/mean@1") == Approx(expected.at("rest/reward")).margin(1e-12));
    CHECK(val.metrics.at("val-aux/rest/score/mean@1") == Approx(expected.at("rest/reward")).margin(1e-12));
    CHECK(val.metrics.count("val-core/rest/reward/mean@1") == 0);
    CHECK(val.metrics.count("timing_s/testing") == 1);
    // Validation does not train: a second pass gives the same metrics.
    auto again = val_provider();
    CHECK(trainer.validate(*again, params).metrics.at("val-aux/rest/reward/mean@1") ==
          val.metrics.at("val-aux/rest/reward/mean@1"));
  }
  SECTION("sampled, n = 3: mean@3 is core, std@3 auxiliary, samples of a prompt adjacent") {
    const auto params = verl::trainer::validation_sampling(options.rollout, 3, /*do_sample=*/true, 1.0);
    auto provider = val_provider();
    const auto val = trainer.validate(*provider, params);
    REQUIRE(val.samples.size() == 30);
    CHECK(val.samples[5].prompt_index == 1);
    CHECK(val.metrics.count("val-core/three/acc/mean@3") == 1);
    CHECK(val.metrics.count("val-aux/three/acc/std@3") == 1);
    CHECK(val.metrics.count("val-aux/rest/reward/std@3") == 1);
    // The mean over a source's prompts of the per-prompt mean reward, from the samples.
    std::map<std::int64_t, double> sum;
    for (const auto& s : val.samples)
      if (s.data_source == "rest") sum[s.prompt_index] += s.score / 3.0;
    double mean = 0;
    for (const auto& [_, v] : sum) mean += v / static_cast<double>(sum.size());
    CHECK(val.metrics.at("val-aux/rest/reward/mean@3") == Approx(mean).margin(1e-12));
  }
  SECTION("a provider with no batch is an error") {
    struct Empty {
      std::optional<verl::data::PromptBatch> next() { return std::nullopt; }
    } empty;
    CHECK_THROWS_WITH(trainer.validate(empty, verl::trainer::validation_sampling(options.rollout)),
                      Catch::Contains("returned no batch"));
  }
}

TEST_CASE("fit: a checkpoint saved without optimizer state resumes, and says what it did not restore",
          "[trainer][checkpoint]") {
  verl::test::TempDir tmp{"verl_fit_no_optim"};
  write_arith_jsonl(tmp.path / "train.jsonl");
  auto fo = FitSetup::fit_options(tmp.path / "ckpt");
  fo.save_optimizer = false;
  fo.total_training_steps = 2;
  {
    FitSetup setup(tmp.path / "train.jsonl");
    verl::trainer::MetricsRegistry registry;
    const auto r = setup.trainer->fit(setup.make_provider(), registry, fo);
    CHECK(r.last_step == 2);
    CHECK(!r.resumed_from);
  }
  FitSetup setup(tmp.path / "train.jsonl");
  verl::trainer::MetricsRegistry registry;
  fo.total_training_steps = 3;
  const auto r = setup.trainer->fit(setup.make_provider(), registry, fo);
  REQUIRE(r.resumed_from == 2);
  CHECK(r.first_step == 3);
  CHECK(r.last_step == 3);
  REQUIRE(r.not_restored.size() == 1);
  CHECK(r.not_restored[0] == "optimizer `actor`");
  // With the optimizer state required, the same checkpoint is refused, naming the part.
  FitSetup strict(tmp.path / "train.jsonl");
  auto manager = verl::trainer::CheckpointManager(tmp.path / "ckpt", {});
  auto last = manager.resume();
  REQUIRE(last);
  verl::trainer::CheckpointContents parts;
  parts.optimizer("actor", strict.trainer->actor_optimizer(), strict.trainer->actor().named_parameters());
  CHECK_THROWS_WITH(last->restore(parts), Catch::Contains("optimizer") && Catch::Contains("actor"));
}

TEST_CASE("progress bars: rollout over finished responses, update over optimizer steps", "[trainer][pipeline]") {
  auto actor = make_actor(41);
  Reference ref(make_lm(41));
  auto options = small_options();  // 4 prompts x n = 4, mini-batches of 4 prompts: 1 optimizer step per epoch
  options.ppo_epochs = 2;
  PPOTrainer<verl::GRPO<>, Actor, verl::no_critic, Reference> trainer(actor, {}, ref, target_fraction_scorer(), options);
  auto p = trainer.default_pipeline();
  std::FILE* out = std::tmpfile();
  REQUIRE(out != nullptr);
  const verl::trainer::ProgressBarOptions forced{.show = verl::trainer::ProgressBarOptions::Show::always, .stream = out};
  std::get<verl::stages::Generate<Actor>>(p.stages()).progress_bar = forced;
  p.stage<verl::stages::UpdateActor<Actor, verl::losses::VanillaPPO, true>>().schedule.progress_bar = forced;
  (void)trainer.step(p, prompt_batch(4));
  std::rewind(out);
  std::string text;
  for (int c = std::fgetc(out); c != EOF; c = std::fgetc(out)) text += static_cast<char>(c);
  std::fclose(out);
  CHECK_THAT(text, Catch::Contains("rollout: 100%") && Catch::Contains("16/16"));
  CHECK_THAT(text, Catch::Contains("update_actor: 100%") && Catch::Contains("2/2") && Catch::Contains("pg_loss="));
  // After the rollout the actor's progress hook is removed: a plain generate() does not touch the dead bar.
  (void)trainer.step(prompt_batch(4));
}

}  // namespace test_ppo_trainer
