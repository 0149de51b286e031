// The offline trainers (include/verl/trainer/dpo_trainer.hpp, kto_trainer.hpp, sft_trainer.hpp) on a real
// tiny transformer, with data read from JSONL through verl::data's datasets and DataProvider:
// - one step's loss and metrics equal verl::pref::dpo_loss / cpo_loss / odds_ratio_loss / kto_loss / the verl
//   SFT token mean computed separately from per-row log-probs (TRL 0.19.1 DPOTrainer / CPOTrainer /
//   ORPOTrainer / KTOTrainer, verl 0.7.1 sft_loss semantics);
// - the update does not depend on the micro-batch size or on the split into accumulated provider batches;
// - precomputed reference log-probs give the same training as per-batch ones;
// - DPO raises rewards/accuracies and margins, KTO raises the desirable log-probs, SFT memorises completions;
// - evaluate()/validate() report TRL's eval_* (DPO, KTO) and verl's val/loss (SFT) with their aggregation rules;
// - fit() with checkpoints: N steps uninterrupted equal N/2 steps, then a new trainer resumed from the
//   checkpoint for N/2 steps, bit for bit (SFT configured from YAML, DPO with gradient accumulation and
//   precomputed reference log-probs); a corrupted checkpoint is refused (resume_path) or skipped (auto);
// - offline_from_config.hpp maps every OfflineConfig key from YAML + overrides, and refuses unsupported values
//   naming the key.
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
#include "verl/trainer/offline_from_config.hpp"
#include "verl/trainer/sft_trainer.hpp"

#include <torch/torch.h>

#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

