#pragma once
//! \file
//! Supervised fine-tuning negative log-likelihood, verl::pref::sft_nll_loss: the causal-LM loss that TRL's
//! SFTTrainer (and the NLL terms of DPO/CPO/ORPO) take from transformers, `ForCausalLMLoss` and
//! `fixed_cross_entropy` in `transformers/loss/loss_utils.py`, pinned at PyPI transformers 5.2.0
//! (the release paired with trl 0.28.0 for the golden vectors). Labels equal to ignore_index (-100) do not
//! count; the mean runs over the others.

#include "verl/core/errors.hpp"

#include <ATen/core/Tensor.h>
#include <ATen/ops/cross_entropy_loss_ops.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/logsumexp_ops.h>
#include <ATen/ops/where_ops.h>

#include <cstdint>
#include <optional>

namespace verl::pref {

//! How sft_nll_loss evaluates the cross entropy.
enum class SFTLossAlgorithm {
  //! at::cross_entropy_loss (log_softmax + nll_loss) on the flattened logits, exactly as transformers does:
  //! bit-identical to the reference.
  reference,
  //! per-row logsumexp minus the target logit, without materialising the (N,V) log-softmax (saves one (N,V)
  //! buffer); equal to the reference up to float rounding (tests: rel. 2e-6). Not faster on CPU: ATen's logsumexp
  //! over a small last dimension is slower than log_softmax (bench/bench_pref_losses.cpp, V = 32).
  fused,
};

//! Configuration of sft_nll_loss.
struct SFTLossConfig {
  std::int64_t ignore_index = -100;  //!< labels with this value are ignored
  //! Shift labels left by one (position t predicts token t+1) and pad the last position with ignore_index, as
  //! ForCausalLMLoss does when no shift_labels are passed. False: labels are already aligned with the logits.
  bool shift_labels = true;
  //! When set, the summed loss is divided by this count (transformers' gradient-accumulation-exact
  //! normalisation, reduction "sum" / num_items_in_batch) instead of the number of non-ignored labels.
  std::optional<double> num_items_in_batch = std::nullopt;
  SFTLossAlgorithm algorithm = SFTLossAlgorithm::reference;
};

//! Token-level cross entropy of `logits` against `labels`, averaged over the non-ignored labels.
//!
//! Reference: transformers `transformers/loss/loss_utils.py`, `ForCausalLMLoss` + `fixed_cross_entropy`, PyPI
//! transformers 5.2.0 (the loss TRL 0.28.0's SFTTrainer uses).
//! loss = sum_{t: y_t != ignore} -log softmax(logits_t)[y_t] / |{t: y_t != ignore}|, with y the shifted labels.
//! Edge cases: if every label is ignored the mean is 0/0 = NaN, as in PyTorch/transformers.
//! Precision: transformers upcasts the logits with `.float()` (which would also downcast float64); deliberate
//! difference: half/bfloat16 are upcast to float32, float64 stays float64.
//! \param logits (B,T,V) floating; \param labels (B,T) int64 token ids in [0, V) or ignore_index.
//! \returns () the mean NLL. \throws ShapeError on shape/dtype mismatch; InputError for labels out of range.
[[nodiscard]] inline at::Tensor sft_nll_loss(const at::Tensor& logits, const at::Tensor& labels,
                                             const SFTLossConfig& config = {}) {
  constexpr const char* who = "verl::pref::sft_nll_loss";
  verl::detail::check<ShapeError>(logits.defined() && logits.dim() == 3 && at::isFloatingType(logits.scalar_type()),
                                  who, ": `logits` must be a floating (B,T,V) tensor, got ",
                                  logits.defined() ? logits.sizes() : at::IntArrayRef{});
  verl::detail::check<ShapeError>(labels.defined() && labels.scalar_type() == at::kLong && labels.dim() == 2 &&
                                      labels.size(0) == logits.size(0) && labels.size(1) == logits.size(1),
                                  who, ": `labels` must be an int64 (B,T) tensor matching logits ", logits.sizes(),
                                  ", got ", labels.defined() ? labels.sizes() : at::IntArrayRef{});
  const auto V = logits.size(2);
  const auto compute = logits.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  const auto flat = logits.to(compute).reshape({-1, V});  // (N,V), N = B*T
  at::Tensor targets;                                      // (B,T)
  bool out_of_range = false;
  if (labels.is_cpu()) {
    // One pass: the shifted targets and the range check (the tensor form below is ~7 passes over N labels,
    // ~8% of the whole loss at V = 32).
    const auto lab = labels.contiguous();
    targets = at::empty(lab.sizes(), lab.options());  // (B,T)
    const std::int64_t* in = lab.data_ptr<std::int64_t>();
    std::int64_t* out = targets.data_ptr<std::int64_t>();
    const std::int64_t B = lab.size(0), T = lab.size(1), ignore = config.ignore_index;
    const std::int64_t shift = config.shift_labels ? 1 : 0;
    bool bad = false;
    for (std::int64_t b = 0; b < B; ++b) {
      for (std::int64_t t = 0; t < T; ++t) {
        const std::int64_t y = t + shift < T ? in[b * T + t + shift] : ignore;
        out[b * T + t] = y;
        bad |= (y != ignore) & ((y < 0) | (y >= V));
      }
    }
    out_of_range = bad;
  } else {
    if (config.shift_labels) {
      targets = labels.new_full(labels.sizes(), config.ignore_index);                                  // (B,T)
      const auto T = labels.size(1);
      if (T > 1) targets.narrow(1, 0, T - 1).copy_(labels.narrow(1, 1, T - 1));
    } else {
      targets = labels;
    }
    const auto t = targets.reshape({-1});  // (N,)
    out_of_range = t.ne(config.ignore_index).logical_and(t.lt(0).logical_or(t.ge(V))).any().item<bool>();
  }
  verl::detail::check<InputError>(!out_of_range, who, ": a label is outside [0, ", V, ") and is not ignore_index ",
                                  config.ignore_index);
  const auto tgt = targets.reshape({-1});  // (N,)

  if (config.algorithm == SFTLossAlgorithm::reference) {
    const std::int64_t reduction = config.num_items_in_batch ? 2 /*sum*/ : 1 /*mean*/;
    auto loss = at::_ops::cross_entropy_loss::call(flat, tgt, std::nullopt, reduction, config.ignore_index, 0.0);
    if (config.num_items_in_batch) loss = loss.div(*config.num_items_in_batch);
    return loss;  // ()
  }
  const auto valid = tgt.ne(config.ignore_index);                               // (N,) bool
  const auto safe = at::_ops::where_ScalarOther::call(valid, tgt, 0);           // (N,) ignored -> class 0
  const auto lse = at::_ops::logsumexp::call(flat, {1}, false);                 // (N,)
  const auto picked = flat.gather(1, safe.unsqueeze(1)).squeeze(1);             // (N,)
  const auto nll = at::_ops::where_ScalarOther::call(valid, lse.sub(picked), 0.0); // (N,)
  const auto total = nll.sum();                                                  // ()
  if (config.num_items_in_batch) return total.div(*config.num_items_in_batch);
  return total.div(valid.sum().to(compute));
}

}  // namespace verl::pref
