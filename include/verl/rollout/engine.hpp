#pragma once
//! \file
//! verl::rollout::Engine: a vLLM-style generation engine that runs in-process on a CausalLM's own weights.
//!
//! Design (docs/rollout.md has the long form):
//! - **Paged KV cache.** Keys/values live in a preallocated KVPool of fixed-size blocks sized by a byte
//!   budget; each sequence has a block table (BlockAllocator). Attention reads the pool through
//!   paged_attention; nothing is copied when a batch changes.
//! - **Continuous batching.** Every step() schedules up to `max_num_batched_tokens` new tokens over at most
//!   `max_num_seqs` sequences: first one token for each running sequence that is decoding (or the next chunk
//!   of one still in prefill), then new sequences from the waiting queue as the budget and the free blocks
//!   allow. A prompt longer than the remaining budget is prefilled in chunks over several steps (chunked
//!   prefill). A finished sequence frees its blocks at once and a waiting one takes its place.
//! - **Preemption by recompute.** When a running sequence needs a block and none is free, the
//!   lowest-priority running sequence (latest arrival) gives its blocks back and returns to the front of the
//!   waiting queue; when rescheduled it recomputes the KV of its prompt and the tokens it had generated, and
//!   carries on. No request is dropped; a request that cannot fit in the whole pool is rejected when added.
//! - **Prefix sharing.** The n samples of one prompt are one sequence until the prompt is prefilled; then
//!   the n-1 others fork from it, sharing its blocks by reference count, and each copies the partly filled
//!   last block before its first write (copy on write). Prompt memory and prefill are paid once per group.
//! - **Batch-invariant sampling.** Each sample draws with its own key (the request's seed and the sample
//!   index) and the step number (sampler.hpp), so its tokens depend neither on the other sequences of the
//!   batch nor on preemption: the same seed gives the same tokens with or without continuous batching,
//!   prefix sharing, or a small pool.
//!
//! Colocation: the engine holds the CausalLM handle it was given (no copy) and reads its parameters each
//! step, so an optimizer step on the actor is seen by the next generation. update_weights() copies named
//! tensors into the model for an engine that has its own weights (e.g. another dtype, or resharded by the
//! distributed layer).

#include "verl/core/errors.hpp"
#include "verl/core/model_io.hpp"
#include "verl/models/causal_lm.hpp"
#include "verl/rollout/block_allocator.hpp"
#include "verl/rollout/kv_pool.hpp"
#include "verl/rollout/paged_attention.hpp"
#include "verl/rollout/paged_forward.hpp"
#include "verl/rollout/sampler.hpp"
#include "verl/rollout/stop_strings.hpp"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/from_blob.h>
#include <ATen/ops/full.h>
#include <ATen/ops/tensor.h>
#include <ATen/ops/zeros.h>

#include <algorithm>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

