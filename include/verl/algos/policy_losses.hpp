#pragma once
//! \file
//! Policy losses, verl::core_algos::compute_policy_loss_*: verl's registered `policy_loss.loss_mode`s
//! "vanilla" (PPO clip, asymmetric clip ratios, dual-clip), "gspo", "sapo", "gpg", "clip_cov", "kl_cov",
//! "geo_mean" (GMPO) and "cispo", with the metrics verl logs; plus the typed policies verl::losses::VanillaPPO,
//! GSPO, SAPO, GPG, ClipCov, KLCov, GeoMean and CISPO that satisfy verl::PolicyLoss.
//!
//! Reference: verl 0.7.1 (PyPI), verl/trainer/ppo/core_algos.py. The loss functions below are textually the
//! same in verl 0.7.0; what changed in 0.7.1 is agg_loss, which they call (see loss_agg.hpp).
//!
//! Every kernel mirrors verl's sequence of tensor operations, so on any device and dtype it reproduces verl's
//! element-wise values bit for bit and its reductions up to summation order. compute_policy_loss_vanilla also
//! has a fused single-pass CPU kernel (detail::vanilla_fused_cpu), used for contiguous CPU float32/float64
//! inputs; it reproduces the values to rounding (double accumulators) and the gradient exactly as autograd
//! would differentiate verl's expression.

#include "verl/algos/loss_agg.hpp"  // first: brings the Tensor operators functional.hpp needs
#include "verl/algos/functional.hpp"
#include "verl/concepts/policy_loss.hpp"
#include "verl/core/algo_io.hpp"
#include "verl/core/errors.hpp"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <ATen/TensorOperators.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty_like_ops.h>
#include <ATen/ops/ones_like_ops.h>
#include <ATen/ops/randperm_ops.h>
#include <ATen/ops/scalar_tensor_ops.h>
#include <ATen/ops/where_ops.h>
#include <ATen/ops/zeros_like_ops.h>
#include <c10/core/GradMode.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace verl::core_algos {

//! verl's `PolicyLossConfig` (verl/workers/config/actor.py, 0.7.1): the sub-config of the Clip-Cov and KL-Cov
//! losses. Defaults are the config defaults.
struct PolicyLossConfig {
  std::string loss_mode = "vanilla";  //!< which loss (informational here; the typed policies pick the kernel)
  double clip_cov_ratio = 0.0002;     //!< Clip-Cov: fraction of valid tokens whose gradient is cut
  double clip_cov_lb = 1.0;           //!< Clip-Cov: covariance lower bound (exclusive) of a candidate
  double clip_cov_ub = 5.0;           //!< Clip-Cov: covariance upper bound (exclusive) of a candidate
  double kl_cov_ratio = 0.0002;       //!< KL-Cov: fraction of valid tokens given the |log-ratio| penalty
  double ppo_kl_coef = 0.1;           //!< KL-Cov: coefficient of that penalty
  //! Clip-Cov picks min(k, candidates) of its candidates with torch.randperm (verl draws from the global RNG);
  //! here the permutation comes from a CPU generator seeded with this value, so the choice is deterministic
  //! and equals verl's after `torch.manual_seed(clip_cov_seed)` (same LibTorch). Not a verl field.
  std::uint64_t clip_cov_seed = 0;
};

//! The fields of verl's `ActorConfig` (verl/workers/config/actor.py, 0.7.1) that the policy losses read.
struct ActorConfig {
  double clip_ratio = 0.2;                      //!< symmetric clip range epsilon
  std::optional<double> clip_ratio_low = 0.2;   //!< lower clip range; clip_ratio when empty
  std::optional<double> clip_ratio_high = 0.2;  //!< upper clip range (DAPO's clip-higher); clip_ratio when empty
  double clip_ratio_c = 3.0;                    //!< dual-clip bound for negative advantages, > 1
  double tau_pos = 1.0;                         //!< SAPO gate temperature for positive advantages
  double tau_neg = 1.05;                        //!< SAPO gate temperature for non-positive advantages
  PolicyLossConfig policy_loss{};
  GlobalBatchInfo global_batch_info{};          //!< forwarded to agg_loss

  [[nodiscard]] double low() const { return clip_ratio_low.value_or(clip_ratio); }
  [[nodiscard]] double high() const { return clip_ratio_high.value_or(clip_ratio); }
};

