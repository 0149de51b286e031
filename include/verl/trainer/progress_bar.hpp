#pragma once
//! \file
//! A tqdm-style console progress bar for rollout and update loops:
//! `rollout:  37%|███▋      | 37/100 [00:12<00:20,  3.01it/s, loss=0.25]`
//! The line is tqdm 4.x's `format_meter` (same fields, rounding and layout, with the average rate), drawn on
//! stderr with '\r', redrawn at most every `min_interval_s`, finished with a newline. When the stream is not a
//! terminal the bar stays silent unless forced (logs stay clean). `advance()` is thread-safe.
//!
//! \code
//!   verl::trainer::ProgressBar bar({.desc = "rollout", .total = n_prompts});
//!   for (...) { ...; bar.advance(); }
//!   bar.set_postfix(step_metrics);   // "actor/pg_loss=0.25, critic/score/mean=0.5"
//!   bar.close();                     // or let the destructor draw the last line and the newline
//! \endcode

#include "verl/core/errors.hpp"
#include "verl/trainer/metrics.hpp"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace verl::trainer {

//! One state of a bar, everything its line depends on (tqdm's format_meter arguments).
struct ProgressState {
  std::int64_t n = 0;      //!< items done
  std::int64_t total = 0;  //!< items expected; 0 = unknown (no bar, no ETA)
  double elapsed_s = 0;    //!< seconds since the bar started
  std::string desc;        //!< prefix, e.g. "rollout"
  std::string postfix;     //!< appended after the rate, e.g. "loss=0.25, kl=1e-05"
  std::string unit = "it";
  bool ascii = false;      //!< " 123456789#" instead of Unicode eighth blocks
  int ncols = 0;           //!< line width: the bar fills it and the line is cut to it; 0 = a 10-cell bar
};

