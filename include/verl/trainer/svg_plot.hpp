#pragma once
//! \file
//! Standalone SVG line charts of training metrics, read from the JSONL file JsonlExporter writes (either
//! layout), so a run can be looked at without Python: one panel per metric (or several metrics per panel),
//! axes with "nice" ticks (1, 2, 5 x 10^k) and labels, a legend, steps on the x axis.
//!
//! \code
//!   verl::trainer::plot_metrics_svg("run/metrics.jsonl", {"critic/score/mean", "actor/ppo_kl"}, "run/plot.svg");
//! \endcode
//!
//! Geometry, for tests and for readers of the file: panel i (from 0) spans y in [i*H, (i+1)*H) of an image
//! W wide (PlotOptions::width, ::panel_height; a title, if any, adds 30 px on top). Its plot area is
//! x in [70, W-20], y in [i*H+30, (i+1)*H-45] (plus the title offset); the axis ranges are the data ranges
//! widened to the enclosing tick multiples, and a point (x, y) maps linearly onto that area (y upwards).
//! Points with a NaN or missing value are skipped (the line joins their neighbours).

#include "verl/checkpoint/atomic_file.hpp"
#include "verl/core/errors.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace verl::trainer {

//! One curve: values over steps.
struct Series {
  std::string name;
  std::vector<double> x;  //!< steps
  std::vector<double> y;  //!< values; NaN = missing
};

//! One chart area: a title and the curves drawn on its axes.
struct Panel {
  std::string title;
  std::vector<Series> series;
};

//! Sizes and labels of the image.
struct PlotOptions {
  double width = 800;         //!< px
  double panel_height = 300;  //!< px per panel
  std::string title;          //!< over the whole image; empty = none
  std::string x_label = "step";
};

//! Which metrics share a panel (plot_panels_svg).
struct PanelSpec {
  std::string title;                 //!< empty = the metric names joined by ", "
  std::vector<std::string> metrics;  //!< metric names as logged
};

namespace detail {

//! Text for XML character data and attribute values.
[[nodiscard]] inline std::string xml_escape(std::string_view s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&apos;"; break;
      default: out.push_back(c);
    }
  }
  return out;
}

[[nodiscard]] inline std::string px(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f", v);
  return buf;
}

//! Axis ticks: a step of 1, 2 or 5 x 10^k giving about `target` intervals over [lo, hi], and the range
//! widened to the enclosing multiples of the step.
struct Ticks {
  double lo = 0, hi = 1, step = 0.2;
  [[nodiscard]] std::vector<double> values() const {
    std::vector<double> v;
    const auto n = static_cast<long>(std::llround((hi - lo) / step));
    for (long i = 0; i <= n; ++i) v.push_back(lo + static_cast<double>(i) * step);
    return v;
  }
  //! A tick's label with as many decimals as the step needs ("0.2", "10", "1e+06").
  [[nodiscard]] std::string label(double v) const {
    if (std::fabs(v) < step * 1e-9) v = 0;  // -0 and rounding noise at zero
    const double mag = std::max(std::fabs(lo), std::fabs(hi));
    char buf[48];
    if (mag >= 1e6 || (mag != 0 && mag < 1e-3)) {
      std::snprintf(buf, sizeof buf, "%.3g", v);
    } else {
      const int decimals = std::max(0, static_cast<int>(-std::floor(std::log10(step) + 1e-9)));
      std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
    }
    return buf;
  }
};

