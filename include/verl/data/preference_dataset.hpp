#pragma once
//! \file
//! Offline datasets for the DPO, KTO and SFT trainers, read from JSONL and tokenised once at load:
//!
//! | dataset      | row schema (keys configurable)                          | batch      |
//! |--------------|---------------------------------------------------------|------------|
//! | DPODataset   | prompt, chosen, rejected                                | PairBatch  |
//! | KTODataset   | prompt, completion, label (bool)                        | KTOBatch   |
//! | SFTDataset   | prompt, response; or messages                           | SFTBatch   |
//!
//! Values are strings (TRL's "standard" format, tokenised as they are) or lists of chat messages (TRL's
//! "conversational" format, rendered with the chat format as trl.data_utils.apply_chat_template: the prompt with
//! the generation prompt, the completion as the text the whole conversation adds after the longest common
//! prefix). A conversational prompt must end with a user message (TRL's continue_final_message case, a prompt
//! ending with an assistant message, is not supported). Mixing a conversational prompt with a string
//! completion is an error. Rows with an implicit prompt (chosen/rejected only) are not supported.
//!
//! Tokenisation and lengths follow TRL 0.19.1 (DPO: DPOTrainer.tokenize_row and concatenated_forward; KTO:
//! kto_trainer._tokenize and _process_tokens) and verl 0.7.1 (SFT messages: MultiTurnSFTDataset):
//! - DPO: prompt ids cut to their last `max_prompt_length`; chosen/rejected ids + eos cut to their first
//!   `max_completion_length`; then each prompt+completion sequence longer than `max_length` keeps its first
//!   (`keep_start`) or last (`keep_end`, TRL's default) `max_length` tokens.
//! - KTO: the completion is the tokens enc(prompt + completion) adds after enc(prompt) (one token earlier when
//!   the last prompt token merged with the completion); `max_length` loses one for a missing eos (and one for a
//!   missing bos when the prompt does not start with it, as TRL counts it even without a bos token); an
//!   overlong pair first cuts the prompt to `max_prompt_length` (keep_end: its last tokens; keep_start: its
//!   first), then the completion to `max_length - max_prompt_length`; bos (if `bos_token_id` is set) and eos are
//!   then added when missing. The KL (reference point) pairs are built at collate time: row i's prompt with the
//!   completion of row i-1 of the same batch (row 0 with the last). TRL rotates consecutive dataset rows in
//!   chunks of per_device_train_batch_size before shuffling; the two agree when shuffle is off and the chunk
//!   is the batch. A batch of one pairs a row with its own completion.
//! - SFT prompt/response: prompt, then response + eos (eos not doubled); `messages`: the conversation rendered
//!   message by message as verl's MultiTurnSFTDataset, each segment tokenised on its own, loss on the
//!   assistant messages' tokens after their generation prompt (end-of-turn tokens included). Sequences longer
//!   than `max_length` follow `truncation` (error | left | right, verl's SFT options).
//!
//! Loss masks mark the tokens that are training targets (completion/response tokens). A token at sequence
//! position 0 is never a target (nothing predicts it), as TRL's and verl's shifted masks.
//!
//! Batch layouts. PairBatch and KTOBatch use verl::TokenBatch's scoring layout, so the trainer calls the
//! ReferenceModel contract directly: each sequence is its prompt left-padded to P columns followed by its
//! completion right-padded to R columns; `response_length` = R; the (B,R) mask marks the scored completion
//! tokens (`log_probs(batch)` is (B,R); sum(log_probs * mask, -1) is TRL's per-sequence log-prob). The chosen
//! and rejected halves of a PairBatch share P and R, so they can be concatenated into one (2B,T) forward.
//! SFTBatch is right-padded (B,T) with a (B,T) loss mask. Position ids are verl's clip(cumsum(mask) - 1, 0).
//!
//! Memory: 8 bytes per kept token (DPO keeps prompt+chosen and prompt+rejected), plus ItemInfo per row.

#include "verl/concepts/tokenizer.hpp"
#include "verl/core/errors.hpp"
#include "verl/core/item_info.hpp"
#include "verl/core/model_io.hpp"
#include "verl/data/common.hpp"
#include "verl/data/jsonl.hpp"
#include "verl/data/rl_dataset.hpp"

#include <ATen/core/Tensor.h>
#include <ATen/ops/from_blob.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace verl::data {

