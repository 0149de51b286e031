// Padded <-> packed layouts (include/verl/core/packing.hpp).
// Reference: flash-attention's flash_attn/bert_padding.py (unpad_input, pad_input, index_first_axis,
// index_put_first_axis), v2.x: indices = nonzero(mask.flatten()), cu_seqlens = pad(cumsum(mask.sum(-1)), (1,0))
// as int32, max_seqlen = max(mask.sum(-1)), pad_input scatters into zeros; and verl's remove-padding path
// (verl/workers/actor/dp_actor.py at commit b178a3cd), whose position_ids are unpad(cumsum(mask) - 1).
#include "verl/core/packing.hpp"

#include "catch_torch.hpp"

#include <torch/cuda.h>

#include <vector>

namespace {

// (B,T) bool mask with a random mix of left padding, right padding, interior gaps and empty rows.
torch::Tensor random_mask(int64_t B, int64_t T, uint64_t seed, bool gaps) {
  torch::manual_seed(seed);
  const auto pos = torch::arange(T).unsqueeze(0);                                          // (1,T)
  auto a = torch::randint(0, T + 1, {B, 1}, torch::kLong);                            // (B,1)
  auto b = torch::randint(0, T + 1, {B, 1}, torch::kLong);                            // (B,1)
  auto mask = pos.ge(torch::minimum(a, b)).logical_and(pos.lt(torch::maximum(a, b)));     // (B,T)
  if (gaps) mask = mask.logical_and(torch::rand({B, T}).gt(0.3));                     // (B,T)
  return mask;
}

// x with the positions the mask drops set to 0: what pad(unpad(x)) must give.
torch::Tensor masked_like_pad(const torch::Tensor& x, const torch::Tensor& mask) {
  auto m = mask.to(torch::kBool);                                                           // (B,T)
  while (m.dim() < x.dim()) m = m.unsqueeze(-1);                                            // (B,T,1...)
  return torch::where(m, x, torch::zeros({}, x.options()));                                 // (B,T,...)
}

torch::Tensor random_values(std::vector<int64_t> shape, torch::ScalarType dtype) {
  if (dtype == torch::kBool) return torch::rand(shape).gt(0.5);
  if (at::isFloatingType(dtype)) return torch::randn(shape).to(dtype);
  return torch::randint(1, 100, shape).to(dtype);
}

}  // namespace

TEST_CASE("packing: make_packed_layout gives flash-attn's indices, cu_seqlens and max_seqlen", "[core][packing]") {
  // Pins flash-attn bert_padding.unpad_input on a hand example: left padding, full row, empty row, gap.
  const auto mask = torch::tensor({0, 1, 1, 0,  //
                                   1, 1, 1, 1,  //
                                   0, 0, 0, 0,  //
                                   1, 0, 1, 0}, torch::kLong).view({4, 4});
  const auto layout = verl::make_packed_layout(mask);
  CHECK(layout.batch_size == 4);
  CHECK(layout.seq_len == 4);
  CHECK(layout.total_tokens() == 8);
  CHECK(layout.max_seqlen == 4);
  CHECK(layout.indices.scalar_type() == torch::kLong);
  CHECK(layout.cu_seqlens.scalar_type() == torch::kInt);
  CHECK(torch::equal(layout.indices, torch::tensor({1, 2, 4, 5, 6, 7, 12, 14}, torch::kLong)));
  CHECK(torch::equal(layout.cu_seqlens, torch::tensor({0, 2, 6, 6, 8}, torch::kInt)));
  CHECK(torch::equal(verl::packed_position_ids(layout), torch::tensor({0, 1, 0, 1, 2, 3, 0, 1}, torch::kLong)));

  const auto ids = torch::arange(16, torch::kLong).view({4, 4}) + 100;                     // (4,4)
  CHECK(torch::equal(verl::unpad(ids, layout), torch::tensor({101, 102, 104, 105, 106, 107, 112, 114}, torch::kLong)));
}

