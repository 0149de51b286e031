#pragma once
//! \file
//! The trainers' typed configuration with verl's key names and defaults.
//!
//! `PPOConfig` mirrors verl 0.7.1's `verl/trainer/config/ppo_trainer.yaml` (flattened:
//! `_generated_ppo_trainer.yaml`) and the dataclasses behind it (verl/workers/config/{actor,critic,optimizer,
//! rollout}.py, verl/trainer/config/algorithm.py), for the keys a single-process trainer uses. Keys that only
//! matter to Ray, FSDP, Megatron, vLLM/SGLang servers or profilers are accepted and ignored (listed in the
//! generated reference with the reason), so a verl YAML file loads unchanged. Defaults that verl writes as
//! interpolations (e.g. `critic.ppo_epochs: ${oc.select:actor_rollout_ref.actor.ppo_epochs,1}`) are the
//! same interpolations here, resolved after the file and the overrides are merged, as OmegaConf does.
//!
//! `OfflineConfig` is for the DPO, KTO and SFT trainers: verl's `sft_trainer_engine.yaml` names for data,
//! model, optim and trainer, plus `dpo.*` and `kto.*` with TRL's DPOConfig/KTOConfig names and defaults (trl
//! 0.19.1; the same in 0.28.0 for these keys).
//!
//! Use:
//! \code
//!   auto [cfg, yaml] = verl::config::load_config<verl::config::PPOConfig>("ppo.yaml", overrides);
//!   std::cout << yaml;                                // the effective configuration; save it with checkpoints
//!   cfg.actor_rollout_ref.actor.optim.lr;             // typed
//! \endcode
//! Processes (issue 7). A trainer started by torchrun, mpirun, srun or verl::dist::launch_local runs on
//! WORLD_SIZE processes. `actor_rollout_ref.actor.strategy` / `critic.strategy` (PPO) and `engine.strategy`
//! (SFT) say how: "dp" (verl::dist::DataParallel: every process holds the whole model, gradients are averaged)
//! or verl's "fsdp" / "fsdp2" (fully sharded). `trainer.nnodes` and `trainer.n_gpus_per_node` describe the
//! launch; null takes the launcher's. Per-GPU keys (`*_per_gpu`) are per process, and the batch checks are
//! verl's for that many processes: validate() (run by load_config) uses the processes the config names
//! (nnodes x n_gpus_per_node, a null one counting 1), and `validate_layout(ProcessLayout)`, which a program
//! calls once it knows its launch, checks the two keys against it and repeats the batch checks for the real
//! data-parallel size.
//! The reference with every key is docs/config.md, generated from these structs (see tests/unit/config).

#include "verl/config/schema.hpp"

