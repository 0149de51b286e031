// verl::data (include/verl/data/): JSONL reading and its skip policy, verl 0.7.1's RL row schema
// (verl/utils/dataset/rl_dataset.py: chat template with generation prompt, filter_overlong_prompts, truncation
// left/right/middle/error), the DataProvider (torch RandomSampler order, drop_last, prefetch, exact resume,
// worker errors, shutdown), and the DPO/KTO/SFT datasets against TRL 0.19.1's tokenize_row / _tokenize /
// _process_tokens and verl's MultiTurnSFTDataset. Expected values are derived by hand below with a byte
// tokenizer (id = byte + 2, pad 0, eos 1), one case uses the tiny_bpe tokenizer fixture.
#include "catch_torch.hpp"

#include "error_of.hpp"
#include "temp_dir.hpp"

#include "verl/data/data_provider.hpp"
#include "verl/data/jsonl.hpp"
#include "verl/data/preference_dataset.hpp"
#include "verl/data/rl_dataset.hpp"
#include "verl/tokenizers/batch_encode.hpp"
#include "verl/tokenizers/hf_tokenizer.hpp"

#include <ATen/CPUGeneratorImpl.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace {

using Ids = std::vector<std::int64_t>;
using Catch::Matchers::Contains;
using verl::test::error_of;
namespace data = verl::data;

// Byte tokenizer: id = byte + 2; 0 = pad, 1 = eos. Hand-derivable ids: 'a' = 99, 'b' = 100, ...
struct ByteTokenizer {
  [[nodiscard]] Ids encode(const std::string& text) const {
    Ids ids;
    for (unsigned char c : text) ids.push_back(static_cast<std::int64_t>(c) + 2);
    return ids;
  }
  [[nodiscard]] std::string decode(const Ids& ids) const {
    std::string s;
    for (auto id : ids)
      if (id >= 2) s += static_cast<char>(id - 2);
    return s;
  }
  [[nodiscard]] std::int64_t eos_token_id() const { return 1; }
  [[nodiscard]] std::int64_t pad_token_id() const { return 0; }
  [[nodiscard]] std::int64_t vocab_size() const { return 258; }
};
static_assert(verl::check_tokenizer<ByteTokenizer>());

Ids ids_of(const std::string& s) { return ByteTokenizer{}.encode(s); }

std::filesystem::path write_file(const verl::test::TempDir& dir, const std::string& name, const std::string& text) {
  const auto p = dir.path / name;
  std::ofstream(p, std::ios::binary) << text;
  return p;
}

Ids row_of(const at::Tensor& t, std::int64_t i) {
  const auto r = t[i].contiguous();
  return Ids(r.data_ptr<std::int64_t>(), r.data_ptr<std::int64_t>() + r.numel());
}

// A dataset whose batch is the list of its indices; collate can be made slow or to fail on one index.
struct IndexDataset {
  using Batch = std::vector<std::size_t>;
  std::size_t n = 10;
  std::optional<std::size_t> fail_on;
  std::chrono::milliseconds delay{0};
  mutable std::atomic<int> collates{0};

  [[nodiscard]] std::size_t size() const { return n; }
  [[nodiscard]] Batch collate(std::span<const std::size_t> idx) const {
    ++collates;
    if (delay.count() > 0) std::this_thread::sleep_for(delay);
    for (auto i : idx)
      if (fail_on && i == *fail_on) throw std::runtime_error("broken example " + std::to_string(i));
    return Batch(idx.begin(), idx.end());
  }
};
static_assert(data::BatchDataset<IndexDataset>);
static_assert(data::BatchDataset<data::RLDataset> && data::BatchDataset<data::DPODataset> &&
              data::BatchDataset<data::KTODataset> && data::BatchDataset<data::SFTDataset>);

std::vector<IndexDataset::Batch> take(data::DataProvider<IndexDataset>& p, std::size_t n) {
  std::vector<IndexDataset::Batch> out;
  for (std::size_t i = 0; i < n; ++i) out.push_back(p.next().value());
  return out;
}

// Runs `script` with the venv's Python (arguments appended); its stdout, or nullopt with a visible warning when
// there is no venv Python or the script fails (e.g. transformers missing).
std::optional<std::string> run_python(const verl::test::TempDir& dir, const std::string& script, const std::string& args = "") {
  const std::string python = std::string(VERL_GOLDEN_DIR) + "/../../.venv/bin/python";
  if (!std::filesystem::exists(python)) {
    WARN("no venv Python at " << python << ": the cross-check against the Python reference is skipped");
    return std::nullopt;
  }
  const auto file = write_file(dir, "check.py", script);
  std::FILE* pipe = popen((python + " " + file.string() + " " + args + " 2>&1").c_str(), "r");
  if (pipe == nullptr) return std::nullopt;
  std::string out;
  char buf[512];
  while (std::fgets(buf, sizeof buf, pipe)) out += buf;
  if (pclose(pipe) != 0) {
    WARN("the Python reference failed (torch/transformers/tokenizers not installed?): the cross-check is skipped\n" << out);
    return std::nullopt;
  }
  return out;
}

}  // namespace

