#pragma once
//! \file
//! Grouped-query attention over short sequences as one autograd node with its own CPU kernels: the forward and
//! backward of softmax(scale q k^T + mask) v for float32 CPU tensors when the key length L is at most
//! kShortAttentionMaxKeys.
//!
//! Why: on the CPU, at::scaled_dot_product_attention runs ATen's flash kernel, whose per-block set-up (GEMM
//! calls on 10 x 16 tiles, buffers, scalar exp for the rescaling) dominates at the lengths of RL post-training
//! batches of short prompts: for the quickstart's (128 sequences, 4 heads, 10 tokens, head_dim 16) it costs
//! ~1.2 ms per layer for forward and backward against ~0.57 ms here (bench/bench_models.cpp "attention"). GQA
//! needs no expanded copies of the key/value heads: each work item is one (sequence, KV head) and handles that
//! head's G query heads, which also makes the key/value gradients race-free without atomics.
//!
//! Semantics: the same function as SDPA with `attn_mask` boolean (true = attend) or, with no mask, `is_causal`
//! (T == L): row i of the scores is scale * q_i . k_j over the allowed j, softmax-normalised (max subtracted
//! first), times v. Not bit-identical to SDPA (the sums run in another order); the tests bound the difference
//! against float64 SDPA. A query row with no allowed key gets a zero output and zero gradients (SDPA's math
//! path returns NaN there; the models never build such a row: every query attends at least to itself).
//!
//! Layout: the output is allocated (B,T,H,D)-contiguous and returned as its (B,H,T,D) transpose, so the
//! attention block's `out.transpose(1, 2).reshape(B, T, H * D)` is a view, not a copy.

#include "verl/core/cpu_features.hpp"
#include "verl/core/fast_exp.hpp"
#include "verl/core/parallel.hpp"

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/zeros_like.h>
#include <c10/core/GradMode.h>
#include <torch/csrc/autograd/custom_function.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <utility>

#if defined(__GNUC__) || defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wattributes"
#define VERL_SA_INLINE [[gnu::always_inline]] inline
#else
#define VERL_SA_INLINE inline
#endif

