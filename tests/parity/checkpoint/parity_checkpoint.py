"""Checkpoint I/O parity between verl-cpp (driven through ckpt_parity_tool) and the reference Python packages.

Cases (one CTest entry each):
  read          files written by safetensors 0.8.0 (torch and numpy save_file, every dtype, metadata) and a
                hand-made file with every dtype of the format (F6 included): verl reads the same dtypes, shapes,
                bytes and LibTorch dtypes as the reference, zero-copy.
  write         verl's save_safetensors of the tensors it read is byte-identical to safetensors' save_file
                (one metadata key; with several, equal headers as JSON); the reference loads verl's files.
  hostile       118 valid and malformed files: verl accepts exactly the files the reference accepts, except the
                documented stricter rules (hostile_cases.py).
  sharded       a sharded directory made by huggingface_hub's split_torch_state_dict_into_shards + save_file +
                transformers' index format: verl reads it; verl's save_checkpoint of the same tensors writes the
                same files byte for byte, and huggingface_hub.load_torch_model loads them.
  transformers  a tiny Llama saved by transformers' save_pretrained with small shards: verl reads it; verl's
                save_checkpoint writes the same shard bytes and weight map, and from_pretrained loads it.

Exits 77 (CTest: skipped) with the reason when a package is missing.
"""
import argparse
import json
import os
import shutil
import struct
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def skip(reason):
    print(f"SKIPPED: {reason}")
    sys.exit(77)


try:
    import torch
    import safetensors
    from safetensors import deserialize, safe_open
    from safetensors.torch import save_file
except ImportError as e:  # pragma: no cover
    skip(f"safetensors not installed: {e}")

# LibTorch's names (c10::toString) of the torch dtypes the reference loads each safetensors dtype as.
C10_NAME = {
    torch.bool: "Bool", torch.uint8: "Byte", torch.int8: "Char", torch.int16: "Short", torch.uint16: "UInt16",
    torch.int32: "Int", torch.uint32: "UInt32", torch.int64: "Long", torch.uint64: "UInt64", torch.float16: "Half",
    torch.bfloat16: "BFloat16", torch.float32: "Float", torch.float64: "Double", torch.complex64: "ComplexFloat",
    torch.float8_e4m3fn: "Float8_e4m3fn", torch.float8_e5m2: "Float8_e5m2", torch.float8_e4m3fnuz: "Float8_e4m3fnuz",
    torch.float8_e5m2fnuz: "Float8_e5m2fnuz", torch.float8_e8m0fnu: "Float8_e8m0fnu",
    torch.float4_e2m1fn_x2: "Float4_e2m1fn_x2",
}

failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print(f"FAIL: {what}")


def tool_lines(args, *cmd):
    """The tool's answer, one entry per line. Split on "\n" only: str.splitlines() would also split on
    characters such as U+0085 or U+2028 that a message quoting raw header bytes can contain."""
    out = tool(args, *cmd)
    return out[:-1].split("\n") if out.endswith("\n") else (out.split("\n") if out else [])


def tool(args, *cmd):
    r = subprocess.run([args.tool, *map(str, cmd)], capture_output=True, text=True, errors="replace")
    if r.returncode != 0:
        raise SystemExit(f"tool {' '.join(map(str, cmd))} failed ({r.returncode}): {r.stderr}")
    return r.stdout


def tensor_bytes(t):
    return t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes().hex()


def random_tensors(seed=0):
    """Every torch dtype safetensors has, random bit patterns (NaNs included), plus shape edge cases."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for i, dt in enumerate(C10_NAME):
        n = 12 * dt.itemsize
        raw = torch.randint(0, 256, (n,), dtype=torch.uint8, generator=g)
        if dt == torch.bool:
            raw = raw % 2
        out[f"w{i:02d}_{str(dt).split('.')[1]}"] = raw.view(dt).reshape(3, 4)
    out["scalar_f64"] = torch.tensor(3.25, dtype=torch.float64)
    out["empty_f16"] = torch.zeros(0, 5, dtype=torch.float16)
    out["vector_bf16"] = torch.randn(7, generator=g).to(torch.bfloat16)
    out["name with spaces/é"] = torch.arange(3, dtype=torch.int32)
    return out


def reference_view(path):
    """name -> (dtype string, shape, data bytes) as safetensors' deserialize sees the file."""
    with open(path, "rb") as f:
        return {k: (v["dtype"], list(v["shape"]), bytes(v["data"])) for k, v in deserialize(f.read())}


