#pragma once
//! \file
//! verl::trainer::KTOTrainer: Kahneman-Tversky optimisation over an offline KTODataset (unpaired desirable /
//! undesirable completions), with the semantics of Hugging Face TRL 0.19.1's KTOTrainer
//! (trl/trainer/kto_trainer.py: forward, _compute_kl_logps, get_batch_loss_metrics, log) and the loss of
//! verl::pref::kto_loss.
//!
//!     verl::trainer::KTOOptions o;                             // TRL's KTOConfig names
//!     o.desirable_weight = 1.0;
//!     verl::trainer::KTOTrainer<Actor, Reference> trainer(actor, Reference::copy_of(actor), o);
//!     auto metrics = trainer.step(kto_batch);                  // {"loss", "kl", "rewards/chosen", ...}
//!
//! One step (one optimizer update) over a KTOBatch of B examples:
//! 1. Under no-grad, per micro-batch of per_device_train_batch_size rows: the policy's and the reference's
//!    log-probs of the mismatched KL pairs (each prompt with another row's completion, KTOBatch::kl) and the
//!    reference's log-probs of the completions. Sequence log-probs are sums over the completion tokens.
//! 2. The KL reference point z0 = max(0, mean over the step's B KL pairs of (pi_KL - ref_KL)), detached
//!    (loss_type kto; apo_zero_unpaired needs none). Deliberate difference: TRL takes the mean over each
//!    micro-batch (per_device_train_batch_size rows); we take it over the whole step so that the update does not
//!    depend on the micro-batch size. The two agree with gradient_accumulation_steps 1 and one micro-batch.
//! 3. Per micro-batch, with gradient: the policy's completion log-probs, split by label into desirable
//!    (chosen) and undesirable (rejected); kto_loss with z0; loss = nansum(losses) / B (TRL's nanmean over the
//!    step; equal unless a loss is NaN, which TRL leaves out of the count as well as the sum).
//! 4. AdamW step with gradient-norm clipping (skipped when the norm is not finite), then the schedule advances.
//!
//! Metrics (TRL's names; rewards and logps are means over the step's desirable / undesirable examples, as
//! TRL's log() divides the summed values by the counts): loss, kl, rewards/chosen, rewards/rejected,
//! rewards/margins (when both kinds are present), logps/chosen, logps/rejected, count/chosen,
//! count/rejected, grad_norm, learning_rate. TRL's logits/* sums are not reported (no logits are formed).
//! Not provided: precompute_ref_log_probs for KTO (the KL pairs depend on the batch), the BCO variant, liger.
//! A batch of one pairs an example with its own completion (TRL requires per_device_train_batch_size > 1 for
//! this reason): use batches of two or more.
//!
//! fit(make_provider, registry, fit_options, validate) is the loop with checkpoints, resume and validation
//! (offline_common.hpp), as for DPOTrainer. Evaluation (TRL's prediction_step / evaluate / log):
//! evaluate(batch) is a step's metrics without an update (the KL reference point from that batch);
//! validate(provider) reports TRL's eval names: eval_loss (the mean over the evaluation examples of their
//! batches' losses, transformers' evaluation_loop), eval_kl (the mean over the batches), eval_rewards/chosen,
//! eval_logps/chosen, eval_rewards/rejected, eval_logps/rejected (sums over all batches / counts, as TRL's
//! log() divides the summed values by the summed counts), eval_rewards/margins (chosen - rejected).

#include "verl/algos/algorithm.hpp"
#include "verl/algos/pref/kto.hpp"
#include "verl/concepts/reference_model.hpp"
#include "verl/data/data_provider.hpp"
#include "verl/data/preference_dataset.hpp"
#include "verl/trainer/offline_common.hpp"

#include <ATen/ops/nonzero.h>
#include <c10/core/GradMode.h>
#include <nlohmann/json.hpp>

#include <concepts>
#include <functional>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <utility>

namespace verl::trainer {

//! KTOTrainer options: TRL 0.19.1 KTOConfig's names and defaults (plus TrainingArguments' optimisation ones).
struct KTOOptions : OfflineTrainingArguments {
  double beta = 0.1;
  pref::KTOLossType loss_type = pref::KTOLossType::kto;  //!< parse_kto_loss_type("apo_zero_unpaired") etc.
  double desirable_weight = 1.0;    //!< multiplies the desirable (label true) losses
  double undesirable_weight = 1.0;  //!< multiplies the undesirable losses

