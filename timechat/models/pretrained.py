"""One-directory checkpoints in the Hugging Face layout: `save_pretrained` / `from_pretrained`.

The original needs five things from four places (spec §2): `eva_vit_g.pth`,
`instruct_blip_vicuna7b_trimmed.pth`, a LLaMA-2 HF folder, `timechat_7b.pth` and a BERT tokenizer,
all read through pickle. A pretrained directory holds all of it, as safetensors::

    config.json                       format_version, the whole TimeChatConfig (mode included),
                                      how LoRA is stored, provenance
    llm_config.json                   the LLaMA's own transformers config
    model.safetensors                 every weight: ViT, ln_vision, frame Q-Former + query tokens,
      (or model-0000i-of-0000n.safetensors + model.safetensors.index.json past max_shard_size)
                                      frame-position table, video Q-Former + query tokens,
                                      llama_proj, the LLaMA base weights (`llama_model.<HF name>`)
    adapter/                          LoRA as a standard PEFT adapter (adapter_config.json +
                                      adapter_model.safetensors); absent when LoRA is merged
    tokenizer.model, tokenizer_config.json, special_tokens_map.json     the LLaMA tokenizer
    bert_tokenizer/vocab.txt, ...     the BERT timestamp tokenizer
    generation_config.json            the deterministic decoding defaults
    README.md                         the model card

Loading builds the model with its parameters on the meta device and assigns the tensors read from
the safetensors (read with plain `readinto`, no mmap), so a load holds one copy of the weights.
Missing, unexpected or mis-shaped keys raise `PretrainedKeyError` naming the key and the file.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import re
import shutil
import struct
import sys
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any, Iterator, Mapping

import torch
from torch import nn

from timechat.constants import BOS_TOKEN_ID, DTYPES
from timechat.models.checkpoint import CheckpointKeyError
from timechat.models.config import TimeChatConfig
from timechat.models.timechat import TimeChat

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
LLM_CONFIG_FILE = "llm_config.json"
WEIGHTS_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
ADAPTER_DIR = "adapter"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
BERT_DIR = "bert_tokenizer"
GENERATION_CONFIG_FILE = "generation_config.json"
LLAMA_TOKENIZER_FILES = ("tokenizer.model", "tokenizer_config.json", "special_tokens_map.json")
BERT_TOKENIZER_FILES = ("vocab.txt", "tokenizer_config.json", "special_tokens_map.json")
LLM_PREFIX = "llama_model."
DEFAULT_MAX_SHARD_SIZE = "5GB"


class PretrainedKeyError(CheckpointKeyError):
    """A pretrained directory lacks a weight, holds an unknown one, or a shape differs."""


# -- key names ------------------------------------------------------------------------------------
_PEFT_PREFIX = LLM_PREFIX + "base_model.model."


def stored_name(native: str) -> tuple[str, str]:
    """Where a model state-dict key is stored: ('model', name) or ('adapter', peft's saved name).

    The LLaMA base weights are stored under their plain transformers names (`llama_model.model.
    layers.0.self_attn.q_proj.weight`), whether or not peft wraps the LLM; LoRA matrices go to the
    adapter under the names peft itself saves (`base_model.model.model.layers.0...lora_A.weight`).
    """
    if native.startswith(_PEFT_PREFIX):
        rest = native[len(_PEFT_PREFIX):]
        if ".lora_" in rest:
            return "adapter", "base_model.model." + rest.replace(".default.", ".")
        return "model", LLM_PREFIX + rest.replace(".base_layer.", ".")
    return "model", native


# -- safetensors I/O ------------------------------------------------------------------------------
_ST_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool,
}


def read_safetensors_header(path: str | os.PathLike) -> tuple[dict[str, dict[str, Any]], int]:
    """The tensor table of a safetensors file and the offset its data starts at."""
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) != 8:
            raise ValueError(f"{path}: not a safetensors file (shorter than 8 bytes)")
        (n,) = struct.unpack("<Q", head)
        table = json.loads(f.read(n))
    table.pop("__metadata__", None)
    return table, 8 + n


def read_safetensors(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a safetensors file into freshly allocated CPU tensors, one copy, without mmap.

    `safetensors.torch.load_file` maps the file and copies out of it; the mapped pages count in
    the process's resident memory until unmapped, which doubles a 7B load's peak. Reading with
    `readinto` straight into each tensor's storage keeps the peak at one copy of the weights.
    """
    if sys.byteorder != "little":
        raise RuntimeError("safetensors data is little-endian; this reader needs a little-endian host")
    table, start = read_safetensors_header(path)
    out: dict[str, torch.Tensor] = {}
    with open(path, "rb", buffering=0) as f:
        for name, info in sorted(table.items(), key=lambda kv: kv[1]["data_offsets"][0]):
            if info["dtype"] not in _ST_DTYPES:
                raise ValueError(f"{path}: tensor {name!r} has unsupported dtype {info['dtype']}")
            tensor = torch.empty(info["shape"], dtype=_ST_DTYPES[info["dtype"]])
            begin, end = info["data_offsets"]
            nbytes = tensor.numel() * tensor.element_size()
            if end - begin != nbytes:
                raise ValueError(f"{path}: tensor {name!r} has {end - begin} bytes, shape {info['shape']} needs {nbytes}")
            if nbytes:
                view = memoryview(tensor.reshape(-1).view(torch.uint8).numpy())
                f.seek(start + begin)
                got = 0
                while got < nbytes:
                    n = f.readinto(view[got:])
                    if not n:
                        raise ValueError(f"{path}: truncated while reading {name!r}")
                    got += n
            out[name] = tensor
    return out


def parse_size(size: int | str) -> int:
    """Bytes of `5GB`, `500MB`, `2GiB`, `10KB` or an int (transformers' max_shard_size spelling)."""
    if isinstance(size, int):
        return size
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)?\s*", str(size), flags=re.IGNORECASE)
    if not m:
        raise ValueError(f"max_shard_size {size!r}: expected an int or e.g. '5GB', '500MB'")
    units = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
             "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}
    return int(float(m.group(1)) * units[(m.group(2) or "B").upper()])


