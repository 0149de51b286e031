#pragma once
//! \file
//! The DAPO math rule of verl 0.7.1 (verl/utils/reward_score/math_dapo.py, Minerva-style answer
//! normalisation), with the same results as verl's Python on every input: the answer is the text after the
//! last "Answer:" (any case) of the last 300 characters of the response, normalised as the ground truth is,
//! and compared as a string. Score 1 when equal, -1 otherwise; "acc" is 1 or 0.
//!
//!   verl::rewards::math_dapo::compute_score("... Answer: $\\frac{1}{2}$", "\\frac12")  // {1.0, true, "\\frac{1}{2}"}
//!
//! verl's regular expressions run on Python str (code points, Unicode whitespace and digits); the matching
//! here is hand-written with the same semantics, including `.` not matching '\n', `\s` matching Unicode
//! whitespace, `isdigit()` accepting every Unicode digit, and `(?i)` letting "ſ" (U+017F) match 's'.

#include "verl/concepts/reward_model.hpp"
#include "verl/core/model_io.hpp"
#include "verl/rewards/math_answer.hpp"
#include "verl/rewards/text.hpp"

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace verl::rewards::math_dapo {

namespace detail {

//! The code point at byte `i` of `s` (the byte itself when it does not start a valid sequence).
[[nodiscard]] inline std::uint32_t decode_at(std::string_view s, std::size_t i, std::size_t n) {
  const auto b0 = static_cast<unsigned char>(s[i]);
  if (n == 1) return b0;
  std::uint32_t cp = b0 & (n == 2 ? 0x1Fu : n == 3 ? 0x0Fu : 0x07u);
  for (std::size_t k = 1; k < n; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3Fu);
  return cp;
}

//! Python's str.isspace() (and re's `\s` on str), Unicode 14.0 (Python 3.11).
[[nodiscard]] constexpr bool is_space(std::uint32_t c) {
  return (c >= 0x9 && c <= 0xD) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

//! The code points for which Python 3.11's str.isdigit() is true (Unicode 14.0, Numeric_Type Digit or Decimal),
//! as ranges; generated with `[c for c in range(0x110000) if chr(c).isdigit()]`.
inline constexpr std::array<std::pair<std::uint32_t, std::uint32_t>, 81> digit_ranges{{
    {0x30, 0x39},       {0xB2, 0xB3},       {0xB9, 0xB9},       {0x660, 0x669},     {0x6F0, 0x6F9},
    {0x7C0, 0x7C9},     {0x966, 0x96F},     {0x9E6, 0x9EF},     {0xA66, 0xA6F},     {0xAE6, 0xAEF},
    {0xB66, 0xB6F},     {0xBE6, 0xBEF},     {0xC66, 0xC6F},     {0xCE6, 0xCEF},     {0xD66, 0xD6F},
    {0xDE6, 0xDEF},     {0xE50, 0xE59},     {0xED0, 0xED9},     {0xF20, 0xF29},     {0x1040, 0x1049},
    {0x1090, 0x1099},   {0x1369, 0x1371},   {0x17E0, 0x17E9},   {0x1810, 0x1819},   {0x1946, 0x194F},
    {0x19D0, 0x19DA},   {0x1A80, 0x1A89},   {0x1A90, 0x1A99},   {0x1B50, 0x1B59},   {0x1BB0, 0x1BB9},
    {0x1C40, 0x1C49},   {0x1C50, 0x1C59},   {0x2070, 0x2070},   {0x2074, 0x2079},   {0x2080, 0x2089},
    {0x2460, 0x2468},   {0x2474, 0x247C},   {0x2488, 0x2490},   {0x24EA, 0x24EA},   {0x24F5, 0x24FD},
    {0x24FF, 0x24FF},   {0x2776, 0x277E},   {0x2780, 0x2788},   {0x278A, 0x2792},   {0xA620, 0xA629},
    {0xA8D0, 0xA8D9},   {0xA900, 0xA909},   {0xA9D0, 0xA9D9},   {0xA9F0, 0xA9F9},   {0xAA50, 0xAA59},
    {0xABF0, 0xABF9},   {0xFF10, 0xFF19},   {0x104A0, 0x104A9}, {0x10A40, 0x10A43}, {0x10D30, 0x10D39},
    {0x10E60, 0x10E68}, {0x11052, 0x1105A}, {0x11066, 0x1106F}, {0x110F0, 0x110F9}, {0x11136, 0x1113F},
    {0x111D0, 0x111D9}, {0x112F0, 0x112F9}, {0x11450, 0x11459}, {0x114D0, 0x114D9}, {0x11650, 0x11659},
    {0x116C0, 0x116C9}, {0x11730, 0x11739}, {0x118E0, 0x118E9}, {0x11950, 0x11959}, {0x11C50, 0x11C59},
    {0x11D50, 0x11D59}, {0x11DA0, 0x11DA9}, {0x16A60, 0x16A69}, {0x16AC0, 0x16AC9}, {0x16B50, 0x16B59},
    {0x1D7CE, 0x1D7FF}, {0x1E140, 0x1E149}, {0x1E2F0, 0x1E2F9}, {0x1E950, 0x1E959}, {0x1F100, 0x1F10A},
    {0x1FBF0, 0x1FBF9},
}};

[[nodiscard]] constexpr bool is_digit(std::uint32_t c) {
  for (const auto& [lo, hi] : digit_ranges) {
    if (c < lo) return false;
    if (c <= hi) return true;
  }
  return false;
}

//! Python's s.isdigit(): non-empty and every code point a digit.
[[nodiscard]] inline bool is_digit_string(std::string_view s) {
  if (s.empty()) return false;
  for (std::size_t i = 0; i < s.size();) {
    const std::size_t n = text::code_point_bytes(s, i);
    if (!is_digit(decode_at(s, i, n))) return false;
    i += n;
  }
  return true;
}

//! Python's s.strip(): Unicode whitespace removed at both ends.
[[nodiscard]] inline std::string_view strip(std::string_view s) {
  std::size_t begin = 0;
  while (begin < s.size()) {
    const std::size_t n = text::code_point_bytes(s, begin);
    if (!is_space(decode_at(s, begin, n))) break;
    begin += n;
  }
  std::size_t end = begin;  // one past the last non-space code point
  for (std::size_t i = begin; i < s.size();) {
    const std::size_t n = text::code_point_bytes(s, i);
    if (!is_space(decode_at(s, i, n))) end = i + n;
    i += n;
  }
  return s.substr(begin, end - begin);
}

//! The end of the line that contains byte `i` (the next '\n' or the end): where Python's `.` stops.
[[nodiscard]] inline std::size_t line_end(std::string_view s, std::size_t i) {
  const std::size_t nl = s.find('\n', i);
  return nl == std::string_view::npos ? s.size() : nl;
}

//! re.sub(r"(.*?)(\$)(.*?)(\$)(.*)", "$\\3$", s): `.` stops at '\n', so each line with two '$' or more
//! becomes "$" + the text between its first two '$' + "$"; other lines are unchanged.
[[nodiscard]] inline std::string keep_first_math(std::string_view s) {
  std::string out;
  std::size_t pos = 0;
  while (true) {
    const std::size_t end = line_end(s, pos);
    const std::string_view line = s.substr(pos, end - pos);
    const std::size_t first = line.find('$');
    const std::size_t second = first == std::string_view::npos ? first : line.find('$', first + 1);
    if (second != std::string_view::npos) {
      out.append("$").append(line.substr(first + 1, second - first - 1)).append("$");
    } else {
      out.append(line);
    }
    if (end == s.size()) break;
    out.push_back('\n');
    pos = end + 1;
  }
  return out;
}

//! re.sub(r"(\\<command>\{)(.*?)(\})", "\\2", s) (lazy: up to the first '}' on the line) or, with
//! `greedy`, re.sub(r"(\\<command>\{)(.*)(\})", "\\2", s) (up to the last '}' on the line).
[[nodiscard]] inline std::string unwrap(std::string_view s, std::string_view open, bool greedy) {
  std::string out;
  std::size_t pos = 0;        // copied up to here
  std::size_t search = 0;     // next candidate start
  for (std::size_t p = s.find(open, search); p != std::string_view::npos; p = s.find(open, search)) {
    const std::size_t content = p + open.size();
    const std::size_t end = line_end(s, p);
    std::size_t close = std::string_view::npos;
    if (content <= end) {
      const std::string_view rest = s.substr(content, end - content);
      const std::size_t c = greedy ? rest.rfind('}') : rest.find('}');
      if (c != std::string_view::npos) close = content + c;
    }
    if (close == std::string_view::npos) {
      search = p + 1;  // no match here: the regex tries the next position
      continue;
    }
    out.append(s.substr(pos, p - pos)).append(s.substr(content, close - content));
    pos = search = close + 1;
  }
  out.append(s.substr(pos));
  return out;
}

//! re.sub(r"(frac)([^{])(.)", "frac{\\2}{\\3}", s) and, with `two_args = false`,
//! re.sub(r"(sqrt)([^{])", "sqrt{\\2}", s). `[^{]` matches '\n', `.` does not; both take one code point.
[[nodiscard]] inline std::string brace_arguments(std::string_view s, std::string_view command, bool two_args) {
  std::string out;
  std::size_t pos = 0, search = 0;
  for (std::size_t p = s.find(command, search); p != std::string_view::npos; p = s.find(command, search)) {
    const std::size_t a = p + command.size();
    if (a >= s.size() || s[a] == '{') {
      search = p + 1;
      continue;
    }
    const std::size_t a_len = text::code_point_bytes(s, a);
    std::size_t end = a + a_len;
    std::string replaced = std::string(command) + "{" + std::string(s.substr(a, a_len)) + "}";
    if (two_args) {
      if (end >= s.size() || s[end] == '\n') {
        search = p + 1;
        continue;
      }
      const std::size_t b_len = text::code_point_bytes(s, end);
      replaced += "{" + std::string(s.substr(end, b_len)) + "}";
      end += b_len;
    }
    out.append(s.substr(pos, p - pos)).append(replaced);
    pos = search = end;
  }
  out.append(s.substr(pos));
  return out;
}

inline constexpr std::pair<std::string_view, std::string_view> substitutions[] = {
    {"an ", ""},
    {"a ", ""},
    {".$", "$"},
    {"\\$", ""},
    {"\\ ", ""},
    {" ", ""},
    {"mbox", "text"},
    {",\\text{and}", ","},
    {"\\text{and}", ","},
    {"\\text{m}", "\\text{}"},
};

inline constexpr std::string_view removed_expressions[] = {
    "square", "ways",     "integers", "dollars",   "mph",           "inches",     "hours",     "km",
    "units",  "\\ldots",  "sue",      "points",    "feet",          "minutes",    "digits",    "cents",
    "degrees", "cm",      "gm",       "pounds",    "meters",        "meals",      "edges",     "students",
    "childrentickets",    "multiples", "\\text{s}", "\\text{.}",    "\\text{\ns}", "\\text{}^2", "\\text{}^3",
    "\\text{\n}",         "\\text{}", "\\mathrm{th}", "^\\circ",    "^{\\circ}",  "\\;",       ",\\!",
    "{,}",    "\"",       "\\dots"};

//! Matches `(?i)answer` at byte `p`: returns the end, or npos. Under Python's Unicode IGNORECASE only 's'
//! has an extra match among these letters: U+017F LATIN SMALL LETTER LONG S (UTF-8 C5 BF).
[[nodiscard]] inline std::size_t match_answer_word(std::string_view s, std::size_t p) {
  constexpr std::string_view word = "answer";
  for (const char w : word) {
    if (p >= s.size()) return std::string_view::npos;
    const char c = s[p];
    if (c == w || c == static_cast<char>(w - 'a' + 'A')) {
      ++p;
    } else if (w == 's' && s.substr(p, 2) == "\xC5\xBF") {
      p += 2;
    } else {
      return std::string_view::npos;
    }
  }
  return p;
}

}  // namespace detail

//! verl's `normalize_final_answer`: the text after the last '=', verl's substitutions and removed unit words
//! (as plain replacements, in order), the first $...$ of each line, \text{}/\textbf{}/\overline{} unwrapped,
//! \boxed{} unwrapped, "\fracab" -> "\frac{a}{b}", "\sqrta" -> "\sqrt{a}", '$' removed, commas removed from
//! a number, surrounding whitespace stripped.
[[nodiscard]] inline std::string normalize_final_answer(std::string_view final_answer) {
  std::string s(final_answer.substr(final_answer.rfind('=') == std::string_view::npos ? 0 : final_answer.rfind('=') + 1));
  for (const auto& [before, after] : detail::substitutions) s = text::replace_all(s, before, after);
  for (const auto expr : detail::removed_expressions) s = text::replace_all(s, expr, "");
  s = detail::keep_first_math(s);
  s = detail::unwrap(s, "\\text{", false);
  s = detail::unwrap(s, "\\textbf{", false);
  s = detail::unwrap(s, "\\overline{", false);
  s = detail::unwrap(s, "\\boxed{", true);
  s = detail::brace_arguments(s, "frac", true);
  s = detail::brace_arguments(s, "sqrt", false);
  s = text::replace_all(s, "$", "");
  const std::string no_commas = text::replace_all(s, ",", "");
  if (detail::is_digit_string(no_commas)) s = no_commas;
  return std::string(detail::strip(s));
}

//! The last match of verl's `(?i)Answer\s*:\s*([^\n]+)` in `s` (the group), or nullopt.
[[nodiscard]] inline std::optional<std::string_view> last_answer(std::string_view s) {
  std::optional<std::string_view> found;
  std::size_t p = 0;
  while (p < s.size()) {
    std::size_t q = detail::match_answer_word(s, p);
    if (q != std::string_view::npos) {
      auto skip_space = [&](std::size_t i) {
        while (i < s.size()) {
          const std::size_t n = text::code_point_bytes(s, i);
          if (!detail::is_space(detail::decode_at(s, i, n))) break;
          i += n;
        }
        return i;
      };
      q = skip_space(q);
      if (q < s.size() && s[q] == ':') {
        // `\s*` is greedy and may give back whitespace so that `[^\n]+` matches: the group starts at the
        // last position in the whitespace run (from its end backwards) holding a character other than '\n'.
        const std::size_t run_begin = q + 1, run_end = skip_space(run_begin);
        std::size_t start = std::string_view::npos;
        if (run_end < s.size()) {
          start = run_end;
        } else {
          for (std::size_t i = run_end; i > run_begin;) {
            std::size_t j = i - 1;
            while (j > run_begin && (static_cast<unsigned char>(s[j]) & 0xC0) == 0x80) --j;  // code point start
            if (s[j] != '\n') {
              start = j;
              break;
            }
            i = j;
          }
        }
        if (start != std::string_view::npos) {
          const std::size_t end = detail::line_end(s, start);
          found = s.substr(start, end - start);
          p = end;
          continue;
        }
      }
    }
    ++p;
  }
  return found;
}

//! The result of math_dapo::compute_score: verl's dict {"score", "acc", "pred"}.
struct Result {
  double score = -1.0;              //!< 1.0 when correct, else -1.0
  bool acc = false;                 //!< correct
  std::optional<std::string> pred;  //!< the normalised prediction (nullopt: strict box found none)

  //! As a RewardOutput: the score, with "acc" as 1 or 0.
  [[nodiscard]] RewardOutput output() const { return RewardOutput(score, {{"acc", acc ? 1.0 : 0.0}}); }
};

//! verl's `is_correct_minerva(solution_str, gt)`: (normalised last "Answer:" == normalised gt, prediction);
//! "[INVALID]" is normalised when there is no "Answer:".
[[nodiscard]] inline std::pair<bool, std::string> is_correct_minerva(std::string_view solution,
                                                                    std::string_view ground_truth) {
  const auto answer = last_answer(solution);
  std::string pred = normalize_final_answer(answer ? *answer : std::string_view("[INVALID]"));
  const bool correct = pred == normalize_final_answer(ground_truth);
  return {correct, std::move(pred)};
}

//! verl's `is_correct_strict_box(pred, gt)` without pause tokens: the last `\boxed{...}` of the last 100
//! characters, unnormalised, equal to the ground truth.
[[nodiscard]] inline std::pair<bool, std::optional<std::string>> is_correct_strict_box(std::string_view solution,
                                                                                      std::string_view ground_truth) {
  const std::string_view tail = text::last_code_points(solution, 100);
  // math_dapo's last_boxed_only_string looks for "\boxed{" only (no "\boxed " or "\fbox" forms).
  const std::size_t idx = tail.rfind("\\boxed{");
  std::optional<std::string> extracted;
  if (idx != std::string_view::npos) {
    long open = 0;
    for (std::size_t i = idx; i < tail.size(); ++i) {
      if (tail[i] == '{') ++open;
      if (tail[i] == '}' && --open == 0) {
        extracted = std::string(tail.substr(idx + 7, i - idx - 7));  // between "\boxed{" and its '}'
        break;
      }
    }
  }
  return {extracted.has_value() && *extracted == ground_truth, std::move(extracted)};
}

//! verl's `compute_score(solution_str, ground_truth, strict_box_verify)` (pause_tokens_index not supported):
//! the last 300 characters of the response are checked with is_correct_minerva (or is_correct_strict_box).
[[nodiscard]] inline Result compute_score(std::string_view solution, std::string_view ground_truth,
                                          bool strict_box_verify = false) {
  const std::string_view tail = text::last_code_points(solution, 300);
  Result r;
  if (strict_box_verify) {
    auto [correct, pred] = is_correct_strict_box(tail, ground_truth);
    r.acc = correct;
    r.pred = std::move(pred);
  } else {
    auto [correct, pred] = is_correct_minerva(tail, ground_truth);
    r.acc = correct;
    r.pred = std::move(pred);
  }
  r.score = r.acc ? 1.0 : -1.0;
  return r;
}

//! DAPO math as a verl::RewardFunction: score +-1 with "acc".
struct Rule {
  bool strict_box_verify = false;
  [[nodiscard]] RewardOutput operator()(const RewardInput& in) const {
    return compute_score(in.response, in.ground_truth, strict_box_verify).output();
  }
};

static_assert(RewardFunction<Rule>);

}  // namespace verl::rewards::math_dapo
