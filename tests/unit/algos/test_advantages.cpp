// verl::core_algos advantage estimators (include/verl/algos/advantages.hpp) against verl 0.7.1
// verl/trainer/ppo/core_algos.py (PyPI): golden vectors written by verl itself
// (tests/golden/generate_advantages.py), hand-worked cases, properties, float32/float64 agreement, errors.
#include "verl/algos/advantages.hpp"

#include "catch_torch.hpp"
#include "golden.hpp"

#include <string>

namespace test_advantages {  // one namespace per file: a unity build (tests/CMakeLists.txt) may join files

using namespace verl::core_algos;
using verl::test::GoldenCase;
using verl::test::describe;

namespace {


void check_outputs(const GoldenCase& c, const verl::AdvantageOutput& out) {
  INFO(describe(c, out.advantages, c.output("advantages")));
  CHECK(verl::test::matches_golden(out.advantages, c.output("advantages")));
  INFO(describe(c, out.returns, c.output("returns")));
  CHECK(verl::test::matches_golden(out.returns, c.output("returns")));
}

//! Runs `call` on every case of tests/golden/advantages/<file>.json: exact match, or a throw of `E` where verl
//! raised. Returns how many cases ran.
template <class Call>
int run_golden(const std::string& file, Call call) {
  const auto golden = verl::test::load_golden("advantages/" + file + ".json");
  CHECK_THAT(golden.reference, Catch::Contains("verl 0.7.1"));
  int n = 0;
  for (const auto& c : golden.cases) {
    INFO("case " << c.name);
    if (c.config.contains("raises")) {
      CHECK_THROWS_AS(call(c), verl::Error);
    } else {
      check_outputs(c, call(c));
    }
    ++n;
  }
  return n;
}

double cfg(const GoldenCase& c, const char* key) { return c.config.at(key).get<double>(); }

}  // namespace

// -------------------------------------------------------------------------------------------------------------
// (1) Golden vectors from verl 0.7.1. Every comparison is exact: the kernels perform verl's operations in verl's
// order (see the header), so float32 and float64 results match to the last bit.

TEST_CASE("GAE matches verl 0.7.1 bit for bit", "[algos][advantages][golden]") {
  const int n = run_golden("gae", [](const GoldenCase& c) {
    return compute_gae_advantage_return(c.input("token_level_rewards"), c.input("values"), c.input("response_mask"),
                                        cfg(c, "gamma"), cfg(c, "lam"));
  });
  CHECK(n == 10);
}

TEST_CASE("GAE's generic tensor path equals the CPU kernel", "[algos][advantages]") {
  const auto golden = verl::test::load_golden("advantages/gae.json");
  for (const auto& c : golden.cases) {
    if (c.config.contains("raises")) continue;
    INFO(c.name);
    const auto adv = verl::core_algos::detail::gae_generic(c.input("token_level_rewards"), c.input("values"), c.input("response_mask"),
                                         cfg(c, "gamma"), cfg(c, "lam"));
    const auto whitened = verl::functional::masked_whiten(adv, c.input("response_mask"));
    CHECK(verl::test::matches_golden(whitened, c.output("advantages")));
    CHECK(verl::test::matches_golden(adv + c.input("values"), c.output("returns")));
  }
}

TEST_CASE("REINFORCE++ matches verl 0.7.1 bit for bit", "[algos][advantages][golden]") {
  const int n = run_golden("reinforce_plus_plus", [](const GoldenCase& c) {
    return compute_reinforce_plus_plus_outcome_advantage(c.input("token_level_rewards"), c.input("response_mask"),
                                                         AdvantageConfig{.gamma = cfg(c, "gamma")});
  });
  CHECK(n == 12);
  // The generic path, too.
  const auto golden = verl::test::load_golden("advantages/reinforce_plus_plus.json");
  for (const auto& c : golden.cases) {
    if (c.config.contains("raises")) continue;
    INFO(c.name);
    CHECK(verl::test::bit_identical(verl::core_algos::detail::reinforce_pp_generic(c.input("token_level_rewards"), c.input("response_mask"),
                                                 cfg(c, "gamma")),
                    c.output("returns")));
  }
}

TEST_CASE("ReMax matches verl 0.7.1 bit for bit", "[algos][advantages][golden]") {
  CHECK(run_golden("remax", [](const GoldenCase& c) {
          return compute_remax_outcome_advantage(c.input("token_level_rewards"), c.input("reward_baselines"),
                                                 c.input("response_mask"));
        }) == 10);
}

TEST_CASE("GRPO (with and without std) matches verl 0.7.1 bit for bit", "[algos][advantages][golden]") {
  CHECK(run_golden("grpo", [](const GoldenCase& c) {
          return compute_grpo_outcome_advantage(c.input("token_level_rewards"), c.input("response_mask"),
                                                c.input("index"), cfg(c, "epsilon"),
                                                c.config.at("norm_adv_by_std_in_grpo").get<bool>());
        }) == 36);
}

TEST_CASE("GRPO pass@k matches verl 0.7.1 bit for bit", "[algos][advantages][golden]") {
  CHECK(run_golden("grpo_passk", [](const GoldenCase& c) {
          const bool norm = c.config.at("norm_adv_by_std_in_grpo").get<bool>();
          return compute_grpo_passk_outcome_advantage(c.input("token_level_rewards"), c.input("response_mask"),
                                                      c.input("index"), cfg(c, "epsilon"), true,
                                                      AdvantageConfig{.norm_adv_by_std_in_grpo = norm});
        }) == 26);
}

TEST_CASE("RLOO, OPO, REINFORCE++ baseline and GPG match verl 0.7.1 bit for bit", "[algos][advantages][golden]") {
  CHECK(run_golden("rloo", [](const GoldenCase& c) {
          return compute_rloo_outcome_advantage(c.input("token_level_rewards"), c.input("response_mask"),
                                                c.input("index"));
        }) == 18);
  CHECK(run_golden("opo", [](const GoldenCase& c) {
          return compute_opo_outcome_advantage(c.input("token_level_rewards"), c.input("response_mask"),
                                               c.input("index"));
        }) == 20);
  CHECK(run_golden("reinforce_plus_plus_baseline", [](const GoldenCase& c) {
          return compute_reinforce_plus_plus_baseline_outcome_advantage(c.input("token_level_rewards"),
                                                                        c.input("response_mask"), c.input("index"));
        }) == 20);
  CHECK(run_golden("gpg", [](const GoldenCase& c) {
          return compute_gpg_outcome_advantage(c.input("token_level_rewards"), c.input("response_mask"),
                                               c.input("index"), cfg(c, "epsilon"), cfg(c, "f_norm"));
        }) == 36);
}

// -------------------------------------------------------------------------------------------------------------
// (2) Hand-worked cases.

TEST_CASE("GAE by hand: one row, gamma 0.5, lam 0.5, a masked tail", "[algos][advantages]") {
  // r = [1, 0, 2, 9], V = [0.5, 1, 1, 7], m = [1, 1, 1, 0]; backwards, nv = g = 0:
  //   t=3 masked: nothing changes (nv = g = 0), stored advantage 0.
  //   t=2: delta = 2 + 0.5*0 - 1 = 1;      g = 1;                      nv = 1
  //   t=1: delta = 0 + 0.5*1 - 1 = -0.5;   g = -0.5 + 0.25*1 = -0.25; nv = 1
  //   t=0: delta = 1 + 0.5*1 - 0.5 = 1;    g = 1 + 0.25*(-0.25) = 0.9375
  // returns = advantages + values = [1.4375, 0.75, 2, 7]. A second row keeps the whitening defined.
  const auto r = torch::tensor({{1.0, 0.0, 2.0, 9.0}, {0.0, 0.0, 0.0, 0.0}}, torch::kFloat64);  // (2,4)
  const auto v = torch::tensor({{0.5, 1.0, 1.0, 7.0}, {0.0, 0.0, 0.0, 0.0}}, torch::kFloat64);  // (2,4)
  const auto m = torch::tensor({{1, 1, 1, 0}, {1, 0, 0, 0}});                                  // (2,4)
  const auto out = compute_gae_advantage_return(r, v, m, 0.5, 0.5);
  CHECK(torch::equal(out.returns[0], torch::tensor({1.4375, 0.75, 2.0, 7.0}, torch::kFloat64)));
  const auto raw = torch::tensor({{0.9375, -0.25, 1.0, 0.0}, {0.0, 0.0, 0.0, 0.0}}, torch::kFloat64);
  CHECK(torch::allclose(out.advantages, verl::functional::masked_whiten(raw, m), 0, 0));
}

TEST_CASE("GRPO, RLOO, OPO, GPG, pass@k by hand on one group of three", "[algos][advantages]") {
  // Scores s = [1, 2, 6] (rewards summed over T), one group; lengths |y| = [2, 1, 3].
  const auto r = torch::tensor({{1.0, 0.0, 0.0}, {2.0, 0.0, 0.0}, {3.0, 3.0, 0.0}}, torch::kFloat64);  // (3,3)
  const auto m = torch::tensor({{1, 1, 0}, {1, 0, 0}, {1, 1, 1}});                                     // (3,3)
  const auto idx = torch::tensor({7, 7, 7});                                                           // (3,)
  // GRPO: mean 3, unbiased std sqrt(((-2)^2 + (-1)^2 + 3^2) / 2) = sqrt(7); a = [-2, -1, 3] / (sqrt 7 + 1e-6).
  const auto grpo = compute_grpo_outcome_advantage(r, m, idx).advantages;
  CHECK(grpo[2][0].item<double>() == Approx(3.0 / (std::sqrt(7.0) + 1e-6)).epsilon(1e-14));
  CHECK(grpo[0][2].item<double>() == 0.0);  // masked token
  // Dr. GRPO: a = s - 3.
  CHECK(torch::equal(compute_grpo_outcome_advantage(r, m, idx, 1e-6, false).advantages.select(1, 0),
                     torch::tensor({-2.0, -1.0, 3.0}, torch::kFloat64)));
  // RLOO: a_i = s_i - mean of the others = [1 - 4, 2 - 3.5, 6 - 1.5] = [-3, -1.5, 4.5].
  CHECK(torch::allclose(compute_rloo_outcome_advantage(r, m, idx).advantages.select(1, 0),
                        torch::tensor({-3.0, -1.5, 4.5}, torch::kFloat64)));
  // OPO: b = (2*1 + 1*2 + 3*6) / 6 = 22/6; a = s - 22/6.
  CHECK(torch::allclose(compute_opo_outcome_advantage(r, m, idx).advantages.select(1, 0),
                        torch::tensor({1.0, 2.0, 6.0}, torch::kFloat64) - 22.0 / 6.0));
  // GPG: all three scores nonzero, alpha = 3/3 = 1; f_norm 2: a = (s - 3) / 2.
  CHECK(torch::allclose(compute_gpg_outcome_advantage(r, m, idx, 1e-6, 2.0).advantages.select(1, 0),
                        torch::tensor({-1.0, -0.5, 1.5}, torch::kFloat64)));
  // pass@k: only the best (6) gets 6 - 2 = 4, over (sqrt 7 + 1e-6) with normalisation.
  const auto pk = compute_grpo_passk_outcome_advantage(r, m, idx, 1e-6, true, {.norm_adv_by_std_in_grpo = false});
  CHECK(torch::equal(pk.advantages.select(1, 0), torch::tensor({0.0, 0.0, 4.0}, torch::kFloat64)));
  CHECK(pk.advantages[2][2].item<double>() == 4.0);
}

TEST_CASE("REINFORCE++ and ReMax by hand", "[algos][advantages]") {
  // gamma 0.5, r = [1, 2, 4], m = [1, 1, 1]: returns = [1 + 0.5*(2 + 0.5*4), 2 + 0.5*4, 4] = [3, 4, 4].
  const auto r = torch::tensor({{1.0, 2.0, 4.0}}, torch::kFloat64);  // (1,3)
  const auto m = torch::ones({1, 3}, torch::kLong);                   // (1,3)
  const auto out = compute_reinforce_plus_plus_outcome_advantage(r, m, {.gamma = 0.5});
  CHECK(torch::equal(out.returns, torch::tensor({{3.0, 4.0, 4.0}}, torch::kFloat64)));
  // ReMax, baseline 5: reward-to-go [7, 6, 4] minus 5 on valid tokens.
  const auto rm = compute_remax_outcome_advantage(r, torch::tensor({5.0}, torch::kFloat64), m);
  CHECK(torch::equal(rm.returns, torch::tensor({{7.0, 6.0, 4.0}}, torch::kFloat64)));
  CHECK(torch::equal(rm.advantages, torch::tensor({{2.0, 1.0, -1.0}}, torch::kFloat64)));
}

// -------------------------------------------------------------------------------------------------------------
// (3) Properties.

namespace {
struct Batch {
  at::Tensor rewards, values, mask, index;
};
Batch random_batch(std::int64_t groups, std::int64_t n, std::int64_t t, at::ScalarType dtype, std::uint64_t seed) {
  torch::manual_seed(seed);
  const std::int64_t b = groups * n;
  const auto lengths = torch::randint(1, t + 1, {b, 1});
  const auto mask = (torch::arange(t).unsqueeze(0) < lengths).to(torch::kLong);                 // (B,T)
  const auto index = torch::arange(groups).repeat_interleave(n).index_select(0, torch::randperm(b));  // (B,)
  return {torch::randn({b, t}, dtype), torch::randn({b, t}, dtype), mask, index};
}
}  // namespace

TEST_CASE("GRPO advantages have zero mean and unit std within each group", "[algos][advantages]") {
  const auto x = random_batch(6, 5, 9, torch::kFloat64, 11);
  const auto a = compute_grpo_outcome_advantage(x.rewards, x.mask, x.index, 0.0).advantages;  // (B,T)
  const auto first = a.select(1, 0);                                                          // (B,) mask[:,0] = 1
  for (std::int64_t g = 0; g < 6; ++g) {
    const auto members = first.index({x.index == g});
    CHECK(members.mean().item<double>() == Approx(0.0).margin(1e-12));
    CHECK(members.std().item<double>() == Approx(1.0).epsilon(1e-12));
  }
  CHECK((a * (1 - x.mask)).abs().sum().item<double>() == 0.0);
}

TEST_CASE("RLOO is the leave-one-out baseline and sums to zero within a group", "[algos][advantages]") {
  const auto x = random_batch(4, 6, 7, torch::kFloat64, 12);
  const auto a = compute_rloo_outcome_advantage(x.rewards, x.mask, x.index).advantages.select(1, 0);  // (B,)
  const auto s = x.rewards.sum(-1);                                                                     // (B,)
  for (std::int64_t i = 0; i < s.size(0); ++i) {
    const auto same = x.index == x.index[i];
    const double others = (s.index({same}).sum() - s[i]).item<double>() / 5.0;
    CHECK(a[i].item<double>() == Approx(s[i].item<double>() - others).epsilon(1e-12));
  }
  for (std::int64_t g = 0; g < 4; ++g) CHECK(a.index({x.index == g}).sum().item<double>() == Approx(0.0).margin(1e-12));
}

TEST_CASE("GAE with gamma = lam = 1 is reward-to-go minus values", "[algos][advantages]") {
  const auto x = random_batch(3, 4, 8, torch::kFloat64, 13);
  const auto m = torch::ones_like(x.mask);  // (B,T) no padding: every token valid
  const auto out = compute_gae_advantage_return(x.rewards, x.values, m, 1.0, 1.0);
  const auto to_go = x.rewards.flip({-1}).cumsum(-1).flip({-1});  // (B,T)
  CHECK(torch::allclose(out.returns, to_go, 1e-12, 1e-12));
  CHECK(torch::allclose(out.advantages, verl::functional::masked_whiten(to_go - x.values, m), 1e-10, 1e-10));
  // lam = 0: the one-step TD error r_t + gamma V_{t+1} - V_t.
  const auto td = compute_gae_advantage_return(x.rewards, x.values, m, 0.9, 0.0).returns - x.values;  // (B,T)
  const auto next = torch::cat({x.values.slice(1, 1), torch::zeros({x.values.size(0), 1}, torch::kFloat64)}, 1);
  CHECK(torch::allclose(td, x.rewards + 0.9 * next - x.values, 1e-12, 1e-12));
}

TEST_CASE("Interior mask gaps are skipped by GAE and reset REINFORCE++", "[algos][advantages]") {
  // GAE: a row with a gap equals the row with the gap's tokens removed (gamma, lam < 1).
  const auto r = torch::tensor({{1.0, 5.0, 2.0, 3.0}, {1.0, 2.0, 3.0, 0.0}}, torch::kFloat64);   // (2,4)
  const auto v = torch::tensor({{0.5, 9.0, 0.25, 1.0}, {0.5, 0.25, 1.0, 0.0}}, torch::kFloat64);  // (2,4)
  const auto m = torch::tensor({{1, 0, 1, 1}, {1, 1, 1, 0}});                                    // (2,4)
  const auto ret = compute_gae_advantage_return(r, v, m, 0.9, 0.8).returns;                      // (2,4)
  CHECK(ret[0][0].item<double>() == ret[1][0].item<double>());
  CHECK(ret[0][2].item<double>() == ret[1][1].item<double>());
  CHECK(ret[0][3].item<double>() == ret[1][2].item<double>());
  // REINFORCE++ (gamma 1), backwards: t=3: 3; t=2: 2+3 = 5; t=1 (masked): 5+5 = 10 is stored, then reset to 0;
  // t=0: 1 + 0 = 1. Tokens before a gap do not see the rewards after it; the masked token does.
  const auto rp = compute_reinforce_plus_plus_outcome_advantage(r, m, {.gamma = 1.0}).returns;
  CHECK(torch::equal(rp[0], torch::tensor({1.0, 10.0, 5.0, 3.0}, torch::kFloat64)));
}

TEST_CASE("Singleton groups: GRPO divides by float32 (1 + eps), RLOO keeps the raw score", "[algos][advantages]") {
  const auto r = torch::tensor({{2.0, 1.0}, {3.0, 0.0}, {1.0, 0.0}}, torch::kFloat64);  // (3,2) scores 3, 3, 1
  const auto m = torch::ones({3, 2}, torch::kLong);
  const auto idx = torch::tensor({1, 2, 2});
  const double den = static_cast<double>(1.0f + static_cast<float>(1e-6));  // verl: torch.tensor(1.0) + eps
  CHECK(compute_grpo_outcome_advantage(r, m, idx).advantages[0][0].item<double>() == 3.0 / den);
  CHECK(compute_rloo_outcome_advantage(r, m, idx).advantages[0][0].item<double>() == 3.0);
  CHECK(compute_gpg_outcome_advantage(r, m, idx).advantages[0][0].item<double>() == 3.0);
}

// -------------------------------------------------------------------------------------------------------------
// (4) float32 vs float64: the same inputs in both precisions agree to float32 rounding, amplified at most by
// the whitening's division (relative 1e-4 on values of order one; stated per check).

TEST_CASE("float32 and float64 agree", "[algos][advantages]") {
  const auto x = random_batch(8, 4, 16, torch::kFloat64, 21);
  const auto f = [](const at::Tensor& t) { return t.to(torch::kFloat32); };
  const auto close = [](const at::Tensor& a32, const at::Tensor& a64) {
    return torch::allclose(a32.to(torch::kFloat64), a64, 1e-4, 1e-4);
  };
  CHECK(close(compute_gae_advantage_return(f(x.rewards), f(x.values), x.mask, 0.99, 0.95).advantages,
              compute_gae_advantage_return(x.rewards, x.values, x.mask, 0.99, 0.95).advantages));
  CHECK(close(compute_reinforce_plus_plus_outcome_advantage(f(x.rewards), x.mask, {.gamma = 0.99}).advantages,
              compute_reinforce_plus_plus_outcome_advantage(x.rewards, x.mask, {.gamma = 0.99}).advantages));
  CHECK(close(compute_grpo_outcome_advantage(f(x.rewards), x.mask, x.index).advantages,
              compute_grpo_outcome_advantage(x.rewards, x.mask, x.index).advantages));
  CHECK(close(compute_rloo_outcome_advantage(f(x.rewards), x.mask, x.index).advantages,
              compute_rloo_outcome_advantage(x.rewards, x.mask, x.index).advantages));
  CHECK(close(compute_opo_outcome_advantage(f(x.rewards), x.mask, x.index).advantages,
              compute_opo_outcome_advantage(x.rewards, x.mask, x.index).advantages));
  CHECK(close(compute_reinforce_plus_plus_baseline_outcome_advantage(f(x.rewards), x.mask, x.index).advantages,
              compute_reinforce_plus_plus_baseline_outcome_advantage(x.rewards, x.mask, x.index).advantages));
  CHECK(close(compute_gpg_outcome_advantage(f(x.rewards), x.mask, x.index).advantages,
              compute_gpg_outcome_advantage(x.rewards, x.mask, x.index).advantages));
  CHECK(close(compute_grpo_passk_outcome_advantage(f(x.rewards), x.mask, x.index).advantages,
              compute_grpo_passk_outcome_advantage(x.rewards, x.mask, x.index).advantages));
}

// -------------------------------------------------------------------------------------------------------------
// (5) Errors.

TEST_CASE("Advantage estimators reject bad inputs with messages naming function and argument",
          "[algos][advantages]") {
  const auto r = torch::randn({4, 3});                 // (4,3)
  const auto m = torch::ones({4, 3}, torch::kLong);    // (4,3)
  const auto idx = torch::tensor({0, 0, 1, 1});        // (4,)
  CHECK_THROWS_AS(compute_grpo_outcome_advantage(r, m.slice(1, 0, 2), idx), verl::ShapeError);
  CHECK_THROWS_WITH(compute_grpo_outcome_advantage(r, m, idx.slice(0, 0, 3)),
                    Catch::Contains("compute_grpo_outcome_advantage") && Catch::Contains("`index`"));
  CHECK_THROWS_WITH(compute_rloo_outcome_advantage(r, m, idx.to(torch::kFloat32)), Catch::Contains("int64"));
  CHECK_THROWS_WITH(compute_gae_advantage_return(r, r.to(torch::kFloat64), m, 1.0, 1.0),
                    Catch::Contains("`values`"));
  CHECK_THROWS_WITH(compute_gae_advantage_return(r, r, m.to(torch::kFloat64), 1.0, 1.0),
                    Catch::Contains("`response_mask`") && Catch::Contains("dtype"));
  CHECK_THROWS_WITH(compute_reinforce_plus_plus_outcome_advantage(r.to(torch::kLong), m),
                    Catch::Contains("floating"));
  CHECK_THROWS_WITH(compute_grpo_passk_outcome_advantage(r, m, torch::tensor({0, 0, 1, 2})),
                    Catch::Contains("compute_grpo_passk_outcome_advantage") && Catch::Contains("at least 2"));
  CHECK_THROWS_WITH(compute_gae_advantage_return(r, r, torch::zeros_like(m), 1.0, 1.0),
                    Catch::Contains("compute_gae_advantage_return") && Catch::Contains("no element"));
  CHECK_THROWS_WITH(compute_remax_outcome_advantage(r, torch::zeros({3}), m), Catch::Contains("reward_baselines"));
}

// -------------------------------------------------------------------------------------------------------------
// Typed policies.

TEST_CASE("verl::estimators policies satisfy AdvantageEstimator and call the kernels", "[algos][advantages]") {
  static_assert(verl::check_advantage_estimator<verl::estimators::GAE>());
  static_assert(verl::check_advantage_estimator<verl::estimators::GRPO>());
  const auto x = random_batch(3, 4, 6, torch::kFloat32, 31);
  verl::AdvantageInputs in{.token_level_rewards = x.rewards, .response_mask = x.mask, .values = x.values,
                           .index = x.index, .reward_baselines = torch::zeros({12})};
  in.validate();
  CHECK(verl::test::bit_identical(verl::estimators::GAE{.gamma = 0.9, .lam = 0.8}.compute(in).advantages,
                  compute_gae_advantage_return(x.rewards, x.values, x.mask, 0.9, 0.8).advantages));
  CHECK(verl::test::bit_identical(verl::estimators::GRPO{.norm_adv_by_std_in_grpo = false}.compute(in).advantages,
                  compute_grpo_outcome_advantage(x.rewards, x.mask, x.index, 1e-6, false).advantages));
  CHECK(verl::test::bit_identical(verl::estimators::RLOO{}.compute(in).advantages,
                  compute_rloo_outcome_advantage(x.rewards, x.mask, x.index).advantages));
  CHECK(verl::test::bit_identical(verl::estimators::ReinforcePlusPlus{.gamma = 0.5}.compute(in).returns,
                  compute_reinforce_plus_plus_outcome_advantage(x.rewards, x.mask, {.gamma = 0.5}).returns));
  CHECK(verl::estimators::ReMax{}.compute(in).advantages.sizes() == x.rewards.sizes());
  CHECK(verl::estimators::OPO{}.compute(in).advantages.sizes() == x.rewards.sizes());
  CHECK(verl::estimators::GPG{}.compute(in).advantages.sizes() == x.rewards.sizes());
  CHECK(verl::estimators::GRPOPassK{}.compute(in).advantages.sizes() == x.rewards.sizes());
  CHECK(verl::estimators::ReinforcePlusPlusBaseline{}.compute(in).advantages.sizes() == x.rewards.sizes());
  in.index.reset();
  CHECK_THROWS_WITH(verl::estimators::GRPO{}.compute(in), Catch::Contains("AdvantageInputs::index"));
}

TEST_CASE("golden comparisons: bit for bit on the golden machine, within 4 ulps elsewhere", "[algos][golden]") {
  // 1.0f's ulp is 2^-23 (float32 epsilon); nextafter moves one ulp.
  const float one = 1.0F, up1 = std::nextafter(one, 2.0F), up5 = one + 5 * std::numeric_limits<float>::epsilon();
  const auto want = torch::tensor({one, -2.0F, 0.0F});
  const auto off_by_1 = torch::tensor({up1, -2.0F, 0.0F}), off_by_5 = torch::tensor({up5, -2.0F, 0.0F});
  CHECK(verl::test::matches_golden(want.clone(), want, true));
  CHECK_FALSE(verl::test::matches_golden(off_by_1, want, true));   // the golden machine: exact bits
  CHECK(verl::test::matches_golden(off_by_1, want, false));        // elsewhere: 1 ulp is fine
  CHECK_FALSE(verl::test::matches_golden(off_by_5, want, false));  // 5 ulps are not
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  CHECK_FALSE(verl::test::matches_golden(torch::tensor({inf}), torch::tensor({std::numeric_limits<float>::max()}), false));
  CHECK(verl::test::matches_golden(torch::tensor({nan}), torch::tensor({nan}), false));
  CHECK_FALSE(verl::test::matches_golden(torch::tensor({1.0}, torch::kFloat64), torch::tensor({1.0F}), false));  // dtypes must match
  // This machine is described in kGoldenMachine's form (vendor / model / capability).
  const auto here = verl::test::this_machine();
  CHECK(std::count(here.begin(), here.end(), '/') >= 2);
}

}  // namespace test_advantages