def plan_shards(shapes: Mapping[str, tuple[int, torch.dtype]], max_shard_size: int | str) -> list[list[str]]:
    """Split keys, in order, into shards of at most `max_shard_size` bytes (a bigger tensor alone)."""
    limit = parse_size(max_shard_size)
    shards: list[list[str]] = [[]]
    size = 0
    for key, (numel, dtype) in shapes.items():
        nbytes = numel * dtype.itemsize
        if shards[-1] and size + nbytes > limit:
            shards.append([])
            size = 0
        shards[-1].append(key)
        size += nbytes
    return shards


def _save_safetensors(tensors: Mapping[str, torch.Tensor], path: Path) -> None:
    from safetensors.torch import save_file

    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(path), metadata={"format": "pt"})


def write_weights(state: Mapping[str, torch.Tensor], directory: Path, max_shard_size: int | str,
                  extra_metadata: Mapping[str, Any] | None = None) -> list[str]:
    """Write `state` as `model.safetensors`, or as shards with a transformers-style index.

    Tensors on the meta device write no data: only the index (with every key's shape in its
    metadata), e.g. to check a 7B conversion without the weights.

    Returns:
        the file names written.
    """
    meta = any(t.is_meta for t in state.values())
    shapes = {k: (v.numel(), v.dtype) for k, v in state.items()}
    shards = plan_shards(shapes, max_shard_size)
    total = sum(n * d.itemsize for n, d in shapes.values())
    if len(shards) == 1 and not meta:
        _save_safetensors(state, directory / WEIGHTS_FILE)
        return [WEIGHTS_FILE]
    names = [f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))]
    weight_map: dict[str, str] = {}
    for name, keys in zip(names, shards):
        if not meta:
            _save_safetensors({k: state[k] for k in keys}, directory / name)
        weight_map.update({k: name for k in keys})
    metadata: dict[str, Any] = {"total_size": total, "total_parameters": sum(n for n, _ in shapes.values()),
                                "format_version": FORMAT_VERSION}
    if meta:
        metadata["shapes"] = {k: list(v.shape) for k, v in state.items()}
        metadata["dtypes"] = {k: str(v.dtype).removeprefix("torch.") for k, v in state.items()}
        metadata["meta_only"] = True
    metadata.update(extra_metadata or {})
    (directory / INDEX_FILE).write_text(json.dumps({"metadata": metadata, "weight_map": weight_map}, indent=2))
    return ([] if meta else names) + [INDEX_FILE]


