#pragma once
//! \file
//! String helpers with Python `str` semantics over UTF-8 bytes, for the rule rewards that must give
//! verl's Python results byte for byte (verl/rewards/gsm8k.hpp, verl/rewards/math_answer.hpp).
//!
//! Python indexes and counts code points; these helpers do the same on UTF-8. Searching, splitting and
//! replacing ASCII patterns work on bytes unchanged (a UTF-8 continuation byte never equals an ASCII byte).
//! Inputs are expected to be valid UTF-8 (tokenizers decode to it); a malformed sequence counts as one code
//! point per byte it cannot continue, so nothing reads past the end.

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace verl::rewards::text {

//! The length in bytes of the code point that starts at byte `i` of `s` (1 to 4; 1 for a stray byte).
[[nodiscard]] inline std::size_t code_point_bytes(std::string_view s, std::size_t i) {
  const auto lead = static_cast<unsigned char>(s[i]);
  std::size_t expected = 1;
  if (lead >= 0xF0 && lead <= 0xF7) {
    expected = 4;
  } else if (lead >= 0xE0) {
    expected = lead <= 0xEF ? 3 : 1;
  } else if (lead >= 0xC0) {
    expected = 2;
  }
  std::size_t n = 1;
  while (n < expected && i + n < s.size() && (static_cast<unsigned char>(s[i + n]) & 0xC0) == 0x80) ++n;
  return n;
}

//! Python's `len(s)`: the number of code points.
[[nodiscard]] inline std::size_t length(std::string_view s) {
  std::size_t n = 0;
  for (std::size_t i = 0; i < s.size(); i += code_point_bytes(s, i)) ++n;
  return n;
}

//! Python's `s[-n:]` for n >= 0 when len(s) > n (else all of s): the last `n` code points.
[[nodiscard]] inline std::string_view last_code_points(std::string_view s, std::size_t n) {
  const std::size_t total = length(s);
  if (total <= n) return s;
  std::size_t skip = total - n;
  std::size_t i = 0;
  while (skip-- > 0) i += code_point_bytes(s, i);
  return s.substr(i);
}

//! Python's `s[:1]` as a view: the first code point (empty for an empty string).
[[nodiscard]] inline std::string_view first_code_point(std::string_view s) {
  return s.empty() ? s : s.substr(0, code_point_bytes(s, 0));
}

//! Python's `needle in s`.
[[nodiscard]] inline bool contains(std::string_view s, std::string_view needle) {
  return s.find(needle) != std::string_view::npos;
}

//! Python's `s.replace(from, to)` (non-empty `from`): one left-to-right pass, non-overlapping matches,
//! replaced text is not searched again.
[[nodiscard]] inline std::string replace_all(std::string_view s, std::string_view from, std::string_view to) {
  if (from.empty()) return std::string(s);  // (Python would insert `to` between characters; never asked here)
  std::string out;
  out.reserve(s.size());
  std::size_t pos = 0;
  for (std::size_t hit = s.find(from); hit != std::string_view::npos; hit = s.find(from, pos)) {
    out.append(s.substr(pos, hit - pos)).append(to);
    pos = hit + from.size();
  }
  out.append(s.substr(pos));
  return out;
}

//! Python's `s.split(sep)` (non-empty `sep`): views into `s`, one more than the number of matches.
[[nodiscard]] inline std::vector<std::string_view> split(std::string_view s, std::string_view sep) {
  std::vector<std::string_view> parts;
  std::size_t pos = 0;
  for (std::size_t hit = s.find(sep); hit != std::string_view::npos; hit = s.find(sep, pos)) {
    parts.push_back(s.substr(pos, hit - pos));
    pos = hit + sep.size();
  }
  parts.push_back(s.substr(pos));
  return parts;
}

//! How many times Python's `s.split(sep)` splits: the number of non-overlapping matches.
[[nodiscard]] inline std::size_t count(std::string_view s, std::string_view sep) {
  std::size_t n = 0;
  for (std::size_t hit = s.find(sep); hit != std::string_view::npos; hit = s.find(sep, hit + sep.size())) ++n;
  return n;
}

}  // namespace verl::rewards::text
