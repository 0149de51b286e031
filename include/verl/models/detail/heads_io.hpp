#pragma once
//! \file
//! What the actor, critic and reward-model headers share: the response slice of a TokenBatch, the
//! classification keys of config.json, and loading / saving a backbone plus a score head with transformers'
//! parameter names (`model.*`, `score.weight`, `score.bias`) and transformers' rules for head tensors that a
//! checkpoint lacks (newly initialised, reported) or holds for another head (ignored, reported).

#include "verl/checkpoint/atomic_file.hpp"
#include "verl/checkpoint/hf_checkpoint_files.hpp"
#include "verl/core/errors.hpp"
#include "verl/core/model_io.hpp"
#include "verl/models/config.hpp"
#include "verl/models/hf_model_io.hpp"

#include <ATen/core/Tensor.h>
#include <ATen/core/grad_mode.h>
#include <c10/core/Device.h>
#include <nlohmann/json.hpp>
#include <torch/ordered_dict.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <iostream>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace verl::models {

//! What loading a critic or reward model did besides copying the tensors whose names match: transformers'
//! "LOAD REPORT" (MISSING = newly initialised, UNEXPECTED = ignored).
struct HeadLoadReport {
  //! Head parameters the checkpoint lacks, freshly initialised as transformers' _init_weights does
  //! (weight ~ N(0, initializer_range), bias 0): both `score.*` when the checkpoint is a causal LM's,
  //! `score.bias` for a critic loaded from a reward-model checkpoint. Sorted.
  std::vector<std::string> newly_initialized;
  //! Checkpoint tensors that belong to another head and were not loaded: `lm_head.weight` of a causal LM,
  //! `score.bias` of a critic read as a reward model. Sorted.
  std::vector<std::string> unused;
};

//! The default HeadLoadOptions::log: one line on std::clog, like transformers' load-report warning.
inline void log_to_clog(const std::string& line) { std::clog << line << '\n'; }

//! How Critic::load / RewardScorer::load build the model.
struct HeadLoadOptions {
  std::optional<at::ScalarType> dtype;  //!< parameter dtype; unset = config.json's dtype (float32 if none)
  at::Device device = at::kCPU;         //!< where the parameters live
  //! Receives one line when head parameters were newly initialised or checkpoint tensors were ignored;
  //! an empty function silences it.
  std::function<void(const std::string&)> log = log_to_clog;
};

//! The config.json keys of a classification head that the decoder's TransformerConfig does not read.
struct HeadConfig {
  //! Standard deviation of a new head's weight (transformers: `config.initializer_range or 0.02`).
  double initializer_range = 0.02;
  //! Dropout before the token-classification head in training mode (transformers' GenericForTokenClassification:
  //! `classifier_dropout`, else `hidden_dropout`, else 0.1). verl's critic worker sets classifier_dropout = 0.
  double classifier_dropout = 0.1;
  //! True when config.json named classifier_dropout (saving writes it back then, or when it differs from 0.1).
  bool classifier_dropout_from_config = false;

  //! Reads the keys from a config.json object (TransformerConfig::source); `where` names it in errors.
  [[nodiscard]] static HeadConfig from_json(const nlohmann::json& j, std::string_view where) {
    using verl::detail::check;
    HeadConfig h;
    if (!j.is_object()) return h;
    if (j.contains("initializer_range") && !j["initializer_range"].is_null()) {
      const auto& v = j["initializer_range"];
      check<ConfigError>(v.is_number() && v.get<double>() >= 0.0, where, ": `initializer_range` is ", v.dump(),
                         ", expected a number >= 0");
      if (v.get<double>() > 0.0) h.initializer_range = v.get<double>();  // `or 0.02`: 0 falls back
    }
    for (const char* key : {"classifier_dropout", "hidden_dropout"}) {
      if (!j.contains(key) || j[key].is_null()) continue;
      const auto& v = j[key];
      check<ConfigError>(v.is_number() && v.get<double>() >= 0.0 && v.get<double>() <= 1.0, where, ": `", key,
                         "` is ", v.dump(), ", expected a probability in [0, 1] (the dropout before the value head)");
      h.classifier_dropout = v.get<double>();
      h.classifier_dropout_from_config = std::string_view(key) == "classifier_dropout";
      break;
    }
    return h;
  }
};

