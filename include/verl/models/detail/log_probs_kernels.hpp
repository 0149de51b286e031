#pragma once
//! \file
//! Implementation of verl::models::linear_log_probs (include/verl/models/log_probs.hpp): the CPU row passes
//! that turn one row of raw logits l (V values, in the input dtype) into the log-prob of a target, the
//! log-sum-exp and the entropy (forward), or into the row of grad_logits, written over l in place (backward).
//!
//! The float kernels are written once with GCC/Clang vector extensions (8 floats, portable SIMD) and compiled
//! twice: for the baseline ISA and, on x86-64, for AVX2+FMA, chosen at run time with __builtin_cpu_supports.
//! The library is header-only and built by users without -march flags, so this is how the hot loop gets AVX2.
//! exp is a Cephes-style polynomial (relative error ~1 ulp for arguments <= 0; exact 0 below -87.3) so that
//! the loop vectorises; sums are kept in 8 lanes and added at the end.

#include "verl/core/cpu_features.hpp"

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

namespace verl::models::detail {

#if defined(__GNUC__) || defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpsabi"  // 32-byte vectors passed between always-inline helpers only
#endif

// 8 lanes: one AVX2 register. With 16 (two registers), GCC 12 lowered the comparisons and the float-to-int
// conversion lane by lane with scalar instructions (it splits only arithmetic into halves when the target has
// no 512-bit instructions), and the row pass ran at ~3 ns per element instead of well under 1.
using f32v = float __attribute__((vector_size(32)));
using i32v = std::int32_t __attribute__((vector_size(32)));
using u32v = std::uint32_t __attribute__((vector_size(32)));
using u16v = std::uint16_t __attribute__((vector_size(16)));
inline constexpr int kLanes = 8;

#define VERL_LOGP_INLINE [[gnu::always_inline]] inline

// Vectors are passed by reference, results returned through out-parameters and bits reinterpreted with vector
// casts (not std::bit_cast): a function taking or returning a 32-byte vector by value draws GCC's -Wpsabi note
// in every user's build (at the end of the translation unit, where the templates below are instantiated, out
// of reach of a diagnostic pragma).

//! Lane-wise `mask ? a : b` into `out` (mask lanes are all ones or zero; bitwise, so no vector ?: needed).
VERL_LOGP_INLINE void vselect(const i32v& mask, const f32v& a, const f32v& b, f32v& out) {
  const auto m = (u32v)mask;
  out = (f32v)(((u32v)a & m) | ((u32v)b & ~m));
}

//! acc = max(acc, x) lane-wise (a NaN x is skipped).
VERL_LOGP_INLINE void vmax_into(f32v& acc, const f32v& x) { vselect(x > acc, x, acc, acc); }

//! out = exp(x) for x <= ~88: x = n ln2 + r with |r| <= ln2/2 (ln2 split in two for exactness), exp(r) by a
//! degree-7 polynomial (Cephes expf coefficients), 2^n by building the exponent bits. Below -87.3 it is 0.
VERL_LOGP_INLINE void vexp(const f32v& x, f32v& out) {
  const f32v lo = f32v{} - 87.3f;
  f32v xc = x;
  vmax_into(xc, lo);
  // Round x*log2(e) to the nearest integer with the 1.5*2^23 trick (exact for |n| < 2^22).
  const f32v t = xc * 1.44269504088896341f + 12582912.0f;
  const f32v n = t - 12582912.0f;
  f32v r = xc - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  f32v p = f32v{} + 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * (r * r) + r + 1.0f;
  const i32v ni = __builtin_convertvector(n, i32v);
  const f32v scale = (f32v)((ni + 127) << 23);  // 2^n, n in [-126, 127]
  vselect(x < lo, f32v{}, p * scale, out);
}

VERL_LOGP_INLINE float hsum(const f32v& v) {
  float s = 0.0f;
  for (int i = 0; i < kLanes; ++i) s += v[i];
  return s;
}

VERL_LOGP_INLINE float hmax(const f32v& v) {
  float m = v[0];
  for (int i = 1; i < kLanes; ++i) m = v[i] > m ? v[i] : m;
  return m;
}

//! kLanes consecutive values of the input dtype as floats.
VERL_LOGP_INLINE void load_lanes(const float* p, f32v& out) { std::memcpy(&out, p, sizeof out); }
VERL_LOGP_INLINE void load_lanes(const c10::BFloat16* p, f32v& out) {
  u16v raw;
  std::memcpy(&raw, p, sizeof raw);
  out = (f32v)(__builtin_convertvector(raw, u32v) << 16);  // bf16 is the top half of a float
}
VERL_LOGP_INLINE void load_lanes(const c10::Half* p, f32v& out) {
  for (int i = 0; i < kLanes; ++i) out[i] = static_cast<float>(p[i]);
}

VERL_LOGP_INLINE void store_lanes(float* p, const f32v& v) { std::memcpy(p, &v, sizeof v); }
VERL_LOGP_INLINE void store_lanes(c10::BFloat16* p, const f32v& v) {
  // Round to nearest even as c10::BFloat16 does; NaN stays a (quiet) NaN.
  const u32v u = (u32v)v;
  const u32v rounded = (u + (((u >> 16) & 1u) + 0x7FFFu)) >> 16;
  const u32v nan_mask = (u32v)(v != v);
  const u32v bits = (rounded & ~nan_mask) | ((u32v{} + 0x7FC0u) & nan_mask);
  const u16v narrow = __builtin_convertvector(bits, u16v);
  std::memcpy(p, &narrow, sizeof narrow);
}
VERL_LOGP_INLINE void store_lanes(c10::Half* p, const f32v& v) {
  for (int i = 0; i < kLanes; ++i) p[i] = static_cast<c10::Half>(v[i]);
}

//! z = l / temperature as the reference evaluates `logits / temperature`: in the input dtype (bf16/half:
//! divided in float and rounded to the input dtype, as PyTorch's kernels do), then widened. The pointer only
//! selects the dtype.
VERL_LOGP_INLINE void temper_lanes(const f32v& l, float temperature, const float*, f32v& z) { z = l / temperature; }
VERL_LOGP_INLINE void temper_lanes(const f32v& l, float temperature, const c10::BFloat16*, f32v& z) {
  c10::BFloat16 tmp[kLanes];
  store_lanes(tmp, l / temperature);
  load_lanes(tmp, z);
}
VERL_LOGP_INLINE void temper_lanes(const f32v& l, float temperature, const c10::Half*, f32v& z) {
  c10::Half tmp[kLanes];
  store_lanes(tmp, l / temperature);
  load_lanes(tmp, z);
}

//! One value of the input dtype to float, and back with the input dtype's rounding (round to nearest even).
template <class In>
VERL_LOGP_INLINE float to_float(In x) {
  return static_cast<float>(x);
}
template <class In>
VERL_LOGP_INLINE In from_float(float x) {
  return static_cast<In>(x);
}

//! Loads kLanes tempered logits (z = l / temperature in the input dtype, or l when not tempered).
template <class In>
VERL_LOGP_INLINE void load_z(const In* l, float temperature, bool tempered, f32v& z) {
  if (tempered) {
    f32v raw;
    load_lanes(l, raw);
    temper_lanes(raw, temperature, l, z);
  } else {
    load_lanes(l, z);
  }
}

template <class In>
VERL_LOGP_INLINE float temper1(float l, float temperature) {
  return to_float(from_float<In>(l / temperature));
}

//! Per-row results of the forward pass. lse and mean_z (E_p[z]) are what the backward needs.
struct RowStats {
  float log_prob, lse, mean_z, entropy;
};

//! Backward row pass: with p = exp(z - lse), overwrites l with
//!   grad_l = (g_lp (onehot(target) - p) + g_ent p (E[z] - z)) / temperature
//! (d log_prob / dz = onehot - p; d entropy / dz = -p (z - E[z])), rounded to the input dtype.
//! A `target` outside [0, v) (a vocabulary block that does not hold it) only gets the -p terms.
template <class In>
VERL_LOGP_INLINE void backward_row(In* l, std::int64_t v, std::int64_t target, float temperature, bool tempered,
                                   float g_lp, float g_ent, float lse, float mean_z) {
  const std::int64_t vec_end = v - v % kLanes;
  const bool holds_target = target >= 0 && target < v;
  const float z_target =
      !holds_target ? 0.0f : tempered ? temper1<In>(to_float(l[target]), temperature) : to_float(l[target]);
  auto grad1 = [&](float z) {
    const float p = std::exp(z - lse);
    return -g_lp * p + g_ent * p * (mean_z - z);
  };
  f32v z, p, g;
  for (std::int64_t j = 0; j < vec_end; j += kLanes) {
    load_z(l + j, temperature, tempered, z);
    vexp(z - lse, p);
    g = -g_lp * p + g_ent * p * (mean_z - z);
    if (tempered) g = g / temperature;
    store_lanes(l + j, g);
  }
  for (std::int64_t j = vec_end; j < v; ++j) {
    const float g = grad1(tempered ? temper1<In>(to_float(l[j]), temperature) : to_float(l[j]));
    l[j] = from_float<In>(tempered ? g / temperature : g);
  }
  if (!holds_target) return;
  const float g_t = grad1(z_target) + g_lp;
  l[target] = from_float<In>(tempered ? g_t / temperature : g_t);
}

//! Running softmax statistics of one row over the vocabulary blocks seen so far (the vocabulary-blocked path):
//! m = max z, s = sum exp(z - m), q = sum exp(z - m) (z - m). Folding in one block of raw logits `l` (v values)
//! rescales s and q when the block raises the maximum (exp(m_old - m_new) <= 1, so nothing overflows), then
//! adds the block's terms. At the end lse, log_prob, E[z] and entropy follow as in forward_row.
template <class In>
VERL_LOGP_INLINE void fold_block_row(const In* l, std::int64_t v, float temperature, bool tempered, bool entropy,
                                     float& m, float& s, float& q) {
  const std::int64_t vec_end = v - v % kLanes;
  auto z_at = [&](std::int64_t j) { return tempered ? temper1<In>(to_float(l[j]), temperature) : to_float(l[j]); };
  float block_max = -INFINITY;
  f32v z;
  if (vec_end > 0) {
    f32v mv = f32v{} - INFINITY;
    for (std::int64_t j = 0; j < vec_end; j += kLanes) {
      load_z(l + j, temperature, tempered, z);
      vmax_into(mv, z);
    }
    block_max = hmax(mv);
  }
  for (std::int64_t j = vec_end; j < v; ++j) block_max = std::fmax(block_max, z_at(j));
  if (block_max > m) {
    if (s > 0.0f) {  // s = 0 before the first finite block: nothing to rescale (and m - block_max may be NaN)
      const float d = m - block_max;
      const float scale = std::exp(d);
      q = scale * (q + d * s);
      s *= scale;
    }
    m = block_max;
  }
  if (m == -INFINITY) return;  // every z so far is -inf: nothing to add (z - m would be NaN)
  f32v sv{}, qv{}, e;
  if (entropy) {
    for (std::int64_t j = 0; j < vec_end; j += kLanes) {
      load_z(l + j, temperature, tempered, z);
      const f32v x = z - m;
      vexp(x, e);
      sv += e;
      qv += e * x;
    }
  } else {
    for (std::int64_t j = 0; j < vec_end; j += kLanes) {
      load_z(l + j, temperature, tempered, z);
      vexp(z - m, e);
      sv += e;
    }
  }
  float bs = hsum(sv), bq = hsum(qv);
  for (std::int64_t j = vec_end; j < v; ++j) {
    const float x = z_at(j) - m;
    const float ex = std::exp(x);
    bs += ex;
    bq += ex * x;
  }
  s += bs;
  if (entropy) q += bq;
}

//! A row's results from its folded statistics (fold_block_row) and its target's tempered logit.
inline RowStats finish_row(float m, float s, float q, float z_target, bool entropy) {
  const float log_s = std::log(s);
  RowStats out;
  out.lse = m + log_s;
  out.log_prob = (z_target - m) - log_s;
  out.mean_z = entropy ? m + q / s : 0.0f;
  out.entropy = entropy ? log_s - q / s : 0.0f;
  return out;
}

//! Forward row pass over raw logits `l` (V values): the whole row folded as one block (fold_block_row: m =
//! max z, s = sum exp(z - m), q = sum exp(z - m) (z - m)); then lse = m + log s, log_prob = z[target] - lse,
//! E[z] = m + q / s and entropy = lse - E[z] = log s - q / s (computed without the cancellation of m).
template <class In>
VERL_LOGP_INLINE RowStats forward_row(const In* l, std::int64_t v, std::int64_t target, float temperature,
                                      bool tempered, bool entropy) {
  float m = -INFINITY, s = 0.0f, q = 0.0f;
  fold_block_row(l, v, temperature, tempered, entropy, m, s, q);
  const float z_target = tempered ? temper1<In>(to_float(l[target]), temperature) : to_float(l[target]);
  return finish_row(m, s, q, z_target, entropy);
}

//! The double-precision variants (float64 inputs): plain loops with std::exp and double accumulation; they
//! exist for accuracy (tests against float64 references), not speed.
struct RowStats64 {
  double log_prob, lse, mean_z, entropy;
};

inline RowStats64 forward_row_f64(const double* l, std::int64_t v, std::int64_t target, double temperature,
                                  bool tempered, bool entropy) {
  auto z_at = [&](std::int64_t j) { return tempered ? l[j] / temperature : l[j]; };
  double m = -INFINITY;
  for (std::int64_t j = 0; j < v; ++j) m = std::fmax(m, z_at(j));
  double s = 0.0, q = 0.0;
  for (std::int64_t j = 0; j < v; ++j) {
    const double x = z_at(j) - m;
    const double e = std::exp(x);
    s += e;
    q += e * x;
  }
  const double log_s = std::log(s);
  return {(z_at(target) - m) - log_s, m + log_s, entropy ? m + q / s : 0.0, entropy ? log_s - q / s : 0.0};
}

inline void backward_row_f64(double* l, std::int64_t v, std::int64_t target, double temperature, bool tempered,
                             double g_lp, double g_ent, double lse, double mean_z) {
  for (std::int64_t j = 0; j < v; ++j) {
    const double z = tempered ? l[j] / temperature : l[j];
    const double p = std::exp(z - lse);
    const double g = (j == target ? g_lp : 0.0) - g_lp * p + g_ent * p * (mean_z - z);
    l[j] = tempered ? g / temperature : g;
  }
}

//! Row ranges [begin, end) of a chunk, compiled for the baseline ISA and for AVX2+FMA.
template <class In>
struct RowKernels {
  struct Forward {
    const In* logits;          // (c, V) row-major
    const std::int64_t* targets;  // (c,)
    float* log_prob;           // (c,)
    float* lse;                // (c,)
    float* mean_z;             // (c,) or null
    float* entropy;            // (c,) or null
    std::int64_t v;
    float temperature;
  };
  struct Backward {
    In* logits;                   // (c, V), overwritten with grad_logits
    const std::int64_t* targets;  // (c,)
    const float* g_lp;            // (c,) or null (no gradient reaches log_probs)
    const float* g_ent;           // (c,) or null
    const float* lse;             // (c,)
    const float* mean_z;          // (c,) or null
    std::int64_t v;
    float temperature;
  };
  //! One vocabulary block [v0, v0 + cols) of a tile of rows: logits row r at logits + r * ld.
  struct BlockForward {
    const In* logits;             // (c, cols), row stride ld
    std::int64_t ld, cols, v0;
    const std::int64_t* targets;  // (c,)
    float* m;                     // (c,) running statistics (see fold_block_row)
    float* s;                     // (c,)
    float* q;                     // (c,) or null (no entropy)
    float* z_target;              // (c,) the target's tempered logit, written by the block that holds it
    float temperature;
  };
  struct BlockBackward {
    In* logits;                   // (c, cols), row stride ld, overwritten with grad_logits
    std::int64_t ld, cols, v0;
    const std::int64_t* targets;  // (c,)
    const float* g_lp;            // (c,) or null
    const float* g_ent;           // (c,) or null
    const float* lse;             // (c,)
    const float* mean_z;          // (c,) or null
    float temperature;
  };

