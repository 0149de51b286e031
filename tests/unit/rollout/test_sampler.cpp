// verl::rollout::sample (include/verl/rollout/sampler.hpp) and verl::rollout::StopStringMatcher
// (include/verl/rollout/stop_strings.hpp). The sampler is pinned against vLLM v1's sampler semantics
// (vllm/v1/sample/sampler.py, ops/penalties.py, ops/topk_topp_sampler.py, min-p processor) and transformers'
// RepetitionPenaltyLogitsProcessor: distributions by chi-square goodness of fit against probabilities computed
// here in double from the definitions, penalties by hand-derived cases, log-probs against at::log_softmax,
// the RNG against Random123's known answers and ATen's Philox, batch invariance, errors. Stop strings against
// a full decode of every prefix, with a hand-made vocabulary and the byte-level BPE fixture.
#include "catch_torch.hpp"

#include "error_of.hpp"
#include "verl/core/fast_exp.hpp"
#include "verl/rollout/sampler.hpp"
#include "verl/rollout/stop_strings.hpp"
#include "verl/tokenizers/hf_tokenizer.hpp"
#include "verl/tokenizers/utf8.hpp"

#include <ATen/core/PhiloxRNGEngine.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <numeric>
#include <random>
#include <sstream>
#include <string>
#include <vector>

namespace test_sampler {  // one namespace per file: a unity build (tests/CMakeLists.txt) may join files

using verl::SamplingParams;
using verl::rollout::SampleOutput;
using verl::rollout::SamplingRow;
using Ids = std::vector<std::int64_t>;

namespace {

// Upper 0.999 quantiles of the chi-square distribution for df = 1..40 (NIST/SEMATECH e-Handbook of
// Statistical Methods, table 1.3.6.7.4; re-derived by bisection on torch.special.gammainc(df/2, x/2) = 0.999).
constexpr double chi2_999[41] = {0,      10.828, 13.816, 16.266, 18.467, 20.515, 22.458, 24.322, 26.124, 27.877,
                                 29.588, 31.264, 32.909, 34.528, 36.123, 37.697, 39.252, 40.790, 42.312, 43.820,
                                 45.315, 46.797, 48.268, 49.728, 51.179, 52.620, 54.052, 55.476, 56.892, 58.301,
                                 59.703, 61.098, 62.487, 63.870, 65.247, 66.619, 67.985, 69.346, 70.703, 72.055,
                                 73.402};

// The sampling distribution from its definition, in double: z = l / T; min-p on softmax(z); top-k keeps
// z >= k-th largest; top-p keeps the shortest prefix (descending p, ties by lower id) of the renormalised
// distribution whose mass reaches top_p. Returns probabilities over V (0 for filtered tokens).
std::vector<double> reference_probs(const std::vector<float>& logits, const SamplingParams& p) {
  const std::size_t v = logits.size();
  std::vector<double> z(v), prob(v);
  for (std::size_t i = 0; i < v; ++i) z[i] = static_cast<double>(logits[i]) / p.temperature;
  const double zmax = *std::max_element(z.begin(), z.end());
  for (std::size_t i = 0; i < v; ++i) prob[i] = std::exp(z[i] - zmax);  // max prob has weight 1
  for (std::size_t i = 0; i < v; ++i) {
    if (prob[i] < p.min_p) prob[i] = 0.0;  // p_i / p_max < min_p
  }
  if (p.top_k > 0 && static_cast<std::size_t>(p.top_k) < v) {
    std::vector<double> sorted = z;
    std::sort(sorted.begin(), sorted.end(), std::greater<>());
    const double kth = sorted[static_cast<std::size_t>(p.top_k) - 1];
    for (std::size_t i = 0; i < v; ++i) {
      if (z[i] < kth) prob[i] = 0.0;
    }
  }
  double total = std::accumulate(prob.begin(), prob.end(), 0.0);
  for (auto& q : prob) q /= total;
  if (p.top_p < 1.0) {
    std::vector<std::size_t> order(v);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return prob[a] > prob[b]; });
    double acc = 0.0;
    std::size_t j = 0;
    for (; j < v; ++j) {
      acc += prob[order[j]];
      if (acc >= p.top_p) break;
    }
    for (std::size_t r = j + 1; r < v; ++r) prob[order[r]] = 0.0;
    total = std::accumulate(prob.begin(), prob.end(), 0.0);
    for (auto& q : prob) q /= total;
  }
  return prob;
}