namespace verl::models::detail {

//! The longest key length the kernels take; longer ones go to SDPA. Measured on the 2-core machine (forward +
//! backward, against SDPA with expanded GQA heads): 2.1x faster at L = 10 (B 128, H 4/2, D 16), 1.25x at
//! L = 32, and at L = 64 about even (0.93-1.2x, the forward alone up to 1.25x slower), hence 32.
inline constexpr std::int64_t kShortAttentionMaxKeys = 32;

namespace sa {

//! A (B, heads, rows, D) tensor's data and strides; the last dimension is contiguous.
struct View4 {
  float* data;
  std::int64_t sb, sh, st;
  VERL_SA_INLINE float* row(std::int64_t b, std::int64_t h, std::int64_t t) const {
    return data + b * sb + h * sh + t * st;
  }
};

inline View4 view4(const at::Tensor& x) {
  return {const_cast<float*>(x.const_data_ptr<float>()), x.stride(0), x.stride(1), x.stride(2)};
}

//! Everything one call of the kernels reads and writes.
struct Args {
  View4 q, k, v, o;                     // q, o (B,H,T,D); k, v (B,Hkv,L,D)
  View4 dout, dq, dk, dv;               // backward only
  float* lse;                           // (B,H,T) contiguous: saved by the forward, read by the backward
  const bool* mask;                     // (B or 1, 1, T, L) or null (causal, T == L)
  std::int64_t mask_sb, mask_st;        // mask strides (batch, query row); the key stride is 1
  std::int64_t heads, kv_heads, t, l, d;
  float scale;
};

//! q . k over D values with eight independent partial sums (one AVX2 register), added as a tree.
VERL_SA_INLINE float dot(const float* __restrict a, const float* __restrict b, std::int64_t d) {
  float part[8] = {};
  std::int64_t i = 0;
  for (; i + 8 <= d; i += 8) {
    for (int j = 0; j < 8; ++j) part[j] += a[i + j] * b[i + j];
  }
  float s = ((part[0] + part[4]) + (part[2] + part[6])) + ((part[1] + part[5]) + (part[3] + part[7]));
  for (; i < d; ++i) s += a[i] * b[i];
  return s;
}

VERL_SA_INLINE void axpy(float* __restrict acc, float p, const float* __restrict x, std::int64_t d) {
  for (std::int64_t i = 0; i < d; ++i) acc[i] += p * x[i];
}

//! Scores of query row (b, h, i) against its keys, into s[0, L): scale q.k where allowed, -inf elsewhere.
//! Returns the row max (-inf when no key is allowed).
VERL_SA_INLINE float score_row(const Args& a, std::int64_t b, std::int64_t h, std::int64_t kvh, std::int64_t i,
                               float* s) {
  const float* q = a.q.row(b, h, i);
  const bool* allowed = a.mask != nullptr ? a.mask + b * a.mask_sb + i * a.mask_st : nullptr;
  const std::int64_t last = a.mask != nullptr ? a.l : i + 1;  // causal: keys 0..i
  float m = -std::numeric_limits<float>::infinity();
  for (std::int64_t j = 0; j < a.l; ++j) {
    if (j < last && (allowed == nullptr || allowed[j])) {
      s[j] = a.scale * dot(q, a.k.row(b, kvh, j), a.d);
      m = std::max(m, s[j]);
    } else {
      s[j] = -std::numeric_limits<float>::infinity();
    }
  }
  return m;
}

VERL_SA_INLINE void forward_impl(const Args& a, std::int64_t u0, std::int64_t u1) {
  float s[kShortAttentionMaxKeys], p[kShortAttentionMaxKeys];
  const std::int64_t groups = a.heads / a.kv_heads;
  for (std::int64_t u = u0; u < u1; ++u) {
    const std::int64_t b = u / a.kv_heads, kvh = u % a.kv_heads;
    for (std::int64_t g = 0; g < groups; ++g) {
      const std::int64_t h = kvh * groups + g;
      for (std::int64_t i = 0; i < a.t; ++i) {
        float* o = a.o.row(b, h, i);
        std::fill(o, o + a.d, 0.0f);
        float* lse = a.lse + (b * a.heads + h) * a.t + i;
        const float m = score_row(a, b, h, kvh, i, s);
        if (m == -std::numeric_limits<float>::infinity()) {  // nothing to attend: zero output, zero gradient
          *lse = std::numeric_limits<float>::infinity();
          continue;
        }
        for (std::int64_t j = 0; j < a.l; ++j) s[j] -= m;
        for (std::int64_t j = 0; j < a.l; ++j) p[j] = verl::detail::exp_nonpositive(s[j]);
        float sum = 0;
        for (std::int64_t j = 0; j < a.l; ++j) sum += p[j];
        const float inv = 1.0f / sum;
        for (std::int64_t j = 0; j < a.l; ++j) {
          if (p[j] != 0.0f) axpy(o, p[j] * inv, a.v.row(b, kvh, j), a.d);
        }
        *lse = m + std::log(sum);
      }
    }
  }
}

//! dV_j += p_ij dO_i, dS_ij = p_ij (dO_i . v_j - dO_i . O_i), dQ_i = scale sum_j dS_ij k_j,
//! dK_j += scale dS_ij q_i, with p_ij = exp(s_ij - lse_i) recomputed from the scores.
VERL_SA_INLINE void backward_impl(const Args& a, std::int64_t u0, std::int64_t u1) {
  float s[kShortAttentionMaxKeys], p[kShortAttentionMaxKeys];
  const std::int64_t groups = a.heads / a.kv_heads;
  for (std::int64_t u = u0; u < u1; ++u) {
    const std::int64_t b = u / a.kv_heads, kvh = u % a.kv_heads;
    for (std::int64_t g = 0; g < groups; ++g) {
      const std::int64_t h = kvh * groups + g;
      for (std::int64_t i = 0; i < a.t; ++i) {
        float* dq = a.dq.row(b, h, i);
        std::fill(dq, dq + a.d, 0.0f);
        const float lse = a.lse[(b * a.heads + h) * a.t + i];
        if (lse == std::numeric_limits<float>::infinity()) continue;
        (void)score_row(a, b, h, kvh, i, s);
        for (std::int64_t j = 0; j < a.l; ++j) s[j] -= lse;
        for (std::int64_t j = 0; j < a.l; ++j) p[j] = verl::detail::exp_nonpositive(s[j]);
        const float* dout = a.dout.row(b, h, i);
        const float* q = a.q.row(b, h, i);
        const float di = dot(dout, a.o.row(b, h, i), a.d);
        for (std::int64_t j = 0; j < a.l; ++j) {
          if (p[j] == 0.0f) continue;
          const float* vj = a.v.row(b, kvh, j);
          axpy(a.dv.row(b, kvh, j), p[j], dout, a.d);
          const float ds = p[j] * (dot(dout, vj, a.d) - di) * a.scale;
          axpy(dq, ds, a.k.row(b, kvh, j), a.d);
          axpy(a.dk.row(b, kvh, j), ds, q, a.d);
        }
      }
    }
  }
}

inline bool has_avx2() { return verl::detail::cpu_has_avx2_fma(); }

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
[[gnu::target("avx2,fma")]] inline void forward_avx2(const Args& a, std::int64_t u0, std::int64_t u1) {
  forward_impl(a, u0, u1);
}
[[gnu::target("avx2,fma")]] inline void backward_avx2(const Args& a, std::int64_t u0, std::int64_t u1) {
  backward_impl(a, u0, u1);
}
#endif

inline void forward_base(const Args& a, std::int64_t u0, std::int64_t u1) { forward_impl(a, u0, u1); }
inline void backward_base(const Args& a, std::int64_t u0, std::int64_t u1) { backward_impl(a, u0, u1); }

//! Runs the forward (or the backward) over all (sequence, KV head) work items on LibTorch's intra-op threads.
inline void run(const Args& a, std::int64_t batch, bool backward) {
  const std::int64_t work_per_item = (a.heads / a.kv_heads) * a.t * a.l * a.d * (backward ? 4 : 2);
  verl::detail::parallel_rows(batch * a.kv_heads, work_per_item, [&](std::int64_t u0, std::int64_t u1) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    if (has_avx2()) return backward ? backward_avx2(a, u0, u1) : forward_avx2(a, u0, u1);
#endif
    backward ? backward_base(a, u0, u1) : forward_base(a, u0, u1);
  });
}

//! The Args of q (B,H,T,D), k, v (B,Hkv,L,D), an optional mask and the scale (data pointers of the rest null).
inline Args make_args(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& mask,
                      double scale) {
  Args a{};
  a.q = view4(q);
  a.k = view4(k);
  a.v = view4(v);
  a.heads = q.size(1);
  a.kv_heads = k.size(1);
  a.t = q.size(2);
  a.l = k.size(2);
  a.d = q.size(3);
  a.scale = static_cast<float>(scale);
  if (mask.defined()) {
    a.mask = mask.const_data_ptr<bool>();
    a.mask_sb = mask.size(0) == 1 ? 0 : mask.stride(0);
    a.mask_st = mask.stride(2);
  }
  return a;
}

//! Output (B,H,T,D) as the transpose of a (B,T,H,D)-contiguous tensor, and the (B,H,T) log-sum-exp.
inline std::pair<at::Tensor, at::Tensor> forward(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                                 const at::Tensor& mask, double scale) {
  const auto b = q.size(0), h = q.size(1), t = q.size(2), d = q.size(3);
  auto out = at::empty({b, t, h, d}, q.options()).transpose(1, 2);  // (B,H,T,D) view
  auto lse = at::empty({b, h, t}, q.options());                     // (B,H,T)
  Args a = make_args(q, k, v, mask, scale);
  a.o = view4(out);
  a.lse = lse.mutable_data_ptr<float>();
  run(a, b, /*backward=*/false);
  return {out, lse};
}

}  // namespace sa

