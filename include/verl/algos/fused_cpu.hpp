#pragma once
//! \file
//! Building blocks of the fused CPU kernels of verl::core_algos (implementation detail, not a public API):
//! a row-parallel loop that really runs on LibTorch's intra-op threads, the value/mask dtype dispatch, an
//! exact fused masked whitening, and the per-row accumulation + agg_loss finish shared by the fused losses.
//!
//! Rows are parallelised with verl::detail::parallel_rows (verl/core/parallel.hpp), not at::parallel_for,
//! which runs on one thread in translation units compiled without -fopenmp.
//!
//! Exactness: where verl's result is a full-tensor or per-row floating sum, the kernels below do not re-sum in
//! their own order: they write the exact element-wise summands verl would sum into one scratch tensor and let
//! ATen's sum (the kernel verl calls, same shape, same thread count) reduce it, so the bits stay verl's. Integer
//! counts (the mask sums of bool/integer masks) are exact in any order and are accumulated in the pass.

#include "verl/core/algo_io.hpp"
#include "verl/core/cpu_features.hpp"
#include "verl/core/errors.hpp"
#include "verl/core/huge_pages.hpp"
#include "verl/core/parallel.hpp"

#include <ATen/Parallel.h>
#include <ATen/TensorIterator.h>
#include <ATen/TensorOperators.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/result_type.h>
#include <ATen/ops/rsqrt_ops.h>
#include <ATen/ops/scalar_tensor.h>
#include <ATen/ops/sum.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cmath>
#include <cstdint>
#include <optional>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace verl::core_algos::detail {

using verl::detail::cpu_has_avx2;   // verl/core/cpu_features.hpp
using verl::detail::parallel_rows;  // verl/core/parallel.hpp: why not at::parallel_for

//! Calls `f(S{}, M{})` with the C++ types of a float/double value dtype and a mask dtype; false if unsupported.
template <class F>
bool dispatch_value_mask(at::ScalarType value, at::ScalarType mask, F&& f) {
  auto with_mask = [&](auto s) {
    using S = decltype(s);
    switch (mask) {
      case at::kBool: f(S{}, bool{}); return true;
      case at::kByte: f(S{}, std::uint8_t{}); return true;
      case at::kChar: f(S{}, std::int8_t{}); return true;
      case at::kShort: f(S{}, std::int16_t{}); return true;
      case at::kInt: f(S{}, std::int32_t{}); return true;
      case at::kLong: f(S{}, std::int64_t{}); return true;
      case at::kFloat: f(S{}, float{}); return true;
      case at::kDouble: f(S{}, double{}); return true;
      default: return false;
    }
  };
  if (value == at::kFloat) return with_mask(float{});
  if (value == at::kDouble) return with_mask(double{});
  return false;
}

//! True when every defined tensor is a CPU tensor.
inline bool all_cpu(std::initializer_list<const at::Tensor*> ts) {
  return std::all_of(ts.begin(), ts.end(), [](const at::Tensor* t) { return !t->defined() || t->is_cpu(); });
}

//! `a.unsqueeze(-1) * mask` for a (B,) and mask (B,T) (how the outcome estimators tile a per-sequence advantage
//! over the response), in one pass. Why: with a float `a` and an integer or bool mask ATen's multiply runs its
//! dynamic-casting loop, which converts element by element (~4 ns per element, 16 ms at (1024,4096) on one core).
//! Here each element is the same single IEEE product, a[b] * S(mask[b,t]) in the result dtype S, so the bits are
//! ATen's. Falls back to ATen when the result dtype is not a's (e.g. float a, double mask), for non-CPU tensors,
//! other shapes, or when autograd is involved.
inline at::Tensor row_times_mask(const at::Tensor& a, const at::Tensor& mask) {
  const bool fast = a.defined() && mask.defined() && a.dim() == 1 && mask.dim() == 2 && a.size(0) == mask.size(0) &&
                    all_cpu({&a, &mask}) && !a.requires_grad() && !mask.requires_grad() &&
                    at::result_type(a, mask) == a.scalar_type();
  if (fast) {
    const auto av = a.contiguous();
    const auto m = mask.contiguous();
    auto out = verl::detail::empty_for_overwrite(m.sizes(), av.options());  // (B,T)
    const std::int64_t rows = m.size(0), cols = m.size(1);
    const bool done = dispatch_value_mask(av.scalar_type(), m.scalar_type(), [&](auto s, auto mk) {
      using S = decltype(s);
      using M = decltype(mk);
      const S* ap = av.data_ptr<S>();
      const M* mp = m.data_ptr<M>();
      S* op = out.data_ptr<S>();
      parallel_rows(rows, cols, [&](std::int64_t b0, std::int64_t b1) {
        for (std::int64_t b = b0; b < b1; ++b) {
          const S x = ap[b];
          const M* mrow = mp + b * cols;
          S* orow = op + b * cols;
          for (std::int64_t t = 0; t < cols; ++t) orow[t] = x * static_cast<S>(mrow[t]);
        }
      });
    });
    if (done) return out;
  }
  return a.unsqueeze(-1) * mask;
}