namespace detail {

inline std::string printf_double(const char* fmt, double v) {
  char buf[64];
  const int len = std::snprintf(buf, sizeof buf, fmt, v);
  return std::string(buf, static_cast<std::size_t>(std::clamp(len, 0, static_cast<int>(sizeof buf) - 1)));
}

//! Number of code points of UTF-8 `s` (the display width of the text tqdm draws, East-Asian wide characters
//! aside).
[[nodiscard]] inline std::size_t display_length(std::string_view s) {
  std::size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

//! The first `cols` code points of `s`.
[[nodiscard]] inline std::string display_trim(std::string_view s, std::size_t cols) {
  std::size_t n = 0, i = 0;
  for (; i < s.size(); ++i) {
    if ((static_cast<unsigned char>(s[i]) & 0xC0) != 0x80) {
      if (n == cols) break;
      ++n;
    }
  }
  return std::string(s.substr(0, i));
}

}  // namespace detail

//! tqdm's `format_interval`: seconds as [H:]MM:SS (truncated to whole seconds).
[[nodiscard]] inline std::string format_interval(double t) {
  const char* sign = t < 0 ? "-" : "";
  const auto secs = static_cast<long long>(std::fabs(std::trunc(t)));
  const long long h = secs / 3600, m = secs / 60 % 60, s = secs % 60;
  char buf[64];
  if (h) std::snprintf(buf, sizeof buf, "%s%lld:%02lld:%02lld", sign, h, m, s);
  else std::snprintf(buf, sizeof buf, "%s%02lld:%02lld", sign, m, s);
  return buf;
}

//! tqdm's `format_num` (postfix values): '.3g' with the exponent's leading zero dropped, unless Python's repr
//! is shorter.
[[nodiscard]] inline std::string format_num(double x) {
  std::string f = detail::printf_double("%.3g", x);
  for (const char* pat : {"e+0", "e-0"}) {
    const auto at = f.find(pat);
    if (at != std::string::npos) f.erase(at + 2, 1);
  }
  std::string r = detail::python_float_repr(x);
  return f.size() < r.size() ? f : r;
}

//! "k=v, k2=v2" for a bar's postfix, values as format_num (tqdm's set_postfix with keys sorted).
[[nodiscard]] inline std::string format_postfix(const MetricMap& values) {
  std::string out;
  for (const auto& [k, v] : values) {
    if (!out.empty()) out += ", ";
    out += k;
    out += '=';
    out += format_num(v);
  }
  return out;
}

//! The bar's line for `s`, as tqdm.format_meter(n, total, elapsed, ncols, prefix=desc, ascii, postfix=...)
//! writes it with the average rate n / elapsed. Pure: the same state always gives the same line.
[[nodiscard]] inline std::string format_meter(const ProgressState& s) {
  std::int64_t total = s.total;
  if (total > 0 && static_cast<double>(s.n) >= static_cast<double>(total) + 0.5) total = 0;  // overshoot: unknown
  const std::string elapsed_str = format_interval(s.elapsed_s);
  const double rate = s.elapsed_s != 0 ? static_cast<double>(s.n) / s.elapsed_s : 0.0;  // 0 = unknown ("?")
  const double inv_rate = rate != 0 ? 1.0 / rate : 0.0;
  const std::string rate_noinv = (rate != 0 ? detail::printf_double("%5.2f", rate) : "?") + s.unit + "/s";
  const std::string rate_inv = (inv_rate != 0 ? detail::printf_double("%5.2f", inv_rate) : "?") + "s/" + s.unit;
  const std::string rate_fmt = inv_rate > 1 ? rate_inv : rate_noinv;
  const std::string postfix = s.postfix.empty() ? "" : ", " + s.postfix;
  std::string l_bar;
  if (!s.desc.empty()) l_bar = s.desc.ends_with(": ") ? s.desc : s.desc + ": ";
  std::string line;
  if (total > 0) {
    const double remaining = rate != 0 ? static_cast<double>(total - s.n) / rate : 0.0;
    const std::string remaining_str = rate != 0 ? format_interval(remaining) : "?";
    const double frac = static_cast<double>(s.n) / static_cast<double>(total);
    l_bar += detail::printf_double("%3.0f", frac * 100) + "%|";
    const std::string r_bar = "| " + std::to_string(s.n) + "/" + std::to_string(total) + " [" + elapsed_str + "<" +
                              remaining_str + ", " + rate_fmt + postfix + "]";
    const auto nobar_len = static_cast<long>(detail::display_length(l_bar) + detail::display_length(r_bar));
    const long cells = s.ncols > 0 ? std::max(1L, static_cast<long>(s.ncols) - nobar_len) : 10L;
    // tqdm's Bar: charset[0] is empty, charset[-1] full, in between the eighths (or ASCII digits).
    static const std::vector<std::string> utf = {" ", "\u258F", "\u258E", "\u258D", "\u258C",
                                                 "\u258B", "\u258A", "\u2589", "\u2588"};
    static const std::vector<std::string> ascii = {" ", "1", "2", "3", "4", "5", "6", "7", "8", "9", "#"};
    const auto& charset = s.ascii ? ascii : utf;
    const auto nsyms = static_cast<long>(charset.size()) - 1;
    const double f = std::clamp(frac, 0.0, 1.0);
    const auto units = static_cast<long>(f * static_cast<double>(cells) * static_cast<double>(nsyms));
    const long full = units / nsyms, part = units % nsyms;
    std::string bar;
    for (long i = 0; i < full; ++i) bar += charset.back();
    if (full < cells) {
      bar += charset[static_cast<std::size_t>(part)];
      for (long i = 0; i < cells - full - 1; ++i) bar += charset.front();
    }
    line = l_bar + bar + r_bar;
  } else {
    line = l_bar + std::to_string(s.n) + s.unit + " [" + elapsed_str + ", " + rate_fmt + postfix + "]";
  }
  return s.ncols > 0 ? detail::display_trim(line, static_cast<std::size_t>(s.ncols)) : line;
}

//! Options of a ProgressBar.
struct ProgressBarOptions {
  std::string desc;              //!< shown before the percentage
  std::int64_t total = 0;        //!< 0 = unknown
  double min_interval_s = 0.1;   //!< redraw at most this often (10 Hz)
  enum class Show { if_terminal, always, never } show = Show::if_terminal;  //!< `always` forces it into a pipe
  std::FILE* stream = stderr;
  bool ascii = false;
  int ncols = 0;                 //!< 0: a 10-cell bar, the line as long as it needs
  std::string unit = "it";
};

//! A console progress bar (see the file comment). advance() may be called from several threads.
class ProgressBar {
 public:
  using Clock = std::chrono::steady_clock;

