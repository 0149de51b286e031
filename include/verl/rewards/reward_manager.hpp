#pragma once
//! \file
//! verl::rewards::RewardManager: what verl 0.7.1's NaiveRewardManager (verl/workers/reward_manager/naive.py)
//! does, as a reusable component. For each item it decodes the valid response tokens, calls the reward
//! (a rule function with the item's data_source, ground truth and extra info, a reward model over the
//! token sequences, or a weighted combination of both) and writes the score on the response's last valid
//! token of token_level_scores (B,R) float32, 0 elsewhere.
//!
//!   verl::rewards::RewardManager manager(verl::rewards::DefaultComputeScore{}, tokenizer);
//!   auto result = manager({.responses = r, .response_mask = m, .items = items});
//!   result.token_level_scores;                // (B,R) float32
//!   result.reward_extra_info["acc"];          // B values, when the rule reports "acc"
//!   result.metrics;                           // "reward/<key>/mean" for each extra key
//!
//! verl's semantics kept:
//!   - the valid response length L is the number of 1s in the response's row of the mask (verl counts
//!     attention_mask[:, P:], equal to response_mask in single-turn rollouts; pass that slice for
//!     multi-turn ones); the first L tokens are decoded (with the tokenizer's skip-special-tokens decode);
//!   - the score lands in column L-1; an empty response (L = 0) puts it in the last column R-1, as verl's
//!     `reward_tensor[i, -1]` does; the score is rounded to float32 as verl's float32 tensor rounds it;
//!   - a rule's extra values (verl: the keys of a dict score) become reward_extra_info lists with one value
//!     per item, plus "score"; reward models' scores are placed the same way (verl's reward loop).
//! Added: the error of a throwing rule names the item index, the term and the data_source (the original
//! exception is nested); non-finite scores are refused (option); rules can run on several threads with
//! results in item order; every item must report the same extra keys (verl would misalign the lists).
//!
//! A trainer's scoring stage (verl::stages::Score takes a Scorer) is a few lines:
//!   [&](const ScoreRequest& rq, StepContext& ctx) {
//!     auto res = manager({rq.responses, rq.response_mask, rq.items,
//!                         TokenBatch{rq.input_ids, rq.attention_mask, rq.position_ids, rq.responses.size(1)}});
//!     for (const auto& [k, v] : res.metrics) ctx.record(k, v);
//!     return res.token_level_scores;
//!   }

#include "verl/concepts/reward_model.hpp"
#include "verl/concepts/tokenizer.hpp"
#include "verl/core/errors.hpp"
#include "verl/core/item_info.hpp"
#include "verl/core/model_io.hpp"
#include "verl/rewards/combine.hpp"

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <c10/core/GradMode.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <iostream>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

