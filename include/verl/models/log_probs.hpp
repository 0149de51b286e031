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

//! Forward over all chunks. Returns {log_probs (N,), lse (N,), mean_z (N,) or undefined, entropy or undefined}.
struct ForwardResult {
  at::Tensor log_probs, lse, mean_z, entropy;
  at::Tensor logits;  //!< (N,V) raw logits when all tokens fit in one chunk (else undefined)
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
  at::Tensor grad_hidden = need_hidden ? at::zeros_like(hidden) : at::Tensor();              // (N,H)
  at::Tensor grad_weight = need_weight ? at::zeros_like(weight, at::MemoryFormat::Contiguous) : at::Tensor();  // (V,H)
  at::Tensor grad_weight_acc = need_weight && reduced && chunks
                                   ? at::zeros(weight.sizes(), weight.options().dtype(at::kFloat))
                                   : grad_weight;                                            // (V,H)
  if (n == 0 || (!g_lp.defined() && !g_ent.defined()) || (!need_hidden && !need_weight)) {
    return {grad_hidden, grad_weight};
  }
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

//! The autograd node: saves the inputs and two (N,) statistics, recomputes the logits in backward.
struct LinearLogProbsFunction : torch::autograd::Function<LinearLogProbsFunction> {
  static torch::autograd::variable_list forward(torch::autograd::AutogradContext* ctx, const at::Tensor& hidden,
                                                const at::Tensor& weight, const at::Tensor& targets,
                                                double temperature, bool entropy, std::int64_t chunk) {
    auto res = linear_log_probs_forward(hidden, weight, targets, temperature, entropy, chunk);
    ctx->set_materialize_grads(false);
    ctx->saved_data["temperature"] = temperature;
    ctx->saved_data["entropy"] = entropy;
    ctx->saved_data["chunk"] = chunk;
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
    auto [gh, gw] = linear_log_probs_backward(
        saved[0], saved[1], saved[2], saved[3], entropy ? saved[4] : at::Tensor(), contiguous(grads[0]),
        entropy ? contiguous(grads[1]) : at::Tensor(), ctx->saved_data["temperature"].toDouble(),
        ctx->saved_data["chunk"].toInt(), ctx->needs_input_grad(0), ctx->needs_input_grad(1),
        kept ? saved[5] : at::Tensor());
    return {gh, gw, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
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
  const std::int64_t chunk = detail::resolve_chunk_tokens(options, n, vocab, dtype);
  TokenLogProbs out;
  const bool grad = c10::GradMode::is_enabled() && (hidden.requires_grad() || weight.requires_grad());
  if (grad) {
    auto outs = detail::LinearLogProbsFunction::apply(flat_hidden, weight, flat_targets, options.temperature,
                                                      options.compute_entropy, chunk);
    out.log_probs = outs[0].view(targets.sizes());
    if (options.compute_entropy) out.entropy = outs[1].view(targets.sizes());
  } else {
    auto res = detail::linear_log_probs_forward(flat_hidden, weight, flat_targets, options.temperature,
                                                options.compute_entropy, chunk);
    out.log_probs = res.log_probs.view(targets.sizes());
    if (options.compute_entropy) out.entropy = res.entropy.view(targets.sizes());
  }
  return out;
}

//! Frees the calling thread's kept chunk block of linear_log_probs on CPU (see detail::chunk_buffer): up to one
//! chunk (LinearLogProbOptions::max_chunk_bytes) that stays resident between calls otherwise.
inline void release_log_prob_buffer() { detail::thread_chunk_block().release(); }

}  // namespace verl::models
