"""Step ``hirest``: HiREST annotations → grounding and step-localisation annotation files (+ clips).

Mirrors the original's ``utils/process_hirest.py``. For each split (``train``, ``val``, ``test``)
``all_data_{split}.json`` (``{query: {video: {relevant, clip, v_duration, bounds, steps}}}``) gives,
for every video that is relevant, has a clip and has at least one step, in file order:

* a grounding entry ``{"image_id": video, "caption": query, "id": g, "timestamp": bounds,
  "duration": v_duration}`` (``g`` counts grounding entries) → ``grounding_anno/{split}.json``;
* a step entry ``{"image_id": clip, "segments": [[s - b0, e - b0], ...], "labels": [heading, ...],
  "id": s, "duration": b1 - b0}`` with ``clip = f"{video without .mp4}_{b0}_{b1}.mp4"`` (Python
  ``str`` of the JSON numbers, so ``12`` and ``12.0`` give different names, as in the original)
  → ``step_anno/{split}.json``.

Both files are JSON lists, as the original wrote them. With ``videos_dir`` and ``clips_dir`` the clips
are cut as the original did: ``ffmpeg -i VIDEO -ss b0 -to b1 -c copy CLIP`` (stream copy: the cut
starts at a packet boundary, so the clip may begin with frames that need the previous keyframe).
A split whose ``all_data_{split}.json`` is absent is skipped (the original crashed). Clip failures
are reported; the annotation files are written regardless, as the original did.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from timechat.data.prepare import _ffmpeg
from timechat.data.prepare.runner import Summary, Task, remove_stale_temps, run_tasks
from timechat.io import atomic_path, atomic_write_json

__all__ = ["SPLITS", "hirest_entries", "process_hirest"]

SPLITS = ("train", "val", "test")


def hirest_entries(anno: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(grounding entries, step entries) of one split's ``all_data`` object."""
    grounding, steps_out = [], []
    for query, videos in anno.items():
        for vid, v in videos.items():
            if not v["relevant"] or not v["clip"] or len(v["steps"]) == 0:
                continue
            b0, b1 = v["bounds"]
            grounding.append({"image_id": vid, "caption": query, "id": len(grounding), "timestamp": v["bounds"], "duration": v["v_duration"]})
            clip_id = f"{vid.split('.mp4')[0]}_{b0}_{b1}.mp4"
            segments = [[s["absolute_bounds"][0] - b0, s["absolute_bounds"][1] - b0] for s in v["steps"]]
            steps_out.append({"image_id": clip_id, "segments": segments, "labels": [s["heading"] for s in v["steps"]],
                              "id": len(steps_out), "duration": b1 - b0})
    return grounding, steps_out


def _cut_clip(task: Task) -> None:
    src, clip = task.inputs[0], Path(task.output)
    if not src.is_file():
        raise FileNotFoundError(f"HiREST video {src} not found")
    b0, b1 = task.payload
    with atomic_path(clip) as tmp:
        _ffmpeg.run(["-i", str(src), "-ss", str(b0), "-to", str(b1), "-c", "copy", "-f", _ffmpeg.muxer_for(clip), str(tmp)], what=str(src))


def process_hirest(
    anno_dir: str | Path,
    output_dir: str | Path,
    *,
    videos_dir: str | Path | None = None,
    clips_dir: str | Path | None = None,
    workers: int = 1,
    progress: bool = True,
) -> Summary:
    """Write ``output_dir/{grounding_anno,step_anno}/{split}.json`` (and the clips, when asked).

    Returns:
        The `Summary` of the annotation files and clip cuts (report: ``output_dir/hirest_report.json``).
    """
    anno_dir, output_dir = Path(anno_dir), Path(output_dir)
    if (videos_dir is None) != (clips_dir is None):
        raise ValueError("give both videos_dir and clips_dir to cut clips, or neither")
    tasks: list[Task] = []
    clip_tasks: dict[str, Task] = {}
    for split in SPLITS:
        src = anno_dir / f"all_data_{split}.json"
        if not src.is_file():
            continue
        grounding, steps = hirest_entries(json.loads(src.read_text(encoding="utf-8")))
        tasks.append(Task(f"grounding_anno/{split}.json", output_dir / "grounding_anno" / f"{split}.json", (src,), grounding))
        tasks.append(Task(f"step_anno/{split}.json", output_dir / "step_anno" / f"{split}.json", (src,), steps))
        if clips_dir is not None:
            for g, s in zip(grounding, steps):
                if s["image_id"] not in clip_tasks:
                    clip_tasks[s["image_id"]] = Task(f"clip {s['image_id']}", Path(clips_dir) / s["image_id"],
                                                     (Path(videos_dir) / g["image_id"],), tuple(g["timestamp"]))
    if not tasks:
        raise FileNotFoundError(f"no all_data_{{train,val,test}}.json in {anno_dir}")
    if clip_tasks:
        _ffmpeg.require("ffmpeg")
        remove_stale_temps(clips_dir)
    remove_stale_temps(output_dir)
    params = {"anno_dir": str(anno_dir), "output_dir": str(output_dir), "videos_dir": str(videos_dir) if videos_dir else None,
              "clips_dir": str(clips_dir) if clips_dir else None}
    return run_tasks("hirest", tasks + list(clip_tasks.values()), _hirest_work, workers=workers,
                     report_path=output_dir / "hirest_report.json", params=params, progress=progress)


def _hirest_work(task: Task) -> Any:
    if task.key.startswith("clip "):
        return _cut_clip(task)
    atomic_write_json(task.output, task.payload, indent=None)
    return {"entries": len(task.payload)}
