#!/usr/bin/env python3
"""Golden values for verl-cpp's trainer metrics (include/verl/trainer/{data_metrics,progress_bar}.hpp).

Runs verl 0.7.1's OWN functions (verl/trainer/ppo/metric_utils.py compute_data_metrics,
compute_timing_metrics, compute_throughout_metrics, process_validation_metrics, on a verl DataProto) on random
batches with fixed seeds, and tqdm's own tqdm.format_meter / tqdm.format_num / tqdm.format_interval on a
grid of progress states, and writes tests/golden/trainer/metrics.json in the format of
tests/support/golden.hpp: tensors under "inputs", scalar arguments and the reference's metric dict under
"config" ("metrics": name -> value, NaN/inf as strings).

Regenerate (one command):

    /tmp/golden-venv-adv/bin/python tests/golden/trainer/make_metrics_golden.py

where /tmp/golden-venv-adv is a venv with numpy, tqdm and `pip install --no-deps verl==0.7.1`, and torch taken
from the repository's .venv (a .pth file pointing at /work/main/.venv/lib/python3.11/site-packages), so the
values come from the same LibTorch 2.11 the C++ tests link. `import verl` must succeed (tensordict etc.).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import torch
import tqdm as tqdm_mod
import verl
from tqdm import tqdm
from verl import DataProto
from verl.trainer.ppo import metric_utils as mu

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from golden_io import case, write_golden  # noqa: E402

GENERATOR = "tests/golden/trainer/make_metrics_golden.py"


def num(x):
    x = float(x)
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return x


def make_batch(seed, b, p, r, dtype, mask_dtype, aborted=(), full_prompt=(), full_response=()):
    """A verl-like batch: left-padded prompts of width p, right-padded responses of width r."""
    g = torch.Generator().manual_seed(seed)
    prompt_len = torch.randint(1, p + 1, (b,), generator=g)
    resp_len = torch.randint(1, r + 1, (b,), generator=g)
    for i in aborted:
        resp_len[i] = 0
    for i in full_prompt:
        prompt_len[i] = p
    for i in full_response:
        resp_len[i] = r
    cols_p = torch.arange(p).unsqueeze(0)
    cols_r = torch.arange(r).unsqueeze(0)
    prompt_mask = cols_p >= (p - prompt_len).unsqueeze(1)  # left padding
    response_mask = cols_r < resp_len.unsqueeze(1)          # right padding
    attention_mask = torch.cat([prompt_mask, response_mask], dim=1).to(mask_dtype)
    fmask = response_mask.to(dtype)
    scores = torch.zeros(b, r, dtype=dtype)
    # the score sits on the last valid response token, as verl's reward manager writes it
    for i in range(b):
        if resp_len[i] > 0:
            scores[i, resp_len[i] - 1] = torch.randn((), generator=g, dtype=dtype)
    kl = torch.randn(b, r, generator=g, dtype=dtype) * 0.01 * fmask
    rewards = scores - kl
    advantages = torch.randn(b, r, generator=g, dtype=dtype) * fmask
    returns = torch.randn(b, r, generator=g, dtype=dtype) * fmask
    values = (returns + 0.3 * torch.randn(b, r, generator=g, dtype=dtype)) * fmask
    responses = torch.randint(0, 100, (b, r), generator=g)
    return {
        "responses": responses,
        "attention_mask": attention_mask,
        "response_mask": response_mask.to(mask_dtype),
        "token_level_scores": scores,
        "token_level_rewards": rewards,
        "advantages": advantages,
        "returns": returns,
        "values": values,
    }


def data_cases():
    out = []
    specs = [
        # name, seed, B, P, R, dtype, mask dtype, aborted rows, full prompts, full responses, use_critic
        ("data/critic_f32", 1, 6, 5, 7, torch.float32, torch.int64, (2,), (0,), (3,), True),
        ("data/no_critic_f32", 2, 5, 4, 6, torch.float32, torch.int64, (), (), (1, 4), False),
        ("data/critic_f64_bool_masks", 3, 4, 3, 5, torch.float64, torch.bool, (0,), (1, 2), (), True),
        ("data/large_f32", 4, 32, 8, 32, torch.float32, torch.int64, (5, 17), (3,), (9, 10), True),
        ("data/float_masks", 5, 3, 2, 4, torch.float32, torch.float32, (), (), (), True),
    ]
    for name, seed, b, p, r, dtype, mdt, ab, fp, fr, critic in specs:
        t = make_batch(seed, b, p, r, dtype, mdt, ab, fp, fr)
        batch = DataProto.from_dict(tensors=t)
        metrics = mu.compute_data_metrics(batch, use_critic=critic)
        inputs = {k: v for k, v in t.items() if k != "responses" and (critic or k != "values")}
        out.append(case(name, inputs, {},
                        {"use_critic": critic, "metrics": {k: num(v) for k, v in sorted(metrics.items())}}))

        # timing and throughput on the same batch
        timing_raw = {"gen": 1.25, "reward": 0.125, "old_log_prob": 0.5, "ref": 0.375, "adv": 0.01,
                      "update_actor": 2.5, "step": 4.875 + seed}
        if critic:
            timing_raw.update({"values": 0.3, "update_critic": 1.1})
        tm = mu.compute_timing_metrics(batch, timing_raw)
        batch.meta_info["global_token_num"] = torch.sum(batch.batch["attention_mask"], dim=-1).tolist()
        n_gpus = 1 + seed % 3
        th = mu.compute_throughout_metrics(batch, timing_raw, n_gpus=n_gpus)
        out.append(case(name.replace("data/", "timing/"), {"attention_mask": t["attention_mask"]}, {},
                        {"timing_raw": timing_raw, "response_width": r, "n_gpus": n_gpus,
                         "timing_metrics": {k: num(v) for k, v in sorted(tm.items())},
                         "throughput_metrics": {k: num(v) for k, v in sorted(th.items())}}))
    return out


def validation_cases():
    out = []
    rng = np.random.default_rng(7)
    # 2 data sources; uids with 1, 3 and 4 responses (so mean@1, mean@3/std@3, mean@4/std@4 mix); "acc" core var
    sources, uids, reward, acc = [], [], [], []
    layout = [("gsm8k", "u0", 4), ("gsm8k", "u1", 4), ("gsm8k", "u2", 3), ("math", "m0", 1), ("math", "m1", 2),
              ("math", "m2", 2)]
    for src, uid, n in layout:
        for _ in range(n):
            sources.append(src)
            uids.append(uid)
            reward.append(float(rng.normal()))
            acc.append(float(rng.integers(0, 2)))
    perm = rng.permutation(len(sources))  # interleave samples: grouping must not rely on order
    sources = [sources[i] for i in perm]
    uids = [uids[i] for i in perm]
    reward = [reward[i] for i in perm]
    acc = [acc[i] for i in perm]
    for name, infos in [("validation/acc_and_reward", {"reward": reward, "acc": acc}),
                        ("validation/reward_only", {"reward": reward})]:
        nested = mu.process_validation_metrics(np.array(sources, dtype=object), uids, infos)
        flat = {}
        for src, v2m in nested.items():
            core_var = "acc" if "acc" in v2m else "reward"
            for var, m2v in v2m.items():
                n_max = max(int(k.split("@")[-1].split("/")[0]) for k in m2v)
                for metric, val in m2v.items():
                    core = var == core_var and any(metric.startswith(p) for p in ["mean", "maj", "best"]) \
                        and f"@{n_max}" in metric
                    flat[f"{'val-core' if core else 'val-aux'}/{src}/{var}/{metric}"] = num(val)
        out.append(case(name, {}, {}, {"data_sources": sources, "uids": uids, "infos": infos,
                                       "metrics": dict(sorted(flat.items()))}))
    return out


def progress_cases():
    rows = []
    grid = [
        # n, total, elapsed, prefix, postfix, ascii, ncols
        (0, 100, 0.0, "rollout", None, False, None),
        (37, 100, 12.3, "rollout", None, False, None),
        (37, 100, 12.3, "", "loss=0.25, kl=1e-05", False, None),
        (99, 100, 4000.0, "update", "reward=0.5", True, None),
        (100, 100, 61.0, "update", None, False, None),
        (3, 7, 9.0, "slow", None, False, None),          # < 1 it/s: s/it
        (5, 0, 2.0, "no total", None, False, None),      # unknown total
        (12, 10, 3.0, "overshoot", None, False, None),   # n > total: total dropped, as tqdm
        (250, 1000, 1.5, "steps", "a=1", False, 80),     # ncols: bar fills the line
        (1, 3, 0.5, "x", None, True, 30),
    ]
    for n, total, elapsed, prefix, postfix, ascii_, ncols in grid:
        s = tqdm.format_meter(n, total, elapsed, ncols=ncols, prefix=prefix, ascii=ascii_, postfix=postfix)
        rows.append({"n": n, "total": total, "elapsed": elapsed, "prefix": prefix, "postfix": postfix or "",
                     "ascii": ascii_, "ncols": ncols or 0, "out": s})
    nums = [0.0, 1.0, 0.5, 0.123456, 123456.0, 1e-05, 2.5e-07, -3.14159, 1234.5, 0.001, 100.0, 12345678.9]
    fmt_nums = [{"x": x, "out": tqdm.format_num(x)} for x in nums]
    intervals = [{"t": t, "out": tqdm.format_interval(t)} for t in [0, 59.9, 60, 3599, 3600, 86399, 360000.7]]
    return [case("progress/format_meter", {}, {}, {"rows": rows, "format_num": fmt_nums, "format_interval": intervals})]


def console_cases():
    """verl's console line (verl/utils/logger/aggregate_logger.py concat_dict_to_str) for chosen values."""
    from verl.utils.logger.aggregate_logger import concat_dict_to_str

    data = {"a/x": 0.1 + 0.2, "b/tiny": 1e-05, "c/big": 1e16, "d/one": 1.0, "e/neg": -2.5e-7, "f/int_like": 123456789.0,
            "g/frac": 0.0001, "h/nan": float("nan"), "i/inf": float("-inf"), "j/e15": 1e15, "k/zero": -0.0}
    return [case("console/line", {}, {}, {"step": 7, "metrics": {k: num(v) for k, v in data.items()},
                                          "out": concat_dict_to_str(data, step=7)})]


def main():
    # Metric dicts are written with sorted keys: verl builds some from sets, whose order varies with the hash seed.
    torch.set_num_threads(1)
    cases = data_cases() + validation_cases() + progress_cases() + console_cases()
    write_golden(HERE / "metrics.json",
                 f"verl {verl.__version__} (PyPI) verl/trainer/ppo/metric_utils.py and "
                 f"verl/utils/logger/aggregate_logger.py; tqdm {tqdm_mod.__version__} tqdm.format_meter",
                 GENERATOR, cases)


if __name__ == "__main__":
    main()
