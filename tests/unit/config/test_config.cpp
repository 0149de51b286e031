// verl::config: the YAML subset parser (include/verl/config/yaml.hpp), the typed schema with overrides,
// interpolations, did-you-mean and the generated reference (schema.hpp), and the trainer configurations
// (trainer_config.hpp) against verl 0.7.1's own flattened ppo_trainer.yaml
// (tests/fixtures/config/_generated_ppo_trainer.yaml, copied from PyPI verl 0.7.1).
// Expected values are hand-derived from the YAML 1.2 spec (chapters 6-8) unless the comment says otherwise; the
// parser's tree for the verl fixture was also compared with PyYAML 6.0.3's (identical) when this was written.
#include "catch_torch.hpp"

#include "error_of.hpp"
#include "temp_dir.hpp"
#include "verl/checkpoint/atomic_file.hpp"
#include "verl/config/trainer_config.hpp"

#include <cmath>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

using namespace verl::config;
using Catch::Matchers::Contains;
using verl::test::error_of;

namespace {

const std::string kSourceDir = std::string(VERL_GOLDEN_DIR) + "/../..";
const std::string kFixture = kSourceDir + "/tests/fixtures/config/_generated_ppo_trainer.yaml";

Json yaml(std::string_view text) { return parse_yaml(text, "t.yaml").root; }

std::string yaml_error(std::string_view text) {
  return error_of([&] { (void)parse_yaml(text, "t.yaml"); });
}

// The overrides every verl example script passes (verl requires the micro-batch sizes; examples/ppo_trainer).
const std::vector<std::string> kMicroBatches = {"actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=4",
                                                "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=8",
                                                "critic.ppo_micro_batch_size_per_gpu=4"};

// A small described struct for the schema tests.
enum class Color { red, green };
std::string_view to_string(Color c) { return c == Color::red ? "red" : "green"; }
Color parse(std::string_view s, std::type_identity<Color>) {
  if (s == "red") return Color::red;
  if (s == "green") return Color::green;
  throw verl::ConfigError("expected \"red\" or \"green\", got \"" + std::string(s) + "\"");
}

struct Inner {
  std::int32_t count = 3;
  std::string name = "x";
  std::string label = "n";
  template <class V>
  void describe(V& v) {
    v("count", count, "a count");
    v("name", name, "a name");
    v("label", label, "follows name", interpolate("${.name}-label"));
  }
  void validate() const { require(count >= 0, "count", "must be >= 0, got ", count); }
};

struct Outer {
  bool flag = false;
  double rate = 0.5;
  std::vector<std::int64_t> sizes{1, 2};
  std::optional<std::string> maybe;
  Color color = Color::red;
  Inner inner;
  std::int64_t copy = 3;
  Json extra = Json::object();
  template <class V>
  void describe(V& v) {
    v("flag", flag, "a flag");
    v("rate", rate, "a rate");
    v("sizes", sizes, "sizes");
    v("maybe", maybe, "optional");
    v("color", color, "a colour");
    v("inner", inner, "");
    v("copy", copy, "follows inner.count", interpolate("${oc.select:inner.count,7}"));
    v("extra", extra, "anything");
    v.ignore("legacy", "ignored for the test");
  }
};

}  // namespace

// ---------------------------------------------------------------------------------------------------------------
// Parser

TEST_CASE("yaml: block mappings and sequences, compact forms, comments", "[config][yaml]") {
  const Json j = yaml(R"(# leading comment
a:
  b: 1        # trailing comment
  c:
  - x
  - y
  d:
    - k: 1
      l: 2
    - - nested
      - seq
    -
      m: 3
e: [1, two, {f: 3}]   # flow
g: {h: [a, b], i: null}
empty_map: {}
empty_seq: []
no_value:
last: end
)");
  // Hand-derived: `c` is a sequence at its key's indentation; `- k: 1\n  l: 2` is one compact mapping.
  const Json want = Json::parse(R"({"a": {"b": 1, "c": ["x", "y"], "d": [{"k": 1, "l": 2}, ["nested", "seq"], {"m": 3}]},
    "e": [1, "two", {"f": 3}], "g": {"h": ["a", "b"], "i": null}, "empty_map": {}, "empty_seq": [],
    "no_value": null, "last": "end"})");
  CHECK(j == want);
  // Key order is kept.
  std::vector<std::string> keys;
  for (const auto& [k, v] : j.items()) keys.push_back(k);
  CHECK(keys == std::vector<std::string>{"a", "e", "g", "empty_map", "empty_seq", "no_value", "last"});
}

TEST_CASE("yaml: core-schema scalars", "[config][yaml]") {
  const Json j = yaml(R"(n1: null
n2: ~
n3: Null
n4:
b1: true
b2: False
b3: TRUE
s_yes: yes
s_on: on
i1: 42
i2: -7
i3: 0x1F
i4: 0o17
i5: +3
i6: 007
u: 18446744073709551615
f1: 1.5
f2: 1e-6
f3: -.5
f4: 6.02E+23
f5: .inf
f6: -.Inf
f7: .nan
f8: 1.
s1: 1.2.3
s2: 0x
s3: ~/models/x
s4: ${oc.select:a.b,1}
s5: http://host:80/path
s6: a #b
)");
  CHECK(j["n1"].is_null());
  CHECK(j["n2"].is_null());
  CHECK(j["n3"].is_null());
  CHECK(j["n4"].is_null());
  CHECK(j["b1"] == true);
  CHECK(j["b2"] == false);
  CHECK(j["b3"] == true);
  CHECK(j["s_yes"] == "yes");  // YAML 1.1 booleans are strings in the 1.2 core schema
  CHECK(j["s_on"] == "on");
  CHECK(j["i1"] == 42);
  CHECK(j["i2"] == -7);
  CHECK(j["i3"] == 31);
  CHECK(j["i4"] == 15);
  CHECK(j["i5"] == 3);
  CHECK(j["i6"] == 7);  // core schema: decimal, not octal
  CHECK(j["u"].is_number_unsigned());
  CHECK(j["u"].get<std::uint64_t>() == 18446744073709551615ULL);
  CHECK(j["f1"] == 1.5);
  CHECK(j["f2"].is_number_float());
  CHECK(j["f2"].get<double>() == 1e-6);
  CHECK(j["f3"] == -0.5);
  CHECK(j["f4"].get<double>() == 6.02e23);
  CHECK(std::isinf(j["f5"].get<double>()));
  CHECK(j["f6"].get<double>() == -INFINITY);
  CHECK(std::isnan(j["f7"].get<double>()));
  CHECK(j["f8"] == 1.0);
  CHECK(j["s1"] == "1.2.3");
  CHECK(j["s2"] == "0x");
  CHECK(j["s3"] == "~/models/x");
  CHECK(j["s4"] == "${oc.select:a.b,1}");
  CHECK(j["s5"] == "http://host:80/path");
  CHECK(j["s6"] == "a");
  CHECK_THAT(yaml_error("big: 18446744073709551616\n"), Contains("t.yaml:1:6") && Contains("out of range"));
}

