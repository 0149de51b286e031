#pragma once
//! \file
//! verl::detail::cpu_has_avx2 / cpu_has_avx2_fma: what the running CPU offers, asked once per process. The
//! CPU kernels are compiled twice, for the baseline ISA and, on x86-64, under [[gnu::target("avx2"...)]], and
//! pick one at run time with these: the library is header-only and users build it without -march flags, so
//! this is how the hot loops get AVX2. Kernels that must not contract multiply-adds (the bit-exact verl paths in
//! verl/algos) use AVX2 alone; the others AVX2 with FMA.

namespace verl::detail {

//! True when the CPU has AVX2 (always false off x86-64 or without GCC/Clang builtins).
inline bool cpu_has_avx2() noexcept {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  static const bool yes = __builtin_cpu_supports("avx2");
  return yes;
#else
  return false;
#endif
}

//! True when the CPU has AVX2 and FMA.
inline bool cpu_has_avx2_fma() noexcept {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  static const bool yes = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return yes;
#else
  return false;
#endif
}

}  // namespace verl::detail
