"""Synthetic temporal-grounding dataset: the embedded default data (no downloads).

Writes small H.264 videos of coloured shapes plus the instruction data (TimeIT format, spec 3.1,
answers as in spec 3.10) and the evaluation ground truth (the real COCO-style / QVHighlights
formats, spec 3.11), all derived from one per-video list of events and fully determined by a seed.
The default configuration (340 videos) takes seconds on a laptop CPU; it is what the README's main
command and the end-to-end tests run on.

Layout under ``out_dir``::

    videos/{split}/{vid}.mp4                      H.264, yuv420p, every frame rendered with numpy
    annotations/{split}.events.json               ground-truth events per video (the single source)
    annotations/tvg_{split}.caption_coco_format.json   TVG gt (Charades-STA style: image_id, caption,
                                                  timestamp, id)
    annotations/{split}.caption_coco_format.json  DVC gt (YouCook2 style: image_id, duration,
                                                  segments, caption, pure_cap, id); the DVC metric
                                                  reads the split from the text before the first dot
    annotations/highlight_{split}_release.jsonl   VHD gt (QVHighlights: qid, query, duration, vid,
                                                  relevant_clip_ids, saliency_scores, relevant_windows)
    annotations/vhd_{split}.caption_coco_format.json   VHD queries for the inference loader
                                                  (image_id, caption, id = qid, duration)
    instruct/{task}_{split}.json                  TimeIT items {"video", "QA": [{"q", "a"}], "source"}
                                                  (+ "timed_text" with `timed_text`)
    instruct/train_all.json                       all train items of all tasks, shuffled
    manifest.json                                 written last: config, counts, file sizes + sha256

``{split}`` is ``train``/``val``/``test``; ``vid`` is ``syn_{split}_{index:05d}``; instruction
``video`` paths are relative to ``out_dir``. Ground-truth files only exist for the requested tasks.
Tasks: ``tvg`` (one query per event), ``dvc`` (every event in time order), ``vhd`` (one query per
event, saliency per 2-s clip) and the training-only ``timeline`` (every shape with its span, listed
by shape type rather than by time; no eval ground truth), ``tvg_chat`` (a video's grounding turns as
one conversation) and ``exist`` (whether each shape type appears: one yes/no turn per type).

Each video has 1..``max_events`` events. An event is one shape type (a fixed colour + shape pair,
e.g. "red square") that is visible on frame ``i`` exactly when ``start <= i / fps < end``, and
nowhere else. Events of one video have distinct types and do not overlap in time, so a query
naming the type ("a red square moves from left to right") is unambiguous.

Why time is learnable from this data (a tiny model, 16 frames at 32-64 px, minutes on a CPU):

* Few, unmistakable event types: saturated, well separated colours, each tied to one shape that
  spans half the frame width, over a grey background that carries no colour. Colour alone
  identifies the event, shape and motion are redundant cues.
* Event boundaries lie on a coarse grid (``time_grid``, default 1 s) that is a whole number of
  frames, and events last at least ``min_event_duration`` (default 2 s), so each event covers
  several sampled frames and the answer vocabulary (``"3.0 - 7.0"``) is small.
* Video length varies (``duration=(8, 16)`` by default): the same frame index means different
  seconds in different videos, so the model has to read the frame timestamps it is given, not
  count frames.
* The background is grey with a slow horizontal sine drift: it changes over time (so a frame
  difference alone does not mark an event) but never carries colour.
* Grounding answers name the queried shape before its span (``tvg_answer: named``): "The red square
  happens in 3.0 - 8.0 seconds.". The shape name is copied from the question, so the span right after
  it is looked up from an adjacent word, not from a word twenty tokens back. With TimeIT's "The given
  query happens in ..." the tiny model answered every query of a video with the same span.
* The ``timeline`` task lists those answers for every shape, in an order unrelated to time (by shape
  type), so finding each span means finding the frames that show that shape: the lookup grounding
  needs, trained on every shape of every video.
* Saliency for highlight detection follows the shape's size, which swells from 75 % to 100 % in the
  middle of the event, weighted by how much of each 2-s clip the event covers; three "annotators"
  add a small deterministic jitter.

Randomness: every video draws from its own generator seeded by (seed, split, index), so changing
``num_train`` leaves the val/test videos unchanged. Same arguments -> byte-identical files (libx264
runs single-threaded and without SIMD for this); a different seed -> different videos, events and
instruction templates.

Re-running with the same arguments is a no-op when ``manifest.json`` matches the configuration and
every listed file is present with its recorded size; otherwise the previous outputs (known by their
manifest or by the ``.generating`` marker an interrupted run leaves behind) are removed and the
dataset is written again. A directory holding ``videos/``, ``annotations/`` or ``instruct/`` without
either file is never overwritten.

CLI: ``python -m timechat.data.synthetic --out DIR [--seed 0] [--num-train 240] ...``
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from timechat.io import atomic_path, atomic_write_text, read_json
from timechat.validation import check_keys

__all__ = [
    "EVENT_TYPES",
    "SPLITS",
    "EVAL_TASKS",
    "TASKS",
    "TIMELINE_TEMPLATES",
    "EXIST_TEMPLATES",
    "SyntheticConfig",
    "SyntheticSummary",
    "generate_synthetic_dataset",
    "load_events",
    "main",
]

FORMAT_VERSION = 1
SPLITS = ("train", "val", "test")
TASKS = ("tvg", "dvc", "vhd", "timeline", "tvg_chat", "exist")
EVAL_TASKS = ("tvg", "dvc", "vhd")
TVG_ANSWER_STYLES = ("named", "timeit")
"""Tasks with evaluation ground truth; ``timeline`` (see `TIMELINE_TEMPLATES`), ``tvg_chat`` (every
grounding query of a video as one multi-turn conversation, in a random order) and ``exist`` (see
`_exist_items`) are training-only."""
_SPLIT_CODE = {"train": 0, "val": 1, "test": 2}
_MANAGED_DIRS = ("videos", "annotations", "instruct")
_MANIFEST = "manifest.json"
_MARKER = ".generating"

# (colour name, RGB, shape). Order matters: the first `num_event_types` entries are used. Colours
# are saturated and far apart in RGB (L-inf distance >= 130 between any two), the background is grey.
EVENT_TYPES: tuple[tuple[str, tuple[int, int, int], str], ...] = (
    ("red", (230, 40, 40), "square"),
    ("blue", (40, 90, 240), "circle"),
    ("green", (40, 200, 70), "triangle"),
    ("yellow", (240, 220, 40), "bar"),
    ("magenta", (220, 60, 220), "diamond"),
    ("cyan", (40, 220, 230), "cross"),
)

MOTIONS = ("static", "left_to_right", "right_to_left", "top_to_bottom", "bottom_to_top")
_MOTION_TEXT = {
    "static": "appears and stays still",
    "left_to_right": "moves from left to right",
    "right_to_left": "moves from right to left",
    "top_to_bottom": "moves from top to bottom",
    "bottom_to_top": "moves from bottom to top",
}

_SHAPE_EXTENT = 0.5  # shape width / frame width at full size
_MIN_SCALE = 0.75  # shape size at the event's start and end, relative to its size mid-event
_CLIP_LEN = 2.0  # QVHighlights clip length in seconds

# TimeIT-style instruction templates (spec 3.2: six hand-written templates per task).
TVG_TEMPLATES = (
    "Localize the visual content described by the given textual query '{query}' in the video, "
    "and output the start and end timestamps in seconds.",
    "Find the moment in the video that matches the description '{query}'. "
    "Give its start and end time in seconds.",
    "Detect and report the start and end timestamps of the video segment that corresponds to "
    "the textual query '{query}'.",
    "Watch the video and determine when '{query}' happens. "
    "Answer with the start and end time in seconds.",
    "Identify the time span in which the event '{query}' occurs, and output its start and end "
    "timestamps.",
    "Given the textual query '{query}', locate the corresponding segment in the video and return "
    "its start and end times in seconds.",
)
DVC_TEMPLATES = (
    "Localize a series of activity events in the video, output the start and end timestamp for "
    "each event, and describe each event with sentences.",
    "Detect all events in the video. For each event, give its start and end time in seconds and "
    "a short description.",
    "Watch the video and list every event that occurs, with its start time, end time and a brief "
    "caption.",
    "Identify the events happening in the video, and for each one output 'start - end seconds, "
    "description'.",
    "Segment the video into its events and describe each of them, including the start and end "
    "timestamps in seconds.",
    "Provide dense captions for the video: every event with its start and end time and one "
    "sentence describing it.",
)
VHD_TEMPLATES = (
    "Find the highlight moments in the video that match the query '{query}', and give the "
    "timestamp of each highlight moment together with its saliency score.",
    "Watch the video and identify the moments relevant to the description '{query}'. Report the "
    "timestamps of these moments and rate their saliency.",
    "Locate the segments of the video that correspond to '{query}'. List their timestamps and "
    "assess how salient each of them is.",
    "Given the sentence query '{query}', determine the highlight timestamps in the video and the "
    "saliency score of each.",
    "Examine the video and pinpoint the highlight moments described by '{query}'. Output the "
    "timestamps and the saliency scores.",
    "Which moments of the video match '{query}'? Give their timestamps and their saliency scores.",
)


# Training-only "timeline" task: list each shape with the span it is visible, ordered by shape type
# (the order of EVENT_TYPES), not by time. In that order the k-th answer line is not the k-th event,
# so its span can only be found by looking up the frames that show the named shape: the same
# text -> frames lookup that grounding needs, but with the shape named right before its span. In
# our runs the tiny model never learned that lookup from grounding and dense captioning alone
# (both can be answered early on by "the first event" / "the next event"); with this task it did in
# some runs, not reliably (README, "The embedded default learns").
TIMELINE_TEMPLATES = (
    "List every shape that appears in the video and the time span in which it is visible.",
    "For each coloured shape in the video, give the start and end time in seconds during which it "
    "is visible.",
    "Which shapes appear in the video, and when? Answer with each shape followed by its start and "
    "end timestamps.",
    "Name each shape shown in the video and the time span, in seconds, in which it can be seen.",
    "Go through the shapes in the video one by one and give the start and end time of each.",
    "For every shape visible in the video, report its colour, its shape and its start and end "
    "timestamps in seconds.",
)

# Training-only "exist" task (`_exist_items`): whether a named shape appears anywhere in the video.
EXIST_TEMPLATES = (
    "Is there a {name} in the video?",
    "Does a {name} appear in the video?",
    "Can you see a {name} at any point in the video?",
)


@dataclass(frozen=True)
class SyntheticConfig:
    """Everything that determines the generated dataset (stored in ``manifest.json``)."""

    seed: int = 0
    """Master seed; each video uses its own generator derived from (seed, split, index)."""
    num_train: int = 240
    """Number of training videos."""
    num_val: int = 40
    """Number of validation videos."""
    num_test: int = 60
    """Number of held-out test videos."""
    duration: tuple[float, float] = field(default=(8.0, 16.0), metadata={"help": "fixed length, or MIN MAX (seconds)"})
    """Video length range in seconds (inclusive); lengths are drawn on the ``time_grid``.
    ``(d, d)`` or a single number gives a fixed length."""
    fps: float = 8.0
    """Frame rate of the written videos; ``time_grid * fps`` must be a whole number."""
    size: int = 64
    """Frame height and width in pixels (even, >= 16)."""
    max_events: int = 3
    """Most events per video (each video has 1..max_events, as many as fit)."""
    min_event_duration: float = 2.0
    """Shortest event in seconds (rounded up to the grid); must be >= 2 s so every event
    overlaps at least one whole-clip position of the 2-s QVHighlights clip grid."""
    time_grid: float = 1.0
    """Event start/end times and video lengths are multiples of this (seconds)."""
    num_event_types: int = 4
    """How many of ``EVENT_TYPES`` are used (1..6); must be >= max_events."""
    tasks: tuple[str, ...] = field(default=TASKS[:4], metadata={"choices": TASKS})
    """Which tasks get instruction data (subset of tvg, dvc, vhd, timeline, tvg_chat, exist); tvg, dvc and vhd
    also get eval ground truth."""
    crf: int = 20
    """libx264 constant rate factor (lower = closer to the rendered frames, larger files)."""
    tvg_answer: str = field(default="named", metadata={"choices": TVG_ANSWER_STYLES})
    """Wording of the grounding answers (``tvg``, ``tvg_chat``) and of the ``timeline``. ``named`` (default):
    the answer restates the queried shape ("The red square happens in 3.0 - 8.0 seconds.") and the
    timeline is the list of those answers, by shape type. ``timeit``: TimeIT's Charades-STA wording ("The
    given query happens in 3.0 - 8.0 seconds.") and ``red square: 3.0 - 8.0 seconds.`` lines. Both parse
    the same way at evaluation. With ``timeit`` the tiny default answered every query of a video with the
    same span (README, "The embedded default learns")."""

    timed_text: bool = False
    """Give every instruction item a ``timed_text`` field: ``[[start, end, "red square"], ...]``, each
    event's span and the words naming its shape. Training can read it (``model.frame_text_loss_weight``:
    each frame's video tokens learn the words of the shapes it shows)."""

    def __post_init__(self) -> None:
        # Plain numbers as their declared type (YAML/JSON/CLI values: 8 -> 8.0, lists -> tuples).
        for f in dataclasses.fields(self):
            if f.type in ("int", "float"):
                object.__setattr__(self, f.name, {"int": int, "float": float}[f.type](getattr(self, f.name)))
        dur = self.duration
        if isinstance(dur, (int, float)):
            dur = (float(dur), float(dur))
        dur = tuple(float(d) for d in dur)
        if len(dur) != 2 or not 0 < dur[0] <= dur[1]:
            raise ValueError(f"duration must be a positive number or (min, max) with min <= max, got {self.duration!r}")
        object.__setattr__(self, "duration", dur)
        tasks = tuple(self.tasks)
        bad = [t for t in tasks if t not in TASKS]
        if bad or not tasks or len(set(tasks)) != len(tasks):
            raise ValueError(f"tasks must be distinct names from {TASKS}, got {self.tasks!r}")
        object.__setattr__(self, "tasks", tasks)
        for name in ("num_train", "num_val", "num_test"):
            if int(getattr(self, name)) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.num_train + self.num_val + self.num_test == 0:
            raise ValueError("num_train + num_val + num_test must be > 0")
        if self.fps <= 0 or self.time_grid <= 0:
            raise ValueError(f"fps and time_grid must be > 0, got fps={self.fps}, time_grid={self.time_grid}")
        frames_per_cell = self.time_grid * self.fps
        if abs(frames_per_cell - round(frames_per_cell)) > 1e-6:
            raise ValueError(
                f"time_grid * fps must be a whole number of frames so event boundaries fall on frames, "
                f"got time_grid={self.time_grid} * fps={self.fps} = {frames_per_cell}"
            )
        if self.size < 16 or self.size % 2:
            raise ValueError(f"size must be an even number >= 16 (yuv420p), got {self.size}")
        if not 1 <= self.num_event_types <= len(EVENT_TYPES):
            raise ValueError(f"num_event_types must be in 1..{len(EVENT_TYPES)}, got {self.num_event_types}")
        if not 1 <= self.max_events <= self.num_event_types:
            raise ValueError(
                f"max_events must be in 1..num_event_types ({self.num_event_types}) because the events of "
                f"one video have distinct types, got {self.max_events}"
            )
        if self.min_event_duration < _CLIP_LEN:
            raise ValueError(f"min_event_duration must be >= {_CLIP_LEN} s, got {self.min_event_duration}")
        if self._grid_range()[0] < self._min_event_cells():
            raise ValueError(
                f"the shortest video ({dur[0]} s, on the {self.time_grid} s grid) cannot hold one event of "
                f"min_event_duration={self.min_event_duration} s"
            )
        if self.tvg_answer not in TVG_ANSWER_STYLES:
            raise ValueError(f"tvg_answer must be one of {TVG_ANSWER_STYLES}, got {self.tvg_answer!r}")
        if not 0 <= self.crf <= 51:
            raise ValueError(f"crf must be in 0..51, got {self.crf}")

    # Durations and event spans are counted in grid cells so every time is an exact multiple.
    def _grid_range(self) -> tuple[int, int]:
        lo = math.ceil(self.duration[0] / self.time_grid - 1e-9)
        hi = math.floor(self.duration[1] / self.time_grid + 1e-9)
        if lo > hi:
            raise ValueError(f"no multiple of time_grid={self.time_grid} lies in duration={self.duration}")
        return lo, hi

    def _min_event_cells(self) -> int:
        return math.ceil(self.min_event_duration / self.time_grid - 1e-9)

    @classmethod
    def from_dict(cls, values: dict[str, Any], where: str) -> "SyntheticConfig":
        """The config of a settings dict (e.g. ``run.synthetic_data`` without ``out_dir``).

        Raises:
            TypeError: a key that is not a field (`UnknownKeyError` naming it and ``where``).
        """
        check_keys(values, (f.name for f in dataclasses.fields(cls)), where)
        return cls(**values)

    def num_videos(self, split: str) -> int:
        """Number of videos of ``split``."""
        return int(getattr(self, f"num_{split}"))

    def to_json(self) -> dict[str, Any]:
        """JSON-safe dict (tuples as lists) as stored in the manifest."""
        return json.loads(json.dumps(dataclasses.asdict(self)))


