#pragma once
//! \file
//! verl::detail::ReusableBuffer: one large CPU block kept between calls and handed out again only when nobody
//! else holds it, so that a computation repeated with the same shapes stops taking fresh pages each time.
//!
//! Why: glibc serves a multi-MiB request with a fresh mmap, and every first write to a fresh page faults into
//! the kernel, which zeroes it (~150,000 faults for the 0.5B model's (4,256,151936) float32 logits). 2 MiB pages
//! (huge_pages.hpp) make the faults fewer, but on a VM that reports freed memory back to its host (virtio-balloon
//! free page reporting, seen on these machines) a 2 MiB block freed for more than ~2 s comes back slower than
//! 4 KiB pages do: the 0.5B forward spent 8% of its time there. A kept block faults once.
//!
//! The cost is memory: the block stays resident between calls (up to the largest request seen, see take());
//! release() returns it. A block is reused only while its storage has no other owner, so a tensor the caller
//! still holds (or an autograd node saved) is never overwritten: that case gets a fresh block.

#include "verl/core/huge_pages.hpp"

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>

#include <cstdint>
#include <mutex>

namespace verl::detail {

class ReusableBuffer {
 public:
  ReusableBuffer() = default;
  // A copy (of a module holding one, say) starts with no block of its own.
  ReusableBuffer(const ReusableBuffer& /*other*/) {}
  ReusableBuffer& operator=(const ReusableBuffer& /*other*/) { return *this; }

  //! A contiguous tensor of `sizes` and `options` with unspecified contents, for the caller to overwrite.
  //! Reuses the kept block when nothing else holds it, its dtype and device match, and the request needs at
  //! least half of it (so one large call does not pin its block for every later small one); otherwise
  //! allocates a new block (with 2 MiB pages where available) and keeps that one instead.
  [[nodiscard]] at::Tensor take(at::IntArrayRef sizes, const at::TensorOptions& options) {
    std::int64_t numel = 1;
    for (const auto d : sizes) numel *= d;
    std::lock_guard<std::mutex> lock(mutex_);
    const bool reusable = block_.defined() && block_.storage().use_count() == 1 &&
                          block_.scalar_type() == c10::typeMetaToScalarType(options.dtype()) &&
                          block_.device() == options.device() && block_.numel() >= numel && 2 * numel >= block_.numel();
    if (!reusable) block_ = empty_for_overwrite({numel}, options);  // (numel,)
    return block_.narrow(0, 0, numel).view(sizes);
  }

  //! Drops the kept block (its memory is freed once no tensor handed out still uses it).
  void release() {
    std::lock_guard<std::mutex> lock(mutex_);
    block_ = at::Tensor();
  }

  //! Bytes of the kept block (0 when none).
  [[nodiscard]] std::int64_t kept_bytes() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return block_.defined() ? static_cast<std::int64_t>(block_.storage().nbytes()) : 0;
  }

 private:
  mutable std::mutex mutex_;
  at::Tensor block_;  // (numel,) 1-D, contiguous
};

}  // namespace verl::detail