def read_weights(directory: Path) -> Iterator[tuple[str, dict[str, torch.Tensor]]]:
    """Yield (file name, tensors) per weight file of a directory (single file or index + shards)."""
    index = directory / INDEX_FILE
    if index.is_file():
        data = json.loads(index.read_text())
        if data.get("metadata", {}).get("meta_only"):
            raise ValueError(f"{index} was written from a meta-device model: it lists shapes, no weights")
        weight_map: dict[str, str] = data["weight_map"]
        for name in sorted(set(weight_map.values())):
            path = directory / name
            if not path.is_file():
                raise FileNotFoundError(f"{path} is listed in {index} but does not exist")
            tensors = read_safetensors(path)
            listed = {k for k, v in weight_map.items() if v == name}
            if set(tensors) != listed:
                extra = sorted(set(tensors) - listed) or sorted(listed - set(tensors))
                raise PretrainedKeyError(f"{path}: its keys differ from {index}'s weight_map, e.g. {extra[:3]}")
            yield name, tensors
        return
    single = directory / WEIGHTS_FILE
    if not single.is_file():
        raise FileNotFoundError(f"{directory} has neither {WEIGHTS_FILE} nor {INDEX_FILE}")
    yield WEIGHTS_FILE, read_safetensors(single)


# -- meta-device construction ---------------------------------------------------------------------
@contextmanager
def parameters_on_meta() -> Iterator[None]:
    """Inside the block, every new `nn.Parameter` lives on the meta device; buffers stay real.

    Buffers (RoPE frequencies, BERT position ids) are computed at construction and not stored in
    the checkpoint, so they must be real; parameters are assigned from the file afterwards.
    """
    original = nn.Module.register_parameter

    def register(module: nn.Module, name: str, param: nn.Parameter | None) -> None:
        original(module, name, param)
        if param is not None and not param.is_meta:
            p = module._parameters[name]
            module._parameters[name] = type(p)(p.to("meta"), requires_grad=p.requires_grad)

    nn.Module.register_parameter = register  # type: ignore[method-assign]
    try:
        yield
    finally:
        nn.Module.register_parameter = original  # type: ignore[method-assign]


def _llm_from_config(llm_config: dict[str, Any]):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig.from_dict(llm_config)
    config._attn_implementation = "sdpa"
    return LlamaForCausalLM(config)


# -- saving ---------------------------------------------------------------------------------------
def _merged_llm_state(model: TimeChat) -> dict[str, torch.Tensor]:
    """The LLaMA base weights with W + scaling * B @ A folded in (peft's own delta), model untouched."""
    from peft.tuners.lora import LoraLayer

    state = {}
    deltas = {}
    for name, module in model.base_llm.named_modules():
        if isinstance(module, LoraLayer) and "default" in module.lora_A:
            deltas[f"{name}.base_layer.weight"] = module.get_delta_weight("default")
    for key, value in model.base_llm.state_dict().items():
        if ".lora_" in key:
            continue
        if key in deltas:
            value = (value.float() + deltas[key].float()).to(value.dtype)
        state[key.replace(".base_layer.", ".")] = value
    return state


