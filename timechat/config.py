"""Load, merge, validate and save configs (omegaconf).

A config file has these top-level groups:

* `paths`: the only roots: `data_root`, `ckpt_root` (and `output_root`); everything else is
  relative to them through `${paths.*}` interpolation. Environment variables
  `TIMECHAT_DATA_ROOT` / `TIMECHAT_CKPT_ROOT` set the defaults.
* `output_dir`: where a run writes (checkpoints, logs, resolved config, results).
* `model`: `name` (a preset in `timechat.registry.MODELS`), `config` (overrides of
  `TimeChatConfig` fields), `files` (`ModelFiles`: original checkpoint files), `tokenizer`
  (LLaMA tokenizer dir; default `files.llama`), `bert_tokenizer`, `pretrained` (a directory written
  by `TimeChat.save_pretrained`, used instead of the preset and the original files).
* `datasets`: name -> keyword arguments of a builder in `timechat.registry.DATASETS` (for the
  instruction datasets: `records`, `videos_root` and the `timechat.data.settings.DataSettings`
  fields such as `num_frames`; `ratio` is the dataset's share under `run.mixing: ratios`).
* `dataset_defaults`: keys shared by every dataset, merged under each `datasets.<name>` block (which
  overrides them); relative interpolations like `${.num_frames}` resolve inside each dataset.
  The block itself is not kept in the loaded config.
* `run`: `RunConfig` (training) / `eval`: `EvalConfig` (evaluation) - typed dataclasses.

Merge order: dataclass defaults, then the YAML, then command-line `key=value` overrides. Unknown
keys are errors that name the key. A dataset key in a former spelling (`n_frms`) is read as the
current one (`num_frames`) with a warning. The resolved config is saved next to the outputs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Optional

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

from timechat.data.settings import LEGACY_KEYS, DataSettings, FrameBudget, check_frame_budget, rename_legacy_keys
from timechat.io import atomic_write_text
from timechat.validation import ConfigValueError, UnknownKeyError, check_keys

TOP_LEVEL_KEYS = {"paths", "output_dir", "model", "datasets", "dataset_defaults", "run", "eval"}
MODEL_KEYS = {"name", "config", "files", "tokenizer", "bert_tokenizer", "pretrained"}


@dataclass
class PathsConfig:
    data_root: str = field(default_factory=lambda: os.environ.get("TIMECHAT_DATA_ROOT", "data"))
    """Root of every dataset path."""
    ckpt_root: str = field(default_factory=lambda: os.environ.get("TIMECHAT_CKPT_ROOT", "ckpt"))
    """Root of every checkpoint path."""
    output_root: str = field(default_factory=lambda: os.environ.get("TIMECHAT_OUTPUT_ROOT", "outputs"))
    """Root under which runs write (`output_dir` is usually `${paths.output_root}/<name>`)."""


@dataclass
class RunConfig:
    """Training loop settings (defaults: the original's `run` section of the main config)."""

    seed: int = 42
    """Base seed; rank r uses seed + r for data augmentation, as the original."""
    max_epoch: int = 3
    iters_per_epoch: int = 22000
    """Micro-iterations per "epoch" (the original's epochs are fixed iteration counts)."""
    max_steps: Optional[int] = None
    """Stop after this many optimizer steps (None: max_epoch * iters_per_epoch / accum_grad_iters)."""
    batch_size: int = 1
    """Per-process micro-batch size."""
    accum_grad_iters: int = 4
    normalize_loss_over_accumulation: bool = True
    """Divide the loss by accum_grad_iters (the original summed gradients instead)."""
    num_workers: int = 4
    lr_schedule: str = "linear_warmup_cosine_lr"
    init_lr: float = 3e-5
    min_lr: float = 1e-5
    warmup_lr: float = 1e-6
    warmup_steps: int = 13200
    """Warmup length in micro-iterations (the original steps its schedule per iteration)."""
    lr_decay_rate: Optional[float] = None
    """Only for `linear_warmup_step_lr`."""
    weight_decay: float = 0.05
    beta1: float = 0.9
    beta2: float = 0.999
    grad_clip: Optional[float] = 1.0
    """Max global grad norm (None: no clipping, as the original)."""
    precision: str = "bf16"
    """fp32 | bf16 | fp16: autocast dtype of the forward (fp16 uses a GradScaler)."""
    mixing: str = "uniform"
    """How to pick the dataset of each batch: uniform (original), proportional (to size), ratios."""
    save_every_steps: Optional[int] = None
    """Checkpoint every N optimizer steps (None: at the end of every epoch, as the original)."""
    keep_last: int = 3
    resume: Optional[str] = "auto"
    """auto: continue from the latest complete checkpoint in output_dir; null: start fresh; or a path."""
    log_every: int = 10
    tensorboard: bool = True
    wandb: bool = False
    wandb_project: str = "timechat"
    deepspeed: Optional[dict[str, Any]] = None
    """A DeepSpeed config dict (e.g. {zero_optimization: {stage: 2}}) to train with ZeRO; null: DDP."""
    max_failure_rate: float = 0.05
    """Abort if more than this fraction of samples fail to load (bad videos are counted, not hidden)."""
    export_original: bool = True
    """Also write the trainable weights in the original `timechat_7b.pth` layout at the end."""
    device: str = "auto"
    synthetic_data: Optional[dict[str, Any]] = None
    """Generate the built-in synthetic dataset before training if it is not there yet: `out_dir`
    (required) and fields of `timechat.data.synthetic.SyntheticConfig`; a no-op when the existing
    dataset was made with the same settings."""

    build_feature_cache: bool = False
    """Before training, compute the frozen-ViT features of every `datasets.<name>.feature_cache` that
    are not there yet (rank 0, resumable; see `timechat.data.feature_cache`). False: the caches must
    have been built with scripts/build_feature_cache.py."""

    def __post_init__(self) -> None:
        """Every value a run could not use is refused here, before anything is built (one line naming the key)."""
        if self.precision not in ("fp32", "bf16", "fp16"):
            raise ConfigValueError(f"run.precision must be fp32, bf16 or fp16, got {self.precision!r}")
        if self.mixing not in ("uniform", "proportional", "ratios"):
            raise ConfigValueError(f"run.mixing must be uniform, proportional or ratios, got {self.mixing!r}")
        _check_range(self, "run", at_least_1=("max_epoch", "iters_per_epoch", "batch_size", "accum_grad_iters",
                                              "keep_last", "log_every"),
                     optional_at_least_1=("max_steps", "save_every_steps"),
                     at_least_0=("num_workers", "warmup_steps", "min_lr", "warmup_lr", "weight_decay"),
                     positive=("init_lr",), optional_positive=("grad_clip", "lr_decay_rate"),
                     unit=("beta1", "beta2", "max_failure_rate"))
        if self.beta1 == 1 or self.beta2 == 1:
            raise ConfigValueError(f"run.beta1 and run.beta2 must be < 1, got {self.beta1} and {self.beta2}")
        if self.max_epoch * self.iters_per_epoch < self.accum_grad_iters:
            raise ConfigValueError(
                f"run.max_epoch * run.iters_per_epoch = {self.max_epoch * self.iters_per_epoch} iterations is less than "
                f"run.accum_grad_iters = {self.accum_grad_iters}: not one optimizer step would be taken")


@dataclass
class EvalConfig:
    """Evaluation settings (defaults: the original `evaluate.py` / `eval.sh` where deterministic)."""

    task: str = "tvg"
    """A name in `timechat.registry.TASKS` (dvc, tvg, vhd, mvbench, tempcompass, egoschema, videomme)."""
    dataset: str = "charades"
    """Dataset name put into the prompt template (`You are given a video from the {} dataset`)."""
    anno_path: str = ""
    """Annotation file (e.g. `test.caption_coco_format.json`)."""
    gt_file: str = ""
    """Ground truth for the metric (defaults to anno_path)."""
    videos_dir: str = ""
    split: str = "test"
    prompt: str = "tvg_description_zeroshot"
    """A prompt name of `timechat.eval.tasks.prompts.TASK_PROMPTS` or a path to a prompt file (first line is used)."""
    post_check_prompt: Optional[str] = None
    system: str = "evaluate"
    """System text: a name (`evaluate`, `llava_llama_2`, `benchmark`) or the text itself."""
    num_frames: int = DataSettings.num_frames
    """Frames sampled (uniformly) per video; ignored when `fps` is set."""
    fps: Optional[float] = DataSettings.fps
    """Sample this many frames per second of video instead of a fixed `num_frames`
    (`timechat.data.settings.FrameBudget`); null: fixed."""
    min_frames: int = DataSettings.min_frames
    """With `fps`: at least this many frames."""
    max_frames: Optional[int] = DataSettings.max_frames
    """With `fps`: at most this many frames (null: no cap)."""
    batch_size: int = 16
    num_workers: int = 4
    max_new_tokens: int = 512
    do_sample: bool = False
    """Greedy by default; the original sampled (top_p 0.8, temperature 1)."""
    top_p: float = 0.8
    temperature: float = 1.0
    seed: int = 42
    lora_alpha: Optional[float] = None
    """Override LoRA alpha at inference (the original used 20 for the QA benchmarks)."""
    asr: bool = False
    asr_dir: Optional[str] = None
    max_samples: Optional[int] = None
    precision: str = "bf16"
    device: str = "auto"
    model_from_checkpoint: bool = False
    """Build the model from the `model` section saved with the training checkpoint (its config.yaml),
    so evaluation always matches the architecture that was trained; the `model` section here is ignored."""
    checkpoint: Optional[str] = None
    """A training step folder or an original-layout `.pth` to evaluate (overrides model.files.ckpt)."""
    plots: bool = True
    extra: dict[str, Any] = field(default_factory=dict)
    """Task-specific options (e.g. MVBench task list, TempCompass task type)."""
    prompt_template: Optional[str] = None
    """A prompt template given as text; overrides `prompt`. TVG/VHD templates use `{query}` (and
    optionally `{dataset}`) or the original's positional `{}`/`{}` (dataset, query)."""
    train_dir: Optional[str] = None
    """The training run's output_dir; `checkpoint: latest` picks its newest complete step folder."""
    timestamp_tokenizer: Optional[str] = None
    """Force the frame-timestamp tokenizer (`llama` or `bert`); None: the model's inference path
    (BERT in compat mode, as the original evaluate.py; MVBench used LLaMA)."""
    max_context: int = 3000
    """Context cap of generation (prompts longer than max_context - max_new_tokens are cut from the left)."""
    resume: bool = True
    """Skip samples already answered in output_dir (rank files / results.json); False starts afresh."""
    log_every_s: float = 30.0
    """Minimum seconds between progress lines."""
    plot_samples: int = 8
    """Videos / queries drawn in the timeline and saliency plots."""
    max_examples: int = 5
    """Unparseable answers and decode failures quoted per task in the report."""

    @property
    def frame_budget(self) -> FrameBudget:
        """The frames to sample per video (`num_frames`, or `fps` within `min_frames`..`max_frames`)."""
        return FrameBudget(self.num_frames, self.fps, self.min_frames, self.max_frames)

    def __post_init__(self) -> None:
        _check_range(self, "eval", at_least_1=("batch_size", "num_frames", "max_new_tokens", "max_context"),
                     optional_at_least_1=("max_samples",), at_least_0=("num_workers", "log_every_s", "plot_samples",
                                                                      "max_examples"))
        check_frame_budget(self.num_frames, self.fps, self.min_frames, self.max_frames, "eval")
        if self.precision not in ("fp32", "bf16", "fp16"):
            raise ConfigValueError(f"eval.precision must be fp32, bf16 or fp16, got {self.precision!r}")
        if self.timestamp_tokenizer not in (None, "llama", "bert"):
            raise ConfigValueError(f"eval.timestamp_tokenizer must be null, 'llama' or 'bert', got {self.timestamp_tokenizer!r}")


def _check_range(obj: Any, section: str, *, at_least_1: tuple[str, ...] = (), optional_at_least_1: tuple[str, ...] = (),
                 at_least_0: tuple[str, ...] = (), positive: tuple[str, ...] = (),
                 optional_positive: tuple[str, ...] = (), unit: tuple[str, ...] = ()) -> None:
    """Raise `ConfigValueError` naming the first field of `obj` outside its range (NaN is outside every range).

    Args:
        obj: a config dataclass; section: its name in the YAML (``run``, ``eval``).
        at_least_1 / at_least_0 / positive / unit: fields that must be >= 1 / >= 0 / > 0 / in [0, 1];
        the ``optional_`` groups also accept None.
    """
    rules = [(at_least_1, lambda v: v >= 1, ">= 1"), (optional_at_least_1, lambda v: v >= 1, ">= 1 or null"),
             (at_least_0, lambda v: v >= 0, ">= 0"), (positive, lambda v: v > 0, "> 0"),
             (optional_positive, lambda v: v > 0, "> 0 or null"), (unit, lambda v: 0 <= v <= 1, "in [0, 1]")]
    for names, ok, expected in rules:
        optional = expected.endswith("or null")
        for name in names:
            value = getattr(obj, name)
            if value is None and optional:
                continue
            if value is None or not ok(value):  # `not ok` also refuses NaN, for which every comparison is False
                raise ConfigValueError(f"{section}.{name} must be {expected}, got {value}")


def load_config_from_cli(argv: list[str] | None, description: str, config_dir: str) -> DictConfig:
    """`--cfg-path X.yaml [--options k=v ...] [k=v ...]` (the entry points' command line) -> config."""
    import argparse

    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cfg-path", "--cfg_path", required=True, help=f"YAML config ({config_dir}/...)")
    parser.add_argument("--options", nargs="*", default=[], help="key=value overrides (also accepted positionally)")
    parser.add_argument("overrides", nargs="*", help="key=value overrides")
    args = parser.parse_args(argv)
    return load_config(args.cfg_path, list(args.options) + list(args.overrides))


def _rename_dataset_keys(layer: DictConfig, where: str) -> DictConfig:
    """`layer` with the former spellings of dataset keys renamed (a warning each), interpolations kept."""
    sections = [("dataset_defaults", layer.get("dataset_defaults"))]
    sections += [(f"datasets.{name}", entry) for name, entry in (layer.get("datasets") or {}).items()]
    if not any(isinstance(entry, DictConfig) and set(entry.keys()) & set(LEGACY_KEYS) for _, entry in sections):
        return layer
    plain = OmegaConf.to_container(layer, resolve=False)
    if isinstance(plain.get("dataset_defaults"), dict):
        plain["dataset_defaults"] = rename_legacy_keys(plain["dataset_defaults"], f"{where}: dataset_defaults")
    for name, entry in (plain.get("datasets") or {}).items():
        if isinstance(entry, dict):
            plain["datasets"][name] = rename_legacy_keys(entry, f"{where}: datasets.{name}")
    return OmegaConf.create(plain)


def _apply_dataset_defaults(merged: DictConfig) -> DictConfig:
    """Merge `dataset_defaults` under every `datasets.<name>` and drop the block."""
    if "dataset_defaults" not in merged:
        return merged
    shared = merged.pop("dataset_defaults")
    for name in list((merged.get("datasets") or {}).keys()):
        merged.datasets[name] = OmegaConf.merge(shared, merged.datasets[name])
    return merged


def load_config(path: str | os.PathLike | None, overrides: list[str] | None = None,
                defaults: dict[str, Any] | None = None) -> DictConfig:
    """Merge dataclass defaults, the YAML at `path` and `key=value` overrides; validate.

    Args:
        path: YAML file (None: defaults only).
        overrides: dot-list overrides, e.g. `["run.max_steps=4", "model.config.mode=fixed"]`.
        defaults: extra defaults merged first (used by tests).
    Returns:
        The merged config, not yet resolved (interpolations stay live until `resolve_config`).
    Raises:
        UnknownKeyError (a KeyError) naming an unknown key, ConfigValueError (a ValueError) naming a key
        whose value is refused (or an override that is not `key=value`, or a YAML file that does not parse).
    """
    base = OmegaConf.create({"paths": OmegaConf.structured(PathsConfig), "output_dir": "${paths.output_root}/run"})
    layers = [base]
    if defaults:
        layers.append(OmegaConf.create(defaults))
    user = OmegaConf.create({})
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file not found: {path}")
        try:
            user = OmegaConf.load(path)
        except yaml.YAMLError as exc:
            raise ConfigValueError(f"{path}: not valid YAML: {' '.join(str(exc).split())}") from None
        if not isinstance(user, DictConfig):
            raise ConfigValueError(f"{path}: expected a mapping of config sections, got a {type(user).__name__}")
    cli = OmegaConf.from_dotlist(check_overrides(overrides))
    for layer, name in ((user, str(path)), (cli, "command line")):
        check_keys(layer.keys(), TOP_LEVEL_KEYS, name)
    layers += [_rename_dataset_keys(user, str(path)), _rename_dataset_keys(cli, "command line")]
    merged = OmegaConf.create({})
    for layer in layers:
        merged = OmegaConf.merge(merged, layer)
    merged = _apply_dataset_defaults(merged)
    # Typed sections: merging into the structured schema rejects unknown keys and wrong types.
    for key, schema in (("run", RunConfig), ("eval", EvalConfig)):
        if key in merged:
            try:
                merged[key] = OmegaConf.merge(OmegaConf.structured(schema), merged[key])
            except (ConfigKeyError, ValidationError) as exc:
                raise _section_error(key, schema, exc) from None
    try:
        merged["paths"] = OmegaConf.merge(OmegaConf.structured(PathsConfig), merged["paths"])
    except (ConfigKeyError, ValidationError) as exc:
        raise _section_error("paths", PathsConfig, exc) from None
    if "model" in merged:
        check_keys(merged.model.keys(), MODEL_KEYS, "model")
    _validate_values(merged)
    return merged


def check_overrides(overrides: list[str] | None) -> list[str]:
    """The command-line overrides, each a `key=value` (a bare `run.max_steps` would silently set null).

    Raises:
        ConfigValueError: naming the override that is not `key=value`.
    """
    items = list(overrides or [])
    for item in items:
        key, eq, _ = item.partition("=")
        if not eq or not key.strip() or key != key.strip():
            raise ConfigValueError(f"bad override {item!r}: expected key=value, e.g. run.max_steps=4")
    return items


def _validate_values(merged: DictConfig) -> None:
    """Run the dataclass checks of the typed sections now (values, not only types), so a bad value stops the
    run before anything is built. A section whose interpolations do not resolve yet is checked by `resolve_config`."""
    for key, schema in (("run", RunConfig), ("eval", EvalConfig)):
        if key not in merged:
            continue
        try:
            values = OmegaConf.to_container(merged[key], resolve=True)
        except OmegaConfBaseException:
            continue
        schema(**values)


def _section_error(section: str, schema: type, exc: Exception) -> UnknownKeyError:
    """One line naming the key: `unknown key run.max_stepz (allowed: ...)` or `eval.num_frames: <why>`."""
    key = getattr(exc, "full_key", None) or getattr(exc, "key", None) or "?"
    if isinstance(exc, ConfigKeyError):
        allowed = sorted(f.name for f in fields(schema))
        return UnknownKeyError(f"invalid {section} section: unknown key {section}.{key}; allowed: {allowed}")
    first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return UnknownKeyError(f"invalid {section} section: {section}.{key}: {first}")


def resolve_config(cfg: DictConfig) -> dict[str, Any]:
    """Resolve interpolations and return plain containers; runs dataclass validation."""
    container = OmegaConf.to_container(cfg, resolve=True)
    for key, schema in (("run", RunConfig), ("eval", EvalConfig)):
        if key in container:
            schema(**container[key])  # __post_init__ validation
    return container


def run_config(cfg: DictConfig) -> RunConfig:
    return RunConfig(**OmegaConf.to_container(cfg.run, resolve=True))


def eval_config(cfg: DictConfig) -> EvalConfig:
    return EvalConfig(**OmegaConf.to_container(cfg.eval, resolve=True))


def save_config(cfg: DictConfig, path: str | os.PathLike) -> str:
    """Write the resolved config as YAML (atomically) and return the text."""
    text = OmegaConf.to_yaml(OmegaConf.create(OmegaConf.to_container(cfg, resolve=True)))
    atomic_write_text(path, text)
    return text
