#pragma once
//! \file
//! verl::trainer::DPOTrainer: direct preference optimisation over an offline DPODataset, with the semantics
//! of Hugging Face TRL 0.19.1's DPOTrainer (trl/trainer/dpo_trainer.py: concatenated_forward,
//! get_batch_loss_metrics, compute_ref_log_probs, precompute_ref_log_probs) and the loss of verl::pref::dpo_loss.
//!
//!     using verl::models::Actor, verl::models::Reference;
//!     verl::trainer::DPOOptions o;                          // TRL's DPOConfig names: beta, loss_type, ...
//!     o.beta = 0.1;
//!     verl::trainer::DPOTrainer<Actor, Reference> trainer(actor, Reference::copy_of(actor), o);
//!     auto metrics = trainer.step(pair_batch);              // {"loss", "rewards/margins", "grad_norm", ...}
//!     trainer.fit(provider, 100);                           // provider: verl::data::DataProvider<DPODataset>
//!
//! With checkpoints, resume and validation (verl's SFT loop, offline_common.hpp; from a YAML config:
//! offline_from_config.hpp):
//!
//!     auto result = trainer.fit([&](const nlohmann::json& resume) {        // null or the saved data position
//!       return std::make_unique<verl::data::DataProvider<verl::data::DPODataset>>(pairs, po, resume);
//!     }, registry, fit_options, [&](std::int64_t) {
//!       verl::data::DataProvider<verl::data::DPODataset> val(val_pairs, val_po);  // one epoch, unshuffled
//!       return trainer.validate(val);                                      // eval_loss, eval_rewards/margins, ...
//!     });
//!
//! Evaluation (TRL's prediction_step / evaluate): evaluate(batch) is a step's metrics without an update (the
//! reference log-probs are computed for the batch, never read from the training cache); validate(provider)
//! reports TRL's eval names: eval_loss (the mean over the evaluation examples of their batches' losses, as
//! transformers' evaluation_loop repeats each batch loss per example), and eval_rewards/chosen,
//! eval_rewards/rejected, eval_rewards/accuracies, eval_rewards/margins, eval_logps/chosen,
//! eval_logps/rejected, eval_nll_loss (rpo_alpha, CPO, ORPO), eval_log_odds_ratio / eval_log_odds_chosen
//! (ORPO): the mean over the batches of each batch's mean, as TRL's log() averages its stored metrics.
//!
//! Reference-free training (TRL's reference_free, or no reference model at all): DPOTrainer<Actor,
//! verl::no_reference>: the reference log-probs are zeros, so every loss type runs without a reference model
//! ("a reference that assigns equal probability to all responses").
//!
//! One step (one optimizer update) over a PairBatch of B pairs:
//! 1. The batch is cut into micro-batches of per_device_train_batch_size pairs. For each, the chosen and
//!    rejected sequences are stacked into one (2b,T) forward (TRL's concatenated_forward) and the sequence
//!    log-probs are the sums of the per-token log-probs over the completion tokens (loss_type ipo: their mean
//!    over the completion tokens, as TRL divides by loss_mask.sum(-1)).
//! 2. Reference log-probs: the same computation with the reference model under no-grad, per micro-batch; or,
//!    with precompute_ref_log_probs, looked up in a cache filled once over the whole dataset before training
//!    (fit() fills it; memory: two floats per example). Without a reference model, zeros.
//! 3. loss = sum over pairs of dpo_loss(...).losses / B (+ rpo_alpha * the chosen tokens' NLL, summed over the
//!    step's chosen completion tokens / their count), back-propagated per micro-batch; the gradient is that of
//!    the whole step's loss whatever the micro-batch size (see offline_common.hpp).
//! 4. AdamW step with gradient-norm clipping at max_grad_norm (skipped when the norm is not finite), then the
//!    learning-rate schedule advances.
//!
//! Metrics (TRL's names, means over the step's pairs): loss, rewards/chosen, rewards/rejected,
//! rewards/accuracies (chosen reward > rejected reward), rewards/margins, logps/chosen, logps/rejected,
//! nll_loss (with rpo_alpha), grad_norm, learning_rate (the rate this update used, as transformers logs it).
//!
//! CPOTrainer<Policy> (TRL's CPOTrainer: sigmoid, hinge, ipo, simpo; SimPO = loss_type simpo with
//! cpo_alpha 0) and ORPOTrainer<Policy> (TRL's ORPOTrainer) are the same trainer with another objective
//! (PairPreferenceTrainer<Policy, Reference, Objective>): no reference model; CPO: mean(cpo_loss) +
//! cpo_alpha * NLL on summed (ipo, simpo: averaged) log-probs; ORPO: NLL - mean(beta * logsig(log odds)) on
//! averaged log-probs, with the extra metrics log_odds_ratio and log_odds_chosen. The NLL is the token mean
//! of the chosen completions' negative log-probs over the step.
//!
//! Deliberate differences from TRL 0.19.1: TRL's `logits/chosen` and `logits/rejected` metrics (mean logits)
//! are not reported (the actor never materialises the logits); use_weighting (WPO), ld_alpha (LD-DPO),
//! bco_pair, sync_ref_model and padding_free are not provided; the NLL (rpo_alpha, CPO, ORPO) counts every chosen completion
//! token, while TRL's cross_entropy(ignore_index=0) also drops completion tokens whose id is 0. TRL 0.19.1 has a
//! single loss_type (no loss lists or loss_weights; those came in later releases).

