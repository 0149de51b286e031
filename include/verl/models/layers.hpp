#pragma once
//! \file
//! The blocks of a Llama-family decoder layer, as torch::nn modules whose parameter names are Hugging Face's
//! (`self_attn.q_proj.weight`, `mlp.gate_proj.weight`, `input_layernorm.weight`, ...): RMSNorm, grouped-query
//! attention with RoPE (optional q/k/v/o biases, optional per-head q/k RMSNorm), the SwiGLU MLP, and the
//! pre-norm residual layer. Semantics follow transformers 5.23.0's modeling_llama/mistral/qwen2/qwen3.py.

#include "verl/core/errors.hpp"
#include "verl/models/config.hpp"
#include "verl/models/detail/fused_layer_kernels.hpp"
#include "verl/models/detail/short_attention.hpp"
#include "verl/models/kv_cache.hpp"
#include "verl/models/rope.hpp"

#include <ATen/core/Tensor.h>
#include <ATen/ops/arange.h>
#include <ATen/ops/ones.h>
#include <ATen/ops/rsqrt.h>
#include <ATen/ops/scaled_dot_product_attention.h>
#include <ATen/ops/silu.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

#include <cmath>
#include <optional>
#include <cstdint>

namespace verl::models {

//! y = weight * (x / sqrt(mean(x^2) + eps)), the normalisation computed in float32 and cast back to x's
//! dtype before the weight multiplies it (transformers' LlamaRMSNorm). Float32 CPU inputs take one fused
//! kernel with the same forward bits and one backward node (detail/fused_layer_kernels.hpp).
class RMSNormImpl : public torch::nn::Module {
 public:
  RMSNormImpl(std::int64_t dim, double eps) : eps_(eps) {
    weight = register_parameter("weight", at::ones({dim}));
  }

  //! x (..., dim) -> (..., dim)
  at::Tensor forward(const at::Tensor& x) {
    if (auto y = detail::fused_rms_norm(x, weight, eps_); y.defined()) return y;  // float32 on the CPU
    const auto xf = x.to(at::kFloat);                          // (...,dim)
    const auto variance = xf.pow(2).mean(-1, /*keepdim=*/true);  // (...,1)
    return weight * (xf * at::rsqrt(variance + eps_)).to(x.scalar_type());
  }

  [[nodiscard]] double eps() const { return eps_; }

  at::Tensor weight;  // (dim)

 private:
  double eps_;
};
TORCH_MODULE(RMSNorm);

//! Multi-head attention with grouped key/value heads, RoPE, and an explicit boolean mask, through
//! at::scaled_dot_product_attention. Parameters: q_proj, k_proj, v_proj, o_proj (+ q_norm, k_norm on
//! Qwen3).
class AttentionImpl : public torch::nn::Module {
 public:
  AttentionImpl(const TransformerConfig& c, std::int64_t layer_idx)
      : layer_idx_(layer_idx), heads_(c.num_attention_heads), kv_heads_(c.num_key_value_heads), head_dim_(c.head_dim) {
    const bool qkv_bias = c.attention_bias || c.qkv_bias;
    using torch::nn::LinearOptions;
    q_proj = register_module("q_proj", torch::nn::Linear(LinearOptions(c.hidden_size, heads_ * head_dim_).bias(qkv_bias)));
    k_proj = register_module("k_proj", torch::nn::Linear(LinearOptions(c.hidden_size, kv_heads_ * head_dim_).bias(qkv_bias)));
    v_proj = register_module("v_proj", torch::nn::Linear(LinearOptions(c.hidden_size, kv_heads_ * head_dim_).bias(qkv_bias)));
    o_proj = register_module("o_proj",
                             torch::nn::Linear(LinearOptions(heads_ * head_dim_, c.hidden_size).bias(c.attention_bias)));
    if (c.qk_norm) {
      q_norm = register_module("q_norm", RMSNorm(head_dim_, c.rms_norm_eps));
      k_norm = register_module("k_norm", RMSNorm(head_dim_, c.rms_norm_eps));
    }
  }

