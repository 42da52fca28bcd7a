"""Step ``audit``: find the records of an instruction JSON whose video cannot be used, and drop them.

About 3 % of TimeIT's videos and 79 % of Valley's can no longer be downloaded (original issue #40).
Training on a JSON that lists them trips the data-failure guard or silently substitutes samples.
This step checks every record of a TimeIT (``{"video", "QA"}``) or raw Valley (``conversations``)
JSON against a videos root and reports, by record index (and ``id`` when the record has one), the
first reason that applies:

* ``bad_record`` / ``bad_text``: not a valid record, or a string in it that is not valid Unicode
  (`timechat.data.datasets.validate_record`);
* ``video_missing``: no file at ``videos_root / video``;
* ``video_empty``: a 0-byte file, or a container that reports no frames;
* ``video_undecodable``: no decoder opens it, it has no video stream, or decoding the checked frames
  fails (a truncated download);
* ``video_too_short``: the video (``frames / fps`` of the file, the clock of the prompt's
  timestamps) ends more than ``slack`` seconds before the latest time the record's answers mention.

The reasons are the data pipeline's (`timechat.data.datasets.build_train_item`). Answer times are
read the way the evaluation parsers read answers (spec 3.10): every ``A - B`` pair (dense captions,
step localisation, grounding, transcribed speech; the parsers' pattern) and the highlight /
summarisation timestamps (`timechat.eval.tasks.highlights.parse_vhd_highlights`). Valley answers (raw
Valley items, or records whose ``source`` is ``valley`` / ``VATEX`` / ``jukinmedia``) are free text
and are not time-checked unless ``check_times="always"``.

Videos are decoded with `timechat.data.video` (decord, PyAV fallback), the decoder training uses:
``decode="sample"`` (default) decodes 8 uniformly spaced frames at 32x32, ``"all"`` every frame
(what the original ``get_coco_format.py`` check did, slow), ``"none"`` only opens the file.

Outputs: the usable records, in input order and in the input's format, at ``output``; the report
at ``<output stem>.audit_report.json``. Each video is checked once (records sharing a video share
the result); the checks are journalled (``.<output name>.audit_journal.jsonl``), so a killed audit
resumes. Delete the journal (or pass ``fresh=True``) after replacing videos.
"""

from __future__ import annotations

import functools
import math
from collections import Counter
from pathlib import Path
from typing import Any

from timechat.data.datasets import SampleError, convert_valley_record, load_json_records, validate_record
from timechat.data.prepare.runner import Summary, Task, remove_stale_temps, run_tasks
from timechat.data.video import VideoDecodeError, load_video, probe_video, pyav_read_frames
from timechat.eval.tasks.common import PAIR_RE as TIME_PAIR_RE  # the "A - B" pair of every answer format
from timechat.eval.tasks.highlights import parse_vhd_highlights
from timechat.io import atomic_write_json

__all__ = ["DECODE_MODES", "REASONS", "answer_times", "audit_records", "check_video", "check_video_task"]

DECODE_MODES = ("sample", "all", "none")
REASONS = ("bad_record", "bad_text", "video_missing", "video_empty", "video_undecodable", "video_too_short")

# ``source`` of converted Valley records (`convert_valley_record` keeps the item's VATEX / jukinmedia)
VALLEY_SOURCES = ("valley", "vatex", "jukinmedia")

_DECODE_REASON = {"missing": "video_missing", "empty": "video_empty"}


def answer_times(answer: str) -> list[float]:
    """Every time (seconds) an answer states: its ``A - B`` pairs, else its highlight timestamps."""
    pairs = [float(x) for pair in TIME_PAIR_RE.findall(answer) for x in pair]
    if pairs:
        return [t for t in pairs if math.isfinite(t)]
    if "highlight" in answer.lower():
        parsed = parse_vhd_highlights(answer)
        if parsed.ok:
            return [float(t) for t in parsed.value["timestamps"]]
    return []


def check_video(path: str | Path, decode: str = "sample") -> dict[str, Any]:
    """Open (and decode some of) one video; ``{"ok", "reason", "detail", "frames", "fps", "duration"}``."""
    try:
        vlen, fps, backend = probe_video(path)
        if vlen <= 0 or fps <= 0:
            raise VideoDecodeError(path, "empty", f"{vlen} frames at {fps} fps")
        if decode == "sample":
            load_video(path, 8, 32, 32, "uniform", backend=backend)
        elif decode == "all":
            pyav_read_frames(path, list(range(vlen)), 32, 32)
    except VideoDecodeError as exc:
        return {"ok": False, "reason": _DECODE_REASON.get(exc.reason, "video_undecodable"), "detail": str(exc)}
    except Exception as exc:  # noqa: BLE001 - any decoder error makes the video unusable; reported
        return {"ok": False, "reason": "video_undecodable", "detail": f"{type(exc).__name__}: {exc}"}
    return {"ok": True, "reason": None, "detail": "", "frames": vlen, "fps": fps, "duration": vlen / fps}


def check_video_task(task: Task, *, decode: str) -> dict[str, Any]:
    """`check_video` of ``task.inputs[0]`` (the runner's work function)."""
    return check_video(task.inputs[0], decode)


