"""Killed in the middle and rerun: the same outputs as an uninterrupted run (runner + real SIGKILL of the CLI)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.data.prepare._media import make_clip, need
from timechat.data.prepare.runner import Task, remove_stale_temps, run_tasks
from timechat.io import atomic_write_text

REPO = Path(__file__).resolve().parents[3]


def _write(task: Task) -> dict:
    atomic_write_text(task.output, f"output of {task.key}\n")
    return {"n": len(task.key)}


def _square(task: Task) -> int:
    return task.payload**2


class _Kill:
    """Work function ``work`` that raises KeyboardInterrupt (a Ctrl-C) at its ``at``-th call."""

    def __init__(self, at: int, work=_write) -> None:
        self.at, self.calls, self.work = at, 0, work

    def __call__(self, task: Task):
        self.calls += 1
        if self.calls == self.at:
            raise KeyboardInterrupt
        return self.work(task)


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file() and not p.name.endswith("report.json")}


def test_interrupted_run_resumes_to_the_same_outputs(tmp_path):
    tasks = lambda out: [Task(f"t{k}", out / f"t{k}.txt") for k in range(6)]  # noqa: E731
    run_tasks("demo", tasks(tmp_path / "full"), _write, report_path=tmp_path / "full" / "report.json", progress=False)
    with pytest.raises(KeyboardInterrupt):
        run_tasks("demo", tasks(tmp_path / "cut"), _Kill(4), report_path=tmp_path / "cut" / "report.json", progress=False)
    report = json.loads((tmp_path / "cut" / "report.json").read_text())
    assert report["interrupted"] and report["counts"] == {"done": 3, "skipped": 0, "failed": 0}
    summary = run_tasks("demo", tasks(tmp_path / "cut"), _write, report_path=tmp_path / "cut" / "report.json", progress=False)
    assert summary.counts() == {"done": 3, "skipped": 3, "failed": 0}
    assert _tree(tmp_path / "cut") == _tree(tmp_path / "full")


def test_journal_resume_and_torn_line(tmp_path):
    journal = tmp_path / "j.jsonl"
    tasks = [Task(f"k{k}", None, payload=k) for k in range(5)]
    with pytest.raises(KeyboardInterrupt):
        run_tasks("j", tasks, _Kill(3, _square), journal_path=journal, progress=False)
    with journal.open("a") as f:
        f.write('{"key": "k4", "res')  # a kill in the middle of a journal line
    summary = run_tasks("j", tasks, _square, journal_path=journal, progress=False)
    assert summary.counts() == {"done": 3, "skipped": 2, "failed": 0}
    assert summary.results == {f"k{k}": k * k for k in range(5)}


def test_failures_are_reported_and_inputs_never_overwritten(tmp_path):
    def work(task):
        if task.key == "bad":
            raise RuntimeError("decoder says no")
        return _write(task)

    src = tmp_path / "in.txt"
    src.write_text("input")
    tasks = [Task("ok", tmp_path / "ok.txt"), Task("bad", tmp_path / "bad.txt"), Task("self", src, (src,))]
    summary = run_tasks("demo", tasks, work, report_path=tmp_path / "r.json", progress=False)
    assert [(o.key, o.reason) for o in summary.failed] == [("bad", "decoder says no"), ("self", f"output {src} is one of its inputs; refusing to overwrite")]
    assert src.read_text() == "input"
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["counts"] == {"done": 1, "skipped": 0, "failed": 2} and report["failed"][0] == {"key": "bad", "reason": "decoder says no"}
    assert "FAILED bad: decoder says no" in summary.text()


def test_stale_temps_of_dead_processes_are_removed(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale, live = tmp_path / f".a.mp4.tmp-{dead.pid}", tmp_path / f".b.mp4.tmp-{os.getpid()}"
    stale.write_bytes(b"half")
    live.write_bytes(b"being written")
    assert remove_stale_temps(tmp_path) == [stale] and live.exists()


def test_compress_killed_by_sigkill_then_rerun_matches_uninterrupted(tmp_path):
    need("ffmpeg", "ffprobe")
    src = tmp_path / "in"
    src.mkdir()
    for k in range(6):
        make_clip(src / f"c{k}.mp4", fps="25", size=(64, 48), seconds=3)
    cmd = [sys.executable, "-m", "timechat.data.prepare", "compress", str(src), "--no-progress", "--workers", "1"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    subprocess.run(cmd[:4] + [str(src), str(tmp_path / "full")] + cmd[5:], check=True, env=env, capture_output=True)

    cut = tmp_path / "cut"
    proc = subprocess.Popen(cmd[:4] + [str(src), str(cut)] + cmd[5:], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline and len(list(cut.glob("c*.mp4"))) < 2:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = sorted(p.name for p in cut.glob("c*.mp4"))
    assert 2 <= len(finished) < 6, finished  # killed in the middle
    rerun = subprocess.run(cmd[:4] + [str(src), str(cut)] + cmd[5:], env=env, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{6 - len(finished)} done, {len(finished)} skipped, 0 failed" in rerun.stdout
    assert not [p for p in cut.iterdir() if ".tmp-" in p.name]  # the killed ffmpeg's temp file is gone
    assert _tree(cut) == _tree(tmp_path / "full")  # byte-identical outputs