TEST_CASE("yaml: quoted scalars, escapes and folding", "[config][yaml]") {
  const Json j = yaml(R"(d1: "tab\tnl\nq\"bs\\ \x41\u00e9\U0001F600 slash\/"
d2: "1"
d3: "null"
s1: 'it''s # not a comment'
s2: ''
k: "a
  b

  c"
e: "join\
   ed"
"quoted key": 1
'single key': 2
)");
  CHECK(j["d1"] == "tab\tnl\nq\"bs\\ A\xC3\xA9\xF0\x9F\x98\x80 slash/");
  CHECK(j["d2"] == "1");
  CHECK(j["d3"] == "null");
  CHECK(j["s1"] == "it's # not a comment");
  CHECK(j["s2"] == "");
  CHECK(j["k"] == "a b\nc");  // one break folds to a space, an empty line to a line feed
  CHECK(j["e"] == "joined");  // escaped line break
  CHECK(j["quoted key"] == 1);
  CHECK(j["single key"] == 2);
}

TEST_CASE("yaml: multi-line plain scalars and flow collections over lines", "[config][yaml]") {
  // verl's _generated_ppo_trainer.yaml has such a plain scalar (data.tool_config_path).
  const Json j = yaml("a: ${oc.select:x.y,\n    null}\nb: one\n  two\n\n  three\nc: [1,\n  2, # comment\n  3,\n]\nd: {x: 1,\n  y: 2}\n");
  CHECK(j["a"] == "${oc.select:x.y, null}");
  CHECK(j["b"] == "one two\nthree");
  CHECK(j["c"] == Json::parse("[1, 2, 3]"));
  CHECK(j["d"] == Json::parse(R"({"x": 1, "y": 2})"));
}

TEST_CASE("yaml: literal and folded block scalars with chomping and indentation indicators", "[config][yaml]") {
  // YAML 1.2 spec 8.1: clip keeps one final line feed, strip none, keep all; folding joins lines of equal
  // indentation with a space, keeps line feeds around more-indented lines and turns n empty lines into n feeds.
  const Json j = yaml("lit: |\n  a\n   b\n\n  c\n\nclip: |\n  x\n\n\nstrip: |-\n  x\n\nkeep: |+\n  x\n\n\n"
                      "fold: >\n  one\n  two\n\n  three\n    indented\n  four\nind: |2\n    two extra\n  base\n"
                      "seq:\n  - |\n    item\n  - after\nlast: 1\n");
  CHECK(j["lit"] == "a\n b\n\nc\n");
  CHECK(j["clip"] == "x\n");
  CHECK(j["strip"] == "x");
  CHECK(j["keep"] == "x\n\n\n");
  CHECK(j["fold"] == "one two\nthree\n  indented\nfour\n");
  CHECK(j["ind"] == "  two extra\nbase\n");
  CHECK(j["seq"] == Json::parse(R"(["item\n", "after"])"));
  CHECK(j["last"] == 1);
  CHECK(yaml("a: >-\n  x\n  y\n")["a"] == "x y");
  CHECK(yaml("a: |\nb: 1\n")["a"] == "");  // empty block scalar
}

TEST_CASE("yaml: documents, BOM, empty input", "[config][yaml]") {
  CHECK(yaml("").is_null());
  CHECK(yaml("# only a comment\n").is_null());
  CHECK(yaml("---\na: 1\n...\n") == Json::parse(R"({"a": 1})"));
  CHECK(yaml("\xEF\xBB\xBF" "a: 1\n") == Json::parse(R"({"a": 1})"));
  CHECK(yaml("- 1\n- 2\n") == Json::parse("[1, 2]"));
  CHECK(yaml("plain text") == "plain text");
  CHECK(yaml("a: 1\r\nb: [x, y]\r\n") == Json::parse(R"({"a": 1, "b": ["x", "y"]})"));
}

TEST_CASE("yaml: errors name file, line and column and what was expected", "[config][yaml]") {
  CHECK_THAT(yaml_error("a:\n\tb: 1\n"), Contains("t.yaml:2:1") && Contains("tab"));
  CHECK_THAT(yaml_error("a:\n  b: 1\n   c: 2\n"), Contains("t.yaml:3:4") && Contains("bad indentation"));
  CHECK_THAT(yaml_error("a: 1\nb: 2\na: 3\n"), Contains("t.yaml:3:1") && Contains("duplicate key `a`") &&
                                                   Contains("first defined at line 1"));
  CHECK_THAT(yaml_error("x: {a: 1, a: 2}\n"), Contains("t.yaml:1:11") && Contains("duplicate key `a`"));
  CHECK_THAT(yaml_error("a: \"abc\nb: 1\n"), Contains("t.yaml:1:4") && Contains("unterminated double-quoted"));
  CHECK_THAT(yaml_error("a: 'abc\n"), Contains("t.yaml:1:4") && Contains("unterminated single-quoted"));
  CHECK_THAT(yaml_error("a: &x 1\n"), Contains("t.yaml:1:4") && Contains("anchors"));
  CHECK_THAT(yaml_error("a: *x\n"), Contains("t.yaml:1:4") && Contains("aliases"));
  CHECK_THAT(yaml_error("a: !!str 1\n"), Contains("t.yaml:1:4") && Contains("tags"));
  CHECK_THAT(yaml_error("b:\n  - !tag x\n"), Contains("t.yaml:2:5") && Contains("tags"));
  CHECK_THAT(yaml_error("? a\n: 1\n"), Contains("t.yaml:1:1") && Contains("complex mapping keys"));
  CHECK_THAT(yaml_error("a: 1\n---\nb: 2\n"), Contains("t.yaml:2:1") && Contains("several documents"));
  CHECK_THAT(yaml_error("a: [1, 2\n"), Contains("t.yaml:1:4") && Contains("expected `]`"));
  CHECK(yaml("a: [1 2]\n")["a"] == Json::parse(R"(["1 2"])"));  // a plain scalar may contain spaces
  CHECK_THAT(yaml_error("a: [[1] 2]\n"), Contains("t.yaml:1:9") && Contains("expected `,` or `]`"));
  CHECK_THAT(yaml_error("a: {x: \"1\" y}\n"), Contains("t.yaml:1:12") && Contains("expected `,` or `}`"));
  CHECK_THAT(yaml_error("a: [1, , 2]\n"), Contains("t.yaml:1:8") && Contains("empty entry"));
  CHECK_THAT(yaml_error("a: \"x\" y\n"), Contains("t.yaml:1:8") && Contains("unexpected text after the value"));
  CHECK_THAT(yaml_error("a: b: c\n"), Contains("t.yaml:1:4") && Contains("mapping cannot start on the line of its key"));
  CHECK_THAT(yaml_error("a: - x\n"), Contains("t.yaml:1:4") && Contains("block sequence cannot start"));
  CHECK_THAT(yaml_error("a: 1\n  b: 2\n"), Contains("t.yaml:2:3") && Contains("bad indentation of a mapping entry"));
  CHECK_THAT(yaml_error("- a\nb: 1\n"), Contains("t.yaml:2:1"));
  CHECK_THAT(yaml_error("a: ]x\n"), Contains("t.yaml:1:4") && Contains("cannot start with `]`"));
  CHECK_THAT(yaml_error("]a: 1\n"), Contains("t.yaml:1:1") && Contains("cannot start with `]`"));
  CHECK_THAT(yaml_error("a: x\n  'b: c\n"), Contains("t.yaml:2:3") && Contains("contains `: `"));
  CHECK_THAT(yaml_error("a: \"\\q\"\n"), Contains("t.yaml:1:5") && Contains("unknown escape"));
  CHECK_THAT(yaml_error("a: |x\n  t\n"), Contains("t.yaml:1:5") && Contains("block scalar header"));
}

