// Trainer metrics (include/verl/trainer/{metrics,data_metrics,timer,progress_bar,svg_plot}.hpp):
// - against verl 0.7.1 (PyPI): compute_data_metrics / compute_timing_metrics / compute_throughout_metrics /
//   process_validation_metrics (verl/trainer/ppo/metric_utils.py) and the console line of
//   verl/utils/logger/aggregate_logger.py, run by tests/golden/trainer/make_metrics_golden.py on random batches;
// - against tqdm 4.70.1's format_meter / format_num / format_interval (same generator);
// - the registry's reductions (verl.utils.metric.reduce_metrics), exporters, JSONL crash behaviour, timers,
//   the bar's drawing, and hand-derived SVG geometry.
#include "catch_torch.hpp"

#include "verl/trainer/data_metrics.hpp"
#include "verl/trainer/metrics.hpp"
#include "verl/trainer/progress_bar.hpp"
#include "verl/trainer/svg_plot.hpp"
#include "verl/trainer/timer.hpp"

#include "error_of.hpp"
#include "golden.hpp"
#include "temp_dir.hpp"

#include <nlohmann/json.hpp>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <limits>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace test_metrics {  // one namespace per file: a unity build (tests/CMakeLists.txt) may join files

using namespace verl::trainer;
using verl::test::error_of;
namespace mn = verl::trainer::metric_names;