//! The autograd node of short_attention: inputs q, k, v; the mask and scale are constants.
struct ShortAttentionFunction : torch::autograd::Function<ShortAttentionFunction> {
  static torch::autograd::variable_list forward(torch::autograd::AutogradContext* ctx, const at::Tensor& q,
                                                const at::Tensor& k, const at::Tensor& v, const at::Tensor& mask,
                                                double scale) {
    const auto m = mask.numel() == 0 ? at::Tensor() : mask;  // empty: causal (see short_attention)
    auto [out, lse] = sa::forward(q, k, v, m, scale);
    ctx->save_for_backward({q, k, v, out, lse});
    ctx->saved_data["mask"] = m;
    ctx->saved_data["scale"] = scale;
    return {out};
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto &q = saved[0], &k = saved[1], &v = saved[2], &out = saved[3], &lse = saved[4];
    const auto mask = ctx->saved_data["mask"].toOptional<at::Tensor>().value_or(at::Tensor());
    auto g = grads[0];
    if (g.stride(-1) != 1) g = g.contiguous();
    auto dq = at::empty_like(q);
    auto dk = at::zeros_like(k);
    auto dv = at::zeros_like(v);
    sa::Args a = sa::make_args(q, k, v, mask, ctx->saved_data["scale"].toDouble());
    a.o = sa::view4(out);
    a.lse = const_cast<float*>(lse.const_data_ptr<float>());
    a.dout = sa::view4(g);
    a.dq = sa::view4(dq);
    a.dk = sa::view4(dk);
    a.dv = sa::view4(dv);
    sa::run(a, q.size(0), /*backward=*/true);
    return {dq, dk, dv, at::Tensor(), at::Tensor()};
  }
};

