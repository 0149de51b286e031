#pragma once
//! \file
//! Loss aggregation, verl::core_algos::agg_loss: reduces a (B,R) per-token loss to a scalar with one of verl's
//! four `loss_agg_mode`s, optionally normalised by global-batch quantities so that the gradient does not
//! depend on the data-parallel size.
//!
//! Reference: verl 0.7.1 (PyPI), verl/trainer/ppo/core_algos.py, `agg_loss`. This function DIFFERS between
//! verl 0.7.0 and 0.7.1 (see docs/algorithms.md#agg_loss): 0.7.1 raises when dp_size > 1 and the
//! global normaliser is missing, and "seq-mean-token-sum-norm" became "seq-mean-token-sum" divided by
//! loss_scale_factor (0.7.0 summed over all sequences without dividing by the number of sequences).

// functional.hpp uses Tensor operators without including them; include them first.
#include <ATen/TensorOperators.h>

#include "verl/algos/functional.hpp"
#include "verl/algos/fused_cpu.hpp"
#include "verl/core/algo_io.hpp"
#include "verl/core/errors.hpp"
#include "verl/core/huge_pages.hpp"

#include <ATen/TensorOperators.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/scalar_tensor.h>
#include <c10/core/GradMode.h>

#include <atomic>
#include <cstdint>
#include <optional>
#include <string_view>

