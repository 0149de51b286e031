#pragma once
//! \file
//! Saving and restoring the state of torch::optim::AdamW and torch::optim::Adam keyed by parameter NAMES, so
//! that a fresh process, with a model rebuilt from its Hugging Face directory and a new optimizer over its
//! parameters, continues bit for bit where the saved one stopped.
//!
//! A directory holds two files, each written atomically:
//! - `optimizer.safetensors`: per parameter with state, `<name>.exp_avg`, `<name>.exp_avg_sq` and, with
//!   amsgrad, `<name>.max_exp_avg_sq`, in the parameter's dtype and shape (exact bytes).
//! - `optimizer.json`: {"format": "verl-cpp optimizer state", "version": 1, "optimizer": "AdamW"|"Adam",
//!   "param_groups": [{"lr", "betas": [b1, b2], "eps", "weight_decay", "amsgrad", "params": [names...]}],
//!   "state": {"<name>": {"step": n}}}. Doubles are written with round-trip precision.
//! Parameters without state (never stepped, e.g. no gradient yet) have no entry, as in LibTorch.
//!
//! \code
//!   verl::trainer::save_optimizer_state(opt, lm->named_parameters(), dir);
//!   ... new process: rebuild lm, torch::optim::AdamW opt2(lm->parameters(), same options) ...
//!   verl::trainer::load_optimizer_state(opt2, lm->named_parameters(), dir);
//! \endcode

#include "verl/checkpoint/atomic_file.hpp"
#include "verl/checkpoint/safetensors.hpp"
#include "verl/core/errors.hpp"

#include <ATen/core/Tensor.h>
#include <nlohmann/json.hpp>
#include <torch/optim/adam.h>
#include <torch/optim/adamw.h>
#include <torch/optim/optimizer.h>
#include <torch/ordered_dict.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <typeinfo>
#include <memory>
#include <sstream>
#include <string>
#include <tuple>
#include <unordered_map>
#include <utility>
#include <vector>

