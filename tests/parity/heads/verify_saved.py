"""Reverse heads parity: what verl-cpp saves loads in transformers 5.23.0.

    verify_saved.py <verl_parity_heads executable> <fixture_dir> <out_dir> <case>...

For each case (one Python process for all, to import transformers once), runs
`verl_parity_heads <fixture_dir> <case> save <out_dir>/<case>` (the C++ side loads the fixture's critic and
reward model and saves them), then loads <out_dir>/critic with AutoModelForTokenClassification and
<out_dir>/reward with AutoModelForSequenceClassification: no missing or unexpected keys, config.json's
architectures / id2label / label2id as transformers writes them, and outputs equal (<= 1e-5) to the C++
outputs and to the fixture's expected values. Exit 77 (CTest skip) without transformers or fixtures.
"""
import json
import os
import subprocess
import sys

try:
    import torch
    import transformers
    from safetensors.torch import load_file
    from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification
except ImportError as e:  # pragma: no cover
    print(f"heads reverse parity skipped: transformers not installed: {e}")
    sys.exit(77)


def main():
    exe, fixtures, out_root = sys.argv[1:4]
    failures = 0
    for case in sys.argv[4:]:
        src = os.path.join(fixtures, case)
        if not os.path.exists(os.path.join(src, "expected.safetensors")):
            print(f"heads reverse parity skipped: no fixtures at {src}")
            return 77
        failures += verify(exe, fixtures, case, os.path.join(out_root, case))
    return 1 if failures else 0


def verify(exe, fixtures, case, out):
    src = os.path.join(fixtures, case)
    subprocess.run([exe, fixtures, case, "save", out], check=True)
    transformers.logging.set_verbosity_error()
    exp = load_file(os.path.join(src, "expected.safetensors"))
    cpp = load_file(os.path.join(out, "cpp_outputs.safetensors"))
    ids, mask, pos = exp["input_ids"], exp["attention_mask"], exp["position_ids"]
    r = json.load(open(os.path.join(src, "expected.json")))["response_length"]
    failures = 0

    def check(ok, what):
        nonlocal failures
        failures += 0 if ok else 1
        print(("ok       " if ok else "MISMATCH ") + f"{case}: {what}")

    def close(a, b, what):
        d = (a.double() - b.double()).abs().max().item()
        check(d <= 1e-5, f"{what}: max |diff| = {d:.3g}")

    for sub, cls, arch in (("critic", AutoModelForTokenClassification, "ForTokenClassification"),
                           ("reward", AutoModelForSequenceClassification, "ForSequenceClassification")):
        cfg = json.load(open(os.path.join(out, sub, "config.json")))
        check(len(cfg["architectures"]) == 1 and cfg["architectures"][0].endswith(arch),
              f"{sub}: architectures {cfg['architectures']}")
        check(cfg.get("id2label") == {"0": "LABEL_0"} and cfg.get("label2id") == {"LABEL_0": 0},
              f"{sub}: id2label {cfg.get('id2label')}, label2id {cfg.get('label2id')}")
        model, info = cls.from_pretrained(os.path.join(out, sub), output_loading_info=True)
        check(type(model).__name__.endswith(arch) and model.config.num_labels == 1,
              f"{sub}: transformers built {type(model).__name__} with num_labels {model.config.num_labels}")
        check(not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"],
              f"{sub}: loading info {info}")
        model.eval()
        with torch.no_grad():
            logits = model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=False).logits.squeeze(-1)
        if sub == "critic":
            values = logits[:, -r - 1 : -1] * mask[:, -r:]
            close(values, cpp["values"], "critic: transformers on the saved directory vs verl-cpp values")
            close(values, exp["values"], "critic: transformers on the saved directory vs the original critic")
        else:
            close(logits, cpp["scores_transformers"], "reward: transformers on the saved directory vs verl-cpp scores")
            close(logits, exp["scores_transformers"], "reward: transformers on the saved directory vs the original")
    return failures


if __name__ == "__main__":
    sys.exit(main())
