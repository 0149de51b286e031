#pragma once
//! \file
//! verl::data::RLDataset: prompts for RL (PPO/GRPO) in verl's row schema, read from JSONL, tokenised once at
//! load and kept in memory, and collated into left-padded verl::Prompts with each item's verl::ItemInfo.
//!
//! Row schema (verl 0.7.1, verl/utils/dataset/rl_dataset.py and the GSM8K/MATH preprocessing scripts):
//! \code{.json}
//! {"data_source": "openai/gsm8k",
//!  "prompt": [{"role": "user", "content": "What is 2+3? ..."}],
//!  "ability": "math",
//!  "reward_model": {"style": "rule", "ground_truth": "5"},
//!  "extra_info": {"split": "train", "index": 0}}
//! \endcode
//! - `prompt` (key configurable, `prompt_key`): a list of chat messages, rendered with the chat format and the
//!   generation prompt (verl: `tokenizer.apply_chat_template(prompt, add_generation_prompt=True)`); or a plain
//!   string, tokenised as it is (taken to be formatted already, as TRL treats its "standard" text rows).
//!   Messages without a chat format are a ConfigError: verl's apply_chat_template fails when the tokenizer has
//!   no chat template.
//! - `data_source` (string, missing = ""), `reward_model.ground_truth` (string; a number, list or object is
//!   kept as its JSON text; missing = ""), `extra_info` (any JSON; missing or null = {} as verl) go to ItemInfo.
//!   Other keys are ignored.
//! - A prompt of zero tokens is rejected (a generation needs at least one prompt token); as tokenisation runs
//!   after reading, its skip reason is listed after those of the rows rejected while reading.
//!
//! Length handling, in verl's order: with `filter_overlong_prompts`, prompts of more than `max_prompt_length`
//! tokens are dropped at load and counted (LoadReport::filtered_overlong); the others are cut by `truncation`
//! (error | left | right | middle, verl's postprocess semantics).
//!
//! Memory: each kept prompt costs 8 bytes per token plus its ItemInfo (rendered prompt text, data source,
//! ground truth, extra_info JSON); 10^5 GSM8K-sized prompts (~150 tokens, ~600 bytes of text) take ~200 MB.

#include "verl/concepts/tokenizer.hpp"
#include "verl/core/errors.hpp"
#include "verl/core/item_info.hpp"
#include "verl/core/model_io.hpp"
#include "verl/data/common.hpp"
#include "verl/data/jsonl.hpp"

#include <ATen/core/Tensor.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdint>
#include <exception>
#include <filesystem>
#include <span>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace verl::data {

//! Options of RLDataset::load, named as verl's `data.*` keys; defaults are verl 0.7.1's legacy_data.yaml.
struct RLDatasetOptions {
  std::string prompt_key = "prompt";
  std::int64_t max_prompt_length = 512;  //!< >= 1
  bool filter_overlong_prompts = false;  //!< drop prompts longer than max_prompt_length at load
  Truncation truncation = Truncation::error;
  SkipPolicy skip_policy = SkipPolicy::error;
  //! Pad every batch to max_prompt_length (verl's fixed layout) instead of the longest prompt of the batch.
  bool pad_to_max_prompt_length = false;
  std::size_t tokenize_threads = 1;  //!< threads that tokenise at load (>= 1); the tokenizer must be thread-safe

  //! Throws ConfigError naming the first field out of range.
  void validate() const {
    verl::detail::check<ConfigError>(!prompt_key.empty(), "verl::data::RLDatasetOptions: `prompt_key` is empty");
    verl::detail::check<ConfigError>(max_prompt_length >= 1, "verl::data::RLDatasetOptions: `max_prompt_length` is ",
                                     max_prompt_length, ", expected >= 1");
    verl::detail::check<ConfigError>(tokenize_threads >= 1,
                                     "verl::data::RLDatasetOptions: `tokenize_threads` is 0, expected >= 1");
  }
};

//! One prompt: its token ids (chat template applied, truncated) and its non-tensor data.
struct RLExample {
  std::vector<std::int64_t> prompt_ids;
  ItemInfo info;
};

//! What loading did: rows read, kept, dropped and why.
struct LoadReport {
  std::size_t rows = 0;               //!< non-blank lines read
  std::size_t kept = 0;               //!< examples in the dataset
  std::size_t filtered_overlong = 0;  //!< dropped by filter_overlong_prompts
  std::size_t truncated = 0;          //!< cut by `truncation`
  SkipReport skip;                    //!< malformed lines dropped under SkipPolicy::skip

  //! One line for logs, e.g. "read 1000 rows, kept 990; filtered 8 prompts longer than 512 tokens; skipped 2 ...".
  [[nodiscard]] std::string summary(std::int64_t max_length) const {
    std::string s = "read " + std::to_string(rows) + " rows, kept " + std::to_string(kept);
    if (filtered_overlong)
      s += "; filtered " + std::to_string(filtered_overlong) + " longer than " + std::to_string(max_length) + " tokens";
    if (truncated) s += "; truncated " + std::to_string(truncated) + " to " + std::to_string(max_length) + " tokens";
    if (skip.skipped) s += "; " + skip.summary();
    return s;
  }
};

