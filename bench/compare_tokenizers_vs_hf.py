#!/usr/bin/env python3
"""Encode throughput of the Hugging Face tokenizers library (Rust) on the same corpus and tokenizers as
bench/bench_tokenizers.cpp, for a side-by-side with verl::HFTokenizer.

  .venv/bin/python bench/compare_tokenizers_vs_hf.py build-tok/tests/parity/tokenizers/fixtures

Both sides encode one string at a time on one thread (encode_batch would use Rust's thread pool).
"""
import json
import os
import sys
import time

from tokenizers import Tokenizer

HERE = os.path.dirname(os.path.abspath(__file__))


def corpus(target_bytes):
    with open(os.path.join(HERE, "..", "tests", "parity", "tokenizers", "corpus.json"), encoding="utf-8") as f:
        strings = json.load(f)
    out, size, rnd = [], 0, 0
    while size < target_bytes:
        for s in strings:
            out.append(f"{s} {rnd * 7919 % 100000}")
            size += len(out[-1].encode("utf-8"))
        rnd += 1
    return out, size


def main():
    fixtures = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", "build-tok", "tests", "parity",
                                                                   "tokenizers", "fixtures")
    texts, size = corpus(1_000_000)
    for name in ("qwen2", "llama3", "gpt2"):
        tok = Tokenizer.from_file(os.path.join(fixtures, name, "tokenizer.json"))
        for t in texts[:1000]:
            tok.encode(t, add_special_tokens=False)  # warm the cache as the C++ benchmark's iterations do
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            for t in texts:
                tok.encode(t, add_special_tokens=False)
            best = min(best, time.perf_counter() - start)
        print(f"tokenizers {name}: {size / best / 1e6:.1f} MB/s ({size} bytes, best of 3)")


if __name__ == "__main__":
    main()