namespace test_offline_trainers {  // one namespace per file: a unity build (tests/CMakeLists.txt) may join files

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
  {  // evaluate(): the same token mean without an update, in micro-batches of 3 rows
    verl::trainer::SFTOptions o;
    o.micro_batch_size_per_gpu = 3;
    verl::trainer::SFTTrainer<Actor> frozen(make_actor(1), o);
    CHECK(frozen.evaluate(batch) == Approx(nll / count).epsilon(1e-5));
  }
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

// ---------------------------------------------------------------------------------------------------------
// Evaluation, fit() with checkpoints and resume, configuration.

namespace {

std::map<std::string, double> without_step_keys(std::map<std::string, double> m) {
  for (const char* k : {"grad_norm", "learning_rate", "step"}) m.erase(k);
  return m;
}

std::vector<torch::Tensor> snapshot(Actor& actor) {
  std::vector<torch::Tensor> out;
  for (const auto& p : actor.parameters()) out.push_back(p.detach().clone());
  return out;
}

bool bit_identical(const std::vector<torch::Tensor>& a, const std::vector<torch::Tensor>& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (!torch::equal(a[i], b[i])) return false;
  return true;
}

std::vector<std::string> read_lines(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::vector<std::string> out;
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

}  // namespace

TEST_CASE("DPOTrainer: evaluate() is a step without an update, validate() reports TRL's eval_* aggregates",
          "[trainer][dpo][validation]") {
  const verl::test::TempDir dir("dpo_eval");
  const auto ds = dpo_dataset(dir);
  const auto all = ds->collate(iota(ds->size()));
  Actor actor = make_actor(1);
  Reference ref(make_lm(2));
  auto o = frozen_dpo_options();
  o.rpo_alpha = 0.5;
  verl::trainer::DPOTrainer<Actor, Reference> trainer(actor, ref, o);
  const auto before = snapshot(actor);
  const auto e = trainer.evaluate(all);
  CHECK(bit_identical(snapshot(actor), before));
  CHECK(trainer.global_step() == 0);
  // The same numbers as an optimizer step's (learning rate 0) and as dpo_loss on separately computed log-probs.
  const auto m = without_step_keys(trainer.step(all));
  REQUIRE(e.size() == m.size());
  for (const auto& [k, v] : m) CHECK(e.at(k) == Approx(v).epsilon(1e-6));
  const auto pc = row_logps(actor, all.chosen, all.chosen_mask), pr = row_logps(actor, all.rejected, all.rejected_mask);
  const auto rc = row_logps(ref, all.chosen, all.chosen_mask), rr = row_logps(ref, all.rejected, all.rejected_mask);
  const auto expect = verl::pref::dpo_loss(pc, pr, rc, rr, o.loss_config());
  const double nll = -pc.sum().item<double>() / all.chosen_mask.sum().item<double>();
  CHECK(e.at("loss") == Approx(expect.losses.mean().item<double>() + 0.5 * nll).epsilon(1e-5));

  // validate(): 8 pairs in unshuffled batches of 3, 3, 2 (TRL's eval loader keeps the last batch).
  verl::data::DataProviderOptions vo;
  vo.batch_size = 3;
  vo.shuffle = false;
  vo.drop_last = false;
  vo.epochs = 1;
  vo.num_workers = 0;
  verl::data::DataProvider<verl::data::DPODataset> val(ds, vo);
  const auto v = trainer.validate(val);
  std::vector<std::map<std::string, double>> per_batch;
  for (const auto& idx : {std::vector<std::size_t>{0, 1, 2}, {3, 4, 5}, {6, 7}})
    per_batch.push_back(trainer.evaluate(ds->collate(idx)));
  // eval_loss: each batch's loss once per pair (transformers' evaluation_loop); the others: mean of batch means.
  CHECK(v.at("eval_loss") ==
        Approx((3 * per_batch[0].at("loss") + 3 * per_batch[1].at("loss") + 2 * per_batch[2].at("loss")) / 8));
  for (const char* k : {"rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins", "logps/chosen",
                        "logps/rejected", "nll_loss"}) {
    INFO(k);
    CHECK(v.at(std::string("eval_") + k) ==
          Approx((per_batch[0].at(k) + per_batch[1].at(k) + per_batch[2].at(k)) / 3).epsilon(1e-6));
  }
  CHECK(v.size() == 8);
}

TEST_CASE("KTOTrainer: evaluate() is a step without an update, validate() divides summed rewards by counts",
          "[trainer][kto][validation]") {
  const verl::test::TempDir dir("kto_eval");
  const auto ds = kto_dataset(dir);
  Actor actor = make_actor(1);
  verl::trainer::KTOOptions o;
  o.learning_rate = 0.0;
  o.per_device_train_batch_size = 2;
  verl::trainer::KTOTrainer<Actor, Reference> trainer(actor, Reference(make_lm(2)), o);
  const auto all = ds->collate(iota(ds->size()));
  const auto e = trainer.evaluate(all);
  const auto m = without_step_keys(trainer.step(all));
  REQUIRE(e.size() == m.size());
  for (const auto& [k, v] : m) CHECK(e.at(k) == Approx(v).epsilon(1e-6).margin(1e-9));

  // Batches {0,1,2,3} (desirable 0, 2) and {4,5} (desirable 4): TRL's log() sums over batches, then divides.
  verl::data::DataProviderOptions vo;
  vo.batch_size = 4;
  vo.shuffle = false;
  vo.drop_last = false;
  vo.epochs = 1;
  vo.num_workers = 0;
  verl::data::DataProvider<verl::data::KTODataset> val(ds, vo);
  const auto v = trainer.validate(val);
  const auto b0 = trainer.evaluate(ds->collate(std::vector<std::size_t>{0, 1, 2, 3}));
  const auto b1 = trainer.evaluate(ds->collate(std::vector<std::size_t>{4, 5}));
  REQUIRE(b0.at("count/chosen") == 2.0);
  REQUIRE(b1.at("count/chosen") == 1.0);
  CHECK(v.at("eval_rewards/chosen") == Approx((2 * b0.at("rewards/chosen") + b1.at("rewards/chosen")) / 3));
  CHECK(v.at("eval_logps/rejected") == Approx((2 * b0.at("logps/rejected") + b1.at("logps/rejected")) / 3));
  CHECK(v.at("eval_rewards/margins") == Approx(v.at("eval_rewards/chosen") - v.at("eval_rewards/rejected")));
  CHECK(v.at("eval_kl") == Approx((b0.at("kl") + b1.at("kl")) / 2));
  CHECK(v.at("eval_loss") == Approx((4 * b0.at("loss") + 2 * b1.at("loss")) / 6));
}

namespace {

// An SFT run configured from YAML + overrides, as a program would.
constexpr const char* kSftYaml = R"(
data:
  train_batch_size: 2
  micro_batch_size_per_gpu: 1
  use_dynamic_bsz: false
  max_length: 32
  max_prompt_length: null
  num_workers: 1
optim:
  lr: 0.02
  weight_decay: 0.0
  lr_scheduler_type: cosine
  lr_warmup_steps: 1
  min_lr_ratio: 0.1
trainer:
  total_epochs: 3
  seed: 9
  save_freq: 3
  test_freq: 2
  max_ckpt_to_keep: 2
  logger: [jsonl]
model:
  path: unused
)";

struct SftRun {
  verl::config::OfflineConfig cfg;
  std::string yaml;
  std::shared_ptr<const verl::data::SFTDataset> train, val;
  std::int64_t total_steps = 0;

