"""Rank-aware logging: python logging setup, metric sinks, rate-limited progress lines.

* ``setup_logging(output_dir, rank)`` configures the ``timechat`` logger hierarchy (stderr plus
  ``output_dir/train.log`` on rank 0; warnings only, tagged with the rank, elsewhere). Entry points
  call it; nothing here runs at import.
* ``MetricLogger`` writes scalars on rank 0 to a JSONL file in ``output_dir`` (always), to
  TensorBoard (``torch.utils.tensorboard``, imported lazily) and, only if enabled, to Weights &
  Biases (imported lazily; never a hard dependency, unlike the original's ``train.py``).
* ``Progress`` turns per-step updates into at most one line every ``interval_s`` seconds with
  loss, LR, samples/s and ETA.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

__all__ = ["MetricLogger", "Progress", "format_duration", "setup_logging"]

_OWN_HANDLER = "_timechat_handler"  # marks handlers added here, so a second call replaces them


def setup_logging(
    output_dir: str | os.PathLike | None = None,
    rank: int = 0,
    level: int = logging.INFO,
    logger_name: str = "timechat",
    filename: str = "train.log",
) -> logging.Logger:
    """Configure the ``timechat`` logger for this rank (idempotent).

    Args:
        output_dir: if given, rank 0 also appends to ``output_dir/filename``.
        rank: this process's rank; non-zero ranks log warnings and above only.
        level: level on rank 0.
        logger_name: root of the hierarchy to configure.
        filename: log file name inside ``output_dir``.

    Returns:
        The configured logger.
    """
    logger = logging.getLogger(logger_name)
    for h in list(logger.handlers):
        if getattr(h, _OWN_HANDLER, False):
            logger.removeHandler(h)
            h.close()
    fmt = logging.Formatter(
        f"%(asctime)s [rank{rank}] %(levelname)s %(name)s: %(message)s", "%Y-%m-%d %H:%M:%S"
    )
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if output_dir is not None and rank == 0:
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(Path(output_dir) / filename, encoding="utf-8"))
    for h in handlers:
        h.setFormatter(fmt)
        setattr(h, _OWN_HANDLER, True)
        logger.addHandler(h)
    logger.setLevel(level if rank == 0 else logging.WARNING)
    logger.propagate = False  # avoid duplicates if the caller also configured the root logger
    return logger


def _to_float(key: str, value: Any) -> float:
    if hasattr(value, "item"):  # tensors / numpy scalars
        value = value.item()
    try:
        return float(value)
    except (TypeError, ValueError) as e:
        raise TypeError(f"metric '{key}' is not a scalar: {value!r}") from e


class MetricLogger:
    """Scalar metrics to JSONL (+ TensorBoard, + optional W&B) on rank 0; no-op elsewhere.

    Args:
        output_dir: run output dir; ``metrics.jsonl`` and ``tensorboard/`` go inside.
        rank: this process's rank.
        tensorboard: write TensorBoard event files.
        wandb: log to Weights & Biases (needs ``pip install wandb``).
        wandb_project: W&B project (original: ``"timechat"``).
        run_name: W&B run name (original: last part of ``output_dir``; the default here).
        config: resolved config dict shown in W&B.
        jsonl_name: metrics file name.
    """

    def __init__(
        self,
        output_dir: str | os.PathLike,
        *,
        rank: int = 0,
        tensorboard: bool = True,
        wandb: bool = False,
        wandb_project: str = "timechat",
        run_name: str | None = None,
        config: Mapping[str, Any] | None = None,
        jsonl_name: str = "metrics.jsonl",
    ) -> None:
        self.enabled = rank == 0
        self._jsonl = None
        self._tb = None
        self._wandb = None
        if not self.enabled:
            return
        out = Path(output_dir)
        out.mkdir(parents=True, exist_ok=True)
        # Append: a resumed run continues the same file (steps after the resume point repeat).
        self._jsonl = open(out / jsonl_name, "a", encoding="utf-8")
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(log_dir=str(out / "tensorboard"))
        if wandb:
            try:
                import wandb as wandb_lib
            except ImportError as e:
                raise ImportError(
                    "wandb logging is enabled but wandb is not installed: "
                    "pip install 'timechat[wandb]'"
                ) from e
            self._wandb = wandb_lib.init(
                project=wandb_project,
                name=run_name or out.resolve().name,
                config=dict(config or {}),
                dir=str(out),
                resume="allow",
            )

    def log(self, metrics: Mapping[str, Any], step: int) -> None:
        """Record scalars at ``step`` (e.g. ``{"train/loss": 1.2, "train/lr": 3e-5}``).

        Args:
            metrics: name -> scalar (float, int, 0-dim tensor).
            step: global step for the x-axis.
        """
        if not self.enabled:
            return
        values = {k: _to_float(k, v) for k, v in metrics.items()}
        record = {"step": int(step), "time": time.time(), **values}
        self._jsonl.write(json.dumps(record) + "\n")
        self._jsonl.flush()
        if self._tb is not None:
            for k, v in values.items():
                self._tb.add_scalar(k, v, int(step))
        if self._wandb is not None:
            self._wandb.log(values, step=int(step))

    def close(self) -> None:
        """Flush and close all sinks."""
        if self._jsonl is not None:
            self._jsonl.close()
            self._jsonl = None
        if self._tb is not None:
            self._tb.close()
            self._tb = None
        if self._wandb is not None:
            self._wandb.finish()
            self._wandb = None

    def __enter__(self) -> MetricLogger:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def format_duration(seconds: float) -> str:
    """``H:MM:SS`` (``D days, H:MM:SS`` beyond a day); ``?`` for unknown."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "?"
    seconds = int(round(seconds))
    days, rem = divmod(seconds, 86400)
    h, rem = divmod(rem, 3600)
    m, s = divmod(rem, 60)
    core = f"{h}:{m:02d}:{s:02d}"
    return f"{days} days, {core}" if days else core


