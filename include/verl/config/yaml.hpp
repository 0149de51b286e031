#pragma once
//! \file
//! A YAML reader and writer for the subset that training configurations use, parsed into nlohmann's
//! ordered_json (key order as written) plus the source position of every key, so that later errors can say
//! `file:line`.
//!
//! Supported: block mappings and sequences (nested, also the compact `- key: v` form and a sequence at the
//! indentation of its parent key), flow sequences `[a, b]` and flow mappings `{a: 1}` (also over several
//! lines), plain, single- and double-quoted scalars (with YAML's escapes and line folding), multi-line plain
//! scalars, literal `|` and folded `>` block scalars with chomping (`-`, `+`) and indentation indicators,
//! comments, one document (an optional leading `---`, an optional trailing `...`).
//! Scalars are resolved with the YAML 1.2 core schema: `null`/`Null`/`NULL`/`~`/empty, `true`/`True`/`TRUE`/
//! `false`/..., integers (decimal, `0x`, `0o`), floats (`1.5`, `1e-6`, `.inf`, `-.inf`, `.nan`). YAML 1.1's
//! `yes`/`no`/`on`/`off` stay strings (a typed bool field then rejects them by name). OmegaConf
//! interpolations (`${oc.select:a.b,1}`) are plain strings here; verl/config/schema.hpp resolves them.
//!
//! Not supported, and rejected with file:line:column: anchors `&a`, aliases `*a`, tags `!!str`, complex keys
//! `? k`, directives `%YAML`, several documents, tabs in indentation.

#include "verl/core/errors.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

namespace verl::config {

//! The tree type of the configuration layer: JSON values in the order they were written.
using Json = nlohmann::ordered_json;

//! A 1-based source position.
struct Mark {
  int line = 0;
  int column = 0;
};

//! A parsed YAML document: the tree and the position of every key. Paths are dotted (`a.b.c`); sequence items
//! are `a.b[2]`; the root is "".
struct YamlDocument {
  Json root;
  std::map<std::string, Mark> marks;
  std::string file;  //!< the name used in messages

  //! `file:line` of `path`, or of its nearest ancestor that has a position; just `file` when none has.
  [[nodiscard]] std::string where(const std::string& path) const {
    std::string p = path;
    while (true) {
      if (auto it = marks.find(p); it != marks.end()) return file + ":" + std::to_string(it->second.line);
      const auto cut = p.find_last_of(".[");
      if (cut == std::string::npos) break;
      p.resize(cut);
    }
    return file;
  }
};

namespace detail {

//! Joins a parent path and a key: ("", "a") -> "a", ("a", "b") -> "a.b".
[[nodiscard]] inline std::string join_path(const std::string& parent, std::string_view key) {
  return parent.empty() ? std::string(key) : parent + "." + std::string(key);
}

[[nodiscard]] inline bool all_of(std::string_view s, bool (*pred)(char)) {
  for (char c : s)
    if (!pred(c)) return false;
  return !s.empty();
}
inline bool is_dec(char c) { return c >= '0' && c <= '9'; }
inline bool is_oct(char c) { return c >= '0' && c <= '7'; }
inline bool is_hex(char c) { return is_dec(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

//! `t` without leading and trailing blanks (and carriage returns).
[[nodiscard]] inline std::string_view trim_blanks(std::string_view t) {
  auto blank = [](char c) { return c == ' ' || c == '\t' || c == '\r'; };
  while (!t.empty() && blank(t.front())) t.remove_prefix(1);
  while (!t.empty() && blank(t.back())) t.remove_suffix(1);
  return t;
}

//! `[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?`: the core schema's float, which also admits `1e-6`.
[[nodiscard]] inline bool is_core_float(std::string_view s) {
  std::size_t i = 0;
  if (i < s.size() && (s[i] == '-' || s[i] == '+')) ++i;
  std::size_t int_digits = 0, frac_digits = 0;
  while (i < s.size() && is_dec(s[i])) ++i, ++int_digits;
  if (i < s.size() && s[i] == '.') {
    ++i;
    while (i < s.size() && is_dec(s[i])) ++i, ++frac_digits;
  }
  if (int_digits == 0 && frac_digits == 0) return false;
  if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    if (i < s.size() && (s[i] == '-' || s[i] == '+')) ++i;
    std::size_t exp_digits = 0;
    while (i < s.size() && is_dec(s[i])) ++i, ++exp_digits;
    if (exp_digits == 0) return false;
  }
  return i == s.size();
}

}  // namespace detail

//! Resolves a plain (unquoted) scalar with the YAML 1.2 core schema. An integer outside [INT64_MIN,
//! UINT64_MAX] throws verl::ConfigError (`what` names it).
[[nodiscard]] inline Json resolve_plain_scalar(std::string_view s, std::string_view what = "value") {
  using namespace detail;
  if (s.empty() || s == "~" || s == "null" || s == "Null" || s == "NULL") return nullptr;
  if (s == "true" || s == "True" || s == "TRUE") return true;
  if (s == "false" || s == "False" || s == "FALSE") return false;
  const bool sign = !s.empty() && (s[0] == '-' || s[0] == '+');
  const std::string_view body = sign ? s.substr(1) : s;
  const bool negative = sign && s[0] == '-';
  auto integer = [&](std::string_view digits, int base) -> Json {
    std::uint64_t magnitude = 0;
    const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), magnitude, base);
    const bool fits = ec == std::errc{} && end == digits.data() + digits.size() &&
                      (!negative || magnitude <= std::uint64_t{1} << 63);
    verl::detail::check<ConfigError>(fits, "verl::config: ", what, ": integer `", s,
                                     "` is out of range (expected -2^63 .. 2^64-1)");
    if (negative) return magnitude == (std::uint64_t{1} << 63) ? std::numeric_limits<std::int64_t>::min()
                                                               : -static_cast<std::int64_t>(magnitude);
    if (magnitude <= static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
      return static_cast<std::int64_t>(magnitude);
    return magnitude;
  };
  if (all_of(body, is_dec)) return integer(body, 10);
  if (!sign && s.size() > 2 && s[0] == '0' && s[1] == 'x' && all_of(s.substr(2), is_hex)) return integer(s.substr(2), 16);
  if (!sign && s.size() > 2 && s[0] == '0' && s[1] == 'o' && all_of(s.substr(2), is_oct)) return integer(s.substr(2), 8);
  if (body == ".inf" || body == ".Inf" || body == ".INF")
    return negative ? -std::numeric_limits<double>::infinity() : std::numeric_limits<double>::infinity();
  if (s == ".nan" || s == ".NaN" || s == ".NAN") return std::numeric_limits<double>::quiet_NaN();
  if (is_core_float(s)) {
    // from_chars rejects a leading '+'.
    const std::string_view t = (s[0] == '+') ? s.substr(1) : s;
    double v = 0;
    const auto [end, ec] = std::from_chars(t.data(), t.data() + t.size(), v);
    if (ec == std::errc::result_out_of_range) {  // overflow to +-inf, underflow to +-0, as YAML loaders do
      const bool tiny = t.find_first_of("eE") != std::string_view::npos && t[t.find_first_of("eE") + 1] == '-';
      v = tiny ? 0.0 : std::numeric_limits<double>::infinity();
      if (negative) v = -v;
    }
    return v;
  }
  return std::string(s);
}

namespace detail {

//! The parser. One instance per text; not reusable.
class YamlParser {
 public:
  YamlParser(std::string_view text, std::string file, YamlDocument& doc) : s_(text), file_(std::move(file)), doc_(doc) {
    line_starts_.push_back(0);
    for (std::size_t i = 0; i < s_.size(); ++i)
      if (s_[i] == '\n') line_starts_.push_back(i + 1);
  }

