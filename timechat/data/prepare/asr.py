"""Step ``asr``: transcribe audio files with whisper into the original's raw ``start\\tend\\ttext`` files.

Mirrors the original's ``utils/asr/asr.py``: ``whisper_timestamped.load_model(name)`` and then
``model.transcribe(path)`` with default options, one ``f"{start:.2f}\\t{end:.2f}\\t{text.strip()}"``
line per segment, ``tiny.en`` for TimeIT and ``small.en`` for YouCook2 evaluation (spec 3.6).

Engine: **openai-whisper** (extra ``timechat[prepare]``). The original imported whisper-timestamped,
but only for ``load_model``, which hands back a plain openai-whisper model (checked in the source of
whisper-timestamped 1.15.9: for an OpenAI model name or a ``.pt`` file it returns
``whisper.load_model(...)``); ``model.transcribe`` is therefore openai-whisper's own ``transcribe`` (whisper-timestamped's word-level refinement lives in its
separate ``whisper_timestamped.transcribe(model, ...)`` function, which the original never called).
So the segments of the TimeIT transcripts are openai-whisper's: 30 s windows, timestamp tokens at
0.02 s, temperature fallback 0.0-1.0 on compression-ratio / log-prob failures, conditioning on the
previous text. Using openai-whisper directly reproduces that decoding rule for rule (with the
openai-whisper release installed; the original's 2023 release is not pinned here) and needs
nothing from whisper-timestamped (which adds dtw-python, Cython, ...). The alternative, a
transformers ``pipeline("automatic-speech-recognition", return_timestamps=True)``, needs no new
dependency but segments long audio with its own chunking and has no temperature fallback by
default, so its segments (and the ``start``/``end`` the prompts show) differ from the training
data's. How far they differ was NOT measured: no whisper checkpoint can be downloaded on the
machines this was built on, and a randomly initialised model's segments say nothing about it.

The model is loaded from a LOCAL checkpoint only (``whisper.load_model`` accepts a ``.pt`` file with
``dims`` and ``model_state_dict``, the format of the files openai-whisper downloads, e.g.
``~/.cache/whisper/tiny.en.pt``); a model *name* is refused, so nothing is ever downloaded.

Audio: 16 kHz mono 16-bit WAV (step ``audio``) is read directly, scaled exactly as
``whisper.audio.load_audio`` scales ffmpeg's output (``int16 / 32768``); anything else goes through
``whisper.audio.load_audio`` (ffmpeg). On CPU whisper decodes in fp32; on CUDA in fp16 (its
default, as the original ran).
"""

from __future__ import annotations

import functools
import os
import wave
from pathlib import Path
from typing import Any

import numpy as np

from timechat.data.asr import asr_stem
from timechat.data.prepare.runner import Summary, Task, remove_stale_temps, run_tasks, separate_folders
from timechat.io import atomic_write_text

__all__ = ["AUDIO_EXTENSIONS", "format_segments", "load_whisper", "read_audio", "transcribe_audio", "transcribe_one"]

AUDIO_EXTENSIONS = (".wav", ".mp3", ".m4a", ".flac", ".ogg", ".opus", ".aac")

_MODEL: Any = None  # one model per worker process (loaded by `_init_worker`)


def load_whisper(model_path: str | Path, device: str = "cpu") -> Any:
    """``whisper.load_model`` on a local checkpoint file (or a folder holding exactly one ``.pt``)."""
    try:
        import whisper
    except ImportError as exc:
        raise ImportError("step 'asr' needs openai-whisper: pip install -e '.[prepare]'") from exc
    path = Path(model_path)
    if path.is_dir():
        found = sorted(path.glob("*.pt"))
        if len(found) != 1:
            raise FileNotFoundError(f"{path}: expected exactly one whisper checkpoint (*.pt), found {[p.name for p in found]}")
        path = found[0]
    if not path.is_file():
        raise FileNotFoundError(
            f"whisper checkpoint {path} not found; pass the path of a local file such as tiny.en.pt "
            "(models are never downloaded by this step)"
        )
    return whisper.load_model(str(path), device=device)


