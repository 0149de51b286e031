// The c10d communicators (include/verl/dist/process_group.hpp, gloo.hpp, nccl.hpp), the launch environment
// (launch_env.hpp), the device mesh (device_mesh.hpp) and the local launcher (launch_local.hpp).
//
// Multi-process cases start this test executable itself as 2 or 4 ranks through verl::dist::launch_local;
// each rank runs the hidden test case "[.c10d_worker]" in the mode named by VERL_C10D_TEST_MODE, and the
// parent checks every rank's exit status. Expected values are computed on each rank from every rank's
// (deterministic) input, without communication. Semantics pinned: torch.distributed 2.11 (Gloo backend,
// ReduceOp SUM/AVG/MAX/MIN; AVG of an integer tensor is refused; new_group sorts its ranks) and
// torch.distributed.device_mesh.init_device_mesh (row-major mesh = arange(world).view(shape)).
#include "catch_torch.hpp"

#include "dist_test_support.hpp"
#include "error_of.hpp"
#include "temp_dir.hpp"
#include "verl/dist/device_mesh.hpp"
#include "verl/dist/gloo.hpp"
#include "verl/dist/launch_env.hpp"
#include "verl/dist/launch_local.hpp"
#include "verl/dist/nccl.hpp"

#include <torch/csrc/distributed/c10d/HashStore.hpp>

#include <chrono>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