  Json parse_document() {
    skip_to_content();
    if (!eof() && col() == 0 && starts_with("%")) fail(here(), "directives (`%YAML`, `%TAG`) are not supported");
    if (!eof() && col() == 0 && is_document_marker("---")) {
      pos_ += 3;
      skip_inline_space();
      if (!at_line_end()) fail(here(), "content after `---` on the same line is not supported");
    }
    doc_.marks[""] = here();
    Json root = parse_block_node(-1, "");
    skip_to_content();
    if (!eof() && col() == 0 && is_document_marker("...")) {
      pos_ += 3;
      skip_to_content();
    }
    if (!eof()) {
      if (col() == 0 && is_document_marker("---")) fail(here(), "several documents in one file are not supported");
      fail(here(), "unexpected content: expected the end of the document (is the indentation right?)");
    }
    return root;
  }

  //! One value on one line (command-line override): flow collection, quoted or plain scalar. Plain text is
  //! taken whole (it may contain `: ` and ` #`); empty text is the empty string, as Hydra does.
  Json parse_override_value() {
    if (s_.empty()) return std::string();
    const char c = s_[0];
    Json v;
    if (c == '[' || c == '{') {
      v = parse_flow(-1, "");
    } else if (c == '"' || c == '\'') {
      v = parse_quoted(-1);
    } else {
      return resolve(std::string(trim(s_)), here());
    }
    skip_inline_space();
    if (!eof()) fail(here(), "unexpected text after the value");
    return v;
  }

 private:
  std::string_view s_;
  std::string file_;
  YamlDocument& doc_;
  std::size_t pos_ = 0;
  std::vector<std::size_t> line_starts_;  // offsets of the line starts, for O(log n) line numbers

  // ---- position helpers -------------------------------------------------------------------------------------
  [[nodiscard]] bool eof() const { return pos_ >= s_.size(); }
  [[nodiscard]] char peek(std::size_t k = 0) const { return pos_ + k < s_.size() ? s_[pos_ + k] : '\0'; }
  [[nodiscard]] std::size_t line_start(std::size_t p) const {
    while (p > 0 && s_[p - 1] != '\n') --p;
    return p;
  }
  [[nodiscard]] int col() const { return static_cast<int>(pos_ - line_start(pos_)); }
  [[nodiscard]] Mark mark_at(std::size_t p) const {
    const auto it = std::upper_bound(line_starts_.begin(), line_starts_.end(), p);  // first start after p
    const auto line = static_cast<int>(it - line_starts_.begin());
    return {line, static_cast<int>(p - *(it - 1)) + 1};
  }
  [[nodiscard]] Mark here() const { return mark_at(pos_); }
  [[nodiscard]] bool starts_with(std::string_view t) const { return s_.substr(pos_, t.size()) == t; }
  [[nodiscard]] static bool is_blank(char c) { return c == ' ' || c == '\t'; }
  [[nodiscard]] static bool is_break(char c) { return c == '\n' || c == '\r' || c == '\0'; }
  [[nodiscard]] bool at_line_end() const { return eof() || is_break(peek()) || peek() == '#'; }
  [[nodiscard]] bool is_document_marker(std::string_view m) const {
    return starts_with(m) && (is_break(peek(3)) || is_blank(peek(3)));
  }
  //! `-` followed by a space or the end of the line: a block sequence entry.
  [[nodiscard]] bool at_seq_indicator() const { return peek() == '-' && (is_blank(peek(1)) || is_break(peek(1))); }

