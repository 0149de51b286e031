// verl::models::Actor, Reference, Critic and RewardScorer (include/verl/models/{actor,critic,reward_model}.hpp)
// without Python: the contracts, log-probs / values / scores against the same model's plain forward (full
// logits -> log_softmax -> gather, verl 0.7.1 dp_actor / dp_critic slicing), masking, gradients, the reference
// snapshot, the two reward read-out rules on hand-derived cases, and checkpoint round trips with transformers'
// layouts and load-report rules. Parity with transformers itself is tests/parity/heads/.
#include "catch_torch.hpp"

#include "verl/models/actor.hpp"
#include "verl/models/critic.hpp"
#include "verl/models/reward_model.hpp"

#include "temp_dir.hpp"

#include <filesystem>
#include <fstream>
#include <string>

namespace test_heads {  // one namespace per file: a unity build (tests/CMakeLists.txt) may join files

using namespace verl::models;
using nlohmann::json;
using verl::test::TempDir;
namespace fs = std::filesystem;

static_assert(verl::check_actor_model<Actor>());
static_assert(verl::check_reference_model<Reference>());
static_assert(!verl::ActorModel<Reference>, "the reference must not be usable as an actor (no parameters/generate)");
static_assert(verl::check_critic_model<Critic>());
static_assert(verl::check_reward_model<RewardScorer>());

namespace {

TransformerConfig tiny_config(bool tied, const std::string& type = "qwen2") {
  json j{{"model_type", type},          {"vocab_size", 53},         {"hidden_size", 32},
         {"intermediate_size", 48},     {"num_hidden_layers", 2},   {"num_attention_heads", 4},
         {"num_key_value_heads", 2},    {"max_position_embeddings", 64}, {"rms_norm_eps", 1e-6},
         {"tie_word_embeddings", tied}, {"pad_token_id", 0},        {"eos_token_id", 1},
         {"initializer_range", 0.2}};
  return TransformerConfig::from_json(j);
}

CausalLM make_lm(bool tied, std::uint64_t seed = 0) {
  torch::manual_seed(seed);
  CausalLM lm(tiny_config(tied));
  lm->init_weights(0.2);
  lm->eval();
  return lm;
}

// Two rows: a left-padded prompt (2 pads) and a right-padded response (last 2 columns padding) in row 0;
// row 1 fully real. T = 8, R = 4. Position ids: cumsum(mask) - 1 clipped at 0 (verl's compute_position_id).
verl::TokenBatch padded_batch() {
  auto ids = torch::tensor({{0, 0, 5, 9, 11, 13, 0, 0}, {4, 7, 8, 2, 17, 19, 23, 29}}, torch::kLong);
  auto mask = torch::tensor({{0, 0, 1, 1, 1, 1, 0, 0}, {1, 1, 1, 1, 1, 1, 1, 1}}, torch::kLong);
  auto pos = (mask.cumsum(1) - 1).clamp_min(0);
  return verl::TokenBatch{ids, mask, pos, 4};
}

json read_json(const fs::path& p) {
  std::ifstream in(p);
  return json::parse(in);
}

template <class E, class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const E& e) {
    return e.what();
  }
  FAIL("expected an exception");
  return {};
}

}  // namespace

