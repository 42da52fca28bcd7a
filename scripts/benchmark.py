#!/usr/bin/env python
"""Speed of TimeChat on one device: training step, eval throughput, stock-part anchors.

Builds the real TimeChat-7B shapes with random weights directly on the GPU (bf16 frozen towers,
fp32 trainable parts, bf16 autocast), or the tiny model with `--tiny` (automatic on CPU), and
prints one JSON line per figure on stdout (logs go to stderr); `--out FILE.jsonl` also writes them.

    python scripts/benchmark.py --out bench.jsonl                  # GPU, all sections, <= ~8 min
    python scripts/benchmark.py --sections train,eval --profile    # a subset + profiler table
    python scripts/benchmark.py --smoke --out /tmp/smoke.jsonl     # CPU/CI: tiny, seconds, every figure

Figures (`figure` field; `value` in `unit`):
  matmul_tflops                       dense GEMM peak (bf16 8192^3 on GPU; fp32 on CPU)
  vit_forward                         frozen ViT + ln_vision over 96 frames, frames/s
  train_step_b{1,2,4}, train_step_bmax
                                      `TrainRecipe.train_step` (the method the training loop calls:
                                      LR schedule, forward incl. ViT, backward, clipping, AdamW) on a
                                      ready batch: samples/s, with tokens/s, peak memory and MFU
  train_step_cached_features_b{1,4}   the same step from cached ln_vision features (no ViT)
  llm_lora_train_1x1024, _8x2048      stock peft-LoRA LLaMA train step, tokens/s
  eval_videos_per_s_b{1,16}, _bmax    grounding eval through `InferenceEngine.run` (the evaluation
                                      code: decode + transform in DataLoader workers, ViT, Q-Formers,
                                      Chat prompt, greedy decoding of exactly 64 new tokens, result
                                      files), on generated videos
  eval_new_tokens_per_s_b1            64 x eval_videos_per_s_b1 (the original's end-to-end figure)
  decode_tokens_per_s_b1              pure KV-cache decoding speed of our `generate` (prefill excluded)
  hf_generate_tokens_per_s_b{1,16}    HF `generate` on the same LLM (64 new tokens, prefill included)

The model, its optimizer and the training step come from a `TrainRecipe` set up from a config
(`recipe_config`: the 7B or tiny preset, random weights, one dataset of the generated videos).
FLOPs per training sample and MFU: `timechat.flops` (model FLOPs, not hardware FLOPs; MFU = FLOP/s
over the device's dense bf16 peak, or the measured GEMM peak where the GPU is unknown and on CPU).

The original's figures (H200) are constants below; `ratio_vs_original` = ours / theirs for the
matching figures on a CUDA device with the 7B shapes (null otherwise, e.g. in smoke mode).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import math
import os
import resource
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a file from any directory
    sys.path.insert(0, str(REPO))

from timechat.flops import flops_per_sample, llm_flops_per_sequence, mfu, peak_bf16_flops  # noqa: E402

# The original TimeChat on one H200 (its README's speed table, reproduced for this project).
ORIGINAL_H200 = {
    "train_step_b1": 1.74,
    "train_step_b2": 2.55,
    "train_step_b4": 2.79,
    "eval_videos_per_s_b1": 0.35,
    "eval_new_tokens_per_s_b1": 24.7,
    "eval_videos_per_s_b16": 2.27,
}

SECTIONS = ("matmul", "vit", "train", "cached", "llm", "eval", "generate")
GROUNDING_QUERY = "person turn a light on"


# --------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class Sizes:
    """Workload and time budget of one benchmark run."""

    n_frames: int = 96
    """Frames per video (training and eval)."""
    n_text: int = 704
    """Text tokens per training sample (incl. the supervised ones); video tokens come on top."""
    n_supervised: int = 100
    train_batches: tuple[int, ...] = (1, 2, 4)
    cached_batches: tuple[int, ...] = (1, 4)
    train_batch_cap: int = 64
    """Largest training batch tried when searching for the largest that fits."""
    eval_batches: tuple[int, ...] = (1, 16)
    eval_batch_cap: int = 256
    new_tokens: int = 64
    n_videos: int = 8
    """Distinct generated video files (items cycle over them; each item is decoded again)."""
    video_seconds: float = 30.0
    llm_anchors: tuple[tuple[int, int], ...] = ((1, 1024), (8, 2048))
    generate_batches: tuple[int, ...] = (1, 16)
    generate_context: int = 700
    matmul_n: int = 8192
    warmup: int = 2
    iters: int = 5
    budget_s: dict[str, float] = field(default_factory=lambda: {
        "matmul": 10, "vit": 15, "train": 150, "cached": 25, "llm": 40, "eval": 120, "generate": 30})


SMOKE = Sizes(
    n_frames=8, n_text=48, n_supervised=8, train_batch_cap=8, eval_batch_cap=32, new_tokens=8, n_videos=2,
    video_seconds=12.0, llm_anchors=((1, 64), (8, 128)), generate_context=48, matmul_n=256,
    warmup=1, iters=2, budget_s={s: 5.0 for s in SECTIONS},
)


# --------------------------------------------------------------------------- helpers
class Runner:
    """Device, model, tokenizers and the JSON-line writer shared by the sections."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.sizes: Sizes = SMOKE if args.smoke else Sizes()
        if args.iters:
            self.sizes = replace(self.sizes, iters=args.iters)
        self.device = torch.device("cuda" if torch.cuda.is_available() and not args.cpu else "cpu")
        self.cuda = self.device.type == "cuda"
        self.tiny = args.tiny or args.smoke or not self.cuda
        self.dtype = "bf16" if self.cuda else "fp32"  # never bf16 on CPU (about 5x slower there)
        self.out = open(args.out, "w", encoding="utf-8") if args.out else None
        self.errors: list[str] = []
        self.peak_tflops, self.peak_basis = self._spec_peak()
        self.workdir = Path(args.workdir or Path(tempfile.gettempdir()) / "timechat_bench")
        import transformers

        self.common = {
            "device": torch.cuda.get_device_name(self.device) if self.cuda else "cpu",
            "torch": torch.__version__, "transformers": transformers.__version__, "dtype": self.dtype,
            "model": "timechat_tiny" if self.tiny else "timechat_7b", "smoke": bool(args.smoke),
            "gradient_checkpointing": bool(args.grad_ckpt),
        }

    # -- environment
    def _spec_peak(self) -> tuple[float | None, str]:
        peak = peak_bf16_flops(torch.cuda.get_device_name(self.device)) if self.cuda else None
        if peak is None:
            return None, "measured_matmul"
        return peak[0], f"spec_dense_bf16:{peak[1]}"

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)

    def amp(self) -> Any:
        if self.cuda:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def reset_peak(self) -> None:
        if self.cuda:
            torch.cuda.reset_peak_memory_stats(self.device)

    def peak_mem_gib(self) -> tuple[float, str]:
        if self.cuda:
            return torch.cuda.max_memory_allocated(self.device) / 2**30, "cuda_max_allocated"
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, "process_max_rss"

    def free(self) -> None:
        gc.collect()
        if self.cuda:
            torch.cuda.empty_cache()

    def log(self, msg: str) -> None:
        print(f"[benchmark] {msg}", file=sys.stderr, flush=True)

    # -- output
    def emit(self, figure: str, value: float, unit: str, batch: int | None, **extra: Any) -> None:
        original = ORIGINAL_H200.get(figure)
        ratio = None
        if original is not None and self.cuda and not self.tiny and not self.args.smoke:
            ratio = round(value / original, 4)
        row = {"figure": figure, "value": _round(value), "unit": unit, "batch": batch, **self.common,
               "ratio_vs_original": ratio, "original_h200": original,
               **{k: _round(v) for k, v in extra.items()}}
        line = json.dumps(row)
        print(line, flush=True)
        if self.out:
            self.out.write(line + "\n")
            self.out.flush()

    def mfu(self, flop_per_s: float) -> float | None:
        return mfu(flop_per_s, self.peak_tflops)

    def timed(self, fn: Callable[[], Any], budget_s: float, warmup: int | None = None,
              iters: int | None = None) -> list[float]:
        """Warm up, then time `fn` (synchronised) up to `iters` times or until the budget is spent."""
        warmup = self.sizes.warmup if warmup is None else warmup
        iters = self.sizes.iters if iters is None else iters
        for _ in range(warmup):
            fn()
        self.sync()
        times: list[float] = []
        start = time.perf_counter()
        while len(times) < iters:
            t0 = time.perf_counter()
            fn()
            self.sync()
            times.append(time.perf_counter() - t0)
            if time.perf_counter() - start > budget_s:
                break
        return times


