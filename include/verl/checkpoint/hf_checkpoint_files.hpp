#pragma once
//! \file
//! The weights of a Hugging Face model directory, as transformers 5 reads and writes them: one
//! `model.safetensors`, or `model.safetensors.index.json` ({"metadata": {"total_size": N}, "weight_map":
//! {tensor name: shard file}}) with shards `model-00001-of-0000N.safetensors`. CheckpointReader reads either
//! (the single file first, as transformers' from_pretrained does); save_checkpoint writes like
//! save_pretrained (huggingface_hub's split_torch_state_dict_into_shards).

#include "verl/checkpoint/atomic_file.hpp"
#include "verl/checkpoint/safetensors.hpp"
#include "verl/checkpoint/safetensors_header.hpp"
#include "verl/core/errors.hpp"

#include <ATen/core/Tensor.h>
#include <nlohmann/json.hpp>

#include <cctype>
#include <cstdio>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

namespace verl::checkpoint {

//! transformers' SAFE_WEIGHTS_NAME.
inline constexpr std::string_view safe_weights_name = "model.safetensors";
//! transformers' SAFE_WEIGHTS_INDEX_NAME.
inline constexpr std::string_view safe_weights_index_name = "model.safetensors.index.json";

namespace detail {

//! Joins up to `limit` items as "a, b, ... (N in all)".
inline std::string list_some(const std::vector<std::string>& items, std::size_t limit = 8) {
  std::string s;
  for (std::size_t i = 0; i < items.size() && i < limit; ++i) {
    if (i) s += ", ";
    s += items[i];
  }
  if (items.size() > limit) s += concat_message(", ... (", items.size(), " in all)");
  return s;
}

//! True for "model-NNNNN-of-NNNNN.safetensors", the shard names save_checkpoint writes.
inline bool is_shard_name(std::string_view f) {
  constexpr std::string_view pre = "model-", mid = "-of-", suf = ".safetensors";
  if (f.size() != pre.size() + 5 + mid.size() + 5 + suf.size()) return false;
  if (f.substr(0, pre.size()) != pre || f.substr(pre.size() + 5, mid.size()) != mid ||
      f.substr(f.size() - suf.size()) != suf) {
    return false;
  }
  for (std::size_t i : {pre.size(), pre.size() + 5 + mid.size()}) {
    for (std::size_t k = i; k < i + 5; ++k) {
      if (!std::isdigit(static_cast<unsigned char>(f[k]))) return false;
    }
  }
  return true;
}

//! "-00001-of-00003" style suffix, as huggingface_hub formats it.
inline std::string shard_name(std::size_t index, std::size_t count) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "model-%05zu-of-%05zu.safetensors", index, count);
  return buf;
}

}  // namespace detail

//! The tensors of a model directory, from one file or from shards. Cheap to copy.
class CheckpointReader {
 public:
  //! Opens `dir`: `model.safetensors` when present, else `model.safetensors.index.json` and every shard it
  //! names. Throws verl::InputError naming the file and the problem: no weights file, an index that is not
  //! JSON / lacks "weight_map" / maps a name to a non-string or to a path outside `dir`, shards that do not
  //! exist (listed), tensors the index lists but their shard lacks (listed), or any invalid shard.
  [[nodiscard]] static CheckpointReader open(const std::filesystem::path& dir) {
    namespace fs = std::filesystem;
    std::error_code ec;
    detail::check<InputError>(fs::is_directory(dir, ec), "verl::checkpoint: `", dir.string(),
                              "` is not a directory; expected a Hugging Face model directory");
    CheckpointReader r;
    r.dir_ = dir;
    const fs::path single = dir / safe_weights_name;
    const fs::path index = dir / safe_weights_index_name;
    if (fs::is_regular_file(single, ec)) {
      r.files_.push_back(SafetensorsFile::open(single));
      for (const auto& name : r.files_[0].names()) r.where_.emplace(name, 0);
      return r;
    }
    detail::check<InputError>(fs::is_regular_file(index, ec), "verl::checkpoint: `", dir.string(), "` has neither ",
                              safe_weights_name, " nor ", safe_weights_index_name);
    r.sharded_ = true;
    r.read_index(index);
    return r;
  }

