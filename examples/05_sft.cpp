// 05_sft: supervised fine-tuning of a tiny causal LM with verl's SFT loss, configured from YAML, checkpointed,
// interrupted, resumed, validated; then greedy decoding. The same binary trains data-parallel on several
// processes when a launcher starts it (torchrun's variables; e.g. verl_example_08_launch_local --nproc 2 --).
//
// What it shows:
//   1. prompt / response rows written to a JSONL file and read back through verl::data::SFTDataset (prompt
//      tokens are context, response tokens + eos are targets) and a verl::data::DataProvider;
//   2. the run configured by verl's sft_trainer_engine.yaml keys (data.*, optim.*, trainer.*, engine.strategy)
//      from a YAML text plus `key=value` overrides (verl::config::OfflineConfig), mapped to the trainer, the
//      providers and the fit loop by verl/trainer/offline_from_config.hpp;
//   3. verl::trainer::SFTTrainer::fit: verl's metrics (train/loss, train/lr, val/loss every test_freq steps) to
//      a metrics registry, a checkpoint every save_freq steps; run 1 stops at step 40 as if interrupted, run 2
//      (a new trainer on freshly initialised weights) resumes from the checkpoint and ends exactly where an
//      uninterrupted run would;
//   4. the memorised completions reproduced by greedy decoding;
//   5. on N > 1 processes (issue 7): each process reads its place from the launcher's variables
//      (verl::dist::detect_launch_env), the processes join a Gloo group and train data-parallel
//      (engine.strategy dp: verl::dist::DataParallel, each process takes train_batch_size / N rows of every
//      batch) or fully sharded (engine.strategy fsdp / fsdp2: verl::dist::make_fully_sharded_actor, ZeRO-3;
//      also on one process, over the 1-rank group); trainer.nnodes / trainer.n_gpus_per_node and the batch
//      sizes are checked against the launch;
//      rank 0 alone prints, writes metrics.jsonl and the checkpoints, which every rank resumes from. Each
//      process then also trains the same config alone and prints how far the two end apart.
// The task: "spell" each two-letter prompt as a fixed response.
//
// Expected output (the step lines' numbers depend on the LibTorch build; CTest matches the others):
//   dataset: 4 rows from sft.jsonl, 1 batch of 4 per epoch
//   config: 80 steps (1 batch x 80 epochs), lr 0.02 cosine with 5 warm-up steps, save_freq 40, test_freq 40
//   step 40: train/loss 0.0005 train/lr 0.01105 val/loss 0.0004
//   run 1: steps 1..40, checkpoint global_step_40
//   step 80: train/loss 0.0003 train/lr 0.00000 val/loss 0.0003
//   run 2: resumed from step 40, steps 41..80
//   loss: 2.870 -> 0.000 (down)
//   greedy: ab -> cdef, ba -> ghi, ka -> mmln, hj -> ac
//   sft: ok
// With 2 processes, after "config:" the line "processes: 2 (rank 0 of 2), engine.strategy dp: data parallel over
// Gloo, 2 rows per process and batch", and after "run 2:" the comparison with the same config trained by one
// process (float32: only the order of the additions differs; the program fails when step 1's gradient norm
// differs by 1e-5 relative or a final weight by 1e-4):
//   dp=2: step 1 grad_norm 2.370755 (1 process: 2.370755), final loss 0.000252 (1 process: 0.000252), max |weight
//   diff| vs 1 process 1.3e-05
// (engine.strategy=fsdp: "fully sharded over Gloo" and "fsdp=2: ...").
#include "letter_task.hpp"

#include <verl/data/data_provider.hpp>
#include <verl/data/preference_dataset.hpp>
#include <verl/dist/data_parallel.hpp>
#include <verl/dist/fully_sharded_actor.hpp>
#include <verl/dist/gloo.hpp>
#include <verl/dist/launch_env.hpp>
#include <verl/dist/single_process_communicator.hpp>
#include <verl/models/actor.hpp>
#include <verl/config/trainer_config.hpp>
#include <verl/trainer/offline_from_config.hpp>
#include <verl/trainer/sft_trainer.hpp>

