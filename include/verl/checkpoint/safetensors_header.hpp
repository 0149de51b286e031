#pragma once
//! \file
//! The safetensors header, without LibTorch: dtypes, parsing with every validation rule of the reference
//! implementation (huggingface/safetensors 0.8.0, `SafeTensors::read_metadata` and `Metadata::validate`),
//! and the layout of a file to write (`plan_safetensors_file`), byte-identical to what the reference's
//! `save_file` writes. The fuzz target (tests/fuzz/) compiles this header alone.
//!
//! Format: 8 bytes little-endian u64 N, N bytes of UTF-8 JSON starting with '{' (optionally padded with
//! whitespace), then the byte buffer. The JSON maps each tensor name to
//! {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]} (offsets relative to the buffer start) and
//! the optional key "__metadata__" to an object of strings. Sorted by offsets, the tensors must tile the buffer
//! from 0 to its end without gaps or overlaps, and each span must equal dtype bits x element count / 8.
//!
//! Only little-endian hosts are supported (the format is little-endian and data is used in place).

#include "verl/core/errors.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

static_assert(std::endian::native == std::endian::little,
              "verl/checkpoint: safetensors data is little-endian and is used in place; big-endian hosts are not "
              "supported");

namespace verl::checkpoint {

//! The element types of the safetensors format, in the reference's declaration order (the writer sorts
//! tensors by this order, descending, then by name; keep the order).
enum class Dtype : std::uint8_t {
  BOOL,
  F4,       //!< float4 e2m1, two per byte (the shape counts single elements)
  F6_E2M3,  //!< float6, four per three bytes
  F6_E3M2,
  U8,
  I8,
  F8_E5M2,
  F8_E4M3,
  F8_E8M0,
  F8_E4M3FNUZ,
  F8_E5M2FNUZ,
  I16,
  U16,
  F16,
  BF16,
  I32,
  U32,
  F32,
  C64,
  F64,
  I64,
  U64,
};

//! Every dtype of the format, in declaration order.
inline constexpr std::array<Dtype, 22> all_dtypes = {
    Dtype::BOOL,        Dtype::F4,          Dtype::F6_E2M3, Dtype::F6_E3M2, Dtype::U8,  Dtype::I8,
    Dtype::F8_E5M2,     Dtype::F8_E4M3,     Dtype::F8_E8M0, Dtype::F8_E4M3FNUZ, Dtype::F8_E5M2FNUZ,
    Dtype::I16,         Dtype::U16,         Dtype::F16,     Dtype::BF16,    Dtype::I32, Dtype::U32,
    Dtype::F32,         Dtype::C64,         Dtype::F64,     Dtype::I64,     Dtype::U64};

//! The dtype's name in the header ("F32", "F8_E4M3", ...).
[[nodiscard]] constexpr std::string_view dtype_name(Dtype d) {
  constexpr std::array<std::string_view, 22> names = {
      "BOOL",    "F4",      "F6_E2M3",     "F6_E3M2",     "U8",  "I8",  "F8_E5M2", "F8_E4M3",
      "F8_E8M0", "F8_E4M3FNUZ", "F8_E5M2FNUZ", "I16",   "U16", "F16", "BF16",    "I32",
      "U32",     "F32",     "C64",         "F64",         "I64", "U64"};
  return names[static_cast<std::size_t>(d)];
}

//! Bits per element (4 for F4, 6 for the F6 types).
[[nodiscard]] constexpr std::uint64_t dtype_bits(Dtype d) {
  switch (d) {
    case Dtype::F4: return 4;
    case Dtype::F6_E2M3:
    case Dtype::F6_E3M2: return 6;
    case Dtype::BOOL:
    case Dtype::U8:
    case Dtype::I8:
    case Dtype::F8_E5M2:
    case Dtype::F8_E4M3:
    case Dtype::F8_E8M0:
    case Dtype::F8_E4M3FNUZ:
    case Dtype::F8_E5M2FNUZ: return 8;
    case Dtype::I16:
    case Dtype::U16:
    case Dtype::F16:
    case Dtype::BF16: return 16;
    case Dtype::I32:
    case Dtype::U32:
    case Dtype::F32: return 32;
    case Dtype::C64:
    case Dtype::F64:
    case Dtype::I64:
    case Dtype::U64: return 64;
  }
  return 0;
}

//! The dtype named `name` exactly (case-sensitive, as the reference), or nullopt.
[[nodiscard]] inline std::optional<Dtype> parse_dtype(std::string_view name) {
  for (Dtype d : all_dtypes) {
    if (dtype_name(d) == name) return d;
  }
  return std::nullopt;
}

//! One tensor entry of a header.
struct TensorInfo {
  std::string name;
  Dtype dtype = Dtype::U8;
  std::vector<std::uint64_t> shape;  //!< element counts (F4/F6: single sub-byte elements)
  std::uint64_t begin = 0;           //!< byte offset of the first byte, relative to the data section
  std::uint64_t end = 0;             //!< one past the last byte, relative to the data section