def _round(x: Any) -> Any:
    if isinstance(x, float) and math.isfinite(x):
        return float(f"{x:.6g}")
    return x


def _rest(result: dict[str, Any]) -> dict[str, Any]:
    """A measurement without its headline value (which goes to `value`)."""
    return {k: v for k, v in result.items() if k not in ("samples_per_s", "videos_per_s")}


def _oom_types() -> tuple[type[BaseException], ...]:
    return (torch.OutOfMemoryError,) if hasattr(torch, "OutOfMemoryError") else (torch.cuda.OutOfMemoryError,)


def try_fits(run: Runner, fn: Callable[[], Any]) -> tuple[bool, Any]:
    """(True, fn()) or (False, None) on out-of-memory; memory is freed after the exception is gone."""
    ok, result = False, None
    try:
        result, ok = fn(), True
    except _oom_types():
        pass  # leaving the except block drops the traceback and the tensors it references
    if not ok:
        run.free()
    return ok, result


def find_tokenizer_dir(explicit: str | None, fixture: str, builtin: str, tiny: bool) -> tuple[str, str]:
    """(directory, label): `explicit`, else the real fixture tokenizer for the 7B shapes, else built-in."""
    from timechat.factory import ASSETS_DIR

    if explicit:
        return explicit, Path(explicit).name
    if not tiny:
        for root in (REPO.parent / "shared", REPO / "shared", Path(os.environ.get("TIMECHAT_SHARED", "/nonexistent"))):
            path = root / "fixtures" / "tokenizers" / fixture
            if path.is_dir():
                return str(path), fixture
    return str(ASSETS_DIR / builtin), builtin