// n draws of one row: n rows of the same logits, steps 0..n-1 of one seed, in one call.
std::vector<std::int64_t> draw(const std::vector<float>& logits, const SamplingParams& p, std::int64_t n,
                               std::uint64_t seed) {
  const auto v = static_cast<std::int64_t>(logits.size());
  auto t = torch::tensor(logits).reshape({1, v}).repeat({n, 1}).contiguous();  // (n,V)
  std::vector<SamplingRow> rows(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) rows[i] = SamplingRow{&p, seed, i, {}, {}};
  return verl::rollout::sample(t, rows, false).tokens;
}

// Pearson's chi-square of the draws against `prob`, over `bins` (each a set of token ids; the test groups
// tokens so that every expected count is >= 5). Also REQUIREs that no zero-probability token was drawn.
void check_fit(const std::vector<std::int64_t>& tokens, const std::vector<double>& prob,
               const std::vector<std::vector<std::int64_t>>& bins) {
  std::vector<std::int64_t> count(prob.size(), 0);
  for (const auto t : tokens) {
    REQUIRE(t >= 0);
    REQUIRE(t < static_cast<std::int64_t>(prob.size()));
    ++count[static_cast<std::size_t>(t)];
  }
  for (std::size_t i = 0; i < prob.size(); ++i) {
    if (prob[i] == 0.0) {
      INFO("filtered token " << i);
      REQUIRE(count[i] == 0);
    }
  }
  const auto n = static_cast<double>(tokens.size());
  double chi2 = 0.0;
  for (const auto& bin : bins) {
    double e = 0.0, o = 0.0;
    for (const auto id : bin) {
      e += n * prob[static_cast<std::size_t>(id)];
      o += static_cast<double>(count[static_cast<std::size_t>(id)]);
    }
    REQUIRE(e >= 5.0);
    chi2 += (o - e) * (o - e) / e;
  }
  const std::size_t df = bins.size() - 1;
  REQUIRE(df >= 1);
  REQUIRE(df <= 40);
  INFO("chi2 = " << chi2 << ", df = " << df);
  CHECK(chi2 < chi2_999[df]);
}

// One bin per token of positive probability.
std::vector<std::vector<std::int64_t>> token_bins(const std::vector<double>& prob) {
  std::vector<std::vector<std::int64_t>> bins;
  for (std::size_t i = 0; i < prob.size(); ++i) {
    if (prob[i] > 0.0) bins.push_back({static_cast<std::int64_t>(i)});
  }
  return bins;
}

// 16 hand-chosen logits spread over [-2.1, 2.4], two of them tied (1.2) and one far below the rest.
const std::vector<float> small_logits = {0.3f, -1.0f, 1.2f, 2.4f, -0.4f, 1.2f, 0.0f, -2.1f,
                                         0.9f, 1.7f,  -0.2f, 0.5f, -1.5f, 2.0f, -6.0f, 0.7f};

SamplingParams params_with(double t, std::int64_t k = -1, double top_p = 1.0, double min_p = 0.0) {
  SamplingParams p;
  p.temperature = t;
  p.top_k = k;
  p.top_p = top_p;
  p.min_p = min_p;
  return p;
}

}  // namespace

TEST_CASE("sampling_uniform: Philox4x32-10 known answers (Random123 kat_vectors) and ATen's Philox4_32",
          "[rollout][sampler]") {
  using verl::rollout::detail::philox4x32_10;
  using A4 = std::array<std::uint32_t, 4>;
  CHECK(philox4x32_10({0, 0, 0, 0}, {0, 0}) == A4{0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u});
  CHECK(philox4x32_10({~0u, ~0u, ~0u, ~0u}, {~0u, ~0u}) == A4{0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu});
  CHECK(philox4x32_10({0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u}, {0xa4093822u, 0x299f31d0u}) ==
        A4{0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u});
  for (const std::uint64_t seed : {0ull, 42ull, 0x123456789abcdefull}) {
    for (const std::int64_t step : {0ll, 1ll, 77ll, (1ll << 40) + 3}) {
      at::Philox4_32 engine(seed, 0, static_cast<std::uint64_t>(step));
      const std::uint64_t w0 = engine(), w1 = engine();
      const double want = static_cast<double>((w0 << 32 | w1) >> 11) * 0x1.0p-53;
      CHECK(verl::rollout::sampling_uniform(seed, step) == want);
    }
  }
}