def read_audio(path: str | Path) -> np.ndarray:
    """float32 mono samples at 16 kHz, as ``whisper.audio.load_audio`` returns them."""
    path = Path(path)
    if path.suffix.lower() == ".wav":
        with wave.open(str(path), "rb") as w:
            if (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 16000):
                data = w.readframes(w.getnframes())
                return np.frombuffer(data, np.int16).flatten().astype(np.float32) / 32768.0
    from whisper.audio import load_audio

    return load_audio(str(path))


def format_segments(segments: list[dict[str, Any]]) -> str:
    """The original's raw transcript: ``f"{start:.2f}\\t{end:.2f}\\t{text.strip()}\\n"`` per segment."""
    return "".join(f"{s['start']:.2f}\t{s['end']:.2f}\t{s['text'].strip()}\n" for s in segments)


def _init_worker(model_path: str, device: str, threads: int) -> None:
    global _MODEL
    if threads > 0:
        import torch

        torch.set_num_threads(threads)
    _MODEL = load_whisper(model_path, device)


def transcribe_one(task: Task, *, options: dict[str, Any]) -> dict[str, Any]:
    """Transcribe ``task.inputs[0]`` with the worker's model and write the raw file."""
    audio = read_audio(task.inputs[0])
    result = _MODEL.transcribe(audio, **options)
    atomic_write_text(task.output, format_segments(result["segments"]))
    return {"segments": len(result["segments"]), "seconds": round(len(audio) / 16000, 2)}


def transcribe_audio(
    audio_dir: str | Path,
    output_dir: str | Path,
    model_path: str | Path,
    *,
    device: str = "cpu",
    workers: int = 1,
    threads_per_worker: int = 0,
    progress: bool = True,
    **transcribe_options: Any,
) -> Summary:
    """Write ``output_dir/<relative folder>/<stem>.txt`` for every audio file under ``audio_dir``.

    Args:
        audio_dir: step ``audio``'s output (or any folder of audio files).
        output_dir: the raw transcripts (the original's ``whisper_outputs_with_time/<model>``).
        model_path: local whisper checkpoint (``tiny.en.pt``, ``small.en.pt``) or a folder with one.
        device: ``cpu`` or ``cuda[:i]``.
        workers: parallel processes, each with its own copy of the model.
        threads_per_worker: torch threads per worker (0: torch's default).
        transcribe_options: passed to ``model.transcribe`` (default: none, as the original).

    Returns:
        The run's `Summary`; the JSON report is ``output_dir/asr_report.json``.
    """
    audio_dir, output_dir = separate_folders(audio_dir, output_dir, "audio")
    model_path = Path(model_path).resolve()
    if not model_path.exists():
        raise FileNotFoundError(f"whisper checkpoint {model_path} not found (models are never downloaded by this step)")
    remove_stale_temps(output_dir)
    files = sorted(p for p in audio_dir.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS and not p.name.startswith("."))
    tasks = []
    for f in files:
        rel = f.relative_to(audio_dir)
        tasks.append(Task(str(rel), output_dir / rel.parent / f"{asr_stem(rel.name)}.txt", (f,)))
    params = {"audio_dir": str(audio_dir), "output_dir": str(output_dir), "model": str(model_path), "device": device,
              "engine": "openai-whisper", "transcribe_options": transcribe_options}
    try:
        import whisper

        params["engine_version"] = getattr(whisper, "__version__", "unknown")
    except ImportError as exc:
        raise ImportError("step 'asr' needs openai-whisper: pip install -e '.[prepare]'") from exc
    threads = threads_per_worker or (max(1, (os.cpu_count() or 1) // max(workers, 1)) if workers > 1 else 0)
    work = functools.partial(transcribe_one, options=dict(transcribe_options))
    return run_tasks("asr", tasks, work, workers=workers, pool="process", report_path=output_dir / "asr_report.json",
                     params=params, initializer=_init_worker, initargs=(str(model_path), device, threads), progress=progress)
