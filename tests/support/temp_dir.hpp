// A scratch directory for tests that write files, removed with everything in it at scope exit.
//
// Why not std::filesystem::remove_all: the PyPI torch wheel's libtorch.so (2.11) exports its own build of the
// std::filesystem free functions, and the dynamic linker may bind a test's remove_all to that copy, which
// crashes (a call through a null pointer). remove_tree walks the tree with directory_iterator and removes
// entries one by one, which works with either copy.
#pragma once

#include <filesystem>
#include <random>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

namespace verl::test {

//! Removes `p` and, if it is a directory (not a symlink to one), everything under it; errors are ignored.
inline void remove_tree(const std::filesystem::path& p) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (fs::is_directory(fs::symlink_status(p, ec))) {
    std::vector<fs::path> children;  // collected first: removing while iterating is unspecified
    for (const auto& e : fs::directory_iterator(p, ec)) children.push_back(e.path());
    for (const auto& c : children) remove_tree(c);
  }
  fs::remove(p, ec);
}

//! A fresh, empty directory `<tmp>/verl_<tag>_<random>`, removed with its contents by the destructor.
struct TempDir {
  std::filesystem::path path;

  explicit TempDir(std::string_view tag = "test") {
    std::random_device rd;
    path = std::filesystem::temp_directory_path() /
           ("verl_" + std::string(tag) + "_" + std::to_string(rd()) + std::to_string(rd()));
    remove_tree(path);
    std::filesystem::create_directories(path);
  }
  ~TempDir() { remove_tree(path); }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
};

}  // namespace verl::test