namespace verl::rewards {

//! What a RewardManager scores. Views: the tensors and items must live for the call.
struct RewardBatch {
  at::Tensor responses;      // (B,R) int64, right-padded
  at::Tensor response_mask;  // (B,R) int/bool, 1 on the valid response tokens (a prefix of each row)
  std::span<const ItemInfo> items;       //!< B items; needed when a term is a rule function
  std::optional<TokenBatch> sequences;   //!< prompt + response; needed when a term is a reward model
};

//! The RewardBatch of a rollout (verl::Actor::generate's output) and its items: valid tokens from
//! response_mask, sequences for reward models from the rollout's full input_ids / attention_mask / position_ids.
[[nodiscard]] inline RewardBatch make_reward_batch(const Rollout& rollout, std::span<const ItemInfo> items) {
  return RewardBatch{rollout.responses, rollout.response_mask, items, rollout.token_batch()};
}

//! What a RewardManager returns.
struct RewardResult {
  at::Tensor token_level_scores;  // (B,R) float32, the score on each response's last valid token
  std::vector<double> scores;     //!< the B sequence scores, before rounding to float32
  //! Per-item extra values, B each: the rules' extra keys, the terms of a combination by name, and "score"
  //! when there is any (verl's reward_extra_info).
  std::map<std::string, std::vector<double>, std::less<>> reward_extra_info;
  //! "reward/<key>/mean" over the items for each key of reward_extra_info.
  std::map<std::string, double, std::less<>> metrics;
  std::vector<std::string> responses;  //!< the decoded responses (empty when no rule needed them)
};

//! How a RewardManager runs.
struct RewardManagerOptions {
  //! Threads that call rule functions (and decode) for different items at once; 1 = the calling thread,
  //! 0 = std::thread::hardware_concurrency(). For expensive user rules (a sandbox, a verifier); results are
  //! in item order whatever the number. Rules must then be safe to call concurrently (the
  //! RewardFunction law).
  std::size_t num_threads = 1;
  //! Refuse a NaN or infinite score with an error naming the item (verl would train on it).
  bool check_finite = true;
  //! verl's num_examine: print the prompt, response, ground truth and score(s) of the first this many items
  //! of each data_source in every batch to `examine_to` (as verl prints "[prompt] ...", "[response] ...").
  std::size_t num_examine = 0;
  std::ostream* examine_to = nullptr;  //!< nullptr: std::cout
};

//! Writes `scores` (B,) on the last valid token of each row of `valid_mask` (B,R): column L-1 where L is
//! the row's count of 1s, column R-1 when L = 0 (verl's index -1). Returns (B,R) float32 on the mask's
//! device. Throws verl::ShapeError on mismatched shapes or R = 0.
[[nodiscard]] inline at::Tensor place_at_last_valid_token(const at::Tensor& scores, const at::Tensor& valid_mask) {
  constexpr std::string_view owner = "verl::rewards::place_at_last_valid_token";
  verl::detail::check_2d(valid_mask, owner, "valid_mask", "(B,R)");
  const std::int64_t b = valid_mask.size(0), r = valid_mask.size(1);
  verl::detail::check<ShapeError>(scores.defined() && scores.dim() == 1 && scores.size(0) == b, owner,
                                  ": `scores` has shape ", scores.defined() ? scores.sizes() : at::IntArrayRef{},
                                  ", expected (", b, ",) (one score per row of valid_mask)");
  verl::detail::check<ShapeError>(r >= 1 || b == 0, owner, ": `valid_mask` has no columns (R = 0), so there is no "
                                  "token to put a score on");
  auto out = at::zeros({b, r}, valid_mask.options().dtype(at::kFloat));  // (B,R)
  if (b == 0) return out;
  const auto length = valid_mask.ne(0).sum(1);                                  // (B,)
  const auto column = length.add(r - 1).remainder(r);                          // (B,) L-1, or R-1 for L = 0
  out.scatter_(1, column.unsqueeze(1), scores.to(out.options()).unsqueeze(1));  // (B,R)
  return out;
}

namespace detail {

//! Runs `fn(i)` for i in [0, n) on `threads` threads (items taken in increasing order). When calls throw,
//! the smallest failing index's exception is passed to `on_error(i, e)` after all started calls end; no
//! item after a failure is started, so that index is the same for any number of threads.
template <class Fn, class OnError>
void for_each_item(std::size_t n, std::size_t threads, Fn&& fn, OnError&& on_error) {
  if (threads == 0) threads = std::max(1U, std::thread::hardware_concurrency());
  threads = std::min(threads, n);
  if (threads <= 1) {
    for (std::size_t i = 0; i < n; ++i) {
      try {
        fn(i);
      } catch (...) {
        on_error(i, std::current_exception());
      }
    }
    return;
  }
  std::vector<std::exception_ptr> errors(n);
  std::atomic<std::size_t> next{0};
  std::atomic<bool> failed{false};
  auto work = [&] {
    // Check before taking an item, never after: every item taken runs, so the items run are a prefix of
    // [0, n) and its smallest failing index is the one a sequential run reports.
    while (!failed.load()) {
      const std::size_t i = next++;
      if (i >= n) break;
      try {
        fn(i);
      } catch (...) {
        errors[i] = std::current_exception();
        failed = true;
      }
    }
  };
  std::vector<std::jthread> pool;
  pool.reserve(threads - 1);
  for (std::size_t t = 1; t < threads; ++t) pool.emplace_back(work);
  work();
  pool.clear();  // joins
  for (std::size_t i = 0; i < n; ++i) {
    if (errors[i]) on_error(i, errors[i]);
  }
}

//! Rethrows `e` as a verl::Error whose message starts with `context`, with `e` nested.
[[noreturn]] inline void rethrow_with_context(const std::string& context, const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& inner) {
    std::throw_with_nested(Error(context + inner.what()));
  } catch (...) {
    std::throw_with_nested(Error(context + "an exception not derived from std::exception"));
  }
}

template <class R>
inline constexpr bool is_rule_v = RewardFunction<R> && !RewardModel<R>;  // a type that is both is a model

template <class R>
struct needs_text : std::bool_constant<is_rule_v<R>> {};
template <class... R>
struct needs_text<Combined<R...>> : std::bool_constant<(is_rule_v<R> || ...)> {};
template <class R>
struct needs_model_input : std::bool_constant<RewardModel<R>> {};
template <class... R>
struct needs_model_input<Combined<R...>> : std::bool_constant<(RewardModel<R> || ...)> {};

//! What scoring one batch needs besides the reward: the batch, the decoded responses, the options.
struct ScoringContext {
  const RewardBatch& batch;
  const std::vector<std::string>& texts;
  const RewardManagerOptions& options;
  std::int64_t size;  // B
};

inline std::string item_label(const ScoringContext& ctx, std::size_t i) {
  std::string label = "item " + std::to_string(i) + " of " + std::to_string(ctx.size);
  if (i < ctx.batch.items.size()) label += " (data_source \"" + ctx.batch.items[i].data_source + "\")";
  return label;
}

//! The B outputs of one reward that is a rule function or a reward model; `term` names it in errors.
template <class R>
std::vector<RewardOutput> score_term(R& reward, const ScoringContext& ctx, const std::string& term) {
  const auto n = static_cast<std::size_t>(ctx.size);
  std::vector<RewardOutput> out(n);
  if constexpr (RewardModel<R>) {
    const c10::NoGradGuard no_grad;
    const at::Tensor s = reward.score(*ctx.batch.sequences);  // (B,)
    verl::detail::check<ShapeError>(s.defined() && s.dim() == 1 && s.size(0) == ctx.size,
                                    "verl::rewards::RewardManager: the reward model", term,
                                    " returned scores of shape ", s.defined() ? s.sizes() : at::IntArrayRef{},
                                    ", expected (", ctx.size, ",) (one score per sequence)");
    const auto cpu = s.detach().to(at::kCPU, at::kDouble).contiguous();  // (B,)
    const double* p = cpu.data_ptr<double>();
    for (std::size_t i = 0; i < n; ++i) out[i] = RewardOutput(p[i]);
  } else {
    for_each_item(
        n, ctx.options.num_threads,
        [&](std::size_t i) {
          const RewardInput in = make_reward_input(ctx.batch.items[i], ctx.texts[i]);
          out[i] = RewardOutput(reward(in));
        },
        [&](std::size_t i, const std::exception_ptr& e) {
          rethrow_with_context("verl::rewards::RewardManager: the reward function" + term + " threw on " +
                                   item_label(ctx, i) + ": ",
                               e);
        });
  }
  if (ctx.options.check_finite) {
    for (std::size_t i = 0; i < n; ++i) {
      verl::detail::check<InputError>(std::isfinite(out[i].score), "verl::rewards::RewardManager: the reward",
                                      term, " gave the non-finite score ", out[i].score, " for ",
                                      item_label(ctx, i), "; expected a finite number");
    }
  }
  return out;
}

//! The B outputs of a reward or a combination (each term scored over the batch, then summed per item).
template <class R>
std::vector<RewardOutput> score_all(R& reward, const ScoringContext& ctx) {
  if constexpr (is_combined_v<R>) {
    std::vector<RewardOutput> out(static_cast<std::size_t>(ctx.size));
    std::apply(
        [&](auto&... term) {
          (
              [&] {
                const auto part = score_term(term.reward, ctx, " (term \"" + term.name + "\")");
                for (std::size_t i = 0; i < out.size(); ++i) R::add(out[i], term.name, term.weight, part[i]);
              }(),
              ...);
        },
        reward.terms());
    return out;
  } else {
    return score_term(reward, ctx, "");
  }
}

}  // namespace detail

