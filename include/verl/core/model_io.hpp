#pragma once
//! \file
//! The vocabulary the model contracts speak (verl/concepts/): what an actor, reference, critic or reward
//! model takes and returns, and the sampling parameters of generation. Plain aggregates over tensors, so any
//! engine (an HF-style module, a Megatron-style sharded model, a user's own inference engine) can produce
//! and consume them without depending on the rest of verl-cpp.
//!
//! Shapes: B = batch size, P = prompt length, R = response length, T = P + R (padded lengths).
//! `at::Tensor` is the type LibTorch users spell `torch::Tensor`; this header includes only
//! <ATen/core/Tensor.h> to keep compile times down.

#include "verl/core/errors.hpp"
#include "verl/core/item_info.hpp"

#include <ATen/core/Tensor.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace verl {

namespace detail {

//! Throws verl::ShapeError unless `t` is a defined 2-D tensor; `what` names it, `shape` says its layout.
inline void check_2d(const at::Tensor& t, std::string_view owner, std::string_view what, std::string_view shape) {
  check<ShapeError>(t.defined(), owner, ": `", what, "` is undefined, expected a ", shape, " tensor");
  check<ShapeError>(t.dim() == 2, owner, ": `", what, "` has ", t.dim(), " dimensions, expected 2 ", shape);
}

//! Throws verl::ShapeError unless `t` is defined and has the sizes of `like`.
inline void check_same_shape(const at::Tensor& t, const at::Tensor& like, std::string_view owner,
                             std::string_view what, std::string_view like_name) {
  check<ShapeError>(t.defined(), owner, ": `", what, "` is undefined, expected the shape of `", like_name, "`");
  check<ShapeError>(t.sizes() == like.sizes(), owner, ": `", what, "` has shape ", t.sizes(), ", expected ",
                    like.sizes(), " (the shape of `", like_name, "`)");
}

}  // namespace detail

// ---------------------------------------------------------------------------------------------------------
// Scoring a batch of token sequences (actor, reference, critic, reward model).

//! A batch of padded token sequences to score: prompt (left-padded) followed by response (right-padded).
//! Scores are asked for the last `response_length` positions only, as in verl's actor `compute_log_prob`:
//! the logits at positions T-R-1 .. T-2 score the tokens at positions T-R .. T-1.
struct TokenBatch {
  at::Tensor input_ids;          // (B,T) int64
  at::Tensor attention_mask;     // (B,T) int64/bool, 1 on real tokens
  at::Tensor position_ids;       // (B,T) int64
  std::int64_t response_length = 0;  //!< R: how many trailing positions are scored; 1 <= R <= T-1

  //! Batch size B (input_ids must be defined).
  [[nodiscard]] std::int64_t batch_size() const { return input_ids.size(0); }
  //! Padded sequence length T (input_ids must be defined).
  [[nodiscard]] std::int64_t sequence_length() const { return input_ids.size(1); }

  //! Throws verl::ShapeError unless the three tensors are 2-D with one shape and 1 <= R <= T-1
  //! (a scored token needs at least one token before it).
  void validate() const {
    constexpr std::string_view owner = "verl::TokenBatch";
    detail::check_2d(input_ids, owner, "input_ids", "(B,T)");
    detail::check_same_shape(attention_mask, input_ids, owner, "attention_mask", "input_ids");
    detail::check_same_shape(position_ids, input_ids, owner, "position_ids", "input_ids");
    const std::int64_t t = input_ids.size(1);
    detail::check<ShapeError>(response_length >= 1 && response_length <= t - 1, owner, ": `response_length` is ",
                              response_length, ", expected a value in [1, ", t - 1,
                              "] (T-1, where T = ", t, " is the padded sequence length)");
  }
};

//! How log-probs are computed: the logits are divided by `temperature` before the log-softmax, as the
//! sampler did at generation time (verl's `logits.div_(temperature)`).
struct LogProbOptions {
  double temperature = 1.0;     //!< > 0
  bool compute_entropy = false;  //!< also return the per-token entropy of the tempered distribution
};

//! What ComputesLogProbs returns.
struct LogProbOutput {
  at::Tensor log_probs;                //!< (B,R) float, log p(token_t | tokens_<t); 0 where the response is padding
  std::optional<at::Tensor> entropy;  //!< (B,R) float, set iff LogProbOptions::compute_entropy
};

// ---------------------------------------------------------------------------------------------------------
// Generation (actor / rollout engine).

