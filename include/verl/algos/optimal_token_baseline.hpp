#pragma once
//! \file
//! Optimal token baseline (OTB), verl::core_algos: verl 0.7.1's `compute_optimal_token_baseline_advantage`
//! and `compute_multi_turn_optimal_token_baseline_advantage` (verl/trainer/ppo/core_algos.py; both new in
//! 0.7.1, absent from 0.7.0). Conventions as in verl/algos/advantages.hpp: verl's names and argument order,
//! tensors in, verl::AdvantageOutput {advantages, returns} out, verl's tensor operations in verl's order (so
//! CPU results are bit-identical; tests/unit/algos/test_optimal_token_baseline.cpp checks it against golden
//! vectors written by verl itself). `index` is a (B,) integer tensor of group ids.
//!
//! Per token, a per-step baseline weighted by a cumulative path-variance proxy:
//!   G_t = sum_{s >= t} r_s m_s                       (reward-to-go; the returned `returns`)
//!   w_t = (1 - 2 exp(logp_t) + sum_pi_sq_t) * rho_t^2  (rho: rollout IS weights, optional)
//!   W_t = sum_{s <= t} w_s m_s
//!   B_t = sum_{i in group} G_it W_it m_it / (sum_{i in group} W_it m_it + epsilon), A_t = (G_t - B_t) m_t.
//! Singleton groups get B = 0 (A = G). With `handle_zero_tail`, when one trajectory of a group is strictly
//! the longest, its baseline is zeroed from the second-longest length on.
//! The multi-turn variant first compacts each row to its valid tokens (interior mask gaps removed), so
//! position k of the baseline pairs the k-th valid token of every trajectory; rows without valid tokens are
//! left out of the groups.
//!
//! Dtypes: token_level_rewards, old_log_probs, sum_pi_squared (and rollout_is_weights) share one float32 or
//! float64 dtype (verl would silently promote mixed dtypes; rejected with verl::ShapeError here);
//! response_mask as in advantages.hpp (bool, integer, or floating of the rewards' dtype).

#include "verl/algos/advantages.hpp"
#include "verl/concepts/advantage_estimator.hpp"
#include "verl/core/algo_io.hpp"
#include "verl/core/errors.hpp"

#include <ATen/TensorOperators.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/zeros.h>
#include <ATen/ops/zeros_like.h>

#include <algorithm>
#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

