"""Atomic, resumable step-folder checkpoints of the trainable state.

Layout (one folder per save; frozen base weights are never written, they load from their own
files)::

    output_dir/checkpoints/step_{N:08d}/
        trainable.safetensors   every requires_grad parameter, names as in the model's state_dict
        optimizer.pt            optimizer.state_dict()            (if an optimizer is given)
        scheduler.pt            scheduler.state_dict()            (if a scheduler is given)
        scaler.pt               GradScaler.state_dict()           (if a scaler is given)
        trainer_state.json      step, epoch, micro_step, world_size, data_state, extra
        rng_state_rank{r}.pt    python / numpy / torch (/ CUDA) RNG + optional per-rank state
        config.yaml             the resolved config text           (if given)
        COMPLETE                written last; the manifest: JSON with the step, and the size and
                                sha256 of every other file

Atomicity: everything is written into ``step_N.tmp-<pid>`` (pid of rank 0), the ``COMPLETE``
marker last, then the folder is renamed with ``os.replace``. A process killed at any moment thus
leaves either the previous complete folders untouched or a ``*.tmp-*`` folder that
``latest_checkpoint`` never returns (and that the next save, or ``clean_tmp=True``, removes). A
step folder without the marker (left by a kill while pruning, which drops the marker first) is
removed the same way once a newer complete checkpoint exists.

Integrity: loading verifies the manifest first (`verify_checkpoint`): every file is there with its
saved size and sha256 (manifests written before checksums, ``format_version`` 1, are checked by size
only) and the safetensors header agrees with the file's length. A failure is a
`CorruptCheckpointError` naming the file; ``latest_valid_checkpoint`` steps back past such folders
(what ``run.resume=auto`` uses).

Distributed use: rank 0 writes the shared files, every rank writes its RNG file, and the ranks meet
at the ``barrier`` callable passed in (e.g. ``timechat.distributed.barrier``), so this module
never imports or initialises ``torch.distributed`` itself. The output folder must be on a
filesystem shared by all ranks. Works with plain and DDP-wrapped models (identical optimizer state
on every rank). Under DeepSpeed the recipe saves without the optimizer here and lets the engine
write its ZeRO shards beside the step folders (``checkpoints/deepspeed/step_N``).

Compared with the original (its LAVIS runner's checkpoint save and resume): the original saved
``{"model", "optimizer", "config", "scaler", "epoch"}`` at the end of each epoch and resumed with a
strict ``load_state_dict`` of that partial dict, which fails on the absent frozen weights. Here
loading is strict on the *trainable* set: every trainable parameter must be in the file, and a
file key that is not a trainable parameter is an error naming it. Persistent buffers are not
saved (the model rebuilds them); ``export_original_layout`` writes the original's file format for
weights that the model code has already renamed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import re
import shutil
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from timechat.io import DataFileError, atomic_path, fsync_dir, fsync_file, read_json

log = logging.getLogger(__name__)

__all__ = [
    "CheckpointError",
    "CorruptCheckpointError",
    "capture_rng_state",
    "checkpoint_path",
    "checkpoint_root",
    "export_original_layout",
    "latest_checkpoint",
    "latest_valid_checkpoint",
    "list_checkpoints",
    "load_checkpoint",
    "load_trainable_weights",
    "prune_checkpoints",
    "remove_tmp_leftovers",
    "restore_rng_state",
    "save_checkpoint",
    "set_aside",
    "trainable_state_dict",
    "unwrap_model",
    "verify_checkpoint",
]

CHECKPOINTS_DIR = "checkpoints"
COMPLETE_MARKER = "COMPLETE"
TRAINABLE_FILE = "trainable.safetensors"
OPTIMIZER_FILE = "optimizer.pt"
SCHEDULER_FILE = "scheduler.pt"
SCALER_FILE = "scaler.pt"
TRAINER_STATE_FILE = "trainer_state.json"
CONFIG_FILE = "config.yaml"
FORMAT_VERSION = 2
"""2: the COMPLETE manifest also holds a sha256 per file (1: sizes only; still loaded)."""

_STEP_RE = re.compile(r"^step_(\d{8,})$")
_TMP_RE = re.compile(r"^step_\d{8,}\.tmp-")


class CheckpointError(RuntimeError):
    """A checkpoint is incomplete, inconsistent or does not match the model."""


class CorruptCheckpointError(CheckpointError):
    """A checkpoint file is missing, truncated, altered since it was saved or unreadable; the message names it."""


def _rng_file(rank: int) -> str:
    return f"rng_state_rank{rank}.pt"


# --------------------------------------------------------------------------------------------
# Paths and discovery
# --------------------------------------------------------------------------------------------


def checkpoint_root(output_dir: str | os.PathLike) -> Path:
    """``output_dir/checkpoints``."""
    return Path(output_dir) / CHECKPOINTS_DIR


def checkpoint_path(output_dir: str | os.PathLike, step: int) -> Path:
    """``output_dir/checkpoints/step_{step:08d}`` (whether or not it exists)."""
    return checkpoint_root(output_dir) / f"step_{int(step):08d}"


def _is_complete(folder: Path) -> bool:
    return (folder / COMPLETE_MARKER).is_file()


def list_checkpoints(output_dir: str | os.PathLike) -> list[tuple[int, Path]]:
    """Complete checkpoints under ``output_dir/checkpoints``, oldest first.

    Returns:
        ``[(step, folder), ...]`` sorted by step; folders without the ``COMPLETE`` marker and
        ``*.tmp-*`` folders are skipped.
    """
    root = checkpoint_root(output_dir)
    if not root.is_dir():
        return []
    found = []
    for entry in root.iterdir():
        m = _STEP_RE.match(entry.name)
        if m and entry.is_dir():
            if _is_complete(entry):
                found.append((int(m.group(1)), entry))
            else:
                log.warning("ignoring checkpoint folder without %s marker: %s", COMPLETE_MARKER, entry)
    return sorted(found)


def remove_tmp_leftovers(output_dir: str | os.PathLike) -> list[Path]:
    """Delete the leftovers of interrupted saves and prunes.

    These are the ``*.tmp-*`` staging folders of saves, and the ``step_N`` folders without a
    ``COMPLETE`` marker that are older than the newest complete checkpoint: pruning drops the marker
    before deleting, so a kill there leaves such a folder, and no save ever names a folder
    ``step_N`` before its marker is in it. A marker-less folder newer than every complete one is
    left alone (nothing of ours makes one) and only warned about by ``list_checkpoints``.

    Only call it when no save is in progress for this ``output_dir`` (one trainer per output dir;
    ``save_checkpoint`` calls it on rank 0 before writing, the recipe on rank 0 at startup).

    Returns:
        The removed folders.
    """
    root = checkpoint_root(output_dir)
    removed = []
    if not root.is_dir():
        return removed
    complete, incomplete = [], []
    for entry in root.iterdir():
        m = _STEP_RE.match(entry.name)
        if _TMP_RE.match(entry.name):
            removed.append(entry)
        elif m and entry.is_dir():
            (complete if _is_complete(entry) else incomplete).append((int(m.group(1)), entry))
    newest = max((step for step, _ in complete), default=None)
    removed += [entry for step, entry in incomplete if newest is not None and step < newest]
    for entry in removed:
        shutil.rmtree(entry, ignore_errors=True)
    return removed


def latest_checkpoint(output_dir: str | os.PathLike, *, clean_tmp: bool = False) -> Path | None:
    """The newest complete checkpoint folder, or None.

    Args:
        output_dir: the run's output dir.
        clean_tmp: also delete ``*.tmp-*`` leftovers of interrupted saves (rank 0, before
            training starts).

    Returns:
        The folder of the highest step that has the ``COMPLETE`` marker, or None.
    """
    if clean_tmp:
        for p in remove_tmp_leftovers(output_dir):
            log.info("removed leftover of an interrupted checkpoint save or prune: %s", p)
    found = list_checkpoints(output_dir)
    return found[-1][1] if found else None


def latest_valid_checkpoint(output_dir: str | os.PathLike) -> tuple[Path | None, list[tuple[Path, str]]]:
    """The newest complete checkpoint that passes `verify_checkpoint`, and the newer ones that did not.

    Returns:
        ``(folder or None, [(skipped folder, why), ...])``, the skipped ones newest first.
    """
    skipped = []
    for _, folder in reversed(list_checkpoints(output_dir)):
        try:
            verify_checkpoint(folder)
        except CorruptCheckpointError as exc:
            skipped.append((folder, str(exc)))
            continue
        return folder, skipped
    return None, skipped


def set_aside(folder: str | os.PathLike) -> Path:
    """Rename a (corrupt) step folder to ``step_N.corrupt-<time>``: kept for a look, never listed, loaded or pruned.

    Returns:
        The new path.
    """
    folder = Path(folder)
    target = folder.with_name(f"{folder.name}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}")
    n = 1
    while target.exists():
        n += 1
        target = folder.with_name(f"{folder.name}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}-{n}")
    os.replace(folder, target)
    return target


def _remove_checkpoint(folder: Path) -> None:
    # Drop the marker first: a crash during rmtree then leaves a folder that is never "complete".
    (folder / COMPLETE_MARKER).unlink(missing_ok=True)
    shutil.rmtree(folder, ignore_errors=True)


def prune_checkpoints(output_dir: str | os.PathLike, keep_last: int) -> list[Path]:
    """Delete all but the ``keep_last`` newest complete checkpoints.

    Args:
        output_dir: the run's output dir.
        keep_last: number of newest checkpoints to keep (>= 1).

    Returns:
        The removed folders.
    """
    if keep_last < 1:
        raise ValueError(f"keep_last must be >= 1, got {keep_last}")
    found = list_checkpoints(output_dir)
    removed = [folder for _, folder in found[:-keep_last]]
    for folder in removed:
        _remove_checkpoint(folder)
    return removed


# --------------------------------------------------------------------------------------------
# RNG state
# --------------------------------------------------------------------------------------------


def capture_rng_state() -> dict[str, Any]:
    """Python ``random``, numpy global, torch CPU and (if available) all CUDA RNG states.

    Returns:
        A dict of plain Python values and tensors (loadable with ``weights_only=True``).
    """
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "name": name,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }
    return state


def restore_rng_state(state: Mapping[str, Any]) -> None:
    """Inverse of ``capture_rng_state``.

    Args:
        state: a dict from ``capture_rng_state``.
    """
    py = state["python"]
    # torch.load returns the inner tuple as a list; random.setstate needs tuples.
    random.setstate((py[0], tuple(py[1]), py[2]))
    npst = state["numpy"]
    np.random.set_state(
        (npst["name"], npst["keys"].numpy().astype(np.uint32), npst["pos"], npst["has_gauss"],
         npst["cached_gaussian"])
    )
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available():
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)
        else:
            log.warning(
                "checkpoint has CUDA RNG states for %d devices, this process sees %d; "
                "restoring the current device only", len(cuda), torch.cuda.device_count(),
            )
            torch.cuda.set_rng_state(cuda[min(torch.cuda.current_device(), len(cuda) - 1)])


# --------------------------------------------------------------------------------------------
# Integrity
# --------------------------------------------------------------------------------------------


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _check_safetensors_header(file: Path) -> None:
    """The header fits in the file and its tensors end exactly at the file's end (no read of the data).

    Catches, with the file named, what ``safetensors`` reports as ``header too large`` or an
    anonymous deserialisation error: a truncated file, a corrupted length prefix or header.
    """
    size = file.stat().st_size
    with open(file, "rb") as f:
        prefix = f.read(8)
        if len(prefix) < 8:
            raise CorruptCheckpointError(f"{file}: truncated safetensors file ({size} bytes, no header)")
        n = int.from_bytes(prefix, "little")
        if n > size - 8:
            raise CorruptCheckpointError(f"{file}: corrupted safetensors header: it claims {n} bytes, "
                                         f"the file has {size} (truncated file or damaged header)")
        raw = f.read(n)
    try:
        header = json.loads(raw)
        ends = [int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"]
    except (UnicodeDecodeError, ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
        raise CorruptCheckpointError(f"{file}: corrupted safetensors header ({type(exc).__name__}: {exc})") from None
    if 8 + n + max(ends, default=0) != size:
        raise CorruptCheckpointError(f"{file}: the safetensors header describes {8 + n + max(ends, default=0)} bytes, "
                                     f"the file has {size} (truncated or damaged)")


def _read_manifest(folder: Path) -> dict[str, Any]:
    marker = folder / COMPLETE_MARKER
    if not marker.is_file():
        raise CheckpointError(f"{folder} is not a complete checkpoint (no {COMPLETE_MARKER} marker)")
    try:
        manifest = read_json(marker)
    except DataFileError as exc:
        raise CorruptCheckpointError(str(exc)) from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files", {}), dict):
        raise CorruptCheckpointError(f"{marker}: not a checkpoint manifest (a JSON object with 'files')")
    return manifest


def verify_checkpoint(folder: str | os.PathLike, names: list[str] | None = None) -> dict[str, Any]:
    """Check a step folder against its ``COMPLETE`` manifest before anything is loaded from it.

    Every file listed (or only ``names``) must exist with its saved size and, where the manifest
    has one (format 2), its saved sha256; ``trainable.safetensors`` must also have a consistent
    header (what catches a damaged header in a format-1 folder of the right size).

    Args:
        folder: the step folder.
        names: the files to check (default: all the manifest lists).

    Returns:
        The manifest.

    Raises:
        CheckpointError: no marker. CorruptCheckpointError: naming the first file that fails.
    """
    folder = Path(folder)
    manifest = _read_manifest(folder)
    sizes, sums = manifest.get("files", {}), manifest.get("sha256") or {}
    for name in sizes if names is None else names:
        f = folder / name
        if name not in sizes:
            continue  # not part of this checkpoint (e.g. no scaler): the loader says if it needs it
        if not f.is_file():
            raise CorruptCheckpointError(f"{f} is missing (listed in {folder / COMPLETE_MARKER})")
        if f.stat().st_size != sizes[name]:
            raise CorruptCheckpointError(f"{f} is missing or has a different size than when it was saved "
                                         f"({f.stat().st_size} bytes, saved {sizes[name]})")
        if name in sums and _sha256(f) != sums[name]:
            raise CorruptCheckpointError(f"{f}: sha256 differs from the one saved in {COMPLETE_MARKER} "
                                         "(its bytes changed since the save)")
        if name == TRAINABLE_FILE:
            _check_safetensors_header(f)
    return manifest


# --------------------------------------------------------------------------------------------
# Model weights
# --------------------------------------------------------------------------------------------


def unwrap_model(model: nn.Module) -> nn.Module:
    """The plain model under DDP (`module.`) and torch.compile (`_orig_mod.`) wrappers."""
    while True:
        if isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        elif hasattr(model, "_orig_mod") and isinstance(model._orig_mod, nn.Module):
            model = model._orig_mod
        else:
            return model


def trainable_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every ``requires_grad`` parameter, detached, on CPU, contiguous.

    Args:
        model: the model (DDP / torch.compile wrappers are looked through).

    Returns:
        ``{name: tensor}`` with the names of ``model.state_dict()``.
    """
    return {
        name: p.detach().to("cpu").contiguous()
        for name, p in unwrap_model(model).named_parameters()
        if p.requires_grad
    }