#include "verl/algos/algorithm.hpp"
#include "verl/algos/pref/dpo.hpp"
#include "verl/algos/pref/orpo.hpp"
#include "verl/algos/pref/simpo.hpp"
#include "verl/concepts/reference_model.hpp"
#include "verl/data/data_provider.hpp"
#include "verl/data/preference_dataset.hpp"
#include "verl/trainer/offline_common.hpp"

#include <ATen/ops/tensor.h>
#include <ATen/ops/zeros.h>
#include <c10/core/GradMode.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <concepts>
#include <functional>
#include <map>
#include <string>
#include <optional>
#include <span>
#include <type_traits>
#include <utility>

namespace verl::trainer {

//! DPOTrainer options: TRL 0.19.1 DPOConfig's names and defaults (plus TrainingArguments' optimisation ones).
struct DPOOptions : OfflineTrainingArguments {
  double beta = 0.1;
  pref::DPOLossType loss_type = pref::DPOLossType::sigmoid;  //!< parse_dpo_loss_type("ipo") etc. from TRL's name
  double label_smoothing = 0.0;
  bool reference_free = false;          //!< ignore the reference in the logits (a reference model is still run)
  pref::FDivergence f_divergence_type = pref::FDivergence::reverse_kl;
  double f_alpha_divergence_coef = 1.0;
  double discopop_tau = 0.05;
  std::optional<double> rpo_alpha;      //!< weight of the NLL of the chosen completions (RPO); unset = none
  bool precompute_ref_log_probs = false;  //!< reference log-probs once over the dataset, before training
  std::optional<std::int64_t> precompute_ref_batch_size;  //!< pairs per precompute forward; default per_device_train_batch_size

  //! The verl::pref::dpo_loss configuration these options select.
  [[nodiscard]] pref::DPOLossConfig loss_config() const {
    pref::DPOLossConfig c;
    c.loss_type = loss_type;
    c.beta = beta;
    c.label_smoothing = label_smoothing;
    c.reference_free = reference_free;
    c.discopop_tau = discopop_tau;
    c.f_divergence_type = f_divergence_type;
    c.f_alpha_divergence_coef = f_alpha_divergence_coef;
    return c;
  }

