#pragma once
//! \file
//! Per-token log-probs (and entropy) straight from hidden states and the LM head's weight, without the (N,V)
//! logits: verl::models::linear_log_probs. The actor's training forward needs, for each response token,
//! log softmax(logits / T)[token] and optionally the entropy of softmax(logits / T). Materialising the logits
//! costs N*V*4 bytes in float32 (4096 tokens x 151936 = 2.5 GB for Qwen2) plus the log_softmax/softmax copies;
//! here the tokens are processed in chunks of `chunk_tokens` rows, so at most chunk_tokens x V logits are alive
//! at once, and the backward recomputes each chunk's logits instead of saving them.
//!
//! Reference semantics: verl 0.7.1 verl/utils/torch_functional.py `logprobs_from_logits` (log_softmax +
//! gather, computed in float32 by flash-attn's cross_entropy from bf16 logits) and `entropy_from_logits`
//! (logsumexp(z) - sum(softmax(z) * z)) applied to `logits.div_(temperature)` as in
//! verl/workers/actor/dp_actor.py, logits = lm_head(hidden) as transformers' *ForCausalLM computes them; the
//! same as verl/utils/experimental/torch_functional.py `FusedLinearForPPO` in float32 output.
//!
//! Dtypes, exactly: logits = hidden @ weight^T is an at::mm in the input dtype (so bf16 logits are rounded to
//! bf16, as lm_head's are); z = logits / temperature is evaluated in the input dtype (bf16: divided in float
//! and rounded to bf16, as PyTorch does); everything after (max, sum of exp, log, gather, entropy) is
//! float32 (float64 when the inputs are float64), and so are the outputs. The backward forms grad_logits in
//! float32, rounds it to the input dtype (as autograd's cast backward does) and multiplies it with the inputs
//! in the input dtype; the weight gradient is accumulated over chunks in float32 for bf16/half inputs.
//!
//! On CPU the per-chunk work after the GEMM is one fused pass per row (two reads of the row: max, then
//! sum-exp/entropy terms) parallelised over rows with verl::detail::parallel_rows
//! (at::parallel_for would run on one thread: see verl/core/parallel.hpp), and the backward's grad_logits is
//! formed in place in the logits buffer; on other devices the same chunking runs on ATen operators.

#include "verl/core/errors.hpp"
#include "verl/core/parallel.hpp"
#include "verl/core/reusable_buffer.hpp"
#include "verl/models/detail/log_probs_kernels.hpp"

#include <ATen/Parallel.h>
#include <ATen/TensorOperators.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/mm.h>
#include <ATen/ops/zeros.h>
#include <ATen/ops/zeros_like.h>
#include <c10/core/GradMode.h>
#include <torch/csrc/autograd/custom_function.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string_view>

