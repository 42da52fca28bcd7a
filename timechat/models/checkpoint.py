"""Loading the original TimeChat checkpoint files, and exporting back to their layout.

The original loads, in this order (spec §2.1), each with `strict=False` and no key check:

1. `eva_vit_g.pth` - a bare EVA ViT state dict (no prefix);
2. `instruct_blip_vicuna7b_trimmed.pth` - `{"model": ...}`: `query_tokens`, `ln_vision.*`, `Qformer.bert.*`;
3. the LLaMA HF directory, then LoRA wrapping;
4. `ckpt` - `VL_LLaMA_2_7B_Finetuned.pth` (video branch + `llama_proj`, frame-position table
   with fewer rows, resized by nearest interpolation) or `timechat_7b.pth` (everything trainable,
   incl. peft-named LoRA matrices), overriding what came before;
5. `ckpt_2` - optional, same format.

Here every file goes through an explicit key map (original name -> module name), a shape check
and a required-key check. Each load returns a `LoadReport` (loaded / ignored / missing keys) and a
missing required key raises `CheckpointKeyError` naming the key and the file.
"""

from __future__ import annotations

import logging
import os
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import torch
import torch.nn.functional as F

logger = logging.getLogger(__name__)

# Keys present in the original files that TimeChat never uses (documented, not an error).
IGNORED_ORIGINAL_KEYS = (
    re.compile(r"^llm_proj\."),  # InstructBLIP's own 768->4096 projection
    re.compile(r"^Qformer\.cls\."),  # BERT MLM head, set to None by the original
    re.compile(r"(^|\.)position_ids$"),  # BERT position-id buffers (non-persistent here)
    re.compile(r"rotary_emb\.inv_freq$"),  # LLaMA RoPE buffers some Video-LLaMA files carry
)


