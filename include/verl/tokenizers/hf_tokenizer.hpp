#pragma once
//! \file
//! verl::HFTokenizer: a Hugging Face `tokenizer.json` with a byte-level BPE model (GPT-2, Llama-3, Qwen2 and
//! Qwen2.5 style), encoding and decoding exactly as the Rust `tokenizers` library (pinned: 0.23.3) does.
//!
//! Pipeline of `encode(text)` (no special tokens added, no post-processor, as `add_special_tokens=False`):
//!   1. added tokens with `normalized: false` are cut out of the raw text (leftmost-longest matching, with
//!      their single_word / lstrip / rstrip rules);
//!   2. each remaining piece is normalized (none or NFC), then added tokens with `normalized: true` are cut
//!      out of it;
//!   3. the pre-tokenizer (Split with a regex, matched by PCRE2 in UTF+UCP mode, and/or ByteLevel) splits
//!      each piece into words;
//!   4. the BPE model merges each word (priority queue over merge ranks; `ignore_merges` first looks the whole
//!      word up, as Llama-3 requires; a per-word cache).
//! Anything tokenizer.json holds that this class does not implement is rejected at load time with an error
//! naming the JSON path and value (docs/models.md#tokenizers lists what is supported).

#include "verl/core/errors.hpp"
#include "verl/tokenizers/regex.hpp"
#include "verl/tokenizers/unicode_nfc.hpp"
#include "verl/tokenizers/utf8.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <queue>
#include <shared_mutex>
#include <span>
#include <sstream>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

namespace verl {

//! A token of tokenizer.json's `added_tokens` (the special tokens and the user-added ones).
struct AddedToken {
  std::string content;
  std::int64_t id = 0;
  bool special = false;      //!< skipped by decode(ids) (skip_special_tokens)
  bool single_word = false;  //!< matches only when not inside a word
  bool lstrip = false;       //!< swallows the whitespace on its left
  bool rstrip = false;       //!< swallows the whitespace on its right
  bool normalized = true;    //!< matched against the normalized text (else against the raw text)
};

//! Names (token contents) of the special tokens, when they do not come from the files beside tokenizer.json.
struct SpecialTokenNames {
  std::optional<std::string> bos_token;
  std::optional<std::string> eos_token;
  std::optional<std::string> pad_token;
};

namespace detail::hf {

using nlohmann::json;

//! Hash and equality that look std::string keys up with a std::string_view (no temporary string).
struct StringHash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};
template <class V>
using StringMap = std::unordered_map<std::string, V, StringHash, std::equal_to<>>;

//! GPT-2's bytes_to_unicode: the printable bytes '!'..'~', '¡'..'¬', '®'..'ÿ' stand for themselves, the other
//! 68 bytes take the code points 256, 257, ... in byte order. byte_char[b] is the UTF-8 of b's character.
struct ByteLevelAlphabet {
  std::array<std::string, 256> byte_char;
  std::unordered_map<char32_t, unsigned char> char_byte;
  ByteLevelAlphabet() {
    char32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      const char32_t cp = printable ? static_cast<char32_t>(b) : next++;
      utf8::append(byte_char[static_cast<std::size_t>(b)], cp);
      char_byte.emplace(cp, static_cast<unsigned char>(b));
    }
  }
};
inline const ByteLevelAlphabet& byte_level_alphabet() {
  static const ByteLevelAlphabet alphabet;
  return alphabet;
}

// GPT-2's pre-tokenizer regex, which ByteLevel applies itself when use_regex is true.
inline constexpr std::string_view gpt2_pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

enum class SplitBehavior { removed, isolated, merged_with_previous, merged_with_next, contiguous };

//! One pre-tokenizer of the (flattened) Sequence.
struct PreTokenizer {
  enum class Kind { byte_level, split } kind = Kind::byte_level;
  // ByteLevel
  bool add_prefix_space = false;
  bool use_regex = true;
  // Split (and ByteLevel's own regex when use_regex)
  std::optional<Pcre2Regex> regex;
  std::string literal;  // Split with {"String": ...}
  SplitBehavior behavior = SplitBehavior::isolated;
  bool invert = false;
};

//! A BPE symbol of the word being merged: a token id and its neighbours in the doubly linked list.
struct Symbol {
  std::int32_t id;
  std::int32_t prev;
  std::int32_t next;
  bool alive;
};

//! The whole parsed tokenizer; shared (immutable apart from the word cache) by copies of HFTokenizer.
struct State {
  // normalizer
  bool nfc = false;
  // pre-tokenizers, applied in order
  std::vector<PreTokenizer> pre_tokenizers;
  // BPE model
  StringMap<std::int32_t> vocab;
  std::unordered_map<std::uint64_t, std::pair<std::uint32_t, std::int32_t>> merges;  // (a,b) -> (rank, id)
  bool ignore_merges = false;
  bool byte_fallback = false;
  bool fuse_unk = false;
  std::optional<std::int32_t> unk_id;
  std::string continuing_subword_prefix, end_of_word_suffix;
  // added tokens
  std::vector<AddedToken> added;            // in tokenizer.json order
  StringMap<std::int64_t> added_by_content;  // content -> id
  std::unordered_map<std::int64_t, std::size_t> added_by_id;  // id -> index in `added`
  std::unordered_set<std::string, StringHash, std::equal_to<>> special_contents;
  std::vector<std::size_t> raw_matchers, normalized_matchers;  // indices in `added`
  std::vector<std::string> normalized_contents;                 // per `added`: content as matched
  // id -> token string of the model vocabulary
  std::vector<std::string> vocab_r;
  std::vector<bool> vocab_r_present;
  // decoder
  enum class Decoder { none, byte_level } decoder = Decoder::none;
  // special ids
  std::optional<std::int64_t> bos_id, eos_id, pad_id;
  std::vector<std::int64_t> stop_ids;
  // word cache (Rust's BPE caches 10,000 words)
  static constexpr std::size_t cache_capacity = 10000;
  static constexpr std::size_t cache_max_word_bytes = 256;
  mutable std::shared_mutex cache_mutex;
  mutable StringMap<std::vector<std::int32_t>> cache;
  // added-token helpers: Rust's regex \w and \s (Unicode word characters and White_Space)
  Pcre2Regex word_char{R"(\A[\p{Alphabetic}\p{M}\p{Nd}\p{Pc}\p{Join_Control}]\z)", "verl::HFTokenizer"};
  Pcre2Regex space_char{R"(\A\p{White_Space}\z)", "verl::HFTokenizer"};
};