TEST_CASE("yaml: every key's line is recorded", "[config][yaml]") {
  const auto doc = parse_yaml("a:\n  b:\n    c: 1\n  list:\n    - x\n    - {k: v}\nd: 2\n", "f.yaml");
  CHECK(doc.marks.at("a").line == 1);
  CHECK(doc.marks.at("a.b").line == 2);
  CHECK(doc.marks.at("a.b.c").line == 3);
  CHECK(doc.marks.at("a.b.c").column == 5);
  CHECK(doc.marks.at("a.list[1]").line == 6);
  CHECK(doc.marks.at("a.list[1].k").line == 6);
  CHECK(doc.marks.at("d").line == 7);
  CHECK(doc.where("a.b.c") == "f.yaml:3");
  CHECK(doc.where("a.b.c.deeper") == "f.yaml:3");  // nearest ancestor
}

TEST_CASE("yaml: to_yaml round-trips through the parser", "[config][yaml]") {
  const Json tree = Json::parse(R"({
    "strings": ["", " lead", "trail ", "yes", "No", "on", "null", "~", "true", "12", "1.5", "1e-6", ".inf", "0x1F",
                "- dash", "a: b", "a #b", "#c", "[x]", "{y}", "'q'", "\"dq\"", "line\nfeed", "tab\there", "ünïcödé",
                "${oc.select:a.b,1}", "plain text", "key:", "*star", "&amp", "!bang", "|pipe", ">gt", "%pc", "@at", "...",
                "---"],
    "numbers": [0, -1, 9223372036854775807, -9223372036854775808, 18446744073709551615, 0.1, 1e-06, 2.5e+300, -0.0, 3.0],
    "nested": {"empty_map": {}, "empty_list": [], "maps": [{"a": 1, "b": [1, 2]}, {"c": {"d": null}}],
               "lists": [[1, [2, 3]], []], "bools": [true, false], "": "empty key", "n": "n key"}
  })");
  const std::string text = to_yaml(tree);
  INFO(text);
  CHECK(parse_yaml(text).root == tree);
  // Non-finite floats (NaN != NaN, so checked apart).
  const Json special = {{"inf", INFINITY}, {"ninf", -INFINITY}, {"nan", NAN}};
  const Json back = parse_yaml(to_yaml(special)).root;
  CHECK(back["inf"].get<double>() == INFINITY);
  CHECK(back["ninf"].get<double>() == -INFINITY);
  CHECK(std::isnan(back["nan"].get<double>()));
  CHECK(to_yaml(Json(1e-6)) == "1.0e-06\n");  // a '.' so that YAML 1.1 readers see a float too
  CHECK(to_yaml(Json::object()) == "{}\n");
  CHECK(to_flow_yaml(Json::parse(R"({"a": [1, "x y"], "b": null})")) == "{a: [1, x y], b: null}");
}

TEST_CASE("yaml: parse_yaml_value reads command-line values", "[config][yaml]") {
  CHECK(parse_yaml_value("1e-5") == 1e-5);
  CHECK(parse_yaml_value("[console, jsonl]") == Json::parse(R"(["console", "jsonl"])"));
  CHECK(parse_yaml_value("{a: 1}") == Json::parse(R"({"a": 1})"));
  CHECK(parse_yaml_value("null").is_null());
  CHECK(parse_yaml_value("") == "");  // Hydra: `key=` is the empty string
  CHECK(parse_yaml_value("'007'") == "007");
  CHECK(parse_yaml_value("a: b # c") == "a: b # c");
  CHECK_THAT(error_of([] { (void)parse_yaml_value("[1, 2", "override `x=[1, 2`"); }),
             Contains("override `x=[1, 2`") && Contains("expected `]`"));
}

// ---------------------------------------------------------------------------------------------------------------
// Schema

TEST_CASE("schema: reading, defaults, interpolated defaults, printing", "[config][schema]") {
  const auto loaded = load_text<Outer>(
      "flag: true\nrate: 2\nsizes: [4, 5]\nmaybe: hi\ncolor: green\ninner:\n  count: 9\n  name: abc\nextra: {k: [1]}\n"
      "legacy: {anything: [goes]}\n_target_: some.python.Class\n",
      "o.yaml");
  const Outer& o = loaded.config;
  CHECK(o.flag);
  CHECK(o.rate == 2.0);  // an integer is a valid float
  CHECK(o.sizes == std::vector<std::int64_t>{4, 5});
  CHECK(o.maybe == std::optional<std::string>("hi"));
  CHECK(o.color == Color::green);
  CHECK(o.inner.count == 9);
  CHECK(o.inner.label == "abc-label");  // interpolated default follows the sibling
  CHECK(o.copy == 9);                   // ${oc.select:inner.count,7}
  CHECK(o.extra == Json::parse(R"({"k": [1]})"));
  CHECK(loaded.yaml ==
        "flag: true\nrate: 2.0\nsizes:\n  - 4\n  - 5\nmaybe: hi\ncolor: green\ninner:\n  count: 9\n  name: abc\n"
        "  label: abc-label\ncopy: 9\nextra:\n  k:\n    - 1\n");
  // The effective YAML reads back to the same configuration.
  CHECK(load_text<Outer>(loaded.yaml, "again.yaml").yaml == loaded.yaml);
  // Defaults only.
  const auto d = load_overrides<Outer>({});
  CHECK(d.config.copy == 3);
  CHECK(d.config.inner.label == "x-label");
  CHECK(!d.config.maybe);
  // A null section keeps its defaults (verl: `filter_groups: null`).
  CHECK(load_text<Outer>("inner: null\n", "o.yaml").config.inner.count == 3);
}

TEST_CASE("schema: several files merge in order, mappings key by key", "[config][schema]") {
  const std::vector<YamlDocument> docs = {parse_yaml("rate: 1.0\ninner:\n  count: 1\n  name: base\nsizes: [1, 2, 3]\n", "base.yaml"),
                                          parse_yaml("inner:\n  count: 2\nsizes: [9]\n", "exp.yaml")};
  const auto l = load<Outer>(docs);
  CHECK(l.config.rate == 1.0);
  CHECK(l.config.inner.count == 2);
  CHECK(l.config.inner.name == "base");
  CHECK(l.config.sizes == std::vector<std::int64_t>{9});  // sequences replace, as in OmegaConf.merge
  const std::vector<YamlDocument> bad = {parse_yaml("inner:\n  count: 1\n", "base.yaml"), parse_yaml("\n\ninner:\n  count: x\n", "exp.yaml")};
  CHECK_THAT(error_of([&] { (void)load<Outer>(bad); }), Contains("`inner.count` (exp.yaml:4): expected an integer"));
}

