#pragma once
//! \file
//! verl::models::Actor and verl::models::Reference: a causal LM (CausalLM) behind the ActorModel and
//! ReferenceModel contracts.
//!
//! log_probs follows verl 0.7.1's dp_actor `_forward_micro_batch` (logits = lm_head(hidden);
//! logits.div_(temperature); log_softmax + gather; entropy_from_logits; then the slice
//! [:, -response_length - 1 : -1]), but runs the LM head only on the R hidden rows that score response tokens
//! and through linear_log_probs (chunked, fused log-softmax + gather + entropy), so no (B,T,V) or (B,R,V)
//! logits tensor is ever materialised, in forward or backward. The last decoder layer, too, runs its queries,
//! attention output and MLP on those R columns only (TransformerModel::forward_columns). Padded response
//! positions are 0.
//!
//! The reference model is a separate type rather than an Actor in eval mode: Reference has no parameters()
//! and no generate(), so it cannot be handed to an optimizer or a rollout by mistake (it satisfies
//! ReferenceModel, not ActorModel); its parameters have requires_grad = false, it stays in eval mode, and
//! log_probs runs under no-grad. Reference::copy_of(actor) snapshots the actor's current weights (verl's
//! ref = the initial actor); Reference::load reads a Hugging Face directory.

#include "verl/concepts/actor_model.hpp"
#include "verl/concepts/reference_model.hpp"
#include "verl/core/errors.hpp"
#include "verl/core/model_io.hpp"
#include "verl/models/causal_lm.hpp"
#include "verl/models/detail/heads_io.hpp"
#include "verl/models/hf_model_io.hpp"
#include "verl/models/log_probs.hpp"
#include "verl/rollout/engine.hpp"
#include "verl/rollout/rollout_manager.hpp"

#include <ATen/core/Tensor.h>
#include <ATen/core/grad_mode.h>
#include <ATen/ops/where.h>
#include <ATen/ops/zeros_like.h>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <utility>
#include <vector>

namespace verl::models {

//! How an Actor or Reference computes log-probs and generates.
struct ActorOptions {
  GenerationOptions generation;  //!< eos / pad tokens of generate()
  //! The rollout engine behind Actor::generate (KV budget, batching limits, ...). Its eos_token_ids are
  //! taken from `generation` when set there.
  rollout::EngineOptions engine;
  //! Free the engine's KV pool after each generate() (give the memory back to training).
  bool release_kv_cache_after_generate = false;
  //! linear_log_probs' chunking: tokens per chunk (0 = as many as fit in max_chunk_bytes).
  std::int64_t chunk_tokens = 0;
  std::int64_t max_chunk_bytes = std::int64_t{256} << 20;  //!< one chunk's logits budget when chunk_tokens = 0
};

namespace detail {

//! log_probs of ComputesLogProbs for `lm` (see the file comment); grad flows when enabled.
[[nodiscard]] inline LogProbOutput response_log_probs(CausalLM& lm, const TokenBatch& batch,
                                                      const LogProbOptions& options, const ActorOptions& actor) {
  const auto& weight = lm->lm_head_weight();                                         // (V,H)
  const auto s = response_slice(batch, weight.device());
  // Rows T-R-1 .. T-2 score the response; the last decoder layer runs on those columns only.
  const auto scoring = lm->model->forward_columns(s.input_ids, s.attention_mask, s.position_ids, s.start,
                                                  s.length);                          // (B,R,H)
  LinearLogProbOptions lp;
  lp.temperature = options.temperature;
  lp.compute_entropy = options.compute_entropy;
  lp.chunk_tokens = actor.chunk_tokens;
  lp.max_chunk_bytes = actor.max_chunk_bytes;
  const auto out = linear_log_probs(scoring, weight, s.targets, lp);                 // (B,R) float32 each
  const auto device = batch.input_ids.device();
  const auto masked = [&](const at::Tensor& x) {  // 0 on padded response positions, without 0 * x
    return at::where(s.mask, x, at::zeros_like(x)).to(device);                      // (B,R)
  };
  LogProbOutput result;
  result.log_probs = masked(out.log_probs);
  if (options.compute_entropy) result.entropy = masked(out.entropy);
  return result;
}

//! The logits (B,R,V) that score the response tokens (hidden rows T-R-1 .. T-2), in the parameter dtype.
[[nodiscard]] inline at::Tensor response_logits(CausalLM& lm, const TokenBatch& batch) {
  const auto s = response_slice(batch, lm->lm_head_weight().device());
  return lm->project(lm->model->forward_columns(s.input_ids, s.attention_mask, s.position_ids, s.start,
                                                s.length));                           // (B,R,V)
}

//! A new CausalLM with `lm`'s config, device and a copy of its parameter values.
[[nodiscard]] inline CausalLM deep_copy(const CausalLM& lm) {
  CausalLM copy(lm->config());
  copy->to(lm->lm_head_weight().device());
  at::NoGradGuard no_grad;
  auto dst = copy->named_parameters();
  for (const auto& item : lm->named_parameters()) dst[item.key()].copy_(item.value());
  return copy;
}

}  // namespace detail

//! The policy: a causal LM that scores, generates and is trained. Satisfies verl::ActorModel.
//!
//! A handle: copies share the model (as torch::nn::ModuleHolder does). The model's mode is the caller's:
//! `lm()->train()` / `lm()->eval()` (none of the supported architectures has dropout, so the two compute the
//! same; activation checkpointing applies in training mode).
class Actor {
 public:
  //! Wraps `lm` (shared, not copied).
  explicit Actor(CausalLM lm, ActorOptions options = {}) : lm_(std::move(lm)), options_(std::move(options)) {}