//! TRL's `truncation_mode`: which end of an overlong sequence is kept.
enum class TruncationMode { keep_end, keep_start };

//! Parses "keep_end" | "keep_start"; throws ConfigError otherwise.
[[nodiscard]] inline TruncationMode parse_truncation_mode(std::string_view s) {
  if (s == "keep_end") return TruncationMode::keep_end;
  if (s == "keep_start") return TruncationMode::keep_start;
  throw ConfigError(verl::detail::concat_message("verl::data: truncation_mode = \"", s,
                                                 "\"; expected keep_end or keep_start"));
}

//! One tokenised sequence: prompt tokens then completion tokens; ids[t] for t >= prompt_length are targets.
struct TokenizedSequence {
  std::vector<std::int64_t> ids;
  std::size_t prompt_length = 0;

  friend bool operator==(const TokenizedSequence&, const TokenizedSequence&) = default;
};

//! Options of DPODataset::load; defaults are TRL 0.19.1's DPOConfig.
struct DPODatasetOptions {
  std::string prompt_key = "prompt", chosen_key = "chosen", rejected_key = "rejected";
  std::optional<std::int64_t> max_prompt_length = 512;  //!< >= 1, or unset for no limit
  std::optional<std::int64_t> max_completion_length;    //!< >= 1, or unset
  std::optional<std::int64_t> max_length = 1024;        //!< prompt + completion, >= 1, or unset
  TruncationMode truncation_mode = TruncationMode::keep_end;
  SkipPolicy skip_policy = SkipPolicy::error;
};

//! Options of KTODataset::load; defaults are TRL 0.19.1's KTOConfig.
struct KTODatasetOptions {
  std::string prompt_key = "prompt", completion_key = "completion", label_key = "label";
  std::int64_t max_prompt_length = 512;  //!< >= 1
  std::int64_t max_length = 1024;        //!< > max_prompt_length
  TruncationMode truncation_mode = TruncationMode::keep_end;
  std::optional<std::int64_t> bos_token_id;  //!< the tokenizer's bos (TRL prepends it when set); unset = none
  SkipPolicy skip_policy = SkipPolicy::error;
};

//! Options of SFTDataset::load; defaults are verl 0.7.1's SFT data config.
struct SFTDatasetOptions {
  std::string prompt_key = "prompt", response_key = "response", messages_key = "messages";
  std::int64_t max_length = 1024;  //!< >= 1
  Truncation truncation = Truncation::error;  //!< error | left | right (middle is rejected, as verl)
  SkipPolicy skip_policy = SkipPolicy::error;
};

//! A DPO pair: the same prompt with the chosen and the rejected completion.
struct PairExample {
  TokenizedSequence chosen, rejected;
  ItemInfo info;  //!< prompt text (rendered), data_source, extra_info of the row
};

//! A KTO example before pairing: prompt and completion tokens as TRL's _tokenize returns them.
struct KTOExample {
  std::vector<std::int64_t> prompt_ids, completion_ids;
  bool label = false;  //!< true = desirable
  ItemInfo info;
};

//! DPO batch: chosen and rejected in TokenBatch scoring layout with one P and one R; the (B,R) int64 masks
//! are 1 on the scored completion tokens.
struct PairBatch {
  TokenBatch chosen, rejected;  //!< input_ids/attention_mask/position_ids (B,P+R), response_length R
  at::Tensor chosen_mask;       // (B,R) int64
  at::Tensor rejected_mask;     // (B,R) int64
  std::vector<ItemInfo> items;  //!< B entries
  std::vector<std::size_t> indices;  //!< dataset index of each row (a key for precomputed reference log-probs)
};

//! KTO batch: the matched pairs, the mismatched KL pairs (same P and R as each other), and the labels.
struct KTOBatch {
  TokenBatch completion, kl;       //!< (B,P+R), response_length R
  at::Tensor completion_mask;      // (B,R) int64
  at::Tensor kl_mask;              // (B,R) int64
  at::Tensor labels;               // (B,) bool, true = desirable
  std::vector<ItemInfo> items;
  //! Dataset index of each row. The KL pairs depend on the batch's composition, so only the matched pairs'
  //! reference log-probs can be precomputed per index.
  std::vector<std::size_t> indices;
};

