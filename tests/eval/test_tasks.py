"""Task loaders, parsing/scoring rules, prediction formats, reports and configs (no model)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from timechat import registry
from timechat.config import EvalConfig, eval_config, load_config
from timechat.eval import tasks as T
from timechat.eval.report import build_report, write_report
from timechat.eval.run import resolve_checkpoint

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def syn(tmp_path_factory) -> Path:
    from timechat.data.synthetic import generate_synthetic_dataset

    root = tmp_path_factory.mktemp("syn")
    generate_synthetic_dataset(root, num_train=0, num_val=0, num_test=3, duration=(4.0, 6.0), fps=4.0, size=32,
                               max_events=2, min_event_duration=2.0)
    return root


def entry(sample, answer=None, error=None) -> dict:
    e = {"id": sample.id, "video": sample.video, "prompt": sample.prompt, "meta": sample.meta}
    if error:
        e.update(error=error, error_type="undecodable")
    else:
        e.update(answer=answer, answers=[answer])
    return e


def test_every_config_resolves():
    """Each eval YAML loads, its task and model names are registered, and its header has a launch command."""
    files = sorted((REPO / "eval_configs").glob("*.yaml"))
    assert {f.stem for f in files} >= {"timechat_dvc_youcook2", "timechat_tvg_charades", "timechat_vhd_qvhighlights",
                                       "timechat_mvbench", "timechat_tempcompass", "timechat_egoschema",
                                       "timechat_videomme", "tiny_synthetic"}
    for f in files:
        cfg = load_config(f)
        ecfg = eval_config(cfg)
        registry.lookup("task", ecfg.task)
        registry.lookup("model", cfg.model.name)
        head = f.read_text().splitlines()[0]
        assert head.startswith("# ") and "evaluate.py" in f.read_text().split("\npaths:")[0].split("\noutput_dir")[0], f
        if ecfg.task in ("mvbench", "tempcompass", "egoschema", "videomme"):
            assert ecfg.lora_alpha == 20 and ecfg.num_frames == 96 and ecfg.system == "benchmark", f
        elif f.stem != "tiny_synthetic":
            assert ecfg.num_frames == 96 and cfg.model.files.ckpt == "timechat/timechat_7b.pth", f


def test_custom_prompt_template_and_original_prompt(syn):
    cfg = EvalConfig(task="tvg", dataset="charades", anno_path=str(syn / "annotations/tvg_test.caption_coco_format.json"),
                     videos_dir=str(syn / "videos/test"), prompt_template="Find '{query}.' in {dataset}")
    s = T.GroundingTask(cfg).build_samples()[0]
    assert s.prompt == f"Find '{s.meta['query'].strip('.')}.' in charades"
    cfg.prompt_template = None
    s = T.GroundingTask(cfg).build_samples()[0]
    assert s.prompt.startswith("You are given a video from the charades dataset.")
    assert f"textual sentence: {s.meta['query']}. Please return" in s.prompt
    with pytest.raises(ValueError, match="ONE"):
        T.fill_query_prompt("query {} here", "charades", "x")


def test_dvc_scoring_rules(syn, tmp_path):
    gt = syn / "annotations/test.caption_coco_format.json"
    cfg = EvalConfig(task="dvc", dataset="synthetic", split="test", anno_path=str(gt), videos_dir=str(syn / "videos/test"),
                     prompt="dvc_description")
    task = T.DenseCaptioningTask(cfg)
    samples = task.build_samples()
    assert [s.id for s in samples] == ["syn_test_00000.mp4", "syn_test_00001.mp4", "syn_test_00002.mp4"]
    ann = json.loads(gt.read_text())["annotations"]
    perfect = ", ".join(f"{s} - {e} seconds, {c}" for (s, e), c in zip(ann[0]["segments"], ann[0]["pure_cap"].split(". ")))
    entries = [entry(samples[0], perfect), entry(samples[1], "I cannot tell."), entry(samples[2], error="bad file")]
    out = task.evaluate(entries, tmp_path)
    assert out.counts == {"samples": 3, "answered": 2, "decode_failures": 1, "parse_failures": 1}
    fmt = json.loads(Path(out.files["predictions"]).read_text())
    assert fmt["syn_test_00001.mp4"] == [] and fmt["syn_test_00002.mp4"] == []
    assert fmt["syn_test_00000.mp4"][0]["timestamp"] == ann[0]["segments"][0]
    # P/R/F1 are computed per video and averaged: one perfect video of three.
    assert out.metrics["Recall@0.5"] == pytest.approx(100 / 3) and out.metrics["Precision@0.5"] == pytest.approx(100 / 3)
    assert out.parse_stats.to_dict()["dvc"]["examples"][0]["id"] == "syn_test_00001.mp4"
    assert out.timelines[0]["gt"] == ann[0]["segments"] and out.timelines[1]["pred"] == []
    files = write_report(build_report("dvc", out, config={}, checkpoints=[], timing={}), out, tmp_path)
    assert Path(files["timeline_plot"]).read_bytes()[:4] == b"\x89PNG" and "saliency_plot" not in files


def test_vhd_scoring_rules_and_saliency_plot(syn, tmp_path):
    gt = syn / "annotations/highlight_test_release.jsonl"
    cfg = EvalConfig(task="vhd", dataset="qvhighlights", split="test", anno_path=str(gt), gt_file=str(gt),
                     videos_dir=str(syn / "videos/test"), prompt="vhd_description")
    task = T.HighlightTask(cfg)
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


def _write(path: Path, obj) -> str:
    path.write_text(json.dumps(obj))
    return str(path)


def test_egoschema_and_videomme(tmp_path):
    qs = [{"q_uid": f"u{i}", "question": f"q{i}?", **{f"option {k}": f"o{k}" for k in range(5)}} for i in range(3)]
    cfg = EvalConfig(task="egoschema", anno_path=_write(tmp_path / "q.json", qs), videos_dir=str(tmp_path),
                     extra={"answers": _write(tmp_path / "a.json", {"u0": 2, "u1": 0})})
    task = T.EgoSchemaTask(cfg)
    samples = task.build_samples()
    assert [s.id for s in samples] == ["u0", "u1"]  # subset with answers only
    assert samples[0].prompt.endswith("(E) o4\nThe best answer is:")
    out = task.evaluate([entry(samples[0], "C"), entry(samples[1], "no idea")], tmp_path)
    assert out.counts["parse_failures"] == 1 and out.counts["fallbacks"] == 1
    from timechat.eval.parsers import qa_fallback

    expect = 50.0 + (50.0 if qa_fallback("egoschema", "u1", seed=42) == "A" else 0.0)
    assert out.metrics["Overall"] == expect
    assert (tmp_path / "output.csv").read_text().splitlines()[1] == "u0,2"

    data = [{"videoID": "v1", "duration": "short", "questions": [
        {"question_id": "001-1", "question": "what?", "options": ["A. x", "B. y", "C. z", "D. w"], "answer": "B"},
        {"question_id": "001-2", "question": "why?", "options": ["A. x", "B. y", "C. z", "D. w"], "answer": "D"}]}]
    cfg = EvalConfig(task="videomme", anno_path=_write(tmp_path / "mme.json", data), videos_dir=str(tmp_path))
    task = T.VideoMMETask(cfg)
    samples = task.build_samples()
    assert "(A) x\n(B) y" in samples[0].prompt
    out = task.evaluate([entry(samples[0], "(B) y"), entry(samples[1], "(A)")], tmp_path)
    assert out.metrics == {"short": 50.0, "Avg": 50.0, "Overall": 50.0} and out.counts["parse_failures"] == 0


def test_mvbench_and_tempcompass(tmp_path):
    (tmp_path / "json").mkdir()
    _write(tmp_path / "json/action_sequence.json",
           [{"video": "a.mp4", "question": "What?", "candidates": ["x", "y"], "answer": "y"},
            {"video": "b.mp4", "question": "Why?", "candidates": ["x", "y", "z"], "answer": "x"}])
    cfg = EvalConfig(task="mvbench", anno_path=str(tmp_path / "json"), videos_dir=str(tmp_path),
                     extra={"tasks": {"Action Sequence": {"json": "action_sequence.json", "prefix": "star"}}})
    task = T.MVBenchTask(cfg)
    samples = task.build_samples()
    assert samples[0].video == str(tmp_path / "star/a.mp4") and samples[0].meta["answer"] == "B"
    assert samples[0].prompt.endswith("(A) x\n(B) y\nOnly give the best option.")
    out = task.evaluate([entry(samples[0], "(B) y"), entry(samples[1], "hmm")], tmp_path)
    assert out.metrics["Action Sequence"] == 100.0  # unparseable -> fallback A, which is right here
    assert out.counts["fallbacks"] == 1 and out.counts["parse_failures"] == 1

    (tmp_path / "tc").mkdir()
    _write(tmp_path / "tc/multi-choice.json", {"v1": {"speed": [{"question": "How fast?\nA. slow\nB. fast", "answer": "B. fast"}]}})
    _write(tmp_path / "tc/captioning.json", {"v1": {"speed": [{"question": "Describe.", "answer": None}]}})
    cfg = EvalConfig(task="tempcompass", anno_path=str(tmp_path / "tc"), videos_dir=str(tmp_path),
                     extra={"task_types": ["multi-choice", "captioning"]})
    task = T.TempCompassTask(cfg)
    samples = task.build_samples()
    assert samples[0].prompt == "Question: How fast?\nA. slow\nB. fast\nPlease directly give the best option:"
    out = task.evaluate([entry(samples[0], "B. fast"), entry(samples[1], "It moves.")], tmp_path)
    assert out.metrics == {"multi-choice/speed": 100.0, "multi-choice/Avg": 100.0, "multi-choice/Overall": 100.0}
    assert out.counts["scored"] == 1  # captioning: predictions only


def test_resolve_checkpoint(tmp_path):
    assert resolve_checkpoint(None, None) == (None, None)
    run = tmp_path / "run"
    for step, complete in ((100, True), (200, True), (300, False)):
        d = run / "checkpoints" / f"step_{step:08d}"
        d.mkdir(parents=True)
        (d / "trainable.safetensors").write_bytes(b"")
        if complete:
            (d / "COMPLETE").write_text("{}")
    assert resolve_checkpoint("latest", str(run)) == ("trainable", str(run / "checkpoints/step_00000200"))
    assert resolve_checkpoint(str(run), None)[1].endswith("step_00000200")
    (tmp_path / "x.pth").write_bytes(b"")
    assert resolve_checkpoint(str(tmp_path / "x.pth"), None) == ("original", str(tmp_path / "x.pth"))
    with pytest.raises(ValueError, match="train_dir"):
        resolve_checkpoint("latest", None)
    with pytest.raises(FileNotFoundError, match="no complete step folder"):
        resolve_checkpoint("latest", str(tmp_path / "empty"))
