"""Facts shared by the data pipeline, the model, training and evaluation, each written once.

Nothing here is a setting: these are the values the original TimeChat (and LLaMA-2 / the chat
template it uses) fixes. Settings with defaults live in their dataclasses (`timechat.config`,
`timechat.models.config`, `timechat.data.settings`).
"""

from __future__ import annotations

import torch

# -- dtypes ---------------------------------------------------------------------------------------
DTYPES: dict[str, torch.dtype] = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
"""Config spelling -> torch dtype, for weights, storage (feature cache) and autocast."""

DTYPE_NAMES: tuple[str, ...] = tuple(DTYPES)

AUTOCAST_DTYPES: dict[str, torch.dtype] = {k: v for k, v in DTYPES.items() if k != "fp32"}
"""The precisions that run under `torch.autocast` (fp32 runs without it)."""


def torch_dtype(name: str, *, where: str = "dtype") -> torch.dtype:
    """The torch dtype of a config name ('fp32', 'bf16', 'fp16'); an error names `where`."""
    try:
        return DTYPES[name]
    except KeyError:
        raise ValueError(f"{where} must be one of {DTYPE_NAMES}, got {name!r}") from None


def dtype_name(dtype: torch.dtype) -> str:
    """The config name of a torch dtype (inverse of `torch_dtype`)."""
    for name, value in DTYPES.items():
        if value == dtype:
            return name
    raise ValueError(f"no config name for dtype {dtype}; known: {DTYPE_NAMES}")


# -- tokens ---------------------------------------------------------------------------------------
IGNORE_INDEX = -100
"""Label of a position that is not supervised (prompt, padding, video placeholders)."""

UNK_TOKEN_ID = 0
PAD_TOKEN_ID = 0  # LLaMA-2 has no pad token; the original pads with unk (id 0)
BOS_TOKEN_ID = 1
EOS_TOKEN_ID = 2

IMAGE_PLACEHOLDER = "<ImageHere>"
"""The prompt token whose run is replaced by the video tokens (added to the LLaMA vocabulary)."""

# -- system texts of the LLaMA-2 chat template ------------------------------------------------------
TRAIN_SYSTEM = " "
"""System text of the training conversations (`preprocess_for_llama_v2`)."""

EVAL_SYSTEM = (
    "You are able to understand the visual content that the user provides. "
    "Follow the instructions carefully and explain your answers in detail."
)
"""System text of inference (`conv_llava_llama_2` in the original's `Chat`)."""

CHAT_SYSTEM = (
    "You are a helpful language and vision assistant. You are able to understand the visual content "
    "that the user provides, and assist the user with a variety of tasks using natural language."
)
"""Default system text of `conv_llava_llama_2` (used when nothing overrides it, e.g. free chat)."""

BENCHMARK_SYSTEM = (
    "Carefully watch the video and pay attention to the cause and sequence of events, the detail and "
    "movement of objects, and the action and pose of persons. Based on your observations, select the "
    "best option that accurately addresses the question.\n"
)
"""System text of the QA benchmark scripts (MVBench, TempCompass, EgoSchema, Video-MME); the trailing
newline is part of it."""
