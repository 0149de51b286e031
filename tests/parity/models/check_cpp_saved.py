"""Reverse parity (tests/parity/models/): transformers 5.23 loads the model directories that verl-cpp's
save_causal_lm wrote (parity.models.cpp), with no missing, unexpected or mismatched keys, and computes the
same logits as verl-cpp did (written next to each model as cpp_logits.safetensors).

Usage: check_cpp_saved.py DIR. Exits 77 (CTest skip) when transformers is not importable or the C++ step
wrote nothing (it skipped), 1 on any mismatch.
"""
import os
import sys

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
try:
    import torch
    import transformers
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM
except ImportError as e:
    print(f"SKIP: transformers not installed: {e}")
    sys.exit(77)
transformers.utils.logging.disable_progress_bar()


def main():
    root = sys.argv[1]
    cases = sorted(d for d in os.listdir(root) if os.path.isfile(os.path.join(root, d, "config.json"))) \
        if os.path.isdir(root) else []
    if not cases:
        print(f"SKIP: no model directories under {root} (the C++ step parity.models.cpp skipped or failed)")
        sys.exit(77)
    failures = 0
    for name in cases:
        d = os.path.join(root, name)
        expected = load_file(os.path.join(d, "cpp_logits.safetensors"))
        model, info = AutoModelForCausalLM.from_pretrained(d, output_loading_info=True, dtype=torch.float32,
                                                           attn_implementation="sdpa")
        model.eval()
        bad_keys = {k: v for k, v in info.items() if k in ("missing_keys", "unexpected_keys", "mismatched_keys") and v}
        with torch.no_grad():
            logits = model(input_ids=expected["input_ids"], attention_mask=expected["attention_mask"],
                           position_ids=expected["position_ids"]).logits.float()
        real = expected["attention_mask"].bool()  # padding positions carry no meaning (see parity_models.cpp)
        diff = (logits - expected["logits"]).abs()[real].max().item()
        ok = not bad_keys and diff <= 1e-5
        failures += not ok
        print(f"{name}: {type(model).__name__}, loading info {bad_keys or 'clean'}, "
              f"max |logits diff| at real positions {diff:.3g} -> {'ok' if ok else 'FAIL'}")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