TEST_CASE("read_jsonl: blank lines, errors with file:line and the parser's message, skip policy", "[data][jsonl]") {
  verl::test::TempDir dir("data");
  // A byte order mark before line 1, CRLF line ends, blank and whitespace-only lines.
  const auto file = write_file(dir, "rows.jsonl", "\xEF\xBB\xBF{\"a\": 1}\r\n\n   \r\n{\"a\": \n{\"a\": 2}\n[1]\n");
  const auto on_row = [](std::vector<int>& seen) {
    return [&seen](const nlohmann::json& row, const data::RowLocation&) {
      seen.push_back(data::detail::require_field(row, "a").get<int>());
    };
  };
  std::vector<int> seen;
  data::SkipReport report;
  const auto msg = error_of<verl::InputError>([&] { data::read_jsonl(file, data::SkipPolicy::error, report, on_row(seen)); });
  CHECK_THAT(msg, Contains(file.string() + ":4: invalid JSON (") && Contains("parse error"));

  seen.clear();
  const auto counts = data::read_jsonl(file, data::SkipPolicy::skip, report, on_row(seen));
  CHECK(seen == std::vector<int>{1, 2});
  CHECK(counts.lines == 4);  // lines 1, 4, 5, 6; 2 and 3 are blank
  CHECK(counts.accepted == 2);
  REQUIRE(report.skipped == 2);
  CHECK_THAT(report.first_reasons[0], Contains("rows.jsonl:4: invalid JSON"));
  CHECK_THAT(report.first_reasons[1], Contains("rows.jsonl:6: the row is a JSON array, expected a JSON object"));
  CHECK_THAT(report.summary(), Contains("skipped 2 malformed lines"));

  // Reasons beyond the first five are counted, not kept.
  std::string many;
  for (int i = 0; i < 8; ++i) many += "oops\n";
  data::SkipReport r2;
  data::read_jsonl(write_file(dir, "bad.jsonl", many), data::SkipPolicy::skip, r2, [](auto&&...) {});
  CHECK(r2.skipped == 8);
  CHECK(r2.first_reasons.size() == data::SkipReport::max_reasons);
  CHECK_THAT(error_of<verl::InputError>([&] { data::read_jsonl(dir.path / "none.jsonl", data::SkipPolicy::skip, r2, [](auto&&...) {}); }),
             Contains("cannot open") && Contains("none.jsonl"));
}

TEST_CASE("RLDataset: verl's row schema, chat template with generation prompt, ItemInfo", "[data][rl]") {
  verl::test::TempDir dir("data");
  const auto file = write_file(dir, "rl.jsonl",
      R"({"data_source": "gsm8k", "prompt": [{"role": "user", "content": "1+1?"}], "reward_model": {"style": "rule", "ground_truth": "2"}, "extra_info": {"index": 7}})" "\n"
      R"({"prompt": "raw text", "reward_model": {"ground_truth": 42}, "extra_info": null})" "\n");
  const ByteTokenizer tok;
  const auto ds = data::RLDataset::load(file, tok, {}, verl::chat::chatml);
  REQUIRE(ds.size() == 2);
  const std::string rendered = "<|im_start|>user\n1+1?<|im_end|>\n<|im_start|>assistant\n";
  CHECK(ds[0].info.prompt == rendered);
  CHECK(ds[0].prompt_ids == ids_of(rendered));
  CHECK(ds[0].info.data_source == "gsm8k");
  CHECK(ds[0].info.ground_truth == "2");
  CHECK(ds[0].info.extra_info == nlohmann::json{{"index", 7}});
  // A plain-string prompt is tokenised as it is; a non-string ground truth keeps its JSON text; null extra_info
  // becomes {} as verl's __getitem__ does.
  CHECK(ds[1].prompt_ids == ids_of("raw text"));
  CHECK(ds[1].info.ground_truth == "42");
  CHECK(ds[1].info.data_source.empty());
  CHECK(ds[1].info.extra_info == nlohmann::json::object());
  CHECK(ds.report().rows == 2);
  CHECK(ds.report().kept == 2);

  // Messages without a chat format: ConfigError (verl's apply_chat_template fails without a template).
  CHECK_THAT(error_of<verl::ConfigError>([&] { (void)data::RLDataset::load(file, tok, {}); }),
             Contains("holds chat messages but no chat format"));
  // prompt_key; a missing key names it with file:line.
  const auto q = write_file(dir, "q.jsonl", "{\"question\": \"xy\"}\n{\"prompt\": \"z\"}\n");
  CHECK(data::RLDataset::load(q, tok, {.prompt_key = "question", .skip_policy = data::SkipPolicy::skip})[0].prompt_ids ==
        ids_of("xy"));
  CHECK_THAT(error_of<verl::InputError>([&] { (void)data::RLDataset::load(q, tok, {}); }),
             Contains("q.jsonl:1: missing key \"prompt\""));
  const auto bad = write_file(dir, "bad.jsonl",
                              "{\"prompt\": [{\"role\": \"user\"}]}\n{\"prompt\": \"\"}\n{\"prompt\": \"ok\", \"reward_model\": 3}\n"
                              "{\"prompt\": \"fine\"}\n");
  CHECK_THAT(error_of<verl::InputError>([&] { (void)data::RLDataset::load(bad, tok, {}, verl::chat::chatml); }),
             Contains("bad.jsonl:1: \"prompt\"[0].content is missing"));
  const auto skipped = data::RLDataset::load(bad, tok, {.skip_policy = data::SkipPolicy::skip}, verl::chat::chatml);
  CHECK(skipped.size() == 1);
  CHECK(skipped.report().rows == 4);
  CHECK(skipped.report().skip.skipped == 3);
  // Rows rejected while reading come first, then those rejected after tokenisation (an empty prompt).
  CHECK_THAT(skipped.report().skip.first_reasons.at(1), Contains("bad.jsonl:3: \"reward_model\" is a JSON number"));
  CHECK_THAT(skipped.report().skip.first_reasons.at(2), Contains("bad.jsonl:2: \"prompt\" is empty after tokenisation"));
}

