#pragma once
//! \file
//! verl::dist::TrafficStats: what a communicator's collectives moved on this rank, per kind of collective,
//! with the bytes a bandwidth-optimal (ring) algorithm would send: the theoretical minimum that benchmarks
//! compare the data-parallel and fully sharded steps against.

#include <cstdint>

namespace verl::dist {

//! What one kind of collective moved on this rank since the counters were last reset.
struct CollectiveTraffic {
  std::int64_t calls = 0;
  //! Bytes of the tensors handed to the collective: the tensor (all_reduce, broadcast), the gathered output
  //! (all_gather, all_gather_into_tensor), the full input (reduce_scatter_tensor).
  std::int64_t payload_bytes = 0;
  //! Bytes this rank sends under a bandwidth-optimal ring algorithm, the theoretical minimum per rank for N
  //! ranks and S payload bytes: all_reduce 2(N-1)/N*S, reduce-scatter and all-gather (N-1)/N*S, broadcast
  //! (N-1)/N*S (the average over ranks of a pipelined ring). The backend's own algorithm may send more.
  std::int64_t ring_bytes_sent = 0;

  CollectiveTraffic& operator+=(const CollectiveTraffic& o) noexcept {
    calls += o.calls;
    payload_bytes += o.payload_bytes;
    ring_bytes_sent += o.ring_bytes_sent;
    return *this;
  }
};

//! Per-collective traffic of one ProcessGroupCommunicator (a group and its copies; sub-groups count their own).
struct TrafficStats {
  CollectiveTraffic all_reduce;      // blocking and asynchronous
  CollectiveTraffic broadcast;
  CollectiveTraffic all_gather;      // all_gather and all_gather_into_tensor
  CollectiveTraffic reduce_scatter;  // reduce_scatter_tensor

  [[nodiscard]] CollectiveTraffic total() const noexcept {
    CollectiveTraffic t = all_reduce;
    t += broadcast;
    t += all_gather;
    t += reduce_scatter;
    return t;
  }
};

}  // namespace verl::dist
