#pragma once
//! \file
//! verl::models::CausalLM: the decoder backbone plus the language-model head (transformers'
//! LlamaForCausalLM and siblings), with tied or untied embeddings, and `generate`, a simple KV-cached
//! generator (greedy, or temperature / top-k / top-p / min-p sampling with a seed) that returns a
//! verl::Rollout: the contiguous-cache baseline of the rollout engine (verl/rollout/engine.hpp), which
//! Actor::generate uses. Parameter names are Hugging Face's: `model.embed_tokens.weight`,
//! `model.layers.0.self_attn.q_proj.weight`, ..., `model.norm.weight`, `lm_head.weight` (absent when tied,
//! as in transformers' named_parameters()).

#include "verl/core/errors.hpp"
#include "verl/core/huge_pages.hpp"
#include "verl/core/model_io.hpp"
#include "verl/core/reusable_buffer.hpp"
#include "verl/models/config.hpp"
#include "verl/models/decoder.hpp"
#include "verl/models/kv_cache.hpp"

#include <ATen/Context.h>
#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>
#include <ATen/core/grad_mode.h>
#include <ATen/ops/arange.h>
#include <ATen/ops/argmax.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/full.h>
#include <ATen/ops/full_like.h>
#include <ATen/ops/linear.h>
#include <ATen/ops/log_softmax.h>
#include <ATen/ops/multinomial.h>
#include <ATen/ops/softmax.h>
#include <ATen/ops/sort.h>
#include <ATen/ops/stack.h>
#include <ATen/ops/tensor.h>
#include <ATen/ops/topk.h>
#include <ATen/ops/where.h>
#include <ATen/ops/zeros.h>
#include <ATen/ops/zeros_like.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

#include <cstdint>
#include <limits>
#include <optional>
#include <vector>

namespace verl::models {

//! Backbone + LM head; see the file comment.
class CausalLMImpl : public torch::nn::Module {
 public:
  //! A randomly initialised model (LibTorch's default init; call init_weights for transformers' init)
  //! with parameters in `config.dtype`.
  explicit CausalLMImpl(TransformerConfig c) : config_(std::move(c)) {
    config_.validate();
    model = register_module("model", TransformerModel(config_));
    if (!config_.tie_word_embeddings) {
      lm_head = register_module(
          "lm_head", torch::nn::Linear(torch::nn::LinearOptions(config_.hidden_size, config_.vocab_size).bias(false)));
    }
    to(config_.dtype);
  }

  //! Logits (B,T,V) in the parameter dtype; arguments as TransformerModel::forward.
  at::Tensor forward(const at::Tensor& input_ids, const at::Tensor& attention_mask, const at::Tensor& position_ids,
                     KVCache* cache = nullptr) {
    return project(model(input_ids, attention_mask, position_ids, cache));
  }
  //! Same as forward.
  at::Tensor logits(const at::Tensor& input_ids, const at::Tensor& attention_mask, const at::Tensor& position_ids,
                    KVCache* cache = nullptr) {
    return forward(input_ids, attention_mask, position_ids, cache);
  }
  //! The backbone's final hidden states (B,T,hidden), for heads that project them themselves.
  at::Tensor hidden_states(const at::Tensor& input_ids, const at::Tensor& attention_mask,
                           const at::Tensor& position_ids, KVCache* cache = nullptr) {
    return model(input_ids, attention_mask, position_ids, cache);
  }
  //! hidden (...,hidden) -> logits (...,V) through the LM head. Large CPU logits without autograd are written
  //! into a block this model keeps between calls (verl/core/reusable_buffer.hpp; the same GEMM, the same
  //! values): a fresh (4,256,151936) float32 logits tensor otherwise takes ~150,000 page faults per forward. The
  //! block is reused only once the caller has dropped the logits it last returned; release_logits_buffer()
  //! frees it.
  at::Tensor project(const at::Tensor& hidden) {
    const at::Tensor& weight = lm_head_weight();
    const bool grad = at::GradMode::is_enabled() && (hidden.requires_grad() || weight.requires_grad());
    if (!grad && hidden.is_cpu() && weight.is_cpu() && hidden.dim() >= 1 && hidden.scalar_type() == weight.scalar_type()) {
      std::vector<std::int64_t> sizes(hidden.sizes().begin(), hidden.sizes().end());
      sizes.back() = weight.size(0);
      std::int64_t numel = 1;
      for (const auto d : sizes) numel *= d;
      if (numel * static_cast<std::int64_t>(hidden.element_size()) >= verl::detail::kHugePageAdviceMinBytes) {
        at::Tensor out = logits_buffer_.take(sizes, hidden.options());  // (...,V)
        at::linear_out(out, hidden, weight);
        return out;
      }
    }
    return at::linear(hidden, weight);
  }

  //! Frees the block that project() keeps for large no-grad CPU logits (see project); the next such call
  //! allocates it again.
  void release_logits_buffer() { logits_buffer_.release(); }