  //! Loads a Hugging Face causal-LM directory (see load_causal_lm); the model is in eval mode.
  [[nodiscard]] static Actor load(const std::filesystem::path& dir, const LoadOptions& load = {},
                                  ActorOptions options = {}) {
    return Actor(load_causal_lm(dir, load), std::move(options));
  }

  //! Per-token log-probs (B,R) float32 of the response tokens under `options.temperature`, and the entropy
  //! when asked; 0 at padded response positions; differentiable when grad is enabled. The LM head runs on the
  //! R scoring rows only, chunked (ActorOptions::chunk_tokens), never forming (B,T,V) logits.
  //! \throws verl::ShapeError for a malformed batch (TokenBatch::validate, or token ids outside the vocabulary);
  //!         verl::ConfigError for a temperature that is not finite and > 0.
  [[nodiscard]] LogProbOutput log_probs(const TokenBatch& batch, const LogProbOptions& options = {}) {
    return detail::response_log_probs(lm_, batch, options, options_);
  }

  //! The logits (B,R,V), parameter dtype, that score the response tokens (untempered): what log_probs avoids
  //! materialising, for callers that need them (e.g. top-k distillation). `lm()->logits(...)` gives (B,T,V).
  [[nodiscard]] at::Tensor logits(const TokenBatch& batch) { return detail::response_logits(lm_, batch); }

  //! Samples responses with the rollout engine (verl/rollout/engine.hpp: paged KV cache, continuous
  //! batching, prefix sharing) on this actor's own parameter tensors, configured by ActorOptions::engine and
  //! ActorOptions::generation. The engine is created at the first call and shared by copies of this handle.
  [[nodiscard]] Rollout generate(const Prompts& prompts, const SamplingParams& params) {
    return rollout_manager().generate(prompts, params);
  }

  //! The engine behind generate(), e.g. to read its statistics or free its KV pool.
  [[nodiscard]] rollout::Engine& engine() { return rollout_manager().engine(); }

  //! The trainable tensors (a tied LM head appears once, as model.embed_tokens.weight).
  [[nodiscard]] std::vector<at::Tensor> parameters() const { return lm_->parameters(); }

  //! Writes a Hugging Face directory that transformers loads as AutoModelForCausalLM (save_causal_lm).
  void save(const std::filesystem::path& dir, const SaveOptions& options = {}) { save_causal_lm(lm_, dir, options); }

