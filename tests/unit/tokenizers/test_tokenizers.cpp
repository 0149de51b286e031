// Tokenizers (include/verl/tokenizers/): HFTokenizer on the hand-made byte-level BPE of
// tests/fixtures/tokenizers/tiny_bpe (expected ids derived by hand below), its load-time errors, NFC and UTF-8
// helpers, chat formats, batch encoding to tensors, SentencePiece loading. Token-for-token parity against the
// Hugging Face tokenizers library lives in tests/parity/tokenizers.
#include "catch_torch.hpp"
#include "error_of.hpp"

#include "verl/tokenizers/batch_encode.hpp"
#include "verl/tokenizers/chat_format.hpp"
#include "verl/tokenizers/hf_tokenizer.hpp"
#include "verl/tokenizers/sentencepiece_tokenizer.hpp"

#include <nlohmann/json.hpp>

#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

static_assert(verl::check_tokenizer<verl::HFTokenizer>());
static_assert(verl::check_tokenizer<verl::SentencePieceTokenizer>());
static_assert(verl::chat::ChatFormat<verl::chat::ChatML> && verl::chat::ChatFormat<verl::chat::Llama3>);

namespace {

const std::string fixtures = std::string(VERL_GOLDEN_DIR) + "/../fixtures/tokenizers";
using Ids = std::vector<std::int64_t>;

nlohmann::json tiny_json() {
  std::ifstream in(fixtures + "/tiny_bpe/tokenizer.json");
  return nlohmann::json::parse(in);
}

std::string load_error(const nlohmann::json& j) {
  return verl::test::error_of<verl::ConfigError>([&] { (void)verl::HFTokenizer::from_json_string(j.dump()); });
}

}  // namespace

// tiny_bpe: vocab a=0 b=1 c=2 Ġ=3 ab=4 abc=5 Ġa=6 bc=7; merges by rank: 0 "b c", 1 [a, b], 2 "a bc", 3 [Ġ, a];
// added tokens <|eos|>=8 (special), <|pad|>=9 (special), <m>=10 (lstrip, rstrip, not special).
TEST_CASE("HFTokenizer: BPE merges by rank through the priority queue (hand-derived)", "[tokenizers][hf]") {
  const auto tok = verl::HFTokenizer::from_directory(fixtures + "/tiny_bpe");
  // "abc": pairs (a,b) rank 1 and (b,c) rank 0 -> b+c first -> (a,bc) rank 2 -> abc. A left-to-right greedy
  // merger would give ab + c = [4, 2].
  CHECK(tok.encode("abc") == Ids{5});
  // "ab": (a,b) rank 1 -> ab.
  CHECK(tok.encode("ab") == Ids{4});
  // " abc" is one GPT-2 word " abc" -> Ġ a b c; b+c (0), a+bc (2); the stale (Ġ,a) entry no longer applies.
  CHECK(tok.encode(" abc") == Ids{3, 5});
  // "ab a": words "ab" and " a" -> [ab] [Ġa].
  CHECK(tok.encode("ab a") == Ids{4, 6});
  // "cab": c, a, b -> (a,b) rank 1 -> [c, ab]; (c,ab) is no merge.
  CHECK(tok.encode("cab") == Ids{2, 4});
  // 'z' has no token and the model no unk token: the tokenizers library drops it.
  CHECK(tok.encode("z").empty());
  CHECK(tok.encode("").empty());
}

