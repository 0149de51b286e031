#pragma once
//! \file
//! verl::Batch<Fields...>: the typed data plane of verl-cpp, verl's DataProto with its keys in the type.
//!
//! A batch holds one tensor per field tag (verl/core/field.hpp), all sharing one leading batch dimension B,
//! plus optional per-item non-tensor data (verl::ItemInfo). Which fields a batch has is part of its type:
//!
//!     using namespace verl::fields;
//!     verl::Batch<input_ids, attention_mask> b{ids, mask};             // (B,T), (B,T)
//!     auto logp = b.get<old_log_probs>();                              // compile error: no such field
//!     auto b2   = b.with<old_log_probs>(logp_tensor);                  // Batch<input_ids, attention_mask, old_log_probs>
//!
//! Runtime checks enforce the one leading dimension and name the field and the shapes when it is violated.
//! Operations return new batches that share tensor storage where the operation allows (slices are views),
//! like DataProto. Batches are cheap to copy: tensors are reference-counted handles.

#include "verl/core/errors.hpp"
#include "verl/core/field.hpp"
#include "verl/core/item_info.hpp"

// The operator declarations (*_ops.h) rather than the at:: function headers (ATen/ops/cat.h): the latter
// pull in ATen/Context.h and cost ~6 s more per translation unit.
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/cat_ops.h>
#include <ATen/ops/randperm_ops.h>

#include <boost/hana/contains.hpp>
#include <boost/hana/filter.hpp>
#include <boost/hana/length.hpp>
#include <boost/hana/not.hpp>
#include <boost/hana/set.hpp>
#include <boost/hana/transform.hpp>
#include <boost/hana/tuple.hpp>
#include <boost/hana/type.hpp>
#include <boost/hana/unpack.hpp>

#include <range/v3/view/iota.hpp>
#include <range/v3/view/transform.hpp>

#include <array>
#include <cstdint>
#include <initializer_list>
#include <ostream>
#include <span>
#include <sstream>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace verl {

template <FieldTag... Fields>
class Batch;

namespace detail {

namespace hana = boost::hana;

template <class F, class... Fields>
inline constexpr bool contains_field =
    decltype(hana::contains(hana::tuple_t<Fields...>, hana::type_c<F>))::value;

template <class... Fields>
inline constexpr bool fields_are_unique =
    decltype(hana::length(hana::to_set(hana::tuple_t<Fields...>)))::value == sizeof...(Fields);

template <class F, class... Fields>
consteval std::size_t field_index() {
  constexpr std::array<bool, sizeof...(Fields)> is_f{std::is_same_v<F, Fields>...};
  for (std::size_t i = 0; i < is_f.size(); ++i)
    if (is_f[i]) return i;
  return sizeof...(Fields);
}

//! hana::tuple_t<Gs...> -> Batch<Gs...>
template <class TypeTuple>
using batch_of = typename decltype(hana::unpack(
    TypeTuple{}, [](auto... types) { return hana::type_c<Batch<typename decltype(types)::type...>>; }))::type;

template <class F>
using tensor_for = at::Tensor;

template <class>
inline constexpr bool always_false = false;

struct unchecked_t {};
inline constexpr unchecked_t unchecked{};

inline std::string shape_string(const at::Tensor& t) {
  std::ostringstream out;
  out << t.sizes();
  return std::move(out).str();
}

}  // namespace detail

//! True for every verl::Batch<...>.
template <class T>
inline constexpr bool is_batch_v = false;
template <class... Fields>
inline constexpr bool is_batch_v<Batch<Fields...>> = true;

//! A verl::Batch whose type has every field in `Required` (it may have more). Pipeline stages constrain
//! their input with it: `template <BatchWith<fields::values, fields::token_level_rewards> B> ...`.
template <class B, class... Required>
concept BatchWith = is_batch_v<std::remove_cvref_t<B>> && (std::remove_cvref_t<B>::template has<Required> && ...);

//! A batch of B items: one tensor per field tag in `Fields`, each of shape (B, ...), plus optional
//! per-item non-tensor data. See the file comment for an overview.
//!
//! \tparam Fields distinct field tags (verl::FieldTag); their order is the order of the constructor's
//!                arguments and of printing, and does not otherwise matter.
template <FieldTag... Fields>
class Batch {
  static_assert(detail::fields_are_unique<Fields...>,
                "verl::Batch: a field tag appears twice in the field list; each field is stored once");

  template <FieldTag...>
  friend class Batch;

