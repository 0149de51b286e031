#pragma once
//! \file
//! verl::dist::TensorParallelCausalLM: a loaded verl::models::CausalLM (Llama / Mistral / Qwen2 / Qwen3)
//! sharded over the tp ranks in Megatron-LM's layout, with a forward that returns per-token log-probs (and
//! entropy, and the gathered logits when asked) equal to the unsharded model's, and the way back to the full
//! Hugging Face weights for saving.
//!
//! Layout (tp ranks; "split d" = equal contiguous slices along dimension d, rank r holding slice r):
//!
//! | parameter (Hugging Face name)                  | layer                  | layout                          |
//! |------------------------------------------------|------------------------|---------------------------------|
//! | model.embed_tokens.weight (V,h)                | VocabParallelEmbedding | split 0 (vocabulary rows)       |
//! | self_attn.q_proj.weight (H*D,h), .bias         | ColumnParallelLinear   | split 0 (query heads)           |
//! | self_attn.k_proj/v_proj.weight (Hkv*D,h), .bias| ColumnParallelLinear   | split 0 when tp divides Hkv; else, when Hkv divides tp, head r/(tp/Hkv) replicated on tp/Hkv ranks |
//! | self_attn.o_proj.weight (h,H*D)                | RowParallelLinear      | split 1; bias replicated        |
//! | mlp.gate_proj/up_proj.weight (I,h), .bias      | ColumnParallelLinear   | split 0                         |
//! | mlp.down_proj.weight (h,I)                     | RowParallelLinear      | split 1; bias replicated        |
//! | lm_head.weight (V,h) (or the tied embedding)   | column-parallel        | split 0, feeding vocab_parallel_log_probs |
//! | *layernorm.weight, model.norm.weight, q_norm/k_norm.weight | RMSNorm    | replicated                      |
//!
//! Requirements (verl::ConfigError naming the quantity otherwise): tp divides num_attention_heads,
//! intermediate_size and vocab_size; num_key_value_heads is a multiple or a divisor of tp. Megatron requires
//! tp to divide the key/value heads too; replicating them when tp exceeds their count is what vLLM does (for
//! inference); here training works too: see below. hidden_size is never split (the residual stream is
//! replicated, as in Megatron without sequence parallelism).
//!
//! Gradients: every parameter's gradient on every rank is the unsharded gradient's slice. Replicated norms
//! see the full gradient of their output (copy_to_tensor_parallel_region all-reduces it); q_norm and k_norm,
//! which each rank applies to its own heads only, sum their gradients over the ranks. A replicated key/value
//! head serves different query heads on each replica: the gradients of its k and v activations are summed
//! over the replicas (sum_gradient_over_replicas) right after RoPE, where the unsharded model's GQA expand
//! sums them, so that the k_norm backward (float32, as transformers') sees the same summed gradient; each
//! replica then computes the complete gradient of its k/v projection (replicas stay bitwise equal), and only
//! the first replica passes the input's share of it on.
//!
//! KV cache: hidden_states / local_logits / forward take an optional verl::models::KVCache*, as
//! CausalLM's do; each rank's cache holds only its own key/value heads (B, Hkv/tp, L, D), or the replicated
//! head(s) it serves when tp exceeds num_key_value_heads. Masks, positions and the cache's column bookkeeping
//! are TransformerModel::forward's, so a prefill and decode steps give the unsharded model's logits.
//! Generation (prefill + decode, greedy and sampled, identical on every rank of the group) is in
//! verl/dist/tensor_parallel_generation.hpp.
//!
//! Not supported: activation checkpointing, sequence parallelism.

#include "verl/core/errors.hpp"
#include "verl/dist/tensor_parallel_layers.hpp"
#include "verl/models/detail/fused_layer_kernels.hpp"
#include "verl/models/causal_lm.hpp"
#include "verl/models/config.hpp"
#include "verl/models/decoder.hpp"
#include "verl/models/kv_cache.hpp"
#include "verl/models/layers.hpp"
#include "verl/models/rope.hpp"

#include <ATen/TensorOperators.h>
#include <ATen/core/Tensor.h>
#include <ATen/core/grad_mode.h>
#include <ATen/ops/linear.h>
#include <ATen/ops/ones.h>
#include <ATen/ops/rsqrt.h>
#include <ATen/ops/scaled_dot_product_attention.h>
#include <ATen/ops/silu.h>
#include <ATen/ops/zeros_like.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/pimpl.h>

