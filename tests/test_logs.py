"""Metric sinks, progress lines and logging setup."""

from __future__ import annotations

import builtins
import json
import logging

import pytest
import torch

from timechat.logs import MetricLogger, Progress, format_duration, setup_logging


def test_metric_logger_writes_jsonl_and_tensorboard(tmp_path):
    with MetricLogger(tmp_path, rank=0) as ml:
        ml.log({"train/loss": torch.tensor(1.5), "train/lr": 3e-5}, step=10)
        ml.log({"train/loss": 1.25}, step=20)
    lines = [json.loads(s) for s in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [(r["step"], r["train/loss"]) for r in lines] == [(10, 1.5), (20, 1.25)]
    assert lines[0]["train/lr"] == 3e-5
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tmp_path / "tensorboard"))
    acc.Reload()
    assert [(e.step, e.value) for e in acc.Scalars("train/loss")] == [(10, 1.5), (20, 1.25)]
    with pytest.raises(TypeError, match="metric 'x' is not a scalar"):
        MetricLogger(tmp_path / "b", rank=0, tensorboard=False).log({"x": "abc"}, step=0)


def test_metric_logger_is_a_noop_off_rank0(tmp_path):
    ml = MetricLogger(tmp_path / "r1", rank=1, wandb=True)  # wandb never imported on rank 1
    ml.log({"loss": 1.0}, step=0)
    ml.close()
    assert not (tmp_path / "r1").exists()


def test_wandb_is_optional_and_fails_loudly(tmp_path, monkeypatch):
    real_import = builtins.__import__

    def no_wandb(name, *args, **kwargs):
        if name == "wandb":
            raise ImportError("No module named 'wandb'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_wandb)
    with pytest.raises(ImportError, match=r"timechat\[wandb\]"):
        MetricLogger(tmp_path, rank=0, tensorboard=False, wandb=True)


def test_progress_rate_limit_throughput_and_eta():
    now = [0.0]
    lines = []
    logger = logging.getLogger("test_progress")
    logger.info = lines.append  # capture without handlers
    p = Progress(100, start=20, samples_per_step=32, interval_s=10.0, logger=logger,
                 clock=lambda: now[0])
    now[0] = 5.0
    assert p.update(25, loss=1.0) is None  # within the interval
    now[0] = 10.0
    line = p.update(30, loss=0.5, lr=3e-5, grad_norm=1.25)
    # 10 steps x 32 samples in 10 s; 70 steps left at 1 s/step
    assert line == ("step 30/100 | loss 0.5000 | lr 3.000e-05 | grad_norm 1.25 | "
                    "32.00 samples/s | eta 0:01:10")
    now[0] = 12.0
    final = p.update(100, samples_per_s=7.5)  # the final step always prints; caller's rate wins
    assert final == "step 100/100 | 7.50 samples/s | eta 0:00:00"
    assert lines == [line, final]


def test_progress_steps_per_s_and_silent_off_rank0():
    now = [0.0]
    p = Progress(10, interval_s=0.0, clock=lambda: now[0], logger=logging.getLogger("t2"))
    now[0] = 4.0
    assert p.update(2) == "step 2/10 | 0.500 steps/s | eta 0:00:16"
    assert Progress(10, rank=1, interval_s=0.0).update(10) is None


def test_format_duration():
    assert format_duration(3725) == "1:02:05"
    assert format_duration(90000) == "1 days, 1:00:00"
    assert format_duration(float("nan")) == "?"


@pytest.fixture
def restore_timechat_logger():
    logger = logging.getLogger("timechat")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    yield
    for h in list(logger.handlers):
        logger.removeHandler(h)
        if h not in saved[0]:
            h.close()
    for h in saved[0]:
        logger.addHandler(h)
    logger.setLevel(saved[1])
    logger.propagate = saved[2]


def test_setup_logging_rank0_file_and_idempotent(tmp_path, restore_timechat_logger):
    logger = setup_logging(tmp_path, rank=0)
    setup_logging(tmp_path, rank=0)  # a second call replaces, not duplicates, handlers
    logging.getLogger("timechat.train.x").info("hello %d", 7)
    for h in logger.handlers:
        h.flush()
    text = (tmp_path / "train.log").read_text()
    assert text.count("hello 7") == 1 and "[rank0]" in text
    other = setup_logging(tmp_path / "r1", rank=1)
    assert other.level == logging.WARNING and not (tmp_path / "r1").exists()
