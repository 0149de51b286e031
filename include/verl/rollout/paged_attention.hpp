#pragma once
//! \file
//! verl::rollout::paged_attention and write_kv: causal (optionally sliding-window) grouped-query attention of
//! one engine step's query rows over the paged KV pool (kv_pool.hpp), and the write of the step's new
//! keys/values into the pool.
//!
//! Pool layout, per layer: key_cache and value_cache (num_blocks, Hkv, block_size, D) in the model dtype. KV
//! position j of a sequence lives in block block_table[j / block_size] at offset j % block_size, so one block
//! of one KV head is a contiguous (block_size, D) tile.
//!
//! Two paths compute the same function:
//! - the CPU kernel, for sequences with few query rows (decode: one; small prefill chunks). One work item per
//!   (sequence, KV head), spread over LibTorch's intra-op threads with verl::detail::parallel_rows. It walks
//!   the sequence's blocks once, scores the G = H/Hkv query heads of every row against each key tile while it
//!   is in L1, and keeps a running (online-softmax) max, sum and value accumulator per query vector, in float
//!   (double for double storage), subtracting the running max before exp so nothing overflows. The loops are
//!   written for GCC's auto-vectoriser (16 independent partial sums for dot products, axpy over D, a
//!   Cephes-style polynomial exp over 16 scores) and compiled for the baseline ISA and for AVX2+FMA (chosen at
//!   run time), so they vectorise without -ffast-math or -march flags in the user's build.
//! - gather + SDPA, for sequences with many query rows (prefill) and as the device-generic fallback (CUDA, or
//!   a dtype the kernel lacks): the sequence's blocks are gathered into a contiguous (1,Hkv,L,D) tensor with
//!   index_select, repeated for GQA and passed to at::scaled_dot_product_attention with a boolean mask offset
//!   by the cached length (SDPA's own causal path when nothing is cached and no window cuts in).
//!
//! Only the blocks that hold visible positions are read: with a sliding window, blocks wholly before the
//! window of a sequence's first query row are never touched, so the engine may free them (entries -1).

#include "verl/core/cpu_features.hpp"
#include "verl/core/errors.hpp"
#include "verl/core/parallel.hpp"

#include <ATen/core/List.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/arange.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/scaled_dot_product_attention.h>
#include <ATen/ops/stack.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <optional>
#include <type_traits>
#include <vector>

