"""Eval configs resolve (task and model names, launch headers) and eval.checkpoint resolution."""

from __future__ import annotations

from pathlib import Path

import pytest

from timechat import registry
from timechat.config import eval_config, load_config
from timechat.eval.run import resolve_checkpoint

REPO = Path(__file__).resolve().parents[2]


def test_every_config_resolves():
    """Each eval YAML loads, its task and model names are registered, and its header has a launch command."""
    files = sorted((REPO / "eval_configs").glob("*.yaml"))
    assert {f.stem for f in files} >= {"timechat_dvc_youcook2", "timechat_tvg_charades", "timechat_vhd_qvhighlights",
                                       "timechat_mvbench", "timechat_tempcompass", "timechat_egoschema",
                                       "timechat_videomme", "tiny_synthetic"}
    for f in files:
        cfg = load_config(f)
        ecfg = eval_config(cfg)
        registry.lookup("task", ecfg.task)
        registry.lookup("model", cfg.model.name)
        head = f.read_text().splitlines()[0]
        assert head.startswith("# ") and "evaluate.py" in f.read_text().split("\npaths:")[0].split("\noutput_dir")[0], f
        if ecfg.task in ("mvbench", "tempcompass", "egoschema", "videomme"):
            assert ecfg.lora_alpha == 20 and ecfg.num_frames == 96 and ecfg.system == "benchmark", f
        elif f.stem != "tiny_synthetic":
            assert ecfg.num_frames == 96 and cfg.model.files.ckpt == "timechat/timechat_7b.pth", f


def test_resolve_checkpoint(tmp_path):
    assert resolve_checkpoint(None, None) == (None, None)
    run = tmp_path / "run"
    for step, complete in ((100, True), (200, True), (300, False)):
        d = run / "checkpoints" / f"step_{step:08d}"
        d.mkdir(parents=True)
        (d / "trainable.safetensors").write_bytes(b"")
        if complete:
            (d / "COMPLETE").write_text("{}")
    assert resolve_checkpoint("latest", str(run)) == ("trainable", str(run / "checkpoints/step_00000200"))
    assert resolve_checkpoint(str(run), None)[1].endswith("step_00000200")
    (tmp_path / "x.pth").write_bytes(b"")
    assert resolve_checkpoint(str(tmp_path / "x.pth"), None) == ("original", str(tmp_path / "x.pth"))
    with pytest.raises(ValueError, match="train_dir"):
        resolve_checkpoint("latest", None)
    with pytest.raises(FileNotFoundError, match="no complete step folder"):
        resolve_checkpoint("latest", str(tmp_path / "empty"))
