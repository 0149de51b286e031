// verl::core_algos optimal token baseline (include/verl/algos/optimal_token_baseline.hpp) against verl 0.7.1
// verl/trainer/ppo/core_algos.py (PyPI): golden vectors written by verl itself
// (tests/golden/generate_optimal_token_baseline.py), a hand-worked case, properties, errors, typed estimators.
#include "verl/algos/optimal_token_baseline.hpp"

#include "catch_torch.hpp"
#include "golden.hpp"

#include <map>
#include <optional>
#include <sstream>
#include <string>

namespace test_optimal_token_baseline {  // one namespace per file: a unity build (tests/CMakeLists.txt) may join files

using namespace verl::core_algos;
using verl::test::GoldenCase;
using verl::test::describe;

namespace {


using OtbFn = verl::AdvantageOutput (*)(const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                        const at::Tensor&, const std::optional<at::Tensor>&, bool, double);

verl::AdvantageOutput call_case(OtbFn fn, const GoldenCase& c) {
  std::optional<at::Tensor> is_w;
  if (c.inputs.count("rollout_is_weights") != 0) is_w = c.input("rollout_is_weights");
  return fn(c.input("token_level_rewards"), c.input("response_mask"), c.input("index"), c.input("old_log_probs"),
            c.input("sum_pi_squared"), is_w, c.config.at("handle_zero_tail").get<bool>(),
            c.config.at("epsilon").get<double>());
}

//! Runs every case of tests/golden/advantages/<file>.json: exact match, or, where verl raised, a verl::Error
//! whose message names `function` and the argument verl tripped over. Returns how many cases ran.
int run_golden(const std::string& file, const std::string& function, OtbFn fn) {
  const auto golden = verl::test::load_golden("advantages/" + file + ".json");
  CHECK_THAT(golden.reference, Catch::Contains("verl 0.7.1"));
  // The argument named in our error, per raising case (verl: IndexError / RuntimeError).
  const std::map<std::string, std::string> culprit = {
      {"short_index", "`index`"}, {"old_log_probs_shape", "`old_log_probs`"}, {"nonbinary_mask", "`response_mask`"}};
  int n = 0;
  for (const auto& c : golden.cases) {
    INFO("case " << c.name);
    if (c.config.contains("raises")) {
      const auto kind = c.name.substr(c.name.find('/') + 1);
      REQUIRE(culprit.count(kind) == 1);
      CHECK_THROWS_AS(call_case(fn, c), verl::Error);
      CHECK_THROWS_WITH(call_case(fn, c), Catch::Contains(function) && Catch::Contains(culprit.at(kind)));
    } else {
      const auto out = call_case(fn, c);
      INFO(describe(c, out.advantages, c.output("advantages")));
      CHECK(verl::test::matches_golden(out.advantages, c.output("advantages")));
      INFO(describe(c, out.returns, c.output("returns")));
      CHECK(verl::test::matches_golden(out.returns, c.output("returns")));
    }
    ++n;
  }
  return n;
}

struct Batch {
  at::Tensor rewards, mask, index, logp, sum_pi_sq, is_w;
};

Batch random_batch(std::int64_t groups, std::int64_t per_group, std::int64_t t, at::ScalarType dtype,
                   std::uint64_t seed) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  const std::int64_t b = groups * per_group;
  const auto opts = torch::TensorOptions().dtype(torch::kFloat64);
  Batch x;
  x.rewards = at::randn({b, t}, gen, opts).to(dtype);                                     // (B,T)
  const auto lengths = at::randint(1, t + 1, {b}, gen, torch::TensorOptions().dtype(torch::kLong));  // (B,)
  x.mask = (torch::arange(t).unsqueeze(0) < lengths.unsqueeze(1)).to(torch::kLong);      // (B,T)
  x.index = torch::arange(b).floor_divide(per_group);                                     // (B,)
  const auto pi = at::rand({b, t}, gen, opts) * 0.98 + 0.01;                              // (B,T)
  x.logp = pi.log().to(dtype);                                                            // (B,T)
  x.sum_pi_sq = (pi * pi + at::rand({b, t}, gen, opts) * (1 - pi * pi)).to(dtype);        // (B,T)
  x.is_w = (at::rand({b, t}, gen, opts) + 0.5).to(dtype);                                 // (B,T)
  return x;
}

}  // namespace

