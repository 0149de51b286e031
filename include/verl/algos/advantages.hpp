#pragma once
//! \file
//! Advantage estimators, verl::core_algos: verl's `verl/trainer/ppo/core_algos.py`, pinned at verl 0.7.1
//! (PyPI; the nearest release to commit b178a3cd, January 2026, that holds every estimator below). Each
//! function keeps verl's name and argument order, takes tensors, returns verl::AdvantageOutput
//! {advantages, returns}, and reproduces verl's arithmetic operation by operation, so that on CPU the
//! results are bit-identical to verl's (tests/unit/algos/test_advantages.cpp checks it against golden vectors
//! written by verl itself). verl 0.7.0 and 0.7.1 differ only in the optimal token baseline (absent from 0.7.0)
//! among these functions; docs/algorithms.md has the formulas, edge cases and differences.
//!
//! Shapes: B = batch size, T = response length. Group ids: verl takes a numpy array of uid strings; here
//! `index` is a (B,) integer tensor, and items with equal ids form a group.
//!
//! Dtypes: rewards (and values, baselines) are float32 or float64 (GAE and REINFORCE++ also accept the
//! reduced floating types on their generic path); `response_mask` is bool, integer, or floating of the
//! rewards' dtype (a floating mask of another dtype would make verl silently change precision half-way
//! through its loops; it is rejected with verl::ShapeError instead).
//!
//! Also here: typed policies verl::estimators::GAE, GRPO, ... that satisfy verl::AdvantageEstimator.

#include "verl/algos/functional.hpp"
#include "verl/algos/fused_cpu.hpp"
#include "verl/concepts/advantage_estimator.hpp"
#include "verl/core/algo_io.hpp"
#include "verl/core/errors.hpp"
#include "verl/core/huge_pages.hpp"

#include <ATen/Parallel.h>
#include <ATen/TensorOperators.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/scalar_tensor.h>
#include <ATen/ops/where.h>
#include <ATen/ops/zeros_like.h>

#include <atomic>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <unordered_map>
#include <vector>

// verl evaluates each recurrence step as separate, individually rounded tensor operations. A compiler that
// contracted `r + g * nv` into one fused multiply-add (GCC does by default when FMA is enabled, e.g. with
// -march=native) would round once instead of twice and leave verl's results by an ulp. These attributes
// keep the scalar kernels below IEEE-exact in verl's order whatever the consumer's flags.
#if defined(__clang__)
#define VERL_DETAIL_NO_FP_CONTRACT
#define VERL_DETAIL_NO_FP_CONTRACT_BODY _Pragma("clang fp contract(off)")
#elif defined(__GNUC__)
#define VERL_DETAIL_NO_FP_CONTRACT __attribute__((optimize("fp-contract=off")))
#define VERL_DETAIL_NO_FP_CONTRACT_BODY
#else
#define VERL_DETAIL_NO_FP_CONTRACT
#define VERL_DETAIL_NO_FP_CONTRACT_BODY
#endif

