#pragma once
//! \file
//! Activation checkpointing for LibTorch C++, which has no torch.utils.checkpoint: an autograd Function that
//! runs a block without recording its graph and, in backward, runs it again with grad enabled and
//! back-propagates through the recomputed graph. Memory drops from every intermediate of the block to its
//! input; the price is one more forward of the block in backward. The block must be deterministic (no
//! dropout, which these models do not have), so the recomputation equals the original forward.

#include <ATen/core/Tensor.h>
#include <ATen/core/ivalue.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/custom_class_detail.h>

#include <functional>
#include <utility>
#include <vector>

namespace verl::models::detail {

//! The block to recompute, carried through the autograd context in an IValue capsule.
struct RecomputeBlock : torch::CustomClassHolder {
  explicit RecomputeBlock(std::function<at::Tensor(const at::Tensor&)> f) : fn(std::move(f)) {}
  std::function<at::Tensor(const at::Tensor&)> fn;
};

//! y = block(x), whose backward recomputes block(x); `params` are the tensors the block reads that need
//! gradients (they receive them as if the block had run under autograd).
struct CheckpointFunction : torch::autograd::Function<CheckpointFunction> {
  static torch::autograd::variable_list forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x,
                                                at::TensorList params, c10::intrusive_ptr<RecomputeBlock> block) {
    std::vector<at::Tensor> saved{x};
    saved.insert(saved.end(), params.begin(), params.end());
    ctx->save_for_backward(saved);
    auto y = block->fn(x);  // grad mode is off inside a custom Function's forward
    ctx->saved_data["block"] = c10::IValue::make_capsule(std::move(block));
    return {y};
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_outputs) {
    const auto saved = ctx->get_saved_variables();
    const auto block = c10::static_intrusive_pointer_cast<RecomputeBlock>(ctx->saved_data["block"].toCapsule());
    const auto x = saved[0].detach().requires_grad_(saved[0].requires_grad());
    at::Tensor y;
    {
      at::AutoGradMode enable(true);
      y = block->fn(x);
    }
    // Gradients for x and every parameter that needs one; the others stay undefined.
    std::vector<at::Tensor> inputs;
    std::vector<std::size_t> where;
    for (std::size_t i = 0; i < saved.size(); ++i) {
      const auto& t = i == 0 ? x : saved[i];
      if (t.requires_grad()) {
        inputs.push_back(t);
        where.push_back(i);
      }
    }
    torch::autograd::variable_list result(saved.size() + 1);  // x, each parameter, the block (no gradient)
    if (inputs.empty() || !y.requires_grad()) return result;
    const auto grads = torch::autograd::grad({y}, inputs, {grad_outputs[0]}, /*retain_graph=*/false,
                                             /*create_graph=*/false, /*allow_unused=*/true);
    for (std::size_t k = 0; k < where.size(); ++k) result[where[k]] = grads[k];
    return result;
  }
};

//! block(x) with its activations recomputed in backward; see CheckpointFunction.
[[nodiscard]] inline at::Tensor checkpoint(std::function<at::Tensor(const at::Tensor&)> block, const at::Tensor& x,
                                           const std::vector<at::Tensor>& params) {
  return CheckpointFunction::apply(x, at::TensorList(params), c10::make_intrusive<RecomputeBlock>(std::move(block)))[0];
}

}  // namespace verl::models::detail
