// Rule rewards, reward managers and weighted combinations (include/verl/rewards/).
// The rules against verl 0.7.1 (PyPI) verl/utils/reward_score/{gsm8k,math_reward,__init__}.py: golden vectors
// and math_dapo.py, made by tests/golden/rewards/make_golden.py, compared string for string and score for score. The manager
// against verl 0.7.1 verl/workers/reward_manager/naive.py (placement at the last valid token, the empty
// response's score in the last column), hand-derived cases.
#include "catch_torch.hpp"
#include "error_of.hpp"

#include "verl/rewards/default_compute_score.hpp"
#include "verl/rewards/gsm8k.hpp"
#include "verl/rewards/math_answer.hpp"
#include "verl/rewards/math_dapo.hpp"
#include "verl/rewards/reward_manager.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <thread>

namespace {

nlohmann::json load(const std::string& name) {
  const std::string path = std::string(VERL_GOLDEN_DIR) + "/rewards/" + name;
  std::ifstream in(path);
  REQUIRE(in.good());
  return nlohmann::json::parse(in);
}

std::optional<std::string> opt_string(const nlohmann::json& j) {
  if (j.is_null()) return std::nullopt;
  return j.get<std::string>();
}

}  // namespace

namespace gsm8k = verl::rewards::gsm8k;
namespace math = verl::rewards::math;

TEST_CASE("gsm8k extract_solution and compute_score equal verl 0.7.1 on every golden input", "[rewards][gsm8k]") {
  const auto doc = load("gsm8k.json");
  const auto& extract = doc.at("extract");
  REQUIRE(extract.size() > 250);
  for (const auto& c : extract) {
    const auto s = c.at("s").get<std::string>();
    INFO("response: " << s);
    CHECK(gsm8k::extract_solution(s, gsm8k::Method::strict) == opt_string(c.at("strict")));
    CHECK(gsm8k::extract_solution(s, gsm8k::Method::flexible) == opt_string(c.at("flexible")));
  }
  const auto& scores = doc.at("compute_score");
  REQUIRE(scores.size() > 1000);
  int full = 0;
  for (const auto& c : scores) {
    const auto s = extract.at(c.at("i").get<std::size_t>()).at("s").get<std::string>();
    const auto gt = c.at("gt").get<std::string>();
    const auto method = gsm8k::parse_method(c.at("method").get<std::string>());
    INFO("response: " << s << "\nground truth: " << gt << "\nmethod: " << c.at("method"));
    const double got = gsm8k::compute_score(s, gt, method, c.at("format_score").get<double>(),
                                            c.at("score").get<double>());
    CHECK(got == c.at("out").get<double>());
    full += got == c.at("score").get<double>() ? 1 : 0;
  }
  CHECK(full > 100);  // the golden set exercises correct answers, not only misses
}

TEST_CASE("gsm8k hand cases: clipping by code points, strict vs flexible, bad method", "[rewards][gsm8k]") {
  // 296 'a' after "#### 5": the string has 302 code points, so the clip (last 300) cuts "#### 5" to "## 5".
  CHECK_FALSE(gsm8k::extract_solution("#### 5" + std::string(296, 'a')).has_value());
  // The same with 294 two-byte 'é' (300 code points, 594 bytes): nothing is clipped.
  std::string e;
  for (int i = 0; i < 294; ++i) e += "\xc3\xa9";
  CHECK(gsm8k::extract_solution("#### 5" + e) == std::optional<std::string>("5"));
  CHECK(gsm8k::extract_solution("#### -1,234.5") == std::optional<std::string>("-1234.5"));
  CHECK(gsm8k::extract_solution("x -1,234.", gsm8k::Method::flexible) == std::optional<std::string>("-1,234."));
  CHECK(gsm8k::extract_solution("5 . .", gsm8k::Method::flexible) == std::optional<std::string>("5"));
  CHECK(gsm8k::extract_solution(". .", gsm8k::Method::flexible) == std::optional<std::string>("."));
  CHECK(gsm8k::compute_score("#### 7", "8", gsm8k::Method::strict, 0.1, 1.0) == 0.1);
  CHECK(gsm8k::compute_score("seven", "7", gsm8k::Method::strict, 0.1, 1.0) == 0.0);
  CHECK_THAT(verl::test::error_of([] { (void)gsm8k::parse_method("loose"); }),
             Catch::Contains("method is \"loose\", expected \"strict\" or \"flexible\""));
}

