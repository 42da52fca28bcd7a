"""The per-dataset data settings: frames, frame size, visual tokens, text length, sampling, augmentation.

Frame budget (`FrameBudget`, the fields ``num_frames``, ``fps``, ``min_frames``, ``max_frames``):
a fixed count, the original's and the default (``num_frames: 96``, ``fps`` unset), or a rate
(``fps: 1.0`` with ``min_frames`` / ``max_frames`` bounds: ``clamp(ceil(duration * fps), min, max)``).
Evaluation (`timechat.config.EvalConfig`) has the same four keys with these defaults.

One dataclass holds these defaults for the datasets (`timechat.data.datasets`), the training item
builder (`build_train_item`), the feature cache (`timechat.data.feature_cache`) and the scripts;
functions that take one of the values as a plain argument default to the field here. The defaults
are the original's training config (its dataset keys ``num_frm``, ``resize_size``,
``num_video_query_token``, ``stride``, ``max_txt_len``, ``sample_type`` and the
``alpro_video_train`` random resized crop).

In a training YAML these are keys of each `datasets.<name>` block (next to `records`,
`videos_root`, ...). `n_frms`, this project's former spelling of `num_frames` (and the original's
``load_video`` argument), is still read there with a warning.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass, fields
from typing import Any, Optional

from timechat.validation import check_keys

SAMPLINGS = ("uniform", "rand")
EVAL_SAMPLING = "uniform"
"""Frame sampling at evaluation and in the feature cache (the original's inference `load_video`)."""

# Former spellings of user-facing keys -> the key now read (see `rename_legacy_keys`).
LEGACY_KEYS = {"n_frms": "num_frames"}


FRAME_BUDGET_KEYS = ("num_frames", "fps", "min_frames", "max_frames")


@dataclass(frozen=True)
class FrameBudget:
    """How many frames to sample from a video: a fixed count, or a rate with bounds.

    Fields as in `DataSettings` (``num_frames`` / ``fps`` / ``min_frames`` / ``max_frames``).
    """

    num_frames: int = 96
    fps: Optional[float] = None
    min_frames: int = 1
    max_frames: Optional[int] = None

    def __post_init__(self) -> None:
        check_frame_budget(self.num_frames, self.fps, self.min_frames, self.max_frames, "frame budget")

    @property
    def largest(self) -> Optional[int]:
        """The most frames this budget can ask for (None: no bound, fps without max_frames)."""
        return self.num_frames if self.fps is None else self.max_frames

    def count(self, vlen: int, video_fps: float) -> int:
        """Frames to sample from a video of `vlen` frames at `video_fps`: never more than `vlen`.

        Fixed: ``min(num_frames, vlen)`` (the original's ``n = min(n_frms, vlen)``). By rate:
        ``clamp(ceil(vlen / video_fps * fps), min_frames, max_frames)``, then at most ``vlen``.
        """
        if self.fps is None:
            return min(self.num_frames, vlen)
        if video_fps <= 0:
            raise ValueError(f"an fps frame budget needs the video's frame rate, got {video_fps}")
        # round() first: 600 s * 1 fps is 600.0000000001 in floating point, not 601 frames
        n = max(self.min_frames, math.ceil(round(vlen / video_fps * self.fps, 6)))
        if self.max_frames is not None:
            n = min(n, self.max_frames)
        return max(1, min(n, vlen))


def check_frame_budget(num_frames: int, fps: Optional[float], min_frames: int, max_frames: Optional[int],
                       where: str) -> None:
    """Raise `ValueError` naming `where` for an invalid frame budget (see `FrameBudget`)."""
    if int(num_frames) < 1:
        raise ValueError(f"{where}: num_frames must be >= 1, got {num_frames}")
    if fps is not None and not float(fps) > 0:
        raise ValueError(f"{where}: fps must be > 0 (or null for a fixed num_frames), got {fps}")
    if int(min_frames) < 1:
        raise ValueError(f"{where}: min_frames must be >= 1, got {min_frames}")
    if max_frames is not None and int(max_frames) < int(min_frames):
        raise ValueError(f"{where}: max_frames ({max_frames}) must be >= min_frames ({min_frames})")
    if fps is None and (int(min_frames) != 1 or max_frames is not None):
        raise ValueError(f"{where}: min_frames / max_frames bound an fps budget; set fps too, or drop them "
                         f"(a fixed budget takes num_frames={num_frames})")


@dataclass(frozen=True)
class DataSettings:
    """How a video + conversation becomes one training item."""

    num_frames: int = 96
    """Frames sampled per video (fewer if the video is shorter); the original's ``num_frm``. Ignored
    when ``fps`` is set."""
    image_size: int = 224
    """Frames are decoded resized to ``image_size`` x ``image_size`` (aspect not kept)."""
    num_video_query_token: int = 32
    """Video Q-Former queries per window (LLM placeholders per window)."""
    stride: int = 32
    """Sliding-window stride over frames; <= 0: one window over the whole video."""
    max_txt_len: int = 2048
    """Token ids kept per conversation (cut on the right)."""
    sampling: str = "rand"
    """Frame sampling: ``'rand'`` (one random frame per bin, training) or ``'uniform'``."""
    train_aug: bool = True
    """Random resized crop (training); False: the evaluation transform."""
    fps: Optional[float] = None
    """Frames per second of video to sample; None: a fixed ``num_frames`` (the original)."""
    min_frames: int = 1
    """With ``fps``: at least this many frames (a video shorter than that gives all its frames)."""
    max_frames: Optional[int] = None
    """With ``fps``: at most this many frames (None: no cap; mind the frame-position table,
    ``model.position_overflow``, and the LLM context)."""
    min_video_frames: int = 1
    """Videos with fewer decodable frames are bad samples (``too_few_frames``), counted and replaced.
    1 (the original): every decodable video trains, however short; see the README's data checks."""

    def __post_init__(self) -> None:
        for name in ("num_frames", "image_size", "num_video_query_token", "max_txt_len", "min_frames", "min_video_frames"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"data setting {name} must be >= 1, got {getattr(self, name)}")
        if self.min_video_frames > self.num_frames:
            raise ValueError(f"data setting min_video_frames={self.min_video_frames} is more than num_frames={self.num_frames}")
        if self.sampling not in SAMPLINGS:
            raise ValueError(f"data setting sampling must be one of {SAMPLINGS}, got {self.sampling!r}")
        check_frame_budget(self.num_frames, self.fps, self.min_frames, self.max_frames, "data settings")

    @property
    def frame_budget(self) -> FrameBudget:
        return FrameBudget(self.num_frames, self.fps, self.min_frames, self.max_frames)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))


def rename_legacy_keys(values: dict[str, Any], where: str) -> dict[str, Any]:
    """Copy of `values` with former key spellings (`LEGACY_KEYS`) renamed, warning about each.

    Raises:
        TypeError: both the old and the new spelling are given.
    """
    out = dict(values)
    for old, new in LEGACY_KEYS.items():
        if old in out:
            if new in out:
                raise TypeError(f"{where}: both {old!r} and {new!r} are set; use only {new!r}")
            warnings.warn(f"{where}: {old!r} is deprecated, use {new!r}", FutureWarning, stacklevel=3)
            out[new] = out.pop(old)
    return out


def data_settings(settings: DataSettings | None, values: dict[str, Any], where: str) -> DataSettings:
    """`settings`, or a `DataSettings` from keyword `values` (the `DataSettings` fields; former spellings
    such as `n_frms` are renamed with a warning).

    Raises:
        TypeError: both given, or `values` has a key that is not a field (`UnknownKeyError`, naming it).
    """
    if settings is not None:
        if values:
            raise TypeError(f"{where}: give `settings` or its fields {sorted(values)}, not both")
        return settings
    values = rename_legacy_keys(values, where)
    check_keys(values, DataSettings.field_names(), where)
    return DataSettings(**values)
