// What the CPU kernels ask of the platform. verl::detail::cpu_has_avx2 / cpu_has_avx2_fma
// (include/verl/core/cpu_features.hpp) agree with the flags the kernel reports in /proc/cpuinfo.
// verl::detail::empty_for_overwrite / advise_huge_pages (include/verl/core/huge_pages.hpp): the tensors are
// ordinary at::empty results, and on Linux with transparent huge pages in "madvise" mode the large one's mapping
// is marked eligible for 2 MiB pages (/proc/self/smaps "THPeligible: 1"), which without the advice it is not.
#include "catch_torch.hpp"

#include "verl/core/cpu_features.hpp"
#include "verl/core/huge_pages.hpp"

#include <cstdint>
#include <fstream>
#include <sstream>
#include <string>

namespace {

std::string read_file(const char* path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

//! The THPeligible value of the /proc/self/smaps mapping that contains `address`, or -1 if not found.
int thp_eligible(std::uintptr_t address) {
  std::ifstream smaps("/proc/self/smaps");
  std::string line;
  bool inside = false;
  while (std::getline(smaps, line)) {
    std::uintptr_t lo = 0, hi = 0;
    char dash = 0;
    std::istringstream head(line);
    if (head >> std::hex >> lo >> dash >> hi && dash == '-') {
      inside = lo <= address && address < hi;
      continue;
    }
    if (inside && line.rfind("THPeligible:", 0) == 0) return std::stoi(line.substr(12));
  }
  return -1;
}

}  // namespace

TEST_CASE("cpu_has_avx2 and cpu_has_avx2_fma agree with /proc/cpuinfo", "[core][cpu]") {
  const bool avx2 = verl::detail::cpu_has_avx2(), fma = verl::detail::cpu_has_avx2_fma();
  CHECK((!fma || avx2));                          // AVX2+FMA implies AVX2
  CHECK(avx2 == verl::detail::cpu_has_avx2());    // asked once, stable
#if defined(__linux__) && defined(__x86_64__)
  const std::string info = read_file("/proc/cpuinfo");
  std::istringstream lines(info);
  std::string line, flags;
  while (std::getline(lines, line)) {
    if (line.rfind("flags", 0) == 0) {
      flags = " " + line.substr(line.find(':') + 1) + " ";
      break;
    }
  }
  REQUIRE_FALSE(flags.empty());
  const bool has_avx2 = flags.find(" avx2 ") != std::string::npos;
  const bool has_fma = flags.find(" fma ") != std::string::npos;
  CHECK(avx2 == has_avx2);
  CHECK(fma == (has_avx2 && has_fma));
#endif
}

TEST_CASE("empty_for_overwrite gives at::empty's tensor and advises huge pages for large ones", "[core][memory]") {
  const auto small = verl::detail::empty_for_overwrite({4, 8}, torch::TensorOptions().dtype(torch::kFloat64));
  CHECK(small.sizes() == torch::IntArrayRef({4, 8}));
  CHECK(small.scalar_type() == torch::kFloat64);
  CHECK(small.is_contiguous());
  const auto large = verl::detail::empty_for_overwrite({1024, 4096}, torch::TensorOptions().dtype(torch::kFloat32));
  CHECK(large.sizes() == torch::IntArrayRef({1024, 4096}));
  CHECK(large.is_contiguous());
  large.fill_(1.5f);
  CHECK(large.sum().item<double>() == 1.5 * 1024 * 4096);
  verl::detail::advise_huge_pages(torch::Tensor{});  // undefined: a no-op
#if defined(__linux__)
  const std::string mode = read_file("/sys/kernel/mm/transparent_hugepage/enabled");
  if (mode.find("[madvise]") == std::string::npos) {
    WARN("transparent huge pages are not in madvise mode here (" << mode << "): the advice is not observable");
    return;
  }
  // The 2 MiB-aligned interior of the 16 MiB buffer is advised.
  const auto begin = reinterpret_cast<std::uintptr_t>(large.data_ptr());
  const std::uintptr_t inner = ((begin + (std::uintptr_t{1} << 21) - 1) & ~((std::uintptr_t{1} << 21) - 1)) + 4096;
  CHECK(thp_eligible(inner) == 1);
#endif
}