namespace verl::rollout {

//! The engine's knobs (vLLM's names where they exist).
struct EngineOptions {
  std::int64_t block_size = 16;  //!< positions per KV block
  //! KV pool budget in bytes (vLLM's share of gpu_memory_utilization); the pool holds
  //! kv_cache_bytes / KVPoolShape::bytes_per_block() blocks, or fewer when the queued requests need fewer.
  std::int64_t kv_cache_bytes = std::int64_t{1} << 30;
  std::int64_t num_blocks = 0;  //!< > 0: exactly this many blocks, whatever the budget
  std::int64_t max_num_seqs = 256;             //!< sequences per step
  std::int64_t max_num_batched_tokens = 2048;  //!< new tokens per step (prefill chunks + decodes)
  bool enable_chunked_prefill = true;  //!< split prompts over steps; off: a prompt is prefilled in one step
  bool enable_prefix_sharing = true;   //!< the n samples of a prompt share its KV blocks
  bool continuous_batching = true;     //!< off: static batching (a new batch starts when the last one ends)
  std::vector<std::int64_t> eos_token_ids;  //!< empty = the model config's eos_token_id
  //! Turns token ids into text; needed only by requests with stop strings (pass the tokenizer's decode).
  std::function<std::string(std::span<const std::int64_t>)> detokenize;
};

//! Why a sample stopped.
enum class FinishReason { none, eos, stop_token, stop_string, length, aborted };

//! What one sample of a request produced.
struct SampleResult {
  std::vector<std::int64_t> tokens;  //!< generated tokens, including the eos / stop token that ended it
  std::vector<float> log_probs;      //!< sampler log-probs, one per token, when the request asked for them
  FinishReason finish_reason = FinishReason::none;
};

//! A finished request: its n samples in sample order.
struct RequestResult {
  std::int64_t request_id = 0;
  std::vector<SampleResult> samples;
};

//! What one step() did.
struct StepStats {
  std::int64_t scheduled_tokens = 0;    //!< new tokens run through the model
  std::int64_t scheduled_sequences = 0;
  std::int64_t prefill_tokens = 0;      //!< of which prompt (or recomputed) tokens
  std::int64_t sampled_tokens = 0;      //!< tokens appended to responses
  std::int64_t preempted = 0;           //!< sequences sent back to the waiting queue
  std::int64_t finished_requests = 0;
};

//! Counters over the engine's life (reset_stats() zeroes them).
struct EngineStats {
  std::int64_t steps = 0, prefill_tokens = 0, sampled_tokens = 0, preemptions = 0, forks = 0,
               copy_on_write = 0, peak_used_blocks = 0;
};

//! See the file comment.
class Engine {
 public:
  //! An engine on `lm`'s weights (shared, not copied). The KV pool is allocated at the first step.
  explicit Engine(models::CausalLM lm, EngineOptions options = {}) : lm_(std::move(lm)), options_(std::move(options)) {
    using verl::detail::check;
    constexpr std::string_view o = "verl::rollout::EngineOptions";
    check<ConfigError>(options_.block_size >= 1, o, ": `block_size` is ", options_.block_size, ", expected >= 1");
    check<ConfigError>(options_.max_num_seqs >= 1, o, ": `max_num_seqs` is ", options_.max_num_seqs, ", expected >= 1");
    check<ConfigError>(options_.max_num_batched_tokens >= 1, o, ": `max_num_batched_tokens` is ",
                       options_.max_num_batched_tokens, ", expected >= 1");
    check<ConfigError>(options_.num_blocks >= 0, o, ": `num_blocks` is ", options_.num_blocks, ", expected >= 0");
    check<ConfigError>(options_.num_blocks > 0 || options_.kv_cache_bytes >= pool_shape().bytes_per_block(), o,
                       ": `kv_cache_bytes` is ", options_.kv_cache_bytes, ", less than one block (",
                       pool_shape().bytes_per_block(), " bytes)");
    eos_ = options_.eos_token_ids.empty() ? lm_->config().eos_token_ids : options_.eos_token_ids;
  }

  //! Queues a request: `prompt` real tokens (no padding) with their RoPE positions (empty = 0, 1, ...);
  //! generated tokens continue at the last position + 1. Returns the request id.
  //! \throws verl::ConfigError for invalid params, stop strings without EngineOptions::detokenize, or a
  //!         request whose prompt + max_tokens cannot fit in the pool; verl::ShapeError for an empty prompt,
  //!         token ids outside the vocabulary, or positions of another length.
  std::int64_t add_request(std::vector<std::int64_t> prompt, const SamplingParams& params,
                           std::vector<std::int64_t> positions = {}) {
    using verl::detail::check;
    constexpr std::string_view o = "verl::rollout::Engine::add_request";
    params.validate();
    check<ShapeError>(!prompt.empty(), o, ": the prompt has no tokens, expected at least one");
    const auto vocab = lm_->config().vocab_size;
    for (std::size_t i = 0; i < prompt.size(); ++i) {
      check<ShapeError>(prompt[i] >= 0 && prompt[i] < vocab, o, ": prompt token ", i, " is ", prompt[i],
                        ", expected an id in [0, ", vocab, ")");
    }
    if (positions.empty()) {
      positions.resize(prompt.size());
      for (std::size_t i = 0; i < prompt.size(); ++i) positions[i] = static_cast<std::int64_t>(i);
    }
    check<ShapeError>(positions.size() == prompt.size(), o, ": ", positions.size(), " positions for ", prompt.size(),
                      " prompt tokens, expected one each");
    check<ConfigError>(params.stop.empty() || static_cast<bool>(options_.detokenize), o,
                       ": the request has stop strings but EngineOptions::detokenize is not set");
    const auto total = static_cast<std::int64_t>(prompt.size()) + params.max_tokens;
    {
      const auto blocks = blocks_for(total);
      check<ConfigError>(blocks <= capacity_blocks(), o, ": prompt (", prompt.size(), " tokens) + max_tokens (",
                         params.max_tokens, ") needs ", blocks, " KV blocks of ", options_.block_size,
                         " tokens, the pool holds ", capacity_blocks(), "; raise kv_cache_bytes / num_blocks");
    }
    check<ConfigError>(options_.enable_chunked_prefill || total - 1 <= options_.max_num_batched_tokens, o,
                       ": prompt + max_tokens - 1 = ", total - 1, " tokens exceed max_num_batched_tokens (",
                       options_.max_num_batched_tokens, ") with chunked prefill off (a recompute after preemption "
                       "must fit in one step)");

    auto req = std::make_unique<Request>();
    req->id = next_request_id_++;
    req->params = params;
    req->prompt = std::move(prompt);
    req->positions = std::move(positions);
    req->key = params.seed ? *params.seed : random_seed();
    req->results.resize(static_cast<std::size_t>(params.n));
    if (!params.stop.empty()) req->stop.emplace(params.stop, options_.detokenize);
    auto* r = req.get();
    requests_.emplace(r->id, std::move(req));
    const bool share = options_.enable_prefix_sharing && params.n > 1;
    for (std::int64_t s = 0; s < (share ? 1 : params.n); ++s) waiting_.push_back(make_sequence(*r, s));
    r->pending_forks = share ? params.n - 1 : 0;
    return r->id;
  }