  //! Throws verl::ConfigError naming the first field out of range.
  void validate() const {
    OfflineTrainingArguments::validate("verl::trainer::DPOOptions");
    verl::detail::check<ConfigError>(!precompute_ref_batch_size || *precompute_ref_batch_size >= 1,
                                     "verl::trainer::DPOOptions: precompute_ref_batch_size is ",
                                     precompute_ref_batch_size.value_or(0), ", expected >= 1 or unset");
    verl::detail::check<ConfigError>(label_smoothing >= 0 && label_smoothing <= 0.5,
                                     "verl::trainer::DPOOptions: label_smoothing is ", label_smoothing,
                                     ", expected [0, 0.5]");
  }
};

//! Reference log-probs of pairs: per-sequence (B,) chosen and rejected.
struct PairLogps {
  at::Tensor chosen;    // (B,) float
  at::Tensor rejected;  // (B,) float
};

//! CPOTrainer options: TRL 0.19.1 CPOConfig's names and defaults. SimPO is loss_type simpo with cpo_alpha 0.
struct CPOOptions : OfflineTrainingArguments {
  double beta = 0.1;
  pref::CPOLossType loss_type = pref::CPOLossType::sigmoid;  //!< parse_cpo_loss_type("simpo") etc.
  double label_smoothing = 0.0;
  double cpo_alpha = 1.0;    //!< weight of the chosen completions' NLL (BC regulariser)
  double simpo_gamma = 0.5;  //!< SimPO's target reward margin
  double alpha = 0.0;        //!< AlphaPO reward shaping (0 = off)

  [[nodiscard]] pref::CPOLossConfig loss_config() const {
    return {loss_type, beta, label_smoothing, simpo_gamma, alpha};
  }
  void validate() const { OfflineTrainingArguments::validate("verl::trainer::CPOOptions"); }
};

//! ORPOTrainer options: TRL 0.19.1 ORPOConfig's names and defaults (beta is the paper's lambda).
struct ORPOOptions : OfflineTrainingArguments {
  double beta = 0.1;
  void validate() const { OfflineTrainingArguments::validate("verl::trainer::ORPOOptions"); }
};

//! What a pair objective returns for a micro-batch of n pairs.
struct PairObjectiveOutput {
  at::Tensor losses;            //!< (n,) per-pair terms whose mean over the step is the loss (before the NLL)
  at::Tensor chosen_rewards;    //!< (n,) detached
  at::Tensor rejected_rewards;  //!< (n,) detached
  std::map<std::string, double> extra;  //!< metrics that are means over the micro-batch's pairs
};

//! The objectives of PairPreferenceTrainer: how sequence log-probs are formed (sums, or per-token means),
//! whether a reference model is read, the weight of the chosen completions' NLL, and the per-pair loss.
struct DPOObjective {
  using options_type = DPOOptions;
  static constexpr const char* name = "verl::trainer::DPOTrainer";
  static constexpr bool reads_reference = true;
  static bool average_log_probs(const DPOOptions& o) { return o.loss_type == pref::DPOLossType::ipo; }
  static std::optional<double> nll_weight(const DPOOptions& o) { return o.rpo_alpha; }
  static PairObjectiveOutput compute(const at::Tensor& pc, const at::Tensor& pr, const at::Tensor& rc,
                                     const at::Tensor& rr, const DPOOptions& o) {
    auto out = pref::dpo_loss(pc, pr, rc, rr, o.loss_config());
    return {out.losses, out.chosen_rewards, out.rejected_rewards, {}};
  }
};

//! TRL 0.19.1 CPOTrainer: loss = mean(cpo_loss) + cpo_alpha * NLL; ipo and simpo average the log-probs.
struct CPOObjective {
  using options_type = CPOOptions;
  static constexpr const char* name = "verl::trainer::CPOTrainer";
  static constexpr bool reads_reference = false;
  static bool average_log_probs(const CPOOptions& o) {
    return o.loss_type == pref::CPOLossType::ipo || o.loss_type == pref::CPOLossType::simpo;
  }
  static std::optional<double> nll_weight(const CPOOptions& o) { return o.cpo_alpha; }
  static PairObjectiveOutput compute(const at::Tensor& pc, const at::Tensor& pr, const at::Tensor&,
                                     const at::Tensor&, const CPOOptions& o) {
    auto out = pref::cpo_loss(pc, pr, o.loss_config());
    return {out.losses, out.chosen_rewards, out.rejected_rewards, {}};
  }
};

//! TRL 0.19.1 ORPOTrainer: loss = NLL - mean(beta * logsig(log odds ratio)), on averaged log-probs.
struct ORPOObjective {
  using options_type = ORPOOptions;
  static constexpr const char* name = "verl::trainer::ORPOTrainer";
  static constexpr bool reads_reference = false;
  static bool average_log_probs(const ORPOOptions&) { return true; }
  static std::optional<double> nll_weight(const ORPOOptions&) { return 1.0; }
  static PairObjectiveOutput compute(const at::Tensor& pc, const at::Tensor& pr, const at::Tensor&,
                                     const at::Tensor&, const ORPOOptions& o) {
    auto out = pref::odds_ratio_loss(pc, pr, {o.beta});
    return {out.losses.neg(), out.chosen_rewards, out.rejected_rewards,
            {{"log_odds_ratio", out.log_odds_ratio.template item<double>()},
             {"log_odds_chosen", out.log_odds_chosen.template item<double>()}}};
  }
};

//! The paired-preference trainer behind DPOTrainer, CPOTrainer (SimPO) and ORPOTrainer. `Policy` is trained
//! (it must satisfy ReferenceModel, i.e. score log-probs, and expose `parameters()`); `Reference` is a
//! verl::ReferenceModel or verl::no_reference (required for CPO/ORPO, which read no reference). Models are
//! handles (copies share weights), held by value.
template <class Policy, class Reference, class Objective>
class PairPreferenceTrainer {
  static_assert(check_reference_model<Policy>());
  static_assert(requires(const Policy& p) { { p.parameters() } -> std::convertible_to<std::vector<at::Tensor>>; },
                "verl::trainer: the trained policy needs `parameters()` returning std::vector<at::Tensor> (the "
                "tensors AdamW updates)");
  static_assert(verl::detail::check_optional_reference<Reference>());
  static_assert(Objective::reads_reference || std::is_same_v<Reference, no_reference>,
                "verl::trainer::CPOTrainer / ORPOTrainer: these losses read no reference model; pass "
                "verl::no_reference");

