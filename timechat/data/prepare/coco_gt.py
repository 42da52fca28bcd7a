"""Step ``coco-gt``: the COCO-style ground-truth files that evaluation and the metrics read (spec 3.11).

Writes ``{split}.caption_coco_format.json`` = ``{"annotations": [...]}`` per split found:

* ``charades`` (TVG; the original's ``utils/get_coco_format.py``): ``charades_sta_{split}.txt`` lines
  ``VID START END##query`` → ``{"image_id": "VID.mp4", "caption": query, "timestamp": [s, e],
  "id": line index}``; lines whose query is shorter than 2 characters are skipped (their index is
  not reused).
* ``anet`` (ActivityNet Captions DVC; ``get_coco_format.py``): ``train.json`` / ``val_1.json`` /
  ``val_2.json`` → splits ``train`` / ``val`` / ``test``, one entry per video ``{"image_id": "ID.mp4",
  "caption": "".join(sentences), "segments": timestamps, "duration", "id": running index}``.
* ``youcook2`` (DVC): ``youcookii_annotations_trainval.json`` → ``train`` / ``val`` (``subset``
  ``training`` / ``validation``), per video ``{"image_id": "ID.mp4", "duration", "segments",
  "pure_cap": ". ".join(sentences), "caption": pure_cap + ".", "id"}``. The original shipped these
  files with TimeIT instead of generating them; this mirrors their documented fields (``pure_cap``
  is what the DVC metric splits on ``". "``; a sentence's own trailing ``.`` is removed so that the
  split gives back one sentence per segment).
* ``qvhighlights`` (VHD): ``highlight_{split}_release.jsonl`` → per query ``{"image_id": "VID.mp4",
  "caption": query, "id": qid, "duration"}`` plus ``relevant_clip_ids`` / ``saliency_scores`` /
  ``relevant_windows`` when present. (The VHD metric itself reads the jsonl.)

With ``videos_dir``, annotations whose video is missing or does not decode are dropped, as the
later version of ``get_coco_format.py`` did (its check decoded every frame; ``decode`` chooses, see
`timechat.data.prepare.audit.check_video`); the dropped ones are listed in the report.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any, Callable

from timechat.data.prepare.audit import DECODE_MODES, check_video_task
from timechat.data.prepare.runner import Summary, Task, remove_stale_temps, run_tasks
from timechat.io import atomic_write_json

__all__ = ["DATASETS", "build_coco_gt", "charades_annotations", "anet_annotations", "youcook2_annotations", "qvhighlights_annotations"]


def charades_annotations(path: Path) -> list[dict[str, Any]]:
    """Charades-STA ``charades_sta_{split}.txt`` → TVG entries."""
    out = []
    for i, line in enumerate(path.read_text(encoding="utf-8").split("\n")):
        if not line.strip():
            continue
        cap = line.split("##")[-1]
        if len(cap) < 2:
            continue
        terms = line.split("##")[0].split(" ")
        try:
            out.append({"image_id": terms[0] + ".mp4", "caption": cap, "timestamp": [float(terms[1]), float(terms[2])], "id": i})
        except (IndexError, ValueError):
            raise ValueError(f"{path}:{i + 1}: expected 'VID START END##query', got {line!r}") from None
    return out


def anet_annotations(path: Path) -> list[dict[str, Any]]:
    """ActivityNet Captions ``{id: {duration, timestamps, sentences}}`` → DVC entries."""
    data = json.loads(path.read_text(encoding="utf-8"))
    return [{"image_id": f"{k}.mp4", "caption": "".join(v["sentences"]), "segments": v["timestamps"], "duration": v["duration"], "id": i}
            for i, (k, v) in enumerate(data.items())]


def youcook2_annotations(path: Path, subset: str) -> list[dict[str, Any]]:
    """YouCook2 ``{"database": {id: {duration, subset, annotations: [{segment, sentence}]}}}`` → DVC entries."""
    data = json.loads(path.read_text(encoding="utf-8"))["database"]
    out = []
    for vid, v in data.items():
        if v.get("subset") != subset:
            continue
        sentences = [a["sentence"].strip().rstrip(".").strip() for a in v["annotations"]]
        pure = ". ".join(sentences)
        out.append({"image_id": f"{vid}.mp4", "duration": v["duration"], "segments": [a["segment"] for a in v["annotations"]],
                    "pure_cap": pure, "caption": pure + ".", "id": len(out)})
    return out


def qvhighlights_annotations(path: Path) -> list[dict[str, Any]]:
    """QVHighlights ``highlight_{split}_release.jsonl`` → VHD entries."""
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        r = json.loads(line)
        entry = {"image_id": f"{r['vid']}.mp4", "caption": r["query"], "id": r["qid"], "duration": r["duration"]}
        for key in ("relevant_clip_ids", "saliency_scores", "relevant_windows"):
            if key in r:
                entry[key] = r[key]
        out.append(entry)
    return out


# dataset -> {split: (input file name, reader)}
DATASETS: dict[str, dict[str, tuple[str, Callable[[Path], list[dict[str, Any]]]]]] = {
    "charades": {s: (f"charades_sta_{s}.txt", charades_annotations) for s in ("train", "val", "test")},
    "anet": {"train": ("train.json", anet_annotations), "val": ("val_1.json", anet_annotations), "test": ("val_2.json", anet_annotations)},
    "youcook2": {"train": ("youcookii_annotations_trainval.json", functools.partial(youcook2_annotations, subset="training")),
                 "val": ("youcookii_annotations_trainval.json", functools.partial(youcook2_annotations, subset="validation"))},
    "qvhighlights": {s: (f"highlight_{s}_release.jsonl", qvhighlights_annotations) for s in ("train", "val", "test")},
}


def build_coco_gt(
    dataset: str,
    anno_dir: str | Path,
    output_dir: str | Path,
    *,
    videos_dir: str | Path | None = None,
    decode: str = "none",
    workers: int = 1,
    progress: bool = True,
) -> Summary:
    """Write ``output_dir/{split}.caption_coco_format.json`` for every split of ``dataset`` found in ``anno_dir``.

    Returns:
        The `Summary` of the split files (report: ``output_dir/coco_gt_report.json``, with the
        annotations dropped for their video when ``videos_dir`` is given).
    """
    if dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {sorted(DATASETS)}, got {dataset!r}")
    if decode not in DECODE_MODES:
        raise ValueError(f"decode must be one of {DECODE_MODES}, got {decode!r}")
    anno_dir, output_dir = Path(anno_dir), Path(output_dir)
    splits = {s: (anno_dir / name, reader) for s, (name, reader) in DATASETS[dataset].items() if (anno_dir / name).is_file()}
    if not splits:
        names = sorted({name for name, _ in DATASETS[dataset].values()})
        raise FileNotFoundError(f"none of {names} in {anno_dir}")
    remove_stale_temps(output_dir)
    annotations = {s: reader(path) for s, (path, reader) in splits.items()}
    params = {"dataset": dataset, "anno_dir": str(anno_dir), "output_dir": str(output_dir),
              "videos_dir": str(videos_dir) if videos_dir else None, "decode": decode}
    dropped: list[dict[str, Any]] = []
    if videos_dir is not None:
        names = sorted({a["image_id"] for anns in annotations.values() for a in anns})
        checks = run_tasks("coco-gt videos", [Task(n, None, (Path(videos_dir) / n,)) for n in names],
                           functools.partial(check_video_task, decode=decode), workers=workers,
                           journal_path=output_dir / ".coco_gt_videos.jsonl", params=params, progress=progress)
        if checks.interrupted or checks.failed:
            return checks
        bad = {k: v for k, v in checks.results.items() if not v["ok"]}
        for split, anns in annotations.items():
            dropped += [{"split": split, "image_id": a["image_id"], "id": a.get("id"), "reason": bad[a["image_id"]]["reason"]}
                        for a in anns if a["image_id"] in bad]
            annotations[split] = [a for a in anns if a["image_id"] not in bad]
        if dataset == "anet":  # the original numbered only the kept videos
            for anns in annotations.values():
                for i, a in enumerate(anns):
                    a["id"] = i
    tasks = [Task(f"{s}.caption_coco_format.json", output_dir / f"{s}.caption_coco_format.json", (splits[s][0],), anns)
             for s, anns in annotations.items()]
    report = output_dir / "coco_gt_report.json"
    summary = run_tasks("coco-gt", tasks, _write_split, workers=1, report_path=report, params=params, progress=progress)
    counts = {s: len(a) for s, a in annotations.items()}
    atomic_write_json(report, summary.to_dict(params, {"annotations": counts, "dropped_for_video": dropped}))
    return summary


def _write_split(task: Task) -> dict[str, int]:
    atomic_write_json(task.output, {"annotations": task.payload}, indent=None)
    return {"annotations": len(task.payload)}
