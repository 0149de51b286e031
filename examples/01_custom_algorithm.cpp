// 01_custom_algorithm: a new RL algorithm written in a user's own code, by composition, not by forking.
//
// What it shows:
//   1. a custom advantage estimator (group-median baseline: advantage = score - median of the prompt's
//      group, robust to one lucky sample) that satisfies verl::AdvantageEstimator;
//   2. a custom policy loss (truncated importance-sampled policy gradient, token-mean) that satisfies
//      verl::PolicyLoss;
//   3. a whole algorithm type: a defaults struct plus verl::RLAlgorithm, with the usual properties
//      (KL as a loss, entropy bonus) still available, and its needs known at compile time;
//   4. verl::ModelSet rejecting, at compile time, a trainer that lacks a model the algorithm needs;
//   5. one update step on a toy batch: advantages, loss, backward, and the gradient's sign checked.
//
// Expected output:
//   algorithm: median_pg (needs_critic=0, needs_groups=1, needs_reference=1)
//   advantages (group 0): 0.75 -0.25 0.25 -0.25      (scores 1, 0, 0.5, 0; median 0.25)
//   advantages (group 1): 0.00 1.00 0.00 -1.00       (scores 0, 1, 0, -1; median 0)
//   loss: 0.0000 (token-mean over 24 tokens)          (log_prob == old_log_prob at the first step: only
//                                                     the gradient is nonzero)
//   gradient pushes up the log-probs of positive-advantage tokens: yes
//   custom algorithm: ok
#include <verl/verl.hpp>
#include <verl/algos/algorithm.hpp>
#include <verl/algos/functional.hpp>

#include <torch/torch.h>

#include <cstdio>
#include <string_view>

namespace {

// 1. Advantage = outcome score - median score of the item's group (items sharing a uid), on every token.
struct GroupMedianBaseline {
  static constexpr std::string_view name = "group_median";
  static constexpr bool needs_critic = false;  // reads no values: no critic is trained
  static constexpr bool needs_groups = true;   // reads AdvantageInputs::index

  static verl::AdvantageOutput compute(const verl::AdvantageInputs& in) {
    const auto scores = in.token_level_rewards.sum(-1);                          // (B,)
    auto baseline = torch::empty_like(scores);                                   // (B,)
    const auto groups = std::get<0>(torch::_unique(in.index->cpu()));            // (G,)
    for (std::int64_t g = 0; g < groups.numel(); ++g) {
      const auto members = in.index->eq(groups[g]);                               // (B,) bool
      // torch's median of an even-sized set is the lower middle value; use the mean of the two middles.
      const auto sorted = std::get<0>(scores.masked_select(members).sort());     // (n,)
      const auto n = sorted.numel();
      const auto median = (sorted[(n - 1) / 2] + sorted[n / 2]) / 2;
      baseline.masked_fill_(members, median);
    }
    const auto advantages = (scores - baseline).unsqueeze(-1) * in.response_mask;  // (B,R)
    return {advantages, advantages};
  }
};
static_assert(verl::check_advantage_estimator<GroupMedianBaseline>());

// 2. -min(ratio, cap) * A, averaged over the valid tokens (verl's token-mean).
struct TruncatedISPolicyGradient {
  static constexpr std::string_view name = "truncated_is_pg";
  static constexpr double cap = 2.0;