TEST_CASE("math boxed extraction, strip_string and is_equiv equal verl 0.7.1 on every golden input",
          "[rewards][math]") {
  const auto doc = load("math.json");
  const auto& boxed = doc.at("last_boxed_only_string");
  REQUIRE(boxed.size() > 250);
  for (const auto& c : boxed) {
    INFO("input: " << c.at("s").get<std::string>());
    CHECK(math::last_boxed_only_string(c.at("s").get<std::string>()) == opt_string(c.at("out")));
  }
  for (const auto& c : doc.at("remove_boxed")) {
    const auto s = c.at("s").get<std::string>();
    INFO("input: " << s);
    if (c.contains("error")) {
      CHECK_THROWS_AS(math::remove_boxed(s), verl::InputError);
    } else {
      CHECK(math::remove_boxed(s) == c.at("out").get<std::string>());
    }
  }
  const auto& strip = doc.at("strip_string");
  REQUIRE(strip.size() > 450);
  int errors = 0;
  for (const auto& c : strip) {
    const auto s = c.at("s").get<std::string>();
    INFO("input: " << s);
    if (c.contains("error")) {
      ++errors;
      CHECK_THROWS_AS(math::strip_string(s), verl::InputError);
    } else {
      CHECK(math::strip_string(s) == c.at("out").get<std::string>());
    }
  }
  CHECK(errors > 10);  // verl's raising paths are exercised
  for (const auto& c : doc.at("is_equiv")) {
    const auto a = c.at("a").get<std::string>(), b = c.at("b").get<std::string>();
    INFO("a: " << a << "\nb: " << b);
    CHECK(math::is_equiv(a, b) == c.at("out").get<bool>());
  }
  const auto& scores = doc.at("compute_score");
  REQUIRE(scores.size() > 1000);
  for (const auto& c : scores) {
    const auto s = c.at("s").get<std::string>(), gt = c.at("gt").get<std::string>();
    INFO("response: " << s << "\nground truth: " << gt);
    CHECK(math::compute_score(s, gt) == c.at("out").get<double>());
  }
}

TEST_CASE("math hand cases: verl's quirks", "[rewards][math]") {
  CHECK(math::strip_string("0.5") == "\\frac{1}{2}");
  CHECK(math::strip_string(".5") == "\\frac{1}{2}");          // "." -> "0.5" -> \frac{1}{2}
  CHECK(math::strip_string("0.50") == "0.50");                // only the exact string "0.5"
  CHECK(math::strip_string("k = 3/4") == "\\frac{3}{4}");     // "k " has 2 characters: dropped
  CHECK(math::strip_string("abc=3") == "abc=3");
  CHECK(math::strip_string("01/2") == "01/2");                // int("01") formats back as "1": unchanged
  CHECK(math::strip_string("\\sqrt\xcf\x80") == "\\sqrt{\xcf\x80}");  // one code point, two bytes (pi)
  CHECK(math::strip_string("\\frac1") == "\\frac1");          // too short: fix_fracs returns its input
  CHECK_THROWS_AS(math::strip_string("\\frac"), verl::InputError);
  CHECK_THROWS_AS(math::strip_string("5\\text{ cm}\\text{ m}"), verl::InputError);
  CHECK(math::is_equiv("\\sqrt", "\\sqrt"));                  // strip raises: raw strings compared
  CHECK_FALSE(math::is_equiv("\\sqrt", "\\sqrt{}"));
  CHECK(math::compute_score("so $\\boxed{\\dfrac12}$.", "0.5") == 1.0);
  CHECK(math::compute_score("\\fbox{3}", "3") == 0.0);       // remove_boxed's assert fails: 0
}

