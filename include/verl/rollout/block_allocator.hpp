#pragma once
//! \file
//! verl::rollout::BlockAllocator: the bookkeeping of a paged KV cache, without the tensors. The pool holds
//! `num_blocks` fixed-size blocks; a sequence owns a block table (the ids of its blocks in order). Blocks are
//! reference-counted so that the n samples of one prompt share the prompt's blocks (prefix sharing): forking
//! a sequence adds a reference to each of its blocks, and a sequence about to write into a block that another
//! sequence still references copies it first (copy on write, see KVPool::copy_block).

#include "verl/core/errors.hpp"

#include <cstdint>
#include <optional>
#include <vector>

namespace verl::rollout {

//! Free list and reference counts of the pool's blocks; see the file comment. Not thread-safe (the engine
//! drives it from one thread).
class BlockAllocator {
 public:
  explicit BlockAllocator(std::int64_t num_blocks) : ref_counts_(static_cast<std::size_t>(num_blocks), 0) {
    verl::detail::check<ConfigError>(num_blocks >= 1, "verl::rollout::BlockAllocator: `num_blocks` is ", num_blocks,
                                     ", expected >= 1");
    free_.reserve(static_cast<std::size_t>(num_blocks));
    // Handed out from the back: block 0 first, which keeps small runs' tables readable.
    for (std::int64_t b = num_blocks - 1; b >= 0; --b) free_.push_back(static_cast<std::int32_t>(b));
  }

  [[nodiscard]] std::int64_t num_blocks() const { return static_cast<std::int64_t>(ref_counts_.size()); }
  [[nodiscard]] std::int64_t num_free() const { return static_cast<std::int64_t>(free_.size()); }
  [[nodiscard]] std::int64_t num_used() const { return num_blocks() - num_free(); }

  //! A free block with one reference, or nullopt when the pool is exhausted.
  [[nodiscard]] std::optional<std::int32_t> allocate() {
    if (free_.empty()) return std::nullopt;
    const auto b = free_.back();
    free_.pop_back();
    ref_counts_[static_cast<std::size_t>(b)] = 1;
    return b;
  }

  //! One more sequence refers to `block` (prefix sharing).
  void add_ref(std::int32_t block) {
    auto& rc = count(block);
    verl::detail::check<Error>(rc > 0, "verl::rollout::BlockAllocator::add_ref: block ", block, " is free");
    ++rc;
  }

  //! Drops one reference; the block returns to the free list with its last one.
  void release(std::int32_t block) {
    auto& rc = count(block);
    verl::detail::check<Error>(rc > 0, "verl::rollout::BlockAllocator::release: block ", block, " is already free");
    if (--rc == 0) free_.push_back(block);
  }

  //! Releases every block of `table` and clears it.
  void release_all(std::vector<std::int32_t>& table) {
    for (auto b : table) release(b);
    table.clear();
  }

  [[nodiscard]] std::int32_t ref_count(std::int32_t block) const {
    return const_cast<BlockAllocator*>(this)->count(block);
  }

 private:
  std::int32_t& count(std::int32_t block) {
    verl::detail::check<Error>(block >= 0 && block < num_blocks(), "verl::rollout::BlockAllocator: block id ", block,
                               " out of range [0, ", num_blocks(), ")");
    return ref_counts_[static_cast<std::size_t>(block)];
  }

  std::vector<std::int32_t> ref_counts_;
  std::vector<std::int32_t> free_;
};

}  // namespace verl::rollout
