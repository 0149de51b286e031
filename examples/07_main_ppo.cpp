// 07_main_ppo: verl's `python -m verl.trainer.main_ppo config.yaml key=value ...` as a C++ program. A YAML file
// in verl's key names (plus command-line overrides) names a Hugging Face model directory, JSONL data in verl's
// row schema and the training settings; the program trains with the algorithm it was compiled for, validates
// per data source, writes metrics and checkpoints, and resumes where a previous run stopped.
//
// What it shows:
//   1. the whole product path: config (verl/config) -> tokenizer and chat format (verl/tokenizers) -> model
//      (verl/models, Hugging Face layout) -> datasets and providers (verl/data) -> verl's rule rewards by
//      data_source (verl/rewards) -> PPOTrainer::fit with validation, checkpoints and metrics (verl/trainer);
//   2. one binary per algorithm: the algorithm is the C++ type VERL_MAIN_ALGORITHM (default verl::GRPO<>: GRPO
//      advantages, PPO clip, a low_var_kl KL loss against a frozen reference); the YAML's algorithm keys must
//      agree with it (else an error names the key). Build another with e.g.
//      -DVERL_MAIN_ALGORITHM='verl::PPO<>' (a critic is then loaded from critic.model.path).
//
//   3. the same binary on several processes (issue 7), started the way verl is started under torchrun: each
//      process reads its place from the launcher's variables (verl::dist::detect_launch_env: torchrun, mpirun,
//      srun, verl_example_08_launch_local), checks trainer.nnodes / trainer.n_gpus_per_node and verl's batch
//      rules against it (PPOConfig::validate_layout), joins a c10d group (Gloo for trainer.device cpu, NCCL for
//      cuda in a CUDA build; timeout actor_rollout_ref.nccl_timeout) and trains data-parallel
//      (actor_rollout_ref.actor.strategy / critic.strategy dp: verl::dist::DataParallel) or with the actor fully
//      sharded (actor strategy fsdp / fsdp2: verl::dist::make_fully_sharded_actor; the critic stays dp); each
//      process takes an equal share of every batch's prompts. Rank 0 alone prints, writes metrics.jsonl and the checkpoints;
//      every rank resumes from them; every rank ends with the same exit code.
//
// Usage: verl_example_07_main_ppo CONFIG.yaml [key=value ...]
//        verl_example_07_main_ppo --demo [DIR] [key=value ...]   (the overrides apply to every run of the demo)
//        verl_example_08_launch_local --nproc 2 -- verl_example_07_main_ppo CONFIG.yaml|--demo ...
// --demo writes a tiny Llama-shaped model with a byte-level BPE tokenizer (ChatML tokens), GSM8K- and
// MATH-style JSONL data and DIR/demo.yaml (DIR: a fresh temporary directory), trains 4 steps with a
// checkpoint every 2 and validation before training and every 2 steps, then runs again with
// trainer.total_training_steps=6, which resumes from step 4. An untrained model scores 0 on GSM8K: the demo
// shows the machinery; examples/00_quickstart shows learning.
// Expected output of --demo (CTest matches the shape and the last line):
//   demo files: .../demo.yaml, model/ (Llama-shaped, 4.xM parameters), train.jsonl (64 rows), val.jsonl (8 rows)
//   effective config (N lines):
//   ...
//   algorithm: grpo (estimator grpo, loss vanilla, critic no, reference yes)
//   chat format: ChatML (tokenizer has <|im_start|>)
//   data: 64 training prompts (16 batches of 4), 8 validation prompts; 4 steps
//   step 0:, val-core/lighteval/MATH/reward/mean@1 0.000, val-core/openai/gsm8k/reward/mean@1 0.000 (before training)
//   step 1: reward 0.000 pg_loss ... kl_loss ... response_length ...
//   ...
//   run 1: steps 1..4, checkpoints global_step_2 global_step_4
//   run 2: resumed from step 4, steps 5..6
//   main_ppo: ok
// With 2 processes the demo also prints "processes: 2 (...), actor strategy dp: data parallel over Gloo, ..."
// before "data:", and, before "main_ppo: ok", how far the 2-process run ends from the same 6 steps trained by
// one process (float32: only the order of the additions differs; the demo fails above the stated tolerance):
//   dp=2: step 1 grad_norm ... (1 process: ...), final pg_loss ... (1 process: ...), max |weight diff| vs 1
//   process ... (largest weight update ...)
#include <verl/algos/presets.hpp>
#include <verl/config/trainer_config.hpp>
#include <verl/data/data_provider.hpp>
#include <verl/data/rl_dataset.hpp>
#include <verl/dist/data_parallel.hpp>
#include <verl/dist/fully_sharded_actor.hpp>
#include <verl/dist/gloo.hpp>
#include <verl/dist/launch_env.hpp>
#include <verl/dist/nccl.hpp>
#include <verl/dist/single_process_communicator.hpp>
#include <verl/models/actor.hpp>
#include <verl/models/critic.hpp>
#include <verl/models/hf_model_io.hpp>
#include <verl/pipeline/reward_scorer.hpp>
#include <verl/rewards/default_compute_score.hpp>
#include <verl/tokenizers/chat_format.hpp>
#include <verl/tokenizers/hf_tokenizer.hpp>
#include <verl/trainer/from_config.hpp>

