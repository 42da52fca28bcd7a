"""Dataset items, bad-data accounting, record converters and mixing."""

from __future__ import annotations

import json
import logging

import pytest
import torch

from tests.data._videos import write_video
from timechat.data.collate import collate_train
from timechat.data.datasets import (
    DataQualityError,
    SampleError,
    VideoInstructDataset,
    check_failure_rate,
    convert_valley_record,
    with_asr,
)
from timechat.data.settings import DataSettings
from timechat.data.tokenization import LlamaTokenizer
from timechat.stats import IssueStats


@pytest.fixture(scope="module")
def tok(tokenizers_dir):
    return LlamaTokenizer.from_pretrained(tokenizers_dir / "llama-2")


@pytest.fixture()
def videos(tmp_path):
    write_video(tmp_path / "good.mp4", n_frames=16, fps=8, size=32)
    (tmp_path / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypisom" + b"\x13" * 300)
    return tmp_path


def _ds(records, videos, tok, **kw):
    kw = {"num_frames": 4, "image_size": 32, "num_video_query_token": 4, "stride": 4, "seed": 0, **kw}
    return VideoInstructDataset(records, videos, tok, "llama", **kw)


QA = [{"q": "What happens?", "a": "A square moves."}]


def test_item_and_reproducible_rand(videos, tok):
    ds = _ds([{"video": "good.mp4", "QA": QA, "source": "x"}], videos, tok)
    a, b = ds[0], ds[0]
    assert a["images"].shape == (3, 4, 32, 32) and a["images"].dtype == torch.float32
    assert a["clip"].indices == b["clip"].indices and torch.equal(a["images"], b["images"])
    assert (a["input_ids"] == tok.image_token_id).sum() == 4
    assert a["timestamps"]["input_ids"].shape[0] == 4
    batch = collate_train([a, b])
    assert batch["collate_path"] == "stacked" and batch["images"].shape == (2, 3, 4, 32, 32)


def test_bad_samples_are_counted_and_substituted(videos, tok, caplog):
    records = [
        {"video": "good.mp4", "QA": QA},
        {"video": "missing.mp4", "QA": QA},
        {"video": "corrupt.mp4", "QA": QA},
        {"video": "good.mp4", "QA": []},
    ]
    ds = _ds(records, videos, tok, sampling="uniform", train_aug=False)
    with caplog.at_level(logging.WARNING):
        items = [ds[i] for i in range(len(ds))]
    assert [it["index"] for it in items] == [0] * len(records), [it["index"] for it in items]  # bad ones replaced by the good one
    # substitutes can be bad too, so each reason is counted at least once (once per attempt)
    assert set(ds.stats.by_reason) == {"video_missing", "video_undecodable", "bad_record"}
    assert ds.stats.failures == ds.stats.attempts - len(records) and ds.stats.failures >= 3
    assert "missing.mp4" in ds.stats.examples["video_missing"][0]
    assert "video_missing" in caplog.text
    print("bad-data stats:", ds.stats.summary())


def test_truncated_placeholders_are_counted(videos, tok):
    # 4 frames -> 32 placeholders; 30 tokens cannot hold the prompt head plus the placeholder run
    ds = _ds([{"video": "good.mp4", "QA": QA}], videos, tok, num_video_query_token=32, max_txt_len=30, max_retries=1)
    with pytest.raises(DataQualityError, match="placeholders_truncated=2"):
        ds[0]
    assert "keeps" in ds.stats.examples["placeholders_truncated"][0]
    print("truncation stats:", ds.stats.summary())


def test_failure_rate_and_retry_limits(videos, tok):
    ds = _ds([{"video": "missing.mp4", "QA": QA}] * 3, videos, tok, max_retries=2, min_attempts_for_rate=1000)
    with pytest.raises(DataQualityError, match="consecutive"):
        ds[0]
    ds = _ds([{"video": "missing.mp4", "QA": QA}, {"video": "good.mp4", "QA": QA}], videos, tok, max_failure_rate=0.2, min_attempts_for_rate=1)
    with pytest.raises(DataQualityError, match="failure rate"):
        ds[0]


def test_check_failure_rate_is_the_one_guard():
    stats = IssueStats(attempts=99)
    for k in range(10):
        stats.record("video_missing", f"s{k}", "x")
    check_failure_rate(stats, 0.05, "dataset d")  # 99 attempts: not judged yet
    stats.attempts = 200  # 10 / 200 = 5 %: not above the limit
    check_failure_rate(stats, 0.05, "dataset d")
    stats.attempts = 199
    with pytest.raises(DataQualityError, match=r"run.max_failure_rate: failure rate above 5.0% .*10/199 samples failed.*"
                                               r"python -m timechat.data.prepare audit RECORDS.json VIDEOS_ROOT"):
        check_failure_rate(stats, 0.05, "run.max_failure_rate")
    check_failure_rate(stats, 0.05, "dataset d", min_attempts=200)


def test_data_settings_keywords_legacy_spelling_and_typos(videos, tok):
    records = [{"video": "good.mp4", "QA": QA}]
    ds = _ds(records, videos, tok, max_txt_len=512)
    assert ds.settings == DataSettings(num_frames=4, image_size=32, num_video_query_token=4, stride=4, max_txt_len=512)
    assert DataSettings() == DataSettings(96, 224, 32, 32, 2048, "rand", True)  # the original's training config
    with pytest.warns(FutureWarning, match="'n_frms' is deprecated, use 'num_frames'"):
        old = VideoInstructDataset(records, videos, tok, "llama", n_frms=4, image_size=32, num_video_query_token=4,
                                   stride=4, seed=0, max_txt_len=512)
    assert old.settings == ds.settings and torch.equal(old[0]["images"], ds[0]["images"])
    with pytest.raises(TypeError, match="both 'n_frms' and 'num_frames'"):
        VideoInstructDataset(records, videos, tok, "llama", n_frms=4, num_frames=4)
    with pytest.raises(TypeError, match=r"unknown key\(s\) \['num_frame'\] in datasets.timeit; allowed: .*'num_frames'"):
        VideoInstructDataset(records, videos, tok, "llama", num_frame=4)
    with pytest.raises(TypeError, match="not both"):
        VideoInstructDataset(records, videos, tok, "llama", settings=ds.settings, num_frames=4)
    assert VideoInstructDataset(records, videos, tok, "llama", settings=ds.settings).settings is ds.settings
    with pytest.raises(ValueError, match="sampling must be one of"):
        DataSettings(sampling="random")
    with pytest.raises(ValueError, match="num_frames must be >= 1"):
        DataSettings(num_frames=0)


def test_stats_merge():
    a, b = IssueStats(attempts=10), IssueStats(attempts=5)
    for stats, err in ((a, SampleError("s1", "video_missing", "x")), (b, SampleError("s2", "video_missing", "y")),
                       (b, SampleError("s3", "bad_record", "z"))):
        stats.record(err.reason, err.sample_id, err.detail)
    m = IssueStats.merged([a, b.to_dict()])
    assert (m.attempts, m.failures, dict(m.by_reason)) == (15, 3, {"video_missing": 2, "bad_record": 1})


def test_valley_and_asr_records():
    raw = {"video": "v/1.mp4", "source": "VATEX", "conversations": [
        {"from": "human", "value": "<video>\nWhat is shown?"}, {"from": "gpt", "value": "A cat."},
        {"from": "human", "value": "Why?\n<video>"}, {"from": "gpt", "value": "Because."}]}
    rec = convert_valley_record(raw)
    assert rec == {"video": "v/1.mp4", "QA": [{"q": "What is shown?", "a": "A cat."}, {"q": "Why?", "a": "Because."}], "source": "VATEX"}
    asr = with_asr(rec, "1.0 - 2.0 seconds, hi. ")
    assert asr["QA"][0]["q"] == "Transcribed speech: 1.0 - 2.0 seconds, hi.  Based on the video content and possible transcribed speech, What is shown?"
