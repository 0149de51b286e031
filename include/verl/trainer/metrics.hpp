#pragma once
//! \file
//! The metrics registry: every trainer component records scalar metrics under verl's names during a step,
//! `commit(step)` reduces them (several values of one name in a step -> one value, as verl's
//! `verl.utils.metric.reduce_metrics`) and hands the step's map to every exporter (console, JSONL file, a
//! user callback), then starts the next step empty.
//!
//! \code
//!   verl::trainer::MetricsRegistry metrics;
//!   metrics.add_exporter(verl::trainer::ConsoleExporter{});                  // step:3 - actor/entropy:0.5 - ...
//!   metrics.add_exporter(verl::trainer::JsonlExporter{"run/metrics.jsonl"}); // {"step":3,"actor/entropy":0.5,...}
//!   namespace mn = verl::trainer::metric_names;
//!   for (auto& micro : micro_batches) {
//!     metrics.record_sum(mn::actor_pg_loss, loss * scale);   // verl sums pg_loss over micro-batches
//!     metrics.record(mn::actor_entropy, entropy);            // reduced by mean at commit
//!   }
//!   metrics.record(data_metrics);                            // a std::map<std::string, double>
//!   auto logged = metrics.commit(step);                      // exported, returned, cleared
//! \endcode
//!
//! No LibTorch here: the registry takes doubles (call `.item<double>()` on scalar tensors).

#include "verl/core/errors.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <cstring>
#include <functional>
#include <iostream>
#include <iterator>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace verl::trainer {

//! One step's metrics: name -> value, sorted by name.
using MetricMap = std::map<std::string, double, std::less<>>;

