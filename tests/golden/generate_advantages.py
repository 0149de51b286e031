#!/usr/bin/env python3
"""Golden vectors for verl-cpp's advantage estimators (include/verl/algos/advantages.hpp).

Runs verl 0.7.1's own functions from verl/trainer/ppo/core_algos.py (with verl/utils/torch_functional.py for
masked_whiten) on small random inputs with fixed seeds, in float32 and float64, edge cases included, and writes
tests/golden/advantages/<function>.json in the format of tests/golden/golden_io.py.

One-time setup of a scratch venv outside the repo (verl without its dependencies; torch comes from the repo's
.venv through a .pth file, so the golden vectors are produced by the same LibTorch the C++ tests link):

    python3 -m venv /tmp/golden-venv-adv
    echo /work/main/.venv/lib/python3.11/site-packages \\
        > /tmp/golden-venv-adv/lib/python3.11/site-packages/torch_from_repo.pth
    /tmp/golden-venv-adv/bin/pip install verl==0.7.1 --no-deps numpy

Regenerate (from the repo root):

    /tmp/golden-venv-adv/bin/python tests/golden/generate_advantages.py

Only the two verl files above are executed, read from the installed package (or from a wheel / source tree
given with --verl); the heavy modules they import at the top (omegaconf, tensordict, transformers, verl's
config and device helpers) are replaced by empty stubs, since the estimators do not use them.

Cases: `<dtype>/<kind>` with config {"dtype", ...}; a case whose config holds "raises" records inputs for
which verl raises (outputs empty), so the C++ tests check that verl-cpp throws there too.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import sys
import types
import zipfile
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from golden_io import case, write_golden  # noqa: E402

VERL_VERSION = "0.7.1"
REFERENCE = f"verl {VERL_VERSION} (PyPI), verl/trainer/ppo/core_algos.py"
GENERATOR = "tests/golden/generate_advantages.py"


def _read(where: Path | None, rel: str) -> tuple[str, str]:
    if where is None:
        dist = importlib.metadata.distribution("verl")
        if dist.version != VERL_VERSION:
            raise SystemExit(f"installed verl is {dist.version}, expected {VERL_VERSION}")
        path = Path(dist.locate_file(rel))
        return path.read_text(), str(path)
    if where.is_file():
        with zipfile.ZipFile(where) as wheel:
            return wheel.read(rel).decode(), f"{where}!{rel}"
    return (where / rel).read_text(), str(where / rel)


def load_verl(where: Path | None) -> types.ModuleType:
    """verl's core_algos with verl_F = the real torch_functional, every other import stubbed."""

    class _Anything:  # a stand-in class for type annotations and isinstance checks
        pass

    def _deprecated(*_a, **_k):
        return lambda f: f

    stubs = {
        "omegaconf": {"DictConfig": _Anything},
        "tensordict": {"TensorDict": _Anything},
        "transformers": {"PreTrainedTokenizer": _Anything},
        "verl": {},
        "verl.utils": {"as_torch_index": None, "group_mean_std": None},
        "verl.utils.device": {"get_device_name": lambda: "cpu", "get_torch_device": lambda: torch.cpu},
        "verl.utils.import_utils": {"deprecated": _deprecated},
        "verl.trainer": {},
        "verl.trainer.config": {"AlgoConfig": _Anything},
        "verl.workers": {},
        "verl.workers.config": {"ActorConfig": _Anything},
    }
    for name, attrs in stubs.items():
        module = types.ModuleType(name)
        module.__dict__.update(attrs)
        module.__path__ = []  # a package, so that submodules resolve through sys.modules
        sys.modules[name] = module

    def exec_module(name: str, rel: str) -> types.ModuleType:
        source, origin = _read(where, rel)
        module = types.ModuleType(name)
        module.__file__ = origin
        sys.modules[name] = module
        exec(compile(source, origin, "exec"), module.__dict__)
        return module

    verl_f = exec_module("verl.utils.torch_functional", "verl/utils/torch_functional.py")
    sys.modules["verl.utils"].torch_functional = verl_f
    return exec_module("verl.trainer.ppo.core_algos", "verl/trainer/ppo/core_algos.py")


class Config(dict):
    """What the estimators read from verl's AlgoConfig: attributes and .get()."""

    def __getattr__(self, key):
        return self[key]


def uids(index: torch.Tensor) -> np.ndarray:
    """verl's `index`: a numpy array of uid strings (here derived from the int64 group ids)."""
    return np.array([f"uid-{int(i)}" for i in index.tolist()], dtype=object)


def right_padded_mask(g: torch.Generator, b: int, t: int, *, full_row: int | None = None,
                      empty_row: int | None = None, gap_row: int | None = None) -> torch.Tensor:
    lengths = torch.randint(1, t + 1, (b,), generator=g)
    mask = (torch.arange(t).unsqueeze(0) < lengths.unsqueeze(1)).long()  # (B,T)
    if full_row is not None:
        mask[full_row] = 1
    if empty_row is not None:
        mask[empty_row] = 0
    if gap_row is not None:  # interior gaps: tokens masked out in the middle of the response (multi-turn)
        mask[gap_row] = torch.tensor([1, 1, 0, 0, 1, 0, 1, 1] + [0] * (t - 8))
    return mask


