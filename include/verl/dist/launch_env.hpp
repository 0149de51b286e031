#pragma once
//! \file
//! verl::dist::LaunchEnv: this process's place in a multi-process job, read from the environment its launcher
//! set. Three launchers are understood, in this order of precedence (torchrun run under srun sets both):
//!   - torchrun (and verl::dist::launch_local): RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR,
//!     MASTER_PORT, exactly what torch.distributed's env:// rendezvous reads;
//!   - mpirun (Open MPI): OMPI_COMM_WORLD_RANK, OMPI_COMM_WORLD_SIZE, OMPI_COMM_WORLD_LOCAL_RANK,
//!     OMPI_COMM_WORLD_LOCAL_SIZE, with MASTER_ADDR and MASTER_PORT from the environment (mpirun -x ...);
//!   - srun (Slurm): SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID, the local size from SLURM_TASKS_PER_NODE and
//!     SLURM_NODEID, with MASTER_ADDR and MASTER_PORT from the environment.
//! A missing or malformed variable is a verl::ConfigError naming it and what was expected; nothing is guessed
//! (a wrong local rank would put two ranks on one GPU). Parsing is pure: `parse_launch_env(env)` takes the
//! environment as a map, `launch_env_from_environ()` reads the process's own.
//!
//! ```cpp
//! if (auto place = verl::dist::detect_launch_env(verl::dist::environ_map())) {
//!   auto comm = verl::dist::ProcessGroupCommunicator<verl::dist::gloo>::init(*place);   // process_group.hpp
//! } else { /* not launched: single process */ }
//! ```

#include "verl/core/errors.hpp"

#include <charconv>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>

#include <unistd.h>  // environ

namespace verl::dist {

//! The launcher whose variables were read.
enum class Launcher { torchrun, openmpi, slurm };

//! "torchrun", "mpirun (Open MPI)" or "srun (Slurm)".
[[nodiscard]] constexpr std::string_view to_string(Launcher l) {
  switch (l) {
    case Launcher::torchrun: return "torchrun";
    case Launcher::openmpi: return "mpirun (Open MPI)";
    case Launcher::slurm: return "srun (Slurm)";
  }
  return "<invalid Launcher>";
}

//! A process's place: global rank and world size, rank and size on its node, and the rendezvous address
//! (rank 0 hosts the c10d::TCPStore at master_addr:master_port).
//! Invariants (checked by the parser): 1 <= world_size; 0 <= rank < world_size;
//! 1 <= local_world_size <= world_size; 0 <= local_rank < local_world_size; master_addr non-empty;
//! 1 <= master_port <= 65535.
struct LaunchEnv {
  Launcher launcher = Launcher::torchrun;
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;
  int local_world_size = 1;
  std::string master_addr;
  std::uint16_t master_port = 0;
};

using EnvMap = std::map<std::string, std::string, std::less<>>;

//! The process's environment as a map (the first definition wins when a name repeats, as getenv's does).
[[nodiscard]] inline EnvMap environ_map() {
  EnvMap out;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    std::string_view kv(*e);
    const auto eq = kv.find('=');
    if (eq == std::string_view::npos) continue;
    out.emplace(std::string(kv.substr(0, eq)), std::string(kv.substr(eq + 1)));
  }
  return out;
}

}  // namespace verl::dist