TEST_CASE("packing: make_packed_layout accepts bool and integer masks alike", "[core][packing]") {
  const auto mask = random_mask(6, 9, 1, /*gaps=*/true);
  const auto ref = verl::make_packed_layout(mask);
  for (const auto dtype : {torch::kInt64, torch::kInt32, torch::kUInt8, torch::kInt8}) {
    const auto layout = verl::make_packed_layout(mask.to(dtype));
    CHECK(torch::equal(layout.indices, ref.indices));
    CHECK(torch::equal(layout.cu_seqlens, ref.cu_seqlens));
    CHECK(layout.max_seqlen == ref.max_seqlen);
  }
  // Nonzero values other than 1 count as one kept token each, consistently with `indices`.
  const auto twos = verl::make_packed_layout(mask.to(torch::kLong) * 2);
  CHECK(torch::equal(twos.cu_seqlens, ref.cu_seqlens));
}

TEST_CASE("packing: pad(unpad(x)) == x * mask for every dtype, trailing shape and padding pattern", "[core][packing]") {
  // Pins flash-attn: pad_input(unpad_input(x, mask)[0], indices, B, T) == x * mask[..., None].
  torch::manual_seed(7);
  struct MaskCase {
    const char* name;
    torch::Tensor mask;
  };
  std::vector<MaskCase> masks = {
      {"left padding", torch::arange(8).unsqueeze(0).ge(torch::tensor({0, 3, 7, 5}).unsqueeze(1))},
      {"right padding", torch::arange(8).unsqueeze(0).lt(torch::tensor({8, 1, 4, 6}).unsqueeze(1))},
      {"left+right+gaps", random_mask(5, 8, 3, /*gaps=*/true)},
      {"fully masked rows", torch::tensor({1, 1, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0}).view({3, 4}).to(torch::kBool)},
      {"B=1", torch::tensor({0, 1, 1, 1, 0}).view({1, 5})},
      {"all masked", torch::zeros({3, 4}, torch::kBool)},
      {"all kept", torch::ones({2, 3}, torch::kInt)},
  };
  const std::vector<torch::ScalarType> dtypes = {torch::kFloat32, torch::kFloat64, torch::kBFloat16, torch::kFloat16,
                                                 torch::kInt64,   torch::kInt32,   torch::kUInt8,    torch::kBool};
  const std::vector<std::vector<int64_t>> trailing = {{}, {3}, {2, 5}};
  for (const auto& mc : masks) {
    const auto layout = verl::make_packed_layout(mc.mask);
    const auto B = mc.mask.size(0);
    const auto T = mc.mask.size(1);
    for (const auto dtype : dtypes) {
      for (const auto& tail : trailing) {
        std::vector<int64_t> shape{B, T};
        shape.insert(shape.end(), tail.begin(), tail.end());
        INFO(mc.name << ", dtype " << dtype << ", shape " << torch::IntArrayRef(shape));
        const auto x = random_values(shape, dtype);                                        // (B,T,...)
        const auto packed = verl::unpad(x, layout);                                        // (total,...)
        CHECK(packed.dim() == 1 + static_cast<int64_t>(tail.size()));
        CHECK(packed.size(0) == layout.total_tokens());
        CHECK(packed.scalar_type() == dtype);
        CHECK(torch::equal(packed, x.index({mc.mask.to(torch::kBool)})));                  // boolean indexing
        const auto back = verl::pad(packed, layout);                                       // (B,T,...)
        CHECK(back.sizes() == x.sizes());
        CHECK(torch::equal(back, masked_like_pad(x, mc.mask)));
      }
    }
  }
}