TEST_CASE("exp_nonpositive (verl/core/fast_exp.hpp, the sampler's and short attention's exp) is within 2 ulp of "
          "std::exp on [-87, 0], 0 below and for NaN", "[rollout][sampler]") {
  for (float x = 0.0f; x > -87.0f; x -= 0.0137f) {
    const float got = verl::detail::exp_nonpositive(x);
    const double want = std::exp(static_cast<double>(x));
    INFO("x = " << x);
    REQUIRE(std::abs(got - want) <= 2.5 * std::numeric_limits<float>::epsilon() * want);
  }
  CHECK(verl::detail::exp_nonpositive(-88.0f) == 0.0f);
  CHECK(verl::detail::exp_nonpositive(-std::numeric_limits<float>::infinity()) == 0.0f);
  CHECK(verl::detail::exp_nonpositive(0.0f) == 1.0f);
  CHECK(verl::detail::exp_nonpositive(std::numeric_limits<float>::quiet_NaN()) == 0.0f);
  // The sampler reaches the same function through its own namespace.
  CHECK(verl::rollout::detail::exp_nonpositive(-1.5f) == verl::detail::exp_nonpositive(-1.5f));
}

TEST_CASE("temperature sampling fits softmax(l / T) (chi-square, T = 0.7, 1, 1.5)", "[rollout][sampler]") {
  for (const double t : {0.7, 1.0, 1.5}) {
    INFO("T = " << t);
    const auto p = params_with(t);
    const auto prob = reference_probs(small_logits, p);
    auto bins = token_bins(prob);
    // Token 14 (logit -6) is too rare for its own bin (expected < 5): pooled with token 7 (logit -2.1).
    bins.erase(std::remove(bins.begin(), bins.end(), std::vector<std::int64_t>{14}), bins.end());
    for (auto& b : bins) {
      if (b[0] == 7) b.push_back(14);
    }
    check_fit(draw(small_logits, p, 20000, 1234 + static_cast<std::uint64_t>(t * 10)), prob, bins);
  }
  // A large vocabulary walks the blocked inverse CDF across many blocks: V = 5000 random logits, binned by
  // id ranges of 250.
  std::mt19937 gen(7);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> big(5000);
  for (auto& x : big) x = normal(gen);
  const auto p = params_with(1.3);
  const auto prob = reference_probs(big, p);
  std::vector<std::vector<std::int64_t>> bins(20);
  for (std::int64_t i = 0; i < 5000; ++i) bins[static_cast<std::size_t>(i / 250)].push_back(i);
  check_fit(draw(big, p, 20000, 99), prob, bins);
}

TEST_CASE("top-k, top-p, min-p and their combination fit the definition, filtered tokens never drawn",
          "[rollout][sampler]") {
  struct Case {
    const char* name;
    SamplingParams p;
  };
  const std::vector<Case> cases = {
      {"top-k 5", params_with(1.0, 5)},
      {"top-k 3, T 0.8", params_with(0.8, 3)},
      {"top-k 4: the tied 1.2 pair sits at ranks 4-5, both kept", params_with(1.0, 4)},
      {"top-p 0.8", params_with(1.0, -1, 0.8)},
      {"top-p 0.5, T 1.5", params_with(1.5, -1, 0.5)},
      {"min-p 0.2", params_with(1.0, -1, 1.0, 0.2)},
      {"min-p 0.05, T 0.7", params_with(0.7, -1, 1.0, 0.05)},
      {"T 1.2 + min-p 0.1 + top-k 8 + top-p 0.9", params_with(1.2, 8, 0.9, 0.1)},
      {"top-k 10 + top-p 0.6", params_with(1.0, 10, 0.6)},
  };
  std::uint64_t seed = 500;
  for (const auto& c : cases) {
    INFO(c.name);
    const auto prob = reference_probs(small_logits, c.p);
    const auto bins = token_bins(prob);
    if (bins.size() < 2) continue;
    check_fit(draw(small_logits, c.p, 20000, seed++), prob, bins);
  }
  // Hand-derived sets. top-k 5 of small_logits: 2.4 (id 3), 2.0 (13), 1.7 (9), 1.2 (2), 1.2 (5) -> exactly
  // those; top-k 4 ends on the tied 1.2 pair, so both tied tokens are kept (5 tokens, vLLM's `z < kth` mask).
  for (const std::int64_t k : {4, 5}) {
    const auto got = draw(small_logits, params_with(1.0, k), 3000, 7);
    for (const auto t : got) CHECK((t == 3 || t == 13 || t == 9 || t == 2 || t == 5));
    CHECK(std::count(got.begin(), got.end(), 5) > 0);
    CHECK(std::count(got.begin(), got.end(), 2) > 0);
  }
  // top-p on a uniform distribution over 1000 tokens keeps the lowest ids first (ties by id): mass 0.3004
  // needs ceil(300.4) = 301 tokens, ids 0..300. The 301 equal-probability ids are binned 43 by 43.
  {
    const std::vector<float> flat(1000, 0.25f);
    const auto p = params_with(1.0, -1, 0.3004);
    const auto prob = reference_probs(flat, p);
    REQUIRE(prob[300] > 0.0);
    REQUIRE(prob[301] == 0.0);
    std::vector<std::vector<std::int64_t>> bins(7);
    for (std::int64_t i = 0; i <= 300; ++i) bins[static_cast<std::size_t>(i / 43)].push_back(i);
    check_fit(draw(flat, p, 20000, 31), prob, bins);
  }
}

