"""Dense video captioning (YouCook2 / ActivityNet): prompts, answer parser, annotations, scoring.

Mirrors the original's DVC evaluation (TIMECHAT_SPEC.md sections 5.4, 5.5, 5.6): the prompt files
``dvc_*.txt`` (:data:`DVC_PROMPTS`), ``utils/format_dvc.py`` ``format_dvc_output``
(:func:`format_dvc_output`) and ``eval_dvc.py`` (CIDEr, METEOR, SODA_c, P/R/F1 via
`timechat.metrics.dvc_metrics`).

Input: ``eval.anno_path`` = ``{split}.caption_coco_format.json`` (``annotations: [{image_id,
segments, pure_cap | caption, duration}]``), one sample per video, id = the video file name; videos
at ``videos_dir / basename(image_id)``.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any, Sequence

from timechat.eval.inference import EvalSample
from timechat.eval.tasks.base import (
    EvalTask,
    TaskOutput,
    count_parse,
    decode_failures,
    invalid_notes,
    read_json,
    sample_counts,
    write_json,
)
from timechat.eval.tasks.common import (
    CLOCK_RE,
    NUM,
    NUM_RE,
    PAIR_RE,
    R_EMPTY,
    ParseResult,
    clock_seconds,
    finite_pairs,
    read_coco_annotations,
    to_float,
    video_name,
)
from timechat.eval.tasks.grounding import video_duration

logger = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------------
# Prompts (spec 5.4): the first line of each prompt file, stripped
# --------------------------------------------------------------------------------------------------

DVC_PROMPTS: dict[str, str] = {
    # YouCook2 zero-shot DVC; the prompt eval.sh uses.
    "dvc_description_zeroshot": (
        "You are given a cooking video from the YouCook2 dataset. Please watch the video and extract a "
        "maximum of 10 significant cooking steps. For each step, determine the starting and ending times "
        "and provide a concise description. The format should be: 'start time - end time, brief step "
        "description'. For example, ' 90 - 102 seconds, spread margarine on two slices of white bread'."
    ),
    "dvc_description": (
        "Localize a series of activity events in the video, output the start and end timestamp for each "
        "event, and describe each event with sentences. The output format of each predicted event should "
        "be like: 'start - end seconds, event description'. A specific example is : ' 90 - 102 seconds, "
        "spread margarine on two slices of white bread in the video' ."
    ),
    # "An specific example" is the original's wording.
    "dvc_description_with_asr": (
        "You are able to understand the visual content that the user provides. Localize a series of "
        "activity events in the video with the aid of transcribed speech, output the start and end "
        "timestamp for each event, and describe each event with sentences. The output format of each "
        "predicted event should be like: 'start - end seconds, event description'. An specific example "
        "is : ' 90 - 102 seconds, spread margarine on two slices of white bread in the video' ."
    ),
    "dvc_post_check": (
        "Be careful about your output format, you should provide start time and end time for each step. "
        "The format should be: 'start time - end time, brief step description', for example, ' 90 - 102 "
        "seconds, spread margarine on two slices of white bread'."
    ),
}

# --------------------------------------------------------------------------------------------------
# Answer parser (utils/format_dvc.py)
# --------------------------------------------------------------------------------------------------

# Reasons are fixed strings (no per-sample content) so that they can be counted.
R_DVC_NO_EVENT = "no timestamped event found"
R_DVC_NO_CAPTION = "timestamps found but no caption piece longer than 5 characters"
R_DVC_PDB = "'start time X, end time Y' format: the original format_dvc.py stops in pdb here"

_DVC_START_FIELD_RE = re.compile(rf"\bstart(?:ing)? time\s*:\s*({NUM})")
_DVC_END_FIELD_RE = re.compile(rf"\bend(?:ing)? time\s*:\s*({NUM})")
_DVC_DESCRIPTION_RE = re.compile(r"description\s*:\s*(.*)")
# The original's bullet pattern is r"^\s*\*\s*(.+)$"; its leading \s* also crossed blank lines, which
# finds the same bullets but rescans every run of blank lines once per line (quadratic). Starting
# the match on the bullet's own line gives the same captions in linear time.
_DVC_BULLET_RE = re.compile(r"^[^\S\n]*\*\s*(.+)$", re.MULTILINE)
# The original's pdb pattern, r"start time\s*X[^,\n]*,\s*end time\s*Y", split in two (see
# `_is_pdb_format`): as one regex it rescans the rest of the line from every "start time".
_DVC_PDB_START_RE = re.compile(rf"\bstart time\s*{NUM}")
_DVC_PDB_END_RE = re.compile(rf",\s*end time\s*{NUM}")
_LINE_OR_COMMA_RE = re.compile(r"[,\n]")
# Half-width of the window built around a single time point in the last-resort branch.
_DVC_POINT_HALF_WINDOW = 20.0


def _event(start: float, end: float, caption: str) -> dict[str, Any]:
    return {"timestamp": [start, end], "caption": caption}


def _dvc_from_pairs(paragraph: str, raw_pairs: list[tuple[str, str]]) -> ParseResult:
    """Branch 1: every 'A - B' is an event; captions are the text between them."""
    # QUIRK: captions are cut out of the lower-cased paragraph (so they come out lower-cased); every
    # 'A - B' becomes a line break, the word 'seconds' is deleted, pieces of <= 5 characters are
    # dropped, and timestamps and captions are then paired by position and truncated to the shorter
    # list -- so text before the first pair that is longer than 5 characters shifts every caption.
    pieces = PAIR_RE.sub("\n", paragraph).replace("seconds", "").split("\n")
    captions = [piece.strip(" ,") for piece in pieces if len(piece) > 5]
    pairs = finite_pairs(raw_pairs)
    events = [_event(p[0], p[1], c) for p, c in zip(pairs, captions) if p is not None]
    # QUIRK: reversed pairs (end < start) are kept as they are; the DVC metrics see them unchanged.
    if not events:
        return ParseResult.failure(R_DVC_NO_CAPTION if not captions else R_DVC_NO_EVENT)
    return ParseResult.success(events)


def _dvc_from_fields(paragraph: str) -> ParseResult | None:
    """Branch 2: 'start(ing) time: X' / 'end(ing) time: Y' with 'description: ...' or '* ...' lines.

    Returns None when the branch does not apply (no start/end pair).
    """
    starts = _DVC_START_FIELD_RE.findall(paragraph)
    ends = _DVC_END_FIELD_RE.findall(paragraph)
    raw_pairs = list(zip(starts, ends))
    if not raw_pairs:
        return None
    captions = [c.strip() for c in _DVC_DESCRIPTION_RE.findall(paragraph)]
    if not captions:
        captions = [c.strip() for c in _DVC_BULLET_RE.findall(paragraph)]
    events = [
        _event(p[0], p[1], c) for p, c in zip(finite_pairs(raw_pairs), captions) if p is not None
    ]
    if not events:
        return ParseResult.failure(R_DVC_NO_CAPTION if not captions else R_DVC_NO_EVENT)
    return ParseResult.success(events)


def _is_pdb_format(paragraph: str) -> bool:
    """Whether the original's ``start time X[^,\\n]*, end time Y`` pattern occurs, in linear time.

    After ``start time X`` the pattern can only continue at the first ``,`` or newline that follows;
    every ``start time X`` that ends before that same character shares its verdict, so each stretch
    of text is scanned once.
    """
    stop = -1  # where the previous "start time X" ran into a comma or a line end
    for start in _DVC_PDB_START_RE.finditer(paragraph):
        if start.end() <= stop:
            continue  # same stop character as the previous one, which did not match
        found = _LINE_OR_COMMA_RE.search(paragraph, start.end())
        if found is None:
            return False
        stop = found.start()
        if _DVC_PDB_END_RE.match(paragraph, stop):
            return True
    return False


def _point_window(t: float) -> tuple[float, float]:
    """Window around a single time point: [t-20, t+20], or [t, t+40] when t <= 20."""
    if t <= _DVC_POINT_HALF_WINDOW:
        return t, t + 2 * _DVC_POINT_HALF_WINDOW
    return t - _DVC_POINT_HALF_WINDOW, t + _DVC_POINT_HALF_WINDOW


def _span_from_fragment(fragment: str) -> tuple[float, float] | None:
    """A - B, else clock times (one -> window, two or more -> the first two), else bare numbers."""
    for a, b in PAIR_RE.findall(fragment):
        pair = finite_pairs([(a, b)])[0]
        if pair is not None:
            return pair
    clocks = [t for t in (clock_seconds(m) for m in CLOCK_RE.finditer(fragment)) if t is not None]
    if len(clocks) == 1:
        return _point_window(clocks[0])
    if len(clocks) >= 2:
        return clocks[0], clocks[1]
    numbers = [t for t in (to_float(n) for n in NUM_RE.findall(CLOCK_RE.sub(" ", fragment))) if t is not None]
    if len(numbers) == 1:
        # Interpretation: the spec's "±20 s window" for a bare number is read as the same window as
        # for a single m:ss time (no negative start).
        return _point_window(numbers[0])
    if len(numbers) >= 2:
        return numbers[0], numbers[1]
    return None


def _dvc_last_resort(paragraph: str) -> ParseResult:
    """Branch 4: the first line (or '.'-sentence) that yields a time span gives ONE event."""
    lines = [line for line in paragraph.split("\n") if line.strip()]
    # A one-line answer is split into sentences instead (pieces longer than 7 characters).
    pieces = lines if len(lines) > 1 else [s for s in paragraph.split(".") if len(s) > 7]
    for piece in pieces:
        before, _, after = piece.partition("seconds")
        span = _span_from_fragment(before)
        if span is not None:
            # QUIRK: the original stops at the first success (a `len(timestamps) == 0` guard), so this
            # branch never yields more than one event.
            return ParseResult.success([_event(span[0], span[1], after.strip(" ,:"))])
    return ParseResult.failure(R_DVC_NO_EVENT)


def format_dvc_output(text: str) -> ParseResult:
    """Parse a dense-captioning answer into events (``utils/format_dvc.py`` ``format_dvc_output``).

    Branches, tried in order on the lower-cased answer:

    1. any ``A - B`` pairs -> those are the events (captions = the text between them, see the QUIRK
       notes); if the answer has pairs, no other branch is tried;
    2. ``start(ing) time: X`` / ``end(ing) time: Y`` pairs with ``description: ...`` (or ``* ...``)
       captions;
    3. ``start time X, end time Y`` -> unparseable (the original hangs in ``pdb`` there);
    4. per line (or '.'-sentence of a one-line answer): the part before ``seconds`` gives a span
       (``A - B``; one ``m:ss`` -> 40 s window; two ``m:ss``; bare numbers), the part after it the
       caption; only the first success is kept.

    Args:
        text: the model's answer.

    Returns:
        ``ParseResult`` whose value is ``[{"timestamp": [start, end], "caption": str}, ...]`` (at least
        one event) or ``None`` when unparseable.
    """
    if not text.strip():
        return ParseResult.failure(R_EMPTY)
    # QUIRK: everything is lower-cased first, so captions are lower-case.
    paragraph = text.lower()
    raw_pairs = PAIR_RE.findall(paragraph)
    if raw_pairs:
        return _dvc_from_pairs(paragraph, raw_pairs)
    fields_result = _dvc_from_fields(paragraph)
    if fields_result is not None:
        return fields_result
    if _is_pdb_format(paragraph):
        return ParseResult.failure(R_DVC_PDB)
    return _dvc_last_resort(paragraph)


# --------------------------------------------------------------------------------------------------
# Annotations and task
# --------------------------------------------------------------------------------------------------


def read_dvc_annotations(path: str | Path) -> list[dict[str, Any]]:
    """The annotations of a ``{split}.caption_coco_format.json`` DVC file, each checked for ``image_id``.

    Raises:
        ValueError: naming the file and the annotation without ``image_id``.
    """
    annotations = read_coco_annotations(path)
    for k, a in enumerate(annotations):
        if "image_id" not in a:
            raise ValueError(f"{path}: annotation {k} has no 'image_id'")
    return annotations


def localisation_scores(pred_segments: Sequence[Sequence[float]], gt_segments: Sequence[Sequence[float]]) -> dict[str, float]:
    """One video's `Precision_Mean`, `Recall_Mean`, `F1_Score` (fractions) as `eval_dvc.py` computes them."""
    from timechat.metrics.dvc import detection_scores

    if not gt_segments:
        return {}
    precision, recall, _ = detection_scores(list(pred_segments), list(gt_segments))
    p, r = sum(precision) / len(precision), sum(recall) / len(recall)
    return {"Precision_Mean": p, "Recall_Mean": r, "F1_Score": 2 * p * r / (p + r) if p + r > 0 else 0.0}


