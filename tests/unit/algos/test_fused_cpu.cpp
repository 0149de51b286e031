// The fused CPU kernels (include/verl/algos/fused_cpu.hpp and their users) against the ATen paths that mirror
// verl 0.7.1's operation sequences, at sizes large enough that detail::parallel_rows splits the rows over
// LibTorch's intra-op threads (the golden vectors are small and run on one). Masks are random 0/1 with interior
// gaps and fully masked rows. What each comparison demands:
//   - advantages (GAE, REINFORCE++, REINFORCE++-baseline), agg_loss, value loss, KL penalties, compute_rewards:
//     bit for bit (the fused paths keep verl's element-wise operations and let ATen's sum reduce verl's
//     summands);
//   - policy losses: the generic path is verl's float reductions, the fused one sums in double, so the loss and
//     gradient agree to rounding; Clip-Cov's and KL-Cov's token choice must be identical (a single differing
//     token would move the float64 loss by ~1e-5 relative, far above the 1e-12 demanded).
#include "catch_torch.hpp"

#include "verl/algos/advantages.hpp"
#include "verl/algos/kl.hpp"
#include "verl/algos/loss_agg.hpp"
#include "verl/algos/policy_losses.hpp"
#include "verl/algos/value_loss.hpp"
#include "golden.hpp"

#include <string>

