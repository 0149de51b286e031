#pragma once
//! \file
//! Conversion between the padded (B,T,...) layout and the packed (total_tokens,...) layout of variable-length
//! sequences ("remove padding" / sequence packing), as flash-attention's `flash_attn.bert_padding`
//! (`unpad_input`, `pad_input`, `index_first_axis`, `index_put_first_axis`) and verl's use of them
//! (`use_remove_padding`: unpad input_ids and position_ids, run the model on one packed row with `cu_seqlens`,
//! pad the log-probs back).
//!
//!     auto layout = verl::make_packed_layout(attention_mask);         // mask (B,T)
//!     auto ids    = verl::unpad(input_ids, layout);                   // (B,T) -> (total,)
//!     auto pos    = verl::packed_position_ids(layout);                // (total,) int64
//!     auto logp   = model(ids, pos, layout.cu_seqlens, layout.max_seqlen);   // (total,)
//!     auto padded = verl::pad(logp, layout);                          // (total,) -> (B,T), 0 on padding
//!
//! unpad_out() and pad_out() write into preallocated tensors instead (on the CPU a fresh multi-megabyte output
//! costs more in first-touch page faults than the gather or scatter itself).
//!
//! Every function works for any dtype and device (CPU or CUDA): they are a handful of whole-tensor ATen
//! calls (nonzero, sum, cumsum, index_select, index_copy_) with no per-row loop. make_packed_layout reads two
//! scalars back to the host (the number of kept tokens, inside nonzero, and max_seqlen), as flash-attn does.

#include <ATen/core/Tensor.h>
#include <ATen/ops/arange.h>
#include <ATen/ops/cumsum.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/full.h>
#include <ATen/ops/index_select.h>
#include <ATen/ops/nonzero.h>
#include <ATen/ops/repeat_interleave.h>
#include <ATen/ops/zeros.h>

#include <cstdint>
#include <initializer_list>
#include <vector>

#include "verl/core/errors.hpp"

namespace verl {

//! Where the kept tokens of a padded (B,T) batch lie, and how the packed rows are delimited.
//!
//! Produced by make_packed_layout() from an attention mask; consumed by unpad(), pad() and
//! packed_position_ids(). The tensors live on the mask's device. Token `j` of the packed layout is token
//! `indices[j] % T` of row `indices[j] / T`; row `b` occupies the packed range [cu_seqlens[b], cu_seqlens[b+1]).
struct PackedLayout {
  at::Tensor indices;      //!< (total,) int64: flat positions in B*T of the kept tokens, ascending
  at::Tensor cu_seqlens;   //!< (B+1,) int32: 0, then the cumulative sum of the per-row kept-token counts
  int64_t max_seqlen = 0;  //!< the largest per-row kept-token count (0 when every row is empty)
  int64_t batch_size = 0;  //!< B of the mask the layout was made from
  int64_t seq_len = 0;     //!< T of the mask the layout was made from