def load_trainable_weights(
    path: str | os.PathLike, model: nn.Module, *, match: str = "trainable", verify: bool = True
) -> list[str]:
    """Copy the weights of ``trainable.safetensors`` into the model's parameters.

    Args:
        path: a checkpoint folder or the safetensors file itself. In a complete step folder the
            file is first checked against the manifest (`verify_checkpoint`); elsewhere its header.
        model: the model (DDP / torch.compile wrappers are looked through).
        match: ``"trainable"`` (resume): the file's keys must be exactly the model's
            ``requires_grad`` parameters; ``"subset"`` (inference on a frozen model): every file
            key must be a parameter of the model, trainable or not.
        verify: check the file first (False: the caller has just verified the folder).

    Returns:
        The loaded names, sorted.

    Raises:
        CorruptCheckpointError: the file is truncated, damaged or unreadable (named).
        CheckpointError: naming missing keys, unexpected keys and shape mismatches.
    """
    from safetensors.torch import load_file  # keep safetensors off the import path of the package

    if match not in ("trainable", "subset"):
        raise ValueError(f"match must be 'trainable' or 'subset', got {match!r}")
    path = Path(path)
    file = path / TRAINABLE_FILE if path.is_dir() else path
    if not file.is_file():
        raise CheckpointError(f"trainable weights not found: {file}")
    if verify:
        if file.name == TRAINABLE_FILE and (file.parent / COMPLETE_MARKER).is_file():
            verify_checkpoint(file.parent, [TRAINABLE_FILE])
        else:
            _check_safetensors_header(file)
    try:
        state = load_file(str(file))
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own SafetensorError, with no file name
        raise CorruptCheckpointError(f"{file}: cannot read the safetensors file ({type(exc).__name__}: {exc})") from exc
    params = dict(unwrap_model(model).named_parameters())
    problems = []
    if match == "trainable":
        trainable = {n for n, p in params.items() if p.requires_grad}
        missing = sorted(trainable - state.keys())
        if missing:
            problems.append(f"missing trainable parameters: {missing}")
        frozen = sorted(k for k in state.keys() - trainable if k in params)
        if frozen:
            problems.append(f"keys that are frozen (requires_grad=False) in the model: {frozen}")
    unknown = sorted(k for k in state if k not in params)
    if unknown:
        problems.append(f"unexpected keys (no such parameter in the model): {unknown}")
    shapes = [
        f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(params[k].shape)}"
        for k, v in sorted(state.items())
        if k in params and v.shape != params[k].shape
    ]
    if shapes:
        problems.append("shape mismatches: " + "; ".join(shapes))
    if problems:
        raise CheckpointError(f"cannot load {file}: " + " | ".join(problems))
    with torch.no_grad():
        for name, tensor in state.items():
            params[name].copy_(tensor)
    return sorted(state)