 public:
  static constexpr std::size_t num_fields = sizeof...(Fields);
  //! Whether the batch type has field `F`.
  template <class F>
  static constexpr bool has = detail::contains_field<F, Fields...>;
  //! The names of the fields, in declaration order.
  static constexpr std::array<std::string_view, num_fields> field_names{Fields::name...};

  //! One tensor per field, in the order of `Fields`, then the optional per-item data (empty, or one
  //! ItemInfo per item). A batch without fields takes its size from `items`.
  //! \throws ShapeError if a tensor is undefined, 0-dimensional, a token-layout field has fewer than two
  //!         dimensions, or the leading dimensions (or the number of items) differ.
  explicit Batch(detail::tensor_for<Fields>... tensors, std::vector<ItemInfo> items = {})
      : tensors_{std::move(tensors)...}, items_(std::move(items)) {
    size_ = num_fields > 0 ? -1 : static_cast<std::int64_t>(items_.size());
    std::size_t i = 0;
    ((check_field<Fields>(tensors_[i++], "verl::Batch")), ...);
    check_items("verl::Batch");
  }

  //! Number of items (the leading dimension of every field).
  [[nodiscard]] std::int64_t size() const { return size_; }

  //! The tensor of field `F`. Reading a field the batch type does not have is a compile error.
  template <class F>
  [[nodiscard]] const at::Tensor& get() const {
    if constexpr (has<F>) {
      return tensors_[detail::field_index<F, Fields...>()];
    } else {
      static_assert(detail::always_false<F>,
                    "verl::Batch::get<F>: the batch type has no field F; add it with batch.with<F>(tensor) "
                    "or run the stage that produces F before this one");
    }
  }

  //! Replaces the tensor of field `F` (in place). \throws ShapeError on a leading-dimension mismatch.
  template <class F>
  Batch& set(at::Tensor tensor) {
    if constexpr (has<F>) {
      check_field<F>(tensor, "verl::Batch::set");
      tensors_[detail::field_index<F, Fields...>()] = std::move(tensor);
      return *this;
    } else {
      static_assert(detail::always_false<F>,
                    "verl::Batch::set<F>: the batch type has no field F; use batch.with<F>(tensor) to add it");
    }
  }

  //! A batch with one more field: Batch<Fields..., F>. \throws ShapeError on a leading-dimension mismatch.
  template <FieldTag F>
  [[nodiscard]] Batch<Fields..., F> with(at::Tensor tensor) const {
    if constexpr (!has<F>) {
      Batch<Fields..., F> out(detail::unchecked, {tensors_[detail::field_index<Fields, Fields...>()]..., at::Tensor{}},
                              items_, size_);
      out.template check_field<F>(tensor, "verl::Batch::with");
      out.tensors_.back() = std::move(tensor);
      return out;
    } else {
      static_assert(detail::always_false<F>,
                    "verl::Batch::with<F>: the batch type already has field F; use batch.set<F>(tensor) to replace it");
    }
  }

  //! The batch restricted to fields `Selected` (in that order), sharing tensors and items.
  template <FieldTag... Selected>
  [[nodiscard]] Batch<Selected...> select() const {
    static_assert((has<Selected> && ...),
                  "verl::Batch::select<Fs...>: one of the selected fields is not in the batch type");
    return Batch<Selected...>(detail::unchecked, {get<Selected>()...}, items_, size_);
  }

  //! The batch without fields `Dropped` (each must be present).
  template <FieldTag... Dropped>
  [[nodiscard]] auto without() const {
    static_assert((has<Dropped> && ...),
                  "verl::Batch::without<Fs...>: one of the dropped fields is not in the batch type");
    namespace hana = boost::hana;
    constexpr auto kept = hana::filter(hana::tuple_t<Fields...>, [](auto type) {
      return hana::not_(hana::contains(hana::tuple_t<Dropped...>, type));
    });
    return project<detail::batch_of<std::remove_const_t<decltype(kept)>>>();
  }

  //! The same tensors with field `From` renamed to `To` (position kept).
  template <FieldTag From, FieldTag To>
  [[nodiscard]] auto rename() const {
    static_assert(has<From>, "verl::Batch::rename<From, To>: the batch type has no field From");
    static_assert(!has<To> || std::is_same_v<From, To>,
                  "verl::Batch::rename<From, To>: the batch type already has field To");
    using Out = Batch<std::conditional_t<std::is_same_v<Fields, From>, To, Fields>...>;
    return Out(detail::unchecked, {tensors_[detail::field_index<Fields, Fields...>()]...}, items_, size_);
  }

