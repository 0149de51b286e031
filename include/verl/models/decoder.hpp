#pragma once
//! \file
//! verl::models::TransformerModel: the decoder backbone (transformers' LlamaModel / MistralModel / Qwen2Model
//! / Qwen3Model): embed_tokens, the decoder layers, the final norm. Parameter names are Hugging Face's
//! relative to the backbone (`embed_tokens.weight`, `layers.0.self_attn.q_proj.weight`, `norm.weight`); the
//! causal LM registers it as `model`.
//!
//! Masking: a query at column i attends to the key columns j <= i whose attention_mask is 1 (and, on a
//! sliding layer with window w, j > i - w): transformers' causal mask over padded columns. A padding query
//! also attends to itself, so that a row with no visible key (a left-padding column) stays finite instead of
//! 0/0; outputs at padding positions are not meaningful and callers mask them out.

#include "verl/core/errors.hpp"
#include "verl/models/config.hpp"
#include "verl/models/detail/checkpoint_function.hpp"
#include "verl/models/kv_cache.hpp"
#include "verl/models/layers.hpp"
#include "verl/models/rope.hpp"

#include <ATen/core/Tensor.h>
#include <ATen/ops/arange.h>
#include <ATen/ops/ones.h>
#include <ATen/core/grad_mode.h>
#include <c10/core/GradMode.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/pimpl.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace verl::models {

namespace detail {

//! Throws verl::ShapeError unless the forward inputs are 2-D with one shape (mask may be undefined).
inline void check_inputs(const at::Tensor& input_ids, const at::Tensor& attention_mask, const at::Tensor& position_ids,
                         std::string_view owner, std::int64_t vocab_size = 0) {
  using verl::detail::check;
  check<ShapeError>(input_ids.defined() && input_ids.dim() == 2, owner, ": `input_ids` must be a (B,T) tensor, got ",
                    input_ids.defined() ? input_ids.sizes() : at::IntArrayRef{});
  check<ShapeError>(input_ids.scalar_type() == at::kLong, owner, ": `input_ids` has dtype ", input_ids.scalar_type(),
                    ", expected int64");
  check<ShapeError>(input_ids.size(1) >= 1, owner, ": `input_ids` has no columns, expected T >= 1");
  if (vocab_size > 0 && input_ids.numel() > 0) {
    const auto lo = input_ids.min().item<std::int64_t>(), hi = input_ids.max().item<std::int64_t>();
    check<ShapeError>(lo >= 0 && hi < vocab_size, owner, ": `input_ids` holds token ids in [", lo, ", ", hi,
                      "], expected ids in [0, ", vocab_size, ") (vocab_size)");
  }
  if (attention_mask.defined()) {
    check<ShapeError>(attention_mask.sizes() == input_ids.sizes(), owner, ": `attention_mask` has shape ",
                      attention_mask.sizes(), ", expected the shape of `input_ids` ", input_ids.sizes());
  }
  check<ShapeError>(position_ids.defined() && position_ids.sizes() == input_ids.sizes(), owner,
                    ": `position_ids` has shape ", position_ids.defined() ? position_ids.sizes() : at::IntArrayRef{},
                    ", expected the shape of `input_ids` ", input_ids.sizes());
}

}  // namespace detail

//! The boolean attention mask (B,1,T,L) of T new query columns that start at column `past` over the L
//! columns whose 0/1 mask is `mask` (B,L); `window` 0 = full causal attention. See the file comment.
[[nodiscard]] inline at::Tensor attention_mask_4d(const at::Tensor& mask, std::int64_t past, std::int64_t t,
                                                  std::int64_t window = 0) {
  const auto l = mask.size(1);
  const auto opts = at::TensorOptions().dtype(at::kLong).device(mask.device());
  const auto q = (at::arange(t, opts) + past).unsqueeze(1);  // (T,1) column of each query
  const auto kv = at::arange(l, opts).unsqueeze(0);          // (1,L)
  auto allowed = (kv <= q).unsqueeze(0).unsqueeze(0) &
                 (mask.to(at::kBool).unsqueeze(1).unsqueeze(1) | (kv == q).unsqueeze(0).unsqueeze(0));  // (B,1,T,L)
  if (window > 0) allowed = allowed & (kv > q - window).unsqueeze(0).unsqueeze(0);
  return allowed;
}

