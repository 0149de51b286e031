// The library's single-process model of verl::Communicator (include/verl/dist/single_process_communicator.hpp):
// every collective over a group of one rank, as torch.distributed gives it with world_size 1.
#include "verl/dist/single_process_communicator.hpp"

#include "catch_torch.hpp"
#include "error_of.hpp"

#include <vector>

namespace test_single_process_communicator {  // one namespace per file: a unity build (tests/CMakeLists.txt) may join files

using verl::test::error_of;

TEST_CASE("SingleProcessCommunicator is the 1-rank group", "[dist][communicator]") {
  STATIC_REQUIRE(verl::Communicator<verl::dist::SingleProcessCommunicator>);
  verl::dist::SingleProcessCommunicator comm;
  CHECK(comm.rank() == 0);
  CHECK(comm.world_size() == 1);

  SECTION("all_reduce leaves the tensor as it is for every op, in place") {
    for (auto op : {verl::ReduceOp::sum, verl::ReduceOp::avg, verl::ReduceOp::max, verl::ReduceOp::min}) {
      at::Tensor t = torch::tensor({1.5, -2.0, 3.0});  // (3,)
      const at::Tensor before = t.clone();
      const void* storage = t.data_ptr();
      comm.all_reduce(t, op);
      CHECK(torch::equal(t, before));
      CHECK(t.data_ptr() == storage);
    }
    at::Tensor ints = torch::tensor({3, 5}, torch::kLong);  // avg over one rank keeps integers exact
    comm.all_reduce(ints, verl::ReduceOp::avg);
    CHECK(torch::equal(ints, torch::tensor({3, 5}, torch::kLong)));
  }
  SECTION("broadcast from rank 0 is the identity; any other root is out of range") {
    at::Tensor t = torch::arange(6).reshape({2, 3});  // (2,3)
    comm.broadcast(t, 0);
    CHECK(torch::equal(t, torch::arange(6).reshape({2, 3})));
    CHECK_THAT(error_of([&] { comm.broadcast(t, 1); }),
               Catch::Matchers::Contains("`root` is 1, expected a rank in [0, 1)"));
  }
  SECTION("all_gather fills one slot with a copy of the input") {
    const at::Tensor in = torch::randn({2, 3});  // (2,3)
    std::vector<at::Tensor> out;
    comm.all_gather(out, in);
    REQUIRE(out.size() == 1);
    CHECK(torch::equal(out[0], in));
    CHECK(out[0].data_ptr() != in.data_ptr());  // its own storage, as a real collective's output buffer

    // A preallocated slot of the right shape is written in place; a wrong-sized vector is resized.
    std::vector<at::Tensor> preallocated{torch::zeros({2, 3})};
    const void* slot = preallocated[0].data_ptr();
    comm.all_gather(preallocated, in);
    CHECK(preallocated[0].data_ptr() == slot);
    CHECK(torch::equal(preallocated[0], in));
    std::vector<at::Tensor> three(3, torch::zeros({1}));
    comm.all_gather(three, in);
    CHECK(three.size() == 1);
    CHECK(torch::equal(three[0], in));
  }
  SECTION("the flat and asynchronous collectives of a 1-rank group: copies and a completed handle") {
    at::Tensor t = torch::tensor({1.5, -2.0});  // (2,)
    auto pending = comm.all_reduce_async(t, verl::ReduceOp::sum);
    CHECK_FALSE(pending.pending());
    CHECK(pending.is_completed());
    CHECK(torch::equal(t, torch::tensor({1.5, -2.0})));
    const at::Tensor in = torch::arange(6, torch::kDouble).reshape({2, 3});  // (2,3)
    at::Tensor out = torch::zeros({6}, torch::kDouble);
    comm.reduce_scatter_tensor(out, in, verl::ReduceOp::avg);
    CHECK(torch::equal(out, in.flatten()));
    at::Tensor gathered = torch::zeros({3, 2}, torch::kDouble);
    comm.all_gather_into_tensor(gathered, in);
    CHECK(torch::equal(gathered.flatten(), in.flatten()));
    at::Tensor small = torch::zeros({5}, torch::kDouble);
    CHECK_THAT(error_of<verl::ShapeError>([&] { comm.all_gather_into_tensor(small, in); }),
               Catch::Matchers::Contains("all_gather_into_tensor: `out` has 5 Double elements on cpu and `in` 6"));
    CHECK(comm.traffic().total().calls == 0);
  }
  SECTION("undefined tensors are rejected by name") {
    at::Tensor undefined;
    CHECK_THAT(error_of<verl::ShapeError>([&] { comm.all_reduce(undefined, verl::ReduceOp::sum); }),
               Catch::Matchers::Contains("SingleProcessCommunicator::all_reduce: the tensor is undefined"));
  }
  comm.barrier();
}

}  // namespace test_single_process_communicator