  //! True while some request has not finished.
  [[nodiscard]] bool has_unfinished() const { return !requests_.empty(); }
  [[nodiscard]] std::int64_t num_running() const { return static_cast<std::int64_t>(running_.size()); }
  [[nodiscard]] std::int64_t num_waiting() const { return static_cast<std::int64_t>(waiting_.size()); }

  //! Schedules, runs the model once over the scheduled tokens, samples, and retires finished sequences.
  StepStats step() {
    StepStats stats;
    if (!has_unfinished()) return stats;
    ensure_pool();
    const auto plan = schedule(stats);
    verl::detail::check<Error>(!plan.empty() || stats.preempted > 0, "verl::rollout::Engine::step: nothing could be ",
                               "scheduled with ", allocator_->num_free(), " free blocks and ", running_.size(),
                               " running sequences (internal error)");
    if (!plan.empty()) run(plan, stats);
    ++life_.steps;
    life_.prefill_tokens += stats.prefill_tokens;
    life_.sampled_tokens += stats.sampled_tokens;
    life_.preemptions += stats.preempted;
    life_.peak_used_blocks = std::max(life_.peak_used_blocks, allocator_->num_used());
    return stats;
  }

  //! Removes and returns the requests that have finished since the last call, in request-id order.
  [[nodiscard]] std::vector<RequestResult> take_finished() {
    std::vector<RequestResult> out;
    for (auto& [id, r] : finished_) out.push_back(std::move(r));
    finished_.clear();
    return out;
  }

  //! Drops every request (running and waiting); their blocks return to the pool. Finished results already
  //! taken are unaffected; those not yet taken are dropped too.
  void abort_all() {
    for (auto* s : running_) allocator_->release_all(s->blocks);
    running_.clear();
    waiting_.clear();
    sequences_.clear();
    requests_.clear();
    finished_.clear();
  }

  //! Frees the KV pool (e.g. to give the memory to training between rollouts); reallocated at the next step.
  //! \pre no request is in flight.
  void release_kv_cache() {
    verl::detail::check<Error>(!has_unfinished(), "verl::rollout::Engine::release_kv_cache: ", requests_.size(),
                               " requests are still in flight");
    pool_.reset();
    allocator_.reset();
  }

  //! Copies `named` tensors into the model's parameters of the same names (converting the dtype), for an
  //! engine whose weights are not the actor's own tensors. Names are Hugging Face's (`model.layers.0...`).
  //! \throws verl::ShapeError for an unknown name or a shape mismatch (nothing is copied then).
  void update_weights(const std::vector<std::pair<std::string, at::Tensor>>& named) {
    using verl::detail::check;
    auto params = lm_->named_parameters();
    for (const auto& [name, t] : named) {
      const auto* p = params.find(name);
      check<ShapeError>(p != nullptr, "verl::rollout::Engine::update_weights: no parameter named `", name, "`");
      check<ShapeError>(p->sizes() == t.sizes(), "verl::rollout::Engine::update_weights: `", name, "` has shape ",
                        t.sizes(), ", the model's is ", p->sizes());
    }
    at::NoGradGuard no_grad;
    for (const auto& [name, t] : named) params[name].copy_(t);
  }