[[nodiscard]] inline std::string json_path_value(const json& j) {
  std::string dumped = j.dump();
  if (dumped.size() > 120) dumped = dumped.substr(0, 117) + "...";
  return dumped;
}

template <class... Parts>
[[noreturn]] inline void reject(const std::string& file, Parts&&... parts) {
  throw ConfigError(concat_message("verl::HFTokenizer: ", file, ": ", std::forward<Parts>(parts)...));
}

inline const json& member(const json& obj, const char* key, const std::string& file, const std::string& path) {
  if (!obj.is_object() || !obj.contains(key))
    reject(file, path, ".", key, " is missing; expected it in a tokenizer.json");
  return obj.at(key);
}

inline bool get_bool(const json& obj, const char* key, bool fallback, const std::string& file,
                     const std::string& path) {
  if (!obj.contains(key) || obj.at(key).is_null()) return fallback;
  if (!obj.at(key).is_boolean())
    reject(file, path, ".", key, " = ", json_path_value(obj.at(key)), "; expected true or false");
  return obj.at(key).get<bool>();
}

inline void parse_normalizer(State& st, const json& n, const std::string& file, const std::string& path) {
  if (n.is_null()) return;
  const json& type = member(n, "type", file, path);
  if (type == "NFC") {
    st.nfc = true;
  } else if (type == "Sequence") {
    const json& list = member(n, "normalizers", file, path);
    for (std::size_t i = 0; i < list.size(); ++i)
      parse_normalizer(st, list[i], file, concat_message(path, ".normalizers[", i, "]"));
  } else {
    reject(file, path, ".type = ", json_path_value(type),
           " is not supported; expected null, \"NFC\" or a \"Sequence\" of them (byte-level BPE tokenizers)");
  }
}

inline SplitBehavior parse_behavior(const json& b, const std::string& file, const std::string& path) {
  if (b == "Removed") return SplitBehavior::removed;
  if (b == "Isolated") return SplitBehavior::isolated;
  if (b == "MergedWithPrevious") return SplitBehavior::merged_with_previous;
  if (b == "MergedWithNext") return SplitBehavior::merged_with_next;
  if (b == "Contiguous") return SplitBehavior::contiguous;
  reject(file, path, ".behavior = ", json_path_value(b),
         "; expected one of \"Removed\", \"Isolated\", \"MergedWithPrevious\", \"MergedWithNext\", \"Contiguous\"");
}

inline void parse_pre_tokenizer(State& st, const json& p, const std::string& file, const std::string& path) {
  if (p.is_null()) return;
  const json& type = member(p, "type", file, path);
  if (type == "Sequence") {
    const json& list = member(p, "pretokenizers", file, path);
    for (std::size_t i = 0; i < list.size(); ++i)
      parse_pre_tokenizer(st, list[i], file, concat_message(path, ".pretokenizers[", i, "]"));
  } else if (type == "ByteLevel") {
    PreTokenizer pt;
    pt.kind = PreTokenizer::Kind::byte_level;
    pt.add_prefix_space = get_bool(p, "add_prefix_space", true, file, path);
    pt.use_regex = get_bool(p, "use_regex", true, file, path);
    get_bool(p, "trim_offsets", true, file, path);  // offsets only: no effect on ids
    if (pt.use_regex) pt.regex.emplace(gpt2_pattern, path + " (ByteLevel's GPT-2 regex)");
    st.pre_tokenizers.push_back(std::move(pt));
  } else if (type == "Split") {
    PreTokenizer pt;
    pt.kind = PreTokenizer::Kind::split;
    const json& pattern = member(p, "pattern", file, path);
    if (pattern.contains("Regex") && pattern.at("Regex").is_string()) {
      pt.regex.emplace(pattern.at("Regex").get<std::string>(), concat_message(file, ": ", path, ".pattern.Regex"));
    } else if (pattern.contains("String") && pattern.at("String").is_string()) {
      pt.literal = pattern.at("String").get<std::string>();
    } else {
      reject(file, path, ".pattern = ", json_path_value(pattern),
             "; expected {\"Regex\": \"...\"} or {\"String\": \"...\"}");
    }
    pt.behavior = parse_behavior(member(p, "behavior", file, path), file, path);
    pt.invert = get_bool(p, "invert", false, file, path);
    st.pre_tokenizers.push_back(std::move(pt));
  } else {
    reject(file, path, ".type = ", json_path_value(type),
           " is not supported; expected \"ByteLevel\", \"Split\" or a \"Sequence\" of them");
  }
}

inline std::uint64_t pair_key(std::int32_t a, std::int32_t b) {
  return (static_cast<std::uint64_t>(static_cast<std::uint32_t>(a)) << 32) | static_cast<std::uint32_t>(b);
}