TEST_CASE("math_dapo normalize_final_answer and compute_score equal verl 0.7.1 on every golden input",
          "[rewards][math_dapo]") {
  namespace dapo = verl::rewards::math_dapo;
  const auto doc = load("math_dapo.json");
  REQUIRE(doc.at("normalize_final_answer").size() > 450);
  for (const auto& c : doc.at("normalize_final_answer")) {
    const auto s = c.at("s").get<std::string>();
    INFO("input: " << s);
    CHECK(dapo::normalize_final_answer(s) == c.at("out").get<std::string>());
  }
  const auto& responses = doc.at("responses");
  const auto& scores = doc.at("compute_score");
  REQUIRE(scores.size() > 2000);
  int correct = 0;
  for (const auto& c : scores) {
    const auto s = responses.at(c.at("i").get<std::size_t>()).get<std::string>();
    const auto gt = c.at("gt").get<std::string>();
    const bool strict = c.at("strict_box_verify").get<bool>();
    INFO("response: " << s << "\nground truth: " << gt << "\nstrict_box_verify: " << strict);
    const auto r = dapo::compute_score(s, gt, strict);
    CHECK(r.score == c.at("score").get<double>());
    CHECK(r.acc == c.at("acc").get<bool>());
    CHECK(r.pred == opt_string(c.at("pred")));
    correct += r.acc ? 1 : 0;
  }
  CHECK(correct > 100);
}

TEST_CASE("math_dapo hand cases: Python's regex and Unicode semantics", "[rewards][math_dapo]") {
  namespace dapo = verl::rewards::math_dapo;
  // `\s*` gives back whitespace so that `[^\n]+` matches one character: the group is the space before '\n'.
  CHECK(dapo::last_answer("Answer: \n") == std::optional<std::string_view>(" "));
  CHECK(dapo::last_answer("Answer:\n\n") == std::nullopt);
  CHECK(dapo::last_answer("Answer:\n42\nmore") == std::optional<std::string_view>("42"));  // \s crosses lines
  CHECK(dapo::last_answer("AN\xC5\xBFWER: 7") == std::optional<std::string_view>("7"));  // U+017F matches 's'
  CHECK(dapo::normalize_final_answer("\xD9\xA3,\xD9\xA3") == "\xD9\xA3\xD9\xA3");  // Arabic-Indic digits: isdigit()
  CHECK(dapo::normalize_final_answer("x = 12 cm") == "12");
  CHECK(dapo::normalize_final_answer("\\frac12") == "\\frac{1}{2}");
  const auto r = dapo::compute_score("So... Answer: $\\frac{1}{2}$", "\\frac12");
  CHECK(r.score == 1.0);
  CHECK(r.output() == verl::RewardOutput(1.0, {{"acc", 1.0}}));
  CHECK(dapo::compute_score("no answer", "5").score == -1.0);
  CHECK(dapo::compute_score("no answer", "5").pred == std::optional<std::string>("[INVALID]"));
}

