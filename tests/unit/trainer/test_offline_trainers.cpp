// The offline trainers (include/verl/trainer/dpo_trainer.hpp, kto_trainer.hpp, sft_trainer.hpp) on a real
// tiny transformer, with data read from JSONL through verl::data's datasets and DataProvider:
// - one step's loss and metrics equal verl::pref::dpo_loss / cpo_loss / odds_ratio_loss / kto_loss / the verl
//   SFT token mean computed separately from per-row log-probs (TRL 0.19.1 DPOTrainer / CPOTrainer /
//   ORPOTrainer / KTOTrainer, verl 0.7.1 sft_loss semantics);
// - the update does not depend on the micro-batch size or on the split into accumulated provider batches;
// - precomputed reference log-probs give the same training as per-batch ones;
// - DPO raises rewards/accuracies and margins, KTO raises the desirable log-probs, SFT memorises completions.
//
// Comparing updates: with adam_epsilon = 1e3 and learning_rate = 1e3, AdamW's first update is
// lr * g / (|g| + eps) = g / (1 + |g|/1e3) ~= g for the small gradients here, so parameter deltas compare
// gradients (a plain eps = 1e-8 first step is lr * sign(g), which amplifies rounding-level differences).
#include "catch_torch.hpp"

#include "temp_dir.hpp"
#include "verl/algos/pref/dpo.hpp"
#include "verl/algos/pref/kto.hpp"
#include "verl/algos/pref/orpo.hpp"
#include "verl/algos/pref/simpo.hpp"
#include "verl/data/data_provider.hpp"
#include "verl/data/preference_dataset.hpp"
#include "verl/models/actor.hpp"
#include "verl/trainer/dpo_trainer.hpp"
#include "verl/trainer/kto_trainer.hpp"
#include "verl/trainer/sft_trainer.hpp"

#include <torch/torch.h>

#include <fstream>
#include <memory>
#include <string>
#include <vector>

using verl::models::Actor;
using verl::models::CausalLM;
using verl::models::Reference;
using Catch::Matchers::Contains;