  SftRun(const verl::test::TempDir& dir, const std::vector<std::string>& overrides) {
    auto loaded = verl::config::load_text<verl::config::OfflineConfig>(kSftYaml, "sft.yaml", overrides);
    cfg = loaded.config;
    yaml = loaded.yaml;
    train = std::make_shared<const verl::data::SFTDataset>(verl::data::SFTDataset::load(
        write_jsonl(dir, "train.jsonl", sft_rows()), LetterTokenizer{}, verl::trainer::sft_dataset_options_from(cfg)));
    val = train;
    total_steps = verl::trainer::offline_total_training_steps(
        cfg, static_cast<std::int64_t>(train->size() / static_cast<std::size_t>(cfg.data.train_batch_size)));
  }

  // Runs fit() on a fresh trainer (fresh weights from seed 5, fresh optimizer) up to `stop_at` steps.
  std::pair<verl::trainer::OfflineFitResult, std::vector<torch::Tensor>> fit(std::int64_t stop_at,
                                                                            verl::trainer::OfflineFitOptions fo) {
    Actor actor = make_actor(5);
    verl::trainer::SFTTrainer<Actor> trainer(actor, verl::trainer::sft_options_from(cfg, total_steps));
    verl::trainer::MetricsRegistry registry;
    verl::trainer::add_metric_exporters_from(cfg, registry, fo.checkpoint_dir / "metrics.jsonl");
    fo.total_training_steps = stop_at;
    fo.progress_bar = false;
    const auto po = verl::trainer::train_provider_options_from(cfg);
    auto result = trainer.fit(
        [&](const nlohmann::json& resume) {
          return std::make_unique<verl::data::DataProvider<verl::data::SFTDataset>>(train, po, resume);
        },
        registry, fo, [&](std::int64_t) {
          verl::data::DataProvider<verl::data::SFTDataset> v(val, verl::trainer::sft_val_provider_options_from(cfg));
          return trainer.validate(v);
        });
    return {std::move(result), snapshot(actor)};
  }
};

}  // namespace

TEST_CASE("SFTTrainer::fit from a YAML config: N steps equal N/2, then a new trainer resumed for N/2, bit for bit",
          "[trainer][sft][fit]") {
  const verl::test::TempDir dir("sft_fit");
  torch::set_num_threads(1);
  const auto full_dir = dir.path / "full", half_dir = dir.path / "half";
  SftRun full(dir, {"trainer.default_local_dir=" + full_dir.string()});
  REQUIRE(full.total_steps == 6);  // 4 rows / batches of 2 = 2 per epoch, x 3 epochs
  const auto fo_full = verl::trainer::offline_fit_options_from(full.cfg, full.total_steps, full.yaml);
  const auto [r_full, w_full] = full.fit(6, fo_full);
  CHECK(r_full.first_step == 1);
  CHECK(r_full.last_step == 6);
  CHECK(!r_full.resumed_from);
  REQUIRE(r_full.checkpoints.size() == 2);  // steps 3 and 6 (save_freq 3)
  CHECK(r_full.checkpoints.back() == full_dir / "global_step_6");
  CHECK(std::filesystem::exists(full_dir / "global_step_6" / "actor" / "model.safetensors"));
  CHECK(std::filesystem::exists(full_dir / "global_step_6" / "optimizer" / "actor"));
  CHECK(std::filesystem::exists(full_dir / "global_step_6" / "config.yaml"));
  // Metrics: one line per step, val/loss at steps 2, 4, 6 (test_freq 2), verl's names.
  const auto lines = read_lines(full_dir / "metrics.jsonl");
  REQUIRE(lines.size() == 6);
  for (std::size_t i = 0; i < lines.size(); ++i) {
    const auto j = nlohmann::json::parse(lines[i]);
    INFO(lines[i]);
    CHECK(j.at("step").get<std::int64_t>() == static_cast<std::int64_t>(i + 1));
    CHECK(j.contains("train/loss"));
    CHECK(j.contains("train/lr"));
    CHECK(j.contains("val/loss") == ((i + 1) % 2 == 0));
  }
  CHECK(r_full.last_val_metrics.count("val/loss") == 1);
  CHECK(r_full.last_metrics.at("val/loss") == r_full.last_val_metrics.at("val/loss"));

  // The interrupted run: 3 steps (a checkpoint at step 3), then a new trainer resumed from it.
  SftRun half(dir, {"trainer.default_local_dir=" + half_dir.string()});
  const auto fo_half = verl::trainer::offline_fit_options_from(half.cfg, half.total_steps, half.yaml);
  const auto [r_a, w_a] = half.fit(3, fo_half);
  REQUIRE(r_a.last_step == 3);
  CHECK(!bit_identical(w_a, w_full));
  const auto [r_b, w_b] = half.fit(6, fo_half);
  REQUIRE(r_b.resumed_from == std::optional<std::int64_t>(3));
  CHECK(r_b.first_step == 4);
  CHECK(r_b.last_step == 6);
  CHECK(bit_identical(w_b, w_full));
  CHECK(r_b.last_val_metrics.at("val/loss") == r_full.last_val_metrics.at("val/loss"));
  // The effective config travels with the checkpoint.
  CHECK(verl::trainer::CheckpointManager(half_dir, 0).load(half_dir / "global_step_6").config_text() == half.yaml);

  SECTION("resuming without the optimizer state (checkpoint.load_contents) is not the same run") {
    const auto skip_dir = dir.path / "skip";
    SftRun skip(dir, {"trainer.default_local_dir=" + skip_dir.string(), "checkpoint.load_contents=[model,extra]"});
    auto fo = verl::trainer::offline_fit_options_from(skip.cfg, skip.total_steps, skip.yaml);
    CHECK_FALSE(fo.load_optimizer);
    (void)skip.fit(3, fo);
    const auto [r, w] = skip.fit(6, fo);
    CHECK(r.resumed_from == std::optional<std::int64_t>(3));
    CHECK(!bit_identical(w, w_full));
  }
  SECTION("a corrupted checkpoint: resume_path refuses it naming the file, auto skips it and says why") {
    // Flip one byte of the step-6 weights.
    const auto weights = half_dir / "global_step_6" / "actor" / "model.safetensors";
    {
      std::fstream f(weights, std::ios::in | std::ios::out | std::ios::binary);
      f.seekg(-1, std::ios::end);
      char c = 0;
      f.get(c);
      f.seekp(-1, std::ios::end);
      f.put(static_cast<char>(c ^ 0x5a));
    }
    SftRun again(dir, {"trainer.default_local_dir=" + half_dir.string(), "trainer.resume_mode=resume_path",
                       "trainer.resume_from_path=" + (half_dir / "global_step_6").string()});
    auto fo = verl::trainer::offline_fit_options_from(again.cfg, again.total_steps, again.yaml);
    REQUIRE(fo.resume_from_path == half_dir / "global_step_6");
    CHECK_THROWS_WITH(again.fit(6, fo), Contains("refusing") && Contains("model.safetensors") &&
                                            Contains("SHA-256") && Contains("corrupted"));

    SftRun automatic(dir, {"trainer.default_local_dir=" + half_dir.string()});
    auto fa = verl::trainer::offline_fit_options_from(automatic.cfg, automatic.total_steps, automatic.yaml);
    std::vector<std::string> notices;
    fa.report = [&](const std::string& s) { notices.push_back(s); };
    const auto [r, w] = automatic.fit(6, fa);
    CHECK(r.resumed_from == std::optional<std::int64_t>(3));  // the newest complete one (keep-last-2: 3 and 6)
    CHECK(bit_identical(w, w_full));
    bool said = false;
    for (const auto& n : notices) said = said || (n.find("skipping incomplete or corrupted checkpoint") != std::string::npos &&
                                                  n.find("global_step_6") != std::string::npos);
    CHECK(said);
  }
}

TEST_CASE("DPOTrainer::fit with gradient accumulation and precomputed reference log-probs resumes bit for bit",
          "[trainer][dpo][fit]") {
  const verl::test::TempDir dir("dpo_fit");
  torch::set_num_threads(1);
  const auto ds = dpo_dataset(dir);
  const auto run = [&](const std::filesystem::path& ckpt, std::int64_t stop_at, const verl::trainer::DPOOptions& o) {
    Actor actor = make_actor(3);
    verl::trainer::DPOTrainer<Actor, Reference> trainer(actor, Reference::copy_of(actor), o);
    verl::trainer::MetricsRegistry registry;
    std::vector<verl::trainer::MetricMap> logged;
    registry.add_callback([&](std::int64_t, const verl::trainer::MetricMap& m) { logged.push_back(m); });
    verl::trainer::OfflineFitOptions fo;
    fo.total_training_steps = stop_at;
    fo.save_freq = 2;
    fo.max_ckpt_to_keep = 1;
    fo.checkpoint_dir = ckpt;
    fo.test_freq = 2;
    fo.progress_bar = false;
    fo.report = [](const std::string&) {};  // keep-last-1 deletions
    verl::data::DataProviderOptions po;
    po.batch_size = 2;
    po.seed = 4;
    auto result = trainer.fit(
        [&](const nlohmann::json& resume) {
          return std::make_unique<verl::data::DataProvider<verl::data::DPODataset>>(ds, po, resume);
        },
        registry, fo, [&](std::int64_t) {
          verl::data::DataProviderOptions vo;
          vo.batch_size = 3;
          vo.shuffle = false;
          vo.drop_last = false;
          vo.epochs = 1;
          verl::data::DataProvider<verl::data::DPODataset> val(ds, vo);
          return trainer.validate(val);
        });
    return std::tuple{std::move(result), snapshot(actor), std::move(logged)};
  };
  verl::trainer::DPOOptions o;
  o.learning_rate = 1e-2;
  o.per_device_train_batch_size = 2;
  o.gradient_accumulation_steps = 2;  // a step = 2 provider batches = 4 pairs; 2 steps per epoch
  o.precompute_ref_log_probs = true;
  o.lr_schedule.lr_scheduler_type = "linear";  // TRL's default schedule: its state matters at resume
  o.lr_schedule.num_training_steps = 6;
  const auto [r_full, w_full, logged_full] = run(dir.path / "full", 6, o);
  CHECK(r_full.last_step == 6);
  REQUIRE(logged_full.size() == 6);
  CHECK(logged_full[1].count("eval_rewards/margins") == 1);
  CHECK(logged_full[0].count("eval_loss") == 0);
  CHECK(logged_full[5].at("learning_rate") == Approx(1e-2 / 6));  // linear decay: the 6th update uses 1/6
  // keep-last-1: only the last checkpoint remains.
  CHECK(!std::filesystem::exists(dir.path / "full" / "global_step_4"));
  CHECK(std::filesystem::exists(dir.path / "full" / "global_step_6"));

  const auto [r_a, w_a, logged_a] = run(dir.path / "half", 3, o);  // saved at 2 and at its last step, 3
  REQUIRE(r_a.last_step == 3);
  REQUIRE(std::filesystem::exists(dir.path / "half" / "global_step_3"));
  const auto [r_b, w_b, logged_b] = run(dir.path / "half", 6, o);
  REQUIRE(r_b.resumed_from == std::optional<std::int64_t>(3));
  CHECK(r_b.first_step == 4);
  CHECK(bit_identical(w_b, w_full));
  REQUIRE(logged_b.size() == 3);
  CHECK(logged_b.back().at("loss") == logged_full.back().at("loss"));
  CHECK(logged_b.back().at("eval_loss") == logged_full.back().at("eval_loss"));
}

TEST_CASE("offline_from_config: every OfflineConfig key from YAML and overrides, unsupported values name the key",
          "[trainer][config]") {
  constexpr const char* yaml = R"(
data:
  train_files: [a.jsonl, b.jsonl]
  train_batch_size: 8
  micro_batch_size_per_gpu: 2
  max_length: 256
  max_prompt_length: 64
  truncation: left
  prompt_key: question
  chosen_key: good
  rejected_key: bad
  completion_key: answer
  label_key: ok
  response_key: reply
  messages_key: turns
  shuffle: false
  num_workers: 0
optim:
  lr: 5.0e-7
  weight_decay: 0.05
  betas: [0.8, 0.95]
  clip_grad: 0.5
  lr_scheduler_type: cosine
  lr_warmup_steps_ratio: 0.1
  min_lr_ratio: 0.2
  num_cycles: 0.25
trainer:
  total_epochs: 2
  seed: 17
  save_freq: 10
  test_freq: 5
  max_ckpt_to_keep: 3
  default_local_dir: /tmp/ckpt
dpo:
  beta: 0.2
  loss_type: ipo
  label_smoothing: 0.0
  rpo_alpha: 0.3
  f_divergence_type: js_divergence
  f_alpha_divergence_coef: 0.7
  discopop_tau: 0.1
  precompute_ref_log_probs: true
kto:
  beta: 0.3
  loss_type: apo_zero_unpaired
  desirable_weight: 1.5
  undesirable_weight: 0.5
)";
  const auto loaded = verl::config::load_text<verl::config::OfflineConfig>(
      yaml, "offline.yaml", {"optim.lr=1e-6", "dpo.reference_free=true", "trainer.resume_mode=disable"});
  const auto& cfg = loaded.config;