@dataclass
class SyntheticSummary:
    """What :func:`generate_synthetic_dataset` wrote (or found already written)."""

    out_dir: Path
    manifest: Path
    config: SyntheticConfig
    num_videos: dict[str, int]
    """Videos per split."""
    num_events: dict[str, int]
    """Events (= TVG queries = VHD queries) per split."""
    videos_dir: dict[str, Path]
    """``videos/{split}``: the directory the eval loader joins with ``image_id``."""
    events: dict[str, Path]
    """``annotations/{split}.events.json``."""
    instruct: dict[str, dict[str, Path]]
    """``instruct[task][split]`` -> TimeIT JSON."""
    train_all: Path | None
    """Merged, shuffled train instructions of all tasks (None when num_train == 0)."""
    eval_gt: dict[str, dict[str, Path]]
    """``eval_gt[task][split]`` -> the ground-truth file the task's metric reads."""
    eval_queries: dict[str, dict[str, Path]] = field(default_factory=dict)
    """``eval_queries[task][split]`` -> COCO-style file the inference loader reads (TVG: same as
    the gt; DVC: same as the gt; VHD: ``vhd_{split}.caption_coco_format.json``)."""
    regenerated: bool = True
    """False when a matching manifest made the call a no-op."""
    seconds: float = 0.0
    """Wall time of this call."""


