"""Temporal video grounding (Charades-STA): prompts, answer parser, annotations, scoring.

Mirrors the original's TVG evaluation (TIMECHAT_SPEC.md sections 5.4, 5.5, 5.6): the prompt files
``tvg_*.txt`` (:data:`TVG_PROMPTS`), ``utils/format_tvg.py`` ``extract_time``
(:func:`extract_time`) and ``eval_tvg.py`` (R1@0.3/0.5/0.7, plus mIoU, via
`timechat.metrics.tvg_metrics`).

Input: ``eval.anno_path`` = ``{split}.caption_coco_format.json`` (``annotations: [{image_id,
caption, timestamp, id}]``), one sample per query, id = ``str(id)``, prompt
``template.format(dataset, caption.strip('.'))``.
"""

from __future__ import annotations

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
    NUM_RE,
    PAIR_RE,
    R_EMPTY,
    ParseResult,
    clock_seconds,
    fill_query_prompt,
    finite_pairs,
    read_coco_annotations,
    to_float,
    video_name,
)

# --------------------------------------------------------------------------------------------------
# Prompts (spec 5.4): the first line of each prompt file, stripped
# --------------------------------------------------------------------------------------------------

TVG_PROMPTS: dict[str, str] = {
    # Charades zero-shot TVG; the prompt eval.sh uses. Two placeholders: dataset name, query.
    # "seonds" is the original's typo.
    "tvg_description_zeroshot": (
        "You are given a video from the {} dataset. Please find the visual event described by a sentence "
        "in the video, determining its starting and ending times. The format should be: 'The event "
        "happens in the start time - end time'. For example, The event 'person turn a light on' happens "
        "in the 24.3 - 30.4 seonds. Now I will give you the textual sentence: {}. Please return its start "
        "time and end time."
    ),
    # BUG kept on purpose: ONE placeholder. `prompt.format(dataset, query)` fills it with the DATASET
    # name and silently drops the query, so the model is never told what to ground. The file's first
    # line ends with a space, removed by the strip. format_task_prompt() refuses this template unless
    # asked for the bug explicitly; use "tvg_description_fixed" for a prompt that carries the query.
    "tvg_description": (
        "Localize the visual content described by the given textual query {} in the video, and output "
        "the start and end timestamps in seconds. The output format of the predicted timestamp should be "
        "like: 'start - end seconds'. A specific example is : 20.8 - 30.0 seconds' ."
    ),
    # Not in the original: tvg_description with the placeholder bound to the query ({1} = the second
    # argument of format(dataset, query)); the wording is otherwise unchanged.
    "tvg_description_fixed": (
        "Localize the visual content described by the given textual query {1} in the video, and output "
        "the start and end timestamps in seconds. The output format of the predicted timestamp should be "
        "like: 'start - end seconds'. A specific example is : 20.8 - 30.0 seconds' ."
    ),
    "tvg_post_check": (
        "Be careful about your output format, you should provide start time and end time for the visual "
        "event. The format should be: 'The event happens in the start time - end time'. For example, The "
        "event 'person turn a light on' happens in the 24.3 - 30.4 seonds."
    ),
}

# --------------------------------------------------------------------------------------------------
# Answer parser (utils/format_tvg.py)
# --------------------------------------------------------------------------------------------------

# Reasons are fixed strings (no per-sample content) so that they can be counted.
R_TVG_NO_PAIR = "no start/end pair found"

_TVG_KEYWORDS = ("starts", "ends", "happens in", "start time", "end time", "start", "end", "happen")
_TVG_SENTENCE_SPLIT_RE = re.compile(r"[!?\n]")


def _pair_consecutive(values: list[float]) -> list[tuple[float, float]]:
    """(v0, v1), (v2, v3), ...; an odd last value is dropped."""
    return [(values[i], values[i + 1]) for i in range(0, len(values) - 1, 2)]


