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
#include "verl/algos/fused_cpu.hpp"
#include "verl/concepts/policy_loss.hpp"
#include "verl/core/algo_io.hpp"
#include "verl/core/errors.hpp"
#include "verl/core/huge_pages.hpp"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <ATen/TensorOperators.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like_ops.h>
#include <ATen/ops/exp.h>
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

//! Which metric tensor a fused loss reports: not at all (undefined), verl's float32 zero placeholder, or the
//! masked mean of its accumulator.
enum class Metric { none, zero, value };

//! Contiguous CPU views of a policy loss's inputs for the fused kernels; `lp` keeps log_prob's autograd history.
struct FusedPolicyInputs {
  at::Tensor olp, lp, adv, mask, w;  // (B,R) each; w undefined without rollout_is_weights
  bool need_grad = false;
};

//! The inputs of the fused CPU kernels when they apply (CPU float32/float64 of one dtype, mask bool or int64
//! or of that dtype, no gradient wanted on old_log_prob/advantages/weights); std::nullopt otherwise (the
//! caller runs verl's ATen operation sequence: other devices and dtypes, e.g. CUDA).
inline std::optional<FusedPolicyInputs> fused_policy_inputs(const at::Tensor& old_log_prob, const at::Tensor& log_prob,
                                                            const at::Tensor& advantages,
                                                            const at::Tensor& response_mask,
                                                            const std::optional<at::Tensor>& rollout_is_weights) {
  const auto dt = log_prob.scalar_type();
  if (dt != at::kFloat && dt != at::kDouble) return std::nullopt;
  const at::Tensor none;
  if (!all_cpu({&log_prob, &old_log_prob, &advantages, &response_mask, rollout_is_weights ? &*rollout_is_weights : &none}))
    return std::nullopt;
  if (old_log_prob.scalar_type() != dt || advantages.scalar_type() != dt) return std::nullopt;
  if (rollout_is_weights && rollout_is_weights->scalar_type() != dt) return std::nullopt;
  const auto mt = response_mask.scalar_type();
  if (mt != at::kBool && mt != at::kLong && mt != dt) return std::nullopt;
  const bool grad_mode = c10::GradMode::is_enabled();
  if (grad_mode && (old_log_prob.requires_grad() || advantages.requires_grad() ||
                    (rollout_is_weights && rollout_is_weights->requires_grad()) || response_mask.requires_grad())) {
    return std::nullopt;
  }
  FusedPolicyInputs in;
  in.need_grad = grad_mode && log_prob.requires_grad();
  in.lp = log_prob.contiguous();  // the identity or a differentiable copy: the gradient reaches log_prob
  in.olp = old_log_prob.detach().contiguous();
  in.adv = advantages.detach().contiguous();
  in.mask = response_mask.detach().contiguous();
  if (rollout_is_weights) in.w = rollout_is_weights->detach().contiguous();
  return in;
}

//! Calls `f.template operator()<T, M>()` with the value and mask C++ types of fused inputs.
template <class F>
decltype(auto) dispatch_fused(const FusedPolicyInputs& in, F&& f) {
  const auto mt = in.mask.scalar_type();
  const auto run = [&]<class T>(T) -> decltype(auto) {
    if (mt == at::kBool) return f.template operator()<T, bool>();
    if (mt == at::kLong) return f.template operator()<T, std::int64_t>();
    return f.template operator()<T, T>();
  };
  return in.lp.scalar_type() == at::kFloat ? run(float{}) : run(double{});
}

//! The gradient buffer of a fused pass (undefined unless a gradient is wanted).
inline at::Tensor grad_buffer(const FusedPolicyInputs& in) {
  if (!in.need_grad) return {};
  return verl::detail::empty_for_overwrite(in.lp.sizes(), in.lp.options());  // (B,R) (in.lp is contiguous)
}