//! verl's metric names (verl 0.7.1: ray_trainer.py, dp_actor.py, dp_critic.py, core_algos.py,
//! metric_utils.py), as constants so that a misspelt name is a compile error rather than a new curve.
namespace metric_names {
// actor (dp_actor.py update_policy, core_algos.py policy losses, ray_trainer.py)
inline constexpr std::string_view actor_pg_loss = "actor/pg_loss";          //!< summed over micro-batches
inline constexpr std::string_view actor_kl_loss = "actor/kl_loss";          //!< summed over micro-batches
inline constexpr std::string_view actor_kl_coef = "actor/kl_coef";
inline constexpr std::string_view actor_entropy = "actor/entropy";
inline constexpr std::string_view actor_ppo_kl = "actor/ppo_kl";
inline constexpr std::string_view actor_pg_clipfrac = "actor/pg_clipfrac";
inline constexpr std::string_view actor_pg_clipfrac_lower = "actor/pg_clipfrac_lower";
inline constexpr std::string_view actor_grad_norm = "actor/grad_norm";
inline constexpr std::string_view actor_lr = "actor/lr";
inline constexpr std::string_view actor_reward_kl_penalty = "actor/reward_kl_penalty";
inline constexpr std::string_view actor_reward_kl_penalty_coeff = "actor/reward_kl_penalty_coeff";
// critic (dp_critic.py update_critic)
inline constexpr std::string_view critic_vf_loss = "critic/vf_loss";        //!< summed over micro-batches
inline constexpr std::string_view critic_vf_clipfrac = "critic/vf_clipfrac";
inline constexpr std::string_view critic_vpred_mean = "critic/vpred_mean";
inline constexpr std::string_view critic_grad_norm = "critic/grad_norm";
inline constexpr std::string_view critic_lr = "critic/lr";
// data metrics (metric_utils.py compute_data_metrics)
inline constexpr std::string_view critic_score_mean = "critic/score/mean";
inline constexpr std::string_view critic_score_max = "critic/score/max";
inline constexpr std::string_view critic_score_min = "critic/score/min";
inline constexpr std::string_view critic_rewards_mean = "critic/rewards/mean";
inline constexpr std::string_view critic_rewards_max = "critic/rewards/max";
inline constexpr std::string_view critic_rewards_min = "critic/rewards/min";
inline constexpr std::string_view critic_advantages_mean = "critic/advantages/mean";
inline constexpr std::string_view critic_advantages_max = "critic/advantages/max";
inline constexpr std::string_view critic_advantages_min = "critic/advantages/min";
inline constexpr std::string_view critic_returns_mean = "critic/returns/mean";
inline constexpr std::string_view critic_returns_max = "critic/returns/max";
inline constexpr std::string_view critic_returns_min = "critic/returns/min";
inline constexpr std::string_view critic_values_mean = "critic/values/mean";
inline constexpr std::string_view critic_values_max = "critic/values/max";
inline constexpr std::string_view critic_values_min = "critic/values/min";
inline constexpr std::string_view critic_vf_explained_var = "critic/vf_explained_var";
inline constexpr std::string_view response_length_mean = "response_length/mean";
inline constexpr std::string_view response_length_max = "response_length/max";
inline constexpr std::string_view response_length_min = "response_length/min";
inline constexpr std::string_view response_length_clip_ratio = "response_length/clip_ratio";
inline constexpr std::string_view response_length_non_aborted_mean = "response_length_non_aborted/mean";
inline constexpr std::string_view response_length_non_aborted_max = "response_length_non_aborted/max";
inline constexpr std::string_view response_length_non_aborted_min = "response_length_non_aborted/min";
inline constexpr std::string_view response_length_non_aborted_clip_ratio = "response_length_non_aborted/clip_ratio";
inline constexpr std::string_view response_aborted_ratio = "response/aborted_ratio";
inline constexpr std::string_view prompt_length_mean = "prompt_length/mean";
inline constexpr std::string_view prompt_length_max = "prompt_length/max";
inline constexpr std::string_view prompt_length_min = "prompt_length/min";
inline constexpr std::string_view prompt_length_clip_ratio = "prompt_length/clip_ratio";
// timing (marked_timer sections of ray_trainer.py fit; compute_timing_metrics)
inline constexpr std::string_view timing_s_prefix = "timing_s/";
inline constexpr std::string_view timing_per_token_ms_prefix = "timing_per_token_ms/";
inline constexpr std::string_view timing_s_gen = "timing_s/gen";
inline constexpr std::string_view timing_s_reward = "timing_s/reward";
inline constexpr std::string_view timing_s_old_log_prob = "timing_s/old_log_prob";
inline constexpr std::string_view timing_s_ref = "timing_s/ref";
inline constexpr std::string_view timing_s_values = "timing_s/values";
inline constexpr std::string_view timing_s_adv = "timing_s/adv";
inline constexpr std::string_view timing_s_update_critic = "timing_s/update_critic";
inline constexpr std::string_view timing_s_update_actor = "timing_s/update_actor";
inline constexpr std::string_view timing_s_step = "timing_s/step";
inline constexpr std::string_view timing_s_testing = "timing_s/testing";
inline constexpr std::string_view timing_s_save_checkpoint = "timing_s/save_checkpoint";
// perf (compute_throughout_metrics, fsdp_workers.py)
inline constexpr std::string_view perf_total_num_tokens = "perf/total_num_tokens";
inline constexpr std::string_view perf_time_per_step = "perf/time_per_step";
inline constexpr std::string_view perf_throughput = "perf/throughput";
inline constexpr std::string_view perf_max_memory_allocated_gb = "perf/max_memory_allocated_gb";
inline constexpr std::string_view perf_max_memory_reserved_gb = "perf/max_memory_reserved_gb";
inline constexpr std::string_view perf_cpu_memory_used_gb = "perf/cpu_memory_used_gb";
// training progress (ray_trainer.py fit)
inline constexpr std::string_view training_global_step = "training/global_step";
inline constexpr std::string_view training_epoch = "training/epoch";
// validation sections (ray_trainer.py _val_metrics_update)
inline constexpr std::string_view val_core_prefix = "val-core/";
inline constexpr std::string_view val_aux_prefix = "val-aux/";
}  // namespace metric_names

//! How the values recorded under one name during a step become the step's value.
enum class Reduce {
  by_name,  //!< verl's reduce_metrics rule: the name contains "max" -> max, else "min" -> min, else mean
  mean,
  sum,
  min,
  max,
};

[[nodiscard]] constexpr std::string_view to_string(Reduce r) noexcept {
  switch (r) {
    case Reduce::by_name: return "by_name";
    case Reduce::mean: return "mean";
    case Reduce::sum: return "sum";
    case Reduce::min: return "min";
    case Reduce::max: return "max";
  }
  return "?";
}

//! verl's `reduce_metrics` choice for `name` (verl 0.7.1 verl/utils/metric/utils.py): substring "max", then
//! "min", else mean. So "critic/score/max" recorded by two data-parallel ranks reduces to the larger value.
[[nodiscard]] constexpr Reduce reduce_for_name(std::string_view name) noexcept {
  if (name.find("max") != std::string_view::npos) return Reduce::max;
  if (name.find("min") != std::string_view::npos) return Reduce::min;
  return Reduce::mean;
}

