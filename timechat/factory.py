"""Build the model and its tokenizers from the `model` section of a config.

    model:
      name: timechat_7b            # preset in timechat.registry.MODELS
      config: {mode: compat, ...}  # TimeChatConfig overrides (nested dicts for sub-configs)
      files: {root: ${paths.ckpt_root}, vit: ..., qformer: ..., llama: ..., ckpt: ...}
      tokenizer: null              # LLaMA tokenizer dir; default: files.llama
      bert_tokenizer: null         # BERT tokenizer dir; default: files.bert_tokenizer

Shared by training, evaluation, the benchmark and the tests, so a config means the same model
everywhere.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from timechat import registry
from timechat.models.builders import ModelFiles, build_timechat
from timechat.models.checkpoint import LoadReport
from timechat.models.config import TimeChatConfig
from timechat.models.timechat import TimeChat
from timechat.validation import check_keys

ASSETS_DIR = Path(__file__).resolve().parent / "assets"


def resolve_tokenizer_dir(value: str | None) -> str | None:
    """`builtin:NAME` names a tokenizer shipped in `timechat/assets/NAME` (tiny_tokenizer, tiny_bert)."""
    if value and str(value).startswith("builtin:"):
        path = ASSETS_DIR / str(value)[len("builtin:"):]
        if not path.is_dir():
            raise FileNotFoundError(f"no built-in tokenizer {value!r} (looked in {path})")
        return str(path)
    return value


@dataclass
class Tokenizers:
    llama: Any
    """The prompt tokenizer (`timechat.data.tokenization.LlamaTokenizer`)."""
    bert: Any | None
    """The BERT timestamp tokenizer, when a directory is configured."""

    def timestamp(self, cfg: TimeChatConfig, training: bool) -> Any:
        """The tokenizer the frame Q-Former reads timestamps with on this path (compat/fixed rules)."""
        kind = cfg.timestamp_tokenizer(training)
        if kind == "llama":
            return self.llama
        if self.bert is None:
            raise ValueError(
                f"model.mode={cfg.mode} needs the BERT tokenizer on the {'training' if training else 'inference'} "
                "path: set model.bert_tokenizer (or model.files.bert_tokenizer)"
            )
        return self.bert


def model_config_from(section: dict[str, Any]) -> TimeChatConfig:
    """The `TimeChatConfig` of a `model` config section (preset + overrides)."""
    name = section.get("name", "timechat_7b")
    overrides = copy.deepcopy(dict(section.get("config") or {}))
    preset = registry.lookup("model", name)
    base = preset()
    merged = _merge_dataclass_dict(base.to_dict(), overrides, "model.config")
    return TimeChatConfig(**merged)


def _merge_dataclass_dict(base: dict[str, Any], over: dict[str, Any], where: str) -> dict[str, Any]:
    check_keys(over, base, where)
    out = dict(base)
    for key, value in over.items():
        if isinstance(base[key], dict) and isinstance(value, dict):
            out[key] = _merge_dataclass_dict(base[key], value, f"{where}.{key}")
        else:
            out[key] = value
    return out


def load_tokenizers(section: dict[str, Any], files: ModelFiles) -> Tokenizers:
    from timechat.data.tokenization import LlamaTokenizer, load_bert_tokenizer

    llama_dir = resolve_tokenizer_dir(section.get("tokenizer")) or files.resolve("llama")
    if not llama_dir:
        raise ValueError("no LLaMA tokenizer: set model.tokenizer or model.files.llama")
    llama = LlamaTokenizer.from_pretrained(llama_dir)
    bert_dir = resolve_tokenizer_dir(section.get("bert_tokenizer")) or files.resolve("bert_tokenizer")
    bert = load_bert_tokenizer(bert_dir) if bert_dir else None
    return Tokenizers(llama, bert)


def build_model_and_tokenizers(
    section: dict[str, Any], device: torch.device | str | None = None
) -> tuple[TimeChat, Tokenizers, list[LoadReport]]:
    """Model (loaded as configured) and tokenizers from a resolved `model` section."""
    cfg = model_config_from(section)
    files = ModelFiles.from_dict(section.get("files"))
    tokenizers = load_tokenizers(section, files)
    if tokenizers.llama.image_token_id != cfg.image_token_id:
        raise ValueError(
            f"tokenizer's <ImageHere> id is {tokenizers.llama.image_token_id} but model.config.image_token_id is "
            f"{cfg.image_token_id}; they must agree"
        )
    model, reports = build_timechat(cfg, files, device=device)
    return model, tokenizers, reports