namespace verl::detail {

inline constexpr std::string_view launch_env_entity = "verl::dist::parse_launch_env";

//! The variable's value, or a ConfigError naming it and the launcher that should have set it.
inline const std::string& require_var(const dist::EnvMap& env, std::string_view name, dist::Launcher launcher,
                                      std::string_view meaning) {
  const auto it = env.find(name);
  verl::detail::check<ConfigError>(it != env.end(), launch_env_entity, ": environment variable ", name,
                                   " is not set, expected ", meaning, " (", dist::to_string(launcher),
                                   " sets it; set it when launching by hand)");
  return it->second;
}

//! A decimal integer in [lo, hi], the whole string (no sign for non-negatives, no spaces, no suffix).
inline long long parse_env_int(std::string_view name, std::string_view value, long long lo, long long hi,
                               std::string_view meaning) {
  long long v = 0;
  const char* first = value.data();
  const char* last = value.data() + value.size();
  const auto [ptr, ec] = std::from_chars(first, last, v);
  verl::detail::check<ConfigError>(!value.empty() && ec == std::errc{} && ptr == last, launch_env_entity,
                                   ": environment variable ", name, " is \"", value,
                                   "\", expected a decimal integer: ", meaning);
  verl::detail::check<ConfigError>(v >= lo && v <= hi, launch_env_entity, ": environment variable ", name,
                                   " is ", v, ", expected ", meaning, " in [", lo, ", ", hi, "]");
  return v;
}

inline int require_int(const dist::EnvMap& env, std::string_view name, dist::Launcher launcher, long long lo, long long hi,
                       std::string_view meaning) {
  return static_cast<int>(parse_env_int(name, require_var(env, name, launcher, meaning), lo, hi, meaning));
}

//! SLURM_TASKS_PER_NODE ("2(x3),1": two tasks on each of three nodes, then one) expanded, entry for `node`.
inline int slurm_tasks_on_node(std::string_view spec, int node) {
  int index = 0;
  std::size_t pos = 0;
  while (pos <= spec.size()) {
    const auto comma = spec.find(',', pos);
    const std::string_view item = spec.substr(pos, comma == std::string_view::npos ? spec.npos : comma - pos);
    std::string_view count = item;
    long long repeat = 1;
    if (const auto paren = item.find("(x"); paren != std::string_view::npos) {
      verl::detail::check<ConfigError>(item.back() == ')', launch_env_entity,
                                       ": environment variable SLURM_TASKS_PER_NODE is \"", spec,
                                       "\", expected entries like 2 or 2(x3) separated by commas");
      count = item.substr(0, paren);
      repeat = parse_env_int("SLURM_TASKS_PER_NODE", item.substr(paren + 2, item.size() - paren - 3), 1,
                             1 << 24, "a repeat count in an entry like 2(x3)");
    }
    const auto tasks = parse_env_int("SLURM_TASKS_PER_NODE", count, 1, 1 << 24, "a task count per node");
    if (node < index + repeat) return static_cast<int>(tasks);
    index += static_cast<int>(repeat);
    if (comma == std::string_view::npos) break;
    pos = comma + 1;
  }
  verl::detail::check<ConfigError>(false, launch_env_entity, ": environment variable SLURM_TASKS_PER_NODE is \"",
                                   spec, "\", which lists ", index, " node(s), expected an entry for SLURM_NODEID ",
                                   node);
  return 0;
}

}  // namespace verl::detail

