// Training checkpoints (include/verl/trainer/checkpoint_manager.hpp), optimizer state
// (optimizer_state.hpp), learning-rate schedules (lr_schedule.hpp) and SHA-256 (checkpoint/sha256.hpp):
// FIPS 180-4 vectors; schedules against verl 0.7.1's and transformers 5.23's own functions
// (tests/golden/trainer/lr_schedules.json); a tiny real CausalLM trained with AdamW, checkpointed and resumed in
// a fresh model/optimizer gives bit-identical weights to the uninterrupted run; keep-last-N, the tracker,
// corruption, leftovers of interrupted saves, the save switches, RNG restore.
#include "catch_torch.hpp"

#include "verl/checkpoint/sha256.hpp"
#include "verl/models/hf_model_io.hpp"
#include "verl/trainer/checkpoint_manager.hpp"
#include "verl/trainer/fused_adamw.hpp"
#include "verl/trainer/lr_schedule.hpp"
#include "verl/trainer/optimizer_state.hpp"

#include "golden.hpp"
#include "temp_dir.hpp"

#include <torch/optim/adam.h>
#include <torch/optim/adamw.h>

#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

namespace test_checkpoint_manager {  // one namespace per file: a unity build (tests/CMakeLists.txt) may join files

using namespace verl::trainer;
using nlohmann::json;
using verl::test::TempDir;
namespace fs = std::filesystem;
namespace models = verl::models;

namespace {

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

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}
void write_file(const fs::path& p, const std::string& s) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out << s;
}

models::TransformerConfig tiny_config(int hidden = 32) {
  json j{{"model_type", "qwen2"},       {"vocab_size", 53},         {"hidden_size", hidden},
         {"intermediate_size", 48},     {"num_hidden_layers", 2},   {"num_attention_heads", 4},
         {"num_key_value_heads", 2},    {"max_position_embeddings", 64}, {"rms_norm_eps", 1e-6},
         {"tie_word_embeddings", false}, {"pad_token_id", 0},       {"eos_token_id", 1},
         {"initializer_range", 0.2}};
  return models::TransformerConfig::from_json(j);
}

models::CausalLM make_lm(std::uint64_t seed, int hidden = 32) {
  torch::manual_seed(seed);
  models::CausalLM lm(tiny_config(hidden));
  lm->init_weights(0.2);
  return lm;
}

// One training step whose data come from LibTorch's default CPU generator and from `engine`, so that the
// continuation after a resume depends on both RNG states being restored.
void train_step(models::CausalLM& lm, torch::optim::Optimizer& opt, LRScheduler& sched, std::mt19937_64& engine) {
  const auto ids = torch::randint(2, 53, {2, 6}, torch::kLong);                  // (B,T)
  const auto mask = torch::ones({2, 6}, torch::kLong);                           // (B,T)
  const auto pos = torch::arange(6, torch::kLong).unsqueeze(0).expand({2, 6});  // (B,T)
  const double scale = 1.0 + static_cast<double>(engine() % 7) / 10.0;
  const auto logits = lm->forward(ids, mask, pos);                                // (B,T,V)
  const auto logp = torch::log_softmax(logits.slice(1, 0, 5), -1);                // (B,T-1,V)
  const auto nll = -logp.gather(-1, ids.slice(1, 1).unsqueeze(-1)).mean();
  opt.zero_grad();
  (nll * scale).backward();
  opt.step();
  sched.step();
}

bool same_weights(models::CausalLM& a, models::CausalLM& b) {
  const auto pa = a->named_parameters(), pb = b->named_parameters();
  if (pa.size() != pb.size()) return false;
  for (const auto& item : pa) {
    if (!torch::equal(item.value(), pb[item.key()])) {
      UNSCOPED_INFO("parameter " << item.key() << " differs");
      return false;
    }
  }
  return true;
}

LRScheduleConfig cosine_config() {
  LRScheduleConfig c;
  c.lr_scheduler_type = "cosine";
  c.num_warmup_steps = 2;
  c.num_training_steps = 10;
  c.min_lr_ratio = 0.1;
  return c;
}

// Everything one run checkpoints: a model, its AdamW, the scheduler, a std::mt19937_64, a data position.
struct Run {
  models::CausalLM lm;
  torch::optim::AdamW opt;
  LRScheduler sched;
  std::mt19937_64 engine{1234};
  std::int64_t data_pos = 0;

  explicit Run(models::CausalLM m)
      : lm(std::move(m)),
        opt(lm->parameters(), torch::optim::AdamWOptions(1e-2).weight_decay(0.1)),
        sched(opt, cosine_config()) {}

  void steps(int k) {
    for (int i = 0; i < k; ++i, ++data_pos) train_step(lm, opt, sched, engine);
  }

  CheckpointContents contents() {
    CheckpointContents c;
    c.model("actor", [this](const fs::path& p) { models::save_causal_lm(lm, p); })
        .optimizer("actor", opt, lm->named_parameters())
        .scheduler("actor", sched)
        .rng("sampler", engine)
        .seeds(json{{"seed", 7}})
        .data_position([this] { return json{{"index", data_pos}}; },
                       [this](const json& s) { data_pos = s.at("index").get<std::int64_t>(); })
        .config_text("trainer:\n  total_training_steps: 10\n");
    return c;
  }
};

