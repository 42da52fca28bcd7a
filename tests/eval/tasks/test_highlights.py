"""Highlight detection: answer parser (values, quirks), clip mapping, scoring rules, report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.eval.tasks._helpers import answers, entry, inference_case
from timechat.config import EvalConfig
from timechat.eval.report import build_report, write_report
from timechat.eval.tasks.highlights import (
    R_VHD_NO_KEYWORD,
    R_VHD_NO_TIMESTAMP,
    R_VHD_SINGLE_NO_SCORE,
    HighlightTask,
    format_vhd_output,
    parse_vhd_highlights,
    read_qvhighlights_jsonl,
    vhd_clip_scores,
)


def test_vhd_spec_example_integer_score_shifts_pairing():
    text = "There are 3 highlight moments in the 82, 84, 86 second. Their saliency scores are 1.3, 2, 2.3."
    parsed = parse_vhd_highlights(text)
    assert parsed.value == {"timestamps": [82.0, 84.0, 86.0], "scores": [1.3, 2.3, 0.0]}
    clips = format_vhd_output(text, 150.0).value
    assert len(clips) == 75
    assert clips[40] == 1.3 and clips[41] == 2.3 and clips[42] == 0.0
    assert sum(clips) == pytest.approx(3.6)


def test_vhd_fixture_fake_answers(reference_data_dir):
    manifest, case, expected = inference_case(reference_data_dir, "pub_inf_vhd")
    durations = [
        manifest["videos"][v]["container_frames"] / manifest["videos"][v]["decord_avg_fps"] for v in case["videos"]
    ]
    got = [format_vhd_output(a, d).value for a, d in zip(answers(expected), durations)]
    # 3 s video -> 1 clip; 0.5, 1.0, 1.5 s all map to clip 0, which gets the mean of 2.0, 3.7, 3.3.
    assert got[0] == pytest.approx([3.0])
    # ~17 s video -> 8 clips; 4, 6, 8 s map to clips 1, 2, 3.
    assert got[1] == pytest.approx([0.0, 1.3, 1.7, 2.3, 0.0, 0.0, 0.0, 0.0])


def test_vhd_th_replacement_and_count_cap():
    text = "There are 2 highlight moments in the 20th, 22th, 24th second. Their saliency scores are 1.5, 2.5, 3.5."
    assert parse_vhd_highlights(text).value == {"timestamps": [20.0, 22.0], "scores": [1.5, 2.5]}


def test_vhd_class2_one_line_per_highlight():
    text = (
        "Highlight at 12 seconds, score 2.3\n"
        "Highlight at 0:20 seconds, score 3.1\n"
        "Highlight at 8 seconds, score 4.0\n"  # plain timestamps <= 10 s are dropped (quirk) ...
        "Highlight at 30 seconds, score 1.5"  # ... while its score stays, shifting the pairing
    )
    assert parse_vhd_highlights(text).value == {"timestamps": [12.0, 20.0, 30.0], "scores": [2.3, 3.1, 4.0]}


def test_vhd_unparseable_cases():
    assert parse_vhd_highlights("The highlights are at 82 and 84.").reason == R_VHD_NO_KEYWORD
    assert parse_vhd_highlights("no numbers second, score").reason == R_VHD_NO_TIMESTAMP
    assert parse_vhd_highlights("In the 82 second. Their saliency scores are 2.").reason == R_VHD_SINGLE_NO_SCORE
    one = parse_vhd_highlights("In the 82 second. Their saliency scores are 2.5, 3.5.")
    assert one.value == {"timestamps": [82.0], "scores": [2.5]}


def test_vhd_clip_mapping():
    # Two timestamps in one clip are averaged; t > duration dropped; t == odd duration would index past
    # the end in the original and is dropped here.
    assert vhd_clip_scores([3.0, 4.0, 20.0, 9.0], [1.0, 2.0, 4.0, 3.0], 9.0) == [0.0, 1.5, 0.0, 0.0]
    assert vhd_clip_scores([0.0], [2.0], 4.0) == [2.0, 0.0]
    assert vhd_clip_scores([1.0], [2.0], 1.0) == []
    with pytest.raises(ValueError, match="duration"):
        vhd_clip_scores([1.0], [1.0], float("nan"))
    with pytest.raises(ValueError, match="duration"):
        format_vhd_output("garbage", -1.0)


def test_vhd_scoring_rules_and_saliency_plot(syn, tmp_path):
    gt = syn / "annotations/highlight_test_release.jsonl"
    cfg = EvalConfig(task="vhd", dataset="qvhighlights", split="test", anno_path=str(gt), gt_file=str(gt),
                     videos_dir=str(syn / "videos/test"), prompt="vhd_description")
    task = HighlightTask(cfg)
    samples = task.build_samples()
    rows = [json.loads(line) for line in gt.read_text().splitlines()]
    assert [s.id for s in samples] == [str(r["qid"]) for r in rows]
    assert samples[0].video.endswith(f"{rows[0]['vid']}.mp4")
    first = rows[0]
    times = ", ".join(str(2 * c + 1) for c in first["relevant_clip_ids"])
    scores = ", ".join("3.0" for _ in first["relevant_clip_ids"])
    good = f"There are {len(first['relevant_clip_ids'])} highlight moments in the {times} second. Their saliency scores are {scores}"
    entries = [entry(samples[0], good)] + [entry(s, "nothing to see") for s in samples[1:-1]] + [entry(samples[-1], error="x")]
    out = task.evaluate(entries, tmp_path)
    assert out.counts["parse_failures"] == len(samples) - 2 and out.counts["decode_failures"] == 1
    preds = json.loads(Path(out.files["predictions"]).read_text())
    assert [p["qid"] for p in preds] == [r["qid"] for r in rows]  # every qid is scored
    assert all(p["pred_saliency_scores"] == [0.0] * int(r["duration"] / 2) for p, r in zip(preds[1:], rows[1:]))
    assert preds[0]["pred_saliency_scores"][first["relevant_clip_ids"][0]] == 3.0
    assert "HL-min-VeryGood-mAP" in out.metrics and "HL-min-Fair-Hit1" in out.metrics
    report = build_report("vhd", out, config={"eval": {}}, checkpoints=[], timing={})
    files = write_report(report, out, tmp_path)
    assert Path(files["saliency_plot"]).read_bytes()[:4] == b"\x89PNG"
    assert "HL-min-VeryGood-mAP" in Path(files["report_md"]).read_text()


def test_read_qvhighlights_jsonl(tmp_path):
    (tmp_path / "h.jsonl").write_text('{"qid": 1, "query": "x", "vid": "v", "duration": 150}\n\n')
    assert read_qvhighlights_jsonl(tmp_path / "h.jsonl")[0]["qid"] == 1
    (tmp_path / "bad.jsonl").write_text('{"qid": 1, "query": "x"}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl: record 1 \(qid 1\) has no 'vid'"):
        read_qvhighlights_jsonl(tmp_path / "bad.jsonl")
