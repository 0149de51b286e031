#pragma once
//! \file
//! verl::trainer::PPOTrainer: the PPO-family trainer (PPO with a critic, GRPO, DAPO, Dr. GRPO, RLOO,
//! REINFORCE++, ReMax, ... — whatever verl::RLAlgorithm it is given), with verl 0.7.1's step semantics
//! (RayPPOTrainer.fit for one process):
//!
//!     using Algo = verl::GRPO<>;                                  // k3 KL loss, GRPO advantages, no critic
//!     verl::trainer::PPOTrainer<Algo, verl::models::Actor, verl::no_critic, verl::models::Reference>
//!         trainer(actor, verl::no_critic{}, reference, scorer, options);
//!     auto metrics = trainer.step(prompt_batch);                  // {"actor/pg_loss": ..., "timing_s/gen": ...}
//!
//! One step runs the algorithm's pipeline (verl/pipeline/rl_stages.hpp): generate n responses per prompt,
//! [ReMax: greedy baseline], score, old log-probs, [reference log-probs], [values], KL in the reward or not,
//! advantages, [critic update], actor update; then the learning-rate schedule advances. The pipeline is a
//! type derived from the algorithm (a critic's stages exist iff the estimator reads values), checked at
//! compile time; `default_pipeline()` returns it for editing (a custom reward or filter stage) and
//! `step(pipeline, prompts)` runs an edited one.
//!
//! Data parallel (issue 7): set PPOOptions::actor_data_parallel (and critic_data_parallel with a critic) to a
//! verl::dist::DataParallel over the model's parameters and run the same program on every rank with the same
//! prompt batches. Each rank takes its contiguous chunk of the prompts (verl dispatches DataProto chunks; the
//! n samples of a prompt stay on one rank, so GRPO's groups are whole), generates with the same sampling seed
//! the single process would use for that step, and updates with per-rank mini-batches of
//! ppo_mini_batch_size * n / dp_size sequences whose gradients are averaged with verl's global normalisers
//! (ppo_update.hpp). With a seeded rollout the weights then equal a single process's on the whole batch.
//! actor/pg_loss, actor/kl_loss, critic/vf_loss and the grad norms are global; the other metrics (rewards,
//! response lengths, advantages, clip fractions, the adaptive KL controller's KL) are this rank's. Checkpoints
//! are written by rank 0 only.
//!
//! Fully sharded actor (issue 7): pass `verl::dist::make_fully_sharded_actor(actor, world)` as the actor (the
//! trainer takes its synchroniser as actor_data_parallel). Each rank generates for its chunk with the full
//! weights gathered for the call, computes old log-probs and updates through the sharded forward (every rank
//! runs as many passes: equal chunks; dynamic micro-batches use the group's largest count), AdamW steps the
//! shards, the clip uses the global norm. Checkpoints are gathered on every rank and written by rank 0 in
//! single-process layout (verl/dist/fully_sharded_actor.hpp). The reference model and the critic stay
//! replicated (a critic may still be data-parallel).

#include "verl/algos/algorithm.hpp"
#include "verl/algos/kl.hpp"
#include "verl/pipeline/filter_stages.hpp"
#include "verl/pipeline/pipeline.hpp"
#include "verl/pipeline/rl_stages.hpp"
#include "verl/trainer/checkpoint_manager.hpp"
#include "verl/trainer/data_metrics.hpp"
#include "verl/trainer/fused_adamw.hpp"
#include "verl/trainer/metrics.hpp"
#include "verl/trainer/offline_common.hpp"  // collective (fully sharded) checkpoints
#include "verl/trainer/progress_bar.hpp"
#include "verl/trainer/lr_schedule.hpp"
#include "verl/trainer/ppo_update.hpp"
#include "verl/trainer/validation.hpp"

#include <torch/optim/adamw.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <type_traits>
#include <vector>

namespace verl::trainer {

//! AdamW settings (verl's actor.optim / critic.optim; defaults are verl's actor ones).
struct OptimizerOptions {
  double lr = 1e-6;
  double weight_decay = 0.01;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  std::optional<std::int64_t> lr_warmup_steps;  //!< optim.lr_warmup_steps (unset or <= 0: use the ratio)
  double lr_warmup_steps_ratio = 0.0;           //!< optim.lr_warmup_steps_ratio
  std::string lr_scheduler_type = "constant";   //!< optim.lr_scheduler_type: constant | cosine | wsd | linear
  double min_lr_ratio = 0.0;                    //!< optim.min_lr_ratio (cosine)
  double num_cycles = 0.5;                      //!< optim.num_cycles (cosine)
  //! Step with torch's fused AdamW kernel (verl::trainer::FusedAdamW; verl: optim.override_optimizer_config
  //! {fused: true}). Off by default: verl's default is the unfused torch.optim.AdamW, whose bits we match.
  bool fused = false;