 public:
  using options_type = typename Objective::options_type;
  static constexpr bool has_reference = !std::is_same_v<Reference, no_reference>;

  PairPreferenceTrainer(Policy policy, Reference reference, options_type options)
      : policy_(std::move(policy)), reference_(std::move(reference)), options_(std::move(options)),
        optimizer_((options_.validate(), policy_.parameters()), options_) {}

  //! One optimizer step over `batch`; reference log-probs computed now (or zeros without a reference model).
  std::map<std::string, double> step(const data::PairBatch& batch) { return update({&batch, 1}, {}); }

  //! One optimizer step with the reference log-probs given (e.g. from your own cache): (B,) each.
  std::map<std::string, double> step(const data::PairBatch& batch, const PairLogps& reference) {
    const std::vector<PairLogps> refs{reference};
    return update({&batch, 1}, refs);
  }

  //! One optimizer step over `batch` whose rows are dataset examples `indices`: the precomputed reference
  //! log-probs are used when they exist (precompute_reference_log_probs), else they are computed now.
  std::map<std::string, double> step(const data::PairBatch& batch, std::span<const std::size_t> indices) {
    if (!ref_cache_) return step(batch);
    const std::vector<PairLogps> refs{cached(indices)};
    return update({&batch, 1}, refs);
  }

