"""Long videos (issue 17): frame budgets, frame times, token counts, the position-table overflow
rule, chunked encoding and the context check. Fast: the tiny model, no video files."""

from __future__ import annotations

import logging
import math

import pytest
import torch

from timechat.config import load_config, eval_config
from timechat.data.conversation import num_video_tokens
from timechat.data.settings import DataSettings, FrameBudget, data_settings
from timechat.data.video import build_msg, sample_indices, timestamp_strings
from timechat.models.builders import timechat_tiny
from timechat.models.generation import ContextOverflowError, GenerationConfig, check_context, left_cut
from timechat.models.timechat import TimeChat
from timechat.validation import UnknownKeyError


def test_frame_budget_counts():
    fixed = FrameBudget()
    assert fixed.count(416, 30.0) == 96 and fixed.count(50, 30.0) == 50  # min(n_frms, vlen), as the original
    by_rate = FrameBudget(fps=1.0, min_frames=8, max_frames=384)
    assert by_rate.count(1200, 2.0) == 384  # 600 s, capped
    assert by_rate.count(200, 2.0) == 100  # 100 s at 1 fps
    assert by_rate.count(6, 2.0) == 6  # 3 s: min 8, but the file has 6 frames
    assert by_rate.count(30, 10.0) == 8  # 3 s: raised to min_frames
    assert FrameBudget(fps=1.0).count(18000, 30.0) == 600  # a 10-minute video: exactly 600, not 601
    assert FrameBudget(fps=0.5).count(301, 10.0) == 16  # 30.1 s -> ceil(15.05)
    assert (fixed.largest, by_rate.largest, FrameBudget(fps=1.0).largest) == (96, 384, None)
    assert DataSettings(fps=1.0, max_frames=384).frame_budget == FrameBudget(96, 1.0, 1, 384)


@pytest.mark.parametrize("kwargs, match", [
    ({"fps": 0.0}, "fps must be > 0"),
    ({"fps": 1.0, "min_frames": 0}, "min_frames must be >= 1"),
    ({"fps": 1.0, "min_frames": 8, "max_frames": 4}, r"max_frames \(4\) must be >= min_frames \(8\)"),
    ({"max_frames": 384}, "set fps too"),
    ({"min_frames": 8}, "set fps too"),
])
def test_frame_budget_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DataSettings(**kwargs)


def test_frame_budget_config_keys(tmp_path):
    cfg = eval_config(load_config(None, ["eval.fps=1.0", "eval.min_frames=8", "eval.max_frames=384"]))
    assert cfg.frame_budget == FrameBudget(96, 1.0, 8, 384)
    assert eval_config(load_config(None, ["eval.task=tvg"])).frame_budget == FrameBudget()  # unchanged default
    with pytest.raises(UnknownKeyError, match="eval.fps_max"):
        load_config(None, ["eval.fps_max=3"])
    with pytest.raises(ValueError, match="set fps too"):
        eval_config(load_config(None, ["eval.max_frames=384"]))
    with pytest.raises(UnknownKeyError, match="max_frame"):
        data_settings(None, {"fps": 1.0, "max_frame": 4}, "datasets.x")
    assert data_settings(None, {"fps": 1.0, "max_frames": 4}, "datasets.x").frame_budget.largest == 4


def test_ten_minute_frame_times_and_token_count():
    """600 s at 2 fps (1200 file frames), sampled at 1 fps: frame k is at k seconds; the tiny model
    (N_v 4, stride 4) and TimeChat-7B (32, 32) give N_v * ceil(T / stride) placeholders."""
    vlen, video_fps = 1200, 2.0
    n = FrameBudget(fps=1.0, max_frames=600).count(vlen, video_fps)
    idx = sample_indices(vlen, n, "uniform")
    ts = timestamp_strings(idx, video_fps)
    assert len(ts) == 600 and ts[:3] == ["0.0", "1.0", "2.0"] and ts[-1] == "599.0"
    assert ts == [f"{k}.0" for k in range(600)]
    assert build_msg(ts).startswith("The video contains 600 frames sampled at 0.0, 1.0, 2.0, ")
    tiny = timechat_tiny()
    assert tiny.num_video_tokens(600) == num_video_tokens(600, 4, 4) == 4 * math.ceil(600 / 4) == 600
    assert num_video_tokens(600) == 32 * 19 == 608  # 7B: 19 windows, the last one of 24 frames


@pytest.fixture(scope="module")
def tiny_model() -> TimeChat:
    torch.manual_seed(0)
    return TimeChat(timechat_tiny(position_overflow="nearest")).eval()