namespace {

// Letters a..n are tokens 2..15; 0 is pad, 1 is eos.
struct LetterTokenizer {
  [[nodiscard]] std::vector<std::int64_t> encode(const std::string& text) const {
    std::vector<std::int64_t> ids;
    for (char c : text) ids.push_back(2 + (c - 'a'));
    return ids;
  }
  [[nodiscard]] std::string decode(const std::vector<std::int64_t>& ids) const {
    std::string s;
    for (auto id : ids)
      if (id >= 2) s += static_cast<char>('a' + (id - 2));
    return s;
  }
  [[nodiscard]] std::int64_t eos_token_id() const { return 1; }
  [[nodiscard]] std::int64_t pad_token_id() const { return 0; }
  [[nodiscard]] std::int64_t vocab_size() const { return 16; }
};

verl::models::TransformerConfig tiny_config() {
  nlohmann::json j{{"model_type", "qwen2"},        {"vocab_size", 16},          {"hidden_size", 32},
                   {"intermediate_size", 48},      {"num_hidden_layers", 1},    {"num_attention_heads", 4},
                   {"num_key_value_heads", 2},     {"max_position_embeddings", 64}, {"rms_norm_eps", 1e-6},
                   {"tie_word_embeddings", false}, {"pad_token_id", 0},         {"eos_token_id", 1}};
  return verl::models::TransformerConfig::from_json(j);
}

CausalLM make_lm(std::uint64_t seed) {
  torch::manual_seed(seed);
  CausalLM lm(tiny_config());
  lm->init_weights(0.05);
  return lm;
}

Actor make_actor(std::uint64_t seed) { return Actor(make_lm(seed)); }

torch::Tensor flat_params(Actor& a) {
  std::vector<torch::Tensor> ps;
  for (const auto& p : a.parameters()) ps.push_back(p.detach().reshape({-1}).clone());
  return torch::cat(ps);
}

std::filesystem::path write_jsonl(const verl::test::TempDir& dir, const std::string& name,
                                  const std::vector<nlohmann::json>& rows) {
  const auto p = dir.path / name;
  std::ofstream out(p, std::ios::binary);
  for (const auto& r : rows) out << r.dump() << "\n";
  return p;
}

// Pairs with completions of different lengths: chosen repeats the prompt's first letter, rejected is n's.
std::vector<nlohmann::json> dpo_rows() {
  const std::vector<std::string> prompts = {"ab", "cde", "fg", "hij", "ka", "bmc", "dl", "eh"};
  std::vector<nlohmann::json> rows;
  for (std::size_t i = 0; i < prompts.size(); ++i) {
    const std::string chosen(2 + i % 2, prompts[i][0]);
    const std::string rejected(1 + (i + 1) % 3, 'n');
    rows.push_back({{"prompt", prompts[i]}, {"chosen", chosen}, {"rejected", rejected}});
  }
  return rows;
}

std::shared_ptr<const verl::data::DPODataset> dpo_dataset(const verl::test::TempDir& dir) {
  return std::make_shared<const verl::data::DPODataset>(
      verl::data::DPODataset::load(write_jsonl(dir, "dpo.jsonl", dpo_rows()), LetterTokenizer{}, {}));
}

std::vector<std::size_t> iota(std::size_t n) {
  std::vector<std::size_t> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = i;
  return v;
}

// Per-row sequence log-probs of one half of a pair batch, one row per forward (independent of the trainer).
template <class M>
torch::Tensor row_logps(M& model, const verl::TokenBatch& tb, const torch::Tensor& mask, bool mean = false) {
  torch::NoGradGuard ng;
  std::vector<torch::Tensor> out;
  for (std::int64_t i = 0; i < tb.batch_size(); ++i) {
    verl::TokenBatch one{tb.input_ids.slice(0, i, i + 1), tb.attention_mask.slice(0, i, i + 1),
                         tb.position_ids.slice(0, i, i + 1), tb.response_length};
    const auto lp = model.log_probs(one, {}).log_probs;                 // (1,R)
    auto s = (lp * mask.slice(0, i, i + 1).to(torch::kFloat)).sum(-1);  // (1,)
    if (mean) s = s / mask.slice(0, i, i + 1).sum(-1).to(torch::kFloat);
    out.push_back(s);
  }
  return torch::cat(out);  // (B,)
}

verl::trainer::DPOOptions frozen_dpo_options() {
  verl::trainer::DPOOptions o;
  o.learning_rate = 0.0;  // the step must not move the weights: the metrics are compared to a recomputation
  o.per_device_train_batch_size = 3;
  return o;
}

// Options under which a first AdamW update is ~ the gradient (see the file comment).
template <class O>
void gradient_probe(O& o) {
  o.learning_rate = 1e3;
  o.adam_epsilon = 1e3;
  o.max_grad_norm = 1e9;
}

}  // namespace

