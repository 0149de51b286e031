// verl::functional masked statistics (include/verl/algos/functional.hpp), against verl 0.7.0/0.7.1
// verl/utils/torch_functional.py. Hand-worked cases; golden vectors from verl itself live with the estimators.
#include "verl/algos/functional.hpp"

#include "catch_torch.hpp"

#include <limits>

namespace test_functional {  // one namespace per file: a unity build (tests/CMakeLists.txt) may join files

using namespace verl::functional;

TEST_CASE("masked_sum and masked_mean ignore values outside the mask, NaN included", "[algos][functional]") {
  // Row 0 keeps 1, 2 (sum 3, mean 1.5); row 1 keeps 4 only, its NaN is masked out.
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const auto values = torch::tensor({{1.0, 2.0, 3.0}, {4.0, nan, 6.0}});   // (2,3)
  const auto mask = torch::tensor({{1, 1, 0}, {1, 0, 0}});                 // (2,3)
  CHECK(torch::allclose(masked_sum(values, mask, {{1}}), torch::tensor({3.0, 4.0})));
  CHECK(masked_sum(values, mask).item<double>() == 7.0);
  // Denominator count + 1e-8, promoted to float32 for an integer mask: 3 + 1e-8 rounds to 3.0f.
  const auto mean = masked_mean(values.to(torch::kFloat64), mask);         // ()
  CHECK(mean.scalar_type() == torch::kFloat64);
  CHECK(mean.item<double>() == 7.0 / 3.0);
  // With a float64 mask the 1e-8 survives: 7 / (3 + 1e-8).
  CHECK(masked_mean(values.to(torch::kFloat64), mask.to(torch::kFloat64)).item<double>() == 7.0 / (3.0 + 1e-8));
  // A fully masked row gives 0 / 1e-8 = 0, not NaN.
  CHECK(masked_mean(values, torch::zeros({2, 3}, torch::kLong), {{1}}).abs().sum().item<double>() == 0.0);
}

TEST_CASE("masked_var is Bessel-corrected and raises where verl raises", "[algos][functional]") {
  // Selected 1, 2, 3, 6: mean 3, squared deviations 4+1+0+9 = 14, biased 14/4 = 3.5, unbiased 14/3.
  const auto values = torch::tensor({{1.0, 2.0, 100.0}, {3.0, 6.0, -50.0}}, torch::kFloat64);  // (2,3)
  const auto mask = torch::tensor({{1, 1, 0}, {1, 1, 0}});                                     // (2,3)
  CHECK(masked_var(values, mask, /*unbiased=*/false).item<double>() == Approx(3.5).epsilon(1e-12));
  // verl's Bessel factor mask_sum / (mask_sum - 1) divides two int64 tensors, which PyTorch does in the
  // default dtype: 4/3 in float32. So float64 values get 3.5 * 1.33333337f, not 14/3 (verl does the same).
  CHECK(masked_var(values, mask).item<double>() == 3.5 * static_cast<double>(4.0f / 3.0f));
  CHECK(masked_var(values, mask.to(torch::kFloat64)).item<double>() == Approx(14.0 / 3.0).epsilon(1e-8));  // the +1e-8 terms
  CHECK_THROWS_WITH(masked_var(values, torch::zeros({2, 3}, torch::kLong)), Catch::Contains("selects no element"));
  CHECK_THROWS_WITH(masked_var(values, torch::tensor({{1, 0, 0}, {0, 0, 0}})), Catch::Contains("exactly one element"));
  CHECK_NOTHROW(masked_var(values, torch::tensor({{1, 0, 0}, {0, 0, 0}}), /*unbiased=*/false));
}

TEST_CASE("masked_whiten gives zero mean and unit unbiased variance on the mask", "[algos][functional]") {
  torch::manual_seed(0);
  const auto values = torch::randn({4, 7}, torch::kFloat64) * 3 + 1;    // (4,7)
  const auto mask = (torch::rand({4, 7}) > 0.3).to(torch::kLong);      // (4,7)
  const auto w = masked_whiten(values, mask);
  CHECK(masked_mean(w, mask).item<double>() == Approx(0.0).margin(1e-9));
  CHECK(masked_var(w, mask).item<double>() == Approx(1.0).epsilon(1e-6));
  const auto unshifted = masked_whiten(values, mask, /*shift_mean=*/false);
  CHECK(torch::allclose(unshifted - masked_mean(values, mask), w));
}

}  // namespace test_functional