TEST_CASE("default_compute_score dispatches on verl's data_source names", "[rewards]") {
  const auto doc = load("default_compute_score.json");
  REQUIRE(doc.at("cases").size() > 100);
  for (const auto& c : doc.at("cases")) {
    const auto ds = c.at("data_source").get<std::string>(), s = c.at("s").get<std::string>(),
               gt = c.at("gt").get<std::string>();
    INFO("data_source: " << ds << "\nresponse: " << s << "\nground truth: " << gt);
    if (c.contains("error")) {
      CHECK_THAT(verl::test::error_of<verl::InputError>([&] { (void)verl::rewards::default_compute_score(ds, s, gt); }),
                 Catch::Contains("no reward rule for data_source \"" + ds + "\"") &&
                     Catch::Contains("\"openai/gsm8k\", \"lighteval/MATH\""));
    } else {
      const auto out = verl::rewards::default_compute_score(ds, s, gt);
      CHECK(out.score == c.at("out").get<double>());
      if (c.contains("acc")) {  // math_dapo's dict result: "acc" as 1 or 0
        CHECK(out.extra == std::map<std::string, double, std::less<>>{{"acc", c.at("acc").get<bool>() ? 1.0 : 0.0}});
      } else {
        CHECK(out.extra.empty());
      }
    }
  }
  const nlohmann::json extra = {{"split", "train"}};
  const verl::RewardInput in{"HuggingFaceH4/MATH-500", "", "\\boxed{2}", "2", extra};
  CHECK(verl::rewards::DefaultComputeScore{}(in).score == 1.0);
  STATIC_REQUIRE(verl::RewardFunction<verl::rewards::DefaultComputeScore>);
  STATIC_REQUIRE(verl::RewardFunction<gsm8k::Rule>);
  STATIC_REQUIRE(verl::RewardFunction<math::Rule>);
}

// ---------------------------------------------------------------------------------------------------------
// The reward manager (verl 0.7.1 NaiveRewardManager semantics) and combinations.

namespace {

using verl::rewards::RewardBatch;
using verl::rewards::RewardManager;
using verl::rewards::RewardManagerOptions;

//! Decodes ids as "5,6,7", so a test sees exactly which ids the manager decoded.
struct CommaTokenizer {
  [[nodiscard]] std::string decode(const std::vector<std::int64_t>& ids) const {
    std::string out;
    for (const auto id : ids) out += (out.empty() ? "" : ",") + std::to_string(id);
    return out;
  }
};

//! Scores a response by its number of tokens plus 0.5 (so an empty response still scores 0.5).
double token_count_plus_half(const verl::RewardInput& in) {
  if (in.response.empty()) return 0.5;
  return 1.5 + static_cast<double>(std::count(in.response.begin(), in.response.end(), ','));
}

//! A reward model scoring sequence i with 2 * (i + 1).
struct EvenModel {
  [[nodiscard]] at::Tensor score(const verl::TokenBatch& batch) const {
    return torch::arange(1, batch.batch_size() + 1, torch::kFloat) * 2;  // (B,)
  }
};

//! Three responses of length 3, 4 and 0 in R = 4 columns.
struct Fixture {
  torch::Tensor responses = torch::tensor({5, 6, 7, 0, 1, 2, 3, 4, 0, 0, 0, 0}, torch::kLong).view({3, 4});  // (B,R)
  torch::Tensor mask = torch::tensor({1, 1, 1, 0, 1, 1, 1, 1, 0, 0, 0, 0}, torch::kLong).view({3, 4});      // (B,R)
  std::vector<verl::ItemInfo> items{{"p0", "src_a", "0", {}}, {"p1", "src_b", "1", {}}, {"p2", "src_a", "2", {}}};
  [[nodiscard]] RewardBatch batch() const { return RewardBatch{responses, mask, items, std::nullopt}; }
  [[nodiscard]] verl::TokenBatch sequences() const {
    const auto ids = torch::cat({torch::ones({3, 2}, torch::kLong), responses}, 1);  // (B,T)
    const auto attn = torch::cat({torch::ones({3, 2}, torch::kLong), mask}, 1);      // (B,T)
    return verl::TokenBatch{ids, attn, attn.cumsum(1) - 1, 4};
  }
};

}  // namespace

