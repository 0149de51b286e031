// Tensor parallelism in Megatron's layout (include/verl/dist/tensor_parallel_layers.hpp,
// tensor_parallel_model.hpp): the autograd-aware collectives, ColumnParallelLinear, RowParallelLinear,
// VocabParallelEmbedding, vocab_parallel_log_probs, and TensorParallelCausalLM against the unsharded layers
// and model.
//
// Multi-process cases start this test executable itself as 2 or 4 ranks through verl::dist::launch_local
// (the pattern of test_c10d.cpp); each rank runs the hidden test case "[.tp_worker]" in the mode named by
// VERL_TP_TEST_MODE over Gloo. Every rank builds the unsharded reference itself from the same seed (no
// communication), runs its forward and backward, then the sharded one, and compares: outputs, the input's
// gradient, and each parameter's gradient against the matching slice of the unsharded parameter's gradient.
//
// Tolerance (float64): 1e-12 relative to max(1, max |reference|). Not bitwise, because sharding changes the
// order of floating-point sums: a row-parallel output is the all-reduce of tp partial dot products instead of
// one GEMM's accumulation, and the softmax's sum of exponentials is a sum of tp partial sums. Measured
// differences are ~1e-15. Bitwise where no sum is split: the embedding's forward (one rank contributes each row,
// the others add +0.0) and the shard -> gather round trip of the weights.
//
// References pinned: Megatron-LM megatron/core/tensor_parallel (mappings.py, layers.py, cross_entropy.py);
// verl 0.7.1 torch_functional.py logprobs_from_logits / entropy_from_logits (log_softmax + gather, and
// logsumexp - sum softmax * logits), as verl::core_algos::entropy_from_logits implements them.
#include "catch_torch.hpp"

#include "dist_test_support.hpp"
#include "error_of.hpp"
#include "verl/algos/entropy.hpp"
#include "verl/dist/device_mesh.hpp"
#include "verl/dist/gloo.hpp"
#include "verl/dist/launch_env.hpp"
#include "verl/dist/launch_local.hpp"
#include "verl/dist/single_process_communicator.hpp"
#include "verl/dist/tensor_parallel.hpp"
#include "verl/models/causal_lm.hpp"

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