TEST_CASE("DPOTrainer: one step's loss and metrics equal verl::pref::dpo_loss on separately computed log-probs",
          "[trainer][dpo]") {
  const verl::test::TempDir dir("dpo_loss");
  const auto ds = dpo_dataset(dir);
  const auto batch = ds->collate(iota(ds->size()));
  Actor actor = make_actor(1);
  Reference ref(make_lm(2));  // a different model, so that the rewards are not all zero

  SECTION("sigmoid with label smoothing, with a reference model") {
    auto o = frozen_dpo_options();
    o.label_smoothing = 0.1;
    verl::trainer::DPOTrainer<Actor, Reference> trainer(actor, ref, o);
    const auto m = trainer.step(batch);
    const auto pc = row_logps(actor, batch.chosen, batch.chosen_mask);
    const auto pr = row_logps(actor, batch.rejected, batch.rejected_mask);
    const auto rc = row_logps(ref, batch.chosen, batch.chosen_mask);
    const auto rr = row_logps(ref, batch.rejected, batch.rejected_mask);
    const auto expect = verl::pref::dpo_loss(pc, pr, rc, rr, o.loss_config());
    CHECK(m.at("loss") == Approx(expect.losses.mean().item<double>()).epsilon(1e-5));
    CHECK(m.at("rewards/chosen") == Approx(expect.chosen_rewards.mean().item<double>()).margin(1e-6));
    CHECK(m.at("rewards/rejected") == Approx(expect.rejected_rewards.mean().item<double>()).margin(1e-6));
    CHECK(m.at("rewards/margins") ==
          Approx((expect.chosen_rewards - expect.rejected_rewards).mean().item<double>()).margin(1e-6));
    CHECK(m.at("rewards/accuracies") ==
          Approx((expect.chosen_rewards > expect.rejected_rewards).to(torch::kFloat).mean().item<double>()));
    CHECK(m.at("logps/chosen") == Approx(pc.mean().item<double>()).epsilon(1e-5));
    CHECK(m.at("logps/rejected") == Approx(pr.mean().item<double>()).epsilon(1e-5));
    CHECK(m.at("learning_rate") == 0.0);
    CHECK(m.at("grad_norm") > 0.0);
    CHECK(m.at("rewards/chosen") != 0.0);
  }
  SECTION("ipo averages the log-probs over the completion tokens (TRL's concatenated_forward)") {
    auto o = frozen_dpo_options();
    o.loss_type = verl::pref::parse_dpo_loss_type("ipo");
    verl::trainer::DPOTrainer<Actor, Reference> trainer(actor, ref, o);
    const auto m = trainer.step(batch);
    const auto pc = row_logps(actor, batch.chosen, batch.chosen_mask, true);
    const auto pr = row_logps(actor, batch.rejected, batch.rejected_mask, true);
    const auto rc = row_logps(ref, batch.chosen, batch.chosen_mask, true);
    const auto rr = row_logps(ref, batch.rejected, batch.rejected_mask, true);
    const auto expect = verl::pref::dpo_loss(pc, pr, rc, rr, o.loss_config());
    CHECK(m.at("loss") == Approx(expect.losses.mean().item<double>()).epsilon(1e-5));
    CHECK(m.at("logps/chosen") == Approx(pc.mean().item<double>()).epsilon(1e-5));
  }
  SECTION("rpo_alpha adds the token-mean NLL of the chosen completions") {
    auto o = frozen_dpo_options();
    o.rpo_alpha = 0.5;
    verl::trainer::DPOTrainer<Actor, Reference> trainer(actor, ref, o);
    const auto m = trainer.step(batch);
    const auto pc = row_logps(actor, batch.chosen, batch.chosen_mask);
    const auto pr = row_logps(actor, batch.rejected, batch.rejected_mask);
    const auto rc = row_logps(ref, batch.chosen, batch.chosen_mask);
    const auto rr = row_logps(ref, batch.rejected, batch.rejected_mask);
    const double nll = -pc.sum().item<double>() / batch.chosen_mask.sum().item<double>();
    const auto expect = verl::pref::dpo_loss(pc, pr, rc, rr, o.loss_config());
    CHECK(m.at("nll_loss") == Approx(nll).epsilon(1e-5));
    CHECK(m.at("loss") == Approx(expect.losses.mean().item<double>() + 0.5 * nll).epsilon(1e-5));
  }
  SECTION("without a reference model the reference log-probs are zeros") {
    auto o = frozen_dpo_options();
    o.reference_free = true;
    verl::trainer::DPOTrainer<Actor, verl::no_reference> trainer(actor, verl::no_reference{}, o);
    const auto m = trainer.step(batch);
    const auto pc = row_logps(actor, batch.chosen, batch.chosen_mask);
    const auto pr = row_logps(actor, batch.rejected, batch.rejected_mask);
    const auto expect = verl::pref::dpo_loss(pc, pr, {}, {}, o.loss_config());
    CHECK(m.at("loss") == Approx(expect.losses.mean().item<double>()).epsilon(1e-5));
    // Rewards are beta * policy log-probs (reference 0).
    CHECK(m.at("rewards/chosen") == Approx(0.1 * pc.mean().item<double>()).epsilon(1e-5));
  }
  SECTION("CPOTrainer with loss_type simpo: averaged log-probs, plus cpo_alpha times the chosen NLL") {
    verl::trainer::CPOOptions o;
    o.learning_rate = 0.0;
    o.per_device_train_batch_size = 3;
    o.loss_type = verl::pref::parse_cpo_loss_type("simpo");
    o.cpo_alpha = 0.25;
    verl::trainer::CPOTrainer<Actor> trainer(actor, verl::no_reference{}, o);
    const auto m = trainer.step(batch);
    const auto pc = row_logps(actor, batch.chosen, batch.chosen_mask, true);
    const auto pr = row_logps(actor, batch.rejected, batch.rejected_mask, true);
    const double nll = -row_logps(actor, batch.chosen, batch.chosen_mask).sum().item<double>() /
                       batch.chosen_mask.sum().item<double>();
    const auto expect = verl::pref::cpo_loss(pc, pr, o.loss_config());
    CHECK(m.at("loss") == Approx(expect.losses.mean().item<double>() + 0.25 * nll).epsilon(1e-5));
    CHECK(m.at("nll_loss") == Approx(nll).epsilon(1e-5));
    CHECK(m.at("rewards/margins") ==
          Approx((expect.chosen_rewards - expect.rejected_rewards).mean().item<double>()).margin(1e-6));
  }
  SECTION("ORPOTrainer: the chosen NLL minus the mean odds-ratio term, on averaged log-probs") {
    verl::trainer::ORPOOptions o;
    o.learning_rate = 0.0;
    o.per_device_train_batch_size = 3;
    verl::trainer::ORPOTrainer<Actor> trainer(actor, verl::no_reference{}, o);
    const auto m = trainer.step(batch);
    const auto pc = row_logps(actor, batch.chosen, batch.chosen_mask, true);
    const auto pr = row_logps(actor, batch.rejected, batch.rejected_mask, true);
    const double nll = -row_logps(actor, batch.chosen, batch.chosen_mask).sum().item<double>() /
                       batch.chosen_mask.sum().item<double>();
    const auto expect = verl::pref::odds_ratio_loss(pc, pr, {0.1});
    CHECK(m.at("loss") == Approx(nll - expect.losses.mean().item<double>()).epsilon(1e-5));
    CHECK(m.at("log_odds_ratio") == Approx(expect.log_odds_ratio.item<double>()).epsilon(1e-5));
    CHECK(m.at("log_odds_chosen") == Approx(expect.log_odds_chosen.item<double>()).epsilon(1e-4));
    CHECK(m.at("logps/chosen") == Approx(pc.mean().item<double>()).epsilon(1e-5));
  }
}

