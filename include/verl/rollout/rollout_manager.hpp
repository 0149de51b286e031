#pragma once
//! \file
//! verl::rollout::RolloutManager: a batch of prompts in, the rollout out. It turns padded verl::Prompts into
//! engine requests (each prompt's real tokens, its n samples), steps the engine to completion while reporting
//! progress, and assembles the padded verl::Rollout (or the typed verl::Batch) the trainer consumes. A long
//! rollout can be cancelled from another thread or from the progress callback.

#include "verl/core/batch.hpp"
#include "verl/core/errors.hpp"
#include "verl/core/fields.hpp"
#include "verl/core/model_io.hpp"
#include "verl/rollout/engine.hpp"

#include <ATen/core/Tensor.h>
#include <ATen/ops/arange.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/full.h>
#include <ATen/ops/zeros.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <utility>
#include <vector>

namespace verl::rollout {

//! Thrown by RolloutManager::generate when the rollout was cancelled; the engine is left empty.
class RolloutCancelled : public Error {
 public:
  using Error::Error;
};

//! Where a rollout stands (passed to the progress callback).
struct RolloutProgress {
  std::int64_t total_samples = 0;     //!< B * n
  std::int64_t finished_samples = 0;
  std::int64_t generated_tokens = 0;  //!< response tokens so far (all samples)
  std::int64_t steps = 0;             //!< engine steps so far
  std::int64_t running = 0, waiting = 0, preemptions = 0;
  double elapsed_seconds = 0.0;
};

//! How a RolloutManager reports and pads.
struct RolloutOptions {
  //! Called every `progress_every_steps` engine steps and once at the end; may call RolloutManager::cancel().
  std::function<void(const RolloutProgress&)> on_progress;
  std::int64_t progress_every_steps = 32;
  //! Fills responses after they end; unset = the model config's pad_token_id, else the first eos id, else 0.
  std::optional<std::int64_t> pad_token_id;
  //! Free the KV pool after each rollout (give the memory back to training); it is reallocated next time.
  bool release_kv_cache = false;
};

//! The rollout as a typed batch: prompts, responses, response_mask, input_ids, attention_mask, position_ids,
//! and uid (the prompt each row samples: uid_start + prompt index). Shares storage with `rollout`.
using RolloutBatch = Batch<fields::prompts, fields::responses, fields::response_mask, fields::input_ids,
                           fields::attention_mask, fields::position_ids, fields::uid>;

//! `rollout` as a RolloutBatch with n samples per prompt; add the sampler log-probs with
//! `.with<fields::rollout_log_probs>(*rollout.log_probs)`.
[[nodiscard]] inline RolloutBatch to_batch(const Rollout& rollout, std::int64_t n, std::int64_t uid_start = 0) {
  rollout.validate();
  const auto rows = rollout.input_ids.size(0);
  verl::detail::check<ShapeError>(n >= 1 && rows % n == 0, "verl::rollout::to_batch: ", rows, " rows are not a multiple of n = ", n);
  const auto uid = at::arange(rows, at::TensorOptions().dtype(at::kLong)).div(n, "floor") + uid_start;  // (B*n)
  return RolloutBatch(rollout.prompts, rollout.responses, rollout.response_mask, rollout.input_ids,
                      rollout.attention_mask, rollout.position_ids, uid.to(rollout.input_ids.device()));
}

//! See the file comment.
class RolloutManager {
 public:
  //! Drives `engine` (not owned; it must outlive the manager).
  explicit RolloutManager(Engine& engine, RolloutOptions options = {}) : engine_(&engine), options_(std::move(options)) {}

