#pragma once
//! \file
//! verl::rollout::StopStringMatcher: detects when a growing response first contains one of the request's
//! stop strings (vLLM's SamplingParams.stop), decoding only a bounded tail of the response per new token.

#include "verl/core/errors.hpp"

#include <algorithm>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace verl::rollout {

//! Detects stop strings in a growing response. `decode` turns token ids into text (the engine passes the
//! tokenizer's decode).
//!
//! How a bounded tail suffices: let A = decode(tail without its last token) and B = decode(tail). Text
//! before their common prefix is the same in the previous and the current response, so a stop string that
//! is new with the last token must END after that common prefix c; it is looked for only there (starting at
//! c - len + 1). The tail grows (8, 16, 32, ... tokens) until c >= longest stop + `lead_margin` bytes, so the
//! occurrence lies clear of the tail's first bytes, where decoding may differ from the full response: a
//! tail that starts inside a multi-byte UTF-8 character decodes it as U+FFFD (at most 3 of them, 9 bytes),
//! and some decoders drop a leading space. Tokens decoding to "" (special tokens skipped) just make the tail
//! grow; the whole response is the last resort.
//!
//! Law: called once per new token (for every prefix of the response), completes_stop is true exactly at the
//! first prefix whose decoded text contains a stop string, as `decode(all).contains(stop)` with the full
//! decode would say, provided decode's text of a token sequence is a function of local context (true of
//! byte-level BPE and SentencePiece decoders).
class StopStringMatcher {
 public:
  //! \throws verl::ConfigError for an empty stop string, or for non-empty stops without a decode function.
  StopStringMatcher(std::vector<std::string> stops, std::function<std::string(std::span<const std::int64_t>)> decode)
      : stops_(std::move(stops)), decode_(std::move(decode)) {
    for (std::size_t i = 0; i < stops_.size(); ++i) {
      verl::detail::check<ConfigError>(!stops_[i].empty(), "verl::rollout::StopStringMatcher: stop string ", i,
                                 " is empty, expected a non-empty string");
      longest_ = std::max(longest_, stops_[i].size());
    }
    verl::detail::check<ConfigError>(stops_.empty() || static_cast<bool>(decode_),
                               "verl::rollout::StopStringMatcher: stop strings given without a decode function");
  }

  //! True when the decoded `output_tokens` contains one of the stop strings and did not before its last
  //! token (so call it once per new token). Decodes only a bounded tail of the tokens (enough to cover the
  //! longest stop string plus margin), not the whole response each step.
  [[nodiscard]] bool completes_stop(std::span<const std::int64_t> output_tokens) const {
    if (stops_.empty() || output_tokens.empty()) return false;
    const std::size_t n = output_tokens.size();
    for (std::size_t m = 8;; m *= 2) {
      const std::size_t start = m >= n ? 0 : n - m;
      const auto tail = output_tokens.subspan(start);
      const std::string before = decode_(tail.first(tail.size() - 1));
      const std::string after = decode_(tail);
      const std::size_t common = static_cast<std::size_t>(
          std::mismatch(before.begin(), before.end(), after.begin(), after.end()).first - before.begin());
      if (start == 0 || common >= longest_ + lead_margin) return contains_new(after, common);
    }
  }

  //! True when there are no stop strings (completes_stop is always false).
  [[nodiscard]] bool empty() const { return stops_.empty(); }

  //! The stop strings.
  [[nodiscard]] const std::vector<std::string>& stops() const { return stops_; }

  //! Bytes of decoded tail kept clear before a stop string's earliest possible start (see the class doc).
  static constexpr std::size_t lead_margin = 16;

 private:
  //! Whether `text` has a stop string occurrence ending after byte `common`.
  [[nodiscard]] bool contains_new(std::string_view text, std::size_t common) const {
    for (const auto& s : stops_) {
      const std::size_t from = common + 1 > s.size() ? common + 1 - s.size() : 0;
      if (text.find(s, from) != std::string_view::npos) return true;
    }
    return false;
  }

  std::vector<std::string> stops_;
  std::function<std::string(std::span<const std::int64_t>)> decode_;
  std::size_t longest_ = 0;
};

}  // namespace verl::rollout
