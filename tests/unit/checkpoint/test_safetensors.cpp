// safetensors reading and writing (include/verl/checkpoint/safetensors_header.hpp, mapped_file.hpp,
// atomic_file.hpp, safetensors.hpp) against the format as huggingface/safetensors 0.8.0 implements it
// (safetensors/src/tensor.rs: read_metadata, Metadata::validate, prepare/serialize). Which files that library
// accepts is cross-checked file by file in tests/parity/checkpoint; here every rejection is pinned to its
// message, and the LibTorch side (dtypes, zero-copy, atomic writes) is tested.
#include "catch_torch.hpp"

#include "verl/checkpoint/atomic_file.hpp"
#include "verl/checkpoint/mapped_file.hpp"
#include "verl/checkpoint/safetensors.hpp"
#include "verl/checkpoint/safetensors_header.hpp"

#include "checkpoint_test_util.hpp"
#include "error_of.hpp"

#include <sys/stat.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <random>
#include <string>
#include <vector>

namespace fs = std::filesystem;
using namespace verl::checkpoint;
using verl::test::error_of;
using namespace verl::test::checkpoint;
using Catch::Matchers::Contains;

namespace {

Header parse(const std::string& file) { return parse_header(file.data(), file.size(), "mem.safetensors"); }

std::string parse_error(const std::string& file) {
  return error_of<verl::InputError>([&] { (void)parse(file); });
}

// Deterministic random bytes viewed as `dtype` with `sizes` (every bit pattern, NaNs included).
torch::Tensor random_tensor(at::ScalarType dtype, std::vector<std::int64_t> sizes, std::uint64_t seed) {
  const auto item = static_cast<std::int64_t>(c10::elementSize(dtype));
  std::int64_t n = 1;
  for (auto d : sizes) n *= d;
  torch::manual_seed(seed);
  auto bytes = torch::randint(0, 256, {n * item}, torch::kUInt8);  // (n*item,)
  if (dtype == at::kBool) bytes = bytes.remainder(2);               // bool bytes must be 0 or 1
  return bytes.view(dtype).reshape(sizes);
}

// The tensor's bytes (contiguous CPU), for bit-exact comparison of any dtype.
std::string bytes_of(const torch::Tensor& t) {
  const auto c = t.contiguous();
  return {static_cast<const char*>(c.data_ptr()), static_cast<std::size_t>(c.nbytes())};
}

const std::string kGood = R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";

}  // namespace

TEST_CASE("safetensors dtypes: names, widths and LibTorch types", "[checkpoint][safetensors]") {
  CHECK(all_dtypes.size() == 22);  // the variants of safetensors 0.8.0's Dtype enum
  for (Dtype d : all_dtypes) {
    INFO(dtype_name(d));
    CHECK(parse_dtype(dtype_name(d)) == d);
    const auto st = scalar_type_of(d);
    if (d == Dtype::F6_E2M3 || d == Dtype::F6_E3M2) {
      CHECK_FALSE(st.has_value());
      CHECK(dtype_bits(d) == 6);
    } else {
      REQUIRE(st.has_value());
      CHECK(dtype_of(*st) == d);
      // float4_e2m1fn_x2 packs two F4 values into its one byte.
      CHECK(dtype_bits(d) * (d == Dtype::F4 ? 2 : 1) == 8 * c10::elementSize(*st));
    }
  }
  CHECK_FALSE(parse_dtype("f32").has_value());
  CHECK_FALSE(parse_dtype("F8_E4M3FN").has_value());
  CHECK_THAT(error_of<verl::ShapeError>([] { (void)dtype_of(at::kComplexDouble, "tensor `w`"); }),
             Contains("tensor `w` has dtype ComplexDouble") && Contains("no type for"));
}

