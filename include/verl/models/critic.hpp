#pragma once
//! \file
//! verl::models::Critic: the decoder backbone plus a per-token scalar value head, laid out as transformers
//! 5.23's `*ForTokenClassification` with num_labels = 1 (GenericForTokenClassification: `model.*`,
//! dropout(classifier_dropout) on the last hidden state, `score` = Linear(hidden, 1) with a bias), which is
//! what verl's critic worker builds (AutoModelForTokenClassification, num_labels = 1, classifier_dropout = 0).
//! values(batch) is verl 0.7.1 dp_critic's `output.logits[:, -response_length - 1 : -1].squeeze(-1)`
//! times the response mask; the head runs only on those R rows.
//!
//! Checkpoints: Critic::load reads a critic saved by transformers (every tensor by its exact name), a
//! reward model's (`score.weight`, no bias: the bias is new) or a causal LM's (`lm_head.weight` ignored,
//! `score.*` new), reporting new and ignored tensors like transformers' load report; Critic::save writes a
//! directory transformers loads as AutoModelForTokenClassification.

#include "verl/concepts/critic_model.hpp"
#include "verl/core/errors.hpp"
#include "verl/core/model_io.hpp"
#include "verl/models/config.hpp"
#include "verl/models/decoder.hpp"
#include "verl/models/detail/heads_io.hpp"

#include <ATen/core/Tensor.h>
#include <ATen/ops/dropout.h>
#include <ATen/ops/where.h>
#include <ATen/ops/zeros_like.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

#include <cstdint>
#include <filesystem>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace verl::models {

//! transformers' `<Model>ForTokenClassification` with num_labels = 1: parameters `model.*`, `score.weight`
//! (1,hidden), `score.bias` (1).
class TokenValueModelImpl : public torch::nn::Module {
 public:
  //! A model with LibTorch's default initialisation in `config.dtype` (call init_weights for transformers').
  explicit TokenValueModelImpl(TransformerConfig config, HeadConfig head = {})
      : config_(std::move(config)), head_(head) {
    config_.validate();
    verl::detail::check<ConfigError>(head_.classifier_dropout >= 0.0 && head_.classifier_dropout <= 1.0,
                                     "verl::models::TokenValueModel: classifier_dropout is ", head_.classifier_dropout,
                                     ", expected a probability in [0, 1]");
    model = register_module("model", TransformerModel(config_));
    score = register_module("score", torch::nn::Linear(torch::nn::LinearOptions(config_.hidden_size, 1).bias(true)));
    to(config_.dtype);
  }

  //! hidden (...,H) -> values (...): dropout (training mode only) then the score head.
  at::Tensor head(const at::Tensor& hidden) {
    const auto x = at::dropout(hidden, head_.classifier_dropout, is_training());  // (...,H)
    return score(x).squeeze(-1);                                                    // (...)
  }

  //! Per-token values (B,T) in the parameter dtype: transformers' `logits.squeeze(-1)`.
  at::Tensor forward(const at::Tensor& input_ids, const at::Tensor& attention_mask, const at::Tensor& position_ids) {
    return head(model(input_ids, attention_mask, position_ids));
  }

  //! transformers' _init_weights over the whole model (see CausalLMImpl::init_weights) with `std`
  //! (default: HeadConfig::initializer_range).
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
TORCH_MODULE(TokenValueModel);

//! PPO's value model. Satisfies verl::CriticModel. A handle: copies share the module. The mode is the
//! caller's (`module()->train()` enables the classifier dropout, as in transformers).
class Critic {
 public:
  //! Wraps `module` (shared).
  explicit Critic(TokenValueModel module) : module_(std::move(module)) {}

  //! A new critic with transformers' initialisation (every weight N(0, initializer_range), biases 0).
  [[nodiscard]] static Critic create(const TransformerConfig& config, HeadConfig head = {}) {
    TokenValueModel m(config, head);
    m->init_weights();
    return Critic(std::move(m));
  }

