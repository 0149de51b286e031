// The rollout engine (verl/rollout/engine.hpp, rollout_manager.hpp, decode_linear.hpp) against the model itself: greedy output
// equals step-by-step argmax of the full forward without cache (mixed prompt lengths, chunked prefill,
// preemption, prefix sharing, static batching); paged and contiguous caches give identical tokens; seeded
// sampling does not depend on the rest of the batch; returned log-probs equal the actor's own.
#include "catch_torch.hpp"

#include "verl/models/actor.hpp"
#include "verl/models/causal_lm.hpp"
#include "verl/rollout/decode_linear.hpp"
#include "verl/rollout/engine.hpp"
#include "verl/rollout/rollout_manager.hpp"

#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace test_engine {  // one namespace per file: a unity build (tests/CMakeLists.txt) may join files

using namespace verl::models;
using namespace verl::rollout;
using nlohmann::json;

namespace {

json tiny_config(const std::string& type = "llama") {
  json j{{"model_type", type},           {"vocab_size", 61},           {"hidden_size", 32},
         {"intermediate_size", 48},      {"num_hidden_layers", 2},     {"num_attention_heads", 4},
         {"num_key_value_heads", 2},     {"max_position_embeddings", 256}, {"rms_norm_eps", 1e-6},
         {"rope_theta", 10000.0},        {"tie_word_embeddings", false}, {"hidden_act", "silu"},
         {"eos_token_id", 3}};
  return j;
}

// Float64 parameters make the engine's and the full forward's arithmetic agree to ~1e-15, so argmax ties
// cannot flip; init std 0.5 makes the logits peaked and attention far from uniform.
CausalLM make_model(json j = tiny_config(), std::uint64_t seed = 1, bool f64 = true) {
  torch::manual_seed(seed);
  CausalLM lm(TransformerConfig::from_json(j));
  lm->init_weights(0.5);
  if (f64) lm->to(at::kDouble);
  lm->eval();
  return lm;
}

std::vector<std::int64_t> prompt_of(std::int64_t len, std::int64_t salt) {
  std::vector<std::int64_t> p;
  for (std::int64_t i = 0; i < len; ++i) p.push_back(4 + (i * 7 + salt * 13) % 50);  // avoids eos (3)
  return p;
}

// Greedy decoding by running the whole sequence through the model at every step (no cache).
std::vector<std::int64_t> reference_greedy(CausalLM& lm, std::vector<std::int64_t> prompt, std::int64_t max_tokens,
                                           std::int64_t eos = 3) {
  torch::NoGradGuard no_grad;
  std::vector<std::int64_t> out;
  for (std::int64_t step = 0; step < max_tokens; ++step) {
    const auto l = static_cast<std::int64_t>(prompt.size());
    const auto device = lm->lm_head_weight().device();
    const auto ids = torch::tensor(prompt, torch::kLong).view({1, l}).to(device);
    const auto pos = torch::arange(l, torch::kLong).view({1, l}).to(device);
    const auto logits = lm->forward(ids, at::Tensor(), pos);  // (1,L,V)
    const auto next = logits[0][l - 1].argmax().item<std::int64_t>();
    out.push_back(next);
    prompt.push_back(next);
    if (next == eos) break;
  }
  return out;
}

std::map<std::int64_t, RequestResult> run_all(Engine& engine) {
  std::map<std::int64_t, RequestResult> results;
  std::int64_t guard = 0;
  while (engine.has_unfinished()) {
    engine.step();
    for (auto& r : engine.take_finished()) results.emplace(r.request_id, std::move(r));
    REQUIRE(++guard < 100000);
  }
  return results;
}

verl::SamplingParams greedy(std::int64_t max_tokens, std::int64_t n = 1) {
  verl::SamplingParams p;
  p.temperature = 0.0;
  p.max_tokens = max_tokens;
  p.n = n;
  return p;
}

// Runs `prompts` through an engine with `options` and checks every sample against reference_greedy.
void check_greedy_matches(CausalLM& lm, const std::vector<std::vector<std::int64_t>>& prompts, EngineOptions options,
                          std::int64_t max_tokens, std::int64_t n = 1, EngineStats* stats = nullptr) {
  Engine engine(lm, options);
  std::vector<std::int64_t> ids;
  for (const auto& p : prompts) ids.push_back(engine.add_request(p, greedy(max_tokens, n)));
  auto results = run_all(engine);
  REQUIRE(results.size() == prompts.size());
  for (std::size_t i = 0; i < prompts.size(); ++i) {
    const auto expected = reference_greedy(lm, prompts[i], max_tokens);
    const auto& r = results.at(ids[i]);
    REQUIRE(static_cast<std::int64_t>(r.samples.size()) == n);
    for (const auto& s : r.samples) {
      INFO("prompt " << i << " of length " << prompts[i].size());
      CHECK(s.tokens == expected);
      CHECK((s.finish_reason == (expected.back() == 3 ? FinishReason::eos : FinishReason::length)));
    }
  }
  CHECK(engine.num_free_blocks() == engine.num_blocks());  // every block came back
  if (stats) *stats = engine.stats();
}

// `prompts` left-padded with 0 to `width` columns (0 = the longest), positions cumsum(mask) - 1.
verl::Prompts left_padded(const std::vector<std::vector<std::int64_t>>& prompts, std::int64_t width = 0) {
  for (const auto& p : prompts) width = std::max<std::int64_t>(width, static_cast<std::int64_t>(p.size()));
  const auto b = static_cast<std::int64_t>(prompts.size());
  auto ids = torch::zeros({b, width}, torch::kLong), mask = torch::zeros({b, width}, torch::kLong);  // (B,P)
  for (std::int64_t i = 0; i < b; ++i) {
    const auto& p = prompts[static_cast<std::size_t>(i)];
    const auto len = static_cast<std::int64_t>(p.size());
    ids[i].narrow(0, width - len, len).copy_(torch::tensor(p, torch::kLong));
    mask[i].narrow(0, width - len, len).fill_(1);
  }
  return verl::Prompts{ids, mask, (mask.cumsum(1) - 1).clamp_min(0)};
}

std::vector<std::vector<std::int64_t>> mixed_prompts(std::int64_t count) {
  std::vector<std::vector<std::int64_t>> prompts;
  for (std::int64_t i = 0; i < count; ++i) prompts.push_back(prompt_of(1 + (i * 5) % 23, i));
  return prompts;
}

}  // namespace

