#pragma once
//! \file
//! A file memory-mapped for reading (POSIX mmap), owned by RAII and shared through std::shared_ptr so that
//! zero-copy tensors can keep the mapping alive after the object that opened it is gone.
//!
//! The mapping is MAP_PRIVATE with PROT_READ | PROT_WRITE: nothing written through it ever reaches the file
//! (pages written become private copy-on-write memory), so a zero-copy tensor can be updated in place (an
//! optimizer step) without corrupting the checkpoint and without a segmentation fault. Replacing the file by
//! rename (as verl's atomic writer does) leaves existing mappings valid; truncating it in place while mapped
//! is undefined (SIGBUS), as for every mmap reader. A writable private mapping counts toward the kernel's
//! commit charge: under strict overcommit (vm.overcommit_memory = 2) mapping a checkpoint larger than the
//! commit limit fails with a clear error instead of at the first write.

#include "verl/core/errors.hpp"

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

namespace verl::checkpoint {

//! A read-only view of a whole file through a private memory mapping.
class MappedFile {
 public:
  //! Maps `path`. Throws verl::InputError naming the file when it cannot be opened, is not a regular file,
  //! or cannot be mapped. An empty file maps to size() == 0 and data() == nullptr.
  [[nodiscard]] static std::shared_ptr<const MappedFile> open(const std::filesystem::path& path) {
    const auto fail = [&](const std::string& what, int err) {
      throw InputError(verl::detail::concat_message("verl::checkpoint: cannot ", what, " `", path.string(), "`: ",
                                              std::strerror(err)));
    };
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) fail("open", errno);
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
      const int err = errno;
      ::close(fd);
      fail("stat", err);
    }
    if (!S_ISREG(st.st_mode)) {
      ::close(fd);
      throw InputError(verl::detail::concat_message("verl::checkpoint: `", path.string(),
                                              "` is not a regular file; expected a safetensors file"));
    }
    std::shared_ptr<MappedFile> f(new MappedFile());
    f->path_ = path;
    f->size_ = static_cast<std::size_t>(st.st_size);
    if (f->size_ > 0) {
      void* p = ::mmap(nullptr, f->size_, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
      if (p == MAP_FAILED) {
        const int err = errno;
        ::close(fd);
        fail("memory-map", err);
      }
      f->data_ = static_cast<std::byte*>(p);
    }
    ::close(fd);  // the mapping keeps its own reference to the file
    return f;
  }

  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  ~MappedFile() {
    if (data_ != nullptr) ::munmap(data_, size_);
  }

  //! First byte of the mapping (nullptr for an empty file). Writable: writes stay private (copy-on-write).
  [[nodiscard]] std::byte* data() const { return data_; }
  //! Bytes in the file when it was mapped.
  [[nodiscard]] std::size_t size() const { return size_; }
  //! The path it was opened with.
  [[nodiscard]] const std::filesystem::path& path() const { return path_; }
  //! True when [p, p + n) lies inside the mapping.
  [[nodiscard]] bool contains(const void* p, std::size_t n) const {
    const auto* b = static_cast<const std::byte*>(p);
    return data_ != nullptr && b >= data_ && b <= data_ + size_ && n <= static_cast<std::size_t>(data_ + size_ - b);
  }

 private:
  MappedFile() = default;
  std::filesystem::path path_;
  std::byte* data_ = nullptr;
  std::size_t size_ = 0;
};

}  // namespace verl::checkpoint
