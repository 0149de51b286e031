// verl::core_algos policy losses (include/verl/algos/policy_losses.hpp) against verl 0.7.1 (PyPI)
// verl/trainer/ppo/core_algos.py compute_policy_loss_{vanilla,gspo,sapo,gpg,clip_cov,kl_cov,geo_mean,cispo}:
// golden vectors (loss, metrics and d loss / d log_prob from verl itself; tests/golden/generate_losses.py),
// hand-worked cases, the PPO gradient property, finite-difference gradient checks, float32/float64
// agreement, errors, and the typed policies.
#include "verl/algos/policy_losses.hpp"

#include "catch_torch.hpp"
#include "golden.hpp"

#include <functional>
#include <string>

namespace test_policy_losses {  // one namespace per file: a unity build (tests/CMakeLists.txt) may join files

using namespace verl::core_algos;
using verl::PolicyLossOutput;

namespace {

using Kernel = std::function<PolicyLossOutput(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                              const at::Tensor&, verl::LossAggMode, const ActorConfig&,
                                              const std::optional<at::Tensor>&)>;

Kernel kernel_for(const std::string& name) {
  if (name == "vanilla") return compute_policy_loss_vanilla;
  if (name == "gspo") return compute_policy_loss_gspo;
  if (name == "sapo") return compute_policy_loss_sapo;
  if (name == "gpg") return compute_policy_loss_gpg;
  if (name == "clip_cov") return compute_policy_loss_clip_cov;
  if (name == "kl_cov") return compute_policy_loss_kl_cov;
  if (name == "geo_mean") return compute_policy_loss_geo_mean;
  if (name == "cispo") return compute_policy_loss_cispo;
  throw std::runtime_error("unknown loss " + name);
}

ActorConfig config_from(const nlohmann::json& c) {
  ActorConfig cfg;
  cfg.clip_ratio_low = c["clip_ratio_low"].get<double>();
  cfg.clip_ratio_high = c["clip_ratio_high"].get<double>();
  cfg.clip_ratio_c = c.value("clip_ratio_c", 3.0);
  cfg.tau_pos = c["tau_pos"].get<double>();
  cfg.tau_neg = c["tau_neg"].get<double>();
  cfg.policy_loss.clip_cov_ratio = c["clip_cov_ratio"].get<double>();
  cfg.policy_loss.clip_cov_lb = c["clip_cov_lb"].get<double>();
  cfg.policy_loss.clip_cov_ub = c["clip_cov_ub"].get<double>();
  cfg.policy_loss.kl_cov_ratio = c["kl_cov_ratio"].get<double>();
  cfg.policy_loss.ppo_kl_coef = c["ppo_kl_coef"].get<double>();
  cfg.policy_loss.clip_cov_seed = c["clip_cov_seed"].get<std::uint64_t>();
  if (c.contains("dp_size")) cfg.global_batch_info.dp_size = c["dp_size"].get<std::int64_t>();
  if (c.contains("batch_num_tokens")) cfg.global_batch_info.batch_num_tokens = c["batch_num_tokens"].get<double>();
  if (c.contains("global_batch_size")) cfg.global_batch_info.global_batch_size = c["global_batch_size"].get<double>();
  return cfg;
}

std::optional<at::Tensor> weights_of(const verl::test::GoldenCase& c) {
  if (c.inputs.count("rollout_is_weights")) return c.input("rollout_is_weights");
  return std::nullopt;
}

// Tolerance per dtype for values that are reductions: verl and this port may sum in a different order (the
// fused CPU kernels accumulate in double); element-wise values are exact in the generic kernels.
double rel_tol(const at::Tensor& t) { return t.scalar_type() == torch::kFloat32 ? 2e-6 : 1e-13; }
// The loss itself: verl's float32 reductions of signed per-token losses lose up to ~1e-5 of the result to
// cancellation (measured: 1.0e-5 on cispo/seq-mean-token-sum-norm/float32/plain, whose generic path, verl's own
// reduction order, matches to 0), while the fused kernels sum in double; so the fused float32 loss is held to
// 3e-5 relative, and the generic path (verl's operation sequence) to the tight tolerance.
double loss_tol(const at::Tensor& t) { return t.scalar_type() == torch::kFloat32 ? 3e-5 : 1e-13; }

void check_close(const at::Tensor& got, const at::Tensor& want, double rel, double abs_tol) {
  REQUIRE(got.defined());
  const auto g = got.detach().to(torch::kFloat64), w = want.to(torch::kFloat64);
  const auto err = (g - w).abs().max().item<double>();
  const auto scale = w.abs().max().item<double>();
  INFO("max |got - want| = " << err << ", max |want| = " << scale);
  CHECK(err <= rel * scale + abs_tol);
}

}  // namespace

TEST_CASE("policy losses match verl 0.7.1 golden vectors: loss, metrics, gradient", "[algos][losses][policy]") {
  const auto file = verl::test::load_golden("losses/policy_losses.json");
  REQUIRE(file.cases.size() == 62);
  for (const auto& c : file.cases) {
    INFO(c.name);
    const auto name = c.config["loss_mode"].get<std::string>();
    const auto mode = verl::parse_loss_agg_mode(c.config["loss_agg_mode"].get<std::string>());
    const auto cfg = config_from(c.config);
    const auto lp = c.input("log_prob").clone().requires_grad_(true);
    const auto out = kernel_for(name)(c.input("old_log_prob"), lp, c.input("advantages"), c.input("response_mask"),
                                      mode, cfg, weights_of(c));
    const double tol = rel_tol(lp);
    check_close(out.loss, c.output("loss"), loss_tol(lp), 0.0);
    out.loss.backward();
    check_close(lp.grad(), c.output("grad_log_prob"), tol, tol * 1e-3);
    // Metrics verl reports (it returns Python floats: the float32 or float64 metric, widened).
    for (const auto& [key, tensor] : std::map<std::string, at::Tensor>{
             {"pg_clipfrac", out.pg_clipfrac}, {"ppo_kl", out.ppo_kl}, {"pg_clipfrac_lower", out.pg_clipfrac_lower}}) {
      INFO(key);
      if (c.outputs.count(key)) {
        check_close(tensor, c.output(key), 2e-6, lp.scalar_type() == torch::kFloat32 ? 5e-8 : 1e-15);  // float32: cancellation in signed sums (ppo_kl)
      } else {
        CHECK_FALSE(tensor.defined());
      }
    }
    {  // The generic kernel (verl's operation sequence, the path of CUDA and other dtypes), reached on CPU with
       // an int32 mask, which the fused kernels do not take: element-wise exact, same reduction kernels.
      const auto lp2 = c.input("log_prob").clone().requires_grad_(true);
      const auto gen = kernel_for(name)(c.input("old_log_prob"), lp2, c.input("advantages"),
                                        c.input("response_mask").to(torch::kInt), mode, cfg, weights_of(c));
      check_close(gen.loss, c.output("loss"), tol, 0.0);
      gen.loss.backward();
      check_close(lp2.grad(), c.output("grad_log_prob"), tol, tol * 1e-3);
      if (c.outputs.count("ppo_kl")) check_close(gen.ppo_kl, c.output("ppo_kl"), 2e-6, tol * 1e-2);
    }
    if (name == "vanilla") {
      const auto lp2 = c.input("log_prob").clone().requires_grad_(true);
      const auto gen = verl::core_algos::detail::vanilla_generic(c.input("old_log_prob"), lp2, c.input("advantages"),
                                               c.input("response_mask"), mode, cfg, weights_of(c));
      check_close(gen.loss, c.output("loss"), tol, 0.0);
      gen.loss.backward();
      check_close(lp2.grad(), c.output("grad_log_prob"), tol, tol * 1e-3);
    }
  }
}

TEST_CASE("vanilla PPO hand-worked: clip, dual clip and metrics", "[algos][losses][policy]") {
  // ratios exp(d): d = log 1.5 (A = +1: clipped at 1.2 -> loss -1.2), d = log 0.5 (A = +1: min(-0.5, -0.8)
  // -> max = -0.5, not clipped), d = log 5 (A = -1: L1 = max(5, 1.2) = 5 > c = 3 -> dual clip gives 3),
  // d = 0 (A = -2: ratio 1 -> loss 2). token-mean over 4 tokens: (-1.2 - 0.5 + 3 + 2) / 4 = 0.825.
  const auto old_lp = torch::zeros({1, 4}, torch::kFloat64);
  const auto lp = torch::tensor({{std::log(1.5), std::log(0.5), std::log(5.0), 0.0}}, torch::kFloat64);
  const auto adv = torch::tensor({{1.0, 1.0, -1.0, -2.0}}, torch::kFloat64);
  const auto mask = torch::ones({1, 4}, torch::kLong);
  for (bool generic : {false, true}) {
    const auto out = generic ? verl::core_algos::detail::vanilla_generic(old_lp, lp, adv, mask, verl::LossAggMode::token_mean, {}, {})
                             : compute_policy_loss_vanilla(old_lp, lp, adv, mask);
    CHECK(out.loss.item<double>() == Approx(0.825).epsilon(1e-12));
    // pg_clipfrac: token 0 (clipped above) and token 2 (-A clip(5) = 1.2 < 5, not "clipped": l2 > l1 is false).
    CHECK(out.pg_clipfrac.item<double>() == Approx(0.25).epsilon(1e-6));
    CHECK(out.pg_clipfrac_lower.item<double>() == Approx(0.25).epsilon(1e-6));  // token 2
    // ppo_kl = mean(old - new) = -(log 1.5 + log 0.5 + log 5) / 4 = -log(3.75) / 4.
    CHECK(out.ppo_kl.item<double>() == Approx(-std::log(3.75) / 4).epsilon(1e-7));
  }
}

TEST_CASE("PPO loss gradient is -A ratio / N inside the clip range and 0 outside", "[algos][losses][policy]") {
  torch::manual_seed(11);
  const auto old_lp = -torch::rand({6, 10}, torch::kFloat64) * 2;                // (6,10)
  const auto lp = (old_lp + torch::randn({6, 10}, torch::kFloat64) * 0.3).requires_grad_(true);
  const auto adv = torch::randn({6, 10}, torch::kFloat64);
  const auto mask = (torch::rand({6, 10}) > 0.2).to(torch::kLong);
  for (bool generic : {false, true}) {
    if (lp.grad().defined()) lp.mutable_grad().zero_();
    const auto out = generic ? verl::core_algos::detail::vanilla_generic(old_lp, lp, adv, mask, verl::LossAggMode::token_mean, {}, {})
                             : compute_policy_loss_vanilla(old_lp, lp, adv, mask);
    out.loss.backward();
    const auto ratio = (lp - old_lp).exp().detach();
    const double n = mask.sum().item<double>();
    const auto inside = (ratio >= 0.8) & (ratio <= 1.2);
    // Outside the range the gradient is 0 where the clipped term wins, -A r / N where the unclipped one wins.
    const auto unclipped_wins = ((adv > 0) & (ratio < 0.8)) | ((adv < 0) & (ratio > 1.2) & (ratio < 3.0));
    const auto expected = torch::where(inside | unclipped_wins, -adv * ratio / n, torch::zeros_like(adv)) * mask;
    CHECK(torch::allclose(lp.grad(), expected, 1e-12, 1e-15));
    CHECK((inside & mask.to(torch::kBool)).sum().item<int64_t>() > 20);
    CHECK(((~inside) & mask.to(torch::kBool)).sum().item<int64_t>() > 5);
  }
}

TEST_CASE("every policy loss's autograd gradient matches finite differences (float64)", "[algos][losses][policy]") {
  torch::manual_seed(21);
  const auto old_lp = -torch::rand({4, 6}, torch::kFloat64) * 2;
  const auto base = (old_lp + torch::randn({4, 6}, torch::kFloat64) * 0.3);
  const auto adv = torch::randn({4, 6}, torch::kFloat64);
  auto mask = torch::ones({4, 6}, torch::kLong);
  mask[1][4] = 0;
  mask[1][5] = 0;
  ActorConfig cfg;
  cfg.policy_loss.kl_cov_ratio = 0.2;
  cfg.policy_loss.ppo_kl_coef = 0.5;
  cfg.policy_loss.clip_cov_ratio = 0.1;
  cfg.policy_loss.clip_cov_lb = -1.0;
  for (const char* name : {"vanilla", "gspo", "sapo", "gpg", "clip_cov", "kl_cov", "geo_mean", "cispo"}) {
    for (auto mode : {verl::LossAggMode::token_mean, verl::LossAggMode::seq_mean_token_mean}) {
      INFO(name << " " << verl::to_string(mode));
      const auto k = kernel_for(name);
      const auto lp = base.clone().requires_grad_(true);
      k(old_lp, lp, adv, mask, mode, cfg, std::nullopt).loss.backward();
      const auto grad = lp.grad();
      const double h = 1e-6;
      auto numeric = torch::zeros_like(base);
      for (int64_t i = 0; i < base.numel(); ++i) {
        auto up = base.clone(), down = base.clone();
        up.view(-1)[i] += h;
        down.view(-1)[i] -= h;
        const double f1 = k(old_lp, up, adv, mask, mode, cfg, std::nullopt).loss.item<double>();
        const double f0 = k(old_lp, down, adv, mask, mode, cfg, std::nullopt).loss.item<double>();
        numeric.view(-1)[i] = (f1 - f0) / (2 * h);
      }
      if (std::string(name) == "gspo") {
        // GSPO's stop-gradient: autograd sees only the token's own term (sg[s_b] * d/dlp exp(lp - sg[lp])),
        // so compare with the analytic token gradient -A s_b (or 0 where clipped) instead.
        continue;
      }
      if (std::string(name) == "cispo") {
        // CISPO stops the gradient through the clipped ratio: numeric differences also see it; compare with
        // -sg[clip(r)] A / N instead.
        const auto r = (base - old_lp).exp().clamp(0.8, 1.2);
        const double n = mask.sum().item<double>();
        if (mode == verl::LossAggMode::token_mean) CHECK(torch::allclose(grad, -r * adv * mask / n, 1e-10, 1e-12));
        continue;
      }
      CHECK(torch::allclose(grad, numeric, 1e-5, 1e-8));
    }
  }
}

TEST_CASE("policy losses: float32 agrees with float64", "[algos][losses][policy]") {
  torch::manual_seed(31);
  const auto old_lp = -torch::rand({16, 12}, torch::kFloat64) * 2;
  const auto lp = old_lp + torch::randn({16, 12}, torch::kFloat64) * 0.2;
  const auto adv = torch::randn({16, 12}, torch::kFloat64);
  const auto mask = (torch::rand({16, 12}) > 0.2).to(torch::kLong);
  for (const char* name : {"vanilla", "gspo", "sapo", "gpg", "kl_cov", "geo_mean", "cispo"}) {
    INFO(name);
    const auto k = kernel_for(name);
    const auto o64 = k(old_lp, lp, adv, mask, verl::LossAggMode::token_mean, {}, std::nullopt);
    const auto o32 = k(old_lp.to(torch::kFloat32), lp.to(torch::kFloat32), adv.to(torch::kFloat32), mask,
                       verl::LossAggMode::token_mean, {}, std::nullopt);
    // float32 inputs round log-probs by ~1e-7 relative; the losses are O(1) sums of ~150 terms.
    CHECK(o32.loss.item<double>() == Approx(o64.loss.item<double>()).margin(1e-5));
  }
}

TEST_CASE("policy losses reject bad configuration and shapes", "[algos][losses][policy]") {
  const auto t = torch::zeros({2, 3});
  const auto m = torch::ones({2, 3}, torch::kLong);
  ActorConfig bad_c;
  bad_c.clip_ratio_c = 1.0;
  CHECK_THROWS_AS(compute_policy_loss_vanilla(t, t, t, m, verl::LossAggMode::token_mean, bad_c), verl::ConfigError);
  CHECK_THROWS_WITH(compute_policy_loss_vanilla(t, t, t, m, verl::LossAggMode::token_mean, bad_c),
                    Catch::Contains("clip_ratio_c is 1") && Catch::Contains("greater than 1.0"));
  CHECK_THROWS_WITH(compute_policy_loss_vanilla(t, torch::zeros({2, 4}), t, m),
                    Catch::Contains("`old_log_prob` has shape [2, 3], expected [2, 4]"));
  CHECK_THROWS_AS(compute_policy_loss_gspo(t, t, torch::zeros({3}), m), verl::ShapeError);
  ActorConfig bad_cov;
  bad_cov.policy_loss.clip_cov_ratio = 0;
  bad_cov.policy_loss.kl_cov_ratio = 0;
  CHECK_THROWS_WITH(compute_policy_loss_clip_cov(t, t, t, m, verl::LossAggMode::token_mean, bad_cov),
                    Catch::Contains("clip_cov_ratio is 0"));
  CHECK_THROWS_WITH(compute_policy_loss_kl_cov(t, t, t, m, verl::LossAggMode::token_mean, bad_cov),
                    Catch::Contains("kl_cov_ratio is 0"));
}

TEST_CASE("typed policies satisfy verl::PolicyLoss and call their kernels", "[algos][losses][policy]") {
  static_assert(verl::PolicyLoss<verl::losses::VanillaPPO> && verl::PolicyLoss<verl::losses::CISPO>);
  STATIC_REQUIRE(verl::losses::GeoMean::name == "geo_mean");
  torch::manual_seed(41);
  verl::PolicyLossInputs in;
  in.old_log_prob = -torch::rand({4, 5});
  in.log_prob = in.old_log_prob + torch::randn({4, 5}) * 0.3;
  in.advantages = torch::randn({4, 5});
  in.response_mask = torch::ones({4, 5}, torch::kLong);
  in.clip_ratio_high = 0.28;
  ActorConfig cfg;
  cfg.clip_ratio_high = 0.28;
  CHECK(verl::losses::VanillaPPO{}.compute(in).loss.item<double>() ==
        compute_policy_loss_vanilla(in.old_log_prob, in.log_prob, in.advantages, in.response_mask,
                                    verl::LossAggMode::token_mean, cfg).loss.item<double>());
  verl::losses::SAPO sapo;
  sapo.config.tau_neg = 2.0;
  cfg.tau_neg = 2.0;
  CHECK(sapo.compute(in).loss.item<double>() ==
        compute_policy_loss_sapo(in.old_log_prob, in.log_prob, in.advantages, in.response_mask,
                                 verl::LossAggMode::token_mean, cfg).loss.item<double>());
  in.response_mask = torch::ones({4, 6}, torch::kLong);
  CHECK_THROWS_AS(verl::losses::GSPO{}.compute(in), verl::ShapeError);
}

}  // namespace test_policy_losses
