#pragma once
//! \file
//! safetensors files with LibTorch: SafetensorsFile reads one memory-mapped file and hands out tensors that
//! view the mapping without copying; save_safetensors writes one atomically, byte-identical to what
//! huggingface/safetensors 0.8.0's `save_file` writes for the same tensors (and at most one metadata key).
//!
//! dtypes: every dtype of the format maps to its LibTorch type (U16/U32/U64 to uint16/32/64, F8_* to the
//! float8 types, F8_E8M0 to float8_e8m0fnu, C64 to complex64, F4 to float4_e2m1fn_x2 with the last
//! dimension halved, as the reference's torch loader does), except F6_E2M3 and F6_E3M2, which LibTorch lacks:
//! tensor() throws for them and raw_bytes() returns their packed bytes.

#include "verl/checkpoint/atomic_file.hpp"
#include "verl/checkpoint/mapped_file.hpp"
#include "verl/checkpoint/safetensors_header.hpp"
#include "verl/core/errors.hpp"

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/from_blob.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace verl::checkpoint {

//! The LibTorch scalar type of a safetensors dtype; nullopt for F6_E2M3 and F6_E3M2 (no LibTorch type).
//! F4 maps to float4_e2m1fn_x2, whose element holds two F4 values.
[[nodiscard]] inline std::optional<at::ScalarType> scalar_type_of(Dtype d) {
  switch (d) {
    case Dtype::BOOL: return at::kBool;
    case Dtype::U8: return at::kByte;
    case Dtype::I8: return at::kChar;
    case Dtype::I16: return at::kShort;
    case Dtype::U16: return at::kUInt16;
    case Dtype::I32: return at::kInt;
    case Dtype::U32: return at::kUInt32;
    case Dtype::I64: return at::kLong;
    case Dtype::U64: return at::kUInt64;
    case Dtype::F16: return at::kHalf;
    case Dtype::BF16: return at::kBFloat16;
    case Dtype::F32: return at::kFloat;
    case Dtype::F64: return at::kDouble;
    case Dtype::C64: return at::kComplexFloat;
    case Dtype::F8_E4M3: return at::kFloat8_e4m3fn;
    case Dtype::F8_E5M2: return at::kFloat8_e5m2;
    case Dtype::F8_E4M3FNUZ: return at::kFloat8_e4m3fnuz;
    case Dtype::F8_E5M2FNUZ: return at::kFloat8_e5m2fnuz;
    case Dtype::F8_E8M0: return at::ScalarType::Float8_e8m0fnu;
    case Dtype::F4: return at::ScalarType::Float4_e2m1fn_x2;
    case Dtype::F6_E2M3:
    case Dtype::F6_E3M2: return std::nullopt;
  }
  return std::nullopt;
}

//! The safetensors dtype of a LibTorch scalar type. Throws verl::ShapeError for types the format lacks
//! (complex128, complex32, quantized, bit and sub-byte integer types), naming `what`.
[[nodiscard]] inline Dtype dtype_of(at::ScalarType t, std::string_view what = "tensor") {
  for (Dtype d : all_dtypes) {
    if (scalar_type_of(d) == t) return d;
  }
  throw ShapeError(detail::concat_message("verl::checkpoint: ", what, " has dtype ", t,
                                          ", which the safetensors format has no type for; expected one of bool, "
                                          "(u)int8/16/32/64, float16/32/64, bfloat16, complex64, the float8 types "
                                          "or float4_e2m1fn_x2"));
}

//! One safetensors file, memory-mapped. Cheap to copy (copies share the mapping and the parsed header);
//! immutable after open(), so threads may call its const members concurrently.
class SafetensorsFile {
 public:
  //! Maps and validates `path` (see parse_header for the rules). Throws verl::InputError naming the file
  //! and what is wrong.
  [[nodiscard]] static SafetensorsFile open(const std::filesystem::path& path) {
    auto s = std::make_shared<State>();
    s->file = MappedFile::open(path);
    s->header = parse_header(s->file->data(), s->file->size(), path.string());
    for (std::size_t i = 0; i < s->header.tensors.size(); ++i) s->index.emplace(s->header.tensors[i].name, i);
    s->names.reserve(s->index.size());
    for (const auto& [name, i] : s->index) s->names.push_back(name);
    SafetensorsFile f;
    f.s_ = std::move(s);
    return f;
  }

  //! Tensor names sorted byte-wise (the order of the reference's `keys()`).
  [[nodiscard]] const std::vector<std::string>& names() const { return s_->names; }
  //! True when the file has a tensor `name`.
  [[nodiscard]] bool contains(std::string_view name) const { return s_->index.find(name) != s_->index.end(); }
  //! The header entry of `name`. Throws verl::InputError when there is none.
  [[nodiscard]] const TensorInfo& info(std::string_view name) const { return s_->header.tensors[find(name)]; }
  //! The "__metadata__" strings (empty when absent).
  [[nodiscard]] const std::map<std::string, std::string>& metadata() const { return s_->header.metadata; }
  //! The parsed header (tensors in data order).
  [[nodiscard]] const Header& header() const { return s_->header; }
  //! The mapping (to check where a tensor's data lies).
  [[nodiscard]] const MappedFile& mapping() const { return *s_->file; }
  //! The path the file was opened with.
  [[nodiscard]] const std::filesystem::path& path() const { return s_->file->path(); }

  //! The tensor `name` on the CPU with the file's dtype and shape (F4: float4_e2m1fn_x2, last dimension
  //! halved). Zero-copy: a view into the mapping that keeps it alive, when the data is aligned to the
  //! element size (always so for files the reference or verl wrote); otherwise a copy. Writing into the
  //! tensor never changes the file (private mapping). Throws verl::InputError when there is no such tensor,
  //! its dtype has no LibTorch type (F6_*: use raw_bytes), an F4 tensor's last dimension is odd, or a
  //! dimension exceeds int64.
  [[nodiscard]] at::Tensor tensor(std::string_view name) const {
    const TensorInfo& t = info(name);
    const auto fail = [&](const std::string& what) {
      throw InputError(detail::concat_message("verl::checkpoint: `", path().string(), "`: tensor `", t.name, "`: ",
                                              what));
    };
    const auto st = scalar_type_of(t.dtype);
    if (!st) {
      fail(detail::concat_message("dtype ", dtype_name(t.dtype),
                                  " has no LibTorch type; read its packed bytes with raw_bytes()"));
    }
    std::vector<std::int64_t> sizes;
    sizes.reserve(t.shape.size());
    for (std::uint64_t d : t.shape) {
      if (d > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
        fail(detail::concat_message("dimension ", d, " of shape ", detail::shape_string(t.shape),
                                    " exceeds the int64 range of LibTorch sizes"));
      }
      sizes.push_back(static_cast<std::int64_t>(d));
    }
    if (t.dtype == Dtype::F4) {
      // Two F4 values per float4_e2m1fn_x2 element, paired along the last dimension.
      if (sizes.empty() || sizes.back() % 2 != 0) {
        fail(detail::concat_message("F4 shape ", detail::shape_string(t.shape),
                                    " has no even last dimension to pack into float4_e2m1fn_x2; read it with "
                                    "raw_bytes()"));
      }
      sizes.back() /= 2;
    }
    const auto options = at::TensorOptions().dtype(*st).device(at::kCPU);
    if (t.nbytes() == 0) return at::empty(sizes, options);
    std::byte* p = data_of(t);
    const auto item = static_cast<std::uintptr_t>(c10::elementSize(*st));
    if (reinterpret_cast<std::uintptr_t>(p) % item == 0) {
      return at::from_blob(p, sizes, [keep = s_->file](void*) {}, options);
    }
    auto copy = at::empty(sizes, options);  // misaligned (only hand-made files): copy
    std::memcpy(copy.data_ptr(), p, t.nbytes());
    return copy;
  }

  //! The bytes of tensor `name` as a 1-D uint8 tensor viewing the mapping (any dtype, F6 included). Throws
  //! verl::InputError when there is no such tensor.
  [[nodiscard]] at::Tensor raw_bytes(std::string_view name) const {
    const TensorInfo& t = info(name);
    const auto options = at::TensorOptions().dtype(at::kByte).device(at::kCPU);
    if (t.nbytes() == 0) return at::empty({0}, options);
    return at::from_blob(data_of(t), {static_cast<std::int64_t>(t.nbytes())}, [keep = s_->file](void*) {}, options);
  }

 private:
  struct State {
    std::shared_ptr<const MappedFile> file;
    Header header;
    std::map<std::string, std::size_t, std::less<>> index;
    std::vector<std::string> names;
  };

  [[nodiscard]] std::size_t find(std::string_view name) const {
    const auto it = s_->index.find(name);
    if (it == s_->index.end()) {
      throw InputError(detail::concat_message("verl::checkpoint: `", path().string(), "` has no tensor `", name,
                                              "` (it has ", s_->names.size(), " tensors)"));
    }
    return it->second;
  }
  [[nodiscard]] std::byte* data_of(const TensorInfo& t) const {
    return s_->file->data() + s_->header.data_offset() + t.begin;
  }

  std::shared_ptr<const State> s_;
};

//! Writes `tensors` and `metadata` to `path` as a safetensors file, atomically (temporary file in the same
//! directory, fsync, rename, fsync of the directory). Tensors on any device, of any layout (sparse and mkldnn
//! are densified), strides, conjugate or negative bit are written as contiguous CPU bytes, one at a time.
//! The metadata is written as "__metadata__" when not empty. Layout and bytes: see plan_safetensors_file.
//! Throws verl::ShapeError for an undefined tensor or a dtype the format lacks, verl::ConfigError for
//! duplicate or invalid names, verl::Error when the file cannot be written (the target is then unchanged).
inline void save_safetensors(const std::filesystem::path& path,
                             const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                             const std::map<std::string, std::string>& metadata = {}) {
  std::vector<TensorSpec> specs;
  specs.reserve(tensors.size());
  for (const auto& [name, t] : tensors) {
    const std::string what = detail::concat_message("save_safetensors: tensor `", name, "`");
    detail::check<ShapeError>(t.defined(), "verl::checkpoint::", what, " is undefined");
    TensorSpec s{name, dtype_of(t.scalar_type(), what), {}};
    for (std::int64_t d : t.sizes()) s.shape.push_back(static_cast<std::uint64_t>(d));
    if (s.dtype == Dtype::F4) {
      // float4_e2m1fn_x2 holds two F4 values: the file's last dimension counts single values.
      detail::check<ShapeError>(!s.shape.empty(), "verl::checkpoint::", what,
                                " is a 0-d float4_e2m1fn_x2, which has no last dimension to unpack into F4 values");
      s.shape.back() *= 2;
    }
    specs.push_back(std::move(s));
  }
  const FilePlan plan = plan_safetensors_file(specs, metadata, !metadata.empty());
  AtomicFile out(path);
  out.write(plan.prefix);
  for (std::size_t idx : plan.order) {
    if (plan.nbytes[idx] == 0) continue;
    at::Tensor c = tensors[idx].second.detach();
    if (c.layout() != at::kStrided) c = c.to_dense();
    c = c.cpu().resolve_conj().resolve_neg().contiguous();
    detail::check<ShapeError>(c.nbytes() == plan.nbytes[idx], "verl::checkpoint::save_safetensors: tensor `",
                              tensors[idx].first, "` has ", c.nbytes(), " bytes, expected ", plan.nbytes[idx]);
    out.write(c.data_ptr(), plan.nbytes[idx]);
  }
  out.commit();
}

}  // namespace verl::checkpoint