TEST_CASE("parse_header accepts the reference's valid edge cases", "[checkpoint][safetensors]") {
  SECTION("padding, unknown fields, null metadata, names in any order") {
    const std::string header =
        R"({"__metadata__":null,"b":{"dtype":"I8","shape":[4],"data_offsets":[0,4],"extra":{"a":[1,[2]]}},)"
        R"("a":{"dtype":"BF16","shape":[2],"data_offsets":[4,8]}}    )";
    const auto h = parse(raw_file(header, 8));
    CHECK(h.header_size == header.size());
    CHECK_FALSE(h.has_metadata);
    REQUIRE(h.tensors.size() == 2);
    CHECK(h.tensors[0] == TensorInfo{"b", Dtype::I8, {4}, 0, 4});  // data order, not name order
    CHECK(h.tensors[1] == TensorInfo{"a", Dtype::BF16, {2}, 4, 8});
    CHECK(h.data_offset() == 8 + h.header_size);
    CHECK(h.data_size() == 8);
  }
  SECTION("metadata, escapes, empty and scalar tensors, zero-size tensors anywhere") {
    const auto h = parse(raw_file(
        R"({"__metadata__":{"format":"pt","k\n":"v\u00e9"},"s":{"dtype":"F64","shape":[],"data_offsets":[0,8]},)"
        R"("e\"":{"dtype":"F32","shape":[0,3],"data_offsets":[8,8]},)"
        R"("z":{"dtype":"U8","shape":[0,18446744073709551615],"data_offsets":[0,0]}})",
        8));
    CHECK(h.has_metadata);
    CHECK(h.metadata == std::map<std::string, std::string>{{"format", "pt"}, {"k\n", "v\xc3\xa9"}});
    REQUIRE(h.tensors.size() == 3);
    CHECK(h.tensors[0].name == "z");  // [0,0] sorts before [0,8]
    CHECK(h.tensors[1].name == "s");
    CHECK(h.tensors[1].shape.empty());
    CHECK(h.tensors[2].name == "e\"");
  }
  SECTION("no tensors, no data") { CHECK(parse(raw_file("{}")).tensors.empty()); }
  SECTION("F4 and F6 byte sizes") {
    // F4 [2,4]: 8 x 4 bits = 4 bytes; F6 [4]: 4 x 6 bits = 3 bytes.
    const auto h = parse(raw_file(R"({"a":{"dtype":"F4","shape":[2,4],"data_offsets":[0,4]},)"
                                  R"("b":{"dtype":"F6_E2M3","shape":[4],"data_offsets":[4,7]}})",
                                  7));
    CHECK(h.tensors.size() == 2);
  }
  SECTION("127 levels of nesting (serde_json's limit) in an ignored field") {
    const std::string deep = std::string(125, '[') + std::string(125, ']');
    CHECK(parse(raw_file(R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"u":)" + deep + "}}", 8))
              .tensors.size() == 1);
  }
}