# ----------------------------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------------------------

def generate_synthetic_dataset(
    out_dir: str | os.PathLike,
    config: SyntheticConfig | None = None,
    *,
    force: bool = False,
    workers: int | None = None,
    **fields: Any,
) -> SyntheticSummary:
    """Write the synthetic dataset (videos, events, instructions, eval gt) under ``out_dir``.

    Args:
        out_dir: target directory (created if missing); see the module docstring for the layout.
        config: the generation settings (:class:`SyntheticConfig`); or give its fields as keywords
            (``fields``, e.g. ``num_train=12``), not both. Neither: the defaults.
        force: regenerate even if ``manifest.json`` matches.
        workers: processes that render and encode videos (default: the CPUs this process may use,
            at most 8). Every video is written from its own generator, so the files are the same
            for any number.

    Returns:
        A :class:`SyntheticSummary` with the paths and counts.

    Raises:
        ValueError: invalid settings. TypeError: an unknown setting, or both ``config`` and ``fields``.
        FileExistsError: ``out_dir`` holds ``videos/``, ``annotations/`` or ``instruct/`` but no
            manifest or ``.generating`` marker, i.e. it may not be ours to overwrite.
    """
    if config is not None and fields:
        raise TypeError(f"give `config` or its fields {sorted(fields)}, not both")
    cfg = config if config is not None else SyntheticConfig.from_dict(fields, "generate_synthetic_dataset")
    t0 = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    manifest_path = out / _MANIFEST

    if not force and _manifest_matches(out, cfg):
        manifest = read_json(manifest_path)
        return _summary(out, cfg, manifest["counts"], regenerated=False, seconds=time.perf_counter() - t0)

    ours = manifest_path.exists() or (out / _MARKER).exists()
    present = [d for d in _MANAGED_DIRS if (out / d).exists()]
    if present and not ours:
        raise FileExistsError(
            f"{out} already contains {present} but no {_MANIFEST} or {_MARKER}: refusing to overwrite "
            f"a directory this generator did not write; choose an empty --out"
        )
    # Manifest goes first: from here until the new manifest is written the directory reads as
    # incomplete, whatever happens.
    manifest_path.unlink(missing_ok=True)
    atomic_write_text(out / _MARKER, json.dumps(cfg.to_json()) + "\n")
    for d in present:
        shutil.rmtree(out / d)

    counts: dict[str, dict[str, int]] = {"videos": {}, "events": {}}
    written: list[Path] = []
    train_items: list[dict[str, Any]] = []
    for split in SPLITS:
        n = cfg.num_videos(split)
        if n == 0:
            continue
        videos = [_sample_video(cfg, split, i) for i in range(n)]
        paths = [out / "videos" / split / f"{v['id']}.mp4" for v in videos]
        _write_videos(cfg, videos, paths, workers)
        written += paths
        counts["videos"][split] = n
        counts["events"][split] = sum(len(v["events"]) for v in videos)

        events_path = out / "annotations" / f"{split}.events.json"
        written.append(_write_json(events_path, {"split": split, "fps": cfg.fps, "size": cfg.size, "videos": videos}))
        written += _write_eval_gt(out, cfg, split, videos)
        for task in cfg.tasks:
            items = _instruct_items(cfg, split, task, videos)
            if cfg.timed_text:
                spans = {v["video"]: [[ev["start"], ev["end"], f"{ev['colour']} {ev['shape']}"] for ev in v["events"]]
                         for v in videos}
                items = [{**item, "timed_text": spans[item["video"]]} for item in items]
            written.append(_write_json(out / "instruct" / f"{task}_{split}.json", items))
            if split == "train":
                train_items += items
    if train_items:
        order = np.random.default_rng([cfg.seed, 99]).permutation(len(train_items))
        written.append(_write_json(out / "instruct" / "train_all.json", [train_items[i] for i in order]))

    manifest = {
        "format_version": FORMAT_VERSION,
        "generator": "timechat.data.synthetic",
        "config": cfg.to_json(),
        "counts": counts,
        "files": {
            p.relative_to(out).as_posix(): {"size": p.stat().st_size, "sha256": _sha256(p)}
            for p in sorted(written)
        },
    }
    atomic_write_text(manifest_path, json.dumps(manifest, indent=1) + "\n")
    (out / _MARKER).unlink(missing_ok=True)
    return _summary(out, cfg, counts, regenerated=True, seconds=time.perf_counter() - t0)