//! The decoder backbone; see the file comment.
class TransformerModelImpl : public torch::nn::Module {
 public:
  explicit TransformerModelImpl(TransformerConfig c) : config_(std::move(c)) {
    config_.validate();
    auto emb = torch::nn::EmbeddingOptions(config_.vocab_size, config_.hidden_size);
    // transformers builds nn.Embedding(vocab, hidden, pad_token_id): the padding row gets no gradient.
    if (config_.pad_token_id && *config_.pad_token_id < config_.vocab_size) emb.padding_idx(*config_.pad_token_id);
    embed_tokens = register_module("embed_tokens", torch::nn::Embedding(emb));
    layers = register_module("layers", torch::nn::ModuleList());
    for (std::int64_t i = 0; i < config_.num_hidden_layers; ++i) {
      decoder_layers_.push_back(DecoderLayer(config_, i));
      layers->push_back(decoder_layers_.back());
    }
    norm = register_module("norm", RMSNorm(config_.hidden_size, config_.rms_norm_eps));
  }

  //! Hidden states (B,T,hidden) after the final norm.
  //! \param input_ids (B,T) int64 token ids in [0, vocab_size).
  //! \param attention_mask (B,T) 0/1 (int or bool) of the new columns, or undefined for all ones. With a
  //!        cache, the cached columns' mask is the cache's.
  //! \param position_ids (B,T) int64 RoPE positions (e.g. cumsum(mask) - 1 on each row).
  //! \param cache keys/values of earlier columns, updated with these; null for a plain forward.
  at::Tensor forward(const at::Tensor& input_ids, const at::Tensor& attention_mask, const at::Tensor& position_ids,
                     KVCache* cache = nullptr) {
    return run(input_ids, attention_mask, position_ids, cache, 0, -1);
  }

  //! Hidden states (B,length,hidden) after the final norm of the columns [start, start + length) only, for
  //! callers that use no other column (scoring a response: Actor::log_probs). The last decoder layer runs its
  //! queries, attention output and MLP on those columns alone (DecoderLayerImpl::forward_columns); every
  //! other layer is as in forward. Each column is the same computation as forward's (to float rounding: the
  //! narrower GEMMs may round differently). No cache.
  //! \throws verl::ShapeError for a column range outside [0, T), and as forward.
  at::Tensor forward_columns(const at::Tensor& input_ids, const at::Tensor& attention_mask,
                             const at::Tensor& position_ids, std::int64_t start, std::int64_t length) {
    const auto t = input_ids.defined() && input_ids.dim() == 2 ? input_ids.size(1) : 0;
    verl::detail::check<ShapeError>(start >= 0 && length >= 0 && start + length <= t,
                                    "verl::models::TransformerModel::forward_columns: columns [", start, ", ",
                                    start + length, ") are not inside the ", t, " columns of input_ids");
    if (length == 0) return forward(input_ids, attention_mask, position_ids).narrow(1, start, 0);  // (B,0,hidden)
    return run(input_ids, attention_mask, position_ids, nullptr, start, length);
  }

  //! Recompute each decoder layer's activations in backward instead of keeping them (applies in training
  //! mode with grad enabled and no cache).
  void set_activation_checkpointing(bool on) { checkpointing_ = on; }
  [[nodiscard]] bool activation_checkpointing() const { return checkpointing_; }

  [[nodiscard]] const TransformerConfig& config() const { return config_; }
  //! The decoder layers, in order.
  [[nodiscard]] const std::vector<DecoderLayer>& decoder_layers() const { return decoder_layers_; }

  torch::nn::Embedding embed_tokens{nullptr};
  torch::nn::ModuleList layers{nullptr};
  RMSNorm norm{nullptr};