  //! `steps` optimizer steps, each over gradient_accumulation_steps batches of `provider` (fewer when it runs
  //! out; it then stops). With precompute_ref_log_probs the reference log-probs of the whole dataset are
  //! computed first (once per trainer). `on_step` (optional) sees each step's metrics. Returns them all.
  std::vector<std::map<std::string, double>> fit(
      data::DataProvider<data::DPODataset>& provider, std::int64_t steps,
      const std::function<void(std::int64_t, const std::map<std::string, double>&)>& on_step = {}) {
    std::vector<std::map<std::string, double>> history;
    for (std::int64_t s = 0; s < steps; ++s) {
      auto m = train_step(provider);
      if (!m) break;
      history.push_back(std::move(*m));
      if (on_step) on_step(global_step_, history.back());
    }
    return history;
  }

  //! verl's fit loop (offline_common.hpp): resumes from a checkpoint (fo.resume / fo.resume_from_path), runs
  //! steps up to fo.total_training_steps, each over gradient_accumulation_steps provider batches, recording
  //! their metrics in `registry`, validating every fo.test_freq steps and at the last step (`validate(step)`,
  //! e.g. this trainer's validate(provider)), saving every fo.save_freq steps and at the last step.
  //! `make_provider(resume_state)` returns a std::unique_ptr to a provider of PairBatch (DataProvider<DPODataset>)
  //! built from that state (null: from the start). With precompute_ref_log_probs the cache is filled from the
  //! provider's dataset before the first step (also after a resume: the reference is frozen).
  template <class MakeProvider>
    requires std::invocable<MakeProvider&, const nlohmann::json&>
  OfflineFitResult fit(MakeProvider&& make_provider, MetricsRegistry& registry, const OfflineFitOptions& fo,
                       const detail::OfflineValidateFn& validate = {}) {
    return detail::run_offline_fit(
        Objective::name, policy_, optimizer_, global_step_, std::forward<MakeProvider>(make_provider),
        [this](auto& provider) { return train_step(provider); }, registry, fo, validate);
  }

  //! One batch's metrics (TRL's names, as step() reports them, without grad_norm / learning_rate) with no
  //! update: TRL's prediction_step. The reference log-probs are computed for the batch.
  [[nodiscard]] std::map<std::string, double> evaluate(const data::PairBatch& batch) {
    return compute({&batch, 1}, {}, false);
  }

  //! TRL's evaluate over `provider`'s batches (until it returns nullopt): eval_loss weighted by the batches'
  //! pairs, every other metric as `eval_<name>`, the mean of the batches' values (see the file comment).
  template <class Provider>
  [[nodiscard]] std::map<std::string, double> validate(Provider& provider) {
    double loss_sum = 0;
    std::int64_t pairs = 0;
    std::map<std::string, std::pair<double, std::int64_t>> sums;  // name -> (sum over batches, batches)
    while (auto b = provider.next()) {
      const auto m = evaluate(*b);
      const auto n = b->chosen.batch_size();
      loss_sum += m.at("loss") * static_cast<double>(n);
      pairs += n;
      for (const auto& [k, v] : m) {
        if (k == "loss") continue;
        sums[k].first += v;
        sums[k].second += 1;
      }
    }
    verl::detail::check<InputError>(pairs > 0, Objective::name, "::validate: the validation provider gave no pair");
    std::map<std::string, double> out{{"eval_loss", loss_sum / static_cast<double>(pairs)}};
    for (const auto& [k, s] : sums) out["eval_" + k] = s.first / static_cast<double>(s.second);
    return out;
  }