def _features(model: TimeChat, n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    cfg = model.cfg
    feats = torch.randn(n, cfg.vision.num_tokens, cfg.vision.width, generator=g)  # (B*T, N_img, D_v)
    ids = torch.randint(1, 200, (n, 5), generator=g)
    mask = torch.ones(n, 5, dtype=torch.long)
    mask[:, 4] = 0  # a padded timestamp position, as batches have
    return feats, ids, mask


def test_position_overflow_rules(tiny_model):
    model = tiny_model
    table = model.frame_position_embedding.weight.detach()  # (32, D)
    rows = table.shape[0]
    with torch.no_grad():
        for rule in ("error", "nearest", "linear"):
            model.cfg.position_overflow = rule
            assert torch.equal(model.frame_positions(rows), table)  # within the table: the table itself
            assert torch.equal(model.frame_positions(7), table[:7])
        model.cfg.position_overflow = "nearest"
        nearest = model.frame_positions(600)
        assert torch.equal(nearest, table[[i * rows // 600 for i in range(600)]])  # the original's 32 -> 96 rule
        model.cfg.position_overflow = "linear"
        linear = model.frame_positions(600)
        assert torch.equal(linear[0], table[0]) and torch.allclose(linear[-1], table[-1], atol=1e-6)
        x = 300 * (rows - 1) / 599  # row 300 lies between source rows floor(x) and floor(x) + 1
        lo = int(x)
        torch.testing.assert_close(linear[300], table[lo] + (x - lo) * (table[lo + 1] - table[lo]), atol=1e-6, rtol=0)
        model.cfg.position_overflow = "error"
        with pytest.raises(ValueError, match="video has 33 frames but the frame-position table has 32 rows"):
            model.frame_positions(33)
    model.cfg.position_overflow = "nearest"


@pytest.mark.parametrize("mode", ["compat", "fixed"])
def test_chunked_encoding_matches_unchunked(tiny_model, mode):
    """ViT + frame Q-Former over chunks of 3 frames (a chunk across the two videos of the batch, a
    short last chunk) and the video Q-Former one window per call, vs all at once: equal within
    atol = rtol = 1e-5 in fp32 (only the batch size of the matmuls changes; the largest difference
    measured is printed on failure)."""
    model = tiny_model
    model.cfg.mode = mode
    b, t = 2, 11  # 3 windows of 4, 4 and 3 frames
    g = torch.Generator().manual_seed(1)
    pixels = torch.randn(b, 3, t, model.cfg.vision.image_size, model.cfg.vision.image_size, generator=g)
    _, ids, mask = _features(model, b * t)
    try:
        with torch.no_grad():
            model.cfg.frame_chunk_size = None
            whole = model.encode_video(pixels, ids, mask)
            feats = model.encode_frames(pixels.permute(0, 2, 1, 3, 4).reshape(b * t, 3, *pixels.shape[-2:]))
            whole_f = model.encode_from_features(feats, b, t, ids, mask)
            model.cfg.frame_chunk_size = 3
            chunked = model.encode_video(pixels, ids, mask)
            chunked_f = model.encode_from_features(feats, b, t, ids, mask)
    finally:
        model.cfg.frame_chunk_size, model.cfg.mode = None, "compat"
    assert whole.shape == chunked.shape == (b, 4 * math.ceil(t / 4), model.llm_hidden_size)
    torch.testing.assert_close(chunked, whole, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(chunked_f, whole_f, atol=1e-5, rtol=1e-5)
    assert (chunked - whole).abs().max() < 1e-5


def test_context_check():
    cfg = GenerationConfig(max_new_tokens=10, max_context=100)
    assert left_cut([50, 90], cfg) == [0, 0]
    assert left_cut([95, 60], cfg) == [5, 0]  # padded to 95: the cut of 5 falls in row 1's padding
    check_context([(20, 40, 30)], cfg)  # 90 + 10 fits
    with pytest.raises(ContextOverflowError) as err:
        check_context([(3, 80, 20)], cfg, max_positions=4096, names=["sample 'v1'"])
    msg = str(err.value)
    for part in ("sample 'v1'", "103 prompt tokens (3 text + 80 video + 20 text)", "max_new_tokens 10",
                 "max_context 100", "drop 10 video tokens", "4096 positions"):
        assert part in msg


def test_context_check_text_cut_warns(caplog):
    cfg = GenerationConfig(max_new_tokens=10, max_context=100)
    with caplog.at_level(logging.WARNING, logger="timechat.models.generation"):
        check_context([(20, 40, 45)], cfg, max_positions=64)  # cut 15 < 20 text tokens before the video
    assert "the first 15 text tokens are cut" in caplog.text
    assert "past the LLM's 64 positions" in caplog.text