//! verl's `reduce_metrics` (verl/utils/metric/utils.py) on lists of values: each list reduced by
//! reduce_for_name (max / min / mean). Names with an empty list are left out (numpy would give NaN or raise).
template <class Lists>
  requires requires(const Lists& m) {
    { m.begin()->first } -> std::convertible_to<std::string_view>;
    { *std::begin(m.begin()->second) } -> std::convertible_to<double>;
  }
[[nodiscard]] MetricMap reduce_metrics(const Lists& lists) {
  MetricMap out;
  for (const auto& [name, values] : lists) {
    const Reduce op = reduce_for_name(name);
    double acc = op == Reduce::max ? -std::numeric_limits<double>::infinity()
                                   : op == Reduce::min ? std::numeric_limits<double>::infinity() : 0.0;
    std::size_t n = 0;
    bool nan = false;
    for (const auto& x : values) {
      const auto v = static_cast<double>(x);
      ++n;
      nan = nan || std::isnan(v);
      if (op == Reduce::max) acc = v > acc ? v : acc;
      else if (op == Reduce::min) acc = v < acc ? v : acc;
      else acc += v;
    }
    if (n == 0) continue;
    if (nan && op != Reduce::mean) acc = std::numeric_limits<double>::quiet_NaN();
    out.emplace(std::string(name), op == Reduce::mean ? acc / static_cast<double>(n) : acc);
  }
  return out;
}

namespace detail {

//! Python's `repr(float)`: the shortest string that round-trips, fixed notation when the decimal exponent
//! is in (-4, 16], else scientific with a signed two-digit exponent ("1e-05", "1e+16"); "1.0" not "1".
//! verl's console logger prints values with pprint.pformat, which is repr for floats.
[[nodiscard]] inline std::string python_float_repr(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  char buf[64];
  const auto res = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::scientific);
  std::string_view s(buf, static_cast<std::size_t>(res.ptr - buf));  // "-1.2345e+02", shortest digits
  std::string out;
  if (s.front() == '-') {
    out.push_back('-');
    s.remove_prefix(1);
  }
  const auto epos = s.find('e');
  std::string digits;
  for (char c : s.substr(0, epos))
    if (c != '.') digits.push_back(c);
  int exp10 = 0;
  std::from_chars(s.data() + epos + 1 + (s[epos + 1] == '+' ? 1 : 0), s.data() + s.size(), exp10);
  const int decpt = exp10 + 1;  // value = 0.<digits> * 10^decpt
  const int n = static_cast<int>(digits.size());
  if (decpt > -4 && decpt <= 16) {
    if (decpt <= 0) {
      out += "0.";
      out.append(static_cast<std::size_t>(-decpt), '0');
      out += digits;
    } else if (decpt >= n) {
      out += digits;
      out.append(static_cast<std::size_t>(decpt - n), '0');
      out += ".0";
    } else {
      out += digits.substr(0, static_cast<std::size_t>(decpt));
      out += '.';
      out += digits.substr(static_cast<std::size_t>(decpt));
    }
    return out;
  }
  out += digits[0];
  if (n > 1) {
    out += '.';
    out += digits.substr(1);
  }
  out += exp10 < 0 ? "e-" : "e+";
  const int a = exp10 < 0 ? -exp10 : exp10;
  if (a < 10) out += '0';
  out += std::to_string(a);
  return out;
}

//! A JSON number for `v`: Python-repr digits, or `null` for NaN and infinities (as orjson, which verl's
//! file logger uses, writes them).
[[nodiscard]] inline std::string json_number(double v) {
  if (!std::isfinite(v)) return "null";
  return python_float_repr(v);
}

//! `s` as a JSON string literal (quotes included); UTF-8 passes through, control characters are escaped.
[[nodiscard]] inline std::string json_string(std::string_view s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          static constexpr char hex[] = "0123456789abcdef";
          out += "\\u00";
          out += hex[c >> 4];
          out += hex[c & 15];
        } else {
          out.push_back(static_cast<char>(c));
        }
    }
  }
  out += '"';
  return out;
}

//! Writes all of `data` to `fd`, retrying on EINTR and short writes. \throws verl::InputError naming `path`.
inline void write_all(int fd, std::string_view data, const std::string& path) {
  while (!data.empty()) {
    const auto n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      throw InputError("verl::trainer: writing " + path + " failed: " + std::strerror(errno));
    }
    data.remove_prefix(static_cast<std::size_t>(n));
  }
}

}  // namespace detail