//! Builds the PolicyLossOutput of a token-level fused loss from its row totals: agg_loss over `mode`, metrics as
//! masked means of the accumulators (ppo_kl in log_prob's dtype, fractions in float32, or float64 for a float64
//! mask, as verl's promotion gives), and the gradient `coef` (unscaled, per token) attached to log_prob.
template <class T, class M>
PolicyLossOutput finish_token_loss(const FusedPolicyInputs& in, const std::vector<RowAcc>& rows, LossAggMode mode,
                                   const GlobalBatchInfo& info, at::Tensor coef, Metric kl, Metric clip,
                                   Metric lower) {
  const std::int64_t B = in.lp.size(0), R = in.lp.size(1);
  const Totals t = totals<M>(rows);
  std::vector<double> row_scale;
  const double loss = aggregate<M>(rows, t, mode, info, R, row_scale);
  const auto dtype = in.lp.scalar_type();
  const auto metric_dtype = in.mask.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  auto scalar = [&](double v, at::ScalarType dt) {
    return at::_ops::scalar_tensor::call(v, dt, std::nullopt, in.lp.device(), std::nullopt);
  };
  const double den = plus_eps<M>(t.count);
  auto metric = [&](Metric which, double sum, at::ScalarType dt) {
    if (which == Metric::none) return at::Tensor{};
    return which == Metric::zero ? scalar(0.0, at::kFloat) : scalar(sum / den, dt);
  };
  PolicyLossOutput out;
  out.loss = scalar(loss, dtype);
  out.ppo_kl = metric(kl, t.kl, dtype);
  out.pg_clipfrac = metric(clip, t.clip, metric_dtype);
  out.pg_clipfrac_lower = metric(lower, t.lower, metric_dtype);
  if (in.need_grad) {
    scale_rows(coef.data_ptr<T>(), B, R, row_scale);
    out.loss = attach_grad(out.loss, coef, in.lp);
  }
  return out;
}

//! A token-level fused loss: `tok(b, i) -> Token<T>` per token (pg and dpg before rollout_is_weights, which
//! token_pass applies), then finish_token_loss. std::nullopt when a
//! token reports a non-finite input (the caller falls back to verl's ATen sequence, whose clamps then matter).
template <class T, class M, class Tok, class Prep = NoPrep>
std::optional<PolicyLossOutput> fused_token_loss(const FusedPolicyInputs& in, LossAggMode mode,
                                                 const GlobalBatchInfo& info, Metric kl, Metric clip, Metric lower,
                                                 const Tok& tok, const Prep& prep = {}) {
  std::vector<RowAcc> rows;
  at::Tensor coef = grad_buffer(in);
  if (!token_pass<T, M>(in.lp.size(0), in.lp.size(1), in.mask.data_ptr<M>(),
                        in.need_grad ? coef.data_ptr<T>() : nullptr, in.w.defined() ? in.w.data_ptr<T>() : nullptr,
                        rows, tok, prep)) {
    return std::nullopt;
  }
  return finish_token_loss<T, M>(in, rows, mode, info, coef, kl, clip, lower);
}

//! Fused vanilla PPO (one pass; see compute_policy_loss_vanilla for the formula).
template <class T, class M>
std::optional<PolicyLossOutput> vanilla_fused(const FusedPolicyInputs& in, LossAggMode mode, const ActorConfig& cfg) {
  const T* olp = in.olp.data_ptr<T>();
  const T* lp = in.lp.data_ptr<T>();
  const T* adv = in.adv.data_ptr<T>();
  // Clip bounds as verl computes them: Python doubles, cast to T by torch.clamp / the scalar multiply.
  const T lo = static_cast<T>(1.0 - cfg.low()), hi = static_cast<T>(1.0 + cfg.high());
  const T c = static_cast<T>(cfg.clip_ratio_c);
  return fused_token_loss<T, M>(in, mode, cfg.global_batch_info, Metric::value, Metric::value, Metric::value,
                                [=](std::int64_t, std::int64_t i, const T* sl, std::int64_t cap) {
    Token<T> k;
    const T d = lp[i] - olp[i];
    k.ok = std::isfinite(d) & std::isfinite(adv[i]);  // a flag, not a return: the loop stays straight-line
    (void)cap;
    // Branch-free (random signs and clip outcomes would mispredict): selections are 0/1 blends, exact for
    // finite values.
    const T nak = min_of(max_of(d, T(-20)), T(20));
    const T r = sl[0];  // exp(nak), ATen's exp (RatioPrep)
    const T na = -adv[i];
    const T l1 = na * r;
    const T l2 = na * min_of(max_of(r, lo), hi);
    const T c1 = max_of(l1, l2);
    const T l3 = na * c;
    const T neg = ind<T>(adv[i] < T(0));
    // d(pg)/d(log_prob) by autograd's rules for clamp (inclusive bounds), maximum/minimum (ties split).
    const T dr = ind<T>((d >= T(-20)) & (d <= T(20))) * r;
    const T dc1 = max_grad(l1, na * dr, l2, ind<T>((r >= lo) & (r <= hi)) * na * dr);
    const T m3 = min_of(l3, c1);
    T pg = c1 * (T(1) - neg) + m3 * neg;
    T dpg = dc1 * (T(1) - neg) + min_grad(l3, T(0), c1, dc1) * neg;
    k.pg = pg;
    k.dpg = dpg;
    k.kl = -nak;
    k.clip = ind<T>(l2 > l1);
    k.lower = ind<T>(c1 > l3) * neg;
    return k;
  }, RatioPrep<T, 1>{lp, olp, adv, T(20)});
}