TEST_CASE("DPOTrainer: the update does not depend on the micro-batch size or the accumulation split",
          "[trainer][dpo]") {
  const verl::test::TempDir dir("dpo_micro");
  const auto ds = dpo_dataset(dir);
  const auto batch = ds->collate(iota(ds->size()));  // 8 pairs
  auto run = [&](std::int64_t micro) {
    Actor actor = make_actor(1);
    const auto before = flat_params(actor);
    verl::trainer::DPOOptions o;
    gradient_probe(o);
    o.per_device_train_batch_size = micro;
    verl::trainer::DPOTrainer<Actor, Reference> trainer(actor, Reference(make_lm(2)), o);
    const auto m = trainer.step(batch);
    return std::pair{flat_params(actor) - before, m};
  };
  const auto [d8, m8] = run(8);
  const auto [d1, m1] = run(1);
  const auto [d3, m3] = run(3);
  REQUIRE(d8.abs().max().item<double>() > 1e-4);  // the step did move the weights
  CHECK(torch::allclose(d1, d8, 1e-4, 1e-7));
  CHECK(torch::allclose(d3, d8, 1e-4, 1e-7));
  CHECK(m1.at("loss") == Approx(m8.at("loss")).epsilon(1e-5));
  CHECK(m3.at("grad_norm") == Approx(m8.at("grad_norm")).epsilon(1e-5));

  // fit(): two provider batches of 4 accumulated into one step equal one step over the 8 pairs (the batches
  // are padded differently, so equality is up to rounding).
  Actor actor = make_actor(1);
  const auto before = flat_params(actor);
  verl::trainer::DPOOptions o;
  gradient_probe(o);
  o.per_device_train_batch_size = 2;
  o.gradient_accumulation_steps = 2;
  verl::trainer::DPOTrainer<Actor, Reference> trainer(actor, Reference(make_lm(2)), o);
  verl::data::DataProviderOptions po;
  po.batch_size = 4;
  po.shuffle = false;
  verl::data::DataProvider<verl::data::DPODataset> provider(ds, po);
  const auto history = trainer.fit(provider, 1);
  REQUIRE(history.size() == 1);
  CHECK(torch::allclose(flat_params(actor) - before, d8, 1e-4, 1e-7));
  CHECK(history[0].at("loss") == Approx(m8.at("loss")).epsilon(1e-5));
  CHECK(trainer.global_step() == 1);
}

