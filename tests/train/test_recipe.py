"""End-to-end training tests on generated videos with the tiny model: exact resume, torchrun, export."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest_train import CONFIG, REPO, _overrides
from timechat.config import load_config
from timechat.train.recipe import TrainRecipe


def _run(data_root: Path, out: Path, *extra: str) -> dict:
    recipe = TrainRecipe(load_config(CONFIG, _overrides(data_root, out, *extra)))
    recipe.setup()
    try:
        return recipe.train()
    finally:
        recipe.cleanup()


@pytest.fixture(scope="module")
def full_run(synthetic_root, tmp_path_factory) -> tuple[dict, Path]:
    """4 uninterrupted steps (checkpoints at 2 and 4): the reference of the resume tests."""
    out = tmp_path_factory.mktemp("full") / "run"
    return _run(synthetic_root, out, "run.max_steps=4"), out


def test_resume_is_bitwise_identical(full_run, synthetic_root, tmp_path):
    """2 steps + resume + 2 steps == 4 uninterrupted steps: same losses, same weights (CPU, bitwise). The
    summary after the resume has the losses of all 4 steps, as its `steps` says (the history is checkpointed)."""
    full, full_dir = full_run
    first = _run(synthetic_root, tmp_path / "split", "run.max_steps=2")
    second = _run(synthetic_root, tmp_path / "split", "run.max_steps=4")  # resume=auto picks step 2
    assert len(full["losses"]) == 4 and len(first["losses"]) == 2
    assert second["steps"] == 4 and second["losses"] == full["losses"]
    assert json.loads((tmp_path / "split/train_summary.json").read_text())["losses"] == full["losses"]
    a = load_file(str(full_dir / "checkpoints/step_00000004/trainable.safetensors"))
    b = load_file(str(tmp_path / "split/checkpoints/step_00000004/trainable.safetensors"))
    assert a.keys() == b.keys() and len(a) > 10
    for k in a:
        assert torch.equal(a[k], b[k]), k
    # the resolved config travels with the run and with every checkpoint
    assert (tmp_path / "split/config.yaml").is_file()
    assert "synthetic_tvg" in (tmp_path / "split/checkpoints/step_00000004/config.yaml").read_text()


def test_resume_auto_steps_back_past_a_corrupt_newest_checkpoint(full_run, synthetic_root, tmp_path, caplog):
    """Same-size damage to the newest checkpoint's tensor bytes (it loaded silently, then NaN): resume=auto
    says so, resumes from the step before, and ends with the weights and losses of the uninterrupted run."""
    import shutil

    full, full_dir = full_run
    out = tmp_path / "run"
    shutil.copytree(full_dir, out)
    newest = out / "checkpoints/step_00000004/trainable.safetensors"
    data = bytearray(newest.read_bytes())
    data[-3] ^= 0xFF
    newest.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="timechat.train.recipe"):
        again = _run(synthetic_root, out, "run.max_steps=4")
    assert f"skipping damaged checkpoint step_00000004 ({newest}: sha256 differs" in caplog.text
    assert "falling back to " + str(out / "checkpoints/step_00000002") in caplog.text
    assert again["steps"] == 4 and again["losses"] == full["losses"]
    expected = load_file(str(full_dir / "checkpoints/step_00000004/trainable.safetensors"))
    got = load_file(str(newest))
    assert got.keys() == expected.keys() and all(torch.equal(got[k], expected[k]) for k in expected)
    assert len(list((out / "checkpoints").glob("step_00000004.corrupt-*"))) == 1  # kept for a look, never listed


def test_training_reduces_loss_and_exports_original_layout(synthetic_root, tmp_path):
    summary = _run(synthetic_root, tmp_path / "run", "run.max_steps=8", "run.init_lr=3e-3")
    losses = summary["losses"]
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3
    exported = torch.load(summary["original_layout"], weights_only=True)["model"]
    assert "llama_proj.weight" in exported and "video_Qformer.bert.embeddings.LayerNorm.weight" in exported
    assert any(k.startswith("Qformer.bert.encoder.layer.0.attention.self.") for k in exported)
    metrics = [json.loads(line) for line in (tmp_path / "run/metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == list(range(1, 9))


def test_unknown_config_key_is_an_error(synthetic_root, tmp_path):
    with pytest.raises(KeyError, match="max_stepz"):
        load_config(CONFIG, _overrides(synthetic_root, tmp_path, "run.max_stepz=3"))


@pytest.mark.slow  # torchrun with 2 gloo processes (~15 s); CI runs it
@pytest.mark.skipif(sys.platform != "linux", reason="torchrun with gloo is exercised on Linux")
def test_torchrun_two_processes(synthetic_root, tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29533",
           str(REPO / "train.py"), "--cfg-path", str(CONFIG),
           *_overrides(synthetic_root, tmp_path / "ddp", "run.max_steps=4")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    ckpt = tmp_path / "ddp/checkpoints/step_00000004"
    assert (ckpt / "COMPLETE").is_file()
    assert (ckpt / "rng_state_rank0.pt").is_file() and (ckpt / "rng_state_rank1.pt").is_file()
    state = json.loads((ckpt / "trainer_state.json").read_text())
    assert state["world_size"] == 2 and state["step"] == 4


@pytest.mark.parametrize("frames", ["cached", "live"])
def test_bad_videos_are_counted_and_training_goes_on(synthetic_root, tmp_path, frames):
    """Cached: the build records the failures and the dataset reports them; live: decoded in a worker."""
    import shutil

    data = tmp_path / "data"
    shutil.copytree(synthetic_root, data, ignore=shutil.ignore_patterns("features"))  # no cache from other tests
    videos = sorted((data / "synthetic/videos/train").glob("*.mp4"))
    videos[0].write_bytes(b"not a video at all")  # corrupt
    videos[1].unlink()  # missing
    live = [f"datasets.{n}.feature_cache=null" for n in ("synthetic_tvg", "synthetic_dvc", "synthetic_timeline")]
    summary = _run(data, tmp_path / "run", "run.max_steps=6", "run.num_workers=1", "run.max_failure_rate=0.9",
                   *(live if frames == "live" else []))
    if frames == "cached":
        failed = json.loads(next((data / "synthetic/features").glob("*/index.json")).read_text())["failed"]
        assert sorted(f["video"] for f in failed) == sorted(f"videos/train/{v.name}" for v in videos[:2])
    errors = summary["data_errors"]
    assert summary["steps"] == 6
    assert errors["failures"] >= 1 and errors["attempts"] > errors["failures"]
    assert set(errors["by_reason"]) <= {"video_missing", "video_undecodable"}
    assert any(videos[0].name in ex or videos[1].name in ex for exs in errors["examples"].values() for ex in exs)


def test_feature_cache_built_on_first_use_trains_like_live_frames(synthetic_root, tmp_path):
    """run.build_feature_cache: the missing ViT features are computed before step 1 (one cache shared
    by the three datasets), and training on them gives the live-frame losses; a rerun finds them."""
    names = ("synthetic_tvg", "synthetic_dvc", "synthetic_timeline")
    cache = tmp_path / "features"
    cached = [*(f"datasets.{n}.feature_cache={cache}" for n in names), "run.build_feature_cache=true"]
    live = _run(synthetic_root, tmp_path / "live", "run.max_steps=3", *(f"datasets.{n}.feature_cache=null" for n in names))
    first = _run(synthetic_root, tmp_path / "cached", "run.max_steps=3", *cached)
    index = json.loads((cache / "index.json").read_text())
    assert len(index["videos"]) == 12  # every training video of the small dataset, once
    torch.testing.assert_close(torch.tensor(first["losses"]), torch.tensor(live["losses"]), rtol=1e-5, atol=1e-6)
    stamp = {p.name: p.stat().st_mtime_ns for p in (cache / "features").iterdir()}
    again = _run(synthetic_root, tmp_path / "again", "run.max_steps=3", *cached)
    assert again["losses"] == first["losses"]  # same random draws whether or not the cache was built
    assert {p.name: p.stat().st_mtime_ns for p in (cache / "features").iterdir()} == stamp  # nothing rebuilt


def test_feature_cache_refuses_random_frame_sampling(synthetic_root, tmp_path):
    with pytest.raises(ValueError, match=r"datasets\.synthetic_tvg: .*sampling='rand'"):
        _run(synthetic_root, tmp_path / "run", "run.max_steps=1", "datasets.synthetic_tvg.sampling=rand")
