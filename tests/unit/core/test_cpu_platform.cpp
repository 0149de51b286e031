// What the CPU kernels ask of the platform. verl::detail::cpu_has_avx2 / cpu_has_avx2_fma
// (include/verl/core/cpu_features.hpp) agree with the flags the kernel reports in /proc/cpuinfo.
// verl::detail::empty_for_overwrite / advise_huge_pages (include/verl/core/huge_pages.hpp): the tensors are
// ordinary at::empty results, and on Linux with transparent huge pages in "madvise" mode the large one's mapping
// is marked eligible for 2 MiB pages (/proc/self/smaps "THPeligible: 1"), which without the advice it is not.
// verl::detail::ReusableBuffer (include/verl/core/reusable_buffer.hpp): its block comes back only when nothing
// else holds it, and never over a tensor (or view, or copy of the handle) that is still alive.
#include "catch_torch.hpp"

#include "verl/core/cpu_features.hpp"
#include "verl/core/huge_pages.hpp"
#include "verl/core/reusable_buffer.hpp"

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

TEST_CASE("ReusableBuffer hands its block out again only when nobody holds it", "[core][memory]") {
  verl::detail::ReusableBuffer buffer;
  CHECK(buffer.kept_bytes() == 0);
  const auto f32 = torch::TensorOptions().dtype(torch::kFloat32);
  const void* first_data = nullptr;
  {
    auto a = buffer.take({64, 1000}, f32);
    CHECK(a.sizes() == torch::IntArrayRef({64, 1000}));
    CHECK(a.scalar_type() == torch::kFloat32);
    CHECK(a.is_contiguous());
    CHECK(buffer.kept_bytes() == 64 * 1000 * 4);
    first_data = a.data_ptr();
  }
  {
    auto b = buffer.take({64, 1000}, f32);  // the first is gone: the same block again
    CHECK(b.data_ptr() == first_data);
    b.fill_(7.0f);
    const auto view = b.narrow(0, 3, 2);  // a view keeps the block busy too
    b = torch::Tensor();
    auto c = buffer.take({64, 1000}, f32);
    CHECK(c.data_ptr() != first_data);
    c.fill_(-1.0f);
    CHECK(view.eq(7.0f).all().item<bool>());  // untouched by c
  }
  // Now the second block (c's) is kept; a smaller request that needs at least half of it reuses it, a much
  // smaller one or another dtype gets a new block, which is kept instead.
  const auto kept = buffer.kept_bytes();
  CHECK(kept == 64 * 1000 * 4);
  const void* second_data = buffer.take({40, 1000}, f32).data_ptr();
  CHECK(buffer.take({64, 1000}, f32).data_ptr() == second_data);
  CHECK(buffer.take({10, 1000}, f32).data_ptr() != second_data);
  CHECK(buffer.kept_bytes() == 10 * 1000 * 4);
  const auto f64 = buffer.take({10, 1000}, torch::TensorOptions().dtype(torch::kFloat64));
  CHECK(f64.scalar_type() == torch::kFloat64);
  CHECK(buffer.kept_bytes() == 10 * 1000 * 8);
  // A copy starts without a block; release() drops the kept one, and a tensor handed out survives it.
  verl::detail::ReusableBuffer copy(buffer);
  CHECK(copy.kept_bytes() == 0);
  auto held = buffer.take({0, 5}, f32);  // an empty request is fine
  CHECK(held.numel() == 0);
  auto live = buffer.take({8, 8}, f32);
  live.fill_(3.0f);
  buffer.release();
  CHECK(buffer.kept_bytes() == 0);
  CHECK(live.sum().item<double>() == 3.0 * 64);
}
