#!/usr/bin/env python3
"""Golden vectors for verl-cpp's losses (include/verl/algos/{loss_agg,policy_losses,value_loss,kl,entropy}.hpp).

Runs verl 0.7.1's OWN functions (verl/trainer/ppo/core_algos.py and verl/utils/torch_functional.py, from the
PyPI release) on random inputs with fixed seeds, float32 and float64, edge cases included (fully masked rows,
masks with interior gaps, ratios far outside the clip range and beyond verl's +-20 log-ratio clamp), and writes
tests/golden/losses/*.json in the format of tests/support/golden.hpp. Each policy-loss case also stores the
gradient of verl's loss with respect to log_prob.

Regenerate (one command, after the one-time set-up below):

    /tmp/golden-venv-loss/bin/python tests/golden/generate_losses.py

One-time set-up of a scratch venv OUTSIDE the repository (torch comes from the repo's .venv, so the vectors are
produced by the same LibTorch 2.11 the C++ tests link):

    python3 -m venv /tmp/golden-venv-loss
    echo /work/main/.venv/lib/python3.11/site-packages \
        > /tmp/golden-venv-loss/lib/python3.11/site-packages/torch_from_repo.pth
    /tmp/golden-venv-loss/bin/pip install numpy
    /tmp/golden-venv-loss/bin/pip install --no-deps verl==0.7.1      # or the wheel file

`import verl` pulls in ray, tensordict, transformers, ...; so the generator does not import the package: it
reads the two source files out of the installed package (or out of a wheel given with --verl) and executes
them with the heavy imports they do not use for these functions replaced by stubs (tensordict, transformers,
omegaconf, verl.utils.device, verl.trainer.config, verl.workers.config, ...). ActorConfig is a small stub class
carrying the fields the losses read; isinstance checks in verl use that stub.
"""

from __future__ import annotations

import argparse
import sys
import sysconfig
import types
import zipfile
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from golden_io import case, write_golden  # noqa: E402

CORE = "verl/trainer/ppo/core_algos.py"
TF = "verl/utils/torch_functional.py"
GENERATOR = "tests/golden/generate_losses.py"


class ActorConfig:  # stub of verl.workers.config.ActorConfig: only what the losses read
    def __init__(self, clip_ratio=0.2, clip_ratio_low=0.2, clip_ratio_high=0.2, clip_ratio_c=3.0, tau_pos=1.0,
                 tau_neg=1.05, policy_loss=None, global_batch_info=None):
        self.clip_ratio, self.clip_ratio_low, self.clip_ratio_high = clip_ratio, clip_ratio_low, clip_ratio_high
        self.clip_ratio_c, self.tau_pos, self.tau_neg = clip_ratio_c, tau_pos, tau_neg
        self.policy_loss = policy_loss or types.SimpleNamespace(
            clip_cov_ratio=0.0002, clip_cov_lb=1.0, clip_cov_ub=5.0, kl_cov_ratio=0.0002, ppo_kl_coef=0.1)
        self.global_batch_info = global_batch_info or {}

    def get(self, key, default=None):
        return getattr(self, key, default)


class AlgoConfig:  # stub; never passed
    pass


def _read(where: Path | None, rel: str) -> tuple[str, str]:
    if where is not None and where.is_file():
        with zipfile.ZipFile(where) as wheel:
            return wheel.read(rel).decode(), f"{where}!{rel}"
    base = where if where is not None else Path(sysconfig.get_paths()["purelib"])
    return (base / rel).read_text(), str(base / rel)


def load_verl(where: Path | None) -> tuple[types.ModuleType, types.ModuleType]:
    def stub(name, **attrs):
        module = types.ModuleType(name)
        module.__dict__.update(attrs)
        sys.modules[name] = module
        return module

    stub("tensordict", TensorDict=object)
    stub("transformers", PreTrainedTokenizer=object)
    stub("omegaconf", DictConfig=dict)
    stub("verl")
    stub("verl.utils", as_torch_index=None, group_mean_std=None)
    stub("verl.utils.device", get_device_name=lambda: "cpu", get_torch_device=lambda: torch.cpu)
    stub("verl.utils.import_utils", deprecated=lambda *a, **k: (lambda f: f))
    stub("verl.trainer")
    stub("verl.trainer.config", AlgoConfig=AlgoConfig)
    stub("verl.workers")
    stub("verl.workers.config", ActorConfig=ActorConfig)
    modules = []
    for rel, name in ((TF, "verl.utils.torch_functional"), (CORE, "verl.trainer.ppo.core_algos")):
        source, origin = _read(where, rel)
        module = types.ModuleType(name)
        module.__file__ = origin
        sys.modules[name] = module
        if name.endswith("torch_functional"):
            sys.modules["verl.utils"].torch_functional = module
        exec(compile(source, origin, "exec"), module.__dict__)  # noqa: S102 - verl's own source
        modules.append(module)
    return modules[0], modules[1]