namespace verl::models {

//! Per-token results of linear_log_probs, shaped like `targets`.
struct TokenLogProbs {
  at::Tensor log_probs;  //!< (...,) float32 (float64 for float64 inputs): log p(target) under softmax(logits / T)
  at::Tensor entropy;    //!< (...,) same dtype; undefined unless LinearLogProbOptions::compute_entropy
};

//! Options of linear_log_probs.
struct LinearLogProbOptions {
  double temperature = 1.0;      //!< logits are divided by it (verl's actor: rollout temperature); > 0
  bool compute_entropy = false;  //!< also return the entropy of softmax(logits / T), differentiable
  std::int64_t chunk_tokens = 0;  //!< tokens per chunk; 0: the most that fit in max_chunk_bytes
  std::int64_t max_chunk_bytes = std::int64_t{256} << 20;  //!< budget of one chunk's buffers when chunk_tokens = 0
  //! float32 on CPU: vocabulary columns per GEMM block (0: detail::kDefaultVocabBlock). The other dtypes and
  //! devices ignore it.
  std::int64_t vocab_block = 0;
};

namespace detail {

inline constexpr std::string_view kLinearLogProbs = "verl::models::linear_log_probs";

//! Bytes one token's row costs in a chunk: the logits row in the input dtype, plus a float32 copy of the
//! gradient row in the backward of bf16/half inputs (the float32 weight-gradient GEMM).
inline std::int64_t chunk_row_bytes(std::int64_t vocab, at::ScalarType dtype) {
  const bool reduced = dtype == at::kBFloat16 || dtype == at::kHalf;
  return vocab * (static_cast<std::int64_t>(c10::elementSize(dtype)) + (reduced ? 4 : 0));
}

//! Rows per chunk: options.chunk_tokens, or as many as fit in options.max_chunk_bytes (at least 1), capped at
//! the number of tokens (and at least 1, so that N = 0 needs no special case).
inline std::int64_t resolve_chunk_tokens(const LinearLogProbOptions& options, std::int64_t tokens,
                                         std::int64_t vocab, at::ScalarType dtype) {
  std::int64_t chunk = options.chunk_tokens;
  if (chunk == 0) chunk = std::max<std::int64_t>(1, options.max_chunk_bytes / std::max<std::int64_t>(1, chunk_row_bytes(vocab, dtype)));
  return std::max<std::int64_t>(1, std::min(chunk, tokens));
}

//! Vocabulary columns per block of the blocked path when LinearLogProbOptions::vocab_block is 0. Measured with
//! MKL on 2 cores (docs/models.md): (rows,H)x(H,512) blocks run the Llama/Qwen head GEMMs as fast as one
//! (rows,V) GEMM or faster (1.3x at 64 rows), and a block of up to a few thousand rows stays in the L2/L3 cache
//! for the row pass that follows it.
inline constexpr std::int64_t kDefaultVocabBlock = 512;

//! Elements per thread below which a block's row pass stays on one thread: an exp and a few FMAs per element
//! cost ~10x a copy's, so the pass is split at a grain 8x smaller than ATen's (a 64-row block would otherwise
//! run on one thread while the other waits).
inline constexpr std::int64_t kBlockPassGrain = 4096;

//! How one call runs. The blocked path (float32 on CPU) multiplies a tile of rows by one vocabulary block of
//! the weight at a time and folds each block into running softmax statistics while it is in cache, so the
//! logits never reach memory; the chunked path (the other dtypes and devices) computes a chunk's whole (rows,V)
//! logits, then its row pass.
struct Plan {
  bool blocked = false;
  std::int64_t rows = 1;         //!< rows per chunk (chunked path) or tile (blocked path)
  std::int64_t vocab_block = 0;  //!< blocked path: columns per block
};

inline Plan make_plan(const LinearLogProbOptions& options, std::int64_t tokens, std::int64_t vocab,
                      const at::Tensor& hidden) {
  Plan plan;
  plan.blocked = hidden.device().is_cpu() && hidden.scalar_type() == at::kFloat;
  if (!plan.blocked) {
    plan.rows = resolve_chunk_tokens(options, tokens, vocab, hidden.scalar_type());
    return plan;
  }
  plan.vocab_block = std::min(vocab, options.vocab_block > 0 ? options.vocab_block : kDefaultVocabBlock);
  // A tile's buffer is rows x vocab_block floats: max_chunk_bytes bounds it as it bounds a chunk.
  plan.rows = resolve_chunk_tokens(options, tokens, plan.vocab_block, at::kFloat);
  return plan;
}

//! Forward over all chunks. Returns {log_probs (N,), lse (N,), mean_z (N,) or undefined, entropy or undefined}.
struct ForwardResult {
  at::Tensor log_probs, lse, mean_z, entropy;
  //! Raw logits kept for the backward, else undefined: chunked path, (N,V) when all tokens fit one chunk;
  //! blocked path, (N*V,) in blocks (kept_block) when asked to keep them.
  at::Tensor logits;
};

//! The calling thread's kept chunk block (see chunk_buffer).
inline verl::detail::ReusableBuffer& thread_chunk_block() {
  thread_local verl::detail::ReusableBuffer block;
  return block;
}

//! A (chunk,V) logits buffer. On CPU it comes from a block each thread keeps between calls
//! (verl/core/reusable_buffer.hpp): a fresh 256 MiB buffer per call otherwise costs ~65,000 page faults, about
//! as long as the row pass itself. The block is at most one chunk, i.e. LinearLogProbOptions::max_chunk_bytes
//! (or chunk_tokens rows); release_log_prob_buffer() frees it.
inline at::Tensor chunk_buffer(std::int64_t chunk, std::int64_t v, const at::TensorOptions& options) {
  if (!options.device().is_cpu()) return at::empty({chunk, v}, options);  // (chunk,V)
  return thread_chunk_block().take({chunk, v}, options);                   // (chunk,V)
}

//! The calling thread's kept tile block of the blocked path (a second block, so that alternating no-grad
//! calls, which need a tile, and training calls, which keep whole logits, do not take turns replacing one).
inline verl::detail::ReusableBuffer& thread_tile_block() {
  thread_local verl::detail::ReusableBuffer block;
  return block;
}

inline at::ScalarType accumulate_dtype(at::ScalarType dtype) {
  return dtype == at::kDouble ? at::kDouble : at::kFloat;
}

//! Tempered logits in the input dtype, then widened, for the ATen (non-CPU) path.
inline at::Tensor tempered_logits(const at::Tensor& logits, double temperature, at::ScalarType acc) {
  return (temperature == 1.0 ? logits : logits / temperature).to(acc);  // (c,V)
}

inline ForwardResult linear_log_probs_forward(const at::Tensor& hidden, const at::Tensor& weight,
                                              const at::Tensor& targets, double temperature, bool entropy,
                                              std::int64_t chunk) {
  const std::int64_t n = hidden.size(0), v = weight.size(0);
  const auto dtype = hidden.scalar_type();
  const auto acc = accumulate_dtype(dtype);
  const auto acc_opts = hidden.options().dtype(acc);
  ForwardResult out;
  out.log_probs = at::empty({n}, acc_opts);                               // (N,)
  out.lse = at::empty({n}, acc_opts);                                     // (N,)
  if (entropy) {
    out.mean_z = at::empty({n}, acc_opts);                                // (N,)
    out.entropy = at::empty({n}, acc_opts);                               // (N,)
  }
  if (n == 0) return out;
  const auto weight_t = weight.t();                                       // (H,V) view
  auto buffer = chunk_buffer(chunk, v, hidden.options());                 // (chunk,V), reused by every chunk
  for (std::int64_t i0 = 0; i0 < n; i0 += chunk) {
    const std::int64_t rows = std::min(chunk, n - i0);
    auto logits = buffer.narrow(0, 0, rows);                              // (rows,V) contiguous
    at::mm_out(logits, hidden.narrow(0, i0, rows), weight_t);
    const auto t_c = targets.narrow(0, i0, rows);                         // (rows,)
    if (hidden.device().is_cpu()) {
      if (dtype == at::kDouble) {
        const double* l = logits.data_ptr<double>();
        const std::int64_t* t = t_c.data_ptr<std::int64_t>();
        double* lp = out.log_probs.data_ptr<double>() + i0;
        double* lse = out.lse.data_ptr<double>() + i0;
        double* mz = entropy ? out.mean_z.data_ptr<double>() + i0 : nullptr;
        double* en = entropy ? out.entropy.data_ptr<double>() + i0 : nullptr;
        verl::detail::parallel_rows(rows, v, [&](std::int64_t b, std::int64_t e) {
          for (std::int64_t r = b; r < e; ++r) {
            const auto st = forward_row_f64(l + r * v, v, t[r], temperature, temperature != 1.0, entropy);
            lp[r] = st.log_prob;
            lse[r] = st.lse;
            if (entropy) {
              mz[r] = st.mean_z;
              en[r] = st.entropy;
            }
          }
        });
      } else {
        auto run = [&](auto tag) {
          using In = decltype(tag);
          typename RowKernels<In>::Forward args{
              reinterpret_cast<const In*>(logits.data_ptr()), t_c.data_ptr<std::int64_t>(),
              out.log_probs.data_ptr<float>() + i0, out.lse.data_ptr<float>() + i0,
              entropy ? out.mean_z.data_ptr<float>() + i0 : nullptr,
              entropy ? out.entropy.data_ptr<float>() + i0 : nullptr, v, static_cast<float>(temperature)};
          verl::detail::parallel_rows(rows, v,
                                      [&](std::int64_t b, std::int64_t e) { RowKernels<In>::forward(args, b, e); });
        };
        if (dtype == at::kFloat) run(float{});
        else if (dtype == at::kBFloat16) run(c10::BFloat16{});
        else run(c10::Half{});
      }
    } else {
      const auto z = tempered_logits(logits, temperature, acc);           // (rows,V)
      const auto lse_c = z.logsumexp({1});                                // (rows,)
      out.lse.narrow(0, i0, rows).copy_(lse_c);
      out.log_probs.narrow(0, i0, rows).copy_(z.gather(1, t_c.unsqueeze(1)).squeeze(1) - lse_c);
      if (entropy) {
        const auto mean_z = ((z - lse_c.unsqueeze(1)).exp() * z).sum({1});  // (rows,) E_p[z]
        out.mean_z.narrow(0, i0, rows).copy_(mean_z);
        out.entropy.narrow(0, i0, rows).copy_(lse_c - mean_z);
      }
    }
  }
  if (n <= chunk && hidden.device().is_cpu()) out.logits = buffer;  // untouched by the CPU row pass
  return out;
}

//! Zero gradients for the inputs that need one (no tokens, or no gradient reaching either output).
inline std::pair<at::Tensor, at::Tensor> zero_grads(const at::Tensor& hidden, const at::Tensor& weight,
                                                   bool need_hidden, bool need_weight) {
  return {need_hidden ? at::zeros_like(hidden) : at::Tensor(),
          need_weight ? at::zeros_like(weight, at::MemoryFormat::Contiguous) : at::Tensor()};
}

//! Backward over all chunks: recomputes each chunk's logits, overwrites them with grad_logits and multiplies.
//! \param g_lp, g_ent (N,) accumulate-dtype upstream gradients, either may be undefined.
inline std::pair<at::Tensor, at::Tensor> linear_log_probs_backward(
    const at::Tensor& hidden, const at::Tensor& weight, const at::Tensor& targets, const at::Tensor& lse,
    const at::Tensor& mean_z, const at::Tensor& g_lp, const at::Tensor& g_ent, double temperature,
    std::int64_t chunk, bool need_hidden, bool need_weight, at::Tensor kept_logits = {}) {
  const std::int64_t n = hidden.size(0), v = weight.size(0);
  const auto dtype = hidden.scalar_type();
  const auto acc = accumulate_dtype(dtype);
  const bool reduced = dtype == at::kBFloat16 || dtype == at::kHalf;
  const bool chunks = n > chunk;
  if (n == 0 || (!g_lp.defined() && !g_ent.defined()) || (!need_hidden && !need_weight)) {
    return zero_grads(hidden, weight, need_hidden, need_weight);
  }
  at::Tensor grad_hidden = need_hidden ? at::zeros_like(hidden) : at::Tensor();              // (N,H)
  // Written whole by one GEMM (one chunk) or by the final copy (bf16/half over chunks): no zero fill, which
  // for a (V,H) weight costs as much as a GEMM pass over memory. Accumulated over float chunks: zeros.
  at::Tensor grad_weight = !need_weight ? at::Tensor()
                           : chunks && !reduced ? at::zeros_like(weight, at::MemoryFormat::Contiguous)
                                                : at::empty_like(weight, at::MemoryFormat::Contiguous);  // (V,H)
  at::Tensor grad_weight_acc = need_weight && reduced && chunks
                                   ? at::zeros(weight.sizes(), weight.options().dtype(at::kFloat))
                                   : grad_weight;                                            // (V,H)
  const auto weight_t = weight.t();                                       // (H,V)
  auto buffer = kept_logits.defined() ? kept_logits : chunk_buffer(chunk, v, hidden.options());  // (chunk,V)
  for (std::int64_t i0 = 0; i0 < n; i0 += chunk) {
    const std::int64_t rows = std::min(chunk, n - i0);
    auto logits = buffer.narrow(0, 0, rows);                              // (rows,V)
    const auto h_c = hidden.narrow(0, i0, rows);                          // (rows,H)
    if (!kept_logits.defined()) at::mm_out(logits, h_c, weight_t);       // recompute (else kept by the forward)
    const auto t_c = targets.narrow(0, i0, rows);                         // (rows,)
    if (hidden.device().is_cpu()) {
      if (dtype == at::kDouble) {
        double* l = logits.data_ptr<double>();
        const std::int64_t* t = t_c.data_ptr<std::int64_t>();
        const double* glp = g_lp.defined() ? g_lp.data_ptr<double>() + i0 : nullptr;
        const double* gen = g_ent.defined() ? g_ent.data_ptr<double>() + i0 : nullptr;
        const double* ls = lse.data_ptr<double>() + i0;
        const double* mz = mean_z.defined() ? mean_z.data_ptr<double>() + i0 : nullptr;
        verl::detail::parallel_rows(rows, v, [&](std::int64_t b, std::int64_t e) {
          for (std::int64_t r = b; r < e; ++r) {
            backward_row_f64(l + r * v, v, t[r], temperature, temperature != 1.0, glp ? glp[r] : 0.0,
                             gen ? gen[r] : 0.0, ls[r], mz ? mz[r] : 0.0);
          }
        });
      } else {
        auto run = [&](auto tag) {
          using In = decltype(tag);
          typename RowKernels<In>::Backward args{
              reinterpret_cast<In*>(logits.data_ptr()), t_c.data_ptr<std::int64_t>(),
              g_lp.defined() ? g_lp.data_ptr<float>() + i0 : nullptr,
              g_ent.defined() ? g_ent.data_ptr<float>() + i0 : nullptr, lse.data_ptr<float>() + i0,
              mean_z.defined() ? mean_z.data_ptr<float>() + i0 : nullptr, v, static_cast<float>(temperature)};
          verl::detail::parallel_rows(rows, v,
                                      [&](std::int64_t b, std::int64_t e) { RowKernels<In>::backward(args, b, e); });
        };
        if (dtype == at::kFloat) run(float{});
        else if (dtype == at::kBFloat16) run(c10::BFloat16{});
        else run(c10::Half{});
      }
    } else {
      const auto z = tempered_logits(logits, temperature, acc);           // (rows,V)
      const auto p = (z - lse.narrow(0, i0, rows).unsqueeze(1)).exp();    // (rows,V)
      auto g = at::zeros_like(z);                                         // (rows,V)
      if (g_lp.defined()) {
        const auto glp = g_lp.narrow(0, i0, rows).unsqueeze(1);           // (rows,1)
        g = g - glp * p;
        g.scatter_add_(1, t_c.unsqueeze(1), glp);
      }
      if (g_ent.defined()) g = g + g_ent.narrow(0, i0, rows).unsqueeze(1) * p * (mean_z.narrow(0, i0, rows).unsqueeze(1) - z);
      if (temperature != 1.0) g = g / temperature;
      logits.copy_(g);
    }
    if (need_hidden) {
      auto grad_rows = grad_hidden.narrow(0, i0, rows);                   // (rows,H) contiguous
      at::mm_out(grad_rows, logits, weight);
    }
    if (need_weight) {
      if (!chunks) {
        at::mm_out(grad_weight, logits.t(), h_c);
      } else if (reduced) {
        grad_weight_acc.addmm_(logits.t().to(at::kFloat), h_c.to(at::kFloat));
      } else {
        grad_weight.addmm_(logits.t(), h_c);
      }
    }
  }
  if (need_weight && reduced && chunks) grad_weight.copy_(grad_weight_acc);
  return {grad_hidden, grad_weight};
}

//! A (rows,cols) tile buffer of the blocked path, from the thread's kept tile block.
inline at::Tensor tile_buffer(std::int64_t rows, std::int64_t cols, const at::TensorOptions& options) {
  return thread_tile_block().take({rows, cols}, options);  // (rows,cols)
}

//! The (N,cols) block of kept logits starting at vocabulary column v0, in the flat (N*V,) buffer that holds
//! the blocks one after another (all blocks but the last have the same width, so block v0 starts at v0 * N).
inline at::Tensor kept_block(const at::Tensor& flat, std::int64_t n, std::int64_t v0, std::int64_t cols) {
  return flat.narrow(0, v0 * n, n * cols).view({n, cols});  // (N,cols) contiguous
}

//! Forward of the blocked path (float32 on CPU): for each tile of `plan.rows` rows and each block of
//! `plan.vocab_block` vocabulary columns, one GEMM into a cache-sized buffer, then fold_block_row on each row.
//! \param keep_logits write the blocks into one (N*V,) buffer instead (see kept_block) and return it in
//!        ForwardResult::logits (the caller checks that all rows fit one tile and that N*V floats fit the
//!        budget).
inline ForwardResult blocked_forward(const at::Tensor& hidden, const at::Tensor& weight, const at::Tensor& targets,
                                     double temperature, bool entropy, const Plan& plan, bool keep_logits) {
  const std::int64_t n = hidden.size(0), v = weight.size(0);
  const auto opts = hidden.options();
  ForwardResult out;
  out.log_probs = at::empty({n}, opts);                                   // (N,)
  out.lse = at::empty({n}, opts);                                         // (N,)
  if (entropy) {
    out.mean_z = at::empty({n}, opts);                                    // (N,)
    out.entropy = at::empty({n}, opts);                                   // (N,)
  }
  if (n == 0) return out;
  auto stats = at::empty({4, n}, opts);                                   // m, s, q, z_target per row
  float* m = stats.data_ptr<float>();
  float* s = m + n;
  float* q = s + n;
  float* z_target = q + n;
  std::fill(m, m + n, -INFINITY);
  std::fill(s, s + 2 * n, 0.0f);                                          // s and q
  std::fill(z_target, z_target + n, 0.0f);
  const std::int64_t tile = std::min(plan.rows, n), block = plan.vocab_block;
  // Kept logits are stored block after block, each block a contiguous (N,cols) matrix (kept_block): as
  // column slices of one (N,V) matrix, the GEMMs writing and reading them ran 1.4-1.9x slower (rows a page
  // or more apart).
  auto buffer = keep_logits ? chunk_buffer(1, n * v, opts).view({n * v}) : tile_buffer(tile, block, opts);
  const std::int64_t* t = targets.data_ptr<std::int64_t>();
  for (std::int64_t i0 = 0; i0 < n; i0 += tile) {
    const std::int64_t rows = std::min(tile, n - i0);
    const auto h_tile = hidden.narrow(0, i0, rows);                       // (rows,H)
    for (std::int64_t v0 = 0; v0 < v; v0 += block) {
      const std::int64_t cols = std::min(block, v - v0);
      auto logits = keep_logits ? kept_block(buffer, n, v0, cols) : buffer.narrow(0, 0, rows).narrow(1, 0, cols);  // (rows,cols)
      at::mm_out(logits, h_tile, weight.narrow(0, v0, cols).t());
      const RowKernels<float>::BlockForward args{logits.data_ptr<float>(), logits.stride(0), cols, v0, t + i0,
                                                 m + i0, s + i0, entropy ? q + i0 : nullptr, z_target + i0,
                                                 static_cast<float>(temperature)};
      verl::detail::parallel_rows(rows, cols,
                                  [&](std::int64_t b, std::int64_t e) { RowKernels<float>::block_forward(args, b, e); },
                                  kBlockPassGrain);
    }
  }
  float* lp = out.log_probs.data_ptr<float>();
  float* lse = out.lse.data_ptr<float>();
  float* mean_z = entropy ? out.mean_z.data_ptr<float>() : nullptr;
  float* ent = entropy ? out.entropy.data_ptr<float>() : nullptr;
  for (std::int64_t r = 0; r < n; ++r) {
    const auto st = finish_row(m[r], s[r], q[r], z_target[r], entropy);
    lse[r] = st.lse;
    lp[r] = st.log_prob;
    if (entropy) {
      mean_z[r] = st.mean_z;
      ent[r] = st.entropy;
    }
  }
  if (keep_logits) out.logits = buffer;
  return out;
}

//! Backward of the blocked path: per tile and vocabulary block, the logits (recomputed, or a block of
//! `kept_logits`) become grad_logits in place, then grad_hidden += G W_block and grad_weight[block] = G^T h
//! (accumulated when there are several tiles).
inline std::pair<at::Tensor, at::Tensor> blocked_backward(const at::Tensor& hidden, const at::Tensor& weight,
                                                          const at::Tensor& targets, const at::Tensor& lse,
                                                          const at::Tensor& mean_z, const at::Tensor& g_lp,
                                                          const at::Tensor& g_ent, double temperature, const Plan& plan,
                                                          bool need_hidden, bool need_weight, const at::Tensor& kept_logits) {
  const std::int64_t n = hidden.size(0), v = weight.size(0);
  if (n == 0 || (!g_lp.defined() && !g_ent.defined()) || (!need_hidden && !need_weight)) {
    return zero_grads(hidden, weight, need_hidden, need_weight);
  }
  const std::int64_t tile = std::min(plan.rows, n), block = plan.vocab_block;
  const bool one_tile = tile == n;
  at::Tensor grad_hidden = need_hidden ? at::zeros_like(hidden) : at::Tensor();  // (N,H), summed over blocks
  // One tile writes every block of the weight gradient once: no zero fill (a whole pass over (V,H) memory).
  at::Tensor grad_weight = !need_weight ? at::Tensor()
                           : one_tile   ? at::empty_like(weight, at::MemoryFormat::Contiguous)
                                        : at::zeros_like(weight, at::MemoryFormat::Contiguous);  // (V,H)
  const bool kept = kept_logits.defined();
  auto buffer = kept ? kept_logits : tile_buffer(tile, block, hidden.options());  // (N*V,) or (tile,block)
  const std::int64_t* t = targets.data_ptr<std::int64_t>();
  const float* glp = g_lp.defined() ? g_lp.data_ptr<float>() : nullptr;
  const float* gen = g_ent.defined() ? g_ent.data_ptr<float>() : nullptr;
  const float* ls = lse.data_ptr<float>();
  const float* mz = mean_z.defined() ? mean_z.data_ptr<float>() : nullptr;
  for (std::int64_t i0 = 0; i0 < n; i0 += tile) {
    const std::int64_t rows = std::min(tile, n - i0);
    const auto h_tile = hidden.narrow(0, i0, rows);                       // (rows,H)
    for (std::int64_t v0 = 0; v0 < v; v0 += block) {
      const std::int64_t cols = std::min(block, v - v0);
      const auto w_block = weight.narrow(0, v0, cols);                    // (cols,H)
      auto logits = kept ? kept_block(buffer, n, v0, cols) : buffer.narrow(0, 0, rows).narrow(1, 0, cols);  // (rows,cols)
      if (!kept) at::mm_out(logits, h_tile, w_block.t());
      const RowKernels<float>::BlockBackward args{logits.data_ptr<float>(), logits.stride(0), cols, v0, t + i0,
                                                  glp ? glp + i0 : nullptr, gen ? gen + i0 : nullptr, ls + i0,
                                                  mz ? mz + i0 : nullptr, static_cast<float>(temperature)};
      verl::detail::parallel_rows(rows, cols,
                                  [&](std::int64_t b, std::int64_t e) { RowKernels<float>::block_backward(args, b, e); },
                                  kBlockPassGrain);
      if (need_hidden) grad_hidden.narrow(0, i0, rows).addmm_(logits, w_block);
      if (need_weight) {
        auto gw_block = grad_weight.narrow(0, v0, cols);                  // (cols,H) contiguous
        if (one_tile) at::mm_out(gw_block, logits.t(), h_tile);
        else gw_block.addmm_(logits.t(), h_tile);
      }
    }
  }
  return {grad_hidden, grad_weight};
}

//! The autograd node: saves the inputs and two (N,) statistics, recomputes the logits in backward.
struct LinearLogProbsFunction : torch::autograd::Function<LinearLogProbsFunction> {
  //! \param keep_logits (blocked path) keep the (N,V) logits for the backward; the chunked path keeps its
  //!        buffer whenever all tokens fit one chunk.
  static torch::autograd::variable_list forward(torch::autograd::AutogradContext* ctx, const at::Tensor& hidden,
                                                const at::Tensor& weight, const at::Tensor& targets,
                                                double temperature, bool entropy, bool blocked, std::int64_t rows,
                                                std::int64_t vocab_block, bool keep_logits) {
    const Plan plan{blocked, rows, vocab_block};
    auto res = blocked ? blocked_forward(hidden, weight, targets, temperature, entropy, plan, keep_logits)
                       : linear_log_probs_forward(hidden, weight, targets, temperature, entropy, rows);
    ctx->set_materialize_grads(false);
    ctx->saved_data["temperature"] = temperature;
    ctx->saved_data["entropy"] = entropy;
    ctx->saved_data["blocked"] = blocked;
    ctx->saved_data["rows"] = rows;
    ctx->saved_data["vocab_block"] = vocab_block;
    // When every token fits in one chunk, the logits buffer (within the memory budget by construction) is kept
    // for the backward, which then skips the recomputing GEMM; the backward overwrites it, so only once.
    ctx->saved_data["kept_logits"] = res.logits.defined();
    ctx->save_for_backward({hidden, weight, targets, res.lse, entropy ? res.mean_z : at::Tensor(),
                            res.logits.defined() ? res.logits : at::Tensor()});
    if (entropy) return {res.log_probs, res.entropy};
    return {res.log_probs};
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const bool entropy = ctx->saved_data["entropy"].toBool();
    const auto contiguous = [](const at::Tensor& g) { return g.defined() ? g.contiguous() : g; };
    const bool kept = ctx->saved_data["kept_logits"].toBool();
    ctx->saved_data["kept_logits"] = false;  // a second backward (retain_graph) recomputes
    const Plan plan{ctx->saved_data["blocked"].toBool(), ctx->saved_data["rows"].toInt(),
                    ctx->saved_data["vocab_block"].toInt()};
    const auto g_lp = contiguous(grads[0]);
    const auto g_ent = entropy ? contiguous(grads[1]) : at::Tensor();
    const double temperature = ctx->saved_data["temperature"].toDouble();
    const auto kept_logits = kept ? saved[5] : at::Tensor();
    auto [gh, gw] = plan.blocked
                        ? blocked_backward(saved[0], saved[1], saved[2], saved[3], entropy ? saved[4] : at::Tensor(),
                                           g_lp, g_ent, temperature, plan, ctx->needs_input_grad(0),
                                           ctx->needs_input_grad(1), kept_logits)
                        : linear_log_probs_backward(saved[0], saved[1], saved[2], saved[3],
                                                    entropy ? saved[4] : at::Tensor(), g_lp, g_ent, temperature,
                                                    plan.rows, ctx->needs_input_grad(0), ctx->needs_input_grad(1),
                                                    kept_logits);
    return {gh, gw, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

}  // namespace detail

//! log softmax(hidden @ weight^T / temperature)[targets] per token, and optionally the entropy of
//! softmax(hidden @ weight^T / temperature), chunk by chunk over the tokens (see the file comment for dtypes).
//! Differentiable w.r.t. `hidden` and `weight` (through both outputs); the backward recomputes each chunk's
//! logits, so the memory beyond inputs and gradients is O(chunk_tokens x V) in forward and backward.
//! \param hidden (..., H) float32, float64, bfloat16 or float16: the final hidden states.
//! \param weight (V, H) same dtype and device: lm_head.weight.
//! \param targets (...) int64 in [0, V), the same leading shape as `hidden`.
//! \returns log_probs and entropy shaped like `targets`, float32 (float64 for float64 inputs).
//! \throws verl::ShapeError for wrong ranks, shapes, dtypes, devices or out-of-range targets;
//!         verl::ConfigError for temperature <= 0 or not finite, chunk_tokens < 0, max_chunk_bytes <= 0.
[[nodiscard]] inline TokenLogProbs linear_log_probs(const at::Tensor& hidden, const at::Tensor& weight,
                                                    const at::Tensor& targets, const LinearLogProbOptions& options = {}) {
  using verl::detail::check;
  constexpr auto owner = detail::kLinearLogProbs;
  check<ShapeError>(hidden.defined() && hidden.dim() >= 1, owner, ": `hidden` must be a defined (..., H) tensor");
  check<ShapeError>(weight.defined() && weight.dim() == 2, owner, ": `weight` has ",
                    weight.defined() ? weight.dim() : 0, " dimensions, expected 2 (V, H) (lm_head.weight)");
  check<ShapeError>(targets.defined(), owner, ": `targets` is undefined, expected (...) int64 token ids");
  const auto dtype = hidden.scalar_type();
  check<ShapeError>(dtype == at::kFloat || dtype == at::kDouble || dtype == at::kBFloat16 || dtype == at::kHalf,
                    owner, ": `hidden` has dtype ", dtype, ", expected float32, float64, bfloat16 or float16");
  check<ShapeError>(weight.scalar_type() == dtype, owner, ": `weight` has dtype ", weight.scalar_type(),
                    ", expected the dtype of `hidden` (", dtype, ")");
  check<ShapeError>(weight.device() == hidden.device() && targets.device() == hidden.device(), owner,
                    ": `hidden`, `weight` and `targets` must be on one device, got ", hidden.device(), ", ",
                    weight.device(), ", ", targets.device());
  check<ShapeError>(weight.size(1) == hidden.size(-1), owner, ": `weight` has shape ", weight.sizes(),
                    ", expected (V, ", hidden.size(-1), ") to match the hidden size of `hidden` ", hidden.sizes());
  check<ShapeError>(weight.size(0) >= 1, owner, ": `weight` has an empty vocabulary (shape ", weight.sizes(), ")");
  check<ShapeError>(targets.scalar_type() == at::kLong, owner, ": `targets` has dtype ", targets.scalar_type(),
                    ", expected int64 (torch.long) token ids");
  check<ShapeError>(targets.sizes() == hidden.sizes().slice(0, hidden.dim() - 1), owner, ": `targets` has shape ",
                    targets.sizes(), ", expected ", hidden.sizes().slice(0, hidden.dim() - 1),
                    " (the leading dimensions of `hidden` ", hidden.sizes(), ")");
  check<ConfigError>(std::isfinite(options.temperature) && options.temperature > 0.0, owner, ": temperature is ",
                     options.temperature, ", expected a finite value > 0");
  check<ConfigError>(options.chunk_tokens >= 0, owner, ": chunk_tokens is ", options.chunk_tokens,
                     ", expected >= 0 (0 chooses it from max_chunk_bytes)");
  check<ConfigError>(options.max_chunk_bytes > 0, owner, ": max_chunk_bytes is ", options.max_chunk_bytes,
                     ", expected > 0");
  check<ConfigError>(options.vocab_block >= 0, owner, ": vocab_block is ", options.vocab_block,
                     ", expected >= 0 (0 chooses ", detail::kDefaultVocabBlock, ")");
  const std::int64_t vocab = weight.size(0), width = weight.size(1);
  const auto flat_hidden = hidden.reshape({-1, width}).contiguous();     // (N,H)
  const auto flat_targets = targets.reshape({-1}).contiguous();          // (N,)
  const std::int64_t n = flat_targets.size(0);
  if (n > 0) {
    const auto bad = flat_targets.lt(0).logical_or(flat_targets.ge(vocab));  // (N,)
    if (bad.any().item<bool>()) {
      const auto index = bad.nonzero()[0][0].item<std::int64_t>();
      throw ShapeError(verl::detail::concat_message(owner, ": `targets` holds ", flat_targets[index].item<std::int64_t>(),
                                                    " at flat position ", index, ", expected token ids in [0, ",
                                                    vocab, ") (V = weight.size(0))"));
    }
  }
  const auto plan = detail::make_plan(options, n, vocab, flat_hidden);
  TokenLogProbs out;
  const bool grad = c10::GradMode::is_enabled() && (hidden.requires_grad() || weight.requires_grad());
  if (grad) {
    // Blocked path: the forward keeps its (N,V) logits for the backward (which then skips one GEMM) when they
    // fit the chunk budget and all rows are one tile (chunk_tokens, when set, still bounds the memory).
    const bool keep_logits = plan.blocked && n <= plan.rows &&
                             n * vocab * static_cast<std::int64_t>(sizeof(float)) <= options.max_chunk_bytes;
    auto outs = detail::LinearLogProbsFunction::apply(flat_hidden, weight, flat_targets, options.temperature,
                                                      options.compute_entropy, plan.blocked, plan.rows,
                                                      plan.vocab_block, keep_logits);
    out.log_probs = outs[0].view(targets.sizes());
    if (options.compute_entropy) out.entropy = outs[1].view(targets.sizes());
  } else {
    auto res = plan.blocked ? detail::blocked_forward(flat_hidden, weight, flat_targets, options.temperature,
                                                      options.compute_entropy, plan, /*keep_logits=*/false)
                            : detail::linear_log_probs_forward(flat_hidden, weight, flat_targets, options.temperature,
                                                               options.compute_entropy, plan.rows);
    out.log_probs = res.log_probs.view(targets.sizes());
    if (options.compute_entropy) out.entropy = res.entropy.view(targets.sizes());
  }
  return out;
}

//! Frees the calling thread's kept chunk block of linear_log_probs on CPU (see detail::chunk_buffer): up to one
//! chunk (LinearLogProbOptions::max_chunk_bytes) that stays resident between calls otherwise.
inline void release_log_prob_buffer() {
  detail::thread_chunk_block().release();
  detail::thread_tile_block().release();
}

}  // namespace verl::models
