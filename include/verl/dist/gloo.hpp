#pragma once
//! \file
//! The Gloo backend of verl::dist::ProcessGroupCommunicator: c10d::ProcessGroupGloo (in libtorch_cpu), for
//! CPU tensors, over TCP. `ProcessGroupCommunicator<gloo>` is the communicator of CPU training and of the
//! multi-process tests. Network interface: GLOO_SOCKET_IFNAME when set (as torch.distributed reads it), the
//! loopback address when MASTER_ADDR is a loopback address (single-machine jobs), else the address the
//! host name resolves to (torch's default device).
//!
//! Build requirement: c10d's ProcessGroupGloo.hpp includes Gloo's own headers (<gloo/...>), which PyPI's
//! torch wheel does not ship; Debian's libgloo-dev provides them. The Gloo
//! code itself is the copy inside libtorch_cpu; only declarations come from those headers. Without them
//! VERL_DIST_HAS_GLOO is 0 and using ProcessGroupCommunicator<gloo> is a compile error saying so.

#include "verl/dist/process_group.hpp"

#if defined(USE_C10D_GLOO) && __has_include(<gloo/algorithm.h>)
#define VERL_DIST_HAS_GLOO 1
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#else
#define VERL_DIST_HAS_GLOO 0
#endif

#include <concepts>
#include <cstdlib>
#include <string>
#include <string_view>

namespace verl::dist {

#if VERL_DIST_HAS_GLOO
template <>
struct backend_traits<gloo> {
  //! torch 2.x's Gloo averages by summing, then dividing: done here the same way, also for older LibTorch.
  static constexpr bool native_avg = false;

  [[nodiscard]] static c10::intrusive_ptr<c10d::Backend> make(const c10::intrusive_ptr<c10d::Store>& store,
                                                              int rank, int size, const ProcessGroupOptions& options,
                                                              const LaunchEnv* place) {
    auto gloo_options = c10d::ProcessGroupGloo::Options::create(options.timeout);
    gloo_options->devices.push_back(device(place));
    return c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, size, gloo_options);
  }

  //! Gloo reduces dense tensors; sparse ones have their own path in torch that this class does not wrap.
  static void check_tensor(const at::Tensor& t, std::string_view who) {
    verl::detail::check<ShapeError>(t.layout() == at::kStrided, who, ": the tensor has layout ", t.layout(),
                                    ", expected a dense (strided) tensor");
  }

 private:
  [[nodiscard]] static bool is_loopback(std::string_view addr) {
    return addr == "localhost" || addr == "::1" || addr.substr(0, 4) == "127.";
  }

  [[nodiscard]] static std::shared_ptr<::gloo::transport::Device> device(const LaunchEnv* place) {
    if (const char* ifname = std::getenv("GLOO_SOCKET_IFNAME"); ifname != nullptr && *ifname != '\0') {
      std::string_view names(ifname);
      return c10d::ProcessGroupGloo::createDeviceForInterface(std::string(names.substr(0, names.find(','))));
    }
    if (place == nullptr || is_loopback(place->master_addr)) {
      return c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1");
    }
    return c10d::ProcessGroupGloo::createDefaultDevice();
  }
};

static_assert(Communicator<ProcessGroupCommunicator<gloo>>);
#else
template <class B>
  requires std::same_as<B, gloo>
struct backend_traits<B> {
  static_assert(sizeof(B) == 0,
                "verl::dist::gloo: this build has no Gloo headers (<gloo/algorithm.h>, which c10d's "
                "ProcessGroupGloo.hpp needs; PyPI's torch wheel does not ship them): install Debian's libgloo-dev, "
                "or use a LibTorch built with USE_C10D_GLOO");
};
#endif

}  // namespace verl::dist