  [[nodiscard]] pref::KTOLossConfig loss_config() const { return {loss_type, beta, desirable_weight, undesirable_weight}; }

  void validate() const {
    OfflineTrainingArguments::validate("verl::trainer::KTOOptions");
    verl::detail::check<ConfigError>(desirable_weight >= 0 && undesirable_weight >= 0,
                                     "verl::trainer::KTOOptions: desirable_weight and undesirable_weight must be "
                                     ">= 0, got ", desirable_weight, " and ", undesirable_weight);
  }
};

//! The KTO trainer. `Policy` is trained (ReferenceModel + parameters()); `Reference` is a verl::ReferenceModel
//! (KTO always compares against a reference policy). Models are handles, held by value.
template <class Policy, class Reference>
class KTOTrainer {
  static_assert(check_reference_model<Policy>());
  static_assert(requires(const Policy& p) { { p.parameters() } -> std::convertible_to<std::vector<at::Tensor>>; },
                "verl::trainer::KTOTrainer: the policy needs `parameters()` returning std::vector<at::Tensor> (the "
                "tensors AdamW updates)");
  static_assert(!std::is_same_v<Reference, no_reference>,
                "verl::trainer::KTOTrainer: KTO compares against a reference policy; pass a verl::ReferenceModel "
                "(e.g. verl::models::Reference::copy_of(actor))");
  static_assert(check_reference_model<Reference>());

 public:
  KTOTrainer(Policy policy, Reference reference, KTOOptions options)
      : policy_(std::move(policy)), reference_(std::move(reference)), options_(std::move(options)),
        optimizer_((options_.validate(), policy_.parameters()), options_) {}

  //! One optimizer step over `batch`.
  std::map<std::string, double> step(const data::KTOBatch& batch) { return update({&batch, 1}); }

