#!/usr/bin/env python3
"""Builds the tokenizer parity fixtures with the reference libraries (nothing is downloaded).

  generate_fixtures.py <out_dir>

For each tokenizer family (GPT-2, Llama-3, Qwen2 pre-tokenizer regexes and special tokens, plus variants that
exercise Split behaviours, add_prefix_space, unk and byte fallback), it TRAINS a small byte-level BPE model
with `tokenizers` (pinned 0.23.3) on tests/parity/tokenizers/corpus.json, saves tokenizer.json (and a
tokenizer_config.json naming the special tokens), then encodes every corpus string with
add_special_tokens=False and writes the ids and the decodes (skip_special_tokens True and False) to
expected.json. It does the same for SentencePiece models trained with `sentencepiece` (0.2.3), renders chat
templates with transformers (5.23.0) apply_chat_template(tokenize=False), and records transformers' batch
encoding with padding and truncation on both sides.

The chat templates below are written here by hand to mirror the published ones (no network access, so the
models' tokenizer_config.json cannot be fetched): ChatML as in Qwen2-7B-Instruct, Qwen2.5-7B-Instruct
(its tool-free branches and the tool role), and Meta-Llama-3-8B-Instruct.

Exit code 77 (CTest skip) when a reference package is missing.
"""
import io
import json
import os
import sys

try:
    import sentencepiece as spm
    import tokenizers
    import transformers
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
except ImportError as e:  # pragma: no cover
    print(f"tokenizer parity fixtures skipped: reference package not installed: {e}")
    sys.exit(77)

HERE = os.path.dirname(os.path.abspath(__file__))

GPT2_SPECIALS = ["<|endoftext|>"]
LLAMA3_SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>",
                   "<|reserved_special_token_0|>"]
QWEN2_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

# The published pre-tokenizer regexes.
LLAMA3_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
                r"\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
               r"\s*[\r\n]+|\s+(?!\S)|\s+")

QWEN2_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")

CHATML_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + "
    "'\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")

QWEN25_TEMPLATE = """{%- if tools %}
    {{- '<|im_start|>system\\n' }}
    {%- if messages[0]['role'] == 'system' %}
        {{- messages[0]['content'] }}
    {%- else %}
        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}
    {%- endif %}
    {{- "\\n\\n# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\nYou are provided with function signatures within <tools></tools> XML tags:\\n<tools>" }}
    {%- for tool in tools %}
        {{- "\\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\\n</tools>\\n\\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\\n<tool_call>\\n{\\"name\\": <function-name>, \\"arguments\\": <args-json-object>}\\n</tool_call><|im_end|>\\n" }}
{%- else %}
    {%- if messages[0]['role'] == 'system' %}
        {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}
    {%- else %}
        {{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}
    {%- endif %}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant" and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role }}
        {%- if message.content %}
            {{- '\\n' + message.content }}
        {%- endif %}
        {%- for tool_call in message.tool_calls %}
            {%- if tool_call.function is defined %}
                {%- set tool_call = tool_call.function %}
            {%- endif %}
            {{- '\\n<tool_call>\\n{"name": "' }}
            {{- tool_call.name }}
            {{- '", "arguments": ' }}
            {{- tool_call.arguments | tojson }}
            {{- '}\\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\\n' }}
    {%- elif message.role == "tool" %}
        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\\n<tool_response>\\n' }}
        {{- message.content }}
        {{- '\\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\\n' }}
{%- endif %}
"""

LLAMA3_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + "
    "message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}"
    "{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}")

CONVERSATIONS = [
    [{"role": "user", "content": "What is 2+2?"}],
    [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Hi"},
     {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "  Count: 1 2 3  \n"}],
    [{"role": "user", "content": "\n\t 日本語 😀 \u00a0"}, {"role": "assistant", "content": ""}],
    [{"role": "system", "content": "sys"}, {"role": "system", "content": "second system"},
     {"role": "user", "content": "q"}],
    [{"role": "user", "content": "weather?"}, {"role": "assistant", "content": "calling"},
     {"role": "tool", "content": "{\"t\": 21}"}, {"role": "tool", "content": "{\"t\": 22}"},
     {"role": "user", "content": "thanks\u2028\u3000"}],
    [{"role": "assistant", "content": "I start"}, {"role": "user", "content": "\x1c\x1d odd whitespace \x85"}],
]