def split_state(model: TimeChat, merge_lora: bool = False) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(model-file tensors, adapter tensors) under their stored names."""
    weights: dict[str, torch.Tensor] = {}
    adapter: dict[str, torch.Tensor] = {}
    for key, value in model.state_dict().items():
        if key.startswith(LLM_PREFIX) and merge_lora:
            continue
        where, name = stored_name(key)
        (adapter if where == "adapter" else weights)[name] = value
    if merge_lora:
        weights.update({LLM_PREFIX + k: v for k, v in _merged_llm_state(model).items()})
    if _tied(model.base_llm):
        # One tensor, stored once (as transformers does); `from_pretrained` ties it again.
        weights.pop(LLM_PREFIX + "lm_head.weight", None)
    return weights, adapter


def _tied(llm: nn.Module) -> bool:
    out, inp = llm.get_output_embeddings(), llm.get_input_embeddings()
    return out is not None and out.weight is inp.weight


def _adapter_config(model: TimeChat):
    peft_cfg = copy.deepcopy(model.llama_model.peft_config["default"])
    # `set_lora_alpha` changes the scaling in place; the saved adapter carries the alpha in use.
    peft_cfg.lora_alpha = model.cfg.lora.alpha
    peft_cfg.inference_mode = True
    peft_cfg.base_model_name_or_path = None
    return peft_cfg


def _copy_files(src: str | os.PathLike | None, dst: Path, names: tuple[str, ...], what: str, required: str) -> list[str]:
    if src is None:
        return []
    src = Path(src)
    if not (src / required).is_file():
        raise FileNotFoundError(f"{what} directory {src} has no {required}")
    dst.mkdir(parents=True, exist_ok=True)
    copied = []
    for name in names:
        if (src / name).is_file():
            shutil.copyfile(src / name, dst / name)
            copied.append(name)
    return copied


def generation_defaults() -> dict[str, Any]:
    """`generation_config.json`: the deterministic (greedy) defaults of `GenerationConfig`."""
    from timechat.models.generation import GenerationConfig

    values = asdict(GenerationConfig())
    values["bos_token_id"] = BOS_TOKEN_ID
    return values


def model_card(cfg: TimeChatConfig, provenance: Mapping[str, Any], lora: str, files: list[str]) -> str:
    """The README.md written into the directory."""
    source = provenance.get("source", "unknown")
    lines = [
        "---",
        "library_name: timechat",
        "tags: [video-llm, timechat, video-grounding, dense-video-captioning]",
        "---",
        "# TimeChat checkpoint",
        "",
        "TimeChat (Ren et al., CVPR 2024): a time-sensitive video LLM. EVA ViT-g + timestamp-aware frame "
        "Q-Former + sliding-window video Q-Former + LLaMA-2 with LoRA, in one directory for "
        "`TimeChat.from_pretrained` of this project.",
        "",
        f"* mode: `{cfg.mode}` ({'reproduces the released checkpoint' if cfg.mode == 'compat' else 'query rows only, one timestamp tokenizer'})",
        f"* LLM: {cfg.llm.num_layers} layers, hidden {cfg.llm.hidden_size}; frozen-tower dtype `{cfg.dtype}`",
        f"* LoRA: {lora}",
        f"* frames: at most {cfg.max_frame_pos}; windows of {cfg.window_size} every {cfg.stride}",
        f"* format version {FORMAT_VERSION}; weight files: {', '.join(files)}",
        "",
        "## Provenance",
        "",
        f"Converted from / trained as: {source}",
    ]
    for key, value in provenance.items():
        if key != "source":
            lines.append(f"* {key}: `{value}`")
    lines += [
        "",
        "## Use",
        "",
        "```python",
        "from timechat.models.timechat import TimeChat",
        "model = TimeChat.from_pretrained('THIS_DIR')",
        "```",
        "",
        "Evaluate (any task config), with the directory in place of the original files:",
        "",
        "```bash",
        "python evaluate.py --cfg-path eval_configs/timechat_tvg_charades.yaml model.pretrained=THIS_DIR",
        "```",
        "",
        "Back to the original `timechat_7b.pth` layout: "
        "`python scripts/convert_checkpoint.py to-original THIS_DIR OUT.pth`.",
    ]
    return "\n".join(lines) + "\n"


def save_pretrained(
    model: TimeChat,
    directory: str | os.PathLike,
    *,
    merge_lora: bool = False,
    max_shard_size: int | str = DEFAULT_MAX_SHARD_SIZE,
    llama_tokenizer: str | os.PathLike | None = None,
    bert_tokenizer: str | os.PathLike | None = None,
    provenance: Mapping[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write `model` as one directory (layout in the module docstring).

    Args:
        model: the model; left unchanged (merging works on copies).
        directory: the output folder; it must not exist or be empty, unless `overwrite`.
        merge_lora: fold LoRA into the LLaMA weights (the config then says LoRA disabled) instead of
            writing the `adapter/` folder.
        max_shard_size: bytes (or '5GB') per weight file; more weights give shards plus an index.
        llama_tokenizer / bert_tokenizer: tokenizer folders whose files are copied in.
        provenance: what the weights are (source files, training run); goes to config.json and the card.
        overwrite: replace an existing directory.
    Returns:
        the directory. Writing goes to a sibling temporary folder renamed at the end, so an
        interrupted save leaves no half-written directory under the final name.
    """
    directory = Path(directory)
    if directory.exists() and any(directory.iterdir()) and not overwrite:
        raise FileExistsError(f"{directory} exists and is not empty (pass overwrite=True to replace it)")
    lora_on = model.cfg.lora.enabled
    merge = merge_lora and lora_on
    tmp = directory.parent / f".{directory.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        _write_directory(model, tmp, merge, max_shard_size, llama_tokenizer, bert_tokenizer, provenance)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # no half-written folder is left behind
        raise
    if directory.exists():
        shutil.rmtree(directory)
    os.replace(tmp, directory)
    logger.info("saved TimeChat to %s", directory)
    return directory