# --------------------------------------------------------------------------- model and inputs
def bench_data(run: Runner):
    """Generated videos (TimeIT records of grounding) under the workdir: the recipe's dataset and the eval's videos."""
    from timechat.data.synthetic import generate_synthetic_dataset

    size = 224 if not run.tiny else 64
    out = run.workdir / f"videos_{size}px_{int(run.sizes.video_seconds)}s_{run.sizes.n_videos}"
    return generate_synthetic_dataset(out, num_train=run.sizes.n_videos, num_val=0, num_test=0, size=size,
                                      duration=(run.sizes.video_seconds, run.sizes.video_seconds), fps=8.0,
                                      tasks=("tvg",), max_events=1, num_event_types=1)


def recipe_config(run: Runner, data, llama_dir: str, bert_dir: str):
    """The training config the benchmark sets a `TrainRecipe` up from: the 7B (CUDA) or tiny preset with
    random weights, the run's defaults except one micro-batch per step and nothing written but the run folder."""
    from timechat.config import load_config
    from timechat.models.builders import timechat_7b, timechat_tiny

    preset = "timechat_tiny" if run.tiny else "timechat_7b"
    arch = (timechat_tiny if run.tiny else timechat_7b)()
    model_cfg: dict[str, Any] = {"dtype": run.dtype, "gradient_checkpointing": bool(run.args.grad_ckpt)}
    if run.args.smoke:
        model_cfg["max_frame_pos"] = max(arch.max_frame_pos, run.sizes.n_frames)
    return load_config(None, defaults={
        "output_dir": str(run.workdir / f"train_{preset}"),
        "model": {"name": preset, "config": model_cfg, "tokenizer": llama_dir, "bert_tokenizer": bert_dir},
        "datasets": {"generated_tvg": {"records": str(data.instruct["tvg"]["train"]), "videos_root": str(data.out_dir),
                                       "num_frames": run.sizes.n_frames, "image_size": arch.vision.image_size,
                                       "sampling": "uniform"}},
        "run": {"device": str(run.device), "precision": run.dtype, "accum_grad_iters": 1, "num_workers": 0,
                "resume": None, "tensorboard": False, "export_original": False},
    })


def build_recipe(run: Runner, data, llama_dir: str, bert_dir: str):
    """A `TrainRecipe` set up from `recipe_config`; its model serves every section."""
    from timechat.train.recipe import TrainRecipe

    t0 = time.perf_counter()
    recipe = TrainRecipe(recipe_config(run, data, llama_dir, bert_dir))
    # Materialise every parameter directly on the GPU: the fp32 construction of the 7B model
    # (~31 GB) fits an 80 GB GPU, and the frozen towers are cast to bf16 right after.
    with run.device if run.cuda else contextlib.nullcontext():
        recipe.setup()
    run.log(f"set up {run.common['model']} in {time.perf_counter() - t0:.1f}s on {run.device}")
    return recipe


def timestamp_sentences_for(n_frames: int, seconds: float) -> list[str]:
    from timechat.data.video import timestamp_sentences

    return timestamp_sentences([str(round(k * seconds / n_frames, 1)) for k in range(n_frames)])


