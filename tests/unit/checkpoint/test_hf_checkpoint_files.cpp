// Hugging Face model directories (include/verl/checkpoint/hf_checkpoint_files.hpp): save_checkpoint against
// transformers 5.23 save_pretrained + huggingface_hub's split_torch_state_dict_into_shards (hand-derived
// cases here; byte parity with the Python packages in tests/parity/checkpoint), CheckpointReader over single
// files and indexes, stale files of earlier saves, and every error of a broken directory.
#include "catch_torch.hpp"

#include "verl/checkpoint/hf_checkpoint_files.hpp"

#include "checkpoint_test_util.hpp"
#include "error_of.hpp"

#include <string>
#include <utility>
#include <vector>

namespace fs = std::filesystem;
using namespace verl::checkpoint;
using namespace verl::test::checkpoint;
using verl::test::error_of;
using Catch::Matchers::Contains;

namespace {

using Named = std::vector<std::pair<std::string, torch::Tensor>>;

// Five tensors of 40, 40, 40, 200 and 10 bytes.
Named five_tensors() {
  return {{"t0", torch::arange(10, torch::kFloat32)},
          {"t1", torch::arange(10, torch::kFloat32) + 10},
          {"t2", torch::arange(10, torch::kFloat32) + 20},
          {"t3", torch::arange(50, torch::kFloat32) + 30},
          {"t4", torch::arange(5, torch::kInt16)}};
}

void check_reads_back(const CheckpointReader& r, const Named& tensors) {
  REQUIRE(r.names().size() == tensors.size());
  for (const auto& [name, t] : tensors) {
    INFO(name);
    REQUIRE(r.contains(name));
    CHECK(torch::equal(r.tensor(name), t));
  }
}

}  // namespace

TEST_CASE("save_checkpoint shards like huggingface_hub and writes transformers' index", "[checkpoint][hf]") {
  TempDir tmp;
  const auto tensors = five_tensors();
  save_checkpoint(tmp.path, tensors, 100);
  // Derivation with max 100 bytes, in order: t0 (40) and t1 (80) fill shard A; t2 would make 120, so A
  // closes and t2 starts B; t3 (200 > 100) becomes its own shard at once, before B; t4 joins B (50).
  // Shards in order: A = {t0, t1}, {t3}, B = {t2, t4}; total 330 bytes.
  CHECK(dir_listing(tmp.path) ==
        std::vector<std::string>{"model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors",
                                 "model-00003-of-00003.safetensors", "model.safetensors.index.json"});
  // json.dumps(index, indent=2, sort_keys=True) + "\n"
  CHECK(read_all(tmp.path / "model.safetensors.index.json") ==
        "{\n"
        "  \"metadata\": {\n"
        "    \"total_size\": 330\n"
        "  },\n"
        "  \"weight_map\": {\n"
        "    \"t0\": \"model-00001-of-00003.safetensors\",\n"
        "    \"t1\": \"model-00001-of-00003.safetensors\",\n"
        "    \"t2\": \"model-00003-of-00003.safetensors\",\n"
        "    \"t3\": \"model-00002-of-00003.safetensors\",\n"
        "    \"t4\": \"model-00003-of-00003.safetensors\"\n"
        "  }\n"
        "}\n");
  const auto shard3 = SafetensorsFile::open(tmp.path / "model-00003-of-00003.safetensors");
  CHECK(shard3.names() == std::vector<std::string>{"t2", "t4"});
  CHECK(shard3.metadata() == std::map<std::string, std::string>{{"format", "pt"}});

  const auto r = CheckpointReader::open(tmp.path);
  CHECK(r.sharded());
  CHECK(r.files().size() == 3);
  CHECK(r.names() == std::vector<std::string>{"t0", "t1", "t2", "t3", "t4"});
  CHECK(r.file_of("t3") == tmp.path / "model-00002-of-00003.safetensors");
  check_reads_back(r, tensors);
  CHECK_THAT(error_of<verl::InputError>([&] { (void)r.tensor("t9"); }), Contains("has no tensor `t9` (it has 5 tensors)"));
}

TEST_CASE("save_checkpoint writes one model.safetensors when everything fits", "[checkpoint][hf]") {
  TempDir tmp;
  const auto tensors = five_tensors();
  save_checkpoint(tmp.path / "new" / "dir", tensors);  // created
  const fs::path dir = tmp.path / "new" / "dir";
  CHECK(dir_listing(dir) == std::vector<std::string>{"model.safetensors"});
  const auto r = CheckpointReader::open(dir);
  CHECK_FALSE(r.sharded());
  CHECK(r.file_of("t0") == dir / "model.safetensors");
  CHECK(r.files()[0].metadata() == std::map<std::string, std::string>{{"format", "pt"}});
  check_reads_back(r, tensors);
  SECTION("max_shard_bytes equal to the total still fits one file") {
    save_checkpoint(dir, tensors, 330);
    CHECK(dir_listing(dir) == std::vector<std::string>{"model.safetensors"});
  }
  SECTION("no tensors: one empty model.safetensors") {
    save_checkpoint(dir, {});
    CHECK(CheckpointReader::open(dir).names().empty());
  }
  SECTION("duplicate names") {
    CHECK_THAT(error_of<verl::ConfigError>([&] { save_checkpoint(dir, {{"a", torch::ones(1)}, {"a", torch::ones(1)}}); }),
               Contains("save_checkpoint: tensor name `a` appears twice"));
  }
}

