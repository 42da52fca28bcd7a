"""Every YAML loads and validates; every registry name used resolves; the main run is the paper's."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from timechat import registry
from timechat.config import load_config, resolve_config, run_config
from timechat.factory import model_config_from
from timechat.models.builders import ModelFiles
from timechat.train.schedule import lr_at

REPO = Path(__file__).resolve().parents[1]
TRAIN_YAMLS = sorted((REPO / "train_configs").glob("*.yaml"))
EVAL_YAMLS = sorted((REPO / "eval_configs").glob("*.yaml"))


def test_there_are_configs():
    names = {p.name for p in TRAIN_YAMLS}
    assert {"stage2_finetune_time104k_valley72k.yaml", "stage2_finetune_youcook2.yaml",
            "stage2_finetune_charades.yaml", "stage2_finetune_qvhighlights.yaml", "tiny_synthetic.yaml"} <= names


@pytest.mark.parametrize("path", TRAIN_YAMLS + EVAL_YAMLS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_yaml_loads_validates_and_resolves(path):
    text = path.read_text()
    assert text.startswith("#"), "each YAML opens with a comment: purpose + launch command"
    assert "python" in text.split("\n\n")[0] or "torchrun" in text.split("\n\n")[0] or "bash" in text.split("\n\n")[0]
    cfg = load_config(path)
    resolved = resolve_config(cfg)
    # registry names used by the config
    model_section = resolved["model"]
    registry.lookup("model", model_section.get("name", "timechat_7b"))
    model_cfg = model_config_from(model_section)
    ModelFiles.from_dict(model_section.get("files"))
    for entry in (resolved.get("datasets") or {}).values():
        registry.lookup("dataset", entry.get("builder", "timeit"))
    if "run" in resolved:
        registry.lookup("lr_schedule", resolved["run"]["lr_schedule"])
    if "eval" in resolved:
        registry.lookup("task", resolved["eval"]["task"])
    # no absolute paths in configs: every path hangs off a configurable root
    for line in text.splitlines():
        value = line.split(":", 1)[-1].strip()
        assert not value.startswith("/"), f"absolute path in {path.name}: {line}"
    assert model_cfg.num_video_tokens(96) > 0


def test_main_run_matches_the_paper():
    cfg = load_config(REPO / "train_configs/stage2_finetune_time104k_valley72k.yaml")
    run = run_config(cfg)
    gpus = 8
    assert run.batch_size * run.accum_grad_iters * gpus == 32  # effective batch of the paper
    assert (run.max_epoch, run.iters_per_epoch, run.warmup_steps) == (3, 22000, 13200)
    assert (run.init_lr, run.min_lr, run.warmup_lr, run.weight_decay) == (3e-5, 1e-5, 1e-6, 0.05)
    assert run.lr_schedule == "linear_warmup_cosine_lr" and run.mixing == "uniform"
    kw = dict(init_lr=run.init_lr, min_lr=run.min_lr, warmup_lr=run.warmup_lr, warmup_steps=run.warmup_steps,
              iters_per_epoch=run.iters_per_epoch, max_epoch=run.max_epoch)
    assert lr_at(0, 0, **kw) == pytest.approx(1e-6, rel=1e-12)
    assert lr_at(0, 6600, **kw) == pytest.approx(1e-6 + (3e-5 - 1e-6) * 0.5, rel=1e-12)
    # the cosine counts from t=0, so the LR drops right after warmup (spec 4.4)
    assert lr_at(0, 13200, **kw) == pytest.approx(1e-5 + 2e-5 * 0.5 * (1 + math.cos(math.pi * 13200 / 66000)), rel=1e-12)
    assert lr_at(2, 21999, **kw) == pytest.approx(1e-5, abs=1e-9)
    model_cfg = model_config_from(OmegaConf.to_container(cfg.model, resolve=True))
    assert (model_cfg.window_size, model_cfg.stride, model_cfg.max_frame_pos, model_cfg.lora.r) == (32, 32, 96, 32)
    assert model_cfg.mode == "compat" and model_cfg.freeze_vit and not model_cfg.freeze_qformer


def test_registry_has_no_import_side_effects_and_lists_names():
    with pytest.raises(KeyError, match="known"):
        registry.lookup("model", "no_such_model")
    with pytest.raises(TypeError, match="unexpected keyword"):
        registry.build("model", "timechat_tiny", no_such_field=1)