//! Fused GSPO: a per-row pass for the sequence log-ratio, then one token pass.
template <class T, class M>
std::optional<PolicyLossOutput> gspo_fused(const FusedPolicyInputs& in, const ActorConfig& cfg) {
  const std::int64_t B = in.lp.size(0), R = in.lp.size(1);
  const T* olp = in.olp.data_ptr<T>();
  const T* lp = in.lp.data_ptr<T>();
  const T* adv = in.adv.data_ptr<T>();
  const M* mask = in.mask.data_ptr<M>();
  const T lo = static_cast<T>(1.0 - cfg.low()), hi = static_cast<T>(1.0 + cfg.high());
  std::vector<T> seq_ratio(static_cast<std::size_t>(B)), seq_gate(static_cast<std::size_t>(B));
  std::atomic<bool> bad{false};
  parallel_rows(B, R, [&](std::int64_t b0, std::int64_t b1) {
    for (std::int64_t b = b0; b < b1; ++b) {
      double s = 0, n = 0;
      for (std::int64_t i = b * R, e = i + R; i < e; ++i) {
        const T d = lp[i] - olp[i];
        if (!std::isfinite(d)) bad.store(true, std::memory_order_relaxed);
        s += static_cast<double>(d) * static_cast<double>(mask[i]);
        n += static_cast<double>(mask[i]);
      }
      // verl: (nak * mask).sum(-1) / mask.sum(-1).clamp_min(1); then exp(min(sg + lp - sg[lp], 10)).
      const T nks = static_cast<T>(s / std::max(n, 1.0));
      seq_ratio[static_cast<std::size_t>(b)] = std::exp(std::min(nks, T(10)));
      seq_gate[static_cast<std::size_t>(b)] = nks <= T(10) ? T(1) : T(0);  // clamp_max passes the gradient
    }
  });
  if (bad.load()) return std::nullopt;
  return fused_token_loss<T, M>(in, LossAggMode::seq_mean_token_mean, cfg.global_batch_info, Metric::value,
                                Metric::value, Metric::zero, [&](std::int64_t b, std::int64_t i, const T*, std::int64_t) {
    Token<T> k;
    k.ok = std::isfinite(adv[i]);
    const T s = seq_ratio[static_cast<std::size_t>(b)];
    const T ds = s * seq_gate[static_cast<std::size_t>(b)];
    const T na = -adv[i];
    const T l1 = na * s;
    const T l2 = na * min_of(max_of(s, lo), hi);
    T pg = max_of(l1, l2);
    T dpg = max_grad(l1, na * ds, l2, ind<T>((s >= lo) & (s <= hi)) * na * ds);
    k.pg = pg;
    k.dpg = dpg;
    k.kl = -(lp[i] - olp[i]);
    k.clip = ind<T>(l2 > l1);
    return k;
  });
}

//! Fused SAPO (one pass).
template <class T, class M>
std::optional<PolicyLossOutput> sapo_fused(const FusedPolicyInputs& in, const ActorConfig& cfg) {
  const T* olp = in.olp.data_ptr<T>();
  const T* lp = in.lp.data_ptr<T>();
  const T* adv = in.adv.data_ptr<T>();
  const T tau_pos = static_cast<T>(cfg.tau_pos), tau_neg = static_cast<T>(cfg.tau_neg);
  // verl's `4.0 / taus` is taus.reciprocal() * 4.0.
  const T c_pos = (T(1) / tau_pos) * T(4), c_neg = (T(1) / tau_neg) * T(4);
  return fused_token_loss<T, M>(in, LossAggMode::seq_mean_token_mean, cfg.global_batch_info, Metric::value,
                                Metric::zero, Metric::zero, [=](std::int64_t, std::int64_t i, const T* sl, std::int64_t cap) {
    Token<T> k;
    const T d = lp[i] - olp[i];
    k.ok = std::isfinite(d) & std::isfinite(adv[i]);
    const T nak = min_of(max_of(d, T(-20)), T(20));
    const T r = sl[0];        // exp(nak), ATen's exp
    const T pos = ind<T>(adv[i] > T(0));
    const T tau = tau_pos * pos + tau_neg * (T(1) - pos);  // exact 0/1 blends
    const T cc = c_pos * pos + c_neg * (T(1) - pos);
    const T sig = sl[cap];    // sigmoid(tau (r - 1)), ATen's sigmoid
    const T gate = sig * cc;
    T pg = -gate * adv[i];
    const T dr = ind<T>((d >= T(-20)) & (d <= T(20))) * r;
    T dpg = -adv[i] * (cc * (sig * (T(1) - sig)) * tau * dr);
    k.pg = pg;
    k.dpg = dpg;
    k.kl = -nak;
    return k;
  }, RatioPrep<T, 2>{lp, olp, adv, T(20), tau_pos, tau_neg});
}

