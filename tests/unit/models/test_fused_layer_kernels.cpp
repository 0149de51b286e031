// The fused RMSNorm and RoPE kernels (include/verl/models/detail/fused_layer_kernels.hpp) against the composite
// forms they replace, which are transformers 5.23.0's LlamaRMSNorm.forward (x.to(float32), pow(2).mean(-1),
// x * rsqrt(var + eps), weight * x.to(dtype)) and apply_rotary_pos_emb (x * cos + rotate_half(x) * sin),
// written here with plain ATen operators under autograd: forwards bit for bit, RoPE's backward value for value,
// RMSNorm's backward to float rounding (and against float64 autograd); the short-sequence attention kernel
// (include/verl/models/detail/short_attention.hpp) against at::scaled_dot_product_attention in float64, forward
// and backward; the fallbacks; a whole model.
#include "catch_torch.hpp"

#include "verl/models/causal_lm.hpp"
#include "verl/models/detail/fused_layer_kernels.hpp"
#include "verl/models/detail/short_attention.hpp"
#include "verl/models/layers.hpp"
#include "verl/models/rope.hpp"

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdint>
#include <tuple>
#include <vector>

namespace test_fused_layer_kernels {  // one namespace per file: a unity build (tests/CMakeLists.txt) may join files

using verl::models::detail::fused_rms_norm;
using verl::models::detail::fused_rope;

namespace {

torch::Tensor composite_rms_norm(const torch::Tensor& x, const torch::Tensor& weight, double eps) {
  const auto xf = x.to(torch::kFloat);
  const auto variance = xf.pow(2).mean(-1, /*keepdim=*/true);
  return weight * (xf * torch::rsqrt(variance + eps)).to(x.scalar_type());
}

torch::Tensor composite_rope(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin) {
  const auto half = x.size(-1) / 2;
  const auto rotated = torch::cat({x.narrow(-1, half, half).neg(), x.narrow(-1, 0, half)}, -1);
  return x * cos.unsqueeze(1) + rotated * sin.unsqueeze(1);
}

// Values over several binades, with exact zeros, so that rounding differences would show.
torch::Tensor spread(std::vector<std::int64_t> shape, std::uint64_t seed) {
  torch::manual_seed(seed);
  auto x = torch::randn(shape) * torch::exp(torch::randn(shape) * 2);
  return x * (torch::rand(shape) > 0.05).to(torch::kFloat);
}

bool bitwise_equal(const torch::Tensor& a, const torch::Tensor& b) {
  return a.sizes() == b.sizes() && torch::equal(a.contiguous().view(torch::kInt), b.contiguous().view(torch::kInt));
}

}  // namespace

TEST_CASE("fused RMSNorm: forward bit for bit the composite form, with and without autograd") {
  for (const auto& shape : std::vector<std::vector<std::int64_t>>{{1280, 64}, {8, 9, 896}, {3, 7}, {1, 1}, {5, 4, 2, 16}}) {
    for (double eps : {1e-6, 1e-5, 0.1}) {
      const auto x = spread(shape, 11);
      const auto w = spread({shape.back()}, 12);
      const auto want = composite_rms_norm(x, w, eps);
      {
        torch::NoGradGuard no_grad;
        const auto got = fused_rms_norm(x, w, eps);
        REQUIRE(got.defined());
        CHECK(bitwise_equal(got, want));
      }
      const auto xg = x.clone().requires_grad_(true);
      const auto wg = w.clone().requires_grad_(true);
      const auto got = fused_rms_norm(xg, wg, eps);
      REQUIRE(got.defined());
      CHECK(got.requires_grad());
      CHECK(bitwise_equal(got.detach(), want));
      // Through the module too.
      verl::models::RMSNorm norm(shape.back(), eps);
      {
        torch::NoGradGuard no_grad;
        norm->weight.copy_(w);
      }
      CHECK(bitwise_equal(norm(x).detach(), want));
    }
  }
}

TEST_CASE("fused RMSNorm: backward equals autograd through the composite form to float rounding") {
  for (const auto& shape : std::vector<std::vector<std::int64_t>>{{1280, 64}, {4, 33, 896}, {3, 7}}) {
    const double eps = 1e-6;
    const auto x = torch::randn(shape);
    const auto w = torch::randn({shape.back()});
    const auto g = torch::randn(shape);
    // Reference gradients in float64 autograd through the same formula, and float32 autograd for the scale
    // of float rounding.
    const auto x64 = x.to(torch::kDouble).requires_grad_(true);
    const auto w64 = w.to(torch::kDouble).requires_grad_(true);
    const auto xf64 = x64;
    const auto y64 = w64 * (xf64 * torch::rsqrt(xf64.pow(2).mean(-1, true) + eps));
    y64.backward(g.to(torch::kDouble));
    const auto x32 = x.clone().requires_grad_(true);
    const auto w32 = w.clone().requires_grad_(true);
    composite_rms_norm(x32, w32, eps).backward(g);
    const auto xf = x.clone().requires_grad_(true);
    const auto wf = w.clone().requires_grad_(true);
    fused_rms_norm(xf, wf, eps).backward(g);
    REQUIRE(xf.grad().defined());
    REQUIRE(wf.grad().defined());
    const double err_x = (xf.grad().to(torch::kDouble) - x64.grad()).abs().max().item<double>();
    const double err_x_composite = (x32.grad().to(torch::kDouble) - x64.grad()).abs().max().item<double>();
    const double err_w = (wf.grad().to(torch::kDouble) - w64.grad()).abs().max().item<double>();
    const double err_w_composite = (w32.grad().to(torch::kDouble) - w64.grad()).abs().max().item<double>();
    INFO("shape " << shape << ": grad_x error " << err_x << " (composite " << err_x_composite << "), grad_w error "
                  << err_w << " (composite " << err_w_composite << ")");
    // No worse than autograd's own float32 path, up to a small factor (and an absolute floor of a few ulps).
    CHECK(err_x <= 2 * err_x_composite + 1e-6);
    CHECK(err_w <= 2 * err_w_composite + 1e-5);
    CHECK(torch::allclose(xf.grad(), x32.grad(), 1e-4, 1e-5));
    CHECK(torch::allclose(wf.grad(), w32.grad(), 1e-4, 1e-4));
  }
}

TEST_CASE("fused RMSNorm: only the gradients that are needed, and none to an input that does not need one") {
  const auto x = torch::randn({6, 16});
  const auto w = torch::randn({16}).requires_grad_(true);
  fused_rms_norm(x, w, 1e-6).sum().backward();
  CHECK(w.grad().defined());
  const auto x2 = torch::randn({6, 16}).requires_grad_(true);
  const auto w2 = torch::randn({16});
  fused_rms_norm(x2, w2, 1e-6).sum().backward();
  CHECK(x2.grad().defined());
  CHECK_FALSE(w2.grad().defined());
}

TEST_CASE("fused RMSNorm and RoPE decline what they do not cover, and the modules fall back to the composite form") {
  const auto xd = torch::randn({4, 8}, torch::kDouble);
  CHECK_FALSE(fused_rms_norm(xd, torch::randn({8}, torch::kDouble), 1e-6).defined());
  CHECK_FALSE(fused_rms_norm(torch::randn({4, 8}).to(torch::kBFloat16), torch::randn({8}), 1e-6).defined());
  CHECK_FALSE(fused_rms_norm(torch::randn({8, 4}).t(), torch::randn({8}), 1e-6).defined());  // not contiguous
  CHECK_FALSE(fused_rms_norm(torch::randn({4, 8}), torch::randn({7}), 1e-6).defined());
  verl::models::RMSNorm norm(8, 1e-6);
  CHECK(bitwise_equal(norm(xd), composite_rms_norm(xd, norm->weight.to(torch::kDouble), 1e-6)));

  const auto cos = torch::randn({2, 5, 8}), sin = torch::randn({2, 5, 8});
  CHECK_FALSE(fused_rope(torch::randn({2, 3, 5, 8}, torch::kDouble), cos.to(torch::kDouble), sin.to(torch::kDouble)).defined());
  CHECK_FALSE(fused_rope(torch::randn({2, 3, 5, 8}), cos.expand({2, 5, 8}).narrow(0, 0, 1).expand({2, 5, 8}), sin).defined());
  CHECK_FALSE(fused_rope(torch::randn({1, 3, 5, 8}), cos, sin).defined());  // batch broadcast: composite
  const auto x1 = torch::randn({1, 3, 5, 8});
  CHECK(bitwise_equal(verl::models::apply_rope(x1, cos, sin), composite_rope(x1, cos, sin)));
}

TEST_CASE("fused RoPE: forward bit for bit and backward value for value the composite form, on the transposed views attention passes") {
  for (const auto& bhtd : std::vector<std::vector<std::int64_t>>{{128, 4, 10, 16}, {2, 14, 33, 64}, {3, 2, 1, 2}}) {
    const auto b = bhtd[0], h = bhtd[1], t = bhtd[2], d = bhtd[3];
    const auto projected = spread({b, t, h, d}, 21);  // (B,T,H,D) as q_proj(x).view(...)
    const auto angles = spread({b, t, d}, 22);
    const auto cos = angles.cos(), sin = angles.sin();
    const auto g = spread({b, h, t, d}, 23);

    const auto xa = projected.clone().requires_grad_(true);
    const auto want = composite_rope(xa.transpose(1, 2), cos, sin);
    want.backward(g);
    const auto xb = projected.clone().requires_grad_(true);
    const auto got = fused_rope(xb.transpose(1, 2), cos, sin);
    REQUIRE(got.defined());
    CHECK(bitwise_equal(got.detach(), want.detach()));
    if (t > 1) CHECK(got.strides() == want.strides());
    got.backward(g);
    // Equal values; only the sign of zero gradients may differ (autograd adds zero-padded slices, so
    // -0 + 0 + -0 gives +0 there).
    CHECK(torch::equal(xb.grad(), xa.grad()));
    {
      torch::NoGradGuard no_grad;
      CHECK(bitwise_equal(verl::models::apply_rope(projected.transpose(1, 2), cos, sin), want.detach()));
    }
  }
}

namespace {

struct AttentionCase {
  std::int64_t b, h, hkv, t, l, d;
  bool masked;  // false: causal (T == L), true: a boolean mask with left padding and a causal offset
};

// The boolean (B,1,T,L) mask of T query rows ending at key L-1 over left-padded rows (row r has r % 3 pads).
torch::Tensor padded_causal_mask(std::int64_t b, std::int64_t t, std::int64_t l) {
  const auto q = (torch::arange(t) + (l - t)).unsqueeze(1);  // (T,1)
  const auto kv = torch::arange(l).unsqueeze(0);              // (1,L)
  auto pad = torch::zeros({b, l}, torch::kBool);
  for (std::int64_t r = 0; r < b; ++r) pad.index_put_({r, torch::indexing::Slice(0, std::min<std::int64_t>(r % 3, l - t))}, true);
  return ((kv <= q).unsqueeze(0) & (~pad).unsqueeze(1)).unsqueeze(1) | (kv == q).unsqueeze(0).unsqueeze(0);
}

// SDPA with the key/value heads repeated for their query groups, as the models' fallback path runs it.
torch::Tensor reference_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                  const torch::Tensor& mask, double scale) {
  const auto g = q.size(1) / k.size(1);
  const auto ke = k.repeat_interleave(g, 1), ve = v.repeat_interleave(g, 1);
  return at::scaled_dot_product_attention(q, ke, ve, mask.defined() ? std::optional<at::Tensor>(mask) : std::nullopt,
                                          0.0, !mask.defined(), scale);
}

}  // namespace

