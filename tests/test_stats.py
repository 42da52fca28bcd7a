"""IssueStats: counts, reasons and bounded examples of bad training data."""

from __future__ import annotations

import json

import pytest

from timechat.stats import IssueStats


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