TEST_CASE("parse_header rejects hostile files with a message naming the file and the problem",
          "[checkpoint][safetensors]") {
  struct Case {
    const char* what;
    std::string file;
    const char* message;
  };
  const auto entry = [](const std::string& body) { return R"({"x":{)" + body + "}}"; };
  const std::string deep = std::string(126, '[') + std::string(126, ']');
  const std::vector<Case> cases = {
      {"file shorter than 8 bytes", std::string("\x05\0\0", 3), "the file has 3 bytes, fewer than the 8-byte"},
      {"header length beyond the file", raw_file(kGood, 8, 1000), "header length 1000 runs beyond the end of the file"},
      {"header length above 100 MB", raw_file(kGood, 8, 100'000'001), "exceeds the limit of 100000000"},
      {"header length u64 max", raw_file(kGood, 8, ~std::uint64_t{0}), "exceeds the limit"},
      {"empty header", raw_file(""), "the header is empty"},
      {"leading whitespace", raw_file(" " + kGood, 8), "starts with byte 0x20, expected '{'"},
      {"array header", raw_file("[]"), "starts with byte 0x5b"},
      {"invalid UTF-8", raw_file("{\"x\xff\":1}"), "not valid UTF-8 (byte 3 of the header)"},
      {"UTF-8 surrogate", raw_file("{\"\xed\xa0\x80\":1}"), "not valid UTF-8"},
      {"NUL byte after the object", raw_file(kGood + std::string(1, '\0'), 8), "NUL byte at byte 54"},
      {"trailing characters", raw_file(kGood + "x", 8), "the header is not valid JSON"},
      {"unterminated object", raw_file(kGood.substr(0, kGood.size() - 1), 8), "not valid JSON"},
      {"trailing comma", raw_file(R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8],}})", 8), "not valid JSON"},
      {"lone surrogate escape", raw_file(R"({"\ud800":1})"), "not valid JSON"},
      {"entry not an object", raw_file(R"({"x":5})"), "tensor `x` is the number 5, expected an object"},
      {"entry as an array", raw_file(R"({"x":["F32",[2],[0,8]]})", 8), "tensor `x` is an array, expected an object"},
      {"missing dtype", raw_file(entry(R"("shape":[2],"data_offsets":[0,8])"), 8), "tensor `x`: missing field `dtype`"},
      {"missing shape", raw_file(entry(R"("dtype":"F32","data_offsets":[0,8])"), 8), "missing field `shape`"},
      {"missing data_offsets", raw_file(entry(R"("dtype":"F32","shape":[2])"), 8), "missing field `data_offsets`"},
      {"unknown dtype", raw_file(entry(R"("dtype":"F31","shape":[2],"data_offsets":[0,8])"), 8),
       "tensor `x`: unknown dtype \"F31\", expected one of BOOL, F4"},
      {"dtype not a string", raw_file(entry(R"("dtype":1,"shape":[2],"data_offsets":[0,8])"), 8),
       "`dtype` is the number 1"},
      {"dtype as an enum map", raw_file(entry(R"("dtype":{"F32":null},"shape":[2],"data_offsets":[0,8])"), 8),
       "`dtype` is an object"},
      {"negative dimension", raw_file(entry(R"("dtype":"F32","shape":[-2],"data_offsets":[0,8])"), 8),
       "`shape` element 0 is the negative number -2, expected an integer >= 0"},
      {"minus zero", raw_file(entry(R"("dtype":"F32","shape":[-0],"data_offsets":[0,0])")), "negative number -0"},
      {"fractional dimension", raw_file(entry(R"("dtype":"F32","shape":[2.0],"data_offsets":[0,8])"), 8),
       "non-integer number 2.0"},
      {"dimension beyond u64", raw_file(entry(R"("dtype":"F32","shape":[18446744073709551616],"data_offsets":[0,8])"), 8),
       "non-integer number 18446744073709551616"},
      {"shape not an array", raw_file(entry(R"("dtype":"F32","shape":2,"data_offsets":[0,8])"), 8),
       "`shape` is the number 2, expected an array"},
      {"nested shape", raw_file(entry(R"("dtype":"F32","shape":[[2]],"data_offsets":[0,8])"), 8),
       "`shape` element 0 is an array"},
      {"element count overflows", raw_file(entry(R"("dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8])"), 8),
       "shape [4294967296, 4294967296] overflows 64 bits when multiplied out"},
      {"bit count overflows", raw_file(entry(R"("dtype":"F32","shape":[576460752303423488],"data_offsets":[0,8])"), 8),
       "overflows 64 bits in bits"},
      {"huge then zero", raw_file(entry(R"("dtype":"U8","shape":[18446744073709551615,2,0],"data_offsets":[0,0])")),
       "overflows 64 bits when multiplied out"},
      {"three offsets", raw_file(entry(R"("dtype":"F32","shape":[2],"data_offsets":[0,8,8])"), 8),
       "`data_offsets` has more than 2 elements"},
      {"one offset", raw_file(entry(R"("dtype":"F32","shape":[2],"data_offsets":[0])"), 8), "`data_offsets` has 1 elements"},
      {"negative offset", raw_file(entry(R"("dtype":"F32","shape":[2],"data_offsets":[-8,0])"), 8),
       "`data_offsets` element 0 is the negative number -8"},
      {"offsets reversed", raw_file(entry(R"("dtype":"F32","shape":[0],"data_offsets":[8,0])"), 8),
       "data_offsets [8, 0] end before they begin"},
      {"gap at the start", raw_file(entry(R"("dtype":"F32","shape":[2],"data_offsets":[4,12])"), 12),
       "data_offsets [4, 12] start at byte 4, expected byte 0"},
      {"gap between tensors",
       raw_file(R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"y":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})", 12),
       "tensor `y`: data_offsets [8, 12] start at byte 8, expected byte 4 (sorted by offset, the tensors must tile the "
       "data section without gaps)"},
      {"overlap",
       raw_file(R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"y":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", 8),
       "without overlaps"},
      {"span mismatch", raw_file(entry(R"("dtype":"F32","shape":[3],"data_offsets":[0,8])"), 8),
       "F32 x shape [3] is 12 bytes but data_offsets [0, 8] span 8"},
      {"offsets beyond the file", raw_file(kGood, 4), "the tensors cover 8 bytes of data but the file has 4 bytes"},
      {"data not covered", raw_file(kGood, 12), "the tensors cover 8 bytes of data but the file has 12 bytes"},
      {"data with no tensors", raw_file("{}", 1), "the tensors cover 0 bytes of data but the file has 1 bytes"},
      {"odd F4 count", raw_file(entry(R"("dtype":"F4","shape":[3],"data_offsets":[0,2])"), 2),
       "3 elements of F4 (4 bits each) are not a whole number of bytes"},
      {"F6 count not a multiple of 4", raw_file(entry(R"("dtype":"F6_E3M2","shape":[2],"data_offsets":[0,2])"), 2),
       "2 elements of F6_E3M2 (6 bits each)"},
      {"duplicate tensor (identical entries)",
       raw_file(R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 8),
       "tensor `x` appears twice in the header"},
      {"duplicate metadata", raw_file(R"({"__metadata__":{},"__metadata__":{}})"), "`__metadata__` appears twice"},
      {"duplicate metadata key", raw_file(R"({"__metadata__":{"a":"b","a":"c"}})"), "`__metadata__` key `a` appears twice"},
      {"duplicate field", raw_file(entry(R"("dtype":"F32","dtype":"F32","shape":[2],"data_offsets":[0,8])"), 8),
       "tensor `x`: field `dtype` appears twice"},
      {"metadata value not a string", raw_file(R"({"__metadata__":{"a":1}})"),
       "`__metadata__` value of `a` is the number 1, expected a string"},
      {"metadata not an object", raw_file(R"({"__metadata__":"s"})"), "`__metadata__` is the string \"s\""},
      {"number beyond f64 in an ignored field",
       raw_file(R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"u":[1e400]}})", 8),
       "not valid JSON (at byte 63 of the header): [json.exception.out_of_range.406] number overflow parsing '1e400'"},
      {"nesting of 128 levels", raw_file(R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"u":)" + deep + "}}", 8),
       "nests JSON deeper than 127 levels"},
  };
  for (const auto& c : cases) {
    INFO(c.what);
    const std::string message = parse_error(c.file);
    CHECK_THAT(message, Contains("verl::checkpoint: `mem.safetensors`: ") && Contains(c.message));
  }
}

