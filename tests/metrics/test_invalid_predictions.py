"""Issue 12: bad prediction values are counted invalid and scored as misses; bad files name the file.

The inputs are the ones that failed: ``[[NaN, NaN]]`` for every TVG query (scored R1@0.5 = 100),
``[NaN, 9]`` against ``[5, 9]`` (IoU 1.0), a DVC ``"timestamp": [1]`` (bare TypeError), VHD
predictions with neither scores nor windows (printed ``{}``), and files with a bad UTF-8 byte or
cut-off JSON (errors without the file's name).
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import pytest

from timechat.metrics import MetricInputError, tvg_iou, tvg_metrics, vhd_metrics
from timechat.metrics.__main__ import main
from timechat.metrics._common import InvalidPrediction, interval_problem, scores_problem
from timechat.metrics.dvc import detection_scores, dvc_iou, dvc_metrics

NAN = float("nan")
TVG_GT = {"annotations": [{"id": 1, "timestamp": [5.0, 9.0]}, {"id": 2, "timestamp": [1.0, 3.0]}]}


def _write(path: Path, text: str | bytes) -> str:
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return str(path)


def _cli(capsys, *args: str) -> tuple[int, dict | None, str]:
    rc = main(list(args))
    out, err = capsys.readouterr()
    return rc, json.loads(out) if out.strip() else None, err


# ------------------------------------------------------------------------------------------------
# the shared check
# ------------------------------------------------------------------------------------------------


def test_interval_problem_values_and_shapes():
    assert interval_problem([5, 9]) is None and interval_problem([5, 9, "extra ignored"]) is None
    assert "start nan is not finite" in interval_problem([NAN, 9])
    assert "end inf is not finite" in interval_problem([5, math.inf])
    assert "not a number" in interval_problem([None, 9]) and "not a number" in interval_problem([True, 9])
    assert "start > end" in interval_problem([9, 5]) and interval_problem([9, 5], ordered=False) is None
    assert "score nan" in interval_problem([1, 2, NAN], ("start", "end", "score"))
    for bad in ([1], 5.0, "1 - 2"):  # shapes the original scripts crash on stay errors
        with pytest.raises(MetricInputError, match=r"must be \[start, end\]"):
            interval_problem(bad)
    assert scores_problem([0.5, 1]) is None and scores_problem([0.5, NAN]) == "pred_saliency_scores[1] nan is not finite"


# ------------------------------------------------------------------------------------------------
# TVG
# ------------------------------------------------------------------------------------------------


def test_tvg_nan_prediction_is_a_miss_not_a_hit(tmp_path, capsys):
    assert tvg_iou([5, 9], [NAN, 9]) == 0.0  # was 1.0
    assert tvg_iou([5, 9], [5, 9]) == 1.0
    invalid: list[InvalidPrediction] = []
    preds = {"1": {"timestamp": [[NAN, 9.0]]}, "2": {"timestamp": [[1.0, 3.0]]}}
    assert tvg_metrics(preds, TVG_GT, invalid=invalid)["R1@0.5"] == 50.0
    assert invalid == [InvalidPrediction("1", "timestamp [nan, 9.0]: start nan is not finite")]
    with pytest.warns(UserWarning, match=r"1 invalid prediction\(s\) scored as misses \(1: timestamp"):
        tvg_metrics(preds, TVG_GT)  # no list given: never silent

    # The file: [[NaN, NaN]] for every query gave exit 0 and R1@0.5 100.0.
    gt = _write(tmp_path / "gt.json", json.dumps(TVG_GT))
    pred = _write(tmp_path / "pred.json", '{"1": {"timestamp": [[NaN, NaN]]}, "2": {"timestamp": [[NaN, NaN]]}}')
    rc, out, err = _cli(capsys, "tvg", "--gt", gt, "--pred", pred)
    assert rc == 4 and out == {"R1@0.3": 0.0, "R1@0.5": 0.0, "R1@0.7": 0.0, "mIoU": 0.0, "invalid_predictions": 2}
    assert "invalid prediction 1: timestamp [nan, nan]: start nan is not finite" in err
    assert f"error: {pred}: all 2 predictions are invalid" in err
    # One valid prediction left: exit 0, the count still shown.
    _write(tmp_path / "pred.json", '{"1": {"timestamp": [[5, 9]]}, "2": {"timestamp": [[Infinity, 3]]}}')
    rc, out, err = _cli(capsys, "tvg", "--gt", gt, "--pred", pred)
    assert rc == 0 and out["R1@0.5"] == 50.0 and out["invalid_predictions"] == 1 and "invalid prediction 2" in err


# ------------------------------------------------------------------------------------------------
# DVC (geometry only: no Java needed)
# ------------------------------------------------------------------------------------------------


def test_dvc_nan_and_inf_events_are_counted_misses():
    assert dvc_iou([NAN, 5], [0, 5]) == 0.0 and dvc_iou([0, math.inf], [0, 5]) == 0.0
    assert dvc_iou([5, 0], [0, 5]) == pytest.approx(1.0)  # reordered, as the original: valid
    precision, recall, _ = detection_scores([[NAN, 5], [0, 5]], [[0, 5]])
    assert precision == [0.5] * 4 and recall == [1.0] * 4  # the NaN event stays a (missed) prediction


def test_dvc_single_number_timestamp_is_a_clear_error(tmp_path, capsys):
    # Was: TypeError: 'numpy.int64' object is not iterable, exit 1. Checked before Java starts.
    gt = {"annotations": [{"image_id": "v1.mp4", "segments": [[0, 5]], "pure_cap": "cut the onion"}]}
    with pytest.raises(MetricInputError, match=r"video 'v1.mp4': every 'timestamp' must be \[start, end\], got \[1\]"):
        dvc_metrics({"v1.mp4": [{"timestamp": [1], "caption": "cut"}]}, gt)
    gt_path = _write(tmp_path / "val.json", json.dumps(gt))
    pred = _write(tmp_path / "pred.json", json.dumps({"v1.mp4": [{"timestamp": [1], "caption": "cut"}]}))
    rc, out, err = _cli(capsys, "dvc", "--gt", gt_path, "--pred", pred)
    assert rc == 2 and out is None and "'v1.mp4'" in err and pred in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


# ------------------------------------------------------------------------------------------------
# VHD
# ------------------------------------------------------------------------------------------------

# qid 2 has a gt window in each length bucket (short, middle, long), as moment retrieval needs.
VHD_GT = [{"qid": 1, "duration": 80, "relevant_clip_ids": [0, 1], "saliency_scores": [[4, 4, 4], [1, 1, 1]],
           "relevant_windows": [[0, 4]]},
          {"qid": 2, "duration": 80, "relevant_clip_ids": [2], "saliency_scores": [[4, 4, 4]],
           "relevant_windows": [[4, 6], [10, 30], [30, 70]]}]


def test_vhd_without_scores_or_windows_is_a_clear_error(tmp_path, capsys):
    # Was: exit 0, printed {}.
    gt = _write(tmp_path / "gt.jsonl", "\n".join(json.dumps(r) for r in VHD_GT))
    pred = _write(tmp_path / "pred.json", json.dumps([{"qid": 1, "query": "q"}, {"qid": 2, "query": "q"}]))
    rc, out, err = _cli(capsys, "vhd", "--gt", gt, "--pred", pred)
    assert rc == 2 and out is None
    assert "prediction qid 1: neither 'pred_saliency_scores' nor 'pred_relevant_windows'" in err and pred in err
    # A later prediction without the first one's windows: was a bare KeyError.
    with pytest.raises(MetricInputError, match="prediction qid 2: no 'pred_relevant_windows'"):
        vhd_metrics([{"qid": 1, "pred_saliency_scores": [1, 0, 0, 0], "pred_relevant_windows": [[0, 4, 1]]},
                     {"qid": 2, "pred_saliency_scores": [0, 0, 1, 0]}], VHD_GT)


def test_vhd_nan_scores_and_windows_are_counted_misses():
    good = [{"qid": 1, "pred_saliency_scores": [1, 0, 0, 0], "pred_relevant_windows": [[0, 4, 0.9]]},
            {"qid": 2, "pred_saliency_scores": [0, 0, 1, 0], "pred_relevant_windows": [[4, 6, 0.9]]}]
    perfect = vhd_metrics(good, VHD_GT)
    assert perfect["HL-min-VeryGood-Hit1"] == 100.0 and perfect["MR-full-R1@0.7"] == 100.0
    bad = [dict(good[0], pred_saliency_scores=[NAN, 0, 0, 0], pred_relevant_windows=[[NAN, 4, 0.9]]), good[1]]
    invalid: list[InvalidPrediction] = []
    m = vhd_metrics(bad, VHD_GT, invalid=invalid)
    # qid 1 now scores nothing (NaN argmax used to pick clip 0, a hit; a NaN window matched its gt)
    assert m["HL-min-VeryGood-Hit1"] == 50.0 and m["MR-full-R1@0.7"] == 50.0
    assert m["MR-short-mAP"] == perfect["MR-short-mAP"] / 2
    assert [(p.id, p.reason) for p in invalid] == [
        ("1", "pred_saliency_scores[0] nan is not finite"),
        ("1", "pred_relevant_windows[0] [nan, 4, 0.9]: start nan is not finite"),
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        vhd_metrics(good, VHD_GT)  # nothing invalid: no warning


# ------------------------------------------------------------------------------------------------
# unreadable files name the file
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("task,gt_name", [("tvg", "gt.json"), ("vhd", "gt.jsonl")])
@pytest.mark.parametrize("which", ["gt", "pred"])
@pytest.mark.parametrize("content,message", [(b'{"a": 1}\xff', "not valid UTF-8 at byte 8"),
                                             (b'{"a": [1, ', "invalid JSON")])
def test_unreadable_files_are_named(tmp_path, capsys, task, gt_name, which, content, message):
    if task == "tvg":
        files = {"gt": _write(tmp_path / gt_name, json.dumps(TVG_GT)),
                 "pred": _write(tmp_path / "pred.json", '{"1": {"timestamp": [[5, 9]]}, "2": {"timestamp": [[1, 3]]}}')}
    else:
        files = {"gt": _write(tmp_path / gt_name, "\n".join(json.dumps(r) for r in VHD_GT)),
                 "pred": _write(tmp_path / "pred.json", json.dumps([{"qid": 1, "pred_saliency_scores": [1, 0, 0, 0]}]))}
    _write(Path(files[which]), content)
    rc, out, err = _cli(capsys, task, "--gt", files["gt"], "--pred", files["pred"])
    assert rc == 2 and out is None
    assert err.startswith(f"error: {files[which]}: ") and message in err
