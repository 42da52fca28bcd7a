"""Step ``clean-asr``: the original's transcript cleaning (``utils/asr/clean_asr.py``, spec 3.6).

For each raw line ``start<TAB>end<TAB>text`` (as step ``asr`` writes them), in order:

1. ``text`` is stripped of surrounding whitespace;
2. the segment is dropped when ``text`` has fewer than 3 whitespace-separated words;
3. it is dropped when ``text`` equals the text of the last KEPT segment (a short segment in between
   does not break a repeat: ``A``, ``x``, ``A`` keeps one ``A``; a different kept segment does:
   ``A``, ``B``, ``A`` keeps all three). The comparison is exact (case and punctuation count);
4. kept segments are written as ``f"{start:.2f}\\t{end:.2f}\\t{text}\\n"``.

This is the format `timechat.data.asr` reads. An input with no kept segment gives an empty file
(read as ``"None."``). Differences from the original: blank lines are skipped (it crashed on them),
a tab inside the text stays in the text (it crashed), and any other malformed line fails the file
with its line number instead of a traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from timechat.data.prepare.runner import Summary, Task, remove_stale_temps, run_tasks, separate_folders
from timechat.io import atomic_write_text

__all__ = ["MIN_WORDS", "clean_asr", "clean_asr_lines", "clean_one"]

#: Segments with fewer words than this are dropped.
MIN_WORDS = 3


def clean_asr_lines(lines: Iterable[str], *, source: str = "<lines>") -> list[str]:
    """Apply the cleaning rules to raw lines; return the cleaned lines (each ending with ``\\n``).

    Raises:
        ValueError: a non-blank line is not ``start<TAB>end<TAB>text`` with numeric times.
    """
    out: list[str] = []
    last_text = ""
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        fields = line.rstrip("\n").split("\t", 2)
        if len(fields) != 3:
            raise ValueError(f"{source}:{n}: expected 'start<TAB>end<TAB>text', got {line!r}")
        try:
            start, end = float(fields[0]), float(fields[1])
        except ValueError:
            raise ValueError(f"{source}:{n}: non-numeric times in {line!r}") from None
        text = fields[2].strip()
        if len(text.split()) < MIN_WORDS or text == last_text:
            continue
        last_text = text
        out.append(f"{start:.2f}\t{end:.2f}\t{text}\n")
    return out


def clean_one(task: Task) -> dict[str, int]:
    """Clean ``task.inputs[0]`` into ``task.output`` (atomically)."""
    src = task.inputs[0]
    raw = src.read_text(encoding="utf-8").splitlines()
    cleaned = clean_asr_lines(raw, source=str(src))
    atomic_write_text(task.output, "".join(cleaned))
    return {"raw": len(raw), "kept": len(cleaned)}


def clean_asr(raw_dir: str | Path, clean_dir: str | Path, *, workers: int = 1, progress: bool = True) -> Summary:
    """Clean every ``*.txt`` under ``raw_dir`` into ``clean_dir`` (same relative names).

    Returns:
        The run's `Summary`; the JSON report is ``clean_dir/clean_asr_report.json``.
    """
    raw_dir, clean_dir = separate_folders(raw_dir, clean_dir, "raw transcript")
    remove_stale_temps(clean_dir)
    files = sorted(p for p in raw_dir.rglob("*.txt") if not p.name.startswith("."))
    tasks = [Task(str(f.relative_to(raw_dir)), clean_dir / f.relative_to(raw_dir), (f,)) for f in files]
    params = {"raw_dir": str(raw_dir), "clean_dir": str(clean_dir), "min_words": MIN_WORDS}
    return run_tasks("clean-asr", tasks, clean_one, workers=workers, report_path=clean_dir / "clean_asr_report.json",
                     params=params, progress=progress)
