#pragma once
//! \file
//! verl's per-step data, timing and throughput metrics and its per-data-source validation metrics
//! (verl 0.7.1 verl/trainer/ppo/metric_utils.py: compute_data_metrics, compute_timing_metrics,
//! compute_throughout_metrics [sic], process_validation_metrics; ray_trainer.py _val_metrics_update), with
//! verl's keys and values: the tensor reductions are the same ATen operations in the same dtype, so the
//! values agree with verl's to the last bit or a rounding of it.
//!
//! The inputs are plain tensors, not a Batch type, so any trainer can call them:
//! \code
//!   using namespace verl::trainer;
//!   DataMetricsInputs in{.token_level_scores = scores, .token_level_rewards = rewards, .advantages = adv,
//!                        .returns = ret, .values = std::nullopt, .response_mask = rmask, .attention_mask = amask};
//!   metrics.record(compute_data_metrics(in));                                   // critic/score/mean, ...
//!   metrics.record(compute_timing_metrics(timing.raw(), token_counts(amask, rmask.size(1))));
//!   metrics.record(compute_throughout_metrics(timing.raw(), global_token_num(amask), n_gpus));
//! \endcode
//! Shapes: B = batch size, R = response width (padded), T = prompt width + R; `attention_mask` covers prompt
//! then response, as in verl's batch.

#include "verl/core/errors.hpp"
#include "verl/trainer/metrics.hpp"

#include <ATen/core/Tensor.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace verl::trainer {

//! What compute_data_metrics reads from verl's batch.
struct DataMetricsInputs {
  at::Tensor token_level_scores;    //!< (B,R) reward-function scores per token
  at::Tensor token_level_rewards;   //!< (B,R) scores after the in-reward KL penalty (or the scores)
  at::Tensor advantages;            //!< (B,R)
  at::Tensor returns;               //!< (B,R)
  std::optional<at::Tensor> values; //!< (B,R) critic values; present iff a critic is used
  at::Tensor response_mask;         //!< (B,R) 1 on response tokens
  at::Tensor attention_mask;        //!< (B,T) 1 on real tokens; its last R columns are the response's
};

namespace detail {

inline void check_bxr(const at::Tensor& t, std::string_view what, std::int64_t b, std::int64_t r) {
  verl::detail::check<ShapeError>(t.defined() && t.dim() == 2, "verl::trainer::compute_data_metrics: `", what,
                                  "` must be a defined (B,R) tensor");
  verl::detail::check<ShapeError>(t.size(0) == b && t.size(1) == r, "verl::trainer::compute_data_metrics: `", what,
                                  "` has shape (", t.size(0), ",", t.size(1), "), expected (B,R) = (", b, ",", r,
                                  ") like `response_mask`");
}

//! Checks that `attention_mask` is (B,T) with T >= R >= 1, R = `response_width`.
inline void check_attention_mask(const at::Tensor& attention_mask, std::int64_t response_width, std::string_view fn) {
  verl::detail::check<ShapeError>(attention_mask.defined() && attention_mask.dim() == 2, "verl::trainer::", fn,
                                  ": `attention_mask` must be a defined (B,T) tensor");
  verl::detail::check<ShapeError>(response_width >= 1 && response_width <= attention_mask.size(1), "verl::trainer::",
                                  fn, ": response width ", response_width, " must be in [1, T] with T = ",
                                  attention_mask.size(1), " the attention mask's width");
}

//! `.item<double>()` of a 0-dim tensor (the value Python's `.item()` gives, widened exactly).
[[nodiscard]] inline double item(const at::Tensor& t) { return t.item<double>(); }

}  // namespace detail

//! Prompt and response lengths per item, from the attention mask (verl's `_compute_response_info`).
struct ResponseInfo {
  at::Tensor prompt_length;    //!< (B,) float32
  at::Tensor response_length;  //!< (B,) float32
};

//! verl's `_compute_response_info`: the first T-R columns of `attention_mask` are the prompt's.
[[nodiscard]] inline ResponseInfo compute_response_info(const at::Tensor& attention_mask, std::int64_t response_width) {
  detail::check_attention_mask(attention_mask, response_width, "compute_response_info");
  const auto t = attention_mask.size(1);
  const auto prompt_mask = attention_mask.narrow(1, 0, t - response_width);                // (B,P)
  const auto response_mask = attention_mask.narrow(1, t - response_width, response_width);  // (B,R)
  return {prompt_mask.sum(-1).to(at::kFloat), response_mask.sum(-1).to(at::kFloat)};       // (B,), (B,)
}

