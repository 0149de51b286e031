#pragma once
//! \file
//! Training checkpoints: atomic, checksummed, keep-last-N, resumable (verl's `global_step_<N>` layout and
//! `latest_checkpointed_iteration.txt` tracker).
//!
//! A trainer registers once what it checkpoints, then saves and resumes with one call each:
//! \code
//!   verl::trainer::CheckpointContents parts;
//!   parts.model("actor", [&](const fs::path& p) { actor.save(p); })          // Hugging Face layout
//!        .optimizer("actor", actor_opt, actor.module()->named_parameters())
//!        .scheduler("actor", actor_sched)
//!        .rng("sampler", sampler_engine)                                       // a std::mt19937_64
//!        .data_position([&] { return data.state(); }, [&](const json& s) { data.load_state(s); })
//!        .config_text(effective_config_yaml);
//!   verl::trainer::CheckpointManager ckpt(root, /*keep_last_n=*/3);  // or CheckpointOptions
//!   if (auto last = ckpt.resume()) {                 // latest complete checkpoint, checksums verified
//!     actor_reload(last->model_dir("actor"));        // or a model(name, save, load) loader does it
//!     last->restore(parts);                          // optimizers, schedulers, RNGs, data position, states
//!     step = last->step();
//!   }
//!   ... every save_freq steps: ckpt.save(step, parts);
//! \endcode
//!
//! On disk, `<root>/global_step_<N>/`:
//! | entry | written when |
//! |---|---|
//! | `<model>/` (e.g. `actor/`: config.json, model.safetensors) | always, by the model's writer |
//! | `optimizer/<name>/optimizer.{safetensors,json}` (optimizer_state.hpp) | save_optimizer |
//! | `training_state.json`: step, scheduler states, std::mt19937_64 states, seeds, data position, named states | save_training_state |
//! | `rng_state.safetensors`: LibTorch's default CPU generator state (`torch_cpu`, uint8) | save_training_state |
//! | `config.yaml`: the effective config text | when given |
//! | `MANIFEST.json`: every other file with its size and SHA-256, the step, the switches | always, last |
//!
//! save() writes everything into `<root>/.tmp-global_step_<N>-<pid>-<n>/`, fsyncs each file and directory,
//! writes MANIFEST.json last, renames the directory into place and fsyncs `<root>`, then replaces the
//! tracker file atomically (the step number as text, as verl writes it), then deletes the oldest complete
//! checkpoints beyond keep_last_n (never the one just written). A crash at any point leaves either the
//! previous state or the new complete checkpoint plus, at worst, a `.tmp-*` (or `.trash-*`) directory that
//! scans report and ignore; remove_leftovers() deletes those, saying what it deletes.
//!
//! A checkpoint is COMPLETE when MANIFEST.json is present and valid, every file it lists exists with the
//! listed size and SHA-256, and no other file is present. latest()/resume() pick the highest complete step,
//! reporting every newer directory they skip and why; load() refuses an incomplete or corrupted checkpoint
//! with verl::InputError naming the file and what mismatched.
//!
//! Not here: CUDA generator states (only LibTorch's CPU generator is captured) and multi-rank checkpoints
//! (one process writes the whole directory).

#include "verl/checkpoint/atomic_file.hpp"
#include "verl/checkpoint/safetensors.hpp"
#include "verl/checkpoint/sha256.hpp"
#include "verl/core/errors.hpp"
#include "verl/trainer/lr_schedule.hpp"
#include "verl/trainer/optimizer_state.hpp"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>
#include <nlohmann/json.hpp>
#include <torch/optim/optimizer.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <unistd.h>

namespace verl::trainer {

inline constexpr std::string_view checkpoint_dir_prefix = "global_step_";
inline constexpr std::string_view checkpoint_tracker_name = "latest_checkpointed_iteration.txt";  // verl's
inline constexpr std::string_view checkpoint_manifest_name = "MANIFEST.json";
inline constexpr std::string_view training_state_name = "training_state.json";
inline constexpr std::string_view rng_state_name = "rng_state.safetensors";
inline constexpr std::string_view config_text_name = "config.yaml";
inline constexpr std::string_view optimizer_dir_name = "optimizer";

//! The parts of a training run a checkpoint holds. Holds references: the registered optimizers,
//! schedulers and engines must outlive it. Names are 1-64 characters of [A-Za-z0-9_.-], not starting with
//! '.', unique per kind; model names must not be `optimizer`.
class CheckpointContents {
 public:
  using DirWriter = std::function<void(const std::filesystem::path&)>;
  using DirReader = std::function<void(const std::filesystem::path&)>;
  using StateGetter = std::function<nlohmann::json()>;
  using StateSetter = std::function<void(const nlohmann::json&)>;