namespace verl::core_algos {

namespace detail {

//! Throws verl::ShapeError unless `t` has the shape, dtype and device of `rewards`.
inline void check_same_as_rewards(std::string_view owner, const at::Tensor& t, const at::Tensor& rewards,
                                  std::string_view what) {
  verl::detail::check_like(t, rewards, owner, what, "token_level_rewards");
  verl::detail::check<ShapeError>(t.scalar_type() == rewards.scalar_type() && t.device() == rewards.device(), owner,
                                  ": `", what, "` has dtype ", t.scalar_type(), " on ", t.device(),
                                  ", expected those of `token_level_rewards` (", rewards.scalar_type(), " on ",
                                  rewards.device(), ")");
}

//! The checks shared by both OTB functions.
inline void check_otb(std::string_view owner, const at::Tensor& rewards, const at::Tensor& mask,
                      const at::Tensor& index, const at::Tensor& old_log_probs, const at::Tensor& sum_pi_squared,
                      const std::optional<at::Tensor>& rollout_is_weights) {
  check_rewards_mask(owner, rewards, mask);
  check_index(owner, index, rewards.size(0));
  check_same_as_rewards(owner, old_log_probs, rewards, "old_log_probs");
  check_same_as_rewards(owner, sum_pi_squared, rewards, "sum_pi_squared");
  if (rollout_is_weights) check_same_as_rewards(owner, *rollout_is_weights, rewards, "rollout_is_weights");
}

//! (B,) positions of `members` as an int64 tensor on `device`.
inline at::Tensor member_positions(const std::vector<std::int64_t>& members, at::Device device) {
  auto pos = at::empty({static_cast<std::int64_t>(members.size())}, at::TensorOptions().dtype(at::kLong));  // (n,)
  std::copy(members.begin(), members.end(), pos.data_ptr<std::int64_t>());
  return pos.to(device);
}

//! verl's reward-to-go and cumulative path-variance proxy: returns = flip(cumsum(flip(r*m))),
//! W = cumsum(((1 - 2*exp(logp)) + sum_pi_sq) [* rho**2] * m).
inline std::pair<at::Tensor, at::Tensor> otb_returns_and_w(const at::Tensor& rewards, const at::Tensor& mask,
                                                           const at::Tensor& old_log_probs,
                                                           const at::Tensor& sum_pi_squared,
                                                           const std::optional<at::Tensor>& rollout_is_weights) {
  auto returns = (rewards * mask).flip({-1}).cumsum(-1).flip({-1});  // (B,T)
  const auto pi_t = old_log_probs.exp();                              // (B,T)
  auto w = at::rsub(pi_t * 2, 1) + sum_pi_squared;                    // (B,T) 1 - 2*pi + sum pi^2
  if (rollout_is_weights) w = w * rollout_is_weights->pow(2);         // (B,T)
  auto w_cumulative = (w * mask).cumsum(-1);                          // (B,T)
  return {std::move(returns), std::move(w_cumulative)};
}

//! handle_zero_tail: when exactly one member is strictly the longest, zero `baselines` of that member from the
//! second-longest length on. `lengths` holds the members' lengths in group order (verl truncates them to int).
inline void zero_tail(at::Tensor& baselines, const std::vector<std::int64_t>& members,
                      const std::vector<std::int64_t>& lengths) {
  auto sorted = lengths;
  std::sort(sorted.begin(), sorted.end());
  const std::int64_t longest = sorted.back();
  const std::int64_t second = sorted[sorted.size() - 2];
  const auto count = std::count(lengths.begin(), lengths.end(), longest);
  if (count != 1 || longest <= second) return;
  const auto at = static_cast<std::size_t>(std::find(lengths.begin(), lengths.end(), longest) - lengths.begin());
  const std::int64_t width = baselines.size(1);
  if (second < width) baselines.select(0, members[at]).narrow(0, second, width - second).zero_();
}

}  // namespace detail

//! Optimal token baseline. verl 0.7.1 `compute_optimal_token_baseline_advantage`
//! (verl/trainer/ppo/core_algos.py; new in 0.7.1).
//!
//! returns = reward-to-go G; per group of n > 1 (equal `index`, in order of first appearance; fully masked
//! rows count as members): B_t = sum_i (G_it W_it) m_it / (sum_i W_it m_it + epsilon) on the full (n,T) grid;
//! with handle_zero_tail the unique strictly-longest member (length = sum_t m_t) gets B = 0 from the
//! second-longest length on; singletons B = 0. advantages = (G - B) * m.
//! \param old_log_probs (B,T) rollout log-probs of the sampled tokens; \param sum_pi_squared (B,T) sum over
//! the vocabulary of pi^2; \param rollout_is_weights optional (B,T) IS weights (W is scaled by their square).
//! \throws ShapeError on shapes/dtypes (verl raises on mismatched shapes and a short `index` too).
[[nodiscard]] inline AdvantageOutput compute_optimal_token_baseline_advantage(
    const at::Tensor& token_level_rewards, const at::Tensor& response_mask, const at::Tensor& index,
    const at::Tensor& old_log_probs, const at::Tensor& sum_pi_squared,
    const std::optional<at::Tensor>& rollout_is_weights = std::nullopt, bool handle_zero_tail = true,
    double epsilon = 1e-8) {
  constexpr std::string_view owner = "verl::core_algos::compute_optimal_token_baseline_advantage";
  detail::check_otb(owner, token_level_rewards, response_mask, index, old_log_probs, sum_pi_squared,
                    rollout_is_weights);
  const auto [returns, w_cumulative] = detail::otb_returns_and_w(token_level_rewards, response_mask, old_log_probs,
                                                                 sum_pi_squared, rollout_is_weights);
  auto baselines = at::zeros_like(returns);  // (B,T)
  const auto groups = detail::make_groups(index);
  std::vector<std::int64_t> row_length;
  if (handle_zero_tail) {
    // verl: int(mask_group.sum(-1)[k]) — the row sums in the mask's arithmetic, truncated to int.
    const auto sums = response_mask.sum(-1).to(at::kCPU, at::kDouble).contiguous();  // (B,)
    const double* p = sums.data_ptr<double>();
    row_length.resize(static_cast<std::size_t>(sums.numel()));
    for (std::int64_t i = 0; i < sums.numel(); ++i) row_length[static_cast<std::size_t>(i)] =
        static_cast<std::int64_t>(p[i]);
  }
  for (const auto& members : groups.members) {
    const auto n = static_cast<std::int64_t>(members.size());
    if (n == 1) continue;
    const auto pos = detail::member_positions(members, returns.device());  // (n,)
    const auto g_ret = returns.index_select(0, pos);                       // (n,T)
    const auto g_w = w_cumulative.index_select(0, pos);                    // (n,T)
    const auto g_m = response_mask.index_select(0, pos);                   // (n,T)
    const auto numerator = (g_ret * g_w * g_m).sum(0);                     // (T,)
    const auto denominator = (g_w * g_m).sum(0) + epsilon;                 // (T,)
    baselines.index_copy_(0, pos, (numerator / denominator).unsqueeze(0).expand({n, -1}));
    if (handle_zero_tail) {
      std::vector<std::int64_t> lengths;
      lengths.reserve(members.size());
      for (const auto i : members) lengths.push_back(row_length[static_cast<std::size_t>(i)]);
      detail::zero_tail(baselines, members, lengths);
    }
  }
  auto advantages = (returns - baselines) * response_mask;  // (B,T)
  return {std::move(advantages), returns};
}

//! Multi-turn optimal token baseline. verl 0.7.1 `compute_multi_turn_optimal_token_baseline_advantage`
//! (registered as "tir_optimal_token_baseline"; new in 0.7.1).
//!
//! G and W as in compute_optimal_token_baseline_advantage, then each row is compacted to its L_i valid tokens
//! (L_i = int(sum_t m_it)) into an (B, max L) grid padded with zeros; per group of rows with L_i > 0
//! (n > 1): B_k = sum_i G_ik W_ik / (sum_i W_ik + epsilon) over the compacted grid (no mask: padding is 0);
//! handle_zero_tail as in the single-turn function on the compacted lengths; singletons B = 0. The compacted
//! advantages G - B are scattered back to the valid positions; advantages = that * m, returns = G.
//! \throws ShapeError on shapes/dtypes; InputError when a row's int(sum of the mask) differs from its count of
//! nonzero mask entries (a non-0/1 floating mask; verl raises RuntimeError on the compaction there).
[[nodiscard]] inline AdvantageOutput compute_multi_turn_optimal_token_baseline_advantage(
    const at::Tensor& token_level_rewards, const at::Tensor& response_mask, const at::Tensor& index,
    const at::Tensor& old_log_probs, const at::Tensor& sum_pi_squared,
    const std::optional<at::Tensor>& rollout_is_weights = std::nullopt, bool handle_zero_tail = true,
    double epsilon = 1e-8) {
  constexpr std::string_view owner = "verl::core_algos::compute_multi_turn_optimal_token_baseline_advantage";
  detail::check_otb(owner, token_level_rewards, response_mask, index, old_log_probs, sum_pi_squared,
                    rollout_is_weights);
  const auto [token_returns, w_cumulative] = detail::otb_returns_and_w(
      token_level_rewards, response_mask, old_log_probs, sum_pi_squared, rollout_is_weights);
  const std::int64_t rows = token_level_rewards.size(0);
  const auto lengths_t = response_mask.sum(-1).to(at::kLong);  // (B,) verl: .to(dtype=torch.long)
  const auto valid = response_mask.to(at::kBool);              // (B,T) verl: response_mask[i].bool()
  const auto counts = valid.sum(-1);                           // (B,)
  const auto lengths_cpu = lengths_t.to(at::kCPU).contiguous();
  const auto counts_cpu = counts.to(at::kCPU, at::kLong).contiguous();
  const std::int64_t* len = lengths_cpu.data_ptr<std::int64_t>();
  const std::int64_t* cnt = counts_cpu.data_ptr<std::int64_t>();
  std::int64_t max_len = 0;
  for (std::int64_t i = 0; i < rows; ++i) {
    max_len = std::max(max_len, len[i]);
    verl::detail::check<InputError>(len[i] == 0 || len[i] == cnt[i], owner, ": `response_mask` row ", i,
                                    " sums to ", len[i], " but has ", cnt[i],
                                    " nonzero entries; expected a 0/1 mask (verl raises RuntimeError here)");
  }
  // Compaction: (row, destination k) for every valid token of a row with L > 0, in row-major order.
  const auto nonempty = lengths_t.gt(0).unsqueeze(-1);                 // (B,1)
  const auto keep = valid & nonempty;                                  // (B,T)
  const auto coords = keep.nonzero();                                  // (K,2) row-major
  const auto row_of = coords.select(1, 0);                             // (K,)
  const auto src_col = coords.select(1, 1);                            // (K,)
  const auto dst_col = (keep.to(at::kLong).cumsum(-1) - 1).masked_select(keep);  // (K,)
  auto all_w = at::zeros({rows, max_len}, w_cumulative.options());     // (B,L)
  auto all_returns = at::zeros_like(all_w);                            // (B,L)
  all_w.index_put_({row_of, dst_col}, w_cumulative.masked_select(keep));
  all_returns.index_put_({row_of, dst_col}, token_returns.masked_select(keep));

  auto baselines = at::zeros_like(all_returns);  // (B,L)
  const auto all_groups = detail::make_groups(index);
  for (const auto& all_members : all_groups.members) {
    std::vector<std::int64_t> members;  // verl leaves rows with L = 0 out of the groups
    for (const auto i : all_members)
      if (len[i] != 0) members.push_back(i);
    const auto n = static_cast<std::int64_t>(members.size());
    if (n < 2) continue;  // empty, or a singleton: baseline 0
    const auto pos = detail::member_positions(members, all_returns.device());  // (n,)
    const auto g_w = all_w.index_select(0, pos);                               // (n,L)
    const auto g_r = all_returns.index_select(0, pos);                         // (n,L)
    const auto b_star = (g_r * g_w).sum(0) / (g_w.sum(0) + epsilon);          // (L,)
    baselines.index_copy_(0, pos, b_star.unsqueeze(0).expand({n, -1}));
    if (handle_zero_tail) {
      std::vector<std::int64_t> lengths;
      lengths.reserve(members.size());
      for (const auto i : members) lengths.push_back(len[i]);
      detail::zero_tail(baselines, members, lengths);
    }
  }
  const auto all_advantages = all_returns - baselines;  // (B,L)
  auto advantages = at::zeros_like(token_returns);      // (B,T)
  advantages.index_put_({row_of, src_col}, all_advantages.index({row_of, dst_col}));
  advantages = advantages * response_mask;  // (B,T)
  return {std::move(advantages), token_returns};
}

}  // namespace verl::core_algos

