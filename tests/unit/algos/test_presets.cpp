// verl/algos/presets.hpp at run time: a preset's estimator and loss are the library's kernels with the
// preset's settings (Dr. GRPO does not divide by the group std).
#include "verl/algos/presets.hpp"

#include "catch_torch.hpp"

namespace test_presets {  // one namespace per file: a unity build (tests/CMakeLists.txt) may join files

TEST_CASE("Dr. GRPO's estimator keeps the group mean baseline but not the std division", "[algos][presets]") {
  // One group of two: scores 1 and 0, mean 0.5. GRPO divides by std(1, 0) = 0.7071 (unbiased) + eps.
  verl::AdvantageInputs in;
  in.token_level_rewards = torch::tensor({{0.0, 1.0}, {0.0, 0.0}});  // (B,R): scores 1, 0 on the last token
  in.response_mask = torch::ones({2, 2});
  in.index = torch::tensor({7, 7}, torch::kLong);
  const auto dr = verl::DrGRPO<>::estimator{}.compute(in).advantages;      // (B,R)
  const auto grpo = verl::GRPO<>::estimator{}.compute(in).advantages;      // (B,R)
  CHECK(torch::allclose(dr.select(1, 0), torch::tensor({0.5, -0.5})));
  CHECK(torch::allclose(grpo.select(1, 0), torch::tensor({0.5, -0.5}) / (std::sqrt(0.5) + 1e-6)));
}

}  // namespace test_presets
