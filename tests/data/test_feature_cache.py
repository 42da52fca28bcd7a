"""Frozen-feature cache: equal to the live ViT path, same loss, resumable build, refusals."""

from __future__ import annotations

import json

import pytest
import torch

from tests.data._videos import write_video
from timechat.data.collate import collate_train
from timechat.data.datasets import VideoInstructDataset
from timechat.data.feature_cache import (
    CachedFeatureDataset,
    FeatureCache,
    FeatureCacheError,
    build_feature_cache,
    collate_cached,
)
from timechat.data.tokenization import LlamaTokenizer
from timechat.factory import ASSETS_DIR
from timechat.models.builders import build_timechat, timechat_tiny

N_FRMS, SIZE = 8, 56
QA = [{"q": "When does the square move?", "a": "From 0.5 to 1.5 seconds."}]


@pytest.fixture(scope="module")
def tok():
    return LlamaTokenizer.from_pretrained(ASSETS_DIR / "tiny_tokenizer")


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m, _ = build_timechat(timechat_tiny())
    return m.eval()


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    write_video(root / "a.mp4", n_frames=24, fps=10, size=64)
    (root / "sub").mkdir()
    write_video(root / "sub" / "b.mp4", n_frames=30, fps=12, size=64)
    (root / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypisom" + b"\x13" * 300)
    return root


def _feature_shape(model) -> tuple[int, int]:
    return model.cfg.vision.num_tokens, model.cfg.vision.width  # (N_img, D_v)


def _dataset(videos, tok, records=None, **kw):
    records = records or [{"video": "a.mp4", "QA": QA}, {"video": "sub/b.mp4", "QA": QA}]
    kw = {"num_frames": N_FRMS, "image_size": SIZE, "sampling": "uniform", "train_aug": False, "num_video_query_token": 4,
          "stride": 4, "max_txt_len": 512, "seed": 0, **kw}
    return VideoInstructDataset(records, videos, tok, "llama", **kw)


@pytest.mark.parametrize("dtype", ["fp32", "fp16", "bf16"])
def test_cached_features_equal_live(model, videos, tok, tmp_path, dtype):
    report = build_feature_cache(model, ["a.mp4", "./sub/b.mp4"], tmp_path, N_FRMS, SIZE, dtype, batch_frames=N_FRMS,
                                 videos_root=videos)
    assert report.written == ["a.mp4", "sub/b.mp4"] and not report.failed
    cache = FeatureCache(tmp_path)
    live_ds = _dataset(videos, tok)
    for i, key in enumerate(["a.mp4", "sub/b.mp4"]):
        live = live_ds[i]
        with torch.no_grad():
            ref = model.encode_frames(live["images"].permute(1, 0, 2, 3))  # (T, N_img, D_v)
        feats, meta = cache.get(key)
        assert feats.shape == ref.shape == (N_FRMS, *_feature_shape(model))
        assert feats.dtype == {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[dtype]
        # metadata is what live decoding gives
        clip = live["clip"]
        assert (meta.indices, meta.timestamps, meta.msg, meta.fps, meta.vlen) == (
            clip.indices, clip.timestamps, clip.msg, clip.fps, clip.vlen)
        if dtype == "fp32":
            assert torch.equal(feats, ref)
        else:  # round to nearest: relative error <= 2^-(mantissa bits + 1)
            eps = {"fp16": 2.0**-11, "bf16": 2.0**-8}[dtype]
            err = (feats.float() - ref).abs()
            assert bool((err <= eps * ref.abs() + 1e-7).all()), float(err.max())
            assert torch.equal(feats, ref.to(feats.dtype))
    index = json.loads((tmp_path / "index.json").read_text())
    assert [v["video"] for v in index["videos"]] and index["settings"]["dtype"] == dtype


def test_training_loss_cached_equals_live(model, videos, tok, tmp_path):
    build_feature_cache(model, ["a.mp4", "sub/b.mp4"], tmp_path, N_FRMS, SIZE, "fp32", batch_frames=4, videos_root=videos)
    live_ds = _dataset(videos, tok)
    cached_ds = CachedFeatureDataset(live_ds, FeatureCache(tmp_path))
    live_items, cached_items = [live_ds[0], live_ds[1]], [cached_ds[0], cached_ds[1]]
    for a, b in zip(live_items, cached_items):
        assert "images" not in b and b["image_features"].shape == (N_FRMS, *_feature_shape(model))
        assert torch.equal(a["input_ids"], b["input_ids"]) and torch.equal(a["labels"], b["labels"])
        assert all(torch.equal(a["timestamps"][k], b["timestamps"][k]) for k in ("input_ids", "attention_mask"))
        assert a["clip"].msg == b["clip"].msg and a["clip"].indices == b["clip"].indices
    live_batch, cached_batch = collate_train(live_items), collate_cached(cached_items)
    assert cached_batch["image_features"].shape == (2 * N_FRMS, *_feature_shape(model)) and cached_batch["collate_path"] == "stacked"
    for k in ("input_ids", "labels", "attention_mask"):
        assert torch.equal(live_batch[k], cached_batch[k])
    model.train()  # tiny config: every dropout is 0
    try:
        losses, grads = [], []
        for batch in (live_batch, cached_batch):
            torch.manual_seed(0)
            model.zero_grad(set_to_none=True)
            out = model(batch)
            out["loss"].backward()
            losses.append(out["loss"].detach())
            grads.append(model.query_tokens.grad.clone())
    finally:
        model.zero_grad(set_to_none=True)
        model.eval()
    assert torch.isfinite(losses[0])
    torch.testing.assert_close(losses[1], losses[0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-4, atol=1e-6)
    # different frame counts: a list of per-video features, as collate_train's list path
    short = _dataset(videos, tok, num_frames=4)
    build_feature_cache(model, ["a.mp4"], tmp_path / "short", 4, SIZE, "fp32", videos_root=videos)
    mixed = collate_cached([cached_items[0], CachedFeatureDataset(short, FeatureCache(tmp_path / "short"))[0]])
    assert mixed["collate_path"] == "list" and [f.shape[0] for f in mixed["image_features"]] == [N_FRMS, 4]
    with torch.no_grad():
        assert torch.isfinite(model(mixed)["loss"])


def test_resume_after_interruption(model, videos, tmp_path, monkeypatch):
    calls = {"n": 0}
    real = type(model).encode_frames

    def flaky(self, pixels):
        calls["n"] += 1
        if calls["n"] == 4:  # dies in the second chunk of the second video, its .npy half written
            raise KeyboardInterrupt
        return real(self, pixels)

    monkeypatch.setattr(type(model), "encode_frames", flaky)
    with pytest.raises(KeyboardInterrupt):
        build_feature_cache(model, ["a.mp4", "sub/b.mp4"], tmp_path, N_FRMS, SIZE, "fp16", batch_frames=4,
                            videos_root=videos)
    # the interrupted write left neither a final .npy nor its temp file (timechat.io.atomic_path)
    assert sorted(p.suffix for p in (tmp_path / "features").iterdir()) == [".json", ".npy"]
    monkeypatch.setattr(type(model), "encode_frames", real)
    cache = FeatureCache(tmp_path)
    assert cache.has("a.mp4") and not cache.has("sub/b.mp4") and len(cache) == 1
    first = cache.get("a.mp4")[0]
    report = build_feature_cache(model, ["a.mp4", "sub/b.mp4", "corrupt.mp4"], tmp_path, N_FRMS, SIZE, "fp16",
                                 batch_frames=4, videos_root=videos)
    assert report.skipped == ["a.mp4"] and report.written == ["sub/b.mp4"]
    assert report.failed == {"corrupt.mp4": "undecodable"}
    assert torch.equal(cache.get("a.mp4")[0], first) and len(cache) == 2
    assert cache.failure("corrupt.mp4")["reason"] == "undecodable"
    assert not [p for p in (tmp_path / "features").iterdir() if ".tmp-" in p.name]  # same process: replaced
    # a later build with other settings is refused instead of mixing entries
    with pytest.raises(FeatureCacheError, match="n_frms"):
        build_feature_cache(model, ["a.mp4"], tmp_path, 4, SIZE, "fp16", videos_root=videos)


def test_failed_video_is_substituted_like_live(model, videos, tok, tmp_path):
    build_feature_cache(model, ["a.mp4", "corrupt.mp4"], tmp_path, N_FRMS, SIZE, "fp16", videos_root=videos)
    base = _dataset(videos, tok, records=[{"video": "corrupt.mp4", "QA": QA}, {"video": "a.mp4", "QA": QA}])
    ds = CachedFeatureDataset(base, FeatureCache(tmp_path))
    item = ds[0]
    assert item["index"] == 1 and ds.stats.by_reason["video_undecodable"] == 1
    with pytest.raises(KeyError, match="not in the feature cache"):
        CachedFeatureDataset(_dataset(videos, tok, records=[{"video": "sub/b.mp4", "QA": QA}]), FeatureCache(tmp_path)).build(0)


def test_refuses_random_sampling_and_crop(model, videos, tok, tmp_path):
    build_feature_cache(model, ["a.mp4"], tmp_path, N_FRMS, SIZE, "fp16", videos_root=videos)
    cache = FeatureCache(tmp_path)
    with pytest.raises(ValueError, match="only exact for sampling='uniform' without crop") as err:
        CachedFeatureDataset(_dataset(videos, tok, sampling="rand"), cache)
    assert "sampling='rand'" in str(err.value)
    with pytest.raises(ValueError, match="train_aug=True"):
        CachedFeatureDataset(_dataset(videos, tok, train_aug=True), cache)
    with pytest.raises(ValueError, match="num_frames=8"):
        CachedFeatureDataset(_dataset(videos, tok, num_frames=4), cache)
    trainable_vit, _ = build_timechat(timechat_tiny(freeze_vit=False))
    with pytest.raises(ValueError, match="freeze_vit=False"):
        build_feature_cache(trainable_vit, ["a.mp4"], tmp_path / "x", N_FRMS, SIZE, videos_root=videos)
    with pytest.raises(FileNotFoundError, match="build_feature_cache.py"):
        FeatureCache(tmp_path / "nothing")


def test_fps_budget_cache_equals_live(model, videos, tok, tmp_path):
    """A rate budget (2 fps within 3..5 frames): each video keeps its own frame count, items equal live ones,
    and a cache built with another rate or bounds is refused."""
    from timechat.data.settings import FrameBudget

    rate = {"fps": 2.0, "min_frames": 3, "max_frames": 5}
    build_feature_cache(model, ["a.mp4", "sub/b.mp4"], tmp_path, FrameBudget(N_FRMS, **rate), SIZE, "fp32",
                        videos_root=videos)
    cache = FeatureCache(tmp_path)
    assert cache.frame_budget == FrameBudget(N_FRMS, **rate)
    live_ds = _dataset(videos, tok, **rate)
    cached_ds = CachedFeatureDataset(live_ds, cache)
    counts = []
    for i in range(2):
        live, cached = live_ds[i], cached_ds[i]
        with torch.no_grad():
            ref = model.encode_frames(live["images"].permute(1, 0, 2, 3))
        assert torch.equal(cached["image_features"], ref)
        assert cached["clip"].timestamps == live["clip"].timestamps and torch.equal(cached["input_ids"], live["input_ids"])
        counts.append(ref.shape[0])
    # the rate's count per video (2.4 s and 2.5 s at 2 fps: 5 frames each), not the fixed num_frames=8
    assert counts == [live_ds.settings.frame_budget.count(24, 10.0), live_ds.settings.frame_budget.count(30, 12.0)] == [5, 5]
    with pytest.raises(ValueError, match=r"fps=2.0 \(min_frames=3, max_frames=5\), the dataset asks for fps=1.0"):
        CachedFeatureDataset(_dataset(videos, tok, fps=1.0, min_frames=3, max_frames=5), cache)
    with pytest.raises(ValueError, match="the dataset asks for num_frames=8"):
        CachedFeatureDataset(_dataset(videos, tok), cache)
    with pytest.raises(FeatureCacheError, match="frame_budget"):
        build_feature_cache(model, ["a.mp4"], tmp_path, FrameBudget(N_FRMS, 1.0, 3, 5), SIZE, "fp32", videos_root=videos)
