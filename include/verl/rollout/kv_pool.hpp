#pragma once
//! \file
//! verl::rollout::KVPool: the preallocated key/value storage of the paged KV cache. Per decoder layer, one
//! key and one value tensor of shape (num_blocks, Hkv, block_size, D) in the model dtype, allocated once
//! from a byte budget; keys are stored after RoPE. A block holds `block_size` consecutive positions of one
//! sequence for every layer and head, so the allocator (block_allocator.hpp) hands out block ids valid in all
//! layers at once.
//!
//! Memory model: bytes per token = 2 (K and V) x layers x Hkv x D x sizeof(dtype); a block costs block_size
//! times that. Qwen2-0.5B (24 layers, Hkv 2, D 64) in float32 costs 24 KiB per token, 384 KiB per 16-token block.

#include "verl/core/errors.hpp"
#include "verl/models/config.hpp"

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <c10/core/ScalarType.h>

#include <cstdint>
#include <vector>

namespace verl::rollout {

//! Shape of the pool: how many blocks of how many positions, for which model.
struct KVPoolShape {
  std::int64_t num_layers = 0, num_kv_heads = 0, head_dim = 0;
  std::int64_t block_size = 16;
  at::ScalarType dtype = at::kFloat;

  //! Bytes of keys and values of one token across all layers.
  [[nodiscard]] std::int64_t bytes_per_token() const {
    return 2 * num_layers * num_kv_heads * head_dim * static_cast<std::int64_t>(c10::elementSize(dtype));
  }
  [[nodiscard]] std::int64_t bytes_per_block() const { return bytes_per_token() * block_size; }

  //! The pool shape of `config`'s decoder in `dtype`.
  [[nodiscard]] static KVPoolShape of(const models::TransformerConfig& config, std::int64_t block_size,
                                      at::ScalarType dtype) {
    return KVPoolShape{config.num_hidden_layers, config.num_key_value_heads, config.head_dim, block_size, dtype};
  }
};

//! The per-layer key/value tensors; see the file comment.
class KVPool {
 public:
  KVPool(const KVPoolShape& shape, std::int64_t num_blocks, at::Device device) : shape_(shape), num_blocks_(num_blocks) {
    using verl::detail::check;
    check<ConfigError>(shape.block_size >= 1, "verl::rollout::KVPool: `block_size` is ", shape.block_size,
                       ", expected >= 1");
    check<ConfigError>(num_blocks >= 1, "verl::rollout::KVPool: the KV budget holds ", num_blocks,
                       " blocks, expected >= 1 (raise the budget or lower block_size)");
    const auto opts = at::TensorOptions().dtype(shape.dtype).device(device);
    keys_.reserve(static_cast<std::size_t>(shape.num_layers));
    values_.reserve(static_cast<std::size_t>(shape.num_layers));
    for (std::int64_t l = 0; l < shape.num_layers; ++l) {
      // Zeroed, so that a read of a not-yet-written slot (never done by a correct kernel) is finite.
      keys_.push_back(at::zeros({num_blocks, shape.num_kv_heads, shape.block_size, shape.head_dim}, opts));
      values_.push_back(at::zeros({num_blocks, shape.num_kv_heads, shape.block_size, shape.head_dim}, opts));
    }
  }

  [[nodiscard]] const KVPoolShape& shape() const { return shape_; }
  [[nodiscard]] std::int64_t num_blocks() const { return num_blocks_; }
  [[nodiscard]] std::int64_t block_size() const { return shape_.block_size; }
  //! Bytes held by all layers' keys and values.
  [[nodiscard]] std::int64_t bytes() const { return shape_.bytes_per_block() * num_blocks_; }

  //! Layer `layer`'s keys / values (num_blocks, Hkv, block_size, D).
  [[nodiscard]] at::Tensor& keys(std::int64_t layer) { return keys_[static_cast<std::size_t>(layer)]; }
  [[nodiscard]] at::Tensor& values(std::int64_t layer) { return values_[static_cast<std::size_t>(layer)]; }

  //! Copies block `src` into block `dst` in every layer (copy on write of a shared block).
  void copy_block(std::int32_t src, std::int32_t dst) {
    for (std::size_t l = 0; l < keys_.size(); ++l) {
      keys_[l].select(0, dst).copy_(keys_[l].select(0, src));
      values_[l].select(0, dst).copy_(values_[l].select(0, src));
    }
  }

 private:
  KVPoolShape shape_;
  std::int64_t num_blocks_;
  std::vector<at::Tensor> keys_, values_;  // per layer (num_blocks,Hkv,block_size,D)
};

}  // namespace verl::rollout
