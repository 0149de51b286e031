// decode_linear (verl/rollout/decode_linear.hpp) against at::linear in float64: every row count it takes,
// widths that are not a multiple of its 16 lanes, with and without bias, and its fallbacks.
#include "catch_torch.hpp"

#include "verl/rollout/decode_linear.hpp"

#include <ATen/Parallel.h>
#include <torch/torch.h>

using verl::rollout::decode_linear;
using verl::rollout::decode_linear_applies;

TEST_CASE("decode_linear equals x W^T + b up to float32 summation order", "[rollout][decode_linear]") {
  torch::manual_seed(0);
  for (const std::int64_t in : {1, 15, 16, 37, 896}) {
    for (const std::int64_t out : {1, 3, 1000}) {
      const auto w = torch::randn({out, in});
      const auto b = torch::randn({out});
      // Row counts around its groups of four, up to its limit.
      for (const std::int64_t m : {std::int64_t{1}, std::int64_t{2}, std::int64_t{3}, std::int64_t{4}, std::int64_t{5},
                                   std::int64_t{11}, verl::rollout::decode_linear_max_rows}) {
        const auto x = torch::randn({m, in});
        REQUIRE(decode_linear_applies(x, w));
        const auto ref = torch::linear(x.to(torch::kDouble), w.to(torch::kDouble), b.to(torch::kDouble));
        const auto ref_nb = torch::linear(x.to(torch::kDouble), w.to(torch::kDouble));
        // Each output is a sum of `in` products of unit-variance terms: float32 rounding of the sum is a few
        // ulps of sqrt(in) in magnitude.
        const double tol = 1e-6 * std::sqrt(static_cast<double>(in)) * 8;
        INFO("in " << in << " out " << out << " m " << m);
        CHECK((decode_linear(x, w, b).to(torch::kDouble) - ref).abs().max().item<double>() <= tol);
        CHECK((decode_linear(x, w).to(torch::kDouble) - ref_nb).abs().max().item<double>() <= tol);
      }
    }
  }
}

TEST_CASE("decode_linear: the same result on 1 and 2 threads; fallbacks to at::linear", "[rollout][decode_linear]") {
  torch::manual_seed(1);
  const auto w = torch::randn({20000, 64});
  const auto x = torch::randn({7, 64});
  const int threads = at::get_num_threads();
  at::set_num_threads(1);
  const auto one = decode_linear(x, w);
  at::set_num_threads(2);
  const auto two = decode_linear(x, w);
  at::set_num_threads(threads);
  CHECK(torch::equal(one, two));  // each output is computed by one thread in a fixed order
  // Outside its domain it is at::linear itself.
  const auto x5 = torch::randn({verl::rollout::decode_linear_max_rows + 1, 64});
  CHECK(!decode_linear_applies(x5, w));
  CHECK(torch::equal(decode_linear(x5, w), torch::linear(x5, w)));
  const auto xd = torch::randn({1, 64}, torch::kDouble);
  CHECK(torch::equal(decode_linear(xd, w.to(torch::kDouble)), torch::linear(xd, w.to(torch::kDouble))));
  const auto wt = torch::randn({64, 30}).t();  // non-contiguous weight
  CHECK(!decode_linear_applies(x, wt));
  CHECK(torch::equal(decode_linear(x, wt), torch::linear(x, wt)));
}
