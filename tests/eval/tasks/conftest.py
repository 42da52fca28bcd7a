"""Fixtures of the task tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def syn(tmp_path_factory) -> Path:
    """A synthetic test split: 3 short 32-px videos with DVC, TVG and VHD annotations."""
    from timechat.data.synthetic import generate_synthetic_dataset

    root = tmp_path_factory.mktemp("syn")
    generate_synthetic_dataset(root, num_train=0, num_val=0, num_test=3, duration=(4.0, 6.0), fps=4.0, size=32,
                               max_events=2, min_event_duration=2.0)
    return root