TEST_CASE("plan_safetensors_file lays out a file as the reference's serialize does", "[checkpoint][safetensors]") {
  // Sorted by dtype (declaration order, descending: I64 > F32 > BOOL), then name; offsets accumulate:
  // a I64[1] -> [0,8], b F32[2] -> [8,16], c BOOL[3] -> [16,19]; metadata first; padded to 8 bytes.
  const std::vector<TensorSpec> specs = {{"c", Dtype::BOOL, {3}}, {"b", Dtype::F32, {2}}, {"a", Dtype::I64, {1}}};
  const auto plan = plan_safetensors_file(specs, {{"format", "pt"}}, true);
  std::string json =
      R"({"__metadata__":{"format":"pt"},"a":{"dtype":"I64","shape":[1],"data_offsets":[0,8]},)"
      R"("b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]},"c":{"dtype":"BOOL","shape":[3],"data_offsets":[16,19]}})";
  json.append((8 - json.size() % 8) % 8, ' ');
  CHECK(plan.prefix.substr(8) == json);
  CHECK(plan.prefix == raw_file(json));
  CHECK(plan.order == std::vector<std::size_t>{2, 1, 0});
  CHECK(plan.begin == std::vector<std::uint64_t>{16, 8, 0});
  CHECK(plan.nbytes == std::vector<std::uint64_t>{3, 8, 8});
  CHECK(plan.data_size == 19);
  // The plan parses back to the same entries.
  const auto h = parse(plan.prefix + std::string(19, '\0'));
  CHECK(h.tensors[0] == TensorInfo{"a", Dtype::I64, {1}, 0, 8});
  CHECK(h.metadata.at("format") == "pt");

  SECTION("names are escaped as serde_json does and sorted byte-wise") {
    const auto p = plan_safetensors_file({{"\xc3\xa9", Dtype::U8, {}}, {"q\"\\\n\x01", Dtype::U8, {}}}, {}, false);
    std::string want = R"({"q\"\\\n\u0001":{"dtype":"U8","shape":[],"data_offsets":[0,1]},")"
                       "\xc3\xa9"
                       R"(":{"dtype":"U8","shape":[],"data_offsets":[1,2]}})";
    want.append((8 - want.size() % 8) % 8, ' ');
    CHECK(p.prefix.substr(8) == want);
  }
  SECTION("invalid specs") {
    CHECK_THAT(error_of<verl::ConfigError>(
                   [] { (void)plan_safetensors_file({{"a", Dtype::U8, {1}}, {"a", Dtype::U8, {1}}}, {}, false); }),
               Contains("tensor name `a` appears twice"));
    CHECK_THAT(error_of<verl::ConfigError>([] { (void)plan_safetensors_file({{"__metadata__", Dtype::U8, {1}}}, {}, false); }),
               Contains("cannot be named `__metadata__`"));
    CHECK_THAT(error_of<verl::ConfigError>([] { (void)plan_safetensors_file({{"a\xff", Dtype::U8, {1}}}, {}, false); }),
               Contains("not valid UTF-8"));
    CHECK_THAT(error_of<verl::ConfigError>([] { (void)plan_safetensors_file({{"f", Dtype::F4, {3}}}, {}, false); }),
               Contains("tensor `f`: 3 elements of F4"));
    CHECK_THAT(error_of<verl::ConfigError>([] { (void)plan_safetensors_file({}, {{"k", "\xc0"}}, true); }),
               Contains("metadata value of `k` is not valid UTF-8"));
  }
}