namespace verl::trainer {

//! Parameter names and tensors, as torch::nn::Module::named_parameters() returns them.
using NamedParameters = torch::OrderedDict<std::string, at::Tensor>;

inline constexpr const char* optimizer_state_tensors_name = "optimizer.safetensors";
inline constexpr const char* optimizer_state_json_name = "optimizer.json";

namespace detail {

// The name of each parameter tensor (by TensorImpl; the first name wins for a tensor registered twice).
[[nodiscard]] inline std::unordered_map<const void*, std::string> names_by_impl(const NamedParameters& named) {
  std::unordered_map<const void*, std::string> out;
  for (const auto& item : named) out.emplace(item.value().unsafeGetTensorImpl(), item.key());
  return out;
}

[[nodiscard]] inline std::string shape_string(at::IntArrayRef sizes) {
  std::ostringstream o;
  o << sizes;
  return o.str();
}

// Names of every parameter of every group, in order. Throws verl::ConfigError for one without a name.
[[nodiscard]] inline std::vector<std::vector<std::string>> group_names(const torch::optim::Optimizer& opt,
                                                                      const NamedParameters& named,
                                                                      std::string_view who) {
  const auto names = names_by_impl(named);
  std::vector<std::vector<std::string>> out;
  for (std::size_t g = 0; g < opt.param_groups().size(); ++g) {
    auto& list = out.emplace_back();
    const auto& params = opt.param_groups()[g].params();
    for (std::size_t i = 0; i < params.size(); ++i) {
      const auto it = names.find(params[i].unsafeGetTensorImpl());
      verl::detail::check<ConfigError>(it != names.end(), who, ": parameter ", i, " of param group ", g,
                                       " (shape ", shape_string(params[i].sizes()),
                                       ") is not among the named parameters given; expected the "
                                       "named_parameters() of the module the optimizer trains");
      list.push_back(it->second);
    }
  }
  return out;
}

// The Adam-family pieces both optimizers share: options and per-parameter state types.
template <class Options, class State>
struct AdamFamily {
  static nlohmann::json options_json(const torch::optim::OptimizerOptions& o) {
    const auto& a = static_cast<const Options&>(o);
    return {{"lr", a.lr()},
            {"betas", {std::get<0>(a.betas()), std::get<1>(a.betas())}},
            {"eps", a.eps()},
            {"weight_decay", a.weight_decay()},
            {"amsgrad", a.amsgrad()}};
  }
  static void set_options(torch::optim::OptimizerOptions& o, const nlohmann::json& j) {
    auto& a = static_cast<Options&>(o);
    a.lr(j.at("lr").get<double>());
    a.betas(std::make_tuple(j.at("betas").at(0).get<double>(), j.at("betas").at(1).get<double>()));
    a.eps(j.at("eps").get<double>());
    a.weight_decay(j.at("weight_decay").get<double>());
    a.amsgrad(j.at("amsgrad").get<bool>());
  }
};

using AdamWFamily = AdamFamily<torch::optim::AdamWOptions, torch::optim::AdamWParamState>;
using AdamOnlyFamily = AdamFamily<torch::optim::AdamOptions, torch::optim::AdamParamState>;

// "AdamW" or "Adam"; throws verl::ConfigError for other optimizers.
[[nodiscard]] inline std::string optimizer_kind(const torch::optim::Optimizer& opt, std::string_view who) {
  if (dynamic_cast<const torch::optim::AdamW*>(&opt) != nullptr) return "AdamW";
  if (dynamic_cast<const torch::optim::Adam*>(&opt) != nullptr) return "Adam";
  throw ConfigError(verl::detail::concat_message(who, ": unsupported optimizer type `", typeid(opt).name(),
                                                 "`; expected torch::optim::AdamW or torch::optim::Adam"));
}

template <class State>
void collect_state(const torch::optim::Optimizer& opt, const std::vector<std::vector<std::string>>& names,
                   nlohmann::json& state_json, std::vector<std::pair<std::string, at::Tensor>>& tensors) {
  for (std::size_t g = 0; g < names.size(); ++g) {
    const auto& params = opt.param_groups()[g].params();
    for (std::size_t i = 0; i < params.size(); ++i) {
      const auto it = opt.state().find(params[i].unsafeGetTensorImpl());
      if (it == opt.state().end()) continue;
      const auto& s = static_cast<const State&>(*it->second);
      const std::string& name = names[g][i];
      state_json[name] = {{"step", s.step()}};
      tensors.emplace_back(name + ".exp_avg", s.exp_avg());
      tensors.emplace_back(name + ".exp_avg_sq", s.exp_avg_sq());
      if (s.max_exp_avg_sq().defined()) tensors.emplace_back(name + ".max_exp_avg_sq", s.max_exp_avg_sq());
    }
  }
}

}  // namespace detail

//! Writes `optimizer.safetensors` and then `optimizer.json` into `dir` (created if missing). Every parameter
//! of the optimizer must be in `named`. Throws verl::ConfigError for an optimizer other than AdamW/Adam or
//! an unnamed parameter, verl::Error for I/O failures.
inline void save_optimizer_state(const torch::optim::Optimizer& opt, const NamedParameters& named,
                                 const std::filesystem::path& dir) {
  constexpr std::string_view who = "verl::trainer::save_optimizer_state";
  const std::string kind = detail::optimizer_kind(opt, who);
  const auto names = detail::group_names(opt, named, who);
  nlohmann::json j{{"format", "verl-cpp optimizer state"}, {"version", 1}, {"optimizer", kind}};
  j["param_groups"] = nlohmann::json::array();
  for (std::size_t g = 0; g < names.size(); ++g) {
    const auto& o = opt.param_groups()[g].options();
    auto gj = kind == "AdamW" ? detail::AdamWFamily::options_json(o) : detail::AdamOnlyFamily::options_json(o);
    gj["params"] = names[g];
    j["param_groups"].push_back(std::move(gj));
  }
  j["state"] = nlohmann::json::object();
  std::vector<std::pair<std::string, at::Tensor>> tensors;
  if (kind == "AdamW") {
    detail::collect_state<torch::optim::AdamWParamState>(opt, names, j["state"], tensors);
  } else {
    detail::collect_state<torch::optim::AdamParamState>(opt, names, j["state"], tensors);
  }
  std::filesystem::create_directories(dir);
  checkpoint::save_safetensors(dir / optimizer_state_tensors_name, tensors, {{"format", "pt"}});
  checkpoint::write_file_atomically(dir / optimizer_state_json_name, j.dump(1) + "\n");
}

//! Restores what save_optimizer_state wrote into `opt`, an optimizer of the same kind over parameters with
//! the same names, shapes and dtypes, grouped the same way. The state tensors are copied onto each
//! parameter's device; param-group hyper-parameters (lr, betas, eps, weight_decay, amsgrad) are set from
//! the file. All checks run before anything changes: on an error `opt` is untouched. Throws
//! verl::InputError naming the file and the offending parameter/key (missing files, malformed JSON, another
//! optimizer kind, different group count or names, a missing tensor, a shape or dtype that differs from the
//! parameter's).
inline void load_optimizer_state(torch::optim::Optimizer& opt, const NamedParameters& named,
                                 const std::filesystem::path& dir) {
  constexpr std::string_view who = "verl::trainer::load_optimizer_state";
  const auto json_path = dir / optimizer_state_json_name;
  const auto fail = [&](const std::filesystem::path& file, auto&&... parts) {
    throw InputError(verl::detail::concat_message(who, ": `", file.string(), "`: ", parts...));
  };
  const std::string kind = detail::optimizer_kind(opt, who);
  const auto names = detail::group_names(opt, named, who);

  nlohmann::json j;
  {
    std::ifstream in(json_path, std::ios::binary);
    if (!in) fail(json_path, "cannot open; expected the optimizer state that save_optimizer_state writes");
    try {
      j = nlohmann::json::parse(in);
    } catch (const nlohmann::json::exception& e) {
      fail(json_path, "is not valid JSON: ", e.what());
    }
  }
  try {
    if (j.value("format", std::string{}) != "verl-cpp optimizer state") {
      fail(json_path, "field `format` is not \"verl-cpp optimizer state\"");
    }
    const auto saved_kind = j.at("optimizer").get<std::string>();
    if (saved_kind != kind) fail(json_path, "holds the state of ", saved_kind, ", but the optimizer is ", kind);
    const auto& groups = j.at("param_groups");
    if (groups.size() != names.size()) {
      fail(json_path, "has ", groups.size(), " param groups, the optimizer has ", names.size());
    }
    for (std::size_t g = 0; g < names.size(); ++g) {
      const auto saved = groups[g].at("params").get<std::vector<std::string>>();
      for (std::size_t i = 0; i < std::max(saved.size(), names[g].size()); ++i) {
        const std::string s = i < saved.size() ? saved[i] : "(none)";
        const std::string n = i < names[g].size() ? names[g][i] : "(none)";
        if (s != n) {
          fail(json_path, "param group ", g, ", position ", i, ": saved parameter `", s,
               "`, but the optimizer has `", n, "`; expected the same parameters in the same order");
        }
      }
    }
  } catch (const nlohmann::json::exception& e) {
    fail(json_path, "is malformed: ", e.what());
  }

  const auto st_path = dir / optimizer_state_tensors_name;
  if (!std::filesystem::exists(st_path)) fail(st_path, "is missing");
  const auto file = checkpoint::SafetensorsFile::open(st_path);
  std::unordered_map<std::string, at::Tensor> param_of;
  for (const auto& item : named) param_of.emplace(item.key(), item.value());
  std::set<std::string> in_optimizer;
  for (const auto& g : names) in_optimizer.insert(g.begin(), g.end());

  // Read and check every state tensor first.
  struct Entry {
    at::Tensor param;
    std::int64_t step;
    at::Tensor exp_avg, exp_avg_sq, max_exp_avg_sq;
  };
  std::vector<Entry> entries;
  std::set<std::string> used_keys;
  std::unordered_map<std::string, bool> amsgrad_of;  // per parameter name, from its saved group
  for (std::size_t g = 0; g < names.size(); ++g) {
    const bool ams = j["param_groups"][g].value("amsgrad", false);
    for (const auto& n : names[g]) amsgrad_of[n] = ams;
  }
  try {
    for (const auto& [name, sj] : j.at("state").items()) {
      if (in_optimizer.count(name) == 0) {
        fail(json_path, "has state for parameter `", name, "`, which the optimizer does not train");
      }
      const at::Tensor& p = param_of.at(name);
      const auto read = [&](const std::string& key, bool required) -> at::Tensor {
        if (!file.contains(key)) {
          if (required) fail(st_path, "has no tensor `", key, "`");
          return {};
        }
        used_keys.insert(key);
        at::Tensor t = file.tensor(key);
        if (t.sizes() != p.sizes()) {
          fail(st_path, "tensor `", key, "` has shape ", detail::shape_string(t.sizes()), ", but parameter `", name,
               "` has shape ", detail::shape_string(p.sizes()));
        }
        if (t.scalar_type() != p.scalar_type()) {
          fail(st_path, "tensor `", key, "` has dtype ", t.scalar_type(), ", but parameter `", name, "` has dtype ",
               p.scalar_type());
        }
        return t.to(p.device()).clone();  // own memory (the file's tensors view its mapping)
      };
      Entry e{p, sj.at("step").get<std::int64_t>(), read(name + ".exp_avg", true), read(name + ".exp_avg_sq", true),
              read(name + ".max_exp_avg_sq", amsgrad_of.at(name))};
      if (e.step < 0) fail(json_path, "parameter `", name, "` has step ", e.step, "; expected >= 0");
      entries.push_back(std::move(e));
    }
  } catch (const nlohmann::json::exception& e) {
    fail(json_path, "is malformed: ", e.what());
  }
  for (const auto& key : file.names()) {
    if (used_keys.count(key) == 0) {
      fail(st_path, "has tensor `", key, "`, which no parameter state in `", json_path.string(), "` accounts for");
    }
  }

  // Everything checked: set the options and replace the state.
  for (std::size_t g = 0; g < names.size(); ++g) {
    const auto& gj = j["param_groups"][g];
    try {
      if (kind == "AdamW") {
        detail::AdamWFamily::set_options(opt.param_groups()[g].options(), gj);
      } else {
        detail::AdamOnlyFamily::set_options(opt.param_groups()[g].options(), gj);
      }
    } catch (const nlohmann::json::exception& e) {
      fail(json_path, "param group ", g, " is malformed: ", e.what());
    }
  }
  auto& state = opt.state();
  for (const auto& g : opt.param_groups()) {
    for (const auto& p : g.params()) state.erase(p.unsafeGetTensorImpl());
  }
  for (auto& e : entries) {
    if (kind == "AdamW") {
      auto s = std::make_unique<torch::optim::AdamWParamState>();
      s->step(e.step).exp_avg(e.exp_avg).exp_avg_sq(e.exp_avg_sq);
      if (e.max_exp_avg_sq.defined()) s->max_exp_avg_sq(e.max_exp_avg_sq);
      state[e.param.unsafeGetTensorImpl()] = std::move(s);
    } else {
      auto s = std::make_unique<torch::optim::AdamParamState>();
      s->step(e.step).exp_avg(e.exp_avg).exp_avg_sq(e.exp_avg_sq);
      if (e.max_exp_avg_sq.defined()) s->max_exp_avg_sq(e.max_exp_avg_sq);
      state[e.param.unsafeGetTensorImpl()] = std::move(s);
    }
  }
}

}  // namespace verl::trainer
