#pragma once
//! \file
//! verl::detail::exp_nonpositive: a branch-free float32 exp for arguments <= 0 that GCC/Clang vectorise inside
//! plain loops (no -ffast-math, no intrinsics), for kernels that exponentiate scores minus their maximum: the
//! rollout sampler's softmax (verl/rollout/sampler.hpp) and the short-sequence attention
//! (verl/models/detail/short_attention.hpp).

#include <bit>
#include <cstdint>

namespace verl::detail {

//! exp(x) for x <= 0 in float32 (about 1 ulp; Cody-Waite reduction and a degree-5 minimax polynomial, the
//! Cephes expf scheme), written without branches or calls so that GCC/Clang vectorise the loops using it.
//! Returns 0 below -87 (e^-87 ~ 1.6e-38, the normal float range), for -inf and for NaN.
#if defined(__GNUC__)
#define VERL_FAST_EXP_INLINE __attribute__((always_inline)) inline
#else
#define VERL_FAST_EXP_INLINE inline
#endif
[[nodiscard]] VERL_FAST_EXP_INLINE float exp_nonpositive(float x) {
  // The clamp and the final select are bit masks: a float ternary here stops GCC's vectoriser (it keeps
  // the branch under the default -ftrapping-math).
  const std::int32_t keep = x >= -87.0f ? -1 : 0;  // all ones where x is in range (false for NaN, -inf)
  const float xc = std::bit_cast<float>((std::bit_cast<std::int32_t>(x) & keep) |
                                        (std::bit_cast<std::int32_t>(-87.0f) & ~keep));
  // n = round(x / ln 2) with the 1.5 * 2^23 trick (exact for |n| < 2^22, no rounding-mode call).
  const float n = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  const float r = (xc - n * 0.693359375f) + n * 2.12194440e-4f;  // x - n ln2, ln2 split in two parts
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float e = (p * r * r + r) + 1.0f;
  const float scale = std::bit_cast<float>((static_cast<std::int32_t>(n) + 127) << 23);  // 2^n, n in [-126, 0]
  return e * scale * std::bit_cast<float>(keep & 0x3f800000);  // times 1.0f or 0.0f
}

}  // namespace verl::detail

#undef VERL_FAST_EXP_INLINE
