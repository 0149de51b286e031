// verl::core_algos::compute_value_loss (include/verl/algos/value_loss.hpp) against verl 0.7.1 (PyPI)
// verl/trainer/ppo/core_algos.py `compute_value_loss`: golden vectors (tests/golden/generate_losses.py),
// a hand-worked case, finite differences, float32/float64 agreement, errors.
#include "verl/algos/value_loss.hpp"

#include "catch_torch.hpp"
#include "golden.hpp"

#include <string>

namespace test_value_loss {  // one namespace per file: a unity build (tests/CMakeLists.txt) may join files

using namespace verl::core_algos;

TEST_CASE("compute_value_loss matches verl 0.7.1 golden vectors bit for bit", "[algos][losses][value]") {
  const auto file = verl::test::load_golden("losses/value_loss.json");
  REQUIRE(file.cases.size() == 8);
  for (const auto& c : file.cases) {
    INFO(c.name);
    const auto vpreds = c.input("vpreds").clone().requires_grad_(true);
    const auto out = compute_value_loss(vpreds, c.input("returns"), c.input("values"), c.input("response_mask"),
                                        c.config["cliprange_value"].get<double>(),
                                        c.config["loss_agg_mode"].get<std::string>());
    // verl's operations in verl's order: exact.
    CHECK(out.vf_loss.item<double>() == c.output("vf_loss").to(vpreds.scalar_type()).item<double>());
    CHECK(out.vf_clipfrac.item<double>() == c.output("vf_clipfrac").to(torch::kFloat32).item<double>());
    out.vf_loss.backward();
    CHECK(verl::test::matches_golden(vpreds.grad(), c.output("grad_vpreds").to(vpreds.scalar_type())));
  }
}

TEST_CASE("compute_value_loss hand-worked", "[algos][losses][value]") {
  // values 0, clip 0.5, returns 1: vpred 2 -> max((2-1)^2, (0.5-1)^2) = 1 (unclipped wins);
  // vpred -1 -> max(4, (-0.5-1)^2 = 2.25) = 4; vpred 0.25 -> in range, 0.5625 both. token-mean:
  // 0.5 * (1 + 4 + 0.5625) / 3 = 0.9270833...; nothing clipped (the clipped loss is never strictly larger).
  const auto vpreds = torch::tensor({{2.0, -1.0, 0.25}}, torch::kFloat64);
  const auto out = compute_value_loss(vpreds, torch::ones({1, 3}, torch::kFloat64), torch::zeros({1, 3}, torch::kFloat64),
                                      torch::ones({1, 3}, torch::kLong), 0.5);
  CHECK(out.vf_loss.item<double>() == Approx(0.5 * 5.5625 / 3).epsilon(1e-12));
  CHECK(out.vf_clipfrac.item<double>() == 0.0);
  // returns -1, vpred 0.4, value 0: vf1 = 1.96, clipped 0.4 too (in range) -> equal; vpred 0.8: clipped to 0.5,
  // vf1 = 3.24 > vf2 = 2.25 -> no clip. With returns 2, vpred 1 (clipped 0.5): vf1 = 1 < vf2 = 2.25 -> clipfrac 1.
  const auto o2 = compute_value_loss(torch::tensor({{1.0}}), torch::tensor({{2.0}}), torch::tensor({{0.0}}),
                                     torch::ones({1, 1}), 0.5);
  CHECK(o2.vf_clipfrac.item<double>() == Approx(1.0).epsilon(1e-7));
  CHECK(o2.vf_loss.item<double>() == Approx(0.5 * 2.25).epsilon(1e-7));
}

TEST_CASE("compute_value_loss gradient matches finite differences, float32 agrees with float64", "[algos][losses][value]") {
  torch::manual_seed(9);
  const auto values = torch::randn({4, 6}, torch::kFloat64);
  const auto base = values + torch::randn({4, 6}, torch::kFloat64) * 0.7;
  const auto returns = values + torch::randn({4, 6}, torch::kFloat64);
  auto mask = torch::ones({4, 6}, torch::kLong);
  mask[2].zero_();
  for (const char* mode : {"token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm"}) {
    INFO(mode);
    const auto vp = base.clone().requires_grad_(true);
    compute_value_loss(vp, returns, values, mask, 0.3, mode).vf_loss.backward();
    auto numeric = torch::zeros_like(base);
    for (int64_t i = 0; i < base.numel(); ++i) {
      auto up = base.clone(), down = base.clone();
      up.view(-1)[i] += 1e-6;
      down.view(-1)[i] -= 1e-6;
      numeric.view(-1)[i] = (compute_value_loss(up, returns, values, mask, 0.3, mode).vf_loss.item<double>() -
                             compute_value_loss(down, returns, values, mask, 0.3, mode).vf_loss.item<double>()) / 2e-6;
    }
    CHECK(torch::allclose(vp.grad(), numeric, 1e-5, 1e-8));
    const auto f32 = compute_value_loss(base.to(torch::kFloat32), returns.to(torch::kFloat32), values.to(torch::kFloat32),
                                        mask, 0.3, mode);
    CHECK(f32.vf_loss.item<double>() ==
          Approx(compute_value_loss(base, returns, values, mask, 0.3, mode).vf_loss.item<double>()).epsilon(1e-5));
  }
}

TEST_CASE("compute_value_loss rejects bad shapes and modes", "[algos][losses][value]") {
  const auto t = torch::zeros({2, 3});
  CHECK_THROWS_WITH(compute_value_loss(t, torch::zeros({2, 2}), t, t, 0.2),
                    Catch::Contains("`returns` has shape [2, 2], expected [2, 3]"));
  CHECK_THROWS_AS(compute_value_loss(t, t, t, t, 0.2, "token-sum"), verl::ConfigError);
}

}  // namespace test_value_loss
