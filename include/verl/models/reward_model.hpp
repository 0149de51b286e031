#pragma once
//! \file
//! verl::models::RewardScorer: the decoder backbone plus a scalar score head read at one token per sequence,
//! laid out as transformers 5.23's `*ForSequenceClassification` with num_labels = 1
//! (GenericForSequenceClassification: `model.*`, `score` = Linear(hidden, 1) without bias, no dropout).
//!
//! Which token is read, two rules (ScorePosition):
//!   - last_attended (default), verl 0.7.1's RewardModelWorker: `argmax(position_ids * attention_mask)` per
//!     row, i.e. the last real token for increasing positions; the TokenBatch's mask decides, so an eos that
//!     equals the pad token is still read when it is a real token;
//!   - last_non_pad, transformers' GenericForSequenceClassification: the rightmost column whose input id is
//!     not pad_token_id (`argmax(arange(T) * (ids != pad))`, so column 0 when a row is all padding); without a
//!     pad token, the last column, and an error for B > 1, as transformers raises.
//! They differ only when a real token equals pad_token_id (commonly pad = eos, and a response ending in eos):
//! transformers then reads the token before the trailing eos run, verl the eos itself. verl's worker builds
//! the model as AutoModelForTokenClassification (so a score.bias from a critic checkpoint would be used, and a
//! sequence-classification checkpoint gets bias 0); this type keeps transformers' bias-free layout and
//! ignores (and reports) a `score.bias`.

#include "verl/concepts/reward_model.hpp"
#include "verl/core/errors.hpp"
#include "verl/core/model_io.hpp"
#include "verl/models/config.hpp"
#include "verl/models/decoder.hpp"
#include "verl/models/detail/heads_io.hpp"

#include <ATen/TensorOperators.h>
#include <ATen/core/Tensor.h>
#include <ATen/core/grad_mode.h>
#include <ATen/ops/arange.h>
#include <ATen/ops/full.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace verl::models {

//! Which token of a sequence the reward head is read at; see the file comment.
enum class ScorePosition {
  last_attended,  //!< verl: argmax(position_ids * attention_mask)
  last_non_pad,   //!< transformers: the rightmost input id != pad_token_id
};

//! How RewardScorer reads the score.
struct RewardScorerOptions {
  ScorePosition position = ScorePosition::last_attended;
  //! The pad token of ScorePosition::last_non_pad; unset = config.json's pad_token_id.
  std::optional<std::int64_t> pad_token_id;
};

//! transformers' `<Model>ForSequenceClassification` with num_labels = 1: parameters `model.*` and
//! `score.weight` (1,hidden).
class SequenceScoreModelImpl : public torch::nn::Module {
 public:
  explicit SequenceScoreModelImpl(TransformerConfig config, HeadConfig head = {})
      : config_(std::move(config)), head_(head) {
    config_.validate();
    model = register_module("model", TransformerModel(config_));
    score = register_module("score", torch::nn::Linear(torch::nn::LinearOptions(config_.hidden_size, 1).bias(false)));
    to(config_.dtype);
  }

  //! Per-token scores (B,T) in the parameter dtype (transformers' logits before pooling, squeezed).
  at::Tensor forward(const at::Tensor& input_ids, const at::Tensor& attention_mask, const at::Tensor& position_ids) {
    return score(model(input_ids, attention_mask, position_ids)).squeeze(-1);
  }

  //! transformers' _init_weights: N(0, std) weights (default HeadConfig::initializer_range), norms 1, the
  //! embedding's padding row 0.
  void init_weights(std::optional<double> std = std::nullopt) {
    detail::init_hf_weights(*this, model, std.value_or(head_.initializer_range));
  }

  [[nodiscard]] const TransformerConfig& config() const { return config_; }
  [[nodiscard]] const HeadConfig& head_config() const { return head_; }

  TransformerModel model{nullptr};
  torch::nn::Linear score{nullptr};

 private:
  TransformerConfig config_;
  HeadConfig head_;
};
TORCH_MODULE(SequenceScoreModel);

//! A trained reward model scoring whole sequences. Satisfies verl::RewardModel. A handle: copies share the
//! module.
class RewardScorer {
 public:
  explicit RewardScorer(SequenceScoreModel module, RewardScorerOptions options = {})
      : module_(std::move(module)), options_(options) {}

  //! A new model with transformers' initialisation.
  [[nodiscard]] static RewardScorer create(const TransformerConfig& config, RewardScorerOptions options = {},
                                           HeadConfig head = {}) {
    SequenceScoreModel m(config, head);
    m->init_weights();
    return RewardScorer(std::move(m), options);
  }

