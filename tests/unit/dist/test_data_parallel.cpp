// Data-parallel training (include/verl/dist/data_parallel.hpp) and the SFT trainer running data-parallel
// (include/verl/trainer/sft_trainer.hpp), on real processes over Gloo.
//
// Multi-process cases start this test executable itself as 2 or 4 ranks through verl::dist::launch_local
// (as tests/unit/dist/test_c10d.cpp does); each rank runs the hidden test case "[.dp_worker]" in the mode named
// by VERL_DP_TEST_MODE and the parent checks every rank's exit status. Every rank also trains the
// single-process reference itself (same seed, the whole global batch, no communication) and compares.
//
// Semantics pinned: torch 2.11's DistributedDataParallel Reducer (torch/csrc/distributed/c10d/reducer.cpp):
// rank 0's parameters broadcast at construction, gradients averaged over ranks, buckets in reverse parameter
// order started from the gradient accumulators' post-hooks, no_sync accumulation, find_unused_parameters
// leaving globally unused parameters without a gradient; verl 0.7.1's SFT loss with dp_size (sft_loss:
// -sum(log p * mask) / global tokens * dp_size) and DistributedSampler's interleaved shards.
//
// Tolerances: the MLP runs in float64, where the data-parallel and single-process gradients differ only by
// the order of the additions (each rank sums its own rows, then the ranks are summed): 1e-12 relative to the
// parameter scale after three AdamW steps. The SFT case runs the float32 transformer; there the update is
// made to follow the gradient (AdamW with lr = eps = 1e3 moves a parameter by ~g, not by sign(g), which would
// amplify rounding-level differences), and the comparison is 1e-5 relative, 1e-7 absolute (float32 sums of a
// few hundred terms in another order).
#include "catch_torch.hpp"

#include "dist_test_support.hpp"
#include "error_of.hpp"
#include "verl/dist/data_parallel.hpp"
#include "verl/dist/gloo.hpp"
#include "verl/dist/launch_env.hpp"
#include "verl/dist/launch_local.hpp"
#include "verl/dist/single_process_communicator.hpp"

#include <torch/torch.h>
#include <torch/version.h>

#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 8)
#define VERL_DP_TEST_MODELS 1
#include "verl/algos/policy_losses.hpp"
#include "verl/algos/presets.hpp"
#include "verl/core/batch.hpp"
#include "verl/models/actor.hpp"
#include "verl/models/critic.hpp"
#include "verl/trainer/ppo_trainer.hpp"
#include "verl/trainer/ppo_update.hpp"
#include "verl/trainer/sft_trainer.hpp"
#else
#define VERL_DP_TEST_MODELS 0
#endif

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace test_data_parallel {  // one namespace per file: a unity build (tests/CMakeLists.txt) may join files

using verl::ReduceOp;
using verl::test::error_of;
using verl::test::flat;
using namespace std::chrono_literals;

namespace {

//! A 3-layer MLP, float64: lin1 -> tanh -> lin2 -> tanh -> lin3, plus two layers used only by some ranks
//! (`extra`) or never (`never`) for the unused-parameter cases.
struct MlpImpl : torch::nn::Module {
  explicit MlpImpl(std::uint64_t seed) {
    torch::manual_seed(seed);
    lin1 = register_module("lin1", torch::nn::Linear(6, 16));
    lin2 = register_module("lin2", torch::nn::Linear(16, 16));
    lin3 = register_module("lin3", torch::nn::Linear(16, 3));
    extra = register_module("extra", torch::nn::Linear(3, 3));
    never = register_module("never", torch::nn::Linear(3, 3));
    to(torch::kDouble);
  }
  //! (B,3); `after_first` sees lin1's output (B,16) before the nonlinearity.
  torch::Tensor forward(const torch::Tensor& x, bool use_extra = false,
                        const std::function<void(torch::Tensor&)>& after_first = {}) {
    auto h = lin1(x);  // (B,16)
    if (after_first) after_first(h);
    auto y = lin3(torch::tanh(lin2(torch::tanh(h))));  // (B,3)
    return use_extra ? y + extra(y) : y;
  }
  torch::nn::Linear lin1{nullptr}, lin2{nullptr}, lin3{nullptr}, extra{nullptr}, never{nullptr};
};
TORCH_MODULE(Mlp);

//! The global batch of step `step`: (G,6) inputs and (G,3) targets, the same on every rank.
std::pair<torch::Tensor, torch::Tensor> global_batch(int step, std::int64_t g) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(1000 + step);
  auto x = torch::randn({g, 6}, gen, torch::kDouble);  // (G,6)
  auto y = torch::randn({g, 3}, gen, torch::kDouble);  // (G,3)
  return {x, y};
}

//! Per-row squared error summed over the rows of `x` (a share of the global mean when divided by G).
torch::Tensor summed_loss(Mlp& m, const torch::Tensor& x, const torch::Tensor& y, bool use_extra = false) {
  return (m->forward(x, use_extra) - y).pow(2).sum();  // ()
}

//! The parameters of the layers whose names start with one of `prefixes`, in registration order.
std::vector<torch::Tensor> params_of(Mlp& m, const std::vector<std::string>& prefixes) {
  std::vector<torch::Tensor> ps;
  for (const auto& item : m->named_parameters())
    for (const auto& prefix : prefixes)
      if (item.key().rfind(prefix + ".", 0) == 0) ps.push_back(item.value());
  return ps;
}
std::vector<torch::Tensor> core(Mlp& m) { return params_of(m, {"lin1", "lin2", "lin3"}); }   // 6 tensors
std::vector<torch::Tensor> trained(Mlp& m) { return params_of(m, {"lin1", "lin2", "lin3", "extra"}); }  // 8

double max_abs_diff(const torch::Tensor& a, const torch::Tensor& b) { return (a - b).abs().max().item<double>(); }

}  // namespace