  [[nodiscard]] std::uint64_t nbytes() const { return end - begin; }
  friend bool operator==(const TensorInfo&, const TensorInfo&) = default;
};

//! A parsed and validated header.
struct Header {
  std::uint64_t header_size = 0;    //!< N: bytes of JSON (with padding) after the 8-byte length
  std::vector<TensorInfo> tensors;  //!< in data order: by (begin, end), then name
  std::map<std::string, std::string> metadata;  //!< "__metadata__"
  bool has_metadata = false;  //!< "__metadata__" was present as an object (null counts as absent)

  //! Where the data section starts in the file.
  [[nodiscard]] std::uint64_t data_offset() const { return 8 + header_size; }
  //! Bytes in the data section.
  [[nodiscard]] std::uint64_t data_size() const { return tensors.empty() ? 0 : tensors.back().end; }
};

//! The reference rejects headers longer than this (100 MB).
inline constexpr std::uint64_t max_header_size = 100'000'000;
//! The reference's JSON parser (serde_json) accepts at most this many nested objects/arrays.
inline constexpr std::size_t max_json_depth = 127;

namespace detail {

using verl::detail::check;
using verl::detail::concat_message;

[[noreturn]] inline void header_error(std::string_view label, const std::string& what) {
  throw InputError(concat_message("verl::checkpoint: `", label, "`: ", what));
}

//! True when [p, p+n) is well-formed UTF-8 (no overlong forms, no surrogates, at most U+10FFFF), as
//! Rust's str::from_utf8 requires. On failure `bad` is the offset of the first invalid byte.
inline bool valid_utf8(const unsigned char* p, std::size_t n, std::size_t& bad) {
  std::size_t i = 0;
  while (i < n) {
    const unsigned char c = p[i];
    std::size_t len = 0;
    unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the second byte
    if (c < 0x80) {
      ++i;
      continue;
    } else if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      if (c == 0xE0) lo = 0xA0;  // overlong
      if (c == 0xED) hi = 0x9F;  // surrogates
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      if (c == 0xF0) lo = 0x90;  // overlong
      if (c == 0xF4) hi = 0x8F;  // beyond U+10FFFF
    } else {
      bad = i;
      return false;
    }
    if (n - i < len || p[i + 1] < lo || p[i + 1] > hi) {
      bad = i;
      return false;
    }
    for (std::size_t k = 2; k < len; ++k) {
      if (p[i + k] < 0x80 || p[i + k] > 0xBF) {
        bad = i;
        return false;
      }
    }
    i += len;
  }
  return true;
}

//! `a * b`, or nullopt on u64 overflow.
inline std::optional<std::uint64_t> checked_mul(std::uint64_t a, std::uint64_t b) {
  if (a != 0 && b > std::numeric_limits<std::uint64_t>::max() / a) return std::nullopt;
  return a * b;
}

//! Formats a shape as "[2, 3]".
inline std::string shape_string(const std::vector<std::uint64_t>& shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

//! Bytes of `shape` elements of `d` the way the reference computes them: the element count folded left
//! with overflow checks, times the dtype's bits, which must be a whole number of bytes. Errors go through
//! `fail(message)`.
template <class Fail>
std::uint64_t byte_size(Dtype d, const std::vector<std::uint64_t>& shape, Fail&& fail) {
  std::uint64_t elements = 1;
  for (std::uint64_t dim : shape) {
    const auto next = checked_mul(elements, dim);
    if (!next) fail(concat_message("shape ", shape_string(shape), " overflows 64 bits when multiplied out"));
    elements = *next;
  }
  const auto bits = checked_mul(elements, dtype_bits(d));
  if (!bits) fail(concat_message("shape ", shape_string(shape), " of ", dtype_name(d), " overflows 64 bits in bits"));
  if (*bits % 8 != 0) {
    fail(concat_message(elements, " elements of ", dtype_name(d), " (", dtype_bits(d),
                        " bits each) are not a whole number of bytes"));
  }
  return *bits / 8;
}

//! SAX handler building the header. Every rule violation throws verl::InputError at once; duplicate keys
//! are rejected (nlohmann's DOM parser would silently keep the last one).
class HeaderSax {
 public:
  using json = nlohmann::json;

  explicit HeaderSax(std::string_view label) : label_(label) {}

  std::vector<TensorInfo> tensors;
  std::map<std::string, std::string> metadata;
  bool has_metadata = false;

  bool null() { return scalar("null"); }
  bool boolean(bool) { return scalar("a boolean"); }
  bool number_integer(json::number_integer_t v) {
    return scalar(v == 0 ? std::string("the negative number -0") : concat_message("the negative number ", v));
  }
  bool number_unsigned(json::number_unsigned_t v) {
    if (top() == Frame::shape) {
      cur_.shape.push_back(v);
      return true;
    }
    if (top() == Frame::offsets) {
      if (offsets_.size() == 2) fail_entry("`data_offsets` has more than 2 elements, expected [begin, end]");
      offsets_.push_back(v);
      return true;
    }
    return scalar(concat_message("the number ", v));
  }
  // Numbers beyond the f64 range never get here: nlohmann reports them as a parse error, as serde_json
  // does, ignored fields included.
  bool number_float(json::number_float_t, const json::string_t& text) {
    return scalar(concat_message("the non-integer number ", text));
  }
  bool string(json::string_t& s) {
    switch (top()) {
      case Frame::metadata: metadata[key_] = s; return true;
      case Frame::entry:
        if (key_ == "dtype") {
          const auto d = parse_dtype(s);
          if (!d) fail_entry(concat_message("unknown dtype \"", s, "\", expected one of ", dtype_list()));
          cur_.dtype = *d;
          have_dtype_ = true;
          return true;
        }
        break;
      default: break;
    }
    return scalar(concat_message("the string \"", s, "\""));
  }
  bool binary(json::binary_t&) { return scalar("binary data"); }

  bool start_object(std::size_t) {
    push_check_depth();
    if (stack_.empty()) {
      stack_.push_back(Frame::top);
      return true;
    }
    switch (top()) {
      case Frame::top:
        if (key_ == "__metadata__") {
          has_metadata = true;
          stack_.push_back(Frame::metadata);
        } else {
          cur_ = TensorInfo{};
          cur_.name = key_;
          have_dtype_ = have_shape_ = have_offsets_ = false;
          offsets_.clear();
          entry_keys_.clear();
          stack_.push_back(Frame::entry);
        }
        return true;
      case Frame::entry:
        if (key_ != "dtype" && key_ != "shape" && key_ != "data_offsets") {
          stack_.push_back(Frame::skip);  // unknown field: ignored, as the reference does
          return true;
        }
        break;
      case Frame::skip: stack_.push_back(Frame::skip); return true;
      default: break;
    }
    return scalar("an object");
  }
  bool key(json::string_t& k) {
    switch (top()) {
      case Frame::top:
        if (!top_keys_.insert(k).second) {
          header_error(label_, k == "__metadata__" ? std::string("`__metadata__` appears twice in the header")
                                                   : concat_message("tensor `", k, "` appears twice in the header"));
        }
        break;
      case Frame::metadata:
        if (metadata.count(k)) header_error(label_, concat_message("`__metadata__` key `", k, "` appears twice"));
        break;
      case Frame::entry:
        if (!entry_keys_.insert(k).second) fail_entry(concat_message("field `", k, "` appears twice"));
        break;
      default: break;
    }
    key_ = std::move(k);
    return true;
  }
  bool end_object() {
    const Frame f = top();
    stack_.pop_back();
    if (f == Frame::entry) {
      if (!have_dtype_) fail_entry("missing field `dtype`");
      if (!have_shape_) fail_entry("missing field `shape`");
      if (!have_offsets_) fail_entry("missing field `data_offsets`");
      cur_.begin = offsets_[0];
      cur_.end = offsets_[1];
      tensors.push_back(std::move(cur_));
      key_.clear();
    } else if (f == Frame::metadata) {
      key_ = "__metadata__";
    }
    return true;
  }
  bool start_array(std::size_t) {
    push_check_depth();
    if (!stack_.empty()) {
      if (top() == Frame::entry && key_ == "shape") {
        cur_.shape.clear();
        stack_.push_back(Frame::shape);
        return true;
      }
      if (top() == Frame::entry && key_ == "data_offsets") {
        offsets_.clear();
        stack_.push_back(Frame::offsets);
        return true;
      }
      if (top() == Frame::skip || (top() == Frame::entry && key_ != "dtype")) {
        stack_.push_back(Frame::skip);
        return true;
      }
    }
    return scalar("an array");
  }
  bool end_array() {
    const Frame f = top();
    stack_.pop_back();
    if (f == Frame::shape) have_shape_ = true;
    if (f == Frame::offsets) {
      if (offsets_.size() != 2) {
        fail_entry(concat_message("`data_offsets` has ", offsets_.size(), " elements, expected [begin, end]"));
      }
      have_offsets_ = true;
    }
    return true;
  }
  bool parse_error(std::size_t position, const std::string&, const nlohmann::detail::exception& ex) {
    header_error(label_, concat_message("the header is not valid JSON (at byte ", position, " of the header): ",
                                        ex.what()));
  }

 private:
  enum class Frame { none, top, metadata, entry, shape, offsets, skip };

  [[nodiscard]] Frame top() const { return stack_.empty() ? Frame::none : stack_.back(); }

  void push_check_depth() {
    if (stack_.size() + 1 > max_json_depth) {
      header_error(label_, concat_message("the header nests JSON deeper than ", max_json_depth, " levels"));
    }
  }

  [[noreturn]] void fail_entry(const std::string& what) const {
    header_error(label_, concat_message("tensor `", cur_.name, "`: ", what));
  }

  static std::string dtype_list() {
    std::string s;
    for (Dtype d : all_dtypes) s += (s.empty() ? "" : ", ") + std::string(dtype_name(d));
    return s;
  }

  //! A value event that no rule accepted at this position: say where it is and what was expected.
  bool scalar(const std::string& what) {
    switch (top()) {
      case Frame::none: header_error(label_, concat_message("the header is ", what, ", expected a JSON object"));
      case Frame::top:
        if (key_ == "__metadata__") {
          if (what == "null") return true;  // null metadata counts as absent, as in the reference
          header_error(label_, concat_message("`__metadata__` is ", what, ", expected an object of strings"));
        }
        header_error(label_, concat_message("tensor `", key_, "` is ", what,
                                            ", expected an object {\"dtype\", \"shape\", \"data_offsets\"}"));
      case Frame::metadata:
        header_error(label_, concat_message("`__metadata__` value of `", key_, "` is ", what, ", expected a string"));
      case Frame::entry:
        if (key_ == "dtype") fail_entry(concat_message("`dtype` is ", what, ", expected a string such as \"F32\""));
        if (key_ == "shape") fail_entry(concat_message("`shape` is ", what, ", expected an array of integers >= 0"));
        if (key_ == "data_offsets") {
          fail_entry(concat_message("`data_offsets` is ", what, ", expected an array [begin, end] of integers >= 0"));
        }
        return true;  // an unknown field's scalar value: ignored
      case Frame::shape:
        fail_entry(concat_message("`shape` element ", cur_.shape.size(), " is ", what, ", expected an integer >= 0"));
      case Frame::offsets:
        fail_entry(concat_message("`data_offsets` element ", offsets_.size(), " is ", what,
                                  ", expected an integer >= 0"));
      case Frame::skip: return true;
    }
    return true;
  }

  std::string_view label_;
  std::vector<Frame> stack_;
  std::string key_;
  TensorInfo cur_;
  bool have_dtype_ = false, have_shape_ = false, have_offsets_ = false;
  std::vector<std::uint64_t> offsets_;
  std::set<std::string> top_keys_, entry_keys_;
};

//! Escapes `s` as a JSON string the way serde_json does: `"` `\` and control characters only, the
//! short forms \b \t \n \f \r, else \u00xx (lowercase hex); other bytes (UTF-8) verbatim.
inline void append_json_string(std::string& out, std::string_view s) {
  constexpr char hex[] = "0123456789abcdef";
  out += '"';
  for (char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\b': out += "\\b"; break;
      case '\t': out += "\\t"; break;
      case '\n': out += "\\n"; break;
      case '\f': out += "\\f"; break;
      case '\r': out += "\\r"; break;
      default:
        if (c < 0x20) {
          out += "\\u00";
          out += hex[c >> 4];
          out += hex[c & 0xF];
        } else {
          out += ch;
        }
    }
  }
  out += '"';
}

//! Parses JSON text (an index file) into a DOM, rejecting duplicate keys at any level and nesting deeper
//! than max_json_depth; errors name `label`.
inline nlohmann::json parse_json_unique_keys(std::string_view text, std::string_view label) {
  using json = nlohmann::json;
  std::vector<std::set<std::string>> keys;
  const json::parser_callback_t callback = [&](int depth, json::parse_event_t event, json& parsed) {
    if (depth > static_cast<int>(max_json_depth)) {
      header_error(label, concat_message("JSON nests deeper than ", max_json_depth, " levels"));
    }
    if (event == json::parse_event_t::object_start) {
      keys.emplace_back();
    } else if (event == json::parse_event_t::key) {
      const auto& k = parsed.get_ref<const std::string&>();
      if (!keys.back().insert(k).second) header_error(label, concat_message("key `", k, "` appears twice"));
    } else if (event == json::parse_event_t::object_end) {
      keys.pop_back();
    }
    return true;
  };
  try {
    return json::parse(text.begin(), text.end(), callback);
  } catch (const json::exception& e) {
    header_error(label, concat_message("not valid JSON: ", e.what()));
  }
}

}  // namespace detail