  //! TRL's precompute_ref_log_probs: the reference model scores every example of `dataset` once, in batches
  //! of precompute_ref_batch_size; later steps given example indices read the cache. Memory: 2 x N floats.
  void precompute_reference_log_probs(const data::DPODataset& dataset) {
    const auto n = dataset.size();
    auto chunk = static_cast<std::size_t>(options_.per_device_train_batch_size);
    if constexpr (requires { options_.precompute_ref_batch_size; })
      chunk = static_cast<std::size_t>(options_.precompute_ref_batch_size.value_or(options_.per_device_train_batch_size));
    std::vector<at::Tensor> chosen, rejected;
    for (std::size_t begin = 0; begin < n; begin += chunk) {
      std::vector<std::size_t> idx;
      for (std::size_t i = begin; i < std::min(n, begin + chunk); ++i) idx.push_back(i);
      const auto r = reference_log_probs(dataset.collate(idx));
      chosen.push_back(r.chosen);
      rejected.push_back(r.rejected);
    }
    ref_cache_ = PairLogps{at::cat(chosen, 0), at::cat(rejected, 0)};  // (N,) each
  }

  //! The reference per-sequence log-probs of `batch` (no-grad), as the loss reads them (ipo: per-token means);
  //! zeros without a reference model.
  [[nodiscard]] PairLogps reference_log_probs(const data::PairBatch& batch) {
    const c10::AutoGradMode no_grad(false);
    const auto b = batch.chosen.batch_size();
    if constexpr (!has_reference) {
      const auto z = at::zeros({b}, at::TensorOptions().dtype(at::kFloat));  // (B,)
      return {z, z.clone()};
    } else {
      const std::int64_t micro = options_.per_device_train_batch_size;
      std::vector<at::Tensor> c, r;
      for (std::int64_t begin = 0; begin < b; begin += micro) {
        const auto n = std::min(micro, b - begin);
        const auto seq = sequence_logps(reference_, batch, begin, n).first;  // (2n,)
        c.push_back(seq.narrow(0, 0, n));
        r.push_back(seq.narrow(0, n, n));
      }
      return {at::cat(c, 0), at::cat(r, 0)};
    }
  }

  //! The policy's per-sequence log-probs of `batch` (no-grad), as the loss reads them.
  [[nodiscard]] PairLogps policy_log_probs(const data::PairBatch& batch) {
    const c10::AutoGradMode no_grad(false);
    const auto b = batch.chosen.batch_size();
    const auto seq = sequence_logps(policy_, batch, 0, b).first;  // (2B,)
    return {seq.narrow(0, 0, b), seq.narrow(0, b, b)};
  }

  //! The cached reference log-probs (precompute_reference_log_probs), if computed.
  [[nodiscard]] const std::optional<PairLogps>& reference_cache() const { return ref_cache_; }

  [[nodiscard]] Policy& policy() { return policy_; }
  [[nodiscard]] Reference& reference() { return reference_; }
  [[nodiscard]] OfflineOptimizer& optimizer() { return optimizer_; }
  [[nodiscard]] const options_type& options() const { return options_; }
  [[nodiscard]] std::int64_t global_step() const { return global_step_; }
  //! Restores the step counter (when resuming from a checkpoint).
  void set_global_step(std::int64_t step) { global_step_ = step; }

 private:
  //! Sequence log-probs (2n,) of rows [begin, begin+n) (chosen then rejected) and the per-token ones (2n,R).
  template <class Model>
  std::pair<at::Tensor, at::Tensor> sequence_logps(Model& model, const data::PairBatch& batch, std::int64_t begin,
                                                   std::int64_t n) const {
    const auto tb = detail::stack_rows(detail::rows_of(batch.chosen, begin, n), detail::rows_of(batch.rejected, begin, n));
    const auto mask = at::cat({batch.chosen_mask.narrow(0, begin, n), batch.rejected_mask.narrow(0, begin, n)}, 0);  // (2n,R)
    const auto logp = detail::token_log_probs(model, tb);  // (2n,R)
    auto seq = detail::masked_row_sum(logp, mask);         // (2n,)
    if (Objective::average_log_probs(options_)) seq = seq.div(mask.sum(-1).to(seq.scalar_type()));
    return {seq, logp};
  }

