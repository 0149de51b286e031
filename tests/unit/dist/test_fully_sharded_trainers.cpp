// The trainers running FULLY SHARDED (include/verl/dist/fully_sharded_actor.hpp with
// include/verl/trainer/sft_trainer.hpp, ppo_update.hpp, ppo_trainer.hpp), on real processes over Gloo.
//
// Multi-process cases start this test executable itself as 2 or 4 ranks through verl::dist::launch_local (as
// tests/unit/dist/test_data_parallel.cpp does); each rank runs the hidden test case "[.fsdp_trainers_worker]" in
// the mode named by VERL_FSDP_TRAINERS_MODE and the parent checks every rank's exit status. Every rank also
// trains the single-process reference itself (same seed, the whole global batch, no communication) and compares.
//
// Semantics pinned: torch 2.11's FSDP (rank 0's weights broadcast, gradients reduce-scattered and averaged,
// AdamW on the shards, clip_grad_norm_ over the unsharded gradients: the shards' sums of squares all-reduced),
// verl 0.7.1's SFT loss (-sum(log p * mask) / global tokens * dp_size, DistributedSampler's interleaved rows) and
// update_policy (contiguous chunks, per-rank mini-batches, global normalisers with dp_size; dynamic micro-batches
// with the group's largest count, rearrange_micro_batches' same_micro_num_in_dp).
//
// Gradient clipping is ACTIVE in every comparison (the single-process gradient norm is checked to exceed the
// clip): a local (per-shard) norm or a missing reduce-scatter would change the update and fail the comparison.
//
// Tolerances: the SFT and update_policy comparisons run the tiny model in float64, where the sharded and the
// single-process gradients differ only by the order of the additions (each rank sums its rows, the
// reduce-scatter sums the ranks; the norm is summed per shard): parameters after three AdamW steps within 1e-12
// absolute (they are O(0.1..1)), metrics within 1e-12 relative. The resume case is exact (bitwise: the same
// ranks, the same operations, a float32 model whose checkpoint holds its exact bytes). The GRPO step runs
// float32 (the rollout engine's dtype) with the update made to follow the gradient (AdamW lr = eps = 1e3, as
// test_data_parallel.cpp), compared at 1e-4 relative / 1e-6 absolute.
#include "catch_torch.hpp"

#include "dist_test_support.hpp"
#include "error_of.hpp"
#include "temp_dir.hpp"
#include "verl/dist/data_parallel.hpp"
#include "verl/dist/fully_sharded_actor.hpp"
#include "verl/dist/gloo.hpp"
#include "verl/dist/launch_env.hpp"
#include "verl/dist/launch_local.hpp"
#include "verl/dist/single_process_communicator.hpp"
#include "verl/algos/policy_losses.hpp"
#include "verl/algos/presets.hpp"
#include "verl/core/batch.hpp"
#include "verl/data/rl_dataset.hpp"
#include "verl/models/actor.hpp"
#include "verl/trainer/ppo_trainer.hpp"
#include "verl/trainer/ppo_update.hpp"
#include "verl/trainer/sft_trainer.hpp"

#include <torch/torch.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace test_fully_sharded_trainers {  // one namespace per file: a unity build (tests/CMakeLists.txt) may join files

using verl::test::error_of;
using namespace std::chrono_literals;

namespace {

using Single = verl::dist::SingleProcessCommunicator;

using verl::test::bitwise_equal;
using verl::test::sft_batch;
using verl::test::UpdateBatch;

//! The tiny actor, the same weights for one seed, in `dtype`.
verl::models::Actor tiny_actor(std::uint64_t seed, at::ScalarType dtype = at::kDouble) {
  torch::manual_seed(seed);
  verl::models::CausalLM lm(verl::test::tiny_qwen2_config());
  lm->init_weights(0.05);
  lm->to(dtype);
  verl::models::ActorOptions ao;
  ao.generation.eos_token_ids = {1};
  ao.generation.pad_token_id = 0;
  return verl::models::Actor(lm, ao);
}

//! The parameters by name: a plain actor's, or a sharded one's gathered (collective).
std::vector<std::pair<std::string, torch::Tensor>> named(verl::models::Actor& a) {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  for (const auto& item : a.named_parameters()) out.emplace_back(item.key(), item.value().detach().clone());
  return out;
}

//! The largest absolute difference over same-named tensors (names must match in order).
double max_diff(const std::vector<std::pair<std::string, torch::Tensor>>& a,
                const std::vector<std::pair<std::string, torch::Tensor>>& b) {
  REQUIRE(a.size() == b.size());
  double d = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    REQUIRE(a[i].first == b[i].first);
    d = std::max(d, (a[i].second.to(torch::kDouble) - b[i].second.to(torch::kDouble)).abs().max().item<double>());
  }
  return d;
}