TEST_CASE("short attention: forward and backward equal float64 SDPA to float rounding (causal, padded, GQA)") {
  using verl::models::detail::short_attention;
  for (const auto& c : std::vector<AttentionCase>{{128, 4, 2, 10, 10, 16, false},
                                                  {3, 14, 2, 29, 29, 64, true},
                                                  {2, 4, 4, 1, 7, 12, true},
                                                  {5, 6, 3, 32, 32, 8, false},
                                                  {4, 2, 1, 5, 32, 32, true}}) {
    INFO("B " << c.b << " H " << c.h << " Hkv " << c.hkv << " T " << c.t << " L " << c.l << " D " << c.d
              << (c.masked ? " masked" : " causal"));
    torch::manual_seed(5);
    // q/k/v as the attention block hands them over: transposed views of (B,T,heads,D) projections.
    const auto q0 = (torch::randn({c.b, c.t, c.h, c.d}) * 2).transpose(1, 2);
    const auto k0 = (torch::randn({c.b, c.l, c.hkv, c.d}) * 2).transpose(1, 2);
    const auto v0 = torch::randn({c.b, c.l, c.hkv, c.d}).transpose(1, 2);
    const auto mask = c.masked ? padded_causal_mask(c.b, c.t, c.l) : torch::Tensor();
    const auto g = torch::randn({c.b, c.h, c.t, c.d});
    const double scale = 1.0 / std::sqrt(static_cast<double>(c.d));

    auto q = q0.clone().requires_grad_(true), k = k0.clone().requires_grad_(true), v = v0.clone().requires_grad_(true);
    const auto out = short_attention(q, k, v, mask, scale);
    REQUIRE(out.defined());
    out.backward(g);
    auto q64 = q0.to(torch::kDouble).requires_grad_(true), k64 = k0.to(torch::kDouble).requires_grad_(true),
         v64 = v0.to(torch::kDouble).requires_grad_(true);
    const auto want = reference_attention(q64, k64, v64, mask, scale);
    want.backward(g.to(torch::kDouble));
    auto q32 = q0.clone().requires_grad_(true), k32 = k0.clone().requires_grad_(true), v32 = v0.clone().requires_grad_(true);
    const auto sdpa32 = reference_attention(q32, k32, v32, mask, scale);
    sdpa32.backward(g);

    const auto err = [](const torch::Tensor& a, const torch::Tensor& ref) {
      return (a.to(torch::kDouble) - ref).abs().max().item<double>();
    };
    const double e_out = err(out.detach(), want.detach()), e_out_sdpa = err(sdpa32.detach(), want.detach());
    INFO("output error " << e_out << " (float SDPA " << e_out_sdpa << ")");
    CHECK(e_out <= 4 * e_out_sdpa + 2e-6);
    for (const auto& [name, ours, sdpa, ref] :
         {std::tuple{"dq", q.grad(), q32.grad(), q64.grad()}, std::tuple{"dk", k.grad(), k32.grad(), k64.grad()},
          std::tuple{"dv", v.grad(), v32.grad(), v64.grad()}}) {
      REQUIRE(ours.defined());
      const double e = err(ours, ref), e_sdpa = err(sdpa, ref);
      INFO(name << " error " << e << " (float SDPA " << e_sdpa << ")");
      CHECK(e <= 4 * e_sdpa + 4e-6);
    }
    // The output is (B,T,H,D) underneath, so the block's transpose + reshape is a view.
    CHECK(out.transpose(1, 2).is_contiguous());
    {
      torch::NoGradGuard no_grad;
      CHECK(bitwise_equal(short_attention(q0, k0, v0, mask, scale), out.detach()));
    }
  }
}