namespace verl::core_algos {

//! The part of verl's `AlgoConfig` (verl/trainer/config/algorithm.py, verl 0.7.1) that the advantage
//! estimators read through their `config` argument; defaults as in verl.
struct AdvantageConfig {
  double gamma = 1.0;                   //!< discount factor (REINFORCE++ reads `config.gamma`)
  double lam = 1.0;                     //!< GAE's lambda
  bool norm_adv_by_std_in_grpo = true;  //!< GRPO pass@k reads it from the config, not from its argument
};

namespace detail {

//! Throws verl::ShapeError unless rewards and mask are (B,T) of one shape, rewards floating, and the mask
//! bool, integer, or floating of the rewards' dtype.
inline void check_rewards_mask(std::string_view owner, const at::Tensor& rewards, const at::Tensor& mask) {
  verl::detail::check_br(rewards, owner, "token_level_rewards");
  verl::detail::check_like(mask, rewards, owner, "response_mask", "token_level_rewards");
  verl::detail::check<ShapeError>(at::isFloatingType(rewards.scalar_type()), owner,
                                  ": `token_level_rewards` has dtype ", rewards.scalar_type(),
                                  ", expected a floating dtype (float32 or float64)");
  const auto m = mask.scalar_type();
  verl::detail::check<ShapeError>(
      m == at::kBool || at::isIntegralType(m, /*includeBool=*/false) || m == rewards.scalar_type(), owner,
      ": `response_mask` has dtype ", m, ", expected bool, an integer dtype, or the dtype of "
      "`token_level_rewards` (", rewards.scalar_type(), ")");
  verl::detail::check<ShapeError>(mask.device() == rewards.device(), owner, ": `response_mask` is on ",
                                  mask.device(), ", expected the device of `token_level_rewards` (",
                                  rewards.device(), ")");
}

//! Throws verl::ShapeError unless `index` is a (B,) integer tensor.
inline void check_index(std::string_view owner, const at::Tensor& index, std::int64_t batch) {
  verl::detail::check<ShapeError>(index.defined(), owner, ": `index` is undefined, expected a (B,) int64 tensor");
  verl::detail::check<ShapeError>(index.dim() == 1 && index.size(0) == batch, owner, ": `index` has shape ",
                                  index.sizes(), ", expected (", batch, ",) (one group id per item)");
  verl::detail::check<ShapeError>(at::isIntegralType(index.scalar_type(), /*includeBool=*/false), owner,
                                  ": `index` has dtype ", index.scalar_type(), ", expected int64 group ids");
}

//! Items grouped by id, in order of first appearance; members of a group in batch order (verl appends
//! them while scanning the batch, and that order fixes its summation order).
struct Groups {
  std::vector<std::vector<std::int64_t>> members;  //!< item positions of each group
  std::vector<std::int64_t> group_of;              //!< (B) group number of each item
};

inline Groups make_groups(const at::Tensor& index) {
  const auto ids = index.to(at::kCPU, at::kLong).contiguous();  // (B,)
  const std::int64_t* p = ids.data_ptr<std::int64_t>();
  const std::int64_t b = ids.numel();
  Groups g;
  g.group_of.resize(static_cast<std::size_t>(b));
  std::unordered_map<std::int64_t, std::int64_t> number;
  number.reserve(static_cast<std::size_t>(b));
  for (std::int64_t i = 0; i < b; ++i) {
    const auto [it, added] = number.try_emplace(p[i], static_cast<std::int64_t>(g.members.size()));
    if (added) g.members.emplace_back();
    g.members[static_cast<std::size_t>(it->second)].push_back(i);
    g.group_of[static_cast<std::size_t>(i)] = it->second;
  }
  return g;
}

//! The scores of one group as a contiguous (n,) tensor, as verl's torch.stack of the group's 0-dim scores.
inline at::Tensor group_scores(const at::Tensor& scores, const std::vector<std::int64_t>& members) {
  auto pos = at::empty({static_cast<std::int64_t>(members.size())}, at::TensorOptions().dtype(at::kLong));  // (n,)
  std::copy(members.begin(), members.end(), pos.data_ptr<std::int64_t>());
  return scores.index_select(0, pos.to(scores.device()));  // (n,)
}

//! A (B,) tensor of `dtype` on `device` holding `per_item` (exact: float32 and float64 values fit a double).
inline at::Tensor per_item_tensor(const std::vector<double>& per_item, at::ScalarType dtype, at::Device device) {
  auto t = at::empty({static_cast<std::int64_t>(per_item.size())}, at::TensorOptions().dtype(at::kDouble));  // (B,)
  std::copy(per_item.begin(), per_item.end(), t.data_ptr<double>());
  return t.to(device, dtype);  // (B,)
}

//! verl_F.masked_whiten, with the error raised for a mask selecting fewer than two tokens renamed to `owner`.
inline at::Tensor whiten(std::string_view owner, const at::Tensor& values, const at::Tensor& mask) {
  try {
    return functional::masked_whiten(values, mask);
  } catch (const InputError& e) {
    throw InputError(verl::detail::concat_message(owner, ": `response_mask` cannot be whitened over (", e.what(),
                                                  "); verl raises ValueError here too"));
  }
}

//! 1 - m in the arithmetic verl's `(1 - response_mask[:, t])` uses, converted to S: integer subtraction for
//! integer masks (bool counts as 0/1), S subtraction for a floating mask of dtype S.
template <class S, class M>
inline S one_minus(M m) {
  if constexpr (std::is_floating_point_v<M>) {
    return S(1) - static_cast<S>(m);
  } else {
    return static_cast<S>(std::int64_t{1} - static_cast<std::int64_t>(m));
  }
}

//! GAE over rows [b0, b1) of contiguous (B,T) data, K rows interleaved so that K independent recurrences
//! hide each other's latency. Per step the operations and their order are verl's:
//!   delta = (r + gamma * nv) - v;  g' = delta + (gamma*lam) * g;  nv = v*m + (1-m)*nv;  g = g'*m + (1-m)*g.
template <int K, class S, class M>
VERL_DETAIL_NO_FP_CONTRACT void gae_rows(const S* r, const S* v, const M* m, S* adv, S* ret, std::int64_t b0,
                                         std::int64_t t_len, S gamma, S gamma_lam) {
  VERL_DETAIL_NO_FP_CONTRACT_BODY
  S nv[K] = {};
  S g[K] = {};
  for (std::int64_t t = t_len - 1; t >= 0; --t) {
    for (int k = 0; k < K; ++k) {
      const std::int64_t i = (b0 + k) * t_len + t;
      const S mt = static_cast<S>(m[i]);
      const S om = one_minus<S>(m[i]);
      const S delta = (r[i] + gamma * nv[k]) - v[i];
      const S g_new = delta + gamma_lam * g[k];
      nv[k] = v[i] * mt + om * nv[k];
      g[k] = g_new * mt + om * g[k];
      adv[i] = g[k];
      ret[i] = g[k] + v[i];  // verl: returns = advantages + values
    }
  }
}

//! K backward recurrences over rows [b0, b0+K), interleaved to hide each other's latency (one row alone is a
//! chain of dependent adds and multiplies per token) and skewed: row k runs kSkew tokens behind row k-1. Rows in
//! lock step at one column sit a multiple of the row stride apart, so for rows of >= 4096 elements all K rows'
//! lines fall into the same cache sets and evict each other (measured ~9x slower per element at (1024,4096));
//! kSkew tokens (>= one line) per row move each row to other sets. Row k first runs its first (K-1-k)*kSkew steps
//! alone, then all rows step together, then row k runs its last k*kSkew steps. `step(i, state)` does one step at
//! flat element i with row k's `State` (value-initialised); each row's elements are visited from its last to
//! its first, so the result is that of K separate backward loops.
inline constexpr std::int64_t kSkew = 16;

template <int K, class State, class Step>
[[gnu::always_inline]] inline void skewed_backward_rows(std::int64_t b0, std::int64_t t_len, const Step& step) {
  const std::int64_t lead = (K - 1) * kSkew;  // steps row 0 runs ahead of row K-1
  if (K == 1 || t_len <= lead) {
    for (int k = 0; k < K; ++k) {
      State st{};
      for (std::int64_t i = (b0 + k + 1) * t_len - 1, e = (b0 + k) * t_len; i >= e; --i) step(i, st);
    }
    return;
  }
  State st[K] = {};
  // Element of row k at its step j (0 = last token): last(k) - j.
  const auto last = [&](int k) { return (b0 + k + 1) * t_len - 1; };
  for (int k = 0; k < K - 1; ++k) {  // prologue: row k's first (K-1-k)*kSkew steps
    for (std::int64_t j = 0, n = (K - 1 - k) * kSkew; j < n; ++j) step(last(k) - j, st[k]);
  }
  // Lock step: at iteration j row k is at its step j + (K-1-k)*kSkew, element base - j + k*(t_len + kSkew).
  const std::int64_t base = last(0) - lead;
  const std::int64_t stride = t_len + kSkew;
  for (std::int64_t j = 0, n = t_len - lead; j < n; ++j) {
    for (int k = 0; k < K; ++k) step(base - j + k * stride, st[k]);
  }
  for (int k = 1; k < K; ++k) {  // epilogue: row k's last k*kSkew steps
    for (std::int64_t j = t_len - k * kSkew; j < t_len; ++j) step(last(k) - j, st[k]);
  }
}

//! GAE over rows [b0, b0+K) of long rows, skewed (skewed_backward_rows); the same arithmetic as gae_rows. It
//! also does the whitening's first pass, as REINFORCE++'s does: `o` gets masked_term(advantage, m), and for
//! integer masks `cnt` the mask count, `bin` whether every value is 0 or 1, `m8` the mask as bytes.
template <int K, class S, class M>
VERL_DETAIL_NO_FP_CONTRACT void gae_skewed_rows(const S* __restrict r, const S* __restrict v, const M* __restrict m,
                                                S* __restrict adv, S* __restrict ret, S* __restrict o,
                                                std::uint8_t* __restrict m8, std::int64_t b0, std::int64_t t_len,
                                                S gamma, S gamma_lam, std::int64_t& cnt, bool& bin) {
  VERL_DETAIL_NO_FP_CONTRACT_BODY
  struct State {
    S nv, g;
  };
  std::int64_t c = 0;
  bool bn = true;
  skewed_backward_rows<K, State>(b0, t_len, [&](std::int64_t i, State& st) {
    const M mv = m[i];
    const S mt = static_cast<S>(mv);
    const S om = one_minus<S>(mv);
    const S delta = (r[i] + gamma * st.nv) - v[i];
    const S g_new = delta + gamma_lam * st.g;
    st.nv = v[i] * mt + om * st.nv;
    st.g = g_new * mt + om * st.g;
    adv[i] = st.g;
    ret[i] = st.g + v[i];                          // verl: returns = advantages + values
    o[i] = (mv != M(0) ? st.g : S(0)) * mt;        // masked_term(advantages, mask)
    if constexpr (!std::is_floating_point_v<M>) {
      c += static_cast<std::int64_t>(mv);
      bn &= (static_cast<std::uint64_t>(mv) <= 1u);
      m8[i] = static_cast<std::uint8_t>(mv);
    }
  });
  cnt += c;
  bin = bin && bn;
}

//! State of REINFORCE++'s fused first pass: the summands of the whitening's first sum, the mask count, and a
//! byte copy of the mask that passes 2 and 3 read instead of the (often int64) mask while it holds only 0/1.
template <class S, class M>
struct ReinforcePass {
  const S* r;               //!< (B,T) rewards
  const M* m;               //!< (B,T) mask
  S* ret;                   //!< (B,T) returns (output)
  S* o;                     //!< (B,T) masked_term(returns, mask): masked_whiten's first summands (output)
  std::uint8_t* m8;         //!< (B,T) the mask as bytes (output; valid while every value is 0 or 1), or null
  std::int64_t t_len;
  S gamma;
};

//! REINFORCE++'s fused first pass over rows [b0, b0+K), interleaved and skewed (skewed_backward_rows).
template <int K, class S, class M>
VERL_DETAIL_NO_FP_CONTRACT void reinforce_pp_tile(const ReinforcePass<S, M>& p, std::int64_t b0, bool& bin,
                                                  std::int64_t& cnt) {
  VERL_DETAIL_NO_FP_CONTRACT_BODY
  // Locals: the byte stores may alias anything, so fields read through `p` would be reloaded on every step.
  const S* __restrict r = p.r;
  const M* __restrict m = p.m;
  S* __restrict ret = p.ret;
  S* __restrict o = p.o;
  std::uint8_t* __restrict m8 = p.m8;
  const S gamma = p.gamma;
  const std::int64_t t_len = p.t_len;
  std::int64_t c = 0;
  bool bn = true;
  // One backward step at element i: rr = r + gamma * rr; ret = rr; rr = rr * m. `o` gets masked_term(ret, m) =
  // (m != 0 ? ret : 0) * m, which for m != 0 is the new rr and for m == 0 is 0 * m. Integer masks: count, check
  // 0/1, copy as a byte.
  const auto step = [&](std::int64_t i, S& rr) {
    const M mv = m[i];
    const S ms = static_cast<S>(mv);
    rr = r[i] + gamma * rr;
    ret[i] = rr;
    rr = rr * ms;
    o[i] = mv != M(0) ? rr : S(0) * ms;
    if constexpr (!std::is_floating_point_v<M>) {
      c += static_cast<std::int64_t>(mv);
      bn &= (static_cast<std::uint64_t>(mv) <= 1u);
      m8[i] = static_cast<std::uint8_t>(mv);
    }
  };
  skewed_backward_rows<K, S>(b0, t_len, step);
  cnt += c;
  bin = bin && bn;
}

inline constexpr int kInterleave = 8;  //!< rows per interleaved tile in the CPU kernels

//! Runs `tile.template operator()<K>(b0)` over all rows, in tiles of kInterleave rows plus single-row tails,
//! spread over LibTorch's intra-op threads (detail::parallel_rows).
template <int LongK = 1, class Tile>
void for_each_row_tile(std::int64_t rows, std::int64_t t_len, const Tile& tile) {
  // Long rows: LongK rows at a time. K rows walked backwards in lock step touch K x (streams) lines whose
  // addresses differ by multiples of the row stride, so for rows of >= 4096 elements they fall into the same
  // cache sets and evict each other once K x streams exceeds the 8 ways (measured at (1024,4096) with K = 8:
  // ~9x slower per element than at (256,2048)). GAE uses K = 1 (REINFORCE++ has its own skewed tiles).
  if (t_len >= 4096) {
    const std::int64_t tiles = (rows + LongK - 1) / LongK;
    parallel_rows(tiles, t_len * LongK, [&](std::int64_t begin, std::int64_t end) {
      for (std::int64_t tb = begin; tb < end; ++tb) {
        const std::int64_t b0 = tb * LongK;
        if (b0 + LongK <= rows) {
          tile.template operator()<LongK>(b0);
        } else {
          for (std::int64_t b = b0; b < rows; ++b) tile.template operator()<1>(b);
        }
      }
    });
    return;
  }
  const std::int64_t tiles = (rows + kInterleave - 1) / kInterleave;
  parallel_rows(tiles, t_len * kInterleave, [&](std::int64_t begin, std::int64_t end) {
    for (std::int64_t tb = begin; tb < end; ++tb) {
      const std::int64_t b0 = tb * kInterleave;
      if (b0 + kInterleave <= rows) {
        tile.template operator()<kInterleave>(b0);
      } else {
        for (std::int64_t b = b0; b < rows; ++b) tile.template operator()<1>(b);
      }
    }
  });
}

//! GAE's loop written with tensor operations exactly as verl writes it: the path for other devices and dtypes.
inline at::Tensor gae_generic(const at::Tensor& rewards, const at::Tensor& values, const at::Tensor& mask_in,
                              double gamma, double lam) {
  const auto mask = mask_in.scalar_type() == at::kBool ? mask_in.to(at::kLong) : mask_in;  // (B,T)
  const std::int64_t t_len = rewards.size(-1);
  auto advantages = at::empty_like(rewards);                   // (B,T)
  auto nextvalues = at::zeros_like(rewards.select(1, 0));      // (B,)
  auto lastgaelam = at::zeros_like(rewards.select(1, 0));      // (B,)
  for (std::int64_t t = t_len - 1; t >= 0; --t) {
    const auto r = rewards.select(1, t);                       // (B,)
    const auto v = values.select(1, t);                        // (B,)
    const auto m = mask.select(1, t);                          // (B,)
    const auto one_minus_m = m.neg().add(1);                   // (B,) 1 - m, in the mask's dtype
    const auto delta = (r + nextvalues * gamma) - v;           // (B,)
    const auto lastgaelam_new = delta + lastgaelam * (gamma * lam);
    nextvalues = v * m + one_minus_m * nextvalues;
    lastgaelam = lastgaelam_new * m + one_minus_m * lastgaelam;
    advantages.select(1, t).copy_(lastgaelam);
  }
  return advantages;
}

//! REINFORCE++'s loop written with tensor operations exactly as verl writes it.
inline at::Tensor reinforce_pp_generic(const at::Tensor& rewards, const at::Tensor& mask, double gamma) {
  auto returns = at::zeros_like(rewards);                       // (B,T)
  auto running = at::zeros_like(rewards.select(1, 0));          // (B,)
  for (std::int64_t t = rewards.size(-1) - 1; t >= 0; --t) {
    running = rewards.select(1, t) + running * gamma;           // (B,)
    returns.select(1, t).copy_(running);
    running = running * mask.select(1, t);
  }
  return returns;
}

//! True when the CPU kernels apply (CPU tensors of float32/float64 values and a supported mask dtype).
inline bool use_cpu_kernel(const at::Tensor& rewards, const at::Tensor& mask) {
  const auto s = rewards.scalar_type();
  return rewards.device().is_cpu() && (s == at::kFloat || s == at::kDouble) &&
         dispatch_value_mask(s, mask.scalar_type(), [](auto, auto) {});
}

}  // namespace detail

// ---------------------------------------------------------------------------------------------------------
// Token-level estimators (loops over T in verl).

//! Generalized Advantage Estimation. verl 0.7.1 `compute_gae_advantage_return` (verl/trainer/ppo/core_algos.py;
//! unchanged from 0.7.0).
//!
//! Backwards over t, with nv = g = 0 after the last token:
//!   delta_t = r_t + gamma * nv - V_t;  g_t' = delta_t + gamma*lam * g;
//!   nv = m_t ? V_t : nv;  g = m_t ? g_t' : g  (written, as verl writes it, as v*m + (1-m)*nv);
//!   advantages_t = g, returns = advantages + values, then advantages = masked_whiten(advantages, mask).
//! Masked tokens (interior gaps included) are skipped: they carry the next valid token's values through.
//! As in verl, advantages are whitened but not re-masked (masked positions hold whitened nonzero values).
//!
//! \param token_level_rewards (B,T) float32/float64; \param values (B,T) same dtype;
//! \param response_mask (B,T) 0/1; \param gamma discount; \param lam GAE lambda (`gamma*lam` is formed in double
//! and then rounded to the tensor dtype, as Python does).
//! CPU float32/float64: one pass over T per row on the raw data (rows interleaved, threads across rows),
//! bit-identical to verl. Other devices/dtypes: verl's tensor loop.
//! \throws ShapeError on shapes/dtypes; InputError when the mask selects fewer than two tokens (verl raises
//! ValueError in masked_whiten).
[[nodiscard]] inline AdvantageOutput compute_gae_advantage_return(const at::Tensor& token_level_rewards,
                                                                  const at::Tensor& values,
                                                                  const at::Tensor& response_mask, double gamma,
                                                                  double lam) {
  constexpr std::string_view owner = "verl::core_algos::compute_gae_advantage_return";
  detail::check_rewards_mask(owner, token_level_rewards, response_mask);
  verl::detail::check_like(values, token_level_rewards, owner, "values", "token_level_rewards");
  verl::detail::check<ShapeError>(values.scalar_type() == token_level_rewards.scalar_type() &&
                                      values.device() == token_level_rewards.device(),
                                  owner, ": `values` has dtype ", values.scalar_type(), " on ", values.device(),
                                  ", expected those of `token_level_rewards` (", token_level_rewards.scalar_type(),
                                  " on ", token_level_rewards.device(), ")");
  at::Tensor advantages;  // (B,T)
  at::Tensor returns;     // (B,T)
  if (detail::use_cpu_kernel(token_level_rewards, response_mask)) {
    const auto r = token_level_rewards.contiguous();  // (B,T)
    const auto v = values.contiguous();               // (B,T)
    const auto m = response_mask.contiguous();        // (B,T)
    advantages = verl::detail::empty_for_overwrite(r.sizes(), r.options());  // (B,T)
    returns = verl::detail::empty_for_overwrite(r.sizes(), r.options());     // (B,T)
    const std::int64_t rows = r.size(0);
    const std::int64_t t_len = r.size(1);
    detail::dispatch_value_mask(r.scalar_type(), m.scalar_type(), [&](auto s, auto mk) {
      using S = decltype(s);
      using M = decltype(mk);
      const S* rp = r.data_ptr<S>();
      const S* vp = v.data_ptr<S>();
      const M* mp = m.data_ptr<M>();
      S* ap = advantages.data_ptr<S>();
      S* tp = returns.data_ptr<S>();
      const S g = static_cast<S>(gamma);
      const S gl = static_cast<S>(gamma * lam);
      if (t_len >= 4096) {
        // Long rows: 3 skewed rows at a time (5 streams each; see reinforce_pp_tile's K), the whitening's first
        // pass fused in, and passes 2 and 3 reading a byte copy of a 0/1 integer mask (4 MB instead of 32 MB at
        // (1024,4096)). One thread at (1024,4096): one row at a time 31 ms, 3 skewed rows 22 ms, fused ~17 ms.
        constexpr int K = 3;
        constexpr bool int_mask = !std::is_floating_point_v<M>;
        auto summands = verl::detail::empty_for_overwrite(r.sizes(), r.options());  // (B,T)
        at::Tensor bytes;                                                           // (B,T) uint8
        if constexpr (int_mask) bytes = verl::detail::empty_for_overwrite(r.sizes(), at::TensorOptions().dtype(at::kByte));
        S* op = summands.data_ptr<S>();
        std::uint8_t* bp = int_mask ? bytes.data_ptr<std::uint8_t>() : nullptr;
        std::atomic<std::int64_t> count{0};
        std::atomic<bool> binary{true};
        const std::int64_t tiles = (rows + K - 1) / K;
        verl::detail::parallel_rows(tiles, t_len * K, [&](std::int64_t begin, std::int64_t end) {
          std::int64_t c = 0;
          bool bin = true;
          for (std::int64_t tb = begin; tb < end; ++tb) {
            if (tb * K + K <= rows) {
              detail::gae_skewed_rows<K>(rp, vp, mp, ap, tp, op, bp, tb * K, t_len, g, gl, c, bin);
            } else {
              for (std::int64_t b = tb * K; b < rows; ++b) {
                detail::gae_skewed_rows<1>(rp, vp, mp, ap, tp, op, bp, b, t_len, g, gl, c, bin);
              }
            }
          }
          count.fetch_add(c, std::memory_order_relaxed);
          if (!bin) binary.store(false, std::memory_order_relaxed);
        });
        const auto x = [ap](std::int64_t, std::int64_t i) { return ap[i]; };
        if (int_mask && binary.load()) {
          advantages = detail::masked_whiten_finish<S, M>(owner, x, m, bp, std::move(summands), count.load(), false);
        } else {
          advantages = detail::masked_whiten_finish<S, M>(owner, x, m, mp, std::move(summands), count.load(), false);
        }
        return;
      }
      detail::for_each_row_tile(rows, t_len, [&]<int K>(std::int64_t b0) {
        detail::gae_rows<K>(rp, vp, mp, ap, tp, b0, t_len, g, gl);
      });
      advantages = detail::masked_whiten_fused<S, M>(
          owner, [ap](std::int64_t, std::int64_t i) { return ap[i]; }, m, /*times_mask=*/false);
    });
    return {advantages, returns};
  }
  advantages = detail::gae_generic(token_level_rewards, values, response_mask, gamma, lam);
  returns = advantages + values;
  return {detail::whiten(owner, advantages, response_mask), returns};
}

//! REINFORCE++. verl 0.7.1 `compute_reinforce_plus_plus_outcome_advantage` (verl/trainer/ppo/core_algos.py;
//! unchanged from 0.7.0).
//!
//! Backwards over t with rr = 0: rr = r_t + gamma * rr; returns_t = rr; rr = rr * m_t (reset at masked tokens,
//! so a masked token's return is its own reward plus the discounted return after it, as in verl);
//! advantages = masked_whiten(returns, mask) * mask.
//! \param config reads `gamma` (verl reads `config.gamma`; verl asserts a config is given).
//! CPU float32/float64, bit-identical to verl: one backward pass over each row (rows in skewed tiles of 3, see
//! reinforce_pp_tile) writes the returns, masked_whiten's first summands, the mask count and a byte copy of a 0/1
//! integer mask; ATen sums the summands; two forward passes (variance summands, output) read the returns and the
//! byte mask. Else verl's tensor loop.
//! \throws ShapeError on shapes/dtypes; InputError when the mask selects fewer than two tokens.
[[nodiscard]] inline AdvantageOutput compute_reinforce_plus_plus_outcome_advantage(const at::Tensor& token_level_rewards,
                                                                                   const at::Tensor& response_mask,
                                                                                   const AdvantageConfig& config = {}) {
  constexpr std::string_view owner = "verl::core_algos::compute_reinforce_plus_plus_outcome_advantage";
  detail::check_rewards_mask(owner, token_level_rewards, response_mask);
  at::Tensor returns;     // (B,T)
  at::Tensor advantages;  // (B,T)
  if (detail::use_cpu_kernel(token_level_rewards, response_mask)) {
    const auto r = token_level_rewards.contiguous();  // (B,T)
    const auto m = response_mask.contiguous();        // (B,T)
    returns = verl::detail::empty_for_overwrite(r.sizes(), r.options());  // (B,T)
    const std::int64_t rows = r.size(0), t_len = r.size(1);
    detail::dispatch_value_mask(r.scalar_type(), m.scalar_type(), [&](auto s, auto mk) {
      using S = decltype(s);
      using M = decltype(mk);
      constexpr bool int_mask = !std::is_floating_point_v<M>;
      auto out = verl::detail::empty_for_overwrite(r.sizes(), r.options());  // (B,T) summands, then the advantages
      at::Tensor bytes;                                            // (B,T) uint8 copy of an integer mask
      if constexpr (int_mask) bytes = at::empty(r.sizes(), at::TensorOptions().dtype(at::kByte));
      const detail::ReinforcePass<S, M> pass{r.data_ptr<S>(), m.data_ptr<M>(), returns.data_ptr<S>(),
                                             out.data_ptr<S>(), int_mask ? bytes.data_ptr<std::uint8_t>() : nullptr,
                                             t_len, static_cast<S>(config.gamma)};
      // Pass 1 (returns, the whitening's first summands, the count, the byte mask), rows in tiles of K.
      // K = 3: each row is ~6 streams walked backwards (rewards, mask, returns, summands, bytes); beyond ~20
      // concurrent streams the hardware prefetchers lose track (measured at (1024,4096), 1 thread: K = 1 11.0 ms,
      // 2 6.2, 3 5.7, 4 7.5, 8 12.9; at (256,2048) 3 and 4 tie).
      constexpr int K = 3;
      std::atomic<std::int64_t> count{0};
      std::atomic<bool> binary{true};
      const std::int64_t tiles = (rows + K - 1) / K;
      detail::parallel_rows(tiles, t_len * K, [&](std::int64_t begin, std::int64_t end) {
        std::int64_t c = 0;
        bool bin = true;
        for (std::int64_t tb = begin; tb < end; ++tb) {
          if (tb * K + K <= rows) {
            detail::reinforce_pp_tile<K>(pass, tb * K, bin, c);
          } else {
            for (std::int64_t b = tb * K; b < rows; ++b) detail::reinforce_pp_tile<1>(pass, b, bin, c);
          }
        }
        count.fetch_add(c, std::memory_order_relaxed);
        if (!bin) binary.store(false, std::memory_order_relaxed);
      });
      const S* tp = pass.ret;
      const auto x = [tp](std::int64_t, std::int64_t i) { return tp[i]; };
      if (int_mask && binary.load()) {
        advantages = detail::masked_whiten_finish<S, M>(owner, x, m, pass.m8, std::move(out), count.load(), true);
      } else {
        advantages = detail::masked_whiten_finish<S, M>(owner, x, m, pass.m, std::move(out), count.load(), true);
      }
    });
    return {advantages, returns};
  }
  returns = detail::reinforce_pp_generic(token_level_rewards, response_mask, config.gamma);
  advantages = detail::whiten(owner, returns, response_mask) * response_mask;  // (B,T)
  return {advantages, returns};
}

//! ReMax. verl 0.7.1 `compute_remax_outcome_advantage` (verl/trainer/ppo/core_algos.py; unchanged from 0.7.0).
//!
//! returns_t = sum_{s >= t} r_s m_s (reward-to-go over valid tokens), advantages = returns - b * m, with b
//! the (B,) reward of the greedy response. Vectorised in verl too; same tensor operations here.
//! \param reward_baselines (B,) floating.
namespace detail {
//! compute_remax_outcome_advantage in one backward pass per row, when rewards and baselines share a float/double
//! dtype S that the mask promotes to; else nullopt (the tensor expression runs). The bits are ATen's: r * m is
//! the product in S, ATen's CPU cumsum accumulates in at::acc_type<S, false> (double for float and double) and
//! rounds each running total to S, and the advantage is that total minus the product b * S(m), in S.
template <class S, class M>
VERL_DETAIL_NO_FP_CONTRACT void remax_rows(const S* r, const M* m, const S* base, S* ret, S* adv, std::int64_t b0,
                                           std::int64_t b1, std::int64_t cols) {
  VERL_DETAIL_NO_FP_CONTRACT_BODY
  // Each row's running total is a chain of dependent adds (~4 cycles each): kRows rows advance together so
  // that their chains overlap.
  constexpr std::int64_t kRows = 4;
  std::int64_t b = b0;
  for (; b + kRows <= b1; b += kRows) {
    double total[kRows] = {};
    for (std::int64_t t = cols - 1; t >= 0; --t) {
      for (std::int64_t k = 0; k < kRows; ++k) {
        const std::int64_t i = (b + k) * cols + t;
        const S mask = static_cast<S>(m[i]);
        total[k] += static_cast<double>(static_cast<S>(r[i] * mask));
        const S to_go = static_cast<S>(total[k]);
        ret[i] = to_go;
        adv[i] = static_cast<S>(to_go - static_cast<S>(base[b + k] * mask));
      }
    }
  }
  for (; b < b1; ++b) {
    double total = 0;
    for (std::int64_t t = cols - 1; t >= 0; --t) {
      const std::int64_t i = b * cols + t;
      const S mask = static_cast<S>(m[i]);
      total += static_cast<double>(static_cast<S>(r[i] * mask));
      const S to_go = static_cast<S>(total);
      ret[i] = to_go;
      adv[i] = static_cast<S>(to_go - static_cast<S>(base[b] * mask));
    }
  }
}

inline std::optional<AdvantageOutput> remax_fused(const at::Tensor& rewards, const at::Tensor& baselines,
                                                  const at::Tensor& mask) {
  const auto s = rewards.scalar_type();
  if (!all_cpu({&rewards, &baselines, &mask}) || rewards.dim() != 2 || baselines.scalar_type() != s ||
      at::result_type(rewards, mask) != s || rewards.requires_grad() || baselines.requires_grad() ||
      mask.requires_grad() || (s != at::kFloat && s != at::kDouble))
    return std::nullopt;
  const auto r = rewards.contiguous();
  const auto m = mask.contiguous();
  const auto base = baselines.contiguous();
  auto ret = verl::detail::empty_for_overwrite(r.sizes(), r.options());  // (B,T)
  auto adv = verl::detail::empty_for_overwrite(r.sizes(), r.options());  // (B,T)
  const std::int64_t rows = r.size(0), cols = r.size(1);
  const bool done = dispatch_value_mask(s, m.scalar_type(), [&](auto sv, auto mv) {
    using SV = decltype(sv);
    using MV = decltype(mv);
    const SV* rp = r.data_ptr<SV>();
    const MV* mp = m.data_ptr<MV>();
    const SV* bp = base.data_ptr<SV>();
    SV* retp = ret.data_ptr<SV>();
    SV* advp = adv.data_ptr<SV>();
    parallel_rows(rows, cols * 4, [&](std::int64_t b0, std::int64_t b1) { remax_rows(rp, mp, bp, retp, advp, b0, b1, cols); });
  });
  if (!done) return std::nullopt;
  return AdvantageOutput{adv, ret};
}
}  // namespace detail

[[nodiscard]] inline AdvantageOutput compute_remax_outcome_advantage(const at::Tensor& token_level_rewards,
                                                                     const at::Tensor& reward_baselines,
                                                                     const at::Tensor& response_mask) {
  constexpr std::string_view owner = "verl::core_algos::compute_remax_outcome_advantage";
  detail::check_rewards_mask(owner, token_level_rewards, response_mask);
  verl::detail::check<ShapeError>(reward_baselines.defined() && reward_baselines.dim() == 1 &&
                                      reward_baselines.size(0) == token_level_rewards.size(0),
                                  owner, ": `reward_baselines` must be a (B,) tensor with B = ",
                                  token_level_rewards.size(0), ", got ",
                                  reward_baselines.defined() ? reward_baselines.sizes() : at::IntArrayRef{});
  if (auto fused = detail::remax_fused(token_level_rewards, reward_baselines, response_mask)) return *std::move(fused);
  const auto returns = (token_level_rewards * response_mask).flip({-1}).cumsum(-1).flip({-1});  // (B,T)
  const auto advantages = returns - reward_baselines.unsqueeze(-1) * response_mask;           // (B,T)
  return {advantages, returns};
}

// ---------------------------------------------------------------------------------------------------------
// Group (outcome) estimators. verl scans the batch in Python, collects each group's 0-dim scores, takes the
// group's torch.mean/torch.std (singletons: mean 0, std 1 as float32 tensors), then updates each score as a
// 0-dim tensor. Here each group's statistics come from the same torch reductions over the same contiguous
// (n,) scores in batch order (so the same bits), and the per-item update is one vectorised tensor expression
// with the same elementwise operations in the same order.

namespace detail {

struct GroupStats {
  Groups groups;
  std::vector<double> mean;  //!< (B) group mean of each item (0 for singletons)
  std::vector<double> std;   //!< (B) group std (unbiased) of each item (1 for singletons); only if asked
};

//! Per-item group mean (and std): verl's id2mean / id2std.
inline GroupStats group_stats(const at::Tensor& scores, const at::Tensor& index, bool with_std) {
  GroupStats s{make_groups(index), {}, {}};
  const std::size_t b = s.groups.group_of.size();
  s.mean.assign(b, 0.0);
  if (with_std) s.std.assign(b, 1.0);
  for (const auto& members : s.groups.members) {
    if (members.size() < 2) continue;
    const auto g = group_scores(scores, members);  // (n,)
    const double mean = g.mean().item<double>();
    const double stdev = with_std ? g.std().item<double>() : 1.0;
    for (const auto i : members) {
      s.mean[static_cast<std::size_t>(i)] = mean;
      if (with_std) s.std[static_cast<std::size_t>(i)] = stdev;
    }
  }
  return s;
}

//! `std + epsilon` computed as verl computes it on each item's 0-dim std (float32 1.0 for singletons).
inline at::Tensor std_plus_eps(const GroupStats& s, const at::Tensor& scores, double epsilon) {
  auto den = per_item_tensor(s.std, scores.scalar_type(), scores.device()) + epsilon;  // (B,)
  // Singletons: verl's std is torch.tensor(1.0) (float32), so 1 + epsilon is rounded in float32 even when the
  // scores are float64.
  const double single = (at::scalar_tensor(1.0, at::TensorOptions().dtype(at::kFloat)) + epsilon).item<double>();
  std::vector<double> fix(s.groups.group_of.size(), 0.0);
  bool any = false;
  for (const auto& members : s.groups.members) {
    if (members.size() == 1) {
      fix[static_cast<std::size_t>(members[0])] = 1.0;
      any = true;
    }
  }
  if (any) {
    const auto is_single = per_item_tensor(fix, at::kBool, scores.device());  // (B,)
    den = at::where(is_single, at::scalar_tensor(single, den.options()), den);
  }
  return den;
}

}  // namespace detail

//! GRPO outcome advantage. verl 0.7.1 `compute_grpo_outcome_advantage` (verl/trainer/ppo/core_algos.py;
//! unchanged from 0.7.0).
//!
//! s_i = sum_t r_it; per group (items with equal `index`): mu = mean(s), sigma = std(s) (unbiased);
//! singletons: mu = 0, sigma = 1 (float32). a_i = (s_i - mu) / (sigma + epsilon) if norm_adv_by_std_in_grpo,
//! else s_i - mu (Dr. GRPO); advantages = returns = a_i * m (broadcast over T).
//! A group whose scores are all equal gets 0 (0 / epsilon).
[[nodiscard]] inline AdvantageOutput compute_grpo_outcome_advantage(const at::Tensor& token_level_rewards,
                                                                    const at::Tensor& response_mask,
                                                                    const at::Tensor& index, double epsilon = 1e-6,
                                                                    bool norm_adv_by_std_in_grpo = true) {
  constexpr std::string_view owner = "verl::core_algos::compute_grpo_outcome_advantage";
  detail::check_rewards_mask(owner, token_level_rewards, response_mask);
  detail::check_index(owner, index, token_level_rewards.size(0));
  const auto scores = token_level_rewards.sum(-1);  // (B,)
  const auto stats = detail::group_stats(scores, index, norm_adv_by_std_in_grpo);
  const auto mean = detail::per_item_tensor(stats.mean, scores.scalar_type(), scores.device());  // (B,)
  auto a = scores - mean;                                                                          // (B,)
  if (norm_adv_by_std_in_grpo) a = a / detail::std_plus_eps(stats, scores, epsilon);
  const auto advantages = detail::row_times_mask(a, response_mask);  // (B,T)
  return {advantages, advantages};
}

//! GRPO pass@k. verl 0.7.1 `compute_grpo_passk_outcome_advantage` (verl/trainer/ppo/core_algos.py; unchanged
//! from 0.7.0). Only the best response of each group gets a nonzero advantage: r_max - r_second_max (the top
//! two of torch.topk), divided by (std(group) + epsilon) when `config.norm_adv_by_std_in_grpo`.
//! verl reads the flag from `config` and ignores its own `norm_adv_by_std_in_grpo` argument; so does this
//! function (the argument is kept for verl's argument order).
//! \throws InputError naming the group when a group has fewer than two items (verl raises ValueError).
[[nodiscard]] inline AdvantageOutput compute_grpo_passk_outcome_advantage(
    const at::Tensor& token_level_rewards, const at::Tensor& response_mask, const at::Tensor& index,
    double epsilon = 1e-6, [[maybe_unused]] bool norm_adv_by_std_in_grpo = true, const AdvantageConfig& config = {}) {
  constexpr std::string_view owner = "verl::core_algos::compute_grpo_passk_outcome_advantage";
  detail::check_rewards_mask(owner, token_level_rewards, response_mask);
  detail::check_index(owner, index, token_level_rewards.size(0));
  const auto scores = token_level_rewards.sum(-1);  // (B,)
  const auto groups = detail::make_groups(index);
  const auto ids = index.to(at::kCPU, at::kLong);
  std::vector<double> adv(static_cast<std::size_t>(scores.size(0)), 0.0);
  for (const auto& members : groups.members) {
    verl::detail::check<InputError>(members.size() >= 2, owner, ": group `index` = ",
                                    ids[members[0]].item<std::int64_t>(), " has ", members.size(),
                                    " item; pass@k needs at least 2 samples per group");
    const auto g = detail::group_scores(scores, members);  // (n,)
    const auto [top, top_idx] = g.topk(2);                 // (2,), (2,)
    auto a = top[0] - top[1];                              // ()
    if (config.norm_adv_by_std_in_grpo) a = a / (g.std() + epsilon);
    adv[static_cast<std::size_t>(members[static_cast<std::size_t>(top_idx[0].item<std::int64_t>())])] =
        a.item<double>();
  }
  const auto advantages =
      detail::row_times_mask(detail::per_item_tensor(adv, scores.scalar_type(), scores.device()), response_mask);  // (B,T)
  return {advantages, advantages};
}

//! RLOO. verl 0.7.1 `compute_rloo_outcome_advantage` (verl/trainer/ppo/core_algos.py; unchanged from 0.7.0).
//! For a group of n > 1: a_i = s_i * n / (n-1) - mu * n / (n-1) = s_i - mean_{j != i} s_j (leave-one-out);
//! singletons keep a_i = s_i (no baseline). advantages = returns = a_i * m. `epsilon` is unused, as in verl.
[[nodiscard]] inline AdvantageOutput compute_rloo_outcome_advantage(const at::Tensor& token_level_rewards,
                                                                    const at::Tensor& response_mask,
                                                                    const at::Tensor& index,
                                                                    [[maybe_unused]] double epsilon = 1e-6) {
  constexpr std::string_view owner = "verl::core_algos::compute_rloo_outcome_advantage";
  detail::check_rewards_mask(owner, token_level_rewards, response_mask);
  detail::check_index(owner, index, token_level_rewards.size(0));
  const auto scores = token_level_rewards.sum(-1);  // (B,)
  const auto stats = detail::group_stats(scores, index, false);
  std::vector<double> count(stats.mean.size());
  for (const auto& members : stats.groups.members)
    for (const auto i : members) count[static_cast<std::size_t>(i)] = static_cast<double>(members.size());
  const auto n = detail::per_item_tensor(count, scores.scalar_type(), scores.device());        // (B,)
  const auto mean = detail::per_item_tensor(stats.mean, scores.scalar_type(), scores.device());  // (B,)
  const auto loo = (scores * n) / (n - 1) - (mean * n) / (n - 1);                               // (B,)
  const auto a = at::where(n > 1, loo, scores);                                                  // (B,)
  const auto advantages = detail::row_times_mask(a, response_mask);                              // (B,T)
  return {advantages, advantages};
}

//! OPO. verl 0.7.1 `compute_opo_outcome_advantage` (verl/trainer/ppo/core_algos.py; unchanged from 0.7.0).
//! Length-weighted group baseline: b = sum_i |y_i| s_i / sum_i |y_i| with |y_i| = sum_t m_it (singletons:
//! b = 0); a_i = s_i - b; advantages = returns = a_i * m. A group whose rows are all fully masked gets
//! b = 0/0 = NaN, and so NaN advantages, exactly as verl. `epsilon` is unused, as in verl.
[[nodiscard]] inline AdvantageOutput compute_opo_outcome_advantage(const at::Tensor& token_level_rewards,
                                                                   const at::Tensor& response_mask,
                                                                   const at::Tensor& index,
                                                                   [[maybe_unused]] double epsilon = 1e-6) {
  constexpr std::string_view owner = "verl::core_algos::compute_opo_outcome_advantage";
  detail::check_rewards_mask(owner, token_level_rewards, response_mask);
  detail::check_index(owner, index, token_level_rewards.size(0));
  const auto response_length = response_mask.sum(-1);  // (B,)
  const auto scores = token_level_rewards.sum(-1);     // (B,)
  const auto groups = detail::make_groups(index);
  std::vector<double> baseline(static_cast<std::size_t>(scores.size(0)), 0.0);
  for (const auto& members : groups.members) {
    if (members.size() < 2) continue;
    const auto s = detail::group_scores(scores, members);           // (n,)
    const auto len = detail::group_scores(response_length, members);  // (n,)
    const double b = ((len * s).sum() / len.sum()).item<double>();
    for (const auto i : members) baseline[static_cast<std::size_t>(i)] = b;
  }
  const auto a = scores - detail::per_item_tensor(baseline, scores.scalar_type(), scores.device());  // (B,)
  const auto advantages = detail::row_times_mask(a, response_mask);                                 // (B,T)
  return {advantages, advantages};
}

//! REINFORCE++ with a group baseline. verl 0.7.1 `compute_reinforce_plus_plus_baseline_outcome_advantage`
//! (verl/trainer/ppo/core_algos.py; unchanged from 0.7.0). a_i = s_i - mean(group) (singletons: s_i),
//! broadcast over T and masked, then whitened over the whole batch: advantages = returns =
//! masked_whiten(a * m, m) * m. `epsilon` is unused, as in verl.
//! \throws InputError when the mask selects fewer than two tokens (verl raises in masked_whiten).
[[nodiscard]] inline AdvantageOutput compute_reinforce_plus_plus_baseline_outcome_advantage(
    const at::Tensor& token_level_rewards, const at::Tensor& response_mask, const at::Tensor& index,
    [[maybe_unused]] double epsilon = 1e-6) {
  constexpr std::string_view owner = "verl::core_algos::compute_reinforce_plus_plus_baseline_outcome_advantage";
  detail::check_rewards_mask(owner, token_level_rewards, response_mask);
  detail::check_index(owner, index, token_level_rewards.size(0));
  const auto scores = token_level_rewards.sum(-1);  // (B,)
  const auto stats = detail::group_stats(scores, index, false);
  const auto a = scores - detail::per_item_tensor(stats.mean, scores.scalar_type(), scores.device());  // (B,)
  if (detail::use_cpu_kernel(token_level_rewards, response_mask)) {
    // Fused: the tiled a_b * m is never materialised; whitening as verl's, bit for bit (fused_cpu.hpp).
    const auto ac = a.contiguous();              // (B,)
    const auto m = response_mask.contiguous();   // (B,T)
    at::Tensor advantages;                       // (B,T)
    detail::dispatch_value_mask(ac.scalar_type(), m.scalar_type(), [&](auto s, auto mk) {
      using S = decltype(s);
      using M = decltype(mk);
      const S* ap = ac.data_ptr<S>();
      const M* mp = m.data_ptr<M>();
      advantages = detail::masked_whiten_fused<S, M>(
          owner, [ap, mp](std::int64_t b, std::int64_t i) { return ap[b] * static_cast<S>(mp[i]); }, m,
          /*times_mask=*/true);
    });
    return {advantages, advantages};
  }
  const auto tiled = a.unsqueeze(-1) * response_mask;                                                 // (B,T)
  const auto advantages = detail::whiten(owner, tiled, response_mask) * response_mask;                // (B,T)
  return {advantages, advantages};
}

//! GPG. verl 0.7.1 `compute_gpg_outcome_advantage` (verl/trainer/ppo/core_algos.py; unchanged from 0.7.0).
//! alpha = B / max(1, #{i : s_i != 0}) (computed as verl's `bsz / m`, i.e. reciprocal(m) * B in float32);
//! a_i = alpha * (s_i - mean(group)) / f_norm (singletons: mean 0); advantages = returns = a_i * m.
//! The `alpha` argument is overwritten inside verl and ignored here too; `epsilon` is unused.
[[nodiscard]] inline AdvantageOutput compute_gpg_outcome_advantage(const at::Tensor& token_level_rewards,
                                                                   const at::Tensor& response_mask,
                                                                   const at::Tensor& index,
                                                                   [[maybe_unused]] double epsilon = 1e-6,
                                                                   double f_norm = 1.0,
                                                                   [[maybe_unused]] double alpha = 1.0) {
  constexpr std::string_view owner = "verl::core_algos::compute_gpg_outcome_advantage";
  detail::check_rewards_mask(owner, token_level_rewards, response_mask);
  detail::check_index(owner, index, token_level_rewards.size(0));
  const auto scores = token_level_rewards.sum(-1);  // (B,)
  // Python's `int / tensor` is Tensor.__rtruediv__ = reciprocal(tensor) * int: float32, rounded twice.
  const auto scale = scores.count_nonzero().clamp_min(1).reciprocal() * scores.size(0);  // () float32
  const auto stats = detail::group_stats(scores, index, false);
  const auto mean = detail::per_item_tensor(stats.mean, scores.scalar_type(), scores.device());  // (B,)
  const auto a = (scale * (scores - mean)) / f_norm;                                              // (B,)
  const auto advantages = detail::row_times_mask(a, response_mask);                               // (B,T)
  return {advantages, advantages};
}

}  // namespace verl::core_algos

