#!/usr/bin/env python3
"""Golden vectors for verl-cpp's optimal token baseline (include/verl/algos/optimal_token_baseline.hpp).

Runs verl 0.7.1's `compute_optimal_token_baseline_advantage` and
`compute_multi_turn_optimal_token_baseline_advantage` (verl/trainer/ppo/core_algos.py) on small random inputs
with fixed seeds (values on short binary fractions, so the JSON stays small), in float32 and float64, edge cases included (fully masked rows, singleton groups, interior
mask gaps, a unique longest trajectory for handle_zero_tail, rollout IS weights), and writes
tests/golden/advantages/optimal_token_baseline.json and multi_turn_optimal_token_baseline.json.

Environment, stubs and helpers are those of tests/golden/generate_advantages.py (imported from it); set up the
scratch venv as described there, then regenerate from the repo root:

    /tmp/golden-venv-adv/bin/python tests/golden/generate_optimal_token_baseline.py

Cases: `<dtype>/<kind>` with config {"dtype", "epsilon", "handle_zero_tail", "is_weights"}; a case whose config
holds "raises" records inputs for which verl raises (outputs empty), so the C++ tests check that verl-cpp throws.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from generate_advantages import REFERENCE, group_ids, load_verl, right_padded_mask, uids  # noqa: E402
from golden_io import case, write_golden  # noqa: E402

GENERATOR = "tests/golden/generate_optimal_token_baseline.py"
FILES = {"single": "optimal_token_baseline", "multi": "multi_turn_optimal_token_baseline"}


def rollout_stats(g: torch.Generator, b: int, t: int, dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Old log-probs log(pi) with pi = k/64, and sum_pi_squared = pi^2 + j/4096 <= 1 (short, exact decimals)."""
    pi = torch.randint(1, 64, (b, t), generator=g).to(torch.float64) / 64
    extra = torch.floor(torch.rand(b, t, generator=g, dtype=torch.float64) * (4096 - (pi * 64) ** 2)) / 4096
    return pi.log().to(dtype), (pi * pi + extra).to(dtype)


