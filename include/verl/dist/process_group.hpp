#pragma once
//! \file
//! verl::dist::ProcessGroupCommunicator<Backend>: a model of verl::Communicator over a torch.distributed c10d
//! backend (the engines torch.distributed itself runs on), with the backend as a template parameter:
//! verl::dist::gloo (CPU tensors; include verl/dist/gloo.hpp) or verl::dist::nccl (CUDA tensors; include
//! verl/dist/nccl.hpp). This header holds what is common: the rendezvous, the collectives, sub-groups.
//!
//! Rendezvous as torch.distributed's env:// does: rank 0 hosts a c10d::TCPStore at MASTER_ADDR:MASTER_PORT,
//! every rank connects to it, and the backend exchanges its addresses through it. Every blocking step (store
//! connection, backend set-up, each collective) is bounded by ProcessGroupOptions::timeout: a rank that dies
//! or stops calling collectives makes the others throw verl::dist::CommunicationError, never hang.
//!
//! ```cpp
//! #include "verl/dist/gloo.hpp"
//! auto comm = verl::dist::ProcessGroupCommunicator<verl::dist::gloo>::init(verl::dist::launch_env_from_environ(),
//!                                                                          {.timeout = std::chrono::seconds(60)});
//! at::Tensor loss_sum = ...;                       // (1,)
//! comm.all_reduce(loss_sum, verl::ReduceOp::sum);  // every rank now holds the sum
//! auto pair = comm.new_group({0, 1});              // a sub-group; std::nullopt on ranks 2.. (not members)
//! ```

#include "verl/concepts/communicator.hpp"
#include "verl/core/errors.hpp"
#include "verl/dist/launch_env.hpp"
#include "verl/dist/pending_collective.hpp"
#include "verl/dist/traffic_stats.hpp"

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty_like.h>
#include <c10/util/Exception.h>
#include <torch/csrc/distributed/c10d/Backend.hpp>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/Store.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/csrc/distributed/c10d/Types.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <exception>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace verl::dist {

//! A collective or the rendezvous failed: a peer exited, stopped answering within the timeout, or the
//! network failed. The message names the communicator, the rank, the operation and c10d's own reason.
class CommunicationError : public Error {
 public:
  using Error::Error;
};

//! Backend tags. A backend is usable once its header is included (it specialises backend_traits).
struct gloo {
  static constexpr std::string_view name = "gloo";
};
struct nccl {
  static constexpr std::string_view name = "nccl";
};

//! How a backend is made and which tensors it takes. Specialised in verl/dist/gloo.hpp and verl/dist/nccl.hpp:
//!   static c10::intrusive_ptr<c10d::Backend> make(const c10::intrusive_ptr<c10d::Store>&, int rank, int size,
//!                                                 const ProcessGroupOptions&, const LaunchEnv*);
//!   static void check_tensor(const at::Tensor&, std::string_view who);   // throws ShapeError when unusable
//!   static constexpr bool native_avg;                                    // ReduceOp::AVG done by the backend
template <class Backend>
struct backend_traits {
  static_assert(sizeof(Backend) == 0,
                "verl::dist::ProcessGroupCommunicator<Backend>: no backend_traits for this Backend; use "
                "verl::dist::gloo (include \"verl/dist/gloo.hpp\") or verl::dist::nccl (include "
                "\"verl/dist/nccl.hpp\"), or specialise verl::dist::backend_traits<YourBackend>");
};

//! Options of a process group.
struct ProcessGroupOptions {
  //! Bound on every blocking step: store connection (and, on rank 0, waiting for all ranks to connect),
  //! backend set-up and each collective. torch.distributed's default for Gloo is 30 minutes.
  std::chrono::milliseconds timeout = std::chrono::minutes(30);
  //! nccl: the CUDA device of this rank; -1 means LaunchEnv::local_rank (torchrun's convention). Ignored by gloo.
  int device_index = -1;
};

}  // namespace verl::dist