  //! The per-item non-tensor data: empty, or one ItemInfo per item.
  [[nodiscard]] const std::vector<ItemInfo>& items() const { return items_; }
  [[nodiscard]] bool has_items() const { return !items_.empty(); }
  //! A batch with the given per-item data. \throws ShapeError unless items.size() == size().
  [[nodiscard]] Batch with_items(std::vector<ItemInfo> items) const {
    Batch out = *this;
    out.items_ = std::move(items);
    if (num_fields == 0 && size_ <= 0) out.size_ = static_cast<std::int64_t>(out.items_.size());
    out.check_items("verl::Batch::with_items");
    return out;
  }

  //! Items [begin, end) as views of this batch's tensors. \throws ShapeError on an out-of-range bound.
  [[nodiscard]] Batch slice(std::int64_t begin, std::int64_t end) const {
    detail::check<ShapeError>(0 <= begin && begin <= end && end <= size_, "verl::Batch::slice: range [", begin,
                              ", ", end, ") is outside the batch of ", size_, " items");
    Batch out(detail::unchecked, {tensors_[detail::field_index<Fields, Fields...>()].narrow(0, begin, end - begin)...},
              {}, end - begin);
    if (has_items()) out.items_.assign(items_.begin() + begin, items_.begin() + end);
    return out;
  }

  //! Items in the order given by `indices` ((N,) int64 on any device; repeats allowed, like
  //! DataProto.select_idxs). The result has N items.
  //! \throws ShapeError if indices is not a 1-D integer tensor or holds an out-of-range index.
  [[nodiscard]] Batch index_select(const at::Tensor& indices) const {
    detail::check<ShapeError>(indices.defined() && indices.dim() == 1 &&
                                  at::isIntegralType(indices.scalar_type(), /*includeBool=*/false),
                              "verl::Batch::index_select: indices must be a 1-D integer tensor, got ",
                              indices.defined() ? detail::shape_string(indices) : std::string("an undefined tensor"));
    const at::Tensor cpu_indices = indices.to(at::kCPU, at::kLong).contiguous();
    const auto n = cpu_indices.numel();
    const auto* idx = cpu_indices.data_ptr<std::int64_t>();
    for (std::int64_t i = 0; i < n; ++i)
      detail::check<ShapeError>(0 <= idx[i] && idx[i] < size_, "verl::Batch::index_select: index ", idx[i],
                                " at position ", i, " is outside the batch of ", size_, " items");
    Batch out(detail::unchecked, {select_rows(tensors_[detail::field_index<Fields, Fields...>()], cpu_indices)...},
              {}, n);
    if (has_items()) {
      out.items_.reserve(static_cast<std::size_t>(n));
      for (std::int64_t i = 0; i < n; ++i) out.items_.push_back(items_[static_cast<std::size_t>(idx[i])]);
    }
    return out;
  }

  //! Items reordered by a permutation of 0..size()-1 (verl's DataProto.reorder).
  //! \throws ShapeError unless `permutation` is a permutation of 0..size()-1.
  [[nodiscard]] Batch reorder(const at::Tensor& permutation) const {
    detail::check<ShapeError>(permutation.defined() && permutation.dim() == 1 && permutation.numel() == size_,
                              "verl::Batch::reorder: expected a permutation of ", size_, " indices, got a tensor of shape ",
                              permutation.defined() ? detail::shape_string(permutation) : std::string("undefined"));
    const at::Tensor cpu = permutation.to(at::kCPU, at::kLong).contiguous();
    std::vector<bool> seen(static_cast<std::size_t>(size_), false);
    const auto* idx = cpu.data_ptr<std::int64_t>();
    for (std::int64_t i = 0; i < size_; ++i) {
      detail::check<ShapeError>(0 <= idx[i] && idx[i] < size_ && !seen[static_cast<std::size_t>(idx[i])],
                                "verl::Batch::reorder: position ", i, " holds ", idx[i],
                                ", which is out of range or repeated; expected a permutation of 0..", size_ - 1);
      seen[static_cast<std::size_t>(idx[i])] = true;
    }
    return index_select(cpu);
  }

  //! The items in a random order drawn from a CPU generator seeded with `seed` (deterministic).
  [[nodiscard]] Batch shuffle(std::uint64_t seed) const {
    // The same draw as torch.randperm(size, generator=torch.Generator().manual_seed(seed)).
    const at::Generator generator = at::detail::createCPUGenerator(seed);
    return index_select(at::_ops::randperm_generator::call(size_, generator, at::kLong, at::kStrided, at::kCPU,
                                                           /*pin_memory=*/false));
  }

