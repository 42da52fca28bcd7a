"""Video-MME (without subtitles): question prompt, answer extraction, annotations, prediction file.

Computes what the original's ``benchmark/evaluate_videomme.py`` computes (TIMECHAT_SPEC.md section
5.7; pinned by ``reference_benchmarks``): the user text ``Question: `` + the EgoSchema-style
instruction with four options A-D (:func:`videomme_prompt`: the first option sits on the
`` Options:`` line, the options keep their own ``A. `` labels), the Chat path (96 uniform frames,
BERT timestamps), the first ``(X)`` with optional spaces inside (:func:`videomme_extract`) and the
prediction file ``video-mme.json`` = ``{key: [{question, answer, prediction, predition_ans,
duration}]}`` (indent 4; ``predition_ans`` sic), byte for byte. The original has no scorer; the
accuracy per duration computed here is ours.

QUIRKS kept by default, each with a documented correction:
* an answer without ``(X)`` (a bare ``B``, what the prompt asks for) gets a random letter,
  ``random.choice`` after ``random.seed(eval.seed)`` in sample order (`SeededFallback`, recorded in
  ``fallbacks.json`` and the report); ``eval.extra.fallback: none`` leaves them unanswered (wrong);
  the accuracy without them is reported beside;
* the prompt says "egocentric video" (copied from EgoSchema); ``eval.extra.prompt_wording: fixed``
  says "video".

Input: ``eval.anno_path`` = the original's folder holding ``video-mme.json`` (or that file):
``{key: [{videoID, question, option: [4 strings], answer, duration, ...}]}``; a list of per-video
records ``{videoID, duration, questions: [{question, options, answer}]}`` is read too (key =
``video_id`` or ``videoID``). Videos ``videos_dir/{videoID}.mp4``.
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
    decode_failures,
    read_json,
    sample_counts,
    write_json,
)
from timechat.eval.tasks.common import R_QA_NO_LETTER, ParseResult, SeededFallback, write_original_json

# --------------------------------------------------------------------------------------------------
# Prompt
# --------------------------------------------------------------------------------------------------

#: ``eval.extra.prompt_wording``: ``original`` (default, "egocentric video") or ``fixed`` ("video").
VIDEOMME_WORDINGS = {"original": "egocentric video", "fixed": "video"}


def videomme_prompt(question: str, options: Sequence[str], wording: str = "original") -> str:
    """Video-MME user text as ``evaluate_videomme.py`` sends it to ``Chat.ask``.

    ``Question: Select the best answer ... based on the egocentric video. Respond with only the
    letter (A, B, C, or D) of the correct option. \\nQuestion: {q}\\n Options: {o0}\\n{o1}\\n{o2}\\n{o3}
    \\nThe best answer is:``; the options are inserted as given (they carry ``A. `` labels), one per
    line (Video-MME always has four; another count is written the same way).

    Raises:
        ValueError: without options, or for an unknown wording.
    """
    if not options:
        raise ValueError("a Video-MME question needs options")
    if wording not in VIDEOMME_WORDINGS:
        raise ValueError(f"eval.extra.prompt_wording must be one of {sorted(VIDEOMME_WORDINGS)}, got {wording!r}")
    return (
        "Question: Select the best answer to the following multiple-choice question based on the "
        f"{VIDEOMME_WORDINGS[wording]}. Respond with only the letter (A, B, C, or D) of the correct option. \n"
        f"Question: {question}\n Options: " + "\n".join(options) + "\nThe best answer is:"
    )


# --------------------------------------------------------------------------------------------------
# Answer extraction
# --------------------------------------------------------------------------------------------------

_VIDEOMME_LETTER_RE = re.compile(r"\(\s*([A-D])\s*\)")


def videomme_extract(text: str) -> str | None:
    """The original ``extract_answer``: the letter of the first ``\\(\\s*([A-D])\\s*\\)``, None if none
    (the caller then draws the fallback). ``\\s`` includes Unicode spaces."""
    match = _VIDEOMME_LETTER_RE.search(text)
    return None if match is None else match.group(1)


def parse_videomme_answer(text: str) -> ParseResult:
    """:func:`videomme_extract` as a ``ParseResult`` (letter, or unparseable)."""
    letter = videomme_extract(text)
    return ParseResult.failure(R_QA_NO_LETTER) if letter is None else ParseResult.success(letter)


# --------------------------------------------------------------------------------------------------
# Task
# --------------------------------------------------------------------------------------------------


def read_videomme(path: str | Path) -> dict[str, list[dict[str, Any]]]:
    """``{key: [question records]}`` (the original's layout) from either supported layout."""
    data = read_json(path, "Video-MME annotations")
    if isinstance(data, dict):
        return data
    out: dict[str, list[dict[str, Any]]] = {}
    for k, rec in enumerate(data):
        vid = rec.get("videoID") or rec.get("video_id")
        if vid is None:
            raise ValueError(f"{path}: record {k} has no 'videoID'")
        for q in rec.get("questions", [rec]):
            out.setdefault(str(rec.get("video_id", vid)), []).append(
                {**q, "videoID": vid, "duration": rec.get("duration"), "option": q.get("option", q.get("options"))})
    return out


VIDEOMME_DURATIONS = ("short", "medium", "long")
"""Video-MME's splits by video length (< 2 min, 4-15 min, 30-60 min), its records' ``duration``."""


class VideoMMETask(EvalTask):
    """Video-MME without subtitles as the original ``evaluate_videomme.py`` (see the module docstring)."""

    name = benchmark = "videomme"
    extra_keys = frozenset({"fallback", "prompt_wording", "duration"})
    timestamp_tokenizer = "bert"

    def build_samples(self) -> list[EvalSample]:
        """The questions, or with ``eval.extra.duration`` (``short`` / ``medium`` / ``long``) those of that split."""
        anno = Path(self._require("anno_path"))
        path = anno / "video-mme.json" if anno.is_dir() else anno
        wording = self.cfg.extra.get("prompt_wording", "original")
        split = self.cfg.extra.get("duration")
        if split not in (None, *VIDEOMME_DURATIONS):
            raise ValueError(f"eval.extra.duration must be one of {VIDEOMME_DURATIONS} or unset, got {split!r}")
        samples = []
        for key, questions in read_videomme(path).items():
            for k, q in enumerate(questions):
                if split is not None and q.get("duration") != split:
                    continue  # sample ids keep the question's place in the file
                for field_ in ("videoID", "question", "option"):
                    if q.get(field_) is None:
                        raise ValueError(f"{path}: question {k} of {key!r} has no {field_!r}")
                samples.append(EvalSample(
                    f"{key}/{k}", self.video_path(f"{q['videoID']}.mp4"), videomme_prompt(q["question"], q["option"], wording),
                    None, {"key": key, "question": q["question"], "answer": q.get("answer"),
                           "duration": q.get("duration"), "task_type": q.get("task_type")}))
        return self.limit(samples)

    def evaluate(self, entries: Sequence[dict[str, Any]], out_dir: str | Path) -> TaskOutput:
        out_dir = Path(out_dir)
        fallback = SeededFallback("ABCD", self.cfg.seed, self.cfg.extra.get("fallback", "random"))
        stats = self.parse_stats()
        original: dict[str, list[dict[str, Any]]] = {}
        rows = []
        for e in entries:
            if "error" in e:
                continue  # the original stopped on such a video; here it is left out and counted
            m = e["meta"]
            letter = videomme_extract(e["answer"])
            stats.add(None if letter is not None else R_QA_NO_LETTER, e["id"], e["answer"])
            pred = letter if letter is not None else fallback.draw(e["id"])
            original.setdefault(m["key"], []).append({"question": m["question"], "answer": m.get("answer"),
                                                      "prediction": e["answer"], "predition_ans": pred,
                                                      "duration": m.get("duration")})
            row = {"id": e["id"], "duration": m.get("duration"), "pred": pred, "parsed": letter is not None,
                   "answer": m.get("answer")}
            if m.get("answer") is not None:
                row["correct"] = pred == m["answer"]
            rows.append(row)
        files = {"predictions": write_original_json(out_dir / "video-mme.json", original, indent=4),
                 "fallbacks": write_json(out_dir / "fallbacks.json", fallback.report())}
        scored = [r for r in rows if "correct" in r]
        metrics: dict[str, Any] = accuracy(scored, "duration")
        parsed = [r for r in scored if r["parsed"]]
        if parsed:
            metrics["Overall without fallbacks"] = 100.0 * sum(r["correct"] for r in parsed) / len(parsed)
        counts = {**sample_counts(entries), "parse_failures": stats.failures, "fallbacks": len(fallback.draws),
                  "scored": len(scored)}
        notes = ["The original writes predictions only (no scorer); the accuracy per duration is ours.",
                 f"random fallbacks ({fallback.mode}, seed {fallback.seed}): "
                 + ", ".join(f"{d['id']}={d['letter']}" for d in fallback.draws)]
        return TaskOutput(metrics, {self.benchmark: stats}, counts, files,
                          decode_failures(entries, self.cfg.max_examples), notes=notes)
