"""EgoSchema: question prompt, answer extraction, annotations, accuracy, pred.json and output.csv.

Computes what the original's ``benchmark/evaluate_egoschema.py`` computes (TIMECHAT_SPEC.md section
5.7; pinned by ``reference_benchmarks``): five options A-E (:func:`egoschema_prompt`; the record's 8
values unpacked by position, :func:`egoschema_record`), the Chat path (96 uniform frames, BERT
timestamps), the first capital A-E ANYWHERE in the answer (:func:`egoschema_extract`: ``Answer: D``
gives A), the subset accuracy (a fraction, printed as ``Accuracy: 0.6``) and the files
``pred.json`` (``{q_uid: {prompt, output, answer}}``, indent 4) and ``output.csv`` (``q_uid,answer``).

QUIRK kept by default: an answer without a capital A-E gets a random letter, ``random.choice`` after
``random.seed(eval.seed)`` in sample order (`SeededFallback`; every draw is recorded in
``fallbacks.json`` and the report). ``eval.extra.fallback: none`` scores them wrong instead; the
accuracy without the fallback samples is reported beside.

Input: ``eval.anno_path`` = the original's folder (``questions.json`` + ``subset_answers.json``) or
the questions file with ``extra.answers`` = the answers file; ``extra.subset_only`` (default: true
when answers exist, as ``--eval_on_subset_answers``); videos ``videos_dir/{q_uid}.mp4``.
``extra.preexisting_predictions``: an earlier ``pred.json``; its q_uids are neither run nor counted
and stay first in the new file, as in the original.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Any, Sequence

from timechat.eval.inference import EvalSample
from timechat.eval.tasks.base import EvalTask, TaskOutput, decode_failures, read_json, sample_counts, write_json
from timechat.eval.tasks.common import R_QA_NO_LETTER, ParseResult, SeededFallback, write_original_json

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
    ``B``. The original drew a random letter when none was found; see :class:`SeededFallback`.

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


def egoschema_extract(text: str) -> int | None:
    """The original ``extract_answer``: index 0-4 of the first capital A-E anywhere, None if there is none
    (the caller then draws the fallback)."""
    match = _EGOSCHEMA_LETTER_RE.search(text)
    return None if match is None else "ABCDE".index(match.group(0))


def egoschema_record(item: dict[str, Any]) -> tuple[str, str, list[str]]:
    """``(q_uid, question, 5 options)`` of a questions.json record, unpacked by POSITION as the original
    does (``q_uid, google_drive_id, question, option 0..4``), whatever the keys are called."""
    values = list(item.values())
    if len(values) != 8:
        raise ValueError(f"EgoSchema question record needs 8 values (q_uid, google_drive_id, question, "
                         f"option 0..4), got {len(values)}: {list(item)}")
    return str(values[0]), values[2], list(values[3:8])


class EgoSchemaTask(EvalTask):
    """EgoSchema as the original ``evaluate_egoschema.py`` computes it (see the module docstring)."""

    name = benchmark = "egoschema"
    extra_keys = frozenset({"answers", "subset_only", "fallback", "preexisting_predictions"})
    timestamp_tokenizer = "bert"

    def _files(self) -> tuple[Path, Path | None]:
        anno = Path(self._require("anno_path"))
        if anno.is_dir():  # the original's --anno_path folder
            return anno / "questions.json", anno / "subset_answers.json"
        answers = self.cfg.extra.get("answers")
        return anno, Path(answers) if answers else None

    def answers(self) -> dict[str, int]:
        _, path = self._files()
        return ({str(k): int(v) for k, v in read_json(path, "EgoSchema subset answers").items()}
                if path is not None and path.is_file() else {})

    def preexisting(self) -> dict[str, Any]:
        path = self.cfg.extra.get("preexisting_predictions")
        return read_json(path, "EgoSchema earlier pred.json") if path else {}

    def build_samples(self) -> list[EvalSample]:
        questions, _ = self._files()
        data = read_json(questions, "EgoSchema questions")
        answers = self.answers()
        subset_only = bool(self.cfg.extra.get("subset_only", bool(answers)))
        done = self.preexisting()
        samples = []
        for item in data:
            uid, question, options = egoschema_record(item)
            if subset_only and uid not in answers:
                continue  # never opened, no output row (the original's --eval_on_subset_answers)
            if uid in done:
                continue  # already in pred.json: neither run again nor counted
            gt = answers.get(uid)
            samples.append(EvalSample(uid, self.video_path(f"{uid}.mp4"), egoschema_prompt(question, options), None,
                                      {"split": "subset" if gt is not None else "full", "answer": gt}))
        return self.limit(samples)

    def parse(self, e: dict[str, Any]) -> ParseResult:
        return parse_egoschema_answer(e["answer"])

    def evaluate(self, entries: Sequence[dict[str, Any]], out_dir: str | Path) -> TaskOutput:
        out_dir = Path(out_dir)
        fallback = SeededFallback("ABCDE", self.cfg.seed, self.cfg.extra.get("fallback", "random"))
        stats = self.parse_stats()
        pred = dict(self.preexisting())
        correct = total = correct_parsed = total_parsed = 0
        for e in entries:
            if "error" in e:
                continue  # the original stopped on such a video; here it is left out and counted
            idx = egoschema_extract(e["answer"])
            stats.add(None if idx is not None else R_QA_NO_LETTER, e["id"], e["answer"])
            if idx is None:
                letter = fallback.draw(e["id"])
                value = "ABCDE".index(letter) if letter is not None else None
            else:
                value = idx
            pred[e["id"]] = {"prompt": e["prompt"], "output": e["answer"], "answer": value}
            gt = e["meta"].get("answer")
            if gt is not None:
                total += 1
                correct += value == gt
                if idx is not None:
                    total_parsed += 1
                    correct_parsed += value == gt
        files = {"pred": write_original_json(out_dir / "pred.json", pred, indent=4)}
        path = out_dir / "output.csv"
        with open(path, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["q_uid", "answer"])
            for uid, v in pred.items():
                w.writerow([uid, v["answer"]])
        files["output_csv"] = str(path)
        files["fallbacks"] = write_json(out_dir / "fallbacks.json", fallback.report())
        metrics: dict[str, Any] = {}
        notes = []
        if total:
            metrics.update(accuracy=correct / total, **{"Accuracy (%)": 100.0 * correct / total})
            notes.append(f"Accuracy: {correct / total}")
            if total_parsed:
                metrics["Accuracy without fallbacks (%)"] = 100.0 * correct_parsed / total_parsed
        counts = {**sample_counts(entries), "parse_failures": stats.failures, "fallbacks": len(fallback.draws),
                  "scored": total}
        notes.append(f"random fallbacks ({fallback.mode}, seed {fallback.seed}): "
                     + ", ".join(f"{d['id']}={d['letter']}" for d in fallback.draws))
        return TaskOutput(metrics, {self.benchmark: stats}, counts, files,
                          decode_failures(entries, self.cfg.max_examples), notes=notes)