namespace detail {

inline void check_policy_inputs(const at::Tensor& old_log_prob, const at::Tensor& log_prob,
                                const at::Tensor& advantages, const at::Tensor& response_mask,
                                const std::optional<at::Tensor>& rollout_is_weights, std::string_view owner) {
  verl::detail::check_br(log_prob, owner, "log_prob");
  verl::detail::check_like(old_log_prob, log_prob, owner, "old_log_prob", "log_prob");
  verl::detail::check_like(advantages, log_prob, owner, "advantages", "log_prob");
  verl::detail::check_like(response_mask, log_prob, owner, "response_mask", "log_prob");
  if (rollout_is_weights) verl::detail::check_like(*rollout_is_weights, log_prob, owner, "rollout_is_weights", "log_prob");
}

//! A 0-d float32 zero on `like`'s device: verl's `torch.tensor(0.0, device=...)` placeholder metrics.
inline at::Tensor zero_metric(const at::Tensor& like) {
  return at::_ops::scalar_tensor::call(0.0, at::kFloat, std::nullopt, like.device(), std::nullopt);
}

template <class T>
struct VanillaRowStats {
  double loss = 0, count = 0, kl = 0, clip = 0, lower = 0;
};

//! One fused pass of compute_policy_loss_vanilla over contiguous CPU data. Returns std::nullopt (the caller
//! falls back to the generic kernel) when an input is not finite, where verl's clamps would matter.
template <class T, class M>
std::optional<PolicyLossOutput> vanilla_fused_cpu_typed(const at::Tensor& olp_t, const at::Tensor& lp_t,
                                                        const at::Tensor& adv_t, const at::Tensor& mask_t,
                                                        LossAggMode mode, const ActorConfig& cfg,
                                                        const at::Tensor& w_t, bool need_grad) {
  const std::int64_t B = lp_t.size(0), R = lp_t.size(1);
  const T* olp = olp_t.data_ptr<T>();
  const T* lp = lp_t.data_ptr<T>();
  const T* adv = adv_t.data_ptr<T>();
  const M* mask = mask_t.data_ptr<M>();
  const T* w = w_t.defined() ? w_t.data_ptr<T>() : nullptr;
  // Clip bounds as verl computes them: Python doubles, cast to T by torch.clamp / the scalar multiply.
  const T lo = static_cast<T>(1.0 - cfg.low()), hi = static_cast<T>(1.0 + cfg.high());
  const T c = static_cast<T>(cfg.clip_ratio_c);
  at::Tensor coef;
  T* g = nullptr;
  if (need_grad) {
    coef = at::_ops::empty_like::call(lp_t.detach(), std::nullopt, std::nullopt, std::nullopt, std::nullopt, std::nullopt);
    g = coef.mutable_data_ptr<T>();
  }
  std::vector<VanillaRowStats<T>> rows(static_cast<std::size_t>(B));
  std::vector<char> bad(static_cast<std::size_t>(B), 0);
  at::parallel_for(0, B, 16, [&](std::int64_t b0, std::int64_t b1) {
    for (std::int64_t b = b0; b < b1; ++b) {
      VanillaRowStats<T> s;
      const std::int64_t off = b * R;
      for (std::int64_t t = 0; t < R; ++t) {
        const std::int64_t i = off + t;
        const T d = lp[i] - olp[i];
        if (!std::isfinite(d) || !std::isfinite(adv[i])) { bad[b] = 1; break; }
        const T nak = std::clamp(d, T(-20), T(20));
        const T r = std::exp(nak);
        const T na = -adv[i];
        const T l1 = na * r;
        const T l2 = na * std::clamp(r, lo, hi);
        const T c1 = std::max(l1, l2);
        const T l3 = na * c;
        const bool negative = adv[i] < T(0);
        T pg = c1;
        // d(pg)/d(log_prob) by autograd's rules for clamp (inclusive bounds), maximum/minimum (ties split).
        T dc1 = (l2 > l1) ? T(0) : na * r;
        if (negative) {
          pg = std::min(l3, c1);
          dc1 = (c1 < l3) ? dc1 : (c1 == l3 ? dc1 * T(0.5) : T(0));
        }
        if (d < T(-20) || d > T(20)) dc1 = T(0);
        if (w) { pg *= w[i]; dc1 *= w[i]; }
        const double m = static_cast<double>(mask[i]);
        if (g) g[i] = static_cast<T>(dc1 * static_cast<T>(m));
        if (m == 0.0) continue;
        s.loss += static_cast<double>(pg) * m;
        s.count += m;
        s.kl += -static_cast<double>(nak) * m;
        s.clip += (l2 > l1) ? m : 0.0;
        s.lower += (c1 > l3 && negative) ? m : 0.0;
      }
      rows[static_cast<std::size_t>(b)] = s;
    }
  });
  for (char x : bad) {
    if (x) return std::nullopt;
  }
  // `count + 1e-8` as verl evaluates it: in the mask's dtype when floating, else in float32 (int64 + 1e-8).
  using C = std::conditional_t<std::is_floating_point_v<M>, M, float>;
  const auto plus_eps = [](double n) { return static_cast<double>(static_cast<C>(n) + static_cast<C>(1e-8)); };
  // Row reductions in a fixed order: deterministic for any thread count.
  double loss_sum = 0, count = 0, kl = 0, clip = 0, lower = 0, seq_count = 0, seq_mean_sum = 0;
  std::vector<double> row_scale(static_cast<std::size_t>(B), 0.0);
  for (std::int64_t b = 0; b < B; ++b) {
    const auto& s = rows[static_cast<std::size_t>(b)];
    loss_sum += s.loss; count += s.count; kl += s.kl; clip += s.clip; lower += s.lower;
    if (s.count > 0) { seq_count += 1; seq_mean_sum += s.loss / plus_eps(s.count); }
  }
  const auto& info = cfg.global_batch_info;
  const double dp = static_cast<double>(info.dp_size);
  double loss = 0;
  const char* missing = nullptr;
  switch (mode) {
    case LossAggMode::token_mean: {
      if (!info.batch_num_tokens && info.dp_size > 1) { missing = "batch_num_tokens"; break; }
      const double n = info.batch_num_tokens.value_or(count);
      loss = loss_sum / n * dp;
      std::fill(row_scale.begin(), row_scale.end(), dp / n);
      break;
    }
    case LossAggMode::seq_mean_token_sum:
    case LossAggMode::seq_mean_token_sum_norm:
    case LossAggMode::seq_mean_token_mean: {
      if (!info.global_batch_size && info.dp_size > 1) { missing = "global_batch_size"; break; }
      const double s = info.global_batch_size.value_or(seq_count);
      const double f = mode == LossAggMode::seq_mean_token_sum_norm
                           ? info.loss_scale_factor.value_or(static_cast<double>(R)) : 1.0;
      loss = (mode == LossAggMode::seq_mean_token_mean ? seq_mean_sum : loss_sum) / s * dp / f;
      for (std::int64_t b = 0; b < B; ++b) {
        const double n = rows[static_cast<std::size_t>(b)].count;
        row_scale[static_cast<std::size_t>(b)] =
            n > 0 ? (mode == LossAggMode::seq_mean_token_mean ? 1.0 / plus_eps(n) : 1.0) * dp / s / f : 0.0;
      }
      break;
    }
  }
  verl::detail::check<ConfigError>(missing == nullptr, "verl::core_algos::agg_loss: \"", to_string(mode),
                                   "\" with dp_size = ", info.dp_size, " needs the global `",
                                   missing ? missing : "", "` in GlobalBatchInfo");
  const auto dtype = lp_t.scalar_type();
  const auto metric_dtype = mask_t.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  auto scalar = [&](double v, at::ScalarType dt) {
    return at::_ops::scalar_tensor::call(v, dt, std::nullopt, lp_t.device(), std::nullopt);
  };
  PolicyLossOutput out;
  out.ppo_kl = scalar(kl / plus_eps(count), dtype);
  out.pg_clipfrac = scalar(clip / plus_eps(count), metric_dtype);
  out.pg_clipfrac_lower = scalar(lower / plus_eps(count), metric_dtype);
  out.loss = scalar(loss, dtype);
  if (need_grad) {
    // Straight-through attachment: the value is exactly `loss` (lp - lp.detach() is 0 for finite lp) and the
    // gradient w.r.t. log_prob is coef, the autograd gradient of verl's expression.
    at::parallel_for(0, B, 64, [&](std::int64_t b0, std::int64_t b1) {
      for (std::int64_t b = b0; b < b1; ++b) {
        const T scale = static_cast<T>(row_scale[static_cast<std::size_t>(b)]);
        for (std::int64_t t = 0; t < R; ++t) g[b * R + t] *= scale;
      }
    });
    out.loss = out.loss + (coef * (lp_t - lp_t.detach())).sum();  // () value unchanged, d/d log_prob = coef
  }
  return out;
}

//! Generic vanilla PPO kernel: verl's operations one by one (any device/dtype; exact element-wise parity).
inline PolicyLossOutput vanilla_generic(const at::Tensor& old_log_prob, const at::Tensor& log_prob,
                                        const at::Tensor& advantages, const at::Tensor& response_mask,
                                        LossAggMode loss_agg_mode, const ActorConfig& config,
                                        const std::optional<at::Tensor>& rollout_is_weights) {
  const auto negative_approx_kl = (log_prob - old_log_prob).clamp(-20.0, 20.0);      // (B,R)
  const auto ratio = negative_approx_kl.exp();                                        // (B,R)
  const auto ppo_kl = functional::masked_mean(-negative_approx_kl, response_mask);    // ()
  const auto neg_adv = -advantages;                                                   // (B,R)
  const auto pg_losses1 = neg_adv * ratio;                                            // (B,R)
  const auto pg_losses2 = neg_adv * ratio.clamp(1.0 - config.low(), 1.0 + config.high());  // (B,R)
  const auto clip_pg_losses1 = pg_losses1.maximum(pg_losses2);                        // (B,R)
  const auto pg_clipfrac = functional::masked_mean(pg_losses2.gt(pg_losses1).to(at::kFloat), response_mask);  // ()
  const auto pg_losses3 = neg_adv * config.clip_ratio_c;                              // (B,R)
  const auto clip_pg_losses2 = pg_losses3.minimum(clip_pg_losses1);                   // (B,R)
  const auto negative = advantages.lt(0);                                             // (B,R) bool
  const auto pg_clipfrac_lower =
      functional::masked_mean(clip_pg_losses1.gt(pg_losses3) * negative.to(at::kFloat), response_mask);  // ()
  auto pg_losses = at::_ops::where_self::call(negative, clip_pg_losses2, clip_pg_losses1);  // (B,R)
  if (rollout_is_weights) pg_losses = pg_losses * *rollout_is_weights;
  PolicyLossOutput out;
  out.loss = agg_loss(pg_losses, response_mask, loss_agg_mode, config.global_batch_info);
  out.pg_clipfrac = pg_clipfrac.detach();
  out.ppo_kl = ppo_kl.detach();
  out.pg_clipfrac_lower = pg_clipfrac_lower.detach();
  return out;
}

//! The fused CPU kernel when the inputs allow it (contiguous CPU float32/float64 of one dtype, mask bool or of
//! int64 or of that dtype, no gradient wanted on old_log_prob/advantages, finite inputs); std::nullopt otherwise.
inline std::optional<PolicyLossOutput> vanilla_fused_cpu(const at::Tensor& old_log_prob, const at::Tensor& log_prob,
                                                         const at::Tensor& advantages, const at::Tensor& response_mask,
                                                         LossAggMode loss_agg_mode, const ActorConfig& config,
                                                         const std::optional<at::Tensor>& rollout_is_weights) {
  const auto dt = log_prob.scalar_type();
  if (dt != at::kFloat && dt != at::kDouble) return std::nullopt;
  const auto all_cpu = log_prob.is_cpu() && old_log_prob.is_cpu() && advantages.is_cpu() && response_mask.is_cpu() &&
                       (!rollout_is_weights || rollout_is_weights->is_cpu());
  if (!all_cpu || old_log_prob.scalar_type() != dt || advantages.scalar_type() != dt) return std::nullopt;
  if (rollout_is_weights && rollout_is_weights->scalar_type() != dt) return std::nullopt;
  const auto mt = response_mask.scalar_type();
  if (mt != at::kBool && mt != at::kLong && mt != dt) return std::nullopt;
  const bool grad_mode = c10::GradMode::is_enabled();
  if (grad_mode && (old_log_prob.requires_grad() || advantages.requires_grad() ||
                    (rollout_is_weights && rollout_is_weights->requires_grad()) || response_mask.requires_grad())) {
    return std::nullopt;
  }
  const bool need_grad = grad_mode && log_prob.requires_grad();
  // log_prob keeps its autograd history (contiguous() is the identity or a differentiable copy): the kernel
  // reads its data and attaches the gradient to it.
  const auto lp = log_prob.contiguous();
  const auto olp = old_log_prob.detach().contiguous();
  const auto adv = advantages.detach().contiguous(), mask = response_mask.detach().contiguous();
  const auto w = rollout_is_weights ? rollout_is_weights->detach().contiguous() : at::Tensor{};
  const auto run = [&]<class T>(T) -> std::optional<PolicyLossOutput> {
    if (mt == at::kBool) return vanilla_fused_cpu_typed<T, bool>(olp, lp, adv, mask, loss_agg_mode, config, w, need_grad);
    if (mt == at::kLong) {
      return vanilla_fused_cpu_typed<T, std::int64_t>(olp, lp, adv, mask, loss_agg_mode, config, w, need_grad);
    }
    return vanilla_fused_cpu_typed<T, T>(olp, lp, adv, mask, loss_agg_mode, config, w, need_grad);
  };
  return dt == at::kFloat ? run(float{}) : run(double{});
}

}  // namespace detail