inline void parse_model(State& st, const json& m, const std::string& file) {
  const std::string path = "model";
  const json& type = member(m, "type", file, path);
  if (type != "BPE")
    reject(file, "model.type = ", json_path_value(type), " is not supported; expected \"BPE\"");
  if (m.contains("dropout") && !m.at("dropout").is_null() &&
      !(m.at("dropout").is_number() && m.at("dropout").get<double>() == 0.0))
    reject(file, "model.dropout = ", json_path_value(m.at("dropout")),
           "; expected null (BPE-dropout is a training-time regulariser; encoding must be deterministic)");
  st.ignore_merges = get_bool(m, "ignore_merges", false, file, path);
  st.byte_fallback = get_bool(m, "byte_fallback", false, file, path);
  st.fuse_unk = get_bool(m, "fuse_unk", false, file, path);
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    if (m.contains(key) && !m.at(key).is_null()) {
      if (!m.at(key).is_string()) reject(file, "model.", key, " = ", json_path_value(m.at(key)), "; expected a string or null");
      (std::string_view(key) == "continuing_subword_prefix" ? st.continuing_subword_prefix : st.end_of_word_suffix) =
          m.at(key).get<std::string>();
    }
  }
  const json& vocab = member(m, "vocab", file, path);
  if (!vocab.is_object()) reject(file, "model.vocab; expected an object {token: id}");
  st.vocab.reserve(vocab.size());
  for (const auto& [token, id] : vocab.items()) {
    if (!id.is_number_integer() || id.get<std::int64_t>() < 0 || id.get<std::int64_t>() > INT32_MAX)
      reject(file, "model.vocab[\"", token, "\"] = ", json_path_value(id), "; expected a non-negative integer id");
    st.vocab.emplace(token, id.get<std::int32_t>());
  }
  if (m.contains("unk_token") && !m.at("unk_token").is_null()) {
    const auto unk = m.at("unk_token").get<std::string>();
    const auto it = st.vocab.find(unk);
    // As in Rust, a missing unk token is an error only when an unknown character needs it; verl checks it
    // up front.
    if (it == st.vocab.end()) reject(file, "model.unk_token = \"", unk, "\" is not in model.vocab; expected a vocabulary token");
    st.unk_id = it->second;
  }
  const json& merges = member(m, "merges", file, path);
  if (!merges.is_array()) reject(file, "model.merges; expected an array of merges");
  st.merges.reserve(merges.size());
  const std::size_t prefix_len = st.continuing_subword_prefix.size();
  for (std::size_t rank = 0; rank < merges.size(); ++rank) {
    const json& merge = merges[rank];
    std::string a, b;
    if (merge.is_string()) {  // "a b" (tokenizers < 0.20 and most published files)
      const auto text = merge.get<std::string>();
      const auto space = text.find(' ');
      if (space == std::string::npos || text.find(' ', space + 1) != std::string::npos)
        reject(file, "model.merges[", rank, "] = ", json_path_value(merge), "; expected \"left right\" (one space)");
      a = text.substr(0, space);
      b = text.substr(space + 1);
    } else if (merge.is_array() && merge.size() == 2 && merge[0].is_string() && merge[1].is_string()) {  // [a, b]
      a = merge[0].get<std::string>();
      b = merge[1].get<std::string>();
    } else {
      reject(file, "model.merges[", rank, "] = ", json_path_value(merge), "; expected \"left right\" or [\"left\", \"right\"]");
    }
    const auto ia = st.vocab.find(a), ib = st.vocab.find(b);
    if (ia == st.vocab.end() || ib == st.vocab.end())
      reject(file, "model.merges[", rank, "]: token \"", ia == st.vocab.end() ? a : b,
             "\" is not in model.vocab; expected both sides of a merge in the vocabulary");
    if (b.size() < prefix_len) reject(file, "model.merges[", rank, "]: \"", b, "\" is shorter than continuing_subword_prefix");
    const std::string merged = a + b.substr(prefix_len);
    const auto im = st.vocab.find(merged);
    if (im == st.vocab.end())
      reject(file, "model.merges[", rank, "]: the merged token \"", merged,
             "\" is not in model.vocab; expected every merge result in the vocabulary");
    // A duplicated pair keeps its last rank, as Rust's HashMap collection does.
    st.merges[pair_key(ia->second, ib->second)] = {static_cast<std::uint32_t>(rank), im->second};
  }
}

//! Splits `text` into [begin, end) ranges by `matches` (sorted, non-overlapping), as the tokenizers library's
//! NormalizedString::split does with a SplitDelimiterBehavior; empty pieces are dropped.
inline std::vector<std::pair<std::size_t, std::size_t>> split_by_matches(
    std::size_t size, const std::vector<std::pair<std::size_t, std::size_t>>& matches, SplitBehavior behavior,
    bool invert) {
  struct Piece {
    std::size_t begin, end;
    bool is_match;
  };
  std::vector<Piece> all;  // covers [0, size): alternating non-matches and matches
  std::size_t prev = 0;
  if (size == 0) {
    all.push_back({0, 0, false});
  } else {
    for (const auto& [b, e] : matches) {
      if (prev != b) all.push_back({prev, b, false});
      all.push_back({b, e, true});
      prev = e;
    }
    if (prev != size) all.push_back({prev, size, false});
  }
  if (invert)
    for (auto& p : all) p.is_match = !p.is_match;
  std::vector<Piece> out;
  switch (behavior) {
    case SplitBehavior::removed:
      for (const auto& p : all)
        if (!p.is_match) out.push_back(p);
      break;
    case SplitBehavior::isolated:
      out = all;
      break;
    case SplitBehavior::merged_with_previous: {
      bool previous_match = false;
      for (const auto& p : all) {
        if (p.is_match && !previous_match && !out.empty()) out.back().end = p.end;
        else out.push_back({p.begin, p.end, false});
        previous_match = p.is_match;
      }
      break;
    }
    case SplitBehavior::merged_with_next: {
      bool previous_match = false;
      for (auto it = all.rbegin(); it != all.rend(); ++it) {
        if (it->is_match && !previous_match && !out.empty()) out.back().begin = it->begin;
        else out.push_back({it->begin, it->end, false});
        previous_match = it->is_match;
      }
      std::reverse(out.begin(), out.end());
      break;
    }
    case SplitBehavior::contiguous: {
      bool previous_match = false;
      for (const auto& p : all) {
        if (p.is_match == previous_match && !out.empty()) out.back().end = p.end;
        else out.push_back({p.begin, p.end, false});
        previous_match = p.is_match;
      }
      break;
    }
  }
  std::vector<std::pair<std::size_t, std::size_t>> ranges;
  for (const auto& p : out)
    if (p.end > p.begin) ranges.emplace_back(p.begin, p.end);
  return ranges;
}

