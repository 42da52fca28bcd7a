"""`valley`, `hirest`, `coco-gt`: converted files as the original scripts wrote them; metric readers accept the gt."""

from __future__ import annotations

import json

import pytest

from tests.data.prepare._media import make_clip, need, video_facts
from timechat.eval.tasks.common import read_coco_annotations
from timechat.eval.tasks.grounding import read_tvg_annotations
from timechat.metrics.dvc import _gt_videos  # the metric's own reading of the gt (segments, sentences)
from timechat.data.prepare.coco_gt import build_coco_gt
from timechat.data.prepare.hirest import process_hirest
from timechat.data.prepare.valley import convert_valley, vatex_times
from timechat.metrics import dvc_metrics, java_available, load_dvc_gt, load_tvg_gt, tvg_metrics


# ----------------------------------------------------------------------------------------------- valley
def _valley_item(source, video, v_id, turns=1):
    conv = []
    for k in range(turns):
        conv += [{"from": "human", "value": ("<video>\n" if k == 0 else "") + f"Question {k}?"}, {"from": "gpt", "value": f"Answer {k}."}]
    return {"source": source, "video": video, "v_id": v_id, "conversations": conv}


def test_valley_converts_keeps_present_videos_and_cuts_vatex(tmp_path):
    need("ffmpeg", "ffprobe")
    root, raw = tmp_path / "data", tmp_path / "vatex_raw"
    (root / "Valley" / "jukinmedia").mkdir(parents=True)
    raw.mkdir()
    make_clip(root / "Valley" / "jukinmedia" / "j1.mp4", seconds=1)
    make_clip(raw / "yt_abcdefgh.mp4", fps="10", seconds=6)
    items = [
        _valley_item("jukinmedia", "j1.mp4", "j1", turns=2),
        _valley_item("jukinmedia", "gone.mp4", "gone"),  # not downloadable any more: dropped
        _valley_item("VATEX", "yt_abcdefgh.mp4", "yt_abcdefgh_000001_000004"),  # cut from the raw video
        _valley_item("VATEX", "missing_raw.mp4", "missing_raw_000000_000010"),  # raw absent: reported, dropped
    ]
    src = tmp_path / "valley_instruct_65k.json"
    src.write_text(json.dumps(items))
    out = tmp_path / "instruct_valley.json"
    summary = convert_valley(src, out, root, vatex_raw_dir=raw, progress=False)
    assert [o.key for o in summary.done] == ["Valley/VATEX/yt_abcdefgh_000001_000004.mp4"]
    assert [o.key for o in summary.failed] == ["Valley/VATEX/missing_raw_000000_000010.mp4"]
    records = json.loads(out.read_text())
    assert records == [
        {"video": "Valley/jukinmedia/j1.mp4", "QA": [{"q": "Question 0?", "a": "Answer 0."}, {"q": "Question 1?", "a": "Answer 1."}], "source": "jukinmedia"},
        {"video": "Valley/VATEX/yt_abcdefgh_000001_000004.mp4", "QA": [{"q": "Question 0?", "a": "Answer 0."}], "source": "VATEX"},
    ]
    clip = video_facts(root / "Valley" / "VATEX" / "yt_abcdefgh_000001_000004.mp4")
    assert abs(clip["duration"] - 3.0) < 0.15  # exact: start 1 s to end 4 s (the original cut 1 s to 5 s)
    report = json.loads((tmp_path / "instruct_valley.valley_report.json").read_text())
    assert report["records"]["kept"] == 2 and report["records"]["dropped_no_video"] == 2
    assert vatex_times("--33Lscn6sk_000004_000014") == ("000004", "000014")


