"""TempCompass: question prompts, rule-based answer parser, annotations, accuracy per dimension.

Computes what the original's ``benchmark/evaluate_tempcompass.py`` computes (TIMECHAT_SPEC.md
section 5.7; pinned by ``reference_benchmarks``): the ``Question: ...`` prompt with a suffix per task
type (:func:`tempcompass_prompt`; caption matching names the labels of the question's lines), the
Chat path (96 uniform frames squashed to 224, BERT timestamps) and the prediction file per task
type, ``{task_type}.json`` = ``{vid: {dim: [{question, answer, prediction}]}}`` (indent 4), byte for
byte. The original does not score: the file is for TempCompass' own (LLM-assisted) tooling.
:func:`parse_tempcompass_answer` is a rule-based extraction of ours; its accuracy is reported beside
the file and is not the official one.

Input: ``eval.anno_path`` = folder of ``{task_type}.json`` (``{video_id: {dimension: [{question,
answer}]}}``), ``extra.task_types`` (default all four); videos ``videos_dir/{video_id}.mp4``.
``extra.preexisting_predictions``: a folder of earlier ``{task_type}.json`` files; as in the
original, videos already in them are neither run again nor written again (the file keeps them).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Sequence

from timechat.eval.inference import EvalSample
from timechat.eval.tasks.base import (
    EvalTask,
    TaskOutput,
    accuracy,
    count_parse,
    decode_failures,
    read_json,
    sample_counts,
    write_json,
)
from timechat.eval.tasks.common import (
    R_EMPTY,
    R_QA_NO_LETTER,
    ParseResult,
    letter_in_range,
    write_original_json,
)
from timechat.stats import IssueStats

# --------------------------------------------------------------------------------------------------
# Prompts
# --------------------------------------------------------------------------------------------------

TEMPCOMPASS_TASK_TYPES = ("multi-choice", "yes_no", "caption_matching", "captioning")

#: Suffix appended to ``Question: {question}`` per TempCompass task type. ``{labels}`` in the
#: caption-matching suffix is filled with the two option labels joined by " or ".
TEMPCOMPASS_SUFFIXES: dict[str, str] = {
    "multi-choice": "\nPlease directly give the best option:",
    "yes_no": "\nPlease answer yes or no:",
    "caption_matching": "\nPlease directly give the best option ({labels}):",
    "captioning": "",
}

def tempcompass_caption_labels(question: str) -> tuple[str, ...]:
    """Option labels of a TempCompass caption-matching question, as the original finds them.

    ``evaluate_tempcompass.py`` takes the text before the first ``:`` of every question line after
    the first (``Caption A: ...`` -> ``Caption A``; a line without ``:`` gives the whole line).

    Args:
        question: the question text.

    Returns:
        The labels in order (empty for a one-line question, as in the original).
    """
    return tuple(line.split(":")[0] for line in question.split("\n")[1:])


def tempcompass_prompt(question: str, task_type: str, labels: Sequence[str] | None = None) -> str:
    """TempCompass user text: ``Question: {question}{suffix}``.

    Args:
        question: the question text (caption-matching questions already contain the candidates;
            captioning questions already end with their own answer cue).
        task_type: one of :data:`TEMPCOMPASS_TASK_TYPES`.
        labels: caption-matching option labels; detected from ``question`` when omitted.

    Returns:
        The user message text.

    Raises:
        ValueError: for an unknown task type.
    """
    if task_type not in TEMPCOMPASS_SUFFIXES:
        raise ValueError(f"unknown TempCompass task type {task_type!r}; expected one of {TEMPCOMPASS_TASK_TYPES}")
    suffix = TEMPCOMPASS_SUFFIXES[task_type]
    if task_type == "caption_matching":
        labels = tuple(labels) if labels is not None else tempcompass_caption_labels(question)
        suffix = suffix.format(labels=" or ".join(labels))
    return f"Question: {question}{suffix}"


# --------------------------------------------------------------------------------------------------
# Answer parser
# --------------------------------------------------------------------------------------------------

# Reasons are fixed strings (no per-sample content) so that they can be counted.
R_QA_NO_YES_NO = "no 'yes' or 'no' found"
R_QA_NO_LABEL = "no caption-matching option label found"

_TC_LEADING_PAREN_RE = re.compile(r"^\s*\(([A-Z])\)")
_TC_LEADING_LETTER_RE = re.compile(r"^\s*([A-Z])(?:[.):]|\s*$)")
_TC_PAREN_RE = re.compile(r"\(([A-Z])\)")
_TC_CUE_RE = re.compile(r"(?i:\b(?:option|answer)\b(?:\s+is)?)\s*[:\-]?\s*\(?([A-Z])\b")
_TC_YES_NO_RE = re.compile(r"\b(yes|no)\b", re.IGNORECASE)
_TC_LABEL_RE = re.compile(r"\b(caption|sentence|option)\s+([A-Za-z]|\d+)\b", re.IGNORECASE)


def _tempcompass_multi_choice(text: str, options: Sequence[str] | None) -> ParseResult:
    num_options = len(options) if options else None
    for pattern in (_TC_LEADING_PAREN_RE, _TC_LEADING_LETTER_RE, _TC_PAREN_RE, _TC_CUE_RE):
        match = pattern.search(text)
        if match is not None:
            letter = match.group(1)
            if letter_in_range(letter, num_options):
                return ParseResult.success(letter)
    if options:
        # Last resort: the answer quotes exactly one option's text.
        lowered = text.lower()
        hits = [i for i, o in enumerate(options) if o.strip() and o.strip().lower() in lowered]
        if len(hits) == 1 and hits[0] < 26:
            return ParseResult.success(chr(ord("A") + hits[0]))
    return ParseResult.failure(R_QA_NO_LETTER)


def _tempcompass_caption_matching(text: str, labels: Sequence[str] | None) -> ParseResult:
    if labels:
        lowered = text.lower()
        found = [(lowered.find(label.lower()), label) for label in labels if label]
        found = [(pos, label) for pos, label in found if pos >= 0]
        if found:
            return ParseResult.success(min(found, key=lambda item: item[0])[1])
        return ParseResult.failure(R_QA_NO_LABEL)
    match = _TC_LABEL_RE.search(text)
    if match is None:
        return ParseResult.failure(R_QA_NO_LABEL)
    return ParseResult.success(f"{match.group(1).capitalize()} {match.group(2).upper()}")


def parse_tempcompass_answer(
    text: str,
    task_type: str,
    *,
    options: Sequence[str] | None = None,
    labels: Sequence[str] | None = None,
) -> ParseResult:
    """Rule-based TempCompass answer extraction (the original left scoring to TempCompass' tooling).

    * ``multi-choice``: a leading ``(X)`` / ``X.`` / ``X)`` / ``X:`` / lone ``X``, else the first
      ``(X)``, else ``option/answer (is) X``, else the single option whose text the answer quotes.
    * ``yes_no``: the first word ``yes`` or ``no`` (lower-cased value).
    * ``caption_matching``: the first of ``labels`` mentioned (case-insensitive), or without labels the
      first ``Caption/Sentence/Option <id>`` mention, normalised like ``Caption A``.
    * ``captioning``: free text; ok unless empty.

    Args:
        text: the model's answer.
        task_type: ``multi-choice``, ``yes_no``, ``caption_matching`` or ``captioning``.
        options: multi-choice option texts (bounds the letter range, enables text matching).
        labels: caption-matching labels, e.g. ``("Caption A", "Caption B")``.

    Returns:
        ``ParseResult`` with the letter / ``yes``/``no`` / label / stripped caption, or ``None``.

    Raises:
        ValueError: for an unknown task type (a caller error, not an answer problem).
    """
    if task_type == "multi-choice":
        return _tempcompass_multi_choice(text, options)
    if task_type == "yes_no":
        match = _TC_YES_NO_RE.search(text)
        return ParseResult.success(match.group(1).lower()) if match else ParseResult.failure(R_QA_NO_YES_NO)
    if task_type == "caption_matching":
        return _tempcompass_caption_matching(text, labels)
    if task_type == "captioning":
        stripped = text.strip()
        return ParseResult.success(stripped) if stripped else ParseResult.failure(R_EMPTY)
    raise ValueError(
        f"unknown TempCompass task type {task_type!r}; expected multi-choice, yes_no, caption_matching "
        "or captioning"
    )


# --------------------------------------------------------------------------------------------------
# Annotations and task
# --------------------------------------------------------------------------------------------------

_TC_GT_LETTER = re.compile(r"^\s*\(?([A-Z])[.):]")


def tempcompass_gt(task_type: str, answer: Any) -> str | None:
    """The comparable form of a TempCompass gt answer (letter / yes|no / label), None if unknown."""
    if answer is None:
        return None
    text = str(answer).strip()
    if task_type == "multi-choice":
        m = _TC_GT_LETTER.match(text)
        return m.group(1) if m else None
    if task_type == "yes_no":
        return text.lower() if text.lower() in ("yes", "no") else None
    if task_type == "caption_matching":
        head = text.split(":", 1)[0].strip()
        return head.lower() or None
    return None


class TempCompassTask(EvalTask):
    """TempCompass (the original's `evaluate_tempcompass.py`); rule-based accuracy where a gt answer is comparable."""

    name = benchmark = "tempcompass"
    extra_keys = frozenset({"task_types", "preexisting_predictions"})
    timestamp_tokenizer = "bert"

    def preexisting(self, task_type: str) -> dict[str, Any]:
        """The earlier prediction file of ``task_type``, or {}: ``extra.preexisting_predictions`` is a
        folder of ``{task_type}.json`` files or a mapping ``{task_type: file}``."""
        where = self.cfg.extra.get("preexisting_predictions")
        if isinstance(where, dict):
            path = Path(where[task_type]) if where.get(task_type) else None
        else:
            path = Path(where) / f"{task_type}.json" if where else None
        return read_json(path, "TempCompass earlier predictions") if path and path.is_file() else {}

    def build_samples(self) -> list[EvalSample]:
        anno = Path(self._require("anno_path"))
        types = self.cfg.extra.get("task_types") or list(TEMPCOMPASS_TASK_TYPES)
        samples = []
        for task_type in types:
            data = read_json(anno / f"{task_type}.json", f"TempCompass {task_type} questions")
            done = self.preexisting(task_type)
            for vid, dims in data.items():
                if vid in done:
                    continue
                for dim, questions in dims.items():
                    for k, q in enumerate(questions):
                        if "question" not in q:
                            raise ValueError(f"{anno / (task_type + '.json')}: {vid}/{dim}/{k} has no 'question'")
                        labels = (tempcompass_caption_labels(q["question"])
                                  if task_type == "caption_matching" else None)
                        samples.append(EvalSample(
                            f"{task_type}/{vid}/{dim}/{k}", self.video_path(f"{vid}.mp4"),
                            tempcompass_prompt(q["question"], task_type, labels), None,
                            {"task_type": task_type, "dimension": dim, "video_id": vid, "question": q["question"],
                             "answer": q.get("answer"), "labels": list(labels) if labels else None}))
        return self.limit(samples)

    def evaluate(self, entries: Sequence[dict[str, Any]], out_dir: str | Path) -> TaskOutput:
        out_dir = Path(out_dir)
        stats: dict[str, IssueStats] = {}  # per task type, in order of appearance
        rows = []
        for e in entries:
            m = e["meta"]
            tt = m["task_type"]
            key = f"{self.benchmark}/{tt}"
            pred = None
            if "error" not in e:
                parsed = parse_tempcompass_answer(e["answer"], tt, labels=m.get("labels"))
                res = count_parse(stats.setdefault(key, self.parse_stats()), parsed, e["answer"], e["id"])
                pred = res.value if res.ok else None
            row = {"id": e["id"], "task_type": tt, "dimension": m["dimension"], "video_id": m["video_id"],
                   "question": m["question"], "output": e.get("answer"), "pred": pred, "answer": m.get("answer")}
            gt = tempcompass_gt(tt, m.get("answer"))
            if gt is not None:
                norm = pred.lower() if isinstance(pred, str) and tt == "caption_matching" else pred
                row["correct"] = norm == gt
            rows.append(row)
        files = {"predictions": write_json(out_dir / "fmt_tempcompass_predictions.json", rows)}
        originals: dict[str, dict[str, Any]] = {}
        for e in entries:
            m = e["meta"]
            tt = m["task_type"]
            if tt not in originals:
                originals[tt] = self.preexisting(tt)
            if "error" in e:
                continue  # the original stopped on such a video; here it is left out and counted
            dims = originals[tt].setdefault(m["video_id"], {})
            dims.setdefault(m["dimension"], []).append(
                {"question": m["question"], "answer": m.get("answer"), "prediction": e["answer"]})
        for tt, obj in originals.items():
            files[tt] = write_original_json(out_dir / f"{tt}.json", obj, indent=4)
        metrics: dict[str, Any] = {}
        for tt in sorted({r["task_type"] for r in rows}):
            scored = [r for r in rows if r["task_type"] == tt and "correct" in r]
            for k, v in accuracy(scored, "dimension").items():
                metrics[f"{tt}/{k}"] = v
        counts = {**sample_counts(entries), "parse_failures": sum(s.failures for s in stats.values()),
                  "scored": sum(1 for r in rows if "correct" in r)}
        notes = ["TempCompass accuracy here is rule-based; the official scorer is LLM-assisted. "
                 "Captioning answers are predictions only."]
        return TaskOutput(metrics, stats, counts, files, decode_failures(entries, self.cfg.max_examples), notes=notes)
