#pragma once
//! \file
//! verl::dist::DeviceMesh: the world's ranks laid out on a grid with named axes (dp, fsdp, tp, pp), as
//! torch.distributed.device_mesh.init_device_mesh lays them: the mesh is arange(world_size).view(shape), so a
//! rank's coordinates are its row-major (last axis fastest) unravelled index. The ranks that differ only
//! along one axis form that axis's sub-group (e.g. the tp group of rank 5 in a dp=2 x tp=4 mesh is {4,5,6,7},
//! its dp group {1,5}).
//!
//! The shape is a runtime value (DeviceMesh) or a template parameter (Mesh<axis::dp<2>, axis::tp<2>>,
//! compiled per cluster); a mesh whose size differs from WORLD_SIZE is a verl::ConfigError at start-up
//! (Mesh::device_mesh(world_size), DeviceMesh::check_world_size). MeshCommunicators builds this rank's
//! sub-group communicator along every axis from the world communicator (ProcessGroupCommunicator::new_group).
//!
//! ```cpp
//! using Cluster = verl::dist::Mesh<verl::dist::axis::dp<2>, verl::dist::axis::tp<2>>;
//! auto world = verl::dist::ProcessGroupCommunicator<verl::dist::gloo>::init(verl::dist::launch_env_from_environ());
//! auto mesh = Cluster::device_mesh(world.world_size());          // throws unless WORLD_SIZE == 4
//! auto groups = verl::dist::MeshCommunicators(world, mesh);
//! groups["tp"].all_reduce(partial_sums, verl::ReduceOp::sum);   // within this rank's tp group
//! ```

#include "verl/core/errors.hpp"

#include <array>
#include <concepts>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace verl::dist {

//! Compile-time axes of a Mesh: the name verl uses for each kind of parallelism and its size.
namespace axis {
template <int N>
struct dp {  // data parallel: replicas that all-reduce gradients
  static constexpr std::string_view name = "dp";
  static constexpr int size = N;
};
template <int N>
struct fsdp {  // fully sharded data parallel: parameters, gradients, optimizer states sharded
  static constexpr std::string_view name = "fsdp";
  static constexpr int size = N;
};
template <int N>
struct tp {  // tensor parallel (Megatron layout)
  static constexpr std::string_view name = "tp";
  static constexpr int size = N;
};
template <int N>
struct pp {  // pipeline parallel
  static constexpr std::string_view name = "pp";
  static constexpr int size = N;
};
}  // namespace axis

//! A named axis of a runtime mesh.
struct MeshAxis {
  std::string name;
  int size = 1;
};

//! A grid of ranks with named axes; rank r sits at the row-major coordinates of r.
class DeviceMesh {
 public:
  //! Throws verl::ConfigError when `axes` is empty, a name is empty or repeated, or a size is below 1.
  explicit DeviceMesh(std::vector<MeshAxis> axes) : axes_(std::move(axes)) {
    verl::detail::check<ConfigError>(!axes_.empty(), "verl::dist::DeviceMesh: no axes, expected at least one");
    long long size = 1;
    for (std::size_t i = 0; i < axes_.size(); ++i) {
      verl::detail::check<ConfigError>(!axes_[i].name.empty(), "verl::dist::DeviceMesh: axis ", i,
                                 " has an empty name, expected a name like dp, fsdp, tp or pp");
      verl::detail::check<ConfigError>(axes_[i].size >= 1, "verl::dist::DeviceMesh: axis ", axes_[i].name, " has size ",
                                 axes_[i].size, ", expected at least 1");
      for (std::size_t j = 0; j < i; ++j) {
        verl::detail::check<ConfigError>(axes_[j].name != axes_[i].name, "verl::dist::DeviceMesh: axis name ",
                                   axes_[i].name, " appears twice, expected distinct names");
      }
      size *= axes_[i].size;
      verl::detail::check<ConfigError>(size <= (1LL << 24), "verl::dist::DeviceMesh: ", describe(),
                                 " has more than 2^24 ranks, expected a mesh that fits a job");
    }
    size_ = static_cast<int>(size);
  }

