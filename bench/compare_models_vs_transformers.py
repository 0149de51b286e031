#!/usr/bin/env python3
"""Side-by-side: transformers 5.23.0 vs verl-cpp (bench/bench_models.cpp), same model shapes, same (B,T), float32
on CPU, the same number of threads on both sides, each case in a fresh process on both sides.

Cases (model/mode/B/T) are those bench_models.cpp registers:
  models  small     Llama-shaped, 4 layers x 512, 8 heads / 4 kv heads, intermediate 1408, vocab 32000, untied
          qwen0.5b  Qwen2-shaped, hidden 896, 24 layers, 14 heads / 2 kv heads, intermediate 4864, vocab 151936, tied
  modes   forward        torch.no_grad(): model(ids, mask, pos).logits
          train          logits, cross_entropy(logits[:, :-1], ids[:, 1:]), backward
          logprob        torch.no_grad(): verl 0.7.1 dp_actor's path (no remove-padding, CPU):
                         logits = model(...).logits; logits.div_(temperature); logits[:, -R-1:-1];
                         logprobs_from_logits_v2 (gather - per-row logsumexp), R = T/2
          logprob_entropy  the same plus verl's entropy_from_logits (what dp_actor's compute_log_prob runs
                         for old_log_probs: calculate_entropy=True)
          logprob_train  the same with grad, .mean(), backward
Peak memory, both sides: /proc/self/clear_refs <- 5 resets VmHWM; reported is VmHWM after the case minus VmRSS
before its warm-up iteration (MiB): what the step itself adds on top of the resident model and inputs.
Throughput is reported twice: tokens per wall-clock second, and tokens per second of user + system CPU of the whole
process (getrusage, all threads), which other processes on a shared machine disturb less.
Ratios: throughput verl-cpp / transformers (> 1: verl-cpp faster); memory transformers / verl-cpp (> 1: verl-cpp
uses less).

    cmake --build build --target verl_bench_models
    .venv/bin/python bench/compare_models_vs_transformers.py --bench build/bench/verl_bench_models \
        [--threads 2] [--only small] [--modes forward logprob] [--cases qwen0.5b/logprob/B4/T256] [--repeats 2]
    VERL_BENCH_ITERATIONS=3 (environment, both sides): timed iterations of each 0.5B case (default 1).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

SHAPES = {"small": [(1, 128), (4, 256), (8, 512)], "qwen0.5b": [(1, 128), (4, 256)]}
MODES = ["forward", "train", "logprob", "logprob_entropy", "logprob_train"]


def status_kib(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return -1


def cpu_seconds() -> float:
    """User + system CPU seconds of the whole process (all threads), as getrusage in bench_models.cpp."""
    import resource

    u = resource.getrusage(resource.RUSAGE_SELF)
    return u.ru_utime + u.ru_stime


def make_config(name: str):
    from transformers import LlamaConfig, Qwen2Config

    if name == "small":
        return LlamaConfig(vocab_size=32000, hidden_size=512, intermediate_size=1408, num_hidden_layers=4,
                           num_attention_heads=8, num_key_value_heads=4, max_position_embeddings=2048,
                           rms_norm_eps=1e-6, rope_theta=10000.0, tie_word_embeddings=False)
    return Qwen2Config(vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                       num_attention_heads=14, num_key_value_heads=2, max_position_embeddings=32768,
                       rms_norm_eps=1e-6, rope_theta=1000000.0, tie_word_embeddings=True, use_sliding_window=False)


def logprobs_from_logits_v2(logits, labels):
    """verl 0.7.1 verl/utils/torch_functional.py, float32 branch (the CPU path without flash-attn)."""
    import torch

    logits_labels = torch.gather(logits, dim=-1, index=labels.unsqueeze(-1)).squeeze(-1)
    logsumexp_values = torch.stack([torch.logsumexp(logit, dim=-1) for logit in logits])
    return logits_labels - logsumexp_values


def worker(case: str, threads: int) -> dict:
    """Runs one case in this (fresh) process; returns tokens/s and the peak RSS rise."""
    import torch
    import torch.nn.functional as F
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(threads)
    name, mode, bs, ts = case.split("/")
    b, t = int(bs[1:]), int(ts[1:])
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(make_config(name), attn_implementation="sdpa", dtype=torch.float32)
    v = model.config.vocab_size
    torch.manual_seed(1)
    ids = torch.randint(v, (b, t))
    mask = torch.ones(b, t, dtype=torch.long)
    pos = torch.arange(t).unsqueeze(0).expand(b, t).contiguous()
    r = t // 2
    temperature = 1.0

    def entropy_from_logits(logits):  # verl 0.7.1 verl/utils/torch_functional.py
        pd = torch.nn.functional.softmax(logits, dim=-1)
        return torch.logsumexp(logits, dim=-1) - torch.sum(pd * logits, dim=-1)

    def step():
        if mode in ("forward", "logprob", "logprob_entropy"):
            model.eval()
            with torch.no_grad():
                logits = model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=False).logits
                if mode != "forward":
                    logits.div_(temperature)
                    logits = logits[:, -r - 1 : -1, :]
                    logprobs_from_logits_v2(logits, ids[:, -r:])
                    if mode == "logprob_entropy":
                        entropy_from_logits(logits)
            return
        model.train()
        model.zero_grad(set_to_none=True)
        logits = model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=False).logits
        if mode == "train":
            loss = F.cross_entropy(logits[:, :-1].reshape(-1, v), ids[:, 1:].reshape(-1))
        else:
            logits.div_(temperature)
            logits = logits[:, -r - 1 : -1, :]
            loss = logprobs_from_logits_v2(logits, ids[:, -r:]).mean()
        loss.backward()

    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    rss_before = status_kib("VmRSS")
    step()  # warm-up, as bench_models.cpp
    # Iterations as Google Benchmark runs them there: VERL_BENCH_ITERATIONS (default 1) for the 0.5B model, else
    # until 0.5 s have passed.
    qwen_iterations = max(1, int(os.environ.get("VERL_BENCH_ITERATIONS", "1")))
    iterations, start, cpu_start = 0, time.perf_counter(), cpu_seconds()
    while True:
        step()
        iterations += 1
        elapsed = time.perf_counter() - start
        if (name == "qwen0.5b" and iterations == qwen_iterations) or (name != "qwen0.5b" and elapsed >= 0.5):
            break
    cpu = cpu_seconds() - cpu_start
    return {"tokens_per_s": iterations * b * t / elapsed, "tokens_per_cpu_s": iterations * b * t / cpu,
            "peak_rss_MiB": (status_kib("VmHWM") - rss_before) / 1024.0}


def run_cpp(bench: str, case: str, threads: int) -> dict:
    env = dict(os.environ, VERL_BENCH_THREADS=str(threads))
    out = subprocess.run([bench, f"--benchmark_filter=^{case}(/iterations:[0-9]+)?(/real_time)?$", "--benchmark_format=json"], env=env, check=True,
                         capture_output=True, text=True).stdout
    bm = json.loads(out)["benchmarks"][0]
    return {"tokens_per_s": bm["tokens/s"], "tokens_per_cpu_s": bm["tokens_per_cpu_s"], "peak_rss_MiB": bm["peak_rss_MiB"]}


def run_python(case: str, threads: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--worker", case, "--threads", str(threads)], check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bench", default="build/bench/verl_bench_models")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", nargs="*", default=list(SHAPES), help="models: small qwen0.5b")
    ap.add_argument("--modes", nargs="*", default=MODES)
    ap.add_argument("--cases", nargs="*", help="explicit cases model/mode/B<b>/T<t> (overrides --only/--modes)")
    ap.add_argument("--repeats", type=int, default=1,
                    help="run each side this many times, alternating, and keep the best throughput (shared machines)")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.threads)))
        return 0
    with open("/proc/loadavg") as f:
        load = f.read().split()[:3]
    print(f"threads {args.threads} on both sides; load average at start {' '.join(load)}")
    print("| case | transformers tok/s | verl-cpp tok/s | speed-up | transformers tok/CPU-s | verl-cpp tok/CPU-s | "
          "CPU ratio | transformers peak MiB | verl-cpp peak MiB | memory ratio |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    cases = args.cases or [f"{name}/{mode}/B{b}/T{t}" for name in args.only for mode in args.modes
                           for b, t in SHAPES[name]]
    for case in cases:
        py = cpp = None
        for _ in range(args.repeats):
            p, c = run_python(case, args.threads), run_cpp(args.bench, case, args.threads)
            py = p if py is None or p["tokens_per_s"] > py["tokens_per_s"] else py
            cpp = c if cpp is None or c["tokens_per_s"] > cpp["tokens_per_s"] else cpp
        mem_ratio = py["peak_rss_MiB"] / cpp["peak_rss_MiB"] if cpp["peak_rss_MiB"] > 0 else float("inf")
        print(f"| {case} | {py['tokens_per_s']:.0f} | {cpp['tokens_per_s']:.0f} | "
              f"{cpp['tokens_per_s'] / py['tokens_per_s']:.2f}x | {py['tokens_per_cpu_s']:.0f} | "
              f"{cpp['tokens_per_cpu_s']:.0f} | {cpp['tokens_per_cpu_s'] / py['tokens_per_cpu_s']:.2f}x | {py['peak_rss_MiB']:.0f} | "
              f"{cpp['peak_rss_MiB']:.0f} | {mem_ratio:.2f}x |", flush=True)
    with open("/proc/loadavg") as f:
        print(f"load average at end {' '.join(f.read().split()[:3])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
