"""MVBench: question prompt, answer parser, annotations and accuracy per task.

Mirrors the original's ``benchmark/evaluate_mvbench.py`` (TIMECHAT_SPEC.md section 5.7): the
question block with :data:`timechat.constants.BENCHMARK_SYSTEM` prepended (:func:`mvbench_prompt`),
the ``(X)`` of the first output line (:func:`parse_mvbench_answer`), fallback ``A``.

Input: ``eval.anno_path`` = MVBench's ``json/`` folder; ``extra.tasks`` = ``{task name: {json: file,
prefix: video folder under videos_dir}}`` (default: every ``*.json``, prefix = its stem). Each file
is a list of ``{video, question, candidates, answer}``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Sequence

from timechat.constants import BENCHMARK_SYSTEM
from timechat.eval.inference import EvalSample
from timechat.eval.tasks.base import MultipleChoiceTask, read_json
from timechat.eval.tasks.common import R_QA_NO_LETTER, ParseResult, letter_in_range, option_letter

# --------------------------------------------------------------------------------------------------
# Prompt
# --------------------------------------------------------------------------------------------------

MVBENCH_ANSWER_INSTRUCTION = "\nOnly give the best option."


def mvbench_question(question: str, candidates: Sequence[str]) -> str:
    """MVBench question block: ``Question: {q}\\nOptions:\\n(A) {c1}\\n(B) {c2}...`` (no final newline).

    Args:
        question: the question text.
        candidates: the answer candidates in dataset order.
    """
    if not candidates:
        raise ValueError("MVBench question needs at least one candidate")
    lines = [f"Question: {question}", "Options:"]
    lines += [f"({option_letter(i)}) {c}" for i, c in enumerate(candidates)]
    return "\n".join(lines)


def mvbench_prompt(question: str, candidates: Sequence[str], *, prepend_system: bool = True) -> str:
    """Full MVBench user text as ``benchmark/evaluate_mvbench.py`` sent it.

    The original passes :data:`BENCHMARK_SYSTEM` as the system text AND prepends it to the question
    (``prepend_system=True`` reproduces that), then appends ``"\\nOnly give the best option."``.

    Args:
        question: the question text.
        candidates: the answer candidates in dataset order.
        prepend_system: prepend :data:`BENCHMARK_SYSTEM` (which ends with a newline).

    Returns:
        The user message text.
    """
    body = mvbench_question(question, candidates) + MVBENCH_ANSWER_INSTRUCTION
    return (BENCHMARK_SYSTEM + body) if prepend_system else body


def mvbench_answer_letter(candidates: Sequence[str], answer: str) -> str:
    """Ground-truth option letter of ``answer`` among ``candidates`` (MVBench stores the answer text).

    Raises:
        ValueError: if ``answer`` is not one of the candidates.
    """
    try:
        return option_letter(list(candidates).index(answer))
    except ValueError:
        raise ValueError(f"answer {answer!r} is not among the candidates {list(candidates)}") from None


# --------------------------------------------------------------------------------------------------
# Answer parser
# --------------------------------------------------------------------------------------------------

# Reasons are fixed strings (no per-sample content) so that they can be counted.
R_QA_PAREN_NOT_LETTER = "first '(...)' of the first line holds no option letter"
R_QA_LETTER_RANGE = "option letter outside the given options"

_FIRST_PAREN_RE = re.compile(r"\(([^()]*)\)")


def parse_mvbench_answer(text: str, num_options: int | None = None) -> ParseResult:
    """MVBench: the option letter inside the first ``(...)`` of the first output line.

    The original compared the content of the first parenthesised group (lower-cased) with the
    ground-truth letter, so ``(the man) ... (B)`` gives nothing usable and ``(b)`` counts as ``B``.
    When nothing is found it answered ``(a)``; that is :func:`qa_fallback`'s job here.

    Args:
        text: the model's answer.
        num_options: number of candidates; a letter beyond them is unparseable.

    Returns:
        ``ParseResult`` with the upper-case letter, or ``None``.
    """
    first_line = text.split("\n", 1)[0]
    match = _FIRST_PAREN_RE.search(first_line)
    if match is None:
        return ParseResult.failure(R_QA_NO_LETTER)
    content = match.group(1).strip()
    if len(content) != 1 or not (content.isascii() and content.isalpha()):
        return ParseResult.failure(R_QA_PAREN_NOT_LETTER)
    letter = content.upper()
    if not letter_in_range(letter, num_options):
        return ParseResult.failure(R_QA_LETTER_RANGE)
    return ParseResult.success(letter)


# --------------------------------------------------------------------------------------------------
# Task
# --------------------------------------------------------------------------------------------------


class MVBenchTask(MultipleChoiceTask):
    """MVBench: 20 tasks, `(X)` in the first output line, fallback `A` (the original's `evaluate_mvbench.py`)."""

    name = benchmark = "mvbench"

    def _task_files(self) -> dict[str, dict[str, str]]:
        tasks = self.cfg.extra.get("tasks")
        if tasks:
            return {name: {"json": spec["json"], "prefix": spec.get("prefix", "")} for name, spec in tasks.items()}
        anno = Path(self._require("anno_path"))
        return {p.stem: {"json": p.name, "prefix": p.stem} for p in sorted(anno.glob("*.json"))}

    def build_samples(self) -> list[EvalSample]:
        anno = Path(self._require("anno_path"))
        root = Path(self._require("videos_dir"))
        samples = []
        for task, spec in self._task_files().items():
            data = read_json(anno / spec["json"], f"MVBench json of task {task!r}")
            for k, q in enumerate(data):
                for key in ("video", "question", "candidates", "answer"):
                    if key not in q:
                        raise ValueError(f"{anno / spec['json']}: item {k} has no {key!r}")
                prompt = mvbench_prompt(q["question"], q["candidates"])
                samples.append(EvalSample(f"{task}/{k}", str(root / spec["prefix"] / q["video"]), prompt, None,
                                          {"task": task, "answer": mvbench_answer_letter(q["candidates"], q["answer"]),
                                           "num_options": len(q["candidates"])}))
        return self.limit(samples)

    def parse(self, e: dict[str, Any]) -> ParseResult:
        return parse_mvbench_answer(e["answer"], e["meta"].get("num_options"))

