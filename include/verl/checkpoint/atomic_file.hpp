#pragma once
//! \file
//! Atomic file replacement: write a temporary file in the target's directory, fsync it, rename it over the
//! target, fsync the directory. A reader sees the old file or the new one, never a torn one, also after a
//! crash or power loss; a failed or abandoned write removes its temporary file and leaves the target as it
//! was.

#include "verl/core/errors.hpp"

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <string>
#include <string_view>
#include <utility>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace verl::checkpoint {

namespace detail {

[[noreturn]] inline void io_error(std::string_view what, const std::filesystem::path& path, int err) {
  throw Error(verl::detail::concat_message("verl::checkpoint: cannot ", what, " `", path.string(), "`: ",
                                           std::strerror(err)));
}

//! fsyncs a directory so that a rename or unlink inside it is durable.
inline void fsync_directory(const std::filesystem::path& dir) {
  const int fd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) io_error("open directory", dir, errno);
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  if (rc != 0 && err != EINVAL) io_error("fsync directory", dir, err);  // EINVAL: fs without dir fsync
}

}  // namespace detail

//! A file being written atomically. Write with write(), then commit(); destroying it uncommitted (an
//! exception on the way) removes the temporary file. The final file gets the permissions a plain
//! open(O_CREAT, 0666) would give under the process umask.
class AtomicFile {
 public:
  //! Creates the temporary file `.<name>.tmp-<pid>-<n>` next to `target`. Throws verl::Error naming the
  //! path when it cannot.
  explicit AtomicFile(std::filesystem::path target) : target_(std::move(target)) {
    static std::atomic<std::uint64_t> counter{0};
    const auto dir = target_.parent_path();
    const auto stamp = static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
    for (int attempt = 0; attempt < 100; ++attempt) {
      const auto n = counter.fetch_add(1) ^ (stamp * 0x9E3779B97F4A7C15ULL);
      temp_ = dir / verl::detail::concat_message(".", target_.filename().string(), ".tmp-", ::getpid(), "-",
                                                 std::hex, n);
      fd_ = ::open(temp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
      if (fd_ >= 0) return;
      if (errno != EEXIST) detail::io_error("create a temporary file", temp_, errno);
    }
    detail::io_error("create a temporary file", temp_, EEXIST);
  }

  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  ~AtomicFile() {
    if (fd_ >= 0) ::close(fd_);
    if (!committed_) ::unlink(temp_.c_str());
  }

  //! Appends `n` bytes (retries partial writes and EINTR).
  void write(const void* data, std::size_t n) {
    const auto* p = static_cast<const char*>(data);
    while (n > 0) {
      const std::size_t chunk = n < (std::size_t{1} << 30) ? n : (std::size_t{1} << 30);
      const ssize_t w = ::write(fd_, p, chunk);
      if (w < 0) {
        if (errno == EINTR) continue;
        detail::io_error("write", temp_, errno);
      }
      p += w;
      n -= static_cast<std::size_t>(w);
    }
  }
  void write(std::string_view s) { write(s.data(), s.size()); }

  //! fsync, close, rename over the target, fsync the directory.
  void commit() {
    if (::fsync(fd_) != 0) detail::io_error("fsync", temp_, errno);
    const int rc = ::close(fd_);
    fd_ = -1;
    if (rc != 0) detail::io_error("close", temp_, errno);
    if (::rename(temp_.c_str(), target_.c_str()) != 0) detail::io_error("rename into place", target_, errno);
    committed_ = true;
    detail::fsync_directory(target_.parent_path());
  }

  //! The temporary file's path (for tests).
  [[nodiscard]] const std::filesystem::path& temp_path() const { return temp_; }

 private:
  std::filesystem::path target_, temp_;
  int fd_ = -1;
  bool committed_ = false;
};

//! Replaces `target` with `content` atomically.
inline void write_file_atomically(const std::filesystem::path& target, std::string_view content) {
  AtomicFile f(target);
  f.write(content);
  f.commit();
}

}  // namespace verl::checkpoint