TEST_CASE("schema: overrides", "[config][schema]") {
  const std::vector<std::string> ov = {"inner.count=5", "sizes=[7]", "maybe=null", "rate=1e-3", "inner.name='a b'",
                                       "extra.new={x: 1}"};
  const auto l = load_text<Outer>("maybe: set\ninner:\n  count: 1\n", "o.yaml", ov);
  CHECK(l.config.inner.count == 5);
  CHECK(l.config.copy == 5);  // interpolations see the overrides
  CHECK(l.config.sizes == std::vector<std::int64_t>{7});
  CHECK(!l.config.maybe);
  CHECK(l.config.rate == 1e-3);
  CHECK(l.config.inner.name == "a b");
  CHECK(l.config.extra == Json::parse(R"({"new": {"x": 1}})"));
  auto err = [](std::vector<std::string> o) { return error_of([&] { (void)load_overrides<Outer>(o); }); };
  CHECK_THAT(err({"inner.count"}), Contains("override `inner.count`") && Contains("expected `key.path=value`"));
  CHECK_THAT(err({"+inner.new=1"}), Contains("`+key`"));
  CHECK_THAT(err({"~inner=1"}), Contains("`~key`"));
  CHECK_THAT(err({"inner..count=1"}), Contains("empty component"));
  CHECK_THAT(err({"rate.sub=1"}), Contains("cannot set `rate.sub`") && Contains("`rate` is float 0.5, not a mapping"));
  CHECK_THAT(err({"inner.cout=1"}), Contains("unknown key `inner.cout` (command-line override `inner.cout=1`)") &&
                                        Contains("did you mean `inner.count`?"));
  CHECK_THAT(err({"inner.count=x"}), Contains("`inner.count` (command-line override `inner.count=x`): expected an integer, "
                                              "found string \"x\""));
  // The file's position of a key is replaced by the override's.
  CHECK_THAT(error_of([] { (void)load_text<Outer>("inner:\n  count: 1\n", "o.yaml", std::vector<std::string>{"inner.count=-1"}); }),
             Contains("`inner.count` (command-line override `inner.count=-1`): must be >= 0, got -1"));
}

TEST_CASE("schema: type errors name the key, where it was set, the expected type and the value", "[config][schema]") {
  auto err = [](std::string_view text) { return error_of([&] { (void)load_text<Outer>(text, "o.yaml"); }); };
  CHECK_THAT(err("flag: yes\n"), Contains("`flag` (o.yaml:1): expected a boolean (true or false), found string \"yes\""));
  CHECK_THAT(err("flag: true\nrate: fast\n"), Contains("`rate` (o.yaml:2): expected a number, found string \"fast\""));
  CHECK_THAT(err("sizes: 3\n"), Contains("`sizes` (o.yaml:1): expected a sequence of int, found integer 3"));
  CHECK_THAT(err("sizes: [1, x]\n"), Contains("`sizes[1]` (o.yaml:1): expected an integer, found string \"x\""));
  CHECK_THAT(err("sizes: [1, 2.5]\n"), Contains("expected an integer, found float 2.5"));
  CHECK_THAT(err("inner:\n  count: 3000000000\n"), Contains("`inner.count` (o.yaml:2): integer 3000000000 is out of range"));
  CHECK_THAT(err("inner:\n  name: 12\n"), Contains("`inner.name` (o.yaml:2): expected a string, found integer 12"));
  CHECK_THAT(err("inner: [1]\n"), Contains("`inner` (o.yaml:1): expected a mapping (section `inner`), found a sequence [1]"));
  CHECK_THAT(err("color: blue\n"), Contains("`color` (o.yaml:1): expected \"red\" or \"green\", got \"blue\""));
  CHECK_THAT(err("flag: null\n"), Contains("`flag` (o.yaml:1): expected a boolean (true or false), found null"));
  CHECK_THAT(err("flag: ???\n"), Contains("`flag` (o.yaml:1): is a mandatory value (`???`) that is not set"));
  CHECK_THAT(err("- 1\n"), Contains("o.yaml: expected a mapping of sections at the top level"));
  // Unknown keys: siblings within distance, else the same leaf elsewhere, else the list of keys.
  CHECK_THAT(err("inner:\n  cont: 1\n"), Contains("unknown key `inner.cont` (o.yaml:2); did you mean `inner.count`?"));
  CHECK_THAT(err("count: 1\n"), Contains("unknown key `count` (o.yaml:1); did you mean `inner.count`?"));
  CHECK_THAT(err("defaults:\n  - ppo_trainer\n"), Contains("unknown key `defaults` (o.yaml:1); Hydra `defaults` lists"));
  CHECK_THAT(err("zzz: 1\n"), Contains("unknown key `zzz` (o.yaml:1); the keys of the top level are: flag, rate, sizes"));
  // Validation hooks name the full key.
  CHECK_THAT(err("inner:\n  count: -2\n"), Contains("`inner.count` (o.yaml:2): must be >= 0, got -2"));
  CHECK(error_of([] { (void)load_text<Outer>("inner:\n  count: -2\n", "o.yaml", {}, {.validate = false}); }).empty());
}

TEST_CASE("schema: OmegaConf interpolations", "[config][schema]") {
  auto load = [](std::string_view text) { return load_text<Outer>(text, "i.yaml").config; };
  // Absolute, relative, splices, oc.select with and without the key, escapes.
  CHECK(load("inner:\n  name: ${maybe}\nmaybe: m\n").inner.name == "m");
  CHECK(load("inner:\n  name: ${..maybe}-x\nmaybe: m\n").inner.name == "m-x");
  CHECK(load("inner:\n  name: \"${rate}/${flag}/${maybe}\"\n").inner.name == "0.5/False/None");  // Python str()
  CHECK(load("inner:\n  name: ${oc.select:nothing.here,'dflt'}\n").inner.name == "dflt");
  CHECK(load("inner:\n  name: ${oc.select:nothing.here, fallback}\n").inner.name == "fallback");
  CHECK(load("sizes: ${extra.list}\nextra:\n  list: [3, 4]\n").sizes == std::vector<std::int64_t>{3, 4});
  CHECK(load("inner:\n  name: \\${literal}\n").inner.name == "${literal}");
  CHECK(load("copy: ${inner.count}\ninner:\n  count: ${extra.n}\nextra:\n  n: 11\n").copy == 11);  // chained
  auto err = [](std::string_view text) { return error_of([&] { (void)load_text<Outer>(text, "i.yaml"); }); };
  CHECK_THAT(err("inner:\n  name: ${no.such.key}\n"),
             Contains("`inner.name` (i.yaml:2): interpolation `${no.such.key}`: key `no.such.key` not found"));
  CHECK_THAT(err("copy: ${inner.count}\ninner:\n  count: ${copy}\n"), Contains("cycle"));
  CHECK_THAT(err("inner:\n  name: ${oc.decode:x}\n"), Contains("unsupported resolver `oc.decode`"));
  CHECK_THAT(err("inner:\n  name: ${maybe\n"), Contains("unterminated `${`"));
  CHECK_THAT(err("inner:\n  name: x${extra}\n"), Contains("a mapping or sequence cannot be spliced into a string"));
  CHECK_THAT(err("copy: ${maybe}\nmaybe: text\n"), Contains("`copy` (i.yaml:1): expected an integer, found string \"text\""));
}

TEST_CASE("schema: the reference lists every key with type, default and doc", "[config][schema]") {
  const std::string md = reference_markdown<Outer>("T", "intro");
  CHECK_THAT(md, Contains("| `flag` | bool | `false` | a flag |"));
  CHECK_THAT(md, Contains("| `sizes` | list[int] | `[1, 2]` | sizes |"));
  CHECK_THAT(md, Contains("| `maybe` | string \\| null | `null` | optional |"));
  CHECK_THAT(md, Contains("| `copy` | int | `${oc.select:inner.count,7}` | follows inner.count |"));
  CHECK_THAT(md, Contains("## `inner`"));
  CHECK_THAT(md, Contains("| `inner.label` | string | `${.name}-label` | follows name |"));
  CHECK_THAT(md, Contains("| `legacy` | ignored for the test |"));
  CHECK(key_paths<Outer>() == std::vector<std::string>{"flag", "rate", "sizes", "maybe", "color", "inner", "inner.count",
                                                        "inner.name", "inner.label", "copy", "extra", "legacy"});
}

// ---------------------------------------------------------------------------------------------------------------
// Trainer configurations