class CheckpointKeyError(KeyError):
    """A checkpoint lacks a key the model needs (or has a wrong shape); the message names both."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


@dataclass
class LoadReport:
    """What one checkpoint file contributed to the model."""

    path: str
    kind: str
    loaded: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        text = f"{self.kind} <- {self.path}: loaded {len(self.loaded)} tensors"
        if self.ignored:
            text += f", ignored {len(self.ignored)} known-unused"
        if self.unexpected:
            text += f", {len(self.unexpected)} UNEXPECTED (not used): {self.unexpected[:5]}"
        for note in self.notes:
            text += f"; {note}"
        return text


# -- key maps -------------------------------------------------------------------------------------
def _qformer_key(rest: str) -> str:
    """LAVIS BERT naming -> transformers Q-Former naming (inside the encoder)."""
    rest = rest.replace(".attention.self.", ".attention.attention.")
    rest = rest.replace(".crossattention.self.", ".crossattention.attention.")
    return rest


def original_to_native(key: str) -> str | None:
    """Map a TimeChat-module key of the original code to this implementation's name (None: no match).

    The ViT keys are expected with the `visual_encoder.` prefix they have inside TimeChat; the
    bare `eva_vit_g.pth` file is prefixed before mapping. `attn.q_bias`/`attn.v_bias` map to the
    fused `qkv.bias` and are merged by `_merge_qkv_bias`.
    """
    if key in ("query_tokens", "video_query_tokens"):
        return key
    if key.startswith("ln_vision.") or key.startswith("llama_proj."):
        return key
    if key == "video_frame_position_embedding.weight":
        return "frame_position_embedding.weight"
    if key.startswith("Qformer.bert."):
        rest = key[len("Qformer.bert."):]
        if rest.startswith("embeddings.LayerNorm."):
            return "frame_qformer.embeddings.layernorm." + rest.split(".")[-1]
        return "frame_qformer." + _qformer_key(rest)
    if key.startswith("video_Qformer.bert."):
        rest = key[len("video_Qformer.bert."):]
        if rest.startswith("embeddings.LayerNorm."):
            return "video_qformer.layernorm." + rest.split(".")[-1]
        return "video_qformer." + _qformer_key(rest)
    if key.startswith("llama_model."):
        return key  # peft naming is identical: llama_model.base_model.model.model.layers.N...
    if key.startswith("visual_encoder."):
        return _vit_key(key[len("visual_encoder."):])
    return None


def _vit_key(rest: str) -> str | None:
    prefix = "visual_encoder.model."
    simple = {
        "cls_token": "embeddings.class_embedding",
        "pos_embed": "embeddings.position_embedding",
        "patch_embed.proj.weight": "embeddings.patch_embedding.weight",
        "patch_embed.proj.bias": "embeddings.patch_embedding.bias",
    }
    if rest in simple:
        return prefix + simple[rest]
    m = re.match(r"^blocks\.(\d+)\.(.+)$", rest)
    if not m:
        return None
    i, sub = m.groups()
    block = {
        "norm1.weight": "layer_norm1.weight", "norm1.bias": "layer_norm1.bias",
        "norm2.weight": "layer_norm2.weight", "norm2.bias": "layer_norm2.bias",
        "attn.qkv.weight": "self_attn.qkv.weight",
        "attn.q_bias": "self_attn.qkv.bias", "attn.v_bias": "self_attn.qkv.bias",
        "attn.proj.weight": "self_attn.projection.weight", "attn.proj.bias": "self_attn.projection.bias",
        "mlp.fc1.weight": "mlp.fc1.weight", "mlp.fc1.bias": "mlp.fc1.bias",
        "mlp.fc2.weight": "mlp.fc2.weight", "mlp.fc2.bias": "mlp.fc2.bias",
    }
    if sub not in block:
        return None
    return f"{prefix}encoder.layers.{i}.{block[sub]}"


def native_to_original(key: str) -> str | None:
    """Inverse of `original_to_native` for the trainable modules (used by the exporter)."""
    if key in ("query_tokens", "video_query_tokens") or key.startswith(("ln_vision.", "llama_proj.", "llama_model.")):
        return key
    if key == "frame_position_embedding.weight":
        return "video_frame_position_embedding.weight"
    for native, orig in (("frame_qformer.", "Qformer.bert."), ("video_qformer.", "video_Qformer.bert.")):
        if key.startswith(native):
            rest = key[len(native):]
            if rest.startswith("embeddings.layernorm.") or (native == "video_qformer." and rest.startswith("layernorm.")):
                return orig + "embeddings.LayerNorm." + rest.split(".")[-1]
            rest = rest.replace(".attention.attention.", ".attention.self.")
            rest = rest.replace(".crossattention.attention.", ".crossattention.self.")
            return orig + rest
    return None


# -- file reading ---------------------------------------------------------------------------------
def read_checkpoint(path: str | os.PathLike, allow_pickle: bool = True) -> dict[str, torch.Tensor]:
    """Read a `.pth` file and unwrap `{"model": ...}`. Raises FileNotFoundError naming the path.

    Args:
        allow_pickle: fall back to a full unpickling load for files that also pickle other objects
            (the original's training checkpoints). False (the converter): `weights_only` only, and any
            failure is a `ValueError` naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    if not allow_pickle:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises UnpicklingError, RuntimeError, EOFError, ... here
            raise ValueError(f"{path}: torch.load(weights_only=True) failed ({type(exc).__name__}: {exc}); "
                             "the file holds more than tensors or is damaged") from exc
        return _unwrap_state_dict(obj, path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        # Training checkpoints of the original also pickle an OmegaConf config object.
        logger.warning("%s holds non-tensor objects; loading it with weights_only=False (trusted file)", path)
        obj = torch.load(path, map_location="cpu", weights_only=False)
    return _unwrap_state_dict(obj, path)


def _unwrap_state_dict(obj: object, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(obj, dict) and "model" in obj and isinstance(obj["model"], dict):
        obj = obj["model"]
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a state dict or {{'model': state_dict}}, got {type(obj).__name__}")
    return obj


def _is_ignored(key: str) -> bool:
    return any(p.search(key) for p in IGNORED_ORIGINAL_KEYS)


def _merge_qkv_bias(src: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """EVA keeps q_bias and v_bias; the fused layout wants cat(q_bias, 0, v_bias)."""
    out: dict[str, torch.Tensor] = {}
    for key, value in src.items():
        m = re.match(rf"^{re.escape(prefix)}blocks\.(\d+)\.attn\.q_bias$", key)
        if m:
            v_key = key.replace("q_bias", "v_bias")
            if v_key not in src:
                raise CheckpointKeyError(f"{v_key} missing (needed with {key})")
            q, v = value, src[v_key]
            out[key] = torch.cat([q, torch.zeros_like(q), v])
        elif re.match(rf"^{re.escape(prefix)}blocks\.\d+\.attn\.v_bias$", key):
            continue
        else:
            out[key] = value
    return out


def _resize_pos_embed(pos: torch.Tensor, num_tokens: int) -> torch.Tensor:
    """Bicubic resize of a (1, 1 + g*g, D) ViT position table (the original's `interpolate_pos_embed`)."""
    if pos.shape[1] == num_tokens:
        return pos
    cls, grid = pos[:, :1], pos[:, 1:]
    old = int(round(grid.shape[1] ** 0.5))
    new = int(round((num_tokens - 1) ** 0.5))
    grid = grid.reshape(1, old, old, -1).permute(0, 3, 1, 2).float()
    grid = F.interpolate(grid, size=(new, new), mode="bicubic", align_corners=False)
    grid = grid.permute(0, 2, 3, 1).reshape(1, new * new, -1).to(pos.dtype)
    return torch.cat([cls, grid], dim=1)


def resize_frame_positions(weight: torch.Tensor, rows: int, mode: str = "nearest") -> torch.Tensor:
    """Resize the frame-position table (R, D) along the frame axis to (rows, D).

    ``nearest``: the original's ``interpolate_frame_pos_embed`` (32 -> 96 repeats each row 3 times;
    row i takes source row ``floor(i * R / rows)``). ``linear``: ``align_corners=True``, so the first
    and last rows are kept and the others are blends of their two neighbours. Differentiable.
    """
    if weight.shape[0] == rows:
        return weight
    if mode not in ("nearest", "linear"):
        raise ValueError(f"frame-position resize mode must be 'nearest' or 'linear', got {mode!r}")
    kwargs = {"align_corners": True} if mode == "linear" else {}
    resized = F.interpolate(weight.T.unsqueeze(0).float(), size=rows, mode=mode, **kwargs)  # (1, D, rows)
    return resized.squeeze(0).T.contiguous().to(weight.dtype)


# -- loading into the model -----------------------------------------------------------------------
GROUPS: dict[str, Callable[[str], bool]] = {
    "vit": lambda k: k.startswith("visual_encoder."),
    "ln_vision": lambda k: k.startswith("ln_vision."),
    "frame_qformer": lambda k: k.startswith("frame_qformer.") or k == "query_tokens",
    "video_branch": lambda k: k.startswith("video_qformer.") or k in ("video_query_tokens", "frame_position_embedding.weight"),
    "llama_proj": lambda k: k.startswith("llama_proj."),
    "lora": lambda k: k.startswith("llama_model.") and ".lora_" in k,
}


def _group_keys(model_keys: Iterable[str], group: str) -> list[str]:
    return [k for k in model_keys if GROUPS[group](k)]


def load_original_file(
    model: torch.nn.Module,
    path: str | os.PathLike,
    kind: str,
    required_groups: Iterable[str] = (),
    complete_groups: Iterable[str] = (),
    allow_pickle: bool = True,
) -> LoadReport:
    """Load one original checkpoint file into `model` (a `TimeChat`).

    Args:
        path: the `.pth` file.
        kind: 'eva_vit' for the bare ViT file, anything else for TimeChat-level keys.
        required_groups: groups (see `GROUPS`) every key of which must come from this file.
        complete_groups: groups that may be absent, but if any key of one is present, all must be.
        allow_pickle: see `read_checkpoint`.
    Returns:
        the `LoadReport`.
    Raises:
        CheckpointKeyError: a required key is missing or a shape differs; names the key and file.
    """
    raw = read_checkpoint(path, allow_pickle=allow_pickle)
    if kind == "eva_vit":
        raw = {f"visual_encoder.{k}": v for k, v in raw.items()}
    raw = _merge_qkv_bias(raw, "visual_encoder.")
    report = LoadReport(str(path), kind)
    model_state = model.state_dict()
    mapped: dict[str, torch.Tensor] = {}
    for key, value in raw.items():
        native = original_to_native(key)
        if native is None or native not in model_state:
            if _is_ignored(key) or key.startswith("visual_encoder."):
                # visual_encoder.*: EVA-CLIP-g's 40th block / final norm / head, which TimeChat drops.
                report.ignored.append(key)
            else:
                report.unexpected.append(key)
            continue
        target = model_state[native]
        if native == "frame_position_embedding.weight" and value.shape[0] != target.shape[0]:
            report.notes.append(f"frame positions resized {value.shape[0]} -> {target.shape[0]} rows (nearest)")
            value = resize_frame_positions(value, target.shape[0])
        if native.endswith("embeddings.position_embedding") and value.shape != target.shape:
            report.notes.append(f"ViT positions resized {tuple(value.shape)} -> {tuple(target.shape)} (bicubic)")
            value = _resize_pos_embed(value, target.shape[1])
        if tuple(value.shape) != tuple(target.shape):
            raise CheckpointKeyError(
                f"{path}: key {key!r} has shape {tuple(value.shape)}, the model expects {tuple(target.shape)} "
                f"for {native!r}"
            )
        mapped[native] = value.to(target.dtype)
    for group in required_groups:
        missing = [k for k in _group_keys(model_state, group) if k not in mapped]
        if missing:
            orig = native_to_original(missing[0]) or missing[0]
            raise CheckpointKeyError(
                f"{path}: missing required key {orig!r} ({len(missing)} keys of group '{group}' missing, "
                f"e.g. {missing[:3]})"
            )
    for group in complete_groups:
        keys = _group_keys(model_state, group)
        present = [k for k in keys if k in mapped]
        if present and len(present) != len(keys):
            missing = [k for k in keys if k not in mapped]
            orig = native_to_original(missing[0]) or missing[0]
            raise CheckpointKeyError(
                f"{path}: holds part of group '{group}' but lacks {orig!r} ({len(missing)} of {len(keys)} missing)"
            )
    with torch.no_grad():
        for native, value in mapped.items():
            param_or_buf = _get_tensor(model, native)
            param_or_buf.copy_(value)
    report.loaded = sorted(mapped)
    if report.unexpected:
        logger.warning("%s: %d unexpected keys not used: %s", path, len(report.unexpected), report.unexpected[:10])
    logger.info(report.summary())
    return report


def _get_tensor(model: torch.nn.Module, name: str) -> torch.Tensor:
    module_name, _, attr = name.rpartition(".")
    module = model.get_submodule(module_name) if module_name else model
    return getattr(module, attr)


def export_original_state_dict(model: torch.nn.Module, trainable_only: bool = True) -> dict[str, torch.Tensor]:
    """The model's weights under the original names (the `timechat_7b.pth` layout).

    Like the original runner, only parameters with `requires_grad` are kept when `trainable_only`;
    the BERT `position_ids` buffers the original also saved are added so its loader sees the
    exact key set it writes itself.
    """
    out: dict[str, torch.Tensor] = {}
    for name, p in model.named_parameters():
        if trainable_only and not p.requires_grad:
            continue
        orig = native_to_original(name)
        if orig is None:
            continue
        out[orig] = p.detach().cpu().clone()
    cfg = getattr(model, "cfg", None)
    if cfg is not None:
        pos_ids = torch.arange(cfg.qformer.max_position_embeddings).unsqueeze(0)
        if any(k.startswith("Qformer.") for k in out):
            out["Qformer.bert.embeddings.position_ids"] = pos_ids.clone()
        if any(k.startswith("video_Qformer.") for k in out):
            out["video_Qformer.bert.embeddings.position_ids"] = pos_ids.clone()
    return out
