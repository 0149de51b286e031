#pragma once
//! \file
//! verl::rollout::sample: the rollout engine's per-sequence sampler. One call draws one token for each row of
//! a (S,V) float32 logits matrix, each row with its own SamplingParams, RNG key and step, and optionally
//! returns the log-prob of the drawn token under the actor's definition.
//!
//! Semantics, pinned against vLLM v1 (vllm/v1/sample/sampler.py, ops/penalties.py, ops/topk_topp_sampler.py,
//! the min-p logits processor) and transformers' RepetitionPenaltyLogitsProcessor:
//!  1. Penalties on the raw logits, greedy rows included, in vLLM's order: the repetition penalty r over the
//!     DISTINCT tokens of prompt + output (`l > 0 ? l / r : l * r`, float32), then the frequency penalty f
//!     and the presence penalty q over the OUTPUT tokens only (`l -= f * count; l -= q`, float32).
//!  2. Greedy (temperature == 0): argmax of the penalised logits; ties go to the lowest token id
//!     (torch.argmax's rule).
//!  3. Random: z = l / T (float32, as the actor's `logits / temperature`); then min-p drops tokens whose
//!     probability is < min_p * (largest probability); then top-k keeps the k largest z, and EVERY token tied
//!     with the k-th largest value (vLLM masks `z < kth_value`, so ties at the boundary are all kept); then
//!     top-p keeps, in descending probability order (equal probabilities: lower token id first), the
//!     smallest prefix whose mass reaches top_p of the mass min-p and top-k left (at least one token);
//!     then one token is drawn from the renormalised distribution by inverse CDF with ONE uniform
//!     u = sampling_uniform(seed, step) in [0, 1).
//!  4. log_probs (when asked): log_softmax(l / T')[token] on the UNPENALISED, UNFILTERED logits, T' = T
//!     (1 when greedy): what the actor recomputes with LogProbOptions{temperature} (verl/models/log_probs.hpp).
//!
//! Precision: weights exp(z - max) in float32 (about 1 ulp), sums in double; a token whose weight is below
//! e^-87 of the largest, or whose logit is -inf or NaN, has probability 0. vLLM computes the top-p cumsum in
//! float32, so a boundary within float rounding of top_p may keep one token more or fewer there.
//!
//! Law (batch invariance and replay): a row's token and log-prob depend only on its own logits, params,
//! seed, step and token history; never on the other rows of the call, their number or order, the thread
//! count, or earlier calls. So the same seed gives the same tokens whether a sequence is decoded alone or
//! in a continuous batch, and after preemption-by-recompute (which replays the same steps).
//!
//! Cost: O(V) plain passes per row (the exp pass vectorises), no full sort: top-k keeps a size-k heap in
//! one pass; top-p selects candidates above a mass bound and grows a partial selection (64, 256, ...)
//! until it covers top_p. Scratch buffers are thread-local and reused. Rows run in parallel on LibTorch's
//! intra-op threads (verl::detail::parallel_rows).

#include "verl/core/errors.hpp"
#include "verl/core/fast_exp.hpp"
#include "verl/core/model_io.hpp"
#include "verl/core/parallel.hpp"

#include <ATen/core/Tensor.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <vector>

