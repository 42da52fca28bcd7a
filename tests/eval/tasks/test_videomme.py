"""Video-MME: prompt, answer extraction, sample building, prediction file and scoring."""

from __future__ import annotations

import json
import random

import pytest

from tests.eval.tasks._helpers import entry, write_json
from timechat.config import EvalConfig
from timechat.eval.tasks.videomme import parse_videomme_answer, videomme_prompt, VideoMMETask


def test_videomme_prompt():
    out = videomme_prompt("How many?", ["A. one", "B. two", "C. three", "D. four"])
    assert out.startswith("Question: Select the best answer") and "based on the egocentric video" in out
    assert out.endswith("\nQuestion: How many?\n Options: A. one\nB. two\nC. three\nD. four\nThe best answer is:")
    assert "based on the video." in videomme_prompt("q", ["a", "b", "c", "d"], wording="fixed")
    with pytest.raises(ValueError, match="needs options"):
        videomme_prompt("q", [])


@pytest.mark.parametrize(
    "text, want", [("The answer is (C).", "C"), ("(E) (B)", "B"), ("( C )", "C"), ("(c) lower", None), ("B. cats", None)]
)
def test_videomme(text, want):
    assert parse_videomme_answer(text).value == want


def test_videomme_task(tmp_path):
    q = {"video_id": "001", "duration": "short", "videoID": "v1", "question": "what?",
         "option": ["A. x", "B. y", "C. z", "D. w"], "answer": "B"}
    data = {"001": [q, {**q, "question": "why?", "answer": "A"}, {**q, "question": "how?", "answer": "C"}]}
    cfg = EvalConfig(task="videomme", anno_path=write_json(tmp_path / "mme.json", data), videos_dir=str(tmp_path))
    task = VideoMMETask(cfg)
    samples = task.build_samples()
    assert [s.id for s in samples] == ["001/0", "001/1", "001/2"] and "Options: A. x\nB. y" in samples[0].prompt
    entries = [entry(samples[0], "(B) y"), entry(samples[1], "A"), entry(samples[2], "B")]
    out = task.evaluate(entries, tmp_path)
    draws = random.Random(42)
    want = [draws.choice("ABCD"), draws.choice("ABCD")]
    saved = json.loads((tmp_path / "video-mme.json").read_text())
    assert [r["predition_ans"] for r in saved["001"]] == ["B"] + want
    assert out.counts["fallbacks"] == 2 and out.metrics["Overall without fallbacks"] == 100.0
    task.evaluate(entries, tmp_path / "again")
    assert (tmp_path / "again/video-mme.json").read_bytes() == (tmp_path / "video-mme.json").read_bytes()


def test_duration_split(tmp_path):
    q = {"videoID": "v1", "question": "what?", "option": ["A. x", "B. y", "C. z", "D. w"], "answer": "B"}
    data = {"001": [{**q, "duration": "short"}], "002": [{**q, "duration": "long"}, {**q, "duration": "long"}]}
    path = write_json(tmp_path / "mme.json", data)
    cfg = EvalConfig(task="videomme", anno_path=path, videos_dir=str(tmp_path), extra={"duration": "long"})
    assert [s.id for s in VideoMMETask(cfg).build_samples()] == ["002/0", "002/1"]
    with pytest.raises(ValueError, match="eval.extra.duration must be one of"):
        VideoMMETask(EvalConfig(task="videomme", anno_path=path, extra={"duration": "Long"})).build_samples()


def test_unknown_extra_key_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown eval.extra key"):
        VideoMMETask(EvalConfig(task="videomme", anno_path=str(tmp_path), extra={"fallbak": "none"}))
