"""Video highlight detection (VHD) metrics: HL-mAP and HL-Hit@1 at three saliency levels.

Mirrors ``metrics/vhd/eval_vhd.py`` + ``metrics/vhd/utils.py`` of the original TimeChat repository
(commit c60b332), itself the Moment-DETR QVHighlights evaluator:

* only qids present in both files are scored (``qid`` types must match: ``"2579" != 2579``);
  a repeated pred qid: the last entry wins; the metric branches follow the **first** remaining
  prediction (``pred_saliency_scores`` -> highlight metrics, ``pred_relevant_windows`` ->
  moment-retrieval metrics as well);
* gt per query: ``int(duration / 2)`` clips x 3 annotators, 0 outside ``relevant_clip_ids``;
  positive = score >= 2 (Fair), 3 (Good), 4 (VeryGood);
* Hit@1 (``compute_hl_hit1``): argmax of the *whole* predicted list (first on ties), a hit when
  any annotator marks that clip positive, an index past the last clip is a miss;
* AP (``compute_ap_from_tuple`` / ``get_ap``): predictions cut / zero-padded to the clip count;
  an all-0 column gives AP 0, an all-1 column AP 1, otherwise scikit-learn's
  ``precision_recall_curve`` (re-implemented here with numpy, see :func:`precision_recall_curve`),
  recall cast to float32, precision made monotone by a running max in the returned order, AP =
  mean precision where recall changes;
* moment retrieval (``eval_moment_retrieval``): R1 and mAP over IoU 0.5:0.95 per gt-window length
  bucket (short / middle / long / full), VOC-style interpolated AP (``compute_average_precision_detection``).
* invalid predictions (NaN, infinity or a non-number among the saliency scores or a window's start,
  end and score, or a window with start > end): reported through ``invalid=`` and scored as misses
  (Hit@1 / AP 0 for bad scores; a bad window is a false positive ranked last, IoU 0). NaN saliency
  scores crashed or, through argmax, scored a hit in the original; a NaN window matched every gt.

Values are percentages at full precision (the original rounds to 2 decimals only when saving).

The original crashes with IndexError when a gt ``relevant_clip_ids`` entry lies past
``int(duration / 2)`` clips; that stays an error by default, ``out_of_range_clips="drop"`` (CLI
``--out-of-range-clips drop``) ignores such clips instead.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from timechat.metrics._common import (
    InvalidPrediction,
    MetricInputError,
    interval_problem,
    read_json,
    read_jsonl,
    report_invalid,
    scores_problem,
)

SALIENCY_LEVELS = ((2, "Fair"), (3, "Good"), (4, "VeryGood"))
MR_IOU_THRESHOLDS = tuple(float(f"{t:.2f}") for t in np.linspace(0.5, 0.95, 10))
MR_LENGTH_RANGES = (("short", (0, 10)), ("middle", (10, 30)), ("long", (30, 150)), ("full", (0, 150)))
MAX_PRED_WINDOWS = 10
WINDOW_FIELDS = ("start", "end", "score")
# Keys set on the internal copies of the predictions by `_check_predictions`.
_BAD_SCORES, _BAD_WINDOWS = "_invalid_scores", "_invalid_windows"


# ----------------------------------------------------------------------------------------------
# Highlight detection
# ----------------------------------------------------------------------------------------------


def precision_recall_curve(y_true: np.ndarray, y_score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Precision / recall exactly as ``sklearn.metrics.precision_recall_curve`` (binary, no weights).

    Scores are sorted in decreasing order (reversed stable mergesort), tied scores form one
    threshold; at each distinct threshold ``tps`` = cumulative positives and
    ``fps = 1 + index - tps``; precision = ``tps / (tps + fps)``, recall = ``tps / tps[-1]``.
    The arrays come back in increasing-threshold order with a final precision 1 / recall 0.
    (Older scikit-learn also dropped the thresholds past full recall; that never changes the
    AP computed by :func:`hl_average_precision`, which is why both versions agree.)

    Args:
        y_true: binary labels (0/1), both classes present.
        y_score: finite scores, same length.
    Returns:
        ``(precision, recall)`` as float64 arrays.
    """
    order = np.argsort(y_score, kind="mergesort")[::-1]
    y_score = y_score[order]
    y_true = y_true[order]
    distinct = np.where(np.diff(y_score))[0]
    threshold_idxs = np.r_[distinct, y_true.size - 1]
    tps = np.cumsum(y_true * 1.0, dtype=np.float64)[threshold_idxs]
    fps = 1 + threshold_idxs - tps
    precision = tps / (tps + fps)
    recall = tps / tps[-1]
    return np.hstack((precision[::-1], 1)), np.hstack((recall[::-1], 0))


