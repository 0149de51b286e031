// Heads parity: verl::models::Actor / Reference / Critic / RewardScorer against transformers 5.23.0 on the
// fixtures that generate_fixtures.py writes (tiny random models, one padded batch, fp32).
//
//   verl_parity_heads <fixture_dir> <case> <part>   part: actor | critic | reward | load_report
//   verl_parity_heads <fixture_dir> <case> save <out_dir>
//
// actor: log-probs and entropy (two temperatures) vs log_softmax of transformers' logits as verl's dp_actor
// slices them, max |diff| <= 1e-5, for Actor and Reference; critic: values vs AutoModelForTokenClassification
// (num_labels=1) sliced as dp_critic; reward: scores vs AutoModelForSequenceClassification's pooled logits
// (ScorePosition::last_non_pad) and vs verl's argmax(position_ids * attention_mask) read-out of the same per-token
// scores (last_attended); load_report: heads built from the causal-LM (and reward) checkpoint report exactly
// transformers' missing keys as newly initialised and its unexpected keys as unused. `save` writes the C++
// models and their outputs for verify_saved.py (transformers loads what verl-cpp saves).
// Exit 0 on parity, 1 on a mismatch, 77 (CTest skip) when the fixtures are missing.
// verl/models/rope.hpp uses Tensor operators without including them (reported); include them first.
#include <ATen/TensorOperators.h>

#include "verl/checkpoint/safetensors.hpp"
#include "verl/models/actor.hpp"
#include "verl/models/critic.hpp"
#include "verl/models/reward_model.hpp"

#include <ATen/ops/abs.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

namespace fs = std::filesystem;
using namespace verl::models;

static_assert(verl::check_actor_model<Actor>());
static_assert(verl::check_reference_model<Reference>());
static_assert(verl::check_critic_model<Critic>());
static_assert(verl::check_reward_model<RewardScorer>());

namespace {

int failures = 0;
constexpr double kTolerance = 1e-5;

void expect_close(const at::Tensor& got, const at::Tensor& want, const std::string& what) {
  if (got.sizes() != want.sizes()) {
    ++failures;
    std::cout << "MISMATCH " << what << ": shape " << got.sizes() << ", expected " << want.sizes() << "\n";
    return;
  }
  const double diff = (got.to(at::kDouble) - want.to(at::kDouble)).abs().max().item<double>();
  const bool ok = diff <= kTolerance;
  if (!ok) ++failures;
  std::cout << (ok ? "ok       " : "MISMATCH ") << what << ": max |diff| = " << diff << " (tolerance " << kTolerance
            << ")\n";
}

void expect_names(const std::vector<std::string>& got, const nlohmann::json& want, const std::string& what) {
  const auto w = want.get<std::vector<std::string>>();  // sorted by the fixture script
  const bool ok = got == w;
  if (!ok) ++failures;
  std::cout << (ok ? "ok       " : "MISMATCH ") << what << ": " << nlohmann::json(got).dump() << ", transformers "
            << want.dump() << "\n";
}

struct Fixture {
  fs::path dir;
  verl::checkpoint::SafetensorsFile expected;
  nlohmann::json info;
  verl::TokenBatch batch;

