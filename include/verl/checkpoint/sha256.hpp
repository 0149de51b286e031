#pragma once
//! \file
//! SHA-256 (FIPS 180-4, section 6.2) of a byte range or of a file, streamed: the checksums of a training
//! checkpoint's MANIFEST.json. Portable scalar code, no LibTorch; about 200-400 MB/s per core, so hashing a
//! 1 GB model costs a few seconds, small next to writing it.

#include "verl/core/errors.hpp"

#include <array>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include <fcntl.h>
#include <unistd.h>

namespace verl::checkpoint {

//! An incremental SHA-256: update() with the message in any pieces, then hex_digest() or digest() once.
class Sha256 {
 public:
  Sha256() = default;

  //! Appends `n` bytes of the message.
  void update(const void* data, std::size_t n) {
    const auto* p = static_cast<const std::uint8_t*>(data);
    length_ += n;
    if (buffered_ > 0) {  // complete a partly filled block first
      const std::size_t take = n < 64 - buffered_ ? n : 64 - buffered_;
      std::memcpy(buffer_.data() + buffered_, p, take);
      buffered_ += take;
      p += take;
      n -= take;
      if (buffered_ < 64) return;
      compress(buffer_.data());
      buffered_ = 0;
    }
    for (; n >= 64; n -= 64, p += 64) compress(p);
    std::memcpy(buffer_.data(), p, n);
    buffered_ = n;
  }
  void update(std::string_view s) { update(s.data(), s.size()); }

  //! The 32-byte digest. Finalises: call once, after the last update().
  [[nodiscard]] std::array<std::uint8_t, 32> digest() {
    // Padding (5.1.1): a 1 bit, zeros up to 56 mod 64 bytes, then the message length in bits, big-endian.
    const std::uint64_t bits = length_ * 8;
    const std::uint8_t one = 0x80;
    update(&one, 1);
    const std::uint8_t zero = 0;
    while (buffered_ != 56) update(&zero, 1);
    std::uint8_t len[8];
    for (int i = 0; i < 8; ++i) len[i] = static_cast<std::uint8_t>(bits >> (56 - 8 * i));
    update(len, 8);
    std::array<std::uint8_t, 32> out{};
    for (int i = 0; i < 8; ++i) {
      for (int b = 0; b < 4; ++b) out[4 * i + b] = static_cast<std::uint8_t>(h_[i] >> (24 - 8 * b));
    }
    return out;
  }

  //! The digest as 64 lowercase hex digits (as sha256sum and hashlib's hexdigest() print it). Finalises.
  [[nodiscard]] std::string hex_digest() {
    static constexpr char digits[] = "0123456789abcdef";
    std::string s;
    s.reserve(64);
    for (std::uint8_t b : digest()) {
      s.push_back(digits[b >> 4]);
      s.push_back(digits[b & 15]);
    }
    return s;
  }

 private:
  static constexpr std::uint32_t rotr(std::uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }

  // One 512-bit block (6.2.2).
  void compress(const std::uint8_t* block) {
    static constexpr std::uint32_t k[64] = {
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
        0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
        0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
        0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
        0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
        0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
        0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};
    std::uint32_t w[64];
    for (int t = 0; t < 16; ++t) {
      w[t] = (std::uint32_t{block[4 * t]} << 24) | (std::uint32_t{block[4 * t + 1]} << 16) |
             (std::uint32_t{block[4 * t + 2]} << 8) | std::uint32_t{block[4 * t + 3]};
    }
    for (int t = 16; t < 64; ++t) {
      const std::uint32_t s0 = rotr(w[t - 15], 7) ^ rotr(w[t - 15], 18) ^ (w[t - 15] >> 3);
      const std::uint32_t s1 = rotr(w[t - 2], 17) ^ rotr(w[t - 2], 19) ^ (w[t - 2] >> 10);
      w[t] = w[t - 16] + s0 + w[t - 7] + s1;
    }
    std::uint32_t a = h_[0], b = h_[1], c = h_[2], d = h_[3], e = h_[4], f = h_[5], g = h_[6], h = h_[7];
    for (int t = 0; t < 64; ++t) {
      const std::uint32_t t1 = h + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + k[t] + w[t];
      const std::uint32_t t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
      h = g;
      g = f;
      f = e;
      e = d + t1;
      d = c;
      c = b;
      b = a;
      a = t1 + t2;
    }
    h_[0] += a;
    h_[1] += b;
    h_[2] += c;
    h_[3] += d;
    h_[4] += e;
    h_[5] += f;
    h_[6] += g;
    h_[7] += h;
  }

  // Initial hash value (5.3.3).
  std::array<std::uint32_t, 8> h_{0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                  0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
  std::array<std::uint8_t, 64> buffer_{};
  std::size_t buffered_ = 0;
  std::uint64_t length_ = 0;  // bytes so far
};

//! SHA-256 of `n` bytes as 64 lowercase hex digits.
[[nodiscard]] inline std::string sha256_hex(const void* data, std::size_t n) {
  Sha256 h;
  h.update(data, n);
  return h.hex_digest();
}
[[nodiscard]] inline std::string sha256_hex(std::string_view s) { return sha256_hex(s.data(), s.size()); }

//! What hashing a file found: its size in bytes and SHA-256 (lowercase hex).
struct FileDigest {
  std::uint64_t size = 0;
  std::string sha256;
};

//! Reads `path` in 1 MiB pieces and returns its size and SHA-256. Throws verl::Error naming the file when it
//! cannot be opened or read.
[[nodiscard]] inline FileDigest sha256_file(const std::filesystem::path& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    throw Error(verl::detail::concat_message("verl::checkpoint::sha256_file: cannot open `", path.string(),
                                             "`: ", std::strerror(errno)));
  }
  Sha256 h;
  FileDigest out;
  std::vector<char> buf(std::size_t{1} << 20);
  for (;;) {
    const ssize_t r = ::read(fd, buf.data(), buf.size());
    if (r < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      ::close(fd);
      throw Error(verl::detail::concat_message("verl::checkpoint::sha256_file: cannot read `", path.string(),
                                               "`: ", std::strerror(err)));
    }
    if (r == 0) break;
    h.update(buf.data(), static_cast<std::size_t>(r));
    out.size += static_cast<std::uint64_t>(r);
  }
  ::close(fd);
  out.sha256 = h.hex_digest();
  return out;
}

}  // namespace verl::checkpoint