  //! Each item repeated `times` times, consecutively (DataProto.repeat(times, interleave=True)):
  //! items a, b -> a, a, b, b. Used to sample n responses per prompt.
  [[nodiscard]] Batch repeat_interleave(std::int64_t times) const {
    detail::check<ConfigError>(times >= 1, "verl::Batch::repeat_interleave: times must be >= 1, got ", times);
    Batch out(detail::unchecked,
              {tensors_[detail::field_index<Fields, Fields...>()].repeat_interleave(times, /*dim=*/0)...}, {},
              size_ * times);
    if (has_items()) {
      out.items_.reserve(static_cast<std::size_t>(size_ * times));
      for (const auto& item : items_) out.items_.insert(out.items_.end(), static_cast<std::size_t>(times), item);
    }
    return out;
  }

  //! All fields moved to `device` (dtypes kept).
  [[nodiscard]] Batch to(at::Device device) const {
    return Batch(detail::unchecked, {tensors_[detail::field_index<Fields, Fields...>()].to(device)...}, items_, size_);
  }

  //! Floating-point fields converted to `dtype`; integer and boolean fields (ids, masks) are kept, as
  //! DataProto.to does with a dtype.
  [[nodiscard]] Batch to(at::ScalarType dtype) const {
    auto convert = [dtype](const at::Tensor& t) { return t.is_floating_point() ? t.to(dtype) : t; };
    return Batch(detail::unchecked, {convert(tensors_[detail::field_index<Fields, Fields...>()])...}, items_, size_);
  }

  //! Consecutive batches of `batch_size` items (the last one may be smaller), as a lazy range-v3 view of
  //! slices (DataProto.split). Mini-batches for the PPO update: batch.shuffle(seed).split(mini_batch_size);
  //! micro-batches for gradient accumulation: mini_batch.split(micro_batch_size).
  [[nodiscard]] auto split(std::int64_t batch_size) const {
    detail::check<ConfigError>(batch_size >= 1, "verl::Batch::split: batch_size must be >= 1, got ", batch_size);
    const std::int64_t count = (size_ + batch_size - 1) / batch_size;
    return ranges::views::iota(std::int64_t{0}, count) |
           ranges::views::transform([self = *this, batch_size](std::int64_t i) {
             return self.slice(i * batch_size, std::min(self.size_, (i + 1) * batch_size));
           });
  }

  //! `parts` consecutive batches whose sizes differ by at most one (the first size() % parts are one
  //! larger), as a lazy view; e.g. to hand contiguous shares to data-parallel ranks.
  //! \throws ConfigError unless 1 <= parts <= size().
  [[nodiscard]] auto chunk(std::int64_t parts) const {
    detail::check<ConfigError>(parts >= 1 && parts <= std::max<std::int64_t>(size_, 1),
                               "verl::Batch::chunk: parts must be in [1, ", std::max<std::int64_t>(size_, 1),
                               "] for a batch of ", size_, " items, got ", parts);
    const std::int64_t base = size_ / parts, extra = size_ % parts;
    return ranges::views::iota(std::int64_t{0}, parts) |
           ranges::views::transform([self = *this, base, extra](std::int64_t i) {
             const std::int64_t begin = i * base + std::min(i, extra);
             return self.slice(begin, begin + base + (i < extra ? 1 : 0));
           });
  }

  //! Writes "Batch(size=B){name: [shape] dtype, ...}" (and the item count when items are present).
  friend std::ostream& operator<<(std::ostream& out, const Batch& batch) {
    out << "Batch(size=" << batch.size_ << "){";
    for (std::size_t i = 0; i < num_fields; ++i) {
      out << (i ? ", " : "") << field_names[i] << ": " << batch.tensors_[i].sizes() << ' '
          << batch.tensors_[i].scalar_type();
    }
    out << '}';
    if (batch.has_items()) out << " + " << batch.items_.size() << " item infos";
    return out;
  }

 private:
  template <class... Bs>
  friend auto concat(const std::vector<Batch<Bs...>>& batches) -> Batch<Bs...>;

  Batch(detail::unchecked_t, std::array<at::Tensor, num_fields> tensors, std::vector<ItemInfo> items,
        std::int64_t size)
      : tensors_(std::move(tensors)), items_(std::move(items)), size_(size) {}

