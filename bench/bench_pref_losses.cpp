// Benchmarks of verl::pref (include/verl/algos/pref/*.hpp): every DPO loss type, KTO, SimPO, ORPO at batch sizes
// 64, 256, 1024 (float32, CPU, forward only), and the SFT NLL at (B,T) in {(64,512), (256,2048), (1024,4096)} over
// a vocabulary of 32 (reference = at::cross_entropy_loss as transformers, fused = logsumexp - target logit).
// `smoke` variants (B=8, or (2,16) for SFT) are what CTest runs.
//
// Inputs: torch::manual_seed(0), then the same draws as bench/compare_pref_vs_trl.py makes in Python (same
// generator, same order), so the side-by-side script feeds TRL identical tensors:
//   per-sequence log-probs: -rand(B) * 20 for pi_c, pi_r, ref_c, ref_r (KTO: chosen B/2, rejected B/2, KL B);
//   SimPO/ORPO averaged log-probs: -(rand(B) * 3 + 0.05);  SFT: randn(B,T,V), randint(0,V,(B,T)).
#include "verl/algos/pref/pref.hpp"

#include <benchmark/benchmark.h>
#include <torch/types.h>

#include <string>
#include <vector>

namespace {

using namespace verl::pref;

struct Logps {
  at::Tensor pc, pr, rc, rr;
};

Logps make_logps(int64_t B) {
  torch::manual_seed(0);
  Logps l;
  l.pc = -torch::rand({B}) * 20;
  l.pr = -torch::rand({B}) * 20;
  l.rc = -torch::rand({B}) * 20;
  l.rr = -torch::rand({B}) * 20;
  return l;
}

void BM_dpo(benchmark::State& state, DPOLossType type) {
  const auto l = make_logps(state.range(0));
  const DPOLossConfig cfg{.loss_type = type};
  for (auto _ : state) benchmark::DoNotOptimize(dpo_loss(l.pc, l.pr, l.rc, l.rr, cfg).losses);
  state.SetItemsProcessed(state.iterations() * state.range(0));
}

void BM_kto(benchmark::State& state, KTOLossType type) {
  const auto B = state.range(0);
  torch::manual_seed(0);
  const auto pc = -torch::rand({B / 2}) * 20, pr = -torch::rand({B / 2}) * 20, pkl = -torch::rand({B}) * 20;
  const auto rc = -torch::rand({B / 2}) * 20, rr = -torch::rand({B / 2}) * 20, rkl = -torch::rand({B}) * 20;
  const KTOLossConfig cfg{.loss_type = type};
  for (auto _ : state) benchmark::DoNotOptimize(kto_loss(pc, pr, pkl, rc, rr, rkl, cfg).losses);
  state.SetItemsProcessed(state.iterations() * B);
}

void BM_simpo(benchmark::State& state) {
  const auto B = state.range(0);
  torch::manual_seed(0);
  const auto pc = -(torch::rand({B}) * 3 + 0.05), pr = -(torch::rand({B}) * 3 + 0.05);
  const SimPOLossConfig cfg{.beta = 2.0, .simpo_gamma = 0.5};
  for (auto _ : state) benchmark::DoNotOptimize(simpo_loss(pc, pr, cfg).losses);
  state.SetItemsProcessed(state.iterations() * B);
}

void BM_orpo(benchmark::State& state) {
  const auto B = state.range(0);
  torch::manual_seed(0);
  const auto pc = -(torch::rand({B}) * 3 + 0.05), pr = -(torch::rand({B}) * 3 + 0.05);
  for (auto _ : state) benchmark::DoNotOptimize(odds_ratio_loss(pc, pr).losses);
  state.SetItemsProcessed(state.iterations() * B);
}

void BM_sft(benchmark::State& state, SFTLossAlgorithm alg) {
  const auto B = state.range(0), T = state.range(1), V = int64_t{32};
  torch::manual_seed(0);
  const auto logits = torch::randn({B, T, V});                 // (B,T,V)
  const auto labels = torch::randint(0, V, {B, T}, torch::kLong);  // (B,T)
  const SFTLossConfig cfg{.algorithm = alg};
  for (auto _ : state) benchmark::DoNotOptimize(sft_nll_loss(logits, labels, cfg));
  state.SetItemsProcessed(state.iterations() * B * T);
  state.SetBytesProcessed(state.iterations() * B * T * V * 4);
}

void register_all() {
  constexpr DPOLossType types[] = {DPOLossType::sigmoid,  DPOLossType::hinge,     DPOLossType::ipo,
                                   DPOLossType::exo_pair, DPOLossType::nca_pair,  DPOLossType::robust,
                                   DPOLossType::sppo_hard, DPOLossType::aot,      DPOLossType::aot_unpaired,
                                   DPOLossType::apo_zero, DPOLossType::apo_down,  DPOLossType::discopop};
  const auto sizes = [](benchmark::internal::Benchmark* b) { b->Arg(64)->Arg(256)->Arg(1024)->UseRealTime(); };
  for (const auto t : types) {
    const std::string name(to_string(t));
    benchmark::RegisterBenchmark(("BM_dpo/" + name).c_str(), BM_dpo, t)->Apply(sizes);
    benchmark::RegisterBenchmark(("BM_dpo_smoke/" + name).c_str(), BM_dpo, t)->Arg(8);
  }
  for (const auto t : {KTOLossType::kto, KTOLossType::apo_zero_unpaired}) {
    const std::string name(to_string(t));
    benchmark::RegisterBenchmark(("BM_kto/" + name).c_str(), BM_kto, t)->Apply(sizes);
    benchmark::RegisterBenchmark(("BM_kto_smoke/" + name).c_str(), BM_kto, t)->Arg(8);
  }
  benchmark::RegisterBenchmark("BM_simpo", BM_simpo)->Apply(sizes);
  benchmark::RegisterBenchmark("BM_simpo_smoke", BM_simpo)->Arg(8);
  benchmark::RegisterBenchmark("BM_orpo", BM_orpo)->Apply(sizes);
  benchmark::RegisterBenchmark("BM_orpo_smoke", BM_orpo)->Arg(8);
  for (const auto [alg, name] : {std::pair{SFTLossAlgorithm::reference, "reference"},
                                 std::pair{SFTLossAlgorithm::fused, "fused"}}) {
    benchmark::RegisterBenchmark((std::string("BM_sft/") + name).c_str(), BM_sft, alg)
        ->Args({64, 512})->Args({256, 2048})->Args({1024, 4096})->UseRealTime()->Unit(benchmark::kMillisecond);
    benchmark::RegisterBenchmark((std::string("BM_sft_smoke/") + name).c_str(), BM_sft, alg)->Args({2, 16});
  }
}

}  // namespace

int main(int argc, char** argv) {
  register_all();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
