"""The evaluation chain behind `evaluate.py`: config -> model -> task samples -> inference -> parse
-> score -> report.

`run_evaluation(cfg)` is what the entry point calls (and what tests call in-process). Checkpoints
(`eval.checkpoint`):

* `null`: the model exactly as `model.files` loads it; for a model without files (the tiny
  preset) that is a random init seeded with `eval.seed` - meant for smoke tests only;
* `latest`: the newest complete step folder under `eval.train_dir/checkpoints/`;
* a step folder (holding `trainable.safetensors`) or that file itself: the trainable weights of a
  training run, loaded over the built model (every key must be a model parameter);
* a training output dir (holding `checkpoints/`): its newest complete step folder;
* a `.pth` / `.pt` file: an original-layout checkpoint, loaded as `model.files.ckpt` in the
  original's load order.
"""

from __future__ import annotations

import copy
import logging
import time
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from timechat import registry
from timechat.config import eval_config, resolve_config
from timechat.eval.inference import InferenceEngine
from timechat.eval.report import build_report, write_report
from timechat import checkpoint as ckpt_io
from timechat.io import atomic_write_text
from timechat import distributed as dist_utils

logger = logging.getLogger(__name__)

# Eval settings that do not change any answer (left out of the resume signature).
NEUTRAL_EVAL_KEYS = ("num_workers", "max_samples", "plots", "plot_samples", "log_every_s", "resume", "max_examples", "device")


def resolve_checkpoint(value: str | None, train_dir: str | None) -> tuple[str | None, str | None]:
    """Interpret `eval.checkpoint`.

    Returns:
        `(kind, path)` with kind `None` (no checkpoint), `"trainable"` (a safetensors file or step
        folder) or `"original"` (a `.pth` for `model.files.ckpt`).
    Raises:
        FileNotFoundError / ValueError naming the key and the path.
    """
    if value in (None, "", "null", "none"):
        return None, None
    if value == "latest":
        if not train_dir:
            raise ValueError("eval.checkpoint=latest needs eval.train_dir (the training run's output_dir)")
        found = ckpt_io.latest_checkpoint(train_dir)
        if found is None:
            raise FileNotFoundError(f"eval.checkpoint=latest: no complete step folder under {Path(train_dir) / 'checkpoints'}")
        return "trainable", str(found)
    path = Path(value)
    if path.is_dir():
        if (path / ckpt_io.TRAINABLE_FILE).is_file():
            return "trainable", str(path)
        if (path / ckpt_io.CHECKPOINTS_DIR).is_dir():
            found = ckpt_io.latest_checkpoint(path)
            if found is None:
                raise FileNotFoundError(f"eval.checkpoint={value}: no complete step folder under {path / 'checkpoints'}")
            return "trainable", str(found)
        raise FileNotFoundError(f"eval.checkpoint={value}: folder has neither {ckpt_io.TRAINABLE_FILE} nor checkpoints/")
    if not path.is_file():
        raise FileNotFoundError(f"eval.checkpoint: no such file or folder: {value}")
    if path.suffix == ".safetensors":
        return "trainable", str(path)
    if path.suffix in (".pth", ".pt", ".bin"):
        return "original", str(path)
    raise ValueError(f"eval.checkpoint={value}: expected a step folder, a .safetensors or a .pth file")


def _device(setting: str, default: torch.device) -> torch.device:
    return default if setting == "auto" else torch.device(setting)


def build_eval_model(resolved: dict[str, Any], ecfg, device: torch.device):
    """Model + tokenizers with the eval checkpoint and LoRA alpha applied; eval mode, on `device`.

    Returns:
        (model, tokenizers, checkpoint records for the report, resolved checkpoint path or None).
    """
    from timechat.factory import build_model_and_tokenizers

    section, kind, path, _ = effective_model_section(resolved, ecfg)
    torch.manual_seed(ecfg.seed)  # random-init parts (smoke tests) are identical on every rank and run
    model, tokenizers, reports = build_model_and_tokenizers(section)
    records = [{"kind": r.kind, "path": r.path, "note": r.summary()} for r in reports]
    if kind == "trainable":
        names = ckpt_io.load_trainable_weights(path, model, match="subset")
        records.append({"kind": "trainable", "path": path, "note": f"{len(names)} tensors"})
    if ecfg.lora_alpha is not None:
        model.set_lora_alpha(float(ecfg.lora_alpha))
        records.append({"kind": "lora_alpha", "path": "", "note": f"LoRA alpha set to {ecfg.lora_alpha}"})
    model.eval().to(device)
    return model, tokenizers, records, path