  // Steps: 40 examples / 8 = 5 batches per epoch x 2 epochs (verl's SFT rule), unless total_training_steps.
  CHECK(verl::trainer::offline_total_training_steps(cfg, 5) == 10);
  CHECK(verl::trainer::offline_total_training_steps(
            verl::config::load_text<verl::config::OfflineConfig>(yaml, "o", {"trainer.total_training_steps=7"}).config,
            5) == 7);

  const auto d = verl::trainer::dpo_options_from(cfg, 10);
  CHECK(d.learning_rate == 1e-6);  // the override
  CHECK(d.per_device_train_batch_size == 2);
  CHECK(d.gradient_accumulation_steps == 1);
  CHECK(d.max_grad_norm == 0.5);
  CHECK(d.weight_decay == 0.05);
  CHECK(d.adam_beta1 == 0.8);
  CHECK(d.adam_beta2 == 0.95);
  CHECK(d.lr_schedule.lr_scheduler_type == "cosine");
  CHECK(d.lr_schedule.num_warmup_steps == 1);  // int(0.1 x 10)
  CHECK(d.lr_schedule.num_training_steps == 10);
  CHECK(d.lr_schedule.min_lr_ratio == 0.2);
  CHECK(d.lr_schedule.num_cycles == 0.25);
  CHECK(d.beta == 0.2);
  CHECK(d.loss_type == verl::pref::DPOLossType::ipo);
  CHECK(d.reference_free);
  CHECK(d.rpo_alpha == std::optional<double>(0.3));
  CHECK(d.f_divergence_type == verl::pref::FDivergence::js_divergence);
  CHECK(d.f_alpha_divergence_coef == 0.7);
  CHECK(d.discopop_tau == 0.1);
  CHECK(d.precompute_ref_log_probs);