//! verl's `compute_data_metrics(batch, use_critic)`. Keys: critic/{score,rewards,advantages,returns}/
//! {mean,max,min}, with a critic also critic/values/{mean,max,min} and critic/vf_explained_var;
//! response_length/{mean,max,min,clip_ratio}, response_length_non_aborted/{...}, response/aborted_ratio,
//! prompt_length/{mean,max,min,clip_ratio}. Scores and rewards are summed per sequence and averaged over the
//! non-aborted ones (response length 0 = aborted); advantages, returns and values over response tokens.
//! (verl's num_turns/* and tool_call_counts/* come from non-tensor data and are not computed here.)
//! \throws verl::ShapeError on mismatched shapes; verl::InputError when every sample is aborted or no
//!         response token is valid (verl raises too); verl::ConfigError when `use_critic` without values.
[[nodiscard]] inline MetricMap compute_data_metrics(const DataMetricsInputs& in, bool use_critic) {
  verl::detail::check<ShapeError>(in.response_mask.defined() && in.response_mask.dim() == 2,
                                  "verl::trainer::compute_data_metrics: `response_mask` must be a defined (B,R) tensor");
  const auto b = in.response_mask.size(0), r = in.response_mask.size(1);
  detail::check_bxr(in.token_level_scores, "token_level_scores", b, r);
  detail::check_bxr(in.token_level_rewards, "token_level_rewards", b, r);
  detail::check_bxr(in.advantages, "advantages", b, r);
  detail::check_bxr(in.returns, "returns", b, r);
  verl::detail::check<ConfigError>(!use_critic || in.values.has_value(),
                                   "verl::trainer::compute_data_metrics: use_critic is true but `values` is absent");
  if (use_critic) detail::check_bxr(*in.values, "values", b, r);
  detail::check_attention_mask(in.attention_mask, r, "compute_data_metrics");
  verl::detail::check<ShapeError>(in.attention_mask.size(0) == b, "verl::trainer::compute_data_metrics: "
                                  "`attention_mask` has ", in.attention_mask.size(0), " rows, expected B = ", b);
  verl::detail::check<InputError>(b > 0, "verl::trainer::compute_data_metrics: empty batch");

  const auto sequence_score = in.token_level_scores.sum(-1);    // (B,)
  const auto sequence_reward = in.token_level_rewards.sum(-1);  // (B,)
  const auto response_mask = in.response_mask.to(at::kBool);    // (B,R)
  const auto max_prompt_length = in.attention_mask.size(1) - r;
  const auto [prompt_length, response_length] = compute_response_info(in.attention_mask, r);  // (B,), (B,)

  const auto aborted = response_length.eq(0);  // (B,)
  const auto non_aborted = aborted.logical_not();
  const auto score = sequence_score.masked_select(non_aborted);    // (B',)
  const auto reward = sequence_reward.masked_select(non_aborted);  // (B',)
  const auto non_aborted_length = response_length.masked_select(non_aborted);  // (B',)
  verl::detail::check<InputError>(non_aborted_length.numel() > 0, "verl::trainer::compute_data_metrics: all ", b,
                                  " samples are aborted (response length 0 in `attention_mask`), expected at "
                                  "least one response");
  const auto valid_adv = in.advantages.masked_select(response_mask);   // (N,)
  const auto valid_returns = in.returns.masked_select(response_mask);  // (N,)
  verl::detail::check<InputError>(valid_adv.numel() > 0, "verl::trainer::compute_data_metrics: `response_mask` "
                                  "selects no token, expected at least one response token");

  using detail::item;
  MetricMap m;
  auto stats = [&m](std::string_view prefix, const at::Tensor& t) {
    const std::string p(prefix);
    m[p + "/mean"] = item(t.mean());
    m[p + "/max"] = item(t.max());
    m[p + "/min"] = item(t.min());
  };
  stats("critic/score", score);
  stats("critic/rewards", reward);
  stats("critic/advantages", valid_adv);
  stats("critic/returns", valid_returns);
  if (use_critic) {
    const auto valid_values = in.values->masked_select(response_mask);  // (N,)
    stats("critic/values", valid_values);
    const auto return_diff_var = valid_returns.sub(valid_values).var();  // unbiased, as torch.var
    const auto return_var = valid_returns.var();
    m["critic/vf_explained_var"] = item(return_diff_var.div(return_var.add(1e-5)).neg().add(1.0));  // 1 - a/(b+1e-5)
  }
  stats("response_length", response_length);
  m["response_length/clip_ratio"] = item(response_length.eq(r).to(at::kFloat).mean());
  stats("response_length_non_aborted", non_aborted_length);
  m["response_length_non_aborted/clip_ratio"] = item(non_aborted_length.eq(r).to(at::kFloat).mean());
  m["response/aborted_ratio"] = item(aborted.to(at::kFloat).mean());
  stats("prompt_length", prompt_length);
  m["prompt_length/clip_ratio"] = item(prompt_length.eq(max_prompt_length).to(at::kFloat).mean());
  return m;
}