def _write_directory(model: TimeChat, tmp: Path, merge: bool, max_shard_size: int | str,
                     llama_tokenizer: str | os.PathLike | None, bert_tokenizer: str | os.PathLike | None,
                     provenance: Mapping[str, Any] | None) -> None:
    """The files of `save_pretrained`, written into `tmp`."""
    lora_on = model.cfg.lora.enabled
    weights, adapter = split_state(model, merge_lora=merge)
    cfg = copy.deepcopy(model.cfg)
    lora_text = "none"
    if merge:
        cfg.lora.enabled = False
        lora_text = f"merged into the LLaMA weights (r={cfg.lora.r}, alpha={cfg.lora.alpha})"
    elif lora_on:
        lora_text = f"PEFT adapter in `{ADAPTER_DIR}/` (r={cfg.lora.r}, alpha={cfg.lora.alpha})"
    meta = any(t.is_meta for t in weights.values())
    extra = {"adapter_shapes": {k: list(v.shape) for k, v in adapter.items()}} if meta and adapter else None
    written = write_weights(weights, tmp, max_shard_size, extra_metadata=extra)
    if adapter:
        adapter_dir = tmp / ADAPTER_DIR
        adapter_dir.mkdir()
        _adapter_config(model).save_pretrained(str(adapter_dir))
        if not any(t.is_meta for t in adapter.values()):
            _save_safetensors(adapter, adapter_dir / ADAPTER_WEIGHTS)
    provenance = dict(provenance or {})
    tokenizers = {
        "llama": "." if _copy_files(llama_tokenizer, tmp, LLAMA_TOKENIZER_FILES, "LLaMA tokenizer", "tokenizer.model") else None,
        "bert": BERT_DIR if _copy_files(bert_tokenizer, tmp / BERT_DIR, BERT_TOKENIZER_FILES, "BERT tokenizer", "vocab.txt") else None,
    }
    config = {
        "format_version": FORMAT_VERSION,
        "model_type": "timechat",
        "architectures": ["TimeChat"],
        "config": cfg.to_dict(),
        "lora": {"storage": "merged" if merge else ("adapter" if lora_on else "none"),
                 "adapter_dir": ADAPTER_DIR if (lora_on and not merge) else None,
                 "r": model.cfg.lora.r, "alpha": model.cfg.lora.alpha},
        "tokenizers": tokenizers,
        "provenance": provenance,
    }
    (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2, default=str))
    (tmp / LLM_CONFIG_FILE).write_text(model.base_llm.config.to_json_string(use_diff=False))
    (tmp / GENERATION_CONFIG_FILE).write_text(json.dumps(generation_defaults(), indent=2))
    (tmp / "README.md").write_text(model_card(model.cfg, provenance, lora_text, written))