//! Fused GPG (one pass).
template <class T, class M>
std::optional<PolicyLossOutput> gpg_fused(const FusedPolicyInputs& in, LossAggMode mode, const ActorConfig& cfg) {
  const T* lp = in.lp.data_ptr<T>();
  const T* adv = in.adv.data_ptr<T>();
  return fused_token_loss<T, M>(in, mode, cfg.global_batch_info, Metric::none, Metric::none, Metric::none,
                                [=](std::int64_t, std::int64_t i, const T*, std::int64_t) {
    Token<T> k;
    k.ok = std::isfinite(lp[i]) & std::isfinite(adv[i]);
    k.pg = -lp[i] * adv[i];
    k.dpg = -adv[i];
    return k;
  });
}

//! Fused CISPO (one pass).
template <class T, class M>
std::optional<PolicyLossOutput> cispo_fused(const FusedPolicyInputs& in, LossAggMode mode, const ActorConfig& cfg) {
  const T* olp = in.olp.data_ptr<T>();
  const T* lp = in.lp.data_ptr<T>();
  const T* adv = in.adv.data_ptr<T>();
  const T lo = static_cast<T>(1.0 - cfg.low()), hi = static_cast<T>(1.0 + cfg.high());
  return fused_token_loss<T, M>(in, mode, cfg.global_batch_info, Metric::value, Metric::value, Metric::zero,
                                [=](std::int64_t, std::int64_t i, const T* sl, std::int64_t cap) {
    Token<T> k;
    const T d = lp[i] - olp[i];
    k.ok = std::isfinite(d) & std::isfinite(adv[i]) & std::isfinite(lp[i]);
    (void)cap;
    const T nak = min_of(max_of(d, T(-20)), T(20));
    const T r = sl[0];  // exp(nak), ATen's exp
    const T cr = min_of(max_of(r, lo), hi);
    k.dpg = -cr * adv[i];
    k.pg = k.dpg * lp[i];
    k.kl = -nak;
    k.clip = ind<T>(differ(r, cr));
    return k;
  }, RatioPrep<T, 1>{lp, olp, adv, T(20)});
}

