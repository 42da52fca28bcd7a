"""Video-MME: prompt, answer parser, sample building and scoring."""

from __future__ import annotations

import pytest

from tests.eval.tasks._helpers import entry, write_json
from timechat.config import EvalConfig
from timechat.eval.tasks.videomme import parse_videomme_answer, videomme_prompt, VideoMMETask


def test_videomme_prompt():
    out = videomme_prompt("How many?", ["one", "two", "three", "four"])
    assert "based on the egocentric video" in out  # the original's copy-paste, kept
    assert "\nQuestion: How many?\nOptions:\n(A) one\n(B) two\n(C) three\n(D) four\nThe best answer is:" in out
    with pytest.raises(ValueError, match="4 options"):
        videomme_prompt("q", ["a", "b", "c", "d", "e"])


@pytest.mark.parametrize(
    "text, want", [("The answer is (C).", "C"), ("(E) (B)", "B"), ("(c) lower", None), ("B. cats", None)]
)
def test_videomme(text, want):
    assert parse_videomme_answer(text).value == want


def test_videomme_task(tmp_path):
    data = [{"videoID": "v1", "duration": "short", "questions": [
        {"question_id": "001-1", "question": "what?", "options": ["A. x", "B. y", "C. z", "D. w"], "answer": "B"},
        {"question_id": "001-2", "question": "why?", "options": ["A. x", "B. y", "C. z", "D. w"], "answer": "D"}]}]
    cfg = EvalConfig(task="videomme", anno_path=write_json(tmp_path / "mme.json", data), videos_dir=str(tmp_path))
    task = VideoMMETask(cfg)
    samples = task.build_samples()
    assert "(A) x\n(B) y" in samples[0].prompt
    out = task.evaluate([entry(samples[0], "(B) y"), entry(samples[1], "(A)")], tmp_path)
    assert out.metrics == {"short": 50.0, "Avg": 50.0, "Overall": 50.0} and out.counts["parse_failures"] == 0