TEST_CASE("penalties: hand-derived, repetition once per distinct token, frequency/presence on output only",
          "[rollout][sampler]") {
  // logits  [2, -1, 0.5, 3, -2, 1]; prompt [0, 0, 4]; output [3, 3, 1]; repetition 2, frequency 0.5,
  // presence 0.25. Repetition over the distinct tokens {0, 4, 3, 1}: 2/2 = 1, -2*2 = -4, 3/2 = 1.5,
  // -1*2 = -2 (token 0 twice in the prompt is still divided once). Then the output counts {3: 2, 1: 1}:
  // token 3: 1.5 - 0.5*2 - 0.25 = 0.25; token 1: -2 - 0.5*1 - 0.25 = -2.75. Tokens 2, 5 untouched.
  // Penalised: [1, -2.75, 0.5, 0.25, -4, 1]: greedy ties between 0 and 5 -> 0 (lowest id).
  SamplingParams p = params_with(0.0);
  p.repetition_penalty = 2.0;
  p.frequency_penalty = 0.5;
  p.presence_penalty = 0.25;
  const Ids prompt = {0, 0, 4}, output = {3, 3, 1};
  auto logits = torch::tensor({2.0f, -1.0f, 0.5f, 3.0f, -2.0f, 1.0f}).reshape({1, 6});  // (1,6)
  const std::vector<SamplingRow> rows = {{&p, 1, 3, prompt, output}};
  const auto out = verl::rollout::sample(logits, rows, true);
  CHECK(out.tokens == Ids{0});
  // Greedy rows are left holding their penalised logits (sample() works in place).
  CHECK(torch::equal(logits, torch::tensor({1.0f, -2.75f, 0.5f, 0.25f, -4.0f, 1.0f}).reshape({1, 6})));
  // The log-prob is of the UNPENALISED row at T = 1: log_softmax([2, -1, 0.5, 3, -2, 1])[0].
  const auto raw = torch::tensor({2.0f, -1.0f, 0.5f, 3.0f, -2.0f, 1.0f});
  CHECK(out.log_probs[0] == Approx(torch::log_softmax(raw, 0)[0].item<float>()).margin(1e-6));

  // Frequency and presence ignore prompt tokens: prompt [3] alone with f = q = 2 changes nothing, so the
  // raw argmax 3 wins; with output [3] it becomes 3 - 2 - 2 = -1 and token 0 (2) wins.
  SamplingParams fq = params_with(0.0);
  fq.frequency_penalty = 2.0;
  fq.presence_penalty = 2.0;
  const Ids only3 = {3};
  auto l2 = raw.reshape({1, 6}).repeat({2, 1}).contiguous();  // (2,6)
  const std::vector<SamplingRow> rows2 = {{&fq, 0, 0, only3, {}}, {&fq, 0, 0, {}, only3}};
  CHECK(verl::rollout::sample(l2, rows2, false).tokens == Ids{3, 0});
  CHECK(l2[0].equal(raw));
  CHECK(l2[1][3].item<float>() == -1.0f);

  // Repetition penalty multiplies negative logits and divides positive ones; frequency counts repeats:
  // output [1, 1, 1] with f = 0.5 (q = 0): -1 - 1.5 = -2.5.
  SamplingParams f_only = params_with(0.0);
  f_only.frequency_penalty = 0.5;
  const Ids ones = {1, 1, 1};
  auto l3 = raw.reshape({1, 6}).clone();  // (1,6)
  const std::vector<SamplingRow> rows3 = {{&f_only, 0, 0, {}, ones}};
  (void)verl::rollout::sample(l3, rows3, false);
  CHECK(l3[0][1].item<float>() == -2.5f);
  CHECK(l3[0][0].item<float>() == 2.0f);

  // A penalty on a random row changes its distribution: repetition 1e3 on the only likely token removes it
  // in practice. Logits [10, 0, 0, 0]: unpenalised, token 0 has p = 1 - 3e-5·(...) ~ 0.99986; penalised
  // 10 / 1000 = 0.01, nearly uniform.
  SamplingParams strong = params_with(1.0);
  strong.repetition_penalty = 1000.0;
  const Ids zero = {0};
  const std::vector<float> peaked = {10.0f, 0.0f, 0.0f, 0.0f};
  auto l4 = torch::tensor(peaked).reshape({1, 4}).repeat({4000, 1}).contiguous();  // (4000,4)
  std::vector<SamplingRow> rows4(4000, SamplingRow{&strong, 5, 0, zero, {}});
  for (std::int64_t i = 0; i < 4000; ++i) rows4[i].step = i;
  const auto got = verl::rollout::sample(l4, rows4, false).tokens;
  const auto zeros = std::count(got.begin(), got.end(), 0);
  CHECK(zeros > 800);  // expected ~ 4000 * e^0.01 / (e^0.01 + 3) ~ 1008
  CHECK(zeros < 1250);
}