TEST_CASE("DPOTrainer: precomputed reference log-probs equal the per-batch ones", "[trainer][dpo]") {
  const verl::test::TempDir dir("dpo_precompute");
  const auto ds = dpo_dataset(dir);
  verl::data::DataProviderOptions po;
  po.batch_size = 3;  // 8 examples: 2 batches per epoch (drop_last), shuffled, so fit crosses epochs
  po.seed = 5;
  auto train = [&](bool precompute) {
    Actor actor = make_actor(1);
    verl::trainer::DPOOptions o;
    o.learning_rate = 1e-2;
    o.per_device_train_batch_size = 2;
    o.precompute_ref_log_probs = precompute;
    o.precompute_ref_batch_size = 5;
    auto trainer = std::make_unique<verl::trainer::DPOTrainer<Actor, Reference>>(actor, Reference(make_lm(2)), o);
    verl::data::DataProvider<verl::data::DPODataset> provider(ds, po);
    auto history = trainer->fit(provider, 4);
    return std::tuple{std::move(trainer), std::move(history), flat_params(actor)};
  };
  const auto [with_cache, h1, p1] = train(true);
  const auto [without, h2, p2] = train(false);
  REQUIRE(with_cache->reference_cache().has_value());
  REQUIRE_FALSE(without->reference_cache().has_value());
  // The cache holds, for each example, what the reference gives on that example alone.
  const auto& cache = *with_cache->reference_cache();
  REQUIRE(cache.chosen.size(0) == static_cast<std::int64_t>(ds->size()));
  Reference ref(make_lm(2));
  for (std::size_t i = 0; i < ds->size(); ++i) {
    const auto one = ds->collate(std::vector<std::size_t>{i});
    const auto rc = row_logps(ref, one.chosen, one.chosen_mask);
    const auto rr = row_logps(ref, one.rejected, one.rejected_mask);
    CHECK(cache.chosen[static_cast<std::int64_t>(i)].item<double>() == Approx(rc.item<double>()).margin(1e-5));
    CHECK(cache.rejected[static_cast<std::int64_t>(i)].item<double>() == Approx(rr.item<double>()).margin(1e-5));
  }
  REQUIRE(h1.size() == 4);
  REQUIRE(h2.size() == 4);
  for (std::size_t s = 0; s < 4; ++s) {
    CHECK(h1[s].at("loss") == Approx(h2[s].at("loss")).margin(1e-5));
    CHECK(h1[s].at("rewards/margins") == Approx(h2[s].at("rewards/margins")).margin(1e-5));
  }
  CHECK(torch::allclose(p1, p2, 1e-4, 1e-5));
}

TEST_CASE("DPOTrainer: training on a synthetic preference set raises rewards/accuracies and margins",
          "[trainer][dpo]") {
  const verl::test::TempDir dir("dpo_learn");
  const auto ds = dpo_dataset(dir);
  Actor actor = make_actor(3);
  verl::trainer::DPOOptions o;
  o.learning_rate = 1e-2;
  o.per_device_train_batch_size = 4;
  verl::trainer::DPOTrainer<Actor, Reference> trainer(actor, Reference::copy_of(actor), o);
  verl::data::DataProviderOptions po;
  po.batch_size = 4;
  po.seed = 11;
  verl::data::DataProvider<verl::data::DPODataset> provider(ds, po);
  const auto history = trainer.fit(provider, 20);
  REQUIRE(history.size() == 20);
  // Step 1 starts from the reference: rewards 0.
  CHECK(history.front().at("rewards/margins") == Approx(0.0).margin(1e-6));
  const auto all = ds->collate(iota(ds->size()));
  const auto pol = trainer.policy_log_probs(all);
  const auto refp = trainer.reference_log_probs(all);
  const auto margins = 0.1 * ((pol.chosen - refp.chosen) - (pol.rejected - refp.rejected));  // (8,)
  CHECK(margins.min().item<double>() > 0.0);  // every pair ranked right
  CHECK(history.back().at("rewards/accuracies") == 1.0);
  CHECK(history.back().at("rewards/margins") > 0.1);
  CHECK(history.back().at("loss") < history.front().at("loss"));
}