namespace verl::dist {

//! The place given by `env`, or std::nullopt when no launcher variable is present (RANK, WORLD_SIZE,
//! OMPI_COMM_WORLD_RANK, OMPI_COMM_WORLD_SIZE, SLURM_PROCID, SLURM_NTASKS: the process was started on its own).
//! Throws verl::ConfigError when a launcher is recognised but one of its variables is missing or malformed,
//! or when the values are inconsistent (e.g. RANK >= WORLD_SIZE).
[[nodiscard]] inline std::optional<LaunchEnv> detect_launch_env(const EnvMap& env) {
  using verl::detail::check;
  constexpr long long max_ranks = 1 << 24;
  LaunchEnv out;
  if (env.count("RANK") != 0 || env.count("WORLD_SIZE") != 0) {
    out.launcher = Launcher::torchrun;
    out.world_size = verl::detail::require_int(env, "WORLD_SIZE", out.launcher, 1, max_ranks, "the number of ranks");
    out.rank = verl::detail::require_int(env, "RANK", out.launcher, 0, out.world_size - 1,
                                   "this process's global rank (below WORLD_SIZE)");
    out.local_world_size = verl::detail::require_int(env, "LOCAL_WORLD_SIZE", out.launcher, 1, out.world_size,
                                               "the number of ranks on this node (at most WORLD_SIZE)");
    out.local_rank = verl::detail::require_int(env, "LOCAL_RANK", out.launcher, 0, out.local_world_size - 1,
                                         "this process's rank on its node (below LOCAL_WORLD_SIZE)");
  } else if (env.count("OMPI_COMM_WORLD_RANK") != 0 || env.count("OMPI_COMM_WORLD_SIZE") != 0) {
    out.launcher = Launcher::openmpi;
    out.world_size =
        verl::detail::require_int(env, "OMPI_COMM_WORLD_SIZE", out.launcher, 1, max_ranks, "the number of ranks");
    out.rank = verl::detail::require_int(env, "OMPI_COMM_WORLD_RANK", out.launcher, 0, out.world_size - 1,
                                   "this process's global rank (below OMPI_COMM_WORLD_SIZE)");
    out.local_world_size =
        verl::detail::require_int(env, "OMPI_COMM_WORLD_LOCAL_SIZE", out.launcher, 1, out.world_size,
                            "the number of ranks on this node (at most OMPI_COMM_WORLD_SIZE)");
    out.local_rank = verl::detail::require_int(env, "OMPI_COMM_WORLD_LOCAL_RANK", out.launcher, 0,
                                         out.local_world_size - 1,
                                         "this process's rank on its node (below OMPI_COMM_WORLD_LOCAL_SIZE)");
  } else if (env.count("SLURM_PROCID") != 0 || env.count("SLURM_NTASKS") != 0) {
    out.launcher = Launcher::slurm;
    out.world_size = verl::detail::require_int(env, "SLURM_NTASKS", out.launcher, 1, max_ranks, "the number of tasks");
    out.rank = verl::detail::require_int(env, "SLURM_PROCID", out.launcher, 0, out.world_size - 1,
                                   "this task's global rank (below SLURM_NTASKS)");
    const int node = verl::detail::require_int(env, "SLURM_NODEID", out.launcher, 0, max_ranks,
                                         "this task's node index in the allocation");
    const auto& per_node = verl::detail::require_var(env, "SLURM_TASKS_PER_NODE", out.launcher,
                                               "the tasks on each node, like 2(x3),1");
    out.local_world_size = verl::detail::slurm_tasks_on_node(per_node, node);
    check<ConfigError>(out.local_world_size <= out.world_size, verl::detail::launch_env_entity,
                       ": SLURM_TASKS_PER_NODE gives ", out.local_world_size, " task(s) on node ", node,
                       ", expected at most SLURM_NTASKS = ", out.world_size);
    out.local_rank = verl::detail::require_int(env, "SLURM_LOCALID", out.launcher, 0, out.local_world_size - 1,
                                         "this task's rank on its node (below its SLURM_TASKS_PER_NODE entry)");
  } else {
    return std::nullopt;
  }
  out.master_addr = verl::detail::require_var(env, "MASTER_ADDR", out.launcher,
                                        "the host name or address of rank 0, which hosts the rendezvous store");
  check<ConfigError>(!out.master_addr.empty(), verl::detail::launch_env_entity,
                     ": environment variable MASTER_ADDR is empty, expected the host name or address of rank 0");
  out.master_port = static_cast<std::uint16_t>(
      verl::detail::require_int(env, "MASTER_PORT", out.launcher, 1, 65535, "the TCP port of the rendezvous store"));
  return out;
}

//! The place given by `env`; throws verl::ConfigError when no launcher's variables are present (naming what
//! was looked for) or when they are missing or malformed (see detect_launch_env).
[[nodiscard]] inline LaunchEnv parse_launch_env(const EnvMap& env) {
  auto place = detect_launch_env(env);
  verl::detail::check<ConfigError>(
      place.has_value(), verl::detail::launch_env_entity,
      ": no launcher variables in the environment, expected RANK and WORLD_SIZE (torchrun), "
      "OMPI_COMM_WORLD_RANK and OMPI_COMM_WORLD_SIZE (mpirun) or SLURM_PROCID and SLURM_NTASKS (srun)");
  return *std::move(place);
}

//! parse_launch_env over this process's environment.
[[nodiscard]] inline LaunchEnv launch_env_from_environ() { return parse_launch_env(environ_map()); }

}  // namespace verl::dist