  //! The schedule verl builds for `total_training_steps` optimizer updates (one per trainer step).
  [[nodiscard]] LRScheduleConfig schedule(std::int64_t total_training_steps) const {
    LRScheduleConfig c;
    c.lr_scheduler_type = lr_scheduler_type;
    c.num_warmup_steps = LRScheduleConfig::resolve_warmup_steps(lr_warmup_steps, lr_warmup_steps_ratio,
                                                                total_training_steps);
    c.num_training_steps = total_training_steps;
    c.min_lr_ratio = min_lr_ratio;
    c.num_cycles = num_cycles;
    return c;
  }
};

//! The runtime configuration of a PPOTrainer, with verl's meanings (verl key in the comment). Batch sizes
//! counted in prompts are multiplied by rollout.n where verl does.
struct PPOOptions {
  SamplingParams rollout;                     //!< actor_rollout_ref.rollout.{n, temperature, top_p, top_k, response_length}
  std::int64_t ppo_mini_batch_size = 1;       //!< actor.ppo_mini_batch_size, in prompts
  std::int64_t ppo_micro_batch_size = 1;      //!< actor.ppo_micro_batch_size_per_gpu, in sequences
  bool use_dynamic_bsz = false;               //!< actor.use_dynamic_bsz
  std::int64_t ppo_max_token_len = 16384;     //!< actor.ppo_max_token_len_per_gpu
  std::int64_t ppo_epochs = 1;                //!< actor.ppo_epochs
  bool shuffle = false;                       //!< actor.shuffle
  double grad_clip = 1.0;                     //!< actor.grad_clip
  std::optional<double> clip_ratio_low;       //!< actor.clip_ratio_low (default: the algorithm's)
  std::optional<double> clip_ratio_high;      //!< actor.clip_ratio_high (default: the algorithm's)
  double clip_ratio_c = 3.0;                  //!< actor.clip_ratio_c
  std::optional<double> entropy_coeff;        //!< actor.entropy_coeff (default: the algorithm's)
  bool calculate_entropy = false;             //!< actor.calculate_entropy: actor/entropy from the update's forward
  double kl_loss_coef = 0.001;                //!< actor.kl_loss_coef (algorithms with kl_loss)
  std::optional<LossAggMode> loss_agg_mode;   //!< actor.loss_agg_mode (default: the algorithm's)
  OptimizerOptions actor_optim;               //!< actor.optim
  std::int64_t log_prob_micro_batch_size = 16;  //!< rollout/ref log_prob_micro_batch_size_per_gpu
  //! algorithm.rollout_correction.bypass_mode: old_log_probs are the sampler's rollout_log_probs and the actor's
  //! recompute pass (timing_s/old_log_prob) is skipped. On-policy (one mini-batch, one epoch) the update uses
  //! the current log-probs, detached, as verl does, so the step is the same without that forward pass;
  //! otherwise the PPO ratio is taken against the sampler's log-probs. actor/entropy then comes from the
  //! update, and only with calculate_entropy or an entropy bonus.
  bool bypass_mode = false;

  // Critic (algorithms whose estimator reads values).
  OptimizerOptions critic_optim{.lr = 1e-5};  //!< critic.optim
  std::int64_t critic_mini_batch_size = 1;    //!< critic.ppo_mini_batch_size, in prompts
  std::int64_t critic_micro_batch_size = 1;   //!< critic.ppo_micro_batch_size_per_gpu
  std::int64_t critic_epochs = 1;             //!< critic.ppo_epochs
  double critic_grad_clip = 1.0;              //!< critic.grad_clip
  double cliprange_value = 0.5;               //!< critic.cliprange_value
  std::int64_t critic_warmup = 0;             //!< trainer.critic_warmup

  // Algorithm.
  double gamma = 1.0;                         //!< algorithm.gamma (GAE)
  double lam = 1.0;                           //!< algorithm.lam (GAE)
  bool norm_adv_by_std_in_grpo = true;        //!< algorithm.norm_adv_by_std_in_grpo
  core_algos::KLControlConfig kl_ctrl;        //!< algorithm.kl_ctrl (algorithms with kl_in_reward)

  //! Data parallel: synchronisers over the actor's and the critic's parameters (null: one process; see the
  //! file comment), e.g. verl::dist::make_data_parallel(world, actor.parameters()).
  std::shared_ptr<dist::GradientSynchronizer> actor_data_parallel{};
  std::shared_ptr<dist::GradientSynchronizer> critic_data_parallel{};

  std::uint64_t seed = 0;                     //!< shuffling seed
  std::int64_t total_training_steps = 1;      //!< trainer.total_training_steps (the LR schedules' length)
  //! Console bars on each rollout (finished responses) and update (optimizer steps): on a terminal only by
  //! default; `always` forces them into a pipe, `never` turns them off.
  ProgressBarOptions::Show progress_bars = ProgressBarOptions::Show::if_terminal;