//! SFT options with clipping that acts (the tiny model's gradient norms are ~1; checked below).
verl::trainer::SFTOptions sft_options() {
  verl::trainer::SFTOptions o;
  o.micro_batch_size_per_gpu = 2;  // 4 rows per rank: 2 micro-batches
  o.lr = 1e-2;
  o.weight_decay = 0.01;
  o.clip_grad = 0.05;
  return o;
}

//! The batches of a fit() run (one per step) with a resumable position.
struct BatchProvider {
  std::vector<verl::data::SFTBatch> batches;
  std::size_t pos = 0;
  std::optional<verl::data::SFTBatch> next() {
    if (pos >= batches.size()) return std::nullopt;
    return batches[pos++];
  }
  [[nodiscard]] nlohmann::json state() const { return {{"pos", pos}}; }
};

}  // namespace

#if VERL_DIST_HAS_GLOO
namespace {

using Gloo = verl::dist::ProcessGroupCommunicator<verl::dist::gloo>;
using ShardedActor = verl::dist::FullyShardedActor<Gloo>;

//! Starts `n` ranks of this executable in `mode` (saving into `dir`).
verl::dist::LocalLaunchResult run_ranks(int n, const std::string& mode, const std::filesystem::path& dir = {}) {
  return verl::test::launch_self(n, "[.fsdp_trainers_worker]",
                                 {{"VERL_FSDP_TRAINERS_MODE", mode}, {"VERL_FSDP_TRAINERS_DIR", dir.string()}}, 90000ms);
}

//! SFTTrainer fully sharded over N ranks equals the 1-process SFTTrainer and the data-parallel one on the same
//! global batches: weights, train/loss, train/grad_norm; traffic of a step; misuse.
void check_sft(Gloo& world) {
  const int n = world.world_size(), r = world.rank();
  const auto o = sft_options();
  verl::trainer::SFTTrainer<verl::models::Actor> single(tiny_actor(3), o);
  auto dp_actor = tiny_actor(3);
  verl::trainer::SFTTrainer<verl::models::Actor> dp(dp_actor, o, verl::dist::make_data_parallel(world, dp_actor.parameters()));
  // Every rank starts from other weights: the construction broadcasts rank 0's.
  auto policy = verl::dist::make_fully_sharded_actor(tiny_actor(3 + static_cast<std::uint64_t>(r)), world);
  verl::trainer::SFTTrainer<ShardedActor> fsdp(policy, o);  // takes policy.synchronizer()
  REQUIRE(fsdp.data_parallel() == policy.synchronizer());
  REQUIRE(fsdp.data_parallel()->shards_parameters());
  const auto initial = named(single.policy());
  CHECK(bitwise_equal(policy.full_state_dict(), initial));
  const auto units = policy.sharded().unit_count();  // 2 layers, embed_tokens, the root (norm + lm_head)
  REQUIRE(units == 4);
  for (int step = 0; step < 3; ++step) {
    INFO("step " << step << ", rank " << r << " of " << n);
    const auto batch = sft_batch(step, 4 * n);
    const auto ms = single.step(batch);
    const auto md = dp.step(batch);
    const auto mf = fsdp.step(batch);
    REQUIRE(ms.at("train/grad_norm") > o.clip_grad);  // clipping acts
    CHECK(mf.at("train/loss") == Approx(ms.at("train/loss")).epsilon(1e-12));
    CHECK(mf.at("train/grad_norm") == Approx(ms.at("train/grad_norm")).epsilon(1e-12));
    CHECK(mf.at("train/grad_norm") == Approx(md.at("train/grad_norm")).epsilon(1e-12));
    CHECK(mf.at("train/global_tokens") == ms.at("train/global_tokens"));
    CHECK(mf.at("train/lr") == ms.at("train/lr"));
    const auto want = named(single.policy());
    const auto got = policy.full_state_dict();
    const double diff = max_diff(got, want), diff_dp = max_diff(got, named(dp_actor));
    INFO("max |fsdp - single| " << diff << ", max |fsdp - dp| " << diff_dp);
    CHECK(diff < 1e-12);
    CHECK(diff_dp < 1e-12);
    // The collectives between the previous step's finish() and this one's: 2 micro-batches, each gathering every
    // unit in forward and again in backward (reshard_after_forward) and reduce-scattering it in backward (6u);
    // the full_state_dict() gathers after the previous step or before the first (u); the previous step's
    // gradient-norm all-reduce (its optimizer step runs after its finish()).
    const auto t = fsdp.data_parallel()->last_step_traffic();
    const auto u = static_cast<std::int64_t>(units);
    CHECK(t.started_in_backward == 2 * u);
    CHECK(t.collectives == 6 * u + u + (step == 0 ? 0 : 1));
  }
  REQUIRE(max_diff(named(single.policy()), initial) > 1e-3);  // the steps moved the weights

  // Misuse: a DataParallel over the shards would average them as replicas (made without its broadcast, which
  // would overwrite the shards with rank 0's).
  CHECK_THAT(error_of<verl::ConfigError>([&] {
               verl::trainer::SFTTrainer<ShardedActor> t(
                   policy, o,
                   verl::dist::make_data_parallel(world, policy.parameters(), {.broadcast_at_construction = false}));
             }),
             Catch::Matchers::Contains("the policy is fully sharded and brings its own gradient synchroniser"));
  world.barrier();
}

//! A sharded SFT fit of 4 steps equals 2 steps, a checkpoint, fresh trainers resuming, 2 more steps (bitwise);
//! the checkpoint is in single-process layout: one process resumes from it and continues as the sharded run.
void check_resume(Gloo& world, const std::filesystem::path& dir) {
  auto o = sft_options();
  o.lr = 1e3;  // float32: AdamW with lr = eps = 1e3 moves a parameter by ~ its (clipped) gradient
  o.eps = 1e3;
  o.weight_decay = 0.0;
  std::vector<verl::data::SFTBatch> batches;
  for (int s = 0; s < 4; ++s) batches.push_back(sft_batch(10 + s, 4 * world.world_size()));
  const auto make_provider = [&](const nlohmann::json& state) {
    auto p = std::make_unique<BatchProvider>();
    p->batches = batches;
    if (!state.is_null()) p->pos = state.at("pos").get<std::size_t>();
    return p;
  };
  const auto fit = [&](auto& trainer, std::int64_t total, std::int64_t save_freq,
                       std::optional<std::filesystem::path> from = std::nullopt) {
    verl::trainer::MetricsRegistry registry;
    verl::trainer::OfflineFitOptions fo;
    fo.total_training_steps = total;
    fo.save_freq = save_freq;
    fo.checkpoint_dir = dir / "ckpt";
    fo.progress_bar = false;
    fo.resume_from_path = std::move(from);
    return trainer.fit(make_provider, registry, fo);
  };
  const auto sharded = [&](std::uint64_t seed) {
    return verl::dist::make_fully_sharded_actor(tiny_actor(seed, at::kFloat), world);
  };
  // Uninterrupted: 4 steps, no checkpoint.
  auto straight = sharded(5);
  {
    verl::trainer::SFTTrainer<ShardedActor> t(straight, o);
    verl::trainer::MetricsRegistry registry;
    verl::trainer::OfflineFitOptions fo;
    fo.total_training_steps = 4;
    fo.progress_bar = false;
    fo.resume = false;
    const auto res = t.fit(make_provider, registry, fo);
    CHECK(res.last_step == 4);
  }
  const auto want = straight.full_state_dict();
  // 2 steps and a checkpoint at step 2 (every rank gathers, rank 0 writes).
  {
    auto first = sharded(5);
    verl::trainer::SFTTrainer<ShardedActor> t(first, o);
    const auto res = fit(t, 2, 2);
    CHECK(res.last_step == 2);
    CHECK(res.checkpoints.size() == (world.rank() == 0 ? 1U : 0U));
  }
  const auto ckpt = dir / "ckpt" / "global_step_2";
  REQUIRE(std::filesystem::exists(ckpt / "MANIFEST.json"));  // complete before fit returned on any rank
  // The optimizer state is the single-process one: one entry per model parameter, Hugging Face names.
  {
    std::ifstream in(ckpt / "optimizer" / "actor" / "optimizer.json");
    const auto j = nlohmann::json::parse(in);
    const auto names = j.at("param_groups").at(0).at("params").get<std::vector<std::string>>();
    auto plain = tiny_actor(5, at::kFloat);
    std::vector<std::string> want_names;
    for (const auto& item : plain.named_parameters()) want_names.push_back(item.key());
    CHECK(names == want_names);
    CHECK(j.at("state").size() == want_names.size());
    CHECK(j.at("state").at("model.norm.weight").at("step").get<int>() == 2);
  }
  // Fresh trainers (other initial weights: the checkpoint must replace them) resume and run steps 3 and 4.
  {
    auto resumed = sharded(99);
    verl::trainer::SFTTrainer<ShardedActor> t(resumed, o);
    const auto res = fit(t, 4, 2);
    REQUIRE(res.resumed_from == std::optional<std::int64_t>(2));
    CHECK(res.first_step == 3);
    CHECK(t.global_step() == 4);
    const auto got = resumed.full_state_dict();
    INFO("max |resumed - straight| " << max_diff(got, want));
    CHECK(bitwise_equal(got, want));
  }
  // One process resumes from the same (sharded) checkpoint: it continues as the sharded run did.
  {
    auto plain = tiny_actor(98, at::kFloat);
    verl::trainer::SFTTrainer<verl::models::Actor> t(plain, o);
    const auto res = fit(t, 4, -1, ckpt);
    REQUIRE(res.resumed_from == std::optional<std::int64_t>(2));
    const double diff = max_diff(named(plain), want);
    INFO("max |one process resumed - sharded| " << diff);
    CHECK(diff < 1e-5);  // float32, another summation order
  }
  world.barrier();
}

//! update_policy with a fully sharded actor over N ranks (each its contiguous chunk, per-rank mini-batches of
//! mini/N rows) equals one process on the same global mini-batches; fixed and dynamic micro-batches.
void check_ppo_update(Gloo& world) {
  const int n = world.world_size(), r = world.rank();
  constexpr std::int64_t kRows = 16, kMini = 8;  // 2 optimizer steps per epoch
  auto reference_actor = tiny_actor(9);
  const auto batch = verl::test::update_batch(reference_actor, kRows, torch::kDouble);
  // Rank r's chunk is rows [r*16/N, (r+1)*16/N); its k-th mini-batch is rows k*8/N.. of that chunk: the global
  // mini-batch k is their union, so the single-process batch is re-ordered to hold it as its k-th (rank order).
  const std::int64_t chunk = kRows / n, per_mini = kMini / n;
  const auto order = verl::test::data_parallel_row_order(kRows, kMini, n);
  const auto single_batch = batch.index_select(torch::tensor(order, torch::kLong));
  const auto my_chunk = batch.slice(r * chunk, (r + 1) * chunk);
  const auto adamw = [] { return torch::optim::AdamWOptions(1e-2).weight_decay(0.01); };
  for (const bool dynamic : {false, true}) {
    for (auto mode : {verl::LossAggMode::token_mean, verl::LossAggMode::seq_mean_token_mean}) {
      INFO(verl::to_string(mode) << (dynamic ? ", dynamic micro-batches" : "") << ", rank " << r << " of " << n);
      verl::trainer::ActorLossSettings settings;
      settings.loss_agg_mode = mode;
      settings.entropy_coeff = 0.01;
      verl::trainer::UpdateSchedule schedule;
      schedule.ppo_mini_batch_size = kMini;
      schedule.micro_batch_size = 2;
      schedule.use_dynamic_bsz = dynamic;
      schedule.max_token_len = 12;  // rows of 5..9 tokens: 1 or 2 per micro-batch, so counts differ between ranks
      schedule.ppo_epochs = 2;
      schedule.grad_clip = 0.02;
      auto single = tiny_actor(9);
      torch::optim::AdamW opt_single(single.parameters(), adamw());
      verl::StepContext ctx_single;
      ctx_single.step = 1;
      verl::trainer::update_policy(single, opt_single, verl::losses::VanillaPPO{}, single_batch, schedule, settings,
                                   ctx_single);
      auto policy = verl::dist::make_fully_sharded_actor(tiny_actor(r == 0 ? 9 : 100 + static_cast<std::uint64_t>(r)),
                                                         world);
      auto sharded_schedule = schedule;
      sharded_schedule.ppo_mini_batch_size = per_mini;
      sharded_schedule.data_parallel = policy.synchronizer();
      torch::optim::AdamW opt(policy.parameters(), adamw());  // steps this rank's shards
      verl::StepContext ctx;
      ctx.step = 1;
      verl::trainer::update_policy(policy, opt, verl::losses::VanillaPPO{}, my_chunk, sharded_schedule, settings, ctx);
      const auto want = named(single), got = policy.full_state_dict();
      REQUIRE(max_diff(want, named(reference_actor)) > 1e-3);
      const double diff = max_diff(got, want);
      INFO("max |fsdp - single| " << diff);
      CHECK(diff < 1e-12);
      const auto ms = ctx_single.reduced(), mf = ctx.reduced();
      REQUIRE(ms.at("actor/grad_norm") > schedule.grad_clip);  // clipping acts
      CHECK(mf.at("actor/pg_loss") == Approx(ms.at("actor/pg_loss")).epsilon(1e-12).margin(1e-14));
      CHECK(mf.at("actor/grad_norm") == Approx(ms.at("actor/grad_norm")).epsilon(1e-12));
      CHECK(sharded_schedule.data_parallel->total_traffic().steps == 4);  // 2 epochs x 2 mini-batches
    }
  }
  world.barrier();
}

using ShardedGRPO = verl::trainer::PPOTrainer<verl::GRPO<>, ShardedActor, verl::no_critic, verl::models::Reference>;

//! GRPO options: 4 samples per prompt, the whole batch one mini-batch, 2 epochs, clipping that acts.
verl::trainer::PPOOptions grpo_options() {
  verl::trainer::PPOOptions o;
  o.rollout.n = 4;
  o.rollout.max_tokens = 6;
  o.rollout.temperature = 1.0;
  o.rollout.seed = 3;
  o.ppo_mini_batch_size = 4;  // prompts: the whole batch
  o.ppo_micro_batch_size = 2;
  o.ppo_epochs = 2;
  o.grad_clip = 1e-3;         // acts (checked)
  o.actor_optim.lr = 1e3;     // with eps = 1e3 the update is ~ the clipped gradient (see the file comment)
  o.actor_optim.eps = 1e3;
  o.actor_optim.weight_decay = 0.0;
  o.kl_loss_coef = 0.01;
  o.progress_bars = verl::trainer::ProgressBarOptions::Show::never;
  return o;
}

//! Score: the fraction of response tokens equal to 7, on the last valid token.
verl::stages::Scorer grpo_scorer() {
  return [](const verl::stages::ScoreRequest& q, verl::StepContext&) {
    const auto mask = q.response_mask.to(torch::kFloat);                                        // (B,R)
    const auto len = mask.sum(1);                                                              // (B,)
    const auto frac = (q.responses.eq(7).to(torch::kFloat) * mask).sum(1) / len.clamp_min(1);  // (B,)
    auto scores = torch::zeros(mask.sizes(), torch::kFloat);                                   // (B,R)
    scores.scatter_(1, (len - 1).clamp_min(0).to(torch::kLong).unsqueeze(1), frac.unsqueeze(1));
    return scores;
  };
}

//! 4 left-padded prompts of 2..4 tokens.
verl::Prompts grpo_prompts() {
  auto ids = torch::zeros({4, 4}, torch::kLong), mask = torch::zeros({4, 4}, torch::kLong);  // (4,4) each
  for (std::int64_t i = 0; i < 4; ++i)
    for (std::int64_t j = 4 - (2 + i % 3); j < 4; ++j) {
      ids[i][j] = 2 + (3 * i + 5 * j) % 14;
      mask[i][j] = 1;
    }
  return verl::Prompts{ids, mask, (mask.cumsum(1) - 1).clamp_min(0)};
}

//! A GRPO step of PPOTrainer with a fully sharded actor over 2 ranks (each its 2 of the 4 prompts, seeded
//! sampling on the gathered weights) equals the 1-process step on all 4.
void check_grpo(Gloo& world) {
  using Plain = verl::trainer::PPOTrainer<verl::GRPO<>, verl::models::Actor, verl::no_critic, verl::models::Reference>;
  using Sharded = ShardedGRPO;
  const auto options = grpo_options;
  const auto scorer = grpo_scorer();
  const auto p = grpo_prompts();
  const verl::trainer::PromptBatch prompts(p.input_ids, p.attention_mask, p.position_ids);

  auto single_actor = tiny_actor(20, at::kFloat);
  Plain single(single_actor, verl::no_critic{}, verl::models::Reference::copy_of(single_actor), scorer, options());
  // The reference is copied from rank 0's initial weights before sharding (afterwards the actor's model holds
  // memory only while gathered); it stays a replica.
  auto mine = tiny_actor(20, at::kFloat);
  auto reference = verl::models::Reference::copy_of(mine);
  auto policy = verl::dist::make_fully_sharded_actor(mine, world);
  Sharded sharded(policy, verl::no_critic{}, reference, scorer, options());
  REQUIRE(sharded.options().actor_data_parallel == policy.synchronizer());
  const auto before = named(single_actor);
  const auto ms = single.step(prompts);
  const auto mf = sharded.step(prompts);
  INFO("rank " << world.rank());
  REQUIRE(ms.at("actor/grad_norm") > 1e-3);  // clipping acts
  const auto want = named(single_actor), got = policy.full_state_dict();
  REQUIRE(max_diff(want, before) > 1e-4);
  for (std::size_t i = 0; i < want.size(); ++i) {
    INFO(want[i].first);
    CHECK(torch::allclose(got[i].second - before[i].second, want[i].second - before[i].second, 1e-4, 1e-6));
  }
  CHECK(mf.at("actor/pg_loss") == Approx(ms.at("actor/pg_loss")).epsilon(1e-4).margin(1e-6));
  CHECK(mf.at("actor/kl_loss") == Approx(ms.at("actor/kl_loss")).epsilon(1e-4).margin(1e-7));
  CHECK(mf.at("actor/grad_norm") == Approx(ms.at("actor/grad_norm")).epsilon(1e-4));
  CHECK(mf.at("rollout/num_sequences") == 8);  // this rank's 2 prompts x 4
  world.barrier();
}

//! The same prompts at every step, with a resumable position (PPOTrainer::fit's provider).
struct PromptProvider {
  std::size_t pos = 0, count = 2;
  std::optional<verl::data::PromptBatch> next() {
    if (pos >= count) return std::nullopt;
    ++pos;
    return verl::data::PromptBatch{grpo_prompts(), {}, {}};
  }
  [[nodiscard]] nlohmann::json state() const { return {{"pos", pos}}; }
};

//! PPOTrainer::fit with a fully sharded actor: 1 step, a checkpoint (gathered, rank 0 writes), fresh trainers
//! resuming and running step 2 equal the uninterrupted 2-step fit bitwise.
void check_grpo_fit(Gloo& world, const std::filesystem::path& dir) {
  const auto make_provider = [](const nlohmann::json& state) {
    auto p = std::make_unique<PromptProvider>();
    if (!state.is_null()) p->pos = state.at("pos").get<std::size_t>();
    return p;
  };
  const auto run = [&](std::uint64_t seed, std::int64_t total, std::int64_t save_freq) {
    auto policy = verl::dist::make_fully_sharded_actor(tiny_actor(seed, at::kFloat), world);
    auto o = grpo_options();
    o.total_training_steps = 2;
    ShardedGRPO trainer(policy, verl::no_critic{}, verl::models::Reference::copy_of(tiny_actor(20, at::kFloat)),
                        grpo_scorer(), o);
    verl::trainer::MetricsRegistry registry;
    verl::trainer::FitOptions fo;
    fo.total_training_steps = total;
    fo.save_freq = save_freq;
    fo.resume = save_freq > 0;
    fo.checkpoint_dir = save_freq > 0 ? dir / "ppo" : std::filesystem::path();
    fo.progress_bar = false;
    const auto result = trainer.fit(make_provider, registry, fo);
    return std::make_pair(result, policy.full_state_dict());
  };
  const auto [straight, want] = run(20, 2, -1);
  CHECK(straight.last_step == 2);
  const auto [first, at_step_1] = run(20, 1, 1);
  CHECK(first.last_step == 1);
  REQUIRE(std::filesystem::exists(dir / "ppo" / "global_step_1" / "MANIFEST.json"));
  const auto [resumed, got] = run(77, 2, 1);  // other initial weights: the checkpoint replaces them
  REQUIRE(resumed.resumed_from == std::optional<std::int64_t>(1));
  CHECK(resumed.first_step == 2);
  INFO("max |resumed - straight| " << max_diff(got, want));
  REQUIRE(max_diff(want, at_step_1) > 1e-6);  // step 2 moved the weights
  CHECK(bitwise_equal(got, want));
  world.barrier();
}

}  // namespace

