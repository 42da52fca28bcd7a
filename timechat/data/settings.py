"""The per-dataset data settings: frames, frame size, visual tokens, text length, sampling, augmentation.

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

import warnings
from dataclasses import asdict, dataclass, fields
from typing import Any

from timechat.validation import check_keys

SAMPLINGS = ("uniform", "rand")
EVAL_SAMPLING = "uniform"
"""Frame sampling at evaluation and in the feature cache (the original's inference `load_video`)."""

# Former spellings of user-facing keys -> the key now read (see `rename_legacy_keys`).
LEGACY_KEYS = {"n_frms": "num_frames"}


@dataclass(frozen=True)
class DataSettings:
    """How a video + conversation becomes one training item."""

    num_frames: int = 96
    """Frames sampled per video (fewer if the video is shorter); the original's ``num_frm``."""
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
    min_frames: int = 1
    """Videos with fewer decodable frames are bad samples (``too_few_frames``), counted and replaced.
    1 (the original): every decodable video trains, however short; see the README's data checks."""

    def __post_init__(self) -> None:
        for name in ("num_frames", "image_size", "num_video_query_token", "max_txt_len", "min_frames"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"data setting {name} must be >= 1, got {getattr(self, name)}")
        if self.min_frames > self.num_frames:
            raise ValueError(f"data setting min_frames={self.min_frames} is more than num_frames={self.num_frames}")
        if self.sampling not in SAMPLINGS:
            raise ValueError(f"data setting sampling must be one of {SAMPLINGS}, got {self.sampling!r}")

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
