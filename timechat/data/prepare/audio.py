"""Step ``audio``: extract each video's audio as 16 kHz mono 16-bit WAV, the input of step ``asr``.

Mirrors the original's ``utils/asr/extract_audio.py`` (``ffmpeg -i VIDEO -q:a 0 -map a AUDIO.mp3``).
Whisper resamples whatever it reads to 16 kHz mono 16-bit PCM through ffmpeg before computing its
features (``whisper.audio.load_audio``), so writing that directly skips the original's lossy MP3
step (VBR quality 0, about 245 kbit/s: inaudible, but the samples are not bit-identical) and lets
``asr`` read the file without ffmpeg. The output is named after the video's file name up to its
FIRST dot (``clip_29.97fps.mp4`` → ``clip_29.wav``), as the original named its audio and transcript
files and as `timechat.data.asr.asr_file_for_video` looks them up; two videos that map to the same
name are both reported as failed instead of one overwriting the other.

A video without an audio stream is reported as failed (``no audio stream``): it gets no transcript,
which training and evaluation read as ``"None."``, as in the original.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from timechat.data.asr import asr_stem
from timechat.data.prepare import _ffmpeg
from timechat.data.prepare.runner import FAILED, Outcome, Summary, Task, remove_stale_temps, run_tasks, separate_folders
from timechat.io import atomic_path, atomic_write_json

__all__ = ["SAMPLE_RATE", "extract_audio", "extract_one"]

#: Whisper's input rate.
SAMPLE_RATE = 16000


def extract_one(task: Task) -> dict[str, int]:
    """``ffmpeg -i VIDEO -map 0:a:0 -vn -ac 1 -ar 16000 -c:a pcm_s16le`` to ``task.output``."""
    src, dst = task.inputs[0], Path(task.output)
    if not _ffmpeg.has_stream(src, "audio"):
        raise RuntimeError(f"{src}: no audio stream")
    with atomic_path(dst) as tmp:
        _ffmpeg.run(["-i", str(src), "-map", "0:a:0", "-vn", "-ac", "1", "-ar", str(SAMPLE_RATE), "-c:a", "pcm_s16le",
                     "-f", "wav", str(tmp)], what=str(src))
    return {"bytes": dst.stat().st_size}


def extract_audio(
    videos_dir: str | Path,
    audio_dir: str | Path,
    *,
    names_file: str | Path | None = None,
    workers: int = 1,
    progress: bool = True,
) -> Summary:
    """Write ``audio_dir/<relative folder>/<stem>.wav`` for every video under ``videos_dir``.

    Returns:
        The run's `Summary`; the JSON report is ``audio_dir/audio_report.json``.
    """
    videos_dir, audio_dir = separate_folders(videos_dir, audio_dir, "videos")
    _ffmpeg.require("ffmpeg")
    _ffmpeg.require("ffprobe")
    files = _ffmpeg.list_files(videos_dir, _ffmpeg.VIDEO_EXTENSIONS, names_file)
    remove_stale_temps(audio_dir)
    by_output: dict[Path, list[Path]] = defaultdict(list)
    for f in files:
        rel = f.relative_to(videos_dir)
        by_output[audio_dir / rel.parent / f"{asr_stem(rel.name)}.wav"].append(f)
    tasks, clashes = [], []
    for out, srcs in by_output.items():
        if len(srcs) > 1:
            names = ", ".join(str(s.relative_to(videos_dir)) for s in srcs)
            clashes += [Outcome(str(s.relative_to(videos_dir)), FAILED, f"videos {names} all map to {out.name}") for s in srcs]
        else:
            tasks.append(Task(str(srcs[0].relative_to(videos_dir)), out, (srcs[0],)))
    params = {"videos_dir": str(videos_dir), "audio_dir": str(audio_dir), "sample_rate": SAMPLE_RATE, "ffmpeg": _ffmpeg.version()}
    report = audio_dir / "audio_report.json"
    summary = run_tasks("audio", tasks, extract_one, workers=workers, pool="thread", report_path=report, params=params, progress=progress)
    if clashes:
        summary.outcomes += clashes
        atomic_write_json(report, summary.to_dict(params))
    return summary
