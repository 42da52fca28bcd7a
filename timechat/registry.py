"""Name -> builder tables for models, datasets, LR schedules and evaluation tasks.

Plain dicts of lazy import strings ("module:attribute"): importing this module imports nothing
else and registers nothing. `build(kind, name, **kwargs)` passes the config's keys as keyword
arguments, so a misspelt key is a `TypeError` naming it, never a silently ignored option.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable

MODELS: dict[str, str] = {
    "timechat_7b": "timechat.models.builders:timechat_7b",
    "timechat_tiny": "timechat.models.builders:timechat_tiny",
}

DATASETS: dict[str, str] = {
    # every TimeIT task (dvc, tvg, vhd, step localisation, summarisation, speech generation) and the
    # converted Valley file share the TimeIT instruction format
    "timeit": "timechat.data.datasets:VideoInstructDataset",
    "valley": "timechat.data.datasets:VideoInstructDataset",
}

LR_SCHEDULES: dict[str, str] = {
    "linear_warmup_cosine_lr": "timechat.train.schedule:LinearWarmupCosineLRScheduler",
    "linear_warmup_step_lr": "timechat.train.schedule:LinearWarmupStepLRScheduler",
    "constant_lr": "timechat.train.schedule:ConstantLRScheduler",
}

TASKS: dict[str, str] = {
    "dvc": "timechat.eval.tasks.dense_captioning:DenseCaptioningTask",
    "tvg": "timechat.eval.tasks.grounding:GroundingTask",
    "vhd": "timechat.eval.tasks.highlights:HighlightTask",
    "mvbench": "timechat.eval.tasks.mvbench:MVBenchTask",
    "tempcompass": "timechat.eval.tasks.tempcompass:TempCompassTask",
    "egoschema": "timechat.eval.tasks.egoschema:EgoSchemaTask",
    "videomme": "timechat.eval.tasks.videomme:VideoMMETask",
}

TABLES: dict[str, dict[str, str]] = {
    "model": MODELS,
    "dataset": DATASETS,
    "lr_schedule": LR_SCHEDULES,
    "task": TASKS,
}


def lookup(kind: str, name: str) -> Callable[..., Any]:
    """The builder registered as `name` in table `kind`; errors list the known names."""
    if kind not in TABLES:
        raise KeyError(f"unknown registry table {kind!r}; known: {sorted(TABLES)}")
    table = TABLES[kind]
    if name not in table:
        raise KeyError(f"unknown {kind} {name!r}; known: {sorted(table)}")
    module_name, _, attr = table[name].partition(":")
    return getattr(importlib.import_module(module_name), attr)


def build(kind: str, entry: str, /, **kwargs: Any) -> Any:
    """Call the builder `entry` of table `kind` with `kwargs` (unknown keys raise TypeError)."""
    builder = lookup(kind, entry)
    try:
        return builder(**kwargs)
    except TypeError as exc:
        raise TypeError(f"building {kind} {entry!r}: {exc}") from exc