//! Fused GMPO (geo_mean): per-row sums in one pass, the per-sequence loss, then (for the gradient) one more pass.
template <class T, class M>
std::optional<PolicyLossOutput> geo_mean_fused(const FusedPolicyInputs& in, const ActorConfig& cfg) {
  const std::int64_t B = in.lp.size(0), R = in.lp.size(1);
  const T* olp = in.olp.data_ptr<T>();
  const T* lp = in.lp.data_ptr<T>();
  const T* adv = in.adv.data_ptr<T>();
  const M* mask = in.mask.data_ptr<M>();
  const T* w = in.w.defined() ? in.w.data_ptr<T>() : nullptr;
  const T lo = static_cast<T>(-cfg.low()), hi = static_cast<T>(cfg.high());
  struct Row { double nak_min = 0, adv = 0, logw = 0, n = 0, kl = 0, clip_pos = 0, clip_neg = 0; };
  std::vector<Row> rows(static_cast<std::size_t>(B));
  std::atomic<bool> bad{false};
  // d' = sgn(A) min(sgn(A) d, sgn(A) clamp(d, -low, high)) and its derivative w.r.t. d (autograd's split).
  const auto nak_min = [=](T d, T a, T* dd) {
    const T sgn = ind<T>(a > T(0)) - ind<T>(a < T(0));
    const T dc = std::min(std::max(d, lo), hi);
    const T x = sgn * d, y = sgn * dc;
    if (dd) *dd = sgn * min_grad(x, sgn, y, ind<T>((d >= lo) & (d <= hi)) * sgn);
    return sgn * std::min(x, y);
  };
  parallel_rows(B, R, [&](std::int64_t b0, std::int64_t b1) {
    for (std::int64_t b = b0; b < b1; ++b) {
      Row s;
      for (std::int64_t i = b * R, e = i + R; i < e; ++i) {
        const T d = lp[i] - olp[i];
        if (!std::isfinite(d) || !std::isfinite(adv[i])) { bad.store(true, std::memory_order_relaxed); break; }
        const double m = static_cast<double>(mask[i]);
        s.nak_min += static_cast<double>(nak_min(d, adv[i], nullptr)) * m;
        s.adv += static_cast<double>(adv[i]) * m;
        if (w) s.logw += static_cast<double>(std::log(w[i] + static_cast<T>(1e-10))) * m;
        s.n += m;
        s.kl += -static_cast<double>(d) * m;  // branch-free: m = 0 adds 0 (d is finite)
        const bool clipped = differ(d, std::min(std::max(d, lo), hi));
        s.clip_pos += static_cast<double>(clipped & (adv[i] > T(0))) * m;
        s.clip_neg += static_cast<double>(clipped & (adv[i] < T(0))) * m;
      }
      rows[static_cast<std::size_t>(b)] = s;
    }
  });
  if (bad.load()) return std::nullopt;
  double loss = 0, n = 0, kl = 0, clip_pos = 0, clip_neg = 0;
  std::vector<double> factor(static_cast<std::size_t>(B));  // d loss / d (sum_t m d'_t) per row
  for (std::int64_t b = 0; b < B; ++b) {
    const auto& s = rows[static_cast<std::size_t>(b)];
    const double den = plus_eps<M>(s.n);
    const double ratio = std::exp(s.nak_min / den);
    double pg = -(s.adv / den) * ratio;
    if (w) pg *= std::exp(s.logw / den);
    loss += pg;
    factor[static_cast<std::size_t>(b)] = pg / den / static_cast<double>(B);  // d(-a e^x)/dx = -a e^x
    n += s.n; kl += s.kl; clip_pos += s.clip_pos; clip_neg += s.clip_neg;
  }
  loss /= static_cast<double>(B);
  const auto dtype = in.lp.scalar_type();
  const auto metric_dtype = in.mask.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  auto scalar = [&](double v, at::ScalarType dt) {
    return at::_ops::scalar_tensor::call(v, dt, std::nullopt, in.lp.device(), std::nullopt);
  };
  const double den = plus_eps<M>(n);
  PolicyLossOutput out;
  out.loss = scalar(loss, dtype);
  out.pg_clipfrac = scalar(clip_pos / den, metric_dtype);
  out.pg_clipfrac_lower = scalar(clip_neg / den, metric_dtype);
  out.ppo_kl = scalar(kl / den, dtype);
  if (in.need_grad) {
    at::Tensor coef = grad_buffer(in);  // (B,R)
    T* g = coef.data_ptr<T>();
    parallel_rows(B, R, [&](std::int64_t b0, std::int64_t b1) {
      for (std::int64_t b = b0; b < b1; ++b) {
        const T f = static_cast<T>(factor[static_cast<std::size_t>(b)]);
        for (std::int64_t i = b * R, e = i + R; i < e; ++i) {
          T dd{};
          (void)nak_min(lp[i] - olp[i], adv[i], &dd);
          g[i] = f * dd * static_cast<T>(mask[i]);
        }
      }
    });
    out.loss = attach_grad(out.loss, coef, in.lp);
  }
  return out;
}