//! SFT batch, right-padded.
struct SFTBatch {
  at::Tensor input_ids;       // (B,T) int64, pad id on padding
  at::Tensor attention_mask;  // (B,T) int64
  at::Tensor position_ids;    // (B,T) int64
  at::Tensor loss_mask;       // (B,T) int64, 1 on target tokens (never at position 0)
  std::vector<std::size_t> indices;  //!< dataset index of each row
};

namespace detail {

//! The rendered prompt and completion texts of a prompt/completion row.
struct PromptCompletionTexts {
  std::string prompt;
  std::vector<std::string> completions;
};

//! TRL's apply_chat_template for prompt + one or more completions (strings: unchanged).
template <class Format>
PromptCompletionTexts render_prompt_completions(const nlohmann::json& row, std::string_view prompt_key,
                                                std::span<const std::string_view> completion_keys, const Format& format) {
  const auto& prompt = require_field(row, prompt_key);
  PromptCompletionTexts out;
  if (prompt.is_string()) {
    out.prompt = prompt.get<std::string>();
    for (const auto key : completion_keys) {
      const auto& c = require_field(row, key);
      verl::detail::check<InputError>(c.is_string(), "\"", key, "\" is a JSON ", c.type_name(),
                                      ", expected a string like \"", prompt_key, "\" (or both as chat messages)");
      out.completions.push_back(c.get<std::string>());
    }
    return out;
  }
  const auto messages = parse_messages(prompt, prompt_key);
  verl::detail::check<InputError>(!messages.empty(), "\"", prompt_key, "\" is an empty list of messages");
  verl::detail::check<InputError>(messages.back().role == "user", "\"", prompt_key, "\" ends with a \"",
                                  messages.back().role, "\" message, expected the last prompt message to be "
                                  "\"user\" (continuing an assistant message is not supported)");
  out.prompt = render_messages(format, messages, /*add_generation_prompt=*/true, prompt_key);
  std::vector<std::string> full;
  for (const auto key : completion_keys) {
    const auto& c = require_field(row, key);
    verl::detail::check<InputError>(c.is_array(), "\"", key, "\" is a JSON ", c.type_name(), ", expected chat messages"
                                    " like the conversational \"", prompt_key, "\"");
    auto conversation = messages;
    for (auto& m : parse_messages(c, key)) conversation.push_back(std::move(m));
    // TRL narrows the prompt to the common prefix with each conversation in turn (the DeepSeek-R1 case).
    full.push_back(render_messages(format, conversation, /*add_generation_prompt=*/false, key));
    out.prompt.resize(common_prefix_length(out.prompt, full.back()));
    out.completions.push_back(full.back().substr(out.prompt.size()));
  }
  return out;
}

inline void check_limit(const std::optional<std::int64_t>& v, const char* owner, const char* name) {
  verl::detail::check<ConfigError>(!v || *v >= 1, owner, ": `", name, "` is ", v.value_or(0), ", expected >= 1 or unset");
}

//! ItemInfo of a preference/SFT row: the rendered prompt, data_source, extra_info.
inline ItemInfo row_info(const nlohmann::json& row, std::string prompt) {
  ItemInfo info;
  info.prompt = std::move(prompt);
  if (const auto* ds = find_field(row, "data_source")) info.data_source = string_field(*ds, "data_source");
  const auto* extra = find_field(row, "extra_info");
  info.extra_info = extra ? *extra : nlohmann::json::object();
  return info;
}

//! Sequences in TokenBatch scoring layout (prompt left-padded to P, completion right-padded to R) and their
//! (B,R) completion mask.
struct ScoringLayout {
  TokenBatch batch;
  at::Tensor mask;  // (B,R)
};

//! (P, R): the longest prompt and the longest completion of `rows`, each at least 1 (TokenBatch needs R >= 1
//! and a column before the first scored one).
inline std::pair<std::int64_t, std::int64_t> prompt_completion_extent(std::span<const TokenizedSequence* const> rows) {
  std::int64_t p = 1, r = 1;
  for (const auto* s : rows) {
    p = std::max(p, static_cast<std::int64_t>(s->prompt_length));
    r = std::max(r, static_cast<std::int64_t>(s->ids.size() - s->prompt_length));
  }
  return {p, r};
}

inline ScoringLayout scoring_layout(std::span<const TokenizedSequence* const> rows, std::int64_t p, std::int64_t r,
                                    std::int64_t pad_id) {
  const auto b = static_cast<std::int64_t>(rows.size());
  const std::int64_t t = p + r;
  std::vector<std::int64_t> ids(static_cast<std::size_t>(b * t), pad_id), attn(ids.size(), 0),
      mask(static_cast<std::size_t>(b * r), 0);
  for (std::size_t i = 0; i < rows.size(); ++i) {
    const auto& s = *rows[i];
    const std::size_t pl = s.prompt_length, cl = s.ids.size() - pl;
    const std::size_t row = i * static_cast<std::size_t>(t);
    const std::size_t prompt_start = row + static_cast<std::size_t>(p) - pl;
    std::copy(s.ids.begin(), s.ids.end(), ids.begin() + static_cast<std::ptrdiff_t>(prompt_start));
    std::fill_n(attn.begin() + static_cast<std::ptrdiff_t>(prompt_start), s.ids.size(), 1);
    const std::size_t mrow = i * static_cast<std::size_t>(r);
    std::fill_n(mask.begin() + static_cast<std::ptrdiff_t>(mrow), cl, 1);
    if (pl == 0 && cl > 0) mask[mrow] = 0;  // the sequence's first token: nothing predicts it
  }
  ScoringLayout out;
  out.batch.input_ids = long_tensor(ids, b, t);        // (B,T)
  out.batch.attention_mask = long_tensor(attn, b, t);  // (B,T)
  out.batch.position_ids = position_tensor(attn, b, t);  // (B,T)
  out.batch.response_length = r;
  out.mask = long_tensor(mask, b, r);  // (B,R)
  return out;
}

//! Appends `id` unless `ids` already ends with it.
inline void append_unless_last(std::vector<std::int64_t>& ids, std::int64_t id) {
  if (ids.empty() || ids.back() != id) ids.push_back(id);
}

//! TRL's KTO _process_tokens (decoder-only) for one prompt/answer pair.
inline TokenizedSequence kto_process(std::vector<std::int64_t> prompt, std::vector<std::int64_t> answer,
                                     const KTODatasetOptions& o, std::int64_t eos) {
  std::int64_t max_length = o.max_length;
  if (!prompt.empty() && (!o.bos_token_id || *o.bos_token_id != prompt.front())) --max_length;
  if (!answer.empty() && eos != answer.back()) --max_length;
  const auto total = [&] { return static_cast<std::int64_t>(prompt.size() + answer.size()); };
  const auto mp = static_cast<std::size_t>(o.max_prompt_length);
  if (total() > max_length && prompt.size() > mp) {
    if (o.truncation_mode == TruncationMode::keep_start) prompt.resize(mp);
    else prompt.erase(prompt.begin(), prompt.end() - static_cast<std::ptrdiff_t>(mp));
  }
  if (total() > max_length) {
    const std::int64_t keep = std::max<std::int64_t>(0, max_length - o.max_prompt_length);
    if (static_cast<std::int64_t>(answer.size()) > keep) answer.resize(static_cast<std::size_t>(keep));
  }
  if (o.bos_token_id && (prompt.empty() || prompt.front() != *o.bos_token_id)) prompt.insert(prompt.begin(), *o.bos_token_id);
  TokenizedSequence s;
  s.prompt_length = prompt.size();
  s.ids = std::move(prompt);
  const bool add_eos = answer.empty() || answer.back() != eos;
  s.ids.insert(s.ids.end(), answer.begin(), answer.end());
  if (add_eos) s.ids.push_back(eos);
  return s;
}

}  // namespace detail