//! Prompts to generate from, left-padded so that every response starts at column P.
struct Prompts {
  at::Tensor input_ids;       // (B,P) int64, pad on the left
  at::Tensor attention_mask;  // (B,P) int64/bool, 0 on left padding
  at::Tensor position_ids;    // (B,P) int64

  //! Throws verl::ShapeError unless the three tensors are 2-D with one shape.
  void validate() const {
    constexpr std::string_view owner = "verl::Prompts";
    detail::check_2d(input_ids, owner, "input_ids", "(B,P)");
    detail::check_same_shape(attention_mask, input_ids, owner, "attention_mask", "input_ids");
    detail::check_same_shape(position_ids, input_ids, owner, "position_ids", "input_ids");
  }
};

//! Sampling parameters of one generate() call, named as vLLM's `SamplingParams`.
struct SamplingParams {
  std::int64_t n = 1;                        //!< samples per prompt (GRPO's group size); >= 1
  double temperature = 1.0;                  //!< >= 0; 0 means greedy decoding
  double top_p = 1.0;                        //!< nucleus mass, in (0, 1]; 1 = off
  std::int64_t top_k = -1;                   //!< keep the k most likely tokens; -1 = off, else >= 1
  double min_p = 0.0;                        //!< drop tokens below min_p * p(max), in [0, 1]; 0 = off
  double repetition_penalty = 1.0;           //!< > 0; 1 = off (prompt and output tokens, transformers/vLLM rule)
  double presence_penalty = 0.0;             //!< in [-2, 2]; subtracted once from each token already output
  double frequency_penalty = 0.0;            //!< in [-2, 2]; subtracted per occurrence in the output so far
  std::int64_t max_tokens = 16;              //!< maximum response length R; >= 1 (vLLM's default 16)
  std::optional<std::uint64_t> seed;         //!< per-request seed; unset = engine's generator
  std::vector<std::int64_t> stop_token_ids;  //!< extra tokens that end a response (besides eos); each >= 0
  //! Strings that end a response once the decoded response contains one (needs the engine's detokenizer);
  //! the token that completes it is kept, as are the tokens of the string.
  std::vector<std::string> stop;
  bool ignore_eos = false;                   //!< keep generating after eos (benchmarks, length tests)
  bool return_log_probs = false;             //!< fill Rollout::log_probs with the sampler's log-probs

  //! True when decoding is greedy (vLLM treats temperature 0 as greedy).
  [[nodiscard]] bool greedy() const { return temperature == 0.0; }

  //! Throws verl::ConfigError naming the first field out of its allowed range.
  void validate() const {
    using detail::check;
    constexpr std::string_view owner = "verl::SamplingParams";
    check<ConfigError>(n >= 1, owner, ": `n` is ", n, ", expected an integer >= 1");
    check<ConfigError>(std::isfinite(temperature) && temperature >= 0.0, owner, ": `temperature` is ", temperature,
                       ", expected a finite value >= 0 (0 = greedy)");
    check<ConfigError>(top_p > 0.0 && top_p <= 1.0, owner, ": `top_p` is ", top_p, ", expected a value in (0, 1]");
    check<ConfigError>(top_k == -1 || top_k >= 1, owner, ": `top_k` is ", top_k,
                       ", expected -1 (off) or an integer >= 1");
    check<ConfigError>(min_p >= 0.0 && min_p <= 1.0, owner, ": `min_p` is ", min_p, ", expected a value in [0, 1]");
    check<ConfigError>(std::isfinite(repetition_penalty) && repetition_penalty > 0.0, owner,
                       ": `repetition_penalty` is ", repetition_penalty, ", expected a finite value > 0 (1 = off)");
    check<ConfigError>(std::isfinite(presence_penalty) && presence_penalty >= -2.0 && presence_penalty <= 2.0, owner,
                       ": `presence_penalty` is ", presence_penalty, ", expected a value in [-2, 2] (0 = off)");
    check<ConfigError>(std::isfinite(frequency_penalty) && frequency_penalty >= -2.0 && frequency_penalty <= 2.0,
                       owner, ": `frequency_penalty` is ", frequency_penalty, ", expected a value in [-2, 2] (0 = off)");
    check<ConfigError>(max_tokens >= 1, owner, ": `max_tokens` is ", max_tokens, ", expected an integer >= 1");
    for (std::size_t i = 0; i < stop_token_ids.size(); ++i) {
      check<ConfigError>(stop_token_ids[i] >= 0, owner, ": `stop_token_ids[", i, "]` is ", stop_token_ids[i],
                         ", expected a token id >= 0");
    }
    for (std::size_t i = 0; i < stop.size(); ++i) {
      check<ConfigError>(!stop[i].empty(), owner, ": `stop[", i, "]` is empty, expected a non-empty stop string");
    }
  }
};