//! Vanilla PPO clip loss with asymmetric clip ratios and dual-clip (verl 0.7.1,
//! verl/trainer/ppo/core_algos.py `compute_policy_loss_vanilla`, loss_mode "vanilla"; same code in 0.7.0).
//!
//! r = exp(clamp(log_prob - old_log_prob, -20, 20));
//! L1 = max(-A r, -A clip(r, 1 - clip_ratio_low, 1 + clip_ratio_high));
//! L = min(-A clip_ratio_c, L1) where A < 0, else L1; (times rollout_is_weights); loss = agg_loss(L).
//! Metrics: pg_clipfrac = masked mean of [clipped term > unclipped]; ppo_kl = masked mean of
//! -(clamped log-ratio); pg_clipfrac_lower = masked mean of [A < 0 and L1 > -A clip_ratio_c].
//! \throws verl::ConfigError unless clip_ratio_c > 1 (verl asserts); verl::ShapeError on shape mismatch.
[[nodiscard]] inline PolicyLossOutput compute_policy_loss_vanilla(
    const at::Tensor& old_log_prob, const at::Tensor& log_prob, const at::Tensor& advantages,
    const at::Tensor& response_mask, LossAggMode loss_agg_mode = LossAggMode::token_mean,
    const ActorConfig& config = {}, const std::optional<at::Tensor>& rollout_is_weights = std::nullopt) {
  constexpr std::string_view owner = "verl::core_algos::compute_policy_loss_vanilla";
  detail::check_policy_inputs(old_log_prob, log_prob, advantages, response_mask, rollout_is_weights, owner);
  verl::detail::check<ConfigError>(config.clip_ratio_c > 1.0, owner, ": clip_ratio_c is ", config.clip_ratio_c,
                                   ", the dual-clip lower bound must be greater than 1.0");
  if (auto fused = detail::vanilla_fused_cpu(old_log_prob, log_prob, advantages, response_mask, loss_agg_mode,
                                             config, rollout_is_weights)) {
    return *std::move(fused);
  }
  return detail::vanilla_generic(old_log_prob, log_prob, advantages, response_mask, loss_agg_mode, config,
                                 rollout_is_weights);
}

