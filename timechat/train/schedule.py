"""Learning-rate schedules with the original TimeChat (LAVIS) semantics.

The original steps its scheduler once per *micro*-iteration, before the forward pass, with
``step(cur_epoch, cur_step)`` where ``cur_step`` counts micro-iterations inside the epoch
(``BaseTask._train_inner_loop``). Two quirks are kept on purpose so that a run with the original's
config reproduces the original's learning rates:

* the linear warmup is driven by ``cur_step`` (the in-epoch step), not the global step
  ``t = cur_epoch * iters_per_epoch + cur_step``; when ``warmup_steps > iters_per_epoch`` the LR
  falls back to ``warmup_lr`` at the start of epoch 1 and ramps again;
* the cosine decay is measured from ``t = 0``, not from the end of warmup, so the LR drops
  abruptly when warmup ends (main run: 3e-5 -> ~2.81e-5 at t = 13200).

Each schedule is a pure function of ``(cur_epoch, cur_step)`` plus a small stateful class that
writes the value into an optimizer's param groups (all groups get the same LR, as in the original)
and has ``state_dict()`` / ``load_state_dict()`` for checkpoints. The classes' ``name`` is the
original's config name (``run.lr_schedule`` here, ``run.lr_sched`` in the original); they are looked
up by it in ``timechat.registry.LR_SCHEDULES``. Each takes exactly its ``hparam_names`` as keyword
arguments: any other key is a ``TypeError``.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import torch

log = logging.getLogger(__name__)

__all__ = [
    "ConstantLRScheduler",
    "LinearWarmupCosineLRScheduler",
    "LinearWarmupStepLRScheduler",
    "constant_lr_at",
    "lr_at",
    "step_lr_at",
]


def _warmup_lr(step: int, warmup_steps: int, warmup_lr: float, init_lr: float) -> float:
    """Linear ramp from ``warmup_lr`` to ``init_lr`` over ``warmup_steps``, capped at ``init_lr``."""
    return min(init_lr, warmup_lr + (init_lr - warmup_lr) * step / max(warmup_steps, 1))


def _resolve_warmup_lr(warmup_lr: float, init_lr: float) -> float:
    # The original treats a negative warmup LR (its default, -1) as "start warming up at init_lr".
    return init_lr if warmup_lr < 0 else warmup_lr


def lr_at(
    cur_epoch: int,
    cur_step: int,
    *,
    init_lr: float,
    min_lr: float,
    iters_per_epoch: int,
    max_epoch: int,
    warmup_lr: float = -1.0,
    warmup_steps: int = 0,
) -> float:
    """LR of the original ``linear_warmup_cosine_lr`` schedule at one micro-iteration.

    Args:
        cur_epoch: 0-based epoch (an "epoch" is ``iters_per_epoch`` micro-iterations).
        cur_step: 0-based micro-iteration inside the epoch.
        init_lr: peak LR (end of warmup, start of the cosine).
        min_lr: LR at the end of the cosine (``t = max_epoch * iters_per_epoch``).
        iters_per_epoch: micro-iterations per epoch.
        max_epoch: number of epochs; the cosine spans ``max_epoch * iters_per_epoch`` steps.
        warmup_lr: LR at warmup step 0; negative means ``init_lr`` (the original's default -1).
        warmup_steps: warmup length, compared against the global step ``t``.

    Returns:
        The learning rate. While ``t < warmup_steps`` it is the linear warmup evaluated at
        ``cur_step`` (the original's quirk); afterwards the cosine evaluated at ``t``.
    """
    t = cur_epoch * iters_per_epoch + cur_step
    if t < warmup_steps:
        return _warmup_lr(cur_step, warmup_steps, _resolve_warmup_lr(warmup_lr, init_lr), init_lr)
    total = max_epoch * iters_per_epoch
    return min_lr + (init_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * t / total))


def step_lr_at(
    cur_epoch: int,
    cur_step: int,
    *,
    init_lr: float,
    min_lr: float,
    decay_rate: float = 1.0,
    warmup_lr: float = -1.0,
    warmup_steps: int = 0,
) -> float:
    """LR of the original ``linear_warmup_step_lr`` schedule at one micro-iteration.

    No TimeChat config uses it; these are the semantics of the LAVIS class it was registered
    from: during epoch 0 the linear warmup at ``cur_step`` (capped at
    ``init_lr``, so it stays flat after ``warmup_steps``); from epoch 1 on a per-epoch step decay
    ``max(min_lr, init_lr * decay_rate ** cur_epoch)``. Warmup never extends past epoch 0.

    Args:
        cur_epoch: 0-based epoch.
        cur_step: 0-based micro-iteration inside the epoch.
        init_lr: LR after warmup and base of the decay.
        min_lr: floor of the step decay.
        decay_rate: multiplicative decay per epoch. The original read it from
            ``run.lr_decay_rate`` with no default (``None`` crashed); 1.0 here means "no decay".
        warmup_lr: LR at warmup step 0; negative means ``init_lr``.
        warmup_steps: warmup length in micro-iterations of epoch 0.

    Returns:
        The learning rate.
    """
    if cur_epoch == 0:
        return _warmup_lr(cur_step, warmup_steps, _resolve_warmup_lr(warmup_lr, init_lr), init_lr)
    return max(min_lr, init_lr * decay_rate**cur_epoch)


def constant_lr_at(
    cur_epoch: int,
    cur_step: int,
    *,
    init_lr: float,
    iters_per_epoch: int = 1,
    warmup_lr: float = -1.0,
    warmup_steps: int = 0,
) -> float:
    """Constant LR, with an optional linear warmup on the *global* step (no original quirk).

    Args:
        cur_epoch: 0-based epoch.
        cur_step: 0-based micro-iteration inside the epoch.
        init_lr: the constant LR.
        iters_per_epoch: micro-iterations per epoch (only needed with ``warmup_steps > 0``).
        warmup_lr: LR at warmup step 0; negative means ``init_lr``.
        warmup_steps: warmup length in global micro-iterations.

    Returns:
        The learning rate.
    """
    t = cur_epoch * iters_per_epoch + cur_step
    if t < warmup_steps:
        return _warmup_lr(t, warmup_steps, _resolve_warmup_lr(warmup_lr, init_lr), init_lr)
    return init_lr


class _EpochStepScheduler:
    """Shared state handling: subclasses set ``name``, ``hparam_names`` (their keyword arguments, stored
    as attributes of the same names) and define ``lr_at(cur_epoch, cur_step)``."""

    name = ""
    hparam_names: tuple[str, ...] = ()

    def __init__(self, optimizer: torch.optim.Optimizer | None) -> None:
        self.optimizer = optimizer
        self.cur_epoch = 0
        self.cur_step = 0
        self.last_lr: float | None = None

    def _hparams(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.hparam_names}

    def lr_at(self, cur_epoch: int, cur_step: int) -> float:
        raise NotImplementedError

    def step(self, cur_epoch: int, cur_step: int) -> float:
        """Set the LR for micro-iteration ``(cur_epoch, cur_step)`` on every param group.

        Call it before the forward pass of every micro-iteration, as the original does.

        Args:
            cur_epoch: 0-based epoch.
            cur_step: 0-based micro-iteration inside the epoch.

        Returns:
            The LR that was set.
        """
        lr = self.lr_at(cur_epoch, cur_step)
        self.cur_epoch, self.cur_step, self.last_lr = int(cur_epoch), int(cur_step), lr
        self._apply(lr)
        return lr

    def _apply(self, lr: float) -> None:
        if self.optimizer is not None:
            for group in self.optimizer.param_groups:
                group["lr"] = lr

    def state_dict(self) -> dict[str, Any]:
        """Position and hyperparameters (plain Python values, JSON-serialisable)."""
        return {
            "name": self.name,
            "cur_epoch": self.cur_epoch,
            "cur_step": self.cur_step,
            "last_lr": self.last_lr,
            "hparams": self._hparams(),
        }

    def load_state_dict(self, state: dict[str, Any], strict: bool = True) -> None:
        """Restore the position and re-apply the last LR to the optimizer.

        Args:
            state: a dict from ``state_dict()``.
            strict: if True, a schedule name or hyperparameter that differs from this instance's
                raises ``ValueError`` naming it; if False the difference is logged and the values
                of this instance (i.e. the current config) win.
        """
        for key in ("name", "cur_epoch", "cur_step", "last_lr", "hparams"):
            if key not in state:
                raise KeyError(f"scheduler state has no '{key}' (keys: {sorted(state)})")
        mismatches = []
        if state["name"] != self.name:
            mismatches.append(f"name: saved {state['name']!r}, current {self.name!r}")
        mine = self._hparams()
        for key in sorted(set(mine) | set(state["hparams"])):
            saved, cur = state["hparams"].get(key, "<absent>"), mine.get(key, "<absent>")
            if saved != cur:
                mismatches.append(f"{key}: saved {saved!r}, current {cur!r}")
        if mismatches:
            msg = "LR scheduler state differs from the current config: " + "; ".join(mismatches)
            if strict:
                raise ValueError(msg)
            log.warning("%s (keeping the current config)", msg)
        self.cur_epoch, self.cur_step = int(state["cur_epoch"]), int(state["cur_step"])
        self.last_lr = self.lr_at(self.cur_epoch, self.cur_step) if mismatches else state["last_lr"]
        if self.last_lr is not None:
            self._apply(self.last_lr)


class LinearWarmupCosineLRScheduler(_EpochStepScheduler):
    """The original ``linear_warmup_cosine_lr`` (see ``lr_at`` for the formula and quirks).

    Args:
        optimizer: optimizer whose param groups receive the LR (None: compute only).
        max_epoch: number of epochs.
        iters_per_epoch: micro-iterations per epoch.
        init_lr: peak LR.
        min_lr: final LR.
        warmup_lr: LR at warmup step 0 (negative: ``init_lr``).
        warmup_steps: warmup length in micro-iterations.
    """

    name = "linear_warmup_cosine_lr"
    hparam_names = ("max_epoch", "iters_per_epoch", "init_lr", "min_lr", "warmup_lr", "warmup_steps")

    def __init__(
        self,
        optimizer: torch.optim.Optimizer | None,
        *,
        max_epoch: int,
        iters_per_epoch: int,
        init_lr: float,
        min_lr: float,
        warmup_lr: float = -1.0,
        warmup_steps: int = 0,
    ) -> None:
        super().__init__(optimizer)
        if max_epoch < 1 or iters_per_epoch < 1:
            raise ValueError(
                f"max_epoch ({max_epoch}) and iters_per_epoch ({iters_per_epoch}) must be >= 1"
            )
        self.max_epoch, self.iters_per_epoch = int(max_epoch), int(iters_per_epoch)
        self.init_lr, self.min_lr = float(init_lr), float(min_lr)
        self.warmup_lr, self.warmup_steps = float(warmup_lr), int(warmup_steps)


    def lr_at(self, cur_epoch: int, cur_step: int) -> float:
        """LR at ``(cur_epoch, cur_step)`` without touching the optimizer."""
        return lr_at(cur_epoch, cur_step, **self._hparams())


class LinearWarmupStepLRScheduler(_EpochStepScheduler):
    """The original ``linear_warmup_step_lr`` (see ``step_lr_at``).

    Args:
        optimizer: optimizer whose param groups receive the LR (None: compute only).
        init_lr: LR after warmup.
        min_lr: floor of the per-epoch decay.
        decay_rate: multiplicative decay per epoch (1.0: none).
        warmup_lr: LR at warmup step 0 (negative: ``init_lr``).
        warmup_steps: warmup length in micro-iterations of epoch 0.
    """

    name = "linear_warmup_step_lr"
    hparam_names = ("init_lr", "min_lr", "decay_rate", "warmup_lr", "warmup_steps")

    def __init__(
        self,
        optimizer: torch.optim.Optimizer | None,
        *,
        init_lr: float,
        min_lr: float,
        decay_rate: float = 1.0,
        warmup_lr: float = -1.0,
        warmup_steps: int = 0,
    ) -> None:
        super().__init__(optimizer)
        self.init_lr, self.min_lr, self.decay_rate = float(init_lr), float(min_lr), float(decay_rate)
        self.warmup_lr, self.warmup_steps = float(warmup_lr), int(warmup_steps)


    def lr_at(self, cur_epoch: int, cur_step: int) -> float:
        """LR at ``(cur_epoch, cur_step)`` without touching the optimizer."""
        return step_lr_at(cur_epoch, cur_step, **self._hparams())


class ConstantLRScheduler(_EpochStepScheduler):
    """Constant LR with an optional linear warmup on the global step (see ``constant_lr_at``).

    Args:
        optimizer: optimizer whose param groups receive the LR (None: compute only).
        init_lr: the constant LR.
        iters_per_epoch: micro-iterations per epoch (needed only with warmup).
        warmup_lr: LR at warmup step 0 (negative: ``init_lr``).
        warmup_steps: warmup length in global micro-iterations.
    """

    name = "constant_lr"
    hparam_names = ("init_lr", "iters_per_epoch", "warmup_lr", "warmup_steps")

    def __init__(
        self,
        optimizer: torch.optim.Optimizer | None,
        *,
        init_lr: float,
        iters_per_epoch: int = 1,
        warmup_lr: float = -1.0,
        warmup_steps: int = 0,
    ) -> None:
        super().__init__(optimizer)
        if warmup_steps > 0 and iters_per_epoch < 1:
            raise ValueError(f"iters_per_epoch ({iters_per_epoch}) must be >= 1 with warmup")
        self.init_lr, self.iters_per_epoch = float(init_lr), int(iters_per_epoch)
        self.warmup_lr, self.warmup_steps = float(warmup_lr), int(warmup_steps)


    def lr_at(self, cur_epoch: int, cur_step: int) -> float:
        """LR at ``(cur_epoch, cur_step)`` without touching the optimizer."""
        return constant_lr_at(cur_epoch, cur_step, **self._hparams())
