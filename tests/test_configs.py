"""Every YAML loads and validates; every registry name used resolves; the main run is the paper's."""

from __future__ import annotations

import math
import re
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


def _yaml_names(resolved: dict) -> list[tuple[str, str]]:
    """(registry table, name) of every `name:` / `builder:` / `lr_schedule:` / `task:` a resolved config uses."""
    names = [("model", resolved["model"].get("name", "timechat_7b"))]
    names += [("dataset", entry.get("builder", "timeit")) for entry in (resolved.get("datasets") or {}).values()]
    if "run" in resolved:
        names.append(("lr_schedule", resolved["run"]["lr_schedule"]))
    if "eval" in resolved:
        names.append(("task", resolved["eval"]["task"]))
    return names


def test_every_registry_entry_and_every_yaml_name_resolves():
    for kind, table in registry.TABLES.items():
        for name, target in table.items():
            obj = registry.lookup(kind, name)  # imports the lazy target
            assert callable(obj) and obj.__name__ == target.split(":")[1], f"{kind} {name} -> {target}"
    used = set()
    for path in TRAIN_YAMLS + EVAL_YAMLS:
        for kind, name in _yaml_names(resolve_config(load_config(path))):
            assert name in registry.TABLES[kind], f"{path.name}: {kind} {name!r} is not registered"
            registry.lookup(kind, name)
            used.add(kind)
    assert used == {"model", "dataset", "lr_schedule", "task"}
    for kind, table in registry.TABLES.items():
        if kind == "lr_schedule":
            for name in table:
                assert registry.lookup(kind, name).name == name  # the schedule's own name is its key


def test_unknown_keys_name_the_key_the_section_and_the_allowed_keys(tmp_path):
    from timechat.models.config import TimeChatConfig
    from timechat.validation import UnknownKeyError

    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("modle: {}\n")
    cases = [
        (lambda: load_config(bad_yaml), "['modle']", str(bad_yaml), "'model'"),
        (lambda: load_config(None, ["model.nmae=x"]), "['nmae']", "model", "'name'"),
        (lambda: model_config_from({"name": "timechat_tiny", "config": {"llm": {"num_layer": 1}}}),
         "['num_layer']", "model.config.llm", "'num_layers'"),
        (lambda: TimeChatConfig(lora={"rank": 4}), "['rank']", "model.lora", "'r'"),
        (lambda: ModelFiles.from_dict({"vit": "a", "llm": "b"}), "['llm']", "model.files", "'llama'"),
    ]
    for make, key, where, allowed in cases:
        with pytest.raises(UnknownKeyError) as err:
            make()
        msg = str(err.value)
        assert msg.startswith(f"unknown key(s) {key} in {where}; allowed: [") and allowed in msg, msg
        assert isinstance(err.value, KeyError) and isinstance(err.value, TypeError)


def test_dataset_defaults_are_merged_into_each_dataset_and_n_frms_still_reads(tmp_path):
    cfg = resolve_config(load_config(REPO / "train_configs/tiny_synthetic.yaml", ["paths.data_root=D"]))
    assert "dataset_defaults" not in cfg
    for name, ratio in (("synthetic_tvg", 0.4), ("synthetic_dvc", 0.2), ("synthetic_timeline", 0.4)):
        entry = cfg["datasets"][name]
        assert entry == {"ratio": ratio, "records": f"D/synthetic/instruct/{name.split('_')[1]}_train.json",
                         "videos_root": "D/synthetic", "num_frames": 16, "image_size": 56, "sampling": "uniform",
                         "train_aug": False, "max_txt_len": 512, "feature_cache": "D/synthetic/features/f16_s56"}
    # a dataset block overrides the shared value; the relative interpolation follows it
    cfg = resolve_config(load_config(REPO / "train_configs/tiny_synthetic.yaml",
                                     ["paths.data_root=D", "datasets.synthetic_dvc.num_frames=8"]))
    assert cfg["datasets"]["synthetic_dvc"]["feature_cache"] == "D/synthetic/features/f8_s56"
    assert cfg["datasets"]["synthetic_tvg"]["num_frames"] == 16
    # the former spelling still works, in the YAML and on the command line, with a warning naming the new key
    with pytest.warns(FutureWarning, match="command line: datasets.synthetic_tvg: 'n_frms' is deprecated, use 'num_frames'"):
        cfg = resolve_config(load_config(REPO / "train_configs/tiny_synthetic.yaml",
                                         ["paths.data_root=D", "datasets.synthetic_tvg.n_frms=4"]))
    assert cfg["datasets"]["synthetic_tvg"]["num_frames"] == 4 and "n_frms" not in cfg["datasets"]["synthetic_tvg"]
    assert cfg["datasets"]["synthetic_tvg"]["feature_cache"] == "D/synthetic/features/f4_s56"
    old = tmp_path / "old.yaml"
    old.write_text("datasets:\n  a: {records: r.json, videos_root: v, n_frms: 8}\n")
    with pytest.warns(FutureWarning, match="'n_frms' is deprecated, use 'num_frames'"):
        assert resolve_config(load_config(old))["datasets"]["a"] == {"records": "r.json", "videos_root": "v", "num_frames": 8}