TEST_CASE("packing: pad fills with the padding value and unpad reads non-contiguous input", "[core][packing]") {
  const auto mask = torch::tensor({1, 1, 0, 0, 1, 1}).view({2, 3});
  const auto layout = verl::make_packed_layout(mask);
  const auto logp = torch::tensor({-0.5F, -1.0F, -2.0F, -3.0F});                             // (total,)
  const auto padded = verl::pad(logp, layout, -100.0);                                       // (2,3)
  CHECK(torch::equal(padded, torch::tensor({-0.5F, -1.0F, -100.0F, -100.0F, -2.0F, -3.0F}).view({2, 3})));

  const auto xt = torch::arange(6).view({3, 2}).t();                                         // (2,3) non-contiguous
  REQUIRE_FALSE(xt.is_contiguous());
  CHECK(torch::equal(verl::unpad(xt, layout), torch::tensor({0, 2, 3, 5})));
}

TEST_CASE("packing: unpad_out and pad_out write into preallocated tensors", "[core][packing]") {
  const auto mask = random_mask(6, 10, 9, /*gaps=*/true);                                    // (B,T)
  const auto layout = verl::make_packed_layout(mask);
  const auto x = torch::randn({6, 10, 3});                                                   // (B,T,3)
  auto packed = torch::empty({layout.total_tokens(), 3});                                    // (total,3)
  CHECK(&verl::unpad_out(packed, x, layout) == &packed);
  CHECK(torch::equal(packed, verl::unpad(x, layout)));
  auto padded = torch::full({6, 10, 3}, 42.0F);                                              // (B,T,3), stale
  verl::pad_out(padded, packed, layout, -1.0);
  CHECK(torch::equal(padded, verl::pad(packed, layout, -1.0)));

  using Catch::Contains;
  auto wrong = torch::empty({layout.total_tokens() + 1, 3});
  CHECK_THROWS_WITH(verl::unpad_out(wrong, x, layout),
                    Contains("verl::unpad_out") && Contains("`out`") && Contains("expected shape"));
  auto wrong_dtype = torch::empty({6, 10, 3}, torch::kDouble);
  CHECK_THROWS_WITH(verl::pad_out(wrong_dtype, packed, layout),
                    Contains("verl::pad_out") && Contains("`out`") && Contains("Double") && Contains("Float"));
  auto strided = torch::empty({10, 6, 3}).transpose(0, 1);                                  // (6,10,3) non-contiguous
  CHECK_THROWS_WITH(verl::pad_out(strided, packed, layout), Contains("contiguous"));
}

TEST_CASE("packing: packed_position_ids equal verl's unpad(cumsum(mask) - 1)", "[core][packing]") {
  // Pins verl's remove-padding position ids for 0/1 masks (including interior gaps).
  const auto mask = random_mask(16, 32, 11, /*gaps=*/true).to(torch::kLong);                 // (B,T)
  const auto layout = verl::make_packed_layout(mask);
  const auto position_ids = (mask.cumsum(-1) - 1).clamp_min(0);                              // (B,T)
  CHECK(torch::equal(verl::packed_position_ids(layout), verl::unpad(position_ids, layout)));
}

TEST_CASE("packing: handles empty batches", "[core][packing]") {
  SECTION("every token masked") {
    const auto layout = verl::make_packed_layout(torch::zeros({3, 5}, torch::kLong));
    CHECK(layout.total_tokens() == 0);
    CHECK(layout.max_seqlen == 0);
    CHECK(torch::equal(layout.cu_seqlens, torch::zeros({4}, torch::kInt)));
    const auto packed = verl::unpad(torch::ones({3, 5, 2}), layout);
    CHECK(packed.sizes() == torch::IntArrayRef({0, 2}));
    CHECK(torch::equal(verl::pad(packed, layout), torch::zeros({3, 5, 2})));
    CHECK(verl::packed_position_ids(layout).numel() == 0);
  }
  SECTION("no rows") {
    const auto layout = verl::make_packed_layout(torch::zeros({0, 5}, torch::kBool));
    CHECK(layout.total_tokens() == 0);
    CHECK(layout.max_seqlen == 0);
    CHECK(torch::equal(layout.cu_seqlens, torch::zeros({1}, torch::kInt)));
    CHECK(verl::pad(verl::unpad(torch::ones({0, 5}), layout), layout).sizes() == torch::IntArrayRef({0, 5}));
  }
}