  //! Throws verl::ConfigError naming the first inconsistent field.
  void validate() const {
    rollout.validate();
    verl::detail::check<ConfigError>(ppo_mini_batch_size >= 1 && ppo_micro_batch_size >= 1,
                               "verl::trainer::PPOOptions: ppo_mini_batch_size and ppo_micro_batch_size must be >= 1");
  }
};

namespace detail {

template <class E>
E make_estimator(const PPOOptions& o) {
  E e{};
  if constexpr (requires { e.gamma; e.lam; }) {
    e.gamma = o.gamma;
    e.lam = o.lam;
  }
  if constexpr (requires { e.norm_adv_by_std_in_grpo; }) e.norm_adv_by_std_in_grpo = o.norm_adv_by_std_in_grpo;
  return e;
}

template <class Algorithm>
trainer::ActorLossSettings actor_loss_settings(const PPOOptions& o) {
  trainer::ActorLossSettings s;
  s.loss_agg_mode = o.loss_agg_mode.value_or(Algorithm::loss_agg_mode);
  s.clip_ratio_low = o.clip_ratio_low.value_or(Algorithm::clip_ratio_low);
  s.clip_ratio_high = o.clip_ratio_high.value_or(Algorithm::clip_ratio_high);
  s.clip_ratio_c = o.clip_ratio_c;
  s.entropy_coeff = o.entropy_coeff.value_or(Algorithm::entropy_coeff);
  s.calculate_entropy = o.calculate_entropy;
  s.temperature = o.rollout.temperature > 0 ? o.rollout.temperature : 1.0;
  if constexpr (Algorithm::kl_as_loss) {
    s.kl_loss_type = std::string(Algorithm::kl::estimator::name);
    s.kl_loss_coef = o.kl_loss_coef;
  }
  return s;
}

inline trainer::UpdateSchedule schedule_of(std::int64_t mini_prompts, std::int64_t n, std::int64_t micro,
                                           bool dynamic, std::int64_t max_tokens, std::int64_t epochs, bool shuffle,
                                           std::uint64_t seed, double grad_clip, ProgressBarOptions::Show bar,
                                           std::shared_ptr<dist::GradientSynchronizer> data_parallel = nullptr) {
  trainer::UpdateSchedule s;
  s.progress_bar.show = bar;
  s.ppo_mini_batch_size = mini_prompts * n;
  if (data_parallel && data_parallel->world_size() > 1) {  // verl: ppo_mini_batch_size * n // dp_size per rank
    const std::int64_t world = data_parallel->world_size();
    verl::detail::check<ConfigError>(s.ppo_mini_batch_size % world == 0, "verl::trainer::PPOTrainer: the mini-batch "
                                     "of ", mini_prompts, " prompts x ", n, " samples is not divisible by the "
                                     "data-parallel size ", world, ", expected a multiple (verl asserts it too)");
    s.ppo_mini_batch_size /= world;
  }
  s.data_parallel = std::move(data_parallel);
  s.micro_batch_size = micro;
  s.use_dynamic_bsz = dynamic;
  s.max_token_len = max_tokens;
  s.ppo_epochs = epochs;
  s.shuffle = shuffle;
  s.shuffle_seed = seed;
  s.grad_clip = grad_clip;
  return s;
}

}  // namespace detail

//! The batch a step starts from: left-padded prompts (verl::Prompts' layout) with per-item data.
using PromptBatch = Batch<fields::input_ids, fields::attention_mask, fields::position_ids>;

//! DAPO's dynamic sampling (verl's algorithm.filter_groups).
struct FilterGroupsOptions {
  std::int64_t train_batch_size = 1;  //!< data.train_batch_size: informative groups per step
  stages::GroupMetric metric = stages::GroupMetric::seq_reward;  //!< filter_groups.metric
  std::int64_t max_num_gen_batches = 0;  //!< filter_groups.max_num_gen_batches (<= 0: no limit)
  std::int64_t pad_token_id = 0;         //!< pads rollouts of different widths when they are concatenated
};

//! The loop around PPOTrainer::step (verl's trainer.* keys).
struct FitOptions {
  std::int64_t total_training_steps = 1;  //!< trainer.total_training_steps: the loop ends at this global step
  std::int64_t save_freq = -1;            //!< trainer.save_freq: checkpoint every k steps and at the end (<= 0: never)
  std::filesystem::path checkpoint_dir;   //!< trainer.default_local_dir
  int max_ckpt_to_keep = 0;               //!< trainer.max_actor_ckpt_to_keep (<= 0: all)
  bool resume = true;                     //!< trainer.resume_mode: auto (true) or disable (false)
  bool save_optimizer = true;             //!< keep optimizer states in checkpoints
  bool save_training_state = true;        //!< keep schedulers, RNG, data position, KL controller
  std::string config_text;                //!< the effective config, saved as config.yaml in each checkpoint
  std::int64_t test_freq = -1;            //!< trainer.test_freq: run `validate` every k steps and at the end
  bool val_before_train = false;          //!< trainer.val_before_train
  bool progress_bar = true;               //!< a console bar over the steps (only on a terminal)
};

//! What fit() did.
struct FitResult {
  std::int64_t first_step = 0;                 //!< the first step run (resumed step + 1)
  std::int64_t last_step = 0;                  //!< the last step run (== total_training_steps unless data ran out)
  std::optional<std::int64_t> resumed_from;    //!< the checkpoint step resumed from
  std::map<std::string, double> last_metrics;  //!< the metrics of the last step
  //! Parts the resumed checkpoint was saved without (save_optimizer / save_training_state off), e.g.
  //! "optimizer `actor`": they start fresh.
  std::vector<std::string> not_restored;
};

//! The pointers a pipeline's stages hold.
template <class Actor, class Critic, class Reference>
struct PipelineModels {
  Actor* actor = nullptr;
  Critic* critic = nullptr;
  Reference* reference = nullptr;
  torch::optim::Optimizer* actor_optimizer = nullptr;
  torch::optim::Optimizer* critic_optimizer = nullptr;
};

//! The default pipeline of `Algorithm` (see the file comment for the stage order) over `models`.
template <class Algorithm, class Actor, class Critic, class Reference>
auto make_rl_pipeline(const PipelineModels<Actor, Critic, Reference>& m, stages::Scorer scorer,
                      const PPOOptions& o) {
  using Set = ModelSet<Algorithm, Actor, Critic, Reference>;
  const double temperature = o.rollout.temperature > 0 ? o.rollout.temperature : 1.0;
  const auto settings = detail::actor_loss_settings<Algorithm>(o);
  auto head = std::tuple(stages::Generate<Actor>{m.actor, o.rollout, 0, ProgressBarOptions{.show = o.progress_bars}});
  auto baseline = [&] {
    if constexpr (stages::detail::needs_reward_baselines<typename Algorithm::estimator>())
      return std::tuple(stages::GreedyBaseline<Actor>{m.actor, o.rollout, scorer});
    else return std::tuple<>();
  }();
  auto score = std::tuple(stages::Score{scorer},
                          stages::OldLogProbs<Actor>{m.actor, temperature, o.log_prob_micro_batch_size,
                                                     settings.loss_agg_mode, o.bypass_mode});
  auto ref = [&] {
    if constexpr (Set::has_reference)
      return std::tuple(stages::ReferenceLogProbs<Reference>{m.reference, temperature, o.log_prob_micro_batch_size});
    else return std::tuple<>();
  }();
  auto values = [&] {
    if constexpr (Set::has_critic) return std::tuple(stages::Values<Critic>{m.critic, o.log_prob_micro_batch_size});
    else return std::tuple<>();
  }();
  auto kl = [&] {
    if constexpr (Algorithm::kl_in_reward) {
      core_algos::KLControlConfig c = o.kl_ctrl;
      c.type = std::is_same_v<typename Algorithm::kl::controller, adaptive_kl> ? "adaptive" : "fixed";
      return std::tuple(
          stages::RewardKLPenalty{core_algos::get_kl_controller(c), std::string(Algorithm::kl::estimator::name)});
    } else {
      return std::tuple(stages::ScoresAsRewards{});
    }
  }();
  auto adv = std::tuple(stages::Advantage<typename Algorithm::estimator>{
      detail::make_estimator<typename Algorithm::estimator>(o)});
  const auto n = o.rollout.n;
  auto critic_update = [&] {
    if constexpr (Set::has_critic)
      return std::tuple(stages::UpdateCritic<Critic>{
          m.critic, m.critic_optimizer,
          detail::schedule_of(o.critic_mini_batch_size, n, o.critic_micro_batch_size, o.use_dynamic_bsz,
                              o.ppo_max_token_len, o.critic_epochs, o.shuffle, o.seed + 17, o.critic_grad_clip,
                              o.progress_bars, o.critic_data_parallel),
          o.cliprange_value, settings.loss_agg_mode});
    else return std::tuple<>();
  }();
  auto actor_update = std::tuple(stages::UpdateActor<Actor, typename Algorithm::loss, Algorithm::kl_as_loss>{
      m.actor, m.actor_optimizer, typename Algorithm::loss{},
      detail::schedule_of(o.ppo_mini_batch_size, n, o.ppo_micro_batch_size, o.use_dynamic_bsz, o.ppo_max_token_len,
                          o.ppo_epochs, o.shuffle, o.seed, o.grad_clip, o.progress_bars, o.actor_data_parallel),
      settings, o.critic_warmup});
  return verl::detail::make_pipeline_from_tuple<stages::prompt_fields>(
      std::tuple_cat(std::move(head), std::move(baseline), std::move(score), std::move(ref), std::move(values),
                     std::move(kl), std::move(adv), std::move(critic_update), std::move(actor_update)));
}

//! The type of make_rl_pipeline<Algorithm>(...).
template <class Algorithm, class Actor, class Critic, class Reference>
using rl_pipeline_t = decltype(make_rl_pipeline<Algorithm>(std::declval<const PipelineModels<Actor, Critic, Reference>&>(),
                                                           std::declval<stages::Scorer>(),
                                                           std::declval<const PPOOptions&>()));


namespace detail {
inline std::unique_ptr<torch::optim::AdamW> make_adamw(const std::vector<at::Tensor>& params,
                                                       const OptimizerOptions& o) {
  const auto options = torch::optim::AdamWOptions(o.lr).betas({o.beta1, o.beta2}).eps(o.eps).weight_decay(o.weight_decay);
  if (o.fused) return std::make_unique<FusedAdamW>(params, options);
  return std::make_unique<torch::optim::AdamW>(params, options);
}
}  // namespace detail

//! The PPO-family trainer for `Algorithm` (a verl::RLAlgorithm). The models are checked against the algorithm
//! at compile time by verl::ModelSet: a critic iff the estimator reads values, a reference model iff a KL is
//! regularised. Models are handles (copies share weights), held by value.
template <class Algorithm, class Actor, class Critic = no_critic, class Reference = no_reference>
class PPOTrainer {
  using Set = ModelSet<Algorithm, Actor, Critic, Reference>;