  [[nodiscard]] models::CausalLM& model() { return lm_; }
  [[nodiscard]] const EngineOptions& options() const { return options_; }
  [[nodiscard]] const EngineStats& stats() const { return life_; }
  void reset_stats() { life_ = EngineStats{}; }
  //! The pool's shape (known before it is allocated).
  [[nodiscard]] KVPoolShape pool_shape() const {
    return KVPoolShape::of(lm_->config(), options_.block_size, lm_->lm_head_weight().scalar_type());
  }
  //! Blocks in the pool (0 before the first step).
  [[nodiscard]] std::int64_t num_blocks() const { return pool_ ? pool_->num_blocks() : 0; }
  [[nodiscard]] std::int64_t num_free_blocks() const { return allocator_ ? allocator_->num_free() : 0; }

 private:
  struct Request;

  struct Sequence {
    Request* request = nullptr;
    std::int64_t sample = 0;           // sample index within the request
    std::vector<std::int64_t> tokens;  // prompt ++ output
    std::vector<float> log_probs;      // one per output token (when asked)
    std::vector<std::int32_t> blocks;  // block table
    std::int64_t num_computed = 0;     // leading tokens whose KV is in the pool
    [[nodiscard]] std::int64_t prompt_len() const { return static_cast<std::int64_t>(request->prompt.size()); }
    [[nodiscard]] std::int64_t num_output() const { return static_cast<std::int64_t>(tokens.size()) - prompt_len(); }
    [[nodiscard]] std::int64_t position(std::int64_t i) const {
      const auto p = prompt_len();
      return i < p ? request->positions[static_cast<std::size_t>(i)] : request->positions.back() + (i - p + 1);
    }
  };

  struct Request {
    std::int64_t id = 0;
    SamplingParams params;
    std::vector<std::int64_t> prompt, positions;
    std::uint64_t key = 0;
    std::int64_t pending_forks = 0;  // samples still to fork from sample 0 after its prefill
    std::int64_t unfinished = 0;     // samples not yet finished
    std::optional<StopStringMatcher> stop;
    std::vector<SampleResult> results;
  };

  // One scheduled piece of work: `count` new tokens of `seq` starting at seq->num_computed.
  struct Work {
    Sequence* seq;
    std::int64_t count;
  };

  [[nodiscard]] std::int64_t blocks_for(std::int64_t tokens) const {
    return (tokens + options_.block_size - 1) / options_.block_size;
  }
  // The most blocks the pool can ever hold.
  [[nodiscard]] std::int64_t capacity_blocks() const {
    return options_.num_blocks > 0 ? options_.num_blocks : options_.kv_cache_bytes / pool_shape().bytes_per_block();
  }

  static std::uint64_t random_seed() {
    auto gen = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(gen.mutex());
    return gen.get<at::CPUGeneratorImpl>()->random64();
  }

  Sequence* make_sequence(Request& r, std::int64_t sample) {
    auto s = std::make_unique<Sequence>();
    s->request = &r;
    s->sample = sample;
    s->tokens = r.prompt;
    ++r.unfinished;
    auto* p = s.get();
    sequences_.push_back(std::move(s));
    return p;
  }

  // Allocates the pool: exactly num_blocks, or as much of the budget as the queued requests can use. An
  // auto-sized pool grows (is reallocated) when the engine is idle and the queue needs more than it holds.
  void ensure_pool() {
    std::int64_t blocks = options_.num_blocks;
    if (blocks == 0) {
      std::int64_t need = 0;
      for (const auto& [id, r] : requests_) {
        need += blocks_for(static_cast<std::int64_t>(r->prompt.size()) + r->params.max_tokens) * r->params.n;
      }
      const auto budget = options_.kv_cache_bytes / pool_shape().bytes_per_block();
      blocks = std::min(budget, std::max<std::int64_t>(need, 1));
      for (const auto& [id, r] : requests_) {  // the budget must hold each request alone
        const auto one = blocks_for(static_cast<std::int64_t>(r->prompt.size()) + r->params.max_tokens);
        verl::detail::check<ConfigError>(one <= budget, "verl::rollout::Engine: request ", id, " needs ", one,
                                         " KV blocks, the budget (kv_cache_bytes = ", options_.kv_cache_bytes,
                                         ") holds ", budget);
      }
      const bool idle = !allocator_ || allocator_->num_used() == 0;
      if (pool_ && (!idle || pool_->num_blocks() >= blocks)) return;
    } else if (pool_) {
      return;
    }
    pool_.reset();  // free the old pool before allocating the new one
    pool_.emplace(pool_shape(), blocks, lm_->lm_head_weight().device());
    allocator_.emplace(blocks);
  }