//! verl's `torch.where(mask.bool(), x, 0.0) * mask` for one element: the summand of masked_sum.
template <class S, class M>
inline S masked_term(S x, M m) {
  return (m != M(0) ? x : S(0)) * static_cast<S>(m);
}

//! mask.sum() as verl gets it: exact integer count for bool/integer masks (accumulated by the caller), ATen's
//! floating sum for floating masks (whose sum depends on order).
template <class M>
inline at::Tensor mask_total(const at::Tensor& mask, std::int64_t exact_count) {
  if constexpr (std::is_floating_point_v<M>) {
    return mask.sum();  // ()
  } else {
    return at::scalar_tensor(static_cast<double>(exact_count), at::TensorOptions().dtype(at::kLong));  // () int64
  }
}

//! masked_whiten_fused after its first pass. `out` (B,T) holds pass 1's summands masked_term(x, m) and
//! `count` the exact mask count (integer masks; ignored for floating ones). Passes 2 and 3 read the mask through
//! `mp`, which may be `mask`'s own data or a compact copy of the same values (e.g. a 0/1 integer mask as bytes:
//! masked_term and the conversion to S give the same results for equal values). Returns `out`, overwritten.
template <class S, class M, class MP, class X>
[[nodiscard]] at::Tensor masked_whiten_finish(std::string_view owner, const X& x, const at::Tensor& mask, const MP* mp,
                                              at::Tensor out, std::int64_t count, bool times_mask) {
  const std::int64_t rows = mask.size(0), cols = mask.size(1);
  S* o = out.data_ptr<S>();
  const at::Tensor mask_sum = mask_total<M>(mask, count);                    // ()
  const at::Tensor mean = out.sum().div(mask_sum.add(1e-8));                  // () masked_mean(x, mask)
  const double msum = mask_sum.item<double>();
  verl::detail::check<InputError>(msum != 0.0, owner, ": `response_mask` cannot be whitened over (the mask selects "
                                  "no element; at least one element of the mask must be 1); verl raises ValueError "
                                  "here too");
  verl::detail::check<InputError>(msum != 1.0, owner, ": `response_mask` cannot be whitened over (the mask selects "
                                  "exactly one element, so the unbiased variance divides by zero; use a larger "
                                  "(mini-)batch); verl raises ValueError here too");
  const S mu = mean.item<S>();
  // Pass 2: summands of masked_mean((x - mean)**2, mask); x**2 is x * x in ATen's pow kernel. masked_term's
  // select is written as a bit mask so that the loop vectorises (with `?:` GCC branches per element): the same
  // value, as (m != 0 ? v : +0) * m for every v, NaN included.
  using Bits = std::conditional_t<sizeof(S) == 4, std::uint32_t, std::uint64_t>;
  parallel_rows(rows, cols, [&](std::int64_t b0, std::int64_t b1) {
    for (std::int64_t b = b0; b < b1; ++b) {
      for (std::int64_t i = b * cols, e = i + cols; i < e; ++i) {
        const S c = x(b, i) - mu;
        const S v = c * c;
        const MP mv = mp[i];
        const Bits keep = Bits(0) - static_cast<Bits>(mv != MP(0));  // all ones or zero
        const S sel = std::bit_cast<S>(static_cast<Bits>(std::bit_cast<Bits>(v) & keep));
        o[i] = sel * static_cast<S>(mv);
      }
    }
  });
  at::Tensor var = out.sum().div(mask_sum.add(1e-8));                          // ()
  var = var.mul(mask_sum.div(mask_sum.sub(1)));                           // () Bessel, in verl's dtypes
  const S rs = at::_ops::rsqrt::call(var.add(1e-8)).item<S>();
  // Pass 3: (x - mean) * rsqrt(var + 1e-8) [* mask]; two loops so that neither branches per element.
  parallel_rows(rows, cols, [&](std::int64_t b0, std::int64_t b1) {
    for (std::int64_t b = b0; b < b1; ++b) {
      if (times_mask) {
        for (std::int64_t i = b * cols, e = i + cols; i < e; ++i) o[i] = ((x(b, i) - mu) * rs) * static_cast<S>(mp[i]);
      } else {
        for (std::int64_t i = b * cols, e = i + cols; i < e; ++i) o[i] = (x(b, i) - mu) * rs;
      }
    }
  });
  return out;
}