# ----------------------------------------------------------------------------------------------- hirest
HIREST = {
    "how to make tea": {
        "vidA.mp4": {"relevant": True, "clip": True, "v_duration": 120.5, "bounds": [10, 50],
                     "steps": [{"heading": "boil water", "absolute_bounds": [12, 20]}, {"heading": "add tea", "absolute_bounds": [21.5, 48]}]},
        "vidB.mp4": {"relevant": False, "clip": True, "v_duration": 60, "bounds": [0, 5], "steps": [{"heading": "x", "absolute_bounds": [0, 1]}]},
        "vidC.mp4": {"relevant": True, "clip": True, "v_duration": 60, "bounds": [0, 5], "steps": []},
    },
    "how to fold": {"vidD.mp4": {"relevant": True, "clip": True, "v_duration": 30.0, "bounds": [1.5, 3.0],
                                 "steps": [{"heading": "fold", "absolute_bounds": [1.5, 2.5]}]}},
}


def test_hirest_annotations_and_clips(tmp_path):
    need("ffmpeg", "ffprobe")
    anno, videos = tmp_path / "anno", tmp_path / "videos"
    anno.mkdir()
    videos.mkdir()
    (anno / "all_data_val.json").write_text(json.dumps(HIREST))
    make_clip(videos / "vidD.mp4", fps="10", seconds=4)
    out = tmp_path / "out"
    summary = process_hirest(anno, out, videos_dir=videos, clips_dir=tmp_path / "clips", progress=False)
    grounding = json.loads((out / "grounding_anno" / "val.json").read_text())
    steps = json.loads((out / "step_anno" / "val.json").read_text())
    assert grounding == [
        {"image_id": "vidA.mp4", "caption": "how to make tea", "id": 0, "timestamp": [10, 50], "duration": 120.5},
        {"image_id": "vidD.mp4", "caption": "how to fold", "id": 1, "timestamp": [1.5, 3.0], "duration": 30.0},
    ]
    assert steps == [
        {"image_id": "vidA_10_50.mp4", "segments": [[2, 10], [11.5, 38]], "labels": ["boil water", "add tea"], "id": 0, "duration": 40},
        {"image_id": "vidD_1.5_3.0.mp4", "segments": [[0.0, 1.0]], "labels": ["fold"], "id": 1, "duration": 1.5},
    ]
    assert [o.key for o in summary.failed] == ["clip vidA_10_50.mp4"]  # vidA was not downloaded
    assert (tmp_path / "clips" / "vidD_1.5_3.0.mp4").is_file()
    assert process_hirest(anno, out, videos_dir=videos, clips_dir=tmp_path / "clips", progress=False).counts()["skipped"] == 3


# ----------------------------------------------------------------------------------------------- coco-gt
def test_coco_gt_charades_scores_100(tmp_path):
    anno = tmp_path / "anno"
    anno.mkdir()
    (anno / "charades_sta_test.txt").write_text("AO8RW 0.0 6.9##a person is putting a book on a shelf.\nAO8RW 5 9##x\nZZZ11 12.5 20.1##person opens a door.\n")
    build_coco_gt("charades", anno, tmp_path / "gt", progress=False)
    path = tmp_path / "gt" / "test.caption_coco_format.json"
    gt = load_tvg_gt(path)
    assert gt["annotations"] == [
        {"image_id": "AO8RW.mp4", "caption": "a person is putting a book on a shelf.", "timestamp": [0.0, 6.9], "id": 0},
        {"image_id": "ZZZ11.mp4", "caption": "person opens a door.", "timestamp": [12.5, 20.1], "id": 2},
    ]
    pred = {str(a["id"]): {"timestamp": [a["timestamp"]]} for a in gt["annotations"]}
    assert tvg_metrics(pred, gt) == {"R1@0.3": 100.0, "R1@0.5": 100.0, "R1@0.7": 100.0, "mIoU": 100.0}
    assert [a["id"] for a in read_tvg_annotations(path)] == [0, 2]


def _dvc_perfect_prediction(gt_path):
    return {video: [{"timestamp": list(s), "caption": c} for s, c in zip(segments, captions)]
            for video, segments, captions in _gt_videos(read_coco_annotations(gt_path))}