TEST_CASE("engine greedy equals step-by-step argmax of the uncached forward, mixed prompt lengths", "[rollout][engine]") {
  auto lm = make_model();
  const auto prompts = mixed_prompts(9);
  SECTION("defaults") { check_greedy_matches(lm, prompts, {}, 20); }
  SECTION("block size 1 and 5, chunked prefill of 7 tokens per step") {
    EngineOptions o;
    o.block_size = 1;
    o.max_num_batched_tokens = 7;
    check_greedy_matches(lm, prompts, o, 20);
    o.block_size = 5;
    check_greedy_matches(lm, prompts, o, 20);
  }
  SECTION("static batching, no chunked prefill, no prefix sharing, 3 sequences at a time") {
    EngineOptions o;
    o.continuous_batching = false;
    o.enable_chunked_prefill = false;
    o.enable_prefix_sharing = false;
    o.max_num_seqs = 3;
    check_greedy_matches(lm, prompts, o, 20);
  }
}

TEST_CASE("engine greedy is exact through preemption with a small pool and many long requests", "[rollout][engine]") {
  auto lm = make_model();
  const auto prompts = mixed_prompts(12);
  EngineOptions o;
  o.block_size = 4;
  o.num_blocks = 16;  // 64 positions: about two of these sequences at a time
  EngineStats stats;
  check_greedy_matches(lm, prompts, o, 30, 1, &stats);
  CHECK(stats.preemptions > 0);
  CHECK(stats.peak_used_blocks <= 16);
  SECTION("and with prefix sharing, n = 3") {
    check_greedy_matches(lm, prompts, o, 30, 3, &stats);
    CHECK(stats.preemptions > 0);
    CHECK(stats.forks > 0);
  }
}