namespace verl::detail {

//! c10d's message without its C++ backtrace (c10::Error::what() appends a long one).
[[nodiscard]] inline std::string c10d_reason(const std::exception& e) {
  if (const auto* c10_error = dynamic_cast<const c10::Error*>(&e)) return c10_error->what_without_backtrace();
  return e.what();
}

//! "0,2,5".
[[nodiscard]] inline std::string join_ranks(const std::vector<int>& ranks) {
  std::string s;
  for (std::size_t i = 0; i < ranks.size(); ++i) {
    if (i != 0) s.push_back(',');
    s.append(std::to_string(ranks[i]));
  }
  return s;
}

[[nodiscard]] inline c10d::ReduceOp to_c10d(ReduceOp op) {
  switch (op) {
    case ReduceOp::sum: return c10d::ReduceOp::SUM;
    case ReduceOp::avg: return c10d::ReduceOp::AVG;
    case ReduceOp::max: return c10d::ReduceOp::MAX;
    case ReduceOp::min: return c10d::ReduceOp::MIN;
  }
  throw ConfigError(verl::detail::concat_message("verl::dist::ProcessGroupCommunicator::all_reduce: `op` is ",
                                                 static_cast<int>(op),
                                                 ", expected a verl::ReduceOp (sum, avg, max or min)"));
}

}  // namespace verl::detail

namespace verl::dist {

//! A c10d process group of world_size() ranks, a model of verl::Communicator.
//!
//! \tparam Backend  verl::dist::gloo or verl::dist::nccl (or a tag with a backend_traits specialisation).
//!
//! Copies share the group (c10d's backends are reference-counted). Collectives follow torch.distributed:
//! every rank calls them in one order with tensors of one shape and dtype; they block until done (or throw
//! CommunicationError after the timeout). Non-contiguous tensors are handled through a contiguous copy.
template <class Backend>
class ProcessGroupCommunicator {
  using traits = backend_traits<Backend>;

 public:
  //! Joins the job described by `place` (see launch_env.hpp): rank 0 hosts the TCPStore at
  //! place.master_addr:place.master_port and waits (up to options.timeout) for every rank to connect.
  //! Throws CommunicationError when the rendezvous fails or times out.
  [[nodiscard]] static ProcessGroupCommunicator init(const LaunchEnv& place, ProcessGroupOptions options = {}) {
    c10::intrusive_ptr<c10d::Store> store;
    try {
      c10d::TCPStoreOptions store_options;
      store_options.port = place.master_port;
      store_options.isServer = place.rank == 0;
      store_options.numWorkers = static_cast<std::size_t>(place.world_size);
      store_options.waitWorkers = true;
      store_options.timeout = options.timeout;
      store = c10::make_intrusive<c10d::TCPStore>(place.master_addr, store_options);
    } catch (const std::exception& e) {
      throw CommunicationError(verl::detail::concat_message(
          "verl::dist::ProcessGroupCommunicator<", Backend::name, ">::init (rank ", place.rank, " of ",
          place.world_size, "): the rendezvous store at ", place.master_addr, ":", place.master_port,
          place.rank == 0 ? " (hosted by this rank)" : "", " failed within the timeout of ", options.timeout.count(),
          " ms: ", verl::detail::c10d_reason(e)));
    }
    return from_store(std::move(store), place.rank, place.world_size, options, &place);
  }

  //! A group over an existing store (e.g. a c10d::FileStore or HashStore), this process being `rank` of
  //! `world_size`. `place`, when given, supplies the rendezvous host (gloo) and local rank (nccl).
  [[nodiscard]] static ProcessGroupCommunicator from_store(c10::intrusive_ptr<c10d::Store> store, int rank,
                                                           int world_size, ProcessGroupOptions options = {},
                                                           const LaunchEnv* place = nullptr) {
    verl::detail::check<ConfigError>(world_size >= 1 && rank >= 0 && rank < world_size,
                                     "verl::dist::ProcessGroupCommunicator<", Backend::name, ">: rank ", rank,
                                     " of world size ", world_size, ", expected 0 <= rank < world_size");
    verl::detail::check<ConfigError>(options.timeout.count() > 0, "verl::dist::ProcessGroupCommunicator<",
                                     Backend::name, ">: options.timeout is ", options.timeout.count(),
                                     " ms, expected a positive duration");
    auto state = std::make_shared<State>();
    state->store = std::move(store);
    state->options = options;
    if (place != nullptr) state->place = *place;
    std::vector<int> ranks(static_cast<std::size_t>(world_size));
    for (int r = 0; r < world_size; ++r) ranks[static_cast<std::size_t>(r)] = r;
    return ProcessGroupCommunicator(std::move(state), "verl/default/", rank, std::move(ranks));
  }

