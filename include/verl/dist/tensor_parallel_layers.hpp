#pragma once
//! \file
//! Tensor parallelism in Megatron-LM's layout (Shoeybi et al. 2019; megatron/core/tensor_parallel/mappings.py,
//! layers.py, cross_entropy.py), over the tp sub-group of a DeviceMesh or any verl::Communicator:
//!
//! - the autograd-aware collectives: copy_to_tensor_parallel_region (identity forward, all-reduce backward),
//!   reduce_from_tensor_parallel_region (all-reduce forward, identity backward),
//!   gather_from_tensor_parallel_region (all-gather along the last dimension forward, split backward),
//!   scatter_to_tensor_parallel_region (split forward, all-gather backward), each a
//!   torch::autograd::Function specialisation;
//! - ColumnParallelLinear (output features split), RowParallelLinear (input features split, partial outputs
//!   all-reduced, bias added once after the reduction), VocabParallelEmbedding (vocabulary rows split, ids
//!   outside the shard masked to zero, then all-reduced);
//! - vocab_parallel_log_probs: log p(target) and the entropy of softmax(logits) from vocabulary-sharded logits
//!   (Megatron's vocab_parallel_cross_entropy; verl's vocab_parallel_log_probs_from_logits and
//!   vocab_parallel_entropy), with the gradient of the unsharded log_softmax/entropy.
//!
//! Shards are equal contiguous slices: rank r of a group of size tp holds slice r of tp along the split
//! dimension (`torch.chunk`). A layer may also have fewer distinct shards than ranks (ShardSpec::shards, e.g.
//! grouped-query key/value heads when tp exceeds their count): rank r then holds slice r / (tp / shards), the
//! ranks holding one slice are replicas, and the gradient of a replicated parameter is summed over its replicas
//! in the backward pass (sum_gradient_over_replicas; ColumnParallelLinearOptions::sum_replica_gradients), so
//! that every replica holds the gradient of the unsharded parameter's slice.
//!
//! ```cpp
//! auto groups = verl::dist::MeshCommunicators(world, mesh);
//! verl::dist::TensorParallelGroup tp(groups["tp"]);           // type-erased, non-owning
//! verl::dist::ColumnParallelLinear up(tp, full.weight, full.bias);           // (out/tp, in) on each rank
//! verl::dist::RowParallelLinear down(tp, full2.weight, full2.bias, verl::dist::RowParallelLinearOptions{.input_is_parallel = true});
//! auto y = down(at::gelu(up(x)));                             // x (B,T,in) replicated -> y (B,T,out) replicated
//! ```

#include "verl/concepts/communicator.hpp"
#include "verl/core/errors.hpp"

#include <ATen/TensorOperators.h>
#include <ATen/core/Tensor.h>
#include <ATen/core/grad_mode.h>
#include <ATen/core/ivalue.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/embedding.h>
#include <ATen/ops/linear.h>
#include <ATen/ops/stack.h>
#include <ATen/ops/where.h>
#include <ATen/ops/zeros.h>
#include <ATen/ops/zeros_like.h>
#include <c10/util/intrusive_ptr.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace verl::dist {

//! A type-erased, non-owning handle to the tensor-parallel group: any verl::Communicator (a
//! ProcessGroupCommunicator sub-group from MeshCommunicators["tp"], SingleProcessCommunicator, ...).
//! Copies refer to the same communicator, which must outlive the handle, every layer built on it, and every
//! autograd graph recorded through them (their backward passes communicate).
class TensorParallelGroup {
 public:
  template <Communicator C>
  explicit TensorParallelGroup(C& comm) : impl_(std::make_shared<Model<C>>(comm)) {}

  //! This rank's index in the group (its tp coordinate).
  [[nodiscard]] int rank() const { return impl_->rank(); }
  //! The tensor-parallel size.
  [[nodiscard]] int size() const { return impl_->size(); }
  //! In-place all-reduce over the group.
  void all_reduce(at::Tensor& t, ReduceOp op) const { impl_->all_reduce(t, op); }
  //! Every rank's `t` (of one shape on every rank), in rank order.
  [[nodiscard]] std::vector<at::Tensor> all_gather(const at::Tensor& t) const {
    std::vector<at::Tensor> out;
    impl_->all_gather(out, t);
    return out;
  }

 private:
  struct Concept {
    virtual ~Concept() = default;
    [[nodiscard]] virtual int rank() const = 0;
    [[nodiscard]] virtual int size() const = 0;
    virtual void all_reduce(at::Tensor& t, ReduceOp op) const = 0;
    virtual void all_gather(std::vector<at::Tensor>& out, const at::Tensor& t) const = 0;
  };
  template <class C>
  struct Model final : Concept {
    explicit Model(C& c) : comm(&c) {}
    [[nodiscard]] int rank() const override { return static_cast<int>(comm->rank()); }
    [[nodiscard]] int size() const override { return static_cast<int>(comm->world_size()); }
    void all_reduce(at::Tensor& t, ReduceOp op) const override { comm->all_reduce(t, op); }
    void all_gather(std::vector<at::Tensor>& out, const at::Tensor& t) const override { comm->all_gather(out, t); }
    C* comm;
  };
  std::shared_ptr<const Concept> impl_;
};