TEST_CASE("engine architectures: Qwen2 biases, Qwen3 q/k norm, Mistral sliding window, tied embeddings, GQA 4:1",
          "[rollout][engine]") {
  auto q2 = tiny_config("qwen2");
  auto q3 = tiny_config("qwen3");
  q3["head_dim"] = 16;
  auto mistral = tiny_config("mistral");
  mistral["sliding_window"] = 5;
  auto tied = tiny_config("llama");
  tied["tie_word_embeddings"] = true;
  tied["num_key_value_heads"] = 1;
  for (const auto& j : {q2, q3, mistral, tied}) {
    INFO(j.dump());
    auto lm = make_model(j, 3);
    EngineOptions o;
    o.block_size = 3;
    o.max_num_batched_tokens = 9;
    check_greedy_matches(lm, mixed_prompts(5), o, 16, 2);
  }
}

TEST_CASE("paged and contiguous caches give identical tokens (float32 model)", "[rollout][engine]") {
  auto lm = make_model(tiny_config(), 5, /*f64=*/false);
  // A left-padded batch for models::generate (contiguous KVCache) and the same prompts for the engine.
  const auto batch = left_padded(mixed_prompts(6));
  const auto params = greedy(24);
  const auto contiguous = generate(lm, batch, params);
  Engine engine(lm);
  RolloutManager manager(engine);
  const auto paged = manager.generate(batch, params);
  paged.validate();
  CHECK(paged.responses.sizes() == contiguous.responses.sizes());
  CHECK(torch::equal(paged.responses, contiguous.responses));
  CHECK(torch::equal(paged.response_mask, contiguous.response_mask));
  CHECK(torch::equal(paged.input_ids, contiguous.input_ids));
  CHECK(torch::equal(paged.attention_mask, contiguous.attention_mask));
  CHECK(torch::equal(paged.position_ids, contiguous.position_ids));
}

TEST_CASE("seeded sampling is batch-invariant: same tokens alone, in a crowd, under preemption, without sharing",
          "[rollout][engine][sampling]") {
  auto lm = make_model(tiny_config(), 7);
  verl::SamplingParams p;
  p.temperature = 1.0;
  p.top_p = 0.95;
  p.top_k = 40;
  p.max_tokens = 24;
  p.n = 4;
  p.seed = 1234;
  p.ignore_eos = true;
  const auto target = prompt_of(9, 2);
  const auto run = [&](EngineOptions o, bool crowd) {
    Engine engine(lm, o);
    verl::SamplingParams other = p;
    other.seed = 99;
    if (crowd) {
      for (std::int64_t i = 0; i < 5; ++i) engine.add_request(prompt_of(3 + 4 * i, 10 + i), other);
    }
    const auto id = engine.add_request(target, p);
    if (crowd) engine.add_request(prompt_of(17, 3), other);
    auto results = run_all(engine);
    return results.at(id).samples;
  };
  const auto alone = run({}, false);
  REQUIRE(alone.size() == 4);
  bool differ = false;
  for (std::size_t s = 1; s < alone.size(); ++s) differ = differ || alone[s].tokens != alone[0].tokens;
  CHECK(differ);  // the n samples are different draws
  EngineOptions small;
  small.block_size = 2;
  small.num_blocks = 24;
  small.max_num_batched_tokens = 6;
  EngineOptions unshared;
  unshared.enable_prefix_sharing = false;
  unshared.continuous_batching = false;
  for (const auto& [o, crowd] : std::vector<std::pair<EngineOptions, bool>>{{{}, true}, {small, true}, {unshared, true}}) {
    const auto got = run(o, crowd);
    REQUIRE(got.size() == alone.size());
    for (std::size_t s = 0; s < got.size(); ++s) CHECK(got[s].tokens == alone[s].tokens);
  }
  // Another seed gives other tokens.
  p.seed = 1235;
  const auto other_seed = run({}, false);
  CHECK(other_seed[0].tokens != alone[0].tokens);
}