//! Receives one committed step. Implement it to plug a new sink (TensorBoard, a socket, ...) into the
//! registry; exporters are called in the order they were added, from the thread that calls commit().
class MetricsExporter {
 public:
  virtual ~MetricsExporter() = default;
  //! One step's reduced metrics, sorted by name.
  virtual void write(std::int64_t step, const MetricMap& metrics) = 0;
  //! Called by MetricsRegistry::flush() and at the registry's destruction.
  virtual void flush() {}
};

//! verl's console logger (verl/utils/logger/aggregate_logger.py LocalLogger): one line per step,
//! "step:3 - actor/entropy:0.5 - critic/score/mean:1.0", values as Python's repr, keys sorted.
class ConsoleExporter final : public MetricsExporter {
 public:
  //! Writes to `out` (std::cout by default), which must outlive the exporter.
  explicit ConsoleExporter(std::ostream& out = std::cout) : out_(&out) {}

  //! The line for one step, without the newline.
  [[nodiscard]] static std::string format(std::int64_t step, const MetricMap& metrics) {
    std::string line = "step:" + std::to_string(step);
    for (const auto& [name, value] : metrics) {
      line += " - ";
      line += name;
      line += ':';
      line += detail::python_float_repr(value);
    }
    return line;
  }

  void write(std::int64_t step, const MetricMap& metrics) override {
    *out_ << format(step, metrics) << '\n';
    out_->flush();
  }
  void flush() override { out_->flush(); }

 private:
  std::ostream* out_;
};

//! Options of JsonlExporter.
struct JsonlOptions {
  //! Line layout: `flat` writes {"step":3,"actor/entropy":0.5,...}; `verl` writes verl's FileLogger layout
  //! {"step":3,"data":{"actor/entropy":0.5,...}}. plot_metrics_svg reads both.
  enum class Layout { flat, verl } layout = Layout::flat;
  //! Append to an existing file (resuming a run), or start it empty.
  bool append = true;
  //! fsync after every line: survives a machine crash too, at the cost of a disk flush per step.
  bool fsync_each_step = false;
};

//! One JSON object per committed step, one per line, appended to `path`. Each line goes to the kernel in a
//! single write() as soon as the step is committed, so a crashed process loses nothing already committed;
//! a line torn by a machine crash is cut off when the file is next opened, so the file stays valid JSONL.
//! NaN and infinities are written as null (as orjson, verl's file logger, does).
class JsonlExporter final : public MetricsExporter {
 public:
  //! Opens (creates) `path`. \throws verl::InputError naming the path when it cannot be opened.
  explicit JsonlExporter(std::string path, JsonlOptions options = {}) : path_(std::move(path)), options_(options) {
    const int flags = O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC | (options_.append ? 0 : O_TRUNC);
    fd_ = ::open(path_.c_str(), flags, 0644);
    if (fd_ < 0)
      throw InputError("verl::trainer::JsonlExporter: cannot open " + path_ + " for appending: " +
                       std::strerror(errno));
    drop_torn_tail();
  }
  JsonlExporter(JsonlExporter&& other) noexcept
      : path_(std::move(other.path_)), options_(other.options_), fd_(std::exchange(other.fd_, -1)) {}
  JsonlExporter& operator=(JsonlExporter&&) = delete;
  JsonlExporter(const JsonlExporter&) = delete;
  JsonlExporter& operator=(const JsonlExporter&) = delete;
  ~JsonlExporter() override {
    if (fd_ >= 0) ::close(fd_);
  }

  [[nodiscard]] const std::string& path() const noexcept { return path_; }

  //! The line for one step (with its newline). \throws verl::ConfigError in the flat layout when a metric is
  //! named "step", which would collide with the step number.
  [[nodiscard]] static std::string format(std::int64_t step, const MetricMap& metrics,
                                          JsonlOptions::Layout layout = JsonlOptions::Layout::flat) {
    std::string line = "{\"step\":" + std::to_string(step);
    if (layout == JsonlOptions::Layout::verl) line += ",\"data\":{";
    bool first = layout == JsonlOptions::Layout::verl;
    for (const auto& [name, value] : metrics) {
      verl::detail::check<ConfigError>(layout == JsonlOptions::Layout::verl || name != "step",
                                 "verl::trainer::JsonlExporter: a metric named `step` collides with the step "
                                 "number in the flat layout; rename it or use JsonlOptions::Layout::verl");
      if (!first) line += ',';
      first = false;
      line += detail::json_string(name);
      line += ':';
      line += detail::json_number(value);
    }
    if (layout == JsonlOptions::Layout::verl) line += '}';
    line += "}\n";
    return line;
  }