TEST_CASE("HFTokenizer: added tokens, lstrip/rstrip, decode with and without special tokens", "[tokenizers][hf]") {
  const auto tok = verl::HFTokenizer::from_directory(fixtures + "/tiny_bpe");
  CHECK(tok.encode("a<|eos|>b") == Ids{0, 8, 1});
  CHECK(tok.encode("<|eos|><|pad|>") == Ids{8, 9});
  // <m> swallows the spaces on both sides: "ab  <m>  c" -> "ab" [4], "  <m>  " -> 10, "c" [2].
  CHECK(tok.encode("ab  <m>  c") == Ids{4, 10, 2});
  CHECK(tok.decode(Ids{3, 5}) == " abc");
  CHECK(tok.decode(Ids{0, 8, 1}) == "ab");                 // special <|eos|> skipped
  CHECK(tok.decode(Ids{0, 8, 1}, false) == "a<|eos|>b");   // kept
  CHECK(tok.decode(Ids{0, 10, 1}) == "a<m>b");             // <m> is not special
  CHECK(tok.decode(Ids{0, 4242, 1}) == "ab");              // unknown ids are skipped, as the tokenizers library does
  CHECK_THAT(verl::test::error_of<verl::InputError>([&] { (void)tok.decode(Ids{-1}); }), Catch::Contains("ids[0] = -1"));
  CHECK(tok.eos_token_id() == 8);
  CHECK(tok.pad_token_id() == 9);
  CHECK(tok.vocab_size() == 11);
  CHECK(tok.token_to_id("Ġa") == 6);
  CHECK(tok.token_to_id("<m>") == 10);
  CHECK_FALSE(tok.token_to_id("zz").has_value());
  CHECK(tok.id_to_token(7) == "bc");
  CHECK(tok.is_special(9));
  CHECK_FALSE(tok.is_special(10));
  // Round trip on text the vocabulary covers.
  for (const std::string s : {"abc ab a", " cab  abc", "a<|eos|>b"}) CHECK(tok.decode(tok.encode(s), false) == s);
}

TEST_CASE("HFTokenizer: special tokens from the files, overrides, pad falling back to eos", "[tokenizers][hf]") {
  const auto only_json = verl::HFTokenizer::from_file(fixtures + "/tiny_bpe/tokenizer.json");
  CHECK_THAT(verl::test::error_of<verl::ConfigError>([&] { (void)only_json.eos_token_id(); }),
             Catch::Contains("no eos token"));
  const auto named = verl::HFTokenizer::from_file(fixtures + "/tiny_bpe/tokenizer.json", {.eos_token = "<|eos|>"});
  CHECK(named.eos_token_id() == 8);
  CHECK(named.pad_token_id() == 8);  // verl: pad = eos when there is no pad token
  CHECK_THAT(verl::test::error_of<verl::ConfigError>(
                 [&] { (void)verl::HFTokenizer::from_file(fixtures + "/tiny_bpe/tokenizer.json", {.eos_token = "<nope>"}); }),
             Catch::Contains("eos_token \"<nope>\" is not a token"));
}

TEST_CASE("HFTokenizer: unsupported or malformed tokenizer.json names the JSON path and value", "[tokenizers][hf]") {
  auto j = tiny_json();
  j["normalizer"] = {{"type", "Lowercase"}};
  CHECK_THAT(load_error(j), Catch::Contains("normalizer.type = \"Lowercase\" is not supported"));
  j = tiny_json();
  j["pre_tokenizer"] = {{"type", "Sequence"}, {"pretokenizers", {{{"type", "Metaspace"}}}}};
  CHECK_THAT(load_error(j), Catch::Contains("pre_tokenizer.pretokenizers[0].type = \"Metaspace\""));
  j = tiny_json();
  j["model"]["dropout"] = 0.1;
  CHECK_THAT(load_error(j), Catch::Contains("model.dropout = 0.1"));
  j = tiny_json();
  j["model"]["merges"][2] = "a zz";
  CHECK_THAT(load_error(j), Catch::Contains("model.merges[2]: token \"zz\" is not in model.vocab"));
  j = tiny_json();
  j["model"]["merges"][1] = "c a";  // "ca" is no vocabulary token
  CHECK_THAT(load_error(j), Catch::Contains("merged token \"ca\""));
  j = tiny_json();
  j["model"]["type"] = "WordPiece";
  CHECK_THAT(load_error(j), Catch::Contains("model.type = \"WordPiece\""));
  j = tiny_json();
  j["pre_tokenizer"] = {{"type", "Split"}, {"pattern", {{"Regex", "(unclosed"}}}, {"behavior", "Isolated"}};
  CHECK_THAT(load_error(j), Catch::Contains("pre_tokenizer.pattern.Regex"));
  j = tiny_json();
  j["decoder"] = {{"type", "Metaspace"}};
  CHECK_THAT(load_error(j), Catch::Contains("decoder.type = \"Metaspace\""));
  CHECK_THAT(verl::test::error_of<verl::InputError>([] { (void)verl::HFTokenizer::from_json_string("{oops"); }),
             Catch::Contains("is not valid JSON"));
  const auto tok = verl::HFTokenizer::from_json_string(tiny_json().dump());
  CHECK_THAT(verl::test::error_of<verl::InputError>([&] { (void)tok.encode("ab\xC3"); }),
             Catch::Contains("not valid UTF-8") && Catch::Contains("offset 2"));
}

