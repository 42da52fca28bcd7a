"""Video highlight detection (QVHighlights): prompts, answer parser, annotations, scoring.

Mirrors the original's VHD evaluation (TIMECHAT_SPEC.md sections 5.4, 5.5, 5.6): the prompt files
``vhd_*.txt`` (:data:`VHD_PROMPTS`), ``utils/format_vhd.py`` ``format_vhd_output``
(:func:`parse_vhd_highlights`, :func:`vhd_clip_scores`, :func:`format_vhd_output`) and
``eval_vhd.py`` (HL-min-VeryGood mAP / HIT@1, ... via `timechat.metrics.vhd_metrics`).

Input: ``eval.anno_path`` = QVHighlights ``highlight_{split}_release.jsonl`` (``qid, query, vid,
duration``; videos ``videos_dir/{vid}.mp4``) or a COCO-style ``*.json`` (``image_id, caption, id,
duration``, read like the TVG file); ``eval.gt_file`` = the jsonl the metric reads.
"""

from __future__ import annotations

import math
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
    sample_counts,
    spread,
    write_json,
)
from timechat.eval.tasks.common import CLOCK_RE, NUM_RE, ParseResult, clock_seconds, fill_query_prompt, to_float
from timechat.eval.tasks.grounding import read_tvg_annotations
from timechat.io import read_jsonl

# --------------------------------------------------------------------------------------------------
# Prompts (spec 5.4): the first line of each prompt file, stripped
# --------------------------------------------------------------------------------------------------

VHD_PROMPTS: dict[str, str] = {
    # QVHighlights VHD; the prompt eval.sh uses. Two placeholders: dataset name, query.
    "vhd_description": (
        "You are given a video from the {} dataset. Please find the highlight moments in the video "
        "described by a sentence query, determining the highlight moment's timestamp and its saliency "
        "score. The output format should be like: 'There are 10 highlight moments in the 82, 84, 86, 88, "
        "90, 92, 94, 96, 98, 100 second. Their saliency scores are 1.3, 1.7, 1.7, 1.7, 1.7, 1.3, 1.7, "
        "2.3, 2.3, 2.3'. Now I will give you the sentence query: {}. Please return the query-based "
        "highlight moments."
    ),
    "vhd_description_zeroshot": (
        "You are given a video from the {} dataset. Please find the highlight contents in the video "
        "described by a sentence query, determining the highlight timestamps and its saliency score on a "
        "scale from 1 to 5. The output format should be like: 'The highlight timestamps are in the 82, "
        "84, 86, 88, 90, 92, 94, 96, 98, 100 seconds. Their saliency scores are 1.3, 1.7, 1.7, 1.7, 1.7, "
        "1.3, 1.7, 2.3, 2.3, 2.3'. Now I will give you the sentence query: {}. Please return the "
        "query-based highlight timestamps and salient scores."
    ),
    "vhd_post_check": (
        "Be careful about your output format, you should provide timestamp and saliency score for the "
        "highlight moment. The output format should be like: 'There are 10 highlight moments in the 82, "
        "84, 86, 88, 90, 92, 94, 96, 98, 100 second. Their saliency scores are 1.3, 1.7, 1.7, 1.7, 1.7, "
        "1.3, 1.7, 2.3, 2.3, 2.3'."
    ),
}

# --------------------------------------------------------------------------------------------------
# Answer parser (utils/format_vhd.py)
# --------------------------------------------------------------------------------------------------

# Reasons are fixed strings (no per-sample content) so that they can be counted.
R_VHD_NO_KEYWORD = "answer lacks 'second' or 'score'"
R_VHD_NO_TIMESTAMP = "no highlight timestamp found"
R_VHD_SINGLE_NO_SCORE = "single highlight timestamp without a score"