  [[nodiscard]] int rank() const noexcept { return rank_; }
  [[nodiscard]] int world_size() const noexcept { return static_cast<int>(global_ranks_.size()); }
  //! The rank in the root group (the one made by init/from_store) of each rank of this group, ascending.
  [[nodiscard]] const std::vector<int>& global_ranks() const noexcept { return global_ranks_; }
  [[nodiscard]] std::chrono::milliseconds timeout() const noexcept { return state_->options.timeout; }
  //! The c10d backend, for collectives this class does not wrap (reduce_scatter, all_to_all, ...).
  [[nodiscard]] const c10::intrusive_ptr<c10d::Backend>& backend() const noexcept { return backend_; }

  //! Reduces `tensor` across the group in place (torch.distributed.all_reduce). avg is the sum divided by
  //! world_size() after the reduction, as torch's Gloo backend computes it (NCCL averages natively); like
  //! torch, avg of an integer tensor is refused (here with a ConfigError before any communication).
  void all_reduce(at::Tensor& tensor, ReduceOp op) {
    check_tensor(tensor, "all_reduce");
    const c10d::ReduceOp c10d_op = verl::detail::to_c10d(op);
    verl::detail::check<ConfigError>(
        op != ReduceOp::avg || at::isFloatingType(tensor.scalar_type()) || at::isComplexType(tensor.scalar_type()),
        who("all_reduce"), ": avg of a ", tensor.scalar_type(),
        " tensor, expected a floating-point tensor (the mean of integers is not an integer; torch.distributed "
        "refuses it too)");
    with_contiguous(tensor, [&](at::Tensor& t) {
      std::vector<at::Tensor> tensors{t};
      c10d::AllreduceOptions opts;
      const bool post_divide = op == ReduceOp::avg && !traits::native_avg;
      opts.reduceOp = post_divide ? c10d::ReduceOp(c10d::ReduceOp::SUM) : c10d_op;
      opts.timeout = timeout();
      run("all_reduce", [&] { return backend_->allreduce(tensors, opts); });
      if (post_divide) t.div_(world_size());
    });
    count(&TrafficStats::all_reduce, tensor, 2);
  }

  //! all_reduce started without waiting (torch.distributed.all_reduce(async_op=True)): the collective runs on
  //! the backend's threads while the caller goes on (e.g. with the rest of a backward pass); the returned
  //! handle's wait() blocks until it is done. `tensor` must be contiguous (it is reduced in place) and must
  //! not be read or written until then. Collectives are matched across ranks in the order they are started.
  [[nodiscard]] PendingCollective all_reduce_async(at::Tensor& tensor, ReduceOp op) {
    check_tensor(tensor, "all_reduce_async");
    verl::detail::check<ShapeError>(tensor.is_contiguous(), who("all_reduce_async"),
                                    ": the tensor is not contiguous, expected a contiguous tensor (it is reduced "
                                    "in place while the caller goes on; use all_reduce for other tensors)");
    const c10d::ReduceOp c10d_op = verl::detail::to_c10d(op);
    verl::detail::check<ConfigError>(op != ReduceOp::avg || at::isFloatingType(tensor.scalar_type()) ||
                                         at::isComplexType(tensor.scalar_type()),
                                     who("all_reduce_async"), ": avg of a ", tensor.scalar_type(),
                                     " tensor, expected a floating-point tensor");
    std::vector<at::Tensor> tensors{tensor};
    c10d::AllreduceOptions opts;
    const bool post_divide = op == ReduceOp::avg && !traits::native_avg;
    opts.reduceOp = post_divide ? c10d::ReduceOp(c10d::ReduceOp::SUM) : c10d_op;
    opts.timeout = timeout();
    c10::intrusive_ptr<c10d::Work> work = start("all_reduce_async", [&] { return backend_->allreduce(tensors, opts); });
    count(&TrafficStats::all_reduce, tensor, 2);
    auto self = *this;  // shares the group; keeps the backend alive until waited for
    at::Tensor t = tensor;
    return PendingCollective(
        [self, work, t, post_divide]() mutable {
          self.finish("all_reduce_async", work);
          if (post_divide) t.div_(self.world_size());
        },
        [work] { return work->isCompleted(); });
  }

