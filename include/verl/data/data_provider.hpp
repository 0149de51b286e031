#pragma once
//! \file
//! verl::data::DataProvider: batches of a dataset in seeded shuffled order, built ahead by worker threads, with
//! an exact resume position. It plays the part of verl's train dataloader (StatefulDataLoader over
//! RandomSampler, drop_last=True; verl/trainer/main_ppo.py create_rl_sampler and ray_trainer.py).
//!
//! \code
//! auto ds = std::make_shared<const verl::data::RLDataset>(verl::data::RLDataset::load(path, tok, opts, verl::chat::qwen2_5));
//! verl::data::DataProvider provider(ds, {.batch_size = 256, .seed = 1});
//! while (auto batch = provider.next()) trainer.step(*batch);   // PromptBatch: Prompts + ItemInfo
//! checkpoint["data"] = provider.state();                        // ... later: DataProvider(ds, opts, state)
//! \endcode
//!
//! Order: batch b of epoch e holds the examples order_e[b*B, (b+1)*B), where order_e is the (e+1)-th
//! `torch.randperm(N, generator=g)` drawn from a CPU generator seeded with `seed` (no shuffle: 0..N-1). This
//! is exactly the order of torch's RandomSampler with that generator, which verl uses; the default seed is
//! torch.Generator's default seed, i.e. verl's `data.seed: null`. Epoch e's order depends on (seed, e) only.
//!
//! Prefetch: `num_workers` threads build (collate) batches into a bounded buffer of at most `prefetch_factor`
//! batches ahead of the consumer; next() returns them in order and normally does not wait. An exception thrown
//! while building a batch is rethrown by the next() that reaches that batch (and by every later call: the
//! position stays on it, so state() still names it). The destructor stops and joins the workers, also when
//! the buffer is full. `num_workers = 0` builds each batch inside next().
//!
//! Resume: state() is the position of the next batch next() will return (not of what the workers built ahead);
//! a DataProvider constructed with that state over the same dataset yields exactly the batches the original
//! would have yielded next, across epoch boundaries.

#include "verl/core/errors.hpp"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/randperm_ops.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <concepts>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

namespace verl::data {

//! A dataset a DataProvider can batch: a size and a const, thread-safe `collate(indices)` building the batch
//! of those examples in that order.
//!
//! Satisfied when, for `const D& d` and `std::span<const std::size_t> idx`: `typename D::Batch` names the batch
//! type, `d.size()` converts to std::size_t, and `d.collate(idx)` returns D::Batch.
//! Laws: collate is deterministic and may be called concurrently from several threads.
//! Models: RLDataset, DPODataset, KTODataset, SFTDataset.
template <class D>
concept BatchDataset = requires(const D& d, std::span<const std::size_t> idx) {
  typename D::Batch;
  { d.size() } -> std::convertible_to<std::size_t>;
  { d.collate(idx) } -> std::same_as<typename D::Batch>;
};

//! Options of DataProvider, named as verl's dataloader settings.
struct DataProviderOptions {
  std::size_t batch_size = 1;            //!< examples per batch (verl's data.train_batch_size); >= 1
  bool shuffle = true;                   //!< verl's data.shuffle
  std::uint64_t seed = 67280421310721u;  //!< verl's data.seed; default = torch.Generator's (data.seed: null)
  bool drop_last = true;                 //!< drop the last incomplete batch of an epoch (verl's train loader)
  std::size_t num_workers = 1;           //!< threads building batches; 0 = build in next()
  std::size_t prefetch_factor = 2;       //!< batches built ahead of the consumer at most; >= 1
  std::size_t epochs = 0;                //!< next() returns nullopt after this many epochs; 0 = never