TEST_CASE("save_safetensors and SafetensorsFile round-trip every LibTorch dtype bit for bit",
          "[checkpoint][safetensors]") {
  TempDir tmp;
  const fs::path path = tmp.path / "all.safetensors";
  std::vector<std::pair<std::string, torch::Tensor>> tensors;
  std::uint64_t seed = 1;
  for (Dtype d : all_dtypes) {
    if (const auto st = scalar_type_of(d)) {
      tensors.emplace_back(std::string("t_") + std::string(dtype_name(d)), random_tensor(*st, {3, 4}, seed++));
    }
  }
  REQUIRE(tensors.size() == 20);
  tensors.emplace_back("scalar", torch::tensor(2.5, torch::kFloat64).reshape({}));
  tensors.emplace_back("empty", torch::zeros({0, 7}, torch::kFloat16));
  tensors.emplace_back("strided", torch::arange(24, torch::kInt32).reshape({4, 6}).t().slice(0, 1, 5));  // (4,4)
  tensors.emplace_back("conj", torch::complex(torch::arange(3.0), torch::ones(3)).conj());
  tensors.emplace_back("sparse", torch::eye(3).to_sparse());
  tensors.emplace_back("grad", torch::ones({2}, torch::requires_grad()));
  save_safetensors(path, tensors, {{"format", "pt"}, {"note", "caf\xc3\xa9"}});
  CHECK(dir_listing(tmp.path) == std::vector<std::string>{"all.safetensors"});  // no temporary left

  const auto file = SafetensorsFile::open(path);
  CHECK(file.metadata() == std::map<std::string, std::string>{{"format", "pt"}, {"note", "caf\xc3\xa9"}});
  CHECK(file.names().size() == tensors.size());
  CHECK(std::is_sorted(file.names().begin(), file.names().end()));
  for (const auto& [name, t] : tensors) {
    INFO(name);
    REQUIRE(file.contains(name));
    const auto back = file.tensor(name);
    auto want = t.detach();
    if (want.layout() != at::kStrided) want = want.to_dense();
    want = want.resolve_conj();
    CHECK(back.scalar_type() == want.scalar_type());
    CHECK(back.sizes() == want.sizes());
    CHECK(bytes_of(back) == bytes_of(want));
  }
  // F4 is stored with the last dimension counting single values: (3,4) float4_e2m1fn_x2 -> F4 [3, 8].
  CHECK(file.info("t_F4").shape == std::vector<std::uint64_t>{3, 8});
  CHECK(file.info("t_F4").nbytes() == 12);
  // Wider dtypes first, so every tensor is aligned to its element size in the data section.
  for (const auto& t : file.header().tensors) {
    if (const auto st = scalar_type_of(t.dtype)) CHECK((file.header().data_offset() + t.begin) % c10::elementSize(*st) == 0);
  }
}

