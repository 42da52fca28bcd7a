"""Helpers shared by the training tests (importable because pytest puts tests/train on sys.path)."""

from __future__ import annotations

from pathlib import Path

from timechat.data.synthetic import generate_synthetic_dataset

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "train_configs" / "tiny_synthetic.yaml"


def generate_small_synthetic(root: Path) -> Path:
    generate_synthetic_dataset(root / "synthetic", seed=3, num_train=12, num_val=0, num_test=4, duration=(6, 8),
                               fps=4, size=32, max_events=2, min_event_duration=2, time_grid=1.0)
    return root


def _overrides(data_root: Path, out: Path, *extra: str) -> list[str]:
    """Shrink the tiny config to seconds: 4 frames of 28 px, batch 2, 8 iterations per epoch."""
    return [
        f"paths.data_root={data_root}", f"output_dir={out}",
        "datasets.synthetic_tvg.num_frames=4", "datasets.synthetic_tvg.image_size=28",
        "datasets.synthetic_dvc.num_frames=4", "datasets.synthetic_dvc.image_size=28",
        "datasets.synthetic_timeline.num_frames=4", "datasets.synthetic_timeline.image_size=28",
        "model.config.vision.image_size=28", "run.batch_size=2", "run.num_workers=0", "run.tensorboard=false",
        "run.iters_per_epoch=8", "run.warmup_steps=2", "run.log_every=1", "run.save_every_steps=2",
        "run.export_original=true", "run.synthetic_data=null", *extra,
    ]
