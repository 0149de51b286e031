// Static tests of verl::Tokenizer and its pieces (include/verl/concepts/tokenizer.hpp).
#include "verl/concepts/tokenizer.hpp"

#include <span>

namespace {

struct GoodTokenizer {
  std::vector<std::int64_t> encode(std::string_view text) const;
  std::string decode(const std::vector<std::int64_t>& ids) const;
  std::int64_t eos_token_id() const;
  std::int64_t pad_token_id() const;
  std::int64_t vocab_size() const;
};
struct SpanTokenizer {  // decode over a span, encode from std::string, int ids
  std::vector<std::int64_t> encode(const std::string& text) const;
  std::string decode(std::span<const std::int64_t> ids) const;
  int eos_token_id() const;
  int pad_token_id() const;
  int vocab_size() const;
};
struct EncodeTakesCString {  // text arrives as a std::string, which does not convert to const char*
  std::vector<std::int64_t> encode(const char* text) const;
  std::string decode(const std::vector<std::int64_t>&) const;
  std::int64_t eos_token_id() const;
  std::int64_t pad_token_id() const;
  std::int64_t vocab_size() const;
};
struct NoDecode {
  std::vector<std::int64_t> encode(std::string_view) const;
  std::int64_t eos_token_id() const;
  std::int64_t pad_token_id() const;
  std::int64_t vocab_size() const;
};
struct MutableEncode {  // encode is not const
  std::vector<std::int64_t> encode(std::string_view);
  std::string decode(const std::vector<std::int64_t>&) const;
  std::int64_t eos_token_id() const;
  std::int64_t pad_token_id() const;
  std::int64_t vocab_size() const;
};
struct Int32Ids {  // a vector<int32_t> does not convert to vector<int64_t>
  std::vector<std::int32_t> encode(std::string_view) const;
  std::string decode(const std::vector<std::int64_t>&) const;
  std::int64_t eos_token_id() const;
  std::int64_t pad_token_id() const;
  std::int64_t vocab_size() const;
};
struct NoPad {
  std::vector<std::int64_t> encode(std::string_view) const;
  std::string decode(const std::vector<std::int64_t>&) const;
  std::int64_t eos_token_id() const;
  std::int64_t vocab_size() const;
};
struct StringEos {
  std::vector<std::int64_t> encode(std::string_view) const;
  std::string decode(const std::vector<std::int64_t>&) const;
  std::string eos_token_id() const;
  std::int64_t pad_token_id() const;
  std::int64_t vocab_size() const;
};

}  // namespace

static_assert(verl::EncodesText<GoodTokenizer>);
static_assert(verl::EncodesText<SpanTokenizer>);
static_assert(!verl::EncodesText<MutableEncode>);
static_assert(!verl::EncodesText<EncodeTakesCString>);
static_assert(!verl::EncodesText<Int32Ids>);

static_assert(verl::DecodesTokens<GoodTokenizer>);
static_assert(verl::DecodesTokens<SpanTokenizer>);
static_assert(!verl::DecodesTokens<NoDecode>);

static_assert(verl::HasSpecialTokens<GoodTokenizer>);
static_assert(verl::HasSpecialTokens<SpanTokenizer>);
static_assert(!verl::HasSpecialTokens<NoPad>);
static_assert(!verl::HasSpecialTokens<StringEos>);

static_assert(verl::Tokenizer<GoodTokenizer>);
static_assert(verl::Tokenizer<const GoodTokenizer>);
static_assert(verl::Tokenizer<SpanTokenizer>);
static_assert(verl::Tokenizer<const SpanTokenizer>);
static_assert(!verl::Tokenizer<NoDecode>);
static_assert(!verl::Tokenizer<EncodeTakesCString>);
static_assert(!verl::Tokenizer<MutableEncode>);
static_assert(!verl::Tokenizer<Int32Ids>);
static_assert(!verl::Tokenizer<NoPad>);
static_assert(!verl::Tokenizer<StringEos>);
static_assert(!verl::Tokenizer<std::string>);

static_assert(verl::check_tokenizer<GoodTokenizer>());
static_assert(verl::check_tokenizer<SpanTokenizer>());