//! A batch of prompts for generation: verl's layout (left padding with the tokenizer's pad id, position ids =
//! clip(cumsum(mask) - 1, 0)) and each item's non-tensor data, in the same order.
struct PromptBatch {
  Prompts prompts;               //!< input_ids, attention_mask, position_ids: (B,P) int64
  std::vector<ItemInfo> items;   //!< B entries
  std::vector<std::size_t> indices;  //!< dataset index of each row
};

namespace detail {

//! Left-pads `rows` to `length` columns (>= the longest row) into verl::Prompts.
inline Prompts left_pad(const std::vector<const std::vector<std::int64_t>*>& rows, std::int64_t length,
                        std::int64_t pad_id) {
  const auto b = static_cast<std::int64_t>(rows.size());
  std::vector<std::int64_t> ids(static_cast<std::size_t>(b * length), pad_id), mask(ids.size(), 0);
  for (std::size_t i = 0; i < rows.size(); ++i) {
    const auto& r = *rows[i];
    const std::size_t start = i * static_cast<std::size_t>(length) + static_cast<std::size_t>(length) - r.size();
    std::copy(r.begin(), r.end(), ids.begin() + static_cast<std::ptrdiff_t>(start));
    std::fill_n(mask.begin() + static_cast<std::ptrdiff_t>(start), r.size(), 1);
  }
  Prompts p;
  p.input_ids = long_tensor(ids, b, length);        // (B,P)
  p.attention_mask = long_tensor(mask, b, length);  // (B,P)
  p.position_ids = position_tensor(mask, b, length);  // (B,P)
  return p;
}

//! Tokenises texts[i] into out[i] with `threads` threads; rethrows the first exception.
template <class T>
void tokenize_all(const T& tokenizer, const std::vector<std::string>& texts, std::vector<std::vector<std::int64_t>>& out,
                  std::size_t threads) {
  out.assign(texts.size(), {});
  threads = std::max<std::size_t>(1, std::min(threads, texts.size()));
  if (threads == 1) {
    for (std::size_t i = 0; i < texts.size(); ++i) out[i] = tokenizer.encode(texts[i]);
    return;
  }
  std::vector<std::exception_ptr> errors(threads);
  std::vector<std::thread> pool;
  for (std::size_t t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      try {
        for (std::size_t i = t; i < texts.size(); i += threads) out[i] = tokenizer.encode(texts[i]);
      } catch (...) {
        errors[t] = std::current_exception();
      }
    });
  }
  for (auto& th : pool) th.join();
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
}

}  // namespace detail

//! Prompts for PPO/GRPO, in memory. Immutable after load, so a DataProvider's worker threads share it.
class RLDataset {
 public:
  using Batch = PromptBatch;

  //! Reads `files` (JSONL, concatenated in order), renders and tokenises each prompt, filters and truncates.
  //! Throws InputError naming file:line for a malformed row (unless options.skip_policy is skip), ConfigError
  //! for messages without a chat format, an overlong prompt under truncation = error, or no row left.
  template <Tokenizer T, class Format = NoChatFormat>
  [[nodiscard]] static RLDataset load(std::span<const std::filesystem::path> files, const T& tokenizer,
                                      const RLDatasetOptions& options, const Format& format = {}) {
    options.validate();
    RLDataset ds;
    ds.options_ = options;
    ds.pad_id_ = static_cast<std::int64_t>(tokenizer.pad_token_id());
    std::vector<std::string> texts;
    std::vector<RowLocation> where;
    for (const auto& file : files) {
      SkipReport report;
      const auto counts = read_jsonl(file, options.skip_policy, report, [&](const nlohmann::json& row, const RowLocation& loc) {
        RLExample ex;
        ex.info = parse_row(row, options.prompt_key, format);
        texts.push_back(ex.info.prompt);
        where.push_back(loc);
        ds.examples_.push_back(std::move(ex));
      });
      ds.report_.rows += counts.lines;
      ds.report_.skip.merge(report);
    }
    std::vector<std::vector<std::int64_t>> ids;
    detail::tokenize_all(tokenizer, texts, ids, options.tokenize_threads);
    std::vector<RLExample> kept;
    kept.reserve(ds.examples_.size());
    for (std::size_t i = 0; i < ds.examples_.size(); ++i) {
      auto& p = ids[i];
      const auto n = static_cast<std::int64_t>(p.size());
      if (p.empty()) {  // a schema problem of the row: subject to the skip policy
        std::string reason = where[i].str() + ": \"" + options.prompt_key + "\" is empty after tokenisation";
        if (options.skip_policy == SkipPolicy::error) throw InputError("verl::data::RLDataset: " + reason);
        ds.report_.skip.add(std::move(reason));
        continue;
      }
      if (n > options.max_prompt_length) {
        if (options.filter_overlong_prompts) {
          ++ds.report_.filtered_overlong;
          continue;
        }
        verl::detail::check<ConfigError>(
            truncate_tokens(p, options.max_prompt_length, options.truncation), "verl::data::RLDataset: ",
            where[i].str(), ": the prompt has ", n, " tokens, more than max_prompt_length = ", options.max_prompt_length,
            " with truncation = error; set filter_overlong_prompts = true, or truncation = left, right or middle");
        ++ds.report_.truncated;
      }
      ds.examples_[i].prompt_ids = std::move(p);
      kept.push_back(std::move(ds.examples_[i]));
    }
    ds.examples_ = std::move(kept);
    ds.report_.kept = ds.examples_.size();
    verl::detail::check<ConfigError>(!ds.examples_.empty(), "verl::data::RLDataset: no prompt left after loading (",
                                     ds.report_.summary(options.max_prompt_length), ")");
    return ds;
  }