 public:
  using algorithm = Algorithm;
  using pipeline_type = rl_pipeline_t<Algorithm, Actor, Critic, Reference>;

  //! A fully sharded actor (verl::dist::make_fully_sharded_actor) brings its own synchroniser: it becomes
  //! options.actor_data_parallel (which must then be null or that one, else verl::ConfigError).
  PPOTrainer(Actor actor, Critic critic, Reference reference, stages::Scorer scorer, PPOOptions options)
      : actor_(std::move(actor)), critic_(std::move(critic)), reference_(std::move(reference)),
        scorer_(std::move(scorer)), options_(with_actor_synchronizer(std::move(options), actor_)),
        actor_optimizer_(detail::make_adamw(actor_.parameters(), options_.actor_optim)),
        critic_optimizer_(make_critic_optimizer(critic_, options_)),
        actor_scheduler_(*actor_optimizer_, options_.actor_optim.schedule(options_.total_training_steps)),
        pipeline_(make_rl_pipeline<Algorithm>(models(), scorer_, options_)) {
    options_.validate();
    if (critic_optimizer_) {
      critic_scheduler_.emplace(*critic_optimizer_, options_.critic_optim.schedule(options_.total_training_steps));
    }
  }
  PPOTrainer(const PPOTrainer&) = delete;  // stages point into the trainer
  PPOTrainer& operator=(const PPOTrainer&) = delete;