// -------------------------------------------------------------------------------------------------------------
// (1) Golden vectors from verl 0.7.1. Every comparison is exact: the same tensor operations in verl's order on
// the same (n,T) / (n, max L) group grids, so float32 and float64 results match to the last bit.

TEST_CASE("Optimal token baseline matches verl 0.7.1 bit for bit", "[algos][advantages][otb][golden]") {
  CHECK(run_golden("optimal_token_baseline", "compute_optimal_token_baseline_advantage",
                   &compute_optimal_token_baseline_advantage) == 14);
}

TEST_CASE("Multi-turn optimal token baseline matches verl 0.7.1 bit for bit", "[algos][advantages][otb][golden]") {
  CHECK(run_golden("multi_turn_optimal_token_baseline", "compute_multi_turn_optimal_token_baseline_advantage",
                   &compute_multi_turn_optimal_token_baseline_advantage) == 16);
}

// -------------------------------------------------------------------------------------------------------------
// (2) Hand-worked case.

TEST_CASE("Optimal token baseline by hand: two trajectories, an interior gap", "[algos][advantages][otb]") {
  // old_log_probs = 0, so pi = 1 and w_t = 1 - 2 + s_t = s_t - 1; epsilon = 0; one group of two rows.
  //   row 0: r = [0, 0, 1], m = [1, 1, 1], s = [2, 2, 2] -> w = [1, 1, 1], W = [1, 2, 3], G = [1, 1, 1]
  //   row 1: r = [0, 5, 3], m = [1, 0, 1], s = [3, 2, 9] -> w = [2, 1, 8], w*m = [2, 0, 8], W = [2, 2, 10],
  //          r*m = [0, 0, 3], G = [3, 3, 3]
  // Single-turn, B_t = sum_i G W m / sum_i W m on the full grid:
  //   t0: (1*1 + 3*2) / (1 + 2) = 7/3;  t1: (1*2 + 0) / (2 + 0) = 1;  t2: (1*3 + 3*10) / (3 + 10) = 33/13.
  //   Lengths 3 and 2: row 0 is the unique longest, so with handle_zero_tail its baseline is 0 from t = 2.
  //   A row 0 = [1 - 7/3, 1 - 1, 1 - 0] = [-4/3, 0, 1];  A row 1 = [3 - 7/3, 0 (masked), 3 - 33/13].
  // Multi-turn compacts row 1 to its valid tokens: W' = [2, 10], G' = [3, 3]; row 0 unchanged:
  //   k0: (1*1 + 3*2) / 3 = 7/3;  k1: (1*2 + 3*10) / (2 + 10) = 8/3;  k2: (1*3 + 0) / 3 = 1 (zeroed for row 0).
  //   A row 0 = [1 - 7/3, 1 - 8/3, 1];  row 1 scattered back to t = 0, 2: [3 - 7/3, 0, 3 - 8/3].
  const auto r = torch::tensor({{0.0, 0.0, 1.0}, {0.0, 5.0, 3.0}}, torch::kFloat64);  // (2,3)
  const auto m = torch::tensor({{1, 1, 1}, {1, 0, 1}});                                 // (2,3)
  const auto idx = torch::tensor({5, 5});                                               // (2,)
  const auto logp = torch::zeros({2, 3}, torch::kFloat64);                              // (2,3)
  const auto s = torch::tensor({{2.0, 2.0, 2.0}, {3.0, 2.0, 9.0}}, torch::kFloat64);    // (2,3)
  const auto returns = torch::tensor({{1.0, 1.0, 1.0}, {3.0, 3.0, 3.0}}, torch::kFloat64);

  const auto single = compute_optimal_token_baseline_advantage(r, m, idx, logp, s, std::nullopt, true, 0.0);
  CHECK(verl::test::bit_identical(single.returns, returns));
  CHECK(verl::test::bit_identical(single.advantages, torch::tensor({{1.0 - 7.0 / 3.0, 0.0, 1.0}, {3.0 - 7.0 / 3.0, 0.0, 3.0 - 33.0 / 13.0}},
                                                   torch::kFloat64)));
  const auto multi = compute_multi_turn_optimal_token_baseline_advantage(r, m, idx, logp, s, std::nullopt, true, 0.0);
  CHECK(verl::test::bit_identical(multi.returns, returns));
  CHECK(verl::test::bit_identical(multi.advantages, torch::tensor({{1.0 - 7.0 / 3.0, 1.0 - 8.0 / 3.0, 1.0},
                                                   {3.0 - 7.0 / 3.0, 0.0, 3.0 - 8.0 / 3.0}}, torch::kFloat64)));
  // Without handle_zero_tail, row 0 keeps the group baseline at t = 2.
  const auto no_tail = compute_optimal_token_baseline_advantage(r, m, idx, logp, s, std::nullopt, false, 0.0);
  CHECK(no_tail.advantages[0][2].item<double>() == 1.0 - 33.0 / 13.0);
  // IS weights of 1 change nothing.
  CHECK(verl::test::bit_identical(compute_optimal_token_baseline_advantage(r, m, idx, logp, s, torch::ones_like(r), true, 0.0).advantages,
                  single.advantages));
}