namespace verl::core_algos {

//! verl's `ActorConfig.global_batch_info` (0.7.1); defined beside PolicyLossInputs (verl/core/algo_io.hpp).
using GlobalBatchInfo = verl::GlobalBatchInfo;

namespace detail {

inline void check_agg_inputs(const at::Tensor& loss_mat, const at::Tensor& loss_mask, std::string_view owner) {
  verl::detail::check<ShapeError>(loss_mat.defined() && loss_mask.defined(), owner,
                                  ": `loss_mat` and `loss_mask` must be defined (B,R) tensors");
  verl::detail::check<ShapeError>(loss_mat.dim() == 2, owner, ": `loss_mat` has ", loss_mat.dim(),
                                  " dimensions, expected 2 (B,R)");
  verl::detail::check<ShapeError>(loss_mat.sizes() == loss_mask.sizes(), owner, ": `loss_mask` has shape ",
                                  loss_mask.sizes(), ", expected ", loss_mat.sizes(), " (the shape of `loss_mat`)");
}

//! The reductions agg_loss needs, however they were computed: token_mean reads token_sum (masked_sum of the
//! loss) and mask_total (mask.sum()); the seq-mean modes read row_sums ((loss * mask).sum(-1)) and row_counts
//! (mask.sum(-1)).
struct AggSums {
  at::Tensor token_sum, mask_total, row_sums, row_counts;
};

//! The seq-mean modes' `masked_sum(seq_losses, seq_mask)` on CPU, where seq_losses is the row sums (divided by
//! `row_counts + 1e-8` when `per_token_mean`) and seq_mask = (row_counts > 0).float(): the element-wise steps
//! are done here as the same IEEE operations in verl's dtypes (int64 count + 1e-8 is float32(count) + 1e-8f;
//! where(seq_mask, x, 0) * seq_mask is x or +0), and the one floating sum is ATen's over a tensor of verl's
//! shape and dtype, so the bits are verl's; five tensor operations fewer than the literal sequence. Also
//! returns the number of non-empty rows (seq_mask.sum(), exact). Undefined when the inputs are not CPU float
//! row sums with int64 counts (the caller runs the literal sequence).
inline at::Tensor seq_masked_sum_cpu(const AggSums& r, bool per_token_mean, std::int64_t& nonempty) {
  const auto& rs = r.row_sums;
  const auto& rc = r.row_counts;
  const auto dt = rs.scalar_type();
  if (!rs.is_cpu() || !rc.is_cpu() || rc.scalar_type() != at::kLong || (dt != at::kFloat && dt != at::kDouble) ||
      rs.dim() != 1 || rc.dim() != 1 || rs.size(0) != rc.size(0) || (c10::GradMode::is_enabled() && rs.requires_grad())) {
    return {};
  }
  const auto sums = rs.contiguous();
  const auto counts = rc.contiguous();
  const std::int64_t B = sums.size(0);
  at::Tensor q = at::empty({B}, sums.options());  // (B,) masked_sum's summands
  const std::int64_t* c = counts.data_ptr<std::int64_t>();
  nonempty = 0;
  const auto fill = [&](auto zero) {
    using S = decltype(zero);
    const S* x = sums.data_ptr<S>();
    S* o = q.data_ptr<S>();
    for (std::int64_t b = 0; b < B; ++b) {
      const bool valid = c[b] > 0;
      nonempty += valid ? 1 : 0;
      // row_counts + 1e-8: int64 + Python float is float32 (the default dtype), computed in float.
      const S den = static_cast<S>(static_cast<float>(c[b]) + static_cast<float>(1e-8));
      o[b] = valid ? (per_token_mean ? x[b] / den : x[b]) : S(0);
    }
  };
  if (dt == at::kFloat) fill(float{}); else fill(double{});
  return q.sum();  // ()
}

//! agg_loss's arithmetic after the reductions (verl 0.7.1's operations on the reduced tensors, in its order).
inline at::Tensor agg_loss_tail(const AggSums& r, std::int64_t R, LossAggMode loss_agg_mode,
                                const GlobalBatchInfo& info, std::string_view owner) {
  switch (loss_agg_mode) {
    case LossAggMode::token_mean: {
      if (info.batch_num_tokens) return r.token_sum / *info.batch_num_tokens * info.dp_size;
      verl::detail::check<ConfigError>(info.dp_size <= 1, owner, ": \"token-mean\" with dp_size = ", info.dp_size,
                                       " needs the global `batch_num_tokens` in GlobalBatchInfo");
      return r.token_sum / r.mask_total * info.dp_size;  // () local token count, as verl
    }
    case LossAggMode::seq_mean_token_sum:
    case LossAggMode::seq_mean_token_sum_norm: {
      std::int64_t nonempty = 0;
      if (at::Tensor total = seq_masked_sum_cpu(r, false, nonempty); total.defined()) {
        at::Tensor loss;  // ()
        if (info.global_batch_size) {
          loss = total / *info.global_batch_size * info.dp_size;
        } else {
          verl::detail::check<ConfigError>(info.dp_size <= 1, owner, ": \"", to_string(loss_agg_mode),
                                           "\" with dp_size = ", info.dp_size,
                                           " needs the global `global_batch_size` in GlobalBatchInfo");
          loss = total / at::scalar_tensor(static_cast<double>(nonempty), at::TensorOptions().dtype(at::kFloat)) *
                 info.dp_size;
        }
        if (loss_agg_mode == LossAggMode::seq_mean_token_sum_norm) {
          loss = loss / (info.loss_scale_factor ? *info.loss_scale_factor : static_cast<double>(R));
        }
        return loss;
      }
      const auto& seq_losses = r.row_sums;                                   // (B,)
      const auto seq_mask = r.row_counts.gt(0).to(at::kFloat);              // (B,) float32 as verl's .float()
      at::Tensor loss;                                                        // ()
      if (info.global_batch_size) {
        loss = functional::masked_sum(seq_losses, seq_mask) / *info.global_batch_size * info.dp_size;
      } else {
        verl::detail::check<ConfigError>(info.dp_size <= 1, owner, ": \"", to_string(loss_agg_mode),
                                         "\" with dp_size = ", info.dp_size,
                                         " needs the global `global_batch_size` in GlobalBatchInfo");
        loss = functional::masked_sum(seq_losses, seq_mask) / seq_mask.sum() * info.dp_size;
      }
      if (loss_agg_mode == LossAggMode::seq_mean_token_sum_norm) {
        const double factor = info.loss_scale_factor ? *info.loss_scale_factor : static_cast<double>(R);
        loss = loss / factor;  // verl's in-place `/=` keeps the dtype, as `/ scalar` does here
      }
      return loss;
    }
    case LossAggMode::seq_mean_token_mean: {
      std::int64_t nonempty = 0;
      if (at::Tensor total = seq_masked_sum_cpu(r, true, nonempty); total.defined()) {
        if (info.global_batch_size) return total / *info.global_batch_size * info.dp_size;
        verl::detail::check<ConfigError>(info.dp_size <= 1, owner, ": \"seq-mean-token-mean\" with dp_size = ",
                                         info.dp_size, " needs the global `global_batch_size` in GlobalBatchInfo");
        return total / at::scalar_tensor(static_cast<double>(nonempty), at::TensorOptions().dtype(at::kFloat)) *
               info.dp_size;
      }
      const auto seq_losses = r.row_sums / (r.row_counts + 1e-8);            // (B,)
      const auto seq_mask = r.row_counts.gt(0).to(at::kFloat);              // (B,) float32
      if (info.global_batch_size) {
        return functional::masked_sum(seq_losses, seq_mask) / *info.global_batch_size * info.dp_size;
      }
      verl::detail::check<ConfigError>(info.dp_size <= 1, owner, ": \"seq-mean-token-mean\" with dp_size = ",
                                       info.dp_size, " needs the global `global_batch_size` in GlobalBatchInfo");
      return functional::masked_sum(seq_losses, seq_mask) / seq_mask.sum() * info.dp_size;
    }
  }
  throw ConfigError(verl::detail::concat_message(owner, ": invalid loss_agg_mode value ",
                                                 static_cast<int>(loss_agg_mode),
                                                 ", expected one of the four verl::LossAggMode enumerators"));
}

//! agg_loss's reductions with ATen, exactly as verl writes them.
inline AggSums agg_sums_aten(const at::Tensor& loss_mat, const at::Tensor& loss_mask, LossAggMode mode) {
  AggSums r;
  if (mode == LossAggMode::token_mean) {
    r.token_sum = functional::masked_sum(loss_mat, loss_mask);  // ()
    r.mask_total = loss_mask.sum();                              // ()
  } else {
    r.row_sums = (loss_mat * loss_mask).sum(-1);                 // (B,)
    r.row_counts = loss_mask.sum(-1);                            // (B,)
  }
  return r;
}

//! What agg_rows writes besides the summands: the mask total, the `extra` count, and the high bits of int64 mask
//! values that do not fit in int32 (mask_as; non-zero means the pass must be redone by ATen).
struct AggRowsOut {
  std::int64_t total = 0, extra = 0;
  std::uint64_t wide = 0;
};

//! Rows [b0, b1) of agg_sums_fused's pass: straight-line code, so that it vectorises.
template <bool TokenMean, class S, class M, class X, class E>
[[gnu::always_inline]] inline AggRowsOut agg_rows_impl(const X& x, const E& extra, const M* m, S* p, std::int64_t* cp,
                                                       std::int64_t R, std::int64_t b0, std::int64_t b1) {
  AggRowsOut o;
  for (std::int64_t b = b0; b < b1; ++b) {
    std::int64_t row = 0, e = 0;
    std::uint64_t wide = 0;
#pragma GCC ivdep
    for (std::int64_t i = b * R, end = i + R; i < end; ++i) {
      const S v = x(b, i);
      const M mv = m[i];
      const S ms = mask_as<S>(mv, wide);
      // masked_sum's summand (where(m, v, 0) * m) for token-mean, the plain product for the seq modes.
      p[i] = TokenMean ? select(mv != M(0), v, S(0)) * ms : v * ms;
      const auto mi = static_cast<std::int64_t>(mv);
      row += mi;
      e += extra(i) ? mi : 0;
    }
    o.total += row;
    o.extra += e;
    o.wide |= wide;
    if (cp) cp[b] = row;
  }
  return o;
}

template <bool TokenMean, class S, class M, class X, class E>
AggRowsOut agg_rows_base(const X& x, const E& extra, const M* m, S* p, std::int64_t* cp, std::int64_t R,
                         std::int64_t b0, std::int64_t b1) {
  return agg_rows_impl<TokenMean>(x, extra, m, p, cp, R, b0, b1);
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
// AVX2 without FMA: the same IEEE operations as the baseline build (see token_rows_avx2).
template <bool TokenMean, class S, class M, class X, class E>
[[gnu::target("avx2")]] AggRowsOut agg_rows_avx2(const X& x, const E& extra, const M* m, S* p, std::int64_t* cp,
                                                 std::int64_t R, std::int64_t b0, std::int64_t b1) {
  return agg_rows_impl<TokenMean>(x, extra, m, p, cp, R, b0, b1);
}
#endif

//! agg_loss's reductions fused over CPU data, bit-identical to agg_sums_aten: one pass writes the exact summands
//! (masked_sum's where-then-multiply for token-mean, the plain product for the seq modes) into one scratch
//! tensor that ATen's sum reduces as it reduces verl's; the mask counts are exact integers (bool/integer masks
//! only). `x(b, i)` yields the loss at flat index i of row b; `extra(i)` (a bool) is counted, times the mask,
//! into `extra_count` (the value loss's clip indicator rides along this way). `x` and `extra` should be
//! branch-free (see fused_cpu.hpp's select). std::nullopt when an int64 mask value does not fit in int32 (the
//! caller then takes the ATen path).
template <class S, class M, class X, class E>
std::optional<AggSums> agg_sums_fused(const X& x, const E& extra, const at::Tensor& mask, LossAggMode mode,
                                      std::int64_t& extra_count) {
  static_assert(!std::is_floating_point_v<M>, "agg_sums_fused: exact counts need a bool/integer mask");
  const std::int64_t B = mask.size(0), R = mask.size(1);
  const M* m = mask.data_ptr<M>();
  const at::Tensor scratch =
      verl::detail::empty_for_overwrite({B, R}, at::TensorOptions().dtype(c10::CppTypeToScalarType<S>::value));  // (B,R)
  S* p = scratch.data_ptr<S>();
  const bool token = mode == LossAggMode::token_mean;
  at::Tensor counts;  // (B,) int64, seq modes
  std::int64_t* cp = nullptr;
  if (!token) {
    counts = at::empty({B}, at::TensorOptions().dtype(at::kLong));
    cp = counts.data_ptr<std::int64_t>();
  }
  std::atomic<std::int64_t> total{0}, ext{0};
  std::atomic<std::uint64_t> wide{0};
  const bool avx2 = cpu_has_avx2();
  parallel_rows(B, R, [&](std::int64_t b0, std::int64_t b1) {
    const auto run = [&]<bool TokenMean>(std::bool_constant<TokenMean>) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
      if (avx2) return agg_rows_avx2<TokenMean>(x, extra, m, p, cp, R, b0, b1);
#endif
      return agg_rows_base<TokenMean>(x, extra, m, p, cp, R, b0, b1);
    };
    const AggRowsOut o = token ? run(std::true_type{}) : run(std::false_type{});
    total.fetch_add(o.total, std::memory_order_relaxed);
    ext.fetch_add(o.extra, std::memory_order_relaxed);
    wide.fetch_or(o.wide, std::memory_order_relaxed);
  });
  if (wide.load() != 0) return std::nullopt;
  extra_count = ext.load();
  AggSums r;
  if (token) {
    r.token_sum = scratch.sum();                                                                   // ()
    r.mask_total = at::scalar_tensor(static_cast<double>(total.load()), at::TensorOptions().dtype(at::kLong));  // ()
  } else {
    r.row_sums = scratch.sum(-1);  // (B,)
    r.row_counts = counts;         // (B,)
  }
  return r;
}

//! True when agg_loss's fused CPU path applies to (loss_mat, loss_mask): CPU, float32/float64 loss, a bool or
//! integer mask (exact counts), and no gradient wanted through the loss.
inline bool agg_fusable(const at::Tensor& loss_mat, const at::Tensor& loss_mask) {
  const auto dt = loss_mat.scalar_type();
  const auto mt = loss_mask.scalar_type();
  return loss_mat.is_cpu() && loss_mask.is_cpu() && (dt == at::kFloat || dt == at::kDouble) &&
         (mt == at::kBool || mt == at::kLong || mt == at::kInt) && loss_mat.numel() > 0 &&
         !(c10::GradMode::is_enabled() && loss_mat.requires_grad());
}

}  // namespace detail

//! Aggregates a per-token loss into a scalar (verl 0.7.1, verl/trainer/ppo/core_algos.py `agg_loss`).
//!
//! With N = global token count, S = global count of sequences with at least one valid token, d = dp_size:
//!   - token_mean:               d * sum_{b,t} m*l / N
//!   - seq_mean_token_sum:       d * sum_b [n_b > 0] sum_t m*l / S
//!   - seq_mean_token_sum_norm:  the above / loss_scale_factor (default R)
//!   - seq_mean_token_mean:      d * sum_b [n_b > 0] (sum_t m*l / (n_b + 1e-8)) / S
//! where N and S default to the local counts (mask.sum() and the count of non-empty rows) when absent.
//! \param loss_mat (B,R) floating; \param loss_mask (B,R) bool/integer/floating.
//! \throws verl::ShapeError on bad shapes; verl::ConfigError when dp_size > 1 and the needed global
//!         normaliser is missing (verl raises ValueError).
[[nodiscard]] inline at::Tensor agg_loss(const at::Tensor& loss_mat, const at::Tensor& loss_mask,
                                         LossAggMode loss_agg_mode, const GlobalBatchInfo& info = {}) {
  constexpr std::string_view owner = "verl::core_algos::agg_loss";
  detail::check_agg_inputs(loss_mat, loss_mask, owner);
  if (detail::agg_fusable(loss_mat, loss_mask)) {
    const auto x = loss_mat.contiguous(), m = loss_mask.contiguous();  // (B,R)
    std::optional<detail::AggSums> sums;
    detail::dispatch_value_mask(x.scalar_type(), m.scalar_type(), [&](auto s, auto mk) {
      using S = decltype(s);
      using M = decltype(mk);
      if constexpr (!std::is_floating_point_v<M>) {
        const S* xp = x.data_ptr<S>();
        std::int64_t unused = 0;
        sums = detail::agg_sums_fused<S, M>([xp](std::int64_t, std::int64_t i) { return xp[i]; },
                                            [](std::int64_t) { return false; }, m, loss_agg_mode, unused);
      }
    });
    if (sums) return detail::agg_loss_tail(*sums, loss_mask.size(-1), loss_agg_mode, info, owner);
  }
  return detail::agg_loss_tail(detail::agg_sums_aten(loss_mat, loss_mask, loss_agg_mode), loss_mask.size(-1),
                               loss_agg_mode, info, owner);
}

//! agg_loss with verl's spelling of the mode ("token-mean", ...).
//! \throws verl::ConfigError for an unknown spelling (verl: "Invalid loss_agg_mode").
[[nodiscard]] inline at::Tensor agg_loss(const at::Tensor& loss_mat, const at::Tensor& loss_mask,
                                         std::string_view loss_agg_mode, const GlobalBatchInfo& info = {}) {
  return agg_loss(loss_mat, loss_mask, parse_loss_agg_mode(loss_agg_mode), info);
}

//! agg_loss with verl's spelling as a C string.
[[nodiscard]] inline at::Tensor agg_loss(const at::Tensor& loss_mat, const at::Tensor& loss_mask,
                                         const char* loss_agg_mode, const GlobalBatchInfo& info = {}) {
  return agg_loss(loss_mat, loss_mask, std::string_view{loss_agg_mode}, info);
}

}  // namespace verl::core_algos