// ---------------------------------------------------------------------------------------------------------

//! DPO pairs in memory; collates PairBatch. Immutable after load.
class DPODataset {
 public:
  using Batch = PairBatch;

  //! Reads `files` (JSONL), renders, tokenises and truncates every row (see the file comment).
  template <Tokenizer T, class Format = NoChatFormat>
  [[nodiscard]] static DPODataset load(std::span<const std::filesystem::path> files, const T& tokenizer,
                                       const DPODatasetOptions& o, const Format& format = {}) {
    constexpr const char* owner = "verl::data::DPODatasetOptions";
    detail::check_limit(o.max_prompt_length, owner, "max_prompt_length");
    detail::check_limit(o.max_completion_length, owner, "max_completion_length");
    detail::check_limit(o.max_length, owner, "max_length");
    DPODataset ds;
    ds.pad_id_ = static_cast<std::int64_t>(tokenizer.pad_token_id());
    const auto eos = static_cast<std::int64_t>(tokenizer.eos_token_id());
    const std::string_view keys[] = {o.chosen_key, o.rejected_key};
    for (const auto& file : files) {
      SkipReport skip;
      const auto counts = read_jsonl(file, o.skip_policy, skip, [&](const nlohmann::json& row, const RowLocation&) {
        const auto texts = detail::render_prompt_completions(row, o.prompt_key, keys, format);
        std::vector<std::int64_t> prompt = tokenizer.encode(texts.prompt);
        if (o.max_prompt_length && static_cast<std::int64_t>(prompt.size()) > *o.max_prompt_length)
          prompt.erase(prompt.begin(), prompt.end() - static_cast<std::ptrdiff_t>(*o.max_prompt_length));
        PairExample ex;
        for (int which = 0; which < 2; ++which) {
          std::vector<std::int64_t> completion = tokenizer.encode(texts.completions[static_cast<std::size_t>(which)]);
          completion.push_back(eos);
          if (o.max_completion_length && static_cast<std::int64_t>(completion.size()) > *o.max_completion_length)
            completion.resize(static_cast<std::size_t>(*o.max_completion_length));
          (which == 0 ? ex.chosen : ex.rejected) = join_and_cut(prompt, completion, o);
        }
        ex.info = detail::row_info(row, texts.prompt);
        ds.examples_.push_back(std::move(ex));
      });
      ds.report_.rows += counts.lines;
      ds.report_.skip.merge(skip);
    }
    ds.report_.kept = ds.examples_.size();
    verl::detail::check<ConfigError>(!ds.examples_.empty(), "verl::data::DPODataset: no row loaded (",
                                     ds.report_.summary(o.max_length.value_or(0)), ")");
    return ds;
  }

