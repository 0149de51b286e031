// libFuzzer target for verl::checkpoint::parse_header (include/verl/checkpoint/safetensors_header.hpp, no
// LibTorch). Built with clang++-14 -fsanitize=fuzzer,address,undefined by tests/fuzz/CMakeLists.txt.
// Any input is either rejected with verl::InputError, or accepted with these invariants, checked here:
//  - the header lies inside the file and is at most 100 MB;
//  - sorted by offsets, the tensors tile the data section [0, size - 8 - N) exactly: the first starts at 0,
//    each starts where the previous ends, none ends before it begins, the last ends at the end of the file
//    (so every entry lies within the data section and no two overlap);
//  - each span equals dtype bits x element count / 8 (element count and bits without u64 overflow);
//  - names are unique and never "__metadata__";
//  - writing the header back with plan_safetensors_file and parsing the result gives the same tensors
//    (names, dtypes, shapes, sizes) and metadata.
// Any other exception or a failed invariant aborts (a finding).
#include "verl/checkpoint/safetensors_header.hpp"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <set>
#include <string>
#include <vector>

namespace {

void require(bool cond, const char* what) {
  if (!cond) {
    std::fprintf(stderr, "safetensors_header_fuzz: invariant violated: %s\n", what);
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace verl::checkpoint;
  Header h;
  try {
    h = parse_header(data, size, "fuzz-input");
  } catch (const verl::InputError& e) {
    require(std::string(e.what()).rfind("verl::checkpoint: `fuzz-input`: ", 0) == 0, "error names the input");
    return 0;
  }
  require(size >= 8 && h.header_size <= size - 8, "header inside the file");
  require(h.header_size <= max_header_size, "header at most 100 MB");
  require(data[8] == '{', "header starts with '{'");
  const std::uint64_t data_size = size - 8 - h.header_size;
  require(h.data_size() == data_size, "tensors cover the data section exactly");
  std::uint64_t cursor = 0;
  std::set<std::string> names;
  for (const TensorInfo& t : h.tensors) {
    require(t.begin == cursor, "tensors contiguous in data order (no gap, no overlap)");
    require(t.end >= t.begin, "end not before begin");
    require(t.end <= data_size, "tensor inside the data section");
    std::uint64_t elements = 1, bits = 0;
    for (std::uint64_t d : t.shape) {
      require(elements == 0 || d <= UINT64_MAX / elements, "element count fits u64");
      elements *= d;
    }
    require(elements == 0 || dtype_bits(t.dtype) <= UINT64_MAX / elements, "bit count fits u64");
    bits = elements * dtype_bits(t.dtype);
    require(bits % 8 == 0 && bits / 8 == t.nbytes(), "span equals dtype x shape");
    require(names.insert(t.name).second, "unique names");
    require(t.name != "__metadata__", "no tensor named __metadata__");
    cursor = t.end;
  }
  require(h.has_metadata || h.metadata.empty(), "metadata only when present");

  // Round trip through the writer's layout.
  std::vector<TensorSpec> specs;
  for (const TensorInfo& t : h.tensors) specs.push_back({t.name, t.dtype, t.shape});
  FilePlan plan;
  try {
    plan = plan_safetensors_file(specs, h.metadata, h.has_metadata);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "plan_safetensors_file rejected an accepted header: %s\n", e.what());
    std::abort();
  }
  require(plan.data_size == data_size, "planned data size");
  require((plan.prefix.size() - 8) % 8 == 0, "planned header padded to 8 bytes");
  std::string file = plan.prefix;
  file.append(plan.data_size, '\0');
  Header again;
  try {
    again = parse_header(file.data(), file.size(), "fuzz-roundtrip");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "the written header does not parse: %s\n", e.what());
    std::abort();
  }
  require(again.metadata == h.metadata && again.has_metadata == h.has_metadata, "metadata round-trips");
  require(again.tensors.size() == h.tensors.size(), "tensor count round-trips");
  std::set<std::string> seen;
  for (const TensorInfo& t : again.tensors) {
    const std::size_t i = std::distance(specs.begin(), std::find_if(specs.begin(), specs.end(), [&](const auto& s) {
                                          return s.name == t.name;
                                        }));
    require(i < specs.size(), "name round-trips");
    require(specs[i].dtype == t.dtype && specs[i].shape == t.shape, "dtype and shape round-trip");
    require(plan.begin[i] == t.begin && plan.nbytes[i] == t.nbytes(), "offsets as planned");
  }
  return 0;
}