namespace detail {
//! One readable static_assert when R is neither a Reward nor a combination (verl::check_reward's messages).
template <class R>
consteval bool check_managed_reward() {
  if constexpr (is_combined_v<R>) {
    return true;
  } else {
    return check_reward<R>();
  }
}
}  // namespace detail

//! Decodes, scores and places rewards for a batch (see the file comment). `R` is a rule function, a reward
//! model or a combine(...) of them; the decoder is needed when a rule is involved.
template <class R>
class RewardManager {
  static_assert(detail::check_managed_reward<R>());

 public:
  //! Decodes token ids to text (skipping special tokens, as verl's skip_special_tokens=True).
  using Decode = std::function<std::string(const std::vector<std::int64_t>&)>;

  //! A manager decoding with `tokenizer` (kept by reference: it must outlive the manager).
  template <DecodesTokens Tok>
  RewardManager(R reward, const Tok& tokenizer, RewardManagerOptions options = {})
      : RewardManager(
            std::move(reward),
            Decode([tok = &tokenizer](const std::vector<std::int64_t>& ids) { return std::string(tok->decode(ids)); }),
            options) {}

  //! A manager decoding with `decode`.
  RewardManager(R reward, Decode decode, RewardManagerOptions options = {})
      : reward_(std::move(reward)), decode_(std::move(decode)), options_(options) {}