def _tvg_keyword_pairs(paragraph: str) -> list[tuple[float, float]]:
    """Pairs from the first time value of each sentence that mentions a start/end keyword."""
    # Sentences are split on '!', '?' and newlines only ('.' would break decimals).
    sentences = [s for s in _TVG_SENTENCE_SPLIT_RE.split(paragraph) if any(k in s for k in _TVG_KEYWORDS)]
    # QUIRK: only the FIRST number of each sentence counts and numbers are paired across sentences,
    # so "starts at 5.5 seconds and ends at 9 seconds" (one sentence) yields no pair at all.
    # Interpretation: digits that belong to an H:MM:SS / M:SS time are not plain numbers here, so that
    # the clock-time branch below is reachable.
    firsts = []
    for sentence in sentences:
        numbers = [t for t in (to_float(n) for n in NUM_RE.findall(CLOCK_RE.sub(" ", sentence))) if t is not None]
        if numbers:
            firsts.append(numbers[0])
    pairs = _pair_consecutive(firsts)
    if pairs:
        return pairs
    clock_firsts = []
    for sentence in sentences:
        for match in CLOCK_RE.finditer(sentence):
            seconds = clock_seconds(match)
            if seconds is not None:
                clock_firsts.append(seconds)
                break
    return _pair_consecutive(clock_firsts)


def extract_time(text: str) -> ParseResult:
    """Parse a temporal-grounding answer into one ``[start, end]`` (``utils/format_tvg.py``).

    All ``A - B`` pairs of the lower-cased answer; if none, the first number of each sentence that
    mentions a start/end keyword, paired consecutively; if none, the same with clock times. Reversed
    pairs are swapped and only the first pair is kept.

    Args:
        text: the model's answer.

    Returns:
        ``ParseResult`` whose value is ``[start, end]`` (floats, start <= end) or ``None``. The
        original's per-query record is ``{"timestamp": [value] if ok else [], "query", "vid"}``.
    """
    if not text.strip():
        return ParseResult.failure(R_EMPTY)
    paragraph = text.lower()
    # QUIRK: the original meant to delete the prompt's example ("24.3 - 30.4 seonds") from the answer
    # first, but that replacement is a no-op; an echoed example is parsed like any other pair.
    pairs = [p for p in finite_pairs(PAIR_RE.findall(paragraph)) if p is not None]
    if not pairs:
        pairs = _tvg_keyword_pairs(paragraph)
    if not pairs:
        return ParseResult.failure(R_TVG_NO_PAIR)
    # QUIRK: only the first pair is used, however many the answer gives.
    start, end = pairs[0]
    if end < start:
        start, end = end, start
    return ParseResult.success([start, end])


# --------------------------------------------------------------------------------------------------
# Annotations and task
# --------------------------------------------------------------------------------------------------


def read_tvg_annotations(path: str | Path) -> list[dict[str, Any]]:
    """Per-query annotations of a COCO caption file: ``{video, image_id, caption, timestamp, id, duration}``.

    The format of Charades-STA, also accepted for QVHighlights (`highlights.HighlightTask`);
    ``video`` is the file name of ``image_id``.

    Raises:
        ValueError: naming the file and the annotation that lacks ``image_id``, ``caption`` or ``id``.
    """
    out = []
    for k, a in enumerate(read_coco_annotations(path)):
        for key in ("image_id", "caption", "id"):
            if key not in a:
                raise ValueError(f"{path}: annotation {k} has no {key!r}")
        out.append({"video": video_name(a["image_id"]), "image_id": a["image_id"], "caption": a["caption"],
                    "timestamp": a.get("timestamp"), "id": a["id"], "duration": a.get("duration")})
    return out


def video_duration(video: str, cache: dict[str, float | None]) -> float | None:
    """Seconds of `video` read from the file (frames / fps, no decoding), None when it cannot be read.

    For the report's video-end marker and the whole-video baseline when the annotation has no duration.
    """
    if video not in cache:
        from timechat.data.video import probe_video

        try:
            vlen, fps, _ = probe_video(video)
            cache[video] = vlen / fps if fps > 0 else None
        except Exception:  # noqa: BLE001 - a missing or undecodable video is reported elsewhere
            cache[video] = None
    return cache[video]