  static std::string_view trim(std::string_view t) { return trim_blanks(t); }

  [[noreturn]] void fail(Mark m, std::string_view what) const {
    throw ConfigError(verl::detail::concat_message("verl::config: ", file_, ":", m.line, ":", m.column, ": ", what));
  }

  void skip_inline_space() {
    while (!eof() && is_blank(peek())) ++pos_;
  }
  void skip_to_line_end() {
    while (!eof() && peek() != '\n') ++pos_;
  }
  //! Skips blanks, comments and line breaks up to the next content character. A tab in the indentation of a
  //! content line is an error.
  void skip_to_content() {
    while (!eof()) {
      const char c = peek();
      if (c == ' ' || c == '\r' || c == '\n') {
        ++pos_;
      } else if (c == '\t') {
        // Tabs are allowed after content and on lines with nothing but a comment; not to indent content.
        const std::size_t ls = line_start(pos_);
        bool only_blanks_before = true;
        for (std::size_t i = ls; i < pos_; ++i) only_blanks_before &= is_blank(s_[i]);
        std::size_t q = pos_;
        while (q < s_.size() && is_blank(s_[q])) ++q;
        const bool content_follows = q < s_.size() && !is_break(s_[q]) && s_[q] != '#';
        if (only_blanks_before && content_follows)
          fail(mark_at(pos_), "a tab character in the indentation; YAML allows only spaces to indent");
        ++pos_;
      } else if (c == '#') {
        skip_to_line_end();
      } else {
        return;
      }
    }
  }
  //! True when the content at pos_ is the first on its line (only blanks before it).
  [[nodiscard]] bool first_on_line() const {
    for (std::size_t i = line_start(pos_); i < pos_; ++i)
      if (!is_blank(s_[i])) return false;
    return true;
  }

  void reject_unsupported_start() const {
    switch (peek()) {
      case '&': fail(here(), "anchors (`&name`) are not supported; write the value out");
      case '*': fail(here(), "aliases (`*name`) are not supported; write the value out");
      case '!': fail(here(), "tags (`!tag`, `!!str`) are not supported; quote the value for a string");
      case '%': fail(here(), "directives (`%...`) are not supported");
      case '@':
      case '`': fail(here(), "`@` and backquote are reserved in YAML and cannot start a plain scalar; quote it");
      case '?':
        if (is_blank(peek(1)) || is_break(peek(1))) fail(here(), "complex mapping keys (`? key`) are not supported");
        break;
      default: break;
    }
  }

  Json resolve(const std::string& plain, Mark m) const {
    try {
      return resolve_plain_scalar(plain, "scalar");
    } catch (const ConfigError&) {
      fail(m, "integer `" + plain + "` is out of range (expected -2^63 .. 2^64-1)");
    }
  }

  //! Is the line from pos_ a `key: ...` entry? (quoted or plain key followed by `:` and a blank or line end)
  [[nodiscard]] bool is_key_line() const {
    std::size_t q = pos_;
    const char c = peek();
    if (c == '[' || c == '{') return false;
    if (c == '"' || c == '\'') {
      ++q;
      while (q < s_.size() && s_[q] != '\n') {
        if (c == '"' && s_[q] == '\\') {
          q += 2;
          continue;
        }
        if (s_[q] == c) {
          if (c == '\'' && q + 1 < s_.size() && s_[q + 1] == '\'') {
            q += 2;
            continue;
          }
          break;
        }
        ++q;
      }
      if (q >= s_.size() || s_[q] != c) return false;
      ++q;
      while (q < s_.size() && is_blank(s_[q])) ++q;
      return q < s_.size() && s_[q] == ':' && (q + 1 >= s_.size() || is_blank(s_[q + 1]) || is_break(s_[q + 1]));
    }
    for (; q < s_.size() && s_[q] != '\n'; ++q) {
      if (s_[q] == '#' && q > pos_ && is_blank(s_[q - 1])) return false;
      if (s_[q] == ':' && (q + 1 >= s_.size() || is_blank(s_[q + 1]) || is_break(s_[q + 1]))) return true;
    }
    return false;
  }

  // ---- block structure --------------------------------------------------------------------------------------
  //! The value of a key (or sequence entry) whose text is on the following lines, more indented than
  //! `parent_indent`; null when there is none.
  Json parse_block_node(int parent_indent, const std::string& path) {
    skip_to_content();
    if (eof() || col() <= parent_indent) return nullptr;
    if (col() == 0 && (is_document_marker("---") || is_document_marker("..."))) return nullptr;
    return parse_node_at(parent_indent, path);
  }