  template <Tokenizer T, class Format = NoChatFormat>
  [[nodiscard]] static DPODataset load(const std::filesystem::path& file, const T& tokenizer,
                                       const DPODatasetOptions& o, const Format& format = {}) {
    return load(std::span<const std::filesystem::path>(&file, 1), tokenizer, o, format);
  }

  //! Prompt + completion cut to max_length by truncation_mode (TRL's flush-and-truncate, row by row).
  [[nodiscard]] static TokenizedSequence join_and_cut(const std::vector<std::int64_t>& prompt,
                                                      const std::vector<std::int64_t>& completion,
                                                      const DPODatasetOptions& o) {
    TokenizedSequence s;
    s.ids = prompt;
    s.ids.insert(s.ids.end(), completion.begin(), completion.end());
    s.prompt_length = prompt.size();
    if (o.max_length && static_cast<std::int64_t>(s.ids.size()) > *o.max_length) {
      const auto keep = static_cast<std::size_t>(*o.max_length);
      if (o.truncation_mode == TruncationMode::keep_start) {
        s.ids.resize(keep);
        s.prompt_length = std::min(s.prompt_length, keep);
      } else {
        const std::size_t cut = s.ids.size() - keep;
        s.ids.erase(s.ids.begin(), s.ids.begin() + static_cast<std::ptrdiff_t>(cut));
        s.prompt_length = s.prompt_length > cut ? s.prompt_length - cut : 0;
      }
    }
    return s;
  }

  [[nodiscard]] std::size_t size() const { return examples_.size(); }
  [[nodiscard]] const PairExample& operator[](std::size_t i) const { return examples_.at(i); }
  [[nodiscard]] const LoadReport& report() const { return report_; }
  [[nodiscard]] std::int64_t pad_token_id() const { return pad_id_; }

  [[nodiscard]] PairBatch collate(std::span<const std::size_t> indices) const {
    std::vector<const TokenizedSequence*> chosen, rejected, both;
    PairBatch batch;
    for (const std::size_t i : indices) {
      const auto& ex = examples_.at(i);
      chosen.push_back(&ex.chosen);
      rejected.push_back(&ex.rejected);
      both.push_back(&ex.chosen);
      both.push_back(&ex.rejected);
      batch.items.push_back(ex.info);
      batch.indices.push_back(i);
    }
    const auto [p, r] = detail::prompt_completion_extent(both);
    auto c = detail::scoring_layout(chosen, p, r, pad_id_);
    auto rj = detail::scoring_layout(rejected, p, r, pad_id_);
    batch.chosen = std::move(c.batch);
    batch.chosen_mask = std::move(c.mask);
    batch.rejected = std::move(rj.batch);
    batch.rejected_mask = std::move(rj.mask);
    return batch;
  }