//! Every occurrence of `literal` in `text`, left to right, non-overlapping.
inline std::vector<std::pair<std::size_t, std::size_t>> find_literal(std::string_view text, std::string_view literal) {
  std::vector<std::pair<std::size_t, std::size_t>> out;
  if (literal.empty()) return out;
  for (std::size_t at = text.find(literal); at != std::string_view::npos; at = text.find(literal, at + literal.size()))
    out.emplace_back(at, at + literal.size());
  return out;
}

}  // namespace detail::hf

//! A Hugging Face tokenizer.json with a byte-level BPE model. Satisfies verl::Tokenizer.
//!
//! Copies share the parsed tables and the word cache; every const member may be called from several
//! threads at once.
class HFTokenizer {
 public:
  //! Loads `dir`/tokenizer.json and the special tokens from the files beside it: bos/eos/pad tokens from
  //! tokenizer_config.json (`bos_token`, `eos_token`, `pad_token`, a string or {"content": ...}), else from
  //! special_tokens_map.json, else ids from generation_config.json (`bos_token_id`, `eos_token_id` (first of a
  //! list), `pad_token_id`). The pad token falls back to eos, as verl does (hf_tokenizer sets pad = eos).
  //! generation_config.json's `eos_token_id` list is also returned by stop_token_ids(). `overrides` win.
  [[nodiscard]] static HFTokenizer from_directory(const std::filesystem::path& dir, const SpecialTokenNames& overrides = {}) {
    const auto file = dir / "tokenizer.json";
    HFTokenizer tok = from_file(file, overrides);
    detail::hf::State& st = *tok.state_;
    const auto read_json = [](const std::filesystem::path& p) -> std::optional<nlohmann::json> {
      if (!std::filesystem::exists(p)) return std::nullopt;
      std::ifstream in(p);
      try {
        return nlohmann::json::parse(in);
      } catch (const nlohmann::json::exception& e) {
        throw InputError(detail::concat_message("verl::HFTokenizer: ", p.string(), " is not valid JSON (", e.what(), ")"));
      }
    };
    const auto token_name = [](const nlohmann::json& j, const char* key) -> std::optional<std::string> {
      if (!j.contains(key) || j.at(key).is_null()) return std::nullopt;
      const auto& v = j.at(key);
      if (v.is_string()) return v.get<std::string>();
      if (v.is_object() && v.contains("content") && v.at("content").is_string()) return v.at("content").get<std::string>();
      return std::nullopt;
    };
    const auto config = read_json(dir / "tokenizer_config.json");
    const auto map = read_json(dir / "special_tokens_map.json");
    const auto generation = read_json(dir / "generation_config.json");
    const auto resolve = [&](std::optional<std::int64_t>& slot, const std::optional<std::string>& override_name,
                             const char* key, const char* id_key) {
      if (override_name) return;  // set by from_file
      for (const auto* source : {&config, &map}) {
        if (!*source) continue;
        if (const auto name = token_name(**source, key)) {
          slot = tok.require_id(*name, detail::concat_message((source == &config ? "tokenizer_config.json" : "special_tokens_map.json"), " ", key));
          return;
        }
      }
      if (generation && generation->contains(id_key)) {
        const auto& v = generation->at(id_key);
        if (v.is_number_integer()) slot = v.get<std::int64_t>();
        else if (v.is_array() && !v.empty() && v[0].is_number_integer()) slot = v[0].get<std::int64_t>();
      }
    };
    resolve(st.bos_id, overrides.bos_token, "bos_token", "bos_token_id");
    resolve(st.eos_id, overrides.eos_token, "eos_token", "eos_token_id");
    resolve(st.pad_id, overrides.pad_token, "pad_token", "pad_token_id");
    if (generation && generation->contains("eos_token_id")) {
      const auto& v = generation->at("eos_token_id");
      if (v.is_number_integer()) st.stop_ids = {v.get<std::int64_t>()};
      else if (v.is_array())
        for (const auto& x : v)
          if (x.is_number_integer()) st.stop_ids.push_back(x.get<std::int64_t>());
    }
    if (!st.pad_id) st.pad_id = st.eos_id;
    if (st.stop_ids.empty() && st.eos_id) st.stop_ids = {*st.eos_id};
    return tok;
  }

  //! Loads one tokenizer.json; the special tokens come from `names` only (pad falls back to eos).
  [[nodiscard]] static HFTokenizer from_file(const std::filesystem::path& tokenizer_json, const SpecialTokenNames& names = {}) {
    std::ifstream in(tokenizer_json, std::ios::binary);
    detail::check<InputError>(static_cast<bool>(in), "verl::HFTokenizer: cannot open ", tokenizer_json.string(),
                      "; expected a tokenizer.json file");
    std::stringstream buffer;
    buffer << in.rdbuf();
    return from_json_string(buffer.str(), names, tokenizer_json.string());
  }