TEST_CASE("RewardManager decodes the valid tokens and places the score on the last one", "[rewards][manager]") {
  const Fixture f;
  const CommaTokenizer tok;
  RewardManager manager(&token_count_plus_half, tok);
  const auto res = manager(f.batch());
  CHECK(res.responses == std::vector<std::string>{"5,6,7", "1,2,3,4", ""});
  CHECK(res.scores == std::vector<double>{3.5, 4.5, 0.5});
  // Row 0: L = 3 -> column 2. Row 1: L = 4 -> column 3. Row 2: empty, verl's reward_tensor[i, -1] -> column 3.
  const auto want = torch::tensor({0.f, 0.f, 3.5f, 0.f, 0.f, 0.f, 0.f, 4.5f, 0.f, 0.f, 0.f, 0.5f}).view({3, 4});
  CHECK(res.token_level_scores.scalar_type() == torch::kFloat);
  CHECK(torch::equal(res.token_level_scores, want));
  CHECK(res.reward_extra_info.empty());  // a bare score, like a float from verl's compute_score
  CHECK(res.metrics.empty());

  // An empty batch gives an empty (0,R) tensor.
  const auto none = manager(RewardBatch{f.responses.slice(0, 0, 0), f.mask.slice(0, 0, 0), {}, std::nullopt});
  CHECK(none.token_level_scores.sizes() == torch::IntArrayRef({0, 4}));
  CHECK(none.scores.empty());

  // From a rollout: the same placement, and the sequences a reward model would read.
  verl::Rollout rollout;
  rollout.responses = f.responses;
  rollout.response_mask = f.mask;
  const auto seq = f.sequences();
  rollout.input_ids = seq.input_ids;
  rollout.attention_mask = seq.attention_mask;
  rollout.position_ids = seq.position_ids;
  const auto from_rollout = verl::rewards::make_reward_batch(rollout, f.items);
  CHECK(from_rollout.sequences->response_length == 4);
  CHECK(torch::equal(manager(from_rollout).token_level_scores, res.token_level_scores));

  // Scores are rounded to float32 as verl's float32 reward tensor rounds them; the doubles are kept.
  RewardManager tenth([](const verl::RewardInput&) { return 0.1; }, tok);
  const auto t = tenth(f.batch());
  CHECK(t.scores[0] == 0.1);
  CHECK(t.token_level_scores[0][2].item<float>() == 0.1f);

  // A bool mask and the free function give the same.
  auto by_ref_rule = &token_count_plus_half;
  const auto again = verl::rewards::compute_rewards(by_ref_rule, RewardBatch{f.responses, f.mask.to(torch::kBool),
                                                                             f.items, std::nullopt}, tok);
  CHECK(torch::equal(again.token_level_scores, want));
}

TEST_CASE("place_at_last_valid_token places reward model scores like rule scores", "[rewards][manager]") {
  const Fixture f;
  RewardManager manager{EvenModel{}};  // no tokenizer: a reward model needs none
  auto batch = f.batch();
  batch.sequences = f.sequences();
  const auto res = manager(batch);
  const auto want = torch::tensor({0.f, 0.f, 2.f, 0.f, 0.f, 0.f, 0.f, 4.f, 0.f, 0.f, 0.f, 6.f}).view({3, 4});
  CHECK(torch::equal(res.token_level_scores, want));
  CHECK(res.responses.empty());
  CHECK_THAT(verl::test::error_of<verl::ShapeError>([&] {
               (void)verl::rewards::place_at_last_valid_token(torch::zeros({2}), f.mask);
             }),
             Catch::Contains("`scores` has shape [2], expected (3,)"));
  CHECK_THAT(verl::test::error_of<verl::ShapeError>([&] {
               (void)verl::rewards::place_at_last_valid_token(torch::zeros({3}), torch::zeros({3, 0}));
             }),
             Catch::Contains("no columns"));
  CHECK_THAT(verl::test::error_of<verl::ConfigError>([&] { (void)manager(f.batch()); }),
             Catch::Contains("batch has no `sequences`"));
  struct BadModel {
    [[nodiscard]] at::Tensor score(const verl::TokenBatch&) const { return torch::zeros({3, 1}); }
  };
  RewardManager bad{BadModel{}};
  CHECK_THAT(verl::test::error_of<verl::ShapeError>([&] { (void)bad(batch); }),
             Catch::Contains("returned scores of shape [3, 1], expected (3,)"));
}

