"""`audit`: exact findings by record and reason on a root with removed, truncated, zeroed and short videos."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import timechat
from tests.data.prepare._media import make_clip, need
from timechat.data.datasets import VideoInstructDataset
from timechat.data.prepare.audit import answer_times, audit_records
from timechat.data.tokenization import LlamaTokenizer

Q = "Localize the events."


def _rec(video, answer, **extra):
    return {"video": video, "QA": [{"q": Q, "a": answer}], **extra}


RECORDS = [
    _rec("v/good.mp4", "0.0 - 3.0 seconds, a man talks.  3.0 - 7.5 seconds, he leaves."),  # 0 usable
    _rec("v/removed.mp4", "0.0 - 1.0 seconds, x y z."),  # 1 video_missing
    _rec("v/truncated.mp4", "0.0 - 1.0 seconds, x y z."),  # 2 video_undecodable
    _rec("v/zeroed.mp4", "0.0 - 1.0 seconds, x y z."),  # 3 video_empty
    _rec("v/short.mp4", "The given query happens in 4.0 - 6.5 seconds."),  # 4 video_too_short
    _rec("v/short.mp4", "The given query happens in 0.5 - 1.5 seconds."),  # 5 usable
    {"video": "v/good.mp4", "QA": []},  # 6 bad_record
    _rec("v/good.mp4", "There are 2 highlight moments in the 2.0, 4.0 second. Their saliency scores are 1.3, 2.0."),  # 7 usable
    _rec("v/good.mp4", "There are 2 highlight moments in the 6.0, 12.0 second. Their saliency scores are 1.3, 2.0."),  # 8 too short
    _rec("v/good.mp4", "Between 3 - 20 people walk by.", source="VATEX"),  # 9 usable: Valley free text is not time-checked
]
EXPECTED = [(1, "video_missing"), (2, "video_undecodable"), (3, "video_empty"), (4, "video_too_short"), (6, "bad_record"),
            (8, "video_too_short")]


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    need("ffmpeg", "ffprobe")
    root = tmp_path_factory.mktemp("root")
    (root / "v").mkdir()
    make_clip(root / "v" / "good.mp4", fps="10", size=(64, 48), seconds=8)
    make_clip(root / "v" / "short.mp4", fps="10", size=(64, 48), seconds=2)
    make_clip(root / "v" / "removed.mp4", fps="10", seconds=1)
    (root / "v" / "removed.mp4").unlink()
    make_clip(root / "v" / "truncated.mp4", fps="10", seconds=4)
    data = (root / "v" / "truncated.mp4").read_bytes()
    (root / "v" / "truncated.mp4").write_bytes(data[: len(data) // 2])
    (root / "v" / "zeroed.mp4").write_bytes(b"")
    records = root / "records.json"
    records.write_text(json.dumps(RECORDS))
    return root


def test_answer_times():
    assert answer_times("0.0 - 3.0 seconds, a.  3.0 - 7.5 seconds, b.") == [0.0, 3.0, 3.0, 7.5]
    assert answer_times("The given query happens in 24.3 - 30.4 seconds.") == [24.3, 30.4]
    assert answer_times("There are 3 highlight moments in the 82, 84, 86 second. Their saliency scores are 1.3, 2.0, 2.3.") == [82, 84, 86]
    assert answer_times("The highlight timestamps are in the 0, 2, 4 seconds. Their saliency scores are 1.0, 2.0, 3.0.") == [0, 2, 4]
    assert answer_times("Transcribed speech: 1.0 - 2.5 seconds, hello there. ") == [1.0, 2.5]
    assert answer_times("A dog runs in the park.") == []


def test_audit_reports_exactly_the_broken_records(root, tmp_path):
    out = tmp_path / "usable.json"
    summary = audit_records(root / "records.json", root, out, workers=2, progress=False)
    assert summary.counts() == {"done": 5, "skipped": 0, "failed": 0}  # 5 distinct videos checked
    report = json.loads((tmp_path / "usable.audit_report.json").read_text())
    assert [(u["index"], u["reason"]) for u in report["unusable"]] == EXPECTED
    assert report["counts_records"] == {"records": 10, "usable": 4, "unusable": 6, "by_reason": {
        "bad_record": 1, "bad_text": 0, "video_missing": 1, "video_empty": 1, "video_undecodable": 1, "video_too_short": 2}}
    assert "12" in report["unusable"][-1]["detail"] and "8.00 s" in report["unusable"][-1]["detail"]
    usable = json.loads(out.read_text())
    assert usable == [RECORDS[i] for i in (0, 5, 7, 9)]

    # resume: every video check is journalled, a rerun gives the same files without decoding again
    first = out.read_bytes()
    again = audit_records(root / "records.json", root, out, progress=False)
    assert again.counts() == {"done": 0, "skipped": 5, "failed": 0} and out.read_bytes() == first

    # the filtered JSON trains with no data error
    tok = LlamaTokenizer.from_pretrained(Path(timechat.__file__).parent / "assets" / "tiny_tokenizer")
    ds = VideoInstructDataset(str(out), root, tok, "llama", num_frames=4, image_size=32, num_video_query_token=4, stride=4,
                              sampling="uniform", train_aug=False)
    items = [ds[i] for i in range(len(ds))]
    assert [it["index"] for it in items] == list(range(4)) and ds.stats.failures == 0, ds.stats.summary()


def test_audit_valley_format_and_never_overwrites(root, tmp_path):
    valley = [
        {"source": "jukinmedia", "video": "v/good.mp4", "id": "j1",
         "conversations": [{"from": "human", "value": "<video>\nWhat happens?"}, {"from": "gpt", "value": "In 0 - 99 s, a test."}]},
        {"source": "jukinmedia", "video": "v/removed.mp4", "id": "j2",
         "conversations": [{"from": "human", "value": "What?\n<video>"}, {"from": "gpt", "value": "Nothing."}]},
        {"source": "jukinmedia", "video": "v/good.mp4", "id": "j3", "conversations": [{"from": "human", "value": "Hi"}]},
    ]
    path = tmp_path / "valley.json"
    path.write_text(json.dumps(valley))
    audit_records(path, root, tmp_path / "valley_ok.json", progress=False)
    report = json.loads((tmp_path / "valley_ok.audit_report.json").read_text())
    assert [(u["index"], u["id"], u["reason"]) for u in report["unusable"]] == [(1, "j2", "video_missing"), (2, "j3", "bad_record")]
    assert json.loads((tmp_path / "valley_ok.json").read_text()) == valley[:1]  # kept in its own format
    with pytest.raises(ValueError, match="never write over"):
        audit_records(path, root, path, progress=False)


def test_audit_fresh_rechecks_replaced_videos(root, tmp_path):
    local = tmp_path / "root"
    shutil.copytree(root, local)
    out = tmp_path / "ok.json"
    audit_records(local / "records.json", local, out, progress=False)
    shutil.copy(local / "v" / "good.mp4", local / "v" / "removed.mp4")  # the missing video arrives
    assert len(json.loads(out.read_text())) == 4
    audit_records(local / "records.json", local, out, fresh=True, progress=False)
    assert len(json.loads(out.read_text())) == 5
