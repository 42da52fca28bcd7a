"""EgoSchema: prompt, answer parser, sample building, scoring and the submission csv."""

from __future__ import annotations

import json
import random

import pytest

from tests.eval.tasks._helpers import entry, write_json
from timechat.config import EvalConfig
from timechat.eval.tasks.egoschema import egoschema_prompt, EgoSchemaTask, parse_egoschema_answer


def test_egoschema_prompt():
    out = egoschema_prompt("What is c doing?", ["a0", "a1", "a2", "a3", "a4"])
    assert out == (
        "Select the best answer to the following multiple-choice question based on the egocentric video. "
        "Respond with only the letter (A, B, C, D, or E) of the correct option. \nQuestion: What is c "
        "doing?\n(A) a0\n(B) a1\n(C) a2\n(D) a3\n(E) a4\nThe best answer is:"
    )
    with pytest.raises(ValueError, match="5 options"):
        egoschema_prompt("q", ["a", "b"])


@pytest.mark.parametrize(
    "text, want",
    [("The best answer is: C", "C"), ("Based on the video, C", "B"), ("c. picks up", None), ("e", None)],
)
def test_egoschema_first_capital_anywhere(text, want):
    assert parse_egoschema_answer(text).value == want


def _questions(n):
    return [{"q_uid": f"u{i}", "google_drive_id": f"g{i}", "question": f"q{i}?",
             **{f"option {k}": f"o{k}" for k in range(5)}} for i in range(n)]


def test_egoschema_task(tmp_path):
    cfg = EvalConfig(task="egoschema", anno_path=write_json(tmp_path / "q.json", _questions(4)), videos_dir=str(tmp_path),
                     extra={"answers": write_json(tmp_path / "a.json", {"u0": 2, "u1": 0, "u3": 1})})
    task = EgoSchemaTask(cfg)
    samples = task.build_samples()
    assert [s.id for s in samples] == ["u0", "u1", "u3"]  # subset with answers only
    assert samples[0].prompt.endswith("(E) o4\nThe best answer is:")
    entries = [entry(samples[0], "C"), entry(samples[1], "no idea"), entry(samples[2], "Answer: B")]
    out = task.evaluate(entries, tmp_path)
    assert out.counts["parse_failures"] == 1 and out.counts["fallbacks"] == 1
    pred = json.loads((tmp_path / "pred.json").read_text())
    assert pred["u1"]["answer"] == "ABCDE".index(random.Random(42).choice("ABCDE"))  # the first draw after seed 42
    assert pred["u3"]["answer"] == 0  # "Answer: B": the capital A of "Answer" comes first
    assert out.metrics["accuracy"] == (1 + (pred["u1"]["answer"] == 0)) / 3
    assert (tmp_path / "output.csv").read_bytes().splitlines()[1] == b"u0,2"
    again = task.evaluate(entries, tmp_path / "again")  # reproducible: the same files
    assert (tmp_path / "again/pred.json").read_bytes() == (tmp_path / "pred.json").read_bytes()
    assert json.loads((tmp_path / "fallbacks.json").read_text())["draws"] == [{"id": "u1", "letter": "A"}]
    assert again.counts == out.counts


def test_egoschema_folder_preexisting_and_no_fallback(tmp_path):
    (tmp_path / "anno").mkdir()
    write_json(tmp_path / "anno/questions.json", _questions(3))
    write_json(tmp_path / "anno/subset_answers.json", {"u0": 0, "u1": 1, "u2": 2})
    old = write_json(tmp_path / "old_pred.json", {"u1": {"prompt": "p", "output": "B", "answer": 1}})
    cfg = EvalConfig(task="egoschema", anno_path=str(tmp_path / "anno"), videos_dir=str(tmp_path),
                     extra={"preexisting_predictions": old, "fallback": "none"})
    task = EgoSchemaTask(cfg)
    samples = task.build_samples()
    assert [s.id for s in samples] == ["u0", "u2"]  # u1 is already predicted: neither run nor counted
    out = task.evaluate([entry(samples[0], "A"), entry(samples[1], "nothing")], tmp_path)
    pred = json.loads((tmp_path / "pred.json").read_text())
    assert list(pred) == ["u1", "u0", "u2"] and pred["u2"]["answer"] is None
    assert out.metrics["accuracy"] == 0.5 and out.metrics["Accuracy without fallbacks (%)"] == 100.0