  PairLogps cached(std::span<const std::size_t> indices) const {
    std::vector<std::int64_t> idx(indices.begin(), indices.end());
    for (const auto i : idx)
      verl::detail::check<InputError>(i >= 0 && i < ref_cache_->chosen.size(0), Objective::name, ": example "
                                      "index ", i, " is outside the precomputed reference cache of ",
                                      ref_cache_->chosen.size(0), " examples");
    const auto t = at::tensor(idx, at::kLong);  // (B,)
    return {ref_cache_->chosen.index_select(0, t), ref_cache_->rejected.index_select(0, t)};
  }

  //! One optimizer step over gradient_accumulation_steps batches of `provider` (nullopt when it has none left);
  //! the precomputed reference log-probs (filled now if asked for and missing) are looked up by the rows'
  //! dataset indices.
  template <class Provider>
  std::optional<std::map<std::string, double>> train_step(Provider& provider) {
    if constexpr (requires { options_.precompute_ref_log_probs; })
      if (options_.precompute_ref_log_probs && !ref_cache_) precompute_reference_log_probs(provider.dataset());
    std::vector<data::PairBatch> batches;
    std::vector<PairLogps> refs;
    for (std::int64_t g = 0; g < options_.gradient_accumulation_steps; ++g) {
      auto b = provider.next();
      if (!b) break;
      if (ref_cache_) {
        verl::detail::check<InputError>(b->indices.size() == static_cast<std::size_t>(b->chosen.batch_size()),
                                        Objective::name, ": a PairBatch without dataset indices cannot read the "
                                        "precomputed reference log-probs");
        refs.push_back(cached(b->indices));
      }
      batches.push_back(std::move(*b));
    }
    if (batches.empty()) return std::nullopt;
    return update(batches, refs);
  }

  //! One optimizer step over `batches` (refs: one per batch, or empty to compute them).
  std::map<std::string, double> update(std::span<const data::PairBatch> batches, std::span<const PairLogps> refs) {
    optimizer_.zero_grad();
    auto m = compute(batches, refs, true);
    const auto step = optimizer_.step();
    ++global_step_;
    m["grad_norm"] = step.grad_norm;
    m["learning_rate"] = step.lr_used;
    m["step"] = static_cast<double>(global_step_);
    return m;
  }