// -------------------------------------------------------------------------------------------------------------
// (3) Properties.

TEST_CASE("Optimal token baseline: singletons keep the return, no gaps makes both variants agree",
          "[algos][advantages][otb]") {
  const auto x = random_batch(4, 3, 7, torch::kFloat64, 11);
  // Singleton groups: advantages = returns * mask.
  const auto alone = torch::arange(x.rewards.size(0));
  for (auto* fn : {&compute_optimal_token_baseline_advantage, &compute_multi_turn_optimal_token_baseline_advantage}) {
    const auto out = fn(x.rewards, x.mask, alone, x.logp, x.sum_pi_sq, x.is_w, true, 1e-8);
    CHECK(verl::test::bit_identical(out.advantages, out.returns * x.mask));
  }
  // Right-padded masks (no interior gaps): compaction is the identity on valid tokens, so both agree where the
  // mask is 1 (the multi-turn sums run over an (n, max L) grid rather than (n, T): close, not identical).
  const auto a = compute_optimal_token_baseline_advantage(x.rewards, x.mask, x.index, x.logp, x.sum_pi_sq, x.is_w);
  const auto b =
      compute_multi_turn_optimal_token_baseline_advantage(x.rewards, x.mask, x.index, x.logp, x.sum_pi_sq, x.is_w);
  CHECK(torch::allclose(a.advantages, b.advantages, 1e-12, 1e-12));
  CHECK(verl::test::bit_identical(a.returns, b.returns));
  // Masked positions are zero.
  CHECK(verl::test::bit_identical(a.advantages * (1 - x.mask), torch::zeros_like(a.advantages)));
  CHECK(verl::test::bit_identical(b.advantages * (1 - x.mask), torch::zeros_like(b.advantages)));
}

TEST_CASE("Optimal token baseline: float32 and float64 agree", "[algos][advantages][otb]") {
  const auto x = random_batch(3, 4, 9, torch::kFloat64, 29);
  const auto f = [](const at::Tensor& t) { return t.to(torch::kFloat32); };
  for (auto* fn : {&compute_optimal_token_baseline_advantage, &compute_multi_turn_optimal_token_baseline_advantage}) {
    const auto d = fn(x.rewards, x.mask, x.index, x.logp, x.sum_pi_sq, x.is_w, true, 1e-8);
    const auto s = fn(f(x.rewards), x.mask, x.index, f(x.logp), f(x.sum_pi_sq), f(x.is_w), true, 1e-8);
    CHECK(s.advantages.scalar_type() == torch::kFloat32);
    CHECK(torch::allclose(s.advantages.to(torch::kFloat64), d.advantages, 1e-4, 1e-4));
  }
}