  //! A node starting at pos_ (its column is its indentation).
  Json parse_node_at(int parent_indent, const std::string& path) {
    const int c = col();
    reject_unsupported_start();
    if (at_seq_indicator()) return parse_block_seq(c, path);
    if (peek() == '|' || peek() == '>') return parse_block_scalar(parent_indent);
    if (is_key_line()) return parse_block_map(c, path);
    return parse_inline_value(parent_indent, path);
  }

  Json parse_key(Mark m) {
    if (peek() == '"' || peek() == '\'') {
      Json k = parse_quoted(-1);
      skip_inline_space();
      return k;
    }
    reject_unsupported_start();
    if (std::string_view("]}[{,|>").find(peek()) != std::string_view::npos)
      fail(m, std::string("a plain key cannot start with `") + peek() + "`; quote the key");
    const std::size_t start = pos_;
    while (!eof() && !(peek() == ':' && (is_blank(peek(1)) || is_break(peek(1))))) ++pos_;
    const std::string text(trim(s_.substr(start, pos_ - start)));
    if (text.empty()) fail(m, "empty mapping key");
    return text;
  }

  static std::string key_string(const Json& k) {
    // A plain key is kept as written (`1:` is the key "1"); quoted keys are strings already.
    return k.is_string() ? k.get<std::string>() : k.dump();
  }

  Json parse_block_map(int indent, const std::string& path) {
    Json obj = Json::object();
    std::map<std::string, int> first_line;
    while (true) {
      const Mark km = here();
      if (at_seq_indicator()) fail(km, "expected a `key: value` entry of the mapping at column " +
                                           std::to_string(indent + 1) + ", found a sequence entry `- `");
      if (!is_key_line()) fail(km, "expected a `key: value` entry (a key followed by `: `)");
      const std::string key = key_string(parse_key(km));
      ++pos_;  // ':'
      if (auto it = first_line.find(key); it != first_line.end())
        fail(km, "duplicate key `" + key + "` (first defined at line " + std::to_string(it->second) + ")");
      first_line[key] = km.line;
      const std::string child = join_path(path, key);
      doc_.marks[child] = km;
      skip_inline_space();
      Json value;
      if (at_line_end()) {
        skip_to_content();
        if (eof()) {
          value = nullptr;
        } else if (col() > indent) {
          value = parse_node_at(indent, child);
        } else if (col() == indent && at_seq_indicator()) {
          value = parse_block_seq(indent, child);  // `key:\n- a`: a sequence may sit at its key's indentation
        } else {
          value = nullptr;
        }
      } else {
        if (at_seq_indicator()) fail(here(), "a block sequence cannot start on the line of its key; move `- ` to the next line");
        if (is_key_line() && peek() != '"' && peek() != '\'')
          fail(here(), "a mapping cannot start on the line of its key; move `" + std::string(trim(s_.substr(pos_, s_.find(':', pos_) - pos_))) +
                           ":` to the next line, indented");
        value = (peek() == '|' || peek() == '>') ? parse_block_scalar(indent) : parse_inline_value(indent, child);
      }
      obj[key] = std::move(value);
      skip_to_content();
      if (eof() || col() < indent) break;
      if (col() == 0 && (is_document_marker("---") || is_document_marker("..."))) break;
      if (!first_on_line()) fail(here(), "unexpected text after the value (a second entry on the same line?)");
      if (col() > indent)
        fail(here(), "bad indentation: expected a key at column " + std::to_string(indent + 1) + ", found text at column " +
                         std::to_string(col() + 1));
      if (at_seq_indicator()) break;  // the parent mapping's `key:\n- a` sequence ended; let the caller decide
    }
    return obj;
  }

  Json parse_block_seq(int indent, const std::string& path) {
    Json arr = Json::array();
    while (true) {
      const Mark im = here();
      const std::string item = path + "[" + std::to_string(arr.size()) + "]";
      doc_.marks[item] = im;
      ++pos_;  // '-'
      skip_inline_space();
      if (at_line_end()) {
        arr.push_back(parse_block_node(indent, item));
      } else {
        arr.push_back(parse_node_at(indent, item));
      }
      skip_to_content();
      if (eof() || col() < indent) break;
      if (col() == 0 && (is_document_marker("---") || is_document_marker("..."))) break;
      if (!first_on_line()) fail(here(), "unexpected text after the sequence entry");
      if (col() > indent)
        fail(here(), "bad indentation: expected `- ` at column " + std::to_string(indent + 1) + ", found text at column " +
                         std::to_string(col() + 1));
      if (!at_seq_indicator()) break;  // e.g. the next key of a mapping at the same indentation
    }
    return arr;
  }

  //! A value that starts on the current line: flow collection, quoted or plain scalar (plain may continue on
  //! more-indented lines). Leaves pos_ at the end of its last line.
  Json parse_inline_value(int parent_indent, const std::string& path) {
    reject_unsupported_start();
    Json v;
    const char c = peek();
    if (c == '[' || c == '{') {
      v = parse_flow(parent_indent, path);
    } else if (c == '"' || c == '\'') {
      v = parse_quoted(parent_indent);
    } else {
      return parse_plain_block(parent_indent);
    }
    skip_inline_space();
    if (!at_line_end()) fail(here(), "unexpected text after the value");
    return v;
  }