//! softmax(scale q k^T + mask) v for q (B,H,T,D), k and v (B,Hkv,L,D) (H a multiple of Hkv: grouped-query
//! attention without expanding the key/value heads) and `mask` boolean (B or 1, 1, T, L) with true = attend,
//! or undefined for causal attention with T == L; or an undefined tensor when the kernels do not apply (then
//! the caller runs SDPA): float32 CPU tensors, last dimensions contiguous, 1 <= L <= kShortAttentionMaxKeys.
[[nodiscard]] inline at::Tensor short_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                                const at::Tensor& mask, double scale) {
  const auto on_cpu_float = [](const at::Tensor& x) {
    return x.device().is_cpu() && x.scalar_type() == at::kFloat && x.dim() == 4 && x.stride(-1) == 1;
  };
  if (!on_cpu_float(q) || !on_cpu_float(k) || !on_cpu_float(v) || k.sizes() != v.sizes() || q.size(0) != k.size(0) ||
      q.size(3) != k.size(3) || k.size(1) == 0 || q.size(1) % k.size(1) != 0 || k.size(2) < 1 ||
      k.size(2) > kShortAttentionMaxKeys || q.size(0) == 0 || q.size(2) == 0 || q.size(3) == 0) {
    return {};
  }
  if (mask.defined()) {
    if (!mask.device().is_cpu() || mask.scalar_type() != at::kBool || mask.dim() != 4 || mask.size(1) != 1 ||
        (mask.size(0) != 1 && mask.size(0) != q.size(0)) || mask.size(2) != q.size(2) || mask.size(3) != k.size(2) ||
        mask.stride(3) != 1) {
      return {};
    }
  } else if (q.size(2) != k.size(2)) {
    return {};
  }
  if (c10::GradMode::is_enabled() && (q.requires_grad() || k.requires_grad() || v.requires_grad())) {
    // An autograd Function's tensor arguments must be defined: "no mask" travels as an empty tensor.
    const auto mask_arg = mask.defined() ? mask : at::empty({0}, q.options().dtype(at::kBool));
    return ShortAttentionFunction::apply(q, k, v, mask_arg, scale)[0];
  }
  return sa::forward(q, k, v, mask, scale).first;
}

}  // namespace verl::models::detail

#undef VERL_SA_INLINE
#if defined(__GNUC__) || defined(__clang__)
#pragma GCC diagnostic pop
#endif
