#pragma once
//! \file
//! verl::rewards::default_compute_score: verl 0.7.1's `default_compute_score(data_source, solution_str,
//! ground_truth, extra_info)` (verl/utils/reward_score/__init__.py) for the rules verl-cpp implements:
//!
//!   data_source                                                                   rule
//!   "openai/gsm8k"                                                                gsm8k::compute_score (strict)
//!   "lighteval/MATH", "DigitalLearningGmbH/MATH-lighteval", "HuggingFaceH4/MATH-500"  math::compute_score
//!   "math_dapo", "math", "math_dapo_reasoning", any name starting with "aime"   math_dapo::compute_score
//!                                                                   (score +-1, extra "acc" 1/0)
//!
//! Any other data_source throws verl::InputError naming it and the known ones; verl's other rules
//! (prime_math, prime_code, sandbox_fusion, geo3k, search-R1) are not implemented: pass your own
//! verl::RewardFunction for those datasets. DefaultComputeScore is the same dispatch as a RewardFunction.

#include "verl/core/errors.hpp"
#include "verl/concepts/reward_model.hpp"
#include "verl/core/model_io.hpp"
#include "verl/rewards/gsm8k.hpp"
#include "verl/rewards/math_answer.hpp"
#include "verl/rewards/math_dapo.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <string>
#include <string_view>

namespace verl::rewards {

//! The data_source names default_compute_score knows, as verl spells them (plus any name starting with "aime").
inline constexpr std::array<std::string_view, 7> known_data_sources = {
    "openai/gsm8k", "lighteval/MATH", "DigitalLearningGmbH/MATH-lighteval", "HuggingFaceH4/MATH-500",
    "math_dapo",    "math",           "math_dapo_reasoning"};

//! The score verl's default_compute_score gives `solution` for an item of `data_source` (see the table in
//! the file comment). `extra_info` is accepted for verl's signature; neither rule reads it. Throws
//! verl::InputError for a data_source without a rule here (verl raises NotImplementedError).
[[nodiscard]] inline RewardOutput default_compute_score(std::string_view data_source, std::string_view solution,
                                                        std::string_view ground_truth,
                                                        [[maybe_unused]] const nlohmann::json& extra_info = {}) {
  if (data_source == known_data_sources[0]) return gsm8k::compute_score(solution, ground_truth);
  if (std::find(known_data_sources.begin() + 1, known_data_sources.begin() + 4, data_source) !=
      known_data_sources.begin() + 4) {
    return math::compute_score(solution, ground_truth);
  }
  if (std::find(known_data_sources.begin() + 4, known_data_sources.end(), data_source) != known_data_sources.end() ||
      data_source.starts_with("aime")) {
    return math_dapo::compute_score(solution, ground_truth).output();
  }
  std::string known;
  for (const auto name : known_data_sources) known.append(known.empty() ? "\"" : ", \"").append(name).append("\"");
  known += ", \"aime*\"";
  throw InputError(verl::detail::concat_message(
      "verl::rewards::default_compute_score: no reward rule for data_source \"", data_source, "\"; known: ", known,
      " (verl's other rules are not implemented: pass your own verl::RewardFunction for this dataset)"));
}

//! default_compute_score as a verl::RewardFunction over RewardInput (data_source, response, ground_truth,
//! extra_info).
struct DefaultComputeScore {
  [[nodiscard]] RewardOutput operator()(const RewardInput& in) const {
    return default_compute_score(in.data_source, in.response, in.ground_truth, in.extra_info);
  }
};

static_assert(RewardFunction<DefaultComputeScore>);

}  // namespace verl::rewards
