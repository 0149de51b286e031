#pragma once
//! \file
//! verl::rollout::paged_forward: one engine step of a CausalLM over a flat list of new tokens from many
//! sequences (prefill chunks and decode tokens mixed), with the keys and values in the paged pool.
//!
//! It runs the model's own modules and parameter tensors (no copy: the engine is colocated with the actor's
//! weights): the same embedding, RMSNorms, projections, RoPE tables and SwiGLU MLP as
//! TransformerModel::forward, on an (N,hidden) activation instead of (B,T,hidden), so the GEMMs of all
//! sequences run as one. Only attention differs: each layer writes the new keys/values into the pool at the
//! tokens' slots and attends through paged_attention. Logits are computed only for the rows that are sampled.
//!
//! Difference from the contiguous forward: for rope_type "dynamic" past max_position_embeddings the RoPE base
//! follows the largest position of the step, not of the sequence (transformers' own generate has the same
//! dependence on what else is in the batch).

#include "verl/core/errors.hpp"
#include "verl/models/causal_lm.hpp"
#include "verl/models/rope.hpp"
#include "verl/rollout/decode_linear.hpp"
#include "verl/rollout/kv_pool.hpp"
#include "verl/rollout/paged_attention.hpp"

#include <ATen/core/Tensor.h>
#include <ATen/core/grad_mode.h>
#include <ATen/ops/silu.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

namespace verl::rollout {

//! The flat inputs of one step (all int64 on the model's device unless noted).
struct StepInputs {
  at::Tensor token_ids;    // (N) token of each new row
  at::Tensor positions;    // (N) RoPE position of each new row
  at::Tensor slots;        // (N) pool slot (block * block_size + offset) where each row's key/value goes
  PagedAttentionBatch attention;  // per sequence: block table, context length, query rows (CPU int64)
  at::Tensor sample_rows;  // (S) the rows whose logits are returned, in order
};

//! Runs `lm` over `in` (see the file comment) and returns the float32 logits (S,V) of `in.sample_rows`.
//! No autograd history is recorded.
[[nodiscard]] inline at::Tensor paged_forward(models::CausalLM& lm, KVPool& pool, const StepInputs& in) {
  at::NoGradGuard no_grad;
  auto& backbone = lm->model;
  const auto& config = backbone->config();
  const std::int64_t n = in.token_ids.size(0);
  const std::int64_t heads = config.num_attention_heads, kv_heads = config.num_key_value_heads, d = config.head_dim;
  const double scale = std::pow(static_cast<double>(d), -0.5);

  auto x = backbone->embed_tokens(in.token_ids);  // (N,hidden)
  const auto [cos, sin] = models::rope_cos_sin(config, in.positions.view({1, n}), x.scalar_type());  // (1,N,D)
  const auto rope = [&](const at::Tensor& t) {  // (N,h,D) -> (N,h,D), the model's apply_rope on (1,h,N,D)
    return models::apply_rope(t.transpose(0, 1).unsqueeze(0), cos, sin).squeeze(0).transpose(0, 1);
  };

  // Every projection through decode_linear: the weight streamed once for the few rows of a decode step
  // (at::linear for more rows or other dtypes).
  const auto lin = [](torch::nn::Linear& l, const at::Tensor& t) { return decode_linear(t, l->weight, l->bias); };

  PagedAttentionBatch attention = in.attention;
  const auto& layers = backbone->decoder_layers();
  for (std::size_t i = 0; i < layers.size(); ++i) {
    auto layer = layers[i];
    auto attn = layer->self_attn;
    const auto h = layer->input_layernorm(x);        // (N,hidden)
    auto q = lin(attn->q_proj, h).view({n, heads, d});           // (N,H,D)
    auto k = lin(attn->k_proj, h).view({n, kv_heads, d});        // (N,Hkv,D)
    const auto v = lin(attn->v_proj, h).view({n, kv_heads, d});  // (N,Hkv,D)
    if (attn->q_norm) {  // Qwen3: per-head RMSNorm before RoPE
      q = attn->q_norm(q);
      k = attn->k_norm(k);
    }
    q = rope(q).contiguous();  // (N,H,D)
    k = rope(k).contiguous();  // (N,Hkv,D)
    const auto layer_index = static_cast<std::int64_t>(i);
    write_kv(pool.keys(layer_index), pool.values(layer_index), k, v.contiguous(), in.slots);
    attention.sliding_window = std::max<std::int64_t>(0, config.sliding_windows[i]);
    const auto out = paged_attention(q, pool.keys(layer_index), pool.values(layer_index), attention, scale);  // (N,H,D)
    x = x + lin(attn->o_proj, out.reshape({n, heads * d}));  // (N,hidden)
    const auto g = layer->post_attention_layernorm(x);       // (N,hidden)
    auto& mlp = layer->mlp;
    x = x + lin(mlp->down_proj, at::silu(lin(mlp->gate_proj, g)) * lin(mlp->up_proj, g));  // (N,hidden)
  }
  const auto last = x.index_select(0, in.sample_rows);  // (S,hidden): the final norm is per row
  return decode_linear(backbone->norm(last).contiguous(), lm->lm_head_weight()).to(at::kFloat);  // (S,V)
}

}  // namespace verl::rollout
