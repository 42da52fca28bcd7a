"""Durable, atomic file writes (the one home for temp-file + ``os.replace``) and the one JSON reader.

Every output that a later run reads back (configs, eval results and reports, synthetic videos and
annotations, feature-cache arrays, checkpoints) is written through these helpers, so that a
process killed at any moment leaves either the old file or the new one, never half of one.

Temp files are named ``.<name>.tmp-<pid>`` beside the target (same filesystem, hidden from
globbing). Step *folders* of training checkpoints have their own staging rule
(``timechat/checkpoint.py``), built on :func:`fsync_file` and :func:`fsync_dir`.
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

__all__ = [
    "DataFileError",
    "atomic_path",
    "atomic_write_json",
    "atomic_write_text",
    "fsync_dir",
    "fsync_file",
    "read_json",
    "read_jsonl",
]


class DataFileError(ValueError):
    """A JSON/JSONL file that cannot be read: the message names the file (and the line or offset)."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataFileError(path, "file not found") from None
    except IsADirectoryError:
        raise DataFileError(path, "is a directory, expected a file") from None
    except UnicodeDecodeError as exc:
        raise DataFileError(path, f"not valid UTF-8 at byte {exc.start} ({exc.reason})") from None


def read_json(path: str | os.PathLike) -> Any:
    """Parse one JSON document; any failure is a `DataFileError` naming ``path`` and the position."""
    path = Path(path)
    text = _read_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataFileError(path, f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None


def read_jsonl(path: str | os.PathLike, *, strip: str | None = None) -> list[Any]:
    """Parse a JSON-lines file (blank lines skipped); a bad line raises `DataFileError` with its number.

    ``strip`` is passed to ``str.strip`` for each line (``"\n"`` reproduces readers that strip only
    the newline); by default all surrounding whitespace is stripped.
    """
    path = Path(path)
    out = []
    for lineno, line in enumerate(_read_text(path).split("\n"), 1):
        line = line.strip(strip) if strip is not None else line.strip()
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise DataFileError(path, f"invalid JSON on line {lineno} column {exc.colno}: {exc.msg}") from None
    return out


def fsync_file(path: str | os.PathLike) -> None:
    """Flush a written file's data to disk."""
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def fsync_dir(path: str | os.PathLike) -> None:
    """Make renames/creations inside ``path`` durable (power loss); harmless where unsupported."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _tmp_path_for(path: Path) -> Path:
    """The staging name used for ``path``: hidden, beside it, unique per process."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


@contextmanager
def atomic_path(path: str | os.PathLike, *, fsync: bool = True) -> Iterator[Path]:
    """Yield a temp path to write; on success it replaces ``path``, on error it is removed.

    Args:
        path: the final file. Its parent folder is created.
        fsync: flush the file (and the folder entry) to disk before/after the rename.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_path_for(path)
    try:
        yield tmp
        if fsync:
            fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if fsync:
        fsync_dir(path.parent)


def atomic_write_text(path: str | os.PathLike, text: str, *, fsync: bool = True) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically and return the path."""
    with atomic_path(path, fsync=fsync) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def atomic_write_json(path: str | os.PathLike, obj: Any, *, fsync: bool = True, **dump_kwargs: Any) -> Path:
    """``json.dump`` with ``indent=1`` (overridable) and a final newline, atomically."""
    dump_kwargs.setdefault("indent", 1)
    return atomic_write_text(path, json.dumps(obj, **dump_kwargs) + "\n", fsync=fsync)
