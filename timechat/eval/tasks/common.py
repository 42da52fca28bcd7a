"""Text helpers shared by several evaluation tasks: parse results, numbers, prompts, QA letters.

Mirrors what the original's evaluation scripts (TIMECHAT_SPEC.md sections 5.1-5.7) share:

* the parse outcome every answer parser returns (:class:`ParseResult`, with a fixed reason string
  so failures can be counted in a `timechat.stats.IssueStats`);
* the number / ``A - B`` pair / clock-time patterns of the original ``utils/format_dvc.py``,
  ``utils/format_tvg.py`` and ``utils/format_vhd.py``;
* system texts by name (spec 5.2) and prompt templates: ``evaluate.py``'s ``read_txt``
  (:func:`read_prompt_file`) and ``prompt.format(args.dataset, caption.strip('.'))``
  (:func:`format_task_prompt`, :func:`fill_query_prompt`);
* the COCO caption annotation file of DVC, TVG and VHD (:func:`read_coco_annotations`);
* the option letters of the multiple-choice benchmarks (``benchmark/evaluate_*.py``), the original's
  seeded random letter for an answer without one (:class:`SeededFallback`) and the original's JSON
  file writing (:func:`write_original_json`).

The per-task prompts, parsers and annotation readers live in the task modules beside this one.
No parser raises on any input string.
"""

from __future__ import annotations

import json
import math
import random
import re
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from timechat.constants import BENCHMARK_SYSTEM, CHAT_SYSTEM, EVAL_SYSTEM
from timechat.io import read_json

OK = "ok"
UNPARSEABLE = "unparseable"

# Reasons are fixed strings (no per-sample content) so that IssueStats can histogram them; each task
# module defines its own, these are shared.
R_EMPTY = "empty answer"
R_QA_NO_LETTER = "no option letter found"


@dataclass(frozen=True)
class ParseResult:
    """Outcome of parsing one answer.

    Attributes:
        value: the parsed value (type depends on the parser); ``None`` whenever ``status`` is
            ``unparseable``.
        status: ``"ok"`` or ``"unparseable"``.
        reason: why it is unparseable (one of the ``R_*`` strings); ``None`` when ok.
    """

    value: Any
    status: str = OK
    reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == OK

    @classmethod
    def success(cls, value: Any) -> "ParseResult":
        return cls(value=value, status=OK, reason=None)

    @classmethod
    def failure(cls, reason: str) -> "ParseResult":
        return cls(value=None, status=UNPARSEABLE, reason=reason)

    def to_dict(self) -> dict[str, Any]:
        return {"value": self.value, "status": self.status, "reason": self.reason}


# --------------------------------------------------------------------------------------------------
# Numbers and times (shared by the DVC, TVG and VHD parsers)
# --------------------------------------------------------------------------------------------------

# "digits with optional '.' + digits" (the original's number shape). Python's \d also matches
# non-ASCII decimal digits, as it did in the original; float() accepts those. The (?<!\d) guard never
# changes what a left-to-right scan finds (a match starting inside a digit run could always have
# started at the run's first digit), but it keeps long digit runs from costing quadratic time.
NUM = r"(?<!\d)\d+(?:\.\d+)?"
NUM_RE = re.compile(NUM)
# "A - B" with optional spaces around the dash (format_dvc.py and format_tvg.py).
PAIR_RE = re.compile(rf"({NUM})\s*-\s*({NUM})")
# H:MM:SS or M:SS (seconds may carry decimals).
CLOCK_RE = re.compile(r"(?<!\d)(\d+):(\d{1,2})(?::(\d{1,2}(?:\.\d+)?))?")


def to_float(token: str | None) -> float | None:
    """float(token), or None if it fails or is not finite (a 400-digit number becomes inf)."""
    if token is None:
        return None
    try:
        value = float(token)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def clock_seconds(match: re.Match) -> float | None:
    """Seconds of an H:MM:SS / M:SS match of :data:`CLOCK_RE`, or None if not finite."""
    parts = [to_float(g) for g in match.groups() if g is not None]
    if any(p is None for p in parts):
        return None
    if len(parts) == 3:
        value = parts[0] * 3600 + parts[1] * 60 + parts[2]
    else:
        value = parts[0] * 60 + parts[1]
    return value if math.isfinite(value) else None


def finite_pairs(raw: Sequence[tuple[str, str]]) -> list[tuple[float, float] | None]:
    """Convert string pairs to float pairs; a pair with a non-finite value becomes None."""
    out: list[tuple[float, float] | None] = []
    for a, b in raw:
        fa, fb = to_float(a), to_float(b)
        out.append(None if fa is None or fb is None else (fa, fb))
    return out


# --------------------------------------------------------------------------------------------------
# System texts (spec 5.2)
# --------------------------------------------------------------------------------------------------

#: System texts by the names the eval config uses (``eval.system``). ``evaluate.py`` overrides the
#: conversation's system text with EVAL_SYSTEM (DVC / TVG / VHD); the QA benchmarks use
#: BENCHMARK_SYSTEM (MVBench also prepends it to the question, see `mvbench.mvbench_prompt`).
SYSTEM_TEXTS: dict[str, str] = {
    "evaluate": EVAL_SYSTEM,
    "llava_llama_2": CHAT_SYSTEM,
    "benchmark": BENCHMARK_SYSTEM,
    # The system text of the training conversations (a single space), for models that only ever saw
    # training prompts (e.g. the tiny model trained from scratch).
    "train": " ",
}