[[nodiscard]] inline Ticks nice_ticks(double lo, double hi, int target = 5) {
  verl::detail::check<InputError>(std::isfinite(hi - lo), "verl::trainer::render_svg: data range [", lo, ", ", hi,
                                  "] is too wide to draw, expected a finite hi - lo");
  if (!(lo < hi)) {  // one value (or none): a unit-wide range around it
    const double pad = lo == 0 ? 1.0 : std::fabs(lo) * 0.5;
    lo -= pad;
    hi += pad;
  }
  const double raw = (hi - lo) / target;
  const double p = std::pow(10.0, std::floor(std::log10(raw)));
  const double f = raw / p;
  const double step = (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * p;
  // The small tolerance keeps a bound that is a multiple of the step up to rounding from adding a tick.
  return {std::floor(lo / step + 1e-9) * step, std::ceil(hi / step - 1e-9) * step, step};
}

inline constexpr const char* palette[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                                          "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};

}  // namespace detail

//! The SVG document for `panels` (see the file comment for the geometry).
[[nodiscard]] inline std::string render_svg(const std::vector<Panel>& panels, const PlotOptions& opt = {}) {
  verl::detail::check<ConfigError>(!panels.empty(), "verl::trainer::render_svg: no panel to draw");
  verl::detail::check<ConfigError>(opt.width >= 200 && opt.panel_height >= 120, "verl::trainer::render_svg: image ",
                             opt.width, "x", opt.panel_height, " px per panel is too small, expected >= 200x120");
  using detail::px;
  using detail::xml_escape;
  const double title_h = opt.title.empty() ? 0 : 30;
  const double w = opt.width, h = opt.panel_height, total_h = title_h + h * static_cast<double>(panels.size());
  std::string svg = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";
  svg += "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" + px(w) + "\" height=\"" + px(total_h) +
         "\" viewBox=\"0 0 " + px(w) + " " + px(total_h) + "\" font-family=\"sans-serif\" font-size=\"12\">\n";
  svg += "<rect x=\"0\" y=\"0\" width=\"" + px(w) + "\" height=\"" + px(total_h) + "\" fill=\"white\"/>\n";
  if (!opt.title.empty())
    svg += "<text x=\"" + px(w / 2) + "\" y=\"20\" text-anchor=\"middle\" font-size=\"16\">" + xml_escape(opt.title) +
           "</text>\n";
  for (std::size_t pi = 0; pi < panels.size(); ++pi) {
    const auto& panel = panels[pi];
    const double top = title_h + h * static_cast<double>(pi) + 30, bottom = title_h + h * static_cast<double>(pi + 1) - 45;
    const double left = 70, right = w - 20;
    double xlo = std::numeric_limits<double>::infinity(), xhi = -xlo, ylo = xlo, yhi = -xlo;
    for (const auto& s : panel.series) {
      verl::detail::check<InputError>(s.x.size() == s.y.size(), "verl::trainer::render_svg: series `", s.name, "` has ",
                                s.x.size(), " steps and ", s.y.size(), " values, expected as many");
      for (std::size_t i = 0; i < s.x.size(); ++i) {
        if (!std::isfinite(s.x[i]) || !std::isfinite(s.y[i])) continue;
        xlo = std::min(xlo, s.x[i]);
        xhi = std::max(xhi, s.x[i]);
        ylo = std::min(ylo, s.y[i]);
        yhi = std::max(yhi, s.y[i]);
      }
    }
    svg += "<g class=\"panel\">\n";
    svg += "<text x=\"" + px((left + right) / 2) + "\" y=\"" + px(top - 10) + "\" text-anchor=\"middle\" "
           "font-size=\"14\">" + xml_escape(panel.title) + "</text>\n";
    svg += "<rect x=\"" + px(left) + "\" y=\"" + px(top) + "\" width=\"" + px(right - left) + "\" height=\"" +
           px(bottom - top) + "\" fill=\"none\" stroke=\"black\"/>\n";
    if (!(xlo <= xhi)) {  // nothing finite to draw
      svg += "<text x=\"" + px((left + right) / 2) + "\" y=\"" + px((top + bottom) / 2) +
             "\" text-anchor=\"middle\" fill=\"gray\">no data</text>\n</g>\n";
      continue;
    }
    const auto xt = detail::nice_ticks(xlo, xhi), yt = detail::nice_ticks(ylo, yhi);
    auto map_x = [&](double x) { return left + (x - xt.lo) / (xt.hi - xt.lo) * (right - left); };
    auto map_y = [&](double y) { return bottom - (y - yt.lo) / (yt.hi - yt.lo) * (bottom - top); };
    for (double v : xt.values()) {
      const auto x = px(map_x(v));
      svg += "<line class=\"grid\" x1=\"" + x + "\" y1=\"" + px(top) + "\" x2=\"" + x + "\" y2=\"" + px(bottom) +
             "\" stroke=\"#e0e0e0\"/>\n";
      svg += "<text class=\"xtick\" x=\"" + x + "\" y=\"" + px(bottom + 16) + "\" text-anchor=\"middle\">" +
             xt.label(v) + "</text>\n";
    }
    for (double v : yt.values()) {
      const auto y = px(map_y(v));
      svg += "<line class=\"grid\" x1=\"" + px(left) + "\" y1=\"" + y + "\" x2=\"" + px(right) + "\" y2=\"" + y +
             "\" stroke=\"#e0e0e0\"/>\n";
      svg += "<text class=\"ytick\" x=\"" + px(left - 6) + "\" y=\"" + px(map_y(v) + 4) + "\" text-anchor=\"end\">" +
             yt.label(v) + "</text>\n";
    }
    svg += "<text x=\"" + px((left + right) / 2) + "\" y=\"" + px(bottom + 34) + "\" text-anchor=\"middle\">" +
           xml_escape(opt.x_label) + "</text>\n";
    for (std::size_t si = 0; si < panel.series.size(); ++si) {
      const auto& s = panel.series[si];
      const char* colour = detail::palette[si % std::size(detail::palette)];
      std::string points;
      for (std::size_t i = 0; i < s.x.size(); ++i) {
        if (!std::isfinite(s.x[i]) || !std::isfinite(s.y[i])) continue;
        if (!points.empty()) points += ' ';
        points += px(map_x(s.x[i])) + "," + px(map_y(s.y[i]));
      }
      svg += "<polyline class=\"series\" data-name=\"" + xml_escape(s.name) + "\" fill=\"none\" stroke=\"" + colour +
             "\" stroke-width=\"1.5\" points=\"" + points + "\"/>\n";
      const double ly = top + 14 + 16 * static_cast<double>(si);
      svg += "<line x1=\"" + px(right - 150) + "\" y1=\"" + px(ly - 4) + "\" x2=\"" + px(right - 130) + "\" y2=\"" +
             px(ly - 4) + "\" stroke=\"" + colour + "\" stroke-width=\"2\"/>\n";
      svg += "<text class=\"legend\" x=\"" + px(right - 125) + "\" y=\"" + px(ly) + "\">" + xml_escape(s.name) +
             "</text>\n";
    }
    svg += "</g>\n";
  }
  svg += "</svg>\n";
  return svg;
}

//! Reads the series of `names` from a metrics JSONL file (JsonlExporter's flat layout or verl's
//! {"step", "data"} layout). A step without the metric, or with null (NaN), gives no point. Empty lines are
//! ignored. \throws verl::InputError naming the file and line when a line is not a JSON object with a numeric
//! "step", or a requested metric holds something other than a number or null.
[[nodiscard]] inline std::vector<Series> read_metrics_jsonl(const std::filesystem::path& path,
                                                            const std::vector<std::string>& names) {
  std::ifstream in(path);
  verl::detail::check<InputError>(static_cast<bool>(in), "verl::trainer::read_metrics_jsonl: cannot open ",
                            path.string());
  std::vector<Series> out;
  for (const auto& n : names) out.push_back({n, {}, {}});
  std::string line;
  for (std::size_t lineno = 1; std::getline(in, line); ++lineno) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const auto where = [&] { return path.string() + ":" + std::to_string(lineno); };
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {
      throw InputError("verl::trainer::read_metrics_jsonl: " + where() + " is not valid JSON: " + e.what());
    }
    verl::detail::check<InputError>(j.is_object() && j.contains("step") && j["step"].is_number(),
                              "verl::trainer::read_metrics_jsonl: ", where(),
                              " is not a JSON object with a numeric \"step\"");
    const double step = j["step"].get<double>();
    const auto& data = j.contains("data") && j["data"].is_object() ? j["data"] : j;
    for (auto& s : out) {
      const auto it = data.find(s.name);
      if (it == data.end() || it->is_null()) continue;
      verl::detail::check<InputError>(it->is_number(), "verl::trainer::read_metrics_jsonl: ", where(), ": metric `",
                                s.name, "` is ", it->type_name(), ", expected a number or null");
      const double v = it->get<double>();
      if (!std::isfinite(v)) continue;
      s.x.push_back(step);
      s.y.push_back(v);
    }
  }
  return out;
}