TEST_CASE("RLDataset: filter_overlong_prompts and truncation left/right/middle/error", "[data][rl]") {
  verl::test::TempDir dir("data");
  const auto file = write_file(dir, "len.jsonl", "{\"prompt\": \"abcdefgh\"}\n{\"prompt\": \"xyz\"}\n");
  const ByteTokenizer tok;
  const auto load = [&](data::RLDatasetOptions o) {
    o.max_prompt_length = 5;
    return data::RLDataset::load(file, tok, o);
  };
  // verl: left keeps the last 5, right the first 5, middle the first 5//2 = 2 and the last 5-2 = 3.
  CHECK(load({.truncation = data::Truncation::left})[0].prompt_ids == ids_of("defgh"));
  CHECK(load({.truncation = data::Truncation::right})[0].prompt_ids == ids_of("abcde"));
  CHECK(load({.truncation = data::Truncation::middle})[0].prompt_ids == ids_of("abfgh"));
  CHECK(load({.truncation = data::Truncation::middle}).report().truncated == 1);
  CHECK_THAT(error_of<verl::ConfigError>([&] { (void)load({}); }),
             Contains("len.jsonl:1: the prompt has 8 tokens, more than max_prompt_length = 5"));
  const auto filtered = load({.filter_overlong_prompts = true});
  REQUIRE(filtered.size() == 1);
  CHECK(filtered[0].prompt_ids == ids_of("xyz"));
  CHECK(filtered.report().filtered_overlong == 1);
  CHECK_THAT(filtered.report().summary(5), Contains("filtered 1 longer than 5 tokens"));
  CHECK(data::parse_truncation("middle") == data::Truncation::middle);
  CHECK_THAT(error_of<verl::ConfigError>([] { (void)data::parse_truncation("both"); }), Contains("\"both\""));
  // Threads tokenise to the same result.
  const auto big = write_file(dir, "big.jsonl", [] {
    std::string s;
    for (int i = 0; i < 50; ++i) s += "{\"prompt\": \"p" + std::to_string(i) + "\"}\n";
    return s;
  }());
  const auto one = data::RLDataset::load(big, tok, {});
  const auto three = data::RLDataset::load(big, tok, {.tokenize_threads = 3});
  for (std::size_t i = 0; i < 50; ++i) CHECK(three[i].prompt_ids == one[i].prompt_ids);
}

TEST_CASE("RLDataset::collate: verl's left-padded prompt layout", "[data][rl]") {
  std::vector<data::RLExample> ex(3);
  ex[0].prompt_ids = {5, 6, 7};
  ex[1].prompt_ids = {8};
  ex[2].prompt_ids = {9, 10};
  ex[1].info.ground_truth = "g1";
  const auto ds = data::RLDataset::from_examples(ex, /*pad_token_id=*/3);
  const std::size_t idx[] = {1, 0};
  const auto b = ds.collate(idx);
  b.prompts.validate();
  // Rows: [pad pad 8] and [5 6 7]; position ids clip(cumsum(mask) - 1, 0).
  CHECK(row_of(b.prompts.input_ids, 0) == Ids{3, 3, 8});
  CHECK(row_of(b.prompts.input_ids, 1) == Ids{5, 6, 7});
  CHECK(row_of(b.prompts.attention_mask, 0) == Ids{0, 0, 1});
  CHECK(row_of(b.prompts.position_ids, 0) == Ids{0, 0, 0});
  CHECK(row_of(b.prompts.position_ids, 1) == Ids{0, 1, 2});
  CHECK(b.items.at(0).ground_truth == "g1");
  CHECK(torch::equal(b.prompts.position_ids, verl::position_ids_from_mask(b.prompts.attention_mask)));
  const auto fixed = data::RLDataset::from_examples(ex, 3, {.max_prompt_length = 4, .pad_to_max_prompt_length = true});
  const std::size_t one[] = {2};
  const auto f = fixed.collate(one);
  CHECK(row_of(f.prompts.input_ids, 0) == Ids{3, 3, 9, 10});
  CHECK(row_of(f.prompts.position_ids, 0) == Ids{0, 0, 0, 1});
}

