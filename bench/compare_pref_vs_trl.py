#!/usr/bin/env python3
"""Side-by-side: TRL's preference losses (Python) vs verl-cpp's verl::pref (bench/bench_pref_losses.cpp).

Both sides build identical inputs (torch.manual_seed(0), then the same draws from the same CPU generator, see the
header of bench/bench_pref_losses.cpp) and run forward only, float32, on the CPU. TRL's functions are called
unbound with a minimal stand-in `self`, as tests/golden/generate_pref.py does. verl-cpp's times are Google
Benchmark's real time per iteration; TRL's are the best of --repeats timing loops. Prints one row per function
and size with the ratio TRL / verl-cpp (> 1: verl-cpp is faster).

TRL is NOT part of this repository. Use the golden-vector venv (see tests/golden/generate_pref.py):

    python3 -m venv /tmp/golden-venv-pref
    echo /work/main/.venv/lib/python3.11/site-packages \\
        > /tmp/golden-venv-pref/lib/python3.11/site-packages/torch_from_repo.pth
    /tmp/golden-venv-pref/bin/pip install trl==0.28.0 transformers==5.2.0
    cmake --build build-pref -j2 --target verl_bench_pref_losses
    /tmp/golden-venv-pref/bin/python bench/compare_pref_vs_trl.py --bench build-pref/bench/verl_bench_pref_losses

Both sides run with one intra-op thread (torch.set_num_threads(1); OMP_NUM_THREADS=1 for the binary) unless
--threads says otherwise: on a small shared machine, waking ATen's thread pool for a 64-element tensor costs
milliseconds and swamps both measurements.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
import warnings
from types import SimpleNamespace

import torch

warnings.filterwarnings("ignore")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")

from transformers.loss.loss_utils import ForCausalLMLoss  # noqa: E402
from trl.experimental.cpo.cpo_trainer import CPOTrainer  # noqa: E402
from trl.experimental.kto.kto_trainer import KTOTrainer  # noqa: E402
from trl.experimental.orpo.orpo_trainer import ORPOTrainer  # noqa: E402
from trl.trainer.dpo_config import FDivergenceConstants, FDivergenceType  # noqa: E402
from trl.trainer.dpo_trainer import DPOTrainer  # noqa: E402

ACCEL = SimpleNamespace(device=torch.device("cpu"), gather_for_metrics=lambda t: t)
DPO_TYPES = ["sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "sppo_hard", "aot", "aot_unpaired",
             "apo_zero", "apo_down", "discopop"]
SIZES = [64, 256, 1024]
SFT_SIZES = [(64, 512), (256, 2048), (1024, 4096)]


def best_time(fn, repeats: int, min_time: float) -> float:
    """Best mean seconds per call over `repeats` loops of at least `min_time` seconds each."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        n, start = 0, time.perf_counter()
        while True:
            fn()
            n += 1
            elapsed = time.perf_counter() - start
            if elapsed >= min_time:
                break
        best = min(best, elapsed / n)
    return best


def trl_cases():
    """Yields (benchmark name, callable) with the inputs bench_pref_losses.cpp builds."""
    for t in DPO_TYPES:
        for B in SIZES:
            torch.manual_seed(0)
            pc, pr, rc, rr = (-torch.rand(B) * 20 for _ in range(4))
            me = SimpleNamespace(accelerator=ACCEL, beta=0.1, label_smoothing=0.0, reference_free=False,
                                 loss_type=[t], f_divergence_type=FDivergenceType.REVERSE_KL,
                                 f_divergence_params={FDivergenceConstants.ALPHA_DIVERGENCE_COEF_KEY: 1.0},
                                 args=SimpleNamespace(discopop_tau=0.05))
            yield f"BM_dpo/{t}/{B}", (lambda me=me, a=(pc, pr, rc, rr), t=t: DPOTrainer.dpo_loss(me, *a, loss_type=t))
    for t in ["kto", "apo_zero_unpaired"]:
        for B in SIZES:
            torch.manual_seed(0)
            pc, pr, pkl = -torch.rand(B // 2) * 20, -torch.rand(B // 2) * 20, -torch.rand(B) * 20
            rc, rr, rkl = -torch.rand(B // 2) * 20, -torch.rand(B // 2) * 20, -torch.rand(B) * 20
            me = SimpleNamespace(accelerator=ACCEL, calculate_KL=t == "kto", beta=0.1, loss_type=t,
                                 desirable_weight=1.0, undesirable_weight=1.0)
            yield f"BM_kto/{t}/{B}", (lambda me=me, a=(pc, pr, pkl, rc, rr, rkl): KTOTrainer.kto_loss(me, *a))
    for B in SIZES:
        torch.manual_seed(0)
        pc, pr = -(torch.rand(B) * 3 + 0.05), -(torch.rand(B) * 3 + 0.05)
        me = SimpleNamespace(accelerator=ACCEL, loss_type="simpo", beta=2.0, label_smoothing=0.0, simpo_gamma=0.5,
                             alpha=0.0)
        yield f"BM_simpo/{B}", (lambda me=me, a=(pc, pr): CPOTrainer.cpo_loss(me, *a))
    for B in SIZES:
        torch.manual_seed(0)
        pc, pr = -(torch.rand(B) * 3 + 0.05), -(torch.rand(B) * 3 + 0.05)
        me = SimpleNamespace(accelerator=ACCEL, beta=0.1)
        yield f"BM_orpo/{B}", (lambda me=me, a=(pc, pr): ORPOTrainer.odds_ratio_loss(me, *a))
    for B, T in SFT_SIZES:
        torch.manual_seed(0)
        V = 32
        logits, labels = torch.randn(B, T, V), torch.randint(0, V, (B, T))
        fn = (lambda x=logits, y=labels, V=V: ForCausalLMLoss(x, y, V))
        yield f"BM_sft/reference/{B}/{T}", fn
        yield f"BM_sft/fused/{B}/{T}", fn


def run_ours(binary: str, threads: int, min_time: float) -> dict[str, float]:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    out = subprocess.run([binary, "--benchmark_filter=^BM_(dpo|kto|simpo|orpo|sft)/", "--benchmark_format=json",
                          f"--benchmark_min_time={min_time}"], env=env, check=True, capture_output=True, text=True)
    scale = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}
    result = {}
    for b in json.loads(out.stdout)["benchmarks"]:
        name = b["name"].removesuffix("/real_time")
        result[name] = b["real_time"] * scale[b["time_unit"]]
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bench", required=True, help="path to the verl_bench_pref_losses binary")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--min-time", type=float, default=0.2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    ours = run_ours(args.bench, args.threads, args.min_time)
    print(f"{'function':40s} {'TRL (us)':>12s} {'verl-cpp (us)':>14s} {'ratio':>8s}")
    worst = float("inf")
    for name, fn in trl_cases():
        if name not in ours:
            print(f"{name:40s} missing from the benchmark binary")
            continue
        t = best_time(fn, args.repeats, args.min_time)
        ratio = t / ours[name]
        worst = min(worst, ratio)
        print(f"{name:40s} {t * 1e6:12.1f} {ours[name] * 1e6:14.1f} {ratio:7.2f}x")
    print(f"minimum ratio: {worst:.2f}x")


if __name__ == "__main__":
    main()