TEST_CASE("SafetensorsFile::tensor is a zero-copy view that outlives the file object and never writes the file",
          "[checkpoint][safetensors]") {
  TempDir tmp;
  const fs::path path = tmp.path / "w.safetensors";
  const auto w = torch::arange(12, torch::kFloat32).reshape({3, 4});  // (3,4)
  save_safetensors(path, {{"w", w}, {"b", torch::ones({4}, torch::kBFloat16)}});
  const std::string before = read_all(path);
  torch::Tensor view;
  {
    const auto file = SafetensorsFile::open(path);
    view = file.tensor("w");
    const auto& map = file.mapping();
    CHECK(map.contains(view.data_ptr(), view.nbytes()));
    CHECK(view.data_ptr() == static_cast<void*>(map.data() + file.header().data_offset() + file.info("w").begin));
    CHECK(file.raw_bytes("w").data_ptr() == view.data_ptr());
    CHECK(file.raw_bytes("w").numel() == 48);
  }  // the file object is gone; the tensor keeps the mapping alive
  CHECK(torch::equal(view, w));
  view.mul_(2);  // private copy-on-write page
  CHECK(torch::equal(view, w * 2));
  CHECK(read_all(path) == before);
  CHECK(torch::equal(SafetensorsFile::open(path).tensor("w"), w));
  // Replacing the file by an atomic save leaves an existing view intact.
  const auto again = SafetensorsFile::open(path).tensor("w");
  save_safetensors(path, {{"w", torch::zeros({3, 4})}});
  CHECK(torch::equal(again, w));
  CHECK(torch::equal(SafetensorsFile::open(path).tensor("w"), torch::zeros({3, 4})));
}

TEST_CASE("SafetensorsFile copies misaligned data and handles F4, F6 and huge dimensions explicitly",
          "[checkpoint][safetensors]") {
  TempDir tmp;
  SECTION("misaligned F32 data (header of 61 bytes): a copy with the right values") {
    const std::string header = R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}       )";
    REQUIRE((8 + header.size()) % 4 != 0);
    std::string file = raw_file(header);
    const float values[2] = {1.5f, -2.0f};
    file.append(reinterpret_cast<const char*>(values), 8);
    write_all(tmp.path / "m.safetensors", file);
    const auto f = SafetensorsFile::open(tmp.path / "m.safetensors");
    const auto t = f.tensor("x");
    CHECK_FALSE(f.mapping().contains(t.data_ptr(), 1));
    CHECK(torch::equal(t, torch::tensor({1.5f, -2.0f})));
  }
  SECTION("F6 has no LibTorch type: tensor() says so, raw_bytes() gives the packed bytes") {
    write_all(tmp.path / "f6.safetensors",
              raw_file(R"({"q":{"dtype":"F6_E2M3","shape":[2,4],"data_offsets":[0,6]}})", 6));
    const auto f = SafetensorsFile::open(tmp.path / "f6.safetensors");
    CHECK_THAT(error_of<verl::InputError>([&] { (void)f.tensor("q"); }),
               Contains("f6.safetensors`: tensor `q`: dtype F6_E2M3 has no LibTorch type; read its packed bytes with "
                        "raw_bytes()"));
    CHECK(torch::equal(f.raw_bytes("q"), torch::arange(6, torch::kUInt8)));
  }
  SECTION("F4 with an odd last dimension cannot pair into float4_e2m1fn_x2") {
    write_all(tmp.path / "f4.safetensors", raw_file(R"({"q":{"dtype":"F4","shape":[2,3],"data_offsets":[0,3]}})", 3));
    const auto f = SafetensorsFile::open(tmp.path / "f4.safetensors");
    CHECK_THAT(error_of<verl::InputError>([&] { (void)f.tensor("q"); }), Contains("F4 shape [2, 3] has no even last"));
    CHECK(f.raw_bytes("q").numel() == 3);
  }
  SECTION("a zero-size tensor with a dimension beyond int64") {
    write_all(tmp.path / "z.safetensors",
              raw_file(R"({"z":{"dtype":"U8","shape":[0,9223372036854775808],"data_offsets":[0,0]}})"));
    const auto f = SafetensorsFile::open(tmp.path / "z.safetensors");
    CHECK_THAT(error_of<verl::InputError>([&] { (void)f.tensor("z"); }), Contains("exceeds the int64 range"));
    CHECK(f.raw_bytes("z").numel() == 0);
  }
}