TEST_CASE("HFTokenizer: ignore_merges looks the whole word up first (Llama-3)", "[tokenizers][hf]") {
  auto j = tiny_json();
  j["model"]["vocab"]["ca"] = 11;  // a word the merges cannot build
  CHECK(verl::HFTokenizer::from_json_string(j.dump()).encode("ca") == Ids{2, 0});
  j["model"]["ignore_merges"] = true;
  CHECK(verl::HFTokenizer::from_json_string(j.dump()).encode("ca") == Ids{11});
}

TEST_CASE("HFTokenizer: concurrent encode from several threads agrees with a serial one", "[tokenizers][hf]") {
  const auto tok = verl::HFTokenizer::from_directory(fixtures + "/tiny_bpe");
  std::vector<std::string> texts;
  for (int i = 0; i < 200; ++i) texts.push_back(std::string(static_cast<std::size_t>(i % 7), 'a') + " abc cab " + std::to_string(i));
  std::vector<Ids> serial, parallel(texts.size());
  for (const auto& t : texts) serial.push_back(tok.encode(t));
  std::vector<std::thread> threads;
  for (int w = 0; w < 4; ++w)
    threads.emplace_back([&, w] {
      for (std::size_t i = static_cast<std::size_t>(w); i < texts.size(); i += 4) parallel[i] = tok.encode(texts[i]);
    });
  for (auto& t : threads) t.join();
  CHECK(parallel == serial);
}

TEST_CASE("NFC and UTF-8 helpers (hand-derived)", "[tokenizers][unicode]") {
  using verl::detail::nfc::normalize;
  CHECK(normalize("e\u0301") == "\u00e9");            // e + combining acute -> é
  CHECK(normalize("\u1100\u1161\u11a8") == "\uac01");  // Hangul L V T -> 각 (algorithmic)
  // a + acute (ccc 230) + dot below (ccc 220): reorder to dot below first, a+dot below -> U+1EA1, which has no
  // composite with acute, so the acute stays.
  CHECK(normalize("a\u0301\u0323") == "\u1ea1\u0301");
  CHECK(normalize("\u2126") == "\u03a9");              // Ohm sign: singleton decomposition to Omega
  CHECK(normalize("plain ascii") == "plain ascii");
  using verl::detail::utf8::lossy;
  CHECK(lossy("a\xE2\x82") == "a\uFFFD");    // truncated 3-byte sequence: one replacement
  CHECK(lossy("\xFF" "b") == "\uFFFD" "b");   // invalid byte
  CHECK(lossy("\xE9t\xC3\xA9") == "\uFFFDt\u00e9");
}

TEST_CASE("chat formats render the templates' text (hand-derived)", "[tokenizers][chat]") {
  using verl::chat::Message;
  const std::vector<Message> conv{{"user", " Hi \n"}, {"assistant", "Hello."}};
  CHECK(verl::chat::apply_chat_template(verl::chat::chatml, conv, true) ==
        "<|im_start|>user\n Hi \n<|im_end|>\n<|im_start|>assistant\nHello.<|im_end|>\n<|im_start|>assistant\n");
  CHECK(verl::chat::apply_chat_template(verl::chat::qwen2, conv).rfind(
            "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n", 0) == 0);
  CHECK(verl::chat::apply_chat_template(verl::chat::qwen2_5, conv).rfind(
            "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n", 0) == 0);
  // Llama-3 strips the content (Jinja's trim): " Hi \n" -> "Hi".
  CHECK(verl::chat::apply_chat_template(verl::chat::Llama3{}, conv, true) ==
        "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant"
        "<|end_header_id|>\n\nHello.<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n");
  CHECK(verl::chat::python_strip("\x1c\u3000 x y\u00a0\t") == "x y");
  CHECK_THAT(verl::test::error_of<verl::InputError>(
                 [] { (void)verl::chat::qwen2_5.render(std::vector<Message>{{"function", "x"}}, false); }),
             Catch::Contains("messages[0].role = \"function\""));
  // A user format: anything with render(messages, add_generation_prompt).
  struct Plain {
    std::string render(std::span<const Message> m, bool g) const {
      std::string out;
      for (const auto& x : m) out += x.role + ": " + x.content + "\n";
      return g ? out + "assistant: " : out;
    }
  };
  CHECK(verl::chat::apply_chat_template(Plain{}, conv, true) == "user:  Hi \n\nassistant: Hello.\nassistant: ");
}

