"""Reports a researcher reads: per-sample table (report.md + samples.csv/jsonl), baselines beside the
metrics, an IoU histogram, timelines of every sample (video end, legend, DVC captions), and the
provenance of the model section and checkpoint actually used."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from timechat.config import load_config
from timechat.eval.report import build_report, write_report
from timechat.eval.tasks.base import TaskOutput
from timechat.stats import IssueStats

REPO = Path(__file__).resolve().parents[2]
CFG = REPO / "eval_configs" / "tiny_synthetic.yaml"


@pytest.fixture(scope="module")
def data_root(synthetic_test_split) -> Path:
    return synthetic_test_split


def _overrides(data_root: Path, out: Path, **extra) -> list[str]:
    values = {"paths.data_root": data_root, "paths.output_root": out.parent, "output_dir": out,
              "eval.checkpoint": "null", "eval.num_frames": 4, "eval.max_new_tokens": 8, "eval.batch_size": 4,
              "eval.num_workers": 0, "eval.plot_samples": 2, **extra}
    return [f"{k}={v}" for k, v in values.items()]


@pytest.fixture(scope="module")
def tvg_run(data_root, tmp_path_factory):
    from timechat.eval.run import run_evaluation

    out = tmp_path_factory.mktemp("report") / "tvg"
    return out, run_evaluation(load_config(CFG, _overrides(data_root, out)))


def test_tiny_tvg_report_has_samples_baselines_and_every_timeline(tvg_run, data_root):
    out, report = tvg_run
    gt = json.loads((data_root / "synthetic/annotations/tvg_test.caption_coco_format.json").read_text())["annotations"]
    ids = [str(a["id"]) for a in gt]
    # Per-sample rows: every query in samples.csv / samples.jsonl, in order, with the IoU recomputed.
    from timechat.metrics.tvg import tvg_iou

    rows = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == ids
    preds = json.loads(Path(report["files"]["predictions"]).read_text())
    for r, a in zip(rows, gt):
        assert r["query"] == a["caption"] and r["gt"] == a["timestamp"] and r["video"] == a["image_id"]
        window = preds[r["id"]]["timestamp"]
        assert r["pred"] == (window[0] if window else None)
        assert r["score"] == pytest.approx(tvg_iou(a["timestamp"], window[0]) if window else 0.0)
        assert r["status"] == "ok" or r["status"].startswith("unparseable: ")
        assert r["duration"] > 0  # read from the video: the synthetic annotation has no duration
    with (out / "samples.csv").open() as f:
        table = list(csv.DictReader(f))
    assert [t["id"] for t in table] == ids and json.loads(table[0]["gt"]) == gt[0]["timestamp"]
    assert report["per_sample"]["rows"] == len(ids)
    mean_iou = sum(r["score"] for r in rows) / len(rows)
    assert report["per_sample"]["mean_score"] == pytest.approx(mean_iou)
    assert report["metrics"]["mIoU"] == pytest.approx(100 * mean_iou)  # the table agrees with the metric

    # Baselines from the ground truth itself, beside the metrics.
    base = report["baselines"]
    assert set(base) == {"mean span", "whole video"} and set(base["mean span"]) == set(report["metrics"])
    from timechat.metrics import tvg_metrics

    mean = [sum(a["timestamp"][0] for a in gt) / len(gt), sum(a["timestamp"][1] for a in gt) / len(gt)]
    assert base["mean span"] == pytest.approx(tvg_metrics({str(a["id"]): {"timestamp": [mean]} for a in gt},
                                                          {"annotations": gt}))
    whole = {r["id"]: {"timestamp": [[0.0, r["duration"]]]} for r in rows}
    assert base["whole video"] == pytest.approx(tvg_metrics(whole, {"annotations": gt}))

    md = (out / "report.md").read_text()
    assert "| metric | model | baseline: mean span | baseline: whole video |" in md
    assert f"| R1@0.5 | {report['metrics']['R1@0.5']:.2f} | {base['mean span']['R1@0.5']:.2f} |" in md
    assert "## Per sample" in md and "| id | video | query | ground truth | prediction | IoU | parse status |" in md
    assert f"| {ids[0]} | {gt[0]['image_id']} | {gt[0]['caption']} | {json.dumps(gt[0]['timestamp'])} |" in md

    # Every query on the timeline page (with the video's end), a PNG overview, the IoU histogram.
    page = (out / "timelines.html").read_text()
    assert page.count('<div class="row">') == len(ids)
    for a in gt:
        assert f"{a['id']}: {a['caption']}" in page
    assert page.count("video end ") == len(ids) and "ground truth" in page and "prediction" in page
    for name in ("timeline.png", "iou_hist.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert report["files"]["timelines_html"].endswith("timelines.html")


def test_provenance_records_the_model_section_of_the_checkpoint(data_root, tmp_path):
    """With eval.model_from_checkpoint the section saved with the checkpoint is what config.yaml, the
    resume signature and the report record, not the config's fallback."""
    from omegaconf import OmegaConf
    from safetensors.torch import save_file

    from timechat.eval.run import run_evaluation

    step = tmp_path / "run" / "checkpoints" / "step_00000001"
    step.mkdir(parents=True)
    save_file({}, str(step / "trainable.safetensors"))
    trained = {"name": "timechat_tiny", "config": {"mode": "fixed", "fixed_timestamp_tokenizer": "bert",
                                                   "lora": {"enabled": False}, "llm": {"num_layers": 1}},
               "tokenizer": "builtin:tiny_tokenizer", "bert_tokenizer": "builtin:tiny_bert"}
    (step / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create({"model": trained})))
    out = tmp_path / "eval"
    report = run_evaluation(load_config(CFG, _overrides(data_root, out, **{"eval.checkpoint": step,
                                                                          "eval.max_samples": 1})))
    saved = (out / "config.yaml").read_text()
    assert saved.splitlines()[0] == f"# model section: {step / 'config.yaml'}"
    assert saved.splitlines()[1] == f"# checkpoint: {step}"
    assert OmegaConf.to_container(OmegaConf.load(out / "config.yaml"))["model"] == trained
    assert report["config"]["model"] == trained
    assert report["provenance"] == {"model_section": str(step / "config.yaml"), "model_name": "timechat_tiny",
                                    "checkpoint": str(step), "checkpoint_kind": "trainable"}
    signature = json.loads((out / "inference_signature.json").read_text())
    assert json.dumps(trained, sort_keys=True) in json.dumps(signature, sort_keys=True)
    assert f"* model section: {step / 'config.yaml'}" in (out / "report.md").read_text()