  //! Parses the text of a tokenizer.json; `file` names it in error messages.
  [[nodiscard]] static HFTokenizer from_json_string(std::string_view text, const SpecialTokenNames& names = {},
                                                    const std::string& file = "tokenizer.json") {
    using detail::hf::json;
    json j;
    try {
      j = json::parse(text);
    } catch (const json::exception& e) {
      throw InputError(detail::concat_message("verl::HFTokenizer: ", file, " is not valid JSON (", e.what(), ")"));
    }
    HFTokenizer tok;
    auto& st = *tok.state_;
    if (!j.is_object()) detail::hf::reject(file, "the top level is not an object; expected a tokenizer.json");
    detail::hf::parse_model(st, detail::hf::member(j, "model", file, "(top level)"), file);
    detail::hf::parse_normalizer(st, j.value("normalizer", json()), file, "normalizer");
    detail::hf::parse_pre_tokenizer(st, j.value("pre_tokenizer", json()), file, "pre_tokenizer");
    const json decoder = j.value("decoder", json());
    if (!decoder.is_null()) {
      const json& type = detail::hf::member(decoder, "type", file, "decoder");
      if (type != "ByteLevel")
        detail::hf::reject(file, "decoder.type = ", detail::hf::json_path_value(type),
                           " is not supported; expected \"ByteLevel\" or null");
      st.decoder = detail::hf::State::Decoder::byte_level;
    }
    // The post-processor only adds special tokens (add_special_tokens=True) and offsets; encode() does not
    // apply it, so its content is not read.
    tok.build_reverse_vocab();
    const json added = j.value("added_tokens", json::array());
    for (std::size_t i = 0; i < added.size(); ++i) {
      const auto path = detail::concat_message("added_tokens[", i, "]");
      const json& a = added[i];
      AddedToken t;
      t.content = detail::hf::member(a, "content", file, path).get<std::string>();
      const json& id = detail::hf::member(a, "id", file, path);
      if (!id.is_number_integer() || id.get<std::int64_t>() < 0)
        detail::hf::reject(file, path, ".id = ", detail::hf::json_path_value(id), "; expected a non-negative integer");
      t.id = id.get<std::int64_t>();
      t.special = detail::hf::get_bool(a, "special", false, file, path);
      t.single_word = detail::hf::get_bool(a, "single_word", false, file, path);
      t.lstrip = detail::hf::get_bool(a, "lstrip", false, file, path);
      t.rstrip = detail::hf::get_bool(a, "rstrip", false, file, path);
      t.normalized = detail::hf::get_bool(a, "normalized", !t.special, file, path);
      if (t.content.empty()) continue;  // Rust ignores empty added tokens
      detail::utf8::require_valid(t.content, file + ": " + path + ".content");
      st.added_by_content[t.content] = t.id;
      st.added_by_id[t.id] = st.added.size();
      if (t.special) st.special_contents.insert(t.content);
      st.added.push_back(std::move(t));
    }
    // Matching sets: special tokens first, then the others, as the Rust AddedVocabulary orders them.
    for (int pass = 0; pass < 2; ++pass)
      for (std::size_t i = 0; i < st.added.size(); ++i)
        if (st.added[i].special == (pass == 0))
          (st.added[i].normalized ? st.normalized_matchers : st.raw_matchers).push_back(i);
    st.normalized_contents.resize(st.added.size());
    for (std::size_t i = 0; i < st.added.size(); ++i)
      st.normalized_contents[i] = st.added[i].normalized && st.nfc ? detail::nfc::normalize(st.added[i].content)
                                                                   : st.added[i].content;
    for (const auto& t : st.added)
      tok.vocab_size_ = std::max(tok.vocab_size_, static_cast<std::size_t>(t.id + 1));
    if (names.bos_token) st.bos_id = tok.require_id(*names.bos_token, "bos_token");
    if (names.eos_token) st.eos_id = tok.require_id(*names.eos_token, "eos_token");
    if (names.pad_token) st.pad_id = tok.require_id(*names.pad_token, "pad_token");
    if (!st.pad_id) st.pad_id = st.eos_id;
    if (st.eos_id) st.stop_ids = {*st.eos_id};
    return tok;
  }

  //! Token ids of `text` (valid UTF-8), without special tokens or post-processing (Hugging Face's
  //! `encode(text, add_special_tokens=False)`); added tokens written in the text are recognised.
  [[nodiscard]] std::vector<std::int64_t> encode(std::string_view text) const {
    detail::utf8::require_valid(text, "verl::HFTokenizer::encode");
    const auto& st = *state_;
    std::vector<std::int64_t> ids;
    ids.reserve(text.size() / 3 + 1);
    for_each_added_split(text, st.raw_matchers, [&](std::string_view piece, std::optional<std::int64_t> id) {
      if (id) {
        ids.push_back(*id);
        return;
      }
      const std::string normalized = st.nfc ? detail::nfc::normalize(piece) : std::string(piece);
      for_each_added_split(normalized, st.normalized_matchers, [&](std::string_view sub, std::optional<std::int64_t> sub_id) {
        if (sub_id) ids.push_back(*sub_id);
        else encode_pretokenized(sub, ids);
      });
    });
    return ids;
  }

  //! Text of `ids`, skipping special tokens (verl's default, skip_special_tokens=True).
  [[nodiscard]] std::string decode(std::span<const std::int64_t> ids) const { return decode(ids, true); }

