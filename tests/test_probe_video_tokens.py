"""scripts/probe_video_tokens.py: the linear probes find what the features carry, and only that."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("probe_video_tokens", REPO / "scripts" / "probe_video_tokens.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _frames(n: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    types = torch.randint(0, 5, (n,), generator=g)
    times = torch.rand(n, generator=g) * 16
    return types, times


def test_frame_labels(script):
    events = [{"type": 2, "start": 1.0, "end": 3.0}, {"type": 0, "start": 5.0, "end": 6.0}]
    assert script.frame_labels(events, [0.5, 1.0, 2.9, 3.0, 5.5, 6.0], 4) == [4, 2, 2, 4, 0, 4]


def test_probes_read_what_is_encoded(script):
    types, times = _frames(1200)
    g = torch.Generator().manual_seed(1)
    noise = torch.randn(1200, 24, generator=g)
    both = torch.cat([torch.nn.functional.one_hot(types, 5).float() * 3, times[:, None] / 4, noise], 1)
    got = script.probe(both, types, times, 800, num_types=4)
    assert got["shape_accuracy_heldout"] > 0.99
    assert got["time_mae_s_heldout"] < 0.3 < 3.0 < got["time_mae_s_predict_mean"]


def test_probes_find_no_time_where_there_is_none(script):
    types, times = _frames(1200)
    g = torch.Generator().manual_seed(2)
    shape_only = torch.cat([torch.nn.functional.one_hot(types, 5).float() * 3, torch.randn(1200, 24, generator=g)], 1)
    got = script.probe(shape_only, types, times, 800, num_types=4)
    assert got["shape_accuracy_heldout"] > 0.99
    assert got["time_mae_s_heldout"] > 0.9 * got["time_mae_s_predict_mean"]
    assert got["second_accuracy_heldout"] < 0.2  # 16 whole seconds: chance is about 1/16
    with pytest.raises(ValueError, match="n_fit"):
        script.probe(shape_only, types, times, 1200, num_types=4)