DTYPES = {"float32": torch.float32, "float64": torch.float64}
MODES = ["token-mean", "seq-mean-token-sum", "seq-mean-token-mean", "seq-mean-token-sum-norm"]


def make_mask(b: int, t: int, gen: torch.Generator) -> torch.Tensor:
    """(B,T) int64 0/1: random lengths, one fully masked row, one row with interior gaps."""
    lengths = torch.randint(1, t + 1, (b,), generator=gen)
    mask = (torch.arange(t)[None, :] < lengths[:, None]).long()
    mask[1] = 0                                   # fully masked row
    mask[2] = 1
    mask[2, 2:5] = 0                              # interior gap
    mask[2, -1] = 0
    return mask


def policy_inputs(b, t, dtype, gen, spread=0.3, extreme=True):
    old = -torch.rand(b, t, generator=gen, dtype=torch.float64) * 3
    noise = torch.randn(b, t, generator=gen, dtype=torch.float64) * spread
    # beyond the +-20 clamp (losses that clamp), else just far outside the clip range
    noise[0, :3] = torch.tensor([25.0, -30.0, 2.0] if extreme else [2.5, -3.0, 2.0])
    noise[3, :2] = torch.tensor([-3.0, 1.5])
    lp = old + noise
    adv = torch.randn(b, t, generator=gen, dtype=torch.float64)
    adv[4, :3] = 0.0
    adv[5] = torch.randn((), generator=gen, dtype=torch.float64)  # sequence-level advantage row
    return old.to(dtype), lp.to(dtype), adv.to(dtype)


def gen_agg(verl, out_dir):
    cases = []
    seed = 0
    for dtype_name, dtype in DTYPES.items():
        for mask_kind in ("int64", "float"):
            for mode in MODES:
                for gbi in ({}, {"dp_size": 2, "batch_num_tokens": 37, "global_batch_size": 11, "loss_scale_factor": 16}):
                    seed += 1
                    gen = torch.Generator().manual_seed(seed)
                    mat = torch.randn(6, 9, generator=gen, dtype=torch.float64).to(dtype)
                    mask = make_mask(6, 9, gen)
                    if mask_kind == "float":
                        mask = mask.to(dtype)
                    loss = verl.agg_loss(loss_mat=mat, loss_mask=mask, loss_agg_mode=mode, **gbi)
                    cases.append(case(f"{mode}/{dtype_name}/mask_{mask_kind}/{'global' if gbi else 'local'}",
                                      {"loss_mat": mat, "loss_mask": mask}, {"loss": loss},
                                      {"loss_agg_mode": mode, "dtype": dtype_name, **gbi}))
    write_golden(out_dir / "agg_loss.json", "verl 0.7.1 (PyPI), verl/trainer/ppo/core_algos.py agg_loss",
                 GENERATOR, cases)


POLICY = ["vanilla", "gspo", "sapo", "gpg", "clip_cov", "kl_cov", "geo_mean", "cispo"]