#include <cmath>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

namespace verl::dist {

//! One parameter of the tensor-parallel layout: its Hugging Face name and how it is sharded.
struct TensorParallelParameter {
  std::string name;
  ShardSpec spec;
};

//! Throws verl::ConfigError, naming the quantity, unless `config` can be sharded over `tp` ranks (see the
//! file comment).
inline void check_tensor_parallel_config(const models::TransformerConfig& c, int tp) {
  using verl::detail::check;
  constexpr std::string_view o = "verl::dist::TensorParallelCausalLM";
  check<ConfigError>(tp >= 1, o, ": the tensor-parallel size is ", tp, ", expected >= 1");
  const auto divisible = [&](std::string_view name, std::int64_t value, std::string_view why) {
    check<ConfigError>(value % tp == 0, o, ": ", name, " (", value, ") is not divisible by the tensor-parallel size ",
                       tp, ", expected a multiple of ", tp, " (", why, ")");
  };
  divisible("num_attention_heads", c.num_attention_heads, "the query heads are split evenly over the ranks");
  check<ConfigError>(c.num_key_value_heads % tp == 0 || tp % c.num_key_value_heads == 0, o, ": num_key_value_heads (",
                     c.num_key_value_heads, ") is neither a multiple nor a divisor of the tensor-parallel size ", tp,
                     ", expected one of them (a multiple: the key/value heads are split; a divisor: each is "
                     "replicated on tp / num_key_value_heads ranks)");
  divisible("intermediate_size", c.intermediate_size, "gate_proj/up_proj rows and down_proj columns are split");
  divisible("vocab_size", c.vocab_size,
            "embed_tokens and lm_head rows are split; pad the vocabulary as Megatron's make_vocab_size_divisible_by does");
}

//! Distinct key/value head slices: tp when tp divides num_key_value_heads, else num_key_value_heads (each
//! replicated on tp / num_key_value_heads ranks).
[[nodiscard]] inline int kv_head_shards(const models::TransformerConfig& c, int tp) {
  return c.num_key_value_heads % tp == 0 ? tp : static_cast<int>(c.num_key_value_heads);
}

//! The layout of the parameter named `name` (a Hugging Face name of CausalLM) over `tp` ranks.
//! \throws verl::ConfigError for a name that is not a parameter of the model family.
[[nodiscard]] inline ShardSpec tensor_parallel_spec(std::string_view name, const models::TransformerConfig& c, int tp) {
  const auto ends = [&](std::string_view suffix) {
    return name.size() >= suffix.size() && name.substr(name.size() - suffix.size()) == suffix;
  };
  const ShardSpec rows{0, tp}, columns{1, tp}, replicated{0, 1};
  if (name == "model.embed_tokens.weight" || name == "lm_head.weight") return rows;
  if (ends("self_attn.q_proj.weight") || ends("self_attn.q_proj.bias")) return rows;
  if (ends("self_attn.k_proj.weight") || ends("self_attn.k_proj.bias") || ends("self_attn.v_proj.weight") ||
      ends("self_attn.v_proj.bias")) {
    return ShardSpec{0, kv_head_shards(c, tp)};
  }
  if (ends("self_attn.o_proj.weight") || ends("mlp.down_proj.weight")) return columns;
  if (ends("self_attn.o_proj.bias") || ends("mlp.down_proj.bias")) return replicated;
  if (ends("mlp.gate_proj.weight") || ends("mlp.gate_proj.bias") || ends("mlp.up_proj.weight") ||
      ends("mlp.up_proj.bias")) {
    return rows;
  }
  if (ends("norm.weight")) return replicated;  // input/post_attention layernorm, model.norm, q_norm, k_norm
  throw ConfigError(verl::detail::concat_message("verl::dist::tensor_parallel_spec: no tensor-parallel layout for the "
                                                 "parameter ", name, ", expected a parameter of verl::models::CausalLM"));
}

}  // namespace verl::dist

namespace verl::detail {

//! transformers' RMSNorm with an explicit weight (the formula of verl::models::RMSNormImpl::forward).
[[nodiscard]] inline at::Tensor tp_rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps) {
  if (auto y = models::detail::fused_rms_norm(x, weight, eps); y.defined()) return y;  // float32 on the CPU
  const auto xf = x.to(at::kFloat);                             // (...,dim)
  const auto variance = xf.pow(2).mean(-1, /*keepdim=*/true);   // (...,1)
  return weight * (xf * at::rsqrt(variance + eps)).to(x.scalar_type());
}