namespace {

const verl::test::GoldenFile& golden() {
  static const auto file = verl::test::load_golden("trainer/metrics.json");
  return file;
}

const verl::test::GoldenCase& golden_case(const std::string& name) {
  for (const auto& c : golden().cases)
    if (c.name == name) return c;
  throw verl::InputError("no golden case " + name);
}

double json_value(const nlohmann::json& v) { return verl::test::detail::golden_number(v); }

//! Same keys; every value within `rel` (NaN matching NaN); rel = 0: bit for bit.
void check_metrics(const MetricMap& got, const nlohmann::json& want, double rel = 1e-6) {
  std::vector<std::string> want_keys;
  for (const auto& [k, v] : want.items()) want_keys.push_back(k);
  std::vector<std::string> got_keys;
  for (const auto& [k, v] : got) got_keys.push_back(k);
  std::sort(want_keys.begin(), want_keys.end());
  CHECK(got_keys == want_keys);
  for (const auto& [k, v] : want.items()) {
    INFO(k);
    const auto it = got.find(k);
    REQUIRE(it != got.end());
    const double w = json_value(v);
    if (std::isnan(w)) CHECK(std::isnan(it->second));
    else if (rel == 0) CHECK(it->second == w);
    else CHECK(it->second == Approx(w).epsilon(rel).margin(1e-12));
  }
}

std::string read_file(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<std::string> lines_of(const std::string& s) {
  std::vector<std::string> out;
  std::istringstream in(s);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

//! Checks that `xml` is one well-formed element tree (tags balanced and properly nested, attribute values
//! quoted, no bare '&' or '<' in text) and returns the element names in document order.
std::vector<std::string> xml_elements(const std::string& xml) {
  std::vector<std::string> stack, names;
  std::size_t i = 0;
  auto fail = [&](const std::string& why) { FAIL("XML not well-formed at byte " << i << ": " << why); };
  auto check_text = [&](std::string_view text) {
    for (std::size_t k = 0; k < text.size(); ++k)
      if (text[k] == '&' && !std::regex_search(std::string(text.substr(k, 7)), std::regex("^&(amp|lt|gt|quot|apos);")))
        fail("bare &");
  };
  bool root_closed = false;
  while (i < xml.size()) {
    const auto lt = xml.find('<', i);
    check_text(std::string_view(xml).substr(i, lt == std::string::npos ? std::string::npos : lt - i));
    if (lt == std::string::npos) break;
    const auto gt = xml.find('>', lt);
    if (gt == std::string::npos) fail("unterminated tag");
    const std::string tag = xml.substr(lt + 1, gt - lt - 1);
    i = gt + 1;
    if (tag.starts_with("?")) {
      if (!tag.ends_with("?")) fail("bad processing instruction");
      continue;
    }
    if (root_closed) fail("content after the root element");
    if (tag.starts_with("/")) {
      if (stack.empty() || stack.back() != tag.substr(1)) fail("mismatched </" + tag.substr(1) + ">");
      stack.pop_back();
      if (stack.empty()) root_closed = true;
      continue;
    }
    const bool self_closing = tag.ends_with("/");
    const std::string body = self_closing ? tag.substr(0, tag.size() - 1) : tag;
    static const std::regex element(R"(^([A-Za-z_][\w.-]*)((\s+[A-Za-z_:][\w:.-]*="[^"<]*")*)\s*$)");
    std::smatch m;
    if (!std::regex_match(body, m, element)) fail("bad tag <" + tag + ">");
    check_text(m[2].str());
    if (stack.empty() && !names.empty()) fail("second root element");
    names.push_back(m[1].str());
    if (!self_closing) stack.push_back(m[1].str());
    else if (stack.empty()) root_closed = true;
  }
  if (!stack.empty()) fail("unclosed <" + stack.back() + ">");
  return names;
}

std::vector<std::string> polyline_points(const std::string& svg) {
  std::vector<std::string> out;
  static const std::regex re(R"re(<polyline class="series"[^>]* points="([^"]*)")re");
  for (std::sregex_iterator it(svg.begin(), svg.end(), re), end; it != end; ++it) out.push_back((*it)[1].str());
  return out;
}

}  // namespace

// ---------------------------------------------------------------------------------------------------------
// Registry, exporters

TEST_CASE("console line matches verl's LocalLogger (Python repr of every value)", "[trainer][metrics]") {
  const auto& c = golden_case("console/line");
  MetricMap m;
  for (const auto& [k, v] : c.config["metrics"].items()) m[k] = json_value(v);
  CHECK(ConsoleExporter::format(c.config["step"].get<std::int64_t>(), m) == c.config["out"].get<std::string>());
  // A few more of Python's repr rules, by hand: the exponent switch at 1e-4 / 1e16, shortest round trip.
  using verl::trainer::detail::python_float_repr;
  CHECK(python_float_repr(0.1) == "0.1");
  CHECK(python_float_repr(1.0 / 3) == "0.3333333333333333");
  CHECK(python_float_repr(0.00012) == "0.00012");
  CHECK(python_float_repr(0.000012) == "1.2e-05");
  CHECK(python_float_repr(1.5e300) == "1.5e+300");
  CHECK(python_float_repr(123.0) == "123.0");
  CHECK(python_float_repr(9999999999999998.0) == "9999999999999998.0");
  CHECK(python_float_repr(5e-324) == "5e-324");
}

TEST_CASE("registry reduces a step's values as verl's reduce_metrics and exports them", "[trainer][metrics]") {
  MetricsRegistry reg;
  std::vector<std::pair<std::int64_t, MetricMap>> seen;
  reg.add_callback([&](std::int64_t step, const MetricMap& m) { seen.emplace_back(step, m); });
  std::ostringstream console;
  reg.add_exporter(ConsoleExporter(console));

  // by name: "max" -> max, "min" -> min, else mean (verl/utils/metric/utils.py)
  reg.record(mn::actor_entropy, 1.0);
  reg.record(mn::actor_entropy, 2.0);
  reg.record(mn::actor_entropy, 6.0);                // mean 3
  reg.record(mn::critic_score_max, 4.0);
  reg.record(mn::critic_score_max, -1.0);            // max 4
  reg.record(mn::response_length_min, 5.0);
  reg.record(mn::response_length_min, 2.0);          // min 2
  reg.record_sum(mn::actor_pg_loss, 0.25);
  reg.record_sum(mn::actor_pg_loss, 0.5);            // sum 0.75 (verl accumulates pg_loss * scale)
  reg.record_max("custom/loss", 1.0);
  reg.record_max("custom/loss", 3.0);
  const std::vector<double> norms{1.0, 2.0};
  reg.record(mn::actor_grad_norm, norms);            // mean 1.5
  reg.record(MetricMap{{"perf/throughput", 10.0}});
  CHECK(reg.pending().at(std::string(mn::actor_entropy)) == 3.0);

  const auto out = reg.commit(7);
  const MetricMap want{{"actor/entropy", 3.0},  {"critic/score/max", 4.0}, {"response_length/min", 2.0},
                       {"actor/pg_loss", 0.75}, {"custom/loss", 3.0},      {"actor/grad_norm", 1.5},
                       {"perf/throughput", 10.0}};
  CHECK(out == want);
  REQUIRE(seen.size() == 1);
  CHECK(seen[0].first == 7);
  CHECK(seen[0].second == want);
  CHECK(console.str() ==
        "step:7 - actor/entropy:3.0 - actor/grad_norm:1.5 - actor/pg_loss:0.75 - critic/score/max:4.0 - "
        "custom/loss:3.0 - perf/throughput:10.0 - response_length/min:2.0\n");

  // The step is cleared; an empty step still reaches the exporters.
  CHECK(reg.pending().empty());
  CHECK(reg.commit(8).empty());
  REQUIRE(seen.size() == 2);
  CHECK(seen[1].first == 8);

  // NaN propagates through min/max (numpy) and mean.
  reg.record_max("m/max", 1.0);
  reg.record_max("m/max", std::nan(""));
  reg.record_max("m/max", 2.0);
  reg.record("loss", std::nan(""));
  const auto with_nan = reg.commit(9);
  CHECK(std::isnan(with_nan.at("m/max")));
  CHECK(std::isnan(with_nan.at("loss")));

  // Lists of values per name (verl's append_to_dict, a pipeline StepContext): the same rule.
  const std::map<std::string, std::vector<double>> lists{
      {"actor/entropy", {1.0, 2.0}}, {"critic/score/max", {1.0, 5.0}}, {"x/min", {3.0, -1.0}}, {"empty", {}}};
  const MetricMap reduced{{"actor/entropy", 1.5}, {"critic/score/max", 5.0}, {"x/min", -1.0}};
  CHECK(reduce_metrics(lists) == reduced);
  reg.record_lists(lists);
  CHECK(reg.commit(10) == reduced);

  // One reduction per name within a step; discard() drops the step.
  reg.record("x", 1.0);
  CHECK_THAT(error_of([&] { reg.record_sum("x", 1.0); }),
             Catch::Contains("metric `x` was recorded with reduction mean") && Catch::Contains("now with sum"));
  reg.discard();
  CHECK(reg.pending().empty());
}

TEST_CASE("registry is safe to record from several threads", "[trainer][metrics]") {
  MetricsRegistry reg;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&reg] {
      for (int i = 0; i < 1000; ++i) reg.record_sum("count", 1.0);
    });
  for (auto& th : threads) th.join();
  CHECK(reg.commit(0).at("count") == 4000.0);
}

TEST_CASE("JSONL exporter: one object per step, appended, NaN as null, torn line cut", "[trainer][metrics]") {
  verl::test::TempDir dir("metrics_jsonl");
  const auto path = dir.path / "m.jsonl";
  {
    MetricsRegistry reg;
    reg.add_exporter(JsonlExporter(path.string()));
    reg.record("a/x", 0.5);
    reg.record("b\"q", 1e-5);  // quote escaped
    reg.commit(1);
    // Written at commit, before any flush or close: a crash after commit(1) keeps the line.
    CHECK(read_file(path) == "{\"step\":1,\"a/x\":0.5,\"b\\\"q\":1e-05}\n");
    reg.record("a/x", std::numeric_limits<double>::quiet_NaN());
    reg.record("c", -std::numeric_limits<double>::infinity());
    reg.commit(2);
  }
  {  // reopened in append mode: the run continues the file
    JsonlExporter again(path.string());
    again.write(3, {{"a/x", 2.0}});
  }
  auto lines = lines_of(read_file(path));
  REQUIRE(lines.size() == 3);
  CHECK(lines[1] == "{\"step\":2,\"a/x\":null,\"c\":null}");
  for (const auto& l : lines) CHECK(nlohmann::json::parse(l).is_object());
  CHECK(nlohmann::json::parse(lines[2])["a/x"].get<double>() == 2.0);

  // A machine crash mid-write leaves a torn last line: opening cuts it, the new line starts clean.
  {
    std::ofstream torn(path, std::ios::app | std::ios::binary);
    torn << "{\"step\":4,\"a/x\":0.";
  }
  {
    JsonlExporter after(path.string(), {.fsync_each_step = true});
    after.write(4, {{"a/x", 4.0}});
  }
  lines = lines_of(read_file(path));
  REQUIRE(lines.size() == 4);
  CHECK(lines[3] == "{\"step\":4,\"a/x\":4.0}");
  {  // a file that is one torn line becomes empty
    std::ofstream torn(dir.path / "t.jsonl", std::ios::binary);
    torn << "{\"st";
  }
  { JsonlExporter cut((dir.path / "t.jsonl").string()); }
  CHECK(read_file(dir.path / "t.jsonl").empty());

  // Truncate mode and verl's FileLogger layout {"step", "data"}.
  {
    JsonlExporter verl_layout(path.string(), {.layout = JsonlOptions::Layout::verl, .append = false});
    verl_layout.write(5, {{"step", 1.0}, {"x", 0.25}});  // "step" is allowed inside "data"
  }
  CHECK(read_file(path) == "{\"step\":5,\"data\":{\"step\":1.0,\"x\":0.25}}\n");

  CHECK_THAT(error_of<verl::ConfigError>([] { (void)JsonlExporter::format(1, {{"step", 1.0}}); }),
             Catch::Contains("a metric named `step` collides"));
  const auto bad = (dir.path / "no_such_dir" / "m.jsonl").string();
  CHECK_THAT(error_of<verl::InputError>([&] { JsonlExporter e(bad); }),
             Catch::Contains("cannot open " + bad) && Catch::Contains("No such file"));
}

// ---------------------------------------------------------------------------------------------------------
// verl's data / timing / throughput / validation metrics

TEST_CASE("compute_data_metrics matches verl 0.7.1 on random batches", "[trainer][metrics][golden]") {
  int n = 0;
  for (const auto& c : golden().cases) {
    if (!c.name.starts_with("data/")) continue;
    INFO(c.name);
    ++n;
    DataMetricsInputs in{.token_level_scores = c.input("token_level_scores"),
                         .token_level_rewards = c.input("token_level_rewards"),
                         .advantages = c.input("advantages"),
                         .returns = c.input("returns"),
                         .values = std::nullopt,
                         .response_mask = c.input("response_mask"),
                         .attention_mask = c.input("attention_mask")};
    const bool critic = c.config["use_critic"].get<bool>();
    if (critic) in.values = c.input("values");
    check_metrics(compute_data_metrics(in), c.config["metrics"], 0);
    check_metrics(compute_data_metrics(in, critic), c.config["metrics"], 0);
  }
  CHECK(n == 5);
}

TEST_CASE("compute_data_metrics: hand-worked batch and errors", "[trainer][metrics]") {
  // B=2, P=2, R=3. Row 0: prompt 1 token, response 3 (clipped); row 1: prompt 2 (full), response 0 (aborted).
  const auto amask = torch::tensor({{0, 1, 1, 1, 1}, {1, 1, 0, 0, 0}}, torch::kLong);
  const auto rmask = amask.narrow(1, 2, 3);
  const auto scores = torch::tensor({{0.f, 0.f, 2.f}, {0.f, 0.f, 0.f}});
  DataMetricsInputs in{.token_level_scores = scores, .token_level_rewards = scores, .advantages = scores,
                       .returns = scores, .values = std::nullopt, .response_mask = rmask, .attention_mask = amask};
  const auto m = compute_data_metrics(in);
  CHECK(m.at("critic/score/mean") == 2.0);          // only the non-aborted row
  CHECK(m.at("critic/advantages/mean") == Approx(2.0 / 3));  // over the 3 response tokens of row 0
  CHECK(m.at("response_length/mean") == 1.5);       // (3 + 0) / 2
  CHECK(m.at("response_length/clip_ratio") == 0.5); // row 0 has R = 3 tokens
  CHECK(m.at("response_length_non_aborted/mean") == 3.0);
  CHECK(m.at("response/aborted_ratio") == 0.5);
  CHECK(m.at("prompt_length/mean") == 1.5);
  CHECK(m.at("prompt_length/clip_ratio") == 0.5);   // row 1 fills P = 2
  CHECK(!m.contains("critic/values/mean"));

  auto all_aborted = in;
  all_aborted.attention_mask = torch::tensor({{1, 1, 0, 0, 0}, {1, 1, 0, 0, 0}}, torch::kLong);
  CHECK_THAT(error_of<verl::InputError>([&] { (void)compute_data_metrics(all_aborted); }),
             Catch::Contains("all 2 samples are aborted"));
  auto wrong = in;
  wrong.returns = torch::zeros({2, 4});
  CHECK_THAT(error_of<verl::ShapeError>([&] { (void)compute_data_metrics(wrong); }),
             Catch::Contains("`returns` has shape (2,4), expected (B,R) = (2,3)"));
  CHECK_THAT(error_of<verl::ConfigError>([&] { (void)compute_data_metrics(in, true); }),
             Catch::Contains("use_critic is true but `values` is absent"));
  auto narrow_mask = in;
  narrow_mask.attention_mask = torch::ones({2, 2}, torch::kLong);
  CHECK_THAT(error_of<verl::ShapeError>([&] { (void)compute_data_metrics(narrow_mask); }),
             Catch::Contains("response width 3 must be in [1, T] with T = 2"));
}

TEST_CASE("timing and throughput metrics match verl 0.7.1", "[trainer][metrics][golden]") {
  int n = 0;
  for (const auto& c : golden().cases) {
    if (!c.name.starts_with("timing/")) continue;
    INFO(c.name);
    ++n;
    std::map<std::string, double> raw;
    for (const auto& [k, v] : c.config["timing_raw"].items()) raw[k] = v.get<double>();
    const auto& amask = c.input("attention_mask");
    const auto width = c.config["response_width"].get<std::int64_t>();
    check_metrics(compute_timing_metrics(raw, token_counts(amask, width)), c.config["timing_metrics"], 0);
    check_metrics(compute_throughout_metrics(raw, global_token_num(amask), c.config["n_gpus"].get<std::int64_t>()),
                  c.config["throughput_metrics"], 0);
  }
  CHECK(n == 5);
  const std::map<std::string, double> no_step{{"gen", 1.0}};
  CHECK_THAT(error_of<verl::InputError>([&] { (void)compute_throughout_metrics(no_step, 10, 1); }),
             Catch::Contains("no `step` section"));
  CHECK_THAT(error_of<verl::InputError>([&] { (void)compute_timing_metrics(no_step, TokenCounts{5, 0}); }),
             Catch::Contains("section `gen` is normalised per token but the batch has 0"));
}

TEST_CASE("validation metrics per data source match verl 0.7.1 (mean@n, std@n)", "[trainer][metrics][golden]") {
  for (const char* name : {"validation/acc_and_reward", "validation/reward_only"}) {
    INFO(name);
    const auto& c = golden_case(name);
    const auto sources = c.config["data_sources"].get<std::vector<std::string>>();
    const auto uids = c.config["uids"].get<std::vector<std::string>>();
    const auto infos = c.config["infos"].get<std::map<std::string, std::vector<double>>>();
    // verl's bootstrap estimates (best@k, worst@k, maj@k) are not computed: compare everything else.
    nlohmann::json want = nlohmann::json::object();
    for (const auto& [k, v] : c.config["metrics"].items())
      if (k.find("/best@") == std::string::npos && k.find("/worst@") == std::string::npos &&
          k.find("/maj@") == std::string::npos)
        want[k] = v;
    CHECK(want.size() == (std::string(name) == "validation/reward_only" ? 7u : 14u));
    check_metrics(validation_metrics(sources, uids, infos), want, 1e-12);  // numpy's pairwise sums: last-bit
  }
  CHECK_THAT(error_of<verl::InputError>([] { (void)validation_metrics({"a", "b"}, {"u", "u"}, {{"reward", {1.0}}}); }),
             Catch::Contains("variable `reward` has 1 values for 2 samples"));
}

// ---------------------------------------------------------------------------------------------------------
// Timers

TEST_CASE("Timings accumulate sections like verl's marked_timer", "[trainer][metrics]") {
  Timings t;
  t.add("gen", 1.5);
  t.add("gen", 0.25);  // a section timed twice in a step adds up
  const int r = t.time("reward", [] { return 42; });
  CHECK(r == 42);
  {
    auto scope = t.scope("adv");
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  CHECK(t.seconds("gen") == 1.75);
  CHECK(t.seconds("adv") >= 0.02);
  CHECK(t.seconds("adv") < 5.0);
  CHECK(t.seconds("reward") >= 0.0);
  const auto m = t.metrics();
  CHECK(m.size() == 3);
  CHECK(m.at("timing_s/gen") == 1.75);
  CHECK(m.contains("timing_s/reward"));
  // A stopped timer records once.
  auto s = t.scope("x");
  const double first = s.stop();
  CHECK(s.stop() == 0.0);
  CHECK(t.seconds("x") == first);
  t.clear();
  CHECK(t.raw().empty());
  CHECK_THAT(error_of<verl::ConfigError>([&] { auto e = t.scope(""); }), Catch::Contains("empty section name"));
}

// ---------------------------------------------------------------------------------------------------------
// Progress bar

TEST_CASE("progress line matches tqdm's format_meter", "[trainer][metrics][golden]") {
  const auto& c = golden_case("progress/format_meter");
  for (const auto& row : c.config["rows"]) {
    ProgressState s{.n = row["n"].get<std::int64_t>(), .total = row["total"].get<std::int64_t>(),
                    .elapsed_s = row["elapsed"].get<double>(), .desc = row["prefix"].get<std::string>(),
                    .postfix = row["postfix"].get<std::string>(), .ascii = row["ascii"].get<bool>(),
                    .ncols = row["ncols"].get<int>()};
    INFO(row.dump());
    CHECK(format_meter(s) == row["out"].get<std::string>());
  }
  for (const auto& row : c.config["format_num"]) CHECK(format_num(row["x"].get<double>()) == row["out"].get<std::string>());
  for (const auto& row : c.config["format_interval"])
    CHECK(format_interval(row["t"].get<double>()) == row["out"].get<std::string>());
  CHECK(format_postfix({{"loss", 0.25}, {"kl", 1e-5}}) == "kl=1e-5, loss=0.25");
}

TEST_CASE("progress bar redraws in place, throttles, ends with a newline, is silent off a terminal",
          "[trainer][metrics]") {
  verl::test::TempDir dir("progress");
  const auto path = dir.path / "bar.txt";
  {
    std::FILE* f = std::fopen(path.c_str(), "w");
    REQUIRE(f != nullptr);
    {
      ProgressBar bar({.desc = "rollout", .total = 1000, .min_interval_s = 3600,
                       .show = ProgressBarOptions::Show::always, .stream = f});
      CHECK(bar.enabled());
      std::vector<std::thread> threads;
      for (int t = 0; t < 4; ++t)
        threads.emplace_back([&bar] {
          for (int i = 0; i < 250; ++i) bar.advance();
        });
      for (auto& th : threads) th.join();
      CHECK(bar.n() == 1000);
      bar.set_postfix(MetricMap{{"reward", 0.5}});
    }  // destructor: final line and newline
    std::fclose(f);
  }
  const auto out = read_file(path);
  // Drawn at start, once when full (the interval is an hour, so no other advance draws), at set_postfix and
  // at close: four '\r' redraws.
  CHECK(std::count(out.begin(), out.end(), '\r') == 4);
  CHECK(out.ends_with("\n"));
  CHECK(out.find("rollout: 100%|\u2588\u2588\u2588\u2588\u2588\u2588\u2588\u2588\u2588\u2588| 1000/1000") !=
        std::string::npos);
  CHECK(out.find(", reward=0.5]") != std::string::npos);
  CHECK(out.starts_with("\rrollout:   0%|          | 0/1000 [00:00<?, ?it/s]"));

  // Without throttling every advance redraws: start + 5 advances + close = 7 lines, the last one full.
  const auto every_path = dir.path / "every.txt";
  std::FILE* e = std::fopen(every_path.c_str(), "w");
  REQUIRE(e != nullptr);
  {
    ProgressBar every({.desc = "u", .total = 5, .min_interval_s = 0, .show = ProgressBarOptions::Show::always,
                       .stream = e, .ascii = true});
    for (int i = 0; i < 5; ++i) every.advance();
  }
  std::fclose(e);
  const auto every_out = read_file(every_path);
  CHECK(std::count(every_out.begin(), every_out.end(), '\r') == 7);
  CHECK(every_out.find("\ru:  40%|####      | 2/5 [") != std::string::npos);
  CHECK(every_out.find("\ru: 100%|##########| 5/5 [") != std::string::npos);

  // A file is not a terminal: the default bar stays silent.
  const auto quiet_path = dir.path / "quiet.txt";
  std::FILE* q = std::fopen(quiet_path.c_str(), "w");
  REQUIRE(q != nullptr);
  {
    ProgressBar quiet({.desc = "update", .total = 3, .stream = q});
    CHECK(!quiet.enabled());
    quiet.advance(3);
    CHECK(quiet.render().starts_with("update: 100%|"));
  }
  std::fclose(q);
  CHECK(read_file(quiet_path).empty());
}

// ---------------------------------------------------------------------------------------------------------
// SVG plots

TEST_CASE("SVG: well-formed, polyline points map the data ranges onto the axes (hand-derived)",
          "[trainer][metrics]") {
  // 800 x 300, no title: plot area x in [70, 780], y in [30, 255]. x = 0..10 -> ticks 0,2,...,10 (step 2),
  // y = 0..1 -> ticks 0,0.2,...,1 (step 0.2), both ranges already on tick multiples. So
  // (0,0) -> (70, 255), (5,0.5) -> (70 + 0.5*710, 255 - 0.5*225) = (425, 142.5), (10,1) -> (780, 30);
  // the NaN at x = 7 is skipped.
  const double nan = std::numeric_limits<double>::quiet_NaN();
  Panel p{"reward <&> kl", {Series{"a<b&c", {0, 5, 7, 10}, {0, 0.5, nan, 1}}}};
  const auto svg = render_svg({p});
  const auto elements = xml_elements(svg);
  REQUIRE(!elements.empty());
  CHECK(elements.front() == "svg");
  CHECK(std::count(elements.begin(), elements.end(), "polyline") == 1);
  CHECK(polyline_points(svg) == std::vector<std::string>{"70.00,255.00 425.00,142.50 780.00,30.00"});
  CHECK(svg.find(">reward &lt;&amp;&gt; kl</text>") != std::string::npos);
  CHECK(svg.find("data-name=\"a&lt;b&amp;c\"") != std::string::npos);
  for (const char* label : {">0<", ">2<", ">10<", ">0.0<", ">0.2<", ">0.6<", ">1.0<"})
    CHECK(svg.find(label) != std::string::npos);
  CHECK(svg.find(">0.6000") == std::string::npos);  // tick labels without rounding noise

  // Two panels under a 30 px title: panel 0's area is y in [60, 285], panel 1's y in [360, 585]. A range off
  // the tick grid widens to it: y in [0.45, 0.95] -> step 0.1 (raw 0.5/5), axis [0.4, 1.0]; x in [1, 3] ->
  // step 0.5 (raw 0.4 -> 0.5), axis [1, 3]. (1, 0.45) -> (70, 585 - (0.05/0.6)*225) = (70, 566.25);
  // (3, 0.95) -> (780, 585 - (0.55/0.6)*225) = (780, 378.75).
  Panel q{"kl", {Series{"kl", {1, 3}, {0.45, 0.95}}, Series{"empty", {}, {}}}};
  const auto two = render_svg({p, q}, {.title = "run"});
  xml_elements(two);
  const auto pts = polyline_points(two);
  REQUIRE(pts.size() == 3);
  CHECK(pts[0] == "70.00,285.00 425.00,172.50 780.00,60.00");
  CHECK(pts[1] == "70.00,566.25 780.00,378.75");
  CHECK(pts[2].empty());
  // A panel with no finite value says so instead of failing.
  const auto none = render_svg({Panel{"nothing", {Series{"x", {1}, {nan}}}}});
  xml_elements(none);
  CHECK(none.find(">no data</text>") != std::string::npos);
  CHECK_THAT(error_of<verl::InputError>([] { (void)render_svg({Panel{"w", {Series{"s", {0, 1}, {-1e308, 1e308}}}}}); }),
             Catch::Contains("is too wide to draw"));
  CHECK_THAT(error_of<verl::InputError>([] { (void)render_svg({Panel{"p", {Series{"s", {1, 2}, {1}}}}}); }),
             Catch::Contains("series `s` has 2 steps and 1 values"));
}

TEST_CASE("plot_metrics_svg from a JsonlExporter file: missing and NaN steps skipped, written atomically",
          "[trainer][metrics]") {
  verl::test::TempDir dir("svg_plot");
  const auto jsonl = dir.path / "metrics.jsonl";
  {
    MetricsRegistry reg;
    reg.add_exporter(JsonlExporter(jsonl.string()));
    for (int step = 1; step <= 5; ++step) {
      reg.record(mn::critic_score_mean, step == 3 ? std::nan("") : 0.1 * step);  // NaN at step 3
      if (step % 2 == 0) reg.record(mn::actor_ppo_kl, 0.01 * step);             // only even steps
      reg.commit(step);
    }
  }
  const auto out = dir.path / "plot.svg";
  plot_metrics_svg(jsonl, {std::string(mn::critic_score_mean), std::string(mn::actor_ppo_kl)}, out);
  const auto svg = read_file(out);
  xml_elements(svg);
  const auto pts = polyline_points(svg);
  REQUIRE(pts.size() == 2);
  CHECK(std::count(pts[0].begin(), pts[0].end(), ',') == 4);  // steps 1, 2, 4, 5
  CHECK(std::count(pts[1].begin(), pts[1].end(), ',') == 2);  // steps 2, 4
  std::size_t files = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir.path)) files += e.is_regular_file();
  CHECK(files == 2);  // the JSONL and the SVG; no temporary left behind