def _write_video(cfg: SyntheticConfig, video: dict[str, Any], path: Path) -> None:
    _encode_video(path, _render_video(cfg, video), cfg)


def _write_videos(cfg: SyntheticConfig, videos: list[dict[str, Any]], paths: list[Path], workers: int | None) -> None:
    """Render and encode the videos, in a process pool when more than one worker is asked for."""
    if workers is None:
        workers = min(8, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    if workers <= 1 or len(videos) < 2:
        for v, path in zip(videos, paths):
            _write_video(cfg, v, path)
        return
    import concurrent.futures
    import multiprocessing

    # fork: the workers only render (numpy) and encode (PyAV), and a forked worker does not re-run the
    # caller's script the way spawn/forkserver do when it has no `if __name__ == "__main__"` guard.
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(method)) as pool:
        for _ in pool.map(_write_video, [cfg] * len(videos), videos, paths, chunksize=16):
            pass


def load_events(out_dir: str | os.PathLike, split: str) -> list[dict[str, Any]]:
    """Read ``annotations/{split}.events.json`` and return its list of videos.

    Args:
        out_dir: a generated dataset directory.
        split: ``train``, ``val`` or ``test``.

    Returns:
        One dict per video: ``id``, ``video`` (path relative to ``out_dir``), ``file``,
        ``duration``, ``num_frames``, ``background`` and ``events`` (each with ``id``, ``type``,
        ``colour``, ``rgb``, ``shape``, ``motion``, ``start``, ``end``, ``sentence``, ...).
    """
    path = Path(out_dir) / "annotations" / f"{split}.events.json"
    if not path.exists():
        raise FileNotFoundError(
            f"{path} not found: generate the dataset first (python -m timechat.data.synthetic --out {out_dir})"
        )
    return read_json(path)["videos"]