  //! Throws ConfigError naming the first field out of range.
  void validate() const {
    verl::detail::check<ConfigError>(batch_size >= 1, "verl::data::DataProviderOptions: `batch_size` is 0, expected >= 1");
    verl::detail::check<ConfigError>(prefetch_factor >= 1,
                                     "verl::data::DataProviderOptions: `prefetch_factor` is 0, expected >= 1");
  }
};

//! What a DataProvider has done so far.
struct DataProviderStats {
  double wait_seconds = 0.0;         //!< total time next() waited for a batch (building it, when num_workers = 0)
  std::size_t batches_produced = 0;  //!< batches built (including ones built ahead and not yet consumed)
  std::size_t batches_consumed = 0;  //!< batches returned by next() since construction
  std::size_t lines_skipped = 0;     //!< malformed lines the dataset skipped at load (0 if it has no report())
};

//! Hands out the batches of a BatchDataset; see the file comment for order, prefetch and resume.
//! One consumer thread calls next(); state() and stats() may be called from any thread.
template <BatchDataset D>
class DataProvider {
 public:
  using Batch = typename D::Batch;

  //! Starts the workers. `resume` is null for a fresh start, or a state() of a provider over the same dataset
  //! with the same batch_size, shuffle, seed and drop_last (ConfigError naming the field that differs).
  DataProvider(std::shared_ptr<const D> dataset, DataProviderOptions options, const nlohmann::json& resume = nullptr)
      : dataset_(std::move(dataset)), options_(options) {
    verl::detail::check<ConfigError>(dataset_ != nullptr, "verl::data::DataProvider: the dataset is null");
    options_.validate();
    size_ = static_cast<std::size_t>(dataset_->size());
    per_epoch_ = options_.drop_last ? size_ / options_.batch_size
                                    : (size_ + options_.batch_size - 1) / options_.batch_size;
    verl::detail::check<ConfigError>(per_epoch_ >= 1, "verl::data::DataProvider: the dataset has ", size_,
                                     " examples, fewer than batch_size = ", options_.batch_size,
                                     (options_.drop_last ? " with drop_last = true" : ""),
                                     ", so an epoch has no batch; expected at least one batch per epoch");
    if (!resume.is_null()) restore(resume);
    claim_ = consumed_;
    consumed_epoch_hint_ = consumed_ / per_epoch_;
    generator_ = at::make_generator<at::CPUGeneratorImpl>(options_.seed);
    try {
      for (std::size_t w = 0; w < options_.num_workers; ++w) workers_.emplace_back([this] { work(); });
    } catch (...) {  // a thread could not start: stop those that did, as the destructor would
      shutdown();
      throw;
    }
  }

  DataProvider(const DataProvider&) = delete;
  DataProvider& operator=(const DataProvider&) = delete;

  //! Stops the workers (a batch being built is finished first) and joins them.
  ~DataProvider() { shutdown(); }

  //! The next batch, or nullopt once `epochs` epochs are done. Rethrows an exception of building the batch.
  [[nodiscard]] std::optional<Batch> next() {
    std::unique_lock lock(mutex_);
    if (options_.epochs != 0 && consumed_ >= options_.epochs * per_epoch_) return std::nullopt;
    const std::size_t k = consumed_;
    const auto start = std::chrono::steady_clock::now();
    if (options_.num_workers == 0 && !ready_.contains(k)) {
      lock.unlock();
      auto built = build(k);
      lock.lock();
      ++produced_;
      ready_.emplace(k, std::move(built));
    }
    ready_cv_.wait(lock, [&] { return ready_.contains(k); });
    wait_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    auto it = ready_.find(k);
    if (std::holds_alternative<std::exception_ptr>(it->second))
      std::rethrow_exception(std::get<std::exception_ptr>(it->second));  // stays: later calls rethrow too
    Batch batch = std::move(std::get<Batch>(it->second));
    ready_.erase(it);
    ++consumed_;
    ++consumed_here_;
    consumed_epoch_hint_ = consumed_ / per_epoch_;
    lock.unlock();
    space_.notify_all();
    return batch;
  }

  //! The position of the next batch next() returns: {"epoch", "batches_consumed" (within that epoch), "seed",
  //! "shuffle", "batch_size", "drop_last", "dataset_size", "version"}. Small; store it with checkpoints.
  [[nodiscard]] nlohmann::json state() const {
    std::lock_guard lock(mutex_);
    return {{"version", 1},
            {"epoch", consumed_ / per_epoch_},
            {"batches_consumed", consumed_ % per_epoch_},
            {"seed", options_.seed},
            {"shuffle", options_.shuffle},
            {"batch_size", options_.batch_size},
            {"drop_last", options_.drop_last},
            {"dataset_size", size_}};
  }