//! GSPO, sequence-level importance ratio (verl 0.7.1, core_algos.py `compute_policy_loss_gspo`, loss_mode
//! "gspo"; same code in 0.7.0).
//!
//! s_b = exp(mean over valid t of (log_prob - old_log_prob)) per sequence (length clamped to >= 1), used as
//! s_{b,t} = exp(min(sg[log s_b] + log_prob - sg[log_prob], 10)) so the gradient is the token's; then the
//! PPO clip max(-A s, -A clip(s, 1 - low, 1 + high)), ALWAYS aggregated "seq-mean-token-mean" (verl ignores
//! `loss_agg_mode` here). Metrics: pg_clipfrac; ppo_kl (unclamped log-ratio); pg_clipfrac_lower = 0.
[[nodiscard]] inline PolicyLossOutput compute_policy_loss_gspo(
    const at::Tensor& old_log_prob, const at::Tensor& log_prob, const at::Tensor& advantages,
    const at::Tensor& response_mask, LossAggMode loss_agg_mode = LossAggMode::seq_mean_token_mean,
    const ActorConfig& config = {}, const std::optional<at::Tensor>& rollout_is_weights = std::nullopt) {
  (void)loss_agg_mode;  // verl forces seq-mean-token-mean
  detail::check_policy_inputs(old_log_prob, log_prob, advantages, response_mask, rollout_is_weights,
                              "verl::core_algos::compute_policy_loss_gspo");
  const auto negative_approx_kl = log_prob - old_log_prob;                               // (B,R)
  const auto seq_lengths = response_mask.sum(-1).clamp_min(1);                           // (B,)
  const auto negative_approx_kl_seq = (negative_approx_kl * response_mask).sum(-1) / seq_lengths;  // (B,)
  const auto log_seq_ratio =
      (log_prob - log_prob.detach() + negative_approx_kl_seq.detach().unsqueeze(-1)).clamp_max(10.0);  // (B,R)
  const auto seq_ratio = log_seq_ratio.exp();                                            // (B,R)
  const auto neg_adv = -advantages;                                                      // (B,R)
  const auto pg_losses1 = neg_adv * seq_ratio;                                           // (B,R)
  const auto pg_losses2 = neg_adv * seq_ratio.clamp(1.0 - config.low(), 1.0 + config.high());  // (B,R)
  auto pg_losses = pg_losses1.maximum(pg_losses2);                                       // (B,R)
  if (rollout_is_weights) pg_losses = pg_losses * *rollout_is_weights;
  PolicyLossOutput out;
  out.loss = agg_loss(pg_losses, response_mask, LossAggMode::seq_mean_token_mean, config.global_batch_info);
  out.pg_clipfrac = functional::masked_mean(pg_losses2.gt(pg_losses1).to(at::kFloat), response_mask).detach();
  out.pg_clipfrac_lower = detail::zero_metric(out.loss);
  out.ppo_kl = functional::masked_mean(-negative_approx_kl, response_mask).detach();
  return out;
}