//! What Generates returns: B*n sequences (each prompt repeated n times, samples of one prompt adjacent).
//! Field names follow verl's rollout output (DataProto keys, see verl/core/fields.hpp).
struct Rollout {
  at::Tensor prompts;         // (B*n,P) int64, left-padded prompts
  at::Tensor responses;       // (B*n,R) int64, right-padded responses, R <= max_tokens
  at::Tensor input_ids;       // (B*n,T) int64, prompts ++ responses
  at::Tensor attention_mask;  // (B*n,T) int64, 1 on real prompt and response tokens
  at::Tensor position_ids;    // (B*n,T) int64, continues across the prompt/response boundary
  at::Tensor response_mask;   // (B*n,R) int64, 1 on generated tokens up to and including eos/stop
  std::optional<at::Tensor> log_probs;  // (B*n,R) float, sampler log-probs iff SamplingParams::return_log_probs

  //! The rollout as a TokenBatch scoring its responses (R = responses.size(1)); shares storage.
  [[nodiscard]] TokenBatch token_batch() const {
    return TokenBatch{input_ids, attention_mask, position_ids, responses.size(1)};
  }

  //! Throws verl::ShapeError unless the shapes agree: T = P + R, masks like their ids, log-probs like
  //! responses.
  void validate() const {
    constexpr std::string_view owner = "verl::Rollout";
    detail::check_2d(prompts, owner, "prompts", "(B,P)");
    detail::check_2d(responses, owner, "responses", "(B,R)");
    detail::check_2d(input_ids, owner, "input_ids", "(B,T)");
    const std::int64_t b = input_ids.size(0);
    const std::int64_t p = prompts.size(1);
    const std::int64_t r = responses.size(1);
    detail::check<ShapeError>(prompts.size(0) == b && responses.size(0) == b, owner,
                              ": `prompts`, `responses` and `input_ids` have ", prompts.size(0), ", ",
                              responses.size(0), " and ", b, " rows, expected one batch size");
    detail::check<ShapeError>(input_ids.size(1) == p + r, owner, ": `input_ids` has ", input_ids.size(1),
                              " columns, expected P + R = ", p, " + ", r);
    detail::check_same_shape(attention_mask, input_ids, owner, "attention_mask", "input_ids");
    detail::check_same_shape(position_ids, input_ids, owner, "position_ids", "input_ids");
    detail::check_same_shape(response_mask, responses, owner, "response_mask", "responses");
    if (log_probs) detail::check_same_shape(*log_probs, responses, owner, "log_probs", "responses");
  }
};

// ---------------------------------------------------------------------------------------------------------
// Rewards.

//! What a RewardFunction scores: one decoded response with its item's data, as the arguments of verl's
//! `compute_score(data_source, solution_str, ground_truth, extra_info)`. A view: it refers to strings and
//! JSON owned by the caller, valid for the duration of the call.
struct RewardInput {
  std::string_view data_source;        //!< dataset name; selects the rule
  std::string_view prompt;             //!< prompt text (chat template applied)
  std::string_view response;           //!< decoded response (verl's `solution_str`), padding removed
  std::string_view ground_truth;       //!< reference answer
  const nlohmann::json& extra_info;    //!< anything else, e.g. {"split": "train", "index": 17}
};

//! A RewardInput viewing `info` and `response` (both must outlive it).
[[nodiscard]] inline RewardInput make_reward_input(const ItemInfo& info, std::string_view response) {
  return RewardInput{info.data_source, info.prompt, response, info.ground_truth, info.extra_info};
}

//! What a RewardFunction returns: a score, plus named values to log (verl's compute_score may return a dict
//! with "score" and extra keys such as "acc"). Converts implicitly from a plain score, so a rule may
//! simply `return 1.0;`.
struct RewardOutput {
  double score = 0.0;
  std::map<std::string, double, std::less<>> extra;  //!< logged as reward_extra_info/<key>

  RewardOutput() = default;
  RewardOutput(double s) : score(s) {}  // NOLINT(google-explicit-constructor): a bare score is a RewardOutput
  RewardOutput(double s, std::map<std::string, double, std::less<>> e) : score(s), extra(std::move(e)) {}

  friend bool operator==(const RewardOutput&, const RewardOutput&) = default;
};

}  // namespace verl
