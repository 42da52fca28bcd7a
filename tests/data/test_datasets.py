"""Dataset items, bad-data accounting, record converters and mixing."""

from __future__ import annotations

import json
import logging
import re

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


# -- hardening (issue 12): one bad record is counted by id and reason, never a crash -----------------
def test_lone_surrogate_in_a_question_is_a_counted_bad_sample(videos, tok, tmp_path, caplog):
    """The issue's input: `"\\ud800"` in one question crashed sentencepiece with no sample id."""
    path = tmp_path / "records.json"
    path.write_text(json.dumps([{"video": "good.mp4", "QA": QA},
                                {"video": "good.mp4", "QA": [{"q": "What happens \ud800?", "a": "A square moves."}]}]))
    assert "\\ud800" in path.read_text()  # the JSON escape, as a records file carries it
    ds = _ds(path, videos, tok, sampling="uniform", train_aug=False)
    with caplog.at_level(logging.WARNING):
        items = [ds[0], ds[1]]
    assert [it["index"] for it in items] == [0, 0]  # the bad record was replaced, training goes on
    assert dict(ds.stats.by_reason) == {"bad_text": 1} and ds.stats.attempts == 3
    example = ds.stats.examples["bad_text"][0]
    assert example.startswith("timeit[1]:good.mp4: QA[0].q has a lone surrogate U+D800 at character 13 (not valid Unicode text)"), example
    assert "bad_text" in caplog.text


def test_question_too_long_for_max_txt_len_is_a_counted_bad_sample(videos, tok):
    """A question that pushes every answer token past max_txt_len left a sample with 0 supervised tokens."""
    long_q = [{"q": "Describe this video in detail please. " * 40, "a": "A square moves."}]
    ds = _ds([{"video": "good.mp4", "QA": QA}, {"video": "good.mp4", "QA": long_q}], videos, tok,
             sampling="uniform", train_aug=False, max_txt_len=160)
    assert (ds[0]["labels"] != -100).sum() > 0
    item = ds[1]
    assert item["index"] == 0 and (item["labels"] != -100).sum() > 0
    assert dict(ds.stats.by_reason) == {"no_supervised_tokens": 1}
    assert ds.stats.examples["no_supervised_tokens"][0].startswith("timeit[1]:good.mp4: max_txt_len=160 keeps 160 of ")


@pytest.mark.parametrize("content, expected", [
    (b'[{"video": "good.mp4", "QA": [{"q": "caf\xe9?", "a": "yes"}]}]', r"not valid UTF-8 at byte 40"),
    (b'[{"video": "good.mp4", "QA": [{"q": "What?", "a": "ye', r"invalid JSON at line 1 column \d+"),
    (b'{"video": "good.mp4"}', r"expected a JSON list of records, got dict"),
])
def test_records_file_with_bad_utf8_or_cut_off_json_names_the_file(videos, tok, tmp_path, content, expected):
    path = tmp_path / "records.json"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=re.escape(str(path)) + ": " + expected):
        _ds(path, videos, tok)


def test_min_video_frames_counts_too_short_videos(videos, tok):
    """Short videos train by default (the original's choice); `min_video_frames` makes them bad samples."""
    write_video(videos / "one.mp4", n_frames=1, fps=8, size=32)
    records = [{"video": "good.mp4", "QA": QA}, {"video": "one.mp4", "QA": QA}]
    ds = _ds(records, videos, tok, sampling="uniform", train_aug=False)
    assert ds[1]["index"] == 1 and ds[1]["images"].shape[1] == 1 and ds.stats.failures == 0
    ds = _ds(records, videos, tok, sampling="uniform", train_aug=False, min_video_frames=2)
    assert ds[1]["index"] == 0
    assert ds.stats.examples == {"too_few_frames": ["timeit[1]:one.mp4: 1 frame(s) decoded, min_video_frames=2"]}
    with pytest.raises(ValueError, match="min_video_frames=5 is more than num_frames=4"):
        DataSettings(num_frames=4, min_video_frames=5)


def test_timed_text_gives_each_frame_the_words_of_the_spans_that_hold_it(videos):
    """`timed_text` -> per sampled frame the token ids of the texts whose [start, end) holds its time,
    in live and collated items (the targets of model.frame_text_loss_weight); records without it
    give none."""
    from timechat.data.datasets import frame_text_ids
    from timechat.factory import ASSETS_DIR

    tiny = LlamaTokenizer.from_pretrained(ASSETS_DIR / "tiny_tokenizer")
    red, blue = (tiny.encode(w, add_special_tokens=False) for w in ("red square", "blue circle"))
    record = {"video": "good.mp4", "QA": QA, "timed_text": [[0.0, 1.0, "red square"], [0.5, 2.0, "blue circle"]]}
    # frames at 0, 0.5, 1.0, 1.5 and 2.0 s: the ends are exclusive
    got = frame_text_ids(record, [0, 4, 8, 12, 16], 8.0, tiny)
    assert got == [sorted(red), sorted(set(red + blue)), sorted(blue), sorted(blue), []]
    assert frame_text_ids({"video": "good.mp4", "QA": QA}, [0, 4], 8.0, tiny) is None

    ds = _ds([record, {"video": "good.mp4", "QA": QA}], videos, tiny)  # 16 frames at 8 fps, 4 sampled
    item = ds[0]
    want = frame_text_ids(record, item["clip"].indices, item["clip"].fps, tiny)
    assert item["frame_words"] == want and any(want) and "frame_words" not in ds[1]
    batch = collate_train([item, ds[1]])
    assert batch["frame_words"] == [want, None]


@pytest.mark.parametrize("timed, where", [
    ("red square", "'timed_text' must be a list"),
    ([[2.0, 1.0, "red square"]], "timed_text[0] must be [start, end, text]"),
    ([[0.0, 1.0, "ok"], [0.0, "1", "red"]], "timed_text[1] must be"),
    ([[0.0, 1.0, "  "]], "timed_text[0] must be"),
])
def test_bad_timed_text_is_a_bad_record_naming_the_entry(videos, tok, timed, where):
    ds = _ds([{"video": "good.mp4", "QA": QA, "timed_text": timed}], videos, tok)
    with pytest.raises(SampleError) as err:
        ds.build(0)
    assert err.value.reason == "bad_record" and where in str(err.value)
