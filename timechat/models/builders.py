"""Model builders: the real TimeChat-7B, a tiny one, and loading in the original's order.

`build_timechat(cfg, files)` is the single entry point the trainer, the evaluator, the parity
tool and the benchmark use.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch

from timechat.models.checkpoint import LoadReport, load_original_file
from timechat.models.config import (
    LLMConfig,
    LoraConfig,
    QFormerConfig,
    TimeChatConfig,
    VideoQFormerConfig,
    VisionConfig,
)
from timechat.constants import DTYPES
from timechat.models.timechat import TimeChat
from timechat.validation import check_keys

logger = logging.getLogger(__name__)


@dataclass
class ModelFiles:
    """The original checkpoint files (spec §2). Relative paths are resolved against `root`.

    Any of them may be None (e.g. a model trained from scratch). Load order and precedence follow
    the original: vit -> qformer -> llama (HF dir) -> LoRA wrap -> ckpt -> ckpt_2.
    """

    vit: str | None = None
    """`eva_vit_g.pth` (bare EVA ViT state dict)."""
    qformer: str | None = None
    """`instruct_blip_vicuna7b_trimmed.pth` (query tokens, ln_vision, Q-Former)."""
    llama: str | None = None
    """HF LLaMA-2 directory (weights, config.json, tokenizer)."""
    bert_tokenizer: str | None = None
    """Local bert-base-uncased tokenizer directory (vocab.txt)."""
    ckpt: str | None = None
    """`VL_LLaMA_2_7B_Finetuned.pth` (training init) or `timechat_7b.pth` (fine-tuned)."""
    ckpt_2: str | None = None
    root: str | None = None
    """Checkpoint root the relative paths above are joined to (e.g. `${paths.ckpt_root}`)."""

    def resolve(self, name: str) -> str | None:
        value = getattr(self, name)
        if value in (None, ""):
            return None
        path = Path(os.path.expanduser(str(value)))
        if not path.is_absolute() and self.root:
            path = Path(self.root) / path
        return str(path)

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> "ModelFiles":
        values = dict(values or {})
        check_keys(values, (f.name for f in fields(cls)), "model.files")
        return cls(**values)


def timechat_7b(**overrides: Any) -> TimeChatConfig:
    """TimeChat-7B exactly as released (EVA ViT-g, 12-layer Q-Former, LLaMA-2-7B, LoRA r32)."""
    return TimeChatConfig(**overrides)


TINY_VOCAB_SIZE = 768
"""Pieces of `timechat/assets/tiny_tokenizer` (scripts/build_tiny_tokenizer.py); `<ImageHere>` is the next id."""


def timechat_tiny(**overrides: Any) -> TimeChatConfig:
    """A tiny TimeChat for tests and the CPU default: same structure, small widths.

    The tokenizer shipped in `timechat/assets/tiny_tokenizer` fixes the LLM vocabulary
    (`TINY_VOCAB_SIZE`). The Q-Former's word table has the same size: in the `compat` mode the
    training path feeds it the timestamps as LLaMA token ids (the original's behaviour);
    `tiny_bert` ids are all smaller.
    """
    values: dict[str, Any] = dict(
        vision=VisionConfig(image_size=56, patch_size=14, width=64, depth=2, num_heads=4, mlp_hidden=128),
        qformer=QFormerConfig(hidden_size=64, num_layers=2, num_heads=4, intermediate_size=128,
                              max_position_embeddings=64, vocab_size=TINY_VOCAB_SIZE, num_query_tokens=4, dropout=0.0,
                              attention_dropout=0.0,
                              # Trained from scratch: BERT's 0.02 makes the cross-attention contribution
                              # vanish after two post-LN Q-Formers (the video tokens start out identical).
                              initializer_range=0.15),
        video_qformer=VideoQFormerConfig(num_layers=2, num_query_tokens=4),
        llm=LLMConfig(hidden_size=128, num_layers=2, num_heads=4, num_kv_heads=4, intermediate_size=256,
                      vocab_size=TINY_VOCAB_SIZE, max_position_embeddings=1024),
        lora=LoraConfig(enabled=True, r=8, alpha=16, dropout=0.0),
        max_frame_pos=32,
        window_size=4,
        stride=4,
        image_token_id=TINY_VOCAB_SIZE,
    )
    values.update(overrides)
    return TimeChatConfig(**values)


MODEL_PRESETS = {"timechat_7b": timechat_7b, "timechat_tiny": timechat_tiny}


def _load_llm(cfg: TimeChatConfig, llama_dir: str | None):
    from transformers import LlamaForCausalLM

    if llama_dir is None:
        return None
    if not Path(llama_dir).is_dir():
        raise FileNotFoundError(f"LLaMA directory not found: {llama_dir} (model.files.llama)")
    llm = LlamaForCausalLM.from_pretrained(
        llama_dir, dtype=DTYPES[cfg.dtype], attn_implementation="sdpa", device_map=None
    )
    # The LLM dimensions come from its config.json; keep ours in step so derived sizes agree.
    c = llm.config
    cfg.llm.hidden_size, cfg.llm.num_layers, cfg.llm.vocab_size = c.hidden_size, c.num_hidden_layers, c.vocab_size
    return llm


def build_timechat(
    cfg: TimeChatConfig,
    files: ModelFiles | None = None,
    device: torch.device | str | None = None,
    allow_pickle: bool = True,
) -> tuple[TimeChat, list[LoadReport]]:
    """Build TimeChat and load the original files in the original's order.

    Args:
        cfg: architecture and behaviour.
        files: checkpoint files; None builds random weights (tests, training from scratch).
        device: where to put the model (None: CPU).
        allow_pickle: False reads every `.pth` with `weights_only` only (see `read_checkpoint`).
    Returns:
        (model, load reports in load order).
    Raises:
        CheckpointKeyError: a file lacks a required key (named with the file).
        FileNotFoundError: a configured file does not exist.
    """
    files = files or ModelFiles()
    reports: list[LoadReport] = []
    llm = _load_llm(cfg, files.resolve("llama"))
    model = TimeChat(cfg, llm=llm)
    if llm is not None:
        reports.append(LoadReport(files.resolve("llama") or "", "llama_hf_dir", notes=["HF from_pretrained"]))
    vit = files.resolve("vit")
    if vit:
        reports.append(load_original_file(model, vit, "eva_vit", required_groups=["vit"], allow_pickle=allow_pickle))
    qformer = files.resolve("qformer")
    if qformer:
        reports.append(load_original_file(model, qformer, "instructblip", required_groups=["ln_vision", "frame_qformer"],
                                          allow_pickle=allow_pickle))
    reports += load_ckpt_files(model, files, allow_pickle=allow_pickle)
    dtype = DTYPES[cfg.dtype]
    if dtype != torch.float32:
        model.cast_frozen(dtype)
    if device is not None:
        model.to(device)
    return model, reports


def load_ckpt_files(model: TimeChat, files: ModelFiles, allow_pickle: bool = True) -> list[LoadReport]:
    """Load `files.ckpt` then `files.ckpt_2` over the model (the last two steps of the original's order)."""
    reports = []
    ckpt = files.resolve("ckpt")
    if ckpt:
        # Both the Video-LLaMA init and a TimeChat checkpoint carry the whole video branch; the
        # Q-Former and LoRA are optional but must be complete when present.
        complete = ["frame_qformer", "lora"] if model.cfg.lora.enabled else ["frame_qformer"]
        reports.append(load_original_file(model, ckpt, "ckpt", required_groups=["video_branch", "llama_proj"],
                                          complete_groups=complete, allow_pickle=allow_pickle))
    ckpt_2 = files.resolve("ckpt_2")
    if ckpt_2:
        reports.append(load_original_file(model, ckpt_2, "ckpt_2",
                                          complete_groups=["frame_qformer", "video_branch", "llama_proj", "lora"],
                                          allow_pickle=allow_pickle))
    return reports


def count_parameters(model: torch.nn.Module) -> dict[str, int]:
    """Parameter counts: total, trainable, LoRA, and per top-level module."""
    counts = {"total": 0, "trainable": 0, "lora": 0}
    for name, p in model.named_parameters():
        n = p.numel()
        counts["total"] += n
        if p.requires_grad:
            counts["trainable"] += n
        if ".lora_" in name:
            counts["lora"] += n
        top = name.split(".")[0]
        counts[f"module:{top}"] = counts.get(f"module:{top}", 0) + n
    return counts