def quarters(g: torch.Generator, shape: tuple[int, ...], lo: int, hi: int, dtype) -> torch.Tensor:
    """Multiples of 1/4 in [lo/4, hi/4): exact in float32, and short in the JSON."""
    return (torch.randint(lo, hi, shape, generator=g).to(torch.float64) / 4).to(dtype)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--verl", type=Path, default=None, help="verl wheel or source tree (default: installed)")
    parser.add_argument("--out", type=Path, default=HERE / "advantages")
    args = parser.parse_args()
    ca = load_verl(args.verl)
    fns = {"single": ca.compute_optimal_token_baseline_advantage,
           "multi": ca.compute_multi_turn_optimal_token_baseline_advantage}
    files: dict[str, list[dict]] = {}

    def run(which: str, name: str, inputs: dict, cfg: dict) -> None:
        fn = fns[which]
        call = lambda: fn(inputs["token_level_rewards"], inputs["response_mask"], uids(inputs["index"]),  # noqa: E731
                          inputs["old_log_probs"], inputs["sum_pi_squared"], inputs.get("rollout_is_weights"),
                          handle_zero_tail=cfg["handle_zero_tail"], epsilon=cfg["epsilon"])
        if cfg.get("expect_raise"):
            cfg = {k: v for k, v in cfg.items() if k != "expect_raise"}
            try:
                call()
            except (ValueError, AssertionError, RuntimeError, IndexError) as e:
                cfg = {**cfg, "raises": type(e).__name__, "message": str(e)}
                files.setdefault(FILES[which], []).append(case(name, inputs, {}, cfg))
                return
            raise SystemExit(f"{which}/{name}: verl was expected to raise")
        adv, ret = call()
        files.setdefault(FILES[which], []).append(case(name, inputs, {"advantages": adv, "returns": ret}, cfg))

    for dtype in (torch.float32, torch.float64):
        dn = "float32" if dtype == torch.float32 else "float64"
        g = torch.Generator().manual_seed(4321 if dtype == torch.float32 else 8765)
        T = 8

        # A singleton group among groups of 2 and 3, with a full row, an empty row and interior mask gaps;
        # handle_zero_tail with rollout IS weights, and without either.
        sizes = [3, 1, 2]
        b = sum(sizes)
        mask = right_padded_mask(g, b, T, full_row=1, empty_row=2, gap_row=4)
        rewards = quarters(g, (b, T), -8, 9, dtype)
        index = group_ids(g, sizes)
        logp, sum_pi_sq = rollout_stats(g, b, T, dtype)
        is_w = quarters(g, (b, T), 1, 9, dtype)
        base = {"token_level_rewards": rewards, "response_mask": mask, "index": index, "old_log_probs": logp,
                "sum_pi_squared": sum_pi_sq}
        for name, zt, inputs in (("mixed_tail_is", True, {**base, "rollout_is_weights": is_w}),
                                 ("mixed_notail", False, base)):
            cfg = {"dtype": dn, "epsilon": 1e-8, "handle_zero_tail": zt, "is_weights": "rollout_is_weights" in inputs}
            for which in ("single", "multi"):
                run(which, f"{dn}/{name}", inputs, cfg)

        # Bool and float masks; a group whose rows are all fully masked; a group of one valid row and one
        # empty row (single-turn counts the empty row as a member, multi-turn drops it).
        mask = right_padded_mask(g, 6, T, gap_row=2)
        mask[3:5] = 0
        mask[5, 0] = 1
        rewards = quarters(g, (6, T), -8, 9, dtype)
        logp, sum_pi_sq = rollout_stats(g, 6, T, dtype)
        for name, m, idx in (("boolmask", mask.bool(), torch.tensor([7, 7, 7, 8, 8, 9])),
                             ("floatmask", mask.to(dtype), torch.tensor([7, 7, 8, 8, 9, 9]))):
            inputs = {"token_level_rewards": rewards, "response_mask": m, "index": idx, "old_log_probs": logp,
                      "sum_pi_squared": sum_pi_sq}
            cfg = {"dtype": dn, "epsilon": 1e-8, "handle_zero_tail": True, "is_weights": False}
            for which in ("single", "multi"):
                run(which, f"{dn}/{name}", inputs, cfg)

        # Ties for the longest trajectory: no zero tail.
        mask = torch.tensor([[1] * 5 + [0] * 3, [1] * 5 + [0] * 3, [1] * 3 + [0] * 5])
        rewards = quarters(g, (3, T), -8, 9, dtype)
        logp, sum_pi_sq = rollout_stats(g, 3, T, dtype)
        inputs = {"token_level_rewards": rewards, "response_mask": mask, "index": torch.tensor([1, 1, 1]),
                  "old_log_probs": logp, "sum_pi_squared": sum_pi_sq}
        for which in ("single", "multi"):
            run(which, f"{dn}/tied_longest", inputs, {"dtype": dn, "epsilon": 1e-8, "handle_zero_tail": True,
                                                      "is_weights": False})

        # Inputs where verl raises: a short index (IndexError), mismatched old_log_probs (RuntimeError), and for
        # the multi-turn variant a non-0/1 float mask (RuntimeError on the compaction).
        small = {"token_level_rewards": quarters(g, (2, 4), -8, 9, dtype), "response_mask": torch.ones(2, 4,
                 dtype=torch.long), "index": torch.tensor([1, 1]), "old_log_probs": torch.full((2, 4), -1.0,
                 dtype=dtype), "sum_pi_squared": torch.full((2, 4), 0.5, dtype=dtype)}
        raise_cfg = {"dtype": dn, "epsilon": 1e-8, "handle_zero_tail": True, "is_weights": False,
                     "expect_raise": True}
        for which in ("single", "multi"):
            run(which, f"{dn}/short_index", {**small, "index": torch.tensor([1])}, raise_cfg)
            run(which, f"{dn}/old_log_probs_shape", {**small, "old_log_probs": small["old_log_probs"][:, :3]},
                raise_cfg)
        two = small["response_mask"].to(dtype)
        two[0, 0] = 2.0
        run("multi", f"{dn}/nonbinary_mask", {**small, "response_mask": two}, raise_cfg)

    for fn, cases in files.items():
        write_golden(args.out / f"{fn}.json", REFERENCE, GENERATOR, cases)
        print(f"{fn}: {len(cases)} cases -> {args.out / (fn + '.json')}")


if __name__ == "__main__":
    main()