// Run in each rank started by the tests below.
TEST_CASE("fully sharded trainers worker rank", "[.fsdp_trainers_worker]") {
  const char* mode_env = std::getenv("VERL_FSDP_TRAINERS_MODE");
  const char* dir_env = std::getenv("VERL_FSDP_TRAINERS_DIR");
  REQUIRE(mode_env != nullptr);
  const std::string mode = mode_env;
  auto world = Gloo::init(verl::dist::launch_env_from_environ(), {.timeout = std::chrono::milliseconds(30000)});
  if (mode == "sft") {
    check_sft(world);
  } else if (mode == "resume") {
    REQUIRE(dir_env != nullptr);
    check_resume(world, dir_env);
  } else if (mode == "ppo_update") {
    check_ppo_update(world);
  } else if (mode == "grpo") {
    check_grpo(world);
  } else if (mode == "grpo_fit") {
    REQUIRE(dir_env != nullptr);
    check_grpo_fit(world, dir_env);
  } else {
    FAIL("unknown VERL_FSDP_TRAINERS_MODE " << mode);
  }
}

TEST_CASE("SFTTrainer fully sharded over 2 and 4 Gloo processes equals the 1-process and the data-parallel runs",
          "[dist][fsdp][trainer]") {
  for (int n : {2, 4}) {
    INFO(n << " ranks");
    const auto result = run_ranks(n, "sft");
    INFO(result.summary());
    CHECK(result.ok());
  }
}