  //! Reduces `in` (world_size() equal chunks, concatenated along its flattened elements) across the group and
  //! writes chunk rank() of the result into `out` (torch.distributed.reduce_scatter_tensor). `in` holds
  //! world_size() * out.numel() elements; both are contiguous, of one dtype and device. avg as all_reduce.
  void reduce_scatter_tensor(at::Tensor& out, const at::Tensor& in, ReduceOp op) {
    check_tensor(out, "reduce_scatter_tensor");
    check_tensor(in, "reduce_scatter_tensor");
    check_flat_pair(out, in, "reduce_scatter_tensor", "`in`", "`out`");
    const c10d::ReduceOp c10d_op = verl::detail::to_c10d(op);
    verl::detail::check<ConfigError>(op != ReduceOp::avg || at::isFloatingType(in.scalar_type()) ||
                                         at::isComplexType(in.scalar_type()),
                                     who("reduce_scatter_tensor"), ": avg of a ", in.scalar_type(),
                                     " tensor, expected a floating-point tensor");
    c10d::ReduceScatterOptions opts;
    const bool post_divide = op == ReduceOp::avg && !traits::native_avg;
    opts.reduceOp = post_divide ? c10d::ReduceOp(c10d::ReduceOp::SUM) : c10d_op;
    opts.timeout = timeout();
    at::Tensor input = in;  // c10d takes non-const references
    run("reduce_scatter_tensor", [&] { return backend_->_reduce_scatter_base(out, input, opts); });
    if (post_divide) out.div_(world_size());
    count(&TrafficStats::reduce_scatter, in, 1);
  }

  //! Writes rank r's `in` into elements [r*n, (r+1)*n) of `out`, n = in.numel(), on every rank
  //! (torch.distributed.all_gather_into_tensor). Both contiguous, of one dtype and device.
  void all_gather_into_tensor(at::Tensor& out, const at::Tensor& in) {
    check_tensor(out, "all_gather_into_tensor");
    check_tensor(in, "all_gather_into_tensor");
    check_flat_pair(in, out, "all_gather_into_tensor", "`out`", "`in`");
    c10d::AllgatherOptions opts;
    opts.timeout = timeout();
    at::Tensor input = in;
    run("all_gather_into_tensor", [&] { return backend_->_allgather_base(out, input, opts); });
    count(&TrafficStats::all_gather, out, 1);
  }

  //! What this group's collectives moved on this rank since the last reset_traffic() (shared by copies).
  [[nodiscard]] TrafficStats traffic() const {
    std::lock_guard lock(traffic_->mutex);
    return traffic_->stats;
  }
  void reset_traffic() {
    std::lock_guard lock(traffic_->mutex);
    traffic_->stats = {};
  }

  //! Copies root's `tensor` into every rank's, in place (torch.distributed.broadcast; root is a rank of
  //! this group).
  void broadcast(at::Tensor& tensor, int root) {
    check_tensor(tensor, "broadcast");
    verl::detail::check<ConfigError>(root >= 0 && root < world_size(), who("broadcast"), ": `root` is ", root,
                                     ", expected a rank in [0, ", world_size(), ")");
    with_contiguous(tensor, [&](at::Tensor& t) {
      std::vector<at::Tensor> tensors{t};
      c10d::BroadcastOptions opts;
      opts.rootRank = root;
      opts.timeout = timeout();
      run("broadcast", [&] { return backend_->broadcast(tensors, opts); });
    });
    count(&TrafficStats::broadcast, tensor, 1);
  }

  //! out[r] = rank r's `in` (torch.distributed.all_gather). `out` is resized to world_size() fresh tensors
  //! unless it already holds world_size() contiguous tensors of in's shape, dtype and device, which are
  //! written in place.
  void all_gather(std::vector<at::Tensor>& out, const at::Tensor& in) {
    check_tensor(in, "all_gather");
    const auto n = static_cast<std::size_t>(world_size());
    const bool reusable = out.size() == n && std::all_of(out.begin(), out.end(), [&](const at::Tensor& o) {
                            return o.defined() && o.is_contiguous() && o.sizes() == in.sizes() &&
                                   o.dtype() == in.dtype() && o.device() == in.device() && !o.is_same(in);
                          });
    if (!reusable) {
      out.clear();
      for (std::size_t r = 0; r < n; ++r) out.push_back(at::empty_like(in, at::MemoryFormat::Contiguous));
    }
    std::vector<std::vector<at::Tensor>> outputs{out};
    std::vector<at::Tensor> inputs{in.contiguous()};
    c10d::AllgatherOptions opts;
    opts.timeout = timeout();
    run("all_gather", [&] { return backend_->allgather(outputs, inputs, opts); });
    count(&TrafficStats::all_gather, in, 1, world_size());
  }