# ----------------------------------------------------------------------------------------------
# Sampling (events are the single source of truth)
# ----------------------------------------------------------------------------------------------


def _rng(cfg: SyntheticConfig, split: str, index: int) -> np.random.Generator:
    return np.random.default_rng([cfg.seed, _SPLIT_CODE[split], index])


def _t(cells: int, cfg: SyntheticConfig) -> float:
    return round(cells * cfg.time_grid, 6)


def _sample_video(cfg: SyntheticConfig, split: str, index: int) -> dict[str, Any]:
    """Draw one video's length, background and events (no pixels yet)."""
    rng = _rng(cfg, split, index)
    lo, hi = cfg._grid_range()
    cells = int(rng.integers(lo, hi + 1))  # video length in grid cells
    m = cfg._min_event_cells()
    max_len = max(m, cells // 2)  # one event covers at most half the video (or the minimum)

    n_events = int(rng.integers(1, cfg.max_events + 1))
    lengths = [int(rng.integers(m, max_len + 1)) for _ in range(n_events)]
    while sum(lengths) > cells:  # drop events until they fit (at least one always fits)
        lengths.pop()
    slack = cells - sum(lengths)
    # Split the slack into len+1 gaps (before, between, after the events): a random composition.
    cuts = np.sort(rng.integers(0, slack + 1, size=len(lengths)))
    gaps = np.diff(np.concatenate([[0], cuts, [slack]])).tolist()
    types = rng.permutation(cfg.num_event_types)[: len(lengths)].tolist()

    ext = _SHAPE_EXTENT * cfg.size
    half = ext / 2.0
    lo_c, hi_c = half + 1.0, cfg.size - half - 1.0  # centre range keeping the full shape inside
    events = []
    pos = 0
    for k, (length, ty) in enumerate(zip(lengths, types)):
        pos += int(gaps[k])
        start, end = pos, pos + length
        pos = end
        colour, rgb, shape = EVENT_TYPES[ty]
        motion = MOTIONS[int(rng.integers(len(MOTIONS)))]
        a, b = (float(x) for x in rng.uniform(lo_c, hi_c, size=2))
        path = {
            "static": ((a, b), (a, b)),
            "left_to_right": ((lo_c, b), (hi_c, b)),
            "right_to_left": ((hi_c, b), (lo_c, b)),
            "top_to_bottom": ((a, lo_c), (a, hi_c)),
            "bottom_to_top": ((a, hi_c), (a, lo_c)),
        }[motion]
        sentence = f"a {colour} {shape} {_MOTION_TEXT[motion]}"
        events.append({
            "id": k,
            "type": int(ty),
            "colour": colour,
            "rgb": list(rgb),
            "shape": shape,
            "motion": motion,
            "start": _t(start, cfg),
            "end": _t(end, cfg),
            "start_frame": int(round(start * cfg.time_grid * cfg.fps)),
            "end_frame": int(round(end * cfg.time_grid * cfg.fps)),
            "centre_from": [round(path[0][0], 3), round(path[0][1], 3)],
            "centre_to": [round(path[1][0], 3), round(path[1][1], 3)],
            "extent": round(ext, 3),
            "sentence": sentence,
        })
    vid = f"syn_{split}_{index:05d}"
    duration = _t(cells, cfg)
    return {
        "id": vid,
        "file": f"{vid}.mp4",
        "video": f"videos/{split}/{vid}.mp4",
        "duration": duration,
        "num_frames": int(round(duration * cfg.fps)),
        "background": {
            "level": int(rng.integers(35, 76)),
            "amplitude": int(rng.integers(6, 16)),
            "phase": round(float(rng.uniform(0, 1)), 4),
            "drift": round(float(rng.uniform(-0.05, 0.05)), 4),  # cycles per second
        },
        "events": events,
    }


def _envelope(u: np.ndarray) -> np.ndarray:
    """Shape scale over the event (u in [0, 1)): _MIN_SCALE at the ends, 1.0 in the middle."""
    return _MIN_SCALE + (1.0 - _MIN_SCALE) * np.sin(np.pi * u)


# ----------------------------------------------------------------------------------------------
# Rendering and encoding
# ----------------------------------------------------------------------------------------------


def _shape_mask(shape: str, dx: np.ndarray, dy: np.ndarray, h: np.ndarray) -> np.ndarray:
    """Boolean mask of a shape with half-extent h, from pixel offsets to its centre."""
    if shape == "square":
        return (np.abs(dx) <= h) & (np.abs(dy) <= h)
    if shape == "circle":
        return dx * dx + dy * dy <= h * h
    if shape == "triangle":  # apex up, base down
        return (np.abs(dy) <= h) & (np.abs(dx) <= (dy + h) / 2.0)
    if shape == "bar":  # wide horizontal bar
        return (np.abs(dx) <= h) & (np.abs(dy) <= 0.5 * h)
    if shape == "diamond":
        return np.abs(dx) + np.abs(dy) <= h
    if shape == "cross":
        t = h / 3.0
        return ((np.abs(dx) <= h) & (np.abs(dy) <= t)) | ((np.abs(dy) <= h) & (np.abs(dx) <= t))
    raise ValueError(f"unknown shape {shape!r}")


def _render_video(cfg: SyntheticConfig, video: dict[str, Any]) -> np.ndarray:
    """All frames of one video, uint8 (T, H, W, 3)."""
    n, s = video["num_frames"], cfg.size
    bg = video["background"]
    t = np.arange(n, dtype=np.float32) / np.float32(cfg.fps)  # (T,)
    x = (np.arange(s, dtype=np.float32) + 0.5) / s  # (W,)
    level = bg["level"] + bg["amplitude"] * np.sin(2 * np.pi * (x[None, :] + bg["phase"] + bg["drift"] * t[:, None]))
    grey = np.clip(np.rint(level), 0, 255).astype(np.uint8)  # (T, W)
    frames = np.repeat(np.broadcast_to(grey[:, None, :, None], (n, s, s, 1)), 3, axis=3)  # (T, H, W, 3)

    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32) + 0.5  # pixel centres, (H, W)
    for ev in video["events"]:
        f0, f1 = ev["start_frame"], ev["end_frame"]
        u = (np.arange(f0, f1, dtype=np.float32) - f0) / max(f1 - f0, 1)  # (F,) progress in [0, 1)
        (cx0, cy0), (cx1, cy1) = ev["centre_from"], ev["centre_to"]
        cx = (cx0 + (cx1 - cx0) * u)[:, None, None]  # (F, 1, 1)
        cy = (cy0 + (cy1 - cy0) * u)[:, None, None]
        h = (ev["extent"] / 2.0 * _envelope(u))[:, None, None]
        mask = _shape_mask(ev["shape"], xx[None] - cx, yy[None] - cy, h)  # (F, H, W)
        frames[f0:f1][mask] = np.asarray(ev["rgb"], dtype=np.uint8)
    return frames