#if VERL_DIST_HAS_GLOO
namespace {

using Gloo = verl::dist::ProcessGroupCommunicator<verl::dist::gloo>;

//! Starts `n` ranks of this executable in `mode`.
verl::dist::LocalLaunchResult run_ranks(int n, const std::string& mode) {
  return verl::test::launch_self(n, "[.dp_worker]", {{"VERL_DP_TEST_MODE", mode}}, 60000ms);
}

//! DP training of the MLP equals one process on the global batch; broadcast; overlap; traffic; no_sync.
void check_mlp(Gloo& world) {
  const int n = world.world_size();
  const int r = world.rank();
  constexpr std::int64_t kGlobal = 8;
  // Each rank starts from its own weights (seed 100 + rank): the broadcast must make them rank 0's.
  Mlp dp_model(100 + static_cast<std::uint64_t>(r));
  Mlp reference(100);  // what rank 0 initialised: the single-process run
  Mlp sum_model(100 + static_cast<std::uint64_t>(r));
  if (r != 0) REQUIRE(max_abs_diff(flat(core(dp_model)), flat(core(reference))) > 0.01);
  verl::dist::DataParallelOptions o;
  // float64 bytes in reverse order: lin3.bias 24 + lin3.weight 384 >= the first cap of 200 (bucket 0), then
  // lin2.bias 128 + lin2.weight 2048 >= 600 (bucket 1), then lin1.bias 128 + lin1.weight 768 (bucket 2).
  o.bucket_cap_bytes = 600;
  o.first_bucket_cap_bytes = 200;  // DDP's smaller first bucket
  verl::dist::DataParallel dp(world, core(dp_model), o);
  CHECK(torch::equal(flat(core(dp_model)), flat(core(reference))));  // broadcast from rank 0
  auto so = o;
  so.reduction = verl::dist::GradReduction::sum;
  verl::dist::DataParallel dp_sum(world, core(sum_model), so);
  CHECK(torch::equal(flat(core(sum_model)), flat(core(reference))));
  CHECK(dp.bucket_assignment() == std::vector<std::vector<std::size_t>>{{5, 4}, {3, 2}, {1, 0}});

  auto adam = [](Mlp& m) {
    return std::make_unique<torch::optim::AdamW>(core(m), torch::optim::AdamWOptions(1e-2).weight_decay(0.01));
  };
  auto opt_dp = adam(dp_model), opt_sum = adam(sum_model), opt_ref = adam(reference);
  for (int step = 0; step < 3; ++step) {
    const auto [x, y] = global_batch(step, kGlobal);
    // Reference: one process, the whole global batch, the global mean of the per-row losses.
    opt_ref->zero_grad();
    summed_loss(reference, x, y).div(static_cast<double>(kGlobal)).backward();
    opt_ref->step();
    // DP: this rank's rows (contiguous chunk), two micro-batches, the first inside no_sync().
    const std::int64_t per = kGlobal / n;
    const auto xr = x.narrow(0, r * per, per), yr = y.narrow(0, r * per, per);  // (per,6), (per,3)
    const std::int64_t half = per / 2;
    for (auto* pair : {&dp, &dp_sum}) {
      auto& sync = *pair;
      Mlp& m = pair == &dp ? dp_model : sum_model;
      auto& opt = pair == &dp ? opt_dp : opt_sum;
      // mean: verl's dp_size factor (the average over ranks is the global mean); sum: the plain share.
      const double scale = (pair == &dp ? n : 1) / static_cast<double>(kGlobal);
      opt->zero_grad();
      world.reset_traffic();
      {
        auto guard = sync.no_sync();
        summed_loss(m, xr.narrow(0, 0, half), yr.narrow(0, 0, half)).mul(scale).backward();
      }
      CHECK(sync.buckets_started() == 0);  // no communication during no_sync
      summed_loss(m, xr.narrow(0, half, per - half), yr.narrow(0, half, per - half)).mul(scale).backward();
      sync.finish();
      const auto t = sync.last_step_traffic();
      const auto c = world.traffic();
      CHECK(t.collectives == static_cast<std::int64_t>(sync.num_buckets()));
      CHECK(c.all_reduce.calls == t.collectives);                // one all-reduce per bucket, nothing else
      CHECK(t.payload_bytes == c.all_reduce.payload_bytes);
      std::int64_t grad_bytes = 0;
      for (const auto& p : core(m)) grad_bytes += p.numel() * 8;
      CHECK(t.gradient_bytes == grad_bytes);
      CHECK(t.payload_bytes == grad_bytes);
      CHECK(t.ring_bytes_sent == c.all_reduce.ring_bytes_sent);  // 2(N-1)/N per bucket
      CHECK(t.started_in_backward == t.collectives);             // every bucket overlapped the backward pass
      opt->step();
    }
    const auto ref = flat(core(reference));
    INFO("step " << step << ", rank " << r << " of " << n);
    CHECK(max_abs_diff(flat(core(dp_model)), ref) < 1e-12);
    CHECK(max_abs_diff(flat(core(sum_model)), ref) < 1e-12);
  }
  Mlp initial(100);
  REQUIRE(max_abs_diff(flat(core(initial)), flat(core(reference))) > 1e-3);  // the steps moved the weights

  // Overlap, observed: when the gradient of lin1's output is computed (before lin1's own parameter
  // gradients), the buckets of lin3 and lin2 have already started; lin1's have not. Without overlap, none.
  for (bool overlap : {true, false}) {
    Mlp m(7);
    auto oo = o;
    oo.bucket_cap_bytes = 1;  // one bucket per parameter: lin3.bias, lin3.weight, ..., lin1.weight
    oo.first_bucket_cap_bytes = 1;
    oo.overlap = overlap;
    verl::dist::DataParallel d(world, trained(m), oo);
    REQUIRE(d.num_buckets() == 8);  // 4 layers' weight and bias (extra included)
    std::int64_t started_mid_backward = -1;
    const auto [x, y] = global_batch(9, 4);
    const auto loss = (m->forward(x, true, [&](torch::Tensor& h) {
                         h.register_hook([&](const torch::Tensor&) { started_mid_backward = d.buckets_started(); });
                       }) - y).pow(2).sum();
    loss.backward();
    INFO("overlap " << overlap);
    if (overlap) {
      CHECK(started_mid_backward >= 4);  // extra's and lin3's buckets at least
      CHECK(started_mid_backward <= 6);  // lin1.bias and lin1.weight come after this point
      CHECK(d.buckets_started() == 8);   // all started by the time backward returns
    } else {
      CHECK(started_mid_backward == 0);
      CHECK(d.buckets_started() == 0);
    }
    d.finish();
    CHECK(d.last_step_traffic().started_in_backward == (overlap ? 8 : 0));
    CHECK(d.last_step_traffic().collectives == 8);
  }

  // Unused parameters. `extra` is used by rank 0's rows only; `never` by nobody.
  {
    Mlp m(11), ref(11);
    std::vector<torch::Tensor> all = m->parameters();  // never included
    auto uo = o;
    uo.find_unused_parameters = true;
    verl::dist::DataParallel d(world, all, uo);
    const auto batch5 = global_batch(5, kGlobal);
    const torch::Tensor& x = batch5.first;   // (G,6)
    const torch::Tensor& y = batch5.second;  // (G,3)
    const std::int64_t per = kGlobal / n;
    // Reference: rows of rank 0 go through `extra`, the others do not.
    (summed_loss(ref, x.narrow(0, 0, per), y.narrow(0, 0, per), true) +
     summed_loss(ref, x.narrow(0, per, kGlobal - per), y.narrow(0, per, kGlobal - per), false))
        .div(static_cast<double>(kGlobal))
        .backward();
    summed_loss(m, x.narrow(0, r * per, per), y.narrow(0, r * per, per), r == 0)
        .mul(static_cast<double>(n) / static_cast<double>(kGlobal))
        .backward();
    d.finish();
    CHECK(d.last_step_traffic().collectives == static_cast<std::int64_t>(d.num_buckets()) + 1);  // + used map
    CHECK_FALSE(m->never->weight.grad().defined());  // unused everywhere: untouched, as DDP
    CHECK_FALSE(m->never->bias.grad().defined());
    REQUIRE(m->extra->weight.grad().defined());       // used on rank 0 only: rank 0's gradient / N
    CHECK(max_abs_diff(m->extra->weight.grad(), ref->extra->weight.grad()) < 1e-12);
    CHECK(max_abs_diff(m->lin1->weight.grad(), ref->lin1->weight.grad()) < 1e-12);

    // Without find_unused_parameters: every rank completes the step, then names the parameters.
    Mlp m2(11);
    verl::dist::DataParallel d2(world, m2->parameters(), o);
    summed_loss(m2, x.narrow(0, r * per, per), y.narrow(0, r * per, per), true).backward();
    const auto message = error_of([&] { d2.finish(); });
    CHECK_THAT(message, Catch::Matchers::Contains("verl::dist::DataParallel::finish (rank " + std::to_string(r)) &&
                            Catch::Matchers::Contains("2 parameter(s) received no gradient this step (parameter "
                                                      "index 8, 9)") &&
                            Catch::Matchers::Contains("find_unused_parameters"));
    // The object is usable afterwards: a step using every parameter goes through.
    m2->zero_grad();
    const auto full_loss = [&] { return summed_loss(m2, x, y, true) + m2->never(y).sum(); };
    full_loss().backward();
    d2.finish();
    CHECK(m2->never->weight.grad().defined());
    // A second synchronised backward in one step is refused (from inside the autograd engine), naming the fix.
    full_loss().backward();
    CHECK_THAT(error_of<std::exception>([&] { full_loss().backward(); }),
               Catch::Matchers::Contains("received a second gradient in one synchronised step"));
    d2.finish();  // the step started by the first of the two completes
  }
  world.barrier();
}

#if VERL_DP_TEST_MODELS
verl::models::Actor tiny_actor(std::uint64_t seed) {
  torch::manual_seed(seed);
  verl::models::CausalLM lm(verl::test::tiny_qwen2_config());
  lm->init_weights(0.05);
  return verl::models::Actor(lm);
}

//! SFTTrainer over 2 ranks equals the 1-process SFTTrainer on the same global batches.
void check_sft(Gloo& world) {
  verl::trainer::SFTOptions o;
  o.micro_batch_size_per_gpu = 2;  // 4 rows per rank: 2 micro-batches (the first without communication)
  o.lr = 1e3;
  o.eps = 1e3;
  o.weight_decay = 0.0;
  o.clip_grad = 1e9;
  auto actor = tiny_actor(3 + static_cast<std::uint64_t>(world.rank()));  // replicas differ until the broadcast
  auto dp = verl::dist::make_data_parallel(world, actor.parameters());
  verl::trainer::SFTTrainer<verl::models::Actor> trainer(actor, o, dp);
  verl::trainer::SFTTrainer<verl::models::Actor> single(tiny_actor(3), o);
  const auto before = flat(single.policy().parameters());
  CHECK(torch::equal(flat(actor.parameters()), before));
  for (int step = 0; step < 2; ++step) {
    const auto batch = verl::test::sft_batch(step, 4 * world.world_size());
    const auto m = trainer.step(batch);
    const auto ms = single.step(batch);
    INFO("step " << step << ", rank " << world.rank());
    CHECK(m.at("train/loss") == Approx(ms.at("train/loss")).epsilon(1e-6));
    CHECK(m.at("train/grad_norm") == Approx(ms.at("train/grad_norm")).epsilon(1e-5));
    CHECK(m.at("train/global_tokens") == ms.at("train/global_tokens"));
    const auto a = flat(actor.parameters()), b = flat(single.policy().parameters());
    CHECK(torch::allclose(a - before, b - before, 1e-5, 1e-7));
    // ~79 KB of float32 gradients fit DDP's 1 MiB first bucket: one all-reduce per step.
    CHECK(dp->last_step_traffic().collectives == 1);
  }
  REQUIRE((flat(single.policy().parameters()) - before).abs().max().item<double>() > 1e-4);
  CHECK_THAT(error_of([&] { trainer.step(verl::test::sft_batch(0, 2 * world.world_size() + 1)); }),
             Catch::Matchers::Contains("expected a multiple of the data-parallel size"));
  world.barrier();
}

//! update_policy and update_critic over N ranks (each its contiguous chunk, per-rank mini-batches of mini/N
//! rows, as verl dispatches) equal one process on the same global mini-batches.
void check_ppo_update(Gloo& world) {
  const int n = world.world_size(), r = world.rank();
  constexpr std::int64_t kRows = 16, kMini = 8;  // 2 optimizer steps per epoch
  auto reference_actor = tiny_actor(9);
  const auto batch = verl::test::update_batch(reference_actor, kRows, torch::kFloat);
  // Rank r's chunk is rows [r*16/N, (r+1)*16/N); its k-th mini-batch is rows k*8/N.. of that chunk. The global
  // mini-batch k of the data-parallel run is the union over ranks: the single-process batch is re-ordered so
  // that its k-th mini-batch is that union (in rank order).
  const std::int64_t chunk = kRows / n, per_mini = kMini / n;
  const auto order = verl::test::data_parallel_row_order(kRows, kMini, n);
  const auto single_batch = batch.index_select(torch::tensor(order, torch::kLong));
  const auto my_chunk = batch.slice(r * chunk, (r + 1) * chunk);
  for (auto mode : {verl::LossAggMode::token_mean, verl::LossAggMode::seq_mean_token_mean}) {
    INFO(verl::to_string(mode) << ", rank " << r << " of " << n);
    verl::trainer::ActorLossSettings settings;
    settings.loss_agg_mode = mode;
    settings.entropy_coeff = 0.01;
    verl::trainer::UpdateSchedule schedule;
    schedule.ppo_mini_batch_size = kMini;
    schedule.micro_batch_size = 2;
    schedule.ppo_epochs = 2;
    // SGD moves by lr * gradient: equal gradients give equal weights to rounding (see test_ppo_trainer.cpp).
    auto single = tiny_actor(9);
    auto opt_single = torch::optim::SGD(single.parameters(), torch::optim::SGDOptions(0.5));
    verl::StepContext ctx_single;
    ctx_single.step = 1;
    verl::trainer::update_policy(single, opt_single, verl::losses::VanillaPPO{}, single_batch, schedule, settings,
                                 ctx_single);
    auto mine = tiny_actor(r == 0 ? 9 : 100 + static_cast<std::uint64_t>(r));  // rank 0's, after the broadcast
    auto dp_schedule = schedule;
    dp_schedule.ppo_mini_batch_size = per_mini;
    dp_schedule.data_parallel = verl::dist::make_data_parallel(world, mine.parameters());
    auto opt_dp = torch::optim::SGD(mine.parameters(), torch::optim::SGDOptions(0.5));
    verl::StepContext ctx_dp;
    ctx_dp.step = 1;
    verl::trainer::update_policy(mine, opt_dp, verl::losses::VanillaPPO{}, my_chunk, dp_schedule, settings, ctx_dp);
    const auto a = flat(mine.parameters()), b = flat(single.parameters()), init = flat(tiny_actor(9).parameters());
    REQUIRE((b - init).abs().max().item<double>() > 1e-4);
    CHECK(torch::allclose(a, b, 1e-5, 1e-6));
    const auto ms = ctx_single.reduced(), md = ctx_dp.reduced();
    CHECK(md.at("actor/pg_loss") == Approx(ms.at("actor/pg_loss")).epsilon(1e-5).margin(1e-7));
    CHECK(md.at("actor/grad_norm") == Approx(ms.at("actor/grad_norm")).epsilon(1e-5));
    // 4 optimizer steps (2 epochs x 2 mini-batches): one bucket each (the gradients fit the first bucket).
    CHECK(dp_schedule.data_parallel->total_traffic().steps == 4);
  }

  // update_critic, the same way: values of a critic, random returns, clipped value loss.
  using CriticBatch = verl::Batch<verl::fields::input_ids, verl::fields::attention_mask, verl::fields::position_ids,
                                  verl::fields::responses, verl::fields::response_mask, verl::fields::values,
                                  verl::fields::returns>;
  const auto make_critic = [](std::uint64_t seed) {
    torch::manual_seed(seed);
    verl::models::HeadConfig head;
    head.classifier_dropout = 0.0;  // verl's critic worker; the default 0.1 would make the runs random
    return verl::models::Critic::create(verl::test::tiny_qwen2_config(), head);
  };
  auto critic0 = make_critic(5);
  const auto tb = verl::trainer::token_batch_of(batch);
  torch::Tensor values;
  {
    torch::NoGradGuard ng;
    values = critic0.values(tb);  // (B,R)
  }
  auto gen = at::make_generator<at::CPUGeneratorImpl>(99);
  const auto rmask = batch.get<verl::fields::response_mask>();
  const auto returns = torch::randn(values.sizes(), gen, torch::kFloat) * rmask.to(torch::kFloat);  // (B,R)
  const CriticBatch cb(tb.input_ids, tb.attention_mask, tb.position_ids, batch.get<verl::fields::responses>(), rmask,
                       values * rmask.to(torch::kFloat), returns);
  const auto single_cb = cb.index_select(torch::tensor(order, torch::kLong));
  verl::trainer::UpdateSchedule schedule;
  schedule.ppo_mini_batch_size = kMini;
  schedule.micro_batch_size = 2;
  auto single = make_critic(5);
  auto opt_single = torch::optim::SGD(single.parameters(), torch::optim::SGDOptions(0.5));
  verl::StepContext ctx_single;
  verl::trainer::update_critic(single, opt_single, single_cb, schedule, 0.5, verl::LossAggMode::token_mean,
                               ctx_single);
  auto mine = make_critic(r == 0 ? 5 : 50 + static_cast<std::uint64_t>(r));
  auto dp_schedule = schedule;
  dp_schedule.ppo_mini_batch_size = per_mini;
  dp_schedule.data_parallel = verl::dist::make_data_parallel(world, mine.parameters());
  auto opt_dp = torch::optim::SGD(mine.parameters(), torch::optim::SGDOptions(0.5));
  verl::StepContext ctx_dp;
  verl::trainer::update_critic(mine, opt_dp, cb.slice(r * chunk, (r + 1) * chunk), dp_schedule, 0.5,
                               verl::LossAggMode::token_mean, ctx_dp);
  INFO("update_critic, rank " << r);
  const auto init = flat(make_critic(5).parameters());
  REQUIRE((flat(single.parameters()) - init).abs().max().item<double>() > 1e-4);
  CHECK(torch::allclose(flat(mine.parameters()), flat(single.parameters()), 1e-5, 1e-6));
  CHECK(ctx_dp.reduced().at("critic/vf_loss") == Approx(ctx_single.reduced().at("critic/vf_loss")).epsilon(1e-5));
  world.barrier();
}

//! A GRPO step of PPOTrainer over 2 ranks (each its 2 of the 4 prompts, seeded sampling) equals the
//! 1-process step on all 4. One mini-batch per epoch (the whole batch), 2 epochs: with several mini-batches
//! verl's data-parallel mini-batches are per-rank slices of each rank's chunk, a different grouping than one
//! process's (see check_ppo_update).
void check_grpo(Gloo& world) {
  using Trainer =
      verl::trainer::PPOTrainer<verl::GRPO<>, verl::models::Actor, verl::no_critic, verl::models::Reference>;
  const auto make_actor = [](std::uint64_t seed) {
    verl::models::ActorOptions ao;
    ao.generation.eos_token_ids = {1};
    ao.generation.pad_token_id = 0;
    torch::manual_seed(seed);
    verl::models::CausalLM lm(verl::test::tiny_qwen2_config());
    lm->init_weights(0.05);
    return verl::models::Actor(lm, ao);
  };
  const auto options = [] {
    verl::trainer::PPOOptions o;
    o.rollout.n = 4;
    o.rollout.max_tokens = 6;
    o.rollout.temperature = 1.0;
    o.rollout.seed = 3;
    o.ppo_mini_batch_size = 4;  // prompts: the whole batch
    o.ppo_micro_batch_size = 2;
    o.ppo_epochs = 2;
    o.actor_optim.lr = 1e3;  // with eps = 1e3 the update is ~ the gradient (see the file comment)
    o.actor_optim.eps = 1e3;
    o.actor_optim.weight_decay = 0.0;
    o.kl_loss_coef = 0.01;
    o.progress_bars = verl::trainer::ProgressBarOptions::Show::never;
    return o;
  };
  // Score: the fraction of response tokens equal to 7, on the last valid token.
  const verl::stages::Scorer scorer = [](const verl::stages::ScoreRequest& q, verl::StepContext&) {
    const auto mask = q.response_mask.to(torch::kFloat);                                             // (B,R)
    const auto len = mask.sum(1);                                                                   // (B,)
    const auto frac = (q.responses.eq(7).to(torch::kFloat) * mask).sum(1) / len.clamp_min(1);       // (B,)
    auto scores = torch::zeros(mask.sizes(), torch::kFloat);                                        // (B,R)
    scores.scatter_(1, (len - 1).clamp_min(0).to(torch::kLong).unsqueeze(1), frac.unsqueeze(1));
    return scores;
  };
  auto ids = torch::zeros({4, 4}, torch::kLong), mask = torch::zeros({4, 4}, torch::kLong);  // left-padded
  for (std::int64_t i = 0; i < 4; ++i)
    for (std::int64_t j = 4 - (2 + i % 3); j < 4; ++j) {
      ids[i][j] = 2 + (3 * i + 5 * j) % 14;
      mask[i][j] = 1;
    }
  const verl::trainer::PromptBatch prompts(ids, mask, (mask.cumsum(1) - 1).clamp_min(0));

  auto mine = make_actor(20 + static_cast<std::uint64_t>(world.rank()));
  auto o = options();
  o.actor_data_parallel = verl::dist::make_data_parallel(world, mine.parameters());  // rank 0's weights
  Trainer dp_trainer(mine, verl::no_critic{}, verl::models::Reference::copy_of(mine), scorer, o);
  auto single_actor = make_actor(20);
  Trainer single(single_actor, verl::no_critic{}, verl::models::Reference::copy_of(single_actor), scorer, options());
  const auto before = flat(single_actor.parameters());
  const auto md = dp_trainer.step(prompts);
  const auto ms = single.step(prompts);
  INFO("rank " << world.rank());
  REQUIRE((flat(single_actor.parameters()) - before).abs().max().item<double>() > 1e-4);
  CHECK(torch::allclose(flat(mine.parameters()) - before, flat(single_actor.parameters()) - before, 1e-4, 1e-6));
  CHECK(md.at("actor/pg_loss") == Approx(ms.at("actor/pg_loss")).epsilon(1e-4).margin(1e-6));
  CHECK(md.at("actor/kl_loss") == Approx(ms.at("actor/kl_loss")).epsilon(1e-4).margin(1e-7));
  CHECK(md.at("actor/grad_norm") == Approx(ms.at("actor/grad_norm")).epsilon(1e-4));
  CHECK(md.at("rollout/num_sequences") == 8);  // this rank's 2 prompts x 4
  CHECK(o.actor_data_parallel->total_traffic().steps == 2);
  world.barrier();
}
#endif

}  // namespace