  void write(std::int64_t step, const MetricMap& metrics) override {
    detail::write_all(fd_, format(step, metrics, options_.layout), path_);
    if (options_.fsync_each_step) flush();
  }
  void flush() override {
    if (fd_ >= 0 && ::fsync(fd_) != 0 && errno != EINVAL)
      throw InputError("verl::trainer::JsonlExporter: fsync of " + path_ + " failed: " + std::strerror(errno));
  }

 private:
  //! A file that does not end in '\n' holds a line torn by a crash: cut it so the next line starts clean.
  void drop_torn_tail() {
    struct stat st {};
    if (::fstat(fd_, &st) != 0 || st.st_size == 0 || !S_ISREG(st.st_mode)) return;
    char c = 0;
    off_t end = st.st_size;
    if (::pread(fd_, &c, 1, end - 1) == 1 && c == '\n') return;
    // Scan backwards in blocks for the last newline.
    char block[4096];
    while (end > 0) {
      const off_t start = end > static_cast<off_t>(sizeof block) ? end - static_cast<off_t>(sizeof block) : 0;
      const auto got = ::pread(fd_, block, static_cast<std::size_t>(end - start), start);
      if (got <= 0) break;
      for (auto i = got; i > 0; --i)
        if (block[i - 1] == '\n') {
          if (::ftruncate(fd_, start + i) != 0)
            throw InputError("verl::trainer::JsonlExporter: cannot cut the torn last line of " + path_ + ": " +
                             std::strerror(errno));
          return;
        }
      end = start;
    }
    if (::ftruncate(fd_, 0) != 0)
      throw InputError("verl::trainer::JsonlExporter: cannot cut the torn line of " + path_ + ": " +
                       std::strerror(errno));
  }

  std::string path_;
  JsonlOptions options_;
  int fd_ = -1;
};

//! Calls a user function with every committed step (to feed a dashboard, a test, an early-stopping rule).
class CallbackExporter final : public MetricsExporter {
 public:
  using Callback = std::function<void(std::int64_t step, const MetricMap& metrics)>;
  explicit CallbackExporter(Callback callback) : callback_(std::move(callback)) {
    verl::detail::check<ConfigError>(static_cast<bool>(callback_), "verl::trainer::CallbackExporter: empty callback");
  }
  void write(std::int64_t step, const MetricMap& metrics) override { callback_(step, metrics); }

 private:
  Callback callback_;
};

//! Collects one step's metrics from any thread, reduces and exports them at commit(). Thread-safe.
class MetricsRegistry {
 public:
  MetricsRegistry() = default;
  MetricsRegistry(const MetricsRegistry&) = delete;
  MetricsRegistry& operator=(const MetricsRegistry&) = delete;
  ~MetricsRegistry() {
    try {
      flush();
    } catch (...) {  // a destructor must not throw; flush() explicitly to see the error
    }
  }

  //! Adds an exporter (moved in); returns a reference to it, valid as long as the registry.
  template <class E>
    requires std::derived_from<std::remove_cvref_t<E>, MetricsExporter>
  std::remove_cvref_t<E>& add_exporter(E&& exporter) {
    auto owned = std::make_unique<std::remove_cvref_t<E>>(std::forward<E>(exporter));
    auto& ref = *owned;
    std::lock_guard lock(export_mutex_);
    exporters_.push_back(std::move(owned));
    return ref;
  }
  //! Adds an exporter the caller already owns through a unique_ptr.
  MetricsExporter& add_exporter(std::unique_ptr<MetricsExporter> exporter) {
    verl::detail::check<ConfigError>(exporter != nullptr, "verl::trainer::MetricsRegistry::add_exporter: null exporter");
    auto& ref = *exporter;
    std::lock_guard lock(export_mutex_);
    exporters_.push_back(std::move(exporter));
    return ref;
  }
  //! Adds a CallbackExporter for `callback(step, metrics)`.
  CallbackExporter& add_callback(CallbackExporter::Callback callback) {
    return add_exporter(CallbackExporter(std::move(callback)));
  }