struct Reports {
  std::vector<std::string> lines;
  CheckpointOptions options(int keep) {
    CheckpointOptions o;
    o.keep_last_n = keep;
    o.report = [this](const std::string& s) { lines.push_back(s); };
    return o;
  }
  bool any(const std::string& needle) const {
    for (const auto& l : lines) {
      if (l.find(needle) != std::string::npos) return true;
    }
    return false;
  }
};

}  // namespace

// ---------------------------------------------------------------------------------------------- SHA-256

TEST_CASE("sha256 matches the FIPS 180-4 / NIST examples", "[trainer][checkpoint][sha256]") {
  using verl::checkpoint::sha256_hex;
  CHECK(sha256_hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  CHECK(sha256_hex("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  // The two-block 448-bit message: its padding does not fit in the first block.
  CHECK(sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq") ==
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  CHECK(sha256_hex("abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrst"
                   "nopqrstu") == "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");
  const std::string million(1'000'000, 'a');
  CHECK(sha256_hex(million) == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");

  // Both implementations (portable, and SHA-NI where the CPU has it) on the FIPS vectors and on random
  // messages of every length across the one- and two-block padding cases.
  INFO("SHA-NI available: " << verl::checkpoint::detail::sha256_hardware_available());
  const auto hex = [](bool hw, const std::string& m) {
    verl::checkpoint::Sha256 h(hw);
    h.update(m);
    return h.hex_digest();
  };
  for (bool hw : {false, true}) {
    CHECK(hex(hw, "abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    CHECK(hex(hw, million) == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
  }
  std::mt19937 gen(3);
  for (std::size_t len = 0; len <= 300; ++len) {
    std::string m(len, '\0');
    for (auto& ch : m) ch = static_cast<char>(gen());
    CHECK(hex(false, m) == hex(true, m));
  }

  // Streaming: any split of the message into update() calls gives the same digest.
  const std::string msg = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq0123456789abcdefghijklmnopqrstuvwxyz";
  for (std::size_t cut = 0; cut <= msg.size(); ++cut) {
    verl::checkpoint::Sha256 h;
    h.update(msg.substr(0, cut));
    h.update(msg.substr(cut));
    CHECK(h.hex_digest() == sha256_hex(msg));
  }

  // Files are streamed in 1 MiB pieces: 1M 'a' plus 2.5 MiB more crosses several piece boundaries.
  TempDir dir("sha256");
  write_file(dir.path / "a.bin", million);
  const auto d = verl::checkpoint::sha256_file(dir.path / "a.bin");
  CHECK(d.size == 1'000'000);
  CHECK(d.sha256 == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
  std::string big(3 * 1024 * 1024 + 517, '\0');
  for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>((i * 2654435761u) >> 13);
  write_file(dir.path / "big.bin", big);
  CHECK(verl::checkpoint::sha256_file(dir.path / "big.bin").sha256 == sha256_hex(big));
  CHECK(error_of<verl::Error>([&] { (void)verl::checkpoint::sha256_file(dir.path / "nope"); })
            .find("nope") != std::string::npos);
}

// ---------------------------------------------------------------------------------------- LR schedules

TEST_CASE("LR schedules equal verl 0.7.1's and transformers' LambdaLR bit for bit", "[trainer][lr_schedule]") {
  const auto file = verl::test::load_golden("trainer/lr_schedules.json");
  REQUIRE(file.cases.size() == 21);
  for (const auto& c : file.cases) {
    INFO(c.name);
    const auto& j = c.config;
    LRScheduleConfig cfg;
    if (c.name.rfind("verl_optim/", 0) == 0) {
      const auto& w = j["lr_warmup_steps"];
      cfg = LRScheduleConfig::from_verl_optim(j["lr_scheduler_type"],
                                              w.is_null() ? std::nullopt : std::optional<std::int64_t>(w.get<std::int64_t>()),
                                              j["lr_warmup_steps_ratio"], j["total_training_steps"]);
      CHECK(cfg.num_warmup_steps == j["resolved_num_warmup_steps"].get<std::int64_t>());
    } else {
      cfg.lr_scheduler_type = j["lr_scheduler_type"];
      cfg.num_warmup_steps = j["num_warmup_steps"];
      cfg.num_training_steps = j.value("num_training_steps", std::int64_t{-1});
      cfg.min_lr_ratio = j.value("min_lr_ratio", 0.0);
      cfg.num_cycles = j.value("num_cycles", 0.5);
      cfg.init_lr_ratio = j.value("init_lr_ratio", 0.0);
      cfg.zero_indexed_step = j.value("zero_indexed_step", true);
      cfg.stable_ratio = j.value("stable_ratio", 0.9);
    }
    const auto base = c.input("base_lrs");
    auto p1 = torch::zeros({2}, torch::requires_grad()), p2 = torch::zeros({3}, torch::requires_grad());
    std::vector<torch::optim::OptimizerParamGroup> groups;
    groups.emplace_back(std::vector<at::Tensor>{p1},
                        std::make_unique<torch::optim::AdamWOptions>(base[0].item<double>()));
    groups.emplace_back(std::vector<at::Tensor>{p2},
                        std::make_unique<torch::optim::AdamWOptions>(base[1].item<double>()));
    torch::optim::AdamW opt(groups);
    LRScheduler sched(opt, cfg);
    const auto mult = c.output("multiplier"), lr0 = c.output("lr0"), lr1 = c.output("lr1");
    const auto steps = j["steps"].get<std::int64_t>();
    REQUIRE(mult.numel() == steps);
    for (std::int64_t e = 0; e < steps; ++e) {
      INFO("epoch " << e);
      CHECK(sched.last_epoch() == e);
      CHECK(lr_multiplier(cfg, e) == mult[e].item<double>());
      CHECK(sched.last_lr(0) == lr0[e].item<double>());
      CHECK(sched.last_lr(1) == lr1[e].item<double>());
      CHECK(opt.param_groups()[0].options().get_lr() == lr0[e].item<double>());
      CHECK(opt.param_groups()[1].options().get_lr() == lr1[e].item<double>());
      sched.step();
    }
  }
}

TEST_CASE("LRScheduler state round trip and config errors", "[trainer][lr_schedule]") {
  auto p = torch::zeros({2}, torch::requires_grad());
  torch::optim::AdamW opt({p}, torch::optim::AdamWOptions(0.5));
  LRScheduler a(opt, cosine_config());
  for (int i = 0; i < 4; ++i) a.step();
  const json s = json::parse(a.state().dump());  // through text, as in a checkpoint
  const double lr_a = a.last_lr();

  auto q = torch::zeros({2}, torch::requires_grad());
  torch::optim::AdamW opt2({q}, torch::optim::AdamWOptions(0.7));  // another base lr: the saved one wins
  LRScheduler b(opt2, cosine_config());
  b.load_state(s);
  CHECK(b.last_epoch() == 4);
  CHECK(b.last_lr() == lr_a);
  CHECK(opt2.param_groups()[0].options().get_lr() == lr_a);
  a.step();
  b.step();
  CHECK(b.last_lr() == a.last_lr());

  CHECK(error_of<verl::InputError>([&] { b.load_state(json{{"last_epoch", 1}}); }).find("base_lrs") !=
        std::string::npos);
  CHECK(error_of<verl::InputError>([&] {
          b.load_state(json{{"last_epoch", 1}, {"base_lrs", {0.1, 0.2}}});
        }).find("2 entries, but the optimizer has 1") != std::string::npos);

  LRScheduleConfig bad;
  bad.lr_scheduler_type = "cosine";
  CHECK(error_of<verl::ConfigError>([&] { bad.validate(); }).find("num_training_steps") != std::string::npos);
  bad.lr_scheduler_type = "exponential";
  CHECK(error_of<verl::ConfigError>([&] { bad.validate(); }).find("`exponential`") != std::string::npos);
  bad = cosine_config();
  bad.min_lr_ratio = 1.5;
  CHECK(error_of<verl::ConfigError>([&] { LRScheduler x(opt, bad); }).find("min_lr_ratio") != std::string::npos);
  // verl's warm-up rule: a positive lr_warmup_steps wins; null, 0 or negative delegate to the ratio (truncated).
  CHECK(LRScheduleConfig::resolve_warmup_steps(3, 0.5, 100) == 3);
  CHECK(LRScheduleConfig::resolve_warmup_steps(0, 0.5, 100) == 50);
  CHECK(LRScheduleConfig::resolve_warmup_steps(std::nullopt, 0.5, 100) == 50);
  CHECK(LRScheduleConfig::resolve_warmup_steps(-1, 0.15, 33) == 4);  // int(4.95)
}

// ------------------------------------------------------------------------------------- optimizer state

TEST_CASE("optimizer state round trip continues bit for bit, and mismatches are named", "[trainer][optimizer_state]") {
  TempDir dir("optim");
  for (const bool amsgrad : {false, true}) {
    INFO("amsgrad " << amsgrad);
    // Adam (not AdamW) with amsgrad: exercises the other optimizer kind and max_exp_avg_sq.
    auto lm = make_lm(3);
    torch::optim::Adam opt(lm->parameters(), torch::optim::AdamOptions(3e-3).amsgrad(amsgrad).weight_decay(0.01));
    LRScheduler sched(opt, cosine_config());
    std::mt19937_64 engine(5);
    for (int i = 0; i < 3; ++i) train_step(lm, opt, sched, engine);
    const auto sub = dir.path / (amsgrad ? "ams" : "plain");
    save_optimizer_state(opt, lm->named_parameters(), sub);
    CHECK(fs::exists(sub / "optimizer.safetensors"));
    const auto meta = json::parse(read_file(sub / "optimizer.json"));
    CHECK(meta["optimizer"] == "Adam");
    CHECK(meta["param_groups"][0]["amsgrad"] == amsgrad);
    CHECK(meta["state"]["lm_head.weight"]["step"] == 3);

    // A copy of the model and a new optimizer with other hyper-parameters: the file's win.
    auto lm2 = make_lm(99);
    {
      torch::NoGradGuard ng;
      for (const auto& item : lm->named_parameters()) lm2->named_parameters()[item.key()].copy_(item.value());
    }
    torch::optim::Adam opt2(lm2->parameters(), torch::optim::AdamOptions(1.0));
    load_optimizer_state(opt2, lm2->named_parameters(), sub);
    LRScheduler sched2(opt2, cosine_config());
    sched2.load_state(sched.state());
    std::mt19937_64 engine2 = engine;
    const auto rng = at::detail::getDefaultCPUGenerator().get_state();
    for (int i = 0; i < 3; ++i) train_step(lm, opt, sched, engine);
    { at::Generator g = at::detail::getDefaultCPUGenerator(); g.set_state(rng); }
    for (int i = 0; i < 3; ++i) train_step(lm2, opt2, sched2, engine2);
    CHECK(same_weights(lm, lm2));
  }

  // Mismatches name the file and the parameter.
  auto lm = make_lm(3);
  torch::optim::AdamW opt(lm->parameters(), torch::optim::AdamWOptions(1e-3));
  LRScheduler sched(opt, cosine_config());
  std::mt19937_64 engine(5);
  train_step(lm, opt, sched, engine);
  save_optimizer_state(opt, lm->named_parameters(), dir.path / "w");

  auto wider = make_lm(3, 48);  // hidden 48: every shape differs
  torch::optim::AdamW opt_w(wider->parameters());
  auto msg = error_of<verl::InputError>([&] { load_optimizer_state(opt_w, wider->named_parameters(), dir.path / "w"); });
  CHECK(msg.find("optimizer.safetensors") != std::string::npos);
  CHECK(msg.find("has shape [53, 48]") != std::string::npos);
  CHECK(msg.find("parameter `lm_head.weight` has shape [53, 48]") != std::string::npos);  // state keys sorted

  auto dbl = make_lm(3);
  dbl->to(torch::kFloat64);
  torch::optim::AdamW opt_d(dbl->parameters());
  CHECK(error_of<verl::InputError>([&] { load_optimizer_state(opt_d, dbl->named_parameters(), dir.path / "w"); })
            .find("has dtype Float, but parameter") != std::string::npos);

  torch::optim::Adam opt_a(lm->parameters());
  CHECK(error_of<verl::InputError>([&] { load_optimizer_state(opt_a, lm->named_parameters(), dir.path / "w"); })
            .find("holds the state of AdamW, but the optimizer is Adam") != std::string::npos);

  // Fewer parameters (the LM head frozen out of the optimizer): position and names reported.
  std::vector<at::Tensor> some;
  for (const auto& item : lm->named_parameters()) {
    if (item.key() != "lm_head.weight") some.push_back(item.value());
  }
  torch::optim::AdamW opt_s(some);
  CHECK(error_of<verl::InputError>([&] { load_optimizer_state(opt_s, lm->named_parameters(), dir.path / "w"); })
            .find("saved parameter `lm_head.weight`, but the optimizer has `(none)`") != std::string::npos);

  // A parameter that is not among the names given.
  CHECK(error_of<verl::ConfigError>([&] {
          save_optimizer_state(opt, torch::OrderedDict<std::string, at::Tensor>{}, dir.path / "x");
        }).find("not among the named parameters") != std::string::npos);

  // A state tensor removed from the file.
  {
    const auto f = verl::checkpoint::SafetensorsFile::open(dir.path / "w" / "optimizer.safetensors");
    std::vector<std::pair<std::string, at::Tensor>> keep;
    for (const auto& n : f.names()) {
      if (n != "model.norm.weight.exp_avg_sq") keep.emplace_back(n, f.tensor(n).clone());
    }
    verl::checkpoint::save_safetensors(dir.path / "w" / "optimizer.safetensors", keep);
  }
  torch::optim::AdamW opt_m(lm->parameters());
  CHECK(error_of<verl::InputError>([&] { load_optimizer_state(opt_m, lm->named_parameters(), dir.path / "w"); })
            .find("has no tensor `model.norm.weight.exp_avg_sq`") != std::string::npos);
  CHECK(opt_m.state().empty());  // nothing changed on the error
}

// ----------------------------------------------------------------------------------------- checkpoints

TEST_CASE("FusedAdamW: torch's fused AdamW kernel, equal to torch::optim::AdamW to rounding, state round trip",
          "[trainer][optimizer_state][fused_adamw]") {
  using verl::trainer::FusedAdamW;
  // Step 1 by hand (float64): m = (1-b1) g, v = (1-b2) g^2, bias-corrected m^ = g, v^ = g^2, so
  // p1 = p (1 - lr wd) - lr g / (|g| + eps).
  {
    auto p = torch::tensor({1.0, -2.0, 0.5}, torch::kFloat64).requires_grad_(true);
    const auto g = torch::tensor({0.3, -4.0, 1e-3}, torch::kFloat64);
    FusedAdamW opt({p}, torch::optim::AdamWOptions(0.1).betas({0.9, 0.95}).eps(1e-8).weight_decay(0.01));
    p.mutable_grad() = g.clone();
    opt.step();
    const auto want = torch::tensor({1.0, -2.0, 0.5}, torch::kFloat64) * (1 - 0.1 * 0.01) - 0.1 * g / (g.abs() + 1e-8);
    CHECK(torch::allclose(p.detach(), want, 1e-15, 1e-15));
  }
  // Several steps against LibTorch's unfused AdamW, float32 and float64, with and without amsgrad; a parameter
  // without a gradient is left alone and gets no state.
  for (const auto dtype : {torch::kFloat32, torch::kFloat64}) {
    for (const bool amsgrad : {false, true}) {
      INFO("dtype " << dtype << ", amsgrad " << amsgrad);
      torch::manual_seed(3);
      const auto init = torch::randn({4, 5}, dtype), frozen_init = torch::randn({3}, dtype);
      auto a = init.clone().requires_grad_(true), b = init.clone().requires_grad_(true);
      auto frozen = frozen_init.clone().requires_grad_(true);
      const auto options = torch::optim::AdamWOptions(3e-2).betas({0.9, 0.99}).eps(1e-6).weight_decay(0.05).amsgrad(amsgrad);
      FusedAdamW fused({a, frozen}, options);
      torch::optim::AdamW plain({b}, options);
      for (int step = 0; step < 6; ++step) {
        const auto g = torch::randn({4, 5}, dtype) * (step + 1);
        a.mutable_grad() = g.clone();
        b.mutable_grad() = g.clone();
        fused.step();
        plain.step();
      }
      const double tol = dtype == torch::kFloat32 ? 2e-6 : 1e-13;
      CHECK(torch::allclose(a.detach(), b.detach(), tol, tol));
      CHECK(torch::equal(frozen.detach(), frozen_init));
      CHECK(fused.state().count(frozen.unsafeGetTensorImpl()) == 0);
      const auto& st = static_cast<const torch::optim::AdamWParamState&>(*fused.state().at(a.unsafeGetTensorImpl()));
      CHECK(st.step() == 6);
      CHECK(st.max_exp_avg_sq().defined() == amsgrad);
    }
  }
  // The state is torch::optim::AdamW's: saved and restored by optimizer_state.hpp, the next steps are bitwise.
  TempDir dir("fused_adamw");
  auto lm = make_lm(3);
  FusedAdamW opt(lm->parameters(), torch::optim::AdamWOptions(3e-3).weight_decay(0.01));
  LRScheduler sched(opt, cosine_config());
  std::mt19937_64 engine(5);
  for (int i = 0; i < 3; ++i) train_step(lm, opt, sched, engine);
  save_optimizer_state(opt, lm->named_parameters(), dir.path);
  CHECK(json::parse(read_file(dir.path / "optimizer.json"))["optimizer"] == "AdamW");
  auto lm2 = make_lm(99);
  {
    torch::NoGradGuard ng;
    for (const auto& item : lm->named_parameters()) lm2->named_parameters()[item.key()].copy_(item.value());
  }
  FusedAdamW opt2(lm2->parameters(), torch::optim::AdamWOptions(1.0));
  load_optimizer_state(opt2, lm2->named_parameters(), dir.path);
  LRScheduler sched2(opt2, cosine_config());
  sched2.load_state(sched.state());
  std::mt19937_64 engine2 = engine;
  const auto rng = at::detail::getDefaultCPUGenerator().get_state();
  for (int i = 0; i < 2; ++i) train_step(lm, opt, sched, engine);
  { at::Generator g = at::detail::getDefaultCPUGenerator(); g.set_state(rng); }
  for (int i = 0; i < 2; ++i) train_step(lm2, opt2, sched2, engine2);
  for (const auto& item : lm->named_parameters()) {
    INFO(item.key());
    CHECK(torch::equal(item.value(), lm2->named_parameters()[item.key()]));
  }
}

TEST_CASE("save, resume into a fresh model and optimizer, continue: bit-identical to the uninterrupted run",
          "[trainer][checkpoint]") {
  TempDir root("ckpt_resume");
  Reports reports;
  Run a(make_lm(11));
  a.steps(3);
  const auto torch_rng_at_save = at::detail::getDefaultCPUGenerator().get_state();
  CheckpointManager mgr(root.path / "ckpts", reports.options(0));
  const auto written = mgr.save(3, a.contents());
  CHECK(written == root.path / "ckpts" / "global_step_3");
  CHECK(read_file(root.path / "ckpts" / "latest_checkpointed_iteration.txt") == "3");
  for (const char* f : {"actor/config.json", "actor/model.safetensors", "optimizer/actor/optimizer.safetensors",
                        "optimizer/actor/optimizer.json", "training_state.json", "rng_state.safetensors",
                        "config.yaml", "MANIFEST.json"}) {
    INFO(f);
    CHECK(fs::is_regular_file(written / f));
  }
  CHECK(mgr.leftovers().empty());
  const auto manifest = json::parse(read_file(written / "MANIFEST.json"));
  CHECK(manifest["step"] == 3);
  CHECK(manifest["files"].size() == 7);
  for (const auto& f : manifest["files"]) {
    const auto d = verl::checkpoint::sha256_file(written / f["path"].get<std::string>());
    CHECK(f["size"] == d.size);
    CHECK(f["sha256"] == d.sha256);
  }

  a.steps(4);  // the uninterrupted run: 7 steps

  // "A new process": RNGs elsewhere, a model rebuilt from the checkpoint's HF directory, a new optimizer with
  // other hyper-parameters, a fresh scheduler at epoch 0.
  torch::manual_seed(777);
  auto last = mgr.resume();
  REQUIRE(last.has_value());
  CHECK(last->step() == 3);
  CHECK(last->config_text() == std::optional<std::string>("trainer:\n  total_training_steps: 10\n"));
  CHECK(last->seeds() == json{{"seed", 7}});
  Run b(models::load_causal_lm(last->model_dir("actor")));
  b.opt.param_groups()[0].options().set_lr(0.5);
  b.engine.seed(42);
  last->restore(b.contents());
  CHECK(b.data_pos == 3);
  CHECK(b.sched.last_epoch() == 3);
  CHECK(at::equal(at::detail::getDefaultCPUGenerator().get_state(), torch_rng_at_save));
  b.steps(4);
  CHECK(b.data_pos == 7);
  CHECK(same_weights(a.lm, b.lm));
  CHECK(reports.lines.empty());

  // The comparison is sensitive: the same resume without the optimizer state (fresh moments) diverges.
  Run c(models::load_causal_lm(last->model_dir("actor")));
  CheckpointContents no_optimizer;
  no_optimizer.scheduler("actor", c.sched).rng("sampler", c.engine);
  last->restore(no_optimizer);
  c.steps(4);
  CHECK_FALSE(same_weights(a.lm, c.lm));
}

namespace {

constexpr const char* child_env = "VERL_TEST_CHECKPOINT_CHILD_ROOT";

// Runs this test executable's hidden test case [checkpoint_child] in a new process; returns its wait status.
int run_child(const fs::path& root) {
  char exe[4096];
  const ssize_t n = ::readlink("/proc/self/exe", exe, sizeof(exe) - 1);
  REQUIRE(n > 0);
  exe[n] = '\0';
  std::vector<std::string> env_strings;
  for (char** e = environ; *e != nullptr; ++e) env_strings.emplace_back(*e);
  env_strings.push_back(std::string(child_env) + "=" + root.string());
  std::vector<char*> envp;
  for (auto& e : env_strings) envp.push_back(e.data());
  envp.push_back(nullptr);
  std::string a0 = exe, a1 = "[checkpoint_child]", a2 = "--out", a3 = "/dev/null";
  char* argv[] = {a0.data(), a1.data(), a2.data(), a3.data(), nullptr};
  pid_t pid = 0;
  REQUIRE(::posix_spawn(&pid, exe, nullptr, nullptr, argv, envp.data()) == 0);
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  return status;
}

}  // namespace

// The child of the next test: 3 steps, a checkpoint, 2 more steps, then killed (SIGKILL) in the middle of
// saving step 5, after the model and optimizer files of that save are written.
TEST_CASE("checkpoint child process (run by the process-kill test)", "[.][checkpoint_child]") {
  const char* root = std::getenv(child_env);
  if (root == nullptr) return;
  Run a(make_lm(11));
  a.steps(3);
  CheckpointManager mgr(root, 0);
  mgr.save(3, a.contents());
  a.steps(2);
  auto parts = a.contents();
  parts.state("killed_here", []() -> json { ::kill(::getpid(), SIGKILL); return json{}; }, [](const json&) {});
  mgr.save(5, parts);
  std::_Exit(3);  // not reached
}

TEST_CASE("N steps uninterrupted == N/2 steps, process killed mid-save, resume, N/2 steps (bitwise)",
          "[trainer][checkpoint]") {
  TempDir root("ckpt_kill");
  const int status = run_child(root.path);
  REQUIRE(WIFSIGNALED(status));
  CHECK(WTERMSIG(status) == SIGKILL);

  Reports reports;
  CheckpointManager mgr(root.path, reports.options(0));
  REQUIRE(mgr.leftovers().size() == 1);  // the interrupted save of step 5
  CHECK(mgr.leftovers()[0].filename().string().rfind(".tmp-global_step_5-", 0) == 0);
  CHECK(mgr.tracked_step() == 3);
  auto last = mgr.resume();
  REQUIRE(last.has_value());
  CHECK(last->step() == 3);
  CHECK(reports.any("ignoring `" + mgr.leftovers()[0].string() + "`: left by an interrupted save"));

  Run resumed(models::load_causal_lm(last->model_dir("actor")));
  last->restore(resumed.contents());
  resumed.steps(4);

  Run uninterrupted(make_lm(11));
  uninterrupted.steps(7);
  CHECK(same_weights(uninterrupted.lm, resumed.lm));
}

TEST_CASE("RNG restore reproduces the same random numbers", "[trainer][checkpoint]") {
  TempDir root("ckpt_rng");
  std::mt19937_64 engine(2024);
  for (int i = 0; i < 5; ++i) (void)engine();
  CheckpointContents parts;
  fs::path loaded_from;
  parts.rng("sampler", engine)
      .model("policy", [](const fs::path& p) { write_file(p / "w.bin", "w"); },
             [&](const fs::path& p) { loaded_from = p; });
  CheckpointManager mgr(root.path, 0);
  mgr.save(1, parts);
  const auto t1 = torch::rand({8});
  const auto e1 = engine();
  const auto n1 = torch::randn({3}, torch::kFloat64);

  (void)torch::rand({100});
  engine.seed(1);
  mgr.load(mgr.path_of(1)).restore(parts);
  CHECK(torch::equal(torch::rand({8}), t1));
  CHECK(engine() == e1);
  CHECK(torch::equal(torch::randn({3}, torch::kFloat64), n1));
  CHECK(loaded_from == mgr.path_of(1) / "policy");  // restore() ran the model's loader

  // The engine's whole state (312 words) is stored, not a seed.
  const auto ckpt = mgr.load(mgr.path_of(1));
  CHECK(ckpt.training_state()["rng_engines"]["sampler"].get<std::string>().size() > 1000);
}

TEST_CASE("keep-last-N deletes the oldest complete checkpoints, never the new one, and the tracker follows",
          "[trainer][checkpoint]") {
  TempDir root("ckpt_keep");
  Reports reports;
  CheckpointContents parts;
  int version = 0;
  parts.model("actor", [&](const fs::path& p) { write_file(p / "weights.bin", "v" + std::to_string(version)); })
      .torch_cpu_rng(false);
  CheckpointManager mgr(root.path, reports.options(2));
  for (int step : {10, 20, 30, 40}) {
    ++version;
    mgr.save(step, parts);
    CHECK(mgr.tracked_step() == step);
  }
  std::vector<std::int64_t> steps;
  for (const auto& e : mgr.checkpoints()) steps.push_back(e.step);
  CHECK(steps == std::vector<std::int64_t>{40, 30});
  CHECK(reports.any("deleted old checkpoint (keep_last_n = 2) `" + mgr.path_of(10).string() + "`"));
  CHECK(reports.any("deleted old checkpoint (keep_last_n = 2) `" + mgr.path_of(20).string() + "`"));
  CHECK(mgr.leftovers().empty());

  // Re-saving an existing step replaces it (a resumed run saving the same step again).
  ++version;
  mgr.save(40, parts);
  CHECK(read_file(mgr.path_of(40) / "actor" / "weights.bin") == "v5");
  CHECK(mgr.load(mgr.path_of(40)).step() == 40);
  CHECK(mgr.leftovers().empty());

  // A save of an older step than those present (resumed from an explicit older path): the new one stays.
  mgr.save(5, parts);
  steps.clear();
  for (const auto& e : mgr.checkpoints()) steps.push_back(e.step);
  CHECK(steps == std::vector<std::int64_t>{40, 5});
  CHECK(mgr.tracked_step() == 5);

  // keep_last_n <= 0 keeps everything.
  TempDir all("ckpt_keep_all");
  CheckpointManager keep_all(all.path, 0);
  for (int step = 1; step <= 4; ++step) keep_all.save(step, parts);
  CHECK(keep_all.checkpoints().size() == 4);
}

TEST_CASE("a corrupted, truncated or tampered checkpoint is refused with the file named, and resume skips it",
          "[trainer][checkpoint]") {
  TempDir root("ckpt_corrupt");
  Reports reports;
  CheckpointContents parts;
  parts.model("actor", [&](const fs::path& p) {
    write_file(p / "model.safetensors", std::string(4096, 'w'));
    write_file(p / "config.json", "{}");
  });
  CheckpointManager mgr(root.path, reports.options(0));
  mgr.save(1, parts);
  mgr.save(2, parts);
  const auto weights = mgr.path_of(2) / "actor" / "model.safetensors";
  const auto original = read_file(weights);

  SECTION("a flipped byte: SHA-256 mismatch") {
    auto bytes = original;
    bytes[1000] ^= 0x01;
    write_file(weights, bytes);
    const auto msg = error_of<verl::InputError>([&] { (void)mgr.load(mgr.path_of(2)); });
    CHECK(msg.find(weights.string()) != std::string::npos);
    CHECK(msg.find("SHA-256") != std::string::npos);
    CHECK(msg.find("corrupted") != std::string::npos);
  }
  SECTION("truncated: size mismatch") {
    write_file(weights, original.substr(0, 100));
    const auto msg = error_of<verl::InputError>([&] { (void)mgr.load(mgr.path_of(2)); });
    CHECK(msg.find(weights.string() + "` has 100 bytes; MANIFEST.json lists 4096") != std::string::npos);
  }
  SECTION("a listed file is missing") {
    fs::remove(weights);
    CHECK(error_of<verl::InputError>([&] { (void)mgr.load(mgr.path_of(2)); })
              .find("listed in MANIFEST.json but missing") != std::string::npos);
  }
  SECTION("a file that the manifest does not list") {
    write_file(mgr.path_of(2) / "actor" / "extra.bin", "x");
    CHECK(error_of<verl::InputError>([&] { (void)mgr.load(mgr.path_of(2)); })
              .find("extra.bin` is not listed in MANIFEST.json") != std::string::npos);
  }
  SECTION("a truncated manifest") {
    const auto m = read_file(mgr.path_of(2) / "MANIFEST.json");
    write_file(mgr.path_of(2) / "MANIFEST.json", m.substr(0, m.size() / 2));
    CHECK(error_of<verl::InputError>([&] { (void)mgr.load(mgr.path_of(2)); }).find("is not valid JSON") !=
          std::string::npos);
  }
  SECTION("a manifest of another format version") {
    const auto m = read_file(mgr.path_of(2) / "MANIFEST.json");
    const auto at = m.find("\"version\": 1");
    REQUIRE(at != std::string::npos);
    write_file(mgr.path_of(2) / "MANIFEST.json", m.substr(0, at) + "\"version\": 2" + m.substr(at + 12));
    CHECK(error_of<verl::InputError>([&] { (void)mgr.load(mgr.path_of(2)); })
              .find("field `version` is 2; this verl-cpp reads version 1") != std::string::npos);
  }
  // Every variant: resume skips step 2, says why, and takes step 1 (the tracker's disagreement is reported).
  auto last = mgr.resume();
  REQUIRE(last.has_value());
  CHECK(last->step() == 1);
  CHECK(reports.any("skipping incomplete or corrupted checkpoint `" + mgr.path_of(2).string()));
  CHECK(reports.any("names step 2, but the latest complete checkpoint is step 1"));
  CHECK(fs::exists(mgr.path_of(2)));  // reported, not deleted
}

TEST_CASE("leftovers of an interrupted save are ignored and reported, removed only on request",
          "[trainer][checkpoint]") {
  TempDir root("ckpt_leftover");
  Reports reports;
  CheckpointContents parts;
  parts.model("actor", [&](const fs::path& p) { write_file(p / "w.bin", "weights"); }).torch_cpu_rng(false);
  CheckpointManager mgr(root.path, reports.options(1));
  mgr.save(4, parts);
  // A crash mid-save of step 6 (temp dir, no manifest) and a directory of step 5 that never got a manifest.
  fs::create_directories(root.path / ".tmp-global_step_6-999-abc" / "actor");
  write_file(root.path / ".tmp-global_step_6-999-abc" / "actor" / "w.bin", "half");
  fs::create_directories(mgr.path_of(5) / "actor");
  auto last = mgr.resume();
  REQUIRE(last.has_value());
  CHECK(last->step() == 4);
  CHECK(reports.any("ignoring `" + (root.path / ".tmp-global_step_6-999-abc").string() + "`"));
  CHECK(reports.any("MANIFEST.json` is missing (the save did not finish)"));
  CHECK(fs::exists(root.path / ".tmp-global_step_6-999-abc"));

  // keep_last_n = 1 leaves the manifest-less step 5 alone (it is not a checkpoint this manager judges).
  mgr.save(7, parts);
  CHECK(fs::exists(mgr.path_of(5)));
  CHECK_FALSE(fs::exists(mgr.path_of(4)));

  reports.lines.clear();
  CHECK(mgr.remove_leftovers() == 1);
  CHECK(reports.any("deleted a leftover of an interrupted save"));
  CHECK_FALSE(fs::exists(root.path / ".tmp-global_step_6-999-abc"));

  // A writer that throws: no checkpoint, no temp directory, tracker unchanged.
  CheckpointContents failing;
  failing.model("actor", [](const fs::path&) { throw std::runtime_error("disk full"); });
  CHECK_THROWS_WITH(mgr.save(8, failing), "disk full");
  CHECK_FALSE(fs::exists(mgr.path_of(8)));
  CHECK(mgr.leftovers().empty());
  CHECK(mgr.tracked_step() == 7);

  // No checkpoint at all.
  TempDir empty("ckpt_empty");
  CHECK_FALSE(CheckpointManager(empty.path / "none", 0).resume().has_value());
}

TEST_CASE("save_optimizer / save_training_state off: only the model directories (and config) are written",
          "[trainer][checkpoint]") {
  TempDir root("ckpt_switches");
  Run a(make_lm(5));
  a.steps(1);
  CheckpointOptions o;
  o.save_optimizer = false;
  o.save_training_state = false;
  CheckpointManager mgr(root.path, o);
  const auto dir = mgr.save(1, a.contents());
  std::vector<std::string> top;
  for (const auto& e : fs::directory_iterator(dir)) top.push_back(e.path().filename().string());
  std::sort(top.begin(), top.end());
  CHECK(top == std::vector<std::string>{"MANIFEST.json", "actor", "config.yaml"});
  const auto ckpt = mgr.load(dir);
  CHECK_FALSE(ckpt.has_optimizer("actor"));
  CHECK_FALSE(ckpt.has_training_state());
  CHECK(ckpt.has_model("actor"));
  const auto msg = error_of<verl::InputError>([&] { ckpt.restore(a.contents()); });
  CHECK(msg.find("has no optimizer `actor` (saved with save_optimizer = false?)") != std::string::npos);
  CHECK(error_of<verl::InputError>([&] { ckpt.restore_scheduler("actor", a.sched); })
            .find("save_training_state = false") != std::string::npos);
  // Restoring what was saved: the model loader runs, the rest is skipped and named.
  fs::path loaded;
  auto with_loader = a.contents();
  with_loader.model("critic", [](const fs::path&) {}, [&](const fs::path& p) { loaded = p; });
  const auto before = a.data_pos;
  CHECK_THROWS_AS(ckpt.restore(with_loader, Checkpoint::Restore::what_was_saved), verl::InputError);  // no critic
  CheckpointContents model_only = a.contents();
  const auto skipped = ckpt.restore(model_only, Checkpoint::Restore::what_was_saved);
  CHECK(skipped == std::vector<std::string>{"optimizer `actor`", "scheduler `actor`", "rng `sampler`",
                                            "state `data_position`", "rng `torch_cpu`"});
  CHECK(a.data_pos == before);
  CHECK(loaded.empty());

  // Optimizer on, training state off.
  o.save_optimizer = true;
  CheckpointManager mgr2(root.path / "two", o);
  const auto ckpt2 = mgr2.load(mgr2.save(1, a.contents()));
  CHECK(ckpt2.has_optimizer("actor"));
  CHECK_FALSE(ckpt2.has_training_state());

  // Bad names.
  CheckpointContents c;
  CHECK_THROWS_AS(c.model("../x", [](const fs::path&) {}), verl::ConfigError);
  CHECK_THROWS_AS(c.model("optimizer", [](const fs::path&) {}), verl::ConfigError);
  c.rng("r", a.engine);
  CHECK(error_of<verl::ConfigError>([&] { c.rng("r", a.engine); }).find("registered twice") != std::string::npos);
}

}  // namespace test_checkpoint_manager