namespace {

std::vector<nlohmann::json> kto_rows() {
  // Desirable: the prompt's first letter repeated; undesirable: n's.
  const std::vector<std::string> prompts = {"ab", "cde", "fg", "hij", "ka", "bmc"};
  std::vector<nlohmann::json> rows;
  for (std::size_t i = 0; i < prompts.size(); ++i) {
    const bool good = i % 2 == 0;
    rows.push_back({{"prompt", prompts[i]},
                    {"completion", good ? std::string(2 + i % 3, prompts[i][0]) : std::string(2, 'n')},
                    {"label", good}});
  }
  return rows;
}

std::shared_ptr<const verl::data::KTODataset> kto_dataset(const verl::test::TempDir& dir) {
  return std::make_shared<const verl::data::KTODataset>(
      verl::data::KTODataset::load(write_jsonl(dir, "kto.jsonl", kto_rows()), LetterTokenizer{}, {}));
}

}  // namespace

TEST_CASE("KTOTrainer: one step equals verl::pref::kto_loss with the step's KL reference point", "[trainer][kto]") {
  const verl::test::TempDir dir("kto_loss");
  const auto ds = kto_dataset(dir);
  const auto batch = ds->collate(iota(ds->size()));  // 6 examples, 3 desirable
  Actor actor = make_actor(1);
  Reference ref(make_lm(2));
  verl::trainer::KTOOptions o;
  o.learning_rate = 0.0;
  o.per_device_train_batch_size = 4;  // micro-batches of 4 and 2; the KL point is over all 6
  o.desirable_weight = 1.5;
  verl::trainer::KTOTrainer<Actor, Reference> trainer(actor, ref, o);
  const auto m = trainer.step(batch);

  const auto pi = row_logps(actor, batch.completion, batch.completion_mask);  // (6,)
  const auto rf = row_logps(ref, batch.completion, batch.completion_mask);
  const auto pk = row_logps(actor, batch.kl, batch.kl_mask);
  const auto rk = row_logps(ref, batch.kl, batch.kl_mask);
  const auto c = torch::nonzero(batch.labels).squeeze(1), r = torch::nonzero(~batch.labels).squeeze(1);
  const auto expect = verl::pref::kto_loss(pi.index_select(0, c), pi.index_select(0, r), pk, rf.index_select(0, c),
                                           rf.index_select(0, r), rk, o.loss_config());
  CHECK(m.at("kl") == Approx(expect.kl.item<double>()).margin(1e-6));
  CHECK(m.at("loss") == Approx(expect.losses.mean().item<double>()).epsilon(1e-5));
  CHECK(m.at("rewards/chosen") == Approx(expect.chosen_rewards.mean().item<double>()).margin(1e-6));
  CHECK(m.at("rewards/rejected") == Approx(expect.rejected_rewards.mean().item<double>()).margin(1e-6));
  CHECK(m.at("rewards/margins") == Approx(m.at("rewards/chosen") - m.at("rewards/rejected")));
  CHECK(m.at("logps/chosen") == Approx(pi.index_select(0, c).mean().item<double>()).epsilon(1e-5));
  CHECK(m.at("count/chosen") == 3.0);
  CHECK(m.at("count/rejected") == 3.0);

  // The gradient does not depend on the micro-batch size.
  auto delta = [&](std::int64_t micro) {
    Actor a = make_actor(1);
    const auto before = flat_params(a);
    verl::trainer::KTOOptions g;
    gradient_probe(g);
    g.per_device_train_batch_size = micro;
    verl::trainer::KTOTrainer<Actor, Reference> t(a, Reference(make_lm(2)), g);
    (void)t.step(batch);
    return flat_params(a) - before;
  };
  const auto d6 = delta(6);
  REQUIRE(d6.abs().max().item<double>() > 1e-4);
  CHECK(torch::allclose(delta(1), d6, 1e-4, 1e-7));
  CHECK(torch::allclose(delta(4), d6, 1e-4, 1e-7));
}