//! Fused Clip-Cov with verl's selection semantics exactly: the two masked means are ATen sums of the exact
//! summands (so cov has verl's bits), the ratio is ATen's exp of the same log-ratio tensor (so the PPO-clip
//! exclusion is verl's), the candidates are listed in nonzero()'s row-major order and permuted by the same
//! randperm call; only the final loss/metric reductions are the fused double-accumulator ones.
template <class T, class M>
std::optional<PolicyLossOutput> clip_cov_fused(const FusedPolicyInputs& in, LossAggMode mode, const ActorConfig& cfg) {
  const std::int64_t B = in.lp.size(0), R = in.lp.size(1);
  const T* olp = in.olp.data_ptr<T>();
  const T* lp = in.lp.data_ptr<T>();
  const T* adv = in.adv.data_ptr<T>();
  const M* mask = in.mask.data_ptr<M>();
  const auto& pl = cfg.policy_loss;
  const auto opts = at::TensorOptions().dtype(in.lp.scalar_type());
  // Pass 1: masked_sum summands of advantages and log_prob (rows 0 and 1 of one scratch), log-ratio, count.
  at::Tensor scratch = verl::detail::empty_for_overwrite({2, B * R}, opts);  // (2, B*R)
  at::Tensor ratio = verl::detail::empty_for_overwrite({B, R}, opts);        // (B,R) log-ratio, then exp in place
  T* sa = scratch.data_ptr<T>();
  T* sl = sa + B * R;
  T* rp = ratio.data_ptr<T>();
  std::atomic<std::int64_t> count{0};
  std::atomic<bool> bad{false};
  parallel_rows_simd(B, R, [&](std::int64_t b0, std::int64_t b1) VERL_DETAIL_SIMD_BODY {
    std::int64_t c = 0;
    unsigned nonfinite = 0;
    std::uint64_t wide = 0;
#pragma GCC ivdep
    for (std::int64_t i = b0 * R; i < b1 * R; ++i) {
      nonfinite |= static_cast<unsigned>(!(std::isfinite(lp[i]) & std::isfinite(olp[i]) & std::isfinite(adv[i])));
      const M mv = mask[i];
      const T ms = mask_as<T>(mv, wide);
      sa[i] = select(mv != M(0), adv[i], T(0)) * ms;  // masked_term
      sl[i] = select(mv != M(0), lp[i], T(0)) * ms;
      rp[i] = lp[i] - olp[i];
      if constexpr (!std::is_floating_point_v<M>) c += static_cast<std::int64_t>(mv);
    }
    count.fetch_add(c);
    if ((nonfinite != 0) | (wide != 0)) bad.store(true);
  });
  if (bad.load()) return std::nullopt;
  const at::Tensor mask_sum = mask_total<M>(in.mask, count.load());          // ()
  const T mean_a = scratch.select(0, 0).sum().div(mask_sum.add(1e-8)).template item<T>();
  const T mean_l = scratch.select(0, 1).sum().div(mask_sum.add(1e-8)).template item<T>();
  scratch.reset();
  at::exp_(ratio);  // (B,R) ATen's exp, as verl's torch.exp
  const T lo = static_cast<T>(1.0 - cfg.low()), hi = static_cast<T>(1.0 + cfg.high());
  const T lb = static_cast<T>(pl.clip_cov_lb), ub = static_cast<T>(pl.clip_cov_ub);
  // Pass 2: candidates (valid, not clipped by the PPO clip, lb < cov < ub): a 0/1 flag per token and a count
  // per row; then their flat indices in row-major order (nonzero()'s), compacted without a branch.
  std::vector<std::uint8_t> flag(static_cast<std::size_t>(B * R));
  std::uint8_t* fp = flag.data();
  std::vector<std::int64_t> per_row(static_cast<std::size_t>(B) + 1, 0);
  // By value: the uint8 stores may alias anything, so values read through a by-reference capture would be
  // reloaded on every iteration and the loop would not vectorise.
  parallel_rows_simd(B, R, [=, &per_row](std::int64_t b0, std::int64_t b1) VERL_DETAIL_SIMD_BODY {
    for (std::int64_t b = b0; b < b1; ++b) {
      std::int64_t c = 0;
#pragma GCC ivdep
      for (std::int64_t i = b * R, e = i + R; i < e; ++i) {
        const T na = -adv[i];
        const bool clipped = na * min_of(max_of(rp[i], lo), hi) > na * rp[i];  // clip_by_origin -> cov = -inf
        const T cov = (adv[i] - mean_a) * (lp[i] - mean_l);
        const bool cand = (mask[i] > M(0)) & !clipped & (cov < ub) & (cov > lb);
        const std::uint8_t f = cand ? 1 : 0;
        fp[i] = f;
        c += f;
      }
      per_row[static_cast<std::size_t>(b) + 1] = c;
    }
  });
  for (std::size_t b = 1; b < per_row.size(); ++b) per_row[b] += per_row[b - 1];
  const std::int64_t candidates = per_row.back();
  // Pass 3 reuses the flags: 1 = the token's loss and gradient are cut (corr = 0).
  if (candidates > 0) {
    std::vector<std::int64_t> linear(static_cast<std::size_t>(candidates) + 1);  // +1: the compaction's last write
    parallel_rows(B, R, [&](std::int64_t b0, std::int64_t b1) {
      for (std::int64_t b = b0; b < b1; ++b) {
        auto o = static_cast<std::size_t>(per_row[static_cast<std::size_t>(b)]);
        for (std::int64_t i = b * R, e = i + R; i < e; ++i) {
          linear[o] = i;
          o += fp[i];
        }
      }
    });
    const auto clip_num = std::max<std::int64_t>(static_cast<std::int64_t>(pl.clip_cov_ratio * mask_sum.item<double>()), 1);
    auto gen = at::make_generator<at::CPUGeneratorImpl>(pl.clip_cov_seed);
    const auto perm = at::_ops::randperm_generator::call(candidates, gen, at::kLong, std::nullopt, at::kCPU,
                                                         std::nullopt);  // (K,)
    const std::int64_t* pp = perm.data_ptr<std::int64_t>();
    const std::int64_t take = std::min(clip_num, candidates);
    std::fill(flag.begin(), flag.end(), std::uint8_t{0});
    for (std::int64_t j = 0; j < take; ++j) fp[linear[static_cast<std::size_t>(pp[j])]] = 1;
  } else {
    std::fill(flag.begin(), flag.end(), std::uint8_t{0});
  }
  return fused_token_loss<T, M>(in, mode, cfg.global_batch_info, Metric::value, Metric::value, Metric::none,
                                [=](std::int64_t, std::int64_t i, const T*, std::int64_t) {
    Token<T> k;
    const bool cut = fp[i] != 0;
    k.kl = -(lp[i] - olp[i]);
    const T r = rp[i];
    const T na = -adv[i];
    const T l1 = na * r;
    const T l2 = na * min_of(max_of(r, lo), hi);
    k.pg = select(cut, T(0), max_of(l1, l2));
    k.dpg = select(cut, T(0), max_grad(l1, na * r, l2, ind<T>((r >= lo) & (r <= hi)) * na * r));
    k.clip = ind<T>(cut);
    return k;
  });
}