// -------------------------------------------------------------------------------------------------------------
// (4) Errors.

TEST_CASE("Optimal token baseline rejects bad inputs naming function and argument", "[algos][advantages][otb]") {
  const auto x = random_batch(2, 2, 3, torch::kFloat32, 5);
  CHECK_THROWS_WITH(compute_optimal_token_baseline_advantage(x.rewards, x.mask, x.index, x.logp.to(torch::kFloat64),
                                                             x.sum_pi_sq),
                    Catch::Contains("compute_optimal_token_baseline_advantage") && Catch::Contains("`old_log_probs`"));
  CHECK_THROWS_AS(compute_optimal_token_baseline_advantage(x.rewards, x.mask, x.index, x.logp,
                                                           x.sum_pi_sq.slice(1, 0, 2)),
                  verl::ShapeError);
  CHECK_THROWS_WITH(compute_multi_turn_optimal_token_baseline_advantage(x.rewards, x.mask, x.index, x.logp,
                                                                        x.sum_pi_sq, x.is_w.slice(0, 0, 3)),
                    Catch::Contains("compute_multi_turn_optimal_token_baseline_advantage") &&
                        Catch::Contains("`rollout_is_weights`"));
  CHECK_THROWS_WITH(compute_multi_turn_optimal_token_baseline_advantage(x.rewards, x.mask, x.index.slice(0, 0, 3),
                                                                        x.logp, x.sum_pi_sq),
                    Catch::Contains("`index`"));
  auto half = x.mask.to(torch::kFloat32);
  half[0][0] = 0.5;
  CHECK_THROWS_AS(compute_multi_turn_optimal_token_baseline_advantage(x.rewards, half, x.index, x.logp, x.sum_pi_sq),
                  verl::InputError);
}

// -------------------------------------------------------------------------------------------------------------
// Typed policies.

TEST_CASE("OTB estimators take old log-probs and sum pi^2 in their own compute overload", "[algos][advantages][otb]") {
  using verl::estimators::MultiTurnOptimalTokenBaseline;
  using verl::estimators::OptimalTokenBaseline;
  static_assert(OptimalTokenBaseline::name == "optimal_token_baseline");
  static_assert(MultiTurnOptimalTokenBaseline::name == "tir_optimal_token_baseline");
  static_assert(OptimalTokenBaseline::needs_groups && !OptimalTokenBaseline::needs_critic);
  static_assert(!verl::AdvantageEstimator<OptimalTokenBaseline>);  // AdvantageInputs lacks their inputs
  const auto x = random_batch(3, 3, 5, torch::kFloat32, 7);
  verl::AdvantageInputs in{.token_level_rewards = x.rewards, .response_mask = x.mask, .index = x.index};
  in.validate();
  CHECK(verl::test::bit_identical(OptimalTokenBaseline{.handle_zero_tail = false}.compute(in, x.logp, x.sum_pi_sq, x.is_w).advantages,
                  compute_optimal_token_baseline_advantage(x.rewards, x.mask, x.index, x.logp, x.sum_pi_sq, x.is_w,
                                                           false)
                      .advantages));
  CHECK(verl::test::bit_identical(MultiTurnOptimalTokenBaseline{}.compute(in, x.logp, x.sum_pi_sq).advantages,
                  compute_multi_turn_optimal_token_baseline_advantage(x.rewards, x.mask, x.index, x.logp,
                                                                      x.sum_pi_sq)
                      .advantages));
  in.index.reset();
  CHECK_THROWS_WITH(OptimalTokenBaseline{}.compute(in, x.logp, x.sum_pi_sq), Catch::Contains("AdvantageInputs::index"));
}

}  // namespace test_optimal_token_baseline