# -- loading --------------------------------------------------------------------------------------
def read_directory_config(directory: str | os.PathLike) -> dict[str, Any]:
    """config.json of a pretrained directory, format version checked."""
    path = Path(directory) / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: not a TimeChat pretrained directory")
    data = json.loads(path.read_text())
    if data.get("model_type") != "timechat" or "config" not in data:
        raise ValueError(f"{path}: not a TimeChat config (model_type {data.get('model_type')!r})")
    version = data.get("format_version")
    if version != FORMAT_VERSION:
        raise ValueError(f"{path}: format_version {version!r}; this code reads version {FORMAT_VERSION}")
    return data


def pretrained_config(directory: str | os.PathLike) -> TimeChatConfig:
    """The `TimeChatConfig` a directory was saved with."""
    return TimeChatConfig(**read_directory_config(directory)["config"])


def tokenizer_dirs(directory: str | os.PathLike) -> tuple[str | None, str | None]:
    """(LLaMA tokenizer folder, BERT tokenizer folder) inside a directory; None where not saved."""
    directory = Path(directory)
    entries = read_directory_config(directory).get("tokenizers", {})
    return tuple(str(directory / entries[k]) if entries.get(k) else None for k in ("llama", "bert"))  # type: ignore[return-value]


def _assign(model: nn.Module, state: dict[str, torch.Tensor], sources: dict[str, str],
            expected_in: dict[str, str]) -> None:
    """Check names and shapes against the model, then assign (no copy).

    `expected_in` names the file each kind of weight ('model', 'adapter') should have come from.
    """
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    if missing:
        where, name = stored_name(missing[0])
        raise PretrainedKeyError(
            f"{expected_in.get(where, where)}: missing weight {name!r} ({len(missing)} missing, "
            f"e.g. {[stored_name(k)[1] for k in missing[:3]]})"
        )
    unexpected = [k for k in state if k not in expected]
    if unexpected:
        raise PretrainedKeyError(f"{sources[unexpected[0]]}: unexpected weight {stored_name(unexpected[0])[1]!r} "
                                 f"({len(unexpected)} unexpected)")
    for key, value in state.items():
        if tuple(value.shape) != tuple(expected[key].shape):
            raise PretrainedKeyError(f"{sources[key]}: weight {stored_name(key)[1]!r} has shape {tuple(value.shape)}, "
                                     f"the model expects {tuple(expected[key].shape)}")
    model.load_state_dict(state, strict=True, assign=True)


def from_pretrained(
    directory: str | os.PathLike,
    cfg: TimeChatConfig | None = None,
    device: torch.device | str | None = None,
) -> TimeChat:
    """Build TimeChat from a directory written by `save_pretrained`.

    Args:
        directory: the folder.
        cfg: the configuration to use instead of the saved one (e.g. other freeze flags, mode or LoRA
            alpha); the architecture must match the weights, and LoRA must be stored as it says.
        device: where to put the model (None: CPU).
    Raises:
        PretrainedKeyError: a weight is missing, unexpected or of another shape (names key and file).
        FileNotFoundError: the directory, a weight file or the adapter is missing.
    """
    directory = Path(directory)
    saved = read_directory_config(directory)
    cfg = copy.deepcopy(cfg) if cfg is not None else TimeChatConfig(**saved["config"])
    adapter_name = saved.get("lora", {}).get("adapter_dir")
    if cfg.lora.enabled and not adapter_name:
        raise ValueError(f"{directory}: the config enables LoRA but the directory has no adapter "
                         f"(LoRA storage: {saved.get('lora', {}).get('storage')})")
    if adapter_name and not cfg.lora.enabled:
        raise ValueError(f"{directory} holds a LoRA adapter but the config disables LoRA")
    llm_config = json.loads((directory / LLM_CONFIG_FILE).read_text())
    with parameters_on_meta():
        model = TimeChat(cfg, llm=_llm_from_config(llm_config))

    # Stored name -> model key.
    to_native = {stored_name(k): k for k in model.state_dict()}
    state: dict[str, torch.Tensor] = {}
    sources: dict[str, str] = {}
    for file_name, tensors in read_weights(directory):
        path = str(directory / file_name)
        for name, tensor in tensors.items():
            native = to_native.get(("model", name))
            if native is None:
                raise PretrainedKeyError(f"{path}: unexpected weight {name!r} (no such parameter in this model)")
            state[native], sources[native] = tensor, path
    if adapter_name:
        adapter_path = directory / adapter_name / ADAPTER_WEIGHTS
        if not adapter_path.is_file():
            raise FileNotFoundError(f"{adapter_path} not found (LoRA adapter of {directory})")
        _check_adapter_config(directory / adapter_name / ADAPTER_CONFIG, cfg)
        for name, tensor in read_safetensors(adapter_path).items():
            native = to_native.get(("adapter", name))
            if native is None:
                raise PretrainedKeyError(f"{adapter_path}: unexpected weight {name!r}")
            state[native], sources[native] = tensor, str(adapter_path)
    model_file = directory / (INDEX_FILE if (directory / INDEX_FILE).is_file() else WEIGHTS_FILE)
    tied = bool(llm_config.get("tie_word_embeddings"))
    if tied:
        head, embed = stored_name_to_native(to_native, "lm_head.weight"), stored_name_to_native(to_native, "model.embed_tokens.weight")
        if head not in state and embed in state:
            state[head], sources[head] = state[embed], sources[embed]
    _assign(model, state, sources, {"model": str(model_file),
                                    "adapter": str(directory / (adapter_name or ADAPTER_DIR) / ADAPTER_WEIGHTS)})
    if tied:
        model.base_llm.tie_weights()  # one Parameter again, not two sharing storage
    model.cast_frozen(DTYPES[cfg.dtype])
    model.apply_freezing()
    if device is not None:
        model.to(device)
    return model