  explicit ProgressBar(ProgressBarOptions options = {}) : opt_(std::move(options)), start_(Clock::now()) {
    verl::detail::check<ConfigError>(opt_.total >= 0, "verl::trainer::ProgressBar: total = ", opt_.total,
                               ", expected >= 0 (0 = unknown)");
    verl::detail::check<ConfigError>(opt_.stream != nullptr || opt_.show == ProgressBarOptions::Show::never,
                               "verl::trainer::ProgressBar: null stream");
    enabled_ = opt_.show == ProgressBarOptions::Show::always ||
               (opt_.show == ProgressBarOptions::Show::if_terminal && ::isatty(::fileno(opt_.stream)) == 1);
    if (enabled_) draw(true);
  }
  ProgressBar(const ProgressBar&) = delete;
  ProgressBar& operator=(const ProgressBar&) = delete;
  ~ProgressBar() { close(); }

  //! Adds `k` items; redraws when `min_interval_s` has passed since the last draw or the bar is full.
  void advance(std::int64_t k = 1) {
    const auto n = n_.fetch_add(k, std::memory_order_relaxed) + k;
    if (!enabled_) return;
    const bool full = opt_.total > 0 && n >= opt_.total && n - k < opt_.total;  // this call filled the bar
    const auto now = Clock::now();
    if (!full && seconds(now - last_draw_.load(std::memory_order_relaxed)) < opt_.min_interval_s) return;
    draw(full);
  }

  //! Sets the postfix to "k=v, ..." (tqdm's set_postfix, values formatted by format_num) and redraws now.
  void set_postfix(const MetricMap& values) { set_postfix(format_postfix(values)); }
  void set_postfix(std::string postfix) {
    {
      std::lock_guard lock(mutex_);
      postfix_ = std::move(postfix);
    }
    if (enabled_) draw(true);
  }
  void set_description(std::string desc) {
    {
      std::lock_guard lock(mutex_);
      opt_.desc = std::move(desc);
    }
    if (enabled_) draw(true);
  }

  //! Draws the final line and a newline (once; later calls do nothing).
  void close() {
    if (closed_.exchange(true)) return;
    if (!enabled_) return;
    draw(true);
    std::lock_guard lock(mutex_);
    std::fputc('\n', opt_.stream);
    std::fflush(opt_.stream);
  }

  [[nodiscard]] bool enabled() const noexcept { return enabled_; }
  [[nodiscard]] std::int64_t n() const noexcept { return n_.load(std::memory_order_relaxed); }

  //! The line the bar would draw now.
  [[nodiscard]] std::string render() const {
    std::lock_guard lock(mutex_);
    return format_meter(state_locked(Clock::now()));
  }

 private:
  static double seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

  [[nodiscard]] ProgressState state_locked(Clock::time_point now) const {
    return {.n = n_.load(std::memory_order_relaxed), .total = opt_.total, .elapsed_s = seconds(now - start_),
            .desc = opt_.desc, .postfix = postfix_, .unit = opt_.unit, .ascii = opt_.ascii, .ncols = opt_.ncols};
  }

  void draw(bool force) {
    std::unique_lock lock(mutex_, std::defer_lock);
    if (force) lock.lock();
    else if (!lock.try_lock()) return;  // another thread is drawing: skip rather than queue behind it
    const auto now = Clock::now();
    if (!force && seconds(now - last_draw_.load(std::memory_order_relaxed)) < opt_.min_interval_s) return;
    last_draw_.store(now, std::memory_order_relaxed);
    std::string line = format_meter(state_locked(now));
    const auto len = detail::display_length(line);
    if (len < last_len_) line.append(last_len_ - len, ' ');  // blank what a longer previous line left
    last_len_ = len;
    std::fputc('\r', opt_.stream);
    std::fputs(line.c_str(), opt_.stream);
    std::fflush(opt_.stream);
  }

  ProgressBarOptions opt_;
  Clock::time_point start_;
  std::atomic<Clock::time_point> last_draw_{Clock::time_point{}};
  std::atomic<std::int64_t> n_{0};
  std::atomic<bool> closed_{false};
  bool enabled_ = false;
  mutable std::mutex mutex_;  // guards drawing, postfix_, opt_.desc, last_len_
  std::string postfix_;
  std::size_t last_len_ = 0;
};

}  // namespace verl::trainer