def effective_model_section(resolved: dict[str, Any], ecfg) -> tuple[dict[str, Any], str | None, str | None, str]:
    """The model section an evaluation builds, the checkpoint kind and path, and where the section came from.

    Returns:
        `(section, kind, path, source)`: `kind`/`path` as `resolve_checkpoint`; `source` is `"config"`,
        or the checkpoint's `config.yaml` when `eval.model_from_checkpoint` read the section from it.
    Raises:
        FileNotFoundError / ValueError / KeyError naming the key (see `resolve_checkpoint`).
    """
    section = copy.deepcopy(resolved["model"])
    kind, path = resolve_checkpoint(ecfg.checkpoint, ecfg.train_dir)
    source = "config"
    if ecfg.model_from_checkpoint and kind == "trainable":
        section = _model_section_of_run(Path(path))
        source = str((Path(path) if Path(path).is_dir() else Path(path).parent) / "config.yaml")
    if kind == "original":
        section.setdefault("files", {})
        section["files"] = {**(section["files"] or {}), "ckpt": str(Path(path).resolve())}
    return section, kind, path, source


def _model_section_of_run(path: Path) -> dict[str, Any]:
    """The `model` section a training checkpoint was trained with (its saved, resolved config.yaml)."""
    from omegaconf import OmegaConf

    folder = path if path.is_dir() else path.parent
    cfg_file = folder / "config.yaml"
    if not cfg_file.is_file():
        raise FileNotFoundError(f"eval.model_from_checkpoint: {cfg_file} not found (needs a training step folder)")
    section = OmegaConf.to_container(OmegaConf.load(cfg_file), resolve=True).get("model")
    if not section:
        raise KeyError(f"{cfg_file} has no `model` section")
    return section


def _save_used_config(used: dict[str, Any], path: Path, model_source: str, checkpoint: str | None) -> None:
    """The resolved config with the model section that was built, headed by where it and the checkpoint came from."""
    from omegaconf import OmegaConf

    head = [f"# model section: {'this config' if model_source == 'config' else model_source}",
            f"# checkpoint: {checkpoint or 'none (model.files as configured)'}"]
    atomic_write_text(path, "\n".join(head) + "\n" + OmegaConf.to_yaml(OmegaConf.create(used)))


def run_evaluation(cfg: DictConfig) -> dict[str, Any] | None:
    """Run one evaluation as configured.

    Args:
        cfg: the merged config (`timechat.config.load_config`) with `model`, `eval`, `output_dir`.
    Returns:
        The report dict on rank 0 (also written to `output_dir/report.json`), None on other ranks.
    """
    t_start = time.perf_counter()
    resolved = resolve_config(cfg)
    if "eval" not in resolved or "model" not in resolved:
        raise KeyError("an eval config needs 'model' and 'eval' sections")
    ecfg = eval_config(cfg)
    out_dir = Path(resolved["output_dir"])
    info = dist_utils.init_distributed()
    device = _device(ecfg.device, info.device)
    # Provenance: the model section actually built (with eval.model_from_checkpoint, the one saved with
    # the checkpoint, not this config's fallback) goes into config.yaml, the resume signature and the report.
    section, ckpt_kind, ckpt_used, model_source = effective_model_section(resolved, ecfg)
    used = {**resolved, "model": section}
    if info.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        _save_used_config(used, out_dir / "config.yaml", model_source, ckpt_used)

    t0 = time.perf_counter()
    model, tokenizers, ckpts, ckpt_path = build_eval_model(resolved, ecfg, device)
    t_model = time.perf_counter() - t0
    task = registry.lookup("task", ecfg.task)(ecfg)
    samples = task.build_samples()
    if not samples:
        raise ValueError(f"task {ecfg.task!r} built no samples from {ecfg.anno_path!r}")
    logger.info("task %s: %d samples", ecfg.task, len(samples))

    eval_settings = {k: v for k, v in resolved["eval"].items() if k not in NEUTRAL_EVAL_KEYS}
    signature = {"model": section, "checkpoint": ckpt_path, "eval": eval_settings}
    engine = InferenceEngine(model, tokenizers, ecfg, out_dir, device, rank=info.rank,
                             world_size=info.world_size, signature=signature)
    t0 = time.perf_counter()
    merged = engine.run(samples)
    t_infer = time.perf_counter() - t0
    if merged is None:
        return None

    t0 = time.perf_counter()
    output = task.evaluate(merged, out_dir)
    t_score = time.perf_counter() - t0
    timing = {"model_build_s": t_model, "inference_s": t_infer, "score_s": t_score,
              "total_s": time.perf_counter() - t_start, "world_size": info.world_size,
              "samples_per_s": len(samples) / t_infer if t_infer > 0 else float("nan")}
    provenance = {"model_section": model_source, "model_name": section.get("name"), "checkpoint": ckpt_path,
                  "checkpoint_kind": ckpt_kind}
    report = build_report(ecfg.task, output, config=used, checkpoints=ckpts, timing=timing,
                          inference=engine.stats, provenance=provenance)
    write_report(report, output, out_dir, plots=ecfg.plots, plot_samples=ecfg.plot_samples)
    logger.info("metrics: %s", output.metrics)
    return report
