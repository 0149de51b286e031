#!/usr/bin/env python3
"""Golden learning rates for include/verl/trainer/lr_schedule.hpp.

Runs verl 0.7.1's own schedule builders (verl/utils/torch_functional.py: get_constant_schedule_with_warmup,
get_cosine_schedule_with_warmup, get_wsd_schedule_with_warmup) and transformers' get_linear_schedule_with_warmup
on a real torch.optim.AdamW with two param groups (base lrs 3e-4 and 1.0), and records, for LambdaLR epochs
0..steps-1, the multiplier (the schedule's lambda) and get_last_lr() of both groups, stepping the scheduler
once per epoch as verl's actor does after each update. The warm-up length of the "verl_optim/*" cases follows
verl's documented rule (trainer/config/actor/actor.yaml: "None, 0 or Negative values mean delegating to
lr_warmup_steps_ratio"), as verl/workers/engine/fsdp/transformer_impl.py _build_lr_scheduler implements it:
lr_warmup_steps if > 0 else int(ratio * total). (The legacy fsdp_workers.py delegates only for < 0.)

Regenerate (verl 0.7.1 installed --no-deps next to torch and transformers in a scratch venv):

    /tmp/golden-venv-adv/bin/python tests/golden/trainer/generate_lr_schedules.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import transformers
from transformers.optimization import get_linear_schedule_with_warmup
from verl.utils.torch_functional import (
    get_constant_schedule_with_warmup,
    get_cosine_schedule_with_warmup,
    get_wsd_schedule_with_warmup,
)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from golden_io import case, write_golden  # noqa: E402

BASE_LRS = (3e-4, 1.0)


def warmup_steps_verl(lr_warmup_steps, ratio: float, total: int) -> int:
    # verl/workers/engine/fsdp/transformer_impl.py FSDPEngine._build_lr_scheduler (None handled as the doc says)
    n = lr_warmup_steps
    if n is None or n <= 0:
        n = int(ratio * total)
    return n


def run(name, build, steps, config):
    p1, p2 = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(3))
    opt = torch.optim.AdamW([{"params": [p1], "lr": BASE_LRS[0]}, {"params": [p2], "lr": BASE_LRS[1]}])
    sched = build(opt)
    mult, lr0, lr1 = [], [], []
    for epoch in range(steps):
        assert sched.last_epoch == epoch
        mult.append(float(sched.lr_lambdas[0](epoch)))
        lr0.append(sched.get_last_lr()[0])
        lr1.append(sched.get_last_lr()[1])
        opt.step()
        sched.step()
    t = lambda xs: torch.tensor(xs, dtype=torch.float64)  # noqa: E731
    return case(name, {"base_lrs": t(list(BASE_LRS))}, {"multiplier": t(mult), "lr0": t(lr0), "lr1": t(lr1)},
                {**config, "steps": steps})


def main() -> None:
    cases = []
    for warm in (0, 1, 4):
        cases.append(run(f"constant/warmup={warm}", lambda o, w=warm: get_constant_schedule_with_warmup(o, w), 10,
                         {"lr_scheduler_type": "constant", "num_warmup_steps": warm}))
    cosine = [
        dict(num_warmup_steps=0, num_training_steps=10),
        dict(num_warmup_steps=3, num_training_steps=12),
        dict(num_warmup_steps=3, num_training_steps=12, min_lr_ratio=0.1),
        dict(num_warmup_steps=2, num_training_steps=9, min_lr_ratio=0.05, num_cycles=1.5),
        dict(num_warmup_steps=4, num_training_steps=11, init_lr_ratio=0.25, min_lr_ratio=0.2),
        dict(num_warmup_steps=3, num_training_steps=10, zero_indexed_step=False),
        dict(num_warmup_steps=5, num_training_steps=5),  # decay of length 0: max(1, 0) in the denominator
    ]
    for kw in cosine:
        label = ",".join(f"{k}={v}" for k, v in kw.items())
        steps = kw["num_training_steps"] + 4  # past the end: the cosine keeps turning, clamped at min_lr_ratio
        cases.append(run(f"cosine/{label}", lambda o, kw=kw: get_cosine_schedule_with_warmup(o, **kw), steps,
                         {"lr_scheduler_type": "cosine", **kw}))
    for kw in (dict(num_warmup_steps=2, num_training_steps=12),
               dict(num_warmup_steps=2, num_training_steps=12, stable_ratio=0.5, min_lr_ratio=0.1),
               dict(num_warmup_steps=0, num_training_steps=7, stable_ratio=0.0, num_cycles=0.75)):
        label = ",".join(f"{k}={v}" for k, v in kw.items())
        cases.append(run(f"wsd/{label}", lambda o, kw=kw: get_wsd_schedule_with_warmup(o, **kw),
                         kw["num_training_steps"] + 3, {"lr_scheduler_type": "wsd", **kw}))
    for warm, total in ((0, 8), (3, 10), (6, 6)):
        cases.append(run(f"linear/warmup={warm},total={total}",
                         lambda o, w=warm, n=total: get_linear_schedule_with_warmup(o, w, n), total + 3,
                         {"lr_scheduler_type": "linear", "num_warmup_steps": warm, "num_training_steps": total}))
    # verl's optim config -> warm-up length -> schedule, as the actor/critic workers do it.
    for sched_type, steps_cfg, ratio, total in (("cosine", -1, 0.1, 25), ("constant", -1, 0.3, 10),
                                               ("cosine", 2, 0.5, 10), ("constant", 0, 0.5, 10),
                                               ("cosine", None, 0.25, 9)):
        warm = warmup_steps_verl(steps_cfg, ratio, total)
        if sched_type == "cosine":
            build = lambda o, w=warm, n=total: get_cosine_schedule_with_warmup(o, w, n, min_lr_ratio=0.0, num_cycles=0.5)
        else:
            build = lambda o, w=warm: get_constant_schedule_with_warmup(o, w)
        cases.append(run(f"verl_optim/{sched_type},lr_warmup_steps={steps_cfg},ratio={ratio},total={total}", build,
                         total + 2, {"lr_scheduler_type": sched_type, "lr_warmup_steps": steps_cfg,
                                     "lr_warmup_steps_ratio": ratio, "total_training_steps": total,
                                     "resolved_num_warmup_steps": warm}))
    out = Path(__file__).resolve().parent / "lr_schedules.json"
    write_golden(out, f"verl 0.7.1 verl/utils/torch_functional.py + transformers {transformers.__version__} "
                      f"get_linear_schedule_with_warmup, torch {torch.__version__} LambdaLR",
                 "tests/golden/trainer/generate_lr_schedules.py", cases)
    print(f"wrote {len(cases)} cases to {out}")


if __name__ == "__main__":
    main()