def _encode_video(path: Path, frames: np.ndarray, cfg: SyntheticConfig) -> None:
    """Encode (T, H, W, 3) uint8 frames to H.264/yuv420p mp4 at cfg.fps, atomically."""
    import av  # local: keeps `import timechat.data.synthetic` free of the codec libraries

    with atomic_path(path, fsync=False) as tmp:
        _mux_h264(tmp, frames, cfg, av)


def _mux_h264(tmp: Path, frames: np.ndarray, cfg: SyntheticConfig, av: Any) -> None:
    container = av.open(str(tmp), mode="w", format="mp4")
    try:
        stream = container.add_stream("libx264", rate=Fraction(cfg.fps).limit_denominator(1000))
        stream.width = stream.height = cfg.size
        stream.pix_fmt = "yuv420p"
        # Byte-identical output needs one thread and x264's plain C code: with its SIMD kernels,
        # x264 occasionally (~1 run in 50 on 32-px frames) makes different mode decisions for
        # identical input (it reads uninitialised memory), so two runs differ in a few bytes.
        stream.codec_context.options = {"crf": str(cfg.crf), "preset": "veryfast", "x264-params": "asm=0"}
        stream.codec_context.thread_count = 1
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    finally:
        container.close()


# ----------------------------------------------------------------------------------------------
# Answers, instructions and eval ground truth (all derived from the events)
# ----------------------------------------------------------------------------------------------


def _tvg_answer(start: float, end: float, subject: str = "The given query") -> str:
    s, e = round(float(start), 1), round(float(end), 1)
    if s == e:
        return f"{subject} happens in {s} seconds."
    return f"{subject} happens in {s} - {e} seconds."


def _dvc_answer(events: list[dict[str, Any]]) -> str:
    return " ".join(f"{ev['start']:.1f} - {ev['end']:.1f} seconds, {ev['sentence']}. " for ev in events)


def _timeline_answer(events: list[dict[str, Any]], style: str = "named") -> str:
    """Every shape and its span, by shape type: ``named``: the grounding answer of each
    (``"The red square happens in 2.0 - 4.0 seconds. The green triangle happens in 4.0 - 10.0 seconds."``);
    ``timeit``: ``"red square: 2.0 - 4.0 seconds. green triangle: 4.0 - 10.0 seconds."``."""
    by_type = sorted(events, key=lambda ev: ev["type"])
    if style == "named":
        return " ".join(_tvg_answer(ev["start"], ev["end"], f"The {ev['colour']} {ev['shape']}") for ev in by_type)
    return " ".join(f"{ev['colour']} {ev['shape']}: {ev['start']:.1f} - {ev['end']:.1f} seconds." for ev in by_type)


