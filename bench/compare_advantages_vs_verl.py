#!/usr/bin/env python3
"""Side-by-side timing: verl 0.7.1's advantage estimators vs verl-cpp's (include/verl/algos/advantages.hpp).

Both sides get the same inputs, built with the same torch calls and seed as bench/bench_advantages.cpp
(float32, (B,T) in {(64,512), (256,2048), (1024,4096)}, right-padded masks, groups of 8). verl's side is timed
here in Python (best of --repeat calls, as verl's trainer calls them: on CPU tensors, uid strings for
`index`); verl-cpp's side is the Google Benchmark binary's real time (JSON output). Prints the ratio
verl / verl-cpp per function and size.

verl's code is NOT part of this repository; use the scratch venv of tests/golden/generate_advantages.py
(verl==0.7.1 installed --no-deps, torch from the repo's .venv), whose loader this script reuses:

    cmake --build build --target verl_bench_advantages
    /tmp/golden-venv-adv/bin/python bench/compare_advantages_vs_verl.py --bench build/bench/verl_bench_advantages
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "golden"))
from generate_advantages import Config, load_verl  # noqa: E402

SIZES = [(64, 512), (256, 2048), (1024, 4096)]


def make_inputs(b: int, t: int) -> dict:
    torch.manual_seed(0)
    lengths = torch.randint(t // 4, t + 1, (b,))
    mask = (torch.arange(t).unsqueeze(0) < lengths.unsqueeze(1)).long()
    rewards = torch.randn(b, t)
    values = torch.randn(b, t)
    score = torch.randint(0, 2, (b,)).float()
    outcome = torch.zeros(b, t)
    outcome[torch.arange(b), lengths - 1] = score
    index = torch.div(torch.arange(b), 8, rounding_mode="floor")
    baselines = torch.rand(b)
    uids = np.array([f"uid-{int(i)}" for i in index.tolist()], dtype=object)
    return dict(rewards=rewards, values=values, mask=mask, outcome=outcome, uids=uids, baselines=baselines)


def verl_calls(ca) -> dict:
    return {
        "gae": lambda x: ca.compute_gae_advantage_return(x["rewards"], x["values"], x["mask"], 0.99, 0.95),
        "reinforce_plus_plus": lambda x: ca.compute_reinforce_plus_plus_outcome_advantage(
            x["rewards"], x["mask"], config=Config(gamma=0.99)),
        "grpo": lambda x: ca.compute_grpo_outcome_advantage(x["outcome"], x["mask"], x["uids"]),
        "grpo_nostd": lambda x: ca.compute_grpo_outcome_advantage(x["outcome"], x["mask"], x["uids"], 1e-6, False),
        "grpo_passk": lambda x: ca.compute_grpo_passk_outcome_advantage(
            x["outcome"], x["mask"], x["uids"], config=Config(norm_adv_by_std_in_grpo=True)),
        "rloo": lambda x: ca.compute_rloo_outcome_advantage(x["outcome"], x["mask"], x["uids"]),
        "opo": lambda x: ca.compute_opo_outcome_advantage(x["outcome"], x["mask"], x["uids"]),
        "reinforce_plus_plus_baseline": lambda x: ca.compute_reinforce_plus_plus_baseline_outcome_advantage(
            x["outcome"], x["mask"], x["uids"]),
        "remax": lambda x: ca.compute_remax_outcome_advantage(x["outcome"], x["baselines"], x["mask"]),
        "gpg": lambda x: ca.compute_gpg_outcome_advantage(x["outcome"], x["mask"], x["uids"]),
    }


def time_verl(fn, x, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn(x)
        best = min(best, time.perf_counter() - start)
    return best


def time_cpp(bench: Path, min_time: float) -> dict:
    out = subprocess.run([str(bench), "--benchmark_filter=^BM_[a-z_]+/", "--benchmark_format=json",
                          f"--benchmark_min_time={min_time}"], check=True, capture_output=True, text=True).stdout
    times = {}
    for b in json.loads(out)["benchmarks"]:
        name, bb, tt = b["name"].split("/")[:3]
        scale = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}[b["time_unit"]]
        times[(name[3:], int(bb), int(tt))] = b["real_time"] * scale
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bench", type=Path, default=ROOT / "build" / "bench" / "verl_bench_advantages")
    parser.add_argument("--verl", type=Path, default=None, help="verl wheel or source tree (default: installed)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--min-time", type=float, default=0.2)
    parser.add_argument("--only", nargs="*", default=None, help="function names (default: all)")
    args = parser.parse_args()
    ca = load_verl(args.verl)
    calls = verl_calls(ca)
    names = args.only or list(calls)
    cpp = time_cpp(args.bench, args.min_time)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; times are best-of-{args.repeat} (verl) "
          f"and Google Benchmark real time (verl-cpp)")
    print(f"{'function':30s} {'B':>5s} {'T':>5s} {'verl ms':>10s} {'verl-cpp ms':>12s} {'ratio':>8s}")
    for b, t in SIZES:
        x = make_inputs(b, t)
        for name in names:
            with torch.no_grad():
                v = time_verl(calls[name], x, args.repeat)
            c = cpp.get((name, b, t))
            ratio = f"{v / c:8.1f}x" if c else "     n/a"
            print(f"{name:30s} {b:5d} {t:5d} {v * 1e3:10.2f} {(c or float('nan')) * 1e3:12.3f} {ratio}", flush=True)


if __name__ == "__main__":
    main()