  //! Reads plain text on the current line up to ` #` or the line end.
  std::string_view read_plain_line() {
    const std::size_t start = pos_;
    while (!eof() && peek() != '\n' && !(peek() == '#' && pos_ > start && is_blank(s_[pos_ - 1]))) ++pos_;
    return trim(s_.substr(start, pos_ - start));
  }

  Json parse_plain_block(int parent_indent) {
    const Mark m = here();
    if (peek() == ']' || peek() == '}' || peek() == ',')
      fail(m, std::string("a plain scalar cannot start with `") + peek() + "`; quote the value");
    std::string text(read_plain_line());
    // Continuation lines: more indented than the parent, not a comment; blank lines become line feeds.
    while (true) {
      if (!eof() && peek() == '#') break;  // a comment ends the scalar
      const std::size_t save = pos_;
      int blank_lines = 0;
      std::size_t q = pos_;
      bool found = false;
      while (q < s_.size()) {
        if (s_[q] != '\n') {
          ++q;
          continue;
        }
        ++q;  // start of the next line
        std::size_t r = q;
        while (r < s_.size() && (s_[r] == ' ' || s_[r] == '\t')) ++r;
        if (r >= s_.size()) break;
        if (s_[r] == '\n' || s_[r] == '\r') {
          ++blank_lines;
          q = r;
          continue;
        }
        const int indent = static_cast<int>(r - q);
        if (indent > parent_indent && s_[r] != '#' &&
            !(indent == 0 && (s_.substr(r, 3) == "---" || s_.substr(r, 3) == "..."))) {
          pos_ = r;
          found = true;
        }
        break;
      }
      if (!found) {
        pos_ = save;
        break;
      }
      if (is_key_line()) fail(here(), "bad indentation of a mapping entry (or a plain value containing `: `; quote it)");
      const Mark line_mark = here();
      const std::string_view more = read_plain_line();
      if (more.find(": ") != std::string_view::npos || more.back() == ':')
        fail(line_mark, "a plain value continued on this line contains `: ` (a mapping entry at a wrong indentation?); "
                        "quote the value or fix the indentation");
      text += blank_lines == 0 ? std::string(" ") : std::string(static_cast<std::size_t>(blank_lines), '\n');
      text += more;
    }
    return resolve(text, m);
  }

  //! Folds the line breaks inside a quoted scalar: one break is a space, n>1 breaks are n-1 line feeds.
  void fold_quoted_break(std::string& out) {
    while (!out.empty() && is_blank(out.back())) out.pop_back();
    int breaks = 0;
    while (!eof() && (peek() == '\n' || peek() == '\r' || is_blank(peek()))) {
      breaks += peek() == '\n';
      ++pos_;
    }
    out += breaks <= 1 ? std::string(" ") : std::string(static_cast<std::size_t>(breaks - 1), '\n');
  }