#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <type_traits>

namespace {

// Greedy decoding by argmax over the logits of the last position, up to eos or `max_new` tokens.
std::string greedy(verl::models::Actor& actor, const std::string& prompt, int max_new) {
  torch::NoGradGuard no_grad;
  auto ids = examples::LetterTokenizer{}.encode(prompt);
  std::vector<std::int64_t> out;
  for (int s = 0; s < max_new; ++s) {
    const auto t = static_cast<std::int64_t>(ids.size());
    const auto input = torch::tensor(ids, torch::kLong).unsqueeze(0);                                        // (1,T)
    const auto logits = actor.lm()->logits(input, torch::ones_like(input), torch::arange(t).unsqueeze(0));  // (1,T,V)
    const auto next = logits[0][t - 1].argmax().item<std::int64_t>();
    if (next == examples::LetterTokenizer{}.eos_token_id()) break;
    out.push_back(next);
    ids.push_back(next);
  }
  return examples::LetterTokenizer{}.decode(out);
}

// The run's configuration: verl's SFT keys. train_files and default_local_dir are set by overrides below.
constexpr const char* kConfig = R"(
data:
  train_batch_size: 4          # examples per optimizer step
  micro_batch_size_per_gpu: 2  # rows per forward/backward; the update does not depend on it
  max_length: 32
  max_prompt_length: null
  num_workers: 1
optim:
  lr: 0.02
  lr_scheduler_type: cosine
  lr_warmup_steps: 5
trainer:
  total_epochs: 80
  seed: 1
  save_freq: 40
  test_freq: 40
  max_ckpt_to_keep: 2
  logger: [jsonl]
model:
  path: tiny-qwen2   # this program builds the model itself
)";

// The processes this program runs on: itself alone, or the group a launcher started (torchrun, mpirun, srun or
// verl_example_08_launch_local set the variables verl::dist::detect_launch_env reads). The model of this example
// lives on the CPU, so the group is Gloo's.
class Processes {
 public:
  Processes() {
    if (auto place = verl::dist::detect_launch_env(verl::dist::environ_map())) place_ = *place;
  }
  [[nodiscard]] const verl::dist::LaunchEnv& place() const { return place_; }
  [[nodiscard]] int rank() const { return place_.rank; }
  [[nodiscard]] int size() const { return place_.world_size; }
  [[nodiscard]] bool rank0() const { return place_.rank == 0; }

  // Joins the group (rank 0 hosts the rendezvous); nothing with one process.
  void join(std::chrono::seconds timeout) {
    if (size() == 1) return;
#if VERL_DIST_HAS_GLOO
    group_.emplace(verl::dist::ProcessGroupCommunicator<verl::dist::gloo>::init(place_, {.timeout = timeout}));
#else
    (void)timeout;
    throw verl::ConfigError("05_sft: WORLD_SIZE is " + std::to_string(size()) + " but this build has no Gloo backend "
                            "(install Debian's libgloo-dev and rebuild), expected WORLD_SIZE 1");
#endif
  }
  // Every rank waits here for the others (e.g. until rank 0 has written the checkpoint they resume from).
  void barrier() {
#if VERL_DIST_HAS_GLOO
    if (group_) group_->barrier();
#endif
  }
  // engine.strategy dp: a DataParallel over `params` (null with one process: the trainer then trains alone).
  [[nodiscard]] std::shared_ptr<verl::dist::GradientSynchronizer> data_parallel(std::vector<at::Tensor> params) {
#if VERL_DIST_HAS_GLOO
    if (group_) return verl::dist::make_data_parallel(*group_, std::move(params));
#endif
    return nullptr;
  }
  // Calls fn(communicator): the Gloo group, or the 1-rank group when this process is alone.
  template <class Fn>
  void with_communicator(Fn&& fn) {
#if VERL_DIST_HAS_GLOO
    if (group_) {
      fn(*group_);
      return;
    }
#endif
    fn(verl::dist::SingleProcessCommunicator{});
  }