TEST_CASE("Actor::log_probs equals log_softmax of the full logits at verl's response slice", "[models][heads]") {
  for (bool tied : {false, true}) {
    auto lm = make_lm(tied, 1);
    Actor actor(lm, ActorOptions{.chunk_tokens = 3});  // chunks of 3 over 8 scored rows: a partial last chunk
    const auto batch = padded_batch();
    for (double temperature : {1.0, 0.7}) {
      const auto out = actor.log_probs(batch, {.temperature = temperature, .compute_entropy = true});
      // Reference: verl dp_actor: logits (B,T,V) / T, log_softmax, gather, slice [:, -R-1:-1], mask.
      const auto logits = lm->logits(batch.input_ids, batch.attention_mask, batch.position_ids) / temperature;
      const auto lsm = torch::log_softmax(logits, -1).slice(1, 3, 7);                   // (B,R,V)
      const auto want = lsm.gather(2, batch.input_ids.slice(1, 4, 8).unsqueeze(2)).squeeze(2);  // (B,R)
      const auto ent = -(lsm.exp() * lsm).sum(-1);                                        // (B,R)
      const auto mask = batch.attention_mask.slice(1, 4, 8).to(torch::kBool);
      CHECK(out.log_probs.sizes() == torch::IntArrayRef{2, 4});
      CHECK(out.log_probs.scalar_type() == torch::kFloat);
      CHECK(torch::allclose(out.log_probs, want.masked_fill(~mask, 0), 1e-5, 1e-5));
      REQUIRE(out.entropy.has_value());
      CHECK(torch::allclose(*out.entropy, ent.masked_fill(~mask, 0), 1e-5, 1e-5));
      CHECK(out.log_probs.masked_select(~mask).abs().sum().item<double>() == 0.0);
      CHECK(out.log_probs.le(0).all().item<bool>());
    }
    CHECK_FALSE(actor.log_probs(batch, {}).entropy.has_value());
  }
}

TEST_CASE("Actor::log_probs: gradients match the full-logits path, left padding does not change a row",
          "[models][heads]") {
  auto lm = make_lm(false, 2);
  Actor actor(lm, ActorOptions{.chunk_tokens = 5});
  const auto batch = padded_batch();
  const auto mask = batch.attention_mask.slice(1, 4, 8).to(torch::kFloat);
  const auto out = actor.log_probs(batch, {.temperature = 0.9, .compute_entropy = true});
  ((out.log_probs * mask).sum() + 0.3 * (*out.entropy * mask).sum()).backward();
  std::vector<torch::Tensor> fused;
  for (auto& p : actor.parameters()) fused.push_back(p.grad().clone()), p.mutable_grad().zero_();
  const auto lsm = torch::log_softmax(lm->logits(batch.input_ids, batch.attention_mask, batch.position_ids) / 0.9, -1)
                       .slice(1, 3, 7);
  const auto lp = lsm.gather(2, batch.input_ids.slice(1, 4, 8).unsqueeze(2)).squeeze(2);
  const auto ent = -(lsm.exp() * lsm).sum(-1);
  ((lp * mask).sum() + 0.3 * (ent * mask).sum()).backward();
  const auto params = actor.parameters();
  for (std::size_t i = 0; i < params.size(); ++i) {
    INFO(i);
    CHECK(torch::allclose(fused[i], params[i].grad(), 1e-4, 1e-5));
  }
  // Row 1 alone, with 3 extra left-padding columns: the same log-probs.
  torch::NoGradGuard no_grad;
  const auto ids = torch::cat({torch::zeros({1, 3}, torch::kLong), batch.input_ids.slice(0, 1, 2)}, 1);
  const auto m = torch::cat({torch::zeros({1, 3}, torch::kLong), torch::ones({1, 8}, torch::kLong)}, 1);
  const verl::TokenBatch shifted{ids, m, (m.cumsum(1) - 1).clamp_min(0), 4};
  CHECK(torch::allclose(actor.log_probs(shifted).log_probs, actor.log_probs(batch).log_probs.slice(0, 1, 2), 1e-5, 1e-6));
}

