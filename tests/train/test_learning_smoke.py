"""Learning smoke test: a short training of the tiny model grounds queries in the frames.

The whole stack (synthetic videos -> frozen ViT features -> timestamp-aware frame Q-Former -> video
Q-Former -> LLM) is trained for a few hundred steps on small single-event videos of varying length,
then evaluated with `evaluate.py`'s code on the val split. It must beat the mean-training-span
baseline (the best a model that ignores the frames can do on average) by a clear margin. The same
run with the video tokens zeroed (`test_fails_without_the_visual_path`, slow) shows the margin
comes from the visual path: it stays at the baseline.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from conftest_train import CONFIG, REPO
from timechat.config import load_config
from timechat.data.synthetic import generate_synthetic_dataset
from timechat.eval.run import run_evaluation
from timechat.models.timechat import TimeChat
from timechat.train.recipe import TrainRecipe

MARGIN = 25.0
"""R1@0.5 points above the mean-span baseline that the trained model must reach on val."""
STEPS = 400


def _baselines():
    spec = importlib.util.spec_from_file_location("synthetic_baselines", REPO / "scripts" / "synthetic_baselines.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def smoke_data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("smoke")
    # One event per video, 8-16 s long: where the shape is and how long the video is vary, so a span
    # that ignores the frames is right only by chance.
    generate_synthetic_dataset(root / "synthetic", seed=11, num_train=320, num_val=48, num_test=0,
                               duration=(8, 8), fps=2, size=32, max_events=1, min_event_duration=2,
                               time_grid=1.0, tasks=("tvg",))
    return root


def _train_and_eval(data_root: Path, out: Path) -> dict[str, float]:
    frames = "8"
    train_cfg = load_config(CONFIG, [
        f"paths.data_root={data_root}", f"output_dir={out}", "run.synthetic_data=null",
        "datasets.synthetic_tvg.ratio=1.0", f"datasets.synthetic_tvg.num_frames={frames}",
        "datasets.synthetic_tvg.image_size=28", "model.config.vision.image_size=28",
        "run.batch_size=8", f"run.iters_per_epoch={STEPS}", "run.warmup_steps=20", "run.init_lr=2e-3",
        "run.save_every_steps=100000", "run.keep_last=1", "run.tensorboard=false", "run.log_every=100",
        "run.build_feature_cache=true",
    ])
    for name in list(train_cfg.datasets):
        if name != "synthetic_tvg":
            del train_cfg.datasets[name]
    train_cfg.datasets.synthetic_tvg.feature_cache = str(data_root / "synthetic" / "features" / "smoke")
    recipe = TrainRecipe(train_cfg)
    recipe.setup()
    try:
        recipe.train()
    finally:
        recipe.cleanup()
    syn = data_root / "synthetic"
    eval_cfg = load_config(REPO / "eval_configs" / "tiny_synthetic.yaml", [
        f"paths.data_root={data_root}", f"output_dir={out / 'eval'}", "eval.split=val",
        f"eval.anno_path={syn / 'annotations' / 'tvg_val.caption_coco_format.json'}",
        f"eval.videos_dir={syn / 'videos' / 'val'}", f"eval.train_dir={out}", f"eval.num_frames={frames}",
        "eval.num_workers=0", "eval.batch_size=16",
    ])
    report = run_evaluation(eval_cfg)
    base = _baselines().baselines(syn, "val")
    return {"model": report["metrics"]["R1@0.5"], "mean_span": base["mean_train_span"]["R1@0.5"]}


def test_short_training_beats_the_mean_span_baseline(smoke_data, tmp_path):
    got = _train_and_eval(smoke_data, tmp_path / "run")
    assert got["model"] >= got["mean_span"] + MARGIN, got


@pytest.mark.slow
def test_fails_without_the_visual_path(smoke_data, tmp_path, monkeypatch):
    """The smoke test's bar is out of reach when the LLM gets zeros instead of video tokens."""
    encode = TimeChat.encode_batch_videos

    def zeroed(self, batch):
        return [torch.zeros_like(v) for v in encode(self, batch)]

    monkeypatch.setattr(TimeChat, "encode_batch_videos", zeroed)
    got = _train_and_eval(smoke_data, tmp_path / "run")
    assert got["model"] < got["mean_span"] + MARGIN, got
