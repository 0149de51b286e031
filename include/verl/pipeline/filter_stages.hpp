#pragma once
//! \file
//! Stages that change which items a step trains on:
//!
//!   DynamicSampling   DAPO's dynamic sampling (verl 0.7.1 `algorithm.filter_groups`, recipe/dapo): groups whose
//!                     metric is the same for every sample carry no GRPO signal and are dropped; more prompts
//!                     are generated and scored until train_batch_size groups are kept, then the batch is cut
//!                     to train_batch_size * n items.
//!   ReplayBuffer      keeps informative groups of earlier steps and mixes some into the current batch (placed
//!                     before the old-log-prob stage, so their behaviour log-probs are recomputed under the
//!                     current policy and the PPO ratio stays on-policy for them).
//!
//! Rollouts of different steps have different padded widths (the engine pads to the longest response of its
//! call); pad_rollout() brings batches to common widths before they are concatenated.

#include "verl/core/batch.hpp"
#include "verl/core/fields.hpp"
#include "verl/pipeline/pipeline.hpp"
#include "verl/pipeline/stage.hpp"

#include <ATen/TensorOperators.h>
#include <ATen/ops/arange.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/full.h>
#include <ATen/ops/tensor.h>
#include <ATen/ops/zeros.h>

#include <algorithm>
#include <cmath>
#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <vector>