//! SAPO, soft adaptive gate instead of a hard clip (verl 0.7.1, core_algos.py `compute_policy_loss_sapo`,
//! loss_mode "sapo"; same code in 0.7.0).
//!
//! r = exp(clamp(log_prob - old_log_prob, -20, 20)); tau = tau_pos where A > 0 else tau_neg (in A's dtype);
//! gate = sigmoid(tau (r - 1)) * 4 / tau; L = -gate A, ALWAYS aggregated "seq-mean-token-mean".
//! Metrics: ppo_kl; pg_clipfrac = pg_clipfrac_lower = 0 (float32 zeros, as verl).
[[nodiscard]] inline PolicyLossOutput compute_policy_loss_sapo(
    const at::Tensor& old_log_prob, const at::Tensor& log_prob, const at::Tensor& advantages,
    const at::Tensor& response_mask, LossAggMode loss_agg_mode = LossAggMode::seq_mean_token_mean,
    const ActorConfig& config = {}, const std::optional<at::Tensor>& rollout_is_weights = std::nullopt) {
  (void)loss_agg_mode;  // verl forces seq-mean-token-mean
  detail::check_policy_inputs(old_log_prob, log_prob, advantages, response_mask, rollout_is_weights,
                              "verl::core_algos::compute_policy_loss_sapo");
  const auto scalar = [&](double v) {
    return at::_ops::scalar_tensor::call(v, advantages.scalar_type(), std::nullopt, advantages.device(), std::nullopt);
  };
  const auto negative_approx_kl = (log_prob - old_log_prob).clamp(-20.0, 20.0);           // (B,R)
  const auto ratio = negative_approx_kl.exp();                                            // (B,R)
  const auto taus = at::_ops::where_self::call(advantages.gt(0), scalar(config.tau_pos), scalar(config.tau_neg));  // (B,R)
  // Python's `4.0 / taus` is Tensor.__rdiv__: taus.reciprocal() * 4.0 (the rounding differs from a division).
  const auto gates = (taus * (ratio - 1.0)).sigmoid() * (taus.reciprocal() * 4.0);       // (B,R)
  auto pg_losses = -gates * advantages;                                                   // (B,R)
  if (rollout_is_weights) pg_losses = pg_losses * *rollout_is_weights;
  PolicyLossOutput out;
  out.loss = agg_loss(pg_losses, response_mask, LossAggMode::seq_mean_token_mean, config.global_batch_info);
  out.pg_clipfrac = detail::zero_metric(out.loss);
  out.pg_clipfrac_lower = detail::zero_metric(out.loss);
  out.ppo_kl = functional::masked_mean(-negative_approx_kl, response_mask).detach();
  return out;
}

//! GPG, plain policy gradient -log_prob * A (verl 0.7.1, core_algos.py `compute_policy_loss_gpg`, loss_mode
//! "gpg"; same code in 0.7.0). old_log_prob is unused; verl reports no metrics, so all metric tensors stay
//! undefined.
[[nodiscard]] inline PolicyLossOutput compute_policy_loss_gpg(
    const at::Tensor& old_log_prob, const at::Tensor& log_prob, const at::Tensor& advantages,
    const at::Tensor& response_mask, LossAggMode loss_agg_mode = LossAggMode::token_mean,
    const ActorConfig& config = {}, const std::optional<at::Tensor>& rollout_is_weights = std::nullopt) {
  detail::check_policy_inputs(old_log_prob, log_prob, advantages, response_mask, rollout_is_weights,
                              "verl::core_algos::compute_policy_loss_gpg");
  auto pg_losses = -log_prob * advantages;  // (B,R)
  if (rollout_is_weights) pg_losses = pg_losses * *rollout_is_weights;
  PolicyLossOutput out;
  out.loss = agg_loss(pg_losses, response_mask, loss_agg_mode, config.global_batch_info);
  return out;
}

