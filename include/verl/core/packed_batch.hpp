#pragma once
//! \file
//! verl::PackedBatch<Fields...>: fields of a verl::Batch in the packed (remove-padding) layout, and the
//! batch-level unpad/pad that move between the two layouts.
//!
//!     auto packed = verl::unpad<input_ids, position_ids>(batch);      // uses batch's attention_mask
//!     model.forward_packed(packed.get<input_ids>(),                   // (total,)
//!                          packed.layout().cu_seqlens, packed.layout().max_seqlen);
//!     auto padded = verl::pad(packed);                                // Batch<input_ids, position_ids>
//!
//! Only fields over the full padded sequence (B,T,...) of the attention mask are packed; per-response
//! fields (B,R) stay in their own layout, as in verl's remove-padding path, which unpads input_ids and
//! position_ids only.

#include "verl/core/batch.hpp"
#include "verl/core/fields.hpp"
#include "verl/core/packing.hpp"

#include <array>
#include <utility>

namespace verl {

//! Fields `Fields` in the packed layout: each tensor is (total_tokens, ...), the rows of `layout()`.
template <FieldTag... Fields>
class PackedBatch {
 public:
  template <class F>
  static constexpr bool has = detail::contains_field<F, Fields...>;

  PackedBatch(PackedLayout layout, std::array<at::Tensor, sizeof...(Fields)> tensors)
      : layout_(std::move(layout)), tensors_(std::move(tensors)) {}

  //! The layout: kept positions, cu_seqlens (B+1,) int32, max_seqlen.
  [[nodiscard]] const PackedLayout& layout() const { return layout_; }
  //! The number of packed tokens.
  [[nodiscard]] std::int64_t total_tokens() const { return layout_.total_tokens(); }

  //! The packed tensor of field `F`, (total_tokens, ...).
  template <class F>
  [[nodiscard]] const at::Tensor& get() const {
    if constexpr (has<F>) {
      return tensors_[detail::field_index<F, Fields...>()];
    } else {
      static_assert(detail::always_false<F>, "verl::PackedBatch::get<F>: F was not packed; list it in unpad<...>");
    }
  }

 private:
  PackedLayout layout_;
  std::array<at::Tensor, sizeof...(Fields)> tensors_;
};

//! Packs fields `Packed` of `batch` with the layout of its attention_mask (flash-attn unpad_input).
//! \throws ShapeError when a packed field's leading (B,T) differs from the attention mask's.
template <FieldTag... Packed, class... Fields>
[[nodiscard]] PackedBatch<Packed...> unpad(const Batch<Fields...>& batch) {
  static_assert(Batch<Fields...>::template has<fields::attention_mask>,
                "verl::unpad<Fs...>(batch): the batch has no attention_mask to take the packed layout from");
  static_assert(sizeof...(Packed) > 0, "verl::unpad<Fs...>(batch): name the fields to pack, e.g. unpad<input_ids>");
  static_assert(((Packed::layout == FieldLayout::token) && ...),
                "verl::unpad<Fs...>(batch): only per-token fields (FieldLayout::token) can be packed");
  auto layout = make_packed_layout(batch.template get<fields::attention_mask>());
  std::array<at::Tensor, sizeof...(Packed)> tensors{unpad(batch.template get<Packed>(), layout)...};
  return PackedBatch<Packed...>(std::move(layout), std::move(tensors));
}

//! The padded batch of a packed one (flash-attn pad_input); positions outside the layout are
//! `padding_value`. The result has no per-item data (select it from the source batch if needed).
template <FieldTag... Packed>
[[nodiscard]] Batch<Packed...> pad(const PackedBatch<Packed...>& packed, const at::Scalar& padding_value = 0) {
  return Batch<Packed...>(pad(packed.template get<Packed>(), packed.layout(), padding_value)...);
}

}  // namespace verl