TEST_CASE("SafetensorsFile::open names the file in its errors", "[checkpoint][safetensors]") {
  TempDir tmp;
  CHECK_THAT(error_of<verl::InputError>([&] { (void)SafetensorsFile::open(tmp.path / "none.safetensors"); }),
             Contains("cannot open `" + (tmp.path / "none.safetensors").string() + "`: No such file"));
  CHECK_THAT(error_of<verl::InputError>([&] { (void)SafetensorsFile::open(tmp.path); }),
             Contains("is not a regular file"));
  write_all(tmp.path / "empty.safetensors", "");
  CHECK_THAT(error_of<verl::InputError>([&] { (void)SafetensorsFile::open(tmp.path / "empty.safetensors"); }),
             Contains("empty.safetensors`: the file has 0 bytes"));
  write_all(tmp.path / "bad.safetensors", raw_file(kGood, 4));
  CHECK_THAT(error_of<verl::InputError>([&] { (void)SafetensorsFile::open(tmp.path / "bad.safetensors"); }),
             Contains("bad.safetensors`: the tensors cover 8 bytes"));
  write_all(tmp.path / "ok.safetensors", raw_file(kGood, 8));
  const auto f = SafetensorsFile::open(tmp.path / "ok.safetensors");
  CHECK_THAT(error_of<verl::InputError>([&] { (void)f.tensor("y"); }),
             Contains("ok.safetensors` has no tensor `y` (it has 1 tensors)"));
}

TEST_CASE("save_safetensors rejects what the format cannot hold and leaves the target untouched on failure",
          "[checkpoint][safetensors]") {
  TempDir tmp;
  const fs::path path = tmp.path / "t.safetensors";
  save_safetensors(path, {{"a", torch::ones({2})}});
  const std::string before = read_all(path);
  CHECK_THAT(error_of<verl::ShapeError>([&] { save_safetensors(path, {{"c", torch::ones({2}, torch::kComplexDouble)}}); }),
             Contains("save_safetensors: tensor `c` has dtype ComplexDouble"));
  CHECK_THAT(error_of<verl::ShapeError>([&] { save_safetensors(path, {{"u", torch::Tensor()}}); }),
             Contains("tensor `u` is undefined"));
  CHECK_THAT(error_of<verl::ShapeError>([&] {
               save_safetensors(path, {{"f", torch::zeros({}, torch::kUInt8).view(at::ScalarType::Float4_e2m1fn_x2)}});
             }),
             Contains("0-d float4_e2m1fn_x2"));
  CHECK_THAT(error_of<verl::ConfigError>([&] { save_safetensors(path, {{"a", torch::ones(1)}, {"a", torch::ones(1)}}); }),
             Contains("tensor name `a` appears twice"));
  // A failure after the temporary file exists (a meta tensor cannot be copied to the CPU).
  CHECK_THROWS(save_safetensors(path, {{"ok", torch::ones({2})}, {"meta", torch::empty({2}, torch::kMeta)}}));
  CHECK(read_all(path) == before);
  CHECK(dir_listing(tmp.path) == std::vector<std::string>{"t.safetensors"});
  CHECK_THAT(error_of<verl::Error>([&] { save_safetensors(tmp.path / "no" / "x.safetensors", {}); }),
             Contains("cannot create a temporary file") && Contains("/no/.x.safetensors.tmp-"));
}

TEST_CASE("AtomicFile: commit replaces the target with umask permissions, abandoning removes the temporary",
          "[checkpoint][atomic]") {
  TempDir tmp;
  const fs::path target = tmp.path / "f.txt";
  write_all(target, "old");
  {
    AtomicFile f(target);
    CHECK(fs::exists(f.temp_path()));
    CHECK(f.temp_path().parent_path() == tmp.path);
    f.write("new content");
    CHECK(read_all(target) == "old");
  }  // not committed
  CHECK(read_all(target) == "old");
  CHECK(dir_listing(tmp.path) == std::vector<std::string>{"f.txt"});
  write_file_atomically(target, "new");
  CHECK(read_all(target) == "new");
  CHECK(dir_listing(tmp.path) == std::vector<std::string>{"f.txt"});
  const mode_t mask = ::umask(0);
  ::umask(mask);
  struct stat st {};
  REQUIRE(::stat(target.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == (0666 & ~mask));
}