namespace verl::stages {

namespace detail {

// Pads the last dimension of t (2-D) on the left by `left` and on the right by `right` with `value`.
inline at::Tensor pad_cols(const at::Tensor& t, std::int64_t left, std::int64_t right, double value) {
  if (left == 0 && right == 0) return t;
  std::vector<at::Tensor> parts;
  if (left > 0) parts.push_back(at::full({t.size(0), left}, value, t.options()));
  parts.push_back(t);
  if (right > 0) parts.push_back(at::full({t.size(0), right}, value, t.options()));
  return at::cat(parts, 1);
}

// Position ids continue past the last response column (verl's rollout layout); the left padding holds 0.
inline at::Tensor pad_position_ids(const at::Tensor& pos, std::int64_t left, std::int64_t right) {
  auto out = pad_cols(pos, left, 0, 0);
  if (right == 0) return out;
  const auto last = out.narrow(1, out.size(1) - 1, 1);                                             // (B,1)
  const auto steps = at::arange(1, right + 1, pos.options()).unsqueeze(0);                         // (1,right)
  return at::cat({out, last + steps}, 1);
}

}  // namespace detail

//! `batch` (a rollout: prompts (B,P), T = P + R wide input_ids/attention_mask/position_ids, other token fields
//! R wide) padded to prompt width `P` and response width `R`: prompts and the prompt part of the sequence
//! fields on the left, response-aligned fields on the right; ids with `pad_token_id`, masks and floats with 0,
//! position ids continued. \throws verl::ShapeError when the batch is wider than asked.
template <class B>
  requires(is_batch_v<B> && B::template has<fields::prompts> && B::template has<fields::responses>)
[[nodiscard]] B pad_rollout(const B& batch, std::int64_t P, std::int64_t R, std::int64_t pad_token_id) {
  const std::int64_t p0 = batch.template get<fields::prompts>().size(1);
  const std::int64_t r0 = batch.template get<fields::responses>().size(1);
  verl::detail::check<ShapeError>(p0 <= P && r0 <= R, "verl::stages::pad_rollout: the batch is ", p0, "+", r0,
                                  " wide, more than the requested ", P, "+", R);
  if (p0 == P && r0 == R) return batch;
  B out = batch;
  const auto pad_field = [&]<class F>(std::type_identity<F>) {
    if constexpr (F::layout == FieldLayout::token) {
      const at::Tensor& t = batch.template get<F>();
      if (t.dim() != 2) return;
      at::Tensor padded;
      const bool ids = std::is_same_v<F, fields::input_ids> || std::is_same_v<F, fields::prompts> ||
                       std::is_same_v<F, fields::responses>;
      const double value = ids ? static_cast<double>(pad_token_id) : 0.0;
      if constexpr (std::is_same_v<F, fields::prompts>) {
        padded = detail::pad_cols(t, P - p0, 0, value);
      } else if constexpr (std::is_same_v<F, fields::position_ids>) {
        padded = detail::pad_position_ids(t, P - p0, R - r0);
      } else if constexpr (std::is_same_v<F, fields::input_ids> || std::is_same_v<F, fields::attention_mask>) {
        padded = detail::pad_cols(t, P - p0, R - r0, value);
      } else {
        verl::detail::check<ShapeError>(t.size(1) == r0, "verl::stages::pad_rollout: field `", F::name, "` is ",
                                        t.size(1), " wide; expected the response width ", r0);
        padded = detail::pad_cols(t, 0, R - r0, value);
      }
      out.template set<F>(padded);
    }
  };
  [&]<class... Fs>(const Batch<Fs...>*) { (pad_field(std::type_identity<Fs>{}), ...); }(static_cast<const B*>(nullptr));
  return out;
}

//! Concatenates rollout batches of different widths (pad_rollout to the widest, then verl::concat).
template <class B>
[[nodiscard]] B concat_rollouts(const std::vector<B>& batches, std::int64_t pad_token_id) {
  verl::detail::check<ShapeError>(!batches.empty(), "verl::stages::concat_rollouts: no batches");
  std::int64_t P = 0, R = 0;
  for (const auto& b : batches) {
    P = std::max(P, b.template get<fields::prompts>().size(1));
    R = std::max(R, b.template get<fields::responses>().size(1));
  }
  std::vector<B> padded;
  for (const auto& b : batches) padded.push_back(pad_rollout(b, P, R, pad_token_id));
  return concat(padded);
}

//! The per-item metric DynamicSampling groups on (verl's filter_groups.metric).
enum class GroupMetric {
  seq_reward,        //!< "seq_reward" (and "score"): token_level_scores summed over the response
  seq_final_reward,  //!< "seq_final_reward": token_level_rewards summed (after a KL penalty in the reward)
};

//! Parses verl's spelling; "acc" and other reward-info keys are not fields of the batch and are rejected.
[[nodiscard]] inline GroupMetric parse_group_metric(std::string_view s) {
  if (s == "seq_reward" || s == "score") return GroupMetric::seq_reward;
  if (s == "seq_final_reward") return GroupMetric::seq_final_reward;
  throw ConfigError(verl::detail::concat_message(
      "verl::stages::parse_group_metric: algorithm.filter_groups.metric is \"", s,
      "\"; supported: \"seq_reward\", \"score\" (= seq_reward), \"seq_final_reward\""));
}

//! Indices (sorted) of the items whose group (uid) has a non-constant metric (population std > 0, numpy's
//! np.std) or a single sample — verl's kept_traj_idxs — and the number of kept groups.
inline std::pair<std::vector<std::int64_t>, std::int64_t> informative_groups(const at::Tensor& uids,
                                                                             const at::Tensor& metric) {
  const auto u = uids.to(at::kCPU).to(at::kLong).contiguous();
  const auto m = metric.to(at::kCPU).to(at::kDouble).contiguous();
  const std::int64_t n = u.size(0);
  std::map<std::int64_t, std::vector<double>> by_uid;
  for (std::int64_t i = 0; i < n; ++i) by_uid[u.data_ptr<std::int64_t>()[i]].push_back(m.data_ptr<double>()[i]);
  std::map<std::int64_t, bool> keep;
  std::int64_t kept_groups = 0;
  for (const auto& [id, vals] : by_uid) {
    double mean = 0;
    for (double v : vals) mean += v;
    mean /= static_cast<double>(vals.size());
    double var = 0;
    for (double v : vals) var += (v - mean) * (v - mean);
    const bool k = vals.size() == 1 || std::sqrt(var / static_cast<double>(vals.size())) > 0;
    keep[id] = k;
    kept_groups += k ? 1 : 0;
  }
  std::vector<std::int64_t> idx;
  for (std::int64_t i = 0; i < n; ++i)
    if (keep[u.data_ptr<std::int64_t>()[i]]) idx.push_back(i);
  return {idx, kept_groups};
}

//! DAPO's dynamic sampling around a sub-pipeline `Sub` (typically Generate + Score [+ RewardKLPenalty]): runs
//! it on the step's prompts, keeps the informative groups, and while fewer than `train_batch_size` groups are
//! kept pulls another prompt batch from `next_prompts` and runs it again (at most `max_num_gen_batches`
//! generation batches when > 0, else without limit); then cuts the batch to train_batch_size * n items.
//! Records train/num_gen_batches. Needs what Sub needs; produces what Sub produces.
template <class Sub, class PromptBatchT>
struct DynamicSampling {
  static constexpr std::string_view name = "gen";
  using needs = typename Sub::input;
  using produces = typename Sub::output;

  Sub sub;
  std::function<std::optional<PromptBatchT>()> next_prompts;  //!< the data source (empty = no refill)
  std::int64_t train_batch_size = 1;                          //!< prompts (groups) per step
  std::int64_t n = 1;                                         //!< samples per prompt
  GroupMetric metric = GroupMetric::seq_reward;
  std::int64_t max_num_gen_batches = 0;                       //!< <= 0: no limit
  std::int64_t pad_token_id = 0;