//! verl_F.masked_whiten(x, mask) (then `* mask` when `times_mask`), bit-identical to the ATen operation chain
//! of verl::functional::masked_whiten, in three passes over the data and one allocation (the result). `x(b, i)`
//! yields element i (flat index) of row b of the values, recomputed on each pass (it must be deterministic).
//! Summation goes through ATen's sum on the scratch/result tensor (see the file comment).
//! \throws InputError (message prefixed by `owner`) when the mask selects fewer than two elements.
template <class S, class M, class X>
[[nodiscard]] at::Tensor masked_whiten_fused(std::string_view owner, const X& x, const at::Tensor& mask,
                                                    bool times_mask) {
  const std::int64_t rows = mask.size(0), cols = mask.size(1);
  const M* m = mask.data_ptr<M>();
  at::Tensor out =
      verl::detail::empty_for_overwrite({rows, cols}, at::TensorOptions().dtype(c10::CppTypeToScalarType<S>::value));  // (B,T)
  S* o = out.data_ptr<S>();
  std::atomic<std::int64_t> count{0};
  // Pass 1: masked_sum's summands of x, and the mask count.
  parallel_rows(rows, cols, [&](std::int64_t b0, std::int64_t b1) {
    std::int64_t c = 0;
    for (std::int64_t b = b0; b < b1; ++b) {
      for (std::int64_t i = b * cols, e = i + cols; i < e; ++i) {
        o[i] = masked_term<S, M>(x(b, i), m[i]);
        if constexpr (!std::is_floating_point_v<M>) c += static_cast<std::int64_t>(m[i]);
      }
    }
    count.fetch_add(c, std::memory_order_relaxed);
  });
  return masked_whiten_finish<S, M>(owner, x, mask, m, std::move(out), count.load(), times_mask);
}

// ---------------------------------------------------------------------------------------------------------
// Branch-free scalar helpers. The token loops below must be straight-line code to vectorise: GCC 12 neither
// if-converts the `?:` of std::min/std::max once jump threading has rewritten it nor vectorises a bool -> float
// conversion, so selections are written as bit masks. Each gives exactly the value of the expression it replaces.

//! `c ? a : b`, as a bit-mask blend.
template <class T>
[[gnu::always_inline]] inline T select(bool c, T a, T b) {
  using U = std::conditional_t<sizeof(T) == 4, std::uint32_t, std::uint64_t>;
  const U k = U(0) - static_cast<U>(c);  // all ones or zero
  return std::bit_cast<T>(static_cast<U>((std::bit_cast<U>(a) & k) | (std::bit_cast<U>(b) & ~k)));
}

//! std::min(a, b) (`b < a ? b : a`: a NaN in b gives a, a NaN in a gives a).
template <class T>
[[gnu::always_inline]] inline T min_of(T a, T b) {
  return select(b < a, b, a);
}

//! std::max(a, b) (`a < b ? b : a`).
template <class T>
[[gnu::always_inline]] inline T max_of(T a, T b) {
  return select(a < b, b, a);
}

//! Clamp with NaN passing through, as ATen's clamp (and std::clamp).
template <class T>
[[gnu::always_inline]] inline T clamp_nan(T x, T lo, T hi) {
  return select(x < lo, lo, select(hi < x, hi, x));  // NaN fails both comparisons and passes through
}

//! 1 or 0 as T (branch-free selection: for finite x, x * 1 + y * 0 is exactly x).
template <class T>
[[gnu::always_inline]] inline T ind(bool c) {
  return select(c, T(1), T(0));
}

