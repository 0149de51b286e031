// 02_foundation_tour: the tour of verl-cpp's foundation, end to end on a tiny model (runs in a second on a CPU).
//
// What it shows, in the order of one RL step's dataflow (docs/architecture.md):
//   1. a user's own LibTorch policy and tokenizer plug in by satisfying verl::ActorModel and verl::Tokenizer
//      (checked at compile time, with one readable line per missing member);
//   2. prompts become a typed batch with per-item data (prompt text, ground truth);
//   3. generate() samples n responses per prompt; the rollout becomes a wider batch type;
//   4. a rule reward (a verl::RewardFunction) scores the decoded responses; the score lands on the last
//      response token, as verl's reward managers place it;
//   5. items are balanced across data-parallel ranks by token count and handed out in contiguous chunks;
//   6. the padded batch is packed into the remove-padding layout (cu_seqlens) and back, losslessly;
//   7. log-probs are computed per micro-batch and agree with the full-batch computation.
// The policy is an untrained bigram model, so the rewards are whatever random sampling gives.
//
// Expected output (with LibTorch 2.11 on x86-64; CTest matches the lines that do not depend on sampling):
//   actor: TinyPolicy satisfies verl::ActorModel (196 weights)
//   prompts: Batch(size=4){input_ids: [4, 5] Long, attention_mask: [4, 5] Long, position_ids: [4, 5] Long} + 4 item infos
//   rollout: Batch(size=16){prompts: [16, 5] Long, responses: [16, 6] Long, ..., uid: [16] Long} + 16 item infos
//   reward: mean 0.000 over 16 responses
//   ranks: 2 ranks hold 76 and 75 tokens (spread 1)
//   packing: 151 of 176 positions kept, max_seqlen 11, round trip exact
//   log-probs: 4 micro-batches of 4 match the full batch (max |diff| 0.0e+00)
//   foundation tour: ok
#include <verl/verl.hpp>

#include <torch/torch.h>

#include <cstdio>
#include <string>
#include <vector>

namespace {

using namespace verl::fields;

// A character-level tokenizer over a small alphabet. Id 0 is padding, id 1 is end-of-sequence.
class CharTokenizer {
 public:
  [[nodiscard]] std::vector<std::int64_t> encode(const std::string& text) const {
    std::vector<std::int64_t> ids;
    for (char c : text) ids.push_back(2 + static_cast<std::int64_t>(kAlphabet.find(c)));
    return ids;
  }
  [[nodiscard]] std::string decode(const std::vector<std::int64_t>& ids) const {
    std::string text;
    for (auto id : ids)
      if (id >= 2) text += kAlphabet[static_cast<std::size_t>(id - 2)];
    return text;
  }
  [[nodiscard]] std::int64_t eos_token_id() const { return 1; }
  [[nodiscard]] std::int64_t pad_token_id() const { return 0; }
  [[nodiscard]] std::int64_t vocab_size() const { return 2 + static_cast<std::int64_t>(kAlphabet.size()); }

 private:
  static constexpr std::string_view kAlphabet = "0123456789+=";
};
static_assert(verl::check_tokenizer<CharTokenizer>());

// A bigram language model: the next-token logits depend on the current token only.
struct TinyPolicyImpl : torch::nn::Module {
  explicit TinyPolicyImpl(std::int64_t vocab) {
    table = register_module("table", torch::nn::Embedding(vocab, vocab));
  }

  // Per-token log-probs of the last R tokens, as verl's actor computes them: the logits at positions
  // T-R-1 .. T-2 score the tokens at T-R .. T-1; padded response positions get 0.
  verl::LogProbOutput log_probs(const verl::TokenBatch& batch, const verl::LogProbOptions& options) {
    batch.validate();
    const auto t = batch.sequence_length(), r = batch.response_length;
    const auto logits = table(batch.input_ids.narrow(1, t - r - 1, r)) / options.temperature;  // (B,R,V)
    const auto logp_all = logits.log_softmax(-1);                                             // (B,R,V)
    const auto targets = batch.input_ids.narrow(1, t - r, r);                                 // (B,R)
    const auto mask = batch.attention_mask.narrow(1, t - r, r).to(logits.scalar_type());      // (B,R)
    verl::LogProbOutput out;
    out.log_probs = logp_all.gather(-1, targets.unsqueeze(-1)).squeeze(-1) * mask;            // (B,R)
    if (options.compute_entropy) out.entropy = -(logp_all.exp() * logp_all).sum(-1) * mask;  // (B,R)
    return out;
  }

