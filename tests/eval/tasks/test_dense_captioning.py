"""Dense captioning: prompts, answer parser (values, quirks), scoring rules, report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.eval.tasks._helpers import answers, entry, inference_case
from timechat.config import EvalConfig
from timechat.eval.report import build_report, parse_failure_table, write_report
from timechat.eval.tasks.common import R_EMPTY, ParseResult
from timechat.eval.tasks.dense_captioning import (
    R_DVC_NO_CAPTION,
    R_DVC_NO_EVENT,
    R_DVC_PDB,
    DenseCaptioningTask,
    format_dvc_output,
)


def test_dvc_spec_example_lowercases_captions():
    r = format_dvc_output("0.0 - 7.9 seconds, A man is seen speaking to the camera.  7.9 - 12.5 seconds, He jumps.")
    assert r.ok and r.status == "ok" and r.reason is None
    assert r.value == [
        {"timestamp": [0.0, 7.9], "caption": "a man is seen speaking to the camera."},
        {"timestamp": [7.9, 12.5], "caption": "he jumps."},
    ]


def test_dvc_fixture_fake_answers(reference_data_dir):
    _, _, expected = inference_case(reference_data_dir, "pub_inf_dvc")
    got = [format_dvc_output(a).value for a in answers(expected)]
    assert got == [
        [
            {"timestamp": [3.0, 15.0], "caption": "cut the chicken into cubes."},
            {"timestamp": [16.0, 28.0], "caption": "fry the garlic."},
        ],
        [
            {"timestamp": [0.0, 8.5], "caption": "mix the batter."},
            {"timestamp": [8.5, 16.0], "caption": "pour it into the pan."},
        ],
    ]
    _, _, expected = inference_case(reference_data_dir, "pub_inf_dvc_asr")
    first, second = (format_dvc_output(a) for a in answers(expected))
    assert first.value == [{"timestamp": [0.0, 3.4], "caption": "tune the guitar."}]
    # The second reply was just "</s>": empty after post-processing.
    assert second == ParseResult(None, "unparseable", R_EMPTY)


def test_dvc_quirks_positional_captions_and_no_swap():
    # Text before the first pair longer than 5 characters becomes the first caption (shift), and the
    # lists are truncated to the shorter one.
    r = format_dvc_output("Here are the steps: 1 - 5 seconds, crack eggs. 9 - 2 seconds, whisk.")
    assert r.value == [
        {"timestamp": [1.0, 5.0], "caption": "here are the steps:"},
        {"timestamp": [9.0, 2.0], "caption": "crack eggs."},  # reversed pair kept as is
    ]
    # Pieces of <= 5 characters (here " , a ", measured before stripping) are dropped.
    r = format_dvc_output("1 - 5 seconds, a 6 - 9 seconds, stir it well")
    assert r.value == [{"timestamp": [1.0, 5.0], "caption": "stir it well"}]


def test_dvc_pairs_without_captions_is_unparseable():
    r = format_dvc_output("1 - 5, 6 - 9")
    assert r.status == "unparseable" and r.reason == R_DVC_NO_CAPTION and r.value is None


def test_dvc_start_end_fields_branch():
    text = (
        "Step 1\nStarting time: 5 s\nEnding time: 10 seconds\nDescription: Crack the eggs.\n"
        "Step 2\nstart time: 12.5\nend time: 20\ndescription: Whisk them"
    )
    assert format_dvc_output(text).value == [
        {"timestamp": [5.0, 10.0], "caption": "crack the eggs."},
        {"timestamp": [12.5, 20.0], "caption": "whisk them"},
    ]
    bullets = "start time: 1\nend time: 4\n* Chop onions\n"
    assert format_dvc_output(bullets).value == [{"timestamp": [1.0, 4.0], "caption": "chop onions"}]


def test_dvc_pdb_branch_is_unparseable_not_a_hang():
    r = format_dvc_output("start time 5, end time 10, crack eggs")
    assert r.status == "unparseable" and r.reason == R_DVC_PDB


def test_dvc_last_resort_branch_yields_one_event():
    # One m:ss time -> 40 s window around it; only the first success counts.
    r = format_dvc_output("At 1:30 seconds the chef cracks eggs\nAt 2:30 seconds he whisks")
    assert r.value == [{"timestamp": [70.0, 110.0], "caption": "the chef cracks eggs"}]
    # A time <= 20 s gives [t, t + 40].
    assert format_dvc_output("at 0:15 seconds, the chef cracks eggs").value == [
        {"timestamp": [15.0, 55.0], "caption": "the chef cracks eggs"}
    ]
    # Two m:ss times -> a pair; bare numbers -> pair.
    assert format_dvc_output("from 1:00 to 1:20 seconds: add salt\nok").value[0]["timestamp"] == [60.0, 80.0]
    assert format_dvc_output("from 30 to 42 seconds add salt").value[0]["timestamp"] == [30.0, 42.0]
    assert format_dvc_output("no time information at all").reason == R_DVC_NO_EVENT


def test_dvc_scoring_rules(syn, tmp_path):
    gt = syn / "annotations/test.caption_coco_format.json"
    cfg = EvalConfig(task="dvc", dataset="synthetic", split="test", anno_path=str(gt), videos_dir=str(syn / "videos/test"),
                     prompt="dvc_description")
    task = DenseCaptioningTask(cfg)
    samples = task.build_samples()
    assert [s.id for s in samples] == ["syn_test_00000.mp4", "syn_test_00001.mp4", "syn_test_00002.mp4"]
    ann = json.loads(gt.read_text())["annotations"]
    perfect = ", ".join(f"{s} - {e} seconds, {c}" for (s, e), c in zip(ann[0]["segments"], ann[0]["pure_cap"].split(". ")))
    entries = [entry(samples[0], perfect), entry(samples[1], "I cannot tell."), entry(samples[2], error="bad file")]
    out = task.evaluate(entries, tmp_path)
    assert out.counts == {"samples": 3, "answered": 2, "decode_failures": 1, "parse_failures": 1,
                          "invalid_predictions": 0}
    fmt = json.loads(Path(out.files["predictions"]).read_text())
    assert fmt["syn_test_00001.mp4"] == [] and fmt["syn_test_00002.mp4"] == []
    assert fmt["syn_test_00000.mp4"][0]["timestamp"] == ann[0]["segments"][0]
    # P/R/F1 are computed per video and averaged: one perfect video of three.
    assert out.metrics["Recall@0.5"] == pytest.approx(100 / 3) and out.metrics["Precision@0.5"] == pytest.approx(100 / 3)
    assert parse_failure_table(out.parse_stats)["dvc"]["examples"][0]["id"] == "syn_test_00001.mp4"
    assert out.timelines[0]["gt"] == ann[0]["segments"] and out.timelines[1]["pred"] == []
    files = write_report(build_report("dvc", out, config={}, checkpoints=[], timing={}), out, tmp_path)
    assert Path(files["timeline_plot"]).read_bytes()[:4] == b"\x89PNG" and "saliency_plot" not in files