TEST_CASE("greedy: argmax with ties to the lowest id, no randomness", "[rollout][sampler]") {
  const SamplingParams p = params_with(0.0);
  auto logits = torch::tensor({1.0f, 5.0f, 5.0f, 2.0f, 5.0f, 1.0f, 2.0f, 3.0f, 4.0f, 0.0f, 1.0f, -1.0f, 3.0f,
                               4.0f, 2.0f, 1.0f, 4.0f, 3.0f, 0.0f, 5.0f, 1.0f})
                    .reshape({1, 21});  // (1,21)
  const std::vector<SamplingRow> rows = {{&p, 1, 0, {}, {}}, {&p, 2, 9, {}, {}}};
  auto two = logits.repeat({2, 1}).contiguous();  // (2,21)
  CHECK(verl::rollout::sample(two, rows, false).tokens == Ids{1, 1});
}

TEST_CASE("log_probs equal at::log_softmax(logits / T) at the drawn token, with penalties and filters on",
          "[rollout][sampler]") {
  torch::manual_seed(3);
  const std::int64_t v = 3000;
  const auto logits = torch::randn({9, v}) * 4.0f;  // (9,V)
  std::vector<SamplingParams> ps = {params_with(0.0),      params_with(1.0),           params_with(0.7),
                                    params_with(1.3, 40),  params_with(0.9, -1, 0.8),  params_with(1.1, -1, 1.0, 0.05),
                                    params_with(0.6, 20, 0.9, 0.02), params_with(0.0), params_with(1.0, 1)};
  ps[6].repetition_penalty = 1.3;
  ps[6].frequency_penalty = 0.4;
  ps[6].presence_penalty = -0.3;
  ps[7].repetition_penalty = 1.8;
  ps[2].presence_penalty = 1.5;
  Ids prompt(50), output(30);
  for (std::size_t i = 0; i < prompt.size(); ++i) prompt[i] = static_cast<std::int64_t>((i * 37) % v);
  for (std::size_t i = 0; i < output.size(); ++i) output[i] = static_cast<std::int64_t>((i * 101) % 200);
  // Make the penalised tokens likely, so that draws land on them and their unpenalised logit is used.
  auto work = logits.clone();  // (9,V)
  for (const auto t : output) work.select(1, t).add_(12.0f);
  const auto reference = work.clone();  // (9,V)
  std::vector<SamplingRow> rows;
  for (std::size_t r = 0; r < ps.size(); ++r) rows.push_back({&ps[r], 11 + r, 4, prompt, output});
  int drew_penalised = 0;  // draws of a penalised token by a row with penalties
  for (int repeat = 0; repeat < 5; ++repeat) {
    for (auto& row : rows) row.step = repeat;
    auto input = reference.clone();  // (9,V)
    const auto out = verl::rollout::sample(input, rows, true);
    REQUIRE(out.log_probs.size() == ps.size());
    for (std::size_t r = 0; r < ps.size(); ++r) {
      const double t = ps[r].greedy() ? 1.0 : ps[r].temperature;
      const auto lsm = torch::log_softmax(reference[static_cast<std::int64_t>(r)] / t, 0);  // (V,)
      const float want = lsm[out.tokens[r]].item<float>();
      INFO("row " << r << " token " << out.tokens[r] << " want " << want << " got " << out.log_probs[r]);
      CHECK(std::abs(out.log_probs[r] - want) <= 1e-6f * std::max(1.0f, std::abs(want)));
      const bool in_output = std::find(output.begin(), output.end(), out.tokens[r]) != output.end();
      if (in_output && (r == 2 || r == 6 || r == 7)) ++drew_penalised;
    }
  }
  INFO("drew_penalised = " << drew_penalised);
  CHECK(drew_penalised >= 4);  // the unpenalised-logit path is exercised
}