//! How one parameter is laid out over the tp ranks: split into `shards` equal contiguous slices along `dim`,
//! rank r holding slice r / (tp / shards). shards == tp: every rank its own slice (Megatron's layout);
//! shards == 1: replicated (dim unused); 1 < shards < tp: each slice replicated on tp / shards ranks.
struct ShardSpec {
  std::int64_t dim = 0;
  int shards = 1;

  [[nodiscard]] bool replicated() const noexcept { return shards == 1; }
  friend bool operator==(const ShardSpec&, const ShardSpec&) = default;
};

}  // namespace verl::dist

// Implementation details live in verl::detail: a verl::dist::detail namespace would hide verl::detail from the
// unqualified `detail::` names of the other verl/dist headers.
namespace verl::detail {

inline void check_shard_spec(const dist::ShardSpec& spec, int tp, std::string_view what) {
  verl::detail::check<ConfigError>(spec.shards >= 1 && tp >= 1 && tp % spec.shards == 0, what, ": ", spec.shards,
                                   " shard(s) over a tensor-parallel group of ", tp,
                                   " rank(s), expected a number of shards that divides the tensor-parallel size");
}

//! The slice index rank `rank` holds under `spec`.
[[nodiscard]] inline int shard_index(const dist::ShardSpec& spec, int rank, int tp) { return rank / (tp / spec.shards); }

}  // namespace verl::detail

namespace verl::dist {

//! This rank's slice of `full` under `spec`, in storage of its own (a contiguous copy, detached).
//! \param what names the tensor in errors, e.g. "model.layers.0.self_attn.q_proj.weight".
//! \throws verl::ConfigError when full.size(spec.dim) is not divisible by spec.shards, or spec.shards does
//!         not divide tp; verl::ShapeError when `full` is undefined or has no dimension spec.dim.
[[nodiscard]] inline at::Tensor shard_tensor(const at::Tensor& full, const ShardSpec& spec, int rank, int tp,
                                             std::string_view what) {
  verl::detail::check<ShapeError>(full.defined(), what, ": the tensor to shard is undefined");
  detail::check_shard_spec(spec, tp, what);
  verl::detail::check<ConfigError>(rank >= 0 && rank < tp, what, ": rank ", rank, ", expected a rank in [0, ", tp, ")");
  if (spec.replicated()) return full.detach().clone(at::MemoryFormat::Contiguous);
  verl::detail::check<ShapeError>(spec.dim >= 0 && spec.dim < full.dim(), what, ": has shape ", full.sizes(),
                                  ", expected a dimension ", spec.dim, " to split");
  const auto extent = full.size(spec.dim);
  verl::detail::check<ConfigError>(extent % spec.shards == 0, what, ": dimension ", spec.dim, " has size ", extent,
                                   ", which is not divisible by the ", spec.shards,
                                   " tensor-parallel shards, expected a multiple of ", spec.shards);
  const auto width = extent / spec.shards;
  return full.detach()
      .narrow(spec.dim, detail::shard_index(spec, rank, tp) * width, width)
      .clone(at::MemoryFormat::Contiguous);
}

//! The unsharded tensor from every rank's `local` slice under `spec`: collective over `group` when
//! spec.shards > 1 (an all-gather; one replica of each slice is used), a detached copy of `local` otherwise.
[[nodiscard]] inline at::Tensor gather_tensor(const at::Tensor& local, const ShardSpec& spec,
                                              const TensorParallelGroup& group, std::string_view what) {
  verl::detail::check<ShapeError>(local.defined(), what, ": the shard to gather is undefined");
  detail::check_shard_spec(spec, group.size(), what);
  if (spec.replicated()) return local.detach().clone(at::MemoryFormat::Contiguous);
  const auto parts = group.all_gather(local.detach().contiguous());
  const int replicas = group.size() / spec.shards;
  std::vector<at::Tensor> slices;
  for (int s = 0; s < spec.shards; ++s) slices.push_back(parts[static_cast<std::size_t>(s * replicas)]);
  return at::cat(slices, spec.dim);
}

}  // namespace verl::dist