def compare_dump(args, path, label):
    out = os.path.join(args.workdir, label + ".json")
    tool(args, "dump", path, out)
    with open(out) as f:
        got = json.load(f)
    ref = reference_view(path)
    check(sorted(got["tensors"]) == sorted(ref), f"{label}: tensor names {sorted(got['tensors'])} vs {sorted(ref)}")
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
    check(got["metadata"] == header.get("__metadata__", {}) or {}, f"{label}: metadata")
    pt_ok = zero_copy = 0
    with safe_open(path, framework="pt") as f:
        for name, (dtype, shape, data) in ref.items():
            g = got["tensors"].get(name)
            if g is None:
                continue
            check(g["dtype"] == dtype and g["shape"] == shape, f"{label}/{name}: {g['dtype']}{g['shape']} vs {dtype}{shape}")
            check(g["bytes"] == data.hex(), f"{label}/{name}: raw bytes differ")
            try:
                t = f.get_tensor(name)
            except Exception as e:  # the reference has no torch type (F6) or cannot pair F4 values
                check("torch_dtype" not in g, f"{label}/{name}: reference cannot load ({e}) but verl gave a tensor")
                continue
            check(g.get("torch_dtype") == C10_NAME[t.dtype], f"{label}/{name}: torch dtype {g.get('torch_dtype')} vs {t.dtype}")
            check(g.get("torch_shape") == list(t.shape), f"{label}/{name}: torch shape {g.get('torch_shape')} vs {list(t.shape)}")
            check(g.get("tensor_bytes") == tensor_bytes(t), f"{label}/{name}: tensor bytes differ")
            # Zero-copy exactly when the data is aligned to the element size (always so in files the reference
            # writes: 8-byte padded header, widest dtypes first); otherwise verl copies.
            aligned = (8 + n + header[name]["data_offsets"][0]) % t.element_size() == 0
            check(g.get("zero_copy") == (t.numel() > 0 and aligned), f"{label}/{name}: zero_copy is {g.get('zero_copy')}")
            zero_copy += bool(g.get("zero_copy"))
            pt_ok += 1
    print(f"{label}: {len(ref)} tensors compared ({pt_ok} as torch tensors, {zero_copy} of them zero-copy views)")


def numpy_tensors():
    import numpy as np
    rng = np.random.default_rng(1)
    out = {}
    for dt in [np.bool_, np.uint8, np.int8, np.uint16, np.int16, np.uint32, np.int32, np.uint64, np.int64,
               np.float16, np.float32, np.float64, np.complex64]:
        raw = rng.integers(0, 256, size=6 * np.dtype(dt).itemsize, dtype=np.uint8)
        if dt is np.bool_:
            raw = raw % 2
        out[f"np_{np.dtype(dt).name}"] = raw.view(dt).reshape(2, 3)
    return out


def case_read(args):
    from safetensors.numpy import save_file as np_save_file
    from hostile_cases import cases

    a = os.path.join(args.workdir, "torch.safetensors")
    save_file(random_tensors(), a, metadata={"format": "pt"})
    compare_dump(args, a, "torch_save_file")
    b = os.path.join(args.workdir, "numpy.safetensors")
    np_save_file(numpy_tensors(), b, metadata={"k": "v", "note": "caf\u00e9\n"})
    compare_dump(args, b, "numpy_save_file")
    for name, data, _ in cases():
        if name == "every_dtype":  # hand-made: F6_E2M3 / F6_E3M2 included, which no reference writer can emit
            c = os.path.join(args.workdir, "every_dtype.safetensors")
            with open(c, "wb") as f:
                f.write(data)
            compare_dump(args, c, "every_dtype")


