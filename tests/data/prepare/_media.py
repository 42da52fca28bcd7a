"""Tiny generated media for the data-preparation tests (ffmpeg lavfi sources, espeak-ng speech)."""

from __future__ import annotations

import json
import shutil
import subprocess
from fractions import Fraction
from pathlib import Path

import pytest


def need(*tools: str) -> None:
    """Skip the test when a system tool is missing (install: apt-get install ffmpeg espeak-ng)."""
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} on PATH (apt-get install ffmpeg espeak-ng)")


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args], check=True)


def av1_encoder() -> str | None:
    """An AV1 encoder this ffmpeg has (libsvtav1 / libaom-av1), or None."""
    out = subprocess.run(["ffmpeg", "-hide_banner", "-encoders"], capture_output=True, text=True).stdout
    for name in ("libsvtav1", "libaom-av1"):
        if f" {name} " in out:
            return name
    return None


def make_clip(
    path: Path,
    *,
    fps: str = "25",
    size: tuple[int, int] = (64, 48),
    seconds: float = 2.0,
    audio: bool = False,
    codec: str = "libx264",
    vfr: bool = False,
    red_from: float | None = None,
    red_to: float | None = None,
) -> Path:
    """A ``testsrc`` clip; ``red_from``/``red_to`` paint the whole frame red in [from, to) seconds.

    ``vfr`` keeps every frame of the first half second, then every third (variable frame rate).
    """
    w, h = size
    vf = []
    if red_from is not None:
        vf.append(f"drawbox=x=0:y=0:w=iw:h=ih:color=red:t=fill:enable='gte(t,{red_from})*lt(t,{red_to})'")
    if vfr:
        vf.append("select='lt(t,0.5)+not(mod(n,3))'")
    args = ["-f", "lavfi", "-i", f"testsrc=size={w}x{h}:rate={fps}:duration={seconds}"]
    if audio:
        args += ["-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}"]
    if vf:
        args += ["-vf", ",".join(vf)]
    if vfr:
        args += ["-fps_mode", "vfr"]
    # 4:2:0 needs even sizes; odd sizes are stored 4:4:4 (as some phone/screen recordings are)
    args += ["-c:v", codec, "-pix_fmt", "yuv420p" if w % 2 == 0 and h % 2 == 0 else "yuv444p"]
    if codec == "libx264":
        args += ["-preset", "ultrafast"]
    elif codec == "libsvtav1":
        args += ["-preset", "12"]
    elif codec == "libaom-av1":
        args += ["-cpu-used", "8", "-row-mt", "1"]
    if audio:
        args += ["-c:a", "aac", "-shortest"]
    ffmpeg(*args, str(path))
    return path


def probe(path: Path) -> dict:
    out = subprocess.run(["ffprobe", "-v", "error", "-print_format", "json", "-show_streams", "-show_format", "-count_frames", str(path)],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def video_stream(info: dict) -> dict:
    return next(s for s in info["streams"] if s["codec_type"] == "video")


def video_facts(path: Path) -> dict:
    """width, height, frames, avg fps, duration (s), stream kinds, codec of the video stream."""
    info = probe(path)
    v = video_stream(info)
    return {
        "width": int(v["width"]), "height": int(v["height"]), "frames": int(v["nb_read_frames"]),
        "fps": Fraction(v["avg_frame_rate"]), "r_fps": Fraction(v["r_frame_rate"]),
        "duration": float(v.get("duration") or info["format"]["duration"]),
        "kinds": sorted(s["codec_type"] for s in info["streams"]), "codec": v["codec_name"],
    }


def spoken_clip(path: Path, text: str, *, seconds: float = 3.0) -> Path:
    """A video whose audio track is ``text`` spoken by espeak-ng."""
    wav = path.with_suffix(".speech.wav")
    subprocess.run(["espeak-ng", "-w", str(wav), text], check=True, capture_output=True)
    ffmpeg("-f", "lavfi", "-i", f"testsrc=size=64x48:rate=10:duration={seconds}", "-i", str(wav),
           "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac", "-t", str(seconds), str(path))
    wav.unlink()
    return path
