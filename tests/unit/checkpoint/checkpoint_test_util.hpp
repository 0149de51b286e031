// Helpers shared by the checkpoint unit tests: temporary directories and whole-file I/O.
#pragma once
#include "temp_dir.hpp"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <cstdint>
#include <optional>
#include <string_view>
#include <random>
#include <string>
#include <system_error>
#include <vector>

namespace verl::test::checkpoint {

namespace fs = std::filesystem;

using verl::test::remove_tree;
using verl::test::TempDir;

// A file: 8-byte little-endian length (the header's, or `n`), the header, `data` bytes 0, 1, 2, ...
inline std::string raw_file(std::string_view header, std::size_t data = 0, std::optional<std::uint64_t> n = {}) {
  const std::uint64_t len = n ? *n : header.size();
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>((len >> (8 * i)) & 0xFF);
  s += header;
  for (std::size_t i = 0; i < data; ++i) s += static_cast<char>(i & 0xFF);
  return s;
}

inline std::string read_all(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

inline void write_all(const fs::path& p, const std::string& s) {
  std::ofstream out(p, std::ios::binary);
  out << s;
}

inline std::vector<std::string> dir_listing(const fs::path& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace verl::test::checkpoint