// ---------------------------------------------------------------------------------------------------------
// Fused policy losses: per-row accumulation, then agg_loss's arithmetic on the row totals.

//! Per-row totals of a fused loss pass (double accumulators, masked by the mask's value).
struct RowAcc {
  double loss = 0;   //!< sum_t m * pg
  double count = 0;  //!< sum_t m
  double kl = 0;     //!< sum_t m * (metric 1: ppo_kl summand)
  double clip = 0;   //!< sum_t m * (metric 2: pg_clipfrac indicator)
  double lower = 0;  //!< sum_t m * (metric 3: pg_clipfrac_lower indicator)
};

//! One token's loss, its derivative w.r.t. log_prob, and its metric summands; ok = false makes the fused path
//! give up (the caller falls back to verl's ATen sequence). A token function should compute every field without
//! branching on the data (selections as 0/1 blends, `ok` as a flag, not an early return): token_pass runs it in
//! a loop that the compiler vectorises only when it is straight-line code.
template <class T>
struct Token {
  T pg{};
  T dpg{};
  T kl{}, clip{}, lower{};
  bool ok = true;
};

//! A token pass's per-block preparation: none. A preparation fills `slots` scratch arrays for a block of rows with
//! ATen's vectorised kernels (exp, sigmoid) so that the token loop never calls libm: see token_pass.
struct NoPrep {
  static constexpr int slots = 0;
  template <class T>
  void operator()(std::int64_t, std::int64_t, T*, const at::Tensor&, std::int64_t) const {}
};

//! The mask value as T inside a vectorised loop. An int64 mask goes through int32 (x86 before AVX-512 has no
//! vector int64 -> float conversion, and one scalar conversion stops the whole loop from vectorising); the
//! result is exact when the value fits in int32, and `wide` collects the high bits that say it did not.
template <class T, class M>
[[gnu::always_inline]] inline T mask_as(M m, std::uint64_t& wide) {
  if constexpr (std::is_same_v<M, std::int64_t>) {
    wide |= (static_cast<std::uint64_t>(m) + 0x80000000ull) & 0xFFFFFFFF00000000ull;
    return static_cast<T>(static_cast<std::int32_t>(m));
  } else {
    return static_cast<T>(m);
  }
}

//! sum of x[0..n) in double, in 8 interleaved lanes (a loop the compiler vectorises; a single running sum is
//! a dependency chain it may not reorder).
template <class T>
[[gnu::always_inline]] inline double lane_sum(const T* x, std::int64_t n) {
  double acc[8] = {};
  std::int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int j = 0; j < 8; ++j) acc[j] += static_cast<double>(x[i + j]);
  }
  for (; i < n; ++i) acc[0] += static_cast<double>(x[i]);
  return ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]));
}

//! The arrays token_rows writes per token of a block: slot k of token j at out[k * cap + j].
inline constexpr int kTokenOutSlots = 5;  // masked loss, kl, clip, lower (each times m), m

//! Rows [bb, be) of a token pass: phase 1 evaluates `tok` on every token and writes its masked summands into
//! `out` (straight-line code: it vectorises), phase 2 sums them per row in double. Returns false when a token
//! reported !ok or an int64 mask value does not fit in int32 (mask_as).
template <bool Grad, bool Weighted, class T, class M, class Tok>
[[gnu::always_inline]] inline bool token_rows_impl(const Tok& tok, std::int64_t bb, std::int64_t be, std::int64_t R,
                                                   const M* mask, T* g, const T* w, const T* sp, std::int64_t cap,
                                                   T* out, RowAcc* rows) {
  const std::int64_t i0 = bb * R;
  T* const o_loss = out;
  T* const o_kl = out + cap;
  T* const o_clip = out + 2 * cap;
  T* const o_lower = out + 3 * cap;
  T* const o_m = out + 4 * cap;
  unsigned bad = 0;
  std::uint64_t wide = 0;
  for (std::int64_t b = bb; b < be; ++b) {
    // No iteration depends on another (the outputs are fresh buffers no input aliases): without the pragma GCC
    // gives up on the dozen run-time alias checks it would need.
#pragma GCC ivdep
    for (std::int64_t i = b * R, e = i + R; i < e; ++i) {
      const std::int64_t j = i - i0;
      const Token<T> t = tok(b, i, sp + j, cap);
      bad |= static_cast<unsigned>(!t.ok);
      const T m = mask_as<T>(mask[i], wide);
      T pg = t.pg, dpg = t.dpg;
      if constexpr (Weighted) {  // verl: pg_losses * rollout_is_weights, the last factor
        pg *= w[i];
        dpg *= w[i];
      }
      if constexpr (Grad) g[i] = dpg * m;
      // A non-finite loss at a masked token is left out, as masked_sum's where() does (pg * 0 would be NaN).
      const T pgm = pg * m;
      o_loss[j] = select(m != T(0), pgm, T(0));
      o_kl[j] = t.kl * m;
      o_clip[j] = t.clip * m;
      o_lower[j] = t.lower * m;
      o_m[j] = m;
    }
  }
  for (std::int64_t b = bb; b < be; ++b) {
    const std::int64_t j = b * R - i0;
    RowAcc& s = rows[b];
    s.loss = lane_sum(o_loss + j, R);
    s.count = lane_sum(o_m + j, R);
    s.kl = lane_sum(o_kl + j, R);
    s.clip = lane_sum(o_clip + j, R);
    s.lower = lane_sum(o_lower + j, R);
  }
  return bad == 0 && wide == 0;
}