TEST_CASE("short attention: a row with nothing to attend gives zeros, and what the kernels do not take falls back") {
  using verl::models::detail::short_attention;
  auto q = torch::randn({1, 2, 3, 8}, torch::requires_grad());
  auto k = torch::randn({1, 1, 3, 8}, torch::requires_grad());
  auto v = torch::randn({1, 1, 3, 8}, torch::requires_grad());
  auto mask = torch::ones({1, 1, 3, 3}, torch::kBool);
  mask.index_put_({0, 0, 1}, false);  // query row 1 sees no key
  const auto out = short_attention(q, k, v, mask, 0.5);
  REQUIRE(out.defined());
  CHECK(out.select(2, 1).abs().max().item<float>() == 0.0f);
  CHECK(out.select(2, 0).abs().max().item<float>() > 0.0f);
  out.sum().backward();
  CHECK(q.grad().select(2, 1).abs().max().item<float>() == 0.0f);
  CHECK(q.grad().isfinite().all().item<bool>());

  const auto big = torch::randn({1, 2, 33, 8});
  const auto big_kv = torch::randn({1, 1, 33, 8});
  CHECK_FALSE(short_attention(big, big_kv, big_kv, torch::Tensor(), 1.0).defined());  // L > 32: SDPA
  CHECK_FALSE(short_attention(q.detach().to(torch::kDouble), k.detach().to(torch::kDouble), v.detach().to(torch::kDouble),
                              torch::Tensor(), 1.0).defined());
  CHECK_FALSE(short_attention(q.detach(), k.detach(), v.detach(), mask.to(torch::kFloat), 1.0).defined());
  const auto kv2 = torch::randn({1, 2, 3, 8});
  CHECK_FALSE(short_attention(torch::randn({1, 3, 3, 8}), kv2, kv2, torch::Tensor(), 1.0).defined());  // 3 heads over 2
  CHECK_FALSE(short_attention(torch::randn({1, 2, 2, 8}), k.detach(), v.detach(), torch::Tensor(), 1.0).defined());  // causal needs T == L
}