def gen_policy(verl, out_dir):
    cases = []
    seed = 100
    for name in POLICY:
        fn = verl.get_policy_loss_fn(name)
        for dtype_name, dtype in DTYPES.items():
            variants = [("token-mean", dict(clip_ratio_low=0.2, clip_ratio_high=0.28), False, {})]
            if name in ("vanilla", "gpg", "cispo", "clip_cov", "kl_cov"):
                variants += [(m, dict(clip_ratio_low=0.2, clip_ratio_high=0.2), False, {}) for m in MODES[1:]]
            variants.append(("token-mean", dict(clip_ratio_low=0.1, clip_ratio_high=0.3, clip_ratio_c=2.0), True,
                             {"dp_size": 2, "batch_num_tokens": 40, "global_batch_size": 12}))
            for mode, clip, with_weights, gbi in variants:
                seed += 1
                gen = torch.Generator().manual_seed(seed)
                b, t = 8, 10
                old, lp, adv = policy_inputs(b, t, dtype, gen, spread=1.0 if name in ("clip_cov",) else 0.3,
                                             extreme=name not in ("clip_cov", "kl_cov", "geo_mean", "gspo"))
                mask = make_mask(b, t, gen)
                pl = types.SimpleNamespace(clip_cov_ratio=0.0002, clip_cov_lb=1.0, clip_cov_ub=5.0,
                                           kl_cov_ratio=0.0002, ppo_kl_coef=0.1)
                if name == "clip_cov":  # many candidates (random choice: seeded) or few (deterministic)
                    pl.clip_cov_ratio, pl.clip_cov_lb, pl.clip_cov_ub = (0.1, -10.0, 10.0) if with_weights else (0.02, 0.01, 5.0)
                    adv = adv * 2
                if name == "kl_cov":
                    pl.kl_cov_ratio, pl.ppo_kl_coef = (0.2, 0.5) if with_weights else (0.05, 1.0)
                cfg = ActorConfig(**clip, tau_pos=1.0, tau_neg=1.05 if not with_weights else 2.0, policy_loss=pl,
                                  global_batch_info=dict(gbi))
                weights = (torch.rand(b, t, generator=gen, dtype=torch.float64) + 0.5).to(dtype) if with_weights else None
                lp_leaf = lp.clone().requires_grad_(True)
                torch.manual_seed(7)  # clip_cov's torch.randperm draws from the global generator
                loss, metrics = fn(old_log_prob=old, log_prob=lp_leaf, advantages=adv, response_mask=mask,
                                   loss_agg_mode=mode, config=cfg, rollout_is_weights=weights)
                (grad,) = torch.autograd.grad(loss, lp_leaf)
                inputs = {"old_log_prob": old, "log_prob": lp, "advantages": adv, "response_mask": mask}
                if weights is not None:
                    inputs["rollout_is_weights"] = weights
                outputs = {"loss": loss.detach(), "grad_log_prob": grad}
                for key, value in metrics.items():
                    outputs[key.split("/")[-1]] = torch.tensor(float(value), dtype=torch.float64)
                config = {"loss_mode": name, "loss_agg_mode": mode, "dtype": dtype_name, "clip_ratio_c": 3.0,
                          **clip, "tau_pos": cfg.tau_pos, "tau_neg": cfg.tau_neg, "clip_cov_seed": 7,
                          **{k: getattr(pl, k) for k in vars(pl)}, **gbi}
                cases.append(case(f"{name}/{mode}/{dtype_name}/{'weights+global' if with_weights else 'plain'}",
                                  inputs, outputs, config))
    write_golden(out_dir / "policy_losses.json",
                 "verl 0.7.1 (PyPI), verl/trainer/ppo/core_algos.py compute_policy_loss_* (get_policy_loss_fn)",
                 GENERATOR, cases)


def gen_value(verl, out_dir):
    cases = []
    for i, (dtype_name, dtype) in enumerate(DTYPES.items()):
        for j, mode in enumerate(MODES):
            gen = torch.Generator().manual_seed(1000 + 10 * i + j)
            b, t = 7, 9
            values = torch.randn(b, t, generator=gen, dtype=torch.float64)
            vpreds = values + torch.randn(b, t, generator=gen, dtype=torch.float64) * 0.8
            returns = values + torch.randn(b, t, generator=gen, dtype=torch.float64)
            values, vpreds, returns = values.to(dtype), vpreds.to(dtype), returns.to(dtype)
            mask = make_mask(b, t, gen)
            vp = vpreds.clone().requires_grad_(True)
            vf_loss, vf_clipfrac = verl.compute_value_loss(vp, returns, values, mask, cliprange_value=0.5,
                                                           loss_agg_mode=mode)
            (grad,) = torch.autograd.grad(vf_loss, vp)
            cases.append(case(f"{mode}/{dtype_name}", {"vpreds": vpreds, "returns": returns, "values": values,
                                                        "response_mask": mask},
                              {"vf_loss": vf_loss.detach(), "vf_clipfrac": vf_clipfrac, "grad_vpreds": grad},
                              {"loss_agg_mode": mode, "cliprange_value": 0.5, "dtype": dtype_name}))
    write_golden(out_dir / "value_loss.json", "verl 0.7.1 (PyPI), verl/trainer/ppo/core_algos.py compute_value_loss",
                 GENERATOR, cases)


