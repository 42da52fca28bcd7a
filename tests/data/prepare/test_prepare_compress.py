"""`compress`: output fps, size, duration and stream layout on generated clips; timestamps of a known event."""

from __future__ import annotations

import json
from fractions import Fraction

import pytest

from tests.data.prepare._media import av1_encoder, make_clip, need, video_facts
from timechat.data.prepare.compress import compress_videos, output_size, scale_filter
from timechat.data.video import load_video

FPS = 6

# name -> make_clip kwargs
CLIPS = {
    "fps24.mp4": dict(fps="24", size=(64, 48)),
    "fps25_audio.mp4": dict(fps="25", size=(80, 45), audio=True),
    "fps2997.mp4": dict(fps="30000/1001", size=(96, 54)),
    "fps60.mp4": dict(fps="60", size=(64, 36)),
    "vfr.mp4": dict(fps="30", size=(64, 48), vfr=True),
    "odd_321x241.mp4": dict(fps="25", size=(321, 241)),
    "portrait_240x320.mp4": dict(fps="25", size=(240, 320)),
    "square.mkv": dict(fps="25", size=(50, 50)),
}


@pytest.fixture(scope="module", params=["exact", "original"])
def compressed(tmp_path_factory, request):
    need("ffmpeg", "ffprobe")
    src = tmp_path_factory.mktemp("raw")
    clips = dict(CLIPS)
    enc = av1_encoder()
    if enc is not None:
        clips["av1.mp4"] = dict(fps="25", size=(96, 64), codec=enc)  # SVT-AV1 needs >= 64 px
    for name, kw in clips.items():
        make_clip(src / name, **kw)
    out = tmp_path_factory.mktemp("out")
    summary = compress_videos(src, out, fps=FPS, short_side=24, frame_select=request.param, workers=2, progress=False)
    return src, out, summary, clips, request.param


def test_scale_filter_is_the_original_expression():
    assert scale_filter(224, "original") == "scale='if(gt(a,1),trunc(oh*a/2)*2,224)':'if(gt(a,1),224,trunc(ow*a/2)*2)'"
    assert output_size(1920, 1080) == (398, 224) == output_size(1920, 1080, portrait="original")
    assert output_size(321, 241) == (298, 224)
    assert output_size(360, 640) == (224, 398)
    assert output_size(360, 640, portrait="original") == (224, 126)  # the original squashed portrait videos
    assert output_size(500, 500) == (224, 224)


def test_outputs_have_requested_fps_size_and_duration(compressed):
    src, out, summary, clips, mode = compressed
    assert summary.counts() == {"done": len(clips), "skipped": 0, "failed": 0}, summary.text()
    if "av1.mp4" not in clips:
        print("this ffmpeg has no AV1 encoder: the AV1 case was not generated")
    for name, kw in clips.items():
        fin, fout = video_facts(src / name), video_facts(out / name)
        w, h = output_size(fin["width"], fin["height"], 24)
        assert (fout["width"], fout["height"]) == (w, h), name
        assert min(w, h) == 24 and w % 2 == 0 and h % 2 == 0, name
        assert fout["fps"] == Fraction(FPS) and fout["r_fps"] == Fraction(FPS), name
        assert fout["kinds"] == ["video"], name  # audio dropped
        # the original's `-r` adds 2 output frames (module docstring of compress); `exact` keeps the duration
        extra = 2 if mode == "original" else 0
        assert abs(fout["duration"] - extra / FPS - fin["duration"]) <= 1 / FPS + 1e-6, (name, mode, fin["duration"], fout["duration"])
        assert abs(fout["frames"] - extra - fin["duration"] * FPS) <= 1, (name, mode, fout["frames"])
    if "av1.mp4" in clips:
        assert video_facts(src / "av1.mp4")["codec"] == "av1"
    assert video_facts(src / "vfr.mp4")["fps"] != video_facts(src / "vfr.mp4")["r_fps"]  # really variable


def test_rerun_skips_and_report(compressed):
    src, out, summary, clips, mode = compressed
    report = json.loads((out / "compress_report.json").read_text())
    assert report["counts"]["done"] == len(clips) and report["params"]["fps"] == FPS
    assert report["params"]["frame_select"] == mode
    again = compress_videos(src, out, fps=FPS, short_side=24, frame_select=mode, progress=False)
    assert again.counts() == {"done": 0, "skipped": len(clips), "failed": 0}
    with pytest.raises(ValueError, match="separate folders"):
        compress_videos(src, src / "sub", progress=False)


def test_broken_input_is_reported(tmp_path):
    need("ffmpeg", "ffprobe")
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "broken.mp4").write_bytes(b"not a video at all")
    make_clip(tmp_path / "in" / "ok.mp4", seconds=1)
    summary = compress_videos(tmp_path / "in", tmp_path / "out", progress=False)
    assert [o.key for o in summary.failed] == ["broken.mp4"] and "broken.mp4" in summary.failed[0].reason
    assert not (tmp_path / "out" / "broken.mp4").exists() and (tmp_path / "out" / "ok.mp4").is_file()
    assert "FAILED broken.mp4" in summary.text()


def _red_times(path):
    clip = load_video(path, num_frames=96, height=224, width=224, sampling="uniform")
    frames = clip.frames.float()  # (T, H, W, C)
    mean = frames.mean((1, 2))  # (T, C)
    red = (mean[:, 0] > 150) & (mean[:, 1] < 80) & (mean[:, 2] < 80)
    return clip, [float(t) for t, r in zip(clip.timestamps, red.tolist()) if r]


@pytest.mark.parametrize("fps", ["24", "30000/1001", "60"])
def test_prompt_timestamps_match_source_event(tmp_path, fps):
    """A red event at [4, 5) s of the source: where the prepared video's prompt timestamps put it."""
    need("ffmpeg", "ffprobe")
    (tmp_path / "in").mkdir()
    make_clip(tmp_path / "in" / "event.mp4", fps=fps, size=(64, 48), seconds=8, red_from=4, red_to=5)
    compress_videos(tmp_path / "in", tmp_path / "exact", fps=FPS, short_side=48, frame_select="exact", progress=False)
    clip, red = _red_times(tmp_path / "exact" / "event.mp4")
    assert clip.fps == FPS and abs(clip.vlen - 8 * FPS) <= 1
    # exact: the event is where the source has it, to within one output frame (1/6 s; labels have 1 decimal)
    assert abs(red[0] - 4.0) <= 1 / FPS + 0.05 and abs(red[-1] - (5.0 - 1 / FPS)) <= 1 / FPS + 0.05, red
    assert len(red) == FPS
    if fps != "30000/1001":  # a source frame lies exactly at 4.0 s: the event starts exactly there
        assert red[0] == 4.0, red
    assert "sampled at 0.0, 0.2, 0.3, 0.5," in clip.msg  # the prompt's clock is the 6 fps file's

    compress_videos(tmp_path / "in", tmp_path / "original", fps=FPS, short_side=48, frame_select="original", progress=False)
    clip, red = _red_times(tmp_path / "original" / "event.mp4")
    assert clip.vlen == 8 * FPS + 2
    # the original's `-r`: content 1.25 output frames late, so the event starts 2 frames (0.33 s) late
    assert len(red) == FPS and 2 / FPS - 0.05 <= red[0] - 4.0 <= 3 / FPS + 0.05, red
    print(f"source {fps} fps: event at 4.0 s appears at {red[0]} s with the original's -r")