template <bool Grad, bool Weighted, class T, class M, class Tok>
bool token_rows_base(const Tok& tok, std::int64_t bb, std::int64_t be, std::int64_t R, const M* mask, T* g,
                     const T* w, const T* sp, std::int64_t cap, T* out, RowAcc* rows) {
  return token_rows_impl<Grad, Weighted>(tok, bb, be, R, mask, g, w, sp, cap, out, rows);
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
// AVX2 without FMA on purpose: no multiply-add may be contracted, so every value is the same IEEE operation as
// in the baseline build (and as verl's element-wise kernels).
template <bool Grad, bool Weighted, class T, class M, class Tok>
[[gnu::target("avx2")]] bool token_rows_avx2(const Tok& tok, std::int64_t bb, std::int64_t be, std::int64_t R,
                                             const M* mask, T* g, const T* w, const T* sp, std::int64_t cap,
                                             T* out, RowAcc* rows) {
  return token_rows_impl<Grad, Weighted>(tok, bb, be, R, mask, g, w, sp, cap, out, rows);
}
#endif

#if defined(__GNUC__) || defined(__clang__)
#define VERL_DETAIL_SIMD_BODY __attribute__((always_inline))
#else
#define VERL_DETAIL_SIMD_BODY
#endif

template <class F>
void rows_base(const F& f, std::int64_t b0, std::int64_t b1) {
  f(b0, b1);
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
// AVX2 without FMA: the same IEEE operations as the baseline build (see token_rows_avx2).
template <class F>
[[gnu::target("avx2")]] void rows_avx2(const F& f, std::int64_t b0, std::int64_t b1) {
  f(b0, b1);  // `f` (a lambda called once) is inlined here and its loops vectorised for AVX2
}
#endif

//! parallel_rows whose body `f(b0, b1)` is compiled for AVX2 too and run so where the CPU has it. For bodies
//! written as straight-line loops (select, min_of, ...), which then vectorise 8 floats wide. The body must be
//! inlined into rows_avx2 for that: give the lambda VERL_DETAIL_SIMD_BODY after its parameter list (GCC does not
//! inline a large lambda on its own, and a body left out of line runs the baseline ISA's code).
template <class F>
void parallel_rows_simd(std::int64_t B, std::int64_t R, const F& f) {
  const bool avx2 = cpu_has_avx2();
  parallel_rows(B, R, [&](std::int64_t b0, std::int64_t b1) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    if (avx2) return rows_avx2(f, b0, b1);
#endif
    rows_base(f, b0, b1);
  });
}

//! Runs `tok(b, i, s, cap) -> Token<T>` over all tokens, row-parallel, filling `rows` and (when g != nullptr)
//! the unscaled gradient g[i] = dpg * m; with rollout-IS weights `w` (else nullptr) pg and dpg are multiplied by
//! w[i] first. Rows go in blocks of ~8K tokens; before each block,
//! `prep(i0, n, s, scratch, cap)` fills slot j of tokens i0..i0+n-1 at s[j * cap + (i - i0)] (a per-thread,
//! cache-resident scratch tensor), and `tok` reads its slots at s[j * cap] with s already offset to token i.
//! Each row's tokens are visited in increasing i by one thread. Returns false when a token reported !ok (the
//! caller falls back).
template <class T, class M, class Tok, class Prep = NoPrep>
bool token_pass(std::int64_t B, std::int64_t R, const M* mask, T* g, const T* w, std::vector<RowAcc>& rows,
                const Tok& tok, const Prep& prep = {}) {
  rows.assign(static_cast<std::size_t>(B), RowAcc{});
  std::atomic<bool> bad{false};
  const bool avx2 = cpu_has_avx2();
  parallel_rows(B, R, [&](std::int64_t b0, std::int64_t b1) {
    const std::int64_t blk = std::max<std::int64_t>(1, 8192 / std::max<std::int64_t>(1, R));
    const std::int64_t cap = blk * R;
    // (prep slots + token outputs) * cap: ~8K tokens' worth of each, cache-resident between the phases.
    const at::Tensor scratch =
        at::empty({(Prep::slots + kTokenOutSlots) * cap}, at::TensorOptions().dtype(c10::CppTypeToScalarType<T>::value));
    T* const sp = scratch.data_ptr<T>();
    T* const out = sp + Prep::slots * cap;
    for (std::int64_t bb = b0; bb < b1 && !bad.load(std::memory_order_relaxed); bb += blk) {
      const std::int64_t be = std::min(b1, bb + blk);
      if constexpr (Prep::slots > 0) prep(bb * R, (be - bb) * R, sp, scratch, cap);
      // Four instantiations: without a gradient buffer the (dead) derivative math is removed, and the weights
      // are a compile-time choice (a run-time `if (w)` in the loop stops it from vectorising).
      const auto run = [&]<bool Grad, bool Weighted>(std::bool_constant<Grad>, std::bool_constant<Weighted>) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
        if (avx2) return token_rows_avx2<Grad, Weighted>(tok, bb, be, R, mask, g, w, sp, cap, out, rows.data());
#endif
        return token_rows_base<Grad, Weighted>(tok, bb, be, R, mask, g, w, sp, cap, out, rows.data());
      };
      const bool ok = g ? (w ? run(std::true_type{}, std::true_type{}) : run(std::true_type{}, std::false_type{}))
                        : (w ? run(std::false_type{}, std::true_type{}) : run(std::false_type{}, std::false_type{}));
      if (!ok) bad.store(true, std::memory_order_relaxed);
    }
  });
  return !bad.load();
}

