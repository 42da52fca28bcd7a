"""Optimizer construction, gradient clipping and loss scaling for gradient accumulation.

Mirrors the original's optimizer (its LAVIS runner): AdamW over the trainable
parameters in two groups, with weight decay switched off for parameters that have ``ndim < 2`` or
whose name contains ``bias``, ``ln`` or ``bn`` (a plain substring test on the full name, as in the
original, so e.g. ``ln_vision.weight`` is also excluded).

Two things the original did not do are opt-in/opt-out here and named explicitly:
* ``clip_grad_norm`` (the original never clipped; pass ``max_norm=None`` to only measure);
* ``scale_loss_for_accumulation`` divides the loss by the accumulation steps by default
  (``normalize_loss_over_accumulation=True``); the original summed micro-batch gradients, i.e.
  ``normalize_loss_over_accumulation=False`` reproduces it (with ``init_lr`` tuned for that sum).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from timechat.checkpoint import unwrap_model  # the plain model under DDP / torch.compile

__all__ = [
    "NO_DECAY_NAME_PARTS",
    "build_optimizer",
    "build_param_groups",
    "clip_grad_norm",
    "is_accumulation_boundary",
    "scale_loss_for_accumulation",
]

NO_DECAY_NAME_PARTS = ("bias", "ln", "bn")




def build_param_groups(
    model: nn.Module,
    weight_decay: float,
    no_decay_name_parts: tuple[str, ...] = NO_DECAY_NAME_PARTS,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Split the trainable parameters into a decay and a no-decay group, as the original.

    Args:
        model: the model (DDP / torch.compile wrappers are looked through for names).
        weight_decay: weight decay of the decay group.
        no_decay_name_parts: substrings of a parameter name that put it in the no-decay group.

    Returns:
        ``(groups, report)``: ``groups`` is a list of two param-group dicts
        (``{"params", "weight_decay", "group_name"}``; the decay group first, as the original);
        ``report`` holds per group the tensor count, element count and names, plus the number of
        frozen parameters skipped.
    """
    decay, no_decay, decay_names, no_decay_names = [], [], [], []
    frozen_tensors = frozen_numel = 0
    for name, p in unwrap_model(model).named_parameters():
        if not p.requires_grad:
            frozen_tensors += 1
            frozen_numel += p.numel()
            continue
        if p.ndim < 2 or any(part in name for part in no_decay_name_parts):
            no_decay.append(p)
            no_decay_names.append(name)
        else:
            decay.append(p)
            decay_names.append(name)
    groups = [
        {"params": decay, "weight_decay": float(weight_decay), "group_name": "decay"},
        {"params": no_decay, "weight_decay": 0.0, "group_name": "no_decay"},
    ]
    report = {
        "decay": {"tensors": len(decay), "numel": sum(p.numel() for p in decay),
                  "names": decay_names},
        "no_decay": {"tensors": len(no_decay), "numel": sum(p.numel() for p in no_decay),
                     "names": no_decay_names},
        "frozen": {"tensors": frozen_tensors, "numel": frozen_numel},
    }
    return groups, report


def build_optimizer(
    model: nn.Module,
    *,
    lr: float,
    weight_decay: float = 0.05,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    fused: bool | None = None,
) -> tuple[torch.optim.AdamW, dict[str, Any]]:
    """AdamW over ``build_param_groups(model, weight_decay)``.

    Args:
        model: the model; only ``requires_grad`` parameters are optimised.
        lr: initial LR (the scheduler overwrites it every micro-iteration).
        weight_decay: decay of the decay group (original: 0.05).
        betas: AdamW betas (original: 0.9, 0.999).
        eps: AdamW eps (original: 1e-8).
        fused: passed to ``torch.optim.AdamW`` (None: torch's default).

    Returns:
        ``(optimizer, report)`` with the report of ``build_param_groups``.

    Raises:
        ValueError: if the model has no trainable parameter.
    """
    groups, report = build_param_groups(model, weight_decay)
    if report["decay"]["tensors"] + report["no_decay"]["tensors"] == 0:
        raise ValueError("model has no parameter with requires_grad=True; nothing to optimise")
    # An empty group is legal for torch, but keeping it would make the group count depend on the
    # model; drop it so that a checkpoint's group layout is what was actually trained.
    groups = [g for g in groups if g["params"]]
    kwargs: dict[str, Any] = {"lr": lr, "betas": tuple(betas), "eps": eps}
    if fused is not None:
        kwargs["fused"] = fused
    return torch.optim.AdamW(groups, **kwargs), report


def clip_grad_norm(
    parameters: nn.Module | Iterable[torch.Tensor],
    max_norm: float | None,
    *,
    norm_type: float = 2.0,
    scaler: torch.amp.GradScaler | None = None,
    optimizer: torch.optim.Optimizer | None = None,
) -> torch.Tensor:
    """Clip (or only measure) the global gradient norm; call it once per optimizer step.

    Works unchanged under DDP: by the time of the optimizer step DDP has all-reduced the
    gradients, so every rank sees the same norm and clips identically. A module that brings its
    own ``clip_grad_norm_`` (FSDP) is delegated to, because its gradients are sharded.

    Args:
        parameters: a module (its trainable parameters) or an iterable of parameters.
        max_norm: clip threshold; None or <= 0 only computes the norm (the original's behaviour).
        norm_type: p of the p-norm.
        scaler: an AMP ``GradScaler``; if enabled, gradients are unscaled first (needs
            ``optimizer``) so the threshold applies to true gradients.
        optimizer: the optimizer the scaler will step.

    Returns:
        The total gradient norm before clipping (a 0-dim tensor).
    """
    if scaler is not None and scaler.is_enabled():
        if optimizer is None:
            raise ValueError("clip_grad_norm with an enabled GradScaler needs `optimizer`")
        scaler.unscale_(optimizer)
    limit = float(max_norm) if max_norm is not None and max_norm > 0 else float("inf")
    if isinstance(parameters, nn.Module):
        if hasattr(parameters, "clip_grad_norm_"):
            return parameters.clip_grad_norm_(limit, norm_type=norm_type)
        params = [p for p in parameters.parameters() if p.requires_grad]
    else:
        params = list(parameters)
    params = [p for p in params if p.grad is not None]
    if not params:
        return torch.zeros(())
    return torch.nn.utils.clip_grad_norm_(params, limit, norm_type=norm_type)


def scale_loss_for_accumulation(
    loss: torch.Tensor, accum_steps: int, normalize_loss_over_accumulation: bool = True
) -> torch.Tensor:
    """Loss to call ``backward`` on during gradient accumulation.

    Args:
        loss: the micro-batch loss (mean over its tokens).
        accum_steps: micro-batches per optimizer step.
        normalize_loss_over_accumulation: True divides by ``accum_steps`` so the accumulated
            gradient is the mean over micro-batches (independent of ``accum_steps``); False keeps
            the original's sum of micro-batch gradients.

    Returns:
        The loss to backpropagate.
    """
    if accum_steps < 1:
        raise ValueError(f"accum_steps must be >= 1, got {accum_steps}")
    return loss / accum_steps if normalize_loss_over_accumulation else loss


def is_accumulation_boundary(micro_step: int, accum_steps: int) -> bool:
    """True when micro-iteration ``micro_step`` (0-based) ends an accumulation window.

    The original's test ``(i + 1) % accum_grad_iters == 0``; use it to pick the micro-steps on
    which to step the optimizer (and, under DDP, the only ones that need a gradient all-reduce).
    """
    return (micro_step + 1) % accum_steps == 0