  //! Text of `ids`. Ids that are neither in the vocabulary nor added tokens are skipped, as the tokenizers
  //! library does (a model whose embedding is padded past the vocabulary may sample them); negative ids
  //! throw verl::InputError.
  [[nodiscard]] std::string decode(std::span<const std::int64_t> ids, bool skip_special_tokens) const {
    const auto& st = *state_;
    std::string bytes;
    std::vector<std::string_view> tokens;
    tokens.reserve(ids.size());
    for (std::size_t i = 0; i < ids.size(); ++i) {
      detail::check<InputError>(ids[i] >= 0, "verl::HFTokenizer::decode: ids[", i, "] = ", ids[i], "; expected ids >= 0");
      const auto token = token_view(ids[i]);
      if (!token) continue;
      if (skip_special_tokens && st.special_contents.find(*token) != st.special_contents.end()) continue;
      tokens.push_back(*token);
    }
    if (st.decoder == detail::hf::State::Decoder::none) {  // tokenizers joins the tokens with spaces
      std::string out;
      for (std::size_t i = 0; i < tokens.size(); ++i) {
        if (i) out += ' ';
        out += tokens[i];
      }
      return out;
    }
    const auto& alphabet = detail::hf::byte_level_alphabet();
    for (const auto token : tokens) {
      // A token whose characters all belong to the byte-level alphabet stands for those bytes; any other
      // token (e.g. an added token with a space) contributes its own UTF-8, as Rust's ByteLevel decoder does.
      const std::size_t mark = bytes.size();
      bool all_mapped = true;
      for (std::size_t k = 0; k < token.size();) {
        const auto it = alphabet.char_byte.find(detail::utf8::next(token, k));
        if (it == alphabet.char_byte.end()) {
          all_mapped = false;
          break;
        }
        bytes += static_cast<char>(it->second);
      }
      if (!all_mapped) {
        bytes.resize(mark);
        bytes += token;
      }
    }
    return detail::utf8::lossy(bytes);
  }

  //! Id of a token string (added tokens first, then the model vocabulary), if any.
  [[nodiscard]] std::optional<std::int64_t> token_to_id(std::string_view token) const {
    const auto& st = *state_;
    if (const auto it = st.added_by_content.find(token); it != st.added_by_content.end()) return it->second;
    if (const auto it = st.vocab.find(token); it != st.vocab.end()) return it->second;
    return std::nullopt;
  }

  //! Token string of an id (added tokens first, then the model vocabulary), if any.
  [[nodiscard]] std::optional<std::string> id_to_token(std::int64_t id) const {
    const auto t = token_view(id);
    return t ? std::optional<std::string>(std::string(*t)) : std::nullopt;
  }

  //! Whether `id` is a special added token (skipped by decode(ids)).
  [[nodiscard]] bool is_special(std::int64_t id) const {
    const auto t = token_view(id);
    return t && state_->special_contents.find(*t) != state_->special_contents.end();
  }

  //! One past the largest id of the vocabulary and the added tokens (what an embedding must cover). Equals
  //! transformers' len(tokenizer) when the ids are contiguous, as in every published tokenizer.json.
  [[nodiscard]] std::int64_t vocab_size() const { return static_cast<std::int64_t>(vocab_size_); }

  //! The end-of-sequence id; throws verl::ConfigError when neither the files nor the caller named one.
  [[nodiscard]] std::int64_t eos_token_id() const {
    detail::check<ConfigError>(state_->eos_id.has_value(),
                       "verl::HFTokenizer: no eos token is known; expected `eos_token` in tokenizer_config.json or "
                       "special_tokens_map.json, `eos_token_id` in generation_config.json, or "
                       "SpecialTokenNames::eos_token");
    return *state_->eos_id;
  }
  //! The padding id (eos when the files name no pad token); throws verl::ConfigError when neither exists.
  [[nodiscard]] std::int64_t pad_token_id() const {
    detail::check<ConfigError>(state_->pad_id.has_value(),
                       "verl::HFTokenizer: no pad token and no eos token to fall back to; expected `pad_token` or "
                       "`eos_token` in tokenizer_config.json or SpecialTokenNames");
    return *state_->pad_id;
  }
  //! The beginning-of-sequence id, when the files name one.
  [[nodiscard]] std::optional<std::int64_t> bos_token_id() const { return state_->bos_id; }
  //! The ids generation stops at: generation_config.json's eos_token_id (all of a list), else {eos}.
  [[nodiscard]] const std::vector<std::int64_t>& stop_token_ids() const { return state_->stop_ids; }
  //! The added tokens, in tokenizer.json order.
  [[nodiscard]] const std::vector<AddedToken>& added_tokens() const { return state_->added; }

 private:
  HFTokenizer() : state_(std::make_shared<detail::hf::State>()) {}

  std::int64_t require_id(const std::string& name, const std::string& what) const {
    const auto id = token_to_id(name);
    detail::check<ConfigError>(id.has_value(), "verl::HFTokenizer: ", what, " \"", name,
                       "\" is not a token of the vocabulary or the added tokens; expected an existing token");
    return *id;
  }

  void build_reverse_vocab() {
    auto& st = *state_;
    std::int64_t max_id = -1;
    for (const auto& [t, id] : st.vocab) max_id = std::max<std::int64_t>(max_id, id);
    st.vocab_r.assign(static_cast<std::size_t>(max_id + 1), {});
    st.vocab_r_present.assign(static_cast<std::size_t>(max_id + 1), false);
    for (const auto& [t, id] : st.vocab) {
      st.vocab_r[static_cast<std::size_t>(id)] = t;
      st.vocab_r_present[static_cast<std::size_t>(id)] = true;
    }
    vocab_size_ = static_cast<std::size_t>(max_id + 1);
  }

  std::optional<std::string_view> token_view(std::int64_t id) const {
    const auto& st = *state_;
    if (id < 0) return std::nullopt;
    // The reverse map holds the normalized content of normalized added tokens (tokenizers 0.23 behaviour:
    // id_to_token and decode see e.g. the NFC form, while token_to_id takes the content as written).
    if (const auto it = st.added_by_id.find(id); it != st.added_by_id.end()) return st.normalized_contents[it->second];
    if (static_cast<std::size_t>(id) < st.vocab_r.size() && st.vocab_r_present[static_cast<std::size_t>(id)])
      return st.vocab_r[static_cast<std::size_t>(id)];
    return std::nullopt;
  }