#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <optional>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#ifndef VERL_MAIN_ALGORITHM
#define VERL_MAIN_ALGORITHM verl::GRPO<>
#endif

#if defined(USE_C10D_NCCL) && defined(VERL_WITH_CUDA)
#define VERL_MAIN_PPO_HAS_NCCL 1
#else
#define VERL_MAIN_PPO_HAS_NCCL 0
#endif

namespace fs = std::filesystem;
using Algo = VERL_MAIN_ALGORITHM;

namespace {

// The processes this program runs on: itself alone, or the group a launcher started (torchrun, mpirun, srun or
// verl_example_08_launch_local set the variables verl::dist::detect_launch_env reads), joined over Gloo (CPU)
// or NCCL (CUDA, in CUDA builds).
class Processes {
 public:
  enum class Backend { none, gloo, nccl };

  Processes() {
    if (auto place = verl::dist::detect_launch_env(verl::dist::environ_map())) place_ = *place;
  }
  //! This process alone, whatever the launcher said (the demo's single-process comparison run).
  [[nodiscard]] static Processes alone() {
    Processes p;
    p.place_ = verl::dist::LaunchEnv{};
    return p;
  }
  [[nodiscard]] const verl::dist::LaunchEnv& place() const { return place_; }
  [[nodiscard]] int rank() const { return place_.rank; }
  [[nodiscard]] int size() const { return place_.world_size; }
  [[nodiscard]] bool rank0() const { return place_.rank == 0; }
  [[nodiscard]] Backend backend() const { return backend_; }

  //! Joins the group over `backend` (once; rank 0 hosts the rendezvous store); nothing with one process.
  void join(Backend backend, std::chrono::seconds timeout) {
    if (size() == 1) return;
    if (backend_ != Backend::none) {
      verl::detail::check<verl::ConfigError>(backend_ == backend, "07_main_ppo: the processes already joined a ",
                                             name(backend_), " group, expected one backend per run (trainer.device)");
      return;
    }
    const verl::dist::ProcessGroupOptions options{.timeout = timeout};
    if (backend == Backend::gloo) {
#if VERL_DIST_HAS_GLOO
      gloo_.emplace(verl::dist::ProcessGroupCommunicator<verl::dist::gloo>::init(place_, options));
#else
      throw verl::ConfigError("07_main_ppo: WORLD_SIZE is " + std::to_string(size()) + " and trainer.device is the CPU, "
                              "but this build has no Gloo backend (install Debian's libgloo-dev and rebuild)");
#endif
    } else {
#if VERL_MAIN_PPO_HAS_NCCL
      nccl_.emplace(verl::dist::ProcessGroupCommunicator<verl::dist::nccl>::init(place_, options));
#else
      throw verl::ConfigError("07_main_ppo: WORLD_SIZE is " + std::to_string(size()) + " and trainer.device is CUDA, "
                              "but this build of LibTorch has no CUDA/NCCL; set trainer.device=cpu (Gloo)");
#endif
    }
    backend_ = backend;
  }
  //! Every rank waits here for the others (e.g. until rank 0 has written the checkpoint they resume from).
  void barrier() {
#if VERL_DIST_HAS_GLOO
    if (gloo_) gloo_->barrier();
#endif
#if VERL_MAIN_PPO_HAS_NCCL
    if (nccl_) nccl_->barrier();
#endif
  }
  //! Calls fn(communicator): the joined group, or the 1-rank group when this process is alone.
  template <class Fn>
  auto with_communicator(Fn&& fn) {
#if VERL_DIST_HAS_GLOO
    if (gloo_) return fn(*gloo_);
#endif
#if VERL_MAIN_PPO_HAS_NCCL
    if (nccl_) return fn(*nccl_);
#endif
    return fn(verl::dist::SingleProcessCommunicator{});
  }
  //! Strategy dp: a DataParallel over `params` (null with one process: the trainer then trains alone).
  [[nodiscard]] std::shared_ptr<verl::dist::GradientSynchronizer> data_parallel(std::vector<at::Tensor> params) {
#if VERL_DIST_HAS_GLOO
    if (gloo_) return verl::dist::make_data_parallel(*gloo_, std::move(params));
#endif
#if VERL_MAIN_PPO_HAS_NCCL
    if (nccl_) return verl::dist::make_data_parallel(*nccl_, std::move(params));
#endif
    return nullptr;
  }
  [[nodiscard]] static const char* name(Backend b) {
    return b == Backend::gloo ? "Gloo" : b == Backend::nccl ? "NCCL" : "no";
  }

