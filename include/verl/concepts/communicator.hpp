#pragma once
//! \file
//! verl::Communicator: the collectives data-parallel training needs (torch.distributed's vocabulary:
//! all_reduce, broadcast, all_gather, barrier) over a group of `world_size()` ranks. A NCCL/Gloo process
//! group, an MPI communicator or the single-process group (verl::dist::SingleProcessCommunicator) plug in.

#include <ATen/core/Tensor.h>

#include <concepts>
#include <string_view>
#include <vector>

namespace verl {

//! The reduction of an all_reduce (torch.distributed.ReduceOp's SUM, AVG, MAX, MIN).
enum class ReduceOp { sum, avg, max, min };

//! "sum", "avg", "max" or "min".
[[nodiscard]] constexpr std::string_view to_string(ReduceOp op) {
  switch (op) {
    case ReduceOp::sum: return "sum";
    case ReduceOp::avg: return "avg";
    case ReduceOp::max: return "max";
    case ReduceOp::min: return "min";
  }
  return "<invalid ReduceOp>";
}

namespace detail {
template <class C>
concept has_rank_members = requires(const C& c) {
  c.rank();
  c.world_size();
};
template <class C>
concept has_all_reduce_member = requires(C& c, at::Tensor& t, ReduceOp op) { c.all_reduce(t, op); };
template <class C>
concept has_broadcast_member = requires(C& c, at::Tensor& t, int root) { c.broadcast(t, root); };
template <class C>
concept has_all_gather_member = requires(C& c, std::vector<at::Tensor>& out, const at::Tensor& in) {
  c.all_gather(out, in);
};
template <class C>
concept has_barrier_member = requires(C& c) { c.barrier(); };
}  // namespace detail

//! Knows its place in the group.
//!
//! Satisfied when, for `const C& c`: 1. `c.rank()` and 2. `c.world_size()` return types convertible to int.
//! Laws: world_size() >= 1; 0 <= rank() < world_size(); ranks are distinct; neither changes.
template <class C>
concept KnowsRank = requires(const C& c) {
  { c.rank() } -> std::convertible_to<int>;
  { c.world_size() } -> std::convertible_to<int>;
};

//! Reduces a tensor across the group, in place.
//!
//! Satisfied when, for `C& c`, `at::Tensor& t`, `verl::ReduceOp op`: 1. `c.all_reduce(t, op)` is valid
//! (the result, if any, is ignored).
//! Laws: collective (every rank calls it, in the same order, with tensors of one shape and dtype); on
//! return every rank's `t` holds the same tensor, the element-wise sum/mean/max/min of the inputs; with
//! world_size() == 1 it leaves `t` unchanged.
template <class C>
concept AllReduces = requires(C& c, at::Tensor& t, ReduceOp op) { c.all_reduce(t, op); };

//! Broadcasts a tensor from one rank, in place.
//!
//! Satisfied when, for `C& c`, `at::Tensor& t`, `int root`: 1. `c.broadcast(t, root)` is valid.
//! Laws: collective; 0 <= root < world_size(); on return every rank's `t` equals root's (shapes agree).
template <class C>
concept Broadcasts = requires(C& c, at::Tensor& t, int root) { c.broadcast(t, root); };

//! Gathers one tensor from every rank.
//!
//! Satisfied when, for `C& c`, `std::vector<at::Tensor>& out`, `const at::Tensor& in`:
//! 1. `c.all_gather(out, in)` is valid.
//! Laws: collective; on return out.size() == world_size() and out[r] equals rank r's `in` on every rank
//! (shapes agree across ranks); `out` may be empty on entry; when it already holds world_size() tensors of
//! in's shape and dtype they may be written in place.
template <class C>
concept AllGathers = requires(C& c, std::vector<at::Tensor>& out, const at::Tensor& in) { c.all_gather(out, in); };

//! Synchronises the group.
//!
//! Satisfied when, for `C& c`: 1. `c.barrier()` is valid.
//! Laws: collective; no rank returns before every rank has entered it.
template <class C>
concept HasBarrier = requires(C& c) { c.barrier(); };

//! A process group for data-parallel training.
//!
//! Satisfied when:
//!   1. KnowsRank<C>: `c.rank()`, `c.world_size()` -> int (const members);
//!   2. AllReduces<C>: `c.all_reduce(torch::Tensor&, verl::ReduceOp)`;
//!   3. Broadcasts<C>: `c.broadcast(torch::Tensor&, int root)`;
//!   4. AllGathers<C>: `c.all_gather(std::vector<torch::Tensor>& out, const torch::Tensor& in)`;
//!   5. HasBarrier<C>: `c.barrier()`.
//!
//! Laws (not checked by the compiler): those of the pieces; collectives are called by every rank in one
//! order (a mismatch deadlocks); errors are reported by throwing verl::Error, never by returning codes.
//!
//! Models in this library: verl::dist::SingleProcessCommunicator (verl/dist/single_process_communicator.hpp).
//! See also: verl::check_communicator, docs/concepts.md#communicator.
template <class C>
concept Communicator = KnowsRank<C> && AllReduces<C> && Broadcasts<C> && AllGathers<C> && HasBarrier<C>;

//! Checks Communicator<C> piece by piece, one static_assert per missing or mistyped member. Returns true.
template <class C>
consteval bool check_communicator() {
  static_assert(detail::has_rank_members<C>,
                "verl::Communicator: the communicator type has no const members `rank()` and `world_size()`; "
                "add both, returning int");
  static_assert(!detail::has_rank_members<C> || KnowsRank<C>,
                "verl::Communicator: the communicator's `rank()` or `world_size()` returns a type not convertible "
                "to int; return int");
  static_assert(detail::has_all_reduce_member<C>,
                "verl::Communicator: the communicator type has no member `all_reduce(torch::Tensor&, "
                "verl::ReduceOp)`; add one reducing the tensor in place across the group");
  static_assert(detail::has_broadcast_member<C>,
                "verl::Communicator: the communicator type has no member `broadcast(torch::Tensor&, int root)`; "
                "add one copying root's tensor into every rank's, in place");
  static_assert(detail::has_all_gather_member<C>,
                "verl::Communicator: the communicator type has no member `all_gather(std::vector<torch::Tensor>& "
                "out, const torch::Tensor& in)`; add one filling out[r] with rank r's tensor");
  static_assert(detail::has_barrier_member<C>,
                "verl::Communicator: the communicator type has no member `barrier()`; add one that returns once "
                "every rank has entered it");
  return true;  // reached only when every piece holds: the concept is their conjunction
}

}  // namespace verl