TEST_CASE("a model's logits are the same bits with and without autograd, and its gradients match a float64 copy "
          "(composite layers)") {
  const nlohmann::json j{{"model_type", "qwen3"},      {"vocab_size", 32},        {"hidden_size", 64},
                         {"intermediate_size", 128},   {"num_hidden_layers", 2},  {"num_attention_heads", 4},
                         {"num_key_value_heads", 2},   {"head_dim", 16},          {"max_position_embeddings", 64},
                         {"rms_norm_eps", 1e-6},       {"tie_word_embeddings", false}};
  const auto make = [&] {
    torch::manual_seed(3);
    verl::models::CausalLM lm(verl::models::TransformerConfig::from_json(j));
    lm->init_weights(0.2);
    return lm;
  };
  auto model = make();
  auto model64 = make();
  model64->to(torch::kDouble);
  const auto ids = torch::randint(0, 32, {4, 12});
  auto mask = torch::ones({4, 12}, torch::kLong);
  mask.index_put_({0, torch::indexing::Slice(0, 3)}, 0);  // left padding on one row: the explicit-mask path
  const auto pos = (mask.cumsum(1) - 1).clamp_min(0);
  at::Tensor no_grad_logits;
  {
    torch::NoGradGuard no_grad;
    no_grad_logits = model(ids, mask, pos);
  }
  const auto logits = model(ids, mask, pos);
  REQUIRE(logits.requires_grad());
  CHECK(bitwise_equal(logits.detach(), no_grad_logits));
  const auto real = mask.to(torch::kBool).unsqueeze(-1);
  (logits.pow(2) * real).mean().backward();
  (model64(ids, mask, pos).pow(2) * real).mean().backward();
  const auto params64 = model64->named_parameters();
  for (const auto& p : model->named_parameters()) {
    INFO(p.key());
    const auto& g = p.value().grad();
    const auto& g64 = params64[p.key()].grad();
    REQUIRE(g.defined());
    const double scale = g64.abs().max().item<double>();
    CHECK((g.to(torch::kDouble) - g64).abs().max().item<double>() <= 1e-4 * scale + 1e-7);
  }
}

