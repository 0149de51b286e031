#pragma once
//! \file
//! verl::dist::PendingCollective: the handle of a collective started without waiting for it, so that
//! communication overlaps computation (a bucket's gradient all-reduce during the rest of the backward pass).

#include <functional>
#include <utility>

namespace verl::dist {

//! A collective that was started and not yet waited for (ProcessGroupCommunicator::all_reduce_async), like
//! the Work handle of torch.distributed's async_op=True. wait() blocks until it completes, bounded by the
//! group's timeout, finishes the result (avg's division on backends without a native average) and throws
//! CommunicationError when the collective failed or timed out. A handle destroyed without wait() still waits
//! (errors are then dropped: call wait() to see them), so the tensor is never written behind the caller's back.
class PendingCollective {
 public:
  PendingCollective() = default;
  PendingCollective(const PendingCollective&) = delete;
  PendingCollective& operator=(const PendingCollective&) = delete;
  PendingCollective(PendingCollective&& o) noexcept { *this = std::move(o); }
  PendingCollective& operator=(PendingCollective&& o) noexcept {
    if (this != &o) {
      drop();
      wait_ = std::move(o.wait_);
      poll_ = std::move(o.poll_);
      o.wait_ = nullptr;
      o.poll_ = nullptr;
    }
    return *this;
  }
  ~PendingCollective() { drop(); }

  //! Blocks until the collective is done (a no-op once waited for, or for a default-constructed handle).
  void wait() {
    if (!wait_) return;
    auto w = std::move(wait_);
    wait_ = nullptr;
    poll_ = nullptr;
    w();
  }
  //! True when there is nothing left to wait for (the collective finished, or wait() already ran). Does not
  //! finish the result: call wait() before reading the tensor.
  [[nodiscard]] bool is_completed() const { return !poll_ || poll_(); }
  //! False once waited for (and for a default-constructed handle).
  [[nodiscard]] bool pending() const noexcept { return static_cast<bool>(wait_); }

  //! For communicators: `wait` blocks and finishes (throwing on failure); `poll` says whether it is done.
  PendingCollective(std::function<void()> wait, std::function<bool()> poll)
      : wait_(std::move(wait)), poll_(std::move(poll)) {}

 private:
  void drop() noexcept {
    try {
      wait();
    } catch (...) {  // NOLINT(bugprone-empty-catch): documented; the tensor is no longer being written
    }
  }

  std::function<void()> wait_;
  std::function<bool()> poll_;
};

}  // namespace verl::dist