  const auto k = verl::trainer::kto_options_from(cfg, 10);
  CHECK(k.beta == 0.3);
  CHECK(k.loss_type == verl::pref::KTOLossType::apo_zero_unpaired);
  CHECK(k.desirable_weight == 1.5);
  CHECK(k.undesirable_weight == 0.5);
  CHECK(k.learning_rate == 1e-6);

  const auto s = verl::trainer::sft_options_from(cfg, 10);
  CHECK(s.micro_batch_size_per_gpu == 2);
  CHECK(s.lr == 1e-6);
  CHECK(s.clip_grad == 0.5);
  CHECK(s.beta1 == 0.8);
  CHECK(s.weight_decay == 0.05);
  CHECK(s.lr_schedule.num_warmup_steps == 1);

  const auto po = verl::trainer::train_provider_options_from(cfg);
  CHECK(po.batch_size == 8);
  CHECK(!po.shuffle);
  CHECK(po.seed == 17);
  CHECK(po.drop_last);
  CHECK(po.num_workers == 0);
  CHECK(po.epochs == 2);
  const auto sv = verl::trainer::sft_val_provider_options_from(cfg);
  CHECK((sv.batch_size == 8 && !sv.shuffle && sv.drop_last && sv.epochs == 1));
  const auto pv = verl::trainer::preference_val_provider_options_from(cfg);
  CHECK((pv.batch_size == 2 && !pv.shuffle && !pv.drop_last && pv.epochs == 1));

