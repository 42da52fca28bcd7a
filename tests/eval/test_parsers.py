"""Answer parsers: values on the spec's and the fixtures' examples, quirks, and never raising."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from timechat.eval import parsers as PR
from timechat.eval.parsers import ParseResult, ParseStats


def _inference(reference_data_dir, case_id):
    manifest = json.loads((reference_data_dir / "manifest.json").read_text())
    case = next(c for c in manifest["inference"] if c["id"] == case_id)
    expected = json.loads((reference_data_dir / case["expected"]).read_text())
    return manifest, case, expected


def _answers(expected, round_name="main"):
    return next(r for r in expected["rounds"] if r["round"] == round_name)["answer_texts"]


# --------------------------------------------------------------------------------------------------
# DVC
# --------------------------------------------------------------------------------------------------


def test_dvc_spec_example_lowercases_captions():
    r = PR.format_dvc_output("0.0 - 7.9 seconds, A man is seen speaking to the camera.  7.9 - 12.5 seconds, He jumps.")
    assert r.ok and r.status == "ok" and r.reason is None
    assert r.value == [
        {"timestamp": [0.0, 7.9], "caption": "a man is seen speaking to the camera."},
        {"timestamp": [7.9, 12.5], "caption": "he jumps."},
    ]


def test_dvc_fixture_fake_answers(reference_data_dir):
    _, _, expected = _inference(reference_data_dir, "pub_inf_dvc")
    got = [PR.format_dvc_output(a).value for a in _answers(expected)]
    assert got == [
        [
            {"timestamp": [3.0, 15.0], "caption": "cut the chicken into cubes."},
            {"timestamp": [16.0, 28.0], "caption": "fry the garlic."},
        ],
        [
            {"timestamp": [0.0, 8.5], "caption": "mix the batter."},
            {"timestamp": [8.5, 16.0], "caption": "pour it into the pan."},
        ],
    ]
    _, _, expected = _inference(reference_data_dir, "pub_inf_dvc_asr")
    first, second = (PR.format_dvc_output(a) for a in _answers(expected))
    assert first.value == [{"timestamp": [0.0, 3.4], "caption": "tune the guitar."}]
    # The second reply was just "</s>": empty after post-processing.
    assert second == ParseResult(None, "unparseable", PR.R_EMPTY)


def test_dvc_quirks_positional_captions_and_no_swap():
    # Text before the first pair longer than 5 characters becomes the first caption (shift), and the
    # lists are truncated to the shorter one.
    r = PR.format_dvc_output("Here are the steps: 1 - 5 seconds, crack eggs. 9 - 2 seconds, whisk.")
    assert r.value == [
        {"timestamp": [1.0, 5.0], "caption": "here are the steps:"},
        {"timestamp": [9.0, 2.0], "caption": "crack eggs."},  # reversed pair kept as is
    ]
    # Pieces of <= 5 characters (here " , a ", measured before stripping) are dropped.
    r = PR.format_dvc_output("1 - 5 seconds, a 6 - 9 seconds, stir it well")
    assert r.value == [{"timestamp": [1.0, 5.0], "caption": "stir it well"}]


def test_dvc_pairs_without_captions_is_unparseable():
    r = PR.format_dvc_output("1 - 5, 6 - 9")
    assert r.status == "unparseable" and r.reason == PR.R_DVC_NO_CAPTION and r.value is None


def test_dvc_start_end_fields_branch():
    text = (
        "Step 1\nStarting time: 5 s\nEnding time: 10 seconds\nDescription: Crack the eggs.\n"
        "Step 2\nstart time: 12.5\nend time: 20\ndescription: Whisk them"
    )
    assert PR.format_dvc_output(text).value == [
        {"timestamp": [5.0, 10.0], "caption": "crack the eggs."},
        {"timestamp": [12.5, 20.0], "caption": "whisk them"},
    ]
    bullets = "start time: 1\nend time: 4\n* Chop onions\n"
    assert PR.format_dvc_output(bullets).value == [{"timestamp": [1.0, 4.0], "caption": "chop onions"}]


def test_dvc_pdb_branch_is_unparseable_not_a_hang():
    r = PR.format_dvc_output("start time 5, end time 10, crack eggs")
    assert r.status == "unparseable" and r.reason == PR.R_DVC_PDB


def test_dvc_last_resort_branch_yields_one_event():
    # One m:ss time -> 40 s window around it; only the first success counts.
    r = PR.format_dvc_output("At 1:30 seconds the chef cracks eggs\nAt 2:30 seconds he whisks")
    assert r.value == [{"timestamp": [70.0, 110.0], "caption": "the chef cracks eggs"}]
    # A time <= 20 s gives [t, t + 40].
    assert PR.format_dvc_output("at 0:15 seconds, the chef cracks eggs").value == [
        {"timestamp": [15.0, 55.0], "caption": "the chef cracks eggs"}
    ]
    # Two m:ss times -> a pair; bare numbers -> pair.
    assert PR.format_dvc_output("from 1:00 to 1:20 seconds: add salt\nok").value[0]["timestamp"] == [60.0, 80.0]
    assert PR.format_dvc_output("from 30 to 42 seconds add salt").value[0]["timestamp"] == [30.0, 42.0]
    assert PR.format_dvc_output("no time information at all").reason == PR.R_DVC_NO_EVENT


# --------------------------------------------------------------------------------------------------
# TVG
# --------------------------------------------------------------------------------------------------


def test_tvg_fixture_fake_answers(reference_data_dir):
    _, _, expected = _inference(reference_data_dir, "pub_inf_tvg")
    assert [PR.extract_time(a).value for a in _answers(expected)] == [[2.5, 7.0], [12.0, 19.5]]
    assert [PR.extract_time(a).value for a in _answers(expected, "post_check")] == [[2.5, 7.0], [12.0, 19.5]]


def test_tvg_single_sentence_start_end_yields_nothing():
    r = PR.extract_time("starts at 5.5 seconds and ends at 9 seconds")
    assert r.status == "unparseable" and r.reason == PR.R_TVG_NO_PAIR and r.value is None


def test_tvg_keyword_sentences_first_number_each():
    assert PR.extract_time("The event starts at 5.5 seconds.\nIt ends at 9 seconds, not 10.").value == [5.5, 9.0]
    # Clock times are used when no plain number qualifies.
    assert PR.extract_time("It starts at 00:01:05!\nIt ends at 01:10").value == [65.0, 70.0]


def test_tvg_first_pair_only_swapped_and_echoed_example_kept():
    assert PR.extract_time("It happens in 19.5 - 12.0 seconds, or 1 - 2.").value == [12.0, 19.5]
    # The original's removal of the prompt's example is a no-op: an echoed example is parsed.
    assert PR.extract_time("happens in the 24.3 - 30.4 seonds. Actually 1 - 2.").value == [24.3, 30.4]
    assert PR.extract_time("").reason == PR.R_EMPTY


# --------------------------------------------------------------------------------------------------
# VHD
# --------------------------------------------------------------------------------------------------


def test_vhd_spec_example_integer_score_shifts_pairing():
    text = "There are 3 highlight moments in the 82, 84, 86 second. Their saliency scores are 1.3, 2, 2.3."
    parsed = PR.parse_vhd_highlights(text)
    assert parsed.value == {"timestamps": [82.0, 84.0, 86.0], "scores": [1.3, 2.3, 0.0]}
    clips = PR.format_vhd_output(text, 150.0).value
    assert len(clips) == 75
    assert clips[40] == 1.3 and clips[41] == 2.3 and clips[42] == 0.0
    assert sum(clips) == pytest.approx(3.6)


def test_vhd_fixture_fake_answers(reference_data_dir):
    manifest, case, expected = _inference(reference_data_dir, "pub_inf_vhd")
    durations = [
        manifest["videos"][v]["container_frames"] / manifest["videos"][v]["decord_avg_fps"] for v in case["videos"]
    ]
    got = [PR.format_vhd_output(a, d).value for a, d in zip(_answers(expected), durations)]
    # 3 s video -> 1 clip; 0.5, 1.0, 1.5 s all map to clip 0, which gets the mean of 2.0, 3.7, 3.3.
    assert got[0] == pytest.approx([3.0])
    # ~17 s video -> 8 clips; 4, 6, 8 s map to clips 1, 2, 3.
    assert got[1] == pytest.approx([0.0, 1.3, 1.7, 2.3, 0.0, 0.0, 0.0, 0.0])


def test_vhd_th_replacement_and_count_cap():
    text = "There are 2 highlight moments in the 20th, 22th, 24th second. Their saliency scores are 1.5, 2.5, 3.5."
    assert PR.parse_vhd_highlights(text).value == {"timestamps": [20.0, 22.0], "scores": [1.5, 2.5]}


def test_vhd_class2_one_line_per_highlight():
    text = (
        "Highlight at 12 seconds, score 2.3\n"
        "Highlight at 0:20 seconds, score 3.1\n"
        "Highlight at 8 seconds, score 4.0\n"  # plain timestamps <= 10 s are dropped (quirk) ...
        "Highlight at 30 seconds, score 1.5"  # ... while its score stays, shifting the pairing
    )
    assert PR.parse_vhd_highlights(text).value == {"timestamps": [12.0, 20.0, 30.0], "scores": [2.3, 3.1, 4.0]}


def test_vhd_unparseable_cases():
    assert PR.parse_vhd_highlights("The highlights are at 82 and 84.").reason == PR.R_VHD_NO_KEYWORD
    assert PR.parse_vhd_highlights("no numbers second, score").reason == PR.R_VHD_NO_TIMESTAMP
    assert PR.parse_vhd_highlights("In the 82 second. Their saliency scores are 2.").reason == PR.R_VHD_SINGLE_NO_SCORE
    one = PR.parse_vhd_highlights("In the 82 second. Their saliency scores are 2.5, 3.5.")
    assert one.value == {"timestamps": [82.0], "scores": [2.5]}


def test_vhd_clip_mapping():
    # Two timestamps in one clip are averaged; t > duration dropped; t == odd duration would index past
    # the end in the original and is dropped here.
    assert PR.vhd_clip_scores([3.0, 4.0, 20.0, 9.0], [1.0, 2.0, 4.0, 3.0], 9.0) == [0.0, 1.5, 0.0, 0.0]
    assert PR.vhd_clip_scores([0.0], [2.0], 4.0) == [2.0, 0.0]
    assert PR.vhd_clip_scores([1.0], [2.0], 1.0) == []
    with pytest.raises(ValueError, match="duration"):
        PR.vhd_clip_scores([1.0], [1.0], float("nan"))
    with pytest.raises(ValueError, match="duration"):
        PR.format_vhd_output("garbage", -1.0)


# --------------------------------------------------------------------------------------------------
# QA benchmarks
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, want",
    [
        ("(B) the man", "B"),
        ("Best option: (c)", "C"),
        ("( D ) something", "D"),
        ("The answer\n(A) later line", None),  # only the first line counts
        ("(the man) then (B)", None),  # the first (...) decides
        ("B", None),
        ("", None),
    ],
)
def test_mvbench(text, want):
    r = PR.parse_mvbench_answer(text)
    assert r.value == want
    assert r.ok == (want is not None)


def test_mvbench_letter_range():
    assert PR.parse_mvbench_answer("(E)", num_options=4).reason == PR.R_QA_LETTER_RANGE
    assert PR.parse_mvbench_answer("(D)", num_options=4).value == "D"


@pytest.mark.parametrize(
    "text, want",
    [("The best answer is: C", "C"), ("Based on the video, C", "B"), ("c. picks up", None), ("e", None)],
)
def test_egoschema_first_capital_anywhere(text, want):
    assert PR.parse_egoschema_answer(text).value == want


@pytest.mark.parametrize(
    "text, want", [("The answer is (C).", "C"), ("(E) (B)", "B"), ("(c) lower", None), ("B. cats", None)]
)
def test_videomme(text, want):
    assert PR.parse_videomme_answer(text).value == want


def test_tempcompass():
    mc = PR.parse_tempcompass_answer
    assert mc("B. The car turns left.", "multi-choice").value == "B"
    assert mc("(C) rotating", "multi-choice").value == "C"
    assert mc("A", "multi-choice").value == "A"
    assert mc("I think the best option is D", "multi-choice").value == "D"
    assert mc("A man turns left.", "multi-choice").ok is False
    assert mc("The car turns left", "multi-choice", options=["turns right", "turns left"]).value == "B"
    assert mc("E.", "multi-choice", options=["a", "b", "c"]).reason == PR.R_QA_NO_LETTER
    assert PR.parse_tempcompass_answer("Yes, it does.", "yes_no").value == "yes"
    assert PR.parse_tempcompass_answer("Nope", "yes_no").reason == PR.R_QA_NO_YES_NO
    assert PR.parse_tempcompass_answer("caption b matches", "caption_matching").value == "Caption B"
    assert (
        PR.parse_tempcompass_answer("I pick sentence a", "caption_matching", labels=["Sentence A", "Sentence B"]).value
        == "Sentence A"
    )
    assert PR.parse_tempcompass_answer("neither", "caption_matching").reason == PR.R_QA_NO_LABEL
    assert PR.parse_tempcompass_answer("  A cat.  ", "captioning").value == "A cat."
    with pytest.raises(ValueError, match="unknown TempCompass task type"):
        PR.parse_tempcompass_answer("x", "other")


def test_qa_fallback_is_seeded_and_documented():
    assert PR.qa_fallback("mvbench", "anything") == "A"
    draws = [PR.qa_fallback("egoschema", i) for i in range(200)]
    assert set(draws) == set("ABCDE")
    assert draws == [PR.qa_fallback("egoschema", i) for i in range(200)]  # reproducible
    assert draws != [PR.qa_fallback("egoschema", i, seed=7) for i in range(200)]
    assert set(PR.qa_fallback("videomme", i) for i in range(100)) == set("ABCD")
    with pytest.raises(ValueError, match="no fallback rule"):
        PR.qa_fallback("tempcompass", 0)
    failed = PR.parse_egoschema_answer("no letter")
    assert PR.answer_or_fallback(failed, "egoschema", "q1") == PR.qa_fallback("egoschema", "q1")
    assert PR.answer_or_fallback(PR.parse_egoschema_answer("D"), "egoschema", "q1") == "D"


# --------------------------------------------------------------------------------------------------
# ParseStats
# --------------------------------------------------------------------------------------------------


def test_parse_stats():
    stats = ParseStats(max_examples=2, max_chars=5)
    for i, text in enumerate(["1 - 2 seconds, stir well", "", "nothing", "x", "3 - 4 seconds, fry it"]):
        assert stats.add("dvc", PR.format_dvc_output(text), text=text, sample_id=i).status in ("ok", "unparseable")
    stats.add("tvg", PR.extract_time("1 - 2"))
    d = stats.to_dict()
    assert d["dvc"]["count"] == 5 and d["dvc"]["unparseable"] == 3
    assert d["dvc"]["rate"] == pytest.approx(0.6) and stats.rate("dvc") == pytest.approx(0.6)
    assert d["dvc"]["reasons"] == {PR.R_DVC_NO_EVENT: 2, PR.R_EMPTY: 1}
    assert d["dvc"]["examples"] == [
        {"id": 1, "reason": PR.R_EMPTY, "text": ""},
        {"id": 2, "reason": PR.R_DVC_NO_EVENT, "text": "nothi"},
    ]
    assert d["tvg"] == {"count": 1, "unparseable": 0, "rate": 0.0, "reasons": {}, "examples": []}
    assert stats.rate("vhd") == 0.0 and stats.count("vhd") == 0
    json.dumps(d)  # serialisable

    other = ParseStats()
    other.add("dvc", PR.format_dvc_output(""), text="", sample_id=9)
    stats.merge(other)
    assert stats.count("dvc") == 6 and stats.unparseable("dvc") == 4
    assert len(stats.to_dict()["dvc"]["examples"]) == 2


# --------------------------------------------------------------------------------------------------
# No input string makes a parser raise
# --------------------------------------------------------------------------------------------------

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
        "dvc": PR.format_dvc_output(text),
        "tvg": PR.extract_time(text),
        "vhd_pairs": PR.parse_vhd_highlights(text),
        "vhd": PR.format_vhd_output(text, duration),
        "mvbench": PR.parse_mvbench_answer(text, num_options=4),
        "egoschema": PR.parse_egoschema_answer(text),
        "videomme": PR.parse_videomme_answer(text),
        "tc_mc": PR.parse_tempcompass_answer(text, "multi-choice", options=["up", "down"]),
        "tc_yn": PR.parse_tempcompass_answer(text, "yes_no"),
        "tc_cm": PR.parse_tempcompass_answer(text, "caption_matching"),
        "tc_cm_labels": PR.parse_tempcompass_answer(text, "caption_matching", labels=["Caption A", "Caption B"]),
        "tc_cap": PR.parse_tempcompass_answer(text, "captioning"),
    }
    stats = ParseStats()
    for task, r in results.items():
        assert r.status in (PR.OK, PR.UNPARSEABLE)
        assert (r.value is None) == (r.status == PR.UNPARSEABLE), task
        assert (r.reason is None) == r.ok, task
        stats.add(task, r, text=text)
    json.dumps(stats.to_dict(), allow_nan=False)
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