TEST_CASE("Actor::logits, generate, bad batches", "[models][heads]") {
  auto lm = make_lm(true, 3);
  Actor actor(lm);
  const auto batch = padded_batch();
  torch::NoGradGuard no_grad;
  const auto logits = actor.logits(batch);
  CHECK(logits.sizes() == torch::IntArrayRef{2, 4, 53});
  CHECK(torch::allclose(logits, lm->logits(batch.input_ids, batch.attention_mask, batch.position_ids).slice(1, 3, 7),
                        1e-5, 1e-6));
  verl::Prompts prompts{batch.input_ids.slice(1, 0, 4), batch.attention_mask.slice(1, 0, 4),
                        batch.position_ids.slice(1, 0, 4)};
  verl::SamplingParams sp;
  sp.max_tokens = 3;
  sp.temperature = 0.0;
  sp.return_log_probs = true;
  sp.ignore_eos = true;
  const auto rollout = actor.generate(prompts, sp);
  rollout.validate();
  CHECK(rollout.responses.sizes() == torch::IntArrayRef{2, 3});
  // The sampler's greedy log-probs are the actor's log-probs of its own rollout.
  CHECK(torch::allclose(*rollout.log_probs, actor.log_probs(rollout.token_batch()).log_probs, 1e-5, 1e-5));

  auto bad = batch;
  bad.response_length = 8;  // R must be <= T-1
  CHECK(error_of<verl::ShapeError>([&] { (void)actor.log_probs(bad); }).find("response_length") != std::string::npos);
  CHECK(error_of<verl::ConfigError>([&] { (void)actor.log_probs(batch, {.temperature = 0.0}); }).find("temperature") !=
        std::string::npos);
}

TEST_CASE("Reference: a frozen no-grad snapshot of the actor", "[models][heads]") {
  auto lm = make_lm(false, 4);
  Actor actor(lm);
  auto ref = Reference::copy_of(actor);
  const auto batch = padded_batch();
  const auto before = ref.log_probs(batch).log_probs;
  CHECK_FALSE(before.requires_grad());
  CHECK(torch::equal(before, actor.log_probs(batch).log_probs.detach()));
  {
    torch::NoGradGuard no_grad;
    for (auto& p : actor.parameters()) p.add_(0.01);
  }
  CHECK(torch::equal(ref.log_probs(batch).log_probs, before));  // the actor moved, the reference did not
  CHECK_FALSE(torch::allclose(actor.log_probs(batch).log_probs.detach(), before));
  for (const auto& p : ref.lm()->parameters()) CHECK_FALSE(p.requires_grad());
  CHECK_FALSE(ref.lm()->is_training());
}

TEST_CASE("Critic::values: verl's values[:, -R-1:-1] * mask, dropout only in training", "[models][heads]") {
  torch::manual_seed(5);
  auto critic = Critic::create(tiny_config(false), HeadConfig{.initializer_range = 0.2, .classifier_dropout = 0.5});
  {
    torch::NoGradGuard no_grad;
    critic.module()->score->bias.fill_(0.25);  // a non-zero bias is part of what is checked
  }
  critic.module()->eval();
  const auto batch = padded_batch();
  const auto v = critic.values(batch);
  const auto full = critic.module()->forward(batch.input_ids, batch.attention_mask, batch.position_ids);  // (B,T)
  const auto mask = batch.attention_mask.slice(1, 4, 8).to(torch::kBool);
  CHECK(v.sizes() == torch::IntArrayRef{2, 4});
  CHECK(torch::allclose(v, full.slice(1, 3, 7).masked_fill(~mask, 0), 1e-5, 1e-6));
  CHECK(v.masked_select(~mask).abs().sum().item<double>() == 0.0);
  v.sum().backward();
  CHECK(critic.module()->score->weight.grad().defined());
  CHECK(torch::equal(critic.values(batch), v));  // eval: deterministic
  critic.module()->train();
  CHECK_FALSE(torch::allclose(critic.values(batch), v));  // training: dropout 0.5 on the hidden state
}

