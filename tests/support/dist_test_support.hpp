// Helpers shared by the multi-process tests of tests/unit/dist/: starting this test executable as N ranks, the
// tiny models and batches the distributed trainers are compared on, and comparisons of named parameters.
//
// The multi-process pattern (tests/unit/dist/test_c10d.cpp): a test case starts the test executable itself as N
// ranks through verl::dist::launch_local; each rank runs a hidden test case (tag "[.something_worker]") in a mode
// passed through the environment, and the parent checks every rank's exit status.
#pragma once

#include "verl/core/batch.hpp"
#include "verl/data/preference_dataset.hpp"
#include "verl/dist/launch_local.hpp"
#include "verl/models/actor.hpp"
#include "verl/models/causal_lm.hpp"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/core/Tensor.h>
#include <nlohmann/json.hpp>
#include <torch/types.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

namespace verl::test {

//! Starts `n` ranks of this test executable, each running the hidden test case `tag` with the variables `env` (and
//! OMP_NUM_THREADS=1: 4 ranks on 2 cores); the launcher's `timeout` keeps a hang from stalling CTest.
inline verl::dist::LocalLaunchResult launch_self(int n, const std::string& tag,
                                                 std::vector<std::pair<std::string, std::string>> env,
                                                 std::chrono::milliseconds timeout,
                                                 std::chrono::milliseconds grace = std::chrono::milliseconds(5000)) {
  const std::string exe = std::filesystem::read_symlink("/proc/self/exe").string();
  verl::dist::LocalLaunchOptions options;
  options.nprocs = n;
  options.grace_period = grace;
  options.kill_after = std::chrono::milliseconds(2000);
  options.timeout = timeout;
  env.emplace_back("OMP_NUM_THREADS", "1");
  options.env = std::move(env);
  return verl::dist::launch_local(exe, {tag}, options);
}

//! The tiny transformer shape the sharding tests share: hidden 32, 2 layers of 4 query heads of 8 and 2 key/value
//! heads, 64 positions, no sliding window, untied head, no biases; the caller sets what its test varies.
inline verl::models::TransformerConfig tiny_transformer_config(const std::string& model_type, std::int64_t vocab_size,
                                                               std::int64_t intermediate_size) {
  verl::models::TransformerConfig c;
  c.model_type = model_type;
  c.vocab_size = vocab_size;
  c.hidden_size = 32;
  c.intermediate_size = intermediate_size;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.head_dim = 8;
  c.max_position_embeddings = 64;
  c.rms_norm_eps = 1e-6;
  c.sliding_windows = {0, 0};
  return c;
}

//! `c` as a float64 CausalLM with every parameter random (biases and norm weights too, so that each takes part in
//! a comparison): norm weights uniform in [0.5, 1.5], the others normal(0, `stddev`); the same on every rank for
//! one seed.
inline verl::models::CausalLM random_causal_lm(const verl::models::TransformerConfig& c, std::uint64_t seed,
                                               double stddev) {
  torch::manual_seed(seed);
  verl::models::CausalLM lm(c);
  lm->to(at::kDouble);  // the config's dtype names checkpoint dtypes only (float32, bfloat16, float16)
  at::NoGradGuard no_grad;
  for (auto& item : lm->named_parameters()) {
    if (item.key().find("norm.weight") != std::string::npos) {
      item.value().uniform_(0.5, 1.5);
    } else {
      item.value().normal_(0.0, stddev);
    }
  }
  return lm;
}

//! The tensors concatenated after flattening (detached): one vector of every parameter, for comparisons.
inline at::Tensor flat(const std::vector<at::Tensor>& ts) {
  std::vector<at::Tensor> parts;
  for (const auto& t : ts) parts.push_back(t.detach().reshape({-1}));
  return at::cat(parts);
}

//! Named tensors, in the models' parameter order.
using NamedTensors = std::vector<std::pair<std::string, at::Tensor>>;

//! The same names in the same order, and every tensor bitwise equal.
inline bool bitwise_equal(const NamedTensors& a, const NamedTensors& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (a[i].first != b[i].first || !a[i].second.equal(b[i].second)) return false;
  }
  return true;
}

