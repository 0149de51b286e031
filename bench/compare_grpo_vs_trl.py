#!/usr/bin/env python3
"""One GRPO training step, side by side: TRL's GRPOTrainer vs verl-cpp's PPOTrainer<verl::GRPO<>>
(bench/bench_grpo_step.cpp --workload), same weights, prompts, batch shape and settings, CPU, float32, in ONE run.

What is the same on both sides:
  weights      one random-initialised model (transformers, torch.manual_seed(0)) saved as a Hugging Face directory;
               TRL loads it with from_pretrained, verl-cpp with verl::models::Actor::load / Reference::load
  tokenizer    a word-level tokenizer written next to the weights: token i <-> the word "i" (0 = <pad>, 1 = </s>), so
               a prompt text "17 523 9" tokenises to exactly the ids verl-cpp is given (checked before the run)
  prompts      P prompts per step, all of --prompt-length tokens (no padding), ids uniform in [2, vocab), the same
               prompts in the same order on both sides (TRL: shuffle_dataset=False)
  rollout      n samples per prompt, temperature 1, top-p 1, no top-k; every response exactly --response-length
               tokens: TRL gets generation_kwargs min_new_tokens = max_completion_length (the EOS logit is masked until
               then), verl-cpp SamplingParams::ignore_eos with max_tokens = the same length (checked after the run:
               TRL's completion_ids and verl-cpp's response_length/mean)
  reward       the fraction of response tokens with an even id, computed on the decoded text on both sides
  algorithm    GRPO advantages normalised by the group std (TRL scale_rewards="group"), PPO clip 0.2, token-mean loss
               (TRL loss_type="dapo", verl's token-mean), k3 KL loss to the frozen initial model with coefficient
               --beta (TRL beta, verl's kl_loss_coef; 0 is not offered because verl::GRPO<> always has its KL loss),
               AdamW lr --lr, weight decay 0, constant schedule, gradient clipping at 1.0; --optim fused (default:
               torch's fused AdamW kernel on both sides, TRL's default) or plain (the unfused AdamW on both sides)
  batch        ONE optimizer step per generated batch, no micro-batching: TRL per_device_train_batch_size = P x n,
               steps_per_generation = 1, gradient_accumulation_steps = 1, num_iterations = 1; verl-cpp
               ppo_mini_batch_size = P (prompts), micro-batch = log-prob micro-batch = P x n sequences, ppo_epochs 1
  precision    float32 (TRL bf16=False), no gradient checkpointing (TRL's default is on), no vLLM (TRL generates with
               transformers' generate), CPU
  threads      --threads intra-op threads on both sides (torch.set_num_threads here, OMP_NUM_THREADS and
               at::set_num_threads in the C++ process)
  timing       the first --warmup steps are run and left out; the table is the mean over --steps further steps
  old log-probs --old-log-probs bypass (default): verl-cpp takes the behaviour log-probs from the sampler (verl's
               algorithm.rollout_correction.bypass_mode) and, the update being on-policy, trains with the current
               log-probs detached, as TRL does when it skips that forward pass (num_iterations 1, one step per
               generation): the same work and, on verl-cpp's side, the same weights as the recompute mode (tested).
               --old-log-probs recompute: verl's default pipeline, which recomputes them in a forward pass of the
               actor every step (timing_s/old_log_prob, also giving actor/entropy): one forward pass more than TRL,
               shown under log-probs.

Phases (seconds per step):
  generation   verl-cpp timing_s/gen | TRL GRPOTrainer._generate (tokenise prompts, generate, decode)
  reward       timing_s/reward       | GRPOTrainer._calculate_rewards
  log-probs    timing_s/old_log_prob + timing_s/ref | _get_per_token_logps_and_entropies under no_grad (reference)
  update       timing_s/update_actor | step - _generate_and_score_completions (loss forward, backward, clip, AdamW)
  other        the rest of the step (KL/advantages, padding, metrics)
  step         verl-cpp: wall time of trainer.step(); TRL: on_step_begin -> on_step_end of the Trainer loop
tokens/s is (prompt + response tokens of the batch) / step time, verl's perf/throughput on one device; "gen tok/s"
is response tokens / generation time. Ratios are verl-cpp / TRL throughput (TRL time / verl-cpp time). "CPU s/step"
is the process's CPU time per step (all threads): on a loaded machine, where a process waits for the CPU, it shows
the work each side does better than wall time (with --threads 1 especially; with 2 threads it includes OpenMP
spinning). The load average before and after the run is printed.

TRL is NOT part of this repository. Install it into a separate directory, leaving .venv's torch 2.11.0 and
transformers 5.23.0 alone (TRL 1.16.0 is the version measured; it works with transformers 5.23.0):

    .venv/bin/pip install --target /tmp/trl-pkgs --no-deps trl==1.16.0 accelerate==1.15.0 datasets==5.2.0 \\
        pandas psutil pyarrow dill multiprocess xxhash python-dateutil six tzdata requests urllib3 \\
        charset-normalizer certifi
    cmake --build build --target verl_bench_grpo_step
    PYTHONPATH=/tmp/trl-pkgs .venv/bin/python bench/compare_grpo_vs_trl.py --bench build/bench/verl_bench_grpo_step \\
        --model quickstart
    PYTHONPATH=/tmp/trl-pkgs .venv/bin/python bench/compare_grpo_vs_trl.py --bench build/bench/verl_bench_grpo_step \\
        --model qwen0.5b --prompts 2 --n 4 --prompt-length 32 --response-length 32

Exits 77 (skipped) when TRL cannot be imported, 1 when a check of sameness fails.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from collections import defaultdict

MODELS = {
    # examples/00_quickstart.cpp's small_llama(); batch defaults: the quickstart's GRPO batch (16 prompts x 8)
    "quickstart": dict(prompts=16, n=8, prompt_length=6, response_length=4),
    # Qwen2.5-0.5B's shape (random weights)
    "qwen0.5b": dict(prompts=2, n=4, prompt_length=32, response_length=32),
}


def make_model(name: str):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    common = dict(pad_token_id=0, eos_token_id=1, bos_token_id=None, rms_norm_eps=1e-6)
    if name == "quickstart":
        cfg = LlamaConfig(vocab_size=16, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                          num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32,
                          tie_word_embeddings=False, **common)
        return LlamaForCausalLM(cfg)
    if name == "qwen0.5b":
        cfg = Qwen2Config(vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                          num_attention_heads=14, num_key_value_heads=2, max_position_embeddings=32768,
                          rope_theta=1000000.0, tie_word_embeddings=True, **common)
        return Qwen2ForCausalLM(cfg)
    raise SystemExit(f"unknown model {name!r}; expected one of {sorted(MODELS)}")


def make_tokenizer(vocab: int):
    """Word-level: id i <-> the word str(i); 0 = <pad>, 1 = </s> (special, skipped when decoding)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = {"<pad>": 0, "</s>": 1}
    words.update({str(i): i for i in range(2, vocab)})
    tok = Tokenizer(models.WordLevel(vocab=words, unk_token="<pad>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", padding_side="left")


def even_fraction(text: str) -> float:
    """The reward of both sides: the fraction of words of the decoded response that are even ids."""
    ids = [int(w) for w in text.split()]
    return sum(1 for i in ids if i % 2 == 0) / len(ids) if ids else 0.0


def run_verl(bench: str, model_dir: str, prompts, args) -> dict:
    spec = {"model": model_dir, "prompts": prompts, "prompts_per_step": args.prompts, "n": args.n,
            "response_length": args.response_length, "steps": args.steps, "warmup_steps": args.warmup,
            "threads": args.threads, "lr": args.lr, "kl_coef": args.beta, "temperature": 1.0, "seed": args.seed,
            "eos_token_id": 1, "pad_token_id": 0, "fused_adamw": args.optim == "fused",
            "bypass_mode": args.old_log_probs == "bypass"}
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(spec, f)
        path = f.name
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    try:
        proc = subprocess.run([bench, "--workload", path], capture_output=True, text=True, env=env)
    finally:
        os.unlink(path)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr)
        raise SystemExit(f"{bench} --workload failed with exit code {proc.returncode}")
    sys.stderr.write(proc.stderr)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_trl(model_dir: str, prompt_texts, args) -> list[dict]:
    import torch
    import pyarrow as pa
    from datasets import Dataset
    from datasets.table import InMemoryTable
    from transformers import AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    seen_lengths = set()

    def reward_even(completions, completion_ids, **kwargs):
        seen_lengths.update(len(c) for c in completion_ids)
        return [even_fraction(c) for c in completions]

    per_step = args.prompts * args.n
    total_steps = args.warmup + args.steps
    with tempfile.TemporaryDirectory() as out_dir:
        config = GRPOConfig(
            output_dir=out_dir, use_cpu=True, bf16=False, fp16=False, gradient_checkpointing=False,
            model_init_kwargs={"dtype": torch.float32},
            per_device_train_batch_size=per_step, num_generations=args.n, steps_per_generation=1,
            gradient_accumulation_steps=1, num_iterations=1, max_steps=total_steps,
            max_completion_length=args.response_length,
            generation_kwargs={"min_new_tokens": args.response_length},
            temperature=1.0, top_p=1.0, top_k=0, min_p=None, repetition_penalty=1.0,
            beta=args.beta, epsilon=0.2, loss_type="dapo", scale_rewards="group",
            learning_rate=args.lr, lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0, max_grad_norm=1.0,
            optim="adamw_torch_fused" if args.optim == "fused" else "adamw_torch",
            shuffle_dataset=False, seed=args.seed, logging_steps=1, save_strategy="no", report_to="none",
            disable_tqdm=True, dataloader_num_workers=0, log_completions=False,
        )
        # Built with an explicit fingerprint: Dataset.from_dict hashes its state with dill, which fails on
        # pyarrow 26's MonthDayNano type (datasets 5.2.0 + dill 0.4.1).
        dataset = Dataset(InMemoryTable(pa.table({"prompt": prompt_texts})), fingerprint="compare_grpo_vs_trl")
        trainer = GRPOTrainer(model=model_dir, reward_funcs=reward_even, args=config, train_dataset=dataset,
                              processing_class=tokenizer)

        acc = defaultdict(float)

        def timed(name, fn, when=None):
            def wrapper(*a, **k):
                t0 = time.perf_counter()
                result = fn(*a, **k)
                if when is None or when():
                    acc[name] += time.perf_counter() - t0
                return result
            return wrapper

        trainer._generate = timed("gen", trainer._generate)
        trainer._calculate_rewards = timed("reward", trainer._calculate_rewards)
        trainer._get_per_token_logps_and_entropies = timed(
            "logprob", trainer._get_per_token_logps_and_entropies, when=lambda: not torch.is_grad_enabled())
        trainer._generate_and_score_completions = timed("block", trainer._generate_and_score_completions)

        steps: list[dict] = []

        class StepTimer(TrainerCallback):
            def on_step_begin(self, a, state, control, **kw):
                acc.clear()
                self.t0 = time.perf_counter()
                self.c0 = time.process_time()  # CPU seconds of all threads of this process

            def on_step_end(self, a, state, control, **kw):
                wall = time.perf_counter() - self.t0
                row = {"wall": wall, "cpu": time.process_time() - self.c0, "gen": acc["gen"], "reward": acc["reward"], "logprob": acc["logprob"],
                       "update": wall - acc["block"], "other": acc["block"] - acc["gen"] - acc["reward"] - acc["logprob"],
                       "warmup": len(steps) < args.warmup}
                steps.append(row)
                print(f"TRL step {len(steps)}/{total_steps}{' (warm-up)' if row['warmup'] else ''}: {wall:.3f} s",
                      file=sys.stderr)

        trainer.add_callback(StepTimer())
        trainer.train()
    if seen_lengths != {args.response_length}:
        raise SystemExit(f"TRL generated completions of lengths {sorted(seen_lengths)}, expected all "
                         f"{args.response_length}: the fixed response length did not hold")
    return steps


