"""TempCompass: prompts, rule-based answer parser, sample building and scoring."""

from __future__ import annotations

import json

import pytest

from tests.eval.tasks._helpers import entry, write_json
from timechat.config import EvalConfig
from timechat.eval.tasks.common import R_QA_NO_LETTER
from timechat.eval.tasks.tempcompass import (
    R_QA_NO_LABEL,
    R_QA_NO_YES_NO,
    parse_tempcompass_answer,
    tempcompass_caption_labels,
    tempcompass_prompt,
    TempCompassTask,
)


def test_tempcompass_prompts():
    assert tempcompass_prompt("Is it fast?", "yes_no") == "Question: Is it fast?\nPlease answer yes or no:"
    assert (
        tempcompass_prompt("Which?\nA. up\nB. down", "multi-choice")
        == "Question: Which?\nA. up\nB. down\nPlease directly give the best option:"
    )
    assert tempcompass_prompt("Describe.\nGenerated Caption:", "captioning") == (
        "Question: Describe.\nGenerated Caption:"
    )
    q = "Which caption matches the video better?\nCaption A: a car turns left\nCaption B: a car turns right"
    assert tempcompass_caption_labels(q) == ("Caption A", "Caption B")
    assert tempcompass_prompt(q, "caption_matching") == (
        f"Question: {q}\nPlease directly give the best option (Caption A or Caption B):"
    )
    assert tempcompass_prompt("Which one?", "caption_matching").endswith(
        "\nPlease directly give the best option ():"  # no option lines: no labels, as the original
    )
    assert tempcompass_caption_labels("Which?\nOption 1: a: b\nno colon") == ("Option 1", "no colon")
    assert tempcompass_prompt(q, "caption_matching", labels=["Sentence A", "Sentence B"]).endswith(
        "(Sentence A or Sentence B):"
    )
    with pytest.raises(ValueError, match="unknown TempCompass task type"):
        tempcompass_prompt("q", "open_ended")


def test_tempcompass():
    mc = parse_tempcompass_answer
    assert mc("B. The car turns left.", "multi-choice").value == "B"
    assert mc("(C) rotating", "multi-choice").value == "C"
    assert mc("A", "multi-choice").value == "A"
    assert mc("I think the best option is D", "multi-choice").value == "D"
    assert mc("A man turns left.", "multi-choice").ok is False
    assert mc("The car turns left", "multi-choice", options=["turns right", "turns left"]).value == "B"
    assert mc("E.", "multi-choice", options=["a", "b", "c"]).reason == R_QA_NO_LETTER
    assert parse_tempcompass_answer("Yes, it does.", "yes_no").value == "yes"
    assert parse_tempcompass_answer("Nope", "yes_no").reason == R_QA_NO_YES_NO
    assert parse_tempcompass_answer("caption b matches", "caption_matching").value == "Caption B"
    assert (
        parse_tempcompass_answer("I pick sentence a", "caption_matching", labels=["Sentence A", "Sentence B"]).value
        == "Sentence A"
    )
    assert parse_tempcompass_answer("neither", "caption_matching").reason == R_QA_NO_LABEL
    assert parse_tempcompass_answer("  A cat.  ", "captioning").value == "A cat."
    with pytest.raises(ValueError, match="unknown TempCompass task type"):
        parse_tempcompass_answer("x", "other")


def test_tempcompass_task(tmp_path):
    (tmp_path / "tc").mkdir()
    write_json(tmp_path / "tc/multi-choice.json", {"v1": {"speed": [{"question": "How fast?\nA. slow\nB. fast", "answer": "B. fast"}]}})
    write_json(tmp_path / "tc/captioning.json", {"v1": {"speed": [{"question": "Describe.", "answer": None}]}})
    cfg = EvalConfig(task="tempcompass", anno_path=str(tmp_path / "tc"), videos_dir=str(tmp_path),
                     extra={"task_types": ["multi-choice", "captioning"]})
    task = TempCompassTask(cfg)
    samples = task.build_samples()
    assert samples[0].prompt == "Question: How fast?\nA. slow\nB. fast\nPlease directly give the best option:"
    out = task.evaluate([entry(samples[0], "B. fast"), entry(samples[1], "It moves.")], tmp_path)
    assert out.metrics == {"multi-choice/speed": 100.0, "multi-choice/Avg": 100.0, "multi-choice/Overall": 100.0}
    assert out.counts["scored"] == 1  # captioning: predictions only
    saved = json.loads((tmp_path / "multi-choice.json").read_text())
    assert saved == {"v1": {"speed": [{"question": "How fast?\nA. slow\nB. fast", "answer": "B. fast",
                                       "prediction": "B. fast"}]}}
    assert (tmp_path / "captioning.json").read_text().startswith('{\n    "v1": {')


def test_tempcompass_preexisting(tmp_path):
    (tmp_path / "tc").mkdir()
    write_json(tmp_path / "tc/yes_no.json", {"v1": {"speed": [{"question": "Fast?", "answer": "yes"}]},
                                             "v2": {"speed": [{"question": "Slow?", "answer": "no"}]}})
    old = {"v1": {"speed": [{"question": "Fast?", "answer": "yes", "prediction": "yes"}]}}
    (tmp_path / "old").mkdir()
    write_json(tmp_path / "old/yes_no.json", old)
    cfg = EvalConfig(task="tempcompass", anno_path=str(tmp_path / "tc"), videos_dir=str(tmp_path),
                     extra={"task_types": ["yes_no"], "preexisting_predictions": str(tmp_path / "old")})
    task = TempCompassTask(cfg)
    samples = task.build_samples()
    assert [s.meta["video_id"] for s in samples] == ["v2"]  # v1 is in the earlier file: skipped
    task.evaluate([entry(samples[0], "No.")], tmp_path)
    assert list(json.loads((tmp_path / "yes_no.json").read_text())) == ["v1", "v2"]