//! Fused KL-Cov with verl's top-k semantics exactly: the valid advantages and log-probs are compacted in
//! row-major order (masked_select's), their means and the covariance are ATen's / verl's arithmetic on the same
//! values, and torch.topk picks the k tokens; the loss pass is fused.
template <class T, class M>
std::optional<PolicyLossOutput> kl_cov_fused(const FusedPolicyInputs& in, LossAggMode mode, const ActorConfig& cfg) {
  const std::int64_t B = in.lp.size(0), R = in.lp.size(1);
  const T* olp = in.olp.data_ptr<T>();
  const T* lp = in.lp.data_ptr<T>();
  const T* adv = in.adv.data_ptr<T>();
  const M* mask = in.mask.data_ptr<M>();
  const auto& pl = cfg.policy_loss;
  std::vector<std::int64_t> per_row(static_cast<std::size_t>(B) + 1, 0);
  std::atomic<bool> bad{false};
  parallel_rows_simd(B, R, [&](std::int64_t b0, std::int64_t b1) VERL_DETAIL_SIMD_BODY {
    unsigned nonfinite = 0;
    for (std::int64_t b = b0; b < b1; ++b) {
      std::int64_t c = 0;
      for (std::int64_t i = b * R, e = i + R; i < e; ++i) {
        nonfinite |= static_cast<unsigned>(!(std::isfinite(lp[i]) & std::isfinite(olp[i]) & std::isfinite(adv[i])));
        c += mask[i] > M(0) ? 1 : 0;
      }
      per_row[static_cast<std::size_t>(b) + 1] = c;
    }
    if (nonfinite != 0) bad.store(true);
  });
  if (bad.load()) return std::nullopt;
  for (std::size_t b = 1; b < per_row.size(); ++b) per_row[b] += per_row[b - 1];
  const std::int64_t n = per_row.back();
  std::vector<std::uint8_t> pick(static_cast<std::size_t>(B * R), 0);  // 1 = a top-k token (the KL term applies)
  std::uint8_t* pk = pick.data();
  if (n > 0) {
    // (2, n + 1): the valid advantages and log-probs in row-major order (masked_select's), plus one slot of slack
    // per row of it for the branch-free compaction below; the statistics read the first n of each.
    at::Tensor storage = verl::detail::empty_for_overwrite({2, n + 1}, at::TensorOptions().dtype(in.lp.scalar_type()));
    const at::Tensor packed = storage.narrow(1, 0, n);  // (2,n)
    T* pa = storage.data_ptr<T>();
    T* pl_ = pa + (n + 1);
    parallel_rows(B, R, [&](std::int64_t b0, std::int64_t b1) {
      for (std::int64_t b = b0; b < b1; ++b) {
        auto o = per_row[static_cast<std::size_t>(b)];
        // Every token writes at o and only valid ones advance it (a random mask makes a branch mispredict). The
        // row stops after its last valid token, so an invalid token's write is always overwritten by a later
        // valid token of the same row and never lands in the next row's first slot.
        std::int64_t e = (b + 1) * R;
        while (e > b * R && !(mask[e - 1] > M(0))) --e;
        for (std::int64_t i = b * R; i < e; ++i) {
          pa[o] = adv[i];
          pl_[o] = lp[i];
          o += mask[i] > M(0) ? 1 : 0;
        }
      }
    });
    const T mean_a = packed.select(0, 0).mean().template item<T>();
    const T mean_l = packed.select(0, 1).mean().template item<T>();
    parallel_rows(1, n, [&](std::int64_t, std::int64_t) {
      for (std::int64_t j = 0; j < n; ++j) pa[j] = (pa[j] - mean_a) * (pl_[j] - mean_l);  // cov, in place
    });
    const auto k = std::max<std::int64_t>(1, static_cast<std::int64_t>(static_cast<double>(n) * pl.kl_cov_ratio));
    const auto large = std::get<1>(packed.select(0, 0).topk(k, -1, /*largest=*/true)).contiguous();  // (k,)
    const std::int64_t* lp_idx = large.data_ptr<std::int64_t>();
    for (std::int64_t j = 0; j < large.numel(); ++j) {
      // The flat index of the j-th valid token: its row by binary search over the prefix counts.
      const std::int64_t v = lp_idx[j];
      const auto row = static_cast<std::int64_t>(std::upper_bound(per_row.begin(), per_row.end(), v) - per_row.begin()) - 1;
      std::int64_t seen = per_row[static_cast<std::size_t>(row)];
      for (std::int64_t i = row * R;; ++i) {
        if (mask[i] > M(0)) {
          if (seen == v) { pk[i] = 1; break; }
          ++seen;
        }
      }
    }
  }
  const T coef = static_cast<T>(pl.ppo_kl_coef);
  return fused_token_loss<T, M>(in, mode, cfg.global_batch_info, Metric::value, Metric::none, Metric::none,
                                [=](std::int64_t, std::int64_t i, const T* sl, std::int64_t cap) {
    Token<T> k;
    (void)cap;
    const T d = lp[i] - olp[i];
    const T r = sl[0];  // exp(d), ATen's exp
    const T na = -adv[i];
    const bool picked = pk[i] != 0;
    k.pg = select(picked, na * r + std::abs(d) * coef, na * r);
    k.dpg = select(picked, na * r + coef * (ind<T>(d > T(0)) - ind<T>(d < T(0))), na * r);
    k.kl = std::abs(d);
    return k;
  }, RatioPrep<T, 1>{lp, olp, adv, std::numeric_limits<T>::infinity()});
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
  if (auto in = detail::fused_policy_inputs(old_log_prob, log_prob, advantages, response_mask, rollout_is_weights)) {
    auto fused = detail::dispatch_fused(*in, [&]<class T, class M>() {
      return detail::vanilla_fused<T, M>(*in, loss_agg_mode, config);
    });
    if (fused) return *std::move(fused);
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
  if (auto in = detail::fused_policy_inputs(old_log_prob, log_prob, advantages, response_mask, rollout_is_weights)) {
    auto fused = detail::dispatch_fused(*in, [&]<class T, class M>() { return detail::gspo_fused<T, M>(*in, config); });
    if (fused) return *std::move(fused);
  }
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
  if (auto in = detail::fused_policy_inputs(old_log_prob, log_prob, advantages, response_mask, rollout_is_weights)) {
    auto fused = detail::dispatch_fused(*in, [&]<class T, class M>() { return detail::sapo_fused<T, M>(*in, config); });
    if (fused) return *std::move(fused);
  }
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
  if (auto in = detail::fused_policy_inputs(old_log_prob, log_prob, advantages, response_mask, rollout_is_weights)) {
    auto fused = detail::dispatch_fused(*in, [&]<class T, class M>() { return detail::gpg_fused<T, M>(*in, loss_agg_mode, config); });
    if (fused) return *std::move(fused);
  }
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
  if (auto in = detail::fused_policy_inputs(old_log_prob, log_prob, advantages, response_mask, rollout_is_weights)) {
    auto fused = detail::dispatch_fused(*in, [&]<class T, class M>() { return detail::clip_cov_fused<T, M>(*in, loss_agg_mode, config); });
    if (fused) return *std::move(fused);
  }
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
  if (auto in = detail::fused_policy_inputs(old_log_prob, log_prob, advantages, response_mask, rollout_is_weights)) {
    auto fused = detail::dispatch_fused(*in, [&]<class T, class M>() { return detail::kl_cov_fused<T, M>(*in, loss_agg_mode, config); });
    if (fused) return *std::move(fused);
  }
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
  if (auto in = detail::fused_policy_inputs(old_log_prob, log_prob, advantages, response_mask, rollout_is_weights)) {
    auto fused = detail::dispatch_fused(*in, [&]<class T, class M>() { return detail::geo_mean_fused<T, M>(*in, config); });
    if (fused) return *std::move(fused);
  }
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
  if (auto in = detail::fused_policy_inputs(old_log_prob, log_prob, advantages, response_mask, rollout_is_weights)) {
    auto fused = detail::dispatch_fused(*in, [&]<class T, class M>() { return detail::cispo_fused<T, M>(*in, loss_agg_mode, config); });
    if (fused) return *std::move(fused);
  }
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
  if (in.global_batch_info.any()) base.global_batch_info = in.global_batch_info;
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