  //! Returns once every rank of the group has entered (torch.distributed.barrier).
  void barrier() {
    c10d::BarrierOptions opts;
    opts.timeout = timeout();
    run("barrier", [&] { return backend_->barrier(opts); });
  }

  //! The sub-group of `ranks` (ranks of this group; sorted, as torch.distributed.new_group does, so the
  //! sub-group's rank r is the r-th smallest), or std::nullopt when this rank is not one of them.
  //! Collective over the members only: each member calls new_group with the same set, in the same order
  //! relative to its other new_group calls with that set; non-members may call it or not. The sub-group's
  //! backend rendezvouses through a PrefixStore named after the set, within the timeout.
  [[nodiscard]] std::optional<ProcessGroupCommunicator> new_group(std::vector<int> ranks) {
    std::sort(ranks.begin(), ranks.end());
    verl::detail::check<ConfigError>(!ranks.empty(), who("new_group"), ": `ranks` is empty, expected at least one rank");
    verl::detail::check<ConfigError>(std::adjacent_find(ranks.begin(), ranks.end()) == ranks.end(),
                                     who("new_group"), ": `ranks` lists a rank twice, expected distinct ranks");
    verl::detail::check<ConfigError>(ranks.front() >= 0 && ranks.back() < world_size(), who("new_group"),
                                     ": `ranks` holds ", ranks.front() < 0 ? ranks.front() : ranks.back(),
                                     ", expected ranks in [0, ", world_size(), ")");
    std::string name = prefix_ + "group[" + verl::detail::join_ranks(ranks) + "]";
    name += "#" + std::to_string(state_->subgroup_count[name]++) + "/";
    const auto me = std::find(ranks.begin(), ranks.end(), rank_);
    if (me == ranks.end()) return std::nullopt;
    std::vector<int> global;
    global.reserve(ranks.size());
    for (int r : ranks) global.push_back(global_ranks_[static_cast<std::size_t>(r)]);
    return ProcessGroupCommunicator(state_, std::move(name), static_cast<int>(me - ranks.begin()), std::move(global));
  }

 private:
  struct State {
    c10::intrusive_ptr<c10d::Store> store;
    ProcessGroupOptions options;
    std::optional<LaunchEnv> place;
    std::map<std::string, int> subgroup_count;  // new_group calls per parent and rank set: unique store prefixes
  };

  ProcessGroupCommunicator(std::shared_ptr<State> state, std::string prefix, int rank, std::vector<int> global_ranks)
      : state_(std::move(state)), prefix_(std::move(prefix)), rank_(rank), global_ranks_(std::move(global_ranks)) {
    try {
      auto store = c10::make_intrusive<c10d::PrefixStore>(prefix_, state_->store);
      backend_ = traits::make(store, rank_, world_size(), state_->options,
                              state_->place ? &*state_->place : nullptr);
    } catch (const Error&) {
      throw;
    } catch (const std::exception& e) {
      throw CommunicationError(verl::detail::concat_message(
          who("set-up"), ": the ", Backend::name, " backend of group ", prefix_, " (global ranks ",
          ranks_text(), ") was not set up within the timeout of ", state_->options.timeout.count(),
          " ms (a rank exited or did not join): ", verl::detail::c10d_reason(e)));
    }
  }

  [[nodiscard]] std::string who(std::string_view op) const {
    return verl::detail::concat_message("verl::dist::ProcessGroupCommunicator<", Backend::name, ">::", op,
                                        " (rank ", rank_, " of ", world_size(), ")");
  }

  [[nodiscard]] std::string ranks_text() const { return verl::detail::join_ranks(global_ranks_); }

  void check_tensor(const at::Tensor& t, std::string_view op) const {
    verl::detail::check<ShapeError>(t.defined(), who(op), ": the tensor is undefined, expected a defined tensor");
    traits::check_tensor(t, who(op));
  }

