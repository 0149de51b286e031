// Generation after resharding equals single-process generation (issue 7, the 3D-HybridEngine's rollout side):
// include/verl/dist/tensor_parallel_generation.hpp (verl::dist::generate, generate_across_replicas), the KV
// cache of include/verl/dist/tensor_parallel_model.hpp, after include/verl/dist/resharding.hpp's to_rollout.
//
// Reference: verl::models::generate (include/verl/models/causal_lm.hpp), the KV-cached generator of the
// unsharded verl::models::CausalLM, itself checked against transformers 5.23's generate in the models tests.
//
// The multi-process case starts this test executable itself as 4 ranks through verl::dist::launch_local (the
// pattern of test_c10d.cpp); each rank runs the hidden test case "[.tp_generation_worker]" over Gloo:
//   1. FSDP training: a tiny Qwen2-shaped float64 model under FullyShardedCausalLM over the 4 ranks takes one
//      AdamW step (each rank its own rows); its full state dict is the "trained" model every rank rebuilds.
//   2. For rollout tp = 2 (2 micro-DP replicas) and tp = 4 (1 replica), for NaiveResharding (fed FSDP's own
//      shards, its layout) and HybridEngineResharding (shards cut from the trained weights): to_rollout into a
//      TensorParallelCausalLM holding other weights, then
//      - the KV-cached forward (prefill + decode steps, a finished row among them) equals the unsharded
//        model's cached forward, float64, 1e-12 relative;
//      - greedy generation of the whole batch (generate_across_replicas: each replica its half, all-gathered)
//        equals models::generate on the whole batch: tokens, masks, positions exactly; the eos ids are chosen
//        so that replica 0's rows end early and replica 1's do not, so the padding of the gather is exercised;
//      - greedy and sampled (temperature, top-k, top-p, min-p, repetition penalty, n = 2, a seed) generation of
//        this replica's rows equals models::generate on the same rows with the same seed;
//      - every rank of a TP group returns the same rollout (also when unseeded);
//      - the generated sequences' float64 log-probs (teacher-forced, vocab-parallel) equal the unsharded
//        model's within 1e-12 relative;
//      - to_training() moves nothing and the training shards are bitwise those from before.
//
// What is bitwise and what is not. The TP forward splits sums (row-parallel all-reduces, the embedding's
// partial lookups), so its float64 logits differ from the unsharded ones by ~1e-16 relative: hence 1e-12 on
// logits and teacher-forced log-probs. The sampler works, as models::generate's does, on the float32 cast of
// the logits; the float64 differences vanish in that rounding unless a logit lies within ~1e-16 of a float32
// rounding boundary (about 1e-9 per logit), so the sampler's inputs, and with them the tokens (greedy and
// sampled: the same generator state draws from the same probabilities) and the float32 sampler log-probs, are
// in practice bitwise equal; the test requires equal tokens and sampler log-probs within 1e-6 (float32), and
// prints the largest difference seen (0 in our runs).
#include "catch_torch.hpp"

#include "dist_test_support.hpp"
#include "error_of.hpp"
#include "verl/dist/device_mesh.hpp"
#include "verl/dist/fully_sharded.hpp"
#include "verl/dist/fully_sharded_causal_lm.hpp"
#include "verl/dist/gloo.hpp"
#include "verl/dist/launch_env.hpp"
#include "verl/dist/launch_local.hpp"
#include "verl/dist/resharding.hpp"
#include "verl/dist/single_process_communicator.hpp"
#include "verl/dist/tensor_parallel_generation.hpp"
#include "verl/models/causal_lm.hpp"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <iostream>
#include <map>
#include <set>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace test_resharded_generation {  // one namespace per file: a unity build (tests/CMakeLists.txt) may join files

using verl::test::error_of;
using namespace std::chrono_literals;