TEST_CASE("batch invariance: a row alone or among 7 random rows draws the same tokens, seeds matter",
          "[rollout][sampler]") {
  const std::int64_t v = 4096, steps = 40;
  std::vector<SamplingParams> ps = {params_with(1.0),          params_with(0.8, 50),      params_with(1.0, -1, 0.9),
                                    params_with(1.1, 30, 0.95, 0.01), params_with(0.0),   params_with(2.0),
                                    params_with(0.5, -1, 1.0, 0.1),   params_with(0.9, 5)};
  ps[3].repetition_penalty = 1.2;
  ps[3].frequency_penalty = 0.3;
  for (std::size_t target = 0; target < ps.size(); ++target) {
    if (ps[target].greedy()) continue;
    INFO("params " << target);
    torch::manual_seed(static_cast<std::uint64_t>(target));
    const auto seq_logits = torch::randn({steps, v}) * 2.0f;  // (steps,V): the target's logits per step
    Ids alone, batched;
    std::vector<float> lp_alone, lp_batched;
    for (std::int64_t s = 0; s < steps; ++s) {
      auto one = seq_logits[s].reshape({1, v}).clone();  // (1,V)
      const std::vector<SamplingRow> row = {{&ps[target], 77, s, {}, alone}};
      const auto o = verl::rollout::sample(one, row, true);
      alone.push_back(o.tokens[0]);
      lp_alone.push_back(o.log_probs[0]);
      // The same row at position 3 of 8, the others random with other params, seeds and steps.
      auto batch = torch::randn({8, v}) * 3.0f;  // (8,V)
      batch[3].copy_(seq_logits[s]);
      std::vector<SamplingRow> rows;
      for (std::size_t r = 0; r < 8; ++r) rows.push_back({&ps[(target + r + 5) % ps.size()], 1000 + r, s * 3 + 1, {}, {}});
      rows[3] = {&ps[target], 77, s, {}, batched};
      const auto b = verl::rollout::sample(batch, rows, true);
      batched.push_back(b.tokens[3]);
      lp_batched.push_back(b.log_probs[3]);
    }
    CHECK(alone == batched);
    CHECK(lp_alone == lp_batched);
    // A second seed gives a different sequence (40 draws from a spread-out distribution).
    Ids other;
    for (std::int64_t s = 0; s < steps; ++s) {
      auto one = seq_logits[s].reshape({1, v}).clone();  // (1,V)
      const std::vector<SamplingRow> row = {{&ps[target], 78, s, {}, other}};
      other.push_back(verl::rollout::sample(one, row, false).tokens[0]);
    }
    CHECK(other != alone);
  }
  // Large batches run rows on several threads: 256 copies of one row with one seed/step agree.
  const auto p = params_with(1.0, -1, 0.95);
  auto many = (torch::randn({1, v}) * 2.0f).repeat({256, 1}).contiguous();  // (256,V)
  const std::vector<SamplingRow> rows(256, SamplingRow{&p, 5, 9, {}, {}});
  const auto out = verl::rollout::sample(many, rows, false);
  CHECK(std::all_of(out.tokens.begin(), out.tokens.end(), [&](auto t) { return t == out.tokens[0]; }));
}