  //! Loads a Hugging Face directory: a critic (`*ForTokenClassification`, num_labels = 1), a reward model
  //! (`*ForSequenceClassification`: score.bias is new) or a causal LM (score.* new, lm_head.weight ignored).
  //! New head tensors are initialised as transformers does; new and ignored tensors are reported in
  //! `report` (when given) and in one line to `options.log`. The model is in eval mode.
  //! \throws verl::InputError when backbone tensors are missing or tensors unknown to all three layouts are
  //!         present (all listed); verl::ShapeError for a tensor of the wrong shape; verl::ConfigError for
  //!         config.json (TransformerConfig and the head keys).
  [[nodiscard]] static Critic load(const std::filesystem::path& dir, const HeadLoadOptions& options = {},
                                   HeadLoadReport* report = nullptr) {
    const auto config = detail::load_config(dir, options);
    TokenValueModel m(config, HeadConfig::from_json(config.source, (dir / "config.json").string()));
    m->to(options.device);
    const auto cls = detail::head_class(config, "ForTokenClassification");
    auto r = detail::load_head_weights(m->named_parameters(), checkpoint::CheckpointReader::open(dir), dir.string(),
                                       cls, {"score.weight", "score.bias"}, {"lm_head.weight"},
                                       m->head_config().initializer_range);
    if (const auto line = detail::describe_load(r, cls, dir.string()); !line.empty() && options.log) options.log(line);
    if (report != nullptr) *report = std::move(r);
    m->eval();
    return Critic(std::move(m));
  }

  //! The values (B,R) of the states before each response token: the head on hidden rows T-R-1 .. T-2
  //! (verl's values[:, -R-1:-1]), 0 at padded response positions, parameter dtype; differentiable.
  [[nodiscard]] at::Tensor values(const TokenBatch& batch) {
    const auto s = detail::response_slice(batch, module_->score->weight.device());
    const auto hidden = module_->model(s.input_ids, s.attention_mask, s.position_ids);  // (B,T,H)
    const auto v = module_->head(hidden.narrow(1, s.start, s.length));                 // (B,R)
    return at::where(s.mask, v, at::zeros_like(v)).to(batch.input_ids.device());        // (B,R)
  }

  //! The trainable tensors.
  [[nodiscard]] std::vector<at::Tensor> parameters() const { return module_->parameters(); }

  //! Writes a directory transformers 5.23 loads as AutoModelForTokenClassification (architectures
  //! `<Model>ForTokenClassification`, id2label {"0": "LABEL_0"}), weights by their exact names.
  void save(const std::filesystem::path& dir, const SaveOptions& options = {}) const {
    detail::save_head_model(module_->named_parameters(), module_->config(), module_->head_config(),
                            /*write_dropout=*/true, "ForTokenClassification", dir, options);
  }

  //! The trainable tensors by their Hugging Face names (the names save() writes).
  [[nodiscard]] torch::OrderedDict<std::string, at::Tensor> named_parameters() const {
    return module_->named_parameters();
  }

  //! Copies the weights of a directory written by save() into this critic's parameters in place (so an
  //! optimizer holding them keeps working, e.g. when a trainer resumes). Throws verl::InputError listing the
  //! missing tensors, verl::ShapeError naming one whose shape differs.
  void load_weights(const std::filesystem::path& dir) {
    const auto reader = checkpoint::CheckpointReader::open(dir);
    const at::NoGradGuard no_grad;
    std::vector<std::string> missing;
    for (auto& item : module_->named_parameters()) {
      if (!reader.contains(item.key())) {
        missing.push_back(item.key());
        continue;
      }
      const auto t = reader.tensor(item.key());
      verl::detail::check<ShapeError>(t.sizes() == item.value().sizes(), "verl::models::Critic::load_weights: `",
                                      item.key(), "` in ", dir.string(), " has shape ", t.sizes(), ", expected ",
                                      item.value().sizes());
      item.value().copy_(t);
    }
    verl::detail::check<InputError>(missing.empty(), "verl::models::Critic::load_weights: ", dir.string(),
                                    " lacks ", missing.size(), " tensor(s): ", detail::join_names(missing));
  }

  [[nodiscard]] TokenValueModel& module() { return module_; }
  [[nodiscard]] const TokenValueModel& module() const { return module_; }

 private:
  TokenValueModel module_;
};

}  // namespace verl::models