TEST_CASE("packing: rejects malformed arguments with a message naming them", "[core][packing]") {
  using Catch::Contains;
  const auto layout = verl::make_packed_layout(torch::ones({2, 3}, torch::kBool));
  CHECK_THROWS_AS(verl::make_packed_layout(torch::ones({6}, torch::kBool)), verl::ShapeError);
  CHECK_THROWS_WITH(verl::make_packed_layout(torch::ones({6}, torch::kBool)),
                    Contains("verl::make_packed_layout") && Contains("`attention_mask`") && Contains("[6]") &&
                        Contains("expected (B,T)"));
  CHECK_THROWS_WITH(verl::make_packed_layout(torch::ones({2, 3, 1}, torch::kBool)), Contains("[2, 3, 1]"));
  CHECK_THROWS_WITH(verl::make_packed_layout(torch::ones({2, 3})),
                    Contains("`attention_mask`") && Contains("Float") && Contains("expected bool or an integer type"));

  CHECK_THROWS_AS(verl::unpad(torch::ones({2, 4}), layout), verl::ShapeError);
  CHECK_THROWS_WITH(verl::unpad(torch::ones({2, 4}), layout),
                    Contains("verl::unpad") && Contains("`padded`") && Contains("[2, 4]") && Contains("(2,3)"));
  CHECK_THROWS_WITH(verl::unpad(torch::ones({3, 3, 7}), layout), Contains("[3, 3, 7]") && Contains("(2,3)"));
  CHECK_THROWS_WITH(verl::unpad(torch::ones({6}), layout), Contains("verl::unpad") && Contains("[6]"));

  CHECK_THROWS_AS(verl::pad(torch::ones({5}), layout), verl::ShapeError);
  CHECK_THROWS_WITH(verl::pad(torch::ones({5, 2}), layout),
                    Contains("verl::pad") && Contains("`packed`") && Contains("[5, 2]") &&
                        Contains("expected leading dimension 6"));
  CHECK_THROWS_WITH(verl::pad(torch::ones({}), layout), Contains("verl::pad") && Contains("`packed`"));

  CHECK_THROWS_WITH(verl::unpad(torch::ones({2, 3}), verl::PackedLayout{}),
                    Contains("verl::unpad") && Contains("`layout`"));
}

TEST_CASE("packing: runs on CUDA and agrees with the CPU", "[core][packing][cuda]") {
  if (!torch::cuda::is_available()) {
    SUCCEED("no CUDA device; skipped");
    return;
  }
  const auto mask = random_mask(64, 128, 5, /*gaps=*/true);                                  // (B,T) bool
  const auto x = torch::randn({64, 128, 4});                                                 // (B,T,4)
  const auto cpu = verl::make_packed_layout(mask);
  const auto gpu = verl::make_packed_layout(mask.cuda());
  CHECK(gpu.indices.is_cuda());
  CHECK(gpu.cu_seqlens.is_cuda());
  CHECK(gpu.max_seqlen == cpu.max_seqlen);
  CHECK(torch::equal(gpu.cu_seqlens.cpu(), cpu.cu_seqlens));
  const auto packed = verl::unpad(x.cuda(), gpu);                                            // (total,4)
  CHECK(torch::equal(packed.cpu(), verl::unpad(x, cpu)));
  CHECK(torch::equal(verl::pad(packed, gpu).cpu(), verl::pad(verl::unpad(x, cpu), cpu)));
  CHECK(torch::equal(verl::packed_position_ids(gpu).cpu(), verl::packed_position_ids(cpu)));
  CHECK_THROWS_WITH(verl::unpad(x, gpu), Catch::Contains("verl::unpad") && Catch::Contains("cuda"));
}
