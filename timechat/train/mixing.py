"""Resumable multi-dataset batch mixing over distributed samplers.

The original (its runner's ``MultiIterLoader``) does not concatenate its training datasets: every
micro-iteration it draws one whole batch from one dataset, chosen with probabilities proportional
to the datasets' ``sample_ratio`` if set, else uniformly; each dataset has its own infinite loader
over a shuffling ``DistributedSampler`` that calls ``set_epoch`` when exhausted. This module keeps
that behaviour and adds what the original lacked, an exact resume:

* ``ResumableDistributedSampler`` yields the same per-rank order as
  ``torch.utils.data.DistributedSampler`` (permutation seeded with ``seed + epoch``, padded by
  repetition or truncated, then strided by rank) and can start at an offset inside the epoch, so a
  resume skips consumed samples by index instead of loading them.
* ``MultiDatasetIterator`` draws the dataset of each batch from its own seeded
  ``torch.Generator``, tracks per dataset the epoch and the number of batches delivered in it, and
  ``state_dict()`` / ``load_state_dict()`` capture and restore exactly that (JSON-serialisable).

Deliberate difference: the original chose the dataset with python ``random`` seeded with
``seed + rank``, so ranks mixed independently. Pass the same ``seed`` on every rank to make all
ranks draw from the same dataset at each iteration (then the data state is identical on all ranks
and one copy in the checkpoint suffices); pass ``seed + rank`` for the original's behaviour and
save the state per rank.

Worker randomness: before each loader iterator is created, the loader's ``generator`` is reseeded
from ``(seed, dataset index, epoch, start offset)``, so DataLoader worker seeds do not consume the
global torch RNG and are reproducible per epoch. Augmentations that must be identical across a
mid-epoch resume should derive their randomness from the sample index and epoch.
"""

from __future__ import annotations

import base64
import logging
import math
from collections.abc import Callable, Iterator, Mapping, Sized
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

log = logging.getLogger(__name__)

__all__ = [
    "MIXING_MODES",
    "MultiDatasetIterator",
    "ResumableDistributedSampler",
    "make_train_loader",
    "mixing_weights",
]

MIXING_MODES = ("uniform", "ratios", "proportional")
"""The values of ``run.mixing``."""


