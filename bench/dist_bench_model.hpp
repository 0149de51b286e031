// The model shapes the multi-process benchmarks (bench_data_parallel, bench_fully_sharded, bench_tensor_parallel)
// time, and the random Llama-shaped model each rank builds from one: the same weights on every rank
// (torch::manual_seed(0)), so ranks start in step.
#pragma once

#include "verl/models/causal_lm.hpp"
#include "verl/models/config.hpp"

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <cstdint>

namespace verl_bench {

//! A model and the per-rank batch it is timed on: `rows` sequences of `tokens` tokens.
struct DistShape {
  std::int64_t hidden, layers, heads, kv_heads, intermediate, vocab, rows, tokens;
};
inline constexpr DistShape kSmall{256, 4, 8, 4, 704, 4096, 8, 64};
inline constexpr DistShape kSmoke{32, 2, 4, 2, 48, 64, 2, 8};

inline verl::models::CausalLM make_lm(const DistShape& s) {
  const nlohmann::json j{{"model_type", "llama"},
                         {"vocab_size", s.vocab},
                         {"hidden_size", s.hidden},
                         {"intermediate_size", s.intermediate},
                         {"num_hidden_layers", s.layers},
                         {"num_attention_heads", s.heads},
                         {"num_key_value_heads", s.kv_heads},
                         {"max_position_embeddings", 4 * s.tokens},
                         {"rms_norm_eps", 1e-6},
                         {"tie_word_embeddings", false},
                         {"pad_token_id", 0},
                         {"eos_token_id", 1}};
  torch::manual_seed(0);
  verl::models::CausalLM lm(verl::models::TransformerConfig::from_json(j));
  lm->init_weights(0.02);
  return lm;
}

}  // namespace verl_bench