def gen_kl(verl, out_dir):
    cases = []
    for i, (dtype_name, dtype) in enumerate(DTYPES.items()):
        gen = torch.Generator().manual_seed(2000 + i)
        lp = -torch.rand(5, 8, generator=gen, dtype=torch.float64) * 4
        ref = lp + torch.randn(5, 8, generator=gen, dtype=torch.float64)
        ref[0, :4] = lp[0, :4] + torch.tensor([30.0, -30.0, 12.0, -15.0])  # hits the +-20 and +-10 clamps
        lp, ref = lp.to(dtype), ref.to(dtype)
        for mode in ("kl", "k1", "abs", "mse", "k2", "low_var_kl", "k3"):
            x = lp.clone().requires_grad_(True)
            out = verl.kl_penalty(x, ref, mode)
            (grad,) = torch.autograd.grad(out.sum(), x)
            cases.append(case(f"kl_penalty/{mode}/{dtype_name}", {"logprob": lp, "ref_logprob": ref},
                              {"kl": out.detach(), "grad_logprob": grad}, {"kl_penalty": mode, "dtype": dtype_name}))
        scores = torch.randn(5, 8, generator=gen, dtype=torch.float64).to(dtype)
        rewards = verl.compute_rewards(scores, lp, ref, 0.05)
        cases.append(case(f"compute_rewards/{dtype_name}", {"token_level_scores": scores, "old_log_prob": lp,
                                                             "ref_log_prob": ref}, {"rewards": rewards},
                          {"kl_ratio": 0.05, "dtype": dtype_name}))
    # Controllers: a sequence of (current_kl, n_steps) updates and the coefficient after each.
    ctl = verl.AdaptiveKLController(init_kl_coef=0.2, target_kl=6.0, horizon=10000)
    kls = [0.5, 3.0, 6.0, 7.5, 12.0, 100.0, 0.0, 5.9]
    steps = [256, 256, 512, 128, 256, 1024, 64, 256]
    values = []
    for kl, n in zip(kls, steps):
        ctl.update(kl, n)
        values.append(float(ctl.value))
    cases.append(case("adaptive_kl_controller", {"current_kl": torch.tensor(kls, dtype=torch.float64),
                                                 "n_steps": torch.tensor(steps)},
                      {"value": torch.tensor(values, dtype=torch.float64)},
                      {"init_kl_coef": 0.2, "target_kl": 6.0, "horizon": 10000}))
    write_golden(out_dir / "kl.json", "verl 0.7.1 (PyPI), verl/trainer/ppo/core_algos.py kl_penalty, "
                 "compute_rewards, AdaptiveKLController", GENERATOR, cases)


def gen_entropy(verl, verl_f, out_dir):
    cases = []
    for i, (dtype_name, dtype) in enumerate(DTYPES.items()):
        gen = torch.Generator().manual_seed(3000 + i)
        logits = (torch.randn(4, 6, 11, generator=gen, dtype=torch.float64) * 3).to(dtype)
        logits[0, 0, 0] = 40.0  # a near-deterministic distribution
        mask = make_mask(4, 6, gen)
        x = logits.clone().requires_grad_(True)
        ent = verl_f.entropy_from_logits(x)
        (grad,) = torch.autograd.grad(ent.sum(), x)
        chunked = verl_f.entropy_from_logits_with_chunking(logits.reshape(-1, 11), chunk_size=5)
        outputs = {"entropy": ent.detach(), "grad_logits": grad, "entropy_chunked": chunked}
        for mode in MODES:
            outputs[f"entropy_loss/{mode}"] = verl.compute_entropy_loss(logits, mask, loss_agg_mode=mode)
        cases.append(case(f"entropy/{dtype_name}", {"logits": logits, "response_mask": mask}, outputs,
                          {"dtype": dtype_name, "chunk_size": 5}))
    write_golden(out_dir / "entropy.json", "verl 0.7.1 (PyPI), verl/utils/torch_functional.py entropy_from_logits, "
                 "entropy_from_logits_with_chunking; verl/trainer/ppo/core_algos.py compute_entropy_loss",
                 GENERATOR, cases)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--verl", type=Path, default=None,
                        help="verl 0.7.1 wheel or source tree (default: the verl installed in this venv)")
    parser.add_argument("--out", type=Path, default=HERE / "losses")
    args = parser.parse_args()
    torch.set_default_dtype(torch.float32)
    verl_f, verl = load_verl(args.verl)
    gen_agg(verl, args.out)
    gen_policy(verl, args.out)
    gen_value(verl, args.out)
    gen_kl(verl, args.out)
    gen_entropy(verl, verl_f, args.out)
    print(f"wrote {sorted(p.name for p in args.out.glob('*.json'))} to {args.out}")


if __name__ == "__main__":
    main()
