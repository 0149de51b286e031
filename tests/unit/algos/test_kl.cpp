// verl::core_algos KL penalties and controllers (include/verl/algos/kl.hpp) against verl 0.7.1 (PyPI)
// verl/trainer/ppo/core_algos.py kl_penalty, kl_penalty_forward, compute_rewards, Fixed/AdaptiveKLController:
// golden vectors (tests/golden/generate_losses.py), hand-worked values, the straight-through "+" variants
// (verl 0.8.0 semantics, see kl.hpp), errors.
#include "verl/algos/kl.hpp"

#include "catch_torch.hpp"
#include "golden.hpp"

#include <cmath>
#include <string>
#include <variant>

namespace test_kl {  // one namespace per file: a unity build (tests/CMakeLists.txt) may join files

using namespace verl::core_algos;

TEST_CASE("kl_penalty and compute_rewards match verl 0.7.1 golden vectors bit for bit", "[algos][kl]") {
  const auto file = verl::test::load_golden("losses/kl.json");
  REQUIRE(file.cases.size() == 17);
  for (const auto& c : file.cases) {
    INFO(c.name);
    if (c.name.rfind("kl_penalty/", 0) == 0) {
      const auto lp = c.input("logprob").clone().requires_grad_(true);
      const auto kl = kl_penalty(lp, c.input("ref_logprob"), c.config["kl_penalty"].get<std::string>());
      CHECK(verl::test::matches_golden(kl.detach(), c.output("kl").to(lp.scalar_type())));
      kl.sum().backward();
      CHECK(verl::test::matches_golden(lp.grad(), c.output("grad_logprob").to(lp.scalar_type())));
    } else if (c.name.rfind("compute_rewards/", 0) == 0) {
      const auto& scores = c.input("token_level_scores");
      const auto r = compute_rewards(scores, c.input("old_log_prob"), c.input("ref_log_prob"),
                                     c.config["kl_ratio"].get<double>());
      CHECK(verl::test::matches_golden(r, c.output("rewards").to(scores.scalar_type())));
    } else {
      AdaptiveKLController ctl(c.config["init_kl_coef"].get<double>(), c.config["target_kl"].get<double>(),
                               c.config["horizon"].get<double>());
      const auto kls = c.input("current_kl"), steps = c.input("n_steps"), want = c.output("value");
      for (int64_t i = 0; i < kls.numel(); ++i) {
        ctl.update(kls[i].item<double>(), steps[i].item<int64_t>());
        CHECK(ctl.value == want[i].item<double>());  // same double arithmetic in the same order: exact
      }
    }
  }
}

TEST_CASE("KL estimators hand-worked, with verl's clamps", "[algos][kl]") {
  // d = logprob - ref = 0.5: k1 = 0.5, abs = 0.5, k2 = 0.125, k3 = exp(-0.5) + 0.5 - 1.
  const auto lp = torch::tensor({0.0, -40.0}, torch::kFloat64), ref = torch::tensor({-0.5, 0.0}, torch::kFloat64);
  CHECK(kl_penalty(lp, ref, "kl")[0].item<double>() == 0.5);
  CHECK(kl_penalty(lp, ref, "abs")[1].item<double>() == 40.0);
  CHECK(kl_penalty(lp, ref, "k2")[0].item<double>() == 0.125);
  CHECK(kl_penalty(lp, ref, "k3")[0].item<double>() == Approx(std::exp(-0.5) - 0.5).epsilon(1e-15));
  // Second token: ref - logprob = 40 is clamped to 20, exp(20) - 21 is clamped to 10.
  CHECK(kl_penalty(lp, ref, "low_var_kl")[1].item<double>() == 10.0);
}

TEST_CASE("straight-through '+' KL variants: value of the base estimator, gradient of k2", "[algos][kl]") {
  torch::manual_seed(2);
  const auto ref = -torch::rand({3, 4}, torch::kFloat64);
  const auto base = ref + torch::randn({3, 4}, torch::kFloat64) * 0.5;
  for (const char* name : {"k1", "k3", "low_var_kl", "abs"}) {
    INFO(name);
    const auto lp = base.clone().requires_grad_(true);
    const auto out = kl_penalty(lp, ref, std::string(name) + "+");
    CHECK(torch::equal(out.detach(), kl_penalty_forward(base, ref, name)));
    out.sum().backward();
    CHECK(torch::allclose(lp.grad(), base - ref, 1e-15, 0));  // d/dlp of (lp - ref)^2 / 2
  }
  const auto lp = base.clone().requires_grad_(true);  // "k2+" is plain k2
  CHECK(torch::equal(kl_penalty(lp, ref, "k2+"), kl_penalty(lp, ref, "k2")));
}

TEST_CASE("KL controllers follow verl's update rule", "[algos][kl]") {
  FixedKLController fixed(0.1);
  fixed.update(100.0, 10);
  CHECK(fixed.value == 0.1);
  // KL 12 vs target 6: error 1 clipped to 0.2; 500 steps over horizon 1000: value *= 1.1.
  AdaptiveKLController adaptive(0.2, 6.0, 1000);
  adaptive.update(12.0, 500);
  CHECK(adaptive.value == Approx(0.22).epsilon(1e-15));
  const auto ctl = get_kl_controller({"adaptive", 0.3, 10.0, 1.0});
  REQUIRE(std::holds_alternative<AdaptiveKLController>(ctl));
  CHECK(std::get<AdaptiveKLController>(ctl).value == 0.3);
  CHECK(std::holds_alternative<FixedKLController>(get_kl_controller({})));
  CHECK_THROWS_WITH(get_kl_controller({"adaptive", 0.3, 0.0, 1.0}), Catch::Contains("horizon must be larger than 0"));
  CHECK_THROWS_WITH(get_kl_controller({"pid"}), Catch::Contains("\"pid\", expected \"fixed\" or \"adaptive\""));
}

TEST_CASE("kl_penalty rejects unknown estimators and mismatched shapes", "[algos][kl]") {
  const auto t = torch::zeros({2, 3});
  CHECK_THROWS_AS(kl_penalty(t, t, "full"), verl::ConfigError);
  CHECK_THROWS_WITH(kl_penalty(t, t, "full"), Catch::Contains("NotImplementedError"));
  CHECK_THROWS_WITH(kl_penalty(t, t, "k4"), Catch::Contains("\"k4\" is not implemented"));
  CHECK_THROWS_WITH(kl_penalty(t, torch::zeros({3, 2}), "kl"), Catch::Contains("expected [2, 3]"));
}

}  // namespace test_kl