 private:
  verl::dist::LaunchEnv place_;  // rank 0 of 1 without a launcher
  Backend backend_ = Backend::none;
#if VERL_DIST_HAS_GLOO
  std::optional<verl::dist::ProcessGroupCommunicator<verl::dist::gloo>> gloo_;
#endif
#if VERL_MAIN_PPO_HAS_NCCL
  std::optional<verl::dist::ProcessGroupCommunicator<verl::dist::nccl>> nccl_;
#endif
};

// "~/x" -> "$HOME/x", as verl's paths are written.
fs::path expand_user(const std::string& p) {
  if (p.starts_with("~/")) {
    const char* home = std::getenv("HOME");
    if (home != nullptr) return fs::path(home) / p.substr(2);
  }
  return p;
}

std::vector<fs::path> paths_of(const verl::config::FileList& files) {
  std::vector<fs::path> out;
  for (const auto& f : files.files) out.push_back(expand_user(f));
  return out;
}

// The chat format the tokenizer's special tokens call for (verl applies the tokenizer's Jinja template; verl-cpp
// has the common templates written in C++, verl/tokenizers/chat_format.hpp).
enum class Chat { chatml, qwen2_5, llama3 };
Chat chat_format_for(const verl::HFTokenizer& tok, const std::string& model_type,
                     const std::optional<std::string>& custom_template) {
  if (custom_template) {
    throw verl::ConfigError("actor_rollout_ref.model.custom_chat_template: Jinja templates are not supported by "
                            "verl-cpp; remove the key (the format follows the tokenizer's special tokens)");
  }
  if (tok.token_to_id("<|im_start|>")) return model_type == "qwen2" ? Chat::qwen2_5 : Chat::chatml;
  if (tok.token_to_id("<|start_header_id|>")) return Chat::llama3;
  return Chat::chatml;  // prompts given as text need none; chat messages then fail to tokenise visibly
}

template <class Fn>
auto with_chat_format(Chat c, Fn&& fn) {
  switch (c) {
    case Chat::qwen2_5: return fn(verl::chat::qwen2_5);
    case Chat::llama3: return fn(verl::chat::Llama3{});
    case Chat::chatml: break;
  }
  return fn(verl::chat::chatml);
}

const char* chat_name(Chat c) {
  switch (c) {
    case Chat::qwen2_5: return "Qwen2.5 ChatML";
    case Chat::llama3: return "Llama-3";
    case Chat::chatml: break;
  }
  return "ChatML";
}

verl::data::RLDataset load_dataset(const std::vector<fs::path>& files, const verl::HFTokenizer& tok, Chat chat,
                                   const verl::config::DataConfig& d, std::int64_t max_samples) {
  verl::data::RLDatasetOptions o;
  o.prompt_key = d.prompt_key;
  o.max_prompt_length = d.max_prompt_length;
  o.filter_overlong_prompts = d.filter_overlong_prompts;
  switch (d.truncation) {  // the config's enum and the dataset's have the same four values
    case verl::config::Truncation::error: o.truncation = verl::data::Truncation::error; break;
    case verl::config::Truncation::left: o.truncation = verl::data::Truncation::left; break;
    case verl::config::Truncation::right: o.truncation = verl::data::Truncation::right; break;
    case verl::config::Truncation::middle: o.truncation = verl::data::Truncation::middle; break;
  }
  auto ds = with_chat_format(chat, [&](const auto& f) { return verl::data::RLDataset::load(files, tok, o, f); });
  if (max_samples > 0 && static_cast<std::int64_t>(ds.size()) > max_samples) {
    std::vector<verl::data::RLExample> first;
    for (std::int64_t i = 0; i < max_samples; ++i) first.push_back(ds[static_cast<std::size_t>(i)]);
    ds = verl::data::RLDataset::from_examples(std::move(first), tok.pad_token_id(), o);
  }
  return ds;
}

struct RunSummary {
  verl::trainer::FitResult fit;
  std::vector<std::string> checkpoints;  // listed by rank 0
  std::vector<at::Tensor> actor_weights;  // the actor's parameters after the run
  std::map<std::string, double> step1;    // the metrics of step 1 when the run made it (not a resumed run)
  std::string strategy;                   // actor_rollout_ref.actor.strategy
};

// How much main_ppo prints (rank 0 only, in any case).
enum class Print { all, quiet_config, nothing };

// The device trainer.device names for this process: auto is CUDA when available; with several processes, cuda is
// this process's cuda:LOCAL_RANK (torchrun's convention) and cuda:N (one GPU for all) is refused.
torch::Device device_of(const verl::config::PPOConfig& cfg, const Processes& procs) {
  const auto& name = cfg.trainer.device;
  const bool cuda = name == "cuda" || name.starts_with("cuda:") || (name == "auto" && torch::cuda::is_available());
  if (!cuda) return torch::Device(torch::kCPU);
  if (procs.size() == 1) return name == "auto" ? torch::Device(torch::kCUDA) : torch::Device(name);
  verl::detail::check<verl::ConfigError>(!name.starts_with("cuda:"), "07_main_ppo: `trainer.device` is \"", name,
                                         "\" but ", procs.size(), " processes run; set cuda (each process then uses "
                                         "cuda:LOCAL_RANK)");
  return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(procs.place().local_rank));
}