  // Makes sure `s` has blocks for positions [num_computed, num_computed + count) and that the block it writes
  // first is its own (copy on write). False when the pool ran out (whatever was allocated is kept).
  bool reserve(Sequence& s, std::int64_t count) {
    const std::int64_t bs = options_.block_size;
    const auto first = s.num_computed / bs;
    if (first < static_cast<std::int64_t>(s.blocks.size()) && s.num_computed % bs != 0) {
      auto& b = s.blocks[static_cast<std::size_t>(first)];
      if (allocator_->ref_count(b) > 1) {  // shared with a sibling: copy before writing
        const auto fresh = allocator_->allocate();
        if (!fresh) return false;
        pool_->copy_block(b, *fresh);
        allocator_->release(b);
        b = *fresh;
        ++life_.copy_on_write;
      }
    }
    const auto needed = blocks_for(s.num_computed + count);
    while (static_cast<std::int64_t>(s.blocks.size()) < needed) {
      const auto b = allocator_->allocate();
      if (!b) return false;
      s.blocks.push_back(*b);
    }
    return true;
  }

  // Sends `s` back to the front of the waiting queue, freeing its blocks; it recomputes when rescheduled.
  void preempt(Sequence* s, StepStats& stats) {
    allocator_->release_all(s->blocks);
    s->num_computed = 0;
    running_.erase(std::find(running_.begin(), running_.end(), s));
    waiting_.push_front(s);
    ++stats.preempted;
  }

  std::vector<Work> schedule(StepStats& stats) {
    std::vector<Work> plan;
    std::int64_t budget = options_.max_num_batched_tokens;
    // 1. Running sequences, highest priority (earliest arrival) first; the tail is preempted for blocks.
    for (std::size_t i = 0; i < running_.size() && budget > 0; ++i) {
      Sequence* s = running_[i];
      const auto count = std::min(static_cast<std::int64_t>(s->tokens.size()) - s->num_computed, budget);
      bool ok = reserve(*s, count);
      while (!ok && running_.back() != s) {
        preempt(running_.back(), stats);
        ok = reserve(*s, count);
      }
      if (!ok) {  // s is the lowest priority left: it waits
        preempt(s, stats);
        break;
      }
      plan.push_back({s, count});
      budget -= count;
    }
    // 2. Waiting sequences (none after a preemption: the pool is full). Static batching admits only into an
    //    empty engine: a wave of up to max_num_seqs sequences, prefilled over as many steps as the budget
    //    needs, then nothing new until the whole wave has finished.
    const bool admit = stats.preempted == 0 && (options_.continuous_batching || running_.empty() || static_wave_open_);
    std::int64_t seq_count = 0;
    for (auto* s : running_) seq_count += 1 + (s->sample == 0 ? s->request->pending_forks : 0);
    bool full = false;
    while (admit && !waiting_.empty() && budget > 0) {
      Sequence* s = waiting_.front();
      const auto group = 1 + (s->sample == 0 ? s->request->pending_forks : 0);
      if (seq_count + group > options_.max_num_seqs && seq_count > 0) {
        full = true;
        break;
      }
      const auto remaining = static_cast<std::int64_t>(s->tokens.size()) - s->num_computed;
      if (!options_.enable_chunked_prefill && remaining > budget) break;
      const auto count = std::min(remaining, budget);
      if (!reserve(*s, count)) {
        allocator_->release_all(s->blocks);  // nothing of it is computed yet
        full = true;
        break;
      }
      waiting_.pop_front();
      running_.push_back(s);
      seq_count += group;
      plan.push_back({s, count});
      budget -= count;
    }
    if (!options_.continuous_batching && admit) static_wave_open_ = !full && !waiting_.empty();
    return plan;
  }