@pytest.fixture()
def dvc_gts(tmp_path):
    anno = tmp_path / "anno"
    anno.mkdir()
    yc = {"database": {
        "vid1": {"duration": 100.0, "subset": "validation", "annotations": [
            {"segment": [5, 20], "sentence": "spread margarine on two slices of white bread"},
            {"segment": [25, 60], "sentence": "place a slice of cheese on the bread."}]},
        "vid2": {"duration": 50.0, "subset": "training", "annotations": [{"segment": [0, 10], "sentence": "cut the onion"}]},
        "vid3": {"duration": 80.0, "subset": "validation", "annotations": [{"segment": [30, 70], "sentence": "fry the egg in a pan"}]},
    }}
    (anno / "youcookii_annotations_trainval.json").write_text(json.dumps(yc))
    anet = {"v_a": {"duration": 30.0, "timestamps": [[0, 10.5], [10.5, 30]], "sentences": ["A man is standing in a gym.", " He lifts a heavy barbell."]},
            "v_b": {"duration": 20.0, "timestamps": [[2, 18]], "sentences": ["Two dogs play in the snow."]}}
    (anno / "val_1.json").write_text(json.dumps(anet))
    build_coco_gt("youcook2", anno, tmp_path / "yc", progress=False)
    build_coco_gt("anet", anno, tmp_path / "anet", progress=False)
    return tmp_path / "yc" / "val.caption_coco_format.json", tmp_path / "anet" / "val.caption_coco_format.json"


def test_coco_gt_dvc_files(dvc_gts):
    yc, anet = dvc_gts
    ann = read_coco_annotations(yc)
    assert [a["image_id"] for a in ann] == ["vid1.mp4", "vid3.mp4"]
    assert ann[0]["pure_cap"] == "spread margarine on two slices of white bread. place a slice of cheese on the bread"
    assert _gt_videos(ann)[0][2] == ["spread margarine on two slices of white bread.", "place a slice of cheese on the bread."]
    a = read_coco_annotations(anet)
    assert a[0] == {"image_id": "v_a.mp4", "caption": "A man is standing in a gym. He lifts a heavy barbell.",
                    "segments": [[0, 10.5], [10.5, 30]], "duration": 30.0, "id": 0}


@pytest.mark.slow
def test_coco_gt_dvc_perfect_prediction_scores_100(dvc_gts):
    if not java_available():
        pytest.skip("the DVC metric needs Java (METEOR / PTB tokenizer)")
    from timechat.metrics import JavaSession

    with JavaSession() as session:
        for path in dvc_gts:
            m = dvc_metrics(_dvc_perfect_prediction(path), load_dvc_gt(path), "val", session=session)
            assert m["Precision_Mean"] == m["Recall_Mean"] == m["F1_Score"] == pytest.approx(100.0), (path, m)
            assert m["SODA_c_2"] > 90 and m["METEOR"] > 90, (path, m)


def test_coco_gt_qvhighlights_and_video_filter(tmp_path):
    need("ffmpeg", "ffprobe")
    anno, videos = tmp_path / "anno", tmp_path / "videos"
    anno.mkdir()
    videos.mkdir()
    rows = [{"qid": 7, "query": "a man cooks", "duration": 150, "vid": "abc_60.0_210.0", "relevant_clip_ids": [1, 2],
             "saliency_scores": [[1, 2, 3], [4, 4, 4]], "relevant_windows": [[2, 6]]},
            {"qid": 9, "query": "a dog barks", "duration": 150, "vid": "gone_0.0_150.0"}]
    (anno / "highlight_val_release.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    make_clip(videos / "abc_60.0_210.0.mp4", seconds=1)
    build_coco_gt("qvhighlights", anno, tmp_path / "gt", videos_dir=videos, progress=False)
    ann = read_coco_annotations(tmp_path / "gt" / "val.caption_coco_format.json")
    assert ann == [{"image_id": "abc_60.0_210.0.mp4", "caption": "a man cooks", "id": 7, "duration": 150, "relevant_clip_ids": [1, 2],
                    "saliency_scores": [[1, 2, 3], [4, 4, 4]], "relevant_windows": [[2, 6]]}]
    report = json.loads((tmp_path / "gt" / "coco_gt_report.json").read_text())
    assert report["dropped_for_video"] == [{"split": "val", "image_id": "gone_0.0_150.0.mp4", "id": 9, "reason": "video_missing"}]
