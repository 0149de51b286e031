#pragma once
//! \file
//! verl::dist::SingleProcessCommunicator: the process group of one rank, a model of verl::Communicator for
//! single-process training. Every collective is what a 1-rank torch.distributed group does: all_reduce and
//! broadcast leave the tensor as it is, all_gather copies the input into the single output slot, barrier
//! returns at once. Trainers written against verl::Communicator run unchanged on one process with it.

#include "verl/concepts/communicator.hpp"
#include "verl/core/errors.hpp"
#include "verl/dist/pending_collective.hpp"
#include "verl/dist/traffic_stats.hpp"

#include <ATen/core/Tensor.h>

#include <string_view>
#include <vector>

namespace verl::dist {

//! The 1-rank process group: rank() == 0, world_size() == 1.
class SingleProcessCommunicator {
 public:
  [[nodiscard]] int rank() const noexcept { return 0; }
  [[nodiscard]] int world_size() const noexcept { return 1; }

  //! Leaves `tensor` unchanged: the sum, mean, max and min over one rank are the rank's own tensor.
  //! Throws verl::ShapeError when `tensor` is undefined and verl::ConfigError for an invalid `op`.
  void all_reduce(at::Tensor& tensor, ReduceOp op) const {
    check_defined(tensor, "all_reduce");
    verl::detail::check<ConfigError>(to_string(op) != "<invalid ReduceOp>",
                               "verl::dist::SingleProcessCommunicator::all_reduce: `op` is ",
                               static_cast<int>(op), ", expected a verl::ReduceOp (sum, avg, max or min)");
  }

  //! Leaves `tensor` unchanged (rank 0 is the root). Throws verl::ConfigError unless root == 0.
  void broadcast(at::Tensor& tensor, int root) const {
    check_defined(tensor, "broadcast");
    verl::detail::check<ConfigError>(root == 0, "verl::dist::SingleProcessCommunicator::broadcast: `root` is ", root,
                               ", expected a rank in [0, 1)");
  }

  //! On return out.size() == 1 and out[0] equals `in`, in storage of its own (never aliasing `in`). When
  //! `out` already holds one defined tensor of in's shape, dtype and device, it is written in place.
  void all_gather(std::vector<at::Tensor>& out, const at::Tensor& in) const {
    check_defined(in, "all_gather");
    if (out.size() == 1 && out[0].defined() && out[0].sizes() == in.sizes() && out[0].dtype() == in.dtype() &&
        out[0].device() == in.device() && !out[0].is_same(in)) {
      out[0].copy_(in);
    } else {
      out.assign(1, in.clone());
    }
  }

  //! Returns at once: the only rank has entered.
  void barrier() const noexcept {}

  //! all_reduce, already complete: the returned handle has nothing to wait for.
  [[nodiscard]] PendingCollective all_reduce_async(at::Tensor& tensor, ReduceOp op) const {
    all_reduce(tensor, op);
    return {};
  }

  //! Copies `in` into `out` (the one rank's chunk is the whole input). Throws verl::ShapeError unless both are
  //! defined with the same number of elements, dtype and device.
  void reduce_scatter_tensor(at::Tensor& out, const at::Tensor& in, ReduceOp op) const {
    all_reduce(out, op);  // checks `out` and `op`
    copy_flat(out, in, "reduce_scatter_tensor");
  }

  //! Copies `in` into `out` (one rank's input is the whole gathered output).
  void all_gather_into_tensor(at::Tensor& out, const at::Tensor& in) const {
    check_defined(out, "all_gather_into_tensor");
    copy_flat(out, in, "all_gather_into_tensor");
  }

  //! Nothing moves between ranks in a 1-rank group.
  [[nodiscard]] TrafficStats traffic() const noexcept { return {}; }
  void reset_traffic() const noexcept {}

 private:
  static void copy_flat(at::Tensor& out, const at::Tensor& in, std::string_view collective) {
    check_defined(in, collective);
    verl::detail::check<ShapeError>(out.numel() == in.numel() && out.scalar_type() == in.scalar_type() &&
                                        out.device() == in.device(),
                                    "verl::dist::SingleProcessCommunicator::", collective, ": `out` has ", out.numel(),
                                    " ", out.scalar_type(), " elements on ", out.device(), " and `in` ", in.numel(),
                                    " ", in.scalar_type(), " on ", in.device(),
                                    ", expected as many elements (world size 1) of one dtype on one device");
    out.copy_(in.reshape(out.sizes()));
  }

  static void check_defined(const at::Tensor& t, std::string_view collective) {
    verl::detail::check<ShapeError>(t.defined(), "verl::dist::SingleProcessCommunicator::", collective,
                              ": the tensor is undefined, expected a defined tensor");
  }
};

static_assert(Communicator<SingleProcessCommunicator>);

}  // namespace verl::dist