//! A replicated copy of an RMSNorm (same eps, weight copied and detached).
[[nodiscard]] inline models::RMSNorm tp_copy_norm(const models::RMSNorm& full) {
  models::RMSNorm norm(full->weight.size(0), full->eps());
  at::NoGradGuard no_grad;
  norm->weight.set_data(full->weight.detach().clone());
  return norm;
}

}  // namespace verl::detail

namespace verl::dist {

//! Grouped-query attention with q/k/v column-parallel (heads split) and o_proj row-parallel.
class TensorParallelAttentionImpl : public torch::nn::Module {
 public:
  //! \param layer_idx the decoder layer's index: its slot in a KVCache.
  TensorParallelAttentionImpl(TensorParallelGroup group, models::AttentionImpl& full, const models::TransformerConfig& c,
                              std::int64_t layer_idx = 0)
      : group_(std::move(group)), layer_idx_(layer_idx), head_dim_(c.head_dim) {
    const int tp = group_.size();
    kv_shards_ = kv_head_shards(c, tp);
    kv_lead_ = group_.rank() % (tp / kv_shards_) == 0;
    heads_ = c.num_attention_heads / tp;
    kv_heads_ = c.num_key_value_heads / kv_shards_;
    // Replicated key/value heads: each replica's projection gets the complete gradient (the key/value
    // activations' gradients are summed over the replicas in forward()), so the weights are not summed again.
    const ColumnParallelLinearOptions kv_options{.gather_output = false, .shards = kv_shards_,
                                                .sum_replica_gradients = false};
    q_proj = register_module("q_proj", ColumnParallelLinear(group_, full.q_proj->weight, full.q_proj->bias));
    k_proj = register_module("k_proj", ColumnParallelLinear(group_, full.k_proj->weight, full.k_proj->bias, kv_options));
    v_proj = register_module("v_proj", ColumnParallelLinear(group_, full.v_proj->weight, full.v_proj->bias, kv_options));
    o_proj = register_module("o_proj", RowParallelLinear(group_, full.o_proj->weight, full.o_proj->bias,
                                                         RowParallelLinearOptions{.input_is_parallel = true}));
    if (full.q_norm) {
      q_norm = register_module("q_norm", detail::tp_copy_norm(full.q_norm));
      k_norm = register_module("k_norm", detail::tp_copy_norm(full.k_norm));
    }
  }

  //! x (B,T,hidden) replicated, cos/sin (B,T,D), mask (B,1,T,L) bool or undefined (causal, T == L), cache (may
  //! be null; then L = T; else it receives this rank's new keys/values and supplies the earlier ones)
  //! -> (B,T,hidden).
  at::Tensor forward(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin, const at::Tensor& mask,
                     models::KVCache* cache = nullptr) {
    const auto b = x.size(0), t = x.size(1);
    const auto xin = copy_to_tensor_parallel_region(x, group_);                            // (B,T,hidden)
    // Replicated key/value heads (tp > num_key_value_heads): the replicas compute the same k and v; their
    // gradients are summed over the replicas below, before the (float32) k_norm backward as in the unsharded
    // model, and only the first replica passes the input's share on (the others' gate drops it).
    const bool replicated = kv_shards_ < group_.size();
    const auto xkv = replicated ? detail::GateGradient::apply(xin, kv_lead_) : xin;        // (B,T,hidden)
    auto q = q_proj->local_forward(xin).view({b, t, heads_, head_dim_});                   // (B,T,Hl,D)
    auto k = k_proj->local_forward(xkv).view({b, t, kv_heads_, head_dim_});                // (B,T,Hkvl,D)
    auto v = v_proj->local_forward(xkv).view({b, t, kv_heads_, head_dim_}).transpose(1, 2);  // (B,Hkvl,T,D)
    if (q_norm) {  // Qwen3: one weight for every head; each rank normalises only its heads: sum over ranks
      q = detail::tp_rms_norm(q, sum_gradient_over_replicas(q_norm->weight, group_, 1), q_norm->eps());
      auto kw = sum_gradient_over_replicas(k_norm->weight, group_, 1);  // (D)
      if (replicated) kw = detail::GateGradient::apply(kw, kv_lead_);  // one replica per head contributes
      k = detail::tp_rms_norm(k, kw, k_norm->eps());
    }
    q = models::apply_rope(q.transpose(1, 2), cos, sin);  // (B,Hl,T,D)
    k = models::apply_rope(k.transpose(1, 2), cos, sin);  // (B,Hkvl,T,D)
    if (replicated) {  // each replica's gradient covers its own query heads only: sum them
      k = sum_gradient_over_replicas(k, group_, kv_shards_);
      v = sum_gradient_over_replicas(v, group_, kv_shards_);
    }
    at::Tensor keys = k, values = v;
    if (cache != nullptr) std::tie(keys, values) = cache->update(layer_idx_, k, v);  // (B,Hkvl,L,D)
    const auto groups = heads_ / kv_heads_;
    if (groups > 1) {  // each local key/value head serves `groups` local query heads
      const auto l = keys.size(2);
      keys = keys.unsqueeze(2).expand({b, kv_heads_, groups, l, head_dim_}).reshape({b, heads_, l, head_dim_});
      values = values.unsqueeze(2).expand({b, kv_heads_, groups, l, head_dim_}).reshape({b, heads_, l, head_dim_});
    }
    const auto attn_mask = mask.defined() ? std::optional<at::Tensor>(mask) : std::nullopt;
    const auto out = at::scaled_dot_product_attention(q, keys, values, attn_mask, /*dropout_p=*/0.0,
                                                      /*is_causal=*/!mask.defined(),
                                                      /*scale=*/std::pow(static_cast<double>(head_dim_), -0.5));  // (B,Hl,T,D)
    return o_proj(out.transpose(1, 2).reshape({b, t, heads_ * head_dim_}));  // (B,T,hidden)
  }

