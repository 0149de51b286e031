#pragma once
//! \file
//! Streaming JSONL reading for the datasets of verl::data: one JSON value per line, blank lines skipped, and
//! every error naming the file and the 1-based line ("data/train.jsonl:17: invalid JSON (...)"). A malformed
//! line, or a row the dataset's schema rejects, either stops loading (SkipPolicy::error, the default) or is
//! counted and reported (SkipPolicy::skip), with the first few reasons kept for the log.

#include "verl/core/errors.hpp"

#include <nlohmann/json.hpp>

#include <cstddef>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace verl::data {

//! What loading does with a line that is not valid JSON or that the row schema rejects.
enum class SkipPolicy {
  error,  //!< throw verl::InputError naming the file and line (default)
  skip,   //!< drop the line, count it in a SkipReport and keep its reason (the first few)
};

//! Lines dropped under SkipPolicy::skip: how many, and the reasons of the first `max_reasons`.
struct SkipReport {
  static constexpr std::size_t max_reasons = 5;
  std::size_t skipped = 0;
  std::vector<std::string> first_reasons;  //!< "file:line: reason", at most max_reasons

  void add(std::string reason) {
    ++skipped;
    if (first_reasons.size() < max_reasons) first_reasons.push_back(std::move(reason));
  }
  //! One line for logs: "skipped 3 malformed lines (first: a.jsonl:2: ...; a.jsonl:9: ...)", or "" when none.
  [[nodiscard]] std::string summary() const {
    if (skipped == 0) return {};
    std::string out = "skipped " + std::to_string(skipped) + " malformed line" + (skipped == 1 ? "" : "s") + " (first: ";
    for (std::size_t i = 0; i < first_reasons.size(); ++i) out += (i ? "; " : "") + first_reasons[i];
    return out + ")";
  }
  //! Adds the counts and reasons of `other` (several files into one report).
  void merge(const SkipReport& other) {
    skipped += other.skipped;
    for (const auto& r : other.first_reasons)
      if (first_reasons.size() < max_reasons) first_reasons.push_back(r);
  }
};

//! Where a row came from, for error messages: "file:line".
struct RowLocation {
  std::string file;
  std::size_t line = 0;  //!< 1-based
  [[nodiscard]] std::string str() const { return file + ":" + std::to_string(line); }
};

//! What read_jsonl saw in one file.
struct JsonlCounts {
  std::size_t lines = 0;     //!< non-blank lines
  std::size_t accepted = 0;  //!< lines that parsed and that `on_row` accepted
};

//! Reads `file` line by line and calls `on_row(const nlohmann::json& row, const RowLocation& where)` for every
//! non-blank line (a line of spaces, tabs or '\r' only is blank; a UTF-8 byte order mark before the first line
//! is ignored). A line that is not valid JSON, or for which `on_row` throws verl::InputError, is an error
//! (InputError "file:line: <reason>") under SkipPolicy::error, and is counted in `report` under
//! SkipPolicy::skip. Other exceptions from `on_row` (e.g. ConfigError) always propagate.
//! Throws InputError when the file cannot be opened.
template <class OnRow>
JsonlCounts read_jsonl(const std::filesystem::path& file, SkipPolicy policy, SkipReport& report, OnRow&& on_row) {
  std::ifstream in(file, std::ios::binary);
  verl::detail::check<InputError>(static_cast<bool>(in), "verl::data::read_jsonl: cannot open ", file.string(),
                            " (expected a readable JSONL file, one JSON object per line)");
  const std::string name = file.string();
  std::string line;
  JsonlCounts counts;
  RowLocation where{name, 0};
  const auto reject = [&](const std::string& reason) {
    std::string message = where.str() + ": " + reason;
    if (policy == SkipPolicy::error) throw InputError("verl::data: " + message);
    report.add(std::move(message));
  };
  while (std::getline(in, line)) {
    ++where.line;
    std::string_view text(line);
    if (where.line == 1 && text.substr(0, 3) == "\xEF\xBB\xBF") text.remove_prefix(3);
    if (text.find_first_not_of(" \t\r") == std::string_view::npos) continue;
    ++counts.lines;
    nlohmann::json row;
    try {
      row = nlohmann::json::parse(text);
    } catch (const nlohmann::json::parse_error& e) {
      reject(std::string("invalid JSON (") + e.what() + ")");
      continue;
    }
    try {
      on_row(row, where);
      ++counts.accepted;
    } catch (const InputError& e) {
      reject(e.what());
    }
  }
  verl::detail::check<InputError>(!in.bad(), "verl::data::read_jsonl: read error in ", name, " after line ", where.line);
  return counts;
}

// ---------------------------------------------------------------------------------------------------------
// Row field access with errors that name the key and what was expected (thrown as InputError, so that the
// skip policy applies and read_jsonl prefixes the file and line).

namespace detail {

//! The member `key` of `row`, or nullptr when absent or null; throws InputError when `row` is not an object.
inline const nlohmann::json* find_field(const nlohmann::json& row, std::string_view key) {
  verl::detail::check<InputError>(row.is_object(), "the row is a JSON ", row.type_name(),
                                  ", expected a JSON object with the dataset's keys");
  const auto it = row.find(key);
  if (it == row.end() || it->is_null()) return nullptr;
  return &*it;
}

//! The member `key` of `row`; throws InputError naming it when absent or null.
inline const nlohmann::json& require_field(const nlohmann::json& row, std::string_view key) {
  const auto* v = find_field(row, key);
  verl::detail::check<InputError>(v != nullptr, "missing key \"", key, "\"");
  return *v;
}

//! `v` as a string; throws InputError naming `what` otherwise.
inline std::string string_field(const nlohmann::json& v, std::string_view what) {
  verl::detail::check<InputError>(v.is_string(), "\"", what, "\" is a JSON ", v.type_name(), ", expected a string");
  return v.get<std::string>();
}

}  // namespace detail
}  // namespace verl::data
