// verl::models transformers (include/verl/models/{config,rope,layers,kv_cache,decoder,causal_lm}.hpp), without
// Python: config.json parsing against transformers 5.23.0's config classes (each rejected key/value), RoPE
// inverse frequencies hand-derived for each rope_type, RMSNorm, the causal+padding(+window) mask, padded
// rows against unpadded ones, KV-cached forward against the full forward, tied weights, bf16/fp16, activation
// checkpointing gradients, generation invariants, HF directory save/load (round trip, missing/unexpected
// tensors listed, tied heads, shapes). Parity with transformers itself is tests/parity/models/.
#include "catch_torch.hpp"

#include "temp_dir.hpp"
#include "verl/checkpoint/safetensors.hpp"
#include "verl/models/causal_lm.hpp"
#include "verl/models/hf_model_io.hpp"


#include <cmath>
#include <deque>
#include <set>
#include <string>

namespace test_transformer {  // one namespace per file: a unity build (tests/CMakeLists.txt) may join files

using namespace verl::models;
using nlohmann::json;

namespace {

json tiny_llama() {
  return json{{"model_type", "llama"},        {"vocab_size", 97},          {"hidden_size", 32},
              {"intermediate_size", 48},      {"num_hidden_layers", 2},    {"num_attention_heads", 4},
              {"num_key_value_heads", 2},     {"max_position_embeddings", 64}, {"rms_norm_eps", 1e-6},
              {"rope_theta", 10000.0},        {"tie_word_embeddings", false}, {"hidden_act", "silu"}};
}

CausalLM make_model(json j, std::uint64_t seed = 0) {
  torch::manual_seed(seed);
  CausalLM lm(TransformerConfig::from_json(j));
  lm->init_weights(0.2);  // larger than HF's 0.02 so that attention patterns are far from uniform
  lm->eval();
  return lm;
}

// Expects ConfigError from parsing `j` whose message contains every one of `parts`.
void expect_rejected(const json& j, std::initializer_list<std::string> parts) {
  try {
    (void)TransformerConfig::from_json(j);
    FAIL("expected verl::ConfigError for " << j.dump());
  } catch (const verl::ConfigError& e) {
    const std::string what = e.what();
    for (const auto& p : parts) {
      INFO(what);
      CHECK(what.find(p) != std::string::npos);
    }
  }
}

}  // namespace

TEST_CASE("config: llama/mistral/qwen2/qwen3 keys and transformers 5.23 defaults", "[models][config]") {
  auto j = tiny_llama();
  j["architectures"] = {"LlamaForCausalLM"};
  j["use_cache"] = true;
  j["initializer_range"] = 0.02;
  j["transformers_version"] = "4.44.0";
  j["bos_token_id"] = 1;
  j["eos_token_id"] = json::array({2, 5});
  j["torch_dtype"] = "bfloat16";
  j["pretraining_tp"] = 2;  // transformers 5 ignores it (it only sliced the same matmuls)
  const auto c = TransformerConfig::from_json(j);
  CHECK(c.head_dim == 8);
  CHECK(c.num_key_value_groups() == 2);
  CHECK(c.dtype == at::kBFloat16);
  CHECK(c.eos_token_ids == std::vector<std::int64_t>{2, 5});
  CHECK(c.bos_token_id == 1);
  CHECK(c.rope.type == RopeType::standard);
  CHECK(c.sliding_windows == std::vector<std::int64_t>{0, 0});
  const std::set<std::string> ignored(c.ignored_keys.begin(), c.ignored_keys.end());
  CHECK(ignored == std::set<std::string>{"architectures", "use_cache", "initializer_range", "transformers_version"});

  // `dtype` wins over `torch_dtype`; class defaults fill missing keys.
  j["dtype"] = "float16";
  CHECK(TransformerConfig::from_json(j).dtype == at::kHalf);
  const auto bare = TransformerConfig::from_json(json{{"model_type", "qwen3"}});
  CHECK(bare.head_dim == 128);
  CHECK(bare.num_key_value_heads == 32);
  CHECK(bare.vocab_size == 151936);
  CHECK(bare.qk_norm);
  CHECK(TransformerConfig::from_json(json{{"model_type", "mistral"}}).num_key_value_heads == 8);
  CHECK(TransformerConfig::from_json(json{{"model_type", "mistral"}, {"num_key_value_heads", nullptr}}).num_key_value_heads == 32);

  // Mistral: a missing sliding_window is the class default 4096, null is none.
  auto m = tiny_llama();
  m["model_type"] = "mistral";
  m.erase("rope_theta");
  CHECK(TransformerConfig::from_json(m).sliding_windows == std::vector<std::int64_t>{4096, 4096});
  m["sliding_window"] = nullptr;
  CHECK(TransformerConfig::from_json(m).sliding_windows == std::vector<std::int64_t>{0, 0});
  m["sliding_window"] = 3;
  CHECK(TransformerConfig::from_json(m).sliding_windows == std::vector<std::int64_t>{3, 3});

  // Qwen2: biases on q/k/v; the window applies to layers >= max_window_layers only when use_sliding_window.
  auto q = tiny_llama();
  q["model_type"] = "qwen2";
  q["num_hidden_layers"] = 3;
  q["sliding_window"] = 5;
  q["max_window_layers"] = 1;
  auto qc = TransformerConfig::from_json(q);
  CHECK(qc.qkv_bias);
  CHECK_FALSE(qc.attention_bias);
  CHECK(qc.sliding_windows == std::vector<std::int64_t>{0, 0, 0});
  q["use_sliding_window"] = true;
  CHECK(TransformerConfig::from_json(q).sliding_windows == std::vector<std::int64_t>{0, 5, 5});
  q["layer_types"] = {"sliding_attention", "full_attention", "sliding_attention"};
  CHECK(TransformerConfig::from_json(q).sliding_windows == std::vector<std::int64_t>{5, 0, 5});
}

TEST_CASE("config: RoPE keys in transformers 5 and older spellings", "[models][config][rope]") {
  auto j = tiny_llama();
  // Llama 3.1's published file: top-level rope_theta, rope_scaling with rope_type.
  j["rope_theta"] = 500000.0;
  j["rope_scaling"] = {{"factor", 8.0}, {"low_freq_factor", 1.0}, {"high_freq_factor", 4.0},
                       {"original_max_position_embeddings", 32}, {"rope_type", "llama3"}};
  auto c = TransformerConfig::from_json(j);
  CHECK(c.rope.type == RopeType::llama3);
  CHECK(c.rope.theta == 500000.0);
  CHECK(c.rope.original_max_position_embeddings == 32);
  // transformers 5: rope_parameters holding rope_theta.
  j.erase("rope_scaling");
  j.erase("rope_theta");
  j["rope_parameters"] = {{"rope_type", "linear"}, {"factor", 2.0}, {"rope_theta", 1000.0}};
  c = TransformerConfig::from_json(j);
  CHECK(c.rope.type == RopeType::linear);
  CHECK(c.rope.factor == 2.0);
  CHECK(c.rope.theta == 1000.0);
  // The oldest spelling: {"type": "dynamic"}.
  j["rope_parameters"] = {{"type", "dynamic"}, {"factor", 4}};
  c = TransformerConfig::from_json(j);
  CHECK(c.rope.type == RopeType::dynamic);
  CHECK(c.rope.theta == 10000.0);
  // Round trip through to_json keeps the RoPE.
  const auto back = TransformerConfig::from_json(c.to_json());
  CHECK(back.rope.type == RopeType::dynamic);
  CHECK(back.rope.factor == 4.0);
  CHECK(c.to_json()["rope_parameters"]["rope_type"] == "dynamic");
  CHECK(c.to_json()["architectures"][0] == "LlamaForCausalLM");
}

TEST_CASE("config: unsupported values are rejected naming the key and the value", "[models][config]") {
  const auto with = [](json j, const std::string& k, json v) {
    j[k] = std::move(v);
    return j;
  };
  const auto base = tiny_llama();
  expect_rejected(with(base, "model_type", "gemma"), {"model_type", "gemma"});
  expect_rejected(with(base, "hidden_act", "gelu"), {"hidden_act", "gelu", "silu"});
  expect_rejected(with(base, "attention_dropout", 0.1), {"attention_dropout", "0.1"});
  expect_rejected(with(base, "dtype", "int8"), {"dtype", "int8"});
  expect_rejected(with(base, "torch_dtype", "float8_e4m3fn"), {"torch_dtype", "float8_e4m3fn"});
  expect_rejected(with(base, "quantization_config", json{{"quant_method", "gptq"}}), {"quantization_config", "gptq"});
  expect_rejected(with(base, "partial_rotary_factor", 0.5), {"partial_rotary_factor", "0.5"});
  expect_rejected(with(base, "rope_scaling", json{{"rope_type", "yarn"}, {"factor", 4.0}}), {"rope_scaling.rope_type", "yarn"});
  expect_rejected(with(base, "rope_parameters", json{{"rope_type", "longrope"}}), {"rope_parameters.rope_type", "longrope"});
  expect_rejected(with(base, "rope_scaling", json{{"rope_type", "linear"}, {"factor", 0.5}}), {"rope_scaling.factor", "0.5"});
  expect_rejected(with(base, "rope_scaling", json{{"rope_type", "llama3"}, {"factor", 8.0}, {"high_freq_factor", 4.0},
                                                   {"original_max_position_embeddings", 32}}),
                  {"rope_scaling.low_freq_factor", "missing"});
  expect_rejected(with(base, "sliding_window", 16), {"sliding_window", "16"});
  expect_rejected(with(base, "layer_types", json{"full_attention", "full_attention"}), {"layer_types"});
  expect_rejected(with(base, "num_key_value_heads", 3), {"num_attention_heads", "num_key_value_heads", "3"});
  expect_rejected(with(base, "hidden_size", -4), {"hidden_size", "-4"});
  expect_rejected(with(base, "vocab_size", 9.5), {"vocab_size", "9.5"});
  expect_rejected(with(base, "attention_bias", "yes"), {"attention_bias", "yes"});
  auto mistral = with(base, "model_type", "mistral");
  expect_rejected(with(mistral, "mlp_bias", true), {"mlp_bias", "true"});
  expect_rejected(with(mistral, "attention_bias", true), {"attention_bias", "true"});
  expect_rejected(with(mistral, "layer_types", json{"sliding_attention", "full_attention"}), {"layer_types", "sliding_attention"});
  auto qwen2 = with(base, "model_type", "qwen2");
  expect_rejected(with(qwen2, "attention_bias", true), {"attention_bias", "true"});
  expect_rejected(with(qwen2, "layer_types", json{"sliding_attention", "full_attention"}), {"layer_types[0]", "sliding_attention"});
  expect_rejected(with(qwen2, "layer_types", json{"full_attention"}), {"layer_types", "2"});
  expect_rejected(with(qwen2, "eos_token_id", json{1, -2}), {"eos_token_id", "-2"});
  CHECK_THROWS_AS(TransformerConfig::load("/nonexistent/dir"), verl::InputError);
}

TEST_CASE("RoPE inverse frequencies, hand-derived for each rope_type", "[models][rope]") {
  auto c = TransformerConfig::from_json(tiny_llama());
  const auto near = [](const at::Tensor& got, std::vector<double> want) {
    REQUIRE(got.numel() == static_cast<std::int64_t>(want.size()));
    for (std::size_t i = 0; i < want.size(); ++i) {
      INFO(i);
      CHECK(got[static_cast<std::int64_t>(i)].item<double>() == Approx(want[i]).epsilon(2e-6));
    }
  };
  // head_dim 8, theta 1e4: inv_freq_i = 1e4^(-2i/8) = 1, 0.1, 0.01, 0.001.
  near(rope_inv_freq(c), {1.0, 0.1, 0.01, 0.001});
  c.rope.type = RopeType::linear;  // divided by the factor
  c.rope.factor = 4.0;
  near(rope_inv_freq(c), {0.25, 0.025, 0.0025, 0.00025});
  // llama3, original context 100, low 1, high 4, factor 8: wavelengths 2*pi/f = 6.28, 62.8, 628, 6283.
  // < 100/4 = 25 kept; > 100/1 = 100 divided by 8; 62.8 between: s = (100/62.83 - 1)/(4 - 1),
  // f = (1 - s) * 0.1/8 + s * 0.1.
  c.rope = RopeConfig{RopeType::llama3, 10000.0, 8.0, 1.0, 4.0, 100};
  const double s = (100.0 / (2 * M_PI / 0.1) - 1.0) / 3.0;
  near(rope_inv_freq(c), {1.0, (1 - s) * 0.1 / 8 + s * 0.1, 0.01 / 8, 0.001 / 8});
  // dynamic, factor 2, max_position_embeddings 64: unchanged up to 64 positions; at 128 the base becomes
  // 1e4 * (2 * 128/64 - 1)^(8/6) = 1e4 * 3^(4/3).
  c.rope = RopeConfig{RopeType::dynamic, 10000.0, 2.0};
  near(rope_inv_freq(c, 64), {1.0, 0.1, 0.01, 0.001});
  const double base = 1e4 * std::pow(3.0, 4.0 / 3.0);
  near(rope_inv_freq(c, 128), {1.0, std::pow(base, -0.25), std::pow(base, -0.5), std::pow(base, -0.75)});

  // cos/sin tables: position 3, frequency 0.1 at index 1 and 1 + D/2 = 5.
  c.rope = RopeConfig{};
  const auto [cos, sin] = rope_cos_sin(c, torch::tensor({{0, 3}}), at::kFloat);  // (1,2,8)
  CHECK(cos[0][1][1].item<double>() == Approx(std::cos(0.3)).epsilon(1e-6));
  CHECK(sin[0][1][5].item<double>() == Approx(std::sin(0.3)).epsilon(1e-6));
  CHECK(cos[0][0].eq(1).all().item<bool>());
  // apply_rope on x = (1, 0 | 0, 0) at angle a gives (cos a, 0 | sin a, 0): the pair (x_i, x_{i+D/2}) rotates.
  auto x = torch::zeros({1, 1, 1, 4});
  x[0][0][0][0] = 1.0;
  const auto ang = torch::full({1, 1, 4}, 0.7);
  const auto y = apply_rope(x, ang.cos(), ang.sin());
  CHECK(y[0][0][0][0].item<double>() == Approx(std::cos(0.7)));
  CHECK(y[0][0][0][2].item<double>() == Approx(std::sin(0.7)));
}

TEST_CASE("RMSNorm: float32 statistics, cast back, weight", "[models][layers]") {
  RMSNorm n(2, 1e-6);
  {
    torch::NoGradGuard g;
    n->weight.copy_(torch::tensor({1.0f, 2.0f}));
  }
  // x = (3, 4): mean(x^2) = 12.5, y = (3, 2 * 4) / sqrt(12.5 + 1e-6).
  const auto y = n(torch::tensor({{3.0f, 4.0f}}));
  CHECK(y[0][0].item<double>() == Approx(3.0 / std::sqrt(12.5 + 1e-6)).epsilon(1e-6));
  CHECK(y[0][1].item<double>() == Approx(8.0 / std::sqrt(12.5 + 1e-6)).epsilon(1e-6));
  // bf16 input: statistics in float32 (no overflow of x^2 in bf16 range issues), output bf16.
  n->to(at::kBFloat16);
  const auto yb = n(torch::tensor({{3.0f, 4.0f}}).to(at::kBFloat16));
  CHECK(yb.scalar_type() == at::kBFloat16);
  CHECK(yb[0][1].item<double>() == Approx(8.0 / std::sqrt(12.5)).epsilon(1e-2));
}

TEST_CASE("attention mask: causal over columns, padding keys hidden, window, pad queries see themselves",
          "[models][mask]") {
  const auto mask = torch::tensor({{0, 1, 1}, {1, 1, 0}});  // left-padded row, right-padded row
  const auto m = attention_mask_4d(mask, 0, 3).to(at::kLong);  // (2,1,3,3)
  CHECK(torch::equal(m[0][0], torch::tensor({{1, 0, 0}, {0, 1, 0}, {0, 1, 1}})));
  CHECK(torch::equal(m[1][0], torch::tensor({{1, 0, 0}, {1, 1, 0}, {1, 1, 1}})));
  const auto w = attention_mask_4d(mask, 0, 3, 2).to(at::kLong);  // window 2: j > i - 2
  CHECK(torch::equal(w[1][0], torch::tensor({{1, 0, 0}, {1, 1, 0}, {0, 1, 1}})));
  // One new query at column 3 over 4 cached columns.
  const auto d = attention_mask_4d(torch::tensor({{0, 1, 1, 1}}), 3, 1).to(at::kLong);  // (1,1,1,4)
  CHECK(torch::equal(d[0][0], torch::tensor({{0, 1, 1, 1}})));
}

TEST_CASE("padded rows equal the unpadded sequence at real positions, KV cache equals the full forward",
          "[models][decoder][kv_cache]") {
  for (const char* arch : {"llama", "mistral", "qwen2", "qwen3"}) {
    INFO(arch);
    auto j = tiny_llama();
    j["model_type"] = arch;
    if (std::string(arch) == "mistral") j["sliding_window"] = 3;
    if (std::string(arch) == "llama") j["attention_bias"] = true;
    auto lm = make_model(j, 1);
    torch::NoGradGuard g;
    const auto seq = torch::tensor({{5, 17, 3, 42, 8, 60}});  // (1,6)
    const auto pos = torch::arange(6).unsqueeze(0);
    const auto ref = lm(seq, torch::ones({1, 6}, torch::kLong), pos);  // (1,6,V)
    // Left-padded by 2 (positions start at 0 on the first real token), right-padded by 2.
    const auto left = torch::cat({torch::tensor({{0, 0}}), seq}, 1);
    const auto left_mask = torch::tensor({{0, 0, 1, 1, 1, 1, 1, 1}});
    const auto left_pos = torch::tensor({{1, 1, 0, 1, 2, 3, 4, 5}});
    const auto right = torch::cat({seq, torch::tensor({{9, 9}})}, 1);
    const auto right_mask = torch::tensor({{1, 1, 1, 1, 1, 1, 0, 0}});
    const auto right_pos = torch::tensor({{0, 1, 2, 3, 4, 5, 6, 7}});
    const auto both = lm(torch::cat({left, right}), torch::cat({left_mask, right_mask}), torch::cat({left_pos, right_pos}));
    CHECK(torch::allclose(both[0].narrow(0, 2, 6), ref[0], 1e-5, 1e-5));
    CHECK(torch::allclose(both[1].narrow(0, 0, 6), ref[0], 1e-5, 1e-5));
    CHECK(torch::isfinite(both).all().item<bool>());

    // KV cache: prefill 3 columns then one column at a time.
    const auto ids = torch::cat({left, right}), mask = torch::cat({left_mask, right_mask});
    const auto positions = torch::cat({left_pos, right_pos});
    KVCache cache(2, 4);  // capacity 4 forces a regrowth
    auto got = lm(ids.narrow(1, 0, 3), mask.narrow(1, 0, 3), positions.narrow(1, 0, 3), &cache);
    CHECK(cache.length() == 3);
    for (std::int64_t t = 3; t < 8; ++t) {
      got = torch::cat({got, lm(ids.narrow(1, t, 1), mask.narrow(1, t, 1), positions.narrow(1, t, 1), &cache)}, 1);
    }
    CHECK(cache.length() == 8);
    CHECK(torch::allclose(got[0].narrow(0, 2, 6), both[0].narrow(0, 2, 6), 1e-5, 1e-5));
    CHECK(torch::allclose(got[1].narrow(0, 0, 6), both[1].narrow(0, 0, 6), 1e-5, 1e-5));
  }
}

TEST_CASE("forward_columns: the chosen columns of the full forward, values and gradients, every architecture",
          "[models][decoder]") {
  for (const char* arch : {"llama", "mistral", "qwen2", "qwen3"}) {
    for (const bool checkpointing : {false, true}) {
      INFO(arch << " checkpointing=" << checkpointing);
      auto j = tiny_llama();
      j["model_type"] = arch;
      j["num_hidden_layers"] = 3;
      if (std::string(arch) == "mistral") j["sliding_window"] = 3;
      if (std::string(arch) == "llama") j["attention_bias"] = true;
      auto full = make_model(j, 8);
      auto cols = make_model(j, 8);
      cols->set_activation_checkpointing(checkpointing);
      full->train();
      cols->train();
      // Row 0 left-padded by 2, row 1 unpadded; plus an unpadded batch (plain causal attention, no mask).
      const auto ids = torch::tensor({{0, 0, 5, 17, 3, 42, 8, 60}, {7, 1, 2, 93, 4, 11, 50, 6}});
      const auto mask = torch::tensor({{0, 0, 1, 1, 1, 1, 1, 1}, {1, 1, 1, 1, 1, 1, 1, 1}});
      const auto pos = torch::tensor({{1, 1, 0, 1, 2, 3, 4, 5}, {0, 1, 2, 3, 4, 5, 6, 7}});
      for (const bool padded : {true, false}) {
        const auto b_ids = padded ? ids : ids.narrow(0, 1, 1);
        const auto b_mask = padded ? mask : mask.narrow(0, 1, 1);
        const auto b_pos = padded ? pos : pos.narrow(0, 1, 1);
        for (const auto& [start, length] : {std::pair<std::int64_t, std::int64_t>{3, 4}, {0, 8}, {7, 1}, {1, 3}}) {
          INFO("padded=" << padded << " columns [" << start << ", " << start + length << ")");
          for (auto p : full->parameters()) p.mutable_grad() = torch::Tensor();
          for (auto p : cols->parameters()) p.mutable_grad() = torch::Tensor();
          const auto want = full->model(b_ids, b_mask, b_pos).narrow(1, start, length);  // (B,len,H)
          const auto got = cols->model->forward_columns(b_ids, b_mask, b_pos, start, length);
          REQUIRE(got.sizes() == want.sizes());
          CHECK(torch::allclose(got, want, 1e-5, 1e-5));
          const auto weights = torch::randn(want.sizes());
          (want * weights).sum().backward();
          (got * weights).sum().backward();
          const auto pf = full->named_parameters(), pc = cols->named_parameters();
          for (const auto& item : pf) {
            INFO(item.key());
            const auto& gf = item.value().grad();
            const auto& gc = pc[item.key()].grad();
            REQUIRE(gf.defined() == gc.defined());
            if (gf.defined()) {  // float rounding relative to the gradient's scale (the 0.2 init makes them large)
              const double scale = gf.abs().max().item<double>();
              CHECK((gc - gf).abs().max().item<double>() <= 1e-5 * scale + 1e-6);
            }
          }
        }
      }
      torch::NoGradGuard g;
      CHECK(cols->model->forward_columns(ids, mask, pos, 8, 0).sizes() == torch::IntArrayRef({2, 0, 32}));
      for (const auto& [start, length] : {std::pair<std::int64_t, std::int64_t>{5, 4}, {-1, 2}, {0, 9}}) {
        CHECK_THROWS_AS(cols->model->forward_columns(ids, mask, pos, start, length), verl::ShapeError);
      }
      CHECK_THROWS_WITH(cols->model->forward_columns(ids, mask, pos, 6, 3),
                        Catch::Matchers::Contains("columns [6, 9) are not inside the 8 columns"));
    }
  }
}

TEST_CASE("parameter names are Hugging Face's, tied embeddings share one tensor", "[models][causal_lm]") {
  auto j = tiny_llama();
  j["model_type"] = "qwen3";
  j["tie_word_embeddings"] = true;
  auto lm = make_model(j);
  std::set<std::string> names;
  for (const auto& p : lm->named_parameters()) names.insert(p.key());
  CHECK(names.count("model.embed_tokens.weight"));
  CHECK(names.count("model.layers.1.self_attn.q_proj.weight"));
  CHECK(names.count("model.layers.0.self_attn.q_norm.weight"));
  CHECK(names.count("model.layers.0.self_attn.k_norm.weight"));
  CHECK(names.count("model.layers.0.mlp.down_proj.weight"));
  CHECK(names.count("model.layers.0.post_attention_layernorm.weight"));
  CHECK(names.count("model.norm.weight"));
  CHECK_FALSE(names.count("lm_head.weight"));
  CHECK(names.size() == 2 + 2 * 11);  // embed, norm; per layer q,k,v,o,q_norm,k_norm,gate,up,down,2 norms
  CHECK(lm->lm_head_weight().data_ptr() == lm->model->embed_tokens->weight.data_ptr());
  // The head's gradient lands on the embedding.
  lm->train();
  const auto ids = torch::tensor({{1, 2, 3}});
  lm(ids, torch::ones_like(ids), torch::arange(3).unsqueeze(0)).select(2, 7).sum().backward();
  CHECK(lm->model->embed_tokens->weight.grad()[7].abs().sum().item<double>() > 0);

  j["tie_word_embeddings"] = false;
  j["model_type"] = "qwen2";
  auto untied = make_model(j);
  names.clear();
  for (const auto& p : untied->named_parameters()) names.insert(p.key());
  CHECK(names.count("lm_head.weight"));
  CHECK(names.count("model.layers.0.self_attn.q_proj.bias"));
  CHECK_FALSE(names.count("model.layers.0.self_attn.o_proj.bias"));
}

TEST_CASE("bf16 and fp16 parameters: forward runs in that dtype, close to float32", "[models][dtype]") {
  auto j = tiny_llama();
  auto ref = make_model(j, 3);
  const auto ids = torch::tensor({{4, 8, 15, 16, 23, 42}});
  const auto mask = torch::ones_like(ids), pos = torch::arange(6).unsqueeze(0);
  torch::NoGradGuard g;
  const auto want = ref(ids, mask, pos);
  for (const auto dt : {at::kBFloat16, at::kHalf}) {
    INFO(c10::toString(dt));
    j["dtype"] = verl::models::detail::dtype_name(dt);
    auto lm = make_model(j, 3);
    for (const auto& p : lm->parameters()) CHECK(p.scalar_type() == dt);
    // Same weights as the float32 model, rounded.
    for (const auto& item : ref->named_parameters()) lm->named_parameters()[item.key()].copy_(item.value());
    const auto got = lm(ids, mask, pos);
    CHECK(got.scalar_type() == dt);
    CHECK((got.to(at::kFloat) - want).abs().max().item<double>() < 0.15 * want.abs().max().item<double>());
  }
}

TEST_CASE("activation checkpointing: gradients equal the stored-activation ones", "[models][checkpointing]") {
  auto j = tiny_llama();
  j["model_type"] = "qwen3";
  auto plain = make_model(j, 4);
  auto ckpt = make_model(j, 4);
  ckpt->set_activation_checkpointing(true);
  plain->train();
  ckpt->train();
  const auto ids = torch::tensor({{0, 3, 9, 27, 81}, {2, 4, 8, 16, 32}});
  const auto mask = torch::tensor({{0, 1, 1, 1, 1}, {1, 1, 1, 1, 1}});
  const auto pos = torch::tensor({{1, 0, 1, 2, 3}, {0, 1, 2, 3, 4}});
  const auto weights = torch::randn({2, 5, 97});
  const auto a = plain(ids, mask, pos);
  const auto b = ckpt(ids, mask, pos);
  CHECK(torch::equal(a, b));
  // The checkpointed graph goes through CheckpointFunction nodes.
  std::deque<torch::autograd::Node*> todo{b.grad_fn().get()};
  std::set<torch::autograd::Node*> visited;
  int checkpoint_nodes = 0;
  while (!todo.empty()) {
    auto* n = todo.front();
    todo.pop_front();
    if (n == nullptr || !visited.insert(n).second) continue;
    if (n->name().find("CheckpointFunction") != std::string::npos) ++checkpoint_nodes;
    for (const auto& e : n->next_edges()) todo.push_back(e.function.get());
  }
  CHECK(checkpoint_nodes == 2);
  (a * weights).sum().backward();
  (b * weights).sum().backward();
  const auto pa = plain->named_parameters(), pb = ckpt->named_parameters();
  for (const auto& item : pa) {
    INFO(item.key());
    REQUIRE(pb[item.key()].grad().defined());
    CHECK(torch::allclose(item.value().grad(), pb[item.key()].grad(), 1e-6, 1e-7));
  }
}

TEST_CASE("generate: greedy equals step-by-step argmax of full forwards, eos, padding, shapes", "[models][generate]") {
  auto j = tiny_llama();
  auto lm = make_model(j, 5);
  verl::Prompts prompts{torch::tensor({{0, 0, 7, 11}, {3, 5, 7, 11}}), torch::tensor({{0, 0, 1, 1}, {1, 1, 1, 1}}),
                        torch::tensor({{1, 1, 0, 1}, {0, 1, 2, 3}})};
  verl::SamplingParams sp;
  sp.temperature = 0.0;
  sp.max_tokens = 6;
  sp.return_log_probs = true;
  GenerationOptions opts;
  opts.eos_token_ids = {96};
  opts.pad_token_id = 0;
  const auto r = generate(lm, prompts, sp, opts);
  r.validate();
  REQUIRE(r.responses.size(1) == 6);
  // Reference: recompute the full forward over prompt + generated prefix and take the argmax.
  torch::NoGradGuard g;
  auto ids = prompts.input_ids, mask = prompts.attention_mask, pos = prompts.position_ids;
  for (int t = 0; t < 6; ++t) {
    const auto logits = lm(ids, mask, pos).select(1, ids.size(1) - 1);  // (B,V)
    const auto next = logits.argmax(-1);
    CHECK(torch::equal(next, r.responses.select(1, t)));
    const auto lp = torch::log_softmax(logits, -1).gather(1, next.unsqueeze(1)).squeeze(1);
    CHECK(torch::allclose(lp, r.log_probs->select(1, t), 1e-5, 1e-5));
    ids = torch::cat({ids, next.unsqueeze(1)}, 1);
    mask = torch::cat({mask, torch::ones({2, 1}, torch::kLong)}, 1);
    pos = torch::cat({pos, pos.select(1, pos.size(1) - 1).unsqueeze(1) + 1}, 1);
  }
  CHECK(torch::equal(r.position_ids.narrow(1, 4, 6), pos.narrow(1, 4, 6)));

  // Stopping: make row 0's second token the eos; the row ends there and the rest is padding.
  opts.eos_token_ids = {r.responses[0][1].item<std::int64_t>()};
  const auto stopped = generate(lm, prompts, sp, opts);
  CHECK(torch::equal(stopped.response_mask[0].narrow(0, 0, 2), torch::tensor({1, 1})));
  if (stopped.responses.size(1) > 2) {
    CHECK(stopped.response_mask[0].narrow(0, 2, stopped.responses.size(1) - 2).sum().item<int>() == 0);
    CHECK(stopped.responses[0].narrow(0, 2, stopped.responses.size(1) - 2).eq(0).all().item<bool>());
  }
  sp.ignore_eos = true;
  CHECK(generate(lm, prompts, sp, opts).response_mask.sum().item<int>() == 12);

  // Sampling: a seed makes it reproducible; n repeats each prompt; top_k = 1 is greedy.
  sp = verl::SamplingParams{};
  sp.temperature = 1.0;
  sp.max_tokens = 5;
  sp.n = 3;
  sp.seed = 1234;
  const auto s1 = generate(lm, prompts, sp, opts), s2 = generate(lm, prompts, sp, opts);
  CHECK(s1.responses.size(0) == 6);
  CHECK(torch::equal(s1.responses, s2.responses));
  CHECK(torch::equal(s1.prompts[2], prompts.input_ids[0]));
  sp.top_k = 1;
  sp.n = 1;
  sp.ignore_eos = true;
  auto greedy = verl::SamplingParams{};
  greedy.temperature = 0.0;
  greedy.max_tokens = 5;
  greedy.ignore_eos = true;
  CHECK(torch::equal(generate(lm, prompts, sp, opts).responses, generate(lm, prompts, greedy, opts).responses));
  // top_p small keeps only the most likely token: greedy too.
  sp.top_k = -1;
  sp.top_p = 1e-6;
  CHECK(torch::equal(generate(lm, prompts, sp, opts).responses, generate(lm, prompts, greedy, opts).responses));

  // A right-padded prompt is rejected.
  verl::Prompts bad{torch::tensor({{7, 11, 0}}), torch::tensor({{1, 1, 0}}), torch::tensor({{0, 1, 2}})};
  CHECK_THROWS_AS(generate(lm, bad, greedy), verl::ShapeError);
  CHECK_THROWS_WITH(lm(torch::tensor({{1, 200}}), at::Tensor(), torch::tensor({{0, 1}})),
                    Catch::Contains("vocab_size"));
}

namespace {

using verl::test::TempDir;

std::vector<std::pair<std::string, at::Tensor>> state_of(CausalLM& lm) {
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (const auto& item : lm->named_parameters()) out.emplace_back(item.key(), item.value().detach().clone());
  return out;
}

}  // namespace

TEST_CASE("HF directory: save then load is bit-identical, sharded, bf16 conversion, config round trip",
          "[models][hf_io]") {
  TempDir tmp("roundtrip");
  auto j = tiny_llama();
  j["model_type"] = "qwen2";
  j["tie_word_embeddings"] = true;
  j["eos_token_id"] = json::array({3, 4});
  j["some_future_key"] = "kept";
  auto lm = make_model(j, 6);
  save_causal_lm(lm, tmp.path, SaveOptions{4096, std::nullopt});  // 4 KB shards
  CHECK(std::filesystem::exists(tmp.path / "model.safetensors.index.json"));
  const auto reader = verl::checkpoint::CheckpointReader::open(tmp.path);
  CHECK_FALSE(reader.contains("lm_head.weight"));  // tied: omitted, as transformers saves it
  const auto saved = TransformerConfig::load(tmp.path);
  CHECK(saved.tie_word_embeddings);
  CHECK(saved.eos_token_ids == std::vector<std::int64_t>{3, 4});
  CHECK(saved.source["some_future_key"] == "kept");
  CHECK(saved.source["architectures"][0] == "Qwen2ForCausalLM");
  CHECK(saved.source["dtype"] == "float32");
  auto back = load_causal_lm(tmp.path);
  CHECK_FALSE(back->is_training());
  auto params = back->named_parameters();
  for (const auto& [name, t] : state_of(lm)) {
    INFO(name);
    CHECK(torch::equal(params[name], t));
  }
  // bf16 on disk, float32 at load: the bf16 rounding of every parameter.
  save_causal_lm(lm, tmp.path, SaveOptions{5'000'000'000, at::kBFloat16});
  CHECK_FALSE(std::filesystem::exists(tmp.path / "model.safetensors.index.json"));  // stale index removed
  CHECK(TransformerConfig::load(tmp.path).dtype == at::kBFloat16);
  CHECK(load_causal_lm(tmp.path)->model->norm->weight.scalar_type() == at::kBFloat16);
  auto up = load_causal_lm(tmp.path, LoadOptions{at::kFloat});
  auto up_params = up->named_parameters();
  for (const auto& [name, t] : state_of(lm)) CHECK(torch::equal(up_params[name], t.to(at::kBFloat16).to(at::kFloat)));
}

TEST_CASE("HF directory: missing and unexpected tensors are listed by name, shapes and tied heads checked",
          "[models][hf_io]") {
  TempDir tmp("errors");
  auto lm = make_model(tiny_llama(), 7);
  const auto config_text = lm->config().to_json().dump(2);
  const auto write = [&](std::vector<std::pair<std::string, at::Tensor>> tensors) {
    verl::checkpoint::save_checkpoint(tmp.path, tensors);
    verl::checkpoint::write_file_atomically(tmp.path / "config.json", config_text);
  };
  auto state = state_of(lm);
  // Drop two tensors, add one unknown and an old rotary buffer (ignored).
  auto bad = state;
  bad.erase(std::remove_if(bad.begin(), bad.end(), [](const auto& p) {
              return p.first == "model.norm.weight" || p.first == "model.layers.1.mlp.up_proj.weight";
            }), bad.end());
  bad.emplace_back("model.layers.0.self_attn.extra.weight", torch::zeros({2}));
  bad.emplace_back("model.layers.0.self_attn.rotary_emb.inv_freq", torch::zeros({4}));
  write(bad);
  try {
    (void)load_causal_lm(tmp.path);
    FAIL("expected InputError");
  } catch (const verl::InputError& e) {
    const std::string what = e.what();
    INFO(what);
    CHECK(what.find("missing 2 tensor(s)") != std::string::npos);
    CHECK(what.find("`model.norm.weight`") != std::string::npos);
    CHECK(what.find("`model.layers.1.mlp.up_proj.weight`") != std::string::npos);
    CHECK(what.find("unexpected 1 tensor(s) `model.layers.0.self_attn.extra.weight`") != std::string::npos);
    CHECK(what.find("inv_freq") == std::string::npos);
  }
  // Only the rotary buffer extra: loads.
  auto ok = state;
  ok.emplace_back("model.layers.0.self_attn.rotary_emb.inv_freq", torch::zeros({4}));
  write(ok);
  CHECK_NOTHROW(load_causal_lm(tmp.path));
  // A shape that config.json does not describe.
  auto shaped = state;
  shaped[0].second = torch::zeros({97, 16});
  write(shaped);
  CHECK_THROWS_WITH(load_causal_lm(tmp.path), Catch::Contains("model.embed_tokens.weight") && Catch::Contains("[97, 16]"));

  // Tied model: lm_head.weight may be absent, or present and equal to the embedding; not different.
  auto tj = tiny_llama();
  tj["tie_word_embeddings"] = true;
  auto tied = make_model(tj, 8);
  const auto tied_config = tied->config().to_json().dump(2);
  auto tstate = state_of(tied);
  tstate.emplace_back("lm_head.weight", tied->model->embed_tokens->weight.detach().clone());
  verl::checkpoint::save_checkpoint(tmp.path, tstate);
  verl::checkpoint::write_file_atomically(tmp.path / "config.json", tied_config);
  CHECK_NOTHROW(load_causal_lm(tmp.path));
  tstate.back().second = tstate.back().second + 1;
  verl::checkpoint::save_checkpoint(tmp.path, tstate);
  CHECK_THROWS_WITH(load_causal_lm(tmp.path), Catch::Contains("lm_head.weight") && Catch::Contains("tie_word_embeddings"));
  // An untied model requires lm_head.weight.
  auto untied_state = state;
  untied_state.erase(std::remove_if(untied_state.begin(), untied_state.end(),
                                    [](const auto& p) { return p.first == "lm_head.weight"; }), untied_state.end());
  write(untied_state);
  CHECK_THROWS_WITH(load_causal_lm(tmp.path), Catch::Contains("missing 1 tensor(s) `lm_head.weight`"));
}

}  // namespace test_transformer