TEST_CASE("RewardScorer: verl's and transformers' read-out columns (hand-derived)", "[models][heads]") {
  torch::manual_seed(6);
  auto rm = RewardScorer::create(tiny_config(false));
  // Row 0: pad = eos = 0 is also the last real token (column 5, mask 1); columns 6-7 are padding.
  //   verl:         argmax(pos * mask) = argmax([0,0,0,1,2,3,0,0]) = 5 (the real eos).
  //   transformers: rightmost id != 0 is column 4 (id 13); the real eos at 5 looks like padding.
  // Row 1: no padding; both read column 7.
  auto ids = torch::tensor({{0, 0, 5, 9, 13, 0, 0, 0}, {4, 7, 8, 2, 17, 19, 23, 29}}, torch::kLong);
  auto mask = torch::tensor({{0, 0, 1, 1, 1, 1, 0, 0}, {1, 1, 1, 1, 1, 1, 1, 1}}, torch::kLong);
  const verl::TokenBatch batch{ids, mask, (mask.cumsum(1) - 1).clamp_min(0), 4};
  CHECK(torch::equal(rm.score_columns(batch), torch::tensor({5, 7}, torch::kLong)));
  RewardScorer hf(rm.module(), {.position = ScorePosition::last_non_pad});
  CHECK(torch::equal(hf.score_columns(batch), torch::tensor({4, 7}, torch::kLong)));
  // An all-padding row reads column 0 under both rules (argmax of zeros).
  const verl::TokenBatch empty{torch::zeros({1, 4}, torch::kLong), torch::zeros({1, 4}, torch::kLong),
                               torch::zeros({1, 4}, torch::kLong), 1};
  CHECK(rm.score_columns(empty).item<std::int64_t>() == 0);
  CHECK(hf.score_columns(empty).item<std::int64_t>() == 0);

  const auto per_token = rm.module()->forward(ids, mask, batch.position_ids).detach();  // (B,T)
  const auto s = rm.score(batch);
  CHECK_FALSE(s.requires_grad());
  CHECK(s.sizes() == torch::IntArrayRef{2});
  CHECK(torch::allclose(s, torch::stack({per_token[0][5], per_token[1][7]}), 1e-5, 1e-6));
  CHECK(torch::allclose(hf.score(batch), torch::stack({per_token[0][4], per_token[1][7]}), 1e-5, 1e-6));

  auto no_pad_config = tiny_config(false);
  no_pad_config.pad_token_id.reset();
  RewardScorer no_pad(SequenceScoreModel(no_pad_config), {.position = ScorePosition::last_non_pad});
  CHECK(error_of<verl::ConfigError>([&] { (void)no_pad.score_columns(batch); }).find("pad token") != std::string::npos);
  const verl::TokenBatch one{ids.slice(0, 1, 2), mask.slice(0, 1, 2), batch.position_ids.slice(0, 1, 2), 4};
  CHECK(no_pad.score_columns(one).item<std::int64_t>() == 7);
}