  const auto dd = verl::trainer::dpo_dataset_options_from(cfg);
  CHECK(dd.prompt_key == "question");
  CHECK(dd.chosen_key == "good");
  CHECK(dd.rejected_key == "bad");
  CHECK(dd.max_length == std::optional<std::int64_t>(256));
  CHECK(dd.max_prompt_length == std::optional<std::int64_t>(64));
  CHECK(dd.truncation_mode == verl::data::TruncationMode::keep_end);  // verl's left = TRL's keep_end
  const auto kd = verl::trainer::kto_dataset_options_from(cfg);
  CHECK(kd.completion_key == "answer");
  CHECK(kd.label_key == "ok");
  CHECK(kd.max_prompt_length == 64);
  const auto sd = verl::trainer::sft_dataset_options_from(cfg);
  CHECK(sd.response_key == "reply");
  CHECK(sd.messages_key == "turns");
  CHECK(sd.max_length == 256);
  CHECK(sd.truncation == verl::data::Truncation::left);

  const auto f = verl::trainer::offline_fit_options_from(cfg, 10, loaded.yaml);
  CHECK(f.total_training_steps == 10);
  CHECK(f.save_freq == 10);
  CHECK(f.test_freq == 5);
  CHECK(f.max_ckpt_to_keep == 3);
  CHECK(f.checkpoint_dir == "/tmp/ckpt");
  CHECK(!f.resume);
  CHECK(!f.resume_from_path);
  CHECK((f.save_optimizer && f.save_training_state && f.load_optimizer && f.load_training_state));
  CHECK(f.config_text == loaded.yaml);
  const auto f2 = verl::trainer::offline_fit_options_from(
      verl::config::load_text<verl::config::OfflineConfig>(yaml, "o", {"checkpoint.save_contents=[model]"}).config, 10,
      "");
  CHECK((!f2.save_optimizer && !f2.save_training_state && !f2.load_optimizer && !f2.load_training_state));
  CHECK(f2.resume);