  [[nodiscard]] const std::vector<MeshAxis>& axes() const noexcept { return axes_; }
  [[nodiscard]] int ndim() const noexcept { return static_cast<int>(axes_.size()); }
  //! The number of ranks: the product of the axis sizes.
  [[nodiscard]] int size() const noexcept { return size_; }

  //! "(dp=2, tp=2)".
  [[nodiscard]] std::string describe() const {
    std::string s = "(";
    for (std::size_t i = 0; i < axes_.size(); ++i) {
      if (i != 0) s.append(", ");
      s.append(axes_[i].name).append("=").append(std::to_string(axes_[i].size));
    }
    return s + ")";
  }

  //! The position of axis `name`; throws verl::ConfigError listing the axes when there is none.
  [[nodiscard]] int axis_index(std::string_view name) const {
    for (std::size_t i = 0; i < axes_.size(); ++i) {
      if (axes_[i].name == name) return static_cast<int>(i);
    }
    throw ConfigError(verl::detail::concat_message("verl::dist::DeviceMesh: no axis named ", name, " in the mesh ",
                                             describe(), ", expected one of its axis names"));
  }
  [[nodiscard]] int axis_size(std::string_view name) const {
    return axes_[static_cast<std::size_t>(axis_index(name))].size;
  }

  //! Throws verl::ConfigError unless size() == world_size: a start-up check that the job was launched with
  //! as many processes as the mesh has places.
  void check_world_size(int world_size) const {
    verl::detail::check<ConfigError>(world_size == size_, "verl::dist::DeviceMesh: the mesh ", describe(), " has ", size_,
                               " ranks but WORLD_SIZE is ", world_size, ", expected equal (launch ", size_,
                               " processes or change the mesh)");
  }

  //! Rank -> coordinates, one per axis (row-major: the last axis varies fastest).
  [[nodiscard]] std::vector<int> coordinates(int rank) const {
    check_rank(rank);
    std::vector<int> coords(axes_.size());
    for (std::size_t i = axes_.size(); i-- > 0;) {
      coords[i] = rank % axes_[i].size;
      rank /= axes_[i].size;
    }
    return coords;
  }
  //! The coordinate of `rank` along axis `name`.
  [[nodiscard]] int coordinate(int rank, std::string_view name) const {
    return coordinates(rank)[static_cast<std::size_t>(axis_index(name))];
  }

  //! Coordinates -> rank; throws verl::ConfigError when their count or a value is out of range.
  [[nodiscard]] int rank_at(const std::vector<int>& coords) const {
    verl::detail::check<ConfigError>(coords.size() == axes_.size(), "verl::dist::DeviceMesh::rank_at: ", coords.size(),
                               " coordinate(s), expected ", axes_.size(), " for the mesh ", describe());
    int rank = 0;
    for (std::size_t i = 0; i < axes_.size(); ++i) {
      verl::detail::check<ConfigError>(coords[i] >= 0 && coords[i] < axes_[i].size, "verl::dist::DeviceMesh::rank_at: ",
                                 axes_[i].name, " coordinate ", coords[i], ", expected one in [0, ",
                                 axes_[i].size, ")");
      rank = rank * axes_[i].size + coords[i];
    }
    return rank;
  }

  //! The sub-group of `rank` along axis `name`: the ranks whose other coordinates equal rank's, in the order
  //! of their coordinate along `name` (which is ascending; rank's index in it is its coordinate).
  [[nodiscard]] std::vector<int> group_ranks(std::string_view name, int rank) const {
    const auto a = static_cast<std::size_t>(axis_index(name));
    auto coords = coordinates(rank);
    std::vector<int> out;
    out.reserve(static_cast<std::size_t>(axes_[a].size));
    for (int c = 0; c < axes_[a].size; ++c) {
      coords[a] = c;
      out.push_back(rank_at(coords));
    }
    return out;
  }

  //! Every sub-group along axis `name` (size() / axis_size(name) groups of axis_size(name) ranks), ordered
  //! by their smallest rank; together they partition the ranks.
  [[nodiscard]] std::vector<std::vector<int>> groups(std::string_view name) const {
    const auto a = static_cast<std::size_t>(axis_index(name));
    std::vector<std::vector<int>> out;
    for (int r = 0; r < size_; ++r) {
      if (coordinates(r)[a] == 0) out.push_back(group_ranks(name, r));
    }
    return out;
  }

