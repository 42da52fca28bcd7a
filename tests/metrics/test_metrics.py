"""Metric tests: every public reference case, the CLI, and hand-computed cases.

The reference values come from the original TimeChat metric scripts
(``../shared/fixtures/reference_metrics``, see its README), compared by
`timechat.reference.metrics` (the same check `scripts/check_reference_parity.py` runs). Only the
DVC cases need Java (METEOR / PTB tokenizer) and only they skip without it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from timechat.metrics import MetricInputError, java_available, split_from_gt_path, tvg_iou, tvg_metrics, vhd_metrics
from timechat.metrics.dvc import detection_scores, dvc_iou, soda_dp
from timechat.metrics.vhd import hl_average_precision, precision_recall_curve
from timechat.reference.compare import format_rows
from timechat.reference.metrics import TOL, check_reference_metrics, compare_values, load_cases

REPO_ROOT = Path(__file__).resolve().parents[2]


def _assert_reference_cases(root: Path, tasks: set[str]) -> None:
    """Every public case of these tasks: ok cases match `raw` to 1e-6, crash cases raise MetricInputError."""
    cases = load_cases(root)
    assert {c["task"] for c in cases.values()} == {"tvg", "vhd", "dvc"}
    rows = check_reference_metrics(root, tasks=tasks)
    assert [r.name for r in rows] == [f"metrics/{n}" for n, c in cases.items() if c["task"] in tasks]
    bad = [r for r in rows if not r.ok]
    assert not bad, format_rows(bad)


def test_reference_cases_tvg_vhd(reference_metrics_dir):
    """Plain Python: these run (and must pass) with or without Java."""
    _assert_reference_cases(reference_metrics_dir, {"tvg", "vhd"})


@pytest.mark.slow  # 30-90 s of JVM work (PTB tokenizer + METEOR) on 2 cores; CI runs it, the parity tool checks the same cases
def test_reference_cases_dvc(reference_metrics_dir):
    """DVC scores with METEOR 1.5 and the Stanford PTB tokenizer: the only cases that need Java."""
    if not java_available():
        pytest.skip("Java or the pycocoevalcap jars missing: the DVC cases need METEOR / PTB")
    _assert_reference_cases(reference_metrics_dir, {"dvc"})


def test_metric_rows_fail_when_values_or_errors_differ(reference_metrics_dir, tmp_path):
    """The comparison can fail: a changed raw value, and a crash case whose inputs no longer crash."""
    cases = load_cases(reference_metrics_dir)
    ok_case = dict(cases["tvg_baseline_subset"], gt=str(reference_metrics_dir / cases["tvg_baseline_subset"]["gt"]),
                   pred=str(reference_metrics_dir / cases["tvg_baseline_subset"]["pred"]))
    shifted = dict(ok_case, raw={**ok_case["raw"], "R1@0.5": ok_case["raw"]["R1@0.5"] + 2 * TOL})
    crash = dict(ok_case, status="crash", error={"type": "ZeroDivisionError"})
    expected = {"format_version": 1, "cases": {"ok": ok_case, "shifted": shifted, "not_a_crash": crash}}
    (tmp_path / "expected.json").write_text(json.dumps(expected))
    rows = {r.name: r for r in check_reference_metrics(tmp_path)}
    assert rows["metrics/ok"].ok
    assert not rows["metrics/shifted"].ok and "R1@0.5" in rows["metrics/shifted"].note
    assert not rows["metrics/not_a_crash"].ok and "ZeroDivisionError" in rows["metrics/not_a_crash"].note


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "timechat.metrics", *args], capture_output=True,
                          text=True, cwd=REPO_ROOT, timeout=300)


def test_cli(reference_metrics_dir):
    """The CLI prints one JSON object (ok cases) or a one-line error naming the problem (crashes)."""
    root = reference_metrics_dir
    cases = json.loads((root / "expected.json").read_text())["cases"]

    case = cases["tvg_example"]
    proc = _cli("tvg", "--gt", str(root / case["gt"]), "--pred", str(root / case["pred"]), "--sample")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert list(out) == ["R1@0.3", "R1@0.5", "R1@0.7", "mIoU", "invalid_predictions"]
    assert out["invalid_predictions"] == 0
    row = compare_values("cli tvg_example", out, case["raw"])
    assert row.ok, row

    case = cases["vhd_baseline_subset"]
    proc = _cli("vhd", "--gt", str(root / case["gt"]), "--pred", str(root / case["pred"]))
    assert proc.returncode == 0, proc.stderr
    row = compare_values("cli vhd_baseline_subset", json.loads(proc.stdout), case["raw"]["brief"])
    assert row.ok, row

    # Crash case: non-zero exit, the query id in the message, no traceback; the flag handles it.
    case = cases["tvg_zero_length_gt_crash"]
    args = ["tvg", "--gt", str(root / case["gt"]), "--pred", str(root / case["pred"])]
    proc = _cli(*args)
    assert proc.returncode != 0 and proc.stdout == ""
    assert "error:" in proc.stderr and "1640" in proc.stderr and "Traceback" not in proc.stderr
    proc = _cli(*args, "--zero-hull-iou", "1")
    assert proc.returncode == 0, proc.stderr
    assert set(json.loads(proc.stdout)) == {"R1@0.3", "R1@0.5", "R1@0.7", "mIoU", "invalid_predictions"}

    # DVC gt named neither train/val/test: fails before any Java runs, naming the file.
    case = cases["dvc_gt_filename_not_a_split"]
    proc = _cli("dvc", "--gt", str(root / case["gt"]), "--pred", str(root / case["pred"]))
    assert proc.returncode != 0 and "gt.json" in proc.stderr and "--split" in proc.stderr
    assert "Traceback" not in proc.stderr

    # VHD clip id out of range: error by default, --out-of-range-clips drop scores it.
    case = cases["vhd_gt_clip_id_out_of_range_crash"]
    args = ["vhd", "--gt", str(root / case["gt"]), "--pred", str(root / case["pred"])]
    proc = _cli(*args)
    assert proc.returncode != 0 and "7234" in proc.stderr and "Traceback" not in proc.stderr
    proc = _cli(*args, "--out-of-range-clips", "drop")
    assert proc.returncode == 0, proc.stderr
    assert "HL-min-VeryGood-mAP" in json.loads(proc.stdout)


def test_tvg_hand_computed():
    # [0, 10] vs [5, 15]: intersection 5, hull 15 -> 1/3.
    assert tvg_iou([0, 10], [5, 15]) == pytest.approx(1 / 3)
    assert tvg_iou([0, 10], [15, 5]) == 0  # reversed prediction: negative numerator -> 0
    gt = {"annotations": [{"id": 1, "timestamp": [0, 10]}, {"id": 2, "timestamp": [20, 30]},
                          {"id": 3, "timestamp": [3, 3]}]}
    pred = {"1": {"timestamp": [[5, 15], [0, 10]]}, "2": {"timestamp": []}, "3": {"timestamp": [[3, 3]]}}
    with pytest.raises(MetricInputError, match="query 3"):
        tvg_metrics(pred, gt)
    out = tvg_metrics(pred, gt, zero_hull_iou=1.0)
    # query 1: IoU 1/3 (the perfect second interval is ignored); 2: miss; 3: defined as 1.
    assert out["R1@0.3"] == pytest.approx(200 / 3)
    assert out["R1@0.5"] == pytest.approx(100 / 3) and out["R1@0.7"] == pytest.approx(100 / 3)
    assert out["mIoU"] == pytest.approx((1 / 3 + 0 + 1) / 3 * 100)
    # --sample: only predicted ids count.
    assert tvg_metrics({"1": {"timestamp": [[0, 10]]}}, gt, sample=True)["R1@0.7"] == 100.0


def test_vhd_hand_computed():
    # Ranking 0.9 (pos), 0.8 (neg), 0.3 (pos), 0.1 (neg): precision at the recall steps 1 and 2/3.
    y_true = np.array([1.0, 0.0, 1.0, 0.0])
    scores = np.array([0.9, 0.8, 0.3, 0.1])
    precision, recall = precision_recall_curve(y_true, scores)
    np.testing.assert_allclose(precision, [0.5, 2 / 3, 0.5, 1.0, 1.0])
    np.testing.assert_allclose(recall, [1.0, 1.0, 0.5, 0.5, 0.0])
    assert hl_average_precision(y_true, scores) == pytest.approx(5 / 6)
    # Tied scores are one threshold.
    precision, recall = precision_recall_curve(np.array([1.0, 0.0, 1.0]), np.array([0.5, 0.5, 0.2]))
    np.testing.assert_allclose(precision, [2 / 3, 0.5, 1.0])
    np.testing.assert_allclose(recall, [1.0, 0.5, 0.0])
    assert hl_average_precision(np.zeros(3), scores[:3]) == 0.0
    assert hl_average_precision(np.ones(3), scores[:3]) == 1.0

    # One query, 4 clips (duration 8): clip 0 scored 4 by all annotators, clip 2 scored 2.
    gt = [{"qid": 7, "duration": 8, "relevant_clip_ids": [0, 2], "saliency_scores": [[4, 4, 4], [2, 2, 2]]}]
    pred = [{"qid": 7, "pred_saliency_scores": [0.9, 0.8, 0.3, 0.1]}]
    out = vhd_metrics(pred, gt)
    assert out["HL-min-Fair-mAP"] == pytest.approx(500 / 6)  # labels 1,0,1,0 -> AP 5/6
    assert out["HL-min-VeryGood-mAP"] == pytest.approx(100.0)  # labels 1,0,0,0, top-ranked
    assert out["HL-min-Fair-Hit1"] == out["HL-min-VeryGood-Hit1"] == 100.0
    # Zero padding outranks negative scores; Hit@1 still uses the unpadded argmax (clip 0).
    out = vhd_metrics([{"qid": 7, "pred_saliency_scores": [-0.1, -0.5]}], gt)
    assert out["HL-min-VeryGood-Hit1"] == 100.0
    assert out["HL-min-VeryGood-mAP"] == pytest.approx(100 / 3)  # clip 0 ranked third
    with pytest.raises(MetricInputError, match="no qid is shared"):
        vhd_metrics([{"qid": "7", "pred_saliency_scores": [1.0]}], gt)


def test_dvc_hand_computed():
    # pred 0 equals gt 0; pred 1 overlaps each gt by 5 s over a 25 s hull -> IoU 0.2.
    precision, recall, ious = detection_scores([[0, 10], [5, 25]], [[0, 10], [20, 30]])
    assert precision == [0.5] * 4 and recall == [0.5] * 4
    np.testing.assert_allclose(ious, [[1.0, 0.2], [0.0, 0.2]], atol=1e-8)
    # Reversed spans are reordered; IoU exactly 0.5 falls just below it because of the +1e-8.
    assert dvc_iou([10, 0], [0, 10]) == pytest.approx(1.0)
    assert dvc_iou([0, 5], [0, 10]) < 0.5
    assert detection_scores([[0, 5]], [[0, 10]])[0] == [1.0, 0.0, 0.0, 0.0]
    # Order-preserving alignment: crossing matches cannot both count.
    assert soda_dp(np.array([[1.0, 0.0], [0.0, 1.0]])) == 2.0
    assert soda_dp(np.array([[0.0, 1.0], [1.0, 0.0]])) == 1.0
    assert split_from_gt_path("a/val.caption_coco_format.json") == "val"
    with pytest.raises(MetricInputError, match="example_gt_file"):
        split_from_gt_path("example_gt_file.json")