TEST_CASE("RLDataset with the tiny_bpe tokenizer fixture", "[data][rl]") {
  const auto tok = verl::HFTokenizer::from_directory(std::string(VERL_GOLDEN_DIR) + "/../fixtures/tokenizers/tiny_bpe");
  verl::test::TempDir dir("data");
  const auto file = write_file(dir, "bpe.jsonl", "{\"prompt\": \"abc ab\"}\n{\"prompt\": \"ab\"}\n");
  const auto ds = data::RLDataset::load(file, tok, {});
  // tiny_bpe (tests/unit/tokenizers/test_tokenizers.cpp): "abc" -> [5], " ab" -> [3, 4]... " a" merges first
  // to Ġa (rank 3) only when b does not merge with a: (a,b) rank 1 wins, so " ab" -> Ġ, ab = [3, 4].
  CHECK(ds[0].prompt_ids == tok.encode("abc ab"));
  CHECK(ds[1].prompt_ids == Ids{4});
  const std::size_t idx[] = {0, 1};
  const auto b = ds.collate(idx);
  const auto n = static_cast<std::int64_t>(ds[0].prompt_ids.size());
  REQUIRE(b.prompts.input_ids.size(1) == n);
  CHECK(b.prompts.input_ids[1][0].item<std::int64_t>() == tok.pad_token_id());  // <|pad|> = 9
  CHECK(tok.pad_token_id() == 9);
  CHECK(b.prompts.input_ids[1][n - 1].item<std::int64_t>() == 4);
}

TEST_CASE("DataProvider: seeded order is torch's RandomSampler (randperm per epoch), drop_last", "[data][provider]") {
  auto ds = std::make_shared<IndexDataset>();
  data::DataProvider<IndexDataset> p(ds, {.batch_size = 4, .seed = 7, .num_workers = 0});
  CHECK(p.batches_per_epoch() == 2);  // 10 // 4, the last 2 examples dropped
  // Independent recomputation: epoch e is the (e+1)-th randperm(10) of a generator seeded with 7.
  auto gen = at::make_generator<at::CPUGeneratorImpl>(7);
  for (std::size_t epoch = 0; epoch < 3; ++epoch) {
    const auto perm = at::randperm(10, gen);
    for (std::size_t b = 0; b < 2; ++b) {
      const auto batch = p.next().value();
      REQUIRE(batch.size() == 4);
      for (std::size_t j = 0; j < 4; ++j) CHECK(batch[j] == static_cast<std::size_t>(perm[b * 4 + j].item<std::int64_t>()));
    }
  }
  // Python torch (when the venv has it): the same generator, the same permutations.
  verl::test::TempDir dir("data");
  if (const auto out = run_python(dir, "import torch\ng = torch.Generator()\ng.manual_seed(7)\n"
                                       "print(' '.join(str(i) for _ in range(2) for i in torch.randperm(10, generator=g).tolist()))\n")) {
    std::istringstream in(*out);
    std::vector<std::size_t> got;
    for (std::size_t v; in >> v;) got.push_back(v);
    REQUIRE(got.size() == 20);
    for (std::size_t e = 0; e < 2; ++e)
      for (std::size_t b = 0; b < 2; ++b)
        for (std::size_t j = 0; j < 4; ++j) CHECK(p.batch_indices(e, b)[j] == got[e * 10 + b * 4 + j]);
  }
  // Same seed, same order; another seed, another; no shuffle is 0..N-1; drop_last = false keeps the tail.
  data::DataProvider<IndexDataset> same(ds, {.batch_size = 4, .seed = 7});
  data::DataProvider<IndexDataset> other(ds, {.batch_size = 4, .seed = 8});
  CHECK(same.batch_indices(1, 1) == p.batch_indices(1, 1));
  CHECK(other.batch_indices(0, 0) != p.batch_indices(0, 0));
  CHECK(p.batch_indices(0, 0) != p.batch_indices(1, 0));
  data::DataProvider<IndexDataset> seq(ds, {.batch_size = 4, .shuffle = false, .drop_last = false, .epochs = 1});
  CHECK(take(seq, 3) == std::vector<IndexDataset::Batch>{{0, 1, 2, 3}, {4, 5, 6, 7}, {8, 9}});
  CHECK_FALSE(seq.next().has_value());
  CHECK_THAT(error_of<verl::ConfigError>([&] { data::DataProvider<IndexDataset> x(ds, {.batch_size = 11}); }),
             Contains("10 examples, fewer than batch_size = 11 with drop_last"));
}

