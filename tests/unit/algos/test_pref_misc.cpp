// verl::pref::cpo_loss / simpo_loss, odds_ratio_loss (ORPO) and sft_nll_loss (include/verl/algos/pref/*.hpp)
// against TRL 0.28.0 (CPOTrainer.cpo_loss, ORPOTrainer.odds_ratio_loss) and transformers 5.2.0 (ForCausalLMLoss),
// from PyPI; tests/golden/generate_pref.py writes tests/golden/pref/{cpo,orpo,sft}.json.
// CPO and float32 ORPO/SFT compare exactly; float64 ORPO/SFT compare with a float32 tolerance because TRL and
// transformers cast to float32 (`.float()`) and we keep float64 (a documented deliberate difference).
#include "verl/algos/pref/orpo.hpp"
#include "verl/algos/pref/sft.hpp"
#include "verl/algos/pref/simpo.hpp"

#include "catch_torch.hpp"
#include "golden.hpp"

#include <torch/csrc/autograd/autograd.h>

#include <cmath>
#include <functional>
#include <vector>
#include <string>

namespace test_pref_misc {  // one namespace per file: a unity build (tests/CMakeLists.txt) may join files

using namespace verl::pref;

namespace {


// float64 ours vs TRL's float32 result: float32 rounding of inputs and arithmetic.
bool close32(const at::Tensor& ours, const at::Tensor& golden) {
  return ours.sizes() == golden.sizes() && torch::allclose(ours.to(torch::kFloat64), golden.to(torch::kFloat64), 2e-6, 1e-6);
}

at::Tensor avg_logps(int64_t n) { return -(torch::rand({n}, torch::kFloat64) * 3 + 0.05); }

// Max |autograd - central difference| of f w.r.t. each input (float64).
double grad_error(const std::function<at::Tensor(const std::vector<at::Tensor>&)>& f, std::vector<at::Tensor> xs) {
  for (auto& x : xs) x = x.detach().clone().set_requires_grad(true);
  const auto g = torch::autograd::grad({f(xs)}, xs);
  double worst = 0;
  for (std::size_t k = 0; k < xs.size(); ++k) {
    for (int64_t i = 0; i < xs[k].numel(); ++i) {
      std::vector<at::Tensor> p, m;
      for (auto& x : xs) {
        p.push_back(x.detach().clone());
        m.push_back(x.detach().clone());
      }
      p[k].view(-1)[i] += 1e-6;
      m[k].view(-1)[i] -= 1e-6;
      const double fd = (f(p).item<double>() - f(m).item<double>()) / 2e-6;
      worst = std::max(worst, std::abs(fd - g[k].view(-1)[i].item<double>()));
    }
  }
  return worst;
}

}  // namespace

TEST_CASE("cpo_loss / simpo_loss equal TRL 0.28.0 CPOTrainer.cpo_loss bit for bit", "[algos][pref]") {
  const auto golden = verl::test::load_golden("pref/cpo.json");
  REQUIRE(golden.cases.size() == 20);
  for (const auto& c : golden.cases) {
    INFO(c.name);
    const CPOLossConfig cfg{parse_cpo_loss_type(c.config.at("loss_type").get<std::string>()),
                            c.config.at("beta").get<double>(), c.config.at("label_smoothing").get<double>(),
                            c.config.at("simpo_gamma").get<double>(), c.config.at("alpha").get<double>()};
    const auto out = cpo_loss(c.input("policy_chosen_logps"), c.input("policy_rejected_logps"), cfg);
    CHECK(verl::test::matches_golden(out.losses, c.output("losses")));
    CHECK(verl::test::matches_golden(out.chosen_rewards, c.output("chosen_rewards")));
    CHECK(verl::test::matches_golden(out.rejected_rewards, c.output("rejected_rewards")));
    if (cfg.loss_type == CPOLossType::simpo) {
      const auto s = simpo_loss(c.input("policy_chosen_logps"), c.input("policy_rejected_logps"),
                                {cfg.beta, cfg.simpo_gamma, cfg.label_smoothing, cfg.alpha});
      CHECK(verl::test::matches_golden(s.losses, c.output("losses")));
    }
  }
}

TEST_CASE("simpo_loss hand-worked values and properties", "[algos][pref]") {
  // beta 2, gamma 0.5: z = (-1 - -2) - 0.25 = 0.75, loss = softplus(-1.5); at margin gamma/beta the loss is log 2.
  const auto pc = torch::tensor({-1.0}, torch::kFloat64), pr = torch::tensor({-2.0}, torch::kFloat64);
  const auto out = simpo_loss(pc, pr, {.beta = 2.0, .simpo_gamma = 0.5});
  CHECK(out.losses.item<double>() == Approx(std::log1p(std::exp(-1.5))).epsilon(1e-14));
  CHECK(out.chosen_rewards.item<double>() == -2.0);  // beta * pi_c (reference-free reward)
  CHECK(simpo_loss(torch::tensor({-1.75}, torch::kFloat64), torch::tensor({-2.0}, torch::kFloat64),
                   {.beta = 2.0, .simpo_gamma = 0.5}).losses.item<double>() == Approx(std::log(2.0)).epsilon(1e-14));
  // Monotone in the margin; gradient check; float32 agreement.
  const auto m = torch::linspace(-3, 3, 61, torch::kFloat64);
  const auto l = simpo_loss(m, torch::zeros({61}, torch::kFloat64), {.beta = 2.5, .simpo_gamma = 1.0}).losses;
  CHECK((l.slice(0, 1) < l.slice(0, 0, -1)).all().item<bool>());
  torch::manual_seed(11);
  const auto a = avg_logps(6), b = avg_logps(6);
  for (const auto t : {CPOLossType::simpo, CPOLossType::sigmoid, CPOLossType::hinge, CPOLossType::ipo}) {
    for (const double alpha : {0.0, 0.25}) {
      INFO(to_string(t) << " alpha " << alpha);
      const CPOLossConfig cfg{t, 2.0, 0.1, 0.5, alpha};
      CHECK(grad_error([&](const std::vector<at::Tensor>& x) { return cpo_loss(x[0], x[1], cfg).losses.sum(); },
                       {a, b}) < 1e-6);
      const auto f = cpo_loss(a.to(torch::kFloat32), b.to(torch::kFloat32), cfg).losses;
      CHECK(torch::allclose(f.to(torch::kFloat64), cpo_loss(a, b, cfg).losses, 1e-5, 1e-6));
    }
  }
}

TEST_CASE("cpo_loss errors", "[algos][pref]") {
  const auto x = torch::zeros({2}, torch::kFloat64);
  CHECK_THROWS_WITH(parse_cpo_loss_type("alphapo"), Catch::Contains("expected one of 'sigmoid', 'hinge', 'ipo', 'simpo'"));
  CHECK_THROWS_WITH(parse_cpo_loss_type("kto_pair"), Catch::Contains("kto_loss"));
  CHECK_THROWS_WITH(simpo_loss(x, x, {.beta = 0.0}), Catch::Contains("beta must be nonzero"));
  CHECK_THROWS_AS(simpo_loss(x, torch::zeros({3}, torch::kFloat64)), verl::ShapeError);
}

TEST_CASE("odds_ratio_loss equals TRL 0.28.0 ORPOTrainer.odds_ratio_loss", "[algos][pref]") {
  const auto golden = verl::test::load_golden("pref/orpo.json");
  REQUIRE(golden.cases.size() == 6);
  for (const auto& c : golden.cases) {
    INFO(c.name);
    const auto pc = c.input("policy_chosen_logps");
    const auto out = odds_ratio_loss(pc, c.input("policy_rejected_logps"), {c.config.at("beta").get<double>()});
    const bool f32 = pc.scalar_type() == torch::kFloat32;  // TRL computes float64 in float32
    const auto cmp = [f32](const at::Tensor& got, const at::Tensor& want) {
      return f32 ? verl::test::matches_golden(got, want) : close32(got, want);
    };
    CHECK(cmp(out.losses, c.output("losses")));
    CHECK(cmp(out.chosen_rewards, c.output("chosen_rewards")));
    CHECK(cmp(out.rejected_rewards, c.output("rejected_rewards")));
    CHECK(cmp(out.log_odds_ratio, c.output("log_odds_ratio")));
    CHECK(cmp(out.log_odds_chosen, c.output("log_odds_chosen")));
  }
}

TEST_CASE("odds_ratio_loss hand-worked values, log1mexp, gradients", "[algos][pref]") {
  // p_c = 0.5, p_r = 0.2: odds 1 and 0.25, log odds ratio log 4; loss = beta logsig(log 4) = beta log(0.8).
  const auto out = odds_ratio_loss(torch::tensor({std::log(0.5)}, torch::kFloat64),
                                   torch::tensor({std::log(0.2)}, torch::kFloat64), {.beta = 0.1});
  CHECK(out.log_odds_chosen.item<double>() == Approx(std::log(4.0)).epsilon(1e-13));
  CHECK(out.losses.item<double>() == Approx(0.1 * std::log(0.8)).epsilon(1e-13));
  CHECK(out.log_odds_ratio.item<double>() == Approx(std::log(0.8)).epsilon(1e-13));
  // log1mexp on both branches: log(1 - e^x).
  const auto x = torch::tensor({-5.0, -0.7, -0.69, -1e-3}, torch::kFloat64);
  CHECK(torch::allclose(log1mexp(x), torch::log(1 - torch::exp(x)), 1e-12, 0));
  torch::manual_seed(12);
  CHECK(grad_error([](const std::vector<at::Tensor>& v) { return odds_ratio_loss(v[0], v[1]).losses.sum(); },
                   {avg_logps(6), avg_logps(6)}) < 1e-6);
  // float32 agreement; half precision computes in float32.
  const auto a = avg_logps(8), b = avg_logps(8);
  CHECK(torch::allclose(odds_ratio_loss(a.to(torch::kFloat32), b.to(torch::kFloat32)).losses.to(torch::kFloat64),
                        odds_ratio_loss(a, b).losses, 1e-5, 1e-6));
  CHECK(odds_ratio_loss(a.to(torch::kHalf), b.to(torch::kHalf)).losses.scalar_type() == torch::kFloat32);
}

TEST_CASE("sft_nll_loss equals transformers 5.2.0 ForCausalLMLoss", "[algos][pref]") {
  const auto golden = verl::test::load_golden("pref/sft.json");
  REQUIRE(golden.cases.size() == 6);
  for (const auto& c : golden.cases) {
    INFO(c.name);
    SFTLossConfig cfg;
    cfg.shift_labels = c.config.at("shift_labels").get<bool>();
    if (!c.config.at("num_items_in_batch").is_null()) cfg.num_items_in_batch = c.config.at("num_items_in_batch").get<double>();
    const auto& logits = c.input("logits");
    const auto loss = sft_nll_loss(logits, c.input("labels"), cfg);
    if (logits.scalar_type() == torch::kFloat32) {
      CHECK(verl::test::matches_golden(loss, c.output("loss")));
    } else {
      CHECK(close32(loss, c.output("loss")));  // transformers computes float64 logits in float32
    }
    cfg.algorithm = SFTLossAlgorithm::fused;  // logsumexp - target logit: equal up to rounding
    CHECK(torch::allclose(sft_nll_loss(logits, c.input("labels"), cfg).to(torch::kFloat64),
                          c.output("loss").to(torch::kFloat64), 2e-6, 1e-6));
  }
}

TEST_CASE("sft_nll_loss hand-worked values, edge cases, gradients", "[algos][pref]") {
  // Uniform logits over V=4: every counted token costs log 4. Labels shift left; -100 and the last position
  // are ignored.
  const auto logits = torch::zeros({1, 4, 4}, torch::kFloat64);
  const auto labels = torch::tensor({{-100, 2, -100, 3}}, torch::kLong);  // targets after shift: 2, -100, 3, -100
  CHECK(sft_nll_loss(logits, labels).item<double>() == Approx(std::log(4.0)).epsilon(1e-15));
  // num_items_in_batch: sum (2 log 4) / 8.
  CHECK(sft_nll_loss(logits, labels, {.num_items_in_batch = 8.0}).item<double>() ==
        Approx(2 * std::log(4.0) / 8).epsilon(1e-15));
  // A confident correct logit: logit 10 on the target among zeros -> log(e^10 + 3) - 10 = log1p(3 e^-10).
  auto l2 = torch::zeros({1, 2, 4}, torch::kFloat64);
  l2[0][0][1] = 10.0;
  const auto one = sft_nll_loss(l2, torch::tensor({{0, 1}}, torch::kLong));
  CHECK(one.item<double>() == Approx(std::log1p(3 * std::exp(-10.0))).epsilon(1e-12));
  // All labels ignored: 0/0 = NaN, as PyTorch's mean cross entropy.
  CHECK(std::isnan(sft_nll_loss(logits, torch::full({1, 4}, -100, torch::kLong)).item<double>()));
  CHECK(std::isnan(sft_nll_loss(logits, torch::full({1, 4}, -100, torch::kLong), {.algorithm = SFTLossAlgorithm::fused})
                       .item<double>()));
  // Gradients (both algorithms), float32 agreement.
  torch::manual_seed(13);
  const auto x = torch::randn({2, 5, 6}, torch::kFloat64);
  auto y = torch::randint(0, 6, {2, 5}, torch::kLong);
  y[0][1] = -100;
  for (const auto alg : {SFTLossAlgorithm::reference, SFTLossAlgorithm::fused}) {
    CHECK(grad_error([&](const std::vector<at::Tensor>& v) { return sft_nll_loss(v[0], y, {.algorithm = alg}); }, {x}) <
          1e-7);
    CHECK(sft_nll_loss(x.to(torch::kFloat32), y, {.algorithm = alg}).item<double>() ==
          Approx(sft_nll_loss(x, y).item<double>()).epsilon(1e-6));
  }
  // Errors.
  CHECK_THROWS_WITH(sft_nll_loss(x, torch::full({2, 5}, 6, torch::kLong)), Catch::Contains("outside [0, 6)"));
  // The range check looks at the targets after the shift: a bad label at t = 0 is never a target (no error),
  // the same label without the shift is (error); a negative label other than ignore_index is an error.
  auto first_bad = y.clone();
  first_bad[1][0] = 99;
  CHECK_NOTHROW(sft_nll_loss(x, first_bad));
  CHECK_THROWS_WITH(sft_nll_loss(x, first_bad, {.shift_labels = false}), Catch::Contains("outside [0, 6)"));
  auto negative = y.clone();
  negative[0][3] = -5;
  CHECK_THROWS_WITH(sft_nll_loss(x, negative), Catch::Contains("outside [0, 6)"));
  CHECK_THROWS_AS(sft_nll_loss(x, y.to(torch::kInt)), verl::ShapeError);
  CHECK_THROWS_WITH(sft_nll_loss(x.reshape({10, 6}), y), Catch::Contains("(B,T,V)"));
}

}  // namespace test_pref_misc