namespace test_tensor_parallel {  // one namespace per file: a unity build (tests/CMakeLists.txt) may join files

using verl::dist::TensorParallelGroup;
using verl::test::error_of;
using namespace std::chrono_literals;

namespace {

constexpr double kTol = 1e-12;
double worst_relative = 0.0;  // the largest difference / scale seen by check_close at kTol (printed by workers)

//! CHECKs that `got` equals `want` within kTol relative to max(1, max |want|), naming `what` and the difference.
void check_close(const at::Tensor& got, const at::Tensor& want, const std::string& what, double tol = kTol) {
  INFO(what << ": shape " << got.sizes() << " vs " << want.sizes());
  REQUIRE(got.defined());
  REQUIRE(got.sizes() == want.sizes());
  const double diff = got.numel() == 0 ? 0.0 : (got.to(at::kDouble) - want.to(at::kDouble)).abs().max().item<double>();
  const double scale = std::max(1.0, want.numel() == 0 ? 0.0 : want.abs().max().item<double>());
  INFO(what << ": max |difference| " << diff << ", scale " << scale);
  CHECK(diff <= tol * scale);
  if (tol == kTol) worst_relative = std::max(worst_relative, diff / scale);
}

at::TensorOptions f64() { return at::TensorOptions().dtype(at::kDouble); }

//! A group of 4 ranks (this one rank 1) that must never communicate: for argument checks made before any
//! collective.
struct NoCommunication {
  [[nodiscard]] int rank() const { return 1; }
  [[nodiscard]] int world_size() const { return 4; }
  void all_reduce(at::Tensor&, verl::ReduceOp) { throw std::logic_error("NoCommunication: unexpected all_reduce"); }
  void broadcast(at::Tensor&, int) { throw std::logic_error("NoCommunication: unexpected broadcast"); }
  void all_gather(std::vector<at::Tensor>&, const at::Tensor&) {
    throw std::logic_error("NoCommunication: unexpected all_gather");
  }
  void barrier() {}
};

//! A tiny Llama (biases everywhere, untied head) or Qwen3 (q/k norm, tied embeddings, a sliding layer, pad id).
verl::models::TransformerConfig tiny_config(const std::string& type) {
  auto c = verl::test::tiny_transformer_config(type, 128, 64);
  if (type == "llama") {
    c.attention_bias = true;
    c.mlp_bias = true;
  } else {
    c.qk_norm = true;
    c.tie_word_embeddings = true;
    c.pad_token_id = 3;
    c.sliding_windows = {0, 3};
  }
  return c;
}

//! The unsharded model in float64 with every parameter random (biases and norm weights too, so that each
//! takes part in the comparison), the same on every rank for one seed.
verl::models::CausalLM tiny_model(const verl::models::TransformerConfig& c, std::uint64_t seed) {
  return verl::test::random_causal_lm(c, seed, 0.3);
}

}  // namespace

TEST_CASE("tensor-parallel layers: a size not divisible by tp is an error naming the quantity", "[dist][tp]") {
  NoCommunication four;
  TensorParallelGroup tp(four);
  const auto w = torch::randn({30, 8}, f64());  // (30,8)
  CHECK_THAT(error_of([&] { (void)verl::dist::ColumnParallelLinear(tp, w); }),
             Catch::Matchers::Contains("ColumnParallelLinear: out_features (30) is not divisible by the 4 "
                                       "tensor-parallel shards"));
  CHECK_THAT(error_of([&] { (void)verl::dist::RowParallelLinear(tp, w.t()); }),
             Catch::Matchers::Contains("RowParallelLinear: in_features (30) is not divisible by the tensor-parallel "
                                       "size 4"));
  CHECK_THAT(error_of([&] { (void)verl::dist::VocabParallelEmbedding(tp, w); }),
             Catch::Matchers::Contains("VocabParallelEmbedding: vocab_size (30) is not divisible by the "
                                       "tensor-parallel size 4"));
  CHECK_THAT(error_of([&] {
               (void)verl::dist::ColumnParallelLinear(tp, torch::randn({32, 8}, f64()), at::Tensor(),
                                                verl::dist::ColumnParallelLinearOptions{.shards = 3});
             }),
             Catch::Matchers::Contains("3 shard(s) over a tensor-parallel group of 4 rank(s)"));

  // The model: each quantity that is split, named. (hidden_size is not split in Megatron's layout.)
  const auto model_error = [&](auto edit) {
    auto c = tiny_config("llama");
    edit(c);
    verl::models::CausalLM lm(c);
    return error_of([&] { (void)verl::dist::TensorParallelCausalLM(lm, tp); });
  };
  CHECK_THAT(model_error([](auto& c) { c.num_attention_heads = 6, c.num_key_value_heads = 6; }),
             Catch::Matchers::Contains("num_attention_heads (6) is not divisible by the tensor-parallel size 4"));
  CHECK_THAT(model_error([](auto& c) { c.num_attention_heads = 12, c.num_key_value_heads = 3; }),
             Catch::Matchers::Contains("num_key_value_heads (3) is neither a multiple nor a divisor of the "
                                       "tensor-parallel size 4"));
  CHECK_THAT(model_error([](auto& c) { c.intermediate_size = 66; }),
             Catch::Matchers::Contains("intermediate_size (66) is not divisible by the tensor-parallel size 4"));
  CHECK_THAT(model_error([](auto& c) { c.vocab_size = 126; }),
             Catch::Matchers::Contains("vocab_size (126) is not divisible by the tensor-parallel size 4"));

  // The layout table names every parameter; key/value heads: 2 over 4 ranks = 2 shards, each on 2 ranks.
  const auto c = tiny_config("llama");
  CHECK(verl::dist::tensor_parallel_spec("model.layers.1.self_attn.k_proj.weight", c, 4) == verl::dist::ShardSpec{0, 2});
  CHECK(verl::dist::tensor_parallel_spec("model.layers.1.self_attn.o_proj.weight", c, 4) == verl::dist::ShardSpec{1, 4});
  CHECK(verl::dist::tensor_parallel_spec("model.layers.1.mlp.down_proj.bias", c, 4).replicated());
  CHECK(verl::dist::tensor_parallel_spec("lm_head.weight", c, 4) == verl::dist::ShardSpec{0, 4});
  CHECK_THAT(error_of([&] { (void)verl::dist::tensor_parallel_spec("model.rotary.inv_freq", c, 4); }),
             Catch::Matchers::Contains("no tensor-parallel layout for the parameter model.rotary.inv_freq"));
}

TEST_CASE("tensor parallelism over one rank is the unsharded model", "[dist][tp]") {
  verl::dist::SingleProcessCommunicator one;
  TensorParallelGroup tp(one);
  for (const std::string type : {"llama", "qwen3"}) {
    INFO("model_type " << type);
    auto lm = tiny_model(tiny_config(type), 11);
    verl::dist::TensorParallelCausalLM sharded(lm, tp);
    const auto ids = torch::randint(0, 128, {2, 5}, at::TensorOptions().dtype(at::kLong));  // (2,5)
    const auto pos = torch::arange(5, at::TensorOptions().dtype(at::kLong)).expand({2, 5}).contiguous();  // (2,5)
    const auto targets = ids.roll(-1, 1);  // (2,5)
    at::NoGradGuard no_grad;
    const auto logits = lm->forward(ids, at::Tensor(), pos);  // (2,5,128)
    const auto out = sharded->log_probs(ids, at::Tensor(), pos, targets, {.compute_entropy = true, .gather_logits = true});
    CHECK(torch::equal(out.logits, logits));  // one rank: the same operations
    check_close(out.log_probs, logits.log_softmax(-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1), "log_probs");
    check_close(out.entropy, verl::core_algos::entropy_from_logits(logits), "entropy");
    for (const auto& [name, full] : sharded->gather_full_parameters()) {
      INFO(name);
      CHECK(torch::equal(full, lm->named_parameters()[name]));
    }
  }
}

#if VERL_DIST_HAS_GLOO
namespace {

using Gloo = verl::dist::ProcessGroupCommunicator<verl::dist::gloo>;

//! Starts `n` ranks of this executable in `mode`.
verl::dist::LocalLaunchResult run_ranks(int n, const std::string& mode) {
  return verl::test::launch_self(n, "[.tp_worker]", {{"VERL_TP_TEST_MODE", mode}}, 90000ms);
}

//! Rank r's input of rank-dependent tests: slice r of one tensor drawn with the same seed everywhere.
at::Tensor per_rank(int tp, std::vector<std::int64_t> shape, std::uint64_t seed) {
  torch::manual_seed(seed);
  shape.insert(shape.begin(), tp);
  return torch::randn(shape, f64());
}

void check_regions(const TensorParallelGroup& g) {
  const int tp = g.size(), r = g.rank();
  {  // reduce_from: sum forward, identity backward
    const auto xs = per_rank(tp, {3, 4}, 1), gs = per_rank(tp, {3, 4}, 2);  // (tp,3,4)
    auto x = xs[r].clone().requires_grad_();
    const auto y = verl::dist::reduce_from_tensor_parallel_region(x, g);
    check_close(y, xs.sum(0), "reduce_from forward");
    (y * gs[r]).sum().backward();
    CHECK(torch::equal(x.grad(), gs[r]));
  }
  {  // copy_to: identity forward, sum backward
    const auto base = torch::randn({3, 4}, f64()), gs = per_rank(tp, {3, 4}, 3);
    auto x = base.clone().requires_grad_();
    const auto y = verl::dist::copy_to_tensor_parallel_region(x, g);
    CHECK(torch::equal(y, base));
    (y * gs[r]).sum().backward();
    check_close(x.grad(), gs.sum(0), "copy_to backward");
  }
  {  // gather_from: concatenation along the last dimension forward, own slice backward
    const auto xs = per_rank(tp, {3, 2}, 4), gs = per_rank(tp, {3, 2 * tp}, 5);
    auto x = xs[r].clone().requires_grad_();
    const auto y = verl::dist::gather_from_tensor_parallel_region(x, g);  // (3,2tp)
    std::vector<at::Tensor> parts;
    for (int k = 0; k < tp; ++k) parts.push_back(xs[k]);
    CHECK(torch::equal(y, at::cat(parts, -1)));
    (y * gs[r]).sum().backward();
    CHECK(torch::equal(x.grad(), gs[r].narrow(-1, 2 * r, 2)));
  }
  {  // scatter_to: own slice forward, concatenation of every rank's gradient backward
    const auto base = torch::randn({3, 2 * tp}, f64()), gs = per_rank(tp, {3, 2}, 6);
    auto x = base.clone().requires_grad_();
    const auto y = verl::dist::scatter_to_tensor_parallel_region(x, g);  // (3,2)
    CHECK(torch::equal(y, base.narrow(-1, 2 * r, 2)));
    (y * gs[r]).sum().backward();
    std::vector<at::Tensor> parts;
    for (int k = 0; k < tp; ++k) parts.push_back(gs[k]);
    CHECK(torch::equal(x.grad(), at::cat(parts, -1)));
  }
  {  // sum_gradient_over_replicas with tp/2 slices: the gradient is summed over the 2 ranks of a slice
    const int shards = tp / 2;
    const auto gs = per_rank(tp, {3}, 7);
    auto x = torch::randn({3}, f64()).requires_grad_();
    (verl::dist::sum_gradient_over_replicas(x, g, shards) * gs[r]).sum().backward();
    const int first = (r / 2) * 2;  // the replicas of this rank's slice: first, first + 1
    check_close(x.grad(), shards == 1 ? gs.sum(0) : gs[first] + gs[first + 1], "sum_gradient_over_replicas");
  }
}

//! ColumnParallelLinear (split outputs, gathered or not, and with replicated slices) against at::linear.
void check_column(const TensorParallelGroup& g) {
  const int tp = g.size(), r = g.rank();
  torch::manual_seed(20);
  const std::int64_t in = 10, out = 16;
  const auto w = torch::randn({out, in}, f64()), b = torch::randn({out}, f64());  // (16,10), (16)
  const auto x = torch::randn({2, 3, in}, f64());                                  // (2,3,10)
  const auto rs = per_rank(tp, {2, 3, out}, 21);                                   // (tp,2,3,16) upstream weights
  for (int shards : {tp, tp / 2}) {
    for (bool gather : {false, true}) {
      if (gather && shards != tp) continue;
      INFO("shards " << shards << ", gather_output " << gather);
      const std::int64_t width = out / shards, slot = r / (tp / shards);
      // The reference: rank k's loss weights its own slice of y (or all of y when gathered, rank 0's weights).
      auto wf = w.clone().requires_grad_(), bf = b.clone().requires_grad_(), xf = x.clone().requires_grad_();
      const auto yf = at::linear(xf, wf, bf);  // (2,3,16)
      at::Tensor loss = torch::zeros({}, f64());
      if (gather) {
        loss = (yf * rs[0]).sum();  // every rank computes this same loss: its gradient, once
      } else {
        for (int k = 0; k < tp; ++k) {
          const auto s = (k / (tp / shards)) * width;
          loss = loss + (yf.narrow(-1, s, width) * rs[k].narrow(-1, s, width)).sum();
        }
      }
      loss.backward();
      verl::dist::ColumnParallelLinear layer(g, w, b,
                                             verl::dist::ColumnParallelLinearOptions{.gather_output = gather, .shards = shards});
      auto xt = x.clone().requires_grad_();
      const auto y = layer(xt);
      if (gather) {
        check_close(y, yf, "column forward (gathered)");
        (y * rs[0]).sum().backward();
      } else {
        check_close(y, yf.narrow(-1, slot * width, width), "column forward");
        (y * rs[r].narrow(-1, slot * width, width)).sum().backward();
      }
      check_close(xt.grad(), xf.grad(), "column input grad");
      check_close(layer->weight.grad(), wf.grad().narrow(0, slot * width, width), "column weight grad");
      check_close(layer->bias.grad(), bf.grad().narrow(0, slot * width, width), "column bias grad");
      CHECK(torch::equal(layer->full_weight(), w));
      CHECK(torch::equal(layer->full_bias(), b));
    }
  }
}

//! RowParallelLinear (split inputs, replicated or already parallel input) against at::linear.
void check_row(const TensorParallelGroup& g) {
  const int tp = g.size(), r = g.rank();
  torch::manual_seed(30);
  const std::int64_t in = 16, out = 6, width = in / tp;
  const auto w = torch::randn({out, in}, f64()), b = torch::randn({out}, f64());
  const auto x = torch::randn({2, 3, in}, f64()), weights = torch::randn({2, 3, out}, f64());
  auto wf = w.clone().requires_grad_(), bf = b.clone().requires_grad_(), xf = x.clone().requires_grad_();
  const auto yf = at::linear(xf, wf, bf);  // (2,3,6)
  (yf * weights).sum().backward();
  for (bool parallel_input : {false, true}) {
    INFO("input_is_parallel " << parallel_input);
    verl::dist::RowParallelLinear layer(g, w, b, verl::dist::RowParallelLinearOptions{.input_is_parallel = parallel_input});
    auto xt = (parallel_input ? x.narrow(-1, r * width, width) : x).clone().requires_grad_();
    const auto y = layer(xt);
    check_close(y, yf, "row forward");
    (y * weights).sum().backward();
    check_close(xt.grad(), parallel_input ? xf.grad().narrow(-1, r * width, width) : xf.grad(), "row input grad");
    check_close(layer->weight.grad(), wf.grad().narrow(1, r * width, width), "row weight grad");
    check_close(layer->bias.grad(), bf.grad(), "row bias grad (added once, after the reduction)");
    CHECK(torch::equal(layer->full_weight(), w));
  }
}

//! VocabParallelEmbedding with ids on both sides of every shard boundary and a padding row on rank 1's shard.
void check_embedding(const TensorParallelGroup& g) {
  const int tp = g.size(), r = g.rank();
  const std::int64_t per = 8, vocab = per * tp, pad = per + 1;
  torch::manual_seed(40);
  const auto w = torch::randn({vocab, 5}, f64());
  std::vector<std::int64_t> list{0, vocab - 1, pad, pad, 2};
  for (int k = 1; k < tp; ++k) {
    list.push_back(k * per - 1);
    list.push_back(k * per);
  }
  const auto ids = torch::tensor(list, at::TensorOptions().dtype(at::kLong)).view({1, -1});  // (1,L)
  const auto weights = torch::randn({1, ids.size(1), 5}, f64());
  auto wf = w.clone().requires_grad_();
  const auto yf = at::embedding(wf, ids, pad);  // (1,L,5)
  (yf * weights).sum().backward();
  verl::dist::VocabParallelEmbedding layer(g, w, pad);
  CHECK(layer->vocab_start() == r * per);
  const auto y = layer(ids);
  CHECK(torch::equal(y, yf));  // one rank contributes each row, the others +0.0: exact
  (y * weights).sum().backward();
  check_close(layer->weight.grad(), wf.grad().narrow(0, r * per, per), "embedding weight grad");
  if (r == 1) CHECK(layer->weight.grad()[1].abs().max().item<double>() == 0.0);  // the padding row: no gradient
  CHECK(torch::equal(layer->full_weight(), w));
}

//! vocab_parallel_log_probs against log_softmax + gather and entropy_from_logits of the unsharded logits.
void check_vocab_log_probs(const TensorParallelGroup& g) {
  const int tp = g.size(), r = g.rank();
  const std::int64_t per = 5, vocab = per * tp;
  torch::manual_seed(50);
  auto logits = torch::randn({3, 6, vocab}, f64()) * 3.0;  // (3,6,V)
  logits[2].add_(1000.0);                                   // exp would overflow without the max shift
  logits[2][0][vocab - 1].fill_(1010.0);
  std::vector<std::int64_t> list{0, vocab - 1};
  for (int k = 1; k < tp; ++k) {
    list.push_back(k * per - 1);
    list.push_back(k * per);
  }
  while (list.size() < 18) list.push_back(static_cast<std::int64_t>(list.size() * 7) % vocab);
  const auto targets = torch::tensor(list, at::TensorOptions().dtype(at::kLong)).view({3, 6});  // (3,6)
  const auto a = torch::randn({3, 6}, f64()), c = torch::randn({3, 6}, f64());
  for (bool entropy : {true, false}) {
    INFO("entropy " << entropy);
    auto lf = logits.clone().requires_grad_();
    const auto lp_ref = lf.log_softmax(-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1);  // (3,6)
    const auto ent_ref = verl::core_algos::entropy_from_logits(lf);                        // (3,6)
    auto loss = (lp_ref * a).sum();
    if (entropy) loss = loss + (ent_ref * c).sum();
    loss.backward();
    auto local = logits.narrow(-1, r * per, per).clone().requires_grad_();  // (3,6,V/tp)
    const auto res = verl::dist::vocab_parallel_log_probs(local, targets, g, entropy);
    check_close(res.log_probs, lp_ref, "vocab-parallel log-probs");
    auto loss_tp = (res.log_probs * a).sum();
    if (entropy) {
      check_close(res.entropy, ent_ref, "vocab-parallel entropy");
      loss_tp = loss_tp + (res.entropy * c).sum();
    } else {
      CHECK_FALSE(res.entropy.defined());
    }
    loss_tp.backward();
    check_close(local.grad(), lf.grad().narrow(-1, r * per, per), "vocab-parallel logits grad");
  }
  {  // float32 logits: statistics in float32, against the float32 reference
    auto l32 = logits.narrow(0, 0, 2).to(at::kFloat);
    const auto t32 = targets.narrow(0, 0, 2);
    const auto res = verl::dist::vocab_parallel_log_probs(l32.narrow(-1, r * per, per), t32, g, true);
    CHECK(res.log_probs.scalar_type() == at::kFloat);
    check_close(res.log_probs, l32.log_softmax(-1).gather(-1, t32.unsqueeze(-1)).squeeze(-1), "float32 log-probs", 1e-5);
    check_close(res.entropy, verl::core_algos::entropy_from_logits(l32), "float32 entropy", 1e-5);
  }
  const auto bad = targets.clone();
  bad[1][2].fill_(vocab);
  CHECK_THAT(error_of<verl::ShapeError>([&] { (void)verl::dist::vocab_parallel_log_probs(logits.narrow(-1, r * per, per), bad, g); }),
             Catch::Matchers::Contains("`targets` holds " + std::to_string(vocab) + " at flat position 8, expected "
                                       "token ids in [0, " + std::to_string(vocab) + ")"));
}

//! The whole model: log-probs, entropy, gathered logits and every gradient against the unsharded model;
//! shard -> gather round trip bitwise.
void check_model(const TensorParallelGroup& g, const std::string& type) {
  INFO("model_type " << type << ", tp " << g.size());
  const auto config = tiny_config(type);
  const std::int64_t vocab = config.vocab_size, per = vocab / g.size();
  auto lm = tiny_model(config, 60);
  const auto long_opts = at::TensorOptions().dtype(at::kLong);
  torch::manual_seed(61);
  auto ids = torch::randint(0, vocab, {2, 9}, long_opts);  // (2,9)
  ids[0][3].fill_(per - 1);                                 // ids at the first shard boundary
  ids[1][4].fill_(per);
  ids[1][5].fill_(vocab - 1);
  at::Tensor mask, pos = torch::arange(9, long_opts).expand({2, 9}).contiguous();  // (2,9)
  if (config.pad_token_id) {  // row 0 left-padded by 2
    mask = torch::ones({2, 9}, long_opts);
    mask[0].narrow(0, 0, 2).zero_();
    ids[0].narrow(0, 0, 2).fill_(*config.pad_token_id);
    pos = (mask.cumsum(1) - 1).clamp_min(0);
  }
  auto targets = ids.roll(-1, 1);  // (2,9) next tokens (the last column wraps: any id will do)
  targets[0][8].fill_(2 * per - 1);
  const double temperature = 0.7;
  const auto a = torch::randn({2, 9}, f64()), c = torch::randn({2, 9}, f64());

  // Unsharded reference.
  const auto logits_ref = lm->forward(ids, mask, pos);  // (2,9,V)
  const auto z = logits_ref / temperature;
  const auto lp_ref = z.log_softmax(-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1);  // (2,9)
  const auto ent_ref = verl::core_algos::entropy_from_logits(z);                        // (2,9)
  ((lp_ref * a).sum() + (ent_ref * c).sum()).backward();

  // Sharded: shard from the full weights; the round trip is exact before any update.
  verl::dist::TensorParallelCausalLM sharded(lm, g);
  const auto full_params = lm->named_parameters();
  REQUIRE(sharded->layout().size() == full_params.size());
  for (const auto& [name, full] : sharded->gather_full_parameters()) {
    INFO(name);
    CHECK(torch::equal(full, full_params[name]));
  }
  const auto out = sharded->log_probs(ids, mask, pos, targets,
                                      {.temperature = temperature, .compute_entropy = true, .gather_logits = true});
  check_close(out.logits, logits_ref, "model logits (gathered)");
  check_close(out.log_probs, lp_ref, "model log-probs");
  check_close(out.entropy, ent_ref, "model entropy");
  ((out.log_probs * a).sum() + (out.entropy * c).sum()).backward();
  for (const auto& [name, grad] : sharded->gather_full_gradients()) {
    check_close(grad, full_params[name].grad(), "gradient of " + name);
  }
  // This rank's own shard of a split weight equals the slice of the unsharded gradient.
  const auto& local_q = sharded->model->layers->at<verl::dist::TensorParallelDecoderLayerImpl>(1).self_attn->q_proj->weight;
  const auto q_rows = config.num_attention_heads * config.head_dim / g.size();
  check_close(local_q.grad(), full_params["model.layers.1.self_attn.q_proj.weight"].grad().narrow(0, g.rank() * q_rows, q_rows),
              "this rank's q_proj shard gradient");

  // One SGD step on both: the sharded model still computes the unsharded one's log-probs, and the replicas
  // of replicated key/value heads stay bitwise equal (their gradients are complete on every replica).
  {
    at::NoGradGuard no_grad;
    for (auto& item : lm->named_parameters()) item.value().sub_(item.value().grad() * 0.05);
    for (auto& item : sharded->named_parameters()) item.value().sub_(item.value().grad() * 0.05);
    for (const auto& [name, full] : sharded->gather_full_parameters()) check_close(full, full_params[name], "updated " + name);
    const auto k = sharded->model->layers->at<verl::dist::TensorParallelDecoderLayerImpl>(0).self_attn->k_proj->weight;
    const auto all = g.all_gather(k.contiguous());
    const int replicas = g.size() / verl::dist::kv_head_shards(config, g.size());
    for (int k_rank = 0; k_rank < g.size(); ++k_rank) {
      CHECK(torch::equal(all[static_cast<std::size_t>(k_rank)], all[static_cast<std::size_t>(k_rank - k_rank % replicas)]));
    }
    const auto again_ref = lm->forward(ids, mask, pos).log_softmax(-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1);
    check_close(sharded->log_probs(ids, mask, pos, targets).log_probs, again_ref, "log-probs after an SGD step");
  }

  // Gather (the trained weights) into a differently initialised model, then shard it again: the same shards,
  // bitwise.
  std::map<std::string, at::Tensor> gathered;
  for (auto& [name, full] : sharded->gather_full_parameters()) gathered[name] = full;
  auto other = tiny_model(config, 99);
  sharded->copy_into(other);
  for (const auto& item : other->named_parameters()) {
    INFO(item.key());
    CHECK(torch::equal(item.value(), gathered.at(item.key())));
  }
  verl::dist::TensorParallelCausalLM again(other, g);
  const auto mine = sharded->named_parameters(), theirs = again->named_parameters();
  for (const auto& item : mine) CHECK(torch::equal(item.value(), theirs[item.key()]));
}

}  // namespace

// Run in each rank started by the tests below.
TEST_CASE("tensor-parallel worker rank", "[.tp_worker]") {
  const char* mode_env = std::getenv("VERL_TP_TEST_MODE");
  REQUIRE(mode_env != nullptr);
  const std::string mode = mode_env;
  const auto place = verl::dist::launch_env_from_environ();
  auto world = Gloo::init(place, {.timeout = 30000ms});
  // The tp group as a trainer gets it: the "tp" axis of a mesh (here the only axis).
  verl::dist::MeshCommunicators<Gloo> groups(world, verl::dist::DeviceMesh({{"tp", world.world_size()}}));
  TensorParallelGroup tp(groups["tp"]);
  REQUIRE(tp.size() == world.world_size());
  if (mode == "layers") {
    check_regions(tp);
    check_column(tp);
    check_row(tp);
    check_embedding(tp);
    check_vocab_log_probs(tp);
  } else if (mode == "model") {
    check_model(tp, "llama");
    check_model(tp, "qwen3");
  } else {
    FAIL("unknown VERL_TP_TEST_MODE " << mode);
  }
  std::cout << "tp rank " << tp.rank() << " of " << tp.size() << " (" << mode
            << "): largest difference / scale at the 1e-12 tolerance: " << worst_relative << std::endl;
}

TEST_CASE("tensor-parallel collectives, layers and vocab-parallel log-probs equal the unsharded ones, tp = 2 and 4",
          "[dist][tp]") {
  for (int n : {2, 4}) {
    const auto result = run_ranks(n, "layers");
    INFO("tp " << n << "\n" << result.summary());
    CHECK(result.ok());
  }
}

TEST_CASE("TensorParallelCausalLM: log-probs, entropy, logits and gradients equal the unsharded model, tp = 2 and 4",
          "[dist][tp]") {
  for (int n : {2, 4}) {
    const auto result = run_ranks(n, "model");
    INFO("tp " << n << "\n" << result.summary());
    CHECK(result.ok());
  }
}
#else
TEST_CASE("tensor parallelism: multi-process tests", "[dist][tp]") {
  WARN("not built: this build has no Gloo headers (<gloo/algorithm.h>; install Debian's libgloo-dev), so "
       "verl::dist::gloo is unavailable");
}
#endif

}  // namespace test_tensor_parallel