TEST_CASE("returned log-probs equal the actor's log-probs of the sampled tokens", "[rollout][engine][log_probs]") {
  for (const bool f64 : {true, false}) {
    auto lm = make_model(tiny_config("qwen2"), 11, f64);
    Actor actor(lm);
    Engine engine(lm);
    RolloutManager manager(engine);
    const auto prompts = left_padded(mixed_prompts(5), 23);
    for (const double temperature : {0.0, 0.7, 1.3}) {
      verl::SamplingParams p;
      p.temperature = temperature;
      p.top_k = 20;
      p.repetition_penalty = 1.2;  // the returned log-probs are the model's, before penalties and filters
      p.max_tokens = 12;
      p.n = 2;
      p.seed = 5;
      p.return_log_probs = true;
      const auto rollout = manager.generate(prompts, p);
      verl::LogProbOptions lo;
      lo.temperature = temperature == 0.0 ? 1.0 : temperature;
      torch::NoGradGuard no_grad;
      const auto expected = actor.log_probs(rollout.token_batch(), lo).log_probs;  // (B*n,R)
      REQUIRE(rollout.log_probs);
      INFO("f64 " << f64 << " temperature " << temperature);
      // float32 sampler on logits from a float32 (f64: float64) model: the gap is float32 rounding of the
      // log-softmax plus, for float32 models, GEMM blocking differences between the two forwards.
      const double tol = f64 ? 2e-6 : 2e-4;
      const auto gap = (rollout.log_probs->to(torch::kDouble) - expected.to(torch::kDouble)).abs().max().item<double>();
      INFO("largest gap " << gap);
      CHECK(gap <= tol);
      CHECK((*rollout.log_probs * (1 - rollout.response_mask)).abs().max().item<double>() == 0.0);
    }
  }
}

TEST_CASE("prefix sharing: the n samples share the prompt's blocks (fewer blocks, one prefill)", "[rollout][engine]") {
  auto lm = make_model();
  const auto prompt = prompt_of(40, 1);
  verl::SamplingParams p;
  p.n = 8;
  p.max_tokens = 6;
  p.seed = 3;
  p.ignore_eos = true;
  const auto measure = [&](bool share) {
    EngineOptions o;
    o.block_size = 8;
    o.enable_prefix_sharing = share;
    Engine engine(lm, o);
    engine.add_request(prompt, p);
    auto results = run_all(engine);
    return std::make_pair(engine.stats(), results.begin()->second);
  };
  const auto [shared, shared_out] = measure(true);
  const auto [unshared, unshared_out] = measure(false);
  // 40 prompt tokens = 5 full blocks of 8, shared by all 8 samples; each sample adds one block of its own.
  CHECK(shared.peak_used_blocks == 5 + 8);
  CHECK(unshared.peak_used_blocks == 8 * 6);
  CHECK(shared.prefill_tokens == 40);
  CHECK(unshared.prefill_tokens == 8 * 40);
  CHECK(shared.forks == 7);
  CHECK(shared.copy_on_write == 0);  // the prompt ends on a block boundary: nothing shared is written
  for (std::size_t s = 0; s < 8; ++s) CHECK(shared_out.samples[s].tokens == unshared_out.samples[s].tokens);
  SECTION("a prompt ending inside a block copies that block on each sample's first write") {
    const auto odd = prompt_of(37, 1);
    EngineOptions o;
    o.block_size = 8;
    Engine engine(lm, o);
    engine.add_request(odd, p);
    run_all(engine);
    CHECK(engine.stats().copy_on_write == 7);  // the last sample to write keeps the original
    // Blocks 0-3 stay shared; each sample owns its copy of block 4 (positions 32-39) and block 5 (40-41).
    CHECK(engine.stats().peak_used_blocks == 4 + 8 * 2);
  }
}