  //! Samples params.n responses for every prompt (rows i*n .. i*n+n-1 belong to prompt i): the Generates
  //! contract of verl/concepts/actor_model.hpp. Prompts may be padded anywhere (the real tokens are those with
  //! mask 1, at their position_ids); responses start at column P.
  //! \throws RolloutCancelled when cancel() was called; verl::ShapeError / ConfigError for bad input.
  [[nodiscard]] Rollout generate(const Prompts& prompts, const SamplingParams& params) {
    using verl::detail::check;
    constexpr std::string_view o = "verl::rollout::RolloutManager::generate";
    prompts.validate();
    params.validate();
    check<Error>(!engine_->has_unfinished(), o, ": the engine already has requests in flight");
    cancelled_.store(false);
    const auto ids = prompts.input_ids.to(at::kCPU).to(at::kLong).contiguous();            // (B,P)
    const auto mask = prompts.attention_mask.to(at::kCPU).to(at::kLong).contiguous();      // (B,P)
    const auto pos = prompts.position_ids.to(at::kCPU).to(at::kLong).contiguous();         // (B,P)
    const auto b = ids.size(0), p = ids.size(1);
    std::vector<std::int64_t> request_ids;
    std::vector<std::int64_t> last_position(static_cast<std::size_t>(b));
    for (std::int64_t i = 0; i < b; ++i) {
      std::vector<std::int64_t> tokens, positions;
      for (std::int64_t j = 0; j < p; ++j) {
        if (mask.data_ptr<std::int64_t>()[i * p + j] == 0) continue;
        tokens.push_back(ids.data_ptr<std::int64_t>()[i * p + j]);
        positions.push_back(pos.data_ptr<std::int64_t>()[i * p + j]);
      }
      check<ShapeError>(!tokens.empty(), o, ": prompt ", i, " has no real token (its attention_mask is all 0)");
      last_position[static_cast<std::size_t>(i)] = positions.back();
      request_ids.push_back(engine_->add_request(std::move(tokens), params, std::move(positions)));
    }

    const auto start = std::chrono::steady_clock::now();
    RolloutProgress progress;
    progress.total_samples = b * params.n;
    std::map<std::int64_t, RequestResult> results;
    try {
      while (engine_->has_unfinished()) {
        if (cancelled_.load()) {
          throw RolloutCancelled(verl::detail::concat_message(o, ": cancelled after ", progress.steps, " steps with ",
                                                              progress.finished_samples, " of ", progress.total_samples,
                                                              " samples finished"));
        }
        const auto st = engine_->step();
        ++progress.steps;
        progress.generated_tokens += st.sampled_tokens;
        progress.preemptions += st.preempted;
        for (auto& r : engine_->take_finished()) {
          progress.finished_samples += static_cast<std::int64_t>(r.samples.size());
          results.emplace(r.request_id, std::move(r));
        }
        if (options_.on_progress && (progress.steps % std::max<std::int64_t>(1, options_.progress_every_steps) == 0 ||
                                     !engine_->has_unfinished())) {
          progress.running = engine_->num_running();
          progress.waiting = engine_->num_waiting();
          progress.elapsed_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
          options_.on_progress(progress);
        }
      }
    } catch (...) {
      engine_->abort_all();
      throw;
    }
    if (options_.release_kv_cache) engine_->release_kv_cache();
    return assemble(prompts, ids, mask, pos, params, request_ids, results, last_position);
  }

  //! generate() as a RolloutBatch (with `rollout_log_probs` when `WithLogProbs`; then params.return_log_probs
  //! must be set). uids continue across calls, so each prompt of a run has its own.
  template <bool WithLogProbs = false>
  [[nodiscard]] auto generate_batch(const Prompts& prompts, const SamplingParams& params) {
    verl::detail::check<ConfigError>(!WithLogProbs || params.return_log_probs,
                                     "verl::rollout::RolloutManager::generate_batch<true>: set "
                                     "SamplingParams::return_log_probs to get rollout_log_probs");
    const auto rollout = generate(prompts, params);
    auto batch = to_batch(rollout, params.n, next_uid_);
    next_uid_ += prompts.input_ids.size(0);
    if constexpr (WithLogProbs) {
      return batch.template with<fields::rollout_log_probs>(*rollout.log_probs);
    } else {
      return batch;
    }
  }

  //! Stops the rollout in progress at the next step boundary (thread-safe; also from on_progress).
  void cancel() { cancelled_.store(true); }