  //! A model directory `<name>/`: `save` writes it (the directory exists when called; write e.g. with
  //! Actor::save for Hugging Face layout). `load`, if given, is what Checkpoint::restore calls with it.
  CheckpointContents& model(std::string name, DirWriter save, DirReader load = {}) {
    check_name(name, "model", models_);
    verl::detail::check<ConfigError>(name != optimizer_dir_name,
                                     "verl::trainer::CheckpointContents::model: the name `optimizer` is reserved");
    verl::detail::check<ConfigError>(static_cast<bool>(save), "verl::trainer::CheckpointContents::model(`", name,
                                     "`): the writer is empty");
    models_.push_back({std::move(name), std::move(save), std::move(load)});
    return *this;
  }
  //! An optimizer (AdamW or Adam) and the named parameters it trains (save_optimizer_state's keys).
  CheckpointContents& optimizer(std::string name, torch::optim::Optimizer& opt, NamedParameters params) {
    check_name(name, "optimizer", optimizers_);
    optimizers_.push_back({std::move(name), &opt, std::move(params)});
    return *this;
  }
  //! A learning-rate scheduler (its state() goes into training_state.json).
  CheckpointContents& scheduler(std::string name, LRScheduler& s) {
    check_name(name, "scheduler", schedulers_);
    schedulers_.push_back({std::move(name), &s});
    return *this;
  }
  //! A std::mt19937_64 (its full state as text, restored exactly).
  CheckpointContents& rng(std::string name, std::mt19937_64& engine) {
    check_name(name, "rng", engines_);
    engines_.push_back({std::move(name), &engine});
    return *this;
  }
  //! Whether LibTorch's default CPU generator state is saved and restored (default: yes).
  CheckpointContents& torch_cpu_rng(bool on) {
    torch_cpu_rng_ = on;
    return *this;
  }
  //! Seeds or other RNG parameters, stored as given under training_state.json's rng.seeds.
  CheckpointContents& seeds(nlohmann::json s) {
    seeds_ = std::move(s);
    return *this;
  }
  //! A named JSON state (a KL controller, an epoch counter, ...): `get` at save, `set` at restore.
  CheckpointContents& state(std::string name, StateGetter get, StateSetter set) {
    check_name(name, "state", states_);
    verl::detail::check<ConfigError>(static_cast<bool>(get) && static_cast<bool>(set),
                                     "verl::trainer::CheckpointContents::state(`", name,
                                     "`): expected a getter and a setter");
    states_.push_back({std::move(name), std::move(get), std::move(set)});
    return *this;
  }
  //! The data provider's position (the named state `data_position`).
  CheckpointContents& data_position(StateGetter get, StateSetter set) {
    return state("data_position", std::move(get), std::move(set));
  }
  //! The effective configuration, written verbatim as config.yaml.
  CheckpointContents& config_text(std::string yaml) {
    config_text_ = std::move(yaml);
    return *this;
  }

 private:
  friend class CheckpointManager;
  friend class Checkpoint;

  struct Model {
    std::string name;
    DirWriter save;
    DirReader load;
  };
  struct Optim {
    std::string name;
    torch::optim::Optimizer* opt;
    NamedParameters params;
  };
  struct Sched {
    std::string name;
    LRScheduler* s;
  };
  struct Engine {
    std::string name;
    std::mt19937_64* e;
  };
  struct State {
    std::string name;
    StateGetter get;
    StateSetter set;
  };

  template <class V>
  static void check_name(const std::string& name, std::string_view kind, const V& existing) {
    bool ok = !name.empty() && name.size() <= 64 && name[0] != '.';
    for (char c : name) {
      ok = ok && ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
                  c == '-' || c == '.');
    }
    verl::detail::check<ConfigError>(ok, "verl::trainer::CheckpointContents::", kind, ": name `", name,
                                     "` is not valid; expected 1-64 characters of [A-Za-z0-9_.-], not starting "
                                     "with '.'");
    for (const auto& e : existing) {
      verl::detail::check<ConfigError>(e.name != name, "verl::trainer::CheckpointContents::", kind, ": name `",
                                       name, "` is registered twice");
    }
  }

  std::vector<Model> models_;
  std::vector<Optim> optimizers_;
  std::vector<Sched> schedulers_;
  std::vector<Engine> engines_;
  std::vector<State> states_;
  bool torch_cpu_rng_ = true;
  nlohmann::json seeds_;
  std::optional<std::string> config_text_;
};

namespace detail {

//! Removes `p` and everything under it (directory_iterator + remove; std::filesystem::remove_all is not
//! used because the PyPI libtorch.so exports a broken copy of it). Returns the first error, if any.
inline std::error_code remove_tree(const std::filesystem::path& p) {
  namespace fs = std::filesystem;
  std::error_code ec, first;
  if (fs::is_directory(fs::symlink_status(p, ec))) {
    std::vector<fs::path> children;  // collected first: removing while iterating is unspecified
    for (auto it = fs::directory_iterator(p, ec); !ec && it != fs::directory_iterator(); it.increment(ec)) {
      children.push_back(it->path());
    }
    if (ec && !first) first = ec;
    for (const auto& c : children) {
      const auto e = remove_tree(c);
      if (e && !first) first = e;
    }
  }
  fs::remove(p, ec);
  if (ec && !first) first = ec;
  return first;
}

//! The step of a `global_step_<digits>` name, or nullopt.
[[nodiscard]] inline std::optional<std::int64_t> step_of_dir_name(std::string_view name) {
  if (name.substr(0, checkpoint_dir_prefix.size()) != checkpoint_dir_prefix) return std::nullopt;
  const auto digits = name.substr(checkpoint_dir_prefix.size());
  if (digits.empty() || digits.size() > 18) return std::nullopt;
  std::int64_t v = 0;
  for (char c : digits) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + (c - '0');
  }
  return v;
}

