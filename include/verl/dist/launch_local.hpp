#pragma once
//! \file
//! verl::dist::launch_local: starts N copies of a program on this machine as torchrun --standalone does,
//! each with RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR and MASTER_PORT set (a free port
//! unless one is given), waits for them and reports each rank's exit status. When a rank fails (non-zero
//! exit or a signal) the others get `grace_period` to finish on their own (they usually fail fast with a
//! CommunicationError), then SIGTERM, then SIGKILL after `kill_after`; nothing is left running.
//!
//! ```cpp
//! auto result = verl::dist::launch_local("./train", {"--config", "ppo.yaml"}, {.nprocs = 4});
//! if (!result.ok()) std::cerr << result.summary();
//! ```

#include "verl/core/errors.hpp"

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

namespace verl::dist {

//! Options of launch_local.
struct LocalLaunchOptions {
  int nprocs = 1;                                          //!< ranks to start (WORLD_SIZE = LOCAL_WORLD_SIZE)
  std::string master_addr = "127.0.0.1";                  //!< MASTER_ADDR given to every rank
  std::optional<std::uint16_t> master_port;               //!< MASTER_PORT; unset: a free port of this machine
  std::chrono::milliseconds grace_period{5000};           //!< after a failure, before SIGTERM to the others
  std::chrono::milliseconds kill_after{5000};             //!< after SIGTERM, before SIGKILL
  std::optional<std::chrono::milliseconds> timeout;       //!< whole run; then every rank is terminated
  std::vector<std::pair<std::string, std::string>> env;   //!< extra variables for every rank (override)
};

//! How one rank ended.
struct RankExit {
  int rank = 0;
  pid_t pid = 0;
  int exit_code = -1;               //!< when it exited, else -1
  int signal = 0;                   //!< the signal that ended it, else 0
  bool terminated_by_launcher = false;  //!< the launcher signalled it (another rank failed, or the timeout)

  [[nodiscard]] bool ok() const noexcept { return signal == 0 && exit_code == 0; }
  //! "rank 1 (pid 1234): exit code 3" or "rank 0 (pid 1233): killed by signal 15 (Terminated), sent by the
  //! launcher".
  [[nodiscard]] std::string describe() const {
    std::string s = "rank " + std::to_string(rank) + " (pid " + std::to_string(pid) + "): ";
    if (signal != 0) {
      s += "killed by signal " + std::to_string(signal) + " (" + ::strsignal(signal) + ")";
    } else {
      s += "exit code " + std::to_string(exit_code);
    }
    if (terminated_by_launcher) s += ", sent by the launcher";
    return s;
  }
};

//! The outcome of launch_local: one RankExit per rank, in rank order.
struct LocalLaunchResult {
  std::vector<RankExit> ranks;
  std::uint16_t master_port = 0;
  bool timed_out = false;
  //! The rank that failed first (by the time its exit was seen), if any.
  std::optional<int> first_failure;

  [[nodiscard]] bool ok() const noexcept {
    for (const auto& r : ranks) {
      if (!r.ok()) return false;
    }
    return !timed_out;
  }
  //! One line per rank, plus which rank failed first.
  [[nodiscard]] std::string summary() const {
    std::string s;
    for (const auto& r : ranks) s += r.describe() + "\n";
    if (first_failure) s += "first failure: rank " + std::to_string(*first_failure) + "\n";
    if (timed_out) s += "the run exceeded its timeout\n";
    return s;
  }
};

//! A TCP port that is free on this machine now (bound to port 0, read back, released). Another process may
//! take it before it is used; torchrun --standalone picks its port the same way.
[[nodiscard]] inline std::uint16_t free_tcp_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  verl::detail::check<Error>(fd >= 0, "verl::dist::free_tcp_port: socket() failed: ", std::strerror(errno));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_ANY);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
                  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0;
  const int err = errno;
  ::close(fd);
  verl::detail::check<Error>(ok, "verl::dist::free_tcp_port: binding port 0 failed: ", std::strerror(err));
  return ntohs(addr.sin_port);
}

}  // namespace verl::dist

namespace verl::detail {
//! The launcher's environment for one rank: this process's, without the variables it sets, plus them.
inline std::vector<std::string> rank_environment(const dist::LocalLaunchOptions& o, int rank, std::uint16_t port) {
  std::vector<std::pair<std::string, std::string>> set{
      {"RANK", std::to_string(rank)},           {"WORLD_SIZE", std::to_string(o.nprocs)},
      {"LOCAL_RANK", std::to_string(rank)},     {"LOCAL_WORLD_SIZE", std::to_string(o.nprocs)},
      {"MASTER_ADDR", o.master_addr},           {"MASTER_PORT", std::to_string(port)}};
  for (const auto& kv : o.env) set.push_back(kv);
  std::vector<std::string> out;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    const std::string_view kv(*e);
    const std::string_view name = kv.substr(0, kv.find('='));
    bool overridden = false;
    for (const auto& s : set) overridden = overridden || s.first == name;
    if (!overridden) out.emplace_back(kv);
  }
  for (const auto& [k, v] : set) out.push_back(k + "=" + v);
  return out;
}
}  // namespace verl::detail

