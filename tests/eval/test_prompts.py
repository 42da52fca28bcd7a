"""Prompt strings, prompt-file reading, template filling, ASR prefix and QA question builders."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from timechat.eval import prompts as P

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


def _inference_case(reference_data_dir: Path, case_id: str) -> tuple[dict, dict]:
    manifest = json.loads((reference_data_dir / "manifest.json").read_text())
    case = next(c for c in manifest["inference"] if c["id"] == case_id)
    expected = json.loads((reference_data_dir / case["expected"]).read_text())
    return case, expected


def _round(expected: dict, name: str) -> dict:
    return next(r for r in expected["rounds"] if r["round"] == name)


# --------------------------------------------------------------------------------------------------
# Prompt strings
# --------------------------------------------------------------------------------------------------


def test_all_original_prompts_present():
    assert ORIGINAL_PROMPT_NAMES <= set(P.TASK_PROMPTS)
    for name, text in P.TASK_PROMPTS.items():
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
    case, expected = _inference_case(reference_data_dir, case_id)
    assert Path(case["prompt_file"]).stem == name_of_main
    assert P.TASK_PROMPTS[name_of_main] == case["prompt_template"] == expected["prompt_template"]
    if name_of_post_check is not None:
        assert Path(case["post_check_prompt_file"]).stem == name_of_post_check
        assert P.TASK_PROMPTS[name_of_post_check] == case["post_check_template"]
        for prompt in _round(expected, "post_check")["user_prompts"]:
            assert prompt == P.TASK_PROMPTS[name_of_post_check]


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
        assert P.TASK_PROMPTS[name] == want, name


def test_original_typos_are_kept():
    assert "24.3 - 30.4 seonds." in P.TASK_PROMPTS["tvg_description_zeroshot"]
    assert P.TASK_PROMPTS["tvg_post_check"].endswith("happens in the 24.3 - 30.4 seonds.")
    assert "An specific example is :" in P.TASK_PROMPTS["dvc_description_with_asr"]
    assert P.TASK_PROMPTS["tvg_description"].endswith("20.8 - 30.0 seconds' .")


def test_system_texts(reference_data_dir):
    _, expected = _inference_case(reference_data_dir, "pub_inf_tvg")
    assert P.SYSTEM_EVALUATE == expected["system"]
    assert P.SYSTEM_LLAVA_LLAMA_2 == (
        "You are a helpful language and vision assistant. You are able to understand the visual content "
        "that the user provides, and assist the user with a variety of tasks using natural language."
    )
    assert P.SYSTEM_BENCHMARK.startswith("Carefully watch the video and pay attention to the cause")
    assert P.SYSTEM_BENCHMARK.endswith("select the best option that accurately addresses the question.\n")


def test_resolve_system_and_prompt(tmp_path):
    assert P.resolve_system("evaluate") == P.SYSTEM_EVALUATE
    assert P.resolve_system("benchmark") == P.SYSTEM_BENCHMARK
    assert P.resolve_system("llava_llama_2") == P.SYSTEM_LLAVA_LLAMA_2
    assert P.resolve_system("Be brief.") == "Be brief."
    assert P.resolve_prompt("vhd_post_check") == P.TASK_PROMPTS["vhd_post_check"]
    path = tmp_path / "custom.txt"
    path.write_text("Custom {} prompt {}.\r\nignored\r\n")
    assert P.resolve_prompt(path) == P.resolve_prompt(str(path)) == "Custom {} prompt {}."
    with pytest.raises(FileNotFoundError, match="neither a known prompt name"):
        P.resolve_prompt("tvg_descripton_zeroshot")


def test_get_prompt_unknown_name():
    assert P.get_prompt("dvc_post_check") == P.TASK_PROMPTS["dvc_post_check"]
    with pytest.raises(KeyError, match="unknown prompt 'dvc_nope'"):
        P.get_prompt("dvc_nope")


# --------------------------------------------------------------------------------------------------
# read_prompt_file
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
def test_read_prompt_file_first_line_stripped(tmp_path, newline):
    path = tmp_path / "p.txt"
    path.write_bytes(f"  first line {{}} text \t{newline}second line{newline}".encode())
    assert P.read_prompt_file(path) == "first line {} text"


def test_read_prompt_file_bom_and_single_line(tmp_path):
    path = tmp_path / "p.txt"
    path.write_bytes("\ufeffonly line".encode("utf-8"))
    assert P.read_prompt_file(path) == "only line"


def test_read_prompt_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        P.read_prompt_file(tmp_path / "missing.txt")
    empty_first = tmp_path / "e.txt"
    empty_first.write_text("\nsecond\n")
    with pytest.raises(ValueError, match="empty first line"):
        P.read_prompt_file(empty_first)


# --------------------------------------------------------------------------------------------------
# format_task_prompt
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case_id", ["pub_inf_tvg", "pub_inf_vhd"])
def test_format_task_prompt_matches_fixture_user_prompts(reference_data_dir, case_id):
    case, expected = _inference_case(reference_data_dir, case_id)
    got = [P.format_task_prompt(case["prompt_template"], case["dataset"], c) for c in case["captions"]]
    assert got == _round(expected, "main")["user_prompts"]


def test_format_task_prompt_strips_dots_at_both_ends_only():
    template = P.TASK_PROMPTS["tvg_description_zeroshot"]
    out = P.format_task_prompt(template, "charades", "..a man sits down. ")
    # strip('.') leaves the trailing space, so the dot before it survives as well.
    assert "the textual sentence: a man sits down. . Please return" in out
    out = P.format_task_prompt(template, "charades", "a man sits down..")
    assert "the textual sentence: a man sits down. Please return" in out
    assert out.startswith("You are given a video from the charades dataset.")


def test_format_task_prompt_one_placeholder_bug():
    template = P.TASK_PROMPTS["tvg_description"]
    with pytest.raises(ValueError, match="ONE '\\{\\}' placeholder"):
        P.format_task_prompt(template, "charades", "person opens a door.")
    buggy = P.format_task_prompt(template, "charades", "person opens a door.", allow_dropped_query=True)
    assert "textual query charades in the video" in buggy
    assert "door" not in buggy
    fixed = P.format_task_prompt(P.TASK_PROMPTS["tvg_description_fixed"], "charades", "person opens a door.")
    assert "textual query person opens a door in the video" in fixed
    assert "charades" not in fixed
    assert fixed.replace("person opens a door", "{}") == template


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
        P.format_task_prompt(template, "ds", "q")


def test_format_task_prompt_numbered_fields():
    assert P.format_task_prompt("{1} from {0}", "ds", "query.") == "query from ds"


# --------------------------------------------------------------------------------------------------
# ASR
# --------------------------------------------------------------------------------------------------


def test_asr_text_matches_fixture(reference_data_dir):
    case, expected = _inference_case(reference_data_dir, "pub_inf_dvc_asr")
    texts = [
        P.load_asr_text(None if case["asr_files"][v] is None else reference_data_dir / case["asr_files"][v])
        for v in case["videos"]
    ]
    assert texts == expected["asr_text_used"]
    assert texts[0].startswith("1.2 - 3.1 seconds, So today")  # the first line (0.0 - 1.2) is skipped
    prompts = [P.with_asr_prefix(case["prompt_template"], t) for t in texts]
    assert prompts == _round(expected, "main")["user_prompts"]


def test_asr_file_lookup(reference_data_dir, tmp_path):
    asr_dir = reference_data_dir / "inputs" / "asr"
    assert P.asr_file_for_video(asr_dir, "videos/pub_12fps_17s.mp4") == asr_dir / "pub_12fps_17s.txt"
    # The original cuts the name at its FIRST dot.
    assert P.asr_file_for_video(tmp_path, "a/clip_29.97fps.mp4") == tmp_path / "clip_29.txt"
    assert P.load_asr_text(tmp_path / "missing.txt") == "None."


def test_asr_subsampling_stride_and_formatting():
    lines = [f"{i}.00\t{i}.55\tsegment {i}\n" for i in range(31)]  # stride = 31 // 15 = 2
    text = P.asr_text_from_lines(lines)
    used = re.findall(r"segment (\d+)\.", text)
    assert used == [str(i) for i in range(1, 31, 2)]
    assert text.startswith("1.0 - 1.6 seconds, segment 1. 3.0 - 3.5 seconds, segment 3. ")  # :.1f rounding
    assert text.endswith(" ")


def test_asr_subsampling_edge_cases():
    assert P.asr_text_from_lines([]) == "None."
    assert P.asr_text_from_lines(["0.00\t1.00\tonly the first line\n"]) == "None."
    two = ["0\t1\tskipped\n", "1.25\t2\tWow, one!\n", "2\t3\tkeep my dot.\n"]
    assert P.asr_text_from_lines(two) == "1.2 - 2.0 seconds, Wow, one!. 2.0 - 3.0 seconds, keep my dot. "
    assert P.asr_text_from_lines(["x\n", "1\t2\ttext\twith tab"]) == "1.0 - 2.0 seconds, text\twith tab. "


def test_asr_malformed_line_raises():
    with pytest.raises(ValueError, match="line 2 .*expected 'start<TAB>end<TAB>text'"):
        P.asr_text_from_lines(["0\t1\ta\n", "no tabs here\n"], source="f.txt")
    with pytest.raises(ValueError, match="non-numeric times"):
        P.asr_text_from_lines(["0\t1\ta\n", "zero\tone\ttext\n"])


# --------------------------------------------------------------------------------------------------
# QA benchmark prompts
# --------------------------------------------------------------------------------------------------


def test_mvbench_prompt():
    body = "Question: What did he do?\nOptions:\n(A) sit\n(B) stand\n(C) run\nOnly give the best option."
    assert P.mvbench_prompt("What did he do?", ["sit", "stand", "run"]) == P.SYSTEM_BENCHMARK + body
    assert P.mvbench_prompt("What did he do?", ["sit", "stand", "run"], prepend_system=False) == body
    assert P.mvbench_answer_letter(["sit", "stand", "run"], "run") == "C"
    with pytest.raises(ValueError, match="not among the candidates"):
        P.mvbench_answer_letter(["sit"], "fly")
    with pytest.raises(ValueError, match="at least one candidate"):
        P.mvbench_question("q", [])


def test_tempcompass_prompts():
    assert P.tempcompass_prompt("Is it fast?", "yes_no") == "Question: Is it fast?\nPlease answer yes or no:"
    assert (
        P.tempcompass_prompt("Which?\nA. up\nB. down", "multi-choice")
        == "Question: Which?\nA. up\nB. down\nPlease directly give the best option:"
    )
    assert P.tempcompass_prompt("Describe.\nGenerated Caption:", "captioning") == (
        "Question: Describe.\nGenerated Caption:"
    )
    q = "Which caption matches the video better?\nCaption A: a car turns left\nCaption B: a car turns right"
    assert P.tempcompass_caption_labels(q) == ("Caption A", "Caption B")
    assert P.tempcompass_prompt(q, "caption_matching") == (
        f"Question: {q}\nPlease directly give the best option (Caption A or Caption B):"
    )
    assert P.tempcompass_prompt("Which one?", "caption_matching").endswith(
        "\nPlease directly give the best option (Option 1 or Option 2):"
    )
    assert P.tempcompass_prompt(q, "caption_matching", labels=["Sentence A", "Sentence B"]).endswith(
        "(Sentence A or Sentence B):"
    )
    with pytest.raises(ValueError, match="unknown TempCompass task type"):
        P.tempcompass_prompt("q", "open_ended")


def test_egoschema_prompt():
    out = P.egoschema_prompt("What is c doing?", ["a0", "a1", "a2", "a3", "a4"])
    assert out == (
        "Select the best answer to the following multiple-choice question based on the egocentric video. "
        "Respond with only the letter (A, B, C, D, or E) of the correct option. \nQuestion: What is c "
        "doing?\n(A) a0\n(B) a1\n(C) a2\n(D) a3\n(E) a4\nThe best answer is:"
    )
    with pytest.raises(ValueError, match="5 options"):
        P.egoschema_prompt("q", ["a", "b"])


def test_videomme_prompt():
    out = P.videomme_prompt("How many?", ["one", "two", "three", "four"])
    assert "based on the egocentric video" in out  # the original's copy-paste, kept
    assert "\nQuestion: How many?\nOptions:\n(A) one\n(B) two\n(C) three\n(D) four\nThe best answer is:" in out
    with pytest.raises(ValueError, match="4 options"):
        P.videomme_prompt("q", ["a", "b", "c", "d", "e"])
