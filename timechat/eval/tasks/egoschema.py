"""EgoSchema: question prompt, answer parser, annotations, accuracy and the submission csv.

Mirrors the original's ``benchmark/evaluate_egoschema.py`` (TIMECHAT_SPEC.md section 5.7): five
options A-E (:func:`egoschema_prompt`), the first capital A-E anywhere in the answer
(:func:`parse_egoschema_answer`), a seeded fallback letter.

Input: ``eval.anno_path`` = ``questions.json`` (``[{q_uid, question, option 0..option 4}]``),
``extra.answers`` = ``subset_answers.json`` (``{q_uid: index}``), ``extra.subset_only`` (default true:
the 500-question subset, as the original's ``--eval_on_subset_answers``); videos
``videos_dir/{q_uid}.mp4``. Also writes ``output.csv`` (``q_uid,answer``) for the full-set submission.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Any, Sequence

from timechat.eval.inference import EvalSample
from timechat.eval.tasks.base import MultipleChoiceTask, read_json
from timechat.eval.tasks.common import R_QA_NO_LETTER, ParseResult

# --------------------------------------------------------------------------------------------------
# Prompt
# --------------------------------------------------------------------------------------------------

EGOSCHEMA_TEMPLATE = (
    "Select the best answer to the following multiple-choice question based on the egocentric video. "
    "Respond with only the letter (A, B, C, D, or E) of the correct option. \nQuestion: {question}\n"
    "(A) {o0}\n(B) {o1}\n(C) {o2}\n(D) {o3}\n(E) {o4}\nThe best answer is:"
)


def egoschema_prompt(question: str, options: Sequence[str]) -> str:
    """EgoSchema user text (``benchmark/evaluate_egoschema.py``); exactly five options.

    Raises:
        ValueError: if there are not five options.
    """
    if len(options) != 5:
        raise ValueError(f"EgoSchema questions have 5 options (A-E), got {len(options)}")
    return EGOSCHEMA_TEMPLATE.format(question=question, **{f"o{i}": o for i, o in enumerate(options)})


# --------------------------------------------------------------------------------------------------
# Answer parser
# --------------------------------------------------------------------------------------------------

_EGOSCHEMA_LETTER_RE = re.compile(r"[A-E]")


def parse_egoschema_answer(text: str) -> ParseResult:
    """EgoSchema: the first capital A-E character ANYWHERE in the answer.

    QUIRK kept (it defines the published 33.0): any capital counts, so "Based on the video, C" gives
    ``B``. The original drew a random letter when none was found; see :func:`qa_fallback`.

    Returns:
        ``ParseResult`` with the letter, or ``None``.
    """
    match = _EGOSCHEMA_LETTER_RE.search(text)
    if match is None:
        return ParseResult.failure(R_QA_NO_LETTER)
    return ParseResult.success(match.group(0))


# --------------------------------------------------------------------------------------------------
# Task
# --------------------------------------------------------------------------------------------------


class EgoSchemaTask(MultipleChoiceTask):
    """EgoSchema (the original's `evaluate_egoschema.py`): first capital A-E anywhere; seeded fallback."""

    name = benchmark = "egoschema"
    group_key = "split"

    def build_samples(self) -> list[EvalSample]:
        anno = self._require("anno_path")
        data = read_json(anno, "EgoSchema questions")
        answers_file = self.cfg.extra.get("answers")
        answers = {str(k): int(v) for k, v in read_json(answers_file, "EgoSchema answers").items()} if answers_file else {}
        subset_only = bool(self.cfg.extra.get("subset_only", bool(answers)))
        samples = []
        for k, q in enumerate(data):
            uid = q.get("q_uid")
            if uid is None or "question" not in q:
                raise ValueError(f"{anno}: item {k} needs 'q_uid' and 'question'")
            if subset_only and str(uid) not in answers:
                continue
            options = [q.get(f"option {i}", "") for i in range(5)]
            gt = answers.get(str(uid))
            samples.append(EvalSample(str(uid), self.video_path(f"{uid}.mp4"),
                                      egoschema_prompt(q["question"], options), None,
                                      {"split": "subset" if gt is not None else "full",
                                       "answer": "ABCDE"[gt] if gt is not None else None}))
        return self.limit(samples)

    def parse(self, e: dict[str, Any]) -> ParseResult:
        return parse_egoschema_answer(e["answer"])

    def extra_files(self, rows: list[dict[str, Any]], out_dir: Path) -> dict[str, str]:
        path = out_dir / "output.csv"
        with open(path, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["q_uid", "answer"])
            for r in rows:
                w.writerow([r["id"], "ABCDE".index(r["pred"])])
        return {"kaggle_csv": str(path)}