namespace verl::detail {

//! Carries the group through AutogradContext::saved_data (an IValue capsule).
struct GroupCapsule : torch::CustomClassHolder {
  explicit GroupCapsule(dist::TensorParallelGroup g) : group(std::move(g)) {}
  dist::TensorParallelGroup group;
};
[[nodiscard]] inline c10::IValue hold_group(const dist::TensorParallelGroup& g) {
  return c10::IValue::make_capsule(c10::make_intrusive<GroupCapsule>(g));
}
[[nodiscard]] inline dist::TensorParallelGroup held_group(const c10::IValue& v) {
  const auto holder = v.toCapsule();
  return static_cast<const GroupCapsule*>(holder.get())->group;
}

//! A summed copy of `t` (never aliasing an autograd buffer).
[[nodiscard]] inline at::Tensor all_reduced_copy(const at::Tensor& t, const dist::TensorParallelGroup& group) {
  auto out = t.clone(at::MemoryFormat::Contiguous);
  group.all_reduce(out, ReduceOp::sum);
  return out;
}

//! Identity forward, all-reduce (sum) backward: Megatron's _CopyToModelParallelRegion.
struct CopyToTensorParallelRegion : torch::autograd::Function<CopyToTensorParallelRegion> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, const dist::TensorParallelGroup& g) {
    ctx->saved_data["group"] = hold_group(g);
    return x;
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    return {all_reduced_copy(grads[0], held_group(ctx->saved_data["group"])), at::Tensor()};
  }
};

//! All-reduce (sum) forward, identity backward: Megatron's _ReduceFromModelParallelRegion.
struct ReduceFromTensorParallelRegion : torch::autograd::Function<ReduceFromTensorParallelRegion> {
  static at::Tensor forward(torch::autograd::AutogradContext*, const at::Tensor& x, const dist::TensorParallelGroup& g) {
    return all_reduced_copy(x, g);
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext*,
                                                 torch::autograd::variable_list grads) {
    return {grads[0], at::Tensor()};
  }
};

//! All-gather along the last dimension forward (one replica of each of `shards` slices), split backward:
//! Megatron's _GatherFromModelParallelRegion. With replicas, only the first replica of a slice receives its
//! gradient (the others get zeros), so that summing over replicas counts it once.
struct GatherFromTensorParallelRegion : torch::autograd::Function<GatherFromTensorParallelRegion> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, const dist::TensorParallelGroup& g,
                            int shards) {
    ctx->saved_data["group"] = hold_group(g);
    ctx->saved_data["shards"] = shards;
    ctx->saved_data["width"] = x.size(-1);
    return dist::gather_tensor(x, dist::ShardSpec{x.dim() - 1, shards}, g, "verl::dist::gather_from_tensor_parallel_region");
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto g = held_group(ctx->saved_data["group"]);
    const int shards = static_cast<int>(ctx->saved_data["shards"].toInt());
    const auto width = ctx->saved_data["width"].toInt();
    const int replicas = g.size() / shards;
    const auto& grad = grads[0];                                                       // (...,shards*width)
    at::Tensor mine = grad.narrow(-1, (g.rank() / replicas) * width, width).contiguous();  // (...,width)
    if (g.rank() % replicas != 0) mine = at::zeros_like(mine);
    return {mine, at::Tensor(), at::Tensor()};
  }
};

//! This rank's slice of the last dimension forward, all-gather backward: Megatron's
//! _ScatterToModelParallelRegion.
struct ScatterToTensorParallelRegion : torch::autograd::Function<ScatterToTensorParallelRegion> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, const dist::TensorParallelGroup& g) {
    ctx->saved_data["group"] = hold_group(g);
    return dist::shard_tensor(x, dist::ShardSpec{x.dim() - 1, g.size()}, g.rank(), g.size(),
                        "verl::dist::scatter_to_tensor_parallel_region: the input's last dimension");
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto g = held_group(ctx->saved_data["group"]);
    return {at::cat(g.all_gather(grads[0].contiguous()), -1), at::Tensor()};
  }
};

//! Identity forward; backward sums the gradient over the ranks holding the same slice (replicas): with
//! `shards` == 1 an all-reduce over the group, otherwise an all-reduce of a (shards, ...) buffer holding
//! this rank's gradient in its slice's row.
struct SumOverReplicas : torch::autograd::Function<SumOverReplicas> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, const dist::TensorParallelGroup& g,
                            int shards) {
    ctx->saved_data["group"] = hold_group(g);
    ctx->saved_data["shards"] = shards;
    return x;
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto g = held_group(ctx->saved_data["group"]);
    const int shards = static_cast<int>(ctx->saved_data["shards"].toInt());
    if (shards == 1) return {all_reduced_copy(grads[0], g), at::Tensor(), at::Tensor()};
    std::vector<std::int64_t> shape{shards};
    for (auto s : grads[0].sizes()) shape.push_back(s);
    auto buffer = at::zeros(shape, grads[0].options());  // (shards,...)
    const auto slot = shard_index(dist::ShardSpec{0, shards}, g.rank(), g.size());
    buffer.select(0, slot).copy_(grads[0]);
    g.all_reduce(buffer, ReduceOp::sum);
    return {buffer.select(0, slot).clone(), at::Tensor(), at::Tensor()};
  }
};