TEST_CASE("RewardManager reports extra values per item and checks they line up", "[rewards][manager]") {
  const Fixture f;
  const CommaTokenizer tok;
  RewardManager manager(
      [](const verl::RewardInput& in) {
        const double acc = in.ground_truth == "1" ? 1.0 : 0.0;
        return verl::RewardOutput(2.0 * acc, {{"acc", acc}});
      },
      tok);
  const auto res = manager(f.batch());
  CHECK(res.reward_extra_info.at("acc") == std::vector<double>{0.0, 1.0, 0.0});
  CHECK(res.reward_extra_info.at("score") == std::vector<double>{0.0, 2.0, 0.0});  // verl: the dict's "score"
  CHECK(res.metrics.at("reward/acc/mean") == 1.0 / 3.0);
  CHECK(res.metrics.at("reward/score/mean") == 2.0 / 3.0);

  // verl's num_examine: the first item of each data_source is printed.
  std::ostringstream log;
  manager.options().num_examine = 1;
  manager.options().examine_to = &log;
  (void)manager(f.batch());
  CHECK(log.str() ==
        "[prompt] p0\n[response] 5,6,7\n[ground_truth] 0\n[score] 0\n[acc] 0\n"
        "[prompt] p1\n[response] 1,2,3,4\n[ground_truth] 1\n[score] 2\n[acc] 1\n");

  RewardManager ragged(
      [](const verl::RewardInput& in) {
        if (in.ground_truth == "2") return verl::RewardOutput(1.0);
        return verl::RewardOutput(1.0, {{"acc", 1.0}});
      },
      tok);
  CHECK_THAT(verl::test::error_of<verl::InputError>([&] { (void)ragged(f.batch()); }),
             Catch::Contains("item 2 of 3 (data_source \"src_a\") reports no extra key \"acc\""));

  RewardManager nan([](const verl::RewardInput& in) { return in.ground_truth == "1" ? std::nan("") : 1.0; }, tok);
  CHECK_THAT(verl::test::error_of<verl::InputError>([&] { (void)nan(f.batch()); }),
             Catch::Contains("non-finite score nan for item 1 of 3 (data_source \"src_b\")"));
  nan.options().check_finite = false;
  CHECK(std::isnan(nan(f.batch()).scores[1]));
}

TEST_CASE("RewardManager names the item whose rule throws and the inputs that are missing", "[rewards][manager]") {
  const Fixture f;
  const CommaTokenizer tok;
  for (const std::size_t threads : {std::size_t{1}, std::size_t{3}}) {
    INFO("threads: " << threads);
    RewardManager manager(
        [](const verl::RewardInput& in) -> double {
          if (in.ground_truth != "0") throw std::runtime_error("verifier failed on " + std::string(in.ground_truth));
          return 1.0;
        },
        tok, RewardManagerOptions{.num_threads = threads});
    try {
      (void)manager(f.batch());
      FAIL("no exception");
    } catch (const verl::Error& e) {
      // Items 1 and 2 both throw: the smallest index is reported, whatever the number of threads.
      CHECK_THAT(e.what(), Catch::Contains("the reward function threw on item 1 of 3 (data_source \"src_b\"): "
                                           "verifier failed on 1"));
      const auto* nested = dynamic_cast<const std::nested_exception*>(&e);
      REQUIRE(nested != nullptr);
      CHECK_THROWS_AS(nested->rethrow_nested(), std::runtime_error);
    }
  }
  RewardManager unknown(verl::rewards::DefaultComputeScore{}, tok);
  CHECK_THAT(verl::test::error_of<verl::Error>([&] { (void)unknown(f.batch()); }),
             Catch::Contains("item 0 of 3 (data_source \"src_a\"): verl::rewards::default_compute_score: no reward "
                             "rule for data_source \"src_a\""));
  RewardManager no_tok(&token_count_plus_half);
  CHECK_THAT(verl::test::error_of<verl::ConfigError>([&] { (void)no_tok(f.batch()); }),
             Catch::Contains("no tokenizer"));
  RewardManager no_items(&token_count_plus_half, tok);
  CHECK_THAT(verl::test::error_of<verl::ShapeError>(
                 [&] { (void)no_items(RewardBatch{f.responses, f.mask, {}, std::nullopt}); }),
             Catch::Contains("the batch has 0 items, expected one per response (3)"));
  CHECK_THAT(verl::test::error_of<verl::ShapeError>(
                 [&] { (void)no_items(RewardBatch{f.responses, f.mask.slice(1, 0, 3), f.items, std::nullopt}); }),
             Catch::Contains("`response_mask` has shape [3, 3], expected [3, 4]"));
}