  //! Runs `f` on `tensor` itself when it is contiguous, else on a contiguous copy written back afterwards.
  template <class F>
  static void with_contiguous(at::Tensor& tensor, F&& f) {
    if (tensor.is_contiguous()) {
      f(tensor);
      return;
    }
    at::Tensor copy = tensor.contiguous();
    f(copy);
    tensor.copy_(copy);
  }

  //! Starts a collective and waits for it, bounded by the timeout; c10d's failures become CommunicationError.
  template <class Start>
  void run(std::string_view op, Start&& start_collective) {
    c10::intrusive_ptr<c10d::Work> work = start(op, std::forward<Start>(start_collective));
    finish(op, work);
  }

  //! Starts a collective; a failure to start becomes CommunicationError.
  template <class Start>
  c10::intrusive_ptr<c10d::Work> start(std::string_view op, Start&& start_collective) {
    try {
      return start_collective();
    } catch (const Error&) {
      throw;
    } catch (const std::exception& e) {
      throw failure(op, e);
    }
  }

  //! Waits for a started collective, bounded by the timeout.
  void finish(std::string_view op, const c10::intrusive_ptr<c10d::Work>& work) {
    try {
      const bool completed = work->wait(timeout());
      verl::detail::check<CommunicationError>(completed, who(op), ": the collective was aborted");
    } catch (const Error&) {
      throw;
    } catch (const std::exception& e) {
      throw failure(op, e);
    }
  }

  [[nodiscard]] CommunicationError failure(std::string_view op, const std::exception& e) const {
    return CommunicationError(verl::detail::concat_message(
        who(op), ": the collective failed (global ranks ", ranks_text(), ", timeout ", timeout().count(),
        " ms; a peer may have exited or stopped calling collectives): ", verl::detail::c10d_reason(e)));
  }

  //! `small` holds world_size() times fewer elements than `large`; both contiguous, one dtype and device.
  void check_flat_pair(const at::Tensor& small, const at::Tensor& large, std::string_view op,
                       std::string_view large_name, std::string_view small_name) const {
    verl::detail::check<ShapeError>(small.is_contiguous() && large.is_contiguous(), who(op),
                                    ": `in` and `out` must be contiguous");
    verl::detail::check<ShapeError>(small.scalar_type() == large.scalar_type() && small.device() == large.device(),
                                    who(op), ": ", large_name, " is ", large.scalar_type(), " on ", large.device(),
                                    " and ", small_name, " ", small.scalar_type(), " on ", small.device(),
                                    ", expected one dtype and device");
    verl::detail::check<ShapeError>(large.numel() == small.numel() * world_size(), who(op), ": ", large_name,
                                    " has ", large.numel(), " elements and ", small_name, " ", small.numel(),
                                    ", expected ", large_name, " to hold world_size() (", world_size(), ") x ",
                                    small.numel(), " = ", small.numel() * world_size(), " elements");
  }

  //! Counts one collective over `t` (times `copies` for the payload: all_gather's output is world_size()
  //! inputs); `ring_factor` is 2 for all_reduce, 1 for the others: ring bytes = factor (N-1)/N payload.
  void count(CollectiveTraffic TrafficStats::*member, const at::Tensor& t, int ring_factor, int copies = 1) {
    const auto n = static_cast<std::int64_t>(world_size());
    const std::int64_t payload = static_cast<std::int64_t>(t.numel()) * static_cast<std::int64_t>(t.element_size()) * copies;
    std::lock_guard lock(traffic_->mutex);
    CollectiveTraffic& c = traffic_->stats.*member;
    c.calls += 1;
    c.payload_bytes += payload;
    c.ring_bytes_sent += ring_factor * (n - 1) * payload / n;
  }

  struct Traffic {
    std::mutex mutex;  // a collective may be counted from another thread (an autograd hook) than traffic()'s
    TrafficStats stats;
  };

  std::shared_ptr<State> state_;
  std::shared_ptr<Traffic> traffic_ = std::make_shared<Traffic>();
  std::string prefix_;
  int rank_ = 0;
  std::vector<int> global_ranks_;
  c10::intrusive_ptr<c10d::Backend> backend_;
};

}  // namespace verl::dist