  //! `steps` optimizer steps, each over gradient_accumulation_steps batches of `provider` (stops early when
  //! it runs out). `on_step` (optional) sees each step's metrics. Returns them all.
  std::vector<std::map<std::string, double>> fit(
      data::DataProvider<data::KTODataset>& provider, std::int64_t steps,
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

  //! verl's fit loop (offline_common.hpp) over a provider of KTOBatch built by `make_provider(resume_state)`;
  //! see DPOTrainer::fit.
  template <class MakeProvider>
    requires std::invocable<MakeProvider&, const nlohmann::json&>
  OfflineFitResult fit(MakeProvider&& make_provider, MetricsRegistry& registry, const OfflineFitOptions& fo,
                       const detail::OfflineValidateFn& validate = {}) {
    return detail::run_offline_fit(
        "verl::trainer::KTOTrainer", policy_, optimizer_, global_step_, std::forward<MakeProvider>(make_provider),
        [this](auto& provider) { return train_step(provider); }, registry, fo, validate);
  }

  //! One batch's metrics (as step() reports them, without grad_norm / learning_rate) with no update.
  [[nodiscard]] std::map<std::string, double> evaluate(const data::KTOBatch& batch) { return compute({&batch, 1}, false); }

  //! TRL's evaluate over `provider`'s batches (until it returns nullopt); see the file comment.
  template <class Provider>
  [[nodiscard]] std::map<std::string, double> validate(Provider& provider) {
    double loss_sum = 0, kl_sum = 0;
    std::int64_t examples = 0, batches = 0;
    std::map<std::string, double> sums;  // "rewards/chosen" etc. -> sum over examples; "count/..." -> count
    while (auto b = provider.next()) {
      const auto m = evaluate(*b);
      const auto n = b->completion.batch_size();
      loss_sum += m.at("loss") * static_cast<double>(n);
      kl_sum += m.at("kl");
      examples += n;
      ++batches;
      for (const char* split : {"chosen", "rejected"}) {
        const double count = m.at(std::string("count/") + split);
        sums[std::string("count/") + split] += count;
        for (const char* metric : {"rewards", "logps"}) {
          const auto key = std::string(metric) + "/" + split;
          if (count > 0) sums[key] += m.at(key) * count;  // the batch mean times its count: TRL's *_sum
        }
      }
    }
    verl::detail::check<InputError>(examples > 0, "verl::trainer::KTOTrainer::validate: the validation provider "
                                    "gave no example");
    std::map<std::string, double> out{{"eval_loss", loss_sum / static_cast<double>(examples)},
                                      {"eval_kl", kl_sum / static_cast<double>(batches)}};
    for (const char* split : {"chosen", "rejected"}) {
      const double count = sums[std::string("count/") + split];
      if (count == 0) continue;  // TRL would divide by zero
      for (const char* metric : {"rewards", "logps"}) {
        const auto key = std::string(metric) + "/" + split;
        out["eval_" + key] = sums[key] / count;
      }
    }
    if (out.count("eval_rewards/chosen") && out.count("eval_rewards/rejected"))
      out["eval_rewards/margins"] = out["eval_rewards/chosen"] - out["eval_rewards/rejected"];
    return out;
  }

  //! The policy's per-sequence completion log-probs (B,) of `batch`, under no-grad.
  [[nodiscard]] at::Tensor policy_log_probs(const data::KTOBatch& batch) {
    const c10::AutoGradMode no_grad(false);
    return detail::masked_row_sum(detail::token_log_probs(policy_, batch.completion), batch.completion_mask);  // (B,)
  }

  [[nodiscard]] Policy& policy() { return policy_; }
  [[nodiscard]] Reference& reference() { return reference_; }
  [[nodiscard]] OfflineOptimizer& optimizer() { return optimizer_; }
  [[nodiscard]] const KTOOptions& options() const { return options_; }
  [[nodiscard]] std::int64_t global_step() const { return global_step_; }
  void set_global_step(std::int64_t step) { global_step_ = step; }

 private:
  template <class Model>
  at::Tensor seq_logps(Model& model, const TokenBatch& tb, const at::Tensor& mask, std::int64_t begin, std::int64_t n) {
    return detail::masked_row_sum(detail::token_log_probs(model, detail::rows_of(tb, begin, n)),
                                  mask.narrow(0, begin, n));  // (n,)
  }

  //! One optimizer step over gradient_accumulation_steps batches of `provider` (nullopt when it has none left).
  template <class Provider>
  std::optional<std::map<std::string, double>> train_step(Provider& provider) {
    std::vector<data::KTOBatch> batches;
    for (std::int64_t g = 0; g < options_.gradient_accumulation_steps; ++g) {
      auto b = provider.next();
      if (!b) break;
      batches.push_back(std::move(*b));
    }
    if (batches.empty()) return std::nullopt;
    return update(batches);
  }

  std::map<std::string, double> update(std::span<const data::KTOBatch> batches) {
    optimizer_.zero_grad();
    auto m = compute(batches, true);
    const auto step = optimizer_.step();
    ++global_step_;
    m["grad_norm"] = step.grad_norm;
    m["learning_rate"] = step.lr_used;
    m["step"] = static_cast<double>(global_step_);
    return m;
  }

  //! The loss and metrics of `batches` as one step; with `train`, the gradient of the step's loss is
  //! accumulated, else everything runs under no-grad.
  std::map<std::string, double> compute(std::span<const data::KTOBatch> batches, bool train) {
    const auto cfg = options_.loss_config();
    const bool with_kl = cfg.loss_type == pref::KTOLossType::kto;
    const std::int64_t micro = options_.per_device_train_batch_size;
    std::int64_t total = 0;
    for (const auto& b : batches) {
      verl::detail::check<ShapeError>(b.labels.dim() == 1 && b.labels.size(0) == b.completion.batch_size() &&
                                          b.kl.batch_size() == b.completion.batch_size(),
                                      "verl::trainer::KTOTrainer: a KTOBatch has ", b.completion.batch_size(),
                                      " completions, ", b.kl.batch_size(), " KL pairs and ",
                                      b.labels.numel(), " labels; expected one of each per row");
      total += b.completion.batch_size();
    }
    verl::detail::check<InputError>(total > 0, "verl::trainer::KTOTrainer::step: the batch has no example");

    // 1-2. No-grad pass: reference completion log-probs, KL pairs under both models, the reference point.
    std::vector<at::Tensor> ref_completion;  // one (B_k,) per batch
    at::Tensor kl_mean;                      // () unclamped mean of pi_KL - ref_KL over the step
    {
      const c10::AutoGradMode no_grad(false);
      std::vector<at::Tensor> kl_diffs;
      for (const auto& b : batches) {
        std::vector<at::Tensor> rc;
        for (std::int64_t begin = 0; begin < b.completion.batch_size(); begin += micro) {
          const auto n = std::min(micro, b.completion.batch_size() - begin);
          rc.push_back(seq_logps(reference_, b.completion, b.completion_mask, begin, n));
          if (with_kl) {
            const auto pk = seq_logps(policy_, b.kl, b.kl_mask, begin, n);     // (n,)
            const auto rk = seq_logps(reference_, b.kl, b.kl_mask, begin, n);  // (n,)
            kl_diffs.push_back(pk.sub(rk));
          }
        }
        ref_completion.push_back(at::cat(rc, 0));
      }
      if (with_kl) kl_mean = at::cat(kl_diffs, 0).mean();  // ()
    }

    // 3. Gradient pass (no-grad when evaluating).
    const c10::AutoGradMode grad_on(train);
    std::vector<at::Tensor> chosen_logps, rejected_logps, chosen_rewards, rejected_rewards;
    double loss_sum = 0, kl_value = 0;
    for (std::size_t k = 0; k < batches.size(); ++k) {
      const auto& b = batches[k];
      const auto labels = b.labels.to(at::kBool);  // (B,)
      for (std::int64_t begin = 0; begin < b.completion.batch_size(); begin += micro) {
        const auto n = std::min(micro, b.completion.batch_size() - begin);
        const auto pi = seq_logps(policy_, b.completion, b.completion_mask, begin, n);  // (n,)
        const auto ref = ref_completion[k].narrow(0, begin, n).to(pi.scalar_type());  // (n,)
        const auto lab = labels.narrow(0, begin, n);                                   // (n,)
        const auto chosen_idx = at::nonzero(lab).squeeze(1);                           // (Nc,)
        const auto rejected_idx = at::nonzero(lab.logical_not()).squeeze(1);           // (Nr,)
        const auto out = pref::kto_loss(pi.index_select(0, chosen_idx), pi.index_select(0, rejected_idx), {},
                                        ref.index_select(0, chosen_idx), ref.index_select(0, rejected_idx), {}, cfg,
                                        with_kl ? kl_mean.to(pi.scalar_type()) : at::Tensor{});
        const auto loss = out.losses.nansum().div(static_cast<double>(total));  // () share of the step's mean
        if (train) loss.backward();
        loss_sum += loss.template item<double>();
        kl_value = out.kl.template item<double>();
        chosen_logps.push_back(pi.detach().index_select(0, chosen_idx));
        rejected_logps.push_back(pi.detach().index_select(0, rejected_idx));
        chosen_rewards.push_back(out.chosen_rewards);
        rejected_rewards.push_back(out.rejected_rewards);
      }
    }
    std::map<std::string, double> m;
    m["loss"] = loss_sum;
    m["kl"] = kl_value;
    const auto cr = at::cat(chosen_rewards, 0), rr = at::cat(rejected_rewards, 0);  // (Nc,), (Nr,)
    m["count/chosen"] = static_cast<double>(cr.numel());
    m["count/rejected"] = static_cast<double>(rr.numel());
    if (cr.numel() > 0) {  // TRL: nansum / count
      m["rewards/chosen"] = cr.to(at::kDouble).nansum().template item<double>() / static_cast<double>(cr.numel());
      m["logps/chosen"] = at::cat(chosen_logps, 0).to(at::kDouble).nansum().template item<double>() /
                          static_cast<double>(cr.numel());
    }
    if (rr.numel() > 0) {
      m["rewards/rejected"] = rr.to(at::kDouble).nansum().template item<double>() / static_cast<double>(rr.numel());
      m["logps/rejected"] = at::cat(rejected_logps, 0).to(at::kDouble).nansum().template item<double>() /
                            static_cast<double>(rr.numel());
    }
    if (cr.numel() > 0 && rr.numel() > 0) m["rewards/margins"] = m["rewards/chosen"] - m["rewards/rejected"];
    return m;
  }

  Policy policy_;
  Reference reference_;
  KTOOptions options_;
  OfflineOptimizer optimizer_;
  std::int64_t global_step_ = 0;
};

}  // namespace verl::trainer
