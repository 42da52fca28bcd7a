"""DeepSpeed ZeRO-2 path of the recipe on CPU (gloo), when deepspeed is installed (`pip install -e .[deepspeed]`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("deepspeed")

from conftest_train import CONFIG, REPO, _overrides  # noqa: E402


def _train(data_root: Path, out: Path, *extra: str) -> dict:
    env = dict(os.environ, DS_ACCELERATOR="cpu", OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    cmd = [sys.executable, str(REPO / "train.py"), "--cfg-path", str(CONFIG),
           *_overrides(data_root, out, "run.deepspeed={zero_optimization: {stage: 2}}", "run.precision=fp32", *extra)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return json.loads((out / "train_summary.json").read_text())


@pytest.mark.slow
def test_zero2_trains_checkpoints_and_resumes(synthetic_root, tmp_path):
    full = _train(synthetic_root, tmp_path / "full", "run.max_steps=4")
    _train(synthetic_root, tmp_path / "split", "run.max_steps=2")
    second = _train(synthetic_root, tmp_path / "split", "run.max_steps=4")
    assert len(full["losses"]) == 4 and len(second["losses"]) == 4  # the history before the resume is restored
    assert second["losses"] == pytest.approx(full["losses"], rel=1e-5)
    shards = tmp_path / "split/checkpoints/deepspeed/step_00000004"
    assert any(p.name.endswith("optim_states.pt") for p in shards.iterdir())
    state = json.loads((tmp_path / "split/checkpoints/step_00000004/trainer_state.json").read_text())
    assert state["extra"]["deepspeed_tag"] == "step_00000004"