def group_ids(g: torch.Generator, sizes: list[int]) -> torch.Tensor:
    ids = torch.cat([torch.full((n,), 100 + 7 * k, dtype=torch.long) for k, n in enumerate(sizes)])
    return ids[torch.randperm(len(ids), generator=g)]


def outcome_rewards(g: torch.Generator, mask: torch.Tensor, dtype, kind: str) -> torch.Tensor:
    """Scores at the last valid token (verl's outcome rewards), or dense random rewards."""
    b, t = mask.shape
    if kind == "dense":
        return torch.randn(b, t, generator=g, dtype=torch.float64).to(dtype)
    if kind == "binary":
        score = torch.randint(0, 2, (b,), generator=g).to(torch.float64)
    else:
        score = torch.randn(b, generator=g, dtype=torch.float64) * 2
    rewards = torch.zeros(b, t, dtype=torch.float64)
    last = (mask.sum(-1) - 1).clamp(min=0)
    rewards[torch.arange(b), last] = score
    return rewards.to(dtype)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--verl", type=Path, default=None, help="verl wheel or source tree (default: installed)")
    parser.add_argument("--out", type=Path, default=HERE / "advantages")
    args = parser.parse_args()
    ca = load_verl(args.verl)
    files: dict[str, list[dict]] = {}

    def add(fn: str, name: str, inputs: dict, outputs: dict, config: dict) -> None:
        files.setdefault(fn, []).append(case(name, inputs, outputs, config))

    def raises(fn: str, name: str, inputs: dict, config: dict, call) -> None:
        try:
            call()
        except (ValueError, AssertionError, RuntimeError) as e:  # verl raised: record the inputs
            add(fn, name, inputs, {}, {**config, "raises": type(e).__name__, "message": str(e)})
            return
        raise SystemExit(f"{fn}/{name}: verl was expected to raise")

    for dtype in (torch.float32, torch.float64):
        dn = "float32" if dtype == torch.float32 else "float64"
        g = torch.Generator().manual_seed(1234 if dtype == torch.float32 else 5678)
        B, T = 12, 10

        # ---- GAE and REINFORCE++ (token-level loops) --------------------------------------------------
        for kind, gamma, lam, mask_kind in [("basic", 0.99, 0.95, "long"), ("unit", 1.0, 1.0, "long"),
                                            ("gaps", 0.9, 0.8, "long"), ("boolmask", 0.97, 0.9, "bool"),
                                            ("floatmask", 0.95, 0.7, "float")]:
            mask = right_padded_mask(g, B, T, full_row=0, empty_row=3, gap_row=5 if kind == "gaps" else None)
            if mask_kind == "bool":
                mask = mask.bool()
            elif mask_kind == "float":
                mask = mask.to(dtype)
            rewards = torch.randn(B, T, generator=g, dtype=torch.float64).to(dtype)
            values = torch.randn(B, T, generator=g, dtype=torch.float64).to(dtype)
            cfg = {"dtype": dn, "gamma": gamma, "lam": lam}
            if mask_kind != "bool":  # verl's `1 - response_mask[:, t]` rejects a bool mask (see docs)
                adv, ret = ca.compute_gae_advantage_return(rewards, values, mask, gamma, lam)
                add("gae", f"{dn}/{kind}", {"token_level_rewards": rewards, "values": values, "response_mask": mask},
                    {"advantages": adv, "returns": ret}, cfg)
            adv, ret = ca.compute_reinforce_plus_plus_outcome_advantage(rewards, mask, config=Config(gamma=gamma))
            add("reinforce_plus_plus", f"{dn}/{kind}", {"token_level_rewards": rewards, "response_mask": mask},
                {"advantages": adv, "returns": ret}, cfg)
            base = torch.randn(B, generator=g, dtype=torch.float64).to(dtype)
            adv, ret = ca.compute_remax_outcome_advantage(rewards, base, mask)
            add("remax", f"{dn}/{kind}", {"token_level_rewards": rewards, "reward_baselines": base,
                                          "response_mask": mask}, {"advantages": adv, "returns": ret}, cfg)
        one_token = torch.zeros(2, 4, dtype=torch.long)
        one_token[0, 0] = 1
        r2 = torch.randn(2, 4, generator=g, dtype=torch.float64).to(dtype)
        raises("gae", f"{dn}/one_valid_token", {"token_level_rewards": r2, "values": r2, "response_mask": one_token},
               {"dtype": dn, "gamma": 1.0, "lam": 1.0},
               lambda: ca.compute_gae_advantage_return(r2, r2, one_token, 1.0, 1.0))
        raises("reinforce_plus_plus", f"{dn}/no_valid_token",
               {"token_level_rewards": r2, "response_mask": torch.zeros_like(one_token)}, {"dtype": dn, "gamma": 1.0},
               lambda: ca.compute_reinforce_plus_plus_outcome_advantage(r2, torch.zeros_like(one_token),
                                                                         config=Config(gamma=1.0)))

        # ---- group estimators -----------------------------------------------------------------------------
        layouts = {
            "mixed": [4, 3, 1, 4],         # a singleton group among groups of 3 and 4
            "uniform": [4, 4, 4],
            "pairs": [2, 2, 2, 2, 2, 2],
        }
        for layout, sizes in layouts.items():
            for kind in ("outcome", "binary", "dense"):
                b = sum(sizes)
                mask = right_padded_mask(g, b, T, full_row=1, empty_row=2, gap_row=4)
                rewards = outcome_rewards(g, mask, dtype, kind)
                index = group_ids(g, sizes)
                inputs = {"token_level_rewards": rewards, "response_mask": mask, "index": index}
                name = f"{dn}/{layout}_{kind}"
                cfg = {"dtype": dn, "epsilon": 1e-6}
                for norm in (True, False):
                    adv, ret = ca.compute_grpo_outcome_advantage(rewards.clone(), mask, uids(index), 1e-6, norm)
                    add("grpo", f"{name}_{'std' if norm else 'nostd'}", inputs, {"advantages": adv, "returns": ret},
                        {**cfg, "norm_adv_by_std_in_grpo": norm})
                    if 1 not in sizes:
                        adv, ret = ca.compute_grpo_passk_outcome_advantage(
                            rewards.clone(), mask, uids(index), 1e-6, config=Config(norm_adv_by_std_in_grpo=norm))
                        add("grpo_passk", f"{name}_{'std' if norm else 'nostd'}", inputs,
                            {"advantages": adv, "returns": ret}, {**cfg, "norm_adv_by_std_in_grpo": norm})
                adv, ret = ca.compute_rloo_outcome_advantage(rewards.clone(), mask, uids(index))
                add("rloo", name, inputs, {"advantages": adv, "returns": ret}, cfg)
                adv, ret = ca.compute_opo_outcome_advantage(rewards.clone(), mask, uids(index))
                add("opo", name, inputs, {"advantages": adv, "returns": ret}, cfg)
                adv, ret = ca.compute_reinforce_plus_plus_baseline_outcome_advantage(rewards.clone(), mask,
                                                                                     uids(index))
                add("reinforce_plus_plus_baseline", name, inputs, {"advantages": adv, "returns": ret}, cfg)
                for f_norm in (1.0, 0.7):
                    adv, ret = ca.compute_gpg_outcome_advantage(rewards.clone(), mask, uids(index), f_norm=f_norm)
                    add("gpg", f"{name}_fnorm{f_norm}", inputs, {"advantages": adv, "returns": ret},
                        {**cfg, "f_norm": f_norm})

        # OPO: a group whose rows are all fully masked has baseline 0/0 = NaN in verl.
        mask = right_padded_mask(g, 6, T)
        mask[3:] = 0
        rewards = outcome_rewards(g, mask, dtype, "outcome")
        index = torch.tensor([5, 5, 5, 9, 9, 9])
        adv, ret = ca.compute_opo_outcome_advantage(rewards.clone(), mask, uids(index))
        add("opo", f"{dn}/masked_group_nan", {"token_level_rewards": rewards, "response_mask": mask, "index": index},
            {"advantages": adv, "returns": ret}, {"dtype": dn, "epsilon": 1e-6})
        # pass@k with a singleton group: verl raises ValueError.
        index = torch.tensor([1, 1, 2, 3, 3, 3])
        raises("grpo_passk", f"{dn}/singleton_group",
               {"token_level_rewards": rewards, "response_mask": mask, "index": index},
               {"dtype": dn, "epsilon": 1e-6, "norm_adv_by_std_in_grpo": True},
               lambda: ca.compute_grpo_passk_outcome_advantage(rewards.clone(), mask, uids(index), 1e-6,
                                                               config=Config(norm_adv_by_std_in_grpo=True)))
        # REINFORCE++ baseline whitens over the batch: a single valid token raises.
        raises("reinforce_plus_plus_baseline", f"{dn}/one_valid_token",
               {"token_level_rewards": r2, "response_mask": one_token, "index": torch.tensor([0, 0])},
               {"dtype": dn, "epsilon": 1e-6},
               lambda: ca.compute_reinforce_plus_plus_baseline_outcome_advantage(r2, one_token, uids(
                   torch.tensor([0, 0]))))

    for fn, cases in files.items():
        write_golden(args.out / f"{fn}.json", REFERENCE, GENERATOR, cases)
        print(f"{fn}: {len(cases)} cases -> {args.out / (fn + '.json')}")


if __name__ == "__main__":
    main()