TEST_CASE("large no-grad logits (the kept-block output path of CausalLM::project) are at::linear's bits, and a block the caller holds is never reused") {
  // project() writes logits of >= 4 MiB without autograd through at::linear_out into a block the model keeps
  // between calls (verl/core/reusable_buffer.hpp); with autograd it is at::linear. 2 x 300 tokens x 2048
  // vocabulary x 4 B = 4.9 MB takes the first path.
  const nlohmann::json j{{"model_type", "llama"},      {"vocab_size", 2048},      {"hidden_size", 64},
                         {"intermediate_size", 128},   {"num_hidden_layers", 1},  {"num_attention_heads", 4},
                         {"num_key_value_heads", 2},   {"max_position_embeddings", 512},
                         {"rms_norm_eps", 1e-6},       {"tie_word_embeddings", true}};
  torch::manual_seed(5);
  verl::models::CausalLM lm(verl::models::TransformerConfig::from_json(j));
  lm->init_weights(0.2);
  const auto hidden = torch::randn({2, 300, 64});
  const auto other = torch::randn({2, 300, 64});
  const auto reference = at::linear(hidden, lm->lm_head_weight());
  const auto other_reference = at::linear(other, lm->lm_head_weight()).detach();
  REQUIRE(reference.requires_grad());
  torch::NoGradGuard no_grad;
  auto fast = lm->project(hidden);
  CHECK(fast.sizes() == reference.sizes());
  CHECK(fast.is_contiguous());
  CHECK(bitwise_equal(fast, reference.detach()));
  // While `fast` is held, the next call writes elsewhere and `fast` keeps its values.
  auto second = lm->project(other);
  CHECK(second.data_ptr() != fast.data_ptr());
  CHECK(bitwise_equal(second, other_reference));
  CHECK(bitwise_equal(fast, reference.detach()));
  // Once both are dropped, the kept block (the second's) comes back.
  const void* kept = second.data_ptr();
  fast = torch::Tensor();
  second = torch::Tensor();
  auto third = lm->project(hidden);
  CHECK(third.data_ptr() == kept);
  CHECK(bitwise_equal(third, reference.detach()));
  third = torch::Tensor();
  lm->release_logits_buffer();
  CHECK(bitwise_equal(lm->project(hidden), reference.detach()));
  {
    c10::AutoGradMode grad(true);
    CHECK(bitwise_equal(lm->project(hidden).detach(), reference.detach()));  // the autograd path
  }
}

TEST_CASE("the MLP's in-place no-grad path gives the autograd path's bits") {
  // MLPImpl::forward runs silu_ and mul_ in place when no graph is recorded, silu and * otherwise.
  const nlohmann::json j{{"model_type", "llama"},      {"vocab_size", 64},        {"hidden_size", 32},
                         {"intermediate_size", 96},    {"num_hidden_layers", 1},  {"num_attention_heads", 4},
                         {"num_key_value_heads", 2},   {"max_position_embeddings", 64}, {"mlp_bias", true}};
  torch::manual_seed(6);
  verl::models::MLP mlp(verl::models::TransformerConfig::from_json(j));
  const auto x = torch::randn({3, 7, 32}) * 3.0;
  const auto with_graph = mlp(x);
  REQUIRE(with_graph.requires_grad());
  const auto composite = mlp->down_proj(at::silu(mlp->gate_proj(x)) * mlp->up_proj(x)).detach();
  torch::NoGradGuard no_grad;
  const auto in_place = mlp(x);
  CHECK_FALSE(in_place.requires_grad());
  CHECK(bitwise_equal(in_place, with_graph.detach()));
  CHECK(bitwise_equal(in_place, composite));
}

}  // namespace test_fused_layer_kernels