  // Samples params.n responses per prompt (rows i*n .. i*n+n-1 belong to prompt i), stopping at eos.
  verl::Rollout generate(const verl::Prompts& prompts, const verl::SamplingParams& params) {
    params.validate();
    prompts.validate();
    torch::NoGradGuard no_grad;
    if (params.seed) torch::manual_seed(*params.seed);
    const auto prompt_ids = prompts.input_ids.repeat_interleave(params.n, 0);            // (N,P)
    const auto prompt_mask = prompts.attention_mask.repeat_interleave(params.n, 0);      // (N,P)
    const auto n = prompt_ids.size(0);
    auto current = prompt_ids.select(1, prompt_ids.size(1) - 1);                        // (N,)
    auto alive = torch::ones({n}, torch::kBool);                                        // (N,)
    std::vector<torch::Tensor> tokens, masks;
    for (std::int64_t step = 0; step < params.max_tokens; ++step) {
      const auto logits = table(current);                                               // (N,V)
      const auto next = params.greedy()
                            ? logits.argmax(-1)                                         // (N,)
                            : torch::multinomial((logits / params.temperature).softmax(-1), 1).squeeze(-1);
      masks.push_back(alive.to(torch::kLong));                                          // (N,)
      tokens.push_back(torch::where(alive, next, torch::zeros_like(next)));             // (N,) pad after eos
      alive = alive & (next != kEos);
      current = next;
    }
    verl::Rollout rollout;
    rollout.prompts = prompt_ids;
    rollout.responses = torch::stack(tokens, 1);                                        // (N,R)
    rollout.response_mask = torch::stack(masks, 1);                                     // (N,R)
    rollout.input_ids = torch::cat({prompt_ids, rollout.responses}, 1);                 // (N,T)
    rollout.attention_mask = torch::cat({prompt_mask, rollout.response_mask}, 1);       // (N,T)
    rollout.position_ids = (rollout.attention_mask.cumsum(1) - 1).clamp_min(0);         // (N,T)
    return rollout;
  }

  static constexpr std::int64_t kEos = 1;
  torch::nn::Embedding table{nullptr};
};
TORCH_MODULE(TinyPolicy);  // TinyPolicy is a shared handle to TinyPolicyImpl, like torch::nn::Linear

// Reading the C++ module through its handle: this adapter is the "model" verl sees.
struct TinyActor {
  TinyPolicy policy;
  verl::LogProbOutput log_probs(const verl::TokenBatch& b, const verl::LogProbOptions& o) { return policy->log_probs(b, o); }
  verl::Rollout generate(const verl::Prompts& p, const verl::SamplingParams& s) { return policy->generate(p, s); }
  std::vector<torch::Tensor> parameters() { return policy->parameters(); }
};
static_assert(verl::check_actor_model<TinyActor>());

// A rule reward in verl's compute_score shape: 1 when the decoded answer equals the ground truth.
struct ExactMatchReward {
  verl::RewardOutput operator()(const verl::RewardInput& item) const {
    return item.response == item.ground_truth ? 1.0 : 0.0;
  }
};
static_assert(verl::RewardFunction<ExactMatchReward>);

// Left-pads the encoded prompts into a verl::Prompts.
verl::Prompts tokenize_prompts(const CharTokenizer& tok, const std::vector<verl::ItemInfo>& items) {
  std::int64_t width = 0;
  for (const auto& item : items) width = std::max<std::int64_t>(width, static_cast<std::int64_t>(item.prompt.size()));
  const auto b = static_cast<std::int64_t>(items.size());
  auto ids = torch::full({b, width}, tok.pad_token_id(), torch::kLong);                  // (B,P)
  auto mask = torch::zeros({b, width}, torch::kLong);                                    // (B,P)
  for (std::int64_t i = 0; i < b; ++i) {
    const auto encoded = tok.encode(items[static_cast<std::size_t>(i)].prompt);
    const auto len = static_cast<std::int64_t>(encoded.size());
    ids[i].narrow(0, width - len, len).copy_(torch::tensor(encoded, torch::kLong));
    mask[i].narrow(0, width - len, len).fill_(1);
  }
  return {ids, mask, (mask.cumsum(1) - 1).clamp_min(0)};
}

}  // namespace