def mean(rows, key):
    rows = [r for r in rows if not r["warmup"]]
    return sum(r[key] for r in rows) / len(rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bench", required=True, help="path of verl_bench_grpo_step")
    ap.add_argument("--model", default="quickstart", choices=sorted(MODELS))
    ap.add_argument("--prompts", type=int, help="prompts per step (default: per model)")
    ap.add_argument("--n", type=int, help="samples per prompt (default: per model)")
    ap.add_argument("--prompt-length", type=int)
    ap.add_argument("--response-length", type=int)
    ap.add_argument("--steps", type=int, default=3, help="timed steps")
    ap.add_argument("--warmup", type=int, default=1, help="steps run first and not timed")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--beta", type=float, default=0.04, help="KL loss coefficient (TRL beta, verl kl_loss_coef)")
    ap.add_argument("--lr", type=float, default=1e-6)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--order", default="verl,trl", help="which side runs first")
    ap.add_argument("--optim", default="fused", choices=["fused", "plain"],
                    help="AdamW on both sides: torch's fused kernel (transformers' default with torch >= 2.8, "
                         "optim=adamw_torch_fused; verl-cpp's FusedAdamW) or the unfused one (adamw_torch; "
                         "torch::optim::AdamW, verl's default)")
    ap.add_argument("--old-log-probs", default="bypass", choices=["bypass", "recompute"],
                    help="verl-cpp's behaviour log-probs: the sampler's (bypass mode; TRL does no pass for them "
                         "on-policy) or recomputed by a forward pass of the actor (verl's default pipeline)")
    args = ap.parse_args()
    for k, v in MODELS[args.model].items():
        if getattr(args, k) is None:
            setattr(args, k, v)

    warnings.filterwarnings("ignore")
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    try:
        import trl  # noqa: F401
    except ImportError as e:
        print(f"SKIP: TRL is not importable ({e}); see this script's docstring for how to install it "
              f"(PYTHONPATH=/tmp/trl-pkgs)", file=sys.stderr)
        return 77
    import numpy as np
    import torch
    import transformers

    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    model = make_model(args.model)
    vocab = model.config.vocab_size
    n_params = sum(p.numel() for p in model.parameters())
    rng = np.random.default_rng(args.seed)
    count = args.prompts * (args.warmup + args.steps)
    prompts = [[int(t) for t in rng.integers(2, vocab, size=args.prompt_length)] for _ in range(count)]
    texts = [" ".join(str(t) for t in p) for p in prompts]

    print(f"# TRL {trl.__version__}, transformers {transformers.__version__}, torch {torch.__version__}, "
          f"threads {args.threads}; model {args.model} ({n_params / 1e6:.1f}M parameters, vocab {vocab}); "
          f"{args.prompts} prompts x n={args.n}, prompt {args.prompt_length} + response {args.response_length} "
          f"tokens; beta {args.beta}; {args.warmup} warm-up + {args.steps} timed steps; AdamW {args.optim}; "
          f"verl-cpp old log-probs: {args.old_log_probs}")
    with tempfile.TemporaryDirectory() as d:
        model.save_pretrained(d)
        del model
        tokenizer = make_tokenizer(vocab)
        tokenizer.save_pretrained(d)
        for p, t in zip(prompts[:4], texts[:4]):
            got = tokenizer(t, add_special_tokens=False)["input_ids"]
            if got != p:
                raise SystemExit(f"tokenizer check failed: {t!r} -> {got}, expected {p}")
        results = {}
        for side in args.order.split(","):
            t0 = time.perf_counter()
            if side == "verl":
                results["verl"] = run_verl(args.bench, d, prompts, args)["steps"]
                bad = {r["response_length_mean"] for r in results["verl"]} - {float(args.response_length)}
                if bad:
                    raise SystemExit(f"verl-cpp response_length/mean {sorted(bad)}, expected {args.response_length}")
                for r in results["verl"]:
                    r["logprob"] = r["old_log_prob"] + r["ref"]
                    r["other"] = r["other"] + r["adv"]
            elif side == "trl":
                results["trl"] = run_trl(d, texts, args)
            else:
                raise SystemExit(f"--order: unknown side {side!r} (verl, trl)")
            print(f"# {side}: {time.perf_counter() - t0:.1f} s in all", file=sys.stderr)

    tokens = args.prompts * args.n * (args.prompt_length + args.response_length)
    gen_tokens = args.prompts * args.n * args.response_length
    keys = ("gen", "reward", "logprob", "update", "other", "wall", "cpu")
    m = {name: {k: mean(results[name], k) for k in keys} for name in ("trl", "verl")}
    label = {"trl": f"TRL {trl.__version__} GRPOTrainer", "verl": "verl-cpp PPOTrainer<GRPO<>>"}
    print("| system | generation | reward | log-probs | update | other | step | tokens/s | gen tok/s | CPU s/step |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name in ("trl", "verl"):
        r = m[name]
        print(f"| {label[name]} | {r['gen']:.3f} | {r['reward']:.4f} | {r['logprob']:.3f} | {r['update']:.3f} | "
              f"{r['other']:.3f} | {r['wall']:.3f} | {tokens / r['wall']:.1f} | {gen_tokens / r['gen']:.1f} | "
              f"{r['cpu']:.3f} |")
    t, v = m["trl"], m["verl"]
    ratio = {k: (t[k] / v[k] if v[k] > 0 else float("inf")) for k in keys}
    print(f"| ratio (TRL time / verl-cpp time) | {ratio['gen']:.2f}x | {ratio['reward']:.2f}x | "
          f"{ratio['logprob']:.2f}x | {ratio['update']:.2f}x | {ratio['other']:.2f}x | **{ratio['wall']:.2f}x** | "
          f"**{ratio['wall']:.2f}x** | {ratio['gen']:.2f}x | {ratio['cpu']:.2f}x |")
    print(f"# per-step wall seconds (warm-up first): TRL {[round(r['wall'], 3) for r in results['trl']]}, "
          f"verl-cpp {[round(r['wall'], 3) for r in results['verl']]}")
    print(f"# load average (1, 5, 15 min) before: {load_before}, after: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
