// Runtime behaviour of the contract vocabulary: include/verl/core/model_io.hpp, include/verl/core/algo_io.hpp.
// Ranges pinned: vLLM SamplingParams._verify_args (vLLM 0.8); loss_agg_mode spellings: verl 0.4
// trainer/ppo/core_algos.py agg_loss.
#include "verl/core/algo_io.hpp"
#include "verl/core/model_io.hpp"

#include "catch_torch.hpp"
#include "error_of.hpp"

#include <string>

namespace {

using verl::test::error_of;

verl::TokenBatch token_batch(std::int64_t b, std::int64_t t, std::int64_t r) {
  return {torch::ones({b, t}, torch::kLong), torch::ones({b, t}, torch::kLong),
          torch::arange(t).repeat({b, 1}), r};
}

}  // namespace

TEST_CASE("SamplingParams defaults are vLLM's and valid", "[core][model_io]") {
  const verl::SamplingParams p;
  CHECK(p.n == 1);
  CHECK(p.temperature == 1.0);
  CHECK(p.top_p == 1.0);
  CHECK(p.top_k == -1);
  CHECK(p.max_tokens == 16);
  CHECK_FALSE(p.seed.has_value());
  CHECK_FALSE(p.greedy());
  CHECK_NOTHROW(p.validate());
}

TEST_CASE("SamplingParams::validate accepts the edges of each range", "[core][model_io]") {
  verl::SamplingParams p;
  p.temperature = 0.0;  // greedy
  p.top_p = 1e-9;
  p.top_k = 1;
  p.min_p = 1.0;
  p.n = 64;
  p.max_tokens = 1;
  p.stop_token_ids = {0, 151643};
  p.seed = 0;
  CHECK(p.greedy());
  CHECK_NOTHROW(p.validate());
}

TEST_CASE("SamplingParams::validate names the field and its allowed range", "[core][model_io]") {
  auto message_for = [](auto&& set) {
    verl::SamplingParams p;
    set(p);
    return error_of([&] { p.validate(); });
  };
  using Catch::Matchers::Contains;
  CHECK_THAT(message_for([](auto& p) { p.n = 0; }), Contains("`n` is 0") && Contains(">= 1"));
  CHECK_THAT(message_for([](auto& p) { p.temperature = -0.5; }),
             Contains("verl::SamplingParams: `temperature` is -0.5") && Contains(">= 0"));
  CHECK_THAT(message_for([](auto& p) { p.temperature = std::nan(""); }), Contains("`temperature`"));
  CHECK_THAT(message_for([](auto& p) { p.top_p = 0.0; }), Contains("`top_p` is 0") && Contains("(0, 1]"));
  CHECK_THAT(message_for([](auto& p) { p.top_p = 1.5; }), Contains("`top_p` is 1.5"));
  CHECK_THAT(message_for([](auto& p) { p.top_k = 0; }), Contains("`top_k` is 0") && Contains("-1 (off)"));
  CHECK_THAT(message_for([](auto& p) { p.top_k = -2; }), Contains("`top_k` is -2"));
  CHECK_THAT(message_for([](auto& p) { p.min_p = 1.1; }), Contains("`min_p` is 1.1") && Contains("[0, 1]"));
  CHECK_THAT(message_for([](auto& p) { p.repetition_penalty = 0.0; }), Contains("`repetition_penalty` is 0"));
  CHECK_THAT(message_for([](auto& p) { p.max_tokens = 0; }), Contains("`max_tokens` is 0"));
  CHECK_THAT(message_for([](auto& p) { p.stop_token_ids = {2, -1}; }), Contains("`stop_token_ids[1]` is -1"));
  // The first field out of range is reported, in declaration order.
  CHECK_THAT(message_for([](auto& p) { p.n = 0; p.top_p = 2.0; }), Contains("`n`") && !Contains("top_p"));
}

TEST_CASE("TokenBatch::validate checks shapes and the response length", "[core][model_io]") {
  CHECK_NOTHROW(token_batch(2, 5, 4).validate());
  CHECK(token_batch(2, 5, 4).batch_size() == 2);
  CHECK(token_batch(2, 5, 4).sequence_length() == 5);
  using Catch::Matchers::Contains;
  // R = T leaves no token before the first scored one.
  CHECK_THAT(error_of<verl::ShapeError>([] { token_batch(2, 5, 5).validate(); }),
             Contains("`response_length` is 5, expected a value in [1, 4]"));
  CHECK_THAT(error_of<verl::ShapeError>([] { token_batch(2, 5, 0).validate(); }), Contains("`response_length` is 0"));
  auto bad_mask = token_batch(2, 5, 2);
  bad_mask.attention_mask = torch::ones({2, 4}, torch::kLong);
  CHECK_THAT(error_of<verl::ShapeError>([&] { bad_mask.validate(); }),
             Contains("`attention_mask` has shape [2, 4], expected [2, 5]"));
  auto flat = token_batch(2, 5, 2);
  flat.input_ids = torch::ones({10}, torch::kLong);
  CHECK_THAT(error_of<verl::ShapeError>([&] { flat.validate(); }), Contains("`input_ids` has 1 dimensions"));
  CHECK_THAT(error_of<verl::ShapeError>([] { verl::TokenBatch{}.validate(); }), Contains("`input_ids` is undefined"));
}