# --------------------------------------------------------------------------------------------
# Save
# --------------------------------------------------------------------------------------------


def _torch_save(obj: Any, path: Path) -> None:
    with open(path, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())


def _write_text(path: Path, text: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def _find_tmp_dir(root: Path, name: str) -> Path:
    matches = sorted(p for p in root.glob(f"{name}.tmp-*") if p.is_dir())
    if len(matches) != 1:
        raise CheckpointError(
            f"expected exactly one staging folder {root}/{name}.tmp-* created by rank 0, found "
            f"{[m.name for m in matches]} (is output_dir on a filesystem shared by all ranks?)"
        )
    return matches[0]


def save_checkpoint(
    output_dir: str | os.PathLike,
    step: int,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any | None = None,
    scaler: Any | None = None,
    epoch: int = 0,
    micro_step: int = 0,
    data_state: Any = None,
    extra: Mapping[str, Any] | None = None,
    config_text: str | None = None,
    rank_state: Any = None,
    rank: int = 0,
    world_size: int = 1,
    barrier: Callable[[], None] | None = None,
    keep_last: int | None = None,
) -> Path:
    """Write ``output_dir/checkpoints/step_{step:08d}`` atomically; call it on every rank.

    Args:
        output_dir: the run's output dir.
        step: the step number used in the folder name (e.g. optimizer steps done).
        model: the model; its trainable parameters are saved (rank 0).
        optimizer: saved to ``optimizer.pt`` (rank 0) if given.
        scheduler: anything with ``state_dict()``; saved to ``scheduler.pt`` (rank 0) if given.
        scaler: an AMP GradScaler; saved to ``scaler.pt`` (rank 0) if given.
        epoch: epoch to resume in.
        micro_step: micro-iteration (within the epoch, or global: the runner decides) to resume at.
        data_state: JSON-serialisable data position, e.g. ``MultiDatasetIterator.state_dict()``
            (rank 0's; identical on all ranks when the mixing seed is shared).
        extra: any other JSON-serialisable values (loss averages, tokens seen, ...).
        config_text: the resolved config as YAML text; written to ``config.yaml``.
        rank_state: optional per-rank object stored next to this rank's RNG state (torch.save;
            plain types and tensors), for state that differs between ranks.
        rank: this process's rank.
        world_size: number of processes; every rank must call this function.
        barrier: callable that blocks until all ranks arrive; required when ``world_size > 1``.
        keep_last: if set, prune to this many newest complete checkpoints afterwards (rank 0).

    Returns:
        The final checkpoint folder.

    Raises:
        ValueError: ``world_size > 1`` without a barrier.
        TypeError: ``data_state``/``extra`` are not JSON-serialisable (names the field).
        CheckpointError: a rank's RNG file is missing at commit time.
    """
    if world_size > 1 and barrier is None:
        raise ValueError("save_checkpoint with world_size > 1 needs a `barrier` callable")
    sync = barrier if barrier is not None else (lambda: None)
    root = checkpoint_root(output_dir)
    final = checkpoint_path(output_dir, step)

    tmp = None
    if rank == 0:
        root.mkdir(parents=True, exist_ok=True)
        for p in remove_tmp_leftovers(output_dir):
            log.info("removed leftover of an interrupted checkpoint save: %s", p)
        tmp = root / f"{final.name}.tmp-{os.getpid()}"
        tmp.mkdir()
        _write_shared_files(
            tmp, step=step, model=model, optimizer=optimizer, scheduler=scheduler, scaler=scaler,
            epoch=epoch, micro_step=micro_step, data_state=data_state, extra=extra,
            config_text=config_text, world_size=world_size,
        )
    sync()  # the staging folder exists for every rank from here on
    if tmp is None:
        tmp = _find_tmp_dir(root, final.name)
    _torch_save({"rng": capture_rng_state(), "rank_state": rank_state}, tmp / _rng_file(rank))
    sync()  # every rank's RNG file is written
    if rank == 0:
        missing = [_rng_file(r) for r in range(world_size) if not (tmp / _rng_file(r)).is_file()]
        if missing:
            raise CheckpointError(f"{tmp}: RNG files missing at commit: {missing}")
        files = {p.name: p.stat().st_size for p in sorted(tmp.iterdir())}
        sums = {p.name: _sha256(p) for p in sorted(tmp.iterdir())}
        _write_text(
            tmp / COMPLETE_MARKER,
            json.dumps({"step": int(step), "format_version": FORMAT_VERSION, "files": files, "sha256": sums},
                       indent=1),
        )
        fsync_dir(tmp)
        old = None
        if final.exists():
            # os.replace cannot overwrite a non-empty folder: move the old one aside first (its
            # name matches *.tmp-*, so a crash right here leaves only a cleanable leftover).
            old = root / f"{final.name}.tmp-old-{os.getpid()}"
            os.replace(final, old)
            (old / COMPLETE_MARKER).unlink(missing_ok=True)
        os.replace(tmp, final)
        fsync_dir(root)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        if keep_last is not None:
            for p in prune_checkpoints(output_dir, keep_last):
                log.info("pruned old checkpoint %s", p)
        log.info("saved checkpoint %s", final)
    sync()  # nobody races ahead (e.g. into the next save's cleanup) before the commit
    return final


def _write_shared_files(
    tmp: Path,
    *,
    step: int,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None,
    scheduler: Any | None,
    scaler: Any | None,
    epoch: int,
    micro_step: int,
    data_state: Any,
    extra: Mapping[str, Any] | None,
    config_text: str | None,
    world_size: int,
) -> None:
    from safetensors.torch import save_file

    trainer_state = {
        "format_version": FORMAT_VERSION,
        "step": int(step),
        "epoch": int(epoch),
        "micro_step": int(micro_step),
        "world_size": int(world_size),
        "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    for key, value in (("data_state", data_state), ("extra", dict(extra or {}))):
        try:
            json.dumps(value)
        except (TypeError, ValueError) as e:
            raise TypeError(f"checkpoint field '{key}' is not JSON-serialisable: {e}") from e
        trainer_state[key] = value

    weights = trainable_state_dict(model)
    if not weights:
        raise CheckpointError("model has no trainable parameter; nothing to checkpoint")
    save_file(weights, str(tmp / TRAINABLE_FILE), metadata={"format": "pt"})
    fsync_file(tmp / TRAINABLE_FILE)
    if optimizer is not None:
        _torch_save(optimizer.state_dict(), tmp / OPTIMIZER_FILE)
    if scheduler is not None:
        _torch_save(scheduler.state_dict(), tmp / SCHEDULER_FILE)
    if scaler is not None:
        _torch_save(scaler.state_dict(), tmp / SCALER_FILE)
    if config_text is not None:
        _write_text(tmp / CONFIG_FILE, config_text)
    _write_text(tmp / TRAINER_STATE_FILE, json.dumps(trainer_state, indent=1))


# --------------------------------------------------------------------------------------------
# Load
# --------------------------------------------------------------------------------------------


def _torch_load(path: Path) -> Any:
    if not path.is_file():
        raise CheckpointError(f"checkpoint file not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - zip/pickle errors that do not name the file
        raise CorruptCheckpointError(f"{path}: cannot read ({type(exc).__name__}: {exc})") from exc


def load_checkpoint(
    path: str | os.PathLike,
    *,
    model: nn.Module | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any | None = None,
    scaler: Any | None = None,
    rank: int = 0,
    restore_rng: bool = True,
) -> dict[str, Any]:
    """Restore a checkpoint folder written by ``save_checkpoint``; call it on every rank.

    Args:
        path: the step folder (e.g. ``latest_checkpoint(output_dir)``).
        model: receives the trainable weights (strict on the trainable set, see
            ``load_trainable_weights``); skipped if None.
        optimizer: receives ``optimizer.pt`` (build it over the same model first).
        scheduler: receives ``scheduler.pt``.
        scaler: receives ``scaler.pt``.
        rank: this process's rank; selects ``rng_state_rank{rank}.pt``.
        restore_rng: restore python/numpy/torch/CUDA RNG states of this rank.

    Returns:
        The trainer state (``step``, ``epoch``, ``micro_step``, ``world_size``, ``data_state``,
        ``extra``, ...) plus ``rank_state`` (this rank's, or None) and ``path``.

    Raises:
        CorruptCheckpointError: a file that is missing, truncated or changed since the save (named;
            `verify_checkpoint` runs first, so nothing is loaded from such a folder).
        CheckpointError: incomplete folder, or weights that do not match.
    """
    folder = Path(path)
    verify_checkpoint(folder)
    try:
        trainer_state = read_json(folder / TRAINER_STATE_FILE)
    except DataFileError as exc:
        raise CorruptCheckpointError(str(exc)) from None
    if model is not None:
        load_trainable_weights(folder, model, match="trainable", verify=False)
    if optimizer is not None:
        try:
            optimizer.load_state_dict(_torch_load(folder / OPTIMIZER_FILE))
        except ValueError as e:
            raise CheckpointError(f"{folder / OPTIMIZER_FILE} does not match the optimizer: {e}") from e
    if scheduler is not None:
        scheduler.load_state_dict(_torch_load(folder / SCHEDULER_FILE))
    if scaler is not None:
        scaler.load_state_dict(_torch_load(folder / SCALER_FILE))

    rank_state = None
    rng_path = folder / _rng_file(rank)
    if restore_rng or rng_path.is_file():
        if not rng_path.is_file():
            raise CheckpointError(
                f"{rng_path} not found (saved with world_size={trainer_state.get('world_size')}); "
                "pass restore_rng=False to resume with a different number of ranks"
            )
        saved = _torch_load(rng_path)
        rank_state = saved.get("rank_state")
        if restore_rng:
            restore_rng_state(saved["rng"])
    return {**trainer_state, "rank_state": rank_state, "path": str(folder)}


# --------------------------------------------------------------------------------------------
# Original layout
# --------------------------------------------------------------------------------------------


def export_original_layout(
    model_state: Mapping[str, torch.Tensor],
    path: str | os.PathLike,
    *,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``{"model": state_dict, **extra}`` with ``torch.save``, as the original's ``.pth``.

    The renaming to the original's keys (spec section 2.5) is the model code's job; this only
    writes an already-renamed dict, atomically (temp file + ``os.replace``).

    Args:
        model_state: ``{original_key: tensor}``.
        path: destination file, e.g. ``.../timechat_7b.pth``.
        extra: other top-level entries (the original also had ``epoch``, ``config``, ...).

    Returns:
        The written path.
    """
    path = Path(path)
    bad = [k for k, v in model_state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise TypeError(f"export_original_layout: values of {bad} are not tensors")
    extra = dict(extra or {})
    if "model" in extra:
        raise ValueError("export_original_layout: `extra` must not contain 'model'")
    obj = {"model": {k: v.detach().to("cpu").contiguous() for k, v in model_state.items()}, **extra}
    with atomic_path(path) as tmp:
        _torch_save(obj, tmp)
    return path
