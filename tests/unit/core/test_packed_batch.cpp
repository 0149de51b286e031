// Batch-level packing and balancing (include/verl/core/packed_batch.hpp, include/verl/core/balance_batch.hpp).
// References: flash-attn bert_padding unpad_input/pad_input (layout), verl ray_trainer._balance_batch at
// commit b178a3cd (equal-size partitions of attention_mask.sum(-1), then a reorder).
#include "verl/core/balance_batch.hpp"
#include "verl/core/packed_batch.hpp"

#include "catch_torch.hpp"

#include <range/v3/range/conversion.hpp>

using namespace verl::fields;

namespace {
using Seq = verl::Batch<input_ids, attention_mask, position_ids>;

// Row i keeps lengths[i] tokens, left-padded; ids encode (row, position).
Seq left_padded(const std::vector<std::int64_t>& lengths, std::int64_t width) {
  const auto b = static_cast<std::int64_t>(lengths.size());
  auto mask = torch::zeros({b, width}, torch::kLong);                                     // (B,T)
  for (std::int64_t i = 0; i < b; ++i) mask[i].narrow(0, width - lengths[i], lengths[i]).fill_(1);
  auto ids = (torch::arange(b).unsqueeze(1) * 1000 + torch::arange(width).unsqueeze(0)) * mask;  // (B,T)
  return Seq(ids, mask, (mask.cumsum(1) - 1).clamp_min(0));
}
}  // namespace

TEST_CASE("unpad<Fs...>(batch) packs the named fields with the attention mask's layout", "[core][packing]") {
  const auto batch = left_padded({3, 1, 4}, 5);
  const auto packed = verl::unpad<input_ids, position_ids>(batch);
  CHECK(packed.total_tokens() == 8);
  CHECK(torch::equal(packed.layout().cu_seqlens, torch::tensor({0, 3, 4, 8}, torch::kInt)));
  CHECK(packed.layout().max_seqlen == 4);
  CHECK(torch::equal(packed.get<input_ids>(), torch::tensor({2, 3, 4, 1004, 2001, 2002, 2003, 2004})));
  // Position ids restart in every sequence, as the packed model input needs.
  CHECK(torch::equal(packed.get<position_ids>(), torch::tensor({0, 1, 2, 0, 0, 1, 2, 3})));
  CHECK(torch::equal(packed.get<position_ids>(), verl::packed_position_ids(packed.layout())));

  const auto padded = verl::pad(packed);
  STATIC_REQUIRE(std::is_same_v<std::remove_const_t<decltype(padded)>, verl::Batch<input_ids, position_ids>>);
  CHECK(torch::equal(padded.get<input_ids>(), batch.get<input_ids>()));
  CHECK(torch::equal(padded.get<position_ids>(), batch.get<position_ids>() * batch.get<attention_mask>()));
  CHECK(torch::equal(verl::pad(packed, -1).get<input_ids>().select(1, 0), torch::tensor({-1, -1, -1})));
}

TEST_CASE("unpad<Fs...>(batch) reports a field whose (B,T) is not the mask's", "[core][packing]") {
  const auto batch = left_padded({2, 2}, 3).with<old_log_probs>(torch::zeros({2, 2}));  // (B,R), R != T
  CHECK_THROWS_AS(verl::unpad<old_log_probs>(batch), verl::ShapeError);
}

TEST_CASE("balance_batch gives every rank an equal item count and balanced tokens", "[core][partition]") {
  // Lengths 1..8 over 2 ranks: the best split is 18/18; contiguous chunks of the input order give 10/26.
  const auto batch = left_padded({1, 2, 3, 4, 5, 6, 7, 8}, 8);
  const auto balanced = verl::balance_batch(batch, 2);
  std::vector<std::int64_t> tokens;
  for (const auto& shard : balanced.chunk(2)) {
    CHECK(shard.size() == 4);
    tokens.push_back(shard.get<attention_mask>().sum().item<std::int64_t>());
  }
  CHECK(tokens == std::vector<std::int64_t>{18, 18});
  // Same items, another order.
  CHECK(torch::equal(std::get<0>(balanced.get<input_ids>().select(1, 7).sort()),
                     std::get<0>(batch.get<input_ids>().select(1, 7).sort())));
  CHECK_THROWS_AS(verl::balance_batch(batch, 3), verl::ConfigError);  // 8 items do not split into 3 equal shares
}