def training_text(corpus):
    base = [s for s in corpus if s]
    extra = [
        "The history of natural language processing generally started in the 1950s, although work can be "
        "found from earlier periods. In 1950, Alan Turing published an article titled Computing Machinery "
        "and Intelligence which proposed what is now called the Turing test as a criterion of intelligence.",
        "Reinforcement learning from human feedback trains a reward model from preference data and then "
        "optimises the policy with proximal policy optimisation; group relative policy optimisation drops "
        "the critic and normalises rewards within a group of samples for the same prompt.",
        "自然语言处理是计算机科学领域与人工智能领域中的一个重要方向。日本語の文章も少し含めます。",
        "Les modèles de langage sont entraînés sur de grands corpus. Die Sprachmodelle werden trainiert.",
        "def train(model, data):\n    for batch in data:\n        loss = model(batch)\n        loss.backward()\n",
    ]
    return (base + extra) * 30


def byte_level_trainer(vocab_size, specials):
    return trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, special_tokens=specials,
                               initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)


def save_config(directory, cfg):
    with open(os.path.join(directory, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(cfg, f, ensure_ascii=False, indent=1)


def expectations(tok, corpus):
    cases = []
    for text in corpus:
        enc = tok.encode(text, add_special_tokens=False)
        cases.append({
            "text": text,
            "ids": enc.ids,
            "decode_skip": tok.decode(enc.ids, skip_special_tokens=True),
            "decode_keep": tok.decode(enc.ids, skip_special_tokens=False),
        })
    return cases


def write_case(out, name, tok, corpus, cfg, rewrite=None, extra=None):
    directory = os.path.join(out, name)
    os.makedirs(directory, exist_ok=True)
    j = json.loads(tok.to_str())
    if rewrite:
        rewrite(j)
    text = json.dumps(j, ensure_ascii=False, indent=1)
    with open(os.path.join(directory, "tokenizer.json"), "w", encoding="utf-8") as f:
        f.write(text)
    tok = Tokenizer.from_str(text)  # the reference encodes from exactly the file the C++ side loads
    save_config(directory, cfg)
    vocab = tok.get_vocab(with_added_tokens=True)
    probe_ids = sorted(set(list(vocab.values())[:50] + [max(vocab.values())]))
    expected = {
        "name": name,
        "tokenizers_version": tokenizers.__version__,
        "vocab_size": max(vocab.values()) + 1,
        "len_vocab": len(vocab),
        "id_to_token": {str(i): tok.id_to_token(i) for i in probe_ids},
        "token_to_id": {t: tok.token_to_id(t) for t in
                        [tok.id_to_token(i) for i in probe_ids] + [a["content"] for a in j["added_tokens"]] +
                        ["caf\u00e9", "not a token"]},
        "eos_token_id": vocab[cfg["eos_token"]],
        "pad_token_id": vocab[cfg.get("pad_token") or cfg["eos_token"]],
        "cases": expectations(tok, corpus),
        # decode of arbitrary id sequences (byte-level pieces that are not valid UTF-8 on their own)
        "decode_only": [{"ids": ids, "skip": tok.decode(ids, skip_special_tokens=True),
                         "keep": tok.decode(ids, skip_special_tokens=False)}
                        for ids in ([0, 1, 2, 3], [v for k, v in sorted(vocab.items())][-7:], list(range(100, 140)))],
    }
    if extra:
        expected.update(extra(tok))
    with open(os.path.join(directory, "expected.json"), "w", encoding="utf-8") as f:
        json.dump(expected, f, ensure_ascii=False)
    return tok


def build_hf(out, corpus):
    train = training_text(corpus)

    # GPT-2: ByteLevel with its own regex; merges written in the "a b" string form.
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(train, byte_level_trainer(700, GPT2_SPECIALS))

    def string_merges(j):
        j["model"]["merges"] = [" ".join(m) if isinstance(m, list) else m for m in j["model"]["merges"]]
    write_case(out, "gpt2", tok, corpus, {"eos_token": "<|endoftext|>", "bos_token": "<|endoftext|>"},
               rewrite=string_merges)

    # GPT-2 with add_prefix_space and extra added tokens (lstrip/rstrip, single_word, normalized).
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True, use_regex=True)
    tok.add_special_tokens([AddedToken("<mask>", lstrip=True, rstrip=True, special=True)])
    tok.add_tokens([AddedToken("[SW]", single_word=True, normalized=False),
                    AddedToken("hello world", normalized=False)])
    write_case(out, "gpt2_prefix_space", tok, corpus, {"eos_token": "<|endoftext|>"})

    # Llama-3: Split(regex, Isolated) + ByteLevel(use_regex=false), ignore_merges, [a, b] merges.
    tok = Tokenizer(models.BPE(ignore_merges=True))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(train, byte_level_trainer(900, LLAMA3_SPECIALS))

    def llama_rewrite(j):
        j["model"]["ignore_merges"] = True
        # Words the merges cannot build but the vocabulary holds: ignore_merges must find them whole.
        vocab = j["model"]["vocab"]
        for word in ["Ġsupercalifragilisticexpialidocious", "Ġantidisestablishmentarianism", "ĠThe", "123"]:
            vocab.setdefault(word, len(vocab) + len(j["added_tokens"]) + 100)
    write_case(out, "llama3", tok, corpus,
               {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"}, rewrite=llama_rewrite)

    # Qwen2: NFC + Split(regex) + ByteLevel; a normalized added token written in NFD must match NFC text.
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(train, byte_level_trainer(900, QWEN2_SPECIALS))
    tok.add_tokens([AddedToken("cafe\u0301", normalized=True), AddedToken("<think>", normalized=False)])
    write_case(out, "qwen2", tok, corpus, {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"})

    # Split behaviours on top of ByteLevel: each behaviour, invert, a literal pattern.
    for behavior, invert, pattern in [("removed", False, Regex(r"\s+")), ("merged_with_previous", False, Regex(r"[,.!?]")),
                                      ("merged_with_next", False, Regex(r"\s")), ("contiguous", False, Regex(r"\p{N}")),
                                      ("isolated", True, Regex(r"\p{L}+")), ("removed", False, " ")]:
        t = Tokenizer.from_str(tok.to_str())
        t.normalizer = None
        t.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(pattern, behavior=behavior, invert=invert),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
        kind = "literal" if isinstance(pattern, str) else "regex"
        write_case(out, f"split_{behavior}_{'invert_' if invert else ''}{kind}", t, corpus,
                   {"eos_token": "<|im_end|>"})

    # Not byte-level: whitespace Split, a small alphabet, unk (fused or not) and byte fallback, no decoder.
    for variant in ["unk", "unk_fused", "byte_fallback"]:
        t = Tokenizer(models.BPE(unk_token="<unk>", fuse_unk=(variant == "unk_fused"),
                                 byte_fallback=(variant == "byte_fallback")))
        t.pre_tokenizer = pre_tokenizers.Split(Regex(r"\s+"), behavior="removed")
        t.train_from_iterator(train, trainers.BpeTrainer(vocab_size=300, special_tokens=["<unk>", "</s>"],
                                                         limit_alphabet=60, show_progress=False))

        def add_bytes(j):
            vocab = j["model"]["vocab"]
            if variant == "byte_fallback":
                for b in range(256):
                    vocab.setdefault(f"<0x{b:02X}>", len(vocab))
        write_case(out, f"bpe_{variant}", t, corpus, {"eos_token": "</s>"}, rewrite=add_bytes)


def build_chat(out, corpus):
    directory = os.path.join(out, "chat")
    os.makedirs(directory, exist_ok=True)
    tok = transformers.PreTrainedTokenizerFast(tokenizer_file=os.path.join(out, "qwen2", "tokenizer.json"),
                                               bos_token="<|begin_of_text|>", eos_token="<|im_end|>")
    cases = []
    for fmt, template in [("chatml", CHATML_TEMPLATE), ("qwen2", QWEN2_TEMPLATE), ("qwen2_5", QWEN25_TEMPLATE),
                          ("llama3", LLAMA3_TEMPLATE)]:
        for conv in CONVERSATIONS:
            for gen in (False, True):
                text = tok.apply_chat_template(conv, chat_template=template, tokenize=False, add_generation_prompt=gen)
                cases.append({"format": fmt, "messages": conv, "add_generation_prompt": gen, "text": text})
    with open(os.path.join(directory, "expected.json"), "w", encoding="utf-8") as f:
        json.dump({"transformers_version": transformers.__version__, "cases": cases}, f, ensure_ascii=False)


def build_batch(out, corpus):
    directory = os.path.join(out, "batch")
    os.makedirs(directory, exist_ok=True)
    tok = transformers.PreTrainedTokenizerFast(tokenizer_file=os.path.join(out, "qwen2", "tokenizer.json"),
                                               eos_token="<|im_end|>", pad_token="<|endoftext|>")
    texts = [corpus[2], corpus[3], corpus[9], corpus[24], "a"]
    cases = []
    for padding_side in ("left", "right"):
        for truncation_side in ("left", "right"):
            for max_length in (None, 6):
                tok.padding_side = padding_side
                tok.truncation_side = truncation_side
                enc = tok(texts, padding="longest", truncation=max_length is not None, max_length=max_length,
                          add_special_tokens=False)
                cases.append({"padding_side": padding_side, "truncation_side": truncation_side,
                              "max_length": max_length, "input_ids": enc["input_ids"],
                              "attention_mask": enc["attention_mask"]})
    with open(os.path.join(directory, "expected.json"), "w", encoding="utf-8") as f:
        json.dump({"texts": texts, "pad_token_id": tok.pad_token_id, "cases": cases}, f, ensure_ascii=False)


def build_sentencepiece(out, corpus):
    train = training_text(corpus)
    for model_type in ("unigram", "bpe"):
        directory = os.path.join(out, f"sp_{model_type}")
        os.makedirs(directory, exist_ok=True)
        buffer = io.BytesIO()
        spm.SentencePieceTrainer.train(sentence_iterator=iter([s for s in train if "\n" not in s]),
                                       model_writer=buffer, vocab_size=700, model_type=model_type, hard_vocab_limit=False,
                                       byte_fallback=True, character_coverage=0.98,
                                       user_defined_symbols=["<|im_start|>", "<|im_end|>"],
                                       minloglevel=2, num_threads=1)
        model = buffer.getvalue()
        with open(os.path.join(directory, "tokenizer.model"), "wb") as f:
            f.write(model)
        sp = spm.SentencePieceProcessor(model_proto=model)
        cases = []
        for text in corpus:
            ids = sp.encode(text)
            cases.append({"text": text, "ids": ids, "decode": sp.decode(ids)})
        with open(os.path.join(directory, "expected.json"), "w", encoding="utf-8") as f:
            json.dump({"sentencepiece_version": spm.__version__, "vocab_size": sp.get_piece_size(),
                       "eos_id": sp.eos_id(), "bos_id": sp.bos_id(), "pad_id": sp.pad_id(), "unk_id": sp.unk_id(),
                       "cases": cases}, f, ensure_ascii=False)


def main():
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(HERE, "corpus.json"), encoding="utf-8") as f:
        corpus = json.load(f)
    build_hf(out, corpus)
    build_chat(out, corpus)
    build_batch(out, corpus)
    build_sentencepiece(out, corpus)
    print(f"tokenizer parity fixtures written to {out} (tokenizers {tokenizers.__version__}, "
          f"transformers {transformers.__version__}, sentencepiece {spm.__version__})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