//! compute_data_metrics with a critic iff `in.values` is present.
[[nodiscard]] inline MetricMap compute_data_metrics(const DataMetricsInputs& in) {
  return compute_data_metrics(in, in.values.has_value());
}

//! Prompt and response token counts of a batch, as compute_timing_metrics normalises by them.
struct TokenCounts {
  double prompt_tokens = 0;    //!< real prompt tokens in the batch
  double response_tokens = 0;  //!< real response tokens in the batch
};

//! Token counts from the attention mask (summed as verl sums them: float32 sums of the per-item lengths).
[[nodiscard]] inline TokenCounts token_counts(const at::Tensor& attention_mask, std::int64_t response_width) {
  const auto info = compute_response_info(attention_mask, response_width);
  return {detail::item(info.prompt_length.sum()), detail::item(info.response_length.sum())};
}

//! verl's `batch.meta_info["global_token_num"]` summed: real tokens (prompt and response) of the batch.
[[nodiscard]] inline std::int64_t global_token_num(const at::Tensor& attention_mask) {
  verl::detail::check<ShapeError>(attention_mask.defined() && attention_mask.dim() == 2,
                                  "verl::trainer::global_token_num: `attention_mask` must be a defined (B,T) tensor");
  return attention_mask.sum(-1).to(at::kLong).sum().item<std::int64_t>();
}

//! verl's `compute_timing_metrics`: `timing_s/<name>` for every section of `timing_raw` (seconds), and
//! `timing_per_token_ms/<name>` for gen (per response token) and ref, values, adv, update_critic,
//! update_actor (per prompt + response token). \throws verl::InputError when a per-token section has no
//! token to divide by.
template <class TimingMap>
[[nodiscard]] MetricMap compute_timing_metrics(const TimingMap& timing_raw, TokenCounts counts) {
  MetricMap m;
  const double overall = counts.prompt_tokens + counts.response_tokens;
  for (const auto& [name, seconds] : timing_raw) {
    const std::string n(name);
    m["timing_s/" + n] = seconds;
    double tokens = -1;
    if (n == "gen") tokens = counts.response_tokens;
    else if (n == "ref" || n == "values" || n == "adv" || n == "update_critic" || n == "update_actor") tokens = overall;
    if (tokens < 0) continue;
    verl::detail::check<InputError>(tokens > 0, "verl::trainer::compute_timing_metrics: section `", n,
                                    "` is normalised per token but the batch has 0 of its tokens");
    m["timing_per_token_ms/" + n] = seconds * 1000 / tokens;
  }
  return m;
}

//! verl's `compute_throughout_metrics` (verl's spelling): perf/total_num_tokens, perf/time_per_step (the
//! "step" section) and perf/throughput = tokens / (time * n_gpus). \throws verl::InputError when timing_raw
//! has no positive "step" section; verl::ConfigError when n_gpus < 1.
template <class TimingMap>
[[nodiscard]] MetricMap compute_throughout_metrics(const TimingMap& timing_raw, std::int64_t total_num_tokens,
                                                   std::int64_t n_gpus) {
  verl::detail::check<ConfigError>(n_gpus >= 1, "verl::trainer::compute_throughout_metrics: n_gpus = ", n_gpus,
                                   ", expected >= 1");
  const auto it = timing_raw.find("step");
  verl::detail::check<InputError>(it != timing_raw.end(), "verl::trainer::compute_throughout_metrics: timing_raw "
                                  "has no `step` section (time the whole step as \"step\")");
  const double time = it->second;
  verl::detail::check<InputError>(time > 0, "verl::trainer::compute_throughout_metrics: the `step` section took ",
                                  time, " s, expected > 0");
  const auto tokens = static_cast<double>(total_num_tokens);
  return {{"perf/total_num_tokens", tokens},
          {"perf/time_per_step", time},
          {"perf/throughput", tokens / (time * static_cast<double>(n_gpus))}};
}

//! data source -> variable -> metric name -> value, as verl's process_validation_metrics returns.
using ValidationMetrics = std::map<std::string, std::map<std::string, std::map<std::string, double>>>;

