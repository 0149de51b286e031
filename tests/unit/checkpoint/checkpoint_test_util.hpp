// Helpers shared by the checkpoint unit tests: temporary directories and whole-file I/O.
#pragma once
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

// std::filesystem::remove_all must not be called here: libtorch.so (torch 2.11 wheel) exports its own copy
// of the std::filesystem functions, and its remove_all crashes (null call) in a program linked with it.
inline void remove_tree(const fs::path& p) {
  std::error_code ec;
  if (fs::is_directory(fs::symlink_status(p, ec))) {
    std::vector<fs::path> children;
    for (const auto& e : fs::directory_iterator(p, ec)) children.push_back(e.path());
    for (const auto& c : children) remove_tree(c);
  }
  fs::remove(p, ec);
}

struct TempDir {
  fs::path path;
  TempDir() {
    std::random_device rd;
    path = fs::temp_directory_path() / ("verl_ckpt_test_" + std::to_string(rd()) + std::to_string(rd()));
    fs::create_directories(path);
  }
  ~TempDir() { remove_tree(path); }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
};

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