#include <algorithm>
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace verl::config {

// -------------------------------------------------------------------------------------------------------------
// Enumerations (closed sets; open sets such as adv_estimator stay strings so that users can register their own)

namespace detail {
template <class E, std::size_t N>
E parse_enum(std::string_view text, const std::array<std::pair<E, std::string_view>, N>& table, std::string_view what) {
  for (const auto& [e, name] : table)
    if (name == text) return e;
  std::string list;
  for (const auto& [e, name] : table) list += (list.empty() ? "\"" : ", \"") + std::string(name) + "\"";
  throw ConfigError(verl::detail::concat_message(what, " \"", text, "\" is not one of ", list));
}
template <class E, std::size_t N>
std::string_view enum_name(E e, const std::array<std::pair<E, std::string_view>, N>& table) {
  for (const auto& [x, name] : table)
    if (x == e) return name;
  return "<invalid>";
}
template <class E, std::size_t N>
std::array<E, N> enum_list(const std::array<std::pair<E, std::string_view>, N>& table) {
  std::array<E, N> out{};
  for (std::size_t i = 0; i < N; ++i) out[i] = table[i].first;
  return out;
}
}  // namespace detail

//! Learning-rate schedule after warm-up (verl `optim.lr_scheduler_type`; deprecated alias `warmup_style`).
enum class LRSchedulerType { constant, cosine };
inline constexpr std::array<std::pair<LRSchedulerType, std::string_view>, 2> lr_scheduler_type_names{
    {{LRSchedulerType::constant, "constant"}, {LRSchedulerType::cosine, "cosine"}}};
[[nodiscard]] inline std::string_view to_string(LRSchedulerType e) { return detail::enum_name(e, lr_scheduler_type_names); }
[[nodiscard]] inline LRSchedulerType parse(std::string_view s, std::type_identity<LRSchedulerType>) {
  return detail::parse_enum(s, lr_scheduler_type_names, "lr_scheduler_type");
}
[[nodiscard]] inline auto enum_values(std::type_identity<LRSchedulerType>) { return detail::enum_list(lr_scheduler_type_names); }

//! What to do with a prompt longer than data.max_prompt_length (verl `data.truncation`).
enum class Truncation { error, left, right, middle };
inline constexpr std::array<std::pair<Truncation, std::string_view>, 4> truncation_names{
    {{Truncation::error, "error"}, {Truncation::left, "left"}, {Truncation::right, "right"}, {Truncation::middle, "middle"}}};
[[nodiscard]] inline std::string_view to_string(Truncation e) { return detail::enum_name(e, truncation_names); }
[[nodiscard]] inline Truncation parse(std::string_view s, std::type_identity<Truncation>) {
  return detail::parse_enum(s, truncation_names, "truncation");
}
[[nodiscard]] inline auto enum_values(std::type_identity<Truncation>) { return detail::enum_list(truncation_names); }

//! verl `trainer.resume_mode`: resume from the latest checkpoint in default_local_dir, never, or from
//! trainer.resume_from_path.
enum class ResumeMode { auto_, disable, resume_path };
inline constexpr std::array<std::pair<ResumeMode, std::string_view>, 3> resume_mode_names{
    {{ResumeMode::auto_, "auto"}, {ResumeMode::disable, "disable"}, {ResumeMode::resume_path, "resume_path"}}};
[[nodiscard]] inline std::string_view to_string(ResumeMode e) { return detail::enum_name(e, resume_mode_names); }
[[nodiscard]] inline ResumeMode parse(std::string_view s, std::type_identity<ResumeMode>) {
  return detail::parse_enum(s, resume_mode_names, "resume_mode");
}
[[nodiscard]] inline auto enum_values(std::type_identity<ResumeMode>) { return detail::enum_list(resume_mode_names); }

//! verl `algorithm.kl_ctrl.type`: FixedKLController or AdaptiveKLController.
enum class KLControlType { fixed, adaptive };
inline constexpr std::array<std::pair<KLControlType, std::string_view>, 2> kl_control_type_names{
    {{KLControlType::fixed, "fixed"}, {KLControlType::adaptive, "adaptive"}}};
[[nodiscard]] inline std::string_view to_string(KLControlType e) { return detail::enum_name(e, kl_control_type_names); }
[[nodiscard]] inline KLControlType parse(std::string_view s, std::type_identity<KLControlType>) {
  return detail::parse_enum(s, kl_control_type_names, "kl_ctrl.type");
}
[[nodiscard]] inline auto enum_values(std::type_identity<KLControlType>) { return detail::enum_list(kl_control_type_names); }

//! One path or a list of paths (verl's `data.train_files` accepts both). Reads a string, a list of strings
//! or null (empty); writes null, a string or a list.
struct FileList {
  std::vector<std::string> files;
  bool operator==(const FileList&) const = default;
};

template <>
struct value_traits<FileList> {
  static std::string name() { return "string | list[string] | null"; }
  static Json encode(const FileList& f) {
    if (f.files.empty()) return nullptr;
    if (f.files.size() == 1) return f.files[0];
    return Json(f.files);
  }
  static void decode(const Json& j, FileList& out, const DecodeContext& cx) {
    out.files.clear();
    if (j.is_null()) return;
    if (j.is_string()) {
      out.files.push_back(j.get<std::string>());
      return;
    }
    if (!j.is_array()) cx.type_error("a path or a list of paths", j);
    for (const auto& x : j) {
      if (!x.is_string()) cx.type_error("a list of paths (strings)", j);
      out.files.push_back(x.get<std::string>());
    }
  }
};

namespace detail {
//! verl's loss_agg_mode values (verl/workers/config/actor.py ActorConfig.__post_init__; core_algos.agg_loss).
inline void require_loss_agg_mode(const std::string& v, std::string key) {
  require_one_of(v, {"token-mean", "seq-mean-token-sum", "seq-mean-token-mean", "seq-mean-token-sum-norm"}, std::move(key));
}
//! verl's kl_penalty estimators (core_algos.kl_penalty), also with the straight-through "+" suffix.
inline void require_kl_estimator(std::string v, std::string key) {
  if (!v.empty() && v.back() == '+') v.pop_back();
  require_one_of(v, {"kl", "k1", "abs", "mse", "k2", "low_var_kl", "k3"}, std::move(key));
}
//! verl's check_mutually_exclusive for a deprecated global micro-batch key and its `_per_gpu` successor.
inline void require_one_micro_batch(const std::optional<std::int64_t>& mbs, const std::optional<std::int64_t>& per_gpu,
                                    const std::string& section, const std::string& param) {
  const std::string key = section + "." + param;
  require(mbs || per_gpu, key + "_per_gpu", "[", section, "] Please set at least one of '", section, ".", param, "' or '",
          section, ".", param, "_per_gpu' (or use dynamic batch size)");
  require(!(mbs && per_gpu), key, "[", section, "] You have set both '", section, ".", param, "' AND '", section, ".",
          param, "_per_gpu'. Please remove '", section, ".", param, "' because only '*_", param,
          "_per_gpu' is supported (the former is deprecated).");
}
inline void require_positive_opt(const std::optional<std::int64_t>& v, std::string key) {
  if (v) require(*v > 0, std::move(key), "must be > 0 when set, got ", *v);
}
//! The training strategies of verl-cpp: "dp" and verl's "fsdp" / "fsdp2" (both: fully sharded).
inline void require_strategy(const std::string& v, std::string key) {
  require(v == "dp" || v == "fsdp" || v == "fsdp2", std::move(key), "is \"", v,
          "\", expected \"dp\" (data parallel: every process holds the whole model) or \"fsdp\" / \"fsdp2\" (fully "
          "sharded over the processes)", v == "megatron" ? "; Megatron is not available in verl-cpp" : "");
}
}  // namespace detail

//! The processes a run was started on, as its launcher set them (verl::dist::LaunchEnv's world_size and
//! local_world_size; one process when no launcher variable is set). See validate_layout.
struct ProcessLayout {
  std::int64_t world_size = 1;        //!< WORLD_SIZE: all processes of the job
  std::int64_t local_world_size = 1;  //!< LOCAL_WORLD_SIZE: the processes on this node
};

namespace detail {
//! `trainer.nnodes` and `trainer.n_gpus_per_node` (`section` = "trainer") against the launch: each must be
//! null or what the launcher started (nodes = WORLD_SIZE / LOCAL_WORLD_SIZE, processes per node =
//! LOCAL_WORLD_SIZE), and their product, when both are set, must be WORLD_SIZE.
inline void require_layout(const std::optional<std::int64_t>& nnodes, const std::optional<std::int64_t>& per_node,
                           const ProcessLayout& l, const std::string& section) {
  const std::string nn = section + ".nnodes", pn = section + ".n_gpus_per_node";
  const auto launched = verl::detail::concat_message("the launcher started WORLD_SIZE=", l.world_size,
                                                     " process(es), LOCAL_WORLD_SIZE=", l.local_world_size,
                                                     " on this node");
  if (nnodes && per_node) {
    require(*nnodes * *per_node == l.world_size, nn, nn, " x ", pn, " = ", *nnodes, " x ", *per_node, " = ",
            *nnodes * *per_node, " processes, but ", launched, "; set both to match the launch or to null (null: the "
            "launcher's)");
  }
  if (per_node) {
    require(*per_node == l.local_world_size, pn, "is ", *per_node, " but ", launched, "; set it to ",
            l.local_world_size, " or to null (null: the launcher's)");
  }
  if (nnodes) {
    const bool even = l.local_world_size > 0 && l.world_size % l.local_world_size == 0;
    require(!even || *nnodes == l.world_size / l.local_world_size, nn, "is ", *nnodes, " but ", launched,
            ", that is ", even ? l.world_size / l.local_world_size : 0, " node(s); set it to match or to null");
  }
}
//! The processes the layout keys name: nnodes x n_gpus_per_node, a null one counting 1.
[[nodiscard]] inline std::int64_t configured_processes(const std::optional<std::int64_t>& nnodes,
                                                       const std::optional<std::int64_t>& per_node) {
  return std::max<std::int64_t>(1, nnodes.value_or(1)) * std::max<std::int64_t>(1, per_node.value_or(1));
}
//! Runs `checks` (which throw InvalidValue with full key paths) and reports a failure as a ConfigError naming
//! the key and the number of processes.
template <class Fn>
void with_layout_errors(const ProcessLayout& l, Fn&& checks) {
  try {
    checks();
  } catch (const InvalidValue& e) {
    throw ConfigError(verl::detail::concat_message("verl::config: `", e.key(), "` (with WORLD_SIZE=", l.world_size,
                                                   " process(es)): ", e.what()));
  }
}
}  // namespace detail

// -------------------------------------------------------------------------------------------------------------
// Shared sections

//! AdamW and its learning-rate schedule (verl FSDPOptimizerConfig; optim/fsdp.yaml).
struct OptimConfig {
  std::string optimizer = "AdamW";
  double lr = 1e-3;
  double lr_warmup_steps_ratio = 0.0;
  std::int64_t total_training_steps = -1;
  double weight_decay = 0.01;
  std::optional<std::int64_t> lr_warmup_steps = -1;
  std::vector<double> betas{0.9, 0.999};
  double clip_grad = 1.0;
  std::optional<double> grad_clip;  // deprecated alias of clip_grad
  std::optional<double> min_lr_ratio = 0.0;
  double num_cycles = 0.5;
  LRSchedulerType lr_scheduler_type = LRSchedulerType::constant;
  bool zero_indexed_step = true;
  std::optional<std::string> warmup_style;  // deprecated alias of lr_scheduler_type
  Json override_optimizer_config = nullptr;

  template <class V>
  void describe(V& v) {
    v("optimizer", optimizer, "optimizer class; verl-cpp implements AdamW (torch.optim.AdamW semantics)");
    v("lr", lr, "peak learning rate");
    v("lr_warmup_steps_ratio", lr_warmup_steps_ratio,
      "warm-up steps as a fraction of total_training_steps, used when lr_warmup_steps <= 0 or null");
    v("total_training_steps", total_training_steps, "steps of the schedule; -1: set by the trainer at start");
    v("weight_decay", weight_decay, "AdamW decoupled weight decay");
    v("lr_warmup_steps", lr_warmup_steps, "linear warm-up steps; <= 0 or null: use lr_warmup_steps_ratio");
    v("betas", betas, "AdamW (beta1, beta2)");
    v("clip_grad", clip_grad, "gradient-norm clip of the engine path (the actor/critic `grad_clip` is what the PPO update uses)");
    v("grad_clip", grad_clip, "deprecated alias of clip_grad; when set it replaces clip_grad (verl warns)");
    v("min_lr_ratio", min_lr_ratio, "cosine schedule: floor of the learning rate as a fraction of lr");
    v("num_cycles", num_cycles, "cosine schedule: number of cosine cycles (0.5: one half-cosine decay)");
    v("lr_scheduler_type", lr_scheduler_type, "schedule after warm-up");
    v("zero_indexed_step", zero_indexed_step, "the schedule counts steps from 0 (true) or from 1 (false)");
    v("warmup_style", warmup_style, "deprecated alias of lr_scheduler_type; when set it replaces it (verl warns)");
    v.ignore("optimizer_impl", "Python module to import the optimizer from");
    v("override_optimizer_config", override_optimizer_config,
      "extra arguments of the optimizer; verl-cpp reads `fused` (true: torch's fused AdamW kernel, at::_fused_adamw_, "
      "TRL's default; false or absent: the for-loop AdamW of verl's default)");
  }
  //! override_optimizer_config.fused (false when absent).
  [[nodiscard]] bool fused() const {
    return override_optimizer_config.is_object() && override_optimizer_config.value("fused", false);
  }
  void post_init() {
    if (grad_clip) clip_grad = *grad_clip;
    if (warmup_style) lr_scheduler_type = parse(*warmup_style, std::type_identity<LRSchedulerType>{});
  }
  void validate() const {
    require(optimizer == "AdamW", "optimizer", "is \"", optimizer, "\"; verl-cpp implements \"AdamW\" only");
    require(lr >= 0, "lr", "must be >= 0, got ", lr);
    require(lr_warmup_steps_ratio >= 0 && lr_warmup_steps_ratio <= 1, "lr_warmup_steps_ratio", "must be in [0, 1], got ",
            lr_warmup_steps_ratio);
    require(weight_decay >= 0, "weight_decay", "must be >= 0, got ", weight_decay);
    require(betas.size() == 2, "betas", "must have 2 values (beta1, beta2), got ", betas.size());
    for (double b : betas) require(b >= 0 && b < 1, "betas", "values must be in [0, 1), got ", b);
    require(clip_grad > 0, "clip_grad", "must be > 0, got ", clip_grad);
    if (min_lr_ratio) require(*min_lr_ratio >= 0 && *min_lr_ratio <= 1, "min_lr_ratio", "must be in [0, 1], got ", *min_lr_ratio);
    require(num_cycles >= 0, "num_cycles", "must be >= 0, got ", num_cycles);
    require(override_optimizer_config.is_null() || override_optimizer_config.is_object(), "override_optimizer_config",
            "must be a mapping or null");
    if (override_optimizer_config.is_object()) {
      for (const auto& [key, value] : override_optimizer_config.items()) {
        require(key == "fused", "override_optimizer_config." + key,
                "is not an argument verl-cpp's AdamW takes (it reads `fused` only)");
        require(value.is_boolean(), "override_optimizer_config.fused", "must be true or false");
      }
    }
  }
};

//! What a checkpoint holds (verl CheckpointConfig).
struct CheckpointConfig {
  std::vector<std::string> save_contents{"model", "optimizer", "extra"};
  std::vector<std::string> load_contents{"model", "optimizer", "extra"};

  template <class V>
  void describe(V& v) {
    v("save_contents", save_contents,
      "what to save: model (HF layout weights), optimizer, extra (scheduler, RNG, data position), hf_model");
    v("load_contents", load_contents, "what to load on resume", interpolate("${.save_contents}"));
    v.ignore("async_save", "asynchronous distributed checkpoint saving");
    v.ignore("mbridge_config", "Megatron bridge options");
  }
  void validate() const {
    for (const auto& c : save_contents) require_one_of(c, {"model", "optimizer", "extra", "hf_model"}, "save_contents");
    for (const auto& c : load_contents) require_one_of(c, {"model", "optimizer", "extra", "hf_model"}, "load_contents");
  }
};

// -------------------------------------------------------------------------------------------------------------
// PPO

//! `data`: the prompt dataset (verl legacy_data.yaml / RLHFDataset).
struct DataConfig {
  std::optional<std::string> tokenizer;
  FileList train_files{{"~/data/rlhf/gsm8k/train.parquet"}};
  FileList val_files{{"~/data/rlhf/gsm8k/test.parquet"}};
  std::int64_t train_max_samples = -1;
  std::int64_t val_max_samples = -1;
  std::string prompt_key = "prompt";
  std::string reward_fn_key = "data_source";
  std::int64_t max_prompt_length = 512;
  std::int64_t max_response_length = 512;
  std::int64_t train_batch_size = 1024;
  std::optional<std::int64_t> val_batch_size;
  bool return_raw_input_ids = false;
  bool return_raw_chat = true;
  bool return_full_prompt = false;
  bool shuffle = true;
  std::optional<std::int64_t> seed;
  std::int64_t dataloader_num_workers = 8;
  bool validation_shuffle = false;
  bool filter_overlong_prompts = false;
  std::int64_t filter_overlong_prompts_workers = 1;
  Truncation truncation = Truncation::error;
  Json apply_chat_template_kwargs = Json::object();

  template <class V>
  void describe(V& v) {
    v("tokenizer", tokenizer, "tokenizer path; null: the actor model's tokenizer");
    v("train_files", train_files, "training data: a path or a list of paths (JSONL in verl's row schema)");
    v("val_files", val_files, "validation data: a path or a list of paths; null: no validation");
    v("train_max_samples", train_max_samples, "use at most this many training rows; -1: all");
    v("val_max_samples", val_max_samples, "use at most this many validation rows; -1: all");
    v("prompt_key", prompt_key, "row field holding the prompt (chat messages or text)");
    v("reward_fn_key", reward_fn_key, "row field that selects the reward function (per data source)");
    v("max_prompt_length", max_prompt_length, "prompt tokens; longer prompts are filtered or truncated (see truncation)");
    v("max_response_length", max_response_length, "generated tokens per response");
    v("train_batch_size", train_batch_size, "prompts per training step (each sampled rollout.n times)");
    v("val_batch_size", val_batch_size, "prompts per validation batch; null: the whole set (deprecated in verl)");
    v("return_raw_input_ids", return_raw_input_ids, "also keep the un-padded prompt ids (for a reward model with another tokenizer)");
    v("return_raw_chat", return_raw_chat, "also keep the prompt messages before the chat template");
    v("return_full_prompt", return_full_prompt, "also keep the prompt text after the chat template");
    v("shuffle", shuffle, "shuffle the training data each epoch");
    v("seed", seed, "seed of the shuffling; null: a fixed default (verl: torch.Generator()'s default seed, 67280421310721)");
    v("dataloader_num_workers", dataloader_num_workers, "background workers that tokenize and prefetch; 0: inline");
    v("validation_shuffle", validation_shuffle, "shuffle the validation data");
    v("filter_overlong_prompts", filter_overlong_prompts, "drop prompts longer than max_prompt_length at load");
    v("filter_overlong_prompts_workers", filter_overlong_prompts_workers, "threads that filter overlong prompts");
    v("truncation", truncation, "a prompt longer than max_prompt_length: error, or cut tokens from the left (keeps the end), right (keeps the start) or middle");
    v("apply_chat_template_kwargs", apply_chat_template_kwargs, "extra variables for the chat template");
    v.ignore("use_shm", "load the model through shared memory");
    v.ignore("tool_config_path", "multi-turn tool definitions (not implemented)");
    v.ignore("image_patch_size", "multi-modal inputs (not implemented)");
    v.ignore("image_key", "multi-modal inputs (not implemented)");
    v.ignore("video_key", "multi-modal inputs (not implemented)");
    v.ignore("return_multi_modal_inputs", "multi-modal inputs (not implemented)");
    v.ignore("trust_remote_code", "Python remote code of a tokenizer");
    v.ignore("custom_cls", "a Python dataset class");
    v.ignore("sampler", "a Python curriculum sampler class");
    v.ignore("datagen", "a Python dynamic data generator class");
  }
  void validate() const {
    require(max_prompt_length > 0, "max_prompt_length", "must be > 0, got ", max_prompt_length);
    require(max_response_length > 0, "max_response_length", "must be > 0, got ", max_response_length);
    require(train_batch_size > 0, "train_batch_size", "must be > 0, got ", train_batch_size);
    detail::require_positive_opt(val_batch_size, "val_batch_size");
    require(dataloader_num_workers >= 0, "dataloader_num_workers", "must be >= 0, got ", dataloader_num_workers);
    require(filter_overlong_prompts_workers >= 1, "filter_overlong_prompts_workers", "must be >= 1, got ",
            filter_overlong_prompts_workers);
    require(!train_files.files.empty(), "train_files", "must name at least one file");
    require(apply_chat_template_kwargs.is_object(), "apply_chat_template_kwargs", "must be a mapping");
  }
};

//! `actor_rollout_ref.model`: the policy model (verl HFModelConfig).
struct ModelConfig {
  std::string path = "~/models/deepseek-llm-7b-chat";
  std::optional<std::string> hf_config_path;
  std::optional<std::string> tokenizer_path;
  std::optional<std::string> custom_chat_template;
  Json override_config = Json::object();
  bool enable_gradient_checkpointing = true;
  bool use_remove_padding = true;
  std::int64_t lora_rank = 0;

  template <class V>
  void describe(V& v) {
    v("path", path, "Hugging Face model directory (config.json, safetensors, tokenizer)");
    v("hf_config_path", hf_config_path, "config.json directory when it differs from path");
    v("tokenizer_path", tokenizer_path, "tokenizer directory; null: path");
    v("custom_chat_template", custom_chat_template, "a Jinja chat template replacing the tokenizer's");
    v("override_config", override_config, "entries that replace those of config.json");
    v("enable_gradient_checkpointing", enable_gradient_checkpointing, "recompute activations in the backward pass");
    v("use_remove_padding", use_remove_padding, "pack sequences without padding for the forward passes");
    v("lora_rank", lora_rank, "LoRA rank; must be 0 (LoRA is not implemented in verl-cpp)");
    for (const char* k : {"lora_alpha", "target_modules", "exclude_modules", "lora_adapter_path"})
      v.ignore(k, "LoRA (not implemented; lora_rank must be 0)");
    v.ignore("use_shm", "load the model through shared memory");
    v.ignore("trust_remote_code", "Python remote code of a model");
    v.ignore("external_lib", "a Python module to import");
    v.ignore("enable_activation_offload", "FSDP activation offload");
    v.ignore("use_liger", "Liger kernels (Python)");
    v.ignore("use_fused_kernels", "verl's Triton kernels");
    v.ignore("fused_kernel_options", "verl's Triton kernels");
    v.ignore("tiled_mlp", "tiled MLP memory optimisation (FSDP)");
    v.ignore("mtp", "multi-token prediction (Megatron/SGLang)");
  }
  void validate() const {
    require(!path.empty(), "path", "must not be empty");
    require(lora_rank == 0, "lora_rank", "is ", lora_rank, "; LoRA is not implemented in verl-cpp, set it to 0");
    require(override_config.is_object(), "override_config", "must be a mapping");
  }
};

//! `actor_rollout_ref.actor.policy_loss` (verl PolicyLossConfig).
struct PolicyLossConfig {
  std::string loss_mode = "vanilla";
  double clip_cov_ratio = 0.0002;
  double clip_cov_lb = 1.0;
  double clip_cov_ub = 5.0;
  double kl_cov_ratio = 0.0002;
  double ppo_kl_coef = 0.1;

  template <class V>
  void describe(V& v) {
    v("loss_mode", loss_mode, "policy loss: vanilla, dual-clip via clip_ratio_c, gspo, sapo, clip-cov, kl-cov, gpg, ... or a registered one");
    v("clip_cov_ratio", clip_cov_ratio, "clip-cov: fraction of tokens clipped");
    v("clip_cov_lb", clip_cov_lb, "clip-cov: lower bound of the covariance");
    v("clip_cov_ub", clip_cov_ub, "clip-cov: upper bound of the covariance");
    v("kl_cov_ratio", kl_cov_ratio, "kl-cov: fraction of tokens with the KL penalty");
    v("ppo_kl_coef", ppo_kl_coef, "kl-cov: KL coefficient");
  }
};

//! `actor_rollout_ref.actor` (verl FSDPActorConfig, actor/dp_actor.yaml).
struct ActorConfig {
  std::string strategy = "dp";
  std::int64_t ppo_mini_batch_size = 256;
  std::optional<std::int64_t> ppo_micro_batch_size;
  std::optional<std::int64_t> ppo_micro_batch_size_per_gpu;
  bool use_dynamic_bsz = false;
  std::int64_t ppo_max_token_len_per_gpu = 16384;
  double clip_ratio = 0.2;
  double clip_ratio_low = 0.2;
  double clip_ratio_high = 0.2;
  double tau_pos = 1.0;
  double tau_neg = 1.05;
  PolicyLossConfig policy_loss;
  double clip_ratio_c = 3.0;
  std::string loss_agg_mode = "token-mean";
  std::optional<std::int64_t> loss_scale_factor;
  double entropy_coeff = 0.0;
  bool calculate_entropy = false;
  bool use_kl_loss = false;
  double kl_loss_coef = 0.001;
  std::string kl_loss_type = "low_var_kl";
  std::int64_t ppo_epochs = 1;
  bool shuffle = false;
  std::int64_t data_loader_seed = 42;
  CheckpointConfig checkpoint;
  OptimConfig optim = [] {
    OptimConfig o;
    o.lr = 1e-6;
    return o;
  }();
  double grad_clip = 1.0;
  bool entropy_from_logits_with_chunking = false;
  bool use_remove_padding = true;

  template <class V>
  void describe(V& v) {
    v("strategy", strategy,
      "how the actor trains on several processes: dp (every process holds the whole model, gradients are averaged) "
      "or fsdp / fsdp2 (fully sharded: parameters, gradients and AdamW states split over the processes); verl: fsdp");
    v("ppo_mini_batch_size", ppo_mini_batch_size,
      "prompts per PPO mini-batch (one optimizer step), over all processes; multiplied by rollout.n for responses");
    v("ppo_micro_batch_size", ppo_micro_batch_size, "deprecated global micro-batch size; use ppo_micro_batch_size_per_gpu");
    v("ppo_micro_batch_size_per_gpu", ppo_micro_batch_size_per_gpu,
      "responses per forward/backward (gradient accumulation); required unless use_dynamic_bsz");
    v("use_dynamic_bsz", use_dynamic_bsz, "form micro-batches by token count (ppo_max_token_len_per_gpu) instead");
    v("ppo_max_token_len_per_gpu", ppo_max_token_len_per_gpu, "tokens per micro-batch with use_dynamic_bsz");
    v("clip_ratio", clip_ratio, "PPO clip epsilon (default of clip_ratio_low/high)");
    v("clip_ratio_low", clip_ratio_low, "lower clip epsilon (ratio >= 1 - low)");
    v("clip_ratio_high", clip_ratio_high, "upper clip epsilon (ratio <= 1 + high; DAPO's clip-higher)");
    v("tau_pos", tau_pos, "SAPO: temperature for positive advantages");
    v("tau_neg", tau_neg, "SAPO: temperature for negative advantages");
    v("policy_loss", policy_loss, "");
    v("clip_ratio_c", clip_ratio_c, "dual-clip PPO: lower bound of the clipped objective for negative advantages");
    v("loss_agg_mode", loss_agg_mode, "token-mean, seq-mean-token-sum, seq-mean-token-mean or seq-mean-token-sum-norm");
    v("loss_scale_factor", loss_scale_factor, "seq-mean-token-sum-norm: the constant divisor; null: the response length");
    v("entropy_coeff", entropy_coeff, "entropy bonus coefficient (0: entropy is not computed for the loss)");
    v("calculate_entropy", calculate_entropy, "compute the entropy metric even when entropy_coeff is 0");
    v("use_kl_loss", use_kl_loss, "add a KL(actor || ref) term to the loss (GRPO); needs the reference model");
    v("kl_loss_coef", kl_loss_coef, "coefficient of the KL loss");
    v("kl_loss_type", kl_loss_type, "KL estimator of the loss: kl/k1, abs, mse/k2, low_var_kl/k3 (a trailing + : straight-through k2 gradient)");
    v("ppo_epochs", ppo_epochs, "passes over each batch");
    v("shuffle", shuffle, "shuffle the batch before splitting into mini-batches");
    v("data_loader_seed", data_loader_seed, "seed of that shuffle");
    v("checkpoint", checkpoint, "");
    v("optim", optim, "");
    v("grad_clip", grad_clip, "max gradient norm of the actor update");
    v("entropy_from_logits_with_chunking", entropy_from_logits_with_chunking, "compute the entropy in chunks to save memory");
    v("use_remove_padding", use_remove_padding, "pack sequences without padding in the update",
      interpolate("${oc.select:actor_rollout_ref.model.use_remove_padding,false}"));
    v.ignore("rollout_n", "copy of rollout.n made by verl (`${oc.select:actor_rollout_ref.rollout.n,1}`)");
    v.ignore("fsdp_config", "FSDP sharding and offload");
    v.ignore("freeze_vision_tower", "multi-modal models (not implemented)");
    v.ignore("use_prefix_grouper", "shared-prefix attention (FSDP)");
    v.ignore("use_torch_compile", "torch.compile");
    v.ignore("use_fused_kernels", "verl's Triton kernels");
    v.ignore("profiler", "profiler");
    v.ignore("router_replay", "MoE router replay (Megatron)");
    v.ignore("ulysses_sequence_parallel_size", "sequence parallelism across GPUs");
    v.ignore("entropy_checkpointing", "FSDP activation checkpointing of the entropy");
    v.ignore("calculate_sum_pi_squared", "optimal-token-baseline statistics of the FSDP engine");
    v.ignore("sum_pi_squared_checkpointing", "optimal-token-baseline statistics of the FSDP engine");
    v.ignore("qat", "quantisation-aware training");
    v.ignore("megatron", "Megatron parallelism");
    v.ignore("load_weight", "Megatron");
    v.ignore("use_rollout_log_probs", "use the inference engine's log-probs as old log-probs (not implemented)");
  }
  void validate() const {
    detail::require_strategy(strategy, "strategy");
    require(ppo_mini_batch_size > 0, "ppo_mini_batch_size", "must be > 0, got ", ppo_mini_batch_size);
    if (!use_dynamic_bsz) {
      // verl ActorConfig.__post_init__ (same messages).
      require(!(ppo_micro_batch_size && ppo_micro_batch_size_per_gpu), "ppo_micro_batch_size",
              "[actor] You have set both 'actor.ppo_micro_batch_size' AND 'actor.ppo_micro_batch_size_per_gpu'. Please "
              "remove 'actor.ppo_micro_batch_size' because only '*_ppo_micro_batch_size_per_gpu' is supported (the former "
              "is deprecated).");
      require(ppo_micro_batch_size || ppo_micro_batch_size_per_gpu, "ppo_micro_batch_size_per_gpu",
              "[actor] Please set at least one of 'actor.ppo_micro_batch_size' or 'actor.ppo_micro_batch_size_per_gpu' if "
              "use_dynamic_bsz is not enabled.");
    }
    detail::require_positive_opt(ppo_micro_batch_size, "ppo_micro_batch_size");
    detail::require_positive_opt(ppo_micro_batch_size_per_gpu, "ppo_micro_batch_size_per_gpu");
    require(ppo_max_token_len_per_gpu > 0, "ppo_max_token_len_per_gpu", "must be > 0, got ", ppo_max_token_len_per_gpu);
    require(clip_ratio >= 0, "clip_ratio", "must be >= 0, got ", clip_ratio);
    require(clip_ratio_low >= 0, "clip_ratio_low", "must be >= 0, got ", clip_ratio_low);
    require(clip_ratio_high >= 0, "clip_ratio_high", "must be >= 0, got ", clip_ratio_high);
    require(clip_ratio_c > 1, "clip_ratio_c", "must be > 1.0 (dual-clip PPO), got ", clip_ratio_c);
    detail::require_loss_agg_mode(loss_agg_mode, "loss_agg_mode");
    detail::require_positive_opt(loss_scale_factor, "loss_scale_factor");
    require(kl_loss_coef >= 0, "kl_loss_coef", "must be >= 0, got ", kl_loss_coef);
    detail::require_kl_estimator(kl_loss_type, "kl_loss_type");
    require(ppo_epochs >= 1, "ppo_epochs", "must be >= 1, got ", ppo_epochs);
    require(grad_clip > 0, "grad_clip", "must be > 0, got ", grad_clip);
  }
};

//! `actor_rollout_ref.ref`: the frozen reference policy's log-prob pass.
struct RefConfig {
  std::optional<std::int64_t> log_prob_micro_batch_size;
  std::optional<std::int64_t> log_prob_micro_batch_size_per_gpu;
  bool log_prob_use_dynamic_bsz = false;
  std::int64_t log_prob_max_token_len_per_gpu = 16384;

  template <class V>
  void describe(V& v) {
    v("log_prob_micro_batch_size", log_prob_micro_batch_size, "deprecated; use log_prob_micro_batch_size_per_gpu");
    v("log_prob_micro_batch_size_per_gpu", log_prob_micro_batch_size_per_gpu, "responses per reference forward pass");
    v("log_prob_use_dynamic_bsz", log_prob_use_dynamic_bsz, "form micro-batches by token count",
      interpolate("${oc.select:actor_rollout_ref.actor.use_dynamic_bsz,false}"));
    v("log_prob_max_token_len_per_gpu", log_prob_max_token_len_per_gpu, "tokens per micro-batch with dynamic batch size",
      interpolate("${oc.select:actor_rollout_ref.actor.ppo_max_token_len_per_gpu,16384}"));
    for (const char* k : {"rollout_n", "strategy", "use_torch_compile"}) v.ignore(k, "copied from the actor by verl");
    v.ignore("fsdp_config", "FSDP sharding and offload");
    v.ignore("profiler", "profiler");
    v.ignore("router_replay", "MoE router replay (Megatron)");
    v.ignore("ulysses_sequence_parallel_size", "sequence parallelism across GPUs");
    v.ignore("entropy_from_logits_with_chunking", "the reference computes no entropy");
    v.ignore("entropy_checkpointing", "the reference computes no entropy");
    v.ignore("megatron", "Megatron parallelism");
    v.ignore("load_weight", "Megatron");
  }
  void validate() const {
    detail::require_positive_opt(log_prob_micro_batch_size, "log_prob_micro_batch_size");
    detail::require_positive_opt(log_prob_micro_batch_size_per_gpu, "log_prob_micro_batch_size_per_gpu");
    require(log_prob_max_token_len_per_gpu > 0, "log_prob_max_token_len_per_gpu", "must be > 0");
  }
};

//! Sampling parameters of validation generation (verl SamplingConfig, rollout.val_kwargs).
struct SamplingConfig {
  std::int64_t top_k = -1;
  double top_p = 1.0;
  double temperature = 0.0;
  std::int64_t n = 1;
  bool do_sample = false;

  template <class V>
  void describe(V& v) {
    v("top_k", top_k, "top-k sampling; -1: off");
    v("top_p", top_p, "nucleus sampling; 1.0: off");
    v("temperature", temperature, "sampling temperature (must be > 0 with do_sample)");
    v("n", n, "responses per validation prompt");
    v("do_sample", do_sample, "sample (true) or greedy decoding (false)");
  }
  void validate() const {
    require(top_k >= -1, "top_k", "must be -1 (off) or >= 0, got ", top_k);
    require(top_p > 0 && top_p <= 1, "top_p", "must be in (0, 1], got ", top_p);
    require(temperature >= 0, "temperature", "must be >= 0, got ", temperature);
    require(n >= 1, "n", "must be >= 1, got ", n);
    if (do_sample) require(temperature > 0, "temperature", "must be > 0 when do_sample is true, got ", temperature);
  }
};

//! `actor_rollout_ref.rollout`: generation (verl RolloutConfig), served by verl-cpp's rollout engine.
struct RolloutConfig {
  double temperature = 1.0;
  std::int64_t top_k = -1;
  double top_p = 1.0;
  std::int64_t prompt_length = 512;
  std::int64_t response_length = 512;
  bool ignore_eos = false;
  std::optional<std::int64_t> log_prob_micro_batch_size;
  std::optional<std::int64_t> log_prob_micro_batch_size_per_gpu;
  bool log_prob_use_dynamic_bsz = false;
  std::int64_t log_prob_max_token_len_per_gpu = 16384;
  bool do_sample = true;
  std::int64_t n = 1;
  bool calculate_log_probs = false;
  SamplingConfig val_kwargs;

  template <class V>
  void describe(V& v) {
    v("temperature", temperature, "sampling temperature of training rollouts");
    v("top_k", top_k, "top-k sampling; -1: off");
    v("top_p", top_p, "nucleus sampling; 1.0: off");
    v("prompt_length", prompt_length, "maximum prompt tokens", interpolate("${oc.select:data.max_prompt_length,512}"));
    v("response_length", response_length, "maximum generated tokens",
      interpolate("${oc.select:data.max_response_length,512}"));
    v("ignore_eos", ignore_eos, "keep generating after EOS up to response_length");
    v("log_prob_micro_batch_size", log_prob_micro_batch_size, "deprecated; use log_prob_micro_batch_size_per_gpu");
    v("log_prob_micro_batch_size_per_gpu", log_prob_micro_batch_size_per_gpu,
      "responses per forward pass when recomputing the old log-probs; required unless dynamic batch size");
    v("log_prob_use_dynamic_bsz", log_prob_use_dynamic_bsz, "form micro-batches by token count",
      interpolate("${oc.select:actor_rollout_ref.actor.use_dynamic_bsz,false}"));
    v("log_prob_max_token_len_per_gpu", log_prob_max_token_len_per_gpu, "tokens per micro-batch with dynamic batch size",
      interpolate("${oc.select:actor_rollout_ref.actor.ppo_max_token_len_per_gpu,16384}"));
    v("do_sample", do_sample, "sample (true) or greedy decoding (false) in training rollouts");
    v("n", n, "responses per prompt (the group size of GRPO/RLOO)");
    v("calculate_log_probs", calculate_log_probs, "return the engine's log-probs of the sampled tokens");
    v("val_kwargs", val_kwargs, "");
    v.ignore("name", "inference server (vllm/sglang/hf); verl-cpp has its own engine");
    v.ignore("mode", "sync/async server mode");
    for (const char* k : {"nnodes", "n_gpus_per_node", "tensor_model_parallel_size", "data_parallel_size",
                          "expert_parallel_size", "pipeline_model_parallel_size"})
      v.ignore(k, "inference server parallelism");
    for (const char* k : {"dtype", "gpu_memory_utilization", "enforce_eager", "cudagraph_capture_sizes", "free_cache_engine",
                          "max_num_batched_tokens", "max_model_len", "max_num_seqs", "enable_chunked_prefill",
                          "enable_prefix_caching", "logprobs_mode", "scheduling_policy", "load_format", "disable_log_stats",
                          "engine_kwargs", "over_sample_rate", "multi_stage_wake_up", "skip_tokenizer_init", "layered_summon",
                          "quantization", "quantization_config_file", "enable_rollout_routing_replay"})
      v.ignore(k, "vLLM/SGLang server setting");
    v.ignore("multi_turn", "multi-turn tool use (not implemented)");
    v.ignore("agent", "agent loop (not implemented)");
    v.ignore("checkpoint_engine", "weight transfer to a separate inference server");
    v.ignore("trace", "rollout tracing backends");
    v.ignore("skip_rollout", "debug: replay dumped rollouts");
    v.ignore("skip_dump_dir", "debug: replay dumped rollouts");
    v.ignore("profiler", "profiler");
    v.ignore("prometheus", "server metrics");
    v.ignore("mtp", "multi-token prediction (SGLang)");
    v.ignore("qat", "quantisation-aware training");
  }
  void validate() const {
    require(temperature >= 0, "temperature", "must be >= 0, got ", temperature);
    require(top_k >= -1, "top_k", "must be -1 (off) or >= 0, got ", top_k);
    require(top_p > 0 && top_p <= 1, "top_p", "must be in (0, 1], got ", top_p);
    require(prompt_length > 0, "prompt_length", "must be > 0, got ", prompt_length);
    require(response_length > 0, "response_length", "must be > 0, got ", response_length);
    require(n >= 1, "n", "must be >= 1, got ", n);
    if (do_sample) require(temperature > 0, "temperature", "must be > 0 when do_sample is true (greedy: do_sample=false)");
    detail::require_positive_opt(log_prob_micro_batch_size, "log_prob_micro_batch_size");
    detail::require_positive_opt(log_prob_micro_batch_size_per_gpu, "log_prob_micro_batch_size_per_gpu");
  }
};

//! `actor_rollout_ref`: the policy model and its three roles.
struct ActorRolloutRefConfig {
  ModelConfig model;
  ActorConfig actor;
  RefConfig ref;
  RolloutConfig rollout;
  std::int64_t nccl_timeout = 600;

  template <class V>
  void describe(V& v) {
    v("model", model, "");
    v("actor", actor, "");
    v("ref", ref, "");
    v("rollout", rollout, "");
    v("nccl_timeout", nccl_timeout,
      "seconds: the process group's timeout (rendezvous and every collective, Gloo and NCCL), as verl's "
      "init_process_group(timeout=nccl_timeout)");
    v.ignore("hybrid_engine", "colocated training and inference workers (always the case in verl-cpp)");
  }
  void validate() const { require(nccl_timeout > 0, "nccl_timeout", "must be > 0 seconds, got ", nccl_timeout); }
};

//! `critic.model` (verl FSDPCriticModelCfg).
struct CriticModelConfig {
  std::string path = "~/models/deepseek-llm-7b-chat";
  std::optional<std::string> tokenizer_path = "~/models/deepseek-llm-7b-chat";
  Json override_config = Json::object();
  bool enable_gradient_checkpointing = true;
  bool use_remove_padding = false;

  template <class V>
  void describe(V& v) {
    v("path", path, "Hugging Face model directory of the critic (a value head is added)");
    v("tokenizer_path", tokenizer_path, "tokenizer directory",
      interpolate("${oc.select:actor_rollout_ref.model.path,\"~/models/deepseek-llm-7b-chat\"}"));
    v("override_config", override_config, "entries that replace those of config.json");
    v("enable_gradient_checkpointing", enable_gradient_checkpointing, "recompute activations in the backward pass");
    v("use_remove_padding", use_remove_padding, "pack sequences without padding");
    v.ignore("fsdp_config", "FSDP sharding and offload");
    v.ignore("external_lib", "a Python module to import");
    v.ignore("trust_remote_code", "Python remote code of a model");
    v.ignore("use_shm", "load the model through shared memory");
    v.ignore("enable_activation_offload", "FSDP activation offload");
    for (const char* k : {"lora_rank", "lora_alpha", "target_modules"}) v.ignore(k, "LoRA (not implemented)");
    v.ignore("tiled_mlp", "tiled MLP memory optimisation (FSDP)");
  }
  void validate() const { require(override_config.is_object(), "override_config", "must be a mapping"); }
};

//! `critic` (verl FSDPCriticConfig, critic/dp_critic.yaml).
struct CriticConfig {
  OptimConfig optim = [] {
    OptimConfig o;
    o.lr = 1e-5;
    return o;
  }();
  CriticModelConfig model;
  std::optional<bool> enable;
  std::string strategy = "dp";
  std::int64_t ppo_mini_batch_size = 256;
  std::optional<std::int64_t> ppo_micro_batch_size;
  std::optional<std::int64_t> ppo_micro_batch_size_per_gpu;
  bool use_dynamic_bsz = false;
  std::int64_t ppo_max_token_len_per_gpu = 32768;
  std::int64_t forward_max_token_len_per_gpu = 32768;
  std::int64_t ppo_epochs = 1;
  bool shuffle = false;
  std::int64_t data_loader_seed = 42;
  double cliprange_value = 0.5;
  std::string loss_agg_mode = "token-mean";
  CheckpointConfig checkpoint;
  std::optional<std::int64_t> forward_micro_batch_size;
  std::optional<std::int64_t> forward_micro_batch_size_per_gpu;
  double grad_clip = 1.0;

  template <class V>
  void describe(V& v) {
    v("optim", optim, "");
    v("model", model, "");
    v("enable", enable, "train a critic; null: exactly when algorithm.adv_estimator is gae");
    v("strategy", strategy, "how the critic trains on several processes: dp or fsdp / fsdp2 (as the actor's)",
      interpolate("${oc.select:actor_rollout_ref.actor.strategy,dp}"));
    v("ppo_mini_batch_size", ppo_mini_batch_size, "prompts per critic mini-batch",
      interpolate("${oc.select:actor_rollout_ref.actor.ppo_mini_batch_size,256}"));
    v("ppo_micro_batch_size", ppo_micro_batch_size, "deprecated; use ppo_micro_batch_size_per_gpu");
    v("ppo_micro_batch_size_per_gpu", ppo_micro_batch_size_per_gpu, "responses per critic forward/backward",
      interpolate("${oc.select:.ppo_micro_batch_size,null}"));
    v("use_dynamic_bsz", use_dynamic_bsz, "form micro-batches by token count",
      interpolate("${oc.select:actor_rollout_ref.actor.use_dynamic_bsz,false}"));
    v("ppo_max_token_len_per_gpu", ppo_max_token_len_per_gpu, "tokens per micro-batch with dynamic batch size");
    v("forward_max_token_len_per_gpu", forward_max_token_len_per_gpu, "tokens per value forward pass",
      interpolate("${.ppo_max_token_len_per_gpu}"));
    v("ppo_epochs", ppo_epochs, "passes over each batch", interpolate("${oc.select:actor_rollout_ref.actor.ppo_epochs,1}"));
    v("shuffle", shuffle, "shuffle before splitting into mini-batches",
      interpolate("${oc.select:actor_rollout_ref.actor.shuffle,false}"));
    v("data_loader_seed", data_loader_seed, "seed of that shuffle");
    v("cliprange_value", cliprange_value, "value clipping range around the old values");
    v("loss_agg_mode", loss_agg_mode, "aggregation of the value loss",
      interpolate("${oc.select:actor_rollout_ref.actor.loss_agg_mode,token-mean}"));
    v("checkpoint", checkpoint, "");
    v("forward_micro_batch_size", forward_micro_batch_size, "deprecated; use forward_micro_batch_size_per_gpu",
      interpolate("${oc.select:.ppo_micro_batch_size,null}"));
    v("forward_micro_batch_size_per_gpu", forward_micro_batch_size_per_gpu, "responses per value forward pass",
      interpolate("${oc.select:.ppo_micro_batch_size_per_gpu,null}"));
    v("grad_clip", grad_clip, "max gradient norm of the critic update");
    v.ignore("rollout_n", "copy of rollout.n made by verl");
    v.ignore("profiler", "profiler");
    v.ignore("ulysses_sequence_parallel_size", "sequence parallelism across GPUs");
    v.ignore("megatron", "Megatron parallelism");
    v.ignore("load_weight", "Megatron");
    v.ignore("nccl_timeout", "NCCL timeout");
  }
  //! Field checks; the micro-batch checks need to know whether the critic is used (PPOConfig::validate).
  void validate() const {
    detail::require_strategy(strategy, "strategy");
    require(ppo_mini_batch_size > 0, "ppo_mini_batch_size", "must be > 0, got ", ppo_mini_batch_size);
    detail::require_positive_opt(ppo_micro_batch_size, "ppo_micro_batch_size");
    detail::require_positive_opt(ppo_micro_batch_size_per_gpu, "ppo_micro_batch_size_per_gpu");
    require(ppo_epochs >= 1, "ppo_epochs", "must be >= 1, got ", ppo_epochs);
    require(cliprange_value >= 0, "cliprange_value", "must be >= 0, got ", cliprange_value);
    detail::require_loss_agg_mode(loss_agg_mode, "loss_agg_mode");
    require(grad_clip > 0, "grad_clip", "must be > 0, got ", grad_clip);
  }
};

//! `reward_model.model` (verl's legacy reward-model keys).
struct RewardModelModelConfig {
  std::optional<std::string> path;
  template <class V>
  void describe(V& v) {
    v("path", path, "Hugging Face directory of a sequence-classification reward model");
    v.ignore("external_lib", "a Python module to import");
    v.ignore("trust_remote_code", "Python remote code of a model");
  }
};

//! `reward_model` (verl 0.7.1's legacy section; its values replace `reward.*` when not null).
struct RewardModelConfig {
  std::optional<bool> enable;
  std::optional<std::string> reward_manager;
  RewardModelModelConfig model;

  template <class V>
  void describe(V& v) {
    v("enable", enable, "score responses with a reward model; null: false");
    v("reward_manager", reward_manager, "how scores are computed and placed (naive, dapo, ...); null: naive");
    v("model", model, "");
    for (const char* k : {"num_workers", "enable_resource_pool", "n_gpus_per_node", "nnodes", "reward_loop_source",
                          "reward_loop_module_path", "reward_loop_class_name", "rollout"})
      v.ignore(k, "Ray reward workers / generative reward-model server");
  }
  void validate() const {
    if (enable.value_or(false)) require(model.path.has_value(), "model.path", "must be set when reward_model.enable is true");
  }
};

//! `custom_reward_function`: a user reward function (in verl a Python file; in verl-cpp the trainer resolves
//! `name` among the reward functions registered with it).
struct CustomRewardFunctionConfig {
  std::optional<std::string> path;
  std::optional<std::string> name;
  template <class V>
  void describe(V& v) {
    v("path", path, "verl: Python file with the function; verl-cpp: an identifier the program registered, or null");
    v("name", name, "function name; null: compute_score");
  }
};

//! `algorithm.kl_ctrl` (verl KLControlConfig).
struct KLControlConfig {
  KLControlType type = KLControlType::fixed;
  double kl_coef = 0.001;
  std::int64_t horizon = 10000;
  double target_kl = 0.1;
  template <class V>
  void describe(V& v) {
    v("type", type, "fixed coefficient or the adaptive controller of Ziegler et al.");
    v("kl_coef", kl_coef, "(initial) coefficient of the KL penalty in the reward");
    v("horizon", horizon, "adaptive: horizon of the proportional controller");
    v("target_kl", target_kl, "adaptive: target KL");
  }
  void validate() const {
    require(kl_coef >= 0, "kl_coef", "must be >= 0, got ", kl_coef);
    if (type == KLControlType::adaptive) {
      require(horizon > 0, "horizon", "must be > 0 for the adaptive controller, got ", horizon);
      require(target_kl > 0, "target_kl", "must be > 0 for the adaptive controller, got ", target_kl);
    }
  }
};

//! `algorithm.filter_groups`: DAPO's dynamic sampling (verl FilterGroupsConfig; null in verl's yaml means
//! disabled, which is also what an absent or null section reads as here).
struct FilterGroupsConfig {
  bool enable = false;
  std::optional<std::string> metric;
  std::int64_t max_num_gen_batches = 0;
  template <class V>
  void describe(V& v) {
    v("enable", enable, "drop groups whose metric is the same for every response and keep generating until the batch is full");
    v("metric", metric, "the per-response metric: acc, score, seq_reward, seq_final_reward, ...");
    v("max_num_gen_batches", max_num_gen_batches, "give up after this many generation batches; <= 0: no limit");
  }
  void validate() const {
    if (enable) require(metric.has_value() && !metric->empty(), "metric", "must be set when filter_groups.enable is true");
  }
};

//! `algorithm.rollout_correction` (verl 0.7.1 RolloutCorrectionConfig). verl-cpp implements bypass mode
//! with its PPO-clip loss (old_log_probs = the sampler's rollout_log_probs, no recompute pass); the importance
//! weights and rejection sampling it corrects a separate inference engine with are refused: the rollout here
//! runs the trained weights in the same precision.
struct RolloutCorrectionConfig {
  std::optional<std::string> rollout_is;
  double rollout_is_threshold = 2.0;
  std::optional<std::string> rollout_rs;
  Json rollout_rs_threshold = nullptr;
  bool bypass_mode = false;
  std::string loss_type = "ppo_clip";
  bool rollout_is_batch_normalize = false;

  template <class V>
  void describe(V& v) {
    v("rollout_is", rollout_is, "importance-sampling weights token/sequence (not implemented: must be null)");
    v("rollout_is_threshold", rollout_is_threshold, "upper truncation of the importance weights (unused while rollout_is is null)");
    v("rollout_rs", rollout_rs, "rejection sampling (not implemented: must be null)");
    v("rollout_rs_threshold", rollout_rs_threshold, "rejection-sampling threshold (unused while rollout_rs is null)");
    v("bypass_mode", bypass_mode,
      "old_log_probs are the rollout's log-probs (needs rollout.calculate_log_probs): the actor's recompute "
      "pass is skipped; with one mini-batch and one epoch the update is the same");
    v("loss_type", loss_type, "bypass-mode loss: ppo_clip (reinforce is not implemented)");
    v("rollout_is_batch_normalize", rollout_is_batch_normalize, "normalise importance weights to mean 1 (not implemented)");
  }
  void validate() const {
    require(!rollout_is, "rollout_is", "is \"", rollout_is.value_or(""), "\"; importance-sampling correction is not "
            "implemented in verl-cpp (one engine runs the trained weights): set it to null");
    require(!rollout_rs, "rollout_rs", "is \"", rollout_rs.value_or(""), "\"; rejection sampling is not implemented in "
            "verl-cpp: set it to null");
    require(loss_type == "ppo_clip", "loss_type", "is \"", loss_type, "\"; verl-cpp's bypass mode implements ppo_clip only");
    require(!rollout_is_batch_normalize, "rollout_is_batch_normalize", "is not implemented: set it to false");
  }
};

//! `algorithm` (verl AlgoConfig).
struct AlgorithmConfig {
  double gamma = 1.0;
  double lam = 1.0;
  std::string adv_estimator = "gae";
  bool norm_adv_by_std_in_grpo = true;
  bool use_kl_in_reward = false;
  std::string kl_penalty = "kl";
  KLControlConfig kl_ctrl;
  FilterGroupsConfig filter_groups;
  RolloutCorrectionConfig rollout_correction;

  template <class V>
  void describe(V& v) {
    v("gamma", gamma, "discount factor");
    v("lam", lam, "GAE lambda");
    v("adv_estimator", adv_estimator, "advantage estimator: gae, grpo, reinforce_plus_plus, rloo, remax, opo, ... or a registered one");
    v("norm_adv_by_std_in_grpo", norm_adv_by_std_in_grpo, "GRPO: divide by the group's standard deviation (false: Dr. GRPO)");
    v("use_kl_in_reward", use_kl_in_reward, "subtract a KL penalty from the token rewards; needs the reference model");
    v("kl_penalty", kl_penalty, "KL estimator of the in-reward penalty: kl/k1, abs, mse/k2, low_var_kl/k3");
    v("kl_ctrl", kl_ctrl, "");
    v("filter_groups", filter_groups, "");
    v.ignore("use_pf_ppo", "preference-feedback PPO (not implemented)");
    v.ignore("pf_ppo", "preference-feedback PPO (not implemented)");
    v("rollout_correction", rollout_correction, "");
  }
  void validate() const {
    require(gamma >= 0 && gamma <= 1, "gamma", "must be in [0, 1], got ", gamma);
    require(lam >= 0 && lam <= 1, "lam", "must be in [0, 1], got ", lam);
    require(!adv_estimator.empty(), "adv_estimator", "must not be empty");
    detail::require_kl_estimator(kl_penalty, "kl_penalty");
  }
};

//! `trainer`: the loop, logging and checkpoints.
struct TrainerConfig {
  bool balance_batch = true;
  std::int64_t total_epochs = 30;
  std::optional<std::int64_t> total_training_steps;
  std::string project_name = "verl_examples";
  std::string experiment_name = "gsm8k";
  std::vector<std::string> logger{"console"};
  std::int64_t log_val_generations = 0;
  std::optional<std::string> rollout_data_dir;
  std::optional<std::string> validation_data_dir;
  std::int64_t save_freq = -1;
  ResumeMode resume_mode = ResumeMode::auto_;
  std::optional<std::string> resume_from_path;
  bool val_before_train = true;
  bool val_only = false;
  std::int64_t test_freq = -1;
  std::int64_t critic_warmup = 0;
  std::string default_local_dir = "checkpoints/verl_examples/gsm8k";
  std::optional<std::int64_t> max_actor_ckpt_to_keep;
  std::optional<std::int64_t> max_critic_ckpt_to_keep;
  std::string device = "auto";
  std::optional<std::int64_t> nnodes;
  std::optional<std::int64_t> n_gpus_per_node;

  template <class V>
  void describe(V& v) {
    v("balance_batch", balance_batch, "reorder the batch so that ranks get equal token counts");
    v("total_epochs", total_epochs, "passes over the training data");
    v("total_training_steps", total_training_steps, "stop after this many steps; null: total_epochs x batches per epoch");
    v("project_name", project_name, "project name for loggers and the checkpoint directory");
    v("experiment_name", experiment_name, "run name for loggers and the checkpoint directory");
    v("logger", logger, "metric sinks: console, jsonl (verl's default [console, wandb]; wandb is Python-only)");
    v("log_val_generations", log_val_generations, "validation samples (prompt, response, score) to log");
    v("rollout_data_dir", rollout_data_dir, "write each step's rollouts as JSONL here; null: off");
    v("validation_data_dir", validation_data_dir, "write validation generations as JSONL here; null: off");
    v("save_freq", save_freq, "save a checkpoint every N steps (and at the end); -1: never");
    v("resume_mode", resume_mode, "auto: latest checkpoint in default_local_dir; disable; resume_path: resume_from_path");
    v("resume_from_path", resume_from_path, "checkpoint directory for resume_mode resume_path");
    v("val_before_train", val_before_train, "validate once before the first step");
    v("val_only", val_only, "validate and exit");
    v("test_freq", test_freq, "validate every N steps; -1: never");
    v("critic_warmup", critic_warmup, "steps that update only the critic");
    v("default_local_dir", default_local_dir, "checkpoint directory",
      interpolate("checkpoints/${trainer.project_name}/${trainer.experiment_name}"));
    v("max_actor_ckpt_to_keep", max_actor_ckpt_to_keep, "keep the newest N actor checkpoints; null: all");
    v("max_critic_ckpt_to_keep", max_critic_ckpt_to_keep, "keep the newest N critic checkpoints; null: all");
    v("device", device, "auto (CUDA when available), cpu, cuda or cuda:N (verl's default: cuda); on several "
      "processes cuda means each process's cuda:LOCAL_RANK");
    v("nnodes", nnodes, "nodes of the job; null: the launcher's (WORLD_SIZE / LOCAL_WORLD_SIZE); checked against the "
      "launch (verl: 1)");
    v("n_gpus_per_node", n_gpus_per_node, "processes per node; null: the launcher's (LOCAL_WORLD_SIZE); checked "
      "against the launch (verl: 8)");
    for (const char* k : {"ray_wait_register_center_timeout", "use_legacy_worker_impl"}) v.ignore(k, "Ray cluster layout");
    v.ignore("esi_redundant_time", "elastic-server-instance save timing (Ray)");
    v.ignore("default_hdfs_dir", "HDFS checkpoint copy");
    v.ignore("del_local_ckpt_after_load", "HDFS checkpoint copy");
  }
  void validate() const {
    require(total_epochs >= 0, "total_epochs", "must be >= 0, got ", total_epochs);
    detail::require_positive_opt(total_training_steps, "total_training_steps");
    for (const auto& l : logger) require(!l.empty(), "logger", "entries must not be empty");
    require(log_val_generations >= 0, "log_val_generations", "must be >= 0, got ", log_val_generations);
    require(save_freq == -1 || save_freq > 0, "save_freq", "must be -1 (never) or > 0, got ", save_freq);
    require(test_freq == -1 || test_freq > 0, "test_freq", "must be -1 (never) or > 0, got ", test_freq);
    require(critic_warmup >= 0, "critic_warmup", "must be >= 0, got ", critic_warmup);
    if (resume_mode == ResumeMode::resume_path)
      require(resume_from_path.has_value() && !resume_from_path->empty(), "resume_from_path",
              "must be set when resume_mode is resume_path");
    detail::require_positive_opt(max_actor_ckpt_to_keep, "max_actor_ckpt_to_keep");
    detail::require_positive_opt(max_critic_ckpt_to_keep, "max_critic_ckpt_to_keep");
    detail::require_positive_opt(nnodes, "nnodes");
    detail::require_positive_opt(n_gpus_per_node, "n_gpus_per_node");
    const bool cuda_n = device.rfind("cuda:", 0) == 0 && device.size() > 5 &&
                        device.find_first_not_of("0123456789", 5) == std::string::npos;
    require(device == "auto" || device == "cpu" || device == "cuda" || cuda_n, "device",
            "is \"", device, "\", expected auto, cpu, cuda or cuda:N");
  }
};

//! The PPO-family trainer's configuration (PPO, GRPO, RLOO, REINFORCE++, ReMax, DAPO, ...): verl's
//! ppo_trainer.yaml.
struct PPOConfig {
  DataConfig data;
  ActorRolloutRefConfig actor_rollout_ref;
  CriticConfig critic;
  RewardModelConfig reward_model;
  CustomRewardFunctionConfig custom_reward_function;
  AlgorithmConfig algorithm;
  TrainerConfig trainer;

  template <class V>
  void describe(V& v) {
    v("data", data, "The prompt dataset.");
    v("actor_rollout_ref", actor_rollout_ref, "");
    v("critic", critic, "The value model (PPO with GAE).");
    v("reward_model", reward_model, "A model-based reward.");
    v("custom_reward_function", custom_reward_function, "A user reward function.");
    v("algorithm", algorithm, "Advantage estimation and the KL penalty in the reward.");
    v("trainer", trainer, "The training loop, logging and checkpoints.");
    v.ignore("reward", "verl 0.7's new reward section (Ray reward loop); verl-cpp reads the legacy reward_model and custom_reward_function keys");
    v.ignore("sandbox_fusion", "remote code-execution sandbox");
    v.ignore("global_profiler", "profiler");
    v.ignore("transfer_queue", "Ray transfer queue");
    v.ignore("ray_kwargs", "Ray initialisation");
    v.ignore("ray_init", "Ray initialisation (older verl)");
  }

  //! verl's need_critic: critic.enable when set, else whether the estimator is GAE.
  [[nodiscard]] bool use_critic() const { return critic.enable.value_or(algorithm.adv_estimator == "gae"); }
  //! verl's need_reference_policy: KL in the reward or as a loss.
  [[nodiscard]] bool use_reference_policy() const {
    return algorithm.use_kl_in_reward || actor_rollout_ref.actor.use_kl_loss;
  }

  //! The cross-field checks of verl's validate_config (ray_trainer/utils/config.py), ActorConfig.validate,
  //! CriticConfig.__post_init__/validate and the FSDP workers' batch normalisation, for the processes the
  //! config names (trainer.nnodes x trainer.n_gpus_per_node, a null one counting 1). validate_layout repeats
  //! the batch checks for the processes a run was really started on.
  void validate() const {
    const auto& rollout = actor_rollout_ref.rollout;
    validate_batches(detail::configured_processes(trainer.nnodes, trainer.n_gpus_per_node));
    if (rollout.val_kwargs.do_sample) {
      require(rollout.temperature > 0, "actor_rollout_ref.rollout.temperature",
              "validation gen temperature should be greater than 0 when enabling do_sample");
    }
    if (!use_critic()) {
      require(trainer.critic_warmup == 0, "trainer.critic_warmup", "is ", trainer.critic_warmup,
              " but no critic is trained (algorithm.adv_estimator is \"", algorithm.adv_estimator,
              "\" and critic.enable is not true)");
    }
    if (algorithm.filter_groups.enable) {
      require(rollout.n > 1, "algorithm.filter_groups.enable", "needs groups: actor_rollout_ref.rollout.n must be > 1, got ",
              rollout.n);
    }
    if (trainer.save_freq > 0 || trainer.resume_mode != ResumeMode::disable) {
      require(!trainer.default_local_dir.empty(), "trainer.default_local_dir", "must not be empty");
    }
    if (algorithm.rollout_correction.bypass_mode) {
      // verl raises at the first step: "bypass_mode=True requires rollout_log_probs in batch".
      require(rollout.calculate_log_probs, "algorithm.rollout_correction.bypass_mode",
              "takes old_log_probs from the rollout's log-probs: set actor_rollout_ref.rollout.calculate_log_probs=true");
      // verl replaces the configured loss with its bypass_mode loss, PPO clip (compute_policy_loss_vanilla).
      const auto& mode = actor_rollout_ref.actor.policy_loss.loss_mode;
      require(mode == "vanilla", "algorithm.rollout_correction.bypass_mode",
              "trains with PPO clip (verl's bypass_mode loss replaces the configured one), but "
              "actor_rollout_ref.actor.policy_loss.loss_mode is \"", mode, "\": set it to vanilla or turn bypass_mode off");
    }
  }

  //! Checks the configuration against the launch: trainer.nnodes and trainer.n_gpus_per_node must be null or
  //! match it, and the batch sizes must suit `layout.world_size` data-parallel processes (verl's rules, see
  //! validate_batches). Throws verl::ConfigError naming the key, e.g.
  //! "verl::config: `data.train_batch_size` (with WORLD_SIZE=4 process(es)): real_train_batch_size (6) must be
  //! divisible by minimal possible batch size (4)".
  void validate_layout(const ProcessLayout& layout) const {
    detail::with_layout_errors(layout, [&] {
      detail::require_layout(trainer.nnodes, trainer.n_gpus_per_node, layout, "trainer");
      validate_batches(layout.world_size);
    });
  }

  //! The batch-size rules of verl for `dp` data-parallel processes (fully sharded training is data parallel
  //! too: every process takes its share of the batch). Keys are full paths. verl's rules: train_batch_size *
  //! rollout.n divisible by dp (ray_trainer._validate_config); the FSDP workers' normalisation
  //! ppo_mini_batch_size * rollout.n / dp responses per process and mini-batch, > 0 and divisible by
  //! ppo_micro_batch_size_per_gpu, the deprecated global ppo_micro_batch_size divided by dp and >= dp
  //! (ActorConfig/CriticConfig.validate). Stricter here, because every process updates on equal shares of whole
  //! prompts: train_batch_size divisible by dp and by ppo_mini_batch_size, ppo_mini_batch_size * rollout.n
  //! divisible by dp (verl rounds down).
  void validate_batches(std::int64_t dp) const {
    const auto& actor = actor_rollout_ref.actor;
    const auto& rollout = actor_rollout_ref.rollout;
    const std::int64_t n = rollout.n;
    const std::int64_t tbs = data.train_batch_size;
    require((tbs * n) % dp == 0, "data.train_batch_size", "real_train_batch_size (", tbs * n,
            ") must be divisible by minimal possible batch size (", dp, ") (data.train_batch_size * rollout.n over ", dp,
            " process(es))");
    require(tbs % dp == 0, "data.train_batch_size", "is ", tbs, " prompts, expected a multiple of the ", dp,
            " data-parallel processes: each process takes an equal share of whole prompts (a prompt's rollout.n "
            "responses stay on one process, so GRPO's groups are whole)");
    // One mini-batch's responses on each process, verl's `ppo_mini_batch_size * n // dp` (here exact).
    const auto per_process = [&](std::int64_t mini, const std::optional<std::int64_t>& global_micro,
                                 const std::optional<std::int64_t>& micro_per_gpu, const std::string& section,
                                 const std::string& which) {
      const std::int64_t responses = mini * n;
      require(responses / dp > 0, section + ".ppo_mini_batch_size", "ppo_mini_batch_size ", responses / dp,
              " should be larger than 0 after normalization (", which, "ppo_mini_batch_size * rollout.n = ", responses,
              " responses over ", dp, " process(es))");
      require(responses % dp == 0, section + ".ppo_mini_batch_size", which, "ppo_mini_batch_size * rollout.n (",
              responses, ") must be divisible by the ", dp, " data-parallel processes (every process updates on an "
              "equal share of each mini-batch; verl rounds down)");
      if (global_micro) {
        require(mini % *global_micro == 0, section + ".ppo_micro_batch_size", "ppo_mini_batch_size (", mini,
                ") must be divisible by ppo_micro_batch_size (", *global_micro, ")");
        require(*global_micro >= dp, section + ".ppo_micro_batch_size", "ppo_micro_batch_size (", *global_micro,
                ") * ulysses_sequence_parallel_size (1) must be >= n_gpus (", dp, ")");
      }
      const auto micro = micro_per_gpu ? micro_per_gpu : (global_micro ? std::optional(*global_micro / dp) : std::nullopt);
      if (micro) {
        require((responses / dp) % *micro == 0,
                section + (micro_per_gpu ? ".ppo_micro_batch_size_per_gpu" : ".ppo_micro_batch_size"),
                "normalized ppo_mini_batch_size ", responses / dp, " (", which, "ppo_mini_batch_size * rollout.n / ", dp,
                " process(es)) should be divisible by ppo_micro_batch_size_per_gpu ", *micro);
      }
    };
    const auto log_prob_micro = [&](const std::optional<std::int64_t>& global, const std::string& section) {
      if (global) {
        require(*global >= dp, section + ".log_prob_micro_batch_size", "is ", *global, " (deprecated: a global size, "
                "divided among the ", dp, " processes), expected >= ", dp, "; set log_prob_micro_batch_size_per_gpu instead");
      }
    };
    if (!actor.use_dynamic_bsz) {
      require(tbs >= actor.ppo_mini_batch_size, "actor_rollout_ref.actor.ppo_mini_batch_size", "train_batch_size (", tbs,
              ") must be >= actor.ppo_mini_batch_size (", actor.ppo_mini_batch_size, ")");
      // Stricter than verl, which runs a smaller last mini-batch: every mini-batch has the same size.
      require(tbs % actor.ppo_mini_batch_size == 0, "actor_rollout_ref.actor.ppo_mini_batch_size",
              "data.train_batch_size * rollout.n (", tbs * n, ") must be divisible by ppo_mini_batch_size * rollout.n (",
              actor.ppo_mini_batch_size * n, ")");
      per_process(actor.ppo_mini_batch_size, actor.ppo_micro_batch_size, actor.ppo_micro_batch_size_per_gpu,
                  "actor_rollout_ref.actor", "");
      if (use_reference_policy()) {
        detail::require_one_micro_batch(actor_rollout_ref.ref.log_prob_micro_batch_size,
                                        actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu, "actor_rollout_ref.ref",
                                        "log_prob_micro_batch_size");
        log_prob_micro(actor_rollout_ref.ref.log_prob_micro_batch_size, "actor_rollout_ref.ref");
      }
      detail::require_one_micro_batch(rollout.log_prob_micro_batch_size, rollout.log_prob_micro_batch_size_per_gpu,
                                      "actor_rollout_ref.rollout", "log_prob_micro_batch_size");
      log_prob_micro(rollout.log_prob_micro_batch_size, "actor_rollout_ref.rollout");
    }
    if (use_critic() && !critic.use_dynamic_bsz) {
      detail::require_one_micro_batch(critic.ppo_micro_batch_size, critic.ppo_micro_batch_size_per_gpu, "critic",
                                      "ppo_micro_batch_size");
      require(tbs >= critic.ppo_mini_batch_size, "critic.ppo_mini_batch_size", "train_batch_size (", tbs,
              ") must be >= critic.ppo_mini_batch_size (", critic.ppo_mini_batch_size, ")");
      require(tbs % critic.ppo_mini_batch_size == 0, "critic.ppo_mini_batch_size", "data.train_batch_size (", tbs,
              ") must be divisible by critic.ppo_mini_batch_size (", critic.ppo_mini_batch_size, ")");
      per_process(critic.ppo_mini_batch_size, critic.ppo_micro_batch_size, critic.ppo_micro_batch_size_per_gpu, "critic",
                  "critic.");
    }
  }
};

// -------------------------------------------------------------------------------------------------------------
// Offline trainers: DPO, KTO, SFT

//! `data` of the offline trainers (verl sft_trainer_engine.yaml names, plus the preference keys).
struct OfflineDataConfig {
  FileList train_files{{"~/data/gsm8k/train.parquet"}};
  FileList val_files;
  std::int64_t train_batch_size = 256;
  std::int64_t micro_batch_size_per_gpu = 4;
  std::int64_t max_token_len_per_gpu = 8192;
  bool use_dynamic_bsz = true;
  std::int64_t train_max_samples = -1;
  std::int64_t val_max_samples = -1;
  std::string messages_key = "messages";
  std::string prompt_key = "prompt";
  std::string response_key = "response";
  std::string chosen_key = "chosen";
  std::string rejected_key = "rejected";
  std::string completion_key = "completion";
  std::string label_key = "label";
  std::int64_t max_length = 1024;
  std::optional<std::int64_t> max_prompt_length = 512;
  Truncation truncation = Truncation::error;
  bool shuffle = true;
  std::int64_t num_workers = 8;
  Json apply_chat_template_kwargs = Json::object();

  template <class V>
  void describe(V& v) {
    v("train_files", train_files, "training data: a path or a list of paths (JSONL)");
    v("val_files", val_files, "validation data; null: none");
    v("train_batch_size", train_batch_size, "examples (SFT) or pairs (DPO) per optimizer step");
    v("micro_batch_size_per_gpu", micro_batch_size_per_gpu, "examples per forward/backward (gradient accumulation); also the DPO/KTO validation batch (SFT validates in batches of train_batch_size)");
    v("max_token_len_per_gpu", max_token_len_per_gpu, "tokens per micro-batch with use_dynamic_bsz");
    v("use_dynamic_bsz", use_dynamic_bsz, "form micro-batches by token count");
    v("train_max_samples", train_max_samples, "use at most this many training rows; -1: all");
    v("val_max_samples", val_max_samples, "use at most this many validation rows; -1: all");
    v("messages_key", messages_key, "SFT: row field with the chat messages");
    v("prompt_key", prompt_key, "row field with the prompt (SFT prompt/response rows, DPO, KTO)");
    v("response_key", response_key, "SFT: row field with the response of prompt/response rows");
    v("chosen_key", chosen_key, "DPO: row field with the preferred completion");
    v("rejected_key", rejected_key, "DPO: row field with the dispreferred completion");
    v("completion_key", completion_key, "KTO: row field with the completion");
    v("label_key", label_key, "KTO: row field with the desirable (true) / undesirable (false) label");
    v("max_length", max_length, "tokens of prompt + completion (TRL max_length)");
    v("max_prompt_length", max_prompt_length, "prompt tokens (TRL max_prompt_length); null: no separate limit");
    v("truncation", truncation, "a sequence longer than max_length: error, or cut tokens from the left (keeps the end), right (keeps the start) or middle (DPO/KTO: left or right)");
    v("shuffle", shuffle, "shuffle the training data each epoch");
    v("num_workers", num_workers, "background workers that tokenize and prefetch; 0: inline");
    v("apply_chat_template_kwargs", apply_chat_template_kwargs, "extra variables for the chat template");
    v.ignore("tools_key", "multi-turn tool use (not implemented)");
    v.ignore("enable_thinking_key", "per-row thinking switch (not implemented)");
    v.ignore("enable_thinking_default", "per-row thinking switch (not implemented)");
    v.ignore("pad_mode", "verl-cpp packs without padding when it helps");
    v.ignore("balance_dp_token", "data-parallel token balancing");
    v.ignore("custom_cls", "a Python dataset class");
    v.ignore("use_shm", "load the model through shared memory");
    v.ignore("ignore_input_ids_mismatch", "multi-turn tokenization sanity check");
  }
  void validate() const {
    require(!train_files.files.empty(), "train_files", "must name at least one file");
    require(train_batch_size > 0, "train_batch_size", "must be > 0, got ", train_batch_size);
    require(micro_batch_size_per_gpu > 0, "micro_batch_size_per_gpu", "must be > 0, got ", micro_batch_size_per_gpu);
    require(max_token_len_per_gpu > 0, "max_token_len_per_gpu", "must be > 0, got ", max_token_len_per_gpu);
    require(max_length > 0, "max_length", "must be > 0, got ", max_length);
    if (max_prompt_length) {
      require(*max_prompt_length > 0, "max_prompt_length", "must be > 0 when set, got ", *max_prompt_length);
      require(*max_prompt_length < max_length, "max_prompt_length", "(", *max_prompt_length,
              ") must be smaller than max_length (", max_length, ") to leave room for the completion");
    }
    require(num_workers >= 0, "num_workers", "must be >= 0, got ", num_workers);
  }
};

//! `trainer` of the offline trainers (verl sft_trainer_engine.yaml).
struct OfflineTrainerConfig {
  std::string default_local_dir = "checkpoints/gsm8k-sft/test";
  std::string project_name = "gsm8k-sft";
  std::string experiment_name = "test";
  std::int64_t total_epochs = 4;
  std::optional<std::int64_t> total_training_steps;
  std::vector<std::string> logger{"console"};
  std::int64_t seed = 1;
  std::int64_t save_freq = -1;
  std::int64_t test_freq = -1;
  std::optional<std::int64_t> max_ckpt_to_keep;
  ResumeMode resume_mode = ResumeMode::auto_;
  std::optional<std::string> resume_from_path;
  std::string device = "auto";
  std::optional<std::int64_t> nnodes;
  std::optional<std::int64_t> n_gpus_per_node;

  template <class V>
  void describe(V& v) {
    v("default_local_dir", default_local_dir, "checkpoint directory",
      interpolate("checkpoints/${trainer.project_name}/${trainer.experiment_name}"));
    v("project_name", project_name, "project name for loggers and the checkpoint directory");
    v("experiment_name", experiment_name, "run name for loggers and the checkpoint directory");
    v("total_epochs", total_epochs, "passes over the training data");
    v("total_training_steps", total_training_steps, "stop after this many steps; null: total_epochs x steps per epoch");
    v("logger", logger, "metric sinks: console, jsonl (verl's default [console, wandb])");
    v("seed", seed, "seed of shuffling and initialisation");
    v("save_freq", save_freq, "save a checkpoint every N steps (and at the end); -1: never");
    v("test_freq", test_freq, "validate every N steps; -1: never");
    v("max_ckpt_to_keep", max_ckpt_to_keep, "keep the newest N checkpoints; null: all");
    v("resume_mode", resume_mode, "auto: latest checkpoint in default_local_dir; disable; resume_path: resume_from_path");
    v("resume_from_path", resume_from_path, "checkpoint directory for resume_mode resume_path");
    v("device", device, "auto (CUDA when available), cpu, cuda or cuda:N (verl's default: cuda); on several "
      "processes cuda means each process's cuda:LOCAL_RANK");
    v("nnodes", nnodes, "nodes of the job; null: the launcher's (WORLD_SIZE / LOCAL_WORLD_SIZE); checked against the "
      "launch (verl: 1)");
    v("n_gpus_per_node", n_gpus_per_node, "processes per node; null: the launcher's (LOCAL_WORLD_SIZE); checked "
      "against the launch (verl: 1)");
    v.ignore("default_hdfs_dir", "HDFS checkpoint copy");
    v.ignore("profile_interval", "profiler");
  }
  void validate() const {
    require(total_epochs >= 0, "total_epochs", "must be >= 0, got ", total_epochs);
    detail::require_positive_opt(nnodes, "nnodes");
    detail::require_positive_opt(n_gpus_per_node, "n_gpus_per_node");
    detail::require_positive_opt(total_training_steps, "total_training_steps");
    require(save_freq == -1 || save_freq > 0, "save_freq", "must be -1 (never) or > 0, got ", save_freq);
    require(test_freq == -1 || test_freq > 0, "test_freq", "must be -1 (never) or > 0, got ", test_freq);
    detail::require_positive_opt(max_ckpt_to_keep, "max_ckpt_to_keep");
    if (resume_mode == ResumeMode::resume_path)
      require(resume_from_path.has_value() && !resume_from_path->empty(), "resume_from_path",
              "must be set when resume_mode is resume_path");
    const bool cuda_n = device.rfind("cuda:", 0) == 0 && device.size() > 5 &&
                        device.find_first_not_of("0123456789", 5) == std::string::npos;
    require(device == "auto" || device == "cpu" || device == "cuda" || cuda_n, "device",
            "is \"", device, "\", expected auto, cpu, cuda or cuda:N");
  }
};

//! `dpo`: TRL DPOConfig's loss keys (trl 0.19.1 defaults).
struct DPOConfig {
  double beta = 0.1;
  std::string loss_type = "sigmoid";
  double label_smoothing = 0.0;
  bool reference_free = false;
  std::string f_divergence_type = "reverse_kl";
  double f_alpha_divergence_coef = 1.0;
  double discopop_tau = 0.05;
  std::optional<double> rpo_alpha;
  bool precompute_ref_log_probs = false;
  bool disable_dropout = true;

  template <class V>
  void describe(V& v) {
    v("beta", beta, "temperature of the implicit reward (IPO: tau)");
    v("loss_type", loss_type, "sigmoid, hinge, ipo, exo_pair, nca_pair, robust, sppo_hard, aot, aot_unpaired, apo_zero, apo_down, discopop");
    v("label_smoothing", label_smoothing, "conservative DPO / robust DPO label-noise rate, in [0, 0.5)");
    v("reference_free", reference_free, "use a uniform reference (no reference model)");
    v("f_divergence_type", f_divergence_type, "reverse_kl, js_divergence or alpha_divergence");
    v("f_alpha_divergence_coef", f_alpha_divergence_coef, "alpha of the alpha divergence");
    v("discopop_tau", discopop_tau, "DiscoPOP temperature");
    v("rpo_alpha", rpo_alpha, "RPO: weight of the NLL loss on the chosen completions; null: off");
    v("precompute_ref_log_probs", precompute_ref_log_probs, "compute the reference log-probs once before training");
    v("disable_dropout", disable_dropout, "turn dropout off in the policy and reference");
  }
  void validate() const {
    require_one_of(loss_type, {"sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "sppo_hard", "aot", "aot_unpaired",
                               "apo_zero", "apo_down", "discopop"},
                   "loss_type");
    require_one_of(f_divergence_type, {"reverse_kl", "js_divergence", "alpha_divergence"}, "f_divergence_type");
    require(label_smoothing >= 0 && label_smoothing < 0.5, "label_smoothing", "must be in [0, 0.5), got ", label_smoothing);
    if (loss_type == "ipo" || loss_type == "sppo_hard") require(beta != 0, "beta", "must be nonzero for ", loss_type);
    if (rpo_alpha) require(*rpo_alpha >= 0, "rpo_alpha", "must be >= 0, got ", *rpo_alpha);
  }
};

//! `kto`: TRL KTOConfig's loss keys (trl 0.19.1 defaults).
struct KTOConfig {
  double beta = 0.1;
  std::string loss_type = "kto";
  double desirable_weight = 1.0;
  double undesirable_weight = 1.0;
  bool precompute_ref_log_probs = false;
  bool disable_dropout = true;

  template <class V>
  void describe(V& v) {
    v("beta", beta, "temperature of the implicit reward");
    v("loss_type", loss_type, "kto or apo_zero_unpaired");
    v("desirable_weight", desirable_weight, "weight of the desirable examples' losses");
    v("undesirable_weight", undesirable_weight, "weight of the undesirable examples' losses");
    v("precompute_ref_log_probs", precompute_ref_log_probs, "compute the reference log-probs once before training");
    v("disable_dropout", disable_dropout, "turn dropout off in the policy and reference");
  }
  void validate() const {
    require_one_of(loss_type, {"kto", "apo_zero_unpaired"}, "loss_type");
    require(desirable_weight >= 0, "desirable_weight", "must be >= 0, got ", desirable_weight);
    require(undesirable_weight >= 0, "undesirable_weight", "must be >= 0, got ", undesirable_weight);
  }
};

//! `engine` of the offline trainers (verl's engine/fsdp.yaml, chosen in verl by `engine=fsdp`): how training
//! is spread over the processes. verl's other engine keys are read and ignored.
struct EngineConfig {
  std::string strategy = "dp";

  template <class V>
  void describe(V& v) {
    v("strategy", strategy,
      "how training runs on several processes: dp (every process holds the whole model, gradients are averaged) or "
      "fsdp / fsdp2 (fully sharded: parameters, gradients and AdamW states split over the processes); verl: fsdp. "
      "The SFT trainer uses it; DPO and KTO train on one process");
    for (const char* k : {"wrap_policy", "param_offload", "optimizer_offload", "offload_policy", "reshard_after_forward",
                          "fsdp_size", "forward_prefetch", "model_dtype", "use_orig_params", "seed", "full_determinism",
                          "ulysses_sequence_parallel_size", "entropy_from_logits_with_chunking", "use_torch_compile",
                          "entropy_checkpointing", "forward_only", "dtype", "qat", "mixed_precision"})
      v.ignore(k, "verl's FSDP engine setting");
    for (const char* k : {"grad_offload", "tensor_model_parallel_size", "expert_model_parallel_size",
                          "expert_tensor_parallel_size", "pipeline_model_parallel_size",
                          "virtual_pipeline_model_parallel_size", "context_parallel_size", "sequence_parallel",
                          "use_distributed_optimizer", "use_dist_checkpointing", "dist_checkpointing_path",
                          "dist_checkpointing_prefix", "override_ddp_config", "override_transformer_config",
                          "override_mcore_model_config", "use_mbridge", "vanilla_mbridge"})
      v.ignore(k, "verl's Megatron engine setting (strategy megatron is refused)");
  }
  void validate() const { detail::require_strategy(strategy, "strategy"); }
};

//! The offline trainers' configuration (SFT, DPO, KTO): verl's sft_trainer_engine.yaml plus TRL's DPO/KTO keys.
struct OfflineConfig {
  OfflineDataConfig data;
  ModelConfig model;
  OptimConfig optim;  // verl optim/fsdp.yaml: lr 1e-3
  CheckpointConfig checkpoint;
  OfflineTrainerConfig trainer;
  EngineConfig engine;
  DPOConfig dpo;
  KTOConfig kto;

  template <class V>
  void describe(V& v) {
    v("data", data, "The offline dataset.");
    v("model", model, "The policy model (also the reference for DPO/KTO).");
    v("optim", optim, "AdamW and the learning-rate schedule.");
    v("checkpoint", checkpoint, "What a checkpoint holds.");
    v("trainer", trainer, "The training loop, logging and checkpoints.");
    v("engine", engine, "Training on several processes.");
    v("dpo", dpo, "DPO loss (TRL DPOConfig names).");
    v("kto", kto, "KTO loss (TRL KTOConfig names).");
    v.ignore("profiler", "profiler");
    v.ignore("global_profiler", "profiler");
  }

  //! The batch checks for the processes the config names (trainer.nnodes x trainer.n_gpus_per_node, a null
  //! one counting 1); validate_layout repeats them for the processes a run was started on.
  void validate() const { validate_batches(detail::configured_processes(trainer.nnodes, trainer.n_gpus_per_node)); }

  //! Checks trainer.nnodes / trainer.n_gpus_per_node against the launch and the batch sizes for
  //! `layout.world_size` data-parallel processes. Throws verl::ConfigError naming the key.
  void validate_layout(const ProcessLayout& layout) const {
    detail::with_layout_errors(layout, [&] {
      detail::require_layout(trainer.nnodes, trainer.n_gpus_per_node, layout, "trainer");
      validate_batches(layout.world_size);
    });
  }

  //! verl's SFT rules for `dp` processes (fsdp_sft_trainer._normalize_config_bsz): data.train_batch_size is
  //! global and divisible by dp; each process's share, train_batch_size / dp rows, is cut into micro-batches of
  //! data.micro_batch_size_per_gpu and must be divisible by it unless data.use_dynamic_bsz.
  void validate_batches(std::int64_t dp) const {
    const std::int64_t tbs = data.train_batch_size, micro = data.micro_batch_size_per_gpu;
    require(tbs % dp == 0, "data.train_batch_size", "Global batch size ", tbs, " is not divisible by dp size ", dp,
            " (the processes each take train_batch_size / ", dp, " rows of every batch)");
    if (data.use_dynamic_bsz) return;
    if (dp == 1) {
      require(tbs % micro == 0, "data.micro_batch_size_per_gpu", "train_batch_size (", tbs,
              ") must be divisible by micro_batch_size_per_gpu (", micro, ")");
    } else {
      require((tbs / dp) % micro == 0, "data.micro_batch_size_per_gpu", "train_batch_size per process (", tbs, " / ", dp,
              " = ", tbs / dp, ") must be divisible by micro_batch_size_per_gpu (", micro, ")");
    }
  }
};

//! The text of docs/config.md: the reference of PPOConfig and OfflineConfig, generated from the structs.
//! tests/unit/config/test_config.cpp fails when docs/config.md differs from it; regenerate with
//! `<build>/tests/verl_unit_config "[write-config-reference]"`.
[[nodiscard]] inline std::string config_reference_markdown() {
  std::string out = reference_markdown<PPOConfig>(
      "Configuration reference",
      "Generated from the typed structs in include/verl/config/trainer_config.hpp; do not edit by hand. "
      "Regenerate with `<build>/tests/verl_unit_config \"[write-config-reference]\"` (the config unit test fails "
      "while this file is stale). How to write and override a configuration: [config_guide.md](config_guide.md).\n\n"
      "Keys and defaults follow verl 0.7.1's `ppo_trainer.yaml` (PPO family) and `sft_trainer_engine.yaml` plus TRL "
      "0.19.1's DPOConfig/KTOConfig (offline trainers). A default written `${...}` is an OmegaConf interpolation, "
      "resolved after the file and the command-line overrides are merged.\n\n"
      "Deliberate differences from verl's defaults: `trainer.logger` is `[console]` (verl: `[console, wandb]`), "
      "`trainer.device` is `auto` (verl: `cuda`), the strategies (`actor_rollout_ref.actor.strategy`, "
      "`critic.strategy`, `engine.strategy`) are `dp` (verl: `fsdp`), `trainer.nnodes` and `trainer.n_gpus_per_node` "
      "are null, the launcher's (verl: 1 and 8; SFT 1 and 1). Several processes: "
      "[training.md](training.md#running-on-several-processes).\n\n"
      "# PPOConfig (PPO, GRPO, RLOO, REINFORCE++, ReMax, DAPO, ...)");
  std::string offline = reference_markdown<OfflineConfig>("OfflineConfig (SFT, DPO, KTO)", "");
  // One page: the second reference's sections become part of it (its title is a level-1 heading too).
  out += "\n" + offline;
  return out;
}

}  // namespace verl::config