def hl_average_precision(y_true: np.ndarray, y_score: np.ndarray) -> float:
    """AP of one (query, annotator) column, as the original ``get_ap`` (interpolate, no 11-point).

    Args:
        y_true: binary labels per clip.
        y_score: predicted saliency per clip (already cut / padded to ``len(y_true)``).
    Returns:
        AP in [0, 1].
    """
    labels = set(y_true.tolist())
    if len(labels) == 1:
        return 0.0 if y_true[0] == 0 else 1.0
    if labels != {0.0, 1.0}:
        raise MetricInputError(f"labels must be 0/1 for both classes, got {sorted(labels)}")
    if not np.all(np.isfinite(y_score)):
        raise MetricInputError("predicted saliency scores contain NaN or infinity")
    precision, recall = precision_recall_curve(y_true, y_score)
    recall = recall.astype(np.float32)
    precision = np.maximum.accumulate(precision)  # == the original's running max, i = 1..end
    return float(np.mean(precision[np.where(np.diff(recall))]))


def _gt_clip_scores(gt: Mapping[str, Any], out_of_range_clips: str) -> np.ndarray:
    """``mk_gt_scores``: (num_clips, 3) annotator scores, 0 outside the relevant clips."""
    qid = gt.get("qid")
    try:
        num_clips = int(gt["duration"] / 2)
        full = np.zeros((num_clips, 3))
        clip_ids = np.array(gt["relevant_clip_ids"])
        scores = np.array(gt["saliency_scores"])
    except (KeyError, TypeError) as e:
        raise MetricInputError(f"gt qid {qid!r}: needs numeric 'duration', 'relevant_clip_ids', "
                               f"'saliency_scores' ({e!r})") from e
    if out_of_range_clips == "drop" and clip_ids.size:
        keep = (clip_ids >= 0) & (clip_ids < num_clips)
        clip_ids, scores = clip_ids[keep], scores[keep]
    try:
        full[clip_ids] = scores
    except IndexError as e:
        raise MetricInputError(
            f"gt qid {qid!r}: relevant_clip_ids {gt['relevant_clip_ids']!r} index past the "
            f"{num_clips} clips of duration {gt['duration']!r} ({e}); "
            "use out_of_range_clips='drop' / --out-of-range-clips drop to ignore such clips"
        ) from e
    except ValueError as e:
        raise MetricInputError(f"gt qid {qid!r}: relevant_clip_ids and saliency_scores do not "
                               f"match in shape ({e})") from e
    return full