 private:
  verl::dist::LaunchEnv place_;  // rank 0 of 1 without a launcher
#if VERL_DIST_HAS_GLOO
  std::optional<verl::dist::ProcessGroupCommunicator<verl::dist::gloo>> group_;
#endif
};

double max_abs_diff(const std::vector<at::Tensor>& a, const std::vector<at::Tensor>& b) {
  double m = 0;
  for (std::size_t i = 0; i < a.size(); ++i) m = std::max(m, (a[i] - b[i]).abs().max().item<double>());
  return m;
}

int run(int argc, char** argv, Processes& procs) {
  torch::set_num_threads(1);
  // One directory for every rank (rank 0 writes the data and the checkpoints, all read them): named after the
  // rendezvous port, unique on this machine while the job runs.
  const auto dir = std::filesystem::temp_directory_path() /
                   ("verl_05_sft_" + (procs.size() > 1 ? "port" + std::to_string(procs.place().master_port)
                                                       : std::to_string(std::random_device{}())));
  const std::vector<std::pair<std::string, std::string>> pairs = {{"ab", "cdef"}, {"ba", "ghi"}, {"ka", "mmln"}, {"hj", "ac"}};

  // 1. The configuration: the YAML text, then overrides (a real program passes argv's `key=value`s), then the
  //    checks against the launch (trainer.nnodes / n_gpus_per_node, batch sizes for this many processes).
  std::vector<std::string> overrides{"data.train_files=" + (dir / "sft.jsonl").string(),
                                     "data.val_files=" + (dir / "sft.jsonl").string(),
                                     "trainer.default_local_dir=" + (dir / "checkpoints").string()};
  for (int i = 1; i < argc; ++i) overrides.emplace_back(argv[i]);
  const auto [cfg, yaml] = verl::config::load_text<verl::config::OfflineConfig>(kConfig, "05_sft.yaml", overrides);
  cfg.validate_layout({.world_size = procs.size(), .local_world_size = procs.place().local_world_size});
  const bool sharded = cfg.engine.strategy != "dp";  // fsdp, fsdp2: fully sharded
  procs.join(std::chrono::seconds(600));  // verl's default process-group timeout (nccl_timeout)

  if (procs.rank0()) {
    examples::remove_tree(dir);  // a directory left by an earlier job on the same port
    std::filesystem::create_directories(dir);
    std::vector<nlohmann::json> rows;
    for (const auto& [p, r] : pairs) rows.push_back({{"prompt", p}, {"response", r}});
    examples::write_jsonl(dir / "sft.jsonl", rows);
  }
  procs.barrier();  // the data exists for every rank

  // 2. Data.
  const examples::LetterTokenizer tokenizer;
  const auto dataset_options = verl::trainer::sft_dataset_options_from(cfg);
  const auto dataset = std::make_shared<const verl::data::SFTDataset>(
      verl::data::SFTDataset::load(cfg.data.train_files.files.front(), tokenizer, dataset_options));
  const auto val_set = std::make_shared<const verl::data::SFTDataset>(
      verl::data::SFTDataset::load(cfg.data.val_files.files.front(), tokenizer, dataset_options));
  const auto po = verl::trainer::train_provider_options_from(cfg);
  const auto batches_per_epoch = static_cast<std::int64_t>(dataset->size() / po.batch_size);
  const auto steps = verl::trainer::offline_total_training_steps(cfg, batches_per_epoch);
  const auto options = verl::trainer::sft_options_from(cfg, steps);
  if (procs.rank0()) {
    std::printf("dataset: %zu rows from sft.jsonl, %lld batch of %zu per epoch\n", dataset->size(),
                static_cast<long long>(batches_per_epoch), po.batch_size);
    std::printf("config: %lld steps (%lld batch x %lld epochs), lr %g %s with %lld warm-up steps, save_freq %lld, "
                "test_freq %lld\n", static_cast<long long>(steps), static_cast<long long>(batches_per_epoch),
                static_cast<long long>(cfg.trainer.total_epochs), options.lr,
                options.lr_schedule.lr_scheduler_type.c_str(), static_cast<long long>(options.lr_schedule.num_warmup_steps),
                static_cast<long long>(cfg.trainer.save_freq), static_cast<long long>(cfg.trainer.test_freq));
    if (procs.size() > 1) {
      std::printf("processes: %d (rank 0 of %d), engine.strategy %s: %s over Gloo, %lld rows per process and batch\n",
                  procs.size(), procs.size(), cfg.engine.strategy.c_str(), sharded ? "fully sharded" : "data parallel",
                  static_cast<long long>(cfg.data.train_batch_size / procs.size()));
    }
    std::fflush(stdout);
  }

  // 3. Training: run 1 stops at step 40 (as if the machine went down), run 2 resumes from its checkpoint.
  const auto everything = dataset->collate(std::vector<std::size_t>{0, 1, 2, 3});
  double before = 0, after = 0;
  bool all_right = true;
  std::string line = "greedy:";
  std::vector<at::Tensor> trained;  // the weights at the end of run 2
  double first_grad_norm = 0;       // train/grad_norm of step 1: the gradient before any update
  // One run on `policy`: a models::Actor (dp: `sync` is its DataParallel, null with one process) or a
  // verl::dist::FullyShardedActor over it (fsdp: the trainer takes the sharded module's own synchroniser).
  const auto train = [&](std::int64_t stop_at, auto policy, std::shared_ptr<verl::dist::GradientSynchronizer> sync) {
    using Policy = decltype(policy);
    constexpr bool is_sharded = !std::is_same_v<Policy, verl::models::Actor>;
    verl::trainer::SFTTrainer<Policy> trainer(policy, options, std::move(sync));
    if (stop_at < steps) before = trainer.evaluate(everything);
    verl::trainer::MetricsRegistry registry;
    registry.add_callback([&](std::int64_t step, const verl::trainer::MetricMap& m) {
      if (step == 1) first_grad_norm = m.at("train/grad_norm");
    });
    if (procs.rank0()) {  // every rank records the same metrics; one prints and writes them
      verl::trainer::add_metric_exporters_from(cfg, registry, dir / "checkpoints" / "metrics.jsonl");
      registry.add_callback([](std::int64_t step, const verl::trainer::MetricMap& m) {
        if (m.count("val/loss"))
          std::printf("step %lld: train/loss %.4f train/lr %.5f val/loss %.4f\n", static_cast<long long>(step),
                      m.at("train/loss"), m.at("train/lr"), m.at("val/loss"));
      });
    }
    auto fit_options = verl::trainer::offline_fit_options_from(cfg, steps, yaml);
    fit_options.total_training_steps = stop_at;
    fit_options.progress_bar = procs.rank0();
    const auto result = trainer.fit(
        [&](const nlohmann::json& resume) {  // null, or the data position saved in the checkpoint
          return std::make_unique<verl::data::DataProvider<verl::data::SFTDataset>>(dataset, po, resume);
        },
        registry, fit_options, [&](std::int64_t) {  // verl's validation: val/loss over the validation set
          verl::data::DataProvider<verl::data::SFTDataset> val(val_set, verl::trainer::sft_val_provider_options_from(cfg));
          return trainer.validate(val);
        });
    procs.barrier();  // rank 0's last checkpoint is complete before anyone resumes from it
    if (!result.resumed_from) {
      if (procs.rank0()) {
        std::printf("run 1: steps %lld..%lld, checkpoint %s\n", static_cast<long long>(result.first_step),
                    static_cast<long long>(result.last_step),
                    result.checkpoints.empty() ? "none" : result.checkpoints.back().filename().c_str());
      }
      return;
    }
    if (procs.rank0()) {
      std::printf("run 2: resumed from step %lld, steps %lld..%lld\n", static_cast<long long>(*result.resumed_from),
                  static_cast<long long>(result.first_step), static_cast<long long>(result.last_step));
    }
    after = trainer.evaluate(everything);
    const auto decode_and_keep = [&](verl::models::Actor& actor) {  // on the full weights
      for (const auto& [p, r] : pairs) {
        const auto got = greedy(actor, p, 8);
        all_right = all_right && got == r;
        line += (line.size() > 7 ? ", " : " ") + p + " -> " + got;
      }
      for (const auto& t : actor.parameters()) trained.push_back(t.detach().clone());
    };
    if constexpr (is_sharded) {
      const auto full = policy.sharded().gather_full_parameters();  // collective: every rank holds the whole model
      decode_and_keep(policy.actor());
    } else {
      decode_and_keep(policy);
    }
  };
  for (const std::int64_t stop_at : {steps / 2, steps}) {
    verl::models::Actor actor(examples::tiny_lm(5));  // fresh weights; run 2 gets the trained ones from the checkpoint
    if (!sharded) {
      train(stop_at, actor, procs.data_parallel(actor.parameters()));
    } else {
      procs.with_communicator([&](auto comm) { train(stop_at, verl::dist::make_fully_sharded_actor(actor, comm), nullptr); });
    }
  }
  bool equal_to_one_process = true;
  if (procs.size() > 1) {
    // The same config trained by this process alone, uninterrupted: data parallel must end where it ends.
    verl::models::Actor alone(examples::tiny_lm(5));
    verl::trainer::SFTTrainer<verl::models::Actor> trainer(alone, options);
    verl::data::DataProvider<verl::data::SFTDataset> provider(dataset, po);
    const auto history = trainer.fit(provider, steps);
    const double loss_alone = trainer.evaluate(everything);
    const double grad_norm_alone = history.front().at("train/grad_norm");
    const double diff = max_abs_diff(trained, alone.parameters());
    // float32: the processes add in another order. Step 1's gradient norm (all-reduced gradients, before any
    // update) must agree to 1e-5 relative, which AdamW's normalised steps alone would not reveal; after 80
    // steps the weights (of size up to ~1) to 1e-4.
    const double grad_norm_gap = std::abs(first_grad_norm - grad_norm_alone) / grad_norm_alone;
    equal_to_one_process = diff < 1e-4 && grad_norm_gap < 1e-5;
    if (procs.rank0()) {
      std::printf("%s=%d: step 1 grad_norm %.6f (1 process: %.6f), final loss %.6f (1 process: %.6f), max |weight "
                  "diff| vs 1 process %.1e%s\n", cfg.engine.strategy.c_str(), procs.size(), first_grad_norm,
                  grad_norm_alone, after, loss_alone, diff,
                  equal_to_one_process ? "" : " (expected < 1e-4, grad_norm within 1e-5)");
    }
  }
  const bool ok = all_right && after < 0.1 * before && equal_to_one_process;
  if (procs.rank0()) {
    std::printf("loss: %.3f -> %.3f (%s)\n", before, after, after < 0.1 * before ? "down" : "not down");
    std::printf("%s\n", line.c_str());
    if (ok) std::printf("sft: ok\n");
    std::fflush(stdout);
  }
  procs.barrier();  // rank 0 hosts the rendezvous store and removes the directory: it leaves last
  if (procs.rank0()) examples::remove_tree(dir);
  return ok ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  int rank = 0, size = 1;
  try {
    Processes procs;  // reads the launcher's variables (a malformed one is an error naming it)
    rank = procs.rank();
    size = procs.size();
    return run(argc, argv, procs);
  } catch (const std::exception& e) {  // every rank ends with 1 (the others' collectives fail when one leaves)
    if (size > 1) std::fprintf(stderr, "05_sft (rank %d of %d): error: %s\n", rank, size, e.what());
    else std::fprintf(stderr, "05_sft: error: %s\n", e.what());
    return 1;
  }
}