def case_write(args):
    src = os.path.join(args.workdir, "reference.safetensors")
    save_file(random_tensors(2), src, metadata={"format": "pt"})
    out = os.path.join(args.workdir, "verl.safetensors")
    tool(args, "rewrite", src, out)
    with open(src, "rb") as f1, open(out, "rb") as f2:
        check(f1.read() == f2.read(), "verl's save_safetensors bytes differ from safetensors.torch.save_file's")
    from safetensors.torch import load_file
    ref, mine = load_file(src), load_file(out)
    check(sorted(ref) == sorted(mine), "the reference loads different names from verl's file")
    for k in ref:
        check(ref[k].dtype == mine[k].dtype and tensor_bytes(ref[k]) == tensor_bytes(mine[k]), f"{k}: value differs")
    with safe_open(out, framework="pt") as f:
        check(f.metadata() == {"format": "pt"}, "metadata read by the reference")
    # No metadata at all, and several metadata keys (the reference writes those in hash order: compare as JSON).
    for label, meta in [("nometa", None), ("multimeta", {"b": "2", "a": "1", "z\u00e9": "\u4e2d\"\\\x01"})]:
        src = os.path.join(args.workdir, f"{label}.safetensors")
        save_file(random_tensors(3), src, metadata=meta)
        out = os.path.join(args.workdir, f"{label}_verl.safetensors")
        tool(args, "rewrite", src, out)
        with open(src, "rb") as f1, open(out, "rb") as f2:
            x, y = f1.read(), f2.read()
        nx, ny = struct.unpack("<Q", x[:8])[0], struct.unpack("<Q", y[:8])[0]
        check(nx == ny and json.loads(x[8:8 + nx]) == json.loads(y[8:8 + ny]) and x[8 + nx:] == y[8 + ny:],
              f"{label}: header or data differ")
        if meta is None:
            check(x == y, f"{label}: bytes differ")
        with safe_open(out, framework="pt") as f:
            check((f.metadata() or None) == meta, f"{label}: metadata {f.metadata()} vs {meta}")
    print("write: verl's files are byte-identical to the reference's")


def case_hostile(args):
    from hostile_cases import cases
    cs = cases()
    paths = []
    for i, (name, data, _) in enumerate(cs):
        p = os.path.join(args.workdir, f"{i:03d}_{name}.safetensors")
        with open(p, "wb") as f:
            f.write(data)
        paths.append(p)
    lines = tool_lines(args, "check", *paths)
    check(len(lines) == len(cs), f"tool answered {len(lines)} of {len(cs)} files")
    agree = deliberate = 0
    for (name, data, reason), line in zip(cs, lines):
        try:
            deserialize(data)
            ref_ok, ref_msg = True, "accepted"
        except Exception as e:
            ref_ok, ref_msg = False, str(e)
        verl_ok = line == "OK"
        if reason is None:
            check(verl_ok == ref_ok, f"{name}: reference {ref_msg!r}, verl {line!r}")
            agree += verl_ok == ref_ok
        else:
            check(ref_ok and not verl_ok, f"{name}: expected a deliberate rejection ({reason}); reference {ref_msg!r}, verl {line!r}")
            deliberate += ref_ok and not verl_ok
        if not verl_ok:
            check(line.startswith("ERR verl::checkpoint: `") and f"_{name}.safetensors`" in line,
                  f"{name}: message does not name the file: {line!r}")
    print(f"hostile: {agree} verdicts equal to the reference's, {deliberate} deliberate rejections, of {len(cs)} files")
    # Differential run over fuzz corpora (the committed seeds, and what tests/fuzz found when it has run):
    # equal verdicts, except rejections whose message is one of the deliberate rules.
    deliberate_messages = ("`: the header starts with byte", "appears twice", "is an array, expected an object",
                           "`dtype` is an object")
    for corpus in args.extra_corpus:
        if not os.path.isdir(corpus):
            print(f"differential: {corpus} does not exist (run the fuzz test first); skipped")
            continue
        files = sorted(os.path.join(corpus, f) for f in os.listdir(corpus))
        lines = []
        for i in range(0, len(files), 500):
            lines += tool_lines(args, "check", *files[i:i + 500])
        check(len(lines) == len(files), f"{corpus}: tool answered {len(lines)} of {len(files)} files")
        same = strict = 0
        for path, line in zip(files, lines):
            with open(path, "rb") as f:
                data = f.read()
            try:
                deserialize(data)
                ref_ok = True
            except Exception:
                ref_ok = False
            verl_ok = line == "OK"
            if verl_ok == ref_ok:
                same += 1
            elif ref_ok and any(m in line for m in deliberate_messages):
                strict += 1
            else:
                check(False, f"{path}: reference {'accepts' if ref_ok else 'rejects'}, verl {line!r}")
        print(f"differential {corpus}: {same} equal verdicts, {strict} deliberate rejections, of {len(files)} files")


