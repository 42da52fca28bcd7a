"""Frame sampling, timestamps, decoding errors and the PyAV fallback."""

from __future__ import annotations

import random

import numpy as np
import pytest

from tests.data._videos import write_video
from timechat.data import video as video_mod
from timechat.data.video import (
    VideoDecodeError,
    build_msg,
    load_video,
    pyav_read_frames,
    rand_indices,
    timestamp_sentences,
    timestamp_strings,
    uniform_indices,
)
from timechat.reference.data import sentences_from_msg


def test_uniform_float_truncation_quirk():
    idx = uniform_indices(416, 96)
    assert len(idx) == 96
    # float64 k * (416/96) truncates below the exact value at these positions
    assert [idx[27], idx[51], idx[54], idx[57]] == [116, 220, 233, 246]
    assert [27 * 416 // 96, 51 * 416 // 96] == [117, 221]
    assert uniform_indices(120, 8) == [0, 15, 30, 45, 60, 75, 90, 105]
    assert uniform_indices(90, 90) == list(range(90))


def test_timestamps_half_even_and_msg():
    assert timestamp_strings([51, 57, 0], 12.0) == ["4.2", "4.8", "0.0"]
    assert timestamp_strings([0, 1, 2, 3], 30.0) == ["0.0", "0.0", "0.1", "0.1"]
    ts = timestamp_strings([0, 15, 105], 10.0)
    msg = build_msg(ts)
    assert msg == "The video contains 3 frames sampled at 0.0, 1.5, 10.5 seconds. "
    assert timestamp_sentences(ts) == sentences_from_msg(msg)
    assert timestamp_sentences(ts)[2] == "This frame is sampled at 10.5 second."


def test_rand_sampling_reproducible_and_fallback():
    assert rand_indices(120, 8, random.Random(1234))[0] == [12, 22, 31, 45, 61, 87, 99, 105]
    idx, fb = rand_indices(90, 90, random.Random(0), np.random.RandomState(0))
    assert fb and idx == sorted(np.random.RandomState(0).permutation(90)[:90].tolist())


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(VideoDecodeError, match="missing") as e:
        load_video(tmp_path / "nope.mp4", 4, 32, 32)
    assert "nope.mp4" in str(e.value)
    bad = tmp_path / "corrupt.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 50)
    with pytest.raises(VideoDecodeError, match="undecodable") as e:
        load_video(bad, 4, 32, 32)
    assert "corrupt.mp4" in str(e.value)
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(VideoDecodeError, match="empty"):
        load_video(empty, 4, 32, 32)


def test_decord_and_pyav_agree_native(tmp_path):
    path = write_video(tmp_path / "v.mp4", n_frames=20, fps=10)
    clip = load_video(path, 5, -1, -1)
    assert clip.backend == "decord" and clip.indices == [0, 4, 8, 12, 16]
    assert clip.frames.shape == (5, 32, 32, 3)
    np.testing.assert_array_equal(clip.frames.numpy(), pyav_read_frames(path, clip.indices))
    py = load_video(path, 5, -1, -1, backend="pyav")
    assert (py.indices, py.fps, py.vlen, py.msg) == (clip.indices, clip.fps, clip.vlen, clip.msg)


def test_av1_falls_back_to_pyav(tmp_path):
    av = pytest.importorskip("av")
    try:
        av.codec.Codec("libsvtav1", "w")
    except Exception:  # noqa: BLE001 - encoder missing in this av build
        pytest.skip("no AV1 encoder in this PyAV build")
    path = write_video(tmp_path / "av1.mp4", n_frames=12, fps=6, codec="libsvtav1")
    with pytest.raises(VideoDecodeError, match="undecodable"):
        load_video(path, 4, 32, 32, backend="decord")
    clip = load_video(path, 4, 32, 32)  # auto: decord fails, PyAV reads it
    assert clip.backend == "pyav"
    assert clip.indices == [0, 3, 6, 9] and clip.vlen == 12 and clip.fps == 6.0
    assert clip.frames.shape == (4, 32, 32, 3)


def test_fallback_used_when_decord_fails(tmp_path, monkeypatch):
    path = write_video(tmp_path / "v.mp4", n_frames=10, fps=5)

    def broken(*args, **kwargs):
        raise RuntimeError("cannot find video stream with wanted index: -1")

    monkeypatch.setattr(video_mod, "_decord_open", broken)
    clip = load_video(path, 3, -1, -1)
    assert clip.backend == "pyav" and clip.vlen == 10 and clip.indices == uniform_indices(10, 3)