# -- hardening (issue 12): a bad value is refused at load, and the CLIs say it in one line ------------
@pytest.mark.parametrize("override, message", [
    ("run.max_steps=-3", "run.max_steps must be >= 1 or null, got -3"),  # the input: exited 0, trained nothing
    ("run.max_steps=0", "run.max_steps must be >= 1 or null, got 0"),
    ("run.max_epoch=0", "run.max_epoch must be >= 1, got 0"),
    ("run.iters_per_epoch=-1", "run.iters_per_epoch must be >= 1, got -1"),
    ("run.batch_size=0", "run.batch_size must be >= 1, got 0"),
    ("run.keep_last=0", "run.keep_last must be >= 1, got 0"),
    ("run.save_every_steps=0", "run.save_every_steps must be >= 1 or null, got 0"),
    ("run.num_workers=-1", "run.num_workers must be >= 0, got -1"),
    ("run.init_lr=nan", "run.init_lr must be > 0, got nan"),
    ("run.grad_clip=0", "run.grad_clip must be > 0 or null, got 0.0"),
    ("run.max_failure_rate=1.5", "run.max_failure_rate must be in [0, 1], got 1.5"),
    ("run.accum_grad_iters=16", "not one optimizer step would be taken"),
    ("eval.max_samples=0", "eval.max_samples must be >= 1 or null, got 0"),
])
def test_invalid_run_and_eval_values_are_refused_at_load(override, message):
    from timechat.validation import ConfigValueError

    path = REPO / ("eval_configs" if override.startswith("eval.") else "train_configs") / "tiny_synthetic.yaml"
    extra = ["run.max_epoch=1", "run.iters_per_epoch=8"] if "accum" in override else []
    with pytest.raises(ConfigValueError, match=re.escape(message)):
        load_config(path, [*extra, override])


@pytest.mark.parametrize("entry", ["train", "evaluate"])
@pytest.mark.parametrize("argv, message", [
    (["run.max_steps=-3"], "error: run.max_steps must be >= 1 or null, got -3"),
    (["run.max_stepz=3"], "error: invalid run section: unknown key run.max_stepz; allowed: ["),
    (["run.max_steps=abc"], "error: invalid run section: run.max_steps: Value 'abc' of type 'str' could not be converted"),
    (["run.max_steps"], "error: bad override 'run.max_steps': expected key=value"),  # set max_steps to null before
    (["--cfg-path", "missing.yaml"], "error: config file not found: missing.yaml"),
])
def test_config_errors_are_one_line_without_traceback(entry, argv, message, capsys, tmp_path):
    """train.py / evaluate.py: one line on stderr naming the key, exit status != 0; --debug shows the traceback."""
    import importlib

    main = importlib.import_module(entry).main
    cfg = REPO / ("train_configs" if entry == "train" else "eval_configs") / "tiny_synthetic.yaml"
    args = argv if argv[0] == "--cfg-path" else ["--cfg-path", str(cfg), f"output_dir={tmp_path}", *argv]
    assert main(args) != 0
    out, err = capsys.readouterr()
    assert err.startswith(message) and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert out == "" and not any(tmp_path.iterdir())  # nothing was built or written
    assert main(["--debug", *args]) != 0
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and message.removeprefix("error: ") in err
