"""Temporal grounding: prompts, answer parser (values, quirks), sample building."""

from __future__ import annotations

import json

import pytest

from tests.eval.tasks._helpers import answers, inference_case
from timechat.config import EvalConfig
from timechat.eval.tasks.common import R_EMPTY, fill_query_prompt, format_task_prompt
from timechat.eval.tasks.grounding import R_TVG_NO_PAIR, GroundingTask, extract_time, read_tvg_annotations
from timechat.eval.tasks.prompts import TASK_PROMPTS


def test_tvg_fixture_fake_answers(reference_data_dir):
    _, _, expected = inference_case(reference_data_dir, "pub_inf_tvg")
    assert [extract_time(a).value for a in answers(expected)] == [[2.5, 7.0], [12.0, 19.5]]
    assert [extract_time(a).value for a in answers(expected, "post_check")] == [[2.5, 7.0], [12.0, 19.5]]


def test_tvg_single_sentence_start_end_yields_nothing():
    r = extract_time("starts at 5.5 seconds and ends at 9 seconds")
    assert r.status == "unparseable" and r.reason == R_TVG_NO_PAIR and r.value is None


def test_tvg_keyword_sentences_first_number_each():
    assert extract_time("The event starts at 5.5 seconds.\nIt ends at 9 seconds, not 10.").value == [5.5, 9.0]
    # Clock times are used when no plain number qualifies.
    assert extract_time("It starts at 00:01:05!\nIt ends at 01:10").value == [65.0, 70.0]


def test_tvg_first_pair_only_swapped_and_echoed_example_kept():
    assert extract_time("It happens in 19.5 - 12.0 seconds, or 1 - 2.").value == [12.0, 19.5]
    # The original's removal of the prompt's example is a no-op: an echoed example is parsed.
    assert extract_time("happens in the 24.3 - 30.4 seonds. Actually 1 - 2.").value == [24.3, 30.4]
    assert extract_time("").reason == R_EMPTY


def test_format_task_prompt_one_placeholder_bug():
    template = TASK_PROMPTS["tvg_description"]
    with pytest.raises(ValueError, match="ONE '\\{\\}' placeholder"):
        format_task_prompt(template, "charades", "person opens a door.")
    buggy = format_task_prompt(template, "charades", "person opens a door.", allow_dropped_query=True)
    assert "textual query charades in the video" in buggy
    assert "door" not in buggy
    fixed = format_task_prompt(TASK_PROMPTS["tvg_description_fixed"], "charades", "person opens a door.")
    assert "textual query person opens a door in the video" in fixed
    assert "charades" not in fixed
    assert fixed.replace("person opens a door", "{}") == template


def test_custom_prompt_template_and_original_prompt(syn):
    cfg = EvalConfig(task="tvg", dataset="charades", anno_path=str(syn / "annotations/tvg_test.caption_coco_format.json"),
                     videos_dir=str(syn / "videos/test"), prompt_template="Find '{query}.' in {dataset}")
    s = GroundingTask(cfg).build_samples()[0]
    assert s.prompt == f"Find '{s.meta['query'].strip('.')}.' in charades"
    cfg.prompt_template = None
    s = GroundingTask(cfg).build_samples()[0]
    assert s.prompt.startswith("You are given a video from the charades dataset.")
    assert f"textual sentence: {s.meta['query']}. Please return" in s.prompt
    with pytest.raises(ValueError, match="ONE"):
        fill_query_prompt("query {} here", "charades", "x")


def test_read_tvg_annotations(tmp_path):
    (tmp_path / "test.caption_coco_format.json").write_text(json.dumps({"annotations": [{"image_id": "a/3MSZA.mp4", "caption": "q.", "timestamp": [1, 2], "id": 0}]}))
    assert read_tvg_annotations(tmp_path / "test.caption_coco_format.json")[0]["video"] == "3MSZA.mp4"
    (tmp_path / "bad.json").write_text(json.dumps({"annotations": [{"image_id": "v.mp4", "id": 3}]}))
    with pytest.raises(ValueError, match="annotation 0 has no 'caption'"):
        read_tvg_annotations(tmp_path / "bad.json")