def stored_name_to_native(to_native: dict[tuple[str, str], str], llm_key: str) -> str:
    """Model key of the LLM weight `llm_key` (plain transformers name)."""
    return to_native[("model", LLM_PREFIX + llm_key)]


def _check_adapter_config(path: Path, cfg: TimeChatConfig) -> None:
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found")
    data = json.loads(path.read_text())
    if int(data.get("r", -1)) != cfg.lora.r or sorted(data.get("target_modules") or []) != sorted(cfg.lora.target_modules):
        raise ValueError(f"{path}: r={data.get('r')}, target_modules={data.get('target_modules')} disagree with "
                         f"the model config (r={cfg.lora.r}, target_modules={cfg.lora.target_modules})")
    if float(data.get("lora_alpha", cfg.lora.alpha)) != float(cfg.lora.alpha):
        logger.info("%s: lora_alpha %s, the config asks for %s (scaling follows the config)", path,
                    data.get("lora_alpha"), cfg.lora.alpha)


def load_base_llm(directory: str | os.PathLike):
    """The plain transformers LLaMA of a directory (base weights, LoRA merged if it was), e.g. for
    `peft.PeftModel.from_pretrained(load_base_llm(d), d / 'adapter')`."""
    directory = Path(directory)
    with parameters_on_meta():
        llm = _llm_from_config(json.loads((directory / LLM_CONFIG_FILE).read_text()))
    state = {}
    for _, tensors in read_weights(directory):
        state.update({k[len(LLM_PREFIX):]: v for k, v in tensors.items() if k.startswith(LLM_PREFIX)})
    if llm.config.tie_word_embeddings:
        state.setdefault("lm_head.weight", state["model.embed_tokens.weight"])
    llm.load_state_dict(state, strict=True, assign=True)
    if llm.config.tie_word_embeddings:
        llm.tie_weights()
    return llm.eval()