//! Preparation: slot 0 = exp(clamp(log_prob - old_log_prob, -lim, lim)) (no clamp when lim is infinite) by
//! ATen's exp; with `sigmoid_tau`, slot 1 = sigmoid(tau (r - 1)) with tau = A > 0 ? tau_pos : tau_neg (SAPO).
template <class T, int Slots>
struct RatioPrep {
  static constexpr int slots = Slots;
  const T* lp;
  const T* olp;
  const T* adv;
  T lim;
  T tau_pos = T(1), tau_neg = T(1);
  void operator()(std::int64_t i0, std::int64_t n, T* s, const at::Tensor& scratch, std::int64_t cap) const {
    for (std::int64_t j = 0; j < n; ++j) s[j] = clamp_nan(lp[i0 + j] - olp[i0 + j], -lim, lim);
    scratch.narrow(0, 0, n).exp_();
    if constexpr (Slots > 1) {
      T* u = s + cap;
      for (std::int64_t j = 0; j < n; ++j) u[j] = select(adv[i0 + j] > T(0), tau_pos, tau_neg) * (s[j] - T(1));
      scratch.narrow(0, cap, n).sigmoid_();
    }
  }
};

//! `n + 1e-8` as verl evaluates `mask.sum(...) + 1e-8`: in the mask's dtype when floating, else in float32.
template <class M>
inline double plus_eps(double n) {
  using C = std::conditional_t<std::is_floating_point_v<M>, M, float>;
  return static_cast<double>(static_cast<C>(n) + static_cast<C>(1e-8));
}

//! Totals over rows (fixed order: deterministic for any thread count).
struct Totals {
  double loss = 0, count = 0, kl = 0, clip = 0, lower = 0, seq_count = 0, seq_mean_sum = 0;
};

