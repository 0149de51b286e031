// The scaffolding the offline-training examples (03_dpo, 04_kto, 05_sft) share, so that each example file shows
// only what it is about: a letter tokenizer, the tiny model they train, and the file helpers that write their
// datasets and clean up. Not part of the library.
#pragma once

#include <verl/models/causal_lm.hpp>
#include <verl/models/config.hpp>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <system_error>
#include <vector>

namespace examples {

// Letters a..n are tokens 2..15; 0 is pad, 1 is eos. Satisfies verl::Tokenizer.
struct LetterTokenizer {
  [[nodiscard]] std::vector<std::int64_t> encode(const std::string& text) const {
    std::vector<std::int64_t> ids;
    for (char c : text) ids.push_back(2 + (c - 'a'));
    return ids;
  }
  [[nodiscard]] std::string decode(const std::vector<std::int64_t>& ids) const {
    std::string s;
    for (auto id : ids)
      if (id >= 2) s += static_cast<char>('a' + (id - 2));
    return s;
  }
  [[nodiscard]] std::int64_t eos_token_id() const { return 1; }
  [[nodiscard]] std::int64_t pad_token_id() const { return 0; }
  [[nodiscard]] std::int64_t vocab_size() const { return 16; }
};

// A one-layer Qwen2-shaped model with the 16-token vocabulary, its weights drawn after torch::manual_seed(seed).
inline verl::models::CausalLM tiny_lm(std::uint64_t seed) {
  const nlohmann::json config{{"model_type", "qwen2"},       {"vocab_size", 16},       {"hidden_size", 32},
                              {"intermediate_size", 48},     {"num_hidden_layers", 1}, {"num_attention_heads", 4},
                              {"num_key_value_heads", 2},    {"max_position_embeddings", 64},
                              {"rms_norm_eps", 1e-6},        {"tie_word_embeddings", false},
                              {"pad_token_id", 0},           {"eos_token_id", 1}};
  torch::manual_seed(seed);
  verl::models::CausalLM lm(verl::models::TransformerConfig::from_json(config));
  lm->init_weights(0.05);
  return lm;
}

// Writes the rows to `path` atomically (a temporary file in the same directory, then rename).
inline void write_jsonl(const std::filesystem::path& path, const std::vector<nlohmann::json>& rows) {
  const auto tmp = std::filesystem::path(path).concat(".tmp");
  {
    std::ofstream out(tmp, std::ios::binary);
    for (const auto& r : rows) out << r.dump() << '\n';
  }
  std::filesystem::rename(tmp, path);
}

// Removes a directory tree (not std::filesystem::remove_all: the PyPI libtorch.so exports its own copy,
// which can crash when bound).
inline void remove_tree(const std::filesystem::path& p) {
  std::error_code ec;
  if (std::filesystem::is_directory(std::filesystem::symlink_status(p, ec))) {
    std::vector<std::filesystem::path> children;
    for (const auto& e : std::filesystem::directory_iterator(p, ec)) children.push_back(e.path());
    for (const auto& c : children) remove_tree(c);
  }
  std::filesystem::remove(p, ec);
}

}  // namespace examples