  //! The number of kept tokens (the leading dimension of packed tensors).
  [[nodiscard]] int64_t total_tokens() const { return indices.defined() ? indices.size(0) : 0; }
};

namespace detail {

//! Throws ShapeError unless `layout` is one make_packed_layout() could have produced.
inline void check_packed_layout(const char* fn, const PackedLayout& layout) {
  check<ShapeError>(layout.indices.defined() && layout.indices.dim() == 1 &&
                        layout.indices.scalar_type() == at::kLong,
                    fn, ": argument `layout` has no valid `indices` (expected a (total,) int64 tensor from "
                    "verl::make_packed_layout)");
  check<ShapeError>(layout.batch_size >= 0 && layout.seq_len >= 0 &&
                        layout.total_tokens() <= layout.batch_size * layout.seq_len,
                    fn, ": argument `layout` is inconsistent: ", layout.total_tokens(), " kept tokens for B=",
                    layout.batch_size, ", T=", layout.seq_len, " (expected total_tokens <= B*T)");
}

//! Throws ShapeError unless `t` lives on the device of `layout.indices`.
inline void check_same_device(const char* fn, const char* arg, const at::Tensor& t, const PackedLayout& layout) {
  check<ShapeError>(t.device() == layout.indices.device(), fn, ": argument `", arg, "` is on ", t.device(),
                    " but the layout is on ", layout.indices.device(),
                    " (expected the same device; move one of them explicitly)");
}

//! The shape `head` ++ `t.sizes()[drop:]`.
[[nodiscard]] inline std::vector<int64_t> shape_with_head(std::initializer_list<int64_t> head, const at::Tensor& t,
                                                          int64_t drop) {
  std::vector<int64_t> shape(head);
  const auto sizes = t.sizes();
  shape.insert(shape.end(), sizes.begin() + drop, sizes.end());
  return shape;
}

//! Throws ShapeError unless `padded` is (B,T,...) for the layout's (B,T) and on its device.
inline void check_unpad_args(const char* fn, const at::Tensor& padded, const PackedLayout& layout) {
  check_packed_layout(fn, layout);
  check<ShapeError>(padded.defined() && padded.dim() >= 2, fn, ": argument `padded` has shape ",
                    padded.defined() ? padded.sizes() : at::IntArrayRef{}, ", expected (B,T,...) with (B,T) = (",
                    layout.batch_size, ",", layout.seq_len, ")");
  check<ShapeError>(padded.size(0) == layout.batch_size && padded.size(1) == layout.seq_len, fn,
                    ": argument `padded` has shape ", padded.sizes(), ", expected (B,T,...) with (B,T) = (",
                    layout.batch_size, ",", layout.seq_len, ") from the layout");
  check_same_device(fn, "padded", padded, layout);
}

//! Throws ShapeError unless `packed` is (total,...) for the layout and on its device.
inline void check_pad_args(const char* fn, const at::Tensor& packed, const PackedLayout& layout) {
  check_packed_layout(fn, layout);
  check<ShapeError>(packed.defined() && packed.dim() >= 1, fn, ": argument `packed` has shape ",
                    packed.defined() ? packed.sizes() : at::IntArrayRef{}, ", expected (total,...) with total = ",
                    layout.total_tokens(), " from the layout");
  check<ShapeError>(packed.size(0) == layout.total_tokens(), fn, ": argument `packed` has shape ", packed.sizes(),
                    ", expected leading dimension ", layout.total_tokens(), " (layout.total_tokens())");
  check_same_device(fn, "packed", packed, layout);
}

}  // namespace detail

//! The packed layout of the tokens that `attention_mask` keeps (flash-attn `unpad_input` semantics).
//!
//! \param attention_mask (B,T) bool or integer tensor, on any device; nonzero entries are kept tokens. Left
//!        padding, right padding, interior gaps and fully masked rows are all allowed.
//! \returns indices = nonzero(mask.flatten()), cu_seqlens = pad(cumsum(mask.sum(-1)), (1,0)) as int32,
//!          max_seqlen = max(mask.sum(-1)). Where flash-attn sums the mask values, this counts nonzero entries;
//!          the two agree on 0/1 masks and this stays consistent with `indices` on any other values.
//! \throws ShapeError when the mask is not 2-D or is floating point (an additive 0/-inf mask means the
//!         opposite; convert it with `mask == 0` first).
[[nodiscard]] inline PackedLayout make_packed_layout(const at::Tensor& attention_mask) {
  constexpr const char* fn = "verl::make_packed_layout";
  detail::check<ShapeError>(attention_mask.defined(), fn, ": argument `attention_mask` is undefined (expected a (B,T) "
                                                          "bool or integer tensor)");
  detail::check<ShapeError>(attention_mask.dim() == 2, fn, ": argument `attention_mask` has shape ",
                            attention_mask.sizes(), " (", attention_mask.dim(), "-D), expected (B,T)");
  detail::check<ShapeError>(!at::isFloatingType(attention_mask.scalar_type()) &&
                                !at::isComplexType(attention_mask.scalar_type()),
                            fn, ": argument `attention_mask` has dtype ", attention_mask.scalar_type(),
                            ", expected bool or an integer type (1 = token, 0 = padding)");
  PackedLayout layout;
  layout.batch_size = attention_mask.size(0);
  layout.seq_len = attention_mask.size(1);
  const auto keep = attention_mask.scalar_type() == at::kBool ? attention_mask : attention_mask.ne(0);  // (B,T) bool
  layout.indices = at::nonzero(keep.reshape({-1})).view({-1});                                 // (total,) int64
  const auto seqlens = keep.sum(-1, /*keepdim=*/false, at::kInt);                              // (B,) int32
  layout.cu_seqlens = at::zeros({layout.batch_size + 1}, seqlens.options());                   // (B+1,) int32
  if (layout.batch_size > 0) {
    auto tail = layout.cu_seqlens.narrow(0, 1, layout.batch_size);                             // (B,) int32 view
    at::cumsum_out(tail, seqlens, 0, at::kInt);                                                // (B,) int32
    layout.max_seqlen = seqlens.max().item<int64_t>();
  }
  return layout;
}

//! Gathers the kept tokens of a padded tensor into the packed layout (flash-attn `index_first_axis`).
//!
//! \param padded (B,T,...) tensor of any dtype, on the layout's device; B and T must match the layout.
//! \returns (total,...) tensor: row-major order of the kept (b,t) positions, trailing dims unchanged.
//! \throws ShapeError on a rank below 2, a (B,T) mismatch or a device mismatch.
[[nodiscard]] inline at::Tensor unpad(const at::Tensor& padded, const PackedLayout& layout) {
  detail::check_unpad_args("verl::unpad", padded, layout);
  const auto flat = padded.reshape(detail::shape_with_head({layout.batch_size * layout.seq_len}, padded, 2));
  return flat.index_select(0, layout.indices);  // (total,...)
}

//! unpad() into a preallocated `out` of shape (total,...) with padded's dtype and device; returns `out`.
//! On the CPU this skips the first-touch page faults of a fresh output, which dominate large unpads.
inline at::Tensor& unpad_out(at::Tensor& out, const at::Tensor& padded, const PackedLayout& layout) {
  constexpr const char* fn = "verl::unpad_out";
  detail::check_unpad_args(fn, padded, layout);
  const auto expected = detail::shape_with_head({layout.total_tokens()}, padded, 2);
  detail::check<ShapeError>(out.defined() && out.sizes() == at::IntArrayRef(expected) &&
                                out.scalar_type() == padded.scalar_type() && out.device() == padded.device(),
                            fn, ": argument `out` has shape ", out.defined() ? out.sizes() : at::IntArrayRef{},
                            out.defined() ? " and dtype " : "", out.defined() ? c10::toString(out.scalar_type()) : "",
                            ", expected shape ", at::IntArrayRef(expected), ", dtype ", padded.scalar_type(),
                            " and device ", padded.device(), " (those of `padded`)");
  const auto flat = padded.reshape(detail::shape_with_head({layout.batch_size * layout.seq_len}, padded, 2));
  at::index_select_out(out, flat, 0, layout.indices);  // (total,...)
  return out;
}

//! Scatters a packed tensor back into the padded layout (flash-attn `pad_input` / `index_put_first_axis`).
//!
//! \param packed (total,...) tensor of any dtype, on the layout's device, total = layout.total_tokens().
//! \param padding_value the value of the positions the layout does not keep (default 0, as flash-attn).
//! \returns a new contiguous (B,T,...) tensor of packed's dtype and device.
//! \throws ShapeError on a rank below 1, a leading-dimension mismatch or a device mismatch.
[[nodiscard]] inline at::Tensor pad(const at::Tensor& packed, const PackedLayout& layout,
                                    const at::Scalar& padding_value = 0) {
  detail::check_pad_args("verl::pad", packed, layout);
  auto out = at::full(detail::shape_with_head({layout.batch_size * layout.seq_len}, packed, 1), padding_value,
                      packed.options());  // (B*T,...)
  out.index_copy_(0, layout.indices, packed);  // (B*T,...)
  return out.view(detail::shape_with_head({layout.batch_size, layout.seq_len}, packed, 1));  // (B,T,...)
}

//! pad() into a preallocated contiguous `out` of shape (B,T,...) with packed's dtype and device; returns `out`.
//! On the CPU this skips the first-touch page faults of a fresh output, which dominate large pads.
inline at::Tensor& pad_out(at::Tensor& out, const at::Tensor& packed, const PackedLayout& layout,
                           const at::Scalar& padding_value = 0) {
  constexpr const char* fn = "verl::pad_out";
  detail::check_pad_args(fn, packed, layout);
  const auto expected = detail::shape_with_head({layout.batch_size, layout.seq_len}, packed, 1);
  detail::check<ShapeError>(out.defined() && out.sizes() == at::IntArrayRef(expected) && out.is_contiguous() &&
                                out.scalar_type() == packed.scalar_type() && out.device() == packed.device(),
                            fn, ": argument `out` has shape ", out.defined() ? out.sizes() : at::IntArrayRef{},
                            out.defined() ? " and dtype " : "", out.defined() ? c10::toString(out.scalar_type()) : "",
                            ", expected a contiguous tensor of shape ", at::IntArrayRef(expected), ", dtype ",
                            packed.scalar_type(), " and device ", packed.device(), " (those of `packed`)");
  out.fill_(padding_value);                                                                           // (B,T,...)
  out.view(detail::shape_with_head({layout.batch_size * layout.seq_len}, packed, 1))
      .index_copy_(0, layout.indices, packed);                                                        // (B*T,...)
  return out;
}

//! The position of each packed token within its own sequence: 0,1,...,len_b-1 for every row b, concatenated
//! (what verl feeds the model as position_ids under remove-padding: unpad(cumsum(mask)-1) for 0/1 masks).
//!
//! \returns (total,) int64 tensor on the layout's device.
[[nodiscard]] inline at::Tensor packed_position_ids(const PackedLayout& layout) {
  detail::check_packed_layout("verl::packed_position_ids", layout);
  const auto total = layout.total_tokens();
  const auto opts = layout.indices.options();                                          // int64, layout device
  if (total == 0) return at::empty({0}, opts);                                         // (0,)
  const auto cu = layout.cu_seqlens.to(at::kLong);                                     // (B+1,) int64
  const auto starts = cu.narrow(0, 0, layout.batch_size);                              // (B,) int64
  const auto lengths = cu.narrow(0, 1, layout.batch_size).sub(starts);                 // (B,) int64
  const auto row_start = at::repeat_interleave(starts, lengths, /*dim=*/0, total);     // (total,) int64
  return at::arange(total, opts).sub_(row_start);                                      // (total,) int64
}

}  // namespace verl