  //! A manager without a decoder, for rewards without rule functions (reward models only).
  explicit RewardManager(R reward, RewardManagerOptions options = {})
      : reward_(std::move(reward)), options_(options) {}

  //! Scores `batch`. Throws verl::ShapeError on inconsistent shapes, verl::ConfigError when the batch lacks
  //! what a term needs (items or a decoder for rules, sequences for reward models), verl::Error (with the
  //! original exception nested) when a rule throws, naming the item, and verl::InputError on a non-finite
  //! score or extra keys that differ between items.
  [[nodiscard]] RewardResult operator()(const RewardBatch& batch) {
    constexpr std::string_view owner = "verl::rewards::RewardManager";
    constexpr bool rules = detail::needs_text<R>::value;
    constexpr bool models = detail::needs_model_input<R>::value;
    verl::detail::check_2d(batch.responses, owner, "responses", "(B,R)");
    verl::detail::check_same_shape(batch.response_mask, batch.responses, owner, "response_mask", "responses");
    const std::int64_t b = batch.responses.size(0);
    RewardResult result;
    if constexpr (rules) {
      verl::detail::check<ConfigError>(static_cast<bool>(decode_), owner,
                                       ": the reward has a rule function, which scores decoded text, but the "
                                       "manager has no tokenizer; construct it with one");
      verl::detail::check<ShapeError>(batch.items.size() == static_cast<std::size_t>(b), owner, ": the batch has ",
                                      batch.items.size(), " items, expected one per response (", b,
                                      ") for the rule function");
      result.responses = decode_responses(batch, b);
    }
    if constexpr (models) {
      verl::detail::check<ConfigError>(batch.sequences.has_value(), owner,
                                       ": the reward has a reward model, which scores token sequences, but the "
                                       "batch has no `sequences`; set RewardBatch::sequences");
      batch.sequences->validate();
      verl::detail::check<ShapeError>(batch.sequences->batch_size() == b, owner, ": `sequences` has ",
                                      batch.sequences->batch_size(), " rows, expected the ", b, " responses");
    }
    const detail::ScoringContext ctx{batch, result.responses, options_, b};
    const auto outputs = detail::score_all(reward_, ctx);

    result.scores.reserve(outputs.size());
    for (const auto& o : outputs) result.scores.push_back(o.score);
    auto scores = at::empty({b}, at::TensorOptions().dtype(at::kDouble));  // (B,)
    std::copy(result.scores.begin(), result.scores.end(), scores.data_ptr<double>());
    result.token_level_scores =
        place_at_last_valid_token(scores, batch.response_mask.to(at::kCPU)).to(batch.responses.device());  // (B,R)
    collect_extra(outputs, ctx, result);
    if (options_.num_examine > 0 && rules) examine(batch, result, outputs);
    return result;
  }

  //! The reward.
  [[nodiscard]] R& reward() { return reward_; }
  //! The options.
  [[nodiscard]] RewardManagerOptions& options() { return options_; }

