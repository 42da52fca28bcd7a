"""Video-MME (without subtitles): question prompt, answer parser, annotations, accuracy per duration.

Mirrors the original's ``benchmark/evaluate_videomme.py`` (TIMECHAT_SPEC.md section 5.7): four
options A-D (:func:`videomme_prompt`), the first ``(X)`` (:func:`parse_videomme_answer`), a seeded
fallback letter.

Input: ``eval.anno_path`` = a json list, either Video-MME's per-video records (``videoID, duration,
questions: [{question_id, question, options, answer}]``) or one record per question (``videoID,
duration, question_id, question, options, answer``); videos ``videos_dir/{videoID}.mp4``.
"""

from __future__ import annotations

import re
from typing import Any, Sequence

from timechat.eval.inference import EvalSample
from timechat.eval.tasks.base import MultipleChoiceTask, read_json
from timechat.eval.tasks.common import R_QA_NO_LETTER, ParseResult, option_letter

# --------------------------------------------------------------------------------------------------
# Prompt
# --------------------------------------------------------------------------------------------------

def videomme_prompt(question: str, options: Sequence[str]) -> str:
    """Video-MME user text (``benchmark/evaluate_videomme.py``, no subtitles).

    The original copied the EgoSchema prompt (it still says "egocentric video", kept), with four
    options A-D under an ``Options:`` header. The spec describes this prompt but does not quote it;
    this layout ("(A) ..." lines, matching the ``(X)`` answer parser) is a reconstruction to verify
    against the original script. Options are inserted as given; strip any ``A.`` prefix that the
    Video-MME annotation carries before calling if the original did so.

    Raises:
        ValueError: if there are not four options.
    """
    if len(options) != 4:
        raise ValueError(f"Video-MME questions have 4 options (A-D), got {len(options)}")
    option_lines = "\n".join(f"({option_letter(i)}) {o}" for i, o in enumerate(options))
    return (
        "Select the best answer to the following multiple-choice question based on the egocentric video. "
        "Respond with only the letter (A, B, C, or D) of the correct option. \n"
        f"Question: {question}\nOptions:\n{option_lines}\nThe best answer is:"
    )


# --------------------------------------------------------------------------------------------------
# Answer parser
# --------------------------------------------------------------------------------------------------

_VIDEOMME_LETTER_RE = re.compile(r"\(([A-D])\)")


def parse_videomme_answer(text: str) -> ParseResult:
    """Video-MME: the letter of the first ``(X)`` with X in A-D (case-sensitive).

    The original drew a random letter when none was found; see :func:`qa_fallback`.

    Returns:
        ``ParseResult`` with the letter, or ``None``.
    """
    match = _VIDEOMME_LETTER_RE.search(text)
    if match is None:
        return ParseResult.failure(R_QA_NO_LETTER)
    return ParseResult.success(match.group(1))


# --------------------------------------------------------------------------------------------------
# Task
# --------------------------------------------------------------------------------------------------

_OPTION_PREFIX = re.compile(r"^\s*\(?[A-D][.)]\s*")


class VideoMMETask(MultipleChoiceTask):
    """Video-MME without subtitles (the original's `evaluate_videomme.py`): first `(X)`; seeded fallback."""

    name = benchmark = "videomme"
    group_key = "duration"

    def build_samples(self) -> list[EvalSample]:
        anno = self._require("anno_path")
        data = read_json(anno, "Video-MME annotations")
        flat = []
        for k, rec in enumerate(data):
            vid = rec.get("videoID") or rec.get("video_id")
            if vid is None:
                raise ValueError(f"{anno}: record {k} has no 'videoID'")
            for q in rec.get("questions", [rec]):
                flat.append((vid, rec.get("duration"), q))
        samples = []
        for vid, duration, q in flat:
            for key in ("question_id", "question", "options"):
                if key not in q:
                    raise ValueError(f"{anno}: a question of video {vid} has no {key!r}")
            options = [_OPTION_PREFIX.sub("", o, count=1) for o in q["options"]]
            samples.append(EvalSample(str(q["question_id"]), self.video_path(f"{vid}.mp4"),
                                      videomme_prompt(q["question"], options), None,
                                      {"duration": duration, "answer": q.get("answer"), "task_type": q.get("task_type")}))
        return self.limit(samples)

    def parse(self, e: dict[str, Any]) -> ParseResult:
        return parse_videomme_answer(e["answer"])
