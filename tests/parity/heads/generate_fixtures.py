"""Fixtures of the heads parity tests (tests/parity/heads): tiny random models built with transformers 5.23.0
(nothing downloaded) and their outputs on one padded batch.

    generate_fixtures.py <out_dir>

For each case (qwen2_tied: Qwen2 with q/k/v biases and tied embeddings; llama_untied: Llama with an lm_head)
it writes under <out_dir>/<case>/:
  actor/   AutoModelForCausalLM.save_pretrained      critic/  AutoModelForTokenClassification(num_labels=1)
  reward/  AutoModelForSequenceClassification(num_labels=1)
  expected.safetensors  batch (input_ids, attention_mask, position_ids), actor log-probs / entropy at two
                        temperatures as verl's dp_actor computes them from transformers' logits, critic values
                        as dp_critic slices them, reward scores by transformers' pooling and by verl's rule
  expected.json         response_length, and the load report of AutoModelForTokenClassification /
                        AutoModelForSequenceClassification.from_pretrained(actor/, num_labels=1)
Exit code 77 (CTest skip) when transformers is missing.
"""
import json
import os
import sys

try:
    import torch
    import transformers
    from safetensors.torch import save_file
    from transformers import (AutoModelForCausalLM, AutoModelForSequenceClassification,
                              AutoModelForTokenClassification, LlamaConfig, Qwen2Config)
except ImportError as e:  # pragma: no cover
    print(f"heads parity skipped: transformers not installed: {e}")
    sys.exit(77)

TEMPERATURES = {"t1": 1.0, "t07": 0.7}
P, R = 5, 4


def config(case):
    common = dict(vocab_size=97, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=128, rms_norm_eps=1e-6,
                  initializer_range=0.2,  # larger than 0.02 so that the distributions are far from uniform
                  pad_token_id=0, eos_token_id=0, bos_token_id=1)  # pad = eos: the reward read-out rules differ
    if case == "qwen2_tied":
        return Qwen2Config(tie_word_embeddings=True, **common)
    return LlamaConfig(tie_word_embeddings=False, **common)


def batch(gen):
    """Left-padded prompts, right-padded responses; row 1 ends with a real eos (= pad id 0)."""
    ids = torch.randint(2, 97, (4, P + R), generator=gen)
    mask = torch.ones(4, P + R, dtype=torch.long)
    prompt_len = [5, 3, 1, 4]
    response_len = [4, 2, 3, 1]
    for b in range(4):
        mask[b, : P - prompt_len[b]] = 0
        mask[b, P + response_len[b]:] = 0
    ids[1, P + 1] = 0  # the real eos token that ends row 1's response
    ids = ids.masked_fill(mask == 0, 0)
    pos = torch.clamp(mask.cumsum(1) - 1, min=0)  # verl's compute_position_id_with_mask
    return ids, mask, pos


def main():
    out = sys.argv[1]
    transformers.logging.set_verbosity_error()
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    for case in ("qwen2_tied", "llama_untied"):
        d = os.path.join(out, case)
        os.makedirs(d, exist_ok=True)
        cfg = config(case)
        ids, mask, pos = batch(gen)
        t = ids.shape[1]
        tensors = {"input_ids": ids, "attention_mask": mask, "position_ids": pos}
        resp_mask = mask[:, -R:].bool()
        with torch.no_grad():
            actor = AutoModelForCausalLM.from_config(cfg).eval()
            actor.save_pretrained(os.path.join(d, "actor"))
            logits = actor(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=False).logits.float()
            for name, temp in TEMPERATURES.items():
                # verl 0.7.1 dp_actor: logits.div_(temperature); logprobs_from_logits; entropy_from_logits;
                # then [:, -response_length - 1 : -1]; masked by the response mask downstream.
                z = logits / temp
                lsm = torch.log_softmax(z, -1)[:, -R - 1 : -1]
                lp = lsm.gather(-1, ids[:, -R:].unsqueeze(-1)).squeeze(-1)
                ent = torch.logsumexp(z, -1)[:, -R - 1 : -1] - (torch.softmax(z, -1) * z).sum(-1)[:, -R - 1 : -1]
                tensors[f"log_probs_{name}"] = lp.masked_fill(~resp_mask, 0).contiguous()
                tensors[f"entropy_{name}"] = ent.masked_fill(~resp_mask, 0).contiguous()

            cfg_head = config(case)
            cfg_head.num_labels = 1
            critic = AutoModelForTokenClassification.from_config(cfg_head).eval()
            critic.score.bias.fill_(0.375)  # non-zero, so that the bias is checked
            critic.save_pretrained(os.path.join(d, "critic"))
            v = critic(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=False).logits.squeeze(-1)
            # verl 0.7.1 dp_critic: values[:, -response_length - 1 : -1], then values * response_mask.
            tensors["values"] = (v[:, -R - 1 : -1] * resp_mask).contiguous()

            reward = AutoModelForSequenceClassification.from_config(cfg_head).eval()
            reward.save_pretrained(os.path.join(d, "reward"))
            tensors["scores_transformers"] = reward(input_ids=ids, attention_mask=mask, position_ids=pos,
                                                    use_cache=False).logits.squeeze(-1).contiguous()
            hidden = reward.model(input_ids=ids, attention_mask=mask, position_ids=pos).last_hidden_state
            per_token = reward.score(hidden).squeeze(-1)
            # verl 0.7.1 RewardModelWorker: eos_mask_idx = argmax(position_ids * attention_mask).
            idx = torch.argmax(pos * mask, dim=-1)
            tensors["scores_verl"] = per_token[torch.arange(ids.shape[0]), idx].contiguous()
            # The batch is built so that the two read-out rules differ on row 1 (its real eos is the pad id).
            assert not torch.isclose(tensors["scores_verl"][1], tensors["scores_transformers"][1])
            assert torch.allclose(tensors["scores_verl"][[0, 2, 3]], tensors["scores_transformers"][[0, 2, 3]])

        info = {"response_length": R}
        transformers.logging.set_verbosity_error()
        for key, cls in (("critic_from_actor", AutoModelForTokenClassification),
                         ("reward_from_actor", AutoModelForSequenceClassification),
                         ("critic_from_reward", AutoModelForTokenClassification)):
            src = "reward" if key.endswith("reward") else "actor"
            _, li = cls.from_pretrained(os.path.join(d, src), num_labels=1, output_loading_info=True)
            info[key] = {"missing": sorted(li["missing_keys"]), "unexpected": sorted(li["unexpected_keys"])}
        save_file(tensors, os.path.join(d, "expected.safetensors"))
        with open(os.path.join(d, "expected.json"), "w") as f:
            json.dump(info, f, indent=1, sort_keys=True)
        print(f"{case}: fixtures written (transformers {transformers.__version__})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