  // Unsupported values: ConfigError naming the key.
  const auto with = [&](std::vector<std::string> o) {
    return verl::config::load_text<verl::config::OfflineConfig>(yaml, "offline.yaml", std::move(o)).config;
  };
  CHECK_THROWS_WITH(verl::trainer::dpo_dataset_options_from(with({"data.truncation=error"})),
                    Contains("`data.truncation`") && Contains("left"));
  CHECK_THROWS_WITH(verl::trainer::sft_dataset_options_from(with({"data.truncation=middle"})),
                    Contains("`data.truncation`"));
  CHECK_THROWS_WITH(verl::trainer::kto_options_from(with({"kto.precompute_ref_log_probs=true"}), 10),
                    Contains("`kto.precompute_ref_log_probs`"));
  CHECK_THROWS_WITH(verl::trainer::train_provider_options_from(with({"data.train_max_samples=100"})),
                    Contains("`data.train_max_samples`"));
  CHECK_THROWS_WITH(verl::trainer::sft_options_from(with({"checkpoint.save_contents=[optimizer,extra]"}), 10),
                    Contains("`checkpoint.save_contents`") && Contains("model"));
  CHECK_THROWS_WITH(verl::trainer::kto_dataset_options_from(with({"data.max_prompt_length=null"})),
                    Contains("`data.max_prompt_length`"));
  CHECK_THROWS_WITH(verl::trainer::dpo_options_from(with({"model.custom_chat_template=x"}), 10),
                    Contains("`model.custom_chat_template`"));
  CHECK_THROWS_WITH(verl::trainer::offline_total_training_steps(with({"trainer.total_epochs=0"}), 5),
                    Contains("`trainer.total_epochs` 0"));
  verl::trainer::MetricsRegistry registry;
  CHECK_THROWS_WITH(verl::trainer::add_metric_exporters_from(with({"trainer.logger=[console,wandb]"}), registry, "m.jsonl"),
                    Contains("`trainer.logger`") && Contains("wandb"));
  // A cosine schedule needs the step count: LRScheduleConfig names it.
  CHECK_THROWS_WITH(verl::trainer::sft_options_from(cfg, 0), Contains("num_training_steps"));
}