 private:
  std::int64_t pad_id_ = 0;
  std::vector<PairExample> examples_;
  LoadReport report_;
};

//! KTO examples in memory; collates KTOBatch (matched and mismatched KL pairs). Immutable after load.
class KTODataset {
 public:
  using Batch = KTOBatch;

  template <Tokenizer T, class Format = NoChatFormat>
  [[nodiscard]] static KTODataset load(std::span<const std::filesystem::path> files, const T& tokenizer,
                                       const KTODatasetOptions& o, const Format& format = {}) {
    verl::detail::check<ConfigError>(o.max_prompt_length >= 1 && o.max_length > o.max_prompt_length,
                                     "verl::data::KTODatasetOptions: max_prompt_length = ", o.max_prompt_length,
                                     ", max_length = ", o.max_length, "; expected 1 <= max_prompt_length < max_length");
    KTODataset ds;
    ds.options_ = o;
    ds.pad_id_ = static_cast<std::int64_t>(tokenizer.pad_token_id());
    ds.eos_id_ = static_cast<std::int64_t>(tokenizer.eos_token_id());
    const std::string_view keys[] = {o.completion_key};
    for (const auto& file : files) {
      SkipReport skip;
      const auto counts = read_jsonl(file, o.skip_policy, skip, [&](const nlohmann::json& row, const RowLocation&) {
        const auto texts = detail::render_prompt_completions(row, o.prompt_key, keys, format);
        const auto& label = detail::require_field(row, o.label_key);
        verl::detail::check<InputError>(label.is_boolean(), "\"", o.label_key, "\" is a JSON ", label.type_name(),
                                        ", expected true (desirable) or false (undesirable)");
        KTOExample ex;
        ex.label = label.get<bool>();
        // TRL's _tokenize: enc(prompt) and enc(prompt + completion); the boundary moves one token left when
        // the prompt's last token merged with the completion.
        const std::vector<std::int64_t> prompt = tokenizer.encode(texts.prompt);
        std::vector<std::int64_t> full = tokenizer.encode(texts.prompt + texts.completions[0]);
        std::size_t r = prompt.size();
        const bool same = full.size() >= r && std::equal(prompt.begin(), prompt.end(), full.begin());
        if (!same) r -= 1;  // prompt is non-empty here: an empty prompt is a prefix of anything
        r = std::min(r, full.size());
        ex.prompt_ids.assign(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(r));
        ex.completion_ids.assign(full.begin() + static_cast<std::ptrdiff_t>(r), full.end());
        ex.info = detail::row_info(row, texts.prompt);
        ds.examples_.push_back(std::move(ex));
      });
      ds.report_.rows += counts.lines;
      ds.report_.skip.merge(skip);
    }
    ds.report_.kept = ds.examples_.size();
    verl::detail::check<ConfigError>(!ds.examples_.empty(), "verl::data::KTODataset: no row loaded (",
                                     ds.report_.summary(o.max_length), ")");
    return ds;
  }

  template <Tokenizer T, class Format = NoChatFormat>
  [[nodiscard]] static KTODataset load(const std::filesystem::path& file, const T& tokenizer,
                                       const KTODatasetOptions& o, const Format& format = {}) {
    return load(std::span<const std::filesystem::path>(&file, 1), tokenizer, o, format);
  }

  [[nodiscard]] std::size_t size() const { return examples_.size(); }
  [[nodiscard]] const KTOExample& operator[](std::size_t i) const { return examples_.at(i); }
  [[nodiscard]] const LoadReport& report() const { return report_; }
  //! Example i processed as TRL's _process_tokens (truncation, bos/eos), with completion `answer_of`.
  [[nodiscard]] TokenizedSequence processed(std::size_t i, std::size_t answer_of) const {
    return detail::kto_process(examples_.at(i).prompt_ids, examples_.at(answer_of).completion_ids, options_, eos_id_);
  }