  //! Replaces RolloutOptions::on_progress (e.g. a progress bar for the next rollout; empty: none). Not while a
  //! rollout runs.
  void set_on_progress(std::function<void(const RolloutProgress&)> fn) { options_.on_progress = std::move(fn); }

  [[nodiscard]] Engine& engine() { return *engine_; }

 private:
  Rollout assemble(const Prompts& prompts, const at::Tensor& ids, const at::Tensor& mask, const at::Tensor& pos,
                   const SamplingParams& params, const std::vector<std::int64_t>& request_ids,
                   std::map<std::int64_t, RequestResult>& results, const std::vector<std::int64_t>& last_position) {
    const auto& config = engine_->model()->config();
    const auto& eos = engine_->options().eos_token_ids.empty() ? config.eos_token_ids : engine_->options().eos_token_ids;
    const std::int64_t pad = options_.pad_token_id ? *options_.pad_token_id
                             : config.pad_token_id ? *config.pad_token_id
                             : !eos.empty()        ? eos.front()
                                                   : 0;
    const auto b = ids.size(0), n = params.n, rows = b * n;
    std::int64_t r_len = 1;
    for (const auto& [id, r] : results) {
      for (const auto& s : r.samples) r_len = std::max<std::int64_t>(r_len, static_cast<std::int64_t>(s.tokens.size()));
    }
    const auto long_opts = at::TensorOptions().dtype(at::kLong);
    auto responses = at::full({rows, r_len}, pad, long_opts);   // (B*n,R)
    auto response_mask = at::zeros({rows, r_len}, long_opts);   // (B*n,R)
    auto log_probs = at::zeros({rows, r_len}, at::TensorOptions().dtype(at::kFloat));  // (B*n,R)
    auto resp_pos = at::empty({rows, r_len}, long_opts);        // (B*n,R)
    auto* rp = responses.data_ptr<std::int64_t>();
    auto* mp = response_mask.data_ptr<std::int64_t>();
    auto* lp = log_probs.data_ptr<float>();
    auto* pp = resp_pos.data_ptr<std::int64_t>();
    for (std::int64_t i = 0; i < b; ++i) {
      const auto& res = results.at(request_ids[static_cast<std::size_t>(i)]);
      for (std::int64_t s = 0; s < n; ++s) {
        const auto row = i * n + s;
        const auto& sample = res.samples[static_cast<std::size_t>(s)];
        for (std::size_t t = 0; t < sample.tokens.size(); ++t) {
          rp[row * r_len + static_cast<std::int64_t>(t)] = sample.tokens[t];
          mp[row * r_len + static_cast<std::int64_t>(t)] = 1;
          if (params.return_log_probs) lp[row * r_len + static_cast<std::int64_t>(t)] = sample.log_probs[t];
        }
        for (std::int64_t t = 0; t < r_len; ++t) pp[row * r_len + t] = last_position[static_cast<std::size_t>(i)] + 1 + t;
      }
    }
    const auto device = prompts.input_ids.device();
    Rollout out;
    out.prompts = ids.repeat_interleave(n, 0).to(device);                                    // (B*n,P)
    out.responses = responses.to(device);                                                     // (B*n,R)
    out.response_mask = response_mask.to(device);                                             // (B*n,R)
    out.input_ids = at::cat({out.prompts, out.responses}, 1);                                 // (B*n,P+R)
    out.attention_mask = at::cat({mask.repeat_interleave(n, 0).to(device), out.response_mask}, 1);  // (B*n,P+R)
    out.position_ids = at::cat({pos.repeat_interleave(n, 0), resp_pos}, 1).to(device);        // (B*n,P+R)
    if (params.return_log_probs) out.log_probs = log_probs.to(device);                        // (B*n,R)
    return out;
  }

  Engine* engine_;
  RolloutOptions options_;
  std::atomic<bool> cancelled_{false};
  std::int64_t next_uid_ = 0;
};

}  // namespace verl::rollout