TEST_CASE("sample: errors name the problem", "[rollout][sampler]") {
  using verl::test::error_of;
  const auto p = params_with(1.0);
  const std::vector<SamplingRow> one = {{&p, 0, 0, {}, {}}};
  CHECK_THAT(error_of<verl::ShapeError>([&] { (void)verl::rollout::sample(torch::zeros({4}), one, false); }),
             Catch::Contains("(S,V)"));
  CHECK_THAT(error_of<verl::ShapeError>(
                 [&] { (void)verl::rollout::sample(torch::zeros({1, 4}, torch::kFloat64), one, false); }),
             Catch::Contains("expected float32"));
  CHECK_THAT(error_of<verl::ShapeError>([&] { (void)verl::rollout::sample(torch::zeros({4, 2}).t(), one, false); }),
             Catch::Contains("contiguous"));
  CHECK_THAT(error_of<verl::ShapeError>([&] { (void)verl::rollout::sample(torch::zeros({2, 4}), one, false); }),
             Catch::Contains("2 rows but 1 SamplingRows"));
  const std::vector<SamplingRow> null_row = {{nullptr, 0, 0, {}, {}}};
  CHECK_THAT(error_of<verl::ConfigError>([&] { (void)verl::rollout::sample(torch::zeros({1, 4}), null_row, false); }),
             Catch::Contains("rows[0].params is null"));
  const auto bad = params_with(1.0, -1, 0.0);
  const std::vector<SamplingRow> bad_row = {{&bad, 0, 0, {}, {}}};
  CHECK_THAT(error_of<verl::ConfigError>([&] { (void)verl::rollout::sample(torch::zeros({1, 4}), bad_row, false); }),
             Catch::Contains("top_p"));
  const Ids out_of_range = {1, 4};
  const std::vector<SamplingRow> oor = {{&p, 0, 0, {}, out_of_range}};
  CHECK_THAT(error_of<verl::ShapeError>([&] { (void)verl::rollout::sample(torch::zeros({1, 4}), oor, false); }),
             Catch::Contains("rows[0].output_tokens[1] = 4, expected a token id in [0, V = 4)"));
  const float inf = std::numeric_limits<float>::infinity();
  CHECK_THAT(error_of<verl::InputError>(
                 [&] { (void)verl::rollout::sample(torch::full({1, 4}, -inf), one, false); }),
             Catch::Contains("row 0 has no finite probability mass"));
  // -inf entries (a masked vocabulary tail) are fine and never drawn.
  auto masked = torch::tensor({0.0f, -inf, 0.0f, -inf}).reshape({1, 4}).repeat({200, 1}).contiguous();  // (200,4)
  std::vector<SamplingRow> rows(200, SamplingRow{&p, 3, 0, {}, {}});
  for (std::int64_t i = 0; i < 200; ++i) rows[i].step = i;
  for (const auto t : verl::rollout::sample(masked, rows, false).tokens) CHECK((t == 0 || t == 2));
}

// ---------------------------------------------------------------------------------------------------------
// Stop strings.

namespace {

// A hand-made vocabulary whose decode concatenates the pieces' bytes and decodes them as UTF-8 with
// replacement (as byte-level BPE does). Pieces split multi-byte characters: é = C3 A9, € = E2 82 AC.
const std::vector<std::string> vocab = {"Hel", "lo", " wor", "ld", "</", "s>", "x</s>y", "", "\xC3", "\xA9",
                                        "\xE2\x82", "\xAC", "\xC3\xA9!", "a", "b", "!", "\xE2", "\x82\xAC"};

std::string vocab_decode(std::span<const std::int64_t> ids) {
  std::string bytes;
  for (const auto id : ids) bytes += vocab[static_cast<std::size_t>(id)];
  return verl::detail::utf8::lossy(bytes);
}

// The first prefix length (1-based) whose full decode contains a stop string, or 0.
std::size_t first_stop_by_full_decode(const Ids& ids, const std::vector<std::string>& stops,
                                      const std::function<std::string(std::span<const std::int64_t>)>& decode) {
  for (std::size_t n = 1; n <= ids.size(); ++n) {
    const auto text = decode(std::span<const std::int64_t>(ids).first(n));
    for (const auto& s : stops) {
      if (text.find(s) != std::string::npos) return n;
    }
  }
  return 0;
}

std::size_t first_stop_by_matcher(const Ids& ids, const verl::rollout::StopStringMatcher& m) {
  for (std::size_t n = 1; n <= ids.size(); ++n) {
    if (m.completes_stop(std::span<const std::int64_t>(ids).first(n))) return n;
  }
  return 0;
}

}  // namespace