//! Identity forward; backward passes the gradient through (`pass`) or replaces it with zeros. The node is in
//! the graph on every rank either way, so every rank's backward runs the same collectives in the same order.
struct GateGradient : torch::autograd::Function<GateGradient> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, bool pass) {
    ctx->saved_data["pass"] = pass;
    return x;
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    if (ctx->saved_data["pass"].toBool()) return {grads[0], at::Tensor()};
    return {at::zeros_like(grads[0]), at::Tensor()};
  }
};

}  // namespace verl::detail

namespace verl::dist {

//! Identity forward; the backward all-reduces (sums) the gradient over the group. Apply it where a replicated
//! tensor enters tensor-parallel computation (the input of column-parallel layers).
[[nodiscard]] inline at::Tensor copy_to_tensor_parallel_region(const at::Tensor& x, const TensorParallelGroup& group) {
  if (group.size() == 1) return x;
  return detail::CopyToTensorParallelRegion::apply(x, group);
}

//! All-reduce (sum) forward over the group; identity backward. Sums the partial outputs of row-parallel layers.
[[nodiscard]] inline at::Tensor reduce_from_tensor_parallel_region(const at::Tensor& x, const TensorParallelGroup& group) {
  if (group.size() == 1) return x;
  return detail::ReduceFromTensorParallelRegion::apply(x, group);
}

//! x (..., w) on every rank -> (..., shards*w): the ranks' slices concatenated along the last dimension (one
//! replica per slice when shards < group size); the backward hands each rank its slice's gradient.
[[nodiscard]] inline at::Tensor gather_from_tensor_parallel_region(const at::Tensor& x, const TensorParallelGroup& group,
                                                                   int shards = 0) {
  if (shards == 0) shards = group.size();
  detail::check_shard_spec(ShardSpec{0, shards}, group.size(), "verl::dist::gather_from_tensor_parallel_region");
  if (shards == 1) return x;
  return detail::GatherFromTensorParallelRegion::apply(x, group, shards);
}

//! x (..., W) replicated -> (..., W/tp): this rank's slice of the last dimension; the backward all-gathers the
//! slices' gradients. \throws verl::ConfigError when W is not divisible by the group size.
[[nodiscard]] inline at::Tensor scatter_to_tensor_parallel_region(const at::Tensor& x, const TensorParallelGroup& group) {
  if (group.size() == 1) return x;
  return detail::ScatterToTensorParallelRegion::apply(x, group);
}

//! Identity forward; the backward sums the gradient over the replicas of this rank's slice (all ranks when
//! shards == 1). Apply it to a parameter each replica uses for a different part of the computation (a
//! replicated key/value head serving different query heads, Qwen3's per-head q/k norm weight), so that each
//! replica's gradient is the unsharded parameter's. A no-op when shards == the group size.
[[nodiscard]] inline at::Tensor sum_gradient_over_replicas(const at::Tensor& x, const TensorParallelGroup& group,
                                                           int shards) {
  detail::check_shard_spec(ShardSpec{0, shards}, group.size(), "verl::dist::sum_gradient_over_replicas");
  if (shards == group.size() || !x.defined()) return x;
  return detail::SumOverReplicas::apply(x, group, shards);
}

// ---------------------------------------------------------------------------------------------------------
// Layers

//! Options of ColumnParallelLinear.
struct ColumnParallelLinearOptions {
  //! Return the unsharded output (..., out) on every rank (all-gather) instead of this rank's (..., out/shards).
  bool gather_output = false;
  //! Distinct output slices; 0: the group size (each rank its own). Fewer: tp / shards ranks hold each slice
  //! and its gradients are summed over them (see sum_gradient_over_replicas).
  int shards = 0;
  //! With shards < tp, sum the weight and bias gradients over the replicas in the backward pass (each replica
  //! computed a different part of the loss from its output). false: the caller makes each replica's gradient
  //! complete itself, e.g. by summing the gradient of the output over the replicas (TensorParallelAttention's
  //! replicated key/value heads).
  bool sum_replica_gradients = true;
};

//! y = x A^T + b with A (out, in) split by rows (output features) over the tp ranks: rank r holds A_r
//! (out/shards, in) and b_r (out/shards) and computes y_r = x A_r^T + b_r. The input passes through
//! copy_to_tensor_parallel_region, so its gradient is the sum of every rank's contribution.
class ColumnParallelLinearImpl : public torch::nn::Module {
 public:
  //! Slices this rank's part of the unsharded `full_weight` (out, in) and `full_bias` (out) (undefined: no
  //! bias). Parameters `weight` and `bias` (Hugging Face's names) are copies, detached from the inputs.
  //! \throws verl::ConfigError naming `out_features` when it is not divisible by the number of shards.
  ColumnParallelLinearImpl(TensorParallelGroup group, const at::Tensor& full_weight, const at::Tensor& full_bias = {},
                           ColumnParallelLinearOptions options = {})
      : group_(std::move(group)), options_(options) {
    constexpr std::string_view o = "verl::dist::ColumnParallelLinear";
    if (options_.shards == 0) options_.shards = group_.size();
    detail::check_shard_spec(ShardSpec{0, options_.shards}, group_.size(), o);
    verl::detail::check<ShapeError>(full_weight.defined() && full_weight.dim() == 2, o,
                                    ": the weight must be a (out_features, in_features) matrix");
    in_features_ = full_weight.size(1);
    out_features_ = full_weight.size(0);
    verl::detail::check<ConfigError>(out_features_ % options_.shards == 0, o, ": out_features (", out_features_,
                                     ") is not divisible by the ", options_.shards,
                                     " tensor-parallel shards, expected a multiple of ", options_.shards);
    if (full_bias.defined()) {
      verl::detail::check<ShapeError>(full_bias.dim() == 1 && full_bias.size(0) == out_features_, o, ": the bias has shape ",
                                      full_bias.sizes(), ", expected (", out_features_, ")");
    }
    const auto spec = ShardSpec{0, options_.shards};
    weight = register_parameter("weight", shard_tensor(full_weight, spec, group_.rank(), group_.size(), "weight"));
    if (full_bias.defined()) {
      bias = register_parameter("bias", shard_tensor(full_bias, spec, group_.rank(), group_.size(), "bias"));
    }
  }