//! verl's `process_validation_metrics` without its bootstrap estimates: samples are grouped by data source and
//! uid (the prompt; a uid's samples are its n responses); per uid and variable `mean@n` and, for n > 1,
//! `std@n` (population std, as np.std); each metric is then averaged over the uids of a data source.
//! Not computed: verl's `best@k/*`, `worst@k/*`, `maj@k/*` (bootstrap resampling with numpy's RNG).
//! \throws verl::InputError when a variable's or the uids' length differs from data_sources'.
[[nodiscard]] inline ValidationMetrics process_validation_metrics(
    const std::vector<std::string>& data_sources, const std::vector<std::string>& sample_uids,
    const std::map<std::string, std::vector<double>>& infos) {
  const auto n = data_sources.size();
  verl::detail::check<InputError>(sample_uids.size() == n, "verl::trainer::process_validation_metrics: ",
                                  sample_uids.size(), " sample uids for ", n, " data sources, expected one per sample");
  for (const auto& [var, vals] : infos)
    verl::detail::check<InputError>(vals.size() == n, "verl::trainer::process_validation_metrics: variable `", var,
                                    "` has ", vals.size(), " values for ", n, " samples, expected one per sample");
  // data source -> uid -> variable -> values
  std::map<std::string, std::map<std::string, std::map<std::string, std::vector<double>>>> grouped;
  for (std::size_t i = 0; i < n; ++i)
    for (const auto& [var, vals] : infos) grouped[data_sources[i]][sample_uids[i]][var].push_back(vals[i]);

  ValidationMetrics out;
  for (const auto& [source, uids] : grouped) {
    std::map<std::string, std::map<std::string, std::vector<double>>> per_uid;  // var -> metric -> values over uids
    for (const auto& [uid, vars] : uids) {
      for (const auto& [var, vals] : vars) {
        const auto k = vals.size();
        double sum = 0;
        for (double v : vals) sum += v;
        const double mean = sum / static_cast<double>(k);
        per_uid[var]["mean@" + std::to_string(k)].push_back(mean);
        if (k > 1) {
          double sq = 0;
          for (double v : vals) sq += (v - mean) * (v - mean);
          per_uid[var]["std@" + std::to_string(k)].push_back(std::sqrt(sq / static_cast<double>(k)));
        }
      }
    }
    for (const auto& [var, metrics] : per_uid)
      for (const auto& [metric, vals] : metrics) {
        double sum = 0;
        for (double v : vals) sum += v;
        out[source][var][metric] = sum / static_cast<double>(vals.size());
      }
  }
  return out;
}

//! verl's `_val_metrics_update` naming: `val-core/<source>/<var>/<metric>` for the core variable ("acc" if
//! present, else "reward") at the largest n, other entries under `val-aux/`.
[[nodiscard]] inline MetricMap validation_metrics(const ValidationMetrics& nested) {
  MetricMap m;
  for (const auto& [source, vars] : nested) {
    const std::string core_var = vars.contains("acc") ? "acc" : "reward";
    for (const auto& [var, metrics] : vars) {
      long n_max = 0;  // the largest n of the metric names "<stat>@<n>[/<...>]"
      for (const auto& [metric, _] : metrics) {
        const auto at = metric.rfind('@');
        verl::detail::check<InputError>(at != std::string::npos, "verl::trainer::validation_metrics: metric `", metric,
                                        "` of `", source, "/", var, "` has no @n, expected names like mean@4");
        long k = 0;
        std::from_chars(metric.data() + at + 1, metric.data() + metric.size(), k);
        n_max = std::max(n_max, k);
      }
      std::string at_n = "@";  // appended, not "@" + to_string: GCC 12 warns wrongly (-Wstringop-overflow) on that
      at_n += std::to_string(n_max);
      for (const auto& [metric, value] : metrics) {
        const bool core = var == core_var &&
                          (metric.starts_with("mean") || metric.starts_with("maj") || metric.starts_with("best")) &&
                          metric.find(at_n) != std::string::npos;
        m[std::string(core ? "val-core/" : "val-aux/") + source + "/" + var + "/" + metric] = value;
      }
    }
  }
  return m;
}

//! process_validation_metrics then validation_metrics: the flat map a trainer records after validation.
[[nodiscard]] inline MetricMap validation_metrics(const std::vector<std::string>& data_sources,
                                                  const std::vector<std::string>& sample_uids,
                                                  const std::map<std::string, std::vector<double>>& infos) {
  return validation_metrics(process_validation_metrics(data_sources, sample_uids, infos));
}

}  // namespace verl::trainer