//! Plots groups of metrics from `jsonl_path`, one panel per PanelSpec, into `out_path` (written atomically).
inline void plot_panels_svg(const std::filesystem::path& jsonl_path, const std::vector<PanelSpec>& specs,
                            const std::filesystem::path& out_path, const PlotOptions& opt = {}) {
  verl::detail::check<ConfigError>(!specs.empty(), "verl::trainer::plot_panels_svg: no panel requested");
  std::vector<std::string> names;
  for (const auto& s : specs) {
    verl::detail::check<ConfigError>(!s.metrics.empty(), "verl::trainer::plot_panels_svg: panel `", s.title,
                               "` names no metric");
    names.insert(names.end(), s.metrics.begin(), s.metrics.end());
  }
  const auto series = read_metrics_jsonl(jsonl_path, names);
  std::vector<Panel> panels;
  std::size_t k = 0;
  for (const auto& s : specs) {
    Panel p{s.title, {}};
    for (std::size_t i = 0; i < s.metrics.size(); ++i) {
      if (s.title.empty()) p.title += (i ? ", " : "") + s.metrics[i];
      p.series.push_back(series[k++]);
    }
    panels.push_back(std::move(p));
  }
  checkpoint::write_file_atomically(out_path, render_svg(panels, opt));
}

//! Plots each metric of `metrics` in its own panel, stacked, into `out_path` (written atomically).
inline void plot_metrics_svg(const std::filesystem::path& jsonl_path, const std::vector<std::string>& metrics,
                             const std::filesystem::path& out_path, const PlotOptions& opt = {}) {
  std::vector<PanelSpec> specs;
  for (const auto& m : metrics) specs.push_back({m, {m}});
  plot_panels_svg(jsonl_path, specs, out_path, opt);
}

}  // namespace verl::trainer
