"""No input string makes an answer parser raise, and every result is well-formed."""

from __future__ import annotations

import json
import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from timechat.eval.report import parse_failure_table
from timechat.eval.tasks.base import count_parse
from timechat.eval.tasks.common import OK, UNPARSEABLE
from timechat.eval.tasks.dense_captioning import format_dvc_output
from timechat.eval.tasks.egoschema import parse_egoschema_answer
from timechat.eval.tasks.grounding import extract_time
from timechat.eval.tasks.highlights import format_vhd_output, parse_vhd_highlights
from timechat.eval.tasks.mvbench import parse_mvbench_answer
from timechat.eval.tasks.tempcompass import parse_tempcompass_answer
from timechat.eval.tasks.videomme import parse_videomme_answer
from timechat.stats import IssueStats


_FRAGMENTS = st.sampled_from(
    [
        "-", " - ", "–", "seconds", "second", "secondss", "score", "scores", "Their saliency scores are",
        ":", ": ", "\n", "\r\n", ",", ", ", ".", "..", " ", "th", "There are ", " highlight moments",
        "start time", "end time", "starting time:", "ending time:", "description:", "* ", "start", "ends",
        "happens in", "!", "?", "(", ")", "(A)", "(b)", "A", "E", "yes", "No", "Caption A", "Option 1",
        "0", "00:01:05", "1:30", "12:", "1.", ".5", "٣", "𝟓", "9" * 400, "1" * 5000 + ".5",
    ]
)


_NUMBERS = st.one_of(
    st.integers(min_value=0, max_value=10**6).map(str),
    st.floats(min_value=0, max_value=1e4, allow_nan=False).map(lambda x: f"{x:.1f}"),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
)


@st.composite
def near_miss_answers(draw):
    parts = draw(st.lists(st.one_of(_FRAGMENTS, _NUMBERS, st.text(max_size=4)), max_size=30))
    return "".join(parts)


_DURATIONS = st.one_of(st.just(150.0), st.floats(min_value=0, max_value=1e4, allow_nan=False))


def _check_all_parsers(text: str, duration: float) -> None:
    results = {
        "dvc": format_dvc_output(text),
        "tvg": extract_time(text),
        "vhd_pairs": parse_vhd_highlights(text),
        "vhd": format_vhd_output(text, duration),
        "mvbench": parse_mvbench_answer(text, num_options=4),
        "egoschema": parse_egoschema_answer(text),
        "videomme": parse_videomme_answer(text),
        "tc_mc": parse_tempcompass_answer(text, "multi-choice", options=["up", "down"]),
        "tc_yn": parse_tempcompass_answer(text, "yes_no"),
        "tc_cm": parse_tempcompass_answer(text, "caption_matching"),
        "tc_cm_labels": parse_tempcompass_answer(text, "caption_matching", labels=["Caption A", "Caption B"]),
        "tc_cap": parse_tempcompass_answer(text, "captioning"),
    }
    stats: dict[str, IssueStats] = {}
    for task, r in results.items():
        assert r.status in (OK, UNPARSEABLE)
        assert (r.value is None) == (r.status == UNPARSEABLE), task
        assert (r.reason is None) == r.ok, task
        count_parse(stats.setdefault(task, IssueStats(per_reason=False, max_chars=300)), r, text, None)
    json.dumps(parse_failure_table(stats), allow_nan=False)
    json.dumps([s.to_dict() for s in stats.values()], allow_nan=False)
    if results["dvc"].ok:
        for event in results["dvc"].value:
            assert all(math.isfinite(t) for t in event["timestamp"]) and isinstance(event["caption"], str)
    if results["tvg"].ok:
        start, end = results["tvg"].value
        assert math.isfinite(start) and math.isfinite(end) and start <= end
    if results["vhd"].ok:
        clips = results["vhd"].value
        assert len(clips) == int(duration / 2) and all(math.isfinite(c) for c in clips)
        pairs = results["vhd_pairs"].value
        assert len(pairs["timestamps"]) == len(pairs["scores"]) >= 1


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=st.text(), duration=_DURATIONS)
def test_no_parser_raises_on_any_text(text, duration):
    _check_all_parsers(text, duration)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=near_miss_answers(), duration=_DURATIONS)
def test_no_parser_raises_on_near_miss_answers(text, duration):
    _check_all_parsers(text, duration)