def _saliency(
    cfg: SyntheticConfig, split: str, video: dict[str, Any], ev: dict[str, Any], qid: int
) -> tuple[list[int], list[list[int]]]:
    """QVHighlights clip ids (2-s clips overlapping the event) and 3 annotator scores each (0-4).

    Quality of clip k = (fraction of the clip the event covers) * (0.5 + 0.5 * mean shape scale
    progress inside the clip); base score = round(1 + 3 * quality) in 1..4; each annotator adds
    -1/0/+1 (p = 0.15/0.7/0.15) from a generator seeded by the query, clipped to 0..4.
    """
    n_clips = int(video["duration"] / _CLIP_LEN)  # what the metric allocates
    rng = np.random.default_rng([cfg.seed, 7, _SPLIT_CODE[split], qid])
    f0, f1 = ev["start_frame"], ev["end_frame"]
    clip_ids, scores = [], []
    for k in range(n_clips):
        a, b = k * _CLIP_LEN, (k + 1) * _CLIP_LEN
        overlap = min(b, ev["end"]) - max(a, ev["start"])
        if overlap <= 1e-9:
            continue
        frames = np.arange(max(f0, math.ceil(a * cfg.fps - 1e-9)), min(f1, math.ceil(b * cfg.fps - 1e-9)))
        prog = np.sin(np.pi * (frames - f0) / max(f1 - f0, 1)) if len(frames) else np.zeros(1)
        quality = (overlap / _CLIP_LEN) * (0.5 + 0.5 * float(prog.mean()))
        base = int(round(1 + 3 * quality))
        jitter = rng.choice([-1, 0, 1], size=3, p=[0.15, 0.7, 0.15])
        clip_ids.append(k)
        scores.append([int(np.clip(base + j, 0, 4)) for j in jitter])
    if not clip_ids:  # cannot happen for min_event_duration >= 2 s (see SyntheticConfig)
        raise AssertionError(f"event {ev} of {video['id']} overlaps no 2-s clip")
    return clip_ids, scores


def _vhd_answer(clip_ids: list[int], scores: list[list[int]]) -> str:
    times = ", ".join(str(k * _CLIP_LEN) for k in clip_ids)
    sal = ", ".join(f"{sum(s) / len(s):.1f}" for s in scores)
    return f"There are {len(clip_ids)} highlight moments in the {times} second. Their saliency scores are {sal}."


def _queries(videos: list[dict[str, Any]]):
    """(query id, video, event) for every event of the split, ids counting from 0 in order."""
    qid = 0
    for v in videos:
        for ev in v["events"]:
            yield qid, v, ev
            qid += 1


def _pick(cfg: SyntheticConfig, templates: tuple[str, ...], task: str, split: str, key: int) -> str:
    rng = np.random.default_rng([cfg.seed, 11, TASKS.index(task), _SPLIT_CODE[split], key])
    return templates[int(rng.integers(len(templates)))]


def _instruct_items(cfg: SyntheticConfig, split: str, task: str, videos: list[dict[str, Any]]) -> list[dict[str, Any]]:
    source = f"synthetic_{task}"
    items = []
    if task in ("dvc", "timeline"):
        templates = DVC_TEMPLATES if task == "dvc" else TIMELINE_TEMPLATES
        for i, v in enumerate(videos):
            q = _pick(cfg, templates, task, split, i)
            a = _dvc_answer(v["events"]) if task == "dvc" else _timeline_answer(v["events"], cfg.tvg_answer)
            items.append({"video": v["video"], "QA": [{"q": q, "a": a}], "source": source})
        return items
    if task == "tvg_chat":
        return _tvg_chat_items(cfg, split, videos)
    if task == "exist":
        return _exist_items(cfg, split, videos)
    for qid, v, ev in _queries(videos):
        if task == "tvg":
            q, a = _tvg_turn(cfg, split, qid, ev)
        else:
            q = _pick(cfg, VHD_TEMPLATES, task, split, qid).format(query=ev["sentence"])
            a = _vhd_answer(*_saliency(cfg, split, v, ev, qid))
        items.append({"video": v["video"], "QA": [{"q": q, "a": a}], "source": source})
    return items


def _tvg_turn(cfg: SyntheticConfig, split: str, qid: int, ev: dict[str, Any]) -> tuple[str, str]:
    """The grounding question (template drawn per query id) and answer about one event."""
    subject = f"The {ev['colour']} {ev['shape']}" if cfg.tvg_answer == "named" else "The given query"
    question = _pick(cfg, TVG_TEMPLATES, "tvg", split, qid).format(query=ev["sentence"])
    return question, _tvg_answer(ev["start"], ev["end"], subject)