  //! load() of one file.
  template <Tokenizer T, class Format = NoChatFormat>
  [[nodiscard]] static RLDataset load(const std::filesystem::path& file, const T& tokenizer,
                                      const RLDatasetOptions& options, const Format& format = {}) {
    return load(std::span<const std::filesystem::path>(&file, 1), tokenizer, options, format);
  }

  //! A dataset of ready examples (e.g. generated in memory); prompts must be non-empty and within
  //! options.max_prompt_length when pad_to_max_prompt_length is set.
  [[nodiscard]] static RLDataset from_examples(std::vector<RLExample> examples, std::int64_t pad_token_id,
                                               const RLDatasetOptions& options = {}) {
    options.validate();
    for (std::size_t i = 0; i < examples.size(); ++i) {
      verl::detail::check<InputError>(!examples[i].prompt_ids.empty(), "verl::data::RLDataset::from_examples: example ",
                                      i, " has no prompt token, expected at least one");
      verl::detail::check<ConfigError>(
          !options.pad_to_max_prompt_length ||
              static_cast<std::int64_t>(examples[i].prompt_ids.size()) <= options.max_prompt_length,
          "verl::data::RLDataset::from_examples: example ", i, " has ", examples[i].prompt_ids.size(),
          " tokens, more than max_prompt_length = ", options.max_prompt_length);
    }
    RLDataset ds;
    ds.options_ = options;
    ds.pad_id_ = pad_token_id;
    ds.examples_ = std::move(examples);
    ds.report_.rows = ds.report_.kept = ds.examples_.size();
    return ds;
  }

  [[nodiscard]] std::size_t size() const { return examples_.size(); }
  [[nodiscard]] const RLExample& operator[](std::size_t i) const { return examples_.at(i); }
  [[nodiscard]] const LoadReport& report() const { return report_; }
  [[nodiscard]] std::int64_t pad_token_id() const { return pad_id_; }
  [[nodiscard]] const RLDatasetOptions& options() const { return options_; }

  //! The batch of examples `indices` (in that order): left-padded to the longest prompt (or to
  //! max_prompt_length). Thread-safe (const, no shared mutable state).
  [[nodiscard]] PromptBatch collate(std::span<const std::size_t> indices) const {
    std::vector<const std::vector<std::int64_t>*> rows;
    PromptBatch batch;
    std::int64_t length = options_.pad_to_max_prompt_length ? options_.max_prompt_length : 0;
    for (const std::size_t i : indices) {
      const auto& ex = examples_.at(i);
      rows.push_back(&ex.prompt_ids);
      batch.items.push_back(ex.info);
      batch.indices.push_back(i);
      length = std::max(length, static_cast<std::int64_t>(ex.prompt_ids.size()));
    }
    batch.prompts = detail::left_pad(rows, length, pad_id_);
    return batch;
  }

  //! Turns one row into its ItemInfo (prompt rendered, not yet tokenised); throws InputError naming the key.
  template <class Format>
  [[nodiscard]] static ItemInfo parse_row(const nlohmann::json& row, std::string_view prompt_key, const Format& format) {
    ItemInfo info;
    const auto& prompt = detail::require_field(row, prompt_key);
    if (prompt.is_string()) {
      info.prompt = prompt.get<std::string>();
    } else {
      const auto messages = detail::parse_messages(prompt, prompt_key);
      verl::detail::check<InputError>(!messages.empty(), "\"", prompt_key, "\" is an empty list of messages");
      info.prompt = detail::render_messages(format, messages, /*add_generation_prompt=*/true, prompt_key);
    }
    if (const auto* ds = detail::find_field(row, "data_source")) info.data_source = detail::string_field(*ds, "data_source");
    if (const auto* rm = detail::find_field(row, "reward_model")) {
      verl::detail::check<InputError>(rm->is_object(), "\"reward_model\" is a JSON ", rm->type_name(),
                                      ", expected an object such as {\"ground_truth\": \"5\"}");
      if (const auto* gt = detail::find_field(*rm, "ground_truth"))
        info.ground_truth = gt->is_string() ? gt->get<std::string>() : gt->dump();
    }
    const auto* extra = detail::find_field(row, "extra_info");
    info.extra_info = extra ? *extra : nlohmann::json::object();
    return info;
  }

 private:
  RLDatasetOptions options_;
  std::int64_t pad_id_ = 0;
  std::vector<RLExample> examples_;
  LoadReport report_;
};

}  // namespace verl::data