// verl's main_ppo: one training run as the config says, on this process alone or data-parallel with the others.
RunSummary main_ppo(const fs::path& config_file, const std::vector<std::string>& overrides, Print print,
                    Processes& procs) {
  const bool out = procs.rank0() && print != Print::nothing;
  auto [cfg, yaml] = verl::config::load_config<verl::config::PPOConfig>(config_file, overrides);
  const auto lines = std::count(yaml.begin(), yaml.end(), '\n');
  if (out) std::printf("effective config (%ld lines):\n", static_cast<long>(lines));
  if (out && print == Print::all) std::printf("%s", yaml.c_str());
  verl::trainer::check_algorithm_matches<Algo>(cfg);
  if (out) {
    std::printf("algorithm: %s (estimator %s, loss %s, critic %s, reference %s)\n", std::string(Algo::name).c_str(),
                std::string(Algo::estimator::name).c_str(), std::string(Algo::loss::name).c_str(),
                Algo::needs_critic ? "yes" : "no", Algo::needs_reference ? "yes" : "no");
  }
  // The launch: trainer.nnodes / n_gpus_per_node and verl's batch rules for this many processes, the strategy,
  // then the group (every rank fails alike on a config error, before any collective).
  cfg.validate_layout({.world_size = procs.size(), .local_world_size = procs.place().local_world_size});
  const auto require_dp = [](const std::string& strategy, const char* key) {
    if (strategy != "dp") {
      throw verl::ConfigError(verl::detail::concat_message(
          "07_main_ppo: `", key, "` is \"", strategy, "\"; the critic trains with \"dp\" (there is no fully sharded "
          "critic yet; the actor may be fsdp)"));
    }
  };
  if constexpr (Algo::needs_critic) require_dp(cfg.critic.strategy, "critic.strategy");
  const torch::Device device = device_of(cfg, procs);
  procs.join(device.is_cuda() ? Processes::Backend::nccl : Processes::Backend::gloo,
             std::chrono::seconds(cfg.actor_rollout_ref.nccl_timeout));

  const auto& model_cfg = cfg.actor_rollout_ref.model;
  const auto model_dir = expand_user(model_cfg.path);
  const auto tokenizer_dir = expand_user(model_cfg.tokenizer_path.value_or(cfg.data.tokenizer.value_or(model_cfg.path)));
  const auto tok = verl::HFTokenizer::from_directory(tokenizer_dir);
  verl::models::LoadOptions lo;
  lo.device = device;
  auto lm = verl::models::load_causal_lm(model_dir, lo);
  const auto chat = chat_format_for(tok, lm->config().model_type, model_cfg.custom_chat_template);
  if (out) std::printf("chat format: %s\n", chat_name(chat));
  verl::models::ActorOptions ao;
  ao.generation.eos_token_ids = {tok.eos_token_id()};
  ao.generation.pad_token_id = tok.pad_token_id();
  verl::models::Actor actor(lm, ao);
  lm->train();

  const auto train = std::make_shared<const verl::data::RLDataset>(
      load_dataset(paths_of(cfg.data.train_files), tok, chat, cfg.data, cfg.data.train_max_samples));
  std::shared_ptr<const verl::data::RLDataset> val;
  if (!cfg.data.val_files.files.empty()) {
    val = std::make_shared<const verl::data::RLDataset>(
        load_dataset(paths_of(cfg.data.val_files), tok, chat, cfg.data, cfg.data.val_max_samples));
  }
  // Every process reads the same global batches (same seed); the trainer takes this process's share.
  verl::data::DataProviderOptions po;
  po.batch_size = static_cast<std::size_t>(cfg.data.train_batch_size);
  po.shuffle = cfg.data.shuffle;
  if (cfg.data.seed) po.seed = static_cast<std::uint64_t>(*cfg.data.seed);
  po.num_workers = static_cast<std::size_t>(std::min<std::int64_t>(cfg.data.dataloader_num_workers, 2));
  const auto batches_per_epoch = static_cast<std::int64_t>(train->size()) / cfg.data.train_batch_size;
  verl::detail::check<verl::ConfigError>(batches_per_epoch >= 1, "data.train_batch_size is ", cfg.data.train_batch_size,
                                         " but the training data has ", train->size(), " prompts");
  const auto steps = verl::trainer::total_training_steps(cfg, batches_per_epoch);
  if (out && procs.size() > 1) {
    std::printf("processes: %d (rank 0 of %d, %d on this node), actor strategy %s: %s over %s, %lld of %lld prompts "
                "per process and step\n", procs.size(), procs.size(), procs.place().local_world_size,
                cfg.actor_rollout_ref.actor.strategy.c_str(),
                cfg.actor_rollout_ref.actor.strategy == "dp" ? "data parallel" : "fully sharded",
                Processes::name(procs.backend()),
                static_cast<long long>(cfg.data.train_batch_size / procs.size()),
                static_cast<long long>(cfg.data.train_batch_size));
  }
  if (out) {
    std::printf("data: %zu training prompts (%lld batches of %lld), %zu validation prompts; %lld steps\n", train->size(),
                static_cast<long long>(batches_per_epoch), static_cast<long long>(cfg.data.train_batch_size),
                val ? val->size() : std::size_t{0}, static_cast<long long>(steps));
    std::fflush(stdout);
  }

  auto options = verl::trainer::ppo_options_from(cfg, steps, procs.size());
  if (!procs.rank0()) options.progress_bars = verl::trainer::ProgressBarOptions::Show::never;
  auto fit_options = verl::trainer::fit_options_from(cfg, steps, yaml);
  fit_options.checkpoint_dir = expand_user(cfg.trainer.default_local_dir);
  fit_options.progress_bar = procs.rank0();
  const auto val_params = verl::trainer::validation_sampling_from(cfg, options);

  auto reference = [&] {  // a replica on every rank, copied before the actor is sharded
    if constexpr (Algo::needs_reference) return verl::models::Reference::copy_of(actor);
    else return verl::no_reference{};
  }();
  auto critic = [&] {
    if constexpr (Algo::needs_critic) {
      verl::models::HeadLoadOptions ho;
      ho.device = device;
      auto c = verl::models::Critic::load(expand_user(cfg.critic.model.path), ho);
      c.module()->train();
      return c;
    } else {
      return verl::no_critic{};
    }
  }();
  [&](auto& c) {  // a generic lambda: the statement below is discarded (not compiled) for verl::no_critic
    if constexpr (Algo::needs_critic) options.critic_data_parallel = procs.data_parallel(c.parameters());
  }(critic);
  using Critic = decltype(critic);
  using Reference = decltype(reference);

  // The run on `policy`: the actor itself (strategy dp, options.actor_data_parallel its DataParallel) or a
  // verl::dist::FullyShardedActor over it (fsdp / fsdp2: the trainer takes the sharded module's synchroniser).
  const auto run = [&](auto policy) {
    using Policy = decltype(policy);
    constexpr bool is_sharded = !std::is_same_v<Policy, verl::models::Actor>;
    verl::trainer::PPOTrainer<Algo, Policy, Critic, Reference> trainer(
        policy, critic, reference, verl::stages::scorer_of(verl::rewards::DefaultComputeScore{}, tok), options);

    // Every rank records the same metrics (the losses are all-reduced); rank 0 prints and writes them.
    verl::trainer::MetricsRegistry registry;
    std::map<std::string, double> step1;
    registry.add_callback([&step1](std::int64_t step, const verl::trainer::MetricMap& m) {
      if (step == 1) step1 = std::map<std::string, double>(m.begin(), m.end());
    });
    for (const auto& logger : cfg.trainer.logger) {
      if (logger != "console" && logger != "jsonl") {
        throw verl::ConfigError("trainer.logger: \"" + logger + "\" is not available in verl-cpp; expected console or jsonl");
      }
      if (!procs.rank0() || print == Print::nothing) continue;
      if (logger == "console") {
        registry.add_callback([](std::int64_t step, const verl::trainer::MetricMap& m) {
          std::string line = "step " + std::to_string(step) + ":";
          char buf[96];
          const auto add = [&](const char* label, const char* key) {
            if (const auto it = m.find(key); it != m.end()) {
              std::snprintf(buf, sizeof buf, " %s %.3f", label, it->second);
              line += buf;
            }
          };
          add("reward", "critic/score/mean");
          add("pg_loss", "actor/pg_loss");
          add("kl_loss", "actor/kl_loss");
          add("vf_loss", "critic/vf_loss");
          add("response_length", "response_length/mean");
          add("tokens/s", "perf/throughput");
          for (const auto& [k, v] : m)
            if (k.starts_with("val-core/")) {
              std::snprintf(buf, sizeof buf, ", %s %.3f", k.c_str(), v);
              line += buf;
            }
          std::printf("%s\n", line.c_str());
          std::fflush(stdout);
        });
      } else {
        fs::create_directories(fit_options.checkpoint_dir);
        registry.add_exporter(verl::trainer::JsonlExporter((fit_options.checkpoint_dir / "metrics.jsonl").string()));
      }
    }

    auto validate = [&](std::int64_t) {  // every rank validates on the whole set (identical replicas, same numbers)
      verl::data::DataProviderOptions vo;
      vo.batch_size = static_cast<std::size_t>(cfg.data.val_batch_size.value_or(static_cast<std::int64_t>(val->size())));
      vo.shuffle = cfg.data.validation_shuffle;
      vo.drop_last = false;
      vo.epochs = 1;
      vo.num_workers = 0;
      verl::data::DataProvider<verl::data::RLDataset> provider(val, vo);
      const auto metrics = trainer.validate(provider, val_params).metrics;
      return std::map<std::string, double>(metrics.begin(), metrics.end());
    };
    RunSummary summary;
    summary.fit = trainer.fit(
        [&](const nlohmann::json& resume) {
          return std::make_unique<verl::data::DataProvider<verl::data::RLDataset>>(train, po, resume);
        },
        registry, fit_options,
        val ? std::function<std::map<std::string, double>(std::int64_t)>(validate) : nullptr);
    procs.barrier();  // rank 0's last checkpoint is complete before anyone goes on (a next run resumes from it)
    if (procs.rank0() && fs::exists(fit_options.checkpoint_dir)) {
      for (const auto& e : fs::directory_iterator(fit_options.checkpoint_dir))
        if (e.is_directory() && e.path().filename().string().starts_with("global_step_"))
          summary.checkpoints.push_back(e.path().filename().string());
      std::sort(summary.checkpoints.begin(), summary.checkpoints.end());
    }
    const auto keep = [&](verl::models::Actor& a) {  // the full weights
      for (const auto& t : a.parameters()) summary.actor_weights.push_back(t.detach().to(torch::kCPU).clone());
    };
    if constexpr (is_sharded) {
      const auto full = policy.sharded().gather_full_parameters();  // collective
      keep(policy.actor());
    } else {
      keep(policy);
    }
    summary.step1 = std::move(step1);
    summary.strategy = cfg.actor_rollout_ref.actor.strategy;
    return summary;
  };
  if (cfg.actor_rollout_ref.actor.strategy == "dp") {
    options.actor_data_parallel = procs.data_parallel(actor.parameters());  // broadcasts rank 0's weights
    return run(actor);
  }
  return procs.with_communicator([&](auto comm) { return run(verl::dist::make_fully_sharded_actor(actor, comm)); });
}

