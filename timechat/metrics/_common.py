"""Shared pieces of the metric modules: the input-error type, the file readers (over `timechat.io`)
and the one check of predicted values (:func:`interval_problem`, :func:`scores_problem`)."""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from timechat import io
from timechat.io import DataFileError


class MetricInputError(ValueError):
    """Input that the original metric scripts crash on (or reject), reported with a clear message.

    Every case where the original script raised (``status: crash`` in the reference fixtures)
    raises this error here, with a message naming the file / key / id at fault.
    """


def read_json(path: str | Path) -> Any:
    """Load one JSON document (`timechat.io.read_json`); an unreadable file is a MetricInputError naming it."""
    try:
        return io.read_json(path)
    except DataFileError as e:
        raise MetricInputError(str(e)) from None


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
    """Load a JSON Lines file (one object per line), as the original VHD loader does.

    The original strips only "\n" from each line before ``json.loads`` (which ignores the other JSON
    whitespace); blank lines, which crash it, are skipped.
    """
    try:
        return io.read_jsonl(path, strip="\n")
    except DataFileError as e:
        raise MetricInputError(str(e)) from None


# ----------------------------------------------------------------------------------------------
# Prediction values: the one check shared by the TVG, DVC and VHD metrics
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InvalidPrediction:
    """A prediction whose values cannot be scored: it counts as a miss (IoU 0, never a hit).

    Attributes:
        id: the query id (TVG), video key (DVC) or qid (VHD) it belongs to, as a string.
        reason: what is wrong, e.g. ``"timestamp [nan, 9.0]: start is not a finite number"``.
    """

    id: str
    reason: str


def _number_problem(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return f"{value!r} is not a number"
    if not math.isfinite(value):
        return f"{value!r} is not finite"
    return None


def interval_problem(values: Any, names: Sequence[str] = ("start", "end"), *, ordered: bool = True,
                     what: str = "timestamp") -> str | None:
    """Why a predicted interval scores as a miss, or None when its values are valid.

    Only the shape the original metric scripts crash on is an error (a :class:`MetricInputError`
    the caller reports); bad *values*, which the originals score silently (NaN compares false, so
    ``[NaN, NaN]`` was a perfect TVG hit), are returned as a reason instead.

    Args:
        values: ``[start, end, ...]``; entries past ``len(names)`` are ignored (as the originals do).
        names: what the checked entries are (``("start", "end", "score")`` for VHD windows).
        ordered: the metric uses the interval as written, so ``start > end`` is invalid too (TVG,
            VHD); False where it reorders the two ends first (DVC).
        what: the field name, for the messages.
    Returns:
        ``"<what> [..]: <name> <value> is not finite"`` (or not a number, or start > end); None if valid.
    Raises:
        MetricInputError: ``values`` is not a list, or has fewer than ``len(names)`` entries.
    """
    if not isinstance(values, (list, tuple, np.ndarray)) or len(values) < len(names):
        raise MetricInputError(f"{what} must be [{', '.join(names)}], got {_short(values)}")
    for name, value in zip(names, values):
        problem = _number_problem(value)
        if problem:
            return f"{what} {_short(values)}: {name} {problem}"
    if ordered and values[0] > values[1]:
        return f"{what} {_short(values)}: start > end"
    return None


def scores_problem(scores: Sequence[Any], what: str = "pred_saliency_scores") -> str | None:
    """Why a list of predicted scores scores as a miss (its first non-finite entry), or None."""
    for i, value in enumerate(scores):
        problem = _number_problem(value)
        if problem:
            return f"{what}[{i}] {problem}"
    return None


def report_invalid(found: list[InvalidPrediction], invalid: list[InvalidPrediction] | None) -> None:
    """Hand the invalid predictions of one metric call to the caller's list, or warn about them.

    Args:
        found: the invalid predictions the call scored as misses.
        invalid: the caller's list (``invalid=`` of the metric functions); None: a warning names
            how many there were and the first few, so they never pass unnoticed.
    """
    if invalid is not None:
        invalid.extend(found)
    elif found:
        shown = "; ".join(f"{p.id}: {p.reason}" for p in found[:3])
        warnings.warn(f"{len(found)} invalid prediction(s) scored as misses ({shown}"
                      f"{'; ...' if len(found) > 3 else ''})", stacklevel=3)


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value.tolist() if isinstance(value, np.ndarray) else value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