TEST_CASE("PPOConfig: verl 0.7.1's generated ppo_trainer.yaml loads and gives verl's defaults", "[config][ppo]") {
  const auto loaded = load_config<PPOConfig>(kFixture, {}, {.validate = false});
  const PPOConfig& c = loaded.config;
  // Values read from the fixture (verl's defaults), several through its interpolations.
  CHECK(c.data.train_files.files == std::vector<std::string>{"~/data/rlhf/gsm8k/train.parquet"});
  CHECK(c.data.train_batch_size == 1024);
  CHECK(c.data.truncation == Truncation::error);
  CHECK(c.actor_rollout_ref.actor.optim.lr == 1e-6);
  CHECK(c.actor_rollout_ref.actor.optim.betas == std::vector<double>{0.9, 0.999});
  CHECK(c.actor_rollout_ref.actor.optim.lr_scheduler_type == LRSchedulerType::constant);
  CHECK(c.actor_rollout_ref.actor.clip_ratio_c == 3.0);
  CHECK(c.actor_rollout_ref.actor.kl_loss_type == "low_var_kl");
  CHECK(c.actor_rollout_ref.actor.checkpoint.load_contents == std::vector<std::string>{"model", "optimizer", "extra"});
  CHECK(c.actor_rollout_ref.actor.use_remove_padding);  // ${oc.select:actor_rollout_ref.model.use_remove_padding,false}
  CHECK(c.actor_rollout_ref.ref.log_prob_max_token_len_per_gpu == 16384);
  CHECK(c.actor_rollout_ref.rollout.prompt_length == 512);
  CHECK(c.actor_rollout_ref.rollout.val_kwargs.temperature == 0.0);
  CHECK(!c.actor_rollout_ref.rollout.val_kwargs.do_sample);
  CHECK(c.critic.optim.lr == 1e-5);
  CHECK(c.critic.model.tokenizer_path == std::optional<std::string>("~/models/deepseek-llm-7b-chat"));
  CHECK(c.critic.ppo_mini_batch_size == 256);
  CHECK(c.critic.forward_max_token_len_per_gpu == 32768);
  CHECK(!c.critic.ppo_micro_batch_size_per_gpu);
  CHECK(c.algorithm.adv_estimator == "gae");
  CHECK(c.algorithm.kl_ctrl.type == KLControlType::fixed);
  CHECK(c.algorithm.kl_ctrl.horizon == 10000);
  CHECK(c.trainer.logger == std::vector<std::string>{"console", "wandb"});
  CHECK(c.trainer.default_local_dir == "checkpoints/verl_examples/gsm8k");
  CHECK(c.trainer.resume_mode == ResumeMode::auto_);
  CHECK(c.use_critic());
  CHECK(!c.use_reference_policy());
  CHECK(c.actor_rollout_ref.actor.strategy == "fsdp");
  CHECK(c.critic.strategy == "fsdp");
  CHECK(c.actor_rollout_ref.nccl_timeout == 600);
  CHECK(c.trainer.nnodes == std::optional<std::int64_t>(1));
  CHECK(c.trainer.n_gpus_per_node == std::optional<std::int64_t>(8));
  // The C++ defaults are verl's: the configuration from no file equals the one from verl's file, except for the
  // documented deviations (trainer.logger, trainer.device; the strategies dp instead of fsdp; trainer.nnodes and
  // trainer.n_gpus_per_node null, the launcher's, instead of 1 x 8).
  Json from_defaults = encode(load_overrides<PPOConfig>({}, {.validate = false}).config);
  Json from_verl = encode(c);
  CHECK(from_verl["trainer"]["device"] == "cuda");
  CHECK(from_defaults["actor_rollout_ref"]["actor"]["strategy"] == "dp");
  CHECK(from_defaults["critic"]["strategy"] == "dp");  // follows the actor's
  CHECK(from_defaults["trainer"]["nnodes"].is_null());
  CHECK(from_defaults["trainer"]["n_gpus_per_node"].is_null());
  for (const char* k : {"logger", "device", "nnodes", "n_gpus_per_node"}) from_verl["trainer"][k] = from_defaults["trainer"][k];
  from_verl["actor_rollout_ref"]["actor"]["strategy"] = from_defaults["actor_rollout_ref"]["actor"]["strategy"];
  from_verl["critic"]["strategy"] = from_defaults["critic"]["strategy"];
  CHECK(from_defaults == from_verl);
  CHECK(from_defaults["trainer"]["logger"] == Json::parse(R"(["console"])"));
  // The effective YAML reloads to the same configuration.
  CHECK(load_text<PPOConfig>(loaded.yaml, "effective.yaml", {}, {.validate = false}).yaml == loaded.yaml);
}

TEST_CASE("PPOConfig: verl's validation of the generated yaml, and with the example overrides", "[config][ppo]") {
  // verl's ActorConfig.__post_init__ rejects the generated file as it is (no micro-batch size).
  CHECK_THAT(error_of([] { (void)load_config<PPOConfig>(kFixture); }),
             Contains("`actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu` (") &&
                 Contains("_generated_ppo_trainer.yaml:67): [actor] Please set at least one of"));
  std::vector<std::string> ov = kMicroBatches;
  ov.push_back("data.max_prompt_length=1024");
  ov.push_back("actor_rollout_ref.actor.ppo_epochs=2");
  const auto l = load_config<PPOConfig>(kFixture, ov);
  CHECK(l.config.actor_rollout_ref.rollout.prompt_length == 1024);  // follows data.max_prompt_length
  CHECK(l.config.critic.ppo_epochs == 2);                           // follows actor.ppo_epochs
  CHECK(l.config.critic.forward_micro_batch_size_per_gpu == std::optional<std::int64_t>(4));
  CHECK_THAT(l.yaml, Contains("  ppo_epochs: 2\n"));
}