TEST_CASE("SFTTrainer fully sharded: a resumed fit equals the uninterrupted one and its checkpoint resumes in one process",
          "[dist][fsdp][trainer]") {
  verl::test::TempDir dir("fsdp_trainers");
  const auto result = run_ranks(2, "resume", dir.path);
  INFO(result.summary());
  CHECK(result.ok());
}

TEST_CASE("update_policy with a fully sharded actor over 2 Gloo processes equals one process",
          "[dist][fsdp][trainer]") {
  const auto result = run_ranks(2, "ppo_update");
  INFO(result.summary());
  CHECK(result.ok());
}

TEST_CASE("a GRPO step of PPOTrainer with a fully sharded actor over 2 Gloo processes equals the 1-process step",
          "[dist][fsdp][trainer]") {
  const auto result = run_ranks(2, "grpo");
  INFO(result.summary());
  CHECK(result.ok());
}

TEST_CASE("PPOTrainer::fit with a fully sharded actor: a resumed fit equals the uninterrupted one",
          "[dist][fsdp][trainer]") {
  verl::test::TempDir dir("fsdp_ppo_fit");
  const auto result = run_ranks(2, "grpo_fit", dir.path);
  INFO(result.summary());
  CHECK(result.ok());
}
#else
TEST_CASE("fully sharded trainers: multi-process tests", "[dist][fsdp][trainer]") {
  WARN("not built: this build has no Gloo headers (<gloo/algorithm.h>; install Debian's libgloo-dev)");
}
#endif

