// 08_launch_local: start N local processes as torchrun does, and a first data-parallel collective over Gloo.
//
// What it shows:
//   1. verl::dist::launch_local starts copies of a program with RANK, WORLD_SIZE, LOCAL_RANK,
//      LOCAL_WORLD_SIZE, MASTER_ADDR and a free MASTER_PORT, waits, and reports each rank's exit status;
//      when one rank fails, the others are terminated after a grace period;
//   2. in each copy, verl::dist::launch_env_from_environ() reads that place and
//      ProcessGroupCommunicator<gloo>::init joins the group (rank 0 hosts the TCPStore rendezvous);
//   3. a dp=2 DeviceMesh checked against WORLD_SIZE, and an all_reduce averaging a per-rank "gradient", the
//      step data-parallel training repeats for every parameter.
//
// Usage: verl_example_08_launch_local                 demo: 2 copies of this program, all_reduce, report
//        verl_example_08_launch_local --nproc N [--grace-ms MS] -- PROGRAM [ARGS...]
//                                                     a local torchrun: N copies of any program
//        (the launcher exits with 0 when every rank succeeded, else with the first failed rank's code,
//        or 128 + its signal)
// Expected output of the demo (pids and the port vary):
//   rank 0: mesh (dp=2), gradients averaged over 2 ranks: 1.5 2.5 3.5 (expected 1.5 2.5 3.5)
//   rank 0 (pid ...): exit code 0
//   rank 1 (pid ...): exit code 0
//   launch_local: ok
#include <verl/dist/device_mesh.hpp>
#include <verl/dist/gloo.hpp>
#include <verl/dist/launch_env.hpp>
#include <verl/dist/launch_local.hpp>

#include <ATen/ops/arange.h>
#include <ATen/ops/allclose.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

namespace {

// One rank of the demo: join the group, average a rank-dependent "gradient", check it against the mean
// computed by hand: rank r holds (1, 2, 3) + r, so over 2 ranks the mean is (1.5, 2.5, 3.5).
int worker() {
#if VERL_DIST_HAS_GLOO
  const auto place = verl::dist::launch_env_from_environ();
  auto world = verl::dist::ProcessGroupCommunicator<verl::dist::gloo>::init(place, {.timeout = std::chrono::seconds(30)});
  const auto mesh = verl::dist::Mesh<verl::dist::axis::dp<2>>::device_mesh(world.world_size());
  at::Tensor grad = at::arange(1, 4, at::kFloat) + static_cast<float>(world.rank());  // (3,)
  world.all_reduce(grad, verl::ReduceOp::avg);                                           // (3,)
  const at::Tensor expected = at::arange(1, 4, at::kFloat) + 0.5F;                       // (3,)
  const bool ok = at::allclose(grad, expected);
  if (world.rank() == 0) {
    std::printf("rank 0: mesh %s, gradients averaged over %d ranks: %.1f %.1f %.1f (expected 1.5 2.5 3.5)\n",
                mesh.describe().c_str(), world.world_size(), grad[0].item<float>(), grad[1].item<float>(),
                grad[2].item<float>());
    std::fflush(stdout);
  }
  world.barrier();  // rank 0 hosts the store: nobody leaves before everyone is done with it
  return ok ? 0 : 1;
#else
  std::fprintf(stderr, "08_launch_local: this build has no Gloo headers (install Debian's libgloo-dev)\n");
  return 1;
#endif
}

int exit_code_of(const verl::dist::LocalLaunchResult& result) {
  if (result.ok()) return 0;
  const auto& failed = result.ranks[static_cast<std::size_t>(result.first_failure.value_or(0))];
  if (failed.signal != 0) return 128 + failed.signal;
  return failed.exit_code > 0 ? failed.exit_code : 1;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    std::vector<std::string> args(argv + 1, argv + argc);
    if (args.size() == 1 && args[0] == "--worker") return worker();

    verl::dist::LocalLaunchOptions options;
    std::string program;
    std::vector<std::string> program_args;
    if (args.empty()) {  // the demo: two copies of this program as workers
      options.nprocs = 2;
      program = std::filesystem::read_symlink("/proc/self/exe").string();
      program_args = {"--worker"};
      options.timeout = std::chrono::seconds(60);
    } else {
      std::size_t i = 0;
      for (; i < args.size() && args[i] != "--"; ++i) {
        if (args[i] == "--nproc" && i + 1 < args.size()) {
          options.nprocs = std::stoi(args[++i]);
        } else if (args[i] == "--grace-ms" && i + 1 < args.size()) {
          options.grace_period = std::chrono::milliseconds(std::stoll(args[++i]));
        } else {
          std::cerr << "08_launch_local: unknown argument `" << args[i]
                    << "`, expected --nproc N, --grace-ms MS, then -- PROGRAM [ARGS...]\n";
          return 2;
        }
      }
      if (i + 1 >= args.size()) {
        std::cerr << "08_launch_local: no program, expected `-- PROGRAM [ARGS...]` after the options\n";
        return 2;
      }
      program = args[i + 1];
      program_args.assign(args.begin() + static_cast<std::ptrdiff_t>(i) + 2, args.end());
    }

    const auto result = verl::dist::launch_local(program, program_args, options);
    std::cout << result.summary();
    std::cout << "launch_local: " << (result.ok() ? "ok" : "failed") << "\n";
    return exit_code_of(result);
  } catch (const std::exception& e) {
    std::cerr << "08_launch_local: " << e.what() << "\n";
    return 1;
  }
}