  //! x (..., in), the same on every rank -> (..., out) when gather_output, else (..., out/shards).
  at::Tensor forward(const at::Tensor& x) {
    const auto y = local_forward(copy_to_tensor_parallel_region(x, group_));  // (...,out/shards)
    return options_.gather_output ? gather_from_tensor_parallel_region(y, group_, options_.shards) : y;
  }

  //! y_r = x A_r^T + b_r without the input's copy_to_tensor_parallel_region: for layers that share one copied
  //! input (q/k/v, gate/up), so that its gradient is all-reduced once. x (..., in) -> (..., out/shards).
  at::Tensor local_forward(const at::Tensor& x_in_region) {
    const bool sum = options_.sum_replica_gradients;
    const auto w = sum ? sum_gradient_over_replicas(weight, group_, options_.shards) : weight;
    const auto b = sum ? sum_gradient_over_replicas(bias, group_, options_.shards) : bias;
    return at::linear(x_in_region, w, b.defined() ? std::optional<at::Tensor>(b) : std::nullopt);
  }

  //! The unsharded (out, in) weight on every rank (collective).
  [[nodiscard]] at::Tensor full_weight() const { return gather_tensor(weight, weight_spec(), group_, "weight"); }
  //! The unsharded (out) bias on every rank (collective), undefined without a bias.
  [[nodiscard]] at::Tensor full_bias() const {
    return bias.defined() ? gather_tensor(bias, weight_spec(), group_, "bias") : at::Tensor();
  }
  [[nodiscard]] ShardSpec weight_spec() const { return ShardSpec{0, options_.shards}; }
  [[nodiscard]] std::int64_t in_features() const { return in_features_; }
  [[nodiscard]] std::int64_t out_features() const { return out_features_; }
  [[nodiscard]] const ColumnParallelLinearOptions& options() const { return options_; }
  [[nodiscard]] const TensorParallelGroup& group() const { return group_; }

  at::Tensor weight;  // (out/shards, in)
  at::Tensor bias;    // (out/shards) or undefined