def localisation_f1(events: Sequence[dict[str, Any]], gt_segments: Sequence[Sequence[float]]) -> float | None:
    return localisation_scores([ev["timestamp"] for ev in events], gt_segments).get("F1_Score")


def gt_captions(gt: Any) -> dict[str, list[str]]:
    """Video key -> its ground-truth sentences, split as the metric splits them ({} if it cannot)."""
    from timechat.metrics._common import MetricInputError
    from timechat.metrics.dvc import _gt_videos

    try:
        return {key: caps for key, _, caps in _gt_videos(gt)}
    except MetricInputError:
        return {}


def dvc_baselines(rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """The localisation metrics (percent) of a caption-free trivial answer: each video cut into k equal
    segments, k = the mean number of ground-truth events per video (no segment for a video of unknown length)."""
    scored = [r for r in rows if r.get("gt")]
    if not scored or not any(r.get("duration") for r in scored):
        return {}
    k = max(1, round(sum(len(r["gt"]) for r in scored) / len(scored)))
    per_video = []
    for r in scored:
        d = float(r["duration"] or 0.0)
        segments = [[d * i / k, d * (i + 1) / k] for i in range(k)] if d > 0 else []
        per_video.append(localisation_scores(segments, r["gt"]))
    name = f"{k} equal segments"
    return {name: {key: 100 * sum(v[key] for v in per_video) / len(per_video) for key in per_video[0]}}


class DenseCaptioningTask(EvalTask):
    """YouCook2 / ActivityNet dense captioning (the original's `eval_dvc.py`: CIDEr, METEOR, SODA_c, P/R/F1)."""

    name = "dvc"

    def build_samples(self) -> list[EvalSample]:
        anno = self._require("anno_path")
        template = self.template()
        samples, seen = [], set()
        for a in read_dvc_annotations(anno):
            # The video's file name is the sample id and the key of the prediction file.
            key = video_name(a["image_id"])
            if key in seen:
                raise ValueError(f"{anno}: video {key!r} appears twice (DVC predictions are keyed by video)")
            seen.add(key)
            video = self.video_path(key)
            samples.append(EvalSample(key, video, self.with_asr(template, video), self.post_check(),
                                      {"duration": a.get("duration"), "segments": a.get("segments")}))
        return self.limit(samples)

    def evaluate(self, entries: Sequence[dict[str, Any]], out_dir: str | Path) -> TaskOutput:
        from timechat.metrics import JavaUnavailableError, dvc_metrics, split_from_gt_path
        from timechat.metrics._common import MetricInputError

        out_dir = Path(out_dir)
        stats = self.parse_stats()
        preds: dict[str, list[dict[str, Any]]] = {}
        timelines, rows = [], []
        durations: dict[str, float | None] = {}
        for e in entries:
            events: list[dict[str, Any]] = []
            status = "video not decoded"
            if "error" not in e:
                res = count_parse(stats, format_dvc_output(e["answer"]), e["answer"], e["id"])
                events = res.value if res.ok else []
                status = "ok" if res.ok else f"unparseable: {res.reason}"
            preds[e["id"]] = events
            m = e["meta"]
            duration = m.get("duration") or video_duration(e["video"], durations)
            gt_segments = m.get("segments") or []
            timelines.append({"label": e["id"], "duration": duration, "gt": gt_segments,
                              "pred": [ev["timestamp"] for ev in events], "video": e["video"],
                              "pred_captions": [ev["caption"] for ev in events]})
            rows.append({"id": e["id"], "video": Path(e["video"]).name, "query": "", "gt": gt_segments,
                         "pred": [ev["timestamp"] for ev in events], "score": localisation_f1(events, gt_segments),
                         "score_name": "localisation F1", "status": status, "duration": duration,
                         "answer": e.get("answer", e.get("error"))})
        files = {"raw": self._raw_results(entries, out_dir),
                 "predictions": write_json(out_dir / f"fmt_{self.file_stem()}", preds)}
        gt = read_json(self.gt_path, "DVC gt file")
        captions = gt_captions(gt)
        for t in timelines:  # the report draws the ground-truth captions beside the predicted ones
            t["gt_captions"] = captions.get(t["label"], [])
        if self.cfg.max_samples is not None:
            keep = set(preds)
            gt = {**gt, "annotations": [a for a in gt["annotations"] if video_name(a["image_id"]) in keep]}
        try:
            split = split_from_gt_path(self.gt_path)
        except MetricInputError:
            split = self.cfg.split
        notes, metrics, invalid = [], {}, []
        try:
            metrics = dvc_metrics(preds, gt, split=split, invalid=invalid)
        except JavaUnavailableError as exc:
            notes.append(f"DVC metrics not computed: {exc}")
            logger.warning("DVC metrics not computed: %s", exc)
        notes += invalid_notes(invalid, self.cfg.max_examples)
        counts = {**sample_counts(entries), "parse_failures": stats.failures, "invalid_predictions": len(invalid)}
        return TaskOutput(metrics, {self.name: stats}, counts, files,
                          decode_failures(entries, self.cfg.max_examples),
                          timelines=timelines, notes=notes, rows=rows, baselines=dvc_baselines(rows))
