"""Durable, atomic file writes: the one home for temp-file + ``os.replace``.

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

__all__ = ["atomic_path", "atomic_write_json", "atomic_write_text", "fsync_dir", "fsync_file"]


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