 private:
  TensorParallelGroup group_;
  ColumnParallelLinearOptions options_;
  std::int64_t in_features_ = 0, out_features_ = 0;
};
TORCH_MODULE(ColumnParallelLinear);

//! Options of RowParallelLinear.
struct RowParallelLinearOptions {
  //! The input is already this rank's slice (..., in/tp) (the output of a ColumnParallelLinear without
  //! gather_output); otherwise the replicated input is split with scatter_to_tensor_parallel_region.
  bool input_is_parallel = false;
};

//! y = x A^T + b with A (out, in) split by columns (input features): rank r holds A_r (out, in/tp) and
//! computes the partial x_r A_r^T; the partials are summed with reduce_from_tensor_parallel_region and the
//! replicated bias b (out) is added once, after the sum.
class RowParallelLinearImpl : public torch::nn::Module {
 public:
  //! \throws verl::ConfigError naming `in_features` when it is not divisible by the tensor-parallel size.
  RowParallelLinearImpl(TensorParallelGroup group, const at::Tensor& full_weight, const at::Tensor& full_bias = {},
                        RowParallelLinearOptions options = {})
      : group_(std::move(group)), options_(options) {
    constexpr std::string_view o = "verl::dist::RowParallelLinear";
    verl::detail::check<ShapeError>(full_weight.defined() && full_weight.dim() == 2, o,
                                    ": the weight must be a (out_features, in_features) matrix");
    out_features_ = full_weight.size(0);
    in_features_ = full_weight.size(1);
    verl::detail::check<ConfigError>(in_features_ % group_.size() == 0, o, ": in_features (", in_features_,
                                     ") is not divisible by the tensor-parallel size ", group_.size(),
                                     ", expected a multiple of ", group_.size());
    if (full_bias.defined()) {
      verl::detail::check<ShapeError>(full_bias.dim() == 1 && full_bias.size(0) == out_features_, o, ": the bias has shape ",
                                      full_bias.sizes(), ", expected (", out_features_, ")");
    }
    weight = register_parameter("weight", shard_tensor(full_weight, weight_spec(), group_.rank(), group_.size(), "weight"));
    if (full_bias.defined()) bias = register_parameter("bias", full_bias.detach().clone(at::MemoryFormat::Contiguous));
  }

  //! x (..., in) replicated, or (..., in/tp) when input_is_parallel -> (..., out) replicated.
  at::Tensor forward(const at::Tensor& x) {
    const auto x_local = options_.input_is_parallel ? x : scatter_to_tensor_parallel_region(x, group_);  // (...,in/tp)
    verl::detail::check<ShapeError>(x_local.size(-1) == weight.size(1), "verl::dist::RowParallelLinear: the input has ",
                                    x_local.size(-1), " local features, expected in_features / tp = ", weight.size(1));
    const auto partial = at::linear(x_local, weight);                        // (...,out), this rank's share
    const auto out = reduce_from_tensor_parallel_region(partial, group_);    // (...,out)
    return bias.defined() ? out + bias : out;
  }

  [[nodiscard]] at::Tensor full_weight() const { return gather_tensor(weight, weight_spec(), group_, "weight"); }
  [[nodiscard]] at::Tensor full_bias() const { return bias.defined() ? bias.detach().clone() : at::Tensor(); }
  [[nodiscard]] ShardSpec weight_spec() const { return ShardSpec{1, group_.size()}; }
  [[nodiscard]] std::int64_t in_features() const { return in_features_; }
  [[nodiscard]] std::int64_t out_features() const { return out_features_; }
  [[nodiscard]] const TensorParallelGroup& group() const { return group_; }

  at::Tensor weight;  // (out, in/tp)
  at::Tensor bias;    // (out) replicated, or undefined

 private:
  TensorParallelGroup group_;
  RowParallelLinearOptions options_;
  std::int64_t in_features_ = 0, out_features_ = 0;
};
TORCH_MODULE(RowParallelLinear);

//! An embedding table whose vocabulary rows are split over the tp ranks: rank r holds rows
//! [r V/tp, (r+1) V/tp). Ids outside the shard look up row 0 and are masked to zero; the partial embeddings
//! are summed with reduce_from_tensor_parallel_region, so exactly one rank contributes each id's row.
class VocabParallelEmbeddingImpl : public torch::nn::Module {
 public:
  //! \param full_weight (V, hidden). \param padding_idx as torch.nn.Embedding's: that row gets no gradient.
  //! \throws verl::ConfigError naming `vocab_size` when V is not divisible by the tensor-parallel size
  //!         (Megatron pads the vocabulary to a multiple first; pad the checkpoint likewise).
  VocabParallelEmbeddingImpl(TensorParallelGroup group, const at::Tensor& full_weight,
                             std::optional<std::int64_t> padding_idx = std::nullopt)
      : group_(std::move(group)) {
    constexpr std::string_view o = "verl::dist::VocabParallelEmbedding";
    verl::detail::check<ShapeError>(full_weight.defined() && full_weight.dim() == 2, o,
                                    ": the weight must be a (vocab_size, hidden) matrix");
    vocab_size_ = full_weight.size(0);
    verl::detail::check<ConfigError>(vocab_size_ % group_.size() == 0, o, ": vocab_size (", vocab_size_,
                                     ") is not divisible by the tensor-parallel size ", group_.size(),
                                     ", expected a multiple of ", group_.size(),
                                     " (pad the vocabulary, as Megatron's make_vocab_size_divisible_by does)");
    if (padding_idx) {
      verl::detail::check<ConfigError>(*padding_idx >= 0 && *padding_idx < vocab_size_, o, ": padding_idx ",
                                       *padding_idx, ", expected an id in [0, ", vocab_size_, ")");
    }
    padding_idx_ = padding_idx;
    weight = register_parameter("weight", shard_tensor(full_weight, weight_spec(), group_.rank(), group_.size(), "weight"));
  }