  //! x (B,T,hidden), cos/sin (B,T,D), mask (B,1,T,L) bool (true = attend), cache (may be null; then L = T)
  //! -> (B,T,hidden)
  at::Tensor forward(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin, const at::Tensor& mask,
                     KVCache* cache = nullptr) {
    const auto b = x.size(0), t = x.size(1);
    auto q = q_proj(x).view({b, t, heads_, head_dim_});     // (B,T,H,D)
    auto k = k_proj(x).view({b, t, kv_heads_, head_dim_});  // (B,T,Hkv,D)
    const auto v = v_proj(x).view({b, t, kv_heads_, head_dim_}).transpose(1, 2);  // (B,Hkv,T,D)
    if (q_norm) {  // Qwen3 normalises each head before RoPE
      q = q_norm(q);
      k = k_norm(k);
    }
    q = apply_rope(q.transpose(1, 2), cos, sin);  // (B,H,T,D)
    k = apply_rope(k.transpose(1, 2), cos, sin);  // (B,Hkv,T,D)
    at::Tensor keys = k, values = v;
    if (cache != nullptr) std::tie(keys, values) = cache->update(layer_idx_, k, v);  // (B,Hkv,L,D)
    const double scale = std::pow(static_cast<double>(head_dim_), -0.5);
    if (cache == nullptr) {  // float32 CPU, short sequences: one kernel, no expanded GQA copies (short_attention.hpp)
      if (auto out = detail::short_attention(q, keys, values, mask, scale); out.defined()) {
        return o_proj(out.transpose(1, 2).reshape({b, t, heads_ * head_dim_}));  // a view: out is (B,T,H,D) inside
      }
    }
    repeat_kv_heads(keys, values);
    // An undefined mask means plain causal attention over T == L columns (no padding, window or cache): SDPA's
    // is_causal path, which lets it pick its fused CPU/GPU kernels, as transformers does for unpadded batches.
    const auto attn_mask = mask.defined() ? std::optional<at::Tensor>(mask) : std::nullopt;
    const auto out = at::scaled_dot_product_attention(q, keys, values, attn_mask, /*dropout_p=*/0.0,
                                                      /*is_causal=*/!mask.defined(),
                                                      scale);  // (B,H,T,D)
    return o_proj(out.transpose(1, 2).reshape({b, t, heads_ * head_dim_}));
  }

  //! The attention output of the query columns [start, start + length) only, no cache: queries, RoPE and
  //! o_proj run on those columns, keys and values on every column. What the last layer needs when only some
  //! columns' final hidden states are used (scoring a response: Actor::log_probs). Same arguments as forward
  //! (mask (B,1,T,T) or undefined for plain causal attention); x (B,T,hidden) -> (B,length,hidden).
  at::Tensor forward_columns(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin, const at::Tensor& mask,
                             std::int64_t start, std::int64_t length) {
    const auto b = x.size(0), t = x.size(1);
    auto q = q_proj(x.narrow(1, start, length)).view({b, length, heads_, head_dim_});  // (B,len,H,D)
    auto k = k_proj(x).view({b, t, kv_heads_, head_dim_});                                // (B,T,Hkv,D)
    auto values = v_proj(x).view({b, t, kv_heads_, head_dim_}).transpose(1, 2);           // (B,Hkv,T,D)
    if (q_norm) {
      q = q_norm(q);
      k = k_norm(k);
    }
    q = apply_rope(q.transpose(1, 2), cos.narrow(1, start, length), sin.narrow(1, start, length));  // (B,H,len,D)
    auto keys = apply_rope(k.transpose(1, 2), cos, sin);                                          // (B,Hkv,T,D)
    repeat_kv_heads(keys, values);
    at::Tensor rows_mask;  // (B or 1,1,len,T) bool
    if (mask.defined()) {
      rows_mask = mask.narrow(2, start, length);
    } else {  // plain causal: query column start + i sees keys 0 .. start + i (SDPA's is_causal aligns top-left)
      const auto opts = at::TensorOptions().dtype(at::kLong).device(x.device());
      rows_mask = (at::arange(t, opts).unsqueeze(0) <= at::arange(start, start + length, opts).unsqueeze(1))
                      .view({1, 1, length, t});
    }
    const double scale = std::pow(static_cast<double>(head_dim_), -0.5);
    const auto out = at::scaled_dot_product_attention(q, keys, values, rows_mask, /*dropout_p=*/0.0,
                                                      /*is_causal=*/false, scale);  // (B,H,len,D)
    return o_proj(out.transpose(1, 2).reshape({b, length, heads_ * head_dim_}));
  }

  torch::nn::Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, o_proj{nullptr};
  RMSNorm q_norm{nullptr}, k_norm{nullptr};