TEST_CASE("PPOConfig: did-you-mean across sections, type errors and cross-field checks name the keys", "[config][ppo]") {
  auto err = [](const std::vector<std::string>& extra) {
    std::vector<std::string> ov = kMicroBatches;  // first, so that the test's own overrides win
    ov.insert(ov.end(), extra.begin(), extra.end());
    return error_of([&] { (void)load_config<PPOConfig>(kFixture, ov); });
  };
  CHECK(err({}).empty());
  CHECK_THAT(err({"trainer.lr=1e-5"}), Contains("unknown key `trainer.lr` (command-line override `trainer.lr=1e-5`); did you "
                                                "mean `actor_rollout_ref.actor.optim.lr` or `critic.optim.lr`?"));
  CHECK_THAT(err({"trainer.total_epoch=3"}), Contains("did you mean `trainer.total_epochs`?"));
  CHECK_THAT(err({"actor_rollout_ref.actor.ppo_mini_batchsize=8"}),
             Contains("did you mean `actor_rollout_ref.actor.ppo_mini_batch_size`"));
  CHECK_THAT(err({"trainer.total_epochs=ten"}), Contains("`trainer.total_epochs` (command-line override "
                                                         "`trainer.total_epochs=ten`): expected an integer, found string \"ten\""));
  CHECK_THAT(err({"trainer.resume_mode=sometimes"}), Contains("\"sometimes\" is not one of \"auto\", \"disable\", \"resume_path\""));
  CHECK_THAT(err({"actor_rollout_ref.actor.loss_agg_mode=mean"}),
             Contains("`actor_rollout_ref.actor.loss_agg_mode` (command-line override") && Contains("\"token-mean\""));
  CHECK_THAT(err({"actor_rollout_ref.actor.ppo_epochs=0"}), Contains("`actor_rollout_ref.actor.ppo_epochs` (") &&
                                                                Contains("must be >= 1, got 0"));
  CHECK_THAT(err({"actor_rollout_ref.actor.optim.betas=[0.9]"}), Contains("`actor_rollout_ref.actor.optim.betas`") &&
                                                                     Contains("must have 2 values"));
  CHECK_THAT(err({"actor_rollout_ref.actor.optim.warmup_style=linear"}), Contains("\"linear\" is not one of"));
  CHECK_THAT(err({"actor_rollout_ref.actor.ppo_micro_batch_size=4"}), Contains("You have set both"));
  // The fixture names 1 node x 8 GPUs, so load's batch checks are verl's for 8 processes: 256 prompts x 5 / 8.
  CHECK_THAT(err({"actor_rollout_ref.rollout.n=5", "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=3"}),
             Contains("`actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu`") &&
                 Contains("normalized ppo_mini_batch_size 160 (ppo_mini_batch_size * rollout.n / 8 process(es)) should be "
                          "divisible by ppo_micro_batch_size_per_gpu 3"));
  CHECK_THAT(err({"data.train_batch_size=100"}), Contains("`data.train_batch_size` (") &&
                                                     Contains("real_train_batch_size (100) must be divisible by minimal "
                                                              "possible batch size (8)"));
  CHECK_THAT(err({"data.train_batch_size=96"}), Contains("train_batch_size (96) must be >= actor.ppo_mini_batch_size (256)"));
  CHECK_THAT(err({"data.train_batch_size=384"}), Contains("must be divisible by ppo_mini_batch_size * rollout.n"));
  CHECK_THAT(err({"actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=null"}),
             Contains("`actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu`") &&
                 Contains("[actor_rollout_ref.rollout] Please set at least one of"));
  CHECK_THAT(err({"actor_rollout_ref.actor.use_kl_loss=true"}), Contains("[actor_rollout_ref.ref] Please set at least one of"));
  CHECK(err({"actor_rollout_ref.actor.use_kl_loss=true", "actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu=8"}).empty());
  CHECK_THAT(err({"critic.ppo_micro_batch_size_per_gpu=null"}), Contains("[critic] Please set at least one of"));
  // No critic for GRPO: its micro-batch size is not needed, but critic_warmup is then an error.
  CHECK(err({"algorithm.adv_estimator=grpo", "critic.ppo_micro_batch_size_per_gpu=null"}).empty());
  CHECK_THAT(err({"algorithm.adv_estimator=grpo", "trainer.critic_warmup=2"}),
             Contains("`trainer.critic_warmup`") && Contains("no critic is trained"));
  CHECK_THAT(err({"trainer.resume_mode=resume_path"}), Contains("`trainer.resume_from_path`") &&
                                                           Contains("must be set when resume_mode is resume_path"));
  CHECK_THAT(err({"actor_rollout_ref.rollout.val_kwargs.do_sample=true", "actor_rollout_ref.rollout.val_kwargs.temperature=0.6",
                  "actor_rollout_ref.rollout.temperature=0", "actor_rollout_ref.rollout.do_sample=false"}),
             Contains("validation gen temperature should be greater than 0 when enabling do_sample"));
  CHECK_THAT(err({"algorithm.filter_groups.enable=true"}), Contains("`algorithm.filter_groups.metric`"));
  CHECK_THAT(err({"actor_rollout_ref.model.lora_rank=8"}), Contains("LoRA is not implemented"));
  CHECK_THAT(err({"trainer.device=tpu"}), Contains("expected auto, cpu, cuda or cuda:N"));
  // Deprecated aliases are applied, as verl's __post_init__ does.
  const auto l = load_config<PPOConfig>(kFixture, std::vector<std::string>{kMicroBatches[0], kMicroBatches[1], kMicroBatches[2],
                                                                           "actor_rollout_ref.actor.optim.warmup_style=cosine",
                                                                           "critic.optim.grad_clip=0.5"});
  CHECK(l.config.actor_rollout_ref.actor.optim.lr_scheduler_type == LRSchedulerType::cosine);
  CHECK(l.config.critic.optim.clip_grad == 0.5);
}

TEST_CASE("PPOConfig: rollout_correction bypass mode and override_optimizer_config", "[config][ppo]") {
  auto err = [](const std::vector<std::string>& extra) {
    std::vector<std::string> ov = kMicroBatches;
    ov.insert(ov.end(), extra.begin(), extra.end());
    return error_of([&] { (void)load_config<PPOConfig>(kFixture, ov); });
  };
  // verl 0.7.1's defaults: bypass off, no importance weights or rejection sampling; no optimizer overrides.
  const auto d = load_config<PPOConfig>(kFixture, kMicroBatches).config;
  CHECK_FALSE(d.algorithm.rollout_correction.bypass_mode);
  CHECK(d.algorithm.rollout_correction.loss_type == "ppo_clip");
  CHECK_FALSE(d.actor_rollout_ref.actor.optim.fused());
  const std::string bypass = "algorithm.rollout_correction.bypass_mode=true";
  const std::string logps = "actor_rollout_ref.rollout.calculate_log_probs=true";
  CHECK(err({bypass, logps}).empty());
  CHECK_THAT(err({bypass}), Contains("`algorithm.rollout_correction.bypass_mode`") &&
                                Contains("set actor_rollout_ref.rollout.calculate_log_probs=true"));
  CHECK_THAT(err({bypass, logps, "actor_rollout_ref.actor.policy_loss.loss_mode=gspo"}),
             Contains("verl's bypass_mode loss replaces the configured one") && Contains("\"gspo\""));
  CHECK_THAT(err({"algorithm.rollout_correction.rollout_is=token"}),
             Contains("`algorithm.rollout_correction.rollout_is`") && Contains("set it to null"));
  CHECK_THAT(err({"algorithm.rollout_correction.rollout_rs=seq_mean_k3"}),
             Contains("`algorithm.rollout_correction.rollout_rs`") && Contains("rejection sampling is not implemented"));
  CHECK_THAT(err({"algorithm.rollout_correction.loss_type=reinforce"}), Contains("implements ppo_clip only"));
  CHECK_THAT(err({"algorithm.rollout_correction.bypass_mod=true"}),
             Contains("did you mean `algorithm.rollout_correction.bypass_mode`"));
  // override_optimizer_config: `fused` selects the fused AdamW kernel; anything else is refused.
  const auto f = load_config<PPOConfig>(kFixture, std::vector<std::string>{kMicroBatches[0], kMicroBatches[1], kMicroBatches[2],
                                                                           "actor_rollout_ref.actor.optim.override_optimizer_config={fused: true}"});
  CHECK(f.config.actor_rollout_ref.actor.optim.fused());
  CHECK_FALSE(f.config.critic.optim.fused());
  CHECK_THAT(err({"actor_rollout_ref.actor.optim.override_optimizer_config={foreach: true}"}),
             Contains("`actor_rollout_ref.actor.optim.override_optimizer_config.foreach`") &&
                 Contains("it reads `fused` only"));
  CHECK_THAT(err({"critic.optim.override_optimizer_config={fused: 1}"}), Contains("must be true or false"));
  CHECK_THAT(err({"critic.optim.override_optimizer_config=[1]"}), Contains("must be a mapping or null"));
}