namespace test_fused_cpu {  // one namespace per file: a unity build (tests/CMakeLists.txt) may join files

using namespace verl::core_algos;

namespace {

constexpr std::int64_t kB = 96, kT = 1000;  // 96 rows of 1000 tokens: > ATen's grain, so several threads

at::Tensor random_mask(std::int64_t b, std::int64_t t) {
  auto m = (torch::rand({b, t}) > 0.15).to(torch::kLong);  // (B,T) interior gaps
  m[3].zero_();                                           // a fully masked row
  m.slice(1, t / 2).select(0, 5).zero_();                 // a right-padded row
  return m;
}

bool same(const at::Tensor& a, const at::Tensor& b) { return verl::test::bit_identical(a.detach(), b.detach()); }

}  // namespace

TEST_CASE("fused advantages equal verl's tensor sequence bit for bit on many threads", "[algos][advantages][fused]") {
  torch::manual_seed(101);
  for (auto dt : {torch::kFloat32, torch::kFloat64}) {
    for (bool bool_mask : {false, true}) {
      INFO(dt << (bool_mask ? " bool mask" : " int64 mask"));
      const auto r = torch::randn({kB, kT}, dt), v = torch::randn({kB, kT}, dt);  // (B,T)
      auto m = random_mask(kB, kT);
      if (bool_mask) m = m.to(torch::kBool);
      const auto gae = compute_gae_advantage_return(r, v, m, 0.99, 0.95);
      const auto raw = verl::core_algos::detail::gae_generic(r, v, m, 0.99, 0.95);
      CHECK(same(gae.advantages, verl::functional::masked_whiten(raw, m)));
      CHECK(same(gae.returns, raw + v));
      const auto rpp = compute_reinforce_plus_plus_outcome_advantage(r, m, {.gamma = 0.97});
      const auto ret = verl::core_algos::detail::reinforce_pp_generic(r, m, 0.97);
      CHECK(same(rpp.returns, ret));
      CHECK(same(rpp.advantages, verl::functional::masked_whiten(ret, m) * m));
      const auto index = torch::arange(kB).div(8, "floor");  // (B,) groups of 8
      const auto base = compute_reinforce_plus_plus_baseline_outcome_advantage(r, m, index);
      // verl: scores - group mean (the estimator's own group statistics), tiled, whitened, re-masked.
      const auto scores = r.sum(-1);                                                              // (B,)
      const auto stats = verl::core_algos::detail::group_stats(scores, index, false);
      const auto tiled = (scores - verl::core_algos::detail::per_item_tensor(stats.mean, dt, scores.device())).unsqueeze(-1) * m;
      CHECK(same(base.advantages, verl::functional::masked_whiten(tiled, m) * m));
    }
  }
}

TEST_CASE("fused GAE on long rows (skewed tiles of 3) equals verl's loop bit for bit", "[algos][advantages][fused]") {
  // Rows of >= 4096 tokens run 3 at a time, skewed by 16 tokens (advantages.hpp gae_skewed_rows): 7 rows leave a
  // single-row remainder; masks with interior gaps, a fully masked row and a right-padded one; int64, bool and
  // floating masks, and an integer mask with a 2 in it.
  torch::manual_seed(104);
  for (auto dt : {torch::kFloat32, torch::kFloat64}) {
    const auto r = torch::randn({7, 4100}, dt), v = torch::randn({7, 4100}, dt);  // (B,T)
    const auto m01 = random_mask(7, 4100);  // (B,T) int64 0/1
    auto odd = m01.clone();                  // a value that is not 0/1: passes 2 and 3 read the mask itself
    odd[1][7] = 2;
    for (const auto& m : {m01, m01.to(torch::kBool), m01.to(dt), odd}) {
      INFO(dt << " mask " << m.scalar_type());
      const auto gae = compute_gae_advantage_return(r, v, m, 0.99, 0.95);
      const auto raw = verl::core_algos::detail::gae_generic(r, v, m, 0.99, 0.95);
      CHECK(same(gae.advantages, verl::functional::masked_whiten(raw, m)));
      CHECK(same(gae.returns, raw + v));
    }
  }
}

TEST_CASE("fused REINFORCE++ equals verl's sequence bit for bit: tile edges, mask dtypes, 1 and 2 threads",
          "[algos][advantages][fused]") {
  // The CPU kernel runs rows in skewed tiles of 3 (row counts that leave a remainder, rows too short to skew,
  // and one lock-step column: T = 2*16 + 1), reads a 0/1 integer mask back as bytes, and falls back to the mask
  // itself when a value is not 0/1 (here 2 and -1).
  torch::manual_seed(103);
  const int threads = at::get_num_threads();
  for (const auto& [b, t] : std::vector<std::pair<std::int64_t, std::int64_t>>{{97, 1000}, {5, 33}, {7, 32}, {4, 3}}) {
    for (auto dt : {torch::kFloat32, torch::kFloat64}) {
      const auto r = torch::randn({b, t}, dt);  // (B,T)
      const auto m01 = b >= 6 ? random_mask(b, t) : (torch::rand({b, t}) > 0.15).to(torch::kLong);  // (B,T) 0/1
      auto odd = m01.clone();
      odd[1][0] = 2;
      odd[2][t - 1] = -1;
      for (const auto& m : {m01, m01.to(torch::kBool), m01.to(torch::kInt8), m01.to(torch::kUInt8), m01.to(dt), odd}) {
        INFO("B=" << b << " T=" << t << " " << dt << " mask " << m.scalar_type());
        const auto ret = verl::core_algos::detail::reinforce_pp_generic(r, m, 0.97);
        for (int n : {1, 2}) {
          // ATen's float sums depend on the thread count, so verl's result is the one at the same count.
          at::set_num_threads(n);
          const auto want = verl::functional::masked_whiten(ret, m) * m;
          const auto out = compute_reinforce_plus_plus_outcome_advantage(r, m, {.gamma = 0.97});
          CHECK(same(out.returns, ret));
          CHECK(same(out.advantages, want));
        }
        at::set_num_threads(threads);
      }
    }
  }
}

TEST_CASE("fused whitening raises verl's errors", "[algos][advantages][fused]") {
  const auto r = torch::randn({2, 4});
  auto m = torch::zeros({2, 4}, torch::kLong);
  CHECK_THROWS_WITH(compute_reinforce_plus_plus_outcome_advantage(r, m), Catch::Contains("selects no element"));
  m[1][2] = 1;
  CHECK_THROWS_WITH(compute_gae_advantage_return(r, r, m, 1.0, 1.0), Catch::Contains("exactly one element"));
}

TEST_CASE("fused agg_loss equals verl's reductions bit for bit", "[algos][losses][fused]") {
  torch::manual_seed(102);
  for (auto dt : {torch::kFloat32, torch::kFloat64}) {
    const auto x = torch::randn({kB, kT}, dt);
    const auto m = random_mask(kB, kT);
    for (auto mode : {verl::LossAggMode::token_mean, verl::LossAggMode::seq_mean_token_sum,
                      verl::LossAggMode::seq_mean_token_sum_norm, verl::LossAggMode::seq_mean_token_mean}) {
      for (const GlobalBatchInfo& info : {GlobalBatchInfo{}, GlobalBatchInfo{4, 123456.0, 300.0, 7.0}}) {
        INFO(dt << " " << verl::to_string(mode) << " dp " << info.dp_size);
        // int16 masks take the ATen path (the fused one takes bool/int32/int64): verl's operations.
        const auto want = agg_loss(x, m.to(torch::kShort), mode, info);
        CHECK(same(agg_loss(x, m, mode, info), want));
        CHECK(same(agg_loss(x, m.to(torch::kBool), mode, info), want));
      }
    }
  }
}

TEST_CASE("fused value loss equals verl's sequence bit for bit, gradient included", "[algos][losses][fused]") {
  torch::manual_seed(103);
  for (auto dt : {torch::kFloat32, torch::kFloat64}) {
    const auto values = torch::randn({kB, kT}, dt), returns = torch::randn({kB, kT}, dt);
    const auto base = values + torch::randn({kB, kT}, dt) * 0.5;
    const auto m = random_mask(kB, kT);
    for (auto mode : {verl::LossAggMode::token_mean, verl::LossAggMode::seq_mean_token_mean}) {
      INFO(dt << " " << verl::to_string(mode));
      const auto vp1 = base.clone().requires_grad_(true), vp2 = base.clone().requires_grad_(true);
      const auto fused = compute_value_loss(vp1, returns, values, m, 0.2, mode);
      const auto aten = compute_value_loss(vp2, returns, values, m.to(torch::kShort), 0.2, mode);
      CHECK(same(fused.vf_loss, aten.vf_loss));
      CHECK(same(fused.vf_clipfrac, aten.vf_clipfrac));
      fused.vf_loss.backward();
      aten.vf_loss.backward();
      CHECK(same(vp1.grad(), vp2.grad()));
      torch::NoGradGuard no_grad;  // the no-gradient fused path, for every mode
      CHECK(same(compute_value_loss(base, returns, values, m, 0.2, mode).vf_loss, aten.vf_loss));
    }
  }
}

TEST_CASE("fused KL penalties and compute_rewards equal verl's sequences bit for bit", "[algos][kl][fused]") {
  torch::manual_seed(104);
  for (auto dt : {torch::kFloat32, torch::kFloat64}) {
    auto lp = -torch::rand({kB, kT}, dt) * 3;
    auto ref = lp + torch::randn({kB, kT}, dt);
    lp[0][0] = -60.0;  // beyond the +-20 clamp and the +-10 output clamp
    for (const char* name : {"abs", "k2", "mse", "k3", "low_var_kl", "k1"}) {
      INFO(dt << " " << name);
      // With a gradient wanted the ATen path runs: verl's sequence.
      const auto want = kl_penalty_forward(lp.clone().requires_grad_(true), ref, name);
      CHECK(same(kl_penalty_forward(lp, ref, name), want));
    }
    const auto scores = torch::randn({kB, kT}, dt);
    CHECK(same(compute_rewards(scores, lp, ref, 0.003), scores - (lp - ref) * 0.003));
  }
}

TEST_CASE("fused policy losses agree with verl's sequence, Clip-Cov and KL-Cov pick the same tokens",
          "[algos][losses][policy][fused]") {
  torch::manual_seed(105);
  ActorConfig cfg;
  cfg.clip_ratio_high = 0.28;
  cfg.policy_loss.clip_cov_ratio = 0.01;  // k = 1% of the valid tokens, fewer than the candidates: randperm
  cfg.policy_loss.clip_cov_lb = 0.0;
  cfg.policy_loss.kl_cov_ratio = 0.01;
  cfg.policy_loss.clip_cov_seed = 7;
  using K = verl::PolicyLossOutput (*)(const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                 verl::LossAggMode, const ActorConfig&, const std::optional<at::Tensor>&);
  const std::vector<std::pair<std::string, K>> kernels = {
      {"vanilla", compute_policy_loss_vanilla}, {"gspo", compute_policy_loss_gspo},
      {"sapo", compute_policy_loss_sapo},       {"gpg", compute_policy_loss_gpg},
      {"clip_cov", compute_policy_loss_clip_cov}, {"kl_cov", compute_policy_loss_kl_cov},
      {"geo_mean", compute_policy_loss_geo_mean}, {"cispo", compute_policy_loss_cispo}};
  for (auto dt : {torch::kFloat64, torch::kFloat32}) {
    const auto old_lp = -torch::rand({kB, kT}, dt) * 2;
    const auto base = old_lp + torch::randn({kB, kT}, dt) * 0.3;
    const auto adv = torch::randn({kB, kT}, dt);
    const auto w = torch::rand({kB, kT}, dt) + 0.5;
    const auto m = random_mask(kB, kT);
    const double tol = dt == torch::kFloat64 ? 1e-12 : 3e-5;
    for (const auto& [name, kernel] : kernels) {
      for (bool weights : {false, true}) {
        INFO(dt << " " << name << (weights ? " with weights" : ""));
        const std::optional<at::Tensor> wt = weights ? std::optional<at::Tensor>(w) : std::nullopt;
        const auto lp1 = base.clone().requires_grad_(true), lp2 = base.clone().requires_grad_(true);
        const auto fused = kernel(old_lp, lp1, adv, m, verl::LossAggMode::token_mean, cfg, wt);
        const auto aten = kernel(old_lp, lp2, adv, m.to(torch::kInt), verl::LossAggMode::token_mean, cfg, wt);
        CHECK(fused.loss.item<double>() == Approx(aten.loss.item<double>()).epsilon(tol));
        fused.loss.backward();
        aten.loss.backward();
        const double scale = lp2.grad().abs().max().item<double>();
        CHECK((lp1.grad() - lp2.grad()).abs().max().item<double>() <= 4 * tol * scale);
        for (const auto& [metric, a, b] : {std::tuple{"ppo_kl", fused.ppo_kl, aten.ppo_kl},
                                           std::tuple{"pg_clipfrac", fused.pg_clipfrac, aten.pg_clipfrac},
                                           std::tuple{"pg_clipfrac_lower", fused.pg_clipfrac_lower,
                                                      aten.pg_clipfrac_lower}}) {
          INFO(metric);
          REQUIRE(a.defined() == b.defined());
          if (a.defined()) {
            CHECK(a.scalar_type() == b.scalar_type());
            CHECK(a.item<double>() == Approx(b.item<double>()).epsilon(2e-5).margin(dt == torch::kFloat32 ? 1e-6 : 1e-13));
          }
        }
      }
    }
  }
}

TEST_CASE("fused policy losses fall back to verl's sequence for int64 mask values beyond int32 and non-finite inputs",
          "[algos][losses][policy][fused]") {
  // The vectorised token loop reads an int64 mask through int32 (fused_cpu.hpp mask_as) and must give up when a
  // value does not fit; a non-finite log-prob or advantage must also leave the result to verl's sequence, whose
  // clamps decide it. Either way the result is then the generic kernel's, bit for bit. Without the fallback, the
  // mask value 2^33 read as int32 would be 0 and drop the token (a loss change far above any tolerance).
  torch::manual_seed(106);
  ActorConfig cfg;
  cfg.clip_ratio_high = 0.28;
  const auto old_lp = -torch::rand({kB, kT}) * 2;
  const auto lp = old_lp + torch::randn({kB, kT}) * 0.3;
  const auto adv = torch::randn({kB, kT});
  for (int variant = 0; variant < 3; ++variant) {
    INFO("variant " << variant);
    auto m = random_mask(kB, kT);
    auto l = lp.clone();
    auto a = adv.clone();
    if (variant == 0) m.index_put_({7, 11}, std::int64_t{1} << 33);                 // wider than int32
    if (variant == 1) l.index_put_({9, 4}, std::numeric_limits<float>::infinity());  // log-ratio +inf
    if (variant == 2) a.index_put_({2, 8}, std::numeric_limits<float>::quiet_NaN());
    const auto fused = compute_policy_loss_vanilla(old_lp, l, a, m, verl::LossAggMode::token_mean, cfg);
    const auto generic = verl::core_algos::detail::vanilla_generic(old_lp, l, a, m, verl::LossAggMode::token_mean, cfg, std::nullopt);
    CHECK(same(fused.loss, generic.loss));
    CHECK(same(fused.ppo_kl, generic.ppo_kl));
    CHECK(same(fused.pg_clipfrac, generic.pg_clipfrac));
  }
}

}  // namespace test_fused_cpu
