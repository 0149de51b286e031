#pragma once
//! \file
//! A PCRE2 regular expression compiled with UTF and UCP, so that \p{L}, \p{N}, \s and lookaheads such as
//! `\s+(?!\S)` mean what they mean in the Oniguruma engine that Hugging Face tokenizers runs
//! pre-tokenizer patterns with. Iteration follows Oniguruma's find_iter: leftmost matches, left to right,
//! and after an empty match the search resumes one character further on.

#include "verl/core/errors.hpp"

#ifndef PCRE2_CODE_UNIT_WIDTH
#define PCRE2_CODE_UNIT_WIDTH 8
#endif
#include <pcre2.h>

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace verl::detail {

//! One compiled pattern; immutable, shared by copies, safe to match from several threads at once (every
//! match allocates its own match data).
class Pcre2Regex {
 public:
  //! Compiles `pattern`; throws verl::ConfigError naming `where` (e.g. the JSON path) and PCRE2's message.
  Pcre2Regex(std::string_view pattern, std::string_view where) {
    int error = 0;
    PCRE2_SIZE offset = 0;
    pcre2_code_8* code = pcre2_compile_8(reinterpret_cast<PCRE2_SPTR8>(pattern.data()), pattern.size(),
                                         PCRE2_UTF | PCRE2_UCP, &error, &offset, nullptr);
    if (code == nullptr) {
      PCRE2_UCHAR8 message[256];
      pcre2_get_error_message_8(error, message, sizeof message);
      throw ConfigError(concat_message(where, ": the regex `", pattern, "` does not compile (PCRE2: ",
                                       reinterpret_cast<const char*>(message), " at offset ", offset,
                                       "); expected a pattern Oniguruma and PCRE2 both accept"));
    }
    // JIT makes matching several times faster; when unavailable the interpreter runs the same pattern.
    pcre2_jit_compile_8(code, PCRE2_JIT_COMPLETE);
    code_ = std::shared_ptr<pcre2_code_8>(code, pcre2_code_free_8);
  }

  //! Every match in `text` (valid UTF-8) as [begin, end) byte ranges, empty matches included.
  [[nodiscard]] std::vector<std::pair<std::size_t, std::size_t>> find_all(std::string_view text) const {
    std::vector<std::pair<std::size_t, std::size_t>> out;
    const std::unique_ptr<pcre2_match_data_8, decltype(&pcre2_match_data_free_8)> data(
        pcre2_match_data_create_from_pattern_8(code_.get(), nullptr), pcre2_match_data_free_8);
    check<Error>(data != nullptr, "verl::detail::Pcre2Regex: out of memory for PCRE2 match data");
    const auto* subject = reinterpret_cast<PCRE2_SPTR8>(text.data());
    std::size_t start = 0;
    while (start <= text.size()) {
      int rc = pcre2_match_8(code_.get(), subject, text.size(), start, PCRE2_NO_UTF_CHECK, data.get(), nullptr);
      if (rc == PCRE2_ERROR_JIT_STACKLIMIT)  // a long run the JIT stack cannot hold: use the interpreter
        rc = pcre2_match_8(code_.get(), subject, text.size(), start, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT,
                           data.get(), nullptr);
      if (rc == PCRE2_ERROR_NOMATCH) break;
      if (rc < 0) {
        PCRE2_UCHAR8 message[256];
        pcre2_get_error_message_8(rc, message, sizeof message);
        throw InputError(concat_message("verl::detail::Pcre2Regex: matching failed at byte ", start,
                                        " (PCRE2: ", reinterpret_cast<const char*>(message), ")"));
      }
      const PCRE2_SIZE* ov = pcre2_get_ovector_pointer_8(data.get());
      out.emplace_back(ov[0], ov[1]);
      if (ov[1] > ov[0]) {
        start = ov[1];
      } else {  // empty match: step over one whole character
        start = ov[1] + 1;
        while (start < text.size() && (static_cast<unsigned char>(text[start]) & 0xC0) == 0x80) ++start;
      }
    }
    return out;
  }

  //! Whether `text` (valid UTF-8) contains a match.
  [[nodiscard]] bool search(std::string_view text) const {
    const std::unique_ptr<pcre2_match_data_8, decltype(&pcre2_match_data_free_8)> data(
        pcre2_match_data_create_from_pattern_8(code_.get(), nullptr), pcre2_match_data_free_8);
    const int rc = pcre2_match_8(code_.get(), reinterpret_cast<PCRE2_SPTR8>(text.data()), text.size(), 0,
                                 PCRE2_NO_UTF_CHECK, data.get(), nullptr);
    return rc >= 0;
  }

 private:
  std::shared_ptr<pcre2_code_8> code_;
};

}  // namespace verl::detail