// Run in each rank started by the tests below.
TEST_CASE("data-parallel worker rank", "[.dp_worker]") {
  const char* mode_env = std::getenv("VERL_DP_TEST_MODE");
  REQUIRE(mode_env != nullptr);
  const std::string mode = mode_env;
  const auto place = verl::dist::launch_env_from_environ();
  auto world = Gloo::init(place, {.timeout = std::chrono::milliseconds(20000)});
  if (mode == "mlp") {
    check_mlp(world);
#if VERL_DP_TEST_MODELS
  } else if (mode == "sft") {
    check_sft(world);
  } else if (mode == "ppo_update") {
    check_ppo_update(world);
  } else if (mode == "grpo") {
    check_grpo(world);
#endif
  } else {
    FAIL("unknown VERL_DP_TEST_MODE " << mode);
  }
}

TEST_CASE("DataParallel over 2 and 4 Gloo processes trains as one process on the global batch",
          "[dist][data_parallel]") {
  for (int n : {2, 4}) {
    const auto result = run_ranks(n, "mlp");
    INFO(result.summary());
    CHECK(result.ok());
  }
}

#if VERL_DP_TEST_MODELS
TEST_CASE("SFTTrainer over 2 Gloo processes equals the 1-process run on the same global batches",
          "[dist][data_parallel][trainer]") {
  const auto result = run_ranks(2, "sft");
  INFO(result.summary());
  CHECK(result.ok());
}