TEST_CASE("PPOConfig: a short hand-written config, with the keys' lines in errors", "[config][ppo]") {
  verl::test::TempDir dir("config");
  const auto path = dir.path / "grpo.yaml";
  std::ofstream(path) << "data:\n  train_files: [a.jsonl, b.jsonl]\n  train_batch_size: 8\n"
                         "actor_rollout_ref:\n  actor:\n    ppo_mini_batch_size: 4\n    ppo_micro_batch_size_per_gpu: 2\n"
                         "    use_kl_loss: true\n  rollout:\n    n: 4\n    log_prob_micro_batch_size_per_gpu: 4\n"
                         "  ref:\n    log_prob_micro_batch_size_per_gpu: 4\n"
                         "algorithm:\n  adv_estimator: grpo\ntrainer:\n  logger: [console, jsonl]\n  totl_epochs: 1\n";
  CHECK_THAT(error_of([&] { (void)load_config<PPOConfig>(path); }),
             Contains("unknown key `trainer.totl_epochs` (" + path.string() + ":18); did you mean `trainer.total_epochs`?"));
  std::ofstream(path, std::ios::app) << "  total_epochs: 2\n";  // the same file with the key spelled right as well
  std::string text;
  {
    std::ifstream in(path);
    std::ostringstream s;
    s << in.rdbuf();
    text = s.str();
  }
  text.erase(text.find("  totl_epochs: 1\n"), 16);
  const auto l = load_text<PPOConfig>(text, "grpo.yaml");
  CHECK(l.config.data.train_files.files == std::vector<std::string>{"a.jsonl", "b.jsonl"});
  CHECK(l.config.actor_rollout_ref.rollout.n == 4);
  CHECK(l.config.trainer.total_epochs == 2);
  CHECK(l.config.trainer.logger == std::vector<std::string>{"console", "jsonl"});
  CHECK(!l.config.use_critic());
  CHECK(l.config.use_reference_policy());
  CHECK(l.config.critic.ppo_mini_batch_size == 4);  // follows the actor's
}

// Issue 7: the keys of several processes. Expected values are hand-derived from verl 0.7.1's rules
// (ray_trainer._validate_config, ActorConfig.validate, the FSDP workers' normalisation, fsdp_sft_trainer's
// _normalize_config_bsz) as quoted in trainer_config.hpp.
TEST_CASE("PPOConfig: strategy, trainer.nnodes / n_gpus_per_node against the launch, verl's batch rules per process",
          "[config][ppo][dist]") {
  // GRPO: 8 prompts x n = 2 responses per step, mini-batches of 4 prompts (8 responses), micro-batches of 2.
  const std::string text =
      "data:\n  train_files: a.jsonl\n  train_batch_size: 8\n"
      "actor_rollout_ref:\n  actor:\n    ppo_mini_batch_size: 4\n    ppo_micro_batch_size_per_gpu: 2\n"
      "    use_kl_loss: true\n  rollout:\n    n: 2\n    log_prob_micro_batch_size_per_gpu: 4\n"
      "  ref:\n    log_prob_micro_batch_size_per_gpu: 4\nalgorithm:\n  adv_estimator: grpo\n";
  auto load = [&](const std::vector<std::string>& ov) { return load_text<PPOConfig>(text, "grpo.yaml", ov).config; };
  auto layout_error = [&](const std::vector<std::string>& ov, std::int64_t world, std::int64_t local) {
    return error_of([&] { load(ov).validate_layout({.world_size = world, .local_world_size = local}); });
  };
  const auto c = load({});
  CHECK(c.actor_rollout_ref.actor.strategy == "dp");
  CHECK(c.critic.strategy == "dp");
  CHECK(!c.trainer.nnodes);
  CHECK(!c.trainer.n_gpus_per_node);
  // 1, 2 and 4 processes: 8 / 4 / 2 responses of a mini-batch per process, each divisible by the micro-batch 2.
  CHECK(layout_error({}, 1, 1).empty());
  CHECK(layout_error({}, 2, 2).empty());
  CHECK(layout_error({}, 4, 2).empty());  // 2 nodes of 2
  // 8 processes: a mini-batch's 4 x 2 = 8 responses / 8 = 1 per process, not divisible by the micro-batch 2.
  CHECK_THAT(layout_error({}, 8, 8),
             Contains("verl::config: `actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu` (with WORLD_SIZE=8 "
                      "process(es)): normalized ppo_mini_batch_size 1 (ppo_mini_batch_size * rollout.n / 8 process(es)) "
                      "should be divisible by ppo_micro_batch_size_per_gpu 2"));
  // 3 processes: verl's rule, 8 x 2 = 16 responses over 3.
  CHECK_THAT(layout_error({}, 3, 3), Contains("`data.train_batch_size` (with WORLD_SIZE=3 process(es)): "
                                              "real_train_batch_size (16) must be divisible by minimal possible batch size (3)"));
  // n = 3 on 6 processes: 24 responses divide (verl's rule), but 8 whole prompts do not.
  CHECK_THAT(layout_error({"actor_rollout_ref.rollout.n=3"}, 6, 6),
             Contains("`data.train_batch_size`") && Contains("is 8 prompts, expected a multiple of the 6 data-parallel processes"));
  // n = 1 on 8 processes: a mini-batch of 4 responses leaves none for some processes (verl: 4 // 8 = 0).
  CHECK_THAT(layout_error({"actor_rollout_ref.rollout.n=1"}, 8, 8),
             Contains("`actor_rollout_ref.actor.ppo_mini_batch_size`") &&
                 Contains("ppo_mini_batch_size 0 should be larger than 0 after normalization"));
  // 12 prompts, mini-batches of 6 (n = 1) on 4 processes: 6 responses do not split evenly (verl would round down).
  CHECK_THAT(layout_error({"data.train_batch_size=12", "actor_rollout_ref.actor.ppo_mini_batch_size=6",
                           "actor_rollout_ref.rollout.n=1"}, 4, 4),
             Contains("ppo_mini_batch_size * rollout.n (6) must be divisible by the 4 data-parallel processes"));
  // The deprecated global micro-batch size is divided by the processes and must be >= their number.
  const std::vector<std::string> global_micro = {"actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=null",
                                                 "actor_rollout_ref.actor.ppo_micro_batch_size=2"};
  CHECK(layout_error(global_micro, 2, 2).empty());  // 2 / 2 = 1 per process; 8 / 2 = 4 responses, divisible by 1
  CHECK_THAT(layout_error(global_micro, 4, 4), Contains("`actor_rollout_ref.actor.ppo_micro_batch_size`") &&
                                                   Contains("ppo_micro_batch_size (2) * ulysses_sequence_parallel_size (1) "
                                                            "must be >= n_gpus (4)"));
  CHECK_THAT(layout_error({"actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=null",
                           "actor_rollout_ref.rollout.log_prob_micro_batch_size=2"}, 4, 4),
             Contains("`actor_rollout_ref.rollout.log_prob_micro_batch_size`") && Contains("expected >= 4"));
  // The layout keys: null takes the launch; set, they must match it.
  CHECK(layout_error({"trainer.nnodes=2", "trainer.n_gpus_per_node=2"}, 4, 2).empty());
  CHECK(layout_error({"trainer.nnodes=1"}, 2, 2).empty());
  CHECK_THAT(layout_error({"trainer.n_gpus_per_node=4"}, 2, 2),
             Contains("verl::config: `trainer.n_gpus_per_node` (with WORLD_SIZE=2 process(es)): is 4 but the launcher "
                      "started WORLD_SIZE=2 process(es), LOCAL_WORLD_SIZE=2 on this node; set it to 2 or to null"));
  CHECK_THAT(layout_error({"trainer.nnodes=2", "trainer.n_gpus_per_node=2"}, 2, 2),
             Contains("`trainer.nnodes` (with WORLD_SIZE=2 process(es)): trainer.nnodes x trainer.n_gpus_per_node = 2 x 2 "
                      "= 4 processes, but the launcher started WORLD_SIZE=2"));
  CHECK_THAT(layout_error({"trainer.nnodes=1"}, 4, 2), Contains("`trainer.nnodes`") && Contains("that is 2 node(s)"));
  CHECK_THAT(layout_error({"trainer.n_gpus_per_node=2"}, 1, 1), Contains("`trainer.n_gpus_per_node`") &&
                                                                   Contains("set it to 1 or to null"));
  // load's own checks use the processes the keys name: 1 x 3 processes cannot share 16 responses.
  CHECK_THAT(error_of([&] { (void)load({"trainer.n_gpus_per_node=3"}); }),
             Contains("`data.train_batch_size` (grpo.yaml:3)") && Contains("minimal possible batch size (3)"));
  CHECK_THAT(error_of([&] { (void)load({"trainer.nnodes=0"}); }), Contains("`trainer.nnodes`") && Contains("must be > 0"));
  // Strategies: dp, fsdp, fsdp2; the critic's follows the actor's unless set.
  CHECK(load({"actor_rollout_ref.actor.strategy=fsdp"}).critic.strategy == "fsdp");
  CHECK(load({"actor_rollout_ref.actor.strategy=fsdp2", "critic.strategy=dp"}).critic.strategy == "dp");
  CHECK_THAT(error_of([&] { (void)load({"actor_rollout_ref.actor.strategy=megatron"}); }),
             Contains("`actor_rollout_ref.actor.strategy` (command-line override") &&
                 Contains("is \"megatron\", expected \"dp\"") && Contains("Megatron is not available"));
  CHECK_THAT(error_of([&] { (void)load({"critic.strategy=ddp"}); }), Contains("`critic.strategy`"));
  CHECK(load({"actor_rollout_ref.nccl_timeout=30"}).actor_rollout_ref.nccl_timeout == 30);
  CHECK_THAT(error_of([&] { (void)load({"actor_rollout_ref.nccl_timeout=0"}); }),
             Contains("`actor_rollout_ref.nccl_timeout`") && Contains("must be > 0 seconds"));
}