int main() {
  torch::manual_seed(0);
  const CharTokenizer tokenizer;
  TinyActor actor{TinyPolicy(tokenizer.vocab_size())};
  std::int64_t weights = 0;
  for (const auto& p : actor.parameters()) weights += p.numel();
  std::printf("actor: TinyPolicy satisfies verl::ActorModel (%lld weights)\n", static_cast<long long>(weights));

  // 2. Prompts as a typed batch, with the per-item data the reward needs.
  std::vector<verl::ItemInfo> items = {{"1+1=", "arith", "2", {}},
                                       {"2+3=", "arith", "5", {}},
                                       {"12+9=", "arith", "21", {}},
                                       {"4+4=", "arith", "8", {}}};
  const auto encoded = tokenize_prompts(tokenizer, items);
  const verl::Batch<input_ids, attention_mask, position_ids> prompt_batch(
      encoded.input_ids, encoded.attention_mask, encoded.position_ids, items);
  std::cout << "prompts: " << prompt_batch << '\n';

  // 3. Rollout: n = 4 samples per prompt; the prompt-level items are repeated to match.
  verl::SamplingParams sampling;
  sampling.n = 4;
  sampling.max_tokens = 6;
  sampling.seed = 0;
  const auto rollout = actor.generate(encoded, sampling);
  rollout.validate();
  const auto groups = torch::arange(prompt_batch.size()).repeat_interleave(sampling.n);  // (N,)
  const auto rollout_batch =
      verl::Batch<prompts, responses, response_mask, input_ids, attention_mask, position_ids>(
          rollout.prompts, rollout.responses, rollout.response_mask, rollout.input_ids, rollout.attention_mask,
          rollout.position_ids, prompt_batch.repeat_interleave(sampling.n).items())
          .with<uid>(groups);
  std::cout << "rollout: " << rollout_batch << '\n';

  // 4. Rule reward over decoded text; the score goes on the last valid response token.
  const ExactMatchReward reward;
  const auto n = rollout_batch.size();
  const auto& mask = rollout_batch.get<response_mask>();                                 // (N,R)
  auto scores = torch::zeros(mask.sizes(), torch::kFloat);                                // (N,R)
  const auto lengths = mask.sum(1);                                                       // (N,)
  double total_reward = 0.0;
  for (std::int64_t i = 0; i < n; ++i) {
    const auto row = rollout_batch.get<responses>()[i].contiguous();
    const std::vector<std::int64_t> ids(row.data_ptr<std::int64_t>(), row.data_ptr<std::int64_t>() + row.numel());
    const auto text = tokenizer.decode(ids);
    const auto result = reward(verl::make_reward_input(rollout_batch.items()[static_cast<std::size_t>(i)], text));
    const auto last = lengths[i].item<std::int64_t>() - 1;
    if (last >= 0) scores[i][last] = result.score;
    total_reward += result.score;
  }
  const auto scored = rollout_batch.with<token_level_scores>(scores);
  std::printf("reward: mean %.3f over %lld responses\n", total_reward / static_cast<double>(n),
              static_cast<long long>(n));

  // 5. Balance items across 2 data-parallel ranks by token count; rank r takes the r-th contiguous chunk.
  const std::int64_t world_size = 2;
  const auto token_counts = scored.get<attention_mask>().sum(1);                         // (N,)
  const auto balanced = scored.reorder(verl::balanced_permutation(token_counts, world_size));
  std::vector<std::int64_t> rank_tokens;
  for (const auto& shard : balanced.chunk(world_size))
    rank_tokens.push_back(shard.get<attention_mask>().sum().item<std::int64_t>());
  std::printf("ranks: %lld ranks hold %lld and %lld tokens (spread %lld)\n", static_cast<long long>(world_size),
              static_cast<long long>(rank_tokens[0]), static_cast<long long>(rank_tokens[1]),
              static_cast<long long>(std::abs(rank_tokens[0] - rank_tokens[1])));

  // 6. Remove-padding layout and back.
  const auto layout = verl::make_packed_layout(balanced.get<attention_mask>());
  const auto packed_ids = verl::unpad(balanced.get<input_ids>(), layout);                // (total,)
  const auto restored = verl::pad(packed_ids, layout);                                   // (N,T)
  const bool packing_exact = torch::equal(restored, balanced.get<input_ids>() * balanced.get<attention_mask>());
  std::printf("packing: %lld of %lld positions kept, max_seqlen %lld, round trip %s\n",
              static_cast<long long>(layout.total_tokens()),
              static_cast<long long>(balanced.get<input_ids>().numel()), static_cast<long long>(layout.max_seqlen),
              packing_exact ? "exact" : "WRONG");

  // 7. Micro-batched log-probs agree with the full batch; store them as old_log_probs.
  const auto r = balanced.get<responses>().size(1);
  auto token_batch = [r](const auto& b) {
    return verl::TokenBatch{b.template get<input_ids>(), b.template get<attention_mask>(),
                            b.template get<position_ids>(), r};
  };
  torch::NoGradGuard no_grad;
  const auto full = actor.log_probs(token_batch(balanced), {}).log_probs;                // (N,R)
  std::vector<torch::Tensor> parts;
  for (const auto& micro : balanced.split(4)) parts.push_back(actor.log_probs(token_batch(micro), {}).log_probs);
  const auto with_logp = balanced.with<old_log_probs>(torch::cat(parts, 0));
  const double max_diff = (with_logp.get<old_log_probs>() - full).abs().max().item<double>();
  std::printf("log-probs: %zu micro-batches of 4 match the full batch (max |diff| %.1e)\n", parts.size(), max_diff);

  const bool ok = packing_exact && max_diff == 0.0 && with_logp.size() == 16 &&
                  (with_logp.get<old_log_probs>() <= 0).all().item<bool>();
  std::printf("foundation tour: %s\n", ok ? "ok" : "FAILED");
  return ok ? 0 : 1;
}