TEST_CASE("stop tokens, stop strings, max_tokens and finish reasons", "[rollout][engine]") {
  auto lm = make_model();
  const auto prompt = prompt_of(6, 4);
  const auto expected = reference_greedy(lm, prompt, 12, /*eos=*/-1);
  REQUIRE(expected.size() == 12);
  EngineOptions o;
  // Token t decodes to the letter 'a' + t % 26 (a stand-in for a tokenizer's decode).
  o.detokenize = [](std::span<const std::int64_t> tokens) {
    std::string s;
    for (auto t : tokens) s += static_cast<char>('a' + t % 26);
    return s;
  };
  o.eos_token_ids = {-5};  // nothing is eos
  Engine engine(lm, o);
  auto stop_token = greedy(12);
  stop_token.stop_token_ids = {expected[4]};
  auto stop_string = greedy(12);
  const std::string text = o.detokenize(expected);
  stop_string.stop = {text.substr(5, 3)};  // completed by the 8th token (unless it occurs earlier)
  const auto a = engine.add_request(prompt, stop_token);
  const auto b = engine.add_request(prompt, stop_string);
  const auto c = engine.add_request(prompt, greedy(12));
  auto results = run_all(engine);
  const auto first_stop = std::find(expected.begin(), expected.end(), expected[4]) - expected.begin();
  CHECK(results.at(a).samples[0].tokens == std::vector<std::int64_t>(expected.begin(), expected.begin() + first_stop + 1));
  CHECK(results.at(a).samples[0].finish_reason == FinishReason::stop_token);
  const auto end = text.find(text.substr(5, 3)) + 3;
  CHECK(results.at(b).samples[0].tokens == std::vector<std::int64_t>(expected.begin(), expected.begin() + static_cast<std::ptrdiff_t>(end)));
  CHECK(results.at(b).samples[0].finish_reason == FinishReason::stop_string);
  CHECK(results.at(c).samples[0].tokens == expected);
  CHECK(results.at(c).samples[0].finish_reason == FinishReason::length);
}

TEST_CASE("RolloutManager: layout, padding, progress, cancellation, typed batch", "[rollout][manager]") {
  auto lm = make_model();
  Engine engine(lm);
  std::vector<RolloutProgress> seen;
  RolloutOptions ro;
  ro.progress_every_steps = 4;
  ro.on_progress = [&](const RolloutProgress& p) { seen.push_back(p); };
  ro.pad_token_id = 0;
  RolloutManager manager(engine, ro);
  const auto ids = torch::tensor({0, 0, 5, 6, 7, 8, 9, 10, 11, 12}, torch::kLong).view({2, 5});
  const auto mask = torch::tensor({0, 0, 1, 1, 1, 1, 1, 1, 1, 1}, torch::kLong).view({2, 5});
  const verl::Prompts prompts{ids, mask, (mask.cumsum(1) - 1).clamp_min(0)};
  auto p = greedy(10, 3);
  const auto rollout = manager.generate(prompts, p);
  rollout.validate();
  CHECK(rollout.prompts.size(0) == 6);
  CHECK(torch::equal(rollout.prompts, ids.repeat_interleave(3, 0)));
  for (std::int64_t row = 0; row < 6; ++row) {
    const auto expected = reference_greedy(lm, row < 3 ? std::vector<std::int64_t>{5, 6, 7}
                                                       : std::vector<std::int64_t>{8, 9, 10, 11, 12}, 10);
    const auto len = static_cast<std::int64_t>(expected.size());
    CHECK(rollout.response_mask[row].sum().item<std::int64_t>() == len);
    for (std::int64_t t = 0; t < rollout.responses.size(1); ++t) {
      CHECK(rollout.responses[row][t].item<std::int64_t>() == (t < len ? expected[static_cast<std::size_t>(t)] : 0));
    }
    const auto last_prompt_pos = row < 3 ? 2 : 4;
    CHECK(rollout.position_ids[row][5].item<std::int64_t>() == last_prompt_pos + 1);
  }
  REQUIRE(!seen.empty());
  CHECK(seen.back().finished_samples == 6);
  CHECK(seen.back().total_samples == 6);
  const auto batch = manager.generate_batch(prompts, p);
  CHECK(torch::equal(batch.get<verl::fields::uid>(), torch::tensor({0, 0, 0, 1, 1, 1}, torch::kLong)));
  CHECK(torch::equal(batch.get<verl::fields::responses>(), rollout.responses));
  auto sampled = greedy(10, 3);
  sampled.temperature = 1.0;
  sampled.seed = 8;
  sampled.return_log_probs = true;
  const auto second = manager.generate_batch<true>(prompts, sampled);  // uids continue; log-probs attached
  CHECK(torch::equal(second.get<verl::fields::uid>(), torch::tensor({2, 2, 2, 3, 3, 3}, torch::kLong)));
  CHECK(second.get<verl::fields::rollout_log_probs>().sizes() == second.get<verl::fields::responses>().sizes());
  CHECK_THROWS_AS(manager.generate_batch<true>(prompts, p), verl::ConfigError);  // return_log_probs not set

  SECTION("cancel from the progress callback") {
    RolloutOptions co;
    co.progress_every_steps = 2;
    RolloutManager* self = nullptr;
    co.on_progress = [&](const RolloutProgress&) { self->cancel(); };
    RolloutManager cancelling(engine, co);
    self = &cancelling;
    auto long_params = greedy(40, 2);
    long_params.ignore_eos = true;
    CHECK_THROWS_AS(cancelling.generate(prompts, long_params), RolloutCancelled);
    CHECK(!engine.has_unfinished());
    CHECK(engine.num_free_blocks() == engine.num_blocks());
    // The engine is usable afterwards.
    CHECK(torch::equal(manager.generate(prompts, p).responses, rollout.responses));
  }
}

