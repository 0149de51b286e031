#pragma once
//! \file
//! verl::Tokenizer: text <-> token ids, and the special tokens the dataflow pads and stops with. The
//! chat template is not part of the contract (prompts arrive with it applied).

#include <concepts>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace verl {

namespace detail {
template <class T>
concept has_encode_member = requires(const T& t, const std::string& text) { t.encode(text); };
template <class T>
concept has_decode_member = requires(const T& t, const std::vector<std::int64_t>& ids) { t.decode(ids); };
template <class T>
concept has_eos_member = requires(const T& t) { t.eos_token_id(); };
template <class T>
concept has_pad_member = requires(const T& t) { t.pad_token_id(); };
template <class T>
concept has_vocab_size_member = requires(const T& t) { t.vocab_size(); };
}  // namespace detail

//! Encodes text to token ids.
//!
//! Satisfied when, for `const T& t`, `const std::string& text`:
//!   1. `t.encode(text)` is valid and returns a type convertible to std::vector<std::int64_t> (a parameter
//!      of type `std::string_view` or `const std::string&` both accept the call).
//!
//! Laws: every id is in [0, vocab_size()); no special tokens are added (no BOS/EOS): the dataflow adds
//! them; encoding is deterministic. See also: verl::Tokenizer.
template <class T>
concept EncodesText = requires(const T& t, const std::string& text) {
  { t.encode(text) } -> std::convertible_to<std::vector<std::int64_t>>;
};

//! Decodes token ids to text.
//!
//! Satisfied when, for `const T& t`, `const std::vector<std::int64_t>& ids`:
//!   1. `t.decode(ids)` is valid and returns a type convertible to std::string (a parameter of type
//!      `std::span<const std::int64_t>` or `const std::vector<std::int64_t>&` both accept the call).
//!
//! Laws: special tokens (eos, pad) are skipped, as verl's reward managers decode with
//! skip_special_tokens=True; decode(encode(s)) == s for text without special tokens (for a lossless
//! tokenizer such as byte-level BPE). See also: verl::Tokenizer.
template <class T>
concept DecodesTokens = requires(const T& t, const std::vector<std::int64_t>& ids) {
  { t.decode(ids) } -> std::convertible_to<std::string>;
};

//! Knows its vocabulary size and the special tokens the dataflow needs.
//!
//! Satisfied when, for `const T& t`:
//!   1. `t.eos_token_id()`, 2. `t.pad_token_id()` and 3. `t.vocab_size()` are valid and return types
//!   convertible to std::int64_t.
//!
//! Laws: 0 <= eos_token_id(), pad_token_id() < vocab_size(); the values never change. pad may equal eos
//! (as for many HF models without a pad token). See also: verl::Tokenizer.
template <class T>
concept HasSpecialTokens = requires(const T& t) {
  { t.eos_token_id() } -> std::convertible_to<std::int64_t>;
  { t.pad_token_id() } -> std::convertible_to<std::int64_t>;
  { t.vocab_size() } -> std::convertible_to<std::int64_t>;
};

//! A tokenizer: encodes prompts, decodes responses for rule-based rewards and logs, and names the eos and
//! pad tokens. All members are const (a tokenizer is shared by data loading and reward threads).
//!
//! Satisfied when:
//!   1. EncodesText<T>: `t.encode(const std::string&)` -> std::vector<std::int64_t>;
//!   2. DecodesTokens<T>: `t.decode(const std::vector<std::int64_t>&)` -> std::string;
//!   3. HasSpecialTokens<T>: `t.eos_token_id()`, `t.pad_token_id()`, `t.vocab_size()` -> std::int64_t.
//!
//! Laws: those of the pieces; const members are safe to call concurrently.
//!
//! Models in this library: verl::HFTokenizer (verl/tokenizers/hf_tokenizer.hpp), verl::SentencePieceTokenizer
//! (verl/tokenizers/sentencepiece_tokenizer.hpp). See also: verl::check_tokenizer, docs/concepts.md#tokenizer.
template <class T>
concept Tokenizer = EncodesText<T> && DecodesTokens<T> && HasSpecialTokens<T>;

//! Checks Tokenizer<T> piece by piece, one static_assert per missing or mistyped member. Returns true.
template <class T>
consteval bool check_tokenizer() {
  static_assert(detail::has_encode_member<T>,
                "verl::Tokenizer: the tokenizer type has no const member `encode(std::string_view)` (or "
                "`encode(const std::string&)`); add one returning the token ids as std::vector<std::int64_t>");
  static_assert(!detail::has_encode_member<T> || EncodesText<T>,
                "verl::Tokenizer: the tokenizer's `encode(text)` returns a type not convertible to "
                "std::vector<std::int64_t>; return the token ids as std::vector<std::int64_t>");
  static_assert(detail::has_decode_member<T>,
                "verl::Tokenizer: the tokenizer type has no const member `decode(const "
                "std::vector<std::int64_t>&)`; add one (taking the ids by const reference or "
                "std::span<const std::int64_t>) returning std::string");
  static_assert(!detail::has_decode_member<T> || DecodesTokens<T>,
                "verl::Tokenizer: the tokenizer's `decode(ids)` returns a type not convertible to std::string; "
                "return the decoded text as std::string");
  static_assert(detail::has_eos_member<T>,
                "verl::Tokenizer: the tokenizer type has no const member `eos_token_id()`; add one returning "
                "the end-of-sequence id as std::int64_t");
  static_assert(detail::has_pad_member<T>,
                "verl::Tokenizer: the tokenizer type has no const member `pad_token_id()`; add one returning "
                "the padding id as std::int64_t (the eos id when the model has no pad token)");
  static_assert(detail::has_vocab_size_member<T>,
                "verl::Tokenizer: the tokenizer type has no const member `vocab_size()`; add one returning the "
                "vocabulary size as std::int64_t");
  static_assert(!(detail::has_eos_member<T> && detail::has_pad_member<T> && detail::has_vocab_size_member<T>) ||
                    HasSpecialTokens<T>,
                "verl::Tokenizer: `eos_token_id()`, `pad_token_id()` or `vocab_size()` returns a type not "
                "convertible to std::int64_t; return the ids and the size as std::int64_t");
  return true;  // reached only when every piece holds: the concept is their conjunction
}

}  // namespace verl