TEST_CASE("save_checkpoint removes the stale files of an earlier save and nothing else", "[checkpoint][hf]") {
  TempDir tmp;
  const auto tensors = five_tensors();
  write_all(tmp.path / "config.json", "{}");
  write_all(tmp.path / "model-extra.safetensors", "keep");
  save_checkpoint(tmp.path, tensors, 100);  // 3 shards
  // Max 130: t0, t1, t2 fill the open shard to 120; t3 (200 > 130) is appended as a shard at once, so it is
  // shard 1; t4 brings the open shard to 130, which closes last as shard 2 = {t0, t1, t2, t4}.
  save_checkpoint(tmp.path, tensors, 130);
  CHECK(dir_listing(tmp.path) ==
        std::vector<std::string>{"config.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
                                 "model-extra.safetensors", "model.safetensors.index.json"});
  CHECK(CheckpointReader::open(tmp.path).file_of("t3") == tmp.path / "model-00001-of-00002.safetensors");
  CHECK(CheckpointReader::open(tmp.path).file_of("t4") == tmp.path / "model-00002-of-00002.safetensors");
  check_reads_back(CheckpointReader::open(tmp.path), tensors);
  save_checkpoint(tmp.path, tensors);  // single file: index and shards go
  CHECK(dir_listing(tmp.path) ==
        std::vector<std::string>{"config.json", "model-extra.safetensors", "model.safetensors"});
  save_checkpoint(tmp.path, tensors, 100);  // sharded again: model.safetensors goes (it would shadow the index)
  CHECK(dir_listing(tmp.path) ==
        std::vector<std::string>{"config.json", "model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors",
                                 "model-00003-of-00003.safetensors", "model-extra.safetensors",
                                 "model.safetensors.index.json"});
  check_reads_back(CheckpointReader::open(tmp.path), tensors);
}

TEST_CASE("CheckpointReader prefers model.safetensors and names every problem of a broken directory",
          "[checkpoint][hf]") {
  TempDir tmp;
  const fs::path dir = tmp.path;
  const auto open_error = [&] { return error_of<verl::InputError>([&] { (void)CheckpointReader::open(dir); }); };
  const std::string index = (dir / "model.safetensors.index.json").string();
  const auto write_index = [&](const std::string& s) { write_all(dir / "model.safetensors.index.json", s); };

  CHECK_THAT(error_of<verl::InputError>([&] { (void)CheckpointReader::open(dir / "absent"); }),
             Contains("absent` is not a directory"));
  CHECK_THAT(open_error(), Contains("has neither model.safetensors nor model.safetensors.index.json"));
  save_safetensors(dir / "a.safetensors", {{"a", torch::ones(2)}, {"b", torch::zeros(3)}});

  write_index("{\"weight_map\": ");
  CHECK_THAT(open_error(), Contains(index + "`: not valid JSON"));
  write_index("[]");
  CHECK_THAT(open_error(), Contains("the index is not a JSON object"));
  write_index(R"({"metadata": {}})");
  CHECK_THAT(open_error(), Contains("the index has no \"weight_map\""));
  write_index(R"({"weight_map": []})");
  CHECK_THAT(open_error(), Contains("\"weight_map\" is not an object"));
  write_index(R"({"weight_map": {"a": 3}})");
  CHECK_THAT(open_error(), Contains("\"weight_map\" maps `a` to 3, expected a shard file name"));
  write_index(R"({"weight_map": {"a": "../a.safetensors"}})");
  CHECK_THAT(open_error(), Contains("maps `a` to \"../a.safetensors\", expected a file name relative to the model"));
  write_index(R"({"weight_map": {"a": "/etc/passwd"}})");
  CHECK_THAT(open_error(), Contains("expected a file name relative"));
  write_index(R"({"weight_map": {"a": "a.safetensors", "a": "a.safetensors"}})");
  CHECK_THAT(open_error(), Contains("key `a` appears twice"));
  write_index(R"({"weight_map": {"a": "a.safetensors", "x": "gone-1.safetensors", "y": "gone-2.safetensors",
                                  "z": "gone-2.safetensors"}})");
  CHECK_THAT(open_error(), Contains("2 shard file(s) named in \"weight_map\" do not exist") &&
                               Contains("`gone-1.safetensors` (1 tensor(s), e.g. `x`)") &&
                               Contains("`gone-2.safetensors` (2 tensor(s), e.g. `y`)"));
  write_index(R"({"weight_map": {"a": "a.safetensors", "q": "a.safetensors", "r": "a.safetensors"}})");
  CHECK_THAT(open_error(), Contains("2 tensor(s) listed in \"weight_map\" are missing from their shard: "
                                    "`q` (in a.safetensors), `r` (in a.safetensors)"));
  write_all(dir / "bad.safetensors", "12345678");
  write_index(R"({"weight_map": {"a": "a.safetensors", "c": "bad.safetensors"}})");
  CHECK_THAT(open_error(), Contains("bad.safetensors`: header length"));

  // A valid index naming a subset of a shard's tensors: only those are visible.
  write_index(R"({"metadata": {"total_size": 8}, "weight_map": {"a": "a.safetensors"}})");
  const auto r = CheckpointReader::open(dir);
  CHECK(r.names() == std::vector<std::string>{"a"});
  CHECK_FALSE(r.contains("b"));
  CHECK(torch::equal(r.tensor("a"), torch::ones(2)));

  // model.safetensors wins over an index, as in transformers' from_pretrained.
  save_safetensors(dir / "model.safetensors", {{"w", torch::ones(1)}});
  CHECK(CheckpointReader::open(dir).names() == std::vector<std::string>{"w"});
}
