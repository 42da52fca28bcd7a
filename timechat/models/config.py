"""Architecture configuration of TimeChat (paper §3, original `timechat/configs/models/timechat.yaml`).

Every dimension is a field with TimeChat-7B's value as its default, so ``TimeChatConfig()`` *is*
the released architecture and a tiny test model only overrides sizes. Where the original used a
value that was fixed in code (the video Q-Former's 2 layers, LoRA r=32) it is still a field here.

The ``mode`` field chooses between the two behaviours documented in the README:

* ``compat`` reproduces the released checkpoint: the frame Q-Former output keeps the timestamp
  text rows (original issue #28) and timestamps are tokenized with the LLaMA tokenizer in training
  and with the BERT tokenizer at inference (original issue #19).
* ``fixed`` keeps only the query rows and uses one tokenizer (``fixed_timestamp_tokenizer``) on
  every path.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal, Optional

from timechat.constants import DTYPE_NAMES
from timechat.validation import check_keys

MODES = ("compat", "fixed")
POSITION_OVERFLOW_RULES = ("error", "nearest", "linear")


@dataclass
class VisionConfig:
    """EVA ViT-g as TimeChat builds it (39 of EVA-CLIP-g's 40 blocks, no final norm)."""

    image_size: int = 224
    """Input resolution; frames are resized to this at decode time."""
    patch_size: int = 14
    width: int = 1408
    depth: int = 39
    num_heads: int = 16
    mlp_hidden: int = 6144
    """int(1408 * 4.3637) in the original."""
    layer_norm_eps: float = 1e-6
    ln_vision_eps: float = 1e-5
    """`ln_vision` (from InstructBLIP) uses PyTorch's default eps, not the ViT's."""
    init_seed: int | None = None
    """Seed of the ViT's random init, independent of the global RNG. A frozen ViT that no checkpoint
    file provides (a model trained from scratch) is then the same tensor in training and evaluation;
    checkpoints store trainable weights only."""

    @property
    def num_tokens(self) -> int:
        return (self.image_size // self.patch_size) ** 2 + 1


@dataclass
class QFormerConfig:
    """BERT-base Q-Former shared by the frame encoder and (with fewer layers) the video Q-Former."""

    hidden_size: int = 768
    num_layers: int = 12
    num_heads: int = 12
    intermediate_size: int = 3072
    layer_norm_eps: float = 1e-12
    max_position_embeddings: int = 512
    vocab_size: int = 30523
    """bert-base-uncased (30522) plus the `[DEC]` token InstructBLIP adds."""
    num_query_tokens: int = 32
    cross_attention_freq: int = 2
    dropout: float = 0.1
    attention_dropout: float = 0.1
    initializer_range: float = 0.02
    """Std of the random init (BERT's 0.02); only matters when training from scratch."""


@dataclass
class VideoQFormerConfig:
    """The sliding-window video Q-Former: same width as the frame Q-Former, queries only."""

    num_layers: int = 2
    num_query_tokens: int = 32
    cross_attention_freq: int = 1


@dataclass
class LLMConfig:
    """LLaMA-2-7B-chat. Ignored when the LLM is loaded from a HF directory (its config.json wins)."""

    hidden_size: int = 4096
    num_layers: int = 32
    num_heads: int = 32
    num_kv_heads: int = 32
    intermediate_size: int = 11008
    vocab_size: int = 32000
    rms_norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    max_position_embeddings: int = 4096
    tie_word_embeddings: bool = False


@dataclass
class LoraConfig:
    """LoRA on the LLM attention projections (peft)."""

    enabled: bool = True
    r: int = 32
    alpha: float = 32.0
    """The QA benchmarks of the original lower this to 20 at inference (FAQ §3)."""
    dropout: float = 0.1
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])