  //! One RL step on a batch of prompts; returns the step's metrics (verl's names, reduced by mean).
  std::map<std::string, double> step(const PromptBatch& prompts) { return step(pipeline_, prompts); }

  //! One RL step with a user's pipeline (e.g. default_pipeline() with a stage inserted).
  template <class Input, class... Stages>
  std::map<std::string, double> step(Pipeline<Input, Stages...>& pipeline, const PromptBatch& prompts) {
    StepContext ctx;
    ctx.step = ++global_step_;
    const double actor_lr = actor_scheduler_.last_lr(), critic_lr = critic_scheduler_ ? critic_scheduler_->last_lr() : 0;
    const auto start = std::chrono::steady_clock::now();
    auto out = run_on_this_rank(pipeline, prompts, ctx);
    last_batch_size_ = out.size();
    const std::chrono::duration<double> seconds = std::chrono::steady_clock::now() - start;
    ctx.record("timing_s/step", seconds.count());
    // verl steps a model's LR schedule once per update call (none during the critic warm-up for the actor).
    if (ctx.metrics.count("actor/pg_loss") != 0) {
      ctx.record("actor/lr", actor_lr);
      actor_scheduler_.step();
    }
    if (critic_scheduler_ && ctx.metrics.count("critic/vf_loss") != 0) {
      ctx.record("critic/lr", critic_lr);
      critic_scheduler_->step();
    }
    auto metrics = ctx.reduced();
    metrics["training/global_step"] = static_cast<double>(global_step_);
    add_batch_metrics(out, metrics);
    return metrics;
  }

