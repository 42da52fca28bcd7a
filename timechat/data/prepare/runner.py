"""The one runner every preparation step uses: parallel, resumable, atomic, with a report.

A step turns its work into `Task`s and one picklable ``work(task) -> result`` function; `run_tasks`
then

* skips a task whose ``output`` file already exists, or whose key is in the step's journal (a
  JSON Lines file of finished tasks, for steps whose per-task result is data rather than a file,
  e.g. the audit's probe of one video) — so a rerun after a kill resumes;
* refuses a task whose output is one of its inputs (a step never writes over its inputs);
* runs the rest in order (``workers <= 1``, in this process) or on a pool of threads
  (subprocess-bound work such as ffmpeg) or spawned processes (Python-bound work such as whisper);
* shows a tqdm progress bar with ETA;
* catches each task's exception as a failure ``{key, reason}`` instead of stopping the run;
* writes a JSON report (counts, every failure with its key and reason, the step's parameters)
  atomically, and returns a `Summary` whose ``text()`` the command line prints.

Outputs themselves are written by the steps through `timechat.io.atomic_path` (temp file beside the
target + rename), so a killed run leaves either a finished output or a hidden temp file, which
`remove_stale_temps` deletes on the next run.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import multiprocessing
import os
import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from tqdm import tqdm

from timechat.io import atomic_write_json

__all__ = ["Outcome", "Summary", "Task", "remove_stale_temps", "run_tasks", "separate_folders"]

DONE, SKIPPED, FAILED = "done", "skipped", "failed"

# `timechat.io` stages ``name`` as ``.name.tmp-<pid>`` beside the target.
_TEMP_RE = re.compile(r"^\..+\.tmp-(\d+)$")


@dataclass(frozen=True)
class Task:
    """One unit of work.

    Attributes:
        key: what the summary and report call it (an input file relative to its root, a record id).
        output: the file the task writes; when it exists the task is skipped. ``None`` for tasks
            whose result goes to the journal instead.
        inputs: files the task reads; the runner refuses a task whose output is one of them.
        payload: anything picklable the work function needs.
    """

    key: str
    output: Path | None = None
    inputs: tuple[Path, ...] = ()
    payload: Any = None


@dataclass
class Outcome:
    """What happened to one task: ``status`` is ``done``, ``skipped`` or ``failed``."""

    key: str
    status: str
    reason: str | None = None
    result: Any = None


@dataclass
class Summary:
    """Counts and failures of one run (`run_tasks`), plus every task's result by key."""

    step: str
    outcomes: list[Outcome] = field(default_factory=list)
    report_path: Path | None = None
    seconds: float = 0.0
    interrupted: bool = False

    def _of(self, status: str) -> list[Outcome]:
        return [o for o in self.outcomes if o.status == status]

    @property
    def done(self) -> list[Outcome]:
        return self._of(DONE)

    @property
    def skipped(self) -> list[Outcome]:
        return self._of(SKIPPED)

    @property
    def failed(self) -> list[Outcome]:
        return self._of(FAILED)

    @property
    def results(self) -> dict[str, Any]:
        """Result of every done or journalled task, by key (failed tasks are absent)."""
        return {o.key: o.result for o in self.outcomes if o.status != FAILED}

    def counts(self) -> dict[str, int]:
        return {DONE: len(self.done), SKIPPED: len(self.skipped), FAILED: len(self.failed)}

    def text(self) -> str:
        """The summary printed at the end of a step."""
        c = self.counts()
        head = f"{self.step}: {c[DONE]} done, {c[SKIPPED]} skipped, {c[FAILED]} failed ({self.seconds:.1f} s)"
        if self.interrupted:
            head += " — INTERRUPTED, rerun to resume"
        lines = [head] + [f"  FAILED {o.key}: {o.reason}" for o in self.failed]
        if self.report_path is not None:
            lines.append(f"  report: {self.report_path}")
        return "\n".join(lines)

    def to_dict(self, params: dict[str, Any] | None = None, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        return {
            "step": self.step,
            "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "seconds": round(self.seconds, 3),
            "interrupted": self.interrupted,
            "params": params or {},
            "counts": self.counts(),
            "failed": [{"key": o.key, "reason": o.reason} for o in self.failed],
            "done": [o.key for o in self.done],
            "skipped": [o.key for o in self.skipped],
            **(extra or {}),
        }


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temps(folder: str | Path, recursive: bool = True) -> list[Path]:
    """Delete the temp files (``.name.tmp-<pid>``) that killed runs left in (or under) ``folder``.

    Only files whose writing process no longer exists are removed. Returns the removed paths.
    """
    folder = Path(folder)
    removed = []
    if not folder.is_dir():
        return removed
    for path in (folder.rglob if recursive else folder.glob)(".*.tmp-*"):
        m = _TEMP_RE.match(path.name)
        if m and path.is_file() and not _pid_alive(int(m.group(1))):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def separate_folders(input_dir: str | Path, output_dir: str | Path, what: str = "input") -> tuple[Path, Path]:
    """Resolve an existing input folder and an output folder that neither is nor contains it, nor lies in it.

    Raises:
        FileNotFoundError: the input folder does not exist.
        ValueError: the folders overlap (a step never writes over, or among, its inputs).
    """
    src, dst = Path(input_dir).resolve(), Path(output_dir).resolve()
    if not src.is_dir():
        raise FileNotFoundError(f"{what} folder {src} does not exist")
    if src == dst or src in dst.parents or dst in src.parents:
        raise ValueError(f"{what} folder {src} and output folder {dst} must be separate folders (never write over the inputs)")
    return src, dst


def _read_journal(path: Path | None) -> dict[str, Any]:
    """key → result of the tasks a previous run finished (a torn last line is ignored)."""
    if path is None or not path.is_file():
        return {}
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue  # the line a kill cut short; that task is simply redone
        out[entry["key"]] = entry.get("result")
    return out


class _Journal:
    """Append-only JSON Lines of finished tasks, flushed and fsynced per line."""

    def __init__(self, path: Path | None) -> None:
        self.f = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            # A torn last line (kill mid-write) must not glue onto the next entry.
            if path.is_file() and path.stat().st_size and not path.read_bytes().endswith(b"\n"):
                with path.open("a", encoding="utf-8") as f:
                    f.write("\n")
            self.f = path.open("a", encoding="utf-8")

    def add(self, key: str, result: Any) -> None:
        if self.f is None:
            return
        self.f.write(json.dumps({"key": key, "result": result}) + "\n")
        self.f.flush()
        os.fsync(self.f.fileno())

    def close(self) -> None:
        if self.f is not None:
            self.f.close()


def _failure_reason(exc: BaseException, limit: int = 400) -> str:
    """One line: the message (prefixed with the type unless it is a plain error), at most ``limit`` characters."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    if not isinstance(exc, (RuntimeError, ValueError, OSError)):
        text = f"{type(exc).__name__}: {text}"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _call(work: Callable[[Task], Any], task: Task) -> tuple[str, Any]:
    try:
        return DONE, work(task)
    except Exception as exc:  # noqa: BLE001 - every failure is reported with its reason, per task
        return FAILED, _failure_reason(exc)


def run_tasks(
    step: str,
    tasks: Sequence[Task],
    work: Callable[[Task], Any],
    *,
    workers: int = 1,
    pool: str = "thread",
    report_path: str | Path | None = None,
    journal_path: str | Path | None = None,
    params: dict[str, Any] | None = None,
    initializer: Callable[..., None] | None = None,
    initargs: Iterable[Any] = (),
    progress: bool = True,
) -> Summary:
    """Run ``work`` on every task that is not finished yet; see the module docstring.

    Args:
        step: step name (summary, report, progress bar).
        tasks: the tasks, in the order they are reported; keys must be unique.
        work: ``work(task) -> result`` (JSON-serialisable when a journal is used); raise to fail the
            task with the exception's message as the reason. Must be picklable for ``pool="process"``.
        workers: parallel tasks; ``<= 1`` runs them in order in this process.
        pool: ``"thread"`` or ``"process"`` (spawned, so each worker imports cleanly; use
            ``initializer`` to load a model once per worker).
        report_path: where the JSON report goes (``None``: no report).
        journal_path: JSON Lines file of finished tasks (for tasks without ``output``).
        params: the step's parameters, copied into the report.
        initializer / initargs: run once per worker process (or once here when ``workers <= 1``).
        progress: show the tqdm bar.

    Returns:
        The `Summary`. A KeyboardInterrupt writes the report (``interrupted: true``) and re-raises.
    """
    t0 = time.perf_counter()
    keys = [t.key for t in tasks]
    if len(set(keys)) != len(keys):
        dup = next(k for k in keys if keys.count(k) > 1)
        raise ValueError(f"{step}: task key {dup!r} is used twice")
    journal_path = Path(journal_path) if journal_path is not None else None
    finished = _read_journal(journal_path)
    outcomes: dict[str, Outcome] = {}
    todo: list[Task] = []
    for task in tasks:
        if task.output is not None and any(Path(task.output).resolve() == Path(i).resolve() for i in task.inputs):
            outcomes[task.key] = Outcome(task.key, FAILED, f"output {task.output} is one of its inputs; refusing to overwrite")
        elif task.output is not None and Path(task.output).exists():
            outcomes[task.key] = Outcome(task.key, SKIPPED, None, None)
        elif task.key in finished:
            outcomes[task.key] = Outcome(task.key, SKIPPED, None, finished[task.key])
        else:
            todo.append(task)

    summary = Summary(step, report_path=Path(report_path) if report_path is not None else None)
    journal = _Journal(journal_path)
    bar = tqdm(total=len(tasks), initial=len(tasks) - len(todo), desc=step, unit="file", disable=not progress, dynamic_ncols=True)

    def record(task: Task, status: str, value: Any) -> None:
        if status == DONE:
            outcomes[task.key] = Outcome(task.key, DONE, None, value)
            journal.add(task.key, value)
        else:
            outcomes[task.key] = Outcome(task.key, FAILED, value)
            bar.write(f"{step}: FAILED {task.key}: {value}")
        bar.update(1)

    try:
        if workers <= 1 or len(todo) <= 1:
            if initializer is not None and todo:
                initializer(*initargs)
            for task in todo:
                record(task, *_call(work, task))
        else:
            if pool == "process":
                executor: cf.Executor = cf.ProcessPoolExecutor(
                    workers, mp_context=multiprocessing.get_context("spawn"), initializer=initializer, initargs=tuple(initargs)
                )
            elif pool == "thread":
                if initializer is not None:
                    initializer(*initargs)
                executor = cf.ThreadPoolExecutor(workers)
            else:
                raise ValueError(f"pool must be 'thread' or 'process', got {pool!r}")
            with executor:
                futures = {executor.submit(_call, work, task): task for task in todo}
                try:
                    for fut in cf.as_completed(futures):
                        record(futures[fut], *fut.result())
                except BaseException:
                    for fut in futures:
                        fut.cancel()
                    raise
    except KeyboardInterrupt:
        summary.interrupted = True
        raise
    finally:
        bar.close()
        journal.close()
        summary.outcomes = [outcomes[k] for k in keys if k in outcomes]
        summary.seconds = time.perf_counter() - t0
        if summary.report_path is not None:
            atomic_write_json(summary.report_path, summary.to_dict(params))
    return summary