//! Every regular file under `dir`, as '/'-separated relative paths, sorted. Entries that are neither
//! regular files nor directories (symlinks, sockets, ...) are returned in `others`.
inline void list_files(const std::filesystem::path& dir, std::vector<std::string>& files,
                       std::vector<std::string>& others, std::vector<std::filesystem::path>* dirs = nullptr) {
  namespace fs = std::filesystem;
  std::vector<fs::path> stack{dir};
  while (!stack.empty()) {
    const fs::path d = stack.back();
    stack.pop_back();
    if (dirs != nullptr) dirs->push_back(d);
    for (const auto& e : fs::directory_iterator(d)) {
      const auto st = e.symlink_status();
      const std::string rel = e.path().lexically_relative(dir).generic_string();
      if (fs::is_directory(st)) {
        stack.push_back(e.path());
      } else if (fs::is_regular_file(st)) {
        files.push_back(rel);
      } else {
        others.push_back(rel);
      }
    }
  }
  std::sort(files.begin(), files.end());
  std::sort(others.begin(), others.end());
}

//! Hashes a file and fsyncs it in the same pass (the writer may be a user callback that did not fsync).
[[nodiscard]] inline checkpoint::FileDigest hash_and_fsync(const std::filesystem::path& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) checkpoint::detail::io_error("open", path, errno);
  checkpoint::Sha256 h;
  checkpoint::FileDigest out;
  std::vector<char> buf(std::size_t{1} << 20);
  for (;;) {
    const ssize_t r = ::read(fd, buf.data(), buf.size());
    if (r < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      ::close(fd);
      checkpoint::detail::io_error("read", path, err);
    }
    if (r == 0) break;
    h.update(buf.data(), static_cast<std::size_t>(r));
    out.size += static_cast<std::uint64_t>(r);
  }
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  if (rc != 0 && err != EINVAL) checkpoint::detail::io_error("fsync", path, err);
  out.sha256 = h.hex_digest();
  return out;
}

[[nodiscard]] inline std::string read_text(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return std::move(s).str();
}

//! A unique sibling name `<root>/<prefix><name>-<pid>-<n>`.
[[nodiscard]] inline std::filesystem::path unique_sibling(const std::filesystem::path& root, std::string_view prefix,
                                                          std::string_view name) {
  static std::atomic<std::uint64_t> counter{0};
  const auto stamp = static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
  return root / verl::detail::concat_message(prefix, name, "-", ::getpid(), "-", std::hex,
                                             (counter.fetch_add(1) + 1) ^ (stamp * 0x9E3779B97F4A7C15ULL));
}