TEST_CASE("RewardManager scores verl's datasets with default_compute_score", "[rewards][manager]") {
  // A tokenizer whose ids are bytes: the responses are "#### 72" and "\boxed{1/2}".
  struct ByteTokenizer {
    [[nodiscard]] std::string decode(const std::vector<std::int64_t>& ids) const {
      return std::string(ids.begin(), ids.end());
    }
  };
  const std::string a = "#### 72", b = "\\boxed{1/2}";
  auto responses = torch::zeros({2, 12}, torch::kLong);  // (B,R)
  auto mask = torch::zeros({2, 12}, torch::kLong);       // (B,R)
  for (std::size_t i = 0; i < a.size(); ++i) responses[0][static_cast<std::int64_t>(i)] = a[i], mask[0][i] = 1;
  for (std::size_t i = 0; i < b.size(); ++i) responses[1][static_cast<std::int64_t>(i)] = b[i], mask[1][i] = 1;
  const std::vector<verl::ItemInfo> items{{"q", "openai/gsm8k", "72", {}}, {"q", "lighteval/MATH", "\\frac12", {}}};
  RewardManager manager(verl::rewards::DefaultComputeScore{}, ByteTokenizer{});
  const auto res = manager(RewardBatch{responses, mask, items, std::nullopt});
  CHECK(res.responses == std::vector<std::string>{a, b});
  CHECK(res.token_level_scores[0][6].item<float>() == 1.0f);   // L = 7
  CHECK(res.token_level_scores[1][10].item<float>() == 1.0f);  // L = 11
  CHECK(res.token_level_scores.sum().item<float>() == 2.0f);
}

