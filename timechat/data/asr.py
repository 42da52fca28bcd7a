"""Transcribed-speech (ASR) text for prompts: the one implementation used by training and evaluation.

Mirrors the ASR handling of the original ``evaluate.py --asr`` and of the TimeIT builders
(``utils/asr/asr_data_process.py``): cleaned whisper lines ``start\\tend\\ttext`` are subsampled to
about 15 segments (``stride = max(len(lines) // 15, 1)``, lines 1, 1 + stride, …: line 0 is never
used), each written as ``"{start:.1f} - {end:.1f} seconds, {text} "`` with a final ``.`` added
when missing; an absent file or an empty result gives ``"None."``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

#: What the model is told when there is no usable transcript.
ASR_NONE = "None."

#: The original subsamples the transcript to about this many segments.
ASR_MAX_SEGMENTS = 15


def asr_text_from_lines(lines: Sequence[str], *, source: str = "<lines>") -> str:
    """Subsample cleaned ASR lines and concatenate them as the original did.

    ``stride = max(len(lines) // 15, 1)``; lines ``1, 1 + stride, 1 + 2*stride, ...`` are used (line 0
    is ALWAYS skipped: an off-by-one in the original, kept because the training data and the released
    checkpoint saw it). Each used line is stripped, gets a final ``.`` if it has none (so ``one!``
    becomes ``one!.``), is split on tabs into ``start, end, text`` and written as
    ``f"{start:.1f} - {end:.1f} seconds, {text} "``.

    Args:
        lines: the lines of a cleaned ASR file (``start\\tend\\ttext``), as ``readlines()`` gives them;
            ``len(lines)`` sets the stride, so do not drop lines before calling.
        source: name used in error messages (the file path).

    Returns:
        The concatenated segments (each ends with a space), or ``"None."`` if no line is used.

    Raises:
        ValueError: if a used line is not ``start<TAB>end<TAB>text`` with numeric times (the original
            crashed on such lines too, less helpfully).
    """
    stride = max(len(lines) // ASR_MAX_SEGMENTS, 1)
    parts = []
    for index in range(1, len(lines), stride):
        line = lines[index].strip()
        if not line.endswith("."):
            line += "."
        # maxsplit=2: a tab inside the text stays in the text instead of breaking the unpacking.
        fields = line.split("\t", 2)
        if len(fields) != 3:
            raise ValueError(
                f"{source}: line {index + 1} is {lines[index]!r}; expected 'start<TAB>end<TAB>text'"
            )
        start, end, text = fields
        try:
            start_s, end_s = float(start), float(end)
        except ValueError:
            raise ValueError(
                f"{source}: line {index + 1} has non-numeric times {start!r}, {end!r}; "
                "expected 'start<TAB>end<TAB>text'"
            ) from None
        parts.append(f"{start_s:.1f} - {end_s:.1f} seconds, {text} ")
    return "".join(parts) if parts else ASR_NONE


def load_asr_text(path: str | Path | None) -> str:
    """Read a cleaned ASR file and build the transcript text (:func:`asr_text_from_lines`).

    Args:
        path: the ``.txt`` file, or ``None``.

    Returns:
        The transcript text; ``"None."`` when ``path`` is ``None``, the file does not exist, or no line
        is used (the original treated all three the same way).
    """
    if path is None:
        return ASR_NONE
    path = Path(path)
    if not path.is_file():
        return ASR_NONE
    with path.open("r", encoding="utf-8") as f:
        lines = f.readlines()
    return asr_text_from_lines(lines, source=str(path))


def asr_file_for_video(asr_dir: str | Path, video: str | Path) -> Path:
    """Path of the ASR file the original looked up for ``video``.

    The original used the file name up to its FIRST dot, so ``clip_29.97fps.mp4`` maps to
    ``clip_29.txt``; kept so that existing ASR folders resolve the same way.

    Args:
        asr_dir: folder with the cleaned ``.txt`` transcripts.
        video: video path or file name.

    Returns:
        ``asr_dir / (name up to the first '.') + '.txt'`` (it may not exist).
    """
    name = Path(video).name
    return Path(asr_dir) / f"{name.split('.')[0]}.txt"


def with_asr_prefix(prompt: str, asr_text: str) -> str:
    """Prefix a question with its transcript, as ``evaluate.py --asr`` and the ASR training data do.

    Args:
        prompt: the task prompt (for tvg/vhd the original formatted the template afterwards, which is
            equivalent as long as the transcript contains no braces; format first to be safe).
        asr_text: output of :func:`load_asr_text` / :func:`asr_text_from_lines` (``"None."`` if absent).

    Returns:
        ``"Transcribed speech: {asr_text} Based on the video content and possible transcribed speech,
        {prompt}"``.
    """
    return (
        f"Transcribed speech: {asr_text} Based on the video content and possible transcribed speech, "
        f"{prompt}"
    )


# -- names used by the data pipeline --------------------------------------------------------------
def read_asr_lines(path: str | Path | None) -> list[str]:
    """Lines of a cleaned ASR file; ``[]`` when ``path`` is None or does not exist."""
    if path is None or not Path(path).is_file():
        return []
    return Path(path).read_text(encoding="utf-8").splitlines()


def asr_transcript(lines: Sequence[str], max_segments: int = ASR_MAX_SEGMENTS) -> str:
    """`asr_text_from_lines` (kept name)."""
    if max_segments != ASR_MAX_SEGMENTS:
        raise ValueError(f"the original subsamples to {ASR_MAX_SEGMENTS} segments")
    return asr_text_from_lines(lines)


def asr_stem(video: str | Path) -> str:
    """The ASR file stem the original looks up: the video file name up to its FIRST dot."""
    return asr_file_for_video(".", video).stem


def inject_asr(question: str, transcript: str) -> str:
    """``Transcribed speech: {asr} Based on the video content and possible transcribed speech, {q}``."""
    return with_asr_prefix(question, transcript)
