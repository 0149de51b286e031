// The C++ side of the checkpoint parity tests (parity_checkpoint.py drives it):
//   check <file>...                      one line per file: "OK" or "ERR <message>"
//   dump <file> <out.json>               header, metadata and every tensor's bytes (hex) as verl reads them
//   rewrite <in> <out>                   reads every tensor of <in> with tensor() and writes <out> with
//                                        save_safetensors and <in>'s metadata
//   save-checkpoint <in> <order.json> <dir> <max_shard_bytes>
//                                        save_checkpoint of <in>'s tensors in the order of the JSON list
//   read-checkpoint <dir> <out.json>     every tensor of a model directory, with the file holding it
#include "verl/checkpoint/hf_checkpoint_files.hpp"
#include "verl/checkpoint/safetensors.hpp"

#include <nlohmann/json.hpp>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

using namespace verl::checkpoint;
using nlohmann::json;

namespace {

std::string hex(const void* data, std::size_t n) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string s;
  s.reserve(2 * n);
  const auto* p = static_cast<const unsigned char*>(data);
  for (std::size_t i = 0; i < n; ++i) {
    s += digits[p[i] >> 4];
    s += digits[p[i] & 0xF];
  }
  return s;
}

json describe(const SafetensorsFile& f, const std::string& name) {
  const TensorInfo& info = f.info(name);
  json j;
  j["dtype"] = std::string(dtype_name(info.dtype));
  j["shape"] = info.shape;
  const auto raw = f.raw_bytes(name);
  j["bytes"] = hex(raw.data_ptr(), static_cast<std::size_t>(raw.numel()));
  if (scalar_type_of(info.dtype)) {
    try {
      const auto t = f.tensor(name);
      j["torch_dtype"] = std::string(c10::toString(t.scalar_type()));
      j["torch_shape"] = t.sizes().vec();
      const auto c = t.contiguous();
      j["tensor_bytes"] = hex(c.data_ptr(), static_cast<std::size_t>(c.nbytes()));
      j["zero_copy"] = t.nbytes() > 0 && f.mapping().contains(t.data_ptr(), t.nbytes());
    } catch (const verl::InputError& e) {
      j["tensor_error"] = e.what();
    }
  }
  return j;
}

void write_json(const std::string& path, const json& j) {
  std::ofstream out(path);
  out << j.dump(1, ' ', true) << "\n";
}

std::vector<std::pair<std::string, at::Tensor>> all_tensors(const SafetensorsFile& f,
                                                            const std::vector<std::string>& order) {
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (const auto& name : order) out.emplace_back(name, f.tensor(name));
  return out;
}

int run(int argc, char** argv) {
  const std::string cmd = argc > 1 ? argv[1] : "";
  if (cmd == "check") {
    for (int i = 2; i < argc; ++i) {
      try {
        (void)SafetensorsFile::open(argv[i]);
        std::cout << "OK\n";
      } catch (const verl::InputError& e) {
        std::string m = e.what();
        // One line per file: every control byte becomes a space (a message may quote raw header bytes, and a
        // '\r' or '\x1c' there would end the line for the Python side).
        for (char& c : m) {
          const auto u = static_cast<unsigned char>(c);
          if (u < 0x20 || u == 0x7f) c = ' ';
        }
        std::cout << "ERR " << m << "\n";
      }
    }
    return 0;
  }
  if (cmd == "dump" && argc == 4) {
    const auto f = SafetensorsFile::open(argv[2]);
    json j;
    j["metadata"] = f.metadata();
    j["has_metadata"] = f.header().has_metadata;
    j["tensors"] = json::object();
    for (const auto& name : f.names()) j["tensors"][name] = describe(f, name);
    write_json(argv[3], j);
    return 0;
  }
  if (cmd == "rewrite" && argc == 4) {
    const auto f = SafetensorsFile::open(argv[2]);
    save_safetensors(argv[3], all_tensors(f, f.names()), f.metadata());
    return 0;
  }
  if (cmd == "save-checkpoint" && argc == 6) {
    const auto f = SafetensorsFile::open(argv[2]);
    std::ifstream in(argv[3]);
    const auto order = json::parse(in).get<std::vector<std::string>>();
    save_checkpoint(argv[4], all_tensors(f, order), std::stoull(argv[5]));
    return 0;
  }
  if (cmd == "read-checkpoint" && argc == 4) {
    const auto r = CheckpointReader::open(argv[2]);
    json j = json::object();
    for (const auto& name : r.names()) {
      const auto t = r.tensor(name).contiguous();
      j[name] = {{"file", r.file_of(name).filename().string()},
                 {"torch_dtype", std::string(c10::toString(t.scalar_type()))},
                 {"torch_shape", t.sizes().vec()},
                 {"tensor_bytes", hex(t.data_ptr(), static_cast<std::size_t>(t.nbytes()))}};
    }
    write_json(argv[3], j);
    return 0;
  }
  std::cerr << "usage: see the comment at the top of ckpt_parity_tool.cpp\n";
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
}