 private:
  //! forward, or forward_columns when 0 <= length (and the range is not every column).
  at::Tensor run(const at::Tensor& input_ids, const at::Tensor& attention_mask, const at::Tensor& position_ids,
                 KVCache* cache, std::int64_t start, std::int64_t length) {
    constexpr std::string_view o = "verl::models::TransformerModel::forward";
    detail::check_inputs(input_ids, attention_mask, position_ids, o, config_.vocab_size);
    const auto b = input_ids.size(0), t = input_ids.size(1);
    const auto new_mask = attention_mask.defined() ? attention_mask
                                                   : at::ones({b, t}, at::TensorOptions().dtype(at::kLong).device(input_ids.device()));
    const std::int64_t past = cache != nullptr ? cache->length() : 0;
    if (cache != nullptr) {
      verl::detail::check<ConfigError>(cache->num_layers() == config_.num_hidden_layers, o, ": the cache has ",
                                       cache->num_layers(), " layers, the model ", config_.num_hidden_layers);
    }
    const auto full_mask = cache != nullptr ? cache->append_mask(new_mask) : new_mask;  // (B,L)
    auto hidden = embed_tokens(input_ids);                                              // (B,T,hidden)
    const auto [cos, sin] = rope_cos_sin(config_, position_ids, hidden.scalar_type());  // (B,T,D) each
    std::map<std::int64_t, at::Tensor> masks;  // one (B,1,T,L) mask per distinct window
    // Nothing padded, no cache: layers without a window run SDPA's causal path (an undefined mask).
    const bool plain_causal = cache == nullptr && (!attention_mask.defined() || new_mask.all().item<bool>());
    for (auto w : config_.sliding_windows) {
      if (masks.count(w)) continue;
      masks[w] = plain_causal && (w <= 0 || w >= t) ? at::Tensor() : attention_mask_4d(full_mask, past, t, w);
    }
    const bool recompute = checkpointing_ && is_training() && c10::GradMode::is_enabled() && cache == nullptr;
    const bool some_columns = length >= 0 && !(start == 0 && length == t);
    for (std::size_t i = 0; i < decoder_layers_.size(); ++i) {
      const auto& mask = masks.at(config_.sliding_windows[i]);
      auto layer = decoder_layers_[i];
      const bool narrowed = some_columns && i + 1 == decoder_layers_.size();
      if (recompute) {
        std::vector<at::Tensor> params;
        for (const auto& p : layer->parameters()) {
          if (p.requires_grad()) params.push_back(p);
        }
        hidden = detail::checkpoint(
            [layer, cos = cos, sin = sin, mask, narrowed, start, length](const at::Tensor& x) mutable {
              return narrowed ? layer->forward_columns(x, cos, sin, mask, start, length) : layer(x, cos, sin, mask);
            },
            hidden, params);
      } else {
        hidden = narrowed ? layer->forward_columns(hidden, cos, sin, mask, start, length)
                          : layer(hidden, cos, sin, mask, cache);
      }
    }
    return norm(hidden);
  }

  TransformerConfig config_;
  std::vector<DecoderLayer> decoder_layers_;
  bool checkpointing_ = false;
};
TORCH_MODULE(TransformerModel);

namespace detail {

//! transformers' _init_weights over every parameter of `module` (a backbone with an LM, value or score head):
//! Linear and Embedding weights ~ N(0, std), biases 0, RMSNorm weights 1, and the backbone embedding's
//! padding row zeroed. Draws from LibTorch's default generator.
inline void init_hf_weights(torch::nn::Module& module, const TransformerModel& backbone, double std) {
  at::NoGradGuard no_grad;
  for (const auto& item : module.named_parameters()) {
    const auto& name = item.key();
    auto p = item.value();
    if (name.find("norm.weight") != std::string::npos) {  // every RMSNorm: *layernorm, norm, q_norm, k_norm
      p.fill_(1.0);
    } else if (name.size() >= 4 && name.compare(name.size() - 4, 4, "bias") == 0) {
      p.zero_();
    } else {
      p.normal_(0.0, std);
    }
  }
  const auto& config = backbone->config();
  if (config.pad_token_id && *config.pad_token_id < config.vocab_size) {
    backbone->embed_tokens->weight[*config.pad_token_id].zero_();
  }
}

}  // namespace detail

}  // namespace verl::models
