#pragma once
//! \file
//! The NCCL backend of verl::dist::ProcessGroupCommunicator: c10d::ProcessGroupNCCL (in libtorch_cuda), for
//! CUDA tensors on this rank's GPU. It compiles and links in every CUDA build of LibTorch (USE_C10D_NCCL,
//! VERL_WITH_CUDA); on a machine without a GPU, making the group throws verl::dist::CommunicationError
//! ("CUDA is not available") instead of failing inside NCCL.
//!
//! Device: ProcessGroupOptions::device_index, or LaunchEnv::local_rank when it is -1 (torchrun's convention:
//! one GPU per local rank); it becomes the current CUDA device. Timeouts: ProcessGroupOptions::timeout is
//! the NCCL watchdog's timeout; a collective that does not finish within it makes c10d abort the
//! communicator and, by torch's default (TORCH_NCCL_ASYNC_ERROR_HANDLING), the process.

#include "verl/dist/process_group.hpp"

#if defined(USE_C10D_NCCL) && defined(VERL_WITH_CUDA)
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAFunctions.h>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <string_view>

namespace verl::dist {

#if defined(USE_C10D_NCCL) && defined(VERL_WITH_CUDA)
template <>
struct backend_traits<nccl> {
  static constexpr bool native_avg = true;  // ncclAvg

  [[nodiscard]] static c10::intrusive_ptr<c10d::Backend> make(const c10::intrusive_ptr<c10d::Store>& store,
                                                              int rank, int size, const ProcessGroupOptions& options,
                                                              const LaunchEnv* place) {
    const int devices = static_cast<int>(c10::cuda::device_count());
    verl::detail::check<CommunicationError>(
        devices > 0, "verl::dist::ProcessGroupCommunicator<nccl> (rank ", rank, " of ", size,
        "): CUDA is not available on this machine (no GPU or no driver), expected a GPU per rank; use "
        "verl::dist::gloo for CPU training");
    const int device = options.device_index >= 0 ? options.device_index : (place != nullptr ? place->local_rank : 0);
    verl::detail::check<ConfigError>(device < devices, "verl::dist::ProcessGroupCommunicator<nccl> (rank ", rank,
                                     " of ", size, "): CUDA device ", device,
                                     options.device_index >= 0 ? " (ProcessGroupOptions::device_index)"
                                                               : " (the local rank)",
                                     ", expected one of the ", devices, " visible device(s)");
    c10::cuda::set_device(static_cast<c10::DeviceIndex>(device));
    auto nccl_options = c10d::ProcessGroupNCCL::Options::create();
    nccl_options->timeout = options.timeout;
    return c10::make_intrusive<c10d::ProcessGroupNCCL>(store, rank, size, nccl_options);
  }

  static void check_tensor(const at::Tensor& t, std::string_view who) {
    verl::detail::check<ShapeError>(t.is_cuda() && t.layout() == at::kStrided, who, ": the tensor is on ",
                                    t.device(), " with layout ", t.layout(),
                                    ", expected a dense CUDA tensor (the nccl backend moves GPU memory only)");
  }
};

static_assert(Communicator<ProcessGroupCommunicator<nccl>>);
#endif

}  // namespace verl::dist
