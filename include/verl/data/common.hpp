#pragma once
//! \file
//! Pieces the datasets of verl::data share: the "no chat format" tag, chat messages read from a row, prompt
//! truncation as verl's RLHFDataset, and the padded tensor layouts (left-padded prompts with verl's position
//! ids; right-padded sequences with a loss mask).

#include "verl/core/errors.hpp"
#include "verl/data/jsonl.hpp"
#include "verl/tokenizers/chat_format.hpp"

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/from_blob.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstring>
#include <cstdint>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace verl::data {

//! Pass as the chat format when the tokenizer has none: rows whose prompt is a list of chat messages are then
//! a verl::ConfigError (transformers' apply_chat_template raises without a chat template, which is what verl
//! calls); plain-string prompts are tokenised as they are.
struct NoChatFormat {};

//! True for the NoChatFormat tag.
template <class F>
inline constexpr bool is_no_chat_format_v = std::is_same_v<std::remove_cvref_t<F>, NoChatFormat>;

//! How a prompt longer than the limit is cut (verl's `data.truncation`).
enum class Truncation {
  error,   //!< the row is an error (verl's default)
  left,    //!< keep the last `max` tokens
  right,   //!< keep the first `max` tokens
  middle,  //!< keep the first max/2 and the last max - max/2 tokens
};

//! Parses "error" | "left" | "right" | "middle"; throws ConfigError naming the value otherwise.
[[nodiscard]] inline Truncation parse_truncation(std::string_view s) {
  if (s == "error") return Truncation::error;
  if (s == "left") return Truncation::left;
  if (s == "right") return Truncation::right;
  if (s == "middle") return Truncation::middle;
  throw ConfigError(verl::detail::concat_message("verl::data: truncation = \"", s,
                                                 "\"; expected one of error, left, right, middle"));
}

//! Cuts `ids` to `max_length` tokens as verl's RLHFDataset does for `truncation` left/right/middle; returns
//! false (and leaves `ids` alone) when it is too long and the mode is `error`.
[[nodiscard]] inline bool truncate_tokens(std::vector<std::int64_t>& ids, std::int64_t max_length, Truncation mode) {
  const auto max = static_cast<std::size_t>(max_length);
  if (ids.size() <= max) return true;
  switch (mode) {
    case Truncation::error: return false;
    case Truncation::left: ids.erase(ids.begin(), ids.end() - static_cast<std::ptrdiff_t>(max)); break;
    case Truncation::right: ids.resize(max); break;
    case Truncation::middle: {
      const std::size_t left = max / 2, right = max - left;
      std::vector<std::int64_t> kept(ids.begin(), ids.begin() + static_cast<std::ptrdiff_t>(left));
      kept.insert(kept.end(), ids.end() - static_cast<std::ptrdiff_t>(right), ids.end());
      ids = std::move(kept);
      break;
    }
  }
  return true;
}

namespace detail {

//! Reads a list of {"role": string, "content": string} objects; `what` names the key in errors.
inline std::vector<chat::Message> parse_messages(const nlohmann::json& v, std::string_view what) {
  verl::detail::check<InputError>(v.is_array(), "\"", what, "\" is a JSON ", v.type_name(),
                                  ", expected a list of {\"role\", \"content\"} messages");
  std::vector<chat::Message> out;
  out.reserve(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) {
    const auto& m = v[i];
    verl::detail::check<InputError>(m.is_object(), "\"", what, "\"[", i, "] is a JSON ", m.type_name(),
                                    ", expected an object {\"role\": ..., \"content\": ...}");
    const auto role = m.find("role");
    const auto content = m.find("content");
    verl::detail::check<InputError>(role != m.end() && role->is_string(), "\"", what, "\"[", i,
                                    "].role is missing or not a string, expected e.g. \"user\"");
    verl::detail::check<InputError>(content != m.end() && content->is_string(), "\"", what, "\"[", i,
                                    "].content is missing or not a string (multimodal content lists are not "
                                    "supported), expected text");
    out.push_back({role->get<std::string>(), content->get<std::string>()});
  }
  return out;
}

//! Renders `messages` with `format`, or throws ConfigError when there is no format.
template <class Format>
std::string render_messages(const Format& format, const std::vector<chat::Message>& messages,
                            bool add_generation_prompt, std::string_view what) {
  if constexpr (is_no_chat_format_v<Format>) {
    (void)format, (void)messages, (void)add_generation_prompt;
    throw ConfigError(verl::detail::concat_message(
        "verl::data: \"", what, "\" holds chat messages but no chat format was given; pass one (e.g. "
        "verl::chat::qwen2_5) or give the prompt as a plain string (verl calls apply_chat_template, which "
        "fails without a chat template)"));
  } else {
    static_assert(chat::ChatFormat<Format>,
                  "verl::data: the chat format must satisfy verl::chat::ChatFormat (a const member "
                  "`render(std::span<const verl::chat::Message>, bool add_generation_prompt)` returning std::string) "
                  "or be verl::data::NoChatFormat");
    return chat::apply_chat_template(format, std::span<const chat::Message>(messages), add_generation_prompt);
  }
}

//! Python's `"".join(takewhile(eq, zip(a, b)))` over code points: the longest common prefix of `a` and `b`
//! that ends on a UTF-8 character boundary (TRL's prompt/completion split of a rendered conversation).
inline std::size_t common_prefix_length(std::string_view a, std::string_view b) {
  std::size_t n = 0;
  const std::size_t m = std::min(a.size(), b.size());
  while (n < m && a[n] == b[n]) ++n;
  // Back off to the start of the code point that differs (or that is cut by the end of the shorter string).
  const auto is_cont = [](char c) { return (static_cast<unsigned char>(c) & 0xC0) == 0x80; };
  const auto boundary = [&](std::string_view s, std::size_t i) { return i >= s.size() || !is_cont(s[i]); };
  while (n > 0 && !(boundary(a, n) && boundary(b, n))) --n;
  return n;
}

//! (rows, cols) int64 tensor holding a copy of the row-major `buffer`. A plain memcpy rather than torch's
//! copy_: collation runs beside training, and torch's intra-op parallel copy of a small batch contends with
//! the trainer's threads (measured: 35 ms instead of 2.5 ms for 256 x 369 tokens on a loaded 2-core machine).
inline at::Tensor long_tensor(const std::vector<std::int64_t>& buffer, std::int64_t rows, std::int64_t cols) {
  auto t = at::empty({rows, cols}, at::TensorOptions().dtype(at::kLong));  // (rows,cols)
  if (rows * cols > 0) std::memcpy(t.data_ptr<std::int64_t>(), buffer.data(), buffer.size() * sizeof(std::int64_t));
  return t;
}

//! verl's position ids clip(cumsum(mask, -1) - 1, 0) of a row-major (rows, cols) mask buffer, as a tensor.
inline at::Tensor position_tensor(const std::vector<std::int64_t>& mask, std::int64_t rows, std::int64_t cols) {
  std::vector<std::int64_t> pos(mask.size());
  for (std::int64_t r = 0; r < rows; ++r) {
    std::int64_t sum = 0;
    for (std::int64_t c = 0; c < cols; ++c) {
      const auto i = static_cast<std::size_t>(r * cols + c);
      sum += mask[i];
      pos[i] = std::max<std::int64_t>(sum - 1, 0);
    }
  }
  return long_tensor(pos, rows, cols);  // (rows,cols)
}

}  // namespace detail

}  // namespace verl::data