// ---------------------------------------------------------------------------------------------------------
// --demo: files a first run needs, written from scratch.

// GPT-2's byte -> printable character map of byte-level BPE, as UTF-8.
std::string byte_symbol(int b) {
  const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
  int cp = b;
  if (!printable) {
    int n = 0;  // the rank of b among the non-printable bytes, mapped to U+0100 onwards
    for (int x = 0; x < b; ++x)
      if (!((x >= '!' && x <= '~') || (x >= 0xA1 && x <= 0xAC) || (x >= 0xAE && x <= 0xFF))) ++n;
    cp = 256 + n;
  }
  std::string s;
  if (cp < 0x80) {
    s += static_cast<char>(cp);
  } else {
    s += static_cast<char>(0xC0 | (cp >> 6));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  }
  return s;
}

void write_json(const fs::path& file, const nlohmann::json& j) { std::ofstream(file) << j.dump(1) << '\n'; }

fs::path write_demo(const fs::path& dir) {
  const auto model_dir = dir / "model";
  fs::create_directories(model_dir);
  // A byte-level BPE tokenizer: the 256 byte symbols, a few merges for digits and "####", and ChatML's tokens.
  nlohmann::json vocab = nlohmann::json::object();
  for (int b = 0; b < 256; ++b) vocab[byte_symbol(b)] = b;
  const std::vector<std::pair<std::string, std::string>> merges = {{"#", "#"}, {"##", "##"}, {"Ġ", "#"}};
  int next = 256;
  for (const auto& [a, b] : merges) vocab[a + b] = next++;
  nlohmann::json merge_list = nlohmann::json::array();
  for (const auto& [a, b] : merges) merge_list.push_back(a + " " + b);
  nlohmann::json added = nlohmann::json::array();
  for (const auto* t : {"<|endoftext|>", "<|im_start|>", "<|im_end|>"}) {
    added.push_back({{"id", next++}, {"content", t}, {"single_word", false}, {"lstrip", false}, {"rstrip", false},
                     {"normalized", false}, {"special", true}});
  }
  const int vocab_size = next;
  const nlohmann::json byte_level = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", true}};
  write_json(model_dir / "tokenizer.json",
             {{"version", "1.0"}, {"truncation", nullptr}, {"padding", nullptr}, {"added_tokens", added},
              {"normalizer", nullptr}, {"pre_tokenizer", byte_level}, {"post_processor", nullptr}, {"decoder", byte_level},
              {"model", {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", nullptr}, {"continuing_subword_prefix", nullptr},
                         {"end_of_word_suffix", nullptr}, {"fuse_unk", false}, {"byte_fallback", false},
                         {"ignore_merges", false}, {"vocab", vocab}, {"merges", merge_list}}}});
  write_json(model_dir / "tokenizer_config.json", {{"eos_token", "<|im_end|>"}, {"pad_token", "<|endoftext|>"}});
  const nlohmann::json config = {
      {"architectures", {"LlamaForCausalLM"}}, {"model_type", "llama"}, {"vocab_size", vocab_size},
      {"hidden_size", 128}, {"intermediate_size", 256}, {"num_hidden_layers", 2}, {"num_attention_heads", 4},
      {"num_key_value_heads", 2}, {"max_position_embeddings", 512}, {"rms_norm_eps", 1e-6},
      {"tie_word_embeddings", false}, {"pad_token_id", vocab_size - 3}, {"eos_token_id", vocab_size - 1},
      {"bos_token_id", vocab_size - 3}, {"torch_dtype", "float32"}};
  torch::manual_seed(0);
  verl::models::CausalLM lm(verl::models::TransformerConfig::from_json(config));
  lm->init_weights(0.02);
  verl::models::save_causal_lm(lm, model_dir);
  std::int64_t params = 0;
  for (const auto& p : lm->parameters()) params += p.numel();

  // verl's GSM8K and MATH rows (examples/data_preprocess/gsm8k.py, math_dataset.py): chat-message prompts,
  // data_source selecting the rule, the answer in reward_model.ground_truth.
  std::mt19937 rng(7);
  std::uniform_int_distribution<int> num(2, 60);
  const auto gsm8k_row = [&](int i, const char* split) {
    const int a = num(rng), b = num(rng);
    const std::string q = "Tom has " + std::to_string(a) + " apples and buys " + std::to_string(b) +
                          " more. How many apples does he have? Let's think step by step and output the final "
                          "answer after \"####\".";
    return nlohmann::json{{"data_source", "openai/gsm8k"},
                          {"prompt", {{{"role", "user"}, {"content", q}}}},
                          {"ability", "math"},
                          {"reward_model", {{"style", "rule"}, {"ground_truth", std::to_string(a + b)}}},
                          {"extra_info", {{"split", split}, {"index", i}}}};
  };
  const auto math_row = [&](int i) {
    const int a = num(rng), b = num(rng);
    const std::string q = "Compute $" + std::to_string(a) + " \\times " + std::to_string(b) +
                          "$. Let's think step by step and output the final answer within \\boxed{}.";
    return nlohmann::json{{"data_source", "lighteval/MATH"},
                          {"prompt", {{{"role", "user"}, {"content", q}}}},
                          {"ability", "math"},
                          {"reward_model", {{"style", "rule"}, {"ground_truth", std::to_string(a * b)}}},
                          {"extra_info", {{"split", "test"}, {"index", i}}}};
  };
  {
    std::ofstream train(dir / "train.jsonl"), val(dir / "val.jsonl");
    for (int i = 0; i < 64; ++i) train << gsm8k_row(i, "train").dump() << '\n';
    for (int i = 0; i < 4; ++i) val << gsm8k_row(i, "test").dump() << '\n' << math_row(i).dump() << '\n';
  }
  const auto yaml = dir / "demo.yaml";
  std::ofstream(yaml) << "# verl-cpp's main_ppo demo: verl's keys; anything left out keeps verl 0.7.1's default.\n"
                         "data:\n"
                         "  train_files: " << (dir / "train.jsonl").string() << "\n"
                         "  val_files: " << (dir / "val.jsonl").string() << "\n"
                         "  train_batch_size: 4\n"
                         "  max_prompt_length: 160\n"
                         "  max_response_length: 12\n"
                         "  dataloader_num_workers: 1\n"
                         "  seed: 1\n"
                         "actor_rollout_ref:\n"
                         "  model:\n"
                         "    path: " << model_dir.string() << "\n"
                         "  actor:\n"
                         "    ppo_mini_batch_size: 4\n"
                         "    ppo_micro_batch_size_per_gpu: 2\n"
                         "    use_kl_loss: true\n"
                         "    entropy_coeff: 0.001  # moves the weights while every reward is still 0\n"
                         "    kl_loss_type: low_var_kl\n"
                         "    optim:\n"
                         "      lr: 1.0e-4\n"
                         "  ref:\n"
                         "    log_prob_micro_batch_size_per_gpu: 8\n"
                         "  rollout:\n"
                         "    n: 2\n"
                         "    log_prob_micro_batch_size_per_gpu: 8\n"
                         "algorithm:\n"
                         "  adv_estimator: grpo\n"
                         "trainer:\n"
                         "  total_training_steps: 4\n"
                         "  save_freq: 2\n"
                         "  test_freq: 2\n"
                         "  val_before_train: true\n"
                         "  logger: [console, jsonl]\n"
                         "  device: cpu\n"
                         "  default_local_dir: " << (dir / "checkpoints").string() << "\n";
  std::printf("demo files: %s, model/ (Llama-shaped, %.1fM parameters), train.jsonl (64 rows), val.jsonl (8 rows)\n",
              yaml.string().c_str(), static_cast<double>(params) / 1e6);
  return yaml;
}

