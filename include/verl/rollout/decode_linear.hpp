#pragma once
//! \file
//! verl::rollout::decode_linear: y = x W^T (+ b) for the few rows of a decode step, streaming the weight once.
//!
//! Why: a decode step of a small batch is a thin matrix product per weight matrix, bound by reading the
//! weights. MKL's sgemv behind at::linear streams a DRAM-resident float32 matrix at well under this
//! machine's read bandwidth (measured ~12-13 GB/s on one core against ~30 GB/s for a plain sum), so decode at
//! batch 1 would sit near 40% of its roofline. This kernel reads each weight row once, keeps it in L1 while
//! it scores every input row against it, and spreads the output rows over LibTorch's intra-op threads
//! (verl::detail::parallel_rows). It is compiled for the baseline ISA and for AVX2+FMA, chosen at run time,
//! so it vectorises without -march flags in the user's build. Float32 only; other cases go to at::linear.
//!
//! Results differ from at::linear by float32 summation order only (16 partial sums, a fixed tree, then the
//! tail columns).

#include "verl/core/cpu_features.hpp"
#include "verl/core/errors.hpp"
#include "verl/core/parallel.hpp"

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/linear.h>

#include <algorithm>
#include <cstdint>

namespace verl::rollout {

//! The largest row count decode_linear takes; above it MKL's GEMM wins (measured with 2 threads: at 64 rows
//! the two tie on a 4864x896 weight and decode_linear is 1.3x faster on the 151936x896 LM head; at 256 MKL is
//! 1.2x faster on the layer weight). Below it MKL's small-M path is 1.5-4x slower (bench_rollout linear_rows).
inline constexpr std::int64_t decode_linear_max_rows = 64;

namespace detail {

#define VERL_DL_INLINE [[gnu::always_inline]] inline

// Eight floats as one value: a ymm register in the AVX2 clone, two xmm in the baseline one. Accumulators of
// this type stay in registers, where a float[16] array of partial sums was kept on the stack by GCC.
typedef float v8f __attribute__((vector_size(32)));

// An out-parameter rather than a return value: a 32-byte vector returned by value changes the ABI of the
// baseline clone (GCC's -Wpsabi warning), which users' builds would show.
VERL_DL_INLINE void load8(v8f& v, const float* p) { __builtin_memcpy(&v, p, sizeof(v)); }

// The M dot products of one weight row with the M input rows: 16 partial sums per input row (two v8f), the
// weight row loaded once per 16 columns for all M rows; then a fixed reduction tree (no reassociation of
// the caller's sums beyond this order, so results do not depend on threads).
template <int M>
VERL_DL_INLINE void row_dots(const float* __restrict x, std::int64_t in, const float* __restrict row,
                             float* __restrict out) {
  v8f lo[M], hi[M];
  for (int r = 0; r < M; ++r) lo[r] = hi[r] = v8f{};
  std::int64_t i = 0;
  for (; i + 16 <= in; i += 16) {
    v8f w0, w1, x0, x1;
    load8(w0, row + i);
    load8(w1, row + i + 8);
    for (int r = 0; r < M; ++r) {
      load8(x0, x + r * in + i);
      load8(x1, x + r * in + i + 8);
      lo[r] += x0 * w0;
      hi[r] += x1 * w1;
    }
  }
  for (int r = 0; r < M; ++r) {
    const v8f t = lo[r] + hi[r];
    float sum = ((t[0] + t[4]) + (t[2] + t[6])) + ((t[1] + t[5]) + (t[3] + t[7]));
    for (std::int64_t k = i; k < in; ++k) sum += x[r * in + k] * row[k];
    out[r] = sum;
  }
}

struct DecodeLinearArgs {
  const float* x;     // (M,I)
  const float* w;     // (O,I)
  const float* bias;  // (O) or null
  float* y;           // (M,O)
  std::int64_t m, in, out;
};

// Output rows [o0, o1) for input rows [r0, r0 + M).
template <int M>
VERL_DL_INLINE void decode_linear_rows_m(const DecodeLinearArgs& a, std::int64_t r0, std::int64_t o0, std::int64_t o1) {
  float d[M];
  const float* x = a.x + r0 * a.in;
  for (std::int64_t o = o0; o < o1; ++o) {
    row_dots<M>(x, a.in, a.w + o * a.in, d);
    const float b = a.bias != nullptr ? a.bias[o] : 0.0f;
    for (int r = 0; r < M; ++r) a.y[(r0 + r) * a.out + o] = d[r] + b;
  }
}

// Output rows [o0, o1) for all input rows: a tile of output rows small enough for L2 is read from memory once
// and then scored against the input rows four at a time.
VERL_DL_INLINE void decode_linear_rows(const DecodeLinearArgs& a, std::int64_t o0, std::int64_t o1) {
  const std::int64_t tile = std::max<std::int64_t>(1, (std::int64_t{96} << 10) / (4 * a.in));  // ~96 KiB of weights
  for (std::int64_t t0 = o0; t0 < o1; t0 += tile) {
    const std::int64_t t1 = std::min(o1, t0 + tile);
    std::int64_t r0 = 0;
    for (; r0 + 4 <= a.m; r0 += 4) decode_linear_rows_m<4>(a, r0, t0, t1);
    switch (a.m - r0) {
      case 1: decode_linear_rows_m<1>(a, r0, t0, t1); break;
      case 2: decode_linear_rows_m<2>(a, r0, t0, t1); break;
      case 3: decode_linear_rows_m<3>(a, r0, t0, t1); break;
      default: break;
    }
  }
}

inline void decode_linear_rows_generic(const DecodeLinearArgs& a, std::int64_t o0, std::int64_t o1) {
  decode_linear_rows(a, o0, o1);
}
[[gnu::target("avx2,fma")]] inline void decode_linear_rows_avx2(const DecodeLinearArgs& a, std::int64_t o0,
                                                                 std::int64_t o1) {
  decode_linear_rows(a, o0, o1);
}

#undef VERL_DL_INLINE

}  // namespace detail

//! True when decode_linear computes `x` (M,I) W^T: CPU float32 contiguous tensors, 1 <= M <= decode_linear_max_rows.
[[nodiscard]] inline bool decode_linear_applies(const at::Tensor& x, const at::Tensor& w) {
  return x.dim() == 2 && x.size(0) >= 1 && x.size(0) <= decode_linear_max_rows && x.device().is_cpu() &&
         w.device().is_cpu() && x.scalar_type() == at::kFloat && w.scalar_type() == at::kFloat && w.dim() == 2 &&
         w.size(1) == x.size(1) && x.is_contiguous() && w.is_contiguous();
}

//! x (M,I) -> x W^T + bias, (M,O), W (O,I) and bias (O) or undefined, as at::linear; see the file comment.
//! Falls back to at::linear when decode_linear_applies is false. No autograd (call under no-grad).
[[nodiscard]] inline at::Tensor decode_linear(const at::Tensor& x, const at::Tensor& w, const at::Tensor& bias = {}) {
  if (!decode_linear_applies(x, w) ||
      (bias.defined() && (bias.scalar_type() != at::kFloat || !bias.is_contiguous() || bias.numel() != w.size(0)))) {
    return bias.defined() ? at::linear(x, w, bias) : at::linear(x, w);
  }
  auto y = at::empty({x.size(0), w.size(0)}, x.options());  // (M,O)
  const detail::DecodeLinearArgs args{x.data_ptr<float>(), w.data_ptr<float>(),
                                      bias.defined() ? bias.data_ptr<float>() : nullptr, y.data_ptr<float>(),
                                      x.size(0), x.size(1), w.size(0)};
  const bool avx2 = verl::detail::cpu_has_avx2_fma();
  verl::detail::parallel_rows(args.out, args.in * args.m, [&](std::int64_t o0, std::int64_t o1) {
    if (avx2) {
      detail::decode_linear_rows_avx2(args, o0, o1);
    } else {
      detail::decode_linear_rows_generic(args, o0, o1);
    }
  });
  return y;
}

}  // namespace verl::rollout