TEST_CASE("DataProvider: exact resume across an epoch boundary while prefetch runs ahead", "[data][provider]") {
  auto ds = std::make_shared<IndexDataset>();
  ds->n = 7;  // batch 2, drop_last: 3 batches per epoch
  const data::DataProviderOptions opt{.batch_size = 2, .seed = 3, .num_workers = 2, .prefetch_factor = 3};
  data::DataProvider<IndexDataset> reference(ds, {.batch_size = 2, .seed = 3, .num_workers = 0});
  const auto all = take(reference, 12);  // 4 epochs, built synchronously
  for (std::size_t stop_at : {0u, 2u, 3u, 5u}) {
    INFO("stopped after " << stop_at << " batches");
    nlohmann::json saved;
    {
      data::DataProvider<IndexDataset> first(ds, opt);
      CHECK(take(first, stop_at) == std::vector<IndexDataset::Batch>(all.begin(), all.begin() + stop_at));
      while (first.stats().batches_produced < stop_at + 3) std::this_thread::yield();  // workers ran ahead
      saved = first.state();
      CHECK(saved["epoch"] == stop_at / 3);
      CHECK(saved["batches_consumed"] == stop_at % 3);
    }
    data::DataProvider<IndexDataset> resumed(ds, opt, nlohmann::json::parse(saved.dump()));
    CHECK(take(resumed, 12 - stop_at) == std::vector<IndexDataset::Batch>(all.begin() + stop_at, all.end()));
  }
  // A state from another configuration is refused, naming the field.
  data::DataProvider<IndexDataset> p(ds, opt);
  const auto s = p.state();
  CHECK_THAT(error_of<verl::ConfigError>([&] { data::DataProvider<IndexDataset> x(ds, {.batch_size = 3, .seed = 3}, s); }),
             Contains("batch_size = 2") && Contains("batch_size = 3"));
  CHECK_THAT(error_of<verl::ConfigError>([&] { data::DataProvider<IndexDataset> x(ds, {.batch_size = 2, .seed = 4}, s); }),
             Contains("seed"));
  CHECK_NOTHROW(data::DataProvider<IndexDataset>(ds, opt, s));  // in memory (signed integers) as well as parsed
  auto v2 = s;
  v2["version"] = 2;
  CHECK_THAT(error_of<verl::ConfigError>([&] { data::DataProvider<IndexDataset> x(ds, opt, v2); }), Contains("version = 2"));
  auto bad = s;
  bad["batches_consumed"] = 3;
  CHECK_THAT(error_of<verl::ConfigError>([&] { data::DataProvider<IndexDataset> x(ds, opt, bad); }),
             Contains("batches_consumed < 3"));
}

TEST_CASE("DataProvider: a worker's exception surfaces in next() and the position stays on that batch", "[data][provider]") {
  auto ds = std::make_shared<IndexDataset>();
  ds->fail_on = 5;  // no shuffle, batch 4: batch 1 holds 4..7
  data::DataProvider<IndexDataset> p(ds, {.batch_size = 4, .shuffle = false, .drop_last = false, .num_workers = 3});
  CHECK(p.next().value() == IndexDataset::Batch{0, 1, 2, 3});
  CHECK_THROWS_WITH(p.next(), "broken example 5");
  CHECK_THROWS_WITH(p.next(), "broken example 5");
  CHECK(p.state()["batches_consumed"] == 1);
}

TEST_CASE("DataProvider: destructor with a full queue and a batch being built, and stats", "[data][provider]") {
  auto ds = std::make_shared<IndexDataset>();
  ds->delay = std::chrono::milliseconds(30);
  const auto start = std::chrono::steady_clock::now();
  {
    data::DataProvider<IndexDataset> p(ds, {.batch_size = 2, .num_workers = 2, .prefetch_factor = 2});
    while (p.stats().batches_produced < 2) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    CHECK(p.stats().batches_produced == 2);  // bounded: no more than prefetch_factor ahead
    CHECK(p.stats().batches_consumed == 0);
  }  // joins here
  {
    data::DataProvider<IndexDataset> p(ds, {.batch_size = 2, .num_workers = 2, .prefetch_factor = 4});
    std::this_thread::sleep_for(std::chrono::milliseconds(5));  // workers inside collate
  }
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(5));

  data::DataProvider<IndexDataset> p(ds, {.batch_size = 2, .num_workers = 0});
  (void)take(p, 2);
  const auto s = p.stats();
  CHECK(s.batches_consumed == 2);
  CHECK(s.batches_produced == 2);
  CHECK(s.wait_seconds >= 0.05);  // two synchronous builds of 30 ms
  CHECK(s.lines_skipped == 0);
}