  //! verl's fit loop: resume from the latest complete checkpoint under fo.checkpoint_dir (when fo.resume), then
  //! run steps up to fo.total_training_steps on batches from the data provider, recording every step's metrics
  //! in `registry` (its exporters write them), validating every test_freq steps and checkpointing every
  //! save_freq steps and at the end. `make_provider(resume_state)` builds the prompt source: resume_state is
  //! null for a fresh start, else the provider state saved in the checkpoint (verl::data::DataProvider's
  //! constructor argument); the provider's next() returns std::optional of a batch with `prompts`
  //! (verl::Prompts) and `items`. `validate(step)` (optional) returns validation metrics to record (see
  //! validate() below for verl's validation pass).
  //! Checkpoints hold the actor (and critic) in Hugging Face layout, their AdamW states, LR schedules, the
  //! KL controller, the CPU RNG, the data position, the step and the config text; resuming and running on gives
  //! bit-identical weights to an uninterrupted run (same threads, CPU).
  template <class MakeProvider>
  FitResult fit(MakeProvider&& make_provider, MetricsRegistry& registry, const FitOptions& fo,
                const std::function<std::map<std::string, double>(std::int64_t)>& validate = {}) {
    verl::detail::check<ConfigError>(fo.total_training_steps >= 1, "verl::trainer::PPOTrainer::fit: "
                                     "trainer.total_training_steps is ", fo.total_training_steps, ", expected >= 1");
    const bool checkpointing = fo.save_freq > 0 || fo.resume;
    verl::detail::check<ConfigError>(!(fo.save_freq > 0 && fo.checkpoint_dir.empty()), "verl::trainer::PPOTrainer::fit: "
                                     "trainer.save_freq is ", fo.save_freq, " but trainer.default_local_dir is empty");
    FitResult result;
    nlohmann::json data_state = nullptr;
    using Provider = std::remove_reference_t<decltype(*make_provider(nlohmann::json()))>;
    std::unique_ptr<Provider> provider;
    CheckpointContents parts;
    std::optional<CheckpointManager> manager;
    // A fully sharded actor: every rank gathers for each save (rank 0 writes) and slices after a restore.
    const auto collective = detail::collective_checkpoint_of(actor_, *actor_optimizer_);
    if (checkpointing && !fo.checkpoint_dir.empty()) {
      CheckpointOptions co;
      co.keep_last_n = fo.max_ckpt_to_keep;
      co.save_optimizer = fo.save_optimizer;
      co.save_training_state = fo.save_training_state;
      manager.emplace(fo.checkpoint_dir, co);
      register_checkpoint_parts(parts, provider, data_state, collective);
      if (!fo.config_text.empty()) parts.config_text(fo.config_text);
      if (fo.resume) {
        if (auto last = manager->resume()) {
          // A checkpoint saved with save_optimizer / save_training_state off resumes without those parts.
          if constexpr (detail::CheckpointsCollectively<Actor>) {
            collective->prepare_restore();
            try {
              result.not_restored = last->restore(parts, Checkpoint::Restore::what_was_saved);
            } catch (...) {
              collective->release();
              throw;
            }
            const bool optimizer_restored =
                std::find(result.not_restored.begin(), result.not_restored.end(), "optimizer `actor`") ==
                result.not_restored.end();
            if (optimizer_restored) {
              collective->scatter();
            } else {
              collective->release();
            }
          } else {
            result.not_restored = last->restore(parts, Checkpoint::Restore::what_was_saved);
          }
          global_step_ = last->step();
          result.resumed_from = last->step();
        }
      }
    }
    provider = make_provider(data_state);
    if (fo.val_before_train && validate && global_step_ == 0) record_and_commit(registry, 0, validate(0));
    result.first_step = global_step_ + 1;
    ProgressBarOptions bar_options;
    bar_options.total = fo.total_training_steps;
    bar_options.desc = "Training Progress";
    if (!fo.progress_bar) bar_options.show = ProgressBarOptions::Show::never;
    ProgressBar bar(bar_options);
    bar.advance(global_step_);
    while (global_step_ < fo.total_training_steps) {
      auto next = provider->next();
      if (!next) break;
      PromptBatch prompts(next->prompts.input_ids, next->prompts.attention_mask, next->prompts.position_ids,
                          std::move(next->items));
      auto metrics = step(prompts);
      const bool last = global_step_ == fo.total_training_steps;
      if (validate && fo.test_freq > 0 && (last || global_step_ % fo.test_freq == 0)) {
        for (const auto& [k, v] : validate(global_step_)) metrics[k] = v;
      }
      const bool writer = !options_.actor_data_parallel || options_.actor_data_parallel->rank() == 0;
      const bool due = manager && fo.save_freq > 0 && (last || global_step_ % fo.save_freq == 0);
      if (due && (writer || detail::CheckpointsCollectively<Actor>)) {
        const auto t0 = std::chrono::steady_clock::now();
        if constexpr (detail::CheckpointsCollectively<Actor>) {
          collective->gather();  // every rank
          try {
            if (writer) manager->save(global_step_, parts);
          } catch (...) {
            collective->release();
            throw;
          }
          collective->release();
          detail::barrier(*options_.actor_data_parallel);  // complete before any rank goes on
        } else {
          manager->save(global_step_, parts);
        }
        metrics["timing_s/save_checkpoint"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      }
      bar.set_postfix(MetricMap{{"reward", metrics.count("critic/score/mean") ? metrics.at("critic/score/mean") : 0.0}});
      bar.advance();
      record_and_commit(registry, global_step_, metrics);
      result.last_metrics = std::move(metrics);
    }
    result.last_step = global_step_;
    return result;
  }

  //! verl's validation pass (verl/trainer/validation.hpp): `params.n` responses per prompt of `provider` (until
  //! it returns nullopt), scored by this trainer's scorer, reported per data source as val-core/... and
  //! val-aux/... metrics. As fit's `validate` callback:
  //!
  //!     [&](std::int64_t) { auto val = make_val_provider(); return trainer.validate(*val, val_params).metrics; }
  template <class Provider>
  [[nodiscard]] ValidationResult validate(Provider& provider, const SamplingParams& params) {
    return run_validation(actor_, scorer_, provider, params);
  }

  //! A fresh copy of the default pipeline, bound to this trainer's models, to edit and pass to step().
  [[nodiscard]] pipeline_type default_pipeline() { return make_rl_pipeline<Algorithm>(models(), scorer_, options_); }

  //! The default pipeline with its Generate and Score stages wrapped in DAPO's dynamic sampling: groups whose
  //! scores are all equal are dropped and more prompts are pulled from `next_prompts` until
  //! `filter.train_batch_size` groups are kept.
  [[nodiscard]] auto dynamic_sampling_pipeline(std::function<std::optional<PromptBatch>()> next_prompts,
                                               const FilterGroupsOptions& filter) {
    static_assert(!stages::detail::needs_reward_baselines<typename Algorithm::estimator>(),
                  "verl::trainer::PPOTrainer::dynamic_sampling_pipeline: not available with ReMax's greedy baseline");
    auto p = default_pipeline();
    auto sub = make_pipeline<stages::prompt_fields>(std::get<stages::Generate<Actor>>(p.stages()),
                                                    std::get<stages::Score>(p.stages()));
    stages::DynamicSampling<decltype(sub), PromptBatch> sampling{
        std::move(sub), std::move(next_prompts), filter.train_batch_size, options_.rollout.n, filter.metric,
        filter.max_num_gen_batches, filter.pad_token_id};
    // Replace first, then remove: every intermediate pipeline is checked, and Score's fields must stay produced.
    return remove_stage<stages::Score>(replace_stage<stages::Generate<Actor>>(std::move(p), std::move(sampling)));
  }

  [[nodiscard]] Actor& actor() { return actor_; }
  [[nodiscard]] Critic& critic() { return critic_; }
  [[nodiscard]] Reference& reference() { return reference_; }
  [[nodiscard]] torch::optim::Optimizer& actor_optimizer() { return *actor_optimizer_; }
  [[nodiscard]] torch::optim::Optimizer* critic_optimizer() { return critic_optimizer_.get(); }
  [[nodiscard]] const PPOOptions& options() const { return options_; }
  [[nodiscard]] std::int64_t global_step() const { return global_step_; }
  [[nodiscard]] LRScheduler& actor_scheduler() { return actor_scheduler_; }
  [[nodiscard]] LRScheduler* critic_scheduler() { return critic_scheduler_ ? &*critic_scheduler_ : nullptr; }
  //! Restores the step counter (when resuming from a checkpoint).
  void set_global_step(std::int64_t step) { global_step_ = step; }

 private:
  //! The pipeline on the prompts (one process) or on this rank's contiguous chunk of them (data parallel),
  //! generating with the seed and uid offset the single process would use for this step.
  template <class Input, class... Stages>
  auto run_on_this_rank(Pipeline<Input, Stages...>& pipeline, const PromptBatch& prompts, StepContext& ctx) {
    auto* dp = options_.actor_data_parallel.get();
    if (dp == nullptr || dp->world_size() <= 1) return pipeline.run(prompts, ctx);
    const std::int64_t world = dp->world_size(), b = prompts.size();
    verl::detail::check<ConfigError>(b % world == 0, "verl::trainer::PPOTrainer::step: the batch has ", b,
                                     " prompts, expected a multiple of the data-parallel size ", world,
                                     " (verl asserts train_batch_size % dp_size == 0)");
    const auto local = prompts.slice(dp->rank() * (b / world), (dp->rank() + 1) * (b / world));
    constexpr bool has_generate = (std::is_same_v<Stages, stages::Generate<Actor>> || ...);
    if constexpr (has_generate) {
      auto& gen = std::get<stages::Generate<Actor>>(pipeline.stages());
      const std::int64_t uid_start = gen.next_uid;  // the call's seed is params.seed + next_uid, as one process
      auto out = pipeline.run(local, ctx);
      gen.next_uid = uid_start + b;  // every rank advances by the whole batch, as the single process does
      return out;
    } else {
      return pipeline.run(local, ctx);
    }
  }

  static void record_and_commit(MetricsRegistry& registry, std::int64_t step, const std::map<std::string, double>& m) {
    for (const auto& [k, v] : m) registry.record(k, v);
    registry.commit(step);
  }

  // What a checkpoint holds; the data position is read into `data_state` at restore (the provider is built
  // from it afterwards) and taken from `provider` at save.
  template <class Provider, class Collective>
  void register_checkpoint_parts(CheckpointContents& parts, std::unique_ptr<Provider>& provider,
                                 nlohmann::json& data_state, const std::shared_ptr<Collective>& collective) {
    if constexpr (detail::CheckpointsCollectively<Actor>) {
      detail::add_collective_parts("actor", collective, parts, /*with_optimizer=*/true);
    } else {
      add_model_parts("actor", actor_, *actor_optimizer_, parts);
    }
    parts.scheduler("actor", actor_scheduler_);
    if constexpr (Set::has_critic) {
      add_model_parts("critic", critic_, *critic_optimizer_, parts);
      parts.scheduler("critic", *critic_scheduler_);
    }
    parts.state(
        "trainer", [this] { return nlohmann::json{{"global_step", global_step_}, {"pipeline", pipeline_state()}}; },
        [this](const nlohmann::json& s) { load_pipeline_state(s.at("pipeline")); });
    parts.data_position([&provider] { return provider ? provider->state() : nlohmann::json(); },
                        [&data_state](const nlohmann::json& s) { data_state = s; });
  }

  template <class M>
  static void add_model_parts(const std::string& name, M& model, torch::optim::Optimizer& optimizer,
                              CheckpointContents& parts) {
    if constexpr (requires(const std::filesystem::path& p) {
                    model.save(p);
                    model.load_weights(p);
                    model.named_parameters();
                  }) {
      parts.model(name, [&model](const std::filesystem::path& p) { model.save(p); },
                  [&model](const std::filesystem::path& p) { model.load_weights(p); });
      parts.optimizer(name, optimizer, model.named_parameters());
    } else {
      throw ConfigError(verl::detail::concat_message(
          "verl::trainer::PPOTrainer::fit: checkpointing needs the ", name, " model to have save(dir), "
          "load_weights(dir) and named_parameters() (verl::models::Actor and Critic do)"));
    }
  }

  // State of the default pipeline that a resume must restore: the KL controller and the uid counter.
  nlohmann::json pipeline_state() {
    nlohmann::json s = nlohmann::json::object();
    s["next_uid"] = std::get<0>(pipeline_.stages()).next_uid;
    if constexpr (Algorithm::kl_in_reward) {
      std::visit([&](const auto& c) { s["kl_coef"] = c.value; }, kl_stage().controller);
    }
    return s;
  }
  void load_pipeline_state(const nlohmann::json& s) {
    std::get<0>(pipeline_.stages()).next_uid = s.at("next_uid").template get<std::int64_t>();
    if constexpr (Algorithm::kl_in_reward) {
      std::visit([&](auto& c) { c.value = s.at("kl_coef").template get<double>(); }, kl_stage().controller);
    }
  }
  stages::RewardKLPenalty& kl_stage() { return pipeline_.template stage<stages::RewardKLPenalty>(); }

  // verl's compute_data_metrics, compute_timing_metrics and compute_throughout_metrics on the step's final batch.
  template <class B>
  static void add_batch_metrics(const B& out, std::map<std::string, double>& metrics) {
    using namespace verl::fields;
    if constexpr (BatchWith<B, token_level_scores, token_level_rewards, advantages, returns, response_mask,
                            attention_mask, responses>) {
      DataMetricsInputs in;
      in.token_level_scores = out.template get<token_level_scores>();
      in.token_level_rewards = out.template get<token_level_rewards>();
      in.advantages = out.template get<advantages>();
      in.returns = out.template get<returns>();
      if constexpr (B::template has<values>) in.values = out.template get<values>();
      in.response_mask = out.template get<response_mask>();
      in.attention_mask = out.template get<attention_mask>();
      for (const auto& [k, v] : compute_data_metrics(in, B::template has<values>)) metrics[k] = v;
      std::map<std::string, double> timing;
      for (const auto& [k, v] : metrics)
        if (k.rfind("timing_s/", 0) == 0) timing[k.substr(9)] = v;
      const auto width = out.template get<responses>().size(1);
      for (const auto& [k, v] : compute_timing_metrics(timing, token_counts(in.attention_mask, width))) metrics[k] = v;
      for (const auto& [k, v] : compute_throughout_metrics(timing, global_token_num(in.attention_mask), 1))
        metrics[k] = v;
    }
  }

  //! `o` with the actor's own synchroniser when the actor is fully sharded.
  static PPOOptions with_actor_synchronizer(PPOOptions o, const Actor& actor) {
    o.actor_data_parallel =
        detail::policy_synchronizer("verl::trainer::PPOTrainer", actor, std::move(o.actor_data_parallel));
    return o;
  }

  static std::unique_ptr<torch::optim::AdamW> make_critic_optimizer(Critic& critic, const PPOOptions& o) {
    if constexpr (Set::has_critic) return detail::make_adamw(critic.parameters(), o.critic_optim);
    else return nullptr;
  }

  PipelineModels<Actor, Critic, Reference> models() {
    return {&actor_, &critic_, &reference_, actor_optimizer_.get(), critic_optimizer_.get()};
  }

  Actor actor_;
  Critic critic_;
  Reference reference_;
  stages::Scorer scorer_;
  PPOOptions options_;
  std::unique_ptr<torch::optim::AdamW> actor_optimizer_;
  std::unique_ptr<torch::optim::AdamW> critic_optimizer_;
  LRScheduler actor_scheduler_;
  std::optional<LRScheduler> critic_scheduler_;
  pipeline_type pipeline_;
  std::int64_t global_step_ = 0;
  std::int64_t last_batch_size_ = 0;
};

}  // namespace verl::trainer
