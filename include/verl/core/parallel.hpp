#pragma once
//! \file
//! verl::detail::parallel_rows: a row-parallel loop that really runs on LibTorch's intra-op threads.
//!
//! Why not `at::parallel_for`: it is an inline template whose OpenMP build (the PyPI wheel's) is a
//! `#pragma omp parallel`, so in a translation unit compiled without -fopenmp (verl-cpp's and most users')
//! it silently runs on one thread. TensorIteratorBase::for_each is compiled inside libtorch, so driving it
//! with a tensor of row numbers spreads the rows over the same threads, with the same grain rule, as ATen's
//! own kernels, whatever the user's flags.

#include <ATen/Parallel.h>
#include <ATen/TensorIterator.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>

#include <algorithm>
#include <cstdint>

namespace verl::detail {

//! Calls `fn(b0, b1)` on disjoint row ranges covering [0, rows), in parallel on LibTorch's intra-op threads
//! when the work (rows x cols elements) exceeds `grain_elements` (ATen's grain size by default; a smaller one
//! for work that costs much more per element than a copy). `fn` must not throw.
template <class F>
void parallel_rows(std::int64_t rows, std::int64_t cols, const F& fn,
                   std::int64_t grain_elements = at::internal::GRAIN_SIZE) {
  const std::int64_t grain = std::max<std::int64_t>(1, grain_elements / std::max<std::int64_t>(1, cols));
  if (rows <= grain || at::get_num_threads() <= 1 || at::in_parallel_region()) {
    if (rows > 0) fn(std::int64_t{0}, rows);
    return;
  }
  // A (rows,) tensor of row numbers drives the iterator: each chunk it hands out starts at the row it names.
  auto idx = at::empty({rows}, at::TensorOptions().dtype(at::kLong));  // (rows,)
  std::int64_t* p = idx.data_ptr<std::int64_t>();
  for (std::int64_t i = 0; i < rows; ++i) p[i] = i;
  auto iter = at::TensorIteratorConfig().add_output(idx).resize_outputs(false).check_all_same_dtype(false).build();
  iter.for_each(
      [&](char** data, const std::int64_t* /*strides*/, std::int64_t n) {
        const std::int64_t b0 = *reinterpret_cast<const std::int64_t*>(data[0]);
        fn(b0, b0 + n);
      },
      grain);
}

}  // namespace verl::detail