# -- conversions (scripts/convert_checkpoint.py) --------------------------------------------------
def convert_original(
    section: Mapping[str, Any],
    out: str | os.PathLike,
    *,
    meta: bool = False,
    **save_kwargs: Any,
) -> Path:
    """The original files of a config's `model` section (preset, `config`, `files`) -> one directory.

    Every `.pth` is read with `torch.load(weights_only=True)` only; a file that needs more fails
    with its name. With `meta`, the model is built on the meta device without reading any file and
    only config.json, the index (every key with its shape) and adapter_config.json are written:
    a check of the layout of a 7B conversion without its 14 GB of weights.
    """
    from timechat.factory import build_model_and_tokenizers, model_config_from, tokenizer_dirs
    from timechat.models.builders import ModelFiles, build_timechat

    section = dict(section)
    if section.get("pretrained"):
        raise ValueError("convert_original: the model section already names a pretrained directory")
    files = ModelFiles.from_dict(section.get("files"))
    provenance: dict[str, Any] = {"converted_with": "scripts/convert_checkpoint.py from-config"}
    if meta:
        with torch.device("meta"):
            model, _ = build_timechat(model_config_from(section))
        provenance["source"] = f"architecture only (meta device), preset {section.get('name', 'timechat_7b')}"
        save_kwargs.setdefault("max_shard_size", DEFAULT_MAX_SHARD_SIZE)
        return save_pretrained(model, out, provenance=provenance, **save_kwargs)
    model, _, reports = build_model_and_tokenizers(section, allow_pickle=False)
    llama_dir, bert_dir = tokenizer_dirs(section, files)
    provenance["source"] = "the original TimeChat checkpoint files"
    provenance.update({f"files.{name}": files.resolve(name) for name in ("vit", "qformer", "llama", "ckpt", "ckpt_2")
                       if files.resolve(name)})
    provenance["load_reports"] = [r.summary() for r in reports]
    return save_pretrained(model, out, llama_tokenizer=llama_dir, bert_tokenizer=bert_dir, provenance=provenance,
                           **save_kwargs)


def convert_step_folder(step_dir: str | os.PathLike, out: str | os.PathLike, **save_kwargs: Any) -> Path:
    """A training step folder (`output_dir/checkpoints/step_N`) -> one directory.

    The base model is built from the `model` section of the folder's saved config.yaml (its frozen
    base weights come from the files named there), then the folder's trainable weights are loaded.
    """
    from omegaconf import OmegaConf

    from timechat.checkpoint import TRAINABLE_FILE, load_trainable_weights
    from timechat.factory import build_model_and_tokenizers, tokenizer_dirs
    from timechat.models.builders import ModelFiles

    step_dir = Path(step_dir)
    cfg_file = step_dir / "config.yaml"
    if not cfg_file.is_file() or not (step_dir / TRAINABLE_FILE).is_file():
        raise FileNotFoundError(f"{step_dir} is not a training step folder (needs config.yaml and {TRAINABLE_FILE})")
    section = OmegaConf.to_container(OmegaConf.load(cfg_file), resolve=True).get("model")
    if not section:
        raise KeyError(f"{cfg_file} has no `model` section")
    model, _, reports = build_model_and_tokenizers(section, allow_pickle=False)
    names = load_trainable_weights(step_dir, model, match="subset")
    llama_dir, bert_dir = tokenizer_dirs(section, ModelFiles.from_dict(section.get("files")))
    provenance = {"source": f"training step folder {step_dir.resolve()}", "trainable_tensors": len(names),
                  "base": [r.summary() for r in reports], "converted_with": "scripts/convert_checkpoint.py from-step"}
    return save_pretrained(model, out, llama_tokenizer=llama_dir, bert_tokenizer=bert_dir, provenance=provenance,
                           **save_kwargs)


def export_original(directory: str | os.PathLike, out: str | os.PathLike) -> Path:
    """A directory -> the original `timechat_7b.pth` layout (`{"model": ...}`, the trained set).

    The trained set is what the original's train configs train: frame Q-Former + query tokens,
    video branch, `llama_proj` and LoRA. A directory with merged LoRA cannot go back (its LLaMA
    weights are no longer the base model's).
    """
    from timechat.models.checkpoint import export_original_state_dict

    saved = read_directory_config(directory)
    if saved.get("lora", {}).get("storage") == "merged":
        raise ValueError(f"{directory}: LoRA is merged into the LLaMA weights; the original layout needs the "
                         "separate LoRA matrices (convert again without --merge-lora)")
    cfg = TimeChatConfig(**saved["config"])
    cfg.freeze_qformer = cfg.freeze_video_qformer = cfg.freeze_llama_proj = False
    cfg.freeze_lora = False
    cfg.freeze_vit = cfg.freeze_llm = True
    model = from_pretrained(directory, cfg=cfg)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": export_original_state_dict(model)}, out)
    return out