//! The tiny Qwen2 the distributed trainers are compared on: vocabulary 64, hidden 32, 2 layers of 4 query and 2
//! key/value heads, intermediate 48, untied head; pad id 0, eos id 1.
inline verl::models::TransformerConfig tiny_qwen2_config() {
  nlohmann::json j{{"model_type", "qwen2"},        {"vocab_size", 64},          {"hidden_size", 32},
                   {"intermediate_size", 48},      {"num_hidden_layers", 2},    {"num_attention_heads", 4},
                   {"num_key_value_heads", 2},     {"max_position_embeddings", 64}, {"rms_norm_eps", 1e-6},
                   {"tie_word_embeddings", false}, {"pad_token_id", 0},         {"eos_token_id", 1}};
  return verl::models::TransformerConfig::from_json(j);
}

//! A right-padded SFT batch of `rows` rows (lengths 5..12, prompt of 2..4 tokens without loss), step-seeded.
inline verl::data::SFTBatch sft_batch(int step, std::int64_t rows) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(77 + step);
  constexpr std::int64_t T = 12;
  verl::data::SFTBatch b;
  b.input_ids = torch::zeros({rows, T}, torch::kLong);
  b.attention_mask = torch::zeros({rows, T}, torch::kLong);
  b.loss_mask = torch::zeros({rows, T}, torch::kLong);
  for (std::int64_t i = 0; i < rows; ++i) {
    const auto len = 5 + torch::randint(0, 8, {1}, gen).item<std::int64_t>();
    const auto prompt = 2 + torch::randint(0, 3, {1}, gen).item<std::int64_t>();
    b.input_ids[i].narrow(0, 0, len).copy_(torch::randint(2, 64, {len}, gen));
    b.attention_mask[i].narrow(0, 0, len).fill_(1);
    b.loss_mask[i].narrow(0, prompt, len - prompt).fill_(1);
    b.indices.push_back(static_cast<std::size_t>(i));
  }
  b.position_ids = (b.attention_mask.cumsum(1) - 1).clamp_min(0);
  return b;
}

//! What update_policy reads.
using UpdateBatch = verl::Batch<verl::fields::input_ids, verl::fields::attention_mask, verl::fields::position_ids,
                                verl::fields::responses, verl::fields::response_mask, verl::fields::old_log_probs,
                                verl::fields::advantages>;

//! `rows` rollouts of a 4-token prompt and a right-padded response of 1..5 tokens, with old log-probs from
//! `actor` and random advantages of `advantage_dtype` (masked).
inline UpdateBatch update_batch(verl::models::Actor& actor, std::int64_t rows, at::ScalarType advantage_dtype) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(4242);
  constexpr std::int64_t P = 4, R = 5;
  auto ids = torch::randint(2, 64, {rows, P + R}, gen);  // (B,T)
  auto mask = torch::ones({rows, P + R}, torch::kLong);   // (B,T)
  for (std::int64_t i = 0; i < rows; ++i) {
    const auto len = 1 + torch::randint(0, R, {1}, gen).item<std::int64_t>();
    mask[i].narrow(0, P + len, R - len).zero_();
    ids[i].narrow(0, P + len, R - len).zero_();
  }
  const auto pos = (mask.cumsum(1) - 1).clamp_min(0);      // (B,T)
  const auto responses = ids.narrow(1, P, R).contiguous();  // (B,R)
  const auto rmask = mask.narrow(1, P, R).contiguous();     // (B,R)
  at::Tensor old;
  {
    at::NoGradGuard ng;
    old = actor.log_probs(verl::TokenBatch{ids, mask, pos, R}).log_probs;  // (B,R)
  }
  const auto adv = torch::randn({rows, R}, gen, advantage_dtype) * rmask.to(advantage_dtype);  // (B,R)
  return UpdateBatch(ids, mask, pos, responses, rmask, old, adv);
}

//! verl's data-parallel mini-batches: rank q of `n` holds rows [q*rows/n, (q+1)*rows/n) and its k-th mini-batch is
//! rows k*mini/n.. of that chunk, so the global mini-batch k is their union. Returns the row order under which one
//! process's k-th mini-batch of `mini` rows is that union (in rank order).
inline std::vector<std::int64_t> data_parallel_row_order(std::int64_t rows, std::int64_t mini, int n) {
  const std::int64_t chunk = rows / n, per_mini = mini / n;
  std::vector<std::int64_t> order;
  for (std::int64_t k = 0; k < rows / mini; ++k)
    for (std::int64_t q = 0; q < n; ++q)
      for (std::int64_t i = 0; i < per_mini; ++i) order.push_back(q * chunk + k * per_mini + i);
  return order;
}

}  // namespace verl::test