  //! The loss and metrics of `batches` as one step; with `train`, the gradient of the step's loss is
  //! accumulated (micro-batch by micro-batch), else everything runs under no-grad.
  std::map<std::string, double> compute(std::span<const data::PairBatch> batches, std::span<const PairLogps> refs,
                                        bool train) {
    const auto nll_weight = Objective::nll_weight(options_);
    std::int64_t total_pairs = 0, total_chosen_tokens = 0;
    for (const auto& b : batches) {
      verl::detail::check<ShapeError>(b.chosen.batch_size() == b.rejected.batch_size() &&
                                          b.chosen_mask.size(0) == b.chosen.batch_size(),
                                      Objective::name, ": a PairBatch has ", b.chosen.batch_size(),
                                      " chosen and ", b.rejected.batch_size(), " rejected rows; expected equal");
      total_pairs += b.chosen.batch_size();
      total_chosen_tokens += b.chosen_mask.ne(0).sum().template item<std::int64_t>();
    }
    verl::detail::check<InputError>(total_pairs > 0, Objective::name, "::step: the batch has no pair");
    const c10::AutoGradMode grad_on(train);
    std::vector<at::Tensor> pcs, prs, crs, rrs;
    double loss_sum = 0, nll_sum = 0;
    std::map<std::string, double> extra_sums;
    const std::int64_t micro = options_.per_device_train_batch_size;
    for (std::size_t k = 0; k < batches.size(); ++k) {
      const auto& batch = batches[k];
      const auto b = batch.chosen.batch_size();
      const auto given = refs.empty() ? std::optional<PairLogps>{} : std::optional<PairLogps>{refs[k]};
      if (given)
        verl::detail::check<ShapeError>(given->chosen.dim() == 1 && given->chosen.size(0) == b &&
                                            given->rejected.dim() == 1 && given->rejected.size(0) == b,
                                        Objective::name, "::step: the reference log-probs must be (", b,
                                        ",) each, got ", given->chosen.sizes(), " and ", given->rejected.sizes());
      for (std::int64_t begin = 0; begin < b; begin += micro) {
        const auto n = std::min(micro, b - begin);
        const auto [seq, logp] = sequence_logps(policy_, batch, begin, n);  // (2n,), (2n,R)
        const auto pc = seq.narrow(0, 0, n), pr = seq.narrow(0, n, n);      // (n,)
        at::Tensor rc, rr;                                                  // (n,) or undefined
        if (given) {
          rc = given->chosen.narrow(0, begin, n).to(pc.scalar_type());
          rr = given->rejected.narrow(0, begin, n).to(pc.scalar_type());
        } else if constexpr (has_reference && Objective::reads_reference) {
          const c10::AutoGradMode no_grad(false);
          const auto ref = sequence_logps(reference_, batch, begin, n).first;  // (2n,)
          rc = ref.narrow(0, 0, n);
          rr = ref.narrow(0, n, n);
        }
        const auto out = Objective::compute(pc, pr, rc, rr, options_);
        auto loss = out.losses.sum().div(static_cast<double>(total_pairs));  // () share of the step's mean
        for (const auto& [name, value] : out.extra) extra_sums[name] += value * static_cast<double>(n);
        if (nll_weight) {
          const auto mask = batch.chosen_mask.narrow(0, begin, n);                      // (n,R)
          const auto nll = detail::masked_row_sum(logp.narrow(0, 0, n), mask).sum().neg()
                               .div(static_cast<double>(std::max<std::int64_t>(1, total_chosen_tokens)));  // ()
          nll_sum += nll.template item<double>();
          loss = loss.add(nll.mul(*nll_weight));
        }
        if (train) loss.backward();
        loss_sum += loss.template item<double>();
        pcs.push_back(pc.detach());
        prs.push_back(pr.detach());
        crs.push_back(out.chosen_rewards);
        rrs.push_back(out.rejected_rewards);
      }
    }
    const auto chosen_rewards = at::cat(crs, 0), rejected_rewards = at::cat(rrs, 0);  // (B,)
    std::map<std::string, double> m;
    m["loss"] = loss_sum;
    m["rewards/chosen"] = detail::mean_of(chosen_rewards);
    m["rewards/rejected"] = detail::mean_of(rejected_rewards);
    m["rewards/accuracies"] = detail::mean_of(chosen_rewards.gt(rejected_rewards).to(at::kFloat));
    m["rewards/margins"] = detail::mean_of(chosen_rewards.sub(rejected_rewards));
    m["logps/chosen"] = detail::mean_of(at::cat(pcs, 0));
    m["logps/rejected"] = detail::mean_of(at::cat(prs, 0));
    if (nll_weight) m["nll_loss"] = nll_sum;
    for (const auto& [name, sum] : extra_sums) m[name] = sum / static_cast<double>(total_pairs);
    return m;
  }

  Policy policy_;
  Reference reference_;
  options_type options_;
  OfflineOptimizer optimizer_;
  std::optional<PairLogps> ref_cache_;
  std::int64_t global_step_ = 0;
};

//! DPO (TRL's DPOTrainer); see the file comment.
template <class Policy, class Reference = no_reference>
using DPOTrainer = PairPreferenceTrainer<Policy, Reference, DPOObjective>;

//! CPO and SimPO (TRL's CPOTrainer; SimPO: loss_type simpo, cpo_alpha 0): reference-free.
template <class Policy>
using CPOTrainer = PairPreferenceTrainer<Policy, no_reference, CPOObjective>;

//! ORPO (TRL's ORPOTrainer): the chosen completions' NLL minus the odds-ratio term; reference-free.
template <class Policy>
using ORPOTrainer = PairPreferenceTrainer<Policy, no_reference, ORPOObjective>;

}  // namespace verl::trainer