def hub_save(state, directory, max_shard_size):
    """transformers' save_pretrained, file part: huggingface_hub's split, save_file per shard, sorted index."""
    from huggingface_hub import split_torch_state_dict_into_shards
    os.makedirs(directory, exist_ok=True)
    split = split_torch_state_dict_into_shards(state, filename_pattern="model{suffix}.safetensors",
                                               max_shard_size=max_shard_size)
    for filename, names in split.filename_to_tensors.items():
        save_file({k: state[k].contiguous() for k in names}, os.path.join(directory, filename), metadata={"format": "pt"})
    if split.is_sharded:
        index = {"metadata": split.metadata, "weight_map": split.tensor_to_filename}
        with open(os.path.join(directory, "model.safetensors.index.json"), "w", encoding="utf-8") as f:
            f.write(json.dumps(index, indent=2, sort_keys=True) + "\n")
    return split


def compare_dirs(ref_dir, verl_dir, label, index_exact=True):
    ref_files, verl_files = sorted(os.listdir(ref_dir)), sorted(os.listdir(verl_dir))
    check(ref_files == verl_files, f"{label}: files {verl_files} vs {ref_files}")
    for name in ref_files:
        if not name.endswith(".safetensors") and not name.endswith(".index.json"):
            continue
        with open(os.path.join(ref_dir, name), "rb") as f1, open(os.path.join(verl_dir, name), "rb") as f2:
            x, y = f1.read(), f2.read()
        if name.endswith(".index.json") and not index_exact:
            jx, jy = json.loads(x), json.loads(y)
            check(jx["weight_map"] == jy["weight_map"], f"{label}/{name}: weight_map differs")
            check(jx["metadata"]["total_size"] == jy["metadata"]["total_size"], f"{label}/{name}: total_size differs")
        else:
            check(x == y, f"{label}/{name}: bytes differ")


def read_back(args, directory, state, label):
    out = os.path.join(args.workdir, label + "_read.json")
    tool(args, "read-checkpoint", directory, out)
    with open(out) as f:
        got = json.load(f)
    check(sorted(got) == sorted(state), f"{label}: names differ")
    for k, t in state.items():
        g = got.get(k, {})
        check(g.get("torch_dtype") == C10_NAME[t.dtype] and g.get("torch_shape") == list(t.shape)
              and g.get("tensor_bytes") == tensor_bytes(t), f"{label}/{k}: tensor differs")
    return got


