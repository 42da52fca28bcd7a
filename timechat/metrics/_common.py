"""Shared pieces of the metric modules: the input-error type and JSON loading helpers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


class MetricInputError(ValueError):
    """Input that the original metric scripts crash on (or reject), reported with a clear message.

    Every case where the original script raised (``status: crash`` in the reference fixtures)
    raises this error here, with a message naming the file / key / id at fault.
    """


def read_json(path: str | Path) -> Any:
    """Load one JSON document, raising MetricInputError that names the file when it is unreadable."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError as e:
        raise MetricInputError(f"{path}: file not found") from e
    except json.JSONDecodeError as e:
        raise MetricInputError(f"{path}: not valid JSON ({e})") from e


def read_coco_gt(path: str | Path) -> dict:
    """A COCO-style gt file (``{"annotations": [...]}``), as the TVG and DVC scripts read it."""
    data = read_json(path)
    if not isinstance(data, dict) or "annotations" not in data:
        raise MetricInputError(f"{path}: expected an object with an 'annotations' list")
    return data


def read_keyed_predictions(path: str | Path, key: str) -> dict:
    """A prediction file that is one JSON object keyed by `key` (query id, video key)."""
    data = read_json(path)
    if not isinstance(data, dict):
        raise MetricInputError(f"{path}: expected an object keyed by {key}")
    return data


def read_jsonl(path: str | Path) -> list[Any]:
    """Load a JSON Lines file (one object per line), as the original VHD loader does."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.readlines()
    except FileNotFoundError as e:
        raise MetricInputError(f"{path}: file not found") from e
    out = []
    for lineno, line in enumerate(lines, 1):
        try:
            # The original strips only "\n" before json.loads; json.loads ignores other whitespace.
            out.append(json.loads(line.strip("\n")))
        except json.JSONDecodeError as e:
            raise MetricInputError(f"{path}:{lineno}: not valid JSON ({e})") from e
    return out
