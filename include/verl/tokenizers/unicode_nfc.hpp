#pragma once
//! \file
//! Unicode Normalization Form C (UAX #15), the `NFC` normalizer of Hugging Face tokenizer.json (Qwen2 and
//! Qwen2.5 use it). Canonical decomposition, canonical ordering, canonical composition, with Hangul
//! syllables handled algorithmically. Tables: unicode_nfc_data.hpp (Unicode version recorded there; the
//! Rust `unicode-normalization` crate of tokenizers may know newer characters, whose NFC differs only for
//! code points unassigned in the tables' version).

#include "verl/tokenizers/unicode_nfc_data.hpp"
#include "verl/tokenizers/utf8.hpp"

#include <algorithm>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace verl::detail::nfc {

inline constexpr char32_t hangul_s = 0xAC00, hangul_l = 0x1100, hangul_v = 0x1161, hangul_t = 0x11A7;
inline constexpr char32_t hangul_lcount = 19, hangul_vcount = 21, hangul_tcount = 28;
inline constexpr char32_t hangul_ncount = hangul_vcount * hangul_tcount, hangul_scount = hangul_lcount * hangul_ncount;

//! Canonical combining class of `cp` (0 for starters).
[[nodiscard]] inline std::uint8_t combining_class(char32_t cp) noexcept {
  if (cp < 0x300) return 0;
  const auto& t = unicode_data::ccc;
  const std::uint32_t key = static_cast<std::uint32_t>(cp) << 8;
  const auto it = std::lower_bound(std::begin(t), std::end(t), key);
  return (it != std::end(t) && (*it >> 8) == cp) ? static_cast<std::uint8_t>(*it & 0xFF) : 0;
}

//! Appends the full canonical decomposition of `cp` to `out`.
inline void decompose(char32_t cp, std::vector<char32_t>& out) {
  if (cp >= hangul_s && cp < hangul_s + hangul_scount) {
    const char32_t s = cp - hangul_s;
    out.push_back(hangul_l + s / hangul_ncount);
    out.push_back(hangul_v + (s % hangul_ncount) / hangul_tcount);
    if (s % hangul_tcount != 0) out.push_back(hangul_t + s % hangul_tcount);
    return;
  }
  if (cp >= 0xC0) {
    const auto& t = unicode_data::decomposition;
    const auto it = std::lower_bound(std::begin(t), std::end(t), cp,
                                     [](const auto& row, char32_t c) { return row.code_point < c; });
    if (it != std::end(t) && it->code_point == cp) {
      out.insert(out.end(), unicode_data::decomposition_pool + it->offset,
                 unicode_data::decomposition_pool + it->offset + it->length);
      return;
    }
  }
  out.push_back(cp);
}

//! The primary composite of (a, b), or 0 when the pair does not compose.
[[nodiscard]] inline char32_t compose(char32_t a, char32_t b) noexcept {
  if (a >= hangul_l && a < hangul_l + hangul_lcount && b >= hangul_v && b < hangul_v + hangul_vcount)
    return hangul_s + ((a - hangul_l) * hangul_vcount + (b - hangul_v)) * hangul_tcount;
  if (a >= hangul_s && a < hangul_s + hangul_scount && (a - hangul_s) % hangul_tcount == 0 && b > hangul_t &&
      b < hangul_t + hangul_tcount)
    return a + (b - hangul_t);
  const std::uint64_t key = (std::uint64_t{a} << 21) | b;
  const auto& t = unicode_data::composition;
  const auto it = std::lower_bound(std::begin(t), std::end(t), key,
                                   [](const auto& row, std::uint64_t k) { return row.key < k; });
  return (it != std::end(t) && it->key == key) ? it->composite : 0;
}

//! NFC of valid UTF-8 text.
[[nodiscard]] inline std::string normalize(std::string_view text) {
  // Below U+0300 every character is its own NFC and a starter that nothing before it combines with; a
  // text of such characters only is already normalized (the common case: ASCII and Latin-1).
  bool trivial = true;
  for (std::size_t i = 0; i < text.size() && trivial;) trivial = utf8::next(text, i) < 0x300;
  if (trivial) return std::string(text);

  std::vector<char32_t> cps;
  cps.reserve(text.size());
  for (std::size_t i = 0; i < text.size();) decompose(utf8::next(text, i), cps);
  // Canonical ordering: a stable sort by combining class of every run of non-starters.
  for (std::size_t i = 0; i < cps.size();) {
    if (combining_class(cps[i]) == 0) { ++i; continue; }
    std::size_t j = i;
    while (j < cps.size() && combining_class(cps[j]) != 0) ++j;
    std::stable_sort(cps.begin() + static_cast<std::ptrdiff_t>(i), cps.begin() + static_cast<std::ptrdiff_t>(j),
                     [](char32_t a, char32_t b) { return combining_class(a) < combining_class(b); });
    i = j;
  }
  // Canonical composition: a character combines with the last starter unless blocked by a character of
  // class 0 or of a class >= its own between them.
  std::vector<char32_t> out;
  out.reserve(cps.size());
  std::ptrdiff_t starter = -1;
  int last_class = -1;
  for (const char32_t c : cps) {
    const int cc = combining_class(c);
    if (starter >= 0 && (last_class < cc || (last_class == 0 && static_cast<std::size_t>(starter) + 1 == out.size()))) {
      if (const char32_t composite = compose(out[static_cast<std::size_t>(starter)], c); composite != 0) {
        out[static_cast<std::size_t>(starter)] = composite;
        continue;
      }
    }
    if (cc == 0) starter = static_cast<std::ptrdiff_t>(out.size());
    last_class = cc;
    out.push_back(c);
  }
  std::string result;
  result.reserve(text.size());
  for (const char32_t c : out) utf8::append(result, c);
  return result;
}

}  // namespace verl::detail::nfc
