// Static tests of verl::Communicator and its pieces (include/verl/concepts/communicator.hpp).
#include "verl/concepts/communicator.hpp"

namespace {

struct GoodCommunicator {
  int rank() const;
  int world_size() const;
  void all_reduce(at::Tensor& tensor, verl::ReduceOp op);
  void broadcast(at::Tensor& tensor, int root);
  void all_gather(std::vector<at::Tensor>& out, const at::Tensor& in);
  void barrier();
};
struct AsyncCommunicator {  // returns work handles, takes a size_t root: still a communicator
  struct Work {};
  std::size_t rank() const;
  std::size_t world_size() const;
  Work all_reduce(at::Tensor& tensor, verl::ReduceOp op = verl::ReduceOp::sum);
  Work broadcast(at::Tensor& tensor, std::size_t root);
  Work all_gather(std::vector<at::Tensor>& out, at::Tensor in);
  Work barrier();
};
struct NoAllReduce {
  int rank() const;
  int world_size() const;
  void broadcast(at::Tensor&, int);
  void all_gather(std::vector<at::Tensor>&, const at::Tensor&);
  void barrier();
};
struct AllReduceByValue {  // returns the result instead of reducing in place: the tensor must be mutable
  int rank() const;
  int world_size() const;
  at::Tensor all_reduce(at::Tensor&&, verl::ReduceOp);
  void broadcast(at::Tensor&, int);
  void all_gather(std::vector<at::Tensor>&, const at::Tensor&);
  void barrier();
};
struct MutableRank {
  int rank();
  int world_size();
  void all_reduce(at::Tensor&, verl::ReduceOp);
  void broadcast(at::Tensor&, int);
  void all_gather(std::vector<at::Tensor>&, const at::Tensor&);
  void barrier();
};
struct NoBarrier {
  int rank() const;
  int world_size() const;
  void all_reduce(at::Tensor&, verl::ReduceOp);
  void broadcast(at::Tensor&, int);
  void all_gather(std::vector<at::Tensor>&, const at::Tensor&);
};
struct GatherReturnsVector {
  int rank() const;
  int world_size() const;
  void all_reduce(at::Tensor&, verl::ReduceOp);
  void broadcast(at::Tensor&, int);
  std::vector<at::Tensor> all_gather(const at::Tensor&);
  void barrier();
};

}  // namespace

static_assert(verl::to_string(verl::ReduceOp::avg) == "avg");

static_assert(verl::KnowsRank<GoodCommunicator>);
static_assert(verl::KnowsRank<AsyncCommunicator>);
static_assert(!verl::KnowsRank<MutableRank>);
static_assert(verl::AllReduces<GoodCommunicator>);
static_assert(verl::AllReduces<AsyncCommunicator>);
static_assert(!verl::AllReduces<NoAllReduce>);
static_assert(!verl::AllReduces<AllReduceByValue>);
static_assert(verl::Broadcasts<GoodCommunicator>);
static_assert(verl::AllGathers<GoodCommunicator>);
static_assert(verl::AllGathers<AsyncCommunicator>);
static_assert(!verl::AllGathers<GatherReturnsVector>);
static_assert(verl::HasBarrier<GoodCommunicator>);
static_assert(!verl::HasBarrier<NoBarrier>);

static_assert(verl::Communicator<GoodCommunicator>);
static_assert(verl::Communicator<AsyncCommunicator>);
static_assert(!verl::Communicator<const GoodCommunicator>);
static_assert(!verl::Communicator<NoAllReduce>);
static_assert(!verl::Communicator<AllReduceByValue>);
static_assert(!verl::Communicator<MutableRank>);
static_assert(!verl::Communicator<NoBarrier>);
static_assert(!verl::Communicator<GatherReturnsVector>);
static_assert(!verl::Communicator<int>);

static_assert(verl::check_communicator<GoodCommunicator>());
static_assert(verl::check_communicator<AsyncCommunicator>());