//! Clip-Cov (verl 0.7.1, core_algos.py `compute_policy_loss_clip_cov`, loss_mode "clip_cov"; same in 0.7.0).
//!
//! r = exp(log_prob - old_log_prob) (no clamp); cov = (A - mean_m A) (log_prob - mean_m sg[log_prob]);
//! candidates: valid tokens not already clipped by the PPO clip with clip_cov_lb < cov < clip_cov_ub;
//! k = max(floor(clip_cov_ratio * mask.sum()), 1); min(k, #candidates) of them, chosen by a random
//! permutation of the candidates (row-major order), get their loss multiplied by 0 (gradient cut);
//! L = max(-A r, -A clip(r, ...)) * corr. When #candidates <= k verl's choice is deterministic (all of them);
//! otherwise verl uses the global RNG and this port a generator seeded with policy_loss.clip_cov_seed
//! (equal to verl after torch.manual_seed(clip_cov_seed)).
//! Metrics: pg_clipfrac = masked mean of [corr == 0]; ppo_kl. pg_clipfrac_lower is not reported (undefined).
//! \throws verl::ConfigError unless clip_cov_ratio > 0.
[[nodiscard]] inline PolicyLossOutput compute_policy_loss_clip_cov(
    const at::Tensor& old_log_prob, const at::Tensor& log_prob, const at::Tensor& advantages,
    const at::Tensor& response_mask, LossAggMode loss_agg_mode = LossAggMode::token_mean,
    const ActorConfig& config = {}, const std::optional<at::Tensor>& rollout_is_weights = std::nullopt) {
  constexpr std::string_view owner = "verl::core_algos::compute_policy_loss_clip_cov";
  detail::check_policy_inputs(old_log_prob, log_prob, advantages, response_mask, rollout_is_weights, owner);
  const auto& pl = config.policy_loss;
  verl::detail::check<ConfigError>(pl.clip_cov_ratio > 0, owner, ": clip_cov_ratio is ", pl.clip_cov_ratio,
                                   ", expected a value larger than 0");
  const auto negative_approx_kl = log_prob - old_log_prob;                              // (B,R)
  const auto ratio = negative_approx_kl.exp();                                          // (B,R)
  const auto ppo_kl = functional::masked_mean(-negative_approx_kl, response_mask);      // ()
  const auto neg_adv = -advantages;                                                     // (B,R)
  const auto pg_losses1 = neg_adv * ratio;                                              // (B,R)
  auto corr = at::_ops::ones_like::call(advantages, std::nullopt, std::nullopt, std::nullopt, std::nullopt,
                                        std::nullopt);                                  // (B,R)
  const auto pg_losses2 = neg_adv * ratio.clamp(1.0 - config.low(), 1.0 + config.high());  // (B,R)
  const auto valid = response_mask.gt(0);                                               // (B,R) bool
  const auto clip_by_origin = pg_losses2.gt(pg_losses1).logical_and(valid);             // (B,R) bool
  auto cov_all = ((advantages - functional::masked_mean(advantages, response_mask)) *
                  (log_prob - functional::masked_mean(log_prob.detach(), response_mask))).detach();  // (B,R)
  const double neg_inf = -std::numeric_limits<double>::infinity();
  cov_all = cov_all.masked_fill(response_mask.eq(0), neg_inf).masked_fill(clip_by_origin, neg_inf);
  const auto clip_num =
      std::max<std::int64_t>(static_cast<std::int64_t>(pl.clip_cov_ratio * response_mask.sum().item<double>()), 1);
  auto top_k_idx = cov_all.lt(pl.clip_cov_ub).logical_and(cov_all.gt(pl.clip_cov_lb)).logical_and(valid).nonzero();  // (K,2)
  const std::int64_t candidates = top_k_idx.size(0);
  if (candidates > 0) {
    auto gen = at::make_generator<at::CPUGeneratorImpl>(pl.clip_cov_seed);
    const auto perm = at::_ops::randperm_generator::call(candidates, gen, at::kLong, std::nullopt, at::kCPU,
                                                         std::nullopt);                 // (K,)
    top_k_idx = top_k_idx.index_select(0, perm.slice(0, 0, std::min(clip_num, candidates)).to(top_k_idx.device()));
    const auto linear = top_k_idx.select(1, 0) * advantages.size(1) + top_k_idx.select(1, 1);  // (k,)
    corr = corr.reshape(-1).index_fill(0, linear, 0.0).reshape(advantages.sizes());   // (B,R)
  }
  auto pg_losses = pg_losses1.maximum(pg_losses2) * corr;                              // (B,R)
  if (rollout_is_weights) pg_losses = pg_losses * *rollout_is_weights;
  PolicyLossOutput out;
  out.loss = agg_loss(pg_losses, response_mask, loss_agg_mode, config.global_batch_info);
  out.pg_clipfrac = functional::masked_mean(corr.eq(0).to(at::kFloat), response_mask).detach();
  out.ppo_kl = ppo_kl.detach();
  return out;
}