TEST_CASE("KTOTrainer::fit resumes bit for bit, when the data runs out the last step run is validated and saved",
          "[trainer][kto][fit]") {
  const verl::test::TempDir dir("kto_fit");
  torch::set_num_threads(1);
  const auto ds = kto_dataset(dir);
  const auto run = [&](const std::filesystem::path& ckpt, std::int64_t stop_at, std::size_t epochs) {
    Actor actor = make_actor(4);
    verl::trainer::KTOOptions o;
    o.learning_rate = 1e-2;
    o.per_device_train_batch_size = 2;
    o.lr_schedule.lr_scheduler_type = "cosine";
    o.lr_schedule.num_warmup_steps = 1;
    o.lr_schedule.num_training_steps = 4;
    verl::trainer::KTOTrainer<Actor, Reference> trainer(actor, Reference::copy_of(actor), o);
    verl::trainer::MetricsRegistry registry;
    std::vector<std::pair<std::int64_t, verl::trainer::MetricMap>> logged;
    registry.add_callback([&](std::int64_t step, const verl::trainer::MetricMap& m) { logged.emplace_back(step, m); });
    verl::trainer::OfflineFitOptions fo;
    fo.total_training_steps = stop_at;
    fo.save_freq = 10;  // only the last step saves
    fo.checkpoint_dir = ckpt;
    fo.progress_bar = false;
    verl::data::DataProviderOptions po;
    po.batch_size = 3;  // 2 batches per epoch
    po.seed = 8;
    po.epochs = epochs;
    auto result = trainer.fit(
        [&](const nlohmann::json& resume) {
          return std::make_unique<verl::data::DataProvider<verl::data::KTODataset>>(ds, po, resume);
        },
        registry, fo, [&](std::int64_t) {
          verl::data::DataProviderOptions vo;
          vo.batch_size = 3;
          vo.shuffle = false;
          vo.drop_last = false;
          vo.epochs = 1;
          verl::data::DataProvider<verl::data::KTODataset> val(ds, vo);
          return trainer.validate(val);
        });
    return std::tuple{std::move(result), snapshot(actor), std::move(logged)};
  };
  const auto [r_full, w_full, l_full] = run(dir.path / "full", 4, 0);
  const auto [r_a, w_a, l_a] = run(dir.path / "half", 2, 0);
  REQUIRE(r_a.checkpoints.size() == 1);
  const auto [r_b, w_b, l_b] = run(dir.path / "half", 4, 0);
  REQUIRE(r_b.resumed_from == std::optional<std::int64_t>(2));
  CHECK(bit_identical(w_b, w_full));
  CHECK(!bit_identical(w_a, w_full));

  // One epoch of 2 batches, 10 steps asked: steps 1-2 run, then step 2 is validated and saved as the last.
  const auto [r_out, w_out, l_out] = run(dir.path / "short", 10, 1);
  CHECK(r_out.last_step == 2);
  REQUIRE(r_out.checkpoints.size() == 1);
  CHECK(r_out.checkpoints.front().filename() == "global_step_2");
  CHECK(r_out.last_val_metrics.count("eval_loss") == 1);
  REQUIRE(l_out.size() == 3);  // steps 1 and 2, then step 2's validation and checkpoint timing
  CHECK(l_out[2].first == 2);
  CHECK(l_out[2].second.count("eval_kl") == 1);
  CHECK(l_out[2].second.count("timing_s/save_checkpoint") == 1);
}

}  // namespace test_offline_trainers