//! Why the checkpoint directory `dir` is not complete, or "" when it is (see the file comment).
//! `manifest` receives the parsed MANIFEST.json when it parses.
[[nodiscard]] inline std::string checkpoint_problem(const std::filesystem::path& dir, nlohmann::json* manifest,
                                                    bool verify_checksums = true) {
  namespace fs = std::filesystem;
  const auto mpath = dir / checkpoint_manifest_name;
  std::error_code ec;
  if (!fs::is_regular_file(fs::symlink_status(mpath, ec))) {
    return verl::detail::concat_message("`", mpath.string(),
                                        "` is missing (the save did not finish); expected the manifest written last");
  }
  nlohmann::json m;
  try {
    m = nlohmann::json::parse(read_text(mpath));
  } catch (const nlohmann::json::exception& e) {
    return verl::detail::concat_message("`", mpath.string(), "` is not valid JSON: ", e.what());
  }
  std::map<std::string, std::pair<std::uint64_t, std::string>> listed;
  try {
    if (m.at("format").get<std::string>() != "verl-cpp checkpoint") {
      return verl::detail::concat_message("`", mpath.string(), "`: field `format` is not \"verl-cpp checkpoint\"");
    }
    if (m.at("version").get<int>() != 1) {
      return verl::detail::concat_message("`", mpath.string(), "`: field `version` is ", m["version"].dump(),
                                          "; this verl-cpp reads version 1");
    }
    const auto step = step_of_dir_name(dir.filename().string());
    if (step && m.at("step").get<std::int64_t>() != *step) {
      return verl::detail::concat_message("`", mpath.string(), "`: field `step` is ", m["step"].dump(),
                                          ", but the directory is step ", *step);
    }
    for (const auto& f : m.at("files")) {
      const auto path = f.at("path").get<std::string>();
      const fs::path rel(path);
      bool safe = !path.empty() && rel.is_relative() && path != checkpoint_manifest_name;
      for (const auto& part : rel) safe = safe && part != ".." && part != ".";
      if (!safe) return verl::detail::concat_message("`", mpath.string(), "` lists an invalid path `", path, "`");
      const auto sha = f.at("sha256").get<std::string>();
      if (sha.size() != 64) {
        return verl::detail::concat_message("`", mpath.string(), "`: the sha256 of `", path,
                                            "` is not 64 hex digits");
      }
      listed[path] = {f.at("size").get<std::uint64_t>(), sha};
    }
  } catch (const nlohmann::json::exception& e) {
    return verl::detail::concat_message("`", mpath.string(), "` is malformed: ", e.what());
  }
  std::vector<std::string> files, others;
  try {
    list_files(dir, files, others);
  } catch (const fs::filesystem_error& e) {
    return verl::detail::concat_message("cannot list `", dir.string(), "`: ", e.what());
  }
  if (!others.empty()) {
    return verl::detail::concat_message("`", (dir / others.front()).string(),
                                        "` is not a regular file or directory (a checkpoint holds only files)");
  }
  for (const auto& f : files) {
    if (f != checkpoint_manifest_name && listed.count(f) == 0) {
      return verl::detail::concat_message("`", (dir / f).string(), "` is not listed in MANIFEST.json");
    }
  }
  const std::set<std::string> present(files.begin(), files.end());
  for (const auto& [path, want] : listed) {  // sizes first: cheap, and catches truncation
    if (present.count(path) == 0) {
      return verl::detail::concat_message("`", (dir / path).string(), "` is listed in MANIFEST.json but missing");
    }
    const auto size = fs::file_size(dir / path, ec);
    if (ec || size != want.first) {
      return verl::detail::concat_message("`", (dir / path).string(), "` has ", ec ? 0 : size,
                                          " bytes; MANIFEST.json lists ", want.first, " (truncated or replaced)");
    }
  }
  if (verify_checksums) {
    for (const auto& [path, want] : listed) {
      std::string got;
      try {
        got = checkpoint::sha256_file(dir / path).sha256;
      } catch (const Error& e) {
        return e.what();
      }
      if (got != want.second) {
        return verl::detail::concat_message("`", (dir / path).string(), "` has SHA-256 ", got,
                                            "; MANIFEST.json lists ", want.second, " (the file is corrupted)");
      }
    }
  }
  if (manifest != nullptr) *manifest = std::move(m);
  return {};
}

}  // namespace detail

//! Options of a CheckpointManager.
struct CheckpointOptions {
  //! Complete checkpoints kept after a save, the new one included; <= 0 keeps all (verl's
  //! max_ckpt_to_keep: null).
  int keep_last_n = 0;
  //! Write optimizer states (off: not written, e.g. when the optimizer is managed elsewhere).
  bool save_optimizer = true;
  //! Write training_state.json and rng_state.safetensors (schedulers, RNGs, data position, states).
  //! With both switches off only the model directories (plus config.yaml and MANIFEST.json) are written.
  bool save_training_state = true;
  //! Where notices go (skipped incomplete/corrupted checkpoints, leftovers, deletions); empty: std::cerr.
  std::function<void(const std::string&)> report;
};

//! A complete checkpoint, verified when it was opened (CheckpointManager::load, resume).
class Checkpoint {
 public:
  [[nodiscard]] std::int64_t step() const { return step_; }
  [[nodiscard]] const std::filesystem::path& path() const { return path_; }
  [[nodiscard]] const nlohmann::json& manifest() const { return manifest_; }

  [[nodiscard]] std::vector<std::string> models() const { return manifest_.value("models", std::vector<std::string>{}); }
  [[nodiscard]] bool has_model(const std::string& name) const { return contains(models(), name); }
  //! The directory of model `name` (e.g. for verl::models::Actor::load). Throws verl::InputError if absent.
  [[nodiscard]] std::filesystem::path model_dir(const std::string& name) const {
    if (!has_model(name)) missing("model", name, "");
    return path_ / name;
  }

  [[nodiscard]] bool has_optimizer(const std::string& name) const {
    return contains(manifest_.value("optimizers", std::vector<std::string>{}), name);
  }
  //! Restores optimizer `name` (load_optimizer_state). Throws verl::InputError when the checkpoint has none
  //! of that name (e.g. it was saved with save_optimizer = false) or the state does not fit.
  void restore_optimizer(const std::string& name, torch::optim::Optimizer& opt, const NamedParameters& params) const {
    if (!has_optimizer(name)) missing("optimizer", name, " (saved with save_optimizer = false?)");
    load_optimizer_state(opt, params, path_ / optimizer_dir_name / name);
  }

  [[nodiscard]] bool has_training_state() const { return !training_state_.is_null(); }
  //! training_state.json as saved (null when saved with save_training_state = false).
  [[nodiscard]] const nlohmann::json& training_state() const { return training_state_; }

