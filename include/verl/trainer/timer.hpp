#pragma once
//! \file
//! Wall-clock timing of a step's sections, verl's `marked_timer(name, timing_raw)`
//! (verl 0.7.1 verl/utils/profiler/performance.py): a section timed twice in one step accumulates, and the
//! step's timings become the metrics `timing_s/<name>` (compute_timing_metrics adds the per-token ones).
//!
//! \code
//!   verl::trainer::Timings timing;
//!   {
//!     auto step = timing.scope("step");
//!     { auto t = timing.scope("gen"); rollout = actor.generate(prompts, sampling); }
//!     timing.time("reward", [&] { score(rollout); });
//!   }
//!   metrics.record(compute_timing_metrics(timing.raw(), counts));  // timing_s/gen, timing_per_token_ms/gen...
//!   timing.clear();
//! \endcode

#include "verl/core/errors.hpp"

#include <chrono>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

namespace verl::trainer {

class Timings;

//! Times from construction to stop() or destruction and adds the seconds to its Timings under its name.
class ScopedTimer {
 public:
  using Clock = std::chrono::steady_clock;

  //! \throws verl::ConfigError when `name` is empty.
  ScopedTimer(Timings& timings, std::string name) : timings_(&timings), name_(std::move(name)) {
    verl::detail::check<ConfigError>(!name_.empty(), "verl::trainer::ScopedTimer: empty section name");
    start_ = Clock::now();
  }
  ScopedTimer(ScopedTimer&& other) noexcept
      : timings_(std::exchange(other.timings_, nullptr)), name_(std::move(other.name_)), start_(other.start_) {}
  ScopedTimer(const ScopedTimer&) = delete;
  ScopedTimer& operator=(const ScopedTimer&) = delete;
  ScopedTimer& operator=(ScopedTimer&&) = delete;
  ~ScopedTimer() { stop(); }

  //! Seconds since construction.
  [[nodiscard]] double elapsed() const { return std::chrono::duration<double>(Clock::now() - start_).count(); }

  //! Records the elapsed time now; later calls and the destructor do nothing. Returns the seconds recorded
  //! (0 when already stopped).
  double stop();

 private:
  Timings* timings_;
  std::string name_;
  Clock::time_point start_;
};

//! A step's section timings in seconds (verl's `timing_raw`). Thread-safe.
class Timings {
 public:
  //! Adds `seconds` to section `name` (a section timed twice in a step accumulates, as in verl).
  void add(std::string_view name, double seconds) {
    verl::detail::check<ConfigError>(!name.empty(), "verl::trainer::Timings::add: empty section name");
    std::lock_guard lock(mutex_);
    auto it = raw_.find(name);
    if (it == raw_.end()) it = raw_.emplace(std::string(name), 0.0).first;
    it->second += seconds;
  }

  //! A timer that adds to section `name` when it goes out of scope.
  [[nodiscard]] ScopedTimer scope(std::string name) { return ScopedTimer(*this, std::move(name)); }

  //! Runs `fn()` timed as section `name` and returns what it returns (the time counts even if it throws).
  template <class F>
  decltype(auto) time(std::string name, F&& fn) {
    ScopedTimer t(*this, std::move(name));
    if constexpr (std::is_void_v<std::invoke_result_t<F>>) {
      std::forward<F>(fn)();
    } else {
      return std::forward<F>(fn)();
    }
  }

  //! Section name -> seconds (verl's timing_raw), a copy.
  [[nodiscard]] std::map<std::string, double, std::less<>> raw() const {
    std::lock_guard lock(mutex_);
    return raw_;
  }

  //! Seconds of one section, 0 when it was not timed.
  [[nodiscard]] double seconds(std::string_view name) const {
    std::lock_guard lock(mutex_);
    const auto it = raw_.find(name);
    return it == raw_.end() ? 0.0 : it->second;
  }

  //! `timing_s/<name>` -> seconds for every section.
  [[nodiscard]] std::map<std::string, double, std::less<>> metrics() const {
    std::lock_guard lock(mutex_);
    std::map<std::string, double, std::less<>> out;
    for (const auto& [name, s] : raw_) out.emplace("timing_s/" + name, s);
    return out;
  }

  //! Forgets every section (call after committing a step).
  void clear() {
    std::lock_guard lock(mutex_);
    raw_.clear();
  }

 private:
  mutable std::mutex mutex_;
  std::map<std::string, double, std::less<>> raw_;
};

inline double ScopedTimer::stop() {
  if (timings_ == nullptr) return 0.0;
  const double s = elapsed();
  std::exchange(timings_, nullptr)->add(name_, s);
  return s;
}

}  // namespace verl::trainer