TEST_CASE("Prompts::validate checks the three tensors agree", "[core][model_io]") {
  verl::Prompts p{torch::ones({3, 4}, torch::kLong), torch::ones({3, 4}, torch::kLong),
                  torch::arange(4).repeat({3, 1})};
  CHECK_NOTHROW(p.validate());
  p.position_ids = torch::arange(3);
  CHECK_THROWS_AS(p.validate(), verl::ShapeError);
}

TEST_CASE("Rollout::token_batch scores the responses and shares storage", "[core][model_io]") {
  const std::int64_t b = 2, p = 3, r = 4;
  verl::Rollout rollout;
  rollout.prompts = torch::randint(0, 100, {b, p}, torch::kLong);          // (B,P)
  rollout.responses = torch::randint(0, 100, {b, r}, torch::kLong);        // (B,R)
  rollout.input_ids = torch::cat({rollout.prompts, rollout.responses}, 1);  // (B,T)
  rollout.attention_mask = torch::ones({b, p + r}, torch::kLong);          // (B,T)
  rollout.position_ids = torch::arange(p + r).repeat({b, 1});              // (B,T)
  rollout.response_mask = torch::ones({b, r}, torch::kLong);               // (B,R)
  CHECK_NOTHROW(rollout.validate());

  const verl::TokenBatch batch = rollout.token_batch();
  CHECK(batch.response_length == r);
  CHECK(batch.input_ids.is_same(rollout.input_ids));
  CHECK_NOTHROW(batch.validate());

  rollout.log_probs = torch::zeros({b, r + 1});  // (B,R+1): wrong
  CHECK_THAT(error_of<verl::ShapeError>([&] { rollout.validate(); }),
             Catch::Matchers::Contains("verl::Rollout: `log_probs` has shape [2, 5], expected [2, 4]"));
  rollout.log_probs.reset();
  rollout.input_ids = rollout.input_ids.narrow(1, 0, p + r - 1);
  CHECK_THAT(error_of<verl::ShapeError>([&] { rollout.validate(); }),
             Catch::Matchers::Contains("expected P + R = 3 + 4"));
}

TEST_CASE("RewardInput views an ItemInfo and RewardOutput converts from a score", "[core][model_io]") {
  const verl::ItemInfo info{"What is 6*7?", "gsm8k", "42", {{"split", "train"}, {"index", 17}}};
  const std::string response = "The answer is 42.";
  const verl::RewardInput in = verl::make_reward_input(info, response);
  CHECK(in.data_source == "gsm8k");
  CHECK(in.prompt == "What is 6*7?");
  CHECK(in.response == response);
  CHECK(in.ground_truth == "42");
  CHECK(in.extra_info.at("index") == 17);
  CHECK(in.ground_truth.data() == info.ground_truth.data());  // a view, not a copy

  const verl::RewardOutput bare = 1.0;
  CHECK(bare.score == 1.0);
  CHECK(bare.extra.empty());
  const verl::RewardOutput rich{0.5, {{"acc", 1.0}}};
  CHECK(rich.extra.at("acc") == 1.0);
  CHECK(rich != bare);
}

TEST_CASE("LossAggMode round-trips verl's spellings", "[core][algo_io]") {
  for (auto mode : {verl::LossAggMode::token_mean, verl::LossAggMode::seq_mean_token_sum,
                    verl::LossAggMode::seq_mean_token_mean, verl::LossAggMode::seq_mean_token_sum_norm}) {
    CHECK(verl::parse_loss_agg_mode(verl::to_string(mode)) == mode);
  }
  CHECK(verl::parse_loss_agg_mode("seq-mean-token-sum-norm") == verl::LossAggMode::seq_mean_token_sum_norm);
  CHECK_THAT(error_of([] { (void)verl::parse_loss_agg_mode("token_mean"); }),
             Catch::Matchers::Contains("`loss_agg_mode` is \"token_mean\", expected one of \"token-mean\""));
}

TEST_CASE("AdvantageInputs and PolicyLossInputs validate their shapes", "[core][algo_io]") {
  verl::AdvantageInputs in;
  in.token_level_rewards = torch::zeros({4, 3});                 // (B,R)
  in.response_mask = torch::ones({4, 3});                        // (B,R)
  CHECK_NOTHROW(in.validate());
  in.index = torch::tensor({0, 0, 1, 1}, torch::kLong);          // (B,)
  in.values = torch::zeros({4, 3});                              // (B,R)
  CHECK_NOTHROW(in.validate());
  in.index = torch::tensor({0, 0, 1}, torch::kLong);             // (3,): wrong
  CHECK_THAT(error_of<verl::ShapeError>([&] { in.validate(); }),
             Catch::Matchers::Contains("`index` must be a (B,) tensor with B = 4, got [3]"));
  in.index.reset();
  in.values = torch::zeros({4, 2});
  CHECK_THAT(error_of<verl::ShapeError>([&] { in.validate(); }),
             Catch::Matchers::Contains("`values` has shape [4, 2], expected [4, 3]"));

  verl::PolicyLossInputs loss;
  loss.log_prob = torch::zeros({2, 3});       // (B,R)
  loss.old_log_prob = torch::zeros({2, 3});   // (B,R)
  loss.advantages = torch::zeros({2, 3});     // (B,R)
  loss.response_mask = torch::ones({2, 3});   // (B,R)
  CHECK_NOTHROW(loss.validate());
  CHECK(loss.loss_agg_mode == verl::LossAggMode::token_mean);
  loss.advantages = torch::zeros({2});
  CHECK_THROWS_AS(loss.validate(), verl::ShapeError);
}