  void restore_scheduler(const std::string& name, LRScheduler& s) const {
    s.load_state(section("schedulers", name, "scheduler"));
  }
  void restore_rng(const std::string& name, std::mt19937_64& engine) const {
    const auto& j = section("rng_engines", name, "rng");
    std::istringstream in(j.is_string() ? j.get<std::string>() : std::string{});
    std::mt19937_64 e;
    in >> e;
    verl::detail::check<InputError>(!in.fail(), "verl::trainer::Checkpoint: `", (path_ / training_state_name).string(),
                                    "`: rng_engines.", name, " is not a std::mt19937_64 state");
    engine = e;
  }
  //! Puts LibTorch's default CPU generator back in the saved state.
  void restore_torch_cpu_rng() const {
    const auto file = path_ / rng_state_name;
    if (!std::filesystem::exists(file)) missing("rng", "torch_cpu", " (no rng_state.safetensors)");
    const auto st = checkpoint::SafetensorsFile::open(file);
    verl::detail::check<InputError>(st.contains("torch_cpu"), "verl::trainer::Checkpoint: `", file.string(),
                                    "` has no tensor `torch_cpu`");
    at::Tensor state = st.tensor("torch_cpu").clone();  // (5056,) uint8
    at::Generator gen = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(gen.mutex());
    try {
      gen.set_state(state);
    } catch (const c10::Error& e) {
      throw InputError(verl::detail::concat_message("verl::trainer::Checkpoint: `", file.string(),
                                                    "`: tensor `torch_cpu` is not a CPU generator state: ",
                                                    e.what_without_backtrace()));
    }
  }
  //! The seeds JSON given at save (null if none).
  [[nodiscard]] nlohmann::json seeds() const {
    return has_training_state() ? training_state_.value("seeds", nlohmann::json{}) : nlohmann::json{};
  }
  //! A named state (CheckpointContents::state); throws verl::InputError if absent.
  [[nodiscard]] const nlohmann::json& state(const std::string& name) const { return section("states", name, "state"); }
  [[nodiscard]] bool has_state(const std::string& name) const {
    return has_training_state() && training_state_.contains("states") && training_state_["states"].contains(name);
  }
  //! config.yaml's text, if the checkpoint has one.
  [[nodiscard]] std::optional<std::string> config_text() const {
    if (!has_file(std::string(config_text_name))) return std::nullopt;
    return detail::read_text(path_ / config_text_name);
  }

  //! How restore() treats parts the checkpoint was deliberately saved without.
  enum class Restore {
    all,            //!< every registered part must be there (a resume that must be exact)
    what_was_saved  //!< skip optimizers when saved with save_optimizer = false and the training state
                    //!< (schedulers, RNGs, named states) when saved with save_training_state = false
  };

  //! Restores every part `contents` registers: model loaders (models without a loader are skipped: load
  //! them from model_dir), optimizers, schedulers, std::mt19937_64 engines, the CPU generator (when
  //! enabled) and named states. Throws verl::InputError naming the first part the checkpoint lacks, before
  //! changing anything. With Restore::what_was_saved, the parts that the checkpoint's switches left out are
  //! skipped instead; their names ("optimizer `actor`", "scheduler `actor`", ...) are returned so that the
  //! caller can report them.
  std::vector<std::string> restore(const CheckpointContents& contents, Restore mode = Restore::all) const {
    std::vector<std::string> skipped;
    const bool skip_optim = mode == Restore::what_was_saved && !manifest_.value("save_optimizer", true);
    const bool skip_state = mode == Restore::what_was_saved && !manifest_.value("save_training_state", true);
    for (const auto& m : contents.models_) {
      if (m.load) (void)model_dir(m.name);
    }
    for (const auto& o : contents.optimizers_) {
      if (skip_optim) {
        skipped.push_back("optimizer `" + o.name + "`");
      } else if (!has_optimizer(o.name)) {
        missing("optimizer", o.name, " (saved with save_optimizer = false?)");
      }
    }
    if (skip_state) {
      for (const auto& s : contents.schedulers_) skipped.push_back("scheduler `" + s.name + "`");
      for (const auto& e : contents.engines_) skipped.push_back("rng `" + e.name + "`");
      for (const auto& s : contents.states_) skipped.push_back("state `" + s.name + "`");
      if (contents.torch_cpu_rng_) skipped.emplace_back("rng `torch_cpu`");
    } else {
      for (const auto& s : contents.schedulers_) (void)section("schedulers", s.name, "scheduler");
      for (const auto& e : contents.engines_) (void)section("rng_engines", e.name, "rng");
      for (const auto& s : contents.states_) (void)section("states", s.name, "state");
      if (contents.torch_cpu_rng_ && !has_file(std::string(rng_state_name))) {
        missing("rng", "torch_cpu", " (saved with save_training_state = false?)");
      }
    }
    for (const auto& m : contents.models_) {
      if (m.load) m.load(path_ / m.name);
    }
    if (!skip_optim) {
      for (const auto& o : contents.optimizers_) restore_optimizer(o.name, *o.opt, o.params);
    }
    if (!skip_state) {
      for (const auto& s : contents.schedulers_) restore_scheduler(s.name, *s.s);
      for (const auto& e : contents.engines_) restore_rng(e.name, *e.e);
      for (const auto& s : contents.states_) s.set(state(s.name));
      if (contents.torch_cpu_rng_) restore_torch_cpu_rng();
    }
    return skipped;
  }

