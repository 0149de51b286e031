// Tokenizer parity: verl::HFTokenizer, verl::SentencePieceTokenizer, verl::chat formats and verl::batch_encode
// against the reference libraries (tokenizers 0.23.3, sentencepiece 0.2.3, transformers 5.23.0), token for token,
// on the fixtures that generate_fixtures.py builds (small models trained on corpus.json, nothing downloaded).
//
//   verl_parity_tokenizers <fixture_dir> <case>    case: hf:<name> | sp:<name> | chat | batch
// Exit 0 on parity, 1 on a mismatch (the first ones are printed), 77 (CTest skip) when the fixtures are missing.
#include "verl/tokenizers/batch_encode.hpp"
#include "verl/tokenizers/chat_format.hpp"
#include "verl/tokenizers/hf_tokenizer.hpp"
#include "verl/tokenizers/sentencepiece_tokenizer.hpp"

#include <nlohmann/json.hpp>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

static_assert(verl::check_tokenizer<verl::HFTokenizer>());
static_assert(verl::check_tokenizer<verl::SentencePieceTokenizer>());

namespace {

int failures = 0;

std::string show(const std::string& s) { return nlohmann::json(s).dump(); }
std::string show(const std::vector<std::int64_t>& v) { return nlohmann::json(v).dump(); }

template <class A, class B>
void expect_eq(const A& got, const B& want, const std::string& what) {
  if (got == want) return;
  if (++failures <= 20) std::cout << "MISMATCH " << what << "\n   got:  " << show(got) << "\n   want: " << show(want) << "\n";
}

nlohmann::json load(const std::filesystem::path& p) {
  std::ifstream in(p);
  return nlohmann::json::parse(in);
}

void hf_case(const std::filesystem::path& dir) {
  const auto tok = verl::HFTokenizer::from_directory(dir);
  const auto e = load(dir / "expected.json");
  expect_eq(std::to_string(tok.vocab_size()), std::to_string(e["vocab_size"].get<std::int64_t>()), "vocab_size");
  expect_eq(std::to_string(tok.eos_token_id()), std::to_string(e["eos_token_id"].get<std::int64_t>()), "eos_token_id");
  expect_eq(std::to_string(tok.pad_token_id()), std::to_string(e["pad_token_id"].get<std::int64_t>()), "pad_token_id");
  for (const auto& [id, token] : e["id_to_token"].items()) {
    expect_eq(tok.id_to_token(std::stoll(id)).value_or("<none>"), token.get<std::string>(), "id_to_token(" + id + ")");
  }
  for (const auto& [token, id] : e["token_to_id"].items())
    expect_eq(std::to_string(tok.token_to_id(token).value_or(-1)), std::to_string(id.is_null() ? -1 : id.get<std::int64_t>()),
              "token_to_id(" + show(token) + ")");
  std::size_t n = 0;
  for (const auto& c : e["cases"]) {
    const auto text = c["text"].get<std::string>();
    const auto ids = tok.encode(text);
    expect_eq(ids, c["ids"].get<std::vector<std::int64_t>>(), "encode(" + show(text) + ")");
    const auto want = c["ids"].get<std::vector<std::int64_t>>();
    expect_eq(tok.decode(want), c["decode_skip"].get<std::string>(), "decode skip_special (" + show(text) + ")");
    expect_eq(tok.decode(want, false), c["decode_keep"].get<std::string>(), "decode keep_special (" + show(text) + ")");
    ++n;
  }
  for (const auto& c : e["decode_only"]) {
    const auto ids = c["ids"].get<std::vector<std::int64_t>>();
    expect_eq(tok.decode(ids), c["skip"].get<std::string>(), "decode " + show(ids));
    expect_eq(tok.decode(ids, false), c["keep"].get<std::string>(), "decode keep " + show(ids));
  }
  std::cout << dir.filename().string() << ": " << n << " corpus strings compared\n";
}

void sp_case(const std::filesystem::path& dir) {
  const verl::SentencePieceTokenizer tok(dir / "tokenizer.model");
  const auto e = load(dir / "expected.json");
  expect_eq(std::to_string(tok.vocab_size()), std::to_string(e["vocab_size"].get<std::int64_t>()), "vocab_size");
  expect_eq(std::to_string(tok.eos_token_id()), std::to_string(e["eos_id"].get<std::int64_t>()), "eos_id");
  for (const auto& c : e["cases"]) {
    const auto text = c["text"].get<std::string>();
    const auto want = c["ids"].get<std::vector<std::int64_t>>();
    expect_eq(tok.encode(text), want, "encode(" + show(text) + ")");
    expect_eq(tok.decode(want), c["decode"].get<std::string>(), "decode(" + show(text) + ")");
  }
  std::cout << dir.filename().string() << ": " << e["cases"].size() << " corpus strings compared\n";
}

void chat_case(const std::filesystem::path& dir) {
  const auto e = load(dir / "expected.json");
  const verl::chat::Llama3 llama3;
  for (const auto& c : e["cases"]) {
    std::vector<verl::chat::Message> messages;
    for (const auto& m : c["messages"]) messages.push_back({m["role"].get<std::string>(), m["content"].get<std::string>()});
    const auto format = c["format"].get<std::string>();
    const bool gen = c["add_generation_prompt"].get<bool>();
    std::string got;
    if (format == "chatml") got = verl::chat::apply_chat_template(verl::chat::chatml, messages, gen);
    else if (format == "qwen2") got = verl::chat::apply_chat_template(verl::chat::qwen2, messages, gen);
    else if (format == "qwen2_5") got = verl::chat::apply_chat_template(verl::chat::qwen2_5, messages, gen);
    else got = verl::chat::apply_chat_template(llama3, messages, gen);
    expect_eq(got, c["text"].get<std::string>(), format + (gen ? " +gen " : " ") + c["messages"].dump());
  }
  std::cout << "chat: " << e["cases"].size() << " renderings compared\n";
}

void batch_case(const std::filesystem::path& dir) {
  const auto e = load(dir / "expected.json");
  const auto tok = verl::HFTokenizer::from_directory(dir.parent_path() / "qwen2");
  const auto texts = e["texts"].get<std::vector<std::string>>();
  for (const auto& c : e["cases"]) {
    verl::BatchEncodeOptions o;
    o.padding_side = c["padding_side"] == "left" ? verl::Side::left : verl::Side::right;
    o.truncation_side = c["truncation_side"] == "left" ? verl::Side::left : verl::Side::right;
    if (!c["max_length"].is_null()) o.max_length = c["max_length"].get<std::int64_t>();
    const auto b = verl::batch_encode(tok, texts, o);
    const auto rows = c["input_ids"].get<std::vector<std::vector<std::int64_t>>>();
    const auto masks = c["attention_mask"].get<std::vector<std::vector<std::int64_t>>>();
    const std::string what = c.dump().substr(0, 90);
    expect_eq(std::to_string(b.input_ids.size(0)), std::to_string(rows.size()), "batch size " + what);
    for (std::size_t i = 0; i < rows.size(); ++i) {
      const auto r = b.input_ids[static_cast<std::int64_t>(i)].contiguous();
      const auto m = b.attention_mask[static_cast<std::int64_t>(i)].contiguous();
      expect_eq(std::vector<std::int64_t>(r.data_ptr<std::int64_t>(), r.data_ptr<std::int64_t>() + r.numel()), rows[i],
                "input_ids row " + std::to_string(i) + " " + what);
      expect_eq(std::vector<std::int64_t>(m.data_ptr<std::int64_t>(), m.data_ptr<std::int64_t>() + m.numel()), masks[i],
                "attention_mask row " + std::to_string(i) + " " + what);
    }
  }
  std::cout << "batch: " << e["cases"].size() << " padding/truncation settings compared\n";
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::cerr << "usage: verl_parity_tokenizers <fixture_dir> hf:<name>|sp:<name>|chat|batch\n";
    return 2;
  }
  const std::filesystem::path root = argv[1];
  const std::string which = argv[2];
  if (!std::filesystem::exists(root / "chat" / "expected.json")) {
    std::cout << "tokenizer parity skipped: no fixtures in " << root.string()
              << " (the fixture step skipped: tokenizers/transformers/sentencepiece not installed in the venv)\n";
    return 77;
  }
  try {
    if (which.rfind("hf:", 0) == 0) hf_case(root / which.substr(3));
    else if (which.rfind("sp:", 0) == 0) sp_case(root / which.substr(3));
    else if (which == "chat") chat_case(root / "chat");
    else if (which == "batch") batch_case(root / "batch");
    else {
      std::cerr << "unknown case " << which << "\n";
      return 2;
    }
  } catch (const std::exception& ex) {
    std::cout << "ERROR " << which << ": " << ex.what() << "\n";
    return 1;
  }
  if (failures) std::cout << failures << " mismatches in " << which << "\n";
  return failures ? 1 : 0;
}