namespace verl::rollout {

//! One row to sample: a sequence's sampling state at this step.
struct SamplingRow {
  const SamplingParams* params = nullptr;
  std::uint64_t seed = 0;   //!< the sample's own key (the engine derives it from params.seed and sample index)
  std::int64_t step = 0;    //!< index of the token being drawn within this sample's response (0-based)
  std::span<const std::int64_t> prompt_tokens;   //!< for the repetition penalty
  std::span<const std::int64_t> output_tokens;   //!< tokens generated so far (repetition/presence/frequency)
};

//! What sample() returns.
struct SampleOutput {
  std::vector<std::int64_t> tokens;  //!< one per row
  std::vector<float> log_probs;      //!< one per row when asked, else empty
};

namespace detail {

//! Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC'11): one 128-bit block of
//! a counter-based generator. Same constants and round as Random123 and ATen's at::Philox4_32.
[[nodiscard]] constexpr std::array<std::uint32_t, 4> philox4x32_10(std::array<std::uint32_t, 4> ctr,
                                                                   std::array<std::uint32_t, 2> key) {
  constexpr std::uint32_t mul0 = 0xD2511F53u, mul1 = 0xCD9E8D57u, weyl0 = 0x9E3779B9u, weyl1 = 0xBB67AE85u;
  for (int round = 0; round < 10; ++round) {
    const std::uint64_t p0 = std::uint64_t{mul0} * ctr[0];
    const std::uint64_t p1 = std::uint64_t{mul1} * ctr[2];
    ctr = {static_cast<std::uint32_t>(p1 >> 32) ^ ctr[1] ^ key[0], static_cast<std::uint32_t>(p1),
           static_cast<std::uint32_t>(p0 >> 32) ^ ctr[3] ^ key[1], static_cast<std::uint32_t>(p0)};
    key[0] += weyl0;
    key[1] += weyl1;
  }
  return ctr;
}

using verl::detail::exp_nonpositive;  // verl/core/fast_exp.hpp

//! Largest element of x[0, n) (n >= 1); lanes so that the loop vectorises without -ffast-math.
[[nodiscard]] inline float row_max(const float* x, std::int64_t n) {
  constexpr int lanes = 16;
  float m[lanes];
  for (int k = 0; k < lanes; ++k) m[k] = -std::numeric_limits<float>::infinity();
  std::int64_t i = 0;
  for (; i + lanes <= n; i += lanes) {
    for (int k = 0; k < lanes; ++k) m[k] = x[i + k] > m[k] ? x[i + k] : m[k];
  }
  float best = -std::numeric_limits<float>::infinity();
  for (int k = 0; k < lanes; ++k) best = m[k] > best ? m[k] : best;
  for (; i < n; ++i) best = x[i] > best ? x[i] : best;
  return best;
}

//! Sum of x[0, n) in double over independent lanes (vectorises; more exact than a float running sum).
[[nodiscard]] inline double row_sum(const float* x, std::int64_t n) {
  constexpr int lanes = 8;
  double acc[lanes] = {};
  std::int64_t i = 0;
  for (; i + lanes <= n; i += lanes) {
    for (int k = 0; k < lanes; ++k) acc[k] += static_cast<double>(x[i + k]);
  }
  double s = 0.0;
  for (int k = 0; k < lanes; ++k) s += acc[k];
  for (; i < n; ++i) s += static_cast<double>(x[i]);
  return s;
}

//! w[i] = exp(x[i] - m) for x[i] <= m (the loop vectorises).
inline void exp_shifted(const float* x, float m, float* w, std::int64_t n) {
  for (std::int64_t i = 0; i < n; ++i) w[i] = exp_nonpositive(x[i] - m);
}
//! w[i] = exp(x[i] / t - m) (float32 division first, as ATen's logits / t).
inline void exp_tempered_shifted(const float* x, float t, float m, float* w, std::int64_t n) {
  for (std::int64_t i = 0; i < n; ++i) w[i] = exp_nonpositive(x[i] / t - m);
}
//! x[i] = x[i] / t in place.
inline void divide_in_place(float* x, float t, std::int64_t n) {
  for (std::int64_t i = 0; i < n; ++i) x[i] = x[i] / t;
}
//! w[i] = 0 where w[i] < floor (min-p in the weight domain).
inline void zero_below(float* w, float floor, std::int64_t n) {
  for (std::int64_t i = 0; i < n; ++i) w[i] = w[i] >= floor ? w[i] : 0.0f;
}

//! log sum_i exp(x_i / t - m) and m = max_i x_i / t over a row (t > 0), for log_softmax(x / t).
struct LogNorm {
  double max = 0.0;      //!< m, the largest x_i / t (float32 division, as the actor's logits / temperature)
  double log_sum = 0.0;  //!< log sum_i exp(x_i / t - m)
};

//! The row's LogNorm; `buf` (n floats) is overwritten. Division by t is float32 like ATen's `logits / t`;
//! float32 division is monotone, so max(x / t) = max(x) / t exactly.
[[nodiscard]] inline LogNorm log_norm(const float* x, std::int64_t n, float t, float* buf) {
  const float m = row_max(x, n) / t;
  if (t == 1.0f) {
    exp_shifted(x, m, buf, n);
  } else {
    exp_tempered_shifted(x, t, m, buf, n);
  }
  return {m, std::log(row_sum(buf, n))};
}

//! A candidate token: its weight (unnormalised probability, or a tempered logit during top-k) and id.
struct Candidate {
  float w;
  std::int32_t id;
};

//! Descending weight, then ascending id: the order top-p walks, a strict weak order (so results do not
//! depend on the standard library's selection/sort algorithm).
inline bool before(const Candidate& a, const Candidate& b) { return a.w > b.w || (a.w == b.w && a.id < b.id); }

//! Per-thread buffers, grown to the largest V seen and reused across calls.
struct SamplerScratch {
  std::vector<float> w;                  // (V) weights exp(z - max)
  std::vector<double> block_sum;         // (ceil(V / block)) partial sums of w for the inverse CDF
  std::vector<std::uint32_t> seen;       // (V) stamp: token already penalised (original value saved)
  std::vector<std::uint32_t> counted;    // (V) stamp: `count` is valid for this row
  std::vector<std::int32_t> count;       // (V) occurrences in the output
  std::uint32_t stamp = 0;
  std::vector<std::int32_t> output_distinct;
  std::vector<Candidate> saved;          // original logits of penalised tokens (for log-probs)
  std::vector<Candidate> cand, ties;