 private:
  friend class CheckpointManager;

  static bool contains(const std::vector<std::string>& v, const std::string& x) {
    return std::find(v.begin(), v.end(), x) != v.end();
  }
  bool has_file(const std::string& rel) const {
    for (const auto& f : manifest_.at("files")) {
      if (f.at("path").get<std::string>() == rel) return true;
    }
    return false;
  }
  [[noreturn]] void missing(std::string_view kind, const std::string& name, std::string_view hint) const {
    throw InputError(verl::detail::concat_message("verl::trainer::Checkpoint: `", path_.string(), "` has no ", kind,
                                                  " `", name, "`", hint));
  }
  const nlohmann::json& section(const char* key, const std::string& name, std::string_view kind) const {
    if (!has_training_state()) missing(kind, name, " (saved with save_training_state = false)");
    const auto it = training_state_.find(key);
    if (it == training_state_.end() || !it->is_object() || !it->contains(name)) missing(kind, name, "");
    return (*it)[name];
  }

  std::int64_t step_ = 0;
  std::filesystem::path path_;
  nlohmann::json manifest_, training_state_;
};

//! Saves, finds and loads checkpoints under one root directory (see the file comment).
class CheckpointManager {
 public:
  CheckpointManager(std::filesystem::path root, int keep_last_n)
      : CheckpointManager(std::move(root), [&] {
          CheckpointOptions o;
          o.keep_last_n = keep_last_n;
          return o;
        }()) {}
  CheckpointManager(std::filesystem::path root, CheckpointOptions options)
      : root_(std::move(root)), options_(std::move(options)) {
    verl::detail::check<ConfigError>(!root_.empty(), "verl::trainer::CheckpointManager: the root directory is empty");
  }

  [[nodiscard]] const std::filesystem::path& root() const { return root_; }
  [[nodiscard]] const CheckpointOptions& options() const { return options_; }
  //! `<root>/global_step_<step>`.
  [[nodiscard]] std::filesystem::path path_of(std::int64_t step) const {
    return root_ / verl::detail::concat_message(checkpoint_dir_prefix, step);
  }

  //! Writes checkpoint `step` (see the file comment for the steps and the layout) and returns its path. An
  //! existing checkpoint of the same step is replaced. On an exception (a writer failed, disk full) the
  //! temporary directory is removed and the previous checkpoints and tracker are as they were.
  std::filesystem::path save(std::int64_t step, const CheckpointContents& contents) {
    namespace fs = std::filesystem;
    verl::detail::check<ConfigError>(step >= 0, "verl::trainer::CheckpointManager::save: step is ", step,
                                     "; expected >= 0");
    if (fs::create_directories(root_)) {
      checkpoint::detail::fsync_directory(root_.has_parent_path() ? root_.parent_path() : fs::path("."));
    }
    const auto final_dir = path_of(step);
    const auto tmp = detail::unique_sibling(root_, ".tmp-", final_dir.filename().string());
    fs::create_directory(tmp);
    try {
      write_contents(tmp, step, contents);
    } catch (...) {
      (void)detail::remove_tree(tmp);
      throw;
    }
    std::error_code ec;
    std::optional<fs::path> trash;
    try {
      if (fs::exists(fs::symlink_status(final_dir, ec))) {  // re-saving a step: move the old one aside first
        trash = detail::unique_sibling(root_, ".trash-", final_dir.filename().string());
        fs::rename(final_dir, *trash);
      }
      fs::rename(tmp, final_dir);
    } catch (...) {
      (void)detail::remove_tree(tmp);
      if (trash && !fs::exists(fs::symlink_status(final_dir, ec))) fs::rename(*trash, final_dir, ec);  // put back
      throw;
    }
    checkpoint::detail::fsync_directory(root_);
    if (trash) remove_reported(*trash, "the previous checkpoint of the same step", final_dir);
    checkpoint::write_file_atomically(root_ / checkpoint_tracker_name, std::to_string(step));
    apply_retention(step);
    return final_dir;
  }

  //! What a scan of the root found.
  struct Entry {
    std::int64_t step = -1;     //!< -1 for leftovers
    std::filesystem::path path;
    std::string problem;        //!< "" for a complete checkpoint (only set when verified)
  };

