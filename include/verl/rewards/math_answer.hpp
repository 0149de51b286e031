#pragma once
//! \file
//! The MATH rule reward of verl 0.7.1 (verl/utils/reward_score/math_reward.py, the hendrycks-MATH
//! normalisation of lm-evaluation-harness), with the same results as verl's Python on every input,
//! quirks included, so reward curves compare:
//!
//!   last_boxed_only_string("so $\\boxed{\\frac12}$.")  // "\\boxed{\\frac12}"
//!   remove_boxed("\\boxed{\\frac12}")                  // "\\frac12"
//!   strip_string("\\frac12")                           // "\\frac{1}{2}"
//!   is_equiv("0.5", "\\frac{1}{2}")                    // true (verl's "0.5" special case)
//!   compute_score(response, ground_truth)              // 1.0 or 0.0
//!
//! Where verl's Python raises (an AssertionError or IndexError), the functions here throw
//! verl::InputError with a message saying which step and why; is_equiv and compute_score catch it exactly
//! where verl catches. Python counts and indexes code points: so do these functions (UTF-8 input).

#include "verl/core/errors.hpp"
#include "verl/concepts/reward_model.hpp"
#include "verl/core/model_io.hpp"
#include "verl/rewards/text.hpp"

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace verl::rewards::math {

namespace detail {
//! Throws the verl::InputError that stands for a Python exception in verl's code.
template <class... Parts>
[[noreturn]] void raise(Parts&&... parts) {
  throw InputError(verl::detail::concat_message("verl::rewards::math::", std::forward<Parts>(parts)...));
}
}  // namespace detail

//! verl's `last_boxed_only_string`: the last `\boxed{...}` (braces matched) of a response, or, when the
//! response contains `\boxed ` (with a space), "\boxed " followed by what comes after the last `\boxed `
//! up to the first '$'. Falls back to the last `\fbox` when there is no `\boxed`. nullopt (Python's None)
//! when there is no box, or its braces never close.
[[nodiscard]] inline std::optional<std::string> last_boxed_only_string(std::string_view s) {
  constexpr std::string_view boxed_space = "\\boxed ";
  std::size_t idx = s.rfind("\\boxed");
  if (text::contains(s, boxed_space)) {
    const std::string_view after = s.substr(s.rfind(boxed_space) + boxed_space.size());  // split(..)[-1]
    return std::string(boxed_space) + std::string(after.substr(0, after.find('$')));     // split("$")[0]
  }
  if (idx == std::string_view::npos) {
    idx = s.rfind("\\fbox");
    if (idx == std::string_view::npos) return std::nullopt;
  }
  // The first '}' that brings the count of open braces back to 0 (it may go negative first, as in verl).
  long open = 0;
  for (std::size_t i = idx; i < s.size(); ++i) {
    if (s[i] == '{') ++open;
    if (s[i] == '}') {
      --open;
      if (open == 0) return std::string(s.substr(idx, i + 1 - idx));
    }
  }
  return std::nullopt;
}

//! verl's `remove_boxed`: the content of "\boxed X" (everything after the space) or "\boxed{X}". Throws
//! verl::InputError where verl's asserts fail: a string containing "\boxed " that does not start with it,
//! or one that does not start with "\boxed{" and end with '}'.
[[nodiscard]] inline std::string remove_boxed(std::string_view s) {
  constexpr std::string_view space_left = "\\boxed ";
  constexpr std::string_view left = "\\boxed{";
  if (text::contains(s, space_left)) {
    if (!s.starts_with(space_left)) {
      detail::raise("remove_boxed: \"", s, "\" contains \"\\boxed \" but does not start with it");
    }
    return std::string(s.substr(space_left.size()));
  }
  if (!s.starts_with(left)) detail::raise("remove_boxed: \"", s, "\" does not start with \"\\boxed{\"");
  if (!s.ends_with('}')) detail::raise("remove_boxed: \"", s, "\" does not end with '}'");
  return std::string(s.substr(left.size(), s.size() - left.size() - 1));
}

//! verl's `fix_fracs`: "\frac12" -> "\frac{1}{2}", "\frac1{72}" -> "\frac{1}{72}" (one code point per
//! argument). Returns `s` unchanged when some "\frac" is followed by a single code point; throws
//! verl::InputError (verl: IndexError) when one is followed by nothing.
[[nodiscard]] inline std::string fix_fracs(std::string_view s) {
  const auto parts = text::split(s, "\\frac");
  std::string out(parts.front());
  for (std::size_t p = 1; p < parts.size(); ++p) {
    const std::string_view sub = parts[p];
    out += "\\frac";
    if (sub.empty()) detail::raise("fix_fracs: \"\\frac\" is followed by nothing in \"", s, "\"");
    if (sub.front() == '{') {
      out += sub;
      continue;
    }
    const std::string_view a = text::first_code_point(sub);
    const std::string_view b = text::first_code_point(sub.substr(a.size()));
    if (b.empty()) return std::string(s);  // fewer than two characters: verl gives up on the whole string
    const std::string_view rest = sub.substr(a.size() + b.size());
    out.append("{").append(a).append("}");
    if (b != "{") {
      out.append("{").append(b).append("}");
    } else {
      out.append(b);
    }
    out.append(rest);
  }
  return out;
}

namespace detail {
//! True when `s` is what Python's str(int(s)) gives back: an optional '-', then "0" or digits without a
//! leading zero (and not "-0"), at most 4300 digits (Python's default int_max_str_digits: int() of a longer
//! string raises, which fix_a_slash_b catches).
[[nodiscard]] inline bool canonical_int(std::string_view s) {
  const bool negative = s.starts_with('-');
  const std::string_view digits = negative ? s.substr(1) : s;
  if (digits.empty() || digits.size() > 4300) return false;
  for (const char c : digits) {
    if (c < '0' || c > '9') return false;
  }
  if (digits.front() == '0') return digits.size() == 1 && !negative;
  return true;
}
}  // namespace detail

//! verl's `fix_a_slash_b`: "a/b" -> "\frac{a}{b}" when a and b are integers written canonically (verl
//! converts with int() and keeps the result only when formatting them back gives the same string).
[[nodiscard]] inline std::string fix_a_slash_b(std::string_view s) {
  const auto parts = text::split(s, "/");
  if (parts.size() != 2 || !detail::canonical_int(parts[0]) || !detail::canonical_int(parts[1])) {
    return std::string(s);
  }
  return "\\frac{" + std::string(parts[0]) + "}{" + std::string(parts[1]) + "}";
}

//! verl's `remove_right_units`: what comes before "\text{ " (units). Throws verl::InputError (verl's assert)
//! when "\text{ " occurs more than once.
[[nodiscard]] inline std::string remove_right_units(std::string_view s) {
  constexpr std::string_view units = "\\text{ ";
  if (!text::contains(s, units)) return std::string(s);
  const auto parts = text::split(s, units);
  if (parts.size() != 2) {
    detail::raise("remove_right_units: \"\\text{ \" occurs ", parts.size() - 1, " times in \"", s,
                  "\", expected once");
  }
  return std::string(parts[0]);
}

//! verl's `fix_sqrt`: "\sqrt3" -> "\sqrt{3}" (one code point). Throws verl::InputError (verl: IndexError)
//! when "\sqrt" is followed by nothing (at the end, or directly by another "\sqrt").
[[nodiscard]] inline std::string fix_sqrt(std::string_view s) {
  if (!text::contains(s, "\\sqrt")) return std::string(s);
  const auto parts = text::split(s, "\\sqrt");
  std::string out(parts.front());
  for (std::size_t p = 1; p < parts.size(); ++p) {
    const std::string_view sub = parts[p];
    if (sub.empty()) detail::raise("fix_sqrt: \"\\sqrt\" is followed by nothing in \"", s, "\"");
    if (sub.front() != '{') {
      const std::string_view a = text::first_code_point(sub);
      out.append("\\sqrt{").append(a).append("}").append(sub.substr(a.size()));
    } else {
      out.append("\\sqrt").append(sub);
    }
  }
  return out;
}

//! verl's `strip_string`: the normalised answer that is_equiv compares. In order: drop newlines and "\!",
//! "\\" -> "\", tfrac/dfrac -> frac, drop "\left"/"\right", degrees, "\$", units after "\text{ ", percent
//! signs; " ." -> " 0.", "{." -> "{0.", a leading "." gets a "0"; "k = v" -> "v" when the left side has at
//! most 2 characters; fix_sqrt; drop spaces; fix_fracs; "0.5" -> "\frac{1}{2}"; fix_a_slash_b. Throws
//! verl::InputError where verl raises (remove_right_units, fix_sqrt, fix_fracs).
[[nodiscard]] inline std::string strip_string(std::string_view input) {
  using text::replace_all;
  std::string s = replace_all(input, "\n", "");
  s = replace_all(s, "\\!", "");
  s = replace_all(s, "\\\\", "\\");
  s = replace_all(s, "tfrac", "frac");
  s = replace_all(s, "dfrac", "frac");
  s = replace_all(s, "\\left", "");
  s = replace_all(s, "\\right", "");
  s = replace_all(s, "^{\\circ}", "");
  s = replace_all(s, "^\\circ", "");
  s = replace_all(s, "\\$", "");
  s = remove_right_units(s);
  s = replace_all(s, "\\\\%", "");
  s = replace_all(s, "\\%", "");
  s = replace_all(s, " .", " 0.");
  s = replace_all(s, "{.", "{0.");
  if (s.empty()) return s;
  if (s.front() == '.') s.insert(0, "0");
  // "k = 5" -> " 5": exactly one '=' and at most 2 code points before it.
  if (text::count(s, "=") == 1) {
    const std::size_t eq = s.find('=');
    if (text::length(std::string_view(s).substr(0, eq)) <= 2) s = s.substr(eq + 1);
  }
  s = fix_sqrt(s);
  s = replace_all(s, " ", "");
  s = fix_fracs(s);
  if (s == "0.5") s = "\\frac{1}{2}";
  return fix_a_slash_b(s);
}

//! verl's `is_equiv(str1, str2)`: the two normalised strings are equal; when normalising either raises,
//! the raw strings are compared instead (as verl does).
[[nodiscard]] inline bool is_equiv(std::string_view a, std::string_view b) {
  try {
    return strip_string(a) == strip_string(b);
  } catch (const InputError&) {
    return a == b;
  }
}

//! verl's `compute_score(solution_str, ground_truth)`: 1.0 when the last boxed answer of the response is
//! equivalent to the ground truth, else 0.0 (also when there is no box or remove_boxed fails).
[[nodiscard]] inline double compute_score(std::string_view solution, std::string_view ground_truth) {
  const auto boxed = last_boxed_only_string(solution);
  if (!boxed) return 0.0;
  try {
    return is_equiv(remove_boxed(*boxed), ground_truth) ? 1.0 : 0.0;
  } catch (const InputError&) {
    return 0.0;
  }
}

//! MATH as a verl::RewardFunction: scores RewardInput::response against RewardInput::ground_truth.
struct Rule {
  [[nodiscard]] double operator()(const RewardInput& in) const { return compute_score(in.response, in.ground_truth); }
};

static_assert(RewardFunction<Rule>);

}  // namespace verl::rewards::math