namespace detail {

//! The response part of a validated TokenBatch, moved to `device`: the hidden-state rows that score it
//! are the columns T-R-1 .. T-2, the scored tokens the columns T-R .. T-1 (TokenBatch's comment).
struct ResponseSlice {
  at::Tensor input_ids, attention_mask, position_ids;  // (B,T) on the model's device; mask int64
  std::int64_t start = 0;                               // T-R-1: first hidden column that is used
  std::int64_t length = 0;                              // R
  at::Tensor targets;                                   // (B,R) int64, the response tokens
  at::Tensor mask;                                      // (B,R) bool, true on real response tokens
};

[[nodiscard]] inline ResponseSlice response_slice(const TokenBatch& batch, const at::Device& device) {
  batch.validate();
  ResponseSlice s;
  s.input_ids = batch.input_ids.to(device);
  verl::detail::check<ShapeError>(s.input_ids.scalar_type() == at::kLong, "verl::TokenBatch: `input_ids` has dtype ",
                                  s.input_ids.scalar_type(), ", expected int64");
  s.attention_mask = batch.attention_mask.to(device).to(at::kLong);
  s.position_ids = batch.position_ids.to(device).to(at::kLong);
  const std::int64_t t = batch.sequence_length(), r = batch.response_length;
  s.start = t - r - 1;
  s.length = r;
  s.targets = s.input_ids.narrow(1, t - r, r);             // (B,R)
  s.mask = s.attention_mask.narrow(1, t - r, r).ne(0);     // (B,R)
  return s;
}

//! The class name transformers gives the model with this head: "Qwen2" + "ForTokenClassification".
[[nodiscard]] inline std::string head_class(const TransformerConfig& config, std::string_view suffix) {
  auto name = config.causal_lm_class();
  constexpr std::string_view causal = "ForCausalLM";
  name.resize(name.size() - causal.size());
  return name + std::string(suffix);
}

//! Copies `reader`'s tensors into `params` (names exactly transformers'); see HeadLoadReport for the rules:
//! a missing parameter named in `head_params` is initialised (weights N(0, std), biases 0) and reported, any
//! other missing parameter is an error; a checkpoint tensor named in `foreign` is ignored and reported, any
//! other unexpected tensor is an error (both listed in one verl::InputError). Nothing is modified on error.
inline HeadLoadReport load_head_weights(torch::OrderedDict<std::string, at::Tensor> params,
                                        const checkpoint::CheckpointReader& reader, std::string_view where,
                                        std::string_view model_class, const std::set<std::string>& head_params,
                                        const std::set<std::string>& foreign, double std) {
  constexpr std::string_view o = "verl::models::load_head_weights";
  std::set<std::string> in_checkpoint;
  for (const auto& n : reader.names()) in_checkpoint.insert(n);
  HeadLoadReport report;
  std::vector<std::string> missing, unexpected;
  for (const auto& item : params) {
    if (in_checkpoint.count(item.key())) continue;
    (head_params.count(item.key()) ? report.newly_initialized : missing).push_back(item.key());
  }
  for (const auto& n : in_checkpoint) {
    if (params.contains(n) || is_ignorable_checkpoint_tensor(n)) continue;
    (foreign.count(n) ? report.unused : unexpected).push_back(n);
  }
  if (!missing.empty() || !unexpected.empty()) {
    std::ostringstream msg;
    msg << o << ": " << where << " does not hold a " << model_class << " (or its causal LM):";
    if (!missing.empty()) msg << " missing " << missing.size() << " tensor(s) " << join_names(missing) << ";";
    if (!unexpected.empty()) msg << " unexpected " << unexpected.size() << " tensor(s) " << join_names(unexpected) << ";";
    msg << " expected the backbone `model.*` tensors, with or without the head (`score.*`, `lm_head.weight`)";
    throw InputError(msg.str());
  }
  at::NoGradGuard no_grad;
  for (auto& item : params) {
    auto& p = item.value();
    if (!in_checkpoint.count(item.key())) {
      const auto& n = item.key();
      if (n.size() >= 4 && n.compare(n.size() - 4, 4, "bias") == 0) {
        p.zero_();
      } else {
        p.normal_(0.0, std);
      }
      continue;
    }
    const auto t = reader.tensor(item.key());
    verl::detail::check<ShapeError>(t.sizes() == p.sizes(), o, ": ", where, ": tensor `", item.key(), "` has shape ",
                                    t.sizes(), ", expected ", p.sizes(), " (", model_class, " with num_labels = 1)");
    p.copy_(t);
  }
  std::sort(report.newly_initialized.begin(), report.newly_initialized.end());
  std::sort(report.unused.begin(), report.unused.end());
  return report;
}

//! The one line HeadLoadOptions::log receives (empty when there is nothing to report).
[[nodiscard]] inline std::string describe_load(const HeadLoadReport& r, std::string_view model_class,
                                               std::string_view where) {
  if (r.newly_initialized.empty() && r.unused.empty()) return {};
  std::ostringstream s;
  s << "verl::models: " << model_class << " loaded from " << where << ":";
  if (!r.newly_initialized.empty()) {
    s << " newly initialized (not in the checkpoint; train them before use): " << join_names(r.newly_initialized) << ";";
  }
  if (!r.unused.empty()) s << " not used (another head's tensors): " << join_names(r.unused) << ";";
  return s.str();
}

//! Reads config.json of `dir` with the options' dtype applied.
[[nodiscard]] inline TransformerConfig load_config(const std::filesystem::path& dir, const HeadLoadOptions& options) {
  auto config = TransformerConfig::load(dir / "config.json");
  if (options.dtype) {
    config.dtype = *options.dtype;
    config.validate();
  }
  return config;
}

//! Writes `params` and a config.json for transformers' `<Model><suffix>` with num_labels = 1 (architectures,
//! id2label, label2id as transformers' save_pretrained writes them). Each file is written atomically.
inline void save_head_model(const torch::OrderedDict<std::string, at::Tensor>& params, const TransformerConfig& c,
                            const HeadConfig& head, bool write_dropout, std::string_view suffix,
                            const std::filesystem::path& dir, const SaveOptions& options) {
  auto config = c;
  if (options.dtype) config.dtype = *options.dtype;
  config.validate();
  std::vector<std::pair<std::string, at::Tensor>> tensors;
  {
    at::NoGradGuard no_grad;
    for (const auto& item : params) {
      tensors.emplace_back(item.key(), item.value().detach().to(at::kCPU).to(config.dtype).contiguous());
    }
  }
  auto j = config.to_json();
  j["architectures"] = nlohmann::json::array({head_class(config, suffix)});
  j.erase("num_labels");  // transformers derives it from id2label; a stale value would contradict it
  j["id2label"] = {{"0", "LABEL_0"}};
  j["label2id"] = {{"LABEL_0", 0}};
  if (write_dropout && (head.classifier_dropout_from_config || head.classifier_dropout != 0.1)) {
    j["classifier_dropout"] = head.classifier_dropout;
  }
  if (!j.contains("initializer_range")) j["initializer_range"] = head.initializer_range;
  checkpoint::save_checkpoint(dir, tensors, options.max_shard_bytes);
  checkpoint::write_file_atomically(dir / "config.json", j.dump(2) + "\n");
}

}  // namespace detail

}  // namespace verl::models