  //! The (V,hidden) output projection: `lm_head.weight`, or `model.embed_tokens.weight` when tied (the same
  //! tensor, so their gradients add up as in transformers).
  [[nodiscard]] const at::Tensor& lm_head_weight() const {
    return config_.tie_word_embeddings ? model->embed_tokens->weight : lm_head->weight;
  }

  //! transformers' _init_weights: Linear and Embedding weights ~ N(0, std) (the padding row of the
  //! embedding zeroed), biases 0, RMSNorm weights 1. Draws from LibTorch's default generator.
  void init_weights(double std = 0.02) {
    detail::init_hf_weights(*this, model, std);
  }

  //! Recompute each decoder layer in backward (see TransformerModel::set_activation_checkpointing).
  void set_activation_checkpointing(bool on) { model->set_activation_checkpointing(on); }

  [[nodiscard]] const TransformerConfig& config() const { return config_; }

  TransformerModel model{nullptr};
  torch::nn::Linear lm_head{nullptr};  //!< null when tie_word_embeddings

 private:
  TransformerConfig config_;
  verl::detail::ReusableBuffer logits_buffer_;  // large no-grad CPU logits (project)
};
TORCH_MODULE(CausalLM);

//! What generate() needs besides the sampling parameters.
struct GenerationOptions {
  //! Tokens that end a response (unless SamplingParams::ignore_eos); empty = the config's eos_token_id.
  std::vector<std::int64_t> eos_token_ids;
  //! Fills responses after they end; unset = the config's pad_token_id, else the first eos id, else 0.
  std::optional<std::int64_t> pad_token_id;
};

namespace detail {

//! Applies top-k, top-p and min-p to scores (B,V) (already divided by the temperature) by setting the
//! dropped tokens to -inf. top-p keeps the most likely tokens until their mass reaches top_p (at least one).
inline at::Tensor filter_scores(at::Tensor scores, const SamplingParams& p) {
  const double neg_inf = -std::numeric_limits<double>::infinity();
  if (p.top_k > 0 && p.top_k < scores.size(-1)) {
    const auto kth = std::get<0>(at::topk(scores, p.top_k, -1)).narrow(-1, p.top_k - 1, 1);  // (B,1)
    scores = scores.masked_fill(scores < kth, neg_inf);
  }
  if (p.top_p < 1.0) {
    const auto [sorted, order] = at::sort(scores, -1, /*descending=*/true);  // (B,V)
    const auto probs = at::softmax(sorted, -1);
    const auto mass_before = probs.cumsum(-1) - probs;                          // (B,V)
    const auto drop_sorted = mass_before >= p.top_p;                            // never the first token
    scores = scores.masked_fill(at::zeros_like(drop_sorted).scatter(-1, order, drop_sorted), neg_inf);
  }
  if (p.min_p > 0.0) {
    const auto probs = at::softmax(scores, -1);                              // (B,V)
    const auto threshold = std::get<0>(probs.max(-1, /*keepdim=*/true)) * p.min_p;  // (B,1)
    scores = scores.masked_fill(probs < threshold, neg_inf);
  }
  return scores;
}

}  // namespace detail

//! Generates up to `params.max_tokens` tokens after each prompt (repeated `params.n` times), with a KV cache.
//!
//! Per step, from the float32 logits of the last column: repetition penalty (transformers'
//! RepetitionPenaltyLogitsProcessor over prompt and generated tokens: s < 0 ? s * p : s / p); then greedy
//! argmax when temperature == 0, else division by the temperature, top-k, top-p, min-p, and a draw from the
//! softmax with a generator seeded by `params.seed` (LibTorch's default generator when unset). A row ends
//! after an eos token (unless ignore_eos) or a stop token; later columns hold the pad token with mask 0.
//! Rollout::log_probs, when asked for, are log-softmax(penalised logits / temperature) at the chosen token
//! (temperature 1 when greedy), before top-k/top-p/min-p: the log-probs the actor recomputes.
//!
//! \pre prompts are left-padded (every row's last column is a real token) and each row has a real token.
[[nodiscard]] inline Rollout generate(CausalLM& lm, const Prompts& prompts, const SamplingParams& params,
                                      const GenerationOptions& options = {}) {
  using verl::detail::check;
  constexpr std::string_view o = "verl::models::generate";
  prompts.validate();
  params.validate();
  check<ConfigError>(params.presence_penalty == 0.0 && params.frequency_penalty == 0.0 && params.stop.empty(), o,
                     ": presence/frequency penalties and stop strings are supported by the rollout engine "
                     "(verl/rollout/engine.hpp, behind Actor::generate), not by this simple generator");
  const auto& config = lm->config();
  const auto eos_ids = options.eos_token_ids.empty() ? config.eos_token_ids : options.eos_token_ids;
  const std::int64_t pad = options.pad_token_id   ? *options.pad_token_id
                           : config.pad_token_id  ? *config.pad_token_id
                           : !eos_ids.empty()     ? eos_ids.front()
                                                  : 0;
  const auto device = lm->model->embed_tokens->weight.device();
  const auto long_opts = at::TensorOptions().dtype(at::kLong).device(device);

  at::NoGradGuard no_grad;
  auto ids = prompts.input_ids.to(device).repeat_interleave(params.n, 0);             // (B,P)
  const auto mask = prompts.attention_mask.to(device).to(at::kLong).repeat_interleave(params.n, 0);  // (B,P)
  const auto pos = prompts.position_ids.to(device).to(at::kLong).repeat_interleave(params.n, 0);     // (B,P)
  const auto b = ids.size(0), p = ids.size(1);
  check<ShapeError>(p >= 1, o, ": prompts have no columns, expected P >= 1");
  check<ShapeError>(mask.select(1, p - 1).all().item<bool>(), o,
                    ": a prompt's last column is padding, expected left-padded prompts");

  at::Generator gen;
  if (params.seed) {
    gen = at::globalContext().defaultGenerator(device).clone();
    gen.set_current_seed(*params.seed);
  }
  const auto eos = at::tensor(eos_ids, at::TensorOptions().dtype(at::kLong)).to(device);                 // (E)
  const auto stop = at::tensor(params.stop_token_ids, at::TensorOptions().dtype(at::kLong)).to(device);  // (S)
  const auto is_in = [](const at::Tensor& tok, const at::Tensor& set) {  // (B) bool
    return set.numel() == 0 ? at::zeros_like(tok, tok.options().dtype(at::kBool)) : (tok.unsqueeze(1) == set).any(1);
  };

  at::Tensor seen;  // (B,V) int64: how often a token occurred (repetition penalty)
  if (params.repetition_penalty != 1.0) {
    seen = at::zeros({b, config.vocab_size}, long_opts).scatter_add_(1, ids, mask);
  }

  KVCache cache(config.num_hidden_layers, p + params.max_tokens);
  auto hidden = lm->hidden_states(ids, mask, pos, &cache);                 // (B,P,hidden)
  auto logits = lm->project(hidden.select(1, p - 1)).to(at::kFloat);       // (B,V)
  const auto last_pos = pos.select(1, p - 1);                              // (B)
  auto done = at::zeros({b}, long_opts.dtype(at::kBool));                  // (B)
  std::vector<at::Tensor> tokens, masks, logps;
  for (std::int64_t step = 0; step < params.max_tokens; ++step) {
    auto scores = logits;  // (B,V) float32
    if (seen.defined()) {
      const auto penalised = at::where(scores < 0, scores * params.repetition_penalty, scores / params.repetition_penalty);
      scores = at::where(seen > 0, penalised, scores);
    }
    at::Tensor token;
    if (!params.greedy()) scores = scores / params.temperature;
    if (params.greedy()) {
      token = scores.argmax(-1);  // (B)
    } else {
      const auto probs = at::softmax(detail::filter_scores(scores, params), -1);          // (B,V)
      token = at::multinomial(probs, 1, /*replacement=*/false, gen).squeeze(1);         // (B)
    }
    if (params.return_log_probs) {
      logps.push_back(at::log_softmax(scores, -1).gather(1, token.unsqueeze(1)).squeeze(1));  // (B)
    }
    const auto active = done.logical_not();                       // (B)
    token = at::where(active, token, at::full_like(token, pad));  // (B)
    tokens.push_back(token);
    masks.push_back(active.to(at::kLong));
    auto ends = is_in(token, stop);
    if (!params.ignore_eos) ends = ends | is_in(token, eos);
    done = done | (active & ends);
    if (seen.defined()) seen.scatter_add_(1, token.unsqueeze(1), active.to(at::kLong).unsqueeze(1));
    if (step + 1 == params.max_tokens || done.all().item<bool>()) break;
    const auto next_pos = (last_pos + (step + 1)).unsqueeze(1);  // (B,1)
    hidden = lm->hidden_states(token.unsqueeze(1), active.to(at::kLong).unsqueeze(1), next_pos, &cache);  // (B,1,hidden)
    logits = lm->project(hidden.select(1, 0)).to(at::kFloat);  // (B,V)
  }

  Rollout out;
  const auto r = static_cast<std::int64_t>(tokens.size());
  out.prompts = ids;
  out.responses = at::stack(tokens, 1);                              // (B,R)
  out.response_mask = at::stack(masks, 1);                           // (B,R)
  out.input_ids = at::cat({ids, out.responses}, 1);                  // (B,P+R)
  out.attention_mask = at::cat({mask, out.response_mask}, 1);        // (B,P+R)
  out.position_ids = at::cat({pos, last_pos.unsqueeze(1) + 1 + at::arange(r, long_opts).unsqueeze(0)}, 1);  // (B,P+R)
  if (params.return_log_probs) out.log_probs = at::stack(logps, 1) * out.response_mask;  // (B,R), 0 on padding
  return out;
}

}  // namespace verl::models