def make_train_batch(run: Runner, model, ts_tok, b: int, features: bool = False) -> dict[str, Any]:
    """A ready training batch: (B, n_text + n_video) ids with the `<ImageHere>` run after a short
    prefix, the last `n_supervised` positions supervised, real timestamp sentences, random pixels
    (B, 3, T, H, W) or random `ln_vision` features (B*T, N_img, D_v)."""
    from timechat.data.tokenization import tokenize_timestamps

    s, cfg, dev = run.sizes, model.cfg, run.device
    n_vid = cfg.num_video_tokens(s.n_frames)
    length = s.n_text + n_vid
    g = torch.Generator().manual_seed(b)
    ids = torch.randint(3, cfg.llm.vocab_size, (b, length), generator=g)
    ids[:, 0] = 1
    start = min(16, s.n_text // 4)
    ids[:, start:start + n_vid] = cfg.image_token_id
    labels = torch.full_like(ids, -100)
    labels[:, -s.n_supervised:] = ids[:, -s.n_supervised:]
    ts = tokenize_timestamps(timestamp_sentences_for(s.n_frames, s.video_seconds), ts_tok)
    batch: dict[str, Any] = {
        "input_ids": ids.to(dev), "labels": labels.to(dev), "attention_mask": torch.ones_like(ids).to(dev),
        "timestamps": {k: v.repeat(b, 1).to(dev) for k, v in ts.items()},  # (B*T, L_ts)
    }
    size = cfg.vision.image_size
    if features:
        vit_dtype = model.visual_encoder.model.embeddings.patch_embedding.weight.dtype
        batch["image_features"] = torch.randn(b * s.n_frames, cfg.vision.num_tokens, cfg.vision.width, device=dev,
                                              dtype=vit_dtype)  # (B*T, N_img, D_v)
    else:
        batch["images"] = torch.randn(b, 3, s.n_frames, size, size, device=dev)  # (B, 3, T, H, W)
    return batch


# --------------------------------------------------------------------------- sections
def section_matmul(run: Runner, ctx: dict[str, Any]) -> None:
    n = run.sizes.matmul_n
    dtype = torch.bfloat16 if run.cuda else torch.float32
    a = torch.randn(n, n, device=run.device, dtype=dtype)
    b = torch.randn(n, n, device=run.device, dtype=dtype)
    reps = 20 if run.cuda else 5

    def f():
        for _ in range(reps):
            torch.mm(a, b)

    times = run.timed(f, run.sizes.budget_s["matmul"], warmup=1, iters=3)
    tflops = 2 * n**3 * reps / min(times) / 1e12
    ctx["matmul_tflops"] = tflops
    run.emit("matmul_tflops", tflops, "TFLOP/s", None, n=n, matmul_dtype=str(dtype).replace("torch.", ""))
    if run.peak_tflops is None:
        run.peak_tflops = tflops * 1e12


def section_vit(run: Runner, ctx: dict[str, Any]) -> None:
    model, t = ctx["model"], run.sizes.n_frames
    size = model.cfg.vision.image_size
    frames = torch.randn(t, 3, size, size, device=run.device)  # (T, 3, H, W)

    def f():
        with torch.inference_mode(), run.amp():
            model.encode_frames(frames)

    times = run.timed(f, run.sizes.budget_s["vit"])
    step = statistics.median(times)
    flop = flops_per_sample(model.cfg, t, 0, 0)["vit"]
    run.emit("vit_forward", t / step, "frames/s", 1, frames=t, step_s=step, tflops=flop / step / 1e12,
             mfu=run.mfu(flop / step))


def measure_train(run: Runner, ctx: dict[str, Any], b: int, features: bool, budget: float) -> dict[str, Any] | None:
    """Time the training step at batch b; None if it does not fit in memory."""
    step = ctx["train_step"]  # TrainRecipe.train_step, bound to the recipe
    holder: dict[str, Any] = {}

    def go() -> list[float]:
        holder["batches"] = [make_train_batch(run, ctx["model"], ctx["ts_tok_train"], b, features)]
        return run.timed(lambda: step(holder["batches"]), budget)

    run.reset_peak()
    ok, times = try_fits(run, go)
    holder.clear()
    ctx["recipe"].optimizer.zero_grad(set_to_none=True)  # gradients left by a step that ran out of memory
    if not ok:
        run.free()
        return None
    peak, basis = run.peak_mem_gib()
    s, model = run.sizes, ctx["model"]
    t_step = statistics.median(times)
    fl = flops_per_sample(model.cfg, s.n_frames, s.n_text, ctx["ts_len_train"], include_vit=not features)
    n_tok = s.n_text + model.cfg.num_video_tokens(s.n_frames)
    run.free()
    return {"samples_per_s": b / t_step, "step_s": t_step, "tokens_per_s": b * n_tok / t_step, "peak_mem_gib": peak,
            "mem_basis": basis, "tflop_per_sample": fl["total"] / 1e12, "mfu": run.mfu(fl["total"] * b / t_step),
            "iters": len(times), "seq_len": n_tok, "frames": s.n_frames}


def section_train(run: Runner, ctx: dict[str, Any]) -> None:
    s = run.sizes
    deadline = time.perf_counter() + s.budget_s["train"]
    per = s.budget_s["train"] / (len(s.train_batches) + 3)
    results: dict[int, dict[str, Any]] = {}
    for b in s.train_batches:
        r = measure_train(run, ctx, b, False, per)
        if r is None:
            run.emit(f"train_step_b{b}", float("nan"), "samples/s", b, error="out of memory")
            run.errors.append(f"train_step_b{b}: out of memory")
            break
        results[b] = r
        run.emit(f"train_step_b{b}", r["samples_per_s"], "samples/s", b, mfu_basis=run.peak_basis, **_rest(r))
    ctx["train_results"] = results
    # Largest batch that fits: double from the largest measured one until out of memory, the cap or
    # the section's time budget; then one bisection step between the last fit and the first OOM.
    best = max(results) if results else None
    lo, hi = best, None
    b = (best or 1) * 2
    last = 0.0
    while b <= s.train_batch_cap and time.perf_counter() + 2.2 * last < deadline:  # 2x batch ~ 2x time
        t0 = time.perf_counter()
        r = measure_train(run, ctx, b, False, per)
        last = time.perf_counter() - t0
        if r is None:
            hi = b
            break
        results[b], lo = r, b
        b *= 2
    if lo is not None and hi is not None and hi - lo > 1 and time.perf_counter() + 1.5 * last < deadline:
        mid = (lo + hi) // 2
        r = measure_train(run, ctx, mid, False, per)
        if r is not None:
            results[mid], lo = r, mid
    if lo is None:
        return
    r = results[lo]
    run.emit("train_step_bmax", r["samples_per_s"], "samples/s", lo, mfu_basis=run.peak_basis, first_oom_batch=hi,
             search_cap=s.train_batch_cap, **_rest(r))


def section_cached(run: Runner, ctx: dict[str, Any]) -> None:
    s = run.sizes
    per = s.budget_s["cached"] / len(s.cached_batches)
    for b in s.cached_batches:
        r = measure_train(run, ctx, b, True, per)
        if r is None:
            run.emit(f"train_step_cached_features_b{b}", float("nan"), "samples/s", b, error="out of memory")
            run.errors.append(f"train_step_cached_features_b{b}: out of memory")
            continue
        live = ctx.get("train_results", {}).get(b)
        if live is None:  # the train section was not run or skipped this batch: measure live here
            live = measure_train(run, ctx, b, False, per)
        speedup = r["samples_per_s"] / live["samples_per_s"] if live else None
        run.emit(f"train_step_cached_features_b{b}", r["samples_per_s"], "samples/s", b, mfu_basis=run.peak_basis,
                 speedup_vs_live=speedup, live_step_s=live["step_s"] if live else None, **_rest(r))


def section_llm(run: Runner, ctx: dict[str, Any]) -> None:
    """Stock peft-LoRA LLaMA train step (the LLM of the model, LoRA as configured), tokens/s."""
    model = ctx["model"]
    llm, base = model.llama_model, model.base_llm
    lora = [p for n, p in llm.named_parameters() if ".lora_" in n and p.requires_grad]
    opt = torch.optim.AdamW(lora, lr=1e-6, **({"fused": True} if run.cuda else {}))
    vocab = model.cfg.llm.vocab_size
    per = run.sizes.budget_s["llm"] / len(run.sizes.llm_anchors)
    for b, seq in run.sizes.llm_anchors:
        # 8 x 2048 tokens of activations (~7 MB per token for LLaMA-7B) do not fit without checkpointing.
        ckpt = b * seq >= 8192 or run.args.grad_ckpt
        was = model.cfg.gradient_checkpointing
        if ckpt and not was:
            base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        ids = torch.randint(3, vocab, (b, seq), device=run.device)

        def f():
            with run.amp():
                loss = llm(input_ids=ids, attention_mask=torch.ones_like(ids), labels=ids, use_cache=False).loss
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        model.train()
        run.reset_peak()
        ok, times = try_fits(run, lambda: run.timed(f, per))
        opt.zero_grad(set_to_none=True)
        if ckpt and not was:
            base.gradient_checkpointing_disable()
        name = f"llm_lora_train_{b}x{seq}"
        if not ok:
            run.emit(name, float("nan"), "tokens/s", b, error="out of memory")
            run.errors.append(f"{name}: out of memory")
            continue
        t_step = statistics.median(times)
        peak, basis = run.peak_mem_gib()
        fl = llm_flops_per_sequence(model.cfg, seq)
        run.emit(name, b * seq / t_step, "tokens/s", b, seq_len=seq, step_s=t_step, peak_mem_gib=peak, mem_basis=basis,
                 gradient_checkpointing=ckpt, mfu=run.mfu(fl * b / t_step), mfu_basis=run.peak_basis)
        run.free()
    del opt
    run.free()


# -- eval -----------------------------------------------------------------------------------------
def grounding_samples(videos: list[str], n: int) -> list[Any]:
    """`n` Charades-style grounding requests cycling over `videos` (each item decodes its video again)."""
    from timechat.eval.inference import EvalSample
    from timechat.eval.tasks.common import format_task_prompt
    from timechat.eval.tasks.grounding import TVG_PROMPTS

    prompt = format_task_prompt(TVG_PROMPTS["tvg_description_zeroshot"], "charades", GROUNDING_QUERY)
    return [EvalSample(id=f"bench{i:05d}", video=videos[i % len(videos)], prompt=prompt) for i in range(n)]


def eval_engine(run: Runner, ctx: dict[str, Any], b: int):
    """The evaluation's `InferenceEngine` over the recipe's model, decoding exactly `new_tokens` per video."""
    from timechat.config import EvalConfig
    from timechat.eval.inference import InferenceEngine

    workers = min(8, os.cpu_count() or 1) if not run.args.smoke else min(2, os.cpu_count() or 1)
    cfg = EvalConfig(num_frames=run.sizes.n_frames, batch_size=b, num_workers=workers,
                     max_new_tokens=run.sizes.new_tokens, precision=run.dtype, max_context=100_000, resume=False,
                     log_every_s=1e9)
    recipe = ctx["recipe"]
    return InferenceEngine(recipe.model, recipe.tokenizers, cfg, run.workdir / "eval_results", run.device,
                           rank=0, world_size=1, ignore_eos=True)


class LastContext:
    """Records the last prompt context (embeds, mask) the engine builds, for `decode_tokens_per_s_b1`;
    used around the warm-up run only, so timed runs call the model unwrapped."""

    def __init__(self, model) -> None:
        self.model, self.last = model, None

    def __enter__(self) -> "LastContext":
        build = self.model.build_context_embeds

        def record(*args: Any, **kwargs: Any):
            embeds, mask = build(*args, **kwargs)
            self.last = (embeds[:1].clone(), mask[:1].clone())
            return embeds, mask

        self.model.build_context_embeds = record
        return self

    def __exit__(self, *exc: Any) -> None:
        del self.model.build_context_embeds  # the class's method again


def measure_eval(run: Runner, ctx: dict[str, Any], b: int, batches: int, budget: float) -> dict[str, Any] | None:
    """`InferenceEngine.run` over `batches` batches of `b` videos after a one-batch warm-up run (kernels,
    allocator); the timed run includes its DataLoader's worker start-up, as an evaluation does."""
    s = run.sizes
    engine = eval_engine(run, ctx, b)

    def go() -> tuple[float, int]:
        with LastContext(engine.model) as last:
            t0 = time.perf_counter()
            warm = engine.run(grounding_samples(ctx["videos"], b))
            run.sync()
            t_warm = time.perf_counter() - t0
        assert all("answer" in e for e in warm), [e.get("error") for e in warm]
        ctx["eval_last"] = last.last
        n = max(1, min(batches, int(budget / max(t_warm, 1e-9))))
        t0 = time.perf_counter()
        done = engine.run(grounding_samples(ctx["videos"], b * n))
        run.sync()
        assert len(done) == b * n and all("answer" in e for e in done), [e.get("error") for e in done]
        return time.perf_counter() - t0, n

    run.reset_peak()
    ok, res = try_fits(run, go)
    if not ok:
        return None
    elapsed, done = res
    peak, basis = run.peak_mem_gib()
    run.free()
    return {"videos_per_s": b * done / elapsed, "batches_timed": done, "peak_mem_gib": peak, "mem_basis": basis,
            "new_tokens": s.new_tokens, "frames": s.n_frames, "workers": engine.cfg.num_workers,
            "context_len": int(ctx["eval_last"][0].shape[1])}


def section_eval(run: Runner, ctx: dict[str, Any]) -> None:
    s = run.sizes
    ctx["model"].eval()
    deadline = time.perf_counter() + s.budget_s["eval"]
    per = s.budget_s["eval"] / 6
    found: dict[int, dict[str, Any]] = {}
    for b in s.eval_batches:
        r = measure_eval(run, ctx, b, 3 if b == 1 else 2, per)
        if r is None:
            run.emit(f"eval_videos_per_s_b{b}", float("nan"), "videos/s", b, error="out of memory")
            run.errors.append(f"eval_videos_per_s_b{b}: out of memory")
            break
        found[b] = r
        vps = r["videos_per_s"]
        run.emit(f"eval_videos_per_s_b{b}", vps, "videos/s", b, tokenizer=ctx["llama_label"], **_rest(r))
        if b == 1:
            run.emit("eval_new_tokens_per_s_b1", vps * s.new_tokens, "tokens/s", 1, new_tokens=s.new_tokens)
            decode_b1(run, ctx)
    best = max(found) if found else None
    lo, hi, b = best, None, (best or 1) * 2
    last = 0.0
    while b <= s.eval_batch_cap and time.perf_counter() + 2.2 * last < deadline:  # 2x batch ~ 2x time
        t0 = time.perf_counter()
        r = measure_eval(run, ctx, b, 1, per)
        last = time.perf_counter() - t0
        if r is None:
            hi = b
            break
        found[b], lo = r, b
        b *= 2
    if lo is not None:
        r = found[lo]
        run.emit("eval_videos_per_s_bmax", r["videos_per_s"], "videos/s", lo, first_oom_batch=hi,
                 search_cap=s.eval_batch_cap, tokenizer=ctx["llama_label"], **_rest(r))


def decode_b1(run: Runner, ctx: dict[str, Any]) -> None:
    """Pure decoding speed at batch 1: (t(64 new tokens) - t(1 new token)) / 63 from the same context."""
    from timechat.models.generation import GenerationConfig, generate

    embeds, mask = ctx["eval_last"]
    llm = ctx["model"].llama_model
    n = run.sizes.new_tokens

    def gen(k: int) -> Callable[[], Any]:
        cfg = GenerationConfig(max_new_tokens=k, eos_token_id=-1, max_context=100_000)

        def f():
            with torch.inference_mode(), run.amp():
                generate(llm, embeds, mask, cfg)
        return f

    t1 = statistics.median(run.timed(gen(1), run.sizes.budget_s["eval"] / 10, warmup=1, iters=3))
    tn = statistics.median(run.timed(gen(n), run.sizes.budget_s["eval"] / 10, warmup=1, iters=3))
    run.emit("decode_tokens_per_s_b1", (n - 1) / max(tn - t1, 1e-9), "tokens/s", 1, prefill_s=t1,
             context_len=int(embeds.shape[1]), new_tokens=n)


def section_generate(run: Runner, ctx: dict[str, Any]) -> None:
    """HF `generate` (greedy, exactly `new_tokens`) on the model's LLM, prefill included."""
    model = ctx["model"].eval()
    llm, n, seq = model.base_llm, run.sizes.new_tokens, run.sizes.generate_context
    per = run.sizes.budget_s["generate"] / len(run.sizes.generate_batches)
    for b in run.sizes.generate_batches:
        ids = torch.randint(3, model.cfg.llm.vocab_size, (b, seq), device=run.device)

        def f():
            with torch.inference_mode(), run.amp():
                out = llm.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=n,
                                   min_new_tokens=n, do_sample=False, use_cache=True, pad_token_id=0)
            assert out.shape[1] == seq + n, out.shape

        ok, times = try_fits(run, lambda: run.timed(f, per, warmup=1, iters=3))
        name = f"hf_generate_tokens_per_s_b{b}"
        if not ok:
            run.emit(name, float("nan"), "tokens/s", b, error="out of memory")
            run.errors.append(f"{name}: out of memory")
            continue
        t = statistics.median(times)
        run.emit(name, b * n / t, "tokens/s", b, context_len=seq, new_tokens=n, call_s=t)


