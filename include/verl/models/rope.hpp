#pragma once
//! \file
//! Rotary position embeddings as transformers 5.23.0 computes them (modeling_rope_utils.py and the
//! LlamaRotaryEmbedding family): inverse frequencies for rope_type "default", "linear", "dynamic" and
//! "llama3", the (B,T,D) cos/sin tables for given position ids, and their application to q and k. The
//! arithmetic is the same sequence of tensor operations in float32 as transformers', so the tables agree bit
//! for bit. apply_rope runs one fused pass for float32 CPU tensors (detail/fused_layer_kernels.hpp), with the
//! same bits.

#include "verl/core/errors.hpp"
#include "verl/models/config.hpp"
#include "verl/models/detail/fused_layer_kernels.hpp"

#include <ATen/TensorOperators.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/arange.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/pow.h>
#include <ATen/ops/reciprocal.h>
#include <ATen/ops/scalar_tensor.h>
#include <ATen/ops/where.h>

#include <cmath>
#include <cstdint>
#include <numbers>
#include <utility>

namespace verl::models {

//! The (head_dim/2) float32 inverse frequencies of `config.rope` for a forward pass whose largest position
//! id is `seq_len - 1`. Only "dynamic" depends on `seq_len`: past `max_position_embeddings` its base grows
//! as base * (factor * seq_len / max_pos - (factor - 1))^(d/(d-2)), computed in float32 tensors as
//! transformers does; up to it, the frequencies are the default ones.
//!
//! Difference from transformers, "dynamic" only: its rotary module remembers the largest length seen and
//! keeps those frequencies for later calls that are shorter but still past max_position_embeddings; here
//! every call uses its own length (the same for any single forward and for KV-cached generation, where the
//! length grows).
[[nodiscard]] inline at::Tensor rope_inv_freq(const TransformerConfig& config, std::int64_t seq_len = 0) {
  const auto& rope = config.rope;
  const std::int64_t dim = config.head_dim;
  const auto exponents = at::arange(0, dim, 2, at::TensorOptions().dtype(at::kLong)).to(at::kFloat) / dim;  // (D/2)
  if (rope.type == RopeType::dynamic && seq_len > config.max_position_embeddings) {
    // transformers' growth branch receives seq_len as an int64 tensor, so the base is a float32 tensor.
    const auto len = at::scalar_tensor(seq_len, at::TensorOptions().dtype(at::kLong));
    const auto base = ((len * rope.factor) / config.max_position_embeddings - (rope.factor - 1.0))
                          .pow(static_cast<double>(dim) / static_cast<double>(dim - 2)) *
                      rope.theta;                                         // () float32
    return at::reciprocal(at::pow(base, exponents));                      // (D/2)
  }
  auto inv_freq = at::reciprocal(at::pow(rope.theta, exponents));  // (D/2): 1 / theta^(2i/d)
  switch (rope.type) {
    case RopeType::standard:
    case RopeType::dynamic: return inv_freq;
    case RopeType::linear: return inv_freq / rope.factor;
    case RopeType::llama3: {
      const std::int64_t old_context_len = rope.original_max_position_embeddings;
      const double low_freq_wavelen = static_cast<double>(old_context_len) / rope.low_freq_factor;
      const double high_freq_wavelen = static_cast<double>(old_context_len) / rope.high_freq_factor;
      const auto wavelen = at::reciprocal(inv_freq) * (2.0 * std::numbers::pi);              // (D/2)
      // Long wavelengths are divided by factor, short ones kept, the band between interpolated.
      const auto scaled = at::where(wavelen > low_freq_wavelen, inv_freq / rope.factor, inv_freq);  // (D/2)
      const auto smooth = (at::reciprocal(wavelen) * old_context_len - rope.low_freq_factor) /
                          (rope.high_freq_factor - rope.low_freq_factor);                   // (D/2)
      const auto smoothed = (1.0 - smooth) * scaled / rope.factor + smooth * scaled;         // (D/2)
      const auto medium = (wavelen < high_freq_wavelen).logical_not() & (wavelen > low_freq_wavelen).logical_not();
      return at::where(medium, smoothed, scaled);
    }
  }
  return inv_freq;
}

//! cos and sin tables (B,T,head_dim) in `dtype` for `position_ids` (B,T): freqs = pos * inv_freq in float32,
//! duplicated along the last dimension (transformers' `cat((freqs, freqs))` layout).
[[nodiscard]] inline std::pair<at::Tensor, at::Tensor> rope_cos_sin(const TransformerConfig& config,
                                                                    const at::Tensor& position_ids,
                                                                    at::ScalarType dtype) {
  std::int64_t seq_len = 0;
  if (config.rope.type == RopeType::dynamic && position_ids.numel() > 0) {
    seq_len = position_ids.max().item<std::int64_t>() + 1;
  }
  const auto inv_freq = rope_inv_freq(config, seq_len).to(position_ids.device());  // (D/2)
  const auto freqs = position_ids.unsqueeze(-1).to(at::kFloat) * inv_freq;            // (B,T,D/2)
  const auto emb = at::cat({freqs, freqs}, -1);                                       // (B,T,D)
  return {emb.cos().to(dtype), emb.sin().to(dtype)};
}

//! x * cos + rotate_half(x) * sin for x (B,H,T,D) and cos/sin (B,T,D); rotate_half(x) = cat(-x2, x1).
[[nodiscard]] inline at::Tensor apply_rope(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  if (auto y = detail::fused_rope(x, cos, sin); y.defined()) return y;  // float32 on the CPU, one pass
  const auto half = x.size(-1) / 2;
  const auto rotated = at::cat({x.narrow(-1, half, half).neg(), x.narrow(-1, 0, half)}, -1);  // (B,H,T,D)
  return x * cos.unsqueeze(1) + rotated * sin.unsqueeze(1);
}

}  // namespace verl::models