TEST_CASE("Actor::generate runs on the engine, weights are shared, update_weights copies", "[rollout][engine]") {
  auto lm = make_model();
  Actor actor(lm);
  const auto ids = torch::tensor({9, 8, 7, 6}, torch::kLong).view({1, 4});
  const verl::Prompts prompts{ids, torch::ones({1, 4}, torch::kLong), torch::arange(4, torch::kLong).view({1, 4})};
  const auto before = actor.generate(prompts, greedy(8));
  CHECK(before.responses[0].narrow(0, 0, before.response_mask[0].sum().item<std::int64_t>()).equal(
      torch::tensor(reference_greedy(lm, {9, 8, 7, 6}, 8), torch::kLong)));
  // A change to the actor's weights is seen by the next generation (colocated, no copy).
  {
    torch::NoGradGuard no_grad;
    for (auto& t : lm->parameters()) t.add_(torch::randn_like(t) * 0.3);
  }
  const auto after = actor.generate(prompts, greedy(8));
  CHECK(after.responses[0].narrow(0, 0, after.response_mask[0].sum().item<std::int64_t>()).equal(
      torch::tensor(reference_greedy(lm, {9, 8, 7, 6}, 8), torch::kLong)));
  // An engine on its own copy follows the actor after update_weights.
  auto copy = verl::models::detail::deep_copy(make_model(tiny_config(), 2));
  Engine separate(copy);
  std::vector<std::pair<std::string, at::Tensor>> named;
  for (const auto& item : lm->named_parameters()) named.emplace_back(item.key(), item.value());
  separate.update_weights(named);
  RolloutManager manager(separate);
  CHECK(torch::equal(manager.generate(prompts, greedy(8)).responses, after.responses));
  CHECK_THROWS_AS(separate.update_weights({{"model.nope.weight", torch::zeros({1})}}), verl::ShapeError);
  CHECK_THROWS_AS(separate.update_weights({{"lm_head.weight", torch::zeros({1})}}), verl::ShapeError);
}

TEST_CASE("engine input errors name the problem", "[rollout][engine][errors]") {
  auto lm = make_model();
  EngineOptions o;
  o.block_size = 4;
  o.num_blocks = 3;
  Engine engine(lm, o);
  const auto message = [&](auto&& f) {
    try {
      f();
    } catch (const verl::Error& e) {
      return std::string(e.what());
    }
    return std::string("no exception");
  };
  CHECK_THAT(message([&] { engine.add_request(prompt_of(10, 0), greedy(8)); }),
             Catch::Contains("needs 5 KV blocks") && Catch::Contains("the pool holds 3"));
  CHECK_THAT(message([&] { engine.add_request({}, greedy(2)); }), Catch::Contains("no tokens"));
  CHECK_THAT(message([&] { engine.add_request({4, 61}, greedy(2)); }), Catch::Contains("prompt token 1 is 61"));
  auto stop = greedy(2);
  stop.stop = {"x"};
  CHECK_THAT(message([&] { engine.add_request({4, 5}, stop); }), Catch::Contains("detokenize"));
  CHECK_THAT(message([&] { engine.add_request({4, 5}, greedy(2), {0}); }), Catch::Contains("1 positions for 2"));
  EngineOptions bad;
  bad.max_num_seqs = 0;
  CHECK_THAT(message([&] { Engine e(lm, bad); }), Catch::Contains("max_num_seqs"));
  CHECK(!engine.has_unfinished());
}

