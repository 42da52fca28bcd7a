"""Step ``compress``: re-encode a folder of videos at a fixed frame rate and a 224-pixel shorter side.

Mirrors the original's ``utils/compress_video_data.py`` (``--file_type video``; spec 5.1, FAQ §1:
YouCook2 and ActivityNet Captions are evaluated on 6 fps / 224 videos, and scores come out low on
the raw downloads). Its ffmpeg command was::

    ffmpeg -y -i IN -filter:v "scale='if(gt(a,1),trunc(oh*a/2)*2,224)':'if(gt(a,1),224,trunc(ow*a/2)*2)'"
           -map 0:v -r FPS OUT

By default this step runs the same command (same frames, same sizes for landscape videos):

* ``frame_select="original"`` (default): ``-r FPS`` as an *output* option, i.e. ffmpeg's
  constant-frame-rate muxing (``-vsync cfr``). Its rule, measured with a frame-numbered source on
  ffmpeg 4.2.2 (the original used conda's 4.3) and 5.1.9, which select identically: an input frame
  is emitted while it is no more than 1.1 output ticks behind the output clock, so output frame
  ``k`` (labelled ``k / FPS`` s) shows the first source frame at or after ``(k - 1.25) / FPS`` s
  (24 fps → 6 fps: source frames 0, 1, 3, 7, 11, …, 47). The content therefore runs about 0.21 s
  (1.25 output frames) *late* against the timestamps the prompt gives, and the file is 2 output
  frames longer than the source (a 2.0 s clip gives 14 frames, 2.33 s). This is what the original's
  YouCook2 / ActivityNet videos looked like, so it is the default for reproducing its numbers;
* ``frame_select="exact"``: the ``fps=FPS:round=up`` filter instead: output frame ``k`` shows the
  last source frame at or before ``k / FPS`` s (24 fps: frames 0, 4, 8, …), so nothing is shown
  before its source time and at most one source frame after it; an event starting at ``t`` appears
  at the first output tick ``>= t``. The duration is kept to within one output frame and prompt
  timestamps agree with source times. Use it for new data;
* the scale expression: ``a`` is ``iw / ih`` (the storage aspect, sample aspect ratio ignored). For
  landscape and square inputs the height becomes 224 and the width ``trunc(224 * a / 2) * 2``
  (rounded DOWN to even). For portrait inputs the original's expression gives width 224 and height
  ``trunc(224 * a / 2) * 2``, i.e. *smaller* than 224 (a 360x640 video became 224x126, aspect
  inverted). ``portrait="shorter-side"`` (default) scales portrait videos as the issue and the
  original's docstring intend (width 224, height ``trunc(224 / a / 2) * 2``);
  ``portrait="original"`` reproduces the original's expression exactly;
* video stream only (``-map 0:v:0``; the original's ``0:v`` also copied extra video streams such as
  embedded cover art), no audio, no subtitles; the encoder is ffmpeg's default for the container
  (libx264 for ``.mp4`` / ``.mkv`` / ``.mov`` when ffmpeg is built with it, as in both the original's
  conda ffmpeg and Debian's) with its default quality (CRF 23, preset medium), unless ``codec`` says
  otherwise. The output keeps the input's file name (and container).

Where another encoder would differ: frame *selection* (which source instants are kept, and so every
timestamp the model is told) depends only on ``-r`` / ``fps=`` and the timestamps, not on the
encoder. Pixel values do: libx264 at its default CRF 23 is lossy, so another encoder or quality gives
other pixels at the same instants. Measured on a 10 s 640x360 ``testsrc2`` clip at 30 fps → 6 fps
(62 frames, decoded and squashed to 224x224 as training does; mean absolute difference in uint8
levels): libx264 CRF 23 (the original's) vs lossless 0.50, vs libx264 CRF 18 0.53, vs ffmpeg's
``mpeg4`` encoder 0.95 (``mpeg4`` vs lossless 0.84). The container matters for ``-r``: the same
command writing ``.mkv`` (1 ms timebase) gave 61 frames where ``.mp4`` gave 62.

What differs from the original on purpose: a failed encode is reported (file + ffmpeg's message)
instead of silently copying the raw input to the output folder; outputs are written atomically; a
rerun skips existing outputs (the original did too, but also accepted half-written files).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from timechat.data.prepare import _ffmpeg
from timechat.data.prepare.runner import Summary, Task, remove_stale_temps, run_tasks, separate_folders
from timechat.io import atomic_path

__all__ = ["FRAME_SELECT_MODES", "PORTRAIT_MODES", "compress_one", "compress_videos", "output_size", "scale_filter", "video_filter"]

PORTRAIT_MODES = ("shorter-side", "original")
FRAME_SELECT_MODES = ("original", "exact")


def scale_filter(short_side: int = 224, portrait: str = "shorter-side") -> str:
    """The ``scale=`` filter of the original command (``portrait="original"``) or its portrait fix."""
    if portrait not in PORTRAIT_MODES:
        raise ValueError(f"portrait must be one of {PORTRAIT_MODES}, got {portrait!r}")
    portrait_h = "trunc(ow*a/2)*2" if portrait == "original" else "trunc(ow/a/2)*2"
    s = int(short_side)
    return f"scale='if(gt(a,1),trunc(oh*a/2)*2,{s})':'if(gt(a,1),{s},{portrait_h})'"


def output_size(width: int, height: int, short_side: int = 224, portrait: str = "shorter-side") -> tuple[int, int]:
    """(width, height) that `scale_filter` produces for a ``width x height`` input (for checks)."""
    a = width / height
    if a > 1:
        return int(short_side * a / 2) * 2, short_side
    h = int(short_side * a / 2) * 2 if portrait == "original" else int(short_side / a / 2) * 2
    return short_side, h


def video_filter(fps: float, short_side: int = 224, portrait: str = "shorter-side", frame_select: str = "original") -> list[str]:
    """The ffmpeg output options that select frames and scale (see the module docstring)."""
    if frame_select == "original":
        return ["-filter:v", scale_filter(short_side, portrait), "-map", "0:v:0", "-r", f"{fps:g}"]
    if frame_select == "exact":
        return ["-filter:v", f"fps={fps:g}:round=up,{scale_filter(short_side, portrait)}", "-map", "0:v:0"]
    raise ValueError(f"frame_select must be one of {FRAME_SELECT_MODES}, got {frame_select!r}")


def compress_one(task: Task, *, fps: float, short_side: int, portrait: str, frame_select: str, codec: str | None,
                 crf: int | None) -> dict[str, Any]:
    """Re-encode ``task.inputs[0]`` to ``task.output`` (atomically)."""
    src, dst = task.inputs[0], Path(task.output)
    if not _ffmpeg.has_stream(src, "video"):
        raise RuntimeError(f"{src}: no video stream")
    with atomic_path(dst) as tmp:
        args = ["-i", str(src), *video_filter(fps, short_side, portrait, frame_select)]
        if codec is not None:
            args += ["-c:v", codec]
        if crf is not None:
            args += ["-crf", str(crf)]
        _ffmpeg.run(args + ["-f", _ffmpeg.muxer_for(dst), str(tmp)], what=str(src))
    return {"bytes": dst.stat().st_size}


def compress_videos(
    input_dir: str | Path,
    output_dir: str | Path,
    *,
    fps: float = 3,
    short_side: int = 224,
    portrait: str = "shorter-side",
    frame_select: str = "original",
    codec: str | None = None,
    crf: int | None = None,
    names_file: str | Path | None = None,
    workers: int = 1,
    progress: bool = True,
) -> Summary:
    """Re-encode every video under ``input_dir`` into ``output_dir`` (same relative names).

    Args:
        input_dir / output_dir: must differ, and neither may contain the other.
        fps: output frame rate: 6 for YouCook2 and ActivityNet (the original's docs); default 3, the
            original script's default.
        short_side: the shorter side after scaling (224).
        portrait: ``"shorter-side"`` or ``"original"`` (see the module docstring).
        frame_select: ``"original"`` (``-r``, as the original) or ``"exact"`` (module docstring).
        codec / crf: ``-c:v`` / ``-crf`` (default: ffmpeg's defaults, as the original).
        names_file: optional list of file names relative to ``input_dir`` (instead of a folder scan).
        workers: parallel ffmpeg processes (each ffmpeg also uses several threads).

    Returns:
        The run's `Summary`; the JSON report is ``output_dir/compress_report.json``.
    """
    input_dir, output_dir = separate_folders(input_dir, output_dir)
    video_filter(fps, short_side, portrait, frame_select)  # validates the modes
    _ffmpeg.require("ffmpeg")
    _ffmpeg.require("ffprobe")
    files = _ffmpeg.list_files(input_dir, _ffmpeg.VIDEO_EXTENSIONS, names_file)
    remove_stale_temps(output_dir)
    tasks = [Task(str(f.relative_to(input_dir)), output_dir / f.relative_to(input_dir), (f,)) for f in files]
    params = {"input_dir": str(input_dir), "output_dir": str(output_dir), "fps": fps, "short_side": short_side,
              "portrait": portrait, "frame_select": frame_select, "codec": codec, "crf": crf,
              "ffmpeg_options": video_filter(fps, short_side, portrait, frame_select),
              "ffmpeg": _ffmpeg.version()}
    work = functools.partial(compress_one, fps=fps, short_side=short_side, portrait=portrait, frame_select=frame_select,
                             codec=codec, crf=crf)
    return run_tasks("compress", tasks, work, workers=workers, pool="thread", report_path=output_dir / "compress_report.json",
                     params=params, progress=progress)