 private:
  //! (B,Hkv,L,D) keys and values -> (B,H,L,D): each key/value head repeated for its group of query heads.
  void repeat_kv_heads(at::Tensor& keys, at::Tensor& values) const {
    const auto groups = heads_ / kv_heads_;
    if (groups == 1) return;
    const auto b = keys.size(0), l = keys.size(2);
    keys = keys.unsqueeze(2).expand({b, kv_heads_, groups, l, head_dim_}).reshape({b, heads_, l, head_dim_});
    values = values.unsqueeze(2).expand({b, kv_heads_, groups, l, head_dim_}).reshape({b, heads_, l, head_dim_});
  }

  std::int64_t layer_idx_, heads_, kv_heads_, head_dim_;
};
TORCH_MODULE(Attention);

//! down_proj(silu(gate_proj(x)) * up_proj(x)), in place when no autograd graph is recorded (the same bits).
class MLPImpl : public torch::nn::Module {
 public:
  explicit MLPImpl(const TransformerConfig& c) {
    using torch::nn::LinearOptions;
    gate_proj = register_module("gate_proj", torch::nn::Linear(LinearOptions(c.hidden_size, c.intermediate_size).bias(c.mlp_bias)));
    up_proj = register_module("up_proj", torch::nn::Linear(LinearOptions(c.hidden_size, c.intermediate_size).bias(c.mlp_bias)));
    down_proj = register_module("down_proj", torch::nn::Linear(LinearOptions(c.intermediate_size, c.hidden_size).bias(c.mlp_bias)));
  }

  //! x (B,T,hidden) -> (B,T,hidden)
  at::Tensor forward(const at::Tensor& x) {
    const bool graph = at::GradMode::is_enabled() &&
                       (x.requires_grad() || gate_proj->weight.requires_grad() || up_proj->weight.requires_grad() ||
                        (gate_proj->bias.defined() && gate_proj->bias.requires_grad()) ||
                        (up_proj->bias.defined() && up_proj->bias.requires_grad()));
    if (graph) return down_proj(at::silu(gate_proj(x)) * up_proj(x));
    // No graph to record (inference, log-probs of the old policy): the same two elementwise kernels, in place,
    // and each (B,T,I) block freed as soon as it is used. On the 0.5B shape at (4,256) the fresh 20 MB blocks
    // of the out-of-place form cost ~470,000 page faults per forward (about 7% of it); in this order glibc
    // reuses the freed blocks and none remain.
    auto gate = gate_proj(x);        // (B,T,I)
    at::silu_(gate);
    gate.mul_(up_proj(x));           // up_proj's output is freed here, before down_proj allocates
    return down_proj(gate);
  }

  torch::nn::Linear gate_proj{nullptr}, up_proj{nullptr}, down_proj{nullptr};
};
TORCH_MODULE(MLP);

//! Pre-norm residual layer: h = x + attn(norm1(x)); y = h + mlp(norm2(h)).
class DecoderLayerImpl : public torch::nn::Module {
 public:
  DecoderLayerImpl(const TransformerConfig& c, std::int64_t layer_idx) {
    self_attn = register_module("self_attn", Attention(c, layer_idx));
    mlp = register_module("mlp", MLP(c));
    input_layernorm = register_module("input_layernorm", RMSNorm(c.hidden_size, c.rms_norm_eps));
    post_attention_layernorm = register_module("post_attention_layernorm", RMSNorm(c.hidden_size, c.rms_norm_eps));
  }

  //! x (B,T,hidden) -> (B,T,hidden); see AttentionImpl::forward for the other arguments.
  at::Tensor forward(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin, const at::Tensor& mask,
                     KVCache* cache = nullptr) {
    const auto h = x + self_attn(input_layernorm(x), cos, sin, mask, cache);  // (B,T,hidden)
    return h + mlp(post_attention_layernorm(h));
  }

  //! The layer's output for columns [start, start + length) only (AttentionImpl::forward_columns): x (B,T,hidden)
  //! -> (B,length,hidden), each column the same computation as in forward.
  at::Tensor forward_columns(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin, const at::Tensor& mask,
                             std::int64_t start, std::int64_t length) {
    const auto h = x.narrow(1, start, length) +
                   self_attn->forward_columns(input_layernorm(x), cos, sin, mask, start, length);  // (B,len,hidden)
    return h + mlp(post_attention_layernorm(h));
  }

  Attention self_attn{nullptr};
  MLP mlp{nullptr};
  RMSNorm input_layernorm{nullptr}, post_attention_layernorm{nullptr};
};
TORCH_MODULE(DecoderLayer);

}  // namespace verl::models
