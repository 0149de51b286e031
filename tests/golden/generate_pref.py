#!/usr/bin/env python3
"""Golden vectors for verl::pref (include/verl/algos/pref/*.hpp), produced by TRL's own loss functions.

Each TRL loss is an unbound trainer method; it is called with a minimal stand-in `self` (a SimpleNamespace that
carries only the attributes the method reads), so no model, tokenizer or dataset is needed. Pinned references:

  - trl 0.28.0 (PyPI)  DPOTrainer.dpo_loss       trl/trainer/dpo_trainer.py          (= commit a68fb896, see below)
  - trl 0.28.0 (PyPI)  KTOTrainer.kto_loss       trl/experimental/kto/kto_trainer.py (identical 0.25.1 .. 1.0.0)
  - trl 0.28.0 (PyPI)  CPOTrainer.cpo_loss       trl/experimental/cpo/cpo_trainer.py (loss_type simpo etc.)
  - trl 0.28.0 (PyPI)  ORPOTrainer.odds_ratio_loss trl/experimental/orpo/orpo_trainer.py
  - transformers 5.2.0 ForCausalLMLoss         transformers/loss/loss_utils.py (SFT NLL)

dpo_loss: 0.28.0 is the last PyPI release that has it (0.29 replaced it in the refactor); its text equals
0.25.1/0.26.2/0.27.2 except that those call the unpaired AOT loss `aot_pair` (0.28.0: `aot_unpaired`).

Setup (a scratch venv outside the repo that reuses the repo's torch 2.11 wheel), then one command:

    python3 -m venv /tmp/golden-venv-pref
    echo /work/main/.venv/lib/python3.11/site-packages \\
        > /tmp/golden-venv-pref/lib/python3.11/site-packages/torch_from_repo.pth
    /tmp/golden-venv-pref/bin/pip install trl==0.28.0 transformers==5.2.0   # + accelerate, datasets

(transformers is pinned: with transformers >= 5.2x, transformers' _is_package_available returns a tuple, so
trl 0.28.0 believes the optional `weave` package is installed and fails to import.)
    /tmp/golden-venv-pref/bin/python tests/golden/generate_pref.py      # writes tests/golden/pref/*.json

Inputs are random with fixed seeds; float32 inputs are the float64 inputs rounded, so both dtypes see the same
values. Every case stores its configuration, inputs and TRL's outputs (format: tests/golden/golden_io.py).
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from golden_io import case, write_golden  # noqa: E402

import trl  # noqa: E402
import transformers  # noqa: E402
from transformers.loss.loss_utils import ForCausalLMLoss  # noqa: E402
from trl.experimental.cpo.cpo_trainer import CPOTrainer  # noqa: E402
from trl.experimental.kto.kto_trainer import KTOTrainer  # noqa: E402
from trl.experimental.orpo.orpo_trainer import ORPOTrainer  # noqa: E402
from trl.trainer.dpo_config import FDivergenceConstants, FDivergenceType  # noqa: E402
from trl.trainer.dpo_trainer import DPOTrainer  # noqa: E402

OUT = Path(__file__).resolve().parent / "pref"
GENERATOR = "tests/golden/generate_pref.py"
DTYPES = {"float32": torch.float32, "float64": torch.float64}
ACCEL = SimpleNamespace(device=torch.device("cpu"), gather_for_metrics=lambda t: t)

assert trl.__version__ == "0.28.0", f"expected trl 0.28.0, got {trl.__version__}"
assert transformers.__version__ == "5.2.0", f"expected transformers 5.2.0, got {transformers.__version__}"


def logps(gen: torch.Generator, n: int, scale: float = 20.0, offset: float = 0.0) -> torch.Tensor:
    """Per-sequence log-probs: negative, of the size of summed token log-probs."""
    return -(torch.rand(n, generator=gen, dtype=torch.float64) * scale + offset)


DPO_TYPES = ["sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "sppo_hard", "aot", "aot_unpaired",
             "apo_zero", "apo_down", "discopop"]
F_DIV = {"reverse_kl": FDivergenceType.REVERSE_KL, "js_divergence": FDivergenceType.JS_DIVERGENCE,
         "alpha_divergence": FDivergenceType.ALPHA_DIVERGENCE}


def dpo_self(cfg: dict) -> SimpleNamespace:
    # The f-divergence is passed as the Enum member: dpo_loss compares against FDivergenceType members.
    return SimpleNamespace(
        accelerator=ACCEL, beta=cfg["beta"], label_smoothing=cfg["label_smoothing"],
        reference_free=cfg["reference_free"], loss_type=[cfg["loss_type"]],
        f_divergence_type=F_DIV[cfg["f_divergence_type"]],
        f_divergence_params={FDivergenceConstants.ALPHA_DIVERGENCE_COEF_KEY: cfg["f_alpha_divergence_coef"]},
        args=SimpleNamespace(discopop_tau=cfg["discopop_tau"]))


def dpo_cases() -> list[dict]:
    base = dict(beta=0.1, label_smoothing=0.0, reference_free=False, discopop_tau=0.05,
                f_divergence_type="reverse_kl", f_alpha_divergence_coef=1.0, no_reference=False)
    configs = []
    for t in DPO_TYPES:
        configs.append({**base, "loss_type": t})
        configs.append({**base, "loss_type": t, "beta": 0.5})
        configs.append({**base, "loss_type": t, "reference_free": True})
        configs.append({**base, "loss_type": t, "no_reference": True})
    for t in ["sigmoid", "robust", "exo_pair", "aot", "aot_unpaired"]:
        configs.append({**base, "loss_type": t, "label_smoothing": 0.2})
    configs.append({**base, "loss_type": "discopop", "discopop_tau": 0.5, "beta": 0.3})
    for f in ["js_divergence", "alpha_divergence"]:
        for t in ["sigmoid", "hinge", "ipo", "robust", "exo_pair", "apo_zero"]:
            configs.append({**base, "loss_type": t, "f_divergence_type": f})
        configs.append({**base, "loss_type": "sigmoid", "f_divergence_type": f, "reference_free": True})
    configs.append({**base, "loss_type": "sigmoid", "f_divergence_type": "alpha_divergence",
                    "f_alpha_divergence_coef": 0.5, "beta": 0.2})
    cases = []
    for i, cfg in enumerate(configs):
        gen = torch.Generator().manual_seed(1000 + i)
        B = 8
        pc, pr = logps(gen, B), logps(gen, B)
        rc = pc + torch.randn(B, generator=gen, dtype=torch.float64) * 2
        rr = pr + torch.randn(B, generator=gen, dtype=torch.float64) * 2
        if cfg["no_reference"]:
            rc, rr = torch.zeros(B, dtype=torch.float64), torch.zeros(B, dtype=torch.float64)
        for dname, dtype in DTYPES.items():
            ins = [t.to(dtype) for t in (pc, pr, rc, rr)]
            out = DPOTrainer.dpo_loss(dpo_self(cfg), *ins, loss_type=cfg["loss_type"])
            name = f"{cfg['loss_type']}_{i}_{dname}"
            inputs = {"policy_chosen_logps": ins[0], "policy_rejected_logps": ins[1]}
            if not cfg["no_reference"]:
                inputs |= {"reference_chosen_logps": ins[2], "reference_rejected_logps": ins[3]}
            cases.append(case(name, inputs, {"losses": out[0], "chosen_rewards": out[1], "rejected_rewards": out[2]},
                              {**cfg, "dtype": dname}))
    return cases


def kto_cases() -> list[dict]:
    configs = []
    for t in ["kto", "apo_zero_unpaired"]:
        for beta, dw, uw, nc, nr, shift in [(0.1, 1.0, 1.0, 7, 5, 0.0), (0.5, 1.33, 0.8, 3, 9, 0.0),
                                            (0.1, 1.0, 1.0, 6, 6, -3.0), (0.2, 1.0, 1.0, 0, 8, 0.0),
                                            (0.2, 1.0, 2.0, 8, 0, 0.0)]:
            configs.append(dict(loss_type=t, beta=beta, desirable_weight=dw, undesirable_weight=uw, nc=nc, nr=nr,
                                kl_shift=shift))
    cases = []
    for i, cfg in enumerate(configs):
        gen = torch.Generator().manual_seed(2000 + i)
        nc, nr, B = cfg["nc"], cfg["nr"], cfg["nc"] + cfg["nr"]
        pc, pr, pkl = logps(gen, nc), logps(gen, nr), logps(gen, B)
        rc = pc + torch.randn(nc, generator=gen, dtype=torch.float64)
        rr = pr + torch.randn(nr, generator=gen, dtype=torch.float64)
        # kl_shift < 0 makes mean(pi_KL - ref_KL) negative, so the clamp at 0 is exercised.
        rkl = pkl + torch.randn(B, generator=gen, dtype=torch.float64) - cfg["kl_shift"]
        for dname, dtype in DTYPES.items():
            ins = [t.to(dtype) for t in (pc, pr, pkl, rc, rr, rkl)]
            me = SimpleNamespace(accelerator=ACCEL, calculate_KL=cfg["loss_type"] == "kto", beta=cfg["beta"],
                                 loss_type=cfg["loss_type"], desirable_weight=cfg["desirable_weight"],
                                 undesirable_weight=cfg["undesirable_weight"])
            losses, cr, rr_, kl = KTOTrainer.kto_loss(me, *ins)
            names = ["policy_chosen_logps", "policy_rejected_logps", "policy_KL_logps", "reference_chosen_logps",
                     "reference_rejected_logps", "reference_KL_logps"]
            cases.append(case(f"{cfg['loss_type']}_{i}_{dname}", dict(zip(names, ins)),
                              {"losses": losses, "chosen_rewards": cr, "rejected_rewards": rr_,
                               "kl": kl.reshape(())}, {**cfg, "dtype": dname}))
    return cases


def cpo_cases() -> list[dict]:
    configs = []
    for t in ["simpo", "sigmoid", "hinge", "ipo"]:
        configs.append(dict(loss_type=t, beta=2.0 if t == "simpo" else 0.1, label_smoothing=0.0, simpo_gamma=0.5,
                            alpha=0.0))
        configs.append(dict(loss_type=t, beta=2.5, label_smoothing=0.0, simpo_gamma=1.4, alpha=0.25))
    configs.append(dict(loss_type="simpo", beta=2.0, label_smoothing=0.1, simpo_gamma=0.8, alpha=0.0))
    configs.append(dict(loss_type="sigmoid", beta=0.3, label_smoothing=0.15, simpo_gamma=0.5, alpha=0.0))
    cases = []
    for i, cfg in enumerate(configs):
        gen = torch.Generator().manual_seed(3000 + i)
        B = 12
        pc, pr = logps(gen, B, scale=3.0, offset=0.05), logps(gen, B, scale=3.0, offset=0.05)  # averaged log-probs
        for dname, dtype in DTYPES.items():
            me = SimpleNamespace(accelerator=ACCEL, **{k: cfg[k] for k in
                                                       ("loss_type", "beta", "label_smoothing", "simpo_gamma", "alpha")})
            ins = [pc.to(dtype), pr.to(dtype)]
            out = CPOTrainer.cpo_loss(me, *ins)
            cases.append(case(f"{cfg['loss_type']}_{i}_{dname}",
                              {"policy_chosen_logps": ins[0], "policy_rejected_logps": ins[1]},
                              {"losses": out[0], "chosen_rewards": out[1], "rejected_rewards": out[2]},
                              {**cfg, "dtype": dname}))
    return cases


def orpo_cases() -> list[dict]:
    cases = []
    for i, beta in enumerate([0.1, 0.25, 1.0]):
        gen = torch.Generator().manual_seed(4000 + i)
        B = 12
        # averaged log-probs, some above -ln 2 so both branches of log1mexp are used
        pc, pr = logps(gen, B, scale=2.0, offset=0.01), logps(gen, B, scale=2.0, offset=0.01)
        for dname, dtype in DTYPES.items():
            ins = [pc.to(dtype), pr.to(dtype)]
            out = ORPOTrainer.odds_ratio_loss(SimpleNamespace(accelerator=ACCEL, beta=beta), *ins)
            cases.append(case(f"orpo_{i}_{dname}", {"policy_chosen_logps": ins[0], "policy_rejected_logps": ins[1]},
                              {"losses": out[0], "chosen_rewards": out[1], "rejected_rewards": out[2],
                               "log_odds_ratio": out[3], "log_odds_chosen": out[4]},
                              {"beta": beta, "dtype": dname}))
    return cases


def sft_cases() -> list[dict]:
    cases = []
    configs = [dict(B=3, T=7, V=11, shift_labels=True, num_items_in_batch=None),
               dict(B=4, T=9, V=16, shift_labels=True, num_items_in_batch=40.0),
               dict(B=2, T=6, V=5, shift_labels=False, num_items_in_batch=None)]
    for i, cfg in enumerate(configs):
        gen = torch.Generator().manual_seed(5000 + i)
        B, T, V = cfg["B"], cfg["T"], cfg["V"]
        logits = torch.randn(B, T, V, generator=gen, dtype=torch.float64) * 3
        labels = torch.randint(0, V, (B, T), generator=gen)
        prompt = torch.randint(0, T // 2, (B,), generator=gen)
        labels[torch.arange(T)[None, :] < prompt[:, None]] = -100  # prompt tokens are not trained on
        labels[0, -2:] = -100                                       # padding at the end of row 0
        for dname, dtype in DTYPES.items():
            x = logits.to(dtype)
            kwargs = {} if cfg["shift_labels"] else {"shift_labels": labels}
            loss = ForCausalLMLoss(x, labels, V, num_items_in_batch=cfg["num_items_in_batch"], **kwargs)
            cases.append(case(f"sft_{i}_{dname}", {"logits": x, "labels": labels}, {"loss": loss},
                              {**cfg, "dtype": dname}))
    return cases


def main() -> None:
    ref = f"trl {trl.__version__} (PyPI)"
    write_golden(OUT / "dpo.json", f"{ref}, trl/trainer/dpo_trainer.py DPOTrainer.dpo_loss", GENERATOR, dpo_cases())
    write_golden(OUT / "kto.json", f"{ref}, trl/experimental/kto/kto_trainer.py KTOTrainer.kto_loss", GENERATOR,
                 kto_cases())
    write_golden(OUT / "cpo.json", f"{ref}, trl/experimental/cpo/cpo_trainer.py CPOTrainer.cpo_loss", GENERATOR,
                 cpo_cases())
    write_golden(OUT / "orpo.json", f"{ref}, trl/experimental/orpo/orpo_trainer.py ORPOTrainer.odds_ratio_loss",
                 GENERATOR, orpo_cases())
    write_golden(OUT / "sft.json", f"transformers {transformers.__version__} (PyPI), transformers/loss/loss_utils.py "
                 "ForCausalLMLoss", GENERATOR, sft_cases())
    for p in sorted(OUT.glob("*.json")):
        print(p, p.stat().st_size, "bytes")


if __name__ == "__main__":
    main()