namespace test_c10d {  // one namespace per file: a unity build (tests/CMakeLists.txt) may join files

using verl::ReduceOp;
using verl::test::error_of;
using namespace std::chrono_literals;

namespace {

//! Rank r's input to the reductions: exactly representable values (multiples of 1/4 and small integers), so
//! every sum and mean is exact whatever order the backend adds in.
at::Tensor rank_input(int r, at::ScalarType dtype) {
  auto base = torch::arange(12, torch::kDouble).reshape({3, 4});  // (3,4)
  auto sign = (base.remainder(3) - 1) * (r % 2 == 0 ? 1 : -1);    // (3,4): rank-dependent sign pattern
  auto t = base * 0.25 * (r + 1) + sign * r;                      // (3,4)
  if (dtype == torch::kLong) t = (base * (r + 1) + sign * r).to(torch::kLong) * (int64_t{1} << 40) + r;  // > 2^53
  return t.to(dtype);
}

}  // namespace

#if VERL_DIST_HAS_GLOO
namespace {

using Gloo = verl::dist::ProcessGroupCommunicator<verl::dist::gloo>;
constexpr auto kTimeout = 5000ms;  // collectives and rendezvous of the worker ranks

//! Starts `n` ranks of this executable in `mode`; the launcher's own timeout keeps a hang from stalling CTest.
verl::dist::LocalLaunchResult run_ranks(int n, const std::string& mode,
                                        std::chrono::milliseconds grace = std::chrono::milliseconds(5000)) {
  auto result = verl::test::launch_self(n, "[.c10d_worker]", {{"VERL_C10D_TEST_MODE", mode}}, 25000ms, grace);
  INFO(result.summary());
  return result;
}

//! The reduction of every rank's input, computed here from all inputs (no communication).
at::Tensor expected_reduction(int n, at::ScalarType dtype, ReduceOp op) {
  std::vector<at::Tensor> all;
  for (int r = 0; r < n; ++r) all.push_back(rank_input(r, dtype));
  const auto stacked = torch::stack(all);  // (n,3,4)
  switch (op) {
    case ReduceOp::sum: return stacked.sum(0);
    case ReduceOp::avg: return stacked.sum(0) / n;
    case ReduceOp::max: return std::get<0>(stacked.max(0));
    case ReduceOp::min: return std::get<0>(stacked.min(0));
  }
  return {};
}

void check_collectives(Gloo& comm) {
  const int n = comm.world_size();
  const int r = comm.rank();
  // all_reduce: every op and dtype, in place.
  for (auto dtype : {torch::kFloat, torch::kDouble, torch::kLong}) {
    for (auto op : {ReduceOp::sum, ReduceOp::avg, ReduceOp::max, ReduceOp::min}) {
      INFO("dtype " << dtype << ", op " << verl::to_string(op));
      at::Tensor t = rank_input(r, dtype);  // (3,4)
      if (op == ReduceOp::avg && dtype == torch::kLong) {
        CHECK_THAT(error_of([&] { comm.all_reduce(t, op); }),
                   Catch::Matchers::Contains("avg of a Long tensor, expected a floating-point tensor"));
        continue;
      }
      const void* storage = t.data_ptr();
      comm.all_reduce(t, op);
      CHECK(t.data_ptr() == storage);
      CHECK(t.scalar_type() == dtype);
      CHECK(torch::equal(t, expected_reduction(n, dtype, op)));
    }
  }
  // A non-contiguous view is reduced through a copy and written back into the view.
  at::Tensor base = rank_input(r, torch::kDouble);  // (3,4)
  at::Tensor view = base.t();                       // (4,3), non-contiguous
  comm.all_reduce(view, ReduceOp::sum);
  CHECK(torch::equal(base, expected_reduction(n, torch::kDouble, ReduceOp::sum)));

  // broadcast from the last rank, float64 and int64.
  for (auto dtype : {torch::kDouble, torch::kLong}) {
    at::Tensor t = rank_input(r, dtype);
    comm.broadcast(t, n - 1);
    CHECK(torch::equal(t, rank_input(n - 1, dtype)));
  }
  at::Tensor t = rank_input(r, torch::kFloat);
  CHECK_THAT(error_of([&] { comm.broadcast(t, n); }),
             Catch::Matchers::Contains("`root` is " + std::to_string(n) + ", expected a rank in [0, " +
                                       std::to_string(n) + ")"));

  // all_gather: fresh outputs, then preallocated ones written in place.
  std::vector<at::Tensor> out;
  comm.all_gather(out, rank_input(r, torch::kFloat));
  REQUIRE(out.size() == static_cast<std::size_t>(n));
  for (int k = 0; k < n; ++k) CHECK(torch::equal(out[static_cast<std::size_t>(k)], rank_input(k, torch::kFloat)));
  std::vector<at::Tensor> again;
  for (int k = 0; k < n; ++k) again.push_back(torch::zeros({3, 4}, torch::kLong));
  const void* slot = again[1].data_ptr();
  comm.all_gather(again, rank_input(r, torch::kLong));
  CHECK(again[1].data_ptr() == slot);
  for (int k = 0; k < n; ++k) CHECK(torch::equal(again[static_cast<std::size_t>(k)], rank_input(k, torch::kLong)));

  // all_reduce_async: two collectives in flight at once, waited for in reverse order; avg divided in wait().
  comm.reset_traffic();
  at::Tensor a = rank_input(r, torch::kDouble);  // (3,4)
  at::Tensor b = rank_input(r, torch::kFloat);   // (3,4)
  auto pending_a = comm.all_reduce_async(a, ReduceOp::sum);
  auto pending_b = comm.all_reduce_async(b, ReduceOp::avg);
  CHECK(pending_a.pending());
  pending_b.wait();
  pending_a.wait();
  CHECK_FALSE(pending_a.pending());
  CHECK(pending_a.is_completed());
  CHECK(torch::equal(a, expected_reduction(n, torch::kDouble, ReduceOp::sum)));
  CHECK(torch::equal(b, expected_reduction(n, torch::kFloat, ReduceOp::avg)));
  at::Tensor strided = rank_input(r, torch::kDouble).t();
  CHECK_THAT(error_of<verl::ShapeError>([&] { (void)comm.all_reduce_async(strided, ReduceOp::sum); }),
             Catch::Matchers::Contains("all_reduce_async (rank " + std::to_string(r) +
                                       " of " + std::to_string(n) + "): the tensor is not contiguous"));

  // reduce_scatter_tensor: chunk r of the sum (and of the mean) of every rank's (n*3, 4) input.
  {
    std::vector<at::Tensor> chunks;
    for (int k = 0; k < n; ++k) chunks.push_back(rank_input(r, torch::kDouble) * (k + 1));  // chunk k: (3,4)
    const at::Tensor in = torch::cat(chunks);                                                // (n*3,4)
    at::Tensor out = torch::empty({3, 4}, torch::kDouble);
    comm.reduce_scatter_tensor(out, in, ReduceOp::sum);
    CHECK(torch::equal(out, expected_reduction(n, torch::kDouble, ReduceOp::sum) * (r + 1)));
    comm.reduce_scatter_tensor(out, in, ReduceOp::avg);
    CHECK(torch::equal(out, expected_reduction(n, torch::kDouble, ReduceOp::avg) * (r + 1)));
    at::Tensor wrong = torch::empty({5}, torch::kDouble);
    CHECK_THAT(error_of<verl::ShapeError>([&] { comm.reduce_scatter_tensor(wrong, in, ReduceOp::sum); }),
               Catch::Matchers::Contains("`in` has " + std::to_string(n * 12) + " elements and `out` 5, expected"));
  }
  // all_gather_into_tensor: rank k's (3,4) input lands in rows [3k, 3k+3) of the (n*3,4) output.
  {
    at::Tensor out = torch::empty({n * 3, 4}, torch::kLong);
    comm.all_gather_into_tensor(out, rank_input(r, torch::kLong));
    for (int k = 0; k < n; ++k) CHECK(torch::equal(out.slice(0, 3 * k, 3 * k + 3), rank_input(k, torch::kLong)));
  }
  // Traffic since the reset: 2 all_reduces of 12 doubles + 12 floats (payload 144 bytes, ring 2(n-1)/n of
  // each), 2 reduce-scatters of n*12 doubles (ring (n-1)/n of the input), 1 all-gather of n*12 int64.
  {
    const auto tr = comm.traffic();
    CHECK(tr.all_reduce.calls == 2);
    CHECK(tr.all_reduce.payload_bytes == 96 + 48);
    CHECK(tr.all_reduce.ring_bytes_sent == 2 * (n - 1) * 96 / n + 2 * (n - 1) * 48 / n);
    CHECK(tr.reduce_scatter.calls == 2);
    CHECK(tr.reduce_scatter.payload_bytes == 2 * n * 96);
    CHECK(tr.reduce_scatter.ring_bytes_sent == 2 * (n - 1) * 96);
    CHECK(tr.all_gather.calls == 1);
    CHECK(tr.all_gather.ring_bytes_sent == (n - 1) * 96);
    CHECK(tr.broadcast.calls == 0);
    CHECK(tr.total().calls == 5);
  }

  // barrier: rank 0 enters 400 ms late, so nobody may leave before that.
  const auto before = std::chrono::steady_clock::now();
  if (r == 0) std::this_thread::sleep_for(400ms);
  comm.barrier();
  CHECK(std::chrono::steady_clock::now() - before >= 350ms);

  // A sub-group of the first and last ranks, listed unsorted: sorted like torch's new_group.
  auto pair = comm.new_group({n - 1, 0});
  if (r == 0 || r == n - 1) {
    REQUIRE(pair.has_value());
    CHECK(pair->world_size() == 2);
    CHECK(pair->rank() == (r == 0 ? 0 : 1));
    CHECK(pair->global_ranks() == std::vector<int>{0, n - 1});
    at::Tensor mine = torch::full({2}, static_cast<double>(r + 1), torch::kDouble);
    pair->all_reduce(mine, ReduceOp::sum);
    CHECK(torch::equal(mine, torch::full({2}, static_cast<double>(1 + n), torch::kDouble)));  // (0+1) + (n-1+1)
  } else {
    CHECK_FALSE(pair.has_value());
  }
  // The world group still works after the sub-group was made.
  at::Tensor one = torch::ones({1}, torch::kLong);
  comm.all_reduce(one, ReduceOp::sum);
  CHECK(one.item<int64_t>() == n);
}

void check_mesh(Gloo& world) {
  REQUIRE(world.world_size() == 4);
  const int r = world.rank();
  using Cluster = verl::dist::Mesh<verl::dist::axis::dp<2>, verl::dist::axis::tp<2>>;
  auto groups = verl::dist::MeshCommunicators<Gloo>(world, Cluster::device_mesh(world.world_size()));
  // dp=2 x tp=2, row-major: tp groups {0,1} {2,3}; dp groups {0,2} {1,3}.
  auto& tp = groups["tp"];
  auto& dp = groups["dp"];
  CHECK(tp.rank() == r % 2);
  CHECK(dp.rank() == r / 2);
  CHECK(tp.global_ranks() == (r < 2 ? std::vector<int>{0, 1} : std::vector<int>{2, 3}));
  CHECK(dp.global_ranks() == (r % 2 == 0 ? std::vector<int>{0, 2} : std::vector<int>{1, 3}));
  at::Tensor v = torch::full({3}, static_cast<double>(r), torch::kDouble);
  tp.all_reduce(v, ReduceOp::sum);
  CHECK(torch::equal(v, torch::full({3}, r < 2 ? 1.0 : 5.0, torch::kDouble)));  // 0+1, 2+3
  at::Tensor w = torch::full({3}, static_cast<double>(r), torch::kDouble);
  dp.all_reduce(w, ReduceOp::max);
  CHECK(torch::equal(w, torch::full({3}, r % 2 == 0 ? 2.0 : 3.0, torch::kDouble)));  // max(0,2), max(1,3)
  std::vector<at::Tensor> gathered;
  dp.all_gather(gathered, torch::full({1}, static_cast<int64_t>(r), torch::kLong));
  REQUIRE(gathered.size() == 2);
  CHECK(gathered[0].item<int64_t>() == r % 2);
  CHECK(gathered[1].item<int64_t>() == r % 2 + 2);
  at::Tensor b = torch::full({2}, static_cast<double>(r), torch::kDouble);
  tp.broadcast(b, 1);  // tp rank 1 = global 1 or 3
  CHECK(torch::equal(b, torch::full({2}, r < 2 ? 1.0 : 3.0, torch::kDouble)));
  // A compiled mesh of another size is a start-up error.
  using Wrong = verl::dist::Mesh<verl::dist::axis::dp<2>, verl::dist::axis::tp<4>>;
  CHECK_THAT(error_of([&] { (void)Wrong::device_mesh(world.world_size()); }),
             Catch::Matchers::Contains("the mesh (dp=2, tp=4) has 8 ranks but WORLD_SIZE is 4"));
  world.barrier();
}

}  // namespace

// Run in each rank started by the tests below.
TEST_CASE("c10d worker rank", "[.c10d_worker]") {
  const char* mode_env = std::getenv("VERL_C10D_TEST_MODE");
  REQUIRE(mode_env != nullptr);
  const std::string mode = mode_env;
  const auto place = verl::dist::launch_env_from_environ();
  REQUIRE(place.launcher == verl::dist::Launcher::torchrun);
  if (mode == "no_rendezvous" && place.rank == 1) std::_Exit(4);  // never joins
  verl::dist::ProcessGroupOptions options;
  options.timeout = mode == "stall" || mode == "no_rendezvous" ? 2000ms : kTimeout;
  if (mode == "no_rendezvous") {  // rank 0, waiting as the store's host for a rank that never comes
    const auto start = std::chrono::steady_clock::now();
    const std::string message = error_of<verl::dist::CommunicationError>([&] { (void)Gloo::init(place, options); });
    const auto elapsed = std::chrono::steady_clock::now() - start;
    std::cout << "rank 0 got: " << message << std::endl;
    const bool named = message.find("ProcessGroupCommunicator<gloo>::init (rank 0 of 2): the rendezvous store at "
                                    "127.0.0.1:") != std::string::npos &&
                       message.find("(hosted by this rank) failed within the timeout of 2000 ms") != std::string::npos;
    // c10d's TCPStore rounds its wait up to whole seconds: 2 s become 3.
    const bool in_time = elapsed < options.timeout + 2000ms;
    CHECK(named);
    CHECK(in_time);
    std::_Exit(named && in_time ? 0 : 1);
  }
  auto comm = Gloo::init(place, options);
  CHECK(comm.rank() == place.rank);
  CHECK(comm.world_size() == place.world_size);
  if (mode == "collectives") {
    check_collectives(comm);
  } else if (mode == "mesh") {
    check_mesh(comm);
  } else if (mode == "die" || mode == "stall") {
    // "die": every rank runs all_reduce after all_reduce; 50 ms in, the last rank's process exits from
    // another thread, in the middle of a collective. "stall": the last rank stays alive but never calls the
    // collective. Either way the others must fail with a clear error within the timeout.
    comm.barrier();
    const int last = comm.world_size() - 1;
    if (comm.rank() == last) {
      if (mode == "stall") {
        std::this_thread::sleep_for(options.timeout + 500ms);
        std::_Exit(0);
      }
      std::thread([] {
        std::this_thread::sleep_for(50ms);
        std::_Exit(3);
      }).detach();
      at::Tensor t = torch::ones({1 << 16});  // (65536,)
      for (;;) comm.all_reduce(t, ReduceOp::sum);
    }
    at::Tensor t = torch::ones({1 << 16});  // (65536,)
    const auto start = std::chrono::steady_clock::now();
    std::string message;
    try {
      for (int i = 0; i < 1000; ++i) comm.all_reduce(t, ReduceOp::sum);
    } catch (const verl::dist::CommunicationError& e) {
      message = e.what();
    }
    const auto elapsed = std::chrono::steady_clock::now() - start;
    std::cout << "rank " << comm.rank() << " got after "
              << std::chrono::duration_cast<std::chrono::milliseconds>(elapsed).count() << " ms: " << message
              << std::endl;
    const bool named = message.find("ProcessGroupCommunicator<gloo>::all_reduce (rank " +
                                    std::to_string(comm.rank()) + " of " + std::to_string(comm.world_size()) +
                                    ")") != std::string::npos;
    const bool in_time = elapsed < options.timeout + 1500ms;
    CHECK(named);
    CHECK(in_time);
    // Leave at once: the group is broken and its peers are gone.
    std::_Exit(named && in_time ? 0 : 1);
  } else {
    FAIL("unknown VERL_C10D_TEST_MODE " << mode);
  }
}

TEST_CASE("Gloo collectives across 2 and 4 processes equal the values computed locally", "[dist][c10d]") {
  for (int n : {2, 4}) {
    const auto result = run_ranks(n, "collectives");
    INFO(result.summary());
    CHECK(result.ok());
  }
}

TEST_CASE("DeviceMesh dp=2 x tp=2 sub-groups over 4 Gloo processes", "[dist][c10d][mesh]") {
  const auto result = run_ranks(4, "mesh");
  INFO(result.summary());
  CHECK(result.ok());
}

TEST_CASE("a rank that exits makes the others fail with CommunicationError, not hang", "[dist][c10d]") {
  SECTION("exit in the middle of collectives, 4 ranks") {
    const auto result = run_ranks(4, "die", std::chrono::milliseconds(10000));
    INFO(result.summary());
    REQUIRE(result.ranks.size() == 4);
    CHECK(result.ranks[3].exit_code == 3);
    for (int r = 0; r < 3; ++r) CHECK(result.ranks[static_cast<std::size_t>(r)].ok());
    CHECK(result.first_failure == std::optional<int>(3));
  }
  SECTION("alive but not calling collectives, 2 ranks: the timeout fires") {
    const auto result = run_ranks(2, "stall", std::chrono::milliseconds(10000));
    INFO(result.summary());
    CHECK(result.ok());
  }
  SECTION("a rank that never joins: the rendezvous fails within the timeout") {
    const auto start = std::chrono::steady_clock::now();
    const auto result = run_ranks(2, "no_rendezvous", std::chrono::milliseconds(10000));
    INFO(result.summary());
    CHECK(result.ranks[1].exit_code == 4);
    CHECK(result.ranks[0].exit_code == 0);  // Gloo::init threw the expected CommunicationError in time
    CHECK_FALSE(result.ranks[0].terminated_by_launcher);
    CHECK(std::chrono::steady_clock::now() - start < 9000ms);
  }
}

TEST_CASE("a 1-rank Gloo group in one process: the identity, and argument errors named", "[dist][c10d]") {
  {
    auto comm = Gloo::from_store(c10::make_intrusive<c10d::HashStore>(), 0, 1, {.timeout = 2000ms});
    STATIC_REQUIRE(verl::Communicator<Gloo>);
    at::Tensor t = rank_input(0, torch::kFloat);
    comm.all_reduce(t, ReduceOp::avg);
    CHECK(torch::equal(t, rank_input(0, torch::kFloat)));
    at::Tensor undefined;
    CHECK_THAT(error_of<verl::ShapeError>([&] { comm.all_reduce(undefined, ReduceOp::sum); }),
               Catch::Matchers::Contains("ProcessGroupCommunicator<gloo>::all_reduce (rank 0 of 1): the tensor is "
                                         "undefined"));
    CHECK_THAT(error_of([&] { comm.all_reduce(t, static_cast<ReduceOp>(9)); }),
               Catch::Matchers::Contains("`op` is 9, expected a verl::ReduceOp"));
    CHECK_THAT(error_of([&] { (void)comm.new_group({0, 0}); }), Catch::Matchers::Contains("lists a rank twice"));
    CHECK_THAT(error_of([&] { (void)comm.new_group({1}); }),
               Catch::Matchers::Contains("`ranks` holds 1, expected ranks in [0, 1)"));
    CHECK_THAT(error_of([&] { (void)Gloo::from_store(c10::make_intrusive<c10d::HashStore>(), 2, 2); }),
               Catch::Matchers::Contains("rank 2 of world size 2, expected 0 <= rank < world_size"));
  }
}
#else
TEST_CASE("Gloo: multi-process tests", "[dist][c10d]") {
  WARN("not built: this build has no Gloo headers (<gloo/algorithm.h>; install Debian's libgloo-dev), so "
       "verl::dist::gloo is unavailable");
}
#endif

TEST_CASE("NCCL in one process", "[dist][c10d]") {
  {
#if defined(USE_C10D_NCCL) && defined(VERL_WITH_CUDA)
    using Nccl = verl::dist::ProcessGroupCommunicator<verl::dist::nccl>;
    STATIC_REQUIRE(verl::Communicator<Nccl>);
    if (c10::cuda::device_count() == 0) {
      CHECK_THAT(error_of<verl::dist::CommunicationError>(
                     [] { (void)Nccl::from_store(c10::make_intrusive<c10d::HashStore>(), 0, 1); }),
                 Catch::Matchers::Contains("ProcessGroupCommunicator<nccl> (rank 0 of 1): CUDA is not available"));
    } else {
      auto comm = Nccl::from_store(c10::make_intrusive<c10d::HashStore>(), 0, 1, {.timeout = 20000ms});
      at::Tensor t = rank_input(0, torch::kFloat).cuda();
      comm.all_reduce(t, ReduceOp::avg);
      CHECK(torch::equal(t.cpu(), rank_input(0, torch::kFloat)));
      at::Tensor cpu = rank_input(0, torch::kFloat);
      CHECK_THAT(error_of<verl::ShapeError>([&] { comm.all_reduce(cpu, ReduceOp::sum); }),
                 Catch::Matchers::Contains("expected a dense CUDA tensor"));
    }
#else
    SUCCEED("LibTorch without NCCL: verl::dist::nccl is not available in this build");
#endif
  }
}

TEST_CASE("launch environment from torchrun, mpirun and srun variables", "[dist][launch]") {
  using verl::dist::EnvMap;
  using verl::dist::parse_launch_env;
  const EnvMap torchrun{{"RANK", "5"},         {"WORLD_SIZE", "8"},        {"LOCAL_RANK", "1"},
                        {"LOCAL_WORLD_SIZE", "4"}, {"MASTER_ADDR", "node0"}, {"MASTER_PORT", "29500"}};
  const auto place = parse_launch_env(torchrun);
  CHECK(place.launcher == verl::dist::Launcher::torchrun);
  CHECK(place.rank == 5);
  CHECK(place.world_size == 8);
  CHECK(place.local_rank == 1);
  CHECK(place.local_world_size == 4);
  CHECK(place.master_addr == "node0");
  CHECK(place.master_port == 29500);

  const EnvMap mpi{{"OMPI_COMM_WORLD_RANK", "3"}, {"OMPI_COMM_WORLD_SIZE", "4"}, {"OMPI_COMM_WORLD_LOCAL_RANK", "1"},
                   {"OMPI_COMM_WORLD_LOCAL_SIZE", "2"}, {"MASTER_ADDR", "10.0.0.1"}, {"MASTER_PORT", "1234"}};
  const auto mp = parse_launch_env(mpi);
  CHECK(mp.launcher == verl::dist::Launcher::openmpi);
  CHECK((mp.rank == 3 && mp.world_size == 4 && mp.local_rank == 1 && mp.local_world_size == 2));

  // Slurm: "2(x3),1" = nodes 0..2 run 2 tasks each, node 3 runs 1; task 6 is on node 3.
  EnvMap slurm{{"SLURM_PROCID", "6"},          {"SLURM_NTASKS", "7"}, {"SLURM_LOCALID", "0"}, {"SLURM_NODEID", "3"},
               {"SLURM_TASKS_PER_NODE", "2(x3),1"}, {"MASTER_ADDR", "n0"}, {"MASTER_PORT", "29400"}};
  const auto sl = parse_launch_env(slurm);
  CHECK(sl.launcher == verl::dist::Launcher::slurm);
  CHECK((sl.rank == 6 && sl.world_size == 7 && sl.local_rank == 0 && sl.local_world_size == 1));
  slurm["SLURM_NODEID"] = "1";
  slurm["SLURM_LOCALID"] = "1";
  CHECK(parse_launch_env(slurm).local_world_size == 2);
  slurm["SLURM_NODEID"] = "4";
  CHECK_THAT(error_of([&] { (void)parse_launch_env(slurm); }),
             Catch::Matchers::Contains("SLURM_TASKS_PER_NODE is \"2(x3),1\", which lists 4 node(s), expected an "
                                       "entry for SLURM_NODEID 4"));
  slurm["SLURM_NODEID"] = "1";
  slurm.erase("MASTER_ADDR");
  CHECK_THAT(error_of([&] { (void)parse_launch_env(slurm); }),
             Catch::Matchers::Contains("MASTER_ADDR is not set, expected the host name or address of rank 0"));

  // torchrun's variables win over Slurm's (torchrun started by srun).
  EnvMap both = torchrun;
  both.insert(slurm.begin(), slurm.end());
  CHECK(parse_launch_env(both).launcher == verl::dist::Launcher::torchrun);

  // Nothing set: not launched (detect) or an error listing what was looked for (parse).
  CHECK_FALSE(verl::dist::detect_launch_env(EnvMap{{"PATH", "/bin"}}).has_value());
  CHECK_THAT(error_of([] { (void)parse_launch_env(EnvMap{}); }),
             Catch::Matchers::Contains("no launcher variables in the environment, expected RANK and WORLD_SIZE"));

  const auto error_with = [&](const std::string& name, const std::string& value) {
    EnvMap env = torchrun;
    if (value == "<unset>") {
      env.erase(name);
    } else {
      env[name] = value;
    }
    return error_of([&] { (void)parse_launch_env(env); });
  };
  CHECK_THAT(error_with("WORLD_SIZE", "<unset>"), Catch::Matchers::Contains("WORLD_SIZE is not set"));
  CHECK_THAT(error_with("LOCAL_RANK", "<unset>"),
             Catch::Matchers::Contains("LOCAL_RANK is not set, expected this process's rank on its node"));
  CHECK_THAT(error_with("RANK", "8"),
             Catch::Matchers::Contains("RANK is 8, expected this process's global rank (below WORLD_SIZE) in [0, 7]"));
  CHECK_THAT(error_with("RANK", "2x"), Catch::Matchers::Contains("RANK is \"2x\", expected a decimal integer"));
  CHECK_THAT(error_with("RANK", ""), Catch::Matchers::Contains("RANK is \"\", expected a decimal integer"));
  CHECK_THAT(error_with("RANK", " 2"), Catch::Matchers::Contains("RANK is \" 2\", expected a decimal integer"));
  CHECK_THAT(error_with("WORLD_SIZE", "0"), Catch::Matchers::Contains("WORLD_SIZE is 0, expected the number of ranks in [1,"));
  CHECK_THAT(error_with("LOCAL_WORLD_SIZE", "9"), Catch::Matchers::Contains("LOCAL_WORLD_SIZE is 9"));
  CHECK_THAT(error_with("LOCAL_RANK", "4"), Catch::Matchers::Contains("LOCAL_RANK is 4"));
  CHECK_THAT(error_with("MASTER_PORT", "70000"),
             Catch::Matchers::Contains("MASTER_PORT is 70000, expected the TCP port of the rendezvous store in [1, 65535]"));
  CHECK_THAT(error_with("MASTER_PORT", "<unset>"), Catch::Matchers::Contains("MASTER_PORT is not set"));
  CHECK_THAT(error_with("MASTER_ADDR", ""), Catch::Matchers::Contains("MASTER_ADDR is empty"));
}

TEST_CASE("DeviceMesh: row-major coordinates and sub-groups as init_device_mesh", "[dist][mesh]") {
  // torch: mesh = arange(6).view(2, 3) = [[0,1,2],[3,4,5]]; dim 0 groups [0,3] [1,4] [2,5]; dim 1 [0,1,2] [3,4,5].
  verl::dist::DeviceMesh mesh({{"dp", 2}, {"tp", 3}});
  CHECK(mesh.size() == 6);
  CHECK(mesh.describe() == "(dp=2, tp=3)");
  CHECK(mesh.coordinates(5) == std::vector<int>{1, 2});
  CHECK(mesh.coordinates(3) == std::vector<int>{1, 0});
  CHECK(mesh.rank_at({0, 2}) == 2);
  for (int r = 0; r < 6; ++r) CHECK(mesh.rank_at(mesh.coordinates(r)) == r);
  CHECK(mesh.groups("dp") == std::vector<std::vector<int>>{{0, 3}, {1, 4}, {2, 5}});
  CHECK(mesh.groups("tp") == std::vector<std::vector<int>>{{0, 1, 2}, {3, 4, 5}});
  CHECK(mesh.group_ranks("tp", 4) == std::vector<int>{3, 4, 5});
  CHECK(mesh.coordinate(4, "tp") == 1);

  // 3 axes, pp outermost: rank = pp*4 + fsdp*2 + tp.
  using M = verl::dist::Mesh<verl::dist::axis::pp<2>, verl::dist::axis::fsdp<2>, verl::dist::axis::tp<2>>;
  STATIC_REQUIRE(M::size == 8);
  const auto m3 = M::device_mesh(8);
  CHECK(m3.coordinates(6) == std::vector<int>{1, 1, 0});
  CHECK(m3.group_ranks("fsdp", 5) == std::vector<int>{5, 7});
  CHECK(m3.group_ranks("pp", 3) == std::vector<int>{3, 7});

  CHECK_THAT(error_of([] { (void)M::device_mesh(4); }),
             Catch::Matchers::Contains("the mesh (pp=2, fsdp=2, tp=2) has 8 ranks but WORLD_SIZE is 4, expected equal"));
  CHECK_THAT(error_of([&] { (void)mesh.axis_index("pp"); }),
             Catch::Matchers::Contains("no axis named pp in the mesh (dp=2, tp=3)"));
  CHECK_THAT(error_of([&] { (void)mesh.coordinates(6); }), Catch::Matchers::Contains("rank 6 is outside the mesh"));
  CHECK_THAT(error_of([&] { (void)mesh.rank_at({2, 0}); }), Catch::Matchers::Contains("dp coordinate 2"));
  CHECK_THAT(error_of([] { verl::dist::DeviceMesh({{"dp", 2}, {"dp", 2}}); }),
             Catch::Matchers::Contains("axis name dp appears twice"));
  CHECK_THAT(error_of([] { verl::dist::DeviceMesh({{"tp", 0}}); }),
             Catch::Matchers::Contains("axis tp has size 0, expected at least 1"));
}

TEST_CASE("launch_local: torchrun's variables, exit statuses, termination of the others", "[dist][launch]") {
  verl::test::TempDir tmp("launch");
  SECTION("every rank gets its place") {
    verl::dist::LocalLaunchOptions options;
    options.nprocs = 3;
    options.env = {{"VERL_OUT", tmp.path.string()}};
    const auto result = verl::dist::launch_local(
        "sh", {"-c", "echo \"$RANK $WORLD_SIZE $LOCAL_RANK $LOCAL_WORLD_SIZE $MASTER_ADDR $MASTER_PORT\" > "
                     "\"$VERL_OUT/rank$RANK\""},
        options);
    INFO(result.summary());
    REQUIRE(result.ok());
    for (int r = 0; r < 3; ++r) {
      std::ifstream in(tmp.path / ("rank" + std::to_string(r)));
      std::string line;
      std::getline(in, line);
      CHECK(line == std::to_string(r) + " 3 " + std::to_string(r) + " 3 127.0.0.1 " +
                        std::to_string(result.master_port));
    }
  }
  SECTION("a failing rank: the others are terminated after the grace period") {
    verl::dist::LocalLaunchOptions options;
    options.nprocs = 3;
    options.grace_period = 300ms;
    const auto start = std::chrono::steady_clock::now();
    const auto result =
        verl::dist::launch_local("sh", {"-c", "if [ \"$RANK\" = 1 ]; then exit 7; fi; exec sleep 30"}, options);
    const auto elapsed = std::chrono::steady_clock::now() - start;
    INFO(result.summary());
    CHECK_FALSE(result.ok());
    CHECK(result.first_failure == std::optional<int>(1));
    CHECK(result.ranks[1].exit_code == 7);
    CHECK_FALSE(result.ranks[1].terminated_by_launcher);
    for (int r : {0, 2}) {
      CHECK(result.ranks[static_cast<std::size_t>(r)].signal == SIGTERM);
      CHECK(result.ranks[static_cast<std::size_t>(r)].terminated_by_launcher);
    }
    CHECK(elapsed >= 300ms);
    CHECK(elapsed < 5000ms);
    CHECK_THAT(result.summary(), Catch::Matchers::Contains("rank 1 (pid") && Catch::Matchers::Contains("exit code 7"));
  }
  SECTION("SIGKILL after kill_after when SIGTERM is ignored; a missing program is an error") {
    verl::dist::LocalLaunchOptions options;
    options.nprocs = 2;
    options.grace_period = 100ms;
    options.kill_after = 300ms;
    const auto result = verl::dist::launch_local(
        "sh", {"-c", "if [ \"$RANK\" = 0 ]; then exit 1; fi; trap '' TERM; while :; do sleep 0.05; done"}, options);
    INFO(result.summary());
    CHECK(result.ranks[1].signal == SIGKILL);
    CHECK_THAT(error_of<verl::Error>([] {
                 (void)verl::dist::launch_local("/nonexistent/verl_program", {}, verl::dist::LocalLaunchOptions{});
               }),
               Catch::Matchers::Contains("cannot start `/nonexistent/verl_program` as rank 0"));
  }
}

}  // namespace test_c10d