  static void append_utf8(std::string& out, std::uint32_t cp) {
    if (cp < 0x80) {
      out += static_cast<char>(cp);
    } else if (cp < 0x800) {
      out += static_cast<char>(0xC0 | (cp >> 6));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += static_cast<char>(0xE0 | (cp >> 12));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      out += static_cast<char>(0xF0 | (cp >> 18));
      out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }

  Json parse_quoted(int /*parent_indent*/) {
    const Mark open = here();
    const char q = peek();
    ++pos_;
    std::string out;
    while (true) {
      if (eof())
        fail(open, std::string("unterminated ") + (q == '"' ? "double" : "single") +
                       "-quoted string: expected a closing " + (q == '"' ? "`\"`" : "`'`"));
      const char c = peek();
      if (c == q) {
        if (q == '\'' && peek(1) == '\'') {
          out += '\'';
          pos_ += 2;
          continue;
        }
        ++pos_;
        return out;
      }
      if (c == '\n' || c == '\r') {
        fold_quoted_break(out);
        continue;
      }
      if (q == '"' && c == '\\') {
        const Mark esc = here();
        ++pos_;
        const char e = peek();
        if (e == '\n' || e == '\r') {  // escaped line break: join without a space
          while (!eof() && (peek() == '\n' || peek() == '\r')) ++pos_;
          skip_inline_space();
          continue;
        }
        ++pos_;
        auto hex = [&](int n) {
          std::uint32_t v = 0;
          for (int i = 0; i < n; ++i) {
            const char h = peek();
            if (!is_hex(h)) fail(esc, "bad escape: expected " + std::to_string(n) + " hex digits after `\\" + std::string(1, e) + "`");
            v = v * 16 + static_cast<std::uint32_t>(is_dec(h) ? h - '0' : (h | 0x20) - 'a' + 10);
            ++pos_;
          }
          return v;
        };
        switch (e) {
          case '0': out += '\0'; break;
          case 'a': out += '\a'; break;
          case 'b': out += '\b'; break;
          case 't':
          case '\t': out += '\t'; break;
          case 'n': out += '\n'; break;
          case 'v': out += '\v'; break;
          case 'f': out += '\f'; break;
          case 'r': out += '\r'; break;
          case 'e': out += '\x1b'; break;
          case ' ': out += ' '; break;
          case '"': out += '"'; break;
          case '/': out += '/'; break;
          case '\\': out += '\\'; break;
          case 'N': append_utf8(out, 0x85); break;
          case '_': append_utf8(out, 0xA0); break;
          case 'L': append_utf8(out, 0x2028); break;
          case 'P': append_utf8(out, 0x2029); break;
          case 'x': append_utf8(out, hex(2)); break;
          case 'u': append_utf8(out, hex(4)); break;
          case 'U': append_utf8(out, hex(8)); break;
          default: fail(esc, std::string("unknown escape `\\") + e + "` in a double-quoted string");
        }
        continue;
      }
      out += c;
      ++pos_;
    }
  }

  //! `|` or `>` block scalar; `parent_indent` is the indentation of the node that owns it.
  Json parse_block_scalar(int parent_indent) {
    const bool folded = peek() == '>';
    ++pos_;
    enum class Chomp { clip, strip, keep } chomp = Chomp::clip;
    int explicit_indent = 0;
    for (int i = 0; i < 2; ++i) {
      if (peek() == '-' || peek() == '+') {
        chomp = peek() == '-' ? Chomp::strip : Chomp::keep;
        ++pos_;
      } else if (peek() >= '1' && peek() <= '9') {
        explicit_indent = peek() - '0';
        ++pos_;
      }
    }
    skip_inline_space();
    if (!at_line_end()) fail(here(), "expected a line break after the block scalar header (`|`, `>`, `|-`, `>+`, `|2`)");
    skip_to_line_end();
    if (!eof()) ++pos_;  // the header's line break
    // Collect the lines of the scalar.
    const int base = parent_indent < 0 ? 0 : parent_indent;
    int indent = explicit_indent > 0 ? base + explicit_indent : -1;
    if (indent < 0) {  // auto-detect: the first non-empty line, at least parent+1
      std::size_t q = pos_;
      int max_blank = 0;
      while (q < s_.size()) {
        std::size_t r = q;
        while (r < s_.size() && s_[r] == ' ') ++r;
        if (r < s_.size() && s_[r] != '\n' && s_[r] != '\r') {
          indent = static_cast<int>(r - q);
          break;
        }
        max_blank = std::max(max_blank, static_cast<int>(r - q));
        if (r >= s_.size()) break;
        q = r + 1;
        if (s_[r] == '\r' && q < s_.size() && s_[q] == '\n') ++q;
      }
      indent = std::max({indent, max_blank, parent_indent + 1, 1});
    }
    std::string out;
    int pending = 0;
    bool any = false, prev_more = false, last_had_break = false;
    while (!eof()) {
      const std::size_t ls = pos_;
      std::size_t r = ls;
      while (r < s_.size() && s_[r] == ' ' && static_cast<int>(r - ls) < indent) ++r;
      const int spaces = static_cast<int>(r - ls);
      std::size_t le = r;
      while (le < s_.size() && s_[le] != '\n') ++le;
      std::string_view line = s_.substr(r, le - r);
      if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
      // Empty: nothing but blanks before the content indentation, or nothing at all after it (more spaces after
      // the indentation are content of a literal scalar).
      const bool empty = spaces < indent ? trim(line).empty() : line.empty();
      if (spaces < indent && !empty) break;  // a less-indented content line ends the scalar
      pos_ = le < s_.size() ? le + 1 : le;
      const bool has_break = le < s_.size();
      if (empty) {
        ++pending;
        continue;
      }
      const bool more = line[0] == ' ' || line[0] == '\t';
      if (!any) {
        out.append(static_cast<std::size_t>(pending), '\n');
      } else if (folded && !prev_more && !more) {
        out += pending == 0 ? std::string(" ") : std::string(static_cast<std::size_t>(pending), '\n');
      } else {
        out.append(static_cast<std::size_t>(pending) + 1, '\n');
      }
      out += line;
      pending = 0;
      any = true;
      prev_more = more;
      last_had_break = has_break;
    }
    if (chomp == Chomp::clip && any && last_had_break) out += '\n';
    if (chomp == Chomp::keep) {
      if (any && last_had_break) out += '\n';
      out.append(static_cast<std::size_t>(pending), '\n');
    }
    // pos_ is at the start of the line that ended the scalar; step back onto the previous line's end so that
    // the caller's skip_to_content sees the next line as a fresh line.
    if (pos_ > 0 && pos_ <= s_.size() && s_[pos_ - 1] == '\n') --pos_;
    return out;
  }

  // ---- flow collections -------------------------------------------------------------------------------------
  void skip_flow_space() {
    while (!eof()) {
      const char c = peek();
      if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
        ++pos_;
      } else if (c == '#' && (pos_ == 0 || is_blank(s_[pos_ - 1]) || s_[pos_ - 1] == '\n')) {
        skip_to_line_end();
      } else {
        return;
      }
    }
  }

  [[nodiscard]] static bool is_flow_indicator(char c) { return c == ',' || c == '[' || c == ']' || c == '{' || c == '}'; }

