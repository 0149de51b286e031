#!/usr/bin/env python3
"""Side-by-side: the actor's log-prob path as transformers + verl run it in PyTorch vs verl-cpp's
linear_log_probs (bench/bench_log_probs.cpp), same inputs, same shapes, one run.

PyTorch paths timed here, float32 on CPU, temperature 1:
  verl   transformers' lm_head (F.linear, no upcast in transformers 5.x), logits.div_(temperature) as
         verl/workers/actor/dp_actor.py, then verl 0.7.1 verl/utils/torch_functional.py as it runs without
         flash-attn: logprobs_from_logits_v2 (float32: gather minus a per-row logsumexp loop) and
         entropy_from_logits (logsumexp(z) - sum(softmax(z) * z)); re-implemented here from that code.
  torch  the same with one vectorised log_softmax + gather instead of the row loop (the best plain PyTorch).
Wall times are the ratios' basis; process CPU seconds (all threads) are printed too, as a figure steadier on a
shared machine. Modes: fwd (log-probs, no grad), fwd_entropy (log-probs + entropy, no grad), fwdbwd_entropy (forward and
backward of sum(g_lp * log_probs) + sum(g_ent * entropy) w.r.t. hidden and lm_head.weight).

Inputs come from torch.manual_seed(0) with the same draws in the same order as the C++ benchmark (LibTorch and
PyTorch share the CPU generator), so both sides see bit-identical tensors. Peak memory is measured the same way
on both sides: VmHWM after resetting it through /proc/self/clear_refs, minus VmRSS before the step.

    cmake --build build --target verl_bench_log_probs
    .venv/bin/python bench/compare_log_probs_vs_torch.py --bench build/bench/verl_bench_log_probs \
        [--shapes 2048x512x32000 1024x896x151936] [--modes fwd fwdbwd_entropy] [--min-time 0.5]
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import time
from pathlib import Path

import torch
import torch.nn.functional as F

SHAPES = ["2048x512x32000", "1024x896x151936", "4096x896x151936"]
MODES = ["fwd", "fwd_entropy", "fwdbwd_entropy"]
NO_BACKWARD = {"4096x896x151936"}  # forward only at this size (as in bench_log_probs.cpp): memory


def make_inputs(n: int, h: int, v: int):
    torch.manual_seed(0)
    hidden = torch.randn(n, h)
    weight = torch.randn(v, h) / math.sqrt(h)
    targets = torch.randint(0, v, (n,), dtype=torch.long)
    g_lp = torch.randn(n)
    g_ent = torch.randn(n)
    return hidden, weight, targets, g_lp, g_ent


def logprobs_v2_rowloop(logits, labels):
    # verl 0.7.1 logprobs_from_logits_v2, float32/float64 branch: gather minus a logsumexp per row.
    picked = torch.gather(logits, dim=-1, index=labels.unsqueeze(-1)).squeeze(-1)
    lse = torch.stack([torch.logsumexp(row, dim=-1) for row in logits])
    return picked - lse


def logprobs_vectorised(logits, labels):
    return logits.log_softmax(-1).gather(-1, labels.unsqueeze(-1)).squeeze(-1)


def entropy_from_logits(logits):
    # verl 0.7.1 entropy_from_logits.
    pd = torch.softmax(logits, dim=-1)
    return torch.logsumexp(logits, dim=-1) - torch.sum(pd * logits, dim=-1)


def step(variant: str, mode: str, inputs, temperature: float = 1.0):
    hidden, weight, targets, g_lp, g_ent = inputs
    backward = mode == "fwdbwd_entropy"
    if backward:
        hidden = hidden.detach().requires_grad_(True)
        weight = weight.detach().requires_grad_(True)
    with torch.set_grad_enabled(backward):
        logits = F.linear(hidden, weight)  # lm_head
        logits = logits.div(temperature) if backward else logits.div_(temperature)  # dp_actor: div_ (in place)
        logprob = logprobs_v2_rowloop if variant == "verl" else logprobs_vectorised
        lp = logprob(logits, targets)
        ent = entropy_from_logits(logits) if mode != "fwd" else None
        if backward:
            ((lp * g_lp).sum() + (ent * g_ent).sum()).backward()


def status_kb(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1])
    return -1


def timed(fn, min_time: float):
    """Mean wall and process-CPU seconds per call over at least min_time (>= 1 call after a warm-up), and the
    peak MiB of one call."""
    fn()  # warm-up
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        before = status_kb("VmRSS:")
        fn()
        peak = (status_kb("VmHWM:") - before) / 1024.0
    except OSError:
        peak = float("nan")
    n, start, cpu_start = 0, time.perf_counter(), time.process_time()
    while True:
        fn()
        n += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_time:
            return elapsed / n, (time.process_time() - cpu_start) / n, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bench", type=Path, required=True, help="path to verl_bench_log_probs")
    parser.add_argument("--shapes", nargs="*", default=SHAPES, help="NxHxV")
    parser.add_argument("--modes", nargs="*", default=MODES)
    parser.add_argument("--min-time", type=float, default=0.5)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, threads: {torch.get_num_threads()}")
    header = (f"{'mode':15s} {'N x H x V':>16s} {'verl ms':>9s} {'torch ms':>9s} {'ours ms':>9s} "
              f"{'verl/ours':>9s} {'torch/ours':>10s} {'verl MiB':>9s} {'torch MiB':>9s} {'ours MiB':>9s}   "
              f"process CPU s: verl, torch, ours")
    print(header)
    for shape in args.shapes:
        n, h, v = (int(x) for x in shape.split("x"))
        modes = [m for m in args.modes if not (m == "fwdbwd_entropy" and shape in NO_BACKWARD)]
        regex = "|".join(f"^(smoke/)?fused_{m}/N{n}/H{h}/V{v}/" for m in modes)
        out = subprocess.run([str(args.bench), f"--benchmark_filter={regex}", "--benchmark_format=json",
                              f"--benchmark_min_time={args.min_time}"], check=True, capture_output=True, text=True)
        ours = {}
        for r in json.loads(out.stdout)["benchmarks"]:
            scale = {"ms": 1.0, "us": 1e-3, "ns": 1e-6, "s": 1e3}[r["time_unit"]]
            ours[r["name"].removeprefix("smoke/").split("/")[0].removeprefix("fused_")] = (r["real_time"] * scale, r["cpu_time"] * scale,
                                                                    r.get("peak_MiB", float("nan")))
        inputs = make_inputs(n, h, v)
        for mode in modes:
            t_verl, c_verl, m_verl = timed(lambda: step("verl", mode, inputs), args.min_time)
            t_torch, c_torch, m_torch = timed(lambda: step("torch", mode, inputs), args.min_time)
            t_ours, c_ours, m_ours = ours.get(mode, (float("nan"),) * 3)
            print(f"{mode:15s} {shape:>16s} {t_verl * 1e3:9.1f} {t_torch * 1e3:9.1f} {t_ours:9.1f} "
                  f"{t_verl * 1e3 / t_ours:8.2f}x {t_torch * 1e3 / t_ours:9.2f}x {m_verl:9.0f} {m_torch:9.0f} "
                  f"{m_ours:9.0f}   cpu s {c_verl:7.2f} {c_torch:7.2f} {c_ours / 1e3:7.2f}", flush=True)


if __name__ == "__main__":
    main()