def _eval_highlight(submission: list[dict], ground_truth: list[dict], out_of_range_clips: str) -> dict:
    qid2pred = {d["qid"]: d for d in submission}  # a repeated qid: the last entry wins
    qid2gt = {d["qid"]: _gt_clip_scores(d, out_of_range_clips) for d in ground_truth}
    qid2scores = {}
    for qid, d in qid2pred.items():
        if "pred_saliency_scores" not in d:
            raise MetricInputError(f"prediction qid {qid!r}: no 'pred_saliency_scores'")
        scores = np.array(d["pred_saliency_scores"])
        if scores.ndim != 1:
            raise MetricInputError(f"prediction qid {qid!r}: 'pred_saliency_scores' must be a flat list")
        if scores.size == 0:
            raise MetricInputError(f"prediction qid {qid!r}: 'pred_saliency_scores' is empty "
                                   "(the original fails on argmax of an empty sequence)")
        qid2scores[qid] = scores

    if zero := [q for q in qid2pred if len(qid2gt[q]) == 0]:
        raise MetricInputError(f"gt qid {zero[0]!r}: a duration below 2 s gives 0 clips")

    out = {}
    for min_score, name in SALIENCY_LEVELS:
        hit = np.zeros((len(qid2pred), 3))
        ap = np.zeros((len(qid2pred), 3))
        for idx, qid in enumerate(qid2pred):
            if qid2pred[qid].get(_BAD_SCORES):
                continue  # invalid scores: Hit@1 and AP stay 0
            binary = (qid2gt[qid] >= min_score).astype(float)  # (num_clips, 3)
            scores = qid2scores[qid]
            # Hit@1 uses the argmax of the unpadded, untruncated list (as the original).
            best = int(np.argmax(scores))
            if best < len(binary):
                hit[idx] = binary[best]
            n = len(binary)
            if len(scores) > n:
                y_pred = scores[:n]
            elif len(scores) < n:
                y_pred = np.zeros(n)
                y_pred[: len(scores)] = scores  # zero padding (outranks negative scores)
            else:
                y_pred = scores
            for w in range(3):
                try:
                    ap[idx, w] = hl_average_precision(binary[:, w], y_pred)
                except MetricInputError as e:
                    raise MetricInputError(f"qid {qid!r}, annotator {w}: {e}") from e
        out[f"HL-min-{name}"] = {"HL-mAP": float(100 * np.mean(ap)),
                                 "HL-Hit1": float(100 * np.mean(np.max(hit, 1)))}
    return out


# ----------------------------------------------------------------------------------------------
# Moment retrieval (only when predictions carry pred_relevant_windows)
# ----------------------------------------------------------------------------------------------


