#!/usr/bin/env python3
"""Mixed-length rollout workload: verl-cpp's engine (bench/bench_rollout.cpp --workload) vs transformers 5.23.0's
generate with static batching, same weights (saved by transformers, loaded by verl-cpp), float32 on CPU, the same
number of threads.

Workload: P prompts with lengths uniform in [16, 128], n = 8 samples each (GRPO groups), temperature 1.0, and a
long-tailed response length per prompt (lognormal, median 48, clipped to [8, 384]), generated with eos ignored:
random weights never end a response by themselves, so lengths are set per request, as vLLM's
benchmark_throughput does. The 8 samples of a prompt share its length.

Throughput counts only the requested tokens (sum over prompts of n * length) per wall-clock second:
  transformers  static batches of --hf-batch prompts (x n rows) in arrival order; each batch generates
                max(length in batch) tokens (min_new_tokens = max_new_tokens), so shorter rows idle as padding
  engine        continuous batching + prefix sharing (the default engine)
  engine-no-sharing  continuous batching, prefix sharing off (each sample prefills its own prompt copy)
  engine-static the same engine with continuous batching and prefix sharing off, batches of --hf-batch prompts
Ratios are engine / transformers.

    cmake --build build --target verl_bench_rollout
    .venv/bin/python bench/compare_rollout_vs_transformers.py --bench build/bench/verl_bench_rollout [--threads 2]
        [--prompts 16] [--hf-batch 16] [--model small]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time


def make_model(name: str):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    if name == "small":
        cfg = LlamaConfig(vocab_size=32000, hidden_size=512, intermediate_size=1408, num_hidden_layers=4,
                          num_attention_heads=8, num_key_value_heads=4, max_position_embeddings=4096,
                          rms_norm_eps=1e-6, tie_word_embeddings=False)
        return LlamaForCausalLM(cfg)
    if name == "qwen0.5b":
        cfg = Qwen2Config(vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                          num_attention_heads=14, num_key_value_heads=2, max_position_embeddings=32768,
                          rms_norm_eps=1e-6, rope_theta=1000000.0, tie_word_embeddings=True)
        return Qwen2ForCausalLM(cfg)
    raise SystemExit(f"unknown model {name}")


def workload(num_prompts: int, vocab: int, seed: int):
    import numpy as np

    rng = np.random.default_rng(seed)
    prompts = [[int(t) for t in rng.integers(4, vocab, size=int(rng.integers(16, 129)))] for _ in range(num_prompts)]
    lengths = [int(x) for x in np.clip(np.round(rng.lognormal(np.log(48), 0.9, size=num_prompts)), 8, 384)]
    return prompts, lengths


def run_transformers(model, prompts, lengths, n: int, batch_prompts: int) -> float:
    import torch

    model.eval()
    start = time.perf_counter()
    with torch.no_grad():
        for b0 in range(0, len(prompts), batch_prompts):
            chunk = prompts[b0 : b0 + batch_prompts]
            width = max(len(p) for p in chunk)
            ids = torch.zeros((len(chunk), width), dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for i, p in enumerate(chunk):  # left padding, as generate wants for decoder-only models
                ids[i, width - len(p) :] = torch.tensor(p)
                mask[i, width - len(p) :] = 1
            new = max(lengths[b0 : b0 + batch_prompts])
            model.generate(input_ids=ids, attention_mask=mask, do_sample=True, temperature=1.0, top_k=0, top_p=1.0,
                           num_return_sequences=n, max_new_tokens=new, min_new_tokens=new, pad_token_id=0)
    return time.perf_counter() - start


def run_engine(bench: str, model_dir: str, prompts, lengths, n: int, threads: int, **options) -> dict:
    spec = {"model": model_dir, "prompts": prompts, "max_tokens": lengths, "n": n, "seed": 0, "temperature": 1.0,
            "threads": threads, **options}
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(spec, f)
        path = f.name
    try:
        out = subprocess.run([bench, "--workload", path], check=True, capture_output=True, text=True).stdout
    finally:
        os.unlink(path)
    return json.loads(out.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bench", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--hf-batch", type=int, default=16, help="prompts per static batch (x n rows)")
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--model", default="small")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import torch
    import transformers

    torch.set_num_threads(args.threads)
    model = make_model(args.model)
    prompts, lengths = workload(args.prompts, model.config.vocab_size, args.seed)
    useful = args.n * sum(lengths)
    print(f"# transformers {transformers.__version__}, torch {torch.__version__}, threads {args.threads}, "
          f"model {args.model}, {args.prompts} prompts x n={args.n}, lengths {sorted(lengths)}")
    with tempfile.TemporaryDirectory() as d:
        model.save_pretrained(d)
        results = {}
        results["engine"] = run_engine(args.bench, d, prompts, lengths, args.n, args.threads)
        results["engine-no-sharing"] = run_engine(args.bench, d, prompts, lengths, args.n, args.threads,
                                                  prefix_sharing=False)
        static_rows = args.hf_batch * args.n
        results["engine-static"] = run_engine(args.bench, d, prompts, lengths, args.n, args.threads,
                                              continuous_batching=False, prefix_sharing=False,
                                              max_num_seqs=static_rows, max_num_batched_tokens=max(2048, static_rows))
        hf_seconds = run_transformers(model, prompts, lengths, args.n, args.hf_batch)
    rows = [("transformers (static)", hf_seconds, None)]
    rows += [(k, v["seconds"], v) for k, v in results.items()]
    print(f"{'system':<24}{'seconds':>10}{'tokens/s':>12}{'vs transformers':>18}{'peak KV MiB':>14}")
    for name, sec, info in rows:
        kv = f"{info['peak_kv_bytes'] / 2**20:.1f}" if info else "-"
        print(f"{name:<24}{sec:>10.2f}{useful / sec:>12.1f}{hf_seconds / sec:>18.2f}x{kv:>13}")
    e, s = results["engine"], results["engine-no-sharing"]
    print(f"# KV bytes per token {e['kv_bytes_per_token']}; prefill tokens with sharing {e['prefill_tokens']}, "
          f"without {s['prefill_tokens']}; peak KV with sharing {e['peak_kv_bytes'] / 2**20:.1f} MiB, "
          f"without {s['peak_kv_bytes'] / 2**20:.1f} MiB; preemptions {e['preemptions']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
