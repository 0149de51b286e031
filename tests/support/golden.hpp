// Golden vectors: reference outputs produced by running the reference implementation itself (verl's or TRL's
// Python functions, installed from PyPI by a generator script under tests/golden/), committed as small JSON
// files and loaded here as tensors.
//
// File format (tests/golden/<area>/<name>.json):
//   { "reference": "verl 0.x.y (PyPI), verl/trainer/ppo/core_algos.py",   // what produced the outputs
//     "generator": "tests/golden/generate_verl.py",                       // the command that regenerates it
//     "cases": [ { "name": "...", "config": { ... },                       // scalars/options of the call
//                  "inputs":  { "<arg>": TENSOR, ... },
//                  "outputs": { "<result>": TENSOR, ... } } ] }
//   TENSOR = { "dtype": "float32"|"float64"|"int64"|"bool", "shape": [d0, d1, ...], "data": [flat, row-major] }
//   Floating values are written with Python's repr of the float64 value (exact for float32 values too);
//   NaN and infinities are the strings "nan", "inf", "-inf".
#pragma once
#include "verl/core/errors.hpp"

#include <nlohmann/json.hpp>
#include <torch/types.h>

#include <cmath>
#include <fstream>
#include <limits>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#ifndef VERL_GOLDEN_DIR
#error "VERL_GOLDEN_DIR must name tests/golden (set by tests/CMakeLists.txt)"
#endif

namespace verl::test {

struct GoldenCase {
  std::string name;
  nlohmann::json config;
  std::map<std::string, at::Tensor> inputs;
  std::map<std::string, at::Tensor> outputs;

  [[nodiscard]] const at::Tensor& input(const std::string& key) const { return find(inputs, key, "input"); }
  [[nodiscard]] const at::Tensor& output(const std::string& key) const { return find(outputs, key, "output"); }

 private:
  const at::Tensor& find(const std::map<std::string, at::Tensor>& where, const std::string& key,
                         const char* kind) const {
    const auto it = where.find(key);
    if (it == where.end()) throw verl::InputError("golden case `" + name + "` has no " + kind + " `" + key + "`");
    return it->second;
  }
};

struct GoldenFile {
  std::string reference;
  std::vector<GoldenCase> cases;
};

namespace detail {

inline double golden_number(const nlohmann::json& v) {
  if (v.is_string()) {
    const auto s = v.get<std::string>();
    if (s == "nan") return std::numeric_limits<double>::quiet_NaN();
    if (s == "inf") return std::numeric_limits<double>::infinity();
    if (s == "-inf") return -std::numeric_limits<double>::infinity();
    throw verl::InputError("golden tensor value `" + s + "` is not a number, nan, inf or -inf");
  }
  return v.get<double>();
}

inline at::Tensor golden_tensor(const nlohmann::json& j, const std::string& where) {
  const auto dtype = j.at("dtype").get<std::string>();
  const auto shape = j.at("shape").get<std::vector<std::int64_t>>();
  const auto& data = j.at("data");
  std::vector<double> values;
  values.reserve(data.size());
  for (const auto& v : data) values.push_back(golden_number(v));
  auto t = torch::tensor(values, torch::kFloat64);
  std::int64_t numel = 1;
  for (auto d : shape) numel *= d;
  if (numel != t.numel())
    throw verl::InputError(where + ": shape holds " + std::to_string(numel) + " values, data has " +
                           std::to_string(t.numel()));
  t = t.reshape(shape);
  if (dtype == "float64") return t;
  if (dtype == "float32") return t.to(torch::kFloat32);
  if (dtype == "int64") return t.to(torch::kLong);
  if (dtype == "bool") return t.ne(0);
  throw verl::InputError(where + ": unknown dtype `" + dtype + "`");
}

inline std::map<std::string, at::Tensor> golden_tensors(const nlohmann::json& j, const std::string& where) {
  std::map<std::string, at::Tensor> out;
  for (const auto& [key, value] : j.items()) out.emplace(key, golden_tensor(value, where + "." + key));
  return out;
}

}  // namespace detail

//! Same dtype, same shape and every element equal, NaN matching NaN: the reference's bits, not merely close.
inline bool bit_identical(const at::Tensor& got, const at::Tensor& want) {
  if (got.scalar_type() != want.scalar_type() || got.sizes() != want.sizes()) return false;
  const auto both_nan = got.isnan().logical_and(want.isnan());
  return got.eq(want).logical_or(both_nan).all().item<bool>();
}

//! "<case name>\n got  <tensor>\n want <tensor>", for INFO() next to a failed comparison.
inline std::string describe(const GoldenCase& c, const at::Tensor& got, const at::Tensor& want) {
  std::ostringstream out;
  out << c.name << "\n got  " << got << "\n want " << want;
  return out.str();
}

//! Loads tests/golden/<relative_path>. \throws verl::InputError naming the file when it is missing or malformed.
inline GoldenFile load_golden(const std::string& relative_path) {
  const std::string path = std::string(VERL_GOLDEN_DIR) + "/" + relative_path;
  std::ifstream in(path);
  if (!in) throw verl::InputError("golden file " + path + " cannot be opened; regenerate it (see tests/golden/README.md)");
  nlohmann::json j;
  try {
    in >> j;
  } catch (const nlohmann::json::exception& e) {
    throw verl::InputError("golden file " + path + " is not valid JSON: " + e.what());
  }
  GoldenFile file;
  file.reference = j.value("reference", "");
  for (const auto& c : j.at("cases")) {
    GoldenCase gc;
    gc.name = c.at("name").get<std::string>();
    gc.config = c.value("config", nlohmann::json::object());
    gc.inputs = detail::golden_tensors(c.at("inputs"), path + ":" + gc.name + ".inputs");
    gc.outputs = detail::golden_tensors(c.at("outputs"), path + ":" + gc.name + ".outputs");
    file.cases.push_back(std::move(gc));
  }
  return file;
}

}  // namespace verl::test