  VERL_LOGP_INLINE static void block_forward_impl(const BlockForward& a, std::int64_t begin, std::int64_t end) {
    const bool tempered = a.temperature != 1.0f;
    float unused = 0.0f;
    for (std::int64_t r = begin; r < end; ++r) {
      const In* row = a.logits + r * a.ld;
      fold_block_row(row, a.cols, a.temperature, tempered, a.q != nullptr, a.m[r], a.s[r], a.q ? a.q[r] : unused);
      const std::int64_t t = a.targets[r] - a.v0;
      if (t >= 0 && t < a.cols) a.z_target[r] = tempered ? temper1<In>(to_float(row[t]), a.temperature) : to_float(row[t]);
    }
  }
  VERL_LOGP_INLINE static void block_backward_impl(const BlockBackward& a, std::int64_t begin, std::int64_t end) {
    const bool tempered = a.temperature != 1.0f;
    for (std::int64_t r = begin; r < end; ++r) {
      backward_row(a.logits + r * a.ld, a.cols, a.targets[r] - a.v0, a.temperature, tempered, a.g_lp ? a.g_lp[r] : 0.0f,
                   a.g_ent ? a.g_ent[r] : 0.0f, a.lse[r], a.mean_z ? a.mean_z[r] : 0.0f);
    }
  }