TEST_CASE("DataProvider over RLDataset: PromptBatch tensors and lines_skipped", "[data][provider]") {
  verl::test::TempDir dir("data");
  const auto file = write_file(dir, "p.jsonl", "{\"prompt\": \"ab\"}\nnot json\n{\"prompt\": \"cde\"}\n{\"prompt\": \"f\"}\n");
  auto ds = std::make_shared<const data::RLDataset>(
      data::RLDataset::load(file, ByteTokenizer{}, {.skip_policy = data::SkipPolicy::skip}));
  data::DataProvider p(ds, {.batch_size = 3, .shuffle = false});  // deduces DataProvider<RLDataset>
  static_assert(std::is_same_v<decltype(p), data::DataProvider<data::RLDataset>>);
  const auto b = p.next().value();
  CHECK(b.indices == std::vector<std::size_t>{0, 1, 2});
  CHECK(row_of(b.prompts.input_ids, 0) == Ids{0, ids_of("a")[0], ids_of("b")[0]});
  CHECK(row_of(b.prompts.input_ids, 1) == ids_of("cde"));
  CHECK(b.items.at(2).prompt == "f");
  CHECK(p.stats().lines_skipped == 1);
}

TEST_CASE("DPODataset: TRL's tokenize_row, max_length keep_end/keep_start, masks, conversational", "[data][dpo]") {
  verl::test::TempDir dir("data");
  const auto file = write_file(dir, "dpo.jsonl", R"({"prompt": "abc", "chosen": "de", "rejected": "f"})" "\n");
  const ByteTokenizer tok;
  const Ids a = ids_of("a"), b = ids_of("b"), c = ids_of("c"), d = ids_of("d"), e = ids_of("e"), f = ids_of("f");
  const auto ds = data::DPODataset::load(file, tok, {});
  // chosen = prompt + "de" + eos, prompt_length 3; rejected = prompt + "f" + eos.
  CHECK(ds[0].chosen == data::TokenizedSequence{{a[0], b[0], c[0], d[0], e[0], 1}, 3});
  CHECK(ds[0].rejected == data::TokenizedSequence{{a[0], b[0], c[0], f[0], 1}, 3});
  const std::size_t idx[] = {0};
  const auto batch = ds.collate(idx);
  batch.chosen.validate();
  // P = 3, R = max(3, 2) = 3: rejected is right-padded by one.
  CHECK(batch.chosen.response_length == 3);
  CHECK(row_of(batch.rejected.input_ids, 0) == Ids{a[0], b[0], c[0], f[0], 1, 0});
  CHECK(row_of(batch.chosen_mask, 0) == Ids{1, 1, 1});
  CHECK(row_of(batch.rejected_mask, 0) == Ids{1, 1, 0});
  CHECK(row_of(batch.rejected.position_ids, 0) == Ids{0, 1, 2, 3, 4, 4});
  CHECK(torch::equal(batch.chosen.position_ids, verl::position_ids_from_mask(batch.chosen.attention_mask)));

  // max_length 4: keep_end keeps "c d e eos" (prompt 1 token); keep_start keeps "a b c d" (completion 1 token).
  const auto end = data::DPODataset::load(file, tok, {.max_length = 4});
  CHECK(end[0].chosen == data::TokenizedSequence{{c[0], d[0], e[0], 1}, 1});
  const auto start = data::DPODataset::load(file, tok, {.max_length = 4, .truncation_mode = data::TruncationMode::keep_start});
  CHECK(start[0].chosen == data::TokenizedSequence{{a[0], b[0], c[0], d[0]}, 3});
  // max_prompt_length keeps the prompt's end; max_completion_length the completion's start (eos may go).
  const auto cut = data::DPODataset::load(file, tok, {.max_prompt_length = 2, .max_completion_length = 2});
  CHECK(cut[0].chosen == data::TokenizedSequence{{b[0], c[0], d[0], e[0]}, 2});
  // keep_end cutting into the completion: the first kept token has nothing before it and is not scored.
  const auto deep = data::DPODataset::load(file, tok, {.max_length = 2});
  CHECK(deep[0].chosen == data::TokenizedSequence{{e[0], 1}, 0});
  const auto db = deep.collate(idx);
  CHECK(row_of(db.chosen_mask, 0) == Ids{0, 1});
  CHECK(db.chosen.input_ids.size(1) == 3);  // P is at least 1

  // Conversational rows (TRL's apply_chat_template): prompt with generation prompt, completion = the rest.
  const auto conv = write_file(dir, "conv.jsonl",
      R"({"prompt": [{"role": "user", "content": "hi"}], "chosen": [{"role": "assistant", "content": "A"}], "rejected": [{"role": "assistant", "content": "B"}]})" "\n");
  const auto cd = data::DPODataset::load(conv, tok, {}, verl::chat::chatml);
  const std::string prompt = "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n";
  CHECK(cd[0].info.prompt == prompt);
  auto want = ids_of(prompt + "A<|im_end|>\n");
  want.push_back(1);
  CHECK(cd[0].chosen == data::TokenizedSequence{want, prompt.size()});
  const auto mixed = write_file(dir, "mixed.jsonl", R"({"prompt": [{"role": "user", "content": "hi"}], "chosen": "x", "rejected": "y"})" "\n");
  CHECK_THAT(error_of<verl::InputError>([&] { (void)data::DPODataset::load(mixed, tok, {}, verl::chat::chatml); }),
             Contains("mixed.jsonl:1: \"chosen\" is a JSON string, expected chat messages"));
  CHECK(data::detail::common_prefix_length("ab\xC3\xA9", "ab\xC3\xA8") == 2);  // é vs è: differ in the 2nd byte
}

