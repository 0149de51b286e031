#pragma once
//! \file
//! Masked statistics, verl::functional: verl's `verl/utils/torch_functional.py` masked_sum, masked_mean,
//! masked_var and masked_whiten, pinned at verl 0.7.0/0.7.1 (PyPI; the two releases around commit b178a3cd,
//! January 2026, identical for these functions). Every estimator and loss in verl::core_algos builds on them.
//!
//! Parity notes (they matter to the last bit):
//! - masked_sum replaces values outside the mask by 0 before multiplying, so NaN/inf there cannot leak in.
//! - masked_mean divides by `mask.sum(dims) + 1e-8` computed in the mask's own type promotion: for an integer
//!   or boolean mask that sum is promoted to the default dtype (float32) before the 1e-8 is added, exactly as
//!   PyTorch does for `int_tensor + 1e-8`; for a float64 mask it is float64.
//! - masked_var raises when the mask selects zero or one element and `unbiased` (Bessel's correction would
//!   divide by zero), as verl does.

#include "verl/core/errors.hpp"

// Tensor methods (mul, add, ...) rather than operators: the operators live in <ATen/TensorOperators.h>, which
// pulls in all of ATen/Functions.h (+9 s per translation unit).

#include <ATen/core/Tensor.h>
#include <ATen/ops/rsqrt_ops.h>
#include <ATen/ops/where_ops.h>

#include <optional>
#include <vector>

namespace verl::functional {

//! Sum of `values` where `mask` is nonzero, over `dims` (all elements when empty).
//! \param values (...) floating tensor; \param mask same shape, bool/integer/floating.
[[nodiscard]] inline at::Tensor masked_sum(const at::Tensor& values, const at::Tensor& mask,
                                           at::OptionalIntArrayRef dims = {}) {
  const auto valid = at::_ops::where_ScalarOther::call(mask.to(at::kBool), values, 0.0);  // (...) 0 outside the mask
  const auto weighted = valid.mul(mask);                                              // (...)
  return dims.has_value() ? weighted.sum(*dims) : weighted.sum();
}

//! Mean of `values` over the elements selected by `mask` (along `dims`, or all): masked_sum / (count + 1e-8).
[[nodiscard]] inline at::Tensor masked_mean(const at::Tensor& values, const at::Tensor& mask,
                                            at::OptionalIntArrayRef dims = {}) {
  const auto count = dims.has_value() ? mask.sum(*dims) : mask.sum();
  return masked_sum(values, mask, dims).div(count.add(1e-8));
}

//! Variance of `values` over all elements selected by `mask`; with `unbiased`, Bessel-corrected.
//! \throws InputError when `unbiased` and the mask selects no element or exactly one (verl raises ValueError).
[[nodiscard]] inline at::Tensor masked_var(const at::Tensor& values, const at::Tensor& mask, bool unbiased = true) {
  const auto mean = masked_mean(values, mask);                          // ()
  const auto centered = values.sub(mean);                                // (...)
  auto variance = masked_mean(centered.pow(2), mask);                   // ()
  if (unbiased) {
    const auto mask_sum = mask.sum();                                   // ()
    const double count = mask_sum.item<double>();
    detail::check<InputError>(count != 0.0, "verl::functional::masked_var: the mask selects no element; at least "
                              "one element of the mask must be 1");
    detail::check<InputError>(count != 1.0, "verl::functional::masked_var: the mask selects exactly one element, "
                              "so the unbiased variance divides by zero; use a larger (mini-)batch");
    variance = variance.mul(mask_sum.div(mask_sum.sub(1)));
  }
  return variance;
}

//! (values - mean) / sqrt(var + 1e-8) with the masked mean and unbiased variance; with `shift_mean` false the
//! mean is added back. \throws InputError as masked_var.
[[nodiscard]] inline at::Tensor masked_whiten(const at::Tensor& values, const at::Tensor& mask, bool shift_mean = true) {
  const auto mean = masked_mean(values, mask);                                        // ()
  const auto var = masked_var(values, mask);                                          // ()
  auto whitened = values.sub(mean).mul(at::_ops::rsqrt::call(var.add(1e-8)));              // (...)
  if (!shift_mean) whitened.add_(mean);  // in place, as verl's `+=`: keeps whitened's dtype
  return whitened;
}

}  // namespace verl::functional
