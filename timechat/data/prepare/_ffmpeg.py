"""The ffmpeg / ffprobe command-line tools, as the preparation steps call them.

ffmpeg is a system dependency (``apt-get install ffmpeg``; conda: ``ffmpeg``), as it was for the
original's scripts. Outputs are written to `timechat.io` temp names (``.name.mp4.tmp-<pid>``), whose
extension ffmpeg cannot read, so the muxer is always named with ``-f`` (`muxer_for`).
"""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any, Sequence

VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".flv", ".mpg", ".mpeg", ".ts", ".3gp", ".wmv")

# file extension -> ffmpeg muxer (what ffmpeg would guess from the name)
_MUXERS = {
    ".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm", ".avi": "avi",
    ".flv": "flv", ".mpg": "mpeg", ".mpeg": "mpeg", ".ts": "mpegts", ".3gp": "3gp", ".wmv": "asf",
    ".wav": "wav", ".mp3": "mp3",
}


class FFmpegError(RuntimeError):
    """ffmpeg/ffprobe is missing or failed; the message has the command's last stderr lines."""


def muxer_for(path: str | Path) -> str:
    """The ffmpeg muxer for ``path``'s extension (raises `FFmpegError` for an unknown one)."""
    ext = Path(path).suffix.lower()
    if ext not in _MUXERS:
        raise FFmpegError(f"{path}: no muxer known for extension {ext!r} (known: {sorted(_MUXERS)})")
    return _MUXERS[ext]


def require(tool: str = "ffmpeg") -> str:
    """Absolute path of ``tool`` on PATH, or `FFmpegError` saying how to install it."""
    found = shutil.which(tool)
    if found is None:
        raise FFmpegError(f"{tool} not found on PATH; install it (Debian/Ubuntu: apt-get install ffmpeg; conda: conda install ffmpeg)")
    return found


@functools.lru_cache(maxsize=None)
def version(tool: str = "ffmpeg") -> str:
    """First line of ``tool -version`` (recorded in the reports)."""
    out = subprocess.run([require(tool), "-version"], capture_output=True, text=True, check=False).stdout
    return out.splitlines()[0] if out else "unknown"


def run(args: Sequence[str], *, what: str) -> None:
    """Run ``ffmpeg <args>`` quietly; raise `FFmpegError` naming ``what`` with ffmpeg's last error lines."""
    cmd = [require("ffmpeg"), "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = " | ".join(proc.stderr.strip().splitlines()[-3:])
        raise FFmpegError(f"ffmpeg failed on {what} (exit {proc.returncode}): {tail or 'no message'}")


def probe(path: str | Path) -> dict[str, Any]:
    """``ffprobe -show_streams -show_format`` as a dict (raises `FFmpegError` when unreadable)."""
    cmd = [require("ffprobe"), "-v", "error", "-print_format", "json", "-show_streams", "-show_format", str(path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise FFmpegError(f"ffprobe cannot read {path}: {proc.stderr.strip().splitlines()[-1:] or 'no message'}")
    return json.loads(proc.stdout)


def has_stream(path: str | Path, kind: str) -> bool:
    """Whether ``path`` has a stream of ``kind`` (``"audio"``, ``"video"``)."""
    return any(s.get("codec_type") == kind for s in probe(path).get("streams", []))


def list_files(root: str | Path, extensions: Sequence[str], names_file: str | Path | None = None) -> list[Path]:
    """Files under ``root`` (recursive, sorted) with one of ``extensions``, or those named in ``names_file``.

    Args:
        root: the input folder.
        extensions: lower-case suffixes to keep (ignored for ``names_file``).
        names_file: optional text file with one path per line, relative to ``root`` (the original's
            ``--input_file_list_path``, e.g. from ``ls -U root > names.txt``).
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"input folder {root} does not exist")
    if names_file is not None:
        names = [s.strip() for s in Path(names_file).read_text(encoding="utf-8").splitlines() if s.strip()]
        return [root / n for n in names]
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in extensions and not p.name.startswith("."))
