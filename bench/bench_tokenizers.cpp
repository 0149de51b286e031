// Encode throughput (MB/s of UTF-8 input) of verl::HFTokenizer and verl::SentencePieceTokenizer on the parity
// corpus (tests/parity/tokenizers/corpus.json, repeated to ~1 MB), with the hand-made byte-level BPE fixture and,
// when the parity fixtures have been generated (ctest -L parity -R tokenizers), the trained Qwen2-style and
// Llama-3-style tokenizers. The *_smoke case is what CTest runs (label bench).
//   build-tok/bench/verl_bench_tokenizers --benchmark_filter=Encode
#include "verl/tokenizers/hf_tokenizer.hpp"
#include "verl/tokenizers/sentencepiece_tokenizer.hpp"

#include <benchmark/benchmark.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace {

const std::filesystem::path source_dir = std::filesystem::path(__FILE__).parent_path().parent_path();

std::vector<std::string> corpus(std::size_t target_bytes) {
  std::ifstream in(source_dir / "tests/parity/tokenizers/corpus.json");
  const auto strings = nlohmann::json::parse(in).get<std::vector<std::string>>();
  std::vector<std::string> out;
  std::size_t bytes = 0;
  for (std::size_t round = 0; bytes < target_bytes; ++round)
    for (const auto& s : strings) {
      // Vary the text per round so the word cache sees new words too (numbers change every round).
      out.push_back(s + " " + std::to_string(round * 7919 % 100000));
      bytes += out.back().size();
    }
  return out;
}

template <class Tok>
void run_encode(benchmark::State& state, const Tok& tok, std::size_t target_bytes) {
  const auto texts = corpus(target_bytes);
  std::size_t bytes = 0, tokens = 0;
  for (const auto& t : texts) bytes += t.size();
  for (auto _ : state) {
    tokens = 0;
    for (const auto& t : texts) tokens += tok.encode(t).size();
    benchmark::DoNotOptimize(tokens);
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * bytes));
  state.counters["tokens"] = static_cast<double>(tokens);
}

std::filesystem::path fixture(const std::string& name) {
  for (const char* build : {"build-tok", "build"}) {
    const auto p = source_dir / build / "tests/parity/tokenizers/fixtures" / name;
    if (std::filesystem::exists(p)) return p;
  }
  return {};
}

void BM_EncodeTinyBPE_smoke(benchmark::State& state) {
  const auto tok = verl::HFTokenizer::from_directory(source_dir / "tests/fixtures/tokenizers/tiny_bpe");
  run_encode(state, tok, 20'000);
}
BENCHMARK(BM_EncodeTinyBPE_smoke)->Unit(benchmark::kMillisecond);

void BM_EncodeHF(benchmark::State& state, const char* name) {
  const auto dir = fixture(name);
  if (dir.empty()) {
    state.SkipWithError("parity fixtures not generated: run ctest -L parity -R tokenizers first");
    return;
  }
  run_encode(state, verl::HFTokenizer::from_directory(dir), 1'000'000);
}
BENCHMARK_CAPTURE(BM_EncodeHF, qwen2, "qwen2")->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_EncodeHF, llama3, "llama3")->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_EncodeHF, gpt2, "gpt2")->Unit(benchmark::kMillisecond);

void BM_EncodeSentencePiece(benchmark::State& state) {
  run_encode(state, verl::SentencePieceTokenizer(source_dir / "tests/fixtures/tokenizers/sp_bpe.model"), 1'000'000);
}
BENCHMARK(BM_EncodeSentencePiece)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
