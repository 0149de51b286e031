#pragma once
//! \file
//! verl::balance_batch: reorders a batch so that its `chunk(world_size)` hands every data-parallel rank an
//! equal number of items with balanced token counts, as verl's trainer `_balance_batch` does before the
//! actor update (sequence lengths from the attention mask, equal-size Karmarkar-Karp partitions).
//!
//!     auto balanced = verl::balance_batch(batch, world_size);
//!     auto my_share = *std::next(balanced.chunk(world_size).begin(), rank);

#include "verl/core/batch.hpp"
#include "verl/core/fields.hpp"
#include "verl/core/partition.hpp"

namespace verl {

//! `batch` reordered so that rank r's contiguous chunk of size()/world_size items is partition r of
//! get_seqlen_balanced_partitions(attention_mask.sum(-1), world_size, equal_size=true).
//! \throws ConfigError unless 1 <= world_size <= size() and size() % world_size == 0.
template <BatchWith<fields::attention_mask> B>
[[nodiscard]] B balance_batch(const B& batch, std::int64_t world_size) {
  const auto seqlens = batch.template get<fields::attention_mask>().ne(0).sum(-1);  // (B,) int64
  return batch.reorder(balanced_permutation(seqlens, world_size));
}

}  // namespace verl