  void run(const std::vector<Work>& plan, StepStats& stats) {
    const std::int64_t bs = options_.block_size;
    const auto device = lm_->lm_head_weight().device();
    std::int64_t n = 0, max_blocks = 0;
    for (const auto& w : plan) {
      n += w.count;
      max_blocks = std::max<std::int64_t>(max_blocks, static_cast<std::int64_t>(w.seq->blocks.size()));
    }
    const auto cpu_long = at::TensorOptions().dtype(at::kLong);
    auto ids = at::empty({n}, cpu_long), pos = at::empty({n}, cpu_long), slots = at::empty({n}, cpu_long);
    const auto s_count = static_cast<std::int64_t>(plan.size());
    auto tables = at::full({s_count, std::max<std::int64_t>(max_blocks, 1)}, -1, cpu_long);
    auto ctx = at::empty({s_count}, cpu_long), starts = at::empty({s_count + 1}, cpu_long);
    auto* ip = ids.data_ptr<std::int64_t>();
    auto* pp = pos.data_ptr<std::int64_t>();
    auto* sp = slots.data_ptr<std::int64_t>();
    auto* tp = tables.data_ptr<std::int64_t>();
    auto* cp = ctx.data_ptr<std::int64_t>();
    auto* qp = starts.data_ptr<std::int64_t>();
    std::vector<std::int64_t> sample_rows;
    std::vector<Sequence*> sampled;
    std::int64_t row = 0;
    for (std::int64_t j = 0; j < s_count; ++j) {
      auto* s = plan[static_cast<std::size_t>(j)].seq;
      const auto count = plan[static_cast<std::size_t>(j)].count;
      qp[j] = row;
      for (std::int64_t i = s->num_computed; i < s->num_computed + count; ++i, ++row) {
        ip[row] = s->tokens[static_cast<std::size_t>(i)];
        pp[row] = s->position(i);
        sp[row] = std::int64_t{s->blocks[static_cast<std::size_t>(i / bs)]} * bs + i % bs;
      }
      for (std::size_t b = 0; b < s->blocks.size(); ++b) tp[j * tables.size(1) + static_cast<std::int64_t>(b)] = s->blocks[b];
      cp[j] = s->num_computed + count;
      // Everything but the one-token decode of the last sampled token is prefill (prompt or recompute).
      const bool decode = count == 1 && s->num_output() > 0 && s->num_computed + 1 == static_cast<std::int64_t>(s->tokens.size());
      if (!decode) stats.prefill_tokens += count;
      if (s->num_computed + count == static_cast<std::int64_t>(s->tokens.size())) {
        sample_rows.push_back(row - 1);
        sampled.push_back(s);
      }
    }
    qp[s_count] = row;
    stats.scheduled_tokens = n;
    stats.scheduled_sequences = s_count;

    StepInputs in;
    in.token_ids = ids.to(device);
    in.positions = pos.to(device);
    in.slots = slots.to(device);
    in.attention.block_tables = tables;
    in.attention.context_lens = ctx;
    in.attention.query_starts = starts;
    // Rows to sample: a group leader that just finished its prompt is sampled once per sample (forks).
    std::vector<std::int64_t> logits_rows;
    std::vector<Sequence*> owners;
    for (std::size_t k = 0; k < sampled.size(); ++k) {
      logits_rows.push_back(static_cast<std::int64_t>(k));
      owners.push_back(sampled[k]);
    }
    in.sample_rows = at::tensor(sample_rows, cpu_long).to(device);
    // A step of partial prefill chunks samples nothing: S = 0, and the LM head runs on no row.
    auto logits = paged_forward(lm_, *pool_, in);  // (S,V) float32
    for (const auto& w : plan) w.seq->num_computed += w.count;

    // Forks: the leader's n-1 siblings share its blocks and its last logits row.
    for (std::size_t k = 0; k < sampled.size(); ++k) {
      Sequence* s = sampled[k];
      Request& r = *s->request;
      if (s->sample != 0 || r.pending_forks == 0 || s->num_output() != 0) continue;
      for (std::int64_t f = 1; f <= r.pending_forks; ++f) {
        Sequence* c = make_sequence(r, f);
        c->blocks = s->blocks;
        for (auto b : c->blocks) allocator_->add_ref(b);
        c->num_computed = s->num_computed;
        running_.insert(std::find(running_.begin(), running_.end(), s) + 1 + (f - 1), c);
        logits_rows.push_back(static_cast<std::int64_t>(k));
        owners.push_back(c);
        ++life_.forks;
      }
      r.pending_forks = 0;
    }
    if (owners.empty()) return;
    if (static_cast<std::int64_t>(owners.size()) != logits.size(0)) {
      logits = logits.index_select(0, at::tensor(logits_rows, cpu_long).to(logits.device()));
    }
    logits = logits.to(at::kCPU).contiguous();

    std::vector<SamplingRow> rows(owners.size());
    bool want_log_probs = false;
    for (std::size_t k = 0; k < owners.size(); ++k) {
      const Sequence* s = owners[k];
      const Request& r = *s->request;
      rows[k].params = &r.params;
      rows[k].seed = sample_key(r.key, s->sample);
      rows[k].step = s->num_output();
      rows[k].prompt_tokens = std::span<const std::int64_t>(r.prompt);
      rows[k].output_tokens = std::span<const std::int64_t>(s->tokens).subspan(r.prompt.size());
      want_log_probs = want_log_probs || r.params.return_log_probs;
    }
    const auto out = sample(logits, rows, want_log_probs);
    stats.sampled_tokens = static_cast<std::int64_t>(owners.size());
    for (std::size_t k = 0; k < owners.size(); ++k) {
      Sequence* s = owners[k];
      s->tokens.push_back(out.tokens[k]);
      if (s->request->params.return_log_probs) s->log_probs.push_back(out.log_probs[k]);
      if (const auto reason = finish_reason(*s); reason != FinishReason::none) retire(s, reason, stats);
    }
  }