TEST_CASE("KTOTrainer: training raises the desirable completions' log-probs and lowers the undesirable ones",
          "[trainer][kto]") {
  const verl::test::TempDir dir("kto_learn");
  const auto ds = kto_dataset(dir);
  Actor actor = make_actor(4);
  verl::trainer::KTOOptions o;
  o.learning_rate = 1e-2;
  o.per_device_train_batch_size = 6;
  verl::trainer::KTOTrainer<Actor, Reference> trainer(actor, Reference::copy_of(actor), o);
  const auto all = ds->collate(iota(ds->size()));
  const auto before = trainer.policy_log_probs(all);  // (6,)
  verl::data::DataProviderOptions po;
  po.batch_size = 3;
  po.seed = 2;
  verl::data::DataProvider<verl::data::KTODataset> provider(ds, po);
  const auto history = trainer.fit(provider, 20);
  REQUIRE(history.size() == 20);
  const auto after = trainer.policy_log_probs(all);
  const auto good = all.labels, bad = ~all.labels;
  CHECK((after - before).masked_select(good).min().item<double>() > 0.5);
  CHECK((after - before).masked_select(bad).max().item<double>() < 0.0);
  CHECK(history.back().at("loss") < history.front().at("loss"));
}

namespace {

std::vector<nlohmann::json> sft_rows() {
  return {{{"prompt", "ab"}, {"response", "cdef"}},
          {{"prompt", "ba"}, {"response", "ghi"}},
          {{"prompt", "ka"}, {"response", "mmln"}},
          {{"prompt", "hj"}, {"response", "ac"}}};
}

std::shared_ptr<const verl::data::SFTDataset> sft_dataset(const verl::test::TempDir& dir) {
  return std::make_shared<const verl::data::SFTDataset>(
      verl::data::SFTDataset::load(write_jsonl(dir, "sft.jsonl", sft_rows()), LetterTokenizer{}, {}));
}

// Greedy decoding by argmax over the full logits, up to eos or `max_new` tokens.
std::string greedy(Actor& actor, const std::string& prompt, int max_new) {
  torch::NoGradGuard ng;
  auto ids = LetterTokenizer{}.encode(prompt);
  std::string out;
  for (int s = 0; s < max_new; ++s) {
    const auto t = static_cast<std::int64_t>(ids.size());
    const auto input = torch::tensor(ids, torch::kLong).unsqueeze(0);  // (1,T)
    const auto logits = actor.lm()->logits(input, torch::ones_like(input), torch::arange(t).unsqueeze(0));  // (1,T,V)
    const auto next = logits[0][t - 1].argmax().item<std::int64_t>();
    if (next == 1) break;
    out += LetterTokenizer{}.decode({next});
    ids.push_back(next);
  }
  return out;
}

}  // namespace

TEST_CASE("SFTTrainer: the loss is verl's global token mean, independent of the micro-batch size",
          "[trainer][sft]") {
  const verl::test::TempDir dir("sft_loss");
  const auto ds = sft_dataset(dir);
  const auto batch = ds->collate(iota(ds->size()));
  // Separately: -sum of the log-probs of the loss-mask tokens (position t >= 1 predicted from tokens < t) over
  // their count, from the full logits.
  Actor reference_actor = make_actor(1);
  double nll = 0, count = 0;
  {
    torch::NoGradGuard ng;
    const auto logp = torch::log_softmax(
        reference_actor.lm()->logits(batch.input_ids, batch.attention_mask, batch.position_ids).to(torch::kDouble),
        -1);  // (B,T,V)
    for (std::int64_t b = 0; b < batch.input_ids.size(0); ++b)
      for (std::int64_t t = 1; t < batch.input_ids.size(1); ++t)
        if (batch.loss_mask[b][t].item<std::int64_t>() != 0) {
          nll -= logp[b][t - 1][batch.input_ids[b][t].item<std::int64_t>()].item<double>();
          count += 1;
        }
  }
  REQUIRE(count == 4 + 1 + 3 + 1 + 4 + 1 + 2 + 1);  // response letters + eos of each row
  auto run = [&](std::int64_t micro) {
    Actor actor = make_actor(1);
    const auto before = flat_params(actor);
    verl::trainer::SFTOptions o;
    o.micro_batch_size_per_gpu = micro;
    o.lr = 1e3;
    o.eps = 1e3;
    o.weight_decay = 0.0;
    o.clip_grad = 1e9;
    verl::trainer::SFTTrainer<Actor> trainer(actor, o);
    const auto m = trainer.step(batch);
    return std::pair{flat_params(actor) - before, m};
  };
  const auto [d4, m4] = run(4);
  const auto [d1, m1] = run(1);
  const auto [d3, m3] = run(3);
  CHECK(m4.at("train/loss") == Approx(nll / count).epsilon(1e-5));
  CHECK(m1.at("train/loss") == Approx(m4.at("train/loss")).epsilon(1e-6));
  CHECK(m3.at("train/loss") == Approx(m4.at("train/loss")).epsilon(1e-6));
  CHECK(m4.at("train/global_tokens") == batch.attention_mask.sum().item<double>());
  REQUIRE(d4.abs().max().item<double>() > 1e-4);
  CHECK(torch::allclose(d1, d4, 1e-4, 1e-7));
  CHECK(torch::allclose(d3, d4, 1e-4, 1e-7));
}

