"""Build the model and its tokenizers from the `model` section of a config.

    model:
      name: timechat_7b            # preset in timechat.registry.MODELS
      config: {mode: compat, ...}  # TimeChatConfig overrides (nested dicts for sub-configs)
      files: {root: ${paths.ckpt_root}, vit: ..., qformer: ..., llama: ..., ckpt: ...}
      tokenizer: null              # LLaMA tokenizer dir; default: files.llama
      bert_tokenizer: null         # BERT tokenizer dir; default: files.bert_tokenizer
      pretrained: null             # a directory written by TimeChat.save_pretrained: replaces the
                                   # preset, files.vit/qformer/llama and the tokenizer defaults;
                                   # `config` still overrides its saved config, files.ckpt/ckpt_2
                                   # still load on top

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


def tokenizer_dirs(section: dict[str, Any], files: ModelFiles) -> tuple[str | None, str | None]:
    """(LLaMA, BERT) tokenizer folders of a `model` section: explicit keys, then the pretrained
    directory's copies, then `files.llama` / `files.bert_tokenizer`."""
    llama_dir, bert_dir = resolve_tokenizer_dir(section.get("tokenizer")), resolve_tokenizer_dir(section.get("bert_tokenizer"))
    if section.get("pretrained"):
        from timechat.models.pretrained import tokenizer_dirs as saved_tokenizer_dirs

        saved_llama, saved_bert = saved_tokenizer_dirs(pretrained_dir(section))
        llama_dir, bert_dir = llama_dir or saved_llama, bert_dir or saved_bert
    return llama_dir or files.resolve("llama"), bert_dir or files.resolve("bert_tokenizer")


def load_tokenizers(section: dict[str, Any], files: ModelFiles) -> Tokenizers:
    from timechat.data.tokenization import LlamaTokenizer, load_bert_tokenizer

    llama_dir, bert_dir = tokenizer_dirs(section, files)
    if not llama_dir:
        raise ValueError("no LLaMA tokenizer: set model.tokenizer or model.files.llama (or save one into model.pretrained)")
    llama = LlamaTokenizer.from_pretrained(llama_dir)
    bert = load_bert_tokenizer(bert_dir) if bert_dir else None
    return Tokenizers(llama, bert)


def pretrained_dir(section: dict[str, Any]) -> Path:
    """The `model.pretrained` directory (checked to exist)."""
    path = Path(str(section["pretrained"])).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"model.pretrained: directory not found: {path}")
    return path


PRETRAINED_EXCLUSIVE_FILES = ("vit", "qformer", "llama")
"""`model.files` entries a pretrained directory replaces (ckpt / ckpt_2 still load on top)."""


def _build_from_pretrained(section: dict[str, Any], files: ModelFiles, device: torch.device | str | None
                           ) -> tuple[TimeChat, list[LoadReport]]:
    from timechat.models.builders import load_ckpt_files
    from timechat.models.pretrained import from_pretrained, read_directory_config

    directory = pretrained_dir(section)
    clash = [k for k in PRETRAINED_EXCLUSIVE_FILES if files.resolve(k)]
    if clash:
        raise ValueError(f"model.pretrained is set ({directory}): model.files.{clash[0]} would load a second copy "
                         "of weights the directory holds; remove it (files.ckpt / files.ckpt_2 may stay)")
    saved = read_directory_config(directory)["config"]
    overrides = copy.deepcopy(dict(section.get("config") or {}))
    cfg = TimeChatConfig(**_merge_dataclass_dict(saved, overrides, "model.config"))
    model = from_pretrained(directory, cfg=cfg)
    reports = [LoadReport(str(directory), "pretrained_dir", loaded=sorted(model.state_dict()),
                          notes=["TimeChat.from_pretrained"])]
    reports += load_ckpt_files(model, files)
    if device is not None:
        model.to(device)
    return model, reports


def build_model_and_tokenizers(
    section: dict[str, Any], device: torch.device | str | None = None, allow_pickle: bool = True,
) -> tuple[TimeChat, Tokenizers, list[LoadReport]]:
    """Model (loaded as configured) and tokenizers from a resolved `model` section.

    With `pretrained` set, the model comes from that directory (`TimeChat.from_pretrained`), its
    saved config overridden by `config`; otherwise from the preset `name` and the original `files`.
    `allow_pickle=False` reads every original `.pth` with `weights_only` only.
    """
    files = ModelFiles.from_dict(section.get("files"))
    tokenizers = load_tokenizers(section, files)
    if section.get("pretrained"):
        model, reports = _build_from_pretrained(section, files, device)
        _check_image_token(tokenizers, model.cfg)
        return model, tokenizers, reports
    cfg = model_config_from(section)
    _check_image_token(tokenizers, cfg)
    model, reports = build_timechat(cfg, files, device=device, allow_pickle=allow_pickle)
    return model, tokenizers, reports


def _check_image_token(tokenizers: Tokenizers, cfg: TimeChatConfig) -> None:
    if tokenizers.llama.image_token_id != cfg.image_token_id:
        raise ValueError(
            f"tokenizer's <ImageHere> id is {tokenizers.llama.image_token_id} but model.config.image_token_id is "
            f"{cfg.image_token_id}; they must agree"
        )