  ColumnParallelLinear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr};
  RowParallelLinear o_proj{nullptr};
  models::RMSNorm q_norm{nullptr}, k_norm{nullptr};

 private:
  TensorParallelGroup group_;
  std::int64_t layer_idx_ = 0;
  std::int64_t heads_ = 0, kv_heads_ = 0, head_dim_ = 0;
  int kv_shards_ = 1;
  bool kv_lead_ = true;  // the first of the replicas of this rank's key/value heads
};
TORCH_MODULE(TensorParallelAttention);

//! The SwiGLU MLP with gate/up column-parallel and down row-parallel.
class TensorParallelMLPImpl : public torch::nn::Module {
 public:
  TensorParallelMLPImpl(TensorParallelGroup group, models::MLPImpl& full) : group_(std::move(group)) {
    gate_proj = register_module("gate_proj", ColumnParallelLinear(group_, full.gate_proj->weight, full.gate_proj->bias));
    up_proj = register_module("up_proj", ColumnParallelLinear(group_, full.up_proj->weight, full.up_proj->bias));
    down_proj = register_module("down_proj", RowParallelLinear(group_, full.down_proj->weight, full.down_proj->bias,
                                                               RowParallelLinearOptions{.input_is_parallel = true}));
  }

  //! x (B,T,hidden) replicated -> (B,T,hidden) replicated.
  at::Tensor forward(const at::Tensor& x) {
    const auto xin = copy_to_tensor_parallel_region(x, group_);  // (B,T,hidden)
    return down_proj(at::silu(gate_proj->local_forward(xin)) * up_proj->local_forward(xin));  // (B,T,I/tp) -> (B,T,hidden)
  }

  ColumnParallelLinear gate_proj{nullptr}, up_proj{nullptr};
  RowParallelLinear down_proj{nullptr};

 private:
  TensorParallelGroup group_;
};
TORCH_MODULE(TensorParallelMLP);

//! The pre-norm residual layer over the tensor-parallel attention and MLP (norms replicated).
class TensorParallelDecoderLayerImpl : public torch::nn::Module {
 public:
  TensorParallelDecoderLayerImpl(const TensorParallelGroup& group, models::DecoderLayerImpl& full,
                                 const models::TransformerConfig& c, std::int64_t layer_idx = 0) {
    self_attn = register_module("self_attn", TensorParallelAttention(group, *full.self_attn, c, layer_idx));
    mlp = register_module("mlp", TensorParallelMLP(group, *full.mlp));
    input_layernorm = register_module("input_layernorm", detail::tp_copy_norm(full.input_layernorm));
    post_attention_layernorm = register_module("post_attention_layernorm", detail::tp_copy_norm(full.post_attention_layernorm));
  }

