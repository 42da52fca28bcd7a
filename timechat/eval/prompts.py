"""Task prompts, system texts and question builders used at evaluation time.

Mirrors the text side of the original evaluation (reference/TIMECHAT_SPEC.md sections 3.6, 5.1, 5.2,
5.4 and 5.7):

* ``prompts/*.txt`` of the original repository -> :data:`TASK_PROMPTS` (the first line of each file,
  stripped, which is what ``evaluate.py``'s ``read_txt`` fed the model) and :func:`read_prompt_file`;
* ``evaluate.py``'s ``prompt.format(args.dataset, caption.strip('.'))`` -> :func:`format_task_prompt`;
* ``evaluate.py --asr`` / ``utils/asr/asr_data_process.py`` (ASR subsampling and the "Transcribed
  speech: ..." prefix) -> :func:`asr_text_from_lines`, :func:`load_asr_text`,
  :func:`asr_file_for_video`, :func:`with_asr_prefix`;
* ``evaluate.py`` / ``conversation_video_batch.conv_llava_llama_2`` / ``benchmark/evaluate_*.py``
  system texts -> :data:`SYSTEM_EVALUATE`, :data:`SYSTEM_LLAVA_LLAMA_2`, :data:`SYSTEM_BENCHMARK`;
* ``benchmark/evaluate_{mvbench,tempcompass,egoschema,videomme}.py`` question builders ->
  :func:`mvbench_prompt`, :func:`tempcompass_prompt`, :func:`egoschema_prompt`,
  :func:`videomme_prompt`.

Every string here is data the released checkpoint saw, so the original's typos (``seonds``,
``An specific example``, ``' .``) and oddities are kept verbatim; bugs are documented next to them and,
where it makes sense, a fixed variant is offered under a different name.
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import Sequence

from timechat.constants import BENCHMARK_SYSTEM, CHAT_SYSTEM, EVAL_SYSTEM
from timechat.data.asr import (  # noqa: F401 (re-exported)
    ASR_MAX_SEGMENTS,
    ASR_NONE,
    asr_file_for_video,
    asr_text_from_lines,
    load_asr_text,
    with_asr_prefix,
)

# --------------------------------------------------------------------------------------------------
# System texts (spec 5.2)
# --------------------------------------------------------------------------------------------------

#: ``evaluate.py`` overrides the conversation's system text with EVAL_SYSTEM (DVC / TVG / VHD); the
#: QA benchmarks use BENCHMARK_SYSTEM (MVBench also prepends it to the question, see :func:`mvbench_prompt`).
SYSTEM_EVALUATE = EVAL_SYSTEM
SYSTEM_LLAVA_LLAMA_2 = CHAT_SYSTEM
SYSTEM_BENCHMARK = BENCHMARK_SYSTEM

#: System texts by the names the eval config uses (``eval.system``).
SYSTEM_TEXTS: dict[str, str] = {
    "evaluate": SYSTEM_EVALUATE,
    "llava_llama_2": SYSTEM_LLAVA_LLAMA_2,
    "benchmark": SYSTEM_BENCHMARK,
    # The system text of the training conversations (a single space), for models that only ever saw
    # training prompts (e.g. the tiny model trained from scratch).
    "train": " ",
}


def resolve_system(name_or_text: str) -> str:
    """A system text by name (a key of :data:`SYSTEM_TEXTS`), else ``name_or_text`` itself."""
    return SYSTEM_TEXTS.get(name_or_text, name_or_text)


# --------------------------------------------------------------------------------------------------
# Task prompts (spec 5.4): the first line of each prompt file, stripped
# --------------------------------------------------------------------------------------------------

TASK_PROMPTS: dict[str, str] = {
    # YouCook2 zero-shot DVC; the prompt eval.sh uses.
    "dvc_description_zeroshot": (
        "You are given a cooking video from the YouCook2 dataset. Please watch the video and extract a "
        "maximum of 10 significant cooking steps. For each step, determine the starting and ending times "
        "and provide a concise description. The format should be: 'start time - end time, brief step "
        "description'. For example, ' 90 - 102 seconds, spread margarine on two slices of white bread'."
    ),
    "dvc_description": (
        "Localize a series of activity events in the video, output the start and end timestamp for each "
        "event, and describe each event with sentences. The output format of each predicted event should "
        "be like: 'start - end seconds, event description'. A specific example is : ' 90 - 102 seconds, "
        "spread margarine on two slices of white bread in the video' ."
    ),
    # "An specific example" is the original's wording.
    "dvc_description_with_asr": (
        "You are able to understand the visual content that the user provides. Localize a series of "
        "activity events in the video with the aid of transcribed speech, output the start and end "
        "timestamp for each event, and describe each event with sentences. The output format of each "
        "predicted event should be like: 'start - end seconds, event description'. An specific example "
        "is : ' 90 - 102 seconds, spread margarine on two slices of white bread in the video' ."
    ),
    "dvc_post_check": (
        "Be careful about your output format, you should provide start time and end time for each step. "
        "The format should be: 'start time - end time, brief step description', for example, ' 90 - 102 "
        "seconds, spread margarine on two slices of white bread'."
    ),
    # Charades zero-shot TVG; the prompt eval.sh uses. Two placeholders: dataset name, query.
    # "seonds" is the original's typo.
    "tvg_description_zeroshot": (
        "You are given a video from the {} dataset. Please find the visual event described by a sentence "
        "in the video, determining its starting and ending times. The format should be: 'The event "
        "happens in the start time - end time'. For example, The event 'person turn a light on' happens "
        "in the 24.3 - 30.4 seonds. Now I will give you the textual sentence: {}. Please return its start "
        "time and end time."
    ),
    # BUG kept on purpose: ONE placeholder. `prompt.format(dataset, query)` fills it with the DATASET
    # name and silently drops the query, so the model is never told what to ground. The file's first
    # line ends with a space, removed by the strip. format_task_prompt() refuses this template unless
    # asked for the bug explicitly; use "tvg_description_fixed" for a prompt that carries the query.
    "tvg_description": (
        "Localize the visual content described by the given textual query {} in the video, and output "
        "the start and end timestamps in seconds. The output format of the predicted timestamp should be "
        "like: 'start - end seconds'. A specific example is : 20.8 - 30.0 seconds' ."
    ),
    # Not in the original: tvg_description with the placeholder bound to the query ({1} = the second
    # argument of format(dataset, query)); the wording is otherwise unchanged.
    "tvg_description_fixed": (
        "Localize the visual content described by the given textual query {1} in the video, and output "
        "the start and end timestamps in seconds. The output format of the predicted timestamp should be "
        "like: 'start - end seconds'. A specific example is : 20.8 - 30.0 seconds' ."
    ),
    "tvg_post_check": (
        "Be careful about your output format, you should provide start time and end time for the visual "
        "event. The format should be: 'The event happens in the start time - end time'. For example, The "
        "event 'person turn a light on' happens in the 24.3 - 30.4 seonds."
    ),
    # QVHighlights VHD; the prompt eval.sh uses. Two placeholders: dataset name, query.
    "vhd_description": (
        "You are given a video from the {} dataset. Please find the highlight moments in the video "
        "described by a sentence query, determining the highlight moment's timestamp and its saliency "
        "score. The output format should be like: 'There are 10 highlight moments in the 82, 84, 86, 88, "
        "90, 92, 94, 96, 98, 100 second. Their saliency scores are 1.3, 1.7, 1.7, 1.7, 1.7, 1.3, 1.7, "
        "2.3, 2.3, 2.3'. Now I will give you the sentence query: {}. Please return the query-based "
        "highlight moments."
    ),
    "vhd_description_zeroshot": (
        "You are given a video from the {} dataset. Please find the highlight contents in the video "
        "described by a sentence query, determining the highlight timestamps and its saliency score on a "
        "scale from 1 to 5. The output format should be like: 'The highlight timestamps are in the 82, "
        "84, 86, 88, 90, 92, 94, 96, 98, 100 seconds. Their saliency scores are 1.3, 1.7, 1.7, 1.7, 1.7, "
        "1.3, 1.7, 2.3, 2.3, 2.3'. Now I will give you the sentence query: {}. Please return the "
        "query-based highlight timestamps and salient scores."
    ),
    "vhd_post_check": (
        "Be careful about your output format, you should provide timestamp and saliency score for the "
        "highlight moment. The output format should be like: 'There are 10 highlight moments in the 82, "
        "84, 86, 88, 90, 92, 94, 96, 98, 100 second. Their saliency scores are 1.3, 1.7, 1.7, 1.7, 1.7, "
        "1.3, 1.7, 2.3, 2.3, 2.3'."
    ),
}

#: Prompt names whose templates take ``format(dataset, query)`` (the tvg/vhd branch of evaluate.py).
QUERY_PROMPTS = frozenset(
    name for name in TASK_PROMPTS if name.startswith(("tvg_description", "vhd_description"))
)


def get_prompt(name: str) -> str:
    """Return the task prompt called ``name`` (a key of :data:`TASK_PROMPTS`).

    Raises:
        KeyError: naming the unknown prompt and listing the known ones.
    """
    try:
        return TASK_PROMPTS[name]
    except KeyError:
        raise KeyError(f"unknown prompt {name!r}; known prompts: {sorted(TASK_PROMPTS)}") from None


def resolve_prompt(name_or_path: str | Path) -> str:
    """A task prompt by name (a key of :data:`TASK_PROMPTS`) or from a prompt file.

    Args:
        name_or_path: a prompt name such as ``tvg_description_zeroshot``, or the path of a prompt file
            (its first line is used, see :func:`read_prompt_file`).

    Returns:
        The prompt template.

    Raises:
        FileNotFoundError: if it is neither a known name nor an existing file (the message lists the
            known names).
    """
    if isinstance(name_or_path, str) and name_or_path in TASK_PROMPTS:
        return TASK_PROMPTS[name_or_path]
    path = Path(name_or_path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{str(name_or_path)!r} is neither a known prompt name ({sorted(TASK_PROMPTS)}) nor a prompt file"
        )
    return read_prompt_file(path)


def read_prompt_file(path: str | Path) -> str:
    """Read a prompt file the way the original ``read_txt`` did: first line, stripped.

    Universal-newline reading plus ``strip()`` makes CRLF (and lone CR) files give the same prompt as
    LF files; several of the original prompt files have CRLF endings.

    Args:
        path: the prompt file.

    Returns:
        The first line without surrounding whitespace.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ValueError: if the first line is empty (the original would have sent an empty prompt).
    """
    path = Path(path)
    with path.open("r", encoding="utf-8") as f:
        first = f.readline()
    # A UTF-8 BOM would otherwise become part of the prompt text.
    prompt = first.lstrip("\ufeff").strip()
    if not prompt:
        raise ValueError(f"prompt file {path} has an empty first line; expected the prompt text there")
    return prompt


def _placeholders(template: str) -> list[str]:
    """Field names of ``template`` in order ('' for an automatic ``{}``).

    Raises:
        ValueError: for malformed braces, naming the template.
    """
    try:
        return [field for _, field, _, _ in string.Formatter().parse(template) if field is not None]
    except ValueError as e:
        raise ValueError(f"prompt template has malformed braces ({e}): {template[:80]!r}...") from None


def format_task_prompt(
    template: str, dataset: str, query: str, *, allow_dropped_query: bool = False
) -> str:
    """Fill a TVG/VHD prompt template like ``evaluate.py`` did.

    Reproduces ``template.format(dataset, query.strip('.'))``: note that ``strip('.')`` removes dots at
    BOTH ends of the query, and nothing else (no whitespace strip).

    The template must use the query: either two automatic fields (``{} ... {}`` = dataset, query) or
    explicit indices among ``{0}`` (dataset) and ``{1}`` (query) that include ``{1}``.

    Args:
        template: the prompt template (e.g. ``TASK_PROMPTS["tvg_description_zeroshot"]``).
        dataset: dataset name as given to ``evaluate.py --dataset`` (e.g. ``charades``).
        query: the sentence query (annotation ``caption``).
        allow_dropped_query: reproduce the ``tvg_description.txt`` bug, i.e. accept a template with a
            single ``{}`` that receives the dataset name while the query is silently dropped.

    Returns:
        The filled prompt.

    Raises:
        ValueError: if the template's placeholders do not fit ``(dataset, query)``: none, more than
            two, named fields, a mix of ``{}`` and ``{0}``, or one ``{}`` (query dropped) without
            ``allow_dropped_query``.
    """
    fields = _placeholders(template)
    snippet = template[:80]
    if any(f and not f.isdigit() for f in fields):
        raise ValueError(
            f"prompt template uses named placeholders {fields}; expected '{{}}' or '{{0}}'/'{{1}}' "
            f"(dataset, query): {snippet!r}..."
        )
    auto = [f for f in fields if f == ""]
    manual = {int(f) for f in fields if f != ""}
    if auto and manual:
        raise ValueError(f"prompt template mixes '{{}}' and numbered placeholders: {snippet!r}...")
    if auto:
        if len(auto) == 1 and not allow_dropped_query:
            raise ValueError(
                "prompt template has ONE '{}' placeholder: format(dataset, query) would fill it with the "
                "dataset name and drop the query (the tvg_description.txt bug). Use a template with two "
                "placeholders (e.g. 'tvg_description_fixed') or pass allow_dropped_query=True to "
                f"reproduce the bug: {snippet!r}..."
            )
        if len(auto) > 2:
            raise ValueError(
                f"prompt template has {len(auto)} '{{}}' placeholders; expected 2 (dataset, query): "
                f"{snippet!r}..."
            )
    elif manual:
        if not manual <= {0, 1}:
            raise ValueError(
                f"prompt template uses placeholder indices {sorted(manual)}; only {{0}} (dataset) and "
                f"{{1}} (query) exist: {snippet!r}..."
            )
        if 1 not in manual and not allow_dropped_query:
            raise ValueError(f"prompt template never uses the query ({{1}}): {snippet!r}...")
    else:
        raise ValueError(
            f"prompt template has no placeholder, so neither dataset nor query would appear: {snippet!r}..."
        )
    return template.format(dataset, query.strip("."))


# --------------------------------------------------------------------------------------------------
# ASR (spec 3.6): implemented once in timechat.data.asr (training records use it too)
# --------------------------------------------------------------------------------------------------
# ASR_NONE, ASR_MAX_SEGMENTS, asr_text_from_lines, load_asr_text, asr_file_for_video and
# with_asr_prefix are imported at the top of this module.


# --------------------------------------------------------------------------------------------------
# QA benchmarks (spec 5.7)
# --------------------------------------------------------------------------------------------------

MVBENCH_ANSWER_INSTRUCTION = "\nOnly give the best option."


def option_letter(index: int) -> str:
    """Letter of the ``index``-th option: 0 -> ``A``."""
    if not 0 <= index < 26:
        raise ValueError(f"option index {index} out of range 0..25")
    return chr(ord("A") + index)


def mvbench_question(question: str, candidates: Sequence[str]) -> str:
    """MVBench question block: ``Question: {q}\\nOptions:\\n(A) {c1}\\n(B) {c2}...`` (no final newline).

    Args:
        question: the question text.
        candidates: the answer candidates in dataset order.
    """
    if not candidates:
        raise ValueError("MVBench question needs at least one candidate")
    lines = [f"Question: {question}", "Options:"]
    lines += [f"({option_letter(i)}) {c}" for i, c in enumerate(candidates)]
    return "\n".join(lines)


def mvbench_prompt(question: str, candidates: Sequence[str], *, prepend_system: bool = True) -> str:
    """Full MVBench user text as ``benchmark/evaluate_mvbench.py`` sent it.

    The original passes :data:`SYSTEM_BENCHMARK` as the system text AND prepends it to the question
    (``prepend_system=True`` reproduces that), then appends ``"\\nOnly give the best option."``.

    Args:
        question: the question text.
        candidates: the answer candidates in dataset order.
        prepend_system: prepend :data:`SYSTEM_BENCHMARK` (which ends with a newline).

    Returns:
        The user message text.
    """
    body = mvbench_question(question, candidates) + MVBENCH_ANSWER_INSTRUCTION
    return (SYSTEM_BENCHMARK + body) if prepend_system else body


def mvbench_answer_letter(candidates: Sequence[str], answer: str) -> str:
    """Ground-truth option letter of ``answer`` among ``candidates`` (MVBench stores the answer text).

    Raises:
        ValueError: if ``answer`` is not one of the candidates.
    """
    try:
        return option_letter(list(candidates).index(answer))
    except ValueError:
        raise ValueError(f"answer {answer!r} is not among the candidates {list(candidates)}") from None


TEMPCOMPASS_TASK_TYPES = ("multi-choice", "yes_no", "caption_matching", "captioning")

#: Suffix appended to ``Question: {question}`` per TempCompass task type. ``{labels}`` in the
#: caption-matching suffix is filled with the two option labels joined by " or ".
TEMPCOMPASS_SUFFIXES: dict[str, str] = {
    "multi-choice": "\nPlease directly give the best option:",
    "yes_no": "\nPlease answer yes or no:",
    "caption_matching": "\nPlease directly give the best option ({labels}):",
    "captioning": "",
}

#: Labels used when a caption-matching question names none that we can detect.
TEMPCOMPASS_DEFAULT_LABELS = ("Option 1", "Option 2")


def tempcompass_caption_labels(question: str) -> tuple[str, ...]:
    """Option labels of a TempCompass caption-matching question, in order of appearance.

    TempCompass caption-matching questions list their candidates on lines such as ``Caption A: ...``,
    ``Sentence B: ...`` or ``Option 1: ...``; the label is the text before the colon.

    Args:
        question: the question text.

    Returns:
        The distinct labels found, or :data:`TEMPCOMPASS_DEFAULT_LABELS` if none.
    """
    labels: list[str] = []
    for line in question.splitlines():
        head, sep, _ = line.strip().partition(":")
        words = head.split()
        if sep and len(words) == 2 and words[0].lower() in {"caption", "sentence", "option"}:
            if head not in labels:
                labels.append(head)
    return tuple(labels) if labels else TEMPCOMPASS_DEFAULT_LABELS


def tempcompass_prompt(question: str, task_type: str, labels: Sequence[str] | None = None) -> str:
    """TempCompass user text: ``Question: {question}{suffix}``.

    Args:
        question: the question text (caption-matching questions already contain the candidates;
            captioning questions already end with their own answer cue).
        task_type: one of :data:`TEMPCOMPASS_TASK_TYPES`.
        labels: caption-matching option labels; detected from ``question`` when omitted.

    Returns:
        The user message text.

    Raises:
        ValueError: for an unknown task type.
    """
    if task_type not in TEMPCOMPASS_SUFFIXES:
        raise ValueError(f"unknown TempCompass task type {task_type!r}; expected one of {TEMPCOMPASS_TASK_TYPES}")
    suffix = TEMPCOMPASS_SUFFIXES[task_type]
    if task_type == "caption_matching":
        labels = tuple(labels) if labels else tempcompass_caption_labels(question)
        suffix = suffix.format(labels=" or ".join(labels))
    return f"Question: {question}{suffix}"


EGOSCHEMA_TEMPLATE = (
    "Select the best answer to the following multiple-choice question based on the egocentric video. "
    "Respond with only the letter (A, B, C, D, or E) of the correct option. \nQuestion: {question}\n"
    "(A) {o0}\n(B) {o1}\n(C) {o2}\n(D) {o3}\n(E) {o4}\nThe best answer is:"
)


def egoschema_prompt(question: str, options: Sequence[str]) -> str:
    """EgoSchema user text (``benchmark/evaluate_egoschema.py``); exactly five options.

    Raises:
        ValueError: if there are not five options.
    """
    if len(options) != 5:
        raise ValueError(f"EgoSchema questions have 5 options (A-E), got {len(options)}")
    return EGOSCHEMA_TEMPLATE.format(question=question, **{f"o{i}": o for i, o in enumerate(options)})


def videomme_prompt(question: str, options: Sequence[str]) -> str:
    """Video-MME user text (``benchmark/evaluate_videomme.py``, no subtitles).

    The original copied the EgoSchema prompt (it still says "egocentric video", kept), with four
    options A-D under an ``Options:`` header. The spec describes this prompt but does not quote it;
    this layout ("(A) ..." lines, matching the ``(X)`` answer parser) is a reconstruction to verify
    against the original script. Options are inserted as given; strip any ``A.`` prefix that the
    Video-MME annotation carries before calling if the original did so.

    Raises:
        ValueError: if there are not four options.
    """
    if len(options) != 4:
        raise ValueError(f"Video-MME questions have 4 options (A-D), got {len(options)}")
    option_lines = "\n".join(f"({option_letter(i)}) {o}" for i, o in enumerate(options))
    return (
        "Select the best answer to the following multiple-choice question based on the egocentric video. "
        "Respond with only the letter (A, B, C, or D) of the correct option. \n"
        f"Question: {question}\nOptions:\n{option_lines}\nThe best answer is:"
    )