# Scores are "one digit . one digit" tokens; integers such as "2" and numbers like "12.3" are not.
_VHD_SCORE_RE = re.compile(r"(?<!\d)\d\.\d(?!\d)")
_VHD_COUNT_RE = re.compile(r"There are (\d{1,9}) highlight moments?")
# QVHighlights clips are 2 s long.
VHD_CLIP_SECONDS = 2.0
# Class-2 answers: plain numbers must exceed this to count as timestamps.
_VHD_MIN_PLAIN_TIMESTAMP = 10.0


def _vhd_class1(text: str) -> tuple[list[float], list[float]]:
    """Few mentions of 'second'/'score': timestamps listed before 'score', scores after it."""
    cap = None
    timestamps: list[float] = []
    scores: list[float] = []
    for line in text.split("\n"):
        if "second" not in line and "score" not in line:
            continue
        count = _VHD_COUNT_RE.search(line)
        if count is not None:
            cap = int(count.group(1))
            line = line[: count.start()] + line[count.end() :]
        before, found, after = line.partition("score")
        timestamps += [t for t in (to_float(n) for n in NUM_RE.findall(before)) if t is not None]
        if found:
            # QUIRK: integer scores ("2") are ignored, which shifts the timestamp/score pairing:
            # "82, 84, 86 second ... scores are 1.3, 2, 2.3" -> 82:1.3, 84:2.3, 86:(padded) 0.0.
            scores += [t for t in (to_float(s) for s in _VHD_SCORE_RE.findall(after)) if t is not None]
    if cap is not None:
        timestamps = timestamps[:cap]
    return timestamps, scores


def _vhd_class2(text: str) -> tuple[list[float], list[float]]:
    """One highlight per line: last d.d is the score, last time value the timestamp."""
    timestamps: list[float] = []
    scores: list[float] = []
    for line in text.split("\n"):
        line_scores = [t for t in (to_float(s) for s in _VHD_SCORE_RE.findall(line)) if t is not None]
        if line_scores:
            scores.append(line_scores[-1])
        clocks = [t for t in (clock_seconds(m) for m in CLOCK_RE.finditer(line)) if t is not None]
        if clocks:
            timestamps.append(clocks[-1])
            continue
        # QUIRK: plain numbers count only above 10 s (to skip the scores), so genuine highlights in
        # the first 10 seconds are dropped.
        plain = [t for t in (to_float(n) for n in NUM_RE.findall(line)) if t is not None]
        plain = [t for t in plain if t > _VHD_MIN_PLAIN_TIMESTAMP]
        if plain:
            timestamps.append(plain[-1])
    return timestamps, scores


def parse_vhd_highlights(text: str) -> ParseResult:
    """Parse a highlight-detection answer into (timestamp, score) pairs (``utils/format_vhd.py``).

    Args:
        text: the model's answer.

    Returns:
        ``ParseResult`` whose value is ``{"timestamps": [...], "scores": [...]}`` (equal lengths,
        seconds and saliency scores) or ``None``.
    """
    # QUIRK: every "th" is replaced by a space before anything else (meant for ordinals like "82th";
    # it also turns "the" into " e" and "with" into "wi ").
    text = text.replace("th", " ")
    if "second" not in text or "score" not in text:
        return ParseResult.failure(R_VHD_NO_KEYWORD)
    if text.count("second") < 3 and text.count("score") < 3:
        timestamps, scores = _vhd_class1(text)
    else:
        timestamps, scores = _vhd_class2(text)
    if not timestamps:
        return ParseResult.failure(R_VHD_NO_TIMESTAMP)
    if len(timestamps) > 1:
        # Pad missing scores with 0.0 / drop extra ones.
        scores = (scores + [0.0] * len(timestamps))[: len(timestamps)]
    elif not scores:
        # The original only pads when there is more than one timestamp; a lone timestamp without a
        # score has nothing to pair with.
        return ParseResult.failure(R_VHD_SINGLE_NO_SCORE)
    else:
        scores = scores[:1]
    return ParseResult.success({"timestamps": timestamps, "scores": scores})