//! KL-Cov (verl 0.7.1, core_algos.py `compute_policy_loss_kl_cov`, loss_mode "kl_cov"; same in 0.7.0).
//!
//! r = exp(log_prob - old_log_prob) (no clamp); L = -A r, except on the k = max(1, floor(n * kl_cov_ratio))
//! valid tokens (n valid tokens) with the largest cov = (A - mean A)(log_prob - mean log_prob) (means over the
//! valid tokens, detached; torch.topk, deterministic) where L = -A r + ppo_kl_coef |log_prob - old_log_prob|.
//! No clipping. Metrics: ppo_kl = masked mean of |log-ratio| (as verl); the clip fractions are undefined.
//! \throws verl::ConfigError unless kl_cov_ratio > 0.
[[nodiscard]] inline PolicyLossOutput compute_policy_loss_kl_cov(
    const at::Tensor& old_log_prob, const at::Tensor& log_prob, const at::Tensor& advantages,
    const at::Tensor& response_mask, LossAggMode loss_agg_mode = LossAggMode::token_mean,
    const ActorConfig& config = {}, const std::optional<at::Tensor>& rollout_is_weights = std::nullopt) {
  constexpr std::string_view owner = "verl::core_algos::compute_policy_loss_kl_cov";
  detail::check_policy_inputs(old_log_prob, log_prob, advantages, response_mask, rollout_is_weights, owner);
  const auto& pl = config.policy_loss;
  verl::detail::check<ConfigError>(pl.kl_cov_ratio > 0, owner, ": kl_cov_ratio is ", pl.kl_cov_ratio,
                                   ", expected a value larger than 0");
  const auto negative_approx_kl = log_prob - old_log_prob;                              // (B,R)
  const auto abs_kl = negative_approx_kl.abs();                                         // (B,R)
  const auto ratio = negative_approx_kl.exp();                                          // (B,R)
  const auto ppo_kl_abs = functional::masked_mean(abs_kl, response_mask);               // ()
  const auto neg_adv = -advantages;                                                     // (B,R)
  const auto pg_losses1 = neg_adv * ratio;                                              // (B,R)
  const auto pg_losses_kl = neg_adv * ratio + abs_kl * pl.ppo_kl_coef;                  // (B,R)
  const auto valid = response_mask.gt(0);                                               // (B,R) bool
  const auto valid_idx = valid.reshape(-1).nonzero().squeeze(-1);                       // (n,)
  const std::int64_t n = valid_idx.size(0);
  auto pg_losses = pg_losses1;                                                          // (B,R)
  if (n > 0) {
    const auto valid_adv = advantages.detach().masked_select(valid).cpu();        // (n,)
    const auto valid_logp = log_prob.detach().masked_select(valid).cpu();         // (n,)
    const auto cov = (valid_adv - valid_adv.mean()) * (valid_logp - valid_logp.mean()); // (n,)
    const auto k = std::max<std::int64_t>(1, static_cast<std::int64_t>(static_cast<double>(n) * pl.kl_cov_ratio));
    const auto large = std::get<1>(cov.topk(k, -1, /*largest=*/true));                 // (k,)
    const auto flat = valid_idx.index_select(0, large.to(valid_idx.device()));          // (k,)
    const auto mask_flat = at::_ops::zeros_like::call(valid.reshape(-1), std::nullopt, std::nullopt, std::nullopt,
                                                      std::nullopt, std::nullopt)
                               .index_fill(0, flat, true)
                               .reshape(valid.sizes());                                  // (B,R) bool
    pg_losses = at::_ops::where_self::call(mask_flat, pg_losses_kl, pg_losses1);        // (B,R)
  }
  if (rollout_is_weights) pg_losses = pg_losses * *rollout_is_weights;
  PolicyLossOutput out;
  out.loss = agg_loss(pg_losses, response_mask, loss_agg_mode, config.global_batch_info);
  out.ppo_kl = ppo_kl_abs.detach();
  return out;
}

//! GMPO, geometric-mean policy optimisation (verl 0.7.1, core_algos.py `compute_policy_loss_geo_mean`,
//! loss_mode "geo_mean"; same in 0.7.0).
//!
//! d = log_prob - old_log_prob (no clamp); d' = sgn(A) min(sgn(A) d, sgn(A) clamp(d, -low, high));
//! per sequence ratio_b = exp(sum_t m d' / (n_b + 1e-8)), advantage_b = sum_t m A / (n_b + 1e-8);
//! loss = mean over ALL rows of -advantage_b ratio_b (loss_agg_mode ignored, as verl; fully masked rows count
//! with 0). rollout_is_weights enter as their per-sequence geometric mean exp(mean_m log(w + 1e-10)).
//! Metrics: pg_clipfrac = masked mean of [d clamped and A > 0]; pg_clipfrac_lower the same with A < 0; ppo_kl.
[[nodiscard]] inline PolicyLossOutput compute_policy_loss_geo_mean(
    const at::Tensor& old_log_prob, const at::Tensor& log_prob, const at::Tensor& advantages,
    const at::Tensor& response_mask, LossAggMode loss_agg_mode = LossAggMode::token_mean,
    const ActorConfig& config = {}, const std::optional<at::Tensor>& rollout_is_weights = std::nullopt) {
  (void)loss_agg_mode;  // not used by verl
  detail::check_policy_inputs(old_log_prob, log_prob, advantages, response_mask, rollout_is_weights,
                              "verl::core_algos::compute_policy_loss_geo_mean");
  const auto negative_approx_kl = log_prob - old_log_prob;                               // (B,R)
  const auto ppo_kl = functional::masked_mean(-negative_approx_kl, response_mask);       // ()
  const auto sgn = advantages.sign();                                                    // (B,R)
  const auto nak_clamp = negative_approx_kl.clamp(-config.low(), config.high());         // (B,R)
  const auto nak_min = sgn * (sgn * negative_approx_kl).minimum(sgn * nak_clamp);        // (B,R)
  const auto mask_sum = response_mask.sum(-1);                                           // (B,)
  const auto ratio = ((nak_min * response_mask).sum(-1) / (mask_sum + 1e-8)).exp();      // (B,)
  const auto advantage = (advantages * response_mask).sum(-1) / (mask_sum + 1e-8);       // (B,)
  auto pg_losses = -advantage * ratio;                                                   // (B,)
  if (rollout_is_weights) {
    const auto seq_w = (((*rollout_is_weights + 1e-10).log() * response_mask).sum(-1) / (mask_sum + 1e-8)).exp();  // (B,)
    pg_losses = pg_losses * seq_w;
  }
  const auto clipped = negative_approx_kl.ne(nak_clamp);                                 // (B,R) bool
  PolicyLossOutput out;
  out.loss = pg_losses.mean();
  out.pg_clipfrac = functional::masked_mean((clipped * advantages.gt(0)).to(at::kFloat), response_mask).detach();
  out.pg_clipfrac_lower = functional::masked_mean((clipped * advantages.lt(0)).to(at::kFloat), response_mask).detach();
  out.ppo_kl = ppo_kl.detach();
  return out;
}