namespace {

constexpr std::int64_t kVocab = 64;

//! Qwen2-shaped (q/k/v biases), float64 once built: hidden 32, 4 query heads of 8, 2 key/value heads (replicated at tp 4),
//! intermediate 64, 2 layers, the second with a sliding window of 4 (so windowed masks meet the cache),
//! vocabulary 64, untied head.
verl::models::TransformerConfig tiny_config() {
  auto c = verl::test::tiny_transformer_config("qwen2", kVocab, 64);
  c.qkv_bias = true;
  c.sliding_windows = {0, 4};
  return c;
}

//! Every parameter random (norm weights around 1), the same on every rank for one seed.
verl::models::CausalLM tiny_model(std::uint64_t seed) {
  return verl::test::random_causal_lm(tiny_config(), seed, 0.25);
}

//! A CausalLM holding `state` (name, value) exactly.
verl::models::CausalLM model_from(const std::vector<std::pair<std::string, at::Tensor>>& state) {
  verl::models::CausalLM lm(tiny_config());
  lm->to(at::kDouble);
  auto params = lm->named_parameters();
  at::NoGradGuard no_grad;
  for (const auto& [name, value] : state) params[name].copy_(value);
  return lm;
}

//! 4 left-padded prompts of lengths 6, 3, 5, 2 over 6 columns; position ids cumsum(mask) - 1, 0 on padding.
verl::Prompts test_prompts() {
  torch::manual_seed(3);
  const auto long_opts = at::TensorOptions().dtype(at::kLong);
  auto ids = torch::randint(0, kVocab, {4, 6}, long_opts);  // (4,6)
  const std::vector<std::int64_t> lengths{6, 3, 5, 2};
  auto mask = torch::zeros({4, 6}, long_opts);  // (4,6)
  for (std::int64_t i = 0; i < 4; ++i) mask[i].narrow(0, 6 - lengths[static_cast<std::size_t>(i)], lengths[static_cast<std::size_t>(i)]).fill_(1);
  ids = ids * mask;                                       // padding columns hold id 0
  const auto pos = (mask.cumsum(1) - 1).clamp_min(0);     // (4,6)
  return verl::Prompts{ids, mask, pos};
}

double worst_sampler_diff = 0.0;  // the largest |sampler log-prob difference| seen (printed by rank 0)
double worst_relative = 0.0;      // the largest float64 difference / scale seen at 1e-12

//! CHECKs got == want within `tol` relative to max(1, max |want|).
void check_close(const at::Tensor& got, const at::Tensor& want, const std::string& what, double tol = 1e-12) {
  INFO(what << ": shapes " << got.sizes() << " and " << want.sizes());
  REQUIRE(got.sizes() == want.sizes());
  const double diff = (got.to(at::kDouble) - want.to(at::kDouble)).abs().max().item<double>();
  const double scale = std::max(1.0, want.abs().max().item<double>());
  INFO(what << ": max |difference| " << diff << ", scale " << scale);
  CHECK(diff <= tol * scale);
  worst_relative = std::max(worst_relative, diff / scale);
}

//! Tokens, masks and positions exactly equal; sampler log-probs within 1e-6 (float32, see the file comment).
void check_same_rollout(const verl::Rollout& got, const verl::Rollout& want, const std::string& what) {
  INFO(what);
  got.validate();
  REQUIRE(got.responses.sizes() == want.responses.sizes());
  CHECK(torch::equal(got.prompts, want.prompts));
  CHECK(torch::equal(got.responses, want.responses));
  CHECK(torch::equal(got.response_mask, want.response_mask));
  CHECK(torch::equal(got.input_ids, want.input_ids));
  CHECK(torch::equal(got.attention_mask, want.attention_mask));
  CHECK(torch::equal(got.position_ids, want.position_ids));
  REQUIRE(got.log_probs.has_value() == want.log_probs.has_value());
  if (got.log_probs) {
    REQUIRE(got.log_probs->scalar_type() == at::kFloat);
    const double diff = (*got.log_probs - *want.log_probs).abs().max().item<double>();
    INFO("sampler log-probs: max |difference| " << diff);
    CHECK(diff <= 1e-6);
    worst_sampler_diff = std::max(worst_sampler_diff, diff);
  }
}

verl::SamplingParams greedy_params() {
  verl::SamplingParams p;
  p.temperature = 0.0;
  p.max_tokens = 8;
  p.return_log_probs = true;
  return p;
}

verl::SamplingParams sampled_params() {
  verl::SamplingParams p;
  p.n = 2;
  p.temperature = 0.9;
  p.top_k = 24;
  p.top_p = 0.95;
  p.min_p = 0.01;
  p.repetition_penalty = 1.2;
  p.max_tokens = 8;
  p.seed = 1234;
  p.return_log_probs = true;
  return p;
}

//! The eos ids of the multi-process test: for each of rows 0 and 1 (replica 0 at tp 2), a token it generates
//! greedily at step >= 1 that rows 2 and 3 never generate in `max_tokens` greedy steps. Rows are independent,
//! so with these eos ids rows 0 and 1 end early while rows 2 and 3 run to max_tokens: replica 0's responses are
//! shorter than replica 1's, and generate_across_replicas must pad them.
std::vector<std::int64_t> early_eos(verl::models::CausalLM& lm, const verl::Prompts& prompts) {
  auto probe = greedy_params();
  probe.ignore_eos = true;
  const auto out = verl::models::generate(lm, prompts, probe);  // (4,8)
  std::set<std::int64_t> late;
  for (std::int64_t i = 2; i < 4; ++i) {
    for (std::int64_t s = 0; s < out.responses.size(1); ++s) late.insert(out.responses[i][s].item<std::int64_t>());
  }
  std::vector<std::int64_t> eos;
  for (std::int64_t i = 0; i < 2; ++i) {
    for (std::int64_t s = 1; s < out.responses.size(1) - 1; ++s) {
      const auto t = out.responses[i][s].item<std::int64_t>();
      if (late.count(t) == 0) {
        eos.push_back(t);
        break;
      }
    }
  }
  return eos;
}

}  // namespace

