"""MVBench: question prompt, answer parser, sample building and scoring."""

from __future__ import annotations

import pytest

from tests.eval.tasks._helpers import entry, write_json
from timechat.config import EvalConfig
from timechat.constants import BENCHMARK_SYSTEM
from timechat.eval.tasks.mvbench import (
    R_QA_LETTER_RANGE,
    mvbench_answer_letter,
    mvbench_prompt,
    mvbench_question,
    MVBenchTask,
    parse_mvbench_answer,
)


def test_mvbench_prompt():
    body = "Question: What did he do?\nOptions:\n(A) sit\n(B) stand\n(C) run\nOnly give the best option."
    assert mvbench_prompt("What did he do?", ["sit", "stand", "run"]) == BENCHMARK_SYSTEM + body
    assert mvbench_prompt("What did he do?", ["sit", "stand", "run"], prepend_system=False) == body
    assert mvbench_answer_letter(["sit", "stand", "run"], "run") == "C"
    with pytest.raises(ValueError, match="not among the candidates"):
        mvbench_answer_letter(["sit"], "fly")
    with pytest.raises(ValueError, match="at least one candidate"):
        mvbench_question("q", [])


@pytest.mark.parametrize(
    "text, want",
    [
        ("(B) the man", "B"),
        ("Best option: (c)", "C"),
        ("( D ) something", "D"),
        ("The answer\n(A) later line", None),  # only the first line counts
        ("(the man) then (B)", None),  # the first (...) decides
        ("B", None),
        ("", None),
    ],
)
def test_mvbench(text, want):
    r = parse_mvbench_answer(text)
    assert r.value == want
    assert r.ok == (want is not None)


def test_mvbench_letter_range():
    assert parse_mvbench_answer("(E)", num_options=4).reason == R_QA_LETTER_RANGE
    assert parse_mvbench_answer("(D)", num_options=4).value == "D"


def test_mvbench_task(tmp_path):
    (tmp_path / "json").mkdir()
    write_json(tmp_path / "json/action_sequence.json",
           [{"video": "a.mp4", "question": "What?", "candidates": ["x", "y"], "answer": "y"},
            {"video": "b.mp4", "question": "Why?", "candidates": ["x", "y", "z"], "answer": "x"}])
    cfg = EvalConfig(task="mvbench", anno_path=str(tmp_path / "json"), videos_dir=str(tmp_path),
                     extra={"tasks": {"Action Sequence": {"json": "action_sequence.json", "prefix": "star"}}})
    task = MVBenchTask(cfg)
    samples = task.build_samples()
    assert samples[0].video == str(tmp_path / "star/a.mp4") and samples[0].meta["answer"] == "B"
    assert samples[0].prompt.endswith("(A) x\n(B) y\nOnly give the best option.")
    out = task.evaluate([entry(samples[0], "(B) y"), entry(samples[1], "hmm")], tmp_path)
    assert out.metrics["Action Sequence"] == 100.0  # unparseable -> fallback A, which is right here
    assert out.counts["fallbacks"] == 1 and out.counts["parse_failures"] == 1