TEST_CASE("SFTTrainer: the loss falls and the model then reproduces a memorised completion greedily",
          "[trainer][sft]") {
  const verl::test::TempDir dir("sft_learn");
  const auto ds = sft_dataset(dir);
  Actor actor = make_actor(5);
  verl::trainer::SFTOptions o;
  o.lr = 2e-2;
  o.micro_batch_size_per_gpu = 2;
  o.lr_schedule.lr_scheduler_type = "cosine";
  o.lr_schedule.num_warmup_steps = 5;
  o.lr_schedule.num_training_steps = 120;
  verl::trainer::SFTTrainer<Actor> trainer(actor, o);
  verl::data::DataProviderOptions po;
  po.batch_size = 4;
  po.seed = 3;
  verl::data::DataProvider<verl::data::SFTDataset> provider(ds, po);
  const auto history = trainer.fit(provider, 120);
  REQUIRE(history.size() == 120);
  CHECK(history.front().at("train/lr") == Approx(2e-2 / 5));  // after the first of 5 warm-up steps
  CHECK(history.back().at("train/loss") < 0.1 * history.front().at("train/loss"));
  CHECK(trainer.evaluate(ds->collate(iota(ds->size()))) < 0.05);
  CHECK(greedy(actor, "ab", 8) == "cdef");
  CHECK(greedy(actor, "ka", 8) == "mmln");
}

TEST_CASE("offline trainers: bad options and batches are errors naming the field", "[trainer][offline]") {
  Actor actor = make_actor(1);
  verl::trainer::DPOOptions o;
  o.per_device_train_batch_size = 0;
  CHECK_THROWS_WITH((verl::trainer::DPOTrainer<Actor, verl::no_reference>(actor, {}, o)),
                    Contains("per_device_train_batch_size is 0"));
  o = {};
  o.label_smoothing = 0.7;
  CHECK_THROWS_WITH((verl::trainer::DPOTrainer<Actor, verl::no_reference>(actor, {}, o)),
                    Contains("label_smoothing is 0.7"));
  verl::trainer::KTOOptions k;
  k.lr_schedule.lr_scheduler_type = "linear";  // needs num_training_steps
  CHECK_THROWS_WITH((verl::trainer::KTOTrainer<Actor, Reference>(actor, Reference::copy_of(actor), k)),
                    Contains("num_training_steps"));
  verl::trainer::SFTOptions s;
  verl::trainer::SFTTrainer<Actor> sft(actor, s);
  verl::data::SFTBatch empty{torch::ones({2, 3}, torch::kLong), torch::ones({2, 3}, torch::kLong),
                             torch::arange(3).repeat({2, 1}), torch::zeros({2, 3}, torch::kLong)};
  CHECK_THROWS_WITH(sft.step(empty), Contains("no target token"));
  empty.loss_mask = torch::zeros({2, 2}, torch::kLong);
  CHECK_THROWS_WITH(sft.step(empty), Contains("loss_mask of the same shape"));
}
