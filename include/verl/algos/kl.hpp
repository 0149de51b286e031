#pragma once
//! \file
//! KL penalties and controllers, verl::core_algos: kl_penalty_forward / kl_penalty (k1 "kl", "abs", k2 "mse",
//! k3 "low_var_kl", and the straight-through "+" variants), compute_rewards (KL in the reward),
//! FixedKLController, AdaptiveKLController and get_kl_controller.
//!
//! Reference: verl 0.7.1 (PyPI), verl/trainer/ppo/core_algos.py. These functions are the same in 0.7.0, except
//! for a docstring. Deliberate difference: verl 0.7.0/0.7.1's kl_penalty passes the "+"-suffixed name ("k3+")
//! on to kl_penalty_forward, which raises NotImplementedError, so the straight-through variants are unusable
//! there; verl 0.8.0 strips the "+" first. This port follows 0.8.0 for names ending in "+".

#include "verl/algos/fused_cpu.hpp"
#include "verl/core/errors.hpp"
#include "verl/core/huge_pages.hpp"

#include <ATen/TensorOperators.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/exp.h>
#include <c10/core/GradMode.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <string_view>
#include <variant>

namespace verl::core_algos {

namespace detail {

//! True when the fused CPU kernels of this file apply: defined same-shape CPU float32/float64 tensors of one
//! dtype and no gradient wanted through them (with one, verl's ATen sequence runs, so autograd sees it).
inline bool kl_fusable(std::initializer_list<const at::Tensor*> ts) {
  const auto dt = (*ts.begin())->scalar_type();
  if (dt != at::kFloat && dt != at::kDouble) return false;
  const bool grad = c10::GradMode::is_enabled();
  return std::all_of(ts.begin(), ts.end(), [&](const at::Tensor* t) {
    return t->is_cpu() && t->scalar_type() == dt && t->sizes() == (*ts.begin())->sizes() && !(grad && t->requires_grad());
  });
}

//! out[i] = f(a[i], b[i]) over contiguous copies of a and b, row-parallel; one allocation.
template <class F>
at::Tensor fused_binary(const at::Tensor& a_in, const at::Tensor& b_in, const F& f) {
  const auto a = a_in.contiguous(), b = b_in.contiguous();   // (...)
  auto out = verl::detail::empty_for_overwrite(a.sizes(), a.options());  // (...) contiguous
  const std::int64_t n = a.numel();
  const std::int64_t cols = a.dim() > 0 ? a.size(-1) : 1;
  const std::int64_t rows = cols > 0 ? n / cols : 0;
  if (a.scalar_type() == at::kFloat) {
    const float* ap = a.data_ptr<float>();
    const float* bp = b.data_ptr<float>();
    float* op = out.data_ptr<float>();
    parallel_rows_simd(rows, cols, [=](std::int64_t r0, std::int64_t r1) VERL_DETAIL_SIMD_BODY {
      for (std::int64_t i = r0 * cols; i < r1 * cols; ++i) op[i] = f(ap[i], bp[i]);
    });
  } else {
    const double* ap = a.data_ptr<double>();
    const double* bp = b.data_ptr<double>();
    double* op = out.data_ptr<double>();
    parallel_rows_simd(rows, cols, [=](std::int64_t r0, std::int64_t r1) VERL_DETAIL_SIMD_BODY {
      for (std::int64_t i = r0 * cols; i < r1 * cols; ++i) op[i] = f(ap[i], bp[i]);
    });
  }
  return out;
}

inline void check_kl_inputs(const at::Tensor& logprob, const at::Tensor& ref_logprob, std::string_view owner) {
  verl::detail::check<ShapeError>(logprob.defined() && ref_logprob.defined(), owner,
                                  ": `logprob` and `ref_logprob` must be defined tensors");
  verl::detail::check<ShapeError>(logprob.sizes() == ref_logprob.sizes(), owner, ": `ref_logprob` has shape ",
                                  ref_logprob.sizes(), ", expected ", logprob.sizes(), " (the shape of `logprob`)");
}
}  // namespace detail

//! Per-token KL estimate between the policy and the reference (verl 0.7.1, core_algos.py
//! `kl_penalty_forward`; same in 0.7.0). With d = logprob - ref_logprob:
//!   "kl"/"k1": d;  "abs": |d|;  "mse"/"k2": d^2 / 2;
//!   "low_var_kl"/"k3": k = clamp(-d, -20, 20), clamp(exp(k) - k - 1, -10, 10)   (Schulman's k3, with verl's clamps).
//! \throws verl::ConfigError for "full" (verl: NotImplementedError) and any other name.
[[nodiscard]] inline at::Tensor kl_penalty_forward(const at::Tensor& logprob, const at::Tensor& ref_logprob,
                                                   std::string_view kl_penalty) {
  constexpr std::string_view owner = "verl::core_algos::kl_penalty_forward";
  detail::check_kl_inputs(logprob, ref_logprob, owner);
  // Fused CPU kernels (one allocation, element-wise the same IEEE operations as verl's chain; exp is ATen's own
  // kernel, run in place on the same-shaped buffer, so its bits are verl's too).
  const bool fused = logprob.numel() > 0 && detail::kl_fusable({&logprob, &ref_logprob});
  if (kl_penalty == "kl" || kl_penalty == "k1") return logprob - ref_logprob;                        // (...) one op already
  if (kl_penalty == "abs") {
    if (fused) return detail::fused_binary(logprob, ref_logprob, [](auto a, auto b) { return std::abs(a - b); });
    return (logprob - ref_logprob).abs();                                                            // (...)
  }
  if (kl_penalty == "mse" || kl_penalty == "k2") {
    if (fused) {
      return detail::fused_binary(logprob, ref_logprob, [](auto a, auto b) {
        using T = decltype(a);
        const T d = a - b;
        return (d * d) * T(0.5);
      });
    }
    return (logprob - ref_logprob).square() * 0.5;                                                   // (...)
  }
  if (fused && (kl_penalty == "low_var_kl" || kl_penalty == "k3")) {
    const auto kl = [](auto lp, auto ref) {
      using T = decltype(lp);
      return detail::clamp_nan(ref - lp, T(-20), T(20));
    };
    auto out = detail::fused_binary(logprob, ref_logprob, kl);   // (...) kl
    at::exp_(out);                                               // (...) ratio, ATen's exp kernel
    auto lp_c = logprob.contiguous(), ref_c = ref_logprob.contiguous();
    const std::int64_t n = out.numel(), cols = out.dim() > 0 ? out.size(-1) : 1;
    const auto finish = [&](auto* o, const auto* a, const auto* b) {
      using T = std::remove_pointer_t<decltype(o)>;
      detail::parallel_rows_simd(cols > 0 ? n / cols : 0, cols, [=](std::int64_t r0, std::int64_t r1) VERL_DETAIL_SIMD_BODY {
        for (std::int64_t i = r0 * cols; i < r1 * cols; ++i) o[i] = detail::clamp_nan((o[i] - kl(a[i], b[i])) - T(1), T(-10), T(10));
      });
    };
    if (out.scalar_type() == at::kFloat) {
      finish(out.data_ptr<float>(), lp_c.data_ptr<float>(), ref_c.data_ptr<float>());
    } else {
      finish(out.data_ptr<double>(), lp_c.data_ptr<double>(), ref_c.data_ptr<double>());
    }
    return out;
  }
  if (kl_penalty == "low_var_kl" || kl_penalty == "k3") {
    const auto kl = (ref_logprob - logprob).clamp(-20, 20);                                         // (...)
    const auto ratio = kl.exp();                                                                     // (...)
    return (ratio - kl - 1).contiguous().clamp(-10, 10);                                             // (...)
  }
  throw ConfigError(verl::detail::concat_message(
      owner, ": kl_penalty \"", kl_penalty, "\" is not implemented",
      kl_penalty == "full" ? " (verl raises NotImplementedError for \"full\" too)" : "",
      "; expected one of \"kl\", \"k1\", \"abs\", \"mse\", \"k2\", \"low_var_kl\", \"k3\", optionally with a \"+\" "
      "suffix in kl_penalty"));
}

//! KL penalty with optional straight-through gradient (verl 0.7.1, core_algos.py `kl_penalty`; "+" handling
//! as verl 0.8.0, see the file comment). Without a "+" suffix, or for "mse"/"k2", it is kl_penalty_forward.
//! With a suffix ("k1+", "k3+", "low_var_kl+", "abs+", ...): the value of the base estimator and the gradient
//! of k2 = (logprob - ref_logprob)^2 / 2, i.e. k2 - sg[k2] + sg[forward].
[[nodiscard]] inline at::Tensor kl_penalty(const at::Tensor& logprob, const at::Tensor& ref_logprob,
                                           std::string_view kl_penalty) {
  const bool straight_through = !kl_penalty.empty() && kl_penalty.back() == '+';
  const auto base = straight_through ? kl_penalty.substr(0, kl_penalty.size() - 1) : kl_penalty;
  const auto forward_score = kl_penalty_forward(logprob, ref_logprob, base);                          // (...)
  if (!straight_through || kl_penalty == "mse" || kl_penalty == "k2") return forward_score;
  const auto backward_score = (logprob - ref_logprob).square() * 0.5;                                // (...)
  return backward_score - backward_score.detach() + forward_score.detach();                         // (...)
}

//! Token-level rewards with the KL penalty folded in (verl 0.7.1, core_algos.py `compute_rewards`; same in
//! 0.7.0): token_level_scores - (old_log_prob - ref_log_prob) * kl_ratio.
[[nodiscard]] inline at::Tensor compute_rewards(const at::Tensor& token_level_scores, const at::Tensor& old_log_prob,
                                                const at::Tensor& ref_log_prob, double kl_ratio) {
  detail::check_kl_inputs(old_log_prob, ref_log_prob, "verl::core_algos::compute_rewards");
  if (old_log_prob.numel() > 0 && token_level_scores.defined() &&
      detail::kl_fusable({&token_level_scores, &old_log_prob, &ref_log_prob})) {
    // Fused: scores - (old - ref) * ratio, with the scalar rounded to the tensor dtype as ATen's mul does.
    const auto sc = token_level_scores.contiguous(), o = old_log_prob.contiguous(), r = ref_log_prob.contiguous();  // (B,R)
    auto out = verl::detail::empty_for_overwrite(sc.sizes(), sc.options());  // (B,R)
    const auto run = [&](auto t) {
      using T = decltype(t);
      const T* sp = sc.data_ptr<T>();
      const T* op = o.data_ptr<T>();
      const T* rp = r.data_ptr<T>();
      T* outp = out.data_ptr<T>();
      const T ratio = static_cast<T>(kl_ratio);
      const std::int64_t n = sc.numel(), cols = sc.dim() > 0 ? sc.size(-1) : 1;
      detail::parallel_rows(cols > 0 ? n / cols : 0, cols, [&](std::int64_t r0, std::int64_t r1) {
        for (std::int64_t i = r0 * cols; i < r1 * cols; ++i) outp[i] = sp[i] - (op[i] - rp[i]) * ratio;
      });
    };
    if (sc.scalar_type() == at::kFloat) run(float{}); else run(double{});
    return out;
  }
  const auto kl = old_log_prob - ref_log_prob;  // (B,R)
  return token_level_scores - kl * kl_ratio;    // (B,R)
}

//! Constant KL coefficient (verl 0.7.1, core_algos.py `FixedKLController`; same in 0.7.0).
struct FixedKLController {
  double value;  //!< the coefficient
  explicit FixedKLController(double kl_coef) : value(kl_coef) {}
  //! No-op, as verl.
  void update(double /*current_kl*/, std::int64_t /*n_steps*/) {}
};

//! Adaptive KL coefficient of Ziegler et al. 2019 (verl 0.7.1, core_algos.py `AdaptiveKLController`; same in
//! 0.7.0): update multiplies value by 1 + clip(current_kl / target - 1, -0.2, 0.2) * n_steps / horizon.
struct AdaptiveKLController {
  double value;    //!< the current coefficient
  double target;   //!< target KL
  double horizon;  //!< steps over which the error is corrected
  AdaptiveKLController(double init_kl_coef, double target_kl, double horizon_)
      : value(init_kl_coef), target(target_kl), horizon(horizon_) {}
  void update(double current_kl, std::int64_t n_steps) {
    const double proportional_error = std::clamp(current_kl / target - 1, -0.2, 0.2);
    const double mult = 1 + proportional_error * static_cast<double>(n_steps) / horizon;
    value *= mult;
  }
};

//! verl's `algorithm.kl_ctrl` config (verl/trainer/config/algorithm.py, KLControlConfig): the fields used.
struct KLControlConfig {
  std::string type = "fixed";  //!< "fixed" or "adaptive"
  double kl_coef = 0.001;      //!< initial (or fixed) coefficient
  double horizon = 10000;      //!< adaptive only, > 0
  double target_kl = 0.1;      //!< adaptive only
};

using KLController = std::variant<FixedKLController, AdaptiveKLController>;

//! Makes the controller `cfg` names (verl 0.7.1, core_algos.py `get_kl_controller`).
//! \throws verl::ConfigError when type is neither "fixed" nor "adaptive" (verl: NotImplementedError) or an
//!         adaptive horizon is not positive (verl: AssertionError).
[[nodiscard]] inline KLController get_kl_controller(const KLControlConfig& cfg) {
  if (cfg.type == "fixed") return FixedKLController(cfg.kl_coef);
  if (cfg.type == "adaptive") {
    verl::detail::check<ConfigError>(cfg.horizon > 0, "verl::core_algos::get_kl_controller: horizon must be larger "
                                     "than 0, got ", cfg.horizon);
    return AdaptiveKLController(cfg.kl_coef, cfg.target_kl, cfg.horizon);
  }
  throw ConfigError(verl::detail::concat_message("verl::core_algos::get_kl_controller: kl_ctrl.type is \"", cfg.type,
                                                 "\", expected \"fixed\" or \"adaptive\""));
}

}  // namespace verl::core_algos
