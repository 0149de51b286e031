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
#include "verl/algos/fused_cpu.hpp"
#include "verl/core/fast_exp.hpp"

#include <ATen/TensorOperators.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/cat_ops.h>
#include <ATen/ops/empty.h>
#include <c10/core/GradMode.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
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

namespace detail {

//! Entropy of one row z[0..v) of float32 logits: m = max z, s = sum exp(z - m), q = sum exp(z - m) (z - m),
//! H = log s - q / s. Loops that vectorise (8-lane GCC/Clang vectors for the max and the sums, the vectorisable
//! exp_nonpositive of verl/core/fast_exp.hpp); `buf` holds 2 * kEntropyBlock floats.
inline constexpr std::int64_t kEntropyBlock = 1024;

[[gnu::always_inline]] inline float entropy_row(const float* z, std::int64_t v, float* buf) {
  // The maximum in 8 lanes of a GCC/Clang vector (a scalar max reduction does not vectorise without
  // -ffast-math). `a < b ? b : a` ignores a NaN logit here; the NaN still reaches the sums below.
  using f32x8 = float __attribute__((vector_size(32)));
  constexpr float kNegInf = -std::numeric_limits<float>::infinity();
  f32x8 mv = {kNegInf, kNegInf, kNegInf, kNegInf, kNegInf, kNegInf, kNegInf, kNegInf};
  std::int64_t j = 0;
  for (; j + 8 <= v; j += 8) {
    f32x8 zv;
    std::memcpy(&zv, z + j, sizeof zv);
    mv = mv < zv ? zv : mv;
  }
  float m = kNegInf;
  for (int k = 0; k < 8; ++k) m = m < mv[k] ? mv[k] : m;
  for (; j < v; ++j) m = m < z[j] ? z[j] : m;
  // Sums per block in 8 float lanes, blocks added in double (the float error stays that of ~128 additions).
  const auto block_sum = [](const float* a, std::int64_t n) {
    f32x8 acc = {};
    std::int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
      f32x8 av;
      std::memcpy(&av, a + i, sizeof av);
      acc += av;
    }
    float t = ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]));
    for (; i < n; ++i) t += a[i];
    return static_cast<double>(t);
  };
  double s = 0, q = 0;
  float* e = buf;
  float* ex = buf + kEntropyBlock;
  for (std::int64_t j0 = 0; j0 < v; j0 += kEntropyBlock) {
    const std::int64_t n = std::min(kEntropyBlock, v - j0);
    for (std::int64_t i = 0; i < n; ++i) {
      const float x = z[j0 + i] - m;  // <= 0 (NaN for a NaN logit or an infinite maximum: NaN results, as verl)
      const float p = verl::detail::exp_nonpositive(x);
      e[i] = p;
      ex[i] = p * x;  // 0 * -inf = NaN for a -inf logit, as verl's softmax(z) * z
    }
    s += block_sum(e, n);
    q += block_sum(ex, n);
  }
  return std::log(static_cast<float>(s)) - static_cast<float>(q / s);
}

//! Per-row entropy of float32 CPU logits (..., V) in one fused pass per row (no (..., V) temporary), by
//! entropy_row: verl's logsumexp(z) - sum(softmax(z) z) rearranged so that the maximum cancels exactly; it agrees with verl's float32 operation sequence to float32 rounding, not bit for bit.
//! Undefined when it does not apply (another dtype or device, empty, or autograd wanting a gradient).
inline at::Tensor entropy_rows_fused_cpu(const at::Tensor& logits) {
  if (!logits.defined() || !logits.is_cpu() || logits.scalar_type() != at::kFloat || logits.dim() < 1 ||
      logits.numel() == 0 || (c10::GradMode::is_enabled() && logits.requires_grad())) {
    return {};
  }
  const auto x = logits.contiguous();                                  // (..., V)
  const std::int64_t v = x.size(-1);
  const std::int64_t n = x.numel() / v;
  at::Tensor entropy = at::empty(x.sizes().slice(0, x.dim() - 1), x.options());  // (...)
  const float* xp = x.data_ptr<float>();
  float* ep = entropy.data_ptr<float>();
  parallel_rows_simd(n, v, [=](std::int64_t r0, std::int64_t r1) VERL_DETAIL_SIMD_BODY {
    std::vector<float> buf(static_cast<std::size_t>(2 * kEntropyBlock));
    for (std::int64_t r = r0; r < r1; ++r) ep[r] = entropy_row(xp + r * v, v, buf.data());
  });
  return entropy;
}

}  // namespace detail

//! Entropy bonus term: agg_loss(entropy_from_logits(logits), response_mask, loss_agg_mode) (verl 0.7.1,
//! core_algos.py `compute_entropy_loss`; no global-batch info, as verl). With `chunk_size` > 0 the entropy is
//! computed by entropy_from_logits_with_chunking (float32) instead (not in verl).
//! Deliberate difference: for float32 CPU logits when no gradient is wanted (the entropy as a metric, as verl
//! computes it under no_grad when entropy_coeff is 0) the per-token entropy comes from one fused pass per row
//! (detail::entropy_rows_fused_cpu, no (B,R,V) temporaries, chunk_size then irrelevant): equal to verl's up to
//! float32 rounding, not bit for bit (docs/algorithms.md). With autograd, or other dtypes/devices, it is verl's operation sequence.
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
  verl::detail::check<ConfigError>(chunk_size >= 0, owner, ": chunk_size is ", chunk_size,
                                   ", expected > 0 (chunked) or 0 (unchunked)");
  at::Tensor token_entropy = detail::entropy_rows_fused_cpu(logits);  // (B,R), or undefined
  if (!token_entropy.defined()) {
    token_entropy =
        chunk_size > 0 ? entropy_from_logits_with_chunking(logits, chunk_size) : entropy_from_logits(logits);  // (B,R)
  }
  return agg_loss(token_entropy, response_mask, loss_agg_mode);
}

//! compute_entropy_loss with verl's spelling of the mode. \throws verl::ConfigError for an unknown one.
[[nodiscard]] inline at::Tensor compute_entropy_loss(const at::Tensor& logits, const at::Tensor& response_mask,
                                                     std::string_view loss_agg_mode, std::int64_t chunk_size = 0) {
  return compute_entropy_loss(logits, response_mask, parse_loss_agg_mode(loss_agg_mode), chunk_size);
}

}  // namespace verl::core_algos