TEST_CASE("tensor-parallel generation on one rank equals verl::models::generate", "[dist][tp_generation]") {
  auto lm = tiny_model(5);
  verl::dist::SingleProcessCommunicator one;
  verl::dist::TensorParallelGroup group(one);
  verl::dist::TensorParallelCausalLM tp(lm, group);
  const auto prompts = test_prompts();
  verl::models::GenerationOptions options;
  options.eos_token_ids = early_eos(lm, prompts);
  REQUIRE(options.eos_token_ids.size() == 2);
  for (const auto& params : {greedy_params(), sampled_params()}) {
    INFO("temperature " << params.temperature);
    const auto want = verl::models::generate(lm, prompts, params, options);
    check_same_rollout(verl::dist::generate(tp, prompts, params, options), want, "generate");
    check_same_rollout(verl::dist::generate_across_replicas(tp, one, prompts, params, options), want,
                       "generate_across_replicas over one replica");
  }
  // Unseeded sampling draws its seed from the default generator: it runs and respects the shapes.
  auto unseeded = sampled_params();
  unseeded.seed.reset();
  const auto out = verl::dist::generate(tp, prompts, unseeded, options);
  CHECK(out.responses.size(0) == 8);
  CHECK(out.responses.size(1) <= 8);
}

TEST_CASE("tensor-parallel generation: bad input is a clear error", "[dist][tp_generation]") {
  auto lm = tiny_model(5);
  verl::dist::SingleProcessCommunicator one;
  verl::dist::TensorParallelGroup group(one);
  verl::dist::TensorParallelCausalLM tp(lm, group);
  const auto prompts = test_prompts();
  auto params = greedy_params();
  params.presence_penalty = 0.5;
  CHECK_THAT(error_of<verl::ConfigError>([&] { (void)verl::dist::generate(tp, prompts, params); }),
             Catch::Matchers::Contains("verl::dist::generate: presence/frequency penalties and stop strings are "
                                       "supported by the rollout engine"));
  const auto right_padded = verl::Prompts{prompts.input_ids.flip({1}), prompts.attention_mask.flip({1}),
                                          prompts.position_ids.flip({1})};
  CHECK_THAT(error_of<verl::ShapeError>([&] { (void)verl::dist::generate(tp, right_padded, greedy_params()); }),
             Catch::Matchers::Contains("a prompt's last column is padding, expected left-padded prompts"));
  CHECK_THAT(error_of<verl::ConfigError>([&] { (void)verl::dist::replica_prompts(prompts, 0, 3); }),
             Catch::Matchers::Contains("the prompt batch has 4 rows, which the 3 rollout replicas cannot split evenly"));
  verl::models::KVCache wrong(3);
  const auto ids = prompts.input_ids;
  CHECK_THAT(error_of<verl::ConfigError>([&] { (void)tp->forward(ids, prompts.attention_mask, prompts.position_ids, &wrong); }),
             Catch::Matchers::Contains("the cache has 3 layers, expected the model's num_hidden_layers 2"));
}