def _as_timeit(raw: Any, sid: str) -> tuple[dict[str, Any], bool]:
    """(TimeIT record, came from Valley) or `SampleError` ``bad_record``."""
    if isinstance(raw, dict) and "conversations" in raw and "QA" not in raw:
        try:
            return validate_record(convert_valley_record(raw), sid), True
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise SampleError(sid, "bad_record", str(exc)) from exc
    rec = validate_record(raw, sid)
    return rec, str(rec.get("source", "")).lower() in VALLEY_SOURCES


def audit_records(
    records_path: str | Path,
    videos_root: str | Path,
    output: str | Path,
    *,
    decode: str = "sample",
    slack: float = 1.0,
    check_times: str = "auto",
    fresh: bool = False,
    workers: int = 1,
    progress: bool = True,
) -> Summary:
    """Audit ``records_path`` against ``videos_root``; write the usable records to ``output``.

    Args:
        records_path: TimeIT or raw Valley JSON list.
        videos_root: the folder the records' ``video`` paths are relative to (``datasets.*.videos_root``).
        output: the filtered JSON (must differ from ``records_path``).
        decode: ``"sample"``, ``"all"`` or ``"none"`` (module docstring).
        slack: seconds an answer time may exceed the video's duration (annotations are rounded to
            0.1 s and often end exactly at the end of the video).
        check_times: ``"auto"`` (TimeIT records only, not Valley), ``"always"``, ``"never"``.
        fresh: ignore the journal of an earlier run.
        workers: parallel video checks (threads; decoding releases the GIL).

    Returns:
        The `Summary` of the video checks; the record-level findings are in the report:
        ``counts`` (records, usable, by reason) and ``unusable`` (``index``, ``id``, ``video``,
        ``reason``, ``detail``) for every dropped record.
    """
    if decode not in DECODE_MODES:
        raise ValueError(f"decode must be one of {DECODE_MODES}, got {decode!r}")
    if check_times not in ("auto", "always", "never"):
        raise ValueError(f"check_times must be 'auto', 'always' or 'never', got {check_times!r}")
    records_path, output, videos_root = Path(records_path).resolve(), Path(output).resolve(), Path(videos_root)
    if output == records_path:
        raise ValueError(f"output must differ from the input {records_path} (never write over the inputs)")
    records = load_json_records(records_path)
    report_path = output.with_name(f"{output.stem}.audit_report.json")
    journal = output.with_name(f".{output.name}.audit_journal.jsonl")
    if fresh:
        journal.unlink(missing_ok=True)
    remove_stale_temps(output.parent, recursive=False)

    parsed: list[tuple[dict[str, Any] | None, bool, SampleError | None]] = []
    videos: dict[str, Path] = {}
    for i, raw in enumerate(records):
        sid = _record_id(raw, i)
        try:
            rec, valley = _as_timeit(raw, sid)
        except SampleError as err:
            parsed.append((None, False, err))
            continue
        parsed.append((rec, valley, None))
        videos.setdefault(rec["video"], videos_root / rec["video"])

    tasks = [Task(v, None, (p,)) for v, p in videos.items()]
    params = {"records": str(records_path), "videos_root": str(videos_root), "output": str(output), "decode": decode,
              "slack": slack, "check_times": check_times}
    summary = run_tasks("audit", tasks, functools.partial(check_video_task, decode=decode), workers=workers, pool="thread",
                        report_path=report_path, journal_path=journal, params=params, progress=progress)
    if summary.interrupted or summary.failed:
        return summary  # a check itself crashed: keep the journal, write no filtered JSON
    checks = summary.results

    usable, unusable = [], []
    for i, (raw, (rec, valley, err)) in enumerate(zip(records, parsed)):
        finding = _finding(rec, valley, err, checks, slack, check_times)
        if finding is None:
            usable.append(raw)
        else:
            unusable.append({"index": i, "id": _record_id(raw, i), "video": rec["video"] if rec else None, **finding})
    by_reason = Counter(u["reason"] for u in unusable)
    atomic_write_json(output, usable)
    extra = {
        "counts_records": {"records": len(records), "usable": len(usable), "unusable": len(unusable),
                           "by_reason": {r: by_reason.get(r, 0) for r in REASONS}},
        "videos": {"checked": len(videos), "unusable": sum(1 for c in checks.values() if not c["ok"])},
        "unusable": unusable,
        "filtered_json": str(output),
    }
    atomic_write_json(report_path, summary.to_dict(params, extra))
    return summary


def _record_id(raw: Any, index: int) -> str:
    if isinstance(raw, dict):
        for key in ("id", "v_id"):
            if key in raw:
                return str(raw[key])
    return str(index)


def _finding(rec, valley, err, checks, slack, check_times) -> dict[str, Any] | None:
    """Why a record is unusable (``{"reason", "detail"}``), or None."""
    if err is not None:
        return {"reason": err.reason, "detail": err.detail}
    check = checks[rec["video"]]
    if not check["ok"]:
        return {"reason": check["reason"], "detail": check["detail"]}
    if check_times == "never" or (check_times == "auto" and valley):
        return None
    times = [t for qa in rec["QA"] for t in answer_times(qa["a"])]
    if times and max(times) > check["duration"] + slack:
        return {"reason": "video_too_short",
                "detail": f"answers mention {max(times):g} s; the video lasts {check['duration']:.2f} s ({check['frames']} frames at {check['fps']:g} fps)"}
    return None
