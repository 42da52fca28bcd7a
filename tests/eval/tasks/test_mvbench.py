"""MVBench: question prompt, answer parser, sample building and scoring."""

from __future__ import annotations

import json

import pytest

from tests.eval.tasks._helpers import entry, write_json
from timechat.config import EvalConfig
from timechat.constants import BENCHMARK_SYSTEM
from timechat.eval.tasks.mvbench import (
    R_QA_LETTER_RANGE,
    mvbench_answer_letter,
    mvbench_check_ans,
    mvbench_first_line,
    mvbench_gt_answer,
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
               [{"video": "a.mp4", "question": "What?", "candidates": ["x", "y"], "answer": "y", "start": 0.5, "end": 2},
                {"video": "b.mp4", "question": "Why?", "candidates": ["x", "y", "z"], "answer": "x", "start": 0, "end": 1}])
    write_json(tmp_path / "json/scene.json",
               [{"video": "c.mp4", "question": "Where?", "candidates": ["in", "out"], "answer": "out"}])
    cfg = EvalConfig(task="mvbench", anno_path=str(tmp_path / "json"), videos_dir=str(tmp_path),
                     extra={"tasks": {"Action Sequence": {"json": "action_sequence.json", "prefix": "star/", "bound": True},
                                      "Scene": {"json": "scene.json", "prefix": "scene/"}}})
    task = MVBenchTask(cfg)
    samples = task.build_samples()
    assert samples[0].video == str(tmp_path / "star/a.mp4") and samples[0].meta["gt"] == "(B) y"
    assert samples[0].meta["loader"] == {"kind": "mvbench", "bound": [0.5, 2], "data_type": "video"}
    assert samples[2].meta["loader"]["bound"] is None
    assert samples[0].prompt.endswith("(A) x\n(B) y\nOnly give the best option.")
    entries = [entry(samples[0], "(B) y"), entry(samples[1], "hmm"), entry(samples[2], "(B) out\n(A)")]
    out = task.evaluate(entries, tmp_path)
    # "hmm" has no "(": judged as (a), right here; Scene 100 -> pooled 100, mean 100
    assert out.metrics["Action Sequence"] == 100.0 and out.metrics["Avg"] == 100.0
    assert out.counts["judged_as_A_without_paren"] == 1
    assert (tmp_path / "upload_leaderboard.json").read_text() == '{"Action Sequence": 100.0, "Scene": 100.0, "Avg": 100.0}'


def test_mvbench_pooled_vs_mean_and_skips(tmp_path):
    (tmp_path / "json").mkdir()
    write_json(tmp_path / "json/t.json", [{"video": f"{i}.mp4", "question": "q", "candidates": ["x", "y"], "answer": "y"}
                                          for i in range(4)])
    write_json(tmp_path / "json/u.json", [{"video": "u.mp4", "question": "q", "candidates": ["x", "y"], "answer": "y"}])
    extra = {"tasks": {"T": {"json": "t.json"}, "U": {"json": "u.json"}}}
    task = MVBenchTask(EvalConfig(task="mvbench", anno_path=str(tmp_path / "json"), videos_dir=str(tmp_path), extra=extra))
    s = task.build_samples()
    entries = [entry(s[0], "(B)"), entry(s[1], "(B)"), entry(s[2], "(B)"), entry(s[3], error="bad"), entry(s[4], "(A)")]
    out = task.evaluate(entries, tmp_path / "pooled")
    assert out.metrics["Avg"] == 75.0 and out.metrics["Mean of tasks"] == 50.0  # 3 of 4 pooled; (100 + 0) / 2
    assert out.counts["skipped"] == 1  # the failed sample is not counted, as in the original
    acc = json.loads((tmp_path / "pooled/test.json").read_text())["acc_dict"]
    assert acc == {"T": [3, 3], "U": [0, 1]}
    mean_task = MVBenchTask(EvalConfig(task="mvbench", anno_path=str(tmp_path / "json"), videos_dir=str(tmp_path),
                                       extra={**extra, "avg": "mean"}))
    assert mean_task.evaluate(entries, tmp_path / "mean").metrics["Avg"] == 50.0


@pytest.mark.parametrize("pred, gt, want", [
    ("(B) beta", "(B) beta", True), ("B", "(A) alpha", True), ("", "(A) a", True), ("(B.)", "(B) b", True),
    ("(.C)", "(C) c", True), ("( B )", "(B) b", False), ("((C))", "(C) c", False), ("(B beta", "(B) b", False),
    ("\uff08B\uff09", "(A) a", True), ("I think (C), not (A).", "(C) c", True),
])
def test_mvbench_check_ans(pred, gt, want):
    assert mvbench_check_ans(pred, gt) is want


def test_mvbench_gt_and_first_line():
    assert mvbench_gt_answer(["x", "y", "x"], "x") == "(C) x"  # the last equal candidate
    assert mvbench_gt_answer(["x"], "z") == "(@) z"
    assert mvbench_first_line("  (B) y\nbecause") == "(B) y"
    assert mvbench_question("q", ["a ", "b  "]) == "Question: q\nOptions:\n(A) a \n(B) b"
