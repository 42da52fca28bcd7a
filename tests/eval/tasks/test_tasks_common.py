"""Shared task text: prompt table and files, template filling, system texts, ASR prefix, QA fallback."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.eval.tasks._helpers import inference_case, round_of
from timechat.constants import BENCHMARK_SYSTEM, CHAT_SYSTEM, EVAL_SYSTEM
from timechat.data.asr import asr_file_for_video, asr_text_from_lines, load_asr_text, with_asr_prefix
from timechat.eval.tasks.common import (
    SeededFallback,
    format_task_prompt,
    read_prompt_file,
    resolve_system,
)
from timechat.eval.tasks.egoschema import parse_egoschema_answer
from timechat.eval.tasks.prompts import TASK_PROMPTS, get_prompt, resolve_prompt


ORIGINAL_PROMPT_NAMES = {
    "dvc_description_zeroshot",
    "dvc_description",
    "dvc_description_with_asr",
    "dvc_post_check",
    "tvg_description_zeroshot",
    "tvg_description",
    "tvg_post_check",
    "vhd_description",
    "vhd_description_zeroshot",
    "vhd_post_check",
}


def test_all_original_prompts_present():
    assert ORIGINAL_PROMPT_NAMES <= set(TASK_PROMPTS)
    for name, text in TASK_PROMPTS.items():
        assert text == text.strip(), f"{name} must be stored as read_prompt_file returns it (stripped)"
        assert "\n" not in text and "\r" not in text


@pytest.mark.parametrize(
    "case_id, name_of_main, name_of_post_check",
    [
        ("pub_inf_dvc", "dvc_description_zeroshot", None),
        ("pub_inf_dvc_asr", "dvc_description_zeroshot", None),
        ("pub_inf_tvg", "tvg_description_zeroshot", "tvg_post_check"),
        ("pub_inf_vhd", "vhd_description_zeroshot", None),
    ],
)
def test_prompts_equal_fixture_templates(reference_data_dir, case_id, name_of_main, name_of_post_check):
    _, case, expected = inference_case(reference_data_dir, case_id)
    assert Path(case["prompt_file"]).stem == name_of_main
    assert TASK_PROMPTS[name_of_main] == case["prompt_template"] == expected["prompt_template"]
    if name_of_post_check is not None:
        assert Path(case["post_check_prompt_file"]).stem == name_of_post_check
        assert TASK_PROMPTS[name_of_post_check] == case["post_check_template"]
        for prompt in round_of(expected, "post_check")["user_prompts"]:
            assert prompt == TASK_PROMPTS[name_of_post_check]


def test_prompts_equal_spec_section_5_4(reference_data_dir):
    spec = reference_data_dir.parents[1] / "reference" / "TIMECHAT_SPEC.md"
    if not spec.is_file():
        pytest.skip(f"spec not found at {spec}")
    text = spec.read_text(encoding="utf-8")
    section = text[text.index("### 5.4 Prompts") : text.index("### 5.5")]
    found = {
        m.group(1): m.group(2).strip()
        for m in re.finditer(r"\* `([a-z_]+)\.txt`[^\n]*?(?::\s*|\n\s*)`([^`]+)`", section)
    }
    assert set(found) == ORIGINAL_PROMPT_NAMES
    for name, want in found.items():
        assert TASK_PROMPTS[name] == want, name


def test_original_typos_are_kept():
    assert "24.3 - 30.4 seonds." in TASK_PROMPTS["tvg_description_zeroshot"]
    assert TASK_PROMPTS["tvg_post_check"].endswith("happens in the 24.3 - 30.4 seonds.")
    assert "An specific example is :" in TASK_PROMPTS["dvc_description_with_asr"]
    assert TASK_PROMPTS["tvg_description"].endswith("20.8 - 30.0 seconds' .")


def test_system_texts(reference_data_dir):
    _, _, expected = inference_case(reference_data_dir, "pub_inf_tvg")
    assert EVAL_SYSTEM == expected["system"]
    assert CHAT_SYSTEM == (
        "You are a helpful language and vision assistant. You are able to understand the visual content "
        "that the user provides, and assist the user with a variety of tasks using natural language."
    )
    assert BENCHMARK_SYSTEM.startswith("Carefully watch the video and pay attention to the cause")
    assert BENCHMARK_SYSTEM.endswith("select the best option that accurately addresses the question.\n")


def test_resolve_system_and_prompt(tmp_path):
    assert resolve_system("evaluate") == EVAL_SYSTEM
    assert resolve_system("benchmark") == BENCHMARK_SYSTEM
    assert resolve_system("llava_llama_2") == CHAT_SYSTEM
    assert resolve_system("Be brief.") == "Be brief."
    assert resolve_prompt("vhd_post_check") == TASK_PROMPTS["vhd_post_check"]
    path = tmp_path / "custom.txt"
    path.write_text("Custom {} prompt {}.\r\nignored\r\n")
    assert resolve_prompt(path) == resolve_prompt(str(path)) == "Custom {} prompt {}."
    with pytest.raises(FileNotFoundError, match="neither a known prompt name"):
        resolve_prompt("tvg_descripton_zeroshot")


def test_get_prompt_unknown_name():
    assert get_prompt("dvc_post_check") == TASK_PROMPTS["dvc_post_check"]
    with pytest.raises(KeyError, match="unknown prompt 'dvc_nope'"):
        get_prompt("dvc_nope")


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
def test_read_prompt_file_first_line_stripped(tmp_path, newline):
    path = tmp_path / "p.txt"
    path.write_bytes(f"  first line {{}} text \t{newline}second line{newline}".encode())
    assert read_prompt_file(path) == "first line {} text"


def test_read_prompt_file_bom_and_single_line(tmp_path):
    path = tmp_path / "p.txt"
    path.write_bytes("\ufeffonly line".encode("utf-8"))
    assert read_prompt_file(path) == "only line"


def test_read_prompt_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_prompt_file(tmp_path / "missing.txt")
    empty_first = tmp_path / "e.txt"
    empty_first.write_text("\nsecond\n")
    with pytest.raises(ValueError, match="empty first line"):
        read_prompt_file(empty_first)


@pytest.mark.parametrize("case_id", ["pub_inf_tvg", "pub_inf_vhd"])
def test_format_task_prompt_matches_fixture_user_prompts(reference_data_dir, case_id):
    _, case, expected = inference_case(reference_data_dir, case_id)
    got = [format_task_prompt(case["prompt_template"], case["dataset"], c) for c in case["captions"]]
    assert got == round_of(expected, "main")["user_prompts"]


def test_format_task_prompt_strips_dots_at_both_ends_only():
    template = TASK_PROMPTS["tvg_description_zeroshot"]
    out = format_task_prompt(template, "charades", "..a man sits down. ")
    # strip('.') leaves the trailing space, so the dot before it survives as well.
    assert "the textual sentence: a man sits down. . Please return" in out
    out = format_task_prompt(template, "charades", "a man sits down..")
    assert "the textual sentence: a man sits down. Please return" in out
    assert out.startswith("You are given a video from the charades dataset.")


@pytest.mark.parametrize(
    "template, match",
    [
        ("no placeholder here", "no placeholder"),
        ("{} {} {}", "3 '\\{\\}' placeholders"),
        ("{dataset} {query}", "named placeholders"),
        ("{} {1}", "mixes"),
        ("{0} {2}", "indices \\[0, 2\\]"),
        ("{0} only", "never uses the query"),
        ("bad { brace", "malformed braces"),
    ],
)
def test_format_task_prompt_rejects_misfitting_templates(template, match):
    with pytest.raises(ValueError, match=match):
        format_task_prompt(template, "ds", "q")


def test_format_task_prompt_numbered_fields():
    assert format_task_prompt("{1} from {0}", "ds", "query.") == "query from ds"


def test_asr_text_matches_fixture(reference_data_dir):
    _, case, expected = inference_case(reference_data_dir, "pub_inf_dvc_asr")
    texts = [
        load_asr_text(None if case["asr_files"][v] is None else reference_data_dir / case["asr_files"][v])
        for v in case["videos"]
    ]
    assert texts == expected["asr_text_used"]
    assert texts[0].startswith("1.2 - 3.1 seconds, So today")  # the first line (0.0 - 1.2) is skipped
    prompts = [with_asr_prefix(case["prompt_template"], t) for t in texts]
    assert prompts == round_of(expected, "main")["user_prompts"]


def test_asr_file_lookup(reference_data_dir, tmp_path):
    asr_dir = reference_data_dir / "inputs" / "asr"
    assert asr_file_for_video(asr_dir, "videos/pub_12fps_17s.mp4") == asr_dir / "pub_12fps_17s.txt"
    # The original cuts the name at its FIRST dot.
    assert asr_file_for_video(tmp_path, "a/clip_29.97fps.mp4") == tmp_path / "clip_29.txt"
    assert load_asr_text(tmp_path / "missing.txt") == "None."


def test_asr_subsampling_stride_and_formatting():
    lines = [f"{i}.00\t{i}.55\tsegment {i}\n" for i in range(31)]  # stride = 31 // 15 = 2
    text = asr_text_from_lines(lines)
    used = re.findall(r"segment (\d+)\.", text)
    assert used == [str(i) for i in range(1, 31, 2)]
    assert text.startswith("1.0 - 1.6 seconds, segment 1. 3.0 - 3.5 seconds, segment 3. ")  # :.1f rounding
    assert text.endswith(" ")


def test_asr_subsampling_edge_cases():
    assert asr_text_from_lines([]) == "None."
    assert asr_text_from_lines(["0.00\t1.00\tonly the first line\n"]) == "None."
    two = ["0\t1\tskipped\n", "1.25\t2\tWow, one!\n", "2\t3\tkeep my dot.\n"]
    assert asr_text_from_lines(two) == "1.2 - 2.0 seconds, Wow, one!. 2.0 - 3.0 seconds, keep my dot. "
    assert asr_text_from_lines(["x\n", "1\t2\ttext\twith tab"]) == "1.0 - 2.0 seconds, text\twith tab. "


def test_asr_malformed_line_raises():
    with pytest.raises(ValueError, match="line 2 .*expected 'start<TAB>end<TAB>text'"):
        asr_text_from_lines(["0\t1\ta\n", "no tabs here\n"], source="f.txt")
    with pytest.raises(ValueError, match="non-numeric times"):
        asr_text_from_lines(["0\t1\ta\n", "zero\tone\ttext\n"])


def test_seeded_fallback_is_the_originals_draw_sequence():
    """The k-th fallback gets the k-th random.choice after random.seed(seed), as the original's main()."""
    import random

    ref = random.Random(42)
    fb = SeededFallback("ABCDE", seed=42)
    assert [fb.draw(i) for i in range(12)] == [ref.choice("ABCDE") for _ in range(12)]
    assert [d["id"] for d in fb.draws] == [str(i) for i in range(12)] and fb.report()["count"] == 12
    assert SeededFallback("ABCD", mode="none").draw("x") is None
    with pytest.raises(ValueError, match="fallback"):
        SeededFallback("ABCD", mode="random_per_sample")
    assert parse_egoschema_answer("D").value == "D"



@pytest.mark.parametrize("content,message", [(b'{"annotations": []}\xff', "not valid UTF-8 at byte 19"),
                                             (b'{"annotations": [{"id": 1', "invalid JSON at line 1")])
def test_annotation_and_prediction_readers_name_the_file(tmp_path, content, message):
    """Issue 12: a bad UTF-8 byte or cut-off JSON raised UnicodeDecodeError / JSONDecodeError without the file."""
    from timechat.eval.tasks.base import read_json
    from timechat.eval.tasks.common import read_coco_annotations
    from timechat.eval.tasks.highlights import read_qvhighlights_jsonl
    from timechat.io import DataFileError

    path = tmp_path / "val.caption_coco_format.json"
    path.write_bytes(content)
    for read in (read_coco_annotations, lambda p: read_json(p, "TVG gt file"), read_qvhighlights_jsonl):
        with pytest.raises(DataFileError, match=re.escape(f"{path}: ") + message.replace("at line", "(at|on) line")):
            read(path)
