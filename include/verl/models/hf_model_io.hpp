#pragma once
//! \file
//! Hugging Face model directories <-> verl::models::CausalLM. Loading reads config.json and the safetensors
//! weights (model.safetensors, or model.safetensors.index.json + shards) and copies every tensor into the
//! parameter of the same Hugging Face name, converting to the model's dtype; missing or unexpected tensors
//! are one error listing their names. Saving writes the weights (sharded past a size, lm_head.weight omitted
//! when tied, as transformers does) and a config.json from which transformers 5.23's
//! AutoModelForCausalLM.from_pretrained rebuilds the same model with no missing or unexpected keys.

#include "verl/checkpoint/atomic_file.hpp"
#include "verl/checkpoint/hf_checkpoint_files.hpp"
#include "verl/core/errors.hpp"
#include "verl/models/causal_lm.hpp"
#include "verl/models/config.hpp"

#include <ATen/core/Tensor.h>
#include <ATen/core/grad_mode.h>
#include <ATen/ops/equal.h>
#include <c10/core/Device.h>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

namespace verl::models {

//! How load_causal_lm builds the model.
struct LoadOptions {
  std::optional<at::ScalarType> dtype;  //!< parameter dtype; unset = config.json's dtype (float32 if none)
  at::Device device = at::kCPU;         //!< where the parameters live
};

//! How save_causal_lm writes the model.
struct SaveOptions {
  std::uint64_t max_shard_bytes = 5'000'000'000;  //!< shard past this size (transformers' default "5GB")
  std::optional<at::ScalarType> dtype;             //!< write the weights in this dtype; unset = the model's
};

namespace detail {

//! True for checkpoint tensors that hold no parameter: the rotary inverse frequencies some older Llama
//! checkpoints stored (`model.layers.N.self_attn.rotary_emb.inv_freq`); they are recomputed from the config.
[[nodiscard]] inline bool is_ignorable_checkpoint_tensor(const std::string& name) {
  constexpr std::string_view suffix = "rotary_emb.inv_freq";
  return name.size() >= suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
}

[[nodiscard]] inline std::string join_names(const std::vector<std::string>& names) {
  std::ostringstream out;
  for (std::size_t i = 0; i < names.size(); ++i) out << (i ? ", " : "") << '`' << names[i] << '`';
  return out.str();
}

}  // namespace detail

//! Copies the tensors of `reader` into `lm`'s parameters (names exactly Hugging Face's), converting dtype
//! and device. A tied model accepts a checkpoint without `lm_head.weight` (transformers omits it), or with
//! one equal to `model.embed_tokens.weight`. Throws verl::InputError listing every missing and unexpected
//! tensor, verl::ShapeError naming a tensor whose shape differs.
inline void load_weights(CausalLM& lm, const checkpoint::CheckpointReader& reader, std::string_view where) {
  constexpr std::string_view o = "verl::models::load_weights";
  auto params = lm->named_parameters();
  std::set<std::string> in_checkpoint;
  for (const auto& n : reader.names()) in_checkpoint.insert(n);
  std::vector<std::string> missing, unexpected;
  for (const auto& item : params) {
    if (!in_checkpoint.count(item.key())) missing.push_back(item.key());
  }
  const bool tied = lm->config().tie_word_embeddings;
  for (const auto& n : in_checkpoint) {
    if (params.contains(n) || detail::is_ignorable_checkpoint_tensor(n)) continue;
    if (tied && n == "lm_head.weight") continue;  // checked against the embedding below
    unexpected.push_back(n);
  }
  if (!missing.empty() || !unexpected.empty()) {
    std::ostringstream msg;
    msg << o << ": " << where << " does not match the " << lm->config().causal_lm_class() << " that config.json describes:";
    if (!missing.empty()) msg << " missing " << missing.size() << " tensor(s) " << detail::join_names(missing) << ";";
    if (!unexpected.empty()) msg << " unexpected " << unexpected.size() << " tensor(s) " << detail::join_names(unexpected) << ";";
    msg << " expected exactly the model's parameters (lm_head.weight may be omitted when tie_word_embeddings)";
    throw InputError(msg.str());
  }
  at::NoGradGuard no_grad;
  for (auto& item : params) {
    const auto t = reader.tensor(item.key());
    verl::detail::check<ShapeError>(t.sizes() == item.value().sizes(), o, ": ", where, ": tensor `", item.key(),
                                    "` has shape ", t.sizes(), ", expected ", item.value().sizes(),
                                    " (from config.json)");
    item.value().copy_(t);
  }
  if (tied && in_checkpoint.count("lm_head.weight")) {
    const auto head = reader.tensor("lm_head.weight");
    const auto& emb = lm->model->embed_tokens->weight;
    verl::detail::check<InputError>(
        head.sizes() == emb.sizes() && at::equal(head.to(emb.scalar_type()), emb.cpu()), o, ": ", where,
        ": `lm_head.weight` differs from `model.embed_tokens.weight`, but config.json sets tie_word_embeddings; "
        "expected equal tensors or no lm_head.weight");
  }
}

//! Builds the model a Hugging Face directory describes and loads its weights; the model is in eval mode
//! (as transformers' from_pretrained returns it).
[[nodiscard]] inline CausalLM load_causal_lm(const std::filesystem::path& dir, const LoadOptions& options = {}) {
  auto config = TransformerConfig::load(dir / "config.json");
  if (options.dtype) {
    config.dtype = *options.dtype;
    config.validate();
  }
  CausalLM lm(config);
  lm->to(options.device);
  load_weights(lm, checkpoint::CheckpointReader::open(dir), dir.string());
  lm->eval();
  return lm;
}

//! Writes `lm` to `dir` as a Hugging Face model directory: config.json and model.safetensors (or shards and
//! model.safetensors.index.json past `max_shard_bytes`), parameters in named_parameters() order, each file
//! written atomically.
inline void save_causal_lm(CausalLM& lm, const std::filesystem::path& dir, const SaveOptions& options = {}) {
  auto config = lm->config();
  if (options.dtype) config.dtype = *options.dtype;
  config.validate();
  std::vector<std::pair<std::string, at::Tensor>> tensors;
  {
    at::NoGradGuard no_grad;
    for (const auto& item : lm->named_parameters()) {
      tensors.emplace_back(item.key(), item.value().detach().to(at::kCPU).to(config.dtype).contiguous());
    }
  }
  checkpoint::save_checkpoint(dir, tensors, options.max_shard_bytes);
  checkpoint::write_file_atomically(dir / "config.json", config.to_json().dump(2) + "\n");
}

}  // namespace verl::models
