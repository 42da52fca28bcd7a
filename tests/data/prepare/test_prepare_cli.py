"""The command line wires every step; exit status 0 / 1 (failures) / 2 (bad input); audio name clashes."""

from __future__ import annotations

import json

from tests.data.prepare._media import make_clip, need
from timechat.data.prepare.__main__ import main
from timechat.data.prepare.audio import extract_audio


def test_cli_steps_without_video(tmp_path, capsys):
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "v.txt").write_text("0\t1\tone two three\n0\t1\tbad line\n")
    assert main(["clean-asr", str(raw), str(tmp_path / "clean"), "--no-progress"]) == 0
    assert "clean-asr: 1 done, 0 skipped, 0 failed" in capsys.readouterr().out
    (raw / "w.txt").write_text("no tabs\n")
    assert main(["clean-asr", str(raw), str(tmp_path / "clean"), "--no-progress"]) == 1
    out = capsys.readouterr().out
    assert "0 done, 1 skipped, 1 failed" in out and "FAILED w.txt:" in out and "w.txt:1: expected" in out

    (tmp_path / "anno").mkdir()
    (tmp_path / "anno" / "charades_sta_train.txt").write_text("AAAAA 1 2##a query.\n")
    assert main(["coco-gt", "charades", str(tmp_path / "anno"), str(tmp_path / "gt"), "--no-progress"]) == 0
    assert json.loads((tmp_path / "gt" / "train.caption_coco_format.json").read_text())["annotations"][0]["id"] == 0

    (tmp_path / "hirest").mkdir()
    (tmp_path / "hirest" / "all_data_test.json").write_text(json.dumps({"q": {"a.mp4": {
        "relevant": True, "clip": True, "v_duration": 9, "bounds": [1, 5], "steps": [{"heading": "h", "absolute_bounds": [2, 3]}]}}}))
    assert main(["hirest", str(tmp_path / "hirest"), str(tmp_path / "hout"), "--no-progress"]) == 0
    assert json.loads((tmp_path / "hout" / "step_anno" / "test.json").read_text())[0]["segments"] == [[1, 2]]

    (tmp_path / "valley.json").write_text(json.dumps([{"source": "jukinmedia", "video": "x.mp4", "v_id": "x", "conversations": [
        {"from": "human", "value": "<video>\nq"}, {"from": "gpt", "value": "a"}]}]))
    assert main(["valley", str(tmp_path / "valley.json"), str(tmp_path / "v_out.json"), str(tmp_path), "--no-progress"]) == 0
    assert json.loads((tmp_path / "v_out.json").read_text()) == []  # its video is absent

    assert main(["audit", str(tmp_path / "nope.json"), str(tmp_path), str(tmp_path / "o.json"), "--no-progress"]) == 2
    assert "error:" in capsys.readouterr().err


def test_audio_name_clash_is_reported(tmp_path):
    need("ffmpeg", "ffprobe")
    (tmp_path / "v").mkdir()
    make_clip(tmp_path / "v" / "clip.a.mp4", seconds=1, audio=True)
    make_clip(tmp_path / "v" / "clip.b.mp4", seconds=1, audio=True)
    make_clip(tmp_path / "v" / "other.mp4", seconds=1, audio=True)
    summary = extract_audio(tmp_path / "v", tmp_path / "a", progress=False)
    assert [o.key for o in summary.done] == ["other.mp4"]
    assert sorted(o.key for o in summary.failed) == ["clip.a.mp4", "clip.b.mp4"]
    assert "all map to clip.wav" in summary.failed[0].reason and not (tmp_path / "a" / "clip.wav").exists()
    report = json.loads((tmp_path / "a" / "audio_report.json").read_text())
    assert report["counts"] == {"done": 1, "skipped": 0, "failed": 2}