TEST_CASE("KTODataset: TRL's _tokenize boundary, _process_tokens truncation, KL pairs, labels", "[data][kto]") {
  verl::test::TempDir dir("data");
  const ByteTokenizer tok;
  const auto file = write_file(dir, "kto.jsonl",
                               R"({"prompt": "ab", "completion": "c", "label": true})" "\n"
                               R"({"prompt": "d", "completion": "ef", "label": false})" "\n"
                               R"({"prompt": "d", "completion": "ef", "label": "yes"})" "\n");
  CHECK_THAT(error_of<verl::InputError>([&] { (void)data::KTODataset::load(file, tok, {}); }),
             Contains("kto.jsonl:3: \"label\" is a JSON string, expected true"));
  const auto ds = data::KTODataset::load(file, tok, {.skip_policy = data::SkipPolicy::skip});
  REQUIRE(ds.size() == 2);
  const Ids a = ids_of("a"), b = ids_of("b"), c = ids_of("c"), d = ids_of("d"), e = ids_of("e"), f = ids_of("f");
  CHECK(ds[0].prompt_ids == Ids{a[0], b[0]});
  CHECK(ds[0].completion_ids == Ids{c[0]});
  const std::size_t idx[] = {0, 1};
  const auto batch = ds.collate(idx);
  // Matched: [a b | c eos], [d | e f eos]; KL: row 0 = prompt 0 + completion 1, row 1 = prompt 1 + completion 0.
  // P = 2, R = 3.
  CHECK(row_of(batch.completion.input_ids, 0) == Ids{a[0], b[0], c[0], 1, 0});
  CHECK(row_of(batch.completion.input_ids, 1) == Ids{0, d[0], e[0], f[0], 1});
  CHECK(row_of(batch.completion_mask, 0) == Ids{1, 1, 0});
  CHECK(row_of(batch.kl.input_ids, 0) == Ids{a[0], b[0], e[0], f[0], 1});
  CHECK(row_of(batch.kl.input_ids, 1) == Ids{0, d[0], c[0], 1, 0});
  CHECK(batch.labels[0].item<bool>());
  CHECK_FALSE(batch.labels[1].item<bool>());

  // _process_tokens: max_length 4 - 1 (prompt without bos) - 1 (completion without eos) = 2 < 6 tokens, so the
  // prompt keeps its last 2 ("cd"), still 4 > 2, so the completion keeps max(0, 2 - 2) = 0 tokens; eos added.
  const auto lf = write_file(dir, "long.jsonl", R"({"prompt": "abcd", "completion": "ef", "label": true})" "\n");
  const auto lds = data::KTODataset::load(lf, tok, {.max_prompt_length = 2, .max_length = 4});
  CHECK(lds.processed(0, 0) == data::TokenizedSequence{{c[0], d[0], 1}, 2});
  const auto ks = data::KTODataset::load(lf, tok, {.max_prompt_length = 2, .max_length = 4,
                                                    .truncation_mode = data::TruncationMode::keep_start, .bos_token_id = 7});
  // With bos 7: max_length 4 - 1 - 1 = 2; prompt keeps its first 2 ("ab"); completion 0; bos and eos added.
  CHECK(ks.processed(0, 0) == data::TokenizedSequence{{7, a[0], b[0], 1}, 3});

  // The boundary moves one token left when the prompt's last token merges with the completion (tiny_bpe:
  // enc("a") = [0], enc("abc") = [5]): prompt [], completion [5].
  const auto bpe = verl::HFTokenizer::from_directory(std::string(VERL_GOLDEN_DIR) + "/../fixtures/tokenizers/tiny_bpe");
  const auto mf = write_file(dir, "merge.jsonl", R"({"prompt": "a", "completion": "bc", "label": true})" "\n");
  const auto mds = data::KTODataset::load(mf, bpe, {});
  CHECK(mds[0].prompt_ids.empty());
  CHECK(mds[0].completion_ids == Ids{5});
}