  //! A plain scalar inside a flow collection: up to `,[]{}`, `: ` or ` #`; line breaks fold to spaces.
  std::string read_flow_plain(bool as_key) {
    std::string text;
    while (!eof()) {
      const char c = peek();
      if (is_flow_indicator(c)) break;
      if (c == ':' && (is_blank(peek(1)) || is_break(peek(1)) || is_flow_indicator(peek(1)) || as_key)) break;
      if (c == '#' && !text.empty() && is_blank(text.back())) break;
      if (c == '\n' || c == '\r') {
        while (!text.empty() && is_blank(text.back())) text.pop_back();
        skip_flow_space();
        if (!text.empty()) text += ' ';
        continue;
      }
      text += c;
      ++pos_;
    }
    return std::string(trim(text));
  }

  Json parse_flow_node(int parent_indent, const std::string& path, bool as_key = false) {
    reject_unsupported_start();
    const Mark m = here();
    const char c = peek();
    if (!as_key && (c == '[' || c == '{')) return parse_flow(parent_indent, path);
    if (c == '"' || c == '\'') return parse_quoted(parent_indent);
    if (c == ',' || c == ']' || c == '}') fail(m, std::string("empty entry in a flow collection (unexpected `") + c + "`)");
    std::string text = read_flow_plain(as_key);
    if (as_key) return text;
    return resolve(text, m);
  }

  Json parse_flow(int parent_indent, const std::string& path) {
    const Mark open = here();
    const bool seq = peek() == '[';
    const char close = seq ? ']' : '}';
    ++pos_;
    Json out = seq ? Json::array() : Json::object();
    std::map<std::string, int> first_line;
    while (true) {
      skip_flow_space();
      if (eof()) fail(open, std::string("unterminated flow ") + (seq ? "sequence: expected `]`" : "mapping: expected `}`"));
      if (peek() == close) {
        ++pos_;
        return out;
      }
      const Mark em = here();
      if (seq) {
        const std::string item = path + "[" + std::to_string(out.size()) + "]";
        doc_.marks[item] = em;
        out.push_back(parse_flow_node(parent_indent, item));
        skip_flow_space();
        if (peek() == ':') fail(here(), "single-pair mappings inside a flow sequence (`[a: 1]`) are not supported; write `[{a: 1}]`");
      } else {
        Json k = parse_flow_node(parent_indent, path, /*as_key=*/true);
        const std::string key = key_string(k);
        if (key.empty() && !k.is_string()) fail(em, "empty key in a flow mapping");
        if (auto it = first_line.find(key); it != first_line.end())
          fail(em, "duplicate key `" + key + "` (first defined at line " + std::to_string(it->second) + ")");
        first_line[key] = em.line;
        const std::string child = join_path(path, key);
        doc_.marks[child] = em;
        skip_flow_space();
        if (peek() == ':') {
          ++pos_;
          skip_flow_space();
          if (peek() == ',' || peek() == '}') {
            out[key] = nullptr;
          } else {
            out[key] = parse_flow_node(parent_indent, child);
          }
        } else {
          out[key] = nullptr;  // `{a, b}`: keys with null values
        }
      }
      skip_flow_space();
      if (peek() == ',') {
        ++pos_;
        continue;
      }
      if (peek() == close) continue;
      if (eof()) fail(open, std::string("unterminated flow ") + (seq ? "sequence: expected `]`" : "mapping: expected `}`"));
      fail(here(), std::string("expected `,` or `") + close + "` in a flow " + (seq ? "sequence" : "mapping"));
    }
  }
};

}  // namespace detail

//! Parses YAML `text`; `file` names it in messages. \throws verl::ConfigError "file:line:column: what".
[[nodiscard]] inline YamlDocument parse_yaml(std::string_view text, std::string file = "<yaml>") {
  YamlDocument doc;
  doc.file = file;
  // A UTF-8 byte order mark is allowed at the start.
  if (text.substr(0, 3) == "\xEF\xBB\xBF") text.remove_prefix(3);
  detail::YamlParser parser(text, std::move(file), doc);
  doc.root = parser.parse_document();
  return doc;
}

//! Reads and parses a YAML file. \throws verl::ConfigError naming the path when it cannot be read.
[[nodiscard]] inline YamlDocument parse_yaml_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  verl::detail::check<ConfigError>(static_cast<bool>(in), "verl::config: cannot read the configuration file `",
                                   path.string(), "`");
  std::ostringstream text;
  text << in.rdbuf();
  return parse_yaml(text.str(), path.string());
}

//! Parses one value as written on a command line after `key=`: a flow collection (`[a, b]`, `{a: 1}`), a
//! quoted string, or a plain scalar resolved with the core schema (`1e-6`, `null`, `true`, `text`). The empty
//! text is the empty string (Hydra's rule). `what` names the override in messages.
[[nodiscard]] inline Json parse_yaml_value(std::string_view text, std::string what = "<value>") {
  YamlDocument doc;
  doc.file = what;
  detail::YamlParser parser(text, std::move(what), doc);
  return parser.parse_override_value();
}

