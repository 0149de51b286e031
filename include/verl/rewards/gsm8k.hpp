#pragma once
//! \file
//! The GSM8K rule reward of verl 0.7.1 (verl/utils/reward_score/gsm8k.py), with the same results on every
//! input: the answer is the number after the last `#### ` (strict) or the last number (flexible), read
//! from the last 300 characters (code points) of the response, compared as a string with the ground truth.
//!
//!   verl::rewards::gsm8k::extract_solution("... #### 1,234", Method::strict)   // "1234"
//!   verl::rewards::gsm8k::compute_score(response, "1234")                     // 1.0, 0.0 (format_score)
//!   verl::rewards::gsm8k::Rule{}                                              // a verl::RewardFunction

#include "verl/core/errors.hpp"
#include "verl/concepts/reward_model.hpp"
#include "verl/core/model_io.hpp"
#include "verl/rewards/text.hpp"

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace verl::rewards::gsm8k {

//! How the answer is extracted (verl's `method` argument).
enum class Method {
  strict,    //!< the last match of `#### (-?[0-9.,]+)`, commas and dollars removed
  flexible,  //!< the last match of `(-?[0-9.,]+)` that is not ".", kept as written (commas stay)
};

//! verl's `_SOLUTION_CLIP_CHARS`: only the last this many characters of a response are searched.
inline constexpr std::size_t solution_clip_chars = 300;

//! Parses verl's method names "strict" and "flexible"; throws verl::ConfigError naming anything else.
[[nodiscard]] inline Method parse_method(std::string_view name) {
  if (name == "strict") return Method::strict;
  if (name == "flexible") return Method::flexible;
  throw ConfigError(verl::detail::concat_message("verl::rewards::gsm8k: method is \"", name,
                                           "\", expected \"strict\" or \"flexible\""));
}

namespace detail {

[[nodiscard]] constexpr bool number_char(char c) { return (c >= '0' && c <= '9') || c == '.' || c == ','; }

//! The end of a match of `-?[0-9.,]+` at `i` (greedy, so the longest run), or `i` when there is none.
[[nodiscard]] inline std::size_t match_number(std::string_view s, std::size_t i) {
  std::size_t j = i;
  if (j < s.size() && s[j] == '-') ++j;  // `-?` then at least one number character
  std::size_t k = j;
  while (k < s.size() && number_char(s[k])) ++k;
  // `-?` gives back its '-' when no number follows it, but '-' is no number character, so no match then.
  return k > j ? k : i;
}

//! Python's re.findall of `prefix(-?[0-9.,]+)`: the group of each non-overlapping match, left to right.
[[nodiscard]] inline std::vector<std::string_view> find_numbers(std::string_view s, std::string_view prefix) {
  std::vector<std::string_view> found;
  std::size_t i = 0;
  while (i < s.size()) {
    if (s.substr(i, prefix.size()) == prefix) {
      const std::size_t start = i + prefix.size();
      const std::size_t end = match_number(s, start);
      if (end > start) {
        found.push_back(s.substr(start, end - start));
        i = end;  // findall resumes after the match
        continue;
      }
    }
    ++i;
  }
  return found;
}

}  // namespace detail

//! verl's `extract_solution(solution_str, method)`: the extracted answer, or nullopt (Python's None) when
//! there is none. Searches the last `solution_clip_chars` code points only.
[[nodiscard]] inline std::optional<std::string> extract_solution(std::string_view solution,
                                                                 Method method = Method::strict) {
  const std::string_view clipped = text::last_code_points(solution, solution_clip_chars);
  if (method == Method::strict) {
    const auto found = detail::find_numbers(clipped, "#### ");
    if (found.empty()) return std::nullopt;
    // The pattern cannot match '$'; verl removes it anyway, which changes nothing.
    return text::replace_all(text::replace_all(found.back(), ",", ""), "$", "");
  }
  const auto found = detail::find_numbers(clipped, "");
  if (found.empty()) return std::nullopt;
  // The last match that is not "." (a match is never empty); when every match is ".", verl's loop ends on
  // the first one, which is "." too.
  for (auto it = found.rbegin(); it != found.rend(); ++it) {
    if (*it != ".") return std::string(*it);
  }
  return std::string(found.front());
}

//! verl's `compute_score(solution_str, ground_truth, method, format_score, score)`: 0 when no answer is
//! found, `score` when the answer equals `ground_truth` exactly, `format_score` otherwise.
[[nodiscard]] inline double compute_score(std::string_view solution, std::string_view ground_truth,
                                          Method method = Method::strict, double format_score = 0.0,
                                          double score = 1.0) {
  const auto answer = extract_solution(solution, method);
  if (!answer) return 0.0;
  return *answer == ground_truth ? score : format_score;
}

//! GSM8K as a verl::RewardFunction: scores RewardInput::response against RewardInput::ground_truth.
struct Rule {
  Method method = Method::strict;
  double format_score = 0.0;  //!< score of a found but wrong answer
  double score = 1.0;         //!< score of a correct answer

  [[nodiscard]] double operator()(const RewardInput& in) const {
    return compute_score(in.response, in.ground_truth, method, format_score, score);
  }
};

static_assert(RewardFunction<Rule>);

}  // namespace verl::rewards::gsm8k