  //! Loads a Hugging Face directory: a reward model (`*ForSequenceClassification`, num_labels = 1), a critic
  //! (`score.bias` ignored) or a causal LM (`score.weight` new, lm_head.weight ignored), reporting new and
  //! ignored tensors in `report` and one line to `options.log`. The model is in eval mode.
  //! \throws as Critic::load.
  [[nodiscard]] static RewardScorer load(const std::filesystem::path& dir, const HeadLoadOptions& options = {},
                                         RewardScorerOptions scorer = {}, HeadLoadReport* report = nullptr) {
    const auto config = detail::load_config(dir, options);
    SequenceScoreModel m(config, HeadConfig::from_json(config.source, (dir / "config.json").string()));
    m->to(options.device);
    const auto cls = detail::head_class(config, "ForSequenceClassification");
    auto r = detail::load_head_weights(m->named_parameters(), checkpoint::CheckpointReader::open(dir), dir.string(),
                                       cls, {"score.weight"}, {"lm_head.weight", "score.bias"},
                                       m->head_config().initializer_range);
    if (const auto line = detail::describe_load(r, cls, dir.string()); !line.empty() && options.log) options.log(line);
    if (report != nullptr) *report = std::move(r);
    m->eval();
    return RewardScorer(std::move(m), scorer);
  }

  //! The column (B,) int64 each row is read at, by options().position (see the file comment).
  //! \throws verl::ConfigError for last_non_pad with no pad token and B > 1.
  [[nodiscard]] at::Tensor score_columns(const TokenBatch& batch) const {
    batch.validate();
    const auto t = batch.sequence_length();
    const auto opts = at::TensorOptions().dtype(at::kLong).device(batch.input_ids.device());
    if (options_.position == ScorePosition::last_attended) {
      const auto mask = batch.attention_mask.to(at::kLong);                       // (B,T)
      return (batch.position_ids.to(at::kLong) * mask).argmax(-1);                // (B,)
    }
    const auto pad = options_.pad_token_id ? options_.pad_token_id : module_->config().pad_token_id;
    if (!pad) {
      verl::detail::check<ConfigError>(batch.batch_size() == 1, "verl::models::RewardScorer: ScorePosition::last_non_pad "
                                       "needs a pad token for a batch of ", batch.batch_size(),
                                       " sequences (as transformers: \"Cannot handle batch sizes > 1 if no padding token "
                                       "is defined\"); set RewardScorerOptions::pad_token_id or config.json's pad_token_id");
      return at::full({batch.batch_size()}, t - 1, opts);                        // (B,)
    }
    const auto non_pad = batch.input_ids.ne(*pad).to(at::kLong);                  // (B,T)
    return (at::arange(t, opts).unsqueeze(0) * non_pad).argmax(-1);               // (B,)
  }

  //! One score (B,) per sequence, parameter dtype, under no-grad; on the device of batch.input_ids.
  [[nodiscard]] at::Tensor score(const TokenBatch& batch) {
    at::NoGradGuard no_grad;
    return forward(batch);
  }

  //! score() with autograd (for training a reward model, e.g. a Bradley-Terry loss).
  [[nodiscard]] at::Tensor forward(const TokenBatch& batch) {
    const auto device = module_->score->weight.device();
    const auto columns = score_columns(batch).to(device);                         // (B,)
    const auto ids = batch.input_ids.to(device);
    const auto hidden = module_->model(ids, batch.attention_mask.to(device).to(at::kLong),
                                       batch.position_ids.to(device).to(at::kLong));  // (B,T,H)
    const auto index = columns.view({-1, 1, 1}).expand({hidden.size(0), 1, hidden.size(2)});  // (B,1,H)
    const auto picked = hidden.gather(1, index).squeeze(1);                        // (B,H)
    return module_->score(picked).squeeze(-1).to(batch.input_ids.device());       // (B,)
  }

  //! Writes a directory transformers 5.23 loads as AutoModelForSequenceClassification (architectures
  //! `<Model>ForSequenceClassification`, id2label {"0": "LABEL_0"}).
  void save(const std::filesystem::path& dir, const SaveOptions& options = {}) const {
    detail::save_head_model(module_->named_parameters(), module_->config(), module_->head_config(),
                            /*write_dropout=*/false, "ForSequenceClassification", dir, options);
  }

  [[nodiscard]] std::vector<at::Tensor> parameters() const { return module_->parameters(); }
  [[nodiscard]] SequenceScoreModel& module() { return module_; }
  [[nodiscard]] const SequenceScoreModel& module() const { return module_; }
  [[nodiscard]] const RewardScorerOptions& options() const { return options_; }

 private:
  SequenceScoreModel module_;
  RewardScorerOptions options_;
};

}  // namespace verl::models