  //! ids (...) int64 in [0, V) -> (..., hidden), the same on every rank.
  at::Tensor forward(const at::Tensor& ids) {
    const auto start = vocab_start(), end = start + weight.size(0);
    const auto outside = ids.lt(start).logical_or(ids.ge(end));                    // (...)
    const auto local = (ids - start).masked_fill(outside, 0);                       // (...) in [0, V/tp)
    std::int64_t pad = -1;                                                          // at::embedding's "none"
    if (padding_idx_ && *padding_idx_ >= start && *padding_idx_ < end) pad = *padding_idx_ - start;
    const auto partial = at::embedding(weight, local, pad).masked_fill(outside.unsqueeze(-1), 0.0);  // (...,hidden)
    return reduce_from_tensor_parallel_region(partial, group_);
  }

  //! The first vocabulary id of this rank's rows.
  [[nodiscard]] std::int64_t vocab_start() const { return group_.rank() * weight.size(0); }
  [[nodiscard]] std::int64_t vocab_size() const { return vocab_size_; }
  [[nodiscard]] at::Tensor full_weight() const { return gather_tensor(weight, weight_spec(), group_, "weight"); }
  [[nodiscard]] ShardSpec weight_spec() const { return ShardSpec{0, group_.size()}; }
  [[nodiscard]] const TensorParallelGroup& group() const { return group_; }

  at::Tensor weight;  // (V/tp, hidden)

 private:
  TensorParallelGroup group_;
  std::int64_t vocab_size_ = 0;
  std::optional<std::int64_t> padding_idx_;
};
TORCH_MODULE(VocabParallelEmbedding);

// ---------------------------------------------------------------------------------------------------------
// Vocabulary-parallel log-probs and entropy

//! Per-token results of vocab_parallel_log_probs, shaped like the targets.
struct VocabParallelLogProbs {
  at::Tensor log_probs;  //!< log softmax(logits)[target]
  at::Tensor entropy;    //!< entropy of softmax(logits); undefined unless asked for
};

}  // namespace verl::dist

