#!/usr/bin/env python3
"""Side-by-side: verl's get_seqlen_balanced_partitions vs verl-cpp's (include/verl/core/partition.hpp).

Both run on the same random sequence-length lists; the script reports the mean / max spread (max - min of the
partition sums) of each, how often each wins, and the time per call.

verl's code is NOT part of this repository. Fetch the wheel into a scratch directory outside the repo:

    /work/main/.venv/bin/pip download verl --no-deps -d /tmp/verl_dl      # e.g. verl-0.9.1-py3-none-any.whl

and pass it with --verl (the wheel itself, or a directory holding verl/utils/seqlen_balancing.py). Only that
one file is loaded, read straight out of the wheel; the verl modules it imports at the top (verl.protocol,
verl.utils.tensordict_utils, verl.utils.device) are replaced by empty stubs, since karmarkar_karp and
get_seqlen_balanced_partitions do not use them. It imports torch, so run it with the repo's .venv python:

    cmake --build build --target verl_bench_packing_partition
    .venv/bin/python bench/compare_partition_vs_verl.py --verl /tmp/verl_dl/verl-0.9.1-py3-none-any.whl \\
        --bench build/bench/verl_bench_packing_partition --cases 100 --n 1024 --k 8 16

verl-cpp's side is the benchmark binary's `--partition-cases` mode (cases on stdin, one JSON line each out).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import random
import statistics
import subprocess
import sys
import time
import types
import zipfile
from pathlib import Path

MODULE = "verl/utils/seqlen_balancing.py"


def load_verl_seqlen_balancing(where: Path) -> types.ModuleType:
    """Loads verl/utils/seqlen_balancing.py alone from a wheel or a source tree, with stubbed verl imports."""
    stubs = {
        "verl": {},
        "verl.protocol": {"DataProto": object},
        "verl.utils": {},
        "verl.utils.tensordict_utils": {},
        "verl.utils.device": {"get_device_name": lambda: "cpu"},
    }
    for name, attrs in stubs.items():
        module = types.ModuleType(name)
        module.__dict__.update(attrs)
        sys.modules.setdefault(name, module)
    if where.is_file():
        with zipfile.ZipFile(where) as wheel:
            source = wheel.read(MODULE).decode()
        origin = f"{where}!{MODULE}"
    else:
        origin = str(where / MODULE)
        source = Path(origin).read_text()
    module = types.ModuleType("verl_seqlen_balancing")
    module.__file__ = origin
    exec(compile(source, origin, "exec"), module.__dict__)  # noqa: S102 - the user-supplied verl source
    return module


def make_cases(n: int, ks: list[int], count: int, seed: int, dist: str) -> list[tuple[int, list[int]]]:
    rng = random.Random(seed)
    cases = []
    for k in ks:
        for _ in range(count):
            if dist == "uniform":  # response lengths uniform in [1, 4096]
                seqlens = [rng.randint(1, 4096) for _ in range(n)]
            else:  # long tail: prompt 64..1024 + log-normal response capped at 8192
                seqlens = [rng.randint(64, 1024) + min(8192, int(rng.lognormvariate(6.5, 1.0))) for _ in range(n)]
            cases.append((k, seqlens))
    return cases


def spread(seqlens: list[int], partitions: list[list[int]]) -> int:
    sums = [sum(seqlens[i] for i in p) for p in partitions]
    return max(sums) - min(sums)


def check_valid(seqlens: list[int], partitions: list[list[int]], k: int) -> None:
    flat = sorted(i for p in partitions for i in p)
    assert flat == list(range(len(seqlens))), "not a partition of the items"
    assert len(partitions) == k and all(len(p) == len(seqlens) // k for p in partitions), "unequal sizes"
    assert all(p == sorted(p) for p in partitions), "indices not sorted within a partition"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--verl", type=Path, required=True, help="verl wheel, or a directory with verl/utils/")
    parser.add_argument("--bench", type=Path, default=Path("build/bench/verl_bench_packing_partition"))
    parser.add_argument("--cases", type=int, default=100, help="random cases per k")
    parser.add_argument("--n", type=int, default=1024, help="items per case")
    parser.add_argument("--k", type=int, nargs="+", default=[8, 16], help="numbers of partitions")
    parser.add_argument("--dist", choices=["uniform", "longtail", "both"], default="both")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--save", type=Path, help="also write the cases here (the --partition-cases format)")
    args = parser.parse_args()

    verl = load_verl_seqlen_balancing(args.verl)
    print(f"verl module: {verl.__file__}")
    dists = ["uniform", "longtail"] if args.dist == "both" else [args.dist]
    print(f"{'dist':9} {'k':>3} {'cases':>5} | {'verl mean':>10} {'verl max':>9} {'verl ms':>8} | "
          f"{'ours mean':>10} {'ours max':>9} {'ours ms':>8} | {'our KK mean':>11} {'KK sp==verl':>11} | "
          f"{'ours<verl':>9} {'ours==verl':>10} {'ours>verl':>9}")
    for dist in dists:
        cases = make_cases(args.n, args.k, args.cases, args.seed, dist)
        lines = "".join(f"{k} 1 {len(s)} {' '.join(map(str, s))}\n" for k, s in cases)
        if args.save:
            args.save.with_suffix(f".{dist}.txt").write_text(lines)
        run = subprocess.run([str(args.bench), "--partition-cases"], input=lines, capture_output=True, text=True,
                             check=True)
        ours = [json.loads(line) for line in run.stdout.splitlines()]
        assert len(ours) == len(cases)
        for k in args.k:
            rows = [(s, o) for (kk, s), o in zip(cases, ours) if kk == k]
            verl_spreads, verl_seconds, our_spreads, kk_spreads, kk_same = [], [], [], [], 0
            for seqlens, o in rows:
                t0 = time.perf_counter()
                vp = verl.get_seqlen_balanced_partitions(seqlens, k, True)
                verl_seconds.append(time.perf_counter() - t0)
                check_valid(seqlens, o["partitions"], k)
                verl_spreads.append(spread(seqlens, vp))
                our_spreads.append(spread(seqlens, o["partitions"]))
                assert our_spreads[-1] == o["spread"]
                kk_spreads.append(o["kk_spread"])
                kk_same += o["kk_spread"] == verl_spreads[-1]
            wins = sum(a < b for a, b in zip(our_spreads, verl_spreads))
            ties = sum(a == b for a, b in zip(our_spreads, verl_spreads))
            losses = sum(a > b for a, b in zip(our_spreads, verl_spreads))
            our_ms = statistics.mean(o["seconds"] for _, o in rows) * 1e3
            print(f"{dist:9} {k:>3} {len(rows):>5} | {statistics.mean(verl_spreads):>10.2f} {max(verl_spreads):>9} "
                  f"{statistics.mean(verl_seconds) * 1e3:>8.2f} | {statistics.mean(our_spreads):>10.2f} "
                  f"{max(our_spreads):>9} {our_ms:>8.3f} | {statistics.mean(kk_spreads):>11.2f} "
                  f"{kk_same:>11} | {wins:>9} {ties:>10} {losses:>9}")
    print("spread = max - min of the partition sums (tokens); 'our KK' = karmarkar_karp_partitions (no refinement);"
          " KK sp==verl counts cases where its spread equals verl's.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
