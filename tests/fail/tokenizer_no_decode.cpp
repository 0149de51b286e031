// expect: verl::Tokenizer: the tokenizer type has no const member `decode\(const std::vector<std::int64_t>&\)`
// A tokenizer that can encode but not decode.
#include "verl/concepts/tokenizer.hpp"

namespace {

struct Tokenizer {
  std::vector<std::int64_t> encode(std::string_view text) const;
#if VERL_FAIL_TWIN
  std::string decode(const std::vector<std::int64_t>& ids) const;
#endif
  std::int64_t eos_token_id() const;
  std::int64_t pad_token_id() const;
  std::int64_t vocab_size() const;
};

}  // namespace

static_assert(verl::check_tokenizer<Tokenizer>());
