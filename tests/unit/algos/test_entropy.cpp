// verl::core_algos entropy (include/verl/algos/entropy.hpp) against verl 0.7.1 (PyPI)
// verl/utils/torch_functional.py entropy_from_logits, entropy_from_logits_with_chunking and
// verl/trainer/ppo/core_algos.py compute_entropy_loss: golden vectors (tests/golden/generate_losses.py),
// a hand-worked case, chunked == unchunked, gradient checks, errors.
#include "verl/algos/entropy.hpp"

#include "catch_torch.hpp"
#include "golden.hpp"

#include <cmath>
#include <limits>

namespace test_entropy {  // one namespace per file: a unity build (tests/CMakeLists.txt) may join files

using namespace verl::core_algos;

TEST_CASE("entropy functions match verl 0.7.1 golden vectors", "[algos][entropy]") {
  const auto file = verl::test::load_golden("losses/entropy.json");
  REQUIRE(file.cases.size() == 2);
  for (const auto& c : file.cases) {
    INFO(c.name);
    const auto logits = c.input("logits").clone().requires_grad_(true);   // (4,6,11)
    const auto dt = logits.scalar_type();
    const auto ent = entropy_from_logits(logits);                          // (4,6)
    CHECK(verl::test::matches_golden(ent.detach(), c.output("entropy").to(dt)));         // same ops: exact
    ent.sum().backward();
    CHECK(verl::test::matches_golden(logits.grad(), c.output("grad_logits").to(dt)));
    const auto chunked = entropy_from_logits_with_chunking(c.input("logits").reshape({-1, 11}), 5);  // (24,)
    CHECK(chunked.scalar_type() == torch::kFloat32);
    CHECK(verl::test::matches_golden(chunked, c.output("entropy_chunked").to(torch::kFloat32)));
    for (const char* mode : {"token-mean", "seq-mean-token-sum", "seq-mean-token-mean", "seq-mean-token-sum-norm"}) {
      INFO(mode);
      const double expected = c.output(std::string("entropy_loss/") + mode).to(dt).item<double>();
      // With autograd on (a training step's entropy bonus): verl's operation sequence, exact.
      CHECK(compute_entropy_loss(logits, c.input("response_mask"), mode).item<double>() == expected);
      // Without (the entropy as a metric): float32 takes the fused row kernel, equal up to float32 rounding;
      // float64 keeps verl's sequence.
      torch::NoGradGuard no_grad;
      const double metric = compute_entropy_loss(c.input("logits"), c.input("response_mask"), mode).item<double>();
      if (dt == torch::kFloat32) {
        CHECK(metric == Approx(expected).epsilon(2e-6));
      } else {
        CHECK(metric == expected);
      }
    }
  }
}

TEST_CASE("entropy hand-worked: uniform and one-hot-like distributions", "[algos][entropy]") {
  // Uniform over 4: log 4. Logits (0, -inf-ish): entropy ~0.
  const auto logits = torch::tensor({{0.0, 0.0, 0.0, 0.0}, {0.0, -1000.0, -1000.0, -1000.0}}, torch::kFloat64);
  const auto e = entropy_from_logits(logits);
  CHECK(e[0].item<double>() == Approx(std::log(4.0)).epsilon(1e-15));
  CHECK(e[1].item<double>() == Approx(0.0).margin(1e-12));
}

TEST_CASE("chunked entropy equals the unchunked one for any chunk size, with gradients", "[algos][entropy]") {
  torch::manual_seed(4);
  const auto logits = (torch::randn({3, 7, 50}) * 2).requires_grad_(true);  // (3,7,50) float32
  const auto full = entropy_from_logits(logits);                            // (3,7)
  for (int64_t chunk : {1, 4, 21, 100}) {
    INFO(chunk);
    const auto c = entropy_from_logits_with_chunking(logits, chunk);         // (3,7)
    CHECK(c.sizes() == full.sizes());
    CHECK(torch::allclose(c, full, 1e-6, 1e-6));
  }
  // Gradient of the chunked entropy against finite differences (float64 logits are cast to float32 per chunk,
  // as verl; compare with the unchunked float64 gradient at float32 accuracy).
  const auto x64 = torch::randn({5, 9}, torch::kFloat64).requires_grad_(true);
  entropy_from_logits(x64).sum().backward();
  const auto g_full = x64.grad().clone();
  x64.mutable_grad().zero_();
  entropy_from_logits_with_chunking(x64, 2).sum().backward();
  CHECK(torch::allclose(x64.grad(), g_full, 1e-5, 1e-6));
  // Finite differences of the float64 entropy.
  const auto base = x64.detach();
  auto numeric = torch::zeros_like(base);
  for (int64_t i = 0; i < base.numel(); ++i) {
    auto up = base.clone(), down = base.clone();
    up.view(-1)[i] += 1e-6;
    down.view(-1)[i] -= 1e-6;
    numeric.view(-1)[i] = (entropy_from_logits(up).sum().item<double>() - entropy_from_logits(down).sum().item<double>()) / 2e-6;
  }
  CHECK(torch::allclose(g_full, numeric, 1e-6, 1e-8));
  // compute_entropy_loss with chunking agrees with the unchunked float32 loss.
  const auto mask = torch::ones({3, 7}, torch::kLong);
  CHECK(compute_entropy_loss(logits.detach(), mask, "token-mean", 4).item<double>() ==
        Approx(compute_entropy_loss(logits.detach(), mask, "token-mean").item<double>()).epsilon(1e-6));
}

TEST_CASE("entropy functions reject bad shapes and chunk sizes", "[algos][entropy]") {
  CHECK_THROWS_WITH(entropy_from_logits_with_chunking(torch::zeros({2, 3}), 0), Catch::Contains("chunk_size is 0"));
  CHECK_THROWS_WITH(compute_entropy_loss(torch::zeros({2, 3}), torch::ones({2, 3})), Catch::Contains("expected 3 (B,R,V)"));
  CHECK_THROWS_WITH(compute_entropy_loss(torch::zeros({2, 3, 4}), torch::ones({2, 4})), Catch::Contains("expected [2, 3]"));
}

TEST_CASE("fused no-grad entropy loss agrees with verl's operation sequence at many vocabulary sizes",
          "[algos][entropy]") {
  // detail::entropy_rows_fused_cpu (float32, no autograd) against entropy_from_logits (verl's ops): per token
  // within a few ulps of the entropy's scale (log V), including vocabularies that are not a multiple of the
  // kernel's 16 lanes, a single-entry vocabulary (entropy 0), peaked rows and a -inf logit (NaN where verl gives NaN).
  torch::manual_seed(7);
  torch::NoGradGuard no_grad;
  for (std::int64_t v : {1, 5, 16, 17, 64, 1000, 4099}) {
    INFO("V = " << v);
    auto logits = torch::randn({3, 5, v}) * 3;  // (3,5,V)
    logits[0][1] *= 40;                          // a peaked row
    if (v > 2) {
      // A -inf logit: verl's sum(p * z) has 0 * -inf = NaN there, and so has q in the fused kernel.
      auto with_inf = logits.clone();
      with_inf[1][2][1] = -std::numeric_limits<float>::infinity();
      CHECK(torch::equal(verl::core_algos::detail::entropy_rows_fused_cpu(with_inf).isnan(),
                         entropy_from_logits(with_inf).isnan()));
    }
    const auto fused = verl::core_algos::detail::entropy_rows_fused_cpu(logits);  // (3,5)
    REQUIRE(fused.defined());
    const auto reference = entropy_from_logits(logits);                           // (3,5) verl's ops, float32
    const auto exact = entropy_from_logits(logits.to(torch::kFloat64));            // (3,5) float64
    // Both float32 results carry summation error growing with V; the fused one must be no worse than twice
    // verl's own float32 error (or a few ulps of the entropy's scale).
    const double scale = std::max(1.0, std::log(static_cast<double>(v)));
    const double err_fused = (fused.to(torch::kFloat64) - exact).abs().max().item<double>();
    const double err_verl = (reference.to(torch::kFloat64) - exact).abs().max().item<double>();
    CHECK(err_fused <= std::max(2 * err_verl, 8 * 1.2e-7 * scale));
    if (v == 1) CHECK(fused.abs().max().item<double>() == 0.0);
    const auto mask = (torch::rand({3, 5}) > 0.3).to(torch::kLong);
    for (std::int64_t chunk : {0, 4}) {
      CHECK(compute_entropy_loss(logits, mask, "seq-mean-token-mean", chunk).item<double>() ==
            Approx(agg_loss(exact, mask, "seq-mean-token-mean").item<double>()).epsilon(1e-6 * scale).margin(1e-7));
    }
  }
  // Not taken where it does not apply: float64, or a gradient wanted.
  CHECK_FALSE(verl::core_algos::detail::entropy_rows_fused_cpu(torch::randn({2, 3}, torch::kFloat64)).defined());
  torch::AutoGradMode grad(true);
  CHECK_FALSE(verl::core_algos::detail::entropy_rows_fused_cpu(torch::randn({2, 3}).requires_grad_(true)).defined());
  CHECK_THROWS_WITH(compute_entropy_loss(torch::zeros({1, 2, 3}), torch::ones({1, 2}), "token-mean", -1),
                    Catch::Contains("chunk_size is -1"));
}

}  // namespace test_entropy
