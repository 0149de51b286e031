"""Writes golden-vector files in the format tests/support/golden.hpp reads (see that header).

Generators (tests/golden/generate_*.py) call the reference implementation (verl's or TRL's own Python
functions, installed from PyPI into a scratch venv) and store its inputs and outputs with write_golden().
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

_DTYPES = {torch.float32: "float32", torch.float64: "float64", torch.int64: "int64", torch.bool: "bool"}


def _number(x: float) -> Any:
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return x


def tensor_to_json(t: torch.Tensor) -> dict:
    """A tensor as {"dtype", "shape", "data"}; floats are stored as float64 (exact for float32)."""
    t = t.detach().cpu()
    if t.dtype not in _DTYPES:
        raise TypeError(f"golden tensors must be one of {list(_DTYPES.values())}, got {t.dtype}")
    flat = t.reshape(-1)
    if t.dtype.is_floating_point:
        data = [_number(float(v)) for v in flat.double().tolist()]
    elif t.dtype == torch.bool:
        data = [1 if v else 0 for v in flat.tolist()]
    else:
        data = [int(v) for v in flat.tolist()]
    return {"dtype": _DTYPES[t.dtype], "shape": list(t.shape), "data": data}


def case(name: str, inputs: Mapping[str, torch.Tensor], outputs: Mapping[str, torch.Tensor],
         config: Mapping[str, Any] | None = None) -> dict:
    return {"name": name, "config": dict(config or {}),
            "inputs": {k: tensor_to_json(v) for k, v in inputs.items()},
            "outputs": {k: tensor_to_json(v) for k, v in outputs.items()}}


def write_golden(path: Path, reference: str, generator: str, cases: Sequence[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"reference": reference, "generator": generator, "cases": list(cases)}
    path.write_text(json.dumps(doc, separators=(",", ":")) + "\n")
