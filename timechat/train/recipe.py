"""The TimeChat fine-tuning recipe: one explicit loop (the original's LAVIS runner and base task in
one class), faithful where it matters and robust where the original was not.

Faithful: AdamW with the original's decay groups, the linear-warmup-cosine schedule stepped every
micro-iteration with its quirks, "epochs" of `iters_per_epoch` iterations, per-batch dataset
mixing (uniform by default), the same trainable modules.

Fixed: exact resume (weights, optimizer, scheduler, scaler, data position, RNG), atomic
checkpoints, loss normalised over accumulation (configurable), gradient clipping (configurable),
one autocast dtype (no fp16 autocast over bf16 weights), bad samples counted and reported,
outputs only under `output_dir`, W&B optional.

A "step" is an optimizer step; an "iteration" is a micro-batch. Checkpoints are taken at step
boundaries. `TrainRecipe.train_step` is one step; the loop in `train()` calls it and nothing else
trains (`scripts/benchmark.py` times that same method).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import random
import time
from pathlib import Path
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from timechat.constants import AUTOCAST_DTYPES
from timechat import registry
from timechat.config import RunConfig, resolve_config, run_config, save_config
from timechat.data.collate import collate_train
from timechat.data.datasets import check_failure_rate
from timechat.stats import IssueStats
from timechat.factory import build_model_and_tokenizers
from timechat.models.checkpoint import export_original_state_dict
from timechat import checkpoint as ckpt_io
from timechat import distributed as dist_utils
from timechat.logs import MetricLogger, Progress
from timechat.train.mixing import MultiDatasetIterator, make_train_loader
from timechat.train.optim import build_optimizer, clip_grad_norm, is_accumulation_boundary, scale_loss_for_accumulation

logger = logging.getLogger(__name__)

def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def move_to(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: move_to(v, device) for k, v in batch.items()}
    if isinstance(batch, list):
        return [move_to(v, device) for v in batch]
    return batch


def loss_parts(out: dict[str, Any]) -> dict[str, torch.Tensor]:
    """`loss` and the named parts (`*_loss`, e.g. `lm_loss`) of a model output, without the logits."""
    return {k: v if k == "loss" else v.detach() for k, v in out.items() if k == "loss" or k.endswith("_loss")}


class StepResult(NamedTuple):
    """What one optimizer step (`TrainRecipe.train_step`) reports."""

    loss: torch.Tensor
    """Mean micro-batch loss of the step on this rank (0-dim, detached)."""
    grad_norm: torch.Tensor | None
    """Global gradient norm before clipping (None without run.grad_clip, unless DeepSpeed measured it)."""
    lr: float
    """LR set for the step's last micro-batch."""
    samples: int
    """Samples this rank consumed in the step."""
    parts: dict[str, torch.Tensor] | None = None
    """The loss's named parts when the model reports them (e.g. `lm_loss`, `frame_time_loss`), step means on this rank."""


