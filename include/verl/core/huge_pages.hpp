#pragma once
//! \file
//! verl::detail::empty_for_overwrite / advise_huge_pages: a large CPU tensor that a kernel is about to write in
//! full, backed by 2 MiB pages where Linux allows it.
//!
//! Why: glibc serves a multi-MiB allocation with a fresh mmap (its dynamic threshold only rises to the size
//! freed, so an equal request is mapped again), and the first write to each 4 KiB page then faults into the
//! kernel, which zeroes the page: ~8,200 faults for a (1024, 4096) float32 output. For a memory-bound kernel
//! that is as much time as the kernel itself (ReMax at (1024, 4096): 19.2 ms, of which ~40% in the kernel
//! clearing pages; 8.5 ms with this). With transparent huge pages in "madvise" mode (Debian's and most
//! distributions' default) MADV_HUGEPAGE on the buffer's 2 MiB-aligned interior turns those faults into a few
//! 2 MiB ones. It changes no value; it is a no-op on other systems, for small or non-CPU tensors, and where the
//! kernel refuses (THP "never"): the result of madvise is deliberately ignored.

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>

#include <cstdint>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace verl::detail {

//! Tensors below this many bytes are left alone (they rarely come from a fresh mmap, and a 2 MiB page would
//! not fit inside them often enough to matter).
inline constexpr std::int64_t kHugePageAdviceMinBytes = std::int64_t{4} << 20;

//! Advises 2 MiB pages for the whole 2 MiB-aligned pages inside `t`'s storage (see the file comment).
inline void advise_huge_pages(const at::Tensor& t) noexcept {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  if (!t.defined() || !t.is_cpu()) return;
  const std::int64_t bytes = static_cast<std::int64_t>(t.storage().nbytes());
  if (bytes < kHugePageAdviceMinBytes) return;
  constexpr std::uintptr_t kHuge = std::uintptr_t{1} << 21;
  const auto begin = reinterpret_cast<std::uintptr_t>(t.storage().data());
  const std::uintptr_t lo = (begin + kHuge - 1) & ~(kHuge - 1);
  const std::uintptr_t hi = (begin + static_cast<std::uintptr_t>(bytes)) & ~(kHuge - 1);
  if (hi > lo) (void)::madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_HUGEPAGE);
#else
  (void)t;
#endif
}

//! at::empty(sizes, options) followed by advise_huge_pages: for outputs and scratch buffers that the caller
//! writes in full before reading.
[[nodiscard]] inline at::Tensor empty_for_overwrite(at::IntArrayRef sizes, const at::TensorOptions& options) {
  at::Tensor t = at::empty(sizes, options);
  advise_huge_pages(t);
  return t;
}

}  // namespace verl::detail