//! Parses and validates the safetensors file held in [data, data + size) (the whole file; only its first
//! 8 + N bytes are read, `size` checks the data section). `label` (usually the path) starts every error.
//!
//! Accepts exactly what huggingface/safetensors 0.8.0 accepts, except (stricter, on purpose):
//! - the header must start with '{' (the format's spec requires it; the reference only warns about it in a
//!   comment and accepts leading whitespace);
//! - duplicate keys anywhere in the header are rejected (the reference keeps the last of two identical
//!   tensor entries and the last duplicate metadata key);
//! - a tensor entry must be a JSON object (serde also accepts the array form ["F32", [2], [0, 8]]), and its
//!   dtype a string (serde also accepts the enum's map form {"F32": null}).
//! Throws verl::InputError naming `label` and what is wrong.
[[nodiscard]] inline Header parse_header(const void* data, std::size_t size, std::string_view label) {
  using detail::concat_message;
  using detail::header_error;
  const auto* bytes = static_cast<const unsigned char*>(data);
  if (size < 8) {
    header_error(label, concat_message("the file has ", size,
                                       " bytes, fewer than the 8-byte header length that starts a safetensors file"));
  }
  std::uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | bytes[i];  // little-endian u64
  if (n > max_header_size) {
    header_error(label, concat_message("header length ", n, " exceeds the limit of ", max_header_size,
                                       " bytes (is this a safetensors file?)"));
  }
  if (n > size - 8) {
    header_error(label, concat_message("header length ", n, " runs beyond the end of the file (", size,
                                       " bytes, so at most ", size - 8, ")"));
  }
  const unsigned char* json_begin = bytes + 8;
  std::size_t bad = 0;
  if (!detail::valid_utf8(json_begin, n, bad)) {
    header_error(label, concat_message("the header is not valid UTF-8 (byte ", bad, " of the header)"));
  }
  if (n == 0 || json_begin[0] != '{') {
    header_error(label, n == 0 ? std::string("the header is empty, expected a JSON object")
                               : concat_message("the header starts with byte 0x", std::hex,
                                                static_cast<int>(json_begin[0]), std::dec,
                                                ", expected '{' (a JSON object)"));
  }
  // A NUL byte is never valid JSON (nor inside a string, unescaped); nlohmann's lexer would take it for the
  // end of the input and accept what precedes it.
  if (const void* nul = std::memchr(json_begin, 0, n)) {
    header_error(label, concat_message("the header is not valid JSON: NUL byte at byte ",
                                       static_cast<const unsigned char*>(nul) - json_begin, " of the header"));
  }
  detail::HeaderSax sax(label);
  nlohmann::json::sax_parse(json_begin, json_begin + n, &sax, nlohmann::json::input_format_t::json, true);

  Header h;
  h.header_size = n;
  h.metadata = std::move(sax.metadata);
  h.has_metadata = sax.has_metadata;
  h.tensors = std::move(sax.tensors);
  // The reference sorts by data_offsets before validating; names break ties between empty tensors.
  std::sort(h.tensors.begin(), h.tensors.end(), [](const TensorInfo& a, const TensorInfo& b) {
    return std::tie(a.begin, a.end, a.name) < std::tie(b.begin, b.end, b.name);
  });
  std::uint64_t cursor = 0;
  for (const TensorInfo& t : h.tensors) {
    const auto fail = [&](const std::string& what) {
      header_error(label, concat_message("tensor `", t.name, "`: ", what));
    };
    if (t.end < t.begin) {
      fail(concat_message("data_offsets [", t.begin, ", ", t.end, "] end before they begin"));
    }
    if (t.begin != cursor) {
      fail(concat_message("data_offsets [", t.begin, ", ", t.end, "] start at byte ", t.begin, ", expected byte ",
                          cursor, " (sorted by offset, the tensors must tile the data section without ",
                          t.begin < cursor ? "overlaps" : "gaps", ")"));
    }
    cursor = t.end;
    const std::uint64_t want = detail::byte_size(t.dtype, t.shape, fail);
    if (want != t.nbytes()) {
      fail(concat_message(dtype_name(t.dtype), " x shape ", detail::shape_string(t.shape), " is ", want,
                          " bytes but data_offsets [", t.begin, ", ", t.end, "] span ", t.nbytes()));
    }
  }
  const std::uint64_t data_size = size - 8 - n;
  if (cursor != data_size) {
    header_error(label, concat_message("the tensors cover ", cursor, " bytes of data but the file has ", data_size,
                                       " bytes after the header (", size, " - 8 - ", n,
                                       "); expected the tensors to cover the data section exactly"));
  }
  return h;
}