  // The sample's own RNG key: the request's seed mixed with the sample index (splitmix64 finaliser).
  static std::uint64_t sample_key(std::uint64_t seed, std::int64_t sample) {
    std::uint64_t z = seed + 0x9E3779B97F4A7C15ull * (static_cast<std::uint64_t>(sample) + 1);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }

  [[nodiscard]] FinishReason finish_reason(const Sequence& s) const {
    const auto& p = s.request->params;
    const auto token = s.tokens.back();
    if (!p.ignore_eos && std::find(eos_.begin(), eos_.end(), token) != eos_.end()) return FinishReason::eos;
    if (std::find(p.stop_token_ids.begin(), p.stop_token_ids.end(), token) != p.stop_token_ids.end()) {
      return FinishReason::stop_token;
    }
    if (s.request->stop &&
        s.request->stop->completes_stop(std::span<const std::int64_t>(s.tokens).subspan(s.request->prompt.size()))) {
      return FinishReason::stop_string;
    }
    if (s.num_output() >= p.max_tokens) return FinishReason::length;
    return FinishReason::none;
  }

  void retire(Sequence* s, FinishReason reason, StepStats& stats) {
    allocator_->release_all(s->blocks);
    running_.erase(std::find(running_.begin(), running_.end(), s));
    Request& r = *s->request;
    auto& res = r.results[static_cast<std::size_t>(s->sample)];
    res.tokens.assign(s->tokens.begin() + static_cast<std::ptrdiff_t>(r.prompt.size()), s->tokens.end());
    res.log_probs = std::move(s->log_probs);
    res.finish_reason = reason;
    sequences_.erase(std::find_if(sequences_.begin(), sequences_.end(), [&](const auto& p) { return p.get() == s; }));
    if (--r.unfinished == 0 && r.pending_forks == 0) {
      finished_.emplace(r.id, RequestResult{r.id, std::move(r.results)});
      requests_.erase(r.id);
      ++stats.finished_requests;
    }
  }

  models::CausalLM lm_;
  EngineOptions options_;
  std::vector<std::int64_t> eos_;
  std::optional<KVPool> pool_;
  std::optional<BlockAllocator> allocator_;
  std::map<std::int64_t, std::unique_ptr<Request>> requests_;
  std::vector<std::unique_ptr<Sequence>> sequences_;
  std::vector<Sequence*> running_;  // priority order: earliest arrival first
  std::deque<Sequence*> waiting_;   // preempted sequences go to the front
  std::map<std::int64_t, RequestResult> finished_;
  std::int64_t next_request_id_ = 0;
  bool static_wave_open_ = false;
  EngineStats life_;
};

}  // namespace verl::rollout