def tvg_baselines(rows: Sequence[dict[str, Any]], gt: Any, sample: bool) -> dict[str, dict[str, float]]:
    """Trivial predictions scored like the model: every query answered with the mean ground-truth span
    of the evaluated queries, and with the whole video [0, duration]."""
    from timechat.metrics import tvg_metrics

    spans = [r["gt"] for r in rows if r.get("gt")]
    if not spans:
        return {}
    mean = [sum(s[0] for s in spans) / len(spans), sum(s[1] for s in spans) / len(spans)]
    out = {"mean span": tvg_metrics({r["id"]: {"timestamp": [mean]} for r in rows}, gt, sample=sample)}
    if any(r.get("duration") for r in rows):  # a video of unknown length (undecodable) is a miss
        out["whole video"] = tvg_metrics({r["id"]: {"timestamp": [[0.0, float(r["duration"])]] if r.get("duration")
                                                    else []} for r in rows}, gt, sample=sample)
    return out


class GroundingTask(EvalTask):
    """Charades-STA temporal grounding (the original's `eval_tvg.py`: R1@0.3/0.5/0.7, plus mIoU)."""

    name = "tvg"

    def build_samples(self) -> list[EvalSample]:
        anno = self._require("anno_path")
        template = self.template()
        samples = []
        for a in read_tvg_annotations(anno):
            video = self.video_path(a["video"])
            prompt = self.with_asr(fill_query_prompt(template, self.cfg.dataset, a["caption"]), video)
            samples.append(EvalSample(str(a["id"]), video, prompt, self.post_check(),
                                      {"query": a["caption"], "qid": a["id"], "vid": Path(video).stem,
                                       "gt": a["timestamp"], "duration": a["duration"]}))
        return self.limit(samples)

    def evaluate(self, entries: Sequence[dict[str, Any]], out_dir: str | Path) -> TaskOutput:
        from timechat.metrics import tvg_metrics

        from timechat.metrics.tvg import tvg_iou

        out_dir = Path(out_dir)
        stats = self.parse_stats()
        preds, timelines, rows = {}, [], []
        durations: dict[str, float | None] = {}
        for e in entries:
            window: list[list[float]] = []
            status = "video not decoded"
            if "error" not in e:
                res = count_parse(stats, extract_time(e["answer"]), e["answer"], e["id"])
                window = [res.value] if res.ok else []
                status = "ok" if res.ok else f"unparseable: {res.reason}"
            m = e["meta"]
            preds[e["id"]] = {"timestamp": window, "query": m.get("query"), "vid": m.get("vid")}
            duration = m.get("duration") or video_duration(e["video"], durations)
            timelines.append({"label": f"{e['id']}: {m.get('query', '')}"[:60], "duration": duration,
                              "gt": [m["gt"]] if m.get("gt") else [], "pred": window, "video": e["video"]})
            iou = tvg_iou(m["gt"], window[0]) if window and m.get("gt") else (0.0 if m.get("gt") else None)
            rows.append({"id": e["id"], "video": Path(e["video"]).name, "query": m.get("query"), "gt": m.get("gt"),
                         "pred": window[0] if window else None, "score": iou, "score_name": "IoU",
                         "status": status, "duration": duration, "answer": e.get("answer", e.get("error"))})
        files = {"raw": self._raw_results(entries, out_dir),
                 "predictions": write_json(out_dir / f"fmt_{self.file_stem()}", preds)}
        gt = read_json(self.gt_path, "TVG gt file")
        sample = self.cfg.max_samples is not None
        invalid: list = []
        metrics = tvg_metrics(preds, gt, sample=sample, invalid=invalid)
        counts = {**sample_counts(entries), "parse_failures": stats.failures, "invalid_predictions": len(invalid)}
        return TaskOutput(metrics, {self.name: stats}, counts, files, decode_failures(entries, self.cfg.max_examples),
                          timelines=timelines, rows=rows, baselines=tvg_baselines(rows, gt, sample),
                          notes=invalid_notes(invalid, self.cfg.max_examples))