  //! x (B,T,hidden) -> (B,T,hidden); the other arguments as TensorParallelAttentionImpl::forward's.
  at::Tensor forward(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin, const at::Tensor& mask,
                     models::KVCache* cache = nullptr) {
    const auto h = x + self_attn(input_layernorm(x), cos, sin, mask, cache);  // (B,T,hidden)
    return h + mlp(post_attention_layernorm(h));
  }

  TensorParallelAttention self_attn{nullptr};
  TensorParallelMLP mlp{nullptr};
  models::RMSNorm input_layernorm{nullptr}, post_attention_layernorm{nullptr};
};
TORCH_MODULE(TensorParallelDecoderLayer);

//! The decoder backbone: vocabulary-parallel embedding, tensor-parallel layers, replicated final norm.
class TensorParallelTransformerImpl : public torch::nn::Module {
 public:
  TensorParallelTransformerImpl(const TensorParallelGroup& group, models::TransformerModelImpl& full)
      : config_(full.config()) {
    std::optional<std::int64_t> pad;
    if (config_.pad_token_id && *config_.pad_token_id < config_.vocab_size) pad = *config_.pad_token_id;
    embed_tokens = register_module("embed_tokens", VocabParallelEmbedding(group, full.embed_tokens->weight, pad));
    layers = register_module("layers", torch::nn::ModuleList());
    for (const auto& layer : full.decoder_layers()) {
      const auto index = static_cast<std::int64_t>(decoder_layers_.size());
      decoder_layers_.push_back(TensorParallelDecoderLayer(group, *layer.ptr(), config_, index));
      layers->push_back(decoder_layers_.back());
    }
    norm = register_module("norm", detail::tp_copy_norm(full.norm));
  }

  //! Hidden states (B,T,hidden) after the final norm, the same on every rank; the arguments, the masking and
  //! the cache's bookkeeping are verl::models::TransformerModel::forward's (the cache holds this rank's
  //! key/value heads: create it with num_hidden_layers layers, one per rank).
  at::Tensor forward(const at::Tensor& input_ids, const at::Tensor& attention_mask, const at::Tensor& position_ids,
                     models::KVCache* cache = nullptr) {
    constexpr std::string_view o = "verl::dist::TensorParallelCausalLM::forward";
    models::detail::check_inputs(input_ids, attention_mask, position_ids, o, config_.vocab_size);
    const auto b = input_ids.size(0), t = input_ids.size(1);
    const auto new_mask = attention_mask.defined()
                              ? attention_mask
                              : at::ones({b, t}, at::TensorOptions().dtype(at::kLong).device(input_ids.device()));  // (B,T)
    const std::int64_t past = cache != nullptr ? cache->length() : 0;
    if (cache != nullptr) {
      verl::detail::check<ConfigError>(cache->num_layers() == config_.num_hidden_layers, o, ": the cache has ",
                                       cache->num_layers(), " layers, expected the model's num_hidden_layers ",
                                       config_.num_hidden_layers);
    }
    const auto full_mask = cache != nullptr ? cache->append_mask(new_mask) : new_mask;  // (B,L)
    auto hidden = embed_tokens(input_ids);                                              // (B,T,hidden)
    const auto [cos, sin] = models::rope_cos_sin(config_, position_ids, hidden.scalar_type());  // (B,T,D) each
    std::map<std::int64_t, at::Tensor> masks;  // one (B,1,T,L) mask per distinct window, as TransformerModel
    const bool plain_causal = cache == nullptr && (!attention_mask.defined() || new_mask.all().item<bool>());
    for (auto w : config_.sliding_windows) {
      if (masks.count(w)) continue;
      masks[w] = plain_causal && (w <= 0 || w >= t) ? at::Tensor() : models::attention_mask_4d(full_mask, past, t, w);
    }
    for (std::size_t i = 0; i < decoder_layers_.size(); ++i) {
      hidden = decoder_layers_[i](hidden, cos, sin, masks.at(config_.sliding_windows[i]), cache);
    }
    return norm(hidden);
  }

  [[nodiscard]] const models::TransformerConfig& config() const { return config_; }

  VocabParallelEmbedding embed_tokens{nullptr};
  torch::nn::ModuleList layers{nullptr};
  models::RMSNorm norm{nullptr};

 private:
  models::TransformerConfig config_;
  std::vector<TensorParallelDecoderLayer> decoder_layers_;
};
TORCH_MODULE(TensorParallelTransformer);