TEST_CASE("engine on CUDA: greedy equals the uncached forward, sampling equals the CPU engine's", "[rollout][engine][cuda]") {
  if (!torch::cuda::is_available()) {
    SUCCEED("no CUDA device; skipped");
    return;
  }
  auto lm = make_model();  // float64: the CPU and CUDA forwards agree to ~1e-15
  auto gpu = verl::models::detail::deep_copy(lm);
  gpu->to(torch::kCUDA);
  const auto prompts = mixed_prompts(6);
  EngineOptions o;
  o.block_size = 4;
  o.num_blocks = 40;  // small enough to preempt
  check_greedy_matches(gpu, prompts, o, 20, 2);
  verl::SamplingParams p;
  p.temperature = 0.9;
  p.top_p = 0.9;
  p.n = 3;
  p.max_tokens = 16;
  p.seed = 42;
  p.ignore_eos = true;
  Engine on_cpu(lm, o), on_gpu(gpu, o);
  const auto a = on_cpu.add_request(prompts[3], p), b = on_gpu.add_request(prompts[3], p);
  const auto cpu_out = run_all(on_cpu).at(a), gpu_out = run_all(on_gpu).at(b);
  for (std::size_t s = 0; s < 3; ++s) CHECK(cpu_out.samples[s].tokens == gpu_out.samples[s].tokens);
}

// decode_linear against at::linear in float64: every row count it takes, widths that are not a multiple of its
// 16 lanes, with and without bias, and its fallbacks.
TEST_CASE("decode_linear equals x W^T + b up to float32 summation order", "[rollout][decode_linear]") {
  torch::manual_seed(0);
  for (const std::int64_t in : {1, 15, 16, 37, 896}) {
    for (const std::int64_t out : {1, 3, 1000}) {
      const auto w = torch::randn({out, in});
      const auto b = torch::randn({out});
      // Row counts around its groups of four, up to its limit.
      for (const std::int64_t m : {std::int64_t{1}, std::int64_t{2}, std::int64_t{3}, std::int64_t{4}, std::int64_t{5},
                                   std::int64_t{11}, verl::rollout::decode_linear_max_rows}) {
        const auto x = torch::randn({m, in});
        REQUIRE(verl::rollout::decode_linear_applies(x, w));
        const auto ref = torch::linear(x.to(torch::kDouble), w.to(torch::kDouble), b.to(torch::kDouble));
        const auto ref_nb = torch::linear(x.to(torch::kDouble), w.to(torch::kDouble));
        // Each output is a sum of `in` products of unit-variance terms: float32 rounding of the sum is a few
        // ulps of sqrt(in) in magnitude.
        const double tol = 1e-6 * std::sqrt(static_cast<double>(in)) * 8;
        INFO("in " << in << " out " << out << " m " << m);
        CHECK((decode_linear(x, w, b).to(torch::kDouble) - ref).abs().max().item<double>() <= tol);
        CHECK((decode_linear(x, w).to(torch::kDouble) - ref_nb).abs().max().item<double>() <= tol);
      }
    }
  }
}

TEST_CASE("decode_linear: the same result on 1 and 2 threads, fallbacks to at::linear", "[rollout][decode_linear]") {
  torch::manual_seed(1);
  const auto w = torch::randn({20000, 64});
  const auto x = torch::randn({7, 64});
  const int threads = at::get_num_threads();
  at::set_num_threads(1);
  const auto one = decode_linear(x, w);
  at::set_num_threads(2);
  const auto two = decode_linear(x, w);
  at::set_num_threads(threads);
  CHECK(torch::equal(one, two));  // each output is computed by one thread in a fixed order
  // Outside its domain it is at::linear itself.
  const auto x5 = torch::randn({verl::rollout::decode_linear_max_rows + 1, 64});
  CHECK(!verl::rollout::decode_linear_applies(x5, w));
  CHECK(torch::equal(decode_linear(x5, w), torch::linear(x5, w)));
  const auto xd = torch::randn({1, 64}, torch::kDouble);
  CHECK(torch::equal(decode_linear(xd, w.to(torch::kDouble)), torch::linear(xd, w.to(torch::kDouble))));
  const auto wt = torch::randn({64, 30}).t();  // non-contiguous weight
  CHECK(!verl::rollout::decode_linear_applies(x, wt));
  CHECK(torch::equal(decode_linear(x, wt), torch::linear(x, wt)));
}

}  // namespace test_engine