class ResumableDistributedSampler(Sampler[int]):
    """``DistributedSampler``-compatible order with a start offset and a ``state_dict``.

    Args:
        dataset: a sized dataset, or its length.
        num_replicas: number of ranks (default: the process group's, or 1).
        rank: this rank (default: the process group's, or 0).
        shuffle: shuffle with a generator seeded by ``seed + epoch``.
        seed: shuffle seed; must be the same on all ranks.
        drop_last: drop the tail so that every rank gets the same number of samples (True), or
            pad by repeating the first samples (False, torch's default).
    """

    def __init__(
        self,
        dataset: Sized | int,
        *,
        num_replicas: int | None = None,
        rank: int | None = None,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
    ) -> None:
        if num_replicas is None or rank is None:
            # Lazy: querying the default process group is the only use of torch.distributed here.
            import torch.distributed as dist

            initialized = dist.is_available() and dist.is_initialized()
            if num_replicas is None:
                num_replicas = dist.get_world_size() if initialized else 1
            if rank is None:
                rank = dist.get_rank() if initialized else 0
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} is outside [0, {num_replicas})")
        self.dataset_len = dataset if isinstance(dataset, int) else len(dataset)
        if self.dataset_len < 1:
            raise ValueError("ResumableDistributedSampler needs a non-empty dataset")
        self.num_replicas, self.rank = int(num_replicas), int(rank)
        self.shuffle, self.seed, self.drop_last = bool(shuffle), int(seed), bool(drop_last)
        if drop_last:
            self.num_samples = self.dataset_len // self.num_replicas
            if self.num_samples == 0:
                raise ValueError(
                    f"dataset of {self.dataset_len} samples is smaller than num_replicas "
                    f"({self.num_replicas}) with drop_last=True"
                )
        else:
            self.num_samples = math.ceil(self.dataset_len / self.num_replicas)
        self.total_size = self.num_samples * self.num_replicas
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the permutation of ``epoch`` for the next iteration."""
        self.epoch = int(epoch)

    def set_start(self, start: int) -> None:
        """Skip the first ``start`` indices of this rank's share in the next iteration."""
        if not 0 <= start <= self.num_samples:
            raise ValueError(f"start {start} is outside [0, {self.num_samples}]")
        self.start = int(start)

    def epoch_indices(self) -> list[int]:
        """This rank's full index list for the current epoch (ignores ``start``)."""
        if self.shuffle:
            g = torch.Generator()
            g.manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.dataset_len, generator=g).tolist()
        else:
            order = list(range(self.dataset_len))
        if self.total_size <= len(order):
            order = order[: self.total_size]
        else:
            # pad by cycling through the order, so every rank gets num_samples indices
            order = [order[i % len(order)] for i in range(self.total_size)]
        return order[self.rank : self.total_size : self.num_replicas]

    def __iter__(self) -> Iterator[int]:
        # Computed eagerly: the start offset is read when iteration begins, not on first next().
        return iter(self.epoch_indices()[self.start :])

    def __len__(self) -> int:
        """Number of indices the next iteration yields (``num_samples - start``)."""
        return self.num_samples - self.start

    def state_dict(self) -> dict[str, Any]:
        """Position and configuration; rank-independent (identical on all ranks in lockstep)."""
        return {
            "epoch": self.epoch,
            "start": self.start,
            "dataset_len": self.dataset_len,
            "num_replicas": self.num_replicas,
            "seed": self.seed,
            "shuffle": self.shuffle,
            "drop_last": self.drop_last,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore ``epoch`` and ``start``; the configuration must match (error names the key)."""
        for key in ("dataset_len", "num_replicas", "seed", "shuffle", "drop_last"):
            if state[key] != getattr(self, key):
                raise ValueError(
                    f"sampler state '{key}' is {state[key]!r} but this sampler has "
                    f"{getattr(self, key)!r}; the data order would not continue"
                )
        self.set_epoch(state["epoch"])
        self.set_start(state["start"])


def make_train_loader(
    dataset: Dataset,
    *,
    batch_size: int,
    collate_fn: Callable | None = None,
    num_workers: int = 0,
    seed: int = 0,
    rank: int | None = None,
    world_size: int | None = None,
    shuffle: bool = True,
    drop_last: bool = True,
    sampler_drop_last: bool = False,
    pin_memory: bool = False,
    persistent_workers: bool = False,
    prefetch_factor: int | None = None,
    worker_init_fn: Callable | None = None,
) -> DataLoader:
    """A training DataLoader over a ``ResumableDistributedSampler``, as the original built them.

    Args:
        dataset: map-style dataset.
        batch_size: per-rank batch size.
        collate_fn: the dataset's collater.
        num_workers: DataLoader workers.
        seed: sampler shuffle seed (same on all ranks).
        rank: this rank (default from the process group).
        world_size: number of ranks (default from the process group).
        shuffle: shuffle each epoch.
        drop_last: drop the last incomplete batch of each epoch (original: True).
        sampler_drop_last: the sampler's own tail handling (original: False, i.e. pad).
        pin_memory: pin host memory (original: True on GPU).
        persistent_workers: keep workers alive between epochs.
        prefetch_factor: batches prefetched per worker (None: torch's default).
        worker_init_fn: passed to the DataLoader.

    Returns:
        The DataLoader (its ``generator`` is set, so creating iterators never touches the global
        torch RNG).
    """
    sampler = ResumableDistributedSampler(
        dataset, num_replicas=world_size, rank=rank, shuffle=shuffle, seed=seed,
        drop_last=sampler_drop_last,
    )
    kwargs: dict[str, Any] = {}
    if num_workers > 0:
        kwargs["persistent_workers"] = persistent_workers
        if prefetch_factor is not None:
            kwargs["prefetch_factor"] = prefetch_factor
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        collate_fn=collate_fn,
        pin_memory=pin_memory,
        drop_last=drop_last,
        worker_init_fn=worker_init_fn,
        generator=torch.Generator().manual_seed(seed),
        **kwargs,
    )


def mixing_weights(
    names: list[str],
    mode: str,
    *,
    ratios: Mapping[str, float] | None = None,
    sizes: Mapping[str, int] | None = None,
) -> list[float]:
    """Normalised per-dataset draw probabilities.

    Args:
        names: dataset names, in order.
        mode: ``"uniform"`` (the original without ``sample_ratio``), ``"ratios"`` (proportional to
            ``ratios``, the original with ``sample_ratio``), ``"proportional"`` (to ``sizes``).
        ratios: per-name ratio (``datasets.<name>.ratio``), required for ``"ratios"``.
        sizes: per-name dataset size, required for ``"proportional"``.

    Returns:
        Probabilities in ``names`` order, summing to 1.
    """
    if mode == "uniform":
        raw = [1.0] * len(names)
    elif mode in ("ratios", "proportional"):
        table = ratios if mode == "ratios" else sizes
        what = "ratios" if mode == "ratios" else "sizes"
        if table is None:
            raise ValueError(f"mixing mode '{mode}' needs {what}")
        missing = [n for n in names if n not in table]
        unknown = [n for n in table if n not in names]
        if missing or unknown:
            raise ValueError(f"mixing {what}: missing for {missing}, unknown datasets {unknown}")
        raw = [float(table[n]) for n in names]
        bad = [n for n, r in zip(names, raw) if not r > 0]
        if bad:
            raise ValueError(f"mixing {what} must be > 0, got {[(n, table[n]) for n in bad]}")
    else:
        raise ValueError(f"unknown mixing mode {mode!r}; expected one of {MIXING_MODES}")
    total = sum(raw)
    return [r / total for r in raw]


def _derived_seed(*parts: int) -> int:
    # SeedSequence hashes the tuple well and touches no global RNG state.
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1, np.uint64)[0] >> 1)


class MultiDatasetIterator:
    """Infinite iterator of batches, each from one dataset drawn with the mixing weights.

    Args:
        loaders: ``{name: DataLoader}``; each loader's sampler must be a
            ``ResumableDistributedSampler`` (see ``make_train_loader``) and its ``batch_size`` set.
        mode: ``"uniform"``, ``"ratios"`` or ``"proportional"`` (`MIXING_MODES`); None means
            ``"ratios"`` when ``ratios`` is given, else ``"uniform"`` (the original's rule).
        ratios: per-dataset ratios for ``"ratios"``.
        seed: seed of the dataset-choice generator (and of the loaders' worker seeds).
    """

    def __init__(
        self,
        loaders: Mapping[str, DataLoader],
        *,
        mode: str | None = None,
        ratios: Mapping[str, float] | None = None,
        seed: int = 0,
    ) -> None:
        if not loaders:
            raise ValueError("MultiDatasetIterator needs at least one loader")
        if len({id(dl) for dl in loaders.values()}) != len(loaders):
            raise ValueError("each dataset needs its own DataLoader object")
        for name, dl in loaders.items():
            if not isinstance(dl.sampler, ResumableDistributedSampler):
                raise TypeError(
                    f"loader '{name}' uses {type(dl.sampler).__name__}; a "
                    "ResumableDistributedSampler is needed to resume by index"
                )
            if dl.batch_size is None:
                raise ValueError(f"loader '{name}' has batch_size=None (custom batch_sampler)")
        if mode is None:
            mode = "ratios" if ratios is not None else "uniform"
        elif ratios is not None and mode != "ratios":
            raise ValueError(f"ratios were given but mode is {mode!r}; use mode='ratios'")
        self.loaders = dict(loaders)
        self.names = list(loaders)
        self.mode = mode
        self.seed = int(seed)
        sizes = {n: len(dl.dataset) for n, dl in self.loaders.items()}
        self.weights = mixing_weights(self.names, mode, ratios=ratios, sizes=sizes)
        self._weights_t = torch.tensor(self.weights, dtype=torch.float64)
        self._generator = torch.Generator().manual_seed(self.seed)
        self._epoch = {n: 0 for n in self.names}
        self._batches = {n: 0 for n in self.names}  # batches delivered in the current epoch
        self._iters: dict[str, Iterator | None] = {n: None for n in self.names}
        self.num_batches = 0
        self.last_dataset: str | None = None

    def __iter__(self) -> MultiDatasetIterator:
        return self

    def __next__(self) -> Any:
        """The next batch; ``self.last_dataset`` names the dataset it came from."""
        idx = int(torch.multinomial(self._weights_t, 1, generator=self._generator).item())
        name = self.names[idx]
        batch = self._next_from(name)
        self.num_batches += 1
        self.last_dataset = name
        return batch

    def _start_iter(self, name: str) -> Iterator:
        dl = self.loaders[name]
        sampler: ResumableDistributedSampler = dl.sampler
        epoch, start = self._epoch[name], self._batches[name] * dl.batch_size
        sampler.set_epoch(epoch)
        sampler.set_start(min(start, sampler.num_samples))
        # Datasets that seed per-item augmentation from (seed, epoch, index) must see the epoch
        # before the workers copy them (iter() below).
        if hasattr(dl.dataset, "set_epoch"):
            dl.dataset.set_epoch(epoch)
        if dl.generator is None:
            dl.generator = torch.Generator()
        dl.generator.manual_seed(_derived_seed(self.seed, self.names.index(name), epoch, start))
        self._iters[name] = iter(dl)
        return self._iters[name]

    def _next_from(self, name: str) -> Any:
        it = self._iters[name]
        if it is None:  # not `or`: a DataLoader iterator has __len__ and may be falsy
            it = self._start_iter(name)
        try:
            batch = next(it)
        except StopIteration:
            # Exhausted: next epoch with a new permutation (the original's IterLoader + set_epoch).
            self._epoch[name] += 1
            self._batches[name] = 0
            try:
                batch = next(self._start_iter(name))
            except StopIteration:
                raise RuntimeError(
                    f"loader '{name}' yields no batch in a full epoch (dataset smaller than "
                    "batch_size with drop_last=True?)"
                ) from None
        self._batches[name] += 1
        return batch

    def epochs(self) -> dict[str, int]:
        """Current epoch per dataset (how many full passes each has completed)."""
        return dict(self._epoch)

    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable position: per dataset epoch and batches delivered, and the mixing RNG.

        Batches prefetched by DataLoader workers but not yet delivered are not counted, so a
        resume re-reads them.
        """
        return {
            "version": 1,
            "names": list(self.names),
            "mode": self.mode,
            "weights": list(self.weights),
            "seed": self.seed,
            "num_batches": self.num_batches,
            "generator": base64.b64encode(self._generator.get_state().numpy().tobytes()).decode(),
            "datasets": {
                n: {
                    "epoch": self._epoch[n],
                    "batches_in_epoch": self._batches[n],
                    "batch_size": self.loaders[n].batch_size,
                    "sampler": {
                        **self.loaders[n].sampler.state_dict(),
                        "epoch": self._epoch[n],
                        "start": self._batches[n] * self.loaders[n].batch_size,
                    },
                }
                for n in self.names
            },
        }

    def load_state_dict(self, state: Mapping[str, Any], strict: bool = True) -> None:
        """Continue exactly where ``state`` was taken (no sample is loaded to skip ahead).

        Args:
            state: a dict from ``state_dict()``.
            strict: if True, different mixing weights raise; if False they are logged and the
                current weights are used (the dataset-choice stream then differs from the
                uninterrupted run).

        Raises:
            ValueError: dataset names, batch sizes or sampler configuration differ (named).
        """
        saved_names = list(state["names"])
        if saved_names != self.names:
            raise ValueError(f"data state is for datasets {saved_names}, this iterator has {self.names}")
        if not np.allclose(state["weights"], self.weights, rtol=1e-12, atol=0):
            msg = f"mixing weights changed: saved {state['weights']}, current {self.weights}"
            if strict:
                raise ValueError(msg)
            log.warning(msg)
        for n in self.names:
            ds = state["datasets"][n]
            bs = self.loaders[n].batch_size
            if ds["batch_size"] != bs:
                raise ValueError(f"dataset '{n}': saved batch_size {ds['batch_size']}, current {bs}")
            sampler = self.loaders[n].sampler
            try:
                sampler.load_state_dict(ds["sampler"])
            except ValueError as e:
                raise ValueError(f"dataset '{n}': {e}") from e
            self._epoch[n] = int(ds["epoch"])
            self._batches[n] = int(ds["batches_in_epoch"])
            self._iters[n] = None  # restarted lazily at the saved offset
        gen_state = torch.frombuffer(bytearray(base64.b64decode(state["generator"])), dtype=torch.uint8)
        self._generator.set_state(gen_state)
        self.seed = int(state["seed"])
        self.num_batches = int(state["num_batches"])
