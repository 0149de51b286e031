// expect: verl::Communicator: the communicator type has no member `all_reduce\(torch::Tensor&, verl::ReduceOp\)`
// A communicator whose all_reduce is spelled allreduce (MPI style).
#include "verl/concepts/communicator.hpp"

namespace {

struct Communicator {
  int rank() const;
  int world_size() const;
#if VERL_FAIL_TWIN
  void all_reduce(at::Tensor& tensor, verl::ReduceOp op);
#else
  void allreduce(at::Tensor& tensor, verl::ReduceOp op);
#endif
  void broadcast(at::Tensor& tensor, int root);
  void all_gather(std::vector<at::Tensor>& out, const at::Tensor& in);
  void barrier();
};

}  // namespace

static_assert(verl::check_communicator<Communicator>());
