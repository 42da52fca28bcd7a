"""Temporal video grounding (TVG) metrics: R@1 at IoU 0.3 / 0.5 / 0.7, plus mIoU.

Mirrors ``metrics/tvg/eval_tvg.py`` of the original TimeChat repository (commit c60b332):

* evaluated query ids: every gt ``id`` (default), or the prediction ids (``sample=True``,
  the original ``--sample``); the number of predictions must equal the number of evaluated
  gt queries (the original asserts this);
* only the **first** predicted interval counts; an empty ``timestamp`` list is a miss that stays
  in the denominator;
* ``IoU = max(min(g1, p1) - max(g0, p0), 0) / (max(g1, p1) - min(g0, p0))``: the denominator is
  the hull of the two intervals, the interval is used as written (a reversed one scores 0);
* a first interval whose start or end is not a finite number (the original scores ``[NaN, NaN]``
  as a perfect hit: every comparison with NaN is false), or whose start > end, is an invalid
  prediction: IoU 0, reported through ``invalid=`` (:func:`~timechat.metrics._common.interval_problem`);
* hit if ``IoU >= t``; ``R1@t = hits * 100 / num`` (multiply first, as the original does).

Added here (absent from the original): ``mIoU`` = 100 x mean IoU over the evaluated queries,
a miss (empty prediction) counting as 0.

The original divides by zero when a zero-length gt interval meets an identical zero-length
prediction (hull 0). By default this raises :class:`MetricInputError` too; pass
``zero_hull_iou`` (CLI ``--zero-hull-iou``) to give such a pair a defined IoU instead.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from timechat.metrics._common import (
    InvalidPrediction,
    MetricInputError,
    interval_problem,
    read_coco_gt,
    read_keyed_predictions,
    report_invalid,
)

IOU_THRESHOLDS = (0.3, 0.5, 0.7)


def tvg_iou(gt: Sequence[float], pred: Sequence[float], zero_hull_iou: float | None = None) -> float:
    """Hull IoU of the original ``iou(A, B)`` (A = gt, B = prediction), same float operations.

    Args:
        gt: ``[start, end]`` of the gt (extra entries ignored).
        pred: ``[start, end]`` of the prediction (extra entries ignored).
        zero_hull_iou: value for a pair whose hull has length 0 (the original raises
            ZeroDivisionError); None keeps raising.
    Returns:
        The IoU (0 when the intervals do not overlap, or the prediction is reversed or has a start
        or end that is not a finite number: see :func:`~timechat.metrics._common.interval_problem`).
    """
    if interval_problem(pred) is not None:
        return 0.0  # NaN compares false everywhere: the original's formula gives [NaN, 9] IoU 1.0
    max0 = max(gt[0], pred[0])
    min0 = min(gt[0], pred[0])
    max1 = max(gt[1], pred[1])
    min1 = min(gt[1], pred[1])
    hull = max1 - min0
    if hull == 0:
        if zero_hull_iou is None:
            raise ZeroDivisionError("IoU hull has length 0")
        return float(zero_hull_iou)
    return max(min1 - max0, 0) / hull


def _gt_timestamps(ground_truth: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> dict:
    annotations = ground_truth["annotations"] if isinstance(ground_truth, Mapping) else ground_truth
    out = {}
    for i, ann in enumerate(annotations):
        try:
            out[ann["id"]] = ann["timestamp"]  # a repeated id: the last one wins, as in the original
        except (KeyError, TypeError) as e:
            raise MetricInputError(f"gt annotation #{i}: needs 'id' and 'timestamp' ({e!r})") from e
    return out


def _pred_timestamps(predictions: Mapping[str, Any]) -> dict:
    out = {}
    for key, entry in predictions.items():
        try:
            qid = int(key)  # the original int()s the key: "000478" is query 478
        except (TypeError, ValueError) as e:
            raise MetricInputError(f"prediction key {key!r} is not an integer query id") from e
        try:
            out[qid] = entry["timestamp"]
        except (KeyError, TypeError) as e:
            raise MetricInputError(f"prediction {key!r}: no 'timestamp' field") from e
    return out


def tvg_metrics(
    predictions: Mapping[str, Any],
    ground_truth: Mapping[str, Any] | Sequence[Mapping[str, Any]],
    *,
    sample: bool = False,
    zero_hull_iou: float | None = None,
    invalid: list[InvalidPrediction] | None = None,
) -> dict[str, float]:
    """R1@0.3/0.5/0.7 exactly as ``eval_tvg.py``, plus mIoU.

    Args:
        predictions: the pred file's object, query id (string) -> ``{"timestamp": [[s, e], ...]}``.
        ground_truth: the gt file's object (``{"annotations": [{"id", "timestamp"}, ...]}``) or its
            annotation list.
        sample: evaluate only the predicted ids (the original ``--sample``).
        zero_hull_iou: IoU for a zero-length gt paired with the identical zero-length prediction
            (the original crashes; None keeps that as an error).
        invalid: a list that receives one `InvalidPrediction` per query whose first interval has a
            start or end that is not a finite number, or start > end; each scores IoU 0 (the
            original scored ``[NaN, NaN]`` as a hit). None: a warning names them instead.
    Returns:
        ``{"R1@0.3", "R1@0.5", "R1@0.7", "mIoU"}`` in percent, full precision.
    Raises:
        MetricInputError: where the original crashes (count mismatch, unknown ids, malformed
            timestamps, zero hull), naming the query id.
    """
    gt_ts = _gt_timestamps(ground_truth)
    pred_ts = _pred_timestamps(predictions)
    if sample:
        missing = [q for q in pred_ts if q not in gt_ts]
        if missing:
            raise MetricInputError(
                f"--sample: predicted query id {missing[0]} is not in the gt "
                f"({len(missing)} predicted id(s) unknown to the gt)"
            )
        gt_ts = {q: gt_ts[q] for q in pred_ts}
    num = len(gt_ts)
    if num != len(pred_ts):
        absent = [q for q in gt_ts if q not in pred_ts]
        hint = f"; e.g. gt id {absent[0]} has no prediction" if absent else ""
        raise MetricInputError(
            f"{len(pred_ts)} predictions but {num} gt queries: the original requires equal counts "
            f"(use sample=True / --sample to evaluate only the predicted ids){hint}"
        )
    if num == 0:
        raise MetricInputError("no queries to evaluate (empty gt and predictions)")

    hits = {t: 0 for t in IOU_THRESHOLDS}
    ious = []
    found: list[InvalidPrediction] = []
    for qid, gt in gt_ts.items():
        if qid not in pred_ts:
            raise MetricInputError(f"gt query id {qid} has no prediction (ids differ, counts match)")
        intervals = pred_ts[qid]
        if not isinstance(intervals, Sequence) or isinstance(intervals, str):
            raise MetricInputError(f"query {qid}: 'timestamp' must be a list of intervals, got {intervals!r}")
        if len(intervals) < 1:
            ious.append(0.0)  # no interval: a miss, still counted in the denominator
            continue
        first = intervals[0]
        if not isinstance(first, Sequence) or isinstance(first, str) or len(first) < 2:
            raise MetricInputError(
                f"query {qid}: 'timestamp' must be a list of [start, end] intervals, got {intervals!r}"
            )
        problem = interval_problem(first)
        if problem:
            found.append(InvalidPrediction(str(qid), problem))
            ious.append(0.0)  # a miss, still counted in the denominator
            continue
        try:
            value = tvg_iou(gt, first, zero_hull_iou)
        except ZeroDivisionError as e:
            raise MetricInputError(
                f"query {qid}: zero-length gt {gt!r} and prediction {first!r} give IoU 0/0 "
                "(the original crashes; set zero_hull_iou / --zero-hull-iou to define it)"
            ) from e
        except (TypeError, IndexError) as e:
            raise MetricInputError(f"query {qid}: malformed or non-numeric interval gt={gt!r} pred={first!r}") from e
        ious.append(value)
        for t in IOU_THRESHOLDS:
            if value >= t:
                hits[t] += 1

    report_invalid(found, invalid)
    out = {f"R1@{t}": hits[t] * 100 / num for t in IOU_THRESHOLDS}
    out["mIoU"] = sum(ious) * 100 / num
    return out


def load_tvg_gt(path: str | Path) -> dict:
    """Read a TVG gt file (``{"annotations": [...]}``)."""
    return read_coco_gt(path)


def load_tvg_pred(path: str | Path) -> dict:
    """Read a TVG prediction file (object keyed by query id)."""
    return read_keyed_predictions(path, "query id")