def vhd_clip_scores(timestamps: Sequence[float], scores: Sequence[float], duration: float) -> list[float]:
    """Map (timestamp, score) pairs onto QVHighlights' 2-second clips.

    ``num_clips = int(duration / 2)``; timestamps beyond ``duration`` are dropped; a timestamp ``t``
    goes to clip ``max(0, int((t - 1) / 2))``; each clip gets the mean of its scores, 0.0 if none.

    Args:
        timestamps: highlight times in seconds.
        scores: their saliency scores (paired by position).
        duration: video duration in seconds.

    Returns:
        ``num_clips`` per-clip scores (``pred_saliency_scores``).

    Raises:
        ValueError: if ``duration`` is negative or not finite.
    """
    if not math.isfinite(duration) or duration < 0:
        raise ValueError(f"duration must be a finite number of seconds >= 0, got {duration!r}")
    num_clips = int(duration / VHD_CLIP_SECONDS)
    sums = [0.0] * num_clips
    counts = [0] * num_clips
    for t, s in zip(timestamps, scores):
        if t > duration:
            continue
        clip = max(0, int((t - 1) / VHD_CLIP_SECONDS))
        if clip >= num_clips:
            # The original indexes past the end here (t == duration with an odd integer duration) and
            # crashes; such a timestamp lies in the incomplete last clip, which has no ground truth.
            continue
        sums[clip] += s
        counts[clip] += 1
    return [total / n if n else 0.0 for total, n in zip(sums, counts)]


def format_vhd_output(text: str, duration: float) -> ParseResult:
    """Parse a highlight answer into per-clip saliency scores (``pred_saliency_scores``).

    Args:
        text: the model's answer.
        duration: the video duration in seconds (from the ground truth).

    Returns:
        ``ParseResult`` whose value is the list of per-clip scores (see :func:`vhd_clip_scores`) or
        ``None`` when the answer is unparseable.

    Raises:
        ValueError: only for an invalid ``duration`` (never because of ``text``).
    """
    if not math.isfinite(duration) or duration < 0:
        raise ValueError(f"duration must be a finite number of seconds >= 0, got {duration!r}")
    parsed = parse_vhd_highlights(text)
    if not parsed.ok:
        return parsed
    return ParseResult.success(vhd_clip_scores(parsed.value["timestamps"], parsed.value["scores"], duration))


# --------------------------------------------------------------------------------------------------
# Annotations and task
# --------------------------------------------------------------------------------------------------


def read_qvhighlights_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """QVHighlights ``highlight_{split}_release.jsonl`` (JSON Lines even if named ``.json``).

    Raises:
        ValueError: naming the file and the line that is not JSON (`DataFileError`), or the record
            that lacks ``qid``, ``query`` or ``vid``.
    """
    rows = read_jsonl(path)
    for n, item in enumerate(rows, 1):
        if not isinstance(item, dict):
            raise ValueError(f"{path}: record {n} is not a JSON object")
        for key in ("qid", "query", "vid"):
            if key not in item:
                raise ValueError(f"{path}: record {n} (qid {item.get('qid')!r}) has no {key!r}")
    return rows


def _clip_seconds(clips: Sequence[int]) -> list[float]:
    """Start seconds of 2-s clips (for the per-sample table)."""
    return [k * VHD_CLIP_SECONDS for k in clips]