  void reserve(std::int64_t v) {
    const auto n = static_cast<std::size_t>(v);
    if (w.size() < n) {
      w.resize(n);
      seen.assign(n, 0);
      counted.assign(n, 0);
      count.resize(n);
      stamp = 0;
    }
  }
  //! A fresh stamp for one row (clears the stamp arrays on wrap-around).
  std::uint32_t next_stamp() {
    if (++stamp == 0) {
      std::fill(seen.begin(), seen.end(), 0u);
      std::fill(counted.begin(), counted.end(), 0u);
      stamp = 1;
    }
    return stamp;
  }
};

inline SamplerScratch& sampler_scratch() {
  thread_local SamplerScratch s;
  return s;
}

inline constexpr std::int64_t cdf_block = 512;  // elements per partial sum of the inverse CDF

//! Whether the repetition penalty changes any logit of this row.
inline bool has_repetition_penalty(const SamplingRow& row) {
  return row.params->repetition_penalty != 1.0 && !(row.prompt_tokens.empty() && row.output_tokens.empty());
}
//! Whether the frequency or presence penalty changes any logit of this row.
inline bool has_frequency_presence(const SamplingRow& row) {
  const SamplingParams& p = *row.params;
  return (p.frequency_penalty != 0.0 || p.presence_penalty != 0.0) && !row.output_tokens.empty();
}
inline bool has_penalties(const SamplingRow& row) { return has_repetition_penalty(row) || has_frequency_presence(row); }

//! Applies the penalties to `x` in place and records each touched token's original logit in sc.saved.
//! Returns whether any logit changed.
inline bool apply_penalties(float* x, const SamplingRow& row, SamplerScratch& sc) {
  const SamplingParams& p = *row.params;
  sc.saved.clear();
  const bool rep = has_repetition_penalty(row), freq_pres = has_frequency_presence(row);
  if (!rep && !freq_pres) return false;
  const std::uint32_t st = sc.next_stamp();
  auto save = [&](std::int64_t t) {
    if (sc.seen[t] != st) {
      sc.seen[t] = st;
      sc.saved.push_back({x[t], static_cast<std::int32_t>(t)});
    }
  };
  if (rep) {
    const float r = static_cast<float>(p.repetition_penalty);
    // Distinct tokens only: the first visit saves the original and penalises once.
    for (const auto span : {row.prompt_tokens, row.output_tokens}) {
      for (const std::int64_t t : span) {
        if (sc.seen[t] == st) continue;
        save(t);
        x[t] = x[t] > 0.0f ? x[t] / r : x[t] * r;
      }
    }
  }
  if (freq_pres) {
    sc.output_distinct.clear();
    for (const std::int64_t t : row.output_tokens) {
      if (sc.counted[t] != st) {
        sc.counted[t] = st;
        sc.count[t] = 0;
        sc.output_distinct.push_back(static_cast<std::int32_t>(t));
      }
      ++sc.count[t];
    }
    const float f = static_cast<float>(p.frequency_penalty), q = static_cast<float>(p.presence_penalty);
    for (const std::int32_t t : sc.output_distinct) {
      save(t);
      x[t] = x[t] - f * static_cast<float>(sc.count[t]);  // vLLM: logits -= f * counts; logits -= q * mask
      x[t] = x[t] - q;
    }
  }
  return true;
}

//! The unpenalised tempered logit z = l / t of token `tok`: its saved original when penalised, else x[tok]
//! (already divided by t in place when `x_tempered`).
inline float unpenalised_z(const float* x, std::int64_t tok, float t, bool x_tempered, const SamplerScratch& sc) {
  for (const auto& c : sc.saved) {
    if (c.id == tok) return c.w / t;
  }
  return x_tempered ? x[tok] : x[tok] / t;
}

//! First index of the largest element (torch.argmax's tie rule).
[[nodiscard]] inline std::int64_t argmax_first(const float* x, std::int64_t n) {
  const float m = row_max(x, n);
  for (std::int64_t i = 0; i < n; ++i) {
    if (x[i] == m) return i;
  }
  return 0;  // only when every element is NaN
}

//! Top-p over candidates c (their w are weights): sorts the smallest descending prefix whose mass reaches
//! `target` to the front by growing partial selection, and returns its length and mass. If all of c is
//! needed (or rounding leaves the target unreached), returns all of c.
inline std::pair<std::size_t, double> top_p_prefix(std::vector<Candidate>& c, double target) {
  const std::size_t n = c.size();
  std::size_t done = 0;
  double acc = 0.0;
  std::size_t m = std::min<std::size_t>(64, n);
  for (;;) {
    if (m < n) std::nth_element(c.begin() + static_cast<std::ptrdiff_t>(done), c.begin() + static_cast<std::ptrdiff_t>(m), c.end(), before);
    std::sort(c.begin() + static_cast<std::ptrdiff_t>(done), c.begin() + static_cast<std::ptrdiff_t>(m), before);
    for (; done < m; ++done) {
      acc += c[done].w;
      if (acc >= target) return {done + 1, acc};
    }
    if (m == n) return {n, acc};
    m = std::min(n, m * 4);
  }
}

//! Index into c of the inverse-CDF draw: the first j with c[0] + ... + c[j] > target (0 <= target < mass);
//! the last positive-weight candidate when rounding runs past the end.
[[nodiscard]] inline std::size_t draw_from(const Candidate* c, std::size_t n, double target) {
  double acc = 0.0;
  std::size_t last = 0;
  for (std::size_t j = 0; j < n; ++j) {
    if (c[j].w <= 0.0f) continue;
    acc += c[j].w;
    last = j;
    if (acc > target) return j;
  }
  return last;
}

//! Samples one row. x: the row's logits (modified in place). Returns false when the row has no finite
//! probability mass (every logit -inf or NaN, or +inf present), leaving token/lp unset.
inline bool sample_row(float* x, std::int64_t v, const SamplingRow& row, double u, bool want_lp,
                       std::int64_t& token, float& lp) {
  SamplerScratch& sc = sampler_scratch();
  sc.reserve(v);
  const SamplingParams& p = *row.params;
  const bool greedy = p.greedy();
  const float t = greedy ? 1.0f : static_cast<float>(p.temperature);
  const std::int64_t k = p.top_k;
  const bool top_k = k > 0 && k < v;
  float* w = sc.w.data();

  // The log-prob normaliser of the raw row, when the sampling passes below will not produce it.
  LogNorm raw{};
  const bool raw_first = want_lp && (greedy || top_k || has_penalties(row));
  if (raw_first) raw = log_norm(x, v, t, w);
  apply_penalties(x, row, sc);

  bool x_tempered = false;  // x holds l / t (the no-top-k random path divides in place)
  auto finish_lp = [&](std::int64_t tok) {
    if (!want_lp) return;
    const float z = unpenalised_z(x, tok, t, x_tempered, sc);
    lp = static_cast<float>(static_cast<double>(z) - raw.max - raw.log_sum);
  };

  if (greedy) {
    token = argmax_first(x, v);
    finish_lp(token);
    return std::isfinite(raw_first ? raw.log_sum : 0.0);
  }

  const float min_p = static_cast<float>(p.min_p);
  const double top_p = p.top_p;
  if (top_k) {
    // One pass over the penalised logits with a size-k min-heap (division by t > 0 keeps the order);
    // `ties` holds the tokens equal to the heap's minimum that did not fit, all kept (vLLM's rule).
    auto& h = sc.cand;
    auto& ties = sc.ties;
    h.clear();
    ties.clear();
    auto heap_cmp = [](const Candidate& a, const Candidate& b) { return a.w > b.w; };  // min-heap
    for (std::int64_t i = 0; i < k; ++i) h.push_back({x[i], static_cast<std::int32_t>(i)});
    std::make_heap(h.begin(), h.end(), heap_cmp);
    float thr = h.front().w;
    for (std::int64_t i = k; i < v; ++i) {
      const float xi = x[i];
      if (!(xi > thr)) {
        if (xi == thr) ties.push_back({xi, static_cast<std::int32_t>(i)});
        continue;
      }
      std::pop_heap(h.begin(), h.end(), heap_cmp);
      const Candidate out = h.back();
      h.back() = {xi, static_cast<std::int32_t>(i)};
      std::push_heap(h.begin(), h.end(), heap_cmp);
      const float nthr = h.front().w;
      if (nthr > thr) {
        ties.clear();
      } else {
        ties.push_back(out);  // out.w == thr == nthr: still tied with the k-th value
      }
      thr = nthr;
    }
    h.insert(h.end(), ties.begin(), ties.end());
    float zmax = -std::numeric_limits<float>::infinity();
    for (auto& c : h) {
      c.w = c.w / t;
      zmax = std::max(zmax, c.w);
    }
    if (!std::isfinite(zmax)) return false;
    // Weights, then min-p (w < min_p * w_max with w_max = 1), keeping only positive weights.
    std::size_t kept = 0;
    double mass = 0.0;
    for (auto& c : h) {
      c.w = exp_nonpositive(c.w - zmax);
      if (c.w > 0.0f && c.w >= min_p) {
        h[kept++] = c;
        mass += c.w;
      }
    }
    h.resize(kept);
    std::size_t n = kept;
    if (top_p < 1.0) {
      auto [len, m] = top_p_prefix(h, top_p * mass);
      n = len;
      mass = m;
    }
    token = h[draw_from(h.data(), n, u * mass)].id;
    finish_lp(token);
    return true;
  }

  // No top-k: tempered logits in place, weights w = exp(z - max) over the whole row.
  if (t != 1.0f) divide_in_place(x, t, v);
  x_tempered = true;
  const float zmax = row_max(x, v);
  if (!std::isfinite(zmax)) return false;
  exp_shifted(x, zmax, w, v);
  const std::int64_t nblocks = (v + cdf_block - 1) / cdf_block;
  sc.block_sum.resize(static_cast<std::size_t>(nblocks));
  auto block_sums = [&] {
    double z = 0.0;
    for (std::int64_t b = 0; b < nblocks; ++b) {
      const std::int64_t b0 = b * cdf_block;
      sc.block_sum[b] = row_sum(w + b0, std::min(cdf_block, v - b0));
      z += sc.block_sum[b];
    }
    return z;
  };
  double mass = block_sums();
  if (want_lp && !raw_first) raw = {static_cast<double>(zmax), std::log(mass)};  // unpenalised, unfiltered
  if (min_p > 0.0f) {
    zero_below(w, min_p, v);
    mass = block_sums();
  }
  if (!(mass > 0.0) || !std::isfinite(mass)) return false;

  if (top_p < 1.0) {
    // Every token below tau = (1 - top_p) * mass / V together weighs less than (1 - top_p) * mass, so the
    // candidates (w >= tau) hold more than top_p of the mass and contain the whole top-p prefix.
    const float tau = static_cast<float>((1.0 - top_p) * mass / static_cast<double>(v));
    auto& c = sc.cand;
    c.clear();
    for (std::int64_t i = 0; i < v; ++i) {
      if (w[i] >= tau && w[i] > 0.0f) c.push_back({w[i], static_cast<std::int32_t>(i)});
    }
    const auto [len, m] = top_p_prefix(c, top_p * mass);
    token = c[draw_from(c.data(), len, u * m)].id;
    finish_lp(token);
    return true;
  }

  // Inverse CDF over the whole row: skip whole blocks by their partial sums, then walk one block.
  const double target = u * mass;
  double acc = 0.0;
  std::int64_t b = 0;
  for (; b < nblocks - 1; ++b) {
    if (acc + sc.block_sum[b] > target) break;
    acc += sc.block_sum[b];
  }
  for (;; ) {
    const std::int64_t b0 = b * cdf_block, b1 = std::min(v, b0 + cdf_block);
    std::int64_t last = -1;
    for (std::int64_t i = b0; i < b1; ++i) {
      if (w[i] <= 0.0f) continue;
      acc += w[i];
      last = i;
      if (acc > target) {
        token = i;
        finish_lp(token);
        return true;
      }
    }
    // Rounding between the lane sums and this running sum ran past the block: take the next positive
    // weight (or, at the end of the row, the last one).
    if (b == nblocks - 1) {
      if (last < 0) {
        for (std::int64_t i = v - 1; i >= 0; --i) {
          if (w[i] > 0.0f) {
            last = i;
            break;
          }
        }
      }
      token = last;
      finish_lp(token);
      return last >= 0;
    }
    ++b;
  }
}

}  // namespace detail

//! The uniform in [0, 1) that the draw of (seed, step) uses: the first two 32-bit words of Philox4x32-10
//! with key = seed and 128-bit counter = step (the first two outputs of ATen's
//! at::Philox4_32(seed, /*subsequence=*/0, /*offset=*/step)), as the top 53 bits of (word0 << 32 | word1).
[[nodiscard]] inline double sampling_uniform(std::uint64_t seed, std::int64_t step) {
  const auto s = static_cast<std::uint64_t>(step);
  const auto out = detail::philox4x32_10(
      {static_cast<std::uint32_t>(s), static_cast<std::uint32_t>(s >> 32), 0u, 0u},
      {static_cast<std::uint32_t>(seed), static_cast<std::uint32_t>(seed >> 32)});
  const std::uint64_t bits = (std::uint64_t{out[0]} << 32 | out[1]) >> 11;
  return static_cast<double>(bits) * 0x1.0p-53;
}

//! Draws one token per row of `logits` (see the file comment for the exact semantics and the batch-
//! invariance law).
//! \param logits (S,V) float32 CPU contiguous; row s belongs to rows[s]. Modified in place (pass a tensor
//!        the caller no longer needs): greedy rows are left holding their penalised logits, other rows
//!        intermediate values.
//! \param rows S rows; each needs params (validated with SamplingParams::validate) and token ids in [0, V).
//! \param want_log_probs also return log_softmax(logits / T')[token] of the unmodified logits (T' = the
//!        row's temperature, 1 when greedy).
//! \throws verl::ShapeError for logits that are not (S,V) float32 CPU contiguous with S = rows.size() and
//!         V >= 1, or a prompt/output token outside [0, V); verl::ConfigError for a row without params or
//!         with invalid params; verl::InputError for a row with no finite probability mass (all logits
//!         -inf/NaN, or a +inf logit).
inline SampleOutput sample(at::Tensor logits, std::span<const SamplingRow> rows, bool want_log_probs) {
  using verl::detail::check;
  constexpr const char* owner = "verl::rollout::sample";
  check<ShapeError>(logits.defined() && logits.dim() == 2, owner, ": logits must be a defined (S,V) tensor, got ",
                    logits.defined() ? logits.dim() : -1, " dimensions");
  check<ShapeError>(logits.scalar_type() == at::kFloat, owner, ": logits have dtype ", logits.scalar_type(),
                    ", expected float32");
  check<ShapeError>(logits.device().is_cpu(), owner, ": logits are on ", logits.device(), ", expected CPU");
  check<ShapeError>(logits.is_contiguous(), owner, ": logits must be contiguous");
  const std::int64_t s = logits.size(0), v = logits.size(1);
  check<ShapeError>(s == static_cast<std::int64_t>(rows.size()), owner, ": logits have ", s,
                    " rows but ", rows.size(), " SamplingRows were given");
  check<ShapeError>(v >= 1 && v <= std::numeric_limits<std::int32_t>::max(), owner, ": vocabulary size V = ", v,
                    ", expected 1 <= V < 2^31");
  const SamplingParams* last_checked = nullptr;
  for (std::size_t r = 0; r < rows.size(); ++r) {
    const auto& row = rows[r];
    check<ConfigError>(row.params != nullptr, owner, ": rows[", r, "].params is null");
    if (row.params != last_checked) {
      row.params->validate();
      last_checked = row.params;
    }
    for (const auto* span : {&row.prompt_tokens, &row.output_tokens}) {
      for (std::size_t i = 0; i < span->size(); ++i) {
        check<ShapeError>((*span)[i] >= 0 && (*span)[i] < v, owner, ": rows[", r, "].",
                          span == &row.prompt_tokens ? "prompt_tokens[" : "output_tokens[", i, "] = ", (*span)[i],
                          ", expected a token id in [0, V = ", v, ")");
      }
    }
  }
  SampleOutput out;
  out.tokens.assign(static_cast<std::size_t>(s), 0);
  if (want_log_probs) out.log_probs.assign(static_cast<std::size_t>(s), 0.0f);
  std::vector<char> ok(static_cast<std::size_t>(s), 1);
  float* base = logits.data_ptr<float>();
  // One row per task (grain from cols = V * 16: a row costs several passes), so large batches spread evenly.
  verl::detail::parallel_rows(s, v * 16, [&](std::int64_t r0, std::int64_t r1) {
    for (std::int64_t r = r0; r < r1; ++r) {
      const auto& row = rows[static_cast<std::size_t>(r)];
      const double u = row.params->greedy() ? 0.0 : sampling_uniform(row.seed, row.step);
      float lp = 0.0f;
      ok[r] = detail::sample_row(base + r * v, v, row, u, want_log_probs, out.tokens[r], lp);
      if (want_log_probs) out.log_probs[r] = lp;
    }
  });
  for (std::int64_t r = 0; r < s; ++r) {
    check<InputError>(ok[r] != 0, owner, ": row ", r,
                      " has no finite probability mass (every logit is -inf or NaN, or one is +inf)");
  }
  return out;
}

}  // namespace verl::rollout

