"""Pixel transforms of the video frames (no torchvision).

Mirrors the original's ``alpro_video_eval`` processor (``ToUint8 → ToTensorVideo → NormalizeVideo``)
and the training transform that ``Video_Instruct_Dataset`` builds through
``AlproVideoTrainProcessor`` (``RandomResizedCropVideo(scale=(0.5, 1), ratio=(3/4, 4/3), bicubic) →
ToTHWC → ToUint8 → ToTensorVideo → NormalizeVideo``), written from their described semantics:

* the crop box follows torchvision's ``RandomResizedCrop.get_params`` algorithm, drawn from an
  explicit ``torch.Generator`` (``torch.manual_seed(1234)`` then the default generator gives the
  same box as the original);
* one box for the whole clip; the resize is ``F.interpolate(bicubic, align_corners=False)`` on the
  float (C, T, H, W) tensor, i.e. C acts as the batch and T as the channels;
* the float → uint8 cast is not clamped: bicubic overshoot wraps modulo 256 (−4.05 → 252,
  263.7 → 7), which is what the original's ``tensor.to(torch.uint8)`` gave on x86. We write the
  wrap explicitly so the result does not depend on the platform's float→uint8 conversion.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def _to_cthw_float(frames: torch.Tensor) -> torch.Tensor:
    """(T, H, W, C) uint8 (a `VideoClip.frames`) → (C, T, H, W) float32 in 0..255."""
    if frames.dim() != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected frames of shape (T, H, W, 3), got {tuple(frames.shape)}")
    return frames.permute(3, 0, 1, 2).float()  # (C, T, H, W)


def normalize(pixels01: torch.Tensor, mean: Sequence[float] = CLIP_MEAN, std: Sequence[float] = CLIP_STD) -> torch.Tensor:
    """Per-channel ``(x - mean) / std`` on (C, T, H, W) float32 (``NormalizeVideo``)."""
    m = torch.as_tensor(mean, dtype=pixels01.dtype)[:, None, None, None]
    s = torch.as_tensor(std, dtype=pixels01.dtype)[:, None, None, None]
    return (pixels01 - m) / s


def wrap_to_uint8(x: torch.Tensor) -> torch.Tensor:
    """Float → uint8 like the original's unclamped cast: truncate toward zero, wrap modulo 256."""
    return torch.remainder(torch.trunc(x), 256).to(torch.uint8)


def eval_transform(frames: torch.Tensor, mean: Sequence[float] = CLIP_MEAN, std: Sequence[float] = CLIP_STD) -> torch.Tensor:
    """Eval pixels: uint8 cast, /255, CLIP normalisation.

    Args:
        frames: (T, H, W, C) uint8 (already resized at decode time).

    Returns:
        (C, T, H, W) float32.
    """
    if frames.dtype == torch.uint8:
        # Decoded frames are uint8 already: the original's float -> uint8 cast is the identity.
        x = frames.permute(3, 0, 1, 2).float() / 255.0  # (C, T, H, W)
    else:
        x = wrap_to_uint8(_to_cthw_float(frames)).float() / 255.0  # (C, T, H, W)
    return normalize(x, mean, std)


def random_resized_crop_params(
    height: int,
    width: int,
    scale: tuple[float, float] = (0.5, 1.0),
    ratio: tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0),
    generator: torch.Generator | None = None,
) -> tuple[int, int, int, int]:
    """Crop box ``(i, j, h, w)`` by torchvision's ``RandomResizedCrop.get_params`` algorithm.

    Up to 10 tries: area fraction ~ U(scale), log aspect ~ U(log ratio), ``w = round(sqrt(a·r))``,
    ``h = round(sqrt(a/r))``; accept if it fits, then top-left ~ randint. Otherwise a centre crop with
    the aspect clamped to ``ratio``. Random numbers are drawn in the same order and with the same
    torch calls, so the same generator state gives the same box.
    """
    area = height * width
    log_ratio = torch.log(torch.tensor(ratio))
    for _ in range(10):
        target_area = area * torch.empty(1).uniform_(scale[0], scale[1], generator=generator).item()
        aspect = math.exp(torch.empty(1).uniform_(float(log_ratio[0]), float(log_ratio[1]), generator=generator).item())
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            i = int(torch.randint(0, height - h + 1, size=(1,), generator=generator).item())
            j = int(torch.randint(0, width - w + 1, size=(1,), generator=generator).item())
            return i, j, h, w
    in_ratio = float(width) / float(height)
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        h, w = height, int(round(height * max(ratio)))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def resized_crop(pixels: torch.Tensor, box: tuple[int, int, int, int], size: tuple[int, int]) -> torch.Tensor:
    """Crop (C, T, H, W) float to ``box`` and resize to ``size`` with bicubic, align_corners=False.

    C is the interpolation batch and T its channels, as in the original ``resized_crop``.
    """
    i, j, h, w = box
    crop = pixels[..., i : i + h, j : j + w]  # (C, T, h, w)
    return F.interpolate(crop, size=size, mode="bicubic", align_corners=False)  # (C, T, *size)


def train_transform(
    frames: torch.Tensor,
    size: int | tuple[int, int] | None = None,
    scale: tuple[float, float] = (0.5, 1.0),
    ratio: tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0),
    generator: torch.Generator | None = None,
    box: tuple[int, int, int, int] | None = None,
    mean: Sequence[float] = CLIP_MEAN,
    std: Sequence[float] = CLIP_STD,
) -> torch.Tensor:
    """Training pixels: one random resized crop per clip, wrapped uint8 cast, /255, normalise.

    Args:
        frames: (T, H, W, C) uint8.
        size: output size (default: the input size, as the original crops 224 → 224).
        generator: torch RNG for the crop box (None: torch's default generator).
        box: use this ``(i, j, h, w)`` instead of drawing one.

    Returns:
        (C, T, h_out, w_out) float32.
    """
    x = _to_cthw_float(frames)  # (C, T, H, W)
    H, W = x.shape[-2:]
    if size is None:
        size = (H, W)
    elif isinstance(size, int):
        size = (size, size)
    if box is None:
        box = random_resized_crop_params(H, W, scale, ratio, generator)
    x = resized_crop(x, box, size)
    x = wrap_to_uint8(x).float() / 255.0
    return normalize(x, mean, std)


def pil_short_side_center_crop(image: "PIL.Image.Image", size: int = 224) -> "np.ndarray":  # noqa: F821
    """MVBench's frame transform (torchvision ``Resize(size, BICUBIC)`` + ``CenterCrop(size)`` on PIL).

    The shorter side becomes ``size`` and the longer ``int(size * long / short)`` (Pillow bicubic;
    no resize when the shorter side already is ``size``); the crop offsets are
    ``int(round((dim - size) / 2))`` with Python's half-even round (329 → top 52).

    Returns:
        (size, size, 3) uint8 RGB.
    """
    import numpy as np
    from PIL import Image

    w, h = image.size
    short, long = (w, h) if w <= h else (h, w)
    if short != size:
        new_long = int(size * long / short)
        new_w, new_h = (size, new_long) if w <= h else (new_long, size)
        image = image.resize((new_w, new_h), Image.BICUBIC)
    w, h = image.size
    top, left = int(round((h - size) / 2.0)), int(round((w - size) / 2.0))
    out = np.asarray(image.crop((left, top, left + size, top + size)))
    if out.ndim != 3 or out.shape[2] != 3:
        raise ValueError(f"expected an RGB frame, got array shape {out.shape} (mode {image.mode})")
    return out