  //! Tensor names, sorted byte-wise.
  [[nodiscard]] std::vector<std::string> names() const {
    std::vector<std::string> out;
    out.reserve(where_.size());
    for (const auto& [name, file] : where_) out.push_back(name);
    return out;
  }
  //! True when the checkpoint has a tensor `name`.
  [[nodiscard]] bool contains(std::string_view name) const { return where_.find(name) != where_.end(); }
  //! The tensor `name` (see SafetensorsFile::tensor: zero-copy view of the shard's mapping when aligned).
  [[nodiscard]] at::Tensor tensor(std::string_view name) const { return files_[find(name)].tensor(name); }
  //! The file holding `name`.
  [[nodiscard]] std::filesystem::path file_of(std::string_view name) const { return files_[find(name)].path(); }
  //! True when read from an index.
  [[nodiscard]] bool sharded() const { return sharded_; }
  //! The opened files (one, or the shards in the order of their names).
  [[nodiscard]] const std::vector<SafetensorsFile>& files() const { return files_; }

 private:
  [[nodiscard]] std::size_t find(std::string_view name) const {
    const auto it = where_.find(name);
    if (it == where_.end()) {
      throw InputError(detail::concat_message("verl::checkpoint: checkpoint `", dir_.string(), "` has no tensor `",
                                              name, "` (it has ", where_.size(), " tensors)"));
    }
    return it->second;
  }

  void read_index(const std::filesystem::path& index) {
    namespace fs = std::filesystem;
    const std::string label = index.string();
    std::ifstream in(index, std::ios::binary);
    detail::check<InputError>(static_cast<bool>(in), "verl::checkpoint: cannot read `", label, "`");
    std::ostringstream text;
    text << in.rdbuf();
    const nlohmann::json j = detail::parse_json_unique_keys(text.str(), label);
    const auto fail = [&](const std::string& what) { detail::header_error(label, what); };
    if (!j.is_object()) fail("the index is not a JSON object");
    const auto wm = j.find("weight_map");
    if (wm == j.end()) fail("the index has no \"weight_map\"; expected {\"weight_map\": {tensor name: shard file}}");
    if (!wm->is_object()) fail("\"weight_map\" is not an object; expected {tensor name: shard file}");
    std::map<std::string, std::vector<std::string>> by_file;  // shard file -> tensor names
    for (const auto& [name, file] : wm->items()) {
      if (!file.is_string()) fail(detail::concat_message("\"weight_map\" maps `", name, "` to ", file.dump(),
                                                         ", expected a shard file name"));
      const fs::path rel(file.get<std::string>());
      bool escapes = rel.empty() || rel.is_absolute();
      for (const auto& part : rel) escapes = escapes || part == "..";
      if (escapes) {
        fail(detail::concat_message("\"weight_map\" maps `", name, "` to \"", rel.string(),
                                    "\", expected a file name relative to the model directory"));
      }
      by_file[rel.string()].push_back(name);
    }
    std::vector<std::string> missing_files;
    for (const auto& [file, names] : by_file) {
      std::error_code ec;
      if (!fs::exists(dir_ / file, ec)) {
        missing_files.push_back(
            detail::concat_message("`", file, "` (", names.size(), " tensor(s), e.g. `", names[0], "`)"));
      }
    }
    if (!missing_files.empty()) {
      fail(detail::concat_message(missing_files.size(), " shard file(s) named in \"weight_map\" do not exist in `",
                                  dir_.string(), "`: ", detail::list_some(missing_files)));
    }
    std::vector<std::string> missing_tensors;
    for (const auto& [file, names] : by_file) {
      files_.push_back(SafetensorsFile::open(dir_ / file));
      for (const auto& name : names) {
        if (files_.back().contains(name)) {
          where_.emplace(name, files_.size() - 1);
        } else {
          missing_tensors.push_back(detail::concat_message("`", name, "` (in ", file, ")"));
        }
      }
    }
    if (!missing_tensors.empty()) {
      fail(detail::concat_message(missing_tensors.size(),
                                  " tensor(s) listed in \"weight_map\" are missing from their shard: ",
                                  detail::list_some(missing_tensors)));
    }
  }

  std::filesystem::path dir_;
  std::vector<SafetensorsFile> files_;
  std::map<std::string, std::size_t, std::less<>> where_;
  bool sharded_ = false;
};