//! CISPO, clipped importance-sampling weight as a constant factor (verl 0.7.1, core_algos.py
//! `compute_policy_loss_cispo`, loss_mode "cispo"; same in 0.7.0).
//!
//! r = exp(clamp(log_prob - old_log_prob, -20, 20)); L = -sg[clip(r, 1 - low, 1 + high)] A log_prob, so the
//! gradient is -sg[clip(r)] A per token. Metrics: pg_clipfrac = masked mean of [r != clip(r)]; ppo_kl;
//! pg_clipfrac_lower = 0.
[[nodiscard]] inline PolicyLossOutput compute_policy_loss_cispo(
    const at::Tensor& old_log_prob, const at::Tensor& log_prob, const at::Tensor& advantages,
    const at::Tensor& response_mask, LossAggMode loss_agg_mode = LossAggMode::token_mean,
    const ActorConfig& config = {}, const std::optional<at::Tensor>& rollout_is_weights = std::nullopt) {
  detail::check_policy_inputs(old_log_prob, log_prob, advantages, response_mask, rollout_is_weights,
                              "verl::core_algos::compute_policy_loss_cispo");
  const auto negative_approx_kl = (log_prob - old_log_prob).clamp(-20.0, 20.0);         // (B,R)
  const auto ratio = negative_approx_kl.exp();                                          // (B,R)
  const auto ppo_kl = functional::masked_mean(-negative_approx_kl, response_mask);      // ()
  const auto clipped_ratio = ratio.clamp(1.0 - config.low(), 1.0 + config.high());      // (B,R)
  auto pg_losses = -clipped_ratio.detach() * advantages * log_prob;                     // (B,R)
  const auto pg_clipfrac = functional::masked_mean(ratio.ne(clipped_ratio).to(at::kFloat), response_mask);  // ()
  if (rollout_is_weights) pg_losses = pg_losses * *rollout_is_weights;
  PolicyLossOutput out;
  out.loss = agg_loss(pg_losses, response_mask, loss_agg_mode, config.global_batch_info);
  out.pg_clipfrac = pg_clipfrac.detach();
  out.pg_clipfrac_lower = detail::zero_metric(out.loss);
  out.ppo_kl = ppo_kl.detach();
  return out;
}

}  // namespace verl::core_algos

namespace verl::losses {

namespace detail {
//! The ActorConfig a typed policy passes to its kernel: the clip settings from the inputs, the rest from it.
inline core_algos::ActorConfig actor_config(const PolicyLossInputs& in, core_algos::ActorConfig base) {
  base.clip_ratio_low = in.clip_ratio_low;
  base.clip_ratio_high = in.clip_ratio_high;
  base.clip_ratio_c = in.clip_ratio_c;
  return base;
}
}  // namespace detail

//! Defines a typed policy `Type` named `loss_name` that calls core_algos::`kernel` with the inputs' tensors,
//! loss_agg_mode and clip settings, and the remaining ActorConfig fields of its member `config`.
#define VERL_DETAIL_POLICY_LOSS(Type, loss_name, kernel)                                                        \
  struct Type {                                                                                                 \
    static constexpr std::string_view name = loss_name;                                                         \
    core_algos::ActorConfig config{}; /*!< tau_*, policy_loss sub-config, global_batch_info */                 \
    [[nodiscard]] PolicyLossOutput compute(const PolicyLossInputs& in) const {                                  \
      in.validate();                                                                                            \
      return core_algos::kernel(in.old_log_prob, in.log_prob, in.advantages, in.response_mask, in.loss_agg_mode, \
                                detail::actor_config(in, config));                                              \
    }                                                                                                           \
  }

//! verl's "vanilla" PPO clip (core_algos::compute_policy_loss_vanilla).
VERL_DETAIL_POLICY_LOSS(VanillaPPO, "vanilla", compute_policy_loss_vanilla);
//! verl's "gspo" (core_algos::compute_policy_loss_gspo).
VERL_DETAIL_POLICY_LOSS(GSPO, "gspo", compute_policy_loss_gspo);
//! verl's "sapo" (core_algos::compute_policy_loss_sapo); set config.tau_pos / tau_neg.
VERL_DETAIL_POLICY_LOSS(SAPO, "sapo", compute_policy_loss_sapo);
//! verl's "gpg" (core_algos::compute_policy_loss_gpg).
VERL_DETAIL_POLICY_LOSS(GPG, "gpg", compute_policy_loss_gpg);
//! verl's "clip_cov" (core_algos::compute_policy_loss_clip_cov); set config.policy_loss.clip_cov_*.
VERL_DETAIL_POLICY_LOSS(ClipCov, "clip_cov", compute_policy_loss_clip_cov);
//! verl's "kl_cov" (core_algos::compute_policy_loss_kl_cov); set config.policy_loss.kl_cov_ratio, ppo_kl_coef.
VERL_DETAIL_POLICY_LOSS(KLCov, "kl_cov", compute_policy_loss_kl_cov);
//! verl's "geo_mean", GMPO (core_algos::compute_policy_loss_geo_mean).
VERL_DETAIL_POLICY_LOSS(GeoMean, "geo_mean", compute_policy_loss_geo_mean);
//! verl's "cispo" (core_algos::compute_policy_loss_cispo).
VERL_DETAIL_POLICY_LOSS(CISPO, "cispo", compute_policy_loss_cispo);

#undef VERL_DETAIL_POLICY_LOSS

static_assert(check_policy_loss<VanillaPPO>() && PolicyLoss<VanillaPPO>);
static_assert(check_policy_loss<GSPO>() && PolicyLoss<GSPO>);
static_assert(check_policy_loss<SAPO>() && PolicyLoss<SAPO>);
static_assert(check_policy_loss<GPG>() && PolicyLoss<GPG>);
static_assert(check_policy_loss<ClipCov>() && PolicyLoss<ClipCov>);
static_assert(check_policy_loss<KLCov>() && PolicyLoss<KLCov>);
static_assert(check_policy_loss<GeoMean>() && PolicyLoss<GeoMean>);
static_assert(check_policy_loss<CISPO>() && PolicyLoss<CISPO>);

}  // namespace verl::losses