  VERL_LOGP_INLINE static void forward_impl(const Forward& a, std::int64_t begin, std::int64_t end) {
    const bool tempered = a.temperature != 1.0f;
    for (std::int64_t r = begin; r < end; ++r) {
      const auto st = forward_row(a.logits + r * a.v, a.v, a.targets[r], a.temperature, tempered, a.entropy != nullptr);
      a.log_prob[r] = st.log_prob;
      a.lse[r] = st.lse;
      if (a.entropy != nullptr) {
        a.mean_z[r] = st.mean_z;
        a.entropy[r] = st.entropy;
      }
    }
  }
  VERL_LOGP_INLINE static void backward_impl(const Backward& a, std::int64_t begin, std::int64_t end) {
    const bool tempered = a.temperature != 1.0f;
    for (std::int64_t r = begin; r < end; ++r) {
      backward_row(a.logits + r * a.v, a.v, a.targets[r], a.temperature, tempered, a.g_lp ? a.g_lp[r] : 0.0f,
                   a.g_ent ? a.g_ent[r] : 0.0f, a.lse[r], a.mean_z ? a.mean_z[r] : 0.0f);
    }
  }

  static void forward_base(const Forward& a, std::int64_t b, std::int64_t e) { forward_impl(a, b, e); }
  static void backward_base(const Backward& a, std::int64_t b, std::int64_t e) { backward_impl(a, b, e); }
  static void block_forward_base(const BlockForward& a, std::int64_t b, std::int64_t e) { block_forward_impl(a, b, e); }
  static void block_backward_base(const BlockBackward& a, std::int64_t b, std::int64_t e) {
    block_backward_impl(a, b, e);
  }
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  [[gnu::target("avx2,fma")]] static void forward_avx2(const Forward& a, std::int64_t b, std::int64_t e) {
    forward_impl(a, b, e);
  }
  [[gnu::target("avx2,fma")]] static void backward_avx2(const Backward& a, std::int64_t b, std::int64_t e) {
    backward_impl(a, b, e);
  }
  [[gnu::target("avx2,fma")]] static void block_forward_avx2(const BlockForward& a, std::int64_t b, std::int64_t e) {
    block_forward_impl(a, b, e);
  }
  [[gnu::target("avx2,fma")]] static void block_backward_avx2(const BlockBackward& a, std::int64_t b,
                                                               std::int64_t e) {
    block_backward_impl(a, b, e);
  }
#endif

  static void block_forward(const BlockForward& a, std::int64_t b, std::int64_t e) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    if (has_avx2()) return block_forward_avx2(a, b, e);
#endif
    block_forward_base(a, b, e);
  }
  static void block_backward(const BlockBackward& a, std::int64_t b, std::int64_t e) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    if (has_avx2()) return block_backward_avx2(a, b, e);
#endif
    block_backward_base(a, b, e);
  }

  static void forward(const Forward& a, std::int64_t b, std::int64_t e) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    if (has_avx2()) return forward_avx2(a, b, e);
#endif
    forward_base(a, b, e);
  }
  static void backward(const Backward& a, std::int64_t b, std::int64_t e) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    if (has_avx2()) return backward_avx2(a, b, e);
#endif
    backward_base(a, b, e);
  }

  static bool has_avx2() { return verl::detail::cpu_has_avx2_fma(); }
};

#undef VERL_LOGP_INLINE

#if defined(__GNUC__) || defined(__clang__)
#pragma GCC diagnostic pop
#endif

}  // namespace verl::models::detail
