#pragma once
//! \file
//! UTF-8 helpers for the tokenizers: validation (Rust's `str` and Python's `str`, which the reference
//! tokenizers take, are valid Unicode by construction, so verl rejects invalid input instead of guessing),
//! decoding one code point, encoding one, and the lossy conversion of Rust's `String::from_utf8_lossy`
//! that byte-level decoding ends with.

#include "verl/core/errors.hpp"

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace verl::detail::utf8 {

//! Length of the valid UTF-8 sequence starting at s[i] (1..4), or 0 when it is not valid UTF-8 (overlong
//! forms, surrogates and code points above U+10FFFF are invalid, as in the Unicode standard's table 3-7).
[[nodiscard]] inline std::size_t valid_length(std::string_view s, std::size_t i) noexcept {
  const auto b = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char c = b(i);
  const std::size_t left = s.size() - i;
  const auto cont = [&](std::size_t k, unsigned char lo = 0x80, unsigned char hi = 0xBF) {
    return k < left && b(i + k) >= lo && b(i + k) <= hi;
  };
  if (c < 0x80) return 1;
  if (c >= 0xC2 && c <= 0xDF) return cont(1) ? 2 : 0;
  if (c == 0xE0) return cont(1, 0xA0) && cont(2) ? 3 : 0;
  if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) return cont(1) && cont(2) ? 3 : 0;
  if (c == 0xED) return cont(1, 0x80, 0x9F) && cont(2) ? 3 : 0;
  if (c == 0xF0) return cont(1, 0x90) && cont(2) && cont(3) ? 4 : 0;
  if (c >= 0xF1 && c <= 0xF3) return cont(1) && cont(2) && cont(3) ? 4 : 0;
  if (c == 0xF4) return cont(1, 0x80, 0x8F) && cont(2) && cont(3) ? 4 : 0;
  return 0;
}

//! Throws verl::InputError naming `who` and the byte offset when `s` is not valid UTF-8.
inline void require_valid(std::string_view s, std::string_view who) {
  for (std::size_t i = 0; i < s.size();) {
    const std::size_t n = valid_length(s, i);
    check<InputError>(n != 0, who, ": the text is not valid UTF-8 (byte 0x", std::hex,
                      static_cast<unsigned>(static_cast<unsigned char>(s[i])), std::dec, " at offset ", i,
                      "); expected UTF-8 text");
    i += n;
  }
}

//! Decodes the code point at s[i] of VALID UTF-8 and advances i past it.
[[nodiscard]] inline char32_t next(std::string_view s, std::size_t& i) noexcept {
  const auto c = static_cast<unsigned char>(s[i]);
  const auto at = [&](std::size_t k) { return static_cast<char32_t>(static_cast<unsigned char>(s[i + k]) & 0x3F); };
  char32_t cp;
  std::size_t n;
  if (c < 0x80) { cp = c; n = 1; }
  else if (c < 0xE0) { cp = (char32_t(c & 0x1F) << 6) | at(1); n = 2; }
  else if (c < 0xF0) { cp = (char32_t(c & 0x0F) << 12) | (at(1) << 6) | at(2); n = 3; }
  else { cp = (char32_t(c & 0x07) << 18) | (at(1) << 12) | (at(2) << 6) | at(3); n = 4; }
  i += n;
  return cp;
}

//! Appends the UTF-8 encoding of `cp` to `out`.
inline void append(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

//! Rust's `String::from_utf8_lossy`: every maximal invalid subpart becomes one U+FFFD (the "substitution
//! of maximal subparts" practice of Unicode chapter 3, which Rust and Python's errors="replace" follow).
[[nodiscard]] inline std::string lossy(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size();) {
    const std::size_t n = valid_length(s, i);
    if (n != 0) {
      out.append(s.substr(i, n));
      i += n;
      continue;
    }
    // The maximal subpart: the lead byte plus the continuation bytes that could still have been valid.
    const auto c = static_cast<unsigned char>(s[i]);
    std::size_t want = 0;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) want = 1;
    else if (c >= 0xE0 && c <= 0xEF) { want = 2; if (c == 0xE0) lo = 0xA0; if (c == 0xED) hi = 0x9F; }
    else if (c >= 0xF0 && c <= 0xF4) { want = 3; if (c == 0xF0) lo = 0x90; if (c == 0xF4) hi = 0x8F; }
    std::size_t k = 1;
    for (; k <= want && i + k < s.size(); ++k) {
      const auto d = static_cast<unsigned char>(s[i + k]);
      if (d < (k == 1 ? lo : 0x80) || d > (k == 1 ? hi : 0xBF)) break;
    }
    out += "\xEF\xBF\xBD";
    i += want == 0 ? 1 : k;
  }
  return out;
}

}  // namespace verl::detail::utf8
