"""Fixtures for verl-cpp's model parity tests (tests/parity/models/): tiny random-weight Llama, Mistral, Qwen2
and Qwen3 models made and saved by transformers itself (nothing is downloaded), with what transformers
computes for them: fp32 logits on a padded batch (left- and right-padded rows, explicit attention_mask and
position_ids) and greedy generation (model.generate(do_sample=False)) that stops at an eos for one row.

Usage: make_models.py OUT_DIR. Exits 77 (CTest skip) when transformers is not importable. Writes, per case,
OUT_DIR/<case>/ (save_pretrained output) + OUT_DIR/<case>/expected.safetensors, and OUT_DIR/MANIFEST.json last.
"""
import json
import os
import shutil
import sys

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

try:
    import torch
    import transformers
    from safetensors.torch import save_file
    from transformers import AutoConfig, AutoModelForCausalLM
except ImportError as e:  # the C++ parity tests skip too
    print(f"SKIP: transformers not installed: {e}")
    sys.exit(77)
transformers.utils.logging.disable_progress_bar()

BASE = dict(vocab_size=320, hidden_size=64, intermediate_size=112, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=64, rms_norm_eps=1e-6, hidden_act="silu",
            bos_token_id=1, eos_token_id=2, pad_token_id=0)

# name -> (model_type, config overrides, dtype, save_pretrained kwargs, sequence length of the logits batch)
CASES = {
    "llama_plain": ("llama", dict(rope_parameters={"rope_type": "default", "rope_theta": 10000.0}), torch.float32, {}, 10),
    "llama_llama3": ("llama", dict(rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 4.0,
                                                    "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                                    "original_max_position_embeddings": 64},
                                   max_position_embeddings=256, head_dim=32), torch.float32, {}, 12),
    "llama_linear_bias": ("llama", dict(rope_parameters={"rope_type": "linear", "factor": 2.0, "rope_theta": 10000.0},
                                        attention_bias=True, mlp_bias=True), torch.float32, {}, 10),
    "llama_dynamic": ("llama", dict(rope_parameters={"rope_type": "dynamic", "factor": 2.0, "rope_theta": 10000.0},
                                    max_position_embeddings=16), torch.float32, {}, 20),
    "mistral_window": ("mistral", dict(num_key_value_heads=1, sliding_window=4, rope_parameters={"rope_type": "default", "rope_theta": 1e6}),
                       torch.float32, {}, 10),
    "qwen2_tied_window": ("qwen2", dict(tie_word_embeddings=True, use_sliding_window=True, sliding_window=5,
                                        max_window_layers=1), torch.float32, {}, 10),
    "qwen3_sharded": ("qwen3", dict(head_dim=32, num_hidden_layers=3), torch.float32, {"max_shard_size": "150KB"}, 10),
    "qwen3_bf16": ("qwen3", dict(head_dim=16, tie_word_embeddings=True), torch.bfloat16, {}, 10),
}


def padded_batch(t, vocab, gen):
    """Three rows of length t: left-padded by 3, right-padded by 2, unpadded. Positions count real tokens
    from 0 (transformers' generate puts 0 on left padding); right padding continues the count."""
    ids = torch.randint(3, vocab, (3, t), generator=gen)
    mask = torch.ones(3, t, dtype=torch.long)
    mask[0, :3] = 0
    mask[1, t - 2:] = 0
    ids[mask == 0] = 0
    pos = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 0)
    pos[1] = torch.arange(t)
    return ids, mask, pos


def main():
    out = sys.argv[1]
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    manifest = {"transformers": transformers.__version__, "torch": torch.__version__, "cases": {}}
    for i, (name, (model_type, overrides, dtype, save_kwargs, t)) in enumerate(CASES.items()):
        torch.manual_seed(1000 + i)
        config = AutoConfig.for_model(model_type, **{**BASE, **overrides})
        model = AutoModelForCausalLM.from_config(config, attn_implementation="sdpa").eval()
        with torch.no_grad():  # weights far from transformers' small init, so every parameter matters
            for pname, p in model.named_parameters():
                if "norm" in pname:
                    p.copy_(1.0 + 0.2 * torch.randn_like(p))
                else:
                    p.normal_(0.0, 0.15)
        model = model.to(dtype)
        d = os.path.join(out, name)
        model.save_pretrained(d, **save_kwargs)

        loaded = {}

        def fresh(load_dtype=torch.float32):
            # "dynamic" RoPE is reloaded for every use: its rotary module keeps state between calls.
            if name == "llama_dynamic" or load_dtype not in loaded:
                loaded[load_dtype] = AutoModelForCausalLM.from_pretrained(
                    d, dtype=load_dtype, attn_implementation="sdpa").eval()
            return loaded[load_dtype]

        gen = torch.Generator().manual_seed(7 + i)
        ids, mask, pos = padded_batch(t, config.vocab_size, gen)
        with torch.no_grad():
            logits = fresh()(input_ids=ids, attention_mask=mask, position_ids=pos).logits.float()
            native = fresh(dtype)(input_ids=ids, attention_mask=mask, position_ids=pos).logits.float()
        # Generation: left-padded prompts; eos = the token row 0 produces at step 3, so row 0 stops early.
        p_ids, p_mask, _ = padded_batch(6, config.vocab_size, gen)
        p_ids[1], p_mask[1] = torch.flip(p_ids[1], [0]), torch.flip(p_mask[1], [0])  # left-pad row 1 too
        p_pos = (p_mask.cumsum(-1) - 1).masked_fill(p_mask == 0, 0)
        max_new = 14 if name == "llama_dynamic" else 10
        kw = dict(attention_mask=p_mask, position_ids=p_pos, do_sample=False, max_new_tokens=max_new, pad_token_id=0)
        with torch.no_grad():
            probe = fresh().generate(p_ids, eos_token_id=None, **kw)
            eos = int(probe[0, 6 + 3])
            seqs = fresh().generate(p_ids, eos_token_id=eos, **kw)
        save_file({"input_ids": ids, "attention_mask": mask, "position_ids": pos, "logits": logits.contiguous(),
                   "logits_native": native.contiguous(), "prompt_ids": p_ids, "prompt_mask": p_mask,
                   "prompt_position_ids": p_pos, "sequences": seqs.contiguous(),
                   "eos": torch.tensor([eos]), "max_new_tokens": torch.tensor([max_new])},
                  os.path.join(d, "expected.safetensors"))
        manifest["cases"][name] = {"model_type": model_type, "dtype": str(dtype).removeprefix("torch."),
                                   "sharded": os.path.exists(os.path.join(d, "model.safetensors.index.json")),
                                   "tied": bool(config.tie_word_embeddings)}
    with open(os.path.join(out, "MANIFEST.json"), "w") as f:
        json.dump(manifest, f, indent=2)
    print(f"wrote {len(CASES)} model fixtures to {out}")


if __name__ == "__main__":
    main()