TEST_CASE("FullyShardedActor on one rank: an ActorModel the trainers train as the plain actor",
          "[dist][fsdp][trainer]") {
  using Actor1 = verl::dist::FullyShardedActor<Single>;
  STATIC_REQUIRE(verl::ActorModel<Actor1>);
  auto policy = verl::dist::make_fully_sharded_actor(tiny_actor(3), Single{});
  CHECK(policy.parameters().size() == 4);  // one flat shard per unit
  const auto o = sft_options();
  verl::trainer::SFTTrainer<Actor1> sharded(policy, o);
  verl::trainer::SFTTrainer<verl::models::Actor> plain(tiny_actor(3), o);
  for (int step = 0; step < 2; ++step) {
    const auto batch = sft_batch(step, 4);
    const auto mp = plain.step(batch);
    const auto mf = sharded.step(batch);
    CHECK(mf.at("train/grad_norm") == Approx(mp.at("train/grad_norm")).epsilon(1e-12));
    CHECK(mf.at("train/loss") == Approx(mp.at("train/loss")).epsilon(1e-12));
  }
  CHECK(max_diff(policy.full_state_dict(), named(plain.policy())) < 1e-12);
  // The model's own tensors are sharded: reading one outside a gather names the problem.
  CHECK_THROWS_WITH(policy.actor().lm()->model->norm->weight.sum(),
                    Catch::Matchers::Contains("was read while the unit is sharded"));
  // A checkpoint state needs the trainer's AdamW over the shards.
  torch::optim::SGD sgd(policy.parameters(), torch::optim::SGDOptions(0.1));
  CHECK_THAT(error_of<verl::ConfigError>([&] { (void)policy.collective_checkpoint(sgd); }),
             Catch::Matchers::Contains("is not a torch::optim::AdamW"));
  auto other = verl::dist::make_fully_sharded_actor(tiny_actor(3), Single{});
  torch::optim::AdamW wrong(other.parameters(), torch::optim::AdamWOptions(1e-3));
  CHECK_THAT(error_of<verl::ConfigError>([&] { (void)policy.collective_checkpoint(wrong); }),
             Catch::Matchers::Contains("is not the policy's shard 0"));
  // Saving and loading the Hugging Face directory round-trips (float64 model, float32 file).
  verl::test::TempDir dir("fsdp_actor");
  policy.save(dir.path / "model");
  auto loaded = verl::models::Actor::load(dir.path / "model");
  const auto full = policy.full_state_dict();
  std::vector<std::pair<std::string, torch::Tensor>> full_f32;
  for (const auto& [k, v] : full) full_f32.emplace_back(k, v.to(torch::kFloat));
  CHECK(bitwise_equal(named(loaded), full_f32));
  auto back = verl::dist::make_fully_sharded_actor(tiny_actor(4), Single{});
  back.load_weights(dir.path / "model");
  std::vector<std::pair<std::string, torch::Tensor>> back_f32;
  for (const auto& [k, v] : back.full_state_dict()) back_f32.emplace_back(k, v.to(torch::kFloat));
  CHECK(bitwise_equal(back_f32, full_f32));
}

}  // namespace test_fully_sharded_trainers
