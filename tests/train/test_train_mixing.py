"""Resumable sampler and multi-dataset mixing: exact continuation, index skipping, workers."""

from __future__ import annotations

import json
from collections import Counter

import pytest
import torch
from torch.utils.data import DistributedSampler

from timechat.train.mixing import (
    MultiDatasetIterator,
    ResumableDistributedSampler,
    make_train_loader,
    mixing_weights,
)


class IndexDataset:
    """Sample i is (tag, i); records which indices were loaded."""

    def __init__(self, n, tag):
        self.n, self.tag, self.loaded = n, tag, []

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        self.loaded.append(i)
        return (self.tag, i)


def collate(samples):
    return [f"{tag}{i}" for tag, i in samples]


def _mixer(num_workers=0, seed=7, mode=None, ratios=None, rank=0, world_size=1, sizes=(10, 7)):
    datasets = {"time": IndexDataset(sizes[0], "t"), "valley": IndexDataset(sizes[1], "v")}
    loaders = {
        name: make_train_loader(ds, batch_size=2, collate_fn=collate, num_workers=num_workers,
                                seed=3, rank=rank, world_size=world_size)
        for name, ds in datasets.items()
    }
    return MultiDatasetIterator(loaders, mode=mode, ratios=ratios, seed=seed), datasets


@pytest.mark.parametrize("world_size,drop_last", [(1, False), (3, False), (3, True)])
def test_sampler_matches_torch_distributed_sampler(world_size, drop_last):
    for rank in range(world_size):
        ours = ResumableDistributedSampler(10, num_replicas=world_size, rank=rank, seed=5,
                                           drop_last=drop_last)
        ref = DistributedSampler(range(10), num_replicas=world_size, rank=rank, seed=5,
                                 drop_last=drop_last)
        for epoch in (0, 1):
            ours.set_epoch(epoch)
            ref.set_epoch(epoch)
            assert list(ours) == list(ref)
            assert len(ours) == len(ref)


def test_sampler_start_offset_and_state():
    s = ResumableDistributedSampler(10, num_replicas=2, rank=1, seed=1)
    s.set_epoch(3)
    full = list(s)
    s.set_start(2)
    assert list(s) == full[2:] and len(s) == 3
    s2 = ResumableDistributedSampler(10, num_replicas=2, rank=0, seed=1)
    s2.load_state_dict(s.state_dict())  # rank-independent state
    assert (s2.epoch, s2.start) == (3, 2)
    with pytest.raises(ValueError, match="'seed' is 1 but this sampler has 2"):
        ResumableDistributedSampler(10, num_replicas=2, rank=0, seed=2).load_state_dict(s.state_dict())


def test_mixing_weights_modes():
    assert mixing_weights(["a", "b"], "uniform") == [0.5, 0.5]
    assert mixing_weights(["a", "b"], "ratios", ratios={"a": 3, "b": 1}) == [0.75, 0.25]
    assert mixing_weights(["a", "b"], "proportional", sizes={"a": 104, "b": 72}) == pytest.approx(
        [104 / 176, 72 / 176])
    with pytest.raises(ValueError, match=r"missing for \['b'\], unknown datasets \['c'\]"):
        mixing_weights(["a", "b"], "ratios", ratios={"a": 1, "c": 1})
    with pytest.raises(ValueError, match="unknown mixing mode"):
        mixing_weights(["a"], "random")


def test_choice_frequencies_follow_weights_and_epochs_roll_over():
    it, _ = _mixer(ratios={"time": 3, "valley": 1})
    names = []
    for _ in range(400):
        next(it)
        names.append(it.last_dataset)
    frac = Counter(names)["time"] / 400
    assert 0.68 < frac < 0.82  # p = 0.75
    # time: 5 batches/epoch (10 samples, bs 2); valley: 3 (7 samples, bs 2, drop_last)
    c = Counter(names)
    assert it.epochs() == {"time": c["time"] // 5, "valley": c["valley"] // 3}


def test_each_epoch_is_a_permutation_of_the_shard():
    it, _ = _mixer(mode="uniform", sizes=(10, 8))
    seen = {"time": [], "valley": []}
    while len(seen["time"]) < 10 * 2:  # two epochs of 'time'
        batch = next(it)
        seen[it.last_dataset].extend(batch)
    first, second = seen["time"][:10], seen["time"][10:20]
    assert sorted(first) == sorted(second) == sorted(f"t{i}" for i in range(10))
    assert first != second  # set_epoch gave a new permutation


@pytest.mark.parametrize("num_workers,k", [(0, 0), (0, 1), (0, 5), (0, 8), (0, 13), (2, 13)])
def test_resume_continues_exactly(num_workers, k):
    n = 20
    ref, _ = _mixer(num_workers=num_workers)
    reference = [(next(ref), ref.last_dataset) for _ in range(k + n)]

    run, _ = _mixer(num_workers=num_workers)
    for _ in range(k):
        next(run)
    state = json.loads(json.dumps(run.state_dict()))  # survives trainer_state.json
    del run

    resumed, datasets = _mixer(num_workers=num_workers)
    resumed.load_state_dict(state)
    cont = [(next(resumed), resumed.last_dataset) for _ in range(n)]
    assert cont == reference[k:]
    assert resumed.num_batches == k + n
    if num_workers == 0:
        # skipped by index: only the delivered samples were loaded, none before the position
        for name in ("time", "valley"):
            delivered = sum(len(b) for b, nm in cont if nm == name)
            assert len(datasets[name].loaded) == delivered


def test_resume_under_two_ranks_gives_disjoint_shards():
    batches = {}
    for rank in range(2):
        it, _ = _mixer(rank=rank, world_size=2, seed=11)
        batches[rank] = [(next(it), it.last_dataset) for _ in range(6)]
    # same seed on all ranks: same dataset at each iteration, disjoint samples
    assert [nm for _, nm in batches[0]] == [nm for _, nm in batches[1]]
    for (b0, _), (b1, _) in zip(batches[0], batches[1]):
        assert not set(b0) & set(b1)


def test_load_state_dict_errors_name_the_problem():
    it, _ = _mixer()
    next(it)
    state = it.state_dict()
    other, _ = _mixer(ratios={"time": 1, "valley": 3})
    with pytest.raises(ValueError, match="mixing weights changed"):
        other.load_state_dict(state)
    bad = json.loads(json.dumps(state))
    bad["datasets"]["valley"]["batch_size"] = 4
    with pytest.raises(ValueError, match="dataset 'valley': saved batch_size 4, current 2"):
        _mixer()[0].load_state_dict(bad)
    bad = json.loads(json.dumps(state))
    bad["names"] = ["time"]
    with pytest.raises(ValueError, match=r"datasets \['time'\]"):
        _mixer()[0].load_state_dict(bad)
    with pytest.raises(TypeError, match="ResumableDistributedSampler"):
        MultiDatasetIterator({"a": torch.utils.data.DataLoader(range(4), batch_size=2)})


def test_loader_creation_does_not_touch_global_rng():
    torch.manual_seed(0)
    expected = torch.rand(2)
    torch.manual_seed(0)
    it, _ = _mixer()
    for _ in range(12):
        next(it)
    assert torch.equal(torch.rand(2), expected)