#if VERL_DIST_HAS_GLOO
namespace {

using Gloo = verl::dist::ProcessGroupCommunicator<verl::dist::gloo>;

verl::dist::LocalLaunchResult run_ranks(int n) {
  return verl::test::launch_self(n, "[.tp_generation_worker]", {}, 90000ms);
}

//! The KV-cached forward of the TP model equals the unsharded model's: a prefill of the prompts, a decode
//! step, and one where row 1 has finished (mask 0), as generate() feeds them.
void check_cached_forward(verl::dist::TensorParallelCausalLM& tp, verl::models::CausalLM& full,
                          const verl::Prompts& prompts) {
  at::NoGradGuard no_grad;
  auto cache = tp->make_cache();
  verl::models::KVCache ref_cache(full->config().num_hidden_layers);
  check_close(tp->forward(prompts.input_ids, prompts.attention_mask, prompts.position_ids, &cache),
              full->forward(prompts.input_ids, prompts.attention_mask, prompts.position_ids, &ref_cache),
              "cached prefill logits");
  const auto long_opts = at::TensorOptions().dtype(at::kLong);
  torch::manual_seed(17);  // the same new ids on every rank
  auto pos = prompts.position_ids.select(1, 5).unsqueeze(1);  // (4,1)
  for (int step = 0; step < 2; ++step) {
    pos = pos + 1;
    const auto ids = torch::randint(0, kVocab, {4, 1}, long_opts);                                   // (4,1)
    auto mask = torch::ones({4, 1}, long_opts);                                                      // (4,1)
    if (step == 1) mask[1][0].fill_(0);  // row 1 has finished
    check_close(tp->forward(ids, mask, pos, &cache), full->forward(ids, mask, pos, &ref_cache),
                "cached decode logits, step " + std::to_string(step));
  }
  CHECK(cache.length() == 8);
  CHECK(torch::equal(cache.attention_mask(), ref_cache.attention_mask()));
}

//! The responses (and sampler log-probs) are the same on every rank of the TP group.
void check_same_on_tp_ranks(Gloo& tp_comm, const verl::Rollout& out, const std::string& what) {
  INFO(what);
  std::vector<at::Tensor> parts;
  tp_comm.all_gather(parts, out.responses.contiguous());
  for (const auto& p : parts) CHECK(torch::equal(p, out.responses));
  if (out.log_probs) {
    tp_comm.all_gather(parts, out.log_probs->contiguous());
    for (const auto& p : parts) CHECK(torch::equal(p, *out.log_probs));
  }
}

template <class Policy>
void check_policy(Gloo& world, verl::dist::MeshCommunicators<Gloo>& groups, int tp_size,
                  verl::dist::FullyShardedCausalLM<Gloo>& fsdp, verl::models::CausalLM& trained,
                  const std::vector<std::pair<std::string, at::Tensor>>& trained_state,
                  const std::vector<std::int64_t>& eos) {
  constexpr bool naive = std::is_same_v<Policy, verl::dist::NaiveResharding>;
  INFO("policy " << Policy::name << ", rollout tp " << tp_size << ", rank " << world.rank());
  auto stale = tiny_model(99);  // the rollout model's weights before resharding: all different
  verl::dist::TensorParallelGroup tp(groups["tp"]);
  verl::dist::TensorParallelCausalLM rollout(stale, tp);
  verl::dist::Resharder<Policy, Gloo> reshard(world, groups["dp"], tp_size, trained);
  if constexpr (naive) reshard.set_training_shards(fsdp.parameters());  // FSDP's own shards: its layout
  std::vector<at::Tensor> before;
  for (const auto& s : reshard.training_shards()) before.push_back(s.detach().clone());
  (void)reshard.to_rollout(rollout);

  const auto prompts = test_prompts();
  check_cached_forward(rollout, trained, prompts);

  verl::models::GenerationOptions options;
  options.eos_token_ids = eos;
  const int replicas = groups["dp"].world_size(), m = groups["dp"].rank();
  const auto my_prompts = verl::dist::replica_prompts(prompts, m, replicas);

  // Greedy, the whole batch over the replicas, against models::generate on the whole batch.
  const auto greedy = greedy_params();
  const auto all = verl::dist::generate_across_replicas(rollout, groups["dp"], prompts, greedy, options);
  const auto want_all = verl::models::generate(trained, prompts, greedy, options);
  check_same_rollout(all, want_all, "greedy, whole batch");
  CHECK(all.responses.size(1) == 8);  // rows 2 and 3 never meet an eos
  CHECK(want_all.response_mask.narrow(0, 0, 2).sum(1).lt(8).all().item<bool>());  // rows 0 and 1 end early

  // Greedy and sampled, this replica's rows, against models::generate on the same rows (same seed).
  for (const auto& params : {greedy, sampled_params()}) {
    const std::string what = std::string(params.greedy() ? "greedy" : "sampled") + ", replica " + std::to_string(m);
    const auto mine = verl::dist::generate(rollout, my_prompts, params, options);
    check_same_rollout(mine, verl::models::generate(trained, my_prompts, params, options), what);
    check_same_on_tp_ranks(groups["tp"], mine, what);
    if (params.greedy() && replicas == 2 && m == 0) CHECK(mine.responses.size(1) < 8);  // the gather padded it
  }
  auto unseeded = sampled_params();
  unseeded.seed.reset();
  check_same_on_tp_ranks(groups["tp"], verl::dist::generate(rollout, my_prompts, unseeded, options), "unseeded");

  // The generated sequences' float64 log-probs, teacher-forced through the vocabulary-parallel head.
  {
    at::NoGradGuard no_grad;
    const auto targets = all.input_ids.roll(-1, 1);  // (4,T)
    const auto got = rollout->log_probs(all.input_ids, all.attention_mask, all.position_ids, targets).log_probs;  // (4,T)
    const auto want = trained->forward(all.input_ids, all.attention_mask, all.position_ids)
                          .log_softmax(-1)
                          .gather(-1, targets.unsqueeze(-1))
                          .squeeze(-1);  // (4,T)
    check_close(got, want, "teacher-forced float64 log-probs of the greedy rollout");
  }

  // Rollout -> training: nothing moves, the training shards are bitwise those from before and rebuild the
  // trained model.
  const auto back = reshard.to_training();
  CHECK(back.collectives == 0);
  REQUIRE(reshard.training_shards().size() == before.size());
  for (std::size_t u = 0; u < before.size(); ++u) CHECK(torch::equal(reshard.training_shards()[u], before[u]));
  std::map<std::string, at::Tensor> expected(trained_state.begin(), trained_state.end());
  for (const auto& [name, value] : reshard.full_state_dict()) {
    INFO(name);
    CHECK(torch::equal(value, expected.at(name)));
  }
}

}  // namespace

