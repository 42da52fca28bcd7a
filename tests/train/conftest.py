"""Shared pieces of the training tests: a small synthetic dataset and tiny-run overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest_train import generate_small_synthetic


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory) -> Path:
    return generate_small_synthetic(tmp_path_factory.mktemp("data"))