namespace detail {

//! The text a float is written as: the shortest that reads back to the same double, always with a `.`,
//! an exponent or YAML's `.inf`/`.nan`, so that it reads back as a float.
[[nodiscard]] inline std::string format_float(double v) {
  if (std::isnan(v)) return ".nan";
  if (std::isinf(v)) return v > 0 ? ".inf" : "-.inf";
  char buf[64];
  const auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  std::string s(buf, end);
  // A '.' in the mantissa also makes YAML 1.1 readers (PyYAML, OmegaConf) read a float: 1.0e-06, not 1e-06.
  const auto e = s.find('e');
  if (s.find('.') == std::string::npos) {
    if (e == std::string::npos) s += ".0";
    else s.insert(e, ".0");
  }
  return s;
}

//! Does `s` need quotes to read back as the same string?
[[nodiscard]] inline bool needs_quotes(const std::string& s) {
  if (s.empty()) return true;
  if (!resolve_plain_scalar(s).is_string()) return true;  // would read back as null, bool or number
  const unsigned char first = static_cast<unsigned char>(s.front());
  if (std::string_view("-?:,[]{}#&*!|>'\"%@`. \t").find(static_cast<char>(first)) != std::string_view::npos) return true;
  if (s.back() == ' ' || s.back() == '\t' || s.back() == ':') return true;
  if (s.find(": ") != std::string::npos || s.find(" #") != std::string::npos || s.find(":\t") != std::string::npos ||
      s.find("\t#") != std::string::npos)
    return true;
  for (unsigned char c : s)
    if (c < 0x20 || c == 0x7f) return true;
  // YAML 1.1 loaders (PyYAML, OmegaConf) read these as booleans; quote them for those readers.
  std::string lower;
  for (char c : s) lower += static_cast<char>(c >= 'A' && c <= 'Z' ? c + 32 : c);
  for (const char* w : {"y", "n", "yes", "no", "on", "off"})
    if (lower == w) return true;
  return false;
}

[[nodiscard]] inline std::string quote(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      case '\r': out += "\\r"; break;
      case '\0': out += "\\0"; break;
      default:
        if (c < 0x20 || c == 0x7f) {
          const char* digits = "0123456789ABCDEF";
          out += "\\x";
          out += digits[c >> 4];
          out += digits[c & 15];
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out + "\"";
}

[[nodiscard]] inline std::string scalar_text(const Json& v) {
  switch (v.type()) {
    case Json::value_t::null: return "null";
    case Json::value_t::boolean: return v.get<bool>() ? "true" : "false";
    case Json::value_t::number_integer: return std::to_string(v.get<std::int64_t>());
    case Json::value_t::number_unsigned: return std::to_string(v.get<std::uint64_t>());
    case Json::value_t::number_float: return format_float(v.get<double>());
    case Json::value_t::string: {
      const auto& s = v.get_ref<const std::string&>();
      return needs_quotes(s) ? quote(s) : s;
    }
    default: throw ConfigError("verl::config::to_yaml: unsupported JSON value type (binary or discarded)");
  }
}

inline void emit_yaml(const Json& v, int indent, std::string& out) {
  const std::string pad(static_cast<std::size_t>(indent), ' ');
  if (v.is_object()) {
    for (const auto& [key, value] : v.items()) {
      out += pad + scalar_text(Json(key)) + ":";
      if ((value.is_object() || value.is_array()) && !value.empty()) {
        out += "\n";
        emit_yaml(value, indent + 2, out);
      } else {
        out += " " + (value.is_object() ? std::string("{}") : value.is_array() ? std::string("[]") : scalar_text(value)) + "\n";
      }
    }
  } else if (v.is_array()) {
    for (const auto& item : v) {
      if ((item.is_object() || item.is_array()) && !item.empty()) {
        std::string inner;
        emit_yaml(item, indent + 2, inner);
        out += pad + "- " + inner.substr(static_cast<std::size_t>(indent) + 2);
      } else {
        out += pad + "- " +
               (item.is_object() ? std::string("{}") : item.is_array() ? std::string("[]") : scalar_text(item)) + "\n";
      }
    }
  } else {
    out += pad + scalar_text(v) + "\n";
  }
}

}  // namespace detail

//! Block-style YAML for `v` that parse_yaml reads back to an equal tree (floats as shortest round-trip
//! text; strings quoted where they would otherwise read as another type or break the syntax; empty
//! containers as `{}`/`[]`).
[[nodiscard]] inline std::string to_yaml(const Json& v) {
  std::string out;
  if ((v.is_object() || v.is_array()) && v.empty()) return v.is_object() ? "{}\n" : "[]\n";
  detail::emit_yaml(v, 0, out);
  return out;
}

//! One-line flow-style YAML of `v` (`[a, b]`, `{a: 1}`, `1.0e-06`): for messages and the reference tables.
[[nodiscard]] inline std::string to_flow_yaml(const Json& v) {
  if (v.is_array()) {
    std::string out = "[";
    for (std::size_t i = 0; i < v.size(); ++i) out += (i ? ", " : "") + to_flow_yaml(v[i]);
    return out + "]";
  }
  if (v.is_object()) {
    std::string out = "{";
    bool first = true;
    for (const auto& [k, x] : v.items()) {
      out += (first ? "" : ", ") + detail::scalar_text(Json(k)) + ": " + to_flow_yaml(x);
      first = false;
    }
    return out + "}";
  }
  return detail::scalar_text(v);
}

}  // namespace verl::config