namespace verl::estimators {

namespace detail {
inline const at::Tensor& need(const std::optional<at::Tensor>& t, std::string_view owner, std::string_view what) {
  verl::detail::check<InputError>(t.has_value() && t->defined(), owner, ": AdvantageInputs::", what,
                                  " is not set; this estimator reads it");
  return *t;
}
}  // namespace detail

//! GAE with a critic: verl::core_algos::compute_gae_advantage_return(rewards, values, mask, gamma, lam).
//! Configuration is held by the policy (AdvantageInputs::gamma/lam are not read).
struct GAE {
  static constexpr std::string_view name = "gae";
  static constexpr bool needs_critic = true;
  static constexpr bool needs_groups = false;
  double gamma = 1.0;
  double lam = 1.0;
  [[nodiscard]] AdvantageOutput compute(const AdvantageInputs& in) const {
    return core_algos::compute_gae_advantage_return(in.token_level_rewards,
                                                    detail::need(in.values, "verl::estimators::GAE", "values"),
                                                    in.response_mask, gamma, lam);
  }
};

//! GRPO (norm_adv_by_std_in_grpo = true) or Dr. GRPO (false): compute_grpo_outcome_advantage.
struct GRPO {
  static constexpr std::string_view name = "grpo";
  static constexpr bool needs_critic = false;
  static constexpr bool needs_groups = true;
  double epsilon = 1e-6;
  bool norm_adv_by_std_in_grpo = true;
  [[nodiscard]] AdvantageOutput compute(const AdvantageInputs& in) const {
    return core_algos::compute_grpo_outcome_advantage(in.token_level_rewards, in.response_mask,
                                                      detail::need(in.index, "verl::estimators::GRPO", "index"),
                                                      epsilon, norm_adv_by_std_in_grpo);
  }
};

//! GRPO pass@k: compute_grpo_passk_outcome_advantage.
struct GRPOPassK {
  static constexpr std::string_view name = "grpo_passk";
  static constexpr bool needs_critic = false;
  static constexpr bool needs_groups = true;
  double epsilon = 1e-6;
  bool norm_adv_by_std_in_grpo = true;
  [[nodiscard]] AdvantageOutput compute(const AdvantageInputs& in) const {
    return core_algos::compute_grpo_passk_outcome_advantage(
        in.token_level_rewards, in.response_mask, detail::need(in.index, "verl::estimators::GRPOPassK", "index"),
        epsilon, norm_adv_by_std_in_grpo, core_algos::AdvantageConfig{.norm_adv_by_std_in_grpo = norm_adv_by_std_in_grpo});
  }
};

//! RLOO: compute_rloo_outcome_advantage.
struct RLOO {
  static constexpr std::string_view name = "rloo";
  static constexpr bool needs_critic = false;
  static constexpr bool needs_groups = true;
  [[nodiscard]] AdvantageOutput compute(const AdvantageInputs& in) const {
    return core_algos::compute_rloo_outcome_advantage(in.token_level_rewards, in.response_mask,
                                                      detail::need(in.index, "verl::estimators::RLOO", "index"));
  }
};

//! OPO: compute_opo_outcome_advantage.
struct OPO {
  static constexpr std::string_view name = "opo";
  static constexpr bool needs_critic = false;
  static constexpr bool needs_groups = true;
  [[nodiscard]] AdvantageOutput compute(const AdvantageInputs& in) const {
    return core_algos::compute_opo_outcome_advantage(in.token_level_rewards, in.response_mask,
                                                     detail::need(in.index, "verl::estimators::OPO", "index"));
  }
};

//! REINFORCE++: compute_reinforce_plus_plus_outcome_advantage.
struct ReinforcePlusPlus {
  static constexpr std::string_view name = "reinforce_plus_plus";
  static constexpr bool needs_critic = false;
  static constexpr bool needs_groups = false;
  double gamma = 1.0;
  [[nodiscard]] AdvantageOutput compute(const AdvantageInputs& in) const {
    return core_algos::compute_reinforce_plus_plus_outcome_advantage(in.token_level_rewards, in.response_mask,
                                                                     core_algos::AdvantageConfig{.gamma = gamma});
  }
};

//! REINFORCE++ with a group-mean baseline: compute_reinforce_plus_plus_baseline_outcome_advantage.
struct ReinforcePlusPlusBaseline {
  static constexpr std::string_view name = "reinforce_plus_plus_baseline";
  static constexpr bool needs_critic = false;
  static constexpr bool needs_groups = true;
  [[nodiscard]] AdvantageOutput compute(const AdvantageInputs& in) const {
    return core_algos::compute_reinforce_plus_plus_baseline_outcome_advantage(
        in.token_level_rewards, in.response_mask,
        detail::need(in.index, "verl::estimators::ReinforcePlusPlusBaseline", "index"));
  }
};

//! ReMax: compute_remax_outcome_advantage; reads AdvantageInputs::reward_baselines (greedy-response rewards).
struct ReMax {
  static constexpr std::string_view name = "remax";
  static constexpr bool needs_critic = false;
  static constexpr bool needs_groups = false;
  //! Reads AdvantageInputs::reward_baselines (pipelines add verl::stages::GreedyBaseline for it).
  static constexpr bool needs_reward_baselines = true;
  [[nodiscard]] AdvantageOutput compute(const AdvantageInputs& in) const {
    return core_algos::compute_remax_outcome_advantage(
        in.token_level_rewards, detail::need(in.reward_baselines, "verl::estimators::ReMax", "reward_baselines"),
        in.response_mask);
  }
};

//! GPG: compute_gpg_outcome_advantage.
struct GPG {
  static constexpr std::string_view name = "gpg";
  static constexpr bool needs_critic = false;
  static constexpr bool needs_groups = true;
  double f_norm = 1.0;
  [[nodiscard]] AdvantageOutput compute(const AdvantageInputs& in) const {
    return core_algos::compute_gpg_outcome_advantage(in.token_level_rewards, in.response_mask,
                                                     detail::need(in.index, "verl::estimators::GPG", "index"), 1e-6,
                                                     f_norm);
  }
};

static_assert(AdvantageEstimator<GAE> && AdvantageEstimator<GRPO> && AdvantageEstimator<GRPOPassK> &&
              AdvantageEstimator<RLOO> && AdvantageEstimator<OPO> && AdvantageEstimator<ReinforcePlusPlus> &&
              AdvantageEstimator<ReinforcePlusPlusBaseline> && AdvantageEstimator<ReMax> && AdvantageEstimator<GPG>);
static_assert(GAE::needs_critic && !GRPO::needs_critic && GRPO::needs_groups && !ReMax::needs_groups);

}  // namespace verl::estimators

#undef VERL_DETAIL_NO_FP_CONTRACT
#undef VERL_DETAIL_NO_FP_CONTRACT_BODY