namespace verl::estimators {

//! Optimal token baseline: compute_optimal_token_baseline_advantage. It reads two per-token rollout tensors
//! that AdvantageInputs does not carry (old log-probs and the vocabulary sum of pi^2, plus optional IS
//! weights), so they are arguments of its own compute overload; it declares name and needs but deliberately
//! has no compute(const AdvantageInputs&), and therefore does not model verl::AdvantageEstimator.
struct OptimalTokenBaseline {
  static constexpr std::string_view name = "optimal_token_baseline";
  static constexpr bool needs_critic = false;
  static constexpr bool needs_groups = true;
  bool handle_zero_tail = true;
  double epsilon = 1e-8;
  [[nodiscard]] AdvantageOutput compute(const AdvantageInputs& in, const at::Tensor& old_log_probs,
                                        const at::Tensor& sum_pi_squared,
                                        const std::optional<at::Tensor>& rollout_is_weights = std::nullopt) const {
    return core_algos::compute_optimal_token_baseline_advantage(
        in.token_level_rewards, in.response_mask,
        detail::need(in.index, "verl::estimators::OptimalTokenBaseline", "index"), old_log_probs, sum_pi_squared,
        rollout_is_weights, handle_zero_tail, epsilon);
  }
};

//! Multi-turn optimal token baseline ("tir_optimal_token_baseline" in verl):
//! compute_multi_turn_optimal_token_baseline_advantage. Same extra inputs and compute overload as
//! OptimalTokenBaseline.
struct MultiTurnOptimalTokenBaseline {
  static constexpr std::string_view name = "tir_optimal_token_baseline";
  static constexpr bool needs_critic = false;
  static constexpr bool needs_groups = true;
  bool handle_zero_tail = true;
  double epsilon = 1e-8;
  [[nodiscard]] AdvantageOutput compute(const AdvantageInputs& in, const at::Tensor& old_log_probs,
                                        const at::Tensor& sum_pi_squared,
                                        const std::optional<at::Tensor>& rollout_is_weights = std::nullopt) const {
    return core_algos::compute_multi_turn_optimal_token_baseline_advantage(
        in.token_level_rewards, in.response_mask,
        detail::need(in.index, "verl::estimators::MultiTurnOptimalTokenBaseline", "index"), old_log_probs,
        sum_pi_squared, rollout_is_weights, handle_zero_tail, epsilon);
  }
};

static_assert(NamedPolicy<OptimalTokenBaseline> && DeclaresAdvantageNeeds<OptimalTokenBaseline> &&
              NamedPolicy<MultiTurnOptimalTokenBaseline> && DeclaresAdvantageNeeds<MultiTurnOptimalTokenBaseline>);
static_assert(!AdvantageEstimator<OptimalTokenBaseline> && !AdvantageEstimator<MultiTurnOptimalTokenBaseline>,
              "the OTB estimators need old_log_probs and sum_pi_squared, which AdvantageInputs does not carry");

}  // namespace verl::estimators