def resolve_system(name_or_text: str) -> str:
    """A system text by name (a key of :data:`SYSTEM_TEXTS`), else ``name_or_text`` itself."""
    return SYSTEM_TEXTS.get(name_or_text, name_or_text)


# --------------------------------------------------------------------------------------------------
# Prompt templates: read from a file, filled with (dataset, query)
# --------------------------------------------------------------------------------------------------


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
        template: the prompt template (e.g. ``TVG_PROMPTS["tvg_description_zeroshot"]``).
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


def fill_query_prompt(template: str, dataset: str, query: str) -> str:
    """A TVG/VHD prompt: named `{query}` / `{dataset}` fields, or the original's positional ones.

    Positional templates go through :func:`format_task_prompt` (`format(dataset, query.strip('.'))`,
    refusing the one-`{}` bug); named ones get `format(dataset=dataset, query=query.strip('.'))`.
    """
    names = {f for _, f, _, _ in string.Formatter().parse(template) if f}
    if names and not all(n.isdigit() for n in names):
        unknown = sorted(n for n in names if n not in ("query", "dataset"))
        if unknown or "query" not in names:
            raise ValueError(f"prompt template fields {sorted(names)}: expected {{query}} (and optionally "
                             f"{{dataset}}): {template[:80]!r}...")
        return template.format(dataset=dataset, query=query.strip("."))
    return format_task_prompt(template, dataset, query)


# --------------------------------------------------------------------------------------------------
# Annotations: the COCO caption format of DVC, TVG and (json) VHD
# --------------------------------------------------------------------------------------------------


def read_coco_annotations(path: str | Path) -> list[dict[str, Any]]:
    """``{split}.caption_coco_format.json`` -> its ``annotations`` list (DVC, TVG or VHD)."""
    data = read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("annotations"), list):
        raise ValueError(f"{path}: expected an object with an 'annotations' list")
    return data["annotations"]


def video_name(image_id: Any) -> str:
    """The video file name an annotation's ``image_id`` (a path or a name) refers to."""
    return str(image_id).split("/")[-1]


# --------------------------------------------------------------------------------------------------
# Multiple-choice letters (MVBench, TempCompass, EgoSchema, Video-MME)
# --------------------------------------------------------------------------------------------------


def option_letter(index: int) -> str:
    """Letter of the ``index``-th option: 0 -> ``A``."""
    if not 0 <= index < 26:
        raise ValueError(f"option index {index} out of range 0..25")
    return chr(ord("A") + index)


def letter_in_range(letter: str, num_options: int | None) -> bool:
    """Whether ``letter`` names one of ``num_options`` options (any letter when None)."""
    return num_options is None or 0 <= ord(letter) - ord("A") < num_options


# --------------------------------------------------------------------------------------------------
# The QA benchmarks' original output conventions (benchmark/evaluate_*.py)
# --------------------------------------------------------------------------------------------------

#: ``eval.extra.fallback`` values: ``random`` (default, the original: a letter drawn from
#: ``random.Random(seed)``, the k-th unanswerable sample of the run getting the k-th draw) or ``none``
#: (corrected: no letter, scored wrong).
QA_FALLBACK_MODES = ("random", "none")


class SeededFallback:
    """The original's ``random.choice(letters)`` after ``random.seed(seed)``, drawn in sample order.

    Every ``main()`` of the original seeds Python's ``random`` with 42 and nothing else draws from it,
    so the k-th fallback of a run gets the k-th draw. The draws are made when the merged answers are
    scored (one process, sample order), so they do not depend on batching or sharding; each draw is
    recorded (`draws`) for the report.

    Args:
        letters: the option letters (``ABCDE`` / ``ABCD``).
        seed: the run's seed (``eval.seed``).
        mode: one of :data:`QA_FALLBACK_MODES`.
    """

    def __init__(self, letters: str, seed: int = 42, mode: str = "random") -> None:
        if mode not in QA_FALLBACK_MODES:
            raise ValueError(f"eval.extra.fallback must be one of {QA_FALLBACK_MODES}, got {mode!r}")
        self.letters, self.mode, self.seed = letters, mode, seed
        self._rng = random.Random(seed)
        self.draws: list[dict[str, Any]] = []

    def draw(self, sample_id: Any) -> str | None:
        """The fallback letter for ``sample_id`` (None in mode ``none``); recorded in `draws`."""
        letter = self._rng.choice(list(self.letters)) if self.mode == "random" else None
        self.draws.append({"id": str(sample_id), "letter": letter})
        return letter

    def report(self) -> dict[str, Any]:
        return {"mode": self.mode, "seed": self.seed, "count": len(self.draws), "draws": self.draws}


def original_json_text(obj: Any, indent: int | None = None) -> str:
    """``json.dump(obj, f[, indent=...])`` as the original scripts wrote it (ASCII, no final newline)."""
    return json.dumps(obj, indent=indent)


def write_original_json(path: str | Path, obj: Any, indent: int | None = None) -> str:
    """Write :func:`original_json_text` to ``path`` (parents created); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(original_json_text(obj, indent), encoding="utf-8")
    return str(path)