//! Writes `tensors` to model directory `dir` (created if missing) like transformers' save_pretrained with
//! huggingface_hub's split_torch_state_dict_into_shards: tensors in the given order fill a shard until the
//! next would exceed `max_shard_bytes`; a tensor larger than that gets a shard of its own (placed where it
//! occurs). One shard: `model.safetensors`. Several: `model-00001-of-0000N.safetensors` ... and
//! `model.safetensors.index.json` ({"metadata": {"total_size": bytes}, "weight_map": {...}}, keys sorted,
//! indent 2, ASCII-escaped, trailing newline: the bytes json.dumps(index, indent=2, sort_keys=True) + "\n"
//! gives). Every file carries metadata {"format": "pt"} and is written atomically; the index is written after
//! all shards. Afterwards files of a previous save that this one does not overwrite are removed: shards
//! named model-NNNNN-of-NNNNN.safetensors, the index after a single-file save, model.safetensors after a
//! sharded save (transformers would load it before the index).
//! Throws verl::ConfigError for duplicate names (or more than 99999 shards), and as save_safetensors.
inline void save_checkpoint(const std::filesystem::path& dir,
                            const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                            std::uint64_t max_shard_bytes = 5'000'000'000) {
  namespace fs = std::filesystem;
  {
    std::set<std::string_view> seen;
    for (const auto& [name, t] : tensors) {
      detail::check<ConfigError>(seen.insert(name).second, "verl::checkpoint::save_checkpoint: tensor name `", name,
                                 "` appears twice; expected unique names");
      detail::check<ShapeError>(t.defined(), "verl::checkpoint::save_checkpoint: tensor `", name, "` is undefined");
    }
  }
  // huggingface_hub's split: an oversized tensor closes nothing, it is appended as its own shard at once.
  std::vector<std::vector<std::size_t>> shards;
  std::vector<std::size_t> current;
  std::uint64_t current_size = 0, total_size = 0;
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    const auto size = static_cast<std::uint64_t>(tensors[i].second.nbytes());
    total_size += size;
    if (size > max_shard_bytes) {
      shards.push_back({i});
      continue;
    }
    if (current_size + size > max_shard_bytes) {
      shards.push_back(std::move(current));
      current.clear();
      current_size = 0;
    }
    current.push_back(i);
    current_size += size;
  }
  if (!current.empty() || shards.empty()) shards.push_back(std::move(current));  // no tensors: one empty file
  detail::check<ConfigError>(shards.size() <= 99999, "verl::checkpoint::save_checkpoint: ", shards.size(),
                             " shards exceed the 5-digit shard numbering; expected a larger max_shard_bytes");

  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) detail::io_error("create directory", dir, ec.value());
  const std::map<std::string, std::string> metadata{{"format", "pt"}};
  const bool sharded = shards.size() > 1;
  std::set<std::string> written;
  nlohmann::json weight_map = nlohmann::json::object();
  for (std::size_t s = 0; s < shards.size(); ++s) {
    const std::string file = sharded ? detail::shard_name(s + 1, shards.size()) : std::string(safe_weights_name);
    std::vector<std::pair<std::string, at::Tensor>> part;
    for (std::size_t i : shards[s]) {
      part.push_back(tensors[i]);
      weight_map[tensors[i].first] = file;
    }
    save_safetensors(dir / file, part, metadata);
    written.insert(file);
  }
  if (sharded) {
    nlohmann::json index;
    index["metadata"]["total_size"] = total_size;
    index["weight_map"] = std::move(weight_map);
    write_file_atomically(dir / safe_weights_index_name, index.dump(2, ' ', true) + "\n");
  }
  // Stale files of a previous save.
  bool removed = false;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const std::string f = entry.path().filename().string();
    const bool stale = (detail::is_shard_name(f) && !written.count(f)) ||
                       (!sharded && f == safe_weights_index_name) || (sharded && f == safe_weights_name);
    if (stale && entry.is_regular_file(ec)) {
      if (!fs::remove(entry.path(), ec) && ec) detail::io_error("remove stale file", entry.path(), ec.value());
      removed = true;
    }
  }
  if (removed) detail::fsync_directory(dir);
}

}  // namespace verl::checkpoint