//! What the writer needs to know about one tensor.
struct TensorSpec {
  std::string name;
  Dtype dtype = Dtype::U8;
  std::vector<std::uint64_t> shape;
};

//! The layout of a safetensors file to write.
struct FilePlan {
  std::string prefix;                 //!< 8-byte length, JSON header, space padding to a multiple of 8
  std::vector<std::size_t> order;     //!< indices into the specs, in data order
  std::vector<std::uint64_t> begin;   //!< per spec (spec order): offset in the data section
  std::vector<std::uint64_t> nbytes;  //!< per spec (spec order)
  std::uint64_t data_size = 0;
};

//! Lays out a file like the reference's `serialize`: tensors sorted by dtype (declaration order,
//! descending, so wider types come first and stay aligned), then by name; header JSON compact with
//! "__metadata__" first (when `write_metadata`, keys in sorted order), then the tensors in data order, each
//! {"dtype","shape","data_offsets"}; padded with spaces to a multiple of 8. With at most one metadata key the
//! bytes equal the reference's (it writes several keys in hash order).
//! Throws verl::ConfigError for a duplicate name, the name "__metadata__", a name or metadata string that is
//! not valid UTF-8, or a sub-byte tensor that is not a whole number of bytes.
[[nodiscard]] inline FilePlan plan_safetensors_file(const std::vector<TensorSpec>& specs,
                                                   const std::map<std::string, std::string>& metadata,
                                                   bool write_metadata) {
  using detail::concat_message;
  const auto check_utf8 = [](std::string_view s, std::string_view what) {
    std::size_t bad = 0;
    detail::check<ConfigError>(detail::valid_utf8(reinterpret_cast<const unsigned char*>(s.data()), s.size(), bad),
                               "verl::checkpoint::save_safetensors: ", what, " is not valid UTF-8 (byte ", bad, ")");
  };
  FilePlan plan;
  plan.order.resize(specs.size());
  for (std::size_t i = 0; i < specs.size(); ++i) plan.order[i] = i;
  std::sort(plan.order.begin(), plan.order.end(), [&](std::size_t a, std::size_t b) {
    if (specs[a].dtype != specs[b].dtype) return specs[a].dtype > specs[b].dtype;
    return specs[a].name < specs[b].name;  // byte-wise, as Rust's String ordering
  });
  for (std::size_t k = 1; k < plan.order.size(); ++k) {
    const auto& a = specs[plan.order[k - 1]];
    const auto& b = specs[plan.order[k]];
    detail::check<ConfigError>(a.name != b.name, "verl::checkpoint::save_safetensors: tensor name `", a.name,
                               "` appears twice; expected unique names");
  }
  std::string json = "{";
  if (write_metadata) {
    json += "\"__metadata__\":{";
    bool first = true;
    for (const auto& [k, v] : metadata) {
      check_utf8(k, concat_message("metadata key `", k, "`"));
      check_utf8(v, concat_message("metadata value of `", k, "`"));
      if (!first) json += ',';
      first = false;
      detail::append_json_string(json, k);
      json += ':';
      detail::append_json_string(json, v);
    }
    json += "}";
  }
  plan.begin.assign(specs.size(), 0);
  plan.nbytes.assign(specs.size(), 0);
  std::uint64_t offset = 0;
  for (std::size_t idx : plan.order) {
    const TensorSpec& s = specs[idx];
    detail::check<ConfigError>(s.name != "__metadata__",
                               "verl::checkpoint::save_safetensors: a tensor cannot be named `__metadata__` (the "
                               "header's metadata key)");
    check_utf8(s.name, concat_message("tensor name `", s.name, "`"));
    const std::uint64_t n = detail::byte_size(s.dtype, s.shape, [&](const std::string& what) {
      throw ConfigError(concat_message("verl::checkpoint::save_safetensors: tensor `", s.name, "`: ", what));
    });
    plan.begin[idx] = offset;
    plan.nbytes[idx] = n;
    if (json.size() > 1) json += ',';
    detail::append_json_string(json, s.name);
    json += concat_message(":{\"dtype\":\"", dtype_name(s.dtype), "\",\"shape\":[");
    for (std::size_t d = 0; d < s.shape.size(); ++d) {
      if (d) json += ',';
      json += std::to_string(s.shape[d]);
    }
    json += concat_message("],\"data_offsets\":[", offset, ",", offset + n, "]}");
    offset += n;
  }
  json += '}';
  json.append((8 - json.size() % 8) % 8, ' ');  // the reference aligns the data section to 8 bytes
  plan.data_size = offset;
  plan.prefix.resize(8);
  std::uint64_t len = json.size();
  for (int i = 0; i < 8; ++i) plan.prefix[i] = static_cast<char>((len >> (8 * i)) & 0xFF);
  plan.prefix += json;
  return plan;
}

}  // namespace verl::checkpoint
