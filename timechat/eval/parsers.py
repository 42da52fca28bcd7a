"""Free-text model answers -> structured predictions, with a countable parse status.

Mirrors the answer post-processing of the original evaluation (reference/TIMECHAT_SPEC.md 5.5, 5.7):

* ``utils/format_dvc.py`` ``format_dvc_output``  -> :func:`format_dvc_output` (dense captioning);
* ``utils/format_tvg.py`` ``extract_time``       -> :func:`extract_time` (temporal grounding);
* ``utils/format_vhd.py`` ``format_vhd_output``  -> :func:`parse_vhd_highlights`,
  :func:`vhd_clip_scores`, :func:`format_vhd_output` (highlight detection);
* answer extraction of ``benchmark/evaluate_mvbench.py``, ``evaluate_egoschema.py`` and
  ``evaluate_videomme.py`` -> :func:`parse_mvbench_answer`, :func:`parse_egoschema_answer`,
  :func:`parse_videomme_answer`; TempCompass had no parser in the original (its official LLM-assisted
  scorer reads the raw text), :func:`parse_tempcompass_answer` is a rule-based extraction of ours.

The original's quirks are kept where they define what the published numbers measured; each is marked
``QUIRK`` in a comment. Where the original crashed (index errors), hung (a leftover ``pdb``) or drew a
random answer, these functions return a :class:`ParseResult` with status ``unparseable`` and a reason
instead, so failures can be counted (:class:`ParseStats`); :func:`qa_fallback` applies a seeded,
documented replacement answer for the QA benchmarks.

No function here raises on any input string.
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass, field
from typing import Any, Sequence

OK = "ok"
UNPARSEABLE = "unparseable"

# Reasons are fixed strings (no per-sample content) so that ParseStats can histogram them.
R_EMPTY = "empty answer"
R_DVC_NO_EVENT = "no timestamped event found"
R_DVC_NO_CAPTION = "timestamps found but no caption piece longer than 5 characters"
R_DVC_PDB = "'start time X, end time Y' format: the original format_dvc.py stops in pdb here"
R_TVG_NO_PAIR = "no start/end pair found"
R_VHD_NO_KEYWORD = "answer lacks 'second' or 'score'"
R_VHD_NO_TIMESTAMP = "no highlight timestamp found"
R_VHD_SINGLE_NO_SCORE = "single highlight timestamp without a score"
R_QA_NO_LETTER = "no option letter found"
R_QA_PAREN_NOT_LETTER = "first '(...)' of the first line holds no option letter"
R_QA_LETTER_RANGE = "option letter outside the given options"
R_QA_NO_YES_NO = "no 'yes' or 'no' found"
R_QA_NO_LABEL = "no caption-matching option label found"


@dataclass(frozen=True)
class ParseResult:
    """Outcome of parsing one answer.

    Attributes:
        value: the parsed value (type depends on the parser); ``None`` whenever ``status`` is
            ``unparseable``.
        status: ``"ok"`` or ``"unparseable"``.
        reason: why it is unparseable (one of the module's ``R_*`` strings); ``None`` when ok.
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
# Shared number / time helpers
# --------------------------------------------------------------------------------------------------

# "digits with optional '.' + digits" (the original's number shape). Python's \d also matches
# non-ASCII decimal digits, as it did in the original; float() accepts those. The (?<!\d) guard never
# changes what a left-to-right scan finds (a match starting inside a digit run could always have
# started at the run's first digit), but it keeps long digit runs from costing quadratic time.
_NUM = r"(?<!\d)\d+(?:\.\d+)?"
_NUM_RE = re.compile(_NUM)
# "A - B" with optional spaces around the dash (format_dvc.py and format_tvg.py).
_PAIR_RE = re.compile(rf"({_NUM})\s*-\s*({_NUM})")
# H:MM:SS or M:SS (seconds may carry decimals).
_CLOCK_RE = re.compile(r"(?<!\d)(\d+):(\d{1,2})(?::(\d{1,2}(?:\.\d+)?))?")


def _to_float(token: str | None) -> float | None:
    """float(token), or None if it fails or is not finite (a 400-digit number becomes inf)."""
    if token is None:
        return None
    try:
        value = float(token)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _clock_seconds(match: re.Match) -> float | None:
    """Seconds of an H:MM:SS / M:SS match, or None if not finite."""
    parts = [_to_float(g) for g in match.groups() if g is not None]
    if any(p is None for p in parts):
        return None
    if len(parts) == 3:
        value = parts[0] * 3600 + parts[1] * 60 + parts[2]
    else:
        value = parts[0] * 60 + parts[1]
    return value if math.isfinite(value) else None


def _finite_pairs(raw: Sequence[tuple[str, str]]) -> list[tuple[float, float] | None]:
    """Convert string pairs to float pairs; a pair with a non-finite value becomes None."""
    out: list[tuple[float, float] | None] = []
    for a, b in raw:
        fa, fb = _to_float(a), _to_float(b)
        out.append(None if fa is None or fb is None else (fa, fb))
    return out


# --------------------------------------------------------------------------------------------------
# Dense video captioning (utils/format_dvc.py)
# --------------------------------------------------------------------------------------------------

_DVC_START_FIELD_RE = re.compile(rf"\bstart(?:ing)? time\s*:\s*({_NUM})")
_DVC_END_FIELD_RE = re.compile(rf"\bend(?:ing)? time\s*:\s*({_NUM})")
_DVC_DESCRIPTION_RE = re.compile(r"description\s*:\s*(.*)")
_DVC_BULLET_RE = re.compile(r"^\s*\*\s*(.+)$", re.MULTILINE)
_DVC_PDB_RE = re.compile(rf"\bstart time\s*({_NUM})[^,\n]*,\s*end time\s*({_NUM})")
# Half-width of the window built around a single time point in the last-resort branch.
_DVC_POINT_HALF_WINDOW = 20.0


def _event(start: float, end: float, caption: str) -> dict[str, Any]:
    return {"timestamp": [start, end], "caption": caption}


def _dvc_from_pairs(paragraph: str, raw_pairs: list[tuple[str, str]]) -> ParseResult:
    """Branch 1: every 'A - B' is an event; captions are the text between them."""
    # QUIRK: captions are cut out of the lower-cased paragraph (so they come out lower-cased); every
    # 'A - B' becomes a line break, the word 'seconds' is deleted, pieces of <= 5 characters are
    # dropped, and timestamps and captions are then paired by position and truncated to the shorter
    # list -- so text before the first pair that is longer than 5 characters shifts every caption.
    pieces = _PAIR_RE.sub("\n", paragraph).replace("seconds", "").split("\n")
    captions = [piece.strip(" ,") for piece in pieces if len(piece) > 5]
    pairs = _finite_pairs(raw_pairs)
    events = [_event(p[0], p[1], c) for p, c in zip(pairs, captions) if p is not None]
    # QUIRK: reversed pairs (end < start) are kept as they are; the DVC metrics see them unchanged.
    if not events:
        return ParseResult.failure(R_DVC_NO_CAPTION if not captions else R_DVC_NO_EVENT)
    return ParseResult.success(events)


def _dvc_from_fields(paragraph: str) -> ParseResult | None:
    """Branch 2: 'start(ing) time: X' / 'end(ing) time: Y' with 'description: ...' or '* ...' lines.

    Returns None when the branch does not apply (no start/end pair).
    """
    starts = _DVC_START_FIELD_RE.findall(paragraph)
    ends = _DVC_END_FIELD_RE.findall(paragraph)
    raw_pairs = list(zip(starts, ends))
    if not raw_pairs:
        return None
    captions = [c.strip() for c in _DVC_DESCRIPTION_RE.findall(paragraph)]
    if not captions:
        captions = [c.strip() for c in _DVC_BULLET_RE.findall(paragraph)]
    events = [
        _event(p[0], p[1], c) for p, c in zip(_finite_pairs(raw_pairs), captions) if p is not None
    ]
    if not events:
        return ParseResult.failure(R_DVC_NO_CAPTION if not captions else R_DVC_NO_EVENT)
    return ParseResult.success(events)


def _point_window(t: float) -> tuple[float, float]:
    """Window around a single time point: [t-20, t+20], or [t, t+40] when t <= 20."""
    if t <= _DVC_POINT_HALF_WINDOW:
        return t, t + 2 * _DVC_POINT_HALF_WINDOW
    return t - _DVC_POINT_HALF_WINDOW, t + _DVC_POINT_HALF_WINDOW


def _span_from_fragment(fragment: str) -> tuple[float, float] | None:
    """A - B, else clock times (one -> window, two or more -> the first two), else bare numbers."""
    for a, b in _PAIR_RE.findall(fragment):
        pair = _finite_pairs([(a, b)])[0]
        if pair is not None:
            return pair
    clocks = [t for t in (_clock_seconds(m) for m in _CLOCK_RE.finditer(fragment)) if t is not None]
    if len(clocks) == 1:
        return _point_window(clocks[0])
    if len(clocks) >= 2:
        return clocks[0], clocks[1]
    numbers = [t for t in (_to_float(n) for n in _NUM_RE.findall(_CLOCK_RE.sub(" ", fragment))) if t is not None]
    if len(numbers) == 1:
        # Interpretation: the spec's "±20 s window" for a bare number is read as the same window as
        # for a single m:ss time (no negative start).
        return _point_window(numbers[0])
    if len(numbers) >= 2:
        return numbers[0], numbers[1]
    return None


def _dvc_last_resort(paragraph: str) -> ParseResult:
    """Branch 4: the first line (or '.'-sentence) that yields a time span gives ONE event."""
    lines = [line for line in paragraph.split("\n") if line.strip()]
    # A one-line answer is split into sentences instead (pieces longer than 7 characters).
    pieces = lines if len(lines) > 1 else [s for s in paragraph.split(".") if len(s) > 7]
    for piece in pieces:
        before, _, after = piece.partition("seconds")
        span = _span_from_fragment(before)
        if span is not None:
            # QUIRK: the original stops at the first success (a `len(timestamps) == 0` guard), so this
            # branch never yields more than one event.
            return ParseResult.success([_event(span[0], span[1], after.strip(" ,:"))])
    return ParseResult.failure(R_DVC_NO_EVENT)


def format_dvc_output(text: str) -> ParseResult:
    """Parse a dense-captioning answer into events (``utils/format_dvc.py`` ``format_dvc_output``).

    Branches, tried in order on the lower-cased answer:

    1. any ``A - B`` pairs -> those are the events (captions = the text between them, see the QUIRK
       notes); if the answer has pairs, no other branch is tried;
    2. ``start(ing) time: X`` / ``end(ing) time: Y`` pairs with ``description: ...`` (or ``* ...``)
       captions;
    3. ``start time X, end time Y`` -> unparseable (the original hangs in ``pdb`` there);
    4. per line (or '.'-sentence of a one-line answer): the part before ``seconds`` gives a span
       (``A - B``; one ``m:ss`` -> 40 s window; two ``m:ss``; bare numbers), the part after it the
       caption; only the first success is kept.

    Args:
        text: the model's answer.

    Returns:
        ``ParseResult`` whose value is ``[{"timestamp": [start, end], "caption": str}, ...]`` (at least
        one event) or ``None`` when unparseable.
    """
    if not text.strip():
        return ParseResult.failure(R_EMPTY)
    # QUIRK: everything is lower-cased first, so captions are lower-case.
    paragraph = text.lower()
    raw_pairs = _PAIR_RE.findall(paragraph)
    if raw_pairs:
        return _dvc_from_pairs(paragraph, raw_pairs)
    fields_result = _dvc_from_fields(paragraph)
    if fields_result is not None:
        return fields_result
    if _DVC_PDB_RE.search(paragraph):
        return ParseResult.failure(R_DVC_PDB)
    return _dvc_last_resort(paragraph)


# --------------------------------------------------------------------------------------------------
# Temporal video grounding (utils/format_tvg.py)
# --------------------------------------------------------------------------------------------------

_TVG_KEYWORDS = ("starts", "ends", "happens in", "start time", "end time", "start", "end", "happen")
_TVG_SENTENCE_SPLIT_RE = re.compile(r"[!?\n]")


def _pair_consecutive(values: list[float]) -> list[tuple[float, float]]:
    """(v0, v1), (v2, v3), ...; an odd last value is dropped."""
    return [(values[i], values[i + 1]) for i in range(0, len(values) - 1, 2)]


def _tvg_keyword_pairs(paragraph: str) -> list[tuple[float, float]]:
    """Pairs from the first time value of each sentence that mentions a start/end keyword."""
    # Sentences are split on '!', '?' and newlines only ('.' would break decimals).
    sentences = [s for s in _TVG_SENTENCE_SPLIT_RE.split(paragraph) if any(k in s for k in _TVG_KEYWORDS)]
    # QUIRK: only the FIRST number of each sentence counts and numbers are paired across sentences,
    # so "starts at 5.5 seconds and ends at 9 seconds" (one sentence) yields no pair at all.
    # Interpretation: digits that belong to an H:MM:SS / M:SS time are not plain numbers here, so that
    # the clock-time branch below is reachable.
    firsts = []
    for sentence in sentences:
        numbers = [t for t in (_to_float(n) for n in _NUM_RE.findall(_CLOCK_RE.sub(" ", sentence))) if t is not None]
        if numbers:
            firsts.append(numbers[0])
    pairs = _pair_consecutive(firsts)
    if pairs:
        return pairs
    clock_firsts = []
    for sentence in sentences:
        for match in _CLOCK_RE.finditer(sentence):
            seconds = _clock_seconds(match)
            if seconds is not None:
                clock_firsts.append(seconds)
                break
    return _pair_consecutive(clock_firsts)


def extract_time(text: str) -> ParseResult:
    """Parse a temporal-grounding answer into one ``[start, end]`` (``utils/format_tvg.py``).

    All ``A - B`` pairs of the lower-cased answer; if none, the first number of each sentence that
    mentions a start/end keyword, paired consecutively; if none, the same with clock times. Reversed
    pairs are swapped and only the first pair is kept.

    Args:
        text: the model's answer.

    Returns:
        ``ParseResult`` whose value is ``[start, end]`` (floats, start <= end) or ``None``. The
        original's per-query record is ``{"timestamp": [value] if ok else [], "query", "vid"}``.
    """
    if not text.strip():
        return ParseResult.failure(R_EMPTY)
    paragraph = text.lower()
    # QUIRK: the original meant to delete the prompt's example ("24.3 - 30.4 seonds") from the answer
    # first, but that replacement is a no-op; an echoed example is parsed like any other pair.
    pairs = [p for p in _finite_pairs(_PAIR_RE.findall(paragraph)) if p is not None]
    if not pairs:
        pairs = _tvg_keyword_pairs(paragraph)
    if not pairs:
        return ParseResult.failure(R_TVG_NO_PAIR)
    # QUIRK: only the first pair is used, however many the answer gives.
    start, end = pairs[0]
    if end < start:
        start, end = end, start
    return ParseResult.success([start, end])


# --------------------------------------------------------------------------------------------------
# Video highlight detection (utils/format_vhd.py)
# --------------------------------------------------------------------------------------------------

# Scores are "one digit . one digit" tokens; integers such as "2" and numbers like "12.3" are not.
_VHD_SCORE_RE = re.compile(r"(?<!\d)\d\.\d(?!\d)")
_VHD_COUNT_RE = re.compile(r"There are (\d{1,9}) highlight moments?")
# QVHighlights clips are 2 s long.
VHD_CLIP_SECONDS = 2.0
# Class-2 answers: plain numbers must exceed this to count as timestamps.
_VHD_MIN_PLAIN_TIMESTAMP = 10.0


def _vhd_class1(text: str) -> tuple[list[float], list[float]]:
    """Few mentions of 'second'/'score': timestamps listed before 'score', scores after it."""
    cap = None
    timestamps: list[float] = []
    scores: list[float] = []
    for line in text.split("\n"):
        if "second" not in line and "score" not in line:
            continue
        count = _VHD_COUNT_RE.search(line)
        if count is not None:
            cap = int(count.group(1))
            line = line[: count.start()] + line[count.end() :]
        before, found, after = line.partition("score")
        timestamps += [t for t in (_to_float(n) for n in _NUM_RE.findall(before)) if t is not None]
        if found:
            # QUIRK: integer scores ("2") are ignored, which shifts the timestamp/score pairing:
            # "82, 84, 86 second ... scores are 1.3, 2, 2.3" -> 82:1.3, 84:2.3, 86:(padded) 0.0.
            scores += [t for t in (_to_float(s) for s in _VHD_SCORE_RE.findall(after)) if t is not None]
    if cap is not None:
        timestamps = timestamps[:cap]
    return timestamps, scores


def _vhd_class2(text: str) -> tuple[list[float], list[float]]:
    """One highlight per line: last d.d is the score, last time value the timestamp."""
    timestamps: list[float] = []
    scores: list[float] = []
    for line in text.split("\n"):
        line_scores = [t for t in (_to_float(s) for s in _VHD_SCORE_RE.findall(line)) if t is not None]
        if line_scores:
            scores.append(line_scores[-1])
        clocks = [t for t in (_clock_seconds(m) for m in _CLOCK_RE.finditer(line)) if t is not None]
        if clocks:
            timestamps.append(clocks[-1])
            continue
        # QUIRK: plain numbers count only above 10 s (to skip the scores), so genuine highlights in
        # the first 10 seconds are dropped.
        plain = [t for t in (_to_float(n) for n in _NUM_RE.findall(line)) if t is not None]
        plain = [t for t in plain if t > _VHD_MIN_PLAIN_TIMESTAMP]
        if plain:
            timestamps.append(plain[-1])
    return timestamps, scores


def parse_vhd_highlights(text: str) -> ParseResult:
    """Parse a highlight-detection answer into (timestamp, score) pairs (``utils/format_vhd.py``).

    Args:
        text: the model's answer.

    Returns:
        ``ParseResult`` whose value is ``{"timestamps": [...], "scores": [...]}`` (equal lengths,
        seconds and saliency scores) or ``None``.
    """
    # QUIRK: every "th" is replaced by a space before anything else (meant for ordinals like "82th";
    # it also turns "the" into " e" and "with" into "wi ").
    text = text.replace("th", " ")
    if "second" not in text or "score" not in text:
        return ParseResult.failure(R_VHD_NO_KEYWORD)
    if text.count("second") < 3 and text.count("score") < 3:
        timestamps, scores = _vhd_class1(text)
    else:
        timestamps, scores = _vhd_class2(text)
    if not timestamps:
        return ParseResult.failure(R_VHD_NO_TIMESTAMP)
    if len(timestamps) > 1:
        # Pad missing scores with 0.0 / drop extra ones.
        scores = (scores + [0.0] * len(timestamps))[: len(timestamps)]
    elif not scores:
        # The original only pads when there is more than one timestamp; a lone timestamp without a
        # score has nothing to pair with.
        return ParseResult.failure(R_VHD_SINGLE_NO_SCORE)
    else:
        scores = scores[:1]
    return ParseResult.success({"timestamps": timestamps, "scores": scores})


def vhd_clip_scores(timestamps: Sequence[float], scores: Sequence[float], duration: float) -> list[float]:
    """Map (timestamp, score) pairs onto QVHighlights' 2-second clips.

    ``num_clips = int(duration / 2)``; timestamps beyond ``duration`` are dropped; a timestamp ``t``
    goes to clip ``max(0, int((t - 1) / 2))``; each clip gets the mean of its scores, 0.0 if none.

    Args:
        timestamps: highlight times in seconds.
        scores: their saliency scores (paired by position).
        duration: video duration in seconds.

    Returns:
        ``num_clips`` per-clip scores (``pred_saliency_scores``).

    Raises:
        ValueError: if ``duration`` is negative or not finite.
    """
    if not math.isfinite(duration) or duration < 0:
        raise ValueError(f"duration must be a finite number of seconds >= 0, got {duration!r}")
    num_clips = int(duration / VHD_CLIP_SECONDS)
    sums = [0.0] * num_clips
    counts = [0] * num_clips
    for t, s in zip(timestamps, scores):
        if t > duration:
            continue
        clip = max(0, int((t - 1) / VHD_CLIP_SECONDS))
        if clip >= num_clips:
            # The original indexes past the end here (t == duration with an odd integer duration) and
            # crashes; such a timestamp lies in the incomplete last clip, which has no ground truth.
            continue
        sums[clip] += s
        counts[clip] += 1
    return [total / n if n else 0.0 for total, n in zip(sums, counts)]


def format_vhd_output(text: str, duration: float) -> ParseResult:
    """Parse a highlight answer into per-clip saliency scores (``pred_saliency_scores``).

    Args:
        text: the model's answer.
        duration: the video duration in seconds (from the ground truth).

    Returns:
        ``ParseResult`` whose value is the list of per-clip scores (see :func:`vhd_clip_scores`) or
        ``None`` when the answer is unparseable.

    Raises:
        ValueError: only for an invalid ``duration`` (never because of ``text``).
    """
    if not math.isfinite(duration) or duration < 0:
        raise ValueError(f"duration must be a finite number of seconds >= 0, got {duration!r}")
    parsed = parse_vhd_highlights(text)
    if not parsed.ok:
        return parsed
    return ParseResult.success(vhd_clip_scores(parsed.value["timestamps"], parsed.value["scores"], duration))


# --------------------------------------------------------------------------------------------------
# QA benchmarks (benchmark/evaluate_*.py)
# --------------------------------------------------------------------------------------------------

_FIRST_PAREN_RE = re.compile(r"\(([^()]*)\)")
_EGOSCHEMA_LETTER_RE = re.compile(r"[A-E]")
_VIDEOMME_LETTER_RE = re.compile(r"\(([A-D])\)")


def _letter_in_range(letter: str, num_options: int | None) -> bool:
    return num_options is None or 0 <= ord(letter) - ord("A") < num_options


def parse_mvbench_answer(text: str, num_options: int | None = None) -> ParseResult:
    """MVBench: the option letter inside the first ``(...)`` of the first output line.

    The original compared the content of the first parenthesised group (lower-cased) with the
    ground-truth letter, so ``(the man) ... (B)`` gives nothing usable and ``(b)`` counts as ``B``.
    When nothing is found it answered ``(a)``; that is :func:`qa_fallback`'s job here.

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
    if not _letter_in_range(letter, num_options):
        return ParseResult.failure(R_QA_LETTER_RANGE)
    return ParseResult.success(letter)


def parse_egoschema_answer(text: str) -> ParseResult:
    """EgoSchema: the first capital A-E character ANYWHERE in the answer.

    QUIRK kept (it defines the published 33.0): any capital counts, so "Based on the video, C" gives
    ``B``. The original drew a random letter when none was found; see :func:`qa_fallback`.

    Returns:
        ``ParseResult`` with the letter, or ``None``.
    """
    match = _EGOSCHEMA_LETTER_RE.search(text)
    if match is None:
        return ParseResult.failure(R_QA_NO_LETTER)
    return ParseResult.success(match.group(0))


def parse_videomme_answer(text: str) -> ParseResult:
    """Video-MME: the letter of the first ``(X)`` with X in A-D (case-sensitive).

    The original drew a random letter when none was found; see :func:`qa_fallback`.

    Returns:
        ``ParseResult`` with the letter, or ``None``.
    """
    match = _VIDEOMME_LETTER_RE.search(text)
    if match is None:
        return ParseResult.failure(R_QA_NO_LETTER)
    return ParseResult.success(match.group(1))


_TC_LEADING_PAREN_RE = re.compile(r"^\s*\(([A-Z])\)")
_TC_LEADING_LETTER_RE = re.compile(r"^\s*([A-Z])(?:[.):]|\s*$)")
_TC_PAREN_RE = re.compile(r"\(([A-Z])\)")
_TC_CUE_RE = re.compile(r"(?i:\b(?:option|answer)\b(?:\s+is)?)\s*[:\-]?\s*\(?([A-Z])\b")
_TC_YES_NO_RE = re.compile(r"\b(yes|no)\b", re.IGNORECASE)
_TC_LABEL_RE = re.compile(r"\b(caption|sentence|option)\s+([A-Za-z]|\d+)\b", re.IGNORECASE)


def _tempcompass_multi_choice(text: str, options: Sequence[str] | None) -> ParseResult:
    num_options = len(options) if options else None
    for pattern in (_TC_LEADING_PAREN_RE, _TC_LEADING_LETTER_RE, _TC_PAREN_RE, _TC_CUE_RE):
        match = pattern.search(text)
        if match is not None:
            letter = match.group(1)
            if _letter_in_range(letter, num_options):
                return ParseResult.success(letter)
    if options:
        # Last resort: the answer quotes exactly one option's text.
        lowered = text.lower()
        hits = [i for i, o in enumerate(options) if o.strip() and o.strip().lower() in lowered]
        if len(hits) == 1 and hits[0] < 26:
            return ParseResult.success(chr(ord("A") + hits[0]))
    return ParseResult.failure(R_QA_NO_LETTER)


def _tempcompass_caption_matching(text: str, labels: Sequence[str] | None) -> ParseResult:
    if labels:
        lowered = text.lower()
        found = [(lowered.find(label.lower()), label) for label in labels if label]
        found = [(pos, label) for pos, label in found if pos >= 0]
        if found:
            return ParseResult.success(min(found, key=lambda item: item[0])[1])
        return ParseResult.failure(R_QA_NO_LABEL)
    match = _TC_LABEL_RE.search(text)
    if match is None:
        return ParseResult.failure(R_QA_NO_LABEL)
    return ParseResult.success(f"{match.group(1).capitalize()} {match.group(2).upper()}")


def parse_tempcompass_answer(
    text: str,
    task_type: str,
    *,
    options: Sequence[str] | None = None,
    labels: Sequence[str] | None = None,
) -> ParseResult:
    """Rule-based TempCompass answer extraction (the original left scoring to TempCompass' tooling).

    * ``multi-choice``: a leading ``(X)`` / ``X.`` / ``X)`` / ``X:`` / lone ``X``, else the first
      ``(X)``, else ``option/answer (is) X``, else the single option whose text the answer quotes.
    * ``yes_no``: the first word ``yes`` or ``no`` (lower-cased value).
    * ``caption_matching``: the first of ``labels`` mentioned (case-insensitive), or without labels the
      first ``Caption/Sentence/Option <id>`` mention, normalised like ``Caption A``.
    * ``captioning``: free text; ok unless empty.

    Args:
        text: the model's answer.
        task_type: ``multi-choice``, ``yes_no``, ``caption_matching`` or ``captioning``.
        options: multi-choice option texts (bounds the letter range, enables text matching).
        labels: caption-matching labels, e.g. ``("Caption A", "Caption B")``.

    Returns:
        ``ParseResult`` with the letter / ``yes``/``no`` / label / stripped caption, or ``None``.

    Raises:
        ValueError: for an unknown task type (a caller error, not an answer problem).
    """
    if task_type == "multi-choice":
        return _tempcompass_multi_choice(text, options)
    if task_type == "yes_no":
        match = _TC_YES_NO_RE.search(text)
        return ParseResult.success(match.group(1).lower()) if match else ParseResult.failure(R_QA_NO_YES_NO)
    if task_type == "caption_matching":
        return _tempcompass_caption_matching(text, labels)
    if task_type == "captioning":
        stripped = text.strip()
        return ParseResult.success(stripped) if stripped else ParseResult.failure(R_EMPTY)
    raise ValueError(
        f"unknown TempCompass task type {task_type!r}; expected multi-choice, yes_no, caption_matching "
        "or captioning"
    )


#: Option letters a fallback may draw from, per benchmark.
QA_FALLBACK_LETTERS = {"egoschema": "ABCDE", "videomme": "ABCD"}


def qa_fallback(benchmark: str, sample_id: Any, *, seed: int = 42) -> str:
    """Replacement answer for an unparseable QA answer, reproducible per sample.

    * ``mvbench``: ``"A"``, as the original (it substituted ``(a)``).
    * ``egoschema`` (A-E) / ``videomme`` (A-D): the original drew ``random.choice`` from the global,
      unseeded-per-sample RNG, so its draws depended on the order of the run. Here the letter comes
      from ``random.Random(f"{seed}:{benchmark}:{sample_id}")``, i.e. it depends only on the seed and
      the sample, whatever the sharding or resume order.

    Args:
        benchmark: ``mvbench``, ``egoschema`` or ``videomme``.
        sample_id: any stable per-question identifier (its ``str()`` is used).
        seed: the run's seed.

    Returns:
        An option letter.

    Raises:
        ValueError: for a benchmark without a fallback rule (e.g. TempCompass, scored externally).
    """
    if benchmark == "mvbench":
        return "A"
    if benchmark in QA_FALLBACK_LETTERS:
        rng = random.Random(f"{seed}:{benchmark}:{sample_id}")
        return rng.choice(QA_FALLBACK_LETTERS[benchmark])
    raise ValueError(f"no fallback rule for benchmark {benchmark!r}; expected mvbench, egoschema or videomme")


def answer_or_fallback(result: ParseResult, benchmark: str, sample_id: Any, *, seed: int = 42) -> str:
    """The parsed letter if ``result`` is ok, else :func:`qa_fallback` (count failures separately)."""
    return result.value if result.ok else qa_fallback(benchmark, sample_id, seed=seed)


# --------------------------------------------------------------------------------------------------
# Statistics
# --------------------------------------------------------------------------------------------------


@dataclass
class _TaskCounts:
    count: int = 0
    unparseable: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    examples: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class ParseStats:
    """Per-task parse counts, failure reasons and the first failing examples.

    Attributes:
        max_examples: failing examples kept per task.
        max_chars: answers are cut to this many characters in the examples.
    """

    max_examples: int = 5
    max_chars: int = 300
    tasks: dict[str, _TaskCounts] = field(default_factory=dict)

    def add(self, task: str, result: ParseResult, text: str | None = None, sample_id: Any = None) -> ParseResult:
        """Record one parse of ``task``; returns ``result`` so calls can be chained."""
        counts = self.tasks.setdefault(task, _TaskCounts())
        counts.count += 1
        if not result.ok:
            counts.unparseable += 1
            reason = result.reason or "unknown"
            counts.reasons[reason] = counts.reasons.get(reason, 0) + 1
            if len(counts.examples) < self.max_examples:
                counts.examples.append(
                    {
                        "id": sample_id,
                        "reason": reason,
                        "text": None if text is None else text[: self.max_chars],
                    }
                )
        return result

    def count(self, task: str) -> int:
        return self.tasks[task].count if task in self.tasks else 0

    def unparseable(self, task: str) -> int:
        return self.tasks[task].unparseable if task in self.tasks else 0

    def rate(self, task: str) -> float:
        """Fraction of unparseable answers of ``task`` (0.0 when nothing was recorded)."""
        n = self.count(task)
        return self.unparseable(task) / n if n else 0.0

    def merge(self, other: "ParseStats") -> "ParseStats":
        """Add ``other``'s counts into this object (e.g. per-rank stats); returns self."""
        for task, theirs in other.tasks.items():
            mine = self.tasks.setdefault(task, _TaskCounts())
            mine.count += theirs.count
            mine.unparseable += theirs.unparseable
            for reason, n in theirs.reasons.items():
                mine.reasons[reason] = mine.reasons.get(reason, 0) + n
            room = self.max_examples - len(mine.examples)
            mine.examples.extend(theirs.examples[: max(room, 0)])
        return self

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """``{task: {"count", "unparseable", "rate", "reasons", "examples"}}`` (JSON-serialisable)."""
        return {
            task: {
                "count": c.count,
                "unparseable": c.unparseable,
                "rate": self.rate(task),
                "reasons": dict(sorted(c.reasons.items())),
                "examples": list(c.examples),
            }
            for task, c in sorted(self.tasks.items())
        }