  //! The `global_step_<N>` directories, highest step first (not verified).
  [[nodiscard]] std::vector<Entry> checkpoints() const {
    std::vector<Entry> out;
    std::error_code ec;
    if (!std::filesystem::is_directory(root_, ec)) return out;
    for (const auto& e : std::filesystem::directory_iterator(root_)) {
      const auto step = detail::step_of_dir_name(e.path().filename().string());
      if (step && e.is_directory()) out.push_back({*step, e.path(), {}});
    }
    std::sort(out.begin(), out.end(), [](const Entry& a, const Entry& b) { return a.step > b.step; });
    return out;
  }

  //! Directories an interrupted save or deletion left behind (`.tmp-*`, `.trash-*`).
  [[nodiscard]] std::vector<std::filesystem::path> leftovers() const {
    std::vector<std::filesystem::path> out;
    std::error_code ec;
    if (!std::filesystem::is_directory(root_, ec)) return out;
    for (const auto& e : std::filesystem::directory_iterator(root_)) {
      const auto n = e.path().filename().string();
      if (n.rfind(".tmp-global_step_", 0) == 0 || n.rfind(".trash-global_step_", 0) == 0) out.push_back(e.path());
    }
    std::sort(out.begin(), out.end());
    return out;
  }

  //! The step the tracker file names, if it exists and holds a number.
  [[nodiscard]] std::optional<std::int64_t> tracked_step() const {
    std::error_code ec;
    const auto p = root_ / checkpoint_tracker_name;
    if (!std::filesystem::is_regular_file(p, ec)) return std::nullopt;
    auto text = detail::read_text(p);
    while (!text.empty() && (text.back() == '\n' || text.back() == ' ' || text.back() == '\r')) text.pop_back();
    const auto step = detail::step_of_dir_name(std::string(checkpoint_dir_prefix) + text);
    return step;
  }

  //! The latest complete checkpoint (checksums verified), or nullopt. Every newer directory skipped, every
  //! leftover of an interrupted save and a tracker that disagrees are reported (never deleted).
  [[nodiscard]] std::optional<Checkpoint> resume() const {
    for (const auto& l : leftovers()) {
      say("ignoring `", l.string(), "`: left by an interrupted save or deletion (remove_leftovers() deletes it)");
    }
    const auto tracked = tracked_step();
    for (const auto& e : checkpoints()) {
      nlohmann::json manifest;
      const auto problem = detail::checkpoint_problem(e.path, &manifest);
      if (!problem.empty()) {
        say("skipping incomplete or corrupted checkpoint `", e.path.string(), "`: ", problem);
        continue;
      }
      if (tracked && *tracked != e.step) {
        say("`", (root_ / checkpoint_tracker_name).string(), "` names step ", *tracked,
            ", but the latest complete checkpoint is step ", e.step, "; resuming from step ", e.step);
      }
      return open_verified(e.path, e.step, std::move(manifest));
    }
    if (tracked) say("`", (root_ / checkpoint_tracker_name).string(), "` names step ", *tracked,
                     ", but no complete checkpoint exists");
    return std::nullopt;
  }

  //! The latest complete checkpoint's step and path (see resume()).
  [[nodiscard]] std::optional<Entry> latest() const {
    auto c = resume();
    if (!c) return std::nullopt;
    return Entry{c->step(), c->path(), {}};
  }

  //! Opens checkpoint directory `dir` after verifying it; throws verl::InputError naming the file and what
  //! mismatched when it is incomplete or corrupted.
  [[nodiscard]] Checkpoint load(const std::filesystem::path& dir) const {
    nlohmann::json manifest;
    const auto problem = detail::checkpoint_problem(dir, &manifest);
    verl::detail::check<InputError>(problem.empty(), "verl::trainer::CheckpointManager::load: refusing `",
                                    dir.string(), "`: ", problem);
    const auto step = manifest.at("step").get<std::int64_t>();
    return open_verified(dir, step, std::move(manifest));
  }

  //! Deletes the leftovers of interrupted saves (call when no other process saves into this root), each
  //! reported. Returns how many were removed.
  std::size_t remove_leftovers() const {
    std::size_t n = 0;
    for (const auto& l : leftovers()) n += remove_reported(l, "a leftover of an interrupted save") ? 1 : 0;
    return n;
  }

 private:
  template <class... Parts>
  void say(Parts&&... parts) const {
    const auto msg = verl::detail::concat_message("verl::trainer::CheckpointManager: ", std::forward<Parts>(parts)...);
    if (options_.report) {
      options_.report(msg);
    } else {
      std::cerr << msg << '\n';
    }
  }

  // Deletes `p` (a directory tree) and reports it as `what` `shown` (the name it had before being moved aside).
  bool remove_reported(const std::filesystem::path& p, std::string_view what,
                       const std::optional<std::filesystem::path>& shown = std::nullopt) const {
    const auto ec = detail::remove_tree(p);
    if (ec) {
      say("could not fully delete ", what, " `", p.string(), "`: ", ec.message());
      return false;
    }
    say("deleted ", what, " `", shown.value_or(p).string(), "`");
    return true;
  }

