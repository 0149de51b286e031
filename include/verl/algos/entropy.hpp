#pragma once
//! \file
//! Entropy of categorical distributions given by logits, verl::core_algos: entropy_from_logits,
//! entropy_from_logits_with_chunking (row chunks: the softmax temporary is (chunk, V), not (N, V)) and the
//! entropy bonus compute_entropy_loss.
//!
//! Reference: verl 0.7.1 (PyPI): verl/utils/torch_functional.py `entropy_from_logits`,
//! `entropy_from_logits_with_chunking`; verl/trainer/ppo/core_algos.py `compute_entropy_loss`. Identical in
//! 0.7.0.

#include "verl/algos/loss_agg.hpp"
#include "verl/core/algo_io.hpp"
#include "verl/core/errors.hpp"

#include <ATen/TensorOperators.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/cat_ops.h>

#include <cstdint>
#include <string_view>
#include <vector>

namespace verl::core_algos {

//! Shannon entropy per distribution: logsumexp(logits) - sum(softmax(logits) * logits) over the last dimension
//! (verl 0.7.1, torch_functional.py `entropy_from_logits`). \param logits (..., V) floating; returns (...),
//! same dtype, differentiable.
[[nodiscard]] inline at::Tensor entropy_from_logits(const at::Tensor& logits) {
  verl::detail::check<ShapeError>(logits.defined() && logits.dim() >= 1,
                                  "verl::core_algos::entropy_from_logits: `logits` must be a defined (..., V) tensor");
  const auto pd = logits.softmax(-1);                                     // (..., V)
  return logits.logsumexp({-1}) - (pd * logits).sum(-1);                  // (...)
}

//! entropy_from_logits over chunks of `chunk_size` rows (verl 0.7.1, torch_functional.py
//! `entropy_from_logits_with_chunking`): peak temporary memory is O(chunk_size * V) whatever the number of rows.
//! As verl, each chunk is computed in float32 and the result is float32 (verl allocates
//! torch.zeros(N) in the default dtype). Unlike verl, which takes (N, V) only, leading dimensions are flattened
//! and restored: \param logits (..., V); returns (...) float32, differentiable.
//! \throws verl::ConfigError unless chunk_size > 0.
[[nodiscard]] inline at::Tensor entropy_from_logits_with_chunking(const at::Tensor& logits,
                                                                  std::int64_t chunk_size = 2048) {
  constexpr std::string_view owner = "verl::core_algos::entropy_from_logits_with_chunking";
  verl::detail::check<ShapeError>(logits.defined() && logits.dim() >= 1, owner,
                                  ": `logits` must be a defined (..., V) tensor");
  verl::detail::check<ConfigError>(chunk_size > 0, owner, ": chunk_size is ", chunk_size, ", expected > 0");
  const auto lead = logits.sizes().slice(0, logits.dim() - 1);
  const auto flat = logits.reshape({-1, logits.size(-1)});               // (N, V)
  const std::int64_t n = flat.size(0);
  std::vector<at::Tensor> parts;
  parts.reserve(static_cast<std::size_t>((n + chunk_size - 1) / chunk_size));
  for (std::int64_t i = 0; i < n; i += chunk_size) {
    const auto chunk = flat.slice(0, i, std::min(n, i + chunk_size)).to(at::kFloat);  // (c, V) float32
    const auto pd = chunk.softmax(-1);                                    // (c, V)
    parts.push_back(chunk.logsumexp({-1}) - (pd * chunk).sum(-1));        // (c,)
  }
  if (parts.empty()) return flat.new_zeros({0}, flat.options().dtype(at::kFloat)).reshape(lead);
  return at::_ops::cat::call(parts, 0).reshape(lead);                     // (...)
}

//! Entropy bonus term: agg_loss(entropy_from_logits(logits), response_mask, loss_agg_mode) (verl 0.7.1,
//! core_algos.py `compute_entropy_loss`; no global-batch info, as verl). With `chunk_size` > 0 the entropy is
//! computed by entropy_from_logits_with_chunking (float32) instead (not in verl).
//! \param logits (B,R,V); \param response_mask (B,R).
[[nodiscard]] inline at::Tensor compute_entropy_loss(const at::Tensor& logits, const at::Tensor& response_mask,
                                                     LossAggMode loss_agg_mode = LossAggMode::token_mean,
                                                     std::int64_t chunk_size = 0) {
  constexpr std::string_view owner = "verl::core_algos::compute_entropy_loss";
  verl::detail::check<ShapeError>(logits.defined() && logits.dim() == 3, owner, ": `logits` has ",
                                  logits.defined() ? logits.dim() : 0, " dimensions, expected 3 (B,R,V)");
  verl::detail::check<ShapeError>(response_mask.defined() && response_mask.sizes() == logits.sizes().slice(0, 2),
                                  owner, ": `response_mask` has shape ",
                                  response_mask.defined() ? response_mask.sizes() : at::IntArrayRef{},
                                  ", expected ", logits.sizes().slice(0, 2), " (B,R of `logits`)");
  const auto token_entropy =
      chunk_size > 0 ? entropy_from_logits_with_chunking(logits, chunk_size) : entropy_from_logits(logits);  // (B,R)
  return agg_loss(token_entropy, response_mask, loss_agg_mode);
}

//! compute_entropy_loss with verl's spelling of the mode. \throws verl::ConfigError for an unknown one.
[[nodiscard]] inline at::Tensor compute_entropy_loss(const at::Tensor& logits, const at::Tensor& response_mask,
                                                     std::string_view loss_agg_mode, std::int64_t chunk_size = 0) {
  return compute_entropy_loss(logits, response_mask, parse_loss_agg_mode(loss_agg_mode), chunk_size);
}

}  // namespace verl::core_algos