  [[nodiscard]] KTOBatch collate(std::span<const std::size_t> indices) const {
    const std::size_t b = indices.size();
    std::vector<TokenizedSequence> matched, mismatched;
    KTOBatch batch;
    std::vector<std::uint8_t> labels;
    for (std::size_t j = 0; j < b; ++j) {
      matched.push_back(processed(indices[j], indices[j]));
      mismatched.push_back(processed(indices[j], indices[(j + b - 1) % b]));
      labels.push_back(examples_.at(indices[j]).label ? 1 : 0);
      batch.items.push_back(examples_.at(indices[j]).info);
      batch.indices.push_back(indices[j]);
    }
    std::vector<const TokenizedSequence*> m, k, all;
    for (std::size_t j = 0; j < b; ++j) {
      m.push_back(&matched[j]);
      k.push_back(&mismatched[j]);
      all.push_back(&matched[j]);
      all.push_back(&mismatched[j]);
    }
    const auto [p, r] = detail::prompt_completion_extent(all);
    auto lm = detail::scoring_layout(m, p, r, pad_id_);
    auto lk = detail::scoring_layout(k, p, r, pad_id_);
    batch.completion = std::move(lm.batch);
    batch.completion_mask = std::move(lm.mask);
    batch.kl = std::move(lk.batch);
    batch.kl_mask = std::move(lk.mask);
    batch.labels = at::from_blob(labels.data(), {static_cast<std::int64_t>(b)}, at::TensorOptions().dtype(at::kByte))
                       .to(at::kBool);  // (B,)
    return batch;
  }

 private:
  KTODatasetOptions options_;
  std::int64_t pad_id_ = 0, eos_id_ = 0;
  std::vector<KTOExample> examples_;
  LoadReport report_;
};

//! SFT sequences in memory; collates SFTBatch. Immutable after load.
class SFTDataset {
 public:
  using Batch = SFTBatch;

  template <Tokenizer T, class Format = NoChatFormat>
  [[nodiscard]] static SFTDataset load(std::span<const std::filesystem::path> files, const T& tokenizer,
                                       const SFTDatasetOptions& o, const Format& format = {}) {
    verl::detail::check<ConfigError>(o.max_length >= 1, "verl::data::SFTDatasetOptions: `max_length` is ", o.max_length,
                                     ", expected >= 1");
    verl::detail::check<ConfigError>(o.truncation != Truncation::middle,
                                     "verl::data::SFTDatasetOptions: `truncation` is middle; expected error, left "
                                     "or right (verl's SFT dataset)");
    SFTDataset ds;
    ds.pad_id_ = static_cast<std::int64_t>(tokenizer.pad_token_id());
    const auto eos = static_cast<std::int64_t>(tokenizer.eos_token_id());
    const std::string_view keys[] = {o.response_key};
    for (const auto& file : files) {
      SkipReport skip;
      const auto counts = read_jsonl(file, o.skip_policy, skip, [&](const nlohmann::json& row, const RowLocation& where) {
        std::vector<std::int64_t> ids, mask;
        if (const auto* msgs = detail::find_field(row, o.messages_key)) {
          tokenize_conversation(tokenizer, format, detail::parse_messages(*msgs, o.messages_key), o.messages_key, ids, mask);
        } else {
          const auto texts = detail::render_prompt_completions(row, o.prompt_key, keys, format);
          ids = tokenizer.encode(texts.prompt);
          mask.assign(ids.size(), 0);
          auto response = tokenizer.encode(texts.completions[0]);
          detail::append_unless_last(response, eos);
          ids.insert(ids.end(), response.begin(), response.end());
          mask.insert(mask.end(), response.size(), 1);
        }
        if (static_cast<std::int64_t>(ids.size()) > o.max_length) {
          verl::detail::check<ConfigError>(
              o.truncation != Truncation::error, "verl::data::SFTDataset: ", where.str(), ": the sequence has ",
              ids.size(), " tokens, more than max_length = ", o.max_length,
              " with truncation = error; raise max_length or set truncation = left or right");
          (void)truncate_tokens(ids, o.max_length, o.truncation);
          (void)truncate_tokens(mask, o.max_length, o.truncation);
          ++ds.report_.truncated;
        }
        if (!mask.empty()) mask[0] = 0;  // position 0 is never a target
        ds.ids_.push_back(std::move(ids));
        ds.masks_.push_back(std::move(mask));
      });
      ds.report_.rows += counts.lines;
      ds.report_.skip.merge(skip);
    }
    ds.report_.kept = ds.ids_.size();
    verl::detail::check<ConfigError>(!ds.ids_.empty(), "verl::data::SFTDataset: no row loaded (",
                                     ds.report_.summary(o.max_length), ")");
    return ds;
  }