//! Options of TensorParallelCausalLM::log_probs.
struct TensorParallelLogProbOptions {
  double temperature = 1.0;      //!< the logits are divided by it before the softmax (verl's actor); > 0
  bool compute_entropy = false;  //!< also the entropy of softmax(logits / temperature)
  bool gather_logits = false;    //!< also the unsharded logits (B,T,V) (before the temperature), all-gathered
};

//! What TensorParallelCausalLM::log_probs returns (the same on every rank).
struct TensorParallelLogProbOutput {
  at::Tensor log_probs;  //!< (B,T) log softmax(logits / T)[target], float32 (float64 for float64 models)
  at::Tensor entropy;    //!< (B,T) when asked for
  at::Tensor logits;     //!< (B,T,V) in the parameter dtype, when asked for
};

//! A CausalLM sharded over the tp group; see the file comment. Parameter names are the Hugging Face names of
//! the unsharded model, each holding this rank's shard.
class TensorParallelCausalLMImpl : public torch::nn::Module {
 public:
  //! Slices this rank's part of every parameter of `full` (which every rank holds, e.g. loaded with
  //! verl::models::load_causal_lm). The shards are copies: `full` may be freed afterwards.
  //! \throws verl::ConfigError (check_tensor_parallel_config) when the config cannot be split over the group.
  TensorParallelCausalLMImpl(models::CausalLM& full, TensorParallelGroup group)
      : group_(std::move(group)), config_(full->config()) {
    check_tensor_parallel_config(config_, group_.size());
    model = register_module("model", TensorParallelTransformer(group_, *full->model));
    if (!config_.tie_word_embeddings) {
      lm_head = register_module("lm_head", ColumnParallelLinear(group_, full->lm_head->weight));
    }
    // The layout table, in the unsharded model's parameter order; names must agree one to one.
    const auto mine = named_parameters();
    std::set<std::string> seen;
    for (const auto& item : full->named_parameters()) {
      const auto* local = mine.find(item.key());
      verl::detail::check<Error>(local != nullptr, "verl::dist::TensorParallelCausalLM: the unsharded parameter ",
                                 item.key(), " has no tensor-parallel counterpart");
      layout_.push_back({item.key(), tensor_parallel_spec(item.key(), config_, group_.size())});
      locals_.push_back(*local);
      seen.insert(item.key());
    }
    for (const auto& item : mine) {
      verl::detail::check<Error>(seen.count(item.key()) == 1, "verl::dist::TensorParallelCausalLM: the parameter ",
                                 item.key(), " is not in the unsharded model");
    }
  }

  //! Hidden states (B,T,hidden), the same on every rank (arguments as CausalLM::hidden_states; `cache`, when
  //! given, holds this rank's key/value heads: see make_cache).
  at::Tensor hidden_states(const at::Tensor& input_ids, const at::Tensor& attention_mask, const at::Tensor& position_ids,
                           models::KVCache* cache = nullptr) {
    return model(input_ids, attention_mask, position_ids, cache);
  }

  //! This rank's vocabulary columns of the logits: (B,T,V/tp), columns [rank V/tp, (rank+1) V/tp).
  at::Tensor local_logits(const at::Tensor& input_ids, const at::Tensor& attention_mask, const at::Tensor& position_ids,
                          models::KVCache* cache = nullptr) {
    return project_local(hidden_states(input_ids, attention_mask, position_ids, cache));
  }

  //! hidden (...,hidden) replicated -> this rank's logits (...,V/tp) through the column-parallel LM head.
  at::Tensor project_local(const at::Tensor& hidden) {
    return at::linear(copy_to_tensor_parallel_region(hidden, group_), lm_head_weight());
  }

  //! The unsharded logits (B,T,V) on every rank (all-gathered; differentiable).
  at::Tensor forward(const at::Tensor& input_ids, const at::Tensor& attention_mask, const at::Tensor& position_ids,
                     models::KVCache* cache = nullptr) {
    return gather_from_tensor_parallel_region(local_logits(input_ids, attention_mask, position_ids, cache), group_);
  }

  //! An empty KV cache for this model on this rank (one slot per decoder layer; it will hold this rank's
  //! key/value heads), with `capacity` columns reserved on first use.
  [[nodiscard]] models::KVCache make_cache(std::int64_t capacity = 0) const {
    return models::KVCache(config_.num_hidden_layers, capacity);
  }