  template <class B>
  auto run(const B& batch, StepContext& ctx) {
    static_assert(std::is_same_v<B, PromptBatchT>,
                  "verl::stages::DynamicSampling: the step's prompt batch type must be the type next_prompts returns");
    using Out = decltype(sub.run(batch, ctx));
    std::vector<Out> kept;
    std::int64_t groups = 0, num_gen_batches = 0;
    std::optional<PromptBatchT> current = batch;
    while (true) {
      ++num_gen_batches;
      StepContext inner;
      inner.step = ctx.step;
      Out out = sub.run(*current, inner);
      for (const auto& [k, v] : inner.metrics)
        for (double x : v) ctx.record(k, x);
      at::Tensor values;
      if constexpr (Out::template has<fields::token_level_rewards>) {
        values = (metric == GroupMetric::seq_final_reward ? out.template get<fields::token_level_rewards>()
                                                          : out.template get<fields::token_level_scores>())
                     .sum(-1);
      } else {
        verl::detail::check<ConfigError>(metric == GroupMetric::seq_reward, "verl::stages::DynamicSampling: metric "
                                         "seq_final_reward needs token_level_rewards; put the KL stage in the "
                                         "sub-pipeline");
        values = out.template get<fields::token_level_scores>().sum(-1);
      }
      const auto [idx, g] = informative_groups(out.template get<fields::uid>(), values);
      groups += g;
      if (!idx.empty()) kept.push_back(out.index_select(at::tensor(idx, at::kLong)));
      if (groups >= train_batch_size) break;
      verl::detail::check<ConfigError>(
          max_num_gen_batches <= 0 || num_gen_batches < max_num_gen_batches, "verl::stages::DynamicSampling: ",
          num_gen_batches, " generation batches gave ", groups, " informative groups < train_batch_size ",
          train_batch_size, " (max_num_gen_batches = ", max_num_gen_batches, "). Generated too many: the data may "
          "be too difficult or too easy; set algorithm.filter_groups.max_num_gen_batches=0 for endless trials");
      verl::detail::check<ConfigError>(static_cast<bool>(next_prompts), "verl::stages::DynamicSampling: only ",
                                       groups, " informative groups of ", train_batch_size,
                                       " needed, and no next_prompts source to sample more");
      current = next_prompts();
      verl::detail::check<ConfigError>(current.has_value(), "verl::stages::DynamicSampling: the prompt source ran "
                                       "out with ", groups, " informative groups of ", train_batch_size, " needed");
    }
    ctx.record("train/num_gen_batches", static_cast<double>(num_gen_batches));
    auto all = concat_rollouts(kept, pad_token_id);
    return all.slice(0, std::min<std::int64_t>(all.size(), train_batch_size * n));
  }
};

//! Keeps up to `capacity_groups` informative groups (non-constant summed score) of earlier steps (the oldest
//! leave first when it is full), and appends `replay_groups` of them, drawn uniformly without replacement from a
//! seeded generator, to each step's batch. The batch type B is the type the stage receives (it stores B's).
//! Records replay/size and replay/added_groups.
template <class B>
struct ReplayBuffer {
  static constexpr std::string_view name = "replay";
  using needs = field_list<fields::prompts, fields::responses, fields::uid, fields::token_level_scores>;
  using produces = field_list<>;

  std::int64_t capacity_groups = 64;
  std::int64_t replay_groups = 0;  //!< groups appended per step (0: only collect)
  std::uint64_t seed = 0;
  std::int64_t pad_token_id = 0;
  std::deque<B> groups{};          //!< one entry per stored group
  std::mt19937_64 rng{seed};

  auto run(const B& batch, StepContext& ctx) {
    // Draw before storing this step's groups: a step never replays itself.
    std::vector<B> parts{batch};
    const auto want = std::min<std::int64_t>(replay_groups, static_cast<std::int64_t>(groups.size()));
    std::vector<std::size_t> order(groups.size());
    for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::shuffle(order.begin(), order.end(), rng);
    for (std::int64_t i = 0; i < want; ++i) parts.push_back(groups[order[static_cast<std::size_t>(i)]]);
    // Store the informative groups of this step.
    const auto uids = batch.template get<fields::uid>().to(at::kCPU).contiguous();
    const auto [idx, g] = informative_groups(uids, batch.template get<fields::token_level_scores>().sum(-1));
    (void)g;
    std::size_t i = 0;
    while (i < idx.size()) {
      std::size_t j = i;
      const auto id = uids.template data_ptr<std::int64_t>()[idx[i]];
      while (j < idx.size() && uids.template data_ptr<std::int64_t>()[idx[j]] == id) ++j;
      groups.push_back(batch.slice(idx[i], idx[j - 1] + 1));
      while (static_cast<std::int64_t>(groups.size()) > capacity_groups) groups.pop_front();
      i = j;
    }
    ctx.record("replay/size", static_cast<double>(groups.size()));
    ctx.record("replay/added_groups", static_cast<double>(want));
    return parts.size() == 1 ? batch : concat_rollouts(parts, pad_token_id);
  }
};

}  // namespace verl::stages
