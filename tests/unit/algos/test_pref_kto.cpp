// verl::pref::kto_loss (include/verl/algos/pref/kto.hpp) against Hugging Face TRL's KTOTrainer.kto_loss,
// trl 0.28.0 from PyPI (identical text to commit b84b4872's and to 0.25.1 .. 1.0.0; tests/golden/generate_pref.py
// writes tests/golden/pref/kto.json). Golden comparisons are exact (==) in float32 and float64.
#include "verl/algos/pref/kto.hpp"

#include "catch_torch.hpp"
#include "golden.hpp"

#include <torch/csrc/autograd/autograd.h>

#include <cmath>
#include <string>

namespace test_pref_kto {  // one namespace per file: a unity build (tests/CMakeLists.txt) may join files

using namespace verl::pref;

namespace {

bool same_values(const at::Tensor& ours, const at::Tensor& golden) {
  return ours.sizes() == golden.sizes() &&
         verl::test::matches_golden(ours.to(torch::kFloat64), golden.to(torch::kFloat64));
}

at::Tensor logps(int64_t n) { return -torch::rand({n}, torch::kFloat64) * 20; }

}  // namespace

TEST_CASE("kto_loss equals TRL 0.28.0 KTOTrainer.kto_loss bit for bit", "[algos][pref]") {
  const auto golden = verl::test::load_golden("pref/kto.json");
  REQUIRE(golden.cases.size() == 20);
  for (const auto& c : golden.cases) {
    INFO(c.name);
    KTOLossConfig cfg;
    cfg.loss_type = parse_kto_loss_type(c.config.at("loss_type").get<std::string>());
    cfg.beta = c.config.at("beta").get<double>();
    cfg.desirable_weight = c.config.at("desirable_weight").get<double>();
    cfg.undesirable_weight = c.config.at("undesirable_weight").get<double>();
    const auto out = kto_loss(c.input("policy_chosen_logps"), c.input("policy_rejected_logps"),
                              c.input("policy_KL_logps"), c.input("reference_chosen_logps"),
                              c.input("reference_rejected_logps"), c.input("reference_KL_logps"), cfg);
    const auto dtype = c.input("policy_chosen_logps").scalar_type();
    CHECK(out.losses.scalar_type() == dtype);
    CHECK(same_values(out.losses, c.output("losses")));
    CHECK(same_values(out.chosen_rewards, c.output("chosen_rewards")));
    CHECK(same_values(out.rejected_rewards, c.output("rejected_rewards")));
    CHECK(same_values(out.kl, c.output("kl")));
  }
}

TEST_CASE("kto_loss hand-worked values", "[algos][pref]") {
  // One chosen (pi-ref = 2), one rejected (pi-ref = -1), KL pairs with mean(pi_KL - ref_KL) = (1 + 0)/2 = 0.5.
  // beta 0.5: chosen 1 - sig(0.5 (2 - 0.5)) = 1 - sig(0.75); rejected 1 - sig(0.5 (0.5 + 1)) = 1 - sig(0.75).
  const auto sig = [](double x) { return 1.0 / (1.0 + std::exp(-x)); };
  const auto pc = torch::tensor({-1.0}, torch::kFloat64), rc = torch::tensor({-3.0}, torch::kFloat64);
  const auto pr = torch::tensor({-4.0}, torch::kFloat64), rr = torch::tensor({-3.0}, torch::kFloat64);
  const auto pkl = torch::tensor({-2.0, -5.0}, torch::kFloat64), rkl = torch::tensor({-3.0, -5.0}, torch::kFloat64);
  const auto out = kto_loss(pc, pr, pkl, rc, rr, rkl, {.beta = 0.5, .desirable_weight = 2.0});
  REQUIRE(out.losses.sizes() == at::IntArrayRef{2});
  CHECK(out.kl.item<double>() == 0.5);
  CHECK(out.losses[0].item<double>() == Approx(2.0 * (1 - sig(0.75))).epsilon(1e-14));
  CHECK(out.losses[1].item<double>() == Approx(1 - sig(0.75)).epsilon(1e-14));
  CHECK(out.chosen_rewards.item<double>() == 1.0);
  CHECK(out.rejected_rewards.item<double>() == -0.5);
  // apo_zero_unpaired ignores the KL: 1 - sig(1), sig(-0.5).
  const auto apo = kto_loss(pc, pr, {}, rc, rr, {}, {.loss_type = KTOLossType::apo_zero_unpaired, .beta = 0.5});
  CHECK(apo.losses[0].item<double>() == Approx(1 - sig(1.0)).epsilon(1e-14));
  CHECK(apo.losses[1].item<double>() == Approx(sig(-0.5)).epsilon(1e-14));
  CHECK(apo.kl.item<double>() == 0.0);
}

TEST_CASE("kto_loss reference point is >= 0, detached, and overridable", "[algos][pref]") {
  torch::manual_seed(7);
  const auto pc = logps(5).requires_grad_(), pr = logps(4).requires_grad_();
  const auto rc = logps(5), rr = logps(4);
  const auto pkl = logps(9).requires_grad_();
  // ref_KL far above pi_KL: the mean is negative and is clamped to 0.
  const auto out = kto_loss(pc, pr, pkl, rc, rr, pkl.detach() + 3.0);
  CHECK(out.kl.item<double>() == 0.0);
  CHECK(!out.kl.requires_grad());
  const auto pos = kto_loss(pc, pr, pkl, rc, rr, pkl.detach() - 3.0);
  CHECK(pos.kl.item<double>() == Approx(3.0).epsilon(1e-12));
  CHECK(!pos.kl.requires_grad());
  // No gradient flows into the KL log-probs.
  const auto g = torch::autograd::grad({pos.losses.sum()}, {pkl}, {}, std::nullopt, false, /*allow_unused=*/true);
  CHECK((!g[0].defined() || g[0].abs().sum().item<double>() == 0.0));
  // kl_override (e.g. the data-parallel mean) replaces the local mean before the clamp.
  const auto over = kto_loss(pc, pr, {}, rc, rr, {}, {}, torch::tensor(-1.0, torch::kFloat64));
  CHECK(over.kl.item<double>() == 0.0);
  const auto over2 = kto_loss(pc, pr, {}, rc, rr, {}, {}, torch::tensor(0.25, torch::kFloat64));
  CHECK(over2.kl.item<double>() == 0.25);
  // Larger reference point -> larger chosen losses, smaller rejected losses.
  CHECK((over2.losses.slice(0, 0, 5) > over.losses.slice(0, 0, 5)).all().item<bool>());
  CHECK((over2.losses.slice(0, 5) < over.losses.slice(0, 5)).all().item<bool>());
}

TEST_CASE("kto_loss gradients match finite differences in float64", "[algos][pref]") {
  torch::manual_seed(8);
  const auto rc = logps(4), rr = logps(3), pkl = logps(7), rkl = logps(7) + 5.0;
  for (const auto t : {KTOLossType::kto, KTOLossType::apo_zero_unpaired}) {
    const auto f = [&](const at::Tensor& pc, const at::Tensor& pr) {
      return kto_loss(pc, pr, pkl, rc, rr, rkl, {.loss_type = t, .beta = 0.3, .desirable_weight = 1.5}).losses.sum();
    };
    const auto pc = logps(4).requires_grad_(), pr = logps(3).requires_grad_();
    const auto g = torch::autograd::grad({f(pc, pr)}, {pc, pr});
    const double eps = 1e-6;
    for (int k = 0; k < 2; ++k) {
      const auto& x = k == 0 ? pc : pr;
      for (int64_t i = 0; i < x.numel(); ++i) {
        auto xp = x.detach().clone(), xm = x.detach().clone();
        xp[i] += eps;
        xm[i] -= eps;
        const double fd = k == 0 ? (f(xp, pr.detach()) - f(xm, pr.detach())).item<double>() / (2 * eps)
                                 : (f(pc.detach(), xp) - f(pc.detach(), xm)).item<double>() / (2 * eps);
        CHECK(g[k][i].item<double>() == Approx(fd).margin(1e-7));
      }
    }
  }
}

TEST_CASE("kto_loss float32 agrees with float64, empty sides", "[algos][pref]") {
  torch::manual_seed(9);
  const auto pc = logps(6), pr = logps(5), pkl = logps(11), rc = logps(6), rr = logps(5), rkl = logps(11);
  const auto d = kto_loss(pc, pr, pkl, rc, rr, rkl);
  const auto f = kto_loss(pc.to(torch::kFloat32), pr.to(torch::kFloat32), pkl.to(torch::kFloat32),
                          rc.to(torch::kFloat32), rr.to(torch::kFloat32), rkl.to(torch::kFloat32));
  CHECK(torch::allclose(f.losses.to(torch::kFloat64), d.losses, 1e-5, 1e-6));  // float32 rounding of |x| <= 20
  CHECK(torch::allclose(f.kl.to(torch::kFloat64), d.kl, 1e-5, 1e-5));
  // No rejected examples: the losses are the chosen ones only (TRL returns an empty tensor for that side).
  const auto none = kto_loss(pc, pr.slice(0, 0, 0), pkl, rc, rr.slice(0, 0, 0), rkl);
  CHECK(none.losses.size(0) == 6);
  CHECK(none.rejected_rewards.numel() == 0);
}

TEST_CASE("kto_loss errors", "[algos][pref]") {
  const auto x = torch::zeros({3}, torch::kFloat64);
  CHECK_THROWS_WITH(parse_kto_loss_type("kto_pair"), Catch::Contains("expected 'kto' or 'apo_zero_unpaired'"));
  CHECK_THROWS_AS(kto_loss(x, x, {}, x, x, {}), verl::ConfigError);
  CHECK_THROWS_WITH(kto_loss(x, x, {}, x, x, {}), Catch::Contains("needs policy_KL_logps"));
  CHECK_THROWS_WITH(kto_loss(x, x, x, torch::zeros({2}, torch::kFloat64), x, x), Catch::Contains("reference_chosen_logps"));
  CHECK_THROWS_AS(kto_loss(x, x.to(torch::kFloat32), x, x, x.to(torch::kFloat32), x), verl::ShapeError);
}

}  // namespace test_pref_kto