TEST_CASE("batch_encode: padding and truncation sides, masks, prompts' position ids, batch_decode", "[tokenizers][batch]") {
  const auto tok = verl::HFTokenizer::from_directory(fixtures + "/tiny_bpe");  // pad = 9
  const std::vector<std::string> texts{"abc", "ab a", ""};  // [5], [4, 6], []
  auto right = verl::batch_encode(tok, texts);
  CHECK(torch::equal(right.input_ids, torch::tensor({5, 9, 4, 6, 9, 9}, torch::kLong).reshape({3, 2})));
  CHECK(torch::equal(right.attention_mask, torch::tensor({1, 0, 1, 1, 0, 0}, torch::kLong).reshape({3, 2})));
  auto left = verl::batch_encode(tok, texts, {.padding_side = verl::Side::left, .pad_to_multiple_of = 3});
  CHECK(torch::equal(left.input_ids, torch::tensor({9, 9, 5, 9, 4, 6, 9, 9, 9}, torch::kLong).reshape({3, 3})));
  auto cut = verl::batch_encode(tok, texts, {.truncation_side = verl::Side::left, .max_length = 1});
  CHECK(torch::equal(cut.input_ids, torch::tensor({5, 6, 9}, torch::kLong).reshape({3, 1})));
  const auto prompts = verl::encode_prompts(tok, texts);
  prompts.validate();
  // left-padded masks [0,1],[1,1],[0,0]: cumsum-1 clipped at 0 -> [0,0],[0,1],[0,0].
  CHECK(torch::equal(prompts.position_ids, torch::tensor({0, 0, 0, 1, 0, 0}, torch::kLong).reshape({3, 2})));
  CHECK(verl::batch_decode(tok, left.input_ids) == std::vector<std::string>{"abc", "ab a", ""});
  CHECK(verl::batch_decode(tok, right.input_ids, right.attention_mask) == std::vector<std::string>{"abc", "ab a", ""});
  const auto empty = verl::batch_encode(tok, std::vector<std::string>{});
  CHECK(empty.input_ids.sizes() == torch::IntArrayRef({0, 0}));
  CHECK_THAT(verl::test::error_of<verl::ConfigError>([&] { (void)verl::batch_encode(tok, texts, {.max_length = 0}); }),
             Catch::Contains("max_length = 0"));
}

TEST_CASE("SentencePieceTokenizer: loads a model, special ids, round trip", "[tokenizers][sentencepiece]") {
  const verl::SentencePieceTokenizer sp(fixtures + "/sp_bpe.model");
  CHECK(sp.vocab_size() == 600);
  CHECK(sp.eos_token_id() == 2);
  CHECK(sp.pad_token_id() == 2);  // the model has no pad piece
  CHECK(sp.bos_token_id() == 1);
  for (const std::string s : {"Hello world", "Ünïcödé wörds 😀 日本語", "numbers 1 12 123"}) {
    const auto ids = sp.encode(s);
    CHECK_FALSE(ids.empty());
    CHECK(sp.decode(ids) == s);  // identity normalization and byte fallback: lossless
  }
  CHECK(sp.decode(Ids{1, 2}) == "");
  CHECK(sp.decode(Ids{1}, false) == "<s>");
  CHECK(sp.token_to_id("</s>") == 2);
  CHECK_FALSE(sp.token_to_id("no such piece").has_value());
  CHECK_THAT(verl::test::error_of<verl::InputError>([&] { (void)sp.decode(Ids{600}); }), Catch::Contains("ids[0] = 600"));
  CHECK_THAT(verl::test::error_of<verl::InputError>([] { verl::SentencePieceTokenizer bad(fixtures + "/missing.model"); }),
             Catch::Contains("cannot load"));
}