class Progress:
    """Rate-limited progress lines on rank 0: step, loss, LR, samples/s, ETA.

    The ETA uses the rate since the first update (so one slow step, e.g. a checkpoint save, does
    not swing it); samples/s is measured over the window since the last line unless the caller
    passes its own value.

    Args:
        total: the step count at which training ends.
        start: the step training (re)starts from.
        rank: this process's rank; other ranks never print.
        samples_per_step: samples per step summed over ranks (batch x accumulation x world size
            for optimizer steps); None shows steps/s instead unless ``samples_per_s`` is passed.
        interval_s: minimum seconds between lines (the final step always prints).
        logger: where lines go (default: the ``timechat.train`` logger, INFO).
        clock: monotonic clock, injectable for tests.
    """

    def __init__(
        self,
        total: int,
        *,
        start: int = 0,
        rank: int = 0,
        samples_per_step: int | None = None,
        interval_s: float = 30.0,
        logger: logging.Logger | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total, self.rank = int(total), int(rank)
        self.samples_per_step = samples_per_step
        self.interval_s = float(interval_s)
        self.logger = logger or logging.getLogger("timechat.train")
        self.clock = clock
        self._t0 = self._last_t = clock()
        self._step0 = self._last_step = int(start)

    def update(
        self,
        step: int,
        *,
        loss: float | None = None,
        lr: float | None = None,
        samples_per_s: float | None = None,
        **extra: float,
    ) -> str | None:
        """Report that ``step`` steps are done; emit a line if the interval has passed.

        Args:
            step: steps completed so far.
            loss: loss to show (e.g. average over the window).
            lr: current learning rate.
            samples_per_s: throughput measured by the caller (overrides the window estimate).
            **extra: other scalars to show (``name=value``).

        Returns:
            The emitted line, or None (rate-limited, or not rank 0).
        """
        if self.rank != 0:
            return None
        now = self.clock()
        final = step >= self.total
        if not final and now - self._last_t < self.interval_s:
            return None
        window_steps, window_t = step - self._last_step, now - self._last_t
        done, elapsed = step - self._step0, now - self._t0
        eta = (self.total - step) * elapsed / done if done > 0 else float("nan")
        parts = [f"step {step}/{self.total}"]
        if loss is not None:
            parts.append(f"loss {float(loss):.4f}")
        if lr is not None:
            parts.append(f"lr {float(lr):.3e}")
        parts += [f"{k} {float(v):.4g}" for k, v in extra.items()]
        if samples_per_s is not None:
            parts.append(f"{float(samples_per_s):.2f} samples/s")
        else:
            rate = window_steps / window_t if window_t > 0 else float("nan")
            if self.samples_per_step is not None:
                parts.append(f"{rate * self.samples_per_step:.2f} samples/s")
            else:
                parts.append(f"{rate:.3f} steps/s")
        parts.append(f"eta {format_duration(eta)}")
        line = " | ".join(parts)
        self.logger.info(line)
        self._last_t, self._last_step = now, step
        return line
