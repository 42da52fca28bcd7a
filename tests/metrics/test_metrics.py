"""Metric tests: every public reference case (one test), the CLI, and hand-computed cases.

The reference values come from the original TimeChat metric scripts
(``../shared/fixtures/reference_metrics``, see its README). DVC needs Java: its cases share one
module-level :class:`JavaSession` (one METEOR JVM for all of them).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from timechat.metrics import (
    JavaSession,
    MetricInputError,
    dvc_metrics,
    java_available,
    load_dvc_gt,
    load_dvc_pred,
    load_tvg_gt,
    load_tvg_pred,
    load_vhd_gt,
    load_vhd_pred,
    split_from_gt_path,
    tvg_iou,
    tvg_metrics,
    vhd_metrics,
    vhd_results,
)
from timechat.metrics.dvc import detection_scores, dvc_iou, soda_dp
from timechat.metrics.vhd import hl_average_precision, precision_recall_curve

REPO_ROOT = Path(__file__).resolve().parents[2]
TOL = 1e-6


@pytest.fixture(scope="module")
def java_session():
    if not java_available():
        yield None
        return
    with JavaSession() as session:
        yield session


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}/"))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _assert_close(name: str, got: dict, want: dict) -> None:
    got, want = _flatten(got), _flatten(want)
    missing = [k for k in want if k not in got]
    assert not missing, f"{name}: missing keys {missing}"
    for k, v in want.items():
        assert math.isclose(got[k], v, rel_tol=0, abs_tol=TOL), f"{name}: {k} = {got[k]!r}, reference {v!r}"


def _run_case(case: dict, root: Path, session) -> dict:
    gt, pred = root / case["gt"], root / case["pred"]
    if case["task"] == "tvg":
        return tvg_metrics(load_tvg_pred(pred), load_tvg_gt(gt), sample="--sample" in case["flags"])
    if case["task"] == "vhd":
        return vhd_results(load_vhd_pred(pred), load_vhd_gt(gt))
    return dvc_metrics(load_dvc_pred(pred), load_dvc_gt(gt), split_from_gt_path(gt), session=session)


def test_reference_cases(reference_metrics_dir, java_session):
    """Every public case of expected.json: ok cases match `raw` to 1e-6, crash cases raise."""
    cases = json.loads((reference_metrics_dir / "expected.json").read_text())["cases"]
    assert {c["task"] for c in cases.values()} == {"tvg", "vhd", "dvc"}
    checked, skipped_dvc = [], []
    for name, case in cases.items():
        if case["task"] == "dvc" and java_session is None:
            skipped_dvc.append(name)
            continue
        if case["status"] == "crash":
            with pytest.raises(MetricInputError):
                _run_case(case, reference_metrics_dir, java_session)
        else:
            got = _run_case(case, reference_metrics_dir, java_session)
            _assert_close(name, got, case["raw"])
            # Same keys in the same order as the reference's output.
            extra = ["mIoU"] if case["task"] == "tvg" else []  # mIoU is ours, not the original's
            assert list(got) == list(case["raw"]) + extra, name
            if case["task"] == "tvg":
                assert 0 <= got["mIoU"] <= 100
        checked.append(name)
    assert len(checked) + len(skipped_dvc) == len(cases)
    if skipped_dvc:
        pytest.skip(f"Java or the pycocoevalcap jars missing: {len(skipped_dvc)} DVC cases not run")


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
    assert list(out) == ["R1@0.3", "R1@0.5", "R1@0.7", "mIoU"]
    _assert_close("cli tvg_example", out, case["raw"])

    case = cases["vhd_baseline_subset"]
    proc = _cli("vhd", "--gt", str(root / case["gt"]), "--pred", str(root / case["pred"]))
    assert proc.returncode == 0, proc.stderr
    _assert_close("cli vhd_baseline_subset", json.loads(proc.stdout), case["raw"]["brief"])

    # Crash case: non-zero exit, the query id in the message, no traceback; the flag handles it.
    case = cases["tvg_zero_length_gt_crash"]
    args = ["tvg", "--gt", str(root / case["gt"]), "--pred", str(root / case["pred"])]
    proc = _cli(*args)
    assert proc.returncode != 0 and proc.stdout == ""
    assert "error:" in proc.stderr and "1640" in proc.stderr and "Traceback" not in proc.stderr
    proc = _cli(*args, "--zero-hull-iou", "1")
    assert proc.returncode == 0, proc.stderr
    assert set(json.loads(proc.stdout)) == {"R1@0.3", "R1@0.5", "R1@0.7", "mIoU"}

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