  //! The trainable tensors by their Hugging Face names.
  [[nodiscard]] torch::OrderedDict<std::string, at::Tensor> named_parameters() const { return lm_->named_parameters(); }

  //! Copies the weights of a Hugging Face directory (e.g. one save() wrote) into this actor's parameters in
  //! place, so optimizers and the rollout engine holding them see the new values (load_weights' checks).
  void load_weights(const std::filesystem::path& dir) {
    const auto reader = checkpoint::CheckpointReader::open(dir);
    models::load_weights(lm_, reader, dir.string());
  }

  //! Called every few engine steps of the following generate() calls with where the rollout stands (a progress
  //! bar; RolloutManager's on_progress); empty: nothing. Shared by copies of the handle.
  void set_rollout_progress(std::function<void(const rollout::RolloutProgress&)> fn) {
    rollout_manager().set_on_progress(std::move(fn));
  }

  [[nodiscard]] CausalLM& lm() { return lm_; }
  [[nodiscard]] const CausalLM& lm() const { return lm_; }
  [[nodiscard]] const ActorOptions& options() const { return options_; }

 private:
  struct Generator {
    explicit Generator(CausalLM lm, const ActorOptions& o) : engine(std::move(lm), engine_options(o)),
                                                            manager(engine, manager_options(o)) {}
    static rollout::EngineOptions engine_options(const ActorOptions& o) {
      auto e = o.engine;
      if (!o.generation.eos_token_ids.empty()) e.eos_token_ids = o.generation.eos_token_ids;
      return e;
    }
    static rollout::RolloutOptions manager_options(const ActorOptions& o) {
      rollout::RolloutOptions r;
      r.pad_token_id = o.generation.pad_token_id;
      r.release_kv_cache = o.release_kv_cache_after_generate;
      return r;
    }
    rollout::Engine engine;
    rollout::RolloutManager manager;
  };

  rollout::RolloutManager& rollout_manager() {
    if (!rollout_) rollout_ = std::make_shared<Generator>(lm_, options_);
    return rollout_->manager;
  }

  CausalLM lm_;
  ActorOptions options_;
  std::shared_ptr<Generator> rollout_;  // created by the first generate(); shared by copies of the handle
};

//! The frozen reference policy of the KL term. Satisfies verl::ReferenceModel (and deliberately not
//! ActorModel); see the file comment.
class Reference {
 public:
  //! Takes `lm` over: its parameters are set to requires_grad = false and it is put in eval mode. Pass a copy
  //! (Reference::copy_of) when the same model keeps training as the actor.
  explicit Reference(CausalLM lm, ActorOptions options = {}) : lm_(std::move(lm)), options_(std::move(options)) {
    for (auto& p : lm_->parameters()) p.requires_grad_(false);
    lm_->eval();
  }

  //! A frozen snapshot of the actor's current weights (verl's reference = the initial actor).
  [[nodiscard]] static Reference copy_of(const Actor& actor) {
    return Reference(detail::deep_copy(actor.lm()), actor.options());
  }

  //! Loads a Hugging Face causal-LM directory as a frozen reference.
  [[nodiscard]] static Reference load(const std::filesystem::path& dir, const LoadOptions& load = {},
                                      ActorOptions options = {}) {
    return Reference(load_causal_lm(dir, load), std::move(options));
  }

  //! As Actor::log_probs, always under no-grad.
  [[nodiscard]] LogProbOutput log_probs(const TokenBatch& batch, const LogProbOptions& options = {}) {
    at::NoGradGuard no_grad;
    return detail::response_log_probs(lm_, batch, options, options_);
  }

  //! As Actor::logits, under no-grad.
  [[nodiscard]] at::Tensor logits(const TokenBatch& batch) {
    at::NoGradGuard no_grad;
    return detail::response_logits(lm_, batch);
  }

  [[nodiscard]] const CausalLM& lm() const { return lm_; }

 private:
  CausalLM lm_;
  ActorOptions options_;
};

}  // namespace verl::models
