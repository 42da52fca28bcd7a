"""Step ``valley``: raw Valley-Instruct conversations → a TimeIT-format JSON of the records whose video exists.

Mirrors the original's ``utils/process_valley.py`` (spec 3.1): each item's ``conversations``
(human/gpt turns, ``<video>`` marker removed) become ``QA`` pairs through
`timechat.data.datasets.convert_valley_record`; items whose video is absent are dropped (about 79 %
of Valley cannot be downloaded any more, original issue #40); the output is
``instruct_valley_{N}k.json`` in the original, ``data/TimeIT/data/valley/instruct_valley_72k.json``
in the train config.

Videos: ``jukinmedia`` items use ``item["video"]`` under ``jukin_dir``; ``VATEX`` items use the clip
``{v_id}.mp4`` under ``vatex_dir``, where ``v_id`` is ``<youtube id>_<start:06d>_<end:06d>``. When
``vatex_raw_dir`` is given, missing VATEX clips are cut from the raw video ``item["video"]`` with the
original's command (``ffmpeg -i RAW -ss START -t T -c:v libx264 -c:a copy -threads 1 CLIP``). The
original passed the END time as ``-t`` (a duration), so its clips ran from START to START + END
(spec 7); ``vatex_clip="exact"`` (default) cuts START to END, ``"original"`` reproduces the bug.

Differences from the original: ``video`` paths are written relative to ``videos_root`` (the train
config's ``videos_root``) instead of absolute; the original skipped — left out of the output — every
VATEX item whose clip already existed (a ``continue`` before the conversion), so its output depended
on whether clips had been cut in an earlier run; here a present clip is used.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from timechat.data.datasets import convert_valley_record, load_json_records
from timechat.data.prepare import _ffmpeg
from timechat.data.prepare.runner import Summary, Task, remove_stale_temps, run_tasks
from timechat.io import atomic_path, atomic_write_json

__all__ = ["convert_valley", "vatex_times"]

VATEX_CLIP_MODES = ("exact", "original")


def vatex_times(v_id: str) -> tuple[str, str]:
    """(start, end) strings of a VATEX id ``<youtube id>_<start:06d>_<end:06d>``, e.g. ``('000004', '000014')``."""
    parts = v_id.rsplit("_", 2)
    if len(parts) != 3 or not (parts[1].isdigit() and parts[2].isdigit()):
        raise ValueError(f"VATEX id {v_id!r} does not end in _<start>_<end>")
    return parts[1], parts[2]


def _cut_vatex(task: Task, *, mode: str) -> None:
    raw, clip = task.inputs[0], Path(task.output)
    if not raw.is_file():
        raise FileNotFoundError(f"raw VATEX video {raw} not found")
    start, end = task.payload
    duration = end if mode == "original" else f"{int(end) - int(start)}"
    with atomic_path(clip) as tmp:
        _ffmpeg.run(["-i", str(raw), "-ss", start, "-t", duration, "-c:v", "libx264", "-c:a", "copy", "-threads", "1",
                     "-f", _ffmpeg.muxer_for(clip), str(tmp)], what=str(raw))


def convert_valley(
    raw_json: str | Path,
    output: str | Path,
    videos_root: str | Path,
    *,
    jukin_dir: str = "Valley/jukinmedia",
    vatex_dir: str = "Valley/VATEX",
    vatex_raw_dir: str | Path | None = None,
    vatex_clip: str = "exact",
    workers: int = 1,
    progress: bool = True,
) -> Summary:
    """Convert ``raw_json`` (Valley-Instruct) to a TimeIT-format ``output``.

    Args:
        raw_json: ``valley_instruct_65k.json`` / ``Valley_instruct_73k.json``.
        output: the TimeIT-format JSON (e.g. ``data/TimeIT/data/valley/instruct_valley_72k.json``).
        videos_root: the folder the output's ``video`` paths are relative to.
        jukin_dir / vatex_dir: folders of the jukinmedia videos and VATEX clips, relative to ``videos_root``.
        vatex_raw_dir: raw VATEX videos to cut missing clips from (``None``: cut nothing).
        vatex_clip: ``"exact"`` or ``"original"`` (module docstring).
        workers: parallel ffmpeg cuts.

    Returns:
        The `Summary` of the clip cuts; the report (``<output stem>.valley_report.json``) adds the
        record counts (``items``, ``kept``, ``by_source``, ``dropped_no_video``).
    """
    if vatex_clip not in VATEX_CLIP_MODES:
        raise ValueError(f"vatex_clip must be one of {VATEX_CLIP_MODES}, got {vatex_clip!r}")
    raw_json, output, videos_root = Path(raw_json).resolve(), Path(output).resolve(), Path(videos_root)
    if output == raw_json:
        raise ValueError("output must differ from the raw Valley JSON (never write over the inputs)")
    items = load_json_records(raw_json)
    rel_videos: list[str | None] = []
    cuts: dict[str, Task] = {}
    bad: list[dict[str, Any]] = []
    for i, item in enumerate(items):
        source = item.get("source")
        if source == "VATEX":
            rel = f"{vatex_dir}/{item['v_id']}.mp4"
            clip = videos_root / rel
            if vatex_raw_dir is not None and not clip.exists() and rel not in cuts:
                try:
                    times = vatex_times(item["v_id"])
                except ValueError as exc:
                    bad.append({"index": i, "reason": str(exc)})
                    rel_videos.append(None)
                    continue
                cuts[rel] = Task(rel, clip, (Path(vatex_raw_dir) / item["video"],), times)
        elif source == "jukinmedia":
            rel = f"{jukin_dir}/{item['video']}"
        else:
            bad.append({"index": i, "reason": f"unknown source {source!r} (expected VATEX or jukinmedia)"})
            rel = None
        rel_videos.append(rel)

    if cuts:
        _ffmpeg.require("ffmpeg")
        remove_stale_temps(videos_root / vatex_dir)
    remove_stale_temps(output.parent, recursive=False)
    report = output.with_name(f"{output.stem}.valley_report.json")
    params = {"raw_json": str(raw_json), "output": str(output), "videos_root": str(videos_root), "jukin_dir": jukin_dir,
              "vatex_dir": vatex_dir, "vatex_raw_dir": str(vatex_raw_dir) if vatex_raw_dir else None, "vatex_clip": vatex_clip}
    summary = run_tasks("valley", list(cuts.values()), functools.partial(_cut_vatex, mode=vatex_clip), workers=workers,
                        report_path=report, params=params, progress=progress)
    if summary.interrupted:
        return summary

    records, by_source, dropped = [], {}, 0
    for item, rel in zip(items, rel_videos):
        if rel is None:
            continue
        if not (videos_root / rel).is_file():
            dropped += 1
            continue
        rec = convert_valley_record(item)
        rec["video"] = rel
        records.append(rec)
        by_source[item["source"]] = by_source.get(item["source"], 0) + 1
    atomic_write_json(output, records)
    extra = {"records": {"items": len(items), "kept": len(records), "by_source": by_source, "dropped_no_video": dropped,
                         "bad_items": bad}}
    atomic_write_json(report, summary.to_dict(params, extra))
    return summary
