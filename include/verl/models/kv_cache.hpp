#pragma once
//! \file
//! verl::models::KVCache: the keys and values (after RoPE) of every layer for the columns a decoder has
//! already processed, plus their 0/1 attention mask, so that a forward over only the new columns attends to
//! the whole sequence. Contiguous per-layer buffers that grow geometrically (the simple engine behind
//! CausalLM's generate; the paged cache of the rollout engine is elsewhere).

#include "verl/core/errors.hpp"

#include <ATen/core/Tensor.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/empty.h>

#include <algorithm>
#include <cstdint>
#include <utility>
#include <vector>

namespace verl::models {

//! Per-layer key/value buffers (B,Hkv,capacity,D) and the attention mask (B,L) of the L cached columns.
class KVCache {
 public:
  //! A cache for `num_layers` layers; `capacity` columns are reserved on first use (it grows past them).
  explicit KVCache(std::int64_t num_layers, std::int64_t capacity = 0)
      : layers_(static_cast<std::size_t>(num_layers)), capacity_hint_(capacity) {
    verl::detail::check<ConfigError>(num_layers >= 1, "verl::models::KVCache: `num_layers` is ", num_layers,
                               ", expected >= 1");
  }

  //! Columns cached so far (including the current forward's after its layers ran).
  [[nodiscard]] std::int64_t length() const { return mask_.defined() ? mask_.size(1) : 0; }
  //! Number of layers.
  [[nodiscard]] std::int64_t num_layers() const { return static_cast<std::int64_t>(layers_.size()); }
  //! The (B,L) mask of the cached columns (undefined while empty).
  [[nodiscard]] const at::Tensor& attention_mask() const { return mask_; }

  //! Appends the mask of a forward's new columns (B,T); returns the mask of all columns (B,L+T). Called
  //! by the decoder once per forward, before its layers.
  at::Tensor append_mask(const at::Tensor& new_mask) {
    if (mask_.defined()) {
      verl::detail::check<ShapeError>(new_mask.size(0) == mask_.size(0), "verl::models::KVCache: a forward with batch size ",
                                new_mask.size(0), " on a cache holding batch size ", mask_.size(0));
      mask_ = at::cat({mask_, new_mask.to(mask_.scalar_type())}, 1);  // (B,L+T)
    } else {
      mask_ = new_mask.to(at::kLong);  // (B,T)
    }
    return mask_;
  }

  //! Stores layer `layer`'s new keys and values (B,Hkv,T,D); returns all of its keys and values (B,Hkv,L,D).
  std::pair<at::Tensor, at::Tensor> update(std::int64_t layer, const at::Tensor& k, const at::Tensor& v) {
    verl::detail::check<ShapeError>(layer >= 0 && layer < num_layers(), "verl::models::KVCache::update: layer ", layer,
                              " out of range [0, ", num_layers(), ")");
    auto& l = layers_[static_cast<std::size_t>(layer)];
    const std::int64_t t = k.size(2);
    if (!l.keys.defined() || l.length + t > l.keys.size(2)) {
      const std::int64_t cap = std::max({l.length + t, capacity_hint_, l.keys.defined() ? 2 * l.keys.size(2) : 0});
      auto keys = at::empty({k.size(0), k.size(1), cap, k.size(3)}, k.options());    // (B,Hkv,cap,D)
      auto values = at::empty({v.size(0), v.size(1), cap, v.size(3)}, v.options());  // (B,Hkv,cap,D)
      if (l.length > 0) {
        keys.narrow(2, 0, l.length).copy_(l.keys.narrow(2, 0, l.length));
        values.narrow(2, 0, l.length).copy_(l.values.narrow(2, 0, l.length));
      }
      l.keys = std::move(keys);
      l.values = std::move(values);
    }
    l.keys.narrow(2, l.length, t).copy_(k);
    l.values.narrow(2, l.length, t).copy_(v);
    l.length += t;
    return {l.keys.narrow(2, 0, l.length), l.values.narrow(2, 0, l.length)};
  }

  //! Forgets everything (buffers are released).
  void clear() {
    for (auto& l : layers_) l = Layer{};
    mask_ = at::Tensor();
  }

 private:
  struct Layer {
    at::Tensor keys, values;  // (B,Hkv,capacity,D)
    std::int64_t length = 0;
  };
  std::vector<Layer> layers_;
  std::int64_t capacity_hint_ = 0;
  at::Tensor mask_;  // (B,L) int64
};

}  // namespace verl::models