  static verl::PolicyLossOutput compute(const verl::PolicyLossInputs& in) {
    const auto log_ratio = in.log_prob - in.old_log_prob;                        // (B,R)
    const auto ratio = log_ratio.exp();                                          // (B,R)
    const auto weight = ratio.clamp_max(cap).detach() * log_ratio;              // (B,R) score-function form
    const auto token_loss = -weight * in.advantages;                            // (B,R)
    verl::PolicyLossOutput out;
    out.loss = verl::functional::masked_mean(token_loss, in.response_mask);     // ()
    out.pg_clipfrac = verl::functional::masked_mean((ratio > cap).to(ratio.scalar_type()), in.response_mask);
    out.ppo_kl = verl::functional::masked_mean(-log_ratio, in.response_mask).detach();
    out.pg_clipfrac_lower = torch::zeros({});
    return out;
  }
};
static_assert(verl::check_policy_loss<TruncatedISPolicyGradient>());

// 3. The algorithm: its defaults, then any verl property can override them.
struct median_pg_defaults {
  static constexpr std::string_view name = "median_pg";
  using advantage = verl::advantage<GroupMedianBaseline>;
  using policy_loss = verl::policy_loss<TruncatedISPolicyGradient>;
  using loss_agg = verl::loss_agg<verl::LossAggMode::token_mean>;
  using kl = verl::kl_loss<verl::kl_estimator::k3>;
  using entropy_coeff = verl::entropy_coeff<0.0>;
};
template <class... Properties>
using MedianPG = verl::RLAlgorithm<median_pg_defaults, Properties...>;

using Algorithm = MedianPG<verl::entropy_coeff<0.001>>;
static_assert(!Algorithm::needs_critic && Algorithm::needs_groups && Algorithm::needs_reference);

// 4. The models a trainer for it holds. ModelSet<Algorithm, Actor> alone (no reference) would not compile:
//    "verl::ModelSet: this algorithm regularises a KL to the reference policy ... pass a type satisfying
//    verl::ReferenceModel, or use verl::no_kl".
struct Actor {
  verl::LogProbOutput log_probs(const verl::TokenBatch&, const verl::LogProbOptions&);
  verl::Rollout generate(const verl::Prompts&, const verl::SamplingParams&);
  std::vector<torch::Tensor> parameters();
};
struct Reference {
  verl::LogProbOutput log_probs(const verl::TokenBatch&, const verl::LogProbOptions&);
};
using Models = verl::ModelSet<Algorithm, Actor, verl::no_critic, Reference>;
static_assert(!Models::has_critic && Models::has_reference);

void print_row(const char* label, const torch::Tensor& row) {
  std::printf("%s", label);
  for (std::int64_t i = 0; i < row.numel(); ++i) std::printf(" %.2f", row[i].item<double>() + 0.0);
  std::printf("\n");
}

}  // namespace

int main() {
  std::printf("algorithm: %s (needs_critic=%d, needs_groups=%d, needs_reference=%d)\n", Algorithm::name.data(),
              Algorithm::needs_critic, Algorithm::needs_groups, Algorithm::needs_reference);

  // 5. Two prompts, four samples each, three response tokens; the outcome score sits on the last token.
  const auto uid = torch::tensor({0, 0, 0, 0, 1, 1, 1, 1}, torch::kLong);                // (B,)
  const auto outcome = torch::tensor({1.0, 0.0, 0.5, 0.0, 0.0, 1.0, 0.0, -1.0});        // (B,)
  const auto mask = torch::ones({8, 3});                                                 // (B,R)
  auto rewards = torch::zeros({8, 3});                                                   // (B,R)
  rewards.select(1, 2).copy_(outcome);

  verl::AdvantageInputs adv_in;
  adv_in.token_level_rewards = rewards;
  adv_in.response_mask = mask;
  adv_in.index = uid;
  const auto adv = Algorithm::estimator::compute(adv_in).advantages;                    // (B,R)
  print_row("advantages (group 0):", adv.select(1, 0).narrow(0, 0, 4));
  print_row("advantages (group 1):", adv.select(1, 0).narrow(0, 4, 4));

  torch::manual_seed(0);
  const auto old_log_prob = -torch::rand({8, 3}) - 0.1;                                  // (B,R)
  auto log_prob = old_log_prob.clone().requires_grad_(true);                             // (B,R)
  verl::PolicyLossInputs loss_in;
  loss_in.old_log_prob = old_log_prob;
  loss_in.log_prob = log_prob;
  loss_in.advantages = adv;
  loss_in.response_mask = mask;
  const auto out = Algorithm::loss::compute(loss_in);
  out.loss.backward();
  std::printf("loss: %.4f (token-mean over %lld tokens)\n", out.loss.item<double>(),
              static_cast<long long>(mask.sum().item<double>()));

  // Gradient descent lowers the loss, so it raises log_prob where the gradient is negative: exactly the
  // positive-advantage tokens (ratio = 1 here, so d loss / d log_prob = -A / N).
  const auto grad = log_prob.grad();                                                     // (B,R)
  const bool pushes_up = torch::equal(grad.lt(0), adv.gt(0)) &&
                         torch::allclose(grad, -adv / mask.sum());
  std::printf("gradient pushes up the log-probs of positive-advantage tokens: %s\n", pushes_up ? "yes" : "no");

  const auto medians = torch::tensor({0.25, 0.25, 0.25, 0.25, 0.0, 0.0, 0.0, 0.0});      // (B,)
  const bool ok = pushes_up && torch::allclose(adv.select(1, 0), outcome - medians);
  std::printf("custom algorithm: %s\n", ok ? "ok" : "FAILED");
  return ok ? 0 : 1;
}