TEST_CASE("SFTDataset: prompt/response and multi-turn messages, loss masks, truncation", "[data][sft]") {
  verl::test::TempDir dir("data");
  const ByteTokenizer tok;
  const auto file = write_file(dir, "sft.jsonl", R"({"prompt": "ab", "response": "c"})" "\n"
                                                 R"({"prompt": "x", "response": "yzw"})" "\n");
  const auto ds = data::SFTDataset::load(file, tok, {});
  const Ids a = ids_of("a"), b = ids_of("b"), c = ids_of("c");
  CHECK(ds.ids(0) == Ids{a[0], b[0], c[0], 1});  // response + eos
  CHECK(ds.loss_mask(0) == Ids{0, 0, 1, 1});
  const std::size_t idx[] = {0, 1};
  const auto batch = ds.collate(idx);
  CHECK(row_of(batch.input_ids, 0) == Ids{a[0], b[0], c[0], 1, 0});
  CHECK(row_of(batch.attention_mask, 0) == Ids{1, 1, 1, 1, 0});
  CHECK(row_of(batch.loss_mask, 1) == Ids{0, 1, 1, 1, 1});  // "x" | "y" "z" "w" eos
  CHECK(row_of(batch.position_ids, 0) == Ids{0, 1, 2, 3, 3});
  CHECK(torch::equal(batch.position_ids, verl::position_ids_from_mask(batch.attention_mask)));

  // Truncation: right keeps the first 3, left the last 3 (position 0 never a target), error names file:line.
  CHECK(data::SFTDataset::load(file, tok, {.max_length = 3, .truncation = data::Truncation::right}).loss_mask(0) == Ids{0, 0, 1});
  const auto left = data::SFTDataset::load(file, tok, {.max_length = 3, .truncation = data::Truncation::left});
  CHECK(left.ids(0) == Ids{b[0], c[0], 1});
  CHECK(left.loss_mask(0) == Ids{0, 1, 1});
  CHECK_THAT(error_of<verl::ConfigError>([&] { (void)data::SFTDataset::load(file, tok, {.max_length = 3}); }),
             Contains("sft.jsonl:1: the sequence has 4 tokens, more than max_length = 3"));

  // Messages: user turn (no loss), the assistant's generation prompt (no loss), its content and end of turn (loss).
  const auto conv = write_file(dir, "conv.jsonl",
      R"({"messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]})" "\n");
  const auto cds = data::SFTDataset::load(conv, tok, {}, verl::chat::chatml);
  const std::string head = "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n";
  const std::string target = "yo<|im_end|>\n";
  CHECK(cds.ids(0) == ids_of(head + target));
  Ids want(head.size(), 0);
  want.insert(want.end(), target.size(), 1);
  CHECK(cds.loss_mask(0) == want);
  CHECK_THAT(error_of<verl::ConfigError>([&] { (void)data::SFTDataset::load(conv, tok, {}); }),
             Contains("\"messages\" holds chat messages but no chat format"));
}

TEST_CASE("RLDataset prompt ids equal transformers' apply_chat_template(add_generation_prompt=True, tokenize=True)",
          "[data][rl][python]") {
  // verl 0.7.1 tokenises a prompt with tokenizer.apply_chat_template(messages, add_generation_prompt=True,
  // tokenize=True). The script trains a small byte-level BPE with `tokenizers`, gives it the ChatML template and
  // prints those ids; the C++ side loads the same tokenizer.json and renders with verl::chat::chatml.
  verl::test::TempDir dir("data");
  const nlohmann::json convs = nlohmann::json::parse(R"([
    [{"role": "user", "content": "What is 12 plus 30?"}],
    [{"role": "system", "content": "You are a helpful assistant."}, {"role": "user", "content": "Answer: 42 \u00fcn\u00efcode  two  spaces"}],
    [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "user", "content": "\n\n12"}]])");
  write_file(dir, "convs.json", convs.dump());
  std::string rows;
  for (const auto& c : convs) rows += nlohmann::json{{"prompt", c}}.dump() + "\n";
  const auto jsonl = write_file(dir, "rows.jsonl", rows);
  const auto out = run_python(dir, R"(import sys, json
from tokenizers import Tokenizer, models, pre_tokenizers, decoders, trainers
from transformers import PreTrainedTokenizerFast
d = sys.argv[1]
tk = Tokenizer(models.BPE())
tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
tk.decoder = decoders.ByteLevel()
tr = trainers.BpeTrainer(vocab_size=320, special_tokens=["<|im_start|>", "<|im_end|>", "<|endoftext|>"],
                         initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
tk.train_from_iterator(["What is 12 plus 30? Answer with the number.", "You are a helpful assistant.", "system user assistant"] * 20, tr)
tk.save(d + "/tokenizer.json")
t = PreTrainedTokenizerFast(tokenizer_file=d + "/tokenizer.json")
t.chat_template = ("{% for m in messages %}{{'<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n'}}{% endfor %}"
                   "{% if add_generation_prompt %}{{'<|im_start|>assistant\n'}}{% endif %}")
for conv in json.load(open(d + "/convs.json")):
    r = t.apply_chat_template(conv, add_generation_prompt=True, tokenize=True)
    if hasattr(r, "keys"): r = r["input_ids"]
    print(" ".join(map(str, r)))
)", dir.path.string());
  if (!out) return;
  const auto tok = verl::HFTokenizer::from_file(dir.path / "tokenizer.json", {.eos_token = "<|endoftext|>"});
  const auto ds = data::RLDataset::load(jsonl, tok, {}, verl::chat::chatml);
  REQUIRE(ds.size() == convs.size());
  std::istringstream lines(*out);
  std::string line;
  for (std::size_t i = 0; i < convs.size(); ++i) {
    REQUIRE(std::getline(lines, line));
    std::istringstream in(line);
    Ids want;
    for (std::int64_t v; in >> v;) want.push_back(v);
    INFO("conversation " << i);
    CHECK(ds[i].prompt_ids == want);
  }
}