  bool is_word_char_before(std::string_view s) const {  // Rust regex `\w$` on s
    if (s.empty()) return false;
    std::size_t k = s.size() - 1;
    while (k > 0 && (static_cast<unsigned char>(s[k]) & 0xC0) == 0x80) --k;
    return state_->word_char.search(s.substr(k));
  }
  bool is_word_char_after(std::string_view s) const {  // Rust regex `^\w` on s
    if (s.empty()) return false;
    std::size_t k = 1;
    while (k < s.size() && (static_cast<unsigned char>(s[k]) & 0xC0) == 0x80) ++k;
    return state_->word_char.search(s.substr(0, k));
  }
  std::size_t whitespace_start_at_end(std::string_view s) const {  // start of the match of `\s*$`
    std::size_t end = s.size();
    while (end > 0) {
      std::size_t k = end - 1;
      while (k > 0 && (static_cast<unsigned char>(s[k]) & 0xC0) == 0x80) --k;
      if (!state_->space_char.search(s.substr(k, end - k))) break;
      end = k;
    }
    return end;
  }
  std::size_t whitespace_length_at_start(std::string_view s) const {  // end of the match of `^\s*`
    std::size_t i = 0;
    while (i < s.size()) {
      std::size_t k = i + 1;
      while (k < s.size() && (static_cast<unsigned char>(s[k]) & 0xC0) == 0x80) ++k;
      if (!state_->space_char.search(s.substr(i, k - i))) break;
      i = k;
    }
    return i;
  }

  //! Calls f(piece, id) for the pieces of `text` around the added tokens of `matchers`, in order, empty
  //! pieces omitted: Rust's AddedVocabulary::find_matches with aho-corasick's leftmost-longest semantics.
  template <class F>
  void for_each_added_split(std::string_view text, const std::vector<std::size_t>& matchers, F&& f) const {
    const auto& st = *state_;
    if (matchers.empty()) {
      if (!text.empty()) f(text, std::nullopt);
      return;
    }
    std::size_t start_offset = 0;
    std::size_t search = 0;
    // next[k]: the first occurrence of matcher k at or after the last search position it was looked up at
    // (each is searched for again only once the scan has passed it: linear in the text per matcher).
    std::vector<std::size_t> next(matchers.size(), 0);
    std::vector<bool> stale(matchers.size(), true);
    while (search < text.size()) {
      // Leftmost match, then the longest among the tokens matching there.
      std::size_t best_pos = std::string_view::npos, best_len = 0, best = 0;
      for (std::size_t k = 0; k < matchers.size(); ++k) {
        const std::size_t m = matchers[k];
        const auto& content = st.normalized_contents[m];
        if (stale[k] || (next[k] != std::string_view::npos && next[k] < search)) {
          next[k] = text.find(content, search);
          stale[k] = false;
        }
        const std::size_t pos = next[k];
        if (pos == std::string_view::npos) continue;
        if (pos < best_pos || (pos == best_pos && content.size() > best_len)) {
          best_pos = pos;
          best_len = content.size();
          best = m;
        }
      }
      if (best_pos == std::string_view::npos) break;
      const AddedToken& token = st.added[best];
      std::size_t start = best_pos, stop = best_pos + best_len;
      search = stop;  // the automaton resumes after the raw match, whatever rstrip swallows
      if (token.single_word) {
        const bool start_space = start == 0 || !is_word_char_before(text.substr(0, start));
        const bool stop_space = stop == text.size() || !is_word_char_after(text.substr(stop));
        if (!start_space || !stop_space) continue;
      }
      if (token.lstrip) start = std::max(whitespace_start_at_end(text.substr(0, start)), start_offset);
      if (token.rstrip) stop += whitespace_length_at_start(text.substr(stop));
      if (start_offset < start) f(text.substr(start_offset, start - start_offset), std::nullopt);
      f(text.substr(start, stop - start), token.id);
      start_offset = stop;
    }
    if (start_offset < text.size()) f(text.substr(start_offset), std::nullopt);
  }

  //! Pre-tokenizes one normalized piece and appends the BPE ids of its words.
  void encode_pretokenized(std::string_view piece, std::vector<std::int64_t>& ids) const {
    const auto& st = *state_;
    std::vector<std::string> words{std::string(piece)};
    for (const auto& pt : st.pre_tokenizers) {
      std::vector<std::string> next;
      next.reserve(words.size());
      for (auto& w : words) {
        if (pt.kind == detail::hf::PreTokenizer::Kind::byte_level) {
          if (pt.add_prefix_space && (w.empty() || w.front() != ' ')) w.insert(w.begin(), ' ');
          std::vector<std::pair<std::size_t, std::size_t>> ranges;
          if (pt.use_regex) ranges = detail::hf::split_by_matches(w.size(), pt.regex->find_all(w), detail::hf::SplitBehavior::isolated, false);
          else if (!w.empty()) ranges = {{0, w.size()}};
          const auto& alphabet = detail::hf::byte_level_alphabet();
          for (const auto& [b, e] : ranges) {
            std::string mapped;
            mapped.reserve(2 * (e - b));
            for (std::size_t k = b; k < e; ++k) mapped += alphabet.byte_char[static_cast<unsigned char>(w[k])];
            next.push_back(std::move(mapped));
          }
        } else {
          const auto matches = pt.regex ? pt.regex->find_all(w) : detail::hf::find_literal(w, pt.literal);
          for (const auto& [b, e] : detail::hf::split_by_matches(w.size(), matches, pt.behavior, pt.invert))
            next.push_back(w.substr(b, e - b));
        }
      }
      words = std::move(next);
    }
    for (const auto& w : words)
      if (!w.empty()) bpe(w, ids);
  }