class TrainRecipe:
    """One fine-tuning run, in torchtune's recipe shape:

        recipe = TrainRecipe(cfg)   # parse the config only
        recipe.setup()              # process group, seeds, data, model, optimizer, wrappers, resume
        summary = recipe.train()    # the loop: `train_step` until `total_steps`, logging, checkpoints
        recipe.cleanup()            # metric sinks, process group

    Args:
        cfg: the merged config (see `timechat.config.load_config`).
    """

    def __init__(self, cfg: DictConfig) -> None:
        self.cfg = cfg
        self.resolved = resolve_config(cfg)
        self.run: RunConfig = run_config(cfg)
        self.output_dir = Path(self.resolved["output_dir"])
        self.step = 0
        self.iteration = 0
        self.losses: list[float] = []
        """Mean loss of every step since step 1 (restored on resume, so the summary covers the whole run)."""
        self.engine = None  # the DeepSpeed engine, when run.deepspeed is set
        self.metrics: MetricLogger | None = None

    def setup(self) -> None:
        """Build everything `train()` needs. The order is part of the behaviour: it fixes the random
        draws (seed, then model init, then data order)."""
        self._setup_distributed()
        # The original seeds every library with seed + rank.
        seed_everything(self.run.seed + self.rank)
        self._setup_output_dir()
        if self.run.synthetic_data is not None:
            self._prepare_synthetic(dict(self.run.synthetic_data))
        self._setup_model()
        self.datasets = self._build_datasets()
        self.data = self._build_data_iterator()
        self._setup_optimizer()
        self.engine = self._init_deepspeed() if self.run.deepspeed is not None else None
        self.ddp_model = self.engine if self.engine is not None else self._wrap_ddp()
        # Bad samples met by this rank, counted from the batches (so DataLoader workers included).
        self.data_errors = IssueStats()
        self.metrics = MetricLogger(self.output_dir, rank=self.rank, tensorboard=self.run.tensorboard,
                                    wandb=self.run.wandb, wandb_project=self.run.wandb_project,
                                    run_name=self.output_dir.name, config=self.resolved)
        self._maybe_resume()

    def cleanup(self) -> None:
        """Close the metric sinks and destroy the process group (if this process has one)."""
        if self.metrics is not None:
            self.metrics.close()
        dist_utils.cleanup()

    # -- setup ----------------------------------------------------------------------------------
    def _setup_distributed(self) -> None:
        if self.run.deepspeed is not None:
            # DeepSpeed needs a process group even for one process; give it a local one.
            for key, value in (("RANK", "0"), ("WORLD_SIZE", "1"), ("LOCAL_RANK", "0"),
                               ("MASTER_ADDR", "127.0.0.1"), ("MASTER_PORT", "29512")):
                os.environ.setdefault(key, value)
        self.dist = dist_utils.init_distributed()
        self.device = self._device()
        self.rank, self.world_size = self.dist.rank, self.dist.world_size

    def _setup_output_dir(self) -> None:
        """Rank 0 creates `output_dir` and saves the resolved config there; every rank keeps its text."""
        if self.dist.is_main:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            self.config_text = save_config(self.cfg, self.output_dir / "config.yaml")
        else:
            self.config_text = OmegaConf.to_yaml(OmegaConf.create(self.resolved))
        dist_utils.barrier()

    def _setup_model(self) -> None:
        self.model, self.tokenizers, self.load_reports = build_model_and_tokenizers(self.resolved["model"])
        self.model_cfg = self.model.cfg
        self.model.to(self.device)
        self.model.train()

    def _setup_optimizer(self) -> None:
        """AdamW with the original's decay groups, the LR schedule and (fp16 on CUDA only) a GradScaler."""
        self.optimizer, self.param_report = build_optimizer(
            self.model, lr=self.run.init_lr, weight_decay=self.run.weight_decay, betas=(self.run.beta1, self.run.beta2)
        )
        self.scheduler = self._build_scheduler()
        self.scaler = torch.amp.GradScaler("cuda") if self.run.precision == "fp16" and self.device.type == "cuda" else None

    def _prepare_synthetic(self, kwargs: dict[str, Any]) -> None:
        """Rank 0 writes the built-in dataset (a no-op if already there with these settings)."""
        from timechat.data.synthetic import SyntheticConfig, generate_synthetic_dataset

        if "out_dir" not in kwargs:
            raise KeyError("run.synthetic_data needs out_dir")
        if self.dist.is_main:
            out_dir = kwargs.pop("out_dir")
            summary = generate_synthetic_dataset(out_dir, SyntheticConfig.from_dict(kwargs, "run.synthetic_data"))
            logger.info("synthetic data in %s (%s)", summary.out_dir,
                        "generated" if summary.regenerated else "already there")
        dist_utils.barrier()

    def _device(self) -> torch.device:
        if self.run.device != "auto":
            return torch.device(self.run.device)
        if torch.cuda.is_available():
            return torch.device("cuda", self.dist.local_rank)
        return torch.device("cpu")

    def _build_datasets(self) -> dict[str, torch.utils.data.Dataset]:
        sections = self.resolved.get("datasets") or {}
        if not sections:
            raise ValueError("config has no `datasets` section: nothing to train on")
        out = {}
        ts_tok = self.tokenizers.timestamp(self.model_cfg, training=True)
        for name, entry in sections.items():
            entry = dict(entry)
            builder = entry.pop("builder", "timeit")
            entry.pop("ratio", None)
            cache_dir = entry.pop("feature_cache", None)
            entry.setdefault("seed", self.run.seed)
            entry.setdefault("max_failure_rate", self.run.max_failure_rate)
            out[name] = registry.build(
                "dataset", builder,
                llama_tokenizer=self.tokenizers.llama,
                timestamp_tokenizer=ts_tok,
                num_video_query_token=self.model_cfg.video_qformer.num_query_tokens,
                stride=self.model_cfg.stride,
                name=name,
                **entry,
            )
            if cache_dir:
                out[name] = self._cached(name, out[name], cache_dir)
            logger.info("dataset %s: %d records (%s%s)", name, len(out[name]), builder,
                        f", features from {cache_dir}" if cache_dir else "")
        return out

    def _cached(self, name: str, dataset, cache_dir: str):
        """Serve precomputed `ln_vision` features instead of pixels (exact only for uniform, no crop)."""
        from timechat.data.feature_cache import CachedFeatureDataset, FeatureCache, require_exact_caching

        if not self.model_cfg.freeze_vit:
            raise ValueError(f"datasets.{name}.feature_cache needs a frozen ViT (model.config.freeze_vit=true)")
        require_exact_caching(dataset.settings, f"datasets.{name}")
        if self.run.build_feature_cache:
            self._build_feature_cache(name, dataset, cache_dir)
        return CachedFeatureDataset(dataset, FeatureCache(cache_dir))

    def _build_feature_cache(self, name: str, dataset, cache_dir: str) -> None:
        """Rank 0 computes the entries of `cache_dir` that are missing (resumable); the others wait.

        Runs under a forked torch RNG, so a run that builds the cache draws the same random numbers
        afterwards as one that finds it complete.
        """
        from timechat.data.feature_cache import build_feature_cache

        if self.dist.is_main:
            videos = [r["video"] for r in dataset.records if isinstance(r, dict) and isinstance(r.get("video"), str)]
            amp = self.run.precision if self.run.precision in AUTOCAST_DTYPES and self.device.type == "cuda" else None
            t0 = time.perf_counter()
            with torch.random.fork_rng(devices=[]):
                report = build_feature_cache(
                    self.model, videos, cache_dir, dataset.settings.frame_budget, dataset.settings.image_size,
                    videos_root=dataset.videos_root, autocast=amp,
                    # decoding overlaps the ViT even when training reads no videos (num_workers 0)
                    num_workers=max(1, self.run.num_workers),
                    device=self.device,
                )
            logger.info("feature cache %s for %s: %d written, %d already there, %d failed (%.1f s)", cache_dir, name,
                        len(report.written), len(report.skipped), len(report.failed), time.perf_counter() - t0)
        dist_utils.barrier()

    def _build_data_iterator(self) -> MultiDatasetIterator:
        from timechat.data.feature_cache import CachedFeatureDataset, collate_cached

        loaders = {
            name: make_train_loader(
                ds, batch_size=self.run.batch_size,
                collate_fn=collate_cached if isinstance(ds, CachedFeatureDataset) else collate_train,
                num_workers=self.run.num_workers,
                seed=self.run.seed, rank=self.rank, world_size=self.world_size,
                pin_memory=self.device.type == "cuda",
            )
            for name, ds in self.datasets.items()
        }
        ratios = None
        if self.run.mixing == "ratios":
            sections = self.resolved["datasets"]
            missing = [n for n in sections if sections[n].get("ratio") is None]
            if missing:
                raise ValueError(f"run.mixing=ratios but datasets {missing} have no `ratio`")
            ratios = {n: float(sections[n]["ratio"]) for n in sections}
        return MultiDatasetIterator(loaders, mode=self.run.mixing, ratios=ratios, seed=self.run.seed)

    def _build_scheduler(self):
        r = self.run
        values: dict[str, Any] = dict(max_epoch=r.max_epoch, iters_per_epoch=r.iters_per_epoch, init_lr=r.init_lr,
                                      min_lr=r.min_lr, warmup_lr=r.warmup_lr, warmup_steps=r.warmup_steps,
                                      decay_rate=1.0 if r.lr_decay_rate is None else r.lr_decay_rate)
        keys = registry.lookup("lr_schedule", r.lr_schedule).hparam_names  # each schedule gets only its own keys
        return registry.build("lr_schedule", r.lr_schedule, optimizer=self.optimizer, **{k: values[k] for k in keys})

    def _init_deepspeed(self):
        """Wrap model + our AdamW in a DeepSpeed engine (ZeRO as configured in `run.deepspeed`).

        The engine does gradient accumulation, clipping and the optimizer step; our scheduler still
        sets the LR of every param group each iteration, and our step folders still hold the
        trainable weights, data position and RNG states (the ZeRO optimizer shards live next to
        them under `checkpoints/deepspeed/step_N`).
        """
        import deepspeed

        r = self.run
        ds_cfg = dict(r.deepspeed)
        ds_cfg.setdefault("train_micro_batch_size_per_gpu", r.batch_size)
        ds_cfg.setdefault("gradient_accumulation_steps", r.accum_grad_iters)
        ds_cfg.setdefault("gradient_clipping", float(r.grad_clip or 0.0))
        ds_cfg.setdefault("bf16", {"enabled": r.precision == "bf16"})
        ds_cfg.setdefault("fp16", {"enabled": r.precision == "fp16"})
        ds_cfg.setdefault("zero_optimization", {"stage": 2})
        ds_cfg.setdefault("steps_per_print", 10**9)
        if ds_cfg["gradient_accumulation_steps"] != r.accum_grad_iters or ds_cfg["train_micro_batch_size_per_gpu"] != r.batch_size:
            raise ValueError("run.deepspeed must not contradict run.batch_size / run.accum_grad_iters")
        engine, optimizer, _, _ = deepspeed.initialize(model=self.model, optimizer=self.optimizer, config=ds_cfg,
                                                       dist_init_required=False)
        self.ds_optimizer = optimizer
        return engine

    def _deepspeed_dir(self) -> Path:
        return ckpt_io.checkpoint_root(self.output_dir) / "deepspeed"

    def _wrap_ddp(self) -> torch.nn.Module:
        if not self.dist.distributed:
            return self.model
        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [self.device.index] if self.device.type == "cuda" else None
        return DDP(self.model, device_ids=ids, find_unused_parameters=False)

    def _maybe_resume(self) -> None:
        resume = self.run.resume
        if resume in (None, "", "none", "null"):
            return
        path = self._latest_valid_checkpoint() if resume == "auto" else Path(resume)
        if path is None:
            logger.info("no complete checkpoint in %s: starting fresh", self.output_dir)
            return
        state = ckpt_io.load_checkpoint(path, model=self.model,
                                        optimizer=None if self.engine is not None else self.optimizer,
                                        scheduler=self.scheduler, scaler=self.scaler, rank=self.rank)
        if self.engine is not None:
            tag = (state.get("extra") or {}).get("deepspeed_tag")
            if tag is None:
                raise ValueError(f"{path} was not written by a DeepSpeed run (no deepspeed_tag); resume it without run.deepspeed")
            self.engine.load_checkpoint(str(self._deepspeed_dir()), tag=tag, load_module_strict=False,
                                        load_optimizer_states=True, load_lr_scheduler_states=False)
        self.step = int(state["step"])
        self.iteration = int(state["micro_step"])
        if state.get("data_state") is not None:
            self.data.load_state_dict(state["data_state"])
        extra = state.get("extra") or {}
        if extra.get("data_errors"):
            self.data_errors = IssueStats.from_dict(extra["data_errors"])
        self.losses = [float(x) for x in extra.get("losses", [])]
        if len(self.losses) != self.step:
            logger.warning("%s holds the losses of %d of its %d steps (saved before loss histories were kept); "
                           "train_summary.json's losses will start at step %d", path, len(self.losses), self.step,
                           self.step - len(self.losses) + 1)
        logger.info("resumed from %s at step %d (iteration %d)", path, self.step, self.iteration)

    def _latest_valid_checkpoint(self) -> Path | None:
        """`run.resume=auto`: rank 0 removes the leftovers of interrupted saves and prunes, then picks the
        newest checkpoint that verifies; a newer damaged one is said and set aside (renamed, kept for a
        look, so that pruning never keeps it in place of a good one). Every rank resumes from rank 0's pick."""
        path = None
        if self.dist.is_main:
            for p in ckpt_io.remove_tmp_leftovers(self.output_dir):
                logger.info("removed leftover of an interrupted checkpoint save or prune: %s", p)
            path, skipped = ckpt_io.latest_valid_checkpoint(self.output_dir)
            for folder, why in skipped:
                moved = ckpt_io.set_aside(folder)
                logger.warning("resume: skipping damaged checkpoint %s (%s); moved it to %s", folder.name, why, moved)
            if skipped:
                logger.warning("resume: falling back to %s", path if path is not None else "a fresh start (no checkpoint verifies)")
        path = dist_utils.broadcast_object(None if path is None else str(path))
        return None if path is None else Path(path)

    # -- the loop -------------------------------------------------------------------------------
    @property
    def total_steps(self) -> int:
        total = (self.run.max_epoch * self.run.iters_per_epoch) // self.run.accum_grad_iters
        return min(total, self.run.max_steps) if self.run.max_steps is not None else total

    def _autocast(self):
        if self.run.precision in AUTOCAST_DTYPES:
            return torch.autocast(device_type=self.device.type, dtype=AUTOCAST_DTYPES[self.run.precision])
        return contextlib.nullcontext()

    def _save(self) -> Path:
        extra: dict[str, Any] = {"data_errors": self.data_errors.to_dict(), "losses": list(self.losses)}
        if self.engine is not None:
            # ZeRO shards first (every rank writes its own); the step folder's COMPLETE marker, written
            # last, then vouches for both.
            tag = f"step_{self.step:08d}"
            self.engine.save_checkpoint(str(self._deepspeed_dir()), tag=tag, exclude_frozen_parameters=True)
            extra["deepspeed_tag"] = tag
        path = ckpt_io.save_checkpoint(
            self.output_dir, self.step, model=self.model,
            optimizer=None if self.engine is not None else self.optimizer, scheduler=self.scheduler,
            scaler=self.scaler, epoch=self.iteration // self.run.iters_per_epoch, micro_step=self.iteration,
            data_state=self.data.state_dict(), extra=extra,
            config_text=self.config_text, rank=self.rank, world_size=self.world_size,
            barrier=dist_utils.barrier, keep_last=self.run.keep_last,
        )
        if self.engine is not None and self.dist.is_main:
            self._prune_deepspeed()
        return path

    def _prune_deepspeed(self) -> None:
        """Drop ZeRO shards whose step folder was pruned."""
        import shutil

        kept = {p.name for _, p in ckpt_io.list_checkpoints(self.output_dir)}
        for folder in self._deepspeed_dir().glob("step_*"):
            if folder.is_dir() and folder.name not in kept:
                shutil.rmtree(folder, ignore_errors=True)

    def _check_failure_rate(self, min_attempts: int = 100) -> None:
        check_failure_rate(self.data_errors, self.run.max_failure_rate, "training data (run.max_failure_rate)", min_attempts)

    def _all_ranks_data_errors(self) -> IssueStats:
        if not self.dist.distributed:
            return self.data_errors
        gathered: list[Any] = [None] * self.world_size
        torch.distributed.all_gather_object(gathered, self.data_errors.to_dict())
        return IssueStats.merged(gathered)

    def _should_save(self) -> bool:
        if self.step == self.total_steps:
            return True
        if self.run.save_every_steps:
            return self.step % self.run.save_every_steps == 0
        steps_per_epoch = max(1, self.run.iters_per_epoch // self.run.accum_grad_iters)
        return self.step % steps_per_epoch == 0

    def train(self) -> dict[str, Any]:
        """Run until `total_steps` optimizer steps; returns a summary (losses per step, paths)."""
        r = self.run
        progress = Progress(total=self.total_steps, start=self.step, rank=self.rank)
        self.optimizer.zero_grad(set_to_none=True)
        t0 = time.time()
        samples = 0
        while self.step < self.total_steps:
            out = self.train_step()
            samples += out.samples
            mean_loss = float(dist_utils.all_reduce_mean(out.loss))
            self.losses.append(mean_loss)
            if not math.isfinite(mean_loss):
                raise FloatingPointError(f"loss is {mean_loss} at step {self.step}")
            if self.step % r.log_every == 0 or self.step == self.total_steps:
                elapsed = time.time() - t0
                values = {"train/loss": mean_loss, "train/lr": out.lr,
                          "train/samples_per_s": samples * self.world_size / max(elapsed, 1e-9)}
                if out.grad_norm is not None:
                    values["train/grad_norm"] = float(out.grad_norm)
                for name, part in sorted((out.parts or {}).items()):
                    values[f"train/{name}"] = float(dist_utils.all_reduce_mean(part))
                self.metrics.log(values, step=self.step)
                progress.update(self.step, loss=mean_loss, lr=out.lr, samples_per_s=values["train/samples_per_s"])
            if self._should_save():
                self._save()
        return self._finish()

    def train_step(self, batches: Sequence[dict[str, Any]] | None = None) -> StepResult:
        """One optimizer step: for each of the `accum_grad_iters` micro-batches set the LR, take the
        batch, forward + backward; then step the optimizer.

        Args:
            batches: `accum_grad_iters` ready micro-batches on the device (the benchmark's); None
                draws them from the training data, as the loop does.
        """
        accum = self.run.accum_grad_iters
        if batches is not None and len(batches) != accum:
            raise ValueError(f"train_step got {len(batches)} micro-batches; run.accum_grad_iters is {accum}")
        step_loss = torch.zeros((), device=self.device)
        parts: dict[str, torch.Tensor] = {}
        samples = 0
        for micro in range(accum):
            epoch, cur = divmod(self.iteration, self.run.iters_per_epoch)
            lr = self.scheduler.step(epoch, cur)
            batch = self._next_batch() if batches is None else batches[micro]
            if self.engine is not None:
                out = self._deepspeed_micro_step(batch)
            else:
                out = self._micro_step(batch, sync=is_accumulation_boundary(micro, accum))
            step_loss += out["loss"].detach() / accum
            for name, value in out.items():
                if name != "loss":
                    parts[name] = parts.get(name, 0) + value.float() / accum
            samples += batch["input_ids"].shape[0]
            self.iteration += 1
        grad_norm = self._deepspeed_grad_norm() if self.engine is not None else self._optimizer_step()
        self.step += 1
        return StepResult(step_loss, grad_norm, lr, samples, parts)

    def _next_batch(self) -> dict[str, Any]:
        """The next training batch on the device; its bad-sample counts go to `data_errors`."""
        batch = next(self.data)
        if "data_errors" in batch:
            self.data_errors.merge(batch.pop("data_errors"))
            self._check_failure_rate()
        return move_to(batch, self.device)

    def _micro_step(self, batch: dict[str, Any], sync: bool) -> dict[str, Any]:
        """Forward + backward of one micro-batch (single process or DDP); DDP all-reduces only when `sync`.
        Returns `loss_parts` of the model's output."""
        r = self.run
        ctx = self.ddp_model.no_sync() if (self.dist.distributed and not sync) else contextlib.nullcontext()
        with ctx:
            with self._autocast():
                out = self.ddp_model(batch)
            loss = out["loss"]
            scaled = scale_loss_for_accumulation(loss, r.accum_grad_iters, r.normalize_loss_over_accumulation)
            if self.scaler is not None:
                self.scaler.scale(scaled).backward()
            else:
                scaled.backward()
        return loss_parts(out)

    def _optimizer_step(self) -> torch.Tensor | None:
        """Unscale (fp16), clip, step and zero the gradients; returns the norm before clipping."""
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        grad_norm = clip_grad_norm(self.model, self.run.grad_clip) if self.run.grad_clip else None
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return grad_norm

    def _deepspeed_micro_step(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Forward + backward + `engine.step()` (DeepSpeed steps the optimizer at accumulation boundaries);
        returns `loss_parts` of the output."""
        out = self.engine(batch)
        loss = out["loss"]
        # engine.backward divides by the accumulation steps; undo that for the original's summed gradients.
        scaled = loss if self.run.normalize_loss_over_accumulation else loss * self.run.accum_grad_iters
        self.engine.backward(scaled)
        self.engine.step()
        return loss_parts(out)

    def _deepspeed_grad_norm(self) -> torch.Tensor | None:
        """The engine stepped inside the last `_deepspeed_micro_step`; read the norm it measured."""
        norm = self.engine.get_global_grad_norm()
        return None if norm is None else torch.as_tensor(float(norm))

    def _finish(self) -> dict[str, Any]:
        """Report bad samples, export the original layout if asked, write `train_summary.json`."""
        r = self.run
        errors = self._all_ranks_data_errors()
        if errors.failures:
            logger.warning("bad samples during training: %s; examples %s", errors.summary(), errors.examples)
        summary = {"steps": self.step, "iterations": self.iteration, "losses": list(self.losses),
                   "data_errors": errors.to_dict(), "output_dir": str(self.output_dir)}
        if r.export_original and self.dist.is_main:
            path = self.output_dir / "timechat_original_layout.pth"
            ckpt_io.export_original_layout(export_original_state_dict(self.model), path, extra={"step": self.step})
            summary["original_layout"] = str(path)
        if self.dist.is_main:
            (self.output_dir / "train_summary.json").write_text(json.dumps(summary, indent=1))
        return summary