# -- profile --------------------------------------------------------------------------------------
def profile_train(run: Runner, ctx: dict[str, Any]) -> str:
    """torch.profiler table of the training step's top ops (batch 1), printed to stderr."""
    from torch.profiler import ProfilerActivity, profile

    step = ctx["train_step"]
    batches = [make_train_batch(run, ctx["model"], ctx["ts_tok_train"], 1)]
    step(batches)
    run.sync()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if run.cuda else [])
    with profile(activities=activities) as prof:
        for _ in range(2 if run.args.smoke else 3):
            step(batches)
        run.sync()
    key = "self_cuda_time_total" if run.cuda else "self_cpu_time_total"
    try:
        table = prof.key_averages().table(sort_by=key, row_limit=25)
    except (AttributeError, KeyError, RuntimeError):
        table = prof.key_averages().table(sort_by="self_device_time_total", row_limit=25)
    text = f"# training step, batch 1, {run.common['model']} on {run.common['device']}, sorted by {key}\n{table}\n"
    print(text, file=sys.stderr)
    if run.args.profile_out:
        Path(run.args.profile_out).write_text(text)
    return text


# --------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", help="also write the JSON lines to this file")
    p.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated subset of {','.join(SECTIONS)}")
    p.add_argument("--smoke", action="store_true", help="CPU/CI: tiny model, 8 frames, short text, a few seconds")
    p.add_argument("--tiny", action="store_true", help="tiny model (automatic without CUDA)")
    p.add_argument("--cpu", action="store_true", help="run on CPU even if CUDA is available")
    p.add_argument("--grad-ckpt", action="store_true", help="gradient checkpointing in the LLM and frame Q-Former")
    p.add_argument("--profile", action="store_true", help="print a torch.profiler table of the training step")
    p.add_argument("--profile-out", help="also write the profiler table to this file")
    p.add_argument("--iters", type=int, default=0, help="timed iterations per figure (default 5; smoke 2)")
    p.add_argument("--tokenizer", help="LLaMA tokenizer dir (default: shared fixtures' llama-2 if present, else tiny)")
    p.add_argument("--bert-tokenizer", help="BERT tokenizer dir (default: fixtures' bert-base-uncased, else tiny)")
    p.add_argument("--workdir", help="where generated eval videos are kept (default: $TMPDIR/timechat_bench)")
    args = p.parse_args(argv)
    unknown = sorted(set(args.sections.split(",")) - set(SECTIONS))
    if unknown:
        p.error(f"unknown section(s) {unknown}; choose from {SECTIONS}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from timechat.data.tokenization import tokenize_timestamps

    run = Runner(args)
    t_start = time.perf_counter()
    torch.manual_seed(0)
    if args.smoke:
        # Tiny tensors gain nothing from intra-op threads, and on a shared CI CPU OpenMP threads
        # that wait for a descheduled peer made a 30 ms step take seconds.
        torch.set_num_threads(1)
    if run.cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    sections = [s for s in SECTIONS if s in args.sections.split(",")]
    llama_dir, llama_label = find_tokenizer_dir(args.tokenizer, "llama-2", "tiny_tokenizer", run.tiny)
    bert_dir, _ = find_tokenizer_dir(args.bert_tokenizer, "bert-base-uncased", "tiny_bert", run.tiny)
    ctx: dict[str, Any] = {"llama_dir": llama_dir, "llama_label": llama_label}
    if "matmul" in sections:  # first: sets the MFU denominator where the GPU is not in the table
        _guard(run, "matmul", section_matmul, ctx)
    elif run.peak_tflops is None:
        section_matmul(run, ctx)
    data = bench_data(run)
    ctx["videos"] = sorted(str(p) for p in data.videos_dir["train"].glob("*.mp4"))
    recipe = build_recipe(run, data, llama_dir, bert_dir)
    model = recipe.model
    ctx.update(recipe=recipe, model=model, train_step=recipe.train_step,
               ts_tok_train=recipe.tokenizers.timestamp(model.cfg, training=True))
    ctx["ts_len_train"] = int(tokenize_timestamps(timestamp_sentences_for(run.sizes.n_frames, run.sizes.video_seconds),
                                                  ctx["ts_tok_train"])["input_ids"].shape[1])
    for name in sections:
        if name == "matmul":
            continue
        model.train() if name in ("train", "cached", "llm") else model.eval()
        _guard(run, name, globals()[f"section_{name}"], ctx)
    if args.profile:
        model.train()
        _guard(run, "profile", profile_train, ctx)
    recipe.cleanup()
    run.log(f"done in {time.perf_counter() - t_start:.1f}s" + (f"; errors: {run.errors}" if run.errors else ""))
    if run.out:
        run.out.close()
    return 1 if run.errors else 0


def _guard(run: Runner, name: str, fn: Callable[[Runner, dict[str, Any]], Any], ctx: dict[str, Any]) -> None:
    """Run a section; an exception is reported (stderr + error list) and the next section still runs."""
    t0 = time.perf_counter()
    try:
        fn(run, ctx)
    except Exception as exc:  # a benchmark should report every section it can
        import traceback

        traceback.print_exc()
        run.errors.append(f"{name}: {type(exc).__name__}: {exc}")
        run.free()
    run.log(f"section {name}: {time.perf_counter() - t0:.1f}s")


if __name__ == "__main__":
    sys.exit(main())