  Checkpoint open_verified(const std::filesystem::path& dir, std::int64_t step, nlohmann::json manifest) const {
    Checkpoint c;
    c.step_ = step;
    c.path_ = dir;
    c.manifest_ = std::move(manifest);
    if (c.has_file(std::string(training_state_name))) {
      try {
        c.training_state_ = nlohmann::json::parse(detail::read_text(dir / training_state_name));
      } catch (const nlohmann::json::exception& e) {
        throw InputError(verl::detail::concat_message("verl::trainer::CheckpointManager: `",
                                                      (dir / training_state_name).string(),
                                                      "` is not valid JSON: ", e.what()));
      }
    }
    return c;
  }

  void write_contents(const std::filesystem::path& dir, std::int64_t step, const CheckpointContents& c) const {
    namespace fs = std::filesystem;
    nlohmann::json manifest{{"format", "verl-cpp checkpoint"},
                            {"version", 1},
                            {"step", step},
                            {"save_optimizer", options_.save_optimizer},
                            {"save_training_state", options_.save_training_state}};
    std::vector<std::string> models, optimizers;
    for (const auto& m : c.models_) {
      fs::create_directory(dir / m.name);
      m.save(dir / m.name);
      models.push_back(m.name);
    }
    if (options_.save_optimizer) {
      for (const auto& o : c.optimizers_) {
        save_optimizer_state(*o.opt, o.params, dir / optimizer_dir_name / o.name);
        optimizers.push_back(o.name);
      }
    }
    if (options_.save_training_state) {
      nlohmann::json ts{{"step", step}};
      ts["schedulers"] = nlohmann::json::object();
      for (const auto& s : c.schedulers_) ts["schedulers"][s.name] = s.s->state();
      ts["rng_engines"] = nlohmann::json::object();
      for (const auto& e : c.engines_) {
        std::ostringstream out;
        out << *e.e;
        ts["rng_engines"][e.name] = out.str();
      }
      ts["seeds"] = c.seeds_;
      ts["states"] = nlohmann::json::object();
      for (const auto& s : c.states_) ts["states"][s.name] = s.get();
      ts["torch_cpu_rng"] = c.torch_cpu_rng_;
      if (c.torch_cpu_rng_) {
        at::Generator gen = at::detail::getDefaultCPUGenerator();
        at::Tensor state;
        {
          std::lock_guard<std::mutex> lock(gen.mutex());
          state = gen.get_state();  // (5056,) uint8
        }
        checkpoint::save_safetensors(dir / rng_state_name, {{"torch_cpu", state}});
      }
      checkpoint::write_file_atomically(dir / training_state_name, ts.dump(1) + "\n");
    }
    if (c.config_text_) checkpoint::write_file_atomically(dir / config_text_name, *c.config_text_);
    manifest["models"] = models;
    manifest["optimizers"] = optimizers;

    // Hash and fsync every file (writers may not have synced), fsync every directory, then the manifest.
    std::vector<std::string> files, others;
    std::vector<fs::path> dirs;
    detail::list_files(dir, files, others, &dirs);
    verl::detail::check<Error>(others.empty(), "verl::trainer::CheckpointManager::save: `",
                               others.empty() ? std::string{} : (dir / others.front()).string(),
                               "` is not a regular file or directory; expected writers to write plain files");
    manifest["files"] = nlohmann::json::array();
    for (const auto& f : files) {
      const auto d = detail::hash_and_fsync(dir / f);
      manifest["files"].push_back({{"path", f}, {"size", d.size}, {"sha256", d.sha256}});
    }
    for (const auto& d : dirs) checkpoint::detail::fsync_directory(d);
    checkpoint::write_file_atomically(dir / checkpoint_manifest_name, manifest.dump(1) + "\n");
  }

  // Deletes the oldest checkpoints so that keep_last_n remain, the one just written included.
  void apply_retention(std::int64_t just_written) const {
    if (options_.keep_last_n <= 0) return;
    std::size_t kept = 1;  // the new one
    for (const auto& e : checkpoints()) {
      if (e.step == just_written) continue;
      std::error_code ec;
      if (!std::filesystem::exists(e.path / checkpoint_manifest_name, ec)) continue;  // not ours to judge
      if (kept < static_cast<std::size_t>(options_.keep_last_n)) {
        ++kept;
        continue;
      }
      // Rename first, so that a crash mid-delete leaves a `.trash-*` leftover, not a half checkpoint.
      const auto trash = detail::unique_sibling(root_, ".trash-", e.path.filename().string());
      std::filesystem::rename(e.path, trash, ec);
      if (ec) {
        say("could not delete old checkpoint `", e.path.string(), "`: ", ec.message());
        continue;
      }
      checkpoint::detail::fsync_directory(root_);
      remove_reported(trash, verl::detail::concat_message("old checkpoint (keep_last_n = ", options_.keep_last_n, ")"),
                      e.path);
    }
  }

  std::filesystem::path root_;
  CheckpointOptions options_;
};

}  // namespace verl::trainer
