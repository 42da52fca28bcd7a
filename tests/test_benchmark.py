"""scripts/benchmark.py: the smoke run produces every figure, and what it times is the product's code
(`TrainRecipe.train_step`, `InferenceEngine`). The FLOP model is tested in tests/test_flops.py."""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "benchmark.py"

EXPECTED = [
    "matmul_tflops", "vit_forward",
    "train_step_b1", "train_step_b2", "train_step_b4", "train_step_bmax",
    "train_step_cached_features_b1", "train_step_cached_features_b4",
    "llm_lora_train_1x64", "llm_lora_train_8x128",
    "eval_videos_per_s_b1", "eval_new_tokens_per_s_b1", "decode_tokens_per_s_b1",
    "eval_videos_per_s_b16", "eval_videos_per_s_bmax",
    "hf_generate_tokens_per_s_b1", "hf_generate_tokens_per_s_b16",
]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("timechat_benchmark_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file executes
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow  # a subprocess that builds, trains and evaluates through the product (~25 s); CI runs it
def test_smoke_run_reports_every_figure(tmp_path):
    out = tmp_path / "bench.jsonl"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--smoke", "--out", str(out), "--workdir", str(tmp_path / "work")],
        capture_output=True, text=True, timeout=180, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [json.loads(line) for line in proc.stdout.splitlines()] == rows  # stdout is the same JSON lines
    by_name = {r["figure"]: r for r in rows}
    assert sorted(by_name) == sorted(EXPECTED), sorted(set(by_name) ^ set(EXPECTED))
    for name, r in by_name.items():
        assert isinstance(r["value"], float) and math.isfinite(r["value"]) and r["value"] > 0, (name, r)
        assert r["device"] == "cpu" and r["smoke"] is True and r["model"] == "timechat_tiny", r
        assert r["torch"] == torch.__version__ and r["transformers"] and r["unit"]
        assert r["ratio_vs_original"] is None  # tiny CPU numbers are not comparable with the original's
    assert by_name["train_step_b1"]["original_h200"] == 1.74 and by_name["eval_videos_per_s_b16"]["original_h200"] == 2.27
    for name in ("train_step_b1", "train_step_bmax"):
        r = by_name[name]
        assert r["tokens_per_s"] > 0 and r["peak_mem_gib"] > 0 and 0 < r["mfu"] and r["tflop_per_sample"] > 0
    cached = by_name["train_step_cached_features_b1"]
    assert cached["speedup_vs_live"] > 0 and cached["tflop_per_sample"] < by_name["train_step_b1"]["tflop_per_sample"]
    assert by_name["train_step_bmax"]["batch"] >= 4
    assert by_name["eval_videos_per_s_b16"]["batch"] == 16 and by_name["eval_videos_per_s_b16"]["workers"] >= 1


def test_the_benchmark_times_the_recipe_step_and_the_inference_engine(bench, tmp_path, monkeypatch):
    """The timed training callable is the recipe's `train_step` (each call is one optimizer step of the
    recipe), and the eval figures come from `InferenceEngine.run` decoding exactly `new_tokens`."""
    import timechat.eval.inference as inference
    from timechat.train.recipe import TrainRecipe

    run = bench.Runner(bench.parse_args(["--smoke", "--workdir", str(tmp_path / "work")]))
    data = bench.bench_data(run)
    llama_dir, _ = bench.find_tokenizer_dir(None, "llama-2", "tiny_tokenizer", True)
    bert_dir, _ = bench.find_tokenizer_dir(None, "bert-base-uncased", "tiny_bert", True)
    recipe = bench.build_recipe(run, data, llama_dir, bert_dir)
    try:
        assert type(recipe) is TrainRecipe and recipe.train_step.__func__ is TrainRecipe.train_step
        model = recipe.model
        ctx = {"recipe": recipe, "model": model, "train_step": recipe.train_step,
               "ts_tok_train": recipe.tokenizers.timestamp(model.cfg, training=True), "ts_len_train": 1,
               "videos": sorted(str(p) for p in data.videos_dir["train"].glob("*.mp4"))}
        before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
        r = bench.measure_train(run, ctx, 2, False, budget=60.0)
        assert recipe.step == run.sizes.warmup + r["iters"] == recipe.iteration  # one recipe step per call
        assert any(not torch.equal(before[n], p) for n, p in model.named_parameters() if p.requires_grad)

        built, generated = [], []
        engine_init, generate = inference.InferenceEngine.__init__, inference.generate

        def spy_init(self, *args, **kwargs):
            engine_init(self, *args, **kwargs)
            built.append(self)

        def spy_generate(*args, **kwargs):
            out = generate(*args, **kwargs)
            generated.append(tuple(out.sequences.shape))
            return out

        monkeypatch.setattr(inference.InferenceEngine, "__init__", spy_init)
        monkeypatch.setattr(inference, "generate", spy_generate)
        model.eval()
        r = bench.measure_eval(run, ctx, 2, 1, budget=60.0)
        assert len(built) == 1 and built[0].model is model and built[0].cfg.batch_size == 2
        assert generated == [(2, run.sizes.new_tokens)] * 2  # warm-up run + one timed batch, all tokens forced
        assert r["batches_timed"] == 1 and r["new_tokens"] == run.sizes.new_tokens
        merged = json.loads((tmp_path / "work/eval_results/results.json").read_text())
        assert len(merged) == 2 and all(e["answer"] is not None and "error" not in e for e in merged)
    finally:
        recipe.cleanup()


def test_cli_rejects_unknown_sections(bench):
    with pytest.raises(SystemExit):
        bench.parse_args(["--sections", "train,bogus"])