  //! Appends the BPE ids of one word, through the cache.
  void bpe(std::string_view word, std::vector<std::int64_t>& ids) const {
    const auto& st = *state_;
    if (st.ignore_merges) {
      if (const auto it = st.vocab.find(word); it != st.vocab.end()) {
        ids.push_back(it->second);
        return;
      }
    }
    const bool cacheable = word.size() <= detail::hf::State::cache_max_word_bytes;
    if (cacheable) {
      std::shared_lock lock(st.cache_mutex);
      if (const auto it = st.cache.find(word); it != st.cache.end()) {
        ids.insert(ids.end(), it->second.begin(), it->second.end());
        return;
      }
    }
    std::vector<std::int32_t> merged = merge_word(word);
    ids.insert(ids.end(), merged.begin(), merged.end());
    if (cacheable) {
      std::unique_lock lock(st.cache_mutex);
      if (st.cache.size() < detail::hf::State::cache_capacity) st.cache.emplace(std::string(word), std::move(merged));
    }
  }

  //! Rust's BPE::merge_word + Word::merge_all: initial symbols (characters, byte fallback, unk), then the
  //! lowest-rank applicable merge first (ties: leftmost), through a priority queue with lazy invalidation.
  std::vector<std::int32_t> merge_word(std::string_view w) const {
    const auto& st = *state_;
    std::vector<detail::hf::Symbol> symbols;
    symbols.reserve(w.size());
    const auto add = [&](std::int32_t id) {
      const auto n = static_cast<std::int32_t>(symbols.size());
      if (n > 0) symbols.back().next = n;
      symbols.push_back({id, n - 1, -1, true});
    };
    std::optional<std::int32_t> pending_unk;
    std::string buffer;
    for (std::size_t i = 0; i < w.size();) {
      const std::size_t begin = i;
      const std::size_t len = detail::utf8::valid_length(w, i);
      i += len == 0 ? 1 : len;
      std::string_view s = w.substr(begin, i - begin);
      if ((begin != 0 && !st.continuing_subword_prefix.empty()) || (i == w.size() && !st.end_of_word_suffix.empty())) {
        buffer.assign(begin != 0 ? st.continuing_subword_prefix : std::string());
        buffer += s;
        if (i == w.size()) buffer += st.end_of_word_suffix;
        s = buffer;
      }
      if (const auto it = st.vocab.find(s); it != st.vocab.end()) {
        if (pending_unk) add(*pending_unk), pending_unk.reset();
        add(it->second);
        continue;
      }
      if (st.byte_fallback) {
        std::vector<std::int32_t> bytes;
        for (const char c : s) {
          char name[7];
          std::snprintf(name, sizeof name, "<0x%02X>", static_cast<unsigned>(static_cast<unsigned char>(c)));
          const auto it = st.vocab.find(std::string_view(name));
          if (it == st.vocab.end()) break;
          bytes.push_back(it->second);
        }
        if (bytes.size() == s.size()) {
          // Rust adds byte tokens without flushing a pending unk first; the unk lands after them.
          for (const auto b : bytes) add(b);
          continue;
        }
      }
      if (st.unk_id) {
        if (pending_unk && !st.fuse_unk) add(*pending_unk);
        pending_unk = *st.unk_id;
      }
      // Without an unk token, an unknown character is dropped, as in Rust.
    }
    if (pending_unk) add(*pending_unk);

    struct Merge {
      std::uint32_t rank;
      std::int32_t pos;
      std::int32_t new_id;
      bool operator>(const Merge& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
    };
    std::priority_queue<Merge, std::vector<Merge>, std::greater<>> queue;
    const auto lookup = [&](std::int32_t a, std::int32_t b) -> const std::pair<std::uint32_t, std::int32_t>* {
      const auto it = st.merges.find(detail::hf::pair_key(a, b));
      return it == st.merges.end() ? nullptr : &it->second;
    };
    for (std::size_t k = 0; k + 1 < symbols.size(); ++k)
      if (const auto* m = lookup(symbols[k].id, symbols[k + 1].id))
        queue.push({m->first, static_cast<std::int32_t>(k), m->second});
    while (!queue.empty()) {
      const Merge top = queue.top();
      queue.pop();
      auto& cur = symbols[static_cast<std::size_t>(top.pos)];
      if (!cur.alive || cur.next < 0) continue;
      const std::int32_t next_pos = cur.next;
      auto& right = symbols[static_cast<std::size_t>(next_pos)];
      const auto* m = lookup(cur.id, right.id);
      if (m == nullptr || m->second != top.new_id) continue;  // stale entry
      cur.id = top.new_id;
      cur.next = right.next;
      right.alive = false;
      if (right.next >= 0) symbols[static_cast<std::size_t>(right.next)].prev = top.pos;
      if (cur.prev >= 0)
        if (const auto* p = lookup(symbols[static_cast<std::size_t>(cur.prev)].id, cur.id))
          queue.push({p->first, cur.prev, p->second});
      if (cur.next >= 0)
        if (const auto* n = lookup(cur.id, symbols[static_cast<std::size_t>(cur.next)].id))
          queue.push({n->first, top.pos, n->second});
    }
    std::vector<std::int32_t> out;
    out.reserve(symbols.size());
    for (const auto& s : symbols)
      if (s.alive) out.push_back(s.id);
    return out;
  }

  std::shared_ptr<detail::hf::State> state_;
  std::size_t vocab_size_ = 0;
};

}  // namespace verl