class HighlightTask(EvalTask):
    """QVHighlights highlight detection (the original's `eval_vhd.py`: HL-min-VeryGood mAP / HIT@1, ...)."""

    name = "vhd"

    def _rows(self) -> list[dict[str, Any]]:
        anno = self._require("anno_path")
        if str(anno).endswith(".jsonl"):
            return [{"qid": r["qid"], "query": r["query"], "video": f"{r['vid']}.mp4", "vid": r["vid"],
                     "duration": r.get("duration")} for r in read_qvhighlights_jsonl(anno)]
        return [{"qid": a["id"], "query": a["caption"], "video": a["video"], "vid": Path(a["video"]).stem,
                 "duration": a["duration"]} for a in read_tvg_annotations(anno)]

    def build_samples(self) -> list[EvalSample]:
        template = self.template()
        gt_by_qid = {r["qid"]: r for r in read_qvhighlights_jsonl(self.gt_path)} if self.cfg.gt_file else {}
        samples = []
        for r in self._rows():
            duration = r["duration"] if r["duration"] is not None else gt_by_qid.get(r["qid"], {}).get("duration")
            if duration is None:
                raise ValueError(f"VHD query {r['qid']}: no duration in {self.cfg.anno_path} nor in eval.gt_file")
            video = self.video_path(r["video"])
            prompt = self.with_asr(fill_query_prompt(template, self.cfg.dataset, r["query"]), video)
            samples.append(EvalSample(str(r["qid"]), video, prompt, self.post_check(),
                                      {"query": r["query"], "qid": r["qid"], "vid": r["vid"],
                                       "duration": float(duration)}))
        return self.limit(samples)

    def evaluate(self, entries: Sequence[dict[str, Any]], out_dir: str | Path) -> TaskOutput:
        from timechat.metrics import vhd_metrics

        out_dir = Path(out_dir)
        stats = self.parse_stats()
        gt_rows = read_qvhighlights_jsonl(self.gt_path)
        gt_by_qid = {r["qid"]: r for r in gt_rows}
        preds, saliency, rows = [], [], []
        for e in entries:
            m = e["meta"]
            duration = float(m["duration"])
            zeros = [0.0] * int(duration / VHD_CLIP_SECONDS)
            scores = zeros
            status = "video not decoded"
            if "error" not in e:
                res = count_parse(stats, format_vhd_output(e["answer"], duration), e["answer"], e["id"])
                scores = res.value if res.ok else zeros
                status = "ok" if res.ok else f"unparseable: {res.reason}"
            preds.append({"qid": m["qid"], "query": m["query"], "vid": m["vid"], "pred_saliency_scores": scores})
            g = gt_by_qid.get(m["qid"])
            per_clip = None
            if g is not None:
                per_clip = [0.0] * len(zeros)
                for cid, s in zip(g.get("relevant_clip_ids", []), g.get("saliency_scores", [])):
                    if 0 <= cid < len(per_clip):
                        per_clip[cid] = sum(s) / len(s) if isinstance(s, list) and s else float(s or 0)
                saliency.append({"label": f"{m['qid']}: {m['query']}"[:60], "gt": per_clip, "pred": scores})
            top = max(range(len(scores)), key=lambda k: scores[k]) if scores and max(scores) > 0 else None
            rows.append({"id": e["id"], "video": Path(e["video"]).name, "query": m["query"],
                         "gt": _clip_seconds([k for k, v in enumerate(per_clip or []) if v > 0]),
                         "pred": _clip_seconds([k for k, v in enumerate(scores) if v > 0]),
                         "score": (per_clip[top] if per_clip and top is not None else 0.0) if per_clip else None,
                         "score_name": "gt saliency of the top predicted clip", "status": status,
                         "duration": duration, "answer": e.get("answer", e.get("error"))})
        files = {"raw": self._raw_results(entries, out_dir),
                 "predictions": write_json(out_dir / f"fmt_{self.file_stem()}", preds)}
        invalid: list = []
        metrics = vhd_metrics(preds, gt_rows, invalid=invalid)
        uniform = [{**p, "pred_saliency_scores": [1.0] * len(p["pred_saliency_scores"])} for p in preds]
        counts = {**sample_counts(entries), "parse_failures": stats.failures, "invalid_predictions": len(invalid)}
        return TaskOutput(metrics, {self.name: stats}, counts, files, decode_failures(entries, self.cfg.max_examples),
                          saliency=spread(saliency, self.cfg.plot_samples), rows=rows,
                          baselines={"uniform saliency": vhd_metrics(uniform, gt_rows)},
                          notes=invalid_notes(invalid, self.cfg.max_examples))