def _tvg_chat_items(cfg: SyntheticConfig, split: str, videos: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One item per video: the grounding turns of all its events (the ``tvg`` questions and answers)
    as one conversation, in an order drawn per video, so that queries about the 2nd and 3rd events
    come first as often as those about the 1st and every turn after the first asks about another
    span of the same frames."""
    turns: dict[str, list[dict[str, str]]] = {}
    for qid, v, ev in _queries(videos):
        q, a = _tvg_turn(cfg, split, qid, ev)
        turns.setdefault(v["id"], []).append({"q": q, "a": a})
    items = []
    for i, v in enumerate(videos):
        qa = turns[v["id"]]
        order = np.random.default_rng([cfg.seed, 13, _SPLIT_CODE[split], i]).permutation(len(qa))
        items.append({"video": v["video"], "QA": [qa[k] for k in order], "source": "synthetic_tvg_chat"})
    return items


def _exist_items(cfg: SyntheticConfig, split: str, videos: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One item per video: for every shape type in use, in an order drawn per video, whether it appears
    ("Yes, there is a red square." / "No, there is no red square."). A question names a shape and its
    answer depends only on whether some frame shows it: the text -> frames match that grounding needs
    first, without the times."""
    items = []
    for i, v in enumerate(videos):
        present = {ev["type"] for ev in v["events"]}
        rng = np.random.default_rng([cfg.seed, 17, _SPLIT_CODE[split], i])
        turns = []
        for ty in rng.permutation(cfg.num_event_types):
            colour, _, shape = EVENT_TYPES[int(ty)]
            name = f"{colour} {shape}"
            q = EXIST_TEMPLATES[int(rng.integers(len(EXIST_TEMPLATES)))].format(name=name)
            a = f"Yes, there is a {name}." if int(ty) in present else f"No, there is no {name}."
            turns.append({"q": q, "a": a})
        items.append({"video": v["video"], "QA": turns, "source": "synthetic_exist"})
    return items


def _write_eval_gt(out: Path, cfg: SyntheticConfig, split: str, videos: list[dict[str, Any]]) -> list[Path]:
    ann = out / "annotations"
    written = []
    if "tvg" in cfg.tasks:
        rows = [
            {"image_id": v["file"], "caption": ev["sentence"], "timestamp": [ev["start"], ev["end"]], "id": qid}
            for qid, v, ev in _queries(videos)
        ]
        written.append(_write_json(ann / f"tvg_{split}.caption_coco_format.json", {"annotations": rows}))
    if "dvc" in cfg.tasks:
        rows = []
        for i, v in enumerate(videos):
            sentences = [ev["sentence"] for ev in v["events"]]
            rows.append({
                "image_id": v["file"],
                "duration": v["duration"],
                "segments": [[ev["start"], ev["end"]] for ev in v["events"]],
                "caption": ". ".join(sentences) + ".",
                "pure_cap": ". ".join(sentences),
                "id": i,
            })
        written.append(_write_json(ann / f"{split}.caption_coco_format.json", {"annotations": rows}))
    if "vhd" in cfg.tasks:
        lines, rows = [], []
        for qid, v, ev in _queries(videos):
            clip_ids, scores = _saliency(cfg, split, v, ev, qid)
            lines.append(json.dumps({
                "qid": qid, "query": ev["sentence"], "duration": v["duration"], "vid": v["id"],
                "relevant_clip_ids": clip_ids, "saliency_scores": scores,
                "relevant_windows": [[ev["start"], ev["end"]]],
            }))
            rows.append({"image_id": v["file"], "caption": ev["sentence"], "id": qid, "duration": v["duration"]})
        path = ann / f"highlight_{split}_release.jsonl"
        atomic_write_text(path, "".join(line + "\n" for line in lines))
        written.append(path)
        written.append(_write_json(ann / f"vhd_{split}.caption_coco_format.json", {"annotations": rows}))
    return written


# ----------------------------------------------------------------------------------------------
# Files
# ----------------------------------------------------------------------------------------------


def _write_json(path: Path, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=1, ensure_ascii=False) + "\n")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _manifest_matches(out: Path, cfg: SyntheticConfig) -> bool:
    path = out / _MANIFEST
    if not path.exists() or (out / _MARKER).exists():
        return False
    try:
        manifest = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    if manifest.get("format_version") != FORMAT_VERSION or manifest.get("config") != cfg.to_json():
        return False
    for rel, info in manifest.get("files", {}).items():
        p = out / rel
        if not p.is_file() or p.stat().st_size != info.get("size"):
            return False
    return True


def _summary(
    out: Path, cfg: SyntheticConfig, counts: dict[str, dict[str, int]], *, regenerated: bool, seconds: float
) -> SyntheticSummary:
    splits = [s for s in SPLITS if cfg.num_videos(s) > 0]
    ann, ins = out / "annotations", out / "instruct"
    gt_names = {
        "tvg": "tvg_{}.caption_coco_format.json",
        "dvc": "{}.caption_coco_format.json",
        "vhd": "highlight_{}_release.jsonl",
    }
    query_names = dict(gt_names, vhd="vhd_{}.caption_coco_format.json")
    return SyntheticSummary(
        out_dir=out,
        manifest=out / _MANIFEST,
        config=cfg,
        num_videos={s: counts["videos"][s] for s in splits},
        num_events={s: counts["events"][s] for s in splits},
        videos_dir={s: out / "videos" / s for s in splits},
        events={s: ann / f"{s}.events.json" for s in splits},
        instruct={t: {s: ins / f"{t}_{s}.json" for s in splits} for t in cfg.tasks},
        train_all=ins / "train_all.json" if cfg.num_train > 0 else None,
        eval_gt={t: {s: ann / gt_names[t].format(s) for s in splits} for t in cfg.tasks if t in EVAL_TASKS},
        eval_queries={t: {s: ann / query_names[t].format(s) for s in splits} for t in cfg.tasks if t in EVAL_TASKS},
        regenerated=regenerated,
        seconds=seconds,
    )


# ----------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> SyntheticSummary:
    """``python -m timechat.data.synthetic --out DIR [...]``: generate and print a summary."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m timechat.data.synthetic", description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="output directory")
    for f in dataclasses.fields(SyntheticConfig):  # one option per field, named and typed after it
        default = getattr(SyntheticConfig, f.name)
        flag = "--" + f.name.replace("_", "-")
        if isinstance(default, tuple):
            p.add_argument(flag, nargs="+", type=type(default[0]), default=list(default), **f.metadata)
        elif isinstance(default, bool):
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=default, **f.metadata)
        else:
            p.add_argument(flag, type=type(default), default=default, **f.metadata)
    p.add_argument("--force", action="store_true", help="regenerate even if the manifest matches")
    a = vars(p.parse_args(argv))
    if len(a["duration"]) not in (1, 2):
        p.error("--duration takes one value or MIN MAX")
    a["duration"] = a["duration"][0] if len(a["duration"]) == 1 else tuple(a["duration"])
    out, force = a.pop("out"), a.pop("force")
    summary = generate_synthetic_dataset(out, SyntheticConfig(**a), force=force)
    state = "generated" if summary.regenerated else "up to date (manifest matches), nothing written"
    print(f"{summary.out_dir}: {state} in {summary.seconds:.1f} s")
    for s, n in summary.num_videos.items():
        print(f"  {s}: {n} videos, {summary.num_events[s]} events")
    return summary


if __name__ == "__main__":
    main()