  //! log softmax(logits / T)[targets] per token from the vocabulary-sharded logits (vocab_parallel_log_probs),
  //! optionally the entropy and the gathered logits. \param targets (B,T) int64 ids in [0, V) (e.g. the
  //! input ids shifted left; the caller chooses and masks positions).
  TensorParallelLogProbOutput log_probs(const at::Tensor& input_ids, const at::Tensor& attention_mask,
                                        const at::Tensor& position_ids, const at::Tensor& targets,
                                        const TensorParallelLogProbOptions& options = {}) {
    verl::detail::check<ConfigError>(std::isfinite(options.temperature) && options.temperature > 0.0,
                                     "verl::dist::TensorParallelCausalLM::log_probs: temperature is ",
                                     options.temperature, ", expected a finite value > 0");
    const auto local = local_logits(input_ids, attention_mask, position_ids);        // (B,T,V/tp)
    const auto tempered = options.temperature == 1.0 ? local : local / options.temperature;
    auto res = vocab_parallel_log_probs(tempered, targets, group_, options.compute_entropy);  // (B,T)
    TensorParallelLogProbOutput out{std::move(res.log_probs), std::move(res.entropy), {}};
    if (options.gather_logits) out.logits = gather_from_tensor_parallel_region(local, group_);  // (B,T,V)
    return out;
  }

  //! This rank's (V/tp, hidden) rows of the output projection: lm_head.weight, or the embedding when tied.
  [[nodiscard]] const at::Tensor& lm_head_weight() const {
    return config_.tie_word_embeddings ? model->embed_tokens->weight : lm_head->weight;
  }

  //! Every parameter's name and layout, in the unsharded model's named_parameters() order.
  [[nodiscard]] const std::vector<TensorParallelParameter>& layout() const { return layout_; }

  //! The unsharded parameters (name, tensor), in layout() order, on every rank. Collective: all-gathers
  //! every split parameter. Bitwise the tensors the model was sharded from, until the weights are trained.
  [[nodiscard]] std::vector<std::pair<std::string, at::Tensor>> gather_full_parameters() const {
    std::vector<std::pair<std::string, at::Tensor>> out;
    for (std::size_t i = 0; i < layout_.size(); ++i) {
      out.emplace_back(layout_[i].name, gather_tensor(locals_[i], layout_[i].spec, group_, layout_[i].name));
    }
    return out;
  }

  //! The unsharded gradients (name, tensor), in layout() order (zeros where a gradient is undefined).
  //! Collective. For replicated parameters this rank's own gradient is returned.
  [[nodiscard]] std::vector<std::pair<std::string, at::Tensor>> gather_full_gradients() const {
    std::vector<std::pair<std::string, at::Tensor>> out;
    for (std::size_t i = 0; i < layout_.size(); ++i) {
      const auto& g = locals_[i].grad();
      out.emplace_back(layout_[i].name, gather_tensor(g.defined() ? g : at::zeros_like(locals_[i]), layout_[i].spec,
                                                      group_, layout_[i].name));
    }
    return out;
  }

  //! Writes the unsharded parameters into `full` (a CausalLM of the same config), e.g. to save it with
  //! verl::models::save_causal_lm in Hugging Face's layout. Collective.
  //! \throws verl::ShapeError when `full`'s parameters do not match (name or shape).
  void copy_into(models::CausalLM& full) const {
    auto params = full->named_parameters();
    const auto gathered = gather_full_parameters();
    at::NoGradGuard no_grad;
    for (const auto& [name, tensor] : gathered) {
      auto* p = params.find(name);
      verl::detail::check<ShapeError>(p != nullptr && p->sizes() == tensor.sizes(),
                                      "verl::dist::TensorParallelCausalLM::copy_into: the target model's parameter ",
                                      name, p == nullptr ? " is missing" : " has another shape",
                                      ", expected a CausalLM of the same config");
      p->copy_(tensor);
    }
  }

  [[nodiscard]] const models::TransformerConfig& config() const { return config_; }
  [[nodiscard]] const TensorParallelGroup& group() const { return group_; }

  TensorParallelTransformer model{nullptr};
  ColumnParallelLinear lm_head{nullptr};  //!< null when tie_word_embeddings

 private:
  TensorParallelGroup group_;
  models::TransformerConfig config_;
  std::vector<TensorParallelParameter> layout_;
  std::vector<at::Tensor> locals_;  // this rank's parameter for each layout_ entry
};
TORCH_MODULE(TensorParallelCausalLM);

}  // namespace verl::dist
