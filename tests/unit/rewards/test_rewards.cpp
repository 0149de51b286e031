// Rule rewards, reward managers and weighted combinations (include/verl/rewards/).
// The rules against verl 0.7.1 (PyPI) verl/utils/reward_score/{gsm8k,math_reward,__init__}.py: golden vectors
// made by tests/golden/rewards/make_golden.py, compared string for string and score for score. The manager
// against verl 0.7.1 verl/workers/reward_manager/naive.py (placement at the last valid token, the empty
// response's score in the last column), hand-derived cases.
#include "catch_torch.hpp"
#include "error_of.hpp"

#include "verl/rewards/default_compute_score.hpp"
#include "verl/rewards/gsm8k.hpp"
#include "verl/rewards/math_answer.hpp"

#include <nlohmann/json.hpp>

#include <fstream>
#include <optional>
#include <string>

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
      CHECK(verl::rewards::default_compute_score(ds, s, gt).score == c.at("out").get<double>());
    }
  }
  const nlohmann::json extra = {{"split", "train"}};
  const verl::RewardInput in{"HuggingFaceH4/MATH-500", "", "\\boxed{2}", "2", extra};
  CHECK(verl::rewards::DefaultComputeScore{}(in).score == 1.0);
  STATIC_REQUIRE(verl::RewardFunction<verl::rewards::DefaultComputeScore>);
  STATIC_REQUIRE(verl::RewardFunction<gsm8k::Rule>);
  STATIC_REQUIRE(verl::RewardFunction<math::Rule>);
}