  [[nodiscard]] DataProviderStats stats() const {
    std::lock_guard lock(mutex_);
    DataProviderStats s;
    s.wait_seconds = wait_seconds_;
    s.batches_produced = produced_;
    s.batches_consumed = consumed_here_;
    if constexpr (requires { dataset_->report().skip.skipped; })
      s.lines_skipped = static_cast<std::size_t>(dataset_->report().skip.skipped);
    return s;
  }

  //! Batches in one epoch: N / B with drop_last, else ceil(N / B).
  [[nodiscard]] std::size_t batches_per_epoch() const { return per_epoch_; }
  //! The epoch of the next batch (0-based).
  [[nodiscard]] std::size_t epoch() const {
    std::lock_guard lock(mutex_);
    return consumed_ / per_epoch_;
  }
  [[nodiscard]] const D& dataset() const { return *dataset_; }
  [[nodiscard]] const DataProviderOptions& options() const { return options_; }

  //! The example indices of batch `batch` of epoch `epoch` (what collate receives); deterministic in
  //! (seed, epoch, batch).
  [[nodiscard]] std::vector<std::size_t> batch_indices(std::size_t epoch, std::size_t batch) const {
    verl::detail::check<ConfigError>(batch < per_epoch_, "verl::data::DataProvider::batch_indices: batch ", batch,
                                     " is out of range, expected < ", per_epoch_, " batches per epoch");
    const auto order = epoch_order(epoch);
    const std::size_t begin = batch * options_.batch_size, end = std::min(begin + options_.batch_size, size_);
    std::vector<std::size_t> out;
    out.reserve(end - begin);
    for (std::size_t i = begin; i < end; ++i) out.push_back(order ? static_cast<std::size_t>((*order)[i]) : i);
    return out;
  }

 private:
  using Slot = std::variant<Batch, std::exception_ptr>;

  void shutdown() {
    {
      std::lock_guard lock(mutex_);
      stop_ = true;
    }
    space_.notify_all();
    ready_cv_.notify_all();
    for (auto& t : workers_) t.join();
  }

  void restore(const nlohmann::json& s) {
    const auto field = [&](const char* key) -> const nlohmann::json& {
      verl::detail::check<ConfigError>(s.is_object() && s.contains(key), "verl::data::DataProvider: the resume state ",
                                       "has no \"", key, "\"; expected the JSON that DataProvider::state() returned");
      return s.at(key);
    };
    // A non-negative integer: parsed JSON holds it as unsigned, a json built in memory may hold it as signed.
    const auto natural = [](const nlohmann::json& v) {
      return v.is_number_unsigned() || (v.is_number_integer() && v.get<std::int64_t>() >= 0);
    };
    const auto same = [&](const char* key, const auto& mine) {
      using V = std::remove_cvref_t<decltype(mine)>;
      const nlohmann::json& v = field(key);
      bool ok = false;
      if constexpr (std::is_same_v<V, bool>) ok = v.is_boolean() && v.get<bool>() == mine;
      else ok = natural(v) && v.get<std::uint64_t>() == static_cast<std::uint64_t>(mine);
      verl::detail::check<ConfigError>(ok, "verl::data::DataProvider: the resume state has ", key, " = ", v.dump(),
                                       ", this provider has ", key, " = ", nlohmann::json(mine).dump(),
                                       "; resume needs the same dataset and batching options");
    };
    same("version", std::size_t{1});
    same("dataset_size", size_);
    same("batch_size", options_.batch_size);
    same("shuffle", options_.shuffle);
    same("drop_last", options_.drop_last);
    if (options_.shuffle) same("seed", options_.seed);
    const nlohmann::json& e = field("epoch");
    const nlohmann::json& b = field("batches_consumed");
    verl::detail::check<ConfigError>(natural(e) && natural(b) && b.get<std::uint64_t>() < per_epoch_,
                                     "verl::data::DataProvider: the resume state has epoch = ", e.dump(),
                                     ", batches_consumed = ", b.dump(), "; expected non-negative integers with "
                                     "batches_consumed < ", per_epoch_, " (batches per epoch)");
    consumed_ = static_cast<std::size_t>(e.get<std::uint64_t>()) * per_epoch_ + static_cast<std::size_t>(b.get<std::uint64_t>());
  }