def _iou_cross(spans1: np.ndarray, spans2: np.ndarray) -> np.ndarray:
    """(N, M) IoU with the true union (``compute_temporal_iou_batch_cross``)."""
    areas1 = spans1[:, 1] - spans1[:, 0]
    areas2 = spans2[:, 1] - spans2[:, 0]
    left = np.maximum(spans1[:, None, 0], spans2[None, :, 0])
    right = np.minimum(spans1[:, None, 1], spans2[None, :, 1])
    inter = np.clip(right - left, 0, None)
    union = areas1[:, None] + areas2[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return inter / union


def _iou_paired(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """(N,) IoU with the hull as union, 0 where the hull is 0 (``compute_temporal_iou_batch_paired``)."""
    inter = np.maximum(0, np.minimum(pred[:, 1], gt[:, 1]) - np.maximum(pred[:, 0], gt[:, 0]))
    union = np.maximum(pred[:, 1], gt[:, 1]) - np.minimum(pred[:, 0], gt[:, 0])
    return np.divide(inter, union, out=np.zeros_like(inter), where=union != 0)


def _interpolated_ap(precision: np.ndarray, recall: np.ndarray) -> float:
    """VOC 2011 interpolated AP (``interpolated_precision_recall``)."""
    mprec = np.hstack([[0], precision, [0]])
    mrec = np.hstack([[0], recall, [1]])
    for i in range(len(mprec) - 1)[::-1]:
        mprec[i] = max(mprec[i], mprec[i + 1])
    idx = np.where(mrec[1::] != mrec[0:-1])[0] + 1
    return float(np.sum((mrec[idx] - mrec[idx - 1]) * mprec[idx]))


def _detection_ap(gt_windows: list, preds: list[tuple[float, float, float, bool]]) -> np.ndarray:
    """AP per IoU threshold for one query (``compute_average_precision_detection``).

    ``preds`` are ``(start, end, score, valid)``; an invalid window is a false positive.
    """
    n_thr = len(MR_IOU_THRESHOLDS)
    ap = np.zeros(n_thr)
    if not preds:
        return ap
    preds = sorted(preds, key=lambda p: -p[2])  # stable, decreasing score
    lock_gt = np.ones((n_thr, len(gt_windows))) * -1
    tp = np.zeros((n_thr, len(preds)))
    fp = np.zeros((n_thr, len(preds)))
    gt_arr = np.array([[w[0], w[1]] for w in gt_windows])
    for idx, (start, end, _, valid) in enumerate(preds):
        if not gt_windows or not valid:
            fp[:, idx] = 1
            continue
        tiou = _iou_cross(np.array([[start, end]]), gt_arr).reshape(-1)
        order = tiou.argsort()[::-1]  # numpy's default sort, as the original (tie order matters)
        for t_idx, thr in enumerate(MR_IOU_THRESHOLDS):
            for j in order:
                if tiou[j] < thr:
                    fp[t_idx, idx] = 1
                    break
                if lock_gt[t_idx, j] >= 0:
                    continue
                tp[t_idx, idx] = 1
                lock_gt[t_idx, j] = idx
                break
            if fp[t_idx, idx] == 0 and tp[t_idx, idx] == 0:
                fp[t_idx, idx] = 1
    tp_cum = np.cumsum(tp, axis=1).astype(float)
    fp_cum = np.cumsum(fp, axis=1).astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        recall = tp_cum / float(len(gt_windows))
        precision = tp_cum / (tp_cum + fp_cum)
    for t_idx in range(n_thr):
        ap[t_idx] = _interpolated_ap(precision[t_idx], recall[t_idx])
    return ap


def _mr_bucket(submission: list[dict], ground_truth: list[dict], name: str) -> dict:
    thr_keys = [str(t) for t in MR_IOU_THRESHOLDS]
    pred_by_qid: dict[Any, list] = {}
    for d in submission:
        for i, w in enumerate(d["pred_relevant_windows"][:MAX_PRED_WINDOWS]):
            if i in d[_BAD_WINDOWS]:  # ranked last, a false positive
                pred_by_qid.setdefault(d["qid"], []).append((0.0, 0.0, -np.inf, False))
            else:
                pred_by_qid.setdefault(d["qid"], []).append((w[0], w[1], w[2], True))
    gt_by_qid: dict[Any, list] = {}
    for d in ground_truth:
        for w in d["relevant_windows"]:
            gt_by_qid.setdefault(d["qid"], []).append(w)
    if not pred_by_qid:
        raise MetricInputError(f"moment retrieval bucket '{name}': no query with a gt window in "
                               "range and a predicted window (the original crashes here)")
    ap_rows = np.array([_detection_ap(gt_by_qid.get(q, []), p) for q, p in pred_by_qid.items()])
    ap_thr = ap_rows.mean(0)
    mr_map = {k: float(100 * v) for k, v in zip(thr_keys, ap_thr)}
    mr_map["average"] = float(100 * np.mean(ap_thr))

    pred_first, first_invalid = {}, {}
    for d in submission:
        if not d["pred_relevant_windows"]:
            raise MetricInputError(f"prediction qid {d['qid']!r}: empty pred_relevant_windows")
        first_invalid[d["qid"]] = 0 in d[_BAD_WINDOWS]
        pred_first[d["qid"]] = [0.0, 0.0] if first_invalid[d["qid"]] else d["pred_relevant_windows"][0][:2]
    gt_best = {}
    for d in ground_truth:
        windows = d["relevant_windows"]
        if not windows:
            raise MetricInputError(f"gt qid {d['qid']!r}: empty relevant_windows")
        ious = _iou_cross(np.array([pred_first[d["qid"]]]), np.array(windows))
        gt_best[d["qid"]] = windows[int(np.argmax(ious))]
    qids = list(pred_first)
    paired = _iou_paired(np.array([pred_first[q] for q in qids]).astype(float),
                         np.array([gt_best[q] for q in qids]).astype(float))
    paired[[first_invalid[q] for q in qids]] = 0.0  # an invalid first window: IoU 0
    mr_r1 = {k: float(np.mean(paired >= t) * 100) for k, t in zip(thr_keys, MR_IOU_THRESHOLDS)}
    return {"MR-mAP": mr_map, "MR-R1": mr_r1}


def _eval_moment_retrieval(submission: list[dict], ground_truth: list[dict]) -> dict:
    out = {}
    for name, (lo, hi) in MR_LENGTH_RANGES:
        if (lo, hi) == (0, 150):  # the original's "full" bucket: no filtering at all
            sub, gt = submission, ground_truth
        else:
            gt, keep = [], set()
            for d in ground_truth:
                windows = [w for w in d["relevant_windows"] if lo < w[1] - w[0] <= hi]
                if windows:
                    d = copy.deepcopy(d)
                    d["relevant_windows"] = windows
                    gt.append(d)
                    keep.add(d["qid"])
            sub = [d for d in submission if d["qid"] in keep]
        out[name] = _mr_bucket(sub, gt, name)
    return out


# ----------------------------------------------------------------------------------------------
# Public entry points
# ----------------------------------------------------------------------------------------------


def vhd_results(
    predictions: Sequence[Mapping[str, Any]],
    ground_truth: Sequence[Mapping[str, Any]],
    *,
    out_of_range_clips: str = "error",
    invalid: list[InvalidPrediction] | None = None,
) -> dict[str, dict]:
    """Full result of the original ``eval_submission`` (the saved JSON), unrounded.

    Args:
        predictions: list of ``{"qid", "pred_saliency_scores", ["pred_relevant_windows"]}``.
        ground_truth: list of ``{"qid", "duration", "relevant_clip_ids", "saliency_scores",
            ["relevant_windows"]}`` (the JSON Lines rows).
        out_of_range_clips: ``"error"`` (as the original) or ``"drop"`` for gt clip ids past the
            video's ``int(duration / 2)`` clips.
        invalid: a list that receives one `InvalidPrediction` per prediction whose saliency scores
            hold a value that is not a finite number (Hit@1 and AP 0 for that query), and per
            scored window (the first 10) with such a start, end or score, or start > end (a
            false positive ranked last, IoU 0). None: a warning names them instead.
    Returns:
        ``{"brief": {...}, "HL-min-Fair": {"HL-mAP", "HL-Hit1"}, ..., ["full"/"long"/...: MR]}``
        with the original's key order, values in percent.
    Raises:
        MetricInputError: where the original crashes, naming the qid, and where a prediction
            lacks a field that the first prediction has (or the first has neither field: the
            original then prints ``{}``).
    """
    if out_of_range_clips not in ("error", "drop"):
        raise ValueError(f"out_of_range_clips must be 'error' or 'drop', got {out_of_range_clips!r}")
    for what, rows in (("prediction", predictions), ("gt", ground_truth)):
        for i, d in enumerate(rows):
            if not isinstance(d, Mapping) or "qid" not in d:
                raise MetricInputError(f"{what} entry #{i} has no 'qid'")
    shared = {d["qid"] for d in predictions} & {d["qid"] for d in ground_truth}
    submission = [dict(d) for d in predictions if d["qid"] in shared]
    gt = [dict(d) for d in ground_truth if d["qid"] in shared]
    if not submission:
        raise MetricInputError("no qid is shared by the predictions and the gt "
                               "(check that qid types match: '2579' is not 2579)")

    found = _check_predictions(submission)
    metrics: dict[str, dict] = {}
    brief: dict[str, float] = {}
    if "pred_relevant_windows" in submission[0]:
        mr = _eval_moment_retrieval(submission, gt)
        metrics.update(mr)
        mr_brief = {
            "MR-full-mAP": mr["full"]["MR-mAP"]["average"],
            "MR-full-mAP@0.5": mr["full"]["MR-mAP"]["0.5"],
            "MR-full-mAP@0.75": mr["full"]["MR-mAP"]["0.75"],
            "MR-short-mAP": mr["short"]["MR-mAP"]["average"],
            "MR-middle-mAP": mr["middle"]["MR-mAP"]["average"],
            "MR-long-mAP": mr["long"]["MR-mAP"]["average"],
            "MR-full-R1@0.5": mr["full"]["MR-R1"]["0.5"],
            "MR-full-R1@0.7": mr["full"]["MR-R1"]["0.7"],
        }
        brief.update(sorted(mr_brief.items()))
    if "pred_saliency_scores" in submission[0]:
        hl = _eval_highlight(submission, gt, out_of_range_clips)
        metrics.update(hl)
        for level, values in hl.items():
            for sub_key, value in values.items():
                brief[f"{level}-{sub_key.split('-')[1]}"] = value
    report_invalid(found, invalid)
    return {"brief": brief, **dict(sorted(metrics.items()))}


def _check_predictions(submission: list[dict]) -> list[InvalidPrediction]:
    """Check the fields the first prediction selects (as the original's branches) in every prediction.

    Marks each internal copy with its invalid scores / window indexes (scored as misses) and
    returns them as `InvalidPrediction`s; a missing field or a malformed window is an error.
    """
    fields = [f for f in ("pred_saliency_scores", "pred_relevant_windows") if f in submission[0]]
    if not fields:
        raise MetricInputError(f"prediction qid {submission[0]['qid']!r}: neither 'pred_saliency_scores' "
                               "nor 'pred_relevant_windows', so there is nothing to score (the original "
                               "prints {})")
    found = []
    for d in submission:
        qid = d["qid"]
        for f in fields:
            if f not in d:
                raise MetricInputError(f"prediction qid {qid!r}: no {f!r} (the first prediction has it)")
        if "pred_saliency_scores" in fields and isinstance(d["pred_saliency_scores"], list):
            problem = scores_problem(d["pred_saliency_scores"])
            d[_BAD_SCORES] = bool(problem)
            if problem:
                found.append(InvalidPrediction(str(qid), problem))
        if "pred_relevant_windows" in fields:
            d[_BAD_WINDOWS] = set()
            for i, w in enumerate(d["pred_relevant_windows"][:MAX_PRED_WINDOWS]):
                try:
                    problem = interval_problem(w, WINDOW_FIELDS, what=f"pred_relevant_windows[{i}]")
                except MetricInputError as e:
                    raise MetricInputError(f"prediction qid {qid!r}: {e}") from e
                if problem:
                    d[_BAD_WINDOWS].add(i)
                    found.append(InvalidPrediction(str(qid), problem))
    return found


def vhd_metrics(
    predictions: Sequence[Mapping[str, Any]],
    ground_truth: Sequence[Mapping[str, Any]],
    *,
    out_of_range_clips: str = "error",
    invalid: list[InvalidPrediction] | None = None,
) -> dict[str, float]:
    """Flat metric dict: the original's ``brief`` block (``HL-min-{Fair,Good,VeryGood}-{mAP,Hit1}``,
    plus ``MR-*`` when predictions carry windows), full precision, percent.

    Args / Raises: as :func:`vhd_results`.
    """
    return vhd_results(predictions, ground_truth, out_of_range_clips=out_of_range_clips, invalid=invalid)["brief"]


def load_vhd_gt(path: str | Path) -> list[dict]:
    """Read a VHD gt file: JSON Lines, even when it is named ``.json``."""
    return read_jsonl(path)


def load_vhd_pred(path: str | Path) -> list[dict]:
    """Read a VHD prediction file: one JSON list."""
    data = read_json(path)
    if not isinstance(data, list):
        raise MetricInputError(f"{path}: expected a JSON list of predictions")
    return data