  template <Tokenizer T, class Format = NoChatFormat>
  [[nodiscard]] static SFTDataset load(const std::filesystem::path& file, const T& tokenizer,
                                       const SFTDatasetOptions& o, const Format& format = {}) {
    return load(std::span<const std::filesystem::path>(&file, 1), tokenizer, o, format);
  }

  //! verl's MultiTurnSFTDataset: each message's text is what rendering it adds to the conversation so far;
  //! an assistant message's tokens after its generation prompt are targets. Throws InputError when the
  //! format does not render prefixes of a conversation as prefixes of its rendering.
  template <class T, class Format>
  static void tokenize_conversation(const T& tokenizer, const Format& format, const std::vector<chat::Message>& messages,
                                    std::string_view key, std::vector<std::int64_t>& ids, std::vector<std::int64_t>& mask) {
    verl::detail::check<InputError>(!messages.empty(), "\"", key, "\" is an empty list of messages");
    std::string done;  // rendering of messages[0, i)
    const auto add = [&](const std::string& upto, bool target) {
      verl::detail::check<InputError>(upto.compare(0, done.size(), done) == 0, "\"", key,
                                      "\": the chat format renders a conversation's prefix as text that is not a "
                                      "prefix of the whole; expected a prefix-stable format");
      const auto piece = tokenizer.encode(upto.substr(done.size()));
      ids.insert(ids.end(), piece.begin(), piece.end());
      mask.insert(mask.end(), piece.size(), target ? 1 : 0);
      done = upto;
    };
    for (std::size_t i = 0; i < messages.size(); ++i) {
      const std::vector<chat::Message> head(messages.begin(), messages.begin() + static_cast<std::ptrdiff_t>(i));
      const std::vector<chat::Message> upto(messages.begin(), messages.begin() + static_cast<std::ptrdiff_t>(i + 1));
      const bool assistant = messages[i].role == "assistant";
      if (assistant) add(detail::render_messages(format, head, /*add_generation_prompt=*/true, key), false);
      add(detail::render_messages(format, upto, /*add_generation_prompt=*/false, key), assistant);
    }
  }

  [[nodiscard]] std::size_t size() const { return ids_.size(); }
  [[nodiscard]] const std::vector<std::int64_t>& ids(std::size_t i) const { return ids_.at(i); }
  [[nodiscard]] const std::vector<std::int64_t>& loss_mask(std::size_t i) const { return masks_.at(i); }
  [[nodiscard]] const LoadReport& report() const { return report_; }

  [[nodiscard]] SFTBatch collate(std::span<const std::size_t> indices) const {
    std::size_t t = 1;
    for (const std::size_t i : indices) t = std::max(t, ids_.at(i).size());
    const auto b = static_cast<std::int64_t>(indices.size()), tl = static_cast<std::int64_t>(t);
    std::vector<std::int64_t> ids(indices.size() * t, pad_id_), attn(ids.size(), 0), loss(ids.size(), 0);
    for (std::size_t j = 0; j < indices.size(); ++j) {
      const auto& r = ids_[indices[j]];
      const auto& m = masks_[indices[j]];
      std::copy(r.begin(), r.end(), ids.begin() + static_cast<std::ptrdiff_t>(j * t));
      std::fill_n(attn.begin() + static_cast<std::ptrdiff_t>(j * t), r.size(), 1);
      std::copy(m.begin(), m.end(), loss.begin() + static_cast<std::ptrdiff_t>(j * t));
    }
    SFTBatch batch;
    batch.indices.assign(indices.begin(), indices.end());
    batch.input_ids = detail::long_tensor(ids, b, tl);        // (B,T)
    batch.attention_mask = detail::long_tensor(attn, b, tl);  // (B,T)
    batch.position_ids = detail::position_tensor(attn, b, tl);  // (B,T)
    batch.loss_mask = detail::long_tensor(loss, b, tl);       // (B,T)
    return batch;
  }

 private:
  std::int64_t pad_id_ = 0;
  std::vector<std::vector<std::int64_t>> ids_, masks_;
  LoadReport report_;
};

}  // namespace verl::data