TEST_CASE("Heads checkpoints: save/load round trips, heads from a causal LM, transformers' load report",
          "[models][heads]") {
  const auto batch = padded_batch();
  for (bool tied : {false, true}) {
    INFO("tied " << tied);
    auto lm = make_lm(tied, 7);
    const TempDir actor_tmp("actor"), critic_tmp("critic"), rm_tmp("rm");
    const auto& actor_dir = actor_tmp.path;
    Actor(lm).save(actor_dir);

    // Critic from the actor: backbone loaded, score.* new (N(0, 0.2), bias 0), lm_head.weight unused.
    std::vector<std::string> lines;
    HeadLoadOptions opts;
    opts.log = [&](const std::string& l) { lines.push_back(l); };
    HeadLoadReport report;
    torch::manual_seed(8);
    auto critic = Critic::load(actor_dir, opts, &report);
    CHECK(report.newly_initialized == std::vector<std::string>{"score.bias", "score.weight"});
    CHECK(report.unused == (tied ? std::vector<std::string>{} : std::vector<std::string>{"lm_head.weight"}));
    REQUIRE(lines.size() == 1);
    CHECK(lines[0].find("newly initialized") != std::string::npos);
    CHECK(lines[0].find("`score.weight`") != std::string::npos);
    CHECK(critic.module()->score->bias.item<double>() == 0.0);
    const double sd = critic.module()->score->weight.std().item<double>();
    CHECK(sd > 0.1);  // N(0, initializer_range = 0.2) over 32 draws
    CHECK(sd < 0.3);
    CHECK(torch::equal(critic.module()->model->embed_tokens->weight, lm->model->embed_tokens->weight));
    CHECK(torch::equal(critic.module()->model->norm->weight, lm->model->norm->weight));

    // Critic round trip: exact names, nothing reported, identical values; config.json as transformers writes.
    {
      torch::NoGradGuard no_grad;
      critic.module()->score->bias.fill_(-0.5);
    }
    const auto& critic_dir = critic_tmp.path;
    critic.save(critic_dir);
    const auto cj = read_json(critic_dir / "config.json");
    CHECK(cj["architectures"] == json::array({"Qwen2ForTokenClassification"}));
    CHECK(cj["id2label"] == json{{"0", "LABEL_0"}});
    CHECK(cj["label2id"] == json{{"LABEL_0", 0}});
    lines.clear();
    auto critic2 = Critic::load(critic_dir, opts, &report);
    CHECK(report.newly_initialized.empty());
    CHECK(report.unused.empty());
    CHECK(lines.empty());
    torch::NoGradGuard no_grad;
    CHECK(torch::equal(critic2.values(batch), critic.values(batch)));

    // Reward model from the critic checkpoint: score.bias is another head's (ignored, reported).
    auto rm = RewardScorer::load(critic_dir, opts, {}, &report);
    CHECK(report.newly_initialized.empty());
    CHECK(report.unused == std::vector<std::string>{"score.bias"});
    CHECK(torch::equal(rm.module()->score->weight, critic.module()->score->weight));
    const auto& rm_dir = rm_tmp.path;
    rm.save(rm_dir);
    CHECK(read_json(rm_dir / "config.json")["architectures"] == json::array({"Qwen2ForSequenceClassification"}));
    auto rm2 = RewardScorer::load(rm_dir, opts, {}, &report);
    CHECK(report.newly_initialized.empty());
    CHECK(report.unused.empty());
    CHECK(torch::equal(rm2.score(batch), rm.score(batch)));
    // Critic from the reward model: only the bias is new (verl's critic initialised from a reward model).
    (void)Critic::load(rm_dir, opts, &report);
    CHECK(report.newly_initialized == std::vector<std::string>{"score.bias"});
  }
}

TEST_CASE("Heads checkpoints: missing backbone, unknown and misshapen tensors are errors naming them",
          "[models][heads]") {
  auto lm = make_lm(false, 9);
  const TempDir tmp("bad");
  const auto& dir = tmp.path;
  HeadLoadOptions quiet;
  quiet.log = nullptr;
  std::vector<std::pair<std::string, torch::Tensor>> tensors;
  for (const auto& item : lm->named_parameters()) {
    if (item.key() == "model.norm.weight") continue;  // a backbone tensor missing
    tensors.emplace_back(item.key(), item.value().detach().contiguous());
  }
  tensors.emplace_back("v_head.summary.weight", torch::zeros({1, 32}));  // TRL's value head: unknown here
  verl::checkpoint::save_checkpoint(dir, tensors);
  verl::checkpoint::write_file_atomically(dir / "config.json", lm->config().to_json().dump());
  const auto msg = error_of<verl::InputError>([&] { (void)Critic::load(dir, quiet); });
  CHECK(msg.find("missing 1 tensor(s) `model.norm.weight`") != std::string::npos);
  CHECK(msg.find("unexpected 1 tensor(s) `v_head.summary.weight`") != std::string::npos);

  tensors.clear();
  for (const auto& item : lm->named_parameters()) tensors.emplace_back(item.key(), item.value().detach().contiguous());
  tensors.emplace_back("score.weight", torch::zeros({2, 32}));  // num_labels = 2
  verl::checkpoint::save_checkpoint(dir, tensors);
  const auto shape = error_of<verl::ShapeError>([&] { (void)RewardScorer::load(dir, quiet); });
  CHECK(shape.find("`score.weight`") != std::string::npos);
  CHECK(shape.find("num_labels = 1") != std::string::npos);

  auto j = lm->config().to_json();
  j["classifier_dropout"] = "0.1";
  verl::checkpoint::write_file_atomically(dir / "config.json", j.dump());
  CHECK(error_of<verl::ConfigError>([&] { (void)Critic::load(dir, quiet); }).find("classifier_dropout") !=
        std::string::npos);
}

}  // namespace test_heads