  //! Builds a batch of type `Target` whose fields are a subset of ours.
  template <class Target>
  [[nodiscard]] Target project() const {
    return [this]<class... Gs>(std::type_identity<Batch<Gs...>>) {
      return Batch<Gs...>(detail::unchecked, {get<Gs>()...}, items_, size_);
    }(std::type_identity<Target>{});
  }

  static at::Tensor select_rows(const at::Tensor& t, const at::Tensor& cpu_indices) {
    return t.index_select(0, t.device().is_cpu() ? cpu_indices : cpu_indices.to(t.device()));
  }

  //! Checks one field's tensor against the batch size, establishing the size from the first field.
  template <class F>
  void check_field(const at::Tensor& t, const char* where) {
    detail::check<ShapeError>(t.defined(), where, ": field `", F::name, "` is an undefined tensor");
    const std::int64_t min_dim = F::layout == FieldLayout::token ? 2 : 1;
    detail::check<ShapeError>(t.dim() >= min_dim, where, ": field `", F::name, "` has shape ",
                              detail::shape_string(t), ", expected at least ", min_dim, " dimensions (",
                              F::layout == FieldLayout::token ? "(B,T,...) for a per-token field"
                                                              : "(B,...) for a per-item field",
                              ")");
    if (size_ < 0) {
      size_ = t.size(0);
      return;
    }
    if (t.size(0) == size_) return;
    std::ostringstream reference;
    for (std::size_t i = 0; i < num_fields; ++i) {
      if (tensors_[i].defined() && !tensors_[i].is_same(t) && tensors_[i].size(0) == size_) {
        reference << " (from field `" << field_names[i] << "` of shape " << tensors_[i].sizes() << ")";
        break;
      }
    }
    throw ShapeError(detail::concat_message(where, ": field `", F::name, "` has shape ", detail::shape_string(t),
                                            ", but the batch size is ", size_, reference.str(),
                                            "; every field's leading dimension must be the batch size"));
  }

  void check_items(const char* where) const {
    detail::check<ShapeError>(items_.empty() || static_cast<std::int64_t>(items_.size()) == size_, where, ": ",
                              items_.size(), " item infos for a batch of ", size_,
                              " items; expected none or one per item");
  }

  std::array<at::Tensor, num_fields> tensors_;
  std::vector<ItemInfo> items_;
  std::int64_t size_ = 0;
};

//! The batches concatenated item-wise (DataProto.concat). Items are kept when every batch has them.
//! \throws ShapeError if `batches` is empty, trailing shapes differ, or only some batches carry items.
template <class... Fields>
[[nodiscard]] auto concat(const std::vector<Batch<Fields...>>& batches) -> Batch<Fields...> {
  detail::check<ShapeError>(!batches.empty(), "verl::concat: no batches to concatenate");
  std::array<at::Tensor, sizeof...(Fields)> tensors;
  std::size_t field = 0;
  auto cat_field = [&]<class F>(std::type_identity<F>) {
    std::vector<at::Tensor> parts;
    parts.reserve(batches.size());
    for (const auto& b : batches) {
      const auto& t = b.template get<F>();
      const auto& first = batches.front().template get<F>();
      detail::check<ShapeError>(t.dim() == first.dim() && t.sizes().slice(1) == first.sizes().slice(1),
                                "verl::concat: field `", F::name, "` has shape ", detail::shape_string(t),
                                " in one batch and ", detail::shape_string(first),
                                " in the first; all but the leading dimension must agree");
      parts.push_back(t);
    }
    tensors[field++] = at::_ops::cat::call(at::ITensorListRef(parts), /*dim=*/0);
  };
  (cat_field(std::type_identity<Fields>{}), ...);

  std::int64_t size = 0;
  std::size_t with_items = 0;
  for (const auto& b : batches) {
    size += b.size();
    with_items += b.has_items() ? 1 : 0;
  }
  detail::check<ShapeError>(with_items == 0 || with_items == batches.size(), "verl::concat: ", with_items, " of ",
                            batches.size(), " batches carry item infos; expected all or none");
  std::vector<ItemInfo> items;
  if (with_items) {
    items.reserve(static_cast<std::size_t>(size));
    for (const auto& b : batches) items.insert(items.end(), b.items().begin(), b.items().end());
  }
  return Batch<Fields...>(detail::unchecked, std::move(tensors), std::move(items), size);
}

//! The tensor of field `F` of `batch` (same as batch.get<F>()).
template <class F, class... Fields>
[[nodiscard]] const at::Tensor& get(const Batch<Fields...>& batch) {
  return batch.template get<F>();
}

}  // namespace verl