TEST_CASE("OfflineConfig: engine.strategy, the layout keys and verl's SFT batch rules per process", "[config][offline][dist]") {
  auto load = [](const std::vector<std::string>& ov) { return load_overrides<OfflineConfig>(ov).config; };
  auto layout_error = [&](const std::vector<std::string>& ov, std::int64_t world, std::int64_t local) {
    return error_of([&] { load(ov).validate_layout({.world_size = world, .local_world_size = local}); });
  };
  CHECK(load({}).engine.strategy == "dp");
  CHECK(load({"engine.strategy=fsdp", "engine.param_offload=true", "engine.fsdp_size=-1"}).engine.strategy == "fsdp");
  CHECK_THAT(error_of([&] { (void)load({"engine.strategy=megatron"}); }),
             Contains("`engine.strategy`") && Contains("Megatron is not available"));
  CHECK(layout_error({}, 2, 2).empty());  // 256 rows, 128 per process
  CHECK_THAT(layout_error({"data.train_batch_size=6"}, 4, 4),
             Contains("verl::config: `data.train_batch_size` (with WORLD_SIZE=4 process(es)): Global batch size 6 is not "
                      "divisible by dp size 4"));
  // Without dynamic batch size each process's share is cut into micro-batches: 8 / 2 = 4 rows, 8 / 4 = 2 rows.
  const std::vector<std::string> fixed = {"data.use_dynamic_bsz=false", "data.train_batch_size=8", "data.micro_batch_size_per_gpu=4"};
  CHECK(layout_error(fixed, 2, 2).empty());
  CHECK_THAT(layout_error(fixed, 4, 4), Contains("`data.micro_batch_size_per_gpu`") &&
                                            Contains("train_batch_size per process (8 / 4 = 2) must be divisible by "
                                                     "micro_batch_size_per_gpu (4)"));
  CHECK_THAT(layout_error({"trainer.n_gpus_per_node=2"}, 1, 1), Contains("`trainer.n_gpus_per_node` (with WORLD_SIZE=1"));
  CHECK(layout_error({"trainer.nnodes=1", "trainer.n_gpus_per_node=2"}, 2, 2).empty());
}

TEST_CASE("OfflineConfig: defaults (verl sft_trainer_engine.yaml, TRL DPO/KTO) and checks", "[config][offline]") {
  const auto l = load_overrides<OfflineConfig>({});
  CHECK(l.config.optim.lr == 1e-3);  // verl optim/fsdp.yaml
  CHECK(l.config.data.micro_batch_size_per_gpu == 4);
  CHECK(l.config.data.use_dynamic_bsz);
  CHECK(l.config.trainer.seed == 1);
  CHECK(l.config.trainer.default_local_dir == "checkpoints/gsm8k-sft/test");
  CHECK(l.config.dpo.beta == 0.1);
  CHECK(l.config.dpo.loss_type == "sigmoid");
  CHECK(l.config.kto.desirable_weight == 1.0);
  CHECK(l.config.trainer.device == "auto");
  CHECK(load_overrides<OfflineConfig>({"dpo.beta=0.25", "optim.lr=1e-5"}).config.dpo.beta == 0.25);  // braced overrides
  auto err = [](std::vector<std::string> ov) { return error_of([&] { (void)load_overrides<OfflineConfig>(ov); }); };
  CHECK_THAT(err({"dpo.loss_type=simpo"}), Contains("`dpo.loss_type` (command-line override `dpo.loss_type=simpo`): is "
                                                    "\"simpo\", expected one of \"sigmoid\""));
  CHECK_THAT(err({"kto.loss_type=bco"}), Contains("expected one of \"kto\", \"apo_zero_unpaired\""));
  CHECK_THAT(err({"dpo.label_smoothing=0.5"}), Contains("must be in [0, 0.5)"));
  CHECK_THAT(err({"data.max_prompt_length=2048"}), Contains("must be smaller than max_length (1024)"));
  CHECK_THAT(err({"data.use_dynamic_bsz=false", "data.micro_batch_size_per_gpu=5"}),
             Contains("train_batch_size (256) must be divisible by micro_batch_size_per_gpu (5)"));
  CHECK_THAT(err({"trainer.project=x"}), Contains("did you mean `trainer.project_name`?"));
}

// The reference in docs/config.md is generated from the structs; it must be current.
TEST_CASE("docs/config.md equals the reference generated from the structs", "[config][docs]") {
  const std::string path = kSourceDir + "/docs/config.md";
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  const bool current = text.str() == config_reference_markdown();
  if (!current)
    FAIL("docs/config.md is stale or missing; regenerate it with: <build>/tests/verl_unit_config \"[write-config-reference]\"");
  CHECK(current);
}

// Hidden: run explicitly to regenerate docs/config.md (atomically).
TEST_CASE("write docs/config.md", "[.write-config-reference]") {
  verl::checkpoint::write_file_atomically(kSourceDir + "/docs/config.md", config_reference_markdown());
  SUCCEED("wrote " << kSourceDir << "/docs/config.md");
}
