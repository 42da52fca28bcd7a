"""EgoSchema: prompt, answer parser, sample building, scoring and the submission csv."""

from __future__ import annotations

import pytest

from tests.eval.tasks._helpers import entry, write_json
from timechat.config import EvalConfig
from timechat.eval.tasks.common import qa_fallback
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


def test_egoschema_task(tmp_path):
    qs = [{"q_uid": f"u{i}", "question": f"q{i}?", **{f"option {k}": f"o{k}" for k in range(5)}} for i in range(3)]
    cfg = EvalConfig(task="egoschema", anno_path=write_json(tmp_path / "q.json", qs), videos_dir=str(tmp_path),
                     extra={"answers": write_json(tmp_path / "a.json", {"u0": 2, "u1": 0})})
    task = EgoSchemaTask(cfg)
    samples = task.build_samples()
    assert [s.id for s in samples] == ["u0", "u1"]  # subset with answers only
    assert samples[0].prompt.endswith("(E) o4\nThe best answer is:")
    out = task.evaluate([entry(samples[0], "C"), entry(samples[1], "no idea")], tmp_path)
    assert out.counts["parse_failures"] == 1 and out.counts["fallbacks"] == 1
    expect = 50.0 + (50.0 if qa_fallback("egoschema", "u1", seed=42) == "A" else 0.0)
    assert out.metrics["Overall"] == expect
    assert (tmp_path / "output.csv").read_text().splitlines()[1] == "u0,2"
