#!/usr/bin/env python3
"""Side-by-side: verl 0.7.1's loss functions vs verl-cpp's (bench/bench_losses.cpp), same inputs, same sizes.

For each function and (B,T) in {(64,512), (256,2048), (1024,4096)} it times verl's Python function on the inputs
bench_losses.cpp builds (torch.manual_seed(0), then the same draws in the same order, so the tensors are
bit-identical: LibTorch and PyTorch share the CPU generator), under torch.no_grad, float32, response_mask int64,
and prints verl's time, ours (from the benchmark binary's JSON output) and the ratio verl / ours.

verl is loaded exactly as tests/golden/generate_losses.py loads it (its two source files, heavy imports stubbed),
so run it with the scratch venv described there:

    cmake --build build --target verl_bench_losses
    /tmp/golden-venv-loss/bin/python bench/compare_losses_vs_verl.py --bench build/bench/verl_bench_losses \
        [--verl /tmp/verl_dl/verl-0.7.1-py3-none-any.whl] [--sizes 64x512 256x2048] [--only vanilla gspo]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "golden"))
from generate_losses import ActorConfig, load_verl  # noqa: E402


def make_inputs(b: int, t: int):
    torch.manual_seed(0)
    old = -torch.rand(b, t) * 2
    lp = old + torch.randn(b, t) * 0.3
    adv = torch.randn(b, t)
    mask = (torch.rand(b, t) > 0.1).long()
    return old, lp, adv, mask


def make_entropy_inputs(b: int, t: int):
    """bench_losses.cpp's entropy inputs: (B, T/8, V=64) logits, an all-ones int64 mask."""
    torch.manual_seed(0)
    logits = torch.randn(b, t // 8, 64)
    mask = torch.ones(b, t // 8, dtype=torch.long)
    return logits, mask


def verl_functions(verl, verl_f):
    cfg = ActorConfig(clip_ratio_low=0.2, clip_ratio_high=0.28)

    def policy(name):
        fn = verl.get_policy_loss_fn(name)
        return lambda old, lp, adv, mask: fn(old, lp, adv, mask, "token-mean", cfg)

    return {
        "agg_loss_token_mean": lambda old, lp, adv, mask: verl.agg_loss(lp, mask, "token-mean").item(),
        "agg_loss_seq_mean_token_mean": lambda old, lp, adv, mask: verl.agg_loss(lp, mask, "seq-mean-token-mean").item(),
        "vanilla": policy("vanilla"), "gspo": policy("gspo"), "sapo": policy("sapo"), "gpg": policy("gpg"),
        "clip_cov": policy("clip_cov"), "kl_cov": policy("kl_cov"), "geo_mean": policy("geo_mean"),
        "cispo": policy("cispo"),
        "value_loss": lambda old, lp, adv, mask: verl.compute_value_loss(lp, adv, old, mask, 0.5)[0].item(),
        "kl_low_var_kl": lambda old, lp, adv, mask: verl.kl_penalty(lp, old, "low_var_kl"),
        "kl_k1": lambda old, lp, adv, mask: verl.kl_penalty(lp, old, "kl"),
        "compute_rewards": lambda old, lp, adv, mask: verl.compute_rewards(adv, lp, old, 0.001),
        # These two take make_entropy_inputs' (logits, mask); ours is compute_entropy_loss without / with chunks.
        "entropy": lambda logits, mask: verl.compute_entropy_loss(logits, mask, "token-mean").item(),
        "entropy_chunked": lambda logits, mask: verl.agg_loss(
            verl_f.entropy_from_logits_with_chunking(logits.reshape(-1, logits.size(-1)), 2048).view(mask.shape),
            mask, "token-mean").item(),
    }


def time_call(fn, args, min_time: float) -> float:
    fn(*args)  # warm-up
    n, start = 0, time.perf_counter()
    while True:
        fn(*args)
        n += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_time and n >= 3:
            return elapsed / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bench", type=Path, required=True, help="path to verl_bench_losses")
    parser.add_argument("--verl", type=Path, default=None)
    parser.add_argument("--sizes", nargs="*", default=["64x512", "256x2048", "1024x4096"])
    parser.add_argument("--only", nargs="*", default=None)
    parser.add_argument("--min-time", type=float, default=0.5)
    args = parser.parse_args()
    verl_f, verl = load_verl(args.verl)
    fns = verl_functions(verl, verl_f)
    names = args.only or list(fns)
    print(f"torch threads: {torch.get_num_threads()}")
    print(f"{'function':32s} {'B x T':>10s} {'verl ms':>10s} {'ours ms':>10s} {'ratio':>7s}")
    for size in args.sizes:
        b, t = (int(x) for x in size.split("x"))
        regex = "|".join(f"^{n}/B{b}/T{t}$" for n in names)
        out = subprocess.run([str(args.bench), f"--benchmark_filter={regex}", "--benchmark_format=json",
                              f"--benchmark_min_time={args.min_time}"], check=True, capture_output=True, text=True)
        ours = {r["name"].split("/")[0]: r["real_time"] / 1000.0 for r in json.loads(out.stdout)["benchmarks"]}
        inputs = make_inputs(b, t)
        entropy_inputs = make_entropy_inputs(b, t)
        with torch.no_grad():
            for name in names:
                t_verl = time_call(fns[name], entropy_inputs if name.startswith("entropy") else inputs,
                                   args.min_time) * 1000
                t_ours = ours.get(name, float("nan"))
                print(f"{name:32s} {size:>10s} {t_verl:10.3f} {t_ours:10.3f} {t_verl / t_ours:7.2f}x", flush=True)


if __name__ == "__main__":
    main()