template <class M>
Totals totals(const std::vector<RowAcc>& rows) {
  Totals t;
  for (const auto& s : rows) {
    t.loss += s.loss; t.count += s.count; t.kl += s.kl; t.clip += s.clip; t.lower += s.lower;
    if (s.count > 0) { t.seq_count += 1; t.seq_mean_sum += s.loss / plus_eps<M>(s.count); }
  }
  return t;
}

//! agg_loss (verl 0.7.1) from row totals: the loss and d loss / d (row b's masked token loss) per row.
//! \throws ConfigError as agg_loss when dp_size > 1 and the global normaliser is missing.
template <class M, class Info>
double aggregate(const std::vector<RowAcc>& rows, const Totals& t, LossAggMode mode, const Info& info,
                 std::int64_t R, std::vector<double>& row_scale) {
  const double dp = static_cast<double>(info.dp_size);
  row_scale.assign(rows.size(), 0.0);
  const char* missing = nullptr;
  double loss = 0;
  switch (mode) {
    case LossAggMode::token_mean: {
      if (!info.batch_num_tokens && info.dp_size > 1) { missing = "batch_num_tokens"; break; }
      const double n = info.batch_num_tokens.value_or(t.count);
      loss = t.loss / n * dp;
      std::fill(row_scale.begin(), row_scale.end(), dp / n);
      break;
    }
    case LossAggMode::seq_mean_token_sum:
    case LossAggMode::seq_mean_token_sum_norm:
    case LossAggMode::seq_mean_token_mean: {
      if (!info.global_batch_size && info.dp_size > 1) { missing = "global_batch_size"; break; }
      const double s = info.global_batch_size.value_or(t.seq_count);
      const double f = mode == LossAggMode::seq_mean_token_sum_norm
                           ? info.loss_scale_factor.value_or(static_cast<double>(R)) : 1.0;
      loss = (mode == LossAggMode::seq_mean_token_mean ? t.seq_mean_sum : t.loss) / s * dp / f;
      for (std::size_t b = 0; b < rows.size(); ++b) {
        const double n = rows[b].count;
        row_scale[b] = n > 0 ? (mode == LossAggMode::seq_mean_token_mean ? 1.0 / plus_eps<M>(n) : 1.0) * dp / s / f
                             : 0.0;
      }
      break;
    }
  }
  verl::detail::check<ConfigError>(missing == nullptr, "verl::core_algos::agg_loss: \"", to_string(mode),
                                   "\" with dp_size = ", info.dp_size, " needs the global `",
                                   missing ? missing : "", "` in GlobalBatchInfo");
  return loss;
}

//! Scales the unscaled per-token gradient by its row's scale (in place).
template <class T>
void scale_rows(T* g, std::int64_t B, std::int64_t R, const std::vector<double>& row_scale) {
  parallel_rows(B, R, [&](std::int64_t b0, std::int64_t b1) {
    for (std::int64_t b = b0; b < b1; ++b) {
      const T scale = static_cast<T>(row_scale[static_cast<std::size_t>(b)]);
      for (std::int64_t i = b * R, e = i + R; i < e; ++i) g[i] *= scale;
    }
  });
}

//! `loss` (a 0-d tensor) with the gradient `coef` w.r.t. `x` attached straight-through: the value is unchanged
//! (x - sg[x] is 0 for finite x) and autograd's d/dx is exactly coef.
inline at::Tensor attach_grad(const at::Tensor& loss, const at::Tensor& coef, const at::Tensor& x) {
  return loss.add(coef.mul(x.sub(x.detach())).sum());  // ()
}

//! d max(a, b) as autograd splits it: to the larger side, half to each on a tie (branch-free; finite inputs).
//! (== and != on floats compile to a parity branch; for finite values they are expressed by < and >.)
template <class T>
inline T max_grad(T a, T da, T b, T db) {
  const T gt = ind<T>(a > b), lt = ind<T>(b > a);
  const T tie = T(0.5) * (T(1) - gt - lt);
  return da * (gt + tie) + db * (lt + tie);
}

//! d min(a, b) as autograd splits it (branch-free; finite inputs).
template <class T>
inline T min_grad(T a, T da, T b, T db) {
  return max_grad(b, da, a, db);  // a < b is b > a: the same split with the roles of the values swapped
}

//! a != b for finite values, without a branch.
template <class T>
inline bool differ(T a, T b) {
  return (a < b) | (a > b);
}

}  // namespace verl::core_algos::detail
