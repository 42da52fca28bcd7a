"""MVBench: question prompt, answer check, annotations, frames and accuracy per task.

Computes what the original's ``benchmark/evaluate_mvbench.py`` computes (TIMECHAT_SPEC.md section
5.7; pinned by ``reference_benchmarks``):

* samples from :data:`MVBENCH_DATA_LIST` (20 tasks, in that order; each json file's order), video
  path ``videos_dir + '/' + prefix`` joined with the entry's ``video``;
* frames: `timechat.data.video.load_mvbench_clip` (segment midpoints within the ``start``/``end``
  bounds, full-resolution decode, PIL bicubic shorter side 224 + centre crop, numpy-rounded
  timestamps), chosen by the sample's ``meta["loader"]``; timestamps tokenized with LLaMA
  (``eval.timestamp_tokenizer: llama``);
* user text: the system sentence again + ``Question: ...\nOptions:\n(A) ...`` + ``\nOnly give the
  best option.`` (:func:`mvbench_prompt`); ground truth ``(X) answer`` (:func:`mvbench_gt_answer`);
* prediction = first line of the answer, judged by :func:`mvbench_check_ans` (no ``(`` counts as
  ``(a)``); a sample whose frames cannot be read is skipped and not counted;
* ``test.json`` (``acc_dict`` + ``res_list``) and ``upload_leaderboard.json`` (per task and ``Avg``),
  byte for byte as the original writes them.

QUIRK kept by default: ``Avg`` pools all samples. ``eval.extra.avg: mean`` writes the mean over
tasks instead; the metrics always carry both (``Avg`` as written, ``Avg (pooled)``, ``Mean of
tasks``). The count of answers judged as ``(a)`` because they hold no ``(`` is reported.

Input: ``eval.anno_path`` = MVBench's ``json/`` folder, ``eval.videos_dir`` = its ``video/`` folder;
``extra.tasks`` may replace the table (``{task name: {json, prefix, data_type (video|frame), bound}}``).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Sequence

from timechat.constants import BENCHMARK_SYSTEM
from timechat.eval.inference import EvalSample
from timechat.eval.tasks.base import EvalTask, TaskOutput, decode_failures, read_json, sample_counts
from timechat.eval.tasks.common import (
    R_QA_NO_LETTER,
    ParseResult,
    letter_in_range,
    option_letter,
    write_original_json,
)

# --------------------------------------------------------------------------------------------------
# Prompt
# --------------------------------------------------------------------------------------------------

MVBENCH_ANSWER_INSTRUCTION = "\nOnly give the best option."


def mvbench_question(question: str, candidates: Sequence[str]) -> str:
    """MVBench question block: ``Question: {q}\\nOptions:\\n(A) {c1}\\n(B) {c2}...``, right-stripped.

    Args:
        question: the question text.
        candidates: the answer candidates in dataset order.
    """
    if not candidates:
        raise ValueError("MVBench question needs at least one candidate")
    text = f"Question: {question}\nOptions:\n"
    text += "".join(f"({option_letter(i)}) {c}\n" for i, c in enumerate(candidates))
    return text.rstrip()  # the original's rstrip: also strips the last candidate's trailing spaces


def mvbench_prompt(question: str, candidates: Sequence[str], *, prepend_system: bool = True) -> str:
    """Full MVBench user text as ``benchmark/evaluate_mvbench.py`` sent it.

    The original passes :data:`BENCHMARK_SYSTEM` as the system text AND prepends it to the question
    (``prepend_system=True`` reproduces that), then appends ``"\\nOnly give the best option."``.

    Args:
        question: the question text.
        candidates: the answer candidates in dataset order.
        prepend_system: prepend :data:`BENCHMARK_SYSTEM` (which ends with a newline).

    Returns:
        The user message text.
    """
    body = mvbench_question(question, candidates) + MVBENCH_ANSWER_INSTRUCTION
    return (BENCHMARK_SYSTEM + body) if prepend_system else body


def mvbench_answer_letter(candidates: Sequence[str], answer: str) -> str:
    """Ground-truth option letter of ``answer`` among ``candidates`` (MVBench stores the answer text).

    Raises:
        ValueError: if ``answer`` is not one of the candidates.
    """
    try:
        return option_letter(list(candidates).index(answer))
    except ValueError:
        raise ValueError(f"answer {answer!r} is not among the candidates {list(candidates)}") from None


def mvbench_gt_answer(candidates: Sequence[str], answer: str) -> str:
    """The original's ground truth ``({letter}) {answer}``: the letter of the LAST candidate equal to
    ``answer``, ``@`` (``chr(ord('A') - 1)``) when none is."""
    idx = -1
    for i, c in enumerate(candidates):
        if c == answer:
            idx = i
    return f"({chr(ord('A') + idx)}) {answer}"


# --------------------------------------------------------------------------------------------------
# Answer check (the original's infer_mvbench + check_ans)
# --------------------------------------------------------------------------------------------------


def mvbench_first_line(answer: str) -> str:
    """The prediction the original keeps: ``answer.strip().split('\\n')[0]``."""
    return answer.strip().split("\n")[0]


def mvbench_pred_option(pred: str) -> str:
    """``(`` + the lower-cased text after the first ``(`` up to the next ``(`` or ``)`` (or the end) +
    ``)`` (the original's ``pred.split('(')[1].split(')')[0]``, so ``((C))`` gives ``()``); ``(a)``
    when there is no ``(`` at all (so ``B``, ``''`` and full-width brackets count as A)."""
    low = pred.lower()
    if "(" not in low:
        return "(a)"
    return "(" + low.split("(")[1].split(")")[0] + ")"


def mvbench_check_ans(pred: str, gt: str) -> bool:
    """The original's ``check_ans``: the prediction's option without dots is contained in the
    ground truth's ``(x)``, or the other way round (``(B.)`` and ``(.C)`` match, ``( B )`` does not)."""
    pred_option = mvbench_pred_option(pred)
    gt_option = gt.lower().split(" ")[0]
    return pred_option.replace(".", "") in gt_option or gt_option in pred_option


# --------------------------------------------------------------------------------------------------
# Answer parser (strict; not used for the original's score)
# --------------------------------------------------------------------------------------------------

# Reasons are fixed strings (no per-sample content) so that they can be counted.
R_QA_PAREN_NOT_LETTER = "first '(...)' of the first line holds no option letter"
R_QA_LETTER_RANGE = "option letter outside the given options"

_FIRST_PAREN_RE = re.compile(r"\(([^()]*)\)")


def parse_mvbench_answer(text: str, num_options: int | None = None) -> ParseResult:
    """MVBench: the option letter inside the first ``(...)`` of the first output line.

    The original compared the content of the first parenthesised group (lower-cased) with the
    ground-truth letter, so ``(the man) ... (B)`` gives nothing usable and ``(b)`` counts as ``B``.
    When nothing is found it answered ``(a)`` (see :func:`mvbench_check_ans`, which scores).

    Args:
        text: the model's answer.
        num_options: number of candidates; a letter beyond them is unparseable.

    Returns:
        ``ParseResult`` with the upper-case letter, or ``None``.
    """
    first_line = text.split("\n", 1)[0]
    match = _FIRST_PAREN_RE.search(first_line)
    if match is None:
        return ParseResult.failure(R_QA_NO_LETTER)
    content = match.group(1).strip()
    if len(content) != 1 or not (content.isascii() and content.isalpha()):
        return ParseResult.failure(R_QA_PAREN_NOT_LETTER)
    letter = content.upper()
    if not letter_in_range(letter, num_options):
        return ParseResult.failure(R_QA_LETTER_RANGE)
    return ParseResult.success(letter)


# --------------------------------------------------------------------------------------------------
# Task
# --------------------------------------------------------------------------------------------------


#: The original ``main()``'s task table, in its order: name -> (json file, video prefix, data type, bounded).
MVBENCH_DATA_LIST: dict[str, tuple[str, str, str, bool]] = {
    "Action Sequence": ("action_sequence.json", "star/Charades_v1_480/", "video", True),
    "Action Prediction": ("action_prediction.json", "star/Charades_v1_480/", "video", True),
    "Action Antonym": ("action_antonym.json", "ssv2_video/", "video", False),
    "Fine-grained Action": ("fine_grained_action.json", "Moments_in_Time_Raw/videos/", "video", False),
    "Unexpected Action": ("unexpected_action.json", "FunQA_test/test/", "video", False),
    "Object Existence": ("object_existence.json", "clevrer/video_validation/", "video", False),
    "Object Interaction": ("object_interaction.json", "star/Charades_v1_480/", "video", True),
    "Object Shuffle": ("object_shuffle.json", "perception/videos/", "video", False),
    "Moving Direction": ("moving_direction.json", "clevrer/video_validation/", "video", False),
    "Action Localization": ("action_localization.json", "sta/sta_video/", "video", True),
    "Scene Transition": ("scene_transition.json", "scene_qa/video/", "video", False),
    "Action Count": ("action_count.json", "perception/videos/", "video", False),
    "Moving Count": ("moving_count.json", "clevrer/video_validation/", "video", False),
    "Moving Attribute": ("moving_attribute.json", "clevrer/video_validation/", "video", False),
    "State Change": ("state_change.json", "perception/videos/", "video", False),
    "Fine-grained Pose": ("fine_grained_pose.json", "nturgbd/", "video", False),
    "Character Order": ("character_order.json", "perception/videos/", "video", False),
    "Egocentric Navigation": ("egocentric_navigation.json", "vlnqa/", "video", False),
    "Episodic Reasoning": ("episodic_reasoning.json", "tvqa/frames_fps3_hq/", "frame", True),
    "Counterfactual Inference": ("counterfactual_inference.json", "clevrer/video_validation/", "video", False),
}

#: ``eval.extra.avg`` values: ``pooled`` (default, the original: all correct / all counted) or
#: ``mean`` (corrected: mean of the task accuracies) for the ``Avg`` of upload_leaderboard.json.
MVBENCH_AVG_MODES = ("pooled", "mean")


def mvbench_scores(rows: Sequence[tuple[str, bool]], avg: str = "pooled") -> tuple[dict[str, list[int]], dict[str, float], float]:
    """``acc_dict`` (task -> [correct, total], order of first appearance), ``final_res`` (per task
    percent + ``Avg``) and the mean over tasks, from ``(task, correct)`` rows in sample order."""
    if avg not in MVBENCH_AVG_MODES:
        raise ValueError(f"eval.extra.avg must be one of {MVBENCH_AVG_MODES}, got {avg!r}")
    acc: dict[str, list[int]] = {}
    for task, ok in rows:
        acc.setdefault(task, [0, 0])
        acc[task][1] += 1
        acc[task][0] += int(bool(ok))
    final: dict[str, float] = {k: v[0] / v[1] * 100 for k, v in acc.items()}
    correct, total = sum(v[0] for v in acc.values()), sum(v[1] for v in acc.values())
    mean = sum(final.values()) / len(final) if final else 0.0
    if total:
        final["Avg"] = correct / total * 100 if avg == "pooled" else mean
    return acc, final, mean


class MVBenchTask(EvalTask):
    """MVBench as the original ``evaluate_mvbench.py`` computes it (see the module docstring)."""

    name = benchmark = "mvbench"
    extra_keys = frozenset({"tasks", "avg"})
    timestamp_tokenizer = "llama"

    def data_list(self) -> dict[str, dict[str, Any]]:
        """Task name -> ``{json, prefix, data_type, bound}``: ``extra.tasks`` or :data:`MVBENCH_DATA_LIST`."""
        tasks = self.cfg.extra.get("tasks")
        if tasks:
            return {name: {"json": spec["json"], "prefix": spec.get("prefix", ""),
                           "data_type": spec.get("data_type", "video"), "bound": bool(spec.get("bound", False))}
                    for name, spec in tasks.items()}
        return {name: {"json": j, "prefix": p, "data_type": d, "bound": b}
                for name, (j, p, d, b) in MVBENCH_DATA_LIST.items()}

    def build_samples(self) -> list[EvalSample]:
        anno = Path(self._require("anno_path"))
        root = self._require("videos_dir")
        samples = []
        for task, spec in self.data_list().items():
            data = read_json(anno / spec["json"], f"MVBench json of task {task!r}")
            for k, q in enumerate(data):
                for key in ("video", "question", "candidates", "answer"):
                    if key not in q:
                        raise ValueError(f"{anno / spec['json']}: item {k} has no {key!r}")
                bound = [q["start"], q["end"]] if spec["bound"] else None
                video = os.path.join(root + "/" + spec["prefix"], q["video"])
                samples.append(EvalSample(
                    f"{task}/{k}", video, mvbench_prompt(q["question"], q["candidates"]), None,
                    {"task": task, "gt": mvbench_gt_answer(q["candidates"], q["answer"]),
                     "num_options": len(q["candidates"]),
                     "loader": {"kind": "mvbench", "bound": bound, "data_type": spec["data_type"]}}))
        return self.limit(samples)

    def evaluate(self, entries: Sequence[dict[str, Any]], out_dir: str | Path) -> TaskOutput:
        out_dir = Path(out_dir)
        avg = self.cfg.extra.get("avg", "pooled")
        stats = self.parse_stats()
        res_list, scored, no_paren = [], [], 0
        for e in entries:
            if "error" in e:
                continue  # the original skipped samples it could not load: not counted anywhere
            pred = mvbench_first_line(e["answer"])
            gt = e["meta"]["gt"]
            no_paren += "(" not in pred
            stats.add(None if "(" in pred else "no '(' in the first line: judged as (A)", e["id"], e["answer"])
            res_list.append({"pred": pred, "gt": gt})
            scored.append((e["meta"]["task"], mvbench_check_ans(pred, gt)))
        acc, final, mean = mvbench_scores(scored, avg)
        files = {
            "test": write_original_json(out_dir / "test.json", {"acc_dict": acc, "res_list": res_list}),
            "upload_leaderboard": write_original_json(out_dir / "upload_leaderboard.json", final),
        }
        metrics: dict[str, Any] = dict(final)
        if scored:
            metrics["Avg (pooled)"] = sum(ok for _, ok in scored) / len(scored) * 100
            metrics["Mean of tasks"] = mean
        counts = {**sample_counts(entries), "scored": len(scored), "skipped": len(entries) - len(scored),
                  "judged_as_A_without_paren": no_paren}
        notes = [f"Avg in upload_leaderboard.json: {avg} (eval.extra.avg; the original pools all samples). "
                 f"Pooled {metrics.get('Avg (pooled)', 0):.2f}, mean of tasks {mean:.2f}."]
        return TaskOutput(metrics, {self.benchmark: stats}, counts, files,
                          decode_failures(entries, self.cfg.max_examples), notes=notes)