// Removes `p` and everything under it. Not std::filesystem::remove_all: PyPI's libtorch.so (2.11) exports its
// own copy of the std::filesystem functions, and a program may bind remove_all to it and crash.
void remove_tree(const fs::path& p) {
  std::error_code ec;
  if (fs::is_directory(fs::symlink_status(p, ec))) {
    std::vector<fs::path> children;
    for (const auto& e : fs::directory_iterator(p, ec)) children.push_back(e.path());
    for (const auto& c : children) remove_tree(c);
  }
  fs::remove(p, ec);
}

double max_abs_diff(const std::vector<at::Tensor>& a, const std::vector<at::Tensor>& b) {
  double m = 0;
  for (std::size_t i = 0; i < a.size(); ++i) m = std::max(m, (a[i] - b[i]).abs().max().item<double>());
  return m;
}

int demo(fs::path dir, const std::vector<std::string>& extra, Processes& procs) {
  const bool temporary = dir.empty();
  // One directory for every rank (rank 0 writes the files and the checkpoints, all read them): named after the
  // rendezvous port, unique on this machine while the job runs.
  if (temporary) {
    dir = fs::temp_directory_path() / ("verl_07_main_ppo_" + (procs.size() > 1 ? "port" + std::to_string(procs.place().master_port)
                                                                               : std::to_string(std::random_device{}())));
  }
  procs.join(Processes::Backend::gloo, std::chrono::seconds(600));  // the demo trains on the CPU
  const auto yaml = dir / "demo.yaml";
  if (procs.rank0()) {
    if (temporary) remove_tree(dir);  // a directory left by an earlier job on the same port
    fs::create_directories(dir);
    (void)write_demo(dir);
    std::fflush(stdout);
  }
  procs.barrier();  // the files exist for every rank
  const auto with = [&](std::vector<std::string> ov) {  // the caller's overrides, then the demo's
    ov.insert(ov.begin(), extra.begin(), extra.end());
    return ov;
  };
  const auto first = main_ppo(yaml, with({}), Print::quiet_config, procs);
  std::string ckpts;
  for (const auto& c : first.checkpoints) ckpts += " " + c;
  if (procs.rank0()) {
    std::printf("run 1: steps %lld..%lld, checkpoints%s\n", static_cast<long long>(first.fit.first_step),
                static_cast<long long>(first.fit.last_step), ckpts.c_str());
  }
  const auto second = main_ppo(yaml, with({"trainer.total_training_steps=6"}), Print::quiet_config, procs);
  if (procs.rank0()) {
    std::printf("run 2: resumed from step %lld, steps %lld..%lld\n",
                static_cast<long long>(second.fit.resumed_from.value_or(-1)),
                static_cast<long long>(second.fit.first_step), static_cast<long long>(second.fit.last_step));
    std::fflush(stdout);
  }
  bool ok = first.fit.last_step == 4 && second.fit.resumed_from == 4 && second.fit.last_step == 6 &&
            fs::exists(dir / "checkpoints" / "metrics.jsonl");
  if (procs.size() > 1) {
    // The same 6 steps trained by this process alone (plain, not sharded), uninterrupted, writing nothing: the
    // run on N processes with its resume must end where it ends.
    auto alone = Processes::alone();
    const auto one = main_ppo(yaml,
                              with({"trainer.total_training_steps=6", "trainer.save_freq=-1", "trainer.resume_mode=disable",
                                    "trainer.logger=[]", "trainer.default_local_dir=" + (dir / "alone").string(),
                                    "actor_rollout_ref.actor.strategy=dp"}),
                              Print::nothing, alone);
    const double diff = max_abs_diff(second.actor_weights, one.actor_weights);
    double update = 0;  // the largest change of a weight over the 6 steps, for scale
    {
      const auto initial = verl::models::load_causal_lm(dir / "model")->parameters();
      for (std::size_t i = 0; i < initial.size(); ++i)
        update = std::max(update, (one.actor_weights[i] - initial[i]).abs().max().item<double>());
    }
    // Step 1's gradient norm (all-reduced, before any update; AdamW's normalised steps alone would hide a wrong
    // gradient scale) within 1e-4 relative, the final weights within 1e-3 of the largest update (float32: the
    // processes add in another order).
    const auto metric = [](const std::map<std::string, double>& m, const char* key) {
      const auto it = m.find(key);
      return it == m.end() ? std::nan("") : it->second;
    };
    const double g_dp = metric(first.step1, "actor/grad_norm"), g_one = metric(one.step1, "actor/grad_norm");
    const bool equal = diff <= 1e-3 * update && std::abs(g_dp - g_one) <= 1e-4 * std::abs(g_one) && g_one > 0;
    ok = ok && equal;
    if (procs.rank0()) {
      std::printf("%s=%d: step 1 grad_norm %.6f (1 process: %.6f), final pg_loss %.6f (1 process: %.6f), max |weight "
                  "diff| vs 1 process %.1e (largest weight update %.1e)%s\n", second.strategy.c_str(), procs.size(), g_dp, g_one,
                  metric(second.fit.last_metrics, "actor/pg_loss"), metric(one.fit.last_metrics, "actor/pg_loss"), diff,
                  update, equal ? "" : " (expected grad_norm within 1e-4 and weights within 1e-3 of the largest update)");
    }
  }
  procs.barrier();  // rank 0 hosts the rendezvous store and removes the directory: it leaves last
  if (temporary && procs.rank0()) remove_tree(dir);
  return ok ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  int rank = 0, size = 1;
  try {
    Processes procs;  // reads the launcher's variables (a malformed one is an error naming it)
    rank = procs.rank();
    size = procs.size();
    if (argc < 2) {
      std::fprintf(stderr, "usage: %s CONFIG.yaml [key=value ...]\n       %s --demo [DIR] [key=value ...]\n", argv[0],
                   argv[0]);
      return 2;
    }
    const std::string first = argv[1];
    if (first == "--demo") {
      // The processes share the cores; OMP_NUM_THREADS, when set, wins (CTest sets 1: it runs tests side by side).
      torch::set_num_threads(std::getenv("OMP_NUM_THREADS") ? std::max(1, std::atoi(std::getenv("OMP_NUM_THREADS")))
                                                         : (procs.place().local_world_size > 1 ? 1 : 2));
      fs::path dir;
      std::vector<std::string> extra;  // overrides for every run of the demo
      for (int i = 2; i < argc; ++i) {
        const std::string a = argv[i];
        if (a.find('=') != std::string::npos) extra.push_back(a);
        else dir = a;
      }
      const int rc = demo(dir, extra, procs);
      if (rc == 0 && procs.rank0()) std::printf("main_ppo: ok\n");
      return rc;
    }
    std::vector<std::string> overrides(argv + 2, argv + argc);
    const auto r = main_ppo(first, overrides, Print::all, procs);
    if (procs.rank0()) {
      std::printf("done: steps %lld..%lld\n", static_cast<long long>(r.fit.first_step),
                  static_cast<long long>(r.fit.last_step));
    }
    return 0;
  } catch (const std::exception& e) {  // every rank ends with 1 (the others' collectives fail when one leaves)
    if (size > 1) std::fprintf(stderr, "error (rank %d of %d): %s\n", rank, size, e.what());
    else std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
