"""The QA benchmarks through the real evaluation chain (tiny random model, synthetic videos):
batch size 1 and batch size N give the same answers and the same original-format files.

One data folder holds each benchmark's annotations in its original layout, pointing at the
synthetic test videos (MVBench: the original's 20 json files and video prefixes, one bounded task,
one JPEG frame folder).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from timechat.config import load_config
from timechat.eval.inference import MERGED_FILE
from timechat.eval.tasks.mvbench import MVBENCH_DATA_LIST

REPO = Path(__file__).resolve().parents[2]
CFG = REPO / "eval_configs" / "tiny_synthetic.yaml"

# benchmark -> (eval overrides relative to the data root, the original-format files it writes)
BENCHES = {
    "mvbench": ({"eval.anno_path": "mvbench/json", "eval.videos_dir": "mvbench/video", "eval.timestamp_tokenizer": "llama"},
                ["test.json", "upload_leaderboard.json"]),
    "tempcompass": ({"eval.anno_path": "tempcompass/questions", "eval.videos_dir": "tempcompass/videos"},
                    ["multi-choice.json", "yes_no.json", "caption_matching.json", "captioning.json"]),
    "egoschema": ({"eval.anno_path": "egoschema", "eval.videos_dir": "egoschema/videos"}, ["pred.json", "output.csv"]),
    "videomme": ({"eval.anno_path": "videomme", "eval.videos_dir": "videomme/data"}, ["video-mme.json"]),
}


def _write(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


@pytest.fixture(scope="module")
def qa_root(tmp_path_factory) -> Path:
    from PIL import Image

    from timechat.data.synthetic import generate_synthetic_dataset

    root = tmp_path_factory.mktemp("qa")
    generate_synthetic_dataset(root / "syn", num_train=0, num_val=0, num_test=3, duration=(4.0, 6.0), fps=4.0, size=32,
                               max_events=2, min_event_duration=2.0)
    videos = sorted((root / "syn" / "videos" / "test").glob("*.mp4"))
    # MVBench: all 20 task files; a bounded video task, an unbounded one and the frame-folder task
    mv = root / "mvbench"
    for name, (js, prefix, dtype, bound) in MVBENCH_DATA_LIST.items():
        items = []
        if name in ("Action Sequence", "Action Antonym"):
            for k, v in enumerate(videos):
                shutil.copy(v, (mv / "video" / prefix).mkdir(parents=True, exist_ok=True) or mv / "video" / prefix / v.name)
                items.append({"video": v.name, "question": f"What happens {k}?", "candidates": ["red", "blue", "green"],
                              "answer": "blue", "start": 0.5, "end": 3.0})
        elif name == "Episodic Reasoning":
            frames = mv / "video" / prefix / "clip"
            frames.mkdir(parents=True)
            for i in range(1, 13):
                Image.new("RGB", (40, 30), (20 * i, 100, 200 - 10 * i)).save(frames / f"{i:05d}.jpg")
            items.append({"video": "clip", "question": "Why?", "candidates": ["a", "b"], "answer": "a", "start": 0.5,
                          "end": 3.0})
        _write(mv / "json" / js, items)
    # TempCompass: the four task types
    tc = root / "tempcompass"
    for v in videos:
        (tc / "videos").mkdir(parents=True, exist_ok=True)
        shutil.copy(v, tc / "videos" / v.name)
    vids = [v.stem for v in videos]
    _write(tc / "questions" / "multi-choice.json",
           {vid: {"speed": [{"question": "How fast?\nA. slow\nB. fast", "answer": "B. fast"}]} for vid in vids})
    _write(tc / "questions" / "yes_no.json", {vid: {"action": [{"question": "Does it move?", "answer": "yes"}]} for vid in vids})
    _write(tc / "questions" / "caption_matching.json",
           {vid: {"direction": [{"question": "Which caption?\nCaption A: left\nCaption B: right", "answer": "Caption A: left"}]}
            for vid in vids})
    _write(tc / "questions" / "captioning.json", {vids[0]: {"order": [{"question": "Describe.", "answer": "x"}]}})
    # EgoSchema: the original folder (questions.json, subset_answers.json), videos named by q_uid
    eg = root / "egoschema"
    qs = []
    for k, v in enumerate(videos):
        uid = f"q{k}"
        (eg / "videos").mkdir(parents=True, exist_ok=True)
        shutil.copy(v, eg / "videos" / f"{uid}.mp4")
        qs.append({"q_uid": uid, "google_drive_id": "g", "question": f"What does c do {k}?",
                   **{f"option {i}": f"option text {i}" for i in range(5)}})
    _write(eg / "questions.json", qs)
    _write(eg / "subset_answers.json", {q["q_uid"]: k % 5 for k, q in enumerate(qs)})
    # Video-MME: {key: [questions]}, videos by videoID
    vm = root / "videomme"
    data = {}
    for k, v in enumerate(videos):
        (vm / "data").mkdir(parents=True, exist_ok=True)
        shutil.copy(v, vm / "data" / v.name)
        data[f"{k:03d}"] = [{"videoID": v.stem, "duration": "short", "question": f"Q{k}.{j}?",
                             "option": ["A. one", "B. two", "C. three", "D. four"], "answer": "ABCD"[j]} for j in range(2)]
    _write(vm / "video-mme.json", data)
    return root


def _run(root: Path, bench: str, out: Path, batch_size: int) -> dict:
    from timechat.eval.run import run_evaluation

    paths, _ = BENCHES[bench]
    values = {"paths.data_root": root, "paths.output_root": out.parent, "output_dir": out, "eval.task": bench,
              "eval.checkpoint": "null", "eval.num_frames": 4, "eval.max_new_tokens": 6, "eval.batch_size": batch_size,
              "eval.num_workers": 0, "eval.plots": "false", "eval.system": "benchmark",
              **{k: root / v if k != "eval.timestamp_tokenizer" else v for k, v in paths.items()}}
    return run_evaluation(load_config(CFG, [f"{k}={v}" for k, v in values.items()]))


@pytest.mark.parametrize("bench", list(BENCHES))
def test_batch_one_equals_batch_n(qa_root, tmp_path, bench):
    one = _run(qa_root, bench, tmp_path / "bs1", 1)
    many = _run(qa_root, bench, tmp_path / "bs3", 3)
    answers = {e["id"]: e.get("answer") for e in json.loads((tmp_path / "bs1" / MERGED_FILE).read_text())}
    assert answers and all(a is not None for a in answers.values())
    assert {e["id"]: e.get("answer") for e in json.loads((tmp_path / "bs3" / MERGED_FILE).read_text())} == answers
    assert one["counts"] == many["counts"] and one["metrics"] == many["metrics"]
    for name in BENCHES[bench][1]:  # the original-format files, byte for byte
        assert (tmp_path / "bs1" / name).read_bytes() == (tmp_path / "bs3" / name).read_bytes(), name