  //! Records one value; values of one name within a step are reduced by `how` (verl's name rule by default).
  //! \throws verl::ConfigError when the name was recorded earlier in the step with another reduction.
  void record(std::string_view name, double value, Reduce how = Reduce::by_name) {
    const Reduce op = how == Reduce::by_name ? reduce_for_name(name) : how;
    std::lock_guard lock(mutex_);
    auto it = pending_.find(name);
    if (it == pending_.end()) it = pending_.emplace(std::string(name), Accumulator{op}).first;
    verl::detail::check<ConfigError>(it->second.op == op, "verl::trainer::MetricsRegistry: metric `", name,
                               "` was recorded with reduction ", to_string(it->second.op),
                               " earlier in this step and now with ", to_string(op),
                               "; use one reduction per metric");
    it->second.add(value);
  }
  void record_mean(std::string_view name, double value) { record(name, value, Reduce::mean); }
  void record_sum(std::string_view name, double value) { record(name, value, Reduce::sum); }
  void record_min(std::string_view name, double value) { record(name, value, Reduce::min); }
  void record_max(std::string_view name, double value) { record(name, value, Reduce::max); }
  //! Records several values of one name (verl's `append_to_dict` lists).
  void record(std::string_view name, std::span<const double> values, Reduce how = Reduce::by_name) {
    for (double v : values) record(name, v, how);
  }
  //! Records every entry of a map (e.g. compute_data_metrics' result).
  template <class Map>
    requires requires(const Map& m) {
      { m.begin()->first } -> std::convertible_to<std::string_view>;
      { m.begin()->second } -> std::convertible_to<double>;
    }
  void record(const Map& metrics, Reduce how = Reduce::by_name) {
    for (const auto& [name, value] : metrics) record(std::string_view(name), static_cast<double>(value), how);
  }

  //! Records lists of values per name (verl's `append_to_dict` dicts, a pipeline StepContext's `metrics`).
  template <class Lists>
    requires requires(const Lists& m) {
      { m.begin()->first } -> std::convertible_to<std::string_view>;
      { *std::begin(m.begin()->second) } -> std::convertible_to<double>;
    }
  void record_lists(const Lists& lists, Reduce how = Reduce::by_name) {
    for (const auto& [name, values] : lists)
      for (const auto& v : values) record(std::string_view(name), static_cast<double>(v), how);
  }

  //! The step's metrics reduced so far, without committing.
  [[nodiscard]] MetricMap pending() const {
    std::lock_guard lock(mutex_);
    return reduce_locked();
  }

  //! Reduces the step's metrics, clears them, passes them to every exporter and returns them.
  //! Exporters see steps in commit order even when commits race.
  MetricMap commit(std::int64_t step) {
    std::lock_guard export_lock(export_mutex_);
    MetricMap reduced;
    {
      std::lock_guard lock(mutex_);
      reduced = reduce_locked();
      pending_.clear();
    }
    for (auto& e : exporters_) e->write(step, reduced);
    return reduced;
  }

  //! Drops the step's metrics without exporting them.
  void discard() {
    std::lock_guard lock(mutex_);
    pending_.clear();
  }

  //! Flushes every exporter (fsync for JsonlExporter).
  void flush() {
    std::lock_guard lock(export_mutex_);
    for (auto& e : exporters_) e->flush();
  }

 private:
  struct Accumulator {
    Reduce op;
    double sum = 0.0;
    double lo = std::numeric_limits<double>::infinity();
    double hi = -std::numeric_limits<double>::infinity();
    std::size_t count = 0;
    bool nan = false;  // numpy's max/min propagate NaN; std::min/max would drop it

    void add(double v) {
      ++count;
      sum += v;
      if (std::isnan(v)) nan = true;
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
    [[nodiscard]] double value() const {
      switch (op) {
        case Reduce::sum: return sum;
        case Reduce::min: return nan ? std::numeric_limits<double>::quiet_NaN() : lo;
        case Reduce::max: return nan ? std::numeric_limits<double>::quiet_NaN() : hi;
        default: return sum / static_cast<double>(count);
      }
    }
  };

  [[nodiscard]] MetricMap reduce_locked() const {
    MetricMap out;
    for (const auto& [name, acc] : pending_) out.emplace(name, acc.value());
    return out;
  }

  mutable std::mutex mutex_;  // guards pending_
  std::mutex export_mutex_;   // guards exporters_ and orders commits
  std::map<std::string, Accumulator, std::less<>> pending_;
  std::vector<std::unique_ptr<MetricsExporter>> exporters_;
};

}  // namespace verl::trainer
