// verl::core_algos::agg_loss (include/verl/algos/loss_agg.hpp) against verl 0.7.1 (PyPI)
// verl/trainer/ppo/core_algos.py `agg_loss`: golden vectors from verl itself (tests/golden/losses/agg_loss.json,
// regenerate with tests/golden/generate_losses.py), hand-worked cases, data-parallel invariance, errors.
#include "verl/algos/loss_agg.hpp"

#include "catch_torch.hpp"
#include "golden.hpp"

#include <string>

namespace test_loss_agg {  // one namespace per file: a unity build (tests/CMakeLists.txt) may join files

using namespace verl::core_algos;

namespace {
GlobalBatchInfo info_from(const nlohmann::json& c) {
  GlobalBatchInfo info;
  if (c.contains("dp_size")) info.dp_size = c["dp_size"].get<std::int64_t>();
  if (c.contains("batch_num_tokens")) info.batch_num_tokens = c["batch_num_tokens"].get<double>();
  if (c.contains("global_batch_size")) info.global_batch_size = c["global_batch_size"].get<double>();
  if (c.contains("loss_scale_factor")) info.loss_scale_factor = c["loss_scale_factor"].get<double>();
  return info;
}
}  // namespace

TEST_CASE("agg_loss matches verl 0.7.1 bit for bit on its golden vectors", "[algos][losses][agg]") {
  const auto file = verl::test::load_golden("losses/agg_loss.json");
  REQUIRE(file.cases.size() == 32);
  for (const auto& c : file.cases) {
    INFO(c.name);
    const auto expected = c.output("loss");
    const auto& mat = c.input("loss_mat");
    auto mask = c.input("loss_mask");
    // The loader reads float masks in the case's dtype; int64 masks stay int64, as verl was given.
    const auto got = agg_loss(mat, mask, c.config["loss_agg_mode"].get<std::string>(), info_from(c.config));
    // Same ATen operations in the same order as verl: identical to the last bit.
    CHECK(got.item<double>() == static_cast<double>(expected.to(got.scalar_type()).item<double>()));
  }
}

TEST_CASE("agg_loss hand-worked values for each mode", "[algos][losses][agg]") {
  // Row 0: losses 1, 2 valid (3 masked out); row 1: 4 valid; row 2 fully masked.
  const auto mat = torch::tensor({{1.0, 2.0, 3.0}, {4.0, 5.0, 6.0}, {7.0, 8.0, 9.0}}, torch::kFloat64);  // (3,3)
  const auto mask = torch::tensor({{1, 1, 0}, {1, 0, 0}, {0, 0, 0}});                                       // (3,3)
  // token-mean: (1 + 2 + 4) / 3 tokens.
  CHECK(agg_loss(mat, mask, verl::LossAggMode::token_mean).item<double>() == Approx(7.0 / 3.0).epsilon(1e-15));
  // seq-mean-token-sum: row sums 3 and 4 over the 2 non-empty rows = 3.5.
  CHECK(agg_loss(mat, mask, "seq-mean-token-sum").item<double>() == 3.5);
  // seq-mean-token-sum-norm: 3.5 / R (3).
  CHECK(agg_loss(mat, mask, "seq-mean-token-sum-norm").item<double>() == Approx(3.5 / 3).epsilon(1e-15));
  // seq-mean-token-mean: row means 1.5 and 4 (each divided by n + 1e-8, computed in float32 for an int mask,
  // where n + 1e-8 == n), mean over 2 rows = 2.75.
  CHECK(agg_loss(mat, mask, "seq-mean-token-mean").item<double>() == 2.75);
  // Global normalisers: token-mean with N = 14 global tokens, dp 2: 7 / 14 * 2 = 1.
  CHECK(agg_loss(mat, mask, "token-mean", {2, 14.0, std::nullopt, std::nullopt}).item<double>() == 1.0);
  // seq-mean-token-sum-norm with global_batch_size 4, dp 2, factor 7: 7 / 4 * 2 / 7 = 0.5.
  CHECK(agg_loss(mat, mask, "seq-mean-token-sum-norm", {2, std::nullopt, 4.0, 7.0}).item<double>() == 0.5);
}

TEST_CASE("agg_loss with the global normalisers is invariant to the data-parallel split", "[algos][losses][agg]") {
  torch::manual_seed(3);
  const auto mat = torch::randn({12, 9}, torch::kFloat64);                 // (12,9)
  auto mask = (torch::rand({12, 9}) > 0.35).to(torch::kLong);             // (12,9)
  mask[4].zero_();                                                         // an empty sequence
  const double n_tokens = mask.sum().item<double>();
  const double n_seqs = (mask.sum(-1) > 0).sum().item<double>();
  for (const char* mode : {"token-mean", "seq-mean-token-sum", "seq-mean-token-mean", "seq-mean-token-sum-norm"}) {
    INFO(mode);
    const double whole = agg_loss(mat, mask, mode).item<double>();
    for (std::int64_t dp : {2, 3, 4}) {
      // Each rank aggregates its shard with the global counts; the trainer averages gradients over ranks, so
      // the mean of the rank losses is what the optimiser sees.
      double mean = 0;
      for (std::int64_t r = 0; r < dp; ++r) {
        const auto rows = torch::arange(r, 12, dp);
        const GlobalBatchInfo info{dp, n_tokens, n_seqs, std::nullopt};
        mean += agg_loss(mat.index_select(0, rows), mask.index_select(0, rows), mode, info).item<double>() / dp;
      }
      CHECK(mean == Approx(whole).epsilon(1e-12));
    }
  }
}

TEST_CASE("agg_loss rejects invalid modes, missing global normalisers and bad shapes", "[algos][losses][agg]") {
  const auto mat = torch::ones({2, 3});
  const auto mask = torch::ones({2, 3}, torch::kLong);
  CHECK_THROWS_AS(agg_loss(mat, mask, "sample-mean"), verl::ConfigError);
  CHECK_THROWS_WITH(agg_loss(mat, mask, "sample-mean"), Catch::Contains("\"sample-mean\"") && Catch::Contains("token-mean"));
  CHECK_THROWS_WITH(agg_loss(mat, mask, "token-mean", {2}), Catch::Contains("batch_num_tokens"));
  CHECK_THROWS_WITH(agg_loss(mat, mask, "seq-mean-token-mean", {4}), Catch::Contains("global_batch_size"));
  CHECK_THROWS_WITH(agg_loss(mat, mask, "seq-mean-token-sum-norm", {4}), Catch::Contains("global_batch_size"));
  CHECK_THROWS_AS(agg_loss(mat, torch::ones({2, 4}), "token-mean"), verl::ShapeError);
  CHECK_THROWS_WITH(agg_loss(mat, torch::ones({2, 4}), "token-mean"), Catch::Contains("expected [2, 3]"));
  CHECK_THROWS_WITH(agg_loss(torch::ones({6}), torch::ones({6}), "token-mean"), Catch::Contains("expected 2 (B,R)"));
}

TEST_CASE("agg_loss float32 agrees with float64", "[algos][losses][agg]") {
  torch::manual_seed(5);
  const auto mat = torch::randn({16, 12}, torch::kFloat64);
  const auto mask = (torch::rand({16, 12}) > 0.3).to(torch::kLong);
  for (const char* mode : {"token-mean", "seq-mean-token-sum", "seq-mean-token-mean", "seq-mean-token-sum-norm"}) {
    // float32 rounding of ~200 summands: relative error well below 1e-5.
    CHECK(agg_loss(mat.to(torch::kFloat32), mask, mode).item<double>() ==
          Approx(agg_loss(mat, mask, mode).item<double>()).epsilon(1e-5));
  }
}

}  // namespace test_loss_agg