@dataclass
class TimeChatConfig:
    vision: VisionConfig = field(default_factory=VisionConfig)
    qformer: QFormerConfig = field(default_factory=QFormerConfig)
    video_qformer: VideoQFormerConfig = field(default_factory=VideoQFormerConfig)
    llm: LLMConfig = field(default_factory=LLMConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    mode: Literal["compat", "fixed"] = "compat"
    fixed_timestamp_tokenizer: Literal["bert", "llama"] = "bert"
    """Timestamp tokenizer used on every path in `fixed` mode."""
    max_frame_pos: int = 96
    """Rows of the global frame-position table; longer videos follow `position_overflow`."""
    position_overflow: Literal["error", "nearest", "linear"] = "error"
    """A video with more frames than `max_frame_pos`: ``error`` (the default; the original crashed),
    ``nearest`` (stretch the table to the frame count by nearest neighbour, the rule the original
    applies when it loads Video-LLaMA's 32-row table into 96 rows) or ``linear`` (linear
    interpolation, end rows kept). Videos within the table use it unchanged whatever the rule."""
    frame_chunk_size: Optional[int] = None
    """Frames per call of the ViT + frame Q-Former (and frames' worth of windows per call of the
    video Q-Former), so peak memory follows the chunk, not the video length. None: all frames of the
    batch in one call (the original's computation)."""
    window_size: int = 32
    stride: int = 32
    image_token_id: int = 32000
    """Id of the `<ImageHere>` placeholder (= LLaMA vocabulary size; never embedded)."""
    dtype: Literal["fp32", "bf16", "fp16"] = "fp32"
    """Storage and compute dtype of the frozen towers (ViT, LLM base weights)."""
    gradient_checkpointing: bool = False
    freeze_vit: bool = True
    freeze_qformer: bool = False
    freeze_llama_proj: bool = False
    freeze_video_qformer: bool = False
    freeze_lora: bool = False
    """True for inference configs (the original's `lora_inference_mode`)."""
    freeze_llm: bool = True
    """The LLM base weights are frozen in TimeChat; False trains them too (tiny from-scratch models)."""
    frame_time_loss_weight: float = 0.0
    """Weight of an auxiliary training loss that is not TimeChat's (0, the default, adds nothing: no
    head, no loss). Every LLM-input video token predicts the whole second of its window's mean
    frame time through a linear head (`frame_time_head`), so the tokens carry their time from the
    start. For models trained from scratch, whose frame Q-Former has not learned to read its
    timestamp text (README, "The embedded default learns")."""
    frame_time_bins: int = 32
    """Classes of the frame-time head: seconds 0, 1, ..., bins - 1 (later times fall in the last)."""
    frame_text_loss_weight: float = 0.0
    """Weight of a second auxiliary training loss, not TimeChat's (0 by default: none). Where a record
    has ``timed_text`` (``[[start, end, text], ...]``), each window's video tokens, read through the
    LLM's output word embeddings, must predict the words of the texts whose span holds its frames
    (a soft target spread evenly over those word pieces): a frame that shows a red square lies near
    the words "red" and "square", so a query's words can find it."""

    def __post_init__(self) -> None:
        for name, sub in (("vision", VisionConfig), ("qformer", QFormerConfig), ("video_qformer", VideoQFormerConfig),
                          ("llm", LLMConfig), ("lora", LoraConfig)):
            value = getattr(self, name)
            if isinstance(value, dict):
                setattr(self, name, _from_dict(sub, value, f"model.{name}"))
        if self.mode not in MODES:
            raise ValueError(f"model.mode must be one of {MODES}, got {self.mode!r}")
        if self.dtype not in DTYPE_NAMES:
            raise ValueError(f"model.dtype must be one of {DTYPE_NAMES}, got {self.dtype!r}")
        if self.fixed_timestamp_tokenizer not in ("bert", "llama"):
            raise ValueError("model.fixed_timestamp_tokenizer must be 'bert' or 'llama'")
        if self.stride > 0 and self.window_size <= 0:
            raise ValueError("model.window_size must be > 0 when model.stride > 0")
        if self.position_overflow not in POSITION_OVERFLOW_RULES:
            raise ValueError(f"model.position_overflow must be one of {POSITION_OVERFLOW_RULES}, "
                             f"got {self.position_overflow!r}")
        if self.frame_text_loss_weight < 0:
            raise ValueError(f"model.frame_text_loss_weight must be >= 0, got {self.frame_text_loss_weight}")
        if self.frame_time_loss_weight < 0 or self.frame_time_bins < 2:
            raise ValueError(f"model.frame_time_loss_weight must be >= 0 and model.frame_time_bins >= 2, got "
                             f"{self.frame_time_loss_weight} and {self.frame_time_bins}")
        if self.frame_chunk_size is not None and self.frame_chunk_size < 1:
            raise ValueError(f"model.frame_chunk_size must be >= 1 or null (no chunking), got {self.frame_chunk_size}")

    # -- derived quantities ---------------------------------------------------------------------
    def num_video_tokens(self, num_frames: int) -> int:
        """LLM placeholder count for a video of `num_frames` frames: Nv * ceil(T / stride)."""
        nv = self.video_qformer.num_query_tokens
        if self.stride > 0:
            return nv * math.ceil(num_frames / self.stride)
        return nv

    def timestamp_tokenizer(self, training: bool) -> str:
        """Which tokenizer ('llama' or 'bert') feeds the frame Q-Former's timestamp text."""
        if self.mode == "compat":
            return "llama" if training else "bert"
        return self.fixed_timestamp_tokenizer

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _from_dict(cls: type, values: dict[str, Any], where: str) -> Any:
    """Build dataclass `cls` from a dict, rejecting unknown keys with a message naming them."""
    check_keys(values, (f.name for f in fields(cls)), where)
    return cls(**values)