namespace verl::detail {

inline at::ScalarType vocab_parallel_accumulate(at::ScalarType t) { return t == at::kDouble ? at::kDouble : at::kFloat; }

//! The autograd node. Forward: the global max (all-reduce max), then ONE all-reduce (sum) of the stacked
//! per-row statistics [sum exp(z - m), z_target - m (0 on the ranks not holding the target), sum exp(z - m)
//! (z - m)]: the sum-exp, target-logit and entropy all-reduces of Megatron/verl fused into one message.
//! Backward is local: d log p_t / dz = onehot(t) - p, d H / dz = p (E_p[z] - z).
struct VocabParallelLogProbsFunction : torch::autograd::Function<VocabParallelLogProbsFunction> {
  static torch::autograd::variable_list forward(torch::autograd::AutogradContext* ctx, const at::Tensor& logits,
                                                const at::Tensor& targets, const dist::TensorParallelGroup& g,
                                                bool entropy) {
    const auto acc = vocab_parallel_accumulate(logits.scalar_type());
    const auto width = logits.size(1);
    const auto start = static_cast<std::int64_t>(g.rank()) * width;
    const auto z = logits.to(acc);                                           // (N,Vl)
    auto m = std::get<0>(z.max(1));                                          // (N,) local max
    if (g.size() > 1) g.all_reduce(m, ReduceOp::max);                        // (N,) global max
    const auto zs = z - m.unsqueeze(1);                                      // (N,Vl) <= 0
    const auto e = zs.exp();                                                 // (N,Vl)
    const auto inside = targets.ge(start).logical_and(targets.lt(start + width));  // (N,)
    const auto local_t = (targets - start).masked_fill(inside.logical_not(), 0);   // (N,)
    const auto picked = zs.gather(1, local_t.unsqueeze(1)).squeeze(1).masked_fill(inside.logical_not(), 0.0);  // (N,)
    std::vector<at::Tensor> rows{e.sum(1), picked};
    if (entropy) rows.push_back((e * zs).sum(1));
    auto stats = at::stack(rows);                                            // (2 or 3,N)
    if (g.size() > 1) g.all_reduce(stats, ReduceOp::sum);
    const auto log_sum = stats[0].log();                                     // (N,) log sum exp(z - m)
    auto log_probs = stats[1] - log_sum;                                     // (N,)
    at::Tensor mean_zs, ent;
    if (entropy) {
      mean_zs = stats[2] / stats[0];                                         // (N,) E_p[z - m]
      ent = log_sum - mean_zs;                                               // (N,) lse - E_p[z]
    }
    ctx->set_materialize_grads(false);
    ctx->saved_data["entropy"] = entropy;
    ctx->save_for_backward({logits, local_t, inside, m, log_sum, entropy ? mean_zs : at::Tensor()});
    if (entropy) return {log_probs, ent};
    return {log_probs};
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto& logits = saved[0];
    const bool entropy = ctx->saved_data["entropy"].toBool();
    const at::Tensor g_lp = grads[0];
    const at::Tensor g_ent = entropy ? grads[1] : at::Tensor();
    if (!g_lp.defined() && !g_ent.defined()) return {at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
    const auto acc = vocab_parallel_accumulate(logits.scalar_type());
    const auto zs = logits.to(acc) - saved[3].unsqueeze(1);                  // (N,Vl)
    const auto p = (zs - saved[4].unsqueeze(1)).exp();                       // (N,Vl) softmax, this shard
    at::Tensor grad = at::zeros_like(zs);                                    // (N,Vl)
    if (g_lp.defined()) {
      const auto glp = g_lp.to(acc);                                         // (N,)
      grad = grad - glp.unsqueeze(1) * p;
      const auto onehot = glp.masked_fill(saved[2].logical_not(), 0.0).unsqueeze(1);  // (N,1)
      grad.scatter_add_(1, saved[1].unsqueeze(1), onehot);
    }
    if (g_ent.defined()) grad = grad + g_ent.to(acc).unsqueeze(1) * p * (saved[5].unsqueeze(1) - zs);
    return {grad.to(logits.scalar_type()), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

}  // namespace verl::detail

namespace verl::dist {

//! log softmax(logits)[target] and (optionally) the entropy of softmax(logits) when the vocabulary dimension
//! of `logits` is split over the tp ranks: rank r holds columns [r Vl, (r+1) Vl) (Vl = local_logits.size(-1),
//! the same on every rank; V = tp * Vl). Every rank returns the same values, equal to the unsharded
//! log_softmax(logits).gather(target) and entropy_from_logits(logits) (verl 0.7.1 torch_functional.py) up to
//! rounding; the backward gives each rank the gradient of its columns, with no communication.
//! Statistics are computed in float32 (float64 for float64 logits); outputs are in that dtype.
//! \param local_logits (..., Vl) floating; divide by the temperature before (autograd carries it).
//! \param targets (...) int64 global ids in [0, V), the same on every rank.
//! \throws verl::ShapeError for wrong shapes/dtypes or an out-of-range target (naming it).
[[nodiscard]] inline VocabParallelLogProbs vocab_parallel_log_probs(const at::Tensor& local_logits,
                                                                     const at::Tensor& targets,
                                                                     const TensorParallelGroup& group,
                                                                     bool compute_entropy = false) {
  using verl::detail::check;
  constexpr std::string_view o = "verl::dist::vocab_parallel_log_probs";
  check<ShapeError>(local_logits.defined() && local_logits.dim() >= 1, o,
                    ": `local_logits` must be a defined (..., V/tp) tensor");
  check<ShapeError>(at::isFloatingType(local_logits.scalar_type()), o, ": `local_logits` has dtype ",
                    local_logits.scalar_type(), ", expected a floating-point dtype");
  check<ShapeError>(targets.defined() && targets.scalar_type() == at::kLong, o,
                    ": `targets` must be int64 token ids");
  check<ShapeError>(targets.sizes() == local_logits.sizes().slice(0, local_logits.dim() - 1), o, ": `targets` has shape ",
                    targets.sizes(), ", expected the leading dimensions of `local_logits` ", local_logits.sizes());
  const auto width = local_logits.size(-1);
  check<ShapeError>(width >= 1, o, ": `local_logits` has an empty vocabulary shard");
  const auto vocab = width * group.size();
  const auto flat_logits = local_logits.reshape({-1, width});   // (N,Vl)
  const auto flat_targets = targets.reshape({-1}).contiguous();  // (N,)
  if (flat_targets.numel() > 0) {
    const auto bad = flat_targets.lt(0).logical_or(flat_targets.ge(vocab));  // (N,)
    if (bad.any().item<bool>()) {
      const auto index = bad.nonzero()[0][0].item<std::int64_t>();
      throw ShapeError(verl::detail::concat_message(o, ": `targets` holds ", flat_targets[index].item<std::int64_t>(),
                                                    " at flat position ", index, ", expected token ids in [0, ", vocab,
                                                    ") (tensor-parallel size ", group.size(), " x ", width,
                                                    " local vocabulary columns)"));
    }
  }
  const auto outs = detail::VocabParallelLogProbsFunction::apply(flat_logits, flat_targets, group, compute_entropy);
  VocabParallelLogProbs out;
  out.log_probs = outs[0].view(targets.sizes());
  if (compute_entropy) out.entropy = outs[1].view(targets.sizes());
  return out;
}

}  // namespace verl::dist