 private:
  void check_rank(int rank) const {
    verl::detail::check<ConfigError>(rank >= 0 && rank < size_, "verl::dist::DeviceMesh: rank ", rank,
                               " is outside the mesh ", describe(), ", expected a rank in [0, ", size_, ")");
  }

  std::vector<MeshAxis> axes_;
  int size_ = 1;
};

}  // namespace verl::dist

namespace verl::detail {
template <class A>
concept mesh_axis_tag = requires {
  { A::name } -> std::convertible_to<std::string_view>;
  { A::size } -> std::convertible_to<int>;
};
template <class... Axes>
consteval bool distinct_axis_names() {
  constexpr std::array<std::string_view, sizeof...(Axes)> names{Axes::name...};
  for (std::size_t i = 0; i < names.size(); ++i) {
    for (std::size_t j = 0; j < i; ++j) {
      if (names[i] == names[j]) return false;
    }
  }
  return true;
}
}  // namespace verl::detail

namespace verl::dist {

//! A mesh whose shape is compiled in: Mesh<axis::dp<2>, axis::tp<2>> (axes in row-major order, any subset of
//! dp, fsdp, tp, pp or user tags with `name` and `size`).
template <class... Axes>
struct Mesh {
  static_assert(sizeof...(Axes) >= 1, "verl::dist::Mesh: no axes; write e.g. Mesh<axis::dp<2>, axis::tp<2>>");
  static_assert((detail::mesh_axis_tag<Axes> && ...),
                "verl::dist::Mesh: every parameter must be an axis tag such as verl::dist::axis::dp<2> (a type "
                "with static `name` and `size`)");
  static_assert(((Axes::size >= 1) && ...), "verl::dist::Mesh: every axis size must be at least 1");
  static_assert(detail::distinct_axis_names<Axes...>(),
                "verl::dist::Mesh: an axis appears twice; give each axis (dp, fsdp, tp, pp) at most once");

  //! The number of ranks the mesh is compiled for.
  static constexpr int size = (Axes::size * ...);
  static constexpr std::array<int, sizeof...(Axes)> shape{Axes::size...};

  //! The runtime mesh, after checking that the job has `world_size` == size ranks (verl::ConfigError
  //! otherwise: the compiled mesh does not match WORLD_SIZE).
  [[nodiscard]] static DeviceMesh device_mesh(int world_size) {
    DeviceMesh mesh({MeshAxis{std::string(Axes::name), Axes::size}...});
    mesh.check_world_size(world_size);
    return mesh;
  }
};

//! This rank's sub-group communicator along every axis of a mesh, made from the world communicator with
//! `world.new_group(ranks)` (returning std::optional<Comm>, as ProcessGroupCommunicator::new_group does).
//! Collective over the world: every rank constructs it with the same mesh. Throws verl::ConfigError when
//! the mesh's size differs from world.world_size().
template <class Comm>
class MeshCommunicators {
 public:
  MeshCommunicators(Comm& world, DeviceMesh mesh) : mesh_(std::move(mesh)) {
    mesh_.check_world_size(world.world_size());
    for (const auto& a : mesh_.axes()) {
      std::optional<Comm> group = world.new_group(mesh_.group_ranks(a.name, world.rank()));
      verl::detail::check<Error>(group.has_value(), "verl::dist::MeshCommunicators: rank ", world.rank(),
                           " is not in its own ", a.name, " group (the communicator's new_group is inconsistent)");
      groups_.push_back(std::move(*group));
    }
  }

  [[nodiscard]] const DeviceMesh& mesh() const noexcept { return mesh_; }
  //! The communicator of this rank's group along axis `name` (its rank() is this rank's coordinate there).
  [[nodiscard]] Comm& operator[](std::string_view name) {
    return groups_[static_cast<std::size_t>(mesh_.axis_index(name))];
  }

 private:
  DeviceMesh mesh_;
  std::vector<Comm> groups_;
};

}  // namespace verl::dist