def case_sharded(args):
    try:
        from huggingface_hub import load_torch_model  # noqa: F401
    except ImportError as e:
        skip(f"huggingface_hub not installed: {e}")
    from huggingface_hub import load_torch_model
    g = torch.Generator().manual_seed(5)
    state = {}
    for i, (shape, dt) in enumerate([((16, 8), torch.float32), ((8,), torch.bfloat16), ((40, 8), torch.float32),
                                     ((3,), torch.int64), ((6, 6), torch.float16), ((1,), torch.float32),
                                     ((0, 4), torch.float32), ((12, 12), torch.float64), ((5,), torch.float8_e4m3fn)]):
        state[f"layers.{i}.weight"] = torch.randn(*shape, generator=g).to(dt) if dt != torch.int64 else torch.arange(3)
    all_file = os.path.join(args.workdir, "all.safetensors")
    save_file(state, all_file)
    order = os.path.join(args.workdir, "order.json")
    with open(order, "w") as f:
        json.dump(list(state), f)
    for max_size in [10**9, 1000, 600, 200, 1]:
        label = f"max{max_size}"
        ref_dir, verl_dir = os.path.join(args.workdir, label, "ref"), os.path.join(args.workdir, label, "verl")
        for d in (ref_dir, verl_dir):
            shutil.rmtree(d, ignore_errors=True)
        split = hub_save(state, ref_dir, max_size)
        read_back(args, ref_dir, state, label + "_ref")
        tool(args, "save-checkpoint", all_file, order, verl_dir, max_size)
        compare_dirs(ref_dir, verl_dir, label)
        read_back(args, verl_dir, state, label + "_verl")

        # A module whose state-dict keys are the checkpoint's names, loaded by huggingface_hub (strict).
        holder = torch.nn.Module()
        for k, t in state.items():
            parts = k.split(".")
            m = holder
            for p in parts[:-1]:
                if not hasattr(m, p):
                    m.add_module(p, torch.nn.Module())
                m = getattr(m, p)
            m.register_buffer(parts[-1], torch.zeros_like(t))
        result = load_torch_model(holder, verl_dir, strict=True)
        loaded = holder.state_dict()
        for k, t in state.items():
            check(tensor_bytes(loaded[k]) == tensor_bytes(t), f"{label}: load_torch_model value of {k}")
        print(f"sharded {label}: {len(split.filename_to_tensors)} file(s) byte-identical, read back, loaded ({result})")


def case_transformers(args):
    try:
        import transformers
        from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM
    except ImportError as e:
        skip(f"transformers not installed: {e}")
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=32)
    model = LlamaForCausalLM(config).eval()
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    for max_size, label in [("4KB", "sharded"), ("10GB", "single")]:
        ref_dir = os.path.join(args.workdir, label, "ref")
        verl_dir = os.path.join(args.workdir, label, "verl")
        for d in (ref_dir, verl_dir):
            shutil.rmtree(d, ignore_errors=True)
        model.save_pretrained(ref_dir, max_shard_size=max_size)
        got = read_back(args, ref_dir, state, f"transformers_{label}")
        # Same tensors, same order as transformers' state dict, same limit: same shards.
        all_file = os.path.join(args.workdir, f"{label}_all.safetensors")
        save_file(state, all_file)
        order = os.path.join(args.workdir, f"{label}_order.json")
        with open(order, "w") as f:
            json.dump(list(state), f)
        limit = 4000 if label == "sharded" else 10 * 10**9
        tool(args, "save-checkpoint", all_file, order, verl_dir, limit)
        shutil.copy(os.path.join(ref_dir, "config.json"), verl_dir)
        if os.path.exists(os.path.join(ref_dir, "generation_config.json")):
            shutil.copy(os.path.join(ref_dir, "generation_config.json"), verl_dir)
        compare_dirs(ref_dir, verl_dir, f"transformers_{label}", index_exact=False)
        reloaded = AutoModelForCausalLM.from_pretrained(verl_dir).eval()
        for k, v in reloaded.state_dict().items():
            check(torch.equal(v, state[k]), f"transformers_{label}: from_pretrained value of {k}")
        n_files = len({g["file"] for g in got.values()})
        print(f"transformers {transformers.__version__} {label}: {len(state)} tensors in {n_files} file(s), "
              "verl reads them, writes the same shards, from_pretrained loads verl's directory")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("case", choices=["read", "write", "hostile", "sharded", "transformers"])
    p.add_argument("--tool", required=True)
    p.add_argument("--workdir", required=True)
    p.add_argument("--extra-corpus", action="append", default=[], help="hostile: also compare verdicts on these dirs")
    args = p.parse_args()
    os.makedirs(args.workdir, exist_ok=True)
    print(f"safetensors {safetensors.__version__}, torch {torch.__version__}")
    globals()[f"case_{args.case}"](args)
    if failures:
        print(f"{len(failures)} failure(s)")
        sys.exit(1)
    print("OK")


if __name__ == "__main__":
    main()
