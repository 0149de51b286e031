// The user types shown in docs/concepts.md, compiled so the docs stay true. Keep the two in sync.
#include "verl/concepts/concepts.hpp"

#include <span>

namespace doc {

// [actor]
struct MyActor {
  verl::LogProbOutput log_probs(const verl::TokenBatch& batch, const verl::LogProbOptions& options);
  verl::Rollout generate(const verl::Prompts& prompts, const verl::SamplingParams& params);
  std::vector<at::Tensor> parameters();  // what the optimizer owns
};
static_assert(verl::ActorModel<MyActor>);
// [actor]

// [reference]
struct FrozenReference {
  verl::LogProbOutput log_probs(const verl::TokenBatch& batch, const verl::LogProbOptions& options) const;
};
static_assert(verl::ReferenceModel<FrozenReference> && !verl::ActorModel<FrozenReference>);
static_assert(verl::ReferenceModel<MyActor>);  // every actor can serve as a reference
// [reference]

// [critic]
struct MyCritic {
  at::Tensor values(const verl::TokenBatch& batch);  // (B,R)
  std::vector<at::Tensor> parameters();
};
static_assert(verl::CriticModel<MyCritic>);
// [critic]

// [reward]
struct MyRewardModel {
  at::Tensor score(const verl::TokenBatch& batch);  // (B,)
};
inline constexpr auto exact_match = [](const verl::RewardInput& in) {
  return in.response == in.ground_truth ? 1.0 : 0.0;
};
static_assert(verl::RewardModel<MyRewardModel> && verl::Reward<MyRewardModel>);
static_assert(verl::RewardFunction<decltype(exact_match)> && verl::Reward<decltype(exact_match)>);
// [reward]

// [tokenizer]
struct MyTokenizer {
  std::vector<std::int64_t> encode(std::string_view text) const;
  std::string decode(std::span<const std::int64_t> ids) const;
  std::int64_t eos_token_id() const;
  std::int64_t pad_token_id() const;
  std::int64_t vocab_size() const;
};
static_assert(verl::Tokenizer<MyTokenizer>);
// [tokenizer]

// [communicator]
struct MyCommunicator {
  int rank() const;
  int world_size() const;
  void all_reduce(at::Tensor& tensor, verl::ReduceOp op);
  void broadcast(at::Tensor& tensor, int root);
  void all_gather(std::vector<at::Tensor>& out, const at::Tensor& in);
  void barrier();
};
static_assert(verl::Communicator<MyCommunicator>);
// [communicator]

// [advantage]
struct MyEstimator {
  static constexpr std::string_view name = "my_grpo";
  static constexpr bool needs_critic = false;  // never reads in.values
  static constexpr bool needs_groups = true;   // reads in.index
  verl::AdvantageOutput compute(const verl::AdvantageInputs& in) const;
};
static_assert(verl::AdvantageEstimator<MyEstimator>);
// [advantage]

// [loss]
struct MyLoss {
  static constexpr std::string_view name = "my_clip";
  verl::PolicyLossOutput compute(const verl::PolicyLossInputs& in) const;
};
static_assert(verl::PolicyLoss<MyLoss>);
// [loss]

// [checker]
template <class Actor, class Critic>
class MyTrainer {
  static_assert(verl::check_actor_model<Actor>());
  static_assert(verl::check_critic_model<Critic>());
};
template class MyTrainer<MyActor, MyCritic>;
// [checker]

}  // namespace doc