  //! The shuffled order of `epoch` (null without shuffle), drawn by replaying the generator up to it.
  std::shared_ptr<const std::vector<std::int64_t>> epoch_order(std::size_t epoch) const {
    if (!options_.shuffle) return nullptr;
    std::lock_guard lock(order_mutex_);
    if (const auto it = orders_.find(epoch); it != orders_.end()) return it->second;
    if (epoch < generated_epochs_) {  // an old epoch (batch_indices of the past): replay from the seed
      auto gen = at::make_generator<at::CPUGeneratorImpl>(options_.seed);
      std::shared_ptr<const std::vector<std::int64_t>> order;
      for (std::size_t e = 0; e <= epoch; ++e) order = draw(gen);
      return order;
    }
    std::shared_ptr<const std::vector<std::int64_t>> order;
    while (generated_epochs_ <= epoch) {
      order = draw(generator_);
      orders_[generated_epochs_++] = order;
    }
    // Keep the orders of the consumer's epoch and later only (workers never build behind the consumer).
    const std::size_t oldest = std::min(epoch, consumed_epoch_hint_.load());
    orders_.erase(orders_.begin(), orders_.lower_bound(oldest));
    return order;
  }

  std::shared_ptr<const std::vector<std::int64_t>> draw(at::Generator& gen) const {
    const auto perm = at::_ops::randperm_generator::call(static_cast<std::int64_t>(size_), gen, at::kLong,
                                                         std::nullopt, at::kCPU, std::nullopt);  // (N,)
    const auto* p = perm.template data_ptr<std::int64_t>();
    return std::make_shared<const std::vector<std::int64_t>>(p, p + size_);
  }

  Slot build(std::size_t k) const {
    try {
      const auto indices = batch_indices(k / per_epoch_, k % per_epoch_);
      return Slot(std::in_place_index<0>, dataset_->collate(std::span<const std::size_t>(indices)));
    } catch (...) {
      return Slot(std::in_place_index<1>, std::current_exception());
    }
  }

  void work() {
    std::unique_lock lock(mutex_);
    for (;;) {
      space_.wait(lock, [&] {
        const bool more = options_.epochs == 0 || claim_ < options_.epochs * per_epoch_;
        return stop_ || (more && claim_ < consumed_ + options_.prefetch_factor);
      });
      if (stop_) return;
      const std::size_t k = claim_++;
      lock.unlock();
      Slot slot = build(k);
      lock.lock();
      ++produced_;
      ready_.emplace(k, std::move(slot));
      ready_cv_.notify_all();
    }
  }

  std::shared_ptr<const D> dataset_;
  DataProviderOptions options_;
  std::size_t size_ = 0;
  std::size_t per_epoch_ = 0;

  mutable std::mutex mutex_;  // guards everything below up to ready_
  std::condition_variable space_;     // workers: a slot is free, or stop
  std::condition_variable ready_cv_;  // consumer: a batch is ready
  bool stop_ = false;
  std::size_t consumed_ = 0;       // global index (epoch * per_epoch + batch) of the next batch to return
  std::size_t claim_ = 0;          // next global index a worker builds
  std::size_t produced_ = 0;
  std::size_t consumed_here_ = 0;
  double wait_seconds_ = 0.0;
  std::map<std::size_t, Slot> ready_;

  mutable std::mutex order_mutex_;  // guards the generator and the cached epoch orders
  mutable at::Generator generator_;
  mutable std::size_t generated_epochs_ = 0;
  mutable std::map<std::size_t, std::shared_ptr<const std::vector<std::int64_t>>> orders_;
  mutable std::atomic<std::size_t> consumed_epoch_hint_{0};

  std::vector<std::thread> workers_;  // last: started after everything above exists, joined first
};

//! `DataProvider provider(std::make_shared<RLDataset>(...), options)` deduces DataProvider<RLDataset>.
template <class D>
DataProvider(std::shared_ptr<D>, DataProviderOptions, const nlohmann::json& = nullptr)
    -> DataProvider<std::remove_const_t<D>>;

}  // namespace verl::data