 private:
  std::vector<std::string> decode_responses(const RewardBatch& batch, std::int64_t b) const {
    const auto ids = batch.responses.to(at::kCPU, at::kLong).contiguous();      // (B,R)
    const auto length = batch.response_mask.ne(0).sum(1).to(at::kCPU, at::kLong).contiguous();  // (B,)
    const std::int64_t r = ids.size(1);
    const std::int64_t* p = ids.data_ptr<std::int64_t>();
    const std::int64_t* len = length.data_ptr<std::int64_t>();
    std::vector<std::string> texts(static_cast<std::size_t>(b));
    const detail::ScoringContext ctx{batch, texts, options_, b};
    detail::for_each_item(
        texts.size(), options_.num_threads,
        [&](std::size_t i) {
          const std::int64_t* row = p + static_cast<std::int64_t>(i) * r;
          texts[i] = decode_(std::vector<std::int64_t>(row, row + len[i]));  // verl: responses[i, :L]
        },
        [&](std::size_t i, const std::exception_ptr& e) {
          detail::rethrow_with_context("verl::rewards::RewardManager: decoding the response of " +
                                           detail::item_label(ctx, i) + " threw: ",
                                       e);
        });
    return texts;
  }

  //! verl's num_examine printing, in item order.
  void examine(const RewardBatch& batch, const RewardResult& result, const std::vector<RewardOutput>& outputs) const {
    std::ostream& out = options_.examine_to != nullptr ? *options_.examine_to : std::cout;
    std::map<std::string, std::size_t, std::less<>> printed;
    for (std::size_t i = 0; i < outputs.size(); ++i) {
      const ItemInfo& item = batch.items[i];
      if (printed[item.data_source]++ >= options_.num_examine) continue;
      out << "[prompt] " << item.prompt << "\n[response] " << result.responses[i] << "\n[ground_truth] "
          << item.ground_truth << "\n[score] " << outputs[i].score << "\n";
      for (const auto& [key, value] : outputs[i].extra) out << "[" << key << "] " << value << "\n";
    }
  }

  static void collect_extra(const std::vector<RewardOutput>& outputs, const detail::ScoringContext& ctx,
                            RewardResult& result) {
    if (outputs.empty() || outputs.front().extra.empty()) {
      for (std::size_t i = 1; i < outputs.size(); ++i) {
        check_same_keys(outputs, ctx, i);
      }
      return;
    }
    auto& info = result.reward_extra_info;
    for (std::size_t i = 0; i < outputs.size(); ++i) {
      check_same_keys(outputs, ctx, i);
      info["score"].push_back(outputs[i].score);
      for (const auto& [key, value] : outputs[i].extra) {
        if (key != "score") info[key].push_back(value);  // the score is RewardOutput::score, listed above
      }
    }
    for (const auto& [key, values] : info) {
      double sum = 0.0;
      for (const double v : values) sum += v;
      result.metrics["reward/" + key + "/mean"] = sum / static_cast<double>(values.size());
    }
  }

  //! Item i reports the same extra keys as item 0 (verl's lists must line up with the items).
  static void check_same_keys(const std::vector<RewardOutput>& outputs, const detail::ScoringContext& ctx,
                              std::size_t i) {
    const auto& first = outputs.front().extra;
    const auto& mine = outputs[i].extra;
    if (first.size() == mine.size() &&
        std::equal(first.begin(), first.end(), mine.begin(), [](const auto& x, const auto& y) { return x.first == y.first; })) {
      return;
    }
    const auto missing_in = [](const auto& a, const auto& b) -> std::string {
      for (const auto& [key, value] : a) {
        if (!b.contains(key)) return key;
      }
      return {};
    };
    const std::string only_first = missing_in(first, mine), only_mine = missing_in(mine, first);
    throw InputError(verl::detail::concat_message(
        "verl::rewards::RewardManager: ", detail::item_label(ctx, i), " reports ",
        only_mine.empty() ? "no extra key \"" + only_first + "\", which item 0 reports"
                          : "the extra key \"" + only_mine + "\", which item 0 does not report",
        "; every item must report the same extra keys (one list entry per item)"));
  }

  R reward_;
  Decode decode_;
  RewardManagerOptions options_;
};

//! Scores `batch` once with `reward` and a decoder (a one-off RewardManager; the reward is used by reference).
template <ManagedReward R, DecodesTokens Tok>
[[nodiscard]] RewardResult compute_rewards(R& reward, const RewardBatch& batch, const Tok& tokenizer,
                                           RewardManagerOptions options = {}) {
  if constexpr (is_combined_v<R>) {
    return RewardManager<R>(reward, tokenizer, options)(batch);  // a combination is copied
  } else {
    return RewardManager<RewardRef<R>>(RewardRef<R>(reward), tokenizer, options)(batch);
  }
}

}  // namespace verl::rewards
