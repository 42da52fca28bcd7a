"""Dense video captioning (DVC) metrics: paragraph / dense CIDEr and METEOR, SODA_c, P/R/F1.

Mirrors ``metrics/dvc/eval_dvc.py`` of the original TimeChat repository (commit c60b332; a copy of
the Vid2Seq / densevid_eval evaluator) value for value, including its quirks:

* videos: every gt video in gt order; a gt video absent from the predictions scores as ``[]``,
  prediction-only videos are ignored. gt sentences: ``pure_cap.split(". ")`` (YouCook2) or
  ``caption.split(".")`` keeping pieces longer than 5 characters *before* stripping
  (ActivityNet); their count must equal the number of segments; a ``.`` is appended to each.
* paragraph metrics (``evaluate_para``): pred paragraph ``". ".join(captions)`` only for videos
  present in the predictions, zipped against *all* gt paragraphs (misaligned when a video is
  missing); letters-only lower-cased words; corpus CIDEr-D and METEOR.
* detection (``evaluate_detections``): IoU ``inter / (min(hull, len1 + len2) + 1e-8)`` on reordered
  intervals, ``IoU > t`` for t in 0.3/0.5/0.7/0.9; F1 per video from the mean P and R. An event
  whose timestamp holds NaN, an infinity or a non-number is an invalid prediction: IoU 0 with every
  gt event (it still counts as a prediction), reported through ``invalid=``.
* dense captions (``match_captions`` / ``evaluate_caption_scores``): each (pred, gt) pair with
  ``IoU >= t`` is scored, an unmatched prediction is paired with a one-token string that matches
  nothing (the original uses a random 10-20 letter string: same scores); CIDEr-D and METEOR are
  computed **per video**, averaged over thresholds, then over videos.
* SODA_c (``sodac``): METEOR of every (gt, pred) pair with the gt caption as *hypothesis*, the
  per-pair scores in sorted-string-key order (so columns are permuted past 10 predictions, as in
  the original), times the IoU matrix, order-preserving DP alignment, F-measure.
* Captions are tokenised with Stanford PTBTokenizer (``-preserveLines -lowerCase``) in the same
  ten batches as the original, so a ``\\r`` inside a caption shifts the later captions of its
  batch exactly as there.
* Output keys: ``SODA_c_<split>`` with split 1/2/3 for train/val/test (the original takes it from
  the gt file name: see :func:`split_from_gt_path`), plus ``-100`` placeholders for the absent
  ``SODA_c_1`` / ``SODA_c_2``.

Values are percentages (``x100``) except ``n_preds`` (mean number of predictions per video), at
full precision (the original prints ``round(x, 1)``).

Speed: the original launches 12 JVMs; here one PTB launch and one METEOR process per run (or per
:class:`~timechat.metrics._java.JavaSession` shared across runs), with METEOR statistics cached
per distinct (hypothesis, references) and SODA_c METEOR computed only for the (gt, pred) cells
with IoU > 0 (the others are multiplied by 0 in the original, so they cannot change the result).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pycocoevalcap.cider.cider_scorer import CiderScorer

from timechat.metrics._common import (
    InvalidPrediction,
    MetricInputError,
    interval_problem,
    read_coco_gt,
    read_keyed_predictions,
    report_invalid,
)
from timechat.metrics._java import PTB_PUNCTUATIONS, JavaSession

IOU_THRESHOLDS = (0.3, 0.5, 0.7, 0.9)
SPLITS = {"train": 1, "val": 2, "test": 3}


# ----------------------------------------------------------------------------------------------
# Geometry
# ----------------------------------------------------------------------------------------------


def dvc_iou(interval_1: Sequence[float], interval_2: Sequence[float]) -> float:
    """IoU of ``eval_dvc.iou``: intervals reordered, union ``min(hull, len1 + len2) + 1e-8``.

    0 when either interval has an end that is not a finite number (see
    :func:`~timechat.metrics._common.interval_problem`).
    """
    if interval_problem(interval_1, ordered=False) or interval_problem(interval_2, ordered=False):
        return 0.0
    start_1, end_1 = float(min(*interval_1)), float(max(*interval_1))
    start_2, end_2 = float(min(*interval_2)), float(max(*interval_2))
    intersection = max(0, min(end_1, end_2) - max(start_1, start_2))
    union = min(max(end_1, end_2) - min(start_1, start_2), end_1 - start_1 + end_2 - start_2)
    return float(intersection) / (union + 1e-8)


def detection_scores(pred_segments: Sequence, gt_segments: Sequence,
                     thresholds: Sequence[float] = IOU_THRESHOLDS) -> tuple[list[float], list[float], np.ndarray]:
    """Per-threshold precision / recall of one video (``evaluate_detections``, one split).

    Args:
        pred_segments: K intervals; gt_segments: S intervals (S >= 1).
    Returns:
        (precision per threshold, recall per threshold, IoU matrix of shape (S, max(K, 1))).
    """
    n_pred = len(pred_segments)
    iou_matrix = np.zeros((len(gt_segments), max(n_pred, 1)))
    pred_cov = {t: set() for t in thresholds}
    gt_cov = {t: set() for t in thresholds}
    for g, gt_seg in enumerate(gt_segments):
        for p, seg in enumerate(pred_segments):
            value = dvc_iou(seg, gt_seg)
            iou_matrix[g, p] = value
            for t in thresholds:
                if value > t:  # strict here, >= in caption matching (as the original)
                    pred_cov[t].add(p)
                    gt_cov[t].add(g)
    precision = [float(len(pred_cov[t])) / max(float(n_pred), 1.0) for t in thresholds]
    recall = [float(len(gt_cov[t])) / float(len(gt_segments)) for t in thresholds]
    return precision, recall, iou_matrix


def soda_dp(scores: np.ndarray) -> float:
    """Best total of an order-preserving alignment (``chased_dp_assignment``'s max score)."""
    m, n = scores.shape
    dp = np.zeros((m, n))
    for i in range(m):
        for j in range(n):
            # Same candidates and sums as the original's memoised recursion (-1 = unavailable).
            if i == 0 and j == 0:
                cand = (-1, -1, scores[i, j])
            elif i == 0:
                cand = (-1, dp[i, j - 1], scores[i, j])
            elif j == 0:
                cand = (dp[i - 1, j], -1, scores[i, j])
            else:
                cand = (dp[i - 1, j], dp[i, j - 1], dp[i - 1, j - 1] + scores[i, j])
            dp[i, j] = np.max(cand)
    return float(dp[m - 1, n - 1])


# ----------------------------------------------------------------------------------------------
# Text
# ----------------------------------------------------------------------------------------------


def parse_sent(sent: str) -> list[str]:
    """Paragraph preprocessing of the original: letters only, lower case, split on spaces."""
    return re.sub("[^a-zA-Z]", " ", sent).strip().lower().split()


def _cider(pairs: Sequence[tuple[str, list[str]]]) -> float:
    """Corpus CIDEr-D (n=4, sigma=6) of (hypothesis, references) pairs, in the given order."""
    scorer = CiderScorer(n=4, sigma=6.0)
    for hyp, refs in pairs:
        scorer += (hyp, refs)
    if not any(ref for refs in scorer.crefs for ref in refs):
        # The original's max() over an empty document-frequency table raises here.
        raise MetricInputError("CIDEr: every reference caption is empty after tokenisation")
    score, _ = scorer.compute_score()
    return float(score)


class _BatchTokenizer:
    """Re-creates the original ``PTBTokenizer.tokenize`` batches from per-caption JVM output."""

    def __init__(self, session: JavaSession):
        self.session = session
        self.pending: list[dict] = []

    def tokenize(self, captions_for_image: dict[str, list[dict]]) -> dict[str, list[str]]:
        ids = [k for k, v in captions_for_image.items() for _ in range(len(v))]
        texts = [c["caption"].replace("\n", " ") for v in captions_for_image.values() for c in v]
        cache = self.session.ptb_lines(texts)
        # The original runs the batch joined by "\n": lines of all captions, in order, zipped
        # with the ids; a caption spanning two lines (\r) shifts every later caption by one.
        lines = [line for t in texts for line in cache[t]]
        out: dict[str, list[str]] = {}
        for k, line in zip(ids, lines):
            words = [w for w in line.rstrip().split(" ") if w not in PTB_PUNCTUATIONS]
            out.setdefault(k, []).append(" ".join(words))
        return out


def _placeholder(hyp_words: set[str]) -> str:
    """One lowercase token that matches no hypothesis word (stands in for the random string)."""
    token = "qzxjvkwpzq"
    while any(token in w for w in hyp_words):
        token += "x"
    return token


# ----------------------------------------------------------------------------------------------
# Inputs
# ----------------------------------------------------------------------------------------------


def _gt_videos(ground_truth: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> list[tuple[str, np.ndarray, list[str]]]:
    annotations = ground_truth["annotations"] if isinstance(ground_truth, Mapping) else ground_truth
    videos = []
    for i, ann in enumerate(annotations):
        try:
            key = ann["image_id"].split("/")[-1]
            segments = ann["segments"]
            if "pure_cap" in ann:  # YouCook2
                caps = ann["pure_cap"].split(". ")
            else:  # ActivityNet: the length filter counts leading spaces, then strip
                caps = [c.strip(" ") for c in ann["caption"].split(".") if len(c) > 5]
        except (KeyError, TypeError, AttributeError) as e:
            raise MetricInputError(f"gt annotation #{i}: needs 'image_id', 'segments' and 'pure_cap' "
                                   f"or 'caption' ({e!r})") from e
        if len(segments) != len(caps):
            how = ("pure_cap split on '. '" if "pure_cap" in ann
                   else "caption split on '.', pieces longer than 5 characters")
            raise MetricInputError(
                f"gt video {key!r}: {len(segments)} segments but {len(caps)} sentences ({how})"
            )
        if not segments:
            raise MetricInputError(f"gt video {key!r}: no segments (recall would divide by zero)")
        videos.append((key, segments, [c + "." for c in caps]))
    return videos


def _pred_video(key: str, entries: Any) -> tuple[np.ndarray, list[str]]:
    if not isinstance(entries, Sequence) or isinstance(entries, str):
        raise MetricInputError(f"prediction for video {key!r}: expected a list of "
                               "{'timestamp', 'caption'} entries")
    try:
        captions = [e["caption"] for e in entries]
        stamps = [e["timestamp"] for e in entries]
    except (KeyError, TypeError) as e:
        raise MetricInputError(f"prediction for video {key!r}: every entry needs 'timestamp' and 'caption'") from e
    if not all(isinstance(c, str) for c in captions):
        raise MetricInputError(f"prediction for video {key!r}: captions must be strings")
    try:
        segments = np.array(stamps)
    except ValueError as e:
        raise MetricInputError(
            f"prediction for video {key!r}: timestamps {stamps!r} are ragged "
            f"(every 'timestamp' must be [start, end]); numpy: {e}"
        ) from e
    if len(stamps) and (segments.ndim != 2 or segments.shape[1] < 2):
        # [s] alone: the original fails with "'numpy.int64' object is not iterable"
        raise MetricInputError(f"prediction for video {key!r}: every 'timestamp' must be [start, end], "
                               f"got {stamps[0]!r}")
    return segments, captions


def split_from_gt_path(path: str | Path) -> str:
    """Split name as the original derives it: the gt file name up to its first ``.``.

    Raises:
        MetricInputError: when that text is not ``train``, ``val`` or ``test`` (the original's
            ``KeyError``); pass the split explicitly (CLI ``--split``) for other file names.
    """
    name = Path(path).name.split(".")[0]
    if name not in SPLITS:
        raise MetricInputError(
            f"{path}: the gt file name must start with 'train.', 'val.' or 'test.' (the original "
            f"takes the split from it and fails on {name!r}); pass --split / split= instead"
        )
    return name


# ----------------------------------------------------------------------------------------------
# Main entry point
# ----------------------------------------------------------------------------------------------


def dvc_metrics(
    predictions: Mapping[str, Any],
    ground_truth: Mapping[str, Any] | Sequence[Mapping[str, Any]],
    split: str = "val",
    *,
    session: JavaSession | None = None,
    invalid: list[InvalidPrediction] | None = None,
) -> dict[str, float]:
    """Every number ``eval_dvc.py`` prints, unrounded.

    Args:
        predictions: the pred file's object, video key -> list of ``{"timestamp", "caption"}``.
        ground_truth: the gt file's object (``{"annotations": [...]}``) or its annotation list.
        split: ``"train"``, ``"val"`` or ``"test"``: names the ``SODA_c_<1|2|3>`` key.
        session: a :class:`JavaSession` to reuse (its METEOR process stays up); by default one
            is opened and closed for this call.
        invalid: a list that receives one `InvalidPrediction` per predicted event (of a gt video)
            whose timestamp has a start or end that is not a finite number; such an event overlaps
            nothing (IoU 0) but stays a prediction. None: a warning names them instead.
    Returns:
        ``Para_CIDER, Para_METEOR, CIDER, METEOR, Precision@t, Recall@t (t = 0.3 .. 0.9),
        Precision_Mean, Recall_Mean, F1_Score, SODA_c_<split>, n_preds`` and the ``-100``
        placeholders ``SODA_c_1`` / ``SODA_c_2`` of the other splits, in the original's order.
    Raises:
        MetricInputError: where the original crashes (sentence/segment count mismatch, ragged
            timestamps, ...), naming the video.
    """
    if split not in SPLITS:
        raise MetricInputError(f"split must be one of {sorted(SPLITS)}, got {split!r}")
    split_id = SPLITS[split]
    if not isinstance(predictions, Mapping):
        raise MetricInputError("predictions must be an object keyed by video key")
    gt_videos = _gt_videos(ground_truth)
    if not gt_videos:
        raise MetricInputError("the gt has no videos")

    # Predictions of gt videos, checked before Java starts (the others are ignored, as in the original).
    found: list[InvalidPrediction] = []
    pred_videos = {}
    for key, _, _ in gt_videos:
        if key in predictions:
            pred_videos[key] = segs, _ = _pred_video(key, predictions[key])
            found += [InvalidPrediction(key, f"event {j}: {problem}") for j, seg in enumerate(segs)
                      if (problem := interval_problem(seg, ordered=False))]

    own_session = session is None
    if own_session:
        session = JavaSession()
    try:
        session.start_meteor()  # loads its paraphrase table while Python does the rest
        results = _dvc_metrics(pred_videos, gt_videos, split_id, session)
    finally:
        if own_session:
            session.close()
    report_invalid(found, invalid)
    return results


def _dvc_metrics(pred_videos: dict[str, tuple[np.ndarray, list[str]]], gt_videos: list, split_id: int,
                 session: JavaSession) -> dict[str, float]:
    keys = [key for key, _, _ in gt_videos]
    gt_segments = [seg for _, seg, _ in gt_videos]
    gt_captions = [caps for _, _, caps in gt_videos]
    pred_segments, pred_captions, pred_paras = [], [], []
    for key in keys:
        if key in pred_videos:
            segs, caps = pred_videos[key]
            pred_paras.append(". ".join(caps))
        else:  # a missing video scores like [], but appends no paragraph (misalignment kept)
            segs, caps = np.array([]), []
        pred_segments.append(segs)
        pred_captions.append(caps)
    gt_paras = [" ".join(caps) for caps in gt_captions]

    # --- caption matching (match_captions), flattened as the original does for tokenisation ---
    tok = _BatchTokenizer(session)
    hyp_words = {w for caps in pred_captions for c in caps for w in c.lower().split()}
    placeholder = _placeholder(hyp_words)
    session.seed_tokens(placeholder, [placeholder])
    gts = {t: {} for t in IOU_THRESHOLDS}
    preds = {t: {} for t in IOU_THRESHOLDS}
    vid2isx = {t: {} for t in IOU_THRESHOLDS}
    for key, p_segs, g_segs, p_caps, g_caps in zip(keys, pred_segments, gt_segments, pred_captions, gt_captions):
        isx = 0
        isxes = {t: [] for t in IOU_THRESHOLDS}
        for p, seg in enumerate(p_segs):
            added = dict.fromkeys(IOU_THRESHOLDS, False)
            for g, g_seg in enumerate(g_segs):
                value = dvc_iou(seg, g_seg)
                for t in IOU_THRESHOLDS:
                    if value >= t:
                        isxes[t].append(isx)
                        gts[t][f"{key}_{isx}"] = [{"caption": g_caps[g]}]
                        preds[t][f"{key}_{isx}"] = [{"caption": p_caps[p]}]
                        isx += 1
                        added[t] = True
            for t in IOU_THRESHOLDS:
                if not added[t]:
                    isxes[t].append(isx)
                    gts[t][f"{key}_{isx}"] = [{"caption": placeholder}]
                    preds[t][f"{key}_{isx}"] = [{"caption": p_caps[p]}]
                    isx += 1
        for t in IOU_THRESHOLDS:
            vid2isx[t][key] = isxes[t]

    # One JVM launch for every caption of the run; the batches are then re-created in Python.
    pred_dict = {f"{keys[i]}_{j}": [{"caption": c}] for i, caps in enumerate(pred_captions) for j, c in enumerate(caps)}
    gt_dict = {f"{keys[i]}_{j}": [{"caption": c}] for i, caps in enumerate(gt_captions) for j, c in enumerate(caps)}
    session.ptb_lines(
        [c["caption"].replace("\n", " ") for d in (*gts.values(), *preds.values(), pred_dict, gt_dict)
         for v in d.values() for c in v]
    )
    for t in IOU_THRESHOLDS:
        gts[t] = tok.tokenize(gts[t])
        preds[t] = tok.tokenize(preds[t])
    pred_tok = tok.tokenize(pred_dict)
    gt_tok = tok.tokenize(gt_dict)
    try:
        pred_caps_tok = [[pred_tok[f"{keys[i]}_{j}"][0] for j in range(len(caps))] for i, caps in enumerate(pred_captions)]
        gt_caps_tok = [[gt_tok[f"{keys[i]}_{j}"][0] for j in range(len(caps))] for i, caps in enumerate(gt_captions)]
        final_gts = {t: {k: {str(i): gts[t][f"{k}_{i}"] for i in vid2isx[t][k]} for k in keys} for t in IOU_THRESHOLDS}
        final_preds = {t: {k: {str(i): preds[t][f"{k}_{i}"] for i in vid2isx[t][k]} for k in keys} for t in IOU_THRESHOLDS}
    except KeyError as e:
        raise MetricInputError(f"caption {e} lost in tokenisation (the original fails the same way)") from e

    # --- plan every METEOR call of the original, then run them through one process ---
    para_ids = sorted(str(i) for i in range(min(len(pred_paras), len(gt_paras))))
    para_pairs = [(" ".join(parse_sent(pred_paras[int(i)])), [" ".join(parse_sent(gt_paras[int(i)]))])
                  for i in para_ids]
    jobs: list[list[tuple[str, list[str]]]] = []
    if para_pairs:
        jobs.append(para_pairs)
    dense_jobs: dict[tuple[str, float], int] = {}
    for k in keys:
        for t in IOU_THRESHOLDS:
            ids = sorted(final_gts[t][k])
            if ids:
                dense_jobs[(k, t)] = len(jobs)
                jobs.append([(final_preds[t][k][i][0], final_gts[t][k][i]) for i in ids])
    # SODA_c multiplies each METEOR score by the IoU of its cell, so only cells with IoU > 0 can
    # change the alignment: score just those (a per-segment METEOR score depends on that segment
    # alone), in one EVAL job. The original's column order (sorted string keys) is kept.
    soda_cells: dict[tuple[str, str], int] = {}
    soda_pairs: list[tuple[str, list[str]]] = []
    soda_orders: dict[int, list[int]] = {}
    for v, (p_caps, g_caps) in enumerate(zip(pred_caps_tok, gt_caps_tok)):
        if not p_caps:
            continue
        order = [int(j) for j in sorted(str(j) for j in range(len(p_caps)))]
        soda_orders[v] = order
        ious = detection_scores(pred_segments[v], gt_segments[v])[2]
        for g, gt_cap in enumerate(g_caps):
            for col, j in enumerate(order):
                # hypothesis = gt caption, reference = prediction (the original's argument swap)
                cell = (gt_cap, p_caps[j])
                if ious[g, col] != 0 and cell not in soda_cells:
                    soda_cells[cell] = len(soda_pairs)
                    soda_pairs.append((gt_cap, [p_caps[j]]))
    soda_job = None
    if soda_pairs:
        soda_job = len(jobs)
        jobs.append(soda_pairs)
    # CIDEr is pure Python: compute it while the METEOR JVM is still loading its tables.
    if not para_pairs:
        raise MetricInputError("no gt video has a prediction: the paragraph metrics are undefined")
    para_cider = float(np.nan_to_num(_cider(para_pairs)))
    dense_cider = {
        (k, t): np.nan_to_num(_cider([(final_preds[t][k][i][0], final_gts[t][k][i]) for i in sorted(final_gts[t][k])]))
        for (k, t) in dense_jobs
    }
    meteor = session.meteor_scores(jobs)

    # --- paragraph metrics ---
    results: dict[str, float] = {
        "Para_CIDER": para_cider * 100,
        "Para_METEOR": float(np.nan_to_num(meteor[0][1])) * 100,
    }

    # --- per-video dense metrics ---
    per_video: dict[str, list[float]] = {}
    for v, key in enumerate(keys):
        row: dict[str, float] = {}
        cider_t, meteor_t = [], []
        for t in IOU_THRESHOLDS:
            if (key, t) in dense_jobs:
                cider_t.append(dense_cider[(key, t)])
                meteor_t.append(np.nan_to_num(meteor[dense_jobs[(key, t)]][1]))
            else:
                cider_t.append(0.0)
                meteor_t.append(0.0)
        row["CIDER"] = float(np.mean(cider_t))
        row["METEOR"] = float(np.mean(meteor_t))
        precision, recall, iou_matrix = detection_scores(pred_segments[v], gt_segments[v])
        for j, t in enumerate(IOU_THRESHOLDS):
            row[f"Precision@{t}"] = precision[j]
            row[f"Recall@{t}"] = recall[j]
        mean_p = sum(precision) / len(precision)
        mean_r = sum(recall) / len(recall)
        row["Precision_Mean"] = mean_p
        row["Recall_Mean"] = mean_r
        row["F1_Score"] = 2 * mean_r * mean_p / (mean_r + mean_p) if mean_r + mean_p > 0 else 0
        if v in soda_orders:
            order = soda_orders[v]
            seg_scores = meteor[soda_job][0] if soda_job is not None else []
            score_matrix = np.zeros(iou_matrix.shape)
            for g, gt_cap in enumerate(gt_caps_tok[v]):
                for col, j in enumerate(order):
                    if iou_matrix[g, col] != 0:
                        score_matrix[g, col] = np.nan_to_num(seg_scores[soda_cells[(gt_cap, pred_caps_tok[v][j])]])
            max_score = soda_dp(iou_matrix * score_matrix)
            n_pred = len(pred_caps_tok[v])
            p, r = max_score / n_pred, max_score / len(gt_caps_tok[v])
            row[f"SODA_c_{split_id}"] = float(np.mean([2 * p * r / (p + r) if p + r > 0 else 0]))
        else:
            row[f"SODA_c_{split_id}"] = 0.0
        row["n_preds"] = len(pred_captions[v])
        for placeholder_id in (1, 2):
            if placeholder_id != split_id:
                row[f"SODA_c_{placeholder_id}"] = -1.0
        for name, value in row.items():
            per_video.setdefault(name, []).append(value)

    for name, values in per_video.items():
        mean = sum(values) / len(values)
        results[name] = mean if name == "n_preds" else mean * 100
    return results


def load_dvc_gt(path: str | Path) -> dict:
    """Read a DVC gt file (``{"annotations": [...]}``)."""
    return read_coco_gt(path)


def load_dvc_pred(path: str | Path) -> dict:
    """Read a DVC prediction file (object keyed by video key)."""
    return read_keyed_predictions(path, "video key")