TEST_CASE("update_policy and update_critic over 2 Gloo processes equal one process on the same global mini-batches",
          "[dist][data_parallel][trainer]") {
  const auto result = run_ranks(2, "ppo_update");
  INFO(result.summary());
  CHECK(result.ok());
}

TEST_CASE("a GRPO step of PPOTrainer over 2 Gloo processes equals the 1-process step",
          "[dist][data_parallel][trainer]") {
  const auto result = run_ranks(2, "grpo");
  INFO(result.summary());
  CHECK(result.ok());
}
#endif
#else
TEST_CASE("DataParallel: multi-process tests", "[dist][data_parallel]") {
  WARN("not built: this build has no Gloo headers (<gloo/algorithm.h>; install Debian's libgloo-dev)");
}
#endif

TEST_CASE("DataParallel over the 1-rank group leaves the gradients as one process computes them",
          "[dist][data_parallel]") {
  Mlp m(3), ref(3);
  verl::dist::DataParallel dp(verl::dist::SingleProcessCommunicator{}, core(m));
  CHECK(dp.world_size() == 1);
  const auto [x, y] = global_batch(0, 4);
  summed_loss(m, x, y).backward();
  summed_loss(ref, x, y).backward();
  dp.finish();
  for (std::size_t i = 0; i < core(m).size(); ++i) CHECK(torch::equal(core(m)[i].grad(), core(ref)[i].grad()));
  CHECK(dp.last_step_traffic().collectives == 0);
  CHECK_THAT(error_of([&] {
               verl::dist::DataParallelOptions bad;
               bad.bucket_cap_bytes = 0;
               verl::dist::DataParallel d(verl::dist::SingleProcessCommunicator{}, trained(m), bad);
             }),
             Catch::Matchers::Contains("bucket_cap_bytes is 0"));
  CHECK_THAT(error_of<verl::ShapeError>([&] {
               verl::dist::DataParallel d(verl::dist::SingleProcessCommunicator{},
                                          std::vector<torch::Tensor>{torch::zeros({2}, torch::kLong)});
             }),
             Catch::Matchers::Contains("parameter 0 is undefined, sparse or not floating-point"));
}

}  // namespace test_data_parallel