  // series read back, and verl's {"step","data"} layout reads the same
  const auto series = read_metrics_jsonl(jsonl, {"actor/ppo_kl"});
  CHECK(series[0].x == std::vector<double>{2, 4});
  {
    JsonlExporter verl_layout((dir.path / "verl.jsonl").string(), {.layout = JsonlOptions::Layout::verl});
    verl_layout.write(2, {{"actor/ppo_kl", 0.02}});
    verl_layout.write(4, {{"actor/ppo_kl", 0.04}});
  }
  const auto from_verl = read_metrics_jsonl(dir.path / "verl.jsonl", {"actor/ppo_kl"});
  CHECK(from_verl[0].x == series[0].x);
  CHECK(from_verl[0].y == series[0].y);

  // grouped panels
  plot_panels_svg(jsonl, {PanelSpec{"", {"critic/score/mean", "actor/ppo_kl"}}}, out);
  CHECK(read_file(out).find(">critic/score/mean, actor/ppo_kl</text>") != std::string::npos);

  // malformed input names the file and line
  {
    std::ofstream bad(dir.path / "bad.jsonl");
    bad << "{\"step\":1,\"x\":1}\n\nnot json\n";
  }
  CHECK_THAT(error_of<verl::InputError>([&] { (void)read_metrics_jsonl(dir.path / "bad.jsonl", {"x"}); }),
             Catch::Contains("bad.jsonl:3 is not valid JSON"));
  {
    std::ofstream bad(dir.path / "bad2.jsonl");
    bad << "{\"step\":1,\"x\":\"high\"}\n";
  }
  CHECK_THAT(error_of<verl::InputError>([&] { (void)read_metrics_jsonl(dir.path / "bad2.jsonl", {"x"}); }),
             Catch::Contains("bad2.jsonl:1: metric `x` is string, expected a number or null"));
  {
    std::ofstream bad(dir.path / "bad3.jsonl");
    bad << "[1,2]\n";
  }
  CHECK_THAT(error_of<verl::InputError>([&] { (void)read_metrics_jsonl(dir.path / "bad3.jsonl", {"x"}); }),
             Catch::Contains("bad3.jsonl:1 is not a JSON object with a numeric \"step\""));
}

}  // namespace test_metrics