TEST_CASE("tensor-parallel generation worker rank", "[.tp_generation_worker]") {
  const auto place = verl::dist::launch_env_from_environ();
  auto world = Gloo::init(place, {.timeout = 30000ms});
  REQUIRE(world.world_size() == 4);

  // 1. One FSDP training step over the world: every rank its own 2 rows, mean of next-token NLL.
  verl::dist::FullyShardedCausalLM fsdp(tiny_model(11), world);
  verl::dist::ShardedAdamW opt(fsdp.parameters(), {.adamw = torch::optim::AdamWOptions(0.05)});
  {
    torch::manual_seed(100 + static_cast<std::uint64_t>(world.rank()));
    const auto long_opts = at::TensorOptions().dtype(at::kLong);
    const auto ids = torch::randint(0, kVocab, {2, 8}, long_opts);              // (2,8)
    const auto pos = torch::arange(8, long_opts).expand({2, 8}).contiguous();  // (2,8)
    const auto logits = fsdp.forward(ids, at::Tensor(), pos);                   // (2,8,V)
    const auto nll = -logits.narrow(1, 0, 7).log_softmax(-1).gather(-1, ids.narrow(1, 1, 7).unsqueeze(-1)).mean();
    nll.backward();
    opt.step();
    opt.zero_grad();
  }
  const auto trained_state = fsdp.full_state_dict();
  auto trained = model_from(trained_state);
  auto initial = tiny_model(11);
  CHECK_FALSE(torch::equal(trained->lm_head->weight, initial->lm_head->weight));  // the step changed the weights

  const auto eos = early_eos(trained, test_prompts());
  REQUIRE(eos.size() == 2);
  for (int tp : {2, 4}) {
    verl::dist::MeshCommunicators<Gloo> groups(world, verl::dist::rollout_mesh(world.world_size(), tp));
    check_policy<verl::dist::NaiveResharding>(world, groups, tp, fsdp, trained, trained_state, eos);
    check_policy<verl::dist::HybridEngineResharding>(world, groups, tp, fsdp, trained, trained_state, eos);
  }
  if (world.rank() == 0) {
    std::cout << "resharded generation: largest float64 difference / scale " << worst_relative
              << ", largest sampler log-prob difference " << worst_sampler_diff << std::endl;
  }
}

TEST_CASE("generation after resharding FSDP(4) -> TP(2) x 2 replicas and TP(4) equals single-process "
          "generation (greedy and sampled), and the round trip is exact",
          "[dist][tp_generation]") {
  const auto result = run_ranks(4);
  INFO(result.summary());
  CHECK(result.ok());
}
#else
TEST_CASE("tensor-parallel generation: multi-process tests", "[dist][tp_generation]") {
  WARN("not built: this build has no Gloo headers (<gloo/algorithm.h>; install Debian's libgloo-dev), so "
       "verl::dist::gloo is unavailable");
}
#endif

}  // namespace test_resharded_generation