TEST_CASE("StopStringMatcher: hand cases (spanning tokens, inside one token, split UTF-8, empty tokens)",
          "[rollout][stop]") {
  const verl::rollout::StopStringMatcher m({"</s>", "é!", "€"}, vocab_decode);
  CHECK_FALSE(m.empty());
  auto at = [&](const Ids& ids) { return first_stop_by_matcher(ids, m); };
  CHECK(at({0, 1, 2, 3, 4, 5, 13}) == 6);        // "Hello world</s>": "</" + "s>" completes at token 6
  CHECK(at({0, 6, 1}) == 2);                     // "x</s>y" holds the stop inside one token
  CHECK(at({13, 8, 9, 13}) == 0);                // "aéa": é split over two tokens, no "é!"
  CHECK(at({13, 8, 9, 15}) == 4);                // "aé!" completes with "!"
  CHECK(at({13, 12}) == 2);                      // "é!" inside one token
  CHECK(at({10, 7, 7, 7, 11}) == 5);             // "€" split as E2 82 | AC with empty tokens between
  CHECK(at({16, 17}) == 2);                      // "€" split as E2 | 82 AC
  // 40 empty tokens between "</" and "s>": the tail grows past them.
  Ids with_empties = {0, 4};
  with_empties.insert(with_empties.end(), 40, 7);
  with_empties.push_back(5);
  CHECK(at(with_empties) == 43);
  const verl::rollout::StopStringMatcher none({}, nullptr);
  CHECK(none.empty());
  CHECK_FALSE(none.completes_stop(Ids{4, 5}));
  CHECK_THAT(verl::test::error_of<verl::ConfigError>([] { verl::rollout::StopStringMatcher bad({""}, vocab_decode); }),
             Catch::Contains("stop string 0 is empty"));
}

TEST_CASE("StopStringMatcher agrees with a full decode of every prefix on random token streams", "[rollout][stop]") {
  // Stops include U+FFFD itself (what a tail starting mid-character decodes to, and what the full text shows
  // for a genuinely broken character), a multi-byte character, and a long string.
  const std::vector<std::string> stops = {"\xEF\xBF\xBD!", "é!", "</s>", "worldHello", "ab\xE2\x82\xAC"};
  const verl::rollout::StopStringMatcher m(stops, vocab_decode);
  std::mt19937 gen(11);
  std::uniform_int_distribution<std::int64_t> pick(0, static_cast<std::int64_t>(vocab.size()) - 1);
  std::size_t found = 0;
  for (int trial = 0; trial < 600; ++trial) {
    Ids ids(static_cast<std::size_t>(5 + trial % 120));
    for (auto& id : ids) id = pick(gen);
    const auto want = first_stop_by_full_decode(ids, stops, vocab_decode);
    INFO("trial " << trial);
    CHECK(first_stop_by_matcher(ids, m) == want);
    found += want != 0;
  }
  CHECK(found > 100);  // the streams do hit the stops
}

TEST_CASE("StopStringMatcher with the byte-level BPE fixture's decode (HFTokenizer)", "[rollout][stop]") {
  // tiny_bpe plus two byte-level tokens: "Ã" (byte C3) = 11 and "©" (byte A9) = 12, so é is split.
  std::ifstream in(std::string(VERL_GOLDEN_DIR) + "/../fixtures/tokenizers/tiny_bpe/tokenizer.json");
  auto j = nlohmann::json::parse(in);
  j["model"]["vocab"]["\xC3\x83"] = 11;  // "Ã" (U+00C3) is byte 0xC3 in the byte-level alphabet
  j["model"]["vocab"]["\xC2\xA9"] = 12;  // "©" (U+00A9) is byte 0xA9
  const auto tok = verl::HFTokenizer::from_json_string(j.dump());
  auto decode = [&](std::span<const std::int64_t> ids) { return tok.decode(ids); };
  REQUIRE(decode(Ids{11, 12}) == "\xC3\xA9");
  REQUIRE(decode(Ids{11}) == "\xEF\xBF\xBD");
  const std::vector<std::string> stops = {"c é", "ab<|eos|>"};  // the second can never appear: eos is skipped
  const verl::rollout::StopStringMatcher m(stops, decode);
  // vocab: a=0 b=1 c=2 Ġ=3 ab=4 abc=5 Ġa=6 bc=7 <|eos|>=8 (special, decodes to "") <|pad|>=9 <m>=10
  CHECK(first_stop_by_matcher(Ids{5, 3, 11, 12}, m) == 4);        // "abc" " " C3 | A9
  CHECK(first_stop_by_matcher(Ids{5, 3, 11, 8, 8, 12}, m) == 6);  // specials in between decode to ""
  CHECK(first_stop_by_matcher(Ids{4, 8, 0, 3, 11}, m) == 0);
  std::mt19937 gen(5);
  std::uniform_int_distribution<std::int64_t> pick(0, 12);
  for (int trial = 0; trial < 200; ++trial) {
    Ids ids(static_cast<std::size_t>(10 + trial % 60));
    for (auto& id : ids) id = pick(gen);
    INFO("trial " << trial);
    CHECK(first_stop_by_matcher(ids, m) == first_stop_by_full_decode(ids, stops, decode));
  }
}

}  // namespace test_sampler