namespace verl::dist {

//! Starts `options.nprocs` copies of `program` (searched in PATH when it has no '/') with `args`, waits for
//! all of them and returns how each ended. Throws verl::ConfigError for nprocs < 1 and verl::Error when a
//! copy cannot be started (the ones already started are killed first).
[[nodiscard]] inline LocalLaunchResult launch_local(const std::string& program, const std::vector<std::string>& args,
                                                   const LocalLaunchOptions& options) {
  using clock = std::chrono::steady_clock;
  verl::detail::check<ConfigError>(options.nprocs >= 1, "verl::dist::launch_local: nprocs is ", options.nprocs,
                             ", expected at least 1");
  LocalLaunchResult result;
  result.master_port = options.master_port.value_or(0) != 0 ? *options.master_port : free_tcp_port();
  result.ranks.resize(static_cast<std::size_t>(options.nprocs));
  std::vector<bool> running(static_cast<std::size_t>(options.nprocs), false);

  const auto kill_running = [&](int sig, bool by_launcher) {
    for (std::size_t r = 0; r < running.size(); ++r) {
      if (running[r]) {
        ::kill(result.ranks[r].pid, sig);
        result.ranks[r].terminated_by_launcher = result.ranks[r].terminated_by_launcher || by_launcher;
      }
    }
  };

  for (int rank = 0; rank < options.nprocs; ++rank) {
    std::vector<std::string> argv_strings{program};
    argv_strings.insert(argv_strings.end(), args.begin(), args.end());
    std::vector<std::string> env_strings = verl::detail::rank_environment(options, rank, result.master_port);
    std::vector<char*> argv;
    for (auto& a : argv_strings) argv.push_back(a.data());
    argv.push_back(nullptr);
    std::vector<char*> envp;
    for (auto& e : env_strings) envp.push_back(e.data());
    envp.push_back(nullptr);
    pid_t pid = 0;
    const int rc = ::posix_spawnp(&pid, program.c_str(), nullptr, nullptr, argv.data(), envp.data());
    if (rc != 0) {
      kill_running(SIGKILL, true);
      for (std::size_t r = 0; r < running.size(); ++r) {
        if (running[r]) ::waitpid(result.ranks[r].pid, nullptr, 0);
      }
      throw Error(verl::detail::concat_message("verl::dist::launch_local: cannot start `", program, "` as rank ", rank,
                                         ": ", std::strerror(rc)));
    }
    result.ranks[static_cast<std::size_t>(rank)].rank = rank;
    result.ranks[static_cast<std::size_t>(rank)].pid = pid;
    running[static_cast<std::size_t>(rank)] = true;
  }

  const auto start = clock::now();
  std::optional<clock::time_point> failed_at;  // first failure, or the timeout
  bool term_sent = false;
  bool kill_sent = false;
  clock::time_point term_at{};
  int left = options.nprocs;
  while (left > 0) {
    bool reaped = false;
    for (std::size_t r = 0; r < running.size(); ++r) {
      if (!running[r]) continue;
      int status = 0;
      const pid_t got = ::waitpid(result.ranks[r].pid, &status, WNOHANG);
      if (got != result.ranks[r].pid) continue;
      running[r] = false;
      --left;
      reaped = true;
      auto& ex = result.ranks[r];
      if (WIFEXITED(status)) ex.exit_code = WEXITSTATUS(status);
      if (WIFSIGNALED(status)) ex.signal = WTERMSIG(status);
      if (!ex.ok() && !ex.terminated_by_launcher && !result.first_failure) {
        result.first_failure = static_cast<int>(r);
        if (!failed_at) failed_at = clock::now();
      }
    }
    if (left == 0) break;
    const auto now = clock::now();
    if (!failed_at && options.timeout && now - start >= *options.timeout) {
      result.timed_out = true;
      failed_at = now - options.grace_period;  // no grace: the run is already over time
    }
    if (failed_at && !term_sent && now - *failed_at >= options.grace_period) {
      kill_running(SIGTERM, true);
      term_sent = true;
      term_at = now;
    }
    if (term_sent && !kill_sent && now - term_at >= options.kill_after) {
      kill_running(SIGKILL, true);
      kill_sent = true;
    }
    if (!reaped) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return result;
}

}  // namespace verl::dist
