#pragma once
//! \file
//! SHA-256 (FIPS 180-4, section 6.2) of a byte range or of a file, streamed: the checksums of a training
//! checkpoint's MANIFEST.json. No LibTorch. Portable scalar code (~250 MB/s per core), and on x86-64 CPUs
//! with the SHA extensions (AMD Zen, Intel Ice Lake and later) the SHA-NI instructions, chosen at run time
//! (~1.5-2 GB/s): hashing a model costs a fraction of writing it.

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

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define VERL_SHA256_X86 1
#endif

namespace verl::checkpoint {

namespace detail {

inline constexpr std::uint32_t sha256_k[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

[[nodiscard]] constexpr std::uint32_t sha256_rotr(std::uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }

// `blocks` 512-bit blocks (6.2.2), portable.
inline void sha256_blocks_scalar(std::uint32_t* state, const std::uint8_t* p, std::size_t blocks) {
  for (; blocks > 0; --blocks, p += 64) {
    std::uint32_t w[64];
    for (int t = 0; t < 16; ++t) {
      w[t] = (std::uint32_t{p[4 * t]} << 24) | (std::uint32_t{p[4 * t + 1]} << 16) |
             (std::uint32_t{p[4 * t + 2]} << 8) | std::uint32_t{p[4 * t + 3]};
    }
    for (int t = 16; t < 64; ++t) {
      const std::uint32_t s0 = sha256_rotr(w[t - 15], 7) ^ sha256_rotr(w[t - 15], 18) ^ (w[t - 15] >> 3);
      const std::uint32_t s1 = sha256_rotr(w[t - 2], 17) ^ sha256_rotr(w[t - 2], 19) ^ (w[t - 2] >> 10);
      w[t] = w[t - 16] + s0 + w[t - 7] + s1;
    }
    std::uint32_t a = state[0], b = state[1], c = state[2], d = state[3], e = state[4], f = state[5], g = state[6],
                  h = state[7];
    for (int t = 0; t < 64; ++t) {
      const std::uint32_t t1 = h + (sha256_rotr(e, 6) ^ sha256_rotr(e, 11) ^ sha256_rotr(e, 25)) +
                               ((e & f) ^ (~e & g)) + sha256_k[t] + w[t];
      const std::uint32_t t2 = (sha256_rotr(a, 2) ^ sha256_rotr(a, 13) ^ sha256_rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
      h = g;
      g = f;
      f = e;
      e = d + t1;
      d = c;
      c = b;
      b = a;
      a = t1 + t2;
    }
    state[0] += a;
    state[1] += b;
    state[2] += c;
    state[3] += d;
    state[4] += e;
    state[5] += f;
    state[6] += g;
    state[7] += h;
  }
}

#ifdef VERL_SHA256_X86
// The same with the x86 SHA extensions. sha256rnds2 works on the state split as (A,B,E,F) and (C,D,G,H) and
// does two rounds per call; sha256msg1/msg2 compute the message schedule four words at a time.
__attribute__((target("sha,sse4.1"))) inline void sha256_blocks_shani(std::uint32_t* state, const std::uint8_t* p,
                                                                      std::size_t blocks) {
  const __m128i bswap = _mm_set_epi64x(0x0c0d0e0f08090a0bLL, 0x0405060700010203LL);  // big-endian words
  __m128i dcba = _mm_loadu_si128(reinterpret_cast<const __m128i*>(state));             // lanes a,b,c,d
  __m128i hgfe = _mm_loadu_si128(reinterpret_cast<const __m128i*>(state + 4));         // lanes e,f,g,h
  const __m128i cdab = _mm_shuffle_epi32(dcba, 0xB1);
  const __m128i efgh = _mm_shuffle_epi32(hgfe, 0x1B);
  __m128i abef = _mm_alignr_epi8(cdab, efgh, 8);
  __m128i cdgh = _mm_blend_epi16(efgh, cdab, 0xF0);
  for (; blocks > 0; --blocks, p += 64) {
    const __m128i abef_in = abef, cdgh_in = cdgh;
    __m128i w[16];  // w[i]: message words 4i..4i+3
    for (int i = 0; i < 4; ++i) {
      w[i] = _mm_shuffle_epi8(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 16 * i)), bswap);
    }
    for (int i = 4; i < 16; ++i) {
      // W[t] = W[t-16] + s0(W[t-15]) + W[t-7] + s1(W[t-2])
      const __m128i t = _mm_add_epi32(_mm_sha256msg1_epu32(w[i - 4], w[i - 3]), _mm_alignr_epi8(w[i - 1], w[i - 2], 4));
      w[i] = _mm_sha256msg2_epu32(t, w[i - 1]);
    }
    for (int i = 0; i < 16; ++i) {
      __m128i wk = _mm_add_epi32(w[i], _mm_loadu_si128(reinterpret_cast<const __m128i*>(sha256_k + 4 * i)));
      cdgh = _mm_sha256rnds2_epu32(cdgh, abef, wk);  // rounds 4i, 4i+1
      wk = _mm_shuffle_epi32(wk, 0x0E);
      abef = _mm_sha256rnds2_epu32(abef, cdgh, wk);  // rounds 4i+2, 4i+3
    }
    abef = _mm_add_epi32(abef, abef_in);
    cdgh = _mm_add_epi32(cdgh, cdgh_in);
  }
  const __m128i feba = _mm_shuffle_epi32(abef, 0x1B);
  const __m128i dchg = _mm_shuffle_epi32(cdgh, 0xB1);
  _mm_storeu_si128(reinterpret_cast<__m128i*>(state), _mm_blend_epi16(feba, dchg, 0xF0));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(state + 4), _mm_alignr_epi8(dchg, feba, 8));
}
#endif

//! True when this CPU has the SHA extensions (and the build targets x86-64 with GCC or Clang).
[[nodiscard]] inline bool sha256_hardware_available() {
#ifdef VERL_SHA256_X86
  static const bool available = __builtin_cpu_supports("sha") && __builtin_cpu_supports("sse4.1");
  return available;
#else
  return false;
#endif
}

}  // namespace detail

//! An incremental SHA-256: update() with the message in any pieces, then hex_digest() or digest() once.
class Sha256 {
 public:
  //! `use_hardware` = false forces the portable code (tests compare the two).
  explicit Sha256(bool use_hardware = true) : hardware_(use_hardware && detail::sha256_hardware_available()) {}

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
      compress(buffer_.data(), 1);
      buffered_ = 0;
    }
    compress(p, n / 64);
    p += n / 64 * 64;
    n %= 64;
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
  void compress(const std::uint8_t* p, std::size_t blocks) {
    if (blocks == 0) return;
#ifdef VERL_SHA256_X86
    if (hardware_) {
      detail::sha256_blocks_shani(h_.data(), p, blocks);
      return;
    }
#endif
    detail::sha256_blocks_scalar(h_.data(), p, blocks);
  }

  // Initial hash value (5.3.3).
  std::array<std::uint32_t, 8> h_{0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                  0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
  std::array<std::uint8_t, 64> buffer_{};
  std::size_t buffered_ = 0;
  std::uint64_t length_ = 0;  // bytes so far
  bool hardware_ = false;
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
