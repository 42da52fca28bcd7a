"""Transcribed-speech (ASR) text for prompts.

Mirrors the ASR handling of the original ``evaluate.py --asr`` and of the TimeIT builders
(``utils/asr/asr_data_process.py``): cleaned whisper lines ``start\\tend\\ttext`` are subsampled to
about 15 segments (``stride = max(len(lines) // 15, 1)``, lines 1, 1 + stride, …: line 0 is never
used), each written as ``"{start:.1f} - {end:.1f} seconds, {text} "`` with a final ``.`` added
when missing; an absent file or an empty result gives ``"None."``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

ASR_NONE = "None."
ASR_TEMPLATE = "Transcribed speech: {asr} Based on the video content and possible transcribed speech, {question}"


def read_asr_lines(path: str | Path | None) -> list[str]:
    """Lines of a cleaned ASR file; ``[]`` when ``path`` is None or does not exist."""
    if path is None or not Path(path).is_file():
        return []
    return Path(path).read_text(encoding="utf-8").splitlines()


def asr_transcript(lines: Sequence[str], max_segments: int = 15) -> str:
    """Concatenated transcript string (ends with a space) or ``"None."``.

    Raises:
        ValueError: a used line is not ``start\\tend\\ttext``.
    """
    stride = max(len(lines) // max_segments, 1)
    out = ""
    for line in list(lines)[1::stride]:
        line = line.strip()
        if not line:
            continue
        if not line.endswith("."):
            line += "."  # also after '!' or '?', as the original does
        parts = line.split("\t")
        if len(parts) != 3:
            raise ValueError(f"ASR line is not 'start<TAB>end<TAB>text': {line!r}")
        start, end, text = parts
        out += f"{float(start):.1f} - {float(end):.1f} seconds, {text} "
    return out if out else ASR_NONE


def asr_stem(video: str | Path) -> str:
    """The ASR file stem the original looks up: the video file name up to its FIRST dot."""
    return Path(video).name.split(".")[0]


def inject_asr(question: str, transcript: str) -> str:
    """``Transcribed speech: {asr} Based on the video content and possible transcribed speech, {q}``."""
    return ASR_TEMPLATE.format(asr=transcript, question=question)
