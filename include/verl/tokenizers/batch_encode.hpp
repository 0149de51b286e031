#pragma once
//! \file
//! Batch encoding to (B,L) tensors with padding and truncation on either side, as transformers'
//! `tokenizer(texts, padding="longest", truncation=..., max_length=..., add_special_tokens=False)` with its
//! `padding_side` / `truncation_side`; prompts for generation (left padding, verl's position ids); batch decode.

#include "verl/concepts/tokenizer.hpp"
#include "verl/core/errors.hpp"
#include "verl/core/model_io.hpp"

#include <ATen/core/Tensor.h>
#include <ATen/ops/clamp_min.h>
#include <ATen/ops/cumsum.h>
#include <ATen/ops/from_blob.h>

#include <algorithm>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace verl {

//! Which end of a sequence padding goes to, or truncation cuts from.
enum class Side { left, right };

//! Options of batch_encode.
struct BatchEncodeOptions {
  Side padding_side = Side::right;                //!< transformers' default; prompts for generation use left
  Side truncation_side = Side::right;             //!< which end loses tokens beyond max_length
  std::optional<std::int64_t> max_length;         //!< truncate every sequence to at most this many tokens (>= 1)
  std::optional<std::int64_t> pad_to_multiple_of; //!< round L up to a multiple of this (>= 1)
};

//! Token ids and attention mask of a padded batch.
struct EncodedBatch {
  at::Tensor input_ids;       // (B,L) int64, pad_token_id on padding
  at::Tensor attention_mask;  // (B,L) int64, 0 on padding
};

namespace detail {
inline EncodedBatch pad_rows(const std::vector<std::vector<std::int64_t>>& rows, std::int64_t pad_id,
                             const BatchEncodeOptions& options) {
  std::size_t length = 0;
  for (const auto& r : rows) length = std::max(length, r.size());
  if (options.pad_to_multiple_of) {
    const auto m = static_cast<std::size_t>(*options.pad_to_multiple_of);
    length = (length + m - 1) / m * m;
  }
  const auto b = static_cast<std::int64_t>(rows.size()), l = static_cast<std::int64_t>(length);
  std::vector<std::int64_t> ids(rows.size() * length, pad_id), mask(rows.size() * length, 0);
  for (std::size_t i = 0; i < rows.size(); ++i) {
    const std::size_t offset = options.padding_side == Side::left ? length - rows[i].size() : 0;
    std::copy(rows[i].begin(), rows[i].end(), ids.begin() + static_cast<std::ptrdiff_t>(i * length + offset));
    std::fill_n(mask.begin() + static_cast<std::ptrdiff_t>(i * length + offset), rows[i].size(), 1);
  }
  const auto opts = at::TensorOptions().dtype(at::kLong);
  return {at::from_blob(ids.data(), {b, l}, opts).clone(),    // (B,L)
          at::from_blob(mask.data(), {b, l}, opts).clone()};  // (B,L)
}
}  // namespace detail

//! Encodes `texts` with `tokenizer` (no special tokens added), truncates and pads them to one length L (the
//! longest, or its multiple) with the tokenizer's pad id. B = texts.size(); L may be 0.
template <Tokenizer T>
[[nodiscard]] EncodedBatch batch_encode(const T& tokenizer, std::span<const std::string> texts,
                                        const BatchEncodeOptions& options = {}) {
  detail::check<ConfigError>(!options.max_length || *options.max_length >= 1,
                             "verl::batch_encode: max_length = ", options.max_length.value_or(0), "; expected >= 1");
  detail::check<ConfigError>(!options.pad_to_multiple_of || *options.pad_to_multiple_of >= 1,
                             "verl::batch_encode: pad_to_multiple_of = ", options.pad_to_multiple_of.value_or(0),
                             "; expected >= 1");
  std::vector<std::vector<std::int64_t>> rows;
  rows.reserve(texts.size());
  for (const auto& text : texts) {
    std::vector<std::int64_t> ids = tokenizer.encode(text);
    if (options.max_length && static_cast<std::int64_t>(ids.size()) > *options.max_length) {
      const auto keep = static_cast<std::ptrdiff_t>(*options.max_length);
      if (options.truncation_side == Side::right) ids.resize(static_cast<std::size_t>(keep));
      else ids.erase(ids.begin(), ids.end() - keep);
    }
    rows.push_back(std::move(ids));
  }
  return detail::pad_rows(rows, static_cast<std::int64_t>(tokenizer.pad_token_id()), options);
}

//! verl's compute_position_id_with_mask: clip(cumsum(mask, -1) - 1, min=0).
[[nodiscard]] inline at::Tensor position_ids_from_mask(const at::Tensor& attention_mask) {
  return at::clamp_min(at::cumsum(attention_mask, -1, at::kLong).sub_(1), 0);  // (B,L)
}

//! Left-padded prompts for generation: input_ids, attention_mask and verl's position ids. The padding side of
//! `options` is ignored (prompts are always left-padded, so every response starts at column P).
template <Tokenizer T>
[[nodiscard]] Prompts encode_prompts(const T& tokenizer, std::span<const std::string> texts,
                                     BatchEncodeOptions options = {.truncation_side = Side::left}) {
  options.padding_side = Side::left;
  auto batch = batch_encode(tokenizer, texts, options);
  auto position_ids = position_ids_from_mask(batch.attention_mask);  // (B,P)
  return {std::move(batch.input_ids), std::move(batch.attention_mask), std::move(position_ids)};
}

//! Decodes each row of `input_ids` (B,L), skipping special tokens (so padding made of pad/eos tokens
//! disappears); with `attention_mask` (B,L), the positions where it is 0 are dropped first.
template <Tokenizer T>
[[nodiscard]] std::vector<std::string> batch_decode(const T& tokenizer, const at::Tensor& input_ids,
                                                    const std::optional<at::Tensor>& attention_mask = std::nullopt) {
  detail::check<ShapeError>(input_ids.dim() == 2, "verl::batch_decode: input_ids has ", input_ids.dim(),
                            " dimensions; expected (B,L)");
  const auto ids = input_ids.to(at::kCPU, at::kLong).contiguous();  // (B,L)
  at::Tensor mask;
  if (attention_mask) {
    detail::check<ShapeError>(attention_mask->sizes() == input_ids.sizes(), "verl::batch_decode: attention_mask has shape ",
                              attention_mask->sizes(), ", expected input_ids' shape ", input_ids.sizes());
    mask = attention_mask->to(at::kCPU, at::kLong).contiguous();  // (B,L)
  }
  const auto b = ids.size(0), l = ids.size(1);
  const auto* p = ids.data_ptr<std::int64_t>();
  const auto* m = attention_mask ? mask.data_ptr<std::int64_t>() : nullptr;
  std::vector<std::string> out;
  out.reserve(static_cast<std::size_t>(b));
  std::vector<std::int64_t> row;
  for (std::int64_t i = 0; i < b; ++i) {
    row.clear();
    for (std::int64_t j = 0; j < l; ++j)
      if (m == nullptr || m[i * l + j] != 0) row.push_back(p[i * l + j]);
    out.push_back(tokenizer.decode(row));
  }
  return out;
}

}  // namespace verl
