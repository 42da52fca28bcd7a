"""IssueStats: counts, reasons and bounded examples, for parse failures and for bad training data."""

from __future__ import annotations

import json

import pytest

from timechat.eval.report import parse_failure_table
from timechat.eval.tasks.base import count_parse
from timechat.eval.tasks.common import R_EMPTY
from timechat.eval.tasks.dense_captioning import R_DVC_NO_EVENT, format_dvc_output
from timechat.eval.tasks.grounding import extract_time
from timechat.stats import IssueStats


def _parse_stats(**kw) -> IssueStats:
    return IssueStats(per_reason=False, **kw)


def test_parse_stats():
    stats = {"dvc": _parse_stats(max_examples=2, max_chars=5), "tvg": _parse_stats(max_examples=2, max_chars=5)}
    expected = [
        ("1 - 2 seconds, stir well", "ok", [{"timestamp": [1.0, 2.0], "caption": "stir well"}], None),
        ("", "unparseable", None, R_EMPTY),
        ("nothing", "unparseable", None, R_DVC_NO_EVENT),
        ("x", "unparseable", None, R_DVC_NO_EVENT),
        ("3 - 4 seconds, fry it", "ok", [{"timestamp": [3.0, 4.0], "caption": "fry it"}], None),
    ]
    for i, (text, status, value, reason) in enumerate(expected):
        r = count_parse(stats["dvc"], format_dvc_output(text), text, i)
        assert (r.status, r.value, r.reason) == (status, value, reason), text
    count_parse(stats["tvg"], extract_time("1 - 2"), None, None)
    d = parse_failure_table(stats)
    assert d["dvc"]["count"] == 5 and d["dvc"]["unparseable"] == 3
    assert d["dvc"]["rate"] == pytest.approx(0.6) and stats["dvc"].failure_rate == pytest.approx(0.6)
    assert d["dvc"]["reasons"] == {R_DVC_NO_EVENT: 2, R_EMPTY: 1}
    assert d["dvc"]["examples"] == [
        {"id": 1, "reason": R_EMPTY, "text": ""},
        {"id": 2, "reason": R_DVC_NO_EVENT, "text": "nothi"},
    ]
    assert d["tvg"] == {"count": 1, "unparseable": 0, "rate": 0.0, "reasons": {}, "examples": []}
    # A task without answers has rate 0 and is left out of the report's table.
    assert IssueStats().failure_rate == 0.0 and IssueStats().attempts == 0
    assert "vhd" not in parse_failure_table({**stats, "vhd": _parse_stats()})
    assert list(d) == ["dvc", "tvg"]
    json.dumps(d)  # serialisable

    other = _parse_stats()
    count_parse(other, format_dvc_output(""), "", 9)
    stats["dvc"].merge(other)
    assert stats["dvc"].attempts == 6 and stats["dvc"].failures == 4
    assert len(parse_failure_table(stats)["dvc"]["examples"]) == 2


def test_data_error_stats_examples_per_reason_and_round_trip():
    stats = IssueStats(max_examples=2)
    stats.attempts = 10
    for i in range(3):
        stats.record("video_missing", f"timeit[{i}]:v{i}.mp4", f"no file {i}")
    stats.record("bad_record", "timeit[7]:x.mp4", "missing 'QA': key")
    assert stats.examples == {
        "video_missing": ["timeit[0]:v0.mp4: no file 0", "timeit[1]:v1.mp4: no file 1"],
        "bad_record": ["timeit[7]:x.mp4: missing 'QA': key"],
    }
    d = stats.to_dict()
    assert d == {"attempts": 10, "failures": 4, "by_reason": {"video_missing": 3, "bad_record": 1},
                 "examples": stats.examples}
    assert IssueStats.from_dict(json.loads(json.dumps(d))).to_dict() == d
    assert stats.failure_rate == pytest.approx(0.4)
    assert stats.summary() == "4/10 samples failed (40.00%): bad_record=1, video_missing=3"
    assert IssueStats().summary() == "0/0 samples failed (0.00%)"


def test_merged_sums_objects_and_dicts():
    a, b = IssueStats(attempts=10), IssueStats(attempts=5)
    a.record("video_missing", "s1", "x")
    b.record("video_missing", "s2", "y")
    b.record("bad_record", "s3", "z")
    m = IssueStats.merged([a, b.to_dict()])
    assert (m.attempts, m.failures, dict(m.by_reason)) == (15, 3, {"video_missing": 2, "bad_record": 1})
    assert m.examples == {"video_missing": ["s1: x", "s2: y"], "bad_record": ["s3: z"]}
    # Per-reason bound (default 5) also holds across a merge.
    for i in range(10):
        a.record("video_missing", f"t{i}", "")
    assert len(a.merge(b).examples["video_missing"]) == 5