  explicit Fixture(const fs::path& d)
      : dir(d), expected(verl::checkpoint::SafetensorsFile::open(d / "expected.safetensors")) {
    std::ifstream in(d / "expected.json");
    info = nlohmann::json::parse(in);
    batch = verl::TokenBatch{t("input_ids"), t("attention_mask"), t("position_ids"),
                             info["response_length"].get<std::int64_t>()};
  }
  [[nodiscard]] at::Tensor t(const std::string& name) const { return expected.tensor(name).clone(); }
};

HeadLoadOptions quiet() {
  HeadLoadOptions o;
  o.log = nullptr;
  return o;
}

void actor_part(const Fixture& f) {
  auto actor = Actor::load(f.dir / "actor", {}, ActorOptions{.chunk_tokens = 5});  // several chunks, one partial
  auto reference = Reference::load(f.dir / "actor");
  for (const auto& [name, temperature] : {std::pair<std::string, double>{"t1", 1.0}, {"t07", 0.7}}) {
    const verl::LogProbOptions o{.temperature = temperature, .compute_entropy = true};
    const auto out = actor.log_probs(f.batch, o);
    expect_close(out.log_probs, f.t("log_probs_" + name), "Actor log_probs, temperature " + std::to_string(temperature));
    expect_close(*out.entropy, f.t("entropy_" + name), "Actor entropy, temperature " + std::to_string(temperature));
    const auto ref = reference.log_probs(f.batch, o);
    expect_close(ref.log_probs, f.t("log_probs_" + name), "Reference log_probs, temperature " + std::to_string(temperature));
    expect_close(*ref.entropy, f.t("entropy_" + name), "Reference entropy, temperature " + std::to_string(temperature));
  }
}

void critic_part(const Fixture& f) {
  HeadLoadReport report;
  auto critic = Critic::load(f.dir / "critic", quiet(), &report);
  expect_names(report.newly_initialized, nlohmann::json::array(), "critic checkpoint: newly initialised");
  at::NoGradGuard no_grad;
  expect_close(critic.values(f.batch), f.t("values"), "Critic values");
}

void reward_part(const Fixture& f) {
  HeadLoadReport report;
  auto hf = RewardScorer::load(f.dir / "reward", quiet(), {.position = ScorePosition::last_non_pad}, &report);
  expect_names(report.newly_initialized, nlohmann::json::array(), "reward checkpoint: newly initialised");
  expect_close(hf.score(f.batch), f.t("scores_transformers"), "RewardScorer last_non_pad vs transformers' pooled logits");
  RewardScorer verl_rule(hf.module(), {.position = ScorePosition::last_attended});
  expect_close(verl_rule.score(f.batch), f.t("scores_verl"), "RewardScorer last_attended vs verl's read-out");
}

void load_report_part(const Fixture& f) {
  HeadLoadReport report;
  std::vector<std::string> lines;
  HeadLoadOptions o;
  o.log = [&](const std::string& l) { lines.push_back(l); };
  (void)Critic::load(f.dir / "actor", o, &report);
  expect_names(report.newly_initialized, f.info["critic_from_actor"]["missing"], "critic from actor: newly initialised");
  expect_names(report.unused, f.info["critic_from_actor"]["unexpected"], "critic from actor: unused");
  (void)RewardScorer::load(f.dir / "actor", o, {}, &report);
  expect_names(report.newly_initialized, f.info["reward_from_actor"]["missing"], "reward from actor: newly initialised");
  expect_names(report.unused, f.info["reward_from_actor"]["unexpected"], "reward from actor: unused");
  (void)Critic::load(f.dir / "reward", o, &report);
  expect_names(report.newly_initialized, f.info["critic_from_reward"]["missing"], "critic from reward: newly initialised");
  expect_names(report.unused, f.info["critic_from_reward"]["unexpected"], "critic from reward: unused");
  if (lines.size() != 3) {
    ++failures;
    std::cout << "MISMATCH expected one log line per load that initialised tensors, got " << lines.size() << "\n";
  }
  for (const auto& l : lines) std::cout << "log: " << l << "\n";
}

void save_part(const Fixture& f, const fs::path& out) {
  auto critic = Critic::load(f.dir / "critic", quiet());
  auto reward = RewardScorer::load(f.dir / "reward", quiet(), {.position = ScorePosition::last_non_pad});
  critic.save(out / "critic");
  reward.save(out / "reward");
  at::NoGradGuard no_grad;
  verl::checkpoint::save_safetensors(out / "cpp_outputs.safetensors",
                                     {{"values", critic.values(f.batch).contiguous()},
                                      {"scores_transformers", reward.score(f.batch).contiguous()}});
  std::cout << "saved critic/ and reward/ under " << out.string() << "\n";
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) {
    std::cerr << "usage: verl_parity_heads <fixture_dir> <case> actor|critic|reward|load_report|save [out_dir]\n";
    return 2;
  }
  const fs::path dir = fs::path(argv[1]) / argv[2];
  const std::string part = argv[3];
  if (!fs::exists(dir / "expected.safetensors")) {
    std::cout << "heads parity skipped: no fixtures at " << dir.string()
              << " (generate_fixtures.py needs transformers in the venv)\n";
    return 77;
  }
  try {
    const Fixture f(dir);
    if (part == "actor") actor_part(f);
    else if (part == "critic") critic_part(f);
    else if (part == "reward") reward_part(f);
    else if (part == "load_report") load_report_part(f);
    else if (part == "save" && argc == 5) save_part(f, argv[4]);
    else {
      std::cerr << "unknown part `" << part << "`\n";
      return 2;
    }
  } catch (const std::exception& e) {
    std::cout << "ERROR " << e.what() << "\n";
    return 1;
  }
  if (failures > 0) std::cout << failures << " mismatch(es)\n";
  return failures == 0 ? 0 : 1;
}
