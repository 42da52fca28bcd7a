"""scripts/benchmark.py: the smoke run produces every figure; the FLOP model is what runs."""

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


def test_flop_model_matches_the_flop_counter_on_the_tiny_model(bench):
    from torch.utils.flop_counter import FlopCounterMode

    from timechat.data.tokenization import LlamaTokenizer
    from timechat.factory import ASSETS_DIR

    run = bench.Runner(bench.parse_args(["--smoke"]))
    model = bench.build_model(run).train()
    batch = bench.make_train_batch(run, model, LlamaTokenizer.from_pretrained(ASSETS_DIR / "tiny_tokenizer"), 2)
    ts_len = batch["timestamps"]["input_ids"].shape[1]
    s, v = run.sizes, model.cfg.vision
    ours = bench.flops_per_sample(model.cfg, s.n_frames, s.n_text, ts_len)
    with FlopCounterMode(display=False) as counter:
        model.encode_frames(torch.randn(s.n_frames, 3, v.image_size, v.image_size))
    # The CPU counter does not see the fused attention kernel: compare the matmul/conv part exactly.
    attention = s.n_frames * v.depth * 4 * v.num_tokens**2 * v.width
    assert counter.get_total_flops() == ours["vit"] - attention
    with FlopCounterMode(display=False) as counter:
        model(batch)["loss"].backward()
    assert abs(counter.get_total_flops() / (2 * ours["total"]) - 1) < 0.1


def test_flop_model_7b_and_cli(bench):
    from timechat.models.builders import timechat_7b

    f = bench.flops_per_sample(timechat_7b(), 96, 704, 15)
    # the original's accounting: ViT ~49, LLM ~21, Q-Formers ~4 TFLOP (+ attention terms here)
    assert 49e12 < f["vit"] < 51e12 and 21e12 < f["llm"] < 23e12 and 4e12 < f["qformers"] < 5e12
    assert 74e12 < f["total"] < 78e12
    assert bench.flops_per_sample(timechat_7b(), 96, 704, 15, include_vit=False)["vit"] == 0
    with pytest.raises(SystemExit):
        bench.parse_args(["--sections", "train,bogus"])