def _output(rows, timelines, baselines=None, saliency=None) -> TaskOutput:
    stats = IssueStats()
    return TaskOutput({"F1_Score": 10.0}, {"dvc": stats}, {"samples": len(rows)}, rows=rows, timelines=timelines,
                      baselines=baselines or {}, saliency=saliency or [])


def test_dvc_timelines_show_captions_and_video_end(tmp_path):
    from timechat.eval.tasks.dense_captioning import dvc_baselines, localisation_scores

    rows = [{"id": "a.mp4", "video": "a.mp4", "query": "", "gt": [[0, 10], [10, 20]], "pred": [[0, 9]], "score": 0.5,
             "score_name": "localisation F1", "status": "ok", "duration": 20.0, "answer": "0 - 9 seconds, cut"}]
    timelines = [{"label": "a.mp4", "duration": 20.0, "gt": [[0, 10], [10, 20]], "pred": [[0, 9]],
                  "gt_captions": ["chop the onion.", "fry it."], "pred_captions": ["cut <things>"]}]
    base = dvc_baselines(rows)
    assert set(base) == {"2 equal segments"}
    assert base["2 equal segments"] == {k: 100 * v for k, v in localisation_scores([[0, 10], [10, 20]],
                                                                                     [[0, 10], [10, 20]]).items()}
    assert base["2 equal segments"]["F1_Score"] == pytest.approx(100.0)
    output = _output(rows, timelines, base)
    report = build_report("dvc", output, config={}, checkpoints=[], timing={})
    write_report(report, output, tmp_path, plots=True)
    page = (tmp_path / "timelines.html").read_text()
    assert "chop the onion." in page and "fry it." in page and "cut &lt;things&gt;" in page
    assert "video end 20.0 s" in page
    md = (tmp_path / "report.md").read_text()
    assert "| F1_Score | 10.00 | 100.00 |" in md and "localisation F1" in md
    assert not (tmp_path / "iou_hist.png").exists()  # IoU histogram is for TVG


def test_vhd_rows_and_uniform_saliency_baseline(tmp_path):
    from timechat.config import EvalConfig
    from timechat.eval.tasks.highlights import HighlightTask
    from timechat.metrics import vhd_metrics

    gt = [{"qid": 1, "query": "q", "vid": "v", "duration": 8, "relevant_clip_ids": [1, 2],
           "saliency_scores": [[4, 4, 4], [1, 1, 1]], "relevant_windows": [[2, 6]]}]
    gt_file = tmp_path / "gt.jsonl"
    gt_file.write_text("".join(json.dumps(g) + "\n" for g in gt))
    task = HighlightTask(EvalConfig(task="vhd", anno_path=str(gt_file), gt_file=str(gt_file)))
    entries = [{"id": "1", "video": "v.mp4", "prompt": "p", "meta": {"qid": 1, "query": "q", "vid": "v", "duration": 8.0},
                "answer": "There are 2 highlight moments in the 3, 5 second. Their saliency scores are 4.0, 1.0"}]
    output = task.evaluate(entries, tmp_path)
    uniform = vhd_metrics([{"qid": 1, "query": "q", "vid": "v", "pred_saliency_scores": [1.0] * 4}], gt)
    assert output.baselines == {"uniform saliency": uniform}
    row = output.rows[0]
    assert row["gt"] == [2.0, 4.0] and row["pred"] == [2.0, 4.0]  # clip start seconds
    assert row["score"] == pytest.approx(4.0) and row["status"] == "ok"  # top predicted clip: gt saliency 4