TEST_CASE("combine: weighted terms, each term's score reported, rules and models mixed", "[rewards][combine]") {
  using verl::rewards::combine;
  using verl::rewards::weighted;
  const Fixture f;
  const CommaTokenizer tok;
  auto format = [](const verl::RewardInput& in) { return in.response.empty() ? 0.0 : 1.0; };
  auto length = [](const verl::RewardInput& in) {
    return verl::RewardOutput(static_cast<double>(in.response.size()), {{"chars", static_cast<double>(in.response.size())}});
  };
  auto rules = combine(weighted(format, 0.7, "format"), weighted(length, 0.3));
  STATIC_REQUIRE(verl::RewardFunction<decltype(rules)>);
  const nlohmann::json none;
  const auto one = rules(verl::RewardInput{"src", "", "1,2", "", none});
  // 0.7 * 1 + 0.3 * 3 (the response "1,2" has 3 characters), in term order.
  CHECK(one.score == 0.7 * 1.0 + 0.3 * 3.0);
  CHECK(one.extra == std::map<std::string, double, std::less<>>{{"format", 1.0}, {"term1", 3.0}, {"term1/chars", 3.0}});

  EvenModel model;
  auto mixed = combine(weighted(format, 0.5, "format"), weighted(verl::rewards::by_ref(model), -0.25, "rm"));
  STATIC_REQUIRE_FALSE(verl::RewardFunction<decltype(mixed)>);
  STATIC_REQUIRE(verl::rewards::ManagedReward<decltype(mixed)>);
  RewardManager manager(std::move(mixed), tok);
  auto batch = f.batch();
  batch.sequences = f.sequences();
  const auto res = manager(batch);
  // Rows: format 1, 1, 0 (row 2 is empty); the model gives 2, 4, 6. 0.5*format - 0.25*model:
  CHECK(res.scores == std::vector<double>{0.5 - 0.5, 0.5 - 1.0, 0.0 - 1.5});
  CHECK(res.reward_extra_info.at("format") == std::vector<double>{1.0, 1.0, 0.0});
  CHECK(res.reward_extra_info.at("rm") == std::vector<double>{2.0, 4.0, 6.0});
  CHECK(res.metrics.at("reward/rm/mean") == 4.0);
  CHECK(res.metrics.at("reward/format/mean") == 2.0 / 3.0);
  CHECK(res.token_level_scores[2][3].item<float>() == -1.5f);

  // Errors name the term.
  auto failing = combine(weighted(format, 1.0, "format"),
                         weighted([](const verl::RewardInput&) -> double { throw std::runtime_error("boom"); }, 1.0,
                                  "judge"));
  RewardManager fm(std::move(failing), tok);
  CHECK_THAT(verl::test::error_of<verl::Error>([&] { (void)fm(f.batch()); }),
             Catch::Contains("the reward function (term \"judge\") threw on item 0 of 3 (data_source \"src_a\"): boom"));
  CHECK_THAT(verl::test::error_of<verl::ConfigError>([&] { (void)combine(weighted(format, 1.0, "x"), weighted(format, 1.0, "x")); }),
             Catch::Contains("term 1 is named \"x\" like an earlier term"));
  CHECK_THAT(verl::test::error_of<verl::ConfigError>([&] { (void)combine(weighted(format, std::nan(""))); }),
             Catch::Contains("term 0 (\"term0\") has weight nan, expected a finite number"));
}

TEST_CASE("RewardManager with threads: rules run concurrently, results in item order", "[rewards][manager]") {
  constexpr std::int64_t n = 24;
  const auto responses = torch::arange(n, torch::kLong).view({n, 1});  // (B,R): item i's only token is i
  const auto mask = torch::ones({n, 1}, torch::kLong);                 // (B,R)
  std::vector<verl::ItemInfo> items(n, verl::ItemInfo{"", "src", "", {}});
  std::atomic<int> running{0}, most{0};
  bool wait_for_overlap = true;
  auto slow = [&](const verl::RewardInput& in) {
    const int now = ++running;
    int seen = most.load();
    while (now > seen && !most.compare_exchange_weak(seen, now)) {}
    // Wait (bounded) until another call overlaps this one, so concurrency shows without a timing assumption.
    for (int spin = 0; wait_for_overlap && spin < 200 && most.load() < 2; ++spin) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    --running;
    return std::stod(std::string(in.response)) * 10.0;
  };
  const CommaTokenizer tok;
  RewardManager parallel(verl::rewards::by_ref(slow), tok, RewardManagerOptions{.num_threads = 4});
  const auto res = parallel(RewardBatch{responses, mask, items, std::nullopt});
  CHECK(most.load() >= 2);
  for (std::int64_t i = 0; i < n; ++i) {
    CHECK(res.responses[static_cast<std::size_t>(i)] == std::to_string(i));
    CHECK(res.scores[static_cast<std::size_t>(i)] == 10.0 * static_cast<double>(i));
  }
  // num_threads = 0: one thread per core; the same results.
  RewardManager per_core(verl::rewards::by_ref(slow), tok, RewardManagerOptions{.num_threads = 0});
  CHECK(per_core(RewardBatch{responses, mask, items, std::nullopt}).scores == res.scores);
  most = 0;
  wait_for_overlap = false;
  RewardManager serial(verl::rewards::by_ref(slow), tok);
  const auto one = serial(RewardBatch{responses, mask, items, std::nullopt});
  CHECK(most.load() == 1);
  CHECK(one.scores == res.scores);
  CHECK(torch::equal(one.token_level_scores, res.token_level_scores));
}
