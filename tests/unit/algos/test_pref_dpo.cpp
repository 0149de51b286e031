// verl::pref::dpo_loss (include/verl/algos/pref/dpo.hpp) against Hugging Face TRL's DPOTrainer.dpo_loss,
// trl 0.28.0 from PyPI (= commit a68fb896's function; tests/golden/generate_pref.py writes tests/golden/pref/dpo.json).
// Golden comparisons are exact (==) in float32 and float64: our code issues the same ATen operations in the same
// order as TRL's expression.
#include "verl/algos/pref/dpo.hpp"

#include "catch_torch.hpp"
#include "golden.hpp"

#include <torch/csrc/autograd/autograd.h>

#include <cmath>
#include <functional>
#include <set>
#include <string>
#include <vector>

namespace test_pref_dpo {  // one namespace per file: a unity build (tests/CMakeLists.txt) may join files

using namespace verl::pref;

namespace {

DPOLossConfig dpo_config_of(const nlohmann::json& c) {
  DPOLossConfig cfg;
  cfg.loss_type = parse_dpo_loss_type(c.at("loss_type").get<std::string>());
  cfg.beta = c.at("beta").get<double>();
  cfg.label_smoothing = c.at("label_smoothing").get<double>();
  cfg.reference_free = c.at("reference_free").get<bool>();
  cfg.discopop_tau = c.at("discopop_tau").get<double>();
  cfg.f_divergence_type = parse_f_divergence(c.at("f_divergence_type").get<std::string>());
  cfg.f_alpha_divergence_coef = c.at("f_alpha_divergence_coef").get<double>();
  return cfg;
}


// Max |autograd - central finite difference| of sum(f(x)) w.r.t. each of `xs` (float64).
double grad_error(const std::function<at::Tensor(const std::vector<at::Tensor>&)>& f, std::vector<at::Tensor> xs) {
  for (auto& x : xs) x = x.detach().clone().set_requires_grad(true);
  const auto out = f(xs).sum();
  const auto grads = torch::autograd::grad({out}, xs);
  double worst = 0.0;
  const double eps = 1e-6;
  for (std::size_t k = 0; k < xs.size(); ++k) {
    for (int64_t i = 0; i < xs[k].numel(); ++i) {
      auto plus = xs;
      auto minus = xs;
      for (auto& t : plus) t = t.detach().clone();
      for (auto& t : minus) t = t.detach().clone();
      plus[k].view(-1)[i] += eps;
      minus[k].view(-1)[i] -= eps;
      const double fd = (f(plus).sum().item<double>() - f(minus).sum().item<double>()) / (2 * eps);
      worst = std::max(worst, std::abs(fd - grads[k].view(-1)[i].item<double>()));
    }
  }
  return worst;
}

at::Tensor randn_logps(int64_t n, torch::Dtype dtype = torch::kFloat64) { return -torch::rand({n}, dtype) * 20; }

constexpr DPOLossType kAllTypes[] = {DPOLossType::sigmoid,  DPOLossType::hinge,       DPOLossType::ipo,
                                     DPOLossType::exo_pair, DPOLossType::nca_pair,    DPOLossType::robust,
                                     DPOLossType::sppo_hard, DPOLossType::aot,        DPOLossType::aot_unpaired,
                                     DPOLossType::apo_zero, DPOLossType::apo_down,    DPOLossType::discopop};

}  // namespace

TEST_CASE("dpo_loss equals TRL 0.28.0 DPOTrainer.dpo_loss bit for bit, every loss type", "[algos][pref]") {
  const auto golden = verl::test::load_golden("pref/dpo.json");
  REQUIRE(golden.cases.size() >= 2 * 12 * 4);
  std::set<std::string> types_seen;
  for (const auto& c : golden.cases) {
    INFO(c.name);
    const auto cfg = dpo_config_of(c.config);
    types_seen.insert(std::string(to_string(cfg.loss_type)));
    const bool no_ref = c.config.at("no_reference").get<bool>();
    const auto out = dpo_loss(c.input("policy_chosen_logps"), c.input("policy_rejected_logps"),
                              no_ref ? at::Tensor{} : c.input("reference_chosen_logps"),
                              no_ref ? at::Tensor{} : c.input("reference_rejected_logps"), cfg);
    CHECK(verl::test::matches_golden(out.losses, c.output("losses")));
    CHECK(verl::test::matches_golden(out.chosen_rewards, c.output("chosen_rewards")));
    CHECK(verl::test::matches_golden(out.rejected_rewards, c.output("rejected_rewards")));
  }
  CHECK(types_seen.size() == 12);
}

TEST_CASE("dpo_loss hand-worked values", "[algos][pref]") {
  const auto z = torch::zeros({1}, torch::kFloat64);  // (1,)
  // Zero margin: logits 0, -logsig(0) = log 2 for sigmoid; the label-smoothed mix is also log 2.
  CHECK(dpo_loss(z, z, z, z).losses.item<double>() == Approx(std::log(2.0)).epsilon(1e-15));
  CHECK(dpo_loss(z, z, z, z, {.label_smoothing = 0.3}).losses.item<double>() == Approx(std::log(2.0)).epsilon(1e-15));
  // pi_c=-1, pi_r=-3, ref_c=-2, ref_r=-2: logits = (-1+3) - 0 = 2; beta 0.5 -> b*logits = 1.
  const auto pc = torch::tensor({-1.0}, torch::kFloat64);
  const auto pr = torch::tensor({-3.0}, torch::kFloat64);
  const auto rc = torch::tensor({-2.0}, torch::kFloat64);
  const auto rr = torch::tensor({-2.0}, torch::kFloat64);
  auto loss = [&](DPOLossType t, double ls = 0.0) {
    return dpo_loss(pc, pr, rc, rr, {.loss_type = t, .beta = 0.5, .label_smoothing = ls}).losses.item<double>();
  };
  const double sp1 = std::log1p(std::exp(-1.0));  // -logsig(1) = softplus(-1)
  CHECK(loss(DPOLossType::sigmoid) == Approx(sp1).epsilon(1e-14));
  // cDPO with ls=0.1: 0.9 softplus(-1) + 0.1 softplus(1).
  CHECK(loss(DPOLossType::sigmoid, 0.1) == Approx(0.9 * sp1 + 0.1 * std::log1p(std::exp(1.0))).epsilon(1e-14));
  // robust with ls=0.1: (0.9 softplus(-1) - 0.1 softplus(1)) / 0.8.
  CHECK(loss(DPOLossType::robust, 0.1) == Approx((0.9 * sp1 - 0.1 * std::log1p(std::exp(1.0))) / 0.8).epsilon(1e-14));
  CHECK(loss(DPOLossType::hinge) == Approx(0.0).margin(1e-15));          // relu(1 - 1)
  CHECK(loss(DPOLossType::ipo) == Approx(1.0).epsilon(1e-15));           // (2 - 1/(2*0.5))^2 = 1
  // sppo_hard: a = 1, c = -1, 1/(2b) = 1: (1-1)^2 + (-1+1)^2 = 0.
  CHECK(loss(DPOLossType::sppo_hard) == Approx(0.0).margin(1e-15));
  // nca_pair: rc = 0.5, rr = -0.5: softplus(-0.5) + 0.5 softplus(0.5) + 0.5 softplus(-0.5).
  const auto spm = std::log1p(std::exp(-0.5));
  const auto spp = std::log1p(std::exp(0.5));
  CHECK(loss(DPOLossType::nca_pair) == Approx(spm + 0.5 * spp + 0.5 * spm).epsilon(1e-14));
  // apo_zero: 1 - sig(0.5) + sig(-0.5) = 2 sig(-0.5); apo_down: sig(0.5) + 1 - sig(1).
  const auto sig = [](double x) { return 1.0 / (1.0 + std::exp(-x)); };
  CHECK(loss(DPOLossType::apo_zero) == Approx(2 * sig(-0.5)).epsilon(1e-14));
  CHECK(loss(DPOLossType::apo_down) == Approx(sig(0.5) + 1 - sig(1.0)).epsilon(1e-14));
  // discopop (tau 0.05): z = 1, m = sig(20): softplus(-1) (1 - m) + e^-1 m.
  CHECK(loss(DPOLossType::discopop) == Approx(sp1 * (1 - sig(20.0)) + std::exp(-1.0) * sig(20.0)).epsilon(1e-13));
  // exo_pair with ls=0 uses 1e-3: sig(1)(logsig(1) - log(0.999)) + sig(-1)(logsig(-1) - log(1e-3)).
  CHECK(loss(DPOLossType::exo_pair) ==
        Approx(sig(1.0) * (-sp1 - std::log(0.999)) + sig(-1.0) * (-std::log1p(std::exp(1.0)) - std::log(1e-3)))
            .epsilon(1e-14));
  // Rewards: beta (pi - ref): 0.5 * 1, 0.5 * -1.
  const auto out = dpo_loss(pc, pr, rc, rr, {.beta = 0.5});
  CHECK(out.chosen_rewards.item<double>() == 0.5);
  CHECK(out.rejected_rewards.item<double>() == -0.5);
}

TEST_CASE("dpo_loss aot sorts the log-ratios across the batch", "[algos][pref]") {
  // aot: delta = sort(pi_c - pi_r) - sort(ref_c - ref_r). Policy ratios {3, -1}, reference {0, 2}
  // -> sorted {-1, 3} - {0, 2} = {-1, 1}: losses softplus(0.1), softplus(-0.1) at beta 0.1 (in sorted order).
  const auto pc = torch::tensor({3.0, -1.0}, torch::kFloat64);
  const auto pr = torch::zeros({2}, torch::kFloat64);
  const auto rc = torch::tensor({0.0, 2.0}, torch::kFloat64);
  const auto rr = torch::zeros({2}, torch::kFloat64);
  const auto l = dpo_loss(pc, pr, rc, rr, {.loss_type = DPOLossType::aot}).losses;
  CHECK(l[0].item<double>() == Approx(std::log1p(std::exp(0.1))).epsilon(1e-14));
  CHECK(l[1].item<double>() == Approx(std::log1p(std::exp(-0.1))).epsilon(1e-14));
}

TEST_CASE("dpo_loss reference handling matches TRL", "[algos][pref]") {
  torch::manual_seed(1);
  const auto pc = randn_logps(8), pr = randn_logps(8), rc = randn_logps(8), rr = randn_logps(8);
  for (const auto t : kAllTypes) {
    INFO(to_string(t));
    // No reference model (undefined) == explicit zeros, with and without reference_free.
    const auto zeros = torch::zeros({8}, torch::kFloat64);
    const auto none = dpo_loss(pc, pr, {}, {}, {.loss_type = t});
    CHECK(torch::equal(none.losses, dpo_loss(pc, pr, zeros, zeros, {.loss_type = t}).losses));
    CHECK(torch::equal(none.losses, dpo_loss(pc, pr, zeros, zeros, {.loss_type = t, .reference_free = true}).losses));
    CHECK(torch::equal(none.chosen_rewards, pc * 0.1));
  }
  // reference_free reaches the logits-based types but not nca_pair/sppo_hard/aot*/discopop (TRL reads ref there).
  const auto free_sig = dpo_loss(pc, pr, rc, rr, {.reference_free = true}).losses;
  CHECK(torch::equal(free_sig, dpo_loss(pc, pr, {}, {}).losses));
  for (const auto t : {DPOLossType::nca_pair, DPOLossType::sppo_hard, DPOLossType::aot, DPOLossType::discopop}) {
    CHECK(torch::equal(dpo_loss(pc, pr, rc, rr, {.loss_type = t, .reference_free = true}).losses,
                       dpo_loss(pc, pr, rc, rr, {.loss_type = t}).losses));
  }
  // Rewards always use the reference log-probs.
  CHECK(torch::equal(dpo_loss(pc, pr, rc, rr, {.reference_free = true}).chosen_rewards, (pc - rc) * 0.1));
}

TEST_CASE("dpo_loss properties: sigmoid decreases with the margin, IPO minimum at 1/(2 beta)", "[algos][pref]") {
  const auto margins = torch::linspace(-10, 10, 201, torch::kFloat64);  // (201,) logits
  const auto zeros = torch::zeros({201}, torch::kFloat64);
  const auto sig = dpo_loss(margins, zeros, zeros, zeros).losses;       // (201,)
  CHECK((sig.slice(0, 1) < sig.slice(0, 0, -1)).all().item<bool>());
  for (const double beta : {0.1, 0.25, 1.0}) {
    const auto ipo = dpo_loss(margins, zeros, zeros, zeros, {.loss_type = DPOLossType::ipo, .beta = beta}).losses;
    const auto argmin = ipo.argmin().item<int64_t>();
    CHECK(margins[argmin].item<double>() == Approx(1.0 / (2.0 * beta)).margin(0.05 + 1e-9));
    const auto at_min = dpo_loss(torch::tensor({1.0 / (2 * beta)}, torch::kFloat64), zeros.slice(0, 0, 1),
                                 zeros.slice(0, 0, 1), zeros.slice(0, 0, 1), {.loss_type = DPOLossType::ipo, .beta = beta});
    CHECK(at_min.losses.item<double>() == 0.0);
  }
  // Every loss is finite and the rewards are detached.
  torch::manual_seed(2);
  const auto pc = randn_logps(16).requires_grad_(), pr = randn_logps(16), rc = randn_logps(16), rr = randn_logps(16);
  for (const auto t : kAllTypes) {
    const auto out = dpo_loss(pc, pr, rc, rr, {.loss_type = t});
    CHECK(torch::isfinite(out.losses).all().item<bool>());
    CHECK(out.losses.requires_grad());
    CHECK(!out.chosen_rewards.requires_grad());
    CHECK(!out.rejected_rewards.requires_grad());
  }
}

TEST_CASE("dpo_loss gradients match finite differences in float64", "[algos][pref]") {
  torch::manual_seed(3);
  const auto pc = randn_logps(6), pr = randn_logps(6), rc = randn_logps(6), rr = randn_logps(6);
  std::vector<DPOLossConfig> configs;
  for (const auto t : kAllTypes) configs.push_back({.loss_type = t, .beta = 0.3});
  configs.push_back({.loss_type = DPOLossType::sigmoid, .label_smoothing = 0.2});
  configs.push_back({.loss_type = DPOLossType::robust, .label_smoothing = 0.2});
  configs.push_back({.loss_type = DPOLossType::sigmoid, .f_divergence_type = FDivergence::js_divergence});
  configs.push_back({.loss_type = DPOLossType::sigmoid, .f_divergence_type = FDivergence::alpha_divergence,
                     .f_alpha_divergence_coef = 0.5});
  for (const auto& cfg : configs) {
    INFO(to_string(cfg.loss_type) << " ls " << cfg.label_smoothing << " f " << static_cast<int>(cfg.f_divergence_type));
    const double err = grad_error([&](const std::vector<at::Tensor>& x) {
      return dpo_loss(x[0], x[1], x[2], x[3], cfg).losses;
    }, {pc, pr, rc, rr});
    CHECK(err < 1e-6);
  }
}

TEST_CASE("dpo_loss float32 agrees with float64", "[algos][pref]") {
  torch::manual_seed(4);
  const auto pc = randn_logps(32), pr = randn_logps(32), rc = pc + torch::randn({32}, torch::kFloat64),
             rr = pr + torch::randn({32}, torch::kFloat64);
  for (const auto t : kAllTypes) {
    INFO(to_string(t));
    const auto d = dpo_loss(pc, pr, rc, rr, {.loss_type = t}).losses;
    const auto f = dpo_loss(pc.to(torch::kFloat32), pr.to(torch::kFloat32), rc.to(torch::kFloat32),
                            rr.to(torch::kFloat32), {.loss_type = t}).losses;
    CHECK(f.scalar_type() == torch::kFloat32);
    // Inputs of magnitude <= 20 rounded to float32 (abs. error ~1e-6) and float32 arithmetic: 1e-4 relative.
    CHECK(torch::allclose(f.to(torch::kFloat64), d, 1e-4, 1e-5));
  }
}

TEST_CASE("dpo_loss rejects what TRL rejects, with clear messages", "[algos][pref]") {
  const auto x = torch::zeros({3}, torch::kFloat64);
  CHECK_THROWS_AS(parse_dpo_loss_type("foo"), verl::ConfigError);
  CHECK_THROWS_WITH(parse_dpo_loss_type("foo"), Catch::Contains("unknown loss type `foo`") && Catch::Contains("'apo_down'"));
  CHECK_THROWS_WITH(parse_dpo_loss_type("kto_pair"), Catch::Contains("kto_loss"));
  CHECK_THROWS_WITH(parse_dpo_loss_type("bco_pair"), Catch::Contains("not a pure function"));
  CHECK_THROWS_WITH(parse_dpo_loss_type("sft"), Catch::Contains("sft_nll_loss"));
  CHECK(parse_dpo_loss_type("aot_pair") == DPOLossType::aot_unpaired);  // DPOConfig's deprecated alias
  CHECK_THROWS_WITH(dpo_loss(x, x, x, x, "nope"), Catch::Contains("unknown loss type `nope`"));
  CHECK_THROWS_WITH(parse_f_divergence("kl"), Catch::Contains("unknown f_divergence_type"));
  CHECK_THROWS_AS(dpo_loss(x, x, x, x, {.loss_type = DPOLossType::ipo, .beta = 0.0}), verl::ConfigError);
  CHECK_THROWS_WITH(dpo_loss(x, x, x, x, {.loss_type = DPOLossType::sppo_hard, .beta = 0.0}),
                    Catch::Contains("beta must be nonzero"));
  CHECK_THROWS_WITH(dpo_loss(x, x, x, x, {.loss_type = DPOLossType::exo_pair, .label_smoothing = 1.0}),
                    Catch::Contains("must lie in [0, 1)"));
  CHECK_THROWS_WITH(dpo_loss(x, x, x, x, {.loss_type = DPOLossType::robust, .label_smoothing = 0.5}),
                    Catch::Contains("1 - 2 * label_smoothing"));
  CHECK_THROWS_AS(dpo_loss(x, x, x, torch::zeros({4}, torch::kFloat64)), verl::ShapeError);
  CHECK_THROWS_WITH(dpo_loss(x, x, x, x.to(torch::kFloat32)), Catch::Contains("reference_rejected_logps"));
  CHECK_THROWS_WITH(dpo_loss(x, x, x, {}), Catch::Contains("both reference log-prob tensors or neither"));
  CHECK_THROWS_WITH(dpo_loss(x.reshape({3, 1}), x, x, x), Catch::Contains("must be 1-D"));
  // Label smoothing on a type that ignores it is accepted, as TRL (which only warns).
  CHECK(torch::equal(dpo_loss(x, x, x, x, {.loss_type = DPOLossType::hinge, .label_smoothing = 0.2}).losses,
                     dpo_loss(x, x, x, x, {.loss_type = DPOLossType::hinge}).losses));
}

}  // namespace test_pref_dpo