namespace verl::rollout {

//! The sequences of one engine step, as flat index tensors (all int64, CPU).
struct PagedAttentionBatch {
  at::Tensor block_tables;   //!< (S, max_blocks) int64: block ids of each sequence; unused entries -1
  at::Tensor context_lens;   //!< (S) int64: KV length of each sequence INCLUDING this step's new tokens
  at::Tensor query_starts;   //!< (S+1) int64: the query rows of sequence s are q[query_starts[s] .. query_starts[s+1])
  std::int64_t sliding_window = 0;  //!< 0 = full causal; w > 0: query at position i sees keys j with i-w < j <= i
};

//! Which implementation paged_attention runs.
enum class PagedAttentionPath {
  automatic,    //!< the CPU kernel for sequences with <= kernel_max_query_rows rows (CPU, supported dtype), else gather + SDPA
  kernel,       //!< the CPU kernel for every sequence (CPU tensors of float32/float64/bfloat16/float16 only)
  gather_sdpa,  //!< gather + at::scaled_dot_product_attention for every sequence (any device, any floating dtype)
};

//! Knobs of paged_attention; the defaults are what the engine uses.
struct PagedAttentionOptions {
  PagedAttentionPath path = PagedAttentionPath::automatic;
  //! Under `automatic`, sequences with at most this many query rows take the CPU kernel. Above it SDPA's
  //! matrix-product kernels win: the hand kernel's work grows with rows x context, one vector at a time.
  std::int64_t kernel_max_query_rows = 16;
};

namespace detail {

//! One sequence of the step, validated: its query rows [q0, q0+n), context length ctx, and the block range
//! [block_lo, block_hi) of its table that holds the positions some row of it sees.
struct PagedSeq {
  std::int64_t q0 = 0, n = 0, ctx = 0, block_lo = 0, block_hi = 0;
  const std::int64_t* table = nullptr;  // row of the (contiguous, CPU) block table
};

//! The validated step: sizes, the per-sequence plan, and the contiguous block table the plan points into.
struct PagedPlan {
  std::int64_t n = 0, heads = 0, kv_heads = 0, head_dim = 0, num_blocks = 0, block_size = 0, window = 0;
  std::vector<PagedSeq> seqs;
  at::Tensor tables;  // (S, max_blocks) int64 CPU contiguous: keeps `seqs[i].table` alive
};

//! Checks every input of paged_attention (ShapeError naming the argument and what was expected) and plans
//! the per-sequence work.
inline PagedPlan plan_paged_attention(const at::Tensor& q, const at::Tensor& key_cache, const at::Tensor& value_cache,
                                      const PagedAttentionBatch& batch) {
  using verl::detail::check;
  constexpr const char* who = "verl::rollout::paged_attention: ";
  check<ShapeError>(q.defined() && key_cache.defined() && value_cache.defined(), who,
                    "`q`, `key_cache` and `value_cache` must be defined tensors");
  check<ShapeError>(q.dim() == 3, who, "`q` must be (N,H,D), got shape ", q.sizes());
  check<ShapeError>(key_cache.dim() == 4, who, "`key_cache` must be (num_blocks,Hkv,block_size,D), got shape ",
                    key_cache.sizes());
  check<ShapeError>(value_cache.sizes() == key_cache.sizes(), who, "`value_cache` has shape ", value_cache.sizes(),
                    ", expected the shape of `key_cache` ", key_cache.sizes());
  check<ShapeError>(at::isFloatingType(q.scalar_type()), who, "`q` has dtype ", q.scalar_type(),
                    ", expected a floating dtype");
  check<ShapeError>(key_cache.scalar_type() == q.scalar_type() && value_cache.scalar_type() == q.scalar_type(), who,
                    "`q`, `key_cache` and `value_cache` have dtypes ", q.scalar_type(), ", ", key_cache.scalar_type(),
                    ", ", value_cache.scalar_type(), ", expected one dtype");
  check<ShapeError>(key_cache.device() == q.device() && value_cache.device() == q.device(), who, "`q`, `key_cache` and ",
                    "`value_cache` are on ", q.device(), ", ", key_cache.device(), ", ", value_cache.device(),
                    ", expected one device");
  PagedPlan p;
  p.n = q.size(0);
  p.heads = q.size(1);
  p.head_dim = q.size(2);
  p.num_blocks = key_cache.size(0);
  p.kv_heads = key_cache.size(1);
  p.block_size = key_cache.size(2);
  p.window = batch.sliding_window;
  check<ShapeError>(key_cache.size(3) == p.head_dim, who, "`q` has head dim ", p.head_dim, " but `key_cache` has ",
                    key_cache.size(3), ", expected the same head dim");
  check<ShapeError>(p.kv_heads >= 1 && p.heads >= 1 && p.heads % p.kv_heads == 0, who, "`q` has ", p.heads,
                    " heads and the cache ", p.kv_heads, " KV heads, expected H a positive multiple of Hkv (GQA)");
  check<ShapeError>(p.block_size >= 1, who, "`key_cache` has block_size ", p.block_size, ", expected >= 1");
  check<ConfigError>(p.window >= 0, who, "`batch.sliding_window` is ", p.window,
                     ", expected 0 (full causal attention) or a window >= 1");

  const auto& bt = batch.block_tables;
  const auto& cl = batch.context_lens;
  const auto& qs = batch.query_starts;
  check<ShapeError>(bt.defined() && bt.dim() == 2 && bt.scalar_type() == at::kLong && bt.is_cpu(), who,
                    "`batch.block_tables` must be a (S,max_blocks) int64 CPU tensor, got ",
                    bt.defined() ? bt.toString() : std::string("an undefined tensor"), " of shape ",
                    bt.defined() ? bt.sizes() : at::IntArrayRef{});
  const std::int64_t s = bt.size(0), max_blocks = bt.size(1);
  check<ShapeError>(cl.defined() && cl.dim() == 1 && cl.size(0) == s && cl.scalar_type() == at::kLong && cl.is_cpu(),
                    who, "`batch.context_lens` must be a (S) = (", s, ") int64 CPU tensor, got ",
                    cl.defined() ? cl.toString() : std::string("an undefined tensor"), " of shape ",
                    cl.defined() ? cl.sizes() : at::IntArrayRef{});
  check<ShapeError>(qs.defined() && qs.dim() == 1 && qs.size(0) == s + 1 && qs.scalar_type() == at::kLong && qs.is_cpu(),
                    who, "`batch.query_starts` must be a (S+1) = (", s + 1, ") int64 CPU tensor, got ",
                    qs.defined() ? qs.toString() : std::string("an undefined tensor"), " of shape ",
                    qs.defined() ? qs.sizes() : at::IntArrayRef{});
  p.tables = bt.contiguous();
  const auto lens = cl.contiguous(), starts = qs.contiguous();
  const std::int64_t* len = lens.data_ptr<std::int64_t>();
  const std::int64_t* start = starts.data_ptr<std::int64_t>();
  const std::int64_t* table = p.tables.data_ptr<std::int64_t>();
  check<ShapeError>(start[0] == 0 && start[s] == p.n, who, "`batch.query_starts` runs from ", start[0], " to ",
                    start[s], ", expected 0 to N = ", p.n, " (the rows of `q`)");
  p.seqs.resize(static_cast<std::size_t>(s));
  for (std::int64_t i = 0; i < s; ++i) {
    PagedSeq& seq = p.seqs[static_cast<std::size_t>(i)];
    seq.q0 = start[i];
    seq.n = start[i + 1] - start[i];
    seq.ctx = len[i];
    seq.table = table + i * max_blocks;
    check<ShapeError>(seq.n >= 0, who, "`batch.query_starts` decreases at sequence ", i, " (", start[i], " then ",
                      start[i + 1], "), expected non-decreasing row offsets");
    check<ShapeError>(seq.ctx >= seq.n, who, "sequence ", i, " has ", seq.n, " query rows but context length ",
                      seq.ctx, ", expected context_lens[s] >= its query rows (the context includes the new tokens)");
    if (seq.n == 0) continue;  // nothing to compute, nothing read
    // The first row (position ctx - n) sees the earliest keys; later rows see later ones.
    const std::int64_t first_key = p.window > 0 ? std::max<std::int64_t>(0, seq.ctx - seq.n - p.window + 1) : 0;
    seq.block_lo = first_key / p.block_size;
    seq.block_hi = (seq.ctx + p.block_size - 1) / p.block_size;
    check<ShapeError>(seq.block_hi <= max_blocks, who, "sequence ", i, " has context length ", seq.ctx, ", which needs ",
                      seq.block_hi, " blocks of block_size ", p.block_size, ", but `batch.block_tables` has only ",
                      max_blocks, " entries per sequence");
    for (std::int64_t b = seq.block_lo; b < seq.block_hi; ++b) {
      check<ShapeError>(seq.table[b] >= 0 && seq.table[b] < p.num_blocks, who, "sequence ", i, ": block table entry ",
                        b, " is ", seq.table[b], ", expected a block id in [0, ", p.num_blocks,
                        ") (the pool's num_blocks)");
    }
  }
  return p;
}

//! Gather + SDPA for the sequences `which` of `plan` (device-generic): writes their rows of `out` (N,H,D).
inline void paged_attention_sdpa(const at::Tensor& q, const at::Tensor& key_cache, const at::Tensor& value_cache,
                                 const PagedPlan& plan, const std::vector<std::int64_t>& which, double scale,
                                 at::Tensor& out) {
  const std::int64_t hkv = plan.kv_heads, groups = plan.heads / plan.kv_heads, d = plan.head_dim, bs = plan.block_size;
  for (const std::int64_t i : which) {
    const PagedSeq& seq = plan.seqs[static_cast<std::size_t>(i)];
    if (seq.n == 0) continue;
    const std::int64_t nb = seq.block_hi - seq.block_lo, key0 = seq.block_lo * bs, lk = seq.ctx - key0;
    const auto ids = plan.tables.select(0, i).slice(0, seq.block_lo, seq.block_hi).to(key_cache.device());  // (nb)
    auto gather = [&](const at::Tensor& cache) {  // -> (1,H,lk,D): positions key0 .. ctx-1 of every query head
      auto kv = cache.index_select(0, ids).permute({1, 0, 2, 3}).reshape({hkv, nb * bs, d}).narrow(1, 0, lk);  // (Hkv,lk,D)
      if (groups > 1) kv = kv.unsqueeze(1).expand({hkv, groups, lk, d}).reshape({plan.heads, lk, d});  // (H,lk,D)
      return kv.unsqueeze(0);
    };
    const auto keys = gather(key_cache), values = gather(value_cache);     // (1,H,lk,D)
    const auto qi = q.slice(0, seq.q0, seq.q0 + seq.n).permute({1, 0, 2}).unsqueeze(0);  // (1,H,n,D)
    // SDPA's causal mask is aligned to the top-left corner, which is ours only when the rows are the whole
    // context (nothing cached) and no window cuts in.
    const bool plain_causal = key0 == 0 && lk == seq.n && (plan.window == 0 || plan.window >= lk);
    std::optional<at::Tensor> mask;
    if (!plain_causal) {
      const auto dev = at::TensorOptions().dtype(at::kLong).device(q.device());
      const auto qpos = at::arange(seq.ctx - seq.n, seq.ctx, dev).unsqueeze(1);  // (n,1) positions of the rows
      const auto kpos = at::arange(key0, seq.ctx, dev).unsqueeze(0);              // (1,lk) positions of the keys
      auto allowed = kpos.le(qpos);                                                // (n,lk)
      if (plan.window > 0) allowed = allowed.logical_and(kpos.gt(qpos.sub(plan.window)));
      mask = allowed.view({1, 1, seq.n, lk});
    }
    const auto o = at::scaled_dot_product_attention(qi, keys, values, mask, /*dropout_p=*/0.0,
                                                    /*is_causal=*/plain_causal, scale);  // (1,H,n,D)
    out.slice(0, seq.q0, seq.q0 + seq.n).copy_(o.squeeze(0).permute({1, 0, 2}));  // (n,H,D)
  }
}

#define VERL_PA_INLINE [[gnu::always_inline]] inline

namespace pa {

// The helpers are plain loops over float arrays, written for GCC's auto-vectoriser (fixed-size inner loops of
// independent lanes, no reassociation needed), rather than 64-byte vector-extension values: those are moved
// through general registers when loaded with memcpy inside a loop under AVX2, which made the dot product 10x
// slower.
inline constexpr int kLanes = 16;

//! Widens one stored value (exact for every storage type).
template <class T>
VERL_PA_INLINE float widen(T x) {
  return static_cast<float>(x);
}
VERL_PA_INLINE float widen(c10::BFloat16 x) {  // bfloat16 is the top half of a float: a shift the loops vectorise
  std::uint32_t bits = static_cast<std::uint32_t>(x.x) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

//! Pairwise sum of 16 lanes (a tree, not 15 dependent adds).
VERL_PA_INLINE float tree_sum(float* t) {
  for (int w = kLanes / 2; w >= 1; w /= 2) {
    for (int i = 0; i < w; ++i) t[i] += t[i + w];
  }
  return t[0];
}

//! q . k over D values; q in float, k in the storage dtype. Eight independent partial sums (one AVX2 register),
//! added as a tree, then a scalar tail.
template <class T>
VERL_PA_INLINE float dot(const float* __restrict q, const T* __restrict k, std::int64_t d) {
  float part[8] = {};
  std::int64_t i = 0;
  for (; i + 8 <= d; i += 8) {
    for (int j = 0; j < 8; ++j) part[j] += q[i + j] * widen(k[i + j]);
  }
  float s = ((part[0] + part[4]) + (part[2] + part[6])) + ((part[1] + part[5]) + (part[3] + part[7]));
  for (; i < d; ++i) s += q[i] * widen(k[i]);
  return s;
}

//! acc += p * v over D values (v in the storage dtype).
template <class T>
VERL_PA_INLINE void axpy(float* __restrict acc, float p, const T* __restrict v, std::int64_t d) {
  for (std::int64_t i = 0; i < d; ++i) acc[i] += p * widen(v[i]);
}

//! exp(x) for x <= 0 (a score minus the running max), lane-wise over 16 values: x = n ln2 + r with |r| <= ln2/2
//! (ln2 split in two), exp(r) by the Cephes expf polynomial, 2^n from the exponent bits; 0 below -87.3
//! (also for -inf, the lanes past the tile). Relative error ~1 ulp; the same scheme as
//! models/detail/log_probs_kernels.hpp's vexp, as a loop the vectoriser takes.
VERL_PA_INLINE void exp16(const float* __restrict x, float* __restrict out) {
  for (int i = 0; i < kLanes; ++i) {
    const float xc = x[i] < -87.3f ? -87.3f : x[i];
    const float n = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f;  // round to nearest integer
    float r = xc - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * (r * r) + r + 1.0f;
    const std::int32_t bits = (static_cast<std::int32_t>(n) + 127) << 23;  // 2^n, n in [-126, 127]
    float scale;
    std::memcpy(&scale, &bits, sizeof scale);
    out[i] = x[i] < -87.3f ? 0.0f : p * scale;
  }
}

//! The scalar counterparts for double storage (tests; float64 models): eight independent partial sums so the
//! compiler can vectorise without reassociating.
VERL_PA_INLINE double dot(const double* __restrict q, const double* __restrict k, std::int64_t d) {
  double part[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  std::int64_t i = 0;
  for (; i + 8 <= d; i += 8) {
    for (int j = 0; j < 8; ++j) part[j] += q[i + j] * k[i + j];
  }
  double s = ((part[0] + part[4]) + (part[2] + part[6])) + ((part[1] + part[5]) + (part[3] + part[7]));
  for (; i < d; ++i) s += q[i] * k[i];
  return s;
}
VERL_PA_INLINE void axpy(double* __restrict acc, double p, const double* __restrict v, std::int64_t d) {
  for (std::int64_t i = 0; i < d; ++i) acc[i] += p * v[i];
}

//! Online-softmax state of one query vector: running max, running sum of exp(score - max); the accumulated
//! exp-weighted values live in the caller's buffer.
template <class Acc>
struct RowState {
  Acc max = -std::numeric_limits<Acc>::infinity();
  Acc sum = 0;
};

//! Raises the running max of `st` to `m` (when larger), rescaling its sum and accumulator by exp(old - new).
template <class Acc>
VERL_PA_INLINE void raise_max(RowState<Acc>& st, Acc* acc, Acc m, std::int64_t d) {
  if (!(m > st.max)) return;
  if (st.sum != Acc(0)) {  // otherwise nothing has been accumulated yet (the max was -inf)
    const Acc corr = std::exp(st.max - m);
    st.sum *= corr;
    for (std::int64_t i = 0; i < d; ++i) acc[i] *= corr;
  }
  st.max = m;
}

//! Scores of query `qv` against keys [t0, t1) of one tile (keys k_tile + t*D, values v_tile + t*D), folded
//! into the state 16 keys at a time (float-accumulated storage types).
template <class T>
VERL_PA_INLINE void attend_tile(const float* qv, const T* k_tile, const T* v_tile, std::int64_t t0, std::int64_t t1,
                                std::int64_t d, float scale, RowState<float>& st, float* acc) {
  float s[kLanes], p[kLanes];
  for (std::int64_t c0 = t0; c0 < t1; c0 += kLanes) {
    const int c = static_cast<int>(std::min<std::int64_t>(kLanes, t1 - c0));
    float m = -INFINITY;
    for (int t = 0; t < c; ++t) {
      s[t] = dot(qv, k_tile + (c0 + t) * d, d) * scale;
      m = s[t] > m ? s[t] : m;
    }
    for (int t = c; t < kLanes; ++t) s[t] = -INFINITY;  // exp gives 0
    raise_max(st, acc, m, d);
    for (int t = 0; t < kLanes; ++t) s[t] -= st.max;
    exp16(s, p);
    float lanes[kLanes];
    std::memcpy(lanes, p, sizeof lanes);
    st.sum += tree_sum(lanes);
    for (int t = 0; t < c; ++t) axpy(acc, p[t], v_tile + (c0 + t) * d, d);
  }
}
VERL_PA_INLINE void attend_tile(const double* qv, const double* k_tile, const double* v_tile, std::int64_t t0,
                                std::int64_t t1, std::int64_t d, double scale, RowState<double>& st, double* acc) {
  double s[kLanes];
  for (std::int64_t c0 = t0; c0 < t1; c0 += kLanes) {
    const std::int64_t c1 = std::min<std::int64_t>(c0 + kLanes, t1);
    double m = -std::numeric_limits<double>::infinity();
    for (std::int64_t t = c0; t < c1; ++t) {
      s[t - c0] = dot(qv, k_tile + t * d, d) * scale;
      m = std::max(m, s[t - c0]);
    }
    raise_max(st, acc, m, d);
    for (std::int64_t t = c0; t < c1; ++t) {
      const double p = std::exp(s[t - c0] - st.max);
      st.sum += p;
      axpy(acc, p, v_tile + t * d, d);
    }
  }
}

//! The CPU kernel for storage type T over the work items (sequence, KV head) [begin, end) of `seqs`.
template <class T>
struct Kernel {
  using Acc = std::conditional_t<std::is_same_v<T, double>, double, float>;
  struct Args {
    const T* q;        // (N,H,D)
    const T* keys;     // (num_blocks,Hkv,block_size,D)
    const T* values;   // (num_blocks,Hkv,block_size,D)
    T* out;            // (N,H,D)
    const PagedPlan* plan;
    const std::int64_t* seqs;  // the sequences this kernel runs, one work item per (seq, KV head)
    Acc scale;
  };

  VERL_PA_INLINE static void run_impl(const Args& a, std::int64_t begin, std::int64_t end) {
    const PagedPlan& p = *a.plan;
    const std::int64_t hkv = p.kv_heads, g = p.heads / p.kv_heads, d = p.head_dim, bs = p.block_size;
    std::vector<Acc> qbuf, acc;
    std::vector<RowState<Acc>> state;
    for (std::int64_t item = begin; item < end; ++item) {
      const PagedSeq& seq = p.seqs[static_cast<std::size_t>(a.seqs[item / hkv])];
      const std::int64_t h = item % hkv, m = seq.n * g;  // m query vectors: rows x group heads
      qbuf.resize(static_cast<std::size_t>(m * d));
      acc.assign(static_cast<std::size_t>(m * d), Acc(0));
      state.assign(static_cast<std::size_t>(m), RowState<Acc>{});
      for (std::int64_t r = 0; r < seq.n; ++r) {  // the group's query heads of each row, widened
        const T* src = a.q + ((seq.q0 + r) * p.heads + h * g) * d;
        for (std::int64_t i = 0; i < g * d; ++i) qbuf[static_cast<std::size_t>(r * g * d + i)] = static_cast<Acc>(src[i]);
      }
      for (std::int64_t b = seq.block_lo; b < seq.block_hi; ++b) {
        const std::int64_t base = b * bs;  // position of the tile's first key
        const std::int64_t tile = (seq.table[b] * hkv + h) * bs * d;
        const T* kt = a.keys + tile;
        const T* vt = a.values + tile;
        if (b + 1 < seq.block_hi) {  // the tiles are scattered over the pool: prefetch the next pair while this one is scored
          const std::int64_t next = (seq.table[b + 1] * hkv + h) * bs * d;
          const char* nk = reinterpret_cast<const char*>(a.keys + next);
          const char* nv = reinterpret_cast<const char*>(a.values + next);
          const std::int64_t bytes = bs * d * static_cast<std::int64_t>(sizeof(T));
          for (std::int64_t o = 0; o < bytes; o += 64) {
            __builtin_prefetch(nk + o);
            __builtin_prefetch(nv + o);
          }
        }
        for (std::int64_t r = 0; r < seq.n; ++r) {
          const std::int64_t pos = seq.ctx - seq.n + r;  // this row's position: it sees (pos - w, pos]
          const std::int64_t lo = p.window > 0 ? std::max<std::int64_t>(0, pos - p.window + 1) : 0;
          const std::int64_t t0 = std::max(lo, base) - base, t1 = std::min(pos + 1, base + bs) - base;
          if (t0 >= t1) continue;
          for (std::int64_t j = r * g; j < (r + 1) * g; ++j) {
            attend_tile(qbuf.data() + j * d, kt, vt, t0, t1, d, a.scale, state[static_cast<std::size_t>(j)],
                        acc.data() + j * d);
          }
        }
      }
      for (std::int64_t r = 0; r < seq.n; ++r) {
        T* dst = a.out + ((seq.q0 + r) * p.heads + h * g) * d;
        for (std::int64_t j = r * g; j < (r + 1) * g; ++j) {
          const Acc inv = Acc(1) / state[static_cast<std::size_t>(j)].sum;  // > 0: every row sees its own key
          for (std::int64_t i = 0; i < d; ++i) dst[(j - r * g) * d + i] = static_cast<T>(acc[static_cast<std::size_t>(j * d + i)] * inv);
        }
      }
    }
  }

  static void run_base(const Args& a, std::int64_t b, std::int64_t e) { run_impl(a, b, e); }
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  [[gnu::target("avx2,fma")]] static void run_avx2(const Args& a, std::int64_t b, std::int64_t e) { run_impl(a, b, e); }
#endif
  static void run(const Args& a, std::int64_t b, std::int64_t e) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    if (verl::detail::cpu_has_avx2_fma()) return run_avx2(a, b, e);
#endif
    run_base(a, b, e);
  }
};

}  // namespace pa

#undef VERL_PA_INLINE

//! True when the CPU kernel handles this dtype.
inline bool paged_kernel_supports(at::ScalarType t) {
  return t == at::kFloat || t == at::kDouble || t == at::kBFloat16 || t == at::kHalf;
}

//! The CPU kernel for the sequences `which` of `plan`: writes their rows of `out` (N,H,D, contiguous).
inline void paged_attention_kernel(const at::Tensor& q, const at::Tensor& key_cache, const at::Tensor& value_cache,
                                   const PagedPlan& plan, const std::vector<std::int64_t>& which, double scale,
                                   at::Tensor& out) {
  if (which.empty()) return;
  const auto qc = q.contiguous(), kc = key_cache.contiguous(), vc = value_cache.contiguous();
  const std::int64_t items = static_cast<std::int64_t>(which.size()) * plan.kv_heads;
  // Work per item ~ rows x visible keys x group x D multiply-adds: parallel_rows' grain is in those units.
  std::int64_t work = 0;
  for (const std::int64_t i : which) {
    const PagedSeq& s = plan.seqs[static_cast<std::size_t>(i)];
    work += s.n * std::min(s.ctx, plan.window > 0 ? plan.window + s.n : s.ctx);
  }
  const std::int64_t cols = std::max<std::int64_t>(1, work * plan.heads * plan.head_dim / items);
  auto launch = [&](auto tag) {
    using T = decltype(tag);
    using K = pa::Kernel<T>;
    const typename K::Args args{qc.data_ptr<T>(), kc.data_ptr<T>(), vc.data_ptr<T>(), out.data_ptr<T>(), &plan,
                                which.data(), static_cast<typename K::Acc>(scale)};
    verl::detail::parallel_rows(items, cols, [&](std::int64_t b, std::int64_t e) { K::run(args, b, e); });
  };
  switch (q.scalar_type()) {
    case at::kFloat: launch(float{}); break;
    case at::kDouble: launch(double{}); break;
    case at::kBFloat16: launch(c10::BFloat16{}); break;
    case at::kHalf: launch(c10::Half{}); break;
    default: break;  // excluded by the caller (paged_kernel_supports)
  }
}

}  // namespace detail

//! Writes the new keys/values k, v (N,Hkv,D) at `slots` (N) int64 (slot = block * block_size + offset) of
//! key_cache / value_cache (num_blocks,Hkv,block_size,D), in place. k and v must have the caches' dtype and
//! device; slots may be on the CPU or the caches' device. Slots must be distinct (which duplicate wins is
//! unspecified); out-of-range slots are a ShapeError.
inline void write_kv(at::Tensor& key_cache, at::Tensor& value_cache, const at::Tensor& k, const at::Tensor& v,
                     const at::Tensor& slots) {
  using verl::detail::check;
  constexpr const char* who = "verl::rollout::write_kv: ";
  check<ShapeError>(key_cache.defined() && value_cache.defined() && k.defined() && v.defined() && slots.defined(), who,
                    "`key_cache`, `value_cache`, `k`, `v` and `slots` must be defined tensors");
  check<ShapeError>(key_cache.dim() == 4, who, "`key_cache` must be (num_blocks,Hkv,block_size,D), got shape ",
                    key_cache.sizes());
  check<ShapeError>(value_cache.sizes() == key_cache.sizes(), who, "`value_cache` has shape ", value_cache.sizes(),
                    ", expected the shape of `key_cache` ", key_cache.sizes());
  const std::int64_t num_blocks = key_cache.size(0), hkv = key_cache.size(1), bs = key_cache.size(2), d = key_cache.size(3);
  check<ShapeError>(slots.dim() == 1 && slots.scalar_type() == at::kLong, who, "`slots` must be a (N) int64 tensor, got ",
                    slots.toString(), " of shape ", slots.sizes());
  const std::int64_t n = slots.size(0);
  check<ShapeError>(k.dim() == 3 && k.size(0) == n && k.size(1) == hkv && k.size(2) == d, who, "`k` has shape ", k.sizes(),
                    ", expected (N,Hkv,D) = (", n, ",", hkv, ",", d, ")");
  check<ShapeError>(v.sizes() == k.sizes(), who, "`v` has shape ", v.sizes(), ", expected the shape of `k` ", k.sizes());
  for (const at::Tensor* t : {static_cast<const at::Tensor*>(&value_cache), &k, &v}) {
    check<ShapeError>(t->scalar_type() == key_cache.scalar_type() && t->device() == key_cache.device(), who,
                      "`key_cache`, `value_cache`, `k` and `v` must share one dtype and device, got ",
                      key_cache.toString(), " on ", key_cache.device(), ", ", value_cache.toString(), " on ",
                      value_cache.device(), ", ", k.toString(), " on ", k.device(), ", ", v.toString(), " on ", v.device());
  }
  check<ShapeError>(slots.is_cpu() || slots.device() == key_cache.device(), who, "`slots` is on ", slots.device(),
                    ", expected the CPU or the caches' device ", key_cache.device());
  if (n == 0) return;
  const std::int64_t capacity = num_blocks * bs;
  const auto check_range = [&](std::int64_t lo, std::int64_t hi, std::int64_t where) {
    check<ShapeError>(lo >= 0 && hi < capacity, who, "slot ", lo < 0 ? lo : hi, where >= 0 ? " (row " : "",
                      where >= 0 ? std::to_string(where) : std::string(), where >= 0 ? ")" : "",
                      " is out of range, expected slots in [0, num_blocks * block_size = ", capacity, ")");
  };
  if (slots.is_cpu() && key_cache.is_cpu() && key_cache.is_contiguous() && value_cache.is_contiguous()) {
    // CPU: one memcpy of D values per (row, KV head).
    const auto sl = slots.contiguous();
    const std::int64_t* slot = sl.data_ptr<std::int64_t>();
    for (std::int64_t i = 0; i < n; ++i) check_range(slot[i], slot[i], i);
    const auto kc = k.contiguous(), vc = v.contiguous();
    const std::size_t row = static_cast<std::size_t>(d) * key_cache.element_size();
    auto* kdst = static_cast<char*>(key_cache.data_ptr());
    auto* vdst = static_cast<char*>(value_cache.data_ptr());
    const auto* ksrc = static_cast<const char*>(kc.data_ptr());
    const auto* vsrc = static_cast<const char*>(vc.data_ptr());
    for (std::int64_t i = 0; i < n; ++i) {
      const std::int64_t blk = slot[i] / bs, off = slot[i] % bs;
      for (std::int64_t h = 0; h < hkv; ++h) {
        const std::size_t dst = static_cast<std::size_t>(((blk * hkv + h) * bs + off)) * row;
        const std::size_t src = static_cast<std::size_t>(i * hkv + h) * row;
        std::memcpy(kdst + dst, ksrc + src, row);
        std::memcpy(vdst + dst, vsrc + src, row);
      }
    }
    return;
  }
  // Any device: advanced indexing on dims 0 and 2 (non-adjacent, so the indexed shape is (N,Hkv,D)).
  const auto range = at::stack({slots.min(), slots.max()}).cpu();  // one transfer for both bounds
  check_range(range[0].item<std::int64_t>(), range[1].item<std::int64_t>(), -1);
  const auto s = slots.to(key_cache.device());
  const c10::List<std::optional<at::Tensor>> index{std::optional<at::Tensor>(s.div(bs, "floor")), std::nullopt,
                                                   std::optional<at::Tensor>(s.remainder(bs))};
  key_cache.index_put_(index, k);
  value_cache.index_put_(index, v);
}

//! Causal attention of q (N,H,D) (H a multiple of Hkv: grouped-query attention) over the paged KV;
//! query row r of sequence s (r-th of its n_s rows) is at position context_lens[s] - n_s + r and sees KV
//! positions j <= that position (and > position - window). Returns (N,H,D) in q's dtype. `scale` multiplies q.k.
//! Throws ShapeError (ConfigError for a negative window) naming the argument on inconsistent inputs, a block
//! table too short for its context or a block id out of range.
inline at::Tensor paged_attention(const at::Tensor& q, const at::Tensor& key_cache, const at::Tensor& value_cache,
                                  const PagedAttentionBatch& batch, double scale, const PagedAttentionOptions& options) {
  using verl::detail::check;
  const auto plan = detail::plan_paged_attention(q, key_cache, value_cache, batch);
  const bool kernel_ok = q.is_cpu() && detail::paged_kernel_supports(q.scalar_type());
  check<ShapeError>(options.path != PagedAttentionPath::kernel || kernel_ok,
                    "verl::rollout::paged_attention: the CPU kernel path was requested for ", q.toString(), " on ",
                    q.device(), ", expected CPU tensors of float32, float64, bfloat16 or float16");
  auto out = at::empty({plan.n, plan.heads, plan.head_dim}, q.options());  // (N,H,D)
  std::vector<std::int64_t> by_kernel, by_sdpa;
  // The automatic path leaves a non-contiguous pool to SDPA rather than copy the whole pool for the kernel.
  const bool auto_kernel = kernel_ok && key_cache.is_contiguous() && value_cache.is_contiguous();
  for (std::int64_t i = 0; i < static_cast<std::int64_t>(plan.seqs.size()); ++i) {
    const auto& seq = plan.seqs[static_cast<std::size_t>(i)];
    if (seq.n == 0) continue;
    const bool kernel = options.path == PagedAttentionPath::kernel ||
                        (options.path == PagedAttentionPath::automatic && auto_kernel &&
                         seq.n <= options.kernel_max_query_rows);
    (kernel ? by_kernel : by_sdpa).push_back(i);
  }
  detail::paged_attention_kernel(q, key_cache, value_cache, plan, by_kernel, scale, out);
  detail::paged_attention_sdpa(q, key_cache, value_cache, plan, by_sdpa, scale, out);
  return out;
}

//! paged_attention with the default options (automatic path choice).
inline at::Tensor paged_attention(const at::Tensor& q, const at::Tensor& key_cache, const at::Tensor& value_cache,
                                  const PagedAttentionBatch& batch, double scale) {
  return paged_attention(q, key_cache, value_cache, batch, scale, PagedAttentionOptions{});
}

}  // namespace verl::rollout
